//! The optional forwarder: alerts and incident changes to a SIEM or an
//! upstream (national) system, as syslog (RFC 5424, TLS transport of RFC
//! 5425 with octet-counting framing) or as JSON over HTTPS (a POST of a
//! JSON array per batch).
//!
//! Two tasks around a durable queue in the store: the enqueuer follows the
//! committed alert and incident-change cursors and appends one formatted
//! message per record, moving its positions in the same transaction; the
//! sender delivers the oldest messages and deletes them only after the
//! receiver accepted them (syslog: written and flushed over TLS; HTTPS: a
//! 2xx answer). Syslog has no acknowledgements, so a receiver that dies
//! after reading may lose the messages in flight; HTTPS is acknowledged
//! per batch. A receiver that is down only delays delivery; at the queue
//! cap the oldest messages are evicted and counted. On first start the
//! forwarder begins at the current end of both feeds.

use std::{sync::Arc, time::Duration};

use canhgac_proto::{client::parse_certs, timefmt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use crate::{
    incident,
    store::{IncidentChangeRec, RecordRec, Store, StoreError, SystemRec},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `syslog+tls://host:port`
    Syslog { host: String, port: u16 },
    /// `https://host:port/path`
    Https { host: String, port: u16, path: String },
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("invalid forwarder url `{url}`"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = match scheme {
            "syslog+tls" => 6514,
            "https" => 443,
            _ => return Err(format!("invalid forwarder url `{url}`: scheme must be syslog+tls or https")),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_matches(['[', ']']).to_string(),
                p.parse().map_err(|_| format!("invalid port in `{url}`"))?,
            ),
            _ => (hostport.trim_matches(['[', ']']).to_string(), default_port),
        };
        if host.is_empty() {
            return Err(format!("invalid forwarder url `{url}`: no host"));
        }
        Ok(match scheme {
            "syslog+tls" => Target::Syslog { host, port },
            _ => Target::Https { host, port, path: path.to_string() },
        })
    }

    fn host_port(&self) -> (&str, u16) {
        match self {
            Target::Syslog { host, port } | Target::Https { host, port, .. } => (host, *port),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub target: Target,
    /// CA certificates (PEM) the receiver's certificate must chain to.
    pub ca_pem: String,
    /// Optional client certificate and key (PEM) for mutual TLS.
    pub client: Option<(String, String)>,
    /// Name to verify the receiver's certificate for (default: the host).
    pub server_name: Option<String>,
    pub alerts: bool,
    pub incidents: bool,
    /// Forward alerts with severity <= this (1 highest).
    pub min_severity: u32,
    pub max_queue_bytes: u64,
    pub batch_max: usize,
    pub retry_max: Duration,
}

/// The JSON payload of one alert.
fn alert_payload(cursor: u64, r: &RecordRec) -> Value {
    json!({
        "type": "alert",
        "cursor": cursor,
        "agency": r.agency,
        "agent_id": r.agent_id,
        "severity": r.severity,
        "time": timefmt::rfc3339(timefmt::from_micros(r.time_us)),
        "eve": serde_json::from_str::<Value>(&r.eve_json).unwrap_or(Value::Null),
    })
}

/// What the forwarder needs: the store, the rules (for incident views) and
/// the shutdown signal.
pub struct ForwardDeps {
    pub store: crate::store::Store,
    pub regulation: Arc<crate::rules::Regulation>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

fn incident_payload(cursor: u64, ch: &IncidentChangeRec, deps: &ForwardDeps) -> Option<Value> {
    let inc = ch.incident.as_ref()?;
    let systems: std::collections::HashMap<u64, SystemRec> =
        deps.store.system(inc.system).ok().flatten().map(|s| (s.id, s)).into_iter().collect();
    let v = incident::View {
        reg: &deps.regulation,
        systems: &systems,
        now_us: timefmt::micros(OffsetDateTime::now_utc()),
    };
    let m = incident::incident_msg(inc, &v);
    let now = OffsetDateTime::now_utc();
    let time = |t: &prost_types::Timestamp| timefmt::rfc3339(timefmt::from_timestamp(t));
    let relative = |t: &prost_types::Timestamp| timefmt::relative(timefmt::from_timestamp(t), now);
    let mut j = canhgac_proto::json::incident(&m, &time, &relative);
    j["type"] = json!("incident");
    j["cursor"] = json!(cursor);
    j["change"] = json!(ch.change);
    Some(j)
}

/// Syslog severity for an alert/incident severity (1 highest).
fn syslog_severity(sev: u64) -> u64 {
    match sev {
        1 => 2, // critical
        2 => 3, // error
        3 => 4, // warning
        _ => 5, // notice
    }
}

/// One RFC 5424 message (facility local4), framed by octet counting.
pub fn syslog_frame(payload: &Value, hostname: &str) -> Vec<u8> {
    let kind = payload["type"].as_str().unwrap_or("event");
    let pri = 20 * 8 + syslog_severity(payload["severity"].as_u64().unwrap_or(4));
    let sd_escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]");
    let msg = format!(
        "<{pri}>1 {} {} canhgac - {kind} [canhgac@32473 agency=\"{}\" cursor=\"{}\"] \u{feff}{}",
        timefmt::rfc3339(OffsetDateTime::now_utc()),
        if hostname.is_empty() { "-" } else { hostname },
        sd_escape(payload["agency"].as_str().unwrap_or("")),
        payload["cursor"],
        payload
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

/// One enqueue step; returns how many records were looked at.
fn enqueue_once(deps: &ForwardDeps, cfg: &ForwardConfig) -> Result<usize, StoreError> {
    let store = &deps.store;
    let (mut apos, mut cpos) = match store.forward_positions()? {
        Some(p) => p,
        None => (*store.alert_cursor().borrow(), *store.incident_change_cursor().borrow()),
    };
    let mut msgs = Vec::new();
    let mut seen = 0;
    if cfg.alerts {
        for (c, r) in store.alerts_after(apos, 500)? {
            seen += 1;
            apos = c;
            if r.severity == 0 || r.severity <= cfg.min_severity {
                msgs.push(alert_payload(c, &r).to_string().into_bytes());
            }
        }
    } else {
        apos = *store.alert_cursor().borrow();
    }
    if cfg.incidents {
        for (c, ch) in store.incident_changes_after(cpos, 500)? {
            seen += 1;
            cpos = c;
            if let Some(p) = incident_payload(c, &ch, deps) {
                msgs.push(p.to_string().into_bytes());
            }
        }
    } else {
        cpos = *store.incident_change_cursor().borrow();
    }
    store.forward_enqueue(&msgs, apos, cpos, cfg.max_queue_bytes)?;
    Ok(seen)
}

fn tls_connector(cfg: &ForwardConfig) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(&cfg.ca_pem, "forwarder CA").map_err(|e| e.to_string())? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &cfg.client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                parse_certs(cert, "forwarder client certificate").map_err(|e| e.to_string())?,
                canhgac_proto::client::parse_key(key, "forwarder client key").map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Delivers one batch; `Ok` only when the receiver accepted all of it.
async fn deliver(
    cfg: &ForwardConfig,
    connector: &TlsConnector,
    conn: &mut Option<tokio_rustls::client::TlsStream<TcpStream>>,
    batch: &[(u64, Vec<u8>)],
    hostname: &str,
) -> Result<(), String> {
    let (host, port) = cfg.target.host_port();
    let name = cfg.server_name.clone().unwrap_or_else(|| host.to_string());
    let server_name = rustls_pki_types::ServerName::try_from(name.clone())
        .map_err(|_| format!("invalid server name `{name}`"))?;
    let connect = || async {
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("connecting to {host}:{port} timed out"))?
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name.clone(), tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))
    };
    match &cfg.target {
        Target::Syslog { .. } => {
            // Syslog has no acknowledgements: a receiver that closed the
            // connection shows as readable-at-EOF; check before writing so
            // that a batch is not written into a dead connection.
            if let Some(s) = conn.as_mut() {
                let mut probe = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => *conn = None,
                    Ok(Ok(_)) | Err(_) => {}
                }
            }
            if conn.is_none() {
                *conn = Some(connect().await?);
            }
            let Some(s) = conn.as_mut() else { return Err("no connection".into()) };
            let mut buf = Vec::new();
            for (_, m) in batch {
                let v: Value = serde_json::from_slice(m).unwrap_or(Value::Null);
                buf.extend_from_slice(&syslog_frame(&v, hostname));
            }
            let r = async {
                s.write_all(&buf).await?;
                s.flush().await
            }
            .await;
            if let Err(e) = r {
                *conn = None;
                return Err(format!("syslog write: {e}"));
            }
            Ok(())
        }
        Target::Https { path, .. } => {
            let mut s = connect().await?;
            let mut body = b"[".to_vec();
            for (i, (_, m)) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(m);
            }
            body.push(b']');
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: canhgac-collector\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut answer = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(30), async {
                s.write_all(head.as_bytes()).await?;
                s.write_all(&body).await?;
                s.flush().await?;
                let mut chunk = [0u8; 4096];
                // The status line is all that matters; stop at the end of
                // the headers or of the connection.
                while answer.len() < 64 * 1024 {
                    let n = s.read(&mut chunk).await?;
                    answer.extend_from_slice(&chunk[..n]);
                    if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            match r {
                Err(_) => return Err("HTTPS request timed out".into()),
                Ok(Err(e)) if answer.is_empty() => return Err(format!("HTTPS request: {e}")),
                _ => {}
            }
            let status_line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string();
            let code: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            if (200..300).contains(&code) {
                Ok(())
            } else {
                Err(format!("receiver answered `{status_line}`"))
            }
        }
    }
}

/// Runs the forwarder until shutdown.
pub async fn run(deps: Arc<ForwardDeps>, cfg: ForwardConfig) {
    let connector = match tls_connector(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "forwarder disabled: bad TLS settings");
            return;
        }
    };
    let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    // Both in this task, so that nothing of the forwarder outlives it;
    // each stops at its next loop turn once shutdown is asked, never in
    // the middle of a delivery and the removal that follows it.
    tokio::join!(enqueue(&deps, &cfg), send(&deps, &cfg, &connector, &hostname));
}

