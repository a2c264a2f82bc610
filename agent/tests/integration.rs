//! The agent binary's command-line contract (no collector needed).

#![allow(clippy::unwrap_used)]

use std::process::Command;

mod corpus;
mod firewall;
mod host;
mod secrets;
mod syslog;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
}

#[test]
fn run_without_enrollment_exits_2_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent().args(["run", "--pcap", "x.pcap", "--state-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("not enrolled") && e.contains("canhgac-agent enroll"), "{e}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    for args in [
        vec!["run", "--state-dir", state, "--interface", "lo", "--pcap", "a.pcap"],
        vec!["run", "--state-dir", state, "--interface", "lo", "--exit-when-drained"],
        vec!["run", "--pcap", "a.pcap"],
        vec!["run", "--state-dir", state],
    ] {
        let out = agent().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn enroll_rejects_a_malformed_pin_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args([
            "enroll",
            "--collector",
            "https://127.0.0.1:1",
            "--token",
            "t",
            "--ca-pin",
            "xyz",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid CA pin"));
}

#[test]
fn analyze_refuses_a_bad_worker_count() {
    for bad in ["0", "65", "two"] {
        let out = agent().args(["analyze", "--pcap", "x.pcap", "--workers", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--workers {bad}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("--workers") && e.contains(bad), "{e}");
    }
}

#[test]
fn enroll_reports_an_unreachable_collector() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = agent()
        .args([
            "enroll",
            "--collector",
            &format!("https://127.0.0.1:{port}"),
            "--token",
            "t",
            "--ca-pin",
            &"ab".repeat(32),
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!dir.path().join("identity.toml").exists());
}

/// Detection cases in the style of suricata-verify: every directory of
/// `tests/detect/` with a `test.toml` (captures, indicator lists, rules,
/// event types, and the expected records) runs through the same engine as
/// `canhgac-agent analyze`. All failures are reported together.
#[test]
fn detection_cases() {
    use std::path::{Path, PathBuf};

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        #[allow(dead_code)]
        description: String,
        pcap: Vec<String>,
        #[serde(default)]
        ioc: Vec<String>,
        #[serde(default)]
        rules: Vec<String>,
        /// Rules that must load (so that a case expecting no alert cannot
        /// pass because its rules were skipped).
        rules_loaded: Option<usize>,
        eve_types: Option<String>,
        /// An agent configuration file (`analyze --config`).
        config: Option<String>,
        /// Why the outcome depends on the order of the flows in the
        /// capture (state one flow leaves for another): the case is not
        /// run with two workers, which may reach the flows in another order.
        flow_order: Option<String>,
        expect: Vec<Expect>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Expect {
        count: Option<usize>,
        at_least: Option<usize>,
        #[serde(rename = "match")]
        fields: toml::Table,
    }

    fn lookup<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
        path.split('.').try_fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        })
    }

    fn equal(j: &serde_json::Value, t: &toml::Value) -> bool {
        match t {
            toml::Value::String(s) => j.as_str() == Some(s.as_str()),
            toml::Value::Integer(i) => {
                j.as_i64() == Some(*i) || j.as_u64().is_some_and(|u| i64::try_from(u) == Ok(*i))
            }
            toml::Value::Boolean(b) => j.as_bool() == Some(*b),
            toml::Value::Float(f) => j.as_f64() == Some(*f),
            _ => false,
        }
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect");
    let rel = |dir: &Path, spec: &str| -> PathBuf {
        match spec.split_once(':') {
            Some((fmt, path)) if !fmt.contains('/') => {
                PathBuf::from(format!("{fmt}:{}", dir.join(path).display()))
            }
            _ => dir.join(spec),
        }
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("test.toml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "detection cases missing under {}", root.display());
    // What identifies a record whatever the order and timing of the
    // workers: a behavioural alert may be raised a few packets later with
    // two workers (they feed the shared detector in another interleaving).
    // The behavioural detectors report on the flow whose packet crossed
    // their threshold: which flow that is, is not part of the identity.
    fn identity(r: &serde_json::Value) -> String {
        let f = |k: &str| lookup(r, k).map(|v| v.to_string()).unwrap_or_default();
        let behaviour = lookup(r, "canhgac.detector")
            .and_then(|d| d.as_str())
            .is_some_and(|d| ["beacon", "bruteforce", "dns-tunnel", "icmp-tunnel", "portscan"].contains(&d));
        if behaviour {
            ["event_type", "alert.signature_id", "src_ip", "dest_ip"].map(f).join(" ")
        } else {
            ["event_type", "alert.signature_id", "src_ip", "src_port", "dest_ip", "dest_port", "flow_id"]
                .map(f)
                .join(" ")
        }
    }
    let mut failures = Vec::new();
    // Every case with one engine, then with two workers sharing the flows
    // (`analyze --workers 2`, as `capture.threads = 2` live): the same
    // expectations hold, and the same records come out.
    let mut one_worker: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (dir, workers) in dirs.iter().flat_map(|d| [(d, 1), (d, 2)]) {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let name = if workers == 1 { name } else { format!("{name} (2 workers)") };
        let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("test.toml")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/test.toml: {e}"));
        if workers > 1 && case.flow_order.is_some() {
            continue;
        }
        let opts = canhgac_agent::analyze::AnalyzeOptions {
            pcaps: case.pcap.iter().map(|p| dir.join(p)).collect(),
            ioc: case.ioc.iter().map(|p| rel(dir, p)).collect(),
            rules: case.rules.iter().map(|p| dir.join(p)).collect(),
            config: case.config.as_ref().map(|c| dir.join(c)),
            eve: case.eve_types.as_deref().map(|t| canhgac_agent::eve::EveTypes::parse(t).unwrap()),
            workers,
        };
        let mut out = Vec::new();
        let summary = match canhgac_agent::analyze::run(&opts, &mut out) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: analyze failed: {e}"));
                continue;
            }
        };
        let records: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut ids: Vec<String> = records.iter().map(identity).collect();
        ids.sort();
        let key = dir.display().to_string();
        match one_worker.get(&key) {
            None => {
                one_worker.insert(key, ids);
            }
            Some(one) if *one != ids => failures
                .push(format!("{name}: other records than with one worker:\n  one: {one:?}\n  two: {ids:?}")),
            Some(_) => {}
        }
        if let Some(n) = case.rules_loaded
            && summary.rules_loaded != n
        {
            failures.push(format!("{name}: {} rules loaded, expected {n}", summary.rules_loaded));
        }
        for (i, exp) in case.expect.iter().enumerate() {
            let n = records
                .iter()
                .filter(|r| exp.fields.iter().all(|(k, v)| lookup(r, k).is_some_and(|j| equal(j, v))))
                .count();
            let ok = match (exp.count, exp.at_least) {
                (Some(c), _) => n == c,
                (None, Some(a)) => n >= a,
                (None, None) => n >= 1,
            };
            if !ok {
                failures.push(format!(
                    "{name}: expectation {} ({:?}) matched {n} records (count {:?}, at least {:?}); {} records, {}",
                    i + 1,
                    exp.fields,
                    exp.count,
                    exp.at_least,
                    records.len(),
                    summary.line()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

/// The fuzz targets (see `fuzz/`) on mutated real traffic: every frame of
/// the detection-case captures, truncated, bit-flipped and spliced. A short
/// run on every test run; `cargo fuzz run TARGET` goes deeper.
#[test]
fn fuzz_smoke() {
    use canhgac_agent::{capture::pcap::PacketReader, fuzzing};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for dir in ["_pcap", "_gen"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pcap") {
                let mut r = PacketReader::open(&path).unwrap();
                while let Ok(Some(p)) = r.next_packet() {
                    frames.push(p.data.into_owned());
                }
            }
        }
    }
    assert!(frames.len() > 1000);
    let mut seed: u64 =
        std::env::var("CANHGAC_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9);
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let iterations = 20_000;
    for _ in 0..iterations {
        let base = &frames[(rnd() as usize) % frames.len()];
        let mut data = base.clone();
        match rnd() % 4 {
            0 => data.truncate((rnd() as usize) % (data.len() + 1)),
            1 => {
                for _ in 0..(1 + rnd() % 8) {
                    if !data.is_empty() {
                        let i = (rnd() as usize) % data.len();
                        data[i] ^= 1 << (rnd() % 8);
                    }
                }
            }
            2 => {
                let other = &frames[(rnd() as usize) % frames.len()];
                let cut = (rnd() as usize) % (data.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[(rnd() as usize) % (other.len() + 1)..]);
            }
            _ => {
                for _ in 0..(1 + rnd() % 16) {
                    if !data.is_empty() {
                        let i = (rnd() as usize) % data.len();
                        data[i] = rnd() as u8;
                    }
                }
            }
        }
        fuzzing::frame(&data);
        let mut e = vec![(rnd() % 8) as u8];
        e.extend_from_slice(&data);
        fuzzing::engine(&e);
        // application payloads: skip the headers at a random depth
        let start = (rnd() as usize) % (data.len().min(80) + 1);
        let payload = &data[start.min(data.len())..];
        fuzzing::dns(payload);
        fuzzing::tls(payload);
        fuzzing::http(payload);
        fuzzing::ssh(payload);
        fuzzing::indicators(payload);
    }
    // the rule parser and engine: mutated real rules (the suricata-verify
    // cases and the fuzz harness's own), each run on a mutated payload
    let mut rule_lines: Vec<Vec<u8>> =
        fuzzing::FIXED_RULES.lines().filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path().join("test.rules");
        if let Ok(text) = std::fs::read_to_string(&path) {
            rule_lines.extend(text.lines().filter(|l| l.starts_with("alert")).map(|l| l.as_bytes().to_vec()));
        }
    }
    assert!(rule_lines.len() > 20, "rule lines: {}", rule_lines.len());
    for _ in 0..3_000 {
        let mut text = rule_lines[(rnd() as usize) % rule_lines.len()].clone();
        match rnd() % 4 {
            0 => text.truncate((rnd() as usize) % (text.len() + 1)),
            1 => {
                // splice: the head of one rule, the options of another
                let other = &rule_lines[(rnd() as usize) % rule_lines.len()];
                text.truncate((rnd() as usize) % (text.len() + 1));
                text.extend_from_slice(&other[(rnd() as usize) % (other.len() + 1)..]);
            }
            2 => {
                for _ in 0..(1 + rnd() % 6) {
                    let i = (rnd() as usize) % text.len();
                    const SYNTAX: &[u8] = b" ;:,!|\\\"()0123456789-<>";
                    text[i] = SYNTAX[(rnd() as usize) % SYNTAX.len()];
                }
            }
            _ => {
                for _ in 0..(1 + rnd() % 6) {
                    let i = (rnd() as usize) % text.len();
                    text[i] = (rnd() as u8) | 1;
                }
            }
        }
        text.push(b'\n');
        text.extend_from_slice(&rule_lines[(rnd() as usize) % rule_lines.len()]);
        text.push(0);
        let frame = &frames[(rnd() as usize) % frames.len()];
        text.extend_from_slice(&frame[((rnd() as usize) % 60).min(frame.len())..]);
        fuzzing::rules(&text);
    }
    // the host sensor's parsers: mutated real authentication logs and pages
    let logs = [
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/host/elastic-auth.log")).unwrap(),
        br#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1700000000000000","SYSLOG_IDENTIFIER":"sshd","_PID":"7","MESSAGE":"Failed password for root from 1.2.3.4 port 5 ssh2"}
<38>1 2019-07-08T17:40:17.954167-04:00 h sshd 55555 - [a b="[x]"] Failed unknown for invalid user r from 192.0.2.2 port 55555 ssh2
<html><title>x</title><script src="https://a.example/x.js"></script><iframe width="0" src="//b"></iframe>hacked by x <?php eval($_POST['a']); ?>"#
            .to_vec(),
    ];
    let lines: Vec<&[u8]> = logs.iter().flat_map(|l| l.split(|b| *b == b'\n')).collect();
    for _ in 0..3_000 {
        let mut chunk = Vec::new();
        let start = (rnd() as usize) % lines.len();
        for l in lines.iter().skip(start).take(1 + (rnd() % 20) as usize) {
            chunk.extend_from_slice(l);
            chunk.push(b'\n');
        }
        for _ in 0..(rnd() % 12) {
            if !chunk.is_empty() {
                let i = (rnd() as usize) % chunk.len();
                chunk[i] = rnd() as u8;
            }
        }
        if rnd() % 4 == 0 {
            let cut = (rnd() as usize) % (chunk.len() + 1);
            chunk.truncate(cut);
        }
        fuzzing::auth_log(&chunk);
        fuzzing::web_content(&chunk);
    }
}

/// `analyze --pcap A B --rules R S --ioc I J`: several files after one flag
/// (the issue's `--pcap FILE...`), all of them used.
#[test]
fn analyze_takes_several_files_after_one_flag() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect");
    let p = |rel: &str| d.join(rel).to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let extra_ioc = tmp.path().join("extra.txt");
    std::fs::write(&extra_ioc, "# nothing in these captures\n203.0.113.77\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
        .args(["analyze", "--pcap"])
        .args([p("_pcap/sv-bug-28.pcap"), p("_pcap/sv-bug-2158-sofacy.pcap")])
        .arg("--rules")
        .args([p("rule-sv-bug-28/test.rules"), p("rule-sv-bug-5758/test.rules")])
        .arg("--ioc")
        .args([
            format!("maltrail:{}", p("_pcap/maltrail-apt_sofacy.txt")),
            extra_ioc.to_string_lossy().into(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let alerts: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rule_alerts = alerts.iter().filter(|a| a["canhgac"]["detector"] == "rule").count();
    let ioc_alerts = alerts.iter().filter(|a| a["canhgac"]["detector"] == "ioc").count();
    assert_eq!(rule_alerts, 4, "bug-28's four rules on its capture");
    assert!(ioc_alerts >= 2, "the Sofacy lookups in the second capture: {ioc_alerts}");
    assert!(stderr.contains("rules_loaded=5"), "both rule files: {stderr}");
}

/// `analyze` runs as many engines as the configuration's `capture.threads`
/// unless `--workers` says otherwise, with the same alerts.
#[test]
fn analyze_workers_from_the_configuration_or_the_flag() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(&cfg, "version = 1\n\n[capture]\nthreads = 2\n").unwrap();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
            .args(["analyze", "--pcap"])
            .arg(d.join("_pcap/zeek-sshguess.pcap"))
            .arg("--config")
            .arg(&cfg)
            .args(["--eve-types", "alert,flow"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let mut lines: Vec<String> =
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        lines.sort();
        (lines, stderr)
    };
    let (two, e2) = run(&[]);
    let (one, e1) = run(&["--workers", "1"]);
    assert!(e2.contains(" workers=2 "), "{e2}");
    assert!(e1.contains(" workers=1 "), "{e1}");
    // The flow records, and how many flows alerted. Which flow carries the
    // behavioural alert (brute force here) depends on which packet crossed
    // the threshold first, which two workers may interleave differently:
    // `flow.alerted` is compared as a count, not per flow.
    let flows = |v: &[String]| {
        let mut alerted = 0;
        let mut out: Vec<serde_json::Value> = v
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["event_type"] == "flow")
            .map(|mut r| {
                if r["flow"]["alerted"] == true {
                    alerted += 1;
                }
                r["flow"].as_object_mut().unwrap().remove("alerted");
                r
            })
            .collect();
        out.sort_by_key(|r| r.to_string());
        (out, alerted)
    };
    let ((f1, a1), (f2, a2)) = (flows(&one), flows(&two));
    assert!(f1.len() > 10, "{e1}");
    assert_eq!(f1, f2, "the same flow records with two workers");
    assert!(a1 >= 1, "the brute force alerts on a flow: {e1}");
    assert_eq!(a1, a2, "as many flows alerted with two workers");
}

/// An enrolled state directory made here (a CA and an agent certificate
/// from rcgen) whose collector address does not answer.
fn enrolled_state_dir() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["agent-1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = canhgac_agent::state::IdentityFile {
        version: 1,
        agent_id: "agent-1".into(),
        agency: "test-agency".into(),
        collector: format!("https://127.0.0.1:{port}"),
        enrolled_at: "2026-01-01T00:00:00Z".into(),
    };
    canhgac_agent::state::AgentIdentity::save_new(
        dir.path(),
        &file,
        &key.serialize_pem(),
        &cert.pem(),
        &ca.pem(),
    )
    .unwrap();
    dir
}

/// Issue 10: SIGTERM (what systemd sends) and SIGINT stop a running agent
/// with exit code 0, after its input stopped and its spool was flushed
/// (the records of the capture are in the spool afterwards); it used to
/// panic ("async fn resumed after completion", exit 101).
#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not async
fn sigterm_and_sigint_stop_a_running_agent_with_exit_code_0() {
    use std::time::{Duration, Instant};
    let pcap =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect/_gen/nmap-syn-vertical.pcap");
    for signal in ["TERM", "INT"] {
        let dir = enrolled_state_dir();
        let mut child = agent()
            .args(["run", "--state-dir"])
            .arg(dir.path())
            .arg("--pcap")
            .arg(&pcap)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // running: the capture was read and its records committed
        let start = Instant::now();
        while !dir.path().join("spool").exists() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert!(child.try_wait().unwrap().is_none(), "the agent stopped by itself");
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(status.success());
        let start = Instant::now();
        let code = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s.code();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "SIG{signal}: the agent did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(code, Some(0), "SIG{signal}: {stderr}");
        assert!(!stderr.contains("panicked"), "SIG{signal}: {stderr}");
        let spool = canhgac_agent::spool::Spool::open(&dir.path().join("spool"), 64 << 20).unwrap();
        assert!(!spool.is_empty(), "SIG{signal}: the portscan alert of the capture is in the spool");
    }
}
