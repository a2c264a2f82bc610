//! At a downstream (provincial) collector: the link to the upstream
//! (national) collector.
//!
//! `canhgac-collector upstream enroll` trades a province token of the
//! national collector for a certificate, pinning the national CA, and
//! keeps the identity in `DATA_DIR/upstream/` (`upstream.json`,
//! `key.pem`, `cert.pem`, `ca.pem`). When that directory exists, `serve`
//! runs [`run`] (a singleton: one replica at a time): it keeps a telemetry
//! stream open, reads the selected alerts and every incident change from
//! the store after the positions the national collector's Welcome names,
//! sends them in batches and moves on only when a batch is acknowledged.
//! A national collector that is down only delays delivery; the backlog is
//! the gauge `upstream_backlog`. The certificate is renewed over the
//! stream when it has less than a third of its life left.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use canhgac_proto::client::hostname;
use canhgac_proto::{
    TELEMETRY_PROTOCOL_VERSION,
    client::{ClientError, ClientIdentity, CollectorAddr, ServerTrust, TlsClient, error_chain},
    files::write_atomic,
    identity::Identity,
    timefmt,
    v1::{
        AgentMessage, Batch, CollectorMessage, EnrollRequest, Heartbeat, Hello, HostInventory, Record,
        RecordKind, RenewCertificate, agent_message::Body as Up, collector_message::Body as Down,
        enrollment_client::EnrollmentClient, telemetry_client::TelemetryClient,
    },
};
use prost::Message as _;
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{FEED_ALERTS, FEED_INCIDENTS, FEED_SUMMARIES, seq, split};
use crate::{
    incident,
    report::{self, schedule},
    rules::Regulation,
    store::{Store, StoreError, SystemRec},
};

/// Most days of daily reports sent after a long absence of the upstream
/// collector (the older ones are not sent).
const MAX_SUMMARY_DAYS: u64 = 31;

/// Counters: the last incident change and daily report the upstream
/// collector acknowledged (the alerts' is `supervise::UPSTREAM_POSITION`).
const UPSTREAM_CHANGES: &str = "upstream_changes";
const UPSTREAM_SUMMARIES: &str = "upstream_summaries";

/// Most incident history events sent with one change (the newest).
const MAX_HISTORY: usize = 200;
/// Renew the certificate when less than this part of its life is left.
const RENEW_BELOW: f64 = 1.0 / 3.0;
/// An acknowledgement not received within this time ends the session.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0} already holds an upstream identity; pass --force to enroll again")]
    AlreadyEnrolled(PathBuf),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the upstream collector refused: {0}")]
    Refused(String),
    #[error("the upstream collector sent an invalid answer: {0}")]
    Protocol(String),
    #[error("cannot create a key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `upstream.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpstreamFile {
    pub version: u32,
    /// `https://HOST:PORT` of the upstream collector.
    pub national: String,
    /// This collector's id there (its certificate's).
    pub peer_id: String,
    /// The province code the upstream collector files this one under.
    pub province: String,
    pub enrolled_at: String,
}

/// The link's identity, as loaded.
#[derive(Clone)]
pub struct Link {
    pub file: UpstreamFile,
    dir: PathBuf,
    key_pem: String,
    cert_pem: String,
    ca_pem: String,
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("upstream")
}

fn read(path: &Path) -> Result<String, UpstreamError> {
    std::fs::read_to_string(path)
        .map_err(|e| UpstreamError::File { path: path.to_path_buf(), reason: e.to_string() })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), UpstreamError> {
    write_atomic(path, text.as_bytes(), mode)
        .map_err(|e| UpstreamError::File { path: path.to_path_buf(), reason: e.to_string() })
}

impl Link {
    /// The link of `data_dir`, if `upstream enroll` made one.
    pub fn load(data_dir: &Path) -> Result<Option<Link>, UpstreamError> {
        let dir = dir(data_dir);
        let json = dir.join("upstream.json");
        if !json.exists() {
            return Ok(None);
        }
        let file: UpstreamFile = serde_json::from_str(&read(&json)?)
            .map_err(|e| UpstreamError::File { path: json.clone(), reason: e.to_string() })?;
        Ok(Some(Link {
            file,
            key_pem: read(&dir.join("key.pem"))?,
            cert_pem: read(&dir.join("cert.pem"))?,
            ca_pem: read(&dir.join("ca.pem"))?,
            dir,
        }))
    }

