//! Upgrading a store of schema 1 (one key per record, one index entry per
//! alert and listing, one duplicate entry per (agent, seq)) to schema 2
//! (record chunks, time indexes per second and chunk, sequence ranges: see
//! [`chunks`](super::chunks)) when it is opened.
//!
//! The new trees are written first, flushed, then the schema version is
//! set and flushed, and only then are the old trees dropped. An upgrade
//! killed before the version is set leaves the old trees whole: the next
//! open drops what it had written of the new ones and starts again. Killed
//! after it, the store is of schema 2 and the old trees are dropped by
//! the next open.

use std::collections::HashMap;

use super::{RecordRec, SCHEMA_VERSION, StoreError, agency_prefix, chunks, decode, u64_of};

/// Trees of schema 1 that schema 2 replaces.
const OLD: [&str; 5] = ["alerts", "events", "dedupe", "alerts_by_time", "alerts_by_agency"];
/// Trees of schema 2 written from them.
const NEW: [&str; 5] = ["alert_chunks", "event_chunks", "seq_ranges", "alert_times", "alert_agency_times"];

/// Upgrades `db` (of schema 1) in place.
pub(super) fn to_chunks(db: &sled::Db) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    for name in NEW {
        db.drop_tree(name)?;
    }
    let all_times = db.open_tree("alert_times")?;
    let agency_times = db.open_tree("alert_agency_times")?;
    let mut records = 0u64;
    for (old, new, is_alert) in [("alerts", "alert_chunks", true), ("events", "event_chunks", false)] {
        let old_tree = db.open_tree(old)?;
        let new_tree = db.open_tree(new)?;
        let mut chunk = Chunk::default();
        for kv in old_tree.iter() {
            let (k, v) = kv?;
            let cursor = u64_of(&k);
            if is_alert {
                let rec: RecordRec = decode(old, &k, &v)?;
                chunk.index(cursor, &rec);
            }
            chunk.records.push(cursor, &v);
            records += 1;
            if chunk.records.len() >= chunks::CHUNK_BYTES {
                std::mem::take(&mut chunk).write(&new_tree, &all_times, &agency_times)?;
            }
        }
        chunk.write(&new_tree, &all_times, &agency_times)?;
    }
    // (agent, seq) keys in order: consecutive seqs of an agent make a range
    let ranges = db.open_tree("seq_ranges")?;
    let mut open: Option<(Vec<u8>, u64, u64)> = None;
    for kv in db.open_tree("dedupe")?.iter() {
        let (k, _) = kv?;
        if k.len() < 9 || k[k.len() - 9] != 0 {
            return Err(StoreError::Corrupt {
                tree: "dedupe",
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "key is not (agent, 0x00, seq)".into(),
            });
        }
        let (agent, seq) = (&k[..k.len() - 8], u64_of(&k[k.len() - 8..]));
        match &mut open {
            Some((a, _, last)) if a.as_slice() == agent && seq == *last + 1 => *last = seq,
            _ => {
                if let Some((a, first, last)) = open.take() {
                    put_range(&ranges, a, first, last)?;
                }
                open = Some((agent.to_vec(), seq, seq));
            }
        }
    }
    if let Some((a, first, last)) = open {
        put_range(&ranges, a, first, last)?;
    }
    db.flush()?;
    db.insert(b"schema", &SCHEMA_VERSION.to_be_bytes())?;
    db.flush()?;
    for name in OLD {
        db.drop_tree(name)?;
    }
    db.flush()?;
    tracing::warn!(
        records,
        seconds = started.elapsed().as_secs_f64(),
        "store upgraded to schema {SCHEMA_VERSION}: records in chunks"
    );
    Ok(())
}

fn put_range(tree: &sled::Tree, mut agent: Vec<u8>, first: u64, last: u64) -> Result<(), StoreError> {
    agent.extend_from_slice(&first.to_be_bytes());
    tree.insert(agent, &last.to_be_bytes())?;
    Ok(())
}

/// A chunk being rebuilt, with its index entries (per agency: a chunk of
/// an upgraded store may hold several agencies' alerts).
#[derive(Default)]
struct Chunk {
    records: chunks::ChunkWriter,
    all: chunks::IndexWriter,
    by_agency: HashMap<String, chunks::IndexWriter>,
}

impl Chunk {
    fn index(&mut self, cursor: u64, rec: &RecordRec) {
        self.all.push(rec.time_us, cursor);
        self.by_agency.entry(rec.agency.clone()).or_default().push(rec.time_us, cursor);
    }

