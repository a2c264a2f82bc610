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
};

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
        },
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

pub fn ssh(data: &[u8]) {
    let mut s = SshState::default();
    let (a, b) = data.split_at(data.len() / 2);
    s.on_data(0, a);
    s.on_data(1, b);
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

/// Web page and script content analysis.
pub fn web_content(data: &[u8]) {
    use crate::host::fim::web;
    let (a, b) = data.split_at(data.len() / 2);
    let old = web::profile(a);
    let _ = web::defacement(Some(&old), b);
    let _ = web::webshell(data);
}
