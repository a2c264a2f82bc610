//! One entry for every log line the agent reads, whatever brought it (a
//! followed file, the journal, `analyze --log`, the syslog receiver): the
//! line's *kind* (configured, or sniffed from the first recognisable line
//! of its source) picks the pipeline.
//!
//! | kind | pipeline | EVE events | alerts' `canhgac.source` |
//! |------|----------|------------|--------------------------|
//! | `auth` | [`super::auth`] (sshd, PAM, sudo, su, account tools, FTP) | `auth` | `auth` |
//! | `web` | [`super::web`] (nginx, Apache, IIS, JSON access logs) | `http` | `web` |
//! | `firewall` | firewall logs (netfilter, filterlog, FortiGate, ASA, MikroTik) | `firewall` | `firewall` |
//! | `windows` | Windows security events into the authentication detectors | `auth` | `windows` |
//!
//! Sniffing order: an access-log line is `web`; a Windows event (JSON
//! with an event id, RFC 5424 structured data with `EventID`) is
//! `windows`; a firewall message of a known vendor is `firewall`; anything
//! else is `auth` (the syslog formats, whose unknown programs are simply
//! not events). A file is sniffed once, from its first non-empty line; a
//! syslog message of a sender without a configured kind is sniffed alone
//! ([`Pipelines::message`]).

use std::{collections::HashMap, net::IpAddr};

use time::OffsetDateTime;

use super::{
    auth::{AuthPipeline, AuthStats},
    firewall::{self, FirewallPipeline, FirewallStats},
    logfmt::{self, Clock, LogFormat},
    origin::LogOrigin,
    web::{Origin, WebFormat, WebPipeline, WebStats},
    windows::{self, WindowsPipeline, WindowsStats},
};
use crate::detect::Output;

/// What a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKind {
    Auth,
    Web,
    Firewall,
    Windows,
}

impl LogKind {
    pub fn name(self) -> &'static str {
        match self {
            LogKind::Auth => "auth",
            LogKind::Web => "web",
            LogKind::Firewall => "firewall",
            LogKind::Windows => "windows",
        }
    }

    pub const ALL: [LogKind; 4] = [LogKind::Auth, LogKind::Web, LogKind::Firewall, LogKind::Windows];
}

/// How to read a log: its kind (`None`: sniffed) and the format within
/// the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogSpec {
    pub kind: Option<LogKind>,
    pub auth: LogFormat,
    pub web: WebFormat,
    /// `analyze --log-format lines`: read and split lines only, the
    /// baseline of the log throughput benchmark.
    pub lines_only: bool,
}

impl LogSpec {
    pub const EXPECTED: &'static str = "auto, auth, syslog, rfc5424, journal-json, web, combined, common, iis, \
                                        web-json, firewall, windows, lines";

    /// `--log-format` and `format =` of a log source.
    pub fn parse(s: &str) -> Result<LogSpec, String> {
        let mut spec = LogSpec::default();
        match s {
            "auto" => {}
            "auth" => spec.kind = Some(LogKind::Auth),
            "web" => spec.kind = Some(LogKind::Web),
            "combined" | "common" | "vhost_combined" | "iis" | "w3c" => {
                spec.kind = Some(LogKind::Web);
                spec.web = WebFormat::parse(s)?;
            }
            "web-json" => {
                spec.kind = Some(LogKind::Web);
                spec.web = WebFormat::Json;
            }
            "lines" => spec.lines_only = true,
            "firewall" => spec.kind = Some(LogKind::Firewall),
            "windows" => spec.kind = Some(LogKind::Windows),
            other => match LogFormat::parse(other) {
                Ok(f) => {
                    spec.kind = Some(LogKind::Auth);
                    spec.auth = f;
                }
                Err(_) => return Err(format!("unknown log format `{other}` (expected {})", Self::EXPECTED)),
            },
        }
        Ok(spec)
    }

