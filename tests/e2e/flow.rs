//! The scripted operator flow and delivery guarantees.

use std::{collections::HashSet, time::Duration};

use canhgac_tests::{Agent, Burst, Collector, bin, rrnames, wait_for, workspace};

use crate::setup;

/// init → serve → agency add → token create → enroll → run --pcap --ioc
/// --exit-when-drained → alerts list --json.
#[test]
fn scripted_flow_delivers_ioc_alerts_with_agency() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let demo = workspace().join("deploy/demo");
    agent.start(&[
        "--pcap",
        demo.join("sofacy-dns.pcap").to_str().unwrap(),
        "--pcap",
        demo.join("agenttesla-c2.pcap").to_str().unwrap(),
        "--ioc",
        demo.join("ioc.txt").to_str().unwrap(),
        "--exit-when-drained",
    ]);
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());

    let alerts = c.alerts();
    let mut indicators: Vec<String> =
        alerts.iter().map(|a| a["canhgac"]["indicator"].as_str().unwrap().to_string()).collect();
    indicators.sort();
    assert_eq!(indicators, ["45.9.74.78", "drivres-update.info", "softupdates.info"]);
    let agent_id = agent.agent_id();
    for a in &alerts {
        assert_eq!(a["event_type"], "alert");
        assert_eq!(a["canhgac"]["agency"], "SO-TTTT");
        assert_eq!(a["canhgac"]["agent_id"], agent_id.as_str());
        assert_eq!(a["canhgac"]["detector"], "ioc");
        assert!(a["canhgac"]["technique"].as_str().unwrap().starts_with("T1071"));
        assert!(a["community_id"].as_str().unwrap().starts_with("1:"));
        for field in ["timestamp", "src_ip", "dest_ip", "proto", "flow_id"] {
            assert!(!a[field].is_null(), "{field} missing in {a}");
        }
        let sev = a["alert"]["severity"].as_u64().unwrap();
        assert!((1..=4).contains(&sev));
        assert!(a["alert"]["signature_id"].as_u64().unwrap() >= 9_000_000);
    }
    let c2 = alerts.iter().find(|a| a["canhgac"]["indicator"] == "45.9.74.78").unwrap();
    assert_eq!(c2["dest_ip"], "45.9.74.78");
    assert_eq!(c2["dest_port"], 80);
    assert_eq!(c2["src_ip"], "192.168.1.108");

    // the human table and the filters
    let table = c.cli(&["alerts", "list"]);
    assert!(table.lines().all(|l| l.chars().count() <= 120), "the default table fits 120 columns:\n{table}");
    assert!(table.contains("+07:00") && table.contains("SO-TTTT"), "{table}");
    let wide = c.cli(&["alerts", "list", "--wide"]);
    assert!(wide.contains("drivres-update.info") && wide.contains("SO-TTTT"), "{wide}");
    // CSV: a header and one row per alert
    let csv = c.cli(&["alerts", "list", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 1 + alerts.len(), "{csv}");
    assert!(csv.starts_with("TIME (+07:00),SEV,AGENCY"), "{csv}");
    let excel = c.cli(&["alerts", "list", "--excel"]);
    assert!(excel.starts_with('\u{feff}'));
    // filters: by address, signature id and detector; a bad address is named
    let by_ip = c.cli(&["alerts", "list", "--json", "--dest-ip", "45.9.74.78"]);
    assert_eq!(by_ip.lines().count(), 1, "{by_ip}");
    let sid = c2["alert"]["signature_id"].as_u64().unwrap().to_string();
    assert_eq!(c.cli(&["alerts", "list", "--json", "--signature-id", &sid]).lines().count(), 1);
    assert_eq!(c.cli(&["alerts", "list", "--json", "--detector", "ioc"]).lines().count(), alerts.len());
    assert!(c.cli(&["alerts", "list", "--json", "--detector", "portscan"]).trim().is_empty());
    // `canhgac alerts tail --json | head -1`: a closed pipe ends it at once, status 0
    let mut tail = std::process::Command::new(bin("canhgac"))
        .args(["--profile", c.profile().to_str().unwrap(), "alerts", "tail", "--json", "--from-cursor", "0"])
        .env_remove("CANHGAC_COLLECTOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(tail.stdout.take().unwrap()), &mut first)
        .unwrap();
    assert!(first.contains("\"event_type\":\"alert\""), "{first}");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = tail.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "tail did not end on a closed pipe");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut tail.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "quietly: {err}");
    let bad = c.cli_output(&["alerts", "list", "--ip", "10.0.0.300"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`10.0.0.300` is not an IP address"));
    assert!(c.cli(&["alerts", "list", "--json", "--agency", "OTHER"]).trim().is_empty());
    let one = c.cli(&["alerts", "list", "--json", "--limit", "1"]);
    assert_eq!(one.lines().count(), 1);
    let since = c.cli(&["alerts", "list", "--json", "--since", "2020-01-01T00:00:00Z"]);
    assert_eq!(since.lines().count(), 1, "only the 2020s AgentTesla flow: {since}");

    let agents = c.agents();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["agency"], "SO-TTTT");
    assert_eq!(agents[0]["records_stored"], 3);
    assert_eq!(agents[0]["counters"]["records_acked"], 3);
    assert!(agents[0]["counters"]["packets_captured"].as_u64().unwrap() >= 30);
    assert!(agents[0]["os"].as_str().is_some());
}

