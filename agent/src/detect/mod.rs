//! The detection core: decoded packets in, EVE records out.
//!
//! Architecture invariant: no I/O, no async, no clock. Time comes from the
//! packet; state that must survive a restart is handed back to the caller
//! as [`StateChange`]s, which the spool commits atomically with the records
//! and the input checkpoint, so a replay from a checkpoint after a crash
//! produces exactly the records that were lost.

pub mod ioc;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use canhgac_proto::v1::RecordKind;
use serde_json::json;
use sha2::Digest as _;

use crate::{
    decode::{PROTO_TCP, PROTO_UDP, Packet},
    dns,
    eve::{self, AlertInfo, sid},
    spool::NewRecord,
};
pub use ioc::IocSet;

/// Detector state key prefix for per-flow IOC deduplication.
const DEDUP_PREFIX: u8 = b'd';

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Severity of IOC alerts (1 highest .. 4).
    pub ioc_severity: u32,
    /// Flows remembered for "one alert per flow and indicator".
    pub dedup_capacity: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { ioc_severity: 2, dedup_capacity: 100_000 }
    }
}

/// A change to persisted detector state, keyed without the spool's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<NewRecord>,
    pub state: Vec<StateChange>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.state.is_empty()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub alerts: u64,
    /// Alerts not raised because the flow already alerted on the indicator.
    pub suppressed: u64,
    /// Flows forgotten at the dedup capacity (they may alert again).
    pub dedup_evictions: u64,
    pub dns_errors: u64,
}

/// One alert per (flow, indicator), with bounded memory.
struct Dedup {
    seen: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64)>,
    next: u64,
    capacity: usize,
}

impl Dedup {
    fn new(capacity: usize, restored: Vec<(Vec<u8>, Vec<u8>)>) -> Dedup {
        let mut entries: Vec<([u8; 16], u64)> = restored
            .into_iter()
            .filter_map(|(k, v)| {
                let key: [u8; 16] = k.get(1..17)?.try_into().ok()?;
                let order = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                (k.first() == Some(&DEDUP_PREFIX)).then_some((key, order))
            })
            .collect();
        entries.sort_by_key(|e| e.1);
        let next = entries.last().map(|e| e.1 + 1).unwrap_or(0);
        Dedup {
            seen: entries.iter().copied().collect(),
            order: entries.into_iter().collect(),
            next,
            capacity: capacity.max(1),
        }
    }

    /// True when this is the first time; records the state changes.
    fn first(&mut self, key: [u8; 16], out: &mut Output, stats: &mut EngineStats) -> bool {
        if self.seen.contains_key(&key) {
            stats.suppressed += 1;
            return false;
        }
        while self.order.len() >= self.capacity {
            if let Some((old, _)) = self.order.pop_front() {
                self.seen.remove(&old);
                out.state.push(StateChange::Delete(state_key(&old)));
                stats.dedup_evictions += 1;
            }
        }
        let order = self.next;
        self.next += 1;
        self.seen.insert(key, order);
        self.order.push_back((key, order));
        out.state.push(StateChange::Put(state_key(&key), order.to_be_bytes().to_vec()));
        true
    }
}

