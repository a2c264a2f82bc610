//! Firewall log messages → [`FirewallEvent`]s, one parser per vendor.
//!
//! The message is what follows the syslog header ([`crate::host::logfmt`]);
//! each parser first decides whether the message is its vendor's
//! ([`Parsed::NotFirewall`] otherwise) and then whether it could read it
//! ([`Parsed::Malformed`]: counted as unparsed by the pipeline). Untrusted
//! input: nothing here panics, indexes without checking or trusts a
//! length.
//!
//! | vendor | recognised by | action from |
//! |--------|---------------|-------------|
//! | Linux netfilter `LOG`/`NFLOG` (kernel log, journal, ulogd) | `IN=` … `SRC=` … `DST=` | words of the log prefix (`[UFW BLOCK]`, `nft drop: `, `REJECT`), else `log` |
//! | pfSense / OPNsense `filterlog` | program `filterlog`, or a CSV message `N,…,match,block,in,4,…` | the CSV `action` field (`block`, `pass`, `reject`) |
//! | FortiGate | `type="traffic"` and `srcip=` | `action=` (`deny`, `accept`, `close`, `timeout`, …) |
//! | Cisco ASA / FTD | `%ASA-n-NNNNNN:` | the message id (106001, 106006, 106007, 106014, 106015, 106023, 106100, 710003: deny; 302013, 302015: allow) |
//! | MikroTik RouterOS | `CHAIN: in:IF out:IF, … proto P, A:p->B:p` | words of the log prefix, else `log` |
//!
//! A netfilter or MikroTik line whose prefix names no action is a `log`
//! event: it is reported but is not a denied connection for the
//! detectors (the `LOG` target does not decide the packet's fate).

use std::net::IpAddr;

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// What the firewall did with the packet or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Drop,
    Reject,
    /// Logged without saying what happened.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Log => "log",
        }
    }

    /// Denied, dropped or rejected.
    pub fn is_denied(self) -> bool {
        matches!(self, Action::Deny | Action::Drop | Action::Reject)
    }

    /// From words of a log prefix or an action field (any case).
    pub fn from_words(text: &str) -> Option<Action> {
        let t = text.to_ascii_lowercase();
        let has = |w: &[&str]| w.iter().any(|w| t.contains(w));
        if has(&["reject"]) {
            Some(Action::Reject)
        } else if has(&["drop"]) {
            Some(Action::Drop)
        } else if has(&["block", "deny", "denied", "refuse"]) {
            Some(Action::Deny)
        } else if has(&["accept", "allow", "pass", "permit"]) {
            Some(Action::Allow)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Netfilter,
    Filterlog,
    Fortigate,
    CiscoAsa,
    Mikrotik,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Netfilter => "netfilter",
            Vendor::Filterlog => "filterlog",
            Vendor::Fortigate => "fortigate",
            Vendor::CiscoAsa => "cisco-asa",
            Vendor::Mikrotik => "mikrotik",
        }
    }
}

/// One firewall log message, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallEvent {
    pub ts: OffsetDateTime,
    pub vendor: Vendor,
    pub action: Action,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Lower case: `tcp`, `udp`, `icmp`, `ipv6-icmp`, or the number.
    pub proto: String,
    /// TCP flags as logged (`SYN`, `S`, `SA`...), when logged.
    pub tcp_flags: Option<String>,
    /// Rule, policy or access list that decided.
    pub rule: Option<String>,
    /// The log prefix (netfilter, MikroTik) or message id (ASA).
    pub label: Option<String>,
    /// The device as it names itself (syslog host, `devname`).
    pub device: Option<String>,
}

impl FirewallEvent {
    /// Whether this is the opening of a connection (a probe when denied):
    /// TCP with SYN and no ACK, or flags unknown; any other protocol.
    pub fn is_connection_attempt(&self) -> bool {
        if self.proto != "tcp" {
            return true;
        }
        match &self.tcp_flags {
            None => true,
            Some(f) => {
                let f = f.to_ascii_uppercase();
                if !f.is_empty() && f.len() <= 8 && f.bytes().all(|b| b"SAFRPUEW".contains(&b)) {
                    // pf's letters: S (SYN), A (ACK), ...
                    f.contains('S') && !f.contains('A')
                } else {
                    let words: Vec<&str> = f.split([' ', ',']).collect();
                    words.contains(&"SYN") && !words.contains(&"ACK")
                }
            }
        }
    }
}

/// The result of reading one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(Box<FirewallEvent>),
    /// Not a firewall message (another program's, or a firewall's message
    /// that is not about traffic).
    NotFirewall,
    /// A firewall message this parser could not read.
    Malformed,
}

