//! Decoding of untrusted frames: link layer, IP, tunnels, transport.
//!
//! Never panics: anything malformed is a [`DecodeError`] the caller counts.
//!
//! * Link types: Ethernet (VLAN, QinQ, MPLS, PPPoE), raw IP, Linux SLL and
//!   SLL2, BSD loopback (DLT_NULL, DLT_LOOP).
//! * IPv4 and IPv6 (extension headers); a fragment is returned with
//!   [`Packet::frag`] set and its transport undecoded, for
//!   [`crate::defrag`] to reassemble and [`transport`] to finish.
//! * Tunnels are opened and the inner packet is returned: IP-in-IP (4in4,
//!   6in4, 4in6, 6in6), GRE (IP and transparent Ethernet), VXLAN (UDP 4789),
//!   Teredo (UDP 3544) and AYIYA (UDP 5072), up to [`MAX_TUNNEL_DEPTH`].

use std::net::IpAddr;

use etherparse::{Icmpv4Slice, Icmpv6Slice, LaxIpSlice, TcpSlice, UdpSlice};
use time::OffsetDateTime;

/// Link types (the pcap `LINKTYPE_*` / `DLT_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Null,
    Ethernet,
    RawIp,
    Loop,
    LinuxSll,
    Ipv4,
    Ipv6,
    LinuxSll2,
}

impl LinkType {
    pub fn from_linktype(v: u32) -> Option<LinkType> {
        Some(match v {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;
pub const MAX_TUNNEL_DEPTH: u8 = 4;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// TCP header fields needed for flow tracking and reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

/// An IP fragment, transport undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    /// Offset of this fragment's data in bytes.
    pub offset: u32,
    pub more: bool,
}

/// The network-layer facts of a packet, carried to [`transport`].
#[derive(Debug, Clone, Copy)]
pub struct IpInfo {
    pub ts: OffsetDateTime,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub tunnel: u8,
    pub len: usize,
}

/// What detection needs from one packet.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub ts: OffsetDateTime,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    pub ttl: u8,
    /// 0 unless TCP or UDP.
    pub sport: u16,
    pub dport: u16,
    pub tcp: Option<TcpInfo>,
    /// TCP flags byte (see `TCP_*`), 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Transport payload (the IP payload for other protocols and fragments).
    pub payload: &'a [u8],
    /// Set for IP fragments; the transport fields are then not decoded.
    pub frag: Option<Fragment>,
    /// Tunnel encapsulations opened to reach this packet.
    pub tunnel: u8,
    /// Bytes of the captured frame.
    pub len: usize,
}

impl<'a> Packet<'a> {
    fn from_ip(ip: &IpInfo, proto: u8, payload: &'a [u8]) -> Packet<'a> {
        Packet {
            ts: ip.ts,
            src: ip.src,
            dst: ip.dst,
            proto,
            ttl: ip.ttl,
            sport: 0,
            dport: 0,
            tcp: None,
            tcp_flags: 0,
            icmp: None,
            payload,
            frag: None,
            tunnel: ip.tunnel,
            len: ip.len,
        }
    }

    pub fn ip_info(&self) -> IpInfo {
        IpInfo {
            ts: self.ts,
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            tunnel: self.tunnel,
            len: self.len,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet truncated in the {0} header")]
    Truncated(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const ETH_MPLS: [u16; 2] = [0x8847, 0x8848];
const ETH_PPPOE: u16 = 0x8864;
const ETH_BRIDGE: u16 = 0x6558;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// `Ok(None)` for valid frames that carry no IP (ARP, LLDP, ...).
pub fn decode(link: LinkType, ts: OffsetDateTime, data: &[u8]) -> Result<Option<Packet<'_>>, DecodeError> {
    let len = data.len();
    match link {
        LinkType::Ethernet => ethernet(data, ts, 0, len),
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => ip(data, ts, 0, len),
        LinkType::Null | LinkType::Loop => {
            let hdr = data.get(..4).ok_or(DecodeError::Truncated("loopback"))?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]])
            } else {
                // host byte order of the capturing machine: accept both
                let le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                if le < 256 { le } else { u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) }
            };
            match family {
                2 | 10 | 24 | 28 | 30 => ip(&data[4..], ts, 0, len),
                _ => Ok(None),
            }
        }
        LinkType::LinuxSll => {
            let proto = be16(data, 14).ok_or(DecodeError::Truncated("Linux SLL"))?;
            network(proto, &data[16..], ts, 0, len)
        }
        LinkType::LinuxSll2 => {
            let proto = be16(data, 0).ok_or(DecodeError::Truncated("Linux SLL2"))?;
            if data.len() < 20 {
                return Err(DecodeError::Truncated("Linux SLL2"));
            }
            network(proto, &data[20..], ts, 0, len)
        }
    }
}

fn ethernet(
    data: &[u8],
    ts: OffsetDateTime,
    depth: u8,
    len: usize,
) -> Result<Option<Packet<'_>>, DecodeError> {
    let mut ether_type = be16(data, 12).ok_or(DecodeError::Truncated("ethernet"))?;
    let mut rest = &data[14..];
    let mut tags = 0;
    while ETH_VLAN.contains(&ether_type) {
        tags += 1;
        if tags > 4 {
            return Err(DecodeError::Malformed("VLAN stack"));
        }
        ether_type = be16(rest, 2).ok_or(DecodeError::Truncated("VLAN"))?;
        rest = &rest[4..];
    }
    network(ether_type, rest, ts, depth, len)
}

