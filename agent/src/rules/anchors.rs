//! A multi-pattern prefilter for bulk data (packet payloads, streams, HTTP
//! bodies) whose cost per byte does not grow with the number of patterns.
//!
//! Short patterns (one to three bytes, frequent in rule sets: `|00|`,
//! `|0d 0a|`, `GET`) are found by recording, in one pass, which bytes, byte
//! (hashed) byte pairs and byte triples occur in the data, then looking the
//! patterns up: no per-occurrence work. Longer patterns are reduced to an
//! *anchor*, their four-byte window with the rarest bytes; at each position
//! a hashed bitmap says whether an anchor may end there, and only then the
//! patterns with that anchor are compared in full. Everything is ASCII
//! case-folded. The result is every pattern present (two- and three-byte
//! patterns may also be reported when absent, hash collisions): what a
//! prefilter needs, since the rules are verified afterwards. The per-scan
//! tables and the anchor bitmap together fit in a 48 KiB L1 data cache
//! (the scan is bound by its stores and loads into them).
//!
//! On the ET Open payload patterns this runs at a few nanoseconds per byte,
//! where an Aho-Corasick automaton of the same patterns (2.5 MB, more than
//! the cache) spends most of its time in cache misses and in reporting the
//! short patterns again at every occurrence.
//!
//! [`Anchors::scan_after`] scans stream data whose front was scanned by an
//! earlier call: it reports only the patterns that end in the new bytes,
//! marking from the first new byte and testing anchors a bounded distance
//! before it (an anchor lies within the last 32 bytes of its pattern).

use std::collections::HashMap;

/// ASCII lower-case folding table.
const FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    t
};

/// Entries of the per-scan pair and triple tables (8 KiB each).
const PAIR_LOG: u32 = 13;
const TRI_LOG: u32 = 13;
/// Bits of the four-byte anchor bitmap (16 KiB; about 2% false hits per
/// position with 2,000 anchors).
const LONG_LOG: u32 = 17;

/// Bytes per pass of the scan: the first pass over a chunk marks and
/// writes the positions whose anchor bit is set (a store at every
/// position, the count advanced by the bit: no branch), the second
/// confirms those positions. The first loop then has nothing to keep
/// across a call and runs at the rate of its loads and stores.
const CHUNK: usize = 256;

/// A random 32-bit value per byte, the same for both cases of a letter:
/// the table of a cyclic-polynomial ("buzhash") rolling hash. The hashes of
/// the pair, triple and four bytes ending at a position are rotations and
/// exclusive-ors of the values of those bytes, so the scan loop computes
/// all three with one table load and no multiplication.
const RND: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        // splitmix64 of the folded byte
        let mut z = ((i as u8).to_ascii_lowercase() as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        t[i] = (z >> 32) as u32;
        i += 1;
    }
    t
};

/// [`RND`] in the high half and the folded byte in the low byte: one load
/// per position in the scan loop.
const TAB: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ((RND[i] as u64) << 32) | (i as u8).to_ascii_lowercase() as u64;
        i += 1;
    }
    t
};

/// The rolling-hash values of the three bytes before `pos` (of byte 0
/// before the data, as the scan of a whole buffer starts).
fn before(data: &[u8], pos: usize) -> (u32, u32, u32) {
    let at = |back: usize| {
        let b = pos.checked_sub(back).and_then(|i| data.get(i)).copied().unwrap_or(0);
        (TAB[b as usize] >> 32) as u32
    };
    (at(1), at(2), at(3))
}

/// The rolling hash of `a` (its last byte unrotated, each earlier byte
/// rotated by its distance from the end), as the scan loop computes it.
fn roll(a: &[u8]) -> u32 {
    a.iter().fold(0u32, |h, b| h.rotate_left(1) ^ RND[*b as usize])
}

fn key(a: &[u8]) -> u32 {
    a.iter().fold(0u32, |k, b| (k << 8) | u32::from(FOLD[*b as usize]))
}

/// Index below 2^PAIR_LOG.
#[inline]
fn pair_index(h: u32) -> usize {
    (h & ((1 << PAIR_LOG) - 1)) as usize
}

/// Index below 2^TRI_LOG.
#[inline]
fn tri_index(h: u32) -> usize {
    (h & ((1 << TRI_LOG) - 1)) as usize
}

/// Index below 2^LONG_LOG.
#[inline]
fn long_index(h: u32) -> usize {
    (h & ((1 << LONG_LOG) - 1)) as usize
}