/// Where the message came from: its syslog header.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub program: &'a str,
    pub host: Option<&'a str>,
    /// The header's time, else now.
    pub ts: OffsetDateTime,
    /// The header had no time (the message's own is preferred).
    pub ts_missing: bool,
    /// Offset of local times written without one.
    pub offset: UtcOffset,
}

/// Reads a message of any supported vendor.
pub fn parse(message: &str, cx: &Context<'_>) -> Parsed {
    let message = message.trim();
    if cx.program == "filterlog" || looks_filterlog(message) {
        return filterlog(message, cx);
    }
    if let Some(i) = message.find("%ASA-").or_else(|| message.find("%FTD-")) {
        return asa(&message[i..], cx);
    }
    if (message.contains("type=\"traffic\"") || message.contains("type=traffic"))
        && message.contains("srcip=")
    {
        return fortigate(message, cx);
    }
    if message.contains("IN=") && message.contains(" SRC=") && message.contains(" DST=") {
        return netfilter(message, cx);
    }
    if message.contains(" in:") && message.contains(" out:") && message.contains("->") {
        return mikrotik(message, cx);
    }
    Parsed::NotFirewall
}

fn ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = s.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    })
}

fn port(s: &str) -> Option<u16> {
    s.trim().parse().ok()
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 128).then(|| s.to_string())
}

fn proto_name(s: &str) -> String {
    match s.trim().to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" | "icmpv6" | "ipv6-icmp" | "icmp6" => "ipv6-icmp".into(),
        other => other.chars().take(16).collect(),
    }
}

fn event(cx: &Context<'_>, vendor: Vendor, action: Action, src: IpAddr, dst: IpAddr) -> FirewallEvent {
    FirewallEvent {
        ts: cx.ts,
        vendor,
        action,
        in_iface: None,
        out_iface: None,
        src,
        dst,
        src_port: None,
        dst_port: None,
        proto: String::new(),
        tcp_flags: None,
        rule: None,
        label: None,
        device: cx.host.and_then(nonempty),
    }
}

/// Netfilter `LOG` target (and nftables `log`, ulogd's `LOGEMU`):
/// `[PREFIX]IN=eth0 OUT= MAC=... SRC=a DST=b LEN=60 ... PROTO=TCP SPT=1
/// DPT=2 WINDOW=... RES=0x00 SYN URGP=0`. The kernel's own `[ 12.34]`
/// uptime stamp may come first.
fn netfilter(message: &str, cx: &Context<'_>) -> Parsed {
    let Some(at) = message.find("IN=") else { return Parsed::NotFirewall };
    let mut prefix = message[..at].trim();
    // the kernel's uptime stamp `[12345.678901]`
    if prefix.starts_with('[')
        && let Some(end) = prefix.find(']')
        && prefix[1..end].trim().bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        prefix = prefix[end + 1..].trim();
    }
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut flags: Vec<&str> = Vec::new();
    let mut after_proto = false;
    for tok in message[at..].split(' ').filter(|t| !t.is_empty()) {
        match tok.split_once('=') {
            Some((k, v)) => {
                if k == "PROTO" {
                    after_proto = true;
                }
                fields.push((k, v));
            }
            None if after_proto
                && matches!(tok, "CWR" | "ECE" | "URG" | "ACK" | "PSH" | "RST" | "SYN" | "FIN") =>
            {
                flags.push(tok)
            }
            None => {}
        }
    }
    let get = |k: &str| fields.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v);
    let (Some(src), Some(dst)) = (get("SRC").and_then(ip), get("DST").and_then(ip)) else {
        return Parsed::Malformed;
    };
    let action = Action::from_words(prefix).unwrap_or(Action::Log);
    let mut e = event(cx, Vendor::Netfilter, action, src, dst);
    e.in_iface = get("IN").and_then(nonempty);
    e.out_iface = get("OUT").and_then(nonempty);
    e.proto = get("PROTO").map(proto_name).unwrap_or_default();
    e.src_port = get("SPT").and_then(port);
    e.dst_port = get("DPT").and_then(port);
    if e.proto == "tcp" {
        e.tcp_flags = (!flags.is_empty()).then(|| flags.join(" "));
    }
    e.label = nonempty(prefix);
    Parsed::Event(Box::new(e))
}

