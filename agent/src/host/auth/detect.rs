//! Authentication detectors over [`AuthEvent`]s. Pure: time is the log's.
//!
//! | detector | fires | severity | technique |
//! |----------|-------|----------|-----------|
//! | `auth-bruteforce` | `failures` password guesses (default 5) from one source within `window_secs` (600), as fail2ban's sshd jail | 2 | T1110.001 |
//! | `auth-spray` | `users` distinct user names (default 10) tried from one source in one episode | 2 | T1110.003 |
//! | `auth-success-after-failures` | a login from a source that reached the brute-force threshold, within `window_secs` (3600) of its last failure | 1 | T1078 |
//! | `privileged-account-change` | a user added to a privileged group (`sudo`, `wheel`, `adm`, ..., and Windows' `Administrators`, `Domain Admins`, ... compared without case), a user given UID 0, root's password changed | 2 | T1098 |
//! | `root-login` | a direct login as root (ssh, console), once per source per `suppress_secs` (600) | 3 | T1078.003 |
//!
//! An **episode** is a run of failures from one source with no gap longer
//! than the brute-force window; each detector fires at most once per
//! episode, naming the source (`src_ip`), the users tried and the counts.
//!
//! # Persisted state (spool detector state, prefix `ha`)
//!
//! | key | value |
//! |-----|-------|
//! | `has` source | JSON [`SourceState`] |
//! | `hac` pid | JSON connection of the sshd tracker (see `parse`) |
//! | `hap` | JSON list of recent privileged changes (for coalescing) |
//!
//! Sources are forgotten (and their keys deleted) once idle for longer than
//! every window, or, beyond `max_tracked`, least recently seen first
//! (counted).

use std::collections::{BTreeSet, VecDeque};

use canhgac_proto::v1::RecordKind;
use hashlink::LinkedHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::parse::{AuthEvent, Outcome};
use crate::{
    detect::{Output, StateChange},
    eve::{self, AlertInfo, sid},
    spool::NewRecord,
};

pub const STATE_PREFIX: &[u8] = b"ha";
const SOURCE_KEY: u8 = b's';
const CONN_KEY: u8 = b'c';
const PRIV_KEY: u8 = b'p';

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BruteforceConfig {
    pub enabled: bool,
    pub failures: u32,
    pub window_secs: i64,
}

