//! Operations: the Prometheus and health endpoints of the collector and of
//! an agent (`[metrics] listen`), scraped while a real agent streams to a
//! real collector (the series agree with what was stored and acknowledged);
//! JSON logs; `check-config`; SIGHUP reload of the agent.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use canhgac_tests::{Agent, Collector, free_port, wait_for};

use crate::supervision::scan_at;

/// One plain HTTP GET: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of the series `name` (with its labels as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_endpoints_agree_with_what_was_stored_and_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let (cport, aport) = (free_port(), free_port());
    let mut c = Collector::init(tmp.path());
    c.set_config(&format!("[metrics]\nlisten = \"127.0.0.1:{cport}\"\n[log]\nformat = \"json\"\n"));
    c.start();
    c.add_agency("SO-A", "Agency A");
    let agent_dir = tmp.path().join("a");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let mut agent = Agent::new(&agent_dir, "agent");
    agent.enroll(&c, &c.token("SO-A", None));
    let ports = [21, 22, 23, 25, 80, 110, 143, 443];
    let (pcap, ioc) = scan_at(&agent_dir, [203, 0, 113, 7], [198, 51, 100, 10], &ports, None);
    let config = agent_dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("version = 1\n[metrics]\nlisten = \"127.0.0.1:{aport}\"\n[log]\nformat = \"json\"\n"),
    )
    .unwrap();
    agent.start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        pcap.to_str().unwrap(),
        "--ioc",
        ioc.to_str().unwrap(),
    ]);
    let n = ports.len() as f64;
    wait_for("every alert stored", Duration::from_secs(30), || {
        (c.alerts().len() == ports.len()).then_some(())
    });

    // the agent: what it committed, acknowledged and holds
    let text = wait_for("the agent's acknowledgements counted", Duration::from_secs(20), || {
        let (status, text) = get(aport, "/metrics");
        (status == 200 && value(&text, "canhgac_agent_records_acked_total") == Some(n)).then_some(text)
    });
    assert_eq!(value(&text, "canhgac_agent_records_produced_total"), Some(n), "{text}");
    assert_eq!(value(&text, "canhgac_agent_alerts_by_detector{detector=\"ioc\"}"), Some(n), "{text}");
    assert_eq!(value(&text, "canhgac_agent_spool_records"), Some(0.0), "{text}");
    assert_eq!(
        value(&text, "canhgac_agent_spool_oldest_record_age_seconds"),
        Some(0.0),
        "nothing waits: {text}"
    );
    assert!(value(&text, "canhgac_agent_ack_seconds_count").is_some_and(|v| v >= 1.0), "{text}");
    assert!(value(&text, "canhgac_agent_packets_captured_total").is_some_and(|v| v >= n), "{text}");
    assert_eq!(value(&text, "canhgac_agent_packets_dropped_kernel_total"), Some(0.0), "{text}");
    assert_eq!(get(aport, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(aport, "/readyz").0, 200);

    // the collector: what it stored, who is connected, who called
    c.cli(&["alerts", "list", "--json"]);
    let (status, text) = get(cport, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(value(&text, "canhgac_collector_records_stored_total"), Some(n), "{text}");
    assert_eq!(value(&text, "canhgac_collector_records_duplicate_total"), Some(0.0), "{text}");
    assert_eq!(value(&text, "canhgac_collector_connected_agents"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "canhgac_collector_enrollments_total{outcome=\"enrolled\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(value(&text, "canhgac_collector_store_writable"), Some(1.0), "{text}");
    // the correlator catches up with what was stored
    wait_for("the correlator caught up", Duration::from_secs(20), || {
        (value(&get(cport, "/metrics").1, "canhgac_collector_correlation_backlog") == Some(0.0)).then_some(())
    });
    assert!(value(&text, "canhgac_collector_database_bytes").is_some_and(|v| v > 0.0), "{text}");
    assert!(
        value(&text, "canhgac_collector_operator_calls_total{method=\"ListAlerts\",code=\"Ok\"}")
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(value(&text, "canhgac_collector_batches_total").is_some_and(|v| v >= 1.0), "{text}");
    assert!(value(&text, "canhgac_collector_ingest_seconds_count").is_some_and(|v| v >= 1.0), "{text}");
    // a refused operator call is counted with its status
    let o = c.cli_output(&["agents", "revoke", "no-such-agent"]);
    assert!(!o.status.success());
    let (_, text) = get(cport, "/metrics");
    assert!(
        text.lines().any(|l| l
            .starts_with("canhgac_collector_operator_calls_total{method=\"RevokeAgent\",code=\"NotFound\"}")),
        "{text}"
    );
    assert_eq!(get(cport, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(cport, "/readyz").0, 200);

    // the agent gone: no longer connected
    agent.kill();
    wait_for("the agent disconnected", Duration::from_secs(20), || {
        (value(&get(cport, "/metrics").1, "canhgac_collector_connected_agents") == Some(0.0)).then_some(())
    });

    // `[log] format = "json"`: one JSON object per line, on both sides
    for (who, logs) in [("agent", agent.logs()), ("collector", c.logs())] {
        let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{who}: {logs}");
        for l in lines {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{who}: not a JSON line ({e}): {l}"));
            assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{who}: {l}");
        }
    }
}

/// `check-config` on both programs: a valid file is summarised (exit 0),
/// a wrong value is named with its file, line and field (exit 2), and
/// nothing is served or captured.
#[test]
fn check_config_summarises_a_valid_file_and_names_the_error_of_a_bad_one() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::init(tmp.path());
    let good = tmp.path().join("collector.toml");
    std::fs::write(
        &good,
        "version = 1\n[metrics]\n[console]\nlisten = \"127.0.0.1:8443\"\n[[reports.schedule]]\nkind = \"weekly\"\n",
    )
    .unwrap();
    let run = |bin: &str, args: &[&str]| Command::new(canhgac_tests::bin(bin)).args(args).output().unwrap();
    let data_dir = c.profile().parent().unwrap().to_str().unwrap().to_string();
    let o = run(
        "canhgac-collector",
        &["check-config", "--config", good.to_str().unwrap(), "--data-dir", &data_dir],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "is valid",
        "CA and server certificate readable",
        "metrics: http://127.0.0.1:9464/metrics",
        "scheduled: weekly report",
    ] {
        assert!(out.contains(want), "`{want}` not in:\n{out}");
    }
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\n[metrics]\nlisten = \"everywhere\"\n").unwrap();
    let o = run(
        "canhgac-collector",
        &["check-config", "--config", bad.to_str().unwrap(), "--data-dir", &data_dir],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:3") && err.contains("metrics.listen"), "{err}");

    let rules = tmp.path().join("local.rules");
    std::fs::write(
        &rules,
        "alert tcp any any -> any 22 (msg:\"ssh\"; flow:to_server; sid:1000001; rev:1;)\n\
         alert tcp any any -> any any (msg:\"bad\"; nosuchoption; sid:1000002; rev:1;)\n",
    )
    .unwrap();
    let ioc = tmp.path().join("ioc.txt");
    std::fs::write(&ioc, "203.0.113.7\nnot an address!\n").unwrap();
    let agent = tmp.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            "version = 1\n[ioc]\nfiles = [\"{}\"]\n[rules]\nfiles = [\"{}\"]\n[log]\nformat = \"json\"\n",
            ioc.display(),
            rules.display()
        ),
    )
    .unwrap();
    let o = run("canhgac-agent", &["check-config", "--config", agent.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("indicators: 1 entries from 1 list(s), 1 line(s) skipped"), "{out}");
    assert!(out.contains("rules: 1 loaded, 1 skipped"), "{out}");
    std::fs::write(&agent, "version = 1\n[log]\nformat = \"xml\"\n").unwrap();
    let o = run("canhgac-agent", &["check-config", "--config", agent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("agent.toml:3") && err.contains("not text or json"), "{err}");
}

/// SIGHUP: a configuration with an error changes nothing (the agent keeps
/// running and says why); a good one swaps the engine while capture goes
/// on: an indicator list edited in place starts matching the packets that
/// follow; a setting that needs a restart is named and kept.
#[test]
fn sighup_reloads_indicator_lists_and_refuses_a_bad_configuration() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = crate::setup(tmp.path());
    let dir = tmp.path().join("input");
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (1..=300).collect();
    let (pcap, ioc) = scan_at(&dir, [203, 0, 113, 7], [198, 51, 100, 10], &ports, None);
    std::fs::write(&ioc, "# nothing of this capture yet\n198.18.0.1\n").unwrap();
    let config = dir.join("agent.toml");
    let good = |spool: &str| {
        format!(
            "version = 1\n[capture]\npcap = [\"{}\"]\nreplay_pps = 25\n[ioc]\nfiles = [\"{}\"]\n[spool]\nmax_bytes = \"{spool}\"\n",
            pcap.display(),
            ioc.display()
        )
    };
    std::fs::write(&config, good("64MiB")).unwrap();
    agent.start(&["--config", config.to_str().unwrap()]);
    let hup =
        |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    let pid = wait_for("the agent running", Duration::from_secs(10), || agent.pid());
    let ioc_alerts = |c: &Collector| -> Vec<serde_json::Value> {
        c.alerts().into_iter().filter(|a| a["canhgac"]["detector"] == "ioc").collect()
    };
    std::thread::sleep(Duration::from_secs(2));
    assert!(ioc_alerts(&c).is_empty(), "no listed address yet");

    // a bad file: refused, the agent goes on with the running configuration
    std::fs::write(&config, "version = 1\n[ioc]\nseverity = 9\n").unwrap();
    hup(pid);
    wait_for("the refusal logged", Duration::from_secs(10), || {
        agent.logs().contains("configuration not reloaded; the running one stays").then_some(())
    });
    assert_eq!(agent.try_wait(), None, "{}", agent.logs());

    // the list now names the scanner, and the spool size changed too
    std::fs::write(&ioc, "203.0.113.7\n").unwrap();
    std::fs::write(&config, good("32MiB")).unwrap();
    hup(pid);
    wait_for("the reload logged", Duration::from_secs(10), || {
        agent.logs().contains("SIGHUP: configuration reloaded").then_some(())
    });
    let logs = agent.logs();
    assert!(logs.contains("need a restart") && logs.contains("spool.max_bytes"), "{logs}");
    let alerts = wait_for("alerts of the listed scanner", Duration::from_secs(30), || {
        let a = ioc_alerts(&c);
        (!a.is_empty()).then_some(a)
    });
    assert!(alerts.iter().all(|a| a["src_ip"] == "203.0.113.7"), "{alerts:?}");
    assert_eq!(agent.try_wait(), None, "{}", agent.logs());
    assert_eq!(agent.terminate(Duration::from_secs(30)), 0);
    c.kill();
}

/// The systemd units in `deploy/` pass `systemd-analyze verify` with no
/// warning (the binaries they name pointed at this build; `package.rs`
/// verifies them as the Debian packages install them).
#[test]
fn systemd_units_verify_clean() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for (unit, bins) in [
        ("canhgac-agent.service", &["canhgac-agent"][..]),
        ("canhgac-collector.service", &["canhgac-collector"][..]),
    ] {
        let mut text = std::fs::read_to_string(deploy.join(unit)).unwrap();
        for b in bins {
            text = text.replace(&format!("/usr/bin/{b} "), &format!("{} ", canhgac_tests::bin(b).display()));
        }
        assert!(!text.contains("/usr/bin/canhgac"), "{unit} names a binary the test does not map");
        let path = tmp.path().join(unit);
        std::fs::write(&path, text).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (Debian's systemd) is needed");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "{unit}: {err}");
    }
}

/// `canhgac-loadgen` against a real collector: its agents enroll with
/// real tokens, everything they send is acknowledged and stored once, and
/// its summary line says so.
#[test]
fn loadgen_counts_what_the_collector_stored() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    // its own collector's process (tests run side by side)
    let pid = c.pid().unwrap().to_string();
    let o = Command::new(canhgac_tests::bin("canhgac-loadgen"))
        .arg("--profile")
        .arg(c.profile())
        .args([
            "--agents",
            "4",
            "--duration",
            "2",
            "--batch",
            "50",
            "--rate",
            "2000",
            "--collector-pid",
            &pid,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let fields: std::collections::HashMap<&str, f64> = out
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    for k in ["acked_per_s", "p50_ack_ms", "p99_ack_ms", "collector_rss_mib"] {
        assert!(fields.contains_key(k), "{k} missing: {out}");
    }
    assert_eq!(fields["failed_agents"], 0.0, "{out}");
    assert!(fields["acked"] > 0.0 && fields["acked"] == fields["sent"], "{out}");
    assert!(fields["collector_rss_mib"] > 0.0, "the collector's RSS read from /proc: {out}");
    // paced at 2000/s for 2 s: about 4000, never far above
    assert!(fields["acked"] <= 6000.0, "{out}");
    let stored = c.alerts().len() as f64;
    assert_eq!(stored, fields["acked"], "every acknowledged record stored once: {out}");
    c.kill();
}
