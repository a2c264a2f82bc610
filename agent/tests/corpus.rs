//! Network-sensor acceptance on captures of `../shared/corpus` whose
//! licences do not allow copying them into the repository (nDPI: LGPL,
//! chrissanders/packets: none stated, the ET Open set: partly GPL). They are
//! read in place, by `tests/acceptance/corpus.sh`, which runs these ignored
//! tests; each fails, rather than skips, when the corpus is missing.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn corpus() -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let candidates = [ws.join("../shared/corpus"), ws.join("../../shared/corpus")];
    candidates.iter().find(|p| p.is_dir()).cloned().unwrap_or_else(|| {
        panic!(
            "the corpus is missing: expected shared/corpus next to the checkout ({})",
            candidates[0].display()
        )
    })
}

/// `canhgac-agent analyze ARGS`: the records and the summary line.
fn analyze(args: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canhgac-agent")).arg("analyze").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "analyze {args:?} failed: {stderr}");
    let records =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (records, stderr)
}

fn pcap(rel: &str) -> String {
    let p = corpus().join(rel);
    assert!(p.is_file(), "{} is missing", p.display());
    p.to_string_lossy().into_owned()
}

fn detectors(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["event_type"] == "alert")
        .map(|r| {
            (
                r["canhgac"]["detector"].as_str().unwrap_or_default().to_string(),
                r["src_ip"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Issue 3: a `portscan` in `packets/synscan.pcapng` (nmap -sS from
/// 172.16.0.8), once, vertical, and nothing else.
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn portscan_in_synscan() {
    for file in ["packets/synscan.pcapng", "nDPI/tests/cfgs/default/pcap/synscan.pcap"] {
        let (records, summary) = analyze(&["--pcap", &pcap(file)]);
        assert_eq!(
            detectors(&records),
            [("portscan".to_string(), "172.16.0.8".to_string())],
            "{file}: {summary}"
        );
        assert_eq!(records[0]["canhgac"]["scan"], "vertical");
        assert_eq!(records[0]["alert"]["signature_id"], 9_000_101);
    }
}

/// Issue 3: `dns-tunnel` in nDPI's iodine and dnscat captures, naming the
/// tunnel's parent domain.
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn dns_tunnel_in_ndpi_captures() {
    for (file, client, parent) in [
        ("nDPI/tests/cfgs/default/pcap/dns-tunnel-iodine.pcap", "10.0.2.30", "pirate.sea"),
        ("nDPI/tests/cfgs/default/pcap/dns_exfiltration.pcap", "192.168.220.56", "dnscat"),
    ] {
        let (records, summary) = analyze(&["--pcap", &pcap(file)]);
        let tunnels: Vec<&Value> =
            records.iter().filter(|r| r["canhgac"]["detector"] == "dns-tunnel").collect();
        assert_eq!(tunnels.len(), 1, "{file}: {summary}");
        assert_eq!(tunnels[0]["src_ip"], client, "{file}");
        assert_eq!(tunnels[0]["canhgac"]["parent_domain"], parent, "{file}");
    }
}

/// nDPI's ICMP tunnel capture raises `icmp-tunnel`.
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn icmp_tunnel_in_ndpi_capture() {
    let (records, summary) = analyze(&["--pcap", &pcap("nDPI/tests/cfgs/default/pcap/icmp-tunnel.pcap")]);
    assert_eq!(
        detectors(&records),
        [("icmp-tunnel".to_string(), "192.168.154.131".to_string())],
        "{summary}"
    );
}

/// Issue 3: `rules check` on the ET Open files loads at least 90% of the
/// alert rules (13,371 of them) and explains the rest.
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn rules_check_et_open() {
    let dir = corpus().join("Suricata_Repository");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    let out = Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
        .args(["rules", "check", "--json"])
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = &lines.last().unwrap()["summary"];
    let (loaded, total) = (summary["loaded"].as_u64().unwrap(), summary["total"].as_u64().unwrap());
    assert_eq!(total, 13_371, "{summary}");
    assert!(loaded * 100 >= total * 90, "{loaded}/{total}");
    // every skipped rule comes with its file, line, sid and reason
    let skipped = &lines[..lines.len() - 1];
    assert_eq!(skipped.len() as u64, total - loaded);
    for s in skipped {
        for field in ["file", "line", "reason"] {
            assert!(!s[field].is_null(), "{field} missing in {s}");
        }
    }
}

/// ET Open on real traffic: the rules fire on the corpus's malware
/// captures (any of them), and every rule alert is well formed.
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn et_open_fires_on_malware_captures() {
    let c = corpus();
    let rules: Vec<String> = std::fs::read_dir(c.join("Suricata_Repository"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut args: Vec<String> = Vec::new();
    for r in &rules {
        args.extend(["--rules".to_string(), r.clone()]);
    }
    for f in
        ["packets/cryptowall4_c2.pcapng", "packets/ek_to_cryptowall4.pcapng", "packets/ratinfected.pcapng"]
    {
        let p = c.join(f);
        if p.is_file() {
            args.extend(["--pcap".to_string(), p.to_string_lossy().into_owned()]);
        }
    }
    assert!(args.iter().any(|a| a.ends_with(".pcapng") || a.ends_with(".pcap")), "no malware capture found");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (records, summary) = analyze(&refs);
    let rule_alerts: Vec<&Value> = records.iter().filter(|r| r["canhgac"]["detector"] == "rule").collect();
    assert!(!rule_alerts.is_empty(), "no ET alert: {summary}");
    for a in rule_alerts {
        assert!(a["alert"]["signature_id"].as_u64().unwrap() > 2_000_000, "{a}");
        assert!(
            a["alert"]["signature"].as_str().unwrap().starts_with("ET ")
                || a["alert"]["signature"].as_str().unwrap().starts_with("GPL "),
            "{a}"
        );
        assert!(a["community_id"].as_str().unwrap().starts_with("1:"), "{a}");
    }
}