/// Moves newly stored alerts and incident changes into the queue until
/// shutdown.
async fn enqueue(deps: &Arc<ForwardDeps>, cfg: &ForwardConfig) {
    let mut alerts = deps.store.alert_cursor();
    let mut changes = deps.store.incident_change_cursor();
    let mut shutdown = deps.shutdown.clone();
    while !*shutdown.borrow() {
        alerts.borrow_and_update();
        changes.borrow_and_update();
        let (s, c) = (deps.clone(), cfg.clone());
        let seen = match tokio::task::spawn_blocking(move || enqueue_once(&s, &c)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "forwarder queue");
                0
            }
            Err(_) => 0,
        };
        if seen > 0 {
            continue;
        }
        tokio::select! {
            _ = alerts.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
    }
}

/// Delivers the queue until shutdown.
async fn send(deps: &Arc<ForwardDeps>, cfg: &ForwardConfig, connector: &TlsConnector, hostname: &str) {
    let mut shutdown = deps.shutdown.clone();
    let mut conn = None;
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        let batch = match deps.store.forward_peek(cfg.batch_max) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "forwarder queue");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                _ = crate::registry::until_true(&mut shutdown) => return,
            }
        }
        match deliver(cfg, connector, &mut conn, &batch, hostname).await {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                let done: Vec<(u64, u64)> = batch.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
                if let Err(e) = remove(&deps.store, &done).await {
                    tracing::error!(error = %e, "forwarder queue");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, queued = batch.len(), "forwarding failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::registry::until_true(&mut shutdown) => return,
                }
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

async fn remove(store: &Store, done: &[(u64, u64)]) -> Result<(), StoreError> {
    store.forward_remove(done, true)?;
    store.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Target::parse("syslog+tls://siem.example:6514").unwrap(),
            Target::Syslog { host: "siem.example".into(), port: 6514 }
        );
        assert_eq!(
            Target::parse("syslog+tls://10.0.0.1").unwrap(),
            Target::Syslog { host: "10.0.0.1".into(), port: 6514 }
        );
        assert_eq!(
            Target::parse("https://ncsc.example/api/events").unwrap(),
            Target::Https { host: "ncsc.example".into(), port: 443, path: "/api/events".into() }
        );
        assert!(Target::parse("http://x").unwrap_err().contains("scheme"));
        assert!(Target::parse("https://x:notaport/").is_err());
    }

    #[test]
    fn syslog_frames_are_octet_counted_rfc5424() {
        let f = syslog_frame(&json!({"type": "alert", "agency": "SO-A", "cursor": 7, "severity": 1}), "soc");
        let text = String::from_utf8(f).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<162>1 "), "{msg}");
        assert!(
            msg.contains(" soc canhgac - alert [canhgac@32473 agency=\"SO-A\" cursor=\"7\"] \u{feff}{"),
            "{msg}"
        );
    }
}
