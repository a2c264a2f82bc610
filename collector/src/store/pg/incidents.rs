//! Incidents on PostgreSQL. Every transaction that writes incidents locks
//! the `change` counter row first: change cursors are assigned in commit
//! order, and correlation keys and links are never written concurrently.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message as _;
use tokio::sync::watch;
use tokio_postgres::Transaction;

use super::{PgStore, big, counter, exec, lock_counter, next_counter, notify, opt, rec, rows, set_counter};
use crate::{
    incident::correlate,
    store::{
        CorrelationInput, IncidentChangeRec, IncidentFilter, IncidentPage, IncidentRec, StoreError,
        records::RECORD_VERSION,
    },
};

/// Incidents read per round trip when a listing filters in Rust.
const CHUNK: i64 = 200;

/// Writes incidents and their change entries from cursor `first` on;
/// returns the last change cursor written.
fn write_changes<'a>(
    tx: &Transaction<'_>,
    first: u64,
    changes: impl Iterator<Item = (&'a IncidentRec, bool)>,
) -> Result<u64, StoreError> {
    let (mut ids, mut agencies, mut recs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cursors, mut change_recs) = (Vec::new(), Vec::new());
    let mut change = first;
    for (inc, created) in changes {
        ids.push(big(inc.id));
        agencies.push(inc.agency.clone());
        recs.push(inc.encode_to_vec());
        let c = IncidentChangeRec {
            version: RECORD_VERSION,
            change: if created { "created" } else { "updated" }.into(),
            incident: Some(inc.clone()),
        };
        cursors.push(big(change));
        change_recs.push(c.encode_to_vec());
        change += 1;
    }
    if ids.is_empty() {
        return Ok(first - 1);
    }
    exec(
        tx,
        "INSERT INTO incidents (id, agency, rec) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])
         ON CONFLICT (id) DO UPDATE SET agency = excluded.agency, rec = excluded.rec",
        &[&ids, &agencies, &recs],
    )?;
    exec(
        tx,
        "INSERT INTO incident_changes (cursor, rec) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        &[&cursors, &change_recs],
    )?;
    set_counter(tx, "change", change - 1)?;
    notify(tx, 'c', change - 1)?;
    Ok(change - 1)
}

fn put_keys(tx: &Transaction<'_>, keys: &BTreeMap<Vec<u8>, u64>) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let k: Vec<&[u8]> = keys.keys().map(Vec::as_slice).collect();
    let v: Vec<i64> = keys.values().map(|id| big(*id)).collect();
    exec(
        tx,
        "INSERT INTO incident_keys (key, id) SELECT * FROM unnest($1::bytea[], $2::bigint[])
         ON CONFLICT (key) DO UPDATE SET id = excluded.id",
        &[&k, &v],
    )?;
    Ok(())
}

impl PgStore {
    /// Last alert cursor the correlator has processed.
    pub fn correlated_cursor(&self) -> Result<u64, StoreError> {
        self.read(|c| counter(c, "correlated"))
    }

    /// Adds alerts to incidents in one transaction, together with the
    /// correlator's position (see the sled backend for the rules).
    pub fn correlate(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        self.correlate_feed("correlated", inputs, last_cursor, window_us, now_us)
    }

    /// Last record cursor the mirror of downstream incidents has processed.
    pub fn mirrored_cursor(&self) -> Result<u64, StoreError> {
        self.read(|c| counter(c, "mirrored"))
    }

    /// Stores downstream collectors' incidents (inputs with `mirror`), with
    /// the mirror's position, in one transaction.
    pub fn mirror_incidents(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        self.correlate_feed("mirrored", inputs, last_cursor, 0, now_us)
    }