/// `run --rules`: signature alerts go through the spool and the stream like
/// the others, and the heartbeat reports the rules in force and skipped.
#[test]
fn run_with_rules_delivers_signature_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let case = workspace().join("tests/detect");
    let rules = tmp.path().join("local.rules");
    let mut text = std::fs::read_to_string(case.join("rule-sv-bug-28/test.rules")).unwrap();
    text.push_str("alert tcp any any -> any any (msg:\"needs recursion\"; pcre:\"/(a(?R)?b)/\"; sid:7;)\n");
    std::fs::write(&rules, text).unwrap();
    agent.start(&[
        "--pcap",
        case.join("_pcap/sv-bug-28.pcap").to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--exit-when-drained",
    ]);
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    let alerts = c.alerts();
    let mut sids: Vec<u64> = alerts.iter().map(|a| a["alert"]["signature_id"].as_u64().unwrap()).collect();
    sids.sort();
    assert_eq!(sids, [2001340, 2001341, 2001342, 2001343]);
    for a in &alerts {
        assert_eq!(a["canhgac"]["detector"], "rule");
        assert_eq!(a["canhgac"]["agency"], "SO-TTTT");
        assert_eq!(a["src_ip"], "192.168.2.7");
        assert_eq!(a["http"]["hostname"], "btg.btgrab.com");
    }
    let agents = c.agents();
    assert_eq!(agents[0]["counters"]["rules_loaded"], 4);
    assert_eq!(agents[0]["counters"]["rules_skipped"], 1);
}

/// After a replay without `--exit-when-drained` the agent waits, idle:
/// it must not spin on the finished input (it did, at 100% of two cores).
#[test]
fn finished_replay_leaves_the_agent_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let demo = workspace().join("deploy/demo");
    agent.start(&[
        "--pcap",
        demo.join("sofacy-dns.pcap").to_str().unwrap(),
        "--ioc",
        demo.join("ioc.txt").to_str().unwrap(),
    ]);
    wait_for("the alerts", Duration::from_secs(30), || (c.alerts().len() == 2).then_some(()));
    let pid = agent.pid().unwrap();
    let before = canhgac_tests::cpu_time(pid);
    let wall = std::time::Instant::now();
    wait_for("three seconds", Duration::from_secs(10), || {
        (wall.elapsed() >= Duration::from_secs(3)).then_some(())
    });
    let used = canhgac_tests::cpu_time(pid) - before;
    assert!(used < Duration::from_millis(600), "an idle agent used {used:?} of CPU in 3 s");
    assert!(agent.try_wait().is_none(), "the agent keeps running after the replay");
}

/// The collector is down for the whole replay, then started: everything
/// spooled is delivered.
#[test]
fn collector_down_for_the_whole_replay_then_started() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    c.kill();
    let burst = Burst::new(
        tmp.path(),
        400,
        "[uplink]\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\nbatch_max_records = 50\n",
    );
    let names = burst.names.clone();
    agent.start(&burst.args(&["--exit-when-drained"]));
    // The replay finishes into the spool while nobody listens.
    wait_for("the replay to finish", Duration::from_secs(30), || {
        agent.logs().contains("capture replayed").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.try_wait().is_none(), "the agent must wait for the collector");
    c.start();
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    let got = rrnames(&c.alerts());
    assert_eq!(got.len(), names.len());
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), names.into_iter().collect::<HashSet<_>>());
}

