//! The flow table: bidirectional flows keyed by protocol and endpoints.
//!
//! The first packet decides who is the client (for TCP the side that sent
//! the SYN; for a connection picked up in the middle, the side with the
//! higher, non-service port). Flows expire after a per-protocol idle
//! timeout measured in packet time; the table is bounded, and when full the
//! least recently active flow is evicted. Expired and evicted flows are
//! returned to the caller, which can log them (`event_type: "flow"`).

pub mod tcp;

use std::net::IpAddr;

use hashlink::LinkedHashMap;

use crate::{
    app::AppState,
    decode::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Packet, TCP_ACK, TCP_SYN},
};
use tcp::TcpSession;

/// Direction of a packet relative to the flow's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer = 0,
    ToClient = 1,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    proto: u8,
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl FlowKey {
    pub fn of(p: &Packet<'_>) -> FlowKey {
        let (sport, dport) = ports(p);
        let a = (p.src, sport);
        let b = (p.dst, dport);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        FlowKey { proto: p.proto, lo, hi }
    }
}

/// Ports, or for ICMP the Community-ID style type/code pair so that echo
/// and echo-reply share a flow.
fn ports(p: &Packet<'_>) -> (u16, u16) {
    match (p.proto, p.icmp) {
        (PROTO_TCP | PROTO_UDP, _) => (p.sport, p.dport),
        (PROTO_ICMP | PROTO_ICMPV6, Some(_)) => (0, 0),
        _ => (0, 0),
    }
}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Timeout,
    /// Evicted to stay within the table's capacity.
    Forced,
    /// End of the capture or agent shutdown.
    Shutdown,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Forced => "forced",
            EndReason::Shutdown => "shutdown",
        }
    }
}

pub struct Flow {
    pub id: u64,
    pub proto: u8,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub first_us: i64,
    pub last_us: i64,
    pub first_ts: time::OffsetDateTime,
    pub last_ts: time::OffsetDateTime,
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    pub tcp: Option<TcpSession>,
    pub app: AppState,
    pub alerted: bool,
    /// The flow's payload is no longer inspected by the rules (encrypted:
    /// [`AppState::encrypted`] after an earlier packet).
    pub no_payload_inspection: bool,
    pub community_id: Option<String>,
    /// ICMP type/code of the first packet (for flow records).
    pub icmp: Option<(u8, u8)>,
    /// Signature state of this flow (flowbits).
    pub rules: crate::rules::FlowRuleState,
    /// The port-scan detector has seen the client's data: this is a
    /// conversation, not a probe, and it need not be told again.
    pub scan_settled: bool,
}

impl Flow {
    fn new(p: &Packet<'_>, id: u64) -> Flow {
        let (sport, dport) = ports(p);
        let src = (p.src, sport);
        let dst = (p.dst, dport);
        let (client, server) = match p.proto {
            PROTO_TCP if p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN => (src, dst),
            PROTO_TCP if p.tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) => (dst, src),
            PROTO_TCP | PROTO_UDP if is_service_port(sport) && !is_service_port(dport) => (dst, src),
            _ => (src, dst),
        };
        let us = canhgac_proto::timefmt::micros(p.ts);
        Flow {
            id,
            proto: p.proto,
            client,
            server,
            first_us: us,
            last_us: us,
            first_ts: p.ts,
            last_ts: p.ts,
            pkts: [0, 0],
            bytes: [0, 0],
            tcp: (p.proto == PROTO_TCP).then(TcpSession::default),
            app: AppState::default(),
            alerted: false,
            no_payload_inspection: false,
            community_id: crate::eve::community_id(p),
            icmp: p.icmp,
            rules: crate::rules::FlowRuleState::default(),
            scan_settled: false,
        }
    }

    pub fn dir_of(&self, p: &Packet<'_>) -> Dir {
        let (sport, _) = ports(p);
        if p.src == self.client.0 && sport == self.client.1 { Dir::ToServer } else { Dir::ToClient }
    }

    /// TCP: handshake seen (or picked up with data); other protocols:
    /// packets seen in both directions.
    pub fn established(&self) -> bool {
        match &self.tcp {
            Some(t) => t.established(),
            None => self.pkts[0] > 0 && self.pkts[1] > 0,
        }
    }

    pub fn age_secs(&self) -> i64 {
        (self.last_us - self.first_us) / 1_000_000
    }

    /// Suricata's flow state names.
    pub fn state_name(&self) -> &'static str {
        match &self.tcp {
            Some(t) => t.state.name(),
            None if self.established() => "established",
            None => "new",
        }
    }
}

fn is_service_port(p: u16) -> bool {
    p != 0 && p < 1024
}

#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub max_flows: usize,
    pub tcp_new_timeout_us: i64,
    pub tcp_established_timeout_us: i64,
    pub tcp_closed_timeout_us: i64,
    pub udp_timeout_us: i64,
    pub icmp_timeout_us: i64,
    pub other_timeout_us: i64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        const S: i64 = 1_000_000;
        FlowConfig {
            max_flows: 200_000,
            tcp_new_timeout_us: 60 * S,
            tcp_established_timeout_us: 600 * S,
            tcp_closed_timeout_us: 10 * S,
            udp_timeout_us: 120 * S,
            icmp_timeout_us: 60 * S,
            other_timeout_us: 60 * S,
        }
    }
}

