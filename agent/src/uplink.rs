//! The uplink: the only part of the agent that talks to the collector.
//!
//! One telemetry stream at a time. Per session: Hello → Welcome, then send
//! durable spool records in batches (at most `max_in_flight` unacknowledged),
//! delete them on Ack, resend split on BatchRejected, send heartbeats, and
//! renew the certificate when a third of its lifetime is left. On any
//! failure the session ends and a new one starts after a jittered
//! exponential backoff; records not acknowledged are simply sent again (the
//! collector stores each (agent, seq) once).

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::Duration};

use canhgac_proto::{
    TELEMETRY_PROTOCOL_VERSION,
    client::{ClientError, error_chain},
    timefmt,
    v1::{
        AgentMessage, Batch, Heartbeat, Hello, PolicyStatus, RenewCertificate, agent_message::Body as Out,
        collector_message::Body as In, telemetry_client::TelemetryClient,
    },
};
use prost::Message as _;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    config::UplinkConfig,
    counters::Counters,
    spool::{Spool, SpoolError},
    state::{AgentIdentity, StateError},
};

/// Resolves once the flag is `true` (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Why the uplink stopped for good.
#[derive(Debug, PartialEq, Eq)]
pub enum Finished {
    /// Input finished and every record was acknowledged.
    Drained,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("collector: {}", status_text(.0))]
    Status(#[from] tonic::Status),
    #[error("the collector closed the stream")]
    Closed,
    #[error("no Welcome from the collector within 30 seconds")]
    NoWelcome,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot create a key for renewal: {0}")]
    Key(#[from] rcgen::Error),
}

fn status_text(s: &tonic::Status) -> String {
    if s.message().is_empty() { error_chain(s) } else { format!("{} ({:?})", s.message(), s.code()) }
}

/// Jittered exponential backoff ("equal jitter").
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, current: initial }
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    pub fn next_delay(&mut self) -> Duration {
        let cur = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = cur / 2;
        half + Duration::from_secs_f64(rand::random::<f64>() * half.as_secs_f64())
    }
}

pub struct Uplink {
    pub spool: Spool,
    pub state_dir: PathBuf,
    pub collector: Option<String>,
    pub cfg: UplinkConfig,
    pub counters: Arc<Counters>,
    /// Turns `true` when the input is exhausted (capture files).
    pub producer_done: watch::Receiver<bool>,
    pub exit_when_drained: bool,
    pub shutdown: watch::Receiver<bool>,
    /// Central policy: reported in Hello and heartbeats, updated on push.
    pub policy: Option<crate::policy::Policy>,
}

enum SessionEnd {
    Finished(Finished),
}

