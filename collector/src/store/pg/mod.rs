//! PostgreSQL backend of the collector store, for several collectors on one
//! database. It keeps the guarantees listed in `store/api.rs` and passes the
//! same conformance suite as sled.
//!
//! # Schema
//!
//! Migrations are embedded (`migrations/NNNN_*.sql`), versioned and forward
//! only; [`PgStore::open`] applies the missing ones in one transaction under
//! an advisory lock (replicas starting together apply them once) and refuses
//! a database whose version is newer than this binary knows
//! ([`StoreError::Schema`]). The applied versions are rows of
//! `canhgac_schema`.
//!
//! Domain records are stored as their protobuf encoding (`rec bytea`, the
//! same [`records`](super::records) types as sled, so the golden files hold
//! for both) next to the columns the queries need:
//!
//! | table              | key                 | indexed columns besides the key |
//! |--------------------|---------------------|---------------------------------|
//! | `records`          | cursor              | `alert`, `agency`, `time_us` (alerts by time and by agency, alerts and events by cursor) |
//! | `dedupe`           | (agent_id, seq)     | cursor (NULL: quarantined, or migrated from sled, which keeps no cursor; never read) |
//! | `quarantine`       | (agent_id, seq)     |                                 |
//! | `agencies`, `agency_stats` | code        |                                 |
//! | `tokens`           | SHA-256 of the token|                                 |
//! | `agents`           | agent id            |                                 |
//! | `systems`          | id                  |                                 |
//! | `operators`        | name                |                                 |
//! | `audit`, `audit_checkpoints` | seq       |                                 |
//! | `incidents`        | id                  | `agency`                        |
//! | `incident_keys`    | key (bytea: keys hold 0x00) | incident id             |
//! | `incident_alerts`  | (incident id, alert cursor) |                         |
//! | `incident_changes` | change cursor       |                                 |
//! | `policies`         | version             | `scope`                         |
//! | `forward_queue`    | seq                 |                                 |
//! | `forward_positions`| the single row `id = 1` | enqueuer's alert and change positions |
//! | `counters`         | name                | last value used                 |
//! | `leases`           | task name           | holder, expiry (database clock) |
//!
//! Unsigned ids and cursors are stored as `bigint` (two's complement: every
//! value in use is far below 2^63). Text keys use the `C` collation, so
//! listings come in byte order as with sled.
//!
//! # Commit order of cursors
//!
//! A `bigserial` hands out numbers in call order, not commit order: two
//! concurrent transactions may commit cursor 8 before cursor 7, and a reader
//! that saw 8 would never look back for 7. Here every transaction that
//! assigns record cursors first locks the `counters` row `record`
//! (`SELECT … FOR UPDATE`), reads the last cursor, writes its records and
//! the new value, and commits; the row lock is held until the commit, so
//! cursor-assigning transactions run one after another and commit in cursor
//! order, on one collector or several. PostgreSQL makes a commit visible
//! before it releases the transaction's locks, so when the next writer gets
//! the row, every smaller cursor is visible to every new snapshot: a reader
//! that saw cursor `c` has seen every smaller one. The incident change feed
//! (row `change`: every incident-writing transaction, correlator included),
//! the audit chain (row `audit`), the forward queue (row `fwd_seq`) and
//! operator revocations (row `operators`) are serialised the same way.
//! Lock order, to stay free of deadlocks: a counter row first, then agent
//! and statistics rows.
//!
//! # Calling from sync and async code
//!
//! The store API is synchronous and called from async tasks as well as
//! blocking threads (sled blocks the caller the same way). The sync
//! `postgres` crate runs a runtime of its own per call, which panics inside
//! a tokio worker; so the store drives `tokio-postgres` connections on a
//! small runtime it owns (one thread) and the calling thread waits for each
//! round trip with `futures_executor::block_on` (the client's futures only
//! talk to the connection task over channels, so they need no reactor on
//! the calling thread). A pool of a few connections, replaced when closed.
//! Called on a worker of a multi-thread runtime, each operation waits
//! inside `block_in_place`, so that the worker's other tasks go on
//! elsewhere meanwhile (see `waiting`).
//!
//! # Watches
//!
//! `alert_cursor()` and `incident_change_cursor()` move at once after this
//! process's commits, and after other collectors' commits on the same
//! database through `LISTEN canhgac_cursors`: every transaction that
//! commits alerts or incident changes sends `pg_notify` (delivered at its
//! commit, in commit order) with its highest cursor. A connection of its
//! own listens and, after each (re)connection, reads the committed cursors,
//! so a notification missed while it was away is not a missed wake-up.

