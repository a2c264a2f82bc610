//! SIGHUP to the collector (`systemctl reload`): the configuration file is
//! read again without a restart, a bad file changes nothing, and nothing
//! streamed meanwhile is lost or repeated.

use std::time::Duration;

use canhgac_tests::{Agent, Burst, Collector, wait_for};

fn hangup(c: &Collector) {
    let pid = c.pid().expect("collector running");
    let st = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(st.success());
}

fn write_config(c: &Collector, text: &str) {
    std::fs::write(c.config.as_ref().unwrap(), format!("version = 1\n{text}\n")).unwrap();
}

/// Enrollment with `token` on a fresh agent: (succeeded, stderr).
fn try_enroll(c: &Collector, root: &std::path::Path, name: &str, token: &str) -> (bool, String) {
    let o = Agent::new(root, name).enroll_output(c, token, &[]);
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn sighup_reloads_the_configuration_without_dropping_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init(tmp.path());
    c.set_config("[pki]\nenrollment_token_ttl = \"2s\"\n");
    c.start();
    c.add_agency("SO-A", "A");

    // before: tokens live 2 s
    let short = c.token("SO-A", None);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, err) = try_enroll(&c, tmp.path(), "early", &short);
    assert!(!ok && err.contains("expired"), "{err}");

    // reload: tokens live a day; a restart-only setting is named and kept
    write_config(&c, "[pki]\nenrollment_token_ttl = \"24h\"\n[log]\nformat = \"json\"\n");
    hangup(&c);
    wait_for("the reload", Duration::from_secs(20), || {
        c.logs().contains("configuration reloaded").then_some(())
    });
    let logs = c.logs();
    assert!(logs.contains("log.format") && logs.contains("takes effect at the next restart"), "{logs}");
    let token = c.token("SO-A", None);
    std::thread::sleep(Duration::from_secs(3));
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &token);

    // reloads while an agent streams: every record stored exactly once
    const N: usize = 1500;
    let burst = Burst::new(tmp.path(), N, "[uplink]\nbatch_max_records = 50\n");
    agent.start(&burst.args(&["--replay-pps", "500", "--exit-when-drained"]));
    wait_for("some records stored", Duration::from_secs(30), || (c.alerts().len() >= 100).then_some(()));
    for _ in 0..3 {
        hangup(&c);
        std::thread::sleep(Duration::from_millis(400));
    }

    // a file with an error changes nothing and says where
    write_config(&c, "[pki]\nenrollment_token_ttl = \"forever\"\n");
    hangup(&c);
    wait_for("the refusal", Duration::from_secs(20), || {
        c.logs().contains("configuration not reloaded").then_some(())
    });
    let logs = c.logs();
    assert!(logs.contains("collector.toml:3:") && logs.contains("enrollment_token_ttl"), "{logs}");
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}\n{}", agent.logs(), c.logs());
    assert_eq!(burst.delivery(&c.alerts()), (0, 0, N), "every record exactly once");
    // the correlator of each generation took over where the last stopped:
    // every alert counted in an incident once, those stored after the last
    // reload included
    let in_incidents = || -> u64 {
        c.cli(&["incidents", "list", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["alert_count"].as_u64().unwrap())
            .sum()
    };
    let counted = wait_for("every alert correlated", Duration::from_secs(30), || {
        let total = in_incidents();
        (total >= N as u64).then_some(total)
    });
    std::thread::sleep(Duration::from_secs(3));
    let again = in_incidents();
    assert_eq!((counted, again), (N as u64, N as u64), "each alert in one incident, once");
    // the day-long lifetime is still the one in effect
    let token = c.token("SO-A", None);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, err) = try_enroll(&c, tmp.path(), "late", &token);
    assert!(ok, "{err}");
    let reloads = c.logs().matches("configuration reloaded").count();
    assert!(reloads >= 4, "{reloads} reloads");
    assert_eq!(c.terminate(Duration::from_secs(30)), 0, "SIGHUP never ends the collector");
}
