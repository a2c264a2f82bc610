//! Fuzz target bodies, shared by the libFuzzer targets in `fuzz/` (coverage
//! guided, `cargo fuzz run TARGET`) and the `fuzz_smoke` test, which feeds
//! them mutated real traffic on every test run. Each takes untrusted bytes
//! and must neither panic nor hang.

use std::sync::{Arc, OnceLock};

use crate::{
    app::{http::HttpState, ssh::SshState, tls::TlsState},
    decode::{LinkType, decode},
    detect::{Engine, EngineConfig, IocSet, Output},
    eve::EveTypes,
    rules::{RuleSet, Vars},
};

/// Rules that exercise most of the rule language's keywords; the packet
/// fuzzer runs them on every frame so that the rule engine sees the same
/// hostile input as the decoders. A unit test checks that all of them load.
pub const FIXED_RULES: &str = r#"
alert tcp any any -> any any (msg:"c"; flow:established,to_server; content:"GET"; depth:3; content:"/"; distance:1; within:4; pcre:"/^[A-Z]+\s+\/[a-z]{2,}/"; sid:1;)
alert http any any -> any any (msg:"h"; http.host; content:"evil"; nocase; http.uri; content:".php"; endswith; sid:2;)
alert dns any any -> any any (msg:"d"; dns.query; content:"example"; nocase; sid:3;)
alert tls any any -> any any (msg:"t"; tls.sni; content:"evil"; tls.cert_subject; content:"CN="; sid:4;)
alert udp any any -> any 53 (msg:"b"; byte_test:1,&,0x80,2; byte_jump:1,12,relative; isdataat:2,relative; sid:5;)
alert tcp any any -> any any (msg:"f"; flow:established,to_server; content:"A"; flowbits:set,x; flowbits:noalert; sid:6;)
alert tcp any any -> any any (msg:"g"; flowbits:isset,x; dsize:>2; threshold:type limit, track by_src, count 1, seconds 60; sid:7;)
alert icmp any any -> any any (msg:"i"; itype:8; icode:0; content:"|00 01|"; sid:8;)
alert tcp any any -> any any (msg:"fl"; flags:S; detection_filter:track by_dst, count 3, seconds 10; sid:9;)
alert http any any -> any any (msg:"fd"; file.data; content:"<script"; nocase; pcre:"/eval\s*\(/R"; sid:10;)
alert http any any -> any any (msg:"u"; urilen:>5; http.method; content:"POST"; http.user_agent; content:"curl"; http.header_names; content:"Host"; http.cookie; content:"id="; sid:11;)
alert http any any -> any any (msg:"s"; flow:to_client; http.stat_code; content:"200"; http.header; content:"text/html"; sid:12;)
alert ssh any any -> any any (msg:"ssh"; content:"SSH-"; depth:4; sid:13;)
alert ip any any -> any any (msg:"ds"; dns.query; dataset:isnotset,fuzzset,type string; sid:14;)
"#;

fn fixed_rules() -> Option<Arc<RuleSet>> {
    static SET: OnceLock<Arc<RuleSet>> = OnceLock::new();
    Some(SET.get_or_init(|| Arc::new(RuleSet::from_str(FIXED_RULES, &Vars::default()).0)).clone())
}

fn ioc() -> Arc<IocSet> {
    static SET: OnceLock<Arc<IocSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut s = IocSet::default();
        s.lists.push("fuzz".into());
        for l in ["evil.example", "10.0.0.0/8", "1.2.3.4:80", "/gate.php", "e7d705a3286e19ea42f587b344ee6865"]
        {
            let _ = s.add(l, 0);
        }
        s.seal();
        Arc::new(s)
    })
    .clone()
}

/// The whole pipeline: the first byte picks the link type, the rest is cut
/// into frames at 0xfe bytes.
pub fn engine(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let linktype = [0u32, 1, 101, 108, 113, 228, 229, 276][usize::from(first) % 8];
    let cfg = EngineConfig {
        eve: EveTypes {
            alert: true,
            flow: true,
            dns: true,
            tls: true,
            http: true,
            ssh: true,
            auth: true,
            fim: true,
            firewall: true,
        },
        rules: fixed_rules(),
        ..Default::default()
    };
    let mut engine = Engine::new(ioc(), cfg, Vec::new());
    let mut out = Output::default();
    for (i, chunk) in rest.split(|b| *b == 0xfe).enumerate().take(32) {
        let ts = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(i as i64);
        engine.on_frame(linktype, ts, chunk, &mut out);
    }
    engine.finish(&mut out);
}

/// One frame of every link type.
pub fn frame(data: &[u8]) {
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::Null,
        LinkType::Loop,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
        let _ = decode(link, time::OffsetDateTime::UNIX_EPOCH, data);
    }
}

pub fn dns(data: &[u8]) {
    let _ = crate::dns::parse(data);
    let _ = crate::dns::parse_tcp(data);
}

/// A TLS stream: the first half from the client, the rest from the server.
pub fn tls(data: &[u8]) {
    let mut s = TlsState::default();
    let mut events = Vec::new();
    let (a, b) = data.split_at(data.len() / 2);
    s.on_data(0, a, &mut events);
    s.on_data(1, b, &mut events);
}

