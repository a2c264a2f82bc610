//! Candidate selection, so that thousands of rules cost little per event.
//!
//! * Every rule with a usable content gets one fast pattern (an explicit
//!   `fast_pattern`, else — Suricata's choice — the longest content, with
//!   sticky-buffer contents preferred over payload ones). Patterns are grouped
//!   per target (payload/stream, each buffer), case-insensitively, except
//!   that `file.data`, `http.request_body` and `http.response_body` share
//!   one group that scans each body once (they read the same bytes). A
//!   group of many patterns scans through hashed anchors ([`Anchors`]),
//!   several times faster per byte than an automaton that does not fit in
//!   the cache; a group of a few (up to [`MAX_AC_PATTERNS`]) through an
//!   Aho-Corasick automaton. A hit makes the rule a candidate; the full
//!   rule is then verified (so the case and position of the pattern are
//!   checked there).
//! * Stream data is scanned for the patterns that end in its new bytes
//!   (those crossing in from the already inspected tail in front of them
//!   included), not again for those inside the tail: Suricata's stream
//!   prefilter likewise starts at its raw inspection progress. Candidates
//!   are verified on the whole window (tail and new bytes).
//! * Rules with keyword lists but no usable content (only `pcre`, negated
//!   contents, `urilen`, ...) are candidates whenever one target they need is
//!   present.
//! * Header-only rules are found through an index of the addresses of their
//!   narrower side (CIDR blocks per prefix length, looked up with the
//!   event's source and destination), else through a short list per IP
//!   protocol class. IP-only rules have their own index, consulted on the
//!   first packet of each flow direction only.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use aho_corasick::{AhoCorasick, MatchKind};

use super::{
    AppProto, Buffer, Inspect,
    anchors::{AnchorScratch, Anchors},
    content::{FastPattern, Item},
    engine::{Proto, Rule, Target, app_matches, proto_class},
    header::{AddrSet, PortSet},
};

/// Hash maps looked up on every packet: integer keys, no need for SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Most CIDR blocks a rule may contribute to the address index.
const MAX_INDEXED_BLOCKS: usize = 4096;

/// How a group looks for its patterns.
enum Scanner {
    /// Groups of a few patterns: Aho-Corasick (exact, with its own
    /// prefilters).
    Ac(AhoCorasick),
    /// Groups of many patterns: hashed anchors (a cost per byte that does
    /// not grow with the patterns, and that stays in the L1 cache).
    Anchors(Anchors),
}

/// Groups with more patterns than this scan with [`Anchors`].
const MAX_AC_PATTERNS: usize = 32;

/// Sources of the body group: file data, request body, response body.
const BODY_SOURCES: [(u8, Buffer); 3] =
    [(1, Buffer::FileData), (2, Buffer::HttpRequestBody), (4, Buffer::HttpResponseBody)];

/// The sources a body target reads, to server and to client.
fn body_mask(t: Target) -> Option<[u8; 2]> {
    Some(match t {
        Target::FileData => [1 | 2, 1 | 4],
        Target::Buf(Buffer::FileData) => [1, 1],
        Target::Buf(Buffer::HttpRequestBody) => [2, 2],
        Target::Buf(Buffer::HttpResponseBody) => [4, 4],
        _ => return None,
    })
}

/// What a group scans.
enum Scope {
    One(Target),
    /// The payload/stream patterns of the rules of one protocol class (bit
    /// per [`proto_class`]): a UDP datagram is not scanned for the patterns
    /// of TCP rules, nor a TCP stream for those of UDP rules (Suricata's
    /// signature groups per protocol).
    Payload(u8),
    /// `file.data`, `http.request_body` and `http.response_body` read the
    /// same bytes (file data and the bodies): their patterns are scanned
    /// together, each body once, and a pattern counts only in the sources
    /// its target reads in the event's direction (`masks`, per pattern).
    Bodies {
        masks: Vec<[u8; 2]>,
    },
}

/// A group before its scanner is built.
struct Draft {
    scope: Scope,
    targets: Vec<(Target, usize)>,
    pats: Vec<Vec<u8>>,
    /// Rules per pattern.
    rules: Vec<Vec<u32>>,
}

impl Default for Draft {
    fn default() -> Self {
        Draft { scope: Scope::One(Target::Payload), targets: Vec::new(), pats: Vec::new(), rules: Vec::new() }
    }
}