mod audit;
mod incidents;
mod leases;
mod records;
mod registry;
#[doc(hidden)]
pub mod testcluster;

use std::{
    str::FromStr as _,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use futures_executor::block_on;
use tokio::sync::watch;
use tokio_postgres::{
    Client, Config, NoTls, Row, Socket, Transaction,
    config::{Host, SslMode},
    tls::{MakeTlsConnect, TlsConnect},
    types::ToSql,
};

use super::StoreError;

/// Migrations, in order; the version of each is its position from 1.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_leases.sql"),
    include_str!("migrations/0003_federation.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Key of the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6361_6e68_6761_6301;

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB[?…]` or a key/value string.
    pub url: String,
    /// Used when the URL carries no password.
    pub password: Option<String>,
    /// TLS to the database: trust these CA certificates (PEM). With it,
    /// TLS is required unless the URL says `sslmode=disable`.
    pub ca_pem: Option<Vec<u8>>,
    /// Most connections kept open.
    pub max_connections: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.ca_pem.is_some())
            .finish()
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions { url: url.into(), password: None, ca_pem: None, max_connections: 8 }
    }
}

/// The URL as it may be shown: without a password.
pub fn redact_url(url: &str) -> String {
    match Config::from_str(url) {
        Ok(c) => describe(&c),
        Err(_) => match url.split_once("://") {
            // not parsable: keep the scheme and the part after the last `@`
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://…@{host}"),
                None => format!("{scheme}://{rest}"),
            },
            None => "<unparsable database URL>".into(),
        },
    }
}

/// `postgres://USER@HOST:PORT/DB` of a parsed configuration (no password).
fn describe(c: &Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let port = c.get_ports().get(n).or(c.get_ports().first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        c.get_dbname().unwrap_or(c.get_user().unwrap_or(""))
    )
}

/// A database error as text (the server's message when there is one).
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{}: {}", d.code().code(), d.message())),
        None => StoreError::Database(e.to_string()),
    }
}

/// A collector store on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Highest alert cursor committed: moved by this process's commits at
    /// once, by other collectors' through `LISTEN`.
    alert_cursor: Arc<watch::Sender<u64>>,
    /// Highest incident change cursor committed (likewise).
    change_cursor: Arc<watch::Sender<u64>>,
}

impl PgStore {
    /// Connects, applies the missing migrations and reads the committed
    /// cursors. A database that cannot be reached is an error naming the URL
    /// without its password.
    /// A database a `canhgac-collector migrate` has begun but not finished
    /// filling is refused.
    pub fn open(opts: &PgOptions) -> Result<PgStore, StoreError> {
        Self::open_with(opts, true)
    }

    /// [`PgStore::open`], also on a database a migration from sled is
    /// still filling when `!refuse_unfinished` (for the migration).
    pub(in crate::store) fn open_with(
        opts: &PgOptions,
        refuse_unfinished: bool,
    ) -> Result<PgStore, StoreError> {
        let pool = Pool::new(opts)?;
        {
            let mut conn = pool.get()?;
            migrate(conn.client())?;
            if refuse_unfinished {
                refuse_unfinished_copy(conn.client())?;
            }
        }
        let store = PgStore {
            inner: Arc::new(Inner {
                pool,
                alert_cursor: Arc::new(watch::Sender::new(0)),
                change_cursor: Arc::new(watch::Sender::new(0)),
            }),
        };
        let p = &store.inner.pool;
        p.handle.spawn(listen(
            p.config.clone(),
            p.tls.clone(),
            store.inner.alert_cursor.clone(),
            store.inner.change_cursor.clone(),
        ));
        let (alerts, changes) = store.read(|c| {
            let a = one(c, "SELECT coalesce(max(cursor), 0) FROM records WHERE alert", &[])?;
            let b = one(c, "SELECT coalesce(max(cursor), 0) FROM incident_changes", &[])?;
            Ok((a.get::<_, i64>(0) as u64, b.get::<_, i64>(0) as u64))
        })?;
        raise(&store.inner.alert_cursor, alerts);
        raise(&store.inner.change_cursor, changes);
        Ok(store)
    }

    /// The database URL without its password.
    pub fn url(&self) -> &str {
        &self.inner.pool.url
    }

