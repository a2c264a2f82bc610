//! `canhgac-collector init` and `ca-pin`.

use std::path::{Path, PathBuf};

use canhgac_proto::{client::CollectorAddr, profile::Profile};
use time::OffsetDateTime;

use crate::pki::{Ca, PkiError, PkiPaths};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("at least one --server-name is required")]
    NoServerName,
    #[error("invalid --address: {0}")]
    BadAddress(#[from] canhgac_proto::client::ClientError),
    #[error("the host of --address (`{0}`) must be one of the --server-name values")]
    AddressNotNamed(String),
}

pub struct InitOutcome {
    pub pin: String,
    pub profile: PathBuf,
    pub address: CollectorAddr,
}

/// Creates the CA, the server certificate and the first operator profile
/// (`admin`) under `data_dir`. Refuses to touch an existing CA.
pub fn init(
    data_dir: &Path,
    server_names: &[String],
    address: Option<&str>,
) -> Result<InitOutcome, InitError> {
    if server_names.is_empty() {
        return Err(InitError::NoServerName);
    }
    let address: CollectorAddr = match address {
        Some(a) => a.parse()?,
        None => format!("https://{}:{}", server_names[0], canhgac_proto::DEFAULT_PORT).parse()?,
    };
    if !server_names.iter().any(|n| n == &address.host) {
        return Err(InitError::AddressNotNamed(address.host.clone()));
    }
    let paths = PkiPaths::new(data_dir);
    let now = OffsetDateTime::now_utc();
    let ca = Ca::create(&paths, now)?;
    ca.issue_server(&paths, server_names, now)?;
    let op = ca.issue_operator("admin", now)?;
    let profile = Profile {
        version: 1,
        collector: address.to_string(),
        operator: "admin".into(),
        ca: ca.cert_pem().to_string(),
        certificate: op.issued.certificate_pem,
        private_key: op.private_key_pem,
        display: None,
    };
    let profile_path = data_dir.join("operator.profile");
    profile.write(&profile_path).map_err(|source| PkiError::Io {
        action: "write",
        path: profile_path.clone(),
        source,
    })?;
    Ok(InitOutcome { pin: ca.pin(), profile: profile_path, address })
}

pub fn ca_pin(data_dir: &Path) -> Result<String, PkiError> {
    Ok(Ca::load(&PkiPaths::new(data_dir))?.pin())
}
