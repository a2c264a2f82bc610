//! The durable spool: every record the agent produces goes here first and
//! leaves only when the collector has acknowledged it, or when the size cap
//! forces an eviction (counted, lowest severity first).
//!
//! # On-disk format
//!
//! One sled database (`STATE_DIR/spool/`), one tree `spool`:
//!
//! | key                              | value                                  |
//! |----------------------------------|----------------------------------------|
//! | `r` seq (u64 BE)                 | `canhgac.v1.Record` (protobuf), exactly what is sent |
//! | `i` class (u8) seq (u64 BE)      | empty: eviction index                  |
//! | `m` `next_seq`                   | u64 BE: next sequence number           |
//! | `m` `produced`                   | u64 BE: records ever appended          |
//! | `m` `acked`                      | u64 BE: records ever acknowledged      |
//! | `m` `oversize`                   | u64 BE: records too large to send      |
//! | `m` `dropped` class (u8)         | u64 BE: records evicted at the cap     |
//! | `c` source id                    | opaque checkpoint of an input source   |
//! | `s` key                          | detector state (see `detect`)          |
//!
//! The eviction class is the alert severity (1 most severe .. 4) and 5 for
//! events; eviction takes the highest class first, oldest first within it.
//!
//! # Invariants
//!
//! * Every append is one atomic sled batch: records, eviction, counters and
//!   the input checkpoint commit together. After a crash the spool holds a
//!   prefix of the appends, and an input replayed from its checkpoint
//!   produces again exactly the records that were lost, with the same
//!   sequence numbers.
//! * A record is handed to the uplink only once it is durable (flushed), so
//!   the collector never stores a record the agent could lose and produce
//!   again differently.
//! * `produced = in spool + acked + dropped + oversize`, across restarts.
//! * Eviction never takes a record already handed to the uplink and not
//!   yet acknowledged (in flight): the collector may hold it, and a record
//!   delivered must not also count as dropped. The payload cap can
//!   therefore be exceeded by at most the uplink's window.
//!
//! # Disk use and a full disk
//!
//! `spool.max_bytes` is meant as the disk the spool's directory occupies
//! (blocks of every file in it, measured, not payload). sled's files hold
//! 2.5 to 8 times the payload (segments are cleaned only below 50 % live,
//! nodes are rewritten, snapshots), so the payload cap starts at
//! `(max_bytes - reserve) / 5` and shrinks by a tenth (at most once a
//! second) whenever the directory measures above 80 % of `max_bytes`.
//! sled frees the space of evicted records late, so the bound is not exact:
//! measured with eviction running (records of 300–500 bytes, chunks of
//! 512, six times `max_bytes` written, the cap shrinking above 100 %), the
//! directory peaked at 1.5 to 1.9 times `max_bytes` (2 MiB → 3.9 MB,
//! 4 MiB → 6.3 MB, 15 MiB → 27.8 MB where it was 41.9 MB before, 32 MiB →
//! 49.8 MB); the documented margin is therefore `max_bytes` again: the
//! directory stays under twice `spool.max_bytes`
//! (`disk_use_stays_under_twice_max_bytes`).
//!
//! The directory also holds `canhgac-reserve`, `min(max_bytes / 8, 1 MiB)`
//! of real blocks. When a write fails (ENOSPC or another I/O error, which
//! sled keeps as a sticky error), the spool drops its sled handle, deletes
//! the reserve (room for sled's recovery and for acknowledgements), reopens
//! sled and lowers its payload cap to three quarters of what it held. Until
//! the reserve can be written again (twice its size, then cut back, so as
//! much stays free) appends fail with [`SpoolError::Full`] and write
//! nothing; what the spool holds keeps being delivered and acknowledged.
//! Producers react by kind: capture files and log followers stop reading
//! and retry the same chunk (their checkpoint does not move, so nothing is
//! lost, also across restarts); a live capture, which cannot wait, counts
//! the chunk's records as produced and dropped ([`Spool::lost`], in
//! `spool_dropped` by severity, logged with the reason). A commit whose
//! flush failed is checked against the reopened database so that a retry
//! never stores the same batch twice.
//!
//! Opening removes `snap.*.generating` files: sled writes a snapshot under
//! that name and renames it when complete, but reads a leftover cut by a
//! full disk as the newest snapshot and refuses it as corrupt forever. If
//! opening fails on a full disk the reserve is released and the open
//! retried; the daemon waits for space rather than exit.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use canhgac_proto::{timefmt, v1};
use prost::Message as _;
use time::OffsetDateTime;
use tokio::sync::watch;

pub const CLASSES: usize = 5;
const EVENT_CLASS: u8 = 5;

/// Name of the reserve file inside the spool directory.
pub const RESERVE_FILE: &str = "canhgac-reserve";
/// Largest reserve: room for sled to recover (a snapshot, a torn segment
/// zeroed) and to write acknowledgements while the disk is full.
const RESERVE_MAX: u64 = 1 << 20;
/// Share of `max_bytes` (disk) given to payload at first: sled's files
/// measured at 2.5–4.8 times the payload they hold (log segments are
/// cleaned at 50 % live, nodes are rewritten, snapshots, the reserve).
const PAYLOAD_SHARE_DIV: u64 = 5;
/// How often the directory is measured, and a refused spool probes for space.
const MEASURE_EVERY: Duration = Duration::from_millis(250);
const PROBE_EVERY: Duration = Duration::from_millis(500);
const REOPEN_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt spool record at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    /// The disk is full or the storage failed: nothing was written; the
    /// spool recovers by itself when space returns (see the module doc).
    #[error("spool cannot write: {0}")]
    Full(String),
}

