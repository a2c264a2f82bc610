//! [`Store`]: the collector's storage, sled or PostgreSQL as configured.
//! The rest of the collector holds this handle and never learns which
//! backend is behind it; each method forwards to the backend's own.

use tokio::sync::watch;

use super::{
    AgencyRec, AgencyStatsRec, AgentRec, AlertPage, AlertQuery, AuditCheckpointRec, AuditRec,
    CorrelationInput, EnrollError, ForwardStats, IncidentChangeRec, IncidentFilter, IncidentPage,
    IncidentRec, Incoming, IngestOutcome, OperatorRec, PgOptions, PgStore, PolicyRec, QuarantineRec,
    RecordRec, SledStore, StoreError, SystemRec, TokenRec,
};

/// The collector's storage handle (cheap to clone).
#[derive(Clone)]
pub enum Store {
    Sled(SledStore),
    Pg(PgStore),
}

/// Generates methods of [`Store`] that forward to the backend.
macro_rules! forward {
    ($(fn $name:ident $(<$g:ident>)? (&self $(, $arg:ident : $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(
                pub fn $name $(<$g>)? (&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sled(s) => s.$name($($arg),*),
                        Store::Pg(s) => s.$name($($arg),*),
                    }
                }
            )*
        }
    };
}

impl Store {
    /// Opens (or creates) a sled database at `path`.
    pub fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        SledStore::open(path).map(Store::Sled)
    }

    /// Connects to PostgreSQL and migrates its schema.
    pub fn open_postgres(opts: &PgOptions) -> Result<Store, StoreError> {
        PgStore::open(opts).map(Store::Pg)
    }

    /// Makes every write so far durable (PostgreSQL: already at commit).
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(s) => s.flush().await,
            Store::Pg(_) => Ok(()),
        }
    }

    /// Which backend, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sled(_) => "sled",
            Store::Pg(_) => "postgres",
        }
    }
}

forward! {
    // records
    fn ingest(&self, agent_id: &str, agency: &str, received_us: i64, batch: &[Incoming]) -> Result<IngestOutcome, StoreError>;
    fn insert_collector_alert(&self, rec: RecordRec) -> Result<u64, StoreError>;
    fn alert(&self, cursor: u64) -> Result<Option<RecordRec>, StoreError>;
    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError>;
    fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError>;
    fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError>;
    fn alert_cursor(&self) -> watch::Receiver<u64>;
    fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError>;
    fn retention_sweep(&self, cutoff_us: impl Fn(&str) -> i64, floor_us: i64, max: usize) -> Result<u64, StoreError>;
    // registry
    fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError>;
    fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError>;
    fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError>;
    fn update_agency<E>(&self, code: &str, f: impl FnMut(&mut AgencyRec) -> Result<(), E>) -> Result<Result<Option<AgencyRec>, E>, StoreError>;
    fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError>;
    fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError>;
    fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError>;
    fn systems(&self) -> Result<Vec<SystemRec>, StoreError>;
    fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError>;
    fn check_token(&self, token: &str, expected_agency: Option<&str>, now_us: i64) -> Result<TokenRec, EnrollError>;
    fn enroll(&self, token: &str, expected_agency: Option<&str>, now_us: i64, agent: AgentRec) -> Result<(), EnrollError>;
    fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError>;
    fn agents(&self) -> Result<Vec<AgentRec>, StoreError>;
    fn update_agent(&self, agent_id: &str, f: impl FnMut(&mut AgentRec)) -> Result<Option<AgentRec>, StoreError>;
    fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError>;
    fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError>;
    fn operators(&self) -> Result<Vec<OperatorRec>, StoreError>;
    fn update_operator(&self, name: &str, f: impl FnOnce(&mut OperatorRec)) -> Result<Option<OperatorRec>, StoreError>;
    fn revoke_operator(&self, name: &str, now_us: i64, by: &str, reason: &str) -> Result<Option<OperatorRec>, StoreError>;
    // incidents
    fn correlated_cursor(&self) -> Result<u64, StoreError>;
    fn correlate(&self, inputs: &[CorrelationInput], last_cursor: u64, window_us: i64, now_us: i64) -> Result<Vec<u64>, StoreError>;
    fn mirrored_cursor(&self) -> Result<u64, StoreError>;
    fn mirror_incidents(&self, inputs: &[CorrelationInput], last_cursor: u64, now_us: i64) -> Result<Vec<u64>, StoreError>;
    fn highest_seq_between(&self, agent_id: &str, lo: u64, hi: u64) -> Result<Option<u64>, StoreError>;
    fn counter_value(&self, name: &str) -> Result<u64, StoreError>;
    fn raise_counter(&self, name: &str, value: u64) -> Result<(), StoreError>;
    fn add_to_counter(&self, name: &str, delta: u64) -> Result<(), StoreError>;
    fn incident(&self, id: u64) -> Result<Option<IncidentRec>, StoreError>;
    fn incidents(&self, f: &IncidentFilter) -> Result<IncidentPage, StoreError>;
    fn incident_alert_cursors(&self, id: u64, limit: usize) -> Result<Vec<u64>, StoreError>;
    fn update_incident<E>(&self, id: u64, f: impl Fn(&mut IncidentRec) -> Result<(), E>) -> Result<Result<Option<IncidentRec>, E>, StoreError>;
    fn update_incidents<E>(&self, ids: &[u64], f: impl Fn(&mut [IncidentRec]) -> Result<(), E>) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError>;
    fn merge_incidents<E>(&self, ids: &[u64], f: impl Fn(&mut [IncidentRec]) -> Result<(), E>) -> Result<Result<Option<Vec<IncidentRec>>, E>, StoreError>;
    fn incident_changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, IncidentChangeRec)>, StoreError>;
    fn incident_change_cursor(&self) -> watch::Receiver<u64>;
    // audit
    fn append_audit(&self, rec: AuditRec, seal: impl Fn(&AuditRec) -> String) -> Result<AuditRec, StoreError>;
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError>;
    fn audit_head(&self) -> Result<Option<AuditRec>, StoreError>;
    fn put_audit_checkpoint(&self, rec: AuditCheckpointRec) -> Result<(), StoreError>;
    fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError>;
    fn overwrite_audit_for_tests(&self, rec: &AuditRec) -> Result<(), StoreError>;
    // policies
    fn add_policy(&self, rec: PolicyRec) -> Result<PolicyRec, StoreError>;
    fn policies(&self) -> Result<Vec<PolicyRec>, StoreError>;
    fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError>;
    // forward queue
    fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError>;
    fn forward_enqueue(&self, messages: &[Vec<u8>], alert_pos: u64, change_pos: u64, max_bytes: u64) -> Result<(), StoreError>;
    fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError>;
    fn forward_stats(&self) -> Result<ForwardStats, StoreError>;
    // leases
    fn acquire_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, StoreError>;
    fn release_leases(&self, holder: &str) -> Result<(), StoreError>;
    // lifecycle
    fn flush_blocking(&self) -> Result<(), StoreError>;
    fn probe_write(&self) -> Result<(), StoreError>;
    fn recover(&self) -> Result<bool, StoreError>;
    fn reopened(&self) -> u64;
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
