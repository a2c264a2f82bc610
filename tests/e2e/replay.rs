//! Exact replay after a crash: an agent SIGKILLed at random points of a
//! capture replay and restarted stores exactly what `canhgac-agent
//! analyze` prints for the same input, record for record (alerts of every
//! detector, flow and DNS events), in the same order.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use canhgac_tests::{bin, workspace};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::Value;

use crate::setup;

/// Captures with behavioural detections (SSH guessing, ICMP and DNS
/// tunnels, FTP brute force, vertical TCP and UDP scans), beacons, web
/// traffic and indicator hits, replayed as one input (flows go on from one
/// file to the next, as in `analyze`).
fn captures() -> Vec<PathBuf> {
    let d = workspace().join("tests/detect");
    vec![
        d.join("_pcap/zeek-sshguess.pcap"),
        d.join("_gen/icmp-tunnel.pcap"),
        d.join("_pcap/elastic-dns-tunnel-iodine.pcap"),
        d.join("_pcap/zeek-ftp-bruteforce.pcap"),
        d.join("_gen/nmap-syn-vertical.pcap"),
        d.join("_gen/beacon-http.pcap"),
        d.join("_gen/nmap-udp-vertical.pcap"),
        d.join("_pcap/zeek-wikipedia.pcap"),
        workspace().join("deploy/demo/sofacy-dns.pcap"),
    ]
}

/// A stored or printed record without what legitimately differs: the
/// identity the collector stamps at ingest (`canhgac.agent_id`,
/// `canhgac.agency`, `canhgac.hostname`; an empty `canhgac` object it
/// adds to events that had none). Key order does not matter (parsed JSON).
fn canonical(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        if let Some(Value::Object(c)) = obj.get_mut("canhgac") {
            for k in ["agent_id", "agency", "hostname"] {
                c.remove(k);
            }
        }
        if obj.get("canhgac").is_some_and(|c| c.as_object().is_some_and(|m| m.is_empty())) {
            obj.remove("canhgac");
        }
    }
    v
}

fn kind(v: &Value) -> String {
    match v["event_type"].as_str() {
        Some("alert") => format!("alert:{}", v["canhgac"]["detector"].as_str().unwrap_or("rule")),
        Some(t) => t.to_string(),
        None => "?".into(),
    }
}

fn tally(records: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(kind(r)).or_default() += 1;
    }
    m
}

/// SIGKILL the agent several times at random points while it replays the
/// captures with flow and DNS events on; the collector's records, in the
/// agent's sequence order, equal `analyze`'s output line for line.
#[test]
fn sigkill_during_replay_stores_exactly_what_analyze_prints() {
    let seed = std::env::var("CANHGAC_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("replay fault test seed {seed} (set CANHGAC_FAULT_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let (mut c, mut agent) = setup(tmp.path());
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\n[eve]\ntypes = [\"flow\", \"dns\"]\n[uplink]\nbatch_max_records = 64\nmax_in_flight = 8\n\
         backoff_initial = \"100ms\"\nbackoff_max = \"800ms\"\nheartbeat_interval = \"1s\"\n",
    )
    .unwrap();
    let ioc = workspace().join("deploy/demo/ioc.txt");
    let mut input: Vec<String> = vec!["--config".into(), config.display().to_string()];
    for p in captures() {
        input.extend(["--pcap".into(), p.display().to_string()]);
    }
    input.extend(["--ioc".into(), ioc.display().to_string()]);

    // the reference: one uninterrupted offline run
    let reference = Command::new(bin("canhgac-agent")).arg("analyze").args(&input).output().unwrap();
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let expected: Vec<Value> = String::from_utf8(reference.stdout)
        .unwrap()
        .lines()
        .map(|l| canonical(serde_json::from_str(l).unwrap()))
        .collect();
    let expected_tally = tally(&expected);
    eprintln!("analyze: {} records {expected_tally:?}", expected.len());
    for k in [
        "alert:icmp-tunnel",
        "alert:dns-tunnel",
        "alert:bruteforce",
        "alert:portscan",
        "alert:ioc",
        "flow",
        "dns",
    ] {
        assert!(expected_tally.contains_key(k), "the input has no {k} record: {expected_tally:?}");
    }

    let mut args = input.clone();
    args.extend(["--replay-pps", "700", "--exit-when-drained"].map(String::from));
    agent.start(&args);
    let mut kills = 0;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(rng.random_range(250..1400)));
        if agent.try_wait().is_some() {
            break;
        }
        agent.kill();
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        agent.restart();
    }
    eprintln!("killed the agent {kills} times");
    assert!(kills >= 2, "not enough faults injected");
    if agent.is_running() {
        assert_eq!(agent.wait(Duration::from_secs(180)), 0, "{}", agent.logs());
    }
    let logs = agent.logs();
    assert!(!logs.contains("replay diverged"), "{logs}");
    assert!(
        logs.contains("replay reached the checkpoint: recomputed records identical"),
        "a restart resumed after a checkpoint and verified what it recomputed:\n{logs}"
    );
    let counters = c.agents()[0]["counters"].clone();
    assert_eq!(counters["spool_dropped"], 0, "{counters}");
    assert_eq!(counters["replay_diverged"], 0, "the divergence counter reaches the collector: {counters}");
    assert_eq!(c.terminate(Duration::from_secs(30)), 0);

    let store = canhgac_collector::store::Store::open(&c.dir.join("db")).unwrap();
    let mut stored: Vec<(u64, Value)> = store
        .alerts_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .chain(store.events_after(0, usize::MAX).unwrap())
        .map(|(_, r)| (r.seq, canonical(serde_json::from_str(&r.eve_json).unwrap())))
        .collect();
    stored.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
    let got: Vec<Value> = stored.into_iter().map(|(_, v)| v).collect();
    let got_tally = tally(&got);
    eprintln!("stored:  {} records {got_tally:?}", got.len());
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "sequence numbers without gaps or repeats");
    if let Some(i) = (0..expected.len().max(got.len())).find(|&i| expected.get(i) != got.get(i)) {
        panic!(
            "seed {seed}: first difference at record {i} of {} stored / {} expected\n  analyze: {}\n  stored:  {}\n\
             analyze {expected_tally:?}\nstored  {got_tally:?}",
            got.len(),
            expected.len(),
            expected.get(i).map(|v| v.to_string()).unwrap_or_default(),
            got.get(i).map(|v| v.to_string()).unwrap_or_default(),
        );
    }
}
