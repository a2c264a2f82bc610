//! Wiring: opens the store and the CA, builds the TLS configuration and
//! serves the three gRPC services on one listener until shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use canhgac_proto::{
    identity::Identity,
    v1::{
        enrollment_server::EnrollmentServer, operator_server::OperatorServer,
        telemetry_server::TelemetryServer,
    },
};
use time::OffsetDateTime;
use tokio::{net::TcpListener, sync::watch};
use tonic::service::interceptor::InterceptedService;

use crate::{
    auth::{Auth, Guarded},
    config::{Live, ServeConfig},
    pki::{Ca, PkiError, PkiPaths},
    registry::StreamRegistry,
    service::{
        enroll::{EnrollmentConfig, EnrollmentDeps, EnrollmentService},
        operator::{OperatorConfig, OperatorDeps, OperatorService},
        telemetry::{TelemetryConfig, TelemetryDeps, TelemetryService},
    },
    store::{OperatorRec, Store, StoreError},
    tls::{self, Revoked, TlsError, TlsStats},
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("audit signing key: {0}")]
    Audit(String),
    #[error("console: {0}")]
    Console(String),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("upstream link: {0}")]
    Upstream(String),
}

/// Serves on `listener` until `shutdown` resolves. The listener is bound by
/// the caller, so tests can use `127.0.0.1:0`.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (_keep, reloads) = tokio::sync::mpsc::channel(1);
    run_reloadable(config, listener, shutdown, reloads).await
}

