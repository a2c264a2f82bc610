//! Detectors over [`FirewallEvent`]s. Pure: time is the log's.
//!
//! | detector | fires | severity | technique |
//! |----------|-------|----------|-----------|
//! | `portscan` | one source denied on `vertical_ports` distinct ports (default 25) of one host within `window_secs` (120): the thresholds of the wire detector, `[detect.portscan]` | 2 | T1046 |
//! | `sweep` | one source denied on one port of `horizontal_hosts` distinct hosts (default 20) within the same window | 2 | T1046 |
//! | `ioc` | traffic, allowed or denied, from or to an address (or address and port) of the indicator lists; once per (source, destination, indicator) per `ioc_suppress_secs` (3600) | `[ioc] severity` (2) | T1071 |
//! | `firewall-allowed-after-denied` | a connection from a source allowed after `denied` (default 20) denied connections of that source within `window_secs` (3600) | 2 | T1190 |
//!
//! Only denied connection attempts count for `portscan` and `sweep`: a
//! TCP packet with SYN and no ACK (or with its flags not logged), any
//! other protocol; `log` events (a prefix that names no action) never do.
//! `portscan` and `sweep` fire at most once per source per
//! `suppress_secs` (3600): one alert per source and episode, with the
//! counts and at most 20 sample ports or hosts.
//!
//! # Persisted state (spool detector state, prefix `hw`)
//!
//! | key | value |
//! |-----|-------|
//! | `hws` source | JSON [`SourceState`]: probes in the window, denied counts, quiet times |
//!
//! Sources are forgotten (their keys deleted) once idle for longer than
//! every window, or beyond `max_tracked`, least recently seen first
//! (counted as evictions); a source keeps at most 4096 probes (oldest
//! dropped first). The `ioc` suppression is kept in memory only (at most
//! 10,000 entries): after a restart an indicator may alert once more.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
};

use canhgac_proto::v1::RecordKind;
use hashlink::LinkedHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{FirewallEvent, firewall_object};
use crate::{
    detect::{IocSet, Output, StateChange, behaviour::PortscanConfig},
    eve::{self, AlertInfo, sid},
    host::origin::LogOrigin,
    spool::NewRecord,
};

pub const STATE_PREFIX: &[u8] = b"hw";
const SOURCE_KEY: u8 = b's';
const MAX_PROBES: usize = 4096;
const MAX_IOC_QUIET: usize = 10_000;
const SAMPLES: usize = 20;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AllowedAfterDeniedConfig {
    pub enabled: bool,
    /// Denied connections of the source before the allowed one.
    pub denied: u32,
    pub window_secs: i64,
}

impl Default for AllowedAfterDeniedConfig {
    fn default() -> Self {
        AllowedAfterDeniedConfig { enabled: true, denied: 20, window_secs: 3600 }
    }
}

/// `[host.firewall_logs.detect]` in the agent configuration (the scan thresholds
/// are `[detect.portscan]`'s, shared with the network sensor).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallDetectConfig {
    pub allowed_after_denied: AllowedAfterDeniedConfig,
    pub ioc_enabled: bool,
    pub ioc_suppress_secs: i64,
    /// Sources remembered at most.
    pub max_tracked: usize,
}

impl Default for FirewallDetectConfig {
    fn default() -> Self {
        FirewallDetectConfig {
            allowed_after_denied: AllowedAfterDeniedConfig::default(),
            ioc_enabled: true,
            ioc_suppress_secs: 3600,
            max_tracked: 50_000,
        }
    }
}

