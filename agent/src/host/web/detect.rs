//! Web detectors over access-log [`WebEvent`]s. Pure: time is the log's
//! (the daemon's [`WebDetector::tick`] passes its clock to close quiet
//! episodes).
//!
//! | detector | fires | severity | technique |
//! |----------|-------|----------|-----------|
//! | `web-attack` | a request whose URI, referrer or user agent matches a web signature ([`super::signatures`]: SQL injection, XSS, traversal and file inclusion, SSRF, command injection, Log4Shell, Shellshock, OGNL, template injection, known exploit paths) after normalisation | 2 | T1190 |
//! | `web-scan` | a scanner's user agent (sqlmap, Nikto, Nmap NSE, Nuclei, WPScan, ...), or `probes` requests (default 8) for admin, backup and secret files answered 4xx within `window_secs` (120), or `min_requests` (30) requests in the window of which `error_ratio` (70 %) got 4xx | 3 | T1595.002 |
//! | `web-bruteforce` | directory brute force: `not_found` distinct paths (default 40) answered 404 within the window; login brute force: `login_failures` (10) POSTs to a login URL answered 401/403 or with the same size as the previous failure, within `login_window_secs` (600) | 3 (directories), 2 (logins) | T1595.003, T1110.001 |
//! | `webshell-access` | a request for a script the file-integrity monitor flagged as a web shell, a script request carrying a web-shell parameter with a command (`cmd=`, `c=whoami`, ...), or a script under an upload directory answered 2xx | 1 | T1505.003 |
//!
//! **One alert per source, detector and episode.** An episode is the run
//! of a source's requests for one detector with no gap longer than
//! `episode_gap_secs` (600). Its alert is raised once the episode has
//! lasted `hold_secs` (60) or gone quiet for `quiet_secs` (10), or at the
//! end of the input, so that it carries the episode's counts: requests,
//! status histogram, categories and signatures, and bounded samples (10
//! URIs, 3 user agents). Requests after the alert are counted in the
//! state but raise nothing until the episode ends.
//!
//! # Persisted state (spool detector state, prefix `hr`)
//!
//! | key | value |
//! |-----|-------|
//! | `hrs` client | JSON [`SourceState`] |
//!
//! Sources are forgotten once idle for longer than every window, or, beyond
//! `max_tracked`, least recently seen first (counted).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, LazyLock, Mutex},
};

use aho_corasick::{AhoCorasick, MatchKind};
use canhgac_proto::v1::RecordKind;
use hashlink::LinkedHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{
    normalize::normalize,
    parse::WebEvent,
    signatures::{Hit, SignatureSet},
};
use crate::{
    detect::{Output, StateChange},
    eve::{AlertInfo, sid},
    spool::NewRecord,
};

pub const STATE_PREFIX: &[u8] = b"hr";
const SOURCE_KEY: u8 = b's';
const SAMPLES: usize = 10;
const AGENTS: usize = 3;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebDetectConfig {
    pub attack: bool,
    pub scan: bool,
    pub bruteforce: bool,
    pub webshell: bool,
    pub window_secs: i64,
    pub probes: u32,
    pub min_requests: u32,
    pub error_ratio: f64,
    pub not_found: u32,
    pub login_failures: u32,
    pub login_window_secs: i64,
    pub episode_gap_secs: i64,
    pub hold_secs: i64,
    pub quiet_secs: i64,
    pub max_tracked: usize,
}

impl Default for WebDetectConfig {
    fn default() -> Self {
        WebDetectConfig {
            attack: true,
            scan: true,
            bruteforce: true,
            webshell: true,
            window_secs: 120,
            probes: 8,
            min_requests: 30,
            error_ratio: 0.7,
            not_found: 40,
            login_failures: 10,
            login_window_secs: 600,
            episode_gap_secs: 600,
            hold_secs: 60,
            quiet_secs: 10,
            max_tracked: 20_000,
        }
    }
}

impl WebDetectConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window_secs <= 0 || self.login_window_secs <= 0 || self.episode_gap_secs <= 0 {
            return Err("window_secs, login_window_secs and episode_gap_secs must be positive".into());
        }
        if self.probes == 0 || self.min_requests == 0 || self.not_found == 0 || self.login_failures == 0 {
            return Err("probes, min_requests, not_found and login_failures must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.error_ratio) {
            return Err("error_ratio must lie between 0 and 1".into());
        }
        if self.hold_secs < 0 || self.quiet_secs < 0 {
            return Err("hold_secs and quiet_secs must not be negative".into());
        }
        if self.max_tracked < 100 {
            return Err("max_tracked must be at least 100".into());
        }
        Ok(())
    }
}

/// Scripts the file-integrity monitor found to be web shells, as URL
/// paths (lowercase, relative to their web root). Shared between the FIM
/// thread (writer) and the log thread (reader).
#[derive(Debug, Clone, Default)]
pub struct WebShells(Arc<Mutex<BTreeSet<String>>>);

