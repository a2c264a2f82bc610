//! The collector's certificate authority.
//!
//! Layout of `DATA_DIR/pki/` (created by `canhgac-collector init`):
//!
//! | file          | mode | content                                         |
//! |---------------|------|-------------------------------------------------|
//! | `ca.crt`      | 0644 | CA certificate (ECDSA P-256, 10 years)          |
//! | `ca.key`      | 0600 | CA private key (PKCS#8 PEM)                      |
//! | `server.crt`  | 0644 | collector server certificate, then the CA        |
//! | `server.key`  | 0600 | its private key                                  |
//! | `server.names`| 0644 | the server names, one per line (for renewal)     |
//!
//! Every client certificate carries one identity URI (see
//! [`canhgac_proto::identity`]). Agent certificates are short-lived (30 days
//! by default) and renewed over the authenticated telemetry stream; operator
//! certificates last a year.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use canhgac_proto::identity::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
const SERVER_LIFETIME: Duration = Duration::from_secs(397 * 86_400);
/// The server certificate is re-issued at start-up when it expires sooner.
const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
pub const OPERATOR_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// How far `notBefore` lies before the moment of issue, so that a peer
/// whose clock is behind the collector's accepts a certificate issued just
/// now (the CA and server certificate right after `init`, an agent's own
/// after enrollment or renewal). A day covers a clock set to any time
/// zone's local time instead of UTC (offsets up to 14 hours), the usual
/// cause of skews of hours; public CAs backdate the same way (Let's
/// Encrypt by an hour). `notAfter` is counted from the moment of issue, so
/// no certificate lives longer for it.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} already holds a collector CA; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    #[error(
        "{0} holds no collector CA; run `canhgac-collector init --data-dir DIR --server-name NAME` first"
    )]
    NotInitialised(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid certificate signing request: {0}")]
    BadCsr(rcgen::Error),
    #[error("invalid server name `{0}`")]
    BadServerName(String),
    #[error("invalid identity name `{0}`")]
    BadIdentity(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PkiError + 'a {
    move |source| PkiError::Io { action, path: path.to_path_buf(), source }
}

/// Writes a file atomically with `mode` (see [`canhgac_proto::files`]).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    canhgac_proto::files::write_atomic(path, contents, mode).map_err(io_err("write", path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err("read", path))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    // Backdate for clock skew, but never by more than a tenth of the
    // lifetime (short test lifetimes would otherwise be mostly backdate).
    params.not_before = now - BACKDATE.min(lifetime / 10);
    params.not_after = now + lifetime;
}

/// Paths of the PKI files under a data directory.
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> PkiPaths {
        PkiPaths { dir: data_dir.join("pki") }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn server_names(&self) -> PathBuf {
        self.dir.join("server.names")
    }
}

/// The CA, loaded, able to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

/// A freshly issued certificate.
pub struct Issued {
    pub certificate_pem: String,
    pub not_after: OffsetDateTime,
    pub serial: String,
}

/// A certificate with its new private key (for operator profiles).
pub struct IssuedWithKey {
    pub issued: Issued,
    pub private_key_pem: String,
}