/// Rarity weight of a byte in network data (higher is rarer).
fn weight(b: u8) -> u32 {
    match b.to_ascii_lowercase() {
        0 | b' ' | b'/' | b'.' | b'\r' | b'\n' | b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r'
        | 0xff => 1,
        b'=' | b'&' | b'-' | b'_' | b':' | b'0' | b'1' | b'h' | b'l' | b'c' | b'd' | b'u' | b'p' | b'm' => 2,
        b'a'..=b'z' | b'2'..=b'9' => 3,
        _ => 4,
    }
}

/// Offset of the four-byte window with the rarest bytes.
/// An anchor lies in the last this many bytes of its pattern, so that a
/// scan after an offset ([`Anchors::scan_after`]) looks back only this far
/// for the anchors of patterns that reach past the offset.
const ANCHOR_REACH: usize = 32;

fn anchor_offset(p: &[u8]) -> usize {
    let mut best = (0u32, 0usize);
    for start in p.len().saturating_sub(ANCHOR_REACH)..=p.len().saturating_sub(4) {
        let score: u32 = p.iter().skip(start).take(4).map(|b| weight(*b)).sum();
        if score > best.0 {
            best = (score, start);
        }
    }
    best.1
}

/// Per-engine scratch tables for [`Anchors::scan`]. Byte-per-entry tables:
/// marking is a plain store, with no read-modify-write chain between
/// neighbouring positions. An entry is marked when it holds the scan's
/// generation, so a scan never clears what it marked (the tables are
/// zeroed once every 255 scans, when the generation wraps).
#[derive(Debug)]
pub(crate) struct AnchorScratch {
    generation: u8,
    bytes: [u8; 256],
    pairs: Box<[u8; 1 << PAIR_LOG]>,
    tris: Box<[u8; 1 << TRI_LOG]>,
    /// Positions of one chunk where an anchor may end (see [`CHUNK`]).
    hits: Box<[u32; CHUNK]>,
}

impl Default for AnchorScratch {
    fn default() -> Self {
        AnchorScratch {
            generation: 0,
            bytes: [0; 256],
            pairs: Box::new([0; 1 << PAIR_LOG]),
            tris: Box::new([0; 1 << TRI_LOG]),
            hits: Box::new([0; CHUNK]),
        }
    }
}

impl AnchorScratch {
    /// The generation of a new scan; no entry holds it yet.
    fn next_generation(&mut self) -> u8 {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.bytes = [0; 256];
            self.pairs.fill(0);
            self.tris.fill(0);
            self.generation = 1;
        }
        self.generation
    }
}

/// A pattern of four bytes or more, in [`Anchors::long`]'s order.
struct Long {
    /// Its anchor: four folded bytes, big-endian.
    key: u32,
    id: u32,
    /// Its folded bytes in [`Anchors::arena`].
    start: u32,
    len: u32,
    /// Offset of the anchor in the pattern.
    off: u32,
}

/// Patterns of one target.
pub(crate) struct Anchors {
    /// (table index, pattern id) per length 1, 2 and 3: the byte, the
    /// pair's and the triple's hash index.
    short: [Vec<(u32, u32)>; 3],
    /// Hashed bitmap of the four-byte anchors (2^LONG_LOG bits).
    bits: Box<[u64; (1 << LONG_LOG) / 64]>,
    /// Patterns of four bytes or more, sorted by anchor.
    long: Vec<Long>,
    /// Anchor key -> its range in `long` (one lookup per bitmap hit).
    ranges: HashMap<u32, (u32, u32), foldhash::fast::FixedState>,
    /// The folded bytes of the long patterns, in `long`'s order: the
    /// patterns of one anchor are next to each other.
    arena: Vec<u8>,
}

