//! The collector's storage. Only this module touches sled.
//!
//! Architecture invariant: nothing outside `store` names a sled type; the
//! rest of the collector speaks in domain records ([`records`]) so that a
//! second backend (PostgreSQL, for several stateless collectors) can sit
//! behind the same methods.
//!
//! # Trees and key layout
//!
//! | tree               | key                                              | value          |
//! |--------------------|--------------------------------------------------|----------------|
//! | `meta`             | `b"schema"`                                      | u32 BE (2)     |
//! | `meta`             | `b"probe"` (the write probe of the storage watch)| one byte       |
//! | `agencies`         | agency code (UTF-8, never contains 0x00)         | [`AgencyRec`]  |
//! | `tokens`           | SHA-256 of the token (32 bytes)                  | [`TokenRec`]   |
//! | `agents`           | agent id (UTF-8)                                 | [`AgentRec`]   |
//! | `alert_chunks`     | first cursor of the chunk (u64 BE)               | entries `cursor (u64 BE), length (u32 BE), RecordRec`, cursor order |
//! | `event_chunks`     | first cursor of the chunk (u64 BE)               | as `alert_chunks` |
//! | `seq_ranges`       | agent id, 0x00, first seq (u64 BE)               | last seq (u64 BE): stored or quarantined |
//! | `alert_times`      | second of event time (sortable i64 BE), chunk key| `(time (sortable i64 BE), cursor)` of the chunk's alerts in that second |
//! | `alert_agency_times` | agency code, 0x00, second, chunk key           | as `alert_times`, that agency's alerts |
//! | `quarantine`       | agent id, 0x00, seq (u64 BE)                     | [`QuarantineRec`] |
//! | `agency_stats`     | agency code                                      | [`AgencyStatsRec`] |
//! | `systems`          | system id (u64 BE)                               | [`SystemRec`]  |
//! | `operators`        | operator name                                    | [`OperatorRec`] |
//! | `audit`            | seq (u64 BE), from 1                             | [`AuditRec`]   |
//! | `audit_checkpoints`| audit seq (u64 BE)                               | [`AuditCheckpointRec`] |
//! | `incidents`        | incident id (u64 BE)                             | [`IncidentRec`] |
//! | `incident_keys`    | correlation key (agency 0x00 system 0x00 category 0x00 attacker) | incident id (u64 BE) |
//! | `incident_alerts`  | incident id (u64 BE), first alert cursor (u64 BE)| the alert cursors one correlation linked (u64 BE each); empty (schema 1): the key's cursor |
//! | `flow_keys`        | correlation pass number (u64 BE), from 1          | the flow keys it added: `SHA-256 of the key (first 16 bytes), incident id (u64 BE)` each ([`flows`]) |
//! | `incident_changes` | change cursor (u64 BE)                           | [`IncidentChangeRec`] |
//! | `policies`         | policy version (u64 BE)                          | [`PolicyRec`]  |
//! | `counters`         | `system`, `incident`, `policy`, `correlated`, `fwd_*` | u64 BE: last id used / last alert cursor correlated / forwarder positions and totals |
//! | `forward_queue`    | seq (u64 BE)                                     | one formatted message for the forwarder |
//!
//! Cursors are assigned under one lock in commit order, so a reader that
//! has seen cursor `c` has seen every record with a smaller cursor: the
//! alert subscription resumes from a cursor without gaps.
//!
//! Ingest is one sled transaction per batch over the record chunks, both
//! time indexes, `seq_ranges`, `quarantine`, `agents` and `agency_stats`;
//! a batch is stored whole or not at all, and each (agent, seq) at most
//! once. It writes a few large values per batch, not several small ones
//! per record ([`chunks`]): sled's cost is per key (finding the leaf,
//! splitting it every 16 keys), and per-record keys held ingest to about
//! 25,000 alerts/s. Callers flush ([`Store::flush`]) before acknowledging.
//!
//! `seq_ranges` remembers every (agent, seq) ever accepted, also after
//! retention deleted the record: a record sent again after its deletion is
//! a duplicate, never stored a second time.

pub mod api;
#[cfg(test)]
mod conformance;
pub mod migrate;
pub mod pg;
pub mod records;

pub use any::Store;
pub use pg::{PgOptions, PgStore};

mod any;

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use canhgac_proto::v1::RecordFacts;
use prost::Message as _;
use sha2::Digest as _;
use sled::{
    Transactional as _,
    transaction::{ConflictableTransactionError, TransactionError},
};
use tokio::sync::watch;

pub use records::{
    AgencyRec, AgencyStatsRec, AgentRec, AuditCheckpointRec, AuditRec, EvidenceRec, IncidentChangeRec,
    IncidentEventRec, IncidentRec, MAX_ENTITIES, OperatorRec, PROVINCE, PolicyRec, QuarantineRec,
    RECORD_VERSION, RecordRec, SystemRec, TokenRec,
};

mod audit;
mod chunks;
mod flows;
mod forward;
mod incidents;
mod policy;
mod registry;
mod retention;
mod txn;
mod upgrade;
pub use forward::ForwardStats;
pub use incidents::{CorrelationInput, IncidentFilter, IncidentPage};