/// What is remembered of one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceState {
    /// Denied connection attempts in the scan window: (unix seconds,
    /// destination, port), one per destination and port, oldest first.
    #[serde(default)]
    probes: Vec<(i64, IpAddr, u16)>,
    /// Denied connections of the current run (no gap longer than the
    /// allowed-after-denied window).
    #[serde(default)]
    denied: u64,
    #[serde(default)]
    denied_first: i64,
    #[serde(default)]
    denied_last: i64,
    #[serde(default)]
    alerted_allowed: bool,
    #[serde(default)]
    quiet_scan: i64,
    #[serde(default)]
    quiet_sweep: i64,
    #[serde(default)]
    seen: i64,
    /// Probe index by (destination, port), rebuilt on restore.
    #[serde(skip)]
    index: HashMap<(IpAddr, u16), i64>,
    #[serde(skip)]
    per_target: HashMap<IpAddr, usize>,
    #[serde(skip)]
    per_port: HashMap<u16, usize>,
}

impl SourceState {
    fn rebuild(&mut self) {
        self.probes.sort_unstable();
        let probes = std::mem::take(&mut self.probes);
        self.index.clear();
        self.per_target.clear();
        self.per_port.clear();
        for (t, d, p) in probes {
            self.insert(t, d, p);
        }
    }

    fn insert(&mut self, t: i64, dst: IpAddr, port: u16) {
        if let Some(old) = self.index.insert((dst, port), t) {
            self.probes.retain(|(pt, pd, pp)| !(*pt == old && *pd == dst && *pp == port));
        } else {
            *self.per_target.entry(dst).or_default() += 1;
            *self.per_port.entry(port).or_default() += 1;
        }
        // the log's time may step back a little: keep the list sorted
        let at = self.probes.partition_point(|p| p.0 <= t);
        self.probes.insert(at, (t, dst, port));
        while self.probes.len() > MAX_PROBES {
            self.remove_first();
        }
    }

    fn remove_first(&mut self) {
        if self.probes.is_empty() {
            return;
        }
        let (t, dst, port) = self.probes.remove(0);
        if self.index.get(&(dst, port)) == Some(&t) {
            self.index.remove(&(dst, port));
            down(&mut self.per_target, dst);
            down(&mut self.per_port, port);
        }
    }

    fn expire(&mut self, now: i64, window: i64) {
        let keep_from = self.probes.partition_point(|p| now - p.0 > window);
        for _ in 0..keep_from {
            self.remove_first();
        }
    }
}

fn down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
    if let Some(n) = m.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&k);
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirewallDetectStats {
    pub alerts: u64,
    /// Sources forgotten at `max_tracked`.
    pub evictions: u64,
}

pub struct FirewallDetector {
    cfg: FirewallDetectConfig,
    scan: PortscanConfig,
    ioc: Arc<IocSet>,
    ioc_severity: u32,
    sources: LinkedHashMap<IpAddr, SourceState>,
    dirty: BTreeSet<IpAddr>,
    ioc_quiet: LinkedHashMap<(u32, IpAddr, IpAddr), i64>,
    last_sweep: i64,
    pub stats: FirewallDetectStats,
}

impl FirewallDetector {
    pub fn new(
        cfg: FirewallDetectConfig,
        scan: PortscanConfig,
        ioc: Arc<IocSet>,
        ioc_severity: u32,
    ) -> FirewallDetector {
        FirewallDetector {
            cfg,
            scan,
            ioc,
            ioc_severity: ioc_severity.clamp(1, 4),
            sources: LinkedHashMap::new(),
            dirty: BTreeSet::new(),
            ioc_quiet: LinkedHashMap::new(),
            last_sweep: i64::MIN,
            stats: FirewallDetectStats::default(),
        }
    }

    pub fn set_ioc(&mut self, ioc: Arc<IocSet>) {
        self.ioc = ioc;
    }

    /// Restores a state entry (key without the `hw` prefix); false when
    /// the key is not the detector's.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some((&SOURCE_KEY, k)) = key.split_first() else { return false };
        if let (Some(ip), Ok(mut s)) = (
            std::str::from_utf8(k).ok().and_then(|t| t.parse::<IpAddr>().ok()),
            serde_json::from_slice::<SourceState>(value),
        ) {
            s.rebuild();
            self.sources.insert(ip, s);
        }
        true
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn longest_memory(&self) -> i64 {
        self.scan
            .window_secs
            .max(self.scan.suppress_secs)
            .max(self.cfg.allowed_after_denied.window_secs)
            .max(1)
    }