    /// Runs `f` on a pooled connection, outside a transaction.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        waiting(|| {
            let mut conn = self.inner.pool.get()?;
            f(conn.client())
        })
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled
    /// back otherwise.
    pub(super) fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        waiting(|| {
            let mut conn = self.inner.pool.get()?;
            let tx = block_on(conn.client().transaction()).map_err(db)?;
            let out = f(&tx)?;
            block_on(tx.commit()).map_err(db)?;
            Ok(out)
        })
    }

    fn raise_alert_cursor(&self, c: u64) {
        raise(&self.inner.alert_cursor, c);
    }

    fn raise_change_cursor(&self, c: u64) {
        raise(&self.inner.change_cursor, c);
    }

    /// Commits are durable when they return (`synchronous_commit`).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the database takes writes now (reachable, not a standby).
    pub fn probe_write(&self) -> Result<(), StoreError> {
        self.read(|c| {
            let r = one(c, "SELECT pg_is_in_recovery()", &[])?;
            if r.get::<_, bool>(0) {
                return Err(StoreError::Database("the database is a read-only standby".into()));
            }
            Ok(())
        })
    }

    /// Connections are replaced as they break: healthy unless unreachable.
    pub fn recover(&self) -> Result<bool, StoreError> {
        self.probe_write().map(|_| false)
    }

    /// Times a broken connection was replaced.
    pub fn reopened(&self) -> u64 {
        self.inner.pool.replaced.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.read(|c| Ok(one(c, "SELECT pg_database_size(current_database())", &[])?.get::<_, i64>(0) as u64))
    }
}

/// The channel commits are announced on: `a<cursor>` after records with
/// alerts, `c<cursor>` after incident changes. PostgreSQL delivers a
/// notification only when its transaction commits, in commit order.
const CHANNEL: &str = "canhgac_cursors";

/// Announces a committed cursor to every collector on the database (sent
/// at this transaction's commit).
pub(super) fn notify(tx: &Transaction<'_>, kind: char, cursor: u64) -> Result<(), StoreError> {
    exec(tx, "SELECT pg_notify($1, $2)", &[&CHANNEL, &format!("{kind}{cursor}")])?;
    Ok(())
}

/// Follows the other collectors' commits: a connection of its own that
/// `LISTEN`s and moves the watches; after every (re)connection it reads
/// the committed cursors, so nothing announced while it was away is
/// missed. Runs on the store's runtime until the store is dropped.
async fn listen(
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    alerts: Arc<watch::Sender<u64>>,
    changes: Arc<watch::Sender<u64>>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let r = match tls.clone() {
            Some(t) => listen_once(&config, t, &alerts, &changes).await,
            None => listen_once(&config, NoTls, &alerts, &changes).await,
        };
        match r {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(e) => tracing::warn!(error = %db(e), "database notifications interrupted; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn listen_once<T>(
    config: &Config,
    tls: T,
    alerts: &Arc<watch::Sender<u64>>,
    changes: &Arc<watch::Sender<u64>>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut conn) = config.connect(tls).await?;
    let (alerts2, changes2) = (alerts.clone(), changes.clone());
    let messages = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    let p = n.payload();
                    let cursor = p.get(1..).and_then(|c| c.parse::<u64>().ok());
                    match (p.chars().next(), cursor) {
                        (Some('a'), Some(c)) => raise(&alerts2, c),
                        (Some('c'), Some(c)) => raise(&changes2, c),
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(max(cursor), 0) FROM records WHERE alert),
                    (SELECT coalesce(max(cursor), 0) FROM incident_changes)",
            &[],
        )
        .await?;
    raise(alerts, row.get::<_, i64>(0) as u64);
    raise(changes, row.get::<_, i64>(1) as u64);
    let r = messages.await;
    drop(client);
    match r {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// Moves a watch forward only: commits of concurrent callers may report
/// out of order.
fn raise(w: &watch::Sender<u64>, c: u64) {
    w.send_if_modified(|v| {
        if c > *v {
            *v = c;
            true
        } else {
            false
        }
    });
}

/// Runs `f`, which waits for the database, without holding up the other
/// tasks of the caller's runtime. On a worker thread of a multi-thread
/// tokio runtime (an operator RPC, a stream's task) through
/// `block_in_place`: the worker's other tasks (heartbeats, other agents'
/// streams) move to another thread while this one waits, so a slow or
/// failing-over database does not stall the collector's network side.
/// Elsewhere (a blocking-pool thread, a plain thread, a current-thread
/// runtime, where `block_in_place` is not allowed) `f` just runs.
fn waiting<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

// ----- queries: block the calling thread on one round trip -----

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) fn rows<C: tokio_postgres::GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    block_on(c.query(sql, p)).map_err(db)
}

