//! Agent configuration: `canhgac-agent run --config FILE`, with command-line
//! flags that override it or stand in for it. See `deploy/agent.toml`.
//!
//! Relative paths in the file are relative to the file's directory.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use canhgac_proto::conf::{ConfigError, Source, Spanned};
use serde::Deserialize;

use crate::capture;

/// Validated uplink settings.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub batch_max_records: u32,
    pub batch_max_bytes: u32,
    /// Batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub heartbeat_interval: Duration,
    pub connect_timeout: Duration,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            batch_max_records: 1000,
            batch_max_bytes: 1024 * 1024,
            max_in_flight: 4,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    /// Overrides the collector address recorded at enrollment.
    pub collector: Option<String>,
    pub source: Option<capture::Source>,
    pub replay_pps: u64,
    /// Live capture workers (PACKET_FANOUT by flow hash when above 1).
    pub capture_threads: usize,
    /// Ring of each live capture worker, MiB (`capture.ring_mib`).
    pub capture_ring_mib: usize,
    /// Thresholds of the behavioural detectors (`[detect.portscan]`, ...).
    pub behaviour: crate::detect::behaviour::BehaviourConfig,
    /// State-secret markers in cleartext flows (`[detect.secrets]`).
    pub secrets: crate::secrets::wire::WireConfig,
    pub ioc_files: Vec<PathBuf>,
    pub ioc_severity: u32,
    /// Suricata rule files (`[rules] files`, `--rules`).
    pub rule_files: Vec<PathBuf>,
    /// `$HOME_NET` and the other rule variables (`[rules.vars]`).
    pub rule_vars: crate::rules::Vars,
    /// A `classification.config` (else Suricata's built-in table).
    pub classification: Option<PathBuf>,
    pub dedup_capacity: usize,
    /// Event types shipped besides alerts (`[eve] types`).
    pub eve_types: crate::eve::EveTypes,
    /// Seed of the Community ID hash (`[eve] community_id_seed`, Suricata's
    /// `community-id-seed`; 0 by default, as everywhere).
    pub community_id_seed: u16,
    pub spool_max_bytes: u64,
    pub uplink: UplinkConfig,
    /// With a capture file: exit once everything produced is acknowledged.
    pub exit_when_drained: bool,
    /// The host sensor (`[host]`).
    pub host: crate::host::config::HostConfig,
    /// The syslog receiver (`[syslog]`; `None`: off).
    pub syslog: Option<crate::host::syslog::SyslogConfig>,
    /// Prometheus metrics and health endpoints (`[metrics]`; `None`: off).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[log] format`: text (default) or JSON lines.
    pub log_format: canhgac_proto::files::LogFormat,
    /// Where this configuration came from (file and command-line
    /// overrides), so that SIGHUP can read it again.
    pub origin: Option<(PathBuf, Overrides)>,
}

