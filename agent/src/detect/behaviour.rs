//! Behavioural detectors: `portscan`, `bruteforce`, `dns-tunnel`,
//! `icmp-tunnel`, `beacon`.
//!
//! Each keeps bounded state keyed by the actors involved, works in packet
//! time, raises one alert per episode (the key is then quiet for
//! `suppress`), and counts what it had to forget to stay within memory.
//! Thresholds are in [`BehaviourConfig`] (agent configuration
//! `[detect.portscan]` and so on; defaults documented on each field).

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    net::IpAddr,
};

use hashlink::LinkedHashMap;
use serde::Deserialize;

use crate::{
    decode::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, Packet, TCP_ACK, TCP_RST, TCP_SYN},
    flow::{Dir, Flow},
};

const US: i64 = 1_000_000;

/// Settings of every behavioural detector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    pub portscan: PortscanConfig,
    pub bruteforce: BruteforceConfig,
    pub dns_tunnel: DnsTunnelConfig,
    pub icmp_tunnel: IcmpTunnelConfig,
    pub beacon: BeaconConfig,
    /// Sources tracked per detector before the least recently seen is
    /// forgotten (counted).
    pub max_tracked: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            portscan: PortscanConfig::default(),
            bruteforce: BruteforceConfig::default(),
            dns_tunnel: DnsTunnelConfig::default(),
            icmp_tunnel: IcmpTunnelConfig::default(),
            beacon: BeaconConfig::default(),
            max_tracked: 50_000,
        }
    }
}

/// A port is "probed" when a source opens a TCP connection to it (SYN) and
/// sends no data on it, or when the target answers with a reset or an ICMP
/// unreachable. Connections that carry client data are not probes, so a busy
/// client of a busy server is not a scanner; SYN-ACKs and resets a host
/// receives without having sent a SYN (backscatter of spoofed floods) are
/// not counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortscanConfig {
    pub enabled: bool,
    /// Distinct ports of one host probed by one source (vertical scan).
    pub vertical_ports: usize,
    /// Distinct hosts probed on one port by one source (horizontal scan).
    pub horizontal_hosts: usize,
    /// Window, seconds.
    pub window_secs: i64,
    /// Quiet time after an alert for the same source and target, seconds.
    pub suppress_secs: i64,
}

impl Default for PortscanConfig {
    fn default() -> Self {
        PortscanConfig {
            enabled: true,
            vertical_ports: 25,
            horizontal_hosts: 20,
            window_secs: 120,
            suppress_secs: 3600,
        }
    }
}

/// Many short sessions from one source to an authentication service of one
/// host. A session counts when it closes (or times out) having exchanged
/// little: less than `max_session_bytes` from the server and shorter than
/// `max_session_secs`; an FTP `530` reply also counts as a failed login.
/// An SSH session counts only when it looks like a failed authentication:
/// one in which the server's encrypted packet sizes show a successful one
/// (Zeek's inference, see [`crate::app::ssh::AuthGuess`]) is a login, not a
/// guess, so scripted logins running one command each raise nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteforceConfig {
    pub enabled: bool,
    /// Service ports watched (SSH, telnet, FTP, SMTP, POP3, IMAP, RDP, ...).
    /// Default: 21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 1433, 3306,
    /// 3389, 5432, 5900.
    pub ports: Vec<u16>,
    /// Sessions within the window that raise the alert. Default 10.
    pub attempts: usize,
    /// Seconds. Default 300.
    pub window_secs: i64,
    /// Bytes from the server at most for a short session. Default 20,000.
    pub max_session_bytes: u64,
    /// Seconds at most for a short session. Default 60.
    pub max_session_secs: i64,
    /// Quiet time after an alert, seconds. Default 3600.
    pub suppress_secs: i64,
    /// Skip SSH sessions whose packet sizes show a successful
    /// authentication. Default true.
    pub ssh_auth_inference: bool,
}

impl Default for BruteforceConfig {
    fn default() -> Self {
        BruteforceConfig {
            enabled: true,
            ports: vec![21, 22, 23, 25, 110, 143, 465, 587, 993, 995, 1433, 3306, 3389, 5432, 5900],
            attempts: 10,
            window_secs: 300,
            max_session_bytes: 20_000,
            max_session_secs: 60,
            suppress_secs: 3600,
            ssh_auth_inference: true,
        }
    }
}

/// DNS tunnels put data into query names under one parent domain: many
/// unique, long, high-entropy names from one client, often TXT/NULL
/// queries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsTunnelConfig {
    pub enabled: bool,
    /// Unique names under one parent from one client within the window.
    pub unique_names: usize,
    pub window_secs: i64,
    /// Mean Shannon entropy (bits per character) of the data labels at or
    /// above which names look encoded.
    pub min_entropy: f64,
    /// Mean length of the data part at or above which names look encoded.
    pub min_label_length: f64,
    /// Share of TXT/NULL/CNAME/MX/PRIVATE queries at or above which the
    /// traffic looks like a tunnel even with shorter names.
    pub min_tunnel_qtype_ratio: f64,
    /// A single name longer than this with high entropy is itself suspect.
    pub long_name: usize,
    pub suppress_secs: i64,
}

