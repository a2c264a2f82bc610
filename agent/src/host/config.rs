//! `[host]` in the agent configuration (see `deploy/agent.toml`): stage one
//! (serde, unknown fields refused) and stage two (validated values).
//!
//! Without a `[host]` section the host sensor is off, so that an agent
//! configured only for capture behaves as before; `deploy/agent.toml`
//! turns it on.

use std::{path::PathBuf, time::Duration};

use canhgac_proto::conf::{ConfigError, Source, Spanned};
use serde::Deserialize;
use time::UtcOffset;

use super::{
    auth::AuthDetectConfig,
    firewall::FirewallDetectConfig,
    logfmt::LogFormat,
    router::{LogKind, LogSpec},
    web::WebDetectConfig,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    enabled: Option<bool>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    fim: RawFim,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    listeners: RawPoll,
    #[serde(default)]
    processes: RawPoll,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    web_logs: RawLogs<WebDetectConfig>,
    #[serde(default)]
    firewall_logs: RawLogs<FirewallDetectConfig>,
    #[serde(default)]
    windows_logs: RawLogs<NoDetect>,
}

/// Windows event files have no detectors of their own (they feed
/// `[host.auth.detect]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NoDetect {}

/// A set of followed logs of one kind (`[host.web_logs]`, ...).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs<D> {
    enabled: Option<bool>,
    /// Files with the set's `format` and `system`.
    files: Option<Vec<PathBuf>>,
    format: Option<Spanned<String>>,
    system: Option<u64>,
    start_at: Option<Spanned<String>>,
    /// Files with their own format or system.
    #[serde(default)]
    file: Vec<RawLogFile>,
    /// Extra signature files (web logs).
    signatures: Option<Vec<PathBuf>>,
    #[serde(default)]
    detect: D,
}

