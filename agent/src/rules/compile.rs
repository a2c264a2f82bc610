//! From rule text to [`Rule`]: header, options, validation; the rule-set
//! builder with the load report.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    Action, AlertTarget, AppProto, BufDir, Buffer, LoadReport, RuleSet, Skipped, Vars,
    classify::{Classifications, DEFAULT_PRIORITY},
    content::{
        self, ByteExtract, ByteJump, ByteOp, ByteTest, Content, Endian, FastPattern, Item, MAX_VARS,
        PcreItem, Val,
    },
    dataset::{self, Dataset, DatasetOp, DsCmd, DsType, FileFormat, JsonKind},
    engine::{
        self, Engine, FbAction, FbCheck, FlagMode, List, PktCheck, Proto, Rule, StreamMode, Target, Transform,
    },
    numbers::{UintCmp, parse_i64, parse_u64},
    pcre,
    prefilter::Prefilter,
    text::{self, trunc, unescape, unquote},
    threshold,
};

/// Why a rule is skipped.
#[derive(Debug)]
pub(crate) struct Skip {
    pub category: String,
    pub reason: String,
}

impl Skip {
    fn new(category: impl Into<String>, reason: impl Into<String>) -> Skip {
        Skip { category: category.into(), reason: reason.into() }
    }

    fn malformed(reason: impl Into<String>) -> Skip {
        Skip::new("malformed rule", reason)
    }

    fn unsupported(keyword: &str, why: &str) -> Skip {
        Skip::new(format!("unsupported keyword `{keyword}`"), format!("`{keyword}` is not supported: {why}"))
    }
}

/// Collects rules from files and strings.
pub(crate) struct Builder<'v> {
    vars: &'v Vars,
    classes: Classifications,
    rules: Vec<(Rule, usize, usize)>,
    by_sid: HashMap<(u32, u32), usize>,
    report: LoadReport,
    datasets: Vec<Dataset>,
    ds_names: HashMap<String, u32>,
    strings: HashMap<String, Arc<str>>,
}

impl<'v> Builder<'v> {
    pub fn new(vars: &'v Vars, classes: Classifications) -> Builder<'v> {
        Builder {
            vars,
            classes,
            rules: Vec::new(),
            by_sid: HashMap::new(),
            report: LoadReport::default(),
            datasets: Vec::new(),
            ds_names: HashMap::new(),
            strings: HashMap::new(),
        }
    }

    pub fn add_text(&mut self, text: &str, file: &Path, base: &Path) {
        let (raws, disabled) = text::rule_lines(text);
        self.report.disabled += disabled;
        let fi = self.report.files.len();
        self.report.files.push((file.to_path_buf(), 0, 0));
        for raw in raws {
            self.report.total += 1;
            if let Some(f) = self.report.files.get_mut(fi) {
                f.1 += 1;
            }
            match self.compile(&raw.text, base) {
                Ok(rule) => self.accept(rule, fi, raw.line),
                Err(sk) => self.report.skipped.push(Skipped {
                    file: file.to_path_buf(),
                    line: raw.line,
                    sid: quick_sid(&raw.text),
                    reason: sk.reason,
                    category: sk.category,
                }),
            }
        }
    }

    fn file_of(&self, fi: usize) -> PathBuf {
        self.report.files.get(fi).map(|f| f.0.clone()).unwrap_or_default()
    }

    fn accept(&mut self, rule: Rule, fi: usize, line: usize) {
        let key = (rule.gid, rule.sid);
        if let Some(&idx) = self.by_sid.get(&key) {
            let Some((old, ofi, oline)) = self.rules.get(idx) else { return };
            let (ofi, oline, orev) = (*ofi, *oline, old.rev);
            if rule.rev > orev {
                self.report.skipped.push(Skipped {
                    file: self.file_of(ofi),
                    line: oline,
                    sid: Some(rule.sid),
                    reason: format!(
                        "duplicate sid {} (gid {}): superseded by rev {}",
                        rule.sid, rule.gid, rule.rev
                    ),
                    category: "duplicate sid".into(),
                });
                if let Some(f) = self.report.files.get_mut(ofi) {
                    f.2 = f.2.saturating_sub(1);
                }
                if let Some(f) = self.report.files.get_mut(fi) {
                    f.2 += 1;
                }
                if let Some(slot) = self.rules.get_mut(idx) {
                    *slot = (rule, fi, line);
                }
            } else {
                self.report.skipped.push(Skipped {
                    file: self.file_of(fi),
                    line,
                    sid: Some(rule.sid),
                    reason: format!(
                        "duplicate sid {} (gid {}): rev {orev} already loaded",
                        rule.sid, rule.gid
                    ),
                    category: "duplicate sid".into(),
                });
            }
            return;
        }
        self.by_sid.insert(key, self.rules.len());
        self.rules.push((rule, fi, line));
        if let Some(f) = self.report.files.get_mut(fi) {
            f.2 += 1;
        }
    }

    pub fn finish(mut self) -> (RuleSet, LoadReport) {
        let mut rules: Vec<(usize, Rule)> = self.rules.into_iter().map(|(r, _, _)| r).enumerate().collect();
        rules.sort_by_key(|(i, r)| (action_rank(r.action), flowbits_rank(r), *i));
        let rules: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
        self.report.loaded = rules.len();
        let prefilter = Prefilter::build(&rules);
        let stream_overlap = engine::stream_overlap(&rules);
        let engine = Engine { rules, datasets: self.datasets, prefilter, stream_overlap };
        (RuleSet { engine }, self.report)
    }

    /// One shared copy of a repeated string (class names and descriptions).
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(s.to_string(), a.clone());
        a
    }

    /// Flowbit ids are hashes of the names, so that flow state survives a
    /// rule reload.
    fn flowbit(&mut self, name: &str) -> u64 {
        name_hash(name)
    }

    fn compile(&mut self, text: &str, base: &Path) -> Result<Rule, Skip> {
        let (hdr, body) = text::split_rule(text).map_err(Skip::malformed)?;
        let [action, proto, src, sport, dir, dst, dport] = hdr[..] else {
            return Err(Skip::malformed(format!("header has {} fields, expected 7", hdr.len())));
        };
        let action = match action {
            "alert" => Action::Alert,
            "drop" => Action::Drop,
            "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => Action::Reject,
            "pass" => Action::Pass,
            other => return Err(Skip::new("unknown action", format!("unknown action `{}`", trunc(other)))),
        };
        let proto = parse_proto(proto)?;
        let vars = self.vars;
        let addr = |s: &str| vars.addr_set(s).map_err(|e| Skip::new("bad address", e));
        let port = |s: &str| vars.port_set(s).map_err(|e| Skip::new("bad port", e));
        let (src, sport, dst, dport) = (addr(src)?, port(sport)?, addr(dst)?, port(dport)?);
        let bidir = match dir {
            "->" => false,
            "<>" => true,
            other => return Err(Skip::malformed(format!("invalid direction `{}`", trunc(other)))),
        };
        let opts = text::split_options(body).map_err(Skip::malformed)?;
        let mut st = RuleState::default();
        for o in &opts {
            self.option(&mut st, o.key, o.value, base)?;
        }
        self.finalize(st, action, proto, src, sport, dst, dport, bidir)
    }

