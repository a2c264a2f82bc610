//! Web-server access log lines → [`WebEvent`]s. Untrusted input: nothing
//! here panics or trusts a length.
//!
//! Recognised (`auto` picks by the line's first byte and, for IIS, by the
//! `#Fields` header seen before in the same file):
//!
//! * **Common / combined** (nginx's default `combined`, Apache's `common`,
//!   `combined`, `vhost_combined`): `[VHOST[:PORT]] CLIENT IDENT USER
//!   [dd/Mon/yyyy:HH:MM:SS +zzzz] "METHOD URI PROTO" STATUS SIZE
//!   ["REFERER" "USER-AGENT"]`, further fields ignored. Quoted fields may
//!   hold `\"` (Apache) or `\x22` (nginx) escapes.
//! * **IIS W3C extended**: space-separated fields named by the last
//!   `#Fields:` line of the file (`date time c-ip cs-method cs-uri-stem
//!   cs-uri-query sc-status sc-bytes cs(User-Agent) cs(Referer) cs-host
//!   ...`), `-` for empty, `+` for spaces in header values, times in UTC.
//! * **JSON** access logs: nginx `escape=json` objects with the usual
//!   variable names (`remote_addr`, `request` or `request_method` +
//!   `request_uri`, `status`, `body_bytes_sent`, `http_referer`,
//!   `http_user_agent`, `host`, `time_iso8601` or `time_local`), and
//!   Caddy's structured access log (`request.remote_ip`, `request.method`,
//!   `request.host`, `request.uri`, `request.headers`, `status`, `size`,
//!   `ts`).

use std::net::IpAddr;

use serde_json::Value;
use time::{
    Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, format_description::well_known::Rfc3339,
};

/// Format of an access log (`[host.web_logs] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebFormat {
    #[default]
    Auto,
    /// Common, combined and their virtual-host variants.
    Combined,
    Iis,
    Json,
}

impl WebFormat {
    pub fn parse(s: &str) -> Result<WebFormat, String> {
        match s {
            "auto" => Ok(WebFormat::Auto),
            "combined" | "common" | "vhost_combined" | "clf" => Ok(WebFormat::Combined),
            "iis" | "w3c" => Ok(WebFormat::Iis),
            "json" => Ok(WebFormat::Json),
            other => Err(format!("unknown access log format `{other}` (expected auto, combined, iis, json)")),
        }
    }
}

/// One request from an access log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebEvent {
    /// `None` when the line carries no usable time.
    pub ts: Option<OffsetDateTime>,
    /// The client as logged (an address, or a name with `HostnameLookups`).
    pub client: String,
    pub client_ip: Option<IpAddr>,
    pub method: String,
    /// Path and query as requested (not decoded).
    pub uri: String,
    pub protocol: String,
    pub status: u16,
    pub size: u64,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub vhost: Option<String>,
    /// `combined`, `iis` or `json`.
    pub format: &'static str,
}

impl WebEvent {
    /// The path without its query.
    pub fn path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        self.uri.split_once('?').map(|(_, q)| q)
    }
}

/// What a line was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(Box<WebEvent>),
    /// A W3C directive (`#Fields`, `#Software`, ...) or an empty line.
    Directive,
    Unparsed,
}

/// A parser for one log file (IIS's field list is per file).
#[derive(Debug, Clone, Default)]
pub struct WebParser {
    iis_fields: Option<Vec<String>>,
}

impl WebParser {
    pub fn new() -> WebParser {
        WebParser::default()
    }

