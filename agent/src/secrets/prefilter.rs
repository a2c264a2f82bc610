//! The byte-level prefilter: every way the word "MẬT" (present in all
//! three markers) is stored, in every encoding and carrier, as one
//! multi-pattern automaton (SIMD Teddy for these ~40 short patterns). A
//! text with none of them cannot hold a marker and is never decoded, so a
//! document without markers costs one pass at close to memory speed.

use aho_corasick::{AhoCorasick, MatchKind};

use super::text::{self, Carrier, Encoding};

/// A set of (encoding, carrier) pairs, as pattern-tag bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Candidates(u64);

impl Candidates {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Whether an `M` at `p` can start or be part of a pattern, from its
/// immediate neighbours: most capitals M in running text are not, and are
/// skipped without running the automaton.
fn plausible(hay: &[u8], p: usize) -> bool {
    let at = |i: Option<usize>| i.and_then(|i| hay.get(i)).copied();
    // what follows M in a pattern: Ậ (UTF-8), A (NFD, VNI, VIQR), Â or
    // a carried Ë/Ä/‡ (UTF-8), 0xCB (TCVN3), 0xC2 (Windows-1258), 0x87
    // (VISCII), 0x00 (UTF-16LE)
    matches!(at(Some(p + 1)), Some(0xE1 | b'A' | 0xC3 | 0xCB | 0xC2 | 0x87 | 0x00 | 0xE2))
        // UTF-16BE: 0x00 before M
        || at(p.checked_sub(1)) == Some(0)
}

/// TCVN3's lowercase `mật` around a `0xCB` at `p` (its case is not
/// reliable: `.VnTimeH` fonts draw lowercase codes as capitals): raw, or
/// carried as UTF-16 code units. These are the patterns without a capital
/// `M`, besides the UTF-8 carried `mËt`; recognised by their bytes, with
/// no automaton.
fn lowercase_tcvn3(hay: &[u8], p: usize) -> Option<(usize, usize, Carrier)> {
    let at = |i: Option<usize>| i.and_then(|i| hay.get(i)).copied();
    let before = |n: usize| at(p.checked_sub(n));
    let after = |n: usize| at(Some(p + n));
    if before(1) == Some(b'm') && after(1) == Some(b't') {
        return Some((p - 1, p + 2, Carrier::Raw));
    }
    if before(2) == Some(b'm') && before(1) == Some(0) && after(1) == Some(0) && after(2) == Some(b't') {
        if after(3) == Some(0) {
            return Some((p - 2, p + 4, Carrier::Utf16le));
        }
        if before(3) == Some(0) {
            return Some((p - 3, p + 3, Carrier::Utf16be));
        }
    }
    None
}

/// Byte ranks for the carried `mËt` search: the two bytes of `Ë` are the
/// rarest (memchr's default ranks, made for English and UTF-8, pick bytes
/// that TCVN3 text is full of).
#[derive(Clone, Copy)]
struct CarriedRanker;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for CarriedRanker {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            0xC3 | 0x8B => 0,
            _ => 255,
        }
    }
}

/// Longest pattern, in bytes.
const MAX_PATTERN: usize = 16;

