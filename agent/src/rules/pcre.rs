//! `pcre`: PCRE patterns translated to the `regex` crate (bytes API,
//! Unicode off, so `.`/`\w`/`\xHH` work on bytes like PCRE without UTF).
//!
//! Translated: the flags `i s m x A E G`, escapes (`\xHH`, `\x{H}`, octal
//! `\0oo`, `\cX`, `\e`, `\a`, `\h`, `\H`, `\v`, `\V`, `\R`, `\N`, `\Q..\E`,
//! `\Z`, `\C`), `$` with PCRE's "end or before a final newline" meaning,
//! `{,n}` (PCRE2 10.43), literal `{`, `}`, `]` and `[` inside classes, class
//! operators of the `regex` crate (`&&`, `--`, `~~`) escaped, `\b` in a class
//! (backspace), named groups `(?<n>` / `(?'n'`, comments `(?#..)`, extended
//! mode (whitespace and `#` comments) done here.
//!
//! Patterns a finite automaton cannot express — backreferences (`\1`,
//! `\g{1}`, `\k<n>`, `(?P=n)`), lookahead and lookbehind, atomic groups
//! `(?>..)` and possessive quantifiers (`*+`, `++`, `?+`, `{n,m}+`) — are
//! matched by `fancy-regex` in its byte mode, which runs the automaton for
//! the plain parts and backtracks only around those constructs, with a step
//! limit ([`BACKTRACK_LIMIT`], like Suricata's `pcre.match-limit`): a pattern
//! that reaches it is "no match" and counted as an inspection limit hit, so
//! no pattern can hang the sensor. Every other pattern runs on the `regex`
//! crate, in linear time.
//!
//! Still skipped with the reason: `\G`, `\K`, relative backreferences
//! (`\g{-1}`), recursion and subroutine calls, conditionals, branch reset
//! `(?|`, backtracking verbs `(*..)`, Unicode properties. A compiled program
//! above [`SIZE_LIMIT`] is skipped too ("too large").

use regex::bytes::{Regex, RegexBuilder};

use super::Buffer;

/// Largest compiled program accepted per pattern.
pub const SIZE_LIMIT: usize = 2 << 20;
/// Lazy DFA cache per pattern and thread (grows only when used; a full cache
/// is cleared and rebuilt, matching stays linear-time).
pub const DFA_SIZE_LIMIT: usize = 256 << 10;
/// Backtracking steps one search of a backtracking pattern may take.
pub const BACKTRACK_LIMIT: usize = 50_000;

/// A compiled pattern.
#[derive(Debug)]
pub enum Matcher {
    /// The `regex` crate: linear time.
    Linear(Regex),
    /// `fancy-regex` (lookaround, backreferences, atomic groups), bounded by
    /// [`BACKTRACK_LIMIT`].
    Backtrack(Box<fancy_regex::Regex>),
}

/// A backtracking search gave up at [`BACKTRACK_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitHit;

impl Matcher {
    /// The first match starting at or after `start` (anchors and lookbehind
    /// see the whole haystack), as a byte range.
    pub fn find_at(&self, hay: &[u8], start: usize) -> Result<Option<(usize, usize)>, LimitHit> {
        match self {
            Matcher::Linear(r) => Ok(r.find_at(hay, start).map(|m| (m.start(), m.end()))),
            Matcher::Backtrack(r) => match r.find_from_pos(hay, start) {
                Ok(m) => Ok(m.map(|m| (m.start(), m.end()))),
                Err(_) => Err(LimitHit),
            },
        }
    }

    /// Inspection budget one search costs: a backtracking search may take
    /// up to [`BACKTRACK_LIMIT`] steps, so it weighs as much as 100 plain
    /// ones and a buffer's budget bounds the backtracking work per packet
    /// (30 searches, 1.5 M steps at most).
    pub fn search_cost(&self) -> u32 {
        match self {
            Matcher::Linear(_) => 1,
            Matcher::Backtrack(_) => 100,
        }
    }

