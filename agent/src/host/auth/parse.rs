//! Authentication messages → [`AuthEvent`]s.
//!
//! Programs understood: OpenSSH 3.x to 10.x (`sshd`, `sshd-session`,
//! `sshd-auth`, and messages with no program at all, as `sshd -E FILE`
//! writes them), PAM modules of any service (`pam_unix(SVC:auth):
//! authentication failure`, and the older `SVC(pam_unix)[PID]:` /
//! `(pam_unix) ...` forms of RHEL/CentOS 4-5), `sudo`, `su`, `login`, the
//! account tools of shadow-utils (`useradd`, `usermod`, `userdel`,
//! `groupadd`, `groupmod`, `groupdel`, `gpasswd`, `passwd`, `chpasswd`,
//! `chage`, `newusers`), and the FTP servers `vsftpd`, `proftpd` and
//! `pure-ftpd`. A line of one of these programs that yields no event and is
//! not a message known to carry none (sessions, daemon start and stop,
//! reverse-DNS warnings) is counted as unparsed ([`ParseStats::unparsed`]),
//! never silently accepted.
//!
//! # OpenSSH connections
//!
//! Several sshd messages only make sense with the ones before them from the
//! same process, so sshd messages go through a small per-connection tracker
//! keyed by (log host, pid), bounded (least recently used connection
//! forgotten first, counted):
//!
//! * a `pam_unix(sshd:auth): authentication failure` is held back: it is
//!   forgotten when the same connection then logs in as the same user
//!   (a first PAM module failing and a second succeeding is not an attack),
//!   absorbed by the `Failed password` line of the same attempt, and
//!   reported as a failure when the connection tries another user, logs in
//!   as another user, or ends without success;
//! * `Failed publickey` for an existing user is a client trying its keys,
//!   not a failure, unless the connection then ends with `Too many
//!   authentication failures` or before authenticating;
//! * lines without an address (`Disconnecting: Too many authentication
//!   failures`, `kex_exchange_identification: ...`, `fatal: Read from socket
//!   failed`) take it from the connection (`Connection from`, `SSH: Server;
//!   ...Remote:`), or wait for the line that names it;
//! * a connection closed before authentication (`[preauth]`) that produced
//!   no failure yet is one (a probe, not a guess).
//!
//! Each failure carries `attempts`: how many password guesses it adds for
//! the brute-force detector. `Invalid user X` counts one and the `Failed
//! password for invalid user X` of the same connection that follows adds
//! none; probes (protocol errors, pre-authentication disconnects, timeouts)
//! add none.
//!
//! Addresses: an IPv4-mapped IPv6 address is written as IPv4; a name (sshd
//! with `UseDNS yes`) stays a name (`src_host`, not `src_ip`).

use std::net::IpAddr;

use hashlink::LinkedHashMap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::host::logfmt::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// The remote side of an authentication, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Remote {
    /// Normalised text: an address, or a host name.
    pub host: String,
    pub ip: Option<IpAddr>,
}

impl Remote {
    /// `None` for empty or implausible text (attacker-controlled).
    pub fn parse(text: &str) -> Option<Remote> {
        let t = text.trim();
        if t.is_empty() || t.len() > 255 || t == "UNKNOWN" {
            return None;
        }
        let t = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(t);
        if let Ok(ip) = t.parse::<IpAddr>() {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            return Some(Remote { host: ip.to_string(), ip: Some(ip) });
        }
        if !t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':')) {
            return None;
        }
        Some(Remote { host: t.to_string(), ip: None })
    }
}

/// An account or group change by the shadow-utils tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    /// `user_added`, `group_added`, `group_member_added`,
    /// `group_member_removed`, `group_members_set`, `uid_changed`,
    /// `password_changed`, `password_locked`, `password_unlocked`,
    /// `expiry_changed`, `user_modified`, `user_deleted`, `group_deleted`.
    pub action: &'static str,
    pub user: Option<String>,
    pub group: Option<String>,
    pub uid: Option<u32>,
}

/// One authentication-relevant log line, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEvent {
    pub ts: OffsetDateTime,
    /// The service: `sshd`, `sudo`, `su`, `login`, a PAM service, or the
    /// account tool (`useradd`, ...).
    pub service: String,
    pub outcome: Outcome,
    pub user: Option<String>,
    pub src: Option<Remote>,
    pub src_port: Option<u16>,
    pub method: Option<String>,
    /// Why, in a word: `invalid_user`, `not_allowed`, `bad_password`,
    /// `too_many_failures`, `preauth_disconnect`, `protocol_error`, ...
    pub reason: Option<&'static str>,
    /// Password guesses this line adds (see the module documentation).
    pub attempts: u32,
    /// Other users tried on the same connection (held-back PAM failures).
    pub users_tried: Vec<String>,
    /// `sudo`/`su`: the user switched to.
    pub target_user: Option<String>,
    pub command: Option<String>,
    pub tty: Option<String>,
    pub account: Option<AccountChange>,
    pub log_host: Option<String>,
    pub program: String,
    pub pid: Option<u32>,
    /// Byte offset of the line in its file, when read from a file.
    pub offset: Option<u64>,
    /// Log kind (`auth`, `windows`), syslog sender and registry system.
    pub origin: crate::host::origin::LogOrigin,
}

impl AuthEvent {
    pub fn new(ts: OffsetDateTime, entry: &Entry, service: &str, outcome: Outcome) -> AuthEvent {
        AuthEvent {
            ts,
            service: service.to_string(),
            outcome,
            user: None,
            src: None,
            src_port: None,
            method: None,
            reason: None,
            attempts: 0,
            users_tried: Vec::new(),
            target_user: None,
            command: None,
            tty: None,
            account: None,
            log_host: entry.host.clone(),
            program: if entry.program.is_empty() { "sshd".into() } else { entry.program.clone() },
            pid: entry.pid,
            offset: None,
            origin: Default::default(),
        }
    }
}

/// What the tracker remembers of one sshd connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A failure was reported for this connection.
    #[serde(default)]
    pub failed: bool,
    /// `maximum authentication attempts exceeded` / `Too many ...` reported.
    #[serde(default)]
    pub max_reported: bool,
    /// `Invalid user` counted the first guess already.
    #[serde(default)]
    pub announced: bool,
    /// Held-back PAM failures: the users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_pam: Vec<String>,
    /// Users whose failures were reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<String>,
    /// Public keys refused for an existing user.
    #[serde(default)]
    pub pending_keys: u32,
    /// A protocol error seen before the address was known.
    #[serde(default)]
    pub pending_probe: bool,
    /// `Too many authentication failures` seen before the address.
    #[serde(default)]
    pub pending_too_many: bool,
    /// Users of old-style PAM failures (`sshd(pam_unix)`) reported already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pam_counted: Vec<String>,
}

const MAX_PENDING: usize = 16;

/// Counters of the parser.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseStats {
    /// Lines of a known program that became at least one event.
    pub events: u64,
    /// Connections forgotten at the tracker's capacity.
    pub conn_evictions: u64,
    /// Lines of a program we interpret (sshd, PAM, sudo, su, login, the
    /// account tools, vsftpd, proftpd, pure-ftpd) that were not understood.
    pub unparsed: u64,
}