struct Group {
    scope: Scope,
    /// Targets with their rule counts (for the statistics).
    targets: Vec<(Target, usize)>,
    scanner: Scanner,
    /// First global pattern number of this group.
    offset: usize,
    /// Rules per pattern, each with its header summary (screened as the
    /// candidates are collected: no second pass, no lookup in another table).
    pats: Vec<Vec<(u32, Quick)>>,
}

#[derive(Default)]
struct AddrIndex {
    v4: Vec<(u8, FastMap<u32, Vec<u32>>)>,
    v6: Vec<(u8, FastMap<u128, Vec<u32>>)>,
}

impl AddrIndex {
    fn insert(&mut self, set: &AddrSet, rule: u32) -> bool {
        let Some((v4, v6)) = set.cidrs(MAX_INDEXED_BLOCKS) else { return false };
        for (a, p) in v4 {
            let pos = match self.v4.iter().position(|(q, _)| *q == p) {
                Some(i) => i,
                None => {
                    self.v4.push((p, FastMap::default()));
                    self.v4.len() - 1
                }
            };
            if let Some((_, m)) = self.v4.get_mut(pos) {
                m.entry(a).or_default().push(rule);
            }
        }
        for (a, p) in v6 {
            let pos = match self.v6.iter().position(|(q, _)| *q == p) {
                Some(i) => i,
                None => {
                    self.v6.push((p, FastMap::default()));
                    self.v6.len() - 1
                }
            };
            if let Some((_, m)) = self.v6.get_mut(pos) {
                m.entry(a).or_default().push(rule);
            }
        }
        true
    }

    fn lookup(&self, ip: IpAddr, out: &mut Vec<u32>) {
        let v4 = match ip {
            IpAddr::V4(a) => Some(u32::from(a)),
            IpAddr::V6(a) => {
                let x = u128::from(a);
                for (p, m) in &self.v6 {
                    let mask = if *p == 0 { 0 } else { u128::MAX << (128 - u32::from(*p)) };
                    if let Some(v) = m.get(&(x & mask)) {
                        out.extend_from_slice(v);
                    }
                }
                a.to_ipv4_mapped().map(u32::from)
            }
        };
        if let Some(x) = v4 {
            for (p, m) in &self.v4 {
                let mask = if *p == 0 { 0 } else { u32::MAX << (32 - u32::from(*p)) };
                if let Some(v) = m.get(&(x & mask)) {
                    out.extend_from_slice(v);
                }
            }
        }
    }
}

/// The cheap part of a rule's header, compact (a few words a rule, in rule
/// order) so that every candidate is screened before its full header
/// check: protocol class, app-layer protocol, flow direction and up to two
/// port ranges per side. Most candidates fail here (pattern hits of rules
/// for other ports or protocols, header-only rules found by an address):
/// Suricata gets the same effect from its signature masks and its
/// signature groups per port.
#[derive(Debug, Clone, Copy)]
struct Quick {
    /// Bit per [`proto_class`].
    classes: u8,
    app: Option<AppProto>,
    /// `flow:to_server` (Some(true)) / `to_client`.
    to_server: Option<bool>,
    /// Port ranges a one-way rule needs (`None`: any, more than two
    /// ranges, or a bidirectional rule).
    sport: Option<[(u16, u16); 2]>,
    dport: Option<[(u16, u16); 2]>,
}

fn port_filter(p: &PortSet, bidir: bool) -> Option<[(u16, u16); 2]> {
    if bidir || p.is_any() {
        return None;
    }
    match p.ranges.as_slice() {
        [a] => Some([*a, *a]),
        [a, b] => Some([*a, *b]),
        _ => None,
    }
}

impl Quick {
    fn of(r: &Rule) -> Quick {
        let c = r.proto.classes();
        Quick {
            classes: c.iter().enumerate().fold(0, |m, (i, on)| if *on { m | 1 << i } else { m }),
            app: match r.proto {
                Proto::App(a) => Some(a),
                _ => None,
            },
            to_server: r.flow_dir,
            sport: port_filter(&r.sport, r.bidir),
            dport: port_filter(&r.dport, r.bidir),
        }
    }

    /// False only when the rule's header cannot match (a necessary
    /// condition of `Rule::header_matches`).
    #[inline]
    fn ok(&self, ctx: &Inspect<'_>, class: u8, has_ports: bool) -> bool {
        let inr = |r: &[(u16, u16); 2], p: u16| has_ports && r.iter().any(|(a, b)| *a <= p && p <= *b);
        self.classes & class != 0
            && self.app.is_none_or(|a| app_matches(a, ctx.app_proto))
            && self.to_server.is_none_or(|d| d == ctx.to_server)
            && self.sport.as_ref().is_none_or(|r| inr(r, ctx.sport))
            && self.dport.as_ref().is_none_or(|r| inr(r, ctx.dport))
    }
}