    pub fn is_match(&self, hay: &[u8]) -> Result<bool, LimitHit> {
        match self {
            Matcher::Linear(r) => Ok(r.is_match(hay)),
            Matcher::Backtrack(r) => r.is_match(hay).map_err(|_| LimitHit),
        }
    }
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcreError {
    #[error("backreference `{0}` is not supported (only absolute or named ones are)")]
    Backreference(String),
    #[error("recursion or subroutine call `{0}` is not supported by the regex crate")]
    Recursion(String),
    #[error("conditional group `(?(` is not supported by the regex crate")]
    Conditional,
    #[error("branch reset group `(?|` is not supported by the regex crate")]
    BranchReset,
    #[error("`\\{0}` is not supported by the regex crate")]
    Unsupported(char),
    #[error("backtracking control verb `(*{0}` is not supported by the regex crate")]
    Verb(String),
    #[error("unicode property `\\{0}` in a byte pattern")]
    UnicodeProperty(char),
    #[error("invalid escape `\\{0}`")]
    BadEscape(char),
    #[error("unknown pcre modifier `{0}`")]
    BadModifier(char),
    #[error("more than one buffer modifier (`{0}` and `{1}`)")]
    TwoBuffers(char, char),
    #[error("malformed pcre `{0}`")]
    Malformed(String),
    #[error("regex crate rejects the translated pattern: {0}")]
    Syntax(String),
    #[error("compiled pattern exceeds the size limit")]
    TooLarge,
}

impl PcreError {
    /// Category for the skip breakdown.
    pub fn category(&self) -> &'static str {
        match self {
            PcreError::Backreference(_) => "pcre: relative backreference",
            PcreError::Recursion(_) => "pcre: recursion",
            PcreError::Conditional => "pcre: conditional group",
            PcreError::BranchReset => "pcre: branch reset group",
            PcreError::Unsupported(_) => "pcre: unsupported escape (\\G, \\K)",
            PcreError::Verb(_) => "pcre: backtracking verb",
            PcreError::UnicodeProperty(_) => "pcre: unicode property",
            PcreError::BadEscape(_) | PcreError::Malformed(_) => "pcre: malformed",
            PcreError::BadModifier(_) | PcreError::TwoBuffers(..) => "pcre: bad modifier",
            PcreError::Syntax(_) => "pcre: rejected by the regex crate",
            PcreError::TooLarge => "pcre: too large",
        }
    }
}

/// A parsed `pcre:` option.
#[derive(Debug, Clone)]
pub struct PcreSpec {
    pub negated: bool,
    pub relative: bool,
    /// Buffer named by a modifier (`U`, `H`, ...), if any.
    pub buffer: Option<Buffer>,
    /// The pattern in `regex` syntax, flags included (with `fancy-regex`
    /// constructs when `backtrack`).
    pub translated: String,
    /// Needs the backtracking matcher (see the module documentation).
    pub backtrack: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Flags {
    i: bool,
    s: bool,
    m: bool,
    x: bool,
    anchored: bool,
    dollar_endonly: bool,
    ungreedy: bool,
}

/// Parses `[!]"/pattern/flags[, captures]"` and translates it.
pub fn parse(value: &str) -> Result<PcreSpec, PcreError> {
    let mut t = value.trim();
    let mut negated = false;
    if let Some(r) = t.strip_prefix('!') {
        negated = true;
        t = r.trim_start();
    }
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t = &t[1..t.len() - 1];
    }
    let inner = t.strip_prefix('/').ok_or_else(|| PcreError::Malformed(short(t)))?;
    let last = inner.rfind('/').ok_or_else(|| PcreError::Malformed(short(t)))?;
    let pattern = &inner[..last];
    let rest = &inner[last + 1..];
    let flag_text = rest.split(',').next().unwrap_or("").trim();
    let mut f = Flags::default();
    let mut relative = false;
    let mut buffer: Option<(char, Buffer)> = None;
    for c in flag_text.chars() {
        let b = match c {
            'i' => {
                f.i = true;
                None
            }
            's' => {
                f.s = true;
                None
            }
            'm' => {
                f.m = true;
                None
            }
            'x' => {
                f.x = true;
                None
            }
            'A' => {
                f.anchored = true;
                None
            }
            'E' => {
                f.dollar_endonly = true;
                None
            }
            'G' => {
                f.ungreedy = true;
                None
            }
            'R' => {
                relative = true;
                None
            }
            'B' | 'O' => None,
            'U' => Some(Buffer::HttpUri),
            'I' => Some(Buffer::HttpRawUri),
            'P' => Some(Buffer::HttpRequestBody),
            'Q' => Some(Buffer::HttpResponseBody),
            'H' => Some(Buffer::HttpHeader),
            'D' => Some(Buffer::HttpRawHeader),
            'M' => Some(Buffer::HttpMethod),
            'C' => Some(Buffer::HttpCookie),
            'S' => Some(Buffer::HttpStatCode),
            'Y' => Some(Buffer::HttpStatMsg),
            'V' => Some(Buffer::HttpUserAgent),
            'W' => Some(Buffer::HttpHost),
            'Z' => Some(Buffer::HttpRawHost),
            other => return Err(PcreError::BadModifier(other)),
        };
        if let Some(b) = b {
            match buffer {
                Some((pc, pb)) if pb != b => return Err(PcreError::TwoBuffers(pc, c)),
                _ => buffer = Some((c, b)),
            }
        }
    }
    let (translated, backtrack) = translate(pattern, f)?;
    Ok(PcreSpec { negated, relative, buffer: buffer.map(|(_, b)| b), translated, backtrack })
}