/// The message interpreter with its sshd connection tracker.
pub struct AuthParser {
    conns: LinkedHashMap<String, Conn>,
    capacity: usize,
    /// Connections changed since the last [`take_dirty`](Self::take_dirty).
    dirty: Vec<String>,
    pub stats: ParseStats,
}

/// Connections are told apart by pid alone: a log may name the same
/// machine differently from line to line, and one machine's sshd pids are
/// unique while the connection lives.
fn conn_key(entry: &Entry) -> String {
    entry.pid.map(|p| p.to_string()).unwrap_or_default()
}

impl AuthParser {
    pub fn new(capacity: usize) -> AuthParser {
        AuthParser {
            conns: LinkedHashMap::new(),
            capacity: capacity.max(1),
            dirty: Vec::new(),
            stats: ParseStats::default(),
        }
    }

    /// Restores a connection saved by an earlier run.
    pub fn restore(&mut self, key: String, conn: Conn) {
        self.conns.insert(key, conn);
    }

    /// Connections changed since the last call: (key, state or `None` when
    /// gone), for persisting.
    pub fn take_dirty(&mut self) -> Vec<(String, Option<Conn>)> {
        let mut keys = std::mem::take(&mut self.dirty);
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| {
                let c = self.conns.get(&k).cloned();
                (k, c)
            })
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Interprets one entry; `ts` is its time (the entry's or the reader's).
    /// Returns whether the line was understood (an event, or a message known
    /// to carry none); a line of a program we interpret that was not is
    /// counted in [`ParseStats::unparsed`].
    pub fn feed(&mut self, entry: &Entry, ts: OffsetDateTime, out: &mut Vec<AuthEvent>) -> bool {
        let before = out.len();
        let program = entry.program.as_str();
        let msg = entry.message.trim();
        let understood = if let Some((module, rest)) = old_pam_module(msg) {
            self.old_pam(entry, ts, module, rest.trim(), out)
        } else if program.is_empty() || program.starts_with("sshd") {
            self.sshd(entry, ts, msg, 1, out)
        } else {
            match other(entry, ts, msg) {
                Some(ev) => {
                    out.push(ev);
                    true
                }
                None => other_informational(program, msg),
            }
        };
        if out.len() > before {
            self.stats.events += 1;
        }
        let understood = understood || out.len() > before;
        // a bare `#` line is a comment (sample files), not a message
        let comment = program.is_empty() && msg.starts_with('#');
        if !understood && !comment && (interpreted_program(program) || msg.starts_with("pam_")) {
            self.stats.unparsed += 1;
        }
        understood
    }

    /// Older PAM (RHEL/CentOS 4-5, old Debian): `sshd(pam_unix)[PID]:` or
    /// `PROG[PID]: (pam_unix)` followed by `authentication failure; logname=
    /// uid=0 euid=0 tty=NODEVssh ruser= rhost=HOST[  user=USER]`, `check
    /// pass; user unknown`, `session opened for user U by (uid=0)`. Every
    /// authentication failure is one failure event: such logs often have no
    /// other line for the attempt (sshd's own went to another file); when
    /// the same connection also logs `Failed password` for it, that line
    /// then adds no attempt.
    fn old_pam(
        &mut self,
        entry: &Entry,
        ts: OffsetDateTime,
        module: &str,
        msg: &str,
        out: &mut Vec<AuthEvent>,
    ) -> bool {
        let svc = if entry.program.is_empty() { "sshd" } else { entry.program.as_str() };
        if let Some(fields) = msg.strip_prefix("authentication failure;") {
            if !svc.starts_with("sshd") {
                let modern = format!("{module}({svc}:auth): {msg}");
                if let Some(ev) = other(entry, ts, &modern) {
                    out.push(ev);
                }
                return true;
            }
            let f = pam_fields(fields);
            let user = f.get("user").or_else(|| f.get("ruser")).cloned();
            let host = f.get("rhost").and_then(|h| Remote::parse(h));
            let key = conn_key(entry);
            let conn = self.conn(&key);
            if let Some(h) = &host {
                conn.host = Some(h.host.clone());
            }
            conn.failed = true;
            if conn.pam_counted.len() < MAX_PENDING {
                conn.pam_counted.push(user.clone().unwrap_or_default());
            }
            let mut e = AuthEvent::new(ts, entry, "sshd", Outcome::Failure);
            e.user = user;
            e.src = host;
            e.tty = f.get("tty").cloned();
            e.method = Some("password".into());
            e.reason = Some("bad_password");
            e.attempts = 1;
            out.push(e);
            return true;
        }
        if let Some(user) = msg.strip_prefix("password changed for ") {
            let modern = format!("{module}({svc}:chauthtok): password changed for {user}");
            if let Some(ev) = other(entry, ts, &modern) {
                out.push(ev);
            }
            return true;
        }
        [
            "check pass;",
            "session opened for ",
            "session closed for ",
            "account ",
            "bad username",
            "auth could not",
        ]
        .iter()
        .any(|p| msg.starts_with(p))
    }