impl Ca {
    /// Creates a new CA under `paths`; refuses when one exists.
    pub fn create(paths: &PkiPaths, now: OffsetDateTime) -> Result<Ca, PkiError> {
        if paths.ca_key().exists() || paths.ca_cert().exists() {
            return Err(PkiError::AlreadyInitialised(paths.dir.clone()));
        }
        fs::create_dir_all(&paths.dir).map_err(io_err("create", &paths.dir))?;
        fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", &paths.dir))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "canhgac");
        dn.push(DnType::CommonName, "canhgac collector CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        validity(&mut params, now, CA_LIFETIME);
        let cert = params.self_signed(&key)?;
        write_file(&paths.ca_key(), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&paths.ca_cert(), cert.pem().as_bytes(), 0o644)?;
        Ca::load(paths)
    }

    pub fn load(paths: &PkiPaths) -> Result<Ca, PkiError> {
        if !paths.ca_key().exists() {
            return Err(PkiError::NotInitialised(paths.dir.clone()));
        }
        let cert_pem = read(&paths.ca_cert())?;
        let key = KeyPair::from_pem(&read(&paths.ca_key())?)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        let cert_der = canhgac_proto::client::parse_certs(&cert_pem, "CA certificate")
            .map_err(|_| PkiError::Rcgen(rcgen::Error::CouldNotParseCertificate))?
            .remove(0)
            .to_vec();
        Ok(Ca { issuer, cert_pem, cert_der })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the CA certificate, hex: what agents pin.
    pub fn pin(&self) -> String {
        canhgac_proto::cert_pin(&self.cert_der)
    }

    /// Issues the collector's server certificate for `names` and writes it.
    pub fn issue_server(
        &self,
        paths: &PkiPaths,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<(), PkiError> {
        let mut sans = Vec::new();
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    let valid = !name.is_empty()
                        && name.len() <= 253
                        && name.split('.').all(|l| {
                            !l.is_empty()
                                && l.len() <= 63
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !valid {
                        return Err(PkiError::BadServerName(name.clone()));
                    }
                    SanType::DnsName(
                        name.clone().try_into().map_err(|_| PkiError::BadServerName(name.clone()))?,
                    )
                }
            };
            sans.push(san);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "canhgac");
        dn.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, now, SERVER_LIFETIME);
        let cert = params.signed_by(&key, &self.issuer)?;
        // The chain carries the CA so that enrolling agents can check the pin.
        let chain = format!("{}{}", cert.pem(), self.cert_pem);
        write_file(&paths.server_key(), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&paths.server_cert(), chain.as_bytes(), 0o644)?;
        write_file(&paths.server_names(), (names.join("\n") + "\n").as_bytes(), 0o644)?;
        Ok(())
    }

    /// Re-issues the server certificate when it expires within 30 days.
    /// Returns whether it did.
    pub fn renew_server_if_needed(&self, paths: &PkiPaths, now: OffsetDateTime) -> Result<bool, PkiError> {
        let pem_text = read(&paths.server_cert())?;
        let der = canhgac_proto::client::parse_certs(&pem_text, "server certificate")
            .map_err(|_| PkiError::Rcgen(rcgen::Error::CouldNotParseCertificate))?;
        let not_after = x509_not_after(&der[0]).unwrap_or(now);
        if not_after - now > SERVER_RENEW_BEFORE {
            return Ok(false);
        }
        let names: Vec<String> = read(&paths.server_names())?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        self.issue_server(paths, &names, now)?;
        Ok(true)
    }

    fn client_params(
        &self,
        identity: &Identity,
        common_name: &str,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "canhgac");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            identity.uri().try_into().map_err(|_| PkiError::BadIdentity(identity.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, now, lifetime);
        Ok(params)
    }

    /// Signs an agent certificate for the public key of `csr_pem`. Subject,
    /// names and validity are ours; nothing else from the request is used.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent_id: &str,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
        let identity = Identity::Agent(agent_id.to_string());
        if Identity::from_uri(&identity.uri()).is_none() {
            return Err(PkiError::BadIdentity(agent_id.to_string()));
        }
        let params = self.client_params(&identity, agent_id, now, lifetime)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            not_after: params.not_after,
            serial: params.serial_number.map(|s| hex::encode(s.to_bytes())).unwrap_or_default(),
        })
    }

    /// Signs an operator certificate for the public key of `csr_pem`.
    pub fn sign_operator(&self, csr_pem: &str, name: &str, now: OffsetDateTime) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
        let identity = Identity::Operator(name.to_string());
        if Identity::from_uri(&identity.uri()).is_none() {
            return Err(PkiError::BadIdentity(name.to_string()));
        }
        let params = self.client_params(&identity, &format!("operator {name}"), now, OPERATOR_LIFETIME)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            not_after: params.not_after,
            serial: params.serial_number.map(|s| hex::encode(s.to_bytes())).unwrap_or_default(),
        })
    }

    /// Issues an operator certificate with a fresh key.
    pub fn issue_operator(&self, name: &str, now: OffsetDateTime) -> Result<IssuedWithKey, PkiError> {
        let identity = Identity::Operator(name.to_string());
        if Identity::from_uri(&identity.uri()).is_none() {
            return Err(PkiError::BadIdentity(name.to_string()));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = self.client_params(&identity, &format!("operator {name}"), now, OPERATOR_LIFETIME)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedWithKey {
            issued: Issued {
                certificate_pem: cert.pem(),
                not_after: params.not_after,
                serial: params.serial_number.map(|s| hex::encode(s.to_bytes())).unwrap_or_default(),
            },
            private_key_pem: key.serialize_pem(),
        })
    }
}

