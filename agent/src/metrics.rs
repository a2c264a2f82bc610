//! Prometheus metrics and health endpoints of the agent (`[metrics]
//! listen`, off by default, `127.0.0.1:9465` when on without an address),
//! plain HTTP:
//!
//! * `GET /metrics`: every counter the heartbeat carries (packets, bytes,
//!   kernel and agent drops, spool depth and bytes, drops by severity,
//!   reconnects, rule and host-sensor counters), alerts committed by
//!   detector, the age of the oldest record waiting for its
//!   acknowledgement, and acknowledgement latency;
//! * `GET /healthz`: the process answers;
//! * `GET /readyz`: 200 while the spool takes records, 503 with the reason
//!   while its disk is full.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::ConstCounter, family::Family, gauge::ConstGauge, gauge::Gauge},
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};

use crate::{counters::Counters, spool::Spool};

/// Heartbeat counters that are a level, not a running total.
const GAUGES: &[&str] = &[
    "spool_records",
    "spool_bytes",
    "spool_max_bytes",
    "spool_disk_bytes",
    "spool_payload_cap",
    "spool_full",
    "ioc_entries",
    "rules_loaded",
    "rules_skipped",
    "uptime_seconds",
    "host_fim_files",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Detector {
    detector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Severity {
    severity: String,
}

pub struct Sources {
    pub counters: Arc<Counters>,
    pub spool: Spool,
}

/// The metrics in the text format, read now.
pub fn render(src: &Sources) -> String {
    let snapshot = src.counters.snapshot(&src.spool.stats());
    let mut r = Registry::with_prefix("canhgac_agent");
    if let serde_json::Value::Object(all) = canhgac_proto::json::counters(&snapshot) {
        for (name, v) in all {
            let help = name.replace('_', " ");
            match v {
                serde_json::Value::Bool(b) => r.register(name, help, ConstGauge::new(i64::from(b))),
                serde_json::Value::Number(n) => {
                    let n = n.as_u64().unwrap_or(0);
                    if GAUGES.contains(&name.as_str()) {
                        r.register(name, help, ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)));
                    } else {
                        r.register(name, help, ConstCounter::new(n));
                    }
                }
                _ => {}
            }
        }
    }
    let by_severity = Family::<Severity, Gauge>::default();
    for s in &snapshot.spool_dropped_by_severity {
        by_severity
            .get_or_create(&Severity { severity: s.severity.to_string() })
            .set(i64::try_from(s.count).unwrap_or(i64::MAX));
    }
    r.register(
        "spool_dropped_by_severity",
        "Records the spool dropped, by alert severity (5: events)",
        by_severity,
    );
    let by_detector = Family::<Detector, Gauge>::default();
    for (d, n) in src.spool.alerts_by_detector() {
        by_detector.get_or_create(&Detector { detector: d }).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register("alerts_by_detector", "Alerts committed to the spool since start, by detector", by_detector);
    let age = src
        .spool
        .oldest_time()
        .ok()
        .flatten()
        .map(|t| (time::OffsetDateTime::now_utc() - t).as_seconds_f64().max(0.0))
        .unwrap_or(0.0);
    r.register(
        "spool_oldest_record_age_seconds",
        "Age (by event time) of the oldest record waiting for its acknowledgement; 0 when none waits",
        ConstGauge::new(age),
    );
    r.register(
        "ack_seconds",
        "Seconds from sending a batch to the collector's acknowledgement",
        src.counters.ack_seconds.clone(),
    );
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

async fn metrics(State(src): State<Arc<Sources>>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || render(&src)).await.unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(src): State<Arc<Sources>>) -> impl IntoResponse {
    if src.spool.stats().full {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the spool's disk is full\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

pub fn router(src: Arc<Sources>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(src)
}

/// Binds `addr` and serves until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    src: Arc<Sources>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health endpoints listening (http)");
    let app = router(src);
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}
