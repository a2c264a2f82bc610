use std::net::IpAddr;

use time::{OffsetDateTime, UtcOffset, macros::datetime};

use super::*;
use crate::detect::StateChange;
use crate::host::logfmt::{self, Clock, LogFormat};

const T0: OffsetDateTime = datetime!(2026-12-06 10:00:00 UTC);

fn cx() -> Context<'static> {
    Context { program: "", host: None, ts: T0, ts_missing: true, offset: UtcOffset::UTC }
}

/// A whole syslog line through `logfmt` then the firewall parser.
fn line(l: &str) -> Parsed {
    let clock = Clock::utc(T0);
    let e = logfmt::parse(l, LogFormat::Auto, &clock).expect("a log line");
    let cx = Context {
        program: &e.program,
        host: e.host.as_deref(),
        ts: e.ts.unwrap_or(T0),
        ts_missing: e.ts.is_none(),
        offset: UtcOffset::UTC,
    };
    parse::parse(&e.message, &cx)
}

fn ev(p: Parsed) -> FirewallEvent {
    match p {
        Parsed::Event(e) => *e,
        other => panic!("not an event: {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn netfilter_ufw_kernel_line() {
    // the format of Ubuntu's ufw (ufw-framework(8), /var/log/ufw.log)
    let e = ev(line(
        "Dec  6 10:12:01 web1 kernel: [ 1234.567890] [UFW BLOCK] IN=eth0 OUT= \
         MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.7 DST=10.0.0.5 LEN=44 TOS=0x00 \
         PREC=0x00 TTL=47 ID=54321 PROTO=TCP SPT=40000 DPT=22 WINDOW=1024 RES=0x00 SYN URGP=0",
    ));
    assert_eq!((e.vendor, e.action), (Vendor::Netfilter, Action::Deny));
    assert_eq!(
        (e.src, e.dst, e.src_port, e.dst_port),
        (ip("203.0.113.7"), ip("10.0.0.5"), Some(40000), Some(22))
    );
    assert_eq!((e.proto.as_str(), e.tcp_flags.as_deref()), ("tcp", Some("SYN")));
    assert_eq!((e.in_iface.as_deref(), e.out_iface.as_deref()), (Some("eth0"), None));
    assert_eq!((e.label.as_deref(), e.device.as_deref()), (Some("[UFW BLOCK]"), Some("web1")));
    assert!(e.is_connection_attempt());
    assert_eq!(e.ts, datetime!(2026-12-06 10:12:01 UTC));
}

#[test]
fn netfilter_prefixes_decide_the_action() {
    let body = "IN=veth1 OUT= MAC=aa:bb:cc:dd:ee:ff:11:22:33:44:55:66:08:00 SRC=10.200.1.2 DST=10.200.1.1 \
                LEN=44 TOS=0x00 PREC=0x00 TTL=52 ID=1 PROTO=TCP SPT=61234 DPT=443 WINDOW=1024 RES=0x00 ACK SYN URGP=0";
    for (prefix, action) in [
        ("nft drop: ", Action::Drop),
        ("IPTables-Dropped: ", Action::Drop),
        ("FINAL_REJECT: ", Action::Reject),
        ("[UFW ALLOW] ", Action::Allow),
        ("", Action::Log),
    ] {
        let e = ev(parse::parse(&format!("{prefix}{body}"), &cx()));
        assert_eq!(e.action, action, "{prefix}");
        assert!(!e.is_connection_attempt(), "a SYN-ACK is not a probe");
    }
    // UDP, an IPv6 address, no ports for ICMP
    let e = ev(parse::parse(
        "[UFW BLOCK] IN=eth0 OUT= MAC= SRC=2001:db8::7 DST=2001:db8::1 LEN=72 TC=0 HOPLIMIT=55 FLOWLBL=0 \
         PROTO=UDP SPT=5353 DPT=161 LEN=32",
        &cx(),
    ));
    assert_eq!((e.proto.as_str(), e.dst_port, e.src), ("udp", Some(161), ip("2001:db8::7")));
    let e = ev(parse::parse(
        "nft drop: IN=eth0 OUT= SRC=198.51.100.4 DST=10.0.0.5 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1",
        &cx(),
    ));
    assert_eq!((e.proto.as_str(), e.dst_port), ("icmp", None));
    assert_eq!(
        parse::parse("[UFW BLOCK] IN=eth0 OUT= SRC=nonsense DST=10.0.0.1 PROTO=TCP", &cx()),
        Parsed::Malformed
    );
}

#[test]
fn pfsense_filterlog_ipv4_ipv6_tcp_udp_icmp() {
    // field layout: Netgate, "Raw Filter Log Format" (pfSense documentation)
    let e = ev(line(
        "Dec  6 10:00:05 filterlog[40325]: 5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,\
         198.51.100.10,203.0.113.1,50000,22,0,S,1234567,,64240,,mss;sackOK;TS;nop;wscale",
    ));
    assert_eq!((e.vendor, e.action, e.proto.as_str()), (Vendor::Filterlog, Action::Deny, "tcp"));
    assert_eq!(
        (e.src, e.dst, e.src_port, e.dst_port),
        (ip("198.51.100.10"), ip("203.0.113.1"), Some(50000), Some(22))
    );
    assert_eq!(
        (e.in_iface.as_deref(), e.rule.as_deref(), e.tcp_flags.as_deref()),
        (Some("igb1"), Some("1000000103"), Some("S"))
    );
    assert!(e.is_connection_attempt());
    let e = ev(line(
        "<134>1 2026-12-06T10:00:06+07:00 fw1.example filterlog 40325 - - 76,,,1000008112,em0,match,pass,out,6,\
         0x00,0x00000,255,udp,17,44,2001:db8::1,2001:db8::2,546,547,44",
    ));
    assert_eq!((e.action, e.proto.as_str(), e.dst_port), (Action::Allow, "udp", Some(547)));
    assert_eq!((e.out_iface.as_deref(), e.device.as_deref()), (Some("em0"), Some("fw1.example")));
    assert_eq!(e.ts, datetime!(2026-12-06 03:00:06 UTC));
    let e = ev(parse::parse(
        "5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,none,1,icmp,84,198.51.100.10,203.0.113.1,request,1234,1",
        &Context { program: "filterlog", ..cx() },
    ));
    assert_eq!((e.proto.as_str(), e.src_port, e.dst_port), ("icmp", None, None));
    // pass with the SA flags: not a connection attempt
    let e = ev(parse::parse(
        "9,,,1000000105,igb0,match,pass,in,4,0x0,,64,0,0,DF,6,tcp,60,10.0.0.2,10.0.0.1,443,50000,0,SA,1,2,64240,,",
        &cx(),
    ));
    assert!(!e.is_connection_attempt());
    assert_eq!(
        parse::parse("5,,,1,igb1,match,block,in,4,0x0", &Context { program: "filterlog", ..cx() }),
        Parsed::Malformed
    );
}

#[test]
fn fortigate_traffic_logs() {
    // Fortinet, "FortiOS Log Message Reference", traffic log (forward) example
    let e = ev(line(
        "<189>date=2019-05-10 time=11:37:47 devname=\"FGT60E\" devid=\"FGT60E4Q16000001\" logid=\"0000000013\" \
         type=\"traffic\" subtype=\"forward\" level=\"notice\" vd=\"vdom1\" eventtime=1557513467369913239 \
         srcip=10.1.100.11 srcport=58012 srcintf=\"port12\" srcintfrole=\"undefined\" dstip=23.59.154.35 \
         dstport=80 dstintf=\"port11\" dstintfrole=\"undefined\" srccountry=\"Reserved\" \
         dstcountry=\"United States\" sessionid=751 proto=6 action=\"deny\" policyid=0 policytype=\"policy\" \
         service=\"HTTP\" trandisp=\"noop\" duration=0 sentbyte=0 rcvdbyte=0 sentpkt=0",
    ));
    assert_eq!((e.vendor, e.action, e.proto.as_str()), (Vendor::Fortigate, Action::Deny, "tcp"));
    assert_eq!((e.src, e.dst, e.dst_port), (ip("10.1.100.11"), ip("23.59.154.35"), Some(80)));
    assert_eq!((e.in_iface.as_deref(), e.out_iface.as_deref()), (Some("port12"), Some("port11")));
    assert_eq!((e.rule.as_deref(), e.device.as_deref()), (Some("0"), Some("FGT60E")));
    assert_eq!(e.ts, datetime!(2019-05-10 11:37:47 UTC));
    let e = ev(parse::parse(
        "date=2026-12-06 time=10:01:02 devname=FG100 type=traffic subtype=local srcip=203.0.113.9 srcport=5000 \
         dstip=198.51.100.2 dstport=443 proto=6 action=close policyid=7",
        &cx(),
    ));
    assert_eq!((e.action, e.rule.as_deref()), (Action::Allow, Some("7")));
    assert_eq!(parse::parse("type=\"traffic\" srcip=x dstip=1.2.3.4", &cx()), Parsed::Malformed);
    // an event log of the same device is not traffic
    assert_eq!(
        parse::parse("date=2026-12-06 type=\"event\" subtype=\"system\" msg=\"x\"", &cx()),
        Parsed::NotFirewall
    );
}

#[test]
fn cisco_asa_access_messages() {
    // Cisco, "Cisco Secure Firewall ASA Series Syslog Messages" (106001, 106023, 106100, 710003, 302013)
    let e = ev(line(
        "Dec  6 10:00:00 asa1 : %ASA-4-106023: Deny tcp src outside:203.0.113.5/44315 dst inside:10.1.1.10/22 \
         by access-group \"outside_access_in\" [0x0, 0x0]",
    ));
    assert_eq!((e.vendor, e.action, e.proto.as_str()), (Vendor::CiscoAsa, Action::Deny, "tcp"));
    assert_eq!(
        (e.src, e.src_port, e.dst, e.dst_port),
        (ip("203.0.113.5"), Some(44315), ip("10.1.1.10"), Some(22))
    );
    assert_eq!((e.in_iface.as_deref(), e.out_iface.as_deref()), (Some("outside"), Some("inside")));
    assert_eq!((e.rule.as_deref(), e.label.as_deref()), (Some("outside_access_in"), Some("ASA-4-106023")));
    let e = ev(parse::parse(
        "%ASA-6-106100: access-list outside_access_in denied udp outside/198.51.100.3(5353) -> inside/10.1.1.20(161) \
         hit-cnt 1 first hit [0x91c26a3, 0x0]",
        &cx(),
    ));
    assert_eq!(
        (e.action, e.proto.as_str(), e.dst_port, e.rule.as_deref()),
        (Action::Deny, "udp", Some(161), Some("outside_access_in"))
    );
    let e = ev(parse::parse(
        "%ASA-2-106001: Inbound TCP connection denied from 203.0.113.5/44316 to 10.1.1.10/23 flags SYN  on interface outside",
        &cx(),
    ));
    assert_eq!((e.action, e.dst_port, e.tcp_flags.as_deref()), (Action::Deny, Some(23), Some("SYN")));
    assert!(e.is_connection_attempt());
    let e = ev(parse::parse(
        "%ASA-3-710003: TCP access denied by ACL from 203.0.113.5/44317 to outside:192.0.2.1/22",
        &cx(),
    ));
    assert_eq!((e.action, e.dst, e.out_iface.as_deref()), (Action::Deny, ip("192.0.2.1"), Some("outside")));
    let e = ev(parse::parse(
        "%ASA-6-302013: Built inbound TCP connection 123456 for outside:203.0.113.5/44318 (203.0.113.5/44318) \
         to inside:10.1.1.10/443 (192.0.2.10/443)",
        &cx(),
    ));
    assert_eq!(
        (e.action, e.src, e.dst, e.dst_port),
        (Action::Allow, ip("203.0.113.5"), ip("10.1.1.10"), Some(443))
    );
    let e = ev(parse::parse(
        "%ASA-6-302013: Built outbound TCP connection 9 for outside:8.8.8.8/443 (8.8.8.8/443) to inside:10.1.1.30/51000 (192.0.2.30/51000)",
        &cx(),
    ));
    assert_eq!((e.src, e.dst, e.dst_port), (ip("10.1.1.30"), ip("8.8.8.8"), Some(443)));
    let e = ev(parse::parse(
        "%ASA-6-106015: Deny TCP (no connection) from 203.0.113.5/80 to 10.1.1.10/5000 flags RST  on interface outside",
        &cx(),
    ));
    assert!(!e.is_connection_attempt());
    assert_eq!(
        parse::parse("%ASA-5-111008: User 'enable_15' executed the 'write memory' command.", &cx()),
        Parsed::NotFirewall
    );
    assert_eq!(
        parse::parse("%ASA-4-106023: Deny tcp src outside:bad dst inside:10.1.1.10/22", &cx()),
        Parsed::Malformed
    );
}

#[test]
fn mikrotik_firewall_log() {
    // MikroTik RouterOS, a filter rule with log=yes log-prefix="DROP_INPUT" sent to remote syslog
    let e = ev(line(
        "<134>Dec  6 10:00:00 MikroTik firewall,info DROP_INPUT input: in:ether1 out:(unknown 0), \
         src-mac 00:0c:42:11:22:33, proto TCP (SYN), 203.0.113.44:51515->192.0.2.1:8291, len 60",
    ));
    assert_eq!((e.vendor, e.action, e.proto.as_str()), (Vendor::Mikrotik, Action::Drop, "tcp"));
    assert_eq!(
        (e.src, e.src_port, e.dst, e.dst_port),
        (ip("203.0.113.44"), Some(51515), ip("192.0.2.1"), Some(8291))
    );
    assert_eq!(
        (e.in_iface.as_deref(), e.out_iface.as_deref(), e.rule.as_deref()),
        (Some("ether1"), None, Some("input"))
    );
    assert_eq!((e.label.as_deref(), e.device.as_deref()), (Some("DROP_INPUT"), Some("MikroTik")));
    assert!(e.is_connection_attempt());
    // no prefix: logged, action unknown; NAT part and ICMP
    let e = ev(parse::parse(
        "firewall,info forward: in:bridge out:ether1, src-mac 11:22:33:44:55:66, proto TCP (ACK,PSH), \
         10.0.0.5:50000->93.184.216.34:443, NAT (10.0.0.5:50000->192.0.2.1:50000)->93.184.216.34:443, len 52",
        &cx(),
    ));
    assert_eq!((e.action, e.src, e.out_iface.as_deref()), (Action::Log, ip("10.0.0.5"), Some("ether1")));
    assert!(!e.is_connection_attempt());
    let e = ev(parse::parse(
        "input: in:ether1 out:(unknown 0), proto ICMP (type 8, code 0), 203.0.113.44->192.0.2.1, len 84",
        &cx(),
    ));
    assert_eq!((e.proto.as_str(), e.dst_port), ("icmp", None));
}

#[test]
fn other_programs_and_garbage_are_not_firewall_events() {
    for m in
        ["Accepted password for root from 1.2.3.4 port 22 ssh2", "", "IN= SRC= DST=", "\u{0}\u{1}garbage ->"]
    {
        assert!(!matches!(parse::parse(m, &cx()), Parsed::Event(_)), "{m:?}");
    }
}

// ---- detectors ----

fn pipeline(ioc: IocSet) -> FirewallPipeline {
    let mut ioc = ioc;
    ioc.seal();
    FirewallPipeline::new(
        FirewallDetectConfig::default(),
        PortscanConfig::default(),
        Arc::new(ioc),
        2,
        false,
        &[],
    )
}

fn denied(src: &str, dst: &str, port: u16, t: i64) -> FirewallEvent {
    let cx = Context { ts: T0 + time::Duration::seconds(t), ..cx() };
    ev(parse::parse(
        &format!(
            "nft drop: IN=eth0 OUT= SRC={src} DST={dst} LEN=44 PROTO=TCP SPT=40000 DPT={port} WINDOW=1024 SYN URGP=0"
        ),
        &cx,
    ))
}

fn alerts(out: &Output) -> Vec<serde_json::Value> {
    out.records
        .iter()
        .filter(|r| r.kind == RecordKind::Alert)
        .map(|r| serde_json::from_slice(&r.eve_json).unwrap())
        .collect()
}

#[test]
fn vertical_scan_is_one_portscan_alert_naming_the_scanner() {
    let mut p = pipeline(IocSet::default());
    let mut out = Output::default();
    let origin = LogOrigin { kind: "firewall", sender: Some(ip("10.0.0.254")), system: Some(7) };
    for port in 1..=24 {
        p.event(&denied("203.0.113.7", "10.0.0.5", port, 0), "syslog", &origin, &mut out);
    }
    assert!(alerts(&out).is_empty(), "24 ports are below the threshold");
    for port in 25..=1000 {
        p.event(&denied("203.0.113.7", "10.0.0.5", port, 1), "syslog", &origin, &mut out);
    }
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["src_ip"], "203.0.113.7");
    assert_eq!(a[0]["canhgac"]["detector"], "portscan");
    assert_eq!(a[0]["canhgac"]["source"], "firewall");
    assert_eq!(a[0]["canhgac"]["sender"], "10.0.0.254");
    assert_eq!(a[0]["canhgac"]["system"], 7);
    assert_eq!(a[0]["canhgac"]["ports_denied"], 25);
    assert_eq!(a[0]["canhgac"]["ports_sample"].as_array().unwrap().len(), 20);
    let facts = out.records.iter().find_map(|r| r.facts.clone()).unwrap();
    assert_eq!(facts.attackers[0].ip, "203.0.113.7");
    assert_eq!(facts.victims[0].ip, "10.0.0.5");
    // SYN-ACKs and allowed traffic of another source are not probes
    let mut out = Output::default();
    for port in 1..=100 {
        let mut e = denied("198.51.100.1", "10.0.0.5", port, 2);
        e.tcp_flags = Some("ACK SYN".into());
        p.event(&e, "syslog", &origin, &mut out);
        let mut e = denied("198.51.100.2", "10.0.0.5", port, 2);
        e.action = Action::Log;
        p.event(&e, "syslog", &origin, &mut out);
    }
    assert!(alerts(&out).is_empty());
}

#[test]
fn horizontal_sweep_and_window() {
    let mut p = pipeline(IocSet::default());
    let mut out = Output::default();
    let o = LogOrigin::of("firewall");
    // 19 hosts, then the window passes: no sweep
    for h in 1..=19 {
        p.event(&denied("203.0.113.8", &format!("10.0.1.{h}"), 445, 0), "f", &o, &mut out);
    }
    for h in 20..=38 {
        p.event(&denied("203.0.113.8", &format!("10.0.1.{h}"), 445, 500), "f", &o, &mut out);
    }
    assert!(alerts(&out).is_empty());
    p.event(&denied("203.0.113.8", "10.0.1.200", 445, 501), "f", &o, &mut out);
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0]["canhgac"]["detector"].as_str(), a[0]["src_ip"].as_str()),
        (Some("sweep"), Some("203.0.113.8"))
    );
    assert_eq!(a[0]["canhgac"]["hosts_denied"], 20);
}

