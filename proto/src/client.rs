//! Mutual-TLS client transport to a collector.
//!
//! Used by the agent (telemetry, enrollment) and by the operator command
//! line. TLS 1.3 only, ALPN `h2`, ring as the only crypto provider. Two ways
//! to trust the collector:
//!
//! * [`ServerTrust::Ca`]: the collector CA certificate (normal operation);
//! * [`ServerTrust::Pin`]: the SHA-256 of the collector CA certificate, for
//!   enrollment, when the agent has nothing but the pin printed by
//!   `canhgac-collector init`. The collector sends its CA in the chain; the
//!   chain is accepted only if a certificate in it hashes to the pin and the
//!   server certificate verifies against that CA for the expected name.

use std::{
    fmt, io,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, UnixTime,
    pem::{self, PemObject},
};
use tonic::transport::{Channel, Endpoint};

/// Where the collector listens: `https://HOST:PORT` (port defaults to 7443).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorAddr {
    pub host: String,
    pub port: u16,
}

impl CollectorAddr {
    /// The name the collector's certificate must carry.
    pub fn server_name(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for CollectorAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for CollectorAddr {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ClientError::BadAddress(s.to_string());
        let rest = s.trim();
        let rest = match rest.split_once("://") {
            Some(("https", rest)) => rest,
            Some(_) => return Err(bad()),
            None => rest,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => crate::DEFAULT_PORT,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().map_err(|_| bad())?),
                Some(_) => return Err(bad()),
                None => (rest.to_string(), crate::DEFAULT_PORT),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(CollectorAddr { host, port })
    }
}

/// How the client decides to trust the collector.
pub enum ServerTrust {
    /// PEM of the collector CA certificate(s).
    Ca(String),
    /// SHA-256 (hex) of the collector CA certificate.
    Pin(String),
}

/// A client certificate chain and its private key, PEM.
pub struct ClientIdentity {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid collector address `{0}` (expected https://HOST:PORT)")]
    BadAddress(String),
    #[error("invalid CA pin `{0}` (expected 64 hex digits)")]
    BadPin(String),
    #[error("invalid PEM in {what}: {reason}")]
    BadPem { what: &'static str, reason: String },
    #[error("no certificate found in {0}")]
    NoCertificate(&'static str),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid server name `{0}`")]
    BadServerName(String),
    #[error(
        "the collector's CA does not match the pin: expected {expected}, collector presented {presented}"
    )]
    PinMismatch { expected: String, presented: String },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

/// The provider every TLS configuration of this project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn parse_certs(pem_text: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| ClientError::BadPem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(ClientError::NoCertificate(what));
    }
    Ok(certs)
}

pub fn parse_key(pem_text: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, ClientError> {
    PrivateKeyDer::from_pem_slice(pem_text.as_bytes())
        .map_err(|e| ClientError::BadPem { what, reason: e.to_string() })
}

/// A prepared client: TLS configuration plus where to connect.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    addr: CollectorAddr,
    server_name: ServerName<'static>,
    pinned: Option<Arc<PinnedCaVerifier>>,
}

impl TlsClient {
    pub fn new(
        addr: CollectorAddr,
        trust: ServerTrust,
        identity: Option<ClientIdentity>,
    ) -> Result<TlsClient, ClientError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut pinned = None;
        let builder = match trust {
            ServerTrust::Ca(pem_text) => {
                let mut roots = RootCertStore::empty();
                for cert in parse_certs(&pem_text, "collector CA")? {
                    roots.add(cert)?;
                }
                builder.with_root_certificates(roots)
            }
            ServerTrust::Pin(pin) => {
                let pin = crate::normalize_pin(&pin).ok_or(ClientError::BadPin(pin))?;
                let verifier = Arc::new(PinnedCaVerifier {
                    pin,
                    provider: provider.clone(),
                    presented: Mutex::new(None),
                });
                pinned = Some(verifier.clone());
                builder.dangerous().with_custom_certificate_verifier(verifier)
            }
        };
        let mut config = match identity {
            Some(id) => builder.with_client_auth_cert(
                parse_certs(&id.certificate_pem, "client certificate")?,
                parse_key(&id.private_key_pem, "client private key")?,
            )?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = ServerName::try_from(addr.server_name().to_string())
            .map_err(|_| ClientError::BadServerName(addr.server_name().to_string()))?;
        Ok(TlsClient { config: Arc::new(config), addr, server_name, pinned })
    }

    pub fn addr(&self) -> &CollectorAddr {
        &self.addr
    }

    /// Opens an HTTP/2 channel over TLS. Under TLS 1.3 a client certificate
    /// the collector refuses shows only at the first RPC.
    pub async fn connect(&self, timeout: Duration) -> Result<Channel, ClientError> {
        let config = self.config.clone();
        let server_name = self.server_name.clone();
        let (host, port) = (self.addr.host.clone(), self.addr.port);
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let config = config.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        });
        // The URI only feeds the :authority header; TLS is done above.
        let authority = if self.addr.host.contains(':') {
            format!("http://[{}]:{}", self.addr.host, self.addr.port)
        } else {
            format!("http://{}:{}", self.addr.host, self.addr.port)
        };
        let endpoint = Endpoint::from_shared(authority)
            .map_err(|_| ClientError::BadAddress(self.addr.to_string()))?
            .connect_timeout(timeout)
            .timeout(Duration::from_secs(300))
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let result = tokio::time::timeout(timeout, endpoint.connect_with_connector(connector)).await;
        match result {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(self.explain(error_chain(&e))),
            Err(_) => Err(self.explain(format!("timed out after {timeout:?}"))),
        }
    }

    fn explain(&self, reason: String) -> ClientError {
        if let Some(pinned) = &self.pinned
            && let Ok(presented) = pinned.presented.lock()
            && let Some(presented) = presented.as_ref()
            && *presented != pinned.pin
        {
            return ClientError::PinMismatch { expected: pinned.pin.clone(), presented: presented.clone() };
        }
        ClientError::Connect { addr: self.addr.to_string(), reason }
    }
}

/// Joins an error and its sources: "a: b: c".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Trusts a server chain that contains the pinned CA and verifies against it.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    /// Pin of the last CA-looking certificate the server presented, for the
    /// error message.
    presented: Mutex<Option<String>>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| crate::cert_pin(c) == self.pin);
        let Some(ca) = ca else {
            if let Ok(mut p) = self.presented.lock() {
                *p = intermediates.last().map(|c| crate::cert_pin(c));
                if p.is_none() {
                    *p = Some(String::from("(no CA certificate in the chain)"));
                }
            }
            return Err(rustls::Error::General("collector CA does not match the pin".into()));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| String::from("unknown"))
}

/// A fresh P-256 key and a certificate request for it naming `hostname`
/// (the signer chooses subject, names and validity; only the key counts):
/// what an agent or a downstream collector sends to enroll or renew.
pub fn key_and_csr(hostname: &str) -> Result<(rcgen::KeyPair, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let a: CollectorAddr = "https://soc.example.vn:8443".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("soc.example.vn", 8443));
        let a: CollectorAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(a.port, crate::DEFAULT_PORT);
        let a: CollectorAddr = "https://[::1]:9000/".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9000));
        assert_eq!(a.to_string(), "https://[::1]:9000");
        for bad in ["http://x:1", "https://", "x:0", "x:99999", "https://x/path", "::1:80"] {
            assert!(bad.parse::<CollectorAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pin_normalisation() {
        let pin = "AB:".repeat(31) + "AB";
        assert_eq!(crate::normalize_pin(&pin), Some("ab".repeat(32)));
        assert_eq!(crate::normalize_pin("abc"), None);
    }
}