fn network(
    ether_type: u16,
    data: &[u8],
    ts: OffsetDateTime,
    depth: u8,
    len: usize,
) -> Result<Option<Packet<'_>>, DecodeError> {
    match ether_type {
        ETH_IPV4 | ETH_IPV6 => ip(data, ts, depth, len),
        t if ETH_MPLS.contains(&t) => {
            let mut rest = data;
            for _ in 0..8 {
                let label = rest.get(..4).ok_or(DecodeError::Truncated("MPLS"))?;
                rest = &rest[4..];
                if label[2] & 0x01 == 1 {
                    return match rest.first().map(|b| b >> 4) {
                        Some(4) | Some(6) => ip(rest, ts, depth, len),
                        _ => Ok(None),
                    };
                }
            }
            Err(DecodeError::Malformed("MPLS label stack"))
        }
        ETH_PPPOE => {
            let proto = be16(data, 6).ok_or(DecodeError::Truncated("PPPoE"))?;
            let rest = data.get(8..).ok_or(DecodeError::Truncated("PPPoE"))?;
            match proto {
                0x0021 | 0x0057 => ip(rest, ts, depth, len),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Decodes an IP packet (and what it carries).
pub fn ip(data: &[u8], ts: OffsetDateTime, depth: u8, len: usize) -> Result<Option<Packet<'_>>, DecodeError> {
    let (slice, _ext_err) = match data.first().map(|b| b >> 4) {
        Some(4) | Some(6) => LaxIpSlice::from_slice(data).map_err(|_| DecodeError::Malformed("IP header"))?,
        Some(_) => return Err(DecodeError::Malformed("IP version")),
        None => return Err(DecodeError::Truncated("IP")),
    };
    let (src, dst, ttl, frag) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let frag = (h.more_fragments() || h.fragments_offset().value() > 0).then(|| Fragment {
                id: u32::from(h.identification()),
                offset: u32::from(h.fragments_offset().value()) * 8,
                more: h.more_fragments(),
            });
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.ttl(), frag)
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            // The extension chain is walked here rather than with
            // etherparse's extension iterator, which indexes out of bounds
            // on some truncated chains (found by the `engine` fuzz target).
            let frag = v6.is_payload_fragmented().then(|| ipv6_fragment(data)).flatten();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), h.hop_limit(), frag)
        }
    };
    let info = IpInfo { ts, src, dst, ttl, tunnel: depth, len };
    let payload = slice.payload();
    if let Some(f) = frag {
        let mut p = Packet::from_ip(&info, payload.ip_number.0, payload.payload);
        p.frag = Some(f);
        return Ok(Some(p));
    }
    transport(&info, payload.ip_number.0, payload.payload)
}

