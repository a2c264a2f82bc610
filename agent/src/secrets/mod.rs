//! State-secret markers (Law 29/2018: MẬT, TỐI MẬT, TUYỆT MẬT) in
//! documents on networked hosts and on the wire.
//!
//! Storing or sending a document stamped as a state secret on a networked
//! machine is itself prohibited, so a stamp found anywhere is an alert.
//! The scanner is pure (no I/O, no clock) and never panics on input:
//!
//! ```text
//! object bytes ─ sniff ─┬ zip (DOCX/XLSX/PPTX/ODT/ODS, archives) ─ entries ─┐
//!                       ├ gzip, PDF streams (Flate), MIME parts ──────────────┤ (recursive,
//!                       ├ RTF, XML/HTML ─ text extraction ─┐                  │  bounded)
//!                       └ plain text, legacy .doc/.xls ────┴─ leaf bytes ◄────┘
//! leaf bytes ─ prefilter ([`prefilter`]: "MẬT" in every encoding) ─ none: done
//!            └ candidates ─ decode ([`text`], NFC) ─ stamp matcher ([`marker`])
//! ```
//!
//! The verdict names the highest level found, the encoding and the chain of
//! containers (`email/zip/docx`). It never carries document text, nor the
//! names of entries inside archives or attachments: alerts built from it
//! ([`alert`]) carry metadata only. Limits (object size, expansion budget,
//! compression ratio, nesting depth, entries) bound time and memory per
//! object; each limit reached or damaged part is counted in the report,
//! and the scan goes on with what it has.

pub mod alert;
pub mod cli;
pub mod marker;
pub mod markup;
pub mod mime;
pub mod pdf;
pub mod prefilter;
pub mod rtf;
pub mod text;
pub mod wire;
pub mod zip;

use std::io::Read as _;

pub use marker::Level;
pub use text::Encoding;

use prefilter::Prefilter;
use text::Carrier;

/// Bounds per scanned object.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Larger objects are not scanned (counted as a limit hit).
    pub max_object: u64,
    /// Most bytes all decompression of one object may produce.
    pub max_expanded: u64,
    /// Most an entry or stream may expand, as a multiple of its
    /// compressed size (beyond the first MiB).
    pub max_ratio: u64,
    /// Deepest nesting of containers.
    pub max_depth: u32,
    /// Most entries, parts or streams read from one container.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object: 64 << 20,
            max_expanded: 256 << 20,
            max_ratio: 200,
            max_depth: 5,
            max_entries: 10_000,
        }
    }
}

/// What was found in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub level: Level,
    pub encoding: Encoding,
    /// Containers from the outside in (`docx`, `email/zip/pdf`); `text`
    /// for plain text.
    pub container: String,
}

#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub verdict: Option<Verdict>,
    /// Limits reached (the object or a part of it was cut or skipped).
    pub limits_hit: u64,
    /// Damaged or encrypted parts.
    pub errors: u64,
    /// Bytes produced by decompression.
    pub expanded: u64,
}

/// The scanner; build once, share freely (it holds no per-scan state).
pub struct Scanner {
    prefilter: Prefilter,
    pub limits: Limits,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new(Limits::default())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    Gzip,
    Pdf,
    Rtf,
    Ole,
    Email,
    Html,
    Xml,
    Text,
}

const MIB: u64 = 1 << 20;

fn ext(name: Option<&str>) -> String {
    name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default()
}

fn sniff(data: &[u8], name: Option<&str>) -> Kind {
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") || data.starts_with(b"PK\x07\x08") {
        return Kind::Zip;
    }
    if data.starts_with(&[0x1F, 0x8B]) {
        return Kind::Gzip;
    }
    if data.starts_with(b"{\\rtf") {
        return Kind::Rtf;
    }
    if data.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Kind::Ole;
    }
    let head = &data[..data.len().min(1024)];
    if memchr::memmem::find(head, b"%PDF-").is_some() {
        return Kind::Pdf;
    }
    match ext(name).as_str() {
        "html" | "htm" | "xhtml" => return Kind::Html,
        "xml" => return Kind::Xml,
        "eml" => return Kind::Email,
        _ => {}
    }
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(head.len());
    let lower = head[start..].to_ascii_lowercase();
    if lower.starts_with(b"<!doctype html")
        || memchr::memmem::find(&lower, b"<html").is_some()
        || memchr::memmem::find(&lower, b"<body").is_some()
    {
        return Kind::Html;
    }
    if lower.starts_with(b"<?xml") {
        return Kind::Xml;
    }
    if mime::looks_like(data) {
        return Kind::Email;
    }
    Kind::Text
}