    fn conn(&mut self, key: &str) -> &mut Conn {
        self.dirty.push(key.to_string());
        if !self.conns.contains_key(key) {
            while self.conns.len() >= self.capacity {
                if let Some((old, _)) = self.conns.pop_front() {
                    self.dirty.push(old);
                    self.stats.conn_evictions += 1;
                } else {
                    break;
                }
            }
            self.conns.insert(key.to_string(), Conn::default());
        }
        self.conns.to_back(key);
        match self.conns.get_mut(key) {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }

    fn end(&mut self, key: &str) {
        if self.conns.remove(key).is_some() {
            self.dirty.push(key.to_string());
        }
    }

    fn sshd(
        &mut self,
        entry: &Entry,
        ts: OffsetDateTime,
        raw: &str,
        repeat: u32,
        out: &mut Vec<AuthEvent>,
    ) -> bool {
        let (msg, preauth) = strip_sshd(raw);
        let key = conn_key(entry);
        let base = |outcome| {
            let mut e = AuthEvent::new(ts, entry, "sshd", outcome);
            e.service = "sshd".into();
            e
        };

        // rsyslog's repeated-message reduction
        if let Some(rest) = msg.strip_prefix("message repeated ")
            && let Some((n, inner)) = rest.split_once(" times: [ ")
            && let Ok(n) = n.parse::<u32>()
        {
            let inner = inner.strip_suffix(']').unwrap_or(inner).trim();
            return self.sshd(entry, ts, inner, n.clamp(1, 1_000_000), out);
        }

        if let Some(rest) = msg.strip_prefix("Failed ").or_else(|| msg.strip_prefix("Accepted ")) {
            let accepted = msg.starts_with("Accepted ");
            let Some(r) = result_line(rest) else { return false };
            let conn = self.conn(&key);
            conn.host = Some(r.host.host.clone());
            conn.port = r.port.or(conn.port);
            if accepted {
                conn.pending_pam.retain(|u| *u != r.user);
                conn.pending_keys = 0;
                conn.announced = false;
                let others = std::mem::take(&mut conn.pending_pam);
                let switched = conn.tried.iter().any(|u| *u != r.user);
                let mut success = base(Outcome::Success);
                fill(&mut success, &r);
                if !others.is_empty() || switched {
                    // held-back failures of other users, or a login as
                    // another user than the ones that failed: guessing
                    let mut tried = conn.tried.clone();
                    tried.extend(others.iter().cloned());
                    let mut f = base(Outcome::Failure);
                    fill(&mut f, &r);
                    f.user = others.first().cloned().or_else(|| tried.first().cloned());
                    f.method = Some("password".into());
                    f.reason = Some("user_switched");
                    f.attempts = others.len() as u32;
                    f.users_tried = dedup(tried);
                    out.push(f);
                }
                self.end(&key);
                out.push(success);
                return true;
            }
            if r.method == "publickey" && !r.invalid {
                // a client trying its keys one after the other
                conn.pending_keys += repeat;
                return true;
            }
            let mut attempts = repeat;
            if conn.announced {
                conn.announced = false;
                attempts -= 1;
            }
            if let Some(i) = conn.pam_counted.iter().position(|u| *u == r.user || u.is_empty()) {
                // an old-style PAM line of this attempt counted it already
                conn.pam_counted.remove(i);
                attempts = attempts.saturating_sub(1);
            }
            if let Some(i) = conn.pending_pam.iter().position(|u| *u == r.user || u.is_empty()) {
                conn.pending_pam.remove(i);
            }
            let tried = std::mem::take(&mut conn.pending_pam);
            attempts += tried.len() as u32;
            conn.failed = true;
            for u in tried.iter().chain(std::iter::once(&r.user)) {
                if conn.tried.len() < MAX_PENDING && !conn.tried.contains(u) {
                    conn.tried.push(u.clone());
                }
            }
            let mut f = base(Outcome::Failure);
            fill(&mut f, &r);
            f.reason = Some(if r.invalid { "invalid_user" } else { "bad_credentials" });
            f.attempts = attempts;
            f.users_tried = dedup(tried);
            out.push(f);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("Invalid user ").or_else(|| msg.strip_prefix("Illegal user ")) {
            let Some((user, tail)) = rsplit_from(rest) else { return false };
            let Some((host, port)) = host_port_end(tail) else { return false };
            let conn = self.conn(&key);
            conn.host = Some(host.host.clone());
            conn.port = port;
            conn.user = Some(user.to_string());
            let attempts = if conn.announced { 0 } else { 1 };
            conn.announced = true;
            conn.failed = true;
            let mut f = base(Outcome::Failure);
            f.user = Some(user.to_string());
            f.src = Some(host);
            f.src_port = port;
            f.reason = Some("invalid_user");
            f.attempts = attempts;
            out.push(f);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("User ")
            && let Some((left, why)) = rest.rsplit_once(" not allowed because ")
        {
            let Some((user, host)) = left.rsplit_once(" from ") else {
                // no address (`account is locked`): remember the user
                let user = left.to_string();
                self.conn(&key).user = Some(user);
                return true;
            };
            let Some(host) = Remote::parse(host) else { return false };
            let conn = self.conn(&key);
            conn.host = Some(host.host.clone());
            let attempts = if conn.announced { 0 } else { 1 };
            conn.announced = true;
            conn.failed = true;
            let mut f = base(Outcome::Failure);
            f.user = Some(user.to_string());
            f.src = Some(host);
            f.reason = Some("not_allowed");
            f.method = Some(format!("not allowed because {}", truncate(why, 80)));
            f.attempts = attempts;
            out.push(f);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("ROOT LOGIN REFUSED FROM ") {
            let Some((host, port)) = host_port_end(rest) else { return false };
            let conn = self.conn(&key);
            conn.host = Some(host.host.clone());
            let attempts = if conn.announced { 0 } else { 1 };
            conn.announced = true;
            conn.failed = true;
            let mut f = base(Outcome::Failure);
            f.user = Some("root".into());
            f.src = Some(host);
            f.src_port = port;
            f.reason = Some("root_refused");
            f.attempts = attempts;
            out.push(f);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("refused connect from ") {
            // tcp wrappers: `NAME@HOST (ADDR)` or `HOST (ADDR)`
            let addr = rest.rsplit_once('(').and_then(|(_, a)| a.strip_suffix(')')).unwrap_or(rest);
            let Some(host) = Remote::parse(addr) else { return false };
            self.probe(&key, entry, ts, Some((host, None)), "refused", out);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("PAM: ") {
            // keyboard-interactive through PAM (older OpenSSH, macOS)
            let lower = rest.to_ascii_lowercase();
            if lower.starts_with("authentication failure for ")
                || lower.starts_with("authentication error for ")
                || lower.starts_with("user not known to the underlying authentication module for ")
            {
                let (_, after_for) = rest.split_once(" for ").unwrap_or(("", rest));
                let after_for = after_for
                    .strip_prefix("illegal user ")
                    .or_else(|| after_for.strip_prefix("invalid user "))
                    .unwrap_or(after_for);
                let after_for = after_for.trim_end();
                let body = after_for.rsplit_once(" via ").map(|(a, _)| a).unwrap_or(after_for);
                let Some((user, host)) = body.rsplit_once(" from ") else { return false };
                let Some(host) = Remote::parse(host) else { return false };
                let conn = self.conn(&key);
                conn.host = Some(host.host.clone());
                conn.failed = true;
                let mut f = base(Outcome::Failure);
                f.user = Some(user.to_string());
                f.src = Some(host);
                f.method = Some("keyboard-interactive/pam".into());
                f.reason = Some("bad_credentials");
                f.attempts = repeat;
                out.push(f);
            }
            return true;
        }

        if let Some(rest) = pam_auth_failure(msg, "sshd") {
            let fields = pam_fields(rest);
            let user = fields.get("user").or_else(|| fields.get("ruser")).cloned().unwrap_or_default();
            let host = fields.get("rhost").and_then(|h| Remote::parse(h));
            let conn = self.conn(&key);
            if let Some(h) = &host {
                conn.host = Some(h.host.clone());
            }
            let other_user = conn.pending_pam.iter().any(|u| *u != user);
            if conn.pending_pam.len() < MAX_PENDING {
                conn.pending_pam.push(user.clone());
            }
            if other_user && conn.host.is_some() {
                // a second user on the same connection: guessing
                let tried = std::mem::take(&mut conn.pending_pam);
                conn.failed = true;
                for u in &tried {
                    if conn.tried.len() < MAX_PENDING && !conn.tried.contains(u) {
                        conn.tried.push(u.clone());
                    }
                }
                let host = conn.host.clone().and_then(|h| Remote::parse(&h));
                let port = conn.port;
                let mut f = base(Outcome::Failure);
                f.user = Some(user);
                f.src = host;
                f.src_port = port;
                f.method = Some("password".into());
                f.reason = Some("bad_password");
                f.attempts = tried.len() as u32;
                f.users_tried = dedup(tried);
                out.push(f);
            }
            return true;
        }

        if let Some(rest) = msg.strip_prefix("maximum authentication attempts exceeded for ") {
            let Some(r) = result_line(&format!("x for {rest}")) else { return false };
            let conn = self.conn(&key);
            conn.host = Some(r.host.host.clone());
            let attempts = if conn.failed { 0 } else { 1 };
            conn.failed = true;
            conn.max_reported = true;
            conn.pending_keys = 0;
            let mut f = base(Outcome::Failure);
            fill(&mut f, &r);
            f.method = None;
            f.reason = Some("too_many_failures");
            f.attempts = attempts;
            out.push(f);
            return true;
        }

        if let Some(rest) = msg.strip_prefix("Disconnecting: Too many authentication failures") {
            let user = rest
                .trim()
                .strip_prefix("for ")
                .map(|u| u.strip_prefix("invalid user ").unwrap_or(u).to_string());
            let conn = self.conn(&key);
            if user.is_some() {
                conn.user = user;
            }
            if conn.max_reported {
                return true;
            }
            match conn.host.clone().and_then(|h| Remote::parse(&h)) {
                Some(host) => {
                    let attempts = if conn.pending_keys > 0 && !conn.failed { 1 } else { 0 };
                    conn.failed = true;
                    conn.max_reported = true;
                    conn.pending_keys = 0;
                    let (port, user) = (conn.port, conn.user.clone());
                    let mut f = base(Outcome::Failure);
                    f.user = user;
                    f.src = Some(host);
                    f.src_port = port;
                    f.reason = Some("too_many_failures");
                    f.attempts = attempts;
                    out.push(f);
                }
                None => conn.pending_too_many = true,
            }
            return true;
        }

        if let Some(rest) = msg.strip_prefix("Disconnecting ")
            && let Some((who, why)) = split_port_colon(rest)
        {
            let (user, host, port) = who;
            let conn = self.conn(&key);
            conn.host = Some(host.host.clone());
            if why.starts_with("Too many authentication failures") && conn.max_reported {
                return true;
            }
            conn.failed = true;
            let mut f = base(Outcome::Failure);
            f.user = user;
            f.src = Some(host);
            f.src_port = port;
            f.reason = Some(if why.starts_with("Too many") { "too_many_failures" } else { "disconnected" });
            out.push(f);
            return true;
        }

        // connections closed, reset or disconnected
        for prefix in ["Connection closed by ", "Connection reset by ", "Disconnected from "] {
            if let Some(rest) = msg.strip_prefix(prefix) {
                if rest == "remote host" || rest.starts_with("peer") {
                    break;
                }
                let Some((kind, user, host, port)) = closed_by(rest) else { return false };
                let conn = self.conn(&key).clone();
                self.end(&key);
                let pending = !conn.pending_pam.is_empty()
                    || conn.pending_keys > 0
                    || conn.pending_probe
                    || conn.pending_too_many;
                let emit = (!conn.failed && (pending || preauth)) || kind == "invalid user";
                if emit {
                    let mut f = base(Outcome::Failure);
                    f.user = user.or(conn.user.clone()).or_else(|| conn.pending_pam.first().cloned());
                    f.src = Some(host);
                    f.src_port = port.or(conn.port);
                    f.reason =
                        Some(if conn.pending_too_many { "too_many_failures" } else { "preauth_disconnect" });
                    f.attempts = conn.pending_pam.len() as u32
                        + u32::from(conn.pending_keys > 0 && conn.pending_too_many);
                    f.users_tried = dedup(conn.pending_pam);
                    out.push(f);
                }
                return true;
            }
        }

        if let Some(rest) = msg.strip_prefix("Received disconnect from ") {
            let (hostport, why) = match rest.split_once(" port ") {
                Some((h, p)) => {
                    let (port, why) = p.split_once(':').unwrap_or((p, ""));
                    ((h, port.trim().parse::<u16>().ok()), why)
                }
                None => match rest.split_once(": ") {
                    Some((h, why)) => ((h, None), why),
                    None => return false,
                },
            };
            let Some(host) = Remote::parse(hostport.0) else { return false };
            let why = why.trim();
            let code = why.split(':').next().and_then(|c| c.trim().parse::<u32>().ok());
            let auth_problem = matches!(code, Some(3 | 14))
                || why.contains("Auth fail")
                || why.contains("authentication methods");
            let conn = self.conn(&key);
            conn.host = Some(host.host.clone());
            if preauth || auth_problem {
                conn.failed = true;
                let mut f = base(Outcome::Failure);
                f.user = conn.user.clone();
                f.src = Some(host);
                f.src_port = hostport.1;
                f.reason = Some(if auth_problem { "client_gave_up" } else { "preauth_disconnect" });
                out.push(f);
            }
            return true;
        }

        if let Some(rest) = msg.strip_prefix("Connection from ") {
            // a new connection: `HOST port P on ADDR port 22 [rdomain ...]`
            let (h, after) = rest.split_once(' ').unwrap_or((rest, ""));
            let Some(host) = Remote::parse(h) else { return false };
            let port =
                after.strip_prefix("port ").and_then(|p| p.split(' ').next()).and_then(|p| p.parse().ok());
            self.end(&key);
            let conn = self.conn(&key);
            conn.host = Some(host.host);
            conn.port = port;
            return true;
        }

        if let Some(rest) = msg.strip_prefix("SSH: Server;")
            && let Some(remote) = rest.split(';').find_map(|f| f.trim().strip_prefix("Remote: "))
        {
            let h = remote.rsplit_once('-').map(|(h, _)| h).unwrap_or(remote);
            if let Some(host) = Remote::parse(h) {
                self.conn(&key).host = Some(host.host);
            }
            return true;
        }

        if let Some(rest) = msg
            .strip_prefix("input_userauth_request: invalid user")
            .or_else(|| msg.strip_prefix("input_userauth_request: illegal user"))
        {
            let user = rest.trim();
            if !user.is_empty() {
                self.conn(&key).user = Some(user.to_string());
            }
            return true;
        }

        // protocol errors and probes that name the address
        if let Some(rest) = msg.strip_prefix("Did not receive identification string from ") {
            let addr = host_port_end(rest);
            self.probe(&key, entry, ts, addr, "no_identification", out);
            return true;
        }
        if let Some(rest) = msg.strip_prefix("Bad protocol version identification ") {
            let addr = rsplit_from_any(rest);
            self.probe(&key, entry, ts, addr, "protocol_error", out);
            return true;
        }
        if let Some(rest) = msg.strip_prefix("Unable to negotiate with ") {
            let hp = rest.split_once(':').map(|(a, _)| a).unwrap_or(rest);
            let addr = host_port_end(hp);
            self.probe(&key, entry, ts, addr, "negotiation_failed", out);
            return true;
        }
        if let Some(rest) = msg
            .strip_prefix("banner exchange: Connection from ")
            .or_else(|| msg.strip_prefix("ssh_dispatch_run_fatal: Connection from "))
        {
            let hp = rest.split_once(": ").map(|(a, _)| a).unwrap_or(rest);
            let hp = hp
                .strip_prefix("authenticating user ")
                .or_else(|| hp.strip_prefix("invalid user "))
                .map(|x| x.split_once(' ').map(|(_, h)| h).unwrap_or(x))
                .unwrap_or(hp);
            let addr = host_port_end(hp);
            self.probe(&key, entry, ts, addr, "protocol_error", out);
            return true;
        }
        if let Some(rest) = msg.strip_prefix("Timeout before authentication for ") {
            let addr = match rest.strip_prefix("connection from ") {
                Some(r) => {
                    r.split_once(" to ").map(|(h, _)| h).and_then(|h| Remote::parse(h).map(|r| (r, None)))
                }
                None => host_port_end(rest),
            };
            self.probe(&key, entry, ts, addr, "timeout", out);
            return true;
        }
        if let Some(rest) = msg.strip_prefix("scanned from ") {
            // OpenSSH 3.x-5.x: a version scanner
            let h = rest.split_once(' ').map(|(h, _)| h).unwrap_or(rest);
            let addr = Remote::parse(h).map(|r| (r, None));
            self.probe(&key, entry, ts, addr, "protocol_error", out);
            return true;
        }
        if msg.starts_with("kex_exchange_identification: ")
            || msg.starts_with("Read from socket failed")
            || msg.starts_with("Unable to negotiate a key exchange method")
            || msg.starts_with("no matching ")
            || msg.starts_with("Protocol major versions differ")
        {
            self.probe(&key, entry, ts, None, "protocol_error", out);
            return true;
        }
        sshd_informational(msg)
    }

    /// A probe: reported with the address given, else the connection's,
    /// else held until the address is known.
    fn probe(
        &mut self,
        key: &str,
        entry: &Entry,
        ts: OffsetDateTime,
        addr: Option<(Remote, Option<u16>)>,
        reason: &'static str,
        out: &mut Vec<AuthEvent>,
    ) {
        let conn = self.conn(key);
        let (host, port) = match addr {
            Some((h, p)) => {
                conn.host = Some(h.host.clone());
                (Some(h), p.or(conn.port))
            }
            None => (conn.host.clone().and_then(|h| Remote::parse(&h)), conn.port),
        };
        let Some(host) = host else {
            conn.pending_probe = true;
            return;
        };
        conn.failed = true;
        conn.pending_probe = false;
        let mut f = AuthEvent::new(ts, entry, "sshd", Outcome::Failure);
        f.user = conn.user.clone();
        f.src = Some(host);
        f.src_port = port;
        f.reason = Some(reason);
        out.push(f);
    }
}

#[cold]
fn unreachable_conn() -> ! {
    // `conn` inserts the key just before looking it up
    panic!("connection tracker lost a key it just inserted")
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|u| seen.insert(u.clone()));
    v
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Strips `error: `, `fatal: `, Solaris `[ID n facility.level] `, and a
/// trailing ` [preauth]` / ` [net]`; tells whether it was `[preauth]`.
fn strip_sshd(msg: &str) -> (&str, bool) {
    let mut m = msg.trim();
    loop {
        if let Some(r) = m.strip_prefix("error: ").or_else(|| m.strip_prefix("fatal: ")) {
            m = r.trim_start();
        } else if let Some(r) = m.strip_prefix("kernel:")
            && let Some(r) = r.trim_start().strip_prefix('[')
            && let Some((_, r)) = r.split_once(']')
        {
            // a kernel time stamp copied into the message by the journal
            m = r.strip_prefix(':').unwrap_or(r).trim_start();
        } else if m.starts_with("[ID ")
            && let Some((_, r)) = m.split_once("] ")
        {
            m = r.trim_start();
        } else {
            break;
        }
    }
    let mut preauth = false;
    if let Some(r) = m.strip_suffix("[preauth]") {
        m = r.trim_end();
        preauth = true;
    } else if let Some(r) = m.strip_suffix("[net]") {
        m = r.trim_end();
    }
    (m, preauth)
}

/// `Failed/Accepted METHOD for [invalid user ]USER from HOST[ port P][ sshN][: INFO]`
/// (after the first word).
struct ResultLine {
    method: String,
    invalid: bool,
    user: String,
    host: Remote,
    port: Option<u16>,
}

fn fill(e: &mut AuthEvent, r: &ResultLine) {
    e.user = Some(r.user.clone());
    e.src = Some(r.host.clone());
    e.src_port = r.port;
    e.method = Some(r.method.clone());
}

fn result_line(rest: &str) -> Option<ResultLine> {
    let (method, r) = rest.split_once(" for ")?;
    if method.is_empty() || method.len() > 64 || method.contains(' ') {
        return None;
    }
    // `illegal user`: OpenSSH before 3.9
    let (invalid, r) = match r.strip_prefix("invalid user ").or_else(|| r.strip_prefix("illegal user ")) {
        Some(x) => (true, x),
        None => (false, r),
    };
    // the first ` from HOST[ port N][ sshN]` that ends the line or is
    // followed by `: ` (the info part): user names and info may contain
    // ` from ` themselves
    let mut starts: Vec<usize> = Vec::new();
    if r.starts_with("from ") {
        starts.push(0);
    }
    starts.extend(r.match_indices(" from ").map(|(i, _)| i + 1));
    for idx in starts {
        let user = if idx == 0 { "" } else { &r[..idx - 1] };
        if let Some((host, port)) = host_port_ssh(&r[idx + 5..]) {
            return Some(ResultLine {
                method: method.to_string(),
                invalid,
                user: user.to_string(),
                host,
                port,
            });
        }
    }
    None
}

/// `HOST[ port N][ sshN]` then end of text or `: ...`.
fn host_port_ssh(tail: &str) -> Option<(Remote, Option<u16>)> {
    let (host, mut rest) = tail.split_once(' ').unwrap_or((tail, ""));
    let mut port = None;
    if let Some(r) = rest.strip_prefix("port ") {
        let (p, r2) = r.split_once(' ').unwrap_or((r, ""));
        port = Some(p.parse::<u16>().ok()?);
        rest = r2;
    }
    if let Some(r) = rest.strip_prefix("ssh2").or_else(|| rest.strip_prefix("ssh1")) {
        rest = r;
    }
    if !(rest.is_empty() || rest.starts_with(": ") || rest == ":") {
        return None;
    }
    Some((Remote::parse(host)?, port))
}

/// `HOST[ port N]` and nothing else.
fn host_port_end(s: &str) -> Option<(Remote, Option<u16>)> {
    let s = s.trim();
    let (host, port) = match s.split_once(" port ") {
        Some((h, p)) => (h, Some(p.trim().parse::<u16>().ok()?)),
        None => (s, None),
    };
    if host.contains(' ') {
        return None;
    }
    Some((Remote::parse(host)?, port))
}

/// `USER from HOST[ port N]`, splitting at the last ` from ` (an empty
/// user leaves the text starting with `from `... or ` from `).
fn rsplit_from(s: &str) -> Option<(&str, &str)> {
    if let Some(i) = s.rfind(" from ") {
        return Some((&s[..i], &s[i + 6..]));
    }
    s.strip_prefix("from ").map(|t| ("", t))
}

/// `'...' from HOST[ port N]` with the last ` from `.
fn rsplit_from_any(s: &str) -> Option<(Remote, Option<u16>)> {
    let (_, tail) = rsplit_from(s)?;
    host_port_end(tail)
}

/// `[invalid user U |authenticating user U |user U ]HOST[ port N]`.
fn closed_by(s: &str) -> Option<(&'static str, Option<String>, Remote, Option<u16>)> {
    let s = s.trim();
    let (body, port) = match s.rsplit_once(" port ") {
        Some((b, p)) if p.bytes().all(|c| c.is_ascii_digit()) && !p.is_empty() => (b, p.parse::<u16>().ok()),
        _ => (s, None),
    };
    let (kind, rest) = if let Some(r) = body.strip_prefix("invalid user ") {
        ("invalid user", Some(r))
    } else if let Some(r) = body.strip_prefix("authenticating user ") {
        ("authenticating user", Some(r))
    } else if let Some(r) = body.strip_prefix("user ") {
        ("user", Some(r))
    } else {
        ("", None)
    };
    match rest {
        Some(r) => {
            let (user, host) = r.rsplit_once(' ').unwrap_or(("", r));
            Some((kind, Some(user.to_string()), Remote::parse(host)?, port))
        }
        None => {
            if body.contains(' ') {
                return None;
            }
            Some((kind, None, Remote::parse(body)?, port))
        }
    }
}

/// `[invalid user U |authenticating user U ]HOST port N: WHY`.
#[allow(clippy::type_complexity)]
fn split_port_colon(s: &str) -> Option<((Option<String>, Remote, Option<u16>), &str)> {
    let mut from = 0;
    while let Some(i) = s[from..].find(": ") {
        let at = from + i;
        let left = &s[..at];
        if let Some((_, user, host, port @ Some(_))) = closed_by(left) {
            return Some(((user, host, port), &s[at + 2..]));
        }
        from = at + 2;
    }
    None
}

/// `pam_MODULE(SERVICE:auth): authentication failure; k=v ...` → the
/// fields text when SERVICE is `service` (any when empty).
fn pam_auth_failure<'a>(msg: &'a str, service: &str) -> Option<&'a str> {
    let (svc, rest) = pam_prefix(msg)?;
    if !service.is_empty() && svc != service {
        return None;
    }
    let (part, rest) = rest.split_once("): ")?;
    (part == "auth").then_some(())?;
    rest.strip_prefix("authentication failure;")
}

/// `pam_MODULE(SERVICE:PART): ...` → (service, `PART): ...`).
fn pam_prefix(msg: &str) -> Option<(&str, &str)> {
    let rest = msg.strip_prefix("pam_")?;
    let (_module, rest) = rest.split_once('(')?;
    let (svc, rest) = rest.split_once(':')?;
    (svc.len() <= 64).then_some((svc, rest))
}

/// `logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root`.
fn pam_fields(s: &str) -> std::collections::HashMap<&str, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

/// Everything that is not sshd.
fn other(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let program = entry.program.as_str();
    // PAM failures of any service
    if let Some((svc, _)) = pam_prefix(msg)
        && let Some(fields) = pam_auth_failure(msg, "")
    {
        let f = pam_fields(fields);
        let mut e = AuthEvent::new(ts, entry, svc, Outcome::Failure);
        e.user = f.get("user").or_else(|| f.get("ruser")).or_else(|| f.get("logname")).cloned();
        e.src = f.get("rhost").and_then(|h| Remote::parse(h));
        e.tty = f.get("tty").cloned();
        e.method = Some("password".into());
        e.reason = Some("bad_password");
        e.attempts = 1;
        if matches!(svc, "sudo" | "su" | "su-l") {
            e.target_user = f.get("user").cloned();
            e.user = f.get("ruser").or_else(|| f.get("logname")).cloned().or(e.user);
        }
        return Some(e);
    }
    if let Some(rest) = msg.strip_prefix("pam_unix(")
        && let Some((svc, r)) = rest.split_once(":chauthtok): password changed for ")
    {
        let user = r.trim().to_string();
        let mut e = AuthEvent::new(ts, entry, svc, Outcome::Success);
        e.user = Some(user.clone());
        e.account =
            Some(AccountChange { action: "password_changed", user: Some(user), group: None, uid: None });
        return Some(e);
    }
    match program {
        "sudo" => sudo(entry, ts, msg),
        "su" | "su-l" => su(entry, ts, msg),
        "login" => login(entry, ts, msg),
        "useradd" | "usermod" | "userdel" | "groupadd" | "groupmod" | "groupdel" | "gpasswd" | "passwd"
        | "chpasswd" | "chage" | "newusers" | "adduser" | "deluser" => account(entry, ts, msg),
        "vsftpd" => vsftpd(entry, ts, msg),
        "proftpd" => proftpd(entry, ts, msg),
        "pure-ftpd" => pure_ftpd(entry, ts, msg),
        _ => None,
    }
}

/// `PROG(pam_MODULE)` (moved in front of the message by `logfmt`) or
/// `(pam_MODULE) MSG`: (`pam_MODULE`, MSG).
fn old_pam_module(msg: &str) -> Option<(&str, &str)> {
    let rest = msg.strip_prefix('(')?;
    let (module, rest) = rest.split_once(')')?;
    (module.starts_with("pam_") && module.len() <= 64 && !module.contains(' ')).then_some((module, rest))
}

/// Programs whose lines are interpreted: one of their lines that yields no
/// event and is not a known informational message is counted as unparsed.
fn interpreted_program(program: &str) -> bool {
    program.is_empty()
        || program.starts_with("sshd")
        || matches!(
            program,
            "sudo"
                | "su"
                | "su-l"
                | "login"
                | "vsftpd"
                | "proftpd"
                | "pure-ftpd"
                | "useradd"
                | "usermod"
                | "userdel"
                | "groupadd"
                | "groupmod"
                | "groupdel"
                | "gpasswd"
                | "passwd"
                | "chpasswd"
                | "chage"
                | "newusers"
                | "adduser"
                | "deluser"
        )
}

/// sshd messages understood to carry no authentication event (sessions,
/// daemon life, reverse-DNS warnings, debug output).
fn sshd_informational(msg: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Server listening on ",
        "Received signal ",
        "Received SIGHUP",
        "Exiting on signal",
        "Starting session: ",
        "Close session: ",
        "Closing connection to ",
        "Connection closed by remote host",
        "Connection reset by peer",
        "Transferred: ",
        "Postponed ",
        "Partial publickey for ",
        "subsystem request for ",
        "session opened for user ",
        "session closed for user ",
        "Generating new ",
        "RSA key generation complete",
        "Nasty PTR record ",
        "Set /proc/self/oom",
        "Could not get shadow information for ",
        "Authentication refused: ",
        "Found matching ",
        "User child is on pid ",
        "reverse mapping checking ",
        "debug",
        "pam_",
        "PAM ",
        "Accepted key ",
        "Failed to release session",
        "Disconnecting: Change of username",
        "Timeout, client not responding",
        "Read error from remote host",
        "Connection timed out",
        "Corrupted MAC on input",
        "Certificate invalid",
        "rexec line ",
    ];
    PREFIXES.iter().any(|p| msg.starts_with(p)) || msg.contains("POSSIBLE BREAK-IN ATTEMPT")
}

/// Messages of the other interpreted programs that carry no event.
fn other_informational(program: &str, msg: &str) -> bool {
    if msg.starts_with("pam_") {
        // PAM sessions, accounts, other modules: only auth failures and
        // password changes are events
        return true;
    }
    match program {
        "su" | "su-l" => {
            msg.starts_with("pam_authenticate: ")
                || msg.starts_with("Successful su for ")
                || msg.starts_with("(to ")
                || msg.starts_with("+ ")
        }
        "sudo" => msg.contains("unable to resolve host"),
        "login" => msg.starts_with("DIALUP ") || msg.contains("LOGIN SESSION"),
        "vsftpd" => {
            let m = vsftpd_body(msg).1;
            m.starts_with("CONNECT: ") || m.starts_with("OK ") || m.starts_with("FAIL ")
        }
        "proftpd" => true,
        "pure-ftpd" => true,
        "useradd" | "usermod" | "userdel" | "groupadd" | "groupmod" | "groupdel" | "gpasswd" | "passwd"
        | "chpasswd" | "chage" | "newusers" | "adduser" | "deluser" => {
            // the second line of a change logged once per file, and refusals
            ["group added to /etc/gshadow", "failed adding ", "removed shadow group ", "cannot ", "failed "]
                .iter()
                .any(|p| msg.starts_with(p))
        }
        _ => false,
    }
}

/// `[pid N] [USER] MSG` or `[USER] MSG` (vsftpd) → (user, MSG).
fn vsftpd_body(msg: &str) -> (Option<&str>, &str) {
    let mut m = msg.trim();
    if let Some(r) = m.strip_prefix("[pid ")
        && let Some((_, r)) = r.split_once("] ")
    {
        m = r.trim_start();
    }
    match m.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((user, r)) => (Some(user), r.trim_start()),
        None => (None, m),
    }
}

/// vsftpd: `[USER] FAIL LOGIN: Client "ADDR"`, `[USER] OK LOGIN: Client
/// "ADDR"[, anon password "..."]` (syslog or `vsftpd.log`, with or without
/// `[pid N]`).
fn vsftpd(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let (user, m) = vsftpd_body(msg);
    let (outcome, rest) = if let Some(r) = m.strip_prefix("FAIL LOGIN: Client \"") {
        (Outcome::Failure, r)
    } else if let Some(r) = m.strip_prefix("OK LOGIN: Client \"") {
        (Outcome::Success, r)
    } else {
        return None;
    };
    let addr = rest.split_once('"').map(|(a, _)| a)?;
    let addr = addr.strip_prefix("::ffff:").unwrap_or(addr);
    let mut e = AuthEvent::new(ts, entry, "vsftpd", outcome);
    e.user = user.map(str::to_string);
    e.src = Some(Remote::parse(addr)?);
    e.method = Some("password".into());
    if outcome == Outcome::Failure {
        e.reason = Some("bad_password");
        e.attempts = 1;
    }
    Some(e)
}

/// proftpd: `SERVER (NAME[ADDR]) - USER U (Login failed): WHY`, `- USER U:
/// no such user found from ...`, `- SECURITY VIOLATION: U login
/// attempted.`, `- Maximum login attempts (N) exceeded`, `- USER U: Login
/// successful.`, `- ANON U: Login successful.`
fn proftpd(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let (_, rest) = msg.split_once(" (")?;
    let (peer, rest) = rest.split_once(") - ").or_else(|| rest.split_once(")- "))?;
    let addr = peer.rsplit_once('[').and_then(|(_, a)| a.strip_suffix(']'))?;
    let src = Remote::parse(addr.strip_prefix("::ffff:").unwrap_or(addr))?;
    let rest = rest.trim();
    let failure = |user: Option<&str>, reason: &'static str, attempts: u32| {
        let mut e = AuthEvent::new(ts, entry, "proftpd", Outcome::Failure);
        e.user = user.map(|u| u.trim().to_string());
        e.src = Some(src.clone());
        e.reason = Some(reason);
        e.attempts = attempts;
        e.method = (attempts > 0).then(|| "password".to_string());
        e
    };
    if let Some(r) = rest.strip_prefix("USER ") {
        if let Some((user, _)) = r.split_once(" (Login failed)") {
            return Some(failure(Some(user), "bad_password", 1));
        }
        if let Some((user, _)) = r.split_once(": no such user found") {
            return Some(failure(Some(user), "invalid_user", 1));
        }
        if let Some((user, _)) = r.split_once(": Login successful") {
            let mut e = AuthEvent::new(ts, entry, "proftpd", Outcome::Success);
            e.user = Some(user.trim().to_string());
            e.src = Some(src);
            e.method = Some("password".into());
            return Some(e);
        }
        return None;
    }
    if let Some((user, _)) = rest.strip_prefix("ANON ").and_then(|r| r.split_once(": Login successful")) {
        let mut e = AuthEvent::new(ts, entry, "proftpd", Outcome::Success);
        e.user = Some(user.trim().to_string());
        e.src = Some(src);
        e.method = Some("anonymous".into());
        return Some(e);
    }
    if let Some(r) = rest.strip_prefix("SECURITY VIOLATION: ") {
        let user = r.split_once(" login attempted").map(|(u, _)| u);
        return Some(failure(user, "root_refused", 1));
    }
    if rest.starts_with("Maximum login attempts") {
        return Some(failure(None, "too_many_failures", 0));
    }
    None
}

/// pure-ftpd: `(?@ADDR) [WARNING] Authentication failed for user [U]`,
/// `(?@ADDR) [INFO] U is now logged in`.
fn pure_ftpd(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let rest = msg.strip_prefix('(')?;
    let (who, rest) = rest.split_once(") ")?;
    let addr = who.rsplit_once('@').map(|(_, a)| a)?;
    let src = Remote::parse(addr)?;
    if let Some(r) = rest.strip_prefix("[WARNING] Authentication failed for user [") {
        let mut e = AuthEvent::new(ts, entry, "pure-ftpd", Outcome::Failure);
        e.user = r.strip_suffix(']').map(str::to_string);
        e.src = Some(src);
        e.method = Some("password".into());
        e.reason = Some("bad_password");
        e.attempts = 1;
        return Some(e);
    }
    if let Some(user) = rest.strip_prefix("[INFO] ").and_then(|r| r.strip_suffix(" is now logged in")) {
        let mut e = AuthEvent::new(ts, entry, "pure-ftpd", Outcome::Success);
        e.user = Some(user.to_string());
        e.src = Some(src);
        e.method = Some("password".into());
        return Some(e);
    }
    None
}

/// `alice : [PROBLEM ; ]TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls`
fn sudo(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let (user, rest) = msg.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return None;
    }
    let mut parts: Vec<&str> = rest.split(" ; ").map(str::trim).collect();
    let problem = parts.first().filter(|p| !p.contains('=')).map(|p| p.to_string());
    if problem.is_some() {
        parts.remove(0);
    }
    let field = |k: &str| parts.iter().find_map(|p| p.strip_prefix(k)).map(String::from);
    if field("COMMAND=").is_none() && field("TTY=").is_none() {
        return None;
    }
    let outcome = if problem.is_some() { Outcome::Failure } else { Outcome::Success };
    let mut e = AuthEvent::new(ts, entry, "sudo", outcome);
    e.user = Some(user.to_string());
    e.target_user = field("USER=").or_else(|| Some("root".into()));
    e.command = field("COMMAND=");
    e.tty = field("TTY=");
    if let Some(p) = problem {
        e.reason = Some(if p.contains("incorrect password") {
            "bad_password"
        } else if p.contains("NOT in sudoers") {
            "not_in_sudoers"
        } else if p.contains("not allowed") {
            "command_not_allowed"
        } else if p.contains("password is required") {
            "password_required"
        } else {
            "denied"
        });
        e.attempts = p.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(1);
        e.method = Some(truncate(&p, 80).to_string());
    }
    Some(e)
}

