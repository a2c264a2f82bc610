//! Collector configuration (`canhgac-collector serve --config FILE`).
//!
//! Every field is optional; command-line flags override the file. See
//! `deploy/collector.toml` for a documented example (parsed by a test).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use canhgac_proto::conf::{ConfigError, Source, Spanned};
use serde::Deserialize;

use crate::{
    forward::{ForwardConfig, Target},
    rules::{Regulation, RegulationFiles},
};

/// Settings that a reload (SIGHUP) may replace while the collector runs:
/// each reader takes the value current at its call, so a call never sees
/// half of one configuration and half of another.
#[derive(Debug, Clone)]
pub struct Live<T>(tokio::sync::watch::Receiver<Arc<T>>);

impl<T> Live<T> {
    /// A value and the sender that replaces it.
    pub fn new(value: T) -> (tokio::sync::watch::Sender<Arc<T>>, Live<T>) {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(value));
        (tx, Live(rx))
    }

    /// A value nothing replaces.
    pub fn fixed(value: T) -> Live<T> {
        Live::new(value).1
    }

    /// The value now.
    pub fn get(&self) -> Arc<T> {
        self.0.borrow().clone()
    }
}

pub const DEFAULT_MAX_BATCH_BYTES: u32 = 4 * 1024 * 1024;
pub const DEFAULT_MAX_BATCH_RECORDS: u32 = 10_000;

/// Validated configuration of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Largest encoded `Batch` accepted; larger ones get `BatchRejected`.
    pub max_batch_bytes: u32,
    pub max_batch_records: u32,
    /// A TLS handshake not finished within this time is dropped.
    pub handshake_timeout: Duration,
    /// Failed enrollments from one address within the window before that
    /// address is refused for the rest of it.
    pub enrollment_failures: usize,
    pub enrollment_failure_window: Duration,
    /// Lifetime of agent certificates (enrollment and renewal).
    pub agent_certificate_ttl: Duration,
    /// Default and upper bound of enrollment-token validity.
    pub enrollment_token_ttl: Duration,
    pub max_enrollment_token_ttl: Duration,
    /// Interval the collector asks agents to send heartbeats at.
    pub heartbeat_interval: Duration,
    /// An agent not heard from for longer raises an `agent-silent` alert
    /// and counts as offline.
    pub agent_silence_limit: Duration,
    /// Alerts with the same key join an incident within this window.
    pub correlation_window: Duration,
    /// How often retention runs (0: never).
    pub retention_interval: Duration,
    /// How often the audit chain's head is signed and kept as a checkpoint.
    pub audit_head_interval: Duration,
    /// Regulatory data (categories, rule packs, periods).
    pub regulation: Arc<Regulation>,
    /// Forwarding of alerts and incident changes to a SIEM or upstream.
    pub forward: Option<ForwardConfig>,
    /// The operator console (`None`: not served).
    pub console: Option<crate::console::ConsoleConfig>,
    /// Reports made when their period ends (`[[reports.schedule]]`).
    pub report_schedule: Vec<crate::report::schedule::Entry>,
    /// How often the schedule looks for periods that have ended.
    pub report_check_interval: Duration,
    /// Prometheus metrics and health endpoints (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// `[log] format`: text (default) or JSON lines.
    pub log_format: canhgac_proto::files::LogFormat,
    /// `[store]`: where the collector keeps its data.
    pub store: StoreConfig,
    /// `[upstream] alert_severity`: alerts this severe or more (1 highest)
    /// go to the upstream collector, once `upstream enroll` has been run;
    /// 0 sends incidents only.
    pub upstream_alert_severity: u32,
}