impl Anchors {
    /// `patterns[i]` is pattern id `i`.
    pub fn new(patterns: &[Vec<u8>]) -> Anchors {
        let mut short: [Vec<(u32, u32)>; 3] = Default::default();
        let mut long = Vec::new();
        for (id, p) in patterns.iter().enumerate() {
            let folded: Vec<u8> = p.iter().map(|b| FOLD[*b as usize]).collect();
            match folded.len() {
                0 => {}
                n @ 1..=3 => {
                    let index = match n {
                        1 => u32::from(folded[0]),
                        2 => pair_index(roll(&folded)) as u32,
                        _ => tri_index(roll(&folded)) as u32,
                    };
                    if let Some(v) = short.get_mut(n - 1) {
                        v.push((index, id as u32));
                    }
                }
                _ => {
                    let off = anchor_offset(&folded);
                    let key = folded.get(off..off + 4).map(key).unwrap_or(0);
                    long.push((key, id as u32, off, folded));
                }
            }
        }
        long.sort_unstable_by_key(|(k, id, _, _)| (*k, *id));
        let mut arena = Vec::new();
        let long: Vec<Long> = long
            .into_iter()
            .map(|(key, id, off, folded)| {
                let start = arena.len() as u32;
                arena.extend_from_slice(&folded);
                Long { key, id, start, len: folded.len() as u32, off: off as u32 }
            })
            .collect();
        let mut ranges: HashMap<u32, (u32, u32), foldhash::fast::FixedState> = HashMap::default();
        for (i, l) in long.iter().enumerate() {
            ranges.entry(l.key).or_insert((i as u32, i as u32)).1 = i as u32 + 1;
        }
        let mut bits = Box::new([0u64; (1 << LONG_LOG) / 64]);
        for l in &long {
            let h = long_index(roll(&l.key.to_be_bytes()));
            bits[h / 64] |= 1 << (h % 64);
        }
        Anchors { short, bits, long, ranges, arena }
    }

    /// [`Anchors::scan`] for the patterns that end after `from` (at least
    /// their last byte in `data[from..]`): the bytes before `from` were
    /// scanned by an earlier call and are looked at again only for
    /// patterns that cross into the new bytes.
    pub fn scan_after(&self, data: &[u8], from: usize, s: &mut AnchorScratch, mut f: impl FnMut(u32)) {
        let from = from.min(data.len());
        let [s1, s2, s3] = &self.short;
        let (h1, h2, h3, h4) = (!s1.is_empty(), !s2.is_empty(), !s3.is_empty(), !self.long.is_empty());
        if h4 && from > 0 {
            // anchors ending at or before `from` of patterns that reach past it
            self.confirm_only(data, from.saturating_sub(ANCHOR_REACH)..from, from, s, &mut f);
        }
        let g = if h1 || h2 || h3 { s.next_generation() } else { 0 };
        if h1 || h2 || h3 {
            self.mark_and_confirm(data, from, g, s, &mut f);
        } else if h4 {
            self.confirm_only(data, from..data.len(), from, s, &mut f);
        }
        self.report_short(s, g, &mut f);
    }

    /// Calls `f` with the id of every pattern present in `data` (and of
    /// three-byte patterns whose hash is present), possibly several times.
    #[cfg(test)]
    pub fn scan(&self, data: &[u8], s: &mut AnchorScratch, f: impl FnMut(u32)) {
        self.scan_after(data, 0, s, f);
    }

    /// The short patterns whose entries the scan of generation `g` marked.
    fn report_short(&self, s: &AnchorScratch, g: u8, f: &mut impl FnMut(u32)) {
        let [s1, s2, s3] = &self.short;
        let (h1, h2, h3) = (!s1.is_empty(), !s2.is_empty(), !s3.is_empty());
        if h1 {
            for (index, id) in s1 {
                if s.bytes.get(*index as usize) == Some(&g) {
                    f(*id);
                }
            }
        }
        if h2 {
            for (index, id) in s2 {
                if s.pairs.get(*index as usize) == Some(&g) {
                    f(*id);
                }
            }
        }
        if h3 {
            for (index, id) in s3 {
                if s.tris.get(*index as usize) == Some(&g) {
                    f(*id);
                }
            }
        }
    }

    /// The scan with short patterns: every position marks its byte, pair
    /// and triple (the pair and triple of the first positions include zero
    /// bytes from before the data: a false mark at worst, which a prefilter
    /// allows) and tests its four-byte anchor; the positions whose anchor
    /// bit is set are confirmed after each chunk. No branch in the loop and
    /// no multiplication (the hashes roll, see [`RND`]).
    fn mark_and_confirm(
        &self,
        data: &[u8],
        start: usize,
        g: u8,
        s: &mut AnchorScratch,
        f: &mut impl FnMut(u32),
    ) {
        let AnchorScratch { bytes, pairs, tris, hits, .. } = s;
        let (pairs, tris, hits) = (&mut **pairs, &mut **tris, &mut **hits);
        let bits = &*self.bits;
        // the values of the three bytes before the position
        let (mut x1, mut x2, mut x3) = before(data, start);
        let Some(rest) = data.get(start..) else { return };
        for (ci, chunk) in rest.chunks(CHUNK).enumerate() {
            let mut n = 0;
            for (j, &b) in chunk.iter().enumerate() {
                let t = TAB[b as usize];
                let (c, r) = (t as u8, (t >> 32) as u32);
                let h2 = x1.rotate_left(1) ^ r;
                let h3 = x2.rotate_left(2) ^ h2;
                let h4 = x3.rotate_left(3) ^ h3;
                (x3, x2, x1) = (x2, x1, r);
                bytes[c as usize] = g;
                pairs[pair_index(h2)] = g;
                tris[tri_index(h3)] = g;
                let h = long_index(h4);
                // n <= j < CHUNK
                hits[n & (CHUNK - 1)] = j as u32;
                n += ((bits[h / 64] >> (h % 64)) & 1) as usize;
            }
            self.confirm_hits(data, start + ci * CHUNK, &hits[..n], start, f);
        }
    }

