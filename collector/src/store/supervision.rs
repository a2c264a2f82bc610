//! Storage for supervision: registry (systems), operators, the audit
//! chain, incidents and their change feed, policies, collector-made
//! alerts and retention. Trees and keys are listed in the parent module.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use sled::{
    Transactional as _,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};
use tokio::sync::watch;

use crate::incident::correlate;

use super::{
    AgencyRec, AgencyStatsRec, AuditRec, IncidentChangeRec, IncidentRec, OperatorRec, PolicyRec, RecordRec,
    Store, StoreError, SystemRec, agency_prefix, decode, records::RECORD_VERSION, time_key, u64_of,
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

/// The forwarder's durable queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    pub queued: u64,
    pub queued_bytes: u64,
    pub sent: u64,
    /// Evicted (oldest first) at the queue cap.
    pub dropped: u64,
}

/// A page of incidents and the id to continue before.
pub type IncidentPage = (Vec<IncidentRec>, Option<u64>);

fn abort<E>(e: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(e)
}

fn tx_result<T, E: From<StoreError>>(r: Result<T, TransactionError<E>>) -> Result<T, E> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::from(e).into()),
    }
}

/// Next value of a named counter inside a transaction.
fn next_in_tx(
    counters: &TransactionalTree,
    name: &str,
) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let n = counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0) + 1;
    counters.insert(name.as_bytes(), &n.to_be_bytes())?;
    Ok(n)
}

fn list<M: prost::Message + Default>(tree: &'static str, t: &sled::Tree) -> Result<Vec<M>, StoreError> {
    t.iter()
        .map(|kv| {
            let (k, v) = kv?;
            decode(tree, &k, &v)
        })
        .collect()
}

impl Store {
    // ----- agencies (registry fields) -----

    /// Applies `f` to an agency (compare-and-swap loop). `Ok(Err(e))` when
    /// `f` refused; `Ok(Ok(None))` when the agency does not exist.
    pub fn update_agency<E>(
        &self,
        code: &str,
        mut f: impl FnMut(&mut AgencyRec) -> Result<(), E>,
    ) -> Result<Result<Option<AgencyRec>, E>, StoreError> {
        let tree = &self.inner()?.agencies;
        loop {
            let Some(old) = tree.get(code.as_bytes())? else {
                return Ok(Ok(None));
            };
            let mut rec: AgencyRec = decode("agencies", code.as_bytes(), &old)?;
            if let Err(e) = f(&mut rec) {
                return Ok(Err(e));
            }
            if tree.compare_and_swap(code.as_bytes(), Some(&old), Some(rec.encode_to_vec()))?.is_ok() {
                return Ok(Ok(Some(rec)));
            }
        }
    }