pub(crate) struct Prefilter {
    groups: Vec<Group>,
    /// Per rule.
    quick: Vec<Quick>,
    npatterns: usize,
    nofp: Vec<(Target, Vec<u32>)>,
    /// Header-only rules not in the address index, per protocol class
    /// (each with its header summary once built).
    pkt_generic: [Vec<u32>; 4],
    pkt_generic_q: [Vec<(u32, Quick)>; 4],
    pkt_index: AddrIndex,
    iponly_generic: [Vec<u32>; 4],
    iponly_index: AddrIndex,
}

/// Reusable per-engine scratch space (kept in the global state).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub cand: Vec<u32>,
    /// The stream window of [`super::engine::Engine::inspect`] (its allocation reused).
    pub window: Vec<u8>,
    stamp: Vec<u32>,
    generation: u32,
    anchors: AnchorScratch,
}

/// The fast pattern of a rule: target and lower-cased bytes.
fn fast_pattern(rule: &Rule) -> Option<(Target, Vec<u8>)> {
    // score: (explicit, not payload, length)
    type Best<'r> = ((bool, bool, usize), Target, &'r [u8]);
    let mut best: Option<Best<'_>> = None;
    for l in &rule.lists {
        if !l.transforms.is_empty() || matches!(l.target, Target::IpSrc | Target::IpDst) {
            continue;
        }
        for item in &l.items {
            let Item::Content(c) = item else { continue };
            let Some(b) = c.fast_bytes() else { continue };
            let score = (c.fast != FastPattern::Unset, l.target != Target::Payload, b.len());
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, l.target, b));
            }
        }
    }
    best.map(|(_, t, b)| (t, b.to_ascii_lowercase()))
}

/// The target whose presence a rule without fast pattern waits for.
fn required_target(rule: &Rule) -> Target {
    rule.lists
        .iter()
        .map(|l| l.target)
        .find(|t| matches!(t, Target::Buf(_) | Target::FileData))
        .or_else(|| rule.lists.iter().map(|l| l.target).find(|t| *t == Target::Payload))
        .unwrap_or(Target::IpSrc)
}

fn size(set: &AddrSet) -> u128 {
    let v4: u128 = set.v4.iter().map(|(a, b)| u128::from(b - a) + 1).sum();
    let v6 = set.v6.iter().fold(0u128, |acc, (a, b)| acc.saturating_add((b - a).saturating_add(1)));
    v4.saturating_add(v6)
}

