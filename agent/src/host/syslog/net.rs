//! The network side of the receiver: UDP, TCP and TLS listeners as tasks
//! of the agent's runtime. Each connection is its own task; a slow or
//! hostile peer costs one task and never blocks the others. Listeners are
//! bound by [`bind`] (by the caller, so that tests bind port 0) and served
//! by [`serve`] until the shutdown signal.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::watch,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::{Gate, SyslogConfig, frame, normalise};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("syslog: cannot listen on {addr} ({transport}): {source}")]
    Bind { addr: SocketAddr, transport: &'static str, source: std::io::Error },
    #[error("syslog: cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("syslog TLS: {0}")]
    Tls(String),
}

/// The bound sockets.
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

impl Listeners {
    /// The local addresses (port 0 resolved).
    pub fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.udp.as_ref().and_then(|s| s.local_addr().ok()),
            self.tcp.as_ref().and_then(|s| s.local_addr().ok()),
            self.tls.as_ref().and_then(|s| s.0.local_addr().ok()),
        )
    }
}

fn read(path: &std::path::Path) -> Result<String, SyslogError> {
    std::fs::read_to_string(path).map_err(|source| SyslogError::Read { path: path.to_path_buf(), source })
}

/// The TLS server configuration: certificate and key, and client
/// certificates required and verified when a CA is given.
pub fn tls_config(cfg: &SyslogConfig) -> Result<Arc<ServerConfig>, SyslogError> {
    use canhgac_proto::client::{parse_certs, parse_key, provider};
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Err(SyslogError::Tls("a TLS listener needs tls_cert and tls_key".into()));
    };
    let tls_err = |e: &dyn std::fmt::Display| SyslogError::Tls(e.to_string());
    let chain = parse_certs(&read(cert)?, "syslog TLS certificate").map_err(|e| tls_err(&e))?;
    let key = parse_key(&read(key)?, "syslog TLS key").map_err(|e| tls_err(&e))?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| tls_err(&e))?;
    let config = match &cfg.tls_client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in parse_certs(&read(ca)?, "syslog client CA").map_err(|e| tls_err(&e))? {
                roots.add(c).map_err(|e| tls_err(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_err(&e))?;
            builder.with_client_cert_verifier(verifier).with_single_cert(chain, key)
        }
        None => builder.with_no_client_auth().with_single_cert(chain, key),
    }
    .map_err(|e| tls_err(&e))?;
    Ok(Arc::new(config))
}

/// A UDP socket with a large receive buffer (best effort): a burst of
/// datagrams waits in the kernel rather than being lost there uncounted.
fn udp_socket(a: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(a), socket2::Type::DGRAM, None)?;
    if let Err(e) = s.set_recv_buffer_size(8 << 20) {
        tracing::debug!(error = %e, "syslog: cannot enlarge the UDP receive buffer");
    }
    s.set_nonblocking(true)?;
    s.bind(&a.into())?;
    UdpSocket::from_std(s.into())
}

/// Binds the configured listeners.
pub async fn bind(cfg: &SyslogConfig) -> Result<Listeners, SyslogError> {
    let err = |addr, transport| move |source| SyslogError::Bind { addr, transport, source };
    let udp = match cfg.udp {
        Some(a) => Some(udp_socket(a).map_err(err(a, "udp"))?),
        None => None,
    };
    let tcp = match cfg.tcp {
        Some(a) => Some(TcpListener::bind(a).await.map_err(err(a, "tcp"))?),
        None => None,
    };
    let tls = match cfg.tls {
        Some(a) => {
            let acceptor = TlsAcceptor::from(tls_config(cfg)?);
            Some((TcpListener::bind(a).await.map_err(err(a, "tls"))?, acceptor))
        }
        None => None,
    };
    for (t, a) in [("udp", cfg.udp), ("tcp", cfg.tcp), ("tls", cfg.tls)] {
        if let Some(a) = a {
            tracing::info!(transport = t, addr = %a, "syslog receiver listening");
        }
    }
    Ok(Listeners { udp, tcp, tls })
}

/// Serves the listeners until `shutdown` turns true.
pub fn serve(listeners: Listeners, gate: Arc<Gate>, shutdown: watch::Receiver<bool>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    if let Some(sock) = listeners.udp {
        set.spawn(udp(sock, gate.clone(), shutdown.clone()));
    }
    if let Some(l) = listeners.tcp {
        set.spawn(accept(l, None, gate.clone(), shutdown.clone()));
    }
    if let Some((l, acceptor)) = listeners.tls {
        set.spawn(accept(l, Some(acceptor), gate.clone(), shutdown.clone()));
    }
    set
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

async fn udp(sock: UdpSocket, gate: Arc<Gate>, shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems: keep serving
                    tracing::debug!(error = %e, "syslog udp receive error");
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let ip = normalise(from.ip());
        if !gate.admit(ip) {
            continue;
        }
        let data = &buf[..n];
        let truncated = data.len() > frame::MAX_MESSAGE;
        let keep = data.len().min(frame::MAX_MESSAGE);
        gate.deliver(ip, frame::Frame { data: data[..keep].to_vec(), truncated });
    }
}