    /// A spec for logs of a known kind with its format given as text
    /// (`[host.web_logs] format`).
    pub fn of_kind(kind: LogKind, format: &str) -> Result<LogSpec, String> {
        let spec = LogSpec::parse(format)?;
        match spec.kind {
            None => Ok(LogSpec { kind: Some(kind), ..spec }),
            Some(k) if k == kind => Ok(spec),
            Some(k) => Err(format!("format `{format}` is for {} logs, not {} logs", k.name(), kind.name())),
        }
    }
}

/// Sniffs the kind of a line.
pub fn sniff(line: &str) -> LogKind {
    if super::web::parse::sniff(line) {
        return LogKind::Web;
    }
    let clock = Clock::utc(OffsetDateTime::UNIX_EPOCH);
    let entry = logfmt::parse(line, LogFormat::Auto, &clock);
    if matches!(windows::parse_line(line, entry.as_ref(), clock.offset), windows::WinParsed::Event(_)) {
        return LogKind::Windows;
    }
    if let Some(e) = &entry {
        let cx = firewall::Context {
            program: &e.program,
            host: e.host.as_deref(),
            ts: clock.reference,
            ts_missing: e.ts.is_none(),
            offset: clock.offset,
        };
        if !matches!(firewall::parse::parse(&e.message, &cx), firewall::Parsed::NotFirewall) {
            return LogKind::Firewall;
        }
    }
    LogKind::Auth
}

/// Where a line comes from.
#[derive(Debug, Clone, Copy)]
pub struct LineSource<'a> {
    /// The file (or the syslog sender) for the alert's `log_source`.
    pub name: &'a str,
    pub spec: LogSpec,
    /// The registry system the log belongs to (0: none configured).
    pub system: u64,
    /// Byte offset of the line in its file.
    pub offset: Option<u64>,
    /// The syslog sender (messages received over the network).
    pub sender: Option<IpAddr>,
}

impl LineSource<'_> {
    fn origin(&self, kind: &'static str) -> LogOrigin {
        LogOrigin { kind, sender: self.sender, system: (self.system != 0).then_some(self.system) }
    }
}

/// Counts per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    pub lines: u64,
    pub events: u64,
    pub alerts: u64,
    pub unparsed: u64,
    pub binary: u64,
    pub truncated: u64,
}

/// `KindStats` from a pipeline's counters; `lines` is what the pipeline
/// read (a line field, or its messages and binary lines).
macro_rules! kind_stats {
    ($($t:ty => |$s:ident| $lines:expr;)*) => {$(
        impl From<$t> for KindStats {
            fn from($s: $t) -> Self {
                KindStats {
                    lines: $lines,
                    events: $s.events,
                    alerts: $s.alerts,
                    unparsed: $s.unparsed,
                    binary: $s.binary,
                    truncated: $s.truncated,
                }
            }
        }
    )*};
}

kind_stats! {
    AuthStats => |s| s.lines;
    WebStats => |s| s.lines;
    FirewallStats => |s| s.messages + s.binary;
    WindowsStats => |s| s.messages + s.binary;
}

/// Counts a cut line; true when the line is binary (counted) or empty,
/// so that no pipeline reads it.
fn skipped(raw: &[u8], text: &str, truncated: bool, cut: &mut u64, binary: &mut u64) -> bool {
    *cut += u64::from(truncated);
    if super::auth::looks_binary(raw) {
        *binary += 1;
        return true;
    }
    text.trim().is_empty()
}

/// The pipelines of every log kind, and the kind sniffed for each source.
pub struct Pipelines {
    pub auth: AuthPipeline,
    pub web: WebPipeline,
    pub firewall: FirewallPipeline,
    /// Windows events go on to the authentication detectors (`auth`).
    pub windows: WindowsPipeline,
    sniffed: HashMap<String, LogKind>,
    /// Lines read with `lines_only`.
    lines_only: u64,
    /// Syslog messages no pipeline could read.
    pub syslog_unparsed: u64,
}