pub(super) fn opt<C: tokio_postgres::GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    block_on(c.query_opt(sql, p)).map_err(db)
}

pub(super) fn one<C: tokio_postgres::GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<Row, StoreError> {
    block_on(c.query_one(sql, p)).map_err(db)
}

pub(super) fn exec<C: tokio_postgres::GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> Result<u64, StoreError> {
    block_on(c.execute(sql, p)).map_err(db)
}

/// Locks a counter row until the end of the transaction and returns its
/// value: serialises the writers of one sequence (see the module doc).
pub(super) fn lock_counter(tx: &Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    let r = one(tx, "SELECT value FROM counters WHERE name = $1 FOR UPDATE", &[&name])?;
    Ok(r.get::<_, i64>(0) as u64)
}

pub(super) fn set_counter(tx: &Transaction<'_>, name: &str, value: u64) -> Result<(), StoreError> {
    exec(tx, "UPDATE counters SET value = $2 WHERE name = $1", &[&name, &(value as i64)])?;
    Ok(())
}

/// Next value of a counter (locked until the end of the transaction).
pub(super) fn next_counter(tx: &Transaction<'_>, name: &str) -> Result<u64, StoreError> {
    let r = one(tx, "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value", &[&name])?;
    Ok(r.get::<_, i64>(0) as u64)
}

pub(super) fn counter<C: tokio_postgres::GenericClient>(c: &C, name: &str) -> Result<u64, StoreError> {
    Ok(opt(c, "SELECT value FROM counters WHERE name = $1", &[&name])?
        .map(|r| r.get::<_, i64>(0) as u64)
        .unwrap_or(0))
}

/// A cursor or id bound from a caller, clamped to what `bigint` holds.
pub(super) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Decodes the protobuf record in column `col`.
pub(super) fn rec<M: prost::Message + Default>(
    table: &'static str,
    row: &Row,
    col: usize,
) -> Result<M, StoreError> {
    let bytes: &[u8] = row.get(col);
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        tree: table,
        key: String::new(),
        reason: e.to_string(),
    })
}

// ----- migrations -----

fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let tx = block_on(c.transaction()).map_err(db)?;
    exec(&tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    block_on(tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS canhgac_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    ))
    .map_err(db)?;
    let found = one(&tx, "SELECT coalesce(max(version), 0) FROM canhgac_schema", &[])?.get::<_, i32>(0);
    let found = u32::try_from(found).unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::Schema { found, known: SCHEMA_VERSION });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = n as i32 + 1;
        block_on(tx.batch_execute(sql))
            .map_err(|e| StoreError::Database(format!("migration {version}: {}", db(e))))?;
        exec(&tx, "INSERT INTO canhgac_schema (version) VALUES ($1)", &[&version])?;
        tracing::info!(version, "database schema migrated");
    }
    block_on(tx.commit()).map_err(db)?;
    Ok(())
}

/// Refuses a database a `canhgac-collector migrate` has begun filling and
/// not finished (see `store::migrate`): serving it would hand out cursors
/// and ids the copy is still writing.
fn refuse_unfinished_copy(c: &Client) -> Result<(), StoreError> {
    let exists: bool = one(c, "SELECT to_regclass('canhgac_migration') IS NOT NULL", &[])?.get(0);
    if exists
        && one(c, "SELECT EXISTS (SELECT 1 FROM canhgac_migration WHERE finished_at IS NULL)", &[])?
            .get::<_, bool>(0)
    {
        return Err(StoreError::Conflict(
            "a migration from sled into this database has not finished: run `canhgac-collector migrate` again"
                .into(),
        ));
    }
    Ok(())
}

// ----- connections -----

/// A few connections, each driven by a task on the store's own runtime.
struct Pool {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    url: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
    replaced: std::sync::atomic::AtomicU64,
}

struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

/// How long a caller waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);