/// [`run`], taking new configurations from `reloads` (SIGHUP): each is
/// applied without dropping a connection or a record (see [`reload`]).
pub async fn run_reloadable(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reloads: tokio::sync::mpsc::Receiver<ServeConfig>,
) -> Result<(), ServeError> {
    let paths = PkiPaths::new(&config.data_dir);
    let ca = Ca::load(&paths)?;
    if ca.renew_server_if_needed(&paths, OffsetDateTime::now_utc())? {
        tracing::info!("re-issued the server certificate (it expired within 30 days)");
    }
    let store = match &config.store {
        crate::config::StoreConfig::Sled => Store::open(&config.data_dir.join("db"))?,
        crate::config::StoreConfig::Postgres(opts) => {
            let store = Store::open_postgres(opts)?;
            if let Store::Pg(pg) = &store {
                tracing::info!(url = pg.url(), "store: PostgreSQL");
            }
            store
        }
    };
    if store.operators()?.is_empty() {
        // The profile written by `init` is the first administrator.
        let added = store.add_operator(OperatorRec {
            version: crate::store::records::RECORD_VERSION,
            name: "admin".into(),
            role: "admin".into(),
            created_us: canhgac_proto::timefmt::micros(OffsetDateTime::now_utc()),
            created_by: "init".into(),
            ..Default::default()
        });
        match added {
            Ok(_) => tracing::info!("registered operator `admin` (role admin) from the init profile"),
            // another replica starting at the same moment registered it
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let revoked = Arc::new(Revoked::default());
    for agent in store.agents()? {
        if agent.revoked_us != 0 {
            revoked.insert(Identity::Agent(agent.agent_id));
        }
    }
    for op in store.operators()? {
        if op.revoked_us != 0 {
            revoked.insert(Identity::Operator(op.name));
        }
    }
    let tls_config = tls::server_config(&paths, revoked.clone())?;
    let tls_stats = Arc::new(TlsStats::default());
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let ca = Arc::new(ca);
    let streams = Arc::new(StreamRegistry::default());
    let newest_policy = store.policies()?.iter().map(|p| p.policy_version).max().unwrap_or(0);
    let policy_changed = Arc::new(watch::Sender::new(newest_policy));
    let audit_signer = Arc::new(
        crate::audit::Signer::load(&paths.server_key(), &paths.server_cert()).map_err(ServeError::Audit)?,
    );
    // Every background task is owned here and joined on shutdown; each
    // ends when `stop_rx` turns true. Each gets what it needs, nothing more.
    let mut tasks = tokio::task::JoinSet::new();
    // Singleton work runs where its lease is held (always here on sled);
    // see `replica`.
    let held = Arc::new(crate::replica::Held::default());
    tasks.spawn(crate::replica::run_leases(
        store.clone(),
        crate::replica::holder_id(),
        held.clone(),
        stop_rx.clone(),
    ));
    // the link to an upstream (national) collector, when enrolled: checked
    // here, read again by each generation of background tasks (a renewed
    // certificate, an enrollment made while running)
    crate::federation::upstream::Link::load(&config.data_dir)
        .map_err(|e| ServeError::Upstream(e.to_string()))?;
    tasks.spawn(crate::supervise::run_storage_watch(store.clone(), stop_rx.clone()));
    // the services read their settings per call; a reload replaces them
    let (telemetry_tx, telemetry_config) = Live::new(TelemetryConfig::of(&config));
    let (operator_tx, operator_config) = Live::new(OperatorConfig::of(&config));
    let (enrollment_tx, enrollment_config) = Live::new(EnrollmentConfig::of(&config));
    // Leave room above the batch limit so that an oversized batch still
    // decodes and gets a clean BatchRejected instead of a broken stream.
    let decode_limit = (config.max_batch_bytes as usize).saturating_mul(4).max(16 * 1024 * 1024);
    tasks.spawn(run_generations(Generations {
        config: config.clone(),
        shared: Shared {
            store: store.clone(),
            held: held.clone(),
            streams: streams.clone(),
            audit_signer: audit_signer.clone(),
            metrics: metrics.clone(),
        },
        telemetry: telemetry_tx,
        operator: operator_tx,
        enrollment: enrollment_tx,
        decode_limit,
        reloads,
        shutdown: stop_rx.clone(),
    }));
    tasks.spawn(crate::replica::run_sync(crate::replica::SyncDeps {
        store: store.clone(),
        revoked: revoked.clone(),
        streams: streams.clone(),
        policy_changed: policy_changed.clone(),
        shutdown: stop_rx.clone(),
    }));

    let addr = listener.local_addr().ok();
    let incoming = tls::incoming(listener, tls_config, config.handshake_timeout, tls_stats.clone());
    let auth = Auth::new(revoked.clone(), store.clone(), metrics.clone());
    if let Some(addr) = config.metrics_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| ServeError::Metrics(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics and health endpoints listening (http)");
        let src = crate::metrics::Sources {
            metrics: metrics.clone(),
            store: store.clone(),
            streams: streams.clone(),
            tls: tls_stats.clone(),
        };
        tasks.spawn(crate::metrics::serve(Arc::new(src), l, stop_rx.clone()));
    }
    let telemetry = TelemetryServer::new(TelemetryService::new(TelemetryDeps {
        store: store.clone(),
        ca: ca.clone(),
        config: telemetry_config,
        streams: streams.clone(),
        policy_changed: policy_changed.clone(),
        shutdown: stop_rx.clone(),
        metrics: metrics.clone(),
    }))
    .max_decoding_message_size(decode_limit);
    let operator: crate::console::Api = Guarded::new(
        OperatorServer::new(OperatorService::new(OperatorDeps {
            store: store.clone(),
            ca: ca.clone(),
            config: operator_config,
            revoked: revoked.clone(),
            streams,
            policy_changed,
            shutdown: stop_rx.clone(),
            audit_signer,
        }))
        .max_decoding_message_size(64 * 1024 * 1024),
        auth.clone(),
    );
    if let Some(cc) = &config.console {
        let listener = TcpListener::bind(cc.listen)
            .await
            .map_err(|e| ServeError::Console(format!("cannot listen on {}: {e}", cc.listen)))?;
        let tls = tls::console_config(&paths, cc.bind_client_certificate.then(|| revoked.clone()))?;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "operator console listening (https)");
        let console = Arc::new(crate::console::Console::new(
            store.clone(),
            auth.clone(),
            operator.clone(),
            cc.idle_timeout,
            cc.bind_client_certificate,
        ));
        tasks.spawn(crate::console::serve(console, listener, tls, stop_rx.clone()));
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(canhgac_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let enrollment = EnrollmentServer::new(EnrollmentService::new(EnrollmentDeps {
        store: store.clone(),
        ca: ca.clone(),
        config: enrollment_config,
        metrics: metrics.clone(),
    }))
    .max_decoding_message_size(64 * 1024);

    if let Some(addr) = addr {
        tracing::info!(%addr, pin = %ca.pin(), "canhgac-collector listening");
    }
    let stop = stop_tx.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down");
        stop.send_replace(true);
    };
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(enrollment)
        .add_service(InterceptedService::new(telemetry, auth.agents()))
        .add_service(operator)
        .add_service(InterceptedService::new(reflection, auth.any_operator()))
        .serve_with_incoming_shutdown(incoming, signal);
    let served = server.await;
    // Stop accepting (done), let in-flight work finish, join every task,
    // flush: the one shutdown path, on a signal or on an error.
    stop_tx.send_replace(true);
    join_within(&mut tasks, Duration::from_secs(20)).await;
    store.flush().await?;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// What the restartable background tasks share with the rest of the
/// collector, kept across reloads.
#[derive(Clone)]
struct Shared {
    store: Store,
    held: Arc<crate::replica::Held>,
    streams: Arc<StreamRegistry>,
    audit_signer: Arc<crate::audit::Signer>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The background tasks that read the configuration (correlator, silence
/// watchdog, retention, audit head, scheduled reports, forwarder, mirror,
/// upstream link), each where its lease is held, until `stop_rx` turns
/// true. Each resumes from what the store holds, so stopping them and
/// starting them again with another configuration loses and repeats
/// nothing.
fn spawn_background(
    config: &ServeConfig,
    sh: &Shared,
    stop_rx: watch::Receiver<bool>,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let (store, held, streams, audit_signer, metrics) =
        (&sh.store, &sh.held, &sh.streams, &sh.audit_signer, &sh.metrics);
    let link = match crate::federation::upstream::Link::load(&config.data_dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "upstream link unreadable; not streaming upward until it is mended");
            None
        }
    };
    let gate = |name: &'static str| (name, held.watch(name), stop_rx.clone());
    {
        let (name, h, stop) = gate("correlator");
        let (store, reg, window) = (store.clone(), config.regulation.clone(), config.correlation_window);
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::incident::run_correlator(store.clone(), reg.clone(), window, stop)
        }));
    }
    {
        let (name, h, stop) = gate("watchdog");
        let (store, streams, reg, limit) =
            (store.clone(), streams.clone(), config.regulation.clone(), config.agent_silence_limit);
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::supervise::run_watchdog(Arc::new(crate::supervise::Watchdog {
                store: store.clone(),
                streams: streams.clone(),
                regulation: reg.clone(),
                silence_limit: limit,
                shutdown: stop,
            }))
        }));
    }
    {
        let (name, h, stop) = gate("retention");
        let (store, reg, every) = (store.clone(), config.regulation.clone(), config.retention_interval);
        let upstream = link.as_ref().map(|_| config.upstream_alert_severity);
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::supervise::run_retention(store.clone(), reg.clone(), every, upstream, stop)
        }));
    }
    {
        let (name, h, stop) = gate("audit-head");
        let (store, signer, every) = (store.clone(), audit_signer.clone(), config.audit_head_interval);
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::audit::run_head_signer(store.clone(), signer.clone(), every, stop)
        }));
    }
    {
        let (name, h, stop) = gate("reports");
        let (store, reg, dir, sched, every, limit) = (
            store.clone(),
            config.regulation.clone(),
            crate::report::schedule::dir(&config.data_dir),
            config.report_schedule.clone(),
            config.report_check_interval,
            config.agent_silence_limit,
        );
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::report::schedule::run(
                store.clone(),
                reg.clone(),
                dir.clone(),
                sched.clone(),
                every,
                limit,
                stop,
            )
        }));
    }
    if let Some(f) = config.forward.clone() {
        tracing::info!(target = ?f.target, "forwarding alerts and incident changes");
        let (name, h, stop) = gate("forwarder");
        let (store, reg) = (store.clone(), config.regulation.clone());
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            let deps =
                crate::forward::ForwardDeps { store: store.clone(), regulation: reg.clone(), shutdown: stop };
            crate::forward::run(Arc::new(deps), f.clone())
        }));
    }
    {
        // downstream collectors' incidents, kept here (idle with no province)
        let (name, h, stop) = gate("mirror");
        let (store, reports) = (store.clone(), crate::report::schedule::dir(&config.data_dir));
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::federation::mirror::run(store.clone(), reports.clone(), stop)
        }));
    }
    if let Some(link) = link {
        tracing::info!(national = %link.file.national, province = %link.file.province, "streaming upward");
        let (name, h, stop) = gate("upstream");
        let (store, reg, sev, metrics, silence) = (
            store.clone(),
            config.regulation.clone(),
            config.upstream_alert_severity,
            metrics.clone(),
            config.agent_silence_limit,
        );
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            let deps = crate::federation::upstream::UpstreamDeps {
                store: store.clone(),
                regulation: reg.clone(),
                alert_severity: sev,
                silence_limit: silence,
                metrics: metrics.clone(),
                shutdown: stop,
            };
            crate::federation::upstream::run(Arc::new(deps), link.clone())
        }));
    }
    tasks
}

