//! Log line formats: what wraps a program's message in a log file or the
//! journal. Untrusted input: nothing here panics, allocates more than the
//! line, or trusts a length.
//!
//! Recognised (`auto` tries them in this order):
//!
//! * **Journal JSON** (`journalctl -o json`): one object per line; `MESSAGE`
//!   (a string, or an array of bytes for non-UTF-8 messages),
//!   `SYSLOG_IDENTIFIER` (else `_COMM`), `_PID` (else `SYSLOG_PID`),
//!   `_HOSTNAME`, `__REALTIME_TIMESTAMP` (µs), `__CURSOR`.
//! * **RFC 5424**: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`, with
//!   structured data skipped (quoted values may hold `]`).
//! * **RFC 3164** (BSD syslog, rsyslog's default file format):
//!   `[<PRI>]Mmm dd hh:mm:ss HOST PROG[PID]: MSG`. The year is not in the
//!   line: it is the reference time's year, or the year before when the
//!   date would lie more than two days after the reference (a log read in
//!   January that was written in December). The time is local time at the
//!   configured offset.
//! * **ISO 8601 syslog** (rsyslog's `RSYSLOG_FileFormat`, high precision):
//!   `2026-11-23T09:15:02.123456+07:00 HOST PROG[PID]: MSG`.
//! * **Headerless** (`journalctl -o short` without time, or `HOST PROG[PID]:
//!   MSG`): accepted only when the program token carries a pid, so that a
//!   bare message such as `error: ...` is not mistaken for a header.
//! * **vsftpd's own log**: `Sat Dec  6 07:30:17 2026 [pid 2] [ftp] OK LOGIN:
//!   ...` (program `vsftpd`).
//! * **Bare** messages (`sshd -E FILE` writes the message alone): anything
//!   else, with no program, host or time (the reader's clock is used).
//!
//! The host token may be missing (`Nov 23 21:50:19 sshd[8148]: ...`); the
//! program may be written `[sshd]` or `[sshd]:`; a `sshd(pam_unix)` program
//! (older PAM) keeps its name before the parenthesis and the module goes in
//! front of the message, `(pam_unix) MSG`, as other old syslogs write it.

use time::{
    Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, format_description::well_known::Rfc3339,
};

/// Lines longer than this are cut here (the cut is counted by the reader).
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Auto,
    /// RFC 3164, its ISO 8601 variant, headerless and bare lines.
    Syslog,
    Rfc5424,
    JournalJson,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "syslog" | "rfc3164" => Ok(LogFormat::Syslog),
            "rfc5424" => Ok(LogFormat::Rfc5424),
            "journal-json" | "json" => Ok(LogFormat::JournalJson),
            other => {
                Err(format!("unknown log format `{other}` (expected auto, syslog, rfc5424, journal-json)"))
            }
        }
    }
}

/// How to place a line without a full timestamp in time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Now, for a followed log; the file's modification time offline.
    pub reference: OffsetDateTime,
    /// Offset of local timestamps (RFC 3164 lines carry none).
    pub offset: UtcOffset,
}

impl Clock {
    pub fn utc(reference: OffsetDateTime) -> Clock {
        Clock { reference, offset: UtcOffset::UTC }
    }
}

/// One log entry: who said what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `None` when the line has no timestamp (the caller uses its clock).
    pub ts: Option<OffsetDateTime>,
    pub host: Option<String>,
    /// Empty when unknown (bare lines).
    pub program: String,
    pub pid: Option<u32>,
    pub message: String,
    /// Journal cursor (journal JSON only).
    pub cursor: Option<String>,
}

impl Entry {
    fn bare(message: &str) -> Entry {
        Entry {
            ts: None,
            host: None,
            program: String::new(),
            pid: None,
            message: message.to_string(),
            cursor: None,
        }
    }
}

/// Parses one line (without its newline). `None`: the line is not in the
/// requested format (or empty).
pub fn parse(line: &str, format: LogFormat, clock: &Clock) -> Option<Entry> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    match format {
        LogFormat::JournalJson => journal_json(line),
        LogFormat::Rfc5424 => rfc5424(strip_pri(line)?.1),
        LogFormat::Syslog => syslog(strip_pri(line).map(|p| p.1).unwrap_or(line), clock),
        LogFormat::Auto => {
            if line.starts_with('{') {
                return journal_json(line);
            }
            if let Some((_, rest)) = strip_pri(line)
                && rest.starts_with("1 ")
            {
                return rfc5424(rest);
            }
            syslog(strip_pri(line).map(|p| p.1).unwrap_or(line), clock)
        }
    }
}

/// `<PRI>` prefix: (pri, rest).
fn strip_pri(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix('<')?;
    let end = rest.find('>')?;
    if end == 0 || end > 3 {
        return None;
    }
    let pri = rest[..end].parse().ok()?;
    Some((pri, &rest[end + 1..]))
}

