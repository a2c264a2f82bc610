//! Compiled rules and the inspection of one event.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use sha2::Digest as _;

use super::{
    Action, AlertTarget, AppProto, Buffer, FlowRuleState, GlobalRuleState, Inspect, RuleMatch, RuleSetStats,
    content::{self, Item, MAX_VARS, MatchCtx},
    dataset::Dataset,
    header::{AddrSet, PortSet},
    numbers::UintCmp,
    prefilter::Prefilter,
    threshold::{self, Threshold},
};

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// Header protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// `ip`, `pkthdr`: every packet.
    Ip,
    Tcp,
    TcpPkt,
    TcpStream,
    Udp,
    /// ICMP v4 and v6.
    Icmp,
    Icmp4,
    Icmp6,
    App(AppProto),
}

impl Proto {
    pub fn name(self) -> String {
        match self {
            Proto::Ip => "ip".into(),
            Proto::Tcp => "tcp".into(),
            Proto::TcpPkt => "tcp-pkt".into(),
            Proto::TcpStream => "tcp-stream".into(),
            Proto::Udp => "udp".into(),
            Proto::Icmp => "icmp".into(),
            Proto::Icmp4 => "icmpv4".into(),
            Proto::Icmp6 => "icmpv6".into(),
            Proto::App(a) => a.name().into(),
        }
    }

    fn matches(self, ctx: &Inspect<'_>) -> bool {
        match self {
            Proto::Ip => true,
            Proto::Tcp | Proto::TcpPkt | Proto::TcpStream => ctx.proto == PROTO_TCP,
            Proto::Udp => ctx.proto == PROTO_UDP,
            Proto::Icmp => ctx.proto == PROTO_ICMP || ctx.proto == PROTO_ICMPV6,
            Proto::Icmp4 => ctx.proto == PROTO_ICMP,
            Proto::Icmp6 => ctx.proto == PROTO_ICMPV6,
            Proto::App(a) => app_matches(a, ctx.app_proto),
        }
    }

    /// Protocol classes (tcp, udp, icmp, other) the rule can match.
    pub fn classes(self) -> [bool; 4] {
        match self {
            Proto::Ip => [true; 4],
            Proto::Tcp | Proto::TcpPkt | Proto::TcpStream => [true, false, false, false],
            Proto::Udp => [false, true, false, false],
            Proto::Icmp | Proto::Icmp4 | Proto::Icmp6 => [false, false, true, false],
            Proto::App(_) => [true, true, false, false],
        }
    }
}

pub(crate) fn proto_class(p: u8) -> usize {
    match p {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        PROTO_ICMP | PROTO_ICMPV6 => 2,
        _ => 3,
    }
}

pub(crate) fn app_matches(rule: AppProto, flow: AppProto) -> bool {
    rule == flow || (rule == AppProto::Http && flow == AppProto::Http2)
}

/// Where a keyword list looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    /// Packet payload and/or stream.
    Payload,
    Buf(Buffer),
    /// `file.data`: generic file data, plus the HTTP body of the direction.
    FileData,
    IpSrc,
    IpDst,
}

impl Target {
    pub fn key(self) -> usize {
        match self {
            Target::Payload => 0,
            Target::Buf(b) => 1 + b.index(),
            Target::FileData => 1 + Buffer::ALL.len(),
            Target::IpSrc => 2 + Buffer::ALL.len(),
            Target::IpDst => 3 + Buffer::ALL.len(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Payload => "payload/stream",
            Target::Buf(b) => b.name(),
            Target::FileData => "file.data",
            Target::IpSrc => "ip.src",
            Target::IpDst => "ip.dst",
        }
    }

    /// Whether the inspection offers this target.
    pub fn present(self, ctx: &Inspect<'_>) -> bool {
        match self {
            Target::Payload => {
                !ctx.buffers.tx_only()
                    && !ctx.no_payload_inspection
                    && (!ctx.payload.is_empty() || ctx.stream.is_some_and(|s| !s.is_empty()))
            }
            Target::Buf(b) => ctx.buffers.has(b),
            Target::FileData => {
                ctx.buffers.has(Buffer::FileData)
                    || (ctx.to_server && ctx.buffers.has(Buffer::HttpRequestBody))
                    || (!ctx.to_server && ctx.buffers.has(Buffer::HttpResponseBody))
            }
            Target::IpSrc | Target::IpDst => true,
        }
    }

    /// Calls `f` on every value of the target until it returns `true`. For
    /// the payload, a packet payload that the stream ends with is not
    /// passed separately (callers needing both, the rule verification, do
    /// not use this).
    pub fn any_instance(self, ctx: &Inspect<'_>, mut f: impl FnMut(&[u8]) -> bool) -> bool {
        match self {
            Target::Payload => {
                let stream = ctx.stream.filter(|s| !s.is_empty());
                // the usual case: the stream ends with this packet's payload,
                // which then need not be scanned on its own
                let covered = stream.is_some_and(|s| s.ends_with(ctx.payload));
                if !covered && !ctx.payload.is_empty() && f(ctx.payload) {
                    return true;
                }
                stream.is_some_and(f)
            }
            Target::Buf(b) => ctx.buffers.get(b).any(f),
            Target::FileData => {
                let body = if ctx.to_server { Buffer::HttpRequestBody } else { Buffer::HttpResponseBody };
                ctx.buffers.get(Buffer::FileData).any(&mut f) || ctx.buffers.get(body).any(f)
            }
            Target::IpSrc => with_ip(ctx.src, f),
            Target::IpDst => with_ip(ctx.dst, f),
        }
    }
}

fn with_ip(ip: IpAddr, f: impl FnOnce(&[u8]) -> bool) -> bool {
    match ip {
        IpAddr::V4(a) => f(&a.octets()),
        IpAddr::V6(a) => f(&a.octets()),
    }
}

/// Sticky-buffer transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    DotPrefix,
    ToLower,
    ToUpper,
    StripWhitespace,
    CompressWhitespace,
    UrlDecode,
    Sha256,
}

