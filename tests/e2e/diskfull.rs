//! The spool on a full disk (issue 10, point 6): the spool directory on a
//! small tmpfs. These tests mount file systems: they run as root (as CI
//! does) and fail, not skip, otherwise.

use std::{collections::HashMap, time::Duration};

use canhgac_tests::{Burst, Tmpfs, rrnames, wait_for};

use crate::setup;

/// Spool on a 6 MiB tmpfs (smaller than `spool.max_bytes`), collector
/// down: the agent fills the disk, keeps running, is stopped with SIGTERM
/// and SIGKILL and restarted on the full disk several times; then space
/// returns and the collector starts: no exit, no corruption, and every
/// record produced is stored once or counted as dropped.
#[test]
fn spool_on_a_full_tmpfs_survives_restarts_and_delivers_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    let disk = Tmpfs::mount(&agent.state_dir.join("spool"), "6m");
    c.kill();
    const N: usize = 20_000;
    let burst = Burst::new(
        tmp.path(),
        N,
        "[spool]\nmax_bytes = \"64MiB\"\n[uplink]\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\nheartbeat_interval = \"1s\"\n",
    );
    agent.start(&burst.args(&["--exit-when-drained"]));
    let full = |logs: &str| logs.contains("disk full") || logs.contains("no space left for the spool");
    wait_for("the spool's disk to fill", Duration::from_secs(120), || full(&agent.logs()).then_some(()));
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            agent.try_wait(),
            None,
            "round {round}: the agent exited on a full disk:\n{}",
            agent.logs()
        );
        if round % 2 == 0 {
            assert_eq!(
                agent.terminate(Duration::from_secs(30)),
                0,
                "SIGTERM on a full disk:\n{}",
                agent.logs()
            );
        } else {
            agent.kill();
        }
        agent.restart();
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(agent.try_wait(), None, "the agent exited on a full disk:\n{}", agent.logs());
    let logs = agent.logs();
    assert!(!logs.to_lowercase().contains("corrupt"), "{logs}");
    disk.resize("256m");
    c.start();
    assert_eq!(agent.wait(Duration::from_secs(300)), 0, "{}", agent.logs());

    let got = rrnames(&c.alerts());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &got {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let repeated = counts.values().filter(|&&k| k > 1).count();
    assert_eq!(repeated, 0, "records stored twice");
    let a = &c.agents()[0];
    let counters = &a["counters"];
    let produced = counters["records_produced"].as_u64().unwrap();
    let dropped = counters["spool_dropped"].as_u64().unwrap();
    let stored = got.len() as u64;
    eprintln!("produced {produced}, stored {stored}, dropped {dropped}");
    assert_eq!(stored + dropped, produced, "every record delivered or counted as dropped: {counters}");
    assert_eq!(produced, N as u64, "the replay paused on the full disk instead of losing input: {counters}");
    // the spool's own health reaches the collector
    assert_eq!(counters["spool_full"], false, "space returned: {counters}");
    assert!(counters["spool_disk_bytes"].as_u64().is_some_and(|b| b > 0), "{counters}");
    assert!(counters["spool_storage_failures"].is_u64(), "{counters}");
    let logs = agent.logs();
    assert!(!logs.to_lowercase().contains("corrupt"), "{logs}");
    for l in logs.lines().filter(|l| l.contains("spool") || l.contains("disk full")) {
        eprintln!("{l}");
    }
}
