//! TCP session state and in-order stream reassembly.
//!
//! Each direction keeps the next expected sequence number and a bounded
//! buffer of out-of-order segments. Data is handed to the application layer
//! strictly in order and once: retransmitted bytes are trimmed, overlapping
//! data keeps the first copy. A hole is skipped (counted as a gap) as soon
//! as the receiver acknowledges data beyond it (the sender will not send it
//! again: the capture missed it), or when the out-of-order buffer exceeds
//! its cap; where each skipped hole falls in the delivered bytes is kept
//! ([`Stream::take_gaps`]) so that a parser can step over it, as
//! Suricata's app layer does with a stream gap.

use std::collections::BTreeMap;

use crate::decode::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpInfo};

/// Out-of-order bytes kept per direction before a hole is given up.
pub const MAX_PENDING: usize = 256 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    pub segments: u64,
    /// Bytes delivered in order.
    pub delivered: u64,
    /// Holes skipped (data never seen).
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Segments that were entirely retransmissions.
    pub retransmissions: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Absolute position (bytes from the first data byte) of the next
    /// expected byte, and the sequence number it has.
    next: Option<(u64, u32)>,
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    /// Highest position the receiver has acknowledged.
    acked: u64,
    /// Holes skipped since the last [`Stream::take_gaps`]: (offset in the
    /// bytes delivered since then, missing bytes).
    gaps_out: Vec<(usize, u64)>,
    pub fin: bool,
    pub stats: StreamStats,
}

impl Stream {
    fn init(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some((0, seq));
        }
    }

    /// Sets the next expected sequence number again, as long as no data was
    /// seen: a client may send several SYNs with different initial sequence
    /// numbers (SYN floods spoofing the real client, port reuse), and the
    /// SYN/ACK says which one the server took.
    fn resync(&mut self, seq: u32) {
        if self.stats.delivered == 0 && self.pending.is_empty() {
            self.next = Some((0, seq));
        }
    }

    /// Absolute position of `seq`, relative to the next expected byte.
    fn position(&self, seq: u32) -> Option<i64> {
        let (pos, next_seq) = self.next?;
        Some(pos as i64 + i64::from(seq.wrapping_sub(next_seq) as i32))
    }

    /// Feeds a segment; appends newly in-order bytes to `out`.
    pub fn segment(&mut self, seq: u32, data: &[u8], out: &mut Vec<u8>) {
        self.stats.segments += 1;
        if data.is_empty() {
            return;
        }
        self.init(seq);
        let Some(at) = self.position(seq) else { return };
        let Some((pos, _)) = self.next else { return };
        let end = at + data.len() as i64;
        if end <= pos as i64 {
            self.stats.retransmissions += 1;
            return;
        }
        if at > pos as i64 {
            // out of order: keep it (first copy wins)
            let at = at as u64;
            if let std::collections::btree_map::Entry::Vacant(e) = self.pending.entry(at) {
                self.pending_bytes += data.len();
                e.insert(data.to_vec());
            }
            if self.pending_bytes > MAX_PENDING || self.hole_acknowledged() {
                self.skip_hole(out);
            }
            return;
        }
        let skip = (pos as i64 - at) as usize;
        self.deliver(&data[skip..], out);
        self.drain_pending(out);
    }

    fn deliver(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if let Some((pos, seq)) = self.next.as_mut() {
            out.extend_from_slice(data);
            *pos += data.len() as u64;
            *seq = seq.wrapping_add(data.len() as u32);
            self.stats.delivered += data.len() as u64;
        }
    }

    fn drain_pending(&mut self, out: &mut Vec<u8>) {
        while let Some((&at, _)) = self.pending.first_key_value() {
            let Some((pos, _)) = self.next else { return };
            if at > pos {
                return;
            }
            let Some(data) = self.pending.remove(&at) else { return };
            self.pending_bytes -= data.len();
            let end = at + data.len() as u64;
            if end > pos {
                let skip = (pos - at) as usize;
                self.deliver(&data[skip..], out);
            }
        }
    }

    /// The receiver acknowledged `ack`, a sequence number of this
    /// direction: a hole it covers will never be filled, and is skipped
    /// when this direction's next segment arrives.
    pub fn acked(&mut self, ack: u32) {
        if let Some(at) = self.position(ack)
            && at > 0
        {
            self.acked = self.acked.max(at as u64);
        }
    }

    /// Whether the receiver acknowledged the whole hole before the first
    /// pending segment.
    fn hole_acknowledged(&self) -> bool {
        match (self.pending.first_key_value(), self.next) {
            (Some((&at, _)), Some((pos, _))) => at > pos && self.acked >= at,
            _ => false,
        }
    }

    /// Where holes were skipped in the bytes delivered since the last call:
    /// (offset, missing bytes), in order.
    pub fn take_gaps(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.gaps_out)
    }

    /// Gives up the hole before the first pending segment.
    fn skip_hole(&mut self, out: &mut Vec<u8>) {
        let Some((&at, _)) = self.pending.first_key_value() else { return };
        if let Some((pos, seq)) = self.next.as_mut()
            && at > *pos
        {
            let gap = at - *pos;
            *seq = seq.wrapping_add(gap as u32);
            *pos = at;
            self.stats.gaps += 1;
            self.stats.gap_bytes += gap;
            self.gaps_out.push((out.len(), gap));
        }
        self.drain_pending(out);
    }

    /// At the end of the flow: deliver what is pending across holes.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        while !self.pending.is_empty() {
            self.skip_hole(out);
        }
    }

    /// Bytes held out of order.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
}