/// 2: records in chunks, time indexes per second and chunk, sequence
/// ranges (see [`chunks`]); a store of version 1 is upgraded on open
/// ([`upgrade`]).
const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("database: {0}")]
    Database(String),
    /// The database could not be reached; `url` carries no password.
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("corrupt record in tree `{tree}` at key {key}: {reason}")]
    Corrupt { tree: &'static str, key: String, reason: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The change would break an invariant (the message says which).
    #[error("{0}")]
    Conflict(String),
    #[error("database schema version {found} is newer than this collector understands ({known})")]
    Schema { found: u32, known: u32 },
    /// Still no room to write (a full disk), or the database could not be
    /// reopened after a storage failure.
    #[error("storage unavailable (no space left or reopening failed)")]
    Unavailable,
}

/// Writes and removes a few MiB next to the database: whether there is
/// room again to write after a full disk.
fn probe_space(db: &Path) -> Result<(), StoreError> {
    use std::io::Write as _;
    let dir = db.parent().unwrap_or(db);
    let probe = dir.join(".canhgac-space-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&probe)?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..8 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    result.map_err(|_| StoreError::Unavailable)
}

/// Why an enrollment token was refused. Nothing is created in any case.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("unknown enrollment token")]
    Unknown,
    #[error("enrollment token already used")]
    Used,
    #[error("enrollment token expired")]
    Expired,
    #[error("enrollment token is bound to another agency")]
    WrongAgency,
    #[error("the token's agency no longer exists")]
    AgencyGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A record from an agent batch, after validation.
pub enum Incoming {
    Valid {
        seq: u64,
        alert: bool,
        severity: u32,
        time_us: i64,
        eve_json: String,
        facts: Option<Box<RecordFacts>>,
        /// From a downstream collector: where it comes from.
        origin: Option<Box<Origin>>,
    },
    Invalid {
        seq: u64,
        reason: String,
        raw: Vec<u8>,
    },
}

/// What a downstream collector says of a record it forwards.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The agency there.
    pub agency: String,
    /// The province; the sender's own when it came from its agents.
    pub province: String,
    /// `RECORD_KIND_INCIDENT`: the incident as the sender shows it.
    pub incident: Option<canhgac_proto::v1::Incident>,
    /// `RECORD_KIND_SUMMARY`: the sender's daily report.
    pub summary: Option<canhgac_proto::v1::DailySummary>,
}

impl Incoming {
    fn seq(&self) -> u64 {
        match self {
            Incoming::Valid { seq, .. } | Incoming::Invalid { seq, .. } => *seq,
        }
    }

    /// The stored form of a valid record (`None` for an invalid one).
    fn record(&self, agent_id: &str, agency: &str, received_us: i64) -> Option<RecordRec> {
        let Incoming::Valid { seq, alert, severity, time_us, eve_json, facts, origin } = self else {
            return None;
        };
        let origin = origin.as_deref();
        let kind = match origin {
            Some(o) if o.incident.is_some() => canhgac_proto::v1::RecordKind::Incident,
            Some(o) if o.summary.is_some() => canhgac_proto::v1::RecordKind::Summary,
            _ if *alert => canhgac_proto::v1::RecordKind::Alert,
            _ => canhgac_proto::v1::RecordKind::Event,
        };
        Some(RecordRec {
            version: records::RECORD_VERSION,
            agent_id: agent_id.to_string(),
            agency: agency.to_string(),
            seq: *seq,
            kind: kind as i32,
            severity: *severity,
            time_us: *time_us,
            received_us,
            eve_json: eve_json.clone(),
            facts: facts.as_deref().cloned(),
            incident: origin.and_then(|o| o.incident.clone()),
            origin_agency: origin.map(|o| o.agency.clone()).unwrap_or_default(),
            province: origin.map(|o| o.province.clone()).unwrap_or_default(),
            summary: origin.and_then(|o| o.summary.clone()),
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: u32,
    pub duplicates: u32,
    pub invalid: u32,
}

/// Filter and page for [`Store::list_alerts`].
#[derive(Debug, Default, Clone)]
pub struct AlertQuery {
    pub agency: Option<String>,
    /// Keep alerts with `severity <= max_severity` (1 is the most severe).
    pub max_severity: Option<u32>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub limit: usize,
    /// Continue after this (time, cursor), exclusive.
    pub after: Option<PageKey>,
    /// Keep only the alerts this accepts (filters the caller decides).
    pub keep: Option<AlertPredicate>,
}

/// A caller's filter over stored alerts.
#[derive(Clone)]
pub struct AlertPredicate(pub std::sync::Arc<dyn Fn(&RecordRec) -> bool + Send + Sync>);

impl std::fmt::Debug for AlertPredicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertPredicate")
    }
}

/// Position in the time-ordered alert listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageKey {
    pub time_us: i64,
    pub cursor: u64,
}

impl PageKey {
    pub fn encode(&self) -> String {
        format!("p1.{:016x}.{:016x}", sortable(self.time_us), self.cursor)
    }

    pub fn decode(s: &str) -> Option<PageKey> {
        let mut parts = s.strip_prefix("p1.")?.split('.');
        let t = u64::from_str_radix(parts.next()?, 16).ok()?;
        let cursor = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(PageKey { time_us: unsortable(t), cursor })
    }
}

/// One page of alerts (cursor, record) and where the next page starts.
pub type AlertPage = (Vec<(u64, RecordRec)>, Option<PageKey>);

