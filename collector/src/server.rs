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
    service::{enroll::EnrollmentService, operator::OperatorService, telemetry::TelemetryService},
    store::{OperatorRec, Store, StoreError},
    tls::{self, Revoked, TlsError, TlsStats},
};

/// State shared by all services.
pub struct Shared {
    pub config: ServeConfig,
    pub store: Store,
    pub ca: Ca,
    pub revoked: Arc<Revoked>,
    pub streams: Arc<StreamRegistry>,
    pub tls_stats: Arc<TlsStats>,
    /// Turns `true` when the collector shuts down; long-lived streams end.
    pub shutdown: watch::Receiver<bool>,
    /// Bumped on every policy push; telemetry sessions deliver it.
    pub policy_changed: watch::Sender<u64>,
    /// Signs audit heads.
    pub audit_signer: Arc<crate::audit::Signer>,
}

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
    let store = Store::open(&config.data_dir.join("db"))?;
    if store.operators()?.is_empty() {
        // The profile written by `init` is the first administrator.
        store.add_operator(OperatorRec {
            version: crate::store::records::RECORD_VERSION,
            name: "admin".into(),
            role: "admin".into(),
            created_us: canhgac_proto::timefmt::micros(OffsetDateTime::now_utc()),
            created_by: "init".into(),
            ..Default::default()
        })?;
        tracing::info!("registered operator `admin` (role admin) from the init profile");
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let shared = Arc::new(Shared {
        store: store.clone(),
        ca,
        revoked: revoked.clone(),
        streams: Arc::new(StreamRegistry::default()),
        tls_stats: tls_stats.clone(),
        shutdown: stop_rx.clone(),
        config: config.clone(),
        policy_changed: watch::Sender::new(0),
        audit_signer: Arc::new(
            crate::audit::Signer::load(&paths.server_key(), &paths.server_cert())
                .map_err(ServeError::Audit)?,
        ),
    });
    // Every background task is owned here and joined on shutdown; each
    // ends when `stop_rx` turns true.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::incident::run_correlator(
        store.clone(),
        config.regulation.clone(),
        config.correlation_window,
        stop_rx.clone(),
    ));
    tasks.spawn(crate::supervise::run_watchdog(shared.clone()));
    tasks.spawn(crate::supervise::run_retention(shared.clone()));
    tasks.spawn(crate::supervise::run_storage_watch(store.clone(), stop_rx.clone()));
    if let Some(f) = config.forward.clone() {
        tracing::info!(target = ?f.target, "forwarding alerts and incident changes");
        tasks.spawn(crate::forward::run(shared.clone(), f));
    }

    let addr = listener.local_addr().ok();
    let incoming = tls::incoming(listener, tls_config, config.handshake_timeout, tls_stats);
    let auth = Auth::new(revoked, store.clone());
    // Leave room above the batch limit so that an oversized batch still
    // decodes and gets a clean BatchRejected instead of a broken stream.
    let decode_limit = (config.max_batch_bytes as usize).saturating_mul(4).max(16 * 1024 * 1024);
    let telemetry =
        TelemetryServer::new(TelemetryService::new(shared.clone())).max_decoding_message_size(decode_limit);
    let operator = Guarded::new(
        OperatorServer::new(OperatorService::new(shared.clone())).max_decoding_message_size(64 * 1024 * 1024),
        auth.clone(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(canhgac_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let enrollment =
        EnrollmentServer::new(EnrollmentService::new(shared.clone())).max_decoding_message_size(64 * 1024);

    if let Some(addr) = addr {
        tracing::info!(%addr, pin = %shared.ca.pin(), "canhgac-collector listening");
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