/// Connection state as Suricata's `flow.state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    New,
    SynSent,
    SynRecv,
    Established,
    Closing,
    Closed,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::New | TcpState::SynSent | TcpState::SynRecv => "new",
            TcpState::Established => "established",
            TcpState::Closing => "closed",
            TcpState::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TcpSession {
    pub state: TcpState,
    /// Index 0: client to server, 1: server to client.
    pub streams: [Stream; 2],
    /// Flags seen per direction (Suricata's tcp.tcp_flags_ts/tc).
    pub flags: [u8; 2],
    pub rst: bool,
    /// The connection reached the established state at some point.
    pub was_established: bool,
}

impl Default for TcpSession {
    fn default() -> Self {
        TcpSession {
            state: TcpState::New,
            streams: [Stream::default(), Stream::default()],
            flags: [0, 0],
            rst: false,
            was_established: false,
        }
    }
}

impl TcpSession {
    /// Updates the state with a segment in direction `dir` (0 to server)
    /// and reassembles its payload into `out`.
    pub fn packet(&mut self, dir: usize, tcp: &TcpInfo, payload: &[u8], out: &mut Vec<u8>) {
        let f = tcp.flags;
        self.flags[dir] |= f;
        if f & TCP_SYN != 0 {
            // SYN consumes one sequence number; the last SYN before data
            // counts, and a SYN/ACK's acknowledgement names the peer's
            if f & TCP_ACK != 0 {
                self.streams[1 - dir].resync(tcp.ack);
            }
            self.streams[dir].resync(tcp.seq.wrapping_add(1));
            self.state = match (self.state, dir, f & TCP_ACK != 0) {
                (TcpState::New, 0, false) => TcpState::SynSent,
                (TcpState::New | TcpState::SynSent, 1, true) => TcpState::SynRecv,
                (s, _, _) => s,
            };
        } else if f & TCP_ACK != 0 && dir == 0 && self.state == TcpState::SynRecv {
            self.state = TcpState::Established;
        } else if self.state == TcpState::New && !payload.is_empty() {
            // picked up in the middle of a connection
            self.state = TcpState::Established;
        }
        if self.state == TcpState::Established {
            self.was_established = true;
        }
        if f & TCP_RST != 0 {
            self.rst = true;
            self.state = TcpState::Closed;
        }
        if f & TCP_ACK != 0 {
            self.streams[1 - dir].acked(tcp.ack);
        }
        if f & TCP_SYN == 0 {
            self.streams[dir].segment(tcp.seq, payload, out);
        }
        if f & TCP_FIN != 0 {
            self.streams[dir].fin = true;
            if self.state == TcpState::Established {
                self.state = TcpState::Closing;
            }
            if self.streams[0].fin && self.streams[1].fin {
                self.state = TcpState::Closed;
            }
        }
    }

