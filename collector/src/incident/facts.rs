//! The typed facts of an alert ([`RecordFacts`]): agents send them with
//! every alert; for a record that lacks them (an older agent, a record
//! stored before they existed) they are derived from its EVE JSON here,
//! once, when the record is received or first read. Nothing else in the
//! collector reads EVE fields to decide anything.

use std::net::IpAddr;

use canhgac_proto::v1::{Endpoint, RecordFacts, RoleBasis};
use serde_json::Value;

/// The entity string an endpoint stands for in incidents: its address,
/// else its name, else the indicator.
pub fn entity(e: &Endpoint) -> String {
    if !e.ip.is_empty() {
        e.ip.clone()
    } else if !e.host.is_empty() {
        normal_name(&e.host)
    } else {
        e.indicator.trim().to_lowercase()
    }
}

pub(crate) fn normal_name(s: &str) -> String {
    s.trim().trim_end_matches('.').to_lowercase()
}

/// The address of an endpoint, if it has one.
pub fn ip(e: Option<&Endpoint>) -> Option<IpAddr> {
    e.and_then(|e| e.ip.trim().parse().ok())
}

fn endpoint_at(eve: &Value, ip: &str, port: &str) -> Option<Endpoint> {
    let ip = eve[ip].as_str().and_then(|s| s.trim().parse::<IpAddr>().ok())?;
    Some(Endpoint {
        ip: ip.to_string(),
        port: eve[port].as_u64().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        ..Default::default()
    })
}

/// The domain an EVE record's traffic names, if any.
fn named_domain(eve: &Value) -> String {
    let candidates = [
        &eve["dns"]["query"][0]["rrname"],
        &eve["dns"]["rrname"],
        &eve["tls"]["sni"],
        &eve["http"]["hostname"],
        &eve["canhgac"]["parent_domain"],
    ];
    candidates
        .into_iter()
        .filter_map(|v| v.as_str())
        .map(normal_name)
        .find(|d| !d.is_empty() && d.parse::<IpAddr>().is_err())
        .unwrap_or_default()
}