/// Compiles a translated pattern with the size and step limits.
pub fn compile(translated: &str, backtrack: bool) -> Result<Matcher, PcreError> {
    if backtrack {
        return fancy_regex::RegexBuilder::new(translated)
            .bytes_mode(fancy_regex::BytesMode::Ascii)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(SIZE_LIMIT)
            .delegate_dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .map(|r| Matcher::Backtrack(Box::new(r)))
            .map_err(|e| match e {
                fancy_regex::Error::CompileError(c) if c.to_string().contains("size limit") => {
                    PcreError::TooLarge
                }
                e => PcreError::Syntax(format!("fancy-regex: {e}")),
            });
    }
    compile_linear(translated).map(Matcher::Linear)
}

fn compile_linear(translated: &str) -> Result<Regex, PcreError> {
    RegexBuilder::new(translated)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => PcreError::TooLarge,
            regex::Error::Syntax(s) => {
                let msg = s.lines().rev().find(|l| l.starts_with("error:")).unwrap_or("syntax error");
                PcreError::Syntax(msg.trim_start_matches("error:").trim().to_string())
            }
            _ => PcreError::Syntax("unknown error".to_string()),
        })
}

fn short(s: &str) -> String {
    super::text::trunc(s)
}

fn translate(pattern: &str, f: Flags) -> Result<(String, bool), PcreError> {
    let mut tr = Tr {
        c: pattern.chars().collect(),
        i: 0,
        out: String::with_capacity(pattern.len() * 2),
        f,
        backtrack: false,
    };
    tr.run()?;
    let mut s = String::with_capacity(tr.out.len() + 16);
    if f.i {
        s.push_str("(?i)");
    }
    if f.s {
        s.push_str("(?s)");
    }
    if f.m {
        s.push_str("(?m)");
    }
    if f.ungreedy {
        s.push_str("(?U)");
    }
    if f.anchored {
        s.push_str("\\A(?:");
        s.push_str(&tr.out);
        s.push(')');
    } else {
        s.push_str(&tr.out);
    }
    Ok((s, tr.backtrack))
}

struct Tr {
    c: Vec<char>,
    i: usize,
    out: String,
    f: Flags,
    /// A construct only the backtracking matcher has was translated.
    backtrack: bool,
}

fn is_pcre_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

impl Tr {
    fn peek(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    /// The characters from `start` up to `close`, and whether `close` is
    /// there.
    fn until(&self, start: usize, close: char) -> (String, bool) {
        let text: String =
            self.c.get(start..).unwrap_or_default().iter().take_while(|c| **c != close).collect();
        let closed = self.c.get(start + text.chars().count()).is_some();
        (text, closed)
    }

    /// Up to `max` digits of `radix` from `start`: their value and count.
    fn fixed_digits(&self, start: usize, max: usize, radix: u32) -> (u32, usize) {
        let mut v = 0u32;
        let mut k = 0;
        while k < max {
            match self.c.get(start + k).and_then(|c| c.to_digit(radix)) {
                Some(d) => v = v * radix + d,
                None => break,
            }
            k += 1;
        }
        (v, k)
    }

    fn hex_byte(&mut self, v: u32) {
        self.out.push_str(&format!("\\x{v:02X}"));
    }

    fn literal(&mut self, ch: char) {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            self.out.push(ch);
        } else if ch.is_ascii() {
            self.hex_byte(ch as u32);
        } else {
            self.out.push(ch);
        }
    }

    fn run(&mut self) -> Result<(), PcreError> {
        while let Some(ch) = self.peek(0) {
            match ch {
                '\\' => self.escape(false)?,
                '[' => self.class()?,
                '(' => self.group()?,
                ')' => {
                    self.out.push(')');
                    self.i += 1;
                }
                '*' | '+' | '?' => {
                    self.out.push(ch);
                    self.i += 1;
                    self.quant_suffix()?;
                }
                '{' => match self.counted() {
                    Some((q, len)) => {
                        self.out.push_str(&q);
                        self.i += len;
                        self.quant_suffix()?;
                    }
                    None => {
                        self.out.push_str("\\{");
                        self.i += 1;
                    }
                },
                '}' => {
                    self.out.push_str("\\}");
                    self.i += 1;
                }
                ']' => {
                    self.out.push_str("\\]");
                    self.i += 1;
                }
                '$' => {
                    if self.f.m {
                        self.out.push('$');
                    } else if self.f.dollar_endonly {
                        self.out.push_str("\\z");
                    } else {
                        self.out.push_str("(?:\\n?\\z)");
                    }
                    self.i += 1;
                }
                '#' if self.f.x => {
                    while let Some(c) = self.peek(0) {
                        self.i += 1;
                        if c == '\n' {
                            break;
                        }
                    }
                }
                c if self.f.x && is_pcre_space(c) => self.i += 1,
                '^' | '.' | '|' => {
                    self.out.push(ch);
                    self.i += 1;
                }
                other => {
                    self.literal(other);
                    self.i += 1;
                }
            }
        }
        Ok(())
    }