async fn accept(l: TcpListener, tls: Option<TlsAcceptor>, gate: Arc<Gate>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let stop = stopped(shutdown.clone());
    tokio::pin!(stop);
    loop {
        let (stream, from) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog accept error");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = &mut stop => {
                conns.abort_all();
                return;
            }
        };
        let ip = normalise(from.ip());
        if !gate.admit(ip) {
            drop(stream);
            continue;
        }
        let open = gate.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if open >= gate.max_connections() {
            gate.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            super::add(&gate.counters().syslog_refused);
            tracing::warn!(sender = %ip, open, "syslog: too many connections; refused");
            continue;
        }
        let (gate, tls, stop) = (gate.clone(), tls.clone(), shutdown.clone());
        conns.spawn(async move {
            connection(stream, ip, tls, &gate, stop).await;
            gate.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

async fn connection(
    stream: TcpStream,
    ip: std::net::IpAddr,
    tls: Option<TlsAcceptor>,
    gate: &Gate,
    shutdown: watch::Receiver<bool>,
) {
    match tls {
        None => read_frames(stream, ip, gate, shutdown).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => read_frames(s, ip, gate, shutdown).await,
            Ok(Err(e)) => {
                super::add(&gate.counters().syslog_tls_failures);
                tracing::debug!(sender = %ip, error = %e, "syslog TLS handshake failed");
            }
            Err(_) => {
                super::add(&gate.counters().syslog_tls_failures);
                tracing::debug!(sender = %ip, "syslog TLS handshake timed out");
            }
        },
    }
}

async fn read_frames(
    mut s: impl AsyncRead + Unpin,
    ip: std::net::IpAddr,
    gate: &Gate,
    shutdown: watch::Receiver<bool>,
) {
    let mut framer = frame::Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames = Vec::new();
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        let n = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, s.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
            _ = &mut stop => return,
        };
        framer.push(&buf[..n], &mut frames);
        for f in frames.drain(..) {
            gate.deliver(ip, f);
        }
    }
    framer.finish(&mut frames);
    for f in frames.drain(..) {
        gate.deliver(ip, f);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
    };
    use rustls::ClientConfig;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::host::HostCounters;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = p.self_signed(&key).unwrap().pem();
        let issuer = Issuer::from_ca_cert_pem(&pem, key).unwrap();
        Ca { pem, issuer }
    }

    fn leaf(ca: &Ca, server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        (p.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
    }

    async fn send(addr: SocketAddr, ca_pem: &str, client: Option<(String, String)>, data: &[u8]) -> bool {
        use canhgac_proto::client::{parse_certs, parse_key, provider};
        let mut roots = RootCertStore::empty();
        for c in parse_certs(ca_pem, "ca").unwrap() {
            roots.add(c).unwrap();
        }
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = match client {
            Some((cert, key)) => b
                .with_client_auth_cert(parse_certs(&cert, "c").unwrap(), parse_key(&key, "k").unwrap())
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let Ok(mut s) = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await else {
            return false;
        };
        // TLS 1.3: a refused client certificate shows on the first read or write
        if s.write_all(data).await.is_err() || s.shutdown().await.is_err() {
            return false;
        }
        let mut rest = Vec::new();
        // the server closes without close_notify: an unexpected end is a
        // normal close here, a TLS alert (unknown CA, certificate
        // required) is a refusal
        match s.read_to_end(&mut rest).await {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::UnexpectedEof,
        }
    }

    /// TLS with client certificates: a client with a certificate of the
    /// configured CA is served (octet counting and newline framing); one
    /// without, or with another CA's, is refused and counted.
    #[tokio::test]
    async fn tls_requires_client_certificates_of_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, client_ca, other_ca) = (ca(), ca(), ca());
        let (cert, key) = leaf(&server_ca, true);
        let w = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let cfg = SyslogConfig {
            udp: None,
            tcp: None,
            tls: Some("127.0.0.1:0".parse().unwrap()),
            tls_cert: Some(w("cert.pem", &cert)),
            tls_key: Some(w("key.pem", &key)),
            tls_client_ca: Some(w("clients.pem", &client_ca.pem)),
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let listeners = bind(&cfg).await.unwrap();
        let addr = listeners.addrs().2.unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let counters = Arc::new(HostCounters::default());
        let gate = Arc::new(Gate::new(Arc::new(cfg), counters.clone(), tx));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = serve(listeners, gate, stop_rx);

        let good = leaf(&client_ca, false);
        assert!(send(addr, &server_ca.pem, Some(good), b"5 hello<13>Dec  6 10:00:00 h p[1]: second\n").await);
        let mut got = Vec::new();
        for _ in 0..100 {
            while let Ok(m) = rx.try_recv() {
                got.push(String::from_utf8(m.data).unwrap());
            }
            if got.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(got, ["hello", "<13>Dec  6 10:00:00 h p[1]: second"]);
        assert!(!send(addr, &server_ca.pem, None, b"5 nocrt\n").await);
        assert!(!send(addr, &server_ca.pem, Some(leaf(&other_ca, false)), b"5 other\n").await);
        for _ in 0..100 {
            if counters.syslog_tls_failures.load(Relaxed) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(counters.syslog_tls_failures.load(Relaxed), 2);
        assert!(rx.try_recv().is_err(), "nothing from the refused clients");
        stop_tx.send_replace(true);
        while tasks.join_next().await.is_some() {}
    }
}
