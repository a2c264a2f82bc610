//! Syslog over TCP: octet counting (RFC 6587 §3.4.1, `LEN SP MSG`) and
//! newline framing (§3.4.2), chosen per frame as rsyslog does: a frame
//! that starts with a digit run followed by a space is octet-counted.
//! Also the per-sender rate limit. Pure: no I/O, time as a parameter.
//!
//! Messages over [`MAX_MESSAGE`] bytes are cut there (flagged
//! `truncated`): the rest of the frame is skipped without being kept in
//! memory, so a peer never makes the agent hold more than one message
//! per connection.

use std::net::IpAddr;

use hashlink::LinkedHashMap;

/// Longest message kept; longer ones are cut.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// One message cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    pub truncated: bool,
}

/// A TCP connection's framing state.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of an octet-counted frame still to skip (after a cut).
    skip: usize,
    /// Skipping the rest of a newline-framed message (after a cut).
    skip_line: bool,
}

impl Framer {
    /// Feeds bytes read from the connection; complete messages go to
    /// `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        if self.skip_line {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.skip_line = false;
                    data = &data[i + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(data);
        self.frames(out);
    }

    /// End of the stream: what is left is the last message.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        self.frames(out);
        let rest = std::mem::take(&mut self.buf);
        let rest = trim_end(&rest);
        if !rest.is_empty() && self.skip == 0 && !self.skip_line {
            out.push(Frame { data: rest.to_vec(), truncated: false });
        }
    }

    fn frames(&mut self, out: &mut Vec<Frame>) {
        let mut start = 0;
        loop {
            // separators between frames
            while start < self.buf.len() && matches!(self.buf[start], b'\n' | b'\r' | b'\0' | b' ') {
                start += 1;
            }
            let b = &self.buf[start..];
            if b.is_empty() {
                break;
            }
            match octet_count(b) {
                Count::Frame(header, len) => {
                    let keep = len.min(MAX_MESSAGE);
                    if b.len() < header + keep {
                        break; // need more bytes
                    }
                    out.push(Frame { data: b[header..header + keep].to_vec(), truncated: len > keep });
                    let have = b.len() - header - keep;
                    let rest = len - keep;
                    if rest > have {
                        self.skip = rest - have;
                        start = self.buf.len();
                        break;
                    }
                    start += header + keep + rest;
                }
                Count::NeedMore => break,
                Count::No => match b.iter().position(|c| *c == b'\n') {
                    Some(i) => {
                        let line = trim_end(&b[..i]);
                        if line.len() > MAX_MESSAGE {
                            out.push(Frame { data: line[..MAX_MESSAGE].to_vec(), truncated: true });
                        } else {
                            out.push(Frame { data: line.to_vec(), truncated: false });
                        }
                        start += i + 1;
                    }
                    None if b.len() > MAX_MESSAGE => {
                        out.push(Frame { data: b[..MAX_MESSAGE].to_vec(), truncated: true });
                        self.skip_line = true;
                        start = self.buf.len();
                        break;
                    }
                    None => break,
                },
            }
        }
        self.buf.drain(..start.min(self.buf.len()));
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\r' | b'\n' | b'\0') {
        end -= 1;
    }
    &b[..end]
}

enum Count {
    /// (header length with its space, message length)
    Frame(usize, usize),
    NeedMore,
    No,
}

fn octet_count(b: &[u8]) -> Count {
    if !matches!(b.first(), Some(b'1'..=b'9')) {
        return Count::No;
    }
    for (i, c) in b.iter().enumerate().take(10) {
        match c {
            b'0'..=b'9' => {}
            b' ' => {
                let len = std::str::from_utf8(&b[..i]).ok().and_then(|s| s.parse::<usize>().ok());
                return match len {
                    Some(n) if n > 0 => Count::Frame(i + 1, n),
                    _ => Count::No,
                };
            }
            _ => return Count::No,
        }
    }
    if b.len() < 10 { Count::NeedMore } else { Count::No }
}

