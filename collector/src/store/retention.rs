//! Retention: deleting records past each agency's period, counted.

use std::collections::HashMap;

use prost::Message as _;

use sled::Transactional as _;

use super::{
    AgencyStatsRec, Inner, RecordRec, SledStore, StoreError, agency_prefix, chunks, decode,
    records::RECORD_VERSION, txn::tx_result, u64_of,
};

impl SledStore {
    // ----- retention -----

    /// Deletes alerts and events received before the cutoff of their
    /// agency. Records are visited in cursor (= receipt) order from the
    /// oldest; the sweep stops at the first record received after
    /// `floor_us` (nothing newer can be due) or after `max` deletions.
    /// Returns the number of records deleted.
    pub fn retention_sweep(
        &self,
        cutoff_us: impl Fn(&str) -> i64,
        floor_us: i64,
        max: usize,
    ) -> Result<u64, StoreError> {
        let i = &self.inner()?;
        let mut deleted = 0u64;
        let mut per_agency: HashMap<String, (u64, u64, u64, u64)> = HashMap::new();
        for (name, tree, is_alert) in
            [("alert_chunks", &i.alert_chunks, true), ("event_chunks", &i.event_chunks, false)]
        {
            for kv in tree.iter() {
                let (k, v) = kv?;
                let mut keep = chunks::ChunkWriter::default();
                // (cursor, event time, agency) of each record deleted
                let mut gone: Vec<(u64, i64, String)> = Vec::new();
                let mut stop = false;
                for e in chunks::entries(name, &k, &v) {
                    let (cursor, bytes) = e?;
                    if stop {
                        keep.push(cursor, bytes);
                        continue;
                    }
                    let rec: RecordRec = decode(name, &cursor.to_be_bytes(), bytes)?;
                    if rec.received_us > floor_us || gone.len() + deleted as usize >= max {
                        stop = true;
                        keep.push(cursor, bytes);
                        continue;
                    }
                    if rec.received_us < cutoff_us(&rec.agency) {
                        let e = per_agency.entry(rec.agency.clone()).or_default();
                        if is_alert {
                            e.0 += 1;
                            e.1 += bytes.len() as u64;
                        } else {
                            e.2 += 1;
                            e.3 += bytes.len() as u64;
                        }
                        gone.push((cursor, rec.time_us, rec.agency));
                    } else {
                        keep.push(cursor, bytes);
                    }
                }
                if !gone.is_empty() {
                    Self::rewrite_chunk(i, tree, is_alert, &k, keep, &gone)?;
                    deleted += gone.len() as u64;
                }
                if stop {
                    break;
                }
            }
        }
        for (agency, (a, ab, e, eb)) in per_agency {
            let tree = &i.agency_stats;
            loop {
                let old = tree.get(agency.as_bytes())?;
                let mut s: AgencyStatsRec = match &old {
                    Some(v) => decode("agency_stats", agency.as_bytes(), v)?,
                    None => AgencyStatsRec { version: RECORD_VERSION, ..Default::default() },
                };
                s.alerts = s.alerts.saturating_sub(a);
                s.alert_bytes = s.alert_bytes.saturating_sub(ab);
                s.events = s.events.saturating_sub(e);
                s.event_bytes = s.event_bytes.saturating_sub(eb);
                s.deleted_by_retention += a + e;
                if tree.compare_and_swap(agency.as_bytes(), old, Some(s.encode_to_vec()))?.is_ok() {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Writes a chunk back without the records retention deleted (or
    /// removes it when none is left), with its time index entries, in one
    /// transaction. The chunk keeps its key.
    fn rewrite_chunk(
        i: &Inner,
        tree: &sled::Tree,
        is_alert: bool,
        key: &[u8],
        keep: chunks::ChunkWriter,
        gone: &[(u64, i64, String)],
    ) -> Result<(), StoreError> {
        let chunk = u64_of(key);
        let left = keep.finish().map(|(_, v)| v);
        // index keys touched, with the cursors to drop from each
        let mut index: HashMap<(bool, Vec<u8>), Vec<u64>> = HashMap::new();
        if is_alert {
            for (cursor, time_us, agency) in gone {
                let b = chunks::bucket_of(*time_us);
                index.entry((false, chunks::index_key(&[], b, chunk))).or_default().push(*cursor);
                index
                    .entry((true, chunks::index_key(&agency_prefix(agency), b, chunk)))
                    .or_default()
                    .push(*cursor);
            }
        }
        let r = (tree, &i.alert_times, &i.agency_times).transaction(|(records, all, by_agency)| {
            match &left {
                Some(v) => records.insert(key, v.as_slice())?,
                None => records.remove(key)?,
            };
            for ((agency, k), cursors) in &index {
                let t = if *agency { by_agency } else { all };
                let Some(v) = t.get(k)? else { continue };
                let mut rest = Vec::with_capacity(v.len());
                for e in v.chunks_exact(16) {
                    if !cursors.contains(&u64_of(&e[8..])) {
                        rest.extend_from_slice(e);
                    }
                }
                if rest.is_empty() {
                    t.remove(k.as_slice())?;
                } else {
                    t.insert(k.as_slice(), rest)?;
                }
            }
            Ok(())
        });
        tx_result::<_, StoreError>(r)
    }
}
