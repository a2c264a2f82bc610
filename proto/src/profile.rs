//! Operator profiles: what the `canhgac` command line needs to reach a
//! collector as a given operator.
//!
//! A profile is a TOML file (mode 0600, it holds a private key):
//!
//! ```toml
//! version = 1
//! collector = "https://soc.example.gov.vn:7443"
//! operator = "admin"
//! ca = """-----BEGIN CERTIFICATE-----..."""
//! certificate = """-----BEGIN CERTIFICATE-----..."""
//! private_key = """-----BEGIN PRIVATE KEY-----..."""
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    client::{ClientError, ClientIdentity, CollectorAddr, ServerTrust, TlsClient},
    conf::{ConfigError, Source},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub version: u32,
    /// `https://HOST:PORT`; HOST must be one of the collector's server names.
    pub collector: String,
    pub operator: String,
    pub ca: String,
    pub certificate: String,
    pub private_key: String,
    /// How `canhgac` shows things to this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplaySettings>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplaySettings {
    /// Offset of the times shown, e.g. `+07:00` (the default) or `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ConfigError> {
        let src = Source::read(path)?;
        let p: Profile = src.parse()?;
        if p.version != 1 {
            return Err(src.error(Some("version"), format!("unsupported profile version {}", p.version)));
        }
        if let Err(e) = p.collector.parse::<CollectorAddr>() {
            return Err(src.error(Some("collector"), e.to_string()));
        }
        if let Some(tz) = p.display.as_ref().and_then(|d| d.timezone.as_deref())
            && let Err(e) = crate::timefmt::parse_offset(tz)
        {
            return Err(src.error(Some("display.timezone"), e));
        }
        Ok(p)
    }

    /// Writes the profile (mode 0600: it holds a private key).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "# canhgac operator profile for `{}`. It holds a private key: keep it secret.\n{}",
            self.operator,
            toml::to_string(self).unwrap_or_default()
        );
        crate::files::write_atomic(path, text.as_bytes(), 0o600)
    }

    /// A TLS client for this profile, optionally to another address (for
    /// example when the collector listens on a port chosen at start-up).
    pub fn client(&self, collector: Option<&str>) -> Result<TlsClient, ClientError> {
        let addr: CollectorAddr = collector.unwrap_or(&self.collector).parse()?;
        TlsClient::new(
            addr,
            ServerTrust::Ca(self.ca.clone()),
            Some(ClientIdentity {
                certificate_pem: self.certificate.clone(),
                private_key_pem: self.private_key.clone(),
            }),
        )
    }
}
