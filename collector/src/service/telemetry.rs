//! `Telemetry/Stream`: one session per open agent stream.
//!
//! Order of a session: Hello → Welcome; then for every Batch exactly one Ack
//! (after the batch is stored and flushed) or BatchRejected, in order;
//! heartbeats update the agent's counters; renewal requests get a fresh
//! certificate. The session ends when the agent closes, the collector shuts
//! down or the agent is revoked (then with `PERMISSION_DENIED`).

use std::{pin::Pin, sync::Arc, time::Duration};

use canhgac_proto::{
    TELEMETRY_PROTOCOL_VERSION, timefmt,
    v1::{
        Ack, AgentMessage, Batch, BatchRejected, Certificate, CollectorMessage, PolicyStatus, PolicyUpdate,
        RecordKind, Welcome, agent_message::Body as In, collector_message::Body as Out,
        telemetry_server::Telemetry,
    },
};
use prost::Message as _;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    auth, error,
    registry::StreamGuard,
    service::{
        clean_text,
        raw_object::{NotAnObject, RawObject},
    },
    store::{AgentRec, Incoming},
};

const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeats update the stored agent at most this often.
const SEEN_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// What agent sessions need, and nothing more.
pub struct TelemetryDeps {
    pub store: crate::store::Store,
    pub ca: Arc<crate::pki::Ca>,
    /// Replaced by a reload (SIGHUP).
    pub config: crate::config::Live<TelemetryConfig>,
    pub streams: Arc<crate::registry::StreamRegistry>,
    /// Bumped on every policy push: sessions deliver the new version.
    pub policy_changed: Arc<watch::Sender<u64>>,
    pub shutdown: watch::Receiver<bool>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The settings agent sessions read.
#[derive(Clone)]
pub struct TelemetryConfig {
    pub max_batch_bytes: u32,
    pub max_batch_records: u32,
    pub heartbeat_interval: Duration,
    pub agent_certificate_ttl: Duration,
    pub regulation: Arc<crate::rules::Regulation>,
}

impl TelemetryConfig {
    pub fn of(c: &crate::config::ServeConfig) -> TelemetryConfig {
        TelemetryConfig {
            max_batch_bytes: c.max_batch_bytes,
            max_batch_records: c.max_batch_records,
            heartbeat_interval: c.heartbeat_interval,
            agent_certificate_ttl: c.agent_certificate_ttl,
            regulation: c.regulation.clone(),
        }
    }
}

pub struct TelemetryService {
    deps: Arc<TelemetryDeps>,
}

impl TelemetryService {
    pub fn new(deps: TelemetryDeps) -> TelemetryService {
        TelemetryService { deps: Arc::new(deps) }
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    type StreamStream = Outbound;

    async fn stream(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let caller = auth::agent(&req)?;
        let agent_id = caller.agent_id;
        let Some(agent) = self.deps.store.agent(&agent_id)? else {
            return Err(crate::error::denied(format!(
                "agent {agent_id} is unknown to this collector; enroll it again"
            )));
        };
        if agent.revoked_us != 0 {
            return Err(crate::error::denied(format!("agent {agent_id} is revoked")));
        }
        let (guard, close, concurrent) = self.deps.streams.register(&agent_id);
        if concurrent > 1 {
            // Two live streams with one identity: a restarted agent whose
            // old stream has not timed out yet, or a cloned machine.
            tracing::warn!(%agent_id, concurrent, "agent has more than one open stream");
        }
        let (tx, rx) = mpsc::channel(64);
        let policy_rx = self.deps.policy_changed.subscribe();
        let session = Session {
            deps: self.deps.clone(),
            agent,
            tx,
            close,
            _guard: guard,
            last_seen_write: None,
            policy_rx,
            policy_sent: None,
        };
        tokio::spawn(session.run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session {
    deps: Arc<TelemetryDeps>,
    agent: AgentRec,
    tx: mpsc::Sender<Result<CollectorMessage, Status>>,
    close: watch::Receiver<bool>,
    _guard: StreamGuard,
    last_seen_write: Option<tokio::time::Instant>,
    /// Wakes the session when an operator pushes a policy.
    policy_rx: watch::Receiver<u64>,
    /// Policy version sent on this stream (sent once per stream).
    policy_sent: Option<u64>,
}

enum End {
    /// The agent closed or went away.
    Peer,
    /// Close with this status.
    Status(Status),
}

impl From<Status> for End {
    fn from(s: Status) -> End {
        End::Status(s)
    }
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<AgentMessage>) {
        let agent_id = self.agent.agent_id.clone();
        tracing::info!(%agent_id, agency = %self.agent.agency, "telemetry stream opened");
        let end = self.serve(&mut inbound).await;
        let reason = match end {
            End::Peer => String::from("agent closed the stream"),
            End::Status(status) => {
                let reason = status.message().to_string();
                let _ = self.tx.send(Err(status)).await;
                reason
            }
        };
        let now = timefmt::micros(OffsetDateTime::now_utc());
        if let Err(e) = self.deps.store.update_agent(&agent_id, |a| a.last_seen_us = now) {
            tracing::warn!(%agent_id, error = %e, "cannot record last_seen");
        }
        tracing::info!(%agent_id, %reason, "telemetry stream closed");
    }

    async fn send(&self, body: Out) -> Result<(), End> {
        self.tx.send(Ok(CollectorMessage { body: Some(body) })).await.map_err(|_| End::Peer)
    }

    /// The next message, or `None` when a policy was pushed.
    async fn next(&mut self, inbound: &mut Streaming<AgentMessage>) -> Result<Option<AgentMessage>, End> {
        let mut shutdown = self.deps.shutdown.clone();
        tokio::select! {
            biased;
            _ = self.policy_rx.changed() => Ok(None),
            _ = crate::registry::until_true(&mut self.close) => {
                Err(End::Status(crate::error::denied(format!("agent {} was revoked", self.agent.agent_id))))
            }
            _ = crate::registry::until_true(&mut shutdown) => {
                Err(End::Status(crate::error::unavailable("collector is shutting down")))
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) => Ok(Some(m)),
                Ok(None) => Err(End::Peer),
                Err(status) => {
                    tracing::debug!(agent_id = %self.agent.agent_id, %status, "inbound stream error");
                    Err(End::Peer)
                }
            }
        }
    }

    async fn serve(&mut self, inbound: &mut Streaming<AgentMessage>) -> End {
        match self.serve_inner(inbound).await {
            Ok(()) => End::Peer,
            Err(end) => end,
        }
    }

    async fn serve_inner(&mut self, inbound: &mut Streaming<AgentMessage>) -> Result<(), End> {
        self.policy_rx.borrow_and_update();
        let first = loop {
            match tokio::time::timeout(HELLO_TIMEOUT, self.next(inbound)).await {
                Ok(m) => match m? {
                    Some(m) => break m,
                    None => continue,
                },
                Err(_) => return Err(crate::error::deadline("no Hello within 30 seconds").into()),
            }
        };
        let Some(In::Hello(hello)) = first.body else {
            return Err(crate::error::invalid("the first message of a stream must be Hello").into());
        };
        if hello.protocol_version > TELEMETRY_PROTOCOL_VERSION {
            tracing::info!(
                agent_id = %self.agent.agent_id,
                agent_protocol = hello.protocol_version,
                "agent speaks a newer telemetry revision; using {TELEMETRY_PROTOCOL_VERSION}"
            );
        }
        let now = timefmt::micros(OffsetDateTime::now_utc());
        let updated = self.deps.store.update_agent(&self.agent.agent_id, |a| {
            if let Some(inv) = &hello.inventory {
                a.hostname = clean_text(&inv.hostname, 255);
                a.inventory = Some(inv.clone());
            }
            a.agent_version = clean_text(&hello.agent_version, 64);
            if hello.counters.is_some() {
                a.counters = hello.counters.clone();
            }
            a.policy = hello.policy.clone();
            if a.first_seen_us == 0 {
                a.first_seen_us = now;
            }
            a.last_seen_us = now;
        })?;
        if let Some(a) = updated {
            self.agent = a;
        }
        let cfg = self.deps.config.get();
        // a downstream collector resumes each feed where this one is
        let mut stored_through = std::collections::HashMap::new();
        if self.agent.downstream {
            for feed in crate::federation::FEEDS {
                let (lo, hi) = crate::federation::feed_range(feed);
                let last = self.deps.store.highest_seq_between(&self.agent.agent_id, lo, hi)?;
                stored_through.insert(feed as u32, last.unwrap_or(lo));
            }
        }
        self.send(Out::Welcome(Welcome {
            agent_id: self.agent.agent_id.clone(),
            agency: self.agent.agency.clone(),
            max_batch_bytes: cfg.max_batch_bytes,
            max_batch_records: cfg.max_batch_records,
            heartbeat_interval_secs: cfg.heartbeat_interval.as_secs().max(1) as u32,
            certificate_not_after: Some(timefmt::to_timestamp(timefmt::from_micros(
                self.agent.cert_not_after_us,
            ))),
            stored_through,
        }))
        .await?;
        self.offer_policy().await?;

        loop {
            let Some(msg) = self.next(inbound).await? else {
                self.offer_policy().await?;
                continue;
            };
            match msg.body {
                Some(In::Batch(batch)) => self.batch(batch).await?,
                Some(In::Heartbeat(hb)) => {
                    let counters = hb.counters;
                    let policy = hb.policy;
                    // Heartbeats always update: their counters are what
                    // operators see (every 30 s by default).
                    self.touch(true, move |a| {
                        if counters.is_some() {
                            a.counters = counters.clone();
                        }
                        if policy.is_some() {
                            a.policy = policy.clone();
                        }
                    })?;
                }
                Some(In::PolicyApplied(p)) => {
                    if p.ok {
                        tracing::info!(agent_id = %self.agent.agent_id, version = p.version, "agent applied the policy");
                    } else {
                        tracing::warn!(agent_id = %self.agent.agent_id, version = p.version, error = %p.error, "agent could not apply the policy");
                    }
                    let updated = self.deps.store.update_agent(&self.agent.agent_id, |a| {
                        let old = a.policy.clone().unwrap_or_default();
                        a.policy = Some(if p.ok {
                            PolicyStatus {
                                version: p.version,
                                digest: p.digest.clone(),
                                error: String::new(),
                                ioc_entries: p.ioc_entries,
                                // the next heartbeat reports them
                                rule_files: Vec::new(),
                            }
                        } else {
                            PolicyStatus { error: clean_text(&p.error, 500), ..old }
                        });
                    })?;
                    if let Some(a) = updated {
                        self.agent = a;
                    }
                    self.deps.store.flush().await?;
                }
                Some(In::Renew(renew)) => self.renew(&renew.csr_pem).await?,
                Some(In::Hello(_)) => {
                    return Err(crate::error::invalid("Hello may only be sent once per stream").into());
                }
                None => {
                    // A message kind from a newer agent: ignore it.
                }
            }
        }
    }

    /// Sends the agency's current policy unless the agent runs it already
    /// or it was sent on this stream.
    async fn offer_policy(&mut self) -> Result<(), End> {
        if self.agent.downstream {
            // policies are for agents; a downstream collector has its own
            return Ok(());
        }
        let Some(p) = self.deps.store.effective_policy(&self.agent.agency)? else {
            return Ok(());
        };
        let runs = self.deps.store.agent(&self.agent.agent_id)?.and_then(|a| a.policy).map(|s| s.version);
        if runs == Some(p.policy_version) || self.policy_sent == Some(p.policy_version) {
            return Ok(());
        }
        self.policy_sent = Some(p.policy_version);
        tracing::info!(agent_id = %self.agent.agent_id, version = p.policy_version, "sending policy");
        self.send(Out::Policy(PolicyUpdate {
            version: p.policy_version,
            digest: p.digest,
            files: p.files,
            created: Some(timefmt::to_timestamp(timefmt::from_micros(p.created_us))),
        }))
        .await
    }

    /// Records liveness (and more); unless forced, at most every few
    /// seconds so that busy streams do not rewrite the agent record per batch.
    fn touch(&mut self, force: bool, f: impl Fn(&mut AgentRec)) -> Result<(), Status> {
        let due = force || self.last_seen_write.is_none_or(|t| t.elapsed() >= SEEN_WRITE_INTERVAL);
        if due {
            let now = timefmt::micros(OffsetDateTime::now_utc());
            self.deps.store.update_agent(&self.agent.agent_id, |a| {
                f(a);
                a.last_seen_us = now;
            })?;
            self.last_seen_write = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    async fn batch(&mut self, batch: Batch) -> Result<(), End> {
        let cfg = self.deps.config.get();
        let first_seq = batch.records.first().map(|r| r.seq).unwrap_or(0);
        let last_seq = batch.records.last().map(|r| r.seq).unwrap_or(0);
        if let Some(reason) = check_batch(&batch, cfg.max_batch_records, cfg.max_batch_bytes) {
            tracing::info!(agent_id = %self.agent.agent_id, first_seq, last_seq, %reason, "batch rejected");
            self.deps.store.update_agent(&self.agent.agent_id, |a| a.batches_rejected += 1)?;
            self.deps.metrics.batches_rejected.inc();
            return self
                .send(Out::Rejected(BatchRejected {
                    first_seq,
                    last_seq,
                    reason,
                    max_batch_bytes: cfg.max_batch_bytes,
                    max_batch_records: cfg.max_batch_records,
                }))
                .await;
        }
        if batch.records.is_empty() {
            return Ok(());
        }
        let arrived = std::time::Instant::now();
        let received = OffsetDateTime::now_utc();
        let incoming: Vec<Incoming> =
            batch.records.iter().map(|r| prepare(r, &self.agent, received, &cfg.regulation)).collect();
        let store = self.deps.store.clone();
        let (agent_id, agency) = (self.agent.agent_id.clone(), self.agent.agency.clone());
        let received_us = timefmt::micros(received);
        let outcome =
            tokio::task::spawn_blocking(move || store.ingest(&agent_id, &agency, received_us, &incoming))
                .await
                .map_err(error::join_error)??;
        let started = std::time::Instant::now();
        self.deps.store.flush().await?;
        if started.elapsed() > crate::store::SLOW_FLUSH {
            tracing::warn!(elapsed = ?started.elapsed(), "slow database flush");
        }
        if outcome.invalid > 0 {
            tracing::warn!(agent_id = %self.agent.agent_id, invalid = outcome.invalid, "records quarantined");
        }
        self.touch(false, |_| {})?;
        let m = &self.deps.metrics;
        m.records_stored.inc_by(u64::from(outcome.stored));
        m.records_duplicate.inc_by(u64::from(outcome.duplicates));
        m.records_invalid.inc_by(u64::from(outcome.invalid));
        m.batches.inc();
        m.batch_records.observe(batch.records.len() as f64);
        m.ingest_seconds.observe(arrived.elapsed().as_secs_f64());
        self.send(Out::Ack(Ack {
            first_seq,
            last_seq,
            stored: outcome.stored,
            duplicates: outcome.duplicates,
        }))
        .await
    }

    async fn renew(&mut self, csr_pem: &str) -> Result<(), End> {
        let now = OffsetDateTime::now_utc();
        let agent_id = self.agent.agent_id.clone();
        let issued = match self.deps.ca.sign_agent(
            csr_pem,
            &agent_id,
            now,
            self.deps.config.get().agent_certificate_ttl,
        ) {
            Ok(i) => i,
            Err(e) => {
                // The agent retries with a fresh request later.
                tracing::warn!(%agent_id, error = %e, "certificate renewal refused");
                return Ok(());
            }
        };
        let not_after_us = timefmt::micros(issued.not_after);
        let serial = issued.serial.clone();
        self.deps.store.update_agent(&agent_id, |a| {
            a.cert_not_after_us = not_after_us;
            a.cert_serial = serial.clone();
        })?;
        self.deps.store.flush().await?;
        tracing::info!(%agent_id, not_after = %timefmt::rfc3339(issued.not_after), "agent certificate renewed");
        self.send(Out::Certificate(Certificate {
            certificate_pem: issued.certificate_pem,
            ca_chain_pem: self.deps.ca.cert_pem().to_string(),
            not_after: Some(timefmt::to_timestamp(issued.not_after)),
        }))
        .await
    }
}

impl From<crate::store::StoreError> for End {
    fn from(e: crate::store::StoreError) -> End {
        End::Status(e.into())
    }
}

/// Why a batch is refused as a whole, if it is: too many records, too many
/// bytes, or sequence numbers that are zero or not strictly increasing.
pub(crate) fn check_batch(batch: &Batch, max_records: u32, max_bytes: u32) -> Option<String> {
    let size = batch.encoded_len();
    if batch.records.len() > max_records as usize {
        Some(format!("{} records exceed the limit of {max_records}", batch.records.len()))
    } else if size > max_bytes as usize {
        Some(format!("{size} bytes exceed the limit of {max_bytes}"))
    } else if batch.records.iter().any(|r| r.seq == 0)
        || batch.records.windows(2).any(|w| w[0].seq >= w[1].seq)
    {
        Some(String::from("sequence numbers must be non-zero and strictly increasing"))
    } else {
        None
    }
}

/// Validates one record and stamps the collector's view of the identity
/// into its `canhgac` object. An alert keeps the typed facts its agent
/// sent; an older agent's alert gets them derived from its EVE JSON, here
/// and only here. Bad records are kept for inspection.
pub(crate) fn prepare(
    r: &canhgac_proto::v1::Record,
    agent: &AgentRec,
    received: OffsetDateTime,
    reg: &crate::rules::Regulation,
) -> Incoming {
    let invalid =
        |reason: &str| Incoming::Invalid { seq: r.seq, reason: reason.to_string(), raw: r.eve_json.clone() };
    // members read as written: no value tree is built and re-encoded
    let mut obj = match RawObject::parse(&r.eve_json) {
        Ok(obj) => obj,
        Err(NotAnObject::Invalid) => return invalid("eve_json is not valid JSON"),
        Err(NotAnObject::OtherType) => return invalid("eve_json is not a JSON object"),
    };
    let Some(event_type) = obj.get_str("event_type") else {
        return invalid("eve_json has no event_type");
    };
    let incident = r.kind == RecordKind::Incident as i32;
    let summary = r.kind == RecordKind::Summary as i32;
    if (incident || summary) && !agent.downstream {
        return invalid("only a downstream collector may send incidents and summaries");
    }
    if incident && r.incident.is_none() {
        return invalid("an incident record without its incident");
    }
    if summary && r.summary.as_ref().is_none_or(|s| time::Date::from_julian_day(s.julian_day).is_err()) {
        return invalid("a summary record without its report or with an invalid day");
    }
    let alert = !incident && !summary && (event_type == "alert" || r.kind == RecordKind::Alert as i32);
    let severity = if !alert {
        0
    } else if (1..=4).contains(&r.severity) {
        // the typed field first; an older agent's EVE value, else 3
        r.severity
    } else {
        obj.get_object("alert")
            .and_then(|a| a.get("severity").and_then(|s| s.parse::<u32>().ok()))
            .filter(|s| (1..=4).contains(s))
            .unwrap_or(3)
    };
    let time = r.time.as_ref().map(timefmt::from_timestamp).unwrap_or(received);

    let mut ours = obj.remove_object("canhgac").unwrap_or_default();
    // a downstream collector forwards what its agents said: kept as the
    // record's origin, under the province's identity here
    let code_like =
        |c: &str| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if agent.downstream && !(code_like(&r.province) && code_like(&r.agency)) {
        return invalid("a downstream record's province or agency is not a code");
    }
    let origin = agent.downstream.then(|| {
        let province = if r.province.is_empty() { agent.agency.clone() } else { r.province.clone() };
        let mut o = RawObject::default();
        for k in ["agent_id", "agency", "hostname"] {
            if let Some(v) = ours.remove(k) {
                o.insert(k, v);
            }
        }
        o.insert_str("province", &province);
        ours.insert("origin", o.to_json().into());
        Box::new(crate::store::Origin {
            agency: clean_text(&r.agency, 64),
            province,
            incident: if incident { r.incident.clone() } else { None },
            summary: if summary { r.summary.clone() } else { None },
        })
    });
    ours.insert_str("agent_id", &agent.agent_id);
    ours.insert_str("agency", &agent.agency);
    ours.insert_str("hostname", &agent.hostname);
    obj.insert("canhgac", ours.to_json().into());
    let eve_json = obj.to_json();
    let facts = alert.then(|| {
        Box::new(match &r.facts {
            Some(f) => f.clone(),
            // an older agent: its EVE JSON read as a tree, once
            None => match serde_json::from_str(&eve_json) {
                Ok(value) => crate::incident::facts::legacy(&value, &|d| reg.is_host_detector(d)),
                Err(_) => canhgac_proto::v1::RecordFacts::default(),
            },
        })
    });
    Incoming::Valid { seq: r.seq, alert, severity, time_us: timefmt::micros(time), eve_json, facts, origin }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canhgac_proto::v1::Record;

    fn agent() -> AgentRec {
        AgentRec {
            agent_id: "id-1".into(),
            agency: "SO-TTTT".into(),
            hostname: "web01".into(),
            ..Default::default()
        }
    }

    #[test]
    fn identity_comes_from_the_collector_not_the_record() {
        let rec = Record {
            seq: 4,
            kind: RecordKind::Alert as i32,
            severity: 2,
            eve_json: br#"{"event_type":"alert","alert":{"severity":1},"canhgac":{"agent_id":"forged","agency":"OTHER","detector":"ioc"}}"#.to_vec(),
            time: None,
            facts: None,
            ..Default::default()
        };
        let Incoming::Valid { eve_json, severity, alert, facts, .. } =
            prepare(&rec, &agent(), OffsetDateTime::now_utc(), &crate::rules::Regulation::embedded())
        else {
            panic!("valid record refused");
        };
        let v: serde_json::Value = serde_json::from_str(&eve_json).unwrap();
        assert_eq!(v["canhgac"]["agent_id"], "id-1");
        assert_eq!(v["canhgac"]["agency"], "SO-TTTT");
        assert_eq!(v["canhgac"]["detector"], "ioc");
        // the typed severity wins over the EVE value
        assert_eq!((severity, alert), (2, true));
        // an older agent's alert: facts derived once, here
        assert_eq!(facts.map(|f| f.detector.clone()), Some("ioc".to_string()));
    }

    #[test]
    fn typed_facts_are_kept_as_sent_and_events_have_none() {
        let facts = canhgac_proto::v1::RecordFacts {
            detector: "rule".into(),
            signature_id: 2_000_001,
            domain: "evil.example".into(),
            ..Default::default()
        };
        let rec = Record {
            seq: 1,
            kind: RecordKind::Alert as i32,
            severity: 1,
            // the EVE says otherwise: decisions follow the typed facts
            eve_json: br#"{"event_type":"alert","alert":{"signature_id":5},"canhgac":{"detector":"ioc"}}"#
                .to_vec(),
            time: None,
            facts: Some(facts.clone()),
            ..Default::default()
        };
        let Incoming::Valid { facts: kept, .. } =
            prepare(&rec, &agent(), OffsetDateTime::now_utc(), &crate::rules::Regulation::embedded())
        else {
            panic!("valid record refused");
        };
        assert_eq!(kept.as_deref(), Some(&facts));
        let ev = Record {
            seq: 2,
            kind: RecordKind::Event as i32,
            eve_json: br#"{"event_type":"dns"}"#.to_vec(),
            ..Default::default()
        };
        let Incoming::Valid { facts, alert, .. } =
            prepare(&ev, &agent(), OffsetDateTime::now_utc(), &crate::rules::Regulation::embedded())
        else {
            panic!("valid event refused");
        };
        assert_eq!((alert, facts), (false, None));
    }

    #[test]
    fn bad_records_are_invalid_not_dropped() {
        for raw in [&b"\xff\xfe"[..], b"[1,2]", b"{\"no\":\"type\"}"] {
            let rec = Record { seq: 1, eve_json: raw.to_vec(), ..Default::default() };
            match prepare(&rec, &agent(), OffsetDateTime::now_utc(), &crate::rules::Regulation::embedded()) {
                Incoming::Invalid { raw: kept, .. } => assert_eq!(kept, raw),
                Incoming::Valid { .. } => panic!("accepted {raw:?}"),
            }
        }
    }
}