    fn client(&self) -> Result<TlsClient, UpstreamError> {
        let addr: CollectorAddr = self.file.national.parse()?;
        Ok(TlsClient::new(
            addr,
            ServerTrust::Ca(self.ca_pem.clone()),
            Some(ClientIdentity {
                certificate_pem: self.cert_pem.clone(),
                private_key_pem: self.key_pem.clone(),
            }),
        )?)
    }

    /// Keeps a renewed certificate and its key (used from the next
    /// connection on).
    fn save_renewed(&mut self, key_pem: String, cert_pem: String) -> Result<(), UpstreamError> {
        write(&self.dir.join("key.pem"), &key_pem, 0o600)?;
        write(&self.dir.join("cert.pem"), &cert_pem, 0o644)?;
        self.key_pem = key_pem;
        self.cert_pem = cert_pem;
        Ok(())
    }
}

fn key_and_csr() -> Result<(KeyPair, String), rcgen::Error> {
    canhgac_proto::client::key_and_csr(&hostname())
}

/// `canhgac-collector upstream enroll`: trades a province token of the
/// upstream collector at `national` (its CA pinned by `ca_pin`) for this
/// collector's identity there.
pub async fn enroll(
    data_dir: &Path,
    national: &str,
    token: &str,
    ca_pin: &str,
    force: bool,
) -> Result<UpstreamFile, UpstreamError> {
    let dir = dir(data_dir);
    if dir.join("upstream.json").exists() && !force {
        return Err(UpstreamError::AlreadyEnrolled(dir));
    }
    let addr: CollectorAddr = national.parse()?;
    let pin = canhgac_proto::normalize_pin(ca_pin).ok_or_else(|| ClientError::BadPin(ca_pin.to_string()))?;
    let client = TlsClient::new(addr.clone(), ServerTrust::Pin(pin.clone()), None)?;
    let channel = client.connect(Duration::from_secs(15)).await?;
    let (key, csr) = key_and_csr()?;
    let response = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            token: token.trim().to_string(),
            csr_pem: csr,
            hostname: hostname(),
            agent_version: format!("canhgac-collector {}", env!("CARGO_PKG_VERSION")),
            expected_agency: String::new(),
        })
        .await
        .map_err(|s| {
            UpstreamError::Refused(if s.message().is_empty() { error_chain(&s) } else { s.message().into() })
        })?
        .into_inner();
    let ca = canhgac_proto::client::parse_certs(&response.ca_chain_pem, "CA chain")
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    if !ca.iter().any(|c| canhgac_proto::cert_pin(c) == pin) {
        return Err(UpstreamError::Protocol("the CA chain does not contain the pinned CA".into()));
    }
    let cert = canhgac_proto::client::parse_certs(&response.certificate_pem, "certificate")
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    match Identity::from_cert_der(&cert[0]) {
        Ok(Identity::Agent(id)) if id == response.agent_id => {}
        other => {
            return Err(UpstreamError::Protocol(format!(
                "certificate identity {other:?} does not match id {}",
                response.agent_id
            )));
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| UpstreamError::File { path: dir.clone(), reason: e.to_string() })?;
    let file = UpstreamFile {
        version: 1,
        national: addr.to_string(),
        peer_id: response.agent_id,
        province: response.agency,
        enrolled_at: timefmt::rfc3339(OffsetDateTime::now_utc()),
    };
    write(&dir.join("key.pem"), &key.serialize_pem(), 0o600)?;
    write(&dir.join("cert.pem"), &response.certificate_pem, 0o644)?;
    write(&dir.join("ca.pem"), &response.ca_chain_pem, 0o644)?;
    let json = serde_json::to_string_pretty(&file).unwrap_or_default();
    // written last: its presence means the link is complete
    write(&dir.join("upstream.json"), &json, 0o644)?;
    Ok(file)
}

/// What the link needs.
pub struct UpstreamDeps {
    pub store: Store,
    pub regulation: Arc<Regulation>,
    /// Alerts with 1 ≤ severity ≤ this go up (0: none).
    pub alert_severity: u32,
    /// For the daily reports (`supervision.agent_silence_limit`).
    pub silence_limit: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub shutdown: watch::Receiver<bool>,
}

