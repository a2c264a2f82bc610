//! State-secret markers in files on this host (`[host.secrets]`): the
//! configured directories (home directories, web roots, shared folders,
//! mail spools by default) are scanned when the agent starts, again every
//! `rescan_interval`, and each file again when inotify says it changed
//! (after `coalesce`). Reading is paced to `rate` bytes per second so that
//! a server is not loaded. Files seen unchanged (size and modification
//! time) since their last scan in this run are skipped.
//!
//! Detector state, key `hs` + path: the SHA-256 of the content last
//! alerted on, so that a restart or a rescan does not raise the same file
//! again; a file that changes and still carries a marker is raised again;
//! the key is deleted when the file no longer carries one.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

use notify::{RecursiveMode, Watcher};
use time::OffsetDateTime;

use super::{HostCounters, commit, config::SecretsConfig, nap};
use crate::{
    detect::{Output, StateChange},
    secrets::{Limits, Scanner, alert},
    spool::{Spool, SpoolError},
};

pub const STATE_PREFIX: &[u8] = b"hs";
const MAX_PENDING: usize = 100_000;

pub struct SecretRunner {
    spool: Spool,
    counters: Arc<HostCounters>,
    roots: Vec<PathBuf>,
    cfg: SecretsConfig,
    scanner: Scanner,
    /// SHA-256 of the content last alerted on, per path.
    alerted: HashMap<PathBuf, String>,
    /// (size, mtime) at the last scan, per path (this run only).
    seen: HashMap<PathBuf, (u64, i64)>,
    /// Pacing: bytes read since `window_start`.
    window_bytes: u64,
    window_start: Instant,
    files: u64,
    limits_hit: u64,
    errors: u64,
}