impl Pool {
    fn new(opts: &PgOptions) -> Result<Pool, StoreError> {
        let mut config = Config::from_str(&opts.url).map_err(|e| StoreError::Connect {
            url: redact_url(&opts.url),
            reason: format!("invalid database URL: {e}"),
        })?;
        let url = describe(&config);
        if config.get_password().is_none()
            && let Some(p) = &opts.password
        {
            config.password(p.as_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        config.application_name("canhgac-collector");
        let tls = match &opts.ca_pem {
            Some(pem) => {
                if matches!(config.get_ssl_mode(), SslMode::Prefer) {
                    config.ssl_mode(SslMode::Require);
                }
                Some(tls_connector(pem).map_err(|reason| StoreError::Connect { url: url.clone(), reason })?)
            }
            None => {
                if matches!(config.get_ssl_mode(), SslMode::Require) {
                    return Err(StoreError::Connect {
                        url,
                        reason: "sslmode=require needs the database's CA certificate (store.ca_file)".into(),
                    });
                }
                config.ssl_mode(SslMode::Disable);
                None
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("canhgac-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the database runtime: {e}")))?;
        let pool = Pool {
            handle: rt.handle().clone(),
            rt: Some(rt),
            config,
            tls,
            url,
            max: opts.max_connections.max(1),
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            freed: Condvar::new(),
            replaced: std::sync::atomic::AtomicU64::new(0),
        };
        // the first connection now: an unreachable database fails the open
        drop(pool.get()?);
        Ok(pool)
    }

    fn get(&self) -> Result<Conn<'_>, StoreError> {
        let deadline = std::time::Instant::now() + POOL_WAIT;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(c) = st.idle.pop() {
                if !c.is_closed() {
                    return Ok(Conn { pool: self, client: Some(c) });
                }
                st.open -= 1;
                self.replaced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok(Conn { pool: self, client: Some(c) }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable);
            }
            st = self.freed.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let config = self.config.clone();
        let tls = self.tls.clone();
        self.handle.spawn(async move {
            let r = match tls {
                Some(t) => connect_with(config, t).await,
                None => connect_with(config, NoTls).await,
            };
            let _ = tx.send(r);
        });
        match block_on(rx) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                let reason = match e.as_db_error() {
                    Some(d) => d.message().to_string(),
                    None => e.to_string(),
                };
                Err(StoreError::Connect { url: self.url.clone(), reason })
            }
            Err(_) => Err(StoreError::Connect { url: self.url.clone(), reason: "runtime stopped".into() }),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).idle.clear();
        // never blocks, so dropping the store inside async code is fine
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn connect_with<T>(config: Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, conn) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

fn tls_connector(pem: &[u8]) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("database CA certificate: {e}"))?;
        roots.add(cert).map_err(|e| format!("database CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("database CA file holds no certificate".into());
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A pooled connection; back to the pool when dropped (unless broken).
struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Conn<'_> {
    #[allow(clippy::expect_used)] // Some from creation until drop
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("connection present until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.state.lock().unwrap_or_else(|p| p.into_inner());
        match self.client.take() {
            Some(c) if !c.is_closed() => st.idle.push(c),
            _ => {
                st.open -= 1;
                self.pool.replaced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // std::thread::sleep in tests
mod tests {
    use std::{collections::BTreeMap, path::Path, sync::Mutex};

    use super::{PgOptions, PgStore, testcluster::TestCluster};
    use crate::store::StoreError;

    /// One database per path: `open` of the same path reopens the same one.
    fn db_name(names: &Mutex<BTreeMap<std::path::PathBuf, String>>, path: &Path) -> String {
        let mut names = names.lock().unwrap();
        let n = names.len();
        names.entry(path.to_path_buf()).or_insert_with(|| format!("conformance_{n}")).clone()
    }

    /// A store call made on a worker of a multi-thread runtime that waits
    /// for the database (here a query that sleeps 600 ms) does not hold up
    /// the other tasks of that worker: on a runtime of one worker, a timer
    /// task goes on ticking meanwhile.
    #[test]
    fn waiting_for_the_database_does_not_stall_the_runtime() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("stall").unwrap();
        let store = PgStore::open(&PgOptions::new(cluster.url("stall"))).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (during, waited) = rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            // the call runs on the runtime's only worker, as an RPC does
            let (s, t) = (store.clone(), ticks.clone());
            let r = tokio::spawn(async move {
                let before = t.load(std::sync::atomic::Ordering::Relaxed);
                let started = std::time::Instant::now();
                s.read(|c| super::one(c, "SELECT pg_sleep(0.6)", &[]).map(drop)).unwrap();
                (t.load(std::sync::atomic::Ordering::Relaxed) - before, started.elapsed())
            })
            .await
            .unwrap();
            ticker.abort();
            r
        });
        assert!(waited >= std::time::Duration::from_millis(600), "{waited:?}");
        // about 60 ticks of 10 ms; none at all when the worker is blocked
        assert!(during >= 20, "the timer ticked {during} times while the store waited {waited:?}");
    }

    #[test]
    fn postgres_passes_the_conformance_suite() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        let names = Mutex::new(BTreeMap::new());
        let open = |path: &Path| -> PgStore {
            let name = db_name(&names, path);
            cluster.create_db(&name).unwrap();
            PgStore::open(&PgOptions::new(cluster.url(&name))).unwrap()
        };
        crate::store::conformance::run_all(&open);
        // the enum handle passes too (the collector holds that)
        let open = |path: &Path| -> crate::store::Store {
            let name = db_name(&names, path);
            cluster.create_db(&name).unwrap();
            crate::store::Store::open_postgres(&PgOptions::new(cluster.url(&name))).unwrap()
        };
        crate::store::conformance::run_all(&open);
    }

    #[test]
    fn schema_newer_than_the_binary_is_refused_and_migrations_apply_once() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("schema").unwrap();
        let opts = PgOptions::new(cluster.url("schema"));
        let s = PgStore::open(&opts).unwrap();
        drop(s);
        // reopening applies nothing again
        PgStore::open(&opts).unwrap();
        cluster.sql("schema", "SELECT count(*) FROM canhgac_schema").unwrap();
        let newer = super::SCHEMA_VERSION as i32 + 1;
        cluster.sql("schema", &format!("INSERT INTO canhgac_schema (version) VALUES ({newer})")).unwrap();
        match PgStore::open(&opts) {
            Err(StoreError::Schema { found, known }) => {
                assert_eq!((found, known), (newer as u32, super::SCHEMA_VERSION));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a newer schema was accepted"),
        }
        let msg = PgStore::open(&opts).err().unwrap().to_string();
        assert!(msg.contains("newer than this collector understands"), "{msg}");
    }

    /// Two stores on one database (two replicas): one holder at a time;
    /// the holder renews; an expired lease passes to the other; a release
    /// frees it at once.
    #[test]
    fn a_lease_has_one_holder_until_it_expires_or_is_released() {
        use std::time::Duration;
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("leases").unwrap();
        let opts = PgOptions::new(cluster.url("leases"));
        let (a, b) = (PgStore::open(&opts).unwrap(), PgStore::open(&opts).unwrap());
        let ttl = Duration::from_secs(2);
        assert!(a.acquire_lease("watchdog", "A", ttl).unwrap());
        assert!(!b.acquire_lease("watchdog", "B", ttl).unwrap(), "held by A");
        assert!(b.acquire_lease("retention", "B", ttl).unwrap(), "leases are per task");
        std::thread::sleep(Duration::from_millis(1200));
        assert!(a.acquire_lease("watchdog", "A", ttl).unwrap(), "the holder renews");
        std::thread::sleep(Duration::from_millis(1200));
        assert!(!b.acquire_lease("watchdog", "B", ttl).unwrap(), "renewed, not expired");
        // A stops renewing (killed): B takes it after the expiry
        std::thread::sleep(Duration::from_millis(2200));
        assert!(b.acquire_lease("watchdog", "B", ttl).unwrap(), "expired lease taken");
        assert!(!a.acquire_lease("watchdog", "A", ttl).unwrap(), "A lost it");
        b.release_leases("B").unwrap();
        assert!(a.acquire_lease("watchdog", "A", ttl).unwrap(), "released at once");
        assert!(a.acquire_lease("retention", "A", ttl).unwrap());
    }

    #[test]
    fn unreachable_database_names_the_url_without_its_password() {
        // a port nothing listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://canhgac:s3cret-pw@127.0.0.1:{port}/db");
        let err = PgStore::open(&PgOptions::new(url)).err().expect("nothing listens there");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
        assert!(msg.contains(&format!("postgres://canhgac@127.0.0.1:{port}/db")), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(!format!("{:?}", PgOptions::new("postgres://u:s3cret@h/d")).contains("s3cret"));
        assert_eq!(super::redact_url("postgres://u:s3cret@h:1/d"), "postgres://u@h:1/d");
        for bad in ["postgres://u:s3cret@h:1/d?x", "postgres://u:s3cret@h:port/d", "u:s3cret@"] {
            assert!(!super::redact_url(bad).contains("s3cret"), "{bad}");
        }
    }

    #[test]
    fn cursors_follow_commit_order_under_concurrent_writers() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("order").unwrap();
        let opts = PgOptions::new(cluster.url("order"));
        // two stores: as two collectors on one database
        let (a, b) = (PgStore::open(&opts).unwrap(), PgStore::open(&opts).unwrap());
        a.add_agency(crate::store::AgencyRec { version: 1, code: "A".into(), ..Default::default() }).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let alert = |seq: u64| crate::store::Incoming::Valid {
            seq,
            alert: true,
            severity: 2,
            time_us: seq as i64,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        std::thread::scope(|sc| {
            for (n, s) in [&a, &b, &a, &b].into_iter().enumerate() {
                let alert = &alert;
                sc.spawn(move || {
                    for i in 0..40u64 {
                        let batch: Vec<_> = (0..5).map(|k| alert(i * 5 + k)).collect();
                        s.ingest(&format!("agent{n}"), "A", 0, &batch).unwrap();
                    }
                });
            }
            // a reader that resumes after the highest cursor it saw never
            // finds a smaller one later
            let (stop, reader_store) = (&stop, &b);
            let reader = sc.spawn(move || {
                let (mut seen, mut last) = (0usize, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || seen < 800 {
                    for (c, _) in reader_store.alerts_after(last, 1000).unwrap() {
                        assert_eq!(c, last + 1, "a gap: {} after {last}", c);
                        last = c;
                        seen += 1;
                    }
                }
                seen
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while a.alerts_after(0, 10_000).unwrap().len() < 800 {
                assert!(std::time::Instant::now() < deadline, "the writers did not finish");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(reader.join().unwrap(), 800);
        });
    }

    /// Waits until `rx` reaches `want` (another collector's commit).
    fn reaches(rx: &tokio::sync::watch::Receiver<u64>, want: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if *rx.borrow() >= want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn another_collectors_commits_move_the_watches() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("notify").unwrap();
        let opts = PgOptions::new(cluster.url("notify"));
        let (a, b) = (PgStore::open(&opts).unwrap(), PgStore::open(&opts).unwrap());
        let (alerts, changes) = (b.alert_cursor(), b.incident_change_cursor());
        a.add_agency(crate::store::AgencyRec { version: 1, code: "A".into(), ..Default::default() }).unwrap();
        let alert = crate::store::Incoming::Valid {
            seq: 1,
            alert: true,
            severity: 2,
            time_us: 1,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        a.ingest("x", "A", 0, &[alert]).unwrap();
        assert!(reaches(&alerts, 1), "the alert watch of the other store moved");
        assert_eq!(b.alerts_after(0, 10).unwrap().len(), 1, "and the alert is there to read");
        let input = crate::store::CorrelationInput {
            cursor: 1,
            agency: "A".into(),
            category: "intrusion".into(),
            keys: vec!["e\0A\0intrusion\0a:x".into()],
            opens: true,
            severity: 2,
            ..Default::default()
        };
        a.correlate(&[input], 1, 60_000_000, 5).unwrap();
        assert!(reaches(&changes, 1), "the change watch of the other store moved");
        assert_eq!(b.incident_changes_after(0, 10).unwrap().len(), 1);
        // the collector's own alerts too
        let own = a
            .insert_collector_alert(crate::store::RecordRec { agency: "A".into(), ..Default::default() })
            .unwrap();
        assert!(reaches(&alerts, own));
    }

    /// A certificate authority and a server certificate for 127.0.0.1.
    fn tls_material() -> (String, String, String) {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (ca_cert.pem(), cert.pem(), key.serialize_pem())
    }

    #[test]
    fn tls_to_the_database_verifies_the_server() {
        let (ca, cert, key) = tls_material();
        let cluster =
            TestCluster::start_tls(&cert, &key).unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("tls").unwrap();
        let url = format!("{}?sslmode=require", cluster.tcp_url("tls"));
        let mut opts = PgOptions::new(url.clone());
        opts.ca_pem = Some(ca.into_bytes());
        let s = PgStore::open(&opts).unwrap();
        let on_tls = s
            .read(|c| {
                Ok(super::one(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?
                    .get::<_, bool>(0))
            })
            .unwrap();
        assert!(on_tls, "the session runs over TLS");
        // a server the configured CA did not sign is refused
        let (other_ca, _, _) = tls_material();
        opts.ca_pem = Some(other_ca.into_bytes());
        let err = PgStore::open(&opts).err().expect("an unknown server certificate is refused");
        assert!(matches!(err, StoreError::Connect { .. }), "{err}");
        // sslmode=require without a CA to verify with: a clear error
        let err = PgStore::open(&PgOptions::new(url)).err().expect("no CA");
        assert!(err.to_string().contains("store.ca_file"), "{err}");
    }

    /// Named counters (the upstream link's position and drops) and where a
    /// downstream collector's feed resumes, as on sled.
    #[test]
    fn named_counters_and_feed_positions() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("counters").unwrap();
        let s = PgStore::open(&PgOptions::new(cluster.url("counters"))).unwrap();
        assert_eq!(s.counter_value("upstream_alerts").unwrap(), 0);
        s.raise_counter("upstream_alerts", 7).unwrap();
        s.raise_counter("upstream_alerts", 3).unwrap();
        assert_eq!(s.counter_value("upstream_alerts").unwrap(), 7, "never lowered");
        s.add_to_counter("upstream_dropped", 2).unwrap();
        s.add_to_counter("upstream_dropped", 5).unwrap();
        assert_eq!(s.counter_value("upstream_dropped").unwrap(), 7);
        s.add_agency(crate::store::AgencyRec { version: 1, code: "HN".into(), ..Default::default() })
            .unwrap();
        let rec = |seq: u64| crate::store::Incoming::Valid {
            seq,
            alert: false,
            severity: 0,
            time_us: 1,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        let (feed1, feed2) = (crate::federation::feed_range(1), crate::federation::feed_range(2));
        assert_eq!(s.highest_seq_between("p", feed1.0, feed1.1).unwrap(), None);
        s.ingest("p", "HN", 0, &[rec(crate::federation::seq(1, 4)), rec(crate::federation::seq(2, 9))])
            .unwrap();
        assert_eq!(s.highest_seq_between("p", feed1.0, feed1.1).unwrap(), Some(crate::federation::seq(1, 4)));
        assert_eq!(s.highest_seq_between("p", feed2.0, feed2.1).unwrap(), Some(crate::federation::seq(2, 9)));
    }

    #[test]
    fn a_database_gone_for_a_while_fails_calls_then_serves_again() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("outage").unwrap();
        let s = PgStore::open(&PgOptions::new(cluster.url("outage"))).unwrap();
        s.add_agency(crate::store::AgencyRec { version: 1, code: "A".into(), ..Default::default() }).unwrap();
        let alert = |seq: u64| crate::store::Incoming::Valid {
            seq,
            alert: true,
            severity: 2,
            time_us: 1,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        s.ingest("x", "A", 0, &[alert(1)]).unwrap();
        cluster.stop().unwrap();
        assert!(s.ingest("x", "A", 0, &[alert(2)]).is_err(), "no database: the batch is refused");
        assert!(s.probe_write().is_err(), "readiness reports it");
        assert!(s.recover().is_err());
        cluster.restart().unwrap();
        // broken connections are replaced on the next calls
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let out = loop {
            match s.ingest("x", "A", 0, &[alert(2)]) {
                Ok(out) => break out,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "still failing: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        };
        assert_eq!(out.stored, 1);
        assert_eq!(s.alerts_after(0, 10).unwrap().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![1, 2]);
        s.probe_write().unwrap();
        assert!(s.reopened() > 0, "the broken connections were counted");
    }

    #[test]
    fn alerts_correlated_by_another_collector_are_not_counted_again() {
        let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
        cluster.create_db("twice").unwrap();
        let opts = PgOptions::new(cluster.url("twice"));
        let (a, b) = (PgStore::open(&opts).unwrap(), PgStore::open(&opts).unwrap());
        let input = |cursor: u64| crate::store::CorrelationInput {
            cursor,
            agency: "A".into(),
            category: "intrusion".into(),
            keys: vec!["e\0A\0intrusion\0a:x".into()],
            opens: true,
            severity: 2,
            time_us: cursor as i64,
            ..Default::default()
        };
        // both read position 0 and correlate the same alerts
        let batch: Vec<_> = (1..=3).map(input).collect();
        a.correlate(&batch, 3, 60_000_000, 5).unwrap();
        b.correlate(&batch, 3, 60_000_000, 5).unwrap();
        b.correlate(&[input(3), input(4)], 4, 60_000_000, 6).unwrap();
        let inc = a.incident(1).unwrap().unwrap();
        assert_eq!(inc.alert_count, 4, "each alert once");
        assert_eq!(a.correlated_cursor().unwrap(), 4);
        assert!(a.incident(2).unwrap().is_none());
    }
}