#[test]
fn allowed_after_many_denied() {
    let mut p = pipeline(IocSet::default());
    let mut out = Output::default();
    let o = LogOrigin::of("firewall");
    for i in 0..20 {
        p.event(&denied("203.0.113.9", "10.0.0.5", 3389, i), "f", &o, &mut out);
    }
    let mut ok = denied("203.0.113.9", "10.0.0.5", 3389, 30);
    ok.action = Action::Allow;
    p.event(&ok, "f", &o, &mut out);
    p.event(&ok, "f", &o, &mut out);
    let a = alerts(&out);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["canhgac"]["detector"], "firewall-allowed-after-denied");
    assert_eq!(a[0]["canhgac"]["denied"], 20);
    // 19 denied then allowed: nothing
    let mut out = Output::default();
    for i in 0..19 {
        p.event(&denied("203.0.113.10", "10.0.0.5", 3389, i), "f", &o, &mut out);
    }
    let mut ok = denied("203.0.113.10", "10.0.0.5", 3389, 30);
    ok.action = Action::Allow;
    p.event(&ok, "f", &o, &mut out);
    assert!(alerts(&out).is_empty());
}

#[test]
fn indicator_addresses_allowed_or_denied() {
    let mut set = IocSet::default();
    let list = set.add_list("bad.txt").unwrap();
    set.add("203.0.113.66", list).unwrap();
    set.add("198.51.100.0/24", list).unwrap();
    let mut p = pipeline(set);
    let mut out = Output::default();
    let o = LogOrigin::of("firewall");
    p.event(&denied("203.0.113.66", "10.0.0.5", 22, 0), "f", &o, &mut out);
    p.event(&denied("203.0.113.66", "10.0.0.5", 23, 1), "f", &o, &mut out); // suppressed
    let mut outbound = denied("10.0.0.9", "198.51.100.77", 443, 2);
    outbound.action = Action::Allow;
    p.event(&outbound, "f", &o, &mut out);
    let a = alerts(&out);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        (a[0]["canhgac"]["detector"].as_str(), a[0]["canhgac"]["listed"].as_str()),
        (Some("ioc"), Some("source"))
    );
    assert_eq!(a[1]["canhgac"]["listed"], "destination");
    assert_eq!(a[1]["canhgac"]["indicator"], "198.51.100.0/24");
    let facts = out.records[1].facts.clone().unwrap();
    assert_eq!(facts.attackers[0].ip, "198.51.100.77");
}