    pub fn parse(&mut self, line: &str, format: WebFormat) -> Parsed {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Parsed::Directive;
        }
        if line.starts_with('#') && matches!(format, WebFormat::Auto | WebFormat::Iis) {
            if let Some(f) = line.strip_prefix("#Fields:") {
                self.iis_fields = Some(f.split_whitespace().map(|s| s.to_ascii_lowercase()).collect());
            }
            return Parsed::Directive;
        }
        let ev = match format {
            WebFormat::Combined => combined(line),
            WebFormat::Iis => self.iis(line),
            WebFormat::Json => json(line),
            WebFormat::Auto => {
                if line.starts_with('{') {
                    json(line)
                } else if self.iis_fields.is_some() {
                    self.iis(line).or_else(|| combined(line))
                } else {
                    combined(line)
                }
            }
        };
        match ev {
            Some(e) => Parsed::Event(Box::new(e)),
            None => Parsed::Unparsed,
        }
    }

    fn iis(&self, line: &str) -> Option<WebEvent> {
        let fields = self.iis_fields.as_ref()?;
        let values: Vec<&str> = line.split(' ').collect();
        if values.len() != fields.len() {
            return None;
        }
        let get = |name: &str| {
            fields.iter().position(|f| f == name).map(|i| values[i]).filter(|v| *v != "-" && !v.is_empty())
        };
        let client = get("c-ip")?.to_string();
        let status = get("sc-status")?.parse().ok()?;
        let stem = get("cs-uri-stem").unwrap_or("/");
        let uri = match get("cs-uri-query") {
            Some(q) => format!("{stem}?{q}"),
            None => stem.to_string(),
        };
        let ts = match (get("date"), get("time")) {
            (Some(d), Some(t)) => OffsetDateTime::parse(&format!("{d}T{t}Z"), &Rfc3339).ok(),
            _ => None,
        };
        let header = |name: &str| get(name).map(|v| v.replace('+', " "));
        Some(WebEvent {
            ts,
            client_ip: client.parse().ok(),
            client,
            method: get("cs-method").unwrap_or("-").to_string(),
            uri,
            protocol: get("cs-version").unwrap_or("").to_string(),
            status,
            size: get("sc-bytes").and_then(|s| s.parse().ok()).unwrap_or(0),
            referrer: header("cs(referer)"),
            user_agent: header("cs(user-agent)"),
            vhost: get("cs-host").map(str::to_string),
            format: "iis",
        })
    }
}

/// Reads a quoted field at the start of `s` (after optional spaces);
/// returns its unescaped value and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'x')) => {
                    let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                    match u8::from_str_radix(&hex, 16) {
                        Ok(b) if b.is_ascii() => out.push(b as char),
                        _ => {
                            out.push_str("\\x");
                            out.push_str(&hex);
                        }
                    }
                }
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(s.split_once(' ').unwrap_or((s, "")))
}

fn dash(s: String) -> Option<String> {
    (!s.is_empty() && s != "-").then_some(s)
}

/// `06/Dec/2026:10:15:32 +0700`.
fn clf_time(s: &str) -> Option<OffsetDateTime> {
    let (dt, zone) = s.split_once(' ')?;
    let mut it = dt.splitn(4, [':', '/']);
    let day: u8 = it.next()?.parse().ok()?;
    let month = match it.next()?.to_ascii_lowercase().as_str() {
        "jan" => Month::January,
        "feb" => Month::February,
        "mar" => Month::March,
        "apr" => Month::April,
        "may" => Month::May,
        "jun" => Month::June,
        "jul" => Month::July,
        "aug" => Month::August,
        "sep" => Month::September,
        "oct" => Month::October,
        "nov" => Month::November,
        "dec" => Month::December,
        _ => return None,
    };
    let year: i32 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.splitn(3, ':');
    let (h, m, sec): (u8, u8, u8) =
        (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?, hms.next()?.get(..2)?.parse().ok()?);
    let zone = zone.trim();
    let sign = match zone.as_bytes().first()? {
        b'+' => 1i8,
        b'-' => -1,
        _ => return None,
    };
    let zh: i8 = zone.get(1..3)?.parse().ok()?;
    let zm: i8 = zone.get(3..5)?.parse().ok()?;
    let offset = UtcOffset::from_hms(sign * zh, sign * zm, 0).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(h, m, sec).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset).to_offset(UtcOffset::UTC))
}

fn split_request(r: &str) -> (String, String, String) {
    let mut parts = r.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    match (parts.next(), parts.next()) {
        (Some(uri), Some(proto)) => (method, uri.to_string(), proto.to_string()),
        (Some(uri), None) => (method, uri.to_string(), String::new()),
        // not a request line (a TLS handshake on the plain port, garbage):
        // kept whole as the URI so that detectors still see it
        _ => ("-".to_string(), r.to_string(), String::new()),
    }
}

fn combined(line: &str) -> Option<WebEvent> {
    let open = line.find(" [")?;
    let head: Vec<&str> = line[..open].split(' ').filter(|t| !t.is_empty()).collect();
    let (vhost, client) = match head.as_slice() {
        [client, _ident, _user] => (None, *client),
        [vhost, client, _ident, _user] => (Some(*vhost), *client),
        // a user name with spaces is not logged by these servers
        _ => return None,
    };
    let rest = &line[open + 2..];
    let close = rest.find(']')?;
    let ts = clf_time(&rest[..close]);
    let (request, rest) = quoted(&rest[close + 1..])?;
    let (status, rest) = token(rest)?;
    let status: u16 = status.parse().ok().filter(|s| (100..1000).contains(s))?;
    let (size, rest) = token(rest).unwrap_or(("-", ""));
    let size = size.parse().unwrap_or(0);
    let (referrer, ua) = match quoted(rest) {
        Some((r, rest)) => (dash(r), quoted(rest).and_then(|(u, _)| dash(u))),
        None => (None, None),
    };
    let (method, uri, protocol) = split_request(&request);
    let vhost = vhost.map(|v| match v.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => v.to_string(),
    });
    Some(WebEvent {
        ts,
        client: client.to_string(),
        client_ip: client.parse().ok(),
        method,
        uri,
        protocol,
        status,
        size,
        referrer,
        user_agent: ua,
        vhost,
        format: "combined",
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => dash(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => text(a.first()),
        _ => None,
    }
}

fn first<'a>(o: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| o.get(*k).filter(|v| !v.is_null()))
}