    fn source(&mut self, ip: IpAddr, now: i64) -> &mut SourceState {
        self.dirty.insert(ip);
        if !self.sources.contains_key(&ip) {
            while self.sources.len() >= self.cfg.max_tracked.max(1) {
                match self.sources.pop_front() {
                    Some((old, _)) => {
                        self.dirty.insert(old);
                        self.stats.evictions += 1;
                    }
                    None => break,
                }
            }
            self.sources.insert(ip, SourceState { seen: now, ..Default::default() });
        }
        self.sources.to_back(&ip);
        match self.sources.get_mut(&ip) {
            Some(s) => s,
            None => unreachable_source(),
        }
    }

    fn sweep(&mut self, now: i64) {
        if now < self.last_sweep.saturating_add(60) {
            return;
        }
        self.last_sweep = now;
        let cutoff = now - self.longest_memory();
        let stale: Vec<IpAddr> =
            self.sources.iter().filter(|(_, s)| s.seen < cutoff).map(|(k, _)| *k).collect();
        for k in stale {
            self.sources.remove(&k);
            self.dirty.insert(k);
        }
    }

    /// One event; alerts go to `out` (state changes via
    /// [`FirewallDetector::take_state`]).
    pub fn on_event(&mut self, ev: &FirewallEvent, source: &str, origin: &LogOrigin, out: &mut Output) {
        let now = ev.ts.unix_timestamp();
        self.sweep(now);
        if self.cfg.ioc_enabled && !self.ioc.is_empty() {
            self.ioc(ev, source, origin, now, out);
        }
        if ev.action.is_denied() {
            self.denied(ev, source, origin, now, out);
        } else if ev.action == super::Action::Allow {
            self.allowed(ev, source, origin, now, out);
        }
    }

    fn denied(&mut self, ev: &FirewallEvent, source: &str, origin: &LogOrigin, now: i64, out: &mut Output) {
        let scan = self.scan.clone();
        let aad = self.cfg.allowed_after_denied.clone();
        let s = self.source(ev.src, now);
        s.seen = s.seen.max(now);
        if s.denied > 0 && now - s.denied_last > aad.window_secs {
            s.denied = 0;
            s.alerted_allowed = false;
        }
        if s.denied == 0 {
            s.denied_first = now;
        }
        s.denied += 1;
        s.denied_last = s.denied_last.max(now);
        if !scan.enabled || !ev.is_connection_attempt() {
            return;
        }
        let port = ev.dst_port.unwrap_or(0);
        s.insert(now, ev.dst, port);
        s.expire(now, scan.window_secs);
        let ports_of_target = s.per_target.get(&ev.dst).copied().unwrap_or(0);
        let hosts_on_port = s.per_port.get(&port).copied().unwrap_or(0);
        let fire_scan = ports_of_target >= scan.vertical_ports.max(2) && now >= s.quiet_scan;
        let fire_sweep =
            hosts_on_port >= scan.horizontal_hosts.max(2) && now >= s.quiet_sweep && ev.dst_port.is_some();
        if fire_scan {
            s.quiet_scan = now + scan.suppress_secs;
        }
        if fire_sweep {
            s.quiet_sweep = now + scan.suppress_secs;
        }
        let (mut ports, mut hosts) = (Vec::new(), Vec::new());
        if fire_scan {
            ports = s.probes.iter().filter(|p| p.1 == ev.dst).map(|p| p.2).collect();
            ports.sort_unstable();
            ports.dedup();
        }
        if fire_sweep {
            hosts = s.probes.iter().filter(|p| p.2 == port).map(|p| p.1).collect();
            hosts.sort_unstable();
            hosts.dedup();
        }
        let (denied, first) = (s.denied, s.denied_first);
        let targets = s.per_target.len();
        if fire_scan {
            let mut d = Map::new();
            d.insert("scan".into(), "vertical".into());
            d.insert("target".into(), ev.dst.to_string().into());
            d.insert("ports_denied".into(), (ports_of_target as u64).into());
            d.insert("ports_sample".into(), ports.iter().take(SAMPLES).copied().collect::<Vec<_>>().into());
            d.insert("targets".into(), (targets as u64).into());
            d.insert("denied".into(), denied.into());
            d.insert("window_secs".into(), scan.window_secs.into());
            d.insert("first_seen".into(), canhgac_proto::timefmt::eve(from_secs(first)).into());
            let sig = format!(
                "CANHGAC FIREWALL port scan of {} from {} ({ports_of_target} ports denied)",
                ev.dst, ev.src
            );
            let a = Alert {
                sid: sid::FIREWALL_PORTSCAN,
                category: "Attempted Information Leak",
                sig,
                severity: 2,
                detector: "portscan",
                technique: "T1046",
            };
            self.alert(ev, source, origin, a, ev.src, Some(ev.dst), d, out);
        }
        if fire_sweep {
            let mut d = Map::new();
            d.insert("scan".into(), "horizontal".into());
            d.insert("port".into(), port.into());
            d.insert("hosts_denied".into(), (hosts_on_port as u64).into());
            d.insert(
                "hosts_sample".into(),
                hosts.iter().take(SAMPLES).map(|h| h.to_string()).collect::<Vec<_>>().into(),
            );
            d.insert("denied".into(), denied.into());
            d.insert("window_secs".into(), scan.window_secs.into());
            d.insert("first_seen".into(), canhgac_proto::timefmt::eve(from_secs(first)).into());
            let sig = format!(
                "CANHGAC FIREWALL sweep of port {port} from {} ({hosts_on_port} hosts denied)",
                ev.src
            );
            let a = Alert {
                sid: sid::FIREWALL_SWEEP,
                category: "Attempted Information Leak",
                sig,
                severity: 2,
                detector: "sweep",
                technique: "T1046",
            };
            self.alert(ev, source, origin, a, ev.src, None, d, out);
        }
    }

