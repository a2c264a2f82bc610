//! The agent's identity on disk.
//!
//! `STATE_DIR` (mode 0700) holds:
//!
//! | file            | mode | content                                         |
//! |-----------------|------|-------------------------------------------------|
//! | `identity.toml` | 0644 | agent id, agency, collector address             |
//! | `agent.pem`     | 0600 | private key, then the agent certificate         |
//! | `ca.crt`        | 0644 | the collector CA (its SHA-256 is the pin)       |
//! | `spool/`        | 0700 | durable spool (sled), see [`crate::spool`]      |
//! | `policy/`       | 0700 | central policy pushed by the collector, see [`crate::policy`] |
//!
//! Key and certificate share one file so that a renewal replaces both with
//! one atomic rename: the agent never holds a key that does not match its
//! certificate, whatever moment it is killed at.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use canhgac_proto::client::{ClientIdentity, CollectorAddr, ServerTrust, TlsClient};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{dir} is not enrolled (no identity.toml); run `canhgac-agent enroll --state-dir {dir} ...` first", dir = .0.display())]
    NotEnrolled(PathBuf),
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io { action, path: path.to_path_buf(), source }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("chmod", dir))
}

/// Writes a file atomically with `mode` (see [`canhgac_proto::files`]).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StateError> {
    canhgac_proto::files::write_atomic(path, contents, mode).map_err(io("write", path))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    pub version: u32,
    pub agent_id: String,
    pub agency: String,
    /// `https://HOST:PORT` used at enrollment.
    pub collector: String,
    pub enrolled_at: String,
}

/// Everything needed to talk to the collector as this agent.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub dir: PathBuf,
    pub file: IdentityFile,
    pub credentials_pem: String,
    pub ca_pem: String,
}

pub struct Paths;

impl Paths {
    pub fn identity(dir: &Path) -> PathBuf {
        dir.join("identity.toml")
    }
    pub fn credentials(dir: &Path) -> PathBuf {
        dir.join("agent.pem")
    }
    pub fn ca(dir: &Path) -> PathBuf {
        dir.join("ca.crt")
    }
    pub fn spool(dir: &Path) -> PathBuf {
        dir.join("spool")
    }
}

pub fn is_enrolled(dir: &Path) -> bool {
    Paths::identity(dir).exists()
}

impl AgentIdentity {
    pub fn load(dir: &Path) -> Result<AgentIdentity, StateError> {
        let id_path = Paths::identity(dir);
        if !id_path.exists() {
            return Err(StateError::NotEnrolled(dir.to_path_buf()));
        }
        let text = fs::read_to_string(&id_path).map_err(io("read", &id_path))?;
        let file: IdentityFile = toml::from_str(&text)
            .map_err(|e| StateError::Invalid { path: id_path.clone(), reason: e.message().to_string() })?;
        let cred_path = Paths::credentials(dir);
        let credentials_pem = fs::read_to_string(&cred_path).map_err(io("read", &cred_path))?;
        let ca_path = Paths::ca(dir);
        let ca_pem = fs::read_to_string(&ca_path).map_err(io("read", &ca_path))?;
        Ok(AgentIdentity { dir: dir.to_path_buf(), file, credentials_pem, ca_pem })
    }

    /// Writes a new identity (enrollment).
    pub fn save_new(
        dir: &Path,
        file: &IdentityFile,
        private_key_pem: &str,
        certificate_pem: &str,
        ca_pem: &str,
    ) -> Result<(), StateError> {
        create_private_dir(dir)?;
        write_atomic(&Paths::ca(dir), ca_pem.as_bytes(), 0o644)?;
        write_atomic(
            &Paths::credentials(dir),
            format!("{private_key_pem}{certificate_pem}").as_bytes(),
            0o600,
        )?;
        let text = toml::to_string(file)
            .map_err(|e| StateError::Invalid { path: Paths::identity(dir), reason: e.to_string() })?;
        // identity.toml last: its presence means "enrolled".
        write_atomic(&Paths::identity(dir), text.as_bytes(), 0o644)
    }

    /// Replaces key and certificate after a renewal (one atomic rename).
    pub fn save_renewed(&mut self, private_key_pem: &str, certificate_pem: &str) -> Result<(), StateError> {
        let credentials = format!("{private_key_pem}{certificate_pem}");
        write_atomic(&Paths::credentials(&self.dir), credentials.as_bytes(), 0o600)?;
        self.credentials_pem = credentials;
        Ok(())
    }

    /// The certificate's validity, read from the certificate itself.
    pub fn certificate_validity(&self) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let certs = canhgac_proto::client::parse_certs(&self.credentials_pem, "agent certificate").ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
        let v = cert.validity();
        Some((
            OffsetDateTime::from_unix_timestamp(v.not_before.timestamp()).ok()?,
            OffsetDateTime::from_unix_timestamp(v.not_after.timestamp()).ok()?,
        ))
    }

    /// When to renew: when a third of the lifetime is left.
    pub fn renewal_due(&self) -> Option<OffsetDateTime> {
        self.certificate_validity().map(|(nb, na)| na - (na - nb) / 3)
    }

    pub fn needs_renewal(&self, now: OffsetDateTime) -> bool {
        self.renewal_due().is_none_or(|due| now >= due)
    }

    /// A TLS client to the collector, optionally at another address.
    pub fn client(&self, collector: Option<&str>) -> Result<TlsClient, canhgac_proto::client::ClientError> {
        let addr: CollectorAddr = collector.unwrap_or(&self.file.collector).parse()?;
        TlsClient::new(
            addr,
            ServerTrust::Ca(self.ca_pem.clone()),
            Some(ClientIdentity {
                certificate_pem: self.credentials_pem.clone(),
                private_key_pem: self.credentials_pem.clone(),
            }),
        )
    }
}
