//! Windows security events received as JSON (NXLog `om_json`, Winlogbeat)
//! or as RFC 5424 messages whose structured data carries the event's
//! fields (NXLog `to_syslog_ietf`), turned into [`AuthEvent`]s for the
//! authentication detectors of the host sensor, or into alerts of their
//! own. `canhgac.source` is `windows`.
//!
//! | event | becomes |
//! |-------|---------|
//! | 4624 logon | an `auth` success (account, logon type, source address) |
//! | 4625 logon failure | an `auth` failure counting one guess (reason from `SubStatus`) |
//! | 4740 account locked out | an `auth` failure counting no guess (`account_locked`) |
//! | 4720, 4722, 4726 account created, enabled, deleted | an account change (`user_added`, `user_enabled`, `user_deleted`) |
//! | 4728, 4732, 4756 member added to a global, local, universal group | `group_member_added`: `privileged-account-change` when the group is privileged |
//! | 1102 audit log cleared | alert `windows-log-cleared` (severity 1, T1070.001) |
//! | 7045 service installed | alert `windows-service-installed` (severity 2 when the image path runs a shell, a script host or lives in a temporary or user directory, else 3; T1543.003) |
//!
//! Field names are read as NXLog writes them (`EventID`, `TargetUserName`,
//! `IpAddress`, `LogonType`, `Hostname`, `EventTime`) and as Winlogbeat
//! does (`winlog.event_id` or `event.code`, `winlog.event_data.*`,
//! `winlog.user_data.*`, `winlog.computer_name`, `@timestamp`), nested or
//! with dotted keys. Other event ids are counted as `other`; a message
//! with no event id is not a Windows event.

use std::collections::BTreeMap;

use canhgac_proto::v1::RecordKind;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::well_known::Rfc3339};

use crate::{
    detect::Output,
    eve::{self, AlertInfo, sid},
    host::{
        auth::{
            AuthEvent, Outcome,
            parse::{AccountChange, Remote},
        },
        logfmt::Entry,
        origin::LogOrigin,
    },
    spool::NewRecord,
};

/// One Windows event: its id, time, computer and flat fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinEvent {
    pub id: u32,
    pub ts: Option<OffsetDateTime>,
    pub host: Option<String>,
    /// Event data by field name (`TargetUserName`, ...).
    pub fields: BTreeMap<String, String>,
}

impl WinEvent {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(|s| s.trim()).filter(|s| !s.is_empty() && *s != "-")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinParsed {
    Event(Box<WinEvent>),
    /// No event id: not a Windows event.
    NotWindows,
    /// Looked like one (JSON object, structured data) but could not be read.
    Malformed,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn path<'a>(obj: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(dotted) {
        return Some(v);
    }
    let mut cur = obj;
    let mut parts = dotted.split('.').peekable();
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        cur = v.as_object()?;
    }
    None
}

/// Times as NXLog (`2026-12-06 10:00:00`, local, or with an offset) and
/// Winlogbeat (RFC 3339) write them.
fn parse_time(s: &str, offset: UtcOffset) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let t = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&t, &Rfc3339) {
        return Some(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = t.split('.').next().unwrap_or(&t);
    PrimitiveDateTime::parse(base, &fmt).ok().map(|p| p.assume_offset(offset))
}

/// A JSON object (NXLog or Winlogbeat).
pub fn from_json(text_in: &str, offset: UtcOffset) -> WinParsed {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text_in.trim()) else {
        return WinParsed::Malformed;
    };
    let id = ["EventID", "winlog.event_id", "event.code", "EventId", "event_id"]
        .iter()
        .find_map(|k| path(&obj, k).and_then(text))
        .and_then(|s| s.trim().parse::<u32>().ok());
    let Some(id) = id else { return WinParsed::NotWindows };
    let mut fields = BTreeMap::new();
    for (k, v) in &obj {
        if let Some(s) = text(v) {
            fields.insert(k.clone(), s);
        }
    }
    for nested in ["winlog.event_data", "winlog.user_data", "event_data", "EventData"] {
        if let Some(Value::Object(m)) = path(&obj, nested) {
            for (k, v) in m {
                if let Some(s) = text(v) {
                    fields.insert(k.clone(), s);
                }
            }
        }
        // dotted keys (`winlog.event_data.TargetUserName`)
        let prefix = format!("{nested}.");
        for (k, v) in &obj {
            if let (Some(name), Some(s)) = (k.strip_prefix(&prefix), text(v)) {
                fields.insert(name.to_string(), s);
            }
        }
    }
    if !fields.contains_key("IpAddress")
        && let Some(ip) = path(&obj, "source.ip").and_then(text)
    {
        fields.insert("IpAddress".into(), ip);
    }
    let ts = ["EventTime", "@timestamp", "TimeCreated", "EventReceivedTime"]
        .iter()
        .find_map(|k| path(&obj, k).and_then(text).and_then(|s| parse_time(&s, offset)));
    let host = ["Hostname", "winlog.computer_name", "host.name", "Computer", "computer_name"]
        .iter()
        .find_map(|k| path(&obj, k).and_then(text))
        .filter(|h| !h.trim().is_empty());
    WinParsed::Event(Box::new(WinEvent { id, ts, host, fields }))
}