    fn correlate_feed(
        &self,
        position: &'static str,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let (ids, last_change) = self.tx(|tx| {
            let first = lock_counter(tx, "change")? + 1;
            // under the lock: alerts another collector on this database has
            // correlated since the caller read the position are skipped, so
            // each alert is counted once even if two correlators run
            let done = counter(tx, position)?;
            let inputs: Vec<&CorrelationInput> = inputs.iter().filter(|i| i.cursor > done).collect();
            // every key the batch names, as stored
            let all: Vec<&[u8]> = inputs.iter().flat_map(|i| i.keys.iter().map(|k| k.as_bytes())).collect();
            let mut keys: BTreeMap<Vec<u8>, u64> =
                rows(tx, "SELECT key, id FROM incident_keys WHERE key = ANY($1)", &[&all])?
                    .iter()
                    .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1) as u64))
                    .collect();
            let mut new_keys: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            let mut links: BTreeSet<(i64, i64)> = BTreeSet::new();
            let mut touched: BTreeMap<u64, (IncidentRec, bool)> = BTreeMap::new();
            let mut skipped = 0u64;
            for &inp in &inputs {
                let mut found: Vec<Option<IncidentRec>> = Vec::with_capacity(inp.keys.len());
                for key in &inp.keys {
                    let r = match keys.get(key.as_bytes()) {
                        Some(&id) => match touched.get(&id) {
                            Some((r, _)) => Some(r.clone()),
                            None => opt(tx, "SELECT rec FROM incidents WHERE id = $1", &[&big(id)])?
                                .map(|r| rec::<IncidentRec>("incidents", &r, 0))
                                .transpose()?,
                        },
                        None => None,
                    };
                    found.push(r);
                }
                let refs: Vec<Option<&IncidentRec>> = found.iter().map(Option::as_ref).collect();
                let (mut inc, created) = match correlate::decide(inp, &refs, window_us) {
                    correlate::Decision::Skip => {
                        skipped += 1;
                        continue;
                    }
                    correlate::Decision::Join(id) => {
                        let Some(inc) = found.into_iter().flatten().find(|i| i.id == id) else {
                            continue;
                        };
                        let created = touched.get(&id).is_some_and(|(_, c)| *c);
                        (inc, created)
                    }
                    correlate::Decision::Open => {
                        let id = next_counter(tx, "incident")?;
                        (correlate::open(inp, id, now_us), true)
                    }
                };
                correlate::add(&mut inc, inp, now_us);
                for key in &inp.keys {
                    keys.insert(key.as_bytes().to_vec(), inc.id);
                    new_keys.insert(key.as_bytes().to_vec(), inc.id);
                }
                if inp.mirror.is_none() {
                    links.insert((big(inc.id), big(inp.cursor)));
                }
                touched.insert(inc.id, (inc, created));
            }
            put_keys(tx, &new_keys)?;
            if !links.is_empty() {
                let (i, c): (Vec<i64>, Vec<i64>) = links.into_iter().unzip();
                exec(
                    tx,
                    "INSERT INTO incident_alerts (id, cursor) SELECT * FROM unnest($1::bigint[], $2::bigint[])
                     ON CONFLICT DO NOTHING",
                    &[&i, &c],
                )?;
            }
            if skipped > 0 {
                exec(
                    tx,
                    "UPDATE counters SET value = value + $1 WHERE name = 'correlation_skipped'",
                    &[&(skipped as i64)],
                )?;
            }
            let last = write_changes(tx, first, touched.values().map(|(r, c)| (r, *c)))?;
            set_counter(tx, position, last_cursor.max(done))?;
            Ok::<_, StoreError>((touched.keys().copied().collect::<Vec<_>>(), last))
        })?;
        self.raise_change_cursor(last_change);
        Ok(ids)
    }

    pub fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM incidents WHERE id = $1", &[&big(id)])?
                .map(|r| rec("incidents", &r, 0))
                .transpose()
        })
    }

    /// Incidents newest first, filtered, one page.
    pub fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError> {
        let mut upper = big(f.before_id.unwrap_or(u64::MAX));
        let limit = f.limit.max(1);
        let mut out: Vec<IncidentRec> = Vec::new();
        self.read(|c| {
            loop {
                let page = rows(
                    c,
                    "SELECT id, rec FROM incidents WHERE id < $1 AND ($2::text IS NULL OR agency = $2)
                     ORDER BY id DESC LIMIT $3",
                    &[&upper, &f.agency, &CHUNK],
                )?;
                for r in &page {
                    upper = r.get(0);
                    let inc: IncidentRec = rec("incidents", r, 1)?;
                    let keep = f.state.as_ref().is_none_or(|s| &inc.state == s)
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
                        let next = out.last().map(|i| i.id);
                        return Ok((std::mem::take(&mut out), next));
                    }
                    out.push(inc);
                }
                if (page.len() as i64) < CHUNK {
                    return Ok((std::mem::take(&mut out), None));
                }
            }
        })
    }

    /// Cursors of the alerts of an incident, oldest first.
    pub fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            Ok(rows(
                c,
                "SELECT cursor FROM incident_alerts WHERE id = $1 ORDER BY cursor LIMIT $2",
                &[&big(id), &limit],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect())
        })
    }

    /// Changes an incident with `f` and records the change in the feed.
    pub fn update_incident<E>(
        &self,
        id: u64,
        f: impl Fn(&mut IncidentRec) -> Result<(), E>,
    ) -> Result<Result<Option<IncidentRec>, E>, StoreError> {
        Ok(self.update_incidents(&[id], |incs| f(&mut incs[0]))?.map(|v| v.and_then(|mut v| v.pop())))
    }

    /// Changes several incidents in one transaction: all or none.
    pub fn update_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        self.change_incidents(ids, false, f)
    }

    /// Merges `ids[1..]` into `ids[0]` in one transaction; the alert links
    /// and correlation keys of the others move to the first.
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
        let (out, last) = self.tx(|tx| {
            let first = lock_counter(tx, "change")? + 1;
            let mut recs = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(r) = opt(tx, "SELECT rec FROM incidents WHERE id = $1", &[&big(*id)])? else {
                    return Ok((Ok(None), None));
                };
                recs.push(rec::<IncidentRec>("incidents", &r, 0)?);
            }
            if let Err(e) = f(&mut recs) {
                return Ok((Err(e), None));
            }
            let last = write_changes(tx, first, recs.iter().map(|r| (r, false)))?;
            if merge && let Some((into, others)) = recs.split_first() {
                let keys: BTreeMap<Vec<u8>, u64> = others
                    .iter()
                    .flat_map(|o| o.keys.iter().map(|k| (k.as_bytes().to_vec(), into.id)))
                    .collect();
                put_keys(tx, &keys)?;
                let from: Vec<i64> = others.iter().map(|o| big(o.id)).collect();
                exec(
                    tx,
                    "INSERT INTO incident_alerts (id, cursor)
                     SELECT $1, cursor FROM incident_alerts WHERE id = ANY($2)
                     ON CONFLICT DO NOTHING",
                    &[&big(into.id), &from],
                )?;
            }
            let last = if recs.is_empty() { None } else { Some(last) };
            Ok::<_, StoreError>((Ok(Some(recs)), last))
        })?;
        if let Some(last) = last {
            self.raise_change_cursor(last);
        }
        Ok(out)
    }

    /// Highest committed incident change cursor; changes wake subscribers.
    pub fn incident_change_cursor(&self) -> watch::Receiver<u64> {
        self.inner.change_cursor.subscribe()
    }

    pub fn incident_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            rows(
                c,
                "SELECT cursor, rec FROM incident_changes WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                &[&big(after), &limit],
            )?
            .iter()
            .map(|r| Ok((r.get::<_, i64>(0) as u64, rec("incident_changes", r, 1)?)))
            .collect()
        })
    }
}
