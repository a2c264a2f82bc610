//! Link-layer framing and IP/TCP/UDP/ICMP decoding of untrusted packets.
//!
//! Never panics: anything malformed is a [`DecodeError`] the caller counts.
//! Link types: Ethernet (with VLAN/QinQ), raw IP, Linux SLL and SLL2,
//! BSD loopback (DLT_NULL, DLT_LOOP). IP fragments other than the first
//! carry no transport header and are decoded as IP only (reassembly comes
//! with the full network sensor).

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
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
pub const PROTO_ICMPV6: u8 = 58;

/// What detection needs from one packet.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub ts: OffsetDateTime,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// 0 unless TCP or UDP.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub tcp_flags: u8,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Transport payload (or IP payload for other protocols).
    pub payload: &'a [u8],
    /// Non-first fragment or fragmented payload.
    pub fragment: bool,
    /// Bytes on the wire (captured length).
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet truncated in the {0} header")]
    Truncated(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// `Ok(None)` for valid frames that carry no IP (ARP, LLDP, ...).
pub fn decode(link: LinkType, ts: OffsetDateTime, data: &[u8]) -> Result<Option<Packet<'_>>, DecodeError> {
    let sliced = match link {
        LinkType::Ethernet => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| DecodeError::Truncated("ethernet"))?
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => match data.first().map(|b| b >> 4) {
            Some(4) | Some(6) => {
                LaxSlicedPacket::from_ip(data).map_err(|_| DecodeError::Malformed("IP header"))?
            }
            Some(_) => return Err(DecodeError::Malformed("IP version")),
            None => return Err(DecodeError::Truncated("IP")),
        },
        LinkType::Null | LinkType::Loop => {
            let hdr = data.get(..4).ok_or(DecodeError::Truncated("loopback"))?;
            let family = if link == LinkType::Loop {
                u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]])
            } else {
                // host byte order of the capturing machine: accept both
                let le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                if le < 256 { le } else { u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) }
            };
            let ether_type = match family {
                2 => EtherType::IPV4,
                10 | 24 | 28 | 30 => EtherType::IPV6,
                _ => return Ok(None),
            };
            LaxSlicedPacket::from_ether_type(ether_type, &data[4..])
        }
        LinkType::LinuxSll => {
            let hdr = data.get(..16).ok_or(DecodeError::Truncated("Linux SLL"))?;
            let proto = u16::from_be_bytes([hdr[14], hdr[15]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &data[16..])
        }
        LinkType::LinuxSll2 => {
            let hdr = data.get(..20).ok_or(DecodeError::Truncated("Linux SLL2"))?;
            let proto = u16::from_be_bytes([hdr[0], hdr[1]]);
            LaxSlicedPacket::from_ether_type(EtherType(proto), &data[20..])
        }
    };
    packet_from(sliced, ts, data.len())
}

fn packet_from(
    sliced: LaxSlicedPacket<'_>,
    ts: OffsetDateTime,
    len: usize,
) -> Result<Option<Packet<'_>>, DecodeError> {
    let (src, dst, ip_payload) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            (IpAddr::V4(v4.header().source_addr()), IpAddr::V4(v4.header().destination_addr()), v4.payload())
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            (IpAddr::V6(v6.header().source_addr()), IpAddr::V6(v6.header().destination_addr()), v6.payload())
        }
        Some(LaxNetSlice::Arp(_)) | None => {
            return match sliced.stop_err {
                Some(_) if sliced.link.is_some() && sliced.net.is_none() => {
                    Err(DecodeError::Malformed("network layer"))
                }
                _ => Ok(None),
            };
        }
    };
    let mut p = Packet {
        ts,
        src,
        dst,
        proto: ip_payload.ip_number.0,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp: None,
        payload: ip_payload.payload,
        fragment: ip_payload.fragmented,
        len,
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            p.sport = tcp.source_port();
            p.dport = tcp.destination_port();
            p.tcp_flags = tcp_flags(tcp);
            p.payload = tcp.payload();
        }
        Some(TransportSlice::Udp(udp)) => {
            p.sport = udp.source_port();
            p.dport = udp.destination_port();
            p.payload = udp.payload();
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            p.icmp = Some((icmp.type_u8(), icmp.code_u8()));
            p.payload = icmp.payload();
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            p.icmp = Some((icmp.type_u8(), icmp.code_u8()));
            p.payload = icmp.payload();
        }
        _ => {
            if !p.fragment && matches!(p.proto, PROTO_TCP | PROTO_UDP) {
                return Err(DecodeError::Truncated(if p.proto == PROTO_TCP { "TCP" } else { "UDP" }));
            }
        }
    }
    Ok(Some(p))
}

fn tcp_flags(tcp: &etherparse::TcpSlice<'_>) -> u8 {
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
        47 => "GRE".into(),
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
        assert_eq!((p.proto, p.sport, p.dport), (PROTO_UDP, 5353, 53));
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
        let mut ip = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 8).tcp(1, 443, 7, 100).write(&mut ip, b"x").unwrap();
        let mut null = 30u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        let p = decode(LinkType::Null, OffsetDateTime::UNIX_EPOCH, &null).unwrap().unwrap();
        assert_eq!((p.proto, p.dport), (PROTO_TCP, 443));
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        let p = decode(LinkType::LinuxSll2, OffsetDateTime::UNIX_EPOCH, &sll2).unwrap().unwrap();
        assert_eq!(p.dport, 443);
    }
}
