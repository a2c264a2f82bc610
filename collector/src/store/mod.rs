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
//! | `meta`             | `b"schema"`                                      | u32 BE (1)     |
//! | `meta`             | `b"probe"` (the write probe of the storage watch)| one byte       |
//! | `agencies`         | agency code (UTF-8, never contains 0x00)         | [`AgencyRec`]  |
//! | `tokens`           | SHA-256 of the token (32 bytes)                  | [`TokenRec`]   |
//! | `agents`           | agent id (UTF-8)                                 | [`AgentRec`]   |
//! | `alerts`           | cursor (u64 BE)                                  | [`RecordRec`]  |
//! | `events`           | cursor (u64 BE)                                  | [`RecordRec`]  |
//! | `dedupe`           | agent id, 0x00, seq (u64 BE)                     | cursor (u64 BE), `u64::MAX` if quarantined |
//! | `alerts_by_time`   | time (sortable i64 BE), cursor                   | empty          |
//! | `alerts_by_agency` | agency code, 0x00, time (sortable i64 BE), cursor| empty          |
//! | `quarantine`       | agent id, 0x00, seq (u64 BE)                     | [`QuarantineRec`] |
//! | `agency_stats`     | agency code                                      | [`AgencyStatsRec`] |
//! | `systems`          | system id (u64 BE)                               | [`SystemRec`]  |
//! | `operators`        | operator name                                    | [`OperatorRec`] |
//! | `audit`            | seq (u64 BE), from 1                             | [`AuditRec`]   |
//! | `audit_checkpoints`| audit seq (u64 BE)                               | [`AuditCheckpointRec`] |
//! | `incidents`        | incident id (u64 BE)                             | [`IncidentRec`] |
//! | `incident_keys`    | correlation key (agency 0x00 system 0x00 category 0x00 attacker) | incident id (u64 BE) |
//! | `incident_alerts`  | incident id (u64 BE), alert cursor (u64 BE)      | empty          |
//! | `incident_changes` | change cursor (u64 BE)                           | [`IncidentChangeRec`] |
//! | `policies`         | policy version (u64 BE)                          | [`PolicyRec`]  |
//! | `counters`         | `system`, `incident`, `policy`, `correlated`, `fwd_*` | u64 BE: last id used / last alert cursor correlated / forwarder positions and totals |
//! | `forward_queue`    | seq (u64 BE)                                     | one formatted message for the forwarder |
//!
//! Cursors are assigned under one lock in commit order, so a reader that
//! has seen cursor `c` has seen every record with a smaller cursor: the
//! alert subscription resumes from a cursor without gaps.
//!
//! Ingest is one sled transaction per batch over `alerts`, `events`,
//! `dedupe`, both indexes, `quarantine` and `agents`; a batch is stored
//! whole or not at all, and each (agent, seq) at most once. Callers flush
//! ([`Store::flush`]) before acknowledging.

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
    ops::Bound,
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
mod forward;
mod incidents;
mod policy;
mod registry;
mod retention;
mod txn;
pub use forward::ForwardStats;
pub use incidents::{CorrelationInput, IncidentFilter, IncidentPage};

