//! Who attacked whom, and which registered system it concerns: the roles
//! of an alert's endpoints and the system its evidence points at, from the
//! alert's typed facts ([`super::facts`]). Pure.
//!
//! **Roles.** The detector's own word wins (a rule's `target:`, an
//! indicator match, a behavioural or host detector). Otherwise:
//!
//! * host-sensor alerts: the victim is the agent's host, the attacker the
//!   source address of the log line when there is one;
//! * indicator alerts: the listed endpoint is the attacker (the source of
//!   traffic from a listed address; the destination, domain or URL of
//!   traffic to one), the other endpoint the victim;
//! * outbound categories (command and control, malware check-ins, data
//!   leaks: `roles = "outbound"` in the category data): the internal
//!   endpoint is the victim and the external one, with the domain the
//!   traffic names (DNS query, TLS SNI, HTTP host), the attacker; an
//!   internal resolver or proxy in between is never the attacker when a
//!   domain is named;
//! * everything else is inbound: the flow's client (the source of a
//!   `to_server` packet, the destination of a `to_client` one) attacks its
//!   server.
//!
//! **Attribution.** A host-sensor alert belongs to the system its agent is
//! linked to (when the agent serves several, to the one whose addresses
//! contain the victim, else none). A network alert belongs to the agency's
//! system whose public addresses, internal networks or domains contain the
//! victim, the most specific match first. Otherwise it is unattributed
//! (0): never a guess.

use std::net::IpAddr;

use canhgac_proto::v1::{RecordFacts, RoleBasis};
use ipnet::IpNet;

use super::facts;
use crate::store::{AgentRec, SystemRec};

/// The endpoints of an alert by role, as entity strings (addresses,
/// domains, host names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Roles {
    pub attackers: Vec<String>,
    pub victims: Vec<String>,
}

/// How the alert's category reads its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client attacks the server.
    Inbound,
    /// An internal host talks to attacker infrastructure.
    Outbound,
}

fn push(list: &mut Vec<String>, s: impl Into<String>) {
    let s = s.into();
    if !s.is_empty() && !list.contains(&s) {
        list.push(s);
    }
}

/// Whether an address is private to an organisation by definition
/// (RFC 1918, shared address space, loopback, link-local, ULA).
pub fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_private() || v.is_loopback() || v.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v) => {
            let s = v.segments()[0];
            v.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// The roles of an alert's endpoints, from its typed facts. `hostname` is
/// the agent's host (from its certificate) for host-sensor alerts;
/// `internal` says whether an address belongs to the agency.
pub fn roles(
    f: &RecordFacts,
    direction: Direction,
    hostname: &str,
    internal: &dyn Fn(IpAddr) -> bool,
) -> Roles {
    let mut r = Roles::default();
    let (src, dest) = (facts::ip(f.src.as_ref()), facts::ip(f.dest.as_ref()));
    let (client, server) = if f.to_client { (dest, src) } else { (src, dest) };
    let s = |ip: Option<IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
    if f.on_host {
        push(&mut r.victims, facts::normal_name(hostname));
        for a in &f.attackers {
            push(&mut r.attackers, facts::entity(a));
        }
        return r;
    }
    if f.role_basis == RoleBasis::Detector as i32 {
        for a in &f.attackers {
            push(&mut r.attackers, facts::entity(a));
        }
        for v in &f.victims {
            push(&mut r.victims, facts::entity(v));
        }
        // a listed name or fingerprint: the server it led to is the
        // attacker's too, unless it is the agency's own (a resolver, a proxy)
        let by_name = !f.matched.is_empty() && f.matched != "src_ip" && f.matched != "dest_ip";
        if by_name && server.is_some_and(|ip| !internal(ip)) {
            push(&mut r.attackers, s(server));
        }
        return r;
    }
    match direction {
        Direction::Inbound => {
            push(&mut r.attackers, s(client));
            push(&mut r.victims, s(server));
        }
        Direction::Outbound => {
            let inside = |ip: Option<IpAddr>| ip.is_some_and(internal);
            let (victim, far) =
                if inside(server) && !inside(client) { (server, client) } else { (client, server) };
            push(&mut r.victims, s(victim));
            let named = (!f.domain.is_empty()).then(|| facts::normal_name(&f.domain));
            if let Some(d) = &named {
                push(&mut r.attackers, d.clone());
            }
            // an internal resolver or proxy is not the attacker when the
            // traffic names the far end
            if !(named.is_some() && inside(far)) {
                push(&mut r.attackers, s(far));
            }
        }
    }
    r
}

/// How well a system's registered addresses cover an address: the prefix
/// length of the best match (an exact public address counts as a host
/// route), or `None`.
fn cover(sys: &SystemRec, ip: IpAddr) -> Option<u8> {
    let exact = sys.public_ips.iter().any(|p| p.parse::<IpAddr>().ok() == Some(ip));
    let host_len = if ip.is_ipv4() { 32 } else { 128 };
    let net = sys
        .networks
        .iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .filter(|n| n.contains(&ip))
        .map(|n| n.prefix_len())
        .max();
    if exact { Some(host_len) } else { net }
}

fn covers_name(sys: &SystemRec, name: &str) -> bool {
    sys.domains.iter().any(|d| name == d || name.ends_with(&format!(".{d}")))
}

/// The best system among `candidates` for the victims, preferring the
/// most specific address match, then the agent's own systems, then the
/// lowest id.
fn best<'a>(candidates: impl Iterator<Item = &'a SystemRec>, victims: &[String], linked: &[u64]) -> u64 {
    let mut best: Option<(u16, bool, std::cmp::Reverse<u64>)> = None;
    for sys in candidates {
        for v in victims {
            let score = match v.parse::<IpAddr>() {
                Ok(ip) => cover(sys, ip).map(|l| l as u16 + 1),
                Err(_) => covers_name(sys, v).then_some(1),
            };
            if let Some(sc) = score {
                let key = (sc, linked.contains(&sys.id), std::cmp::Reverse(sys.id));
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                }
            }
        }
    }
    best.map(|(_, _, std::cmp::Reverse(id))| id).unwrap_or(0)
}

