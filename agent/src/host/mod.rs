//! The host sensor: authentication logs ([`auth`], [`tail`], [`journal`]),
//! file integrity with web defacement and web shells ([`fim`]), listeners
//! and processes ([`procs`]), state-secret markers in files ([`secrets`]).
//!
//! Each monitor runs on its own thread and commits its records to the
//! spool the way the capture producer does: one atomic batch with the
//! records, its input checkpoint and its detector state, then a flush
//! (every 200 ms or 512 records). Checkpoints: `host:auth` (JSON: the
//! [`tail::Position`] of every followed file and the journal cursor).
//! Detector state keys all start with `h` (`ha` authentication, `hf` file
//! integrity, `hl` listeners, `hs` state-secret markers), so they never
//! meet the network engine's.

pub mod analyze;
pub mod auth;
pub mod config;
pub mod fim;
pub mod firewall;
pub mod journal;
pub mod lines;
pub mod logfmt;
pub mod origin;
pub mod procs;
pub mod router;
pub mod secrets;
pub mod syslog;
pub mod tail;
pub mod web;
pub mod windows;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    config::AgentConfig,
    detect::{Output, StateChange},
    spool::{Spool, SpoolError},
};

const CHUNK_RECORDS: usize = 512;
const CHUNK_TIME: Duration = Duration::from_millis(200);
const IDLE: Duration = Duration::from_millis(100);
pub const AUTH_CHECKPOINT: &str = "host:auth";

/// Counters of the host sensor, reported in heartbeats.
#[derive(Debug, Default)]
pub struct HostCounters {
    pub log_lines: AtomicU64,
    /// Binary, cut or unparsable lines.
    pub log_lines_skipped: AtomicU64,
    /// Log files that could not be read, rotated logs lost.
    pub log_read_errors: AtomicU64,
    pub journal_unavailable: AtomicU64,
    pub auth_events: AtomicU64,
    /// Requests read from web access logs.
    pub web_requests: AtomicU64,
    pub fim_files: AtomicU64,
    pub fim_changes: AtomicU64,
    /// Files not hashed or not tracked (unreadable, too large, beyond the
    /// baseline limit) and watch failures.
    pub fim_skipped: AtomicU64,
    /// Sources, connections and listeners forgotten at capacity.
    pub tracker_evictions: AtomicU64,
    /// State-secret scan: files scanned, limits reached, damaged or
    /// unreadable files, and when the last full scan completed (Unix
    /// seconds, 0: never).
    pub secret_files: AtomicU64,
    pub secret_limits_hit: AtomicU64,
    pub secret_errors: AtomicU64,
    pub secret_last_completed: AtomicU64,
    /// Syslog receiver: messages queued for the log thread; senders refused
    /// (not in the allow-list, too many connections); messages dropped by
    /// the rate limit, on a full queue, as binary garbage; messages cut at
    /// 64 KiB; failed TLS handshakes; messages no pipeline could read.
    pub syslog_messages: AtomicU64,
    pub syslog_refused: AtomicU64,
    pub syslog_rate_limited: AtomicU64,
    pub syslog_queue_full: AtomicU64,
    pub syslog_garbage: AtomicU64,
    pub syslog_truncated: AtomicU64,
    pub syslog_tls_failures: AtomicU64,
    pub syslog_unparsed: AtomicU64,
    /// Firewall and Windows events interpreted.
    pub firewall_events: AtomicU64,
    pub windows_events: AtomicU64,
}

impl HostCounters {
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Relaxed);
    }
}