impl Pipelines {
    pub fn new(auth: AuthPipeline, web: WebPipeline, firewall: FirewallPipeline) -> Pipelines {
        Pipelines {
            auth,
            web,
            firewall,
            windows: WindowsPipeline::default(),
            sniffed: HashMap::new(),
            lines_only: 0,
            syslog_unparsed: 0,
        }
    }

    /// One syslog message of `sender` (a line without its newline); its
    /// kind is the sender's (`kind`) or sniffed from the message alone.
    #[allow(clippy::too_many_arguments)]
    pub fn message(
        &mut self,
        raw: &[u8],
        truncated: bool,
        sender: IpAddr,
        kind: Option<LogKind>,
        system: u64,
        name: &str,
        clock: &Clock,
        out: &mut Output,
    ) -> LogKind {
        let kind = kind.unwrap_or_else(|| sniff(&String::from_utf8_lossy(raw)));
        let spec = LogSpec { kind: Some(kind), ..Default::default() };
        let before = self.skipped(kind);
        let src = LineSource { name, spec, system, offset: None, sender: Some(sender) };
        self.line(raw, truncated, &src, clock, out);
        if self.skipped(kind) > before {
            self.syslog_unparsed += 1;
        }
        kind
    }

    fn skipped(&self, kind: LogKind) -> u64 {
        let k: KindStats = match kind {
            LogKind::Auth => self.auth.stats.into(),
            LogKind::Web => self.web.stats.into(),
            LogKind::Firewall => self.firewall.stats.into(),
            LogKind::Windows => self.windows.stats.into(),
        };
        k.unparsed + k.binary
    }

    /// The kind of a source's lines: configured, else sniffed once from its
    /// first non-empty line (W3C directives included).
    fn kind_of(&mut self, src: &LineSource<'_>, text: &str) -> LogKind {
        if let Some(k) = src.spec.kind {
            return k;
        }
        if let Some(k) = self.sniffed.get(src.name) {
            return *k;
        }
        let k = sniff(text);
        if !text.trim().is_empty() {
            if self.sniffed.len() >= 4096 {
                self.sniffed.clear();
            }
            self.sniffed.insert(src.name.to_string(), k);
        }
        k
    }

    /// One raw line (without its newline). `truncated`: the reader cut it.
    pub fn line(
        &mut self,
        raw: &[u8],
        truncated: bool,
        src: &LineSource<'_>,
        clock: &Clock,
        out: &mut Output,
    ) {
        if src.spec.lines_only {
            self.lines_only += 1;
            return;
        }
        let text = String::from_utf8_lossy(raw);
        let kind = self.kind_of(src, &text);
        match kind {
            LogKind::Web => {
                let origin = Origin { source: src.name, system: src.system };
                self.web.line(&text, truncated, src.spec.web, origin, src.offset, clock.reference, out);
            }
            LogKind::Auth => {
                let origin = src.origin("auth");
                self.auth.line_with_origin(
                    raw,
                    truncated,
                    src.name,
                    src.offset,
                    src.spec.auth,
                    clock,
                    origin,
                    out,
                );
            }
            LogKind::Firewall => {
                let s = &mut self.firewall.stats;
                if skipped(raw, &text, truncated, &mut s.truncated, &mut s.binary) {
                    return;
                }
                let Some(e) = logfmt::parse(&text, LogFormat::Auto, clock) else {
                    s.messages += 1;
                    s.unparsed += 1;
                    return;
                };
                let origin = src.origin("firewall");
                // a message that is not traffic (a kernel log's other lines,
                // a FortiGate's system events) is counted as `other`
                self.firewall.entry(&e, clock.reference, clock.offset, src.name, &origin, out);
            }
            LogKind::Windows => {
                let s = &mut self.windows.stats;
                if skipped(raw, &text, truncated, &mut s.truncated, &mut s.binary) {
                    return;
                }
                let entry = logfmt::parse(&text, LogFormat::Auto, clock);
                let origin = src.origin("windows");
                let before = self.windows.stats.unparsed;
                let ok = self.windows.line(
                    &text,
                    entry.as_ref(),
                    clock.reference,
                    clock.offset,
                    src.name,
                    &origin,
                    &mut self.auth,
                    out,
                );
                // a line of a Windows log or sender that is no Windows event
                if !ok && self.windows.stats.unparsed == before {
                    self.windows.stats.unparsed += 1;
                }
            }
        }
    }

