//! The syslog receiver end to end: a real agent (`canhgac-agent run`)
//! with `[syslog]` on loopback UDP and TCP, senders on distinct loopback
//! addresses, records read back from its spool and counters from its
//! `/metrics`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// NXLog `om_json` of a Windows logon failure (event 4625).
fn win_4625(i: u32, ip: &str) -> String {
    format!(
        r#"{{"EventTime":"2026-12-06 10:00:{i:02}","Hostname":"DC01.example.local","EventType":"AUDIT_FAILURE","EventID":4625,"SourceName":"Microsoft-Windows-Security-Auditing","Channel":"Security","TargetUserName":"administrator","TargetDomainName":"","Status":"0xc000006d","SubStatus":"0xc000006a","LogonType":"3","WorkstationName":"KALI","IpAddress":"{ip}","IpPort":"0","SourceModuleType":"im_msvistalog"}}"#
    )
}

fn metrics(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("canhgac_agent_{name}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

fn udp_from(local: &str) -> UdpSocket {
    UdpSocket::bind((local, 0)).unwrap()
}

fn tcp_from(local: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(local.parse().unwrap(), 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// Issue 13, points 4 and 5: Windows logon failures over UDP become one
/// brute-force alert naming the guessing address; a netfilter port scan
/// over TCP (octet counting) becomes a portscan alert naming the scanner;
/// a sender not on the allow-list is refused and counted; a flood from
/// one sender is rate-limited and counted while the others are served.
#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not async
fn syslog_receiver_detects_windows_brute_force_and_firewall_scans_and_refuses_and_limits() {
    let dir = super::enrolled_state_dir();
    let (udp_port, tcp_port, metrics_port) = (free_udp_port(), free_port(), free_port());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[syslog]
udp = "127.0.0.1:{udp_port}"
tcp = "127.0.0.1:{tcp_port}"
allow = ["127.0.0.3/32", "127.0.0.4"]
rate = 100
burst = 100
[[syslog.sender]]
address = "127.0.0.2"
kind = "windows"
system = 5
[metrics]
listen = "127.0.0.1:{metrics_port}"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canhgac-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path())
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while metrics(metrics_port).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "the agent did not start");
        assert!(child.try_wait().unwrap().is_none(), "the agent stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let udp_to: SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
    let tcp_to: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();

    // a flood from 127.0.0.4: 3000 messages, 100 per second allowed
    let flood = udp_from("127.0.0.4");
    for i in 0..3000 {
        flood.send_to(format!("<13>Dec  6 10:00:00 noisy app[1]: message {i}").as_bytes(), udp_to).unwrap();
    }
    // a sender not on the allow-list, over UDP and TCP
    let stranger = udp_from("127.0.0.9");
    for _ in 0..3 {
        stranger.send_to(win_4625(1, "203.0.113.99").as_bytes(), udp_to).unwrap();
    }
    let mut s = tcp_from("127.0.0.9", tcp_to);
    let _ = s.write_all(b"<13>Dec  6 10:00:00 h p[1]: hello\n");
    drop(s);
    // Windows logon failures from 127.0.0.2 (a Windows forwarder), over UDP
    let win = udp_from("127.0.0.2");
    for i in 0..8 {
        win.send_to(win_4625(i, "203.0.113.50").as_bytes(), udp_to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // a netfilter port scan from 198.51.100.7, from the firewall 127.0.0.3
    // over TCP with octet counting (kind detected)
    let mut fw = tcp_from("127.0.0.3", tcp_to);
    for port in 1..=40 {
        let msg = format!(
            "<4>Dec  6 10:01:{:02} fw1 kernel: [12345.678901] nft drop: IN=eth0 OUT= \
             MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.7 DST=10.0.0.5 LEN=44 TOS=0x00 \
             PREC=0x00 TTL=47 ID=54321 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 RES=0x00 SYN URGP=0",
            port % 60
        );
        fw.write_all(format!("{} {msg}", msg.len()).as_bytes()).unwrap();
    }
    fw.flush().unwrap();
    drop(fw);

    let start = Instant::now();
    let text = loop {
        let m = metrics(metrics_port);
        if metric(&m, "host_firewall_events") >= 40 && metric(&m, "host_windows_events") >= 8 {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "messages not processed: {m}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metric(&text, "host_syslog_refused") >= 4, "3 datagrams and 1 connection refused: {text}");
    // (UDP: datagrams the kernel dropped under the flood are not seen at all)
    let limited = metric(&text, "host_syslog_rate_limited");
    assert!(limited >= 1000, "the flood is rate-limited: {limited}");
    let queued = metric(&text, "host_syslog_messages");
    assert!(queued < 400, "about the burst of the flood, 8 Windows events and 40 firewall lines: {queued}");

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let spool = canhgac_agent::spool::Spool::open(&dir.path().join("spool"), 64 << 20).unwrap();
    let records = spool.read_after(0, 100_000, 64 << 20).unwrap();
    let alerts: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.eve_json).unwrap())
        .filter(|v| v["event_type"] == "alert")
        .collect();
    let by = |d: &str| alerts.iter().filter(|a| a["canhgac"]["detector"] == d).collect::<Vec<_>>();
    let bf = by("auth-bruteforce");
    assert_eq!(bf.len(), 1, "{alerts:#?}");
    assert_eq!(bf[0]["src_ip"], "203.0.113.50");
    assert_eq!(bf[0]["canhgac"]["source"], "windows");
    assert_eq!(bf[0]["canhgac"]["sender"], "127.0.0.2");
    assert_eq!(bf[0]["canhgac"]["system"], 5);
    let scans = by("portscan");
    assert_eq!(scans.len(), 1, "{alerts:#?}");
    assert_eq!(scans[0]["src_ip"], "198.51.100.7");
    assert_eq!(scans[0]["canhgac"]["source"], "firewall");
    assert_eq!(scans[0]["canhgac"]["sender"], "127.0.0.3");
    assert!(alerts.iter().all(|a| a["src_ip"] != "203.0.113.99"), "nothing from the refused sender");
}