    fn write(self, records: &sled::Tree, all: &sled::Tree, by_agency: &sled::Tree) -> Result<(), StoreError> {
        let Some(first) = self.records.first() else {
            return Ok(());
        };
        for (k, v) in self.all.finish(&[], first) {
            all.insert(k, v)?;
        }
        for (agency, w) in self.by_agency {
            for (k, v) in w.finish(&agency_prefix(&agency), first) {
                by_agency.insert(k, v)?;
            }
        }
        if let Some((k, v)) = self.records.finish() {
            records.insert(k, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::store::{AlertQuery, Incoming, SledStore, dedupe_key, time_key};

    fn rec(agency: &str, agent: &str, seq: u64, time_us: i64) -> RecordRec {
        RecordRec {
            version: 1,
            agent_id: agent.into(),
            agency: agency.into(),
            seq,
            kind: canhgac_proto::v1::RecordKind::Alert as i32,
            severity: 1,
            time_us,
            received_us: 10,
            eve_json: format!("{{\"seq\":{seq}}}"),
            ..Default::default()
        }
    }

    /// A store as schema 1 wrote it, with an unfinished upgrade's leftovers.
    fn schema_one(path: &std::path::Path) {
        let db = sled::Config::new().path(path).open().unwrap();
        db.insert(b"schema", &1u32.to_be_bytes()).unwrap();
        let alerts = db.open_tree("alerts").unwrap();
        let events = db.open_tree("events").unwrap();
        let dedupe = db.open_tree("dedupe").unwrap();
        let by_time = db.open_tree("alerts_by_time").unwrap();
        let by_agency = db.open_tree("alerts_by_agency").unwrap();
        let put = |cursor: u64, r: &RecordRec, alert: bool| {
            let t = if alert { &alerts } else { &events };
            t.insert(cursor.to_be_bytes(), r.encode_to_vec()).unwrap();
            if alert {
                by_time.insert(time_key(&[], r.time_us, cursor), &[]).unwrap();
                by_agency.insert(time_key(&agency_prefix(&r.agency), r.time_us, cursor), &[]).unwrap();
            }
            dedupe.insert(dedupe_key(&r.agent_id, r.seq), &cursor.to_be_bytes()).unwrap();
        };
        put(1, &rec("A", "x", 1, 3_000_000), true);
        put(2, &rec("B", "y", 1, 1_000_000), true);
        put(3, &rec("A", "x", 2, 2_500_000), false);
        put(4, &rec("A", "x", 3, 2_000_000), true);
        put(6, &rec("A", "x", 5, 9_000_000), true);
        dedupe.insert(dedupe_key("x", 7), &u64::MAX.to_be_bytes()).unwrap();
        // schema 1 linked one alert per entry, with an empty value
        let links = db.open_tree("incident_alerts").unwrap();
        for cursor in [1u64, 4] {
            let mut k = 5u64.to_be_bytes().to_vec();
            k.extend_from_slice(&cursor.to_be_bytes());
            links.insert(k, &[]).unwrap();
        }
        // what an upgrade killed half-way left
        db.open_tree("alert_chunks").unwrap().insert(99u64.to_be_bytes(), b"junk".to_vec()).unwrap();
        db.flush().unwrap();
    }

    #[allow(clippy::disallowed_methods)] // a test thread, not the runtime
    fn open(path: &std::path::Path) -> SledStore {
        // sled releases its lock a moment after the last handle is dropped
        for _ in 0..100 {
            if let Ok(s) = SledStore::open(path) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        SledStore::open(path).unwrap()
    }

    #[test]
    fn a_schema_one_store_is_upgraded_on_open_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        schema_one(&path);
        let s = open(&path);
        let alerts: Vec<(u64, String, u64)> =
            s.alerts_after(0, 10).unwrap().into_iter().map(|(c, r)| (c, r.agent_id, r.seq)).collect();
        assert_eq!(
            alerts,
            vec![(1, "x".into(), 1), (2, "y".into(), 1), (4, "x".into(), 3), (6, "x".into(), 5)]
        );
        assert_eq!(s.events_after(0, 10).unwrap().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.alert(4).unwrap().unwrap().seq, 3);
        assert!(s.alert(99).unwrap().is_none(), "the half-done upgrade's junk is gone");
        assert_eq!(s.incident_alert_cursors(5, 10).unwrap(), vec![1, 4], "links of schema 1 still read");
        let (page, _) = s.list_alerts(&AlertQuery { limit: 10, ..Default::default() }).unwrap();
        assert_eq!(
            page.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            vec![6, 1, 4, 2],
            "newest event time first"
        );
        let (page, _) =
            s.list_alerts(&AlertQuery { agency: Some("A".into()), limit: 10, ..Default::default() }).unwrap();
        assert_eq!(page.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![6, 1, 4]);
        assert_eq!(s.highest_seq_between("x", 1, 6).unwrap(), Some(5));
        assert_eq!(s.highest_seq_between("x", 4, 4).unwrap(), None);
        assert_eq!(s.highest_seq_between("x", 1, 100).unwrap(), Some(7), "quarantined seqs count");
        // duplicates are still known; new records continue the cursors
        let again = |seq: u64| Incoming::Valid {
            seq,
            alert: true,
            severity: 1,
            time_us: 5,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        let out = s.ingest("x", "A", 20, &[again(2), again(5), again(7), again(4)]).unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 3));
        assert_eq!(
            s.alerts_after(6, 10).unwrap().iter().map(|(c, r)| (*c, r.seq)).collect::<Vec<_>>(),
            vec![(7, 4)]
        );
        drop(s);
        // opened again: schema 2, nothing upgraded twice
        let s = open(&path);
        assert_eq!(s.alerts_after(0, 10).unwrap().len(), 5);
        let names: Vec<String> = s
            .inner()
            .unwrap()
            .db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        for old in OLD {
            assert!(!names.contains(&old.to_string()), "{old} dropped: {names:?}");
        }
    }
}