impl Default for DnsTunnelConfig {
    fn default() -> Self {
        DnsTunnelConfig {
            enabled: true,
            unique_names: 40,
            window_secs: 300,
            min_entropy: 3.6,
            min_label_length: 24.0,
            min_tunnel_qtype_ratio: 0.5,
            long_name: 100,
            suppress_secs: 3600,
        }
    }
}

/// ICMP echo carrying data: payloads that change from one packet to the
/// next (ping repeats one pattern after its timestamp) and are either larger
/// than ping's or near-random, many of them between the same two hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpTunnelConfig {
    pub enabled: bool,
    /// Echo payloads above this size count.
    pub min_payload: usize,
    /// Echo payloads of at least 32 bytes with entropy (bits per byte) at
    /// or above this count.
    pub min_entropy: f64,
    pub packets: usize,
    pub window_secs: i64,
    pub suppress_secs: i64,
}

impl Default for IcmpTunnelConfig {
    fn default() -> Self {
        IcmpTunnelConfig {
            enabled: true,
            min_payload: 128,
            min_entropy: 4.5,
            packets: 10,
            window_secs: 120,
            suppress_secs: 3600,
        }
    }
}

/// Regular connections from one host to the same destination and port:
/// at least `occurrences` new flows whose spacing varies by less than
/// `max_jitter` (coefficient of variation) around a period between
/// `min_period_secs` and `max_period_secs`. Destinations inside the
/// agency's own networks (`internal_networks`) are not considered unless
/// `include_internal` is set: monitoring, backups and administration
/// scripts talk to internal servers on a schedule; a command-and-control
/// server is outside.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeaconConfig {
    pub enabled: bool,
    /// New flows to one destination and port. Default 8.
    pub occurrences: usize,
    /// Coefficient of variation of the intervals at most. Default 0.1.
    pub max_jitter: f64,
    /// Default 5 s.
    pub min_period_secs: f64,
    /// Default 86,400 s.
    pub max_period_secs: f64,
    /// Destination ports never considered (DNS, NTP, DHCP, mDNS, ...).
    pub ignore_ports: Vec<u16>,
    /// Quiet time after an alert, seconds. Default 86,400.
    pub suppress_secs: i64,
    /// The agency's own networks (CIDRs). Default: RFC 1918, loopback,
    /// link-local, IPv6 unique-local (`10.0.0.0/8`, `172.16.0.0/12`,
    /// `192.168.0.0/16`, `127.0.0.0/8`, `169.254.0.0/16`, `::1/128`,
    /// `fc00::/7`, `fe80::/10`); set it to the agency's addresses when they
    /// are public ones.
    #[serde(deserialize_with = "networks")]
    pub internal_networks: Vec<ipnet::IpNet>,
    /// Also watch destinations inside `internal_networks`. Default false.
    pub include_internal: bool,
}

pub(crate) fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    use serde::de::Error as _;
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse::<ipnet::IpNet>().map_err(|e| D::Error::custom(format!("`{s}`: {e}"))))
        .collect()
}

/// RFC 1918, loopback, link-local and unique-local networks.
pub fn private_networks() -> Vec<ipnet::IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

impl Default for BeaconConfig {
    fn default() -> Self {
        BeaconConfig {
            enabled: true,
            occurrences: 8,
            max_jitter: 0.1,
            min_period_secs: 5.0,
            max_period_secs: 86_400.0,
            ignore_ports: vec![53, 67, 68, 123, 137, 138, 5353, 1900],
            suppress_secs: 86_400,
            internal_networks: private_networks(),
            include_internal: false,
        }
    }
}

/// A behavioural finding; the engine turns it into an EVE alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: &'static str,
    pub signature_id: u64,
    pub signature: String,
    pub category: &'static str,
    pub severity: u32,
    pub technique: &'static str,
    /// Attacker (or infected host) and target.
    pub src: IpAddr,
    pub dst: Option<IpAddr>,
    pub dst_port: Option<u16>,
    /// The domain the finding is about (the parent of tunnelled names).
    pub domain: Option<String>,
    /// Detector-specific details for `canhgac`.
    pub details: serde_json::Value,
}

impl Finding {
    /// Whether `src` is an infected host talking out (tunnels, beacons)
    /// rather than the attacker (scans, guessing).
    pub fn src_is_victim(&self) -> bool {
        matches!(self.detector, "beacon" | "dns-tunnel" | "icmp-tunnel")
    }

