//! IP fragment reassembly (IPv4 and IPv6).
//!
//! Fragments are keyed by (source, destination, protocol, identification).
//! A datagram is complete when the last fragment has been seen and the
//! pieces cover it without holes; overlapping data keeps what arrived first.
//! Bounded: at most [`DefragConfig::max_datagrams`] datagrams and
//! [`DefragConfig::max_bytes`] bytes pending; the oldest are evicted, and
//! datagrams older than the timeout (packet time) are dropped. Every drop is
//! counted in [`DefragStats`].

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::IpAddr,
};

use crate::decode::{IpInfo, Packet};

const MAX_DATAGRAM: u32 = 65_535;
const MAX_PIECES: usize = 512;

#[derive(Debug, Clone)]
pub struct DefragConfig {
    pub timeout_us: i64,
    pub max_datagrams: usize,
    pub max_bytes: usize,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { timeout_us: 30_000_000, max_datagrams: 10_000, max_bytes: 16 * 1024 * 1024 }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DefragStats {
    pub fragments: u64,
    pub reassembled: u64,
    /// Datagrams dropped incomplete after the timeout.
    pub timeouts: u64,
    /// Datagrams dropped to stay within memory limits.
    pub evicted: u64,
    /// Fragments that were inconsistent (beyond 64 KiB, too many pieces,
    /// conflicting ends).
    pub invalid: u64,
    pub overlaps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    id: u32,
}

struct Pending {
    first_us: i64,
    pieces: BTreeMap<u32, Vec<u8>>,
    end: Option<u32>,
    bytes: usize,
}

pub struct Defrag {
    cfg: DefragConfig,
    pending: HashMap<Key, Pending>,
    order: VecDeque<(Key, i64)>,
    bytes: usize,
    pub stats: DefragStats,
}

impl Defrag {
    pub fn new(cfg: DefragConfig) -> Defrag {
        Defrag {
            cfg,
            pending: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            stats: DefragStats::default(),
        }
    }

    /// Adds a fragment; returns the reassembled IP payload, its protocol and
    /// the network facts when the datagram is complete.
    pub fn add(&mut self, p: &Packet<'_>) -> Option<(IpInfo, u8, Vec<u8>)> {
        let frag = p.frag?;
        self.stats.fragments += 1;
        let now = canhgac_proto::timefmt::micros(p.ts);
        self.expire(now);
        let key = Key { src: p.src, dst: p.dst, proto: p.proto, id: frag.id };
        let end = frag.offset.saturating_add(p.payload.len() as u32);
        if end > MAX_DATAGRAM || (frag.more && !p.payload.len().is_multiple_of(8)) {
            self.stats.invalid += 1;
            return None;
        }
        if !self.pending.contains_key(&key) {
            self.make_room(p.payload.len());
            self.order.push_back((key.clone(), now));
            self.pending
                .insert(key.clone(), Pending { first_us: now, pieces: BTreeMap::new(), end: None, bytes: 0 });
        }
        let entry = self.pending.get_mut(&key)?;
        if !frag.more {
            if entry.end.is_some_and(|e| e != end) {
                self.stats.invalid += 1;
                return None;
            }
            entry.end = Some(end);
        }
        if entry.pieces.len() >= MAX_PIECES {
            self.stats.invalid += 1;
            return None;
        }
        match entry.pieces.entry(frag.offset) {
            std::collections::btree_map::Entry::Occupied(_) => self.stats.overlaps += 1,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(p.payload.to_vec());
                entry.bytes += p.payload.len();
                self.bytes += p.payload.len();
            }
        }
        let total = entry.end?;
        // Complete when the pieces cover 0..total without holes.
        let mut covered = 0u32;
        for (off, data) in &entry.pieces {
            if *off > covered {
                return None;
            }
            covered = covered.max(off + data.len() as u32);
        }
        if covered < total {
            return None;
        }
        let entry = self.pending.remove(&key)?;
        self.bytes -= entry.bytes;
        let mut out = vec![0u8; total as usize];
        let mut filled = vec![false; total as usize];
        let mut overlapped = false;
        for (off, data) in entry.pieces {
            for (i, b) in data.into_iter().enumerate() {
                let at = off as usize + i;
                if at >= out.len() {
                    break;
                }
                if filled[at] {
                    overlapped = true;
                    continue; // first arrival wins
                }
                out[at] = b;
                filled[at] = true;
            }
        }
        if overlapped {
            self.stats.overlaps += 1;
        }
        self.stats.reassembled += 1;
        Some((p.ip_info(), p.proto, out))
    }

