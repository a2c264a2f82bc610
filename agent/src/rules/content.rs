//! Content inspection of one buffer: the keywords that run against bytes
//! (`content`, `pcre`, `isdataat`, `byte_*`, `bsize`, `urilen`, `dataset`)
//! and Suricata's matching algorithm over them (relative anchoring at the
//! previous match, retries of earlier matches, discontinuation).

use std::sync::OnceLock;

use memchr::{memchr, memchr2, memmem};

use super::{
    dataset::{self, DatasetOp},
    numbers::UintCmp,
};

/// Most `byte_extract` variables per rule.
pub(crate) const MAX_VARS: usize = 16;
/// Work allowed per buffer inspection (Suricata's default recursion limit).
pub(crate) const INSPECTION_LIMIT: u32 = 3000;

/// A number or a `byte_extract` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Val {
    Const(i64),
    Var(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FastPattern {
    #[default]
    Unset,
    Set,
    Only,
    Chop(u16, u16),
}

#[derive(Debug, Clone)]
pub(crate) struct Content {
    /// Lower-cased when `nocase`.
    pub pat: Vec<u8>,
    pub nocase: bool,
    pub negated: bool,
    pub offset: Option<Val>,
    pub depth: Option<Val>,
    pub distance: Option<Val>,
    pub within: Option<Val>,
    pub startswith: bool,
    pub endswith: bool,
    pub fast: FastPattern,
    /// Retry at the next occurrence when a following keyword fails.
    pub retry_next: bool,
}

impl Content {
    pub fn new(pat: Vec<u8>, negated: bool) -> Content {
        Content {
            pat,
            nocase: false,
            negated,
            offset: None,
            depth: None,
            distance: None,
            within: None,
            startswith: false,
            endswith: false,
            fast: FastPattern::Unset,
            retry_next: false,
        }
    }

    pub fn is_relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }

    /// Prepares the pattern once the modifiers are known. (No searcher is
    /// kept: a prepared `memmem::Finder` costs ~300 bytes per content, tens of
    /// megabytes for a large rule set, and contents are only searched for
    /// rules that passed the prefilter.)
    pub fn finalize(&mut self) {
        if self.nocase {
            self.pat.make_ascii_lowercase();
        }
        self.pat.shrink_to_fit();
    }

    /// Start of the first occurrence in `hay`.
    pub fn find(&self, hay: &[u8]) -> Option<usize> {
        if self.nocase { find_nocase(hay, &self.pat) } else { memmem::find(hay, &self.pat) }
    }

    /// The bytes entered in the prefilter, if this content can be one.
    pub fn fast_bytes(&self) -> Option<&[u8]> {
        if self.negated || self.pat.is_empty() {
            return None;
        }
        match self.fast {
            FastPattern::Chop(o, l) => self.pat.get(o as usize..o as usize + l as usize).or(Some(&self.pat)),
            _ => Some(&self.pat),
        }
    }
}