    fn option(
        &mut self,
        st: &mut RuleState,
        key: &str,
        value: Option<&str>,
        base: &Path,
    ) -> Result<(), Skip> {
        let need = || value.ok_or_else(|| Skip::malformed(format!("`{key}` needs a value")));
        match key {
            "msg" => st.msg = Some(unescape(unquote(need()?))),
            "sid" => st.sid = Some(num_u32(key, need()?)?),
            "rev" => st.rev = num_u32(key, need()?)?,
            "gid" => st.gid = Some(num_u32(key, need()?)?),
            "classtype" => {
                let c = need()?.trim();
                let (desc, prio) = self.classes.get(c).ok_or_else(|| {
                    Skip::new("unknown classtype", format!("unknown classtype `{}`", trunc(c)))
                })?;
                let (name, desc, prio) = (c.to_ascii_lowercase(), desc.clone(), *prio);
                let name = self.intern(&name);
                let desc = self.intern(&desc);
                st.classtype = Some((name, desc, prio));
            }
            "priority" => {
                let v = need()?;
                let p: u8 =
                    v.trim().parse().map_err(|_| Skip::malformed(format!("invalid priority `{v}`")))?;
                if p == 0 {
                    return Err(Skip::malformed("priority 0"));
                }
                st.priority = Some(p);
            }
            "reference" => {
                let r = need()?.trim().replace('\n', " ");
                if !st.references.is_empty() {
                    st.references.push('\n');
                }
                st.references.push_str(&r);
            }
            "metadata" => {
                for part in need()?.split(',') {
                    let p = part.trim();
                    if p.is_empty() {
                        continue;
                    }
                    let (k, v) = p.split_once(char::is_whitespace).unwrap_or((p, ""));
                    if !st.metadata.is_empty() {
                        st.metadata.push('\n');
                    }
                    st.metadata.push_str(k);
                    st.metadata.push(' ');
                    st.metadata.push_str(&v.trim().replace('\n', " "));
                }
            }
            "target" => {
                st.target = Some(match need()?.trim() {
                    "src_ip" => AlertTarget::SrcIp,
                    "dest_ip" => AlertTarget::DestIp,
                    v => return Err(Skip::malformed(format!("invalid target `{v}`"))),
                })
            }
            "noalert" => st.noalert = true,
            "flow" => parse_flow(st, need()?)?,
            "flowbits" => self.parse_flowbits(st, need()?)?,
            "threshold" | "detection_filter" => {
                if st.threshold.is_some() {
                    return Err(Skip::malformed("more than one threshold/detection_filter"));
                }
                let t = threshold::parse(need()?, key == "detection_filter")
                    .map_err(|e| Skip::malformed(format!("{key}: {e}")))?;
                st.threshold = Some(t);
            }
            "dsize" => {
                st.pkt.push(PktCheck::Dsize(uint(key, need()?, 65535)?));
                st.dsize = true;
            }
            "ttl" => st.pkt.push(PktCheck::Ttl(uint(key, need()?, 255)?)),
            "flow.pkts" | "flow.bytes" => {
                // flow.pkts:toserver|toclient|either,CMP
                let v = need()?;
                let (d, cmp) = v.split_once(',').ok_or_else(|| {
                    Skip::malformed(format!("{key}: expected `toserver|toclient|either,NUMBER`, got `{v}`"))
                })?;
                let dir = match d.trim() {
                    "toserver" => 0,
                    "toclient" => 1,
                    "either" => 2,
                    other => return Err(Skip::malformed(format!("{key}: unknown direction `{other}`"))),
                };
                let cmp = uint(key, cmp, u64::MAX)?;
                st.pkt.push(PktCheck::FlowCount { bytes: key == "flow.bytes", dir, cmp });
            }
            "flow.pkts_toserver" | "flow.pkts_toclient" | "flow.bytes_toserver" | "flow.bytes_toclient" => {
                let cmp = uint(key, need()?, u64::MAX)?;
                st.pkt.push(PktCheck::FlowCount {
                    bytes: key.starts_with("flow.bytes"),
                    dir: u8::from(key.ends_with("toclient")),
                    cmp,
                });
            }
            "itype" => st.pkt.push(PktCheck::Itype(uint(key, need()?, 255)?)),
            "icode" => st.pkt.push(PktCheck::Icode(uint(key, need()?, 255)?)),
            "ip_proto" => st.pkt.push(PktCheck::IpProto(parse_ip_proto(need()?)?)),
            "flags" => st.pkt.push(parse_flags(need()?)?),
            "sameip" => st.pkt.push(PktCheck::SameIp),
            "app-layer-protocol" => {
                let v = need()?.split(',').next().unwrap_or("").trim();
                let (neg, name) = match v.strip_prefix('!') {
                    Some(n) => (true, n.trim()),
                    None => (false, v),
                };
                let proto = if name == "unknown" {
                    AppProto::Unknown
                } else {
                    AppProto::from_name(name).ok_or_else(|| {
                        Skip::new(
                            "unsupported protocol",
                            format!("unsupported app-layer-protocol `{}`", trunc(name)),
                        )
                    })?
                };
                st.pkt.push(PktCheck::AppLayer { proto, negated: neg });
            }
            "content" => {
                let (neg, pat) = content::parse_content(need()?).map_err(Skip::malformed)?;
                st.push_content(Content::new(pat, neg));
            }
            "uricontent" => {
                let (neg, pat) = content::parse_content(need()?).map_err(Skip::malformed)?;
                let list = st.list_idx(Target::Buf(Buffer::HttpUri), &[]);
                st.push_content_to(list, Content::new(pat, neg));
            }
            "nocase" => st.content_mut(key)?.nocase = true,
            "depth" | "offset" | "distance" | "within" => {
                let v = st.val(key, need()?)?;
                let c = st.content_mut(key)?;
                let slot = match key {
                    "depth" => &mut c.depth,
                    "offset" => &mut c.offset,
                    "distance" => &mut c.distance,
                    _ => &mut c.within,
                };
                if slot.is_some() {
                    return Err(Skip::malformed(format!("`{key}` given twice for one content")));
                }
                *slot = Some(v);
            }
            "startswith" => st.content_mut(key)?.startswith = true,
            "endswith" => st.content_mut(key)?.endswith = true,
            "fast_pattern" => {
                let fp = match value.map(str::trim) {
                    None | Some("") => FastPattern::Set,
                    Some("only") => FastPattern::Only,
                    Some(v) => {
                        let (a, b) = v
                            .split_once(',')
                            .ok_or_else(|| Skip::malformed(format!("invalid fast_pattern `{v}`")))?;
                        let a: u16 = a
                            .trim()
                            .parse()
                            .map_err(|_| Skip::malformed(format!("invalid fast_pattern `{v}`")))?;
                        let b: u16 = b
                            .trim()
                            .parse()
                            .map_err(|_| Skip::malformed(format!("invalid fast_pattern `{v}`")))?;
                        FastPattern::Chop(a, b)
                    }
                };
                st.content_mut(key)?.fast = fp;
            }
            "pcre" => {
                let spec = pcre::parse(need()?).map_err(|e| Skip::new(e.category(), format!("pcre: {e}")))?;
                // validated now, compiled again on first use (see `PcreItem`)
                pcre::compile(&spec.translated, spec.backtrack)
                    .map_err(|e| Skip::new(e.category(), format!("pcre: {e}")))?;
                let list = match spec.buffer {
                    Some(b) => st.list_idx(Target::Buf(b), &[]),
                    None => st.current_list(),
                };
                st.push_item(
                    list,
                    Item::Pcre(Box::new(PcreItem {
                        translated: spec.translated,
                        backtrack: spec.backtrack,
                        re: std::sync::OnceLock::new(),
                        relative: spec.relative,
                        negated: spec.negated,
                        retry_next: false,
                    })),
                );
                st.last_match = Some(list);
                st.has_pcre = true;
            }
            "isdataat" => {
                let v = need()?;
                let mut parts = v.split(',').map(str::trim);
                let first = parts.next().unwrap_or("");
                let (negated, n) = match first.strip_prefix('!') {
                    Some(n) => (true, n.trim()),
                    None => (false, first),
                };
                let mut relative = false;
                for p in parts {
                    match p {
                        "relative" => relative = true,
                        "rawbytes" => {}
                        other => return Err(Skip::malformed(format!("invalid isdataat option `{other}`"))),
                    }
                }
                let n = st.val(key, n)?;
                let list = st.placement(relative);
                st.push_item(list, Item::IsDataAt { n, relative, negated });
            }
            "byte_test" => {
                let bt = parse_byte_test(st, need()?)?;
                let list = st.placement(bt.relative);
                st.push_item(list, Item::ByteTest(Box::new(bt)));
            }
            "byte_jump" => {
                let bj = parse_byte_jump(st, need()?)?;
                let list = st.placement(bj.relative);
                st.push_item(list, Item::ByteJump(Box::new(bj)));
            }
            "byte_extract" => {
                let be = parse_byte_extract(st, need()?)?;
                let list = st.placement(be.relative);
                st.push_item(list, Item::ByteExtract(Box::new(be)));
            }
            "bsize" => {
                let cmp = uint(key, need()?, u64::MAX)?;
                let list = match (&st.sticky, st.last_match) {
                    (Some(_), _) => st.current_list(),
                    (None, Some(l)) if st.lists.get(l).is_some_and(|x| x.target != Target::Payload) => l,
                    _ => return Err(Skip::malformed("bsize without a sticky buffer")),
                };
                st.push_item(list, Item::Bsize(cmp));
            }
            "urilen" => {
                let v = need()?;
                let (n, raw) = match v.rsplit_once(',') {
                    Some((n, "raw")) | Some((n, " raw")) => (n, true),
                    Some((n, m)) if m.trim() == "raw" => (n, true),
                    Some((n, m)) if m.trim() == "norm" => (n, false),
                    _ => (v, false),
                };
                let cmp = uint(key, n, 65535)?;
                let t = Target::Buf(if raw { Buffer::HttpRawUri } else { Buffer::HttpUri });
                let list = st.list_idx(t, &[]);
                st.push_item(list, Item::Urilen(cmp));
            }
            "dataset" | "datarep" => {
                let op = if key == "datarep" {
                    self.parse_datarep(need()?, base)?
                } else {
                    self.parse_dataset(need()?, base)?
                };
                if st.sticky.is_none() {
                    return Err(Skip::malformed(format!("{key} without a sticky buffer")));
                }
                let list = st.current_list();
                st.push_item(list, Item::Dataset(op));
            }
            "pkt_data" => st.sticky = None,
            "file_data" | "file.data" => st.set_sticky(Target::FileData),
            "ip.src" => st.set_sticky(Target::IpSrc),
            "ip.dst" => st.set_sticky(Target::IpDst),
            k if sticky_buffer(k).is_some() => {
                if let Some(b) = sticky_buffer(k) {
                    st.set_sticky(Target::Buf(b));
                }
            }
            k if legacy_modifier(k).is_some() => {
                if let Some(b) = legacy_modifier(k) {
                    st.move_last_content(k, Target::Buf(b))?;
                }
            }
            k if Transform::parse(k).is_some() => {
                let Some(t) = Transform::parse(k) else { return Ok(()) };
                match &mut st.sticky {
                    None => return Err(Skip::malformed(format!("transform `{k}` without a sticky buffer"))),
                    Some(s) if s.list.is_some() => {
                        return Err(Skip::malformed(format!("transform `{k}` after keywords of the buffer")));
                    }
                    Some(s) => s.transforms.push(t),
                }
            }
            "tag" | "prefilter" | "requires" | "bypass" | "filestore" | "rawbytes" | "replace" => {}
            k => return Err(unsupported(k)),
        }
        Ok(())
    }

