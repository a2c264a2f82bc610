//! Semantics of the rule engine on hand-made inspections: one test per
//! keyword group, the suricata-verify cases named in issue 3 with the same
//! inputs as their captures, and robustness against garbage.

use std::{net::IpAddr, path::PathBuf};

use super::*;

/// One event to inspect; `Default` is a to-server TCP packet of an
/// established flow 10.0.0.1:1234 -> 1.2.3.4:80.
#[derive(Clone)]
struct Ev<'a> {
    ts_us: i64,
    src: &'a str,
    dst: &'a str,
    sport: u16,
    dport: u16,
    proto: u8,
    ttl: u8,
    flags: u8,
    icmp: Option<(u8, u8)>,
    payload: &'a [u8],
    stream: Option<&'a [u8]>,
    to_server: bool,
    established: bool,
    app: AppProto,
    flow_id: u64,
    flow_pkts: [u64; 2],
    flow_bytes: [u64; 2],
    bufs: Vec<(Buffer, &'a [u8])>,
    tx_only: bool,
    no_payload: bool,
}

impl Default for Ev<'_> {
    fn default() -> Self {
        Ev {
            ts_us: 1_000_000,
            src: "10.0.0.1",
            dst: "1.2.3.4",
            sport: 1234,
            dport: 80,
            proto: 6,
            ttl: 64,
            flags: 0x18,
            icmp: None,
            payload: b"",
            stream: None,
            to_server: true,
            established: true,
            app: AppProto::Unknown,
            flow_id: 1,
            flow_pkts: [1, 0],
            flow_bytes: [60, 0],
            bufs: Vec::new(),
            tx_only: false,
            no_payload: false,
        }
    }
}

impl<'a> Ev<'a> {
    fn reply(&self) -> Ev<'a> {
        Ev {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            to_server: !self.to_server,
            bufs: Vec::new(),
            payload: b"",
            ..self.clone()
        }
    }
}

/// A rule set with its state, as the caller keeps them.
struct Eng {
    set: RuleSet,
    flows: std::collections::HashMap<u64, FlowRuleState>,
    global: GlobalRuleState,
}

impl Eng {
    fn new(text: &str) -> Eng {
        let (set, rep) = RuleSet::from_str(text, &Vars::default());
        assert!(rep.skipped.is_empty(), "skipped: {:#?}", rep.skipped);
        Eng { set, flows: Default::default(), global: GlobalRuleState::default() }
    }

    fn with(set: RuleSet) -> Eng {
        Eng { set, flows: Default::default(), global: GlobalRuleState::default() }
    }

    fn matches(&mut self, ev: &Ev<'_>) -> Vec<RuleMatch> {
        let mut b = Buffers::default();
        for (k, v) in &ev.bufs {
            b.push(*k, v);
        }
        b.set_tx_only(ev.tx_only);
        let ctx = Inspect {
            ts_us: ev.ts_us,
            src: ev.src.parse::<IpAddr>().unwrap(),
            dst: ev.dst.parse::<IpAddr>().unwrap(),
            sport: ev.sport,
            dport: ev.dport,
            proto: ev.proto,
            ttl: ev.ttl,
            tcp_flags: ev.flags,
            icmp: ev.icmp,
            payload: ev.payload,
            stream: ev.stream,
            stream_seen: 0,
            no_payload_inspection: ev.no_payload,
            to_server: ev.to_server,
            established: ev.established,
            app_proto: ev.app,
            buffers: &b,
            flow_id: ev.flow_id,
            flow_pkts: ev.flow_pkts,
            flow_bytes: ev.flow_bytes,
        };
        let flow = self.flows.entry(ev.flow_id).or_default();
        let mut out = Vec::new();
        self.set.inspect(&ctx, flow, &mut self.global, &mut out);
        out
    }

    /// Sids that fired (noalert ones excluded).
    fn sids(&mut self, ev: &Ev<'_>) -> Vec<u32> {
        let mut v: Vec<u32> = self.matches(ev).into_iter().filter(|m| !m.noalert).map(|m| m.sid).collect();
        v.sort_unstable();
        v
    }
}

fn count(all: &[Vec<u32>], sid: u32) -> usize {
    all.iter().flatten().filter(|s| **s == sid).count()
}

// ---------------------------------------------------------------- suricata-verify

/// alert-testmyids: the classic `uid=0(root)` rule on the flowbit-oring capture
/// (HTTP to testmyids.com): one alert, on the response.
#[test]
fn sv_alert_testmyids() {
    let mut e = Eng::new(
        r#"alert ip any any -> any any (msg:"GPL ATTACK_RESPONSE id check returned root"; content:"uid=0|28|root|29|"; target:dest_ip; classtype:bad-unknown; sid:2100498; rev:7;)"#,
    );
    let req = Ev {
        payload: b"GET / HTTP/1.1\r\nHost: testmyids.com\r\nUser-Agent: curl/7.58.0\r\nAccept: */*\r\n\r\n",
        app: AppProto::Http,
        ..Default::default()
    };
    let syn = Ev { payload: b"", flags: 0x02, established: false, ..req.clone() };
    let resp = Ev {
        payload: b"HTTP/1.1 200 OK\r\nContent-Length: 39\r\n\r\nuid=0(root) gid=0(root) groups=0(root)\n",
        ..req.reply()
    };
    let ack = Ev { payload: b"", ..req.clone() };
    let all: Vec<Vec<u32>> = [syn, req, resp.clone(), ack].iter().map(|x| e.sids(x)).collect();
    assert_eq!(count(&all, 2100498), 1);
    let m = e.matches(&resp);
    let m = m.first().expect("alert");
    assert_eq!((m.gid, m.rev, m.severity), (1, 7, 2));
    assert_eq!(m.category, "Potentially Bad Traffic");
    assert_eq!(m.classtype.as_deref(), Some("bad-unknown"));
    assert_eq!(m.target, Some(AlertTarget::DestIp));
    assert_eq!(m.action, Action::Alert);
}

const BUG28_URI: &[u8] = b"/a/Drk.syn?adcontext=ROUTINE_CHECKIN&contextpeak=0&contextcount=0&countrycodein=XX&lastAdTime=0&lastAdCode=0&cookie1=0&cookie2=0&cookie3=0&cookie4=0&InstID={2CAA09DF-35D8-471C-9979-A11DA0CC54DB}&status=1&smode=11&event=&bho=aurora.exe&NumWindows=4&PartnerId=0&BundleId=0&HN=bob7&VSN=189A97F7&PI=55274-640-1781551-23400&MA=005400123457&TM=-1";

/// bug-28: uricontent with and without a space after the colon, mixed with a
/// payload content, in `alert tcp` rules: each of the four fires once.
#[test]
fn sv_bug_28_uricontent() {
    let rules = r#"
alert tcp any any -> any any (msg:"ET MALWARE LocalNRD Spyware Checkin (OISF changed to content fails also)"; flow: to_server,established; uricontent:"/a/Drk.syn?"; nocase; content: "adcontext"; nocase; reference:url,www.localnrd.com; classtype: trojan-activity; reference:url,doc.emergingthreats.net/bin/view/Main/2001340; reference:url,www.emergingthreats.net/cgi-bin/cvsweb.cgi/sigs/MALWARE/MALWARE_Localnrd; sid: 2001341; rev:9;)
alert tcp any any -> any any (msg:"ET MALWARE LocalNRD Spyware Checkin (OISF remove space between colon and quote content works)"; flow: to_server,established; uricontent:"/a/Drk.syn?"; nocase; content:"adcontext"; nocase; reference:url,www.localnrd.com; classtype: trojan-activity; reference:url,doc.emergingthreats.net/bin/view/Main/2001340; reference:url,www.emergingthreats.net/cgi-bin/cvsweb.cgi/sigs/MALWARE/MALWARE_Localnrd; sid: 2001343; rev:9;)
alert tcp any any -> any any (msg:"ET MALWARE LocalNRD Spyware Checkin (OISF remove space between colon and quote uricontent works)"; flow: to_server,established; uricontent:"/a/Drk.syn?"; nocase; uricontent:"adcontext"; nocase; reference:url,www.localnrd.com; classtype: trojan-activity; reference:url,doc.emergingthreats.net/bin/view/Main/2001340; reference:url,www.emergingthreats.net/cgi-bin/cvsweb.cgi/sigs/MALWARE/MALWARE_Localnrd; sid: 2001342; rev:9;)
alert tcp any any -> any any (msg:"ET MALWARE LocalNRD Spyware Checkin (Original Sig Fails to Fire)"; flow: to_server,established; uricontent:"/a/Drk.syn?"; nocase; uricontent: "adcontext"; nocase; reference:url,www.localnrd.com; classtype: trojan-activity; reference:url,doc.emergingthreats.net/bin/view/Main/2001340; reference:url,www.emergingthreats.net/cgi-bin/cvsweb.cgi/sigs/MALWARE/MALWARE_Localnrd; sid: 2001340; rev:9;)
"#;
    let mut e = Eng::new(rules);
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(BUG28_URI);
    request.extend_from_slice(b" HTTP/1.1\r\nUser-Agent: {2CAA09DF-35D8-471C-9979-A11DA0CC54DB}|0.21.5.110\r\nHost: btg.btgrab.com\r\n\r\n");
    let base = Ev {
        src: "192.168.2.7",
        sport: 1041,
        dst: "208.75.250.50",
        dport: 80,
        app: AppProto::Http,
        ..Default::default()
    };
    let syn = Ev { flags: 0x02, established: false, ..base.clone() };
    let req = Ev {
        payload: &request,
        bufs: vec![
            (Buffer::HttpUri, BUG28_URI),
            (Buffer::HttpMethod, b"GET"),
            (Buffer::HttpHost, b"btg.btgrab.com"),
        ],
        ..base.clone()
    };
    // the response call carries the request buffers again (see the module docs)
    let mut resp = Ev { payload: b"HTTP/1.1 200 OK\r\n\r\n", ..base.reply() };
    resp.bufs = vec![(Buffer::HttpUri, BUG28_URI), (Buffer::HttpStatCode, b"200")];
    let more = Ev { payload: &request, ..base.clone() };
    let all: Vec<Vec<u32>> = [syn, req.clone(), resp, more].iter().map(|x| e.sids(x)).collect();
    for sid in [2001340, 2001341, 2001342, 2001343] {
        assert_eq!(count(&all, sid), 1, "sid {sid}");
    }
    let m = e.matches(&req);
    let m = m.iter().find(|m| m.sid == 2001340).unwrap();
    assert_eq!((m.severity, m.category.as_str()), (1, "A Network Trojan was detected"));
    assert_eq!(m.references.len(), 3);
    assert_eq!(m.references[0], "url,www.localnrd.com");
}

/// bug-4376: http.host on the request, http.stat_code on the response.
#[test]
fn sv_bug_4376_http_host() {
    let mut e = Eng::new(
        "alert http any any -> any any (flow:to_client; http.stat_code; content:\"200\"; sid:2;)\n\
         alert http any any -> any any (flow:to_server; http.host; content:\"nx2500-242-4-server\"; sid:1;)",
    );
    let req = Ev {
        app: AppProto::Http,
        payload: b"GET /malware/ppt/mal/51f14eb6c874686e5f593132cf0f742d.ppt HTTP/1.1\r\nHost: nx2500-242-4-server\r\n\r\n",
        bufs: vec![
            (Buffer::HttpUri, b"/malware/ppt/mal/51f14eb6c874686e5f593132cf0f742d.ppt"),
            (Buffer::HttpHost, b"nx2500-242-4-server"),
        ],
        ..Default::default()
    };
    let mut resp = Ev { payload: b"HTTP/1.1 200 OK\r\n\r\n", ..req.reply() };
    resp.bufs = vec![(Buffer::HttpStatCode, b"200"), (Buffer::HttpHost, b"nx2500-242-4-server")];
    let body = Ev { payload: b"\xd0\xcf\x11\xe0 ppt body", ..req.reply() };
    assert_eq!(e.sids(&req), vec![1]);
    assert_eq!(e.sids(&resp), vec![2]);
    assert_eq!(e.sids(&body), Vec::<u32>::new());
}