    /// After a quantifier: `+` makes it possessive (backtracking matcher),
    /// `?` lazy.
    fn quant_suffix(&mut self) -> Result<(), PcreError> {
        match self.peek(0) {
            Some('+') => {
                self.out.push('+');
                self.i += 1;
                self.backtrack = true;
                Ok(())
            }
            Some('?') => {
                self.out.push('?');
                self.i += 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `{n}`, `{n,}`, `{n,m}`, `{,m}` at `self.i`: the regex form and the
    /// length consumed, or `None` when `{` is a literal.
    fn counted(&self) -> Option<(String, usize)> {
        let mut j = self.i + 1;
        let mut body = String::new();
        while let Some(&c) = self.c.get(j) {
            if c == '}' {
                break;
            }
            if !(c.is_ascii_digit() || c == ',' || c == ' ') || body.len() > 20 {
                return None;
            }
            body.push(c);
            j += 1;
        }
        self.c.get(j)?;
        let body: String = body.chars().filter(|c| *c != ' ').collect();
        let (a, b) = match body.split_once(',') {
            None => (body.as_str(), None),
            Some((a, b)) => (a, Some(b)),
        };
        let q = match (a.is_empty(), b) {
            (true, None) => return None,
            (false, None) => format!("{{{a}}}"),
            (false, Some("")) => format!("{{{a},}}"),
            (true, Some("")) => return None,
            (true, Some(b)) => {
                if b.contains(',') {
                    return None;
                }
                format!("{{0,{b}}}")
            }
            (false, Some(b)) => {
                if b.contains(',') {
                    return None;
                }
                format!("{{{a},{b}}}")
            }
        };
        Some((q, j + 1 - self.i))
    }

    fn group(&mut self) -> Result<(), PcreError> {
        match self.peek(1) {
            Some('*') => {
                let (verb, _) = self.until(self.i + 2, ')');
                return Err(PcreError::Verb(verb));
            }
            Some('?') => {}
            _ => {
                self.out.push('(');
                self.i += 1;
                return Ok(());
            }
        }
        let p2 = self.peek(2);
        let p3 = self.peek(3);
        let fancy = |tr: &mut Tr, open: &str| {
            tr.out.push_str(open);
            tr.i += open.chars().count();
            tr.backtrack = true;
            Ok(())
        };
        match p2 {
            Some('=') => fancy(self, "(?="),
            Some('!') => fancy(self, "(?!"),
            Some('<') if p3 == Some('=') => fancy(self, "(?<="),
            Some('<') if p3 == Some('!') => fancy(self, "(?<!"),
            Some('<') => self.named(3, '>'),
            Some('\'') => self.named(3, '\''),
            Some('P') => match p3 {
                Some('<') => self.named(4, '>'),
                Some('=') => {
                    // (?P=name): a named backreference
                    let (name, closed) = self.until(self.i + 4, ')');
                    if !closed {
                        return Err(PcreError::Malformed("unterminated (?P=".into()));
                    }
                    self.backref(&name)?;
                    self.i += 5 + name.chars().count();
                    Ok(())
                }
                Some('>') => Err(PcreError::Recursion("(?P>".into())),
                _ => Err(PcreError::Malformed("(?P".into())),
            },
            Some('>') => fancy(self, "(?>"),
            Some('|') => Err(PcreError::BranchReset),
            Some('(') => Err(PcreError::Conditional),
            Some('C') => Err(PcreError::Verb("?C".into())),
            Some('R') | Some('&') | Some('+') => {
                Err(PcreError::Recursion(format!("(?{}", p2.unwrap_or('R'))))
            }
            Some(c) if c.is_ascii_digit() => Err(PcreError::Recursion(format!("(?{c}"))),
            Some('-') if p3.is_some_and(|c| c.is_ascii_digit()) => Err(PcreError::Recursion("(?-".into())),
            Some('#') => {
                // comment up to the next ')'
                let mut j = self.i + 3;
                while let Some(&c) = self.c.get(j) {
                    j += 1;
                    if c == ')' {
                        self.i = j;
                        return Ok(());
                    }
                }
                Err(PcreError::Malformed("unterminated (?#".into()))
            }
            Some(':') => {
                self.out.push_str("(?:");
                self.i += 3;
                Ok(())
            }
            _ => {
                // inline flags (?imsxU-imsx) or (?flags:
                let mut j = self.i + 2;
                let mut flags = String::new();
                while let Some(&c) = self.c.get(j) {
                    match c {
                        'i' | 'm' | 's' | 'x' | 'U' | '-' => flags.push(c),
                        ')' | ':' => {
                            self.out.push_str("(?");
                            self.out.push_str(&flags);
                            self.out.push(c);
                            self.i = j + 1;
                            return Ok(());
                        }
                        _ => return Err(PcreError::Syntax(format!("unsupported group `(?{flags}{c}`"))),
                    }
                    j += 1;
                }
                Err(PcreError::Malformed("unterminated group".into()))
            }
        }
    }

    /// Emits a backreference to group `name` (a number or a group name).
    fn backref(&mut self, name: &str) -> Result<(), PcreError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(PcreError::Backreference(name.to_string()));
        }
        self.out.push_str("\\k<");
        self.out.push_str(name);
        self.out.push('>');
        self.backtrack = true;
        Ok(())
    }

    /// `\gN`, `\g{N}`, `\g{name}`, `\k<name>`, `\k'name'`, `\k{name}` at
    /// `self.i`. `\g<..>` and `\g'..'` are subroutine calls.
    fn named_backref(&mut self, n: char) -> Result<(), PcreError> {
        let open = self.peek(2);
        let close = match (n, open) {
            ('g', Some(c)) if c.is_ascii_digit() => {
                let digits: String = self.c[self.i + 2..].iter().take_while(|c| c.is_ascii_digit()).collect();
                self.backref(&digits)?;
                self.i += 2 + digits.len();
                return Ok(());
            }
            ('g', Some('<' | '\'')) => {
                return Err(PcreError::Recursion(format!("\\g{}", open.unwrap_or('<'))));
            }
            (_, Some('{')) => '}',
            ('k', Some('<')) => '>',
            ('k', Some('\'')) => '\'',
            _ => return Err(PcreError::Malformed(format!("\\{n}"))),
        };
        let (name, closed) = self.until(self.i + 3, close);
        if !closed {
            return Err(PcreError::Malformed(format!("unterminated \\{n}")));
        }
        self.backref(&name)?;
        self.i += 4 + name.chars().count();
        Ok(())
    }

    fn named(&mut self, start: usize, close: char) -> Result<(), PcreError> {
        let mut j = self.i + start;
        let mut name = String::new();
        while let Some(&c) = self.c.get(j) {
            if c == close {
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(PcreError::Malformed(format!("group name `{name}`")));
                }
                self.out.push_str("(?P<");
                self.out.push_str(&name);
                self.out.push('>');
                self.i = j + 1;
                return Ok(());
            }
            if !(c.is_ascii_alphanumeric() || c == '_') {
                return Err(PcreError::Malformed(format!("group name `{name}{c}`")));
            }
            name.push(c);
            j += 1;
        }
        Err(PcreError::Malformed("unterminated group name".into()))
    }

