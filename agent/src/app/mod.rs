//! Application-layer protocols: detection and per-flow parser state.
//!
//! A flow's protocol is recognised from its first bytes (any port): TLS
//! handshake records, HTTP/1.x request methods or status lines, SSH banners;
//! DNS by port 53 over UDP and TCP. Parsers see the in-order reassembled
//! stream (TCP) or each datagram (UDP) and report [`AppEvent`]s; their state
//! lives in the flow.

pub mod http;
pub mod ssh;
pub mod tls;

use crate::dns;

/// Bytes looked at per direction before giving up on recognising a
/// protocol.
const PROBE_LIMIT: usize = 4096;
const MAX_DNS_TCP: usize = 65_537;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Unknown,
    Dns,
    Tls,
    Http,
    Ssh,
}

impl Proto {
    /// EVE `app_proto` names.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Unknown => "failed",
            Proto::Dns => "dns",
            Proto::Tls => "tls",
            Proto::Http => "http",
            Proto::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Default)]
pub enum AppState {
    #[default]
    Probing,
    Dns(Box<DnsTcp>),
    Tls(Box<tls::TlsState>),
    Http(Box<http::HttpState>),
    Ssh(Box<ssh::SshState>),
    /// Not a protocol we parse.
    Other,
}

#[derive(Debug, Default)]
pub struct DnsTcp {
    buf: [Vec<u8>; 2],
}

/// What a chunk of data produced.
#[derive(Debug)]
pub enum AppEvent {
    Dns(dns::Message),
    Tls(tls::TlsEvent),
    Http(http::HttpEvent),
    /// A banner completed (the state holds it).
    Ssh,
    /// A side's KEXINIT was parsed (its HASSH is in the state).
    SshKex,
}

/// Parse failures, by protocol, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppErrors {
    pub dns: u64,
}

impl AppState {
    pub fn proto(&self) -> Proto {
        match self {
            AppState::Probing | AppState::Other => Proto::Unknown,
            AppState::Dns(_) => Proto::Dns,
            AppState::Tls(_) => Proto::Tls,
            AppState::Http(_) => Proto::Http,
            AppState::Ssh(_) => Proto::Ssh,
        }
    }

    /// The flow's traffic is encrypted from here on (TLS application data,
    /// SSH after both NEWKEYS): Suricata's default encryption handling
    /// (`track-only`) stops inspecting its payload.
    pub fn encrypted(&self) -> bool {
        match self {
            AppState::Tls(t) => t.app_data,
            AppState::Ssh(s) => s.encrypted(),
            _ => false,
        }
    }

    /// A UDP datagram in direction `dir` (0: to server).
    pub fn on_datagram(
        &mut self,
        ports: (u16, u16),
        payload: &[u8],
        events: &mut Vec<AppEvent>,
        errors: &mut AppErrors,
    ) {
        if payload.is_empty() {
            return;
        }
        if ports.0 == 53 || ports.1 == 53 || ports.0 == 5353 || ports.1 == 5353 {
            match dns::parse(payload) {
                Ok(m) => {
                    if matches!(self, AppState::Probing) {
                        *self = AppState::Dns(Box::default());
                    }
                    events.push(AppEvent::Dns(m));
                }
                Err(_) => errors.dns += 1,
            }
        }
    }

    /// In-order TCP bytes in direction `dir` (0: to server); `gaps` says
    /// where the stream skipped bytes the capture missed (offset in `data`,
    /// bytes missing). HTTP steps over a gap inside a body of known size and
    /// otherwise waits for the next message; the other parsers read across.
    #[allow(clippy::too_many_arguments)]
    pub fn on_stream(
        &mut self,
        dir: usize,
        ports: (u16, u16),
        seen: usize,
        data: &[u8],
        gaps: &[(usize, u64)],
        events: &mut Vec<AppEvent>,
        errors: &mut AppErrors,
    ) {
        if data.is_empty() && gaps.is_empty() {
            return;
        }
        if matches!(self, AppState::Probing) {
            *self = if ports.0 == 53 || ports.1 == 53 {
                AppState::Dns(Box::default())
            } else if tls::probe(data) {
                AppState::Tls(Box::default())
            } else if ssh::probe(data) {
                AppState::Ssh(Box::default())
            } else if (dir == 0 && http::probe_request(data)) || (dir == 1 && http::probe_response(data)) {
                AppState::Http(Box::default())
            } else if seen + data.len() > PROBE_LIMIT {
                AppState::Other
            } else {
                return;
            };
        }
        match self {
            AppState::Tls(t) => {
                let mut ev = Vec::new();
                t.on_data(dir, data, &mut ev);
                events.extend(ev.into_iter().map(AppEvent::Tls));
            }
            AppState::Http(h) => {
                let mut ev = Vec::new();
                let mut from = 0;
                for &(at, missing) in gaps {
                    let at = at.min(data.len());
                    h.on_data(dir, &data[from..at], &mut ev);
                    h.on_gap(dir, missing, &mut ev);
                    from = at;
                }
                h.on_data(dir, &data[from..], &mut ev);
                events.extend(ev.into_iter().map(AppEvent::Http));
            }
            AppState::Ssh(s) => {
                let p = s.on_data(dir, data);
                if p.banner {
                    events.push(AppEvent::Ssh);
                }
                if p.kex {
                    events.push(AppEvent::SshKex);
                }
            }
            AppState::Dns(d) => {
                let buf = &mut d.buf[dir];
                buf.extend_from_slice(data);
                loop {
                    if buf.len() < 2 {
                        break;
                    }
                    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    if buf.len() < 2 + len {
                        if buf.len() > MAX_DNS_TCP {
                            buf.clear();
                            errors.dns += 1;
                        }
                        break;
                    }
                    let msg: Vec<u8> = buf.drain(..2 + len).collect();
                    match dns::parse(&msg[2..]) {
                        Ok(m) => events.push(AppEvent::Dns(m)),
                        Err(_) => errors.dns += 1,
                    }
                }
            }
            AppState::Probing | AppState::Other => {}
        }
    }

    /// The stream in direction `dir` ended (FIN, RST or flow end).
    pub fn on_close(&mut self, dir: usize, events: &mut Vec<AppEvent>) {
        if let AppState::Http(h) = self {
            let mut ev = Vec::new();
            h.on_close(dir, &mut ev);
            events.extend(ev.into_iter().map(AppEvent::Http));
        }
    }
}