    fn parse_flowbits(&mut self, st: &mut RuleState, v: &str) -> Result<(), Skip> {
        let (cmd, names) = match v.split_once(',') {
            Some((c, n)) => (c.trim(), Some(n.trim())),
            None => (v.trim(), None),
        };
        if cmd == "noalert" {
            st.noalert = true;
            return Ok(());
        }
        let names = names
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Skip::malformed(format!("flowbits `{cmd}` needs a name")))?;
        let (list, all): (Vec<&str>, bool) = if names.contains('|') {
            (names.split('|').map(str::trim).collect(), false)
        } else {
            (names.split('&').map(str::trim).collect(), true)
        };
        if list.iter().any(|n| n.is_empty() || n.contains(char::is_whitespace)) {
            return Err(Skip::malformed(format!("invalid flowbit name `{}`", trunc(names))));
        }
        let ids: Vec<u64> = list.iter().map(|n| self.flowbit(n)).collect();
        match cmd {
            "set" => st.fb_actions.push(FbAction::Set(ids)),
            "unset" => st.fb_actions.push(FbAction::Unset(ids)),
            "toggle" => st.fb_actions.push(FbAction::Toggle(ids)),
            "isset" => st.fb_checks.push(FbCheck::IsSet { bits: ids, all }),
            "isnotset" => st.fb_checks.push(FbCheck::IsNotSet { bits: ids, all }),
            other => return Err(Skip::malformed(format!("unknown flowbits command `{}`", trunc(other)))),
        }
        Ok(())
    }

    fn parse_dataset(&mut self, v: &str, base: &Path) -> Result<DatasetOp, Skip> {
        let mut parts = v.split(',').map(str::trim);
        let cmd = match parts.next().unwrap_or("") {
            "set" => DsCmd::Set,
            "unset" => DsCmd::Unset,
            "isset" => DsCmd::IsSet,
            "isnotset" => DsCmd::IsNotSet,
            other => return Err(Skip::malformed(format!("unknown dataset command `{}`", trunc(other)))),
        };
        let name =
            parts.next().filter(|n| !n.is_empty()).ok_or_else(|| Skip::malformed("dataset needs a name"))?;
        let mut ty = None;
        let mut load = None;
        let mut subdomain = false;
        let mut fmt = FileFormat::default();
        for p in parts {
            let (k, val) = option_kv(p);
            match k {
                "type" => ty = Some(ds_type(val)?),
                "load" => load = Some(val.to_string()),
                "state" | "save" => {
                    return Err(Skip::new(
                        "dataset",
                        format!("dataset `{k}` would write files; only `load` is supported"),
                    ));
                }
                "format" => {
                    fmt.json = match val {
                        "csv" => None,
                        "json" => Some(JsonKind::Json),
                        "ndjson" | "jsonline" | "jsonlines" => Some(JsonKind::Lines),
                        other => {
                            return Err(Skip::new(
                                "dataset",
                                format!("unknown dataset format `{}`", trunc(other)),
                            ));
                        }
                    }
                }
                "value_key" => fmt.value_key = Some(val.to_string()),
                "array_key" => fmt.array_key = Some(val.to_string()),
                "match" => {
                    if val != "subdomain" {
                        return Err(Skip::new("dataset", format!("unknown dataset match `{}`", trunc(val))));
                    }
                    subdomain = true;
                }
                "memcap" | "hashsize" | "enrichment_key" | "context_key" | "remove_key" | "" => {}
                other => {
                    return Err(Skip::new("dataset", format!("unknown dataset option `{}`", trunc(other))));
                }
            }
        }
        let id = match self.ds_names.get(name) {
            Some(&id) => {
                let existing = self.datasets.get(id as usize).map(|d| d.ty);
                if let (Some(t), Some(e)) = (ty, existing)
                    && t != e
                {
                    return Err(Skip::new(
                        "dataset",
                        format!("dataset `{name}` redefined with another type"),
                    ));
                }
                id
            }
            None => {
                let ty = ty.ok_or_else(|| Skip::new("dataset", format!("dataset `{name}` has no type")))?;
                let data = match &load {
                    Some(f) => dataset::load(&base.join(f), ty, &fmt).map_err(|e| Skip::new("dataset", e))?,
                    None => Default::default(),
                };
                let id = self.datasets.len() as u32;
                self.datasets.push(Dataset { name: name.to_string(), ty, data, rep: Default::default() });
                self.ds_names.insert(name.to_string(), id);
                id
            }
        };
        let ty = self.datasets.get(id as usize).map(|d| d.ty).unwrap_or(DsType::String);
        Ok(DatasetOp { id, key: name_hash(name), ty, cmd, subdomain, rep: None })
    }

    /// `datarep:NAME, OP, VALUE, load FILE, type TYPE[, memcap .., hashsize ..]`
    /// with OP one of `>`, `<`, `>=`, `<=`, `==`, `!=`.
    fn parse_datarep(&mut self, v: &str, base: &Path) -> Result<DatasetOp, Skip> {
        let mut parts = v.split(',').map(str::trim);
        let name =
            parts.next().filter(|n| !n.is_empty()).ok_or_else(|| Skip::malformed("datarep needs a name"))?;
        let op = parts.next().unwrap_or("");
        let value = parts.next().unwrap_or("");
        let op = match op {
            ">" | "<" | ">=" | "<=" | "!=" => op,
            "==" => "=",
            other => return Err(Skip::malformed(format!("datarep: unknown operator `{}`", trunc(other)))),
        };
        let cmp = super::numbers::UintCmp::parse(&format!("{op}{value}"), u64::MAX)
            .map_err(|e| Skip::malformed(format!("datarep: {e}")))?;
        let (mut ty, mut load) = (None, None);
        for p in parts {
            let (k, val) = option_kv(p);
            match k {
                "type" => ty = Some(ds_type(val)?),
                "load" => load = Some(val.to_string()),
                "memcap" | "hashsize" | "" => {}
                "state" | "save" => {
                    return Err(Skip::new(
                        "dataset",
                        format!("datarep `{k}` would write files; only `load` is supported"),
                    ));
                }
                other => {
                    return Err(Skip::new("dataset", format!("unknown datarep option `{}`", trunc(other))));
                }
            }
        }
        let key = format!("datarep:{name}");
        let id = match self.ds_names.get(&key) {
            Some(&id) => id,
            None => {
                let ty = ty.ok_or_else(|| Skip::new("dataset", format!("datarep `{name}` has no type")))?;
                let file =
                    load.ok_or_else(|| Skip::new("dataset", format!("datarep `{name}` has no `load`")))?;
                let rep = dataset::load_rep(&base.join(file), ty).map_err(|e| Skip::new("dataset", e))?;
                let id = self.datasets.len() as u32;
                self.datasets.push(Dataset { name: name.to_string(), ty, data: Default::default(), rep });
                self.ds_names.insert(key.clone(), id);
                id
            }
        };
        let ty = self.datasets.get(id as usize).map(|d| d.ty).unwrap_or(DsType::String);
        Ok(DatasetOp { id, key: name_hash(&key), ty, cmd: DsCmd::IsSet, subdomain: false, rep: Some(cmp) })
    }

    #[allow(clippy::too_many_arguments)]
    fn finalize(
        &self,
        st: RuleState,
        action: Action,
        proto: Proto,
        src: super::header::AddrSet,
        sport: super::header::PortSet,
        dst: super::header::AddrSet,
        dport: super::header::PortSet,
        bidir: bool,
    ) -> Result<Rule, Skip> {
        let sid = st.sid.ok_or_else(|| Skip::malformed("no sid"))?;
        if canhgac_proto::sid::is_reserved(u64::from(sid)) {
            return Err(Skip::new(
                "sid in the reserved range",
                format!(
                    "sid {sid} is reserved for canhgac's built-in detectors ({}-{}); give the rule another sid",
                    canhgac_proto::sid::RESERVED.start(),
                    canhgac_proto::sid::RESERVED.end()
                ),
            ));
        }
        let mut lists = Vec::new();
        for lb in st.lists {
            if lb.items.is_empty() {
                continue;
            }
            let mut items = lb.items;
            for it in items.iter_mut() {
                if let Item::Content(c) = it {
                    check_content(c, lb.target, &lb.transforms)?;
                    c.finalize();
                }
            }
            content::link(&mut items);
            lists.push(List { target: lb.target, transforms: lb.transforms, items });
        }
        let has_buffers = lists.iter().any(|l| matches!(l.target, Target::Buf(_) | Target::FileData));
        let tx_dir = st.flow_dir.or_else(|| {
            let dirs: Vec<BufDir> = lists
                .iter()
                .filter_map(|l| match l.target {
                    Target::Buf(b) => Some(b.dir()),
                    _ => None,
                })
                .collect();
            if dirs.contains(&BufDir::ToClient) {
                Some(false)
            } else if dirs.contains(&BufDir::ToServer) {
                Some(true)
            } else {
                None
            }
        });
        let mut stream_mode = st.stream_mode;
        match proto {
            Proto::TcpPkt => stream_mode = StreamMode::PacketOnly,
            Proto::TcpStream => stream_mode = StreamMode::StreamOnly,
            _ => {}
        }
        // dsize, and byte_*/isdataat without content or pcre, describe the
        // packet: evaluated per packet, not on the stream (Suricata's
        // SIG_FLAG_REQUIRE_PACKET for dsize)
        let packet_keywords_only = lists.iter().any(|l| l.target == Target::Payload)
            && lists
                .iter()
                .filter(|l| l.target == Target::Payload)
                .all(|l| !l.items.iter().any(|i| matches!(i, Item::Content(_) | Item::Pcre(_))));
        if (st.dsize || packet_keywords_only) && stream_mode == StreamMode::Both {
            stream_mode = StreamMode::PacketOnly;
        }
        let ip_only = proto == Proto::Ip
            && sport.is_any()
            && dport.is_any()
            && lists.is_empty()
            && st.pkt.is_empty()
            && st.flow_dir.is_none()
            && st.established.is_none()
            && st.fb_checks.is_empty()
            && stream_mode == StreamMode::Both;
        let (classtype, category, class_prio) = match st.classtype {
            Some((c, d, p)) => (Some(c), d, p),
            None => (None, Arc::from(""), DEFAULT_PRIORITY),
        };
        let prio = st.priority.unwrap_or(class_prio);
        Ok(Rule {
            gid: st.gid.unwrap_or(1),
            sid,
            rev: st.rev,
            msg: st.msg.unwrap_or_default().into_boxed_str(),
            action,
            classtype,
            category,
            severity: prio.clamp(1, 4),
            references: st.references.into_boxed_str(),
            metadata: st.metadata.into_boxed_str(),
            target: st.target,
            proto,
            src,
            sport,
            dst,
            dport,
            bidir,
            flow_dir: st.flow_dir,
            established: st.established,
            stream_mode,
            tx_dir,
            pkt: st.pkt,
            lists,
            fb_checks: st.fb_checks,
            fb_actions: st.fb_actions,
            noalert: st.noalert,
            threshold: st.threshold,
            ip_only,
            has_buffers,
            has_pcre: st.has_pcre,
        })
    }
}

