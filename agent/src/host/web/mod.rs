//! Web-server access logs: lines → requests ([`parse`]) → EVE `http`
//! events and alerts ([`detect`], with [`signatures`] over [`normalize`]d
//! fields).
//!
//! What is skipped, and counted: binary lines, lines cut at
//! [`crate::host::logfmt::MAX_LINE`] (parsed from what was kept), lines in
//! no known access-log format (`unparsed`). W3C directives (`#Fields`)
//! and empty lines are not requests.

pub mod detect;
pub mod normalize;
pub mod parse;
pub mod signatures;

use std::{collections::HashMap, sync::Arc};

use canhgac_proto::v1::RecordKind;
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use detect::{Origin, WebDetectConfig, WebDetector, WebShells};
pub use parse::{Parsed, WebEvent, WebFormat, WebParser};
pub use signatures::SignatureSet;

use crate::{detect::Output, spool::NewRecord};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebStats {
    pub lines: u64,
    pub binary: u64,
    pub truncated: u64,
    pub unparsed: u64,
    pub events: u64,
    pub alerts: u64,
}

/// Parsers (one per log, IIS headers are per file) and the detector all
/// access logs of the agent share (a scanner seen in two virtual hosts'
/// logs is one source).
pub struct WebPipeline {
    parsers: HashMap<String, WebParser>,
    pub detector: WebDetector,
    /// Emit an EVE `http` event per request.
    pub emit_events: bool,
    pub stats: WebStats,
}

impl WebPipeline {
    pub fn new(
        cfg: WebDetectConfig,
        sigs: Arc<SignatureSet>,
        webshells: WebShells,
        emit_events: bool,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> WebPipeline {
        let mut detector = WebDetector::new(cfg, sigs, webshells);
        for (k, v) in restored {
            if let Some(rest) = k.strip_prefix(detect::STATE_PREFIX) {
                detector.restore(rest, v);
            }
        }
        WebPipeline { parsers: HashMap::new(), detector, emit_events, stats: WebStats::default() }
    }

    /// One line of an access log (`origin.source` names the file, and
    /// keeps its IIS field list).
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        text: &str,
        truncated: bool,
        format: WebFormat,
        origin: Origin<'_>,
        offset: Option<u64>,
        now: OffsetDateTime,
        out: &mut Output,
    ) {
        self.stats.lines += 1;
        if truncated {
            self.stats.truncated += 1;
        }
        if crate::host::auth::looks_binary(text.as_bytes()) {
            self.stats.binary += 1;
            return;
        }
        let parser = match self.parsers.get_mut(origin.source) {
            Some(p) => p,
            None => {
                if self.parsers.len() >= 4096 {
                    self.parsers.clear();
                }
                self.parsers.entry(origin.source.to_string()).or_default()
            }
        };
        match parser.parse(text, format) {
            Parsed::Event(ev) => self.event(&ev, origin, offset, now, out),
            Parsed::Directive => {}
            Parsed::Unparsed => self.stats.unparsed += 1,
        }
    }

    /// One parsed request.
    pub fn event(
        &mut self,
        ev: &WebEvent,
        origin: Origin<'_>,
        offset: Option<u64>,
        now: OffsetDateTime,
        out: &mut Output,
    ) {
        self.stats.events += 1;
        let before = self.detector.stats.alerts;
        self.detector.on_event(ev, now, origin, out);
        self.stats.alerts += self.detector.stats.alerts - before;
        if self.emit_events {
            out.records.push(http_event(ev, origin, offset, now));
        }
    }

    pub fn tick(&mut self, now: OffsetDateTime, out: &mut Output) {
        let before = self.detector.stats.alerts;
        self.detector.tick(now, out);
        self.stats.alerts += self.detector.stats.alerts - before;
    }

    pub fn finish(&mut self, out: &mut Output) {
        let before = self.detector.stats.alerts;
        self.detector.finish(out);
        self.stats.alerts += self.detector.stats.alerts - before;
    }

    pub fn take_state(&mut self, out: &mut Output) {
        self.detector.take_state(out);
    }

    pub fn evictions(&self) -> u64 {
        self.detector.stats.evictions
    }
}

/// The EVE `http` event of one logged request.
pub fn http_event(ev: &WebEvent, origin: Origin<'_>, offset: Option<u64>, now: OffsetDateTime) -> NewRecord {
    let ts = ev.ts.unwrap_or(now);
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(ts).into());
    m.insert("event_type".into(), "http".into());
    match ev.client_ip {
        Some(ip) => m.insert("src_ip".into(), ip.to_string().into()),
        None => m.insert("src_host".into(), ev.client.clone().into()),
    };
    let mut h = Map::new();
    if let Some(v) = &ev.vhost {
        h.insert("hostname".into(), v.clone().into());
    }
    h.insert("url".into(), ev.uri.clone().into());
    h.insert("http_method".into(), ev.method.clone().into());
    if !ev.protocol.is_empty() {
        h.insert("protocol".into(), ev.protocol.clone().into());
    }
    h.insert("status".into(), ev.status.into());
    h.insert("length".into(), ev.size.into());
    if let Some(r) = &ev.referrer {
        h.insert("http_refer".into(), r.clone().into());
    }
    if let Some(u) = &ev.user_agent {
        h.insert("http_user_agent".into(), u.clone().into());
    }
    m.insert("http".into(), Value::Object(h));
    let mut c = Map::new();
    c.insert("source".into(), "web".into());
    c.insert("log_source".into(), origin.source.into());
    c.insert("log_format".into(), ev.format.into());
    if let Some(o) = offset {
        c.insert("log_offset".into(), o.into());
    }
    if origin.system != 0 {
        c.insert("system".into(), origin.system.into());
    }
    m.insert("canhgac".into(), Value::Object(c));
    NewRecord {
        kind: RecordKind::Event,
        severity: 0,
        time: ts,
        eve_json: Value::Object(m).to_string().into_bytes(),
        facts: None,
    }
}