impl Prefilter {
    pub fn build(rules: &[Rule]) -> Prefilter {
        let mut pf = Prefilter {
            groups: Vec::new(),
            quick: rules.iter().map(Quick::of).collect(),
            npatterns: 0,
            nofp: Vec::new(),
            pkt_generic: Default::default(),
            pkt_generic_q: Default::default(),
            pkt_index: AddrIndex::default(),
            iponly_generic: Default::default(),
            iponly_index: AddrIndex::default(),
        };
        // target key -> (target, pattern -> id, patterns, rules per pattern)
        type G = (Target, HashMap<Vec<u8>, usize>, Vec<Vec<u8>>, Vec<Vec<u32>>);
        let mut groups: BTreeMap<usize, G> = BTreeMap::new();
        let mut nofp: BTreeMap<usize, (Target, Vec<u32>)> = BTreeMap::new();
        for (i, r) in rules.iter().enumerate() {
            let ri = i as u32;
            if r.header_only() {
                let (generic, index) = if r.ip_only {
                    (&mut pf.iponly_generic, &mut pf.iponly_index)
                } else {
                    (&mut pf.pkt_generic, &mut pf.pkt_index)
                };
                let mut sides: Vec<&AddrSet> = [&r.src, &r.dst].into_iter().filter(|s| !s.is_any()).collect();
                sides.sort_by_key(|s| size(s));
                let indexed = sides.first().is_some_and(|s| index.insert(s, ri));
                if !indexed {
                    for (c, on) in r.proto.classes().iter().enumerate() {
                        if *on && let Some(v) = generic.get_mut(c) {
                            v.push(ri);
                        }
                    }
                }
                continue;
            }
            match fast_pattern(r) {
                Some((t, pat)) => {
                    let g =
                        groups.entry(t.key()).or_insert_with(|| (t, HashMap::new(), Vec::new(), Vec::new()));
                    let id = match g.1.get(&pat) {
                        Some(id) => *id,
                        None => {
                            let id = g.2.len();
                            g.1.insert(pat.clone(), id);
                            g.2.push(pat);
                            g.3.push(Vec::new());
                            id
                        }
                    };
                    if let Some(v) = g.3.get_mut(id) {
                        v.push(ri);
                    }
                }
                None => {
                    let t = required_target(r);
                    nofp.entry(t.key()).or_insert_with(|| (t, Vec::new())).1.push(ri);
                }
            }
        }
        // the body targets' patterns in one group
        let mut bodies = Draft { scope: Scope::Bodies { masks: Vec::new() }, ..Draft::default() };
        let mut built = Vec::new();
        for (_, (t, _, pats, rules)) in groups {
            let n = rules.iter().map(Vec::len).sum();
            match (body_mask(t), &mut bodies.scope) {
                (Some(m), Scope::Bodies { masks }) => {
                    masks.extend(std::iter::repeat_n(m, pats.len()));
                    bodies.targets.push((t, n));
                    bodies.pats.extend(pats);
                    bodies.rules.extend(rules);
                }
                _ => built.push(Draft { scope: Scope::One(t), targets: vec![(t, n)], pats, rules }),
            }
        }
        if !bodies.pats.is_empty() {
            built.push(bodies);
        }
        // the payload patterns split per protocol class
        if let Some(i) = built.iter().position(|d| matches!(d.scope, Scope::One(Target::Payload))) {
            let whole = built.remove(i);
            let mut targets = Some(whole.targets);
            for class in 0..4u8 {
                let bit = 1u8 << class;
                let mut part = Draft { scope: Scope::Payload(bit), ..Draft::default() };
                for (p, rs) in whole.pats.iter().zip(&whole.rules) {
                    let rs: Vec<u32> = rs
                        .iter()
                        .copied()
                        .filter(|r| pf.quick.get(*r as usize).is_some_and(|q| q.classes & bit != 0))
                        .collect();
                    if !rs.is_empty() {
                        part.pats.push(p.clone());
                        part.rules.push(rs);
                    }
                }
                if !part.pats.is_empty() {
                    // the statistics count the target's rules once
                    part.targets = targets.take().unwrap_or_default();
                    built.push(part);
                }
            }
        }
        for Draft { scope, targets, pats, rules } in built {
            let scanner = if pats.len() > MAX_AC_PATTERNS {
                Scanner::Anchors(Anchors::new(&pats))
            } else {
                match AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&pats)
                {
                    Ok(ac) => Scanner::Ac(ac),
                    // cannot happen with this few byte patterns; stay correct anyway
                    Err(_) => Scanner::Anchors(Anchors::new(&pats)),
                }
            };
            let with_quick = |rs: Vec<u32>| -> Vec<(u32, Quick)> {
                rs.into_iter().filter_map(|r| pf.quick.get(r as usize).map(|q| (r, *q))).collect()
            };
            let rules = rules.into_iter().map(with_quick).collect();
            pf.groups.push(Group { scope, targets, scanner, offset: pf.npatterns, pats: rules });
            pf.npatterns += pats.len();
        }
        pf.nofp = nofp.into_values().collect();
        for (q, g) in pf.pkt_generic_q.iter_mut().zip(&pf.pkt_generic) {
            *q = g.iter().filter_map(|r| pf.quick.get(*r as usize).map(|x| (*r, *x))).collect();
        }
        pf
    }

    /// Fills `s.cand` with the candidate rules, sorted (evaluation order).
    pub fn candidates(&self, ctx: &Inspect<'_>, first_in_dir: bool, s: &mut Scratch) {
        s.cand.clear();
        if s.stamp.len() != self.npatterns {
            s.stamp = vec![0; self.npatterns];
            s.generation = 0;
        }
        s.generation = s.generation.wrapping_add(1);
        if s.generation == 0 {
            s.stamp.fill(0);
            s.generation = 1;
        }
        let generation = s.generation;
        let dir = usize::from(!ctx.to_server);
        let class = 1u8 << proto_class(ctx.proto);
        let has_ports = matches!(ctx.proto, 6 | 17 | 132);
        // a rule whose header summary cannot match is no candidate
        let screened = |rs: &[(u32, Quick)], cand: &mut Vec<u32>| {
            for (r, q) in rs {
                if q.ok(ctx, class, has_ports) {
                    cand.push(*r);
                }
            }
        };
        for g in &self.groups {
            let Scratch { cand, stamp, anchors, .. } = s;
            let mut hit = |p: usize| {
                if let Some(st) = stamp.get_mut(g.offset + p)
                    && *st != generation
                {
                    *st = generation;
                    if let Some(rs) = g.pats.get(p) {
                        screened(rs, cand);
                    }
                }
            };
            // the patterns ending in `d[from..]`
            let mut scan_after = |d: &[u8], from: usize, hit: &mut dyn FnMut(usize)| match &g.scanner {
                Scanner::Ac(ac) => ac
                    .find_overlapping_iter(d)
                    .filter(|m| m.end() > from)
                    .for_each(|m| hit(m.pattern().as_usize())),
                Scanner::Anchors(a) => a.scan_after(d, from, anchors, |p| hit(p as usize)),
            };
            match &g.scope {
                Scope::One(t) => {
                    if t.present(ctx) {
                        t.any_instance(ctx, |d| {
                            scan_after(d, 0, &mut hit);
                            false
                        });
                    }
                }
                Scope::Payload(bit) => {
                    if class == *bit && Target::Payload.present(ctx) {
                        // stream data: the new bytes, and the patterns that
                        // cross into them from the inspected tail in front
                        // (as Suricata's stream prefilter starts at the raw
                        // inspection progress); the packet's payload on its
                        // own unless the new bytes end with it
                        let stream = ctx.stream.filter(|s| !s.is_empty());
                        let seen = ctx.stream_seen.min(stream.map_or(0, <[u8]>::len));
                        let new = stream.and_then(|s| s.get(seen..)).unwrap_or_default();
                        let covered = stream.is_some() && new.ends_with(ctx.payload);
                        if !(covered || ctx.payload.is_empty()) {
                            scan_after(ctx.payload, 0, &mut hit);
                        }
                        if let Some(s) = stream {
                            scan_after(s, seen, &mut hit);
                        }
                    }
                }
                Scope::Bodies { masks } => {
                    for (bit, b) in BODY_SOURCES {
                        for d in ctx.buffers.get(b) {
                            scan_after(d, 0, &mut |p| {
                                if masks.get(p).is_some_and(|m| m[dir] & bit != 0) {
                                    hit(p)
                                }
                            });
                        }
                    }
                }
            }
        }
        // the rest: collected, then screened (fewer, and not all with a summary at hand)
        let from = s.cand.len();
        for (t, rs) in &self.nofp {
            if t.present(ctx) {
                s.cand.extend_from_slice(rs);
            }
        }
        if !ctx.buffers.tx_only() {
            let c = proto_class(ctx.proto);
            self.pkt_index.lookup(ctx.src, &mut s.cand);
            self.pkt_index.lookup(ctx.dst, &mut s.cand);
            if first_in_dir {
                if let Some(v) = self.iponly_generic.get(c) {
                    s.cand.extend_from_slice(v);
                }
                self.iponly_index.lookup(ctx.src, &mut s.cand);
                self.iponly_index.lookup(ctx.dst, &mut s.cand);
            }
        }
        let quick = &self.quick;
        let mut i = from;
        s.cand.retain(|r| {
            i += 1;
            i <= from || quick.get(*r as usize).is_some_and(|q| q.ok(ctx, class, has_ports))
        });
        if !ctx.buffers.tx_only()
            && let Some(v) = self.pkt_generic_q.get(proto_class(ctx.proto))
        {
            screened(v, &mut s.cand);
        }
        s.cand.sort_unstable();
        s.cand.dedup();
    }

    /// Rules per prefilter group and rules without fast pattern.
    pub fn memory_usage(&self) -> usize {
        self.groups
            .iter()
            .map(|g| match &g.scanner {
                Scanner::Ac(ac) => ac.memory_usage(),
                Scanner::Anchors(a) => a.memory_usage(),
            })
            .sum()
    }

    pub fn counts(&self) -> (Vec<(&'static str, usize)>, usize) {
        let mut v: Vec<(&'static str, usize)> =
            self.groups.iter().flat_map(|g| g.targets.iter().map(|(t, n)| (t.name(), *n))).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        (v, self.nofp.iter().map(|(_, r)| r.len()).sum())
    }
}
