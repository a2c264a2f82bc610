//! Federation: two provincial collectors streaming to a national one that
//! is down for the whole run and comes up afterwards.

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use canhgac_tests::{Agent, Collector, bin, wait_for};
use serde_json::Value;

use crate::supervision::{cli_as, scan_at};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn incidents_as(profile: &Path, c: &Collector) -> Vec<Value> {
    let o = cli_as(profile, c, &["incidents", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    json_lines(&String::from_utf8_lossy(&o.stdout))
}

fn upstream_enroll(province: &Collector, national: &Collector, token: &str, pin: &str) -> Output {
    Command::new(bin("canhgac-collector"))
        .args(["upstream", "enroll", "--data-dir"])
        .arg(&province.dir)
        .args(["--national", &national.url(), "--token", token, "--ca-pin", pin])
        .output()
        .unwrap()
}

/// A province: its collector, one agency with a system, an agent that
/// replays a scan by `attacker` (named in its indicator list) of the
/// system; one incident, acknowledged by the province's operator.
fn province(
    root: &Path,
    agency: &str,
    attacker: [u8; 4],
    target: [u8; 4],
    enroll: impl FnOnce(&Collector),
) -> (Collector, Agent) {
    std::fs::create_dir_all(root).unwrap();
    let mut c = Collector::init(root);
    enroll(&c);
    c.start();
    c.add_agency(agency, &format!("Agency {agency}"));
    let ip = format!("{}.{}.{}.{}", target[0], target[1], target[2], target[3]);
    c.cli(&["system", "add", "--agency", agency, "--name", "Portal", "--level", "3", "--public-ip", &ip]);
    let mut agent = Agent::new(root, "agent");
    agent.enroll(&c, &c.token(agency, None));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let (pcap, ioc) =
        scan_at(root, attacker, target, &[22, 80, 443, 8080], Some(now - Duration::from_secs(60)));
    agent.start(&["--pcap", pcap.to_str().unwrap(), "--ioc", ioc.to_str().unwrap(), "--exit-when-drained"]);
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    (c, agent)
}

fn incidents(c: &Collector) -> Vec<Value> {
    json_lines(&c.cli(&["incidents", "list", "--json"]))
}

/// Alerts a province sends up by default: severity 1 or 2.
fn severe(alerts: &[Value]) -> usize {
    alerts.iter().filter(|a| a["alert"]["severity"].as_u64().is_some_and(|s| (1..=2).contains(&s))).count()
}

/// Provinces enroll at the national collector, which then stops and stays
/// down while both provinces detect and handle incidents; when it returns
/// it receives every incident (with agency and province, read-only) and
/// every selected alert once, a province's operator sees only its
/// province, a national operator both, forwarded alerts open no incident
/// of their own, and later changes (also after a province collector is
/// SIGKILLed) arrive within seconds.
#[test]
fn provinces_stream_incidents_upward_and_the_national_collector_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut national = Collector::init(&tmp.path().join("national"));
    national.start();
    national.cli(&["province", "add", "--code", "HN", "--name", "Hà Nội"]);
    national.cli(&["province", "add", "--code", "HCM", "--name", "Thành phố Hồ Chí Minh"]);
    let provinces = json_lines(&national.cli(&["province", "list", "--json"]));
    assert_eq!(provinces.len(), 2, "{provinces:?}");
    // a province's code takes no agent, an agency's no collector
    let o = national.cli_output(&["token", "create", "--agency", "HN"]);
    assert!(!o.status.success() && text(&o).contains("is a province"), "{}", text(&o));
    national.add_agency("BO-X", "An agency of the national collector");
    let o = national.cli_output(&["token", "create", "--province", "BO-X"]);
    assert!(!o.status.success() && text(&o).contains("not a province"), "{}", text(&o));
    let hn_token = national.cli(&["token", "create", "--province", "HN"]).lines().last().unwrap().to_string();
    let hcm_token =
        national.cli(&["token", "create", "--province", "HCM"]).lines().last().unwrap().to_string();
    let hn_op = tmp.path().join("hn-op.profile");
    let nat_op = tmp.path().join("nat-op.profile");
    national.cli(&[
        "operator",
        "add",
        "--name",
        "hn-op",
        "--role",
        "province",
        "--province",
        "HN",
        "--out",
        hn_op.to_str().unwrap(),
    ]);
    national.cli(&[
        "operator",
        "add",
        "--name",
        "nat-op",
        "--role",
        "national",
        "--out",
        nat_op.to_str().unwrap(),
    ]);
    let o = national.cli_output(&[
        "operator",
        "add",
        "--name",
        "bad",
        "--role",
        "province",
        "--province",
        "BO-X",
        "--out",
        tmp.path().join("bad.profile").to_str().unwrap(),
    ]);
    assert!(!o.status.success() && text(&o).contains("province `BO-X` not found"), "{}", text(&o));

    // enrollment: a bad pin is refused before anything is written
    let hn_root = tmp.path().join("hn");
    let hcm_root = tmp.path().join("hcm");
    let (mut hn, _hn_agent) = province(&hn_root, "SO-TTTT", [203, 0, 113, 5], [198, 51, 100, 5], |c| {
        // a wrong pin is refused before anything is written
        let o = upstream_enroll(c, &national, &hn_token, &"00".repeat(32));
        assert!(!o.status.success() && text(&o).contains("pin"), "{}", text(&o));
        assert!(!c.dir.join("upstream").join("upstream.json").exists());
        let o = upstream_enroll(c, &national, &hn_token, &national.pin);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("province HN"), "{}", text(&o));
        // a second enrollment needs --force
        let o = upstream_enroll(c, &national, &hn_token, &national.pin);
        assert!(!o.status.success() && text(&o).contains("--force"), "{}", text(&o));
    });
    let (hcm, _hcm_agent) = province(&hcm_root, "SO-YT", [203, 0, 113, 6], [198, 51, 100, 6], |c| {
        let o = upstream_enroll(c, &national, &hcm_token, &national.pin);
        assert!(o.status.success(), "{}", text(&o));
    });
    // the national collector goes down before either province has anything
    assert_eq!(national.terminate(Duration::from_secs(20)), 0);

    wait_for("an incident in each province", Duration::from_secs(30), || {
        (incidents(&hn).len() == 1 && incidents(&hcm).len() == 1).then_some(())
    });
    let hn_id = incidents(&hn)[0]["id"].as_u64().unwrap();
    hn.cli(&["incidents", "ack", &hn_id.to_string()]);
    hn.cli(&["incidents", "transition", &hn_id.to_string(), "notified"]);
    let hn_alerts = hn.alerts();
    let hcm_alerts = hcm.alerts();
    let want_alerts = severe(&hn_alerts) + severe(&hcm_alerts);
    assert!(want_alerts > 0, "the scans raise severe alerts: {hn_alerts:?}");
    // a province collector killed while the national one is away loses nothing
    hn.kill();
    hn.start();
    std::thread::sleep(Duration::from_secs(3));
    assert!(hn.logs().contains("upstream link down"), "the provinces tried: {}", hn.logs());

    // the national collector returns and catches up
    national.start();
    wait_for("both provinces' incidents at the national collector", Duration::from_secs(60), || {
        let l = incidents(&national);
        (l.len() == 2 && l.iter().any(|i| i["province"] == "HN" && i["state"] == "notified")).then_some(l)
    });
    let list = incidents(&national);
    let by = |p: &str| list.iter().find(|i| i["province"] == p).unwrap().clone();
    let (n_hn, n_hcm) = (by("HN"), by("HCM"));
    let p_hn = incidents(&hn)[0].clone();
    assert_eq!(n_hn["agency"], "SO-TTTT", "{n_hn}");
    assert_eq!(n_hcm["agency"], "SO-YT", "{n_hcm}");
    assert_eq!(n_hn["origin_id"], p_hn["id"]);
    for k in
        ["attacker", "victim", "category", "alert_count", "severity", "first_seen", "system_name", "state"]
    {
        assert_eq!(n_hn[k], p_hn[k], "{k}: national {n_hn} province {p_hn}");
    }
    let national_alerts = wait_for("the severe alerts upstream", Duration::from_secs(30), || {
        let a = national.alerts();
        (a.len() >= want_alerts).then_some(a)
    });
    assert_eq!(national_alerts.len(), want_alerts, "each selected alert once: {national_alerts:?}");
    for a in &national_alerts {
        let origin = &a["canhgac"]["origin"];
        assert!(origin["province"] == "HN" || origin["province"] == "HCM", "{a}");
        assert!(origin["agency"] == "SO-TTTT" || origin["agency"] == "SO-YT", "{a}");
    }
    // forwarded alerts were correlated in their province: no third incident
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(incidents(&national).len(), 2);

    // tenancy: a province's operator sees its province only
    let mine = incidents_as(&hn_op, &national);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["province"], "HN");
    let o = cli_as(&hn_op, &national, &["incidents", "show", &n_hcm["id"].to_string()]);
    assert!(!o.status.success(), "another province's incident: {}", text(&o));
    let o = cli_as(&hn_op, &national, &["alerts", "list", "--json"]);
    let seen = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert!(!seen.is_empty() && seen.iter().all(|a| a["canhgac"]["origin"]["province"] == "HN"), "{seen:?}");
    assert_eq!(incidents_as(&nat_op, &national).len(), 2);
    // yesterday's daily report of each province is kept as that province's
    let daily = wait_for("the provinces' daily reports", Duration::from_secs(30), || {
        let l: Vec<Value> = json_lines(&national.cli(&["report", "list", "--format", "json"]))
            .into_iter()
            .filter(|r| r["kind"] == "daily")
            .collect();
        (l.len() == 2).then_some(l)
    });
    let mut tenants: Vec<&str> = daily.iter().map(|r| r["agency"].as_str().unwrap()).collect();
    tenants.sort();
    assert_eq!(tenants, ["HCM", "HN"], "{daily:?}");
    let o = cli_as(&hn_op, &national, &["report", "list", "--format", "json"]);
    let mine = json_lines(&String::from_utf8_lossy(&o.stdout));
    assert!(mine.len() == 1 && mine[0]["agency"] == "HN", "a province sees its own reports only: {mine:?}");
    let fetched = cli_as(&hn_op, &national, &["report", "fetch", mine[0]["id"].as_str().unwrap()]);
    let report: Value = serde_json::from_str(&String::from_utf8_lossy(&fetched.stdout)).unwrap();
    assert_eq!(report["agencies"][0]["code"], "SO-TTTT", "{report}");
    let sections: Vec<&str> = report["agencies"][0]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(sections.contains(&"coverage") && sections.contains(&"alerts_by_severity"), "{sections:?}");
    let coverage =
        report["agencies"][0]["sections"].as_array().unwrap().iter().find(|s| s["id"] == "coverage").unwrap();
    let rows = coverage["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r[0] == "layer: upstream") && rows.iter().any(|r| r[0] == "agents online"),
        "{coverage}"
    );

    // handled in the province, read-only here
    let o = cli_as(&nat_op, &national, &["incidents", "transition", &n_hn["id"].to_string(), "in_progress"]);
    assert!(!o.status.success() && text(&o).contains("handled by province `HN`"), "{}", text(&o));

    // live: a change in the province arrives within seconds
    hn.cli(&["incidents", "transition", &hn_id.to_string(), "initial_report"]);
    wait_for("the change upstream", Duration::from_secs(20), || {
        incidents(&national)
            .iter()
            .any(|i| i["province"] == "HN" && i["state"] == "initial_report")
            .then_some(())
    });
    assert_eq!(national.alerts().len(), want_alerts, "nothing sent twice");
    let agents = national.agents();
    assert_eq!(agents.len(), 2, "one identity per province collector: {agents:?}");
}