/// bug-5758: tls.sni on the ClientHello; not again on later records.
#[test]
fn sv_bug_5758_tls_sni() {
    let mut e = Eng::new("alert tls any any -> any any (tls.sni; content:\"ftp.nluug.nl\"; sid:1;)");
    let hello = Ev {
        dport: 443,
        app: AppProto::Tls,
        payload: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03...ftp.nluug.nl...",
        bufs: vec![(Buffer::TlsSni, b"ftp.nluug.nl")],
        ..Default::default()
    };
    let mut server = Ev { payload: b"\x16\x03\x03\x00\x5a\x02", ..hello.reply() };
    server.bufs = vec![(Buffer::TlsSni, b"ftp.nluug.nl"), (Buffer::TlsCertSubject, b"CN=ftp.nluug.nl")];
    assert_eq!(e.sids(&hello), vec![1]);
    assert_eq!(e.sids(&server), Vec::<u32>::new());
}

/// dns/dns-query/dns-detect-query-02: google.com on packet 1, google.net on
/// packet 3, nothing on the response (packet 2) even with the query buffer.
#[test]
fn sv_dns_detect_query_02() {
    let mut e = Eng::new(
        "alert dns any any -> any any (msg:\"Test dns_query option\"; dns_query; content:\"google.com\"; nocase; sid:1;)\n\
         alert dns any any -> any any (msg:\"Test dns_query option\"; dns_query; content:\"google.net\"; nocase; sid:2;)",
    );
    let q1 = Ev {
        src: "192.168.1.5",
        sport: 41424,
        dst: "192.168.1.1",
        dport: 53,
        proto: 17,
        established: false,
        app: AppProto::Dns,
        payload: b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06google\x03com\x00\x00\x01\x00\x01",
        bufs: vec![(Buffer::DnsQuery, b"google.com")],
        ..Default::default()
    };
    let mut r1 = Ev { established: true, payload: b"\x00\x01\x81\x80", ..q1.reply() };
    r1.bufs = vec![(Buffer::DnsQuery, b"google.com")];
    let q2 = Ev {
        established: true,
        payload: b"\x00\x02\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06google\x03net\x00\x00\x01\x00\x01",
        bufs: vec![(Buffer::DnsQuery, b"google.net")],
        ..q1.clone()
    };
    assert_eq!(e.sids(&q1), vec![1]);
    assert_eq!(e.sids(&r1), Vec::<u32>::new());
    assert_eq!(e.sids(&q2), vec![2]);
}

/// tls/tls-glupteba: tls.subjectaltname is multi-valued; one alert.
#[test]
fn sv_tls_glupteba_san() {
    let mut e = Eng::new(
        "alert tls any any -> any any (msg:\"Glupteba TROJAN\"; flow:to_client; tls.subjectaltname; content:\"server15.xn--j1ahhq.xn--p1ai\"; sid:1;)",
    );
    let names: Vec<String> = (1..=16)
        .map(|i| format!("server{i}.xn--j1ahhq.xn--p1ai"))
        .chain(std::iter::once("xn--j1ahhq.xn--p1ai".to_string()))
        .collect();
    let client = Ev {
        src: "192.168.134.106",
        sport: 23481,
        dst: "72.16.54.30",
        dport: 443,
        app: AppProto::Tls,
        payload: b"\x16\x03\x01",
        ..Default::default()
    };
    let mut cert = Ev { payload: b"\x16\x03\x01\x10\x00\x0b", ..client.reply() };
    cert.bufs = names.iter().map(|n| (Buffer::TlsCertSan, n.as_bytes())).collect();
    cert.bufs.push((Buffer::TlsCertSubject, b"CN=xn--j1ahhq.xn--p1ai"));
    assert_eq!(e.sids(&client), Vec::<u32>::new());
    assert_eq!(e.sids(&cert), vec![1]);
    // without the 15th name it does not fire
    let mut other = cert.clone();
    other.bufs.retain(|(_, v)| !v.starts_with(b"server15."));
    assert_eq!(e.sids(&other), Vec::<u32>::new());
}

/// The 12 packets of threshold/threshold-rule-flow/icmp.pcap: 8 echo
/// requests (two copies each of seq 9..12) and 4 replies, one ICMP flow.
fn icmp_pcap() -> Vec<Ev<'static>> {
    let us = [
        (1309144887, 24263, true),
        (1309144887, 24291, true),
        (1309144887, 28177, false),
        (1309144888, 24534, true),
        (1309144888, 24850, true),
        (1309144888, 28895, false),
        (1309144889, 25473, true),
        (1309144889, 25498, true),
        (1309144889, 29740, false),
        (1309144890, 26576, true),
        (1309144890, 26605, true),
        (1309144890, 30473, false),
    ];
    us.iter()
        .map(|&(s, u, req)| {
            let e = Ev {
                ts_us: s * 1_000_000 + u,
                src: "192.168.0.89",
                dst: "192.168.0.1",
                sport: 0,
                dport: 0,
                proto: 1,
                icmp: Some((8, 0)),
                payload: b"abcdefghijklmnopqrstuvwabcdefghi",
                established: false,
                flow_id: 42,
                ..Default::default()
            };
            if req {
                e
            } else {
                Ev { icmp: Some((0, 0)), payload: e.payload, established: true, ..e.reply() }
            }
        })
        .collect()
}

#[test]
fn sv_threshold_rule_flow() {
    let mut e = Eng::new(
        "alert icmp any any -> any any (itype:8; sid:1;)\n\
         alert icmp any any -> any any (itype:8; threshold:type both, track by_flow, count 3, seconds 3600; sid:4;)\n\
         alert icmp any any -> any any (itype:8; threshold:type limit, track by_flow, count 1, seconds 3600; sid:2;)\n\
         alert icmp any any -> any any (itype:8; threshold:type limit, track by_flow, count 2, seconds 3600; sid:3;)",
    );
    let all: Vec<Vec<u32>> = icmp_pcap().iter().map(|x| e.sids(x)).collect();
    assert_eq!(count(&all, 1), 8);
    assert_eq!(count(&all, 2), 1);
    assert_eq!(count(&all, 3), 2);
    assert_eq!(count(&all, 4), 1);
}

#[test]
fn sv_detection_filter_rule_hostsrc() {
    let mut e = Eng::new(
        "alert icmp any any -> any any (itype:8; detection_filter:track by_src, count 1, seconds 3600; sid:2;)\n\
         alert icmp any any -> any any (itype:8; detection_filter:track by_src, count 2, seconds 3600; sid:3;)\n\
         alert icmp any any -> any any (itype:8; detection_filter:track by_src, count 4, seconds 3600; sid:4;)\n\
         alert icmp any any -> any any (itype:8; detection_filter:track by_src, count 7, seconds 3600; sid:5;)\n\
         alert icmp any any -> any any (itype:8; detection_filter:track by_src, count 8, seconds 3600; sid:6;)\n\
         alert icmp any any -> any any (itype:8; sid:1;)",
    );
    let all: Vec<Vec<u32>> = icmp_pcap().iter().map(|x| e.sids(x)).collect();
    let got: Vec<usize> = (1..=6).map(|s| count(&all, s)).collect();
    assert_eq!(got, vec![8, 7, 6, 4, 1, 0]);
}

/// datasets-match-subdomain: `.evil.com` in a base64 list and in JSON lines;
/// mail.evil.com and sub.mail.evil.com match, example.com does not.
#[test]
fn sv_datasets_match_subdomain() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("domains.lst"), "LmV2aWwuY29t\n").unwrap();
    std::fs::write(dir.path().join("domains.json"), "{\"domain\": \".evil.com\"}\n").unwrap();
    let rules = "alert dns any any -> any any (dns.query; dotprefix; dataset:isset,blocked-domains,type string,match subdomain,load domains.lst; sid:1; rev:1;)\n\
                 alert dns any any -> any any (dns.query; dotprefix; dataset:isset,blocked-domains-json,type string,match subdomain,load domains.json,format ndjson,value_key domain,context_key domain; sid:2; rev:1;)";
    let (set, rep) = RuleSet::from_str_in(rules, &Vars::default(), dir.path());
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    let mut e = Eng::with(set);
    let q = |name: &'static str, sport: u16| Ev {
        src: "5.6.7.8",
        dst: "1.2.3.4",
        sport,
        dport: 53,
        proto: 17,
        established: false,
        app: AppProto::Dns,
        flow_id: u64::from(sport),
        payload: b"\x00\x01\x01\x00",
        bufs: vec![(Buffer::DnsQuery, name.as_bytes())],
        ..Default::default()
    };
    let all: Vec<Vec<u32>> = [q("mail.evil.com", 1234), q("sub.mail.evil.com", 1235), q("example.com", 1236)]
        .iter()
        .map(|x| e.sids(x))
        .collect();
    assert_eq!(all.iter().flatten().count(), 4);
    assert_eq!(count(&all, 1), 2);
    assert_eq!(count(&all, 2), 2);
    assert!(all[2].is_empty());
    // a name that only ends like the domain does not match
    assert!(e.sids(&q("notevil.com", 1300)).is_empty());
}

fn syn_to(dport: u16, ts: i64) -> Ev<'static> {
    Ev {
        ts_us: ts * 1_000_000,
        src: "3.3.3.3",
        dst: "1.1.1.1",
        sport: 12345,
        dport,
        flags: 0x02,
        established: false,
        flow_id: u64::from(dport),
        ..Default::default()
    }
}

#[test]
fn sv_detection_filter_distinct_dstport() {
    let mut e = Eng::new(
        "alert tcp any any -> 1.1.1.1 any (msg:\"DF distinct dst_port\"; flags:S; flow:stateless; detection_filter: track by_dst, count 1, seconds 60, unique_on dst_port; sid:100001; rev:1;)",
    );
    let all: Vec<Vec<u32>> = [syn_to(80, 0), syn_to(81, 1)].iter().map(|x| e.sids(x)).collect();
    assert_eq!(count(&all, 100001), 1);
    let mut e = Eng::new(
        "alert tcp any any -> 1.1.1.1 any (msg:\"DF distinct dst_port no dup\"; flags:S; flow:stateless; detection_filter: track by_dst, count 3, seconds 60, unique_on dst_port; sid:100011; rev:1;)",
    );
    let all: Vec<Vec<u32>> =
        [syn_to(80, 0), syn_to(80, 1), syn_to(81, 2)].iter().map(|x| e.sids(x)).collect();
    assert_eq!(count(&all, 100011), 0);
}

// ---------------------------------------------------------------- keyword groups

#[test]
fn header_addresses_ports_direction() {
    let mut e = Eng::new(
        "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (content:\"x\"; sid:1;)\n\
         alert tcp [10.0.0.0/8,![10.0.0.2,10.0.0.3]] 1024: -> any !80 (content:\"x\"; sid:2;)\n\
         alert tcp 1.2.3.4 80 <> 10.0.0.1 any (content:\"x\"; sid:3;)\n\
         alert udp any any -> any any (content:\"x\"; sid:4;)\n\
         alert ip any any -> any [80,443] (content:\"x\"; sid:5;)",
    );
    let p = Ev { payload: b"x", ..Default::default() };
    assert_eq!(e.sids(&p), vec![1, 3, 5]);
    assert_eq!(e.sids(&Ev { dport: 8080, ..p.clone() }), vec![2]);
    assert_eq!(e.sids(&Ev { src: "10.0.0.2", dport: 8080, ..p.clone() }), Vec::<u32>::new());
    let back = Ev { payload: b"x", ..p.reply() };
    assert_eq!(e.sids(&back), vec![3]);
    assert_eq!(e.sids(&Ev { proto: 17, ..p.clone() }), vec![4, 5]);
    // ports never match a protocol without ports unless `any`
    assert_eq!(e.sids(&Ev { proto: 1, ..p.clone() }), Vec::<u32>::new());
}