    /// Numeric escapes shared by both contexts; returns the byte value.
    fn numeric_escape(&mut self, n: char) -> Result<Option<u32>, PcreError> {
        // self.i points at '\\', self.i+1 at n
        match n {
            'x' if self.peek(2) == Some('{') => {
                let (h, closed) = self.until(self.i + 3, '}');
                if !closed {
                    return Err(PcreError::Malformed("unterminated \\x{".into()));
                }
                let v = u32::from_str_radix(h.trim(), 16).map_err(|_| PcreError::BadEscape('x'))?;
                if v > 0xFF {
                    return Err(PcreError::Syntax(format!("\\x{{{h}}} is above 0xff in a byte pattern")));
                }
                self.i += 4 + h.chars().count();
                Ok(Some(v))
            }
            'x' => {
                let (v, k) = self.fixed_digits(self.i + 2, 2, 16);
                self.i += 2 + k;
                Ok(Some(v))
            }
            'o' if self.peek(2) == Some('{') => {
                let (h, closed) = self.until(self.i + 3, '}');
                let v = u32::from_str_radix(h.trim(), 8).map_err(|_| PcreError::BadEscape('o'))?;
                if v > 0xFF || !closed {
                    return Err(PcreError::Malformed(format!("\\o{{{h}}}")));
                }
                self.i += 4 + h.chars().count();
                Ok(Some(v))
            }
            '0' => {
                let (v, k) = self.fixed_digits(self.i + 2, 2, 8);
                self.i += 2 + k;
                Ok(Some(v))
            }
            'c' => {
                let x = self.peek(2).ok_or_else(|| PcreError::Malformed("\\c at the end".into()))?;
                if !x.is_ascii() {
                    return Err(PcreError::BadEscape('c'));
                }
                self.i += 3;
                Ok(Some((x.to_ascii_uppercase() as u32) ^ 0x40))
            }
            'a' | 'e' | 'f' | 'n' | 'r' | 't' => {
                self.i += 2;
                Ok(Some(match n {
                    'a' => 0x07,
                    'e' => 0x1B,
                    'f' => 0x0C,
                    'n' => 0x0A,
                    'r' => 0x0D,
                    _ => 0x09,
                }))
            }
            _ => Ok(None),
        }
    }