/// Media files inside office documents: never text.
const MEDIA: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "emf", "wmf", "svg", "wdp", "mp3", "mp4", "wav",
    "ttf", "odttf",
];

fn utf16le_contains(data: &[u8], ascii: &str) -> bool {
    let pat: Vec<u8> = ascii.bytes().flat_map(|b| [b, 0]).collect();
    memchr::memmem::find(data, &pat).is_some()
}

/// Longest line (bytes, UTF-16 twice that) that may be a stamp.
const MAX_STAMP_LINE: usize = 200;

/// Control bytes that end a line: all below 0x20 except the tab and the
/// six that VISCII uses for letters (0x02, 0x05, 0x06, 0x14, 0x19, 0x1E).
/// Comparisons rather than a bit table, so that loops over bytes
/// vectorise (a per-byte variable shift does not).
fn is_break_byte(b: u8) -> bool {
    (b < 0x20)
        & (b != b'\t')
        & (b != 0x02)
        & (b != 0x05)
        & (b != 0x06)
        & (b != 0x14)
        & (b != 0x19)
        & (b != 0x1E)
}

/// Most ASCII letters a stamp line holds ("ĐỘ MẬT: TUYỆT MẬT - THƯỢNG
/// KHẨN" has 25).
const MAX_STAMP_LETTERS: usize = 28;

/// The bytes of the line around a hit, or `None` as soon as that line
/// proves too long or too wordy to be a stamp (the common case in running
/// text, found within a few dozen bytes: nothing is decoded).
fn window(data: &[u8], start: usize, end: usize, utf16: Option<bool>) -> Option<(usize, usize)> {
    let step = if utf16.is_some() { 2 } else { 1 };
    let lo = start.saturating_sub(MAX_STAMP_LINE * step);
    let hi = (end + MAX_STAMP_LINE * step).min(data.len());
    // (is a line break, is an ASCII letter) of the unit at i
    let unit = |i: usize| -> (bool, bool) {
        match utf16 {
            None => (is_break_byte(data[i]), data[i].is_ascii_alphabetic()),
            Some(big_endian) => {
                let (a, b) = (data[i], data.get(i + 1).copied().unwrap_or(0));
                let (high, low) = if big_endian { (a, b) } else { (b, a) };
                (high == 0 && is_break_byte(low), high == 0 && low.is_ascii_alphabetic())
            }
        }
    };
    let mut letters = 0;
    let mut ws = start;
    loop {
        if ws < lo + step {
            if lo > 0 {
                return None;
            }
            break;
        }
        let (brk, letter) = unit(ws - step);
        if brk {
            break;
        }
        letters += usize::from(letter);
        if letters > MAX_STAMP_LETTERS {
            return None;
        }
        ws -= step;
    }
    let mut we = end;
    loop {
        if we + step > hi {
            if hi < data.len() {
                return None;
            }
            break;
        }
        let (brk, letter) = unit(we);
        if brk {
            break;
        }
        letters += usize::from(letter);
        if letters > MAX_STAMP_LETTERS {
            return None;
        }
        we += step;
    }
    Some((ws, we.min(data.len())))
}

/// Bytes of one block of [`surely_prose`].
const PROSE_BLOCK: usize = 48;

/// (holds a line break, ASCII letters) of one block: fixed length, no
/// branch, so the compiler vectorises it.
fn prose_block(block: &[u8; PROSE_BLOCK]) -> (bool, usize) {
    let (mut breaks, mut letters) = (0u8, 0u8);
    for &b in block {
        breaks += u8::from(is_break_byte(b));
        letters += u8::from((b | 0x20).wrapping_sub(b'a') < 26);
    }
    (breaks > 0, usize::from(letters))
}