impl FlowConfig {
    fn timeout_us(&self, f: &Flow) -> i64 {
        match (f.proto, &f.tcp) {
            (_, Some(t)) if t.state == tcp::TcpState::Closed => self.tcp_closed_timeout_us,
            (_, Some(t)) if t.established() => self.tcp_established_timeout_us,
            (_, Some(_)) => self.tcp_new_timeout_us,
            (PROTO_UDP, _) => self.udp_timeout_us,
            (PROTO_ICMP | PROTO_ICMPV6, _) => self.icmp_timeout_us,
            _ => self.other_timeout_us,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    pub timed_out: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    pub active: u64,
}

pub struct FlowTable {
    cfg: FlowConfig,
    flows: LinkedHashMap<FlowKey, Flow>,
    next_sweep_us: i64,
    pub stats: FlowStats,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig) -> FlowTable {
        FlowTable { cfg, flows: LinkedHashMap::new(), next_sweep_us: i64::MIN, stats: FlowStats::default() }
    }

    /// The flow of `p` (created when new: the flag), after recording the
    /// packet's counters; flows that had to leave the table go to `ended`.
    pub fn packet(&mut self, p: &Packet<'_>, ended: &mut Vec<(Flow, EndReason)>) -> (&mut Flow, Dir, bool) {
        let now = canhgac_proto::timefmt::micros(p.ts);
        if now >= self.next_sweep_us {
            self.sweep(now, ended);
            self.next_sweep_us = now + 1_000_000;
        }
        let key = FlowKey::of(p);
        let new = !self.flows.contains_key(&key);
        if !new {
            self.flows.to_back(&key);
        } else {
            while self.flows.len() >= self.cfg.max_flows.max(1) {
                match self.flows.pop_front() {
                    Some((_, f)) => {
                        self.stats.evicted += 1;
                        ended.push((f, EndReason::Forced));
                    }
                    None => break,
                }
            }
            let id = crate::eve::flow_id(p);
            self.flows.insert(key.clone(), Flow::new(p, id));
            self.stats.created += 1;
        }
        self.stats.active = self.flows.len() as u64;
        // The key was just inserted or found.
        let flow = self.flows.get_mut(&key).unwrap_or_else(|| unreachable!("flow present"));
        let dir = flow.dir_of(p);
        flow.pkts[dir as usize] += 1;
        flow.bytes[dir as usize] += p.len as u64;
        flow.last_us = flow.last_us.max(now);
        flow.last_ts = flow.last_ts.max(p.ts);
        (flow, dir, new)
    }

    /// Removes flows idle longer than their timeout.
    pub fn sweep(&mut self, now_us: i64, ended: &mut Vec<(Flow, EndReason)>) {
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| now_us - f.last_us > self.cfg.timeout_us(f))
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(f) = self.flows.remove(&k) {
                self.stats.timed_out += 1;
                ended.push((f, EndReason::Timeout));
            }
        }
        self.stats.active = self.flows.len() as u64;
    }

    /// Every remaining flow (end of input).
    pub fn drain(&mut self, ended: &mut Vec<(Flow, EndReason)>) {
        while let Some((_, f)) = self.flows.pop_front() {
            ended.push((f, EndReason::Shutdown));
        }
        self.stats.active = 0;
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{LinkType, decode};
    use etherparse::PacketBuilder;
    use time::{Duration, OffsetDateTime};

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool, ack: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(1);
        }
        b.write(&mut v, b"").unwrap();
        v
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_700_000_000 + secs)
    }

    #[test]
    fn both_directions_share_a_flow_and_the_client_is_the_syn_sender() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut ended = Vec::new();
        let syn = tcp([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, true, false);
        let synack = tcp([10, 0, 0, 2], 80, [10, 0, 0, 1], 40000, true, true);
        let p = decode(LinkType::RawIp, at(0), &synack).unwrap().unwrap();
        let (f, dir, _) = t.packet(&p, &mut ended);
        assert_eq!(dir, Dir::ToClient, "a SYN-ACK first still makes the SYN-ACK receiver the client");
        let id = f.id;
        let p = decode(LinkType::RawIp, at(1), &syn).unwrap().unwrap();
        let (f, dir, _) = t.packet(&p, &mut ended);
        assert_eq!((f.id, dir), (id, Dir::ToServer));
        assert_eq!(f.pkts, [1, 1]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn idle_flows_time_out_and_the_table_is_bounded() {
        let cfg = FlowConfig { max_flows: 3, ..Default::default() };
        let mut t = FlowTable::new(cfg);
        let mut ended = Vec::new();
        for port in 0..5u16 {
            let f = tcp([10, 0, 0, 1], 40000 + port, [10, 0, 0, 2], 80, true, false);
            let p = decode(LinkType::RawIp, at(0), &f).unwrap().unwrap();
            t.packet(&p, &mut ended);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats.evicted, 2);
        assert!(ended.iter().all(|(_, r)| *r == EndReason::Forced));
        ended.clear();
        let later = tcp([10, 0, 0, 9], 1, [10, 0, 0, 2], 80, true, false);
        let p = decode(LinkType::RawIp, at(3600), &later).unwrap().unwrap();
        t.packet(&p, &mut ended);
        assert_eq!(ended.len(), 3, "the idle flows expired");
        assert!(ended.iter().all(|(_, r)| *r == EndReason::Timeout));
        assert_eq!(t.len(), 1);
    }
}