impl SecretRunner {
    pub fn new(
        cfg: &SecretsConfig,
        web_roots: &[PathBuf],
        spool: Spool,
        counters: Arc<HostCounters>,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> SecretRunner {
        let mut roots: Vec<PathBuf> = cfg.paths.iter().flat_map(|p| super::expand_home(p)).collect();
        roots.extend(web_roots.iter().cloned());
        roots.sort();
        roots.dedup();
        let alerted = restored
            .iter()
            .filter_map(|(k, v)| {
                let p = k.strip_prefix(STATE_PREFIX)?;
                Some((
                    PathBuf::from(String::from_utf8_lossy(p).into_owned()),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .collect();
        let limits = Limits { max_object: cfg.max_file_size, ..Limits::default() };
        SecretRunner {
            spool,
            counters,
            roots,
            cfg: cfg.clone(),
            scanner: Scanner::new(limits),
            alerted,
            seen: HashMap::new(),
            window_bytes: 0,
            window_start: Instant::now(),
            files: 0,
            limits_hit: 0,
            errors: 0,
        }
    }

    pub fn run(&mut self, stop: &AtomicBool) {
        if let Err(e) = self.run_inner(stop) {
            tracing::error!(error = %e, "state-secret scan stopped: spool error");
        }
    }

    fn run_inner(&mut self, stop: &AtomicBool) -> Result<(), SpoolError> {
        let (tx, rx) = sync_channel::<notify::Result<notify::Event>>(65_536);
        let overflow = Arc::new(AtomicBool::new(false));
        let ovf = overflow.clone();
        let mut watcher = match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            // only finished writes, creations and renames matter; our own
            // reads would otherwise feed the queue
            if let Ok(e) = &ev
                && matches!(e.kind, notify::EventKind::Access(a)
                    if a != notify::event::AccessKind::Close(notify::event::AccessMode::Write))
            {
                return;
            }
            if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                ovf.store(true, Relaxed);
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify is not available: state-secret scan by schedule only");
                None
            }
        };
        if let Some(w) = watcher.as_mut() {
            for r in &self.roots {
                if r.exists() {
                    let mode =
                        if r.is_dir() { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
                    if let Err(e) = w.watch(r, mode) {
                        tracing::warn!(path = %r.display(), error = %e, "cannot watch (scheduled scans still cover it)");
                    }
                }
            }
        }
        tracing::info!(roots = self.roots.len(), "state-secret scan: starting");
        self.full_scan(stop)?;
        let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
        let mut last_event = Instant::now();
        let mut last_scan = Instant::now();
        let mut need_scan = false;
        while !stop.load(Relaxed) {
            let mut got = 0;
            while let Ok(ev) = rx.try_recv() {
                got += 1;
                match ev {
                    Ok(ev) => {
                        need_scan |= ev.need_rescan();
                        for p in ev.paths {
                            if pending.len() >= MAX_PENDING {
                                need_scan = true;
                                break;
                            }
                            pending.insert(p);
                        }
                    }
                    Err(_) => need_scan = true,
                }
                if got >= 10_000 {
                    break;
                }
            }
            need_scan |= overflow.swap(false, Relaxed);
            if got > 0 {
                last_event = Instant::now();
            }
            let quiet = last_event.elapsed() >= self.cfg.coalesce;
            if (need_scan && quiet) || last_scan.elapsed() >= self.cfg.rescan_interval {
                pending.clear();
                need_scan = false;
                self.full_scan(stop)?;
                last_scan = Instant::now();
            } else if !pending.is_empty() && quiet {
                let mut out = Output::default();
                for p in std::mem::take(&mut pending) {
                    if stop.load(Relaxed) {
                        break;
                    }
                    if p.is_file() {
                        self.file(&p, &mut out, stop);
                    } else if !p.exists() {
                        self.forget(&p, &mut out);
                    }
                }
                commit(&self.spool, &mut out, None, stop)?;
                self.publish();
            }
            if got == 0 {
                nap(Duration::from_millis(100));
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Every file under the roots, paced; alerts committed in chunks.
    fn full_scan(&mut self, stop: &AtomicBool) -> Result<(), SpoolError> {
        let started = Instant::now();
        let mut out = Output::default();
        let mut stack: Vec<PathBuf> = self.roots.iter().rev().cloned().collect();
        let mut files = 0u64;
        while let Some(p) = stack.pop() {
            if stop.load(Relaxed) {
                break;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                match std::fs::read_dir(&p) {
                    Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                    Err(_) => self.errors += 1,
                }
            } else if meta.is_file() {
                files += 1;
                self.file(&p, &mut out, stop);
                if out.records.len() + out.state.len() >= 256 {
                    commit(&self.spool, &mut out, None, stop)?;
                    self.publish();
                }
            }
        }
        // files alerted on before that are gone now
        let gone: Vec<PathBuf> = self.alerted.keys().filter(|p| !p.exists()).cloned().collect();
        for p in gone {
            self.forget(&p, &mut out);
        }
        commit(&self.spool, &mut out, None, stop)?;
        if !stop.load(Relaxed) {
            HostCounters::set(
                &self.counters.secret_last_completed,
                OffsetDateTime::now_utc().unix_timestamp() as u64,
            );
            tracing::info!(files, secs = started.elapsed().as_secs_f64(), "state-secret scan: completed");
        }
        self.publish();
        Ok(())
    }

    fn forget(&mut self, p: &Path, out: &mut Output) {
        self.seen.remove(p);
        if self.alerted.remove(p).is_some() {
            out.state.push(StateChange::Delete(state_key(p)));
        }
    }

    /// Scans one file (unless unchanged since its last scan).
    fn file(&mut self, p: &Path, out: &mut Output, stop: &AtomicBool) {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(meta) = std::fs::metadata(p) else { return };
        let stamp = (meta.len(), meta.mtime());
        if self.seen.get(p) == Some(&stamp) {
            return;
        }
        self.pace(meta.len().min(self.cfg.max_file_size), stop);
        let (report, sha, size) = match self.scanner.scan_file(p) {
            Ok(r) => r,
            Err(_) => {
                self.errors += 1;
                return;
            }
        };
        self.files += 1;
        self.seen.insert(p.to_path_buf(), stamp);
        self.limits_hit += report.limits_hit;
        self.errors += report.errors;
        match report.verdict {
            Some(v) => {
                // the SHA-256 of the bytes scanned (scan_file hashes files
                // with a marker)
                if self.alerted.get(p) == Some(&sha) {
                    return;
                }
                let facts = alert::FileFacts::of(p, size);
                out.records.push(alert::file_alert(&facts, &v, &sha, OffsetDateTime::now_utc()));
                out.state.push(StateChange::Put(state_key(p), sha.clone().into_bytes()));
                self.alerted.insert(p.to_path_buf(), sha);
            }
            None => {
                if self.alerted.remove(p).is_some() {
                    out.state.push(StateChange::Delete(state_key(p)));
                }
            }
        }
    }

    /// Sleeps as needed to keep reading at `rate` bytes per second.
    fn pace(&mut self, bytes: u64, stop: &AtomicBool) {
        self.window_bytes += bytes;
        let rate = self.cfg.rate.max(1);
        loop {
            let due = Duration::from_secs_f64(self.window_bytes as f64 / rate as f64);
            let elapsed = self.window_start.elapsed();
            if elapsed >= due || stop.load(Relaxed) {
                break;
            }
            nap((due - elapsed).min(Duration::from_millis(100)));
        }
        if self.window_start.elapsed() > Duration::from_secs(10) {
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
    }

    fn publish(&self) {
        let c = &self.counters;
        HostCounters::set(&c.secret_files, self.files);
        HostCounters::set(&c.secret_limits_hit, self.limits_hit);
        HostCounters::set(&c.secret_errors, self.errors);
    }
}

fn state_key(p: &Path) -> Vec<u8> {
    let mut k = STATE_PREFIX.to_vec();
    k.extend_from_slice(p.display().to_string().as_bytes());
    k
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secrets::text::{Encoding, encode};

    const MARKED: &str =
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nSố: 9/BC\nTUYỆT MẬT\nKế hoạch Sông Lam bí mật\n";

    fn cfg(root: &Path) -> SecretsConfig {
        SecretsConfig {
            enabled: true,
            paths: vec![root.display().to_string()],
            rescan_interval: Duration::from_secs(3600),
            rate: 1 << 30,
            max_file_size: 1 << 20,
            coalesce: Duration::from_millis(10),
        }
    }

    fn alerts(spool: &Spool) -> Vec<serde_json::Value> {
        spool
            .read_after(0, 10_000, 64 << 20)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.eve_json).unwrap())
            .collect()
    }

    #[test]
    fn secrets_host_scan_alerts_once_per_content_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(docs.join("sub")).unwrap();
        std::fs::write(docs.join("sub/a.txt"), encode(MARKED, Encoding::Vni)).unwrap();
        std::fs::write(docs.join("b.txt"), "bảo mật, mật khẩu, MẬT KHẨU").unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
        let stop = AtomicBool::new(false);
        let counters = Arc::new(HostCounters::default());
        let mut r = SecretRunner::new(&cfg(&docs), &[], spool.clone(), counters.clone(), &[]);
        r.full_scan(&stop).unwrap();
        let a = alerts(&spool);
        assert_eq!(a.len(), 1, "{a:?}");
        // typed facts for the collector: on this host, the detector's sid
        let rec = &spool.read_after(0, 10, 1 << 20).unwrap()[0];
        let facts = rec.facts.as_ref().unwrap();
        assert!(facts.on_host);
        assert_eq!(facts.detector, "secret-marker");
        assert_eq!(facts.signature_id, crate::eve::sid::SECRET_MARKER);
        assert_eq!(a[0]["canhgac"]["detector"], "secret-marker");
        assert_eq!(a[0]["canhgac"]["secret"]["level"], "tuyet-mat");
        assert_eq!(a[0]["canhgac"]["secret"]["encoding"], "vni");
        assert!(a[0]["file"]["path"].as_str().unwrap().ends_with("sub/a.txt"));
        let text = a[0].to_string();
        assert!(!text.contains("Sông Lam") && !text.contains("Kế hoạch") && !text.contains("Song Lam"));
        assert_eq!(counters.secret_files.load(Relaxed), 2);
        assert!(counters.secret_last_completed.load(Relaxed) > 0);

        // a rescan and a restart (state from the spool) raise nothing new
        r.seen.clear();
        r.full_scan(&stop).unwrap();
        let restored = spool.detector_state().unwrap();
        let mut again = SecretRunner::new(&cfg(&docs), &[], spool.clone(), counters.clone(), &restored);
        again.full_scan(&stop).unwrap();
        assert_eq!(alerts(&spool).len(), 1);

        // new content with a marker: raised again; no marker any more: the
        // state is dropped
        std::fs::write(docs.join("sub/a.txt"), encode(&MARKED.replace("TUYỆT", "TỐI"), Encoding::Utf8))
            .unwrap();
        again.full_scan(&stop).unwrap();
        let a = alerts(&spool);
        assert_eq!(a.len(), 2);
        assert_eq!(a[1]["canhgac"]["secret"]["level"], "toi-mat");
        std::fs::write(docs.join("sub/a.txt"), "nothing here").unwrap();
        again.full_scan(&stop).unwrap();
        let state = spool.detector_state().unwrap();
        assert!(!state.iter().any(|(k, _)| k.starts_with(STATE_PREFIX)), "{state:?}");
    }

    #[test]
    fn secrets_host_scan_sees_changes_through_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut r =
            SecretRunner::new(&cfg(&docs), &[], spool.clone(), Arc::new(HostCounters::default()), &[]);
        let s = stop.clone();
        let t = std::thread::spawn(move || r.run(&s));
        nap(Duration::from_millis(300));
        std::fs::write(docs.join("new.txt"), encode(MARKED, Encoding::Tcvn3)).unwrap();
        let started = Instant::now();
        while alerts(&spool).is_empty() && started.elapsed() < Duration::from_secs(10) {
            nap(Duration::from_millis(50));
        }
        stop.store(true, Relaxed);
        t.join().unwrap();
        let a = alerts(&spool);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0]["canhgac"]["secret"]["encoding"], "tcvn3");
    }

    #[test]
    fn secrets_host_scan_is_paced() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        for i in 0..4 {
            std::fs::write(docs.join(format!("{i}.txt")), vec![b'a'; 100_000]).unwrap();
        }
        let spool = Spool::open(&dir.path().join("spool"), 1 << 30).unwrap();
        let mut c = cfg(&docs);
        c.rate = 800_000;
        let mut r = SecretRunner::new(&c, &[], spool, Arc::new(HostCounters::default()), &[]);
        let started = Instant::now();
        r.full_scan(&AtomicBool::new(false)).unwrap();
        // 400 kB at 800 kB/s
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    }
}