/// An RFC 5424 line (`<PRI>1 TS HOST APP PROCID MSGID [SD...] MSG`) whose
/// structured data has the event's fields, or whose message is JSON.
pub fn from_rfc5424(line: &str, offset: UtcOffset) -> WinParsed {
    let Some(rest) = line.trim().strip_prefix('<').and_then(|r| r.split_once('>')).map(|(_, r)| r) else {
        return WinParsed::NotWindows;
    };
    let Some(rest) = rest.strip_prefix("1 ") else { return WinParsed::NotWindows };
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next().unwrap_or("-");
    let host = parts.next().unwrap_or("-");
    let (_app, _proc, _msgid) = (parts.next(), parts.next(), parts.next());
    let rest = parts.next().unwrap_or("");
    let (params, msg) = structured_data(rest);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg).trim();
    if msg.starts_with('{') {
        let mut p = from_json(msg, offset);
        if let WinParsed::Event(e) = &mut p {
            if e.host.is_none() && host != "-" {
                e.host = Some(host.to_string());
            }
            if e.ts.is_none() {
                e.ts = OffsetDateTime::parse(ts, &Rfc3339).ok();
            }
        }
        return p;
    }
    let id = params.get("EventID").or_else(|| params.get("EventId")).and_then(|s| s.trim().parse().ok());
    let Some(id) = id else { return WinParsed::NotWindows };
    let ts = params
        .get("EventTime")
        .and_then(|t| parse_time(t, offset))
        .or_else(|| OffsetDateTime::parse(ts, &Rfc3339).ok());
    let host = params.get("Hostname").cloned().or_else(|| (host != "-").then(|| host.to_string()));
    WinParsed::Event(Box::new(WinEvent { id, ts, host, fields: params }))
}