/// pfSense / OPNsense `filterlog` CSV (Netgate, "Raw Filter Log Format",
/// docs.netgate.com/pfsense/en/latest/monitoring/raw-filter-log-format.html;
/// OPNsense `ports/opnsense/filterlog/files/description.txt`):
///
/// * common: rule, sub-rule, anchor, tracker, interface, reason, action,
///   direction, IP version;
/// * IPv4: TOS, ECN, TTL, id, offset, flags, protocol id, protocol text;
///   IPv6: class, flow label, hop limit, protocol text, protocol id;
/// * both: length, source, destination; then for TCP and UDP source port,
///   destination port, data length; for TCP its flags, sequence, ack,
///   window, urg, options.
fn looks_filterlog(message: &str) -> bool {
    let mut it = message.split(',');
    let rule_is_number = it.next().is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
    rule_is_number
        && message.split(',').nth(5).is_some_and(|r| {
            matches!(r, "match" | "state" | "bad-offset" | "fragment" | "short" | "normalize" | "memory")
        })
        && message.split(',').nth(8).is_some_and(|v| v == "4" || v == "6")
}

fn filterlog(message: &str, cx: &Context<'_>) -> Parsed {
    let f: Vec<&str> = message.split(',').collect();
    let g = |i: usize| f.get(i).copied().unwrap_or("");
    let action = match g(6) {
        "block" => Action::Deny,
        "pass" => Action::Allow,
        "reject" => Action::Reject,
        "" => return Parsed::Malformed,
        _ => Action::Log,
    };
    // (protocol text, first address field)
    let (proto, at) = match g(8) {
        "4" => (g(16), 18),
        "6" => (g(12), 15),
        _ => return Parsed::Malformed,
    };
    let (Some(src), Some(dst)) = (ip(g(at)), ip(g(at + 1))) else { return Parsed::Malformed };
    let mut e = event(cx, Vendor::Filterlog, action, src, dst);
    e.proto = proto_name(proto);
    if matches!(e.proto.as_str(), "tcp" | "udp") {
        e.src_port = port(g(at + 2));
        e.dst_port = port(g(at + 3));
        if e.proto == "tcp" {
            e.tcp_flags = nonempty(g(at + 5));
        }
    }
    let iface = nonempty(g(4));
    if g(7) == "out" {
        e.out_iface = iface;
    } else {
        e.in_iface = iface;
    }
    e.rule = nonempty(g(3)).or_else(|| nonempty(g(0)));
    Parsed::Event(Box::new(e))
}