#[test]
fn header_protocols() {
    let mut e = Eng::new(
        "alert icmp any any -> any any (sid:1;)\n\
         alert icmpv6 any any -> any any (sid:2;)\n\
         alert tcp-pkt any any -> any any (content:\"ab\"; sid:3;)\n\
         alert tcp-stream any any -> any any (content:\"ab\"; sid:4;)\n\
         alert http any any -> any any (content:\"ab\"; sid:5;)\n\
         alert pkthdr any any -> any any (ttl:3; sid:6;)",
    );
    let icmp6 =
        Ev { proto: 58, icmp: Some((128, 0)), src: "2001:db8::1", dst: "2001:db8::2", ..Default::default() };
    assert_eq!(e.sids(&icmp6), vec![1, 2]);
    // the pattern spans two packets: only the stream sees it
    let pkt = Ev { payload: b"b", stream: Some(b"ab"), ..Default::default() };
    assert_eq!(e.sids(&pkt), vec![4]);
    let whole = Ev { payload: b"ab", ..Default::default() };
    assert_eq!(e.sids(&whole), vec![3, 4]);
    assert_eq!(e.sids(&Ev { app: AppProto::Http, ..whole.clone() }), vec![3, 4, 5]);
    assert_eq!(e.sids(&Ev { ttl: 3, ..whole.clone() }), vec![3, 4, 6]);
}

#[test]
fn content_modifiers() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (content:\"GET\"; depth:3; content:\"/admin\"; distance:1; within:6; sid:1;)\n\
         alert tcp any any -> any any (content:\"secret\"; nocase; sid:2;)\n\
         alert tcp any any -> any any (content:\"Secret\"; sid:3;)\n\
         alert tcp any any -> any any (content:\"|de ad|\"; offset:2; depth:2; sid:4;)\n\
         alert tcp any any -> any any (content:\"q\"; content:!\"r\"; distance:0; within:1; sid:5;)\n\
         alert tcp any any -> any any (content:\"xyzzy\"; fast_pattern:1,3; content:\"plugh\"; fast_pattern:only; sid:6;)\n\
         alert tcp any any -> any any (content:\"HTTP/1.\"; startswith; content:\"close\"; endswith; rawbytes; sid:7;)\n\
         alert tcp any any -> any any (content:\"a\\;b\\\"c\\\\\"; sid:8;)",
    );
    let s = |p: &'static [u8]| Ev { payload: p, ..Default::default() };
    assert_eq!(e.sids(&s(b"GET /admin HTTP/1.0")), vec![1]);
    assert_eq!(e.sids(&s(b"GET  /admin")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"xGET /admin")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"my SECRET")), vec![2]);
    assert_eq!(e.sids(&s(b"my Secret")), vec![2, 3]);
    assert_eq!(e.sids(&s(b"\x00\x00\xde\xad")), vec![4]);
    assert_eq!(e.sids(&s(b"\x00\x00\x00\xde\xad")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"qr qs")), vec![5], "the second `q` is followed by `s`");
    assert_eq!(e.sids(&s(b"qr qr")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"PLUGH xyzzy plugh")), vec![6]);
    assert_eq!(
        e.sids(&s(b"xyzzy PLUGH")),
        Vec::<u32>::new(),
        "fast_pattern:only content stays case-sensitive"
    );
    assert_eq!(e.sids(&s(b"HTTP/1.1 200 OK\r\nConnection: close")), vec![7]);
    assert_eq!(e.sids(&s(b" HTTP/1.1 200 OK\r\nConnection: close")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"xx a;b\"c\\ yy")), vec![8]);
}

#[test]
fn pcre_keyword() {
    let mut e = Eng::new(
        "alert http any any -> any any (flow:to_server; content:\"/x.php\"; http_uri; pcre:\"/\\/x\\.php\\?id=\\d+$/U\"; sid:1;)\n\
         alert tcp any any -> any any (content:\"user=\"; pcre:\"/^[a-z]{3,8}&/R\"; sid:2;)\n\
         alert tcp any any -> any any (content:\"HELO\"; pcre:!\"/HELO\\s+localhost/i\"; sid:3;)\n\
         alert http any any -> any any (content:\"Host\"; http_header; pcre:\"/^Host: [^\\r\\n]+\\.ru\\r?$/Hmi\"; sid:4;)",
    );
    let req = Ev {
        app: AppProto::Http,
        bufs: vec![
            (Buffer::HttpUri, b"/x.php?id=42"),
            (Buffer::HttpHeader, b"Accept: */*\r\nHost: evil.RU\r\n"),
        ],
        payload: b"GET /x.php?id=42 HTTP/1.1\r\n",
        ..Default::default()
    };
    assert_eq!(e.sids(&req), vec![1, 4]);
    let mut req2 = req.clone();
    req2.bufs[0] = (Buffer::HttpUri, b"/x.php?id=42&y");
    assert_eq!(e.sids(&req2), vec![4]);
    let s = |p: &'static [u8]| Ev { payload: p, ..Default::default() };
    assert_eq!(e.sids(&s(b"user=1 user=admin&")), vec![2], "relative pcre tries the next content match");
    assert_eq!(e.sids(&s(b"user=admin1&")), Vec::<u32>::new());
    assert_eq!(e.sids(&s(b"HELO mail.example")), vec![3]);
    assert_eq!(e.sids(&s(b"helo  LOCALHOST")), Vec::<u32>::new());
}

#[test]
fn flow_keyword_and_stream() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (flow:to_server,established; content:\"a\"; sid:1;)\n\
         alert tcp any any -> any any (flow:from_server; content:\"a\"; sid:2;)\n\
         alert tcp any any -> any any (flow:not_established; sid:3;)\n\
         alert tcp any any -> any any (flow:established,only_stream; content:\"ab\"; sid:4;)\n\
         alert tcp any any -> any any (flow:established,no_stream; content:\"ab\"; sid:5;)\n\
         alert tcp any any -> any any (flow:stateless; dsize:>1000; sid:6;)",
    );
    let p = Ev { payload: b"xab", ..Default::default() };
    assert_eq!(e.sids(&p), vec![1, 4, 5]);
    let r = Ev { payload: b"a", ..p.reply() };
    assert_eq!(e.sids(&r), vec![2]);
    let syn = Ev { payload: b"", flags: 2, established: false, ..p.clone() };
    assert_eq!(e.sids(&syn), vec![3]);
    // split over two packets: only_stream sees the stream, no_stream does not
    let part = Ev { payload: b"b", stream: Some(b"ab"), ..p.clone() };
    assert_eq!(e.sids(&part), vec![1, 4]);
    let big = vec![b'z'; 1200];
    assert_eq!(e.sids(&Ev { payload: &big, stream: Some(&big), ..p.clone() }), vec![6]);
}

#[test]
fn flowbits() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (msg:\"check\"; content:\"stage2\"; flowbits:isset,stage1; sid:2;)\n\
         alert tcp any any -> any any (msg:\"set\"; content:\"stage1\"; flowbits:set,stage1; flowbits:noalert; sid:1;)\n\
         alert tcp any any -> any any (content:\"either\"; flowbits:isset,a|stage1; sid:3;)\n\
         alert tcp any any -> any any (content:\"both\"; flowbits:isset,a&stage1; sid:4;)\n\
         alert tcp any any -> any any (content:\"none\"; flowbits:isnotset,stage1; sid:5;)\n\
         alert tcp any any -> any any (content:\"reset\"; flowbits:unset,stage1; sid:6;)\n\
         alert tcp any any -> any any (content:\"flip\"; flowbits:toggle,a; noalert; sid:7;)",
    );
    let p = |x: &'static [u8]| Ev { payload: x, ..Default::default() };
    assert_eq!(e.sids(&p(b"stage2 none")), vec![5]);
    // the setter runs before the checker in one packet (rule order)
    let m = e.matches(&p(b"stage1 stage2"));
    assert_eq!(m.iter().map(|m| (m.sid, m.noalert)).collect::<Vec<_>>(), vec![(1, true), (2, false)]);
    assert_eq!(e.sids(&p(b"either both none")), vec![3]);
    assert_eq!(e.sids(&p(b"flip")), Vec::<u32>::new());
    assert_eq!(e.sids(&p(b"both")), vec![4]);
    assert_eq!(e.sids(&p(b"reset flip")), vec![6]);
    assert_eq!(e.sids(&p(b"stage2 both either none")), vec![5]);
    // another flow has its own bits
    assert_eq!(e.sids(&Ev { flow_id: 9, ..p(b"stage1 stage2") }), vec![2]);
    assert_eq!(e.flows.get(&9).map(FlowRuleState::flowbits_set), Some(1));
}

#[test]
fn payload_size_and_byte_keywords() {
    let mut e = Eng::new(
        "alert udp any any -> any any (dsize:4; sid:1;)\n\
         alert udp any any -> any any (dsize:10<>20; sid:2;)\n\
         alert udp any any -> any any (content:\"|00 01|\"; depth:2; isdataat:4,relative; isdataat:!6,relative; sid:3;)\n\
         alert udp any any -> any any (content:\"LEN\"; byte_test:2,>,0x100,0,relative; sid:4;)\n\
         alert udp any any -> any any (content:\"LEN\"; byte_jump:2,0,relative; content:\"END\"; within:3; sid:5;)\n\
         alert udp any any -> any any (content:\"SZ\"; byte_extract:1,0,sz,relative; content:\"Z\"; distance:sz; within:1; sid:6;)\n\
         alert udp any any -> any any (content:\"N=\"; byte_test:3,=,123,0,relative,string,dec; sid:7;)",
    );
    let u = |x: &'static [u8]| Ev { proto: 17, payload: x, ..Default::default() };
    assert_eq!(e.sids(&u(b"abcd")), vec![1]);
    assert_eq!(e.sids(&u(b"\x00\x01abcd")), vec![3]);
    assert_eq!(e.sids(&u(b"\x00\x01abcde")), vec![3]);
    assert_eq!(e.sids(&u(b"\x00\x01abcdef")), Vec::<u32>::new());
    assert_eq!(e.sids(&u(b"LEN\x01\x01")), vec![4]);
    assert_eq!(e.sids(&u(b"LEN\x00\x03abcEND..")), vec![2, 5]);
    assert_eq!(e.sids(&u(b"SZ\x02abZ")), vec![6]);
    assert_eq!(e.sids(&u(b"SZ\x02aZb")), Vec::<u32>::new());
    assert_eq!(e.sids(&u(b"N=123;")), vec![7]);
}

