//! Incidents and their change feed, and the collector's own alerts. The
//! decisions come from `crate::incident`; this module persists them.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use sled::Transactional as _;
use tokio::sync::watch;

use crate::incident::correlate;

use super::{
    AgencyStatsRec, IncidentChangeRec, IncidentRec, RecordRec, SledStore, StoreError, agency_prefix, chunks,
    decode,
    records::RECORD_VERSION,
    txn::{abort, next_in_tx, tx_result},
    u64_of,
};

/// One alert as the correlator sees it.
#[derive(Debug, Clone, Default)]
pub struct CorrelationInput {
    pub cursor: u64,
    pub agency: String,
    /// The system the evidence attributes it to (0: unattributed).
    pub system: u64,
    pub category: String,
    pub attackers: Vec<String>,
    pub victims: Vec<String>,
    /// Keys of the incidents it joins, most specific first (its flow, then
    /// its episode).
    pub keys: Vec<String>,
    /// Whether it may open an incident; informational alerts only join one.
    pub opens: bool,
    pub severity: u32,
    pub time_us: i64,
    pub received_us: i64,
    pub detector: String,
    pub signature_id: u64,
    pub signature: String,
    /// A downstream collector's incident to keep as it is (`keys` holds
    /// one key naming it); see [`correlate::add`].
    pub mirror: Option<Box<IncidentRec>>,
}

#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub agency: Option<String>,
    pub state: Option<String>,
    pub system: Option<u64>,
    pub category: Option<String>,
    pub open_only: bool,
    /// Only incidents whose events reach `since_us` / start before `until_us`.
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Only unattributed incidents (system 0).
    pub unattributed: bool,
    /// Only ids below this (paging, newest first).
    pub before_id: Option<u64>,
    pub limit: usize,
}

/// One page of incidents (newest first) and where the next starts.
pub type IncidentPage = (Vec<IncidentRec>, Option<u64>);

impl SledStore {
    // ----- collector-made alerts -----

