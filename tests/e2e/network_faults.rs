//! Network faults between agent and collector (issue 14, point 5): the
//! collector in the host's network namespace, the agent in its own,
//! joined by a veth pair; the link is cut, then made lossy and slow, while
//! the agent streams. Needs root (namespaces, qdiscs, nftables); CI runs
//! as root, and these tests fail, not skip, without it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Command, Output},
    time::{Duration, Instant},
};

use canhgac_tests::{Agent, Burst, Collector, rrnames, wait_for};
use serde_json::Value;

fn output(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn run(args: &[&str]) {
    let out = output(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace joined to the host's by a veth pair; removed on drop.
pub struct Link {
    pub ns: String,
    pub host_if: String,
    pub ns_if: String,
    pub host_ip: String,
    pub ns_ip: String,
}

impl Link {
    pub fn create(tag: &str) -> Link {
        assert!(
            canhgac_tests::is_root(),
            "this test creates network namespaces and shapes their traffic: run it as root (CI does)"
        );
        let id = std::process::id() % 10_000;
        let octet = (id + u32::from(tag.as_bytes()[0])) % 250;
        let link = Link {
            ns: format!("cg{tag}{id}"),
            host_if: format!("cg{tag}h{id}"),
            ns_if: format!("cg{tag}n{id}"),
            host_ip: format!("10.79.{octet}.1"),
            ns_ip: format!("10.79.{octet}.2"),
        };
        run(&["ip", "netns", "add", &link.ns]);
        run(&["ip", "link", "add", &link.host_if, "type", "veth", "peer", "name", &link.ns_if]);
        run(&["ip", "link", "set", &link.ns_if, "netns", &link.ns]);
        run(&["ip", "addr", "add", &format!("{}/24", link.host_ip), "dev", &link.host_if]);
        run(&["ip", "link", "set", &link.host_if, "up"]);
        run(&["ip", "-n", &link.ns, "addr", "add", &format!("{}/24", link.ns_ip), "dev", &link.ns_if]);
        run(&["ip", "-n", &link.ns, "link", "set", &link.ns_if, "up"]);
        run(&["ip", "-n", &link.ns, "link", "set", "lo", "up"]);
        link
    }

    /// The wrapper that runs a program in the namespace.
    pub fn wrapper(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns].iter().map(|s| s.to_string()).collect()
    }

    pub fn set_up(&self, up: bool) {
        run(&["ip", "link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }

    /// 30 % loss and 100 ms delay each way: netem on both ends when the
    /// kernel has it. Returns what was applied.
    pub fn impair(&self) -> Impairment {
        let netem = ["netem", "loss", "30%", "delay", "100ms"];
        let mut on_host: Vec<&str> = vec!["tc", "qdisc", "add", "dev", &self.host_if, "root"];
        on_host.extend(netem);
        let host = output(&on_host);
        if host.status.success() {
            let mut in_ns: Vec<&str> =
                vec!["ip", "netns", "exec", &self.ns, "tc", "qdisc", "add", "dev", &self.ns_if];
            in_ns.push("root");
            in_ns.extend(netem);
            run(&in_ns);
            return Impairment::Netem;
        }
        let err = String::from_utf8_lossy(&host.stderr).into_owned();
        assert!(
            err.contains("Specified qdisc kind is unknown") || err.contains("No such file"),
            "tc qdisc add netem: {err}"
        );
        assert!(
            std::env::var_os("CANHGAC_REQUIRE_NETEM").is_none(),
            "CANHGAC_REQUIRE_NETEM is set and this kernel has no netem (sch_netem): {err}"
        );
        // This kernel has no netem (CONFIG_NET_SCH_NETEM unset, no
        // modules): the same loss by nftables in the agent's namespace,
        // both directions. nftables cannot delay packets; no delay then.
        let rules = "table inet cgfault {\n\
             chain in { type filter hook input priority 0; policy accept; meta l4proto tcp numgen random mod 100 < 30 drop; }\n\
             chain out { type filter hook output priority 0; policy accept; meta l4proto tcp numgen random mod 100 < 30 drop; }\n\
             }\n";
        let path = std::env::temp_dir().join(format!("{}.nft", self.ns));
        std::fs::write(&path, rules).unwrap();
        run(&["ip", "netns", "exec", &self.ns, "nft", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        eprintln!(
            "NOTE: this kernel has no netem qdisc ({}); 30% loss each way by nftables instead, without the 100 ms delay",
            err.trim()
        );
        Impairment::NftLoss
    }

    pub fn clear(&self, what: Impairment) {
        match what {
            Impairment::Netem => {
                run(&["tc", "qdisc", "del", "dev", &self.host_if, "root"]);
                run(&["ip", "netns", "exec", &self.ns, "tc", "qdisc", "del", "dev", &self.ns_if, "root"]);
            }
            Impairment::NftLoss => {
                run(&["ip", "netns", "exec", &self.ns, "nft", "delete", "table", "inet", "cgfault"])
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    Netem,
    NftLoss,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// The agent's record at the collector.
fn agent_rec(c: &Collector) -> Value {
    c.agents().into_iter().next().expect("one agent")
}

fn stored(c: &Collector) -> u64 {
    agent_rec(c)["records_stored"].as_u64().unwrap_or(0)
}

/// Every name stored exactly once, nothing else.
pub fn assert_exactly_once(c: &Collector, names: &[String]) {
    let got = rrnames(&c.alerts());
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in &got {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let missing: Vec<_> = names.iter().filter(|n| !counts.contains_key(n.as_str())).collect();
    let repeated: Vec<_> = counts.iter().filter(|(_, k)| **k > 1).collect();
    assert!(
        missing.is_empty(),
        "{} records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(repeated.is_empty(), "stored more than once: {:?}", &repeated[..repeated.len().min(5)]);
    assert_eq!(got.len(), names.len(), "nothing stored but the burst");
}

/// The counters of both sides say nothing was dropped, rejected or
/// quarantined, and the agent counted every record acknowledged.
pub fn assert_nothing_dropped(c: &Collector, n: u64) -> Value {
    let a = agent_rec(c);
    let k = &a["counters"];
    assert_eq!(a["records_stored"], n, "{a}");
    assert_eq!(a["records_invalid"], 0, "{a}");
    assert_eq!(a["batches_rejected"], 0, "{a}");
    assert_eq!(a["highest_seq"], n, "{a}");
    for zero in ["spool_dropped", "records_dropped_oversize", "batches_rejected"] {
        assert_eq!(k[zero].as_u64().unwrap_or(0), 0, "agent counter {zero}: {k}");
    }
    assert_eq!(k["records_produced"], n, "{k}");
    assert_eq!(k["records_acked"], n, "{k}");
    a
}

/// While the agent (in its own namespace) streams a burst: the link goes
/// down for 5 s (nothing is stored meanwhile), comes back, then carries
/// 30 % loss (and 100 ms delay with netem) each way for 6 s. At the end
/// every record is stored exactly once and neither side counts a drop.
#[test]
fn partition_and_lossy_link_between_namespaces_lose_and_duplicate_nothing() {
    let link = Link::create("p");
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Collector::init_names(tmp.path(), &[&link.host_ip]);
    c.listen = Some(SocketAddr::from(([0, 0, 0, 0], c.port)));
    c.start();
    c.add_agency("SO-NET", "Sở mạng");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.wrapper = link.wrapper();
    agent.collector_url = Some(format!("https://{}:{}", link.host_ip, c.port));
    agent.enroll(&c, &c.token("SO-NET", None));

    const N: usize = 2500;
    let burst = Burst::new(
        tmp.path(),
        N,
        "[uplink]\nbatch_max_records = 32\nmax_in_flight = 4\nbackoff_initial = \"100ms\"\nbackoff_max = \"1s\"\nheartbeat_interval = \"1s\"\n",
    );
    let started = Instant::now();
    agent.start(&burst.args(&["--replay-pps", "250", "--exit-when-drained"]));
    wait_for("records over the veth link", Duration::from_secs(30), || (stored(&c) >= 150).then_some(()));

    // partition: the link down for 5 s
    link.set_up(false);
    let cut = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    let before = stored(&c);
    std::thread::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed()));
    let during = stored(&c);
    assert_eq!(before, during, "records arrived over a link that is down");
    assert!(agent.try_wait().is_none(), "the agent exited during the partition:\n{}", agent.logs());
    link.set_up(true);
    let healed = Instant::now();
    wait_for("delivery to resume after the partition", Duration::from_secs(60), || {
        (stored(&c) > during).then_some(())
    });
    eprintln!("partition: delivery resumed {:?} after the link came back", healed.elapsed());

    // a lossy, slow link for 6 s
    let what = link.impair();
    let at = stored(&c);
    std::thread::sleep(Duration::from_secs(6));
    let lossy = stored(&c) - at;
    link.clear(what);
    eprintln!("{what:?}: {lossy} records stored in 6 s on the impaired link");

    assert_eq!(agent.wait(Duration::from_secs(120)), 0, "{}", agent.logs());
    eprintln!("burst of {N} delivered in {:?}", started.elapsed());
    assert_exactly_once(&c, &burst.names);
    let a = assert_nothing_dropped(&c, N as u64);
    eprintln!(
        "agent connected {} times; the collector dropped {} duplicate resends",
        a["counters"]["connects"], a["records_duplicate"]
    );
    let logs = agent.logs();
    assert!(logs.contains(&link.host_ip), "the agent reached the collector over the veth link:\n{logs}");
}