impl WebShells {
    /// Records a web shell found at `file` under one of `roots`.
    pub fn flag(&self, file: &Path, roots: &[PathBuf]) {
        for r in roots {
            if let Ok(rel) = file.strip_prefix(r) {
                let url = format!("/{}", rel.to_string_lossy().to_lowercase());
                if let Ok(mut g) = self.0.lock() {
                    g.insert(url);
                }
                return;
            }
        }
    }

    fn contains(&self, path: &str) -> bool {
        let p = path.to_lowercase();
        self.0.lock().map(|g| g.contains(&p)).unwrap_or(false)
    }

    fn is_empty(&self) -> bool {
        self.0.lock().map(|g| g.is_empty()).unwrap_or(true)
    }
}

/// One detector's episode for one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Episode {
    pub detector: String,
    /// `directory` or `login` (web-bruteforce); why (web-scan, webshell).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub first: i64,
    pub last: i64,
    pub requests: u64,
    pub reported: bool,
    #[serde(default)]
    pub samples: Vec<String>,
    #[serde(default)]
    pub statuses: BTreeMap<u16, u64>,
    #[serde(default)]
    pub categories: BTreeSet<String>,
    #[serde(default)]
    pub signatures: BTreeMap<u32, String>,
    #[serde(default)]
    pub methods: BTreeSet<String>,
    #[serde(default)]
    pub user_agents: Vec<String>,
    #[serde(default)]
    pub vhosts: BTreeSet<String>,
    /// Why, by kind of reason (the first of each kind is kept).
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    /// The first request of the episode (for the alert's `http` object).
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub uri: String,
    #[serde(default)]
    pub status: u16,
    /// Where the requests were logged, and the system that log belongs to.
    #[serde(default)]
    pub log_source: String,
    #[serde(default)]
    pub system: u64,
}

/// One detector's finding on a request: (detector, kind, categories or
/// reasons by kind, signatures).
type Finding = (&'static str, String, BTreeMap<String, String>, BTreeMap<u32, String>);

/// What is remembered of one client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    pub seen: i64,
    pub win_start: i64,
    pub win_requests: u32,
    pub win_errors: u32,
    pub win_probes: u32,
    /// Hashes of distinct paths answered 404 in the window (bounded by
    /// the threshold).
    #[serde(default)]
    pub win_missing: BTreeSet<u64>,
    #[serde(default)]
    pub login_start: i64,
    #[serde(default)]
    pub login_failures: u32,
    #[serde(default)]
    pub login_last: Option<(String, u64)>,
    #[serde(default)]
    pub episodes: Vec<Episode>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebDetectStats {
    pub alerts: u64,
    pub evictions: u64,
}

/// Where a request was logged.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The log file (or syslog sender).
    pub source: &'a str,
    /// The registry system the log belongs to (0: not configured).
    pub system: u64,
}

pub struct WebDetector {
    cfg: WebDetectConfig,
    sigs: Arc<SignatureSet>,
    webshells: WebShells,
    sources: LinkedHashMap<String, SourceState>,
    dirty: BTreeSet<String>,
    hits: Vec<Hit>,
    last_sweep: i64,
    pub stats: WebDetectStats,
}

const SCANNERS: &[(&str, &str)] = &[
    ("sqlmap", "sqlmap"),
    ("nikto", "Nikto"),
    ("nmap scripting engine", "Nmap NSE"),
    ("nmap", "Nmap"),
    ("masscan", "masscan"),
    ("zgrab", "ZGrab"),
    ("nuclei", "Nuclei"),
    ("wpscan", "WPScan"),
    ("joomscan", "JoomScan"),
    ("droopescan", "droopescan"),
    ("dirbuster", "DirBuster"),
    ("gobuster", "gobuster"),
    ("feroxbuster", "feroxbuster"),
    ("fuzz faster u fool", "ffuf"),
    ("wfuzz", "Wfuzz"),
    ("acunetix", "Acunetix"),
    ("netsparker", "Netsparker"),
    ("invicti", "Invicti"),
    ("qualys", "Qualys"),
    ("nessus", "Nessus"),
    ("openvas", "OpenVAS"),
    ("w3af", "w3af"),
    ("whatweb", "WhatWeb"),
    ("zaproxy", "OWASP ZAP"),
    ("owasp zap", "OWASP ZAP"),
    ("arachni", "Arachni"),
    ("skipfish", "skipfish"),
    ("commix", "commix"),
    ("(hydra)", "Hydra"),
    ("jorgee", "Jorgee"),
    ("xsstrike", "XSStrike"),
    ("dalfox", "Dalfox"),
    ("burpcollaborator", "Burp Collaborator"),
    ("censysinspect", "Censys"),
    ("l9explore", "l9explore"),
    ("fimap", "fimap"),
    ("havij", "Havij"),
    ("appscan", "AppScan"),
    ("webinspect", "WebInspect"),
    ("morfeus", "Morfeus"),
    ("httpx - open-source", "httpx"),
];