#[derive(Clone)]
pub struct SledStore {
    cell: Arc<Cell>,
}

/// The open database, replaceable: after an I/O error (a full disk) sled
/// refuses every later write until it is reopened, so [`Store::recover`]
/// swaps in a freshly opened database once space is back. Cursor watches
/// live here so that subscribers survive the swap.
struct Cell {
    path: std::path::PathBuf,
    /// `None` while a reopen has not succeeded yet: every call then
    /// answers [`StoreError::Unavailable`].
    current: std::sync::RwLock<Option<Arc<Inner>>>,
    alert_cursor: Arc<watch::Sender<u64>>,
    change_cursor: Arc<watch::Sender<u64>>,
    /// Times the database was reopened after a storage failure.
    reopened: std::sync::atomic::AtomicU64,
    /// Next alert cursor and incident change cursor already handed out by
    /// a database that was replaced: never reused.
    floors: Mutex<(u64, u64)>,
    flushes: FlushGate,
}

/// Flushes grouped (see [`SledStore::flush`]): one at a time; a call
/// takes a ticket, and a flush that starts covers every ticket taken
/// before it.
#[derive(Default)]
struct FlushGate {
    running: tokio::sync::Mutex<()>,
    requested: std::sync::atomic::AtomicU64,
    covered: std::sync::atomic::AtomicU64,
}

struct Inner {
    db: sled::Db,
    agencies: sled::Tree,
    tokens: sled::Tree,
    agents: sled::Tree,
    /// Record chunks (see [`chunks`]).
    alert_chunks: sled::Tree,
    event_chunks: sled::Tree,
    /// Sequence ranges stored per agent.
    seq_ranges: sled::Tree,
    /// Time indexes of the alerts: all agencies, and per agency.
    alert_times: sled::Tree,
    agency_times: sled::Tree,
    quarantine: sled::Tree,
    agency_stats: sled::Tree,
    systems: sled::Tree,
    operators: sled::Tree,
    audit: sled::Tree,
    audit_checkpoints: sled::Tree,
    incidents: sled::Tree,
    incident_keys: sled::Tree,
    incident_alerts: sled::Tree,
    incident_changes: sled::Tree,
    /// Passes of flow keys (see [`flows`]) and the map they make.
    flow_keys: sled::Tree,
    flows: Mutex<flows::FlowMap>,
    policies: sled::Tree,
    counters: sled::Tree,
    forward_queue: sled::Tree,
    /// Serialises audit appends (the chain needs the previous hash).
    audit_lock: Mutex<()>,
    /// Serialises operator revocations (the last-admin check).
    operators_lock: Mutex<()>,
    /// Next incident change cursor; the lock serialises incident commits.
    next_change: Mutex<u64>,
    /// Highest committed incident change cursor (0: none).
    change_cursor: Arc<watch::Sender<u64>>,
    /// Next cursor to assign; the lock serialises ingest commits.
    next_cursor: Mutex<u64>,
    /// Highest committed alert cursor (0: none).
    alert_cursor: Arc<watch::Sender<u64>>,
}

