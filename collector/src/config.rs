//! Collector configuration (`canhgac-collector serve --config FILE`).
//!
//! Every field is optional; command-line flags override the file. See
//! `deploy/collector.toml` for a documented example (parsed by a test).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use canhgac_proto::conf::{ConfigError, Source, Spanned};
use serde::Deserialize;

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
    /// Lifetime of agent certificates (enrollment and renewal).
    pub agent_certificate_ttl: Duration,
    /// Default and upper bound of enrollment-token validity.
    pub enrollment_token_ttl: Duration,
    pub max_enrollment_token_ttl: Duration,
    /// Interval the collector asks agents to send heartbeats at.
    pub heartbeat_interval: Duration,
}

impl ServeConfig {
    pub fn new(data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            data_dir,
            listen: SocketAddr::from(([0, 0, 0, 0], canhgac_proto::DEFAULT_PORT)),
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
            handshake_timeout: Duration::from_secs(10),
            agent_certificate_ttl: Duration::from_secs(30 * 86_400),
            enrollment_token_ttl: Duration::from_secs(86_400),
            max_enrollment_token_ttl: Duration::from_secs(30 * 86_400),
            heartbeat_interval: Duration::from_secs(30),
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
        if let Some(v) = &raw.pki.agent_certificate_ttl {
            c.agent_certificate_ttl = bounded(v, Duration::from_secs(10), Duration::from_secs(397 * DAY))?;
        }
        if let Some(v) = &raw.pki.enrollment_token_ttl {
            c.enrollment_token_ttl = bounded(v, Duration::from_secs(1), Duration::from_secs(30 * DAY))?;
        }
        if let Some(v) = &raw.telemetry.heartbeat_interval {
            c.heartbeat_interval = bounded(v, Duration::from_secs(1), Duration::from_secs(3600))?;
        }
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_batch_bytes: Option<Spanned<String>>,
    max_batch_records: Option<Spanned<u32>>,
    handshake_timeout: Option<Spanned<String>>,
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
    }
}