fn json_time(v: Option<&Value>) -> Option<OffsetDateTime> {
    match v? {
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
        }
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| clf_time(s)),
        _ => None,
    }
}

fn json(line: &str) -> Option<WebEvent> {
    let o: Value = serde_json::from_str(line).ok()?;
    if !o.is_object() {
        return None;
    }
    // Caddy: the request is an object
    if let Some(req) = o.get("request").filter(|r| r.is_object()) {
        let client = text(first(req, &["remote_ip", "client_ip"]))
            .or_else(|| text(o.get("client_ip")))
            .or_else(|| text(req.get("remote_addr")).map(|a| strip_port(&a)))?;
        let headers = req.get("headers");
        let header = |name: &str| {
            headers.and_then(|h| h.as_object()).and_then(|h| {
                h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| text(Some(v)))
            })
        };
        return Some(WebEvent {
            ts: json_time(o.get("ts")),
            client_ip: client.parse().ok(),
            client,
            method: text(req.get("method")).unwrap_or_else(|| "-".into()),
            uri: text(req.get("uri")).unwrap_or_else(|| "/".into()),
            protocol: text(req.get("proto")).unwrap_or_default(),
            status: o.get("status").and_then(|s| text(Some(s))).and_then(|s| s.parse().ok())?,
            size: o.get("size").and_then(Value::as_u64).unwrap_or(0),
            referrer: header("referer"),
            user_agent: header("user-agent"),
            vhost: text(req.get("host")).map(|h| strip_port(&h)),
            format: "json",
        });
    }
    let client = text(first(&o, &["remote_addr", "client_ip", "clientip", "remote_ip", "ip", "c-ip"]))?;
    let (method, uri, protocol) = match text(o.get("request")) {
        Some(r) => split_request(&r),
        None => (
            text(first(&o, &["request_method", "method"])).unwrap_or_else(|| "-".into()),
            text(first(&o, &["request_uri", "uri", "url", "path"]))?,
            text(first(&o, &["server_protocol", "protocol"])).unwrap_or_default(),
        ),
    };
    Some(WebEvent {
        ts: json_time(first(&o, &["time_iso8601", "time_local", "@timestamp", "timestamp", "time", "ts"])),
        client_ip: client.parse().ok(),
        client,
        method,
        uri,
        protocol,
        status: text(o.get("status")).and_then(|s| s.parse().ok())?,
        size: text(first(&o, &["body_bytes_sent", "bytes_sent", "size", "bytes"]))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        referrer: text(first(&o, &["http_referer", "http_referrer", "referer", "referrer"])),
        user_agent: text(first(&o, &["http_user_agent", "user_agent", "agent"])),
        vhost: text(first(&o, &["host", "server_name", "http_host", "vhost"])),
        format: "json",
    })
}

fn strip_port(a: &str) -> String {
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        return sa.ip().to_string();
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => a.to_string(),
    }
}

