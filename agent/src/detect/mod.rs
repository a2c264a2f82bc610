//! The detection core: frames in, EVE records out.
//!
//! Per packet: decode → IP reassembly → flow table → TCP reassembly →
//! application-layer parsers → indicators, signatures and behavioural
//! detectors → EVE records (alerts, and flow/dns/tls/http/ssh events when
//! asked).
//!
//! Architecture invariant: no I/O, no async, no clock. Time comes from the
//! packets; state that must survive a restart (the "one alert per flow and
//! indicator" memory) is handed back as [`StateChange`]s, which the spool
//! commits atomically with the records and the input checkpoint, so a replay
//! from a checkpoint after a crash produces exactly the records that were
//! lost.

pub mod behaviour;
pub mod ioc;
mod signatures;

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use canhgac_proto::v1::{Endpoint, RecordFacts, RecordKind};
use serde_json::{Value, json};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::{
    app::{AppErrors, AppEvent, AppState, http::HttpEvent, tls::TlsEvent},
    decode::{self, DecodeError, LinkType, PROTO_TCP, PROTO_UDP, Packet, TCP_FIN, TCP_RST},
    defrag::{Defrag, DefragConfig, DefragStats},
    eve::{self, AlertInfo, EveTypes, sid},
    flow::{Dir, EndReason, Flow, FlowConfig, FlowStats, FlowTable},
    spool::NewRecord,
};
pub use ioc::IocSet;

/// Detector state key prefix for per-flow indicator deduplication.
const DEDUP_PREFIX: u8 = b'd';

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Severity of indicator alerts (1 highest .. 4).
    pub ioc_severity: u32,
    /// Flows remembered for "one alert per flow and indicator".
    pub dedup_capacity: usize,
    pub eve: EveTypes,
    pub flow: FlowConfig,
    pub defrag: DefragConfig,
    pub behaviour: behaviour::BehaviourConfig,
    /// Signature rules (`None`: no rule files).
    pub rules: Option<Arc<crate::rules::RuleSet>>,
    /// State-secret markers in cleartext flows (`[detect.secrets]`).
    pub secrets: crate::secrets::wire::WireConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ioc_severity: 2,
            dedup_capacity: 100_000,
            eve: EveTypes::default(),
            flow: FlowConfig::default(),
            defrag: DefragConfig::default(),
            behaviour: behaviour::BehaviourConfig::default(),
            rules: None,
            secrets: crate::secrets::wire::WireConfig::default(),
        }
    }
}

/// Loads signature rule files for the engine (`None` without files) and
/// the number of rules skipped; logs the loaded/total figure and why rules were skipped; `canhgac-agent
/// rules check` lists every skipped rule.
pub fn load_rules_logged(
    files: &[std::path::PathBuf],
    vars: &crate::rules::Vars,
    classification: Option<&std::path::Path>,
) -> std::io::Result<(Option<Arc<crate::rules::RuleSet>>, crate::rules::LoadReport)> {
    if files.is_empty() {
        return Ok((None, crate::rules::LoadReport::default()));
    }
    let (set, report) = crate::rules::RuleSet::load(files, vars, classification)?;
    let reasons: Vec<String> = report.reasons().iter().take(8).map(|(r, n)| format!("{r}: {n}")).collect();
    tracing::info!(
        loaded = report.loaded,
        total = report.total,
        skipped = report.skipped.len(),
        reasons = %reasons.join("; "),
        "signature rules loaded (see `canhgac-agent rules check` for each skipped rule)"
    );
    Ok((Some(Arc::new(set)), report))
}

/// A change to persisted detector state, keyed without the spool's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl StateChange {
    /// As the spool takes it: key and new value, `None` to delete.
    pub fn into_pair(self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            StateChange::Put(k, v) => (k, Some(v)),
            StateChange::Delete(k) => (k, None),
        }
    }
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
    pub packets: u64,
    pub bytes: u64,
    pub decode_errors: u64,
    /// Frames of an unsupported link type.
    pub unknown_link: u64,
    pub alerts: u64,
    pub events: u64,
    /// Alerts not raised because the flow already alerted on the indicator.
    pub suppressed: u64,
    /// Flows forgotten at the dedup capacity (they may alert again).
    pub dedup_evictions: u64,
    pub dns_errors: u64,
    pub tls_errors: u64,
    pub http_errors: u64,
    pub tcp_gaps: u64,
    pub flows: FlowStats,
    pub defrag: DefragStats,
    pub behaviour: behaviour::BehaviourStats,
    /// Signature engine state: threshold evictions, refused dataset
    /// additions, inspections cut short.
    pub rules: crate::rules::GlobalRuleStats,
    /// Objects scanned for state-secret markers, limits and errors.
    pub secrets: crate::secrets::wire::WireStats,
}

