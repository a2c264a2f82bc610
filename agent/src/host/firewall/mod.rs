//! Firewall logs: messages → [`FirewallEvent`]s ([`parse`]) → EVE
//! `firewall` events and alerts ([`detect`]).
//!
//! The EVE `firewall` event (emitted when `[eve] types` has `firewall`):
//!
//! ```json
//! {"timestamp": "...", "event_type": "firewall", "src_ip": "203.0.113.7",
//!  "src_port": 40000, "dest_ip": "10.0.0.1", "dest_port": 22, "proto": "TCP",
//!  "firewall": {"action": "drop", "vendor": "netfilter", "in_iface": "eth0",
//!               "rule": "...", "label": "nft drop:", "device": "fw1", "tcp_flags": "SYN"},
//!  "canhgac": {"source": "firewall", "sender": "10.0.0.254", "system": 12, "log_source": "syslog"}}
//! ```
//!
//! Counted and skipped: firewall messages the parser could not read
//! (`unparsed`). Messages that are not about traffic (another program's,
//! an ASA message that is not an access decision) are `other`, not
//! errors.

pub mod detect;
pub mod parse;

use std::sync::Arc;

use canhgac_proto::v1::RecordKind;
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use detect::{FirewallDetectConfig, FirewallDetector};
pub use parse::{Action, Context, FirewallEvent, Parsed, Vendor};

use crate::{
    detect::{IocSet, Output, behaviour::PortscanConfig},
    host::{logfmt::Entry, origin::LogOrigin},
    spool::NewRecord,
};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirewallStats {
    /// Messages given to the pipeline.
    pub messages: u64,
    pub events: u64,
    /// Firewall messages that could not be read.
    pub unparsed: u64,
    /// Messages that are not firewall traffic.
    pub other: u64,
    pub alerts: u64,
    /// Lines skipped as binary, and lines cut at 64 KiB (read as cut).
    pub binary: u64,
    pub truncated: u64,
}

/// Parser and detectors of the firewall logs of one agent (every device
/// feeds the same detectors: a scanner denied by two firewalls is one).
pub struct FirewallPipeline {
    detector: FirewallDetector,
    pub emit_events: bool,
    pub stats: FirewallStats,
}

impl FirewallPipeline {
    /// `restored`: detector state entries (all of them; others ignored).
    pub fn new(
        cfg: FirewallDetectConfig,
        scan: PortscanConfig,
        ioc: Arc<IocSet>,
        ioc_severity: u32,
        emit_events: bool,
        restored: &[(Vec<u8>, Vec<u8>)],
    ) -> FirewallPipeline {
        let mut detector = FirewallDetector::new(cfg, scan, ioc, ioc_severity);
        for (k, v) in restored {
            if let Some(rest) = k.strip_prefix(detect::STATE_PREFIX) {
                detector.restore(rest, v);
            }
        }
        FirewallPipeline { detector, emit_events, stats: FirewallStats::default() }
    }

    pub fn set_ioc(&mut self, ioc: Arc<IocSet>) {
        self.detector.set_ioc(ioc);
    }

    /// One parsed log entry; `now` stands in for a missing timestamp,
    /// `offset` for local times written without one.
    pub fn entry(
        &mut self,
        entry: &Entry,
        now: OffsetDateTime,
        offset: time::UtcOffset,
        source: &str,
        origin: &LogOrigin,
        out: &mut Output,
    ) -> Option<FirewallEvent> {
        self.stats.messages += 1;
        let cx = Context {
            program: &entry.program,
            host: entry.host.as_deref(),
            ts: entry.ts.unwrap_or(now),
            ts_missing: entry.ts.is_none(),
            offset,
        };
        match parse::parse(&entry.message, &cx) {
            Parsed::Event(ev) => {
                self.event(&ev, source, origin, out);
                Some(*ev)
            }
            Parsed::NotFirewall => {
                self.stats.other += 1;
                None
            }
            Parsed::Malformed => {
                self.stats.unparsed += 1;
                None
            }
        }
    }

    /// One interpreted event.
    pub fn event(&mut self, ev: &FirewallEvent, source: &str, origin: &LogOrigin, out: &mut Output) {
        self.stats.events += 1;
        let before = self.detector.stats.alerts;
        self.detector.on_event(ev, source, origin, out);
        self.stats.alerts += self.detector.stats.alerts - before;
        if self.emit_events {
            out.records.push(event_record(ev, source, origin));
        }
    }

    pub fn take_state(&mut self, out: &mut Output) {
        self.detector.take_state(out);
    }

    /// Sources forgotten at capacity.
    pub fn evictions(&self) -> u64 {
        self.detector.stats.evictions
    }
}

/// `timestamp`, `event_type`, addresses, ports and protocol.
pub fn base(ev: &FirewallEvent, event_type: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("timestamp".into(), canhgac_proto::timefmt::eve(ev.ts).into());
    m.insert("event_type".into(), event_type.into());
    m.insert("src_ip".into(), ev.src.to_string().into());
    if let Some(p) = ev.src_port {
        m.insert("src_port".into(), p.into());
    }
    m.insert("dest_ip".into(), ev.dst.to_string().into());
    if let Some(p) = ev.dst_port {
        m.insert("dest_port".into(), p.into());
    }
    if !ev.proto.is_empty() {
        m.insert("proto".into(), ev.proto.to_ascii_uppercase().into());
    }
    m
}

/// The EVE `firewall` object.
pub fn firewall_object(ev: &FirewallEvent) -> Value {
    let mut f = Map::new();
    f.insert("action".into(), ev.action.as_str().into());
    f.insert("vendor".into(), ev.vendor.as_str().into());
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            f.insert(k.into(), v.clone().into());
        }
    };
    opt("in_iface", &ev.in_iface);
    opt("out_iface", &ev.out_iface);
    opt("rule", &ev.rule);
    opt("label", &ev.label);
    opt("device", &ev.device);
    opt("tcp_flags", &ev.tcp_flags);
    Value::Object(f)
}

fn log_context(obj: &mut Map<String, Value>, ev: &FirewallEvent, source: &str, origin: &LogOrigin) {
    obj.insert("log_source".into(), source.into());
    origin.write(obj);
    if let Some(d) = &ev.device {
        obj.insert("log_host".into(), d.clone().into());
    }
}

/// The EVE `firewall` event of one message.
pub fn event_record(ev: &FirewallEvent, source: &str, origin: &LogOrigin) -> NewRecord {
    let mut m = base(ev, "firewall");
    m.insert("firewall".into(), firewall_object(ev));
    let mut c = Map::new();
    log_context(&mut c, ev, source, origin);
    m.insert("canhgac".into(), Value::Object(c));
    NewRecord {
        kind: RecordKind::Event,
        severity: 0,
        time: ev.ts,
        eve_json: Value::Object(m).to_string().into_bytes(),
        facts: None,
    }
}

#[cfg(test)]
mod tests;