/// byte_test as Suricata's detect-bytetest.c: `!` negates (alone it is
/// "not equal"), `&` is "any bit of the value set", `^` is "differs",
/// bitmask then a right shift by the mask's trailing zeros, a relative test
/// needs data after the cursor, an absolute one data at the offset.
#[test]
fn byte_test_operators_as_suricata() {
    let mut e = Eng::new(
        "alert udp any any -> any any (byte_test:1,!,5,0; sid:1;)\n\
         alert udp any any -> any any (byte_test:1,!=,5,0; sid:2;)\n\
         alert udp any any -> any any (byte_test:1,&,0x81,0; sid:3;)\n\
         alert udp any any -> any any (byte_test:1,!&,0x81,0; sid:4;)\n\
         alert udp any any -> any any (byte_test:1,^,0x0f,0; sid:5;)\n\
         alert udp any any -> any any (byte_test:2,=,3,0,bitmask 0x0f00; sid:6;)\n\
         alert udp any any -> any any (byte_test:2,<=,2,0,little,bitmask 0x00f0; sid:7;)\n\
         alert udp any any -> any any (content:\"|0f|\"; byte_test:1,>=,0,0,relative; sid:8;)",
    );
    let u = |x: &'static [u8]| Ev { proto: 17, payload: x, ..Default::default() };
    // 0x05: equal to 5, bit 0 of 0x81 set, differs from 0x0f
    assert_eq!(e.sids(&u(b"\x05")), vec![3, 5]);
    // 0x04: no bit of 0x81; (0x0403 & 0x0f00) >> 8 = 4; little endian 0x0304 & 0xf0 = 0
    assert_eq!(e.sids(&u(b"\x04\x03")), vec![1, 2, 4, 5, 7]);
    // 0x0f: bit 0 of 0x81 set, xor 0x0f is 0; (0x0f & 0x0f00) >> 8 = 0x0f; relative at the end: nothing left
    assert_eq!(e.sids(&u(b"\x0f")), vec![1, 2, 3]);
    // 0x83 0x21: 0x83&0x81 set; (0x8321 & 0x0f00) >> 8 = 3; little endian 0x2183 & 0xf0 >> 4 = 8
    assert_eq!(e.sids(&u(b"\x83\x21")), vec![1, 2, 3, 5, 6]);
    // (0x2301 & 0x0f00) >> 8 = 3; little endian (0x0123 & 0xf0) >> 4 = 2; a byte after the relative match
    assert_eq!(e.sids(&u(b"\x23\x01\x0f\x00")), vec![1, 2, 3, 5, 6, 7, 8]);
    // no data: nothing matches, not even the negations
    assert_eq!(e.sids(&u(b"")), Vec::<u32>::new());
}

/// ET 2009702 (byte_test only, on the DNS header flags): a DNS UPDATE
/// (opcode 5) query from outside the home network fires; a standard query,
/// a response, an update from inside and a short packet do not. A
/// byte_test-only rule is a packet rule: it fires on every such packet.
#[test]
fn et_dns_update_from_external_byte_test() {
    let mut e = Eng::new(
        "alert udp $EXTERNAL_NET any -> $HOME_NET 53 (msg:\"ET POLICY DNS Update From External net\"; byte_test:1,!&,128,2; byte_test:1,!&,64,2; byte_test:1,&,32,2; byte_test:1,!&,16,2; byte_test:1,&,8,2; reference:url,doc.emergingthreats.net/2009702; classtype:policy-violation; sid:2009702; rev:5;)",
    );
    let dns = |src: &'static str, x: &'static [u8]| Ev {
        proto: 17,
        src,
        dst: "10.0.0.53",
        sport: 40000,
        dport: 53,
        payload: x,
        app: AppProto::Dns,
        ..Default::default()
    };
    let update = b"\x12\x34\x28\x00\x00\x01\x00\x00\x00\x01\x00\x00";
    assert_eq!(e.sids(&dns("203.0.113.5", update)), vec![2009702]);
    assert_eq!(e.sids(&dns("203.0.113.5", update)), vec![2009702]);
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00";
    assert_eq!(e.sids(&dns("203.0.113.5", query)), Vec::<u32>::new());
    let response = b"\x12\x34\xa8\x00\x00\x01\x00\x00\x00\x00\x00\x00";
    assert_eq!(e.sids(&dns("203.0.113.5", response)), Vec::<u32>::new());
    // opcode 4 (NOTIFY, 0x20) and opcode 1 (IQUERY, 0x08) alone do not
    assert_eq!(e.sids(&dns("203.0.113.5", b"\x12\x34\x20\x00")), Vec::<u32>::new());
    assert_eq!(e.sids(&dns("203.0.113.5", b"\x12\x34\x08\x00")), Vec::<u32>::new());
    assert_eq!(e.sids(&dns("10.0.0.7", update)), Vec::<u32>::new());
    assert_eq!(e.sids(&dns("203.0.113.5", b"\x12\x34")), Vec::<u32>::new());
    // the same bytes on TCP (a length prefix moves the flags) are not a udp rule's
    assert_eq!(e.sids(&Ev { proto: 6, ..dns("203.0.113.5", update) }), Vec::<u32>::new());
}

/// Issue 10: stream data is inspected once. A match is reported by the
/// packet that brought its last byte, not again by later packets, by a
/// retransmission (no new stream data) or by the overlap kept for patterns
/// crossing packet boundaries; packet-only rules still look at every packet.
#[test]
fn a_stream_match_is_reported_once() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (content:\"MAGIC-BEACON\"; sid:1;)\n\
         alert tcp any any -> any any (content:\"SPLIT-PATTERN\"; sid:2;)\n\
         alert tcp any any -> any any (content:\"|00 00 00 23 ff|SMB\"; depth:9; sid:3;)\n\
         alert tcp any any -> any any (byte_test:1,=,0x41,0; sid:4;)\n\
         alert tcp any any -> any any (dsize:11; sid:5;)\n\
         alert tcp-stream any any -> any any (content:\"STREAMONLY\"; sid:6;)",
    );
    assert_eq!(e.set.stream_overlap(), 12);
    let seg = |x: &'static [u8]| Ev { payload: x, stream: Some(x), flow_id: 7, ..Default::default() };
    assert_eq!(e.sids(&seg(b"xx MAGIC-BEACON yy")), vec![1]);
    for _ in 0..50 {
        assert_eq!(e.sids(&seg(b"nothing here")), Vec::<u32>::new());
    }
    // a retransmission: the payload again, no new stream data
    let again = Ev { stream: Some(b""), ..seg(b"xx MAGIC-BEACON yy") };
    assert_eq!(e.sids(&again), Vec::<u32>::new());
    // split over two segments: found once, with the second
    assert_eq!(e.sids(&seg(b"tails SPLIT-")), Vec::<u32>::new());
    assert_eq!(e.sids(&seg(b"PATTERN")), vec![2]);
    assert_eq!(e.sids(&seg(b"more")), Vec::<u32>::new());
    // anchored at the start of new data (where the raw progress is)
    assert_eq!(e.sids(&seg(b"\x00\x00\x00\x23\xffSMB!")), vec![3]);
    // packet-only rules: per packet, retransmissions included
    assert_eq!(e.sids(&seg(b"A packet 11")), vec![4, 5]);
    assert_eq!(e.sids(&Ev { stream: Some(b""), ..seg(b"A packet 11") }), vec![4, 5]);
    // a stream-only rule: once from the stream, not from the retransmitted packet
    assert_eq!(e.sids(&seg(b"STREAMONLY")), vec![6]);
    assert_eq!(e.sids(&Ev { stream: Some(b""), ..seg(b"STREAMONLY") }), Vec::<u32>::new());
    // another flow and the other direction keep their own progress
    assert_eq!(e.sids(&Ev { flow_id: 8, ..seg(b"MAGIC-BEACON") }), vec![1]);
    assert_eq!(e.sids(&Ev { to_server: false, ..seg(b"SPLIT-") }), Vec::<u32>::new());
    assert_eq!(e.sids(&seg(b"PATTERN")), Vec::<u32>::new());
}

#[test]
fn packet_keywords() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (flags:S; sid:1;)\n\
         alert tcp any any -> any any (flags:SA; sid:2;)\n\
         alert tcp any any -> any any (flags:+S; sid:3;)\n\
         alert tcp any any -> any any (flags:*FR; sid:4;)\n\
         alert tcp any any -> any any (flags:!A; sid:5;)\n\
         alert tcp any any -> any any (flags:S,12; sid:6;)\n\
         alert tcp any any -> any any (flags:0; sid:7;)\n\
         alert icmp any any -> any any (itype:>10; icode:3; sid:8;)\n\
         alert ip any any -> any any (ttl:<5; ip_proto:17; sid:9;)\n\
         alert ip any any -> any any (sameip; sid:10;)\n\
         alert ip any any -> any any (app-layer-protocol:dns; sid:11;)",
    );
    let t = |f: u8| Ev { flags: f, ..Default::default() };
    assert_eq!(e.sids(&t(0x02)), vec![1, 3, 5, 6]);
    assert_eq!(e.sids(&t(0x12)), vec![2, 3]);
    assert_eq!(e.sids(&t(0xc2)), vec![3, 5, 6]);
    assert_eq!(e.sids(&t(0x14)), vec![4]);
    assert_eq!(e.sids(&t(0)), vec![5, 7]);
    let icmp = Ev { proto: 1, icmp: Some((11, 3)), ..Default::default() };
    assert_eq!(e.sids(&icmp), vec![8]);
    assert_eq!(e.sids(&Ev { icmp: Some((11, 0)), ..icmp.clone() }), Vec::<u32>::new());
    assert_eq!(e.sids(&Ev { proto: 17, ttl: 2, ..Default::default() }), vec![9]);
    assert_eq!(e.sids(&Ev { proto: 17, src: "1.2.3.4", flow_id: 5, ..Default::default() }), vec![10]);
    assert_eq!(e.sids(&Ev { proto: 17, app: AppProto::Dns, flow_id: 6, ..Default::default() }), vec![11]);
}

#[test]
fn sticky_buffers_and_legacy_modifiers() {
    let mut e = Eng::new(
        "alert http any any -> any any (flow:to_server; content:\"POST\"; http_method; content:\"/up\"; http_uri; content:\"evil\"; http_client_body; sid:1;)\n\
         alert http any any -> any any (flow:to_server; http.method; content:\"POST\"; http.uri; content:\"/up\"; http.request_body; content:\"evil\"; sid:2;)\n\
         alert http any any -> any any (http_header_names; content:\"|0d 0a|X-Bad|0d 0a|\"; sid:3;)\n\
         alert http any any -> any any (flow:to_client; content:\"200\"; http_stat_code; file_data; content:\"MZ\"; within:2; sid:4;)\n\
         alert http any any -> any any (http.user_agent; content:\"curl\"; startswith; pkt_data; content:\"POST\"; depth:4; sid:5;)\n\
         alert http any any -> any any (http.cookie; content:\"sess=\"; sid:6;)\n\
         alert http any any -> any any (content:\"x\"; http_raw_uri; content:\"a.b\"; http_host; sid:7;)\n\
         alert ssh any any -> any any (ssh.software; content:\"libssh\"; sid:8;)\n\
         alert tls any any -> any any (tls.cert_subject; content:\"CN=evil\"; tls_cert_issuer; content:\"Let's\"; sid:9;)",
    );
    let req = Ev {
        app: AppProto::Http,
        payload: b"POST /up HTTP/1.1\r\n",
        bufs: vec![
            (Buffer::HttpMethod, b"POST"),
            (Buffer::HttpUri, b"/up"),
            (Buffer::HttpRawUri, b"/x%20"),
            (Buffer::HttpHost, b"a.b"),
            (Buffer::HttpUserAgent, b"curl/8.0"),
            (Buffer::HttpHeaderNames, b"\r\nHost\r\nX-Bad\r\n\r\n"),
            (Buffer::HttpCookie, b"sess=1"),
            (Buffer::HttpRequestBody, b"some evil data"),
        ],
        ..Default::default()
    };
    assert_eq!(e.sids(&req), vec![1, 2, 3, 5, 6, 7]);
    let mut resp = Ev { payload: b"HTTP/1.1 200 OK\r\n", ..req.reply() };
    resp.bufs = vec![(Buffer::HttpStatCode, b"200"), (Buffer::HttpResponseBody, b"MZ\x90\x00")];
    assert_eq!(e.sids(&resp), vec![4]);
    // the request body is not the response's file data
    resp.bufs = vec![(Buffer::HttpStatCode, b"200"), (Buffer::HttpRequestBody, b"MZ\x90\x00")];
    assert_eq!(e.sids(&resp), Vec::<u32>::new());
    let ssh =
        Ev { app: AppProto::Ssh, bufs: vec![(Buffer::SshSoftware, b"libssh_0.9")], ..Default::default() };
    assert_eq!(e.sids(&ssh), vec![8]);
    let mut tls = Ev { app: AppProto::Tls, ..Default::default() }.reply();
    tls.bufs =
        vec![(Buffer::TlsCertSubject, b"CN=evil.example"), (Buffer::TlsCertIssuer, b"O=Let's Encrypt")];
    assert_eq!(e.sids(&tls), vec![9]);
}

