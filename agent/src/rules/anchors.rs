//! A multi-pattern prefilter for bulk data (packet payloads, streams, HTTP
//! bodies) whose cost per byte does not grow with the number of patterns.
//!
//! Short patterns (one to three bytes, frequent in rule sets: `|00|`,
//! `|0d 0a|`, `GET`) are found by recording, in one pass, which bytes, byte
//! pairs and (hashed) byte triples occur in the data, then looking the
//! patterns up: no per-occurrence work. Longer patterns are reduced to an
//! *anchor*, their four-byte window with the rarest bytes; at each position
//! a hashed bitmap says whether an anchor may end there, and only then the
//! patterns with that anchor are compared in full. Everything is ASCII
//! case-folded. The result is every pattern present (three-byte patterns
//! may also be reported when absent, hash collisions): what a prefilter
//! needs, since the rules are verified afterwards.
//!
//! On the ET Open payload patterns this runs at a few nanoseconds per byte,
//! where an Aho-Corasick automaton of the same patterns (2.5 MB, more than
//! the cache) spends most of its time in cache misses and in reporting the
//! short patterns again at every occurrence.

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
/// Entries of the per-scan triple table.
const TRI_LOG: u32 = 16;
/// Bits of the four-byte anchor bitmap (32 KiB; about 1% false hits per
/// position with 2,000 anchors).
const LONG_LOG: u32 = 18;

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

/// Per-engine scratch tables for [`Anchors::scan`], kept zeroed between
/// scans. Byte-per-entry tables: marking is a plain store, with no
/// read-modify-write chain between neighbouring positions.
#[derive(Debug)]
pub(crate) struct AnchorScratch {
    bytes: [u8; 256],
    pairs: Box<[u8; 1 << 16]>,
    tris: Box<[u8; 1 << TRI_LOG]>,
}

impl Default for AnchorScratch {
    fn default() -> Self {
        AnchorScratch { bytes: [0; 256], pairs: Box::new([0; 1 << 16]), tris: Box::new([0; 1 << TRI_LOG]) }
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
        let mut bits = Box::new([0u64; (1 << LONG_LOG) / 64]);
        for (k, _) in &long {
            let h = long_hash(*k);
            bits[h / 64] |= 1 << (h % 64);
        }
        Anchors { short, bits, long, pats }
    }

    /// Calls `f` with the id of every pattern present in `data` (and of
    /// three-byte patterns whose hash is present), possibly several times.
    pub fn scan(&self, data: &[u8], s: &mut AnchorScratch, mut f: impl FnMut(u32)) {
        let [s1, s2, s3] = &self.short;
        let (h1, h2, h3, h4) = (!s1.is_empty(), !s2.is_empty(), !s3.is_empty(), !self.long.is_empty());
        // The indexes below are in range by construction (masks and
        // shifts), so the fixed-size tables need no bounds checks.
        let mut k: u32 = 0;
        for (i, &b) in data.iter().enumerate() {
            let c = FOLD[b as usize];
            k = (k << 8) | u32::from(c);
            if h1 {
                s.bytes[c as usize] = 1;
            }
            if h2 && i >= 1 {
                s.pairs[(k & 0xFFFF) as usize] = 1;
            }
            if h3 && i >= 2 {
                s.tris[tri_hash(k & 0xFF_FFFF)] = 1;
            }
            if h4 && i >= 3 {
                let h = long_hash(k);
                if self.bits[h / 64] & (1 << (h % 64)) != 0 {
                    self.confirm(data, i + 1, k, &mut f);
                }
            }
        }
        for (key, id) in s1 {
            if s.bytes[(*key & 0xFF) as usize] != 0 {
                f(*id);
            }
        }
        for (key, id) in s2 {
            if s.pairs[(*key & 0xFFFF) as usize] != 0 {
                f(*id);
            }
        }
        for (key, id) in s3 {
            if s.tris[tri_hash(*key)] != 0 {
                f(*id);
            }
        }
        // leave the scratch zeroed: clear what this scan marked
        if h1 {
            s.bytes = [0; 256];
        }
        if h2 || h3 {
            let mut k: u32 = 0;
            for (i, &b) in data.iter().enumerate() {
                k = (k << 8) | u32::from(FOLD[b as usize]);
                if h2 && i >= 1 {
                    s.pairs[(k & 0xFFFF) as usize] = 0;
                }
                if h3 && i >= 2 {
                    s.tris[tri_hash(k & 0xFF_FFFF)] = 0;
                }
            }
        }
    }

    /// An anchor may end at `end`: compare the patterns that have it.
    fn confirm(&self, data: &[u8], end: usize, k: u32, f: &mut impl FnMut(u32)) {
        let start = self.long.partition_point(|(x, _)| *x < k);
        for (x, id) in self.long.iter().skip(start) {
            if *x != k {
                break;
            }
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
        a.scan(data, &mut s, |id| v.push(id));
        assert!(s.bytes == [0; 256] && s.pairs.iter().all(|w| *w == 0) && s.tris.iter().all(|w| *w == 0));
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