fn action_rank(a: Action) -> u8 {
    match a {
        Action::Pass => 0,
        Action::Drop => 1,
        Action::Reject => 2,
        Action::Alert => 3,
    }
}

/// Setters before rules that read and set, before readers, before the rest.
fn flowbits_rank(r: &Rule) -> u8 {
    match (r.fb_actions.is_empty(), r.fb_checks.is_empty()) {
        (false, true) => 0,
        (false, false) => 1,
        (true, false) => 2,
        (true, true) => 3,
    }
}

/// Validates a content against Suricata's rules.
fn check_content(c: &mut Content, target: Target, transforms: &[Transform]) -> Result<(), Skip> {
    if c.pat.is_empty() {
        return Err(Skip::malformed("empty content"));
    }
    let rel = c.is_relative();
    if c.startswith {
        if rel || c.depth.is_some() || c.offset.is_some() {
            return Err(Skip::malformed("startswith mixed with depth, offset, distance or within"));
        }
        c.depth = Some(Val::Const(c.pat.len() as i64));
        c.offset = Some(Val::Const(0));
    }
    if rel && (c.depth.is_some() || c.offset.is_some()) {
        return Err(Skip::malformed(format!(
            "content `{}` mixes relative (distance/within) and absolute (depth/offset) modifiers",
            trunc(&String::from_utf8_lossy(&c.pat))
        )));
    }
    if let Some(Val::Const(w)) = c.within
        && w < c.pat.len() as i64
    {
        return Err(Skip::malformed(format!("within {w} is less than the content length {}", c.pat.len())));
    }
    if let Some(Val::Const(d)) = c.depth
        && d <= 0
    {
        return Err(Skip::malformed(format!("invalid depth {d}")));
    }
    if let Some(Val::Const(o)) = c.offset
        && o < 0
    {
        return Err(Skip::malformed(format!("invalid offset {o}")));
    }
    if target == Target::Buf(Buffer::HttpHost)
        && transforms.is_empty()
        && !c.nocase
        && c.pat.iter().any(u8::is_ascii_uppercase)
    {
        return Err(Skip::new(
            "http.host content with upper case",
            format!(
                "http.host content `{}` has upper case but the buffer is lower-cased, it never matches",
                trunc(&String::from_utf8_lossy(&c.pat))
            ),
        ));
    }
    Ok(())
}

