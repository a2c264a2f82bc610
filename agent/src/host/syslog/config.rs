//! `[syslog]` in the agent configuration: stage one (serde, unknown fields
//! refused) and stage two (validated values). See `deploy/agent.toml`.

use std::{net::SocketAddr, path::PathBuf};

use canhgac_proto::conf::{ConfigError, Source, Spanned};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSyslog {
    enabled: Option<bool>,
    udp: Option<Spanned<String>>,
    tcp: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    allow: Option<Vec<Spanned<String>>>,
    rate: Option<Spanned<u32>>,
    burst: Option<Spanned<u32>>,
    queue: Option<Spanned<u32>>,
    max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    sender: Vec<RawSender>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    address: Spanned<String>,
    system: Option<u64>,
    kind: Option<Spanned<String>>,
}

/// What a sender's messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Auto,
    Auth,
    Web,
    Firewall,
    Windows,
}

impl Kind {
    /// The router's kind (`None`: sniffed per message).
    pub fn log_kind(self) -> Option<crate::host::router::LogKind> {
        use crate::host::router::LogKind;
        match self {
            Kind::Auto => None,
            Kind::Auth => Some(LogKind::Auth),
            Kind::Web => Some(LogKind::Web),
            Kind::Firewall => Some(LogKind::Firewall),
            Kind::Windows => Some(LogKind::Windows),
        }
    }

    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "auto" => Ok(Kind::Auto),
            "auth" => Ok(Kind::Auth),
            "web" => Ok(Kind::Web),
            "firewall" => Ok(Kind::Firewall),
            "windows" => Ok(Kind::Windows),
            other => Err(format!("unknown log kind `{other}` (expected auto, auth, web, firewall, windows)")),
        }
    }
}

/// `[[syslog.sender]]`: a device or network and what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub network: IpNet,
    pub system: Option<u64>,
    pub kind: Kind,
}

/// `[syslog]`, validated.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// `None`: that transport is off.
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Client certificates are required and checked against this CA.
    pub tls_client_ca: Option<PathBuf>,
    /// Senders accepted: `allow` and every sender's address.
    pub allow: Vec<IpNet>,
    /// Messages per second per sender, and the burst above it.
    pub rate: u32,
    pub burst: u32,
    /// Messages waiting for the log thread at most (beyond: dropped, counted).
    pub queue: usize,
    /// Open TCP and TLS connections at most (beyond: refused, counted).
    pub max_connections: usize,
    /// Most specific first.
    pub senders: Vec<Sender>,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            udp: Some(SocketAddr::from(([0, 0, 0, 0], 514))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 514))),
            tls: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            allow: Vec::new(),
            rate: 2000,
            burst: 10_000,
            queue: 50_000,
            max_connections: 512,
            senders: Vec::new(),
        }
    }
}

impl SyslogConfig {
    /// The sender configuration that applies to `ip` (most specific).
    pub fn sender(&self, ip: std::net::IpAddr) -> Option<&Sender> {
        self.senders.iter().find(|s| s.network.contains(&ip))
    }

    pub fn allowed(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Stage two. `None`: no `[syslog]` section, or `enabled = false`.
    pub fn resolve(
        src: &Source,
        raw: Option<RawSyslog>,
        rel: &dyn Fn(PathBuf) -> PathBuf,
    ) -> Result<Option<SyslogConfig>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let mut c = SyslogConfig::default();
        let listen = |v: &Option<Spanned<String>>, default: Option<SocketAddr>| -> Result<_, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) if s.get_ref() == "off" => Ok(None),
                Some(s) => s.get_ref().parse::<SocketAddr>().map(Some).map_err(|_| {
                    src.error_at(
                        s.span(),
                        format!("invalid listen address `{}` (expected IP:PORT or off)", s.get_ref()),
                    )
                }),
            }
        };
        c.udp = listen(&raw.udp, c.udp)?;
        c.tcp = listen(&raw.tcp, c.tcp)?;
        c.tls = listen(&raw.tls, None)?;
        c.tls_cert = raw.tls_cert.map(rel);
        c.tls_key = raw.tls_key.map(rel);
        c.tls_client_ca = raw.tls_client_ca.map(rel);
        if c.tls.is_some() && (c.tls_cert.is_none() || c.tls_key.is_none()) {
            return Err(src.error(Some("syslog.tls"), "a TLS listener needs `tls_cert` and `tls_key`"));
        }
        let net = |s: &Spanned<String>| -> Result<IpNet, ConfigError> {
            let t = s.get_ref().trim();
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| src.error_at(s.span(), format!("invalid address or network `{t}`")))
        };
        for a in raw.allow.iter().flatten() {
            c.allow.push(net(a)?);
        }
        for s in &raw.sender {
            let kind = match &s.kind {
                Some(k) => Kind::parse(k.get_ref()).map_err(|e| src.error_at(k.span(), e))?,
                None => Kind::Auto,
            };
            let network = net(&s.address)?;
            c.allow.push(network);
            c.senders.push(Sender { network, system: s.system, kind });
        }
        // most specific first
        c.senders.sort_by_key(|s| std::cmp::Reverse(s.network.prefix_len()));
        if c.allow.is_empty() {
            return Err(src.error(
                Some("syslog.allow"),
                "no sender is accepted: list addresses or networks in `allow` or add a [[syslog.sender]]",
            ));
        }
        if c.udp.is_none() && c.tcp.is_none() && c.tls.is_none() {
            return Err(src.error(Some("syslog"), "every transport is off (udp, tcp, tls)"));
        }
        let in_range = |v: &Spanned<u32>, min: u32, max: u32| -> Result<u32, ConfigError> {
            let x = *v.get_ref();
            if x < min || x > max {
                return Err(src.error_at(v.span(), format!("{x} is out of range ({min} to {max})")));
            }
            Ok(x)
        };
        if let Some(v) = &raw.rate {
            c.rate = in_range(v, 1, 10_000_000)?;
        }
        c.burst = c.burst.max(c.rate);
        if let Some(v) = &raw.burst {
            c.burst = in_range(v, 1, 100_000_000)?.max(c.rate);
        }
        if let Some(v) = &raw.queue {
            c.queue = in_range(v, 16, 10_000_000)? as usize;
        }
        if let Some(v) = &raw.max_connections {
            c.max_connections = in_range(v, 1, 100_000)? as usize;
        }
        Ok(Some(c))
    }
}
