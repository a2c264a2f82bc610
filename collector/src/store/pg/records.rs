//! Records on PostgreSQL: ingest, the collector's own alerts, listings,
//! retention.

use std::collections::{BTreeSet, HashMap};

use prost::Message as _;
use tokio::sync::watch;
use tokio_postgres::Transaction;

use super::{PgStore, big, exec, lock_counter, notify, one, opt, rec, rows, set_counter};
use crate::store::{
    AgencyStatsRec, AgentRec, AlertPage, AlertQuery, Incoming, IngestOutcome, PageKey, QuarantineRec,
    RecordRec, StoreError, records::RECORD_VERSION,
};

/// Rows read per round trip when a listing filters in Rust.
const CHUNK: i64 = 500;

/// Columns of one row of `records`, gathered for one bulk insert.
#[derive(Default)]
struct NewRecords {
    cursor: Vec<i64>,
    alert: Vec<bool>,
    agency: Vec<String>,
    agent_id: Vec<String>,
    seq: Vec<i64>,
    severity: Vec<i32>,
    time_us: Vec<i64>,
    received_us: Vec<i64>,
    rec: Vec<Vec<u8>>,
}

impl NewRecords {
    fn push(&mut self, cursor: u64, r: &RecordRec, alert: bool, value: Vec<u8>) {
        self.cursor.push(cursor as i64);
        self.alert.push(alert);
        self.agency.push(r.agency.clone());
        self.agent_id.push(r.agent_id.clone());
        self.seq.push(r.seq as i64);
        self.severity.push(i32::try_from(r.severity).unwrap_or(i32::MAX));
        self.time_us.push(r.time_us);
        self.received_us.push(r.received_us);
        self.rec.push(value);
    }

    fn insert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.cursor.is_empty() {
            return Ok(());
        }
        exec(
            tx,
            "INSERT INTO records (cursor, alert, agency, agent_id, seq, severity, time_us, received_us, rec)
             SELECT * FROM unnest($1::bigint[], $2::boolean[], $3::text[], $4::text[], $5::bigint[],
                                  $6::integer[], $7::bigint[], $8::bigint[], $9::bytea[])",
            &[
                &self.cursor,
                &self.alert,
                &self.agency,
                &self.agent_id,
                &self.seq,
                &self.severity,
                &self.time_us,
                &self.received_us,
                &self.rec,
            ],
        )?;
        Ok(())
    }
}

/// Adds to (or subtracts from) an agency's stored volume.
fn bump_stats(
    tx: &Transaction<'_>,
    agency: &str,
    f: impl FnOnce(&mut AgencyStatsRec),
) -> Result<(), StoreError> {
    let mut stats: AgencyStatsRec =
        match opt(tx, "SELECT rec FROM agency_stats WHERE code = $1 FOR UPDATE", &[&agency])? {
            Some(r) => rec("agency_stats", &r, 0)?,
            None => AgencyStatsRec { version: RECORD_VERSION, ..Default::default() },
        };
    f(&mut stats);
    exec(
        tx,
        "INSERT INTO agency_stats (code, rec) VALUES ($1, $2)
         ON CONFLICT (code) DO UPDATE SET rec = excluded.rec",
        &[&agency, &stats.encode_to_vec()],
    )?;
    Ok(())
}