/// The common case of a hit in running text (`bảo mật`, `mật khẩu` in
/// TCVN3, whose case is unknown), decided before [`window`] walks the
/// line: more ASCII letters than a stamp line holds between the hit and
/// the first line break on either side, counted by blocks of 48 bytes
/// (two on each side, the far one only while the near one has no
/// break). A block holding a break stops its side and its letters are
/// not counted, so the count never exceeds the line's: a stamp line is
/// never called prose. Near either end of the text the line is walked.
fn surely_prose(data: &[u8], start: usize, end: usize) -> bool {
    const REACH: usize = 2 * PROSE_BLOCK;
    if start < REACH || end + REACH > data.len() {
        return false;
    }
    let block = |at: usize| -> (bool, usize) {
        let mut b = [0u8; PROSE_BLOCK];
        b.copy_from_slice(&data[at..at + PROSE_BLOCK]);
        prose_block(&b)
    };
    // letters before the first break, walking out block by block
    let side = |near: usize, far: usize| -> usize {
        let (broken, letters) = block(near);
        if broken {
            return 0;
        }
        match block(far) {
            (false, more) => letters + more,
            (true, _) => letters,
        }
    };
    let before = side(start - PROSE_BLOCK, start - REACH);
    if before > MAX_STAMP_LETTERS {
        return true;
    }
    before + side(end, end + PROSE_BLOCK) > MAX_STAMP_LETTERS
}

/// Whether fewer than 15 non-empty lines separate `[ws, we)` from either
/// end of the text (counted on bytes, stopping at 15).
fn near_edge(data: &[u8], ws: usize, we: usize) -> bool {
    let count = |it: &mut dyn Iterator<Item = &u8>| {
        let (mut lines, mut content) = (0, false);
        for &b in it {
            if b == b'\n' || b == b'\r' || b == 0x0B || b == 0x0C || b == 0x07 {
                if content {
                    lines += 1;
                    if lines >= 15 {
                        return false;
                    }
                }
                content = false;
            } else if b > b' ' {
                content = true;
            }
        }
        true
    };
    count(&mut data[..ws].iter().rev()) || count(&mut data[we..].iter())
}

struct Ctx<'a> {
    s: &'a Scanner,
    report: ScanReport,
    chain: Vec<&'static str>,
    /// Stamp lines found so far, judged once the whole object is read.
    pending: Vec<Pending>,
    /// The best official-document context of any decoded part.
    doc_context: u32,
    /// 1 while reading a page header, footer or comment part.
    part_bonus: u32,
}

struct Pending {
    level: Level,
    edge: bool,
    context: u32,
    bonus: u32,
    encoding: Encoding,
    container: String,
    /// How Vietnamese the decoded text looks, to choose the encoding
    /// when several decode to a stamp.
    score: i64,
}

/// How Vietnamese a decoded text looks: letters only Vietnamese uses,
/// minus replacement characters.
fn viet_score(text: &str) -> i64 {
    let mut s = 0i64;
    for c in text.chars() {
        match c {
            '\u{1EA0}'..='\u{1EF9}' | 'ơ' | 'Ơ' | 'ư' | 'Ư' | 'đ' | 'Đ' | 'ă' | 'Ă' => s += 1,
            '\u{FFFD}' => s -= 1,
            _ => {}
        }
    }
    s
}