/// The running host monitors.
pub struct HostSensor {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HostSensor {
    /// Starts the monitors the configuration enables (none when `[host]`
    /// is off). `restored`: the spool's detector state.
    /// `policy`: the central policy, whose web signatures the log monitor
    /// follows.
    pub fn start(
        cfg: &AgentConfig,
        spool: &Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
        policy: Option<crate::policy::Policy>,
        syslog: Option<syslog::SyslogInput>,
        ioc: Arc<crate::detect::IocSet>,
    ) -> Result<HostSensor, SpoolError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let host = &cfg.host;
        let offset = host.timezone.unwrap_or_else(logfmt::local_offset);
        let webshells = web::WebShells::default();
        let logs = host.auth.enabled
            || host.web_logs.enabled
            || host.firewall_logs.enabled
            || (host.windows_logs.enabled && !host.windows_logs.files.is_empty());
        if (host.enabled && logs) || syslog.is_some() {
            let mut runner = LogRunner::new(
                cfg,
                spool.clone(),
                counters.clone(),
                restored,
                offset,
                webshells.clone(),
                ioc,
            )?;
            runner.ioc_policy_files =
                policy.as_ref().map(|p| p.active().ioc_files.clone()).unwrap_or_default();
            runner.policy = policy;
            runner.syslog = syslog;
            let stop = stop.clone();
            threads.push(spawn("canhgac-logs", move || runner.run(&stop)));
        }
        if !host.enabled {
            return Ok(HostSensor { stop, threads });
        }
        if host.fim.enabled || !host.web.roots.is_empty() {
            let mut runner = fim::FimRunner::new(cfg, &spool.clone(), counters.clone(), restored);
            runner.stop = stop.clone();
            runner.webshells = webshells;
            let stop = stop.clone();
            threads.push(spawn("canhgac-fim", move || runner.run(&stop)));
        }
        if host.secrets.enabled {
            let mut runner = secrets::SecretRunner::new(
                &host.secrets,
                &host.web.roots,
                spool.clone(),
                counters.clone(),
                restored,
            );
            let stop = stop.clone();
            threads.push(spawn("canhgac-secrets", move || runner.run(&stop)));
        }
        if host.listeners.enabled || host.processes.enabled {
            let mut runner = procs::ProcRunner::new(&cfg.host, spool.clone(), counters.clone(), restored);
            let stop = stop.clone();
            threads.push(spawn("canhgac-procs", move || runner.run(&stop)));
        }
        Ok(HostSensor { stop, threads })
    }

    /// Stops the monitors; each commits what it has first.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    match std::thread::Builder::new().name(name.into()).spawn(f) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(thread = name, error = %e, "cannot start a host monitor thread");
            std::thread::spawn(|| {})
        }
    }
}

/// Sleeps on a monitor thread (never on the runtime).
#[allow(clippy::disallowed_methods)] // host monitor threads are not async
pub fn nap(d: Duration) {
    std::thread::sleep(d);
}