/// `[store]`: the embedded sled database under `data_dir` (default), or
/// PostgreSQL, which several collectors can share.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    #[default]
    Sled,
    Postgres(crate::store::PgOptions),
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            data_dir,
            listen: SocketAddr::from(([0, 0, 0, 0], canhgac_proto::DEFAULT_PORT)),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            handshake_timeout: Duration::from_secs(10),
            enrollment_failures: 10,
            enrollment_failure_window: Duration::from_secs(60),
            agent_certificate_ttl: Duration::from_secs(30 * 86_400),
            enrollment_token_ttl: Duration::from_secs(86_400),
            max_enrollment_token_ttl: Duration::from_secs(30 * 86_400),
            heartbeat_interval: Duration::from_secs(30),
            agent_silence_limit: Duration::from_secs(300),
            correlation_window: Duration::from_secs(3600),
            retention_interval: Duration::from_secs(3600),
            audit_head_interval: Duration::from_secs(900),
            console: None,
            report_schedule: Vec::new(),
            report_check_interval: Duration::from_secs(60),
            metrics_listen: None,
            log_format: canhgac_proto::files::LogFormat::Text,
            regulation: Arc::new(Regulation::embedded()),
            forward: None,
            store: StoreConfig::Sled,
            upstream_alert_severity: 2,
        }
    }

    /// Reads and validates a configuration file. `data_dir` from the file
    /// is used when `data_dir` is `None`.
    pub fn load(path: &std::path::Path, data_dir: Option<PathBuf>) -> Result<ServeConfig, ConfigError> {
        let src = Source::read(path)?;
        let raw: RawConfig = src.parse()?;
        if raw.version.get_ref() != &1 {
            return Err(src.error_at(
                raw.version.span(),
                format!("unsupported version {} (expected 1)", raw.version.get_ref()),
            ));
        }
        let data_dir = match (data_dir, raw.data_dir) {
            (Some(d), _) => d,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(src.error(Some("data_dir"), "missing: set it here or pass --data-dir"));
            }
        };
        let mut c = ServeConfig::new(data_dir);
        if let Some(l) = &raw.listen {
            c.listen = l
                .get_ref()
                .parse()
                .map_err(|_| src.error_at(l.span(), format!("invalid listen address `{}`", l.get_ref())))?;
        }
        if let Some(v) = &raw.limits.max_batch_bytes {
            let n = src.size(v)?;
            if !(64 * 1024..=64 * 1024 * 1024).contains(&n) {
                return Err(src.error_at(v.span(), "must be between 64KiB and 64MiB"));
            }
            c.max_batch_bytes = n as u32;
        }
        if let Some(v) = &raw.limits.max_batch_records {
            if !(1..=1_000_000).contains(v.get_ref()) {
                return Err(src.error_at(v.span(), "must be between 1 and 1000000"));
            }
            c.max_batch_records = *v.get_ref();
        }
        let bounded = |v: &Spanned<String>, min: Duration, max: Duration| -> Result<Duration, ConfigError> {
            let d = src.duration(v)?;
            if d < min || d > max {
                return Err(src.error_at(
                    v.span(),
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ));
            }
            Ok(d)
        };
        const DAY: u64 = 86_400;
        if let Some(v) = &raw.limits.handshake_timeout {
            c.handshake_timeout = bounded(v, Duration::from_secs(1), Duration::from_secs(300))?;
        }
        if let Some(v) = &raw.limits.enrollment_failures {
            if !(1..=10_000).contains(v.get_ref()) {
                return Err(src.error_at(v.span(), "must be between 1 and 10000"));
            }
            c.enrollment_failures = *v.get_ref() as usize;
        }
        if let Some(v) = &raw.limits.enrollment_failure_window {
            c.enrollment_failure_window = bounded(v, Duration::from_secs(1), Duration::from_secs(86_400))?;
        }
        if let Some(v) = &raw.pki.agent_certificate_ttl {
            c.agent_certificate_ttl = bounded(v, Duration::from_secs(10), Duration::from_secs(397 * DAY))?;
        }
        if let Some(v) = &raw.pki.enrollment_token_ttl {
            c.enrollment_token_ttl = bounded(v, Duration::from_secs(1), Duration::from_secs(30 * DAY))?;
        }
        if let Some(v) = &raw.telemetry.heartbeat_interval {
            c.heartbeat_interval = bounded(v, Duration::from_secs(1), Duration::from_secs(3600))?;
        }
        if let Some(v) = &raw.supervision.agent_silence_limit {
            c.agent_silence_limit = bounded(v, Duration::from_secs(1), Duration::from_secs(30 * DAY))?;
            if c.agent_silence_limit <= c.heartbeat_interval {
                return Err(src.error_at(v.span(), "must be longer than telemetry.heartbeat_interval"));
            }
        }
        if let Some(v) = &raw.supervision.retention_interval {
            c.retention_interval = if v.get_ref() == "0" || v.get_ref() == "0s" {
                Duration::ZERO
            } else {
                bounded(v, Duration::from_secs(1), Duration::from_secs(7 * DAY))?
            };
        }
        if let Some(v) = &raw.supervision.audit_head_interval {
            c.audit_head_interval = bounded(v, Duration::from_secs(1), Duration::from_secs(DAY))?;
        }
        if let Some(con) = &raw.console {
            let listen = con.listen.get_ref().parse().map_err(|_| {
                src.error_at(
                    con.listen.span(),
                    format!("invalid console listen address `{}`", con.listen.get_ref()),
                )
            })?;
            let idle_timeout = match &con.idle_timeout {
                Some(v) => bounded(v, Duration::from_secs(60), Duration::from_secs(DAY))?,
                None => crate::console::DEFAULT_IDLE,
            };
            c.console = Some(crate::console::ConsoleConfig {
                listen,
                idle_timeout,
                bind_client_certificate: con.bind_client_certificate.unwrap_or(false),
            });
        }
        for e in &raw.reports.schedule {
            c.report_schedule.push(schedule_entry(&src, e)?);
        }
        c.log_format = src.log_format(&raw.log)?;
        c.metrics_listen = src.metrics_listen(raw.metrics.as_ref(), crate::metrics::default_listen())?;
        if let Some(v) = &raw.reports.check_interval {
            c.report_check_interval = bounded(v, Duration::from_secs(1), Duration::from_secs(3600))?;
        }
        if let Some(v) = &raw.incidents.correlation_window {
            c.correlation_window = bounded(v, Duration::from_secs(1), Duration::from_secs(30 * DAY))?;
        }
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let rel = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
        if let Some(f) = &raw.forward {
            let target = Target::parse(f.url.get_ref()).map_err(|e| src.error_at(f.url.span(), e))?;
            let read = |p: &Spanned<PathBuf>| {
                std::fs::read_to_string(rel(p.get_ref())).map_err(|e| {
                    src.error_at(p.span(), format!("cannot read {}: {e}", p.get_ref().display()))
                })
            };
            let ca_pem = read(&f.ca_file)?;
            if canhgac_proto::client::parse_certs(&ca_pem, "forwarder CA").is_err() {
                return Err(src.error_at(f.ca_file.span(), "no PEM certificate in the file"));
            }
            let client = match (&f.client_cert_file, &f.client_key_file) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                (None, None) => None,
                _ => {
                    return Err(src.error(
                        Some("forward"),
                        "set both client_cert_file and client_key_file, or neither",
                    ));
                }
            };
            let mut fc = ForwardConfig {
                target,
                ca_pem,
                client,
                server_name: f.server_name.clone(),
                alerts: f.alerts.unwrap_or(true),
                incidents: f.incidents.unwrap_or(true),
                min_severity: 4,
                max_queue_bytes: 256 * 1024 * 1024,
                batch_max: 500,
                retry_max: Duration::from_secs(60),
            };
            if let Some(v) = &f.min_severity {
                if !(1..=4).contains(v.get_ref()) {
                    return Err(src.error_at(v.span(), "must be between 1 and 4"));
                }
                fc.min_severity = *v.get_ref();
            }
            if let Some(v) = &f.max_queue_bytes {
                let n = src.size(v)?;
                if n < 1024 * 1024 {
                    return Err(src.error_at(v.span(), "must be at least 1MiB"));
                }
                fc.max_queue_bytes = n;
            }
            if let Some(v) = &f.batch_max {
                if !(1..=10_000).contains(v.get_ref()) {
                    return Err(src.error_at(v.span(), "must be between 1 and 10000"));
                }
                fc.batch_max = *v.get_ref() as usize;
            }
            if let Some(v) = &f.retry_max {
                fc.retry_max = bounded(v, Duration::from_secs(1), Duration::from_secs(3600))?;
            }
            c.forward = Some(fc);
        }
        c.store = store_config(&src, &raw.store, &rel)?;
        if let Some(v) = &raw.upstream.alert_severity {
            if *v.get_ref() > 4 {
                return Err(src.error_at(
                    v.span(),
                    "`upstream.alert_severity` must be 0 (incidents only) to 4 (every alert)",
                ));
            }
            c.upstream_alert_severity = *v.get_ref();
        }
        let files = RegulationFiles {
            regulation: raw.regulation.regulation_file.as_ref().map(rel),
            categories: raw.regulation.categories_file.as_ref().map(rel),
            rule_packs: raw.regulation.rule_packs_file.as_ref().map(rel),
            active_packs: raw.incidents.rule_packs.as_ref().map(|v| v.get_ref().clone()),
        };
        c.regulation = Arc::new(Regulation::load(&files).map_err(|e| {
            if e.file.starts_with("(embedded)") {
                match &raw.incidents.rule_packs {
                    Some(v) => src.error_at(v.span(), e.message.clone()),
                    None => e,
                }
            } else {
                e
            }
        })?);
        Ok(c)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Spanned<u32>,
    data_dir: Option<PathBuf>,
    listen: Option<Spanned<String>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    pki: RawPki,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    supervision: RawSupervision,
    #[serde(default)]
    incidents: RawIncidents,
    #[serde(default)]
    regulation: RawRegulation,
    forward: Option<RawForward>,
    console: Option<RawConsole>,
    #[serde(default)]
    reports: RawReports,
    metrics: Option<canhgac_proto::conf::RawMetrics>,
    #[serde(default)]
    log: canhgac_proto::conf::RawLog,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    upstream: RawUpstream,
}