/// Facts derived from an EVE alert that came without them.
/// `host_detector` says whether a detector belongs to the host sensor.
pub fn legacy(eve: &Value, host_detector: &dyn Fn(&str) -> bool) -> RecordFacts {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let detector = eve["canhgac"]["detector"].as_str().unwrap_or("rule").to_string();
    let mut f = RecordFacts {
        signature_id: eve["alert"]["signature_id"].as_u64().unwrap_or(0),
        signature: text(&eve["alert"]["signature"]),
        rule_category: text(&eve["alert"]["category"]),
        technique: text(&eve["canhgac"]["technique"]),
        flow_id: eve["flow_id"].as_u64().unwrap_or(0),
        src: endpoint_at(eve, "src_ip", "src_port"),
        dest: endpoint_at(eve, "dest_ip", "dest_port"),
        to_client: eve["direction"].as_str() == Some("to_client"),
        role_basis: RoleBasis::Flow as i32,
        domain: named_domain(eve),
        matched: text(&eve["canhgac"]["matched"]),
        ..Default::default()
    };
    let at = |v: &Value| v.as_str().and_then(|s| s.trim().parse::<IpAddr>().ok());
    let (source, target) = (at(&eve["alert"]["source"]["ip"]), at(&eve["alert"]["target"]["ip"]));
    if host_detector(&detector) {
        f.on_host = true;
        f.role_basis = RoleBasis::Detector as i32;
        let attacker = f.src.clone().or_else(|| {
            let h = eve["src_host"].as_str().or(eve["canhgac"]["src_host"].as_str())?;
            Some(Endpoint { host: normal_name(h), ..Default::default() })
        });
        f.attackers.extend(attacker);
    } else if let (Some(s), Some(t)) = (source, target) {
        f.role_basis = RoleBasis::Detector as i32;
        f.attackers.push(Endpoint { ip: s.to_string(), ..Default::default() });
        f.victims.push(Endpoint { ip: t.to_string(), ..Default::default() });
    } else if detector == "ioc" {
        f.role_basis = RoleBasis::Detector as i32;
        let indicator = text(&eve["canhgac"]["indicator"]);
        let (src, dest) = (f.src.clone().unwrap_or_default(), f.dest.clone().unwrap_or_default());
        let (client, _) = if f.to_client { (dest.clone(), src.clone()) } else { (src.clone(), dest.clone()) };
        let (a, v) = match f.matched.as_str() {
            "src_ip" => (Endpoint { indicator, ..src }, dest),
            "dest_ip" => (Endpoint { indicator, ..dest }, src),
            _ => (Endpoint { host: normal_name(&indicator), indicator, ..Default::default() }, client),
        };
        f.attackers.push(a);
        f.victims.push(v);
    }
    if let Some(a) = eve["canhgac"]["attacker"].as_str().filter(|a| !a.trim().is_empty()) {
        let e = match a.trim().parse::<IpAddr>() {
            Ok(ip) => Endpoint { ip: ip.to_string(), ..Default::default() },
            Err(_) => Endpoint { host: normal_name(a), ..Default::default() },
        };
        f.attackers.insert(0, e);
    }
    f.detector = detector;
    f
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn legacy_facts_read_the_eve_fields_once() {
        let eve = json!({"flow_id": 7, "src_ip": "10.0.0.8", "src_port": 5353, "dest_ip": "10.0.0.1",
            "dest_port": 53, "direction": "to_server", "dns": {"query": [{"rrname": "Bad.Example."}]},
            "alert": {"signature_id": 9000010, "signature": "CANHGAC IOC", "category": "Potentially Bad Traffic"},
            "canhgac": {"detector": "ioc", "matched": "dns.query", "indicator": "bad.example", "technique": "T1071.004"}});
        let f = legacy(&eve, &|_| false);
        assert_eq!(f.detector, "ioc");
        assert_eq!((f.signature_id, f.flow_id), (9000010, 7));
        assert_eq!(f.technique, "T1071.004");
        assert_eq!(f.domain, "bad.example");
        assert_eq!(f.src.as_ref().map(|e| e.port), Some(5353));
        assert_eq!(f.role_basis, RoleBasis::Detector as i32);
        assert_eq!(f.attackers.iter().map(entity).collect::<Vec<_>>(), vec!["bad.example"]);
        assert_eq!(f.victims.iter().map(entity).collect::<Vec<_>>(), vec!["10.0.0.8"]);
        // a rule without target: the category decides later
        let eve =
            json!({"src_ip": "10.0.0.8", "dest_ip": "198.51.100.7", "alert": {"signature_id": 2000001}});
        let f = legacy(&eve, &|_| false);
        assert_eq!((f.detector.as_str(), f.role_basis), ("rule", RoleBasis::Flow as i32));
        assert!(f.attackers.is_empty());
        // a host detector: the remote end attacks this host
        let eve = json!({"canhgac": {"detector": "auth-bruteforce", "src_host": "Scanner.Example"}});
        let f = legacy(&eve, &|d| d == "auth-bruteforce");
        assert!(f.on_host);
        assert_eq!(f.attackers.iter().map(entity).collect::<Vec<_>>(), vec!["scanner.example"]);
    }

    /// The agent's typed facts lead to the same decisions as the EVE JSON
    /// they come with, on every capture of the detection cases: same
    /// signature, detector, flow and endpoints; same category; same victims
    /// and the same first attacker (the one the episode key uses). Typed
    /// facts may know more: a domain the EVE record does not carry (the
    /// TLS flow's SNI on a packet alert) and no resolver among the
    /// attackers of a DNS tunnel.
    #[test]
    fn agent_facts_agree_with_their_eve_on_real_captures() {
        use std::path::{Path, PathBuf};

        use crate::incident::roles;

        let reg = crate::rules::Regulation::embedded();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect");
        let rel = |dir: &Path, spec: &str| -> PathBuf {
            match spec.split_once(':') {
                Some((fmt, path)) if !fmt.contains('/') => {
                    PathBuf::from(format!("{fmt}:{}", dir.join(path).display()))
                }
                _ => dir.join(spec),
            }
        };
        let list = |t: &toml::Table, k: &str| -> Vec<String> {
            t.get(k)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let mut alerts = 0;
        let mut detectors = std::collections::BTreeSet::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("test.toml").exists())
            .collect();
        dirs.sort();
        for dir in &dirs {
            let case: toml::Table = std::fs::read_to_string(dir.join("test.toml")).unwrap().parse().unwrap();
            let opts = canhgac_agent::analyze::AnalyzeOptions {
                pcaps: list(&case, "pcap").iter().map(|p| dir.join(p)).collect(),
                ioc: list(&case, "ioc").iter().map(|p| rel(dir, p)).collect(),
                rules: list(&case, "rules").iter().map(|p| dir.join(p)).collect(),
                config: case.get("config").and_then(|c| c.as_str()).map(|c| dir.join(c)),
                eve: None,
                workers: 1,
            };
            let mut recs = Vec::new();
            canhgac_agent::analyze::records(&opts, &mut |r| {
                recs.push(r);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for r in recs.iter().filter(|r| r.kind == canhgac_proto::v1::RecordKind::Alert) {
                let name = dir.file_name().unwrap().to_string_lossy();
                let eve: Value = serde_json::from_slice(&r.eve_json).unwrap();
                let typed = r.facts.clone().unwrap_or_else(|| panic!("{name}: alert without facts: {eve}"));
                let old = legacy(&eve, &|d| reg.is_host_detector(d));
                let ctx = format!("{name}: {eve}\n typed {typed:?}\n legacy {old:?}");
                assert_eq!(typed.detector, old.detector, "{ctx}");
                assert_eq!(typed.signature_id, old.signature_id, "{ctx}");
                assert_eq!(typed.signature, old.signature, "{ctx}");
                assert_eq!(typed.rule_category, old.rule_category, "{ctx}");
                assert_eq!(typed.technique, old.technique, "{ctx}");
                assert_eq!(typed.flow_id, old.flow_id, "{ctx}");
                assert_eq!(ip(typed.src.as_ref()), ip(old.src.as_ref()), "{ctx}");
                assert_eq!(ip(typed.dest.as_ref()), ip(old.dest.as_ref()), "{ctx}");
                if !old.domain.is_empty() {
                    assert_eq!(typed.domain, old.domain, "{ctx}");
                }
                let category = reg.categorize(&typed);
                assert_eq!(category, reg.categorize(&old), "{ctx}");
                let direction = reg.direction(category);
                let internal = |ip: IpAddr| roles::private(ip);
                let a = roles::roles(&typed, direction, "host", &internal);
                let b = roles::roles(&old, direction, "host", &internal);
                assert_eq!(a.victims, b.victims, "{ctx}");
                if old.domain.is_empty() == typed.domain.is_empty() {
                    assert_eq!(a.attackers.first(), b.attackers.first(), "{ctx}");
                }
                alerts += 1;
                detectors.insert(typed.detector.clone());
            }
        }
        // the cases cover every kind of detector on the wire
        for d in ["rule", "ioc", "portscan", "bruteforce", "beacon", "dns-tunnel", "icmp-tunnel"] {
            assert!(detectors.contains(d), "no `{d}` alert in the detection cases: {detectors:?}");
        }
        assert!(alerts >= 30, "only {alerts} alerts compared");
    }
}