/// A case-insensitive matcher of fixed strings (leftmost-first: the
/// earlier, more specific needle wins).
fn matcher(needles: &[&str]) -> Option<AhoCorasick> {
    match AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(needles)
    {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(error = %e, "web detector: a fixed-string matcher does not build");
            None
        }
    }
}

/// Paths scanners probe: admin consoles, backups, secrets, version control.
fn is_probe(path: &str) -> bool {
    const PARTS: &[&str] = &[
        "/.env",
        "/.git/",
        "/.git",
        "/.svn/",
        "/.hg/",
        "/.ds_store",
        "/.htpasswd",
        "/.htaccess",
        "/.aws/",
        "/.ssh/",
        "/wp-config.php",
        "/wp-admin",
        "/wp-login.php",
        "/xmlrpc.php",
        "/phpmyadmin",
        "/pma/",
        "/myadmin",
        "/adminer",
        "/phpinfo.php",
        "/info.php",
        "/server-status",
        "/server-info",
        "/web.config",
        "/config.php",
        "/configuration.php",
        "/config.json",
        "/config.yml",
        "/backup",
        "/db.sql",
        "/dump.sql",
        "/database.sql",
        "/administrator/",
        "/manager/html",
        "/jmx-console",
        "/web-console",
        "/solr/admin",
        "/actuator",
        "/console/",
        "/cgi-bin/",
        "/.well-known/security.txt~",
        "/shell.php",
        "/cmd.php",
        "/test.php",
        "/elmah.axd",
        "/trace.axd",
        "/debug/",
        "/vendor/",
        "/storage/logs",
        "/install.php",
        "/setup.php",
    ];
    const ENDS: &[&str] = &[
        ".bak", ".old", ".orig", ".save", ".swp", "~", ".sql", ".sql.gz", ".tar.gz", ".tgz", ".zip", ".rar",
        ".7z", ".mdb", ".inc", ".log", ".conf", ".ini", ".pem", ".key",
    ];
    static PROBES: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| matcher(PARTS));
    let lower_end = path.get(path.len().saturating_sub(8)..).unwrap_or(path).to_ascii_lowercase();
    PROBES.as_ref().is_some_and(|m| m.is_match(path)) || ENDS.iter().any(|x| lower_end.ends_with(x))
}

fn is_login(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [
        "login",
        "logon",
        "signin",
        "sign-in",
        "sign_in",
        "auth",
        "dang-nhap",
        "dangnhap",
        "session",
        "xmlrpc.php",
        "j_security_check",
        "/admin",
    ]
    .iter()
    .any(|x| p.contains(x))
}

const SCRIPT_EXT: &[&str] = &[
    ".php", ".php3", ".php4", ".php5", ".php7", ".phtml", ".phar", ".asp", ".aspx", ".ashx", ".asmx", ".jsp",
    ".jspx", ".cer", ".cgi", ".pl",
];

fn is_script(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    SCRIPT_EXT.iter().any(|e| p.ends_with(e))
}

fn in_upload_dir(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    ["/upload/", "/uploads/", "/wp-content/uploads/", "/userfiles/", "/attachments/", "/images/", "/img/"]
        .iter()
        .any(|d| p.contains(d))
}

/// Images, stylesheets, scripts and fonts: what a page loads.
fn is_static(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    [
        ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".bmp", ".css", ".js", ".map", ".woff",
        ".woff2", ".ttf", ".eot", ".otf", ".mp4", ".webm", ".mp3",
    ]
    .iter()
    .any(|e| p.ends_with(e))
}

/// A web-shell parameter with a command: `cmd=`/`exec=`/`command=` with any
/// value, `c=`/`x=`/`e=` with a value that looks like a shell command.
fn webshell_param(query: &str) -> Option<String> {
    const COMMANDS: &[&str] = &[
        "whoami",
        "id",
        "uname",
        "ls",
        "dir",
        "cat",
        "pwd",
        "wget",
        "curl",
        "ifconfig",
        "ipconfig",
        "net user",
        "powershell",
        "cmd.exe",
        "echo",
        "systeminfo",
        "ps",
        "netstat",
    ];
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = k.to_ascii_lowercase();
        let v = normalize(v);
        if v.is_empty() {
            continue;
        }
        let strong = matches!(k.as_str(), "cmd" | "exec" | "command" | "execute" | "shell" | "cmdline");
        let weak = matches!(k.as_str(), "c" | "x" | "e" | "run" | "q");
        let first = v.split([' ', ';', '|', '&']).next().unwrap_or("");
        let command = COMMANDS.iter().any(|c| v == *c || first == *c || v.starts_with(&format!("{c} ")));
        if (strong && (command || v.len() > 1)) || (weak && command) {
            return Some(format!("{k}={}", v.chars().take(60).collect::<String>()));
        }
    }
    None
}

