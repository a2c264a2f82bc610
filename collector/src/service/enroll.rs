//! `Enrollment/Enroll`: one-time token + CSR → agent certificate.

use std::sync::Arc;

use canhgac_proto::{
    timefmt,
    v1::{EnrollRequest, EnrollResponse, enrollment_server::Enrollment},
};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{
    service::clean_text,
    store::{AgentRec, records::RECORD_VERSION, token_hash},
};

/// What enrollment needs, and nothing more.
pub struct EnrollmentDeps {
    pub store: crate::store::Store,
    pub ca: Arc<crate::pki::Ca>,
    pub config: EnrollmentConfig,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub struct EnrollmentConfig {
    pub agent_certificate_ttl: std::time::Duration,
}

pub struct EnrollmentService {
    deps: EnrollmentDeps,
}

impl EnrollmentService {
    pub fn new(deps: EnrollmentDeps) -> EnrollmentService {
        EnrollmentService { deps }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(&self, req: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let r = req.into_inner();
        if r.token.is_empty() || r.token.len() > 256 {
            return Err(crate::error::invalid("missing or oversized enrollment token"));
        }
        if r.csr_pem.len() > 16 * 1024 {
            return Err(crate::error::invalid("certificate signing request too large"));
        }
        let deps = &self.deps;
        let now = OffsetDateTime::now_utc();
        let now_us = timefmt::micros(now);
        let expected = (!r.expected_agency.is_empty()).then_some(r.expected_agency.as_str());
        // Check first so that a bad token costs no signature.
        let token = deps.store.check_token(&r.token, expected, now_us).inspect_err(|e| {
            deps.metrics.enrollment("refused");
            tracing::warn!(%peer, reason = %e, "enrollment refused");
        })?;
        let agent_id = uuid::Uuid::new_v4().to_string();
        let issued = deps.ca.sign_agent(&r.csr_pem, &agent_id, now, deps.config.agent_certificate_ttl)?;
        let rec = AgentRec {
            version: RECORD_VERSION,
            agent_id: agent_id.clone(),
            agency: token.agency.clone(),
            hostname: clean_text(&r.hostname, 255),
            agent_version: clean_text(&r.agent_version, 64),
            enrolled_us: now_us,
            cert_not_after_us: timefmt::micros(issued.not_after),
            cert_serial: issued.serial.clone(),
            enrolled_with_token: hex::encode(&token_hash(&r.token)[..6]),
            ..Default::default()
        };
        deps.store.enroll(&r.token, expected, now_us, rec).inspect_err(|e| {
            tracing::warn!(%peer, reason = %e, "enrollment refused");
        })?;
        deps.store.flush().await?;
        deps.metrics.enrollment("enrolled");
        tracing::info!(%agent_id, agency = %token.agency, hostname = %r.hostname, %peer, "agent enrolled");
        Ok(Response::new(EnrollResponse {
            agent_id,
            agency: token.agency,
            certificate_pem: issued.certificate_pem,
            ca_chain_pem: deps.ca.cert_pem().to_string(),
            not_after: Some(timefmt::to_timestamp(issued.not_after)),
        }))
    }
}