#[test]
fn state_survives_a_restart_and_sources_are_bounded() {
    let mut p = pipeline(IocSet::default());
    let mut out = Output::default();
    let o = LogOrigin::of("firewall");
    for port in 1..=20 {
        p.event(&denied("203.0.113.7", "10.0.0.5", port, 0), "f", &o, &mut out);
    }
    p.take_state(&mut out);
    let restored: Vec<(Vec<u8>, Vec<u8>)> = out
        .state
        .iter()
        .filter_map(|s| match s {
            StateChange::Put(k, v) => Some((k.clone(), v.clone())),
            StateChange::Delete(_) => None,
        })
        .collect();
    assert_eq!(restored.len(), 1);
    assert!(restored[0].0.starts_with(b"hws"));
    let mut p = FirewallPipeline::new(
        FirewallDetectConfig::default(),
        PortscanConfig::default(),
        Arc::new(IocSet::default()),
        2,
        false,
        &restored,
    );
    let mut out = Output::default();
    for port in 21..=25 {
        p.event(&denied("203.0.113.7", "10.0.0.5", port, 1), "f", &o, &mut out);
    }
    assert_eq!(alerts(&out).len(), 1, "the 20 ports before the restart count");
    // capacity
    let cfg = FirewallDetectConfig { max_tracked: 10, ..Default::default() };
    let mut p =
        FirewallPipeline::new(cfg, PortscanConfig::default(), Arc::new(IocSet::default()), 2, false, &[]);
    for i in 0..50 {
        p.event(&denied(&format!("203.0.113.{i}"), "10.0.0.5", 22, 0), "f", &o, &mut Output::default());
    }
    assert_eq!(p.evictions(), 40);
}