#[test]
fn transforms_bsize_urilen() {
    let mut e = Eng::new(
        "alert dns any any -> any any (dns.query; to_lowercase; content:\"evil.com\"; endswith; bsize:<30; sid:1;)\n\
         alert http any any -> any any (urilen:>10; sid:2;)\n\
         alert http any any -> any any (http.uri; url_decode; content:\"/a b\"; sid:3;)\n\
         alert http any any -> any any (http.uri; strip_whitespace; content:\"/ab\"; bsize:3; sid:4;)\n\
         alert http any any -> any any (http.host; dotprefix; content:\".example.org\"; endswith; sid:5;)",
    );
    let dns = Ev {
        proto: 17,
        app: AppProto::Dns,
        bufs: vec![(Buffer::DnsQuery, b"WWW.EVIL.COM")],
        ..Default::default()
    };
    assert_eq!(e.sids(&dns), vec![1]);
    let http =
        |u: &'static [u8]| Ev { app: AppProto::Http, bufs: vec![(Buffer::HttpUri, u)], ..Default::default() };
    assert_eq!(e.sids(&http(b"/a%20b/c/d/e")), vec![2, 3]);
    assert_eq!(e.sids(&http(b"/a b")), vec![3, 4]);
    let host =
        Ev { app: AppProto::Http, bufs: vec![(Buffer::HttpHost, b"example.org")], ..Default::default() };
    assert_eq!(e.sids(&host), vec![5]);
    let host2 =
        Ev { app: AppProto::Http, bufs: vec![(Buffer::HttpHost, b"badexample.org")], ..Default::default() };
    assert_eq!(e.sids(&host2), Vec::<u32>::new());
}

#[test]
fn thresholds_in_rules() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (content:\"x\"; threshold: type limit, track by_src, seconds 60, count 1; sid:1;)\n\
         alert tcp any any -> any any (content:\"x\"; threshold: type threshold, track by_dst, count 2, seconds 60; sid:2;)\n\
         alert tcp any any -> any any (content:\"x\"; threshold: type both, track by_rule, count 3, seconds 60; sid:3;)\n\
         alert tcp any any -> any any (content:\"x\"; flowbits:set,seen; threshold: type limit, track by_both, count 1, seconds 60; sid:4;)\n\
         alert tcp any any -> any any (content:\"y\"; flowbits:isset,seen; sid:5;)",
    );
    let mut all = Vec::new();
    for i in 0..6 {
        let src = if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" };
        all.push(e.sids(&Ev {
            ts_us: i * 1_000_000,
            src,
            payload: b"x",
            flow_id: i as u64,
            ..Default::default()
        }));
    }
    assert_eq!(count(&all, 1), 2);
    assert_eq!(count(&all, 2), 3);
    assert_eq!(count(&all, 3), 1);
    assert_eq!(count(&all, 4), 2);
    // flowbits are set even when the alert is thresholded
    assert_eq!(e.sids(&Ev { ts_us: 7_000_000, payload: b"y", flow_id: 5, ..Default::default() }), vec![5]);
    // a new window after 60 s
    let later = e.sids(&Ev { ts_us: 100_000_000, payload: b"x", flow_id: 50, ..Default::default() });
    assert!(later.contains(&1) && later.contains(&4));
}

/// Two capture workers: a `track by_src` threshold and a runtime dataset
/// span the flows of both (each worker's state made with `sharing`).
#[test]
fn workers_share_thresholds_and_datasets() {
    let rules = "alert tcp any any -> any any (content:\"x\"; threshold: type limit, track by_src, seconds 60, count 1; sid:1;)\n\
                 alert dns any any -> any 53 (dns.query; dataset:set,seen-names,type string; sid:2;)\n\
                 alert dns any any -> any 5353 (dns.query; dataset:isset,seen-names,type string; sid:3;)";
    let mut a = Eng::new(rules);
    let mut b = Eng::new(rules);
    b.global = a.global.sharing();
    let x = |flow_id| Ev { src: "10.0.0.1", payload: b"x", flow_id, ..Default::default() };
    assert_eq!(a.sids(&x(1)), vec![1]);
    // another flow of the same source, on the other worker: limited
    assert_eq!(b.sids(&x(2)), Vec::<u32>::new());
    let dns = |flow_id, dport| Ev {
        proto: 17,
        dport,
        app: AppProto::Dns,
        bufs: vec![(Buffer::DnsQuery, b"c2.example")],
        flow_id,
        ..Default::default()
    };
    // not in the set yet; set by a flow on one worker, seen by a flow on
    // the other
    assert_eq!(b.sids(&dns(3, 5353)), Vec::<u32>::new());
    assert_eq!(a.sids(&dns(4, 53)), vec![2]);
    assert_eq!(b.sids(&dns(5, 5353)), vec![3]);
    // an engine of its own shares nothing
    let mut c = Eng::new(rules);
    assert_eq!(c.sids(&x(6)), vec![1]);
    assert_eq!(c.sids(&dns(7, 5353)), Vec::<u32>::new());
}

#[test]
fn datasets_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; // sha256("")
    std::fs::write(dir.path().join("ua.lst"), "# comment\nY3VybC83LjU4LjA=\n").unwrap();
    std::fs::write(dir.path().join("h.lst"), format!("{sha}\n")).unwrap();
    std::fs::write(dir.path().join("ips.lst"), "1.2.3.4\n2001:db8::1\n").unwrap();
    std::fs::write(
        dir.path().join("ips.json"),
        r#"{"data": {"bad": [{"ip": "9.9.9.9"}, {"ip": "8.8.8.8"}]}}"#,
    )
    .unwrap();
    let rules = "alert http any any -> any any (http.user_agent; dataset:isset,ua,type string,load ua.lst; sid:1;)\n\
                 alert http any any -> any any (http.user_agent; dataset:isnotset,ua; sid:2;)\n\
                 alert http any any -> any any (http.uri; to_sha256; dataset:isset,hashes,type sha256,load h.lst; sid:3;)\n\
                 alert ip any any -> any any (ip.dst; dataset:isset,bad-ip,type ip,load ips.lst; sid:4;)\n\
                 alert ip any any -> any any (ip.src; dataset:isset,bad-json,type ipv4,load ips.json,format json,array_key data.bad,value_key ip; sid:5;)\n\
                 alert http any any -> any any (http.host; dataset:set,hosts-seen,type string; sid:6;)";
    let (set, rep) = RuleSet::from_str_in(rules, &Vars::default(), dir.path());
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert_eq!(set.stats().datasets, 5);
    let mut e = Eng::with(set);
    let h = |ua: &'static [u8], uri: &'static [u8]| Ev {
        app: AppProto::Http,
        dst: "5.5.5.5",
        bufs: vec![(Buffer::HttpUserAgent, ua), (Buffer::HttpUri, uri), (Buffer::HttpHost, b"a.example")],
        ..Default::default()
    };
    assert_eq!(e.sids(&h(b"curl/7.58.0", b"/x")), vec![1, 6]);
    assert_eq!(e.sids(&h(b"wget", b"")), vec![2, 3], "`set` matches only a new value");
    let ip = Ev { proto: 17, dst: "2001:db8::1", src: "2001:db8::2", flow_id: 3, ..Default::default() };
    assert_eq!(e.sids(&ip), vec![4]);
    let ip2 = Ev { proto: 17, src: "8.8.8.8", dst: "1.2.3.4", flow_id: 4, ..Default::default() };
    assert_eq!(e.sids(&ip2), vec![4, 5]);
}

#[test]
fn actions_pass_and_metadata() {
    let mut e = Eng::new(
        "pass tcp 10.0.0.9 any -> any any (content:\"x\"; sid:1;)\n\
         drop tcp any any -> any any (msg:\"dropped \\\"quoted\\\"\"; content:\"x\"; classtype:trojan-activity; priority:9; metadata: former_category MALWARE, created_at 2010_07_30; sid:2; rev:3; gid:7;)\n\
         reject tcp any any -> any any (content:\"x\"; priority:2; sid:3;)",
    );
    let m = e.matches(&Ev { payload: b"x", ..Default::default() });
    assert_eq!(m.len(), 2);
    let d = m.iter().find(|m| m.sid == 2).unwrap();
    assert_eq!(d.action, Action::Drop);
    assert_eq!(d.msg, "dropped \"quoted\"");
    assert_eq!((d.gid, d.rev, d.severity), (7, 3, 4), "priority 9 clamps to 4");
    assert_eq!(
        d.metadata,
        vec![("former_category".into(), "MALWARE".into()), ("created_at".into(), "2010_07_30".into())]
    );
    let r = m.iter().find(|m| m.sid == 3).unwrap();
    assert_eq!((r.action, r.severity, r.category.as_str()), (Action::Reject, 2, ""));
    assert!(e.sids(&Ev { src: "10.0.0.9", payload: b"x", flow_id: 2, ..Default::default() }).is_empty());
}

#[test]
fn ip_only_rules_once_per_direction() {
    let mut e = Eng::new(
        "alert ip [1.2.3.4,5.6.7.0/24] any -> $HOME_NET any (msg:\"listed\"; sid:1;)\n\
         alert ip $HOME_NET any -> [1.2.3.4,5.6.7.0/24] any (msg:\"to listed\"; sid:2;)\n\
         alert tcp $HOME_NET any -> 5.6.7.8 22 (flags:S; sid:3;)",
    );
    let out = Ev { dst: "5.6.7.9", payload: b"a", ..Default::default() };
    assert_eq!(e.sids(&out), vec![2]);
    assert_eq!(e.sids(&out), Vec::<u32>::new(), "once per flow direction");
    let back = Ev { payload: b"b", ..out.reply() };
    assert_eq!(e.sids(&back), vec![1]);
    assert_eq!(e.sids(&back), Vec::<u32>::new());
    let syn =
        Ev { dst: "5.6.7.8", dport: 22, flags: 2, flow_id: 2, established: false, ..Default::default() };
    assert_eq!(e.sids(&syn), vec![2, 3]);
    assert_eq!(e.sids(&syn), vec![3]);
    let st = e.set.stats();
    assert_eq!((st.header_only, st.ip_only), (3, 2));
}

#[test]
fn tx_only_calls_run_only_transaction_rules() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (content:\"GET\"; sid:1;)\n\
         alert http any any -> any any (http.uri; content:\"/a\"; sid:2;)\n\
         alert tcp any any -> any any (flags:PA; sid:3;)",
    );
    let first = Ev {
        app: AppProto::Http,
        payload: b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        bufs: vec![(Buffer::HttpUri, b"/a")],
        ..Default::default()
    };
    assert_eq!(e.sids(&first), vec![1, 2, 3]);
    let second = Ev { bufs: vec![(Buffer::HttpUri, b"/a/2")], tx_only: true, ..first.clone() };
    assert_eq!(e.sids(&second), vec![2]);
}

#[test]
fn app_layer_protocol_gating() {
    let mut e = Eng::new(
        "alert http any any -> any any (content:\"evil\"; sid:1;)\n\
         alert dns any any -> any any (content:\"evil\"; sid:2;)\n\
         alert tcp any any -> any any (content:\"evil\"; sid:3;)",
    );
    let p = Ev { payload: b"evil", ..Default::default() };
    assert_eq!(e.sids(&p), vec![3]);
    assert_eq!(e.sids(&Ev { app: AppProto::Http, ..p.clone() }), vec![1, 3]);
    assert_eq!(e.sids(&Ev { app: AppProto::Http2, ..p.clone() }), vec![1, 3]);
    assert_eq!(e.sids(&Ev { app: AppProto::Dns, proto: 17, ..p.clone() }), vec![2]);
}