/// The fragment header of an IPv6 packet, found by walking its extension
/// headers (hop-by-hop, routing, destination options, authentication).
fn ipv6_fragment(data: &[u8]) -> Option<Fragment> {
    let mut next = *data.get(6)?;
    let mut at = 40usize;
    for _ in 0..16 {
        match next {
            44 => {
                let f = data.get(at..at + 8)?;
                let off_flags = u16::from_be_bytes([f[2], f[3]]);
                return Some(Fragment {
                    id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    offset: u32::from(off_flags >> 3) * 8,
                    more: off_flags & 1 == 1,
                });
            }
            0 | 43 | 60 => {
                let h = data.get(at..at + 2)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            51 => {
                let h = data.get(at..at + 2)?;
                next = h[0];
                at += (usize::from(h[1]) + 2) * 4;
            }
            _ => return None,
        }
    }
    None
}

/// Decodes the transport layer of a (possibly reassembled) IP payload.
pub fn transport<'a>(info: &IpInfo, proto: u8, payload: &'a [u8]) -> Result<Option<Packet<'a>>, DecodeError> {
    let mut p = Packet::from_ip(info, proto, payload);
    let depth = info.tunnel;
    match proto {
        PROTO_TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|_| DecodeError::Truncated("TCP"))?;
            p.sport = tcp.source_port();
            p.dport = tcp.destination_port();
            p.tcp_flags = tcp_flags(&tcp);
            p.tcp = Some(TcpInfo {
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: p.tcp_flags,
                window: tcp.window_size(),
            });
            p.payload = tcp.payload();
        }
        PROTO_UDP => {
            let udp = UdpSlice::from_slice_lax(payload).map_err(|_| DecodeError::Truncated("UDP"))?;
            p.sport = udp.source_port();
            p.dport = udp.destination_port();
            p.payload = udp.payload();
            if depth < MAX_TUNNEL_DEPTH
                && let Some(inner) = udp_tunnel(&p, info)
            {
                return Ok(inner);
            }
        }
        PROTO_ICMP => {
            let icmp = Icmpv4Slice::from_slice(payload).map_err(|_| DecodeError::Truncated("ICMP"))?;
            p.icmp = Some((icmp.type_u8(), icmp.code_u8()));
            p.payload = icmp.payload();
        }
        PROTO_ICMPV6 => {
            let icmp = Icmpv6Slice::from_slice(payload).map_err(|_| DecodeError::Truncated("ICMPv6"))?;
            p.icmp = Some((icmp.type_u8(), icmp.code_u8()));
            p.payload = icmp.payload();
        }
        4 | 41 if depth < MAX_TUNNEL_DEPTH => return ip(payload, info.ts, depth + 1, info.len),
        PROTO_GRE if depth < MAX_TUNNEL_DEPTH => {
            if let Some(inner) = gre(payload, info)? {
                return Ok(Some(inner));
            }
        }
        _ => {}
    }
    Ok(Some(p))
}

fn gre<'a>(data: &'a [u8], info: &IpInfo) -> Result<Option<Packet<'a>>, DecodeError> {
    let flags = be16(data, 0).ok_or(DecodeError::Truncated("GRE"))?;
    let proto = be16(data, 2).ok_or(DecodeError::Truncated("GRE"))?;
    if flags & 0x0007 != 0 {
        return Ok(None); // enhanced GRE (PPTP) and others: not opened
    }
    let mut off = 4;
    if flags & 0x8000 != 0 {
        off += 4; // checksum + reserved
    }
    if flags & 0x2000 != 0 {
        off += 4; // key
    }
    if flags & 0x1000 != 0 {
        off += 4; // sequence
    }
    let inner = data.get(off..).ok_or(DecodeError::Truncated("GRE"))?;
    let depth = info.tunnel + 1;
    match proto {
        ETH_IPV4 | ETH_IPV6 => ip(inner, info.ts, depth, info.len),
        ETH_BRIDGE => ethernet(inner, info.ts, depth, info.len),
        _ => Ok(None),
    }
}

/// Opens VXLAN, Teredo and AYIYA; `None` when the datagram is not one.
fn udp_tunnel<'a>(p: &Packet<'a>, info: &IpInfo) -> Option<Option<Packet<'a>>> {
    let d = p.payload;
    let depth = info.tunnel + 1;
    let port = |n: u16| p.sport == n || p.dport == n;
    if p.dport == 4789 && d.len() > 8 + 14 && d[0] & 0x08 != 0 {
        return ethernet(&d[8..], info.ts, depth, info.len).ok();
    }
    if port(3544) {
        // Teredo: optional authentication (0x0001) and origin indication
        // (0x0000) headers, then IPv6.
        let mut rest = d;
        if be16(rest, 0) == Some(0x0001) {
            let id_len = usize::from(*rest.get(2)?);
            let au_len = usize::from(*rest.get(3)?);
            rest = rest.get(4 + id_len + au_len + 9..)?;
        }
        if be16(rest, 0) == Some(0x0000) {
            rest = rest.get(8..)?;
        }
        if rest.first().map(|b| b >> 4) == Some(6) && rest.len() >= 40 {
            let plen = usize::from(be16(rest, 4)?);
            if plen + 40 == rest.len() {
                return ip(rest, info.ts, depth, info.len).ok();
            }
        }
        return None;
    }
    if port(5072) && d.first() == Some(&0x11) && d.len() >= 12 {
        // AYIYA: identity length and type in the first byte (0x11: 16-byte
        // identity, IPv6), signature length in the second, next header at 3.
        let id_len = 1usize << (d[0] >> 4);
        let sig_len = usize::from(d[1] >> 4) * 4;
        let next = d[3];
        let inner = d.get(8 + id_len + sig_len..)?;
        if matches!(next, 4 | 41) {
            return ip(inner, info.ts, depth, info.len).ok();
        }
    }
    None
}

fn tcp_flags(tcp: &TcpSlice<'_>) -> u8 {
    (tcp.fin() as u8)
        | (tcp.syn() as u8) << 1
        | (tcp.rst() as u8) << 2
        | (tcp.psh() as u8) << 3
        | (tcp.ack() as u8) << 4
        | (tcp.urg() as u8) << 5
        | (tcp.ece() as u8) << 6
        | (tcp.cwr() as u8) << 7
}

