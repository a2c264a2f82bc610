//! Fault tests: real processes killed with SIGKILL at random points.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use canhgac_tests::{Burst, rrnames};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

use crate::setup;

/// While an agent streams thousands of records, SIGKILL the collector and
/// restart it, and SIGKILL the agent and restart it, several times at
/// random points: every record arrives exactly once.
#[test]
fn sigkill_collector_and_agent_repeatedly_every_record_arrives_exactly_once() {
    let seed = std::env::var("CANHGAC_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("fault test seed {seed} (set CANHGAC_FAULT_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    const N: usize = 3000;
    let burst = Burst::new(
        tmp.path(),
        N,
        "[uplink]\nbatch_max_records = 64\nmax_in_flight = 8\nbackoff_initial = \"100ms\"\nbackoff_max = \"800ms\"\nheartbeat_interval = \"1s\"\n",
    );
    let names = burst.names.clone();
    agent.start(&burst.args(&["--replay-pps", "350", "--exit-when-drained"]));

    let mut kills = (0, 0);
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1100)));
        if round % 2 == 0 {
            c.kill();
            kills.0 += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(50..900)));
            c.start();
        } else if agent.try_wait().is_none() {
            agent.kill();
            kills.1 += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
            agent.restart();
        }
    }
    eprintln!("killed the collector {} times and the agent {} times", kills.0, kills.1);
    assert!(kills.0 >= 3 && kills.1 >= 1, "not enough faults injected: {kills:?}");
    if agent.is_running() {
        assert_eq!(agent.wait(Duration::from_secs(180)), 0, "{}", agent.logs());
    }

    let got = rrnames(&c.alerts());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &got {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "stored more than once: {:?}", &duplicated[..duplicated.len().min(10)]);
    let missing: Vec<_> = names.iter().filter(|n| !counts.contains_key(n.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(got.len(), N);
    let a = &c.agents()[0];
    eprintln!("collector saw {} duplicate resends (deduplicated)", a["records_duplicate"]);
    assert_eq!(a["records_stored"], N as u64);
    assert_eq!(a["counters"]["spool_dropped"], 0);
}

/// SIGTERM, what systemd sends on stop, to the collector and then to the
/// agent while records stream: both exit 0, and after restarts every
/// record arrives exactly once.
#[test]
fn sigterm_to_collector_and_agent_mid_stream_exits_zero_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    const N: usize = 1500;
    let burst = Burst::new(
        tmp.path(),
        N,
        "[uplink]\nbatch_max_records = 32\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\n",
    );
    let names = burst.names.clone();
    agent.start(&burst.args(&["--replay-pps", "500", "--exit-when-drained"]));
    canhgac_tests::wait_for("some records stored", Duration::from_secs(30), || {
        (c.alerts().len() > 100).then_some(())
    });
    assert_eq!(c.terminate(Duration::from_secs(30)), 0, "collector exit on SIGTERM:\n{}", c.logs());
    std::thread::sleep(Duration::from_millis(300));
    c.start();
    canhgac_tests::wait_for("more records stored", Duration::from_secs(30), || {
        (c.alerts().len() > 400).then_some(())
    });
    assert!(agent.is_running(), "the agent kept going while the collector was away");
    assert_eq!(agent.terminate(Duration::from_secs(30)), 0, "agent exit on SIGTERM:\n{}", agent.logs());
    agent.restart();
    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}", agent.logs());
    let got = rrnames(&c.alerts());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &got {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let missing = names.iter().filter(|n| !counts.contains_key(n.as_str())).count();
    let repeated = counts.values().filter(|&&k| k > 1).count();
    assert_eq!((missing, repeated, got.len()), (0, 0, N), "every record exactly once");
    assert!(c.logs().contains("stopped"), "the collector went through its shutdown path");
}