/// The sticky buffer named by `k`, dotted or legacy.
fn sticky_buffer(k: &str) -> Option<Buffer> {
    use Buffer::*;
    Some(match k {
        "dns.query" | "dns_query" => DnsQuery,
        "tls.sni" | "tls_sni" => TlsSni,
        "tls.cert_subject" | "tls_cert_subject" => TlsCertSubject,
        "tls.cert_issuer" | "tls_cert_issuer" => TlsCertIssuer,
        "tls.subjectaltname" | "tls_subjectaltname" => TlsCertSan,
        "tls.cert_fingerprint" | "tls_cert_fingerprint" => TlsCertFingerprint,
        "tls.cert_serial" | "tls_cert_serial" => TlsCertSerial,
        "ja3.hash" | "ja3_hash" => Ja3Hash,
        "ja3.string" | "ja3_string" => Ja3String,
        "ja3s.hash" | "ja3s_hash" => Ja3sHash,
        "ja3s.string" | "ja3s_string" => Ja3sString,
        "http.uri" => HttpUri,
        "http.uri.raw" => HttpRawUri,
        "http.method" => HttpMethod,
        "http.host" => HttpHost,
        "http.host.raw" => HttpRawHost,
        "http.user_agent" => HttpUserAgent,
        "http.header" => HttpHeader,
        "http.header.raw" => HttpRawHeader,
        "http.header_names" | "http_header_names" => HttpHeaderNames,
        "http.cookie" => HttpCookie,
        "http.stat_code" => HttpStatCode,
        "http.stat_msg" => HttpStatMsg,
        "http.content_type" | "http_content_type" => HttpContentType,
        "http.content_len" | "http_content_len" => HttpContentLen,
        "http.request_line" | "http_request_line" => HttpRequestLine,
        "http.response_line" | "http_response_line" => HttpResponseLine,
        "http.protocol" | "http_protocol" => HttpProtocol,
        "http.server" | "http_server" => HttpServer,
        "http.location" | "http_location" => HttpLocation,
        "http.referer" | "http_referer" => HttpReferer,
        "http.accept" | "http_accept" => HttpAccept,
        "http.accept_lang" | "http_accept_lang" => HttpAcceptLang,
        "http.accept_enc" | "http_accept_enc" => HttpAcceptEnc,
        "http.connection" | "http_connection" => HttpConnection,
        "http.start" | "http_start" => HttpStart,
        "http.request_body" | "http.client_body" => HttpRequestBody,
        "http.response_body" | "http.server_body" => HttpResponseBody,
        "ssh.proto" | "ssh_proto" => SshProto,
        "ssh.software" | "ssh_software" => SshSoftware,
        "ssh.hassh" | "ssh-hassh" => SshHassh,
        "ssh.hassh.string" | "ssh-hassh-string" => SshHasshString,
        "ssh.hassh.server" | "ssh-hassh-server" => SshHasshServer,
        "ssh.hassh.server.string" | "ssh-hassh-server-string" => SshHasshServerString,
        _ => return None,
    })
}

