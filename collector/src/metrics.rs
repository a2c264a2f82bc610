//! Prometheus metrics and health endpoints (`[metrics] listen`, off by
//! default, loopback unless configured otherwise), served over plain HTTP
//! beside the gRPC port:
//!
//! * `GET /metrics`: the text exposition format (OpenMetrics);
//! * `GET /healthz`: the process answers (liveness);
//! * `GET /readyz`: 200 when the store takes writes, 503 with the reason
//!   when it does not (a load balancer stops sending agents here).
//!
//! Counters are updated where the work happens (ingest, operator calls,
//! enrollment); gauges that are a state of something else (connected
//! agents, database size, forwarder queue, TLS handshakes) are read when
//! scraped.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};

/// Labels of an operator call: the RPC method and its gRPC status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Everything the collector measures.
pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    pub records_stored: Counter,
    pub records_duplicate: Counter,
    pub records_invalid: Counter,
    pub batches: Counter,
    pub batches_rejected: Counter,
    /// Records per accepted batch.
    pub batch_records: Histogram,
    /// Time from a batch's arrival to its acknowledgement (stored and
    /// flushed), seconds.
    pub ingest_seconds: Histogram,
    pub operator_calls: Family<CallLabels, Counter>,
    pub operator_seconds: Family<MethodLabel, Histogram>,
    pub enrollments: Family<OutcomeLabel, Counter>,
    /// Federation, at a downstream (provincial) collector.
    pub upstream_connected: Gauge,
    pub upstream_sent: Counter,
    pub upstream_backlog: Gauge,
    // read when scraped
    connected_agents: Gauge,
    database_bytes: Gauge,
    forward_queued: Gauge,
    forward_queued_bytes: Gauge,
    forward_dropped: Gauge,
    upstream_dropped: Gauge,
    tls_accepted: Gauge,
    tls_failed: Gauge,
    tls_timed_out: Gauge,
    store_writable: Gauge,
    correlation_backlog: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: std::sync::Mutex::new(Registry::with_prefix("canhgac_collector")),
            records_stored: Counter::default(),
            records_duplicate: Counter::default(),
            records_invalid: Counter::default(),
            batches: Counter::default(),
            batches_rejected: Counter::default(),
            batch_records: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            ingest_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            operator_calls: Family::default(),
            operator_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            enrollments: Family::default(),
            upstream_connected: Gauge::default(),
            upstream_sent: Counter::default(),
            upstream_backlog: Gauge::default(),
            connected_agents: Gauge::default(),
            database_bytes: Gauge::default(),
            forward_queued: Gauge::default(),
            forward_queued_bytes: Gauge::default(),
            forward_dropped: Gauge::default(),
            upstream_dropped: Gauge::default(),
            tls_accepted: Gauge::default(),
            tls_failed: Gauge::default(),
            tls_timed_out: Gauge::default(),
            store_writable: Gauge::default(),
            correlation_backlog: Gauge::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register("records_stored", "Records stored (new)", m.records_stored.clone());
            r.register(
                "records_duplicate",
                "Records received again and not stored twice",
                m.records_duplicate.clone(),
            );
            r.register("records_invalid", "Records quarantined as invalid", m.records_invalid.clone());
            r.register("batches", "Batches stored and acknowledged", m.batches.clone());
            r.register("batches_rejected", "Batches refused (limits, sequence)", m.batches_rejected.clone());
            r.register("batch_records", "Records per accepted batch", m.batch_records.clone());
            r.register(
                "ingest_seconds",
                "Seconds from a batch's arrival to its acknowledgement (stored and flushed)",
                m.ingest_seconds.clone(),
            );
            r.register(
                "operator_calls",
                "Operator API calls by method and gRPC status",
                m.operator_calls.clone(),
            );
            r.register("operator_seconds", "Operator API call latency by method", m.operator_seconds.clone());
            r.register("enrollments", "Enrollment attempts by outcome", m.enrollments.clone());
            r.register(
                "upstream_connected",
                "1 while the stream to the upstream (national) collector is open",
                m.upstream_connected.clone(),
            );
            r.register(
                "upstream_sent",
                "Records (alerts, incident changes) the upstream collector acknowledged",
                m.upstream_sent.clone(),
            );
            r.register(
                "upstream_dropped",
                "Alerts selected for the upstream collector that retention removed before it acknowledged them",
                m.upstream_dropped.clone(),
            );
            r.register(
                "upstream_backlog",
                "Records (cursors) after what the upstream collector acknowledged: an upper bound of what waits",
                m.upstream_backlog.clone(),
            );

            r.register(
                "connected_agents",
                "Agents with an open telemetry stream",
                m.connected_agents.clone(),
            );
            r.register("database_bytes", "Size of the database on disk", m.database_bytes.clone());
            r.register(
                "forward_queued",
                "Messages waiting in the forwarder's queue",
                m.forward_queued.clone(),
            );
            r.register(
                "forward_queued_bytes",
                "Bytes waiting in the forwarder's queue",
                m.forward_queued_bytes.clone(),
            );
            r.register(
                "forward_dropped",
                "Forwarder messages dropped at the queue cap",
                m.forward_dropped.clone(),
            );
            r.register(
                "tls_handshakes_accepted",
                "TLS handshakes completed on the gRPC port",
                m.tls_accepted.clone(),
            );
            r.register("tls_handshakes_failed", "TLS handshakes refused or broken", m.tls_failed.clone());
            r.register(
                "tls_handshakes_timed_out",
                "TLS handshakes not finished in time",
                m.tls_timed_out.clone(),
            );
            r.register(
                "store_writable",
                "1 when the store takes writes, 0 when it fails (disk full)",
                m.store_writable.clone(),
            );
            r.register(
                "correlation_backlog",
                "Alerts stored and not yet correlated into incidents (cursors after the correlator's position)",
                m.correlation_backlog.clone(),
            );
        }
        m
    }

    /// Counts one operator call.
    pub fn operator_call(&self, method: &str, code: &str, elapsed: Duration) {
        self.operator_calls.get_or_create(&CallLabels { method: method.into(), code: code.into() }).inc();
        self.operator_seconds
            .get_or_create(&MethodLabel { method: method.into() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn enrollment(&self, outcome: &str) {
        self.enrollments.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }
}

/// What the endpoints read when asked.
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub store: crate::store::Store,
    pub streams: Arc<crate::registry::StreamRegistry>,
    pub tls: Arc<crate::tls::TlsStats>,
}

/// Whether the store takes writes now (a probe write, flushed).
fn writable(store: &crate::store::Store) -> Result<(), String> {
    store.probe_write().map_err(|e| e.to_string())
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metrics in the text format, gauges read now.
pub async fn render(src: &Sources) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &src.metrics;
    m.connected_agents.set(clamp(src.streams.connected() as u64));
    m.tls_accepted.set(clamp(src.tls.accepted.load(Relaxed)));
    m.tls_failed.set(clamp(src.tls.failed.load(Relaxed)));
    m.tls_timed_out.set(clamp(src.tls.timed_out.load(Relaxed)));
    let store = src.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        (
            store.size_on_disk().ok(),
            store.forward_stats().ok(),
            writable(&store).is_ok(),
            store.counter_value(crate::supervise::UPSTREAM_DROPPED).ok(),
            store.correlated_cursor().ok().map(|done| (*store.alert_cursor().borrow()).saturating_sub(done)),
        )
    })
    .await;
    if let Ok((size, fwd, ok, up, backlog)) = read {
        if let Some(b) = backlog {
            m.correlation_backlog.set(clamp(b));
        }
        if let Some(up) = up {
            m.upstream_dropped.set(clamp(up));
        }
        if let Some(size) = size {
            m.database_bytes.set(clamp(size));
        }
        if let Some(f) = fwd {
            m.forward_queued.set(clamp(f.queued));
            m.forward_queued_bytes.set(clamp(f.queued_bytes));
            m.forward_dropped.set(clamp(f.dropped));
        }
        m.store_writable.set(i64::from(ok));
    }
    let mut out = String::new();
    let r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = encode(&mut out, &r) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

async fn metrics(State(src): State<Arc<Sources>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        render(&src).await,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(src): State<Arc<Sources>>) -> impl IntoResponse {
    let store = src.store.clone();
    match tokio::task::spawn_blocking(move || writable(&store)).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_string()),
        Ok(Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the store refuses writes: {e}\n"))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

pub fn router(src: Arc<Sources>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(src)
}

/// Serves the endpoints on `listener` until `shutdown`.
pub async fn serve(src: Arc<Sources>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = router(src);
    let stop = async move { crate::registry::until_true(&mut shutdown).await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}

/// The default address when `[metrics]` is on without `listen`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
