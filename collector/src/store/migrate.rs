//! Moving a sled database into PostgreSQL (`canhgac-collector migrate`).
//!
//! Every sled tree is copied row by row into the PostgreSQL table that
//! holds the same data (the key tables of both are in the module docs of
//! [`store`](super) and [`store::pg`](super::pg)); the protobuf records
//! (`rec`) are copied byte for byte, so the audit chain and its signed
//! heads still verify. Key columns are decoded from the sled keys (u64 BE
//! ids and cursors, `agent 0x00 seq` of `quarantine`, the correlation
//! keys of `incident_keys` as bytea), the other indexed columns
//! (`records.alert`, `agency`, `time_us`…, `incidents.agency`,
//! `policies.scope`) from the records. Entries that hold several rows are
//! spread out: a record chunk into its records, a sequence range into one
//! `dedupe` row per seq (without a cursor: sled keeps none), an
//! `incident_alerts` entry into one row per alert. The sled time indexes
//! are not copied: PostgreSQL indexes the `records` columns. Last, the
//! counters are set so that the next cursor, incident id, change cursor,
//! audit seq, system id and policy version continue where sled stopped,
//! with the correlator's and the forwarder's positions.
//!
//! # Resuming
//!
//! Each batch is one transaction that inserts the rows (plain `INSERT`:
//! a duplicate would be an error, never silently skipped) and moves that
//! table's progress row in `canhgac_migration_progress` (the sled key of
//! the last row copied, rows copied, done). A migration killed at any
//! point leaves whole batches and a progress that matches them; run again,
//! it continues after the last key of each table. The counters are written
//! in the last transaction, which also marks the migration finished.
//!
//! The tables `canhgac_migration` (one row: the source and whether the copy
//! finished) and `canhgac_migration_progress` are created by the migration
//! itself and are not part of the versioned schema; `serve` only reads
//! them to refuse a database whose migration has not finished.
//!
//! # Refusals
//!
//! A database with data and no migration marker (a non-zero counter or a
//! non-empty table), a database that holds a migration from another sled
//! database, and a database a collector is serving (an unexpired lease)
//! are refused before anything is written. The source must not change
//! between runs: sled's lock keeps a collector off it while a run lasts.

use std::ops::Bound;

use tokio_postgres::{Transaction, types::ToSql};

use super::{
    IncidentRec, PolicyRec, RecordRec, SledStore, StoreError, chunks, decode,
    pg::{PgStore, big, exec, one, opt},
    u64_of,
};

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// sled entries per transaction (a record chunk, a sequence range or
    /// a link entry counts once, whatever rows it makes).
    pub batch: usize,
    /// Test hook: stop (as if killed) after this many batches committed.
    #[doc(hidden)]
    pub stop_after_batches: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options { batch: 1000, stop_after_batches: None }
    }
}

/// Why a migration did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("no sled database at {0} (is it the collector's data directory?)")]
    NoSource(String),
    #[error("the sled database at {0} is in use: stop the collector running on it first")]
    InUse(String),
    #[error(
        "the database at {url} already holds data ({what}) that no migration put there: migrate into an empty database"
    )]
    NotEmpty { url: String, what: String },
    #[error("the database at {url} holds a migration from {other}, not from {this}")]
    OtherSource { url: String, other: String, this: String },
    #[error("a collector is serving the database at {0} (a lease is held): stop it first")]
    Served(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Everything copied, counters set.
    Complete,
    /// Stopped by [`Options::stop_after_batches`].
    Stopped,
}

/// What a run reports as it goes.
#[derive(Debug, Clone)]
pub struct Progress {
    pub table: &'static str,
    /// Rows of this table copied so far (this run and earlier ones).
    pub copied: u64,
    /// Rows of the sled tree.
    pub total: u64,
    /// The table is complete.
    pub done: bool,
    /// The table was started by an earlier run.
    pub resumed: bool,
}

