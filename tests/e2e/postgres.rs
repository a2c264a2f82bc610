//! The collector on PostgreSQL: a throwaway cluster owned by the test (see
//! `canhgac_collector::store::pg::testcluster`), the real binaries, an agent
//! streaming a replay, alerts listed by `canhgac`.

use std::{process::Command, time::Duration};

use canhgac_collector::store::pg::testcluster::TestCluster;
use canhgac_tests::{Agent, Burst, Collector, bin, free_port, rrnames, wait_for};

fn cluster() -> TestCluster {
    TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL for the test: {e}"))
}

#[test]
fn collector_on_postgres_stores_and_lists_an_agents_alerts() {
    const N: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let pg = cluster();
    pg.create_db("e2e").unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config(&format!("[store]\nbackend = \"postgres\"\nurl = \"{}\"\n", pg.url("e2e")));
    c.start();
    c.add_agency("SO-TTTT", "Sở Thông tin và Truyền thông");
    let token = c.token("SO-TTTT", None);
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &token);
    let burst = Burst::new(tmp.path(), N, "[uplink]\nbatch_max_records = 50\n");
    agent.start(&burst.args(&["--replay-pps", "2000", "--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}", agent.logs());
    let alerts = wait_for("every alert listed", Duration::from_secs(30), || {
        let a = c.alerts();
        (a.len() >= N).then_some(a)
    });
    let mut got = rrnames(&alerts);
    got.sort();
    let mut want = burst.names.clone();
    want.sort();
    assert_eq!(got, want, "each alert stored once");
    assert!(c.logs().contains("store: PostgreSQL"), "{}", c.logs());
    // the correlator follows the committed cursor on PostgreSQL too: each
    // alert counted once in the incidents
    let counted = wait_for("the alerts correlated", Duration::from_secs(30), || {
        let incidents: Vec<serde_json::Value> = c
            .cli(&["incidents", "list", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let n: u64 = incidents.iter().filter_map(|i| i["alert_count"].as_u64()).sum();
        (n >= N as u64).then_some(n)
    });
    assert_eq!(counted, N as u64, "each alert counted once");
    assert!(!c.dir.join("db").exists(), "no sled database beside PostgreSQL");
    // a restart reopens the same database (migrations already applied)
    assert_eq!(c.terminate(Duration::from_secs(30)), 0, "{}", c.logs());
    c.start();
    assert_eq!(c.alerts().len(), N);
    assert_eq!(c.agents().len(), 1);
    // the audit chain written through PostgreSQL verifies
    c.cli(&["audit", "verify"]);
}

#[test]
fn unreachable_database_at_start_is_a_clear_error_without_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    let port = free_port();
    c.set_config(&format!(
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://canhgac:pw-s3cret@127.0.0.1:{port}/canhgac\"\n"
    ));
    let config = c.config.clone().unwrap();
    let check = Command::new(bin("canhgac-collector"))
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&c.dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}{}", String::from_utf8_lossy(&check.stderr));
    assert!(text.contains(&format!("store: postgres postgres://canhgac@127.0.0.1:{port}/canhgac")), "{text}");
    assert!(!text.contains("pw-s3cret"), "{text}");
    let out = Command::new(bin("canhgac-collector"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&c.dir)
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(c.addr().to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must fail: {err}");
    assert!(
        err.contains(&format!(
            "cannot connect to the database at postgres://canhgac@127.0.0.1:{port}/canhgac"
        )),
        "{err}"
    );
    assert!(!err.contains("pw-s3cret"), "{err}");
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Two `serve` processes on one database and one data directory: the
/// singleton leases go to one, pass to the other within 12 s of a SIGKILL
/// (its silence watchdog then acts) and are not taken back by the restarted
/// one; a revocation made on one refuses the agent on the other within 5 s.
#[test]
fn two_replicas_hand_over_singleton_work_and_share_revocations() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = cluster();
    pg.create_db("replicas").unwrap();
    let mut a = Collector::init(tmp.path());
    a.set_config(&format!(
        "[telemetry]\nheartbeat_interval = \"1s\"\n[supervision]\nagent_silence_limit = \"3s\"\n\
         [store]\nbackend = \"postgres\"\nurl = \"{}\"\n",
        pg.url("replicas")
    ));
    a.start();
    let took = |c: &Collector| c.logs().matches("took the lease").count();
    let singletons = canhgac_collector::replica::SINGLETONS.len();
    wait_for("replica A to take every singleton lease", Duration::from_secs(15), || {
        (took(&a) == singletons).then_some(())
    });
    let mut b = a.replica();
    b.start();
    a.add_agency("SO-A", "Agency A");
    let token = a.token("SO-A", None);
    // the agent enrolls at and streams to replica B
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&b, &token);
    let burst = Burst::new(
        tmp.path(),
        5,
        "[uplink]\nheartbeat_interval = \"1s\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n",
    );
    agent.start(&burst.args(&[]));
    let online = |c: &Collector| {
        json_lines(&c.cli(&["coverage", "--json"]))
            .iter()
            .any(|v| v["type"] == "agent" && v["online"] == true)
    };
    wait_for("the agent online", Duration::from_secs(30), || online(&b).then_some(()));
    wait_for("the agent's alerts, seen from A", Duration::from_secs(30), || {
        (a.alerts().len() == 5).then_some(())
    });
    assert_eq!(took(&b), 0, "B runs no singleton task while A holds the leases: {}", b.logs());

    // (b) SIGKILL the lease holder: B takes every lease within 12 s
    a.kill();
    let killed = std::time::Instant::now();
    wait_for("replica B to take the leases", Duration::from_secs(20), || {
        (took(&b) == singletons).then_some(())
    });
    let failover = killed.elapsed();
    assert!(failover <= Duration::from_secs(13), "fail-over took {failover:?}");
    // and B's silence watchdog acts
    let silent =
        |c: &Collector| c.alerts().into_iter().filter(|x| x["canhgac"]["detector"] == "agent-silent").count();
    agent.kill();
    wait_for("agent-silent raised by B", Duration::from_secs(15), || (silent(&b) == 1).then_some(()));
    // A restarts and stays a stand-by while B renews
    a.start();
    agent.restart();
    wait_for("the agent back on B", Duration::from_secs(30), || online(&b).then_some(()));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(took(&a), singletons, "the restarted A took no lease from B: {}", a.logs());
    assert_eq!(silent(&a), 1, "one silence, one alert");

    // (a) revoked through A, refused by B within 5 s
    let id = agent.agent_id();
    let out = a.cli(&["agent", "revoke", &id, "--reason", "test"]);
    assert!(out.contains("0 open stream(s) closed"), "the agent is on B, not A: {out}");
    let revoked = std::time::Instant::now();
    wait_for("B to close the revoked agent's stream", Duration::from_secs(5), || {
        b.logs().contains("agent revoked on another replica").then_some(())
    });
    wait_for("B to refuse the agent at the handshake", Duration::from_secs(5), || {
        b.logs().contains("refused revoked certificate at handshake").then_some(())
    });
    assert!(revoked.elapsed() <= Duration::from_secs(5), "took {:?}", revoked.elapsed());
    let stored = b.alerts().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.alerts().len(), stored, "a revoked agent delivers nothing more");
}

/// Issue 15 acceptance (c): an agent streams to replica B while B is
/// SIGKILLed and restarted three times; every record is stored exactly
/// once, a subscription opened on replica A before the first record sees
/// every one of them once, and the incidents count each alert once.
#[test]
fn records_stored_once_while_a_replica_is_killed_and_restarted() {
    const N: usize = 1500;
    let tmp = tempfile::tempdir().unwrap();
    let pg = cluster();
    pg.create_db("churn").unwrap();
    let mut a = Collector::init(tmp.path());
    a.set_config(&format!("[store]\nbackend = \"postgres\"\nurl = \"{}\"\n", pg.url("churn")));
    a.start();
    let mut b = a.replica();
    b.start();
    a.add_agency("SO-A", "Agency A");
    let token = a.token("SO-A", None);
    // a subscription on A from cursor 0, read on its own thread
    let mut tail = Command::new(bin("canhgac"))
        .args(["--profile", a.profile().to_str().unwrap(), "alerts", "tail", "--json", "--from-cursor", "0"])
        .env_remove("CANHGAC_COLLECTOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let reader = {
        let (out, seen) = (tail.stdout.take().unwrap(), seen.clone());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(line) = line else { break };
                seen.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        })
    };
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&b, &token);
    let burst = Burst::new(
        tmp.path(),
        N,
        "[uplink]\nbatch_max_records = 50\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\n",
    );
    agent.start(&burst.args(&["--replay-pps", "150", "--exit-when-drained"]));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        b.kill();
        std::thread::sleep(Duration::from_millis(700));
        b.start();
    }
    assert_eq!(agent.wait(Duration::from_secs(180)), 0, "{}", agent.logs());
    let mut want = burst.names.clone();
    want.sort();
    let alerts = wait_for("every alert stored", Duration::from_secs(30), || {
        let a = a.alerts();
        (a.len() >= N).then_some(a)
    });
    let mut stored = rrnames(&alerts);
    stored.sort();
    assert_eq!(stored, want, "each record stored exactly once");
    wait_for("the subscription on A to see every alert", Duration::from_secs(30), || {
        (seen.lock().unwrap().len() >= N).then_some(())
    });
    // a moment for anything repeated to show
    std::thread::sleep(Duration::from_secs(1));
    let subscribed = seen.lock().unwrap().clone();
    let mut got = rrnames(&subscribed);
    got.sort();
    assert_eq!(got, want, "the subscription missed or repeated records");
    let counted = wait_for("the alerts correlated", Duration::from_secs(30), || {
        let n: u64 = json_lines(&a.cli(&["incidents", "list", "--json"]))
            .iter()
            .filter_map(|i| i["alert_count"].as_u64())
            .sum();
        (n >= N as u64).then_some(n)
    });
    assert_eq!(counted, N as u64, "each alert counted once in the incidents");
    let _ = tail.kill();
    let _ = tail.wait();
    let _ = reader.join();
}