/// Whether a line looks like an access log line of any known format.
pub fn sniff(line: &str) -> bool {
    let mut p = WebParser::new();
    matches!(p.parse(line, WebFormat::Auto), Parsed::Event(_))
        || line.starts_with("#Software: Microsoft Internet Information Services")
        || line.starts_with("#Fields: date time")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(p: &mut WebParser, line: &str) -> WebEvent {
        match p.parse(line, WebFormat::Auto) {
            Parsed::Event(e) => *e,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn combined_common_and_vhost() {
        let mut p = WebParser::new();
        let e = event(
            &mut p,
            r#"203.0.113.9 - - [06/Dec/2026:10:15:32 +0700] "GET /tin-tuc?q=ngh%E1%BB%8B+%C4%91%E1%BB%8Bnh HTTP/1.1" 200 5120 "https://portal.example.gov.vn/" "Mozilla/5.0 (X11; Linux x86_64)""#,
        );
        assert_eq!(e.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!((e.method.as_str(), e.path(), e.status, e.size), ("GET", "/tin-tuc", 200, 5120));
        assert_eq!(e.query(), Some("q=ngh%E1%BB%8B+%C4%91%E1%BB%8Bnh"));
        assert_eq!(e.ts.unwrap().unix_timestamp(), 1_796_526_932);
        assert_eq!(e.user_agent.as_deref(), Some("Mozilla/5.0 (X11; Linux x86_64)"));
        let e = event(&mut p, r#"10.0.0.5 - bob [06/Dec/2026:03:15:32 +0000] "POST /login HTTP/1.1" 401 -"#);
        assert_eq!((e.status, e.size, e.referrer.clone()), (401, 0, None));
        let e = event(
            &mut p,
            r#"portal.example.gov.vn:443 198.51.100.4 - - [06/Dec/2026:03:15:32 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8.0""#,
        );
        assert_eq!((e.vhost.as_deref(), e.client.as_str()), (Some("portal.example.gov.vn"), "198.51.100.4"));
        // escapes of both servers; a request that is not one
        let e = event(
            &mut p,
            r#"198.51.100.4 - - [06/Dec/2026:03:15:32 +0000] "GET /?a=\"x\x22 HTTP/1.1" 200 1 "-" "a\"b""#,
        );
        assert_eq!((e.uri.as_str(), e.user_agent.as_deref()), ("/?a=\"x\"", Some("a\"b")));
        let e =
            event(&mut p, r#"198.51.100.4 - - [06/Dec/2026:03:15:32 +0000] "\x16\x03\x01" 400 157 "-" "-""#);
        assert_eq!((e.method.as_str(), e.status), ("-", 400));
        assert_eq!(p.parse("not a log line", WebFormat::Auto), Parsed::Unparsed);
        assert_eq!(p.parse(r#"1.2.3.4 - - [x] "GET / HTTP/1.1" abc 1"#, WebFormat::Auto), Parsed::Unparsed);
    }

    #[test]
    fn iis_follows_its_fields_header() {
        let mut p = WebParser::new();
        assert_eq!(
            p.parse("#Software: Microsoft Internet Information Services 10.0", WebFormat::Auto),
            Parsed::Directive
        );
        p.parse("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken", WebFormat::Auto);
        let e = event(
            &mut p,
            "2026-12-06 03:15:32 10.0.0.2 GET /default.aspx id=1%27 443 - 203.0.113.7 Mozilla/5.0+(Windows+NT+10.0) - 500 0 0 15",
        );
        assert_eq!(e.uri, "/default.aspx?id=1%27");
        assert_eq!((e.client.as_str(), e.status), ("203.0.113.7", 500));
        assert_eq!(e.user_agent.as_deref(), Some("Mozilla/5.0 (Windows NT 10.0)"));
        assert_eq!(e.ts.unwrap().unix_timestamp(), 1_796_526_932);
        assert_eq!(p.parse("2026-12-06 03:15:32 too few", WebFormat::Auto), Parsed::Unparsed);
    }

    #[test]
    fn json_nginx_and_caddy() {
        let mut p = WebParser::new();
        let e = event(
            &mut p,
            r#"{"time_iso8601":"2026-12-06T10:15:32+07:00","remote_addr":"203.0.113.9","request":"GET /a?b=1 HTTP/2.0","status":"404","body_bytes_sent":"12","http_referer":"","http_user_agent":"sqlmap/1.7.2#stable","host":"dvc.example.gov.vn"}"#,
        );
        assert_eq!((e.status, e.path(), e.vhost.as_deref()), (404, "/a", Some("dvc.example.gov.vn")));
        assert_eq!((e.referrer.clone(), e.ts.unwrap().unix_timestamp()), (None, 1_796_526_932));
        let e = event(
            &mut p,
            r#"{"level":"info","ts":1796526932.5,"logger":"http.log.access","msg":"handled request","request":{"remote_ip":"198.51.100.3","remote_port":"5555","proto":"HTTP/1.1","method":"POST","host":"portal.example:443","uri":"/login","headers":{"User-Agent":["hydra"],"Referer":["-"]}},"status":401,"size":23}"#,
        );
        assert_eq!(
            (e.client.as_str(), e.method.as_str(), e.status, e.size),
            ("198.51.100.3", "POST", 401, 23)
        );
        assert_eq!((e.user_agent.as_deref(), e.vhost.as_deref()), (Some("hydra"), Some("portal.example")));
        assert_eq!(p.parse(r#"{"remote_addr": 1}"#, WebFormat::Auto), Parsed::Unparsed);
        assert_eq!(p.parse("{broken", WebFormat::Json), Parsed::Unparsed);
    }
}