/// One line of the final check: rows (or a counter's value) on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub table: String,
    pub sled: u64,
    pub postgres: u64,
}

impl Count {
    pub fn ok(&self) -> bool {
        self.sled == self.postgres
    }
}

/// Opens the sled database under a collector's data directory for
/// reading: a missing database is an error (never created), a locked one
/// (a collector running on it) says so.
pub fn open_source(data_dir: &std::path::Path) -> Result<SledStore, MigrateError> {
    let path = data_dir.join("db");
    if !path.join("conf").exists() && !path.join("db").exists() {
        return Err(MigrateError::NoSource(path.display().to_string()));
    }
    SledStore::open(&path).map_err(|e| match &e {
        StoreError::Sled(sled::Error::Io(io)) if io.to_string().contains("lock") => {
            MigrateError::InUse(path.display().to_string())
        }
        _ => MigrateError::Store(e),
    })
}

/// Connects to the target (applying the schema migrations), also when an
/// earlier run of the migration left it unfinished.
pub fn open_target(opts: &super::PgOptions) -> Result<PgStore, MigrateError> {
    Ok(PgStore::open_with(opts, false)?)
}

/// Rows read from one sled tree.
type Kv = (sled::IVec, sled::IVec);

/// Rows one sled entry makes.
type RowsOf = fn(&Kv) -> Result<u64, StoreError>;