#[test]
fn state_survives_a_rule_reload() {
    let a = "alert tcp any any -> any any (content:\"login\"; flowbits:set,logged_in; noalert; sid:1;)\n\
             alert tcp any any -> any any (content:\"x\"; threshold:type limit, track by_src, count 1, seconds 60; sid:3;)";
    let b = "alert tcp any any -> any any (content:\"other\"; flowbits:set,other; sid:9;)\n\
             alert tcp any any -> any any (content:\"get\"; flowbits:isset,logged_in; sid:2;)\n\
             alert tcp any any -> any any (content:\"x\"; threshold:type limit, track by_src, count 1, seconds 60; sid:3;)";
    let mut e = Eng::new(a);
    assert_eq!(e.sids(&Ev { payload: b"login x", ..Default::default() }), vec![3]);
    let (set, _) = RuleSet::from_str(b, &Vars::default());
    e.set = set;
    assert_eq!(
        e.sids(&Ev { payload: b"get x", ..Default::default() }),
        vec![2],
        "flowbit and threshold kept"
    );
}

/// Rules copied from the ET Open set (BSD licence, see the corpus), on
/// the inputs they are written for.
#[test]
fn et_open_samples() {
    let rules = r#"
alert dns $HOME_NET any -> any 53 (msg:"ET TROJAN OSX/Proton.C/D Domain (handbrakestore .com in DNS Lookup)"; dns_query; content:"handbrakestore.com"; isdataat:!1,relative; metadata: former_category TROJAN; reference:url,www.welivesecurity.com/2017/10/20/osx-proton-supply-chain-attack-elmedia; classtype:trojan-activity; sid:2024890; rev:3; metadata:affected_product Mac_OSX, attack_target Client_Endpoint, deployment Perimeter, signature_severity Major, created_at 2017_10_20, malware_family Proton, performance_impact Moderate, updated_at 2017_10_24;)
alert tls $HOME_NET any -> $EXTERNAL_NET any (msg:"ET TROJAN Observed Evrial Domain (cryptoclipper .ru in TLS SNI)"; flow:established,to_server; tls_sni; content:"cryptoclipper.ru"; isdataat:!1,relative; metadata: former_category TROJAN; reference:md5,5a71cc1c1ea541eb47638218a25c4123; classtype:trojan-activity; sid:2025201; rev:1; metadata:affected_product Windows_XP_Vista_7_8_10_Server_32_64_Bit, attack_target Client_Endpoint, deployment Perimeter, signature_severity Major, created_at 2018_01_16, malware_family Evrial, performance_impact Moderate, updated_at 2018_01_16;)
alert http $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:"ET USER_AGENTS Vaccineprogram.co.kr Related Spyware User Agent (pcsafe)"; flow:established,to_server; content:"User-Agent|3a| pcsafe"; reference:url,doc.emergingthreats.net/2006420; classtype:trojan-activity; sid:2006420; rev:7; metadata:created_at 2010_07_30, updated_at 2010_07_30;)
alert tcp $HOME_NET any -> $EXTERNAL_NET 443 (msg:"ET TROJAN Possible Variant.Kazy.53640 Malformed Client Hello SSL 3.0 (Cipher_Suite length greater than Client_Hello Length)"; flow:to_server,established; content:"|16 03 00|"; depth:3; content:"|01|"; distance:2; within:1; byte_extract:3,0,SSL.Client_Hello.length,relative; byte_jump:1,34,relative; byte_test:2,>,SSL.Client_Hello.length,0,relative; reference:md5,a01d75158cf4618677f494f9626b1c4c; classtype:trojan-activity; sid:2014635; rev:1; metadata:created_at 2012_04_24, updated_at 2012_04_24;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET TROJAN Trojan Generic - POST To gate.php with no referer"; flow:established,to_server; content:"POST"; http_method; content:"/gate.php"; http_uri; http_header_names; content:!"Referer"; classtype:trojan-activity; sid:2017930; rev:10; metadata:created_at 2014_01_03, updated_at 2014_01_03;)
alert http $EXTERNAL_NET any -> $HOME_NET any (msg:"ET CURRENT_EVENTS DRIVEBY Generic - 8Char.JAR Naming Algorithm"; flow:established,to_client; content:"-Disposition|3a| inline"; http_header; nocase; content:".jar"; http_header; fast_pattern:only; pcre:"/[="]\w{8}\.jar/Hi"; file_data; content:"PK"; within:2; classtype:attempted-user; sid:2015695; rev:4; metadata:affected_product Any, attack_target Client_Endpoint, deployment Perimeter, tag DriveBy, signature_severity Major, created_at 2012_09_11, updated_at 2016_07_01;)
"#;
    let mut e = Eng::new(rules);
    let home = "192.168.1.10";
    let dns = |q: &'static [u8]| Ev {
        src: home,
        dst: "8.8.8.8",
        proto: 17,
        dport: 53,
        established: false,
        app: AppProto::Dns,
        payload: b"\x00\x01\x01\x00",
        bufs: vec![(Buffer::DnsQuery, q)],
        ..Default::default()
    };
    assert_eq!(e.sids(&dns(b"handbrakestore.com")), vec![2024890]);
    assert_eq!(e.sids(&dns(b"handbrakestore.com.example")), Vec::<u32>::new());
    let tls = |sni: &'static [u8]| Ev {
        src: home,
        dst: "203.0.113.9",
        dport: 443,
        app: AppProto::Tls,
        payload: b"\x16\x03\x01",
        bufs: vec![(Buffer::TlsSni, sni)],
        ..Default::default()
    };
    assert_eq!(e.sids(&tls(b"cryptoclipper.ru")), vec![2025201]);
    assert_eq!(e.sids(&tls(b"cryptoclipper.ru.example")), Vec::<u32>::new());
    let ua = Ev {
        src: home,
        dst: "203.0.113.9",
        app: AppProto::Http,
        payload: b"GET / HTTP/1.1\r\nUser-Agent: pcsafe\r\n\r\n",
        ..Default::default()
    };
    assert_eq!(e.sids(&ua), vec![2006420]);
    assert_eq!(e.sids(&Ev { dport: 8080, ..ua.clone() }), Vec::<u32>::new(), "$HTTP_PORTS is 80");
    // SSL 3.0 ClientHello whose cipher-suite length exceeds the hello length
    let mut hello = vec![0x16, 0x03, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 0x30];
    hello.extend_from_slice(&[0u8; 34]); // version + random
    hello.push(0); // session id length
    hello.extend_from_slice(&[0x01, 0x00]); // cipher suites length 256 > 48
    hello.extend_from_slice(&[0u8; 8]);
    let kazy = Ev { src: home, dst: "203.0.113.9", dport: 443, payload: &hello, ..Default::default() };
    assert_eq!(e.sids(&kazy), vec![2014635]);
    let mut ok = hello.clone();
    ok[44] = 0x00;
    ok[45] = 0x10;
    assert_eq!(e.sids(&Ev { payload: &ok, ..kazy.clone() }), Vec::<u32>::new());
    let gate = |names: &'static [u8]| Ev {
        src: home,
        dst: "203.0.113.9",
        app: AppProto::Http,
        payload: b"POST /gate.php HTTP/1.1\r\n",
        bufs: vec![
            (Buffer::HttpMethod, b"POST"),
            (Buffer::HttpUri, b"/gate.php"),
            (Buffer::HttpHeaderNames, names),
        ],
        ..Default::default()
    };
    assert_eq!(e.sids(&gate(b"\r\nHost\r\nContent-Length\r\n\r\n")), vec![2017930]);
    assert_eq!(e.sids(&gate(b"\r\nHost\r\nReferer\r\n\r\n")), Vec::<u32>::new());
    let jar = |body: &'static [u8]| {
        Ev {
        src: "203.0.113.9",
        sport: 80,
        dst: home,
        dport: 1234,
        to_server: false,
        app: AppProto::Http,
        payload: b"HTTP/1.1 200 OK\r\n",
        bufs: vec![
            (Buffer::HttpStatCode, b"200"),
            (Buffer::HttpHeader, b"Content-Type: application/java-archive\r\nContent-Disposition: inline; filename=abcdefgh.jar\r\n"),
            (Buffer::HttpResponseBody, body),
        ],
        ..Default::default()
    }
    };
    assert_eq!(e.sids(&jar(b"PK\x03\x04....")), vec![2015695]);
    assert_eq!(e.sids(&jar(b"MZ\x90\x00")), Vec::<u32>::new());
}

/// A pathological backtracking pcre, retried by a following relative
/// content, costs bounded work per packet and is counted as a limit hit.
#[test]
fn backtracking_work_per_packet_is_bounded() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (msg:\"redos\"; content:\"a\"; pcre:\"/^(\\w+\\s?)*(?=x)\\1/R\"; content:\"zz\"; distance:0; sid:9;)\n",
    );
    // "zz" is there so that the prefilter lets the rule through
    let payload =
        [[b"a".as_slice(), &b"aaaa ".repeat(12), b"!"].concat().repeat(20), b"zz".to_vec()].concat();
    let t = std::time::Instant::now();
    for _ in 0..5 {
        assert!(e.sids(&Ev { payload: &payload, ..Default::default() }).is_empty());
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?} for 5 packets", t.elapsed());
    assert!(e.global.stats.inspection_limit_hits >= 5, "{:?}", e.global.stats);
}

#[test]
fn datarep_refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.rep"), "Z29vZ2xlLmNvbQ==,255\n").unwrap();
    std::fs::write(dir.path().join("bad.rep"), "Z29vZ2xlLmNvbQ==,high\n").unwrap();
    let rules = "alert dns any any -> any any (dns.query; datarep:a, ~, 1, load ok.rep, type string; sid:1;)\n\
         alert dns any any -> any any (dns.query; datarep:b, >, 1, type string; sid:2;)\n\
         alert dns any any -> any any (dns.query; datarep:c, >, 1, load bad.rep, type string; sid:3;)\n\
         alert dns any any -> any any (datarep:d, >, 1, load ok.rep, type string; sid:4;)\n\
         alert dns any any -> any any (dns.query; datarep:e, >, 1, load ok.rep, type string; sid:5;)\n";
    let (set, rep) = RuleSet::from_str_in(rules, &Vars::default(), dir.path());
    assert_eq!(set.len(), 1, "{rep:?}");
    let reason =
        |sid: u32| rep.skipped.iter().find(|s| s.sid == Some(sid)).map(|s| s.reason.clone()).unwrap();
    assert!(reason(1).contains("unknown operator `~`"), "{}", reason(1));
    assert!(reason(2).contains("no `load`"), "{}", reason(2));
    assert!(reason(3).contains("reputation") && reason(3).contains("line 1"), "{}", reason(3));
    assert!(reason(4).contains("sticky buffer"), "{}", reason(4));
}

#[test]
fn flow_packet_and_byte_counts() {
    // suricata-verify detect-flow-pkts, both syntaxes
    let mut e = Eng::new(
        "alert ip any any -> any any (msg:\"10 pkts\"; flow.pkts:toclient,=10; flow.pkts:toserver,=10; flow.bytes:toserver,<3000; flow.bytes:toclient,>8000; sid:1;)\n\
         alert ip any any -> any any (msg:\"old\"; flow.pkts_toclient:10; flow.pkts_toserver:10; flow.bytes_toserver:<3000; flow.bytes_toclient:>8000; sid:2;)\n\
         alert ip any any -> any any (msg:\"either\"; flow.pkts:either,>=20; sid:3;)\n",
    );
    let ev = |pkts, bytes| Ev { flow_pkts: pkts, flow_bytes: bytes, ..Default::default() };
    assert_eq!(e.sids(&ev([10, 10], [2000, 9000])), vec![1, 2]);
    assert!(e.sids(&ev([10, 9], [2000, 9000])).is_empty());
    assert!(e.sids(&ev([10, 10], [3000, 9000])).is_empty());
    assert_eq!(e.sids(&ev([20, 1], [0, 0])), vec![3]);
    let (_, rep) = RuleSet::from_str(
        "alert ip any any -> any any (flow.pkts:sideways,=1; sid:4;)\nalert ip any any -> any any (flow.bytes:10; sid:5;)\n",
        &Vars::default(),
    );
    assert_eq!(rep.skipped.len(), 2, "{rep:?}");
    assert!(rep.skipped[0].reason.contains("sideways"), "{}", rep.skipped[0].reason);
}

