//! What any storage backend of the collector must provide, one trait per
//! aggregate, and the guarantees each keeps (checked for every backend by
//! the conformance suite in `conformance.rs`). sled ([`Store`]) is the
//! first backend; PostgreSQL, for several stateless collectors, is next.
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
//! * **Durability**: after [`Lifecycle::flush_blocking`] returns, a
//!   reopened store holds everything written before it.

use tokio::sync::watch;

use super::{
    AgencyRec, AgentRec, AlertPage, AlertQuery, AuditCheckpointRec, AuditRec, CorrelationInput, EnrollError,
    ForwardStats, IncidentChangeRec, IncidentFilter, IncidentPage, IncidentRec, Incoming, IngestOutcome,
    OperatorRec, PolicyRec, QuarantineRec, RecordRec, Store, StoreError, SystemRec, TokenRec,
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
}

/// Agencies, systems, enrollment, agents and operators.
pub trait Registry {
    fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError>;
    fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError>;
    fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError>;
    fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError>;
    fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError>;
    fn systems(&self) -> Result<Vec<SystemRec>, StoreError>;
    fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError>;
    fn enroll(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
        agent: AgentRec,
    ) -> Result<(), EnrollError>;
    fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError>;
    fn agents(&self) -> Result<Vec<AgentRec>, StoreError>;
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
    fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError>;
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

/// Durability and recovery.
pub trait Lifecycle {
    fn flush_blocking(&self) -> Result<(), StoreError>;
    /// After a storage failure, make writes work again once possible.
    fn recover(&self) -> Result<bool, StoreError>;
}

/// Everything a collector needs from its storage.
pub trait Backend:
    Records + Registry + Incidents + Audit + Policies + ForwardQueue + Lifecycle + Clone + Send + Sync + 'static
{
}

impl<T> Backend for T where
    T: Records
        + Registry
        + Incidents
        + Audit
        + Policies
        + ForwardQueue
        + Lifecycle
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Implements a trait for the sled [`Store`] by calling its inherent
/// methods of the same names.
macro_rules! sled_backend {
    ($trait:ident { $(fn $name:ident $(<$g:ident>)? (&self $(, $arg:ident : $ty:ty)*) -> $ret:ty;)* }) => {
        impl $trait for Store {
            $(fn $name $(<$g>)? (&self $(, $arg: $ty)*) -> $ret { Store::$name(self $(, $arg)*) })*
        }
    };
}

sled_backend!(Records {
    fn ingest(&self, agent_id: &str, agency: &str, received_us: i64, batch: &[Incoming]) -> Result<IngestOutcome, StoreError>;
    fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError>;
    fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError>;
    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError>;
    fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError>;
    fn alert_cursor(&self) -> watch::Receiver<u64>;
});

sled_backend!(Registry {
    fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError>;
    fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError>;
    fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError>;
    fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError>;
    fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError>;
    fn systems(&self) -> Result<Vec<SystemRec>, StoreError>;
    fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError>;
    fn enroll(&self, token: &str, expected_agency: Option<&str>, now_us: i64, agent: AgentRec) -> Result<(), EnrollError>;
    fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError>;
    fn agents(&self) -> Result<Vec<AgentRec>, StoreError>;
    fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError>;
    fn operators(&self) -> Result<Vec<OperatorRec>, StoreError>;
    fn update_operator(&self, name: &str, f: impl FnOnce(&mut OperatorRec)) -> Result<Option<OperatorRec>, StoreError>;
    fn revoke_operator(&self, name: &str, now_us: i64, by: &str, reason: &str) -> Result<Option<OperatorRec>, StoreError>;
});

impl Incidents for Store {
    fn correlated_cursor(&self) -> Result<u64, StoreError> {
        Store::correlated_cursor(self)
    }
    fn correlate(
        &self,
        inputs: &[CorrelationInput],
        last_cursor: u64,
        window_us: i64,
        now_us: i64,
    ) -> Result<Vec<u64>, StoreError> {
        Store::correlate(self, inputs, last_cursor, window_us, now_us)
    }
    fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError> {
        Store::incident(self, id)
    }
    fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError> {
        Store::incidents(self, f)
    }
    fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        Store::incident_alert_cursors(self, id, limit)
    }
    fn update_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        Store::update_incidents(self, ids, f)
    }
    fn merge_incidents<E>(
        &self,
        ids: &[u64],
        f: impl Fn(&mut [IncidentRec]) -> Result<(), E>,
    ) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError> {
        Store::merge_incidents(self, ids, f)
    }
    fn incident_changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError> {
        Store::incident_changes_after(self, after, limit)
    }
    fn incident_change_cursor(&self) -> watch::Receiver<u64> {
        Store::incident_change_cursor(self)
    }
}

impl Audit for Store {
    fn append_audit(
        &self,
        rec: AuditRec,
        seal: impl Fn(&AuditRec) -> String,
    ) -> Result<AuditRec, StoreError> {
        Store::append_audit(self, rec, seal)
    }
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError> {
        Store::audit_after(self, after, limit)
    }
    fn audit_head(&self) -> Result<Option<AuditRec>, StoreError> {
        Store::audit_head(self)
    }
    fn put_audit_checkpoint(&self, rec: AuditCheckpointRec) -> Result<(), StoreError> {
        Store::put_audit_checkpoint(self, rec)
    }
    fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError> {
        Store::audit_checkpoints(self, from, to)
    }
}

sled_backend!(Policies {
    fn add_policy(&self, rec: PolicyRec) -> Result<PolicyRec, StoreError>;
    fn policies(&self) -> Result<Vec<PolicyRec>, StoreError>;
    fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError>;
});

sled_backend!(ForwardQueue {
    fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError>;
    fn forward_enqueue(&self, messages: &[Vec<u8>], alert_pos: u64, change_pos: u64, max_bytes: u64) -> Result<(), StoreError>;
    fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError>;
    fn forward_stats(&self) -> Result<ForwardStats, StoreError>;
});

sled_backend!(Lifecycle {
    fn flush_blocking(&self) -> Result<(), StoreError>;
    fn recover(&self) -> Result<bool, StoreError>;
});