/// The system an alert concerns (0: unattributed).
pub fn attribute(
    host: bool,
    roles: &Roles,
    agent: Option<&AgentRec>,
    systems: &[SystemRec],
    agency: &str,
) -> u64 {
    let linked: &[u64] = agent.map(|a| a.systems.as_slice()).unwrap_or(&[]);
    if host {
        let own: Vec<&SystemRec> = systems.iter().filter(|s| linked.contains(&s.id)).collect();
        return match own.as_slice() {
            [one] => one.id,
            many => best(many.iter().copied(), &roles.victims, linked),
        };
    }
    best(systems.iter().filter(|s| s.agency == agency), &roles.victims, linked)
}

/// Whether an address belongs to the agency: private by definition, or
/// inside a registered address or network of one of its systems.
pub fn internal_to(systems: &[SystemRec], agency: &str, ip: IpAddr) -> bool {
    private(ip) || systems.iter().filter(|s| s.agency == agency).any(|s| cover(s, ip).is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn priv_only(ip: IpAddr) -> bool {
        private(ip)
    }

    /// Roles of an alert as an older agent sent it (EVE only).
    fn roles_of(eve: &Value, direction: Direction, host: bool) -> Roles {
        let f = facts::legacy(eve, &|_| host);
        roles(&f, direction, eve["canhgac"]["hostname"].as_str().unwrap_or(""), &priv_only)
    }

    #[test]
    fn c2_makes_the_external_end_the_attacker() {
        // a check-in from a workstation to its C2 server
        let eve = json!({"src_ip": "10.1.2.3", "dest_ip": "198.51.100.7", "direction": "to_server",
            "http": {"hostname": "evil.example"}, "canhgac": {"detector": "rule"}});
        let r = roles_of(&eve, Direction::Outbound, false);
        assert_eq!(r.victims, vec!["10.1.2.3"]);
        assert_eq!(r.attackers, vec!["evil.example", "198.51.100.7"]);
        // the C2 server's answer (to_client): same roles
        let eve = json!({"src_ip": "198.51.100.7", "dest_ip": "10.1.2.3", "direction": "to_client",
            "canhgac": {"detector": "rule"}});
        let r = roles_of(&eve, Direction::Outbound, false);
        assert_eq!(
            (r.attackers, r.victims),
            (vec!["198.51.100.7".to_string()], vec!["10.1.2.3".to_string()])
        );
        // a DNS lookup through the internal resolver: the domain, never the resolver
        let eve = json!({"src_ip": "10.1.2.3", "dest_ip": "10.1.0.53", "direction": "to_server",
            "dns": {"query": [{"rrname": "Sofacy.Example."}]}, "canhgac": {"detector": "rule"}});
        let r = roles_of(&eve, Direction::Outbound, false);
        assert_eq!(
            (r.attackers, r.victims),
            (vec!["sofacy.example".to_string()], vec!["10.1.2.3".to_string()])
        );
    }

    #[test]
    fn scans_and_indicators() {
        let scan =
            json!({"src_ip": "203.0.113.5", "dest_ip": "10.0.0.8", "canhgac": {"detector": "portscan"}});
        let r = roles_of(&scan, Direction::Inbound, false);
        assert_eq!((r.attackers, r.victims), (vec!["203.0.113.5".to_string()], vec!["10.0.0.8".to_string()]));
        let to_listed = json!({"src_ip": "10.0.0.8", "dest_ip": "45.9.74.78",
            "canhgac": {"detector": "ioc", "matched": "dest_ip", "indicator": "45.9.74.78"}});
        let r = roles_of(&to_listed, Direction::Outbound, false);
        assert_eq!((r.attackers, r.victims), (vec!["45.9.74.78".to_string()], vec!["10.0.0.8".to_string()]));
        let from_listed = json!({"src_ip": "45.9.74.78", "dest_ip": "10.0.0.8",
            "canhgac": {"detector": "ioc", "matched": "src_ip", "indicator": "45.9.74.78"}});
        let r = roles_of(&from_listed, Direction::Inbound, false);
        assert_eq!(r.attackers, vec!["45.9.74.78"]);
        let dns = json!({"src_ip": "10.0.0.8", "dest_ip": "10.0.0.1", "direction": "to_server",
            "canhgac": {"detector": "ioc", "matched": "dns.query", "indicator": "bad.example"}});
        let r = roles_of(&dns, Direction::Outbound, false);
        assert_eq!((r.attackers, r.victims), (vec!["bad.example".to_string()], vec!["10.0.0.8".to_string()]));
        // a rule's own target keyword wins
        let t = json!({"src_ip": "10.0.0.8", "dest_ip": "203.0.113.5",
            "alert": {"source": {"ip": "203.0.113.5"}, "target": {"ip": "10.0.0.8"}}});
        let r = roles_of(&t, Direction::Inbound, false);
        assert_eq!(r.attackers, vec!["203.0.113.5"]);
    }

    #[test]
    fn host_alerts_name_the_host() {
        let eve =
            json!({"src_ip": "203.0.113.5", "canhgac": {"detector": "auth-bruteforce", "hostname": "Web01"}});
        let r = roles_of(&eve, Direction::Inbound, true);
        assert_eq!((r.attackers, r.victims), (vec!["203.0.113.5".to_string()], vec!["web01".to_string()]));
    }

    #[test]
    fn attribution_only_by_evidence() {
        let sys = |id: u64, agency: &str, ips: &[&str], nets: &[&str]| SystemRec {
            id,
            agency: agency.into(),
            public_ips: ips.iter().map(|s| s.to_string()).collect(),
            networks: nets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let systems = vec![
            sys(1, "A", &["203.0.113.10"], &[]),
            sys(2, "A", &[], &["10.1.0.0/16"]),
            sys(3, "A", &[], &["10.1.2.0/24"]),
            sys(4, "B", &[], &["10.9.0.0/16"]),
        ];
        let agent = AgentRec { systems: vec![1], ..Default::default() };
        let v = |s: &str| Roles { victims: vec![s.into()], ..Default::default() };
        assert_eq!(attribute(false, &v("203.0.113.10"), Some(&agent), &systems, "A"), 1);
        assert_eq!(attribute(false, &v("10.1.2.7"), Some(&agent), &systems, "A"), 3, "most specific network");
        assert_eq!(attribute(false, &v("10.1.9.7"), Some(&agent), &systems, "A"), 2);
        // not the agent's first linked system, not another agency's
        assert_eq!(attribute(false, &v("192.0.2.1"), Some(&agent), &systems, "A"), 0);
        assert_eq!(attribute(false, &v("10.9.0.1"), Some(&agent), &systems, "A"), 0);
        // host alerts: the agent's one linked system
        assert_eq!(attribute(true, &v("web01"), Some(&agent), &systems, "A"), 1);
        let two = AgentRec { systems: vec![1, 2], ..Default::default() };
        assert_eq!(attribute(true, &v("web01"), Some(&two), &systems, "A"), 0);
        assert!(internal_to(&systems, "A", "203.0.113.10".parse().unwrap()));
        assert!(!internal_to(&systems, "A", "203.0.113.11".parse().unwrap()));
        assert!(internal_to(&systems, "A", "100.64.1.1".parse().unwrap()));
    }
}