/// One sled tree and the table it goes to.
struct Table {
    name: &'static str,
    tree: fn(&super::Inner) -> &sled::Tree,
    /// Rows on the PostgreSQL side.
    count: &'static str,
    write: fn(&Transaction<'_>, &[Kv]) -> Result<(), StoreError>,
    /// Rows one sled entry makes (a record chunk: its records; a sequence
    /// range: its seqs); `None`: one.
    rows: Option<RowsOf>,
}

const TABLES: &[Table] = &[
    Table {
        name: "agencies",
        tree: |i| &i.agencies,
        count: "SELECT count(*) FROM agencies",
        write: |tx, kv| text_rec(tx, "agencies", "INSERT INTO agencies (code, rec)", kv),
        rows: None,
    },
    Table {
        name: "agency_stats",
        tree: |i| &i.agency_stats,
        count: "SELECT count(*) FROM agency_stats",
        write: |tx, kv| text_rec(tx, "agency_stats", "INSERT INTO agency_stats (code, rec)", kv),
        rows: None,
    },
    Table {
        name: "tokens",
        tree: |i| &i.tokens,
        count: "SELECT count(*) FROM tokens",
        write: |tx, kv| {
            let (k, v) = split_bytes(kv);
            ins(
                tx,
                "INSERT INTO tokens (hash, rec) SELECT * FROM unnest($1::bytea[], $2::bytea[])",
                &[&k, &v],
            )
        },
        rows: None,
    },
    Table {
        name: "agents",
        tree: |i| &i.agents,
        count: "SELECT count(*) FROM agents",
        write: |tx, kv| text_rec(tx, "agents", "INSERT INTO agents (agent_id, rec)", kv),
        rows: None,
    },
    Table {
        name: "alerts",
        tree: |i| &i.alert_chunks,
        count: "SELECT count(*) FROM records WHERE alert",
        write: |tx, kv| records(tx, "alert_chunks", true, kv),
        rows: Some(|kv| chunk_rows("alert_chunks", kv)),
    },
    Table {
        name: "events",
        tree: |i| &i.event_chunks,
        count: "SELECT count(*) FROM records WHERE NOT alert",
        write: |tx, kv| records(tx, "event_chunks", false, kv),
        rows: Some(|kv| chunk_rows("event_chunks", kv)),
    },
    Table {
        // sled keeps ranges of seqs and no cursor: the rows carry none
        name: "dedupe",
        tree: |i| &i.seq_ranges,
        count: "SELECT count(*) FROM dedupe",
        write: |tx, kv| {
            let (mut agent, mut seq) = (Vec::new(), Vec::new());
            for (k, v) in kv {
                let (a, first) = agent_seq("seq_ranges", k)?;
                let last = big(u64_of(v));
                if last < first {
                    return Err(corrupt("seq_ranges", k, "range ends before it starts"));
                }
                for s in first..=last {
                    agent.push(a.clone());
                    seq.push(s);
                    if seq.len() == 10_000 {
                        dedupe_rows(tx, &mut agent, &mut seq)?;
                    }
                }
            }
            dedupe_rows(tx, &mut agent, &mut seq)
        },
        rows: Some(|(k, v)| {
            let (_, first) = agent_seq("seq_ranges", k)?;
            Ok((big(u64_of(v)) - first + 1).max(0) as u64)
        }),
    },
    Table {
        name: "quarantine",
        tree: |i| &i.quarantine,
        count: "SELECT count(*) FROM quarantine",
        write: |tx, kv| {
            let (mut agent, mut seq, mut rec) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in kv {
                let (a, s) = agent_seq("quarantine", k)?;
                agent.push(a);
                seq.push(s);
                rec.push(v.as_ref());
            }
            ins(
                tx,
                "INSERT INTO quarantine (agent_id, seq, rec)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])",
                &[&agent, &seq, &rec],
            )
        },
        rows: None,
    },
    Table {
        name: "systems",
        tree: |i| &i.systems,
        count: "SELECT count(*) FROM systems",
        write: |tx, kv| id_rec(tx, "INSERT INTO systems (id, rec)", kv),
        rows: None,
    },
    Table {
        name: "operators",
        tree: |i| &i.operators,
        count: "SELECT count(*) FROM operators",
        write: |tx, kv| text_rec(tx, "operators", "INSERT INTO operators (name, rec)", kv),
        rows: None,
    },
    Table {
        name: "audit",
        tree: |i| &i.audit,
        count: "SELECT count(*) FROM audit",
        write: |tx, kv| id_rec(tx, "INSERT INTO audit (seq, rec)", kv),
        rows: None,
    },
    Table {
        name: "audit_checkpoints",
        tree: |i| &i.audit_checkpoints,
        count: "SELECT count(*) FROM audit_checkpoints",
        write: |tx, kv| id_rec(tx, "INSERT INTO audit_checkpoints (seq, rec)", kv),
        rows: None,
    },
    Table {
        name: "incidents",
        tree: |i| &i.incidents,
        count: "SELECT count(*) FROM incidents",
        write: |tx, kv| {
            let (mut id, mut agency, mut rec) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in kv {
                let inc: IncidentRec = decode("incidents", k, v)?;
                id.push(big(u64_of(k)));
                agency.push(inc.agency);
                rec.push(v.as_ref());
            }
            ins(
                tx,
                "INSERT INTO incidents (id, agency, rec)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
                &[&id, &agency, &rec],
            )
        },
        rows: None,
    },
    Table {
        name: "incident_keys",
        tree: |i| &i.incident_keys,
        count: "SELECT count(*) FROM incident_keys",
        write: |tx, kv| {
            let key: Vec<&[u8]> = kv.iter().map(|(k, _)| k.as_ref()).collect();
            let id: Vec<i64> = kv.iter().map(|(_, v)| big(u64_of(v))).collect();
            ins(
                tx,
                "INSERT INTO incident_keys (key, id) SELECT * FROM unnest($1::bytea[], $2::bigint[])",
                &[&key, &id],
            )
        },
        rows: None,
    },
    Table {
        name: "incident_alerts",
        tree: |i| &i.incident_alerts,
        count: "SELECT count(*) FROM incident_alerts",
        write: |tx, kv| {
            let (mut id, mut cursor) = (Vec::new(), Vec::new());
            for (k, v) in kv {
                if k.len() != 16 {
                    return Err(corrupt("incident_alerts", k, "key is not (id, cursor)"));
                }
                for c in super::incidents::link_cursors(k, v) {
                    id.push(big(u64_of(&k[..8])));
                    cursor.push(big(c));
                }
            }
            ins(
                tx,
                "INSERT INTO incident_alerts (id, cursor) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
                &[&id, &cursor],
            )
        },
        rows: Some(|(k, v)| Ok(super::incidents::link_cursors(k, v).count() as u64)),
    },
    Table {
        name: "incident_changes",
        tree: |i| &i.incident_changes,
        count: "SELECT count(*) FROM incident_changes",
        write: |tx, kv| id_rec(tx, "INSERT INTO incident_changes (cursor, rec)", kv),
        rows: None,
    },
    Table {
        name: "policies",
        tree: |i| &i.policies,
        count: "SELECT count(*) FROM policies",
        write: |tx, kv| {
            let (mut version, mut scope, mut rec) = (Vec::new(), Vec::new(), Vec::new());
            for (k, v) in kv {
                let p: PolicyRec = decode("policies", k, v)?;
                version.push(big(u64_of(k)));
                scope.push(p.scope);
                rec.push(v.as_ref());
            }
            ins(
                tx,
                "INSERT INTO policies (version, scope, rec)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
                &[&version, &scope, &rec],
            )
        },
        rows: None,
    },
    Table {
        name: "forward_queue",
        tree: |i| &i.forward_queue,
        count: "SELECT count(*) FROM forward_queue",
        write: |tx, kv| id_rec(tx, "INSERT INTO forward_queue (seq, msg)", kv),
        rows: None,
    },
];

/// Counters of the PostgreSQL schema and the sled counters they come from.
/// `operators` is only a lock row on PostgreSQL (always 0).
const SLED_COUNTERS: &[&str] = &[
    "incident",
    "system",
    "policy",
    "correlated",
    "correlation_skipped",
    "mirrored",
    "upstream_alerts",
    "upstream_dropped",
    "upstream_changes",
    "upstream_summaries",
    "fwd_seq",
    "fwd_bytes",
    "fwd_sent",
    "fwd_dropped",
];

fn corrupt(tree: &'static str, key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt { tree, key: String::from_utf8_lossy(key).into_owned(), reason: reason.into() }
}

fn ins(tx: &Transaction<'_>, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
    exec(tx, sql, p).map(|_| ())
}

/// Rows the sled tree of `t` makes.
fn sled_rows(t: &Table, tree: &sled::Tree) -> Result<u64, StoreError> {
    match t.rows {
        Some(rows) => tree.iter().map(|kv| rows(&kv.map_err(StoreError::from)?)).sum(),
        None => Ok(tree.len() as u64),
    }
}

/// Records in a chunk.
fn chunk_rows(tree: &'static str, (k, v): &Kv) -> Result<u64, StoreError> {
    let mut n = 0;
    for e in chunks::entries(tree, k, v) {
        e?;
        n += 1;
    }
    Ok(n)
}

/// Rows of `dedupe` without a cursor; empties the vectors.
fn dedupe_rows(tx: &Transaction<'_>, agent: &mut Vec<String>, seq: &mut Vec<i64>) -> Result<(), StoreError> {
    if seq.is_empty() {
        return Ok(());
    }
    ins(
        tx,
        "INSERT INTO dedupe (agent_id, seq, cursor) SELECT a, s, NULL FROM unnest($1::text[], $2::bigint[]) AS u(a, s)",
        &[&*agent, &*seq],
    )?;
    agent.clear();
    seq.clear();
    Ok(())
}

fn utf8(tree: &'static str, k: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(k.to_vec()).map_err(|_| corrupt(tree, k, "key is not UTF-8"))
}

fn split_bytes(kv: &[Kv]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    kv.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).unzip()
}

