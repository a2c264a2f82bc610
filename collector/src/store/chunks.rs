//! The value layouts that let ingest write a few large values per batch
//! instead of four small ones per record (schema 2).
//!
//! - **Record chunks** (`alert_chunks`, `event_chunks`): the records one
//!   transaction stored, keyed by the first one's cursor. The value is a
//!   run of entries `cursor (u64 BE), length (u32 BE), RecordRec`, in
//!   cursor order. A chunk's key never changes; retention rewrites the
//!   value without the records it deletes (or removes the chunk), so the
//!   chunk holding cursor `c` is always the last key `<= c`.
//! - **Time indexes** (`alert_times`, `alert_agency_times`): per chunk and
//!   per second of event time, the `(time, cursor)` pairs of its alerts;
//!   the key is `prefix, second (sortable i64 BE), chunk key`, the value
//!   a run of `time (sortable i64 BE), cursor (u64 BE)`. A listing reads
//!   a second's entries from every chunk, sorts them and goes on to the
//!   second before.
//! - **Sequence ranges** (`seq_ranges`): the (agent, seq) already stored or
//!   quarantined, as ranges: key `agent, 0x00, first seq (u64 BE)`, value
//!   the last seq (u64 BE). Ranges never overlap. An agent sends its seqs
//!   in order, so a batch usually extends the agent's last range: one
//!   write per batch.

use std::collections::BTreeMap;

use super::{StoreError, sortable, u64_of, unsortable};

/// Bytes of an entry's header in a record chunk.
const HEADER: usize = 12;

/// A chunk is closed once it holds this many bytes, so that a sled leaf
/// (up to 16 keys) of chunks stays a few MiB: a batch of 500 alerts of
/// ~700 bytes makes six chunks.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;

/// A record chunk being built.
#[derive(Default)]
pub(super) struct ChunkWriter {
    first: Option<u64>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    pub(super) fn push(&mut self, cursor: u64, rec: &[u8]) {
        self.first.get_or_insert(cursor);
        self.buf.extend_from_slice(&cursor.to_be_bytes());
        self.buf.extend_from_slice(&(rec.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(rec);
    }

    /// Bytes pushed so far.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The first cursor pushed.
    pub(super) fn first(&self) -> Option<u64> {
        self.first
    }

    /// The chunk's key and value; `None` when nothing was pushed.
    pub(super) fn finish(self) -> Option<([u8; 8], Vec<u8>)> {
        Some((self.first?.to_be_bytes(), self.buf))
    }
}

/// The entries of a record chunk: `(cursor, encoded RecordRec)`.
pub(super) fn entries<'a>(
    tree: &'static str,
    key: &'a [u8],
    mut v: &'a [u8],
) -> impl Iterator<Item = Result<(u64, &'a [u8]), StoreError>> + 'a {
    std::iter::from_fn(move || {
        if v.is_empty() {
            return None;
        }
        let bad = |reason: &str| StoreError::Corrupt {
            tree,
            key: format!("chunk {}", u64_of(key)),
            reason: reason.into(),
        };
        if v.len() < HEADER {
            v = &[];
            return Some(Err(bad("entry header cut short")));
        }
        let cursor = u64_of(&v[..8]);
        let len = u32::from_be_bytes([v[8], v[9], v[10], v[11]]) as usize;
        if v.len() < HEADER + len {
            v = &[];
            return Some(Err(bad("entry cut short")));
        }
        let rec = &v[HEADER..HEADER + len];
        v = &v[HEADER + len..];
        Some(Ok((cursor, rec)))
    })
}

/// The encoded record with `cursor` in a chunk, if it is there.
pub(super) fn find<'a>(
    tree: &'static str,
    key: &'a [u8],
    v: &'a [u8],
    cursor: u64,
) -> Result<Option<&'a [u8]>, StoreError> {
    for e in entries(tree, key, v) {
        let (c, rec) = e?;
        if c == cursor {
            return Ok(Some(rec));
        }
        if c > cursor {
            break;
        }
    }
    Ok(None)
}

/// The highest cursor in a chunk tree (0: none).
pub(super) fn last_cursor(name: &'static str, tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.last()? {
        Some((k, v)) => last_in(name, &k, &v),
        None => Ok(0),
    }
}

/// The highest cursor in one chunk (its key's when it is empty).
pub(super) fn last_in(name: &'static str, key: &[u8], v: &[u8]) -> Result<u64, StoreError> {
    let mut last = u64_of(key);
    for e in entries(name, key, v) {
        last = last.max(e?.0);
    }
    Ok(last)
}

/// The chunk that holds `cursor`, if any: the last key `<= cursor`.
pub(super) fn chunk_holding(
    tree: &sled::Tree,
    cursor: u64,
) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
    Ok(tree.range(..=cursor.to_be_bytes()).next_back().transpose()?)
}

/// The encoded record with `cursor` in a chunk tree.
pub(super) fn get(name: &'static str, tree: &sled::Tree, cursor: u64) -> Result<Option<Vec<u8>>, StoreError> {
    match chunk_holding(tree, cursor)? {
        Some((k, v)) => Ok(find(name, &k, &v, cursor)?.map(<[u8]>::to_vec)),
        None => Ok(None),
    }
}