fn syslog(line: &str, clock: &Clock) -> Option<Entry> {
    if let Some(e) = vsftpd_log(line, clock) {
        return Some(e);
    }
    if let Some((ts, rest)) = bsd_time(line, clock) {
        return Some(header(rest, Some(ts), false).unwrap_or_else(|| {
            let mut e = Entry::bare(rest);
            e.ts = Some(ts);
            e
        }));
    }
    if let Some((ts, rest)) = iso_time(line) {
        return Some(header(rest, Some(ts), false).unwrap_or_else(|| {
            let mut e = Entry::bare(rest);
            e.ts = Some(ts);
            e
        }));
    }
    Some(header(line, None, true).unwrap_or_else(|| Entry::bare(line)))
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Mmm dd hh:mm:ss ` (day space- or zero-padded, or single digit).
fn bsd_time<'a>(line: &'a str, clock: &Clock) -> Option<(OffsetDateTime, &'a str)> {
    let b = line.as_bytes();
    if b.len() < 15 {
        return None;
    }
    let month = MONTHS.iter().position(|m| line.get(..3) == Some(*m))? as u8 + 1;
    if b[3] != b' ' {
        return None;
    }
    let rest = line[4..].trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let day: u8 = day.parse().ok()?;
    let (hms, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let hms = hms.split('.').next()?;
    let mut it = hms.split(':');
    let (h, m, s) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if it.next().is_some() {
        return None;
    }
    let month = Month::try_from(month).ok()?;
    let time = Time::from_hms(h, m, s).ok()?;
    let place = |year: i32| -> Option<OffsetDateTime> {
        let date = Date::from_calendar_date(year, month, day).ok()?;
        Some(PrimitiveDateTime::new(date, time).assume_offset(clock.offset))
    };
    let year = clock.reference.year();
    // 29 February of a year that is not a leap year: take the last leap year
    let ts = match place(year) {
        Some(t) if t > clock.reference + time::Duration::days(2) => place(year - 1).unwrap_or(t),
        Some(t) => t,
        None => place(year - 1).or_else(|| place(year - 4))?,
    };
    Some((ts, rest))
}

/// vsftpd's own log (`vsftpd_log_file`, the default when `syslog_enable`
/// is off): `Sat Dec  6 07:30:17 2026 [pid 2] [ftp] OK LOGIN: Client
/// "1.2.3.4"`, read as program `vsftpd` with that pid.
fn vsftpd_log(line: &str, clock: &Clock) -> Option<Entry> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let (dow, rest) = line.split_at_checked(4)?;
    if !DAYS.contains(&dow.trim_end()) || !dow.ends_with(' ') {
        return None;
    }
    let (ts, rest) = bsd_time(rest, clock)?;
    let (year, rest) = rest.split_once(' ')?;
    let ts = ts.replace_year(year.parse().ok()?).ok()?;
    let (pid, msg) = rest.strip_prefix("[pid ")?.split_once(']')?;
    Some(Entry {
        ts: Some(ts),
        host: None,
        program: "vsftpd".into(),
        pid: Some(pid.trim().parse().ok()?),
        message: msg.trim_start().to_string(),
        cursor: None,
    })
}

/// `2026-11-23T09:15:02.123456+07:00 ` (RFC 3339).
fn iso_time(line: &str) -> Option<(OffsetDateTime, &str)> {
    let b = line.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let (ts, rest) = line.split_once(' ').unwrap_or((line, ""));
    let ts = OffsetDateTime::parse(ts, &Rfc3339).ok()?;
    Some((ts, rest))
}

/// A program token: `name[pid]:`, `name:`, `[name]:`, `[name]`,
/// `name(pam_unix)[pid]:`. Returns (name, pid, module in parentheses).
fn program_token(tok: &str) -> Option<(String, Option<u32>, Option<String>)> {
    if tok.len() > 128 {
        return None;
    }
    if let Some(inner) = tok.strip_prefix('[') {
        let inner = inner.strip_suffix(':').unwrap_or(inner);
        let name = inner.strip_suffix(']')?;
        return valid_name(name).then(|| (name.to_string(), None, None));
    }
    let tok = tok.strip_suffix(':')?;
    let (name, pid) = match tok.strip_suffix(']') {
        Some(t) => {
            let (name, pid) = t.rsplit_once('[')?;
            (name, Some(pid.parse().ok()?))
        }
        None => (tok, None),
    };
    let (name, module) = match name.split_once('(') {
        Some((n, m)) => (n, m.strip_suffix(')').filter(|m| valid_name(m)).map(str::to_string)),
        None => (name, None),
    };
    valid_name(name).then(|| (name.to_string(), pid, module))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/' | b'@'))
}