const SCHEMA_VERSION: u32 = 1;
const QUARANTINED: u64 = u64::MAX;

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
    alerts: sled::Tree,
    events: sled::Tree,
    dedupe: sled::Tree,
    by_time: sled::Tree,
    by_agency: sled::Tree,
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
            }
            None => {
                db.insert(b"schema", &SCHEMA_VERSION.to_be_bytes())?;
            }
        }
        let alerts = db.open_tree("alerts")?;
        let events = db.open_tree("events")?;
        let last = |t: &sled::Tree| -> Result<u64, StoreError> {
            Ok(t.last()?.map(|(k, _)| u64_of(&k)).unwrap_or(0))
        };
        let last_alert = last(&alerts)?;
        let next_cursor = last_alert.max(last(&events)?) + 1;
        let incident_changes = db.open_tree("incident_changes")?;
        let last_change = last(&incident_changes)?;
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
            dedupe: db.open_tree("dedupe")?,
            by_time: db.open_tree("alerts_by_time")?,
            by_agency: db.open_tree("alerts_by_agency")?,
            quarantine: db.open_tree("quarantine")?,
            alerts,
            events,
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
    pub fn ingest(
        &self,
        agent_id: &str,
        agency: &str,
        received_us: i64,
        batch: &[Incoming],
    ) -> Result<IngestOutcome, StoreError> {
        let i = &self.inner()?;
        let mut next = i.next_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let agency_prefix = agency_prefix(agency);
        let res = (
            &i.alerts,
            &i.events,
            &i.dedupe,
            &i.by_time,
            &i.by_agency,
            &i.quarantine,
            &i.agents,
            &i.agency_stats,
        )
            .transaction(
                |(alerts, events, dedupe, by_time, by_agency, quarantine, agents, agency_stats)| {
                    let mut cursor = *next;
                    let mut out = IngestOutcome::default();
                    let mut stats: AgencyStatsRec = match agency_stats.get(agency.as_bytes())? {
                        Some(v) => decode("agency_stats", agency.as_bytes(), &v)
                            .map_err(ConflictableTransactionError::Abort)?,
                        None => AgencyStatsRec { version: records::RECORD_VERSION, ..Default::default() },
                    };
                    let mut last_alert = None;
                    let mut agent = match agents.get(agent_id.as_bytes())? {
                        Some(v) => Some(
                            decode::<AgentRec>("agents", agent_id.as_bytes(), &v)
                                .map_err(ConflictableTransactionError::Abort)?,
                        ),
                        None => None,
                    };
                    // Every (agent, seq) stored so far is at most the agent's
                    // `highest_seq` (both written in this transaction), so a
                    // higher seq needs no lookup.
                    let mut highest = agent.as_ref().map_or(0, |a| a.highest_seq);
                    for rec in batch {
                        let dk = dedupe_key(agent_id, rec.seq());
                        let fresh = agent.is_some() && rec.seq() > highest;
                        highest = highest.max(rec.seq());
                        if !fresh && dedupe.get(&dk)?.is_some() {
                            out.duplicates += 1;
                            continue;
                        }
                        match rec {
                            Incoming::Valid { alert, time_us, .. } => {
                                let value = rec
                                    .record(agent_id, agency, received_us)
                                    .map(|r| r.encode_to_vec())
                                    .unwrap_or_default();
                                let ck = cursor.to_be_bytes();
                                if *alert {
                                    stats.alerts += 1;
                                    stats.alert_bytes += value.len() as u64;
                                } else {
                                    stats.events += 1;
                                    stats.event_bytes += value.len() as u64;
                                }
                                if *alert {
                                    alerts.insert(&ck, value)?;
                                    by_time.insert(time_key(&[], *time_us, cursor), &[])?;
                                    by_agency.insert(time_key(&agency_prefix, *time_us, cursor), &[])?;
                                    last_alert = Some(cursor);
                                } else {
                                    events.insert(&ck, value)?;
                                }
                                dedupe.insert(dk, &ck)?;
                                cursor += 1;
                                out.stored += 1;
                            }
                            Incoming::Invalid { seq, reason, raw } => {
                                let value = QuarantineRec {
                                    version: records::RECORD_VERSION,
                                    agent_id: agent_id.to_string(),
                                    seq: *seq,
                                    received_us,
                                    reason: reason.clone(),
                                    raw: raw.clone(),
                                };
                                quarantine.insert(dk.clone(), value.encode_to_vec())?;
                                dedupe.insert(dk, &QUARANTINED.to_be_bytes())?;
                                out.invalid += 1;
                            }
                        }
                    }
                    if let Some(a) = agent.as_mut() {
                        a.records_stored += u64::from(out.stored);
                        a.records_duplicate += u64::from(out.duplicates);
                        a.records_invalid += u64::from(out.invalid);
                        a.highest_seq = a.highest_seq.max(highest);
                        agents.insert(agent_id.as_bytes(), a.encode_to_vec())?;
                    }
                    if out.stored > 0 {
                        agency_stats.insert(agency.as_bytes(), stats.encode_to_vec())?;
                    }
                    Ok((cursor, out, last_alert))
                },
            );
        match res {
            Ok((cursor, out, last_alert)) => {
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
        let start = after.saturating_add(1).to_be_bytes();
        self.inner()?
            .alerts
            .range(start..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_of(&k), decode("alerts", &k, &v)?))
            })
            .collect()
    }

    /// Events (non-alert records) with a cursor greater than `after`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, RecordRec)>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.inner()?
            .events
            .range(start..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_of(&k), decode("events", &k, &v)?))
            })
            .collect()
    }

    /// Alerts newest event time first, filtered, one page.
    pub fn list_alerts(&self, q: &AlertQuery) -> Result<AlertPage, StoreError> {
        let i = &self.inner()?;
        let (tree, prefix) = match &q.agency {
            Some(a) => (&i.by_agency, agency_prefix(a)),
            None => (&i.by_time, Vec::new()),
        };
        let lower = time_key(&prefix, q.since_us.unwrap_or(i64::MIN), 0);
        let mut upper = match q.until_us {
            Some(u) => time_key(&prefix, u, 0),
            None => {
                let mut k = prefix.clone();
                k.extend_from_slice(&[0xff; 17]);
                k
            }
        };
        if let Some(after) = q.after {
            let page = time_key(&prefix, after.time_us, after.cursor);
            if page < upper {
                upper = page;
            }
        }
        let limit = q.limit.max(1);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut next = None;
        for kv in tree.range((Bound::Included(lower), Bound::Excluded(upper))).rev() {
            let (k, _) = kv?;
            if k.len() < prefix.len() + 16 {
                continue;
            }
            let tail = &k[prefix.len()..];
            let cursor = u64_of(&tail[8..16]);
            let Some(v) = i.alerts.get(cursor.to_be_bytes())? else {
                continue; // removed by retention between index and record
            };
            let rec: RecordRec = decode("alerts", &cursor.to_be_bytes(), &v)?;
            if let Some(max) = q.max_severity
                && rec.severity > max
            {
                continue;
            }
            if q.keep.as_ref().is_some_and(|k| !(k.0)(&rec)) {
                continue;
            }
            if out.len() == limit {
                next = out.last().map(|(c, r): &(u64, RecordRec)| PageKey { time_us: r.time_us, cursor: *c });
                break;
            }
            out.push((cursor, rec));
        }
        Ok((out, next))
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
    /// `lo..=hi`: where a downstream collector's feed resumes.
    pub fn highest_seq_between(&self, agent_id: &str, lo: u64, hi: u64) -> Result<Option<u64>, StoreError> {
        let i = self.inner()?;
        let (from, to) = (dedupe_key(agent_id, lo), dedupe_key(agent_id, hi));
        match i.dedupe.range(from..=to).next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                Ok(Some(u64_of(&k[k.len() - 8..])))
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