/// Expiry of a DER certificate.
pub fn x509_not_after(der: &[u8]) -> Option<OffsetDateTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        CertificateParams::new(vec![]).unwrap().serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn create_refuses_to_overwrite_and_signs_agents() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let now = OffsetDateTime::now_utc();
        let ca = Ca::create(&paths, now).unwrap();
        assert!(matches!(Ca::create(&paths, now), Err(PkiError::AlreadyInitialised(_))));
        let mode = fs::metadata(paths.ca_key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let issued = ca.sign_agent(&csr(), "a1b2", now, Duration::from_secs(3600)).unwrap();
        let der = canhgac_proto::client::parse_certs(&issued.certificate_pem, "t").unwrap();
        assert_eq!(Identity::from_cert_der(&der[0]).unwrap(), Identity::Agent("a1b2".into()));
        let not_after = x509_not_after(&der[0]).unwrap();
        assert!((not_after - (now + Duration::from_secs(3600))).abs() < time::Duration::seconds(2));
        assert_eq!(ca.pin(), Ca::load(&paths).unwrap().pin());
    }

    fn not_before(pem_text: &str) -> OffsetDateTime {
        let der = canhgac_proto::client::parse_certs(pem_text, "t").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
        OffsetDateTime::from_unix_timestamp(cert.validity().not_before.timestamp()).unwrap()
    }

    /// A peer whose clock is hours behind accepts what was issued now: CA,
    /// server and agent certificates start a day early (a tenth of a short
    /// lifetime at most) and end their lifetime after the moment of issue.
    #[test]
    fn certificates_are_backdated_a_day_for_clock_skew() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let now = OffsetDateTime::now_utc();
        let ca = Ca::create(&paths, now).unwrap();
        ca.issue_server(&paths, &["collector.example".to_string()], now).unwrap();
        let day = time::Duration::days(1);
        let near = |a: OffsetDateTime, b: OffsetDateTime| (a - b).abs() < time::Duration::seconds(2);
        assert!(near(not_before(ca.cert_pem()), now - day));
        assert!(near(not_before(&read(&paths.server_cert()).unwrap()), now - day));
        let agent = ca.sign_agent(&csr(), "a1b2", now, Duration::from_secs(30 * 86_400)).unwrap();
        assert!(near(not_before(&agent.certificate_pem), now - day));
        assert!(near(agent.not_after, now + time::Duration::days(30)));
        // a one-hour certificate is backdated six minutes, not a day
        let short = ca.sign_agent(&csr(), "a1b2", now, Duration::from_secs(3600)).unwrap();
        assert!(near(not_before(&short.certificate_pem), now - time::Duration::minutes(6)));
    }

    #[test]
    fn garbage_csr_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(&PkiPaths::new(dir.path()), OffsetDateTime::now_utc()).unwrap();
        let err = ca
            .sign_agent(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "x",
                OffsetDateTime::now_utc(),
                Duration::from_secs(1),
            )
            .err()
            .unwrap();
        assert!(matches!(err, PkiError::BadCsr(_)), "{err}");
    }

    #[test]
    fn server_names_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let ca = Ca::create(&paths, OffsetDateTime::now_utc()).unwrap();
        let err = ca.issue_server(&paths, &["bad name".into()], OffsetDateTime::now_utc());
        assert!(matches!(err, Err(PkiError::BadServerName(_))));
        ca.issue_server(&paths, &["soc.example.vn".into(), "10.0.0.1".into()], OffsetDateTime::now_utc())
            .unwrap();
        assert!(!ca.renew_server_if_needed(&paths, OffsetDateTime::now_utc()).unwrap());
        let later = OffsetDateTime::now_utc() + Duration::from_secs(390 * 86_400);
        assert!(ca.renew_server_if_needed(&paths, later).unwrap());
    }
}