/// Keeps the link up until shutdown, reconnecting with back-off.
pub async fn run(deps: Arc<UpstreamDeps>, mut link: Link) {
    let mut shutdown = deps.shutdown.clone();
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let result = session(&deps, &mut link).await;
        deps.metrics.upstream_connected.set(0);
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(national = %link.file.national, error = %e, "upstream link down; retrying in {backoff:?}");
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = crate::registry::until_true(&mut shutdown) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Positions of the feeds: what the upstream collector has stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Positions {
    alerts: u64,
    changes: u64,
    /// Julian day of the last daily report.
    summary_day: u64,
}

/// The next batch after `at`, and where its reading ended.
fn gather(
    deps: &UpstreamDeps,
    at: Positions,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<Record>, Positions), StoreError> {
    let store = &deps.store;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut next = at;
    if deps.alert_severity > 0 {
        for (cursor, rec) in store.alerts_after(at.alerts, limit)? {
            let fits = bytes + rec.encoded_len() + 64 <= max_bytes;
            if out.len() >= limit || (!out.is_empty() && !fits) {
                break;
            }
            next.alerts = cursor;
            if rec.severity == 0 || rec.severity > deps.alert_severity {
                continue;
            }
            if rec.encoded_len() + 1024 > max_bytes {
                too_large(deps, "alert", cursor, rec.encoded_len(), max_bytes)?;
                continue;
            }
            let r = Record {
                seq: seq(FEED_ALERTS, cursor),
                kind: RecordKind::Alert as i32,
                time: Some(timefmt::to_timestamp(timefmt::from_micros(rec.time_us))),
                severity: rec.severity,
                eve_json: rec.eve_json.into_bytes(),
                facts: rec.facts,
                agency: if rec.origin_agency.is_empty() { rec.agency } else { rec.origin_agency },
                province: rec.province,
                incident: None,
                summary: None,
            };
            bytes += r.encoded_len();
            out.push(r);
        }
    }
    if out.len() < limit {
        let systems: HashMap<u64, SystemRec> = store.systems()?.into_iter().map(|s| (s.id, s)).collect();
        let now = timefmt::micros(OffsetDateTime::now_utc());
        let view = incident::View { reg: &deps.regulation, systems: &systems, now_us: now };
        for (cursor, change) in store.incident_changes_after(at.changes, limit - out.len())? {
            let Some(inc) = change.incident else {
                next.changes = cursor;
                continue;
            };
            let mut msg = incident::incident_msg(&inc, &view);
            if msg.history.len() > MAX_HISTORY {
                msg.history.drain(..msg.history.len() - MAX_HISTORY);
            }
            let eve = serde_json::json!({
                "event_type": "incident",
                "change": change.change,
                "incident": { "id": msg.id, "agency": msg.agency, "state": msg.state, "category": msg.category },
            });
            let r = Record {
                seq: seq(FEED_INCIDENTS, cursor),
                kind: RecordKind::Incident as i32,
                time: msg.updated,
                severity: msg.severity,
                eve_json: eve.to_string().into_bytes(),
                facts: None,
                agency: msg.agency.clone(),
                province: msg.province.clone(),
                incident: Some(msg),
                summary: None,
            };
            if r.encoded_len() > max_bytes {
                too_large(deps, "incident change", cursor, r.encoded_len(), max_bytes)?;
                next.changes = cursor;
                continue;
            }
            if !out.is_empty() && bytes + r.encoded_len() > max_bytes {
                break;
            }
            bytes += r.encoded_len();
            next.changes = cursor;
            out.push(r);
        }
    }
    if out.len() < limit {
        summaries(deps, at, limit, max_bytes, &mut out, &mut bytes, &mut next)?;
    }
    Ok((out, next))
}

/// Adds each agency's coverage as the upstream collector needs it (the
/// four supervision layers, agents online, systems supervised, open and
/// overdue incidents) to its part of a daily report, as of `now_us`.
fn add_coverage(deps: &UpstreamDeps, rep: &mut report::Report, now_us: i64) -> Result<(), StoreError> {
    let limit = deps.silence_limit;
    let cov = crate::coverage::coverage(&deps.store, &deps.regulation, None, now_us, &|g, now| {
        crate::supervise::online(false, g.last_seen_us, now, limit)
    })?;
    for block in &mut rep.agencies {
        let Some(c) = cov.agencies.iter().find(|c| c.agency == block.code) else { continue };
        let yes = |ok: bool| if ok { "yes" } else { "no" }.to_string();
        let mut rows: Vec<Vec<String>> = c
            .layers
            .iter()
            .map(|l| vec![format!("layer: {}", l.name), yes(l.ok), l.detail.clone()])
            .collect();
        rows.push(vec![
            "agents online".into(),
            yes(c.agents_online == c.agents && c.agents > 0),
            format!("{}/{}", c.agents_online, c.agents),
        ]);
        rows.push(vec![
            "systems supervised".into(),
            yes(c.systems_supervised == c.systems && c.systems > 0),
            format!("{}/{}", c.systems_supervised, c.systems),
        ]);
        rows.push(vec![
            "open incidents".into(),
            yes(c.overdue_incidents == 0),
            format!("{} open, {} overdue", c.open_incidents, c.overdue_incidents),
        ]);
        block.sections.push(report::Section {
            id: "coverage",
            title: "Coverage / Mức độ giám sát".into(),
            columns: vec!["measure".into(), "ok".into(), "detail".into()],
            rows,
        });
    }
    Ok(())
}

/// A record larger than the upstream collector's batches would be refused
/// every time and hold the link: it is left out, counted
/// (`upstream_dropped`) and logged.
fn too_large(
    deps: &UpstreamDeps,
    what: &str,
    cursor: u64,
    bytes: usize,
    max: usize,
) -> Result<(), StoreError> {
    tracing::warn!(
        what,
        cursor,
        bytes,
        max,
        "record too large for the upstream collector's batches; not sent"
    );
    deps.store.add_to_counter(crate::supervise::UPSTREAM_DROPPED, 1)
}

/// The daily reports of the days ended since the last one the upstream
/// collector has (only the last ended day the first time; at most
/// [`MAX_SUMMARY_DAYS`] after a long absence).
fn summaries(
    deps: &UpstreamDeps,
    at: Positions,
    limit: usize,
    max_bytes: usize,
    out: &mut Vec<Record>,
    bytes: &mut usize,
    next: &mut Positions,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    let Some((yesterday, _)) = schedule::last_period(report::Kind::Daily, now) else {
        return Ok(());
    };
    let last = u64::try_from(yesterday.to_julian_day()).unwrap_or(0);
    let mut day = if at.summary_day == 0 {
        last
    } else {
        (at.summary_day + 1).max(last.saturating_sub(MAX_SUMMARY_DAYS))
    };
    if day > last {
        // every ended day went up: nothing to read
        return Ok(());
    }
    let agencies: Vec<String> =
        deps.store.agencies()?.into_iter().filter(|a| !a.is_province()).map(|a| a.code).collect();
    while day <= last && out.len() < limit {
        let Some((from, to)) =
            time::Date::from_julian_day(day as i32).ok().and_then(|d| Some((d, d.next_day()?)))
        else {
            break;
        };
        if agencies.is_empty() {
            // nothing supervised yet: the report waits for the first agency
            break;
        }
        let req = report::Request {
            kind: report::Kind::Daily,
            agencies: agencies.clone(),
            from_us: schedule::midnight_us(from),
            to_us: schedule::midnight_us(to),
            now_us: timefmt::micros(now),
            lang: report::text::Lang::Vi,
            silence_limit: deps.silence_limit,
        };
        let mut rep = match report::build(&deps.store, &deps.regulation, &req) {
            Ok(r) => r,
            Err(report::ReportError::Store(e)) => return Err(e),
            Err(report::ReportError::Invalid(m)) => {
                tracing::warn!(day = %from, reason = %m, "daily report for upstream not made");
                break;
            }
        };
        add_coverage(deps, &mut rep, timefmt::micros(now))?;
        let json = report::render::render(&rep, report::render::Format::Json).unwrap_or_default();
        let eve = serde_json::json!({
            "event_type": "daily_summary", "from": from.to_string(), "to": to.to_string(), "agencies": agencies.len(),
        });
        let r = Record {
            seq: seq(FEED_SUMMARIES, day),
            kind: RecordKind::Summary as i32,
            time: Some(timefmt::to_timestamp(timefmt::from_micros(schedule::midnight_us(to)))),
            eve_json: eve.to_string().into_bytes(),
            summary: Some(canhgac_proto::v1::DailySummary {
                julian_day: day as i32,
                from: from.to_string(),
                to: to.to_string(),
                report_json: json,
            }),
            ..Default::default()
        };
        if r.encoded_len() > max_bytes {
            // it would be refused in every batch and hold the link: the
            // day's report stays here (report daily) and the rest goes on
            tracing::warn!(day = %from, bytes = r.encoded_len(), max_bytes, "daily report too large for the upstream collector's batches; not sent");
            next.summary_day = day;
            day += 1;
            continue;
        }
        if !out.is_empty() && *bytes + r.encoded_len() > max_bytes {
            break;
        }
        *bytes += r.encoded_len();
        next.summary_day = day;
        out.push(r);
        day += 1;
    }
    Ok(())
}

/// How many alerts and changes wait after `at` (for the backlog gauge;
/// alerts counted whatever their severity, an upper bound).
fn backlog(store: &Store, at: Positions) -> u64 {
    let alerts = (*store.alert_cursor().borrow()).saturating_sub(at.alerts);
    let changes = (*store.incident_change_cursor().borrow()).saturating_sub(at.changes);
    alerts.saturating_add(changes)
}

async fn session(deps: &Arc<UpstreamDeps>, link: &mut Link) -> Result<(), UpstreamError> {
    let client = link.client()?;
    let channel = client.connect(Duration::from_secs(15)).await?;
    let (tx, rx) = mpsc::channel::<AgentMessage>(4);
    let hello = Hello {
        protocol_version: TELEMETRY_PROTOCOL_VERSION,
        agent_version: format!("canhgac-collector {}", env!("CARGO_PKG_VERSION")),
        inventory: Some(HostInventory { hostname: hostname(), ..Default::default() }),
        ..Default::default()
    };
    let send = |tx: &mpsc::Sender<AgentMessage>, body: Up| {
        let tx = tx.clone();
        async move {
            tx.send(AgentMessage { body: Some(body) })
                .await
                .map_err(|_| UpstreamError::Protocol("the stream closed".into()))
        }
    };
    send(&tx, Up::Hello(hello)).await?;
    let refused = |s: tonic::Status| UpstreamError::Refused(s.message().to_string());
    let mut inbound =
        TelemetryClient::new(channel).stream(ReceiverStream::new(rx)).await.map_err(refused)?.into_inner();
    let welcome = match inbound.message().await.map_err(refused)? {
        Some(CollectorMessage { body: Some(Down::Welcome(w)) }) => w,
        other => return Err(UpstreamError::Protocol(format!("expected Welcome, got {other:?}"))),
    };
    if welcome.stored_through.is_empty() {
        return Err(UpstreamError::Protocol(
            "the upstream collector does not take this collector as a province's (was it enrolled with a province token?)"
                .into(),
        ));
    }
    // where the upstream collector is, and never before what it already
    // acknowledged (its retention may have forgotten what it stored)
    let position = |feed: u64| welcome.stored_through.get(&(feed as u32)).map(|s| split(*s).1).unwrap_or(0);
    let store = deps.store.clone();
    let acked = tokio::task::spawn_blocking(move || -> Result<[u64; 3], StoreError> {
        Ok([
            store.counter_value(crate::supervise::UPSTREAM_POSITION)?,
            store.counter_value(UPSTREAM_CHANGES)?,
            store.counter_value(UPSTREAM_SUMMARIES)?,
        ])
    })
    .await
    .map_err(|e| UpstreamError::Protocol(e.to_string()))??;
    let mut at = Positions {
        alerts: position(FEED_ALERTS).max(acked[0]),
        changes: position(FEED_INCIDENTS).max(acked[1]),
        summary_day: position(FEED_SUMMARIES).max(acked[2]),
    };
    let max_records = (welcome.max_batch_records as usize).clamp(1, 1000);
    let max_bytes = (welcome.max_batch_bytes as usize).max(4096) * 3 / 4;
    let heartbeat = Duration::from_secs(u64::from(welcome.heartbeat_interval_secs.max(5)));
    tracing::info!(national = %link.file.national, province = %link.file.province, alerts_from = at.alerts, changes_from = at.changes, "upstream link open");
    remember(deps, at).await?;
    deps.metrics.upstream_connected.set(1);

    // renew the certificate over the stream when a third of its life is left
    let mut pending_key: Option<KeyPair> = None;
    if let Some(not_after) = &welcome.certificate_not_after {
        let left = timefmt::from_timestamp(not_after) - OffsetDateTime::now_utc();
        let enrolled = time::OffsetDateTime::parse(
            &link.file.enrolled_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let life = timefmt::from_timestamp(not_after) - enrolled;
        if left.as_seconds_f64() < life.as_seconds_f64().max(86_400.0) * RENEW_BELOW {
            let (key, csr) = key_and_csr()?;
            pending_key = Some(key);
            send(&tx, Up::Renew(RenewCertificate { csr_pem: csr })).await?;
        }
    }

    let mut shutdown = deps.shutdown.clone();
    let mut alerts_moved = deps.store.alert_cursor();
    let mut changes_moved = deps.store.incident_change_cursor();
    let mut limit = max_records;
    loop {
        alerts_moved.borrow_and_update();
        changes_moved.borrow_and_update();
        let d = deps.clone();
        let (records, next) = tokio::task::spawn_blocking(move || gather(&d, at, limit, max_bytes))
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))??;
        deps.metrics.upstream_backlog.set(i64::try_from(backlog(&deps.store, at)).unwrap_or(i64::MAX));
        if records.is_empty() {
            if next != at {
                // only alerts below the selected severity: nothing to send
                at = next;
                continue;
            }
            tokio::select! {
                _ = crate::registry::until_true(&mut shutdown) => return Ok(()),
                _ = alerts_moved.changed() => {}
                _ = changes_moved.changed() => {}
                _ = tokio::time::sleep(heartbeat) => {
                    let hb = Heartbeat { time: Some(timefmt::to_timestamp(OffsetDateTime::now_utc())), ..Default::default() };
                    send(&tx, Up::Heartbeat(hb)).await?;
                }
                m = inbound.message() => {
                    let m = m.map_err(refused)?.ok_or_else(|| UpstreamError::Protocol("the upstream collector closed the stream".into()))?;
                    other_message(m, &mut pending_key, link)?;
                }
            }
            continue;
        }
        let (first, last, n) = (records[0].seq, records[records.len() - 1].seq, records.len());
        send(&tx, Up::Batch(Batch { records })).await?;
        // exactly one Ack or BatchRejected per batch, in order
        loop {
            let m = tokio::select! {
                _ = crate::registry::until_true(&mut shutdown) => return Ok(()),
                _ = tokio::time::sleep(ACK_TIMEOUT) => {
                    return Err(UpstreamError::Protocol(format!("no acknowledgement within {ACK_TIMEOUT:?}")));
                }
                m = inbound.message() => m.map_err(refused)?.ok_or_else(|| UpstreamError::Protocol("the upstream collector closed the stream".into()))?,
            };
            match m.body {
                Some(Down::Ack(a)) if a.first_seq == first && a.last_seq == last => {
                    at = next;
                    remember(deps, at).await?;
                    limit = max_records;
                    deps.metrics.upstream_sent.inc_by(n as u64);
                    tracing::debug!(
                        records = n,
                        stored = a.stored,
                        duplicates = a.duplicates,
                        "upstream acknowledged"
                    );
                    break;
                }
                Some(Down::Ack(a)) => {
                    return Err(UpstreamError::Protocol(format!(
                        "acknowledgement of {}..{} for a batch of {first}..{last}",
                        a.first_seq, a.last_seq
                    )));
                }
                Some(Down::Rejected(r)) => {
                    if limit == 1 {
                        return Err(UpstreamError::Refused(format!(
                            "a single record was refused: {}",
                            r.reason
                        )));
                    }
                    tracing::warn!(reason = %r.reason, "upstream refused a batch; sending smaller ones");
                    limit = (limit / 2).max(1);
                    break;
                }
                _ => other_message(m, &mut pending_key, link)?,
            }
        }
    }
}

