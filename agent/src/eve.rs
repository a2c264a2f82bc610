//! EVE JSON records, compatible with Suricata's `eve.json` so that jq
//! pipelines, EveBox and Elastic ingest pipelines work unchanged.
//!
//! Our own fields live in the `canhgac` object. The collector fills in
//! `canhgac.agent_id`, `canhgac.agency` and `canhgac.hostname` from the
//! agent's certificate; the agent never asserts its own identity.

use std::net::IpAddr;

use canhgac_proto::timefmt;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

use crate::{
    app::{http::HttpTx, ssh::SshState, tls},
    decode::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Packet, proto_name},
    dns,
    flow::{Dir, EndReason, Flow},
};

/// Signature ids of built-in detections, in the reserved range of
/// `canhgac_proto::sid` (rules may not use it).
pub mod sid {
    pub const IOC_DEST_IP: u64 = 9_000_001;
    pub const IOC_SRC_IP: u64 = 9_000_002;
    pub const IOC_DNS_QUERY: u64 = 9_000_003;
    pub const IOC_TLS_SNI: u64 = 9_000_004;
    pub const IOC_HTTP_HOST: u64 = 9_000_005;
    pub const IOC_URL: u64 = 9_000_006;
    pub const IOC_JA3: u64 = 9_000_007;
    pub const IOC_IP_PORT: u64 = 9_000_008;
    pub const PORTSCAN_VERTICAL: u64 = 9_000_101;
    pub const PORTSCAN_HORIZONTAL: u64 = 9_000_102;
    pub const BRUTEFORCE: u64 = 9_000_111;
    pub const DNS_TUNNEL: u64 = 9_000_121;
    pub const ICMP_TUNNEL: u64 = 9_000_131;
    pub const BEACON: u64 = 9_000_141;
    // host sensor: 9000200-9000299
    pub const AUTH_BRUTEFORCE: u64 = 9_000_201;
    pub const AUTH_SPRAY: u64 = 9_000_202;
    pub const AUTH_SUCCESS_AFTER_FAILURES: u64 = 9_000_203;
    pub const PRIVILEGED_ACCOUNT_CHANGE: u64 = 9_000_204;
    pub const AUTH_ROOT_LOGIN: u64 = 9_000_205;
    pub const FIM: u64 = 9_000_211;
    pub const DEFACEMENT: u64 = 9_000_212;
    pub const WEBSHELL: u64 = 9_000_213;
    pub const NEW_LISTENER: u64 = 9_000_221;
    pub const SUSPICIOUS_PROCESS: u64 = 9_000_222;
    pub const WEB_ATTACK: u64 = 9_000_231;
    pub const WEB_SCAN: u64 = 9_000_232;
    pub const WEB_BRUTEFORCE: u64 = 9_000_233;
    pub const WEBSHELL_ACCESS: u64 = 9_000_234;
    // firewall logs
    pub const FIREWALL_PORTSCAN: u64 = 9_000_251;
    pub const FIREWALL_SWEEP: u64 = 9_000_252;
    pub const FIREWALL_IOC: u64 = 9_000_253;
    pub const FIREWALL_ALLOWED_AFTER_DENIED: u64 = 9_000_254;
    // Windows security events
    pub const WINDOWS_LOG_CLEARED: u64 = 9_000_261;
    pub const WINDOWS_SERVICE_INSTALLED: u64 = 9_000_262;
    // data protection: 9000300-9000399
    pub const SECRET_MARKER: u64 = 9_000_301;
}

/// Which event types to emit besides alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EveTypes {
    pub alert: bool,
    pub flow: bool,
    pub dns: bool,
    pub tls: bool,
    pub http: bool,
    pub ssh: bool,
    /// Host sensor: one `auth` event per interpreted log line.
    pub auth: bool,
    /// Host sensor: one `fim` event per file change.
    pub fim: bool,
    /// Firewall logs: one `firewall` event per interpreted message.
    pub firewall: bool,
}

impl Default for EveTypes {
    fn default() -> Self {
        EveTypes {
            alert: true,
            flow: false,
            dns: false,
            tls: false,
            http: false,
            ssh: false,
            auth: false,
            fim: false,
            firewall: false,
        }
    }
}

impl EveTypes {
    /// `alert,flow,dns,tls,http,ssh,auth,fim,firewall` (any subset).
    pub fn parse(list: &str) -> Result<EveTypes, String> {
        let mut t = EveTypes { alert: false, ..EveTypes::default() };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "alert" => t.alert = true,
                "flow" => t.flow = true,
                "dns" => t.dns = true,
                "tls" => t.tls = true,
                "http" => t.http = true,
                "ssh" => t.ssh = true,
                "auth" => t.auth = true,
                "fim" => t.fim = true,
                "firewall" => t.firewall = true,
                other => {
                    return Err(format!(
                        "unknown EVE type `{other}` (expected alert, flow, dns, tls, http, ssh, auth, fim, firewall)"
                    ));
                }
            }
        }
        Ok(t)
    }
}

