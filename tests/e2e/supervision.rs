//! Supervision: registry, incidents and their workflow, tenancy and the
//! audit log, agent silence, central policy, gap-free subscriptions.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use canhgac_proto::profile::Profile;
use canhgac_proto::{
    timefmt,
    v1::{SubscribeAlertsRequest, SubscribeIncidentsRequest, operator_client::OperatorClient},
};
use canhgac_tests::{Agent, Burst, Collector, bin, dns_query, wait_for, workspace, write_raw_pcap};
use serde_json::Value;

pub(crate) fn cli_as(profile: &Path, c: &Collector, args: &[&str]) -> Output {
    Command::new(bin("canhgac"))
        .arg("--profile")
        .arg(profile)
        .arg("--collector")
        .arg(c.url())
        .args(args)
        .env_remove("CANHGAC_PROFILE")
        .env_remove("CANHGAC_COLLECTOR")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn incidents(c: &Collector) -> Vec<Value> {
    json_lines(&c.cli(&["incidents", "list", "--json"]))
}

/// A TCP SYN from `src:sport` to `dst:dport`, raw IPv4.
fn syn(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1024)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

/// A scan by `attacker` of `ports` on `target`, and an indicator list
/// naming the attacker: one alert per probed port.
fn scan(dir: &Path, attacker: [u8; 4], target: [u8; 4], ports: &[u16]) -> (PathBuf, PathBuf) {
    scan_at(dir, attacker, target, ports, None)
}

/// [`scan`] with packets at `start` (since the epoch) instead of 2023.
pub(crate) fn scan_at(
    dir: &Path,
    attacker: [u8; 4],
    target: [u8; 4],
    ports: &[u16],
    start: Option<Duration>,
) -> (PathBuf, PathBuf) {
    let frames: Vec<Vec<u8>> =
        ports.iter().enumerate().map(|(i, p)| syn(attacker, 40000 + i as u16, target, *p)).collect();
    let pcap = dir.join("scan.pcap");
    match start {
        Some(t) => canhgac_tests::write_raw_pcap_at(&pcap, &frames, t),
        None => write_raw_pcap(&pcap, &frames),
    }
    let ioc = dir.join("attackers.txt");
    let a = attacker;
    std::fs::write(&ioc, format!("# known attackers\n{}.{}.{}.{}\n", a[0], a[1], a[2], a[3])).unwrap();
    (pcap, ioc)
}

/// An error as an operator reads it: it names neither an RPC method
/// (`UpdateIncident`) nor a status code (`(InvalidArgument)`).
fn assert_plain_error(err: &str) {
    let proto = std::fs::read_to_string(workspace().join("proto/canhgac/v1/canhgac.proto")).unwrap();
    let methods = proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc ")?.split('(').next())
        .filter(|m| m.chars().filter(char::is_ascii_uppercase).count() > 1);
    let codes = [
        "Cancelled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    assert!(!err.trim().is_empty(), "an error message is expected");
    for name in methods.chain(codes) {
        assert!(!err.contains(name), "the error names `{name}`: {err}");
    }
}

/// Runs `canhgac ARGS` with its standard output closed before it writes
/// (`| head -c1` once head is gone): it must end quietly with status 0.
fn assert_quiet_on_closed_pipe(c: &Collector, args: &[&str]) {
    let mut child = Command::new(bin("canhgac"))
        .arg("--profile")
        .arg(c.profile())
        .arg("--collector")
        .arg(c.url())
        .args(args)
        .env_remove("CANHGAC_PROFILE")
        .env_remove("CANHGAC_COLLECTOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "canhgac {args:?} on a closed pipe: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "canhgac {args:?} on a closed pipe, quietly: {}", stderr(&o));
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

fn time_of(v: &Value) -> time::OffsetDateTime {
    timefmt::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

/// Register an agency with a level-3 system, enroll and link an agent,
/// replay a scan: one incident with the right agency, system, category and
/// deadline; it moves through every state; both reports carry the form's
/// fields. Bad input is refused with row and field named.
#[test]
fn scripted_incident_flow_from_registry_to_completion_report() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-TNMT", "Sở Tài nguyên và Môi trường");
    c.cli(&[
        "agency",
        "set",
        "SO-TNMT",
        "monitoring.name=Nguyễn Văn An",
        "monitoring.unit=Phòng CNTT",
        "monitoring.position=Chuyên viên",
        "monitoring.phone=0243 123 456",
        "monitoring.mobile=0912 345 678",
        "monitoring.email=an.nv@tnmt.example.gov.vn",
        "networks=10.20.0.0/16;198.51.100.0/24",
    ]);
    let out = c.cli(&[
        "system",
        "add",
        "--agency",
        "SO-TNMT",
        "--name",
        "Cổng thông tin điện tử",
        "--level",
        "3",
        "--public-ip",
        "198.51.100.10",
        "--domain",
        "tnmt.example.gov.vn",
    ]);
    let system: u64 = last_line(&out).parse().unwrap_or_else(|_| panic!("no id on the last line: {out}"));
    // bad levels and state secrets below level 3 are refused
    let bad = c.cli_output(&["system", "add", "--agency", "SO-TNMT", "--name", "x", "--level", "7"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("invalid security level `7`"), "{}", stderr(&bad));
    let bad = c.cli_output(&[
        "system",
        "add",
        "--agency",
        "SO-TNMT",
        "--name",
        "x",
        "--level",
        "2",
        "--state-secrets",
    ]);
    assert!(stderr(&bad).contains("state secrets is level 3 or higher"), "{}", stderr(&bad));
    // a CSV with a bad row imports nothing and names the row and field
    let csv = tmp.path().join("agencies.csv");
    std::fs::write(
        &csv,
        "code,name,networks,response.email\nSO-A,Sở A,10.1.0.0/16,a@x.vn\nSO-B,Sở B,10.2.0.0/33,b@x.vn\n",
    )
    .unwrap();
    let bad = c.cli_output(&["agency", "import", csv.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("row 2: field `networks`: invalid CIDR `10.2.0.0/33`"), "{}", stderr(&bad));
    assert!(!c.cli(&["agency", "list"]).contains("SO-A"), "nothing half-imported");

    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-TNMT", None));
    let agent_id = agent.agent_id();
    let linked = c.cli(&["agent", "link", &agent_id, "--system", &system.to_string()]);
    assert!(linked.contains(&system.to_string()), "{linked}");

    let ports = [21, 22, 23, 80, 443, 3389, 8080];
    let (pcap, ioc) = scan(tmp.path(), [203, 0, 113, 7], [198, 51, 100, 10], &ports);
    // an indicator list with a long name gives signatures longer than a screen line
    let long_list =
        "attackers-reported-by-the-national-cyber-security-coordination-centre-in-its-december-2026-bulletin";
    let ioc_long = tmp.path().join(format!("{long_list}.txt"));
    std::fs::rename(&ioc, &ioc_long).unwrap();
    let ioc = ioc_long;
    agent.start(&["--pcap", pcap.to_str().unwrap(), "--ioc", ioc.to_str().unwrap(), "--exit-when-drained"]);
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    assert_eq!(c.alerts().len(), ports.len());

    let list = wait_for("the incident", Duration::from_secs(20), || {
        let l = incidents(&c);
        (l.len() == 1 && l[0]["alert_count"] == ports.len() as u64).then_some(l)
    });
    let inc = &list[0];
    assert_eq!(inc["agency"], "SO-TNMT");
    assert_eq!(inc["system"], system);
    assert_eq!(inc["system_level"], 3);
    assert_eq!(inc["category"], "intrusion");
    assert_eq!(inc["attacker"], serde_json::json!(["203.0.113.7"]));
    assert_eq!(inc["victim"], serde_json::json!(["198.51.100.10"]));
    assert_eq!(inc["dismissed"], false);
    assert_eq!(inc["state"], "detected");
    assert_eq!(inc["severity"], 2);
    // the 2017 pack: notify within 5 days of detection
    assert_eq!(inc["deadline_id"], "2017/notify");
    assert_eq!(time_of(&inc["deadline"]) - time_of(&inc["detected"]), time::Duration::days(5));
    let id = inc["id"].as_u64().unwrap().to_string();
    let shown: Value = serde_json::from_str(&c.cli(&["incidents", "show", &id, "--json"])).unwrap();
    assert_eq!(shown["alerts"].as_array().unwrap().len(), ports.len());
    // `incidents show` fits 120 columns; --wide shows the whole signature
    let signature = shown["evidence"][0]["signature"].as_str().unwrap().to_string();
    assert!(signature.contains(long_list) && signature.chars().count() > 120, "{signature}");
    let text = c.cli(&["incidents", "show", &id]);
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "{} chars: {line}\n{text}", line.chars().count());
    }
    assert!(text.contains("evidence: [ioc]") && text.contains(" × 7 ("), "counts stay whole:\n{text}");
    let wide = c.cli(&["incidents", "show", &id, "--wide"]);
    assert!(wide.contains(&signature), "--wide shows `{signature}`:\n{wide}");
    // --until: events before the bound; --utc and a profile's zone change the offset shown
    let first = time_of(&inc["first_seen"]);
    let until = |t: time::OffsetDateTime| {
        let t = t.format(&time::format_description::well_known::Rfc3339).unwrap();
        json_lines(&c.cli(&["incidents", "list", "--json", "--until", &t])).len()
    };
    assert_eq!(until(first - time::Duration::hours(1)), 0, "an incident after --until is left out");
    assert_eq!(until(first + time::Duration::days(1)), 1);
    assert!(inc["detected"].as_str().unwrap().ends_with("+07:00"), "{inc}");
    let utc = &json_lines(&c.cli(&["incidents", "list", "--json", "--utc"]))[0];
    let z = utc["detected"].as_str().unwrap();
    assert!(z.ends_with('Z') || z.ends_with("+00:00"), "{z}");
    assert_eq!(time_of(&utc["detected"]), time_of(&inc["detected"]));
    let mut zoned = Profile::load(&c.profile()).unwrap();
    zoned.display = Some(canhgac_proto::profile::DisplaySettings { timezone: Some("+05:30".into()) });
    let zoned_path = tmp.path().join("zoned.profile");
    zoned.write(&zoned_path).unwrap();
    let o = cli_as(&zoned_path, &c, &["incidents", "list", "--json"]);
    let z = json_lines(&stdout(&o)).remove(0);
    assert!(z["detected"].as_str().unwrap().ends_with("+05:30"), "{z}");
    assert_eq!(time_of(&z["detected"]), time_of(&inc["detected"]));
    // `canhgac incidents list --json | head -c1`: quietly, status 0
    assert_quiet_on_closed_pipe(&c, &["incidents", "list", "--json"]);
    assert_quiet_on_closed_pipe(&c, &["alerts", "list"]);

    // illegal transitions are refused naming the allowed ones
    let bad = c.cli_output(&["incidents", "transition", &id, "in_progress"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("allowed from `detected`: notified, closed"), "{}", stderr(&bad));
    assert_plain_error(&stderr(&bad));
    let bad = c.cli_output(&["incidents", "set", &id, "colour=red"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_plain_error(&stderr(&bad));

    c.cli(&["incidents", "ack", &id]);
    c.cli(&["incidents", "assign", &id, "tran.thi.b"]);
    c.cli(&["incidents", "note", &id, "blocked 203.0.113.7 at the perimeter firewall"]);
    c.cli(&[
        "incidents",
        "set",
        &id,
        "description=Port scan and login attempts against the portal",
        "actions_taken=Source blocked on the firewall",
        "cause=Exposed management ports",
        "scope=Portal front end only",
        "remedy=Management ports closed to the Internet",
    ]);
    c.cli(&["incidents", "transition", &id, "notified"]);
    c.cli(&["incidents", "transition", &id, "initial_report"]);
    let initial = c.cli(&["incidents", "report", &id, "--kind", "initial"]);
    for needle in [
        "BÁO CÁO BAN ĐẦU SỰ CỐ",
        "Sở Tài nguyên và Môi trường",
        "Nguyễn Văn An",
        "0912 345 678",
        "Cổng thông tin điện tử",
        "Cấp độ / Security level: 3",
        "198.51.100.10",
        "tnmt.example.gov.vn",
        "Thời điểm phát hiện / Detection time",
        "intrusion",
        "Port scan and login attempts",
        "Source blocked on the firewall",
        "Tình trạng / Status: Đã báo cáo ban đầu / initial report",
        "Nguồn tấn công / Attack source: 203.0.113.7",
        "Máy bị tấn công / Victim hosts: 198.51.100.10",
        "Số / No.: SC-",
        "Nơi nhận / Recipients: ",
        "Người lập / Reported by: admin",
    ] {
        assert!(initial.contains(needle), "`{needle}` missing from the initial report:\n{initial}");
    }
    let early = c.cli_output(&["incidents", "report", &id, "--kind", "completion"]);
    assert!(stderr(&early).contains("needs a closed incident"), "{}", stderr(&early));
    c.cli(&["incidents", "transition", &id, "in_progress"]);
    c.cli(&["incidents", "transition", &id, "closed"]);
    let bad = c.cli_output(&["incidents", "transition", &id, "notified"]);
    assert!(stderr(&bad).contains("cannot change state"), "{}", stderr(&bad));
    let completion: Value =
        serde_json::from_str(&c.cli(&["incidents", "report", &id, "--kind", "completion", "--json"]))
            .unwrap();
    for field in
        ["response_ended", "cause", "scope", "remedy", "detection_time", "description", "actions_taken"]
    {
        assert!(completion[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {completion}");
    }
    assert_eq!(completion["system"]["security_level"], 3);
    assert_eq!(completion["attacker"], serde_json::json!(["203.0.113.7"]));
    assert_eq!(completion["victim"], serde_json::json!(["198.51.100.10"]));
    assert!(
        completion["report_number"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{:06}-KT", id.parse::<u64>().unwrap()))
    );
    assert!(!completion["recipients"].as_array().unwrap().is_empty());
    let ev = &completion["evidence"][0];
    assert_eq!((ev["detector"].as_str(), ev["count"].as_u64()), (Some("ioc"), Some(ports.len() as u64)));
    for f in ["signature_id", "signature", "first_seen", "last_seen"] {
        assert!(!ev[f].is_null(), "evidence.{f} in {completion}");
    }
    assert_eq!(completion["reporting_unit"]["contact_email"], "an.nv@tnmt.example.gov.vn");
    let done: Value = serde_json::from_str(&c.cli(&["incidents", "show", &id, "--json"])).unwrap();
    assert_eq!(done["state"], "closed");
    assert_eq!(done["assignee"], "tran.thi.b");
    assert!(done["deadline"].is_null(), "every deadline met: {done}");
    let actions: Vec<&str> =
        done["history"].as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap()).collect();
    for a in ["detected", "ack", "assign", "note", "update", "transition", "report"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(done["history"].as_array().unwrap().iter().any(|h| h["actor"] == "admin"));
    let shown = c.cli(&["incidents", "show", &id]);
    assert!(
        !shown.contains("detected → detected"),
        "the history starts with the opening, not a transition:\n{shown}"
    );
    assert!(shown.contains("detected → notified"), "{shown}");

    // the coverage view: supervised system, contact gaps, four layers
    let cov = json_lines(&c.cli(&["coverage", "--json", "--agency", "SO-TNMT"]));
    let a = cov.iter().find(|v| v["type"] == "agency").unwrap();
    assert_eq!(a["systems"], 1);
    assert_eq!(a["systems_without_approved_level"].as_array().unwrap().len(), 1);
    assert!(a["missing_contacts"].as_array().unwrap().iter().any(|m| m == "response"), "{a}");
    assert_eq!(a["layers"].as_array().unwrap().len(), 4);
    assert!(a["stored_alerts"].as_u64().unwrap() >= ports.len() as u64);
    assert_eq!(a["retention_days"], 90);
}

/// Two agencies with agents, alerts and incidents.
fn two_agencies(tmp: &Path) -> (Collector, Vec<Agent>, u64, u64) {
    two_agencies_at(tmp, "", None)
}

/// Two agencies with one system and one agent each; each agent replays a
/// scan of its system made a minute ago, so each agency has one incident.
/// `config` is added to the collector's configuration.
pub(crate) fn two_agencies_with(tmp: &Path, config: &str) -> (Collector, Vec<Agent>, u64, u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    two_agencies_at(tmp, config, Some(now - Duration::from_secs(60)))
}

fn two_agencies_at(tmp: &Path, config: &str, start: Option<Duration>) -> (Collector, Vec<Agent>, u64, u64) {
    let mut c = Collector::init(tmp);
    if !config.is_empty() {
        c.set_config(config);
    }
    c.start();
    let mut agents = Vec::new();
    let mut systems = Vec::new();
    for (code, attacker, target) in
        [("SO-A", [203, 0, 113, 1], [198, 51, 100, 1]), ("SO-B", [203, 0, 113, 2], [198, 51, 100, 2])]
    {
        c.add_agency(code, &format!("Agency {code}"));
        let ip = format!("{}.{}.{}.{}", target[0], target[1], target[2], target[3]);
        let out = c.cli(&[
            "system",
            "add",
            "--agency",
            code,
            "--name",
            "Portal",
            "--level",
            "2",
            "--public-ip",
            &ip,
        ]);
        systems.push(last_line(&out).parse::<u64>().unwrap());
        let dir = tmp.join(code);
        std::fs::create_dir_all(&dir).unwrap();
        let mut agent = Agent::new(&dir, "agent");
        agent.enroll(&c, &c.token(code, None));
        let (pcap, ioc) = scan_at(&dir, attacker, target, &[22, 80, 443], start);
        agent.start(&[
            "--pcap",
            pcap.to_str().unwrap(),
            "--ioc",
            ioc.to_str().unwrap(),
            "--exit-when-drained",
        ]);
        assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
        agents.push(agent);
    }
    wait_for("both incidents", Duration::from_secs(20), || (incidents(&c).len() == 2).then_some(()));
    (c, agents, systems[0], systems[1])
}

/// An `agency` operator of A sees nothing of B through any RPC; every
/// refusal is in the audit log; `audit verify` detects tampering of an
/// export and of the stored log.
#[test]
fn agency_operator_is_confined_and_the_audit_chain_detects_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, agents, sys_a, sys_b) = two_agencies(tmp.path());
    let pa = tmp.path().join("op-a.profile");
    let out = c.cli(&[
        "operator",
        "add",
        "--name",
        "op-a",
        "--role",
        "agency",
        "--agency",
        "SO-A",
        "--out",
        pa.to_str().unwrap(),
    ]);
    assert!(out.contains("op-a"), "{out}");
    let bad = c.cli_output(&["operator", "add", "--name", "x", "--role", "agency", "--out", "/tmp/never"]);
    assert!(stderr(&bad).contains("the agency role needs an agency"), "{}", stderr(&bad));
    let all = incidents(&c);
    let inc_b = all.iter().find(|i| i["agency"] == "SO-B").unwrap()["id"].as_u64().unwrap().to_string();
    let agent_b = agents[1].agent_id();

    let ok = |args: &[&str]| {
        let o = cli_as(&pa, &c, args);
        assert!(o.status.success(), "canhgac {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let denied = |args: &[&str]| {
        let o = cli_as(&pa, &c, args);
        assert_eq!(o.status.code(), Some(1), "canhgac {args:?} must be refused: {}", stdout(&o));
        assert!(stderr(&o).contains("not allowed"), "canhgac {args:?}: {}", stderr(&o));
        assert_plain_error(&stderr(&o));
    };
    // what A may see: only A
    for v in json_lines(&ok(&["agents", "list", "--json"])) {
        assert_eq!(v["agency"], "SO-A");
    }
    let alerts = json_lines(&ok(&["alerts", "list", "--json"]));
    assert_eq!(alerts.len(), 3);
    assert!(alerts.iter().all(|a| a["canhgac"]["agency"] == "SO-A"));
    let mine = json_lines(&ok(&["incidents", "list", "--json"]));
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["agency"], "SO-A");
    let sys = json_lines(&ok(&["system", "list", "--json"]));
    assert_eq!(sys.iter().map(|s| s["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![sys_a]);
    assert!(!ok(&["agency", "list"]).contains("SO-B"));
    assert!(!ok(&["system", "export", "--format", "json"]).contains("SO-B"));
    assert!(!ok(&["agency", "export"]).contains("SO-B"));
    let cov = ok(&["coverage", "--json"]);
    assert!(cov.contains("SO-A") && !cov.contains("SO-B"), "{cov}");
    ok(&["policy", "list"]);
    every_list_prints_json_and_csv(&c, &tmp.path().join("SO-A/attackers.txt"));
    // one definition of online: the agents list and coverage agree
    let listed = json_lines(&c.cli(&["agents", "list", "--json"]));
    let covered = json_lines(&c.cli(&["coverage", "--json"]));
    assert_eq!(listed.len(), 2);
    for a in &listed {
        let g = covered.iter().find(|g| g["type"] == "agent" && g["agent_id"] == a["agent_id"]).unwrap();
        assert_eq!(a["online"], g["online"], "agents list {a}\ncoverage {g}");
        assert_eq!(a["state"] == "online", g["online"] == true, "{a}");
    }
    let my_id = mine[0]["id"].as_u64().unwrap().to_string();
    ok(&["incidents", "note", &my_id, "seen by the agency"]);
    // the agency reads its own incident's reports and fills in its part
    ok(&[
        "incidents",
        "set",
        &my_id,
        "description=Quét cổng từ bên ngoài",
        "actions_taken=Chặn địa chỉ nguồn",
    ]);
    let report = ok(&["incidents", "report", &my_id, "--kind", "initial"]);
    assert!(report.contains("Quét cổng từ bên ngoài") && report.contains("Chặn địa chỉ nguồn"), "{report}");
    ok(&[
        "incidents",
        "set",
        &my_id,
        "cause=Cổng quản trị mở ra Internet",
        "scope=Chỉ cổng thông tin",
        "remedy=Đóng cổng quản trị",
        "consequences=Không mất dữ liệu",
    ]);
    // the completion report carries them once the incident is closed
    for state in ["notified", "initial_report", "in_progress", "closed"] {
        c.cli(&["incidents", "transition", &my_id, state]);
    }
    let filled: Value =
        serde_json::from_str(&ok(&["incidents", "report", &my_id, "--kind", "completion", "--json"]))
            .unwrap();
    for (field, value) in [
        ("description", "Quét cổng từ bên ngoài"),
        ("actions_taken", "Chặn địa chỉ nguồn"),
        ("cause", "Cổng quản trị mở ra Internet"),
        ("scope", "Chỉ cổng thông tin"),
        ("remedy", "Đóng cổng quản trị"),
        ("consequences", "Không mất dữ liệu"),
    ] {
        assert_eq!(filled[field], value, "{field} in {filled}");
    }
    denied(&["incidents", "set", &inc_b, "cause=x", "consequences=y"]);
    let theirs: Value = serde_json::from_str(&c.cli(&["incidents", "show", &inc_b, "--json"])).unwrap();
    assert!(theirs["fields"].get("cause").is_none(), "{theirs}");
    let o = cli_as(&pa, &c, &["incidents", "set", &my_id, "owner_cannot_handle=true"]);
    assert!(stderr(&o).contains("not `owner_cannot_handle`"), "{}", stderr(&o));
    // ... and keeps its own contact points current, nothing else
    ok(&["agency", "set", "SO-A", "response.mobile=0912 000 111", "response.name=Lê Văn C"]);
    assert!(c.cli(&["agency", "show", "SO-A"]).contains("0912 000 111"));
    let o = cli_as(&pa, &c, &["agency", "set", "SO-A", "name=Renamed"]);
    assert!(stderr(&o).contains("not `name`"), "{}", stderr(&o));
    denied(&["agency", "set", "SO-B", "response.mobile=1"]);
    // asking for B: refused
    denied(&["agents", "list", "--agency", "SO-B"]);
    denied(&["alerts", "list", "--agency", "SO-B"]);
    denied(&["incidents", "list", "--agency", "SO-B"]);
    denied(&["incidents", "show", &inc_b]);
    denied(&["incidents", "note", &inc_b, "x"]);
    denied(&["incidents", "report", &inc_b]);
    denied(&["system", "show", &sys_b.to_string()]);
    denied(&["system", "list", "--agency", "SO-B"]);
    denied(&["system", "export", "--agency", "SO-B"]);
    denied(&["agency", "show", "SO-B"]);
    denied(&["coverage", "--agency", "SO-B"]);
    denied(&["policy", "list", "--agency", "SO-B"]);
    // what the role may not do at all
    denied(&["incidents", "transition", &inc_b, "notified"]);
    denied(&["system", "add", "--agency", "SO-A", "--name", "x", "--level", "1"]);
    denied(&["agent", "revoke", &agent_b]);
    denied(&["agent", "link", &agent_b, "--system", &sys_a.to_string()]);
    denied(&["token", "create", "--agency", "SO-B"]);
    denied(&["audit", "verify"]);
    denied(&["operator", "add", "--name", "y", "--role", "admin", "--out", "/tmp/never"]);
    // the subscription is refused too
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prof = Profile::load(&pa).unwrap();
    let code = rt.block_on(async {
        let ch = prof.client(Some(&c.url())).unwrap().connect(Duration::from_secs(5)).await.unwrap();
        let mut op = OperatorClient::new(ch);
        let a = op
            .subscribe_alerts(SubscribeAlertsRequest {
                after_cursor: Some(0),
                agency: "SO-B".into(),
                min_severity: 0,
            })
            .await;
        let i = op
            .subscribe_incidents(SubscribeIncidentsRequest { after_cursor: Some(0), agency: "SO-B".into() })
            .await;
        (a.err().map(|s| s.code()), i.err().map(|s| s.code()))
    });
    assert_eq!(code, (Some(tonic::Code::PermissionDenied), Some(tonic::Code::PermissionDenied)));
    // an unfiltered incident subscription carries only A
    let changes = rt.block_on(async {
        let ch = prof.client(Some(&c.url())).unwrap().connect(Duration::from_secs(5)).await.unwrap();
        let mut s = OperatorClient::new(ch)
            .subscribe_incidents(SubscribeIncidentsRequest { after_cursor: Some(0), agency: String::new() })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(2), s.message()).await {
            got.push(m.incident.unwrap().agency);
        }
        got
    });
    assert!(!changes.is_empty() && changes.iter().all(|a| a == "SO-A"), "{changes:?}");

    // the auditor reads the log but changes nothing
    let pq = tmp.path().join("auditor.profile");
    c.cli(&["operator", "add", "--name", "inspector", "--role", "auditor", "--out", pq.to_str().unwrap()]);
    let o = cli_as(&pq, &c, &["incidents", "transition", &inc_b, "notified"]);
    assert!(stderr(&o).contains("not allowed"), "{}", stderr(&o));
    let o = cli_as(&pq, &c, &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let log = json_lines(&c.cli(&["audit", "list"]));
    let refused: Vec<&Value> =
        log.iter().filter(|e| e["operator"] == "op-a" && e["outcome"] == "PermissionDenied").collect();
    assert!(refused.len() >= 18, "{} refusals logged", refused.len());
    assert!(refused.iter().any(|e| e["action"] == "ListAlerts" && e["target"] == "SO-B"), "{refused:?}");
    assert!(
        refused.iter().any(|e| e["action"] == "GetIncident" && e["target"] == format!("incident {inc_b}"))
    );
    assert!(refused.iter().any(|e| e["action"] == "SubscribeAlerts"));
    assert!(log.iter().any(|e| e["operator"] == "inspector"
        && e["action"] == "BulkIncidentAction"
        && e["outcome"] == "PermissionDenied"));
    assert!(
        log.iter().any(|e| e["operator"] == "admin" && e["action"] == "AddSystem" && e["outcome"] == "ok")
    );
    let v = c.cli(&["audit", "verify"]);
    assert!(v.contains("audit log intact"), "{v}");

    // a tampered export: the first bad entry is named
    let export = c.cli(&["audit", "list"]);
    let mut lines: Vec<String> = export.lines().map(String::from).collect();
    let victim = lines
        .iter()
        .position(|l| l.contains("\"operator\":\"op-a\"") && l.contains("PermissionDenied"))
        .unwrap();
    let seq = json_lines(&lines[victim])[0]["seq"].as_u64().unwrap();
    lines[victim] = lines[victim].replace("PermissionDenied", "ok");
    let file = tmp.path().join("audit.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let o = c.cli_output(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("entry {seq}: hash does not match")), "{}", stderr(&o));

    // the untouched export verifies, offline against the signed head and
    // against the collector's chain
    std::fs::write(&file, &export).unwrap();
    let ok_export = c.cli(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(
        ok_export.contains("audit export intact") && ok_export.contains("matches the collector"),
        "{ok_export}"
    );
    let entries: Vec<Value> = json_lines(&export).into_iter().filter(|v| v.get("type").is_none()).collect();
    let head = json_lines(&export).into_iter().find(|v| v["type"] == "head").expect("a signed head");
    let refused = |text: String, why: &str| {
        std::fs::write(&file, text).unwrap();
        let o = c.cli_output(&["audit", "verify", "--file", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{why}: {}", stdout(&o));
        stderr(&o)
    };
    // an edited time (the hash covers time_us; `time` must agree with it)
    let mut t = entries.clone();
    t[0]["time"] = Value::from("2020-01-01T00:00:00Z");
    let text = t.iter().chain([&head]).map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
    let e = refused(text, "edited time");
    assert!(e.contains("`time`") && e.contains("edited"), "{e}");
    // a cut tail
    let text = entries[..entries.len() - 2].iter().chain([&head]).map(|v| v.to_string()).collect::<Vec<_>>();
    let e = refused(text.join("\n"), "cut tail");
    assert!(e.contains("entries were cut"), "{e}");
    // an entry edited and every later hash recomputed
    let mut r = entries.clone();
    let k = r.len() / 2;
    // (an edit that changes something, whatever the entry was)
    r[k]["outcome"] = Value::from(if r[k]["outcome"] == "ok" { "PermissionDenied" } else { "ok" });
    let mut prev = r[k - 1]["hash"].as_str().unwrap().to_string();
    for v in r.iter_mut().skip(k) {
        v["prev_hash"] = Value::from(prev.clone());
        let rec = canhgac_collector::store::AuditRec {
            seq: v["seq"].as_u64().unwrap(),
            time_us: v["time_us"].as_i64().unwrap(),
            operator: v["operator"].as_str().unwrap().into(),
            role: v["role"].as_str().unwrap().into(),
            operator_agency: v["operator_agency"].as_str().unwrap().into(),
            action: v["action"].as_str().unwrap().into(),
            target: v["target"].as_str().unwrap().into(),
            outcome: v["outcome"].as_str().unwrap().into(),
            detail: v["detail"].as_str().unwrap().into(),
            prev_hash: prev.clone(),
            ..Default::default()
        };
        prev = canhgac_collector::audit::seal(&rec);
        v["hash"] = Value::from(prev.clone());
    }
    let text = r.iter().chain([&head]).map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
    let e = refused(text.clone(), "recomputed hashes");
    assert!(e.contains("the chain was recomputed"), "{e}");
    // ... and with a head re-written to match, its signature fails
    let mut forged = head.clone();
    forged["hash"] = Value::from(prev);
    let text = r.iter().chain([&forged]).map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
    let e = refused(text, "forged head");
    assert!(e.contains("head was altered"), "{e}");

    // offline (the collector down): the export is still checked against its signed head
    c.kill();
    std::fs::write(&file, &export).unwrap();
    let offline = c.cli(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(
        offline.contains("audit export intact")
            && offline.contains("not compared with the collector's chain"),
        "{offline}"
    );
    let cut = entries[..entries.len() - 1].iter().chain([&head]).map(|v| v.to_string()).collect::<Vec<_>>();
    std::fs::write(&file, cut.join("\n")).unwrap();
    let o = c.cli_output(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("entries were cut"), "{}", stderr(&o));

    // the stored log, tampered in the database while the collector is down
    {
        let store = canhgac_collector::store::Store::open(&c.dir.join("db")).unwrap();
        let mut e = store.audit_after(seq - 1, 1).unwrap().remove(0);
        e.target = "SO-A".into();
        store.overwrite_audit_for_tests(&e).unwrap();
        store.flush_blocking().unwrap();
    }
    c.start();
    let o = c.cli_output(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains(&format!("entry {seq}: hash does not match")), "{}", stderr(&o));
}

/// Every list command (as admin, two agencies): `--format json` prints
/// what its `--json` prints, `--format csv` a header and one row per item.
fn every_list_prints_json_and_csv(c: &Collector, indicators: &Path) {
    c.cli(&["policy", "push", "--agency", "SO-A", indicators.to_str().unwrap()]);
    let lists: [(&[&str], &str); 8] = [
        (&["agency", "list"], "CODE,NAME,CREATED"),
        (&["agents", "list"], "AGENT ID,AGENCY,HOSTNAME"),
        (&["system", "list"], "ID,AGENCY,NAME,LEVEL"),
        (&["policy", "list"], "VERSION,SCOPE,FILES"),
        (&["operator", "list"], "NAME,ROLE,AGENCY"),
        (&["incidents", "list"], "ID,AGENCY,SYSTEM,CATEGORY"),
        (&["alerts", "list"], "TIME (+07:00),SEV,AGENCY"),
        (&["coverage"], "AGENCY,SUPERVISED,NO LEVEL"),
    ];
    for (cmd, header) in lists {
        let with = |extra: &[&str]| c.cli(&[cmd, extra].concat());
        let old = json_lines(&with(&["--json"]));
        let new = json_lines(&with(&["--format", "json"]));
        assert!(!old.is_empty(), "{cmd:?} --json printed nothing");
        assert_eq!(old.len(), new.len(), "{cmd:?}");
        for (o, n) in old.iter().zip(&new) {
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(o), keys(n), "{cmd:?} --format json is its --json");
            for k in ["type", "id", "code", "agent_id", "name", "version", "agency", "timestamp"] {
                assert_eq!(o.get(k), n.get(k), "{cmd:?}: {k}");
            }
        }
        let csv = with(&["--format", "csv"]);
        let blocks: Vec<&str> = csv.split("\n\n").collect();
        assert!(blocks[0].starts_with(header), "{cmd:?} --format csv:\n{csv}");
        if cmd == ["coverage"] {
            // agencies, then agents: a header and a row each
            let count = |t: &str| old.iter().filter(|v| v["type"] == t).count();
            assert_eq!(blocks.len(), 2, "{csv}");
            assert_eq!(blocks[0].lines().count(), 1 + count("agency"), "{csv}");
            assert!(blocks[1].starts_with("AGENT,AGENCY,HOST,STATE"), "{csv}");
            assert_eq!(blocks[1].lines().count(), 1 + count("agent"), "{csv}");
        } else {
            assert_eq!(csv.lines().count(), 1 + old.len(), "{cmd:?} --format csv:\n{csv}");
        }
        assert!(with(&["--excel"]).starts_with(&format!("\u{feff}{header}")), "{cmd:?} --excel");
    }
    // the tails too: JSON lines, or CSV with one header line
    let first_lines = |args: &[&str], n: usize| {
        let mut child = Command::new(bin("canhgac"))
            .arg("--profile")
            .arg(c.profile())
            .args(args)
            .args(["--from-cursor", "0"])
            .env_remove("CANHGAC_COLLECTOR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let lines: Vec<String> = (0..n)
            .map(|_| {
                let mut l = String::new();
                std::io::BufRead::read_line(&mut out, &mut l).unwrap();
                l.trim_end().to_string()
            })
            .collect();
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let j = first_lines(&["incidents", "tail", "--format", "json"], 1);
    let v: Value = serde_json::from_str(&j[0]).unwrap_or_else(|e| panic!("{e}: {}", j[0]));
    assert!(v["cursor"].is_u64() && v["id"].is_u64(), "{v}");
    let csv = first_lines(&["incidents", "tail", "--format", "csv"], 3);
    assert!(csv[0].starts_with("CURSOR,CHANGE,ID,AGENCY"), "{csv:?}");
    assert!(csv[1..].iter().all(|l| l.split(',').next().unwrap().parse::<u64>().is_ok()), "{csv:?}");
    let csv = first_lines(&["alerts", "tail", "--format", "csv"], 2);
    assert!(csv[0].starts_with("TIME (+07:00),SEV,AGENCY") && csv[1].contains(",SO-"), "{csv:?}");
}

/// The collector signs its audit chain's head periodically and keeps the
/// checkpoints: a chain rewritten in the database afterwards, every hash
/// recomputed so that it is consistent in itself and the listing's fresh
/// head signs it, still fails `audit verify` at the checkpoint; exports
/// carry the checkpoints and are checked against them offline.
#[test]
fn audit_checkpoints_catch_a_chain_rewritten_in_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[supervision]\naudit_head_interval = \"1s\"\n");
    c.start();
    c.add_agency("SO-A", "Agency A");
    c.add_agency("SO-B", "Agency B");
    c.cli(&["agency", "list"]);
    let export = wait_for("a signed checkpoint in the export", Duration::from_secs(30), || {
        let e = c.cli(&["audit", "list"]);
        json_lines(&e).iter().any(|v| v["type"] == "checkpoint").then_some(e)
    });
    let checkpoint = json_lines(&export).into_iter().find(|v| v["type"] == "checkpoint").unwrap();
    let at = checkpoint["seq"].as_u64().unwrap();
    assert!(at >= 2, "{checkpoint}");
    let v = c.cli(&["audit", "verify"]);
    assert!(v.contains("audit log intact") && !v.contains(" 0 signed checkpoints"), "{v}");
    let file = tmp.path().join("audit.jsonl");
    std::fs::write(&file, &export).unwrap();
    let v = c.cli(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert!(v.contains("audit export intact") && v.contains("signed checkpoints agree"), "{v}");
    // a forged checkpoint in an export is refused
    let forged: Vec<String> = export
        .lines()
        .map(|l| {
            if l.contains("\"checkpoint\"") { l.replacen("\"hash\":\"", "\"hash\":\"0", 1) } else { l.into() }
        })
        .collect();
    std::fs::write(&file, forged.join("\n")).unwrap();
    let o = c.cli_output(&["audit", "verify", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // rewrite entry 1 in the database and recompute every later hash
    c.kill();
    {
        let store = canhgac_collector::store::Store::open(&c.dir.join("db")).unwrap();
        let mut chain = store.audit_after(0, 100_000).unwrap();
        chain[0].target = "SO-Z".into();
        let mut prev = String::new();
        for e in chain.iter_mut() {
            e.prev_hash = prev.clone();
            e.hash = canhgac_collector::audit::seal(e);
            prev = e.hash.clone();
            store.overwrite_audit_for_tests(e).unwrap();
        }
        assert_eq!(canhgac_collector::audit::verify(&chain), Ok(chain.len()), "consistent in itself");
        store.flush_blocking().unwrap();
    }
    c.start();
    let o = c.cli_output(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("rewritten after it"), "{}", stderr(&o));
}

/// Stopping an agent raises `agent-silent` within the configured limit;
/// coverage shows it silent; no incident is opened for it.
#[test]
fn a_stopped_agent_raises_agent_silent_within_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[telemetry]\nheartbeat_interval = \"1s\"\n[supervision]\nagent_silence_limit = \"3s\"\n");
    c.start();
    c.add_agency("SO-A", "Agency A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-A", None));
    let burst = Burst::new(tmp.path(), 5, "[uplink]\nheartbeat_interval = \"1s\"\n");
    agent.start(&burst.args(&[]));
    wait_for("the agent online", Duration::from_secs(30), || {
        let cov = json_lines(&c.cli(&["coverage", "--json"]));
        cov.iter().any(|v| v["type"] == "agent" && v["online"] == true).then_some(())
    });
    // running agents stay quiet
    std::thread::sleep(Duration::from_secs(5));
    let silent =
        |c: &Collector| c.alerts().into_iter().filter(|a| a["canhgac"]["detector"] == "agent-silent").count();
    assert_eq!(silent(&c), 0, "a heartbeating agent is not silent");
    agent.kill();
    let stopped = Instant::now();
    wait_for("agent-silent", Duration::from_secs(15), || (silent(&c) == 1).then_some(()));
    let took = stopped.elapsed();
    assert!(took >= Duration::from_millis(2500) && took <= Duration::from_secs(6), "raised after {took:?}");
    let a = c.alerts().into_iter().find(|a| a["canhgac"]["detector"] == "agent-silent").unwrap();
    assert_eq!(a["canhgac"]["agent_id"], agent.agent_id().as_str());
    assert_eq!(a["canhgac"]["agency"], "SO-A");
    assert_eq!(a["alert"]["signature_id"], 9_100_001);
    let cov = json_lines(&c.cli(&["coverage", "--json"]));
    let g = cov.iter().find(|v| v["type"] == "agent").unwrap();
    assert_eq!((g["online"].as_bool(), g["silent"].as_bool()), (Some(false), Some(true)));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(silent(&c), 1, "one alert per silence");
    assert!(incidents(&c).iter().all(|i| i["category"] != "sensor_outage"));
    // back online, then silent again: a second alert
    agent.restart();
    wait_for("the agent back", Duration::from_secs(30), || {
        let cov = json_lines(&c.cli(&["coverage", "--json"]));
        cov.iter().any(|v| v["type"] == "agent" && v["online"] == true).then_some(())
    });
    agent.kill();
    wait_for("a second agent-silent", Duration::from_secs(15), || (silent(&c) == 2).then_some(()));
}

/// A policy pushed with `--all` reaches every connected agent; the
/// indicator list is applied live (alerts start without a restart) and
/// the coverage view shows the version.
#[test]
fn a_policy_push_reaches_every_connected_agent_and_applies_live() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[telemetry]\nheartbeat_interval = \"1s\"\n");
    c.start();
    let mut agents = Vec::new();
    for code in ["SO-A", "SO-B"] {
        c.add_agency(code, code);
        let dir = tmp.path().join(code);
        std::fs::create_dir_all(&dir).unwrap();
        let mut agent = Agent::new(&dir, "agent");
        agent.enroll(&c, &c.token(code, None));
        // 20 s of DNS queries for late.example, not on any list yet
        let frames: Vec<Vec<u8>> =
            (0..400).map(|i| dns_query(&format!("q{i}.late.example"), i as u16, 1024 + i as u16)).collect();
        let pcap = dir.join("slow.pcap");
        write_raw_pcap(&pcap, &frames);
        let ioc = dir.join("local.txt");
        std::fs::write(&ioc, "unrelated.example\n").unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(&cfg, "version = 1\n[uplink]\nheartbeat_interval = \"1s\"\n").unwrap();
        agent.start(&[
            "--config",
            cfg.to_str().unwrap(),
            "--pcap",
            pcap.to_str().unwrap(),
            "--ioc",
            ioc.to_str().unwrap(),
            "--replay-pps",
            "20",
        ]);
        agents.push(agent);
    }
    wait_for("both agents online", Duration::from_secs(30), || {
        let cov = json_lines(&c.cli(&["coverage", "--json"]));
        (cov.iter().filter(|v| v["type"] == "agent" && v["online"] == true).count() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.alerts().is_empty());

    let list = tmp.path().join("national-ioc.txt");
    std::fs::write(&list, "# pushed by the department\nlate.example\n").unwrap();
    let settings = tmp.path().join("detectors.toml");
    std::fs::write(&settings, "[ioc]\nseverity = 1\n").unwrap();
    let rules = tmp.path().join("local.rules");
    std::fs::write(&rules, "alert tcp any any -> any 23 (msg:\"telnet\"; sid:1000001;)\n").unwrap();
    let pushed = Instant::now();
    let out = c.cli(&[
        "policy",
        "push",
        "--all",
        list.to_str().unwrap(),
        settings.to_str().unwrap(),
        rules.to_str().unwrap(),
    ]);
    let version = last_line(&out);
    let version_n: u64 = version.parse().unwrap();
    assert!(out.contains("sent to 2 connected agent(s)"), "{out}");
    let cov = wait_for("both agents on the new version", Duration::from_secs(10), || {
        let cov = json_lines(&c.cli(&["coverage", "--json"]));
        let on: Vec<&Value> =
            cov.iter().filter(|v| v["type"] == "agent" && v["policy_version"] == version_n).collect();
        (on.len() == 2).then_some(cov)
    });
    eprintln!("policy version {version} on both agents after {:?}", pushed.elapsed());
    assert!(cov.iter().filter(|v| v["type"] == "agency").all(|v| v["policy_version"] == version_n));
    // applied live: alerts for the pushed indicator, at the pushed severity
    let alerts = wait_for("alerts from the pushed list", Duration::from_secs(15), || {
        let a = c.alerts();
        let agencies: HashSet<String> =
            a.iter().map(|x| x["canhgac"]["agency"].as_str().unwrap().to_string()).collect();
        (agencies.len() == 2).then_some(a)
    });
    assert!(
        alerts.iter().all(|a| a["canhgac"]["list"] == "national-ioc.txt" && a["alert"]["severity"] == 1),
        "{:?}",
        alerts[0]
    );
    for agent in &agents {
        let logs = agent.logs();
        assert!(logs.contains("detection engine swapped"), "{logs}");
        assert!(agent.state_dir.join(format!("policy/v{version}/local.rules")).exists());
    }
    // each agent reports how the policy's rule file loaded
    wait_for("per-file rule loads in the policy status", Duration::from_secs(15), || {
        let a = json_lines(&c.cli(&["agents", "list", "--json"]));
        a.iter()
            .all(|x| {
                x["policy_rule_files"]
                    == serde_json::json!([{"name": "local.rules", "loaded": 1, "total": 1}])
            })
            .then_some(())
    });
    // one agency only; a restarted agent keeps its policy
    let out = c.cli(&["policy", "push", "--agency", "SO-B", list.to_str().unwrap()]);
    let v2 = last_line(&out);
    wait_for("SO-B on the second version", Duration::from_secs(10), || {
        let a = json_lines(&c.cli(&["agents", "list", "--json"]));
        let by: Vec<(String, String)> = a
            .iter()
            .map(|x| (x["agency"].as_str().unwrap().into(), x["policy_version"].to_string()))
            .collect();
        (by.contains(&("SO-B".into(), v2.clone())) && by.contains(&("SO-A".into(), version.clone())))
            .then_some(())
    });
    let bad =
        c.cli_output(&["policy", "push", "--agency", "SO-B", tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let history = json_lines(&c.cli(&["policy", "list", "--json"]));
    assert_eq!(history.len(), 2);

    // a rule file the agents' parser cannot fully load is refused, every
    // bad line listed, nothing stored; --allow-skipped takes it
    let broken = tmp.path().join("broken.rules");
    std::fs::write(
        &broken,
        "alert tcp any any -> any 80 (msg:\"ok\"; content:\"GET\"; sid:1000001; rev:1;)\n\
         alert tcp any any -> any 80 (msg:\"bad\"; frobnicate:3; sid:1000002; rev:1;)\n\
         alert udp any any -> any 53 (msg:\"bad too\"; content:\"x\"; byte_test:9,>,1,0; sid:1000003; rev:1;)\n",
    )
    .unwrap();
    let o = c.cli_output(&["policy", "push", "--agency", "SO-B", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("canhgac: error: policy push: refused: 2 rule(s) would be skipped"), "{e}");
    assert!(e.contains("broken.rules:2 sid 1000002: ") && e.contains("frobnicate"), "{e}");
    assert!(e.contains("broken.rules:3 sid 1000003: "), "{e}");
    assert_eq!(json_lines(&c.cli(&["policy", "list", "--json"])).len(), 2, "nothing stored");
    let o =
        c.cli_output(&["policy", "push", "--agency", "SO-B", "--allow-skipped", broken.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped by the agents: broken.rules:2 sid 1000002"), "{}", stderr(&o));
    assert_eq!(json_lines(&c.cli(&["policy", "list", "--json"])).len(), 3);
}

async fn operator_client(c: &Collector) -> OperatorClient<tonic::transport::Channel> {
    let p = Profile::load(&c.profile()).unwrap();
    let ch = p.client(Some(&c.url())).unwrap().connect(Duration::from_secs(5)).await.unwrap();
    OperatorClient::new(ch)
}

/// A subscriber that disconnects in the middle of a burst resumes from its
/// last cursor and receives every alert, and every incident change,
/// exactly once.
#[test]
fn subscriptions_resume_from_the_cursor_without_gaps_or_repeats() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-A", "A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-A", None));
    // 600 connections from 150 listed addresses: 600 alerts, one incident
    // per attacker (inbound episodes group by attacker)
    let n = 600;
    let attacker = |i: usize| [203, 0, 113 + (i % 150 / 100) as u8, (i % 150 % 100) as u8 + 1];
    let frames: Vec<Vec<u8>> =
        (0..n).map(|i| syn(attacker(i), 40_000, [198, 51, 100, 9], 1024 + i as u16)).collect();
    let pcap = tmp.path().join("burst.pcap");
    write_raw_pcap(&pcap, &frames);
    let ioc = tmp.path().join("ioc.txt");
    std::fs::write(
        &ioc,
        (0..150)
            .map(|i| {
                let a = attacker(i);
                format!("{}.{}.{}.{}\n", a[0], a[1], a[2], a[3])
            })
            .collect::<String>(),
    )
    .unwrap();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(&cfg, "version = 1\n[uplink]\nbatch_max_records = 10\n").unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (alerts, changes) = rt.block_on(async {
        let mut op = operator_client(&c).await;
        let mut a = op
            .subscribe_alerts(SubscribeAlertsRequest { after_cursor: None, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut i = op
            .subscribe_incidents(SubscribeIncidentsRequest { after_cursor: None, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        agent.start(&[
            "--config",
            cfg.to_str().unwrap(),
            "--pcap",
            pcap.to_str().unwrap(),
            "--ioc",
            ioc.to_str().unwrap(),
            "--replay-pps",
            "400",
            "--exit-when-drained",
        ]);
        // read part of the burst, then drop both streams and the connection
        let mut alerts: Vec<(u64, String)> = Vec::new();
        let mut changes: Vec<(u64, u64, u64)> = Vec::new();
        while alerts.len() < 120 {
            let m = a.message().await.unwrap().unwrap();
            alerts.push((m.cursor, m.eve_json));
        }
        while changes.len() < 30 {
            let m = i.message().await.unwrap().unwrap();
            let inc = m.incident.unwrap();
            changes.push((m.cursor, inc.id, inc.alert_count));
        }
        drop(a);
        drop(i);
        drop(op);
        tokio::time::sleep(Duration::from_millis(1500)).await; // the burst goes on
        let mut op = operator_client(&c).await;
        let last_a = alerts.last().unwrap().0;
        let last_i = changes.last().unwrap().0;
        let mut a = op
            .subscribe_alerts(SubscribeAlertsRequest { after_cursor: Some(last_a), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let mut i = op
            .subscribe_incidents(SubscribeIncidentsRequest {
                after_cursor: Some(last_i),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let deadline = Instant::now() + Duration::from_secs(60);
        while alerts.len() < n && Instant::now() < deadline {
            if let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(2), a.message()).await {
                alerts.push((m.cursor, m.eve_json));
            }
        }
        // incident changes until every incident has all its alerts
        let mut counts = std::collections::HashMap::new();
        for (_, id, count) in &changes {
            counts.insert(*id, *count);
        }
        while (counts.len() < 150 || counts.values().sum::<u64>() < n as u64) && Instant::now() < deadline {
            if let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(2), i.message()).await {
                let inc = m.incident.unwrap();
                counts.insert(inc.id, inc.alert_count);
                changes.push((m.cursor, inc.id, inc.alert_count));
            }
        }
        // nothing more: no repeats
        while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(2), a.message()).await {
            alerts.push((m.cursor, m.eve_json));
        }
        while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_millis(500), i.message()).await {
            let inc = m.incident.unwrap();
            changes.push((m.cursor, inc.id, inc.alert_count));
        }
        (alerts, changes)
    });
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    assert_eq!(alerts.len(), n, "every alert once");
    let names: BTreeSet<String> = alerts
        .iter()
        .map(|(_, e)| {
            let v = serde_json::from_str::<Value>(e).unwrap();
            format!("{}:{}", v["src_ip"], v["dest_port"])
        })
        .collect();
    assert_eq!(names.len(), n, "no alert twice");
    assert!(alerts.windows(2).all(|w| w[0].0 < w[1].0), "cursor order");
    let cursors: Vec<u64> = changes.iter().map(|c| c.0).collect();
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1), "incident changes without gaps or repeats");
    let ids: BTreeSet<u64> = changes.iter().map(|c| c.1).collect();
    assert_eq!(ids.len(), 150);
    let final_counts: u64 = ids.iter().map(|id| changes.iter().rev().find(|c| c.1 == *id).unwrap().2).sum();
    assert_eq!(final_counts, n as u64);
    let listed = incidents(&c);
    assert_eq!(listed.len(), 150);
}

/// Rule packs are data: a pack from the configuration with a 2-second
/// notification deadline flags the incident overdue, records it in the
/// history once, and meeting the milestone clears the flag.
#[test]
fn a_configured_rule_pack_sets_deadlines_and_missed_ones_are_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    std::fs::write(
        c.dir.join("packs.toml"),
        "version = 1\n[[pack]]\nid = \"drill\"\nname = \"exercise\"\n[[pack.deadline]]\nid = \"notify\"\n\
         description = \"notify within 2 seconds\"\napplies = \"all\"\nfrom = \"detected\"\nwithin = \"2s\"\nmet_by = \"notified\"\n",
    )
    .unwrap();
    c.set_config(
        "[supervision]\nagent_silence_limit = \"40s\"\n[incidents]\nrule_packs = [\"drill\"]\n[regulation]\nrule_packs_file = \"packs.toml\"\n",
    );
    c.start();
    c.add_agency("SO-A", "A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-A", None));
    let (pcap, ioc) = scan(tmp.path(), [203, 0, 113, 9], [198, 51, 100, 9], &[22, 80]);
    agent.start(&["--pcap", pcap.to_str().unwrap(), "--ioc", ioc.to_str().unwrap(), "--exit-when-drained"]);
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    let inc = wait_for("the incident", Duration::from_secs(20), || incidents(&c).into_iter().next());
    assert_eq!(inc["deadline_id"], "drill/notify");
    assert_eq!(time_of(&inc["deadline"]) - time_of(&inc["detected"]), time::Duration::seconds(2));
    let id = inc["id"].as_u64().unwrap().to_string();
    let overdue = wait_for("the overdue flag", Duration::from_secs(30), || {
        let v: Value = serde_json::from_str(&c.cli(&["incidents", "show", &id, "--json"])).unwrap();
        v["history"].as_array().unwrap().iter().any(|h| h["action"] == "overdue").then_some(v)
    });
    assert_eq!(overdue["overdue"], true);
    assert_eq!(json_lines(&c.cli(&["incidents", "list", "--overdue", "--json"])).len(), 1);
    c.cli(&["incidents", "transition", &id, "notified"]);
    let v: Value = serde_json::from_str(&c.cli(&["incidents", "show", &id, "--json"])).unwrap();
    assert_eq!(v["overdue"], false, "{v}");
    assert_eq!(v["history"].as_array().unwrap().iter().filter(|h| h["action"] == "overdue").count(), 1);
    assert!(json_lines(&c.cli(&["incidents", "list", "--overdue", "--json"])).is_empty());
}

/// An admin revokes an analyst: its open subscription ends, its next calls
/// and handshakes are refused (also after a collector restart), the
/// revocation is in the audit log and its name cannot be given again; the
/// last admin cannot be revoked.
#[test]
fn a_revoked_operator_is_refused_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.cli(&["agency", "add", "--code", "SO-A", "--name", "A"]);
    let pa = tmp.path().join("analyst.profile");
    c.cli(&["operator", "add", "--name", "analyst-1", "--role", "analyst", "--out", pa.to_str().unwrap()]);
    let o = cli_as(&pa, &c, &["agency", "list"]);
    assert!(o.status.success() && stdout(&o).contains("SO-A"), "{}", stderr(&o));

    // an open subscription of the analyst
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prof = Profile::load(&pa).unwrap();
    let url = c.url();
    let mut sub = rt.block_on(async {
        let ch = prof.client(Some(&url)).unwrap().connect(Duration::from_secs(5)).await.unwrap();
        OperatorClient::new(ch)
            .subscribe_alerts(SubscribeAlertsRequest { after_cursor: Some(0), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
    });

    // the last admin cannot be revoked, an unknown operator is not found
    let o = c.cli_output(&["operator", "revoke", "admin"]);
    assert!(!o.status.success() && stderr(&o).contains("last admin"), "{}", stderr(&o));
    let o = c.cli_output(&["operator", "revoke", "nobody"]);
    assert!(!o.status.success() && stderr(&o).contains("not found"), "{}", stderr(&o));
    // an analyst may not revoke
    let o = cli_as(&pa, &c, &["operator", "revoke", "admin"]);
    assert!(stderr(&o).contains("not allowed"), "{}", stderr(&o));

    let out = c.cli(&["operator", "revoke", "analyst-1", "--reason", "left the department"]);
    assert!(out.contains("revoked operator analyst-1"), "{out}");
    // the subscription ends with the refusal within a couple of seconds
    let end = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), sub.message()).await });
    match end {
        Ok(Err(s)) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}"),
        other => panic!("the subscription goes on after the revocation: {other:?}"),
    }
    let o = cli_as(&pa, &c, &["agency", "list"]);
    assert!(!o.status.success(), "a revoked operator still reads: {}", stdout(&o));
    let list = json_lines(&c.cli(&["operator", "list", "--json"]));
    let rec = list.iter().find(|o| o["name"] == "analyst-1").unwrap();
    assert_eq!(rec["revoked_by"], "admin");
    assert_eq!(rec["revoke_reason"], "left the department");
    assert!(rec["revoked"].is_string(), "{rec}");
    let log = json_lines(&c.cli(&["audit", "list"]));
    assert!(log.iter().any(|e| e["action"] == "RevokeOperator"
        && e["operator"] == "admin"
        && e["target"] == "operator analyst-1"
        && e["outcome"] == "ok"));
    // the name cannot be given again (it would revive the old certificate)
    let again = tmp.path().join("again.profile");
    let o = c.cli_output(&[
        "operator",
        "add",
        "--name",
        "analyst-1",
        "--role",
        "analyst",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));

    // still refused after a restart (the revoked set is rebuilt from the store)
    c.kill();
    c.start();
    let o = cli_as(&pa, &c, &["agency", "list"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let o = c.cli_output(&["agency", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The issue-9 acceptance on captures: two agencies with systems of levels
/// 2–4 and internal networks, two agents replaying a C2 infection (Sofacy
/// DNS lookups), a workstation talking to an AgentTesla C2 server, an nmap
/// scan and SSH password guessing, plus informational rules: one incident
/// per real episode, attacker and victim in their roles, filed against
/// the system whose networks contain the victim or unattributed.
#[test]
fn real_captures_give_one_incident_per_episode_with_roles_and_systems() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    let ws = canhgac_tests::workspace();
    let add_system =
        |args: &[&str]| -> u64 { last_line(&c.cli(&[&["system", "add"], args].concat())).parse().unwrap() };
    c.add_agency("SO-A", "Sở A");
    c.add_agency("SO-B", "Sở B");
    let office = add_system(&[
        "--agency",
        "SO-A",
        "--name",
        "Mạng văn phòng",
        "--level",
        "3",
        "--network",
        "192.168.35.0/24",
    ]);
    let db =
        add_system(&["--agency", "SO-A", "--name", "CSDL", "--level", "4", "--public-ip", "198.51.100.50"]);
    let portal =
        add_system(&["--agency", "SO-B", "--name", "Cổng", "--level", "2", "--network", "10.99.0.0/24"]);
    // a CIDR with host bits is refused naming the field
    let bad = c.cli_output(&[
        "system",
        "add",
        "--agency",
        "SO-B",
        "--name",
        "x",
        "--level",
        "2",
        "--network",
        "10.1.2.3/16",
    ]);
    assert!(stderr(&bad).contains("network `10.1.2.3/16` has host bits set"), "{}", stderr(&bad));

    let rules = tmp.path().join("info.rules");
    std::fs::write(
        &rules,
        "alert dns any any -> any any (msg:\"ET INFO DNS query for a .info domain\"; dns.query; content:\".info\"; endswith; classtype:misc-activity; priority:3; sid:1000001; rev:1;)\n\
         alert tcp any any -> any 22 (msg:\"ET POLICY SSH client banner\"; flow:to_server,established; content:\"SSH-\"; depth:4; classtype:policy-violation; priority:3; sid:1000002; rev:1;)\n",
    )
    .unwrap();
    let pcap = |p: &str| ws.join(p).to_str().unwrap().to_string();
    let mut agents = Vec::new();
    for (agency, pcaps, system) in [
        ("SO-A", vec![pcap("deploy/demo/sofacy-dns.pcap"), pcap("deploy/demo/agenttesla-c2.pcap")], office),
        (
            "SO-B",
            vec![
                pcap("tests/detect/_gen/nmap-syn-vertical.pcap"),
                pcap("tests/detect/_pcap/zeek-sshguess.pcap"),
            ],
            portal,
        ),
    ] {
        let dir = tmp.path().join(agency);
        std::fs::create_dir_all(&dir).unwrap();
        let mut agent = Agent::new(&dir, "agent");
        agent.enroll(&c, &c.token(agency, None));
        c.cli(&["agent", "link", &agent.agent_id(), "--system", &system.to_string()]);
        let mut args: Vec<String> = vec!["--pcap".into()];
        args.extend(pcaps);
        args.extend([
            "--ioc".into(),
            pcap("deploy/demo/ioc.txt"),
            "--rules".into(),
            rules.to_str().unwrap().into(),
        ]);
        args.push("--exit-when-drained".into());
        agent.start(&args);
        agents.push(agent);
    }
    for a in &mut agents {
        assert_eq!(a.wait(Duration::from_secs(120)), 0, "{}", a.logs());
    }
    let total = c.alerts().len() as u64;
    let list = wait_for("correlation of every alert", Duration::from_secs(30), || {
        let l = incidents(&c);
        let counted: u64 = l.iter().map(|i| i["alert_count"].as_u64().unwrap()).sum();
        let informational = c
            .alerts()
            .iter()
            .filter(|a| a["alert"]["signature"].as_str().unwrap().starts_with("ET "))
            .count();
        (counted + informational as u64 >= total && !l.is_empty()).then_some(l)
    });
    let find = |victim: &str| {
        list.iter()
            .find(|i| i["victim"].as_array().unwrap().iter().any(|v| v == victim))
            .unwrap_or_else(|| panic!("no incident with victim {victim}: {list:#?}"))
    };
    // the informational rules fired, and opened nothing of their own
    let alerts = c.alerts();
    for sid in [1_000_001u64, 1_000_002] {
        assert!(alerts.iter().any(|a| a["alert"]["signature_id"] == sid), "rule {sid} did not fire");
    }
    assert_eq!(list.len(), 4, "one incident per episode: {list:#?}");

    let sofacy = find("192.168.35.10");
    assert_eq!((sofacy["agency"].as_str(), sofacy["category"].as_str()), (Some("SO-A"), Some("c2")));
    assert_eq!(sofacy["system"], office, "the system whose network holds the victim");
    let mut attackers: Vec<&str> =
        sofacy["attacker"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    attackers.sort();
    assert_eq!(attackers, ["drivres-update.info", "softupdates.info"], "the C2 domains, not the resolver");

    let tesla = find("192.168.1.108");
    assert_eq!(tesla["attacker"], serde_json::json!(["45.9.74.78"]));
    assert!(
        tesla["system"].is_null(),
        "no registered network holds the workstation: unattributed, never the agent's system"
    );

    let scan = find("10.99.0.2");
    assert_eq!((scan["agency"].as_str(), scan["category"].as_str()), (Some("SO-B"), Some("scanning")));
    assert_eq!(scan["attacker"], serde_json::json!(["10.99.0.1"]));
    assert_eq!(scan["system"], portal);

    let guess = find("192.168.56.103");
    assert_eq!(guess["attacker"], serde_json::json!(["192.168.56.1"]));
    assert!(guess["system"].is_null());
    assert_eq!(guess["category"], "intrusion");
    assert!(list.iter().all(|i| i["system"] != db), "nothing is filed against the level-4 database");
    assert!(list.iter().all(|i| i["serious"] == false && i["possibly_serious"] == false));

    // the alert filters keep what matches and leave out the rest
    let listed = |args: &[&str]| -> BTreeSet<String> {
        json_lines(&c.cli(&[&["alerts", "list", "--json", "--limit", "1000000"], args].concat()))
            .iter()
            .map(Value::to_string)
            .collect()
    };
    let expect = |keep: &dyn Fn(&Value) -> bool| -> BTreeSet<String> {
        alerts.iter().filter(|a| keep(a)).map(Value::to_string).collect()
    };
    let by_ip = listed(&["--ip", "10.99.0.2"]);
    assert_eq!(by_ip, expect(&|a| a["src_ip"] == "10.99.0.2" || a["dest_ip"] == "10.99.0.2"));
    assert!(!by_ip.is_empty() && by_ip.len() < alerts.len(), "--ip left out nothing: {}", by_ip.len());
    let by_src = listed(&["--src-ip", "10.99.0.1"]);
    assert_eq!(by_src, expect(&|a| a["src_ip"] == "10.99.0.1"));
    assert!(!by_src.is_empty() && by_src.len() < alerts.len(), "--src-ip left out nothing");
    assert!(listed(&["--src-ip", "10.99.0.2"]).is_disjoint(&by_src), "--src-ip matched a destination");
    let (scanning, c2) = (listed(&["--category", "scanning"]), listed(&["--category", "c2"]));
    assert!(!scanning.is_empty() && !c2.is_empty() && scanning.is_disjoint(&c2), "{scanning:?}\n{c2:?}");
    assert!(c2.iter().any(|a| a.contains("softupdates.info")), "{c2:?}");
    assert!(
        !scanning.iter().any(|a| a.contains("softupdates.info")),
        "--category scanning kept the C2 lookup"
    );

    // the report names both sides and the evidence
    let id = sofacy["id"].as_u64().unwrap().to_string();
    let report: Value =
        serde_json::from_str(&c.cli(&["incidents", "report", &id, "--kind", "initial", "--json"])).unwrap();
    assert_eq!(report["victim"], serde_json::json!(["192.168.35.10"]));
    assert_eq!(report["system"]["security_level"], 3);
    assert!(report["evidence"].as_array().unwrap().iter().any(|e| e["detector"] == "ioc"));
    let tesla_report: Value = serde_json::from_str(&c.cli(&[
        "incidents",
        "report",
        &tesla["id"].as_u64().unwrap().to_string(),
        "--kind",
        "initial",
        "--json",
    ]))
    .unwrap();
    assert!(tesla_report["system"].is_null() && tesla_report["unattributed"] == true, "{tesla_report}");
    let text = c.cli(&["incidents", "report", &tesla["id"].as_u64().unwrap().to_string()]);
    assert!(
        text.contains("unattributed") && text.contains("Nguồn tấn công / Attack source: 45.9.74.78"),
        "{text}"
    );

    // filters: by system, by category, by time; the table fits 120 columns
    let by_system = json_lines(&c.cli(&["incidents", "list", "--json", "--system", &office.to_string()]));
    assert_eq!(by_system.len(), 1);
    let unattributed = json_lines(&c.cli(&["incidents", "list", "--json", "--system", "0"]));
    assert_eq!(unattributed.len(), 2);
    assert_eq!(json_lines(&c.cli(&["incidents", "list", "--json", "--category", "scanning"])).len(), 1);
    assert!(c.cli(&["incidents", "list", "--json", "--since", "2030-01-01"]).trim().is_empty());
    let table = c.cli(&["incidents", "list"]);
    assert!(table.lines().all(|l| l.chars().count() <= 120), "{table}");
    assert!(table.contains("unattributed") && table.contains("in 4 d"), "{table}");
    let alerts_of_office = c.cli(&["alerts", "list", "--json", "--system", &office.to_string()]);
    assert!(alerts_of_office.lines().count() >= 2, "{alerts_of_office}");

    // dismissal: needs a reason; then neither open nor overdue, no deadline
    let gid = guess["id"].as_u64().unwrap().to_string();
    let bad = c.cli_output(&["incidents", "transition", &gid, "closed"]);
    assert!(stderr(&bad).contains("--reason false_positive or duplicate"), "{}", stderr(&bad));
    let bad = c.cli_output(&["incidents", "transition", &gid, "closed", "--reason", "maybe"]);
    assert!(stderr(&bad).contains("one of false_positive, duplicate, resolved"), "{}", stderr(&bad));
    c.cli(&["incidents", "transition", &gid, "closed", "--reason", "false_positive"]);
    let g: Value = serde_json::from_str(&c.cli(&["incidents", "show", &gid, "--json"])).unwrap();
    assert_eq!((g["dismissed"].as_bool(), g["state"].as_str()), (Some(true), Some("closed")));
    assert!(g["deadline"].is_null() && g["deadlines"].as_array().unwrap().is_empty(), "{g}");
    let open = json_lines(&c.cli(&["incidents", "list", "--json", "--open"]));
    assert!(open.iter().all(|i| i["id"].as_u64().unwrap().to_string() != gid));
    assert!(
        !json_lines(&c.cli(&["incidents", "list", "--json", "--overdue"])).iter().any(|i| i["id"] == g["id"])
    );
    let cov = json_lines(&c.cli(&["coverage", "--json", "--agency", "SO-B"]));
    let b = cov.iter().find(|v| v["type"] == "agency").unwrap();
    assert_eq!((b["open_incidents"].as_u64(), b["dismissed_incidents"].as_u64()), (Some(1), Some(1)), "{b}");
    let table = c.cli(&["coverage"]);
    assert!(table.lines().all(|l| l.chars().count() <= 120), "{table}");
    assert!(table.contains("independent inspection"), "the layers are named: {table}");

    // merge across agencies is refused; bulk transitions are all or none
    let (sid, tid, scid) =
        (id.clone(), tesla["id"].as_u64().unwrap().to_string(), scan["id"].as_u64().unwrap().to_string());
    let bad = c.cli_output(&["incidents", "merge", &sid, &scid]);
    assert!(stderr(&bad).contains("only incidents of one agency merge"), "{}", stderr(&bad));
    let bad = c.cli_output(&["incidents", "transition", &sid, &gid, "notified"]);
    assert!(stderr(&bad).contains(&format!("incident {gid}")), "{}", stderr(&bad));
    assert_eq!(
        json_lines(&c.cli(&["incidents", "list", "--json", "--state", "notified"])).len(),
        0,
        "nothing half-applied"
    );
    c.cli(&["incidents", "transition", &sid, &tid, "notified"]);
    assert_eq!(json_lines(&c.cli(&["incidents", "list", "--json", "--state", "notified"])).len(), 2);
    let merged = c.cli(&["incidents", "merge", &sid, &tid]);
    assert!(merged.contains(&format!("merged into incident {sid}")), "{merged}");
    let m: Value = serde_json::from_str(&c.cli(&["incidents", "show", &sid, "--json"])).unwrap();
    assert_eq!(
        m["alert_count"].as_u64().unwrap(),
        sofacy["alert_count"].as_u64().unwrap() + tesla["alert_count"].as_u64().unwrap()
    );
    let t: Value = serde_json::from_str(&c.cli(&["incidents", "show", &tid, "--json"])).unwrap();
    assert_eq!(
        (t["merged_into"].as_u64(), t["close_reason"].as_str()),
        (Some(sofacy["id"].as_u64().unwrap()), Some("duplicate"))
    );
    let log = json_lines(&c.cli(&["audit", "list"]));
    assert!(log.iter().any(|e| e["action"] == "MergeIncidents" && e["outcome"] == "ok"));
    assert!(log.iter().any(|e| e["action"] == "BulkIncidentAction" && e["outcome"] == "ok"));
}
