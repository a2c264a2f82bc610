//! Retention: deleting records past each agency's period, counted.

use std::collections::HashMap;

use prost::Message as _;

use super::{
    AgencyStatsRec, RecordRec, SledStore, StoreError, agency_prefix, decode, records::RECORD_VERSION,
    time_key, u64_of,
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
        for (tree, is_alert) in [(&i.alerts, true), (&i.events, false)] {
            let mut batch = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv?;
                let rec: RecordRec = decode(if is_alert { "alerts" } else { "events" }, &k, &v)?;
                if rec.received_us > floor_us || batch.len() + deleted as usize >= max {
                    break;
                }
                if rec.received_us < cutoff_us(&rec.agency) {
                    batch.push((u64_of(&k), rec, v.len() as u64));
                }
            }
            for (cursor, rec, size) in batch {
                tree.remove(cursor.to_be_bytes())?;
                if is_alert {
                    i.by_time.remove(time_key(&[], rec.time_us, cursor))?;
                    i.by_agency.remove(time_key(&agency_prefix(&rec.agency), rec.time_us, cursor))?;
                }
                i.dedupe.remove(super::dedupe_key(&rec.agent_id, rec.seq))?;
                let e = per_agency.entry(rec.agency.clone()).or_default();
                if is_alert {
                    e.0 += 1;
                    e.1 += size;
                } else {
                    e.2 += 1;
                    e.3 += size;
                }
                deleted += 1;
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
}
