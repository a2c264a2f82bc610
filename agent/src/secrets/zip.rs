//! A bounded ZIP reader: the central directory (ZIP64 sizes included), or
//! the local headers in order when the directory is missing (a truncated
//! archive or a stream cut short on the wire). Stored and deflated entries
//! only; encrypted entries are reported, never guessed at. Nothing is
//! allocated beyond what the caller's limit allows.

use std::io::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
    Other(u16),
}

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub name: &'a [u8],
    pub method: Method,
    pub encrypted: bool,
    /// The compressed bytes (for an entry found by its local header with
    /// a data descriptor: everything after its header).
    pub data: &'a [u8],
    pub declared_size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("not a zip archive")]
    NotZip,
    #[error("damaged zip archive")]
    Damaged,
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

fn method(m: u16) -> Method {
    match m {
        0 => Method::Stored,
        8 => Method::Deflated,
        o => Method::Other(o),
    }
}

/// The entries of an archive, at most `max_entries` (the second value
/// says whether more were left out).
pub fn entries(data: &[u8], max_entries: usize) -> Result<(Vec<Entry<'_>>, bool), ZipError> {
    if !data.starts_with(b"PK") {
        return Err(ZipError::NotZip);
    }
    match central(data, max_entries) {
        Some(r) => Ok(r),
        None => local_walk(data, max_entries),
    }
}

fn central(data: &[u8], max_entries: usize) -> Option<(Vec<Entry<'_>>, bool)> {
    let tail_start = data.len().saturating_sub(65_557);
    let eocd = memchr::memmem::rfind(&data[tail_start..], b"PK\x05\x06")? + tail_start;
    let mut count = u64::from(u16_at(data, eocd + 10)?);
    let mut cd = u64::from(u32_at(data, eocd + 16)?);
    if (count == 0xFFFF || cd == 0xFFFF_FFFF) && eocd >= 20 && u32_at(data, eocd - 20)? == 0x0706_4b50 {
        let z64 = usize::try_from(u64_at(data, eocd - 20 + 8)?).ok()?;
        if u32_at(data, z64)? == 0x0606_4b50 {
            count = u64_at(data, z64 + 32)?;
            cd = u64_at(data, z64 + 48)?;
        }
    }
    let mut at = usize::try_from(cd).ok()?;
    let mut out = Vec::new();
    for _ in 0..count {
        if out.len() >= max_entries {
            return Some((out, true));
        }
        if u32_at(data, at)? != 0x0201_4b50 {
            return if out.is_empty() { None } else { Some((out, false)) };
        }
        let flags = u16_at(data, at + 8)?;
        let m = u16_at(data, at + 10)?;
        let mut comp = u64::from(u32_at(data, at + 20)?);
        let mut size = u64::from(u32_at(data, at + 24)?);
        let name_len = usize::from(u16_at(data, at + 28)?);
        let extra_len = usize::from(u16_at(data, at + 30)?);
        let comment_len = usize::from(u16_at(data, at + 32)?);
        let mut local = u64::from(u32_at(data, at + 42)?);
        let name = data.get(at + 46..at + 46 + name_len)?;
        let extra = data.get(at + 46 + name_len..at + 46 + name_len + extra_len).unwrap_or_default();
        zip64_extra(extra, &mut size, &mut comp, &mut local);
        at += 46 + name_len + extra_len + comment_len;
        let Ok(local) = usize::try_from(local) else { continue };
        if u32_at(data, local) != Some(0x0403_4b50) {
            continue;
        }
        let Some(start) = u16_at(data, local + 26)
            .zip(u16_at(data, local + 28))
            .map(|(n, e)| local + 30 + usize::from(n) + usize::from(e))
        else {
            continue;
        };
        let end = usize::try_from(comp)
            .ok()
            .and_then(|c| start.checked_add(c))
            .unwrap_or(usize::MAX)
            .min(data.len());
        let body = data.get(start..end).unwrap_or_default();
        out.push(Entry {
            name,
            method: method(m),
            encrypted: flags & 1 != 0,
            data: body,
            declared_size: size,
        });
    }
    Some((out, false))
}

