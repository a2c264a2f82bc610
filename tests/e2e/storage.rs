//! The collector's data directory on a small tmpfs that fills up: a full
//! disk is a pause, not an outage.

use std::time::Duration;

use canhgac_tests::{Agent, Burst, Collector, Tmpfs, wait_for};

/// With the data directory full: ingest is refused with a status and no
/// operator call succeeds without its audit entry; once space returns,
/// ingest resumes by itself (no restart) and every record arrives exactly
/// once; the audit chain is intact and holds every call that succeeded.
#[test]
fn a_full_data_directory_pauses_the_collector_and_it_resumes_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&tmp.path().join("collector"), "48m");
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-A", "A");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.enroll(&c, &c.token("SO-A", None));
    const N: usize = 2000;
    let burst = Burst::new(
        tmp.path(),
        N,
        "[uplink]\nbatch_max_records = 50\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n",
    );
    agent.start(&burst.args(&["--replay-pps", "400", "--exit-when-drained"]));
    wait_for("some records stored", Duration::from_secs(30), || (c.alerts().len() >= 200).then_some(()));

    let filler = fs.fill();
    // while full: operator calls are refused rather than answered without
    // their audit entry (give sled a moment to hit the wall)
    let refused = wait_for("operator calls refused on the full disk", Duration::from_secs(20), || {
        let o = c.cli_output(&["agency", "list"]);
        (!o.status.success()).then(|| String::from_utf8_lossy(&o.stderr).into_owned())
    });
    assert!(refused.contains("audit log cannot be written"), "{refused}");
    let stored_while_full = c.logs();
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..3 {
        let o = c.cli_output(&["alerts", "list", "--limit", "1"]);
        assert!(
            !o.status.success(),
            "a call succeeded on the full disk: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    assert!(c.is_running(), "the collector stays up:\n{stored_while_full}");

    // space returns: ingest resumes without a restart
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}\n{}", agent.logs(), c.logs());
    assert_eq!(burst.delivery(&c.alerts()), (0, 0, N), "every record exactly once");
    assert!(c.logs().contains("database reopened"), "{}", c.logs());
    assert!(!c.logs().contains("panicked"), "a log line that cannot be written is no panic:\n{}", c.logs());
    assert!(c.is_running());

    // the audit chain is intact; every call that succeeded is in it
    let v = c.cli(&["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
    let log: Vec<serde_json::Value> =
        c.cli(&["audit", "list"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ok_calls = log.iter().filter(|e| e["action"] == "ListAlerts" && e["outcome"] == "ok").count();
    assert!(ok_calls >= 2, "the alert listings before and after the full disk are audited");
}
