//! What any storage backend of the collector must provide, one trait per
//! aggregate, and the guarantees each keeps (checked for every backend by
//! the conformance suite in `conformance.rs`): sled ([`SledStore`]) and
//! PostgreSQL ([`PgStore`]); [`Store`] is either, chosen by configuration.
//!
//! Guarantees, whatever the backend:
//!
//! * **Records**: a batch is stored whole or not at all; each
//!   (agent, seq) at most once (a batch sent again stores nothing new);
//!   cursors grow in commit order, so a reader that saw cursor `c` has
//!   seen every smaller one and resumes without gaps; the alert cursor
//!   watch moves only after a commit; an unparsable record is quarantined,
//!   never lost.
//! * **Incidents**: the correlator's position commits with the incident
//!   changes it caused (each alert counted once); every change gets the
//!   next change cursor, in order; multi-incident changes and merges are
//!   all or nothing.
//! * **Audit**: appends are serialised into one hash chain from seq 1;
//!   nothing rewrites an entry.
//! * **Forward queue**: FIFO by sequence; the cap evicts the oldest,
//!   counted; positions commit with the messages they produced.
//! * **Leases**: at most one unexpired holder per name; the holder
//!   renews, an expired lease passes to whoever asks (sled: one process,
//!   always granted).
//! * **Durability**: after [`Lifecycle::flush_blocking`] returns, a
//!   reopened store holds everything written before it.

use tokio::sync::watch;

use super::{
    AgencyRec, AgencyStatsRec, AgentRec, AlertPage, AlertQuery, AuditCheckpointRec, AuditRec,
    CorrelationInput, EnrollError, ForwardStats, IncidentChangeRec, IncidentFilter, IncidentPage,
    IncidentRec, Incoming, IngestOutcome, OperatorRec, PgStore, PolicyRec, QuarantineRec, RecordRec,
    SledStore, Store, StoreError, SystemRec, TokenRec,
};

/// Records from agents (and the collector's own alerts).
pub trait Records {
    fn ingest(
        &self,
        agent_id: &str,
        agency: &str,
        received_us: i64,
        batch: &[Incoming],
    ) -> Result<IngestOutcome, StoreError>;
    fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError>;
    fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError>;
    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError>;
    fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError>;
    /// Highest committed alert cursor; changes wake subscribers.
    fn alert_cursor(&self) -> watch::Receiver<u64>;
    /// Stored volume of an agency (zero when nothing was stored).
    fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError>;
    /// Deletes records received before their agency's cutoff, oldest
    /// first, up to `max`, stopping at the first received after
    /// `floor_us`; counted in the agency's statistics.
    fn retention_sweep(
        &self,
        cutoff_us: impl Fn(&str) -> i64,
        floor_us: i64,
        max: usize,
    ) -> Result<u64, StoreError>;
}

/// Agencies, systems, enrollment, agents and operators.
pub trait Registry {
    fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError>;
    fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError>;
    fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError>;
    /// Changes an agency atomically; `Ok(Ok(None))` when unknown.
    fn update_agency<E>(
        &self,
        code: &str,
        f: impl FnMut(&mut AgencyRec) -> Result<(), E>,
    ) -> Result<Result<Option<AgencyRec>, E>, StoreError>;
    /// Creates or replaces agencies, all in one transaction.
    fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError>;
    fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError>;
    fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError>;
    fn systems(&self) -> Result<Vec<SystemRec>, StoreError>;
    fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError>;
    /// Checks a token without using it.
    fn check_token(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
    ) -> Result<TokenRec, EnrollError>;
    fn enroll(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
        agent: AgentRec,
    ) -> Result<(), EnrollError>;
    fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError>;
    fn agents(&self) -> Result<Vec<AgentRec>, StoreError>;
    /// Changes an agent atomically; `None` when unknown.
    fn update_agent(
        &self,
        agent_id: &str,
        f: impl FnMut(&mut AgentRec),
    ) -> Result<Option<AgentRec>, StoreError>;
    fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError>;
    fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError>;
    fn operators(&self) -> Result<Vec<OperatorRec>, StoreError>;
    fn update_operator(
        &self,
        name: &str,
        f: impl FnOnce(&mut OperatorRec),
    ) -> Result<Option<OperatorRec>, StoreError>;
    fn revoke_operator(
        &self,
        name: &str,
        now_us: i64,
        by: &str,
        reason: &str,
    ) -> Result<Option<OperatorRec>, StoreError>;
}