pub struct Prefilter {
    ac: AhoCorasick,
    /// Pieces of "MẬT" that markup may split across tags or write as
    /// character references (see [`Prefilter::markup_may_hold`]): Ậ, the
    /// combining dot below (NFD), Ë and Ä (TCVN3's ậ and VNI's modifier
    /// carried in Unicode), `&#`.
    fragments: [memchr::memmem::Finder<'static>; 5],
    /// Lowercase "ật" as office XML stores it: NFC, NFD and VNI carried
    /// (`aät`); TCVN3 has no case.
    lowercase: [memchr::memmem::Finder<'static>; 3],
    /// Tag of each pattern.
    tags: Vec<(Encoding, Carrier)>,
    /// Distinct tags, indexed by bit.
    distinct: Vec<(Encoding, Carrier)>,
    /// TCVN3's lowercase `mật` carried in UTF-8 (`mËt`), the one pattern
    /// with neither `M` nor `0xCB`: searched for on its own, by the pair
    /// `Ë` (C3 8B) which no text uses often.
    carried_lowercase_tcvn3: memchr::memmem::Finder<'static>,
}

fn patterns() -> Vec<(Vec<u8>, Encoding, Carrier)> {
    let mut p = Vec::new();
    let nfc = "M\u{1EAC}T";
    let nfd_forms = ["MA\u{323}\u{302}T", "MA\u{302}\u{323}T", "M\u{C2}\u{323}T", "M\u{1EA0}\u{302}T"];
    p.push((nfc.as_bytes().to_vec(), Encoding::Utf8, Carrier::Raw));
    for f in nfd_forms {
        p.push((f.as_bytes().to_vec(), Encoding::Utf8Nfd, Carrier::Raw));
    }
    for f in [nfc, nfd_forms[0], nfd_forms[2]] {
        p.push((f.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(), Encoding::Utf16le, Carrier::Raw));
        p.push((f.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(), Encoding::Utf16be, Carrier::Raw));
    }
    p.push((b"MA^.T".to_vec(), Encoding::Viqr, Carrier::Raw));
    let mut legacy: Vec<(Vec<u8>, Encoding)> = Vec::new();
    for enc in [Encoding::Windows1258, Encoding::Vni, Encoding::Viscii] {
        legacy.push((text::encode("MẬT", enc), enc));
    }
    // TCVN3 text has no reliable case (`.VnTimeH` fonts draw lowercase
    // codes as capitals)
    for v in [&b"M\xCBT"[..], b"m\xCBt"] {
        legacy.push((v.to_vec(), Encoding::Tcvn3));
    }
    for (bytes, enc) in legacy {
        for carrier in [Carrier::Raw, Carrier::Utf8, Carrier::Utf16le, Carrier::Utf16be] {
            p.push((text::carry(&bytes, carrier), enc, carrier));
        }
    }
    p
}

impl Prefilter {
    pub fn new() -> Prefilter {
        let pats = patterns();
        let mut tags = Vec::new();
        let mut distinct: Vec<(Encoding, Carrier)> = Vec::new();
        for (_, e, c) in &pats {
            tags.push((*e, *c));
            if !distinct.contains(&(*e, *c)) {
                distinct.push((*e, *c));
            }
        }
        // building fails only beyond size limits that a few dozen short
        // fixed patterns cannot reach
        #[allow(clippy::expect_used)]
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(pats.iter().map(|(b, _, _)| b.as_slice()))
            .expect("fixed prefilter patterns");
        let fragments = ["\u{1EAC}", "\u{323}", "\u{CB}", "\u{C4}", "&#"]
            .map(|f| memchr::memmem::Finder::new(f.as_bytes()).into_owned());
        let lowercase = ["\u{1EAD}t", "a\u{323}\u{302}t", "a\u{E4}t"]
            .map(|f| memchr::memmem::Finder::new(f.as_bytes()).into_owned());
        let carried = "m\u{CB}t".as_bytes();
        let carried_lowercase_tcvn3 = memchr::memmem::FinderBuilder::new()
            .build_forward_with_ranker(CarriedRanker, carried)
            .into_owned();
        Prefilter { ac, fragments, lowercase, tags, distinct, carried_lowercase_tcvn3 }
    }

    /// The (encoding, carrier) pairs whose "MẬT" occurs in `hay`.
    pub fn candidates(&self, hay: &[u8]) -> Candidates {
        let mut bits = 0u64;
        for (_, _, e, c) in self.hits(hay) {
            if let Some(i) = self.distinct.iter().position(|t| *t == (e, c)) {
                bits |= 1 << i;
            }
        }
        Candidates(bits)
    }

    /// Every occurrence, in order: (start, end, encoding, carrier).
    ///
    /// Every pattern holds a capital `M` or the TCVN3 byte `0xCB` within
    /// its first four bytes, except the carried lowercase TCVN3 form (`mËt`
    /// in UTF-8), which has its own pass: the automaton only runs on a few
    /// bytes around each `M` that may start a pattern, and a `0xCB` is
    /// looked at in place ([`lowercase_tcvn3`]), so a text costs about two
    /// `memchr` passes.
    pub fn hits(&self, hay: &[u8]) -> Vec<(usize, usize, Encoding, Carrier)> {
        let mut out: Vec<(usize, usize, Encoding, Carrier)> = Vec::new();
        let mut searched_to = 0;
        for p in memchr::memchr2_iter(b'M', 0xCB, hay) {
            if hay[p] == 0xCB {
                // the capital forms (`M\xCBT`) are found from their M
                if let Some((s, e, carrier)) = lowercase_tcvn3(hay, p) {
                    out.push((s, e, Encoding::Tcvn3, carrier));
                }
                continue;
            }
            if !plausible(hay, p) {
                continue;
            }
            let s = p.saturating_sub(3).max(searched_to);
            let e = (p + MAX_PATTERN).min(hay.len());
            if s >= e {
                continue;
            }
            for m in self.ac.find_iter(&hay[s..e]) {
                let (enc, c) = self.tags[m.pattern().as_usize()];
                out.push((s + m.start(), s + m.end(), enc, c));
                searched_to = s + m.end();
            }
            // bytes before the anchor are searched once only
            searched_to = searched_to.max(p.saturating_sub(3));
        }
        let lower = "m\u{CB}t".as_bytes();
        for p in self.carried_lowercase_tcvn3.find_iter(hay) {
            out.push((p, p + lower.len(), Encoding::Tcvn3, Carrier::Utf8));
        }
        if !out.is_sorted_by_key(|h| h.0) {
            out.sort_by_key(|h| h.0);
        }
        out
    }

    /// Whether HTML may hold "MẬT" once its tags are dropped: a whole hit
    /// or a character reference (pages rarely split a word across tags,
    /// unlike Word's XML, see [`Prefilter::markup_may_hold`]).
    pub fn html_may_hold(&self, hay: &[u8]) -> bool {
        self.fragments[4].find(hay).is_some() || !self.hits(hay).is_empty()
    }

    /// Whether markup (XML, HTML) may hold "MẬT" once its tags are dropped
    /// and its references decoded: a whole hit, or a piece of the word a
    /// tag may have split from the rest, or a character reference.
    pub fn markup_may_hold(&self, hay: &[u8]) -> bool {
        self.fragments.iter().any(|f| f.find(hay).is_some()) || !self.hits(hay).is_empty()
    }

    /// Whether text may hold "mật" or "Mật" (its "ật" in UTF-8 NFC or NFD,
    /// or VNI carried in Unicode), which formatting can show in capitals.
    pub fn lowercase_may_hold(&self, hay: &[u8]) -> bool {
        self.lowercase.iter().any(|f| f.find(hay).is_some())
    }

    /// The pairs of a candidate set.
    pub fn pairs(&self, c: Candidates) -> impl Iterator<Item = (Encoding, Carrier)> + '_ {
        self.distinct.iter().enumerate().filter(move |(i, _)| c.0 & (1 << i) != 0).map(|(_, t)| *t)
    }
}

impl Default for Prefilter {
    fn default() -> Self {
        Prefilter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_prefilter_finds_every_encoding_and_nothing_in_plain_text() {
        let p = Prefilter::new();
        assert!(p.pairs(Candidates(u64::MAX)).count() <= 64);
        for enc in [
            Encoding::Utf8,
            Encoding::Utf8Nfd,
            Encoding::Windows1258,
            Encoding::Tcvn3,
            Encoding::Vni,
            Encoding::Viqr,
            Encoding::Viscii,
            Encoding::Utf16le,
            Encoding::Utf16be,
        ] {
            let doc = text::encode("Văn bản TUYỆT MẬT số 12", enc);
            let got: Vec<_> = p.pairs(p.candidates(&doc)).collect();
            assert!(got.contains(&(enc, Carrier::Raw)), "{}: {got:?}", enc.name());
        }
        for (pat, e, c) in patterns() {
            assert!(pat.len() <= MAX_PATTERN);
            // found from a plausible capital M, or from 0xCB in place
            let anchored = (0..pat.len().min(4)).any(|i| pat[i] == b'M' && plausible(&pat, i));
            let in_place = (0..pat.len().min(4))
                .any(|i| pat[i] == 0xCB && lowercase_tcvn3(&pat, i) == Some((0, pat.len(), c)));
            assert!(anchored || in_place || (e, c) == (Encoding::Tcvn3, Carrier::Utf8), "{pat:?}");
            let p = Prefilter::new();
            assert!(!p.hits(&pat).is_empty(), "{pat:?}");
        }
        let plain = "Báo cáo về bảo mật, mật khẩu và bí mật; mật ong. MAT MÂT".repeat(50);
        assert!(p.candidates(plain.as_bytes()).is_empty());
    }
}