/// Text key and record: `INSERT INTO t (key, rec)` + the unnest.
fn text_rec(tx: &Transaction<'_>, tree: &'static str, insert: &str, kv: &[Kv]) -> Result<(), StoreError> {
    let keys = kv.iter().map(|(k, _)| utf8(tree, k)).collect::<Result<Vec<_>, _>>()?;
    let recs: Vec<&[u8]> = kv.iter().map(|(_, v)| v.as_ref()).collect();
    ins(tx, &format!("{insert} SELECT * FROM unnest($1::text[], $2::bytea[])"), &[&keys, &recs])
}

/// u64 BE key and record.
fn id_rec(tx: &Transaction<'_>, insert: &str, kv: &[Kv]) -> Result<(), StoreError> {
    let keys: Vec<i64> = kv.iter().map(|(k, _)| big(u64_of(k))).collect();
    let recs: Vec<&[u8]> = kv.iter().map(|(_, v)| v.as_ref()).collect();
    ins(tx, &format!("{insert} SELECT * FROM unnest($1::bigint[], $2::bytea[])"), &[&keys, &recs])
}

/// `agent id, 0x00, seq (u64 BE)`.
fn agent_seq(tree: &'static str, k: &[u8]) -> Result<(String, i64), StoreError> {
    if k.len() < 9 || k[k.len() - 9] != 0 {
        return Err(corrupt(tree, k, "key is not (agent, 0x00, seq)"));
    }
    let (agent, seq) = k.split_at(k.len() - 9);
    Ok((utf8(tree, agent)?, big(u64_of(&seq[1..]))))
}