/// Legacy content modifiers (they move the previous content to a buffer).
fn legacy_modifier(k: &str) -> Option<Buffer> {
    use Buffer::*;
    Some(match k {
        "http_uri" => HttpUri,
        "http_raw_uri" => HttpRawUri,
        "http_header" => HttpHeader,
        "http_raw_header" => HttpRawHeader,
        "http_cookie" => HttpCookie,
        "http_method" => HttpMethod,
        "http_client_body" => HttpRequestBody,
        "http_server_body" => HttpResponseBody,
        "http_stat_code" => HttpStatCode,
        "http_stat_msg" => HttpStatMsg,
        "http_user_agent" => HttpUserAgent,
        "http_host" => HttpHost,
        "http_raw_host" => HttpRawHost,
        _ => return None,
    })
}

/// Known keywords this engine does not implement, with the reason.
fn unsupported(k: &str) -> Skip {
    let why = match k {
        "stream_size" => "needs the stream byte counters, which `Inspect` does not carry",
        "ssl_state" | "ssl_version" | "tls.version" | "tls_version" | "tls.cert_notbefore"
        | "tls_cert_notbefore" | "tls.cert_notafter" | "tls_cert_notafter" | "tls.cert_expired"
        | "tls_cert_expired" | "tls.cert_valid" | "tls_cert_valid" | "tls.certs" | "tls.random"
        | "tls.store" | "tls_store" | "ja4.hash" => "needs TLS state or a buffer the caller does not provide",
        "id" | "fragbits" | "fragoffset" | "tos" | "ipopts" | "seq" | "ack" | "window" | "icmp_id"
        | "icmp_seq" | "tcp.mss" | "tcp.hdr" | "ipv4.hdr" | "ipv6.hdr" | "udp.hdr" | "icmpv4.hdr"
        | "icmpv6.hdr" | "tcp.flags" => "needs packet header fields that `Inspect` does not carry",
        "flowint" | "xbits" | "hostbits" | "flowvar" | "pktvar" => "this state keyword is not implemented",
        "app-layer-event" | "stream-event" | "decode-event" | "engine-event" => {
            "needs parser events, which the caller does not provide"
        }
        "byte_math" | "base64_decode" | "base64_data" | "lua" | "luajit" | "asn1" | "entropy" | "absent" => {
            "not implemented"
        }
        "ftpbounce" | "ftpdata_command" | "rpc" | "dce_iface" | "dce_opnum" | "dce_stub_data"
        | "filename" | "fileext" | "filemagic" | "filemd5" | "filesha1" | "filesha256" | "filesize"
        | "filestore_v2" | "file.name" | "file.magic" | "ssh.hassh" | "ssh.hassh.string"
        | "ssh.hassh.server" => "needs a protocol parser or file tracking the caller does not provide",
        "pcrexform"
        | "xor"
        | "to_md5"
        | "to_sha1"
        | "header_lowercase"
        | "strip_pseudo_headers"
        | "from_base64" => "transform not implemented",
        "only_frag" | "no_frag" => "needs fragment information",
        _ if k.starts_with("smb")
            || k.starts_with("krb5")
            || k.starts_with("dnp3")
            || k.starts_with("modbus")
            || k.starts_with("enip")
            || k.starts_with("cip")
            || k.starts_with("sip")
            || k.starts_with("http2")
            || k.starts_with("snmp")
            || k.starts_with("mqtt")
            || k.starts_with("quic")
            || k.starts_with("dhcp")
            || k.starts_with("ike")
            || k.starts_with("nfs")
            || k.starts_with("rfb")
            || k.starts_with("dns.")
            || k.starts_with("tls.")
            || k.starts_with("http.")
            || k.starts_with("file.")
            || k.starts_with("ja4") =>
        {
            "needs a protocol parser or buffer the caller does not provide"
        }
        _ => {
            return Skip::new("unknown keyword", format!("unknown keyword `{}`", trunc(k)));
        }
    };
    Skip::unsupported(k, why)
}

fn parse_proto(p: &str) -> Result<Proto, Skip> {
    Ok(match p {
        "ip" | "pkthdr" => Proto::Ip,
        "tcp" => Proto::Tcp,
        "tcp-pkt" => Proto::TcpPkt,
        "tcp-stream" => Proto::TcpStream,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv4" => Proto::Icmp4,
        "icmpv6" => Proto::Icmp6,
        other => match AppProto::from_name(other) {
            Some(a) => Proto::App(a),
            None => {
                return Err(Skip::new(
                    format!("unsupported protocol `{}`", trunc(other)),
                    format!("unsupported protocol `{}`", trunc(other)),
                ));
            }
        },
    })
}

fn num_u32(key: &str, v: &str) -> Result<u32, Skip> {
    v.trim().parse().map_err(|_| Skip::malformed(format!("invalid `{key}` value `{}`", trunc(v))))
}

/// `key value` of a keyword option (`load file.lst`, `multiplier 2`); a
/// bare word has an empty value.
fn option_kv(p: &str) -> (&str, &str) {
    p.split_once(char::is_whitespace).map(|(k, v)| (k, v.trim())).unwrap_or((p, ""))
}

fn ds_type(val: &str) -> Result<DsType, Skip> {
    DsType::parse(val)
        .ok_or_else(|| Skip::new("dataset", format!("unsupported dataset type `{}`", trunc(val))))
}

fn uint(key: &str, v: &str, max: u64) -> Result<UintCmp, Skip> {
    UintCmp::parse(v, max).map_err(|e| Skip::malformed(format!("{key}: {e}")))
}

fn parse_ip_proto(v: &str) -> Result<UintCmp, Skip> {
    let t = v.trim();
    let split = t.find(|c: char| c.is_ascii_alphanumeric()).unwrap_or(t.len());
    let (op, name) = t.split_at(split);
    let num = match name.to_ascii_lowercase().as_str() {
        "icmp" => "1".to_string(),
        "igmp" => "2".to_string(),
        "tcp" => "6".to_string(),
        "udp" => "17".to_string(),
        "ipv6" => "41".to_string(),
        "gre" => "47".to_string(),
        "esp" => "50".to_string(),
        "ah" => "51".to_string(),
        "ipv6-icmp" | "icmpv6" => "58".to_string(),
        "sctp" => "132".to_string(),
        n => n.to_string(),
    };
    uint("ip_proto", &format!("{op}{num}"), 255)
}

fn parse_flags(v: &str) -> Result<PktCheck, Skip> {
    let (main, ignore_s) = match v.split_once(',') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (v.trim(), None),
    };
    let bit = |c: char| -> Result<u8, Skip> {
        Ok(match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' | '2' => 0x40,
            'C' | '1' => 0x80,
            '0' => 0,
            _ => return Err(Skip::malformed(format!("invalid tcp flag `{c}` in `{v}`"))),
        })
    };
    let mut mode = FlagMode::Exact;
    let mut flags = 0u8;
    for c in main.chars() {
        match c {
            '+' => mode = FlagMode::All,
            '*' => mode = FlagMode::Any,
            '!' => mode = FlagMode::Not,
            ' ' => {}
            c => flags |= bit(c)?,
        }
    }
    let mut ignore = 0u8;
    if let Some(s) = ignore_s {
        for c in s.chars().filter(|c| !c.is_whitespace()) {
            ignore |= bit(c)?;
        }
    }
    Ok(PktCheck::Flags { flags, ignore, mode })
}