/// An HTTP conversation, chunks alternating direction at 0xff bytes.
pub fn http(data: &[u8]) {
    let mut s = HttpState::default();
    let mut events = Vec::new();
    for (i, chunk) in data.split(|b| *b == 0xff).enumerate() {
        s.on_data(i % 2, chunk, &mut events);
    }
    s.on_close(1, &mut events);
}

/// SSH as sent, then after a valid banner (so that the bytes reach the
/// KEXINIT parser), in two segments per side.
pub fn ssh(data: &[u8]) {
    let mut s = SshState::default();
    let (a, b) = data.split_at(data.len() / 2);
    s.on_data(0, a);
    s.on_data(1, b);
    let mut s = SshState::default();
    for (dir, half) in [a, b].into_iter().enumerate() {
        let msg = [b"SSH-2.0-fuzz\r\n".as_slice(), half].concat();
        let (x, y) = msg.split_at(msg.len() / 3);
        s.on_data(dir, x);
        s.on_data(dir, y);
    }
    let _ = crate::eve::ssh(&s);
}

/// Indicator list lines, then lookups of the same text.
pub fn indicators(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut s = IocSet::default();
    s.lists.push("fuzz".into());
    for line in text.lines() {
        let _ = s.add_line(line, 0);
    }
    s.seal();
    for line in text.lines().take(8) {
        let _ = s.match_domain(line);
        let _ = s.match_url(line, line);
    }
}

