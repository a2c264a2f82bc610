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
pub mod journal;
pub mod lines;
pub mod logfmt;
pub mod procs;
pub mod secrets;
pub mod tail;

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
    pub fn start(
        cfg: &AgentConfig,
        spool: &Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<HostSensor, SpoolError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let host = &cfg.host;
        if !host.enabled {
            return Ok(HostSensor { stop, threads });
        }
        let offset = host.timezone.unwrap_or_else(logfmt::local_offset);
        if host.auth.enabled {
            let mut runner = AuthRunner::new(cfg, spool.clone(), counters.clone(), restored, offset)?;
            let stop = stop.clone();
            threads.push(spawn("canhgac-auth", move || runner.run(&stop)));
        }
        if host.fim.enabled || !host.web.roots.is_empty() {
            let mut runner = fim::FimRunner::new(cfg, &spool.clone(), counters.clone(), restored);
            runner.stop = stop.clone();
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

/// Follows the authentication logs and the journal.
struct AuthRunner {
    spool: Spool,
    counters: Arc<HostCounters>,
    pipeline: auth::AuthPipeline,
    followers: Vec<tail::Follower>,
    journal: Option<journal::Journal>,
    journal_cursor: Option<String>,
    format: logfmt::LogFormat,
    offset: time::UtcOffset,
}

impl AuthRunner {
    fn new(
        cfg: &AgentConfig,
        spool: Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
        offset: time::UtcOffset,
    ) -> Result<AuthRunner, SpoolError> {
        let a = &cfg.host.auth;
        let checkpoint: AuthCheckpoint = spool
            .checkpoint(AUTH_CHECKPOINT)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        let from_end = a.start_at == config::StartAt::End;
        let followers: Vec<tail::Follower> = a
            .files
            .iter()
            .map(|p| {
                let resume = checkpoint.files.get(&p.display().to_string()).cloned();
                tail::Follower::new(p.clone(), resume, from_end)
            })
            .collect();
        let any_file = a.files.iter().any(|p| p.exists());
        let want_journal = match a.journal {
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
        if a.files.is_empty() && journal.is_none() {
            tracing::warn!("no authentication log to follow");
        }
        for p in &a.files {
            if p.exists() {
                tracing::info!(file = %p.display(), "following authentication log");
            }
        }
        Ok(AuthRunner {
            spool,
            counters,
            pipeline: auth::AuthPipeline::new(a.detect.clone(), cfg.eve_types.auth, restored),
            followers,
            journal,
            journal_cursor: checkpoint.journal,
            format: a.format,
            offset,
        })
    }

    fn checkpoint(&self) -> Vec<u8> {
        let mut c = AuthCheckpoint { v: 1, files: BTreeMap::new(), journal: self.journal_cursor.clone() };
        for f in &self.followers {
            if let Some(p) = f.position() {
                c.files.insert(f.path.display().to_string(), p);
            }
        }
        serde_json::to_vec(&c).unwrap_or_default()
    }

    fn run(&mut self, stop: &AtomicBool) {
        if let Err(e) = self.run_inner(stop) {
            tracing::error!(error = %e, "authentication log monitor stopped: spool error");
        }
    }

    fn run_inner(&mut self, stop: &AtomicBool) -> Result<(), SpoolError> {
        let mut out = Output::default();
        let mut last_commit = Instant::now();
        let mut dirty = false;
        let mut last_checkpoint = self.checkpoint();
        loop {
            let stopping = stop.load(Relaxed);
            let clock = logfmt::Clock { reference: OffsetDateTime::now_utc(), offset: self.offset };
            let mut progress = 0;
            for f in &mut self.followers {
                let source = f.path.display().to_string();
                let (pipeline, format) = (&mut self.pipeline, self.format);
                progress += f.poll(CHUNK_RECORDS, |g| {
                    let src = if g.file == std::path::Path::new(&source) {
                        source.clone()
                    } else {
                        g.file.display().to_string()
                    };
                    pipeline.line(g.data, g.truncated, &src, Some(g.offset), format, &clock, &mut out);
                });
            }
            if let Some(j) = &mut self.journal {
                for _ in 0..CHUNK_RECORDS {
                    let Some(line) = j.try_line() else { break };
                    progress += 1;
                    self.pipeline.stats.lines += 1;
                    match logfmt::parse(&line, logfmt::LogFormat::JournalJson, &clock) {
                        Some(entry) => {
                            self.pipeline.entry(&entry, clock.reference, "journal", None, &mut out);
                            if entry.cursor.is_some() {
                                self.journal_cursor = entry.cursor;
                            }
                        }
                        None => self.pipeline.stats.unparsed += 1,
                    }
                }
                if j.ended() {
                    tracing::warn!("journalctl ended; the journal is no longer followed");
                    self.counters.journal_unavailable.fetch_add(1, Relaxed);
                    self.journal = None;
                }
            }
            dirty |= progress > 0;
            if out.records.len() >= CHUNK_RECORDS
                || (dirty && last_commit.elapsed() >= CHUNK_TIME)
                || stopping
            {
                self.pipeline.take_state(&mut out);
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
        let s = &self.pipeline.stats;
        let c = &self.counters;
        HostCounters::set(&c.log_lines, s.lines);
        HostCounters::set(&c.log_lines_skipped, s.binary + s.truncated + s.unparsed);
        HostCounters::set(&c.auth_events, s.events);
        let errors: u64 = self.followers.iter().map(|f| f.stats.read_errors + f.stats.lost_bytes).sum();
        HostCounters::set(&c.log_read_errors, errors);
        HostCounters::set(&c.tracker_evictions, self.pipeline.evictions());
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