fn state_key(k: &[u8; 16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(DEDUP_PREFIX);
    v.extend_from_slice(k);
    v
}

pub struct Engine {
    ioc: Arc<IocSet>,
    cfg: EngineConfig,
    dedup: Dedup,
    pub stats: EngineStats,
}

impl Engine {
    /// `restored`: detector state saved by earlier runs (see [`StateChange`]).
    pub fn new(ioc: Arc<IocSet>, cfg: EngineConfig, restored: Vec<(Vec<u8>, Vec<u8>)>) -> Engine {
        let dedup = Dedup::new(cfg.dedup_capacity, restored);
        Engine { ioc, cfg, dedup, stats: EngineStats::default() }
    }

    pub fn on_packet(&mut self, p: &Packet<'_>, out: &mut Output) {
        if self.ioc.is_empty() {
            return;
        }
        self.ip_indicators(p, out);
        if matches!(p.proto, PROTO_UDP | PROTO_TCP)
            && (p.dport == 53 || p.sport == 53)
            && !p.payload.is_empty()
        {
            self.dns(p, out);
        }
    }

    fn ip_indicators(&mut self, p: &Packet<'_>, out: &mut Output) {
        let (id, matched, sid) = match (self.ioc.match_ip(p.dst), self.ioc.match_ip(p.src)) {
            (Some(id), _) => (id, "dest_ip", sid::IOC_DEST_IP),
            (None, Some(id)) => (id, "src_ip", sid::IOC_SRC_IP),
            (None, None) => return,
        };
        let mut h = sha2::Sha256::new();
        h.update(eve::flow_key(p));
        h.update(id.to_be_bytes());
        let key: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
        if !self.dedup.first(key, out, &mut self.stats) {
            return;
        }
        let Some(ind) = self.ioc.indicator(id) else {
            return;
        };
        let list = self.ioc.list_name(ind).to_string();
        let direction = if matched == "dest_ip" { "to" } else { "from" };
        let info = AlertInfo {
            signature_id: sid,
            signature: format!("CANHGAC IOC traffic {direction} listed address {} ({list})", ind.value),
            category: "Potentially Bad Traffic",
            severity: self.cfg.ioc_severity,
        };
        let canhgac = json!({
            "detector": "ioc",
            "technique": "T1071",
            "indicator": ind.value,
            "indicator_type": ind.kind.as_str(),
            "list": list,
            "matched": matched,
        });
        self.emit(p, info, Vec::new(), canhgac, out);
    }

    fn dns(&mut self, p: &Packet<'_>, out: &mut Output) {
        let parsed = if p.proto == PROTO_UDP { dns::parse(p.payload) } else { dns::parse_tcp(p.payload) };
        let msg = match parsed {
            Ok(m) => m,
            Err(_) => {
                self.stats.dns_errors += 1;
                return;
            }
        };
        if msg.response {
            return;
        }
        for q in &msg.questions {
            let Some(id) = self.ioc.match_domain(&q.name) else {
                continue;
            };
            let Some(ind) = self.ioc.indicator(id) else {
                continue;
            };
            let list = self.ioc.list_name(ind).to_string();
            let info = AlertInfo {
                signature_id: sid::IOC_DNS_QUERY,
                signature: format!("CANHGAC IOC DNS query for listed domain {} ({list})", ind.value),
                category: "Potentially Bad Traffic",
                severity: self.cfg.ioc_severity,
            };
            let extra = vec![
                ("app_proto", json!("dns")),
                (
                    "dns",
                    json!({"query": [{
                        "type": "query",
                        "id": msg.id,
                        "rrname": q.name,
                        "rrtype": dns::rrtype_name(q.qtype),
                        "tx_id": 0,
                        "opcode": msg.opcode,
                    }]}),
                ),
            ];
            let canhgac = json!({
                "detector": "ioc",
                "technique": "T1071.004",
                "indicator": ind.value,
                "indicator_type": ind.kind.as_str(),
                "list": list,
                "matched": "dns.query",
            });
            self.emit(p, info, extra, canhgac, out);
        }
    }

    fn emit(
        &mut self,
        p: &Packet<'_>,
        info: AlertInfo<'_>,
        extra: Vec<(&str, serde_json::Value)>,
        canhgac: serde_json::Value,
        out: &mut Output,
    ) {
        let severity = info.severity;
        let value = eve::alert(p, info, extra, canhgac);
        self.stats.alerts += 1;
        out.records.push(NewRecord {
            kind: RecordKind::Alert,
            severity,
            time: p.ts,
            eve_json: value.to_string().into_bytes(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{LinkType, decode};
    use etherparse::PacketBuilder;
    use time::OffsetDateTime;

    fn ioc(lines: &str) -> Arc<IocSet> {
        let mut s = IocSet::default();
        s.lists.push("test.txt".into());
        for l in lines.lines() {
            s.add_line(l, 0).unwrap();
        }
        Arc::new(s)
    }

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000).write(&mut v, b"").unwrap();
        v
    }

    fn dns_query(name: &str) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 5], [8, 8, 8, 8], 64).udp(40000, 53).write(&mut v, &m).unwrap();
        v
    }

    fn run(engine: &mut Engine, frames: &[Vec<u8>]) -> Output {
        let mut out = Output::default();
        for f in frames {
            let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, f).unwrap().unwrap();
            engine.on_packet(&p, &mut out);
        }
        out
    }

    #[test]
    fn one_alert_per_flow_and_indicator() {
        let mut e = Engine::new(ioc("45.9.74.78"), EngineConfig::default(), Vec::new());
        let a = tcp([10, 0, 0, 5], 50000, [45, 9, 74, 78], 80);
        let back = tcp([45, 9, 74, 78], 80, [10, 0, 0, 5], 50000);
        let other = tcp([10, 0, 0, 5], 50001, [45, 9, 74, 78], 80);
        let out = run(&mut e, &[a.clone(), back, a, other]);
        assert_eq!(out.records.len(), 2);
        assert_eq!(e.stats.suppressed, 2);
        let v: serde_json::Value = serde_json::from_slice(&out.records[0].eve_json).unwrap();
        assert_eq!(v["event_type"], "alert");
        assert_eq!(v["alert"]["signature_id"], sid::IOC_DEST_IP);
        assert_eq!(v["canhgac"]["detector"], "ioc");
        assert_eq!(v["canhgac"]["indicator"], "45.9.74.78");
        assert_eq!(v["dest_port"], 80);
        assert!(v["community_id"].as_str().unwrap().starts_with("1:"));
    }

    #[test]
    fn dedup_state_survives_a_restart() {
        let mut e = Engine::new(ioc("45.9.74.78"), EngineConfig::default(), Vec::new());
        let a = tcp([10, 0, 0, 5], 50000, [45, 9, 74, 78], 80);
        let out = run(&mut e, std::slice::from_ref(&a));
        let restored: Vec<(Vec<u8>, Vec<u8>)> = out
            .state
            .into_iter()
            .filter_map(|c| match c {
                StateChange::Put(k, v) => Some((k, v)),
                StateChange::Delete(_) => None,
            })
            .collect();
        let mut e2 = Engine::new(ioc("45.9.74.78"), EngineConfig::default(), restored);
        assert!(run(&mut e2, &[a]).records.is_empty());
    }

    #[test]
    fn dedup_capacity_evicts_oldest_and_counts() {
        let cfg = EngineConfig { dedup_capacity: 2, ..Default::default() };
        let mut e = Engine::new(ioc("45.9.74.78"), cfg, Vec::new());
        let frames: Vec<_> = (0..3).map(|i| tcp([10, 0, 0, 5], 50000 + i, [45, 9, 74, 78], 80)).collect();
        let out = run(&mut e, &frames);
        assert_eq!(out.records.len(), 3);
        assert_eq!(e.stats.dedup_evictions, 1);
        assert!(out.state.iter().any(|c| matches!(c, StateChange::Delete(_))));
    }

    #[test]
    fn dns_queries_match_subdomains_and_responses_do_not_alert() {
        let mut e = Engine::new(ioc("drivres-update.info"), EngineConfig::default(), Vec::new());
        let out = run(&mut e, &[dns_query("www.drivres-update.info"), dns_query("example.org")]);
        assert_eq!(out.records.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out.records[0].eve_json).unwrap();
        assert_eq!(v["alert"]["signature_id"], sid::IOC_DNS_QUERY);
        assert_eq!(v["dns"]["query"][0]["rrname"], "www.drivres-update.info");
        assert_eq!(v["canhgac"]["technique"], "T1071.004");
        let mut response = dns_query("www.drivres-update.info");
        response[20 + 8 + 2] |= 0x80; // QR bit in the DNS header after IPv4+UDP
        assert!(run(&mut e, &[response]).records.is_empty());
    }
}
