//! Identity conventions inside X.509 certificates.
//!
//! Every client certificate issued by a collector CA carries exactly one
//! subject alternative name of type URI:
//!
//! * `urn:canhgac:agent:<agent-id>` for agents (the id is a UUID chosen by
//!   the collector at enrollment);
//! * `urn:canhgac:operator:<name>` for operators (command line, integrations).
//!
//! Architecture invariant: the collector derives who is calling only from
//! this URI in the verified peer certificate, never from message fields.

use std::fmt;

const AGENT_PREFIX: &str = "urn:canhgac:agent:";
const OPERATOR_PREFIX: &str = "urn:canhgac:operator:";

/// Who a certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Agent(String),
    Operator(String),
}

impl Identity {
    /// The URI to put in the certificate's subject alternative name.
    pub fn uri(&self) -> String {
        match self {
            Identity::Agent(id) => format!("{AGENT_PREFIX}{id}"),
            Identity::Operator(name) => format!("{OPERATOR_PREFIX}{name}"),
        }
    }

    /// Parses a SAN URI; `None` for anything that is not ours.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        };
        if let Some(id) = uri.strip_prefix(AGENT_PREFIX) {
            return valid(id).then(|| Identity::Agent(id.to_string()));
        }
        if let Some(name) = uri.strip_prefix(OPERATOR_PREFIX) {
            return valid(name).then(|| Identity::Operator(name.to_string()));
        }
        None
    }

    /// Reads the identity from a DER certificate. The certificate must have
    /// exactly one canhgac URI; anything else is an error.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::BadCertificate)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::BadCertificate)?
            .ok_or(IdentityError::NoIdentity)?;
        let mut found = None;
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && let Some(id) = Identity::from_uri(uri)
            {
                if found.is_some() {
                    return Err(IdentityError::Ambiguous);
                }
                found = Some(id);
            }
        }
        found.ok_or(IdentityError::NoIdentity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent(id) => write!(f, "agent {id}"),
            Identity::Operator(name) => write!(f, "operator {name}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("certificate cannot be parsed")]
    BadCertificate,
    #[error("certificate carries no canhgac identity")]
    NoIdentity,
    #[error("certificate carries more than one canhgac identity")]
    Ambiguous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        for id in [
            Identity::Agent("0f7c2a9e-1b2c-4d5e-8f90-123456789abc".into()),
            Identity::Operator("admin".into()),
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
    }

    #[test]
    fn rejects_foreign_and_malformed_uris() {
        assert_eq!(Identity::from_uri("https://example.org"), None);
        assert_eq!(Identity::from_uri("urn:canhgac:agent:"), None);
        assert_eq!(Identity::from_uri("urn:canhgac:agent:a/b"), None);
        assert_eq!(Identity::from_uri("urn:canhgac:operator:x y"), None);
    }

    #[test]
    fn garbage_certificate_is_an_error() {
        assert_eq!(Identity::from_cert_der(b"not a certificate"), Err(IdentityError::BadCertificate));
    }
}