/// Direction-independent flow key bytes: protocol, then the two endpoints
/// in a fixed order.
pub fn flow_key(p: &Packet<'_>) -> Vec<u8> {
    let a = (p.src, p.sport);
    let b = (p.dst, p.dport);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut k = vec![p.proto];
    for (ip, port) in [lo, hi] {
        match ip {
            IpAddr::V4(v4) => k.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => k.extend_from_slice(&v6.octets()),
        }
        k.extend_from_slice(&port.to_be_bytes());
    }
    k
}

/// A flow id for the flow starting with `p` (both directions share it),
/// within 2^53 so that JavaScript consumers read it exactly.
pub fn flow_id(p: &Packet<'_>) -> u64 {
    let mut h = sha2::Sha256::new();
    h.update(flow_key(p));
    h.update(timefmt::micros(p.ts).to_be_bytes());
    let h = h.finalize();
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) & ((1 << 53) - 1)
}

static COMMUNITY_ID_SEED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Sets the Community ID seed for this process (`[eve] community_id_seed`);
/// every sensor of a deployment must use the same one.
pub fn set_community_id_seed(seed: u16) {
    COMMUNITY_ID_SEED.store(seed, std::sync::atomic::Ordering::Relaxed);
}

pub fn community_id(p: &Packet<'_>) -> Option<String> {
    let ports = matches!(p.proto, PROTO_TCP | PROTO_UDP | 132);
    let (sport, dport) = match (p.proto, p.icmp) {
        (PROTO_ICMP | PROTO_ICMPV6, Some((t, c))) => (Some(u16::from(t)), Some(u16::from(c))),
        _ if ports => (Some(p.sport), Some(p.dport)),
        _ => (None, None),
    };
    let seed = COMMUNITY_ID_SEED.load(std::sync::atomic::Ordering::Relaxed);
    community_id::calculate_community_id(seed, p.src, p.dst, sport, dport, p.proto, Default::default()).ok()
}

fn ports_of(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP)
}

/// Fields every packet-based record starts with (the packet's endpoints).
pub fn base(p: &Packet<'_>, event_type: &str, flow: Option<&Flow>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), timefmt::eve(p.ts).into());
    m.insert("flow_id".into(), flow.map(|f| f.id).unwrap_or_else(|| flow_id(p)).into());
    m.insert("event_type".into(), event_type.into());
    m.insert("src_ip".into(), p.src.to_string().into());
    if ports_of(p.proto) {
        m.insert("src_port".into(), p.sport.into());
    }
    m.insert("dest_ip".into(), p.dst.to_string().into());
    if ports_of(p.proto) {
        m.insert("dest_port".into(), p.dport.into());
    }
    m.insert("proto".into(), proto_name(p.proto).into());
    if let Some((t, c)) = p.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    let cid = flow.and_then(|f| f.community_id.clone()).or_else(|| community_id(p));
    if let Some(id) = cid {
        m.insert("community_id".into(), id.into());
    }
    if let Some(f) = flow {
        let app = f.app.proto();
        if app != crate::app::Proto::Unknown {
            m.insert("app_proto".into(), app.name().into());
        }
    }
    m
}

/// Fields of a record about a whole flow (client as source).
pub fn flow_base(f: &Flow, event_type: &str, ts: time::OffsetDateTime) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), timefmt::eve(ts).into());
    m.insert("flow_id".into(), f.id.into());
    m.insert("event_type".into(), event_type.into());
    m.insert("src_ip".into(), f.client.0.to_string().into());
    if ports_of(f.proto) {
        m.insert("src_port".into(), f.client.1.into());
    }
    m.insert("dest_ip".into(), f.server.0.to_string().into());
    if ports_of(f.proto) {
        m.insert("dest_port".into(), f.server.1.into());
    }
    m.insert("proto".into(), proto_name(f.proto).into());
    if let Some((t, c)) = f.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    if let Some(id) = &f.community_id {
        m.insert("community_id".into(), id.clone().into());
    }
    m
}

/// The `alert` object.
pub struct AlertInfo {
    pub signature_id: u64,
    pub gid: u32,
    pub rev: u32,
    pub signature: String,
    pub category: String,
    pub severity: u32,
    pub action: &'static str,
    pub metadata: Option<Value>,
    /// Suricata's `alert.source` and `alert.target` (rules with `target:`).
    pub source_target: Option<(Value, Value)>,
}