impl<D: Default> Default for RawLogs<D> {
    fn default() -> Self {
        RawLogs {
            enabled: None,
            files: None,
            format: None,
            system: None,
            start_at: None,
            file: Vec::new(),
            signatures: None,
            detect: D::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogFile {
    path: PathBuf,
    format: Option<Spanned<String>>,
    system: Option<u64>,
}

/// One followed log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    pub spec: LogSpec,
    /// The registry system this log belongs to (0: none).
    pub system: u64,
}

/// `[host.web_logs]` (and the other log sets): files followed across
/// rotation like the authentication logs.
#[derive(Debug, Clone)]
pub struct LogsConfig<D> {
    pub enabled: bool,
    pub files: Vec<LogFile>,
    pub start_at: StartAt,
    pub signatures: Vec<PathBuf>,
    pub detect: D,
}

pub const DEFAULT_WEB_LOGS: &[&str] =
    &["/var/log/nginx/access.log", "/var/log/apache2/access.log", "/var/log/httpd/access_log"];

fn start_at(src: &Source, s: &Spanned<String>) -> Result<StartAt, ConfigError> {
    match s.get_ref().as_str() {
        "start" => Ok(StartAt::Start),
        "end" => Ok(StartAt::End),
        other => Err(src.error_at(s.span(), format!("invalid value `{other}` (expected start, end)"))),
    }
}

impl<D: Clone> LogsConfig<D> {
    fn defaults(kind: LogKind, files: &[&str], detect: D) -> LogsConfig<D> {
        let spec = LogSpec { kind: Some(kind), ..Default::default() };
        LogsConfig {
            enabled: true,
            files: files.iter().map(|p| LogFile { path: PathBuf::from(p), spec, system: 0 }).collect(),
            start_at: StartAt::End,
            signatures: Vec::new(),
            detect,
        }
    }

    /// Stage two of a log set of `kind`.
    fn resolve(
        &mut self,
        src: &Source,
        kind: LogKind,
        raw: RawLogs<D>,
        rel: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<(), ConfigError> {
        self.enabled = raw.enabled.unwrap_or(true);
        let spec_of = |f: &Option<Spanned<String>>, default: LogSpec| -> Result<LogSpec, ConfigError> {
            match f {
                Some(f) => LogSpec::of_kind(kind, f.get_ref()).map_err(|e| src.error_at(f.span(), e)),
                None => Ok(default),
            }
        };
        let spec = spec_of(&raw.format, LogSpec { kind: Some(kind), ..Default::default() })?;
        let system = raw.system.unwrap_or(0);
        if let Some(files) = raw.files {
            self.files = files.into_iter().map(|p| LogFile { path: rel(p), spec, system }).collect();
        } else {
            for f in &mut self.files {
                f.spec = spec;
                f.system = system;
            }
        }
        for f in raw.file {
            let path = rel(f.path);
            let entry = LogFile { spec: spec_of(&f.format, spec)?, system: f.system.unwrap_or(system), path };
            match self.files.iter_mut().find(|x| x.path == entry.path) {
                Some(x) => *x = entry,
                None => self.files.push(entry),
            }
        }
        if let Some(s) = &raw.start_at {
            self.start_at = start_at(src, s)?;
        }
        if let Some(sigs) = raw.signatures {
            self.signatures = sigs.into_iter().map(rel).collect();
        }
        self.detect = raw.detect;
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    enabled: Option<bool>,
    paths: Option<Vec<String>>,
    rescan_interval: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
    max_file_size: Option<Spanned<String>>,
    coalesce: Option<Spanned<String>>,
}

/// `[host.secrets]`: state-secret markers in files.
#[derive(Debug, Clone)]
pub struct SecretsConfig {
    pub enabled: bool,
    /// Scanned directories and files (`~/` is every home directory); the
    /// web roots are added.
    pub paths: Vec<String>,
    /// Full scans this often (besides the one at start).
    pub rescan_interval: Duration,
    /// Bytes read per second at most.
    pub rate: u64,
    /// Larger files are skipped (counted).
    pub max_file_size: u64,
    /// Changes within this delay are scanned together.
    pub coalesce: Duration,
}

pub const DEFAULT_SECRET_PATHS: &[&str] =
    &["/home", "/root", "/srv", "/var/www", "/var/mail", "/var/spool/mail"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    enabled: Option<bool>,
    files: Option<Vec<PathBuf>>,
    journal: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    start_at: Option<Spanned<String>>,
    #[serde(default)]
    detect: AuthDetectConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFim {
    enabled: Option<bool>,
    paths: Option<Vec<String>>,
    exclude: Option<Vec<Spanned<String>>>,
    include: Option<Vec<Spanned<String>>>,
    rescan_interval: Option<Spanned<String>>,
    hash: Option<Spanned<String>>,
    max_file_size: Option<Spanned<String>>,
    max_files: Option<Spanned<u64>>,
    severity: Option<Spanned<u32>>,
    coalesce: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    glob: Spanned<String>,
    severity: Spanned<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    roots: Option<Vec<PathBuf>>,
    maintenance: Option<bool>,
    severity: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPoll {
    enabled: Option<bool>,
    interval: Option<Spanned<String>>,
}

/// Where a log file seen for the first time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Start,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Follow the journal when `journalctl` is there and works.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub enabled: bool,
    pub files: Vec<PathBuf>,
    pub journal: Journal,
    pub format: LogFormat,
    pub start_at: StartAt,
    pub detect: AuthDetectConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    Blake3,
    Sha256,
}

#[derive(Debug, Clone)]
pub struct FimConfig {
    pub enabled: bool,
    /// Watched files and directories (`~/` is every home directory).
    pub paths: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub rescan_interval: Duration,
    pub hash: HashAlgo,
    /// Larger files are tracked by metadata only (counted).
    pub max_file_size: u64,
    /// Most files in the baseline (beyond: counted, not tracked).
    pub max_files: u64,
    pub severity: u32,
    /// (glob, severity), first match wins.
    pub rules: Vec<(String, u32)>,
    /// Changes within this delay are reported together.
    pub coalesce: Duration,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub roots: Vec<PathBuf>,
    /// Every web-root change is accepted (a deployment): nothing raised.
    pub maintenance: bool,
    pub severity: u32,
}

#[derive(Debug, Clone)]
pub struct PollConfig {
    pub enabled: bool,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub enabled: bool,
    /// Offset of RFC 3164 timestamps.
    pub timezone: Option<UtcOffset>,
    pub auth: AuthConfig,
    pub fim: FimConfig,
    pub web: WebConfig,
    pub listeners: PollConfig,
    pub processes: PollConfig,
    pub secrets: SecretsConfig,
    pub web_logs: LogsConfig<WebDetectConfig>,
    /// Firewall logs on this host (`[host.firewall_logs]`); their
    /// detectors also judge firewall messages received over syslog.
    pub firewall_logs: LogsConfig<FirewallDetectConfig>,
    /// Windows events written to files as JSON (`[host.windows_logs]`).
    pub windows_logs: LogsConfig<NoDetect>,
}

/// ufw's own log (Debian, Ubuntu); other netfilter logs are in the kernel
/// log beside other messages and are configured by hand.
pub const DEFAULT_FIREWALL_LOGS: &[&str] = &["/var/log/ufw.log"];

pub const DEFAULT_FIM_PATHS: &[&str] = &[
    "/etc",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "~/.ssh/authorized_keys",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/etc/cron.hourly",
    "/var/spool/cron",
];

pub const DEFAULT_FIM_EXCLUDE: &[&str] = &[
    "/etc/mtab",
    "/etc/adjtime",
    "/etc/ld.so.cache",
    "/etc/resolv.conf",
    "/etc/.pwd.lock",
    "**/*.swp",
    "**/*~",
    "**/.#*",
];

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            enabled: false,
            timezone: None,
            auth: AuthConfig {
                enabled: true,
                files: vec!["/var/log/auth.log".into(), "/var/log/secure".into()],
                journal: Journal::Auto,
                format: LogFormat::Auto,
                start_at: StartAt::End,
                detect: AuthDetectConfig::default(),
            },
            fim: FimConfig {
                enabled: true,
                paths: DEFAULT_FIM_PATHS.iter().map(|s| s.to_string()).collect(),
                include: Vec::new(),
                exclude: DEFAULT_FIM_EXCLUDE.iter().map(|s| s.to_string()).collect(),
                rescan_interval: Duration::from_secs(3600),
                hash: HashAlgo::Blake3,
                max_file_size: 64 * 1024 * 1024,
                max_files: 500_000,
                severity: 3,
                rules: vec![
                    ("/etc/shadow".into(), 2),
                    ("/etc/passwd".into(), 2),
                    ("/etc/sudoers".into(), 2),
                    ("/etc/sudoers.d/**".into(), 2),
                    ("**/.ssh/authorized_keys".into(), 2),
                    ("/etc/ssh/sshd_config".into(), 2),
                    ("/etc/cron*/**".into(), 2),
                    ("/var/spool/cron/**".into(), 2),
                    ("/etc/ld.so.preload".into(), 1),
                ],
                coalesce: Duration::from_secs(2),
            },
            web: WebConfig { roots: Vec::new(), maintenance: false, severity: 2 },
            listeners: PollConfig { enabled: true, interval: Duration::from_secs(10) },
            processes: PollConfig { enabled: true, interval: Duration::from_secs(10) },
            secrets: SecretsConfig {
                enabled: true,
                paths: DEFAULT_SECRET_PATHS.iter().map(|s| s.to_string()).collect(),
                rescan_interval: Duration::from_secs(24 * 3600),
                rate: 8 << 20,
                max_file_size: 64 << 20,
                coalesce: Duration::from_secs(2),
            },
            web_logs: LogsConfig::defaults(LogKind::Web, DEFAULT_WEB_LOGS, WebDetectConfig::default()),
            firewall_logs: LogsConfig::defaults(
                LogKind::Firewall,
                DEFAULT_FIREWALL_LOGS,
                FirewallDetectConfig::default(),
            ),
            windows_logs: LogsConfig::defaults(LogKind::Windows, &[], NoDetect::default()),
        }
    }
}

fn severity(src: &Source, v: &Spanned<u32>) -> Result<u32, ConfigError> {
    let s = *v.get_ref();
    if !(1..=4).contains(&s) {
        return Err(src.error_at(v.span(), format!("{s} is out of range (1 to 4)")));
    }
    Ok(s)
}

fn glob(src: &Source, v: &Spanned<String>) -> Result<String, ConfigError> {
    globset::Glob::new(v.get_ref())
        .map_err(|e| src.error_at(v.span(), format!("invalid glob `{}`: {e}", v.get_ref())))?;
    Ok(v.get_ref().clone())
}

impl HostConfig {
    /// Stage two; `rel` makes paths relative to the file's directory.
    pub fn resolve(
        src: &Source,
        raw: Option<RawHost>,
        rel: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<HostConfig, ConfigError> {
        let mut c = HostConfig::default();
        let Some(raw) = raw else { return Ok(c) };
        c.enabled = raw.enabled.unwrap_or(true);
        if let Some(tz) = &raw.timezone
            && tz.get_ref() != "local"
        {
            c.timezone = Some(super::logfmt::parse_offset(tz.get_ref()).ok_or_else(|| {
                src.error_at(
                    tz.span(),
                    format!(
                        "invalid timezone `{}` (expected \"local\" or an offset such as \"+07:00\")",
                        tz.get_ref()
                    ),
                )
            })?);
        }
        let a = raw.auth;
        c.auth.enabled = a.enabled.unwrap_or(true);
        if let Some(f) = a.files {
            c.auth.files = f.into_iter().map(rel).collect();
        }
        if let Some(j) = &a.journal {
            c.auth.journal = match j.get_ref().as_str() {
                "auto" => Journal::Auto,
                "on" => Journal::On,
                "off" => Journal::Off,
                other => {
                    return Err(
                        src.error_at(j.span(), format!("invalid value `{other}` (expected auto, on, off)"))
                    );
                }
            };
        }
        if let Some(f) = &a.format {
            c.auth.format = LogFormat::parse(f.get_ref()).map_err(|e| src.error_at(f.span(), e))?;
        }
        if let Some(s) = &a.start_at {
            c.auth.start_at = start_at(src, s)?;
        }
        let d = a.detect;
        if d.bruteforce.failures == 0 || d.bruteforce.window_secs <= 0 {
            return Err(
                src.error(Some("host.auth.detect.bruteforce"), "failures and window_secs must be positive")
            );
        }
        if d.max_tracked < 100 {
            return Err(src.error(Some("host.auth.detect.max_tracked"), "must be at least 100"));
        }
        c.auth.detect = d;

        let f = raw.fim;
        c.fim.enabled = f.enabled.unwrap_or(true);
        // absolute and `~/` paths as written, others beside the file
        let watched = |p: Vec<String>| -> Vec<String> {
            p.into_iter()
                .map(|s| {
                    if s.starts_with('/') || s.starts_with("~/") {
                        s
                    } else {
                        rel(PathBuf::from(s)).display().to_string()
                    }
                })
                .collect()
        };
        if let Some(p) = f.paths {
            c.fim.paths = watched(p);
        }
        if let Some(x) = &f.exclude {
            c.fim.exclude = x.iter().map(|g| glob(src, g)).collect::<Result<_, _>>()?;
        }
        if let Some(x) = &f.include {
            c.fim.include = x.iter().map(|g| glob(src, g)).collect::<Result<_, _>>()?;
        }
        if let Some(d) = &f.rescan_interval {
            c.fim.rescan_interval = src.duration(d)?;
            if c.fim.rescan_interval < Duration::from_secs(10) {
                return Err(src.error_at(d.span(), "must be at least 10s"));
            }
        }
        if let Some(h) = &f.hash {
            c.fim.hash = match h.get_ref().as_str() {
                "blake3" => HashAlgo::Blake3,
                "sha256" => HashAlgo::Sha256,
                other => {
                    return Err(
                        src.error_at(h.span(), format!("unknown hash `{other}` (expected blake3, sha256)"))
                    );
                }
            };
        }
        if let Some(m) = &f.max_file_size {
            c.fim.max_file_size = src.size(m)?;
        }
        if let Some(m) = &f.max_files {
            c.fim.max_files = *m.get_ref();
            if c.fim.max_files < 1 {
                return Err(src.error_at(m.span(), "must be at least 1"));
            }
        }
        if let Some(s) = &f.severity {
            c.fim.severity = severity(src, s)?;
        }
        if let Some(d) = &f.coalesce {
            c.fim.coalesce = src.duration(d)?;
        }
        if !f.rule.is_empty() {
            let mut rules = Vec::new();
            for r in &f.rule {
                rules.push((glob(src, &r.glob)?, severity(src, &r.severity)?));
            }
            // configured rules come first, the defaults still apply after
            rules.append(&mut c.fim.rules);
            c.fim.rules = rules;
        }
        let w = raw.web;
        if let Some(r) = w.roots {
            c.web.roots = r.into_iter().map(rel).collect();
        }
        c.web.maintenance = w.maintenance.unwrap_or(false);
        if let Some(s) = &w.severity {
            c.web.severity = severity(src, s)?;
        }
        let sc = raw.secrets;
        c.secrets.enabled = sc.enabled.unwrap_or(true);
        if let Some(p) = sc.paths {
            c.secrets.paths = watched(p);
        }
        if let Some(d) = &sc.rescan_interval {
            c.secrets.rescan_interval = src.duration(d)?;
            if c.secrets.rescan_interval < Duration::from_secs(60) {
                return Err(src.error_at(d.span(), "must be at least 1m"));
            }
        }
        if let Some(r) = &sc.rate {
            c.secrets.rate = src.size(r)?;
            if c.secrets.rate < 64 * 1024 {
                return Err(src.error_at(r.span(), "must be at least 64KiB (per second)"));
            }
        }
        if let Some(m) = &sc.max_file_size {
            c.secrets.max_file_size = src.size(m)?;
        }
        if let Some(d) = &sc.coalesce {
            c.secrets.coalesce = src.duration(d)?;
        }
        c.web_logs.resolve(src, LogKind::Web, raw.web_logs, rel)?;
        c.web_logs.detect.validate().map_err(|e| src.error(Some("host.web_logs.detect"), e))?;
        if let Err(e) = super::web::SignatureSet::load(&c.web_logs.signatures) {
            return Err(src.error(Some("host.web_logs.signatures"), e));
        }
        c.firewall_logs.resolve(src, LogKind::Firewall, raw.firewall_logs, rel)?;
        c.windows_logs.resolve(src, LogKind::Windows, raw.windows_logs, rel)?;
        for (raw, out) in [(raw.listeners, &mut c.listeners), (raw.processes, &mut c.processes)] {
            out.enabled = raw.enabled.unwrap_or(true);
            if let Some(i) = &raw.interval {
                out.interval = src.duration(i)?;
                if out.interval < Duration::from_secs(1) {
                    return Err(src.error_at(i.span(), "must be at least 1s"));
                }
            }
        }
        Ok(c)
    }
}