    fn allowed(&mut self, ev: &FirewallEvent, source: &str, origin: &LogOrigin, now: i64, out: &mut Output) {
        let aad = self.cfg.allowed_after_denied.clone();
        if !aad.enabled {
            return;
        }
        let Some(s) = self.sources.get(&ev.src) else { return };
        let fire = !s.alerted_allowed
            && s.denied >= u64::from(aad.denied.max(1))
            && now - s.denied_last <= aad.window_secs;
        if !fire {
            return;
        }
        let s = self.source(ev.src, now);
        s.alerted_allowed = true;
        s.seen = s.seen.max(now);
        let (denied, first, last) = (s.denied, s.denied_first, s.denied_last);
        let mut d = Map::new();
        d.insert("denied".into(), denied.into());
        d.insert("first_denied".into(), canhgac_proto::timefmt::eve(from_secs(first)).into());
        d.insert("last_denied".into(), canhgac_proto::timefmt::eve(from_secs(last)).into());
        d.insert("window_secs".into(), aad.window_secs.into());
        let sig = format!(
            "CANHGAC FIREWALL connection from {} to {}{} allowed after {denied} denied",
            ev.src,
            ev.dst,
            ev.dst_port.map(|p| format!(":{p}")).unwrap_or_default()
        );
        let a = Alert {
            sid: sid::FIREWALL_ALLOWED_AFTER_DENIED,
            category: "Attempted Administrator Privilege Gain",
            sig,
            severity: 2,
            detector: "firewall-allowed-after-denied",
            technique: "T1190",
        };
        self.alert(ev, source, origin, a, ev.src, Some(ev.dst), d, out);
    }