impl EngineStats {
    /// Adds the counters of another worker's engine. The behaviour's are
    /// not added: the workers share one detector, and each engine reports
    /// all of it.
    pub fn absorb(&mut self, o: &EngineStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.decode_errors += o.decode_errors;
        self.unknown_link += o.unknown_link;
        self.alerts += o.alerts;
        self.events += o.events;
        self.suppressed += o.suppressed;
        self.dedup_evictions += o.dedup_evictions;
        self.dns_errors += o.dns_errors;
        self.tls_errors += o.tls_errors;
        self.http_errors += o.http_errors;
        self.tcp_gaps += o.tcp_gaps;
        let (f, g) = (&mut self.flows, &o.flows);
        f.created += g.created;
        f.timed_out += g.timed_out;
        f.evicted += g.evicted;
        f.active += g.active;
        let (d, e) = (&mut self.defrag, &o.defrag);
        d.fragments += e.fragments;
        d.reassembled += e.reassembled;
        d.timeouts += e.timeouts;
        d.evicted += e.evicted;
        d.invalid += e.invalid;
        d.overlaps += e.overlaps;
        self.behaviour = o.behaviour;
        let (r, q) = (&mut self.rules, &o.rules);
        r.threshold_evictions += q.threshold_evictions;
        r.dataset_refused += q.dataset_refused;
        r.inspection_limit_hits += q.inspection_limit_hits;
        let (w, x) = (&mut self.secrets, &o.secrets);
        w.objects += x.objects;
        w.bytes += x.bytes;
        w.hits += x.hits;
        w.limits_hit += x.limits_hit;
        w.errors += x.errors;
    }
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

fn dedup_key(p: &Packet<'_>, indicator: u32) -> [u8; 16] {
    let mut h = sha2::Sha256::new();
    h.update(eve::flow_key(p));
    h.update(indicator.to_be_bytes());
    h.finalize()[..16].try_into().unwrap_or([0; 16])
}

/// Everything but the flow table, so that a flow borrowed from the table
/// and the detectors can be used together.
struct Detect {
    ioc: Arc<IocSet>,
    cfg: EngineConfig,
    dedup: Dedup,
    /// Shared by the capture workers of one agent, so that a scan spread
    /// over flows that the kernel hashed to different workers is seen whole.
    behaviour: Arc<Mutex<behaviour::Behaviour>>,
    findings: Vec<behaviour::Finding>,
    rule_global: crate::rules::GlobalRuleState,
    matches: Vec<crate::rules::RuleMatch>,
    /// The stream data a packet released (its allocation reused).
    stream_buf: Vec<u8>,
    stats: EngineStats,
    wire: crate::secrets::wire::WireScanner,
}

pub struct Engine {
    flows: FlowTable,
    defrag: Defrag,
    det: Detect,
    ended: Vec<(Flow, EndReason)>,
}

/// Makes engines that share the behavioural detectors, the rules'
/// thresholds and their runtime datasets (one engine per capture worker).
pub struct EngineBuilder {
    pub ioc: Arc<IocSet>,
    pub cfg: EngineConfig,
    pub restored: Vec<(Vec<u8>, Vec<u8>)>,
    behaviour: Arc<Mutex<behaviour::Behaviour>>,
    /// Thresholds and runtime datasets, shared like the behaviour.
    rule_global: crate::rules::GlobalRuleState,
}

impl EngineBuilder {
    pub fn new(ioc: Arc<IocSet>, cfg: EngineConfig, restored: Vec<(Vec<u8>, Vec<u8>)>) -> EngineBuilder {
        let behaviour = Arc::new(Mutex::new(behaviour::Behaviour::new(cfg.behaviour.clone())));
        EngineBuilder { ioc, cfg, restored, behaviour, rule_global: crate::rules::GlobalRuleState::default() }
    }

    pub fn build(&self) -> Engine {
        Engine::with_behaviour(
            self.ioc.clone(),
            self.cfg.clone(),
            self.restored.clone(),
            self.behaviour.clone(),
            self.rule_global.sharing(),
        )
    }

    /// An engine as at the start of an input: no restored state and
    /// behavioural detectors of its own. Capture files are replayed from
    /// their first packet with it after a restart (see `capture`), so that
    /// everything derived from packets is recomputed identically.
    pub fn build_fresh(&self) -> Engine {
        let behaviour = Arc::new(Mutex::new(behaviour::Behaviour::new(self.cfg.behaviour.clone())));
        Engine::with_behaviour(
            self.ioc.clone(),
            self.cfg.clone(),
            Vec::new(),
            behaviour,
            crate::rules::GlobalRuleState::default(),
        )
    }
}

impl Engine {
    /// `restored`: detector state saved by earlier runs (see [`StateChange`]).
    pub fn new(ioc: Arc<IocSet>, cfg: EngineConfig, restored: Vec<(Vec<u8>, Vec<u8>)>) -> Engine {
        EngineBuilder::new(ioc, cfg, restored).build()
    }