/// `[HOST ]PROG[PID]: MSG`. With `need_pid` the program token must carry a
/// pid (lines without a timestamp).
fn header(rest: &str, ts: Option<OffsetDateTime>, need_pid: bool) -> Option<Entry> {
    let (t1, after1) = rest.split_once(' ').unwrap_or((rest, ""));
    let ok = |p: &(String, Option<u32>, Option<String>)| !need_pid || p.1.is_some();
    if let Some(p) = program_token(t1).filter(ok) {
        return Some(entry(ts, None, p, after1));
    }
    let (t2, after2) = after1.split_once(' ').unwrap_or((after1, ""));
    if !t1.is_empty() && t1.len() <= 255 && !t1.contains(['[', ']']) && !t1.ends_with(':') {
        if let Some(p) = program_token(t2).filter(ok) {
            return Some(entry(ts, Some(t1.to_string()), p, after2));
        }
        if !need_pid && ts.is_some() {
            // a host followed by something that is not a program token
            let mut e = Entry::bare(after1);
            e.ts = ts;
            e.host = Some(t1.to_string());
            return Some(e);
        }
    }
    None
}

fn entry(
    ts: Option<OffsetDateTime>,
    host: Option<String>,
    prog: (String, Option<u32>, Option<String>),
    msg: &str,
) -> Entry {
    let msg = msg.trim_start_matches(' ');
    Entry {
        ts,
        host,
        program: prog.0,
        pid: prog.1,
        message: match prog.2 {
            Some(module) => format!("({module}) {msg}"),
            None => msg.to_string(),
        },
        cursor: None,
    }
}

