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

const HASH_MUL: u32 = 0x9E37_79B1;
/// Entries of the per-scan pair and triple tables (8 KiB each).
const PAIR_LOG: u32 = 13;
const TRI_LOG: u32 = 13;
/// Bits of the four-byte anchor bitmap (16 KiB; about 2% false hits per
/// position with 2,000 anchors).
const LONG_LOG: u32 = 17;

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
fn anchor_offset(p: &[u8]) -> usize {
    let mut best = (0u32, 0usize);
    for start in 0..=p.len().saturating_sub(4) {
        let score: u32 = p.iter().skip(start).take(4).map(|b| weight(*b)).sum();
        if score > best.0 {
            best = (score, start);
        }
    }
    best.1
}

fn key(a: &[u8]) -> u32 {
    a.iter().fold(0u32, |k, b| (k << 8) | u32::from(FOLD[*b as usize]))
}

/// Index below 2^PAIR_LOG.
#[inline]
fn pair_hash(k2: u32) -> usize {
    (k2.wrapping_mul(HASH_MUL) >> (32 - PAIR_LOG)) as usize
}

/// Index below 2^TRI_LOG.
#[inline]
fn tri_hash(k3: u32) -> usize {
    (k3.wrapping_mul(HASH_MUL) >> (32 - TRI_LOG)) as usize
}

/// Index below 2^LONG_LOG.
#[inline]
fn long_hash(k: u32) -> usize {
    (k.wrapping_mul(HASH_MUL) >> (32 - LONG_LOG)) as usize
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
}

