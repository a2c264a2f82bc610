//! Authentication logs: lines → entries ([`crate::host::logfmt`]) →
//! authentication events ([`parse`]) → EVE `auth` events and alerts
//! ([`detect`]).
//!
//! What is skipped, and counted: lines with NUL bytes or mostly non-text
//! bytes (`binary`), lines cut at [`logfmt::MAX_LINE`] (`truncated`, the
//! rest of the line is dropped), lines in no known format and lines of a
//! program we interpret that the parser did not understand (`unparsed`).
//! Lines of programs we do not interpret are simply not events.

pub mod detect;
pub mod parse;

use time::OffsetDateTime;

use crate::{
    detect::{Output, StateChange},
    host::{
        logfmt::{self, Clock, LogFormat},
        origin::LogOrigin,
    },
};
pub use detect::{AuthDetectConfig, AuthDetector};
pub use parse::{AuthEvent, AuthParser, Outcome};

/// Connections the sshd tracker remembers.
const CONN_CAPACITY: usize = 10_000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthStats {
    pub lines: u64,
    pub binary: u64,
    pub truncated: u64,
    /// Lines in no known format, and lines of an interpreted program
    /// (sshd, PAM, sudo, su, login, account tools, FTP servers) that the
    /// parser did not understand.
    pub unparsed: u64,
    pub events: u64,
    pub alerts: u64,
}

/// Parser and detectors of one agent (all authentication sources feed the
/// same detectors: a guesser seen in the journal and in a file is one).
pub struct AuthPipeline {
    parser: AuthParser,
    detector: AuthDetector,
    /// Emit an `auth` event per interpreted line.
    pub emit_events: bool,
    pub stats: AuthStats,
    scratch: Vec<AuthEvent>,
}

impl AuthPipeline {
    /// `restored`: detector state entries (all of them; others ignored).
    pub fn new(cfg: AuthDetectConfig, emit_events: bool, restored: &[(Vec<u8>, Vec<u8>)]) -> AuthPipeline {
        let mut parser = AuthParser::new(CONN_CAPACITY);
        let mut detector = AuthDetector::new(cfg);
        for (k, v) in restored {
            if let Some(conn) = detect::is_conn_key(k) {
                if let Ok(c) = serde_json::from_slice(v) {
                    parser.restore(String::from_utf8_lossy(conn).into_owned(), c);
                }
            } else if let Some(rest) = k.strip_prefix(detect::STATE_PREFIX) {
                detector.restore(rest, v);
            }
        }
        AuthPipeline { parser, detector, emit_events, stats: AuthStats::default(), scratch: Vec::new() }
    }

    /// One raw line (without newline) starting at byte `offset` of its
    /// file. `truncated`: the reader cut it.
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        raw: &[u8],
        truncated: bool,
        source: &str,
        offset: Option<u64>,
        format: LogFormat,
        clock: &Clock,
        out: &mut Output,
    ) {
        self.line_with_origin(raw, truncated, source, offset, format, clock, LogOrigin::default(), out);
    }

    /// [`AuthPipeline::line`] for a line with an origin (a syslog sender, a
    /// registry system).
    #[allow(clippy::too_many_arguments)]
    pub fn line_with_origin(
        &mut self,
        raw: &[u8],
        truncated: bool,
        source: &str,
        offset: Option<u64>,
        format: LogFormat,
        clock: &Clock,
        origin: LogOrigin,
        out: &mut Output,
    ) {
        self.stats.lines += 1;
        if truncated {
            self.stats.truncated += 1;
        }
        if looks_binary(raw) {
            self.stats.binary += 1;
            return;
        }
        let text = String::from_utf8_lossy(raw);
        let Some(entry) = logfmt::parse(&text, format, clock) else {
            if !text.trim().is_empty() {
                self.stats.unparsed += 1;
            }
            return;
        };
        self.entry_with_origin(&entry, clock.reference, source, offset, origin, out);
    }

    /// One parsed entry; `now` stands in for a missing timestamp.
    pub fn entry(
        &mut self,
        entry: &logfmt::Entry,
        now: OffsetDateTime,
        source: &str,
        offset: Option<u64>,
        out: &mut Output,
    ) {
        self.entry_with_origin(entry, now, source, offset, LogOrigin::default(), out);
    }

    /// [`AuthPipeline::entry`] for a message with an origin (a syslog
    /// sender, a registry system).
    pub fn entry_with_origin(
        &mut self,
        entry: &logfmt::Entry,
        now: OffsetDateTime,
        source: &str,
        offset: Option<u64>,
        origin: LogOrigin,
        out: &mut Output,
    ) {
        let ts = entry.ts.unwrap_or(now);
        let mut events = std::mem::take(&mut self.scratch);
        let unparsed = self.parser.stats.unparsed;
        self.parser.feed(entry, ts, &mut events);
        self.stats.unparsed += self.parser.stats.unparsed - unparsed;
        for mut ev in events.drain(..) {
            ev.offset = offset;
            ev.origin = origin.clone();
            self.event(ev, source, out);
        }
        self.scratch = events;
    }

    /// One interpreted event (from a Linux log line or a Windows event).
    pub fn event(&mut self, ev: AuthEvent, source: &str, out: &mut Output) {
        self.stats.events += 1;
        let before = self.detector.stats.alerts;
        self.detector.on_event(&ev, source, out);
        self.stats.alerts += self.detector.stats.alerts - before;
        if self.emit_events {
            out.records.push(detect::auth_event_record(&ev, source));
        }
    }

    /// Detector and tracker state changed since the last call.
    pub fn take_state(&mut self, out: &mut Output) {
        self.detector.take_state(out);
        for (k, conn) in self.parser.take_dirty() {
            let key = detect::conn_state_key(&k);
            match conn {
                Some(c) => out.state.push(StateChange::Put(key, serde_json::to_vec(&c).unwrap_or_default())),
                None => out.state.push(StateChange::Delete(key)),
            }
        }
    }

    /// Sources forgotten at capacity (detector and connection tracker).
    pub fn evictions(&self) -> u64 {
        self.detector.stats.evictions + self.parser.stats.conn_evictions
    }
}

/// NUL bytes, or more than a quarter of control bytes: not a log line.
pub fn looks_binary(raw: &[u8]) -> bool {
    if raw.contains(&0) {
        return true;
    }
    let control = raw.iter().filter(|b| **b < 0x20 && **b != b'\t' && **b != b'\r' && **b != 0x1b).count();
    control * 4 > raw.len().max(1)
}