/// util-linux `(to root) alice on pts/0`, `FAILED SU (to root) alice on
/// pts/0`; older `Successful su for root by alice`, `+ pts/0 alice:root`.
fn su(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let (outcome, target, user, tty) =
        if let Some(r) = msg.strip_prefix("FAILED SU (to ").or_else(|| msg.strip_prefix("(to ")) {
            let failed = msg.starts_with("FAILED");
            let (target, r) = r.split_once(") ")?;
            let (user, tty) = r.split_once(" on ").unwrap_or((r, ""));
            (if failed { Outcome::Failure } else { Outcome::Success }, target, user, tty)
        } else if let Some(r) =
            msg.strip_prefix("Successful su for ").or_else(|| msg.strip_prefix("FAILED su for "))
        {
            let (target, user) = r.split_once(" by ")?;
            (if msg.starts_with("FAILED") { Outcome::Failure } else { Outcome::Success }, target, user, "")
        } else if let Some(r) = msg.strip_prefix("+ ").or_else(|| msg.strip_prefix("- ")) {
            let (tty, pair) = r.split_once(' ')?;
            let (user, target) = pair.split_once(':')?;
            (if msg.starts_with('+') { Outcome::Success } else { Outcome::Failure }, target, user, tty)
        } else {
            return None;
        };
    let mut e = AuthEvent::new(ts, entry, "su", outcome);
    e.user = Some(user.trim().to_string());
    e.target_user = Some(target.trim().to_string());
    e.tty = (!tty.is_empty()).then(|| tty.trim().to_string());
    if outcome == Outcome::Failure {
        e.reason = Some("bad_password");
        e.attempts = 1;
    }
    Some(e)
}