/// The restartable half of the collector and what a reload replaces.
struct Generations {
    /// The configuration in effect.
    config: ServeConfig,
    shared: Shared,
    telemetry: watch::Sender<Arc<TelemetryConfig>>,
    operator: watch::Sender<Arc<OperatorConfig>>,
    enrollment: watch::Sender<Arc<crate::service::enroll::EnrollmentConfig>>,
    /// Largest gRPC message the telemetry service decodes, fixed at start.
    decode_limit: usize,
    reloads: tokio::sync::mpsc::Receiver<ServeConfig>,
    shutdown: watch::Receiver<bool>,
}

/// Runs the background tasks; on each new configuration stops them
/// (each at a point where everything it did is stored), applies the new
/// settings and starts them again. Connections and streams stay open:
/// the services read their settings per call.
async fn run_generations(mut g: Generations) {
    let mut open = true;
    loop {
        let (gen_tx, gen_rx) = watch::channel(false);
        let mut running = spawn_background(&g.config, &g.shared, gen_rx);
        let next = loop {
            tokio::select! {
                biased;
                _ = crate::registry::until_true(&mut g.shutdown) => break None,
                c = g.reloads.recv(), if open => match c {
                    Some(c) => break Some(c),
                    None => open = false,
                },
            }
        };
        gen_tx.send_replace(true);
        // within the 20 s the whole shutdown waits for every task
        join_within(&mut running, Duration::from_secs(15)).await;
        // a shutdown asked while the old generation stopped wins
        let Some(new) = next.filter(|_| !*g.shutdown.borrow()) else { return };
        g.config = reload(&g.config, new, g.decode_limit);
        g.telemetry.send_replace(Arc::new(TelemetryConfig::of(&g.config)));
        g.operator.send_replace(Arc::new(OperatorConfig::of(&g.config)));
        g.enrollment.send_replace(Arc::new(crate::service::enroll::EnrollmentConfig::of(&g.config)));
        tracing::info!("configuration reloaded");
    }
}

