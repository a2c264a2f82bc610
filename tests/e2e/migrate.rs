//! `canhgac-collector migrate`: a collector's sled database moved into
//! PostgreSQL (killed half-way and run again), then `serve` on PostgreSQL
//! continues where sled stopped.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Output, Stdio},
    time::Duration,
};

use canhgac_collector::store::pg::testcluster::TestCluster;
use canhgac_tests::{Agent, Burst, Collector, bin, free_port, wait_for};

fn migrate(c: &Collector, args: &[&str]) -> Output {
    Command::new(bin("canhgac-collector"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(&c.dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn incidents(c: &Collector) -> String {
    c.cli(&["incidents", "list", "--json"])
}

#[test]
fn migrate_moves_a_sled_collector_to_postgres_resumably_and_serve_continues() {
    const N: usize = 150;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-TTTT", "Sở Thông tin và Truyền thông");
    let token = c.token("SO-TTTT", None);
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &token);
    let burst = Burst::new(tmp.path(), N, "[uplink]\nbatch_max_records = 25\n");
    agent.start(&burst.args(&["--replay-pps", "2000", "--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}", agent.logs());
    wait_for("every alert stored and correlated", Duration::from_secs(30), || {
        let n: u64 = incidents(&c)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["alert_count"].as_u64().unwrap())
            .sum();
        (c.alerts().len() == N && n == N as u64).then_some(())
    });
    // operator actions: the audit log has entries, an incident is changed
    let first: serde_json::Value = serde_json::from_str(incidents(&c).lines().next().unwrap()).unwrap();
    let id = first["id"].as_u64().unwrap().to_string();
    c.cli(&["incidents", "ack", &id]);
    c.cli(&["incidents", "assign", &id, "tran.thi.b"]);
    c.cli(&["audit", "verify"]);
    let alerts_before = c.cli(&["alerts", "list", "--json", "--limit", "1000000"]);
    let incidents_before = incidents(&c);

    let pg = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL for the test: {e}"));
    pg.create_db("migrated").unwrap();
    let url = pg.url("migrated");

    // a collector still running on the sled database: refused, exit 2
    let busy = migrate(&c, &["--to", &url]);
    assert_eq!(busy.status.code(), Some(2), "{}", text(&busy));
    assert!(text(&busy).contains("is in use: stop the collector"), "{}", text(&busy));
    assert_eq!(c.terminate(Duration::from_secs(30)), 0, "{}", c.logs());

    // bad input: exit 2, a clear message, no password shown
    let port = free_port();
    let down = migrate(&c, &["--to", &format!("postgres://canhgac:pw-s3cret@127.0.0.1:{port}/x")]);
    assert_eq!(down.status.code(), Some(2), "{}", text(&down));
    assert!(
        text(&down)
            .contains(&format!("cannot connect to the database at postgres://canhgac@127.0.0.1:{port}/x")),
        "{}",
        text(&down)
    );
    assert!(!text(&down).contains("pw-s3cret"));
    let missing = Command::new(bin("canhgac-collector"))
        .args(["migrate", "--data-dir"])
        .arg(tmp.path().join("no-such-dir"))
        .args(["--to", &url])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("does not exist"), "{}", text(&missing));

    // one sled entry per transaction (a chunk: one agent batch of at most
    // 25 alerts here), SIGKILLed once the copy of records began
    let mut first_run = Command::new(bin("canhgac-collector"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(&c.dir)
        .args(["--to", &url, "--batch", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first_run.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // the first chunk of alerts copied: killed inside a table
        let go = line.starts_with("alerts: ");
        seen.push(line);
        if go {
            break;
        }
    }
    first_run.kill().unwrap();
    first_run.wait().unwrap();
    let copied: usize = seen
        .iter()
        .find_map(|l| l.strip_prefix("alerts: ")?.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert!((1..=25).contains(&copied), "one chunk copied, not the table: {seen:?}");
    assert!(!seen.iter().any(|l| l.contains("migration complete")), "killed half-way: {seen:?}");

    // a collector refuses to serve the half-filled database
    c.set_config(&format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"));
    let early = Command::new(bin("canhgac-collector"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&c.dir)
        .arg("--config")
        .arg(c.config.as_ref().unwrap())
        .arg("--listen")
        .arg(c.addr().to_string())
        .output()
        .unwrap();
    assert!(!early.status.success(), "{}", text(&early));
    assert!(
        text(&early).contains("migration from sled into this database has not finished"),
        "{}",
        text(&early)
    );

    // run again: continues, every count matches
    let second = migrate(&c, &["--to", &url, "--batch", "50"]);
    let out = text(&second);
    assert_eq!(second.status.code(), Some(0), "{out}");
    assert!(out.contains("alerts: 150/150 rows done (resumed)"), "{out}");
    assert!(out.contains("migration complete: every count matches"), "{out}");
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["alerts", "150", "150", "yes"]),
        "{out}"
    );
    // and once more, the target taken from the configuration's [store]:
    // nothing to do, the check still passes
    let config = c.config.clone().unwrap();
    let third = migrate(&c, &["--config", config.to_str().unwrap()]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert!(text(&third).contains("alerts: 150/150 rows done (resumed)"), "{}", text(&third));

    // serve on PostgreSQL with the same data directory
    c.start();
    c.cli(&["audit", "verify"]);
    assert_eq!(c.cli(&["alerts", "list", "--json", "--limit", "1000000"]), alerts_before);
    assert_eq!(incidents(&c), incidents_before);
    // new records continue to arrive after the migrated ones
    let more = Burst::new(tmp.path(), 20, "[uplink]\nbatch_max_records = 10\n");
    agent.start(&more.args(&["--replay-pps", "2000", "--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}", agent.logs());
    wait_for("the new alerts", Duration::from_secs(30), || (c.alerts().len() == N + 20).then_some(()));
    c.cli(&["audit", "verify"]);

    // PostgreSQL has moved on: the check now reports the difference, exit 1
    assert_eq!(c.terminate(Duration::from_secs(30)), 0, "{}", c.logs());
    let after = migrate(&c, &["--to", &url]);
    assert_eq!(after.status.code(), Some(1), "{}", text(&after));
    assert!(text(&after).contains("counts differ: alerts (sled 150, postgres 170)"), "{}", text(&after));
}