/// Incidents and their change feed.
pub trait Incidents {
    fn correlated_cursor(&self) -> Result<u64, StoreError>;
    fn correlate(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError>;
    fn mirrored_cursor(&self) -> Result<u64, StoreError>;
    fn mirror_incidents(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError>;
    fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError>;
    fn update_incident<E>(
        &self,
        id: u64,
        f: impl Fn(&mut IncidentRec) -> Result<(), E>,
    ) -> Result<Result<Option<IncidentRec>, E>, StoreError>;
    fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError>;
    fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError>;
    fn update_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError>;
    fn merge_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError>;
    fn incident_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError>;
    fn incident_change_cursor(&self) -> watch::Receiver<u64>;
}

/// The hash-chained audit log.
pub trait Audit {
    fn append_audit(&self, rec: AuditRec, seal: impl Fn(&AuditRec) -> String)
    -> Result<AuditRec, StoreError>;
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError>;
    /// The last entry of the chain.
    fn audit_head(&self) -> Result<Option<AuditRec>, StoreError>;
    /// Keeps a signed head of the chain; one per entry, a later one for the
    /// same entry replaces it.
    fn put_audit_checkpoint(&self, rec: AuditCheckpointRec) -> Result<(), StoreError>;
    /// Signed heads of entries `from..=to`, oldest first.
    fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError>;
}

/// Central policy versions.
pub trait Policies {
    fn add_policy(&self, rec: PolicyRec) -> Result<PolicyRec, StoreError>;
    fn policies(&self) -> Result<Vec<PolicyRec>, StoreError>;
    fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError>;
}

/// The forwarder's durable queue.
pub trait ForwardQueue {
    fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError>;
    fn forward_enqueue(
        &self,
        messages: &[Vec<u8>],
        alert_pos: u64,
        change_pos: u64,
        max_bytes: u64,
    ) -> Result<(), StoreError>;
    fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError>;
    fn forward_stats(&self) -> Result<ForwardStats, StoreError>;
}

/// Leases of singleton work: at most one holder of a name at a time.
pub trait Leases {
    /// Takes or renews lease `name` for `holder` until `ttl` from now;
    /// `false` while another holder has it unexpired. A backend one
    /// process owns (sled) always grants.
    fn acquire_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;
    /// Gives up every lease of `holder`.
    fn release_leases(&self, holder: &str) -> Result<(), StoreError>;
}

/// Durability and recovery.
pub trait Lifecycle {
    fn flush_blocking(&self) -> Result<(), StoreError>;
    /// After a storage failure, make writes work again once possible.
    fn recover(&self) -> Result<bool, StoreError>;
    /// Whether the store takes writes now (readiness).
    fn probe_write(&self) -> Result<(), StoreError>;
    /// Bytes the database takes.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Times the store reconnected or reopened after a failure.
    fn reopened(&self) -> u64;
}

/// Everything a collector needs from its storage.
pub trait Backend:
    Records
    + Registry
    + Incidents
    + Audit
    + Policies
    + ForwardQueue
    + Leases
    + Lifecycle
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Backend for T where
    T: Records
        + Registry
        + Incidents
        + Audit
        + Policies
        + ForwardQueue
        + Leases
        + Lifecycle
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Implements every trait for a store type by calling its inherent methods
/// of the same names (each backend has them; [`Store`] dispatches).
macro_rules! backend {
    ($t:ty) => {
        impl Records for $t {
            fn ingest(
                &self,
                agent_id: &str,
                agency: &str,
                received_us: i64,
                batch: &[Incoming],
            ) -> Result<IngestOutcome, StoreError> {
                <$t>::ingest(self, agent_id, agency, received_us, batch)
            }
            fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError> {
                <$t>::insert_collector_alert(self, rec)
            }
            fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError> {
                <$t>::alert(self, cursor)
            }
            fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
                <$t>::alerts_after(self, after, limit)
            }
            fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
                <$t>::events_after(self, after, limit)
            }
            fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError> {
                <$t>::list_alerts(self, q)
            }
            fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError> {
                <$t>::quarantined(self)
            }
            fn alert_cursor(&self) -> watch::Receiver<u64> {
                <$t>::alert_cursor(self)
            }
            fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError> {
                <$t>::agency_stats(self, code)
            }
            fn retention_sweep(
                &self,
                cutoff_us: impl Fn(&str) -> i64,
                floor_us: i64,
                max: usize,
            ) -> Result<u64, StoreError> {
                <$t>::retention_sweep(self, cutoff_us, floor_us, max)
            }
        }

        impl Registry for $t {
            fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError> {
                <$t>::add_agency(self, rec)
            }
            fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError> {
                <$t>::agency(self, code)
            }
            fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError> {
                <$t>::agencies(self)
            }
            fn update_agency<E>(
                &self,
                code: &str,
                f: impl FnMut(&mut AgencyRec) -> Result<(), E>,
            ) -> Result<Result<Option<AgencyRec>, E>, StoreError> {
                <$t>::update_agency(self, code, f)
            }
            fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError> {
                <$t>::put_agencies(self, recs)
            }
            fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError> {
                <$t>::put_systems(self, recs)
            }
            fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError> {
                <$t>::system(self, id)
            }
            fn systems(&self) -> Result<Vec<SystemRec>, StoreError> {
                <$t>::systems(self)
            }
            fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError> {
                <$t>::add_token(self, token, rec)
            }
            fn check_token(
                &self,
                token: &str,
                expected_agency: Option<&str>,
                now_us: i64,
            ) -> Result<TokenRec, EnrollError> {
                <$t>::check_token(self, token, expected_agency, now_us)
            }
            fn enroll(
                &self,
                token: &str,
                expected_agency: Option<&str>,
                now_us: i64,
                agent: AgentRec,
            ) -> Result<(), EnrollError> {
                <$t>::enroll(self, token, expected_agency, now_us, agent)
            }
            fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError> {
                <$t>::agent(self, agent_id)
            }
            fn agents(&self) -> Result<Vec<AgentRec>, StoreError> {
                <$t>::agents(self)
            }
            fn update_agent(
                &self,
                agent_id: &str,
                f: impl FnMut(&mut AgentRec),
            ) -> Result<Option<AgentRec>, StoreError> {
                <$t>::update_agent(self, agent_id, f)
            }
            fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError> {
                <$t>::operator(self, name)
            }
            fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError> {
                <$t>::add_operator(self, rec)
            }
            fn operators(&self) -> Result<Vec<OperatorRec>, StoreError> {
                <$t>::operators(self)
            }
            fn update_operator(
                &self,
                name: &str,
                f: impl FnOnce(&mut OperatorRec),
            ) -> Result<Option<OperatorRec>, StoreError> {
                <$t>::update_operator(self, name, f)
            }
            fn revoke_operator(
                &self,
                name: &str,
                now_us: i64,
                by: &str,
                reason: &str,
            ) -> Result<Option<OperatorRec>, StoreError> {
                <$t>::revoke_operator(self, name, now_us, by, reason)
            }
        }

        impl Incidents for $t {
            fn correlated_cursor(&self) -> Result<u64, StoreError> {
                <$t>::correlated_cursor(self)
            }
            fn correlate(
                &self,
                inputs: &[CorrelationInput],
                last_cursor: u64,
                window_us: i64,
                now_us: i64,
            ) -> Result<Vec<u64>, StoreError> {
                <$t>::correlate(self, inputs, last_cursor, window_us, now_us)
            }
            fn mirrored_cursor(&self) -> Result<u64, StoreError> {
                <$t>::mirrored_cursor(self)
            }
            fn mirror_incidents(
                &self,
                inputs: &[CorrelationInput],
                last_cursor: u64,
                now_us: i64,
            ) -> Result<Vec<u64>, StoreError> {
                <$t>::mirror_incidents(self, inputs, last_cursor, now_us)
            }
            fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError> {
                <$t>::incident(self, id)
            }
            fn update_incident<E>(
                &self,
                id: u64,
                f: impl Fn(&mut IncidentRec) -> Result<(), E>,
            ) -> Result<Result<Option<IncidentRec>, E>, StoreError> {
                <$t>::update_incident(self, id, f)
            }
            fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError> {
                <$t>::incidents(self, f)
            }
            fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
                <$t>::incident_alert_cursors(self, id, limit)
            }
            fn update_incidents<E>(
                &self,
                ids: &[u64],
                f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
            ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
                <$t>::update_incidents(self, ids, f)
            }
            fn merge_incidents<E>(
                &self,
                ids: &[u64],
                f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
            ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
                <$t>::merge_incidents(self, ids, f)
            }
            fn incident_changes_after(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError> {
                <$t>::incident_changes_after(self, after, limit)
            }
            fn incident_change_cursor(&self) -> watch::Receiver<u64> {
                <$t>::incident_change_cursor(self)
            }
        }

        impl Audit for $t {
            fn append_audit(
                &self,
                rec: AuditRec,
                seal: impl Fn(&AuditRec) -> String,
            ) -> Result<AuditRec, StoreError> {
                <$t>::append_audit(self, rec, seal)
            }
            fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError> {
                <$t>::audit_after(self, after, limit)
            }
            fn audit_head(&self) -> Result<Option<AuditRec>, StoreError> {
                <$t>::audit_head(self)
            }
            fn put_audit_checkpoint(&self, rec: AuditCheckpointRec) -> Result<(), StoreError> {
                <$t>::put_audit_checkpoint(self, rec)
            }
            fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError> {
                <$t>::audit_checkpoints(self, from, to)
            }
        }

        impl Policies for $t {
            fn add_policy(&self, rec: PolicyRec) -> Result<PolicyRec, StoreError> {
                <$t>::add_policy(self, rec)
            }
            fn policies(&self) -> Result<Vec<PolicyRec>, StoreError> {
                <$t>::policies(self)
            }
            fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError> {
                <$t>::effective_policy(self, agency)
            }
        }

        impl ForwardQueue for $t {
            fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError> {
                <$t>::forward_positions(self)
            }
            fn forward_enqueue(
                &self,
                messages: &[Vec<u8>],
                alert_pos: u64,
                change_pos: u64,
                max_bytes: u64,
            ) -> Result<(), StoreError> {
                <$t>::forward_enqueue(self, messages, alert_pos, change_pos, max_bytes)
            }
            fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
                <$t>::forward_peek(self, limit)
            }
            fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError> {
                <$t>::forward_remove(self, done, sent)
            }
            fn forward_stats(&self) -> Result<ForwardStats, StoreError> {
                <$t>::forward_stats(self)
            }
        }

        impl Leases for $t {
            fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<bool, StoreError> {
                <$t>::acquire_lease(self, name, holder, ttl)
            }
            fn release_leases(&self, holder: &str) -> Result<(), StoreError> {
                <$t>::release_leases(self, holder)
            }
        }

        impl Lifecycle for $t {
            fn flush_blocking(&self) -> Result<(), StoreError> {
                <$t>::flush_blocking(self)
            }
            fn recover(&self) -> Result<bool, StoreError> {
                <$t>::recover(self)
            }
            fn probe_write(&self) -> Result<(), StoreError> {
                <$t>::probe_write(self)
            }
            fn size_on_disk(&self) -> Result<u64, StoreError> {
                <$t>::size_on_disk(self)
            }
            fn reopened(&self) -> u64 {
                <$t>::reopened(self)
            }
        }
    };
}

backend!(SledStore);
backend!(PgStore);
backend!(Store);