    /// Stores an alert raised by the collector itself (e.g. `agent-silent`)
    /// with the next cursor; subscribers see it like any other alert.
    pub fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError> {
        let i = &self.inner()?;
        let mut next = i.next_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = *next;
        let value = rec.encode_to_vec();
        let mut chunk = chunks::ChunkWriter::default();
        chunk.push(cursor, &value);
        let Some((key, chunk)) = chunk.finish() else {
            unreachable!("a chunk with one record");
        };
        let mut all = chunks::IndexWriter::default();
        all.push(rec.time_us, cursor);
        let all: Vec<_> = all.finish(&[], cursor).collect();
        let mut mine = chunks::IndexWriter::default();
        mine.push(rec.time_us, cursor);
        let mine: Vec<_> = mine.finish(&agency_prefix(&rec.agency), cursor).collect();
        let r = (&i.alert_chunks, &i.alert_times, &i.agency_times, &i.agency_stats).transaction(
            |(alert_chunks, alert_times, agency_times, agency_stats)| {
                alert_chunks.insert(&key, chunk.as_slice())?;
                for (k, v) in &all {
                    alert_times.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &mine {
                    agency_times.insert(k.as_slice(), v.as_slice())?;
                }
                let mut stats: AgencyStatsRec = match agency_stats.get(rec.agency.as_bytes())? {
                    Some(v) => decode("agency_stats", rec.agency.as_bytes(), &v).map_err(abort)?,
                    None => AgencyStatsRec { version: RECORD_VERSION, ..Default::default() },
                };
                stats.alerts += 1;
                stats.alert_bytes += value.len() as u64;
                agency_stats.insert(rec.agency.as_bytes(), stats.encode_to_vec())?;
                Ok(())
            },
        );
        tx_result::<_, StoreError>(r)?;
        *next = cursor + 1;
        drop(next);
        i.alert_cursor.send_replace(cursor);
        Ok(cursor)
    }

    pub fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError> {
        let k = cursor.to_be_bytes();
        chunks::get("alert_chunks", &self.inner()?.alert_chunks, cursor)?
            .map(|v| decode("alert_chunks", &k, &v))
            .transpose()
    }

    // ----- incidents -----

    /// Last alert cursor the correlator has processed.
    pub fn correlated_cursor(&self) -> Result<u64, StoreError> {
        Ok(self.inner()?.counters.get(b"correlated")?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Adds alerts to incidents in one transaction, together with the
    /// correlator's position: an alert joins the open incident with the
    /// same key when its time is within `window_us` of the incident's
    /// alerts, otherwise it opens a new incident. Returns the ids touched.
    pub fn correlate(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        self.correlate_feed(b"correlated", inputs, last_cursor, window_us, now_us)
    }

    /// Last record cursor the mirror of downstream incidents has processed.
    pub fn mirrored_cursor(&self) -> Result<u64, StoreError> {
        Ok(self.inner()?.counters.get(b"mirrored")?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Stores downstream collectors' incidents (inputs with `mirror`), with
    /// the mirror's position, in one transaction.
    pub fn mirror_incidents(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        self.correlate_feed(b"mirrored", inputs, last_cursor, 0, now_us)
    }

    fn correlate_feed(
        &self,
        position: &'static [u8],
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let i = &self.inner()?;
        let mut next = i.next_change.lock().unwrap_or_else(|p| p.into_inner());
        let mut flows = i.flows.lock().unwrap_or_else(|p| p.into_inner());
        let r = (&i.incidents, &i.incident_keys, &i.incident_alerts, &i.incident_changes, &i.counters)
            .transaction(|(incidents, keys, links, changes, counters)| {
                let mut touched: BTreeMap<u64, (IncidentRec, bool)> = BTreeMap::new();
                let mut skipped = 0u64;
                // inside the transaction: what a correlator still finishing
                // (a reload's previous generation) stored since the caller
                // read the position is skipped, so each input counts once
                let done = counters.get(position)?.map(|v| u64_of(&v)).unwrap_or(0);
                // what each correlation key names, as this transaction sees it
                let mut named_by: HashMap<&str, Option<u64>> = HashMap::new();
                let mut flow_keys: Vec<(u128, u64)> = Vec::new();
                // alert cursors to link, per incident
                let mut linked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
                for inp in inputs.iter().filter(|i| i.cursor > done) {
                    // the incidents the keys name, each once: taken out of
                    // `touched` (and put back) rather than cloned per alert
                    let mut pool: Vec<(IncidentRec, bool, bool)> = Vec::new();
                    let mut slots: Vec<Option<usize>> = Vec::with_capacity(inp.keys.len());
                    let mut named: Vec<Option<u64>> = Vec::with_capacity(inp.keys.len());
                    for key in &inp.keys {
                        let id = match named_by.get(key.as_str()) {
                            Some(id) => *id,
                            None => {
                                let id = if key.starts_with(FLOW_KEY) {
                                    flows.get(key)
                                } else {
                                    keys.get(key.as_bytes())?.map(|id| u64_of(&id))
                                };
                                named_by.insert(key, id);
                                id
                            }
                        };
                        named.push(id);
                        let slot = match id {
                            Some(id) => match pool.iter().position(|(rec, _, _)| rec.id == id) {
                                Some(at) => Some(at),
                                None => {
                                    let rec = match touched.remove(&id) {
                                        Some((rec, created)) => Some((rec, created, true)),
                                        None => incidents
                                            .get(id.to_be_bytes())?
                                            .map(|v| {
                                                decode::<IncidentRec>("incidents", &id.to_be_bytes(), &v)
                                            })
                                            .transpose()
                                            .map_err(abort)?
                                            .map(|rec| (rec, false, false)),
                                    };
                                    rec.map(|r| {
                                        pool.push(r);
                                        pool.len() - 1
                                    })
                                }
                            },
                            None => None,
                        };
                        slots.push(slot);
                    }
                    let refs: Vec<Option<&IncidentRec>> =
                        slots.iter().map(|s| s.map(|at| &pool[at].0)).collect();
                    let decision = correlate::decide(inp, &refs, window_us);
                    let joined = match decision {
                        correlate::Decision::Join(id) => pool.iter().position(|(rec, _, _)| rec.id == id),
                        _ => None,
                    };
                    let mut chosen = None;
                    for (at, (rec, created, was_touched)) in pool.into_iter().enumerate() {
                        if Some(at) == joined {
                            chosen = Some((rec, created));
                        } else if was_touched {
                            touched.insert(rec.id, (rec, created));
                        }
                    }
                    let (mut inc, created) = match (decision, chosen) {
                        (correlate::Decision::Skip, _) => {
                            skipped += 1;
                            continue;
                        }
                        (correlate::Decision::Join(_), Some(c)) => c,
                        (correlate::Decision::Join(_), None) => continue,
                        (correlate::Decision::Open, _) => {
                            let id = next_in_tx(counters, "incident")?;
                            (correlate::open(inp, id, now_us), true)
                        }
                    };
                    correlate::add(&mut inc, inp, now_us);
                    // a key already naming this incident is not written again
                    for (key, id) in inp.keys.iter().zip(&named) {
                        if *id != Some(inc.id) {
                            if key.starts_with(FLOW_KEY) {
                                flow_keys.push((super::flows::hash(key), inc.id));
                            } else {
                                keys.insert(key.as_bytes(), &inc.id.to_be_bytes())?;
                            }
                            named_by.insert(key, Some(inc.id));
                        }
                    }
                    if inp.mirror.is_none() {
                        linked.entry(inc.id).or_default().extend_from_slice(&inp.cursor.to_be_bytes());
                    }
                    touched.insert(inc.id, (inc, created));
                }
                // one link entry per incident: (id, first cursor) -> cursors
                for (id, cursors) in &linked {
                    let mut key = id.to_be_bytes().to_vec();
                    key.extend_from_slice(&cursors[..8]);
                    links.insert(key, cursors.as_slice())?;
                }
                if skipped > 0 {
                    let old =
                        counters.get(b"correlation_skipped".as_slice())?.map(|v| u64_of(&v)).unwrap_or(0);
                    counters.insert(b"correlation_skipped".as_slice(), &(old + skipped).to_be_bytes())?;
                }
                let mut change = *next;
                for (id, (inc, created)) in &touched {
                    incidents.insert(&id.to_be_bytes(), inc.encode_to_vec())?;
                    let rec = IncidentChangeRec {
                        version: RECORD_VERSION,
                        change: if *created { "created" } else { "updated" }.into(),
                        incident: Some(inc.clone()),
                    };
                    changes.insert(&change.to_be_bytes(), rec.encode_to_vec())?;
                    change += 1;
                }
                counters.insert(position, &last_cursor.max(done).to_be_bytes())?;
                Ok((touched.keys().copied().collect::<Vec<_>>(), change, flow_keys))
            });
        let (ids, change, flow_keys) = tx_result::<_, StoreError>(r)?;
        // flow keys are kept apart, after the commit (see `flows`)
        flows.append(&i.flow_keys, &flow_keys)?;
        drop(flows);
        if change != *next {
            *next = change;
            i.change_cursor.send_replace(change - 1);
        }
        Ok(ids)
    }

    pub fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError> {
        let k = id.to_be_bytes();
        self.inner()?.incidents.get(k)?.map(|v| decode("incidents", &k, &v)).transpose()
    }

    /// Incidents newest first, filtered, one page.
    pub fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError> {
        let upper = f.before_id.unwrap_or(u64::MAX).to_be_bytes();
        let limit = f.limit.max(1);
        let mut out = Vec::new();
        for kv in self.inner()?.incidents.range(..upper).rev() {
            let (k, v) = kv?;
            let inc: IncidentRec = decode("incidents", &k, &v)?;
            let keep = f.agency.as_ref().is_none_or(|a| &inc.agency == a)
                && f.state.as_ref().is_none_or(|s| &inc.state == s)
                && f.system.is_none_or(|s| inc.system == s)
                && f.category.as_ref().is_none_or(|c| &inc.category == c)
                && (!f.open_only || inc.state != "closed")
                && (!f.unattributed || inc.system == 0)
                && f.since_us.is_none_or(|t| inc.last_seen_us >= t)
                && f.until_us.is_none_or(|t| inc.first_seen_us < t);
            if !keep {
                continue;
            }
            if out.len() == limit {
                let next = out.last().map(|i: &IncidentRec| i.id);
                return Ok((out, next));
            }
            out.push(inc);
        }
        Ok((out, None))
    }

    /// Cursors of the alerts of an incident, oldest first.
    pub fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        // Entries come by first cursor, and an entry holds no cursor below
        // its key's. Without merges they do not overlap; a merge moves
        // another incident's entries in, which may interleave. So a cursor
        // is emitted once an entry starting above it is reached.
        use std::{cmp::Reverse, collections::BinaryHeap};
        fn emit_below(bound: u64, limit: usize, pending: &mut BinaryHeap<Reverse<u64>>, out: &mut Vec<u64>) {
            while out.len() < limit
                && let Some(&Reverse(c)) = pending.peek()
                && c < bound
            {
                pending.pop();
                out.push(c);
            }
        }
        let mut out = Vec::new();
        let mut pending = BinaryHeap::new();
        for kv in self.inner()?.incident_alerts.scan_prefix(id.to_be_bytes()) {
            let (k, v) = kv?;
            let first = if k.len() == 16 { u64_of(&k[8..]) } else { 0 };
            emit_below(first, limit, &mut pending, &mut out);
            if out.len() == limit {
                return Ok(out);
            }
            pending.extend(link_cursors(&k, &v).map(Reverse));
        }
        emit_below(u64::MAX, limit, &mut pending, &mut out);
        Ok(out)
    }

    /// Changes an incident with `f` and records the change in the feed.
    pub fn update_incident<E>(
        &self,
        id: u64,
        f: impl Fn(&mut IncidentRec) -> Result<(), E>,
    ) -> Result<Result<Option<IncidentRec>, E>, StoreError> {
        Ok(self.update_incidents(&[id], |incs| f(&mut incs[0]))?.map(|v| v.and_then(|mut v| v.pop())))
    }

    /// Changes several incidents in one transaction: all of them or none
    /// (`Ok(Ok(None))` when an id is unknown; `f`'s error aborts). Each
    /// changed incident gets one change entry.
    pub fn update_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        self.change_incidents(ids, false, f)
    }

    /// Merges `ids[1..]` into `ids[0]` in one transaction: `f` changes the
    /// incidents (the caller's merge decisions); the alert links and
    /// correlation keys of the others move to the first, so later alerts
    /// join it.
    pub fn merge_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        self.change_incidents(ids, true, f)
    }

    fn change_incidents<E>(
        &self,
        ids: &[u64],
        merge: bool,
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        let i = &self.inner()?;
        let mut next = i.next_change.lock().unwrap_or_else(|p| p.into_inner());
        let first = *next;
        // the links to copy are read outside the transaction (sled
        // transactions cannot scan); the merged incidents are closed in it,
        // so no correlation adds links to them meanwhile
        let mut moved: Vec<(Vec<u8>, sled::IVec)> = Vec::new();
        if merge && let Some((&into, others)) = ids.split_first() {
            for other in others {
                for kv in i.incident_alerts.scan_prefix(other.to_be_bytes()) {
                    let (k, v) = kv?;
                    let mut link = into.to_be_bytes().to_vec();
                    link.extend_from_slice(&k[8..]);
                    moved.push((link, v));
                }
            }
        }
        let r = (&i.incidents, &i.incident_changes, &i.incident_keys, &i.incident_alerts).transaction(
            |(incidents, changes, keys, links)| {
                let mut recs = Vec::with_capacity(ids.len());
                for id in ids {
                    let k = id.to_be_bytes();
                    let Some(v) = incidents.get(k)? else {
                        return Ok(Ok(None));
                    };
                    recs.push(decode::<IncidentRec>("incidents", &k, &v).map_err(abort)?);
                }
                if let Err(e) = f(&mut recs) {
                    return Ok(Err(e));
                }
                for (change, inc) in (first..).zip(recs.iter()) {
                    incidents.insert(&inc.id.to_be_bytes(), inc.encode_to_vec())?;
                    let rec = IncidentChangeRec {
                        version: RECORD_VERSION,
                        change: "updated".into(),
                        incident: Some(inc.clone()),
                    };
                    changes.insert(&change.to_be_bytes(), rec.encode_to_vec())?;
                }
                if merge && let Some((into, others)) = recs.split_first() {
                    for o in others {
                        for key in &o.keys {
                            keys.insert(key.as_bytes(), &into.id.to_be_bytes())?;
                        }
                    }
                    for (link, cursors) in &moved {
                        links.insert(link.as_slice(), cursors.clone())?;
                    }
                }
                Ok(Ok(Some(recs)))
            },
        );
        let out = tx_result::<_, StoreError>(r)?;
        if merge
            && let Ok(Some(_)) = &out
            && let Some((&into, others)) = ids.split_first()
        {
            // later alerts of the merged incidents' flows join the first
            i.flows.lock().unwrap_or_else(|p| p.into_inner()).renamed(others, into);
        }
        if let Ok(Some(recs)) = &out
            && !recs.is_empty()
        {
            let last = first + recs.len() as u64 - 1;
            *next = last + 1;
            drop(next);
            i.change_cursor.send_replace(last);
        }
        Ok(out)
    }

    /// Highest committed incident change cursor; changes wake subscribers.
    pub fn incident_change_cursor(&self) -> watch::Receiver<u64> {
        self.cell.change_cursor.subscribe()
    }

    pub fn incident_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError> {
        self.inner()?
            .incident_changes
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_of(&k), decode("incident_changes", &k, &v)?))
            })
            .collect()
    }
}