    /// The typed facts: the detector's word on roles.
    pub fn facts(&self, flow_id: u64) -> canhgac_proto::v1::RecordFacts {
        use crate::facts::{address, endpoint};
        let mut f = canhgac_proto::v1::RecordFacts {
            detector: self.detector.into(),
            flow_id,
            src: Some(address(self.src)),
            dest: self.dst.map(|d| endpoint(d, self.dst_port.unwrap_or(0))),
            ..Default::default()
        };
        crate::facts::set_signature(
            &mut f,
            self.signature_id,
            &self.signature,
            self.category,
            self.technique,
        );
        let src = vec![address(self.src)];
        let mut far: Vec<_> = self.dst.map(|d| endpoint(d, self.dst_port.unwrap_or(0))).into_iter().collect();
        if let Some(domain) = &self.domain {
            f.domain = crate::facts::named(domain).host;
            if self.src_is_victim() {
                far.insert(0, crate::facts::named(domain));
            }
        }
        if self.src_is_victim() {
            crate::facts::set_roles(&mut f, far, src);
        } else {
            crate::facts::set_roles(&mut f, src, far);
        }
        f
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BehaviourStats {
    /// Tracked keys forgotten to stay within memory.
    pub evictions: u64,
    pub findings: u64,
}

/// A port-scan probe: the client's bare SYN, or the server's reset.
fn is_probe(dir: Dir, p: &Packet<'_>) -> bool {
    let syn_only = p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    (dir == Dir::ToServer && syn_only) || (dir == Dir::ToClient && p.tcp_flags & TCP_RST != 0)
}

/// Bounded LRU map that counts evictions.
struct Tracker<K: std::hash::Hash + Eq, V> {
    map: LinkedHashMap<K, V>,
    cap: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V: Default> Tracker<K, V> {
    fn new(cap: usize) -> Self {
        Tracker { map: LinkedHashMap::new(), cap: cap.max(16) }
    }

    fn entry(&mut self, k: &K, evictions: &mut u64) -> &mut V {
        if self.map.contains_key(k) {
            self.map.to_back(k);
        } else {
            while self.map.len() >= self.cap {
                self.map.pop_front();
                *evictions += 1;
            }
            self.map.insert(k.clone(), V::default());
        }
        self.map.get_mut(k).unwrap_or_else(|| unreachable!("entry inserted above"))
    }
}

/// Keys that alerted recently.
#[derive(Default)]
struct Quiet {
    until: HashMap<String, i64>,
    /// The key being looked up (its allocation reused: most lookups find
    /// a key that is quiet).
    key: String,
}

impl Quiet {
    fn allow(&mut self, key: std::fmt::Arguments<'_>, now: i64, suppress_us: i64) -> bool {
        use std::fmt::Write as _;
        if self.until.len() > 100_000 {
            self.until.retain(|_, t| *t > now);
        }
        self.key.clear();
        // writing into a String cannot fail
        let _ = self.key.write_fmt(key);
        match self.until.get_mut(self.key.as_str()) {
            Some(t) if *t > now => false,
            Some(t) => {
                *t = now + suppress_us;
                true
            }
            None => {
                self.until.insert(self.key.clone(), now + suppress_us);
                true
            }
        }
    }
}

#[derive(Default)]
struct ScanState {
    /// (dst, port) → last probe time.
    probes: HashMap<(IpAddr, u16), i64>,
    /// The same probes ordered by time, so that expiry does not pass over
    /// all of them at every probe (a scanner has thousands).
    by_time: BTreeSet<(i64, IpAddr, u16)>,
    /// Probes per target and per port, kept with `probes`.
    per_target: HashMap<IpAddr, usize>,
    per_port: HashMap<u16, usize>,
}

impl ScanState {
    fn insert(&mut self, target: IpAddr, port: u16, t: i64) {
        match self.probes.insert((target, port), t) {
            Some(old) => {
                self.by_time.remove(&(old, target, port));
            }
            None => {
                *self.per_target.entry(target).or_default() += 1;
                *self.per_port.entry(port).or_default() += 1;
            }
        }
        self.by_time.insert((t, target, port));
    }

    fn remove(&mut self, target: IpAddr, port: u16) {
        let Some(old) = self.probes.remove(&(target, port)) else { return };
        self.by_time.remove(&(old, target, port));
        fn down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        down(&mut self.per_target, target);
        down(&mut self.per_port, port);
    }

    /// Forgets the probes more than `window` before `now`.
    fn expire(&mut self, now: i64, window: i64) {
        while let Some(&(t, target, port)) = self.by_time.first()
            && now - t > window
        {
            self.remove(target, port);
        }
    }
}

#[derive(Default)]
struct BruteState {
    attempts: VecDeque<i64>,
    failed_logins: u64,
}

#[derive(Default)]
struct DnsState {
    /// A randomly seeded fast hash: names are chosen by whoever queries.
    names: HashSet<String, foldhash::fast::RandomState>,
    first_us: i64,
    entropy_sum: f64,
    length_sum: f64,
    tunnel_qtypes: usize,
    queries: usize,
    long_names: usize,
}

#[derive(Default)]
struct IcmpState {
    times: VecDeque<i64>,
    bytes: u64,
    last_digest: Option<u64>,
}

#[derive(Default)]
struct BeaconState {
    starts: VecDeque<i64>,
}

pub struct Behaviour {
    /// Shared so that a detector takes its settings without copying them
    /// (some hold lists) at every packet.
    cfg: std::sync::Arc<BehaviourConfig>,
    scans: Tracker<IpAddr, ScanState>,
    brute: Tracker<(IpAddr, IpAddr, u16), BruteState>,
    dns: Tracker<(IpAddr, String), DnsState>,
    icmp: Tracker<(IpAddr, IpAddr), IcmpState>,
    beacons: Tracker<(IpAddr, IpAddr, u16), BeaconState>,
    quiet: Quiet,
    pub stats: BehaviourStats,
}

/// Shannon entropy in bits per symbol.
pub fn entropy(data: &[u8]) -> f64 {
    entropy_of(data.iter().copied())
}

/// [`entropy`] of the bytes of an iterator.
fn entropy_of(data: impl Iterator<Item = u8>) -> f64 {
    let mut counts = [0u32; 256];
    let mut len = 0u32;
    for b in data {
        counts[b as usize] += 1;
        len += 1;
    }
    if len == 0 {
        return 0.0;
    }
    let n = f64::from(len);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Public suffixes with two labels that matter here (Vietnamese and common
/// ones); the parent of `a.b.gov.vn` is `b.gov.vn`.
const TWO_LABEL_SUFFIXES: &[&str] = &[
    "gov.vn",
    "com.vn",
    "net.vn",
    "org.vn",
    "edu.vn",
    "ac.vn",
    "info.vn",
    "int.vn",
    "name.vn",
    "pro.vn",
    "biz.vn",
    "health.vn",
    "co.uk",
    "org.uk",
    "ac.uk",
    "com.au",
    "net.au",
    "co.jp",
    "com.cn",
    "com.br",
    "co.kr",
    "com.sg",
];

/// The registered domain of a name, and the part in front of it. Tunnels
/// that query without a domain of their own (dnscat's `dnscat.<hex>...`)
/// are grouped by their first label instead.
pub fn split_parent(name: &str) -> (String, String) {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    // the last two labels, as a slice of `name`
    let last_two = || &name[name.len() - labels[n - 2].len() - labels[n - 1].len() - 1..];
    let keep = if n >= 3 && TWO_LABEL_SUFFIXES.contains(&last_two()) { 3 } else { 2 };
    if n <= keep {
        return (name, String::new());
    }
    let encoded = |l: &str| l.len() >= 16 && entropy(l.as_bytes()) >= 3.0;
    // the labels are slices of `name`: a run of labels is a slice of it too
    let split = |first: usize| {
        let cut: usize = labels[..first].iter().map(|l| l.len() + 1).sum();
        (name[..cut - 1].to_string(), name[cut..].to_string())
    };
    if n >= 2 && (encoded(labels[n - 1]) || encoded(labels[n - 2])) {
        let (first, rest) = split(1);
        return (first, rest);
    }
    let (data, parent) = split(n - keep);
    (parent, data)
}

impl Behaviour {
    pub fn new(cfg: BehaviourConfig) -> Behaviour {
        let cap = cfg.max_tracked;
        Behaviour {
            cfg: std::sync::Arc::new(cfg),
            scans: Tracker::new(cap),
            brute: Tracker::new(cap),
            dns: Tracker::new(cap),
            icmp: Tracker::new(cap),
            beacons: Tracker::new(cap),
            quiet: Quiet::default(),
            stats: BehaviourStats::default(),
        }
    }

    /// Every packet, after the flow was updated.
    /// Whether [`Behaviour::packet`] has anything to do for this packet,
    /// decided without the lock the capture workers share: most packets
    /// (those of conversations under way) have nothing to tell it.
    pub fn wants_packet(
        cfg: &BehaviourConfig,
        flow: &Flow,
        dir: Dir,
        p: &Packet<'_>,
        new_flow: bool,
    ) -> bool {
        if new_flow && cfg.beacon.enabled {
            return true;
        }
        match p.proto {
            PROTO_TCP if cfg.portscan.enabled => {
                let Some(t) = flow.tcp.as_ref() else { return false };
                if t.flags[0] & TCP_SYN == 0 {
                    return false;
                }
                if t.streams[0].stats.delivered > 0 {
                    // a conversation: cancels the probe once
                    return !flow.scan_settled;
                }
                is_probe(dir, p)
            }
            PROTO_ICMP | PROTO_ICMPV6 => {
                p.icmp.is_some() && (cfg.portscan.enabled || cfg.icmp_tunnel.enabled)
            }
            _ => false,
        }
    }

    pub fn packet(&mut self, flow: &Flow, dir: Dir, p: &Packet<'_>, new_flow: bool, out: &mut Vec<Finding>) {
        let now = canhgac_proto::timefmt::micros(p.ts);
        if p.proto == PROTO_TCP && self.cfg.portscan.enabled {
            self.portscan_tcp(flow, dir, p, now, out);
        }
        if matches!(p.proto, PROTO_ICMP | PROTO_ICMPV6)
            && let Some((t, code)) = p.icmp
        {
            {
                // port unreachable answers a UDP probe
                let unreachable = (p.proto == PROTO_ICMP && t == 3 && code == 3)
                    || (p.proto == PROTO_ICMPV6 && t == 1 && code == 4);
                if unreachable && self.cfg.portscan.enabled {
                    self.icmp_unreachable(p, now, out);
                }
                let echo = (p.proto == PROTO_ICMP && (t == 8 || t == 0))
                    || (p.proto == PROTO_ICMPV6 && (t == 128 || t == 129));
                if echo && self.cfg.icmp_tunnel.enabled {
                    self.icmp_echo(p, now, out);
                }
            }
        }
        if new_flow && self.cfg.beacon.enabled {
            self.beacon(flow, now, out);
        }
    }

    fn portscan_tcp(&mut self, flow: &Flow, dir: Dir, p: &Packet<'_>, now: i64, out: &mut Vec<Finding>) {
        let (scanner, target, port) = (flow.client.0, flow.server.0, flow.server.1);
        let initiated_by_syn = flow.tcp.as_ref().is_some_and(|t| t.flags[0] & TCP_SYN != 0);
        if !initiated_by_syn {
            return; // backscatter or a connection picked up in the middle
        }
        let client_data = flow.tcp.as_ref().is_some_and(|t| t.streams[0].stats.delivered > 0);
        let st = self.scans.entry(&scanner, &mut self.stats.evictions);
        if client_data {
            // a real conversation: not a probe
            st.remove(target, port);
            return;
        }
        if !is_probe(dir, p) {
            return;
        }
        st.insert(target, port, now);
        self.check_scan(scanner, target, port, now, out);
    }

    fn icmp_unreachable(&mut self, p: &Packet<'_>, now: i64, out: &mut Vec<Finding>) {
        // The quoted datagram: IP header then UDP header of the probe.
        let quoted = p.payload;
        let Ok(inner) = crate::decode::ip(quoted, p.ts, 0, quoted.len()) else { return };
        let Some(inner) = inner else { return };
        if inner.proto != crate::decode::PROTO_UDP || inner.src != p.dst {
            return;
        }
        let st = self.scans.entry(&inner.src, &mut self.stats.evictions);
        st.insert(inner.dst, inner.dport, now);
        self.check_scan(inner.src, inner.dst, inner.dport, now, out);
    }

    fn check_scan(&mut self, scanner: IpAddr, target: IpAddr, port: u16, now: i64, out: &mut Vec<Finding>) {
        let all = std::sync::Arc::clone(&self.cfg);
        let cfg = &all.portscan;
        let window = cfg.window_secs * US;
        let Some(st) = self.scans.map.get_mut(&scanner) else { return };
        st.expire(now, window);
        let ports_of_target = st.per_target.get(&target).copied().unwrap_or(0);
        let hosts_on_port = st.per_port.get(&port).copied().unwrap_or(0);
        if ports_of_target >= cfg.vertical_ports
            && self.quiet.allow(format_args!("scan-v|{scanner}|{target}"), now, cfg.suppress_secs * US)
        {
            let mut ports: Vec<u16> =
                st.probes.keys().filter(|(h, _)| *h == target).map(|(_, p)| *p).collect();
            ports.sort_unstable();
            self.stats.findings += 1;
            out.push(Finding {
                detector: "portscan",
                signature_id: crate::eve::sid::PORTSCAN_VERTICAL,
                signature: format!(
                    "CANHGAC SCAN vertical port scan of {target} from {scanner} ({ports_of_target} ports)"
                ),
                category: "Attempted Information Leak",
                severity: 2,
                technique: "T1046",
                src: scanner,
                dst: Some(target),
                dst_port: None,
                domain: None,
                details: serde_json::json!({
                    "scan": "vertical",
                    "ports_probed": ports_of_target,
                    "ports_sample": ports.iter().take(20).collect::<Vec<_>>(),
                    "window_secs": cfg.window_secs,
                }),
            });
        }
        if hosts_on_port >= cfg.horizontal_hosts
            && self.quiet.allow(format_args!("scan-h|{scanner}|{port}"), now, cfg.suppress_secs * US)
        {
            let Some(st) = self.scans.map.get(&scanner) else { return };
            let mut hosts: Vec<String> =
                st.probes.keys().filter(|(_, pt)| *pt == port).map(|(h, _)| h.to_string()).collect();
            hosts.sort();
            self.stats.findings += 1;
            out.push(Finding {
                detector: "portscan",
                signature_id: crate::eve::sid::PORTSCAN_HORIZONTAL,
                signature: format!(
                    "CANHGAC SCAN horizontal scan of port {port} from {scanner} ({hosts_on_port} hosts)"
                ),
                category: "Attempted Information Leak",
                severity: 2,
                technique: "T1046",
                src: scanner,
                dst: None,
                dst_port: Some(port),
                domain: None,
                details: serde_json::json!({
                    "scan": "horizontal",
                    "hosts_probed": hosts_on_port,
                    "hosts_sample": hosts.iter().take(20).collect::<Vec<_>>(),
                    "window_secs": cfg.window_secs,
                }),
            });
        }
    }

    /// An FTP server reply line (from the server to the client).
    pub fn ftp_reply(&mut self, flow: &Flow, line: &[u8]) {
        if line.starts_with(b"530") && self.cfg.bruteforce.enabled {
            let key = (flow.client.0, flow.server.0, flow.server.1);
            let st = self.brute.entry(&key, &mut self.stats.evictions);
            st.failed_logins += 1;
        }
    }

    /// A flow ended (closed or timed out).
    pub fn flow_end(&mut self, flow: &Flow, out: &mut Vec<Finding>) {
        if flow.proto == crate::decode::PROTO_UDP
            && self.cfg.portscan.enabled
            && flow.pkts[1] == 0
            && flow.pkts[0] <= 3
        {
            // an unanswered UDP datagram: a probe (counted at its start)
            let (scanner, target, port) = (flow.client.0, flow.server.0, flow.server.1);
            let st = self.scans.entry(&scanner, &mut self.stats.evictions);
            st.insert(target, port, flow.first_us);
            self.check_scan(scanner, target, port, flow.last_us, out);
        }
        if !self.cfg.bruteforce.enabled || flow.proto != PROTO_TCP {
            return;
        }
        let all = std::sync::Arc::clone(&self.cfg);
        let cfg = &all.bruteforce;
        let port = flow.server.1;
        if !cfg.ports.contains(&port) || !flow.established() {
            return;
        }
        let short = flow.bytes[1] <= cfg.max_session_bytes && flow.age_secs() <= cfg.max_session_secs;
        if !short {
            return;
        }
        if cfg.ssh_auth_inference
            && let crate::app::AppState::Ssh(ssh) = &flow.app
            && ssh.auth.success
        {
            // the server accepted the authentication: a login, not a guess
            return;
        }
        let now = flow.last_us;
        let key = (flow.client.0, flow.server.0, port);
        let st = self.brute.entry(&key, &mut self.stats.evictions);
        st.attempts.push_back(now);
        while st.attempts.front().is_some_and(|t| now - *t > cfg.window_secs * US) {
            st.attempts.pop_front();
        }
        let n = st.attempts.len();
        let failed = st.failed_logins;
        if n >= cfg.attempts
            && self.quiet.allow(format_args!("brute|{}|{}|{port}", key.0, key.1), now, cfg.suppress_secs * US)
        {
            let service = service_name(port);
            self.stats.findings += 1;
            out.push(Finding {
                detector: "bruteforce",
                signature_id: crate::eve::sid::BRUTEFORCE,
                signature: format!(
                    "CANHGAC BRUTEFORCE {service} guessing against {} from {} ({n} short sessions)",
                    key.1, key.0
                ),
                category: "Attempted User Privilege Gain",
                severity: 2,
                technique: "T1110",
                src: key.0,
                dst: Some(key.1),
                dst_port: Some(port),
                domain: None,
                details: serde_json::json!({
                    "service": service,
                    "sessions": n,
                    "failed_logins_seen": failed,
                    "window_secs": cfg.window_secs,
                }),
            });
        }
    }

    /// A DNS query from `client`.
    pub fn dns_query(
        &mut self,
        client: IpAddr,
        server: IpAddr,
        name: &str,
        qtype: u16,
        ts_us: i64,
        out: &mut Vec<Finding>,
    ) {
        if !self.cfg.dns_tunnel.enabled || name.is_empty() {
            return;
        }
        let all = std::sync::Arc::clone(&self.cfg);
        let cfg = &all.dns_tunnel;
        let (parent, data) = split_parent(name);
        if data.is_empty() {
            return;
        }
        let key = (client, parent.clone());
        let st = self.dns.entry(&key, &mut self.stats.evictions);
        if ts_us - st.first_us > cfg.window_secs * US {
            *st = DnsState { first_us: ts_us, ..Default::default() };
        }
        if st.first_us == 0 {
            st.first_us = ts_us;
        }
        st.queries += 1;
        // TXT, NULL, CNAME, MX, private-use types
        if matches!(qtype, 5 | 10 | 15 | 16) || qtype >= 65280 {
            st.tunnel_qtypes += 1;
        }
        let e = entropy_of(data.bytes().filter(|b| *b != b'.'));
        if name.len() >= cfg.long_name && e >= cfg.min_entropy {
            st.long_names += 1;
        }
        let data_len = data.len();
        if st.names.len() < 10_000 && st.names.insert(data) {
            st.entropy_sum += e;
            st.length_sum += data_len as f64;
        }
        let unique = st.names.len();
        if unique < cfg.unique_names {
            return;
        }
        let mean_entropy = st.entropy_sum / unique as f64;
        let mean_len = st.length_sum / unique as f64;
        let qtype_ratio = st.tunnel_qtypes as f64 / st.queries as f64;
        let encoded =
            mean_entropy >= cfg.min_entropy || mean_len >= cfg.min_label_length || st.long_names >= 3;
        let suspicious = encoded || qtype_ratio >= cfg.min_tunnel_qtype_ratio;
        if !suspicious {
            return;
        }
        if !self.quiet.allow(format_args!("dnst|{client}|{parent}"), ts_us, cfg.suppress_secs * US) {
            return;
        }
        let queries = st.queries;
        self.stats.findings += 1;
        out.push(Finding {
            detector: "dns-tunnel",
            signature_id: crate::eve::sid::DNS_TUNNEL,
            signature: format!(
                "CANHGAC DNS tunnel suspected: {unique} unique names under {parent} from {client}"
            ),
            category: "Potentially Bad Traffic",
            severity: 2,
            technique: "T1071.004",
            src: client,
            dst: Some(server),
            dst_port: Some(53),
            domain: Some(parent.clone()),
            details: serde_json::json!({
                "parent_domain": parent,
                "unique_names": unique,
                "queries": queries,
                "mean_entropy": (mean_entropy * 100.0).round() / 100.0,
                "mean_length": (mean_len * 10.0).round() / 10.0,
                "tunnel_qtype_ratio": (qtype_ratio * 100.0).round() / 100.0,
                "window_secs": cfg.window_secs,
            }),
        });
    }

    fn icmp_echo(&mut self, p: &Packet<'_>, now: i64, out: &mut Vec<Finding>) {
        let all = std::sync::Arc::clone(&self.cfg);
        let cfg = &all.icmp_tunnel;
        // ICMP echo: the decoder's payload is the data after the 8-byte
        // header (type, code, checksum, identifier, sequence)
        let data = p.payload;
        let (a, b) = if p.src <= p.dst { (p.src, p.dst) } else { (p.dst, p.src) };
        let st = self.icmp.entry(&(a, b), &mut self.stats.evictions);
        // ping repeats one pattern (after a timestamp); tunnels carry data
        let tail = data.get(16..).unwrap_or(&[]);
        let digest = tail
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let changed = st.last_digest.is_some_and(|d| d != digest);
        st.last_digest = Some(digest);
        let big = data.len() > cfg.min_payload;
        let random = data.len() >= 32 && entropy(data) >= cfg.min_entropy;
        if !changed || (!big && !random) {
            return;
        }
        st.times.push_back(now);
        st.bytes += data.len() as u64;
        while st.times.front().is_some_and(|t| now - *t > cfg.window_secs * US) {
            st.times.pop_front();
        }
        let n = st.times.len();
        let bytes = st.bytes;
        if n >= cfg.packets && self.quiet.allow(format_args!("icmpt|{a}|{b}"), now, cfg.suppress_secs * US) {
            // the side that sends echo requests drives the tunnel
            let client = if matches!(p.icmp, Some((8, _)) | Some((128, _))) { p.src } else { p.dst };
            let server = if client == p.src { p.dst } else { p.src };
            self.stats.findings += 1;
            out.push(Finding {
                detector: "icmp-tunnel",
                signature_id: crate::eve::sid::ICMP_TUNNEL,
                signature: format!(
                    "CANHGAC ICMP tunnel suspected between {client} and {server} ({n} data-carrying echoes)"
                ),
                category: "Potentially Bad Traffic",
                severity: 2,
                technique: "T1095",
                src: client,
                dst: Some(server),
                dst_port: None,
                domain: None,
                details: serde_json::json!({
                    "echo_packets": n,
                    "payload_bytes": bytes,
                    "window_secs": cfg.window_secs,
                }),
            });
        }
    }

    fn beacon(&mut self, flow: &Flow, now: i64, out: &mut Vec<Finding>) {
        let all = std::sync::Arc::clone(&self.cfg);
        let cfg = &all.beacon;
        if cfg.ignore_ports.contains(&flow.server.1) || flow.proto == PROTO_ICMP || flow.proto == PROTO_ICMPV6
        {
            return;
        }
        let dst = flow.server.0;
        let dst = match dst {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(dst),
            v4 => v4,
        };
        if !cfg.include_internal && cfg.internal_networks.iter().any(|n| n.contains(&dst)) {
            return;
        }
        let key = (flow.client.0, flow.server.0, flow.server.1);
        let st = self.beacons.entry(&key, &mut self.stats.evictions);
        // in time order, whatever order the flows came in: two capture
        // workers hand their new flows to this shared detector each at its
        // own pace
        let at = st.starts.iter().rposition(|t| *t <= now).map_or(0, |i| i + 1);
        st.starts.insert(at, now);
        while st.starts.len() > 32 {
            st.starts.pop_front();
        }
        if st.starts.len() < cfg.occurrences.max(3) {
            return;
        }
        let recent: Vec<i64> = st.starts.iter().rev().take(cfg.occurrences.max(3)).copied().collect();
        let gaps: Vec<f64> = recent.windows(2).map(|w| (w[0] - w[1]) as f64 / US as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        if mean < cfg.min_period_secs || mean > cfg.max_period_secs {
            return;
        }
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        if cv > cfg.max_jitter {
            return;
        }
        if !self.quiet.allow(
            format_args!("beacon|{}|{}|{}", key.0, key.1, key.2),
            now,
            cfg.suppress_secs * US,
        ) {
            return;
        }
        self.stats.findings += 1;
        out.push(Finding {
            detector: "beacon",
            signature_id: crate::eve::sid::BEACON,
            signature: format!("CANHGAC BEACON {} contacts {}:{} every {:.0}s", key.0, key.1, key.2, mean),
            category: "Potentially Bad Traffic",
            severity: 3,
            technique: "T1071",
            src: key.0,
            dst: Some(key.1),
            dst_port: Some(key.2),
            domain: None,
            details: serde_json::json!({
                "period_secs": (mean * 10.0).round() / 10.0,
                "jitter": (cv * 1000.0).round() / 1000.0,
                "connections": gaps.len() + 1,
            }),
        });
    }
}

fn service_name(port: u16) -> &'static str {
    match port {
        21 => "FTP",
        22 => "SSH",
        23 => "Telnet",
        25 | 465 | 587 => "SMTP",
        110 | 995 => "POP3",
        143 | 993 => "IMAP",
        1433 => "MSSQL",
        3306 => "MySQL",
        3389 => "RDP",
        5432 => "PostgreSQL",
        5900 => "VNC",
        _ => "authentication service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_entropy() {
        assert_eq!(split_parent("a.b.example.com"), ("example.com".into(), "a.b".into()));
        assert_eq!(split_parent("x.portal.hanoi.gov.vn."), ("hanoi.gov.vn".into(), "x.portal".into()));
        assert_eq!(split_parent("example.com"), ("example.com".into(), String::new()));
        assert!(entropy(b"aaaa") < 0.01);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dns_tunnel_needs_many_encoded_names_and_ignores_ordinary_browsing() {
        let mut b = Behaviour::new(BehaviourConfig::default());
        let mut out = Vec::new();
        for i in 0..60 {
            let name = format!("www{i}.example.com");
            b.dns_query(ip("10.0.0.1"), ip("10.0.0.53"), &name, 1, i * US, &mut out);
        }
        assert!(out.is_empty(), "short, low-entropy names are not a tunnel");
        for i in 0..60 {
            let noise: String = (0..36)
                .map(|j| char::from(b"abcdefghijklmnopqrstuvwxyz234567"[((i * 7 + j * 13) % 32) as usize]))
                .collect();
            let label = format!("{i:04}{noise}");
            b.dns_query(
                ip("10.0.0.2"),
                ip("10.0.0.53"),
                &format!("{label}.t.pirate.sea"),
                10,
                i * US,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].detector, "dns-tunnel");
        assert_eq!(out[0].details["parent_domain"], "pirate.sea");
    }

    /// Periodic connections to a destination inside the agency's networks
    /// (RFC 1918 by default) are not beacons; outside, or with
    /// `include_internal`, they are.
    #[test]
    fn beacon_ignores_internal_destinations_unless_configured() {
        use crate::decode::TCP_SYN;
        let run = |cfg: BeaconConfig, dst: &str| {
            let mut b = Behaviour::new(BehaviourConfig { beacon: cfg, ..Default::default() });
            let mut out = Vec::new();
            let mut table = crate::flow::FlowTable::new(crate::flow::FlowConfig::default());
            let mut ended = Vec::new();
            for i in 0..12i64 {
                let p = crate::decode::Packet {
                    ts: time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + i * 60).unwrap(),
                    src: ip("10.0.0.5"),
                    dst: ip(dst),
                    proto: PROTO_TCP,
                    ttl: 64,
                    sport: 40000 + i as u16,
                    dport: 443,
                    tcp: None,
                    tcp_flags: TCP_SYN,
                    icmp: None,
                    payload: &[],
                    frag: None,
                    tunnel: 0,
                    len: 60,
                };
                let (flow, dir, new) = table.packet(&p, &mut ended);
                b.packet(flow, dir, &p, new, &mut out);
            }
            out.iter().filter(|f| f.detector == "beacon").count()
        };
        assert_eq!(run(BeaconConfig::default(), "203.0.113.10"), 1);
        assert_eq!(run(BeaconConfig::default(), "10.0.0.9"), 0);
        assert_eq!(run(BeaconConfig::default(), "192.168.3.4"), 0);
        assert_eq!(run(BeaconConfig { include_internal: true, ..Default::default() }, "10.0.0.9"), 1);
        let own: Vec<ipnet::IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
        assert_eq!(
            run(BeaconConfig { internal_networks: own.clone(), ..Default::default() }, "203.0.113.10"),
            0
        );
        assert_eq!(run(BeaconConfig { internal_networks: own, ..Default::default() }, "10.0.0.9"), 1);
        let bad: Result<BeaconConfig, _> = toml::from_str("internal_networks = [\"10.0.0.0/33\"]");
        assert!(bad.unwrap_err().to_string().contains("10.0.0.0/33"));
    }
}