/// Commits an output chunk: records, checkpoint and state in one batch.
///
/// On a full disk the monitor waits here (it reads no more input) and
/// retries until space returns. Told to stop meanwhile, it gives up the
/// chunk: a log follower's checkpoint did not move, so its lines are read
/// again at the next start; the records of the other monitors are counted
/// as dropped.
pub fn commit(
    spool: &Spool,
    out: &mut Output,
    checkpoint: Option<(&str, &[u8])>,
    stop: &AtomicBool,
) -> Result<(), SpoolError> {
    let out = std::mem::take(out);
    if out.records.is_empty() && out.state.is_empty() && checkpoint.is_none() {
        return Ok(());
    }
    let state: Vec<_> = out.state.into_iter().map(StateChange::into_pair).collect();
    let mut warned = false;
    loop {
        match spool.commit(&out.records, checkpoint, &state) {
            Ok(_) => return Ok(()),
            Err(e) if e.is_full() => {
                if stop.load(Relaxed) {
                    if checkpoint.is_none() {
                        spool.lost(&out.records);
                    }
                    tracing::warn!(
                        records = out.records.len(),
                        "stopping on a full disk: chunk not committed"
                    );
                    return Ok(());
                }
                if !warned {
                    tracing::warn!(error = %e, "spool disk full: host monitor paused until space returns");
                    warned = true;
                }
                nap(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `host:auth` checkpoint.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthCheckpoint {
    pub v: u32,
    #[serde(default)]
    pub files: BTreeMap<String, tail::Position>,
    #[serde(default)]
    pub journal: Option<String>,
}

/// A followed file and how to read it.
struct Followed {
    follower: tail::Follower,
    spec: router::LogSpec,
    system: u64,
}

/// Follows the authentication logs, the journal and the web access logs;
/// one thread, so that a source seen in several logs meets one detector.
struct LogRunner {
    spool: Spool,
    counters: Arc<HostCounters>,
    pipelines: router::Pipelines,
    followed: Vec<Followed>,
    journal: Option<journal::Journal>,
    journal_cursor: Option<String>,
    offset: time::UtcOffset,
    /// Web signatures: the configured files, then the policy's.
    signature_files: Vec<PathBuf>,
    policy: Option<crate::policy::Policy>,
    policy_version: u64,
    /// Messages of the syslog receiver.
    syslog: Option<syslog::SyslogInput>,
    /// Indicator lists of the configuration, and the policy's in force
    /// (at start: those the engine's set was built with).
    ioc_files: Vec<PathBuf>,
    ioc_policy_files: Vec<PathBuf>,
}

impl LogRunner {
    fn new(
        cfg: &AgentConfig,
        spool: Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
        offset: time::UtcOffset,
        webshells: web::WebShells,
        ioc: Arc<crate::detect::IocSet>,
    ) -> Result<LogRunner, SpoolError> {
        let a = &cfg.host.auth;
        let w = &cfg.host.web_logs;
        // without [host], the thread reads the syslog receiver only
        let files = cfg.host.enabled;
        let checkpoint: AuthCheckpoint = spool
            .checkpoint(AUTH_CHECKPOINT)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        let mut followed: Vec<Followed> = Vec::new();
        let mut add = |path: &std::path::Path, spec: router::LogSpec, system: u64, from_end: bool| {
            if followed.iter().any(|f| f.follower.path == path) {
                return;
            }
            let resume = checkpoint.files.get(&path.display().to_string()).cloned();
            if path.exists() {
                tracing::info!(file = %path.display(), kind = spec.kind.map_or("auto", |k| k.name()), "following log");
            }
            followed.push(Followed {
                follower: tail::Follower::new(path.to_path_buf(), resume, from_end),
                spec,
                system,
            });
        };
        if files && a.enabled {
            let spec =
                router::LogSpec { kind: Some(router::LogKind::Auth), auth: a.format, ..Default::default() };
            for p in &a.files {
                add(p, spec, 0, a.start_at == config::StartAt::End);
            }
        }
        if files && w.enabled {
            for f in &w.files {
                add(&f.path, f.spec, f.system, w.start_at == config::StartAt::End);
            }
        }
        let (fl, wl) = (&cfg.host.firewall_logs, &cfg.host.windows_logs);
        if files && fl.enabled {
            for f in &fl.files {
                add(&f.path, f.spec, f.system, fl.start_at == config::StartAt::End);
            }
        }
        if files && wl.enabled {
            for f in &wl.files {
                add(&f.path, f.spec, f.system, wl.start_at == config::StartAt::End);
            }
        }
        let any_file = a.files.iter().any(|p| p.exists());
        let want_journal = files
            && a.enabled
            && match a.journal {
                config::Journal::On => true,
                config::Journal::Off => false,
                // rsyslog writes the files from the journal: reading both would
                // report every line twice
                config::Journal::Auto => !any_file,
            };
        let journal = if want_journal {
            match journal::Journal::start(checkpoint.journal.as_deref()) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::warn!(error = %e, "the systemd journal is not available: following log files only");
                    counters.journal_unavailable.fetch_add(1, Relaxed);
                    None
                }
            }
        } else {
            None
        };
        if files && a.enabled && a.files.is_empty() && journal.is_none() {
            tracing::warn!("no authentication log to follow");
        }
        let sigs = match web::SignatureSet::load(&w.signatures) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "web signatures: using the built-in set only");
                web::SignatureSet::builtin()
            }
        };
        let auth = auth::AuthPipeline::new(a.detect.clone(), cfg.eve_types.auth, restored);
        let web =
            web::WebPipeline::new(w.detect.clone(), Arc::new(sigs), webshells, cfg.eve_types.http, restored);
        let firewall = firewall::FirewallPipeline::new(
            cfg.host.firewall_logs.detect.clone(),
            cfg.behaviour.portscan.clone(),
            ioc,
            cfg.ioc_severity,
            cfg.eve_types.firewall,
            restored,
        );
        Ok(LogRunner {
            spool,
            counters,
            pipelines: router::Pipelines::new(auth, web, firewall),
            followed,
            journal,
            journal_cursor: checkpoint.journal,
            offset,
            signature_files: w.signatures.clone(),
            policy: None,
            policy_version: 0,
            syslog: None,
            ioc_files: cfg.ioc_files.clone(),
            ioc_policy_files: Vec::new(),
        })
    }

    /// Swaps in the web signatures of a new central policy.
    fn follow_policy(&mut self) {
        let Some(p) = &self.policy else { return };
        let active = p.active();
        if active.version == self.policy_version {
            return;
        }
        self.policy_version = active.version;
        self.follow_policy_indicators(&active.ioc_files);
        let mut files = self.signature_files.clone();
        files.extend(active.web_signature_files.iter().cloned());
        match web::SignatureSet::load(&files) {
            Ok(set) => {
                tracing::info!(
                    version = active.version,
                    signatures = set.len(),
                    "web signatures of the policy in force"
                );
                self.pipelines.web.detector.set_signatures(Arc::new(set));
            }
            Err(e) => {
                tracing::error!(error = %e, "web signatures of the policy not loaded; the previous ones stay")
            }
        }
    }

    /// Indicator lists of a new central policy for the firewall's `ioc`
    /// (those in force at start came with the engine's set).
    fn follow_policy_indicators(&mut self, policy_files: &[PathBuf]) {
        if self.ioc_policy_files.as_slice() == policy_files {
            return;
        }
        let mut files = self.ioc_files.clone();
        files.extend(policy_files.iter().cloned());
        match crate::detect::ioc::IocSet::load(&files) {
            Ok((set, _)) => {
                tracing::info!(indicators = set.len(), "firewall-log indicators of the policy in force");
                self.pipelines.firewall.set_ioc(Arc::new(set));
                self.ioc_policy_files = policy_files.to_vec();
            }
            Err(e) => {
                tracing::error!(error = %e, "indicator lists of the policy not loaded for firewall logs")
            }
        }
    }

    fn checkpoint(&self) -> Vec<u8> {
        let mut c = AuthCheckpoint { v: 1, files: BTreeMap::new(), journal: self.journal_cursor.clone() };
        for f in &self.followed {
            if let Some(p) = f.follower.position() {
                c.files.insert(f.follower.path.display().to_string(), p);
            }
        }
        serde_json::to_vec(&c).unwrap_or_default()
    }

    fn run(&mut self, stop: &AtomicBool) {
        if let Err(e) = self.run_inner(stop) {
            tracing::error!(error = %e, "log monitor stopped: spool error");
        }
    }

    fn run_inner(&mut self, stop: &AtomicBool) -> Result<(), SpoolError> {
        let mut out = Output::default();
        let mut last_commit = Instant::now();
        let mut last_tick = Instant::now();
        let mut dirty = false;
        let mut last_checkpoint = self.checkpoint();
        loop {
            let stopping = stop.load(Relaxed);
            let clock = logfmt::Clock { reference: OffsetDateTime::now_utc(), offset: self.offset };
            let mut progress = 0;
            for f in &mut self.followed {
                let source = f.follower.path.display().to_string();
                let (pipelines, spec, system) = (&mut self.pipelines, f.spec, f.system);
                progress += f.follower.poll(CHUNK_RECORDS, |g| {
                    let name = if g.file == std::path::Path::new(&source) {
                        source.clone()
                    } else {
                        g.file.display().to_string()
                    };
                    let src = router::LineSource {
                        name: &name,
                        spec,
                        system,
                        offset: Some(g.offset),
                        sender: None,
                    };
                    pipelines.line(g.data, g.truncated, &src, &clock, &mut out);
                });
            }
            if let Some(j) = &mut self.journal {
                for _ in 0..CHUNK_RECORDS {
                    let Some(line) = j.try_line() else { break };
                    progress += 1;
                    self.pipelines.auth.stats.lines += 1;
                    match logfmt::parse(&line, logfmt::LogFormat::JournalJson, &clock) {
                        Some(entry) => {
                            self.pipelines.entry(&entry, clock.reference, "journal", &mut out);
                            if entry.cursor.is_some() {
                                self.journal_cursor = entry.cursor;
                            }
                        }
                        None => self.pipelines.auth.stats.unparsed += 1,
                    }
                }
                if j.ended() {
                    tracing::warn!("journalctl ended; the journal is no longer followed");
                    self.counters.journal_unavailable.fetch_add(1, Relaxed);
                    self.journal = None;
                }
            }
            if let Some(input) = &self.syslog {
                for _ in 0..CHUNK_RECORDS {
                    let Ok(m) = input.rx.try_recv() else { break };
                    progress += 1;
                    let (kind, system) = input.sender(m.sender);
                    self.pipelines
                        .message(&m.data, false, m.sender, kind, system, "syslog", &clock, &mut out);
                }
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                self.follow_policy();
                let before = out.records.len();
                self.pipelines.tick(clock.reference, &mut out);
                dirty |= out.records.len() > before;
                last_tick = Instant::now();
            }
            dirty |= progress > 0;
            if out.records.len() >= CHUNK_RECORDS
                || (dirty && last_commit.elapsed() >= CHUNK_TIME)
                || stopping
            {
                self.pipelines.take_state(&mut out);
                let cp = self.checkpoint();
                let changed = cp != last_checkpoint;
                commit(&self.spool, &mut out, changed.then_some((AUTH_CHECKPOINT, cp.as_slice())), stop)?;
                last_checkpoint = cp;
                last_commit = Instant::now();
                dirty = false;
                self.publish();
            }
            if stopping {
                return Ok(());
            }
            if progress == 0 {
                nap(IDLE);
            }
        }
    }

    fn publish(&self) {
        let c = &self.counters;
        let (lines, skipped) = self.pipelines.totals();
        HostCounters::set(&c.log_lines, lines);
        HostCounters::set(&c.log_lines_skipped, skipped);
        HostCounters::set(&c.auth_events, self.pipelines.auth.stats.events);
        HostCounters::set(&c.web_requests, self.pipelines.web.stats.events);
        HostCounters::set(&c.firewall_events, self.pipelines.firewall.stats.events);
        HostCounters::set(&c.windows_events, self.pipelines.windows.stats.events);
        HostCounters::set(&c.syslog_unparsed, self.pipelines.syslog_unparsed);
        let errors: u64 =
            self.followed.iter().map(|f| f.follower.stats.read_errors + f.follower.stats.lost_bytes).sum();
        HostCounters::set(&c.log_read_errors, errors);
        HostCounters::set(&c.tracker_evictions, self.pipelines.evictions());
    }
}

/// Expands `~/` into every home directory (root's and those in
/// `/etc/passwd` under `/home`).
pub fn expand_home(path: &str) -> Vec<PathBuf> {
    let Some(rest) = path.strip_prefix("~/") else { return vec![PathBuf::from(path)] };
    let mut homes = vec![PathBuf::from("/root")];
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            if let Some(home) = line.split(':').nth(5)
                && home.starts_with("/home/")
            {
                homes.push(PathBuf::from(home));
            }
        }
    }
    homes.sort();
    homes.dedup();
    homes.into_iter().map(|h| h.join(rest)).collect()
}