#[test]
fn events_are_emitted_when_enabled() {
    let mut p = pipeline(IocSet::default());
    p.emit_events = true;
    let mut out = Output::default();
    let clock = Clock::utc(T0);
    let e = logfmt::parse(
        "Dec  6 10:12:01 web1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.7 DST=10.0.0.5 PROTO=TCP SPT=1 DPT=22 SYN",
        LogFormat::Auto,
        &clock,
    )
    .unwrap();
    let o = LogOrigin { kind: "firewall", sender: Some(ip("10.0.0.254")), system: None };
    assert!(p.entry(&e, T0, UtcOffset::UTC, "syslog", &o, &mut out).is_some());
    let v: serde_json::Value = serde_json::from_slice(&out.records[0].eve_json).unwrap();
    assert_eq!(v["event_type"], "firewall");
    assert_eq!(v["firewall"]["action"], "deny");
    assert_eq!(v["dest_port"], 22);
    assert_eq!(v["canhgac"]["sender"], "10.0.0.254");
    let junk = logfmt::parse("Dec  6 10:12:01 web1 sshd[1]: hello", LogFormat::Auto, &clock).unwrap();
    assert!(p.entry(&junk, T0, UtcOffset::UTC, "syslog", &o, &mut out).is_none());
    assert_eq!((p.stats.events, p.stats.other, p.stats.unparsed), (1, 1, 0));
}
