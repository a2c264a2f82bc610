//! The typed facts of an alert ([`v1::RecordFacts`]): what the detector
//! knew when it raised it, sent beside the EVE JSON so that the collector
//! decides on typed fields and never parses the JSON again.
//!
//! Every alert the agent raises carries facts, built here from the
//! detector's own values (not from the EVE object it writes). A test in
//! the collector checks that facts and EVE agree on real captures.

use std::net::IpAddr;

use canhgac_proto::v1::{Endpoint, RecordFacts, RoleBasis};

use crate::{decode::Packet, flow::Dir};

/// An endpoint with an address and port (0: none).
pub fn endpoint(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint { ip: ip.to_string(), port: u32::from(port), ..Default::default() }
}

/// An endpoint known by address only.
pub fn address(ip: IpAddr) -> Endpoint {
    endpoint(ip, 0)
}

/// An endpoint known by name only (a domain, a log's host name).
pub fn named(host: &str) -> Endpoint {
    Endpoint { host: host.trim().trim_end_matches('.').to_lowercase(), ..Default::default() }
}

fn ports(proto: u8) -> bool {
    matches!(proto, 6 | 17)
}

/// Facts of an alert on a packet: its endpoints as in the EVE record,
/// its direction in the flow and the flow id.
pub fn packet(detector: &str, p: &Packet<'_>, dir: Option<Dir>, flow_id: u64) -> RecordFacts {
    let (sport, dport) = if ports(p.proto) { (p.sport, p.dport) } else { (0, 0) };
    RecordFacts {
        detector: detector.into(),
        flow_id,
        src: Some(endpoint(p.src, sport)),
        dest: Some(endpoint(p.dst, dport)),
        to_client: dir == Some(Dir::ToClient),
        role_basis: RoleBasis::Flow as i32,
        ..Default::default()
    }
}

/// Facts of an alert on a host (host sensor): the victim is the agent's own
/// host; the attacker is the remote address or name the event names.
pub fn host(detector: &str, remote_ip: Option<IpAddr>, remote_host: Option<&str>) -> RecordFacts {
    let mut f = RecordFacts {
        detector: detector.into(),
        on_host: true,
        role_basis: RoleBasis::Detector as i32,
        ..Default::default()
    };
    let attacker = match (remote_ip, remote_host.filter(|h| !h.trim().is_empty())) {
        (Some(ip), _) => Some(address(ip)),
        (None, Some(h)) => Some(named(h)),
        (None, None) => None,
    };
    if let Some(a) = attacker {
        f.src = Some(a.clone());
        f.attackers.push(a);
    }
    f
}

/// Sets the detector's own word on who attacked whom.
pub fn set_roles(f: &mut RecordFacts, attackers: Vec<Endpoint>, victims: Vec<Endpoint>) {
    f.role_basis = RoleBasis::Detector as i32;
    f.attackers = attackers;
    f.victims = victims;
}

/// Sets the signature fields.
pub fn set_signature(
    f: &mut RecordFacts,
    signature_id: u64,
    signature: &str,
    rule_category: &str,
    technique: &str,
) {
    f.signature_id = signature_id;
    f.signature = signature.into();
    f.rule_category = rule_category.into();
    f.technique = technique.into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_name_the_remote_end_as_attacker_and_the_host_as_victim() {
        let f = host("auth", Some("203.0.113.9".parse().unwrap()), Some("ignored.example"));
        assert!(f.on_host);
        assert_eq!(f.role_basis, RoleBasis::Detector as i32);
        assert_eq!(f.attackers, vec![address("203.0.113.9".parse().unwrap())]);
        assert!(f.victims.is_empty(), "the collector names the host from the certificate");
        let f = host("auth", None, Some("Scanner.Example."));
        assert_eq!(f.attackers[0].host, "scanner.example");
        let f = host("fim", None, Some("  "));
        assert!(f.attackers.is_empty());
    }
}