fn nil(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

/// `1 TIMESTAMP HOST APP PROCID MSGID SD MSG` (after the PRI).
fn rfc5424(rest: &str) -> Option<Entry> {
    let rest = rest.strip_prefix("1 ")?;
    let mut parts = rest.splitn(6, ' ');
    let ts = parts.next()?;
    let host = parts.next()?;
    let app = parts.next()?;
    let procid = parts.next()?;
    let _msgid = parts.next()?;
    let rest = parts.next().unwrap_or("");
    let ts = nil(ts).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    let msg = skip_structured_data(rest)?;
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some(Entry {
        ts,
        host: nil(host).map(String::from),
        program: nil(app).unwrap_or("").to_string(),
        pid: nil(procid).and_then(|p| p.parse().ok()),
        message: msg.to_string(),
        cursor: None,
    })
}

/// Skips `-` or `[id k="v" ...]...` and one space.
fn skip_structured_data(s: &str) -> Option<&str> {
    if let Some(r) = s.strip_prefix('-') {
        return Some(r.strip_prefix(' ').unwrap_or(r));
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] == b'[' {
        let mut quoted = false;
        i += 1;
        loop {
            match b.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    let r = s.get(i..)?;
    Some(r.strip_prefix(' ').unwrap_or(r))
}

fn journal_json(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let text = |k: &str| -> Option<String> {
        match obj.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(bytes) => {
                let b: Vec<u8> =
                    bytes.iter().filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect();
                Some(String::from_utf8_lossy(&b).into_owned())
            }
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let message = text("MESSAGE")?;
    let ts = text("__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<i64>().ok())
        .map(canhgac_proto::timefmt::from_micros);
    Some(Entry {
        ts,
        host: text("_HOSTNAME"),
        program: text("SYSLOG_IDENTIFIER").or_else(|| text("_COMM")).unwrap_or_default(),
        pid: text("_PID").or_else(|| text("SYSLOG_PID")).and_then(|p| p.parse().ok()),
        message,
        cursor: text("__CURSOR"),
    })
}

/// Offset of the machine's local time, from `date +%z` (UTC when unknown).
/// Read once at start-up: the `time` crate cannot ask the C library safely
/// in a multi-threaded process.
pub fn local_offset() -> UtcOffset {
    std::process::Command::new("date")
        .arg("+%z")
        .output()
        .ok()
        .and_then(|o| parse_offset(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(UtcOffset::UTC)
}

/// `+0700`, `+07:00`, `-04:30`, `Z`, `UTC`.
pub fn parse_offset(s: &str) -> Option<UtcOffset> {
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1i8, &s[1..]),
        b'-' => (-1i8, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[..2].parse().ok()?;
    let m: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn clock() -> Clock {
        Clock { reference: datetime!(2026-11-23 10:00 UTC), offset: UtcOffset::from_hms(7, 0, 0).unwrap() }
    }

    fn p(line: &str) -> Entry {
        parse(line, LogFormat::Auto, &clock()).unwrap()
    }

    #[test]
    fn rfc3164_variants() {
        let e = p("Feb 25 14:34:10 belka sshd[31602]: Failed password for root from 1.2.3.4 port 22 ssh2");
        assert_eq!(e.host.as_deref(), Some("belka"));
        assert_eq!((e.program.as_str(), e.pid), ("sshd", Some(31602)));
        assert_eq!(e.message, "Failed password for root from 1.2.3.4 port 22 ssh2");
        assert_eq!(e.ts, Some(datetime!(2026-02-25 14:34:10 +7)));
        let e = p("Jul  3 14:59:17 host sshd-session[1571]: x");
        assert_eq!((e.program.as_str(), e.ts), ("sshd-session", Some(datetime!(2026-07-03 14:59:17 +7))));
        let e = p("Nov 23 21:50:19 sshd[8148]: Disconnecting: x");
        assert_eq!((e.host, e.program.as_str(), e.pid), (None, "sshd", Some(8148)));
        let e = p("Mar  3 00:17:22 [sshd]: User root from 1.2.3.4 not allowed");
        assert_eq!((e.program.as_str(), e.message.as_str()), ("sshd", "User root from 1.2.3.4 not allowed"));
        let e = p("Jun 25 23:53:34 [sshd] User root from 1.2.3.4");
        assert_eq!(e.program, "sshd");
        let e = p("Feb 7 16:01:07 linux-m899 sshd[5106]: m");
        assert_eq!(e.ts, Some(datetime!(2026-02-07 16:01:07 +7)));
        let e = p("<38>Feb 25 14:34:10 belka sshd(pam_unix)[31602]: authentication failure");
        assert_eq!(e.program, "sshd");
        let e = p("Mar 27 13:09:37 ip-10-77-20-248 sudo:   ubuntu : TTY=pts/0 ; COMMAND=/bin/ls");
        assert_eq!(
            (e.program.as_str(), e.pid, e.message.as_str()),
            ("sudo", None, "ubuntu : TTY=pts/0 ; COMMAND=/bin/ls")
        );
        // December read in early January belongs to the year before
        let jan = Clock { reference: datetime!(2027-01-02 00:00 UTC), offset: UtcOffset::UTC };
        let e = parse("Dec 31 23:59:59 h sshd[1]: x", LogFormat::Syslog, &jan).unwrap();
        assert_eq!(e.ts, Some(datetime!(2026-12-31 23:59:59 UTC)));
    }

    #[test]
    fn iso_rfc5424_journal_headerless_and_bare() {
        let e = p("2015-04-16T18:02:50.321974+00:00 host sshd[2716]: pam_unix(sshd:auth): x");
        assert_eq!((e.host.as_deref(), e.pid), (Some("host"), Some(2716)));
        assert_eq!(e.ts, Some(datetime!(2015-04-16 18:02:50.321974 UTC)));
        let e = p(
            r#"<38>1 2019-07-08T17:40:17.954167-04:00 h.example.com sshd 55555 - [a b="[x]"][c@1 d="\"]"] Failed unknown for x"#,
        );
        assert_eq!(
            (e.program.as_str(), e.pid, e.message.as_str()),
            ("sshd", Some(55555), "Failed unknown for x")
        );
        let e = p("<38>1 - - sshd - - - hello");
        assert_eq!((e.ts, e.message.as_str()), (None, "hello"));
        let e = p(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000000000","_HOSTNAME":"web01","SYSLOG_IDENTIFIER":"sshd","_PID":"42","MESSAGE":"Invalid user x from 1.2.3.4 port 5"}"#,
        );
        assert_eq!(
            (e.host.as_deref(), e.pid, e.cursor.as_deref()),
            (Some("web01"), Some(42), Some("s=1;i=2"))
        );
        let e = p(r#"{"MESSAGE":[104,105,255],"_COMM":"sshd"}"#);
        assert_eq!(e.message, "hi\u{fffd}");
        let e = p("srv sshd[13709]: error: PAM: Authentication failure for x from 1.2.3.4");
        assert_eq!((e.host.as_deref(), e.program.as_str(), e.ts), (Some("srv"), "sshd", None));
        let e = p("error: PAM: Authentication failure for x from 1.2.3.4");
        assert_eq!(
            (e.program.as_str(), e.message.as_str()),
            ("", "error: PAM: Authentication failure for x from 1.2.3.4")
        );
        let e = p("Failed password for root from 1.2.3.4 port 22 ssh2");
        assert_eq!(e.program, "");
        assert!(parse("", LogFormat::Auto, &clock()).is_none());
        assert!(parse("Feb 25 x", LogFormat::JournalJson, &clock()).is_none());
        assert!(parse("Feb 25 x", LogFormat::Rfc5424, &clock()).is_none());
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+0700"), Some(UtcOffset::from_hms(7, 0, 0).unwrap()));
        assert_eq!(parse_offset("-04:30"), Some(UtcOffset::from_hms(-4, -30, 0).unwrap()));
        assert_eq!(parse_offset("7"), None);
    }
}