    fn with_behaviour(
        ioc: Arc<IocSet>,
        cfg: EngineConfig,
        restored: Vec<(Vec<u8>, Vec<u8>)>,
        behaviour: Arc<Mutex<behaviour::Behaviour>>,
        rule_global: crate::rules::GlobalRuleState,
    ) -> Engine {
        let dedup = Dedup::new(cfg.dedup_capacity, restored);
        let wire = crate::secrets::wire::WireScanner::new(
            cfg.secrets.clone(),
            Arc::new(crate::secrets::Scanner::default()),
        );
        Engine {
            flows: FlowTable::new(cfg.flow.clone()),
            defrag: Defrag::new(cfg.defrag.clone()),
            det: Detect {
                behaviour,
                findings: Vec::new(),
                ioc,
                cfg,
                dedup,
                rule_global,
                matches: Vec::new(),
                stream_buf: Vec::new(),
                stats: EngineStats::default(),
                wire,
            },
            ended: Vec::new(),
        }
    }

    /// Replaces the indicator set (a policy update), keeping flows.
    pub fn set_ioc(&mut self, ioc: Arc<IocSet>) {
        self.det.ioc = ioc;
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.det.stats;
        s.flows = self.flows.stats;
        s.defrag = self.defrag.stats;
        s.behaviour = self.det.behaviour.lock().map(|b| b.stats).unwrap_or_default();
        s.secrets = self.det.wire.stats;
        s
    }

    /// A captured frame of pcap link type `linktype`.
    pub fn on_frame(&mut self, linktype: u32, ts: OffsetDateTime, data: &[u8], out: &mut Output) {
        self.det.stats.packets += 1;
        self.det.stats.bytes += data.len() as u64;
        let Some(link) = LinkType::from_linktype(linktype) else {
            self.det.stats.unknown_link += 1;
            return;
        };
        match decode::decode(link, ts, data) {
            Ok(Some(p)) => self.on_packet(&p, out),
            Ok(None) => {}
            Err(_) => self.det.stats.decode_errors += 1,
        }
    }

    pub fn on_packet(&mut self, p: &Packet<'_>, out: &mut Output) {
        if p.frag.is_some() {
            if let Some((info, proto, payload)) = self.defrag.add(p) {
                match decode::transport(&info, proto, &payload) {
                    Ok(Some(whole)) if whole.frag.is_none() => self.on_packet(&whole, out),
                    Ok(_) => {}
                    Err(DecodeError::Truncated(_) | DecodeError::Malformed(_)) => {
                        self.det.stats.decode_errors += 1
                    }
                }
            }
            return;
        }
        let (flow, dir, new) = self.flows.packet(p, &mut self.ended);
        self.det.packet(flow, dir, new, p, out);
        if !self.ended.is_empty() {
            for (f, reason) in std::mem::take(&mut self.ended) {
                self.det.end_flow(f, reason, out);
            }
        }
    }

    /// Expires idle flows up to `now` (live capture calls this when quiet).
    pub fn tick(&mut self, now: OffsetDateTime, out: &mut Output) {
        self.flows.sweep(canhgac_proto::timefmt::micros(now), &mut self.ended);
        for (f, reason) in std::mem::take(&mut self.ended) {
            self.det.end_flow(f, reason, out);
        }
    }

    /// End of input: every flow ends and is logged.
    pub fn finish(&mut self, out: &mut Output) {
        self.flows.drain(&mut self.ended);
        for (f, reason) in std::mem::take(&mut self.ended) {
            self.det.end_flow(f, reason, out);
        }
    }
}

fn ports(flow: &Flow) -> (u16, u16) {
    (flow.client.1, flow.server.1)
}

impl Detect {
    fn packet(&mut self, flow: &mut Flow, dir: Dir, new: bool, p: &Packet<'_>, out: &mut Output) {
        if !self.ioc.is_empty() {
            self.ip_indicators(flow, dir, p, out);
        }
        let mut events = Vec::new();
        let mut errors = AppErrors::default();
        let mut data = std::mem::take(&mut self.stream_buf);
        data.clear();
        match p.proto {
            PROTO_TCP => {
                let mut seen = 0;
                let mut gaps = Vec::new();
                if let (Some(tcp), Some(session)) = (p.tcp, flow.tcp.as_mut()) {
                    let d = dir as usize;
                    let before = session.streams[d].stats.delivered as usize;
                    session.packet(d, &tcp, p.payload, &mut data);
                    gaps = session.streams[d].take_gaps();
                    self.stats.tcp_gaps += gaps.len() as u64;
                    seen = before;
                }
                let ports = ports(flow);
                if ports.1 == 21
                    && dir == Dir::ToClient
                    && let Ok(mut b) = self.behaviour.lock()
                {
                    for line in data.split(|b| *b == b'\n') {
                        b.ftp_reply(flow, line);
                    }
                }
                flow.app.on_stream(dir as usize, ports, seen, &data, &gaps, &mut events, &mut errors);
                self.wire.on_data(flow, dir, &data);
                if p.tcp_flags & TCP_RST != 0 {
                    flow.app.on_close(0, &mut events);
                    flow.app.on_close(1, &mut events);
                } else if p.tcp_flags & TCP_FIN != 0 {
                    flow.app.on_close(dir as usize, &mut events);
                }
            }
            PROTO_UDP => flow.app.on_datagram((p.sport, p.dport), p.payload, &mut events, &mut errors),
            _ => {}
        }
        self.stats.dns_errors += errors.dns;
        if let Some(rules) = self.cfg.rules.clone() {
            let txs: Vec<signatures::Tx<'_>> =
                events.iter().filter_map(|ev| signatures::transaction(ev, &flow.app, dir)).collect();
            let stream = (p.proto == PROTO_TCP && flow.tcp.is_some()).then_some(data.as_slice());
            self.signatures(&rules, flow, dir, p, stream, &txs, true, out);
        }
        for ev in events {
            self.app_event(flow, dir, p, ev, out);
        }
        let mut findings = std::mem::take(&mut self.findings);
        if behaviour::Behaviour::wants_packet(&self.cfg.behaviour, flow, dir, p, new)
            && let Ok(mut b) = self.behaviour.lock()
        {
            b.packet(flow, dir, p, new, &mut findings);
            flow.scan_settled = flow.tcp.as_ref().is_some_and(|t| t.streams[0].stats.delivered > 0);
        }
        self.report(&mut findings, Some(p), flow, out);
        self.findings = findings;
        self.stream_buf = data;
        // from the next packet on, as Suricata applies its flow's
        // no-inspection flag to the packets after the parser set it
        flow.no_payload_inspection = flow.app.encrypted();
    }