/// `ROOT LOGIN  on '/dev/tty1'`, `FAILED LOGIN (1) on '/dev/tty1' FOR
/// 'root', Authentication failure`, `LOGIN ON tty1 BY alice`.
fn login(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let unquote = |s: &str| s.trim().trim_matches('\'').trim_end_matches(',').to_string();
    if msg.starts_with("ROOT LOGIN") {
        let mut e = AuthEvent::new(ts, entry, "login", Outcome::Success);
        e.user = Some("root".into());
        e.tty = msg.split_whitespace().last().map(unquote);
        if let Some((_, host)) = msg.split_once(" FROM ") {
            e.src = Remote::parse(&unquote(host));
        }
        return Some(e);
    }
    if let Some(r) = msg.strip_prefix("FAILED LOGIN") {
        let mut e = AuthEvent::new(ts, entry, "login", Outcome::Failure);
        let upper = r;
        e.user = upper.split_once(" FOR ").map(|(_, u)| unquote(u.split(',').next().unwrap_or(u)));
        if let Some((_, host)) = upper.split_once(" FROM ") {
            let host = host.split_whitespace().next().unwrap_or("");
            e.src = Remote::parse(&unquote(host));
        }
        e.reason = Some("bad_password");
        e.attempts = 1;
        return Some(e);
    }
    if let Some(r) = msg.strip_prefix("LOGIN ON ") {
        let (tty, user) = r.split_once(" BY ")?;
        let mut e = AuthEvent::new(ts, entry, "login", Outcome::Success);
        e.tty = Some(tty.trim().to_string());
        let (user, host) = user.split_once(" FROM ").unwrap_or((user, ""));
        e.user = Some(user.trim().to_string());
        e.src = Remote::parse(host);
        return Some(e);
    }
    None
}