impl AlertInfo {
    pub fn builtin(signature_id: u64, signature: String, category: &str, severity: u32) -> AlertInfo {
        AlertInfo {
            signature_id,
            gid: 1,
            rev: 1,
            signature,
            category: category.to_string(),
            severity,
            action: "allowed",
            metadata: None,
            source_target: None,
        }
    }
}

pub fn alert(
    mut m: Map<String, Value>,
    info: AlertInfo,
    dir: Option<Dir>,
    extra: Vec<(&str, Value)>,
    canhgac: Value,
) -> Value {
    if let Some(d) = dir {
        m.insert("direction".into(), if d == Dir::ToServer { "to_server" } else { "to_client" }.into());
    }
    let mut a = json!({
        "action": info.action,
        "gid": info.gid,
        "signature_id": info.signature_id,
        "rev": info.rev,
        "signature": info.signature,
        "category": info.category,
        "severity": info.severity,
    });
    if let Some(obj) = a.as_object_mut() {
        if let Some((source, target)) = info.source_target {
            obj.insert("source".into(), source);
            obj.insert("target".into(), target);
        }
        if let Some(md) = info.metadata {
            obj.insert("metadata".into(), md);
        }
    }
    m.insert("alert".into(), a);
    for (k, v) in extra {
        m.insert(k.into(), v);
    }
    m.insert("canhgac".into(), canhgac);
    Value::Object(m)
}

/// Suricata's `dns` object of a query, one per question.
pub fn dns_query(msg: &dns::Message, q: &dns::Question) -> Value {
    json!({
        "type": "query",
        "id": msg.id,
        "rrname": q.name,
        "rrtype": dns::rrtype_name(q.qtype),
        "tx_id": 0,
        "opcode": msg.opcode,
    })
}

/// The rdata of a record as EVE shows it: one string per TXT
/// character-string, one for addresses and names, none for other types.
fn rdata_strings(d: &dns::RData) -> Vec<Option<String>> {
    match d {
        dns::RData::A(ip) => vec![Some(ip.to_string())],
        dns::RData::Aaaa(ip) => vec![Some(ip.to_string())],
        dns::RData::Name(n) => vec![Some(n.clone())],
        dns::RData::Txt(t) if !t.is_empty() => t.iter().cloned().map(Some).collect(),
        dns::RData::Txt(_) | dns::RData::Other(_) => vec![None],
    }
}