    /// Runs the signature rules on this packet: once with its payload, the
    /// stream data it released and the first transaction it completed, then
    /// once more per further transaction (buffers only).
    #[allow(clippy::too_many_arguments)]
    fn signatures(
        &mut self,
        rules: &crate::rules::RuleSet,
        flow: &mut Flow,
        dir: Dir,
        p: &Packet<'_>,
        stream: Option<&[u8]>,
        txs: &[signatures::Tx<'_>],
        packet: bool,
        out: &mut Output,
    ) {
        let app_proto = signatures::app_proto(flow);
        let established = flow.established();
        let mut matches = std::mem::take(&mut self.matches);
        let calls = txs.len().max(1);
        for i in 0..calls {
            let tx = txs.get(i);
            let mut buffers = crate::rules::Buffers::default();
            if let Some(tx) = tx {
                for (b, v) in &tx.buffers {
                    buffers.push(*b, v);
                }
            }
            // `packet` false: no real packet, only the transactions' buffers
            buffers.set_tx_only(i > 0 || !packet);
            let ctx = crate::rules::Inspect {
                ts_us: canhgac_proto::timefmt::micros(p.ts),
                src: p.src,
                dst: p.dst,
                sport: p.sport,
                dport: p.dport,
                proto: p.proto,
                ttl: p.ttl,
                tcp_flags: p.tcp_flags,
                icmp: p.icmp,
                payload: p.payload,
                stream,
                stream_seen: 0,
                no_payload_inspection: flow.no_payload_inspection,
                to_server: dir == Dir::ToServer,
                established,
                app_proto,
                buffers: &buffers,
                flow_id: flow.id,
                flow_pkts: flow.pkts,
                flow_bytes: flow.bytes,
            };
            rules.inspect(&ctx, &mut flow.rules, &mut self.rule_global, &mut matches);
            for m in matches.drain(..) {
                if m.noalert {
                    continue;
                }
                let severity = u32::from(m.severity);
                flow.alerted = true;
                let app = tx.and_then(|t| signatures::eve_object(t.event, &flow.app));
                let facts = signatures::facts(&m, p, dir, flow, tx);
                let value = signatures::alert(eve::base(p, "alert", Some(flow)), m, dir, app.as_ref());
                self.push_alert(severity, p.ts, value, facts, out);
            }
        }
        self.matches = matches;
        let g = self.rule_global.stats();
        self.stats.rules = g;
    }

    /// The rules on the transactions a flow ends with unfinished (see
    /// [`signatures::unfinished`]), as on a packet of their direction
    /// without payload at the flow's last time.
    fn unfinished_transactions(
        &mut self,
        rules: &crate::rules::RuleSet,
        flow: &mut Flow,
        ts: OffsetDateTime,
        out: &mut Output,
    ) {
        for (dir, ev) in signatures::unfinished(&flow.app) {
            let Some(tx) = signatures::transaction(&ev, &flow.app, dir) else { continue };
            let (src, dst) =
                if dir == Dir::ToServer { (flow.client, flow.server) } else { (flow.server, flow.client) };
            let p = Packet {
                ts,
                src: src.0,
                dst: dst.0,
                proto: flow.proto,
                ttl: 0,
                sport: src.1,
                dport: dst.1,
                tcp: None,
                tcp_flags: 0,
                icmp: None,
                payload: &[],
                frag: None,
                tunnel: 0,
                len: 0,
            };
            self.signatures(rules, flow, dir, &p, None, std::slice::from_ref(&tx), false, out);
        }
    }

    /// Turns behavioural findings into alerts.
    fn report(
        &mut self,
        findings: &mut Vec<behaviour::Finding>,
        p: Option<&Packet<'_>>,
        flow: &mut Flow,
        out: &mut Output,
    ) {
        for f in findings.drain(..) {
            let ts = p.map(|p| p.ts).unwrap_or(flow.last_ts);
            let mut m = eve::flow_base(flow, "alert", ts);
            // the finding names the actors: attacker as source
            m.insert("src_ip".into(), f.src.to_string().into());
            // no single target (a horizontal scan): no destination
            match f.dst {
                Some(d) => m.insert("dest_ip".into(), d.to_string().into()),
                None => m.remove("dest_ip"),
            };
            match f.dst_port {
                Some(port) => {
                    m.insert("dest_port".into(), port.into());
                }
                None => {
                    m.remove("dest_port");
                }
            }
            m.remove("src_port");
            let info = AlertInfo::builtin(f.signature_id, f.signature.clone(), f.category, f.severity);
            let mut canhgac = json!({"detector": f.detector, "technique": f.technique});
            if let (Some(obj), serde_json::Value::Object(details)) =
                (canhgac.as_object_mut(), f.details.clone())
            {
                obj.extend(details);
            }
            flow.alerted = true;
            let facts = f.facts(flow.id);
            let value = eve::alert(m, info, None, Vec::new(), canhgac);
            self.push_alert(f.severity, ts, value, facts, out);
        }
    }

    fn push(&mut self, kind: RecordKind, severity: u32, ts: OffsetDateTime, value: Value, out: &mut Output) {
        if kind == RecordKind::Alert {
            self.stats.alerts += 1;
        } else {
            self.stats.events += 1;
        }
        out.records.push(NewRecord {
            kind,
            severity,
            time: ts,
            eve_json: value.to_string().into_bytes(),
            facts: None,
        });
    }

    fn push_alert(
        &mut self,
        severity: u32,
        ts: OffsetDateTime,
        value: Value,
        facts: RecordFacts,
        out: &mut Output,
    ) {
        self.stats.alerts += 1;
        out.records.push(NewRecord {
            kind: RecordKind::Alert,
            severity,
            time: ts,
            eve_json: value.to_string().into_bytes(),
            facts: Some(facts),
        });
    }

    /// Raises an indicator alert unless this flow already alerted on it.
    #[allow(clippy::too_many_arguments)]
    fn ioc_alert(
        &mut self,
        flow: &mut Flow,
        dir: Dir,
        p: &Packet<'_>,
        hit: ioc::Hit,
        signature_id: u64,
        what: &str,
        matched: &str,
        named: Option<&str>,
        technique: &str,
        extra: Vec<(&str, Value)>,
        dedup: bool,
        out: &mut Output,
    ) {
        if dedup && !self.dedup.first(dedup_key(p, hit.id), out, &mut self.stats) {
            return;
        }
        let severity = self.cfg.ioc_severity;
        let info = AlertInfo::builtin(
            signature_id,
            format!("CANHGAC IOC {what} {} ({})", hit.value, hit.list),
            "Potentially Bad Traffic",
            severity,
        );
        let canhgac = json!({
            "detector": "ioc",
            "technique": technique,
            "indicator": hit.value,
            "indicator_type": hit.kind.as_str(),
            "list": hit.list,
            "matched": matched,
        });
        flow.alerted = true;
        let mut facts = crate::facts::packet("ioc", p, Some(dir), flow.id);
        crate::facts::set_signature(&mut facts, signature_id, &info.signature, &info.category, technique);
        facts.matched = matched.into();
        if let Some(d) =
            named.map(|n| crate::facts::named(n).host).filter(|d| d.parse::<std::net::IpAddr>().is_err())
        {
            facts.domain = d;
        }
        let listed = |ip, port| Endpoint { indicator: hit.value.clone(), ..crate::facts::endpoint(ip, port) };
        let (attackers, victims) = match matched {
            "src_ip" => (vec![listed(p.src, p.sport)], vec![crate::facts::endpoint(p.dst, p.dport)]),
            "dest_ip" => (vec![listed(p.dst, p.dport)], vec![crate::facts::endpoint(p.src, p.sport)]),
            // a name, address or fingerprint the client used: the client is
            // the victim, the listed thing the attacker
            _ => {
                let client = if dir == Dir::ToServer {
                    crate::facts::endpoint(p.src, p.sport)
                } else {
                    crate::facts::endpoint(p.dst, p.dport)
                };
                let mut named = match hit.kind {
                    ioc::IndicatorKind::Domain => crate::facts::named(&hit.value),
                    _ => Endpoint::default(),
                };
                named.indicator = hit.value.clone();
                (vec![named], vec![client])
            }
        };
        crate::facts::set_roles(&mut facts, attackers, victims);
        let value = eve::alert(eve::base(p, "alert", Some(flow)), info, Some(dir), extra, canhgac);
        self.push_alert(severity, p.ts, value, facts, out);
    }

    fn ip_indicators(&mut self, flow: &mut Flow, dir: Dir, p: &Packet<'_>, out: &mut Output) {
        let ioc = self.ioc.clone();
        if let Some(hit) = ioc.match_ip_port(p.dst, p.dport) {
            let what = "traffic to listed address and port";
            self.ioc_alert(
                flow,
                dir,
                p,
                hit,
                sid::IOC_IP_PORT,
                what,
                "dest_ip",
                None,
                "T1071",
                Vec::new(),
                true,
                out,
            );
            return;
        }
        let (hit, matched, sid, what) = match (ioc.match_ip(p.dst), ioc.match_ip(p.src)) {
            (Some(h), _) => (h, "dest_ip", sid::IOC_DEST_IP, "traffic to listed address"),
            (None, Some(h)) => (h, "src_ip", sid::IOC_SRC_IP, "traffic from listed address"),
            (None, None) => return,
        };
        self.ioc_alert(flow, dir, p, hit, sid, what, matched, None, "T1071", Vec::new(), true, out);
    }

    fn app_event(&mut self, flow: &mut Flow, dir: Dir, p: &Packet<'_>, ev: AppEvent, out: &mut Output) {
        let ioc = self.ioc.clone();
        match ev {
            AppEvent::Dns(msg) => {
                if msg.response {
                    if self.cfg.eve.dns {
                        let mut m = eve::base(p, "dns", Some(flow));
                        m.insert("dns".into(), eve::dns_answer(&msg));
                        self.push(RecordKind::Event, 0, p.ts, Value::Object(m), out);
                    }
                    return;
                }
                for q in &msg.questions {
                    let mut findings = std::mem::take(&mut self.findings);
                    let ts = canhgac_proto::timefmt::micros(p.ts);
                    if let Ok(mut b) = self.behaviour.lock() {
                        b.dns_query(p.src, p.dst, &q.name, q.qtype, ts, &mut findings);
                    }
                    self.report(&mut findings, Some(p), flow, out);
                    self.findings = findings;
                    if self.cfg.eve.dns {
                        let mut m = eve::base(p, "dns", Some(flow));
                        m.insert("dns".into(), eve::dns_query(&msg, q));
                        self.push(RecordKind::Event, 0, p.ts, Value::Object(m), out);
                    }
                    if let Some(hit) = ioc.match_domain(&q.name) {
                        let extra = vec![("dns", json!({"query": [eve::dns_query(&msg, q)]}))];
                        let what = "DNS query for listed domain";
                        self.ioc_alert(
                            flow,
                            dir,
                            p,
                            hit,
                            sid::IOC_DNS_QUERY,
                            what,
                            "dns.query",
                            Some(&q.name),
                            "T1071.004",
                            extra,
                            false,
                            out,
                        );
                    }
                }
            }
            AppEvent::Tls(TlsEvent::ClientHello) => {
                let AppState::Tls(state) = &flow.app else { return };
                let Some(hello) = state.client_hello.clone() else { return };
                let tls_obj = eve::tls(state);
                if let Some(sni) = &hello.sni
                    && let Some(hit) = ioc.match_domain(sni)
                {
                    let extra = vec![("tls", tls_obj.clone())];
                    let what = "TLS connection to listed domain";
                    self.ioc_alert(
                        flow,
                        dir,
                        p,
                        hit,
                        sid::IOC_TLS_SNI,
                        what,
                        "tls.sni",
                        Some(sni.as_str()),
                        "T1071.001",
                        extra,
                        true,
                        out,
                    );
                }
                if let Some(hit) = ioc.match_ja3(&hello.ja3_hash) {
                    let extra = vec![("tls", tls_obj)];
                    let what = "TLS client with listed JA3 fingerprint";
                    self.ioc_alert(
                        flow,
                        dir,
                        p,
                        hit,
                        sid::IOC_JA3,
                        what,
                        "tls.ja3.hash",
                        hello.sni.as_deref(),
                        "T1071.001",
                        extra,
                        true,
                        out,
                    );
                }
            }
            AppEvent::Tls(TlsEvent::ServerHello | TlsEvent::Certificate) => {
                let AppState::Tls(state) = &mut flow.app else { return };
                let complete =
                    state.cert.is_some() || state.server_hello.as_ref().is_some_and(|s| s.version == 0x0304);
                if complete && !state.logged {
                    state.logged = true;
                    if self.cfg.eve.tls {
                        let tls_obj = eve::tls(state);
                        let mut m = eve::flow_base(flow, "tls", p.ts);
                        m.insert("tls".into(), tls_obj);
                        self.push(RecordKind::Event, 0, p.ts, Value::Object(m), out);
                    }
                }
            }
            AppEvent::Http(HttpEvent::Request(id)) => {
                let AppState::Http(state) = &flow.app else { return };
                let Some(tx) = state.tx(id) else { return };
                let host = tx.host();
                let uri = tx.uri.clone();
                let http_obj = eve::http(tx);
                if let Some(h) = &host
                    && let Some(hit) = ioc.match_domain(h)
                {
                    let extra = vec![("http", http_obj.clone())];
                    let what = "HTTP request to listed domain";
                    self.ioc_alert(
                        flow,
                        dir,
                        p,
                        hit,
                        sid::IOC_HTTP_HOST,
                        what,
                        "http.host",
                        Some(h.as_str()),
                        "T1071.001",
                        extra,
                        true,
                        out,
                    );
                }
                let host_for_url = host.unwrap_or_else(|| p.dst.to_string());
                if let Some(hit) = ioc.match_url(&host_for_url, &uri) {
                    let extra = vec![("http", http_obj)];
                    let what = "HTTP request for listed URL";
                    self.ioc_alert(
                        flow,
                        dir,
                        p,
                        hit,
                        sid::IOC_URL,
                        what,
                        "http.url",
                        Some(host_for_url.as_str()),
                        "T1071.001",
                        extra,
                        true,
                        out,
                    );
                }
            }
            AppEvent::Http(HttpEvent::Response(id)) => {
                let base = self.cfg.eve.http.then(|| eve::flow_base(flow, "http", p.ts));
                let AppState::Http(state) = &mut flow.app else { return };
                let value = match (base, state.tx(id)) {
                    (Some(mut m), Some(tx)) => {
                        m.insert("http".into(), eve::http(tx));
                        Some(Value::Object(m))
                    }
                    _ => None,
                };
                state.remove(id);
                if let Some(v) = value {
                    self.push(RecordKind::Event, 0, p.ts, v, out);
                }
            }
            AppEvent::Ssh | AppEvent::SshKex => {
                let base = self.cfg.eve.ssh.then(|| eve::flow_base(flow, "ssh", p.ts));
                let AppState::Ssh(state) = &mut flow.app else { return };
                // logged once both banners and both key exchange offers are
                // in (else when the flow ends), so that it has the HASSH
                if state.complete() && !state.logged {
                    state.logged = true;
                    if let Some(mut m) = base {
                        m.insert("ssh".into(), eve::ssh(state));
                        self.push(RecordKind::Event, 0, p.ts, Value::Object(m), out);
                    }
                }
            }
        }
    }

    /// A flow left the table: log what was not logged yet, then the flow.
    fn end_flow(&mut self, mut flow: Flow, reason: EndReason, out: &mut Output) {
        let ts = flow.last_ts;
        let ports = ports(&flow);
        if let Some(tcp) = flow.tcp.as_mut() {
            // deliver what is left across holes, then close both sides
            let mut events = Vec::new();
            let mut errors = AppErrors::default();
            let mut rests = [Vec::new(), Vec::new()];
            for (d, rest) in rests.iter_mut().enumerate() {
                tcp.streams[d].flush(rest);
                let gaps = tcp.streams[d].take_gaps();
                let seen = tcp.streams[d].stats.delivered as usize;
                flow.app.on_stream(d, ports, seen, rest, &gaps, &mut events, &mut errors);
                flow.app.on_close(d, &mut events);
            }
            for (dir, rest) in [Dir::ToServer, Dir::ToClient].into_iter().zip(&rests) {
                self.wire.on_data(&flow, dir, rest);
            }
            let mut secret_alerts = Vec::new();
            self.wire.on_end(&flow, ts, &mut secret_alerts);
            self.stats.alerts += secret_alerts.len() as u64;
            if !secret_alerts.is_empty() {
                flow.alerted = true;
            }
            out.records.extend(secret_alerts);
            self.stats.dns_errors += errors.dns;
            if let Some(rules) = self.cfg.rules.clone() {
                self.unfinished_transactions(&rules, &mut flow, ts, out);
            }
            for ev in events {
                if let AppEvent::Http(HttpEvent::Response(id)) = ev
                    && self.cfg.eve.http
                    && let AppState::Http(state) = &flow.app
                    && let Some(tx) = state.tx(id)
                {
                    let mut m = eve::flow_base(&flow, "http", ts);
                    m.insert("http".into(), eve::http(tx));
                    self.push(RecordKind::Event, 0, ts, Value::Object(m), out);
                }
            }
        }
        match &mut flow.app {
            AppState::Tls(t) => {
                self.stats.tls_errors += t.parse_errors;
                if !t.logged && t.client_hello.is_some() && self.cfg.eve.tls {
                    t.logged = true;
                    let mut m = eve::flow_base(&flow, "tls", ts);
                    if let AppState::Tls(t) = &flow.app {
                        m.insert("tls".into(), eve::tls(t));
                    }
                    self.push(RecordKind::Event, 0, ts, Value::Object(m), out);
                }
            }
            AppState::Http(h) => {
                self.stats.http_errors += h.parse_errors;
                if self.cfg.eve.http {
                    let pending: Vec<Value> = h
                        .open_transactions()
                        .filter(|t| t.request_done && !t.response_done)
                        .map(eve::http)
                        .collect();
                    for obj in pending {
                        let mut m = eve::flow_base(&flow, "http", ts);
                        m.insert("http".into(), obj);
                        self.push(RecordKind::Event, 0, ts, Value::Object(m), out);
                    }
                }
            }
            AppState::Ssh(s)
                if !s.logged && (s.banners[0].is_some() || s.banners[1].is_some()) && self.cfg.eve.ssh =>
            {
                s.logged = true;
                let mut m = eve::flow_base(&flow, "ssh", ts);
                if let AppState::Ssh(s) = &flow.app {
                    m.insert("ssh".into(), eve::ssh(s));
                }
                self.push(RecordKind::Event, 0, ts, Value::Object(m), out);
            }
            _ => {}
        }
        let mut findings = std::mem::take(&mut self.findings);
        if let Ok(mut b) = self.behaviour.lock() {
            b.flow_end(&flow, &mut findings);
        }
        self.report(&mut findings, None, &mut flow, out);
        self.findings = findings;
        if self.cfg.eve.flow {
            let value = eve::flow(&flow, reason);
            self.push(RecordKind::Event, 0, ts, value, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn ioc(lines: &str) -> Arc<IocSet> {
        let mut s = IocSet::default();
        s.lists.push("test.txt".into());
        for l in lines.lines() {
            s.add_line(l, 0).unwrap();
        }
        s.seal();
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
            engine.on_frame(101, OffsetDateTime::UNIX_EPOCH, f, &mut out);
        }
        out
    }

    fn json(r: &NewRecord) -> Value {
        serde_json::from_slice(&r.eve_json).unwrap()
    }

    #[test]
    fn one_alert_per_flow_and_indicator() {
        let mut e = Engine::new(ioc("45.9.74.78"), EngineConfig::default(), Vec::new());
        let a = tcp([10, 0, 0, 5], 50000, [45, 9, 74, 78], 80);
        let back = tcp([45, 9, 74, 78], 80, [10, 0, 0, 5], 50000);
        let other = tcp([10, 0, 0, 5], 50001, [45, 9, 74, 78], 80);
        let out = run(&mut e, &[a.clone(), back, a, other]);
        assert_eq!(out.records.len(), 2);
        assert_eq!(e.stats().suppressed, 2);
        let v = json(&out.records[0]);
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
        assert_eq!(e.stats().dedup_evictions, 1);
        assert!(out.state.iter().any(|c| matches!(c, StateChange::Delete(_))));
    }

    #[test]
    fn dns_queries_match_subdomains_responses_do_not_alert_and_events_are_optional() {
        let cfg = EngineConfig { eve: EveTypes::parse("alert,dns,flow").unwrap(), ..Default::default() };
        let mut e = Engine::new(ioc("drivres-update.info"), cfg, Vec::new());
        let mut out = run(&mut e, &[dns_query("www.drivres-update.info"), dns_query("example.org")]);
        e.finish(&mut out);
        let types: Vec<String> =
            out.records.iter().map(|r| json(r)["event_type"].as_str().unwrap().to_string()).collect();
        assert_eq!(types, ["dns", "alert", "dns", "flow"]);
        let alert = json(&out.records[1]);
        assert_eq!(alert["alert"]["signature_id"], sid::IOC_DNS_QUERY);
        assert_eq!(alert["dns"]["query"][0]["rrname"], "www.drivres-update.info");
        assert_eq!(alert["canhgac"]["technique"], "T1071.004");
        assert_eq!(json(&out.records[3])["flow"]["pkts_toserver"], 2);
    }

    /// A `file.data` rule sees the response body decompressed, and an
    /// uncompressed rule on the compressed bytes does not fire.
    #[test]
    fn rules_inspect_gzip_response_bodies_decompressed() {
        use std::io::Write;
        let page =
            b"<html><body><script>document.write(unescape('%3Ciframe%20src%3D'))</script></body></html>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(page).unwrap();
        let gz = gz.finish().unwrap();
        let rules = "alert http any any -> any any (msg:\"unescape iframe\"; flow:established,to_client; file.data; content:\"unescape(|27|%3Ciframe\"; nocase; pcre:\"/document\\.write\\s*\\(\\s*unescape(?=\\()/\"; sid:1000001; rev:1;)\n";
        let (set, report) = crate::rules::RuleSet::from_str(rules, &crate::rules::Vars::default());
        assert_eq!(report.loaded, 1, "{report:?}");
        let cfg = EngineConfig { rules: Some(Arc::new(set)), ..Default::default() };
        let mut engine = Engine::new(ioc(""), cfg, Vec::new());
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        );
        let resp = [head.as_bytes(), &gz].concat();
        let frames = crate::fuzzing::tcp_session(b"GET / HTTP/1.1\r\nHost: portal.example\r\n\r\n", &resp);
        let mut out = run(&mut engine, &frames);
        engine.finish(&mut out);
        let sids: Vec<u64> = out
            .records
            .iter()
            .map(json)
            .filter(|v| v["event_type"] == "alert")
            .filter_map(|v| v["alert"]["signature_id"].as_u64())
            .collect();
        assert_eq!(sids, [1000001]);
    }

    #[test]
    fn garbage_frames_are_counted() {
        let mut e = Engine::new(ioc("1.1.1.1"), EngineConfig::default(), Vec::new());
        let mut out = Output::default();
        e.on_frame(1, OffsetDateTime::UNIX_EPOCH, &[0xff; 30], &mut out);
        e.on_frame(101, OffsetDateTime::UNIX_EPOCH, &[0x45, 0, 0], &mut out);
        e.on_frame(9999, OffsetDateTime::UNIX_EPOCH, &[1, 2, 3], &mut out);
        let s = e.stats();
        assert_eq!((s.packets, s.decode_errors, s.unknown_link), (3, 1, 1));
    }
}