/// `[upstream]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    alert_severity: Option<Spanned<u32>>,
}

/// `[store]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    /// `sled` (default) or `postgres`.
    backend: Option<Spanned<String>>,
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB[?sslmode=…]`.
    url: Option<Spanned<String>>,
    /// A file holding the database password (used when the URL has none;
    /// `PGPASSWORD` otherwise).
    password_file: Option<Spanned<PathBuf>>,
    /// CA certificates (PEM) of the database server: TLS to the database.
    ca_file: Option<Spanned<PathBuf>>,
    /// Most connections this collector opens (default 8).
    max_connections: Option<Spanned<u32>>,
}

/// Checks `[store]`; the password never appears in an error.
fn store_config(
    src: &Source,
    raw: &RawStore,
    rel: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<StoreConfig, ConfigError> {
    let backend = raw.backend.as_ref().map(|b| b.get_ref().as_str()).unwrap_or("sled");
    match backend {
        "sled" => {
            if raw.url.is_some() || raw.password_file.is_some() || raw.ca_file.is_some() {
                return Err(
                    src.error(Some("store"), "url, password_file and ca_file need backend = \"postgres\"")
                );
            }
            Ok(StoreConfig::Sled)
        }
        "postgres" => {
            let Some(url) = &raw.url else {
                return Err(src.error(
                    Some("store"),
                    "backend = \"postgres\" needs url = \"postgres://USER@HOST:PORT/DB\"",
                ));
            };
            let parsed =
                <tokio_postgres::Config as std::str::FromStr>::from_str(url.get_ref()).map_err(|e| {
                    src.error_at(
                        url.span(),
                        format!(
                            "invalid database URL `{}`: {e}",
                            crate::store::pg::redact_url(url.get_ref())
                        ),
                    )
                })?;
            if parsed.get_hosts().is_empty() {
                return Err(src.error_at(url.span(), "the database URL names no host"));
            }
            let mut opts = crate::store::PgOptions::new(url.get_ref().clone());
            if let Some(p) = &raw.password_file {
                let text = std::fs::read_to_string(rel(p.get_ref())).map_err(|e| {
                    src.error_at(p.span(), format!("cannot read {}: {e}", p.get_ref().display()))
                })?;
                let pw = text.trim_end_matches(['\r', '\n']).to_string();
                if pw.is_empty() {
                    return Err(src.error_at(p.span(), "the password file is empty"));
                }
                opts.password = Some(pw);
            } else if let Ok(pw) = std::env::var("PGPASSWORD") {
                opts.password = Some(pw);
            }
            if let Some(ca) = &raw.ca_file {
                let pem = std::fs::read(rel(ca.get_ref())).map_err(|e| {
                    src.error_at(ca.span(), format!("cannot read {}: {e}", ca.get_ref().display()))
                })?;
                if canhgac_proto::client::parse_certs(&String::from_utf8_lossy(&pem), "database CA").is_err()
                {
                    return Err(src.error_at(ca.span(), "no PEM certificate in the file"));
                }
                opts.ca_pem = Some(pem);
            }
            if let Some(n) = &raw.max_connections {
                if !(1..=1000).contains(n.get_ref()) {
                    return Err(src.error_at(n.span(), "must be between 1 and 1000"));
                }
                opts.max_connections = *n.get_ref() as usize;
            }
            Ok(StoreConfig::Postgres(opts))
        }
        other => Err(src.error_at(
            raw.backend.as_ref().map(|b| b.span()).unwrap_or(0..0),
            format!("unknown store backend `{other}` (sled or postgres)"),
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReports {
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    check_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    kind: Spanned<String>,
    agency: Option<Spanned<String>>,
    formats: Option<Spanned<Vec<String>>>,
    language: Option<Spanned<String>>,
}

/// One `[[reports.schedule]]` entry, checked.
fn schedule_entry(src: &Source, e: &RawSchedule) -> Result<crate::report::schedule::Entry, ConfigError> {
    use crate::report::{Kind, Lang, render::Format, schedule::Scope};
    let kind = Kind::parse(e.kind.get_ref()).filter(|k| *k != Kind::Incident).ok_or_else(|| {
        src.error_at(
            e.kind.span(),
            format!("`{}` is not a periodic report (daily, weekly, six-month, annual)", e.kind.get_ref()),
        )
    })?;
    let scope = match e.agency.as_ref().map(|a| (a, a.get_ref().as_str())) {
        None | Some((_, "each")) => Scope::Each,
        Some((_, "all")) => Scope::All,
        Some((a, code)) => {
            if code.is_empty() || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(src.error_at(a.span(), format!("`{code}`: `each`, `all` or an agency code")));
            }
            Scope::Agency(code.to_string())
        }
    };
    let formats = match &e.formats {
        None => vec![Format::Html, Format::Pdf],
        Some(list) => {
            let mut out = Vec::new();
            for f in list.get_ref() {
                let fmt = Format::parse(f).filter(|_| !f.is_empty()).ok_or_else(|| {
                    src.error_at(list.span(), format!("`{f}` is not a report format (html, pdf, csv, json)"))
                })?;
                if !out.contains(&fmt) {
                    out.push(fmt);
                }
            }
            if out.is_empty() {
                return Err(src.error_at(list.span(), "at least one format"));
            }
            out
        }
    };
    let lang = match &e.language {
        None => Lang::Vi,
        Some(l) => Lang::parse(l.get_ref())
            .ok_or_else(|| src.error_at(l.span(), format!("`{}` is not vi or en", l.get_ref())))?,
    };
    Ok(crate::report::schedule::Entry { kind, scope, formats, lang })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    listen: Spanned<String>,
    idle_timeout: Option<Spanned<String>>,
    bind_client_certificate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    url: Spanned<String>,
    ca_file: Spanned<PathBuf>,
    client_cert_file: Option<Spanned<PathBuf>>,
    client_key_file: Option<Spanned<PathBuf>>,
    server_name: Option<String>,
    alerts: Option<bool>,
    incidents: Option<bool>,
    min_severity: Option<Spanned<u32>>,
    max_queue_bytes: Option<Spanned<String>>,
    batch_max: Option<Spanned<u32>>,
    retry_max: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSupervision {
    agent_silence_limit: Option<Spanned<String>>,
    retention_interval: Option<Spanned<String>>,
    audit_head_interval: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIncidents {
    correlation_window: Option<Spanned<String>>,
    rule_packs: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRegulation {
    regulation_file: Option<PathBuf>,
    categories_file: Option<PathBuf>,
    rule_packs_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_batch_bytes: Option<Spanned<String>>,
    max_batch_records: Option<Spanned<u32>>,
    handshake_timeout: Option<Spanned<String>>,
    enrollment_failures: Option<Spanned<u32>>,
    enrollment_failure_window: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPki {
    agent_certificate_ttl: Option<Spanned<String>>,
    enrollment_token_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    heartbeat_interval: Option<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, text).unwrap();
        ServeConfig::load(&path, Some("/tmp/x".into()))
    }

    #[test]
    fn deploy_example_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.toml");
        let c = ServeConfig::load(&path, None).unwrap();
        assert_eq!(c.listen.port(), canhgac_proto::DEFAULT_PORT);
        assert_eq!(c.agent_certificate_ttl, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = load("version = 1\n[limits]\nmax_batch_bytes = \"1KiB\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("limits.max_batch_bytes")));
        let e = load("version = 1\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (2, Some("listen")));
        let e = load("version = 2\n").unwrap_err();
        assert!(e.message.contains("unsupported version"));
        let e = load("version = 1\n[pki]\nagent_ttl = \"1d\"\n").unwrap_err();
        assert!(e.message.contains("unknown field `agent_ttl`"), "{e}");
        let e = load("version = 1\n[incidents]\nrule_packs = [\"1999\"]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unknown rule pack `1999`"), "{e}");
        let e = load("version = 1\n[supervision]\nagent_silence_limit = \"10s\"\n").unwrap_err();
        assert!(e.message.contains("longer than telemetry.heartbeat_interval"), "{e}");
    }

    #[test]
    fn report_schedule_entries_are_checked() {
        use crate::report::{Kind, Lang, render::Format, schedule::Scope};
        let c = load(
            "version = 1\n[reports]\ncheck_interval = \"5s\"\n[[reports.schedule]]\nkind = \"weekly\"\n\
             [[reports.schedule]]\nkind = \"annual\"\nagency = \"all\"\nformats = [\"pdf\", \"csv\"]\nlanguage = \"en\"\n\
             [[reports.schedule]]\nkind = \"daily\"\nagency = \"SO-A\"\nformats = [\"json\"]\n",
        )
        .unwrap();
        assert_eq!(c.report_check_interval, Duration::from_secs(5));
        let e = &c.report_schedule;
        assert_eq!(
            (e[0].kind, &e[0].scope, &e[0].formats, e[0].lang),
            (Kind::Weekly, &Scope::Each, &vec![Format::Html, Format::Pdf], Lang::Vi)
        );
        assert_eq!(
            (e[1].kind, &e[1].scope, &e[1].formats, e[1].lang),
            (Kind::Annual, &Scope::All, &vec![Format::Pdf, Format::Csv], Lang::En)
        );
        assert_eq!(e[2].scope, Scope::Agency("SO-A".into()));
        for (text, line, what) in [
            ("[[reports.schedule]]\nkind = \"monthly\"\n", 3, "not a periodic report"),
            ("[[reports.schedule]]\nkind = \"incident\"\n", 3, "not a periodic report"),
            ("[[reports.schedule]]\nkind = \"daily\"\nformats = [\"docx\"]\n", 4, "not a report format"),
            ("[[reports.schedule]]\nkind = \"daily\"\nformats = []\n", 4, "at least one format"),
            ("[[reports.schedule]]\nkind = \"daily\"\nlanguage = \"fr\"\n", 4, "not vi or en"),
            ("[[reports.schedule]]\nkind = \"daily\"\nagency = \"../x\"\n", 4, "agency code"),
            ("[[reports.schedule]]\nkind = \"daily\"\nwhen = \"now\"\n", 4, "unknown field"),
        ] {
            let e = load(&format!("version = 1\n{text}")).unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }
}