    fn ioc(&mut self, ev: &FirewallEvent, source: &str, origin: &LogOrigin, now: i64, out: &mut Output) {
        // the listed end is the bad one: the attacker when it is the source,
        // the destination an internal host reached otherwise
        let (hit, listed_is_src) = if let Some(h) = self.ioc.match_ip(ev.src) {
            (h, true)
        } else if let Some(h) = ev.dst_port.and_then(|p| self.ioc.match_ip_port(ev.dst, p)) {
            (h, false)
        } else if let Some(h) = self.ioc.match_ip(ev.dst) {
            (h, false)
        } else {
            return;
        };
        let key = (hit.id, ev.src, ev.dst);
        if let Some(until) = self.ioc_quiet.get(&key)
            && now < *until
        {
            return;
        }
        self.ioc_quiet.insert(key, now + self.cfg.ioc_suppress_secs);
        while self.ioc_quiet.len() > MAX_IOC_QUIET {
            self.ioc_quiet.pop_front();
        }
        let mut d = Map::new();
        d.insert("indicator".into(), hit.value.clone().into());
        d.insert("indicator_kind".into(), hit.kind.as_str().into());
        d.insert("list".into(), hit.list.clone().into());
        d.insert("listed".into(), if listed_is_src { "source" } else { "destination" }.into());
        let sig = format!(
            "CANHGAC FIREWALL {} traffic {} listed address {} ({})",
            ev.action.as_str(),
            if listed_is_src { "from" } else { "to" },
            hit.value,
            hit.list
        );
        let a = Alert {
            sid: sid::FIREWALL_IOC,
            category: "Potentially Bad Traffic",
            sig,
            severity: self.ioc_severity,
            detector: "ioc",
            technique: "T1071",
        };
        let (attacker, victim) = if listed_is_src { (ev.src, ev.dst) } else { (ev.dst, ev.src) };
        self.alert(ev, source, origin, a, attacker, Some(victim), d, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &mut self,
        ev: &FirewallEvent,
        source: &str,
        origin: &LogOrigin,
        a: Alert,
        attacker: IpAddr,
        victim: Option<IpAddr>,
        details: Map<String, Value>,
        out: &mut Output,
    ) {
        self.stats.alerts += 1;
        let mut m = super::base(ev, "alert");
        let info = AlertInfo::builtin(a.sid, a.sig, a.category, a.severity);
        let mut canhgac = json!({"detector": a.detector, "technique": a.technique});
        if let Some(obj) = canhgac.as_object_mut() {
            obj.extend(details);
            super::log_context(obj, ev, source, origin);
        }
        m.insert("firewall".into(), firewall_object(ev));
        let mut facts = crate::facts::host(a.detector, Some(attacker), None);
        facts.on_host = false;
        let victims: Vec<_> = victim.map(crate::facts::address).into_iter().collect();
        facts.dest = victims.first().cloned();
        crate::facts::set_roles(&mut facts, vec![crate::facts::address(attacker)], victims);
        crate::facts::set_signature(
            &mut facts,
            info.signature_id,
            &info.signature,
            &info.category,
            a.technique,
        );
        facts.system = origin.system.unwrap_or(0);
        let value = eve::alert(m, info, None, Vec::new(), canhgac);
        out.records.push(NewRecord {
            kind: RecordKind::Alert,
            severity: a.severity,
            time: ev.ts,
            eve_json: value.to_string().into_bytes(),
            facts: Some(facts),
        });
    }

    /// State changes since the last call.
    pub fn take_state(&mut self, out: &mut Output) {
        for k in std::mem::take(&mut self.dirty) {
            let key = state_key(&k);
            match self.sources.get(&k) {
                Some(s) => out.state.push(StateChange::Put(key, serde_json::to_vec(s).unwrap_or_default())),
                None => out.state.push(StateChange::Delete(key)),
            }
        }
    }
}

#[cold]
fn unreachable_source() -> ! {
    panic!("source table lost a key it just inserted")
}

struct Alert {
    sid: u64,
    category: &'static str,
    sig: String,
    severity: u32,
    detector: &'static str,
    technique: &'static str,
}

pub fn state_key(ip: &IpAddr) -> Vec<u8> {
    let mut k = STATE_PREFIX.to_vec();
    k.push(SOURCE_KEY);
    k.extend_from_slice(ip.to_string().as_bytes());
    k
}

fn from_secs(s: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