    fn quote_until_e(&mut self, in_class: bool) {
        // self.i at '\\', +1 at 'Q'
        self.i += 2;
        while let Some(c) = self.peek(0) {
            if c == '\\' && self.peek(1) == Some('E') {
                self.i += 2;
                return;
            }
            if in_class && c.is_ascii() && !c.is_ascii_alphanumeric() {
                self.hex_byte(c as u32);
            } else {
                self.literal(c);
            }
            self.i += 1;
        }
    }

    fn escape(&mut self, in_class: bool) -> Result<(), PcreError> {
        let Some(n) = self.peek(1) else {
            return Err(PcreError::Malformed("trailing backslash".into()));
        };
        if let Some(v) = self.numeric_escape(n)? {
            self.hex_byte(v);
            return Ok(());
        }
        if in_class {
            return self.class_escape(n);
        }
        let simple = |s: &str, tr: &mut Tr| {
            tr.out.push_str(s);
            tr.i += 2;
            Ok(())
        };
        match n {
            '1'..='9' => {
                let digits: String = self.c[self.i + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
                self.backref(&digits)?;
                self.i += 1 + digits.len();
                Ok(())
            }
            'g' | 'k' => self.named_backref(n),
            'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'b' | 'B' | 'A' | 'z' => {
                self.out.push('\\');
                self.out.push(n);
                self.i += 2;
                Ok(())
            }
            'Z' => simple("(?:\\n?\\z)", self),
            'G' | 'K' => Err(PcreError::Unsupported(n)),
            'h' => simple("[\\t\\x20\\xA0]", self),
            'H' => simple("[^\\t\\x20\\xA0]", self),
            'v' => simple("[\\n\\x0B\\x0C\\r\\x85]", self),
            'V' => simple("[^\\n\\x0B\\x0C\\r\\x85]", self),
            'R' => simple("(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85])", self),
            'N' => simple("[^\\n]", self),
            'C' => simple("(?s:.)", self),
            'E' => simple("", self),
            'Q' => {
                self.quote_until_e(false);
                Ok(())
            }
            'p' | 'P' | 'X' => Err(PcreError::UnicodeProperty(n)),
            c if c.is_ascii_alphanumeric() => Err(PcreError::BadEscape(c)),
            c => {
                self.literal(c);
                self.i += 2;
                Ok(())
            }
        }
    }

