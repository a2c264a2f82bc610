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

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

use canhgac_proto::{timefmt, v1};
use prost::Message as _;
use time::OffsetDateTime;
use tokio::sync::watch;

pub const CLASSES: usize = 5;
const EVENT_CLASS: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt spool record at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
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
    pub bytes: u64,
    pub max_bytes: u64,
    pub produced: u64,
    pub acked: u64,
    /// Dropped because larger than any batch the collector accepts.
    pub oversize: u64,
    /// Evicted at the cap, by class 1..=5 (index 0 = class 1).
    pub dropped: [u64; CLASSES],
    pub next_seq: u64,
}

impl SpoolStats {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

struct State {
    stats: SpoolStats,
}

#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    tree: sled::Tree,
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

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        let db = sled::Config::new().path(dir).flush_every_ms(Some(200)).open()?;
        let tree = db.open_tree("spool")?;
        let get = |name: &str| -> Result<u64, SpoolError> {
            Ok(tree.get(mkey(name))?.map(|v| be(&v)).unwrap_or(0))
        };
        let mut stats = SpoolStats {
            max_bytes,
            produced: get("produced")?,
            acked: get("acked")?,
            oversize: get("oversize")?,
            next_seq: get("next_seq")?.max(1),
            ..Default::default()
        };
        for class in 1..=CLASSES as u8 {
            stats.dropped[class as usize - 1] = tree.get(dropped_key(class))?.map(|v| be(&v)).unwrap_or(0);
        }
        for kv in tree.scan_prefix(b"r") {
            let (_, v) = kv?;
            stats.records += 1;
            stats.bytes += entry_size(v.len());
        }
        let durable = stats.next_seq - 1;
        Ok(Spool {
            inner: Arc::new(Inner {
                db,
                tree,
                state: Mutex::new(State { stats }),
                durable: watch::Sender::new(durable),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let tree = &self.inner.tree;
        let first_seq = st.stats.next_seq;
        let mut batch = sled::Batch::default();
        // (class, seq, size, encoded) of the new records
        let mut fresh: Vec<(u8, u64, u64, Vec<u8>)> = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            let class = r.class();
            let encoded = v1::Record {
                seq,
                kind: r.kind as i32,
                time: Some(timefmt::to_timestamp(r.time)),
                severity: r.severity,
                eve_json: r.eve_json,
            }
            .encode_to_vec();
            fresh.push((class, seq, entry_size(encoded.len()), encoded));
        }
        let new_bytes: u64 = fresh.iter().map(|f| f.2).sum();
        let mut excess = (st.stats.bytes + new_bytes).saturating_sub(st.stats.max_bytes);
        let mut alive = vec![true; fresh.len()];
        let mut evicted_old: Vec<(u8, u64, u64)> = Vec::new();
        let mut dropped_now = [0u64; CLASSES];
        if excess > 0 {
            'classes: for class in (1..=CLASSES as u8).rev() {
                for kv in tree.scan_prefix([b'i', class]) {
                    if excess == 0 {
                        break 'classes;
                    }
                    let (k, _) = kv?;
                    let seq = be(&k[2..]);
                    let size = tree.get(rkey(seq))?.map(|v| entry_size(v.len())).unwrap_or(0);
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
            if n > 0 {
                let total = st.stats.dropped[class as usize - 1] + n;
                batch.insert(dropped_key(class), &total.to_be_bytes());
            }
        }
        if let Some((source, position)) = checkpoint {
            batch.insert(ckey(source), position);
        }
        for (key, value) in state {
            let mut k = vec![b's'];
            k.extend_from_slice(&key);
            match value {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        tree.apply_batch(batch)?;
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
                max_bytes = st.stats.max_bytes,
                "spool full: evicted records, lowest severity first"
            );
        }
        Ok(AppendOutcome { first_seq, last_seq: next_seq - 1, evicted })
    }

    /// Makes all appends so far durable and releases them to the uplink.
    pub fn flush(&self) -> Result<(), SpoolError> {
        let upto = self.lock().stats.next_seq - 1;
        self.inner.db.flush()?;
        self.inner.durable.send_if_modified(|d| {
            if *d < upto {
                *d = upto;
                true
            } else {
                false
            }
        });
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
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for kv in self.inner.tree.range(rkey(after + 1)..=rkey(durable)) {
            let (k, v) = kv?;
            if !out.is_empty() && (out.len() >= max_records || bytes + v.len() > max_bytes) {
                break;
            }
            let seq = be(&k[1..]);
            let rec = v1::Record::decode(v.as_ref())
                .map_err(|e| SpoolError::Corrupt { seq, reason: e.to_string() })?;
            bytes += v.len();
            out.push(rec);
        }
        Ok(out)
    }

    /// Removes acknowledged records `first..=last` (those still present).
    pub fn ack(&self, first: u64, last: u64) -> Result<u64, SpoolError> {
        if first == 0 || last < first {
            return Ok(0);
        }
        let mut st = self.lock();
        let tree = &self.inner.tree;
        let mut batch = sled::Batch::default();
        let mut removed = 0u64;
        let mut removed_bytes = 0u64;
        for kv in tree.range(rkey(first)..=rkey(last)) {
            let (k, v) = kv?;
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
        tree.apply_batch(batch)?;
        st.stats.acked = acked;
        st.stats.records -= removed;
        st.stats.bytes -= removed_bytes;
        Ok(removed)
    }

    /// Drops a record that can never be delivered because it is larger
    /// than any batch the collector accepts. Counted in `oversize`.
    pub fn drop_oversize(&self, seq: u64) -> Result<bool, SpoolError> {
        let mut st = self.lock();
        let tree = &self.inner.tree;
        let Some(v) = tree.get(rkey(seq))? else {
            return Ok(false);
        };
        let rec =
            v1::Record::decode(v.as_ref()).map_err(|e| SpoolError::Corrupt { seq, reason: e.to_string() })?;
        let oversize = st.stats.oversize + 1;
        let mut batch = sled::Batch::default();
        batch.remove(&rkey(seq));
        batch.remove(&ikey(class_of(rec.kind, rec.severity), seq));
        batch.insert(mkey("oversize"), &oversize.to_be_bytes());
        tree.apply_batch(batch)?;
        st.stats.oversize = oversize;
        st.stats.records -= 1;
        st.stats.bytes -= entry_size(v.len());
        tracing::error!(seq, bytes = v.len(), "record larger than the collector accepts: dropped");
        Ok(true)
    }

    pub fn checkpoint(&self, source: &str) -> Result<Option<Vec<u8>>, SpoolError> {
        Ok(self.inner.tree.get(ckey(source))?.map(|v| v.to_vec()))
    }

    /// Detector state committed with earlier appends.
    pub fn detector_state(&self) -> Result<Vec<StateEntry>, SpoolError> {
        self.inner
            .tree
            .scan_prefix(b"s")
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k[1..].to_vec(), v.to_vec()))
            })
            .collect()
    }

    pub fn stats(&self) -> SpoolStats {
        self.lock().stats.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().stats.records == 0
    }

    /// Sequence numbers currently held, by class (for tests and tools).
    pub fn contents(&self) -> Result<BTreeMap<u64, u8>, SpoolError> {
        let mut out = BTreeMap::new();
        for kv in self.inner.tree.scan_prefix(b"i") {
            let (k, _) = kv?;
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
        }
    }

    #[test]
    fn records_are_released_only_after_flush_and_removed_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
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
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
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
        let s = Spool::open(dir.path(), 250).unwrap();
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

    /// sled's flusher thread may hold the file lock for a moment after the
    /// last handle is dropped; a restarted process never sees this.
    #[allow(clippy::disallowed_methods)]
    fn reopen(dir: &std::path::Path, cap: u64) -> Spool {
        for _ in 0..100 {
            if let Ok(s) = Spool::open(dir, cap) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Spool::open(dir, cap).unwrap()
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
            let mut s = Spool::open(dir.path(), cap).unwrap();
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
