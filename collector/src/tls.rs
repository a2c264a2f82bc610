//! Server side of mutual TLS: configuration, client-certificate checks
//! (chain, expiry, revocation) and the accept loop.
//!
//! The collector serves agents and operators on one port, TLS 1.3 only.
//! A client that presents a certificate must present a valid one from our
//! CA that is not revoked, or the handshake fails. A client without a
//! certificate completes the handshake but may only call
//! `Enrollment/Enroll` (enforced in [`crate::auth`]): enrollment is how an
//! agent obtains its first certificate.
//!
//! Every connection is handshaken in its own task with a timeout, so a
//! plain-TCP client, garbage or a stalled peer costs one task and never
//! blocks others.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use canhgac_proto::identity::Identity;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;

use crate::pki::PkiPaths;

/// Identities refused at the handshake. Shared by the verifier and the
/// operator API that revokes; long-lived streams [`Revoked::watch`] it.
#[derive(Debug)]
pub struct Revoked {
    ids: RwLock<HashSet<Identity>>,
    /// Bumped on every revocation.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Revoked {
    fn default() -> Self {
        Revoked { ids: RwLock::default(), generation: tokio::sync::watch::channel(0).0 }
    }
}

impl Revoked {
    pub fn insert(&self, id: Identity) {
        self.ids.write().unwrap_or_else(|p| p.into_inner()).insert(id);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn contains(&self, id: &Identity) -> bool {
        self.ids.read().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    /// Changes whenever an identity is revoked.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Handshake counters, reported in the log and to tests.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub accepted: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("invalid PEM: {0}")]
    Pem(#[from] canhgac_proto::client::ClientError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

fn read(path: &std::path::Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Builds the server configuration from the files under `DATA_DIR/pki`.
pub fn server_config(paths: &PkiPaths, revoked: Arc<Revoked>) -> Result<Arc<ServerConfig>, TlsError> {
    use canhgac_proto::client::{parse_certs, parse_key, provider};
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in parse_certs(&read(&paths.ca_cert())?, "CA certificate")? {
        roots.add(ca)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier = Arc::new(ClientVerifier { inner, revoked });
    let chain = parse_certs(&read(&paths.server_cert())?, "server certificate")?;
    let key = parse_key(&read(&paths.server_key())?, "server key")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The console's TLS: the collector's server certificate, TLS 1.2 and 1.3
/// (browsers), HTTP/2 or HTTP/1.1. With `revoked` (sign-in bound to the
/// operator's certificate) a client certificate of the collector's CA is
/// asked for and checked like the gRPC port's (chain, expiry, revocation);
/// a browser without one still gets the pages that say it is needed.
pub fn console_config(
    paths: &PkiPaths,
    revoked: Option<Arc<Revoked>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    use canhgac_proto::client::{parse_certs, parse_key, provider};
    let chain = parse_certs(&read(&paths.server_cert())?, "server certificate")?;
    let key = parse_key(&read(&paths.server_key())?, "server key")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut config = match revoked {
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        Some(revoked) => {
            let mut roots = RootCertStore::empty();
            for ca in parse_certs(&read(&paths.ca_cert())?, "CA certificate")? {
                roots.add(ca)?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder
                .with_client_cert_verifier(Arc::new(ClientVerifier { inner, revoked }))
                .with_single_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// WebPKI chain and expiry checks, then identity and revocation.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<Revoked>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let identity = Identity::from_cert_der(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if self.revoked.contains(&identity) {
            tracing::info!(%identity, "refused revoked certificate at handshake");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts TCP connections and yields those that complete the TLS
/// handshake within `timeout`. Failures are counted and logged, never
/// fatal. The stream ends when the listener fails for good.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    timeout: Duration,
    stats: Arc<TlsStats>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let out = tx.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        let _ = out.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        log_refused(peer, &e.to_string());
                    }
                    Err(_) => {
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        log_refused(peer, "handshake timed out");
                    }
                }
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

fn log_refused(peer: SocketAddr, reason: &str) {
    tracing::info!(%peer, reason, "refused connection at the TLS handshake");
}