impl Transform {
    pub fn parse(k: &str) -> Option<Transform> {
        Some(match k {
            "dotprefix" => Transform::DotPrefix,
            "to_lowercase" => Transform::ToLower,
            "to_uppercase" => Transform::ToUpper,
            "strip_whitespace" => Transform::StripWhitespace,
            "compress_whitespace" => Transform::CompressWhitespace,
            "url_decode" => Transform::UrlDecode,
            "to_sha256" => Transform::Sha256,
            _ => return None,
        })
    }

    fn apply(self, d: &[u8]) -> Vec<u8> {
        match self {
            Transform::DotPrefix => {
                let mut v = Vec::with_capacity(d.len() + 1);
                v.push(b'.');
                v.extend_from_slice(d);
                v
            }
            Transform::ToLower => d.to_ascii_lowercase(),
            Transform::ToUpper => d.to_ascii_uppercase(),
            Transform::StripWhitespace => d.iter().copied().filter(|b| !is_space(*b)).collect(),
            Transform::CompressWhitespace => {
                let mut v = Vec::with_capacity(d.len());
                let mut prev = false;
                for &b in d {
                    let s = is_space(b);
                    if !(s && prev) {
                        v.push(b);
                    }
                    prev = s;
                }
                v
            }
            Transform::UrlDecode => {
                let mut v = Vec::with_capacity(d.len());
                let mut i = 0;
                while let Some(&b) = d.get(i) {
                    if b == b'%'
                        && let (Some(h), Some(l)) =
                            (d.get(i + 1).and_then(hexval), d.get(i + 2).and_then(hexval))
                    {
                        v.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    v.push(if b == b'+' { b' ' } else { b });
                    i += 1;
                }
                v
            }
            Transform::Sha256 => sha2::Sha256::digest(d).to_vec(),
        }
    }
}

fn hexval(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r')
}

/// The keywords of one rule that look at one target.
#[derive(Debug)]
pub(crate) struct List {
    pub target: Target,
    pub transforms: Vec<Transform>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StreamMode {
    #[default]
    Both,
    PacketOnly,
    StreamOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagMode {
    Exact,
    All,
    Any,
    Not,
}

#[derive(Debug, Clone)]
pub(crate) enum PktCheck {
    Dsize(UintCmp),
    Ttl(UintCmp),
    Flags {
        flags: u8,
        ignore: u8,
        mode: FlagMode,
    },
    Itype(UintCmp),
    Icode(UintCmp),
    IpProto(UintCmp),
    SameIp,
    AppLayer {
        proto: AppProto,
        negated: bool,
    },
    /// `flow.pkts` / `flow.bytes`: `dir` 0 to server, 1 to client, 2 either.
    FlowCount {
        bytes: bool,
        dir: u8,
        cmp: UintCmp,
    },
}

impl PktCheck {
    fn matches(&self, ctx: &Inspect<'_>) -> bool {
        match self {
            PktCheck::Dsize(c) => c.matches(ctx.payload.len() as u64),
            PktCheck::Ttl(c) => c.matches(u64::from(ctx.ttl)),
            PktCheck::Flags { flags, ignore, mode } => {
                if ctx.proto != PROTO_TCP {
                    return false;
                }
                let f = ctx.tcp_flags & !ignore;
                match mode {
                    FlagMode::Exact => f == *flags,
                    FlagMode::All => f & flags == *flags,
                    FlagMode::Any => f & flags != 0,
                    FlagMode::Not => f & flags != *flags,
                }
            }
            PktCheck::Itype(c) => ctx.icmp.is_some_and(|(t, _)| c.matches(u64::from(t))),
            PktCheck::Icode(c) => ctx.icmp.is_some_and(|(_, k)| c.matches(u64::from(k))),
            PktCheck::IpProto(c) => c.matches(u64::from(ctx.proto)),
            PktCheck::SameIp => ctx.src == ctx.dst,
            PktCheck::AppLayer { proto, negated } => app_matches(*proto, ctx.app_proto) != *negated,
            PktCheck::FlowCount { bytes, dir, cmp } => {
                let v = if *bytes { ctx.flow_bytes } else { ctx.flow_pkts };
                match dir {
                    0 | 1 => cmp.matches(v[usize::from(*dir)]),
                    _ => cmp.matches(v[0]) || cmp.matches(v[1]),
                }
            }
        }
    }
}

/// `flowbits` condition.
#[derive(Debug, Clone)]
pub(crate) enum FbCheck {
    IsSet { bits: Vec<u64>, all: bool },
    IsNotSet { bits: Vec<u64>, all: bool },
}

/// `flowbits` action, applied when the rule matches.
#[derive(Debug, Clone)]
pub(crate) enum FbAction {
    Set(Vec<u64>),
    Unset(Vec<u64>),
    Toggle(Vec<u64>),
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: Box<str>,
    pub action: Action,
    /// Shared with the other rules of the class.
    pub classtype: Option<Arc<str>>,
    pub category: Arc<str>,
    pub severity: u8,
    /// References joined by `\n` (one allocation per rule instead of one per value).
    pub references: Box<str>,
    /// Metadata as `key value` lines joined by `\n`.
    pub metadata: Box<str>,
    pub target: Option<AlertTarget>,
    pub proto: Proto,
    pub src: AddrSet,
    pub sport: PortSet,
    pub dst: AddrSet,
    pub dport: PortSet,
    pub bidir: bool,
    /// `flow:to_server` (true) / `to_client` (false).
    pub flow_dir: Option<bool>,
    pub established: Option<bool>,
    pub stream_mode: StreamMode,
    /// Direction of transaction inspection: explicit or implied by buffers.
    pub tx_dir: Option<bool>,
    pub pkt: Vec<PktCheck>,
    pub lists: Vec<List>,
    pub fb_checks: Vec<FbCheck>,
    pub fb_actions: Vec<FbAction>,
    pub noalert: bool,
    pub threshold: Option<Threshold>,
    /// Evaluated on the first packet of each flow direction only.
    pub ip_only: bool,
    /// Uses a sticky buffer (a transaction rule).
    pub has_buffers: bool,
    pub has_pcre: bool,
}

impl Rule {
    /// Header-only: no keyword lists.
    pub fn header_only(&self) -> bool {
        self.lists.is_empty()
    }

    fn header_matches(&self, ctx: &Inspect<'_>) -> bool {
        if !self.proto.matches(ctx) {
            return false;
        }
        if let Some(d) = self.flow_dir
            && ctx.to_server != d
        {
            return false;
        }
        if let Some(e) = self.established
            && ctx.established != e
        {
            return false;
        }
        if self.has_buffers
            && let Some(d) = self.tx_dir
            && ctx.to_server != d
        {
            return false;
        }
        let has_ports = matches!(ctx.proto, PROTO_TCP | PROTO_UDP | 132);
        let ports = |sp: &PortSet, p: u16| sp.is_any() || (has_ports && sp.contains(p));
        let fwd = self.src.contains(ctx.src)
            && self.dst.contains(ctx.dst)
            && ports(&self.sport, ctx.sport)
            && ports(&self.dport, ctx.dport);
        if !fwd {
            let rev = self.bidir
                && self.src.contains(ctx.dst)
                && self.dst.contains(ctx.src)
                && ports(&self.sport, ctx.dport)
                && ports(&self.dport, ctx.sport);
            if !rev {
                return false;
            }
        }
        self.pkt.iter().all(|c| c.matches(ctx))
    }

    fn flowbits_ok(&self, flow: &FlowRuleState) -> bool {
        self.fb_checks.iter().all(|c| match c {
            FbCheck::IsSet { bits, all: true } => bits.iter().all(|b| flow.is_set(*b)),
            FbCheck::IsSet { bits, all: false } => bits.iter().any(|b| flow.is_set(*b)),
            FbCheck::IsNotSet { bits, all: true } => bits.iter().all(|b| !flow.is_set(*b)),
            FbCheck::IsNotSet { bits, all: false } => bits.iter().any(|b| !flow.is_set(*b)),
        })
    }

    fn list_matches(&self, list: &List, ctx: &Inspect<'_>, mc: &mut MatchCtx<'_>) -> bool {
        let mut run = |d: &[u8]| {
            if list.transforms.is_empty() {
                content::inspect(&list.items, d, mc)
            } else {
                let mut v = d.to_vec();
                for t in &list.transforms {
                    v = t.apply(&v);
                }
                content::inspect(&list.items, &v, mc)
            }
        };
        match list.target {
            Target::Payload => {
                if (ctx.buffers.tx_only() && !self.has_buffers) || ctx.no_payload_inspection {
                    return false;
                }
                let stream = ctx.stream.filter(|s| !s.is_empty() && ctx.proto == PROTO_TCP);
                if self.stream_mode != StreamMode::PacketOnly
                    && let Some(s) = stream
                {
                    // the new data first, from its start (where Suricata's raw
                    // progress is); then with the overlap in front, for a match
                    // crossing into the new data (one the overlap holds on its
                    // own was reported by an earlier call)
                    let seen = ctx.stream_seen.min(s.len());
                    if let Some(new) = s.get(seen..)
                        && !new.is_empty()
                        && run(new)
                    {
                        return true;
                    }
                    if seen > 0 && run(s) && !run(&s[..seen]) {
                        return true;
                    }
                }
                // Suricata: a segment added to the stream is inspected as
                // stream data only (so a retransmission does not alert again);
                // packet-only rules always look at the packet
                let packet_ok = match self.stream_mode {
                    StreamMode::PacketOnly => true,
                    StreamMode::Both => !ctx.payload_in_stream(),
                    StreamMode::StreamOnly => ctx.stream.is_none(),
                };
                packet_ok && !ctx.payload.is_empty() && run(ctx.payload)
            }
            t => t.any_instance(ctx, run),
        }
    }
}

/// A compiled rule set with its prefilter.
pub(crate) struct Engine {
    /// In evaluation order.
    pub rules: Vec<Rule>,
    pub datasets: Vec<Dataset>,
    pub prefilter: Prefilter,
    /// See [`super::RuleSet::stream_overlap`].
    pub stream_overlap: usize,
}

/// The stream overlap the rules need: a content of `n` bytes can start
/// `n - 1` bytes before the new data.
pub(crate) fn stream_overlap(rules: &[Rule]) -> usize {
    rules
        .iter()
        .filter(|r| r.stream_mode != StreamMode::PacketOnly && r.proto.classes()[0])
        .flat_map(|r| r.lists.iter().filter(|l| l.target == Target::Payload))
        .flat_map(|l| l.items.iter())
        .filter_map(|i| match i {
            Item::Content(c) if !c.negated => Some(c.pat.len().saturating_sub(1)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
        .min(super::MAX_STREAM_OVERLAP)
}

impl Engine {
    pub fn inspect(
        &self,
        ctx: &Inspect<'_>,
        flow: &mut FlowRuleState,
        global: &mut GlobalRuleState,
        out: &mut Vec<RuleMatch>,
    ) {
        let tx_only = ctx.buffers.tx_only();
        let first_in_dir = !tx_only
            && if ctx.to_server {
                !std::mem::replace(&mut flow.iponly_ts, true)
            } else {
                !std::mem::replace(&mut flow.iponly_tc, true)
            };
        // kept between calls: a fresh one allocates and zeroes 128 KiB of tables
        let mut scratch = global.scratch.take().unwrap_or_default();
        // stream data is inspected once: behind the tail of what this
        // direction's earlier calls inspected (the overlap), then its end
        // becomes the new tail
        let mut window = std::mem::take(&mut scratch.window);
        window.clear();
        let with_tail;
        let dir = usize::from(!ctx.to_server);
        let ctx = match ctx.stream {
            Some(s)
                if !tx_only
                    && !ctx.no_payload_inspection
                    && !s.is_empty()
                    && ctx.proto == PROTO_TCP
                    && self.stream_overlap > 0 =>
            {
                let tail = std::mem::take(&mut flow.stream_tail[dir]);
                window.reserve(tail.len() + s.len());
                window.extend_from_slice(&tail);
                window.extend_from_slice(s);
                let keep = window.len().min(self.stream_overlap);
                let mut next = tail;
                next.clear();
                next.extend_from_slice(&window[window.len() - keep..]);
                flow.stream_tail[dir] = next;
                with_tail = Inspect { stream: Some(&window), stream_seen: window.len() - s.len(), ..*ctx };
                &with_tail
            }
            _ => ctx,
        };
        self.verify(ctx, first_in_dir, flow, global, &mut scratch, out);
        scratch.window = window;
        global.scratch = Some(scratch);
    }

    /// Verifies the prefilter's candidates for `ctx` in evaluation order.
    fn verify(
        &self,
        ctx: &Inspect<'_>,
        first_in_dir: bool,
        flow: &mut FlowRuleState,
        global: &mut GlobalRuleState,
        scratch: &mut super::prefilter::Scratch,
        out: &mut Vec<RuleMatch>,
    ) {
        let tx_only = ctx.buffers.tx_only();
        self.prefilter.candidates(ctx, first_in_dir, scratch);
        for &ri in &scratch.cand {
            let Some(rule) = self.rules.get(ri as usize) else { continue };
            if (tx_only && !rule.has_buffers) || (rule.ip_only && !first_in_dir) {
                continue;
            }
            if !rule.header_matches(ctx) || !rule.flowbits_ok(flow) {
                continue;
            }
            let mut mc = MatchCtx {
                vars: [0; MAX_VARS],
                budget: 0,
                limit_hit: false,
                sets: &self.datasets,
                runtime: &global.shared.datasets,
                dataset_refused: 0,
            };
            let ok = rule.lists.iter().all(|l| rule.list_matches(l, ctx, &mut mc));
            global.stats.inspection_limit_hits += u64::from(mc.limit_hit);
            global.stats.dataset_refused += mc.dataset_refused;
            if !ok {
                continue;
            }
            for a in &rule.fb_actions {
                match a {
                    FbAction::Set(b) => b.iter().for_each(|x| flow.set(*x)),
                    FbAction::Unset(b) => b.iter().for_each(|x| flow.unset(*x)),
                    FbAction::Toggle(b) => {
                        b.iter().for_each(|x| if flow.is_set(*x) { flow.unset(*x) } else { flow.set(*x) })
                    }
                }
            }
            if rule.action == Action::Pass {
                break;
            }
            if let Some(th) = &rule.threshold {
                let ev = threshold::Event {
                    ts_us: ctx.ts_us,
                    src: ctx.src,
                    dst: ctx.dst,
                    sport: ctx.sport,
                    dport: ctx.dport,
                    flow_id: ctx.flow_id,
                };
                if !super::lock(&global.shared.thresholds).check(
                    u64::from(rule.gid) << 32 | u64::from(rule.sid),
                    th,
                    &ev,
                    &mut global.stats.threshold_evictions,
                ) {
                    continue;
                }
            }
            out.push(RuleMatch {
                gid: rule.gid,
                sid: rule.sid,
                rev: rule.rev,
                msg: rule.msg.to_string(),
                classtype: rule.classtype.as_deref().map(str::to_string),
                category: rule.category.to_string(),
                severity: rule.severity,
                action: rule.action,
                references: rule
                    .references
                    .split('\n')
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect(),
                metadata: rule
                    .metadata
                    .split('\n')
                    .filter(|m| !m.is_empty())
                    .map(|m| {
                        let (k, v) = m.split_once(' ').unwrap_or((m, ""));
                        (k.to_string(), v.to_string())
                    })
                    .collect(),
                noalert: rule.noalert,
                target: rule.target,
            });
        }
    }

    pub fn stats(&self) -> RuleSetStats {
        let mut s = RuleSetStats { rules: self.rules.len(), ..Default::default() };
        let mut bufs: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut protos: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.rules {
            *protos.entry(r.proto.name()).or_default() += 1;
            let mut seen: Vec<Target> = Vec::new();
            for l in &r.lists {
                if l.target != Target::Payload && !seen.contains(&l.target) {
                    seen.push(l.target);
                    *bufs.entry(l.target.name()).or_default() += 1;
                }
            }
            if r.header_only() {
                s.header_only += 1;
            }
            if r.ip_only {
                s.ip_only += 1;
            }
            if r.has_pcre {
                s.pcre += 1;
            }
        }
        s.buffers_used = bufs.into_iter().collect();
        s.buffers_used.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        s.protocols = protos.into_iter().collect();
        s.protocols.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let (pre, nofp) = self.prefilter.counts();
        s.prefiltered = pre;
        s.no_fast_pattern = nofp;
        s.datasets = self.datasets.len();
        s.prefilter_bytes = self.prefilter.memory_usage();
        s
    }
}