/// Correlation keys of one flow (`f`, agency, agent, flow id; see
/// `incident::input`): written after the correlation's commit.
const FLOW_KEY: &str = "f\0";

/// The alert cursors of an `incident_alerts` entry: key `(incident id,
/// first cursor)`, value the cursors (u64 BE each) linked by one
/// correlation; an empty value (written before schema 2) links the key's
/// cursor alone.
pub(super) fn link_cursors<'a>(key: &'a [u8], value: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
    let single = (value.is_empty() && key.len() == 16).then(|| u64_of(&key[8..]));
    single.into_iter().chain(value.chunks_exact(8).map(u64_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(cursor: u64, attacker: &str, time_us: i64) -> CorrelationInput {
        CorrelationInput {
            cursor,
            agency: "A".into(),
            system: 1,
            category: "intrusion".into(),
            attackers: vec![attacker.into()],
            keys: vec![format!("e\0A\0intrusion\0a:{attacker}")],
            opens: true,
            severity: 3 - (cursor % 2) as u32,
            time_us,
            received_us: time_us,
            ..Default::default()
        }
    }

    #[test]
    fn flows_join_informational_alerts_attach_and_merges_move_links() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        let w = 60_000_000;
        // an informational alert alone opens nothing (counted)
        let mut info = input(1, "203.0.113.7", 1_000_000);
        info.opens = false;
        s.correlate(&[info.clone()], 1, w, 1).unwrap();
        assert!(s.incident(1).unwrap().is_none());
        // a real one opens; the informational one of the same flow joins it
        let mut a = input(2, "203.0.113.7", 2_000_000);
        a.keys.insert(0, "f\0A\0agent\0flow7".into());
        let mut b = input(3, "198.51.100.1", 3_000_000);
        b.keys.insert(0, "f\0A\0agent\0flow7".into());
        b.opens = false;
        s.correlate(&[a, b], 3, w, 2).unwrap();
        let one = s.incident(1).unwrap().unwrap();
        assert_eq!(one.alert_count, 2);
        assert_eq!(one.attackers, vec!["203.0.113.7"], "the informational alert names no one");
        // another episode, then a merge: links and keys move to the first
        s.correlate(&[input(4, "192.0.2.9", 4_000_000)], 4, w, 3).unwrap();
        let merged = s
            .merge_incidents(&[1, 2], |incs| crate::incident::merge(incs, "op", "", 5))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(merged[0].alert_count, 3);
        assert_eq!(merged[0].attackers, vec!["203.0.113.7", "192.0.2.9"]);
        assert_eq!((merged[1].state.as_str(), merged[1].merged_into), ("closed", 1));
        assert!(merged[1].dismissed);
        assert_eq!(s.incident_alert_cursors(1, 10).unwrap(), vec![2, 3, 4]);
        // the merged incident's episode now joins the first
        s.correlate(&[input(5, "192.0.2.9", 4_500_000)], 5, w, 6).unwrap();
        assert_eq!(s.incident(1).unwrap().unwrap().alert_count, 4);
        assert!(s.incident(3).unwrap().is_none());
        // merging across agencies is refused and changes nothing
        s.update_incident(2, |i| {
            i.agency = "B".into();
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        let before = s.incident_change_cursor().borrow().to_owned();
        let refused = s.merge_incidents(&[1, 2], |incs| crate::incident::merge(incs, "op", "", 7)).unwrap();
        assert!(refused.unwrap_err().contains("only incidents of one agency merge"));
        assert_eq!(*s.incident_change_cursor().borrow(), before);
    }
}