/// The configuration a reload puts in effect: `new`, except the settings
/// only a restart can change (addresses, data directory, store, log
/// format, the handshake timeout, and batch sizes beyond what the
/// running server decodes), which keep their running values, each
/// named in a warning.
pub fn reload(running: &ServeConfig, mut new: ServeConfig, decode_limit: usize) -> ServeConfig {
    fn keep<T: std::fmt::Debug + Clone>(name: &str, running: &T, new: &mut T) {
        if format!("{running:?}") != format!("{new:?}") {
            tracing::warn!(setting = name, "changed in the file; takes effect at the next restart");
            *new = running.clone();
        }
    }
    keep("data_dir", &running.data_dir, &mut new.data_dir);
    keep("listen", &running.listen, &mut new.listen);
    keep("store", &running.store, &mut new.store);
    keep("metrics.listen", &running.metrics_listen, &mut new.metrics_listen);
    keep("console", &running.console, &mut new.console);
    keep("log.format", &running.log_format, &mut new.log_format);
    keep("limits.handshake_timeout", &running.handshake_timeout, &mut new.handshake_timeout);
    if new.max_batch_bytes as usize > decode_limit / 4 && new.max_batch_bytes > running.max_batch_bytes {
        tracing::warn!(
            setting = "limits.max_batch_bytes",
            "raised beyond what the running server decodes; takes effect at the next restart"
        );
        new.max_batch_bytes = running.max_batch_bytes;
    }
    new
}

/// Joins every task of `tasks` (asked to stop), logging the ones that
/// failed; those still running after `limit` are aborted.
async fn join_within(tasks: &mut tokio::task::JoinSet<()>, limit: Duration) {
    let joined = tokio::time::timeout(limit, async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a background task failed");
            }
        }
    })
    .await;
    if joined.is_err() {
        tracing::error!(left = tasks.len(), ?limit, "background tasks did not stop in time; aborting them");
        tasks.shutdown().await;
    }
}