    fn class_escape(&mut self, n: char) -> Result<(), PcreError> {
        match n {
            'b' => {
                self.out.push_str("\\x08");
                self.i += 2;
            }
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                self.out.push('\\');
                self.out.push(n);
                self.i += 2;
            }
            'h' => {
                self.out.push_str("\\t\\x20\\xA0");
                self.i += 2;
            }
            'v' => {
                self.out.push_str("\\n\\x0B\\x0C\\r\\x85");
                self.i += 2;
            }
            '1'..='7' => {
                // octal inside a class
                let (v, k) = self.fixed_digits(self.i + 1, 3, 8);
                if v > 0xFF {
                    return Err(PcreError::BadEscape(n));
                }
                self.hex_byte(v);
                self.i += 1 + k;
            }
            'E' => self.i += 2,
            'Q' => self.quote_until_e(true),
            'p' | 'P' => return Err(PcreError::UnicodeProperty(n)),
            c if c.is_ascii_alphanumeric() => return Err(PcreError::BadEscape(c)),
            c => {
                if c.is_ascii() {
                    self.hex_byte(c as u32);
                } else {
                    self.out.push(c);
                }
                self.i += 2;
            }
        }
        Ok(())
    }

    fn class(&mut self) -> Result<(), PcreError> {
        self.out.push('[');
        self.i += 1;
        if self.peek(0) == Some('^') {
            self.out.push('^');
            self.i += 1;
        }
        if self.peek(0) == Some(']') {
            self.out.push_str("\\]");
            self.i += 1;
        }
        let mut prev_dash = false;
        loop {
            let Some(ch) = self.peek(0) else {
                return Err(PcreError::Malformed("unterminated character class".into()));
            };
            let mut dash = false;
            match ch {
                ']' => {
                    self.out.push(']');
                    self.i += 1;
                    return Ok(());
                }
                '[' => {
                    if self.peek(1) == Some(':') {
                        // POSIX class [:name:] or [:^name:]
                        let mut j = self.i + 2;
                        let mut name = String::new();
                        while let Some(&c) = self.c.get(j) {
                            if c == ':' || !(c.is_ascii_alphabetic() || c == '^') {
                                break;
                            }
                            name.push(c);
                            j += 1;
                        }
                        if self.c.get(j) == Some(&':') && self.c.get(j + 1) == Some(&']') && !name.is_empty()
                        {
                            self.out.push_str("[:");
                            self.out.push_str(&name);
                            self.out.push_str(":]");
                            self.i = j + 2;
                            prev_dash = false;
                            continue;
                        }
                    }
                    self.out.push_str("\\[");
                    self.i += 1;
                }
                '\\' => self.escape(true)?,
                '&' | '~' => {
                    self.hex_byte(ch as u32);
                    self.i += 1;
                }
                '-' => {
                    if prev_dash {
                        self.out.push_str("\\x2D");
                    } else {
                        self.out.push('-');
                        dash = true;
                    }
                    self.i += 1;
                }
                c => {
                    self.out.push(c);
                    self.i += 1;
                }
            }
            prev_dash = dash;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M(Matcher);

    impl M {
        fn is_match(&self, hay: &[u8]) -> bool {
            self.0.is_match(hay).expect("within the step limit")
        }

        fn find(&self, hay: &[u8]) -> Option<(usize, usize)> {
            self.0.find_at(hay, 0).expect("within the step limit")
        }
    }

    fn ok(v: &str) -> (PcreSpec, M) {
        let s = parse(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        let r =
            compile(&s.translated, s.backtrack).unwrap_or_else(|e| panic!("{v} -> {}: {e}", s.translated));
        (s, M(r))
    }

    #[test]
    fn flags_and_buffers() {
        let (s, r) = ok(r#""/^GET \/x\.php\?id=[0-9]{2,}$/Ui""#);
        assert_eq!(s.buffer, Some(Buffer::HttpUri));
        assert!(!s.negated && !s.relative);
        assert!(r.is_match(b"get /x.php?id=12"));
        assert!(r.is_match(b"GET /x.php?id=12\n"));
        assert!(!r.is_match(b"GET /x.php?id=1"));
        let (s, _) = ok(r#"!"/foo/R""#);
        assert!(s.negated && s.relative);
        assert!(matches!(parse(r#""/a/UH""#), Err(PcreError::TwoBuffers('U', 'H'))));
        assert!(matches!(parse(r#""/a/q""#), Err(PcreError::BadModifier('q'))));
        assert!(parse("foo").is_err());
    }

    #[test]
    fn pcre_semantics() {
        // dot does not match newline without s
        let (_, r) = ok(r#""/a.b/""#);
        assert!(!r.is_match(b"a\nb") && r.is_match(b"a\xffb"));
        let (_, r) = ok(r#""/a.b/s""#);
        assert!(r.is_match(b"a\nb"));
        // bytes above 0x7f
        let (_, r) = ok(r#""/\xff\x00{2}[\x80-\xfe]/""#);
        assert!(r.is_match(b"\xff\x00\x00\x90"));
        // E: dollar only at the very end
        let (_, r) = ok(r#""/abc$/E""#);
        assert!(!r.is_match(b"abc\n") && r.is_match(b"abc"));
        // m: line anchors
        let (_, r) = ok(r#""/^Host: x$/m""#);
        assert!(r.is_match(b"A: b\r\nHost: x\nC: d"));
        // x: whitespace and comments ignored outside classes
        let (_, r) = ok("\"/a b # comment\n c[ ]d/x\"");
        assert!(r.is_match(b"abc d"));
        // A: anchored
        let (_, r) = ok(r#""/b/A""#);
        assert!(!r.is_match(b"ab") && r.is_match(b"ba"));
        // G: ungreedy
        let (_, r) = ok(r#""/a.+b/G""#);
        assert_eq!(r.find(b"a1b2b").map(|m| m.1), Some(3));
        // literal braces and {,n}
        let (_, r) = ok(r#""/a{b}c{,2}d/""#);
        assert!(r.is_match(b"a{b}ccd") && !r.is_match(b"a{b}cccd"));
        // class oddities: [ inside, &&, leading ], \b backspace, posix
        let (_, r) = ok(r#""/^[[a&&b]+[]x]$/""#);
        assert!(r.is_match(b"[&&]") && r.is_match(b"ab&x") && !r.is_match(b"c]"));
        let (_, r) = ok(r#""/[\b][[:digit:]][!--]/""#);
        assert!(r.is_match(b"\x084-") && !r.is_match(b"b4-"));
        // escaped punctuation, \h, \R, octal, control
        let (_, r) = ok(r#""/\<\/a\>\h\R\012\cA\e/""#);
        assert!(r.is_match(b"</a> \r\n\n\x01\x1b"));
        // \Q..\E
        let (_, r) = ok(r#""/\Qa.b*\E$/""#);
        assert!(r.is_match(b"a.b*") && !r.is_match(b"axbb"));
        // named groups, comments, inline flags
        let (_, r) = ok(r#""/(?<n>ab)(?#c)(?i:X)(?s)./""#);
        assert!(r.is_match(b"abx\n"));
        // lazy quantifiers are fine; \?+ is a literal ? repeated
        let (_, r) = ok(r#""/\.exe\?+$/Ui""#);
        assert!(r.is_match(b"/A.EXE??"));
        ok(r#""/a+?b*?c??d{1,3}?/""#);
    }

    #[test]
    fn backtracking_constructs_on_bytes() {
        let (s, r) = ok(r#""/^[a-z]+(?=\x3a)/""#);
        assert!(s.backtrack);
        assert_eq!(r.find(b"host:80"), Some((0, 4)));
        assert!(!r.is_match(b"host;80"));
        let (_, r) = ok(r#""/(?<!\xff)\xfe(?!\x00)/""#);
        assert_eq!(r.find(b"\xff\xfe\x01\xfe\x00\x20\xfe\x01"), Some((6, 7)));
        // backreferences in all their spellings, on non-UTF-8 bytes
        for v in [r#""/([\x80-\xff])\1/""#, r#""/([\x80-\xff])\g1/""#, r#""/([\x80-\xff])\g{1}/""#] {
            let (_, r) = ok(v);
            assert_eq!(r.find(b"a\xc3\xa9\xfe\xfe"), Some((3, 5)), "{v}");
        }
        for v in [
            r#""/(?P<q>ab)(?P=q)/i""#,
            r#""/(?<q>ab)\k<q>/i""#,
            r#""/(?'q'ab)\k'q'/i""#,
            r#""/(?<q>ab)\k{q}/i""#,
        ] {
            let (_, r) = ok(v);
            assert!(r.is_match(b"xABab") && !r.is_match(b"abba"), "{v}");
        }
        // `.` is one byte and \w is ASCII, as in PCRE without UTF
        let (_, r) = ok(r#""/(.)\1\w(?=\W)/""#);
        assert_eq!(r.find(b"\xe9\xe9a\xe9"), Some((0, 3)));
        // possessive and atomic: no backtracking into the group
        let (_, r) = ok(r#""/a++b/""#);
        assert!(r.is_match(b"aaab"));
        let (_, r) = ok(r#""/\d*+1/""#);
        assert!(!r.is_match(b"0001"));
        let (_, r) = ok(r#""/(?>\d+)1/""#);
        assert!(!r.is_match(b"0001"));
        let (_, r) = ok(r#""/x{2,}+y/""#);
        assert!(r.is_match(b"xxxy"));
        // a pathological pattern reaches the step limit instead of hanging
        let (_, r) = ok(r#""/^(\w+\s?)*(?=x)\1$/""#);
        let hay = [b"aaaa ".repeat(8), b"!".to_vec()].concat();
        let t = std::time::Instant::now();
        assert_eq!(r.0.is_match(&hay), Err(LimitHit));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn unsupported_constructs() {
        let e = |v: &str| parse(v).and_then(|s| compile(&s.translated, s.backtrack).map(|_| s)).unwrap_err();
        assert!(matches!(e(r#""/(a)\g{-1}/""#), PcreError::Backreference(_)));
        assert!(matches!(e(r#""/(?<n>a)\g<n>/""#), PcreError::Recursion(_)));
        assert!(matches!(e(r#""/(a)\2/""#), PcreError::Syntax(_)));
        assert!(matches!(e(r#""/\Ga/""#), PcreError::Unsupported('G')));
        assert!(matches!(e(r#""/(?R)/""#), PcreError::Recursion(_)));
        assert!(matches!(e(r#""/(?(1)a|b)/""#), PcreError::Conditional));
        assert!(matches!(e(r#""/(*UTF8)a/""#), PcreError::Verb(_)));
        assert!(matches!(e(r#""/\p{L}/""#), PcreError::UnicodeProperty('p')));
        assert!(matches!(e(r#""/\I/""#), PcreError::BadEscape('I')));
        assert!(matches!(e(r#""/[a/""#), PcreError::Malformed(_)));
        assert!(matches!(e(r#""/a{1000}{1000}/""#), PcreError::TooLarge));
        assert!(matches!(e(r#""/(a/""#), PcreError::Syntax(_)));
    }
}