/// Authentication log lines in every format through the parser and the
/// detectors (a stateful run: the lines are one log).
pub fn auth_log(data: &[u8]) {
    use crate::host::{auth::AuthPipeline, logfmt};
    let mut p = AuthPipeline::new(Default::default(), true, &[]);
    let clock = logfmt::Clock::utc(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
    let mut out = Output::default();
    for (i, line) in data.split(|b| *b == b'\n').enumerate().take(256) {
        let format = [
            logfmt::LogFormat::Auto,
            logfmt::LogFormat::Syslog,
            logfmt::LogFormat::Rfc5424,
            logfmt::LogFormat::JournalJson,
        ][i % 4];
        p.line(line, false, "fuzz", Some(i as u64), format, &clock, &mut out);
    }
    p.take_state(&mut out);
}

/// Syslog over TCP: the bytes framed (octet counting, newlines), each
/// message through the router as every kind in turn (sniffed, firewall,
/// Windows, authentication): a stateful run.
pub fn syslog_messages(data: &[u8]) {
    use crate::host::{
        auth::AuthPipeline,
        firewall::FirewallPipeline,
        logfmt,
        router::{LogKind, Pipelines},
        syslog::frame::Framer,
        web,
    };
    let eve = crate::eve::EveTypes { auth: true, firewall: true, http: true, ..Default::default() };
    let mut p = Pipelines::new(
        AuthPipeline::new(Default::default(), eve.auth, &[]),
        web::WebPipeline::new(
            Default::default(),
            Arc::new(web::SignatureSet::builtin()),
            web::WebShells::default(),
            eve.http,
            &[],
        ),
        FirewallPipeline::new(Default::default(), Default::default(), ioc(), 2, eve.firewall, &[]),
    );
    let clock = logfmt::Clock::utc(time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
    let mut framer = Framer::default();
    let mut frames = Vec::new();
    for chunk in data.chunks(977) {
        framer.push(chunk, &mut frames);
    }
    framer.finish(&mut frames);
    let mut out = Output::default();
    let sender = std::net::IpAddr::from([192, 0, 2, 1]);
    for (i, f) in frames.iter().enumerate().take(512) {
        let kind = [None, Some(LogKind::Firewall), Some(LogKind::Windows), Some(LogKind::Auth)][i % 4];
        p.message(&f.data, f.truncated, sender, kind, 1, "fuzz", &clock, &mut out);
    }
    p.finish(&mut out);
    p.take_state(&mut out);
}

/// Web page and script content analysis.
pub fn web_content(data: &[u8]) {
    use crate::host::fim::web;
    let (a, b) = data.split_at(data.len() / 2);
    let old = web::profile(a);
    let _ = web::defacement(Some(&old), b);
    let _ = web::webshell(data);
}

/// Documents for the state-secret scanner: the bytes as a file (every
/// container is sniffed from them), as a named Office or mail file, and as
/// HTTP, SMTP and raw TCP payloads through the engine (object cutting).
pub fn documents(data: &[u8]) {
    static SCANNER: std::sync::OnceLock<crate::secrets::Scanner> = std::sync::OnceLock::new();
    let scanner = SCANNER.get_or_init(|| {
        crate::secrets::Scanner::new(crate::secrets::Limits {
            max_expanded: 8 << 20,
            ..crate::secrets::Limits::default()
        })
    });
    let _ = scanner.scan(data, None);
    let _ = scanner.scan(data, Some("x.eml"));
    let _ = scanner.scan(data, Some("x.html"));
    let _ = crate::secrets::marker::find(&String::from_utf8_lossy(data), true);
}

/// Rule text and traffic. The bytes before the first NUL are rule text (any
/// bytes: the rule parser must refuse them with a reason, never panic); the
/// rest is a payload, sent over a TCP connection to port 80 (first half from
/// the client, the rest from the server), as a DNS datagram and as an ICMP
/// echo, so that whatever loaded is matched against hostile data.
pub fn rules(data: &[u8]) {
    let (text, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let text = String::from_utf8_lossy(text);
    let (set, report) = RuleSet::from_str_in(&text, &Vars::default(), std::path::Path::new("/nonexistent"));
    assert_eq!(report.loaded + report.skipped.len(), report.total, "every rule is loaded or skipped");
    let cfg = EngineConfig { rules: Some(Arc::new(set)), ..Default::default() };
    let mut engine = Engine::new(ioc(), cfg, Vec::new());
    let mut out = Output::default();
    for (i, frame) in conversation(payload).iter().enumerate() {
        let ts = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(i as i64);
        engine.on_frame(101, ts, frame, &mut out);
    }
    engine.finish(&mut out);
}

/// Raw-IP frames carrying `payload`: a whole TCP connection to port 80, a
/// DNS datagram and an ICMP echo request.
fn conversation(payload: &[u8]) -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let (req, resp) = payload.split_at(payload.len() / 2);
    let mut frames = tcp_session(req, resp);
    let (c, s) = ([10, 0, 0, 1], [192, 0, 2, 80]);
    let mut v = Vec::new();
    let _ = PacketBuilder::ipv4(c, [192, 0, 2, 53], 64).udp(40001, 53).write(&mut v, payload);
    frames.push(v);
    let mut v = Vec::new();
    let _ = PacketBuilder::ipv4(c, s, 64).icmpv4_echo_request(1, 1).write(&mut v, payload);
    frames.push(v);
    frames
}

/// Raw-IP frames (link type 101) of a whole TCP connection from
/// 10.0.0.1:40000 to 192.0.2.80:80: handshake, `req` in one segment, `resp`
/// in one segment, both FINs. Also used by tests.
pub fn tcp_session(req: &[u8], resp: &[u8]) -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let (c, s) = ([10, 0, 0, 1], [192, 0, 2, 80]);
    let (cisn, sisn) = (1000u32, 5000u32);
    let tcp = |from_client: bool, seq: u32, ack: Option<u32>, syn: bool, fin: bool, data: &[u8]| {
        let (src, dst, sp, dp) = if from_client { (c, s, 40000, 80) } else { (s, c, 80, 40000) };
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if !data.is_empty() {
            b = b.psh();
        }
        let mut v = Vec::new();
        // cannot fail: the payload is at most a fuzzer input, well under 64 KiB
        let _ = b.write(&mut v, data);
        v
    };
    let req_end = cisn + 1 + req.len() as u32;
    let resp_end = sisn + 1 + resp.len() as u32;
    vec![
        tcp(true, cisn, None, true, false, b""),
        tcp(false, sisn, Some(cisn + 1), true, false, b""),
        tcp(true, cisn + 1, Some(sisn + 1), false, false, b""),
        tcp(true, cisn + 1, Some(sisn + 1), false, false, req),
        tcp(false, sisn + 1, Some(req_end), false, false, resp),
        tcp(true, req_end, Some(resp_end), false, true, b""),
        tcp(false, resp_end, Some(req_end + 1), false, true, b""),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_rules_all_load() {
        let (set, report) = super::RuleSet::from_str(super::FIXED_RULES, &super::Vars::default());
        let skipped: Vec<_> = report.skipped.iter().map(|s| format!("{s:?}")).collect();
        assert!(skipped.is_empty(), "{skipped:#?}");
        assert_eq!((set.len(), report.total), (14, 14), "{report:?}");
    }

    #[test]
    fn fuzzed_rules_match_their_payload() {
        // the harness really runs what loaded: a rule on the payload fires
        let rule = "alert http any any -> any 80 (msg:\"x\"; http.uri; content:\"/gate.php\"; sid:77;)";
        let mut input = rule.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(
            b"GET /gate.php HTTP/1.1\r\nHost: a\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        let (set, _) = super::RuleSet::from_str(rule, &super::Vars::default());
        assert_eq!(set.len(), 1);
        let cfg = super::EngineConfig { rules: Some(std::sync::Arc::new(set)), ..Default::default() };
        let mut engine = super::Engine::new(super::ioc(), cfg, Vec::new());
        let mut out = super::Output::default();
        let payload = &input[rule.len() + 1..];
        for (i, f) in super::conversation(payload).iter().enumerate() {
            let ts = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(i as i64);
            engine.on_frame(101, ts, f, &mut out);
        }
        engine.finish(&mut out);
        let sids: Vec<u64> = out
            .records
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.eve_json).ok())
            .filter(|v| v["canhgac"]["detector"] == "rule")
            .filter_map(|v| v["alert"]["signature_id"].as_u64())
            .collect();
        assert_eq!(sids, [77], "the rule fired once on the fuzz harness's conversation");
        super::rules(&input);
    }
}