fn sortable(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

fn unsortable(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

fn dedupe_key(agent_id: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(agent_id.len() + 9);
    k.extend_from_slice(agent_id.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A schema-1 time index key (the upgrade's tests write them).
#[cfg(test)]
fn time_key(prefix: &[u8], time_us: i64, cursor: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&sortable(time_us).to_be_bytes());
    k.extend_from_slice(&cursor.to_be_bytes());
    k
}

fn agency_prefix(agency: &str) -> Vec<u8> {
    let mut k = agency.as_bytes().to_vec();
    k.push(0);
    k
}

fn decode<M: prost::Message + Default>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn u64_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

/// SHA-256 of an enrollment token: what is stored instead of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl SledStore {
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let inner = Inner::open(path, None)?;
        Ok(SledStore {
            cell: Arc::new(Cell {
                path: path.to_path_buf(),
                alert_cursor: inner.alert_cursor.clone(),
                change_cursor: inner.change_cursor.clone(),
                current: std::sync::RwLock::new(Some(Arc::new(inner))),
                reopened: std::sync::atomic::AtomicU64::new(0),
                floors: Mutex::new((0, 0)),
                flushes: FlushGate::default(),
            }),
        })
    }

    /// The database in use now.
    fn inner(&self) -> Result<Arc<Inner>, StoreError> {
        self.cell.current.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Unavailable)
    }

    /// Whether the store takes writes now: the database is open and a
    /// one-key write and a flush succeed (sled keeps failing after an I/O
    /// error such as a full disk). For readiness probes: one tiny write.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        self.inner()?.writable()
    }

    /// Whether writes work; when they fail (sled keeps failing after an
    /// I/O error such as a full disk) and space is back, reopens the
    /// database in place. Everything flushed survives the swap; what was
    /// not flushed was never acknowledged, so agents send it again (each
    /// (agent, seq) is still stored once). Returns whether it reopened.
    /// Blocking: call it from a blocking thread (`spawn_blocking`).
    #[allow(clippy::disallowed_methods)] // waits on a blocking thread, never on the runtime
    pub fn recover(&self) -> Result<bool, StoreError> {
        let now = self.cell.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(inner) = now
            && inner.writable().is_ok()
        {
            return Ok(false);
        }
        probe_space(&self.cell.path)?;
        let mut current = self.cell.current.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = current.take() {
            // in-flight operations finish (failing) on the old database
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut floors = self.cell.floors.lock().unwrap_or_else(|p| p.into_inner());
            floors.0 = floors.0.max(*old.next_cursor.lock().unwrap_or_else(|p| p.into_inner()));
            floors.1 = floors.1.max(*old.next_change.lock().unwrap_or_else(|p| p.into_inner()));
        }
        let (next_cursor, next_change) = *self.cell.floors.lock().unwrap_or_else(|p| p.into_inner());
        // sled releases its file lock a moment after the last handle is
        // dropped; until the open succeeds every call answers Unavailable,
        // and the next call of this function tries again
        let mut last = StoreError::Unavailable;
        for _ in 0..250 {
            match Inner::open(&self.cell.path, Some((&self.cell, next_cursor, next_change))) {
                Ok(inner) => {
                    *current = Some(Arc::new(inner));
                    let n = self.cell.reopened.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    tracing::warn!(reopened = n, "storage writable again: database reopened");
                    return Ok(true);
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::error!(error = %last, "cannot reopen the database yet; retrying");
        Err(last)
    }

    /// Times the database was reopened after a storage failure.
    pub fn reopened(&self) -> u64 {
        self.cell.reopened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One process owns a sled database (sled locks it), so every lease
    /// is granted.
    pub fn acquire_lease(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    pub fn release_leases(&self, _holder: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Inner {
    /// Whether writes work now. A flush alone is not enough: after an I/O
    /// error sled refuses every later write, yet a flush with nothing
    /// dirty still succeeds; a one-key write meets the refusal, and the
    /// flush that follows meets a full disk. The key is overwritten in
    /// place, so the probe costs a few bytes of log.
    fn writable(&self) -> Result<(), StoreError> {
        self.db.insert(b"probe", &[0u8])?;
        self.db.flush()?;
        Ok(())
    }

    /// Opens the database. `again`: reopening in place, with the cell whose
    /// watches to keep and the cursors already handed out (never reused).
    fn open(path: &Path, again: Option<(&Cell, u64, u64)>) -> Result<Inner, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        match db.get(b"schema")? {
            Some(v) => {
                let found = u64_of(&v) as u32;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema { found, known: SCHEMA_VERSION });
                }
                if found < SCHEMA_VERSION {
                    upgrade::to_chunks(&db)?;
                }
            }
            None => {
                db.insert(b"schema", &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        let alert_chunks = db.open_tree("alert_chunks")?;
        let event_chunks = db.open_tree("event_chunks")?;
        let last_alert = chunks::last_cursor("alert_chunks", &alert_chunks)?;
        let next_cursor = last_alert.max(chunks::last_cursor("event_chunks", &event_chunks)?) + 1;
        let last = |t: &sled::Tree| -> Result<u64, StoreError> {
            Ok(t.last()?.map(|(k, _)| u64_of(&k)).unwrap_or(0))
        };
        let incident_changes = db.open_tree("incident_changes")?;
        let last_change = last(&incident_changes)?;
        let flow_keys = db.open_tree("flow_keys")?;
        let inner = Inner {
            agency_stats: db.open_tree("agency_stats")?,
            systems: db.open_tree("systems")?,
            operators: db.open_tree("operators")?,
            audit: db.open_tree("audit")?,
            audit_checkpoints: db.open_tree("audit_checkpoints")?,
            incidents: db.open_tree("incidents")?,
            incident_keys: db.open_tree("incident_keys")?,
            incident_alerts: db.open_tree("incident_alerts")?,
            incident_changes,
            flows: Mutex::new(flows::FlowMap::load(&flow_keys, flows::CAPACITY)?),
            flow_keys,
            policies: db.open_tree("policies")?,
            counters: db.open_tree("counters")?,
            forward_queue: db.open_tree("forward_queue")?,
            audit_lock: Mutex::new(()),
            operators_lock: Mutex::new(()),
            next_change: Mutex::new((last_change + 1).max(again.map(|a| a.2).unwrap_or(0))),
            change_cursor: match again {
                Some((cell, _, _)) => cell.change_cursor.clone(),
                None => Arc::new(watch::Sender::new(last_change)),
            },
            agencies: db.open_tree("agencies")?,
            tokens: db.open_tree("tokens")?,
            agents: db.open_tree("agents")?,
            seq_ranges: db.open_tree("seq_ranges")?,
            alert_times: db.open_tree("alert_times")?,
            agency_times: db.open_tree("alert_agency_times")?,
            quarantine: db.open_tree("quarantine")?,
            alert_chunks,
            event_chunks,
            db,
            next_cursor: Mutex::new(next_cursor.max(again.map(|a| a.1).unwrap_or(0))),
            alert_cursor: match again {
                Some((cell, _, _)) => cell.alert_cursor.clone(),
                None => Arc::new(watch::Sender::new(last_alert)),
            },
        };
        Ok(inner)
    }
}

impl SledStore {
    /// Makes every write so far durable.
    ///
    /// A blocking flush on tokio's blocking pool, never sled's
    /// `flush_async`: concurrent `flush_async` calls deadlock sled 0.34
    /// (spacejam/sled#1308; seen here when a thousand agents reconnected
    /// to a restarted collector: every thread of sled's small pool held
    /// the concurrency-control read lock in a flush waiting for a log
    /// write that needed a thread of that pool, a transaction waited for
    /// the write lock, and every later reader, operator calls included,
    /// waited behind it). Calls are grouped: one flush runs at a time, and
    /// a call whose writes a flush started after it has covered returns
    /// without flushing again.
    pub async fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let gate = &self.cell.flushes;
        let ticket = gate.requested.fetch_add(1, SeqCst) + 1;
        let _one = gate.running.lock().await;
        if gate.covered.load(SeqCst) >= ticket {
            return Ok(());
        }
        let covers = gate.requested.load(SeqCst);
        let inner = self.inner()?;
        tokio::task::spawn_blocking(move || inner.db.flush())
            .await
            .map_err(|e| StoreError::Database(format!("flush task: {e}")))??;
        gate.covered.fetch_max(covers, SeqCst);
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner()?.db.flush()?;
        Ok(())
    }

    // ----- agencies -----

    pub fn add_agency(&self, rec: AgencyRec) -> Result<AgencyRec, StoreError> {
        let res = self.inner()?.agencies.compare_and_swap(
            rec.code.as_bytes(),
            None as Option<&[u8]>,
            Some(rec.encode_to_vec()),
        )?;
        match res {
            Ok(()) => Ok(rec),
            Err(_) => Err(StoreError::AlreadyExists(format!("agency `{}`", rec.code))),
        }
    }

    pub fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError> {
        self.inner()?
            .agencies
            .get(code.as_bytes())?
            .map(|v| decode("agencies", code.as_bytes(), &v))
            .transpose()
    }

    pub fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError> {
        self.inner()?
            .agencies
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode("agencies", &k, &v)
            })
            .collect()
    }

    // ----- enrollment tokens -----

    pub fn add_token(&self, token: &str, rec: TokenRec) -> Result<(), StoreError> {
        self.inner()?.tokens.insert(token_hash(token), rec.encode_to_vec())?;
        Ok(())
    }

    /// Checks a token without using it.
    pub fn check_token(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
    ) -> Result<TokenRec, EnrollError> {
        let hash = token_hash(token);
        let rec: TokenRec = match self.inner()?.tokens.get(hash).map_err(StoreError::from)? {
            Some(v) => decode("tokens", &hash, &v)?,
            None => return Err(EnrollError::Unknown),
        };
        Self::token_usable(&rec, expected_agency, now_us)?;
        if self.agency(&rec.agency)?.is_none() {
            return Err(EnrollError::AgencyGone);
        }
        Ok(rec)
    }

    fn token_usable(rec: &TokenRec, expected_agency: Option<&str>, now_us: i64) -> Result<(), EnrollError> {
        if rec.used_us != 0 {
            return Err(EnrollError::Used);
        }
        if now_us >= rec.expires_us {
            return Err(EnrollError::Expired);
        }
        if let Some(expected) = expected_agency
            && expected != rec.agency
        {
            return Err(EnrollError::WrongAgency);
        }
        Ok(())
    }

    /// Uses the token and creates the agent, atomically: either both happen
    /// or neither (a concurrent use of the same token loses).
    pub fn enroll(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
        agent: AgentRec,
    ) -> Result<(), EnrollError> {
        let hash = token_hash(token);
        let i = &self.inner()?;
        let res = (&i.tokens, &i.agents).transaction(|(tokens, agents)| {
            let abort = ConflictableTransactionError::Abort;
            let Some(v) = tokens.get(hash)? else {
                return Err(abort(EnrollError::Unknown));
            };
            let mut rec: TokenRec = decode("tokens", &hash, &v).map_err(|e| abort(EnrollError::Store(e)))?;
            Self::token_usable(&rec, expected_agency, now_us).map_err(abort)?;
            if agents.get(agent.agent_id.as_bytes())?.is_some() {
                return Err(abort(EnrollError::Store(StoreError::AlreadyExists(format!(
                    "agent {}",
                    agent.agent_id
                )))));
            }
            rec.used_us = now_us;
            rec.used_by = agent.agent_id.clone();
            tokens.insert(&hash, rec.encode_to_vec())?;
            agents.insert(agent.agent_id.as_bytes(), agent.encode_to_vec())?;
            Ok(())
        });
        match res {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(EnrollError::Store(e.into())),
        }
    }

    // ----- agents -----

    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError> {
        self.inner()?
            .agents
            .get(agent_id.as_bytes())?
            .map(|v| decode("agents", agent_id.as_bytes(), &v))
            .transpose()
    }

    pub fn agents(&self) -> Result<Vec<AgentRec>, StoreError> {
        self.inner()?
            .agents
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode("agents", &k, &v)
            })
            .collect()
    }

    /// Applies `f` to the agent record (compare-and-swap loop) and returns
    /// the result, or `None` when the agent does not exist.
    pub fn update_agent(
        &self,
        agent_id: &str,
        mut f: impl FnMut(&mut AgentRec),
    ) -> Result<Option<AgentRec>, StoreError> {
        let tree = &self.inner()?.agents;
        loop {
            let Some(old) = tree.get(agent_id.as_bytes())? else {
                return Ok(None);
            };
            let mut rec: AgentRec = decode("agents", agent_id.as_bytes(), &old)?;
            f(&mut rec);
            let new = rec.encode_to_vec();
            if tree.compare_and_swap(agent_id.as_bytes(), Some(&old), Some(new))?.is_ok() {
                return Ok(Some(rec));
            }
        }
    }

    // ----- records -----

    /// Stores a batch from one agent: each (agent, seq) at most once, the
    /// whole batch or nothing. Does not flush.
    ///
    /// The records are encoded before the ingest lock is taken; under it,
    /// the batch's duplicates are found in `seq_ranges` (only ingest
    /// writes that tree, and only under this lock), then one transaction
    /// writes a few large values: the record chunks, their time index
    /// entries per second, the extended sequence ranges, with the agent's
    /// and the agency's counters.
    pub fn ingest(
        &self,
        agent_id: &str,
        agency: &str,
        received_us: i64,
        batch: &[Incoming],
    ) -> Result<IngestOutcome, StoreError> {
        let encoded: Vec<Option<Vec<u8>>> = batch
            .iter()
            .map(|r| r.record(agent_id, agency, received_us).map(|r| r.encode_to_vec()))
            .collect();
        let i = &self.inner()?;
        let mut next = i.next_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let known = i.agents.get(agent_id.as_bytes())?;
        let known = match known {
            Some(v) => Some(decode::<AgentRec>("agents", agent_id.as_bytes(), &v)?.highest_seq),
            None => None,
        };
        // Every (agent, seq) stored so far is at most the agent's
        // `highest_seq` (both written under this lock), so a higher seq
        // needs no lookup.
        let mut highest = known.unwrap_or(0);
        let mut seen = std::collections::HashSet::new();
        let mut out = IngestOutcome::default();
        let mut keep = Vec::with_capacity(batch.len());
        for rec in batch {
            let seq = rec.seq();
            let fresh = known.is_some() && seq > highest;
            let dup = !seen.insert(seq)
                || (!fresh && chunks::range_holding(&i.seq_ranges, agent_id, seq)?.is_some());
            highest = highest.max(seq);
            if dup {
                out.duplicates += 1;
            }
            keep.push(!dup);
        }
        let mut stored_seqs: Vec<u64> =
            batch.iter().zip(&keep).filter(|(_, k)| **k).map(|(r, _)| r.seq()).collect();
        stored_seqs.sort_unstable();
        let mut ranges: Vec<(Vec<u8>, [u8; 8])> = Vec::new();
        for (first, last) in chunks::runs(&stored_seqs) {
            let start = match first.checked_sub(1) {
                Some(before) => {
                    chunks::range_holding(&i.seq_ranges, agent_id, before)?.map_or(first, |(f, _)| f)
                }
                None => first,
            };
            ranges.push((chunks::range_key(agent_id, start), last.to_be_bytes()));
        }
        let mut cursor = *next;
        let (mut alerts, mut events) = (Vec::new(), Vec::new());
        let (mut alert_chunk, mut event_chunk) =
            (chunks::ChunkWriter::default(), chunks::ChunkWriter::default());
        let (mut all_index, mut agency_index) =
            (chunks::IndexWriter::default(), chunks::IndexWriter::default());
        let mut quarantined = Vec::new();
        let mut stats = AgencyStatsRec::default();
        let mut last_alert = None;
        let mut index_chunks = Vec::new();
        for ((rec, value), keep) in batch.iter().zip(&encoded).zip(&keep) {
            if !keep {
                continue;
            }
            match (rec, value) {
                (Incoming::Valid { alert, time_us, .. }, Some(value)) => {
                    if *alert {
                        stats.alerts += 1;
                        stats.alert_bytes += value.len() as u64;
                        alert_chunk.push(cursor, value);
                        all_index.push(*time_us, cursor);
                        agency_index.push(*time_us, cursor);
                        last_alert = Some(cursor);
                        if alert_chunk.len() >= chunks::CHUNK_BYTES {
                            let chunk = std::mem::take(&mut alert_chunk);
                            index_chunks.push((
                                std::mem::take(&mut all_index),
                                std::mem::take(&mut agency_index),
                                chunk.first(),
                            ));
                            alerts.extend(chunk.finish());
                        }
                    } else {
                        stats.events += 1;
                        stats.event_bytes += value.len() as u64;
                        event_chunk.push(cursor, value);
                        if event_chunk.len() >= chunks::CHUNK_BYTES {
                            events.extend(std::mem::take(&mut event_chunk).finish());
                        }
                    }
                    cursor += 1;
                    out.stored += 1;
                }
                (Incoming::Invalid { seq, reason, raw }, _) => {
                    let value = QuarantineRec {
                        version: records::RECORD_VERSION,
                        agent_id: agent_id.to_string(),
                        seq: *seq,
                        received_us,
                        reason: reason.clone(),
                        raw: raw.clone(),
                    };
                    quarantined.push((dedupe_key(agent_id, *seq), value.encode_to_vec()));
                    out.invalid += 1;
                }
                (Incoming::Valid { .. }, None) => {}
            }
        }
        index_chunks.push((all_index, agency_index, alert_chunk.first()));
        alerts.extend(alert_chunk.finish());
        events.extend(event_chunk.finish());
        let agency_prefix = agency_prefix(agency);
        let mut index: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut by_agency: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (all, mine, first) in index_chunks {
            if let Some(first) = first {
                index.extend(all.finish(&[], first));
                by_agency.extend(mine.finish(&agency_prefix, first));
            }
        }
        let ivec = |v: Vec<u8>| sled::IVec::from(v);
        let alerts: Vec<([u8; 8], sled::IVec)> = alerts.into_iter().map(|(k, v)| (k, ivec(v))).collect();
        let events: Vec<([u8; 8], sled::IVec)> = events.into_iter().map(|(k, v)| (k, ivec(v))).collect();
        let res = (
            &i.alert_chunks,
            &i.event_chunks,
            &i.alert_times,
            &i.agency_times,
            &i.seq_ranges,
            &i.quarantine,
            &i.agents,
            &i.agency_stats,
        )
            .transaction(
                |(
                    alert_chunks,
                    event_chunks,
                    alert_times,
                    agency_times,
                    seq_ranges,
                    quarantine,
                    agents,
                    agency_stats,
                )| {
                    for (k, v) in &alerts {
                        alert_chunks.insert(k, v.clone())?;
                    }
                    for (k, v) in &events {
                        event_chunks.insert(k, v.clone())?;
                    }
                    for (k, v) in &index {
                        alert_times.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &by_agency {
                        agency_times.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &ranges {
                        seq_ranges.insert(k.as_slice(), v)?;
                    }
                    for (k, v) in &quarantined {
                        quarantine.insert(k.as_slice(), v.as_slice())?;
                    }
                    if let Some(v) = agents.get(agent_id.as_bytes())? {
                        let mut a = decode::<AgentRec>("agents", agent_id.as_bytes(), &v)
                            .map_err(ConflictableTransactionError::Abort)?;
                        a.records_stored += u64::from(out.stored);
                        a.records_duplicate += u64::from(out.duplicates);
                        a.records_invalid += u64::from(out.invalid);
                        a.highest_seq = a.highest_seq.max(highest);
                        agents.insert(agent_id.as_bytes(), a.encode_to_vec())?;
                    }
                    if out.stored > 0 {
                        let mut s: AgencyStatsRec = match agency_stats.get(agency.as_bytes())? {
                            Some(v) => decode("agency_stats", agency.as_bytes(), &v)
                                .map_err(ConflictableTransactionError::Abort)?,
                            None => AgencyStatsRec { version: records::RECORD_VERSION, ..Default::default() },
                        };
                        s.alerts += stats.alerts;
                        s.alert_bytes += stats.alert_bytes;
                        s.events += stats.events;
                        s.event_bytes += stats.event_bytes;
                        agency_stats.insert(agency.as_bytes(), s.encode_to_vec())?;
                    }
                    Ok(())
                },
            );
        match res {
            Ok(()) => {
                *next = cursor;
                drop(next);
                if let Some(c) = last_alert {
                    i.alert_cursor.send_replace(c);
                }
                Ok(out)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Highest committed alert cursor; changes wake subscribers.
    pub fn alert_cursor(&self) -> watch::Receiver<u64> {
        self.cell.alert_cursor.subscribe()
    }

    /// Alerts with a cursor greater than `after`, in cursor order.
    pub fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        chunks::after("alert_chunks", &self.inner()?.alert_chunks, after, limit)
    }

    /// Events (non-alert records) with a cursor greater than `after`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        chunks::after("event_chunks", &self.inner()?.event_chunks, after, limit)
    }

    /// Alerts newest event time first, filtered, one page.
    ///
    /// The time index holds, per second and chunk, the alerts' `(time,
    /// cursor)`: the listing reads one second's entries (from every chunk
    /// with alerts in it), sorts them newest first and goes on to the
    /// second before until the page is full.
    pub fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError> {
        let i = &self.inner()?;
        let (tree, prefix) = match &q.agency {
            Some(a) => (&i.agency_times, agency_prefix(a)),
            None => (&i.alert_times, Vec::new()),
        };
        let since = q.since_us.unwrap_or(i64::MIN);
        // newest (time, cursor) allowed, exclusive
        let mut below = match q.until_us {
            Some(until) => (until, 0),
            None => (i64::MAX, u64::MAX),
        };
        if let Some(after) = q.after
            && (after.time_us, after.cursor) < below
        {
            below = (after.time_us, after.cursor);
        }
        let lower = chunks::index_key(&prefix, chunks::bucket_of(since), 0);
        let upper = chunks::index_key(&prefix, chunks::bucket_of(below.0), u64::MAX);
        let limit = q.limit.max(1);
        let mut out: Vec<(u64, RecordRec)> = Vec::with_capacity(limit.min(1024));
        let mut cache = Vec::new();
        let mut keys = tree.range(lower..=upper).rev().peekable();
        while let Some(kv) = keys.next() {
            let (k, v) = kv?;
            let Some((second, _)) = chunks::index_key_parts(&prefix, &k) else {
                continue;
            };
            // every chunk's entries of this second
            let mut entries: Vec<(i64, u64)> = chunks::index_entries(&v).collect();
            while let Some(Ok((k2, _))) = keys.peek() {
                if chunks::index_key_parts(&prefix, k2).map(|p| p.0) != Some(second) {
                    break;
                }
                let Some(Ok((_, v2))) = keys.next() else { break };
                entries.extend(chunks::index_entries(&v2));
            }
            entries.retain(|&(t, c)| t >= since && (t, c) < below);
            entries.sort_unstable_by(|a, b| b.cmp(a));
            for (time_us, cursor) in entries {
                let Some(rec) = Self::cached_alert(i, &mut cache, cursor)? else {
                    continue; // removed by retention between index and record
                };
                if let Some(max) = q.max_severity
                    && rec.severity > max
                {
                    continue;
                }
                if q.keep.as_ref().is_some_and(|k| !(k.0)(&rec)) {
                    continue;
                }
                if out.len() == limit {
                    let next = out.last().map(|(c, r)| PageKey { time_us: r.time_us, cursor: *c });
                    return Ok((out, next));
                }
                debug_assert_eq!(rec.time_us, time_us);
                out.push((cursor, rec));
            }
        }
        Ok((out, None))
    }

    /// An alert by cursor, keeping the last few chunks read: `(first
    /// cursor, last cursor, chunk)`.
    fn cached_alert(
        i: &Inner,
        cache: &mut Vec<(u64, u64, sled::IVec)>,
        cursor: u64,
    ) -> Result<Option<RecordRec>, StoreError> {
        let idx = match cache.iter().position(|(first, last, _)| (*first..=*last).contains(&cursor)) {
            Some(h) => h,
            None => {
                let Some((k, v)) = chunks::chunk_holding(&i.alert_chunks, cursor)? else {
                    return Ok(None);
                };
                let last = chunks::last_in("alert_chunks", &k, &v)?;
                if cache.len() == 8 {
                    cache.remove(0);
                }
                cache.push((u64_of(&k), last, v));
                cache.len() - 1
            }
        };
        let (first, _, v) = &cache[idx];
        match chunks::find("alert_chunks", &first.to_be_bytes(), v, cursor)? {
            Some(rec) => Ok(Some(decode("alert_chunks", &cursor.to_be_bytes(), rec)?)),
            None => Ok(None),
        }
    }

    /// A named counter of work done outside the store's own transactions
    /// (e.g. `upstream_alerts`, `upstream_dropped`); 0 when never set.
    pub fn counter_value(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.inner()?.counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Raises counter `name` to `value` (never lowers it).
    pub fn raise_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.update_counter(name, |old| old.max(value))
    }

    /// Adds `delta` to counter `name`.
    pub fn add_to_counter(&self, name: &str, delta: u64) -> Result<(), StoreError> {
        self.update_counter(name, |old| old.saturating_add(delta))
    }

    /// Replaces counter `name` (0 when never set) by `f` of it, atomically.
    fn update_counter(&self, name: &str, f: impl Fn(u64) -> u64) -> Result<(), StoreError> {
        self.inner()?.counters.fetch_and_update(name.as_bytes(), |old| {
            Some(f(old.map(u64_of).unwrap_or(0)).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The highest seq stored (or quarantined) for `agent_id` within
    /// `lo..=hi`: where a downstream collector's feed resumes. Ranges do
    /// not overlap, so the range with the highest start `<= hi` holds it
    /// if any does.
    pub fn highest_seq_between(&self, agent_id: &str, lo: u64, hi: u64) -> Result<Option<u64>, StoreError> {
        if lo > hi {
            return Ok(None);
        }
        let i = self.inner()?;
        let (from, to) = (chunks::range_key(agent_id, 0), chunks::range_key(agent_id, hi));
        match i.seq_ranges.range(from..=to).next_back() {
            Some(kv) => {
                let (_, v) = kv?;
                let last = u64_of(&v);
                Ok((last >= lo).then(|| last.min(hi)))
            }
            None => Ok(None),
        }
    }

    pub fn quarantined(&self) -> Result<Vec<QuarantineRec>, StoreError> {
        self.inner()?
            .quarantine
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode("quarantine", &k, &v)
            })
            .collect()
    }

    /// Bytes on disk of the whole database.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner()?.db.size_on_disk()?)
    }
}

/// How long a flush may take before the caller should log it.
pub const SLOW_FLUSH: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("db")).unwrap();
        s.add_agency(AgencyRec { version: 1, code: "A".into(), name: "a".into(), ..Default::default() })
            .unwrap();
        s.add_agency(AgencyRec { version: 1, code: "B".into(), name: "b".into(), ..Default::default() })
            .unwrap();
        (dir, s)
    }

    #[test]
    fn tokens_are_stored_only_as_hashes() {
        let (_d, s) = store();
        s.add_token(
            "t1",
            TokenRec { version: 1, agency: "A".into(), expires_us: 1_000, ..Default::default() },
        )
        .unwrap();
        let raw: Vec<_> = s.inner().unwrap().tokens.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(raw.len(), 1);
        assert!(raw.iter().all(|k| k.as_slice() != b"t1"));
    }

    #[test]
    fn page_tokens_reject_garbage() {
        for bad in ["", "p1.", "p1.zz.00", "p2.0000000000000000.0000000000000001", "p1.1.2.3"] {
            assert_eq!(PageKey::decode(bad), None, "{bad}");
        }
        let k = PageKey { time_us: -5, cursor: 9 };
        assert_eq!(PageKey::decode(&k.encode()), Some(k));
    }
}
