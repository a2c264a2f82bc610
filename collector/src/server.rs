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
    config::ServeConfig,
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
    // the link to an upstream (national) collector, when enrolled
    let link = crate::federation::upstream::Link::load(&config.data_dir)
        .map_err(|e| ServeError::Upstream(e.to_string()))?;
    {
        let (name, h, stop) = gate("retention");
        let (store, reg, every) = (store.clone(), config.regulation.clone(), config.retention_interval);
        let upstream = link.as_ref().map(|_| config.upstream_alert_severity);
        tasks.spawn(crate::replica::gated(name, h, stop, move |stop| {
            crate::supervise::run_retention(store.clone(), reg.clone(), every, upstream, stop)
        }));
    }
    tasks.spawn(crate::supervise::run_storage_watch(store.clone(), stop_rx.clone()));
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
    // Leave room above the batch limit so that an oversized batch still
    // decodes and gets a clean BatchRejected instead of a broken stream.
    let decode_limit = (config.max_batch_bytes as usize).saturating_mul(4).max(16 * 1024 * 1024);
    let telemetry = TelemetryServer::new(TelemetryService::new(TelemetryDeps {
        store: store.clone(),
        ca: ca.clone(),
        config: TelemetryConfig::of(&config),
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
            config: OperatorConfig::of(&config),
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
            config.regulation.clone(),
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
        config: EnrollmentConfig {
            agent_certificate_ttl: config.agent_certificate_ttl,
            max_failures: config.enrollment_failures,
            failure_window: config.enrollment_failure_window,
        },
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
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a background task failed");
            }
        }
    })
    .await;
    if joined.is_err() {
        tracing::error!(left = tasks.len(), "background tasks did not stop within 20 s; aborting them");
        tasks.shutdown().await;
    }
    store.flush().await?;
    served?;
    tracing::info!("stopped");
    Ok(())
}