/// Keeps the acknowledged alert position in the store, so that retention
/// counts the selected alerts it removes before they went up.
async fn remember(deps: &Arc<UpstreamDeps>, at: Positions) -> Result<(), UpstreamError> {
    let store = deps.store.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        store.raise_counter(crate::supervise::UPSTREAM_POSITION, at.alerts)?;
        store.raise_counter(UPSTREAM_CHANGES, at.changes)?;
        store.raise_counter(UPSTREAM_SUMMARIES, at.summary_day)
    })
    .await
    .map_err(|e| UpstreamError::Protocol(e.to_string()))??;
    Ok(())
}

/// Messages besides acknowledgements: a renewed certificate is kept;
/// policies are for agents and are not applied here.
fn other_message(
    m: CollectorMessage,
    pending_key: &mut Option<KeyPair>,
    link: &mut Link,
) -> Result<(), UpstreamError> {
    match m.body {
        Some(Down::Certificate(c)) => match pending_key.take() {
            Some(key) => {
                link.save_renewed(key.serialize_pem(), c.certificate_pem)?;
                tracing::info!("upstream certificate renewed");
            }
            None => tracing::warn!("the upstream collector sent a certificate nobody asked for; ignored"),
        },
        Some(Down::Welcome(_)) => return Err(UpstreamError::Protocol("a second Welcome".into())),
        _ => {}
    }
    Ok(())
}