    /// Handshake completed (or picked up with data), even if closed since.
    pub fn established(&self) -> bool {
        self.was_established || matches!(self.state, TcpState::Established | TcpState::Closing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut Stream, seq: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        s.segment(seq, data, &mut out);
        out
    }

    #[test]
    fn in_order_out_of_order_and_retransmission() {
        let mut s = Stream::default();
        s.init(1000);
        assert_eq!(feed(&mut s, 1000, b"abc"), b"abc");
        assert_eq!(feed(&mut s, 1006, b"ghi"), b"");
        assert_eq!(feed(&mut s, 1003, b"def"), b"defghi");
        assert_eq!(feed(&mut s, 1000, b"abcdef"), b"", "retransmission");
        assert_eq!(feed(&mut s, 1007, b"hijk"), b"jk", "partial overlap trimmed");
        assert_eq!(s.stats.delivered, 11);
    }

    #[test]
    fn sequence_wraps_around() {
        let mut s = Stream::default();
        s.init(u32::MAX - 1);
        assert_eq!(feed(&mut s, u32::MAX - 1, b"ab"), b"ab");
        assert_eq!(feed(&mut s, 0, b"cd"), b"cd");
    }

    /// The capture missed a segment the receiver got: once the receiver
    /// acknowledges past the hole, the next segment skips it, and the gap's
    /// place in the delivered bytes is known.
    #[test]
    fn an_acknowledged_hole_is_skipped_at_once_and_marked() {
        let mut s = Stream::default();
        s.init(1000);
        assert_eq!(feed(&mut s, 1000, b"abc"), b"abc");
        // 1003..1010 never seen; 1010.. arrives out of order and waits
        assert_eq!(feed(&mut s, 1010, b"klm"), b"");
        s.acked(1008); // part of the hole only: it may still come
        assert_eq!(feed(&mut s, 1013, b"nop"), b"");
        assert!(s.take_gaps().is_empty());
        s.acked(1016);
        assert_eq!(feed(&mut s, 1016, b"qr"), b"klmnopqr");
        assert_eq!(s.take_gaps(), vec![(0, 7)]);
        assert_eq!((s.stats.gaps, s.stats.gap_bytes), (1, 7));
        // a retransmission of the lost bytes now is old data
        assert_eq!(feed(&mut s, 1003, b"defghij"), b"");
        assert!(s.take_gaps().is_empty());
    }

    #[test]
    fn holes_are_skipped_when_the_buffer_is_full() {
        let mut s = Stream::default();
        s.init(0);
        let chunk = vec![b'x'; 64 * 1024];
        let mut out = Vec::new();
        for i in 1..=5u32 {
            s.segment(100 + i * chunk.len() as u32, &chunk, &mut out);
        }
        assert!(!out.is_empty(), "data after the hole is delivered");
        assert_eq!(s.stats.gaps, 1);
        assert_eq!(s.take_gaps(), vec![(0, 100 + chunk.len() as u64)]);
        assert!(s.pending_bytes() <= MAX_PENDING);
    }

    #[test]
    fn handshake_states() {
        let mut t = TcpSession::default();
        let mut out = Vec::new();
        let info = |seq, ack, flags| TcpInfo { seq, ack, flags, window: 0 };
        t.packet(0, &info(10, 0, TCP_SYN), b"", &mut out);
        t.packet(1, &info(50, 11, TCP_SYN | TCP_ACK), b"", &mut out);
        t.packet(0, &info(11, 51, TCP_ACK), b"", &mut out);
        assert!(t.established());
        t.packet(0, &info(11, 51, TCP_ACK | crate::decode::TCP_PSH), b"GET /", &mut out);
        assert_eq!(out, b"GET /");
        t.packet(0, &info(16, 51, TCP_FIN | TCP_ACK), b"", &mut out);
        t.packet(1, &info(51, 17, TCP_FIN | TCP_ACK), b"", &mut out);
        assert_eq!(t.state, TcpState::Closed);
    }

    /// suricata-verify bug-7657: spoofed SYNs with random sequence numbers
    /// around the real one; the SYN/ACK's acknowledgement picks the stream.
    #[test]
    fn the_syn_ack_names_the_client_isn_among_many_syns() {
        let info = |seq, ack, flags| TcpInfo { seq, ack, flags, window: 0 };
        for last_syn in [4_291_095_205u32, 1_492_084_391] {
            let mut t = TcpSession::default();
            let mut out = Vec::new();
            for seq in [1_317_897_315u32, 4_291_095_205, 56_964_388, last_syn] {
                t.packet(0, &info(seq, 0, TCP_SYN), b"", &mut out);
            }
            t.packet(1, &info(1_611_862_386, 4_291_095_206, TCP_SYN | TCP_ACK), b"", &mut out);
            t.packet(0, &info(4_291_095_206, 1_611_862_387, TCP_ACK), b"", &mut out);
            t.packet(0, &info(4_291_095_206, 1_611_862_387, TCP_ACK), b"POST / HTTP/1.1\r\n", &mut out);
            // a late spoofed SYN after data changes nothing
            t.packet(0, &info(7, 0, TCP_SYN), b"", &mut out);
            t.packet(0, &info(4_291_095_223, 1_611_862_387, TCP_ACK), b"Host: a\r\n", &mut out);
            assert_eq!(out, b"POST / HTTP/1.1\r\nHost: a\r\n");
            assert_eq!(t.streams[0].stats.gaps, 0);
        }
    }
}
