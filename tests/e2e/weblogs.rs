//! Web access logs end to end: a real agent following a real nginx-format
//! log across rotations and SIGKILLs, alerts filed at the collector
//! against the system the configuration names.

use std::{path::Path, time::Duration};

use canhgac_tests::{Agent, Collector, wait_for};

use crate::host::append;
use serde_json::Value;

/// Only the web-log monitor, reading from the start, every episode
/// reported at once (no hold), each client its own episode.
fn web_config(dir: &Path, log: &Path, system: Option<u64>) -> String {
    let p = dir.join("agent.toml");
    let system = system.map(|s| format!("system = {s}\n")).unwrap_or_default();
    std::fs::write(
        &p,
        format!(
            "version = 1\n[host]\ntimezone = \"UTC\"\n[host.auth]\nenabled = false\n[host.fim]\nenabled = false\n\
             [host.listeners]\nenabled = false\n[host.processes]\nenabled = false\n[host.secrets]\nenabled = false\n\
             [host.web_logs]\nfiles = [\"{}\"]\nstart_at = \"start\"\n{system}\
             [host.web_logs.detect]\nhold_secs = 0\nquiet_secs = 0\n",
            log.display()
        ),
    )
    .unwrap();
    p.display().to_string()
}

/// One SQL-injection request from client number `i` (its own address):
/// one `web-attack` alert per line.
fn attack_line(i: usize) -> String {
    format!(
        "10.{}.{}.{} - - [06/Dec/2026:10:15:32 +0700] \"GET /tin-tuc?id={i}%27%20UNION%20SELECT%20NULL-- HTTP/1.1\" \
         200 5120 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n",
        100 + i / 65536,
        (i / 256) % 256,
        i % 256
    )
}

fn attacked(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .filter(|a| a["canhgac"]["detector"] == "web-attack")
        .filter_map(|a| a["src_ip"].as_str().map(String::from))
        .collect()
}

/// Rename, copytruncate and gzip rotations, with the agent SIGKILLed and
/// restarted in between ([`crate::host::rotations_with_kills`]): every
/// request line is reported exactly once.
#[test]
fn web_log_rotation_with_sigkill_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = crate::setup(tmp.path());
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("access.log");
    let config = web_config(tmp.path(), &log, None);
    let mut n = 0;
    let mut write = |count: usize| {
        let mut text = String::new();
        for _ in 0..count {
            text.push_str(&attack_line(n));
            n += 1;
        }
        append(&log, &text);
    };
    crate::host::rotations_with_kills(&mut agent, &config, &log, &mut write);
    let total = n;
    wait_for("every request line reported", Duration::from_secs(60), || {
        let got = attacked(&c.alerts()).len();
        eprintln!("{got} of {total} reported");
        (got >= total).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let alerts = c.alerts();
    let clients = attacked(&alerts);
    let mut counts = std::collections::BTreeMap::new();
    for u in &clients {
        *counts.entry(u.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, k)| **k > 1).collect();
    let missing: Vec<_> = (0..total)
        .filter(|i| {
            let ip = attack_line(*i).split(' ').next().unwrap().to_string();
            !counts.contains_key(&ip)
        })
        .collect();
    assert!(twice.is_empty() && missing.is_empty(), "read twice: {twice:?}; lost: {missing:?}");
    assert_eq!(clients.len(), total);
    let a = alerts.iter().find(|a| a["canhgac"]["detector"] == "web-attack").unwrap();
    assert_eq!(a["canhgac"]["source"], "web");
    assert_eq!(a["canhgac"]["categories"][0], "sqli");
    agent.kill();
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

/// `system = ID` on a web log files its alerts against that system, not
/// the agent's linked one.
#[test]
fn web_log_alerts_are_filed_against_the_configured_system() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-TC", "Sở Tài chính");
    let add = |name: &str, level: &str| -> u64 {
        let out = c.cli(&["system", "add", "--agency", "SO-TC", "--name", name, "--level", level]);
        last_line(&out).parse().unwrap_or_else(|_| panic!("no id on the last line: {out}"))
    };
    let database = add("Cơ sở dữ liệu tài chính", "4");
    let portal = add("Cổng thông tin điện tử", "2");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-TC", None));
    // the agent's host is linked to both systems: by address nothing decides
    c.cli(&["agent", "link", &agent.agent_id(), "--system", &database.to_string()]);
    c.cli(&["agent", "link", &agent.agent_id(), "--system", &portal.to_string()]);
    let log = tmp.path().join("access.log");
    for i in 0..3 {
        append(&log, &attack_line(i));
    }
    let config = web_config(tmp.path(), &log, Some(portal));
    agent.start(&["--config", config.as_str()]);
    let incidents = wait_for("the incidents", Duration::from_secs(30), || {
        let l: Vec<Value> = c
            .cli(&["incidents", "list", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (l.len() == 3).then_some(l)
    });
    for inc in &incidents {
        assert_eq!(inc["system"], portal, "{inc}");
    }
    agent.kill();
}