/// `[id k="v" ...]...` → params (escapes `\"`, `\\`, `\]` undone) and the
/// message after it.
fn structured_data(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut params = BTreeMap::new();
    if let Some(r) = s.strip_prefix('-') {
        return (params, r.strip_prefix(' ').unwrap_or(r));
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        // the SD-ID
        while i < b.len() && b[i] != b' ' && b[i] != b']' {
            i += 1;
        }
        loop {
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() {
                return (BTreeMap::new(), "");
            }
            if b[i] == b']' {
                i += 1;
                break;
            }
            let start = i;
            while i < b.len() && b[i] != b'=' && b[i] != b']' {
                i += 1;
            }
            let name = s.get(start..i).unwrap_or("").to_string();
            if b.get(i) != Some(&b'=') || b.get(i + 1) != Some(&b'"') {
                return (BTreeMap::new(), "");
            }
            i += 2;
            let mut value = Vec::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() && matches!(b[i + 1], b'"' | b'\\' | b']') {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
            if i >= b.len() {
                // an unterminated value: the structured data is damaged
                return (BTreeMap::new(), "");
            }
            i += 1;
            if params.len() < 256 {
                params.insert(name, String::from_utf8_lossy(&value).into_owned());
            }
        }
    }
    let r = s.get(i..).unwrap_or("");
    (params, r.strip_prefix(' ').unwrap_or(r))
}

/// Reads a message in any of the forms: a JSON line, an RFC 5424 line, or
/// a syslog entry whose message is JSON (`nxlog: {...}` over RFC 3164).
pub fn parse_line(line: &str, entry: Option<&Entry>, offset: UtcOffset) -> WinParsed {
    let t = line.trim();
    if t.starts_with('{') {
        return from_json(t, offset);
    }
    if t.starts_with('<') && t.split_once('>').is_some_and(|(_, r)| r.starts_with("1 ")) {
        return from_rfc5424(t, offset);
    }
    match entry {
        Some(e) if e.message.trim_start().starts_with('{') => {
            let mut p = from_json(&e.message, offset);
            if let WinParsed::Event(w) = &mut p {
                w.host = w.host.take().or_else(|| e.host.clone());
                w.ts = w.ts.or(e.ts);
            }
            p
        }
        _ => WinParsed::NotWindows,
    }
}

/// Windows groups whose members are administrators of a machine or a
/// domain (also in `[host.auth.detect.privileged_account_change] groups`).
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "Administrators",
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Account Operators",
    "Backup Operators",
    "Server Operators",
    "Print Operators",
    "DnsAdmins",
    "Group Policy Creator Owners",
    "Key Admins",
    "Enterprise Key Admins",
    "Hyper-V Administrators",
];

fn logon_type(t: &str) -> &'static str {
    match t.trim() {
        "2" => "interactive",
        "3" => "network",
        "4" => "batch",
        "5" => "service",
        "7" => "unlock",
        "8" => "network-cleartext",
        "9" => "new-credentials",
        "10" => "remote-interactive",
        "11" => "cached-interactive",
        _ => "other",
    }
}

fn failure_reason(sub_status: Option<&str>) -> &'static str {
    match sub_status.map(|s| s.trim().to_ascii_lowercase()) {
        Some(s) if s == "0xc0000064" => "invalid_user",
        Some(s) if s == "0xc000006a" => "bad_password",
        Some(s) if s == "0xc0000234" => "account_locked",
        Some(s) if s == "0xc0000072" => "account_disabled",
        Some(s) if s == "0xc000006f" || s == "0xc0000070" => "not_allowed",
        Some(s) if s == "0xc0000071" || s == "0xc0000193" => "expired",
        _ => "bad_credentials",
    }
}