fn records(tx: &Transaction<'_>, tree: &'static str, alert: bool, kv: &[Kv]) -> Result<(), StoreError> {
    let (mut cursor, mut agency, mut agent, mut seq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut severity, mut time, mut received, mut rec) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, v) in kv {
        for e in chunks::entries(tree, k, v) {
            let (c, bytes) = e?;
            let r: RecordRec = decode(tree, &c.to_be_bytes(), bytes)?;
            cursor.push(big(c));
            agency.push(r.agency);
            agent.push(r.agent_id);
            seq.push(big(r.seq));
            severity.push(i32::try_from(r.severity).unwrap_or(i32::MAX));
            time.push(r.time_us);
            received.push(r.received_us);
            rec.push(bytes);
        }
    }
    let n = cursor.len();
    let alerts = vec![alert; n];
    ins(
        tx,
        "INSERT INTO records (cursor, alert, agency, agent_id, seq, severity, time_us, received_us, rec)
         SELECT * FROM unnest($1::bigint[], $2::boolean[], $3::text[], $4::text[], $5::bigint[],
                              $6::integer[], $7::bigint[], $8::bigint[], $9::bytea[])",
        &[&cursor, &alerts, &agency, &agent, &seq, &severity, &time, &received, &rec],
    )
}

/// The counter values PostgreSQL must hold after the copy, from sled, and
/// the forwarder's positions.
type Counters = (Vec<(&'static str, u64)>, Option<(u64, u64)>);

fn sled_counters(i: &super::Inner) -> Result<Counters, StoreError> {
    let last =
        |t: &sled::Tree| -> Result<u64, StoreError> { Ok(t.last()?.map(|(k, _)| u64_of(&k)).unwrap_or(0)) };
    let mut out = vec![
        (
            "record",
            chunks::last_cursor("alert_chunks", &i.alert_chunks)?
                .max(chunks::last_cursor("event_chunks", &i.event_chunks)?),
        ),
        ("change", last(&i.incident_changes)?),
        ("audit", last(&i.audit)?),
    ];
    let known = |name: &str| SLED_COUNTERS.contains(&name) || name == "fwd_alert" || name == "fwd_change";
    for kv in i.counters.iter() {
        let (k, _) = kv?;
        let name = String::from_utf8_lossy(&k);
        if !known(&name) {
            return Err(StoreError::Conflict(format!(
                "sled counter `{name}` has no place in PostgreSQL: this migration is older than the database"
            )));
        }
    }
    for name in SLED_COUNTERS {
        out.push((name, i.counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0)));
    }
    let positions = match i.counters.get(b"fwd_alert")? {
        Some(a) => Some((u64_of(&a), i.counters.get(b"fwd_change")?.map(|v| u64_of(&v)).unwrap_or(0))),
        None => None,
    };
    Ok((out, positions))
}

const SETUP: &str = "
CREATE TABLE IF NOT EXISTS canhgac_migration (
    id integer PRIMARY KEY CHECK (id = 1),
    source text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS canhgac_migration_progress (
    tbl text COLLATE \"C\" PRIMARY KEY,
    last_key bytea,
    rows bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false
);";

/// Tables a database without a migration marker must have empty.
const DATA_TABLES: &[&str] = &[
    "agencies",
    "agency_stats",
    "tokens",
    "agents",
    "records",
    "dedupe",
    "quarantine",
    "systems",
    "operators",
    "audit",
    "audit_checkpoints",
    "incidents",
    "incident_keys",
    "incident_alerts",
    "incident_changes",
    "policies",
    "forward_queue",
    "forward_positions",
];

/// Checks the target and records (or finds) the marker of this migration.
/// Returns whether the migration had already finished.
fn start(dst: &PgStore, source: &str) -> Result<bool, MigrateError> {
    let url = dst.url().to_string();
    dst.tx(|tx| {
        futures_executor::block_on(tx.batch_execute(SETUP)).map_err(super::pg::db)?;
        let live = one(tx, "SELECT count(*) FROM leases WHERE expires_at > now()", &[])?.get::<_, i64>(0);
        if live > 0 {
            return Err(MigrateError::Served(url.clone()));
        }
        if let Some(r) =
            opt(tx, "SELECT source, finished_at IS NOT NULL FROM canhgac_migration WHERE id = 1", &[])?
        {
            let other: String = r.get(0);
            if other != source {
                return Err(MigrateError::OtherSource { url: url.clone(), other, this: source.to_string() });
            }
            return Ok(r.get::<_, bool>(1));
        }
        if let Some(r) =
            opt(tx, "SELECT name, value FROM counters WHERE value <> 0 ORDER BY name LIMIT 1", &[])?
        {
            let (name, value): (String, i64) = (r.get(0), r.get(1));
            return Err(MigrateError::NotEmpty {
                url: url.clone(),
                what: format!("counter `{name}` = {value}"),
            });
        }
        for t in DATA_TABLES {
            if one(tx, &format!("SELECT EXISTS (SELECT 1 FROM {t})"), &[])?.get::<_, bool>(0) {
                return Err(MigrateError::NotEmpty {
                    url: url.clone(),
                    what: format!("table `{t}` is not empty"),
                });
            }
        }
        exec(tx, "INSERT INTO canhgac_migration (id, source) VALUES (1, $1)", &[&source])?;
        Ok(false)
    })
}

/// Copies everything `src` holds into `dst` (see the module doc), or
/// continues a copy an earlier run began. `source` names the sled database
/// (its path): a database holding a migration from another source is
/// refused. Already finished: nothing is written.
pub fn run(
    src: &SledStore,
    dst: &PgStore,
    source: &str,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Finished, MigrateError> {
    let batch = opts.batch.max(1);
    let finished = start(dst, source)?;
    let inner = src.inner()?;
    let mut batches = 0u64;
    for t in TABLES {
        let tree = (t.tree)(&inner);
        let total = sled_rows(t, tree)?;
        let (mut last, mut copied, done) = dst.read(|c| {
            Ok(
                match opt(
                    c,
                    "SELECT last_key, rows, done FROM canhgac_migration_progress WHERE tbl = $1",
                    &[&t.name],
                )? {
                    Some(r) => {
                        (r.get::<_, Option<Vec<u8>>>(0), r.get::<_, i64>(1) as u64, r.get::<_, bool>(2))
                    }
                    None => (None, 0, false),
                },
            )
        })?;
        let resumed = copied > 0 || done;
        if done || finished {
            progress(&Progress { table: t.name, copied, total, done: true, resumed });
            continue;
        }
        loop {
            if opts.stop_after_batches.is_some_and(|n| batches >= n) {
                return Ok(Finished::Stopped);
            }
            let lower = match &last {
                Some(k) => Bound::Excluded(k.as_slice()),
                None => Bound::Unbounded,
            };
            let kv = tree
                .range::<&[u8], _>((lower, Bound::Unbounded))
                .take(batch)
                .collect::<Result<Vec<Kv>, _>>()
                .map_err(StoreError::from)?;
            let end = kv.len() < batch;
            let key = kv.last().map(|(k, _)| k.to_vec()).or(last.clone());
            let n = match t.rows {
                Some(rows) => kv.iter().map(rows).sum::<Result<u64, _>>()?,
                None => kv.len() as u64,
            };
            dst.tx(|tx| {
                if !kv.is_empty() {
                    (t.write)(tx, &kv)?;
                }
                // moves only from the progress this run read: a concurrent
                // run on the same database fails here instead of copying twice
                let moved = exec(
                    tx,
                    "INSERT INTO canhgac_migration_progress (tbl, last_key, rows, done) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tbl) DO UPDATE SET last_key = excluded.last_key, rows = excluded.rows,
                         done = excluded.done
                     WHERE canhgac_migration_progress.rows = $5",
                    &[&t.name, &key, &big(copied + n), &end, &big(copied)],
                )?;
                if moved != 1 {
                    return Err(StoreError::Conflict(format!(
                        "another migration is copying `{}` into this database",
                        t.name
                    )));
                }
                Ok::<_, StoreError>(())
            })?;
            batches += 1;
            copied += n;
            last = key;
            progress(&Progress { table: t.name, copied, total, done: end, resumed });
            if end {
                break;
            }
        }
    }
    if !finished {
        if opts.stop_after_batches.is_some_and(|n| batches >= n) {
            return Ok(Finished::Stopped);
        }
        let (counters, positions) = sled_counters(&inner)?;
        dst.tx(|tx| {
            for (name, value) in &counters {
                exec(
                    tx,
                    "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[name, &big(*value)],
                )?;
            }
            if let Some((alert, change)) = positions {
                exec(
                    tx,
                    "INSERT INTO forward_positions (id, alert, change) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET alert = excluded.alert, change = excluded.change",
                    &[&big(alert), &big(change)],
                )?;
            }
            exec(tx, "UPDATE canhgac_migration SET finished_at = now() WHERE id = 1", &[])?;
            Ok::<_, StoreError>(())
        })?;
    }
    Ok(Finished::Complete)
}

/// Rows of every sled tree against the rows of its PostgreSQL table, then
/// every counter and the forwarder's positions.
pub fn check(src: &SledStore, dst: &PgStore) -> Result<Vec<Count>, StoreError> {
    let inner = src.inner()?;
    let mut out = Vec::new();
    dst.read(|c| {
        for t in TABLES {
            let pg = one(c, t.count, &[])?.get::<_, i64>(0) as u64;
            out.push(Count {
                table: t.name.to_string(),
                sled: sled_rows(t, (t.tree)(&inner))?,
                postgres: pg,
            });
        }
        let (counters, positions) = sled_counters(&inner)?;
        for (name, value) in counters {
            out.push(Count {
                table: format!("counter {name}"),
                sled: value,
                postgres: super::pg::counter(c, name)?,
            });
        }
        let pg = opt(c, "SELECT alert, change FROM forward_positions WHERE id = 1", &[])?
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64));
        let (s, p) = (positions.unwrap_or_default(), pg.unwrap_or_default());
        out.push(Count { table: "forward position alert".into(), sled: s.0, postgres: p.0 });
        out.push(Count { table: "forward position change".into(), sled: s.1, postgres: p.1 });
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests;