impl Ctx<'_> {
    fn remaining(&self) -> u64 {
        self.s.limits.max_expanded.saturating_sub(self.report.expanded)
    }

    /// A cap for decompressing `compressed` bytes.
    fn cap(&mut self, compressed: usize) -> Option<u64> {
        let remaining = self.remaining();
        if remaining == 0 {
            self.report.limits_hit += 1;
            return None;
        }
        let by_ratio = (compressed as u64).saturating_mul(self.s.limits.max_ratio).max(MIB);
        Some(remaining.min(by_ratio).min(self.s.limits.max_object))
    }

    fn object(&mut self, data: &[u8], name: Option<&str>, depth: u32) {
        if depth > self.s.limits.max_depth {
            self.report.limits_hit += 1;
            return;
        }
        match sniff(data, name) {
            Kind::Zip => self.zip(data, depth),
            Kind::Gzip => self.gzip(data, name, depth),
            Kind::Pdf => self.pdf(data),
            Kind::Rtf => self.within("rtf", |c| c.leaf(&rtf::text(data))),
            Kind::Ole => self.ole(data, name),
            Kind::Email => self.email(data, depth),
            Kind::Html => self.markup(data, "html"),
            Kind::Xml => self.markup(data, "xml"),
            Kind::Text => self.leaf(data),
        }
    }

    fn within(&mut self, container: &'static str, f: impl FnOnce(&mut Self)) {
        self.chain.push(container);
        f(self);
        self.chain.pop();
    }

    fn markup(&mut self, data: &[u8], container: &'static str) {
        // fast path: nothing that could be a marker in the raw bytes and
        // no character references, nothing to extract
        let may = if container == "html" {
            self.s.prefilter.html_may_hold(data)
        } else {
            self.s.prefilter.markup_may_hold(data)
        };
        if !may {
            return;
        }
        self.within(container, |c| c.leaf(&markup::text(data)));
    }

    /// A text of unknown encoding: the prefilter's hits are decoded in a
    /// window around each (the line holding it); only when a window holds
    /// a stamp line is the whole text decoded, once per encoding, for its
    /// context. A text without hits costs the prefilter's pass alone.
    fn leaf(&mut self, data: &[u8]) {
        let hits = self.s.prefilter.hits(data);
        if hits.is_empty() {
            return;
        }
        let mut contexts: Vec<((Encoding, Carrier, usize), u32)> = Vec::new();
        // hits come in order: several in one line share its window
        let mut last_window = (usize::MAX, usize::MAX);
        for (start, end, enc, carrier) in hits {
            let utf16 = match (enc, carrier) {
                (Encoding::Utf16le, _) | (_, Carrier::Utf16le) => Some(false),
                (Encoding::Utf16be, _) | (_, Carrier::Utf16be) => Some(true),
                _ => None,
            };
            if utf16.is_none() && surely_prose(data, start, end) {
                continue;
            }
            let Some((ws, we)) = window(data, start, end, utf16) else { continue };
            if (ws, we) == last_window {
                continue;
            }
            last_window = (ws, we);
            let text = text::decode(&data[ws..we], enc, carrier);
            let levels = marker::stamp_lines(&text, enc.caseless());
            if levels.is_empty() {
                continue;
            }
            let skip = if utf16.is_some() { start % 2 } else { 0 };
            let key = (enc, carrier, skip);
            let context = match contexts.iter().find(|(k, _)| *k == key) {
                Some((_, c)) => *c,
                None => {
                    let whole = text::decode(&data[skip..], enc, carrier);
                    let c = marker::context_score(&whole);
                    contexts.push((key, c));
                    c
                }
            };
            self.doc_context = self.doc_context.max(context);
            let edge = near_edge(data, ws, we);
            let container = if self.chain.is_empty() { "text".to_string() } else { self.chain.join("/") };
            let score = viet_score(&text);
            for level in levels {
                self.pending.push(Pending {
                    level,
                    edge,
                    context,
                    bonus: self.part_bonus,
                    encoding: enc,
                    container: container.clone(),
                    score,
                });
            }
        }
    }

    /// Judges the stamps found, with the context of the whole object.
    fn decide(&mut self) {
        let doc = self.doc_context;
        let best = self
            .pending
            .iter()
            .filter(|p| marker::accept(p.level, p.edge, p.context.max(doc), p.bonus))
            .max_by_key(|p| (p.level, p.score));
        self.report.verdict =
            best.map(|p| Verdict { level: p.level, encoding: p.encoding, container: p.container.clone() });
    }

    fn zip(&mut self, data: &[u8], depth: u32) {
        let (entries, more) = match zip::entries(data, self.s.limits.max_entries) {
            Ok(r) => r,
            Err(_) => {
                self.report.errors += 1;
                // what is readable of a damaged archive: nothing compressed
                return;
            }
        };
        if more {
            self.report.limits_hit += 1;
        }
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name).collect();
        let has = |n: &[u8]| names.contains(&n);
        let kind = if has(b"word/document.xml") {
            "docx"
        } else if has(b"xl/workbook.xml") {
            "xlsx"
        } else if has(b"ppt/presentation.xml") {
            "pptx"
        } else if let Some(m) = entries.iter().find(|e| e.name == b"mimetype") {
            match m.data {
                d if d.starts_with(b"application/vnd.oasis.opendocument.text") => "odt",
                d if d.starts_with(b"application/vnd.oasis.opendocument.spreadsheet") => "ods",
                d if d.starts_with(b"application/vnd.oasis.opendocument.presentation") => "odp",
                _ => "zip",
            }
        } else {
            "zip"
        };
        let office = kind != "zip";
        // styles that show text in capitals, read once the first part
        // that may use them comes up (see `office_part`)
        let mut caps: Option<markup::CapsStyles> = None;
        self.chain.push(kind);
        for e in &entries {
            if e.name.ends_with(b"/") {
                continue;
            }
            if e.encrypted {
                self.report.errors += 1;
                continue;
            }
            let name = String::from_utf8_lossy(e.name).to_ascii_lowercase();
            let ext = ext(Some(&name));
            if office && (MEDIA.contains(&ext.as_str()) || ext == "rels" || name == "mimetype") {
                continue;
            }
            let Some(cap) = self.cap(e.data.len()) else { break };
            let (bytes, limited, damaged) = zip::extract(e, cap);
            self.report.expanded += bytes.len() as u64;
            self.report.limits_hit += u64::from(limited);
            self.report.errors += u64::from(damaged);
            if office && ext == "xml" {
                let base = name.rsplit('/').next().unwrap_or_default();
                let margin = ["header", "footer", "comments", "footnotes", "endnotes", "styles.xml"]
                    .iter()
                    .any(|p| base.starts_with(p));
                self.part_bonus = u32::from(margin);
                self.office_part(&bytes, &entries, kind, &mut caps);
                self.part_bonus = 0;
            } else {
                self.object(&bytes, Some(&name), depth + 1);
            }
        }
        self.chain.pop();
    }

    /// One XML part of an office document. A part that may hold a stamp
    /// stored in lowercase and shown in capitals (a lowercase "mật" in
    /// some form, and caps formatting) has its text extracted with the
    /// document's caps styles; any other part only if the prefilter finds
    /// the word in it.
    fn office_part(
        &mut self,
        bytes: &[u8],
        entries: &[zip::Entry<'_>],
        kind: &str,
        caps: &mut Option<markup::CapsStyles>,
    ) {
        if self.s.prefilter.lowercase_may_hold(bytes) {
            let styles = match caps {
                Some(s) => s,
                None => caps.insert(self.caps_styles(entries, kind)),
            };
            if markup::may_format_caps(bytes, styles, matches!(kind, "odt" | "ods" | "odp")) {
                let mut styles = styles.clone();
                // ODF automatic styles live in the part itself
                styles.collect(bytes);
                self.leaf(&markup::text_with_caps(bytes, &styles));
                return;
            }
        }
        if self.s.prefilter.markup_may_hold(bytes) {
            self.leaf(&markup::text(bytes));
        }
    }

    /// The caps styles of an office document's style part.
    fn caps_styles(&mut self, entries: &[zip::Entry<'_>], kind: &str) -> markup::CapsStyles {
        let mut styles = markup::CapsStyles::default();
        let part: &[u8] = if kind == "docx" { b"word/styles.xml" } else { b"styles.xml" };
        if let Some(e) = entries.iter().find(|e| e.name == part)
            && let Some(cap) = self.cap(e.data.len())
        {
            let (bytes, limited, damaged) = zip::extract(e, cap);
            self.report.expanded += bytes.len() as u64;
            self.report.limits_hit += u64::from(limited);
            self.report.errors += u64::from(damaged);
            styles.collect(&bytes);
        }
        styles
    }

    fn gzip(&mut self, data: &[u8], name: Option<&str>, depth: u32) {
        let Some(cap) = self.cap(data.len()) else { return };
        let (bytes, limited, damaged) = zip::read_bounded(flate2::read::MultiGzDecoder::new(data), cap);
        self.report.expanded += bytes.len() as u64;
        self.report.limits_hit += u64::from(limited);
        self.report.errors += u64::from(damaged);
        let inner = name.and_then(|n| n.strip_suffix(".gz")).map(str::to_string);
        self.within("gzip", |c| c.object(&bytes, inner.as_deref(), depth + 1));
    }

    fn pdf(&mut self, data: &[u8]) {
        let (streams, more) = pdf::streams(data, self.s.limits.max_entries);
        if more {
            self.report.limits_hit += 1;
        }
        let mut decoded: Vec<Vec<u8>> = Vec::new();
        for (dict, raw) in streams {
            match pdf::filter(dict) {
                pdf::Filter::None => decoded.push(raw.to_vec()),
                pdf::Filter::Flate => {
                    let Some(cap) = self.cap(raw.len()) else { break };
                    let (mut bytes, mut limited, mut damaged) =
                        zip::read_bounded(flate2::read::ZlibDecoder::new(raw), cap);
                    if damaged && bytes.is_empty() {
                        (bytes, limited, damaged) =
                            zip::read_bounded(flate2::read::DeflateDecoder::new(raw), cap);
                    }
                    self.report.expanded += bytes.len() as u64;
                    self.report.limits_hit += u64::from(limited);
                    self.report.errors += u64::from(damaged && bytes.is_empty());
                    decoded.push(bytes);
                }
                pdf::Filter::Other => {}
            }
        }
        let mut cmaps: Vec<pdf::CMap> = decoded.iter().filter_map(|s| pdf::cmap(s)).collect();
        if cmaps.len() > 16 {
            cmaps.truncate(16);
            self.report.limits_hit += 1;
        }
        self.chain.push("pdf");
        for s in &decoded {
            if memchr::memmem::find(s, b"Tj").is_none() && memchr::memmem::find(s, b"TJ").is_none() {
                continue;
            }
            for t in pdf::content_text(s, &cmaps) {
                self.leaf(&t);
            }
        }
        self.chain.pop();
    }

    fn ole(&mut self, data: &[u8], name: Option<&str>) {
        if utf16le_contains(data, "EncryptedPackage") {
            // an encrypted OOXML file in its OLE envelope
            self.report.errors += 1;
            return;
        }
        let container = match ext(name).as_str() {
            "xls" => "xls",
            "ppt" => "ppt",
            "doc" => "doc",
            _ if utf16le_contains(data, "WordDocument") => "doc",
            _ if utf16le_contains(data, "Workbook") => "xls",
            _ if utf16le_contains(data, "PowerPoint Document") => "ppt",
            _ => "ole",
        };
        // 8-bit and UTF-16 text runs are scanned in place: the prefilter
        // finds the marker in either, and control bytes break the lines
        self.within(container, |c| c.leaf(data));
    }

    fn email(&mut self, data: &[u8], depth: u32) {
        let (parts, cut) = mime::parts(data, self.s.limits.max_entries);
        if cut {
            self.report.limits_hit += 1;
        }
        self.chain.push("email");
        for p in parts {
            let hint = match p.media_type.as_str() {
                "text/html" => Some("part.html"),
                _ => None,
            };
            self.object(&p.body, hint, depth + 1);
        }
        self.chain.pop();
    }
}

impl Scanner {
    pub fn new(limits: Limits) -> Scanner {
        Scanner { prefilter: Prefilter::new(), limits }
    }

    /// Scans one object (a file, an attachment, a transferred body).
    /// `name` only hints at the type (an extension); it is never kept.
    pub fn scan(&self, data: &[u8], name: Option<&str>) -> ScanReport {
        let mut ctx = Ctx {
            s: self,
            report: ScanReport::default(),
            chain: Vec::new(),
            pending: Vec::new(),
            doc_context: 0,
            part_bonus: 0,
        };
        if data.len() as u64 > self.limits.max_object {
            ctx.report.limits_hit += 1;
            return ctx.report;
        }
        ctx.object(data, name, 0);
        ctx.decide();
        ctx.report
    }

    /// Whether bytes could hold a marker at all, as stored (no container
    /// opened): the prefilter alone.
    pub fn may_hold_marker(&self, data: &[u8]) -> bool {
        !self.prefilter.candidates(data).is_empty()
    }

    /// Reads and scans a file (bounded by `max_object`), with the SHA-256
    /// of the whole file.
    pub fn scan_file(&self, path: &std::path::Path) -> std::io::Result<(ScanReport, String, u64)> {
        use sha2::Digest as _;
        let f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        let mut data = Vec::new();
        let mut limited = f.take(self.limits.max_object.saturating_add(1));
        limited.read_to_end(&mut data)?;
        if data.len() as u64 > self.limits.max_object {
            let report = ScanReport { limits_hit: 1, ..Default::default() };
            return Ok((report, String::new(), size));
        }
        let report = self.scan(&data, path.file_name().and_then(|n| n.to_str()));
        let sha =
            if report.verdict.is_some() { hex::encode(sha2::Sha256::digest(&data)) } else { String::new() };
        Ok((report, sha, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes of TCVN3-like text: ASCII letters, spaces, high bytes, the
    /// odd line break and VISCII's letter controls.
    fn texty() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            8 => prop::sample::select(b"abcdhmnotAMT".to_vec()),
            3 => Just(b' '),
            3 => 0xA1u8..=0xFE,
            1 => prop::sample::select(vec![b'\n', b'\r', 0x0B, 0x0C, b'\t', 0x02, 0x1E]),
        ];
        prop::collection::vec(byte, 0..600)
    }

    proptest! {
        /// The prose shortcut is only a shortcut: whatever it calls prose,
        /// walking the line would have refused as a stamp line too.
        #[test]
        fn secrets_surely_prose_never_hides_a_stamp_line(data in texty(), at in 0usize..600) {
            let start = at.min(data.len().saturating_sub(3));
            let end = (start + 3).min(data.len());
            if surely_prose(&data, start, end) {
                prop_assert_eq!(window(&data, start, end, None), None);
            }
        }
    }

    /// A line break at every offset around a hit, block boundaries
    /// included: the shortcut never calls prose what the line walk keeps.
    #[test]
    fn secrets_surely_prose_with_a_break_at_every_offset() {
        let base: Vec<u8> = b"tin h\xD6 th\xabng ".iter().copied().cycle().take(320).collect();
        let (start, end) = (160, 163);
        let mut with_hit = base.clone();
        with_hit[start..end].copy_from_slice(b"m\xCBt");
        assert!(surely_prose(&with_hit, start, end), "no break: prose");
        let mut prose_kept = 0;
        for p in (0..with_hit.len()).filter(|p| !(start..end).contains(p)) {
            let mut d = with_hit.clone();
            d[p] = b'\n';
            if surely_prose(&d, start, end) {
                prose_kept += 1;
                assert_eq!(window(&d, start, end, None), None, "break at {p}");
            }
        }
        assert!(prose_kept > 0);
    }

    #[test]
    fn secrets_a_stamp_line_between_long_prose_lines_is_not_prose() {
        let prose = "bao mat va mat khau cua he thong thong tin can duoc bao ve ".repeat(6);
        let doc = format!("{prose}\nTUYET M\u{CB}T\n{prose}");
        let bytes: Vec<u8> = doc.chars().map(|c| c as u32 as u8).collect();
        let at = bytes.windows(3).position(|w| w == b"M\xCBT").unwrap();
        assert!(!surely_prose(&bytes, at, at + 3));
        assert!(window(&bytes, at, at + 3, None).is_some());
        // the same word in the middle of the prose is prose
        let at = bytes.windows(3).position(|w| w == b"mat").unwrap() + 3 * 59;
        assert_eq!(&bytes[at..at + 3], b"mat");
        assert!(surely_prose(&bytes, at, at + 3));
    }
}