impl SpoolError {
    /// A condition the spool recovers from by itself: retry later.
    pub fn is_full(&self) -> bool {
        matches!(self, SpoolError::Full(_))
    }
}

/// A detector state entry: (key, value).
pub type StateEntry = (Vec<u8>, Vec<u8>);

/// A record to append; the spool assigns its sequence number.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub kind: v1::RecordKind,
    /// 1..=4 for alerts, 0 for events.
    pub severity: u32,
    pub time: OffsetDateTime,
    pub eve_json: Vec<u8>,
    /// The typed facts of an alert (see [`crate::facts`]); `None` for events.
    pub facts: Option<v1::RecordFacts>,
}

impl NewRecord {
    fn class(&self) -> u8 {
        class_of(self.kind as i32, self.severity)
    }
}

fn class_of(kind: i32, severity: u32) -> u8 {
    if kind == v1::RecordKind::Alert as i32 && (1..=4).contains(&severity) {
        severity as u8
    } else if kind == v1::RecordKind::Alert as i32 {
        4
    } else {
        EVENT_CLASS
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_seq: u64,
    pub last_seq: u64,
    /// Records evicted by this append (old or new).
    pub evicted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub records: u64,
    /// Payload: encoded records plus their keys.
    pub bytes: u64,
    /// The configured bound of the spool's disk use.
    pub max_bytes: u64,
    /// Payload allowed before eviction (derived from `max_bytes`, lowered
    /// when the directory measures above it or the disk fills).
    pub payload_cap: u64,
    /// Last measured disk use of the spool directory (0 when not measured).
    pub disk_bytes: u64,
    pub produced: u64,
    pub acked: u64,
    /// Dropped because larger than any batch the collector accepts.
    pub oversize: u64,
    /// Evicted at the cap or refused on a full disk, by class 1..=5
    /// (index 0 = class 1).
    pub dropped: [u64; CLASSES],
    pub next_seq: u64,
    /// Times the storage failed (disk full) and was reopened.
    pub storage_failures: u64,
    /// Refusing appends because the disk is full.
    pub full: bool,
}

impl SpoolStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

struct Db {
    db: sled::Db,
    tree: sled::Tree,
}

/// A commit whose flush failed: it may or may not be on disk.
struct Uncertain {
    next_after: u64,
    records: usize,
    checkpoint: Option<(String, Vec<u8>)>,
    outcome: AppendOutcome,
}

struct State {
    stats: SpoolStats,
    db: Option<Db>,
    /// Counters changed outside a batch (records lost on a full disk).
    counters_dirty: bool,
    uncertain: Option<Uncertain>,
    /// Highest sequence number handed to the uplink: records at or below
    /// it and still held are in flight (sent or about to be resent) and
    /// are not evicted, so a record is never both delivered and counted
    /// as dropped.
    read_upto: u64,
    /// Alerts committed since start, by detector (metrics).
    alerts_by_detector: BTreeMap<String, u64>,
    last_open_attempt: Option<Instant>,
    last_probe: Option<Instant>,
    last_measure: Option<Instant>,
    last_shrink: Option<Instant>,
}

#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Disk accounting (reserve file, measured directory); off for
    /// payload-capped spools (tests, tools).
    disk: bool,
    reserve: u64,
    state: Mutex<State>,
    durable: watch::Sender<u64>,
}

fn rkey(seq: u64) -> [u8; 9] {
    let mut k = [b'r'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn ikey(class: u8, seq: u64) -> [u8; 10] {
    let mut k = [b'i'; 10];
    k[1] = class;
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn mkey(name: &str) -> Vec<u8> {
    let mut k = vec![b'm'];
    k.extend_from_slice(name.as_bytes());
    k
}

fn dropped_key(class: u8) -> Vec<u8> {
    let mut k = mkey("dropped");
    k.push(class);
    k
}

fn ckey(source: &str) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(source.as_bytes());
    k
}

fn be(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[8 - n..].copy_from_slice(&v[v.len() - n..]);
    u64::from_be_bytes(b)
}

fn entry_size(value_len: usize) -> u64 {
    (9 + value_len) as u64
}

/// Disk blocks used by the files under `dir` (not their apparent size).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

/// A write error of the storage (disk full, I/O error): recoverable by
/// reopening; anything else (corruption, a bug) is not.
fn storage_failure(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(_))
}

/// sled names a snapshot `snap.<lsn>.generating` while writing it and
/// renames it when complete; one cut by a full disk would be read as the
/// newest snapshot and refused as corrupt at every start. The previous
/// snapshot is removed only after the rename, so a leftover is garbage.
fn remove_partial_snapshots(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::warn!(file = %name, "removed a snapshot cut short by a failed write"),
                Err(err) => tracing::warn!(file = %name, error = %err, "cannot remove a partial snapshot"),
            }
        }
    }
}

