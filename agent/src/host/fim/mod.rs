//! File integrity: a baseline of watched files, real-time change events
//! from inotify (the `notify` crate) plus a periodic full rescan that
//! catches what inotify missed (queue overflow, changes while the agent
//! was down), and the web-root detectors ([`web`]).
//!
//! * Baseline entry per file: size, mode, owner, group, mtime and a BLAKE3
//!   (or SHA-256) of the content; for pages under web roots also a
//!   [`web::PageProfile`]. Files larger than `max_file_size` are tracked by
//!   metadata only; beyond `max_files` files are not tracked (both counted).
//! * The first run builds the baseline silently; later runs compare.
//! * Events are coalesced: paths touched are collected (at most
//!   [`MAX_PENDING`]; beyond that, and when inotify overflows, a full
//!   rescan replaces them) and examined once no event came for the
//!   `coalesce` delay. A batch of more than [`BURST`] changes under one
//!   watched path becomes one alert with exact counts and sample paths.
//! * A path that does not exist yet is watched through its nearest
//!   existing parent and followed from when it appears.
//! * **Maintenance**: `canhgac-agent fim accept PATH...` writes the control
//!   file `STATE_DIR/fim-accept` (`PATH<TAB>UNTIL_UNIX_SECONDS` lines);
//!   changes under an accepted path until then update the baseline without
//!   alerts. `[host.web] maintenance = true` accepts every web-root change.
//!
//! Detectors: `fim` (created, modified, deleted, permission or owner
//! changed; severity per path rule), `defacement` (1 with a defacer phrase,
//! else 2), `webshell` (1).
//!
//! # Persisted state (spool detector state)
//!
//! | key | value |
//! |-----|-------|
//! | `hfb` path | JSON [`FileMeta`] (version field `v`) |

pub mod web;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use canhgac_proto::v1::RecordKind;
use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Digest as _;
use time::OffsetDateTime;

use super::{HostCounters, commit, config::HashAlgo, nap};
use crate::{
    config::AgentConfig,
    detect::{Output, StateChange},
    eve::{self, AlertInfo, sid},
    spool::{NewRecord, Spool, SpoolError},
};

pub const STATE_PREFIX: &[u8] = b"hfb";
pub const ACCEPT_FILE: &str = "fim-accept";
const MAX_PENDING: usize = 100_000;
const BURST: usize = 5;
const SAMPLE_PATHS: usize = 20;
const STATE_CHUNK: usize = 2000;

/// Baseline entry of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    #[serde(default)]
    pub v: u8,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// Hex digest; empty when not hashed (too large, unreadable).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<web::PageProfile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
    Permissions,
    Owner,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Permissions => "permissions",
            ChangeKind::Owner => "owner",
        }
    }
}

/// Compiled path rules.
struct Rules {
    include: Option<GlobSet>,
    exclude: GlobSet,
    severity: Vec<(GlobSet, u32)>,
    default_severity: u32,
}

