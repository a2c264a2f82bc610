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

use crate::decode::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Packet, proto_name};

/// Signature ids of built-in detections (range 9000000-9099999).
pub mod sid {
    pub const IOC_DEST_IP: u64 = 9_000_001;
    pub const IOC_SRC_IP: u64 = 9_000_002;
    pub const IOC_DNS_QUERY: u64 = 9_000_003;
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

/// A stable flow id (same for both directions), within 2^53 so that
/// JavaScript consumers read it exactly.
pub fn flow_id(p: &Packet<'_>) -> u64 {
    let h = sha2::Sha256::digest(flow_key(p));
    u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) & ((1 << 53) - 1)
}

pub fn community_id(p: &Packet<'_>) -> Option<String> {
    let ports = matches!(p.proto, PROTO_TCP | PROTO_UDP | 132);
    let (sport, dport) = match (p.proto, p.icmp) {
        (PROTO_ICMP | PROTO_ICMPV6, Some((t, c))) => (Some(u16::from(t)), Some(u16::from(c))),
        _ if ports => (Some(p.sport), Some(p.dport)),
        _ => (None, None),
    };
    community_id::calculate_community_id(0, p.src, p.dst, sport, dport, p.proto, Default::default()).ok()
}

/// The fields every packet-based record starts with.
pub fn base(p: &Packet<'_>, event_type: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), timefmt::eve(p.ts).into());
    m.insert("flow_id".into(), flow_id(p).into());
    m.insert("event_type".into(), event_type.into());
    m.insert("src_ip".into(), p.src.to_string().into());
    if matches!(p.proto, PROTO_TCP | PROTO_UDP) {
        m.insert("src_port".into(), p.sport.into());
    }
    m.insert("dest_ip".into(), p.dst.to_string().into());
    if matches!(p.proto, PROTO_TCP | PROTO_UDP) {
        m.insert("dest_port".into(), p.dport.into());
    }
    m.insert("proto".into(), proto_name(p.proto).into());
    if let Some((t, c)) = p.icmp {
        m.insert("icmp_type".into(), t.into());
        m.insert("icmp_code".into(), c.into());
    }
    if let Some(id) = community_id(p) {
        m.insert("community_id".into(), id.into());
    }
    m
}

/// The `alert` object.
pub struct AlertInfo<'a> {
    pub signature_id: u64,
    pub signature: String,
    pub category: &'a str,
    pub severity: u32,
}

pub fn alert(p: &Packet<'_>, info: AlertInfo<'_>, extra: Vec<(&str, Value)>, canhgac: Value) -> Value {
    let mut m = base(p, "alert");
    m.insert(
        "alert".into(),
        json!({
            "action": "allowed",
            "gid": 1,
            "signature_id": info.signature_id,
            "rev": 1,
            "signature": info.signature,
            "category": info.category,
            "severity": info.severity,
        }),
    );
    for (k, v) in extra {
        m.insert(k.into(), v);
    }
    m.insert("canhgac".into(), canhgac);
    Value::Object(m)
}