impl Default for BruteforceConfig {
    fn default() -> Self {
        BruteforceConfig { enabled: true, failures: 5, window_secs: 600 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SprayConfig {
    pub enabled: bool,
    pub users: u32,
}

impl Default for SprayConfig {
    fn default() -> Self {
        SprayConfig { enabled: true, users: 10 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SuccessAfterFailuresConfig {
    pub enabled: bool,
    pub window_secs: i64,
}

impl Default for SuccessAfterFailuresConfig {
    fn default() -> Self {
        SuccessAfterFailuresConfig { enabled: true, window_secs: 3600 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RootLoginConfig {
    pub enabled: bool,
    pub suppress_secs: i64,
}

impl Default for RootLoginConfig {
    fn default() -> Self {
        RootLoginConfig { enabled: true, suppress_secs: 600 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegedConfig {
    pub enabled: bool,
    /// Groups whose members are administrators.
    pub groups: Vec<String>,
}

impl Default for PrivilegedConfig {
    fn default() -> Self {
        PrivilegedConfig {
            enabled: true,
            groups: ["sudo", "wheel", "adm", "admin", "root", "docker", "lxd", "libvirt", "disk", "shadow"]
                .iter()
                .chain(crate::host::windows::PRIVILEGED_GROUPS)
                .map(|g| g.to_string())
                .collect(),
        }
    }
}

/// `[host.auth.detect]` in the agent configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthDetectConfig {
    pub bruteforce: BruteforceConfig,
    pub spray: SprayConfig,
    pub success_after_failures: SuccessAfterFailuresConfig,
    pub root_login: RootLoginConfig,
    pub privileged_account_change: PrivilegedConfig,
    /// Sources remembered at most.
    pub max_tracked: usize,
}

impl Default for AuthDetectConfig {
    fn default() -> Self {
        AuthDetectConfig {
            bruteforce: BruteforceConfig::default(),
            spray: SprayConfig::default(),
            success_after_failures: SuccessAfterFailuresConfig::default(),
            root_login: RootLoginConfig::default(),
            privileged_account_change: PrivilegedConfig::default(),
            max_tracked: 50_000,
        }
    }
}

const MAX_USERS: usize = 64;
const MAX_WINDOW_ENTRIES: usize = 4096;

/// What is remembered of one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// (unix seconds, guesses) within the brute-force window.
    #[serde(default)]
    window: VecDeque<(i64, u32)>,
    #[serde(default)]
    ep_start: i64,
    #[serde(default)]
    ep_last: i64,
    #[serde(default)]
    ep_failures: u64,
    /// Failure lines of the episode (guesses or not).
    #[serde(default)]
    ep_lines: u64,
    #[serde(default)]
    users: BTreeSet<String>,
    #[serde(default)]
    users_more: bool,
    #[serde(default)]
    services: BTreeSet<String>,
    /// Highest window count reached in the episode.
    #[serde(default)]
    peak: u64,
    #[serde(default)]
    alerted_bruteforce: bool,
    #[serde(default)]
    alerted_spray: bool,
    #[serde(default)]
    alerted_compromise: bool,
    #[serde(default)]
    last_root_login: i64,
    /// Last activity of any kind.
    #[serde(default)]
    seen: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthDetectStats {
    pub alerts: u64,
    /// Sources forgotten at `max_tracked`.
    pub evictions: u64,
}

pub struct AuthDetector {
    cfg: AuthDetectConfig,
    sources: LinkedHashMap<String, SourceState>,
    dirty: BTreeSet<String>,
    /// (key, unix seconds) of recent privileged changes.
    recent_priv: VecDeque<(String, i64)>,
    priv_dirty: bool,
    last_sweep: i64,
    pub stats: AuthDetectStats,
}

fn secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl AuthDetector {
    pub fn new(cfg: AuthDetectConfig) -> AuthDetector {
        AuthDetector {
            cfg,
            sources: LinkedHashMap::new(),
            dirty: BTreeSet::new(),
            recent_priv: VecDeque::new(),
            priv_dirty: false,
            last_sweep: i64::MIN,
            stats: AuthDetectStats::default(),
        }
    }

    /// Restores a state entry (key without the `ha` prefix); returns false
    /// when the key is not the detector's.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> bool {
        match key.split_first() {
            Some((&SOURCE_KEY, k)) => {
                if let Ok(s) = serde_json::from_slice::<SourceState>(value) {
                    self.sources.insert(String::from_utf8_lossy(k).into_owned(), s);
                }
                true
            }
            Some((&PRIV_KEY, _)) => {
                if let Ok(v) = serde_json::from_slice::<VecDeque<(String, i64)>>(value) {
                    self.recent_priv = v;
                }
                true
            }
            _ => false,
        }
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn longest_memory(&self) -> i64 {
        self.cfg
            .bruteforce
            .window_secs
            .max(self.cfg.success_after_failures.window_secs)
            .max(self.cfg.root_login.suppress_secs)
            .max(1)
    }

    fn source(&mut self, key: &str, now: i64) -> &mut SourceState {
        self.dirty.insert(key.to_string());
        if !self.sources.contains_key(key) {
            while self.sources.len() >= self.cfg.max_tracked.max(1) {
                match self.sources.pop_front() {
                    Some((old, _)) => {
                        self.dirty.insert(old);
                        self.stats.evictions += 1;
                    }
                    None => break,
                }
            }
            self.sources.insert(key.to_string(), SourceState { seen: now, ..Default::default() });
        }
        self.sources.to_back(key);
        match self.sources.get_mut(key) {
            Some(s) => s,
            None => unreachable_source(),
        }
    }

    /// Forgets sources idle for longer than every window.
    fn sweep(&mut self, now: i64) {
        if now < self.last_sweep.saturating_add(60) {
            return;
        }
        self.last_sweep = now;
        let cutoff = now - self.longest_memory();
        let stale: Vec<String> =
            self.sources.iter().filter(|(_, s)| s.seen < cutoff).map(|(k, _)| k.clone()).collect();
        for k in stale {
            self.sources.remove(&k);
            self.dirty.insert(k);
        }
        let before = self.recent_priv.len();
        self.recent_priv.retain(|(_, t)| *t >= now - 60);
        self.priv_dirty |= before != self.recent_priv.len();
    }

    /// One event; alerts go to `out` (state changes via [`take_state`]).
    ///
    /// [`take_state`]: AuthDetector::take_state
    pub fn on_event(&mut self, ev: &AuthEvent, source: &str, out: &mut Output) {
        let now = secs(ev.ts);
        self.sweep(now);
        if let Some(change) = &ev.account {
            self.account_change(ev, change, source, out);
        }
        match ev.outcome {
            Outcome::Failure => self.failure(ev, source, now, out),
            Outcome::Success if ev.account.is_none() => self.success(ev, source, now, out),
            Outcome::Success => {}
        }
    }

    fn failure(&mut self, ev: &AuthEvent, source: &str, now: i64, out: &mut Output) {
        let Some(src) = &ev.src else { return };
        let bf = self.cfg.bruteforce.clone();
        let spray = self.cfg.spray.clone();
        let s = self.source(&src.host, now);
        s.seen = s.seen.max(now);
        if s.ep_lines > 0 && now - s.ep_last > bf.window_secs {
            // the previous episode is over
            let last_root_login = s.last_root_login;
            *s = SourceState { seen: now, last_root_login, ..Default::default() };
        }
        if s.ep_lines == 0 {
            s.ep_start = now;
        }
        s.ep_last = s.ep_last.max(now);
        s.ep_lines += 1;
        if s.services.len() < 8 {
            s.services.insert(ev.service.clone());
        }
        let mut new_users = ev.users_tried.clone();
        if let Some(u) = &ev.user {
            new_users.push(u.clone());
        }
        if ev.attempts == 0 {
            return;
        }
        for u in new_users {
            if s.users.len() < MAX_USERS {
                s.users.insert(u);
            } else if !s.users.contains(&u) {
                s.users_more = true;
            }
        }
        s.ep_failures += u64::from(ev.attempts);
        s.window.push_back((now, ev.attempts));
        let newest = s.window.iter().map(|w| w.0).max().unwrap_or(now);
        while s.window.front().is_some_and(|w| w.0 < newest - bf.window_secs)
            || s.window.len() > MAX_WINDOW_ENTRIES
        {
            s.window.pop_front();
        }
        let in_window: u64 = s.window.iter().map(|w| u64::from(w.1)).sum();
        s.peak = s.peak.max(in_window);
        let fire_bf = bf.enabled && !s.alerted_bruteforce && in_window >= u64::from(bf.failures.max(1));
        if fire_bf {
            s.alerted_bruteforce = true;
        }
        let fire_spray =
            spray.enabled && !s.alerted_spray && s.users.len() as u64 >= u64::from(spray.users.max(2));
        if fire_spray {
            s.alerted_spray = true;
        }
        let snapshot = s.clone();
        if fire_bf {
            let users = users_text(&snapshot);
            let details = self.episode_details(&snapshot, in_window);
            let sig = format!(
                "CANHGAC AUTH brute force: {in_window} failed logins from {} within {}s ({users})",
                src.host, bf.window_secs
            );
            self.alert(
                ev,
                source,
                sid::AUTH_BRUTEFORCE,
                sig,
                "Attempted User Privilege Gain",
                2,
                "auth-bruteforce",
                "T1110.001",
                details,
                out,
            );
        }
        if fire_spray {
            let details = self.episode_details(&snapshot, in_window);
            let sig = format!(
                "CANHGAC AUTH password spray: {}{} user names tried from {}",
                snapshot.users.len(),
                if snapshot.users_more { "+" } else { "" },
                src.host
            );
            self.alert(
                ev,
                source,
                sid::AUTH_SPRAY,
                sig,
                "Attempted User Privilege Gain",
                2,
                "auth-spray",
                "T1110.003",
                details,
                out,
            );
        }
    }

    fn success(&mut self, ev: &AuthEvent, source: &str, now: i64, out: &mut Output) {
        let sa = self.cfg.success_after_failures.clone();
        let bf_threshold = u64::from(self.cfg.bruteforce.failures.max(1));
        let root = self.cfg.root_login.clone();
        let key = ev.src.as_ref().map(|s| s.host.clone());
        let is_root = ev.user.as_deref() == Some("root") && matches!(ev.service.as_str(), "sshd" | "login");
        let flagged = key.as_ref().and_then(|k| self.sources.get(k)).is_some_and(|s| {
            !s.alerted_compromise && s.peak >= bf_threshold && now - s.ep_last <= sa.window_secs
        });
        if let Some(k) = &key
            && sa.enabled
            && flagged
        {
            let s = self.source(k, now);
            s.alerted_compromise = true;
            s.seen = s.seen.max(now);
            let snapshot = s.clone();
            let mut details = self.episode_details(&snapshot, snapshot.peak);
            details.insert("logged_in_as".into(), ev.user.clone().unwrap_or_default().into());
            let sig = format!(
                "CANHGAC AUTH successful login as {} from {} after {} failed logins",
                ev.user.as_deref().unwrap_or("?"),
                k,
                snapshot.ep_failures
            );
            self.alert(
                ev,
                source,
                sid::AUTH_SUCCESS_AFTER_FAILURES,
                sig,
                "Successful Administrator Privilege Gain",
                1,
                "auth-success-after-failures",
                "T1078",
                details,
                out,
            );
        }
        if is_root && root.enabled {
            let k = key.clone().unwrap_or_else(|| format!("local:{}", ev.tty.as_deref().unwrap_or("")));
            let s = self.source(&k, now);
            s.seen = s.seen.max(now);
            if s.last_root_login == 0
                || now - s.last_root_login > root.suppress_secs
                || now < s.last_root_login
            {
                s.last_root_login = now;
                let mut details = Map::new();
                details.insert("user".into(), "root".into());
                details.insert("service".into(), ev.service.clone().into());
                if let Some(m) = &ev.method {
                    details.insert("method".into(), m.clone().into());
                }
                let from = key.clone().unwrap_or_else(|| ev.tty.clone().unwrap_or_else(|| "console".into()));
                let sig = format!("CANHGAC AUTH direct root login from {from} ({})", ev.service);
                self.alert(
                    ev,
                    source,
                    sid::AUTH_ROOT_LOGIN,
                    sig,
                    "Potential Corporate Privacy Violation",
                    3,
                    "root-login",
                    "T1078.003",
                    details,
                    out,
                );
            }
        }
    }

    fn account_change(
        &mut self,
        ev: &AuthEvent,
        ch: &super::parse::AccountChange,
        source: &str,
        out: &mut Output,
    ) {
        let cfg = &self.cfg.privileged_account_change;
        if !cfg.enabled {
            return;
        }
        // Windows group names are case-insensitive
        let privileged_group =
            ch.group.as_deref().is_some_and(|g| cfg.groups.iter().any(|p| p.eq_ignore_ascii_case(g)));
        let (why, technique) = match ch.action {
            "group_member_added" | "group_members_set" if privileged_group => {
                ("added to privileged group", "T1098")
            }
            "user_added" if ch.uid == Some(0) => ("new account with UID 0", "T1136.001"),
            "uid_changed" if ch.uid == Some(0) => ("account given UID 0", "T1098"),
            "password_changed" if ch.user.as_deref() == Some("root") => ("root password changed", "T1098"),
            _ => return,
        };
        if ch.action == "group_members_set" && ch.user.as_deref().unwrap_or("").is_empty() {
            return;
        }
        let now = secs(ev.ts);
        // useradd logs the group and the shadow group: one alert
        let key =
            format!("{why}\0{}\0{}", ch.user.as_deref().unwrap_or(""), ch.group.as_deref().unwrap_or(""));
        if self.recent_priv.iter().any(|(k, t)| *k == key && (now - t).abs() <= 60) {
            return;
        }
        self.recent_priv.push_back((key, now));
        while self.recent_priv.len() > 256 {
            self.recent_priv.pop_front();
        }
        self.priv_dirty = true;
        let mut details = Map::new();
        details.insert("action".into(), ch.action.into());
        if let Some(u) = &ch.user {
            details.insert("user".into(), u.clone().into());
        }
        if let Some(g) = &ch.group {
            details.insert("group".into(), g.clone().into());
        }
        if let Some(uid) = ch.uid {
            details.insert("uid".into(), uid.into());
        }
        details.insert("tool".into(), ev.program.clone().into());
        let sig = format!(
            "CANHGAC HOST privileged account change: {why}: {}{}",
            ch.user.as_deref().unwrap_or("?"),
            ch.group.as_deref().map(|g| format!(" → {g}")).unwrap_or_default()
        );
        self.alert(
            ev,
            source,
            sid::PRIVILEGED_ACCOUNT_CHANGE,
            sig,
            "Attempted Administrator Privilege Gain",
            2,
            "privileged-account-change",
            technique,
            details,
            out,
        );
    }

    fn episode_details(&self, s: &SourceState, in_window: u64) -> Map<String, Value> {
        let mut d = Map::new();
        d.insert("failures".into(), in_window.into());
        d.insert("window_secs".into(), self.cfg.bruteforce.window_secs.into());
        d.insert("episode_failures".into(), s.ep_failures.into());
        d.insert("users".into(), s.users.iter().take(20).cloned().collect::<Vec<_>>().into());
        d.insert("users_count".into(), (s.users.len() as u64).into());
        if s.users_more {
            d.insert("users_truncated".into(), true.into());
        }
        d.insert("services".into(), s.services.iter().cloned().collect::<Vec<_>>().into());
        d.insert("first_seen".into(), canhgac_proto::timefmt::eve(from_secs(s.ep_start)).into());
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &mut self,
        ev: &AuthEvent,
        source: &str,
        signature_id: u64,
        signature: String,
        category: &str,
        severity: u32,
        detector: &str,
        technique: &str,
        details: Map<String, Value>,
        out: &mut Output,
    ) {
        self.stats.alerts += 1;
        let mut m = base(ev, "alert");
        let info = AlertInfo::builtin(signature_id, signature, category, severity);
        let mut canhgac = json!({"detector": detector, "technique": technique});
        if let Some(obj) = canhgac.as_object_mut() {
            obj.extend(details);
            if let Some(src) = &ev.src
                && src.ip.is_none()
            {
                obj.insert("src_host".into(), src.host.clone().into());
            }
            log_context(obj, ev, source);
        }
        m.insert("auth".into(), auth_object(ev));
        let remote = ev.src.as_ref();
        let mut facts =
            crate::facts::host(detector, remote.and_then(|r| r.ip), remote.map(|r| r.host.as_str()));
        if let (Some(a), Some(port)) = (facts.src.as_mut(), ev.src_port) {
            a.port = u32::from(port);
        }
        crate::facts::set_signature(&mut facts, signature_id, &info.signature, &info.category, technique);
        facts.system = ev.origin.system.unwrap_or(0);
        if ev.origin.sender.is_some() {
            // received over syslog: the victim is the device that logged
            // it (a Windows server), not the agent's host
            facts.on_host = false;
            if let Some(h) = &ev.log_host {
                facts.victims.push(crate::facts::named(h));
            }
        }
        let value = eve::alert(m, info, None, Vec::new(), canhgac);
        out.records.push(NewRecord {
            kind: RecordKind::Alert,
            severity,
            time: ev.ts,
            eve_json: value.to_string().into_bytes(),
            facts: Some(facts),
        });
    }

    /// State changes since the last call (keys without the spool's `s`).
    pub fn take_state(&mut self, out: &mut Output) {
        for k in std::mem::take(&mut self.dirty) {
            let key = state_key(SOURCE_KEY, k.as_bytes());
            match self.sources.get(&k) {
                Some(s) => out.state.push(StateChange::Put(key, serde_json::to_vec(s).unwrap_or_default())),
                None => out.state.push(StateChange::Delete(key)),
            }
        }
        if std::mem::take(&mut self.priv_dirty) {
            out.state.push(StateChange::Put(
                state_key(PRIV_KEY, b""),
                serde_json::to_vec(&self.recent_priv).unwrap_or_default(),
            ));
        }
    }
}

#[cold]
fn unreachable_source() -> ! {
    panic!("source table lost a key it just inserted")
}

pub fn state_key(kind: u8, key: &[u8]) -> Vec<u8> {
    let mut k = STATE_PREFIX.to_vec();
    k.push(kind);
    k.extend_from_slice(key);
    k
}

pub fn conn_state_key(key: &str) -> Vec<u8> {
    state_key(CONN_KEY, key.as_bytes())
}

pub fn is_conn_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(STATE_PREFIX)?.strip_prefix(&[CONN_KEY])
}

fn from_secs(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn users_text(s: &SourceState) -> String {
    let mut v: Vec<&str> = s.users.iter().map(String::as_str).take(5).collect();
    if s.users.len() > 5 || s.users_more {
        v.push("...");
    }
    if v.is_empty() { "no user name".into() } else { format!("users {}", v.join(", ")) }
}

/// `timestamp`, `event_type`, `src_ip`/`src_port` of a host record.
pub fn base(ev: &AuthEvent, event_type: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(ev.ts).into());
    m.insert("event_type".into(), event_type.into());
    if let Some(ip) = ev.src.as_ref().and_then(|s| s.ip) {
        m.insert("src_ip".into(), ip.to_string().into());
        if let Some(p) = ev.src_port {
            m.insert("src_port".into(), p.into());
        }
    }
    m
}

/// The EVE `auth` object.
pub fn auth_object(ev: &AuthEvent) -> Value {
    let mut a = Map::new();
    a.insert("service".into(), ev.service.clone().into());
    a.insert("outcome".into(), ev.outcome.as_str().into());
    if let Some(u) = &ev.user {
        a.insert("user".into(), u.clone().into());
    }
    if let Some(src) = &ev.src {
        match src.ip {
            Some(ip) => a.insert("src_ip".into(), ip.to_string().into()),
            None => a.insert("src_host".into(), src.host.clone().into()),
        };
    }
    if let Some(p) = ev.src_port {
        a.insert("src_port".into(), p.into());
    }
    if let Some(m) = &ev.method {
        a.insert("method".into(), m.clone().into());
    }
    if let Some(r) = ev.reason {
        a.insert("reason".into(), r.into());
    }
    if !ev.users_tried.is_empty() {
        a.insert("users_tried".into(), ev.users_tried.clone().into());
    }
    if let Some(t) = &ev.target_user {
        a.insert("target_user".into(), t.clone().into());
    }
    if let Some(c) = &ev.command {
        a.insert("command".into(), c.clone().into());
    }
    if let Some(t) = &ev.tty {
        a.insert("tty".into(), t.clone().into());
    }
    if let Some(ch) = &ev.account {
        a.insert("action".into(), ch.action.into());
        if let Some(g) = &ch.group {
            a.insert("group".into(), g.clone().into());
        }
        if let Some(uid) = ch.uid {
            a.insert("uid".into(), uid.into());
        }
    }
    Value::Object(a)
}

fn log_context(obj: &mut Map<String, Value>, ev: &AuthEvent, source: &str) {
    obj.insert("log_source".into(), source.into());
    ev.origin.write(obj);
    if let Some(h) = &ev.log_host {
        obj.insert("log_host".into(), h.clone().into());
    }
    obj.insert("program".into(), ev.program.clone().into());
    if let Some(p) = ev.pid {
        obj.insert("pid".into(), p.into());
    }
    if let Some(o) = ev.offset {
        obj.insert("log_offset".into(), o.into());
    }
}

/// The EVE `auth` event of one parsed line.
pub fn auth_event_record(ev: &AuthEvent, source: &str) -> NewRecord {
    let mut m = base(ev, "auth");
    m.insert("auth".into(), auth_object(ev));
    let mut c = Map::new();
    log_context(&mut c, ev, source);
    m.insert("canhgac".into(), Value::Object(c));
    NewRecord {
        kind: RecordKind::Event,
        severity: 0,
        time: ev.ts,
        eve_json: Value::Object(m).to_string().into_bytes(),
        facts: None,
    }
}