impl Uplink {
    pub async fn run(mut self) -> Result<Finished, SpoolError> {
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        loop {
            if *self.shutdown.borrow() {
                return Ok(Finished::Shutdown);
            }
            match self.session(&mut backoff).await {
                Ok(SessionEnd::Finished(f)) => return Ok(f),
                Err(SessionError::Spool(e)) if !e.is_full() => return Err(e),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "uplink to the collector interrupted");
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = until_true(&mut shutdown) => return Ok(Finished::Shutdown),
                    }
                }
            }
        }
    }

    fn drained(&self) -> bool {
        self.exit_when_drained && *self.producer_done.borrow() && self.spool.is_empty()
    }

    fn counters(&self) -> canhgac_proto::v1::AgentCounters {
        self.counters.snapshot(&self.spool.stats())
    }

    fn policy_status(&self) -> Option<PolicyStatus> {
        self.policy.as_ref().map(|p| p.status())
    }

    async fn session(&mut self, backoff: &mut Backoff) -> Result<SessionEnd, SessionError> {
        let mut identity = AgentIdentity::load(&self.state_dir)?;
        let client = identity.client(self.collector.as_deref())?;
        let channel = client.connect(self.cfg.connect_timeout).await?;
        let mut grpc = TelemetryClient::new(channel)
            .max_encoding_message_size(256 * 1024 * 1024)
            .max_decoding_message_size(16 * 1024 * 1024);
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let send = |tx: &mpsc::Sender<AgentMessage>, body: Out| {
            let tx = tx.clone();
            async move { tx.send(AgentMessage { body: Some(body) }).await.map_err(|_| SessionError::Closed) }
        };
        let inventory = tokio::task::spawn_blocking(crate::inventory::collect).await.unwrap_or_default();
        send(
            &tx,
            Out::Hello(Hello {
                protocol_version: TELEMETRY_PROTOCOL_VERSION,
                agent_version: crate::AGENT_VERSION.to_string(),
                inventory: Some(inventory),
                counters: Some(self.counters()),
                policy: self.policy_status(),
            }),
        )
        .await?;
        let mut inbound = grpc.stream(ReceiverStream::new(rx)).await?.into_inner();
        let welcome = match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
            Err(_) => return Err(SessionError::NoWelcome),
            Ok(Err(status)) => return Err(status.into()),
            Ok(Ok(None)) => return Err(SessionError::Closed),
            Ok(Ok(Some(m))) => match m.body {
                Some(In::Welcome(w)) => w,
                _ => return Err(SessionError::NoWelcome),
            },
        };
        Counters::add(&self.counters.connects, 1);
        backoff.reset();
        tracing::info!(
            agent_id = %welcome.agent_id,
            agency = %welcome.agency,
            collector = %client.addr(),
            spooled = self.spool.stats().records,
            "connected to the collector"
        );
        let mut max_records = self.cfg.batch_max_records.max(1) as usize;
        let mut max_bytes = self.cfg.batch_max_bytes.max(1024) as usize;
        if (welcome.max_batch_bytes as usize) < max_bytes
            || (welcome.max_batch_records as usize) < max_records
        {
            tracing::info!(
                collector_max_bytes = welcome.max_batch_bytes,
                collector_max_records = welcome.max_batch_records,
                "the collector accepts smaller batches than configured; oversized batches will be split"
            );
        }
        let hb_every = match welcome.heartbeat_interval_secs {
            0 => self.cfg.heartbeat_interval,
            s => self.cfg.heartbeat_interval.min(Duration::from_secs(u64::from(s))),
        };
        let mut heartbeat = tokio::time::interval(hb_every);
        heartbeat.tick().await;
        let renew_check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(renew_check);
        let mut pending_key: Option<(String, tokio::time::Instant)> = None;
        let mut durable = self.spool.durable();
        let mut producer_done = self.producer_done.clone();
        // once the input is exhausted (or the capture thread has gone and
        // dropped the sender) `changed()` would return at once forever
        let mut done_seen = *producer_done.borrow();
        let mut shutdown = self.shutdown.clone();
        let mut last_sent = 0u64;
        // (first, last, sent at) of each batch awaiting its answer
        let mut in_flight: VecDeque<(u64, u64, std::time::Instant)> = VecDeque::new();

        loop {
            // Fill the window with durable records.
            while in_flight.len() < self.cfg.max_in_flight {
                durable.borrow_and_update();
                let records = self.spool.read_after(last_sent, max_records, max_bytes)?;
                let (Some(first), Some(last)) =
                    (records.first().map(|r| r.seq), records.last().map(|r| r.seq))
                else {
                    break;
                };
                let size: usize = records.iter().map(|r| r.encoded_len() + 8).sum();
                tracing::debug!(first, last, count = records.len(), size, "sending batch");
                send(&tx, Out::Batch(Batch { records })).await?;
                in_flight.push_back((first, last, std::time::Instant::now()));
                last_sent = last;
            }
            if in_flight.is_empty() && self.drained() {
                send(
                    &tx,
                    Out::Heartbeat(Heartbeat {
                        time: Some(timefmt::to_timestamp(OffsetDateTime::now_utc())),
                        counters: Some(self.counters()),
                        policy: self.policy_status(),
                    }),
                )
                .await?;
                drop(tx);
                // Let the collector see the end of the stream.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Ok(Some(_)) = inbound.message().await {}
                })
                .await;
                tracing::info!("everything produced was acknowledged; exiting");
                return Ok(SessionEnd::Finished(Finished::Drained));
            }
            tokio::select! {
                msg = inbound.message() => {
                    let msg = msg?.ok_or(SessionError::Closed)?;
                    match msg.body {
                        Some(In::Ack(ack)) => {
                            if let Some((_, _, sent)) = in_flight.pop_front() {
                                self.counters.ack_seconds.observe(sent.elapsed().as_secs_f64());
                            }
                            self.spool.ack(ack.first_seq, ack.last_seq)?;
                        }
                        Some(In::Rejected(r)) => {
                            in_flight.pop_front();
                            Counters::add(&self.counters.batches_rejected, 1);
                            tracing::warn!(first = r.first_seq, last = r.last_seq, reason = %r.reason, "batch rejected by the collector; splitting");
                            if r.first_seq == r.last_seq {
                                let rec = self.spool.read_after(r.first_seq.saturating_sub(1), 1, usize::MAX)?;
                                match rec.first() {
                                    Some(rec) if rec.seq == r.first_seq && rec.encoded_len() + 16 > r.max_batch_bytes as usize => {
                                        self.spool.drop_oversize(rec.seq)?;
                                    }
                                    _ => {
                                        // Not a size problem we can fix by splitting.
                                        return Err(tonic::Status::failed_precondition(r.reason).into());
                                    }
                                }
                            }
                            if r.max_batch_bytes > 0 {
                                max_bytes = max_bytes.min(r.max_batch_bytes as usize);
                            }
                            if r.max_batch_records > 0 {
                                max_records = max_records.min(r.max_batch_records as usize);
                            }
                            max_bytes = (max_bytes / 2).max(1024);
                            max_records = (max_records / 2).max(1);
                            last_sent = last_sent.min(r.first_seq.saturating_sub(1));
                        }
                        Some(In::Certificate(c)) => {
                            match pending_key.take() {
                                Some((key, _)) => {
                                    identity.save_renewed(&key, &c.certificate_pem)?;
                                    let not_after = c.not_after.as_ref().map(timefmt::from_timestamp).map(timefmt::rfc3339).unwrap_or_default();
                                    tracing::info!(%not_after, "certificate renewed; used from the next connection");
                                }
                                None => tracing::warn!("unexpected certificate from the collector; ignored"),
                            }
                        }
                        Some(In::Policy(update)) => {
                            if let Some(p) = &self.policy {
                                tracing::info!(version = update.version, files = update.files.len(), "policy received");
                                let applied = p.apply(update).await;
                                send(&tx, Out::PolicyApplied(applied)).await?;
                            }
                        }
                        Some(In::Welcome(_)) | None => {}
                    }
                }
                _ = durable.changed() => {}
                r = producer_done.changed(), if !done_seen => {
                    done_seen = r.is_err() || *producer_done.borrow();
                }
                _ = heartbeat.tick() => {
                    send(&tx, Out::Heartbeat(Heartbeat {
                        time: Some(timefmt::to_timestamp(OffsetDateTime::now_utc())),
                        counters: Some(self.counters()),
                        policy: self.policy_status(),
                    })).await?;
                }
                _ = &mut renew_check => {
                    let now = OffsetDateTime::now_utc();
                    // An unanswered request is given up after 30 s.
                    if pending_key.as_ref().is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(30)) {
                        pending_key = None;
                    }
                    if pending_key.is_none() && identity.needs_renewal(now) {
                        let (key, csr) = crate::enroll::key_and_csr(&crate::inventory::hostname())?;
                        pending_key = Some((key.serialize_pem(), tokio::time::Instant::now()));
                        tracing::info!("asking the collector for a new certificate");
                        send(&tx, Out::Renew(RenewCertificate { csr_pem: csr })).await?;
                    }
                    // Next look: when renewal is due, at least every minute.
                    let wait = identity
                        .renewal_due()
                        .map(|due| (due - now).clamp(time::Duration::seconds(1), time::Duration::seconds(60)))
                        .and_then(|d| d.try_into().ok())
                        .unwrap_or(Duration::from_secs(60));
                    renew_check.as_mut().reset(tokio::time::Instant::now() + wait);
                }
                _ = until_true(&mut shutdown) => {
                    return Ok(SessionEnd::Finished(Finished::Shutdown));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