    /// Stores all agencies (created or replaced) in one transaction.
    pub fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError> {
        let r = self.inner()?.agencies.transaction(|t| {
            for rec in recs {
                t.insert(rec.code.as_bytes(), rec.encode_to_vec())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)
    }

    pub fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError> {
        Ok(match self.inner()?.agency_stats.get(code.as_bytes())? {
            Some(v) => decode("agency_stats", code.as_bytes(), &v)?,
            None => AgencyStatsRec::default(),
        })
    }

    // ----- systems -----

    /// Stores systems in one transaction; those with id 0 get a new id.
    /// Returns the stored records.
    pub fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError> {
        let i = &self.inner()?;
        let r = (&i.systems, &i.counters).transaction(|(systems, counters)| {
            let mut out = Vec::with_capacity(recs.len());
            for rec in &recs {
                let mut rec = rec.clone();
                if rec.id == 0 {
                    rec.id = next_in_tx(counters, "system")?;
                } else if systems.get(rec.id.to_be_bytes())?.is_none() {
                    return Err(abort(StoreError::NotFound(format!("system {}", rec.id))));
                }
                systems.insert(&rec.id.to_be_bytes(), rec.encode_to_vec())?;
                out.push(rec);
            }
            Ok(out)
        });
        tx_result(r)
    }

    pub fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError> {
        let k = id.to_be_bytes();
        self.inner()?.systems.get(k)?.map(|v| decode("systems", &k, &v)).transpose()
    }

    pub fn systems(&self) -> Result<Vec<SystemRec>, StoreError> {
        list("systems", &self.inner()?.systems)
    }

    // ----- operators -----

    pub fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError> {
        let res = self.inner()?.operators.compare_and_swap(
            rec.name.as_bytes(),
            None as Option<&[u8]>,
            Some(rec.encode_to_vec()),
        )?;
        match res {
            Ok(()) => Ok(rec),
            Err(_) => Err(StoreError::AlreadyExists(format!("operator `{}`", rec.name))),
        }
    }

    pub fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError> {
        self.inner()?
            .operators
            .get(name.as_bytes())?
            .map(|v| decode("operators", name.as_bytes(), &v))
            .transpose()
    }

    pub fn operators(&self) -> Result<Vec<OperatorRec>, StoreError> {
        list("operators", &self.inner()?.operators)
    }

    /// Revokes operator `name` unless it is the last valid admin; returns
    /// the record (unchanged when already revoked), `None` when unknown.
    pub fn revoke_operator(
        &self,
        name: &str,
        now_us: i64,
        by: &str,
        reason: &str,
    ) -> Result<Option<OperatorRec>, StoreError> {
        let held = self.inner()?;
        let _guard = held.operators_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut rec) = self.operator(name)? else { return Ok(None) };
        if rec.revoked_us != 0 {
            return Ok(Some(rec));
        }
        if rec.role == "admin"
            && !self.operators()?.iter().any(|o| o.name != name && o.role == "admin" && o.revoked_us == 0)
        {
            return Err(StoreError::Conflict(format!(
                "operator `{name}` is the last admin; add another admin before revoking it"
            )));
        }
        rec.revoked_us = now_us;
        rec.revoked_by = by.to_string();
        rec.revoke_reason = reason.to_string();
        self.inner()?.operators.insert(name.as_bytes(), rec.encode_to_vec())?;
        Ok(Some(rec))
    }

    // ----- audit -----

    /// Appends an entry: assigns its seq and previous hash, then asks
    /// `seal` for its hash.
    pub fn append_audit(
        &self,
        mut rec: AuditRec,
        seal: impl Fn(&AuditRec) -> String,
    ) -> Result<AuditRec, StoreError> {
        let held = self.inner()?;
        let _guard = held.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, prev) = match self.inner()?.audit.last()? {
            Some((k, v)) => {
                let last: AuditRec = decode("audit", &k, &v)?;
                (last.seq + 1, last.hash)
            }
            None => (1, String::new()),
        };
        rec.version = RECORD_VERSION;
        rec.seq = seq;
        rec.prev_hash = prev;
        rec.hash = seal(&rec);
        self.inner()?.audit.insert(seq.to_be_bytes(), rec.encode_to_vec())?;
        Ok(rec)
    }

    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError> {
        self.inner()?
            .audit
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode("audit", &k, &v)
            })
            .collect()
    }

    /// Overwrites a stored audit entry. Only for tests that prove tampering
    /// is detected.
    #[doc(hidden)]
    pub fn overwrite_audit_for_tests(&self, rec: &AuditRec) -> Result<(), StoreError> {
        self.inner()?.audit.insert(rec.seq.to_be_bytes(), rec.encode_to_vec())?;
        Ok(())
    }

    // ----- collector-made alerts -----

    /// Stores an alert raised by the collector itself (e.g. `agent-silent`)
    /// with the next cursor; subscribers see it like any other alert.
    pub fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError> {
        let i = &self.inner()?;
        let mut next = i.next_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = *next;
        let value = rec.encode_to_vec();
        let prefix = agency_prefix(&rec.agency);
        let r = (&i.alerts, &i.by_time, &i.by_agency, &i.agency_stats).transaction(
            |(alerts, by_time, by_agency, agency_stats)| {
                alerts.insert(&cursor.to_be_bytes(), value.clone())?;
                by_time.insert(time_key(&[], rec.time_us, cursor), &[])?;
                by_agency.insert(time_key(&prefix, rec.time_us, cursor), &[])?;
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
        self.inner()?.alerts.get(k)?.map(|v| decode("alerts", &k, &v)).transpose()
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
        let i = &self.inner()?;
        let mut next = i.next_change.lock().unwrap_or_else(|p| p.into_inner());
        let r = (&i.incidents, &i.incident_keys, &i.incident_alerts, &i.incident_changes, &i.counters)
            .transaction(|(incidents, keys, links, changes, counters)| {
                let mut touched: BTreeMap<u64, (IncidentRec, bool)> = BTreeMap::new();
                let mut skipped = 0u64;
                for inp in inputs {
                    // the incident each key names, as this transaction sees it
                    let mut found: Vec<Option<IncidentRec>> = Vec::with_capacity(inp.keys.len());
                    for key in &inp.keys {
                        let rec = match keys.get(key.as_bytes())? {
                            Some(id) => {
                                let id = u64_of(&id);
                                match touched.get(&id) {
                                    Some((rec, _)) => Some(rec.clone()),
                                    None => incidents
                                        .get(id.to_be_bytes())?
                                        .map(|v| decode::<IncidentRec>("incidents", &id.to_be_bytes(), &v))
                                        .transpose()
                                        .map_err(abort)?,
                                }
                            }
                            None => None,
                        };
                        found.push(rec);
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
                            let id = next_in_tx(counters, "incident")?;
                            (correlate::open(inp, id, now_us), true)
                        }
                    };
                    correlate::add(&mut inc, inp, now_us);
                    for key in &inp.keys {
                        keys.insert(key.as_bytes(), &inc.id.to_be_bytes())?;
                    }
                    let mut link = inc.id.to_be_bytes().to_vec();
                    link.extend_from_slice(&inp.cursor.to_be_bytes());
                    links.insert(link, &[])?;
                    touched.insert(inc.id, (inc, created));
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
                counters.insert(b"correlated".as_slice(), &last_cursor.to_be_bytes())?;
                Ok((touched.keys().copied().collect::<Vec<_>>(), change))
            });
        let (ids, change) = tx_result::<_, StoreError>(r)?;
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
        self.inner()?
            .incident_alerts
            .scan_prefix(id.to_be_bytes())
            .take(limit)
            .map(|kv| Ok(u64_of(&kv?.0[8..])))
            .collect()
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
        let mut moved: Vec<Vec<u8>> = Vec::new();
        if merge && let Some((&into, others)) = ids.split_first() {
            for other in others {
                for kv in i.incident_alerts.scan_prefix(other.to_be_bytes()) {
                    let (k, _) = kv?;
                    let mut link = into.to_be_bytes().to_vec();
                    link.extend_from_slice(&k[8..]);
                    moved.push(link);
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
                    for link in &moved {
                        links.insert(link.as_slice(), &[])?;
                    }
                }
                Ok(Ok(Some(recs)))
            },
        );
        let out = tx_result::<_, StoreError>(r)?;
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

    // ----- policies -----

    /// Stores a new policy version for `scope` (agency code or `*`).
    pub fn add_policy(&self, mut rec: PolicyRec) -> Result<PolicyRec, StoreError> {
        let i = &self.inner()?;
        let r = (&i.policies, &i.counters).transaction(|(policies, counters)| {
            let mut rec = rec.clone();
            rec.policy_version = next_in_tx(counters, "policy")?;
            policies.insert(&rec.policy_version.to_be_bytes(), rec.encode_to_vec())?;
            Ok(rec)
        });
        rec = tx_result(r)?;
        Ok(rec)
    }

    /// All policy versions, newest first.
    pub fn policies(&self) -> Result<Vec<PolicyRec>, StoreError> {
        let mut v: Vec<PolicyRec> = list("policies", &self.inner()?.policies)?;
        v.reverse();
        Ok(v)
    }

    /// The policy agents of `agency` must run: the newest pushed to the
    /// agency or to all agencies.
    pub fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError> {
        for kv in self.inner()?.policies.iter().rev() {
            let (k, v) = kv?;
            let rec: PolicyRec = decode("policies", &k, &v)?;
            if rec.scope == "*" || rec.scope == agency {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    // ----- forwarder queue -----

    fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.inner()?.counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Where the forwarder's enqueuer stands: (alert cursor, incident
    /// change cursor); `None` before the first run.
    pub fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError> {
        if self.inner()?.counters.get(b"fwd_alert")?.is_none() {
            return Ok(None);
        }
        Ok(Some((self.counter("fwd_alert")?, self.counter("fwd_change")?)))
    }

    /// Appends messages and moves the enqueuer's positions, atomically;
    /// then evicts the oldest messages beyond `max_bytes` (counted).
    pub fn forward_enqueue(
        &self,
        messages: &[Vec<u8>],
        alert_pos: u64,
        change_pos: u64,
        max_bytes: u64,
    ) -> Result<(), StoreError> {
        let i = &self.inner()?;
        let r = (&i.forward_queue, &i.counters).transaction(|(queue, counters)| {
            let mut seq = counters.get(b"fwd_seq")?.map(|v| u64_of(&v)).unwrap_or(0);
            let mut bytes = counters.get(b"fwd_bytes")?.map(|v| u64_of(&v)).unwrap_or(0);
            for m in messages {
                seq += 1;
                bytes += m.len() as u64;
                queue.insert(&seq.to_be_bytes(), m.as_slice())?;
            }
            counters.insert(b"fwd_seq".as_slice(), &seq.to_be_bytes())?;
            counters.insert(b"fwd_bytes".as_slice(), &bytes.to_be_bytes())?;
            counters.insert(b"fwd_alert".as_slice(), &alert_pos.to_be_bytes())?;
            counters.insert(b"fwd_change".as_slice(), &change_pos.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)?;
        let mut bytes = self.counter("fwd_bytes")?;
        while bytes > max_bytes {
            let Some((k, v)) = i.forward_queue.first()? else { break };
            self.forward_remove(&[(u64_of(&k), v.len() as u64)], false)?;
            bytes = self.counter("fwd_bytes")?;
        }
        Ok(())
    }

    /// The oldest queued messages.
    pub fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner()?
            .forward_queue
            .iter()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_of(&k), v.to_vec()))
            })
            .collect()
    }

    /// Removes messages (seq, size): delivered, or evicted when `!sent`.
    pub fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError> {
        let i = &self.inner()?;
        let r = (&i.forward_queue, &i.counters).transaction(|(queue, counters)| {
            let mut bytes = counters.get(b"fwd_bytes")?.map(|v| u64_of(&v)).unwrap_or(0);
            let name: &[u8] = if sent { b"fwd_sent" } else { b"fwd_dropped" };
            let mut n = counters.get(name)?.map(|v| u64_of(&v)).unwrap_or(0);
            for (seq, size) in done {
                if queue.remove(&seq.to_be_bytes())?.is_some() {
                    bytes = bytes.saturating_sub(*size);
                    n += 1;
                }
            }
            counters.insert(b"fwd_bytes".as_slice(), &bytes.to_be_bytes())?;
            counters.insert(name, &n.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)
    }

    pub fn forward_stats(&self) -> Result<ForwardStats, StoreError> {
        Ok(ForwardStats {
            queued: self.inner()?.forward_queue.len() as u64,
            queued_bytes: self.counter("fwd_bytes")?,
            sent: self.counter("fwd_sent")?,
            dropped: self.counter("fwd_dropped")?,
        })
    }

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
        let s = Store::open(&dir.path().join("db")).unwrap();
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