/// Token bucket per sender: `rate` messages per second, up to `burst` at
/// once. Bounded: beyond `capacity` senders the least recently seen is
/// forgotten (counted; it starts again with a full bucket).
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: LinkedHashMap<IpAddr, (f64, f64)>,
    pub evictions: u64,
}

impl Limiter {
    pub fn new(rate: u32, burst: u32, capacity: usize) -> Limiter {
        Limiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(rate).max(1)),
            capacity: capacity.max(1),
            buckets: LinkedHashMap::new(),
            evictions: 0,
        }
    }

    /// Whether a message of `ip` at `now` (seconds, monotonic) passes.
    pub fn allow(&mut self, ip: IpAddr, now: f64) -> bool {
        if !self.buckets.contains_key(&ip) {
            while self.buckets.len() >= self.capacity {
                self.buckets.pop_front();
                self.evictions += 1;
            }
            self.buckets.insert(ip, (self.burst, now));
        }
        self.buckets.to_back(&ip);
        let (rate, burst) = (self.rate, self.burst);
        let Some((tokens, last)) = self.buckets.get_mut(&ip) else { return true };
        let elapsed = (now - *last).max(0.0);
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        f.finish(&mut out);
        out
    }

    fn texts(v: &[Frame]) -> Vec<String> {
        v.iter().map(|f| String::from_utf8_lossy(&f.data).into_owned()).collect()
    }

    #[test]
    fn octet_counting_and_newlines_mixed_and_split_anywhere() {
        let stream: &[u8] =
            b"11 <13>hello a24 <13>1 - h a - - - second\n<13>Dec  6 10:00:00 h p: third\r\n2026-12-06T10:00:00Z h p: iso\n5,,,1,em0,match\nlast";
        let whole = frames(&[stream]);
        assert_eq!(
            texts(&whole),
            [
                "<13>hello a",
                "<13>1 - h a - - - second",
                "<13>Dec  6 10:00:00 h p: third",
                "2026-12-06T10:00:00Z h p: iso",
                "5,,,1,em0,match",
                "last"
            ]
        );
        // byte by byte: the same frames
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes), whole);
        for cut in 1..stream.len() {
            assert_eq!(frames(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn long_messages_are_cut_and_the_rest_skipped() {
        let big = vec![b'x'; MAX_MESSAGE + 1000];
        let mut counted = format!("{} ", big.len()).into_bytes();
        counted.extend_from_slice(&big);
        counted.extend_from_slice(b"3 abc");
        let out = frames(&counted.chunks(4096).collect::<Vec<_>>());
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated && out[0].data.len() == MAX_MESSAGE);
        assert_eq!(out[1], Frame { data: b"abc".to_vec(), truncated: false });
        let mut line = big.clone();
        line.extend_from_slice(b"\nnext\n");
        let out = frames(&line.chunks(1000).collect::<Vec<_>>());
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated && out[0].data.len() == MAX_MESSAGE);
        assert_eq!(out[1].data, b"next");
        // a length that is not a frame's: read as a line
        assert_eq!(texts(&frames(&[b"0 zero\n99999999999 x\n"])), ["0 zero", "99999999999 x"]);
    }

    #[test]
    fn the_limiter_passes_the_burst_then_the_rate() {
        let mut l = Limiter::new(10, 20, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let passed = (0..100).filter(|_| l.allow(a, 0.0)).count();
        assert_eq!(passed, 20);
        // one second later: ten more
        let passed = (0..100).filter(|_| l.allow(a, 1.0)).count();
        assert_eq!(passed, 10);
        // others are not affected; beyond capacity the oldest is forgotten
        assert!(l.allow("10.0.0.2".parse().unwrap(), 1.0));
        assert!(l.allow("10.0.0.3".parse().unwrap(), 1.0));
        assert_eq!(l.evictions, 1);
    }
}