/// ASCII case-insensitive search; `pat` is lower case.
pub(crate) fn find_nocase(hay: &[u8], pat: &[u8]) -> Option<usize> {
    let (&first, rest) = match pat.split_first() {
        Some(x) => x,
        None => return Some(0),
    };
    if hay.len() < pat.len() {
        return None;
    }
    let last_start = hay.len() - pat.len();
    let up = first.to_ascii_uppercase();
    let mut pos = 0usize;
    while pos <= last_start {
        let window = hay.get(pos..=last_start)?;
        let rel = if up == first { memchr(first, window) } else { memchr2(first, up, window) }?;
        let at = pos + rel;
        if hay.get(at + 1..at + pat.len()).is_some_and(|h| h.eq_ignore_ascii_case(rest)) {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endian {
    Big,
    Little,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteOp {
    Lt,
    Gt,
    Eq,
    Le,
    Ge,
    And,
    Xor,
}

#[derive(Debug, Clone)]
pub(crate) struct ByteTest {
    pub nbytes: Val,
    pub op: ByteOp,
    pub negate: bool,
    pub value: Val,
    pub offset: Val,
    pub relative: bool,
    pub endian: Endian,
    pub string_base: Option<u32>,
    pub bitmask: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ByteJump {
    pub nbytes: Val,
    pub offset: Val,
    pub relative: bool,
    pub multiplier: u64,
    pub endian: Endian,
    pub string_base: Option<u32>,
    pub align: bool,
    pub from_beginning: bool,
    pub from_end: bool,
    pub post_offset: i64,
    pub bitmask: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ByteExtract {
    pub nbytes: u8,
    pub offset: i64,
    pub var: u8,
    pub relative: bool,
    pub multiplier: u64,
    pub endian: Endian,
    pub string_base: Option<u32>,
    pub align: u64,
}

/// A `pcre`. The pattern was compiled once at load to validate it; the
/// compiled form is built again on first use and kept (most patterns of a
/// large rule set are never reached past the prefilter, and a compiled
/// pattern costs tens of kilobytes).
#[derive(Debug)]
pub(crate) struct PcreItem {
    pub translated: String,
    pub backtrack: bool,
    pub re: OnceLock<Option<super::pcre::Matcher>>,
    pub relative: bool,
    pub negated: bool,
    pub retry_next: bool,
}

impl PcreItem {
    fn regex(&self) -> Option<&super::pcre::Matcher> {
        self.re.get_or_init(|| super::pcre::compile(&self.translated, self.backtrack).ok()).as_ref()
    }
}

#[derive(Debug)]
pub(crate) enum Item {
    Content(Box<Content>),
    Pcre(Box<PcreItem>),
    IsDataAt { n: Val, relative: bool, negated: bool },
    ByteTest(Box<ByteTest>),
    ByteJump(Box<ByteJump>),
    ByteExtract(Box<ByteExtract>),
    Bsize(UintCmp),
    Urilen(UintCmp),
    Dataset(DatasetOp),
}

impl Item {
    pub fn is_relative(&self) -> bool {
        match self {
            Item::Content(c) => c.is_relative(),
            Item::Pcre(p) => p.relative,
            Item::IsDataAt { relative, .. } => *relative,
            Item::ByteTest(b) => b.relative,
            Item::ByteJump(b) => b.relative,
            Item::ByteExtract(b) => b.relative,
            Item::Bsize(_) | Item::Urilen(_) | Item::Dataset(_) => false,
        }
    }

    /// Whether a failure of this (following) keyword makes the previous
    /// content look for its next occurrence (Suricata's `WITHIN_NEXT` /
    /// `RELATIVE_NEXT`: a following `within`, relative pcre, isdataat or
    /// byte keyword, not a `distance`-only content).
    pub fn wants_retry(&self) -> bool {
        match self {
            Item::Content(c) => c.within.is_some(),
            other => other.is_relative(),
        }
    }
}

/// Sets the retry flags of a finished list.
pub(crate) fn link(items: &mut [Item]) {
    for i in 0..items.len() {
        let next_wants = items.get(i + 1).is_some_and(Item::wants_retry);
        let next_rel = items.get(i + 1).is_some_and(Item::is_relative);
        match items.get_mut(i) {
            Some(Item::Content(c)) => c.retry_next = next_wants,
            Some(Item::Pcre(p)) => p.retry_next = next_rel,
            _ => {}
        }
    }
}

/// Per-evaluation context: variables, work budget, dataset access.
pub(crate) struct MatchCtx<'a> {
    pub vars: [u64; MAX_VARS],
    pub budget: u32,
    pub limit_hit: bool,
    pub sets: &'a [dataset::Dataset],
    pub runtime: &'a std::sync::Mutex<dataset::Runtime>,
    pub dataset_refused: u64,
}

impl MatchCtx<'_> {
    fn val(&self, v: Val) -> i64 {
        match v {
            Val::Const(c) => c,
            Val::Var(i) => {
                let x = self.vars.get(i as usize).copied().unwrap_or(0);
                i64::try_from(x).unwrap_or(i64::MAX)
            }
        }
    }
}

/// Result of inspecting from one keyword on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum R {
    Match,
    No,
    /// No match and no point retrying earlier keywords.
    Stop,
}

/// Inspects `buf` with `items` from the start.
pub(crate) fn inspect(items: &[Item], buf: &[u8], mc: &mut MatchCtx<'_>) -> bool {
    if items.is_empty() {
        return true;
    }
    mc.budget = INSPECTION_LIMIT;
    inspect_from(items, 0, buf, 0, mc) == R::Match
}

fn next(items: &[Item], i: usize, buf: &[u8], cursor: usize, mc: &mut MatchCtx<'_>) -> R {
    if i + 1 >= items.len() { R::Match } else { inspect_from(items, i + 1, buf, cursor, mc) }
}

fn inspect_from(items: &[Item], i: usize, buf: &[u8], cursor: usize, mc: &mut MatchCtx<'_>) -> R {
    if mc.budget == 0 {
        mc.limit_hit = true;
        return R::Stop;
    }
    mc.budget -= 1;
    let Some(item) = items.get(i) else { return R::Match };
    let len = buf.len() as i64;
    match item {
        Item::Content(cd) => content(items, i, cd, buf, cursor, mc),
        Item::Pcre(p) => {
            let base = if p.relative { cursor.min(buf.len()) } else { 0 };
            let hay = buf.get(base..).unwrap_or_default();
            let Some(re) = p.regex() else { return R::Stop };
            // a backtracking pattern that gives up at its step limit is no
            // match, counted like the other inspection limits
            let limit = |mc: &mut MatchCtx<'_>| {
                mc.limit_hit = true;
                R::Stop
            };
            if p.negated {
                return match re.is_match(hay) {
                    Ok(true) => R::No,
                    Ok(false) => next(items, i, buf, cursor, mc),
                    Err(_) => limit(mc),
                };
            }
            let mut start = 0usize;
            loop {
                if mc.budget == 0 {
                    mc.limit_hit = true;
                    return R::Stop;
                }
                mc.budget = mc.budget.saturating_sub(re.search_cost());
                let (m_start, m_end) = match re.find_at(hay, start) {
                    Ok(Some(m)) => m,
                    Ok(None) => return R::No,
                    Err(_) => return limit(mc),
                };
                let new_cursor = base + m_end;
                if !p.retry_next {
                    return next(items, i, buf, new_cursor, mc);
                }
                match next(items, i, buf, new_cursor, mc) {
                    R::No => {}
                    r => return r,
                }
                start = m_start + 1;
                if start > hay.len() {
                    return R::No;
                }
            }
        }
        Item::IsDataAt { n, relative, negated } => {
            let is_var = matches!(n, Val::Var(_));
            let dataat = mc.val(*n);
            if is_var && dataat >= 100_000_000 {
                return if *negated { next(items, i, buf, cursor, mc) } else { R::No };
            }
            let fail = if is_var { R::No } else { R::Stop };
            if *relative {
                if (cursor as i64).saturating_add(dataat) > len {
                    if *negated { next(items, i, buf, cursor, mc) } else { fail }
                } else if *negated {
                    R::No
                } else {
                    next(items, i, buf, cursor, mc)
                }
            } else if dataat < len {
                if *negated { fail } else { next(items, i, buf, cursor, mc) }
            } else if *negated {
                next(items, i, buf, cursor, mc)
            } else {
                fail
            }
        }
        Item::ByteTest(bt) => {
            if byte_test(bt, buf, cursor, mc) {
                next(items, i, buf, cursor, mc)
            } else {
                R::No
            }
        }
        Item::ByteJump(bj) => match byte_jump(bj, buf, cursor, mc) {
            Some(c) => next(items, i, buf, c, mc),
            None => R::No,
        },
        Item::ByteExtract(be) => match byte_extract(be, buf, cursor) {
            Some((v, c)) => {
                if let Some(slot) = mc.vars.get_mut(be.var as usize) {
                    *slot = v;
                }
                next(items, i, buf, c, mc)
            }
            None => R::No,
        },
        Item::Bsize(cmp) => {
            if cmp.matches(buf.len() as u64) {
                next(items, i, buf, cursor, mc)
            } else {
                R::Stop
            }
        }
        Item::Urilen(cmp) => {
            let l = buf.len().min(u16::MAX as usize) as u64;
            if cmp.matches(l) { next(items, i, buf, cursor, mc) } else { R::Stop }
        }
        Item::Dataset(op) => {
            if dataset::apply(op, buf, mc.sets, &mut super::lock(mc.runtime), &mut mc.dataset_refused) {
                next(items, i, buf, cursor, mc)
            } else {
                R::Stop
            }
        }
    }
}

/// Suricata's content step (detect-engine-content-inspection.c), including
/// the search for further occurrences when later keywords fail.
fn content(items: &[Item], i: usize, cd: &Content, buf: &[u8], cursor: usize, mc: &mut MatchCtx<'_>) -> R {
    let buf_len = buf.len() as i64;
    let plen = cd.pat.len() as i64;
    let relative = cd.is_relative();
    let prev_buffer_offset = cursor as i64;
    let mut prev_offset: i64 = 0;
    loop {
        if mc.budget == 0 {
            mc.limit_hit = true;
            return R::Stop;
        }
        mc.budget -= 1;
        let mut depth = buf_len;
        let mut offset: i64;
        if relative {
            offset = prev_buffer_offset;
            let mut distance = 0i64;
            if let Some(d) = cd.distance {
                distance = mc.val(d);
                if distance < 0 && distance.unsigned_abs() > offset as u64 {
                    offset = 0;
                } else {
                    offset = offset.saturating_add(distance);
                }
            }
            if let Some(w) = cd.within {
                let lim = prev_buffer_offset.saturating_add(mc.val(w)).saturating_add(distance);
                if depth > lim {
                    depth = lim;
                }
            }
        } else {
            offset = cd.offset.map(|v| mc.val(v)).unwrap_or(0);
            if let Some(d) = cd.depth {
                let d = match d {
                    Val::Const(c) => c.max(plen),
                    v => mc.val(v),
                };
                depth = offset.saturating_add(d);
            }
        }
        if prev_offset != 0 {
            offset = prev_offset;
        }
        if depth > buf_len {
            depth = buf_len;
        }
        if offset > depth || depth <= 0 || offset < 0 {
            return if cd.negated { next(items, i, buf, cursor, mc) } else { R::No };
        }
        let (off, dep) = (offset as usize, depth as usize);
        let window = buf.get(off..dep).unwrap_or_default();
        let found = if (cd.endswith && depth < buf_len) || plen > window.len() as i64 {
            None
        } else {
            cd.find(window)
        };
        let Some(pos) = found else {
            if cd.negated {
                return next(items, i, buf, cursor, mc);
            }
            return if relative { R::No } else { R::Stop };
        };
        let match_offset = off + pos + cd.pat.len();
        if cd.negated {
            if cd.endswith {
                // "does not end with": only an occurrence at the very end counts
                let at_end =
                    buf.len() >= cd.pat.len() && buf.len() - cd.pat.len() >= off && dep == buf.len() && {
                        let tail = buf.get(buf.len() - cd.pat.len()..).unwrap_or_default();
                        if cd.nocase { tail.eq_ignore_ascii_case(&cd.pat) } else { tail == cd.pat.as_slice() }
                    };
                if !at_end {
                    return next(items, i, buf, cursor, mc);
                }
            }
            return if relative { R::No } else { R::Stop };
        }
        if !cd.endswith || match_offset == buf.len() {
            if i + 1 >= items.len() {
                return R::Match;
            }
            match inspect_from(items, i + 1, buf, match_offset, mc) {
                R::Match => return R::Match,
                R::Stop => return R::Stop,
                R::No => {
                    if !cd.retry_next {
                        return R::Stop;
                    }
                }
            }
        }
        prev_offset = (match_offset - cd.pat.len() + 1) as i64;
    }
}

/// Reads `n` bytes at `pos` as a number.
fn extract(buf: &[u8], pos: i64, n: i64, endian: Endian, base: Option<u32>) -> Option<u64> {
    if pos < 0 || n < 0 || (n == 0 && base.is_none()) {
        return None;
    }
    let pos = usize::try_from(pos).ok()?;
    // a string of unspecified length (0) runs to the first non-digit
    let n = if n == 0 { buf.len().saturating_sub(pos).min(23) } else { usize::try_from(n).ok()? };
    let bytes = buf.get(pos..pos.checked_add(n)?)?;
    match base {
        Some(b) => {
            let mut v: u64 = 0;
            let mut digits = 0;
            for &c in bytes {
                let Some(d) = (c as char).to_digit(b) else { break };
                v = v.checked_mul(u64::from(b))?.checked_add(u64::from(d))?;
                digits += 1;
            }
            if digits == 0 { None } else { Some(v) }
        }
        None => {
            if n > 8 {
                return None;
            }
            let mut v: u64 = 0;
            match endian {
                Endian::Big => {
                    for &c in bytes {
                        v = (v << 8) | u64::from(c);
                    }
                }
                Endian::Little => {
                    for &c in bytes.iter().rev() {
                        v = (v << 8) | u64::from(c);
                    }
                }
            }
            Some(v)
        }
    }
}

fn apply_mask(v: u64, mask: Option<u64>) -> u64 {
    match mask {
        Some(m) if m != 0 => (v & m) >> m.trailing_zeros(),
        Some(_) => 0,
        None => v,
    }
}

/// Start position and remaining length per Suricata (relative to the
/// cursor when `relative`); `None` when nothing is left.
fn start(buf: &[u8], cursor: usize, offset: i64, relative: bool) -> Option<(i64, i64)> {
    let len = buf.len() as i64;
    if len == 0 {
        return None;
    }
    let (ptr, rem) = if relative {
        let p = (cursor as i64).saturating_add(offset);
        (p, len.saturating_sub(p))
    } else {
        (offset, len.saturating_sub(offset))
    };
    if rem <= 0 && relative {
        return None;
    }
    Some((ptr, rem))
}

fn byte_test(bt: &ByteTest, buf: &[u8], cursor: usize, mc: &MatchCtx<'_>) -> bool {
    let nbytes = mc.val(bt.nbytes);
    let Some((ptr, rem)) = start(buf, cursor, mc.val(bt.offset), bt.relative) else { return false };
    if ptr < 0 || nbytes > rem {
        return false;
    }
    let Some(v) = extract(buf, ptr, nbytes, bt.endian, bt.string_base) else { return false };
    let v = apply_mask(v, bt.bitmask);
    let value = match bt.value {
        Val::Const(c) => c as u64,
        Val::Var(_) => mc.val(bt.value) as u64,
    };
    let m = match bt.op {
        ByteOp::Lt => v < value,
        ByteOp::Gt => v > value,
        ByteOp::Eq => v == value,
        ByteOp::Le => v <= value,
        ByteOp::Ge => v >= value,
        ByteOp::And => v & value != 0,
        ByteOp::Xor => v ^ value != 0,
    };
    m != bt.negate
}

fn byte_jump(bj: &ByteJump, buf: &[u8], cursor: usize, mc: &MatchCtx<'_>) -> Option<usize> {
    let nbytes = mc.val(bj.nbytes);
    let (ptr, rem) = start(buf, cursor, mc.val(bj.offset), bj.relative)?;
    if ptr < 0 || nbytes > rem {
        return None;
    }
    let v = extract(buf, ptr, nbytes, bj.endian, bj.string_base)?;
    let mut v = i128::from(apply_mask(v, bj.bitmask));
    v = v.saturating_mul(i128::from(bj.multiplier));
    if bj.align && v % 4 != 0 {
        v = v.saturating_add(4 - (v % 4));
    }
    v = v.saturating_add(i128::from(bj.post_offset));
    let len = buf.len() as i128;
    let jump = if bj.from_beginning {
        v
    } else if bj.from_end {
        len.saturating_add(v)
    } else {
        i128::from(ptr).saturating_add(v).saturating_add(i128::from(nbytes))
    };
    if jump < 0 || jump >= len {
        return None;
    }
    usize::try_from(jump).ok()
}

fn byte_extract(be: &ByteExtract, buf: &[u8], cursor: usize) -> Option<(u64, usize)> {
    let (ptr, rem) = start(buf, cursor, be.offset, be.relative)?;
    let n = i64::from(be.nbytes);
    if ptr < 0 || n > rem {
        return None;
    }
    let mut v = extract(buf, ptr, n, be.endian, be.string_base)?;
    v = v.saturating_mul(be.multiplier);
    if be.align > 1 && v % be.align != 0 {
        v = v.saturating_add(be.align - v % be.align);
    }
    let c = usize::try_from(ptr + n).ok()?;
    Some((v, c))
}

/// Parses a `content` value: `[!]"text|41 42|\;"`.
pub(crate) fn parse_content(value: &str) -> Result<(bool, Vec<u8>), String> {
    let mut t = value.trim();
    let mut negated = false;
    if let Some(r) = t.strip_prefix('!') {
        negated = true;
        t = r.trim_start();
    }
    if !(t.len() >= 2 && t.starts_with('"') && t.ends_with('"')) {
        return Err(format!("content `{}` is not a quoted string", super::text::trunc(value)));
    }
    let inner = &t[1..t.len() - 1];
    if inner.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1 {
        return Err(format!("unterminated content `{}`", super::text::trunc(value)));
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut hex = false;
    let mut nibble: Option<u8> = None;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if hex {
            match c {
                '|' => {
                    if nibble.is_some() {
                        return Err(format!(
                            "odd number of hex digits in content `{}`",
                            super::text::trunc(inner)
                        ));
                    }
                    hex = false;
                }
                ' ' | '\t' => {}
                h => {
                    let d = h.to_digit(16).ok_or_else(|| {
                        format!("invalid hex `{h}` in content `{}`", super::text::trunc(inner))
                    })? as u8;
                    match nibble.take() {
                        Some(hi) => out.push(hi << 4 | d),
                        None => nibble = Some(d),
                    }
                }
            }
            continue;
        }
        match c {
            '|' => hex = true,
            '\\' => match chars.next() {
                Some(n) => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(n.encode_utf8(&mut b).as_bytes());
                }
                None => return Err("content ends with a backslash".to_string()),
            },
            '"' => return Err(format!("unescaped `\"` in content `{}`", super::text::trunc(inner))),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    if hex {
        return Err(format!("unterminated hex in content `{}`", super::text::trunc(inner)));
    }
    Ok((negated, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> dataset::Runtime {
        dataset::Runtime::default()
    }

    fn c(p: &str) -> Content {
        let (neg, pat) = parse_content(p).unwrap();
        let mut c = Content::new(pat, neg);
        c.finalize();
        c
    }

    fn run(items: &mut [Item], buf: &[u8]) -> bool {
        link(items);
        let r = std::sync::Mutex::new(rt());
        let mut mc = MatchCtx {
            vars: [0; MAX_VARS],
            budget: 0,
            limit_hit: false,
            sets: &[],
            runtime: &r,
            dataset_refused: 0,
        };
        inspect(items, buf, &mut mc)
    }

    #[test]
    fn content_values() {
        assert_eq!(parse_content(r#""uid=0|28|root|29|""#).unwrap(), (false, b"uid=0(root)".to_vec()));
        assert_eq!(parse_content(r#"!"a\;b\"c\\""#).unwrap(), (true, b"a;b\"c\\".to_vec()));
        assert_eq!(parse_content(r#""|0d 0A|Host|3a 20|""#).unwrap().1, b"\r\nHost: ".to_vec());
        assert!(parse_content(r#""|0d 0|""#).is_err());
        assert!(parse_content(r#""|zz|""#).is_err());
        assert!(parse_content(r#""|0d""#).is_err());
        assert!(parse_content("abc").is_err());
    }

    #[test]
    fn nocase_search() {
        assert_eq!(find_nocase(b"xxHeLLo", b"hello"), Some(2));
        assert_eq!(find_nocase(b"hell", b"hello"), None);
        assert_eq!(find_nocase(b"a1b2", b"1b"), Some(1));
        assert_eq!(find_nocase(b"", b""), Some(0));
    }

    #[test]
    fn relative_and_retry() {
        // second occurrence of "a" is needed for within
        let mut a = c(r#""a""#);
        a.finalize();
        let mut b = c(r#""b""#);
        b.distance = Some(Val::Const(0));
        b.within = Some(Val::Const(1));
        let mut items = vec![Item::Content(Box::new(a)), Item::Content(Box::new(b))];
        assert!(run(&mut items, b"a..ab"));
        assert!(!run(&mut items, b"a..a.b"));
        // depth/offset
        let mut d = c(r#""GET""#);
        d.depth = Some(Val::Const(3));
        let mut items = vec![Item::Content(Box::new(d))];
        assert!(run(&mut items, b"GET /"));
        assert!(!run(&mut items, b" GET /"));
        let mut o = c(r#""def""#);
        o.offset = Some(Val::Const(3));
        o.depth = Some(Val::Const(3));
        let mut items = vec![Item::Content(Box::new(o))];
        assert!(run(&mut items, b"abcdefgh"));
        assert!(!run(&mut items, b"abcxdefgh"));
        // negative distance
        let x = c(r#""Firefox/3.""#);
        let mut n = c(r#"!"Firefox/3.6.13""#);
        n.distance = Some(Val::Const(-10));
        let mut items = vec![Item::Content(Box::new(x)), Item::Content(Box::new(n))];
        assert!(run(&mut items, b"UA Firefox/3.5.1"));
        assert!(!run(&mut items, b"UA Firefox/3.6.13"));
    }

    #[test]
    fn endswith_startswith_and_isdataat() {
        let mut e = c(r#"".php""#);
        e.endswith = true;
        let mut items = vec![Item::Content(Box::new(e))];
        assert!(run(&mut items, b"/a.php?x=.php"));
        assert!(!run(&mut items, b"/a.php?x"));
        let mut s = c(r#""GET ""#);
        s.startswith = true;
        s.depth = Some(Val::Const(4));
        let mut items = vec![Item::Content(Box::new(s))];
        assert!(run(&mut items, b"GET /"));
        // isdataat table from Suricata's documentation (8-byte buffer)
        let buf = b"abcdefgh";
        let t = |n: i64, rel: bool, neg: bool| {
            let mut items = vec![Item::IsDataAt { n: Val::Const(n), relative: rel, negated: neg }];
            run(&mut items, buf)
        };
        assert!(t(7, false, false));
        assert!(!t(8, false, false));
        assert!(t(7, true, false));
        assert!(t(8, true, false));
        assert!(!t(9, true, false));
        assert!(t(8, false, true));
        let cc = |n: i64| {
            let mut items = vec![
                Item::Content(Box::new(c(r#""c""#))),
                Item::IsDataAt { n: Val::Const(n), relative: true, negated: false },
            ];
            run(&mut items, buf)
        };
        assert!(cc(4) && cc(5) && !cc(6));
    }

    #[test]
    fn byte_keywords() {
        let buf = b"\x00\x01\x00\x02\x00\x05hello123";
        let bt = |op: ByteOp, neg: bool, value: i64, off: i64| ByteTest {
            nbytes: Val::Const(2),
            op,
            negate: neg,
            value: Val::Const(value),
            offset: Val::Const(off),
            relative: false,
            endian: Endian::Big,
            string_base: None,
            bitmask: None,
        };
        let t = |b: ByteTest| {
            let mut items = vec![Item::ByteTest(Box::new(b))];
            run(&mut items, buf)
        };
        assert!(t(bt(ByteOp::Eq, false, 1, 0)));
        assert!(t(bt(ByteOp::Eq, true, 6, 0)));
        assert!(t(bt(ByteOp::Gt, false, 1, 2)));
        assert!(t(bt(ByteOp::And, false, 1, 4)));
        assert!(!t(bt(ByteOp::Eq, false, 1, 11)));
        let mut s = bt(ByteOp::Eq, false, 123, 11);
        s.nbytes = Val::Const(3);
        s.string_base = Some(10);
        assert!(t(s));
        // byte_jump over the length field at 4 (5 bytes) then "hello" ends
        let bj = ByteJump {
            nbytes: Val::Const(2),
            offset: Val::Const(4),
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
        let mut after = c(r#""123""#);
        after.distance = Some(Val::Const(0));
        after.within = Some(Val::Const(3));
        let mut items = vec![Item::ByteJump(Box::new(bj.clone())), Item::Content(Box::new(after))];
        assert!(run(&mut items, buf));
        let mut far = bj.clone();
        far.post_offset = 100;
        let mut items = vec![Item::ByteJump(Box::new(far))];
        assert!(!run(&mut items, buf));
        // byte_extract into a variable used by within
        let be = ByteExtract {
            nbytes: 2,
            offset: 4,
            var: 0,
            relative: false,
            multiplier: 1,
            endian: Endian::Big,
            string_base: None,
            align: 0,
        };
        let mut h = c(r#""hello""#);
        h.distance = Some(Val::Const(0));
        h.within = Some(Val::Var(0));
        let mut items = vec![Item::ByteExtract(Box::new(be)), Item::Content(Box::new(h))];
        assert!(run(&mut items, buf));
    }

    #[test]
    fn work_is_bounded() {
        // many retries on a long buffer of 'a': the budget stops it
        let a = c(r#""a""#);
        let mut b = c(r#""b""#);
        b.distance = Some(Val::Const(0));
        b.within = Some(Val::Const(1));
        let mut items = vec![Item::Content(Box::new(a)), Item::Content(Box::new(b))];
        link(&mut items);
        let buf = vec![b'a'; 100_000];
        let r = std::sync::Mutex::new(rt());
        let mut mc = MatchCtx {
            vars: [0; MAX_VARS],
            budget: 0,
            limit_hit: false,
            sets: &[],
            runtime: &r,
            dataset_refused: 0,
        };
        assert!(!inspect(&items, &buf, &mut mc));
        assert!(mc.limit_hit);
    }
}