    fn expire(&mut self, now: i64) {
        while let Some((key, at)) = self.order.front() {
            match self.pending.get(key) {
                Some(p) if p.first_us == *at && now - at > self.cfg.timeout_us => {
                    let key = key.clone();
                    self.drop_key(&key);
                    self.stats.timeouts += 1;
                }
                Some(p) if p.first_us == *at => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    fn make_room(&mut self, incoming: usize) {
        while self.pending.len() >= self.cfg.max_datagrams || self.bytes + incoming > self.cfg.max_bytes {
            let Some((key, at)) = self.order.pop_front() else { break };
            if self.pending.get(&key).is_some_and(|p| p.first_us == at) {
                self.drop_key(&key);
                self.stats.evicted += 1;
            }
        }
    }

    fn drop_key(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.bytes;
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Fragment, LinkType, decode, transport};
    use etherparse::PacketBuilder;
    use time::OffsetDateTime;

    fn udp_datagram(payload_len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(4000, 53).write(&mut v, &payload).unwrap();
        v
    }

    /// Splits an IPv4 datagram into fragments of `size` payload bytes.
    fn fragments(datagram: &[u8], size: usize) -> Vec<Vec<u8>> {
        let header = &datagram[..20];
        let body = &datagram[20..];
        body.chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let mut h = header.to_vec();
                let off = (i * size / 8) as u16;
                let more = (i + 1) * size < body.len();
                let flags = off | if more { 0x2000 } else { 0 };
                h[6..8].copy_from_slice(&flags.to_be_bytes());
                let total = (20 + chunk.len()) as u16;
                h[2..4].copy_from_slice(&total.to_be_bytes());
                h[4..6].copy_from_slice(&7u16.to_be_bytes());
                h[10..12].copy_from_slice(&[0, 0]);
                h.extend_from_slice(chunk);
                h
            })
            .collect()
    }

    fn feed(d: &mut Defrag, frame: &[u8]) -> Option<(IpInfo, u8, Vec<u8>)> {
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, frame).unwrap().unwrap();
        assert!(p.frag.is_some());
        d.add(&p)
    }

    #[test]
    fn reassembles_in_any_order() {
        let datagram = udp_datagram(100);
        let mut frags = fragments(&datagram, 24);
        frags.reverse();
        let mut d = Defrag::new(DefragConfig::default());
        let mut done = None;
        for f in &frags {
            if let Some(r) = feed(&mut d, f) {
                done = Some(r);
            }
        }
        let (info, proto, payload) = done.expect("complete");
        let p = transport(&info, proto, &payload).unwrap().unwrap();
        assert_eq!((p.sport, p.dport, p.payload.len()), (4000, 53, 100));
        assert_eq!(p.payload[99], 99);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.stats.reassembled, 1);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_memory_is_bounded() {
        let datagram = udp_datagram(100);
        let frags = fragments(&datagram, 24);
        let cfg = DefragConfig { timeout_us: 1_000_000, max_datagrams: 2, max_bytes: 1 << 20 };
        let mut d = Defrag::new(cfg);
        assert!(feed(&mut d, &frags[0]).is_none());
        // a later fragment of another datagram, after the timeout
        let mut late = frags[1].clone();
        late[4..6].copy_from_slice(&9u16.to_be_bytes());
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(5), &late)
            .unwrap()
            .unwrap();
        assert!(d.add(&p).is_none());
        assert_eq!(d.stats.timeouts, 1);
        for id in 10..20u16 {
            let mut f = frags[0].clone();
            f[4..6].copy_from_slice(&id.to_be_bytes());
            let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(5), &f)
                .unwrap()
                .unwrap();
            d.add(&p);
        }
        assert!(d.pending() <= 2);
        assert!(d.stats.evicted >= 8);
    }

    #[test]
    fn hostile_fragments_are_counted_not_trusted() {
        let mut d = Defrag::new(DefragConfig::default());
        let p = Packet {
            ts: OffsetDateTime::UNIX_EPOCH,
            src: "1.1.1.1".parse().unwrap(),
            dst: "2.2.2.2".parse().unwrap(),
            proto: 17,
            ttl: 1,
            sport: 0,
            dport: 0,
            tcp: None,
            tcp_flags: 0,
            icmp: None,
            payload: &[0; 16],
            frag: Some(Fragment { id: 1, offset: 65_528, more: false }),
            tunnel: 0,
            len: 0,
        };
        assert!(d.add(&p).is_none());
        assert_eq!(d.stats.invalid, 1);
    }
}