fn globset(patterns: &[String]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        if let Ok(g) = Glob::new(p) {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

impl Rules {
    fn wanted(&self, p: &Path) -> bool {
        !self.exclude.is_match(p) && self.include.as_ref().is_none_or(|i| i.is_match(p))
    }

    fn severity(&self, p: &Path) -> u32 {
        self.severity.iter().find(|(g, _)| g.is_match(p)).map(|(_, s)| *s).unwrap_or(self.default_severity)
    }
}

pub struct FimRunner {
    spool: Spool,
    counters: Arc<HostCounters>,
    /// Watched roots (system paths and web roots).
    roots: Vec<PathBuf>,
    web_roots: Vec<PathBuf>,
    web_maintenance: bool,
    web_severity: u32,
    rules: Rules,
    hash: HashAlgo,
    max_file_size: u64,
    max_files: u64,
    rescan_interval: Duration,
    coalesce: Duration,
    emit_events: bool,
    accept_file: PathBuf,
    accepted: Vec<(PathBuf, i64)>,
    accept_mtime: Option<std::time::SystemTime>,
    baseline: HashMap<PathBuf, FileMeta>,
    skipped: u64,
    changes: u64,
    /// Set by [`HostSensor::stop`](super::HostSensor::stop): a commit
    /// waiting for disk space gives up.
    pub stop: Arc<AtomicBool>,
    /// Web shells found, for the access-log detector (`webshell-access`).
    pub webshells: super::web::WebShells,
}

impl FimRunner {
    pub fn new(
        cfg: &AgentConfig,
        spool: &Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> FimRunner {
        let h = &cfg.host;
        let mut roots: Vec<PathBuf> = Vec::new();
        if h.fim.enabled {
            for p in &h.fim.paths {
                roots.extend(super::expand_home(p));
            }
        }
        roots.extend(h.web.roots.iter().cloned());
        roots.sort();
        roots.dedup();
        let mut baseline = HashMap::new();
        for (k, v) in restored {
            if let Some(p) = k.strip_prefix(STATE_PREFIX)
                && let Ok(meta) = serde_json::from_slice::<FileMeta>(v)
            {
                baseline.insert(PathBuf::from(String::from_utf8_lossy(p).into_owned()), meta);
            }
        }
        FimRunner {
            spool: spool.clone(),
            counters,
            roots,
            web_roots: h.web.roots.clone(),
            web_maintenance: h.web.maintenance,
            web_severity: h.web.severity,
            rules: Rules {
                include: (!h.fim.include.is_empty()).then(|| globset(&h.fim.include)),
                exclude: globset(&h.fim.exclude),
                severity: h.fim.rules.iter().map(|(g, s)| (globset(std::slice::from_ref(g)), *s)).collect(),
                default_severity: h.fim.severity,
            },
            hash: h.fim.hash,
            max_file_size: h.fim.max_file_size,
            max_files: h.fim.max_files,
            rescan_interval: h.fim.rescan_interval,
            coalesce: h.fim.coalesce,
            emit_events: cfg.eve_types.fim,
            accept_file: cfg.state_dir.join(ACCEPT_FILE),
            accepted: Vec::new(),
            accept_mtime: None,
            baseline,
            skipped: 0,
            changes: 0,
            stop: Arc::new(AtomicBool::new(false)),
            webshells: Default::default(),
        }
    }

    pub fn run(&mut self, stop: &AtomicBool) {
        if let Err(e) = self.run_inner(stop) {
            tracing::error!(error = %e, "file integrity monitor stopped: spool error");
        }
    }

    fn web_root_of(&self, p: &Path) -> Option<&PathBuf> {
        self.web_roots.iter().find(|r| p.starts_with(r))
    }

    fn root_of(&self, p: &Path) -> PathBuf {
        self.roots
            .iter()
            .filter(|r| p.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .cloned()
            .unwrap_or_else(|| p.to_path_buf())
    }

    fn reload_accept(&mut self) {
        let mtime = std::fs::metadata(&self.accept_file).and_then(|m| m.modified()).ok();
        if mtime == self.accept_mtime {
            return;
        }
        self.accept_mtime = mtime;
        self.accepted = std::fs::read_to_string(&self.accept_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (p, until) = l.split_once('\t')?;
                Some((PathBuf::from(p), until.trim().parse().ok()?))
            })
            .collect();
        if !self.accepted.is_empty() {
            tracing::info!(paths = self.accepted.len(), "file integrity maintenance window updated");
        }
    }

    fn is_accepted(&self, p: &Path, now: i64) -> bool {
        (self.web_maintenance && self.web_root_of(p).is_some())
            || self.accepted.iter().any(|(a, until)| *until >= now && p.starts_with(a))
    }

    /// Current metadata (and hash) of a file; `None` when absent.
    fn observe(&mut self, p: &Path, with_page: bool) -> Option<FileMeta> {
        let meta = std::fs::symlink_metadata(p).ok()?;
        if meta.is_dir() {
            return None;
        }
        let mut m = FileMeta {
            v: 1,
            size: meta.len(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            hash: String::new(),
            page: None,
        };
        if meta.is_file() {
            if meta.len() <= self.max_file_size {
                match hash_file(p, self.hash) {
                    Ok(h) => m.hash = h,
                    Err(_) => self.skipped += 1,
                }
            } else {
                self.skipped += 1;
            }
            if with_page
                && web::is_page(&p.to_string_lossy())
                && let Ok(head) = super::lines::head(p, web::SAMPLE)
            {
                m.page = Some(web::profile(&head));
            }
        }
        Some(m)
    }

    /// Every wanted file under the roots.
    fn walk(&mut self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<PathBuf> = self.roots.clone();
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                match std::fs::read_dir(&p) {
                    Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                    Err(_) => self.skipped += 1,
                }
            } else if self.rules.wanted(&p) {
                if out.len() as u64 >= self.max_files {
                    self.skipped += 1;
                    continue;
                }
                out.insert(p);
            }
        }
        out
    }

    fn run_inner(&mut self, stop: &AtomicBool) -> Result<(), SpoolError> {
        let (tx, rx) = sync_channel::<notify::Result<notify::Event>>(65_536);
        let overflow = Arc::new(AtomicBool::new(false));
        let ovf = overflow.clone();
        let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            // inotify also reports every open (IN_OPEN): our own hashing
            // would feed the queue with events for every file it reads
            if let Ok(e) = &ev
                && let notify::EventKind::Access(a) = e.kind
                && a != notify::event::AccessKind::Close(notify::event::AccessMode::Write)
            {
                return;
            }
            if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                ovf.store(true, Relaxed);
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify is not available: file integrity by periodic rescan only");
                self.skipped += 1;
                None
            }
        };
        // roots watched directly, and missing ones through a parent
        let mut waiting: Vec<PathBuf> = Vec::new();
        for r in self.roots.clone() {
            if !self.watch(&mut watcher, &r) {
                waiting.push(r);
            }
        }
        let first_run = self.baseline.is_empty();
        tracing::info!(roots = self.roots.len(), baseline = self.baseline.len(), "file integrity: scanning");
        let started = Instant::now();
        self.rescan(first_run)?;
        tracing::info!(
            files = self.baseline.len(),
            secs = started.elapsed().as_secs_f64(),
            "file integrity: baseline ready"
        );
        let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
        let mut last_event = Instant::now();
        let mut last_rescan = Instant::now();
        let mut need_rescan = false;
        while !stop.load(Relaxed) {
            self.reload_accept();
            let mut got = 0;
            while let Ok(ev) = rx.try_recv() {
                got += 1;
                match ev {
                    Ok(ev) => {
                        if ev.need_rescan() {
                            need_rescan = true;
                        }
                        for p in ev.paths {
                            if pending.len() >= MAX_PENDING {
                                need_rescan = true;
                                break;
                            }
                            pending.insert(p);
                        }
                    }
                    Err(_) => need_rescan = true,
                }
                if got >= 100_000 {
                    break;
                }
            }
            if overflow.swap(false, Relaxed) {
                need_rescan = true;
            }
            if got > 0 {
                last_event = Instant::now();
                // a missing watched path may have appeared
                if !waiting.is_empty() {
                    let mut still = Vec::new();
                    for w in std::mem::take(&mut waiting) {
                        if w.exists() && self.watch(&mut watcher, &w) {
                            pending.insert(w.clone());
                            if w.is_dir() {
                                need_rescan = true;
                            }
                        } else {
                            still.push(w);
                        }
                    }
                    waiting = still;
                }
            }
            let quiet = last_event.elapsed() >= self.coalesce;
            if (need_rescan && quiet) || last_rescan.elapsed() >= self.rescan_interval {
                pending.clear();
                need_rescan = false;
                self.rescan(false)?;
                last_rescan = Instant::now();
            } else if !pending.is_empty() && quiet {
                let paths = std::mem::take(&mut pending);
                self.examine(paths)?;
            }
            if got == 0 {
                nap(Duration::from_millis(50));
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Watches `root`; a missing root's nearest existing parent is watched
    /// (not recursively) instead and `false` returned.
    fn watch(&mut self, watcher: &mut Option<notify::RecommendedWatcher>, root: &Path) -> bool {
        let Some(w) = watcher.as_mut() else { return root.exists() };
        if root.exists() {
            let mode = if root.is_dir() { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
            if let Err(e) = w.watch(root, mode) {
                tracing::warn!(path = %root.display(), error = %e, "cannot watch (rescans still cover it)");
                self.skipped += 1;
            }
            return true;
        }
        let mut parent = root.parent();
        while let Some(p) = parent {
            if p.exists() {
                let _ = w.watch(p, RecursiveMode::NonRecursive);
                break;
            }
            parent = p.parent();
        }
        false
    }

    /// Compares the whole tree with the baseline.
    fn rescan(&mut self, silent: bool) -> Result<(), SpoolError> {
        let mut paths = self.walk();
        paths.extend(self.baseline.keys().filter(|p| self.roots.iter().any(|r| p.starts_with(r))).cloned());
        self.compare(paths, silent)
    }

    fn examine(&mut self, touched: BTreeSet<PathBuf>) -> Result<(), SpoolError> {
        let mut paths = BTreeSet::new();
        for p in touched {
            if !self.roots.iter().any(|r| p.starts_with(r)) {
                continue;
            }
            if p.is_dir() {
                // a directory moved in or out: its files
                let mut stack = vec![p.clone()];
                while let Some(d) = stack.pop() {
                    if let Ok(rd) = std::fs::read_dir(&d) {
                        for e in rd.flatten() {
                            let ep = e.path();
                            if ep.is_dir() {
                                stack.push(ep)
                            } else if self.rules.wanted(&ep) {
                                paths.insert(ep);
                            }
                        }
                    }
                }
                paths.extend(self.baseline.keys().filter(|k| k.starts_with(&p)).cloned());
            } else if self.rules.wanted(&p) || self.baseline.contains_key(&p) {
                paths.insert(p);
            }
        }
        self.compare(paths, false)
    }

    /// Checks `paths` against the baseline, updates it, reports.
    fn compare(&mut self, paths: BTreeSet<PathBuf>, silent: bool) -> Result<(), SpoolError> {
        let now = OffsetDateTime::now_utc();
        let now_s = now.unix_timestamp();
        let mut out = Output::default();
        // (detector, root) → changes
        let mut groups: BTreeMap<(&'static str, PathBuf), Vec<Change>> = BTreeMap::new();
        let mut state_n = 0;
        for p in paths {
            let web = self.web_root_of(&p).is_some();
            let old = self.baseline.get(&p).cloned();
            let new = if self.rules.wanted(&p) || old.is_some() { self.observe(&p, web) } else { None };
            let new = match new {
                Some(n) if old.is_none() && self.baseline.len() as u64 >= self.max_files => {
                    self.skipped += 1;
                    drop(n);
                    continue;
                }
                other => other,
            };
            let kinds = diff(old.as_ref(), new.as_ref());
            if kinds.is_empty() {
                continue;
            }
            let key = state_key(&p);
            match &new {
                Some(n) => {
                    out.state.push(StateChange::Put(key, serde_json::to_vec(n).unwrap_or_default()));
                    self.baseline.insert(p.clone(), n.clone());
                }
                None => {
                    out.state.push(StateChange::Delete(key));
                    self.baseline.remove(&p);
                }
            }
            state_n += 1;
            if !silent {
                self.changes += 1;
                let accepted = self.is_accepted(&p, now_s);
                let mut change = Change {
                    path: p.clone(),
                    kinds,
                    accepted,
                    why: Vec::new(),
                    severity: self.rules.severity(&p),
                };
                let mut detector = "fim";
                if web && !accepted {
                    change.severity = self.web_severity;
                    let s = p.to_string_lossy();
                    let content_changed = change.kinds.contains(&ChangeKind::Created)
                        || change.kinds.contains(&ChangeKind::Modified);
                    if content_changed
                        && web::is_server_script(&s)
                        && let Ok(data) = super::lines::head(&p, web::SAMPLE)
                    {
                        let found = web::webshell(&data);
                        if !found.is_empty() {
                            self.webshells.flag(&p, &self.web_roots);
                            detector = "webshell";
                            change.severity = 1;
                            change.why = found;
                        }
                    }
                    if detector == "fim"
                        && content_changed
                        && web::is_page(&s)
                        && let Ok(data) = super::lines::head(&p, web::SAMPLE)
                    {
                        let (_, why) = web::defacement(old.as_ref().and_then(|o| o.page.as_ref()), &data);
                        if !why.is_empty() {
                            detector = "defacement";
                            change.severity =
                                if why.iter().any(|w| w.starts_with("defacer phrase")) { 1 } else { 2 };
                            change.why = why;
                        }
                    }
                }
                if self.emit_events {
                    out.records.push(fim_event(&change, now));
                }
                if !accepted {
                    let root = self.root_of(&p);
                    groups.entry((detector, root)).or_default().push(change);
                }
            }
            if state_n >= STATE_CHUNK {
                commit(&self.spool, &mut out, None, &self.stop)?;
                state_n = 0;
            }
        }
        for ((detector, root), changes) in groups {
            report(detector, &root, changes, now, &mut out);
        }
        commit(&self.spool, &mut out, None, &self.stop)?;
        HostCounters::set(&self.counters.fim_files, self.baseline.len() as u64);
        HostCounters::set(&self.counters.fim_changes, self.changes);
        HostCounters::set(&self.counters.fim_skipped, self.skipped);
        Ok(())
    }
}

struct Change {
    path: PathBuf,
    kinds: Vec<ChangeKind>,
    accepted: bool,
    why: Vec<String>,
    severity: u32,
}

fn state_key(p: &Path) -> Vec<u8> {
    let mut k = STATE_PREFIX.to_vec();
    k.extend_from_slice(p.as_os_str().as_encoded_bytes());
    k
}

fn diff(old: Option<&FileMeta>, new: Option<&FileMeta>) -> Vec<ChangeKind> {
    match (old, new) {
        (None, None) => Vec::new(),
        (None, Some(_)) => vec![ChangeKind::Created],
        (Some(_), None) => vec![ChangeKind::Deleted],
        (Some(o), Some(n)) => {
            let mut k = Vec::new();
            if o.size != n.size || o.hash != n.hash || (o.hash.is_empty() && o.mtime_ns != n.mtime_ns) {
                k.push(ChangeKind::Modified);
            }
            if o.mode != n.mode {
                k.push(ChangeKind::Permissions);
            }
            if o.uid != n.uid || o.gid != n.gid {
                k.push(ChangeKind::Owner);
            }
            k
        }
    }
}

fn hash_file(p: &Path, algo: HashAlgo) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut buf = vec![0u8; 64 * 1024];
    match algo {
        HashAlgo::Blake3 => {
            let mut h = blake3::Hasher::new();
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finalize().to_hex().to_string())
        }
        HashAlgo::Sha256 => {
            let mut h = sha2::Sha256::new();
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        }
    }
}

fn kinds_text(kinds: &[ChangeKind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("+")
}

fn fim_event(c: &Change, now: OffsetDateTime) -> NewRecord {
    let v = json!({
        "timestamp": canhgac_proto::timefmt::eve(now),
        "event_type": "fim",
        "fim": {"path": c.path.display().to_string(), "changes": c.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(), "accepted": c.accepted},
    });
    NewRecord {
        kind: RecordKind::Event,
        severity: 0,
        time: now,
        eve_json: v.to_string().into_bytes(),
        facts: None,
    }
}

/// One alert per change, or one per burst under a watched path.
fn report(detector: &'static str, root: &Path, changes: Vec<Change>, now: OffsetDateTime, out: &mut Output) {
    let (technique, category) = match detector {
        "defacement" => ("T1491.002", "Web Application Attack"),
        "webshell" => ("T1505.003", "Web Application Attack"),
        _ => ("T1565.001", "Potentially Bad Traffic"),
    };
    let sid_of = |d: &str| match d {
        "defacement" => sid::DEFACEMENT,
        "webshell" => sid::WEBSHELL,
        _ => sid::FIM,
    };
    let severity = changes.iter().map(|c| c.severity).min().unwrap_or(3);
    if changes.len() <= BURST {
        for c in changes {
            let what = match detector {
                "defacement" => {
                    format!("CANHGAC HOST web page defaced: {} ({})", c.path.display(), c.why.join("; "))
                }
                "webshell" => format!("CANHGAC HOST web shell: {} ({})", c.path.display(), c.why.join(", ")),
                _ => format!("CANHGAC HOST file {}: {}", kinds_text(&c.kinds), c.path.display()),
            };
            let mut d = Map::new();
            d.insert("path".into(), c.path.display().to_string().into());
            d.insert("changes".into(), c.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().into());
            if !c.why.is_empty() {
                d.insert("reasons".into(), c.why.clone().into());
            }
            d.insert("watched".into(), root.display().to_string().into());
            push_alert(sid_of(detector), what, category, c.severity, detector, technique, d, now, out);
        }
        return;
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &changes {
        for k in &c.kinds {
            *counts.entry(k.as_str()).or_default() += 1;
        }
    }
    let sample: Vec<String> =
        changes.iter().take(SAMPLE_PATHS).map(|c| c.path.display().to_string()).collect();
    let mut d = Map::new();
    d.insert("watched".into(), root.display().to_string().into());
    d.insert("files".into(), (changes.len() as u64).into());
    d.insert("counts".into(), json!(counts));
    d.insert("paths".into(), sample.into());
    let reasons: BTreeSet<String> = changes.iter().flat_map(|c| c.why.iter().cloned()).take(20).collect();
    if !reasons.is_empty() {
        d.insert("reasons".into(), reasons.into_iter().collect::<Vec<_>>().into());
    }
    let what = format!(
        "CANHGAC HOST {} files changed under {} ({})",
        changes.len(),
        root.display(),
        counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    );
    push_alert(sid_of(detector), what, category, severity, detector, technique, d, now, out);
}

#[allow(clippy::too_many_arguments)]
fn push_alert(
    signature_id: u64,
    signature: String,
    category: &str,
    severity: u32,
    detector: &str,
    technique: &str,
    details: Map<String, Value>,
    now: OffsetDateTime,
    out: &mut Output,
) {
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(now).into());
    m.insert("event_type".into(), "alert".into());
    let mut c = json!({"detector": detector, "technique": technique});
    if let Some(obj) = c.as_object_mut() {
        obj.extend(details);
    }
    let mut facts = crate::facts::host(detector, None, None);
    crate::facts::set_signature(&mut facts, signature_id, &signature, category, technique);
    let value =
        eve::alert(m, AlertInfo::builtin(signature_id, signature, category, severity), None, Vec::new(), c);
    out.records.push(NewRecord {
        kind: RecordKind::Alert,
        severity,
        time: now,
        eve_json: value.to_string().into_bytes(),
        facts: Some(facts),
    });
}

/// `canhgac-agent fim accept PATH...`: opens a maintenance window by
/// appending to the control file the running agent watches.
pub fn accept(state_dir: &Path, paths: &[PathBuf], duration: Duration) -> std::io::Result<i64> {
    let until = OffsetDateTime::now_utc().unix_timestamp() + duration.as_secs() as i64;
    let file = state_dir.join(ACCEPT_FILE);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut text: String = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_once('\t').and_then(|(_, u)| u.trim().parse::<i64>().ok()).is_some_and(|u| u >= now)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    for p in paths {
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        text.push_str(&format!("{}\t{until}\n", abs.display()));
    }
    canhgac_proto::files::write_atomic(&file, text.as_bytes(), 0o644)?;
    Ok(until)
}

/// Closes every maintenance window.
pub fn accept_clear(state_dir: &Path) -> std::io::Result<()> {
    canhgac_proto::files::write_atomic(&state_dir.join(ACCEPT_FILE), b"", 0o644)
}