fn parse_flow(st: &mut RuleState, v: &str) -> Result<(), Skip> {
    for part in v.split(',') {
        let p = part.trim();
        let dir = |st: &mut RuleState, d: bool| {
            if st.flow_dir.is_some_and(|x| x != d) {
                return Err(Skip::malformed(format!("contradictory flow `{v}`")));
            }
            st.flow_dir = Some(d);
            Ok(())
        };
        match p {
            "to_server" | "from_client" => dir(st, true)?,
            "to_client" | "from_server" => dir(st, false)?,
            "established" => st.established = Some(true),
            "not_established" => st.established = Some(false),
            "stateless" => {}
            "only_stream" => st.stream_mode = StreamMode::StreamOnly,
            "no_stream" => st.stream_mode = StreamMode::PacketOnly,
            "only_frag" | "no_frag" => return Err(unsupported(p)),
            other => return Err(Skip::malformed(format!("unknown flow option `{}`", trunc(other)))),
        }
    }
    Ok(())
}

fn parse_endian_string(tok: &str, endian: &mut Endian, base: &mut Option<u32>, string: &mut bool) -> bool {
    match tok {
        "big" => *endian = Endian::Big,
        "little" => *endian = Endian::Little,
        "string" => {
            *string = true;
            if base.is_none() {
                *base = Some(10);
            }
        }
        "hex" => *base = Some(16),
        "dec" => *base = Some(10),
        "oct" => *base = Some(8),
        _ => return false,
    }
    true
}

fn parse_byte_test(st: &RuleState, v: &str) -> Result<ByteTest, Skip> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [nbytes, op, value, offset, rest @ ..] = parts.as_slice() else {
        return Err(Skip::malformed(format!("byte_test needs 4 values: `{}`", trunc(v))));
    };
    let nb = st.val("byte_test", nbytes)?;
    let (negate, opcore) = match op.strip_prefix('!') {
        Some("=") | Some("") => (true, "="),
        Some(o) => (true, o),
        None => (false, *op),
    };
    let op = match opcore {
        "<" => ByteOp::Lt,
        ">" => ByteOp::Gt,
        "=" => ByteOp::Eq,
        "<=" => ByteOp::Le,
        ">=" => ByteOp::Ge,
        "&" => ByteOp::And,
        "^" => ByteOp::Xor,
        o => return Err(Skip::malformed(format!("invalid byte_test operator `{o}`"))),
    };
    // the value is unsigned 64-bit; kept bit-for-bit in the i64
    let value = match parse_u64(value) {
        Some(v) => Val::Const(v as i64),
        None => st.val("byte_test", value)?,
    };
    let offset = st.val("byte_test", offset)?;
    let mut bt = ByteTest {
        nbytes: nb,
        op,
        negate,
        value,
        offset,
        relative: false,
        endian: Endian::Big,
        string_base: None,
        bitmask: None,
    };
    let mut string = false;
    let mut base = None;
    for tok in rest.iter() {
        let tok = *tok;
        if tok == "relative" {
            bt.relative = true;
        } else if tok == "dce" {
            return Err(Skip::unsupported("byte_test dce", "needs DCE/RPC byte order"));
        } else if let Some(m) = tok.strip_prefix("bitmask") {
            bt.bitmask =
                Some(parse_u64(m).ok_or_else(|| Skip::malformed(format!("invalid bitmask `{tok}`")))?);
        } else if !parse_endian_string(tok, &mut bt.endian, &mut base, &mut string) {
            return Err(Skip::malformed(format!("invalid byte_test option `{tok}`")));
        }
    }
    if string {
        bt.string_base = base.or(Some(10));
    }
    check_nbytes("byte_test", bt.nbytes, string)?;
    Ok(bt)
}

fn check_nbytes(k: &str, n: Val, string: bool) -> Result<(), Skip> {
    if let Val::Const(n) = n {
        // with `string`, 0 reads the number up to the first non-digit
        let (min, max) = if string { (0, 23) } else { (1, 8) };
        if n < min || n > max {
            return Err(Skip::malformed(format!("{k}: invalid number of bytes {n}")));
        }
    }
    Ok(())
}

fn parse_byte_jump(st: &RuleState, v: &str) -> Result<ByteJump, Skip> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [nbytes, offset, rest @ ..] = parts.as_slice() else {
        return Err(Skip::malformed(format!("byte_jump needs 2 values: `{}`", trunc(v))));
    };
    let mut bj = ByteJump {
        nbytes: st.val("byte_jump", nbytes)?,
        offset: st.val("byte_jump", offset)?,
        relative: false,
        multiplier: 1,
        endian: Endian::Big,
        string_base: None,
        align: false,
        from_beginning: false,
        from_end: false,
        post_offset: 0,
        bitmask: None,
    };
    let mut string = false;
    let mut base = None;
    for tok in rest.iter() {
        let tok = *tok;
        let (k, val) = option_kv(tok);
        match k {
            "relative" => bj.relative = true,
            "align" => bj.align = true,
            "from_beginning" => bj.from_beginning = true,
            "from_end" => bj.from_end = true,
            "multiplier" => {
                bj.multiplier =
                    parse_u64(val).ok_or_else(|| Skip::malformed(format!("invalid multiplier `{val}`")))?
            }
            "post_offset" => {
                bj.post_offset =
                    parse_i64(val).ok_or_else(|| Skip::malformed(format!("invalid post_offset `{val}`")))?
            }
            "bitmask" => {
                bj.bitmask =
                    Some(parse_u64(val).ok_or_else(|| Skip::malformed(format!("invalid bitmask `{val}`")))?)
            }
            "dce" => return Err(Skip::unsupported("byte_jump dce", "needs DCE/RPC byte order")),
            _ if parse_endian_string(tok, &mut bj.endian, &mut base, &mut string) => {}
            _ => return Err(Skip::malformed(format!("invalid byte_jump option `{tok}`"))),
        }
    }
    if string {
        bj.string_base = base.or(Some(10));
    }
    let allow_zero = bj.from_end && matches!(bj.nbytes, Val::Const(0));
    if !allow_zero {
        check_nbytes("byte_jump", bj.nbytes, string)?;
    }
    Ok(bj)
}

