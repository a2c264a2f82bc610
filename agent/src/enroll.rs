//! `canhgac-agent enroll`: trade a one-time token for an identity.

use std::{path::Path, time::Duration};

use canhgac_proto::{
    client::{ClientError, CollectorAddr, ServerTrust, TlsClient, error_chain},
    identity::Identity,
    timefmt,
    v1::{EnrollRequest, enrollment_client::EnrollmentClient},
};
use time::OffsetDateTime;

use crate::state::{AgentIdentity, IdentityFile, StateError, is_enrolled};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0} is already enrolled; pass --force to discard that identity and enroll again")]
    AlreadyEnrolled(std::path::PathBuf),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the collector refused enrollment: {0}")]
    Refused(String),
    #[error("the collector sent an invalid response: {0}")]
    BadResponse(String),
    #[error("cannot create a key: {0}")]
    Key(#[from] rcgen::Error),
    #[error(transparent)]
    State(#[from] StateError),
}

pub struct EnrollOptions<'a> {
    pub collector: &'a str,
    pub token: &'a str,
    pub ca_pin: &'a str,
    pub state_dir: &'a Path,
    pub expected_agency: Option<&'a str>,
    pub force: bool,
}

pub use canhgac_proto::client::key_and_csr;

pub async fn enroll(opts: EnrollOptions<'_>) -> Result<IdentityFile, EnrollError> {
    if is_enrolled(opts.state_dir) && !opts.force {
        return Err(EnrollError::AlreadyEnrolled(opts.state_dir.to_path_buf()));
    }
    let addr: CollectorAddr = opts.collector.parse()?;
    let pin = canhgac_proto::normalize_pin(opts.ca_pin)
        .ok_or_else(|| ClientError::BadPin(opts.ca_pin.to_string()))?;
    let client = TlsClient::new(addr.clone(), ServerTrust::Pin(pin.clone()), None)?;
    let channel = client.connect(Duration::from_secs(15)).await?;
    let hostname = crate::inventory::hostname();
    let (key, csr) = key_and_csr(&hostname)?;
    let response = EnrollmentClient::new(channel)
        .enroll(EnrollRequest {
            token: opts.token.trim().to_string(),
            csr_pem: csr,
            hostname,
            agent_version: crate::AGENT_VERSION.to_string(),
            expected_agency: opts.expected_agency.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|s| {
            if s.message().is_empty() {
                EnrollError::Refused(error_chain(&s))
            } else {
                EnrollError::Refused(s.message().to_string())
            }
        })?
        .into_inner();

    // Check what we got before writing anything.
    let ca = canhgac_proto::client::parse_certs(&response.ca_chain_pem, "CA chain")
        .map_err(|e| EnrollError::BadResponse(e.to_string()))?;
    if !ca.iter().any(|c| canhgac_proto::cert_pin(c) == pin) {
        return Err(EnrollError::BadResponse("the CA chain does not contain the pinned CA".into()));
    }
    let cert = canhgac_proto::client::parse_certs(&response.certificate_pem, "agent certificate")
        .map_err(|e| EnrollError::BadResponse(e.to_string()))?;
    match Identity::from_cert_der(&cert[0]) {
        Ok(Identity::Agent(id)) if id == response.agent_id => {}
        other => {
            return Err(EnrollError::BadResponse(format!(
                "certificate identity {other:?} does not match agent id {}",
                response.agent_id
            )));
        }
    }
    let file = IdentityFile {
        version: 1,
        agent_id: response.agent_id,
        agency: response.agency,
        collector: addr.to_string(),
        enrolled_at: timefmt::rfc3339(OffsetDateTime::now_utc()),
    };
    AgentIdentity::save_new(
        opts.state_dir,
        &file,
        &key.serialize_pem(),
        &response.certificate_pem,
        &response.ca_chain_pem,
    )?;
    Ok(file)
}