    /// The anchor test only, at the positions of `range`, for patterns
    /// ending after `min_end`.
    fn confirm_only(
        &self,
        data: &[u8],
        range: std::ops::Range<usize>,
        min_end: usize,
        s: &mut AnchorScratch,
        f: &mut impl FnMut(u32),
    ) {
        let hits = &mut *s.hits;
        let bits = &*self.bits;
        let (mut x1, mut x2, mut x3) = before(data, range.start);
        let Some(part) = data.get(range.clone()) else { return };
        for (ci, chunk) in part.chunks(CHUNK).enumerate() {
            let mut n = 0;
            for (j, &b) in chunk.iter().enumerate() {
                let r = (TAB[b as usize] >> 32) as u32;
                let h4 = x3.rotate_left(3) ^ x2.rotate_left(2) ^ x1.rotate_left(1) ^ r;
                (x3, x2, x1) = (x2, x1, r);
                let h = long_index(h4);
                hits[n & (CHUNK - 1)] = j as u32;
                n += ((bits[h / 64] >> (h % 64)) & 1) as usize;
            }
            self.confirm_hits(data, range.start + ci * CHUNK, &hits[..n], min_end, f);
        }
    }

    /// Confirms the positions `base + j` of `hits` (where an anchor may
    /// end) for patterns ending after `min_end`.
    fn confirm_hits(&self, data: &[u8], base: usize, hits: &[u32], min_end: usize, f: &mut impl FnMut(u32)) {
        for &j in hits {
            let i = base + j as usize;
            if let Some(w) = i.checked_sub(3).and_then(|a| data.get(a..=i)) {
                self.confirm(data, i + 1, key(w), min_end, f);
            }
        }
    }

    /// An anchor may end at `end`: compare the patterns that have it (and
    /// end after `min_end`).
    fn confirm(&self, data: &[u8], end: usize, k: u32, min_end: usize, f: &mut impl FnMut(u32)) {
        let Some(&(a, b)) = self.ranges.get(&k) else { return };
        let Some(with) = self.long.get(a as usize..b as usize) else { return };
        for l in with {
            // the anchor is the pattern's bytes off..off + 4 and ends at `end`
            let Some(pstart) = (end - 4).checked_sub(l.off as usize) else { continue };
            let (s, len) = (l.start as usize, l.len as usize);
            if pstart + len > min_end
                && let (Some(w), Some(p)) = (data.get(pstart..pstart + len), self.arena.get(s..s + len))
                && w.eq_ignore_ascii_case(p)
            {
                f(l.id);
            }
        }
    }

