//! Live capture between two network namespaces: the agent captures on the
//! host end of a veth pair, real traffic comes from the other end.
//! Needs root (namespaces, CAP_NET_RAW); CI runs as root.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::Command,
    time::Duration,
};

use canhgac_tests::wait_for;

use crate::setup;

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A namespace and a veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// printf escapes of a DNS query for `name`.
fn dns_query_printf(name: &str) -> String {
    let mut m = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m.iter().map(|b| format!("\\x{b:02x}")).collect()
}

#[test]
fn live_capture_between_namespaces_raises_scan_dns_and_http_alerts() {
    live_capture(1);
}

/// Two workers in one fanout group, each with its own ring: the kernel
/// splits the flows, the shared detectors still see the whole scan.
#[test]
fn two_capture_workers_share_the_traffic_and_the_detectors() {
    live_capture(2);
}

fn live_capture(threads: u32) {
    assert!(
        canhgac_tests::is_root(),
        "this test creates network namespaces and captures packets: run it as root (CI does)"
    );
    // one namespace, link and address per test of this process
    let id = std::process::id() % 5_000 * 2 + threads;
    let net = Netns { name: format!("cgt{id}"), host_if: format!("cgh{id}") };
    let ns_if = format!("cgn{id}");
    let octet = id % 250;
    let host_ip = format!("10.77.{octet}.1");
    let peer_ip = format!("10.77.{octet}.2");
    run(&["ip", "netns", "add", &net.name]);
    run(&["ip", "link", "add", &net.host_if, "type", "veth", "peer", "name", &ns_if]);
    run(&["ip", "link", "set", &ns_if, "netns", &net.name]);
    run(&["ip", "addr", "add", &format!("{host_ip}/24"), "dev", &net.host_if]);
    run(&["ip", "link", "set", &net.host_if, "up"]);
    run(&["ip", "-n", &net.name, "addr", "add", &format!("{peer_ip}/24"), "dev", &ns_if]);
    run(&["ip", "-n", &net.name, "link", "set", &ns_if, "up"]);
    run(&["ip", "-n", &net.name, "link", "set", "lo", "up"]);

    // A web server on the host side of the link.
    let web = TcpListener::bind(format!("{host_ip}:18080")).unwrap();
    std::thread::spawn(move || {
        for mut c in web.incoming().flatten() {
            // read the whole request head, so that closing does not reset
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let (c, mut agent) = setup(tmp.path());
    let ioc = tmp.path().join("ioc.txt");
    std::fs::write(&ioc, "# the lab's bad domain\nevil-c2.example\n").unwrap();
    // small rings: the smallest allowed, as a loaded test machine would
    // show a ring too small for the traffic as kernel drops
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, format!("version = 1\n\n[capture]\nthreads = {threads}\nring_mib = 2\n"))
        .unwrap();
    agent.start(&[
        "--config",
        config.to_str().unwrap(),
        "--interface",
        net.host_if.as_str(),
        "--ioc",
        ioc.to_str().unwrap(),
    ]);
    wait_for("the capture to start", Duration::from_secs(20), || {
        agent.logs().contains("capturing").then_some(())
    });

    // Real traffic from the namespace: a connect scan of closed ports, a DNS
    // query for a listed domain, an HTTP request naming a listed host.
    let script = format!(
        r#"for p in $(seq 1 60); do (exec 3<>/dev/tcp/{host_ip}/$((21000+p))) 2>/dev/null; done
printf '{dns}' > /dev/udp/{host_ip}/53
exec 3<>/dev/tcp/{host_ip}/18080
printf 'GET /update.bin HTTP/1.1\r\nHost: update.evil-c2.example\r\nUser-Agent: canhgac-test\r\n\r\n' >&3
timeout 5 cat <&3 >/dev/null || true
"#,
        dns = dns_query_printf("beacon.evil-c2.example"),
    );
    run(&["ip", "netns", "exec", &net.name, "bash", "-c", &script]);

    let alerts = wait_for("scan, DNS and HTTP alerts", Duration::from_secs(30), || {
        let a = c.alerts();
        let has = |f: &dyn Fn(&serde_json::Value) -> bool| a.iter().any(f);
        let scan = has(&|v| v["canhgac"]["detector"] == "portscan" && v["src_ip"] == peer_ip.as_str());
        let dns = has(&|v| v["dns"]["query"][0]["rrname"] == "beacon.evil-c2.example");
        let http = has(&|v| {
            v["alert"]["signature_id"] == 9_000_005 && v["http"]["hostname"] == "update.evil-c2.example"
        });
        (scan && dns && http).then_some(a)
    });
    assert!(agent.logs().contains(&format!("workers={threads}")), "{}", agent.logs());
    let now = time::OffsetDateTime::now_utc();
    for a in &alerts {
        assert_eq!(a["canhgac"]["agency"], "SO-TTTT");
        // packet times are the kernel's receive times, read from the ring
        let stamp = a["timestamp"].as_str().unwrap();
        assert!(stamp.ends_with("+0000"), "{stamp}");
        let t = canhgac_proto::timefmt::parse_rfc3339(&format!("{}Z", &stamp[..19])).unwrap();
        assert!((now - t).abs() < time::Duration::minutes(5), "alert time {t} is not the capture's ({now})");
    }
    let scan = alerts.iter().find(|v| v["canhgac"]["detector"] == "portscan").unwrap();
    assert_eq!(scan["dest_ip"], host_ip.as_str());
    assert_eq!(scan["canhgac"]["scan"], "vertical");
    agent.kill();
}