// ---------------------------------------------------------------- loading

#[test]
fn load_report_files_lines_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("a.rules");
    std::fs::write(
        &good,
        "# header comment\n\
         alert tcp any any -> any any (msg:\"one\"; content:\"a\"; sid:1; rev:1;)\n\
         #alert tcp any any -> any any (msg:\"disabled\"; sid:2; rev:1;)\n\
         alert tcp any any -> any any (msg:\"bad\"; content:\"|zz|\"; sid:3; rev:1;)\n\
         alert tcp any any -> any any (msg:\"multi\"; \\\n   content:\"b\"; \\\n   sid:4; rev:1;)\n\
         alert tcp any any -> any any (msg:\"relative backref\"; pcre:\"/(a)\\g{-1}/\"; sid:5; rev:1;)\n\
         alert tcp any any -> any any (msg:\"stream\"; stream_size:server,>,10; sid:6; rev:1;)\n\
         alert tcp any any -> any any (msg:\"class\"; classtype:no-such-class; sid:7; rev:1;)\n\
         alert tcp any any -> any any (msg:\"dup\"; content:\"c\"; sid:1; rev:2;)\n\
         alert tcp any any -> any any (msg:\"nosid\"; content:\"c\";)\n\
         garbage line\n",
    )
    .unwrap();
    let other = dir.path().join("b.rules");
    std::fs::write(&other, "alert udp any any -> any any (msg:\"two\"; content:\"x\"; sid:100;)\n").unwrap();
    let (set, rep) = RuleSet::load(&[good.clone(), other.clone()], &Vars::default(), None).unwrap();
    assert_eq!(rep.total, 10);
    assert_eq!(rep.disabled, 1);
    assert_eq!(rep.loaded, 3);
    assert_eq!(set.len(), 3);
    assert_eq!(rep.files, vec![(good.clone(), 9, 2), (other.clone(), 1, 1)]);
    let by_line: Vec<(usize, Option<u32>, &str)> =
        rep.skipped.iter().map(|s| (s.line, s.sid, s.category.as_str())).collect();
    assert!(by_line.contains(&(4, Some(3), "malformed rule")), "{by_line:?}");
    assert!(by_line.contains(&(8, Some(5), "pcre: relative backreference")), "{by_line:?}");
    assert!(by_line.contains(&(9, Some(6), "unsupported keyword `stream_size`")));
    assert!(by_line.contains(&(10, Some(7), "unknown classtype")));
    assert!(by_line.contains(&(2, Some(1), "duplicate sid")), "rev 2 supersedes rev 1");
    assert!(by_line.contains(&(12, None, "malformed rule")));
    assert!(by_line.contains(&(13, None, "malformed rule")));
    let bad = rep.skipped.iter().find(|s| s.line == 4).unwrap();
    assert_eq!(bad.file, good);
    assert!(bad.reason.contains("zz"), "{}", bad.reason);
    // the multi-line rule loaded and works
    let mut e = Eng::with(set);
    assert_eq!(e.sids(&Ev { payload: b"b", ..Default::default() }), vec![4]);
    assert_eq!(e.sids(&Ev { payload: b"c", ..Default::default() }), vec![1]);
    // a missing file is an error naming it
    let err = RuleSet::load(&[dir.path().join("nope.rules")], &Vars::default(), None).unwrap_err();
    assert!(err.to_string().contains("nope.rules"));
}

#[test]
fn classification_file_and_vars() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("classification.config");
    std::fs::write(&c, "config classification: my-class,My Class,2\n").unwrap();
    let r = dir.path().join("r.rules");
    std::fs::write(
        &r,
        "alert tcp $MY_NET any -> any $MY_PORTS (content:\"a\"; classtype:my-class; sid:1;)\n\
         alert tcp any any -> any any (content:\"a\"; classtype:trojan-activity; sid:2;)\n",
    )
    .unwrap();
    let mut vars = Vars::default();
    vars.set("MY_NET", "[10.9.0.0/16]").unwrap();
    vars.set("MY_PORTS", "8000:8100").unwrap();
    let (set, rep) = RuleSet::load(&[r], &vars, Some(&c)).unwrap();
    assert_eq!(rep.loaded, 1, "the file replaces the built-in table: {:?}", rep.skipped);
    let mut e = Eng::with(set);
    let m = e.matches(&Ev { src: "10.9.1.1", dport: 8080, payload: b"a", ..Default::default() });
    assert_eq!((m[0].category.as_str(), m[0].severity), ("My Class", 2));
    assert!(RuleSet::load(&[], &vars, Some(&dir.path().join("missing"))).is_err());
}

#[test]
fn check_command_output() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rules");
    std::fs::write(
        &f,
        "alert tcp any any -> any any (content:\"a\"; sid:1;)\nalert tcp any any -> any any (foo; sid:2;)\n",
    )
    .unwrap();
    let args = check::CheckArgs { files: vec![f.clone()], ..Default::default() };
    let mut out = Vec::new();
    let rep = check::run(&args, &mut out).unwrap();
    assert_eq!((rep.loaded, rep.total), (1, 2));
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("x.rules: 1/2 rules loaded"), "{text}");
    assert!(text.contains("1  unknown keyword"), "{text}");
    assert!(text.contains(":2 sid 2: unknown keyword `foo`"), "{text}");
    let mut out = Vec::new();
    check::run(&check::CheckArgs { json: true, ..args.clone() }, &mut out).unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sid"], 2);
    assert_eq!(lines[1]["summary"]["loaded"], 1);
    let bad_var = check::CheckArgs { vars: vec!["HOME_NET".into()], ..args.clone() };
    assert_eq!(check::run(&bad_var, &mut Vec::new()).unwrap_err().exit_code(), 2);
    let missing = check::CheckArgs { files: vec![PathBuf::from("/nonexistent/x.rules")], ..args };
    assert_eq!(check::run(&missing, &mut Vec::new()).unwrap_err().exit_code(), 2);
}

/// The ET Open set of the shared corpus: at least 97% load and garbage
/// runs through all of it. Part of `tests/acceptance/corpus.sh` (the set
/// holds GPL rules, read in place, never copied).
#[test]
#[ignore = "reads ../shared/corpus: run tests/acceptance/corpus.sh"]
fn et_open_corpus_loads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/Suricata_Repository");
    let rd = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    let (set, rep) = RuleSet::load(&files, &Vars::default(), None).unwrap();
    assert!(rep.loaded * 100 >= rep.total * 97, "{}/{}", rep.loaded, rep.total);
    let mut e = Eng::with(set);
    let req = Ev {
        app: AppProto::Http,
        dst: "8.8.4.4",
        payload: b"GET /index.php?id=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0)\r\n\r\n",
        bufs: vec![
            (Buffer::HttpMethod, b"GET"),
            (Buffer::HttpUri, b"/index.php?id=1"),
            (Buffer::HttpHost, b"example.com"),
            (Buffer::HttpUserAgent, b"Mozilla/4.0 (compatible; MSIE 6.0)"),
            (Buffer::HttpHeader, b"Host: example.com\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0)\r\n"),
        ],
        ..Default::default()
    };
    // no assertion on what fires (the set changes); it must run on garbage
    // in every buffer without panicking
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"GET /POST HTTP/1.1\r\nHost: User-Agent: |%.php?=&\x00\x01\x16\x03";
    let t0 = std::time::Instant::now();
    for i in 0..300u64 {
        let n = (rnd() % 1500) as usize;
        let data: Vec<u8> = (0..n)
            .map(|_| {
                let r = rnd();
                if r % 3 == 0 { alphabet[(r >> 8) as usize % alphabet.len()] } else { r as u8 }
            })
            .collect();
        let bufs: Vec<(Buffer, &[u8])> = Buffer::ALL.iter().map(|b| (*b, &data[..data.len() / 2])).collect();
        let app =
            [AppProto::Http, AppProto::Tls, AppProto::Dns, AppProto::Unknown, AppProto::Smtp][i as usize % 5];
        let ev = Ev {
            payload: &data,
            stream: Some(&data),
            app,
            proto: [6u8, 17, 1][i as usize % 3],
            to_server: i % 2 == 0,
            flags: rnd() as u8,
            icmp: Some((rnd() as u8, rnd() as u8)),
            bufs,
            flow_id: i % 7,
            ..req.clone()
        };
        let _ = e.matches(&ev);
    }
    let _ = e.sids(&req);
    assert!(t0.elapsed() < std::time::Duration::from_secs(120));
}

/// Rough cost of `inspect` with the ET Open set of the corpus (when present):
/// `cargo test --release -p canhgac-agent --lib rules::tests::bench_et -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_et() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/Suricata_Repository");
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    let rss = || -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let before = rss();
    let t0 = std::time::Instant::now();
    let (set, rep) = RuleSet::load(&files, &Vars::default(), None).unwrap();
    let took = t0.elapsed();
    drop(rep);
    let after = rss();
    println!("load: {} rules in {took:?}, RSS {before} kB -> {after} kB", set.len());
    // a second copy: its growth approximates the retained size of one rule set
    let (set2, _) = RuleSet::load(&files, &Vars::default(), None).unwrap();
    println!("a second loaded copy adds {} kB", rss().saturating_sub(after));
    drop(set2);
    println!("prefilter: {} kB", set.stats().prefilter_bytes / 1024);
    let mut e = Eng::with(set);
    let text: Vec<u8> = (0..1400u32)
        .map(|i| b"lorem ipsum dolor sit amet, consectetur adipiscing elit "[(i % 56) as usize])
        .collect();
    let body: Vec<u8> = (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let req_payload = b"GET /images/logo.png?v=3 HTTP/1.1\r\nHost: www.example.gov.vn\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n";
    let header = b"Host: www.example.gov.vn\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n";
    let http_req = Ev {
        app: AppProto::Http,
        src: "192.168.1.10",
        dst: "203.0.113.5",
        payload: req_payload,
        bufs: vec![
            (Buffer::HttpMethod, b"GET"),
            (Buffer::HttpUri, b"/images/logo.png?v=3"),
            (Buffer::HttpRawUri, b"/images/logo.png?v=3"),
            (Buffer::HttpHost, b"www.example.gov.vn"),
            (Buffer::HttpUserAgent, b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            (Buffer::HttpHeader, header),
            (Buffer::HttpRawHeader, header),
            (Buffer::HttpHeaderNames, b"\r\nHost\r\nUser-Agent\r\nAccept\r\nAccept-Encoding\r\nConnection\r\n\r\n"),
            (Buffer::HttpAccept, b"*/*"),
            (Buffer::HttpConnection, b"keep-alive"),
            (Buffer::HttpProtocol, b"HTTP/1.1"),
        ],
        ..Default::default()
    };
    let mut http_resp = Ev { payload: &body[..1400], ..http_req.reply() };
    http_resp.bufs = vec![
        (Buffer::HttpStatCode, b"200"),
        (Buffer::HttpStatMsg, b"OK"),
        (Buffer::HttpContentType, b"image/png"),
        (Buffer::HttpResponseBody, &body),
        (Buffer::HttpHeader, b"Content-Type: image/png\r\nContent-Length: 16384\r\n"),
    ];
    let tcp_data =
        Ev { src: "192.168.1.10", dst: "203.0.113.5", dport: 8443, payload: &text, ..Default::default() };
    let tcp_bin = Ev { payload: &body[..1400], ..tcp_data.clone() };
    let dns = Ev {
        proto: 17,
        dport: 53,
        src: "192.168.1.10",
        dst: "192.168.1.1",
        app: AppProto::Dns,
        payload:
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01",
        bufs: vec![(Buffer::DnsQuery, b"www.example.com")],
        ..Default::default()
    };
    let tls = Ev {
        dport: 443,
        src: "192.168.1.10",
        dst: "203.0.113.5",
        app: AppProto::Tls,
        payload: &body[..517],
        bufs: vec![(Buffer::TlsSni, b"www.example.com")],
        ..Default::default()
    };
    let ack = Ev { payload: b"", flags: 0x10, ..tcp_data.clone() };
    let events = [
        ("http request", http_req),
        ("http response 16k body", http_resp),
        ("tcp 1400 text", tcp_data),
        ("tcp 1400 binary", tcp_bin),
        ("dns query", dns),
        ("tls hello", tls),
        ("tcp ack", ack),
    ];
    for (name, ev) in &events {
        let n = 2000u32;
        let mut fired = 0usize;
        let t = std::time::Instant::now();
        for i in 0..n {
            let ev = Ev { flow_id: u64::from(i % 64), ts_us: i64::from(i) * 1000, ..ev.clone() };
            fired += e.matches(&ev).len();
        }
        let per = t.elapsed() / n;

        println!("{name:24} {per:>10?} per inspect, {:>8.0} /s, {fired} matches", 1.0 / per.as_secs_f64());
    }
    println!("RSS after inspections (lazily compiled pcre included): {} kB", rss());
}

// ---------------------------------------------------------------- robustness

#[test]
fn rule_set_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    fn assert_send<T: Send>() {}
    assert_send::<GlobalRuleState>();
    assert_send::<FlowRuleState>();
}