    /// Heap bytes used.
    pub fn memory_usage(&self) -> usize {
        self.short.iter().map(|v| v.len() * 8).sum::<usize>()
            + self.bits.len() * 8
            + self.long.len() * std::mem::size_of::<Long>()
            + self.ranges.capacity() * 13
            + self.arena.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pats: &[&[u8]], data: &[u8]) -> Vec<u32> {
        let owned: Vec<Vec<u8>> = pats.iter().map(|p| p.to_vec()).collect();
        let a = Anchors::new(&owned);
        let mut s = AnchorScratch::default();
        let mut v = Vec::new();
        // a scratch that scanned other data before, 300 times (the
        // generation wraps): nothing of those scans shows in this one
        for _ in 0..300 {
            a.scan(b"\x00abcdGETzzuser-agent: evil", &mut s, |_| {});
        }
        a.scan(data, &mut s, |id| v.push(id));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn every_present_pattern_is_reported() {
        let pats: &[&[u8]] =
            &[b"\x00", b"ab", b"GET", b"abcd", b"User-Agent: evil", b"\xde\xad\xbe\xef\x01", b"zz"];
        assert_eq!(found(pats, b"xx get / HTTP"), vec![2]);
        assert_eq!(found(pats, b"\x00ABcD"), vec![0, 1, 3]);
        assert_eq!(found(pats, b"user-agent: EVIL"), vec![4]);
        assert_eq!(found(pats, b"user-agent: EVI"), Vec::<u32>::new());
        assert_eq!(found(pats, b"..\xde\xad\xbe\xef\x01"), vec![5]);
        assert_eq!(found(pats, b"..\xde\xad\xbe\xef\x02"), Vec::<u32>::new());
        assert_eq!(found(pats, b""), Vec::<u32>::new());
        assert_eq!(found(pats, b"z"), Vec::<u32>::new());
        // every pattern cut from pseudo-random data is found in it
        let data: Vec<u8> =
            (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8 % 8 + b'a').collect();
        let many: Vec<Vec<u8>> =
            (0..300usize).map(|i| data[(i * 13) % 4000..(i * 13) % 4000 + 1 + (i % 9)].to_vec()).collect();
        let a = Anchors::new(&many);
        let mut seen = vec![false; many.len()];
        let mut s = AnchorScratch::default();
        a.scan(&data, &mut s, |id| seen[id as usize] = true);
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_scan_after_an_offset_reports_the_patterns_ending_after_it() {
        let long_tail = [b"x".repeat(40), b"evil-tail".to_vec()].concat();
        let pats: Vec<Vec<u8>> =
            vec![b"abcdefgh".to_vec(), b"zz".to_vec(), b"qqq".to_vec(), long_tail.clone(), b"GET /".to_vec()];
        let a = Anchors::new(&pats);
        let mut s = AnchorScratch::default();
        let after = |data: &[u8], from: usize, s: &mut AnchorScratch| {
            let mut v = Vec::new();
            a.scan_after(data, from, s, |id| v.push(id));
            v.sort_unstable();
            v.dedup();
            v
        };
        // before the offset only: not reported
        assert_eq!(after(b"abcdefgh zz qqq|new bytes", 16, &mut s), Vec::<u32>::new());
        // crossing into the new bytes (long and short patterns)
        assert_eq!(after(b"....abcdefgh", 8, &mut s), vec![0]);
        assert_eq!(after(b"....zz", 5, &mut s), vec![1]);
        assert_eq!(after(b"....qqq", 6, &mut s), vec![2]);
        // a long pattern whose last byte is the first new one
        let mut d = b"..".to_vec();
        d.extend_from_slice(&long_tail);
        assert_eq!(after(&d, d.len() - 1, &mut s), vec![3]);
        assert_eq!(after(&d, d.len(), &mut s), Vec::<u32>::new());
        // in the new bytes, and offset 0 is a whole scan
        assert_eq!(after(b"old|GET /", 4, &mut s), vec![4]);
        assert_eq!(after(b"GET / zz", 0, &mut s), vec![1, 4]);
    }
}

#[cfg(test)]
mod bench {
    /// `cargo test --release -p canhgac-agent --lib rules::anchors::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn anchors_vs_ac() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus/Suricata_Repository");
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        let mut pats: Vec<Vec<u8>> = Vec::new();
        for e in rd.flatten() {
            let t = std::fs::read_to_string(e.path()).unwrap_or_default();
            for l in t.lines().filter(|l| l.starts_with("alert tcp") || l.starts_with("alert udp")) {
                let Some(p) = l.find("content:\"") else { continue };
                let rest = &l[p + 9..];
                let Some(end) = rest.find('"') else { continue };
                if let Ok((_, b)) = super::super::content::parse_content(&format!("\"{}\"", &rest[..end]))
                    && !b.is_empty()
                {
                    pats.push(b.to_ascii_lowercase());
                }
            }
        }
        pats.sort();
        pats.dedup();
        let a = super::Anchors::new(&pats);
        let ac = aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&pats).unwrap();
        let text: Vec<u8> = (0..16384u32)
            .map(|i| b"lorem ipsum dolor sit amet, consectetur adipiscing elit "[(i % 56) as usize])
            .collect();
        let bin: Vec<u8> = (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut s = super::AnchorScratch::default();
        let best = |f: &mut dyn FnMut()| {
            (0..30)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..10 {
                        f();
                    }
                    t.elapsed() / 10
                })
                .min()
                .unwrap_or_default()
        };
        for (name, d) in [("text", &text), ("binary", &bin)] {
            let mut n = 0u64;
            let ta = best(&mut || a.scan(d, &mut s, |_| n += 1));
            let tc = best(&mut || n += ac.find_overlapping_iter(d.as_slice()).count() as u64);
            println!(
                "{} patterns, 16 KiB {name}: anchors {ta:?}, aho-corasick {tc:?} (best of 30)",
                pats.len()
            );
        }
    }
}