fn secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_secs(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn path_hash(p: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    h.write(p.as_bytes());
    h.finish()
}

impl WebDetector {
    pub fn new(cfg: WebDetectConfig, sigs: Arc<SignatureSet>, webshells: WebShells) -> WebDetector {
        WebDetector {
            cfg,
            sigs,
            webshells,
            sources: LinkedHashMap::new(),
            dirty: BTreeSet::new(),
            hits: Vec::new(),
            last_sweep: i64::MIN,
            stats: WebDetectStats::default(),
        }
    }

    /// Replaces the signatures (a policy push).
    pub fn set_signatures(&mut self, sigs: Arc<SignatureSet>) {
        self.sigs = sigs;
    }

    /// A persisted state entry (its key without the `hr` prefix).
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> bool {
        if let Some(k) = key.strip_prefix(&[SOURCE_KEY])
            && let Ok(s) = serde_json::from_slice::<SourceState>(value)
        {
            self.sources.insert(String::from_utf8_lossy(k).into_owned(), s);
            return true;
        }
        false
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn memory(&self) -> i64 {
        self.cfg.episode_gap_secs.max(self.cfg.window_secs).max(self.cfg.login_window_secs)
    }

    /// One request. `now` stands in for a request without a time.
    pub fn on_event(&mut self, ev: &WebEvent, now: OffsetDateTime, origin: Origin<'_>, out: &mut Output) {
        let t = secs(ev.ts.unwrap_or(now));
        if t > self.last_sweep + 1 {
            self.sweep(t, out);
        }
        let key = ev.client.clone();
        if !self.sources.contains_key(&key) {
            while self.sources.len() >= self.cfg.max_tracked {
                match self.sources.pop_front() {
                    Some((k, mut s)) => {
                        self.stats.evictions += 1;
                        self.flush_source(&k, &mut s, i64::MAX, out);
                        self.dirty.insert(k);
                    }
                    None => break,
                }
            }
            self.sources.insert(key.clone(), SourceState { seen: t, win_start: t, ..Default::default() });
        }
        self.sources.to_back(&key);
        let mut s = self.sources.remove(&key).unwrap_or_default();
        self.request(&mut s, ev, t, origin);
        // an episode held long enough is reported now
        let hold = self.cfg.hold_secs;
        if s.episodes.iter().any(|e| !e.reported && t - e.first >= hold) {
            self.emit(&key, &mut s, |e| t - e.first >= hold, out);
        }
        self.sources.insert(key.clone(), s);
        self.dirty.insert(key);
    }

    fn request(&mut self, s: &mut SourceState, ev: &WebEvent, t: i64, origin: Origin<'_>) {
        let cfg = self.cfg.clone();
        s.seen = s.seen.max(t);
        if t - s.win_start > cfg.window_secs || t < s.win_start {
            s.win_start = t;
            s.win_requests = 0;
            s.win_errors = 0;
            s.win_probes = 0;
            s.win_missing.clear();
        }
        s.win_requests = s.win_requests.saturating_add(1);
        let path = ev.path();
        // a page's missing image or stylesheet (a browser sends the page as
        // referrer) is a broken page, not probing
        let broken_asset = ev.referrer.is_some() && is_static(path);
        if (400..500).contains(&ev.status) && !broken_asset {
            s.win_errors = s.win_errors.saturating_add(1);
        }
        // (detector, kind, categories or reasons by kind, signatures)
        let mut found: Vec<Finding> = Vec::new();

        if cfg.attack {
            let uri = normalize(&ev.uri);
            let referrer = ev.referrer.as_deref().map(normalize);
            let ua = ev.user_agent.as_deref().map(normalize);
            let mut hits = std::mem::take(&mut self.hits);
            self.sigs.matches(&uri, referrer.as_deref(), ua.as_deref(), &mut hits);
            if !hits.is_empty() {
                let mut cats = BTreeMap::new();
                let mut sigs = BTreeMap::new();
                for h in &hits {
                    if let Some(sig) = self.sigs.get(h.sig) {
                        cats.insert(sig.category.clone(), String::new());
                        sigs.insert(sig.id, format!("{} (in {})", sig.name, h.field.name()));
                    }
                }
                found.push(("web-attack", String::new(), cats, sigs));
            }
            self.hits = hits;
        }

        if cfg.scan {
            static AGENTS: LazyLock<Option<AhoCorasick>> =
                LazyLock::new(|| matcher(&SCANNERS.iter().map(|(n, _)| *n).collect::<Vec<_>>()));
            let ua = ev.user_agent.as_deref().unwrap_or("");
            let scanner = AGENTS
                .as_ref()
                .and_then(|m| m.find(ua))
                .and_then(|m| SCANNERS.get(m.pattern().as_usize()))
                .map(|(_, name)| *name);
            // an administrator working in /wp-admin gets answers; a scanner
            // probing for it mostly does not
            if is_probe(path) && (400..500).contains(&ev.status) {
                s.win_probes = s.win_probes.saturating_add(1);
            }
            let mut why = BTreeMap::new();
            if let Some(name) = scanner {
                why.insert(format!("agent:{name}"), format!("scanner user agent: {name}"));
            }
            if s.win_probes >= cfg.probes {
                why.insert(
                    "probes".into(),
                    format!(
                        "{} probes of admin, backup or secret paths within {} s",
                        s.win_probes, cfg.window_secs
                    ),
                );
            }
            if s.win_requests >= cfg.min_requests
                && f64::from(s.win_errors) >= cfg.error_ratio * f64::from(s.win_requests)
            {
                why.insert(
                    "errors".into(),
                    format!(
                        "{} of {} requests answered 4xx within {} s",
                        s.win_errors, s.win_requests, cfg.window_secs
                    ),
                );
            }
            let open =
                s.episodes.iter().any(|e| e.detector == "web-scan" && t - e.last <= cfg.episode_gap_secs);
            if !why.is_empty() || open {
                found.push(("web-scan", String::new(), why, BTreeMap::new()));
            }
        }

        if cfg.bruteforce {
            if ev.status == 404 && !broken_asset && (s.win_missing.len() as u32) < cfg.not_found {
                s.win_missing.insert(path_hash(path));
            }
            let mut hit = None;
            if s.win_missing.len() as u32 >= cfg.not_found {
                hit = Some((
                    "directory",
                    format!(
                        "{} distinct paths answered 404 within {} s",
                        s.win_missing.len(),
                        cfg.window_secs
                    ),
                ));
            }
            if ev.method.eq_ignore_ascii_case("POST") && is_login(path) {
                if t - s.login_start > cfg.login_window_secs {
                    s.login_start = t;
                    s.login_failures = 0;
                }
                let same_size = s.login_last.as_ref().is_some_and(|(p, size)| p == path && *size == ev.size);
                let failed = matches!(ev.status, 401 | 403) || (ev.status < 300 && same_size);
                if failed {
                    // the first of a run of same-size answers was a failure too
                    let first_of_run = same_size && s.login_failures == 0;
                    s.login_failures = s.login_failures.saturating_add(1 + u32::from(first_of_run));
                }
                s.login_last = Some((path.to_string(), ev.size));
                if s.login_failures >= cfg.login_failures {
                    hit = Some((
                        "login",
                        format!(
                            "{} failed logins at {path} within {} s",
                            s.login_failures, cfg.login_window_secs
                        ),
                    ));
                }
            }
            let open = s
                .episodes
                .iter()
                .find(|e| e.detector == "web-bruteforce" && t - e.last <= cfg.episode_gap_secs)
                .map(|e| e.kind.clone());
            match (hit, open) {
                (Some((kind, why)), _) => found.push((
                    "web-bruteforce",
                    kind.to_string(),
                    BTreeMap::from([(kind.to_string(), why)]),
                    BTreeMap::new(),
                )),
                (None, Some(kind)) => found.push(("web-bruteforce", kind, BTreeMap::new(), BTreeMap::new())),
                (None, None) => {}
            }
        }

        if cfg.webshell {
            let mut why = None;
            if !self.webshells.is_empty() && self.webshells.contains(path) {
                why = Some(("fim", format!("request for {path}, flagged as a web shell by file integrity")));
            } else if is_script(path) {
                if let Some(p) = ev.query().and_then(webshell_param) {
                    why = Some(("parameter", format!("web-shell parameter {p}")));
                } else if in_upload_dir(path) && (200..300).contains(&ev.status) {
                    why =
                        Some(("upload", format!("script under an upload directory answered {}", ev.status)));
                }
            }
            if let Some((k, w)) = why {
                found.push((
                    "webshell-access",
                    String::new(),
                    BTreeMap::from([(k.to_string(), w)]),
                    BTreeMap::new(),
                ));
            }
        }

        for (detector, kind, reasons, sigs) in found {
            let gap = cfg.episode_gap_secs;
            let idx = s.episodes.iter().position(|e| e.detector == detector && t - e.last <= gap);
            let i = match idx {
                Some(i) => i,
                None => {
                    s.episodes.retain(|e| e.detector != detector || !e.reported);
                    s.episodes.push(Episode {
                        detector: detector.to_string(),
                        kind: kind.clone(),
                        first: t,
                        last: t,
                        method: ev.method.clone(),
                        uri: ev.uri.chars().take(512).collect(),
                        status: ev.status,
                        log_source: origin.source.to_string(),
                        system: origin.system,
                        ..Default::default()
                    });
                    s.episodes.len() - 1
                }
            };
            let e = &mut s.episodes[i];
            e.last = e.last.max(t);
            e.requests += 1;
            if e.kind.is_empty() || kind == "login" {
                e.kind = kind;
            }
            *e.statuses.entry(ev.status).or_default() += 1;
            if e.samples.len() < SAMPLES && !e.samples.contains(&ev.uri) {
                e.samples.push(ev.uri.chars().take(512).collect());
            }
            if e.methods.len() < 8 {
                e.methods.insert(ev.method.chars().take(16).collect());
            }
            if let Some(ua) = &ev.user_agent
                && e.user_agents.len() < AGENTS
                && !e.user_agents.contains(ua)
            {
                e.user_agents.push(ua.chars().take(256).collect());
            }
            if let Some(v) = &ev.vhost
                && e.vhosts.len() < 5
            {
                e.vhosts.insert(v.clone());
            }
            for (k, text) in reasons {
                if detector == "web-attack" {
                    e.categories.insert(k);
                } else if e.reasons.len() < 8 {
                    e.reasons.entry(k).or_insert(text);
                }
            }
            for (id, name) in sigs {
                if e.signatures.len() < 20 {
                    e.signatures.insert(id, name);
                }
            }
        }
    }

    /// Reports episodes gone quiet and forgets idle sources. `now`: the
    /// daemon's clock (a followed log's lines arrive as they are written).
    pub fn tick(&mut self, now: OffsetDateTime, out: &mut Output) {
        self.sweep(secs(now), out);
    }

    fn sweep(&mut self, now: i64, out: &mut Output) {
        self.last_sweep = now;
        let (quiet, memory) = (self.cfg.quiet_secs, self.memory());
        let due: Vec<String> = self
            .sources
            .iter()
            .filter(|(_, s)| {
                now - s.seen > memory || s.episodes.iter().any(|e| !e.reported && now - e.last >= quiet)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let Some(mut s) = self.sources.remove(&k) else { continue };
            self.emit(&k, &mut s, |e| now - e.last >= quiet, out);
            if now - s.seen <= memory {
                self.sources.insert(k.clone(), s);
                // keep its place in the eviction order roughly: it is recent
            }
            self.dirty.insert(k);
        }
    }

    fn flush_source(&mut self, key: &str, s: &mut SourceState, _now: i64, out: &mut Output) {
        self.emit(key, s, |_| true, out);
    }

    /// Reports every episode not yet reported (end of the input).
    pub fn finish(&mut self, out: &mut Output) {
        let keys: Vec<String> = self.sources.keys().cloned().collect();
        for k in keys {
            if let Some(mut s) = self.sources.remove(&k) {
                self.emit(&k, &mut s, |_| true, out);
                self.sources.insert(k.clone(), s);
                self.dirty.insert(k);
            }
        }
    }

    fn emit(&mut self, client: &str, s: &mut SourceState, due: impl Fn(&Episode) -> bool, out: &mut Output) {
        for e in s.episodes.iter_mut().filter(|e| !e.reported) {
            if !due(e) {
                continue;
            }
            e.reported = true;
            self.stats.alerts += 1;
            out.records.push(alert_record(client, e));
        }
    }

    /// State changes since the last call (keys without the spool's `s`).
    pub fn take_state(&mut self, out: &mut Output) {
        for k in std::mem::take(&mut self.dirty) {
            let key = state_key(k.as_bytes());
            match self.sources.get(&k) {
                Some(s) => out.state.push(StateChange::Put(key, serde_json::to_vec(s).unwrap_or_default())),
                None => out.state.push(StateChange::Delete(key)),
            }
        }
    }
}

pub fn state_key(client: &[u8]) -> Vec<u8> {
    let mut k = STATE_PREFIX.to_vec();
    k.push(SOURCE_KEY);
    k.extend_from_slice(client);
    k
}

fn describe(e: &Episode) -> (u64, String, &'static str, &'static str, u32) {
    let cats = e.categories.iter().cloned().collect::<Vec<_>>().join(", ");
    let reason = e.reasons.values().next().cloned().unwrap_or_default();
    match (e.detector.as_str(), e.kind.as_str()) {
        ("web-attack", _) => (
            sid::WEB_ATTACK,
            format!("CANHGAC WEB attack: {cats} ({} requests)", e.requests),
            "T1190",
            "Web Application Attack",
            2,
        ),
        ("web-scan", _) => (
            sid::WEB_SCAN,
            format!("CANHGAC WEB vulnerability scan: {reason} ({} requests)", e.requests),
            "T1595.002",
            "Attempted Information Leak",
            3,
        ),
        ("web-bruteforce", "login") => (
            sid::WEB_BRUTEFORCE,
            format!("CANHGAC WEB login brute force: {reason}"),
            "T1110.001",
            "Attempted User Privilege Gain",
            2,
        ),
        ("web-bruteforce", _) => (
            sid::WEB_BRUTEFORCE,
            format!("CANHGAC WEB directory brute force: {reason} ({} requests)", e.requests),
            "T1595.003",
            "Attempted Information Leak",
            3,
        ),
        _ => (
            sid::WEBSHELL_ACCESS,
            format!("CANHGAC WEB web-shell access: {reason}"),
            "T1505.003",
            "Web Application Attack",
            1,
        ),
    }
}

fn alert_record(client: &str, e: &Episode) -> NewRecord {
    let (signature_id, signature, technique, category, severity) = describe(e);
    let ts = from_secs(e.first);
    let ip = client.parse::<std::net::IpAddr>().ok();
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(ts).into());
    m.insert("event_type".into(), "alert".into());
    match ip {
        Some(ip) => m.insert("src_ip".into(), ip.to_string().into()),
        None => m.insert("src_host".into(), client.into()),
    };
    let mut http = Map::new();
    if let Some(h) = e.vhosts.iter().next() {
        http.insert("hostname".into(), h.clone().into());
    }
    http.insert("url".into(), e.uri.clone().into());
    http.insert("http_method".into(), e.method.clone().into());
    http.insert("status".into(), e.status.into());
    if let Some(ua) = e.user_agents.first() {
        http.insert("http_user_agent".into(), ua.clone().into());
    }
    m.insert("http".into(), Value::Object(http));
    let statuses: Map<String, Value> = e.statuses.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    let mut c = json!({
        "detector": e.detector,
        "technique": technique,
        "source": "web",
        "log_source": e.log_source,
        "requests": e.requests,
        "first_seen": canhgac_proto::timefmt::eve(from_secs(e.first)),
        "last_seen": canhgac_proto::timefmt::eve(from_secs(e.last)),
        "samples": e.samples,
        "statuses": statuses,
        "methods": e.methods,
        "user_agents": e.user_agents,
    });
    if let Some(o) = c.as_object_mut() {
        if !e.kind.is_empty() {
            o.insert("kind".into(), e.kind.clone().into());
        }
        if !e.categories.is_empty() {
            o.insert("categories".into(), e.categories.iter().cloned().collect::<Vec<_>>().into());
        }
        if !e.signatures.is_empty() {
            let sigs: Vec<Value> =
                e.signatures.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
            o.insert("web_signatures".into(), sigs.into());
        }
        if !e.reasons.is_empty() {
            o.insert("reasons".into(), e.reasons.values().cloned().collect::<Vec<_>>().into());
        }
        if !e.vhosts.is_empty() {
            o.insert("vhosts".into(), e.vhosts.iter().cloned().collect::<Vec<_>>().into());
        }
        if e.system != 0 {
            o.insert("system".into(), e.system.into());
        }
        if ip.is_none() {
            o.insert("src_host".into(), client.into());
        }
    }
    let info = AlertInfo::builtin(signature_id, signature, category, severity);
    let mut facts = crate::facts::host(&e.detector, ip, Some(client));
    facts.system = e.system;
    crate::facts::set_signature(&mut facts, signature_id, &info.signature, &info.category, technique);
    let value = crate::eve::alert(m, info, None, Vec::new(), c);
    NewRecord {
        kind: RecordKind::Alert,
        severity,
        time: ts,
        eve_json: value.to_string().into_bytes(),
        facts: Some(facts),
    }
}

#[cfg(test)]
mod tests {
    use super::{super::parse::WebFormat, *};

    fn req(client: &str, t: i64, method: &str, uri: &str, status: u16, size: u64, ua: &str) -> WebEvent {
        WebEvent {
            ts: Some(from_secs(t)),
            client: client.into(),
            client_ip: client.parse().ok(),
            method: method.into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            status,
            size,
            referrer: None,
            user_agent: Some(ua.into()),
            vhost: Some("portal.example.gov.vn".into()),
            format: "combined",
        }
    }

    const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36";
    const O: Origin<'static> = Origin { source: "/var/log/nginx/access.log", system: 7 };

    fn detector() -> WebDetector {
        WebDetector::new(
            WebDetectConfig::default(),
            Arc::new(SignatureSet::load(&[]).unwrap()),
            WebShells::default(),
        )
    }

    fn alerts(out: &Output) -> Vec<Value> {
        out.records.iter().map(|r| serde_json::from_slice(&r.eve_json).unwrap()).collect()
    }

    #[test]
    fn one_alert_per_episode_with_counts() {
        let mut d = detector();
        let mut out = Output::default();
        let t0 = 1_796_526_932;
        for i in 0..30 {
            let ev = req(
                "203.0.113.9",
                t0 + i,
                "GET",
                &format!("/item?id={i}%27%20OR%201%3D1--"),
                200,
                10,
                BROWSER,
            );
            d.on_event(&ev, from_secs(t0), O, &mut out);
        }
        assert!(out.records.is_empty(), "held until the episode is quiet or long enough");
        d.tick(from_secs(t0 + 60), &mut out);
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0]["src_ip"], "203.0.113.9");
        assert_eq!(a[0]["canhgac"]["detector"], "web-attack");
        assert_eq!(a[0]["canhgac"]["source"], "web");
        assert_eq!(a[0]["canhgac"]["requests"], 30);
        assert_eq!(a[0]["canhgac"]["samples"].as_array().unwrap().len(), SAMPLES);
        assert_eq!(a[0]["canhgac"]["statuses"]["200"], 30);
        assert_eq!(a[0]["canhgac"]["categories"][0], "sqli");
        assert_eq!(out.records[0].facts.as_ref().unwrap().system, 7);
        // the same source keeps going in the same episode: nothing more
        out.records.clear();
        for i in 0..5 {
            let ev =
                req("203.0.113.9", t0 + 100 + i, "GET", "/?q=<script>alert(1)</script>", 200, 10, BROWSER);
            d.on_event(&ev, from_secs(t0), O, &mut out);
        }
        d.finish(&mut out);
        assert!(out.records.is_empty());
        // after a gap: a new episode, a new alert
        let ev = req("203.0.113.9", t0 + 2000, "GET", "/?q=<script>alert(1)</script>", 200, 10, BROWSER);
        d.on_event(&ev, from_secs(t0), O, &mut out);
        d.finish(&mut out);
        assert_eq!(alerts(&out)[0]["canhgac"]["categories"][0], "xss");
    }

    #[test]
    fn scanners_bruteforce_and_webshells() {
        let mut d = detector();
        let mut out = Output::default();
        let t0 = 1_796_526_932;
        // sqlmap's user agent: a scan (and its payloads: an attack)
        d.on_event(
            &req("198.51.100.1", t0, "GET", "/?id=1", 200, 5, "sqlmap/1.7.2#stable (https://sqlmap.org)"),
            from_secs(t0),
            O,
            &mut out,
        );
        // a directory brute forcer with a browser agent
        for i in 0..60 {
            d.on_event(
                &req("198.51.100.2", t0 + i / 10, "GET", &format!("/w{i}"), 404, 5, BROWSER),
                from_secs(t0),
                O,
                &mut out,
            );
        }
        // a login guesser: same-size 200 answers
        for i in 0..12 {
            d.on_event(
                &req("198.51.100.3", t0 + i, "POST", "/dang-nhap", 200, 4312, BROWSER),
                from_secs(t0),
                O,
                &mut out,
            );
        }
        // a web shell
        d.on_event(
            &req("198.51.100.4", t0, "GET", "/uploads/x.php?cmd=whoami", 200, 5, BROWSER),
            from_secs(t0),
            O,
            &mut out,
        );
        d.finish(&mut out);
        let a = alerts(&out);
        let got: BTreeSet<(String, String)> = a
            .iter()
            .map(|x| {
                (
                    x["src_ip"].as_str().unwrap().to_string(),
                    x["canhgac"]["detector"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: BTreeSet<(String, String)> = [
            ("198.51.100.1", "web-scan"),
            ("198.51.100.2", "web-bruteforce"),
            ("198.51.100.2", "web-scan"),
            ("198.51.100.3", "web-bruteforce"),
            ("198.51.100.4", "webshell-access"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want, "{a:#?}");
        let login = a.iter().find(|x| x["src_ip"] == "198.51.100.3").unwrap();
        assert_eq!(login["canhgac"]["kind"], "login");
        assert_eq!(login["alert"]["severity"], 2);
    }

    #[test]
    fn benign_browsing_raises_nothing_and_state_survives_a_restart() {
        let mut d = detector();
        let mut out = Output::default();
        let t0 = 1_796_526_932;
        let pages = [
            ("/", 200),
            ("/tin-tuc", 200),
            ("/favicon.ico", 404),
            ("/tim-kiem?q=th%E1%BB%A7+t%E1%BB%A5c+h%C3%A0nh+ch%C3%ADnh", 200),
            ("/apple-touch-icon.png", 404),
            ("/van-ban/123", 200),
            ("/login", 200),
            ("/static/app.js", 200),
        ];
        for round in 0..20 {
            for (i, (p, st)) in pages.iter().enumerate() {
                let t = t0 + round * 30 + i as i64;
                d.on_event(&req("10.0.0.20", t, "GET", p, *st, 100, BROWSER), from_secs(t0), O, &mut out);
            }
        }
        for i in 0..3 {
            d.on_event(
                &req("10.0.0.20", t0 + 700 + i, "POST", "/login", 302, 0, BROWSER),
                from_secs(t0),
                O,
                &mut out,
            );
        }
        d.finish(&mut out);
        assert!(out.records.is_empty(), "{:?}", alerts(&out));
        // state round trip
        let mut d = detector();
        let ev = req("203.0.113.9", t0, "GET", "/?q=<script>", 200, 1, BROWSER);
        d.on_event(&ev, from_secs(t0), O, &mut out);
        let mut st = Output::default();
        d.take_state(&mut st);
        let mut d2 = detector();
        for c in st.state {
            let (k, v) = c.into_pair();
            assert!(d2.restore(&k[STATE_PREFIX.len()..], &v.unwrap()));
        }
        d2.finish(&mut out);
        assert_eq!(alerts(&out).len(), 1);
        let _ = WebFormat::Auto;
    }
}