/// Records with a cursor above `after`, in cursor order, at most `limit`.
pub(super) fn after(
    name: &'static str,
    tree: &sled::Tree,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, super::RecordRec)>, StoreError> {
    let first = after.saturating_add(1);
    let start = match chunk_holding(tree, first)? {
        Some((k, _)) => u64_of(&k),
        None => first,
    };
    let mut out = Vec::new();
    for kv in tree.range(start.to_be_bytes()..) {
        let (k, v) = kv?;
        for e in entries(name, &k, &v) {
            let (c, rec) = e?;
            if c < first {
                continue;
            }
            if out.len() == limit {
                return Ok(out);
            }
            out.push((c, super::decode(name, &c.to_be_bytes(), rec)?));
        }
    }
    Ok(out)
}

/// Width of a time index bucket: one second of event time.
const BUCKET_US: i64 = 1_000_000;

pub(super) fn bucket_of(time_us: i64) -> i64 {
    time_us.div_euclid(BUCKET_US)
}

/// Key of a time index entry: `prefix, second, chunk key`.
pub(super) fn index_key(prefix: &[u8], bucket: i64, chunk: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&sortable(bucket).to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// The time index entries of one chunk, by second.
#[derive(Default)]
pub(super) struct IndexWriter {
    buckets: BTreeMap<i64, Vec<u8>>,
}

impl IndexWriter {
    pub(super) fn push(&mut self, time_us: i64, cursor: u64) {
        let v = self.buckets.entry(bucket_of(time_us)).or_default();
        v.extend_from_slice(&sortable(time_us).to_be_bytes());
        v.extend_from_slice(&cursor.to_be_bytes());
    }

    /// `(key, value)` per second, for the chunk keyed `chunk`.
    pub(super) fn finish(self, prefix: &[u8], chunk: u64) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
        self.buckets.into_iter().map(move |(b, v)| (index_key(prefix, b, chunk), v))
    }
}

/// The `(time, cursor)` pairs of a time index value.
pub(super) fn index_entries(v: &[u8]) -> impl Iterator<Item = (i64, u64)> + '_ {
    v.chunks_exact(16).map(|e| (unsortable(u64_of(&e[..8])), u64_of(&e[8..])))
}

/// The second and the chunk key of a time index key with `prefix`.
pub(super) fn index_key_parts(prefix: &[u8], k: &[u8]) -> Option<(i64, u64)> {
    let tail = k.get(prefix.len()..)?;
    (tail.len() == 16).then(|| (unsortable(u64_of(&tail[..8])), u64_of(&tail[8..])))
}

/// `agent, 0x00, seq (u64 BE)`: a sequence range's key.
pub(super) fn range_key(agent_id: &str, seq: u64) -> Vec<u8> {
    super::dedupe_key(agent_id, seq)
}

/// The sequence range of `agent_id` that holds `seq`: `(first, last)`.
pub(super) fn range_holding(
    tree: &sled::Tree,
    agent_id: &str,
    seq: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let lo = range_key(agent_id, 0);
    let hi = range_key(agent_id, seq);
    match tree.range(lo..=hi).next_back() {
        Some(kv) => {
            let (k, v) = kv?;
            let (first, last) = (u64_of(&k[k.len() - 8..]), u64_of(&v));
            Ok((last >= seq).then_some((first, last)))
        }
        None => Ok(None),
    }
}

/// Runs of consecutive numbers in an ascending list: `(first, last)`.
pub(super) fn runs(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in sorted {
        match out.last_mut() {
            Some((_, last)) if s == *last + 1 => *last = s,
            Some((_, last)) if s == *last => {}
            _ => out.push((s, s)),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_gives_back_its_entries_and_finds_each() {
        let mut w = ChunkWriter::default();
        w.push(7, b"seven");
        w.push(9, b"");
        w.push(12, b"twelve");
        let (k, v) = w.finish().unwrap();
        assert_eq!(u64_of(&k), 7);
        let got: Vec<(u64, Vec<u8>)> = entries("alert_chunks", &k, &v)
            .map(|e| e.map(|(c, r)| (c, r.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, vec![(7, b"seven".to_vec()), (9, vec![]), (12, b"twelve".to_vec())]);
        assert_eq!(find("alert_chunks", &k, &v, 12).unwrap(), Some(&b"twelve"[..]));
        assert_eq!(find("alert_chunks", &k, &v, 8).unwrap(), None);
        assert!(ChunkWriter::default().finish().is_none());
    }

    #[test]
    fn a_damaged_chunk_is_an_error_naming_it() {
        let mut w = ChunkWriter::default();
        w.push(3, b"abcdef");
        let (k, v) = w.finish().unwrap();
        for cut in [5, HEADER + 2] {
            let r: Result<Vec<_>, _> = entries("alert_chunks", &k, &v[..cut]).collect();
            let e = r.unwrap_err().to_string();
            assert!(e.contains("alert_chunks") && e.contains("chunk 3"), "{e}");
        }
    }

    #[test]
    fn index_entries_go_to_their_second() {
        let mut w = IndexWriter::default();
        for (t, c) in [(1_500_000, 1), (-1, 2), (1_000_000, 3), (2_000_001, 4)] {
            w.push(t, c);
        }
        let kv: Vec<_> = w.finish(b"A\0", 1).collect();
        let seconds: Vec<i64> = kv.iter().map(|(k, _)| index_key_parts(b"A\0", k).unwrap().0).collect();
        assert_eq!(seconds, vec![-1, 1, 2], "keys sort by second, negative times first");
        assert!(kv.windows(2).all(|w| w[0].0 < w[1].0));
        let second_one: Vec<_> = index_entries(&kv[1].1).collect();
        assert_eq!(second_one, vec![(1_500_000, 1), (1_000_000, 3)]);
    }

    #[test]
    fn runs_of_sequence_numbers() {
        assert_eq!(runs(&[1, 2, 3, 5, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
        assert!(runs(&[]).is_empty());
    }
}