/// Suricata's `dns` object of an answer (EVE dns version 2).
pub fn dns_answer(msg: &dns::Message) -> Value {
    let q = msg.questions.first();
    let mut answers = Vec::new();
    let mut grouped: Map<String, Value> = Map::new();
    for a in &msg.answers {
        let rrtype = dns::rrtype_name(a.rtype);
        // a TXT record gives one entry per character-string, as Suricata's
        for rdata in rdata_strings(&a.data) {
            let mut entry = json!({"rrname": a.name, "rrtype": rrtype, "ttl": a.ttl});
            if let (Some(r), Some(obj)) = (&rdata, entry.as_object_mut()) {
                obj.insert("rdata".into(), r.clone().into());
                if let Value::Array(v) =
                    grouped.entry(rrtype.clone()).or_insert_with(|| Value::Array(Vec::new()))
                {
                    v.push(r.clone().into());
                }
            }
            answers.push(entry);
        }
    }
    let mut authorities = Vec::new();
    for a in &msg.authorities {
        for rdata in rdata_strings(&a.data) {
            let mut entry = json!({"rrname": a.name, "rrtype": dns::rrtype_name(a.rtype), "ttl": a.ttl});
            if let (Some(r), Some(obj)) = (rdata, entry.as_object_mut()) {
                obj.insert("rdata".into(), r.into());
            }
            authorities.push(entry);
        }
    }
    let mut v = json!({
        "version": 2,
        "type": "answer",
        "id": msg.id,
        "flags": format!("{:x}", msg.flags),
        "qr": true,
        "opcode": msg.opcode,
        "rcode": dns::rcode_name(msg.rcode),
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(q) = q {
            obj.insert("rrname".into(), q.name.clone().into());
            obj.insert("rrtype".into(), dns::rrtype_name(q.qtype).into());
        }
        if !answers.is_empty() {
            obj.insert("answers".into(), Value::Array(answers));
            obj.insert("grouped".into(), Value::Object(grouped));
        }
        if !authorities.is_empty() {
            obj.insert("authorities".into(), Value::Array(authorities));
        }
    }
    v
}

/// Suricata's `tls` object.
pub fn tls(state: &tls::TlsState) -> Value {
    let mut m = Map::new();
    if let Some(c) = &state.cert {
        m.insert("subject".into(), c.subject.clone().into());
        m.insert("issuerdn".into(), c.issuer.clone().into());
        m.insert("serial".into(), c.serial.clone().into());
        m.insert("fingerprint".into(), c.fingerprint.clone().into());
        m.insert("notbefore".into(), c.not_before.clone().into());
        m.insert("notafter".into(), c.not_after.clone().into());
    }
    if let Some(h) = &state.client_hello {
        if let Some(sni) = &h.sni {
            m.insert("sni".into(), sni.clone().into());
        }
        m.insert("ja3".into(), json!({"hash": h.ja3_hash, "string": h.ja3_string}));
        m.insert("ja4".into(), h.ja4.clone().into());
        if !h.alpn.is_empty() {
            m.insert("client_alpns".into(), h.alpn.clone().into());
        }
    }
    let version = state
        .server_hello
        .as_ref()
        .map(|s| s.version)
        .or_else(|| state.client_hello.as_ref().map(|c| c.version))
        .unwrap_or(0);
    m.insert("version".into(), tls::version_name(version).into());
    if let Some(s) = &state.server_hello {
        m.insert("ja3s".into(), json!({"hash": s.ja3s_hash, "string": s.ja3s_string}));
    }
    Value::Object(m)
}

/// Suricata's `http` object of a transaction.
pub fn http(tx: &HttpTx) -> Value {
    let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
    let mut m = Map::new();
    if let Some(h) = tx.host() {
        m.insert("hostname".into(), h.into());
    }
    m.insert("url".into(), tx.uri.clone().into());
    if let Some(ua) = text(tx.request_header("user-agent")) {
        m.insert("http_user_agent".into(), ua.into());
    }
    // the media type without its parameters, as Suricata logs it
    if let Some(ct) = tx.response_header("content-type") {
        let ct = ct.split(|b| *b == b';').next().unwrap_or_default();
        m.insert("http_content_type".into(), String::from_utf8_lossy(ct).into_owned().into());
    }
    if let Some(r) = text(tx.request_header("referer")) {
        m.insert("http_refer".into(), r.into());
    }
    m.insert("http_method".into(), tx.method.clone().into());
    m.insert("protocol".into(), tx.protocol.clone().into());
    if let Some(s) = tx.status {
        m.insert("status".into(), s.into());
    }
    m.insert("length".into(), tx.response_body_len.into());
    m.insert("request_body_len".into(), tx.request_body_len.into());
    Value::Object(m)
}

/// Suricata's `ssh` object.
pub fn ssh(state: &SshState) -> Value {
    let side = |i: usize| {
        let b = state.banners[i].as_ref()?;
        let mut v = json!({"proto_version": b.proto_version, "software_version": b.software});
        if let (Some(h), Some(obj)) = (&state.hassh[i], v.as_object_mut()) {
            obj.insert("hassh".into(), json!({"hash": h.hash, "string": h.string}));
        }
        Some(v)
    };
    let mut m = Map::new();
    if let Some(c) = side(0) {
        m.insert("client".into(), c);
    }
    if let Some(s) = side(1) {
        m.insert("server".into(), s);
    }
    Value::Object(m)
}

/// A `flow` record for a flow that left the table.
pub fn flow(f: &Flow, reason: EndReason) -> Value {
    let mut m = flow_base(f, "flow", f.last_ts);
    let app = f.app.proto();
    m.insert("app_proto".into(), app.name().into());
    m.insert(
        "flow".into(),
        json!({
            "pkts_toserver": f.pkts[0],
            "pkts_toclient": f.pkts[1],
            "bytes_toserver": f.bytes[0],
            "bytes_toclient": f.bytes[1],
            "start": timefmt::eve(f.first_ts),
            "end": timefmt::eve(f.last_ts),
            "age": f.age_secs(),
            "state": f.state_name(),
            "reason": reason.name(),
            "alerted": f.alerted,
        }),
    );
    if let Some(t) = &f.tcp {
        let flags = |b: u8| format!("{b:02x}");
        m.insert(
            "tcp".into(),
            json!({
                "tcp_flags": flags(t.flags[0] | t.flags[1]),
                "tcp_flags_ts": flags(t.flags[0]),
                "tcp_flags_tc": flags(t.flags[1]),
                "state": format!("{:?}", t.state).to_ascii_lowercase(),
                "gaps": t.streams[0].stats.gaps + t.streams[1].stats.gaps,
            }),
        );
    }
    Value::Object(m)
}