fn load_stats(tree: &sled::Tree, stats: &mut SpoolStats) -> Result<(), sled::Error> {
    let get =
        |name: &str| -> Result<u64, sled::Error> { Ok(tree.get(mkey(name))?.map(|v| be(&v)).unwrap_or(0)) };
    stats.produced = get("produced")?;
    stats.acked = get("acked")?;
    stats.oversize = get("oversize")?;
    stats.next_seq = get("next_seq")?.max(1);
    for class in 1..=CLASSES as u8 {
        stats.dropped[class as usize - 1] = tree.get(dropped_key(class))?.map(|v| be(&v)).unwrap_or(0);
    }
    stats.records = 0;
    stats.bytes = 0;
    for kv in tree.scan_prefix(b"r") {
        let (_, v) = kv?;
        stats.records += 1;
        stats.bytes += entry_size(v.len());
    }
    Ok(())
}

fn open_db(dir: &Path) -> Result<Db, sled::Error> {
    remove_partial_snapshots(dir);
    let db = sled::Config::new().path(dir).flush_every_ms(Some(200)).open()?;
    let tree = db.open_tree("spool")?;
    Ok(Db { db, tree })
}

impl Spool {
    /// Opens the spool in `dir` with `max_bytes` bounding the disk its
    /// files occupy (see the module doc). On a full disk it opens anyway,
    /// releasing its reserve, and refuses appends until space returns.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let reserve = (max_bytes / 8).min(RESERVE_MAX);
        let cap = max_bytes.saturating_sub(reserve) / PAYLOAD_SHARE_DIV;
        Spool::open_inner(dir, max_bytes, cap, true, reserve)
    }

    /// A spool whose cap counts payload only, without disk accounting or
    /// reserve file (tests and tools that only read).
    pub fn open_payload_cap(dir: &Path, cap: u64) -> Result<Spool, SpoolError> {
        Spool::open_inner(dir, cap, cap, false, 0)
    }

    fn open_inner(
        dir: &Path,
        max_bytes: u64,
        cap: u64,
        disk: bool,
        reserve: u64,
    ) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::Sled(e.into()))?;
        let mut storage_failures = 0;
        let db = match open_db(dir) {
            Ok(db) => db,
            Err(e) if disk && storage_failure(&e) => {
                // a full disk: give sled the reserve to recover with
                tracing::warn!(error = %e, "cannot open the spool; releasing its reserve and trying again");
                storage_failures += 1;
                let _ = std::fs::remove_file(dir.join(RESERVE_FILE));
                match open_db(dir) {
                    Ok(db) => db,
                    Err(e) if storage_failure(&e) => {
                        return Err(SpoolError::Full(format!("opening the spool: {e}")));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let mut stats = SpoolStats { max_bytes, payload_cap: cap, storage_failures, ..Default::default() };
        load_stats(&db.tree, &mut stats)?;
        let durable = stats.next_seq - 1;
        let spool = Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                disk,
                reserve,
                state: Mutex::new(State {
                    stats,
                    db: Some(db),
                    counters_dirty: false,
                    uncertain: None,
                    last_open_attempt: None,
                    last_probe: None,
                    last_measure: None,
                    last_shrink: None,
                    read_upto: 0,
                    alerts_by_detector: BTreeMap::new(),
                }),
                durable: watch::Sender::new(durable),
            }),
        };
        if disk {
            let mut st = spool.lock();
            if !spool.probe(&mut st) {
                st.stats.full = true;
                tracing::warn!(
                    dir = %dir.display(),
                    "the spool's disk is full: holding and delivering what it has, new records wait for space"
                );
            }
            spool.measure(&mut st, true);
        }
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the reserve file (twice its size first, so that as much
    /// again stays free after it). `true`: there is room.
    fn probe(&self, st: &mut State) -> bool {
        st.last_probe = Some(Instant::now());
        let path = self.inner.dir.join(RESERVE_FILE);
        let want = self.inner.reserve;
        if want == 0 {
            return true;
        }
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
            let block = vec![0u8; 64 << 10];
            let mut left = want * 2;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                f.write_all(&block[..n])?;
                left -= n as u64;
            }
            f.flush()?;
            f.set_len(want)?;
            Ok(())
        };
        match write() {
            Ok(()) => true,
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                false
            }
        }
    }

    /// Measures the directory; above 80 % of `max_bytes` the payload cap
    /// shrinks (by a tenth, at most once a second).
    fn measure(&self, st: &mut State, force: bool) {
        if !self.inner.disk || (!force && st.last_measure.is_some_and(|t| t.elapsed() < MEASURE_EVERY)) {
            return;
        }
        st.last_measure = Some(Instant::now());
        let used = disk_usage(&self.inner.dir);
        st.stats.disk_bytes = used;
        // sled frees the space of deleted records late: start keeping less
        // payload before the bound is reached
        let threshold = st.stats.max_bytes / 10 * 8;
        if used > threshold && st.last_shrink.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            st.last_shrink = Some(Instant::now());
            let floor = st.stats.max_bytes / 64;
            let cap = (st.stats.payload_cap.min(st.stats.bytes) / 10 * 9).max(floor);
            if cap < st.stats.payload_cap {
                tracing::warn!(
                    disk_bytes = used,
                    max_bytes = st.stats.max_bytes,
                    payload_cap = cap,
                    "the spool's files exceed spool.max_bytes: keeping less payload"
                );
                st.stats.payload_cap = cap;
            }
        }
    }

    /// The storage failed (disk full): close it, release the reserve, mark
    /// the spool full, and lower the payload cap to what the disk held.
    fn fail(&self, st: &mut State, e: &sled::Error, what: &str) -> SpoolError {
        st.stats.storage_failures += 1;
        st.db = None;
        if self.inner.disk {
            let _ = std::fs::remove_file(self.inner.dir.join(RESERVE_FILE));
            st.stats.full = true;
            let cap = (st.stats.bytes / 4 * 3).max(st.stats.max_bytes / 64);
            st.stats.payload_cap = st.stats.payload_cap.min(cap);
        }
        tracing::error!(error = %e, what, "spool storage failed (disk full?): reopening it, new records wait for space");
        SpoolError::Full(format!("{what}: {e}"))
    }

    /// Reopens the storage after a failure (at most every 200 ms).
    fn ensure_open(&self, st: &mut State) -> Result<(), SpoolError> {
        if st.db.is_some() {
            return Ok(());
        }
        if st.last_open_attempt.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return Err(SpoolError::Full("spool storage not reopened yet".into()));
        }
        st.last_open_attempt = Some(Instant::now());
        // the old handle's flusher thread may hold the file lock a moment
        let db = match open_db(&self.inner.dir) {
            Ok(db) => db,
            Err(e) if storage_failure(&e) => {
                return Err(SpoolError::Full(format!("reopening the spool: {e}")));
            }
            Err(e) => return Err(e.into()),
        };
        load_stats(&db.tree, &mut st.stats)?;
        tracing::info!(records = st.stats.records, next_seq = st.stats.next_seq, "spool storage reopened");
        st.db = Some(db);
        // a count of records lost meanwhile is written with the next batch
        st.counters_dirty = true;
        Ok(())
    }

    fn tree<'a>(&self, st: &'a mut State) -> Result<&'a sled::Tree, SpoolError> {
        self.ensure_open(st)?;
        match &st.db {
            Some(db) => Ok(&db.tree),
            None => Err(SpoolError::Full("spool storage closed".into())),
        }
    }

    /// Appends records (and the checkpoint of the input they came from) in
    /// one atomic batch, evicting at the cap. Not durable until [`flush`].
    ///
    /// [`flush`]: Spool::flush
    pub fn append(
        &self,
        records: Vec<NewRecord>,
        checkpoint: Option<(&str, &[u8])>,
    ) -> Result<AppendOutcome, SpoolError> {
        self.append_with_state(records, checkpoint, Vec::new())
    }

    /// As [`append`](Spool::append), also committing detector state
    /// (`None` deletes a key) in the same atomic batch.
    pub fn append_with_state(
        &self,
        records: Vec<NewRecord>,
        checkpoint: Option<(&str, &[u8])>,
        state: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<AppendOutcome, SpoolError> {
        let mut st = self.lock();
        self.apply(&mut st, &records, checkpoint, &state)
    }

    /// Appends and flushes in one step: the producers' commit. On a full
    /// disk it returns [`SpoolError::Full`] and nothing of the batch is
    /// kept: the caller keeps its input (does not advance) and retries, or
    /// reports the records with [`Spool::lost`].
    pub fn commit(
        &self,
        records: &[NewRecord],
        checkpoint: Option<(&str, &[u8])>,
        state: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<AppendOutcome, SpoolError> {
        let mut st = self.lock();
        // a retry of a commit whose flush failed but which reached the disk
        if let Some(u) = st.uncertain.take() {
            let _ = self.ensure_open(&mut st);
            if st.db.is_none() {
                st.uncertain = Some(u);
                return Err(SpoolError::Full("spool storage not reopened yet".into()));
            }
            let same = u.records == records.len()
                && u.checkpoint.as_ref().map(|(s, p)| (s.as_str(), p.as_slice())) == checkpoint;
            if same && st.stats.next_seq == u.next_after {
                tracing::info!(first_seq = u.outcome.first_seq, "the batch of a failed flush was on disk");
                self.release(&st);
                return Ok(u.outcome);
            }
        }
        let out = self.apply(&mut st, records, checkpoint, state)?;
        let flushed = match &st.db {
            Some(db) => db.db.flush(),
            None => return Err(SpoolError::Full("spool storage closed".into())),
        };
        if let Err(e) = flushed {
            if !storage_failure(&e) {
                return Err(e.into());
            }
            let err = self.fail(&mut st, &e, "flush");
            st.uncertain = Some(Uncertain {
                next_after: out.last_seq + 1,
                records: records.len(),
                checkpoint: checkpoint.map(|(s, p)| (s.to_string(), p.to_vec())),
                outcome: out,
            });
            return Err(err);
        }
        self.release(&st);
        for r in records.iter().filter(|r| r.kind == v1::RecordKind::Alert) {
            let d = r.facts.as_ref().map(|f| f.detector.as_str()).filter(|d| !d.is_empty()).unwrap_or("rule");
            match st.alerts_by_detector.get_mut(d) {
                Some(n) => *n += 1,
                None => {
                    st.alerts_by_detector.insert(d.to_string(), 1);
                }
            }
        }
        Ok(out)
    }

    /// Alerts committed since this process opened the spool, by detector
    /// (a rule's alert counts as `rule`).
    pub fn alerts_by_detector(&self) -> BTreeMap<String, u64> {
        self.lock().alerts_by_detector.clone()
    }

    /// Event time of the oldest record still held (waiting for its
    /// acknowledgement), if any.
    pub fn oldest_time(&self) -> Result<Option<OffsetDateTime>, SpoolError> {
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let Some(kv) = tree.scan_prefix([b'r']).next() else { return Ok(None) };
        let (k, v) = kv.map_err(|e| self.sled_err(&mut st, e, "read"))?;
        let rec = v1::Record::decode(v.as_ref())
            .map_err(|e| SpoolError::Corrupt { seq: be(&k[1..]), reason: e.to_string() })?;
        Ok(rec.time.as_ref().map(timefmt::from_timestamp))
    }

    /// Counts records that could not be kept (disk full, input that cannot
    /// wait): produced and dropped in their class, written with the next
    /// batch that reaches the disk.
    pub fn lost(&self, records: &[NewRecord]) {
        if records.is_empty() {
            return;
        }
        let mut st = self.lock();
        st.stats.produced += records.len() as u64;
        for r in records {
            st.stats.dropped[r.class() as usize - 1] += 1;
        }
        st.counters_dirty = true;
        tracing::warn!(records = records.len(), "records dropped: the spool's disk is full");
    }

    fn apply(
        &self,
        st: &mut State,
        records: &[NewRecord],
        checkpoint: Option<(&str, &[u8])>,
        state: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<AppendOutcome, SpoolError> {
        if self.inner.disk {
            if st.stats.full {
                if st.last_probe.is_some_and(|t| t.elapsed() < PROBE_EVERY) || !self.probe(st) {
                    return Err(SpoolError::Full("no space left for the spool".into()));
                }
                st.stats.full = false;
                tracing::info!("space for the spool again: taking new records");
            }
            self.measure(st, false);
        }
        let disk = self.inner.disk;
        let tree = self.tree(st)?.clone();
        let first_seq = st.stats.next_seq;
        let mut batch = sled::Batch::default();
        // (class, seq, size, encoded) of the new records
        let mut fresh: Vec<(u8, u64, u64, Vec<u8>)> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let seq = first_seq + i as u64;
            let class = r.class();
            let encoded = v1::Record {
                seq,
                kind: r.kind as i32,
                time: Some(timefmt::to_timestamp(r.time)),
                severity: r.severity,
                eve_json: r.eve_json.clone(),
                facts: r.facts.clone(),
                ..Default::default()
            }
            .encode_to_vec();
            fresh.push((class, seq, entry_size(encoded.len()), encoded));
        }
        let new_bytes: u64 = fresh.iter().map(|f| f.2).sum();
        let mut excess = (st.stats.bytes + new_bytes).saturating_sub(st.stats.payload_cap);
        let mut alive = vec![true; fresh.len()];
        let mut evicted_old: Vec<(u8, u64, u64)> = Vec::new();
        let mut dropped_now = [0u64; CLASSES];
        if excess > 0 {
            'classes: for class in (1..=CLASSES as u8).rev() {
                for kv in tree.scan_prefix([b'i', class]) {
                    if excess == 0 {
                        break 'classes;
                    }
                    let (k, _) = kv.map_err(|e| self.sled_err(st, e, "read"))?;
                    let seq = be(&k[2..]);
                    if seq <= st.read_upto {
                        continue;
                    }
                    let size = tree
                        .get(rkey(seq))
                        .map_err(|e| self.sled_err(st, e, "read"))?
                        .map(|v| entry_size(v.len()))
                        .unwrap_or(0);
                    evicted_old.push((class, seq, size));
                    excess = excess.saturating_sub(size);
                    dropped_now[class as usize - 1] += 1;
                }
                for (i, f) in fresh.iter().enumerate() {
                    if excess == 0 {
                        break 'classes;
                    }
                    if f.0 == class && alive[i] {
                        alive[i] = false;
                        excess = excess.saturating_sub(f.2);
                        dropped_now[class as usize - 1] += 1;
                    }
                }
            }
        }
        let mut added_records = 0u64;
        let mut added_bytes = 0u64;
        for ((class, seq, size, encoded), keep) in fresh.iter().zip(&alive) {
            if *keep {
                batch.insert(&rkey(*seq), encoded.as_slice());
                batch.insert(&ikey(*class, *seq), &[]);
                added_records += 1;
                added_bytes += size;
            }
        }
        let mut removed_bytes = 0u64;
        for (class, seq, size) in &evicted_old {
            batch.remove(&rkey(*seq));
            batch.remove(&ikey(*class, *seq));
            removed_bytes += size;
        }
        let next_seq = first_seq + fresh.len() as u64;
        let produced = st.stats.produced + fresh.len() as u64;
        batch.insert(mkey("next_seq"), &next_seq.to_be_bytes());
        batch.insert(mkey("produced"), &produced.to_be_bytes());
        let evicted: u64 = dropped_now.iter().sum();
        for class in 1..=CLASSES as u8 {
            let n = dropped_now[class as usize - 1];
            if n > 0 || st.counters_dirty {
                let total = st.stats.dropped[class as usize - 1] + n;
                batch.insert(dropped_key(class), &total.to_be_bytes());
            }
        }
        if let Some((source, position)) = checkpoint {
            batch.insert(ckey(source), position);
        }
        for (key, value) in state {
            let mut k = vec![b's'];
            k.extend_from_slice(key);
            match value {
                Some(v) => batch.insert(k, v.as_slice()),
                None => batch.remove(k),
            }
        }
        if let Err(e) = tree.apply_batch(batch) {
            return Err(self.sled_err(st, e, "append"));
        }
        st.counters_dirty = false;
        st.stats.next_seq = next_seq;
        st.stats.produced = produced;
        st.stats.records = st.stats.records + added_records - evicted_old.len() as u64;
        st.stats.bytes = st.stats.bytes + added_bytes - removed_bytes;
        for (i, n) in dropped_now.iter().enumerate() {
            st.stats.dropped[i] += n;
        }
        if evicted > 0 {
            tracing::warn!(
                evicted,
                spool_bytes = st.stats.bytes,
                payload_cap = st.stats.payload_cap,
                max_bytes = st.stats.max_bytes,
                disk_bytes = st.stats.disk_bytes,
                disk,
                "spool full: evicted records, lowest severity first"
            );
        }
        Ok(AppendOutcome { first_seq, last_seq: next_seq - 1, evicted })
    }

    /// A sled error: a storage failure closes the spool (recoverable).
    fn sled_err(&self, st: &mut State, e: sled::Error, what: &str) -> SpoolError {
        if storage_failure(&e) { self.fail(st, &e, what) } else { e.into() }
    }

    /// Releases everything appended so far to the uplink.
    fn release(&self, st: &State) {
        let upto = st.stats.next_seq - 1;
        self.inner.durable.send_if_modified(|d| {
            if *d < upto {
                *d = upto;
                true
            } else {
                false
            }
        });
    }

    /// Makes all appends so far durable and releases them to the uplink.
    pub fn flush(&self) -> Result<(), SpoolError> {
        let mut st = self.lock();
        let r = match &st.db {
            Some(db) => db.db.flush(),
            None => return Err(SpoolError::Full("spool storage closed".into())),
        };
        if let Err(e) = r {
            return Err(self.sled_err(&mut st, e, "flush"));
        }
        self.release(&st);
        Ok(())
    }

    /// Highest durable sequence number; changes wake the uplink.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.inner.durable.subscribe()
    }

    /// Durable records with `seq > after`, in order, within the limits
    /// (at least one record when any is available).
    pub fn read_after(
        &self,
        after: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::Record>, SpoolError> {
        let durable = *self.inner.durable.borrow();
        if after >= durable {
            return Ok(Vec::new());
        }
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for kv in tree.range(rkey(after + 1)..=rkey(durable)) {
            let (k, v) = kv.map_err(|e| self.sled_err(&mut st, e, "read"))?;
            if !out.is_empty() && (out.len() >= max_records || bytes + v.len() > max_bytes) {
                break;
            }
            let seq = be(&k[1..]);
            let rec = v1::Record::decode(v.as_ref())
                .map_err(|e| SpoolError::Corrupt { seq, reason: e.to_string() })?;
            bytes += v.len();
            out.push(rec);
        }
        if let Some(last) = out.last() {
            st.read_upto = st.read_upto.max(last.seq);
        }
        Ok(out)
    }

    /// Removes acknowledged records `first..=last` (those still present).
    pub fn ack(&self, first: u64, last: u64) -> Result<u64, SpoolError> {
        if first == 0 || last < first {
            return Ok(0);
        }
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let mut batch = sled::Batch::default();
        let mut removed = 0u64;
        let mut removed_bytes = 0u64;
        for kv in tree.range(rkey(first)..=rkey(last)) {
            let (k, v) = kv.map_err(|e| self.sled_err(&mut st, e, "read"))?;
            let seq = be(&k[1..]);
            let rec = v1::Record::decode(v.as_ref())
                .map_err(|e| SpoolError::Corrupt { seq, reason: e.to_string() })?;
            batch.remove(&k);
            batch.remove(&ikey(class_of(rec.kind, rec.severity), seq));
            removed += 1;
            removed_bytes += entry_size(v.len());
        }
        if removed == 0 {
            return Ok(0);
        }
        let acked = st.stats.acked + removed;
        batch.insert(mkey("acked"), &acked.to_be_bytes());
        if let Err(e) = tree.apply_batch(batch) {
            return Err(self.sled_err(&mut st, e, "ack"));
        }
        st.stats.acked = acked;
        st.stats.records -= removed;
        st.stats.bytes -= removed_bytes;
        Ok(removed)
    }

    /// Drops a record that can never be delivered because it is larger
    /// than any batch the collector accepts. Counted in `oversize`.
    pub fn drop_oversize(&self, seq: u64) -> Result<bool, SpoolError> {
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let Some(v) = tree.get(rkey(seq)).map_err(|e| self.sled_err(&mut st, e, "read"))? else {
            return Ok(false);
        };
        let rec =
            v1::Record::decode(v.as_ref()).map_err(|e| SpoolError::Corrupt { seq, reason: e.to_string() })?;
        let oversize = st.stats.oversize + 1;
        let mut batch = sled::Batch::default();
        batch.remove(&rkey(seq));
        batch.remove(&ikey(class_of(rec.kind, rec.severity), seq));
        batch.insert(mkey("oversize"), &oversize.to_be_bytes());
        if let Err(e) = tree.apply_batch(batch) {
            return Err(self.sled_err(&mut st, e, "drop"));
        }
        st.stats.oversize = oversize;
        st.stats.records -= 1;
        st.stats.bytes -= entry_size(v.len());
        tracing::error!(seq, bytes = v.len(), "record larger than the collector accepts: dropped");
        Ok(true)
    }

    pub fn checkpoint(&self, source: &str) -> Result<Option<Vec<u8>>, SpoolError> {
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        Ok(tree.get(ckey(source)).map_err(|e| self.sled_err(&mut st, e, "read"))?.map(|v| v.to_vec()))
    }

    /// Detector state committed with earlier appends.
    pub fn detector_state(&self) -> Result<Vec<StateEntry>, SpoolError> {
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let mut out = Vec::new();
        for kv in tree.scan_prefix(b"s") {
            let (k, v) = kv.map_err(|e| self.sled_err(&mut st, e, "read"))?;
            out.push((k[1..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    pub fn stats(&self) -> SpoolStats {
        self.lock().stats.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().stats.records == 0
    }

    /// Sequence numbers currently held, by class (for tests and tools).
    pub fn contents(&self) -> Result<BTreeMap<u64, u8>, SpoolError> {
        let mut st = self.lock();
        let tree = self.tree(&mut st)?.clone();
        let mut out = BTreeMap::new();
        for kv in tree.scan_prefix(b"i") {
            let (k, _) = kv.map_err(|e| self.sled_err(&mut st, e, "read"))?;
            out.insert(be(&k[2..]), k[1]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(severity: u32, len: usize) -> NewRecord {
        NewRecord {
            kind: if severity == 0 { v1::RecordKind::Event } else { v1::RecordKind::Alert },
            severity,
            time: OffsetDateTime::UNIX_EPOCH,
            eve_json: vec![b'x'; len],
            facts: None,
        }
    }

    #[test]
    fn records_are_released_only_after_flush_and_removed_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open_payload_cap(dir.path(), 1 << 20).unwrap();
        let out = s.append(vec![rec(2, 10), rec(3, 10)], Some(("pcap:a", b"42"))).unwrap();
        assert_eq!((out.first_seq, out.last_seq), (1, 2));
        assert!(s.read_after(0, 10, 1 << 20).unwrap().is_empty(), "not durable yet");
        s.flush().unwrap();
        let got = s.read_after(0, 10, 1 << 20).unwrap();
        assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(s.read_after(1, 10, 1 << 20).unwrap().len(), 1);
        assert_eq!(s.ack(1, 1).unwrap(), 1);
        assert_eq!(s.ack(1, 1).unwrap(), 0, "acks are idempotent");
        assert_eq!(s.checkpoint("pcap:a").unwrap().as_deref(), Some(&b"42"[..]));
        let st = s.stats();
        assert_eq!((st.records, st.acked, st.produced), (1, 1, 2));
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open_payload_cap(dir.path(), 1 << 20).unwrap();
            s.append(vec![rec(1, 5); 3], None).unwrap();
            s.ack(1, 1).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(dir.path(), 1 << 20);
        let st = s.stats();
        assert_eq!((st.records, st.acked, st.produced, st.next_seq), (2, 1, 3, 4));
        assert_eq!(s.read_after(0, 10, 1 << 20).unwrap()[0].seq, 2);
        assert_eq!(s.append(vec![rec(1, 5)], None).unwrap().first_seq, 4);
    }

    #[test]
    fn eviction_takes_lowest_severity_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        // each record is about 48 bytes; room for five
        let s = Spool::open_payload_cap(dir.path(), 250).unwrap();
        let first = s.append(vec![rec(1, 30), rec(4, 30), rec(2, 30), rec(4, 30), rec(0, 30)], None).unwrap();
        assert_eq!(first.evicted, 0);
        let out = s.append(vec![rec(3, 30), rec(1, 30)], None).unwrap();
        assert!(out.evicted >= 2);
        let left = s.contents().unwrap();
        // the event (seq 5) goes first, then the severity-4 alerts (2, then 4)
        assert!(!left.contains_key(&5) && !left.contains_key(&2));
        assert!(left.contains_key(&1) && left.contains_key(&7), "{left:?}");
        let st = s.stats();
        assert!(st.bytes <= 250);
        assert_eq!(st.dropped_total(), out.evicted);
        assert_eq!(st.produced, st.records + st.acked + st.dropped_total() + st.oversize);
    }

    /// A record handed to the uplink is in flight: the cap evicts others
    /// (fresh records included) rather than count as dropped a record the
    /// collector may already hold.
    #[test]
    fn records_in_flight_are_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open_payload_cap(dir.path(), 250).unwrap();
        s.append(vec![rec(4, 30), rec(4, 30), rec(1, 30), rec(1, 30), rec(1, 30)], None).unwrap();
        s.flush().unwrap();
        let sent: Vec<u64> = s.read_after(0, 2, 1 << 20).unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(sent, vec![1, 2]);
        let out = s.append(vec![rec(4, 30), rec(2, 30)], None).unwrap();
        assert!(out.evicted >= 1);
        let left = s.contents().unwrap();
        assert!(left.contains_key(&1) && left.contains_key(&2), "in flight kept: {left:?}");
        assert!(!left.contains_key(&6), "the fresh severity-4 record went instead: {left:?}");
        assert_eq!(s.ack(1, 2).unwrap(), 2, "both delivered, none counted dropped");
        let st = s.stats();
        assert_eq!(st.dropped_total(), out.evicted);
        assert_eq!(st.produced, st.records + st.acked + st.dropped_total() + st.oversize);
    }

    /// The documented margin: with eviction running, the spool directory
    /// (reserve included) stays under twice `max_bytes`.
    #[test]
    fn disk_use_stays_under_twice_max_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spool");
        let max = 4u64 << 20;
        let s = Spool::open(&dir, max).unwrap();
        let mut peak = 0;
        for i in 0..120usize {
            let recs: Vec<NewRecord> =
                (0..512usize).map(|j| rec((j % 5) as u32, 300 + (i * j) % 200)).collect();
            s.commit(&recs, Some(("x", b"y")), &[]).unwrap();
            peak = peak.max(disk_usage(&dir));
        }
        let st = s.stats();
        assert!(st.dropped_total() > 0, "the cap evicted: {st:?}");
        assert!(peak < 2 * max, "peak {peak} for max_bytes {max}: {st:?}");
        assert_eq!(st.produced, st.records + st.acked + st.dropped_total() + st.oversize);
    }

    /// sled's flusher thread may hold the file lock for a moment after the
    /// last handle is dropped; a restarted process never sees this.
    #[allow(clippy::disallowed_methods)]
    fn reopen(dir: &std::path::Path, cap: u64) -> Spool {
        for _ in 0..100 {
            if let Ok(s) = Spool::open_payload_cap(dir, cap) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Spool::open_payload_cap(dir, cap).unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<(u32, usize)>),
        Flush,
        Ack(u64, u64),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec((0u32..=4, 1usize..80), 0..8).prop_map(Op::Append),
            1 => Just(Op::Flush),
            2 => (1u64..60, 0u64..10).prop_map(|(a, n)| Op::Ack(a, a + n)),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Against a model: contents match, the cap holds, nothing is lost
        /// uncounted, and eviction never removes a more severe (or, at equal
        /// severity, a newer) record while keeping a less severe one.
        #[test]
        fn spool_matches_model(ops in prop::collection::vec(op(), 1..40), cap in 150u64..1500) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Spool::open_payload_cap(dir.path(), cap).unwrap();
            let mut model: BTreeMap<u64, u8> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Append(recs) => {
                        let new: Vec<NewRecord> = recs.iter().map(|(sev, len)| rec(*sev, *len)).collect();
                        let classes: Vec<u8> = new.iter().map(NewRecord::class).collect();
                        let out = s.append(new, None).unwrap();
                        for (i, c) in classes.iter().enumerate() {
                            model.insert(out.first_seq + i as u64, *c);
                        }
                        let after = s.contents().unwrap();
                        let evicted: Vec<(u64, u8)> = model.iter().filter(|(k, _)| !after.contains_key(k)).map(|(k, v)| (*k, *v)).collect();
                        prop_assert_eq!(evicted.len() as u64, out.evicted);
                        for (eseq, eclass) in &evicted {
                            for (kseq, kclass) in &after {
                                prop_assert!(kclass < eclass || (kclass == eclass && kseq > eseq),
                                    "kept seq {} class {} but evicted seq {} class {}", kseq, kclass, eseq, eclass);
                            }
                        }
                        model = after;
                    }
                    Op::Flush => s.flush().unwrap(),
                    Op::Ack(a, b) => {
                        let n = s.ack(a, b).unwrap();
                        let expected = model.range(a..=b).count() as u64;
                        prop_assert_eq!(n, expected);
                        model.retain(|k, _| *k < a || *k > b);
                    }
                    Op::Reopen => {
                        s.flush().unwrap();
                        drop(s);
                        s = reopen(dir.path(), cap);
                    }
                }
                let st = s.stats();
                prop_assert!(st.bytes <= cap);
                prop_assert_eq!(st.records, model.len() as u64);
                prop_assert_eq!(st.produced, st.records + st.acked + st.dropped_total() + st.oversize);
                prop_assert_eq!(s.contents().unwrap(), model.clone());
            }
        }
    }
}