fn parse_byte_extract(st: &mut RuleState, v: &str) -> Result<ByteExtract, Skip> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [nbytes, offset, name, rest @ ..] = parts.as_slice() else {
        return Err(Skip::malformed(format!("byte_extract needs 3 values: `{}`", trunc(v))));
    };
    let nb: u8 =
        nbytes.parse().map_err(|_| Skip::malformed(format!("invalid byte_extract bytes `{nbytes}`")))?;
    let offset = parse_i64(offset)
        .ok_or_else(|| Skip::malformed(format!("invalid byte_extract offset `{offset}`")))?;
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Skip::malformed(format!("invalid byte_extract name `{name}`")));
    }
    let var = match st.var_names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            if st.var_names.len() >= MAX_VARS {
                return Err(Skip::malformed(format!("more than {MAX_VARS} byte_extract variables")));
            }
            st.var_names.push((*name).to_string());
            st.var_names.len() - 1
        }
    };
    let mut be = ByteExtract {
        nbytes: nb,
        offset,
        var: var as u8,
        relative: false,
        multiplier: 1,
        endian: Endian::Big,
        string_base: None,
        align: 0,
    };
    let mut string = false;
    let mut base = None;
    for tok in rest.iter() {
        let tok = *tok;
        let (k, val) = option_kv(tok);
        match k {
            "relative" => be.relative = true,
            "multiplier" => {
                be.multiplier =
                    parse_u64(val).ok_or_else(|| Skip::malformed(format!("invalid multiplier `{val}`")))?
            }
            "align" => {
                be.align = parse_u64(val).ok_or_else(|| Skip::malformed(format!("invalid align `{val}`")))?
            }
            "dce" => return Err(Skip::unsupported("byte_extract dce", "needs DCE/RPC byte order")),
            _ if parse_endian_string(tok, &mut be.endian, &mut base, &mut string) => {}
            _ => return Err(Skip::malformed(format!("invalid byte_extract option `{tok}`"))),
        }
    }
    if string {
        be.string_base = base.or(Some(10));
    }
    check_nbytes("byte_extract", Val::Const(i64::from(nb)), string)?;
    Ok(be)
}

/// FNV-1a, 64 bits: stable ids for flowbit and dataset names.
pub(crate) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The `sid` of a rule text, for reporting skipped rules.
fn quick_sid(text: &str) -> Option<u32> {
    let mut rest = text;
    while let Some(pos) = rest.find("sid") {
        let before = rest[..pos].trim_end();
        let after = rest[pos + 3..].trim_start();
        if (before.ends_with(';') || before.ends_with('(')) && after.starts_with(':') {
            let digits: String = after[1..].trim_start().chars().take_while(char::is_ascii_digit).collect();
            if let Ok(v) = digits.parse() {
                return Some(v);
            }
        }
        rest = &rest[pos + 3..];
    }
    None
}

struct ListB {
    target: Target,
    transforms: Vec<Transform>,
    items: Vec<Item>,
}

struct Sticky {
    target: Target,
    transforms: Vec<Transform>,
    list: Option<usize>,
}

#[derive(Default)]
struct RuleState {
    msg: Option<String>,
    sid: Option<u32>,
    rev: u32,
    gid: Option<u32>,
    classtype: Option<(Arc<str>, Arc<str>, u8)>,
    priority: Option<u8>,
    references: String,
    metadata: String,
    target: Option<AlertTarget>,
    noalert: bool,
    flow_dir: Option<bool>,
    established: Option<bool>,
    stream_mode: StreamMode,
    pkt: Vec<PktCheck>,
    dsize: bool,
    fb_checks: Vec<FbCheck>,
    fb_actions: Vec<FbAction>,
    threshold: Option<threshold::Threshold>,
    lists: Vec<ListB>,
    sticky: Option<Sticky>,
    last_content: Option<(usize, usize)>,
    last_match: Option<usize>,
    var_names: Vec<String>,
    has_pcre: bool,
}

impl RuleState {
    fn list_idx(&mut self, target: Target, transforms: &[Transform]) -> usize {
        if let Some(i) = self.lists.iter().position(|l| l.target == target && l.transforms == transforms) {
            return i;
        }
        self.lists.push(ListB { target, transforms: transforms.to_vec(), items: Vec::new() });
        self.lists.len() - 1
    }

    /// The list new keywords go to: the sticky buffer's, else the payload's.
    fn current_list(&mut self) -> usize {
        match self.sticky.take() {
            Some(mut s) => {
                let l = match s.list {
                    Some(l) => l,
                    None => self.list_idx(s.target, &s.transforms.clone()),
                };
                s.list = Some(l);
                self.sticky = Some(s);
                l
            }
            None => self.list_idx(Target::Payload, &[]),
        }
    }

    fn set_sticky(&mut self, target: Target) {
        self.sticky = Some(Sticky { target, transforms: Vec::new(), list: None });
    }

    /// Where a relative keyword goes: the list of the last content or pcre.
    fn placement(&mut self, relative: bool) -> usize {
        if relative
            && self.sticky.is_none()
            && let Some(l) = self.last_match
        {
            return l;
        }
        self.current_list()
    }

    fn push_item(&mut self, list: usize, item: Item) {
        if let Some(l) = self.lists.get_mut(list) {
            l.items.push(item);
        }
    }

    fn push_content(&mut self, c: Content) {
        let list = self.current_list();
        self.push_content_to(list, c);
    }

    fn push_content_to(&mut self, list: usize, c: Content) {
        if let Some(l) = self.lists.get_mut(list) {
            l.items.push(Item::Content(Box::new(c)));
            self.last_content = Some((list, l.items.len() - 1));
            self.last_match = Some(list);
        }
    }

    fn content_mut(&mut self, key: &str) -> Result<&mut Content, Skip> {
        let (l, i) = self
            .last_content
            .ok_or_else(|| Skip::malformed(format!("`{key}` without a preceding content")))?;
        match self.lists.get_mut(l).and_then(|l| l.items.get_mut(i)) {
            Some(Item::Content(c)) => Ok(c),
            _ => Err(Skip::malformed(format!("`{key}` without a preceding content"))),
        }
    }

    /// Applies a legacy content modifier such as `http_uri`: like Suricata, it
    /// moves the last content of the payload list to the buffer.
    fn move_last_content(&mut self, key: &str, target: Target) -> Result<(), Skip> {
        let Some(l) = self.lists.iter().position(|x| x.target == Target::Payload && x.transforms.is_empty())
        else {
            return Err(Skip::malformed(format!("`{key}` without a preceding payload content")));
        };
        let idx = self.lists.get(l).and_then(|x| x.items.iter().rposition(|i| matches!(i, Item::Content(_))));
        let item = match (idx, self.lists.get_mut(l)) {
            (Some(i), Some(list)) => list.items.remove(i),
            _ => return Err(Skip::malformed(format!("`{key}` without a preceding payload content"))),
        };
        let dest = self.list_idx(target, &[]);
        if let Some(d) = self.lists.get_mut(dest) {
            d.items.push(item);
            self.last_content = Some((dest, d.items.len() - 1));
            self.last_match = Some(dest);
        }
        Ok(())
    }

    /// A number or a `byte_extract` variable.
    fn val(&self, key: &str, v: &str) -> Result<Val, Skip> {
        let t = v.trim();
        if let Some(n) = parse_i64(t) {
            return Ok(Val::Const(n));
        }
        match self.var_names.iter().position(|n| n == t) {
            Some(i) => Ok(Val::Var(i as u8)),
            None => Err(Skip::malformed(format!("invalid `{key}` value `{}`", trunc(t)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_of_text() {
        assert_eq!(quick_sid("alert ip any any -> any any (msg:\"sid:9\"; sid:12; rev:1;)"), Some(12));
        assert_eq!(quick_sid("alert ip any any -> any any (sid: 7)"), Some(7));
        assert_eq!(quick_sid("garbage"), None);
    }
}