impl AgentConfig {
    /// Settings a reload cannot change in a running agent (they need a
    /// restart): the names of those that differ in `new`.
    pub fn restart_only_changes(&self, new: &AgentConfig) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut check = |name: &'static str, same: bool| {
            if !same {
                v.push(name);
            }
        };
        check("state_dir", self.state_dir == new.state_dir);
        check("collector.address", self.collector == new.collector);
        check(
            "capture",
            format!("{:?}", self.source) == format!("{:?}", new.source)
                && self.capture_threads == new.capture_threads
                && self.capture_ring_mib == new.capture_ring_mib,
        );
        check("spool.max_bytes", self.spool_max_bytes == new.spool_max_bytes);
        check("uplink", format!("{:?}", self.uplink) == format!("{:?}", new.uplink));
        check("metrics", self.metrics_listen == new.metrics_listen);
        check("log", self.log_format == new.log_format);
        check("host", format!("{:?}", self.host) == format!("{:?}", new.host));
        check("syslog", format!("{:?}", self.syslog) == format!("{:?}", new.syslog));
        v
    }
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub collector: Option<String>,
    pub pcap: Vec<PathBuf>,
    pub interface: Option<String>,
    pub ioc: Vec<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub replay_pps: Option<u64>,
    pub exit_when_drained: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<u32>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    collector: RawCollector,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    ioc: RawIoc,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    detect: RawDetect,
    #[serde(default)]
    eve: RawEve,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    uplink: RawUplink,
    host: Option<crate::host::config::RawHost>,
    syslog: Option<crate::host::syslog::config::RawSyslog>,
    metrics: Option<canhgac_proto::conf::RawMetrics>,
    #[serde(default)]
    log: canhgac_proto::conf::RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    address: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    interface: Option<String>,
    #[serde(default)]
    pcap: Vec<PathBuf>,
    replay_pps: Option<u64>,
    threads: Option<Spanned<u32>>,
    ring_mib: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIoc {
    #[serde(default)]
    files: Vec<PathBuf>,
    severity: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    files: Vec<PathBuf>,
    classification: Option<PathBuf>,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    dedup_capacity: Option<Spanned<u64>>,
    portscan: Option<crate::detect::behaviour::PortscanConfig>,
    bruteforce: Option<crate::detect::behaviour::BruteforceConfig>,
    dns_tunnel: Option<crate::detect::behaviour::DnsTunnelConfig>,
    icmp_tunnel: Option<crate::detect::behaviour::IcmpTunnelConfig>,
    beacon: Option<crate::detect::behaviour::BeaconConfig>,
    max_tracked: Option<Spanned<u64>>,
    secrets: Option<crate::secrets::wire::WireConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEve {
    types: Option<Spanned<Vec<String>>>,
    community_id_seed: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    max_bytes: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUplink {
    batch_max_records: Option<Spanned<u32>>,
    batch_max_bytes: Option<Spanned<String>>,
    max_in_flight: Option<Spanned<u32>>,
    backoff_initial: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    heartbeat_interval: Option<Spanned<String>>,
}

const DEFAULT_SPOOL: u64 = 1024 * 1024 * 1024;

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    src: &Source,
    v: &Spanned<T>,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let x = *v.get_ref();
    if x < min || x > max {
        return Err(src.error_at(v.span(), format!("{x} is out of range ({min} to {max})")));
    }
    Ok(x)
}

/// Reads the file (if any), applies the flags and validates the result.
pub fn resolve(path: Option<&Path>, o: Overrides) -> Result<AgentConfig, ResolveError> {
    let mut c = load_file(path)?;
    c.exit_when_drained = o.exit_when_drained;
    c.origin = path.map(|p| (p.to_path_buf(), o.clone()));
    apply(&mut c, o)?;
    Ok(c)
}

/// Reads and validates the file alone (defaults when `None`); the result
/// may still lack a state directory or a capture source.
pub fn load_file(path: Option<&Path>) -> Result<AgentConfig, ResolveError> {
    let mut c = AgentConfig {
        state_dir: PathBuf::new(),
        collector: None,
        source: None,
        replay_pps: 0,
        capture_threads: 1,
        capture_ring_mib: crate::capture::DEFAULT_RING_MIB,
        behaviour: crate::detect::behaviour::BehaviourConfig::default(),
        secrets: crate::secrets::wire::WireConfig::default(),
        ioc_files: Vec::new(),
        ioc_severity: 2,
        rule_files: Vec::new(),
        rule_vars: crate::rules::Vars::default(),
        classification: None,
        dedup_capacity: 100_000,
        eve_types: crate::eve::EveTypes::default(),
        community_id_seed: 0,
        spool_max_bytes: DEFAULT_SPOOL,
        uplink: UplinkConfig::default(),
        exit_when_drained: false,
        host: crate::host::config::HostConfig::default(),
        syslog: None,
        metrics_listen: None,
        log_format: canhgac_proto::files::LogFormat::Text,
        origin: None,
    };
    if let Some(path) = path {
        let src = Source::read(path)?;
        let raw: Raw = src.parse()?;
        if *raw.version.get_ref() != 1 {
            return Err(src
                .error_at(
                    raw.version.span(),
                    format!("unsupported version {} (expected 1)", raw.version.get_ref()),
                )
                .into());
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        if let Some(d) = raw.state_dir {
            c.state_dir = rel(d);
        }
        if let Some(a) = &raw.collector.address {
            a.get_ref()
                .parse::<canhgac_proto::client::CollectorAddr>()
                .map_err(|e| src.error_at(a.span(), e.to_string()))?;
            c.collector = Some(a.get_ref().clone());
        }
        match (raw.capture.interface, raw.capture.pcap.is_empty()) {
            (Some(_), false) => {
                return Err(src.error(Some("capture"), "set either `interface` or `pcap`, not both").into());
            }
            (Some(i), true) => c.source = Some(capture::Source::Interface(i)),
            (None, false) => {
                c.source = Some(capture::Source::Pcap(raw.capture.pcap.into_iter().map(rel).collect()))
            }
            (None, true) => {}
        }
        c.log_format = src.log_format(&raw.log)?;
        c.metrics_listen =
            src.metrics_listen(raw.metrics.as_ref(), std::net::SocketAddr::from(([127, 0, 0, 1], 9465)))?;
        c.replay_pps = raw.capture.replay_pps.unwrap_or(0);
        if let Some(t) = &raw.capture.threads {
            c.capture_threads = in_range(&src, t, 1, 64)? as usize;
        }
        if let Some(m) = &raw.capture.ring_mib {
            c.capture_ring_mib = in_range(&src, m, 2, 1024)? as usize;
        }
        let d = raw.detect;
        let b = &mut c.behaviour;
        if let Some(v) = d.portscan {
            b.portscan = v;
        }
        if let Some(v) = d.bruteforce {
            b.bruteforce = v;
        }
        if let Some(v) = d.dns_tunnel {
            b.dns_tunnel = v;
        }
        if let Some(v) = d.icmp_tunnel {
            b.icmp_tunnel = v;
        }
        if let Some(v) = d.beacon {
            b.beacon = v;
        }
        if let Some(v) = &d.max_tracked {
            b.max_tracked = in_range(&src, v, 1000, 10_000_000)? as usize;
        }
        if let Some(v) = d.secrets {
            if v.max_flow_bytes < 1024 || v.max_buffered_bytes < v.max_flow_bytes {
                return Err(src
                    .error(
                        Some("detect.secrets"),
                        "max_flow_bytes must be at least 1024 and at most max_buffered_bytes",
                    )
                    .into());
            }
            c.secrets = v;
        }
        c.ioc_files = raw.ioc.files.into_iter().map(rel).collect();
        c.rule_files = raw.rules.files.into_iter().map(rel).collect();
        c.classification = raw.rules.classification.map(rel);
        for (name, value) in &raw.rules.vars {
            c.rule_vars
                .set(name, value.get_ref())
                .map_err(|e| src.error_at(value.span(), format!("rules.vars.{name}: {e}")))?;
        }
        if let Some(s) = &raw.ioc.severity {
            c.ioc_severity = in_range(&src, s, 1, 4)?;
        }
        if let Some(d) = &d.dedup_capacity {
            c.dedup_capacity = in_range(&src, d, 1, 100_000_000)? as usize;
        }
        if let Some(t) = &raw.eve.types {
            c.eve_types =
                crate::eve::EveTypes::parse(&t.get_ref().join(",")).map_err(|e| src.error_at(t.span(), e))?;
            c.eve_types.alert = true;
        }
        if let Some(s) = &raw.eve.community_id_seed {
            c.community_id_seed = in_range(&src, s, 0, u32::from(u16::MAX))? as u16;
        }
        if let Some(m) = &raw.spool.max_bytes {
            let n = src.size(m)?;
            if n < 1024 * 1024 {
                return Err(src.error_at(m.span(), "the spool needs at least 1MiB").into());
            }
            c.spool_max_bytes = n;
        }
        c.host = crate::host::config::HostConfig::resolve(&src, raw.host, &rel)?;
        c.syslog = crate::host::syslog::SyslogConfig::resolve(&src, raw.syslog, &rel)?;
        let u = &raw.uplink;
        if let Some(v) = &u.batch_max_records {
            c.uplink.batch_max_records = in_range(&src, v, 1, 1_000_000)?;
        }
        if let Some(v) = &u.batch_max_bytes {
            let n = src.size(v)?;
            if !(1024..=64 * 1024 * 1024).contains(&n) {
                return Err(src.error_at(v.span(), "must be between 1KiB and 64MiB").into());
            }
            c.uplink.batch_max_bytes = n as u32;
        }
        if let Some(v) = &u.max_in_flight {
            c.uplink.max_in_flight = in_range(&src, v, 1, 64)? as usize;
        }
        if let Some(v) = &u.backoff_initial {
            c.uplink.backoff_initial = src.duration(v)?;
        }
        if let Some(v) = &u.backoff_max {
            c.uplink.backoff_max = src.duration(v)?;
            if c.uplink.backoff_max < c.uplink.backoff_initial {
                return Err(src.error_at(v.span(), "must not be shorter than backoff_initial").into());
            }
        }
        if let Some(v) = &u.heartbeat_interval {
            let d = src.duration(v)?;
            if d < Duration::from_secs(1) {
                return Err(src.error_at(v.span(), "must be at least 1s").into());
            }
            c.uplink.heartbeat_interval = d;
        }
    }
    Ok(c)
}

fn apply(c: &mut AgentConfig, o: Overrides) -> Result<(), ResolveError> {
    if let Some(d) = o.state_dir {
        c.state_dir = d;
    }
    if o.collector.is_some() {
        c.collector = o.collector;
    }
    match (o.interface, o.pcap.is_empty()) {
        (Some(_), false) => {
            return Err(ResolveError::Usage("--interface and --pcap exclude each other".into()));
        }
        (Some(i), true) => c.source = Some(capture::Source::Interface(i)),
        (None, false) => c.source = Some(capture::Source::Pcap(o.pcap)),
        (None, true) => {}
    }
    if let Some(p) = o.replay_pps {
        c.replay_pps = p;
    }
    if !o.ioc.is_empty() {
        c.ioc_files = o.ioc;
    }
    if !o.rules.is_empty() {
        c.rule_files = o.rules;
    }
    if c.state_dir.as_os_str().is_empty() {
        return Err(ResolveError::Usage(
            "no state directory: pass --state-dir DIR or set state_dir in the config".into(),
        ));
    }
    if c.source.is_none() && !c.host.enabled && c.syslog.is_none() {
        return Err(ResolveError::Usage(
            "no capture source: pass --interface NAME or --pcap FILE, or set capture.interface or capture.pcap \
             (or turn on the host sensor with a [host] section, or the syslog receiver with [syslog])"
                .into(),
        ));
    }
    if c.exit_when_drained && !matches!(c.source, Some(capture::Source::Pcap(_))) {
        return Err(ResolveError::Usage(
            "--exit-when-drained needs --pcap (a live capture never drains)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn deploy_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
        let c = resolve(Some(&path), Overrides::default()).unwrap();
        assert!(matches!(c.source, Some(capture::Source::Interface(_))));
        assert_eq!(c.spool_max_bytes, DEFAULT_SPOOL);
    }

    /// The commented `[syslog]` example of `deploy/agent.toml`, once
    /// uncommented, is a valid configuration.
    #[test]
    fn deploy_syslog_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let at = text.find("# [syslog]").unwrap();
        let mut example = String::from("version = 1\n");
        for l in text[at..].lines() {
            let l = l.strip_prefix("# ").unwrap_or("");
            if !l.starts_with('#') {
                example.push_str(l);
                example.push('\n');
            }
        }
        // the example's certificate files do not exist here: TLS off
        let example = example.replace("tls = \"0.0.0.0:6514\"", "tls = \"off\"");
        let (_d, p) = write(&example);
        let c = load_file(Some(&p)).unwrap();
        let s = c.syslog.unwrap();
        assert_eq!(s.udp, Some("0.0.0.0:514".parse().unwrap()));
        assert_eq!(s.senders.len(), 2);
        assert_eq!(s.senders[0].kind, crate::host::syslog::Kind::Firewall, "the /32 first");
        assert!(s.allowed("10.0.1.7".parse().unwrap()) && !s.allowed("192.0.2.1".parse().unwrap()));
        assert_eq!(c.host.firewall_logs.detect.allowed_after_denied.denied, 20);
        assert_eq!(c.host.firewall_logs.files[0].path, Path::new("/var/log/ufw.log"));
    }

    #[test]
    fn capture_ring_size_is_checked_and_needs_a_restart() {
        let (_d, p) = write(
            "version = 1\nstate_dir = \"/s\"\n[capture]\ninterface = \"eth0\"\nthreads = 2\nring_mib = 32\n",
        );
        let c = resolve(Some(&p), Overrides::default()).unwrap();
        assert_eq!((c.capture_threads, c.capture_ring_mib), (2, 32));
        let (_e, p) =
            write("version = 1\nstate_dir = \"/s\"\n[capture]\ninterface = \"eth0\"\nthreads = 2\n");
        let d = resolve(Some(&p), Overrides::default()).unwrap();
        assert_eq!(d.capture_ring_mib, capture::DEFAULT_RING_MIB);
        assert!(d.restart_only_changes(&c).contains(&"capture"), "{:?}", d.restart_only_changes(&c));
        let (_d, p) = write("version = 1\n[capture]\nring_mib = 1\n");
        let ResolveError::Config(e) = load_file(Some(&p)).unwrap_err() else { panic!() };
        assert!(e.message.contains('2') && e.message.contains("1024"), "{e}");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn syslog_errors_name_the_place() {
        let (_d, p) = write("version = 1\n[syslog]\nudp = \"0.0.0.0:514\"\n");
        let ResolveError::Config(e) = load_file(Some(&p)).unwrap_err() else { panic!() };
        assert!(e.message.contains("no sender is accepted"), "{e}");
        let (_d, p) = write(
            "version = 1\n[syslog]\nallow = [\"10.0.0.0/8\"]\n\n[[syslog.sender]]\naddress = \"10.0.0.300\"\n",
        );
        let ResolveError::Config(e) = load_file(Some(&p)).unwrap_err() else { panic!() };
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.contains("10.0.0.300"), "{e}");
        let (_d, p) = write(
            "version = 1\n[syslog]\nallow = [\"10.0.0.0/8\"]\n[[syslog.sender]]\naddress = \"10.0.0.1\"\nkind = \"router\"\n",
        );
        let ResolveError::Config(e) = load_file(Some(&p)).unwrap_err() else { panic!() };
        assert!(e.message.contains("unknown log kind `router`"), "{e}");
        let (_d, p) = write("version = 1\n[syslog]\nallow = [\"10.0.0.0/8\"]\ntls = \"0.0.0.0:6514\"\n");
        assert!(load_file(Some(&p)).is_err(), "TLS without a certificate");
        // a host-less, capture-less agent with a receiver is valid
        let (_d, p) = write("version = 1\nstate_dir = \"/s\"\n[syslog]\nallow = [\"10.0.0.0/8\"]\n");
        assert!(resolve(Some(&p), Overrides::default()).is_ok());
    }

    #[test]
    fn flags_override_and_stand_in() {
        let o = Overrides {
            state_dir: Some("/tmp/s".into()),
            pcap: vec!["x.pcap".into()],
            exit_when_drained: true,
            ..Default::default()
        };
        let c = resolve(None, o).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/s"));
        let (_d, p) = write(
            "version = 1\nstate_dir = \"st\"\n[capture]\ninterface = \"eth0\"\n[ioc]\nfiles = [\"a.txt\"]\n",
        );
        let c = resolve(Some(&p), Overrides { pcap: vec!["y.pcap".into()], ..Default::default() }).unwrap();
        assert!(matches!(&c.source, Some(capture::Source::Pcap(v)) if v[0] == Path::new("y.pcap")));
        assert_eq!(c.state_dir, p.parent().unwrap().join("st"));
        assert_eq!(c.ioc_files, vec![p.parent().unwrap().join("a.txt")]);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let (_d, p) = write(
            "version = 1\nstate_dir = \"/s\"\n[capture]\ninterface = \"eth0\"\n[spool]\nmax_bytes = \"2KiB\"\n",
        );
        let ResolveError::Config(e) = resolve(Some(&p), Overrides::default()).unwrap_err() else { panic!() };
        assert_eq!((e.line, e.field.as_deref()), (6, Some("spool.max_bytes")));
        assert!(e.to_string().contains("agent.toml:6:"));
        let (_d, p) = write("version = 1\n[uplink]\nheartbeat = \"5s\"\n");
        let ResolveError::Config(e) = resolve(Some(&p), Overrides::default()).unwrap_err() else { panic!() };
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown field `heartbeat`"));
    }

    #[test]
    fn rules_section() {
        let (_d, p) = write(
            "version = 1\n[rules]\nfiles = [\"et.rules\"]\nclassification = \"c.config\"\n\
             [rules.vars]\nHOME_NET = \"[10.1.0.0/16]\"\nHTTP_PORTS = \"[80,8080]\"\n",
        );
        let c = load_file(Some(&p)).unwrap();
        let dir = p.parent().unwrap();
        assert_eq!(c.rule_files, vec![dir.join("et.rules")]);
        assert_eq!(c.classification, Some(dir.join("c.config")));
        let (set, report) = crate::rules::RuleSet::from_str(
            "alert tcp $HOME_NET any -> any $HTTP_PORTS (msg:\"x\"; sid:1;)",
            &c.rule_vars,
        );
        assert_eq!((set.len(), report.skipped.len()), (1, 0));
        // a bad value is reported at its line, naming the variable
        let (_d, p) = write("version = 1\n[rules.vars]\n\nHOME_NET = \"[10.1.0.0/33]\"\n");
        let ResolveError::Config(e) = load_file(Some(&p)).unwrap_err() else { panic!() };
        assert_eq!(e.line, 4);
        assert!(e.message.contains("HOME_NET"), "{e}");
        // --rules replaces the files of the configuration
        let (_d, p) = write(
            "version = 1\nstate_dir = \"/s\"\n[capture]\ninterface = \"x\"\n[rules]\nfiles = [\"a\"]\n",
        );
        let c = resolve(Some(&p), Overrides { rules: vec!["b.rules".into()], ..Default::default() }).unwrap();
        assert_eq!(c.rule_files, vec![PathBuf::from("b.rules")]);
    }

    #[test]
    fn usage_errors() {
        assert!(matches!(resolve(None, Overrides::default()), Err(ResolveError::Usage(_))));
        let o = Overrides {
            state_dir: Some("/s".into()),
            interface: Some("lo".into()),
            exit_when_drained: true,
            ..Default::default()
        };
        assert!(matches!(resolve(None, o), Err(ResolveError::Usage(m)) if m.contains("--exit-when-drained")));
    }
}