/// `key=value` and `key="quoted value"` pairs.
fn kv_pairs(message: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = message.trim_start();
    while !rest.is_empty() && out.len() < 256 {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let key = key.rsplit(' ').next().unwrap_or(key);
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(' ') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

/// FortiGate traffic logs (Fortinet, "FortiOS Log Message Reference",
/// traffic log fields): `date=2019-05-10 time=11:37:47 devname="FGT"
/// type="traffic" subtype="forward" srcip=... srcport=... srcintf="port1"
/// dstip=... dstport=... dstintf="port2" proto=6 action="deny"
/// policyid=0 ...`.
fn fortigate(message: &str, cx: &Context<'_>) -> Parsed {
    let kv = kv_pairs(message);
    let get = |k: &str| kv.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v);
    let (Some(src), Some(dst)) = (get("srcip").and_then(ip), get("dstip").and_then(ip)) else {
        return Parsed::Malformed;
    };
    let action = match get("action").unwrap_or("") {
        "deny" | "blocked" => Action::Deny,
        "drop" => Action::Drop,
        "reject" => Action::Reject,
        "accept" | "close" | "timeout" | "server-rst" | "client-rst" | "start" | "ip-conn" | "dns"
        | "passthrough" => Action::Allow,
        other => Action::from_words(other).unwrap_or(Action::Log),
    };
    let mut e = event(cx, Vendor::Fortigate, action, src, dst);
    e.src_port = get("srcport").and_then(port);
    e.dst_port = get("dstport").and_then(port);
    e.proto = get("proto").map(proto_name).unwrap_or_default();
    e.in_iface = get("srcintf").and_then(nonempty);
    e.out_iface = get("dstintf").and_then(nonempty);
    e.rule = get("policyid").and_then(nonempty);
    if let Some(d) = get("devname").and_then(nonempty) {
        e.device = Some(d);
    }
    if cx.ts_missing
        && let (Some(d), Some(t)) = (get("date"), get("time"))
        && let Some(ts) = local_date_time(d, t, cx.offset)
    {
        e.ts = ts;
    }
    Parsed::Event(Box::new(e))
}

fn local_date_time(d: &str, t: &str, offset: UtcOffset) -> Option<OffsetDateTime> {
    let mut di = d.split('-');
    let (y, m, dd): (i32, u8, u8) =
        (di.next()?.parse().ok()?, di.next()?.parse().ok()?, di.next()?.parse().ok()?);
    let mut ti = t.split(':');
    let (h, mi, s): (u8, u8, u8) =
        (ti.next()?.parse().ok()?, ti.next()?.parse().ok()?, ti.next()?.parse().ok()?);
    let date = Date::from_calendar_date(y, time::Month::try_from(m).ok()?, dd).ok()?;
    Some(PrimitiveDateTime::new(date, Time::from_hms(h, mi, s).ok()?).assume_offset(offset))
}

/// `IFACE:ADDR/PORT` or `ADDR/PORT` or `IFACE:ADDR` (ASA endpoints).
fn asa_endpoint(s: &str) -> Option<(Option<String>, IpAddr, Option<u16>)> {
    let s = s.trim().trim_end_matches(',');
    let (iface, rest) = match s.rsplit_once(':') {
        // an IPv6 address has colons too: the interface is before the first
        Some(_) if ip(s.split('/').next().unwrap_or("")).is_some() => (None, s),
        Some(_) => {
            let (i, r) = s.split_once(':')?;
            (Some(i.to_string()), r)
        }
        None => (None, s),
    };
    let (addr, p) = match rest.split_once('/') {
        Some((a, p)) => (a, port(p)),
        None => (rest, None),
    };
    Some((iface, ip(addr)?, p))
}

/// `IFACE/ADDR(PORT)` (message 106100).
fn asa_paren_endpoint(s: &str) -> Option<(Option<String>, IpAddr, Option<u16>)> {
    let (iface, rest) = s.split_once('/')?;
    let (addr, p) = rest.split_once('(')?;
    Some((nonempty(iface), ip(addr)?, port(p.trim_end_matches(')'))))
}

/// Cisco ASA and FTD (Cisco, "Cisco Secure Firewall ASA Series Syslog
/// Messages"): the access messages 106001, 106006, 106007, 106014,
/// 106015, 106023, 106100, 710003 and the connection messages 302013 and
/// 302015. Other ASA messages are not traffic: [`Parsed::NotFirewall`].
fn asa(message: &str, cx: &Context<'_>) -> Parsed {
    // %ASA-4-106023: text
    let Some((tag, text)) = message.split_once(": ") else { return Parsed::Malformed };
    let id = tag.rsplit('-').next().unwrap_or("");
    let words: Vec<&str> = text.split_whitespace().collect();
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    let find = |word: &str| words.iter().position(|x| *x == word);
    let label = Some(tag.trim_start_matches('%').to_string());
    let (action, proto, src, dst, rule, flags) = match id {
        // Deny tcp src outside:1.2.3.4/5 dst inside:6.7.8.9/22 by access-group "acl" [0x0, 0x0]
        "106023" => {
            let (Some(s), Some(d)) = (find("src"), find("dst")) else { return Parsed::Malformed };
            let rule = find("access-group").map(|i| w(i + 1).trim_matches('"').to_string());
            (Action::Deny, w(1), asa_endpoint(w(s + 1)), asa_endpoint(w(d + 1)), rule, None)
        }
        // access-list acl denied tcp outside/1.2.3.4(5) -> inside/6.7.8.9(22) hit-cnt 1 ...
        "106100" => {
            let Some(arrow) = find("->") else { return Parsed::Malformed };
            let action = match w(2) {
                "denied" => Action::Deny,
                "permitted" => Action::Allow,
                _ => Action::Log,
            };
            let rule = nonempty(w(1));
            (action, w(3), asa_paren_endpoint(w(arrow - 1)), asa_paren_endpoint(w(arrow + 1)), rule, None)
        }
        // Inbound TCP connection denied from 1.2.3.4/5 to 6.7.8.9/22 flags SYN on interface outside
        // Deny inbound UDP from 1.2.3.4/5 to 6.7.8.9/53 on interface outside (106006)
        // Deny TCP (no connection) from 1.2.3.4/5 to 6.7.8.9/22 flags RST on interface outside (106015)
        "106001" | "106006" | "106007" | "106014" | "106015" => {
            let (Some(f), Some(t)) = (find("from"), find("to")) else { return Parsed::Malformed };
            let proto = words
                .iter()
                .find(|x| matches!(x.to_ascii_lowercase().as_str(), "tcp" | "udp" | "icmp"))
                .copied()
                .unwrap_or("");
            let flags = find("flags").map(|i| w(i + 1).to_string());
            // 106015: a packet of no connection (ACK, RST), not a probe
            let flags = if id == "106015" { Some(flags.unwrap_or_else(|| "ACK".into())) } else { flags };
            (Action::Deny, proto, asa_endpoint(w(f + 1)), asa_endpoint(w(t + 1)), None, flags)
        }
        // TCP access denied by ACL from 1.2.3.4/5 to outside:6.7.8.9/22
        "710003" => {
            let (Some(f), Some(t)) = (find("from"), find("to")) else { return Parsed::Malformed };
            (Action::Deny, w(0), asa_endpoint(w(f + 1)), asa_endpoint(w(t + 1)), None, None)
        }
        // Built inbound TCP connection 123 for outside:1.2.3.4/5 (1.2.3.4/5) to inside:10.0.0.1/22 (2.2.2.2/22)
        // (outbound: the `to` side opened the connection)
        "302013" | "302015" => {
            let (Some(f), Some(t)) = (find("for"), find("to")) else { return Parsed::Malformed };
            let (a, b) = (asa_endpoint(w(f + 1)), asa_endpoint(w(t + 1)));
            let (src, dst) = if w(1) == "outbound" { (b, a) } else { (a, b) };
            (Action::Allow, w(2), src, dst, None, None)
        }
        _ => return Parsed::NotFirewall,
    };
    let (Some((in_if, src, sport)), Some((out_if, dst, dport))) = (src, dst) else {
        return Parsed::Malformed;
    };
    let mut e = event(cx, Vendor::CiscoAsa, action, src, dst);
    e.in_iface = in_if;
    e.out_iface = out_if;
    e.src_port = sport;
    e.dst_port = dport;
    e.proto = proto_name(proto);
    e.rule = rule.filter(|r| !r.is_empty());
    e.tcp_flags = flags;
    e.label = label;
    Parsed::Event(Box::new(e))
}

/// `ADDR:PORT`, `[V6]:PORT` or `ADDR`.
fn addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = s.trim();
    if let Some(a) = ip(s) {
        return Some((a, None));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once("]:")?;
        return Some((ip(a)?, port(p)));
    }
    let (a, p) = s.rsplit_once(':')?;
    Some((ip(a)?, port(p)))
}