/// The shadow-utils account tools.
fn account(entry: &Entry, ts: OffsetDateTime, msg: &str) -> Option<AuthEvent> {
    let q = |s: &str| s.trim().trim_matches('\'').trim_matches('"').to_string();
    let kv = |text: &str, k: &str| {
        text.split(',').map(str::trim).find_map(|p| p.strip_prefix(k)).map(|v| v.trim().to_string())
    };
    let change = |action: &'static str, user: Option<String>, group: Option<String>, uid: Option<u32>| {
        Some(AccountChange { action, user, group, uid })
    };
    let ch = if let Some(r) = msg.strip_prefix("new user: ") {
        change("user_added", kv(r, "name="), None, kv(r, "UID=").and_then(|u| u.parse().ok()))
    } else if let Some(r) = msg.strip_prefix("new group: ") {
        change("group_added", None, kv(r, "name="), None)
    } else if let Some(r) = msg.strip_prefix("group added to /etc/group: ") {
        change("group_added", None, kv(r, "name="), None)
    } else if let Some(r) = msg.strip_prefix("add ") {
        // add 'bob' to group 'sudo' / add 'bob' to shadow group 'sudo'
        let (user, g) = r.split_once(" to ")?;
        let g = g.strip_prefix("shadow group ").or_else(|| g.strip_prefix("group "))?;
        change("group_member_added", Some(q(user)), Some(q(g)), None)
    } else if let Some(r) = msg.strip_prefix("delete ")
        && let Some((user, g)) = r.split_once(" from ")
    {
        let g = g.strip_prefix("shadow group ").or_else(|| g.strip_prefix("group ")).unwrap_or(g);
        change("group_member_removed", Some(q(user)), Some(q(g)), None)
    } else if let Some(r) = msg.strip_prefix("delete user ") {
        change("user_deleted", Some(q(r)), None, None)
    } else if let Some(r) = msg.strip_prefix("user ")
        && let Some((user, g)) = r.split_once(" added by ")
    {
        // gpasswd: user bob added by root to group sudo
        let g = g.split_once(" to group ").map(|(_, g)| g)?;
        change("group_member_added", Some(q(user)), Some(q(g)), None)
    } else if let Some(r) = msg.strip_prefix("user ")
        && let Some((user, g)) = r.split_once(" removed by ")
    {
        let g = g.split_once(" from group ").map(|(_, g)| g)?;
        change("group_member_removed", Some(q(user)), Some(q(g)), None)
    } else if let Some(r) = msg.strip_prefix("members of group ") {
        // gpasswd -M: members of group sudo set by root to alice,bob
        let (g, members) = r.split_once(" set by ")?;
        let members = members.split_once(" to ").map(|(_, m)| m).unwrap_or("");
        change("group_members_set", Some(members.trim().to_string()), Some(q(g)), None)
    } else if let Some(r) = msg.strip_prefix("change user ") {
        if let Some((user, uids)) = r.split_once(" UID from ") {
            let to = uids.split_once(" to ").map(|(_, t)| q(t)).and_then(|t| t.parse().ok());
            change("uid_changed", Some(q(user)), None, to)
        } else if let Some(user) = r.strip_suffix(" password") {
            change("password_changed", Some(q(user)), None, None)
        } else {
            let user = r.split(' ').next().map(q);
            change("user_modified", user, None, None)
        }
    } else if let Some(r) = msg.strip_prefix("lock user ").and_then(|r| r.strip_suffix(" password")) {
        change("password_locked", Some(q(r)), None, None)
    } else if let Some(r) = msg.strip_prefix("unlock user ").and_then(|r| r.strip_suffix(" password")) {
        change("password_unlocked", Some(q(r)), None, None)
    } else if let Some(r) = msg.strip_prefix("changed password expiry for ") {
        change("expiry_changed", Some(q(r)), None, None)
    } else if let Some(r) = msg.strip_prefix("password for ").and_then(|r| r.strip_suffix(" changed by root"))
    {
        change("password_changed", Some(q(r)), None, None)
    } else if let Some(r) = msg.strip_prefix("group ") {
        // group 'x' removed from /etc/group, group changed ...
        let name = r.split(' ').next().map(q);
        if r.contains(" removed") {
            change("group_deleted", None, name, None)
        } else {
            return None;
        }
    } else {
        return None;
    };
    let mut e = AuthEvent::new(ts, entry, &entry.program, Outcome::Success);
    e.user = ch.as_ref().and_then(|c| c.user.clone());
    e.account = ch;
    Some(e)
}

#[cfg(test)]
mod tests;