fn zip64_extra(extra: &[u8], size: &mut u64, comp: &mut u64, local: &mut u64) {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = u16_at(extra, i).unwrap_or(0);
        let len = usize::from(u16_at(extra, i + 2).unwrap_or(0));
        let body = extra.get(i + 4..i + 4 + len).unwrap_or_default();
        if id == 1 {
            let mut j = 0;
            for field in [size, comp, local] {
                if *field == 0xFFFF_FFFF {
                    if let Some(v) = u64_at(body, j) {
                        *field = v;
                    }
                    j += 8;
                }
            }
            return;
        }
        i += 4 + len;
    }
}

fn local_walk(data: &[u8], max_entries: usize) -> Result<(Vec<Entry<'_>>, bool), ZipError> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(sig) = u32_at(data, at) {
        if sig != 0x0403_4b50 {
            break;
        }
        if out.len() >= max_entries {
            return Ok((out, true));
        }
        let flags = u16_at(data, at + 6).ok_or(ZipError::Damaged)?;
        let m = u16_at(data, at + 8).ok_or(ZipError::Damaged)?;
        let comp = u32_at(data, at + 18).ok_or(ZipError::Damaged)? as usize;
        let size = u64::from(u32_at(data, at + 22).ok_or(ZipError::Damaged)?);
        let name_len = usize::from(u16_at(data, at + 26).ok_or(ZipError::Damaged)?);
        let extra_len = usize::from(u16_at(data, at + 28).ok_or(ZipError::Damaged)?);
        let name = data.get(at + 30..at + 30 + name_len).ok_or(ZipError::Damaged)?;
        let start = at + 30 + name_len + extra_len;
        let descriptor = flags & 8 != 0;
        let end = if descriptor || comp == 0xFFFF_FFFF {
            // sizes follow the data: the entry runs to the next header
            memchr::memmem::find(data.get(start..).unwrap_or_default(), b"PK\x03\x04")
                .map_or(data.len(), |p| start + p)
        } else {
            start.saturating_add(comp).min(data.len())
        };
        let body = data.get(start..end).unwrap_or_default();
        out.push(Entry {
            name,
            method: method(m),
            encrypted: flags & 1 != 0,
            data: body,
            declared_size: size,
        });
        at = end;
        if descriptor {
            // skip to the next local header (after the descriptor)
            match memchr::memmem::find(data.get(at..).unwrap_or_default(), b"PK\x03\x04") {
                Some(p) => at += p,
                None => break,
            }
        }
    }
    if out.is_empty() { Err(ZipError::Damaged) } else { Ok((out, false)) }
}

/// Reads at most `max` bytes from a decoder; `true` when there was more
/// (a limit hit), `Err` when the stream is damaged before anything came.
pub fn read_bounded(mut r: impl Read, max: u64) -> (Vec<u8>, bool, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, false, false),
            Ok(n) => {
                let room = usize::try_from(max.saturating_sub(out.len() as u64)).unwrap_or(usize::MAX);
                if n > room {
                    out.extend_from_slice(&buf[..room]);
                    return (out, true, false);
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (out, false, true),
        }
    }
}

/// The content of an entry, at most `max` bytes: (bytes, limit hit,
/// damaged).
pub fn extract(e: &Entry<'_>, max: u64) -> (Vec<u8>, bool, bool) {
    match e.method {
        Method::Stored => {
            let n = usize::try_from(max).unwrap_or(usize::MAX).min(e.data.len());
            (e.data[..n].to_vec(), n < e.data.len(), false)
        }
        Method::Deflated => read_bounded(flate2::read::DeflateDecoder::new(e.data), max),
        Method::Other(_) => (Vec::new(), false, true),
    }
}