/// A batch larger than the collector accepts is rejected with a status and
/// the agent splits it; nothing is lost.
#[test]
fn oversized_batches_are_rejected_and_split() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[limits]\nmax_batch_bytes = \"64KiB\"\n");
    c.start();
    c.add_agency("A", "Agency A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("A", None));
    let burst =
        Burst::new(tmp.path(), 600, "[uplink]\nbatch_max_records = 5000\nbatch_max_bytes = \"8MiB\"\n");
    let names = burst.names.clone();
    agent.start(&burst.args(&["--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    assert_eq!(rrnames(&c.alerts()).len(), names.len());
    let agents = c.agents();
    assert!(agents[0]["batches_rejected"].as_u64().unwrap() >= 1, "{agents:?}");
    assert!(agents[0]["counters"]["batches_rejected"].as_u64().unwrap() >= 1);
    assert!(c.logs().contains("batch rejected"));
}

/// A spool cap below what the replay produces while the collector is down:
/// the excess is evicted, counted, and reported in heartbeats; what is
/// stored plus what was dropped is what was produced.
#[test]
fn spool_cap_drops_are_counted_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    c.kill();
    let burst = Burst::new(
        tmp.path(),
        4000,
        "[spool]\nmax_bytes = \"1MiB\"\n[uplink]\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n",
    );
    agent.start(&burst.args(&["--exit-when-drained"]));
    wait_for("the replay to finish", Duration::from_secs(60), || {
        agent.logs().contains("capture replayed").then_some(())
    });
    assert!(agent.logs().contains("spool full"), "{}", agent.logs());
    c.start();
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());
    let stored = c.alerts().len() as u64;
    let a = &c.agents()[0];
    let dropped = a["counters"]["spool_dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{a}");
    assert_eq!(a["counters"]["spool_dropped_by_severity"]["2"].as_u64().unwrap(), dropped);
    assert_eq!(stored + dropped, 4000, "stored {stored} + dropped {dropped}");
    assert_eq!(a["counters"]["records_produced"], 4000);
}

/// The demo, the README's main command (with `--exit`): both agencies'
/// incidents with their attackers, the console's address with a password
/// that signs in, and a weekly report that is a PDF.
#[test]
fn demo_shows_incidents_the_console_and_a_report() {
    let out = std::process::Command::new(bin("canhgac-demo")).arg("--exit").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "DEMO",
        "Operator console: https://127.0.0.1:",
        "192.168.56.1",
        "45.9.74.78",
        "SO-TTTT",
        "UBND-HUYEN",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Weekly report of SO-TTTT: "))
        .unwrap_or_else(|| panic!("no report path:\n{stdout}"));
    let pdf = std::fs::read(report.trim()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF: {report}");
    let dir = std::path::Path::new(report.trim()).parent().unwrap().to_path_buf();
    let _ = std::fs::remove_dir_all(dir);
}

/// `canhgac alerts tail` follows new alerts and, when the collector restarts
/// under it, resumes from its last cursor: every alert exactly once.
#[test]
fn alerts_tail_resumes_after_a_collector_restart_without_gaps() {
    use std::io::BufRead as _;
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    let mut tail = std::process::Command::new(bin("canhgac"))
        .arg("--profile")
        .arg(c.profile())
        .args(["alerts", "tail", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let burst = Burst::new(
        tmp.path(),
        600,
        "[uplink]\nbatch_max_records = 20\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n",
    );
    let names = burst.names.clone();
    agent.start(&burst.args(&["--replay-pps", "300", "--exit-when-drained"]));
    wait_for("some alerts", Duration::from_secs(30), || (c.alerts().len() > 50).then_some(()));
    c.kill();
    std::thread::sleep(Duration::from_millis(500));
    c.start();
    assert_eq!(agent.wait(Duration::from_secs(60)), 0, "{}", agent.logs());

    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < names.len() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            seen.push(v["dns"]["query"][0]["rrname"].as_str().unwrap().to_string());
        }
    }
    // nothing more arrives: no repeats
    std::thread::sleep(Duration::from_millis(500));
    while let Ok(line) = rx.try_recv() {
        seen.push(line);
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen.len(), names.len(), "tail printed {} of {}", seen.len(), names.len());
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), names.into_iter().collect::<HashSet<_>>());
}

/// Live capture with pnet on the loopback interface (needs CAP_NET_RAW; CI
/// runs as root): UDP flows to a listed address raise one alert per flow.
#[test]
fn live_capture_on_loopback_raises_ioc_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let ioc = tmp.path().join("ioc.txt");
    std::fs::write(&ioc, "127.77.0.1\n").unwrap();
    agent.start(&["--interface", "lo", "--ioc", ioc.to_str().unwrap()]);
    wait_for("the capture to start", Duration::from_secs(20), || {
        let logs = agent.logs();
        assert!(!logs.contains("permission denied"), "live capture needs CAP_NET_RAW (run as root): {logs}");
        logs.contains("capturing").then_some(())
    });
    // A listener, so that no ICMP port-unreachable (a fourth flow) comes back.
    let _sink = std::net::UdpSocket::bind("127.77.0.1:9999").unwrap();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        ports.push(s.local_addr().unwrap().port());
        for _ in 0..5 {
            s.send_to(b"beacon", "127.77.0.1:9999").unwrap();
        }
    }
    let alerts = wait_for("three alerts", Duration::from_secs(30), || {
        let a = c.alerts();
        (a.len() >= 3).then_some(a)
    });
    std::thread::sleep(Duration::from_secs(1));
    let alerts = if c.alerts().len() > alerts.len() { c.alerts() } else { alerts };
    assert_eq!(alerts.len(), 3, "one alert per flow: {alerts:?}");
    let mut got: Vec<u64> = alerts.iter().map(|a| a["src_port"].as_u64().unwrap()).collect();
    got.sort();
    ports.sort();
    assert_eq!(got, ports.iter().map(|p| u64::from(*p)).collect::<Vec<_>>());
    for a in &alerts {
        assert_eq!(a["dest_ip"], "127.77.0.1");
        assert_eq!(a["canhgac"]["matched"], "dest_ip");
    }
    agent.kill();
}
