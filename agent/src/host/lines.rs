//! Reading lines of untrusted files with bounded memory.
//!
//! A line longer than the limit is cut there: the first `max` bytes are
//! returned (flagged `truncated`) and the rest of the line is skipped
//! without being kept in memory. Files ending in `.gz` are decompressed
//! (a rotated `auth.log.2.gz`).

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
};

/// One line read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Bytes consumed from the input, newline included.
    pub consumed: u64,
    /// The line was longer than the limit; the buffer holds its start.
    pub truncated: bool,
    /// Ended by a newline (false: the input ended first).
    pub complete: bool,
}

/// Reads one line into `buf` (cleared first, no newline), keeping at most
/// `max` bytes. `None` at end of input with nothing read.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    buf.clear();
    let mut consumed = 0u64;
    let mut truncated = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed > 0).then_some(Line { consumed, truncated, complete: false }));
        }
        let (take, done) = match memchr_nl(chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let data = &chunk[..if done { take - 1 } else { take }];
        let room = max.saturating_sub(buf.len());
        if data.len() > room {
            truncated = true;
        }
        buf.extend_from_slice(&data[..data.len().min(room)]);
        r.consume(take);
        consumed += take as u64;
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(Line { consumed, truncated, complete: true }));
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

/// Opens a log file for reading from the start, decompressing `.gz`.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let f = File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::with_capacity(64 * 1024, flate2::read::MultiGzDecoder::new(f))))
    } else {
        Ok(Box::new(BufReader::with_capacity(64 * 1024, f)))
    }
}

/// Reads the first bytes of a file (content sniffing).
pub fn head(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut data = vec![b'a'; 100];
        data.push(b'\n');
        data.extend_from_slice(b"short\r\nlast");
        let mut r = io::BufReader::with_capacity(7, &data[..]);
        let mut buf = Vec::new();
        let l = read_line(&mut r, &mut buf, 10).unwrap().unwrap();
        assert_eq!((l.consumed, l.truncated, l.complete, buf.len()), (101, true, true, 10));
        let l = read_line(&mut r, &mut buf, 10).unwrap().unwrap();
        assert_eq!((buf.as_slice(), l.truncated, l.consumed), (&b"short"[..], false, 7));
        let l = read_line(&mut r, &mut buf, 10).unwrap().unwrap();
        assert_eq!((buf.as_slice(), l.complete), (&b"last"[..], false));
        assert!(read_line(&mut r, &mut buf, 10).unwrap().is_none());
    }
}