/// Suricata's protocol names.
pub fn proto_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "TCP".into(),
        PROTO_UDP => "UDP".into(),
        PROTO_ICMP => "ICMP".into(),
        PROTO_ICMPV6 => "IPv6-ICMP".into(),
        PROTO_GRE => "GRE".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_ether() -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(etherparse::VlanId::try_new(10).unwrap())
            .ipv4([10, 0, 0, 1], [8, 8, 8, 8], 64)
            .udp(5353, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    #[test]
    fn ethernet_vlan_udp() {
        let data = udp_ether();
        let p = decode(LinkType::Ethernet, OffsetDateTime::UNIX_EPOCH, &data).unwrap().unwrap();
        assert_eq!(p.dst, "8.8.8.8".parse::<IpAddr>().unwrap());
        assert_eq!((p.proto, p.sport, p.dport, p.ttl), (PROTO_UDP, 5353, 53, 64));
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn every_truncation_is_handled() {
        let data = udp_ether();
        for link in
            [LinkType::Ethernet, LinkType::RawIp, LinkType::Null, LinkType::LinuxSll, LinkType::LinuxSll2]
        {
            for n in 0..data.len() {
                let _ = decode(link, OffsetDateTime::UNIX_EPOCH, &data[..n]);
            }
        }
    }

    #[test]
    fn null_and_sll_framing() {
        let mut ip6 = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 8).tcp(1, 443, 7, 100).write(&mut ip6, b"x").unwrap();
        let mut null = 30u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip6);
        let p = decode(LinkType::Null, OffsetDateTime::UNIX_EPOCH, &null).unwrap().unwrap();
        assert_eq!((p.proto, p.dport), (PROTO_TCP, 443));
        assert_eq!(p.tcp.unwrap().seq, 7);
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip6);
        let p = decode(LinkType::LinuxSll2, OffsetDateTime::UNIX_EPOCH, &sll2).unwrap().unwrap();
        assert_eq!(p.dport, 443);
    }

    #[test]
    fn tunnels_are_opened() {
        let mut inner = Vec::new();
        PacketBuilder::ipv4([192, 168, 0, 1], [192, 168, 0, 2], 9)
            .udp(1000, 53)
            .write(&mut inner, b"q")
            .unwrap();
        // IP-in-IP
        let mut outer = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .write(&mut outer, etherparse::IpNumber(4), &inner)
            .unwrap();
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, &outer).unwrap().unwrap();
        assert_eq!((p.src.to_string().as_str(), p.dport, p.tunnel), ("192.168.0.1", 53, 1));
        // GRE
        let mut gre = vec![0, 0, 0x08, 0x00];
        gre.extend_from_slice(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .write(&mut outer, etherparse::IpNumber(PROTO_GRE), &gre)
            .unwrap();
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, &outer).unwrap().unwrap();
        assert_eq!(p.dst.to_string(), "192.168.0.2");
        // VXLAN
        let mut eth = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 9)
            .udp(1, 2)
            .write(&mut eth, b"z")
            .unwrap();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&eth);
        let mut outer = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).udp(5555, 4789).write(&mut outer, &vx).unwrap();
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, &outer).unwrap().unwrap();
        assert_eq!((p.src.to_string().as_str(), p.dport), ("172.16.0.1", 2));
    }

    #[test]
    fn truncated_ipv6_extension_chains_do_not_panic() {
        // found by the engine fuzz target (etherparse's iterator indexed out
        // of bounds on this input)
        let mut frame = vec![0x60, 0x82, 0, 0, 0, 0, 0, 0];
        frame.extend_from_slice(&[0; 48]);
        frame.extend_from_slice(&[43, 0]);
        frame[6] = 0; // hop-by-hop first
        let _ = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, &frame);
        let crash = [
            96, 130, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 43, 0,
        ];
        for link in [LinkType::RawIp, LinkType::Ipv6] {
            let _ = decode(link, OffsetDateTime::UNIX_EPOCH, &crash);
        }
    }

    #[test]
    fn fragments_are_flagged_with_offsets() {
        let mut ip4 = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).udp(1, 53).write(&mut ip4, &[0u8; 64]).unwrap();
        // set "more fragments" and offset 0: the first fragment
        ip4[6] = 0x20;
        let p = decode(LinkType::RawIp, OffsetDateTime::UNIX_EPOCH, &ip4).unwrap().unwrap();
        assert_eq!(p.frag, Some(Fragment { id: 0, offset: 0, more: true }));
        assert_eq!(p.proto, PROTO_UDP);
        assert_eq!(p.sport, 0, "transport of fragments is decoded after reassembly");
    }
}