/// Extreme numbers in rules neither panic (overflow) nor match by accident.
#[test]
fn extreme_values() {
    let max = i64::MAX;
    let min = i64::MIN;
    let rules = format!(
        "alert tcp any any -> any any (content:\"a\"; isdataat:{max},relative; sid:1;)\n\
         alert tcp any any -> any any (content:\"a\"; byte_jump:8,{max},relative,multiplier 18446744073709551615,post_offset {min}; sid:2;)\n\
         alert tcp any any -> any any (content:\"a\"; byte_jump:8,0,relative,multiplier 18446744073709551615,align,from_end; sid:3;)\n\
         alert tcp any any -> any any (content:\"a\"; byte_test:8,>,18446744073709551615,{min},relative; sid:4;)\n\
         alert tcp any any -> any any (content:\"a\"; content:\"b\"; distance:{min}; within:{max}; sid:5;)\n\
         alert tcp any any -> any any (content:\"a\"; offset:{max}; depth:{max}; sid:6;)\n\
         alert tcp any any -> any any (content:\"a\"; byte_extract:8,0,v,relative,multiplier 18446744073709551615,align 4; isdataat:v,relative; content:\"b\"; distance:v; within:v; sid:7;)\n\
         alert tcp any any -> any any (content:\"a\"; byte_test:20,=,1,0,relative,string,dec; sid:8;)\n\
         alert tcp any any -> any any (dsize:65535; threshold:type threshold, track by_src, count 4294967295, seconds 4294967295; sid:9;)"
    );
    let mut e = Eng::new(&rules);
    let fired = e.sids(&Ev {
        ts_us: i64::MAX,
        payload: b"a\xff\xff\xff\xff\xff\xff\xff\xffb99999999999999999999999",
        ..Default::default()
    });
    // only the wrapped-around distance/within rule is arguable; nothing else can match
    assert!(fired.iter().all(|s| *s == 5), "{fired:?}");
    let _ = e.sids(&Ev { ts_us: i64::MIN, payload: b"a", ..Default::default() });
}

mod robustness {
    use proptest::prelude::*;

    use super::*;

    const SEEDS: &[&str] = &[
        r#"alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"x"; flow:established,to_server; content:"GET"; http_method; content:"/a.php?"; http_uri; depth:7; pcre:"/^\/a\.php\?[a-z]{2,5}=\d+$/U"; content:!"Referer|3a|"; http_header; threshold:type limit, track by_src, count 1, seconds 60; classtype:trojan-activity; sid:1; rev:1;)"#,
        r#"alert tcp any any -> any any (content:"|00 01|"; depth:2; byte_extract:2,0,len,relative; byte_test:1,>,len,0,relative; byte_jump:2,0,relative,multiplier 2,post_offset -1; isdataat:!10,relative; content:"z"; distance:len; within:4; flowbits:set,a|b; sid:2;)"#,
        r#"alert dns any any -> any any (dns.query; dotprefix; content:".evil"; endswith; bsize:>3; dataset:set,seen,type string; flags:*SA,12; itype:>3; sid:3;)"#,
        r#"alert ip [1.2.3.0/24,!1.2.3.4,$HOME_NET] [1:1024,!80] <> any any (dsize:<5; ttl:>2; ip_proto:!6; sameip; sid:4;)"#,
    ];

    fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> String {
        let mut b = seed.as_bytes().to_vec();
        for &(pos, op, byte) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let p = pos % b.len();
            match op % 3 {
                0 => {
                    b.remove(p);
                }
                1 => b.insert(p, byte),
                _ => b[p] = byte,
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    fn any_rule_text() -> impl Strategy<Value = String> {
        let alphabet = prop::sample::select(
            b"alert tcp any ->$HOME_NET[]!,:;()\"|0123456789abcdefxyz\\/^$.*+?{}=<>&content pcre sid msg flowbits byte_test"
                .to_vec(),
        );
        prop_oneof![
            (0..SEEDS.len(), prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..12))
                .prop_map(|(i, edits)| mutate(SEEDS[i], &edits)),
            prop::collection::vec(alphabet, 0..200).prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
            ".{0,300}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Garbage rule text never panics and every line is accounted for.
        #[test]
        fn garbage_rules_never_panic(texts in prop::collection::vec(any_rule_text(), 1..6)) {
            let text = texts.join("\n");
            let (set, rep) = RuleSet::from_str(&text, &Vars::default());
            prop_assert_eq!(rep.loaded + rep.skipped.len(), rep.total);
            prop_assert_eq!(set.len(), rep.loaded);
        }

        /// Garbage inspections against a rule set never panic.
        #[test]
        fn garbage_inspections_never_panic(
            payload in prop::collection::vec(any::<u8>(), 0..600),
            buf in prop::collection::vec(any::<u8>(), 0..200),
            which in 0usize..Buffer::ALL.len(),
            proto in prop::sample::select(vec![1u8, 6, 17, 58, 132]),
            flags in any::<u8>(),
            to_server in any::<bool>(),
            ts in any::<i64>(),
        ) {
            let (set, _) = RuleSet::from_str(&SEEDS.join("\n"), &Vars::default());
            let mut e = Eng::with(set);
            let ev = Ev {
                ts_us: ts,
                proto,
                flags,
                to_server,
                payload: &payload,
                stream: Some(&payload),
                app: AppProto::Dns,
                icmp: Some((flags, flags)),
                bufs: vec![(Buffer::ALL[which], &buf), (Buffer::DnsQuery, &buf), (Buffer::HttpUri, &payload)],
                ..Default::default()
            };
            e.matches(&ev);
            e.matches(&Ev { app: AppProto::Http, ..ev.clone() });
        }

        /// The pcre translator accepts or refuses, never panics, and what it
        /// accepts compiles or is refused by the regex crate with an error.
        #[test]
        fn pcre_translation_never_panics(p in ".{0,60}", flags in "[ismxAEGRUIPQHDMCSYVWBOZ]{0,4}") {
            if let Ok(spec) = pcre::parse(&format!("\"/{p}/{flags}\"")) {
                let _ = pcre::compile(&spec.translated, spec.backtrack);
            }
        }
    }
}

#[test]
fn rules_in_the_builtin_sid_range_are_skipped_naming_it() {
    let (set, rep) = RuleSet::from_str(
        "alert tcp any any -> any any (msg:\"local\"; content:\"x\"; sid:9100001; rev:1;)\n\
         alert tcp any any -> any any (msg:\"ok\"; content:\"x\"; sid:9200000; rev:1;)\n",
        &Vars::default(),
    );
    assert_eq!(set.len(), 1);
    assert_eq!(rep.skipped.len(), 1);
    assert_eq!(rep.skipped[0].sid, Some(9_100_001));
    assert!(rep.skipped[0].reason.contains("reserved for canhgac's built-in detectors (9000000-9199999)"));
}

/// Encrypted flows (Suricata's `encryption-handling: track-only`): payload
/// and stream keywords no longer match, transaction buffers and header or
/// packet keywords still do.
#[test]
fn no_payload_inspection_of_encrypted_flows() {
    let mut e = Eng::new(
        "alert tcp any any -> any any (content:\"|17 03 03|\"; sid:1;)\n\
         alert tcp any any -> any any (pcre:\"/^\\x17\\x03/\"; sid:2;)\n\
         alert tcp any any -> any any (byte_test:1,=,0x17,0; sid:3;)\n\
         alert tcp any any -> any any (dsize:>4; flags:PA; sid:4;)\n\
         alert tls any any -> any any (tls.sni; content:\"evil.example\"; sid:5;)",
    );
    let data: &[u8] = b"\x17\x03\x03\x00\x20 encrypted";
    let seg = Ev { payload: data, stream: Some(data), app: AppProto::Tls, ..Default::default() };
    assert_eq!(e.sids(&Ev { flow_id: 2, ..seg.clone() }), vec![1, 2, 3, 4]);
    let enc = Ev { no_payload: true, flow_id: 3, ..seg.clone() };
    assert_eq!(e.sids(&enc), vec![4]);
    let sni = Ev { bufs: vec![(Buffer::TlsSni, b"evil.example".as_slice())], ..enc.clone() };
    assert_eq!(e.sids(&Ev { flow_id: 4, ..sni }), vec![4, 5]);
    // a packet without a stream: the same
    assert_eq!(e.sids(&Ev { stream: None, flow_id: 5, ..enc }), vec![4]);
}

/// Candidates are screened by protocol, app-layer protocol, direction and
/// ports before the full header check: every rule that can match still does.
#[test]
fn candidates_screened_by_protocol_direction_and_ports() {
    let mut e = Eng::new(
        "alert tcp any any -> any [80,8080] (content:\"abc\"; sid:1;)\n\
         alert tcp any any <> any 8080 (content:\"abc\"; sid:2;)\n\
         alert tcp any any -> any !80 (content:\"abc\"; sid:3;)\n\
         alert tcp any 1024: -> any 81:90 (content:\"abc\"; flow:to_server; sid:4;)\n\
         alert udp any any -> any 80 (content:\"abc\"; sid:5;)\n\
         alert http any any -> any any (content:\"abc\"; sid:6;)\n\
         alert tcp any any -> any 80 (flags:PA; sid:7;)",
    );
    let ev = Ev { payload: b"xxabcxx", ..Default::default() };
    assert_eq!(e.sids(&ev), vec![1, 7]);
    assert_eq!(e.sids(&Ev { dport: 8080, ..ev.clone() }), vec![1, 2, 3]);
    // the bidirectional rule the other way round
    assert_eq!(e.sids(&Ev { sport: 8080, dport: 1234, to_server: false, ..ev.clone() }), vec![2, 3]);
    assert_eq!(e.sids(&Ev { dport: 85, ..ev.clone() }), vec![3, 4]);
    assert_eq!(e.sids(&Ev { dport: 85, to_server: false, ..ev.clone() }), vec![3]);
    assert_eq!(e.sids(&Ev { sport: 1000, dport: 85, ..ev.clone() }), vec![3]);
    assert_eq!(e.sids(&Ev { proto: 17, ..ev.clone() }), vec![5]);
    assert_eq!(e.sids(&Ev { dport: 9999, app: AppProto::Http, ..ev.clone() }), vec![3, 6]);
    // no ports (ICMP): only rules with port any
    assert_eq!(e.sids(&Ev { proto: 1, sport: 0, dport: 0, ..ev }), Vec::<u32>::new());
}