    /// A parsed syslog entry (the journal).
    /// Kernel netfilter lines (`IN=... SRC=... DST=...`: ufw, iptables or
    /// nftables `log` rules) go to the firewall pipeline, the rest to the
    /// authentication one.
    pub fn entry(&mut self, entry: &logfmt::Entry, now: OffsetDateTime, source: &str, out: &mut Output) {
        let m = &entry.message;
        if entry.program == "kernel" && m.contains("SRC=") && m.contains(" DST=") && m.contains("IN=") {
            let origin = LogOrigin { kind: "firewall", sender: None, system: None };
            self.firewall.entry(entry, now, time::UtcOffset::UTC, source, &origin, out);
            return;
        }
        self.auth.entry(entry, now, source, None, out);
    }

    /// Closes quiet episodes (daemon clock).
    pub fn tick(&mut self, now: OffsetDateTime, out: &mut Output) {
        self.web.tick(now, out);
    }

    /// End of input: every pending alert.
    pub fn finish(&mut self, out: &mut Output) {
        self.web.finish(out);
    }

    pub fn take_state(&mut self, out: &mut Output) {
        self.auth.take_state(out);
        self.web.take_state(out);
        self.firewall.take_state(out);
    }

    pub fn evictions(&self) -> u64 {
        self.auth.evictions() + self.web.evictions() + self.firewall.evictions()
    }

    /// Counts per kind, in [`LogKind::ALL`] order. Windows logons are
    /// counted as Windows events and again as authentication events.
    pub fn stats(&self) -> Vec<(LogKind, KindStats)> {
        vec![
            (LogKind::Auth, self.auth.stats.into()),
            (LogKind::Web, self.web.stats.into()),
            (LogKind::Firewall, self.firewall.stats.into()),
            (LogKind::Windows, self.windows.stats.into()),
        ]
    }