/// MikroTik RouterOS firewall rules with `log=yes` (MikroTik, "Firewall
/// and QoS case studies / Logging"): `[TOPICS ][PREFIX ]CHAIN: in:IF
/// out:IF, [src-mac MAC, ]proto TCP (SYN), A:p->B:p, [NAT ...,] len N`.
fn mikrotik(message: &str, cx: &Context<'_>) -> Parsed {
    let Some(at) = message.find(": in:") else { return Parsed::NotFirewall };
    let head = &message[..at];
    let (before, chain) = match head.rsplit_once(' ') {
        Some((b, c)) => (b.trim(), c),
        None => ("", head),
    };
    if chain.is_empty() || chain.len() > 64 {
        return Parsed::NotFirewall;
    }
    // topics (`firewall,info`) then the rule's prefix
    let prefix = match before.split_once(' ') {
        Some((t, p)) if t.contains(',') && t.starts_with("firewall") => p.trim(),
        _ if before.contains(',') && before.starts_with("firewall") && !before.contains(' ') => "",
        _ => before,
    };
    let body = &message[at + 2..];
    let parts: Vec<&str> = body.split(", ").collect();
    let ifaces = parts.first().copied().unwrap_or("");
    let (in_if, out_if) = match ifaces.split_once(" out:") {
        Some((i, o)) => (i.trim_start_matches("in:"), o),
        None => return Parsed::Malformed,
    };
    let proto_part = parts.iter().find(|p| p.starts_with("proto "));
    let Some(flow) = parts.iter().find(|p| p.contains("->") && !p.starts_with("NAT")) else {
        return Parsed::Malformed;
    };
    let Some((a, b)) = flow.split_once("->") else { return Parsed::Malformed };
    let (Some((src, sport)), Some((dst, dport))) = (addr_port(a), addr_port(b)) else {
        return Parsed::Malformed;
    };
    let action = Action::from_words(prefix).unwrap_or(Action::Log);
    let mut e = event(cx, Vendor::Mikrotik, action, src, dst);
    let unknown = |s: &str| if s.starts_with("(unknown") { None } else { nonempty(s) };
    e.in_iface = unknown(in_if);
    e.out_iface = unknown(out_if);
    e.src_port = sport;
    e.dst_port = dport;
    if let Some(p) = proto_part {
        let p = &p["proto ".len()..];
        let (name, flags) = match p.split_once(" (") {
            Some((n, f)) => (n, Some(f.trim_end_matches(')'))),
            None => (p, None),
        };
        e.proto = proto_name(name);
        if e.proto == "tcp" {
            e.tcp_flags = flags.map(|f| f.replace(',', " "));
        }
    }
    e.rule = nonempty(chain);
    e.label = nonempty(prefix);
    Parsed::Event(Box::new(e))
}
