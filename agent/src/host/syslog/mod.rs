//! The syslog receiver (`[syslog]`): network devices and Windows event
//! forwarders send their logs to the agent, which parses, detects, spools
//! and delivers them like its own.
//!
//! * **Transports**: UDP (default `0.0.0.0:514`), TCP (default
//!   `0.0.0.0:514`) with octet counting and newline framing
//!   ([`frame`]), TLS (`tls`, usually port 6514; rustls with the ring
//!   provider; with `tls_client_ca`, client certificates are required and
//!   verified against that CA).
//! * **Formats**: RFC 3164 and RFC 5424 ([`crate::host::logfmt`]), the
//!   messages of firewalls ([`crate::host::firewall`]) and Windows events
//!   ([`crate::host::windows`]).
//! * **Who may send**: `allow` (addresses and networks) and every
//!   `[[syslog.sender]]` address; anyone else is refused (a datagram
//!   dropped, a connection closed at once) and counted. A sender's entry
//!   names the registry `system` its logs belong to and their `kind`
//!   (`firewall`, `windows`, `auth`, `web`, `auto`: detected per message).
//! * **Bounded**: a token bucket per sender (`rate` messages per second,
//!   `burst`), messages over 64 KiB cut, binary garbage skipped, at most
//!   `max_connections` connections, and a bounded queue (`queue`) between
//!   the network tasks and the log thread: when it is full the
//!   message is dropped and counted, so a flood never stalls the network
//!   tasks or another source. Everything dropped is counted in the host
//!   counters (`host_syslog_*`, exported in heartbeats and `/metrics`).
//!
//! Every record carries `canhgac.sender` (the sender's address),
//! `canhgac.log_host` (the host name in the message), `canhgac.source`
//! (the log kind) and `canhgac.system` when configured.
//!
//! The network side runs as tasks of the agent's runtime; the messages are
//! read by the host sensor's log thread, which hands each to the
//! [`crate::host::router`] with its sender, kind and system, and commits
//! like for followed files (no input checkpoint: what the network
//! delivered before a crash and was not committed is lost, as with any
//! syslog receiver).

pub mod config;
pub mod frame;
pub mod net;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        mpsc::{SyncSender, TrySendError},
    },
    time::Instant,
};

pub use config::{Kind, Sender, SyslogConfig};

use crate::host::HostCounters;

/// One message received, with who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub sender: IpAddr,
    pub data: Vec<u8>,
}

/// Senders tracked by the rate limiter at most.
const LIMITER_CAPACITY: usize = 65_536;

/// Admission shared by every network task: allow-list, rate limit,
/// garbage, the queue to the log thread.
pub struct Gate {
    cfg: Arc<SyslogConfig>,
    limiter: Mutex<frame::Limiter>,
    started: Instant,
    counters: Arc<HostCounters>,
    tx: SyncSender<Message>,
    pub connections: AtomicUsize,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Gate {
    pub fn new(cfg: Arc<SyslogConfig>, counters: Arc<HostCounters>, tx: SyncSender<Message>) -> Gate {
        let limiter = Mutex::new(frame::Limiter::new(cfg.rate, cfg.burst, LIMITER_CAPACITY));
        Gate { cfg, limiter, started: Instant::now(), counters, tx, connections: AtomicUsize::new(0) }
    }

    /// Whether `ip` may send; a refusal is counted.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let ok = self.cfg.allowed(ip);
        if !ok {
            add(&self.counters.syslog_refused);
            tracing::debug!(sender = %ip, "syslog sender not in the allow-list: refused");
        }
        ok
    }

    /// One framed message of an admitted sender.
    pub fn deliver(&self, ip: IpAddr, frame: frame::Frame) {
        if frame.truncated {
            add(&self.counters.syslog_truncated);
        }
        let data = trim(&frame.data);
        if data.is_empty() {
            return;
        }
        if crate::host::auth::looks_binary(data) {
            add(&self.counters.syslog_garbage);
            return;
        }
        let now = self.started.elapsed().as_secs_f64();
        let pass = self.limiter.lock().map(|mut l| l.allow(ip, now)).unwrap_or(true);
        if !pass {
            add(&self.counters.syslog_rate_limited);
            return;
        }
        match self.tx.try_send(Message { sender: normalise(ip), data: data.to_vec() }) {
            Ok(()) => add(&self.counters.syslog_messages),
            Err(TrySendError::Full(_)) => add(&self.counters.syslog_queue_full),
            Err(TrySendError::Disconnected(_)) => add(&self.counters.syslog_queue_full),
        }
    }

    pub fn counters(&self) -> &HostCounters {
        &self.counters
    }

    pub fn max_connections(&self) -> usize {
        self.cfg.max_connections
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\r' | b'\n' | b'\0')).unwrap_or(b.len());
    let end =
        b.iter().rposition(|c| !matches!(c, b' ' | b'\r' | b'\n' | b'\0')).map(|i| i + 1).unwrap_or(start);
    &b[start..end.max(start)]
}

/// An IPv4-mapped IPv6 address as IPv4 (a dual-stack socket's senders).
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What the host sensor's log thread reads: the messages, and the
/// configuration that names each sender's kind and system.
pub struct SyslogInput {
    pub rx: std::sync::mpsc::Receiver<Message>,
    pub cfg: Arc<SyslogConfig>,
}

impl SyslogInput {
    /// The kind (`None`: sniffed per message) and system (0: none) of a
    /// sender's messages.
    pub fn sender(&self, ip: IpAddr) -> (Option<crate::host::router::LogKind>, u64) {
        match self.cfg.sender(ip) {
            Some(s) => (s.kind.log_kind(), s.system.unwrap_or(0)),
            None => (None, 0),
        }
    }
}

/// The running receiver: its network tasks.
pub struct SyslogReceiver {
    tasks: tokio::task::JoinSet<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Where it listens (port 0 resolved): UDP, TCP, TLS.
    pub addrs: (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
}

impl SyslogReceiver {
    /// Binds the listeners of `cfg.syslog` and starts serving; the
    /// messages are for the host sensor's log thread ([`SyslogInput`]).
    pub async fn start(
        cfg: &crate::config::AgentConfig,
        counters: Arc<HostCounters>,
    ) -> Result<Option<(SyslogReceiver, SyslogInput)>, net::SyslogError> {
        let Some(sc) = &cfg.syslog else { return Ok(None) };
        let sc = Arc::new(sc.clone());
        let listeners = net::bind(&sc).await?;
        let addrs = listeners.addrs();
        let (tx, rx) = std::sync::mpsc::sync_channel(sc.queue);
        let gate = Arc::new(Gate::new(sc.clone(), counters, tx));
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let tasks = net::serve(listeners, gate, shutdown_rx);
        Ok(Some((SyslogReceiver { tasks, shutdown, addrs }, SyslogInput { rx, cfg: sc })))
    }

    /// Stops listening (the log thread then reads what is queued).
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}