impl Default for AnchorScratch {
    fn default() -> Self {
        AnchorScratch {
            generation: 0,
            bytes: [0; 256],
            pairs: Box::new([0; 1 << PAIR_LOG]),
            tris: Box::new([0; 1 << TRI_LOG]),
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

/// Patterns of one target.
pub(crate) struct Anchors {
    /// (key, pattern id) per length 1, 2 and 3.
    short: [Vec<(u32, u32)>; 3],
    /// Hashed bitmap of the four-byte anchors (2^LONG_LOG bits).
    bits: Box<[u64; (1 << LONG_LOG) / 64]>,
    /// (anchor key, pattern id), sorted.
    long: Vec<(u32, u32)>,
    /// Anchor key -> its range in `long` (one lookup per bitmap hit).
    ranges: HashMap<u32, (u32, u32), foldhash::fast::FixedState>,
    /// Folded patterns with the offset of their anchor.
    pats: Vec<(Box<[u8]>, usize)>,
}

impl Anchors {
    /// `patterns[i]` is pattern id `i`.
    pub fn new(patterns: &[Vec<u8>]) -> Anchors {
        let mut short: [Vec<(u32, u32)>; 3] = Default::default();
        let mut long = Vec::new();
        let mut pats = Vec::with_capacity(patterns.len());
        for (id, p) in patterns.iter().enumerate() {
            let folded: Box<[u8]> = p.iter().map(|b| FOLD[*b as usize]).collect();
            let off = anchor_offset(&folded);
            match folded.len() {
                0 => {}
                n @ 1..=3 => {
                    if let Some(v) = short.get_mut(n - 1) {
                        v.push((key(&folded), id as u32));
                    }
                }
                _ => long.push((folded.get(off..off + 4).map(key).unwrap_or(0), id as u32)),
            }
            pats.push((folded, off));
        }
        long.sort_unstable();
        let mut ranges: HashMap<u32, (u32, u32), foldhash::fast::FixedState> = HashMap::default();
        for (i, (k, _)) in long.iter().enumerate() {
            ranges.entry(*k).or_insert((i as u32, i as u32)).1 = i as u32 + 1;
        }
        let mut bits = Box::new([0u64; (1 << LONG_LOG) / 64]);
        for (k, _) in &long {
            let h = long_hash(*k);
            bits[h / 64] |= 1 << (h % 64);
        }
        Anchors { short, bits, long, ranges, pats }
    }

    /// Calls `f` with the id of every pattern present in `data` (and of
    /// three-byte patterns whose hash is present), possibly several times.
    pub fn scan(&self, data: &[u8], s: &mut AnchorScratch, mut f: impl FnMut(u32)) {
        let [s1, s2, s3] = &self.short;
        let (h1, h2, h3, h4) = (!s1.is_empty(), !s2.is_empty(), !s3.is_empty(), !self.long.is_empty());
        let g = if h1 || h2 || h3 { s.next_generation() } else { 0 };
        if h1 || h2 || h3 {
            self.mark_and_confirm(data, g, s, &mut f);
        } else if h4 {
            self.confirm_only(data, &mut f);
        }
        if h1 {
            for (key, id) in s1 {
                if s.bytes[(*key & 0xFF) as usize] == g {
                    f(*id);
                }
            }
        }
        if h2 {
            for (key, id) in s2 {
                if s.pairs[pair_hash(*key)] == g {
                    f(*id);
                }
            }
        }
        if h3 {
            for (key, id) in s3 {
                if s.tris[tri_hash(*key)] == g {
                    f(*id);
                }
            }
        }
    }

    /// The scan loop with short patterns: every position marks its byte,
    /// pair and triple (the pair and triple of the first positions include
    /// zero bytes from before the data: a false mark at worst, which a
    /// prefilter allows) and tests its four-byte anchor. No branch but the
    /// anchor test, so that the loop runs at the rate of its stores.
    fn mark_and_confirm(&self, data: &[u8], g: u8, s: &mut AnchorScratch, f: &mut impl FnMut(u32)) {
        let (bytes, pairs, tris) = (&mut s.bytes, &mut *s.pairs, &mut *s.tris);
        let bits = &*self.bits;
        let mut k: u32 = 0;
        for (i, &b) in data.iter().enumerate() {
            let c = FOLD[b as usize];
            k = (k << 8) | u32::from(c);
            bytes[c as usize] = g;
            pairs[pair_hash(k & 0xFFFF)] = g;
            tris[tri_hash(k & 0xFF_FFFF)] = g;
            let h = long_hash(k);
            if bits[h / 64] & (1 << (h % 64)) != 0 && i >= 3 {
                self.confirm(data, i + 1, k, f);
            }
        }
    }

    /// The scan loop without short patterns: the anchor test only.
    fn confirm_only(&self, data: &[u8], f: &mut impl FnMut(u32)) {
        let bits = &*self.bits;
        let mut k: u32 = 0;
        for (i, &b) in data.iter().enumerate() {
            k = (k << 8) | u32::from(FOLD[b as usize]);
            let h = long_hash(k);
            if bits[h / 64] & (1 << (h % 64)) != 0 && i >= 3 {
                self.confirm(data, i + 1, k, f);
            }
        }
    }

    /// An anchor may end at `end`: compare the patterns that have it.
    fn confirm(&self, data: &[u8], end: usize, k: u32, f: &mut impl FnMut(u32)) {
        let Some(&(a, b)) = self.ranges.get(&k) else { return };
        let Some(with) = self.long.get(a as usize..b as usize) else { return };
        for (_, id) in with {
            let Some((p, off)) = self.pats.get(*id as usize) else { continue };
            // the anchor is p[off..off+4] and ends at `end`
            let Some(pstart) = (end - 4).checked_sub(*off) else { continue };
            if data.get(pstart..pstart + p.len()).is_some_and(|w| w.eq_ignore_ascii_case(p)) {
                f(*id);
            }
        }
    }

    /// Heap bytes used.
    pub fn memory_usage(&self) -> usize {
        self.short.iter().map(|v| v.len() * 8).sum::<usize>()
            + self.bits.len() * 8
            + self.long.len() * 8
            + self.ranges.capacity() * 13
            + self.pats.iter().map(|(p, _)| p.len() + 24).sum::<usize>()
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