    /// Lines read of every kind, and those skipped (binary, cut, unparsed).
    pub fn totals(&self) -> (u64, u64) {
        self.stats().iter().fold((self.lines_only, 0), |(l, s), (_, k)| {
            (l + k.lines, s + k.binary + k.truncated + k.unparsed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_messages_are_sniffed_alone_and_carry_their_origin() {
        use crate::host::{firewall::FirewallPipeline, web};
        let eve = crate::eve::EveTypes { auth: true, firewall: true, ..Default::default() };
        let mut p = Pipelines::new(
            AuthPipeline::new(Default::default(), eve.auth, &[]),
            WebPipeline::new(
                Default::default(),
                std::sync::Arc::new(web::SignatureSet::builtin()),
                web::WebShells::default(),
                false,
                &[],
            ),
            FirewallPipeline::new(
                Default::default(),
                Default::default(),
                std::sync::Arc::new(crate::detect::IocSet::default()),
                2,
                eve.firewall,
                &[],
            ),
        );
        let clock = Clock::utc(time::macros::datetime!(2026-12-06 12:00:00 UTC));
        let sender = IpAddr::from([10, 0, 0, 254]);
        let mut out = Output::default();
        let ssh =
            "<38>Dec  6 10:00:00 web1 sshd[42]: Failed password for root from 203.0.113.5 port 50000 ssh2";
        let fw = "<4>Dec  6 10:00:00 fw1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.5 DST=10.0.0.5 PROTO=TCP SPT=1 DPT=22 SYN";
        let win = r#"{"EventID":4625,"Hostname":"DC01","TargetUserName":"x","IpAddress":"203.0.113.5","LogonType":"3"}"#;
        let mut msg = |p: &mut Pipelines, text: &str, k: Option<LogKind>| {
            p.message(text.as_bytes(), false, sender, k, 9, "syslog", &clock, &mut out)
        };
        assert_eq!(msg(&mut p, ssh, None), LogKind::Auth);
        assert_eq!(msg(&mut p, fw, None), LogKind::Firewall);
        assert_eq!(msg(&mut p, win, None), LogKind::Windows);
        assert_eq!(p.syslog_unparsed, 0);
        // a Windows sender's firewall line, a firewall sender's garbage
        msg(&mut p, fw, Some(LogKind::Windows));
        msg(&mut p, "\u{1}\u{2}\u{3}\u{4}", Some(LogKind::Firewall));
        assert_eq!(p.syslog_unparsed, 2);
        let records: Vec<serde_json::Value> =
            out.records.iter().map(|r| serde_json::from_slice(&r.eve_json).unwrap()).collect();
        let sources: Vec<&str> = records.iter().map(|r| r["canhgac"]["source"].as_str().unwrap()).collect();
        assert_eq!(sources, ["auth", "firewall", "windows"]);
        assert!(
            records.iter().all(|r| r["canhgac"]["sender"] == "10.0.0.254" && r["canhgac"]["system"] == 9)
        );
        // the journal: kernel netfilter lines are firewall events
        out.records.clear();
        let journal = |msg: &str, program: &str| logfmt::Entry {
            ts: Some(clock.reference),
            host: Some("web1".into()),
            program: program.into(),
            pid: None,
            message: msg.into(),
            cursor: None,
        };
        let nf = "[UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC=203.0.113.9 DST=10.0.0.5 LEN=60 PROTO=TCP SPT=4 DPT=23 SYN";
        p.entry(&journal(nf, "kernel"), clock.reference, "journal", &mut out);
        p.entry(
            &journal("Failed password for root from 203.0.113.9 port 5 ssh2", "sshd"),
            clock.reference,
            "journal",
            &mut out,
        );
        let kinds: Vec<String> = out
            .records
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.eve_json).unwrap()["event_type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, ["firewall", "auth"]);
        assert_eq!(sniff(r#"{"winlog":{"event_id":4625}}"#), LogKind::Windows);
        assert_eq!(
            sniff("5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,1.2.3.4,5.6.7.8,1,22,0,S"),
            LogKind::Firewall
        );
    }

    #[test]
    fn specs_and_sniffing() {
        assert_eq!(LogSpec::parse("auto").unwrap(), LogSpec::default());
        assert_eq!(LogSpec::parse("iis").unwrap().kind, Some(LogKind::Web));
        assert_eq!(LogSpec::parse("json").unwrap().auth, LogFormat::JournalJson);
        assert_eq!(LogSpec::parse("web-json").unwrap().web, WebFormat::Json);
        assert!(LogSpec::parse("xml").unwrap_err().contains("expected auto"));
        assert!(LogSpec::of_kind(LogKind::Web, "rfc5424").unwrap_err().contains("not web logs"));
        assert_eq!(LogSpec::of_kind(LogKind::Web, "auto").unwrap().kind, Some(LogKind::Web));
        assert_eq!(
            sniff(r#"1.2.3.4 - - [06/Dec/2026:10:15:32 +0700] "GET / HTTP/1.1" 200 1 "-" "curl""#),
            LogKind::Web
        );
        assert_eq!(sniff("#Software: Microsoft Internet Information Services 10.0"), LogKind::Web);
        assert_eq!(
            sniff("Dec  6 10:15:32 host sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2"),
            LogKind::Auth
        );
    }
}