/// `CN=John Smith,OU=...` → `John Smith`.
fn member_name(ev: &WinEvent) -> Option<String> {
    if let Some(dn) = ev.get("MemberName") {
        let cn = dn.strip_prefix("CN=").map(|r| r.split(',').next().unwrap_or(r)).unwrap_or(dn);
        return Some(cn.to_string());
    }
    ev.get("MemberSid").map(str::to_string)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WindowsStats {
    pub messages: u64,
    pub events: u64,
    /// Windows events of ids not interpreted.
    pub other: u64,
    pub unparsed: u64,
    pub alerts: u64,
    /// Lines skipped as binary, and lines cut at 64 KiB.
    pub binary: u64,
    pub truncated: u64,
}

/// What one Windows event becomes.
#[derive(Debug)]
pub enum Converted {
    Auth(Box<AuthEvent>),
    Alert(Box<NewRecord>),
    Ignored,
}

/// Turns an event into an [`AuthEvent`] or an alert; `now` stands in for
/// a missing time.
pub fn convert(ev: &WinEvent, now: OffsetDateTime, source: &str, origin: &LogOrigin) -> Converted {
    let ts = ev.ts.unwrap_or(now);
    let entry = Entry {
        ts: Some(ts),
        host: ev.host.clone(),
        program: ev.get("SourceName").or(ev.get("winlog.provider_name")).unwrap_or("windows").to_string(),
        pid: None,
        message: String::new(),
        cursor: None,
    };
    let auth = |outcome: Outcome| {
        let mut a = AuthEvent::new(ts, &entry, "windows", outcome);
        a.origin = origin.clone();
        a
    };
    let user = || {
        ev.get("TargetUserName").map(|u| match ev.get("TargetDomainName") {
            Some(d) if !d.eq_ignore_ascii_case(ev.host.as_deref().unwrap_or("")) && ev.id != 4740 => {
                format!("{d}\\{u}")
            }
            _ => u.to_string(),
        })
    };
    match ev.id {
        4624 | 4625 => {
            let mut a = auth(if ev.id == 4624 { Outcome::Success } else { Outcome::Failure });
            a.user = user();
            a.src = ev.get("IpAddress").and_then(Remote::parse).or_else(|| {
                // no address (NTLM from a name only): the workstation name
                ev.get("WorkstationName").and_then(Remote::parse)
            });
            if a.src.as_ref().is_some_and(|r| r.ip.is_some_and(|ip| ip.is_loopback())) {
                a.src = None;
            }
            a.src_port = ev.get("IpPort").and_then(|p| p.parse().ok()).filter(|p| *p != 0);
            a.method = ev.get("LogonType").map(|t| logon_type(t).to_string());
            if ev.id == 4625 {
                a.attempts = 1;
                a.reason = Some(failure_reason(ev.get("SubStatus").or(ev.get("Status"))));
            }
            Converted::Auth(Box::new(a))
        }
        4740 => {
            let mut a = auth(Outcome::Failure);
            a.user = ev.get("TargetUserName").map(str::to_string);
            // the caller computer (where the bad passwords came from)
            a.src = ev.get("TargetDomainName").and_then(Remote::parse);
            a.reason = Some("account_locked");
            Converted::Auth(Box::new(a))
        }
        4720 | 4722 | 4726 | 4728 | 4732 | 4756 => {
            let mut a = auth(Outcome::Success);
            a.user = ev.get("SubjectUserName").map(str::to_string);
            let change = match ev.id {
                4720 | 4722 | 4726 => AccountChange {
                    action: match ev.id {
                        4720 => "user_added",
                        4722 => "user_enabled",
                        _ => "user_deleted",
                    },
                    user: ev.get("TargetUserName").map(str::to_string),
                    group: None,
                    uid: None,
                },
                _ => AccountChange {
                    action: "group_member_added",
                    user: member_name(ev),
                    group: ev.get("TargetUserName").map(|g| {
                        PRIVILEGED_GROUPS
                            .iter()
                            .find(|p| p.eq_ignore_ascii_case(g))
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| g.to_string())
                    }),
                    uid: None,
                },
            };
            a.account = Some(change);
            Converted::Auth(Box::new(a))
        }
        1102 => {
            let by = ev.get("SubjectUserName").unwrap_or("?");
            let sig = format!(
                "CANHGAC WINDOWS security audit log cleared on {} by {by}",
                ev.host.as_deref().unwrap_or("?")
            );
            let mut d = Map::new();
            d.insert("cleared_by".into(), by.into());
            if let Some(dom) = ev.get("SubjectDomainName") {
                d.insert("domain".into(), dom.into());
            }
            Converted::Alert(Box::new(alert(
                ev,
                ts,
                source,
                origin,
                (sid::WINDOWS_LOG_CLEARED, sig, "Attempted Administrator Privilege Gain", 1),
                ("windows-log-cleared", "T1070.001"),
                d,
            )))
        }
        7045 => {
            let name = ev.get("ServiceName").unwrap_or("?");
            let image = ev.get("ImagePath").unwrap_or("");
            let lower = image.to_ascii_lowercase();
            let suspicious = [
                "cmd.exe",
                "cmd /c",
                "%comspec%",
                "powershell",
                "pwsh",
                "mshta",
                "rundll32",
                "regsvr32",
                "wscript",
                "cscript",
                "\\temp\\",
                "\\tmp\\",
                "\\users\\",
                "\\programdata\\",
                "\\appdata\\",
                "admin$",
                "\\\\127.0.0.1",
                "-enc",
                "frombase64",
            ]
            .iter()
            .any(|w| lower.contains(w));
            let severity = if suspicious { 2 } else { 3 };
            let sig = format!(
                "CANHGAC WINDOWS service {name} installed on {}{}",
                ev.host.as_deref().unwrap_or("?"),
                if suspicious { " (suspicious image path)" } else { "" }
            );
            let mut d = Map::new();
            d.insert("service_name".into(), name.into());
            d.insert("image_path".into(), image.chars().take(1024).collect::<String>().into());
            for (k, f) in
                [("service_type", "ServiceType"), ("start_type", "StartType"), ("account", "AccountName")]
            {
                if let Some(v) = ev.get(f) {
                    d.insert(k.into(), v.into());
                }
            }
            d.insert("suspicious".into(), suspicious.into());
            Converted::Alert(Box::new(alert(
                ev,
                ts,
                source,
                origin,
                (sid::WINDOWS_SERVICE_INSTALLED, sig, "Misc activity", severity),
                ("windows-service-installed", "T1543.003"),
                d,
            )))
        }
        _ => Converted::Ignored,
    }
}