impl PgStore {
    /// Stores a batch from one agent in one transaction: each (agent, seq)
    /// at most once, the whole batch or nothing, cursors in commit order.
    pub fn ingest(
        &self,
        agent_id: &str,
        agency: &str,
        received_us: i64,
        batch: &[Incoming],
    ) -> Result<IngestOutcome, StoreError> {
        let (out, last_alert) = self.tx(|tx| {
            let mut cursor = lock_counter(tx, "record")?;
            let seqs: Vec<i64> = batch.iter().map(|r| r.seq() as i64).collect();
            let mut seen: BTreeSet<i64> = rows(
                tx,
                "SELECT seq FROM dedupe WHERE agent_id = $1 AND seq = ANY($2)",
                &[&agent_id, &seqs],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let mut out = IngestOutcome::default();
            let mut new = NewRecords::default();
            let (mut d_seq, mut d_cursor) = (Vec::new(), Vec::<Option<i64>>::new());
            let (mut q_seq, mut q_rec) = (Vec::new(), Vec::new());
            let (mut alerts, mut alert_bytes, mut events, mut event_bytes) = (0u64, 0u64, 0u64, 0u64);
            let mut last_alert = None;
            let mut highest = 0;
            for r in batch {
                highest = highest.max(r.seq());
                if !seen.insert(r.seq() as i64) {
                    out.duplicates += 1;
                    continue;
                }
                match r {
                    Incoming::Valid { seq, alert, .. } => {
                        cursor += 1;
                        let value = r.record(agent_id, agency, received_us).unwrap_or_default();
                        let bytes = value.encode_to_vec();
                        if *alert {
                            alerts += 1;
                            alert_bytes += bytes.len() as u64;
                            last_alert = Some(cursor);
                        } else {
                            events += 1;
                            event_bytes += bytes.len() as u64;
                        }
                        new.push(cursor, &value, *alert, bytes);
                        d_seq.push(*seq as i64);
                        d_cursor.push(Some(cursor as i64));
                        out.stored += 1;
                    }
                    Incoming::Invalid { seq, reason, raw } => {
                        let value = QuarantineRec {
                            version: RECORD_VERSION,
                            agent_id: agent_id.to_string(),
                            seq: *seq,
                            received_us,
                            reason: reason.clone(),
                            raw: raw.clone(),
                        };
                        q_seq.push(*seq as i64);
                        q_rec.push(value.encode_to_vec());
                        d_seq.push(*seq as i64);
                        d_cursor.push(None);
                        out.invalid += 1;
                    }
                }
            }
            new.insert(tx)?;
            if !d_seq.is_empty() {
                // the primary key refuses a second (agent, seq) whatever happens
                exec(
                    tx,
                    "INSERT INTO dedupe (agent_id, seq, cursor)
                     SELECT $1::text, * FROM unnest($2::bigint[], $3::bigint[])",
                    &[&agent_id, &d_seq, &d_cursor],
                )?;
            }
            if !q_seq.is_empty() {
                exec(
                    tx,
                    "INSERT INTO quarantine (agent_id, seq, rec)
                     SELECT $1::text, * FROM unnest($2::bigint[], $3::bytea[])",
                    &[&agent_id, &q_seq, &q_rec],
                )?;
            }
            if let Some(c) = last_alert {
                notify(tx, 'a', c)?;
            }
            if out.stored > 0 {
                set_counter(tx, "record", cursor)?;
                bump_stats(tx, agency, |s| {
                    s.alerts += alerts;
                    s.alert_bytes += alert_bytes;
                    s.events += events;
                    s.event_bytes += event_bytes;
                })?;
            }
            if let Some(r) = opt(tx, "SELECT rec FROM agents WHERE agent_id = $1 FOR UPDATE", &[&agent_id])? {
                let mut a: AgentRec = rec("agents", &r, 0)?;
                a.records_stored += u64::from(out.stored);
                a.records_duplicate += u64::from(out.duplicates);
                a.records_invalid += u64::from(out.invalid);
                a.highest_seq = a.highest_seq.max(highest);
                exec(tx, "UPDATE agents SET rec = $2 WHERE agent_id = $1", &[&agent_id, &a.encode_to_vec()])?;
            }
            Ok::<_, StoreError>((out, last_alert))
        })?;
        if let Some(c) = last_alert {
            self.raise_alert_cursor(c);
        }
        Ok(out)
    }

    /// Stores an alert raised by the collector itself with the next cursor.
    pub fn insert_collector_alert(&self, r: RecordRec) -> Result<u64, StoreError> {
        let cursor = self.tx(|tx| {
            let cursor = lock_counter(tx, "record")? + 1;
            let value = r.encode_to_vec();
            let size = value.len() as u64;
            let mut new = NewRecords::default();
            new.push(cursor, &r, true, value);
            new.insert(tx)?;
            set_counter(tx, "record", cursor)?;
            notify(tx, 'a', cursor)?;
            bump_stats(tx, &r.agency, |s| {
                s.alerts += 1;
                s.alert_bytes += size;
            })?;
            Ok::<_, StoreError>(cursor)
        })?;
        self.raise_alert_cursor(cursor);
        Ok(cursor)
    }

    pub fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM records WHERE cursor = $1 AND alert", &[&big(cursor)])?
                .map(|r| rec("records", &r, 0))
                .transpose()
        })
    }

    fn after(&self, alert: bool, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = if alert {
            "SELECT cursor, rec FROM records WHERE alert AND cursor > $1 ORDER BY cursor LIMIT $2"
        } else {
            "SELECT cursor, rec FROM records WHERE NOT alert AND cursor > $1 ORDER BY cursor LIMIT $2"
        };
        self.read(|c| {
            rows(c, sql, &[&big(after), &limit])?
                .iter()
                .map(|r| Ok((r.get::<_, i64>(0) as u64, rec("records", r, 1)?)))
                .collect()
        })
    }

    /// Alerts with a cursor greater than `after`, in cursor order.
    pub fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        self.after(true, after, limit)
    }

    /// Events (non-alert records) with a cursor greater than `after`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        self.after(false, after, limit)
    }

    /// Alerts newest event time first, filtered, one page.
    pub fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError> {
        let limit = q.limit.max(1);
        // upper bound (exclusive) on (time_us, cursor): `until`, then the page key
        let mut upper = (q.until_us.unwrap_or(i64::MAX), if q.until_us.is_some() { 0 } else { i64::MAX });
        if let Some(PageKey { time_us, cursor }) = q.after {
            let page = (time_us, big(cursor));
            if page < upper {
                upper = page;
            }
        }
        let since = q.since_us.unwrap_or(i64::MIN);
        let max_sev = q.max_severity.map(|s| i32::try_from(s).unwrap_or(i32::MAX)).unwrap_or(i32::MAX);
        let mut out: Vec<(u64, RecordRec)> = Vec::with_capacity(limit.min(1024));
        self.read(|c| {
            loop {
                let page = rows(
                    c,
                    "SELECT cursor, time_us, rec FROM records
                     WHERE alert AND ($1::text IS NULL OR agency = $1)
                       AND time_us >= $2 AND (time_us, cursor) < ($3, $4) AND severity <= $5
                     ORDER BY time_us DESC, cursor DESC LIMIT $6",
                    &[&q.agency, &since, &upper.0, &upper.1, &max_sev, &CHUNK],
                )?;
                let n = page.len();
                for r in &page {
                    let cursor: i64 = r.get(0);
                    upper = (r.get(1), cursor);
                    let record: RecordRec = rec("records", r, 2)?;
                    if q.keep.as_ref().is_some_and(|k| !(k.0)(&record)) {
                        continue;
                    }
                    if out.len() == limit {
                        let next = out.last().map(|(c, r)| PageKey { time_us: r.time_us, cursor: *c });
                        return Ok((std::mem::take(&mut out), next));
                    }
                    out.push((cursor as u64, record));
                }
                if (n as i64) < CHUNK {
                    return Ok((std::mem::take(&mut out), None));
                }
            }
        })
    }

    /// A named counter of work done outside the store's own transactions
    /// (e.g. `upstream_alerts`, `upstream_dropped`); 0 when never set.
    pub fn counter_value(&self, name: &str) -> Result<u64, StoreError> {
        self.read(|c| super::counter(c, name))
    }

    /// Raises counter `name` to `value` (never lowers it).
    pub fn raise_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.tx::<_, StoreError>(|tx| {
            exec(
                tx,
                "INSERT INTO counters (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, excluded.value)",
                &[&name, &big(value)],
            )
        })?;
        Ok(())
    }

    /// Adds `delta` to counter `name`.
    pub fn add_to_counter(&self, name: &str, delta: u64) -> Result<(), StoreError> {
        self.tx::<_, StoreError>(|tx| {
            exec(
                tx,
                "INSERT INTO counters (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                &[&name, &big(delta)],
            )
        })?;
        Ok(())
    }

    /// The highest seq stored (or quarantined) for `agent_id` within
    /// `lo..=hi`: where a downstream collector's feed resumes.
    pub fn highest_seq_between(&self, agent_id: &str, lo: u64, hi: u64) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            Ok(one(
                c,
                "SELECT max(seq) FROM dedupe WHERE agent_id = $1 AND seq BETWEEN $2 AND $3",
                &[&agent_id, &big(lo), &big(hi)],
            )?
            .get::<_, Option<i64>>(0)
            .map(|v| v as u64))
        })
    }

    pub fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM quarantine ORDER BY agent_id, seq", &[])?
                .iter()
                .map(|r| rec("quarantine", r, 0))
                .collect()
        })
    }

    /// Highest committed alert cursor; changes wake subscribers.
    pub fn alert_cursor(&self) -> watch::Receiver<u64> {
        self.inner.alert_cursor.subscribe()
    }

    /// Deletes alerts and events received before the cutoff of their
    /// agency, oldest cursor first, stopping at the first record received
    /// after `floor_us` or after `max` deletions (as the sled backend).
    pub fn retention_sweep(
        &self,
        cutoff_us: impl Fn(&str) -> i64,
        floor_us: i64,
        max: usize,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        for alert in [true, false] {
            if deleted as usize >= max {
                break;
            }
            // (cursor, agency, agent_id, seq, size)
            let mut due: Vec<(i64, String, String, i64, u64)> = Vec::new();
            let mut after = i64::MIN;
            'scan: loop {
                let page = self.read(|c| {
                    rows(
                        c,
                        "SELECT cursor, agency, agent_id, seq, received_us, octet_length(rec)
                         FROM records WHERE alert = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                        &[&alert, &after, &CHUNK],
                    )
                })?;
                for r in &page {
                    let received: i64 = r.get(4);
                    if received > floor_us || due.len() + deleted as usize >= max {
                        break 'scan;
                    }
                    let agency: String = r.get(1);
                    after = r.get(0);
                    if received < cutoff_us(&agency) {
                        due.push((after, agency, r.get(2), r.get(3), r.get::<_, i32>(5) as u64));
                    }
                }
                if (page.len() as i64) < CHUNK {
                    break;
                }
            }
            if due.is_empty() {
                continue;
            }
            let n = self.tx(|tx| {
                // the record counter first, as ingest, so both keep one lock order
                lock_counter(tx, "record")?;
                let cursors: Vec<i64> = due.iter().map(|d| d.0).collect();
                let gone: BTreeSet<i64> =
                    rows(tx, "DELETE FROM records WHERE cursor = ANY($1) RETURNING cursor", &[&cursors])?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                let mut per_agency: HashMap<&str, (u64, u64)> = HashMap::new();
                for (cursor, agency, agent_id, seq, size) in &due {
                    if !gone.contains(cursor) {
                        continue;
                    }
                    exec(tx, "DELETE FROM dedupe WHERE agent_id = $1 AND seq = $2", &[agent_id, seq])?;
                    let e = per_agency.entry(agency.as_str()).or_default();
                    e.0 += 1;
                    e.1 += size;
                }
                for (agency, (n, bytes)) in per_agency {
                    bump_stats(tx, agency, |s| {
                        if alert {
                            s.alerts = s.alerts.saturating_sub(n);
                            s.alert_bytes = s.alert_bytes.saturating_sub(bytes);
                        } else {
                            s.events = s.events.saturating_sub(n);
                            s.event_bytes = s.event_bytes.saturating_sub(bytes);
                        }
                        s.deleted_by_retention += n;
                    })?;
                }
                Ok::<_, StoreError>(gone.len() as u64)
            })?;
            deleted += n;
        }
        Ok(deleted)
    }

    pub fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError> {
        self.read(|c| match opt(c, "SELECT rec FROM agency_stats WHERE code = $1", &[&code])? {
            Some(r) => rec("agency_stats", &r, 0),
            None => Ok(AgencyStatsRec::default()),
        })
    }

    /// Number of records stored (alerts and events).
    pub fn record_count(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(one(c, "SELECT count(*) FROM records", &[])?.get::<_, i64>(0) as u64))
    }
}