fn alert(
    ev: &WinEvent,
    ts: OffsetDateTime,
    source: &str,
    origin: &LogOrigin,
    (signature_id, signature, category, severity): (u64, String, &str, u32),
    (detector, technique): (&str, &str),
    details: Map<String, Value>,
) -> NewRecord {
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(ts).into());
    m.insert("event_type".into(), "alert".into());
    let info = AlertInfo::builtin(signature_id, signature, category, severity);
    let mut canhgac = json!({"detector": detector, "technique": technique, "event_id": ev.id});
    if let Some(obj) = canhgac.as_object_mut() {
        obj.extend(details);
        obj.insert("log_source".into(), source.into());
        origin.write(obj);
        if let Some(h) = &ev.host {
            obj.insert("log_host".into(), h.clone().into());
        }
    }
    let mut facts = canhgac_proto::v1::RecordFacts {
        detector: detector.into(),
        role_basis: canhgac_proto::v1::RoleBasis::Detector as i32,
        ..Default::default()
    };
    if let Some(h) = &ev.host {
        facts.victims.push(crate::facts::named(h));
    }
    crate::facts::set_signature(&mut facts, info.signature_id, &info.signature, &info.category, technique);
    facts.system = origin.system.unwrap_or(0);
    let value = eve::alert(m, info, None, Vec::new(), canhgac);
    NewRecord {
        kind: RecordKind::Alert,
        severity,
        time: ts,
        eve_json: value.to_string().into_bytes(),
        facts: Some(facts),
    }
}

/// Windows events through the authentication pipeline (shared with the
/// Linux logs: a guesser of both is one source) or into alerts.
#[derive(Debug, Default)]
pub struct WindowsPipeline {
    pub stats: WindowsStats,
}

impl WindowsPipeline {
    /// One message (the raw line and, when it parsed, its syslog entry).
    /// Returns whether it was a Windows event.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        line: &str,
        entry: Option<&Entry>,
        now: OffsetDateTime,
        offset: UtcOffset,
        source: &str,
        origin: &LogOrigin,
        auth: &mut crate::host::auth::AuthPipeline,
        out: &mut Output,
    ) -> bool {
        self.stats.messages += 1;
        let ev = match parse_line(line, entry, offset) {
            WinParsed::Event(e) => e,
            WinParsed::NotWindows => return false,
            WinParsed::Malformed => {
                self.stats.unparsed += 1;
                return false;
            }
        };
        match convert(&ev, now, source, origin) {
            Converted::Auth(a) => {
                self.stats.events += 1;
                let before = auth.stats.alerts;
                auth.event(*a, source, out);
                self.stats.alerts += auth.stats.alerts - before;
            }
            Converted::Alert(r) => {
                self.stats.events += 1;
                self.stats.alerts += 1;
                out.records.push(*r);
            }
            Converted::Ignored => self.stats.other += 1,
        }
        true
    }
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod tests;
