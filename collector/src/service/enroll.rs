//! `Enrollment/Enroll`: one-time token + CSR → agent certificate.
//!
//! The port is open to anyone who can reach it, so failed attempts are
//! limited per source address: after `limits.enrollment_failures` refused
//! tokens within `limits.enrollment_failure_window`, further attempts from
//! that address (even with a good token) are refused with
//! `ResourceExhausted` until the oldest failure leaves the window; refusals
//! are logged and counted (`enrollments_total{outcome="rate_limited"}`).
//! Only failures count, so an agency enrolling a hundred servers at once
//! from behind one NAT address is never slowed down.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

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
    /// Replaced by a reload (SIGHUP).
    pub config: crate::config::Live<EnrollmentConfig>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub struct EnrollmentConfig {
    pub agent_certificate_ttl: std::time::Duration,
    /// Failed attempts from one address within `failure_window` before
    /// that address is refused.
    pub max_failures: usize,
    pub failure_window: Duration,
}

impl EnrollmentConfig {
    pub fn of(c: &crate::config::ServeConfig) -> EnrollmentConfig {
        EnrollmentConfig {
            agent_certificate_ttl: c.agent_certificate_ttl,
            max_failures: c.enrollment_failures,
            failure_window: c.enrollment_failure_window,
        }
    }
}

/// Sources remembered at most (the oldest are forgotten beyond).
const MAX_SOURCES: usize = 100_000;

/// Recent failed attempts per source address.
#[derive(Default)]
pub struct FailureLimiter {
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// How long `ip` must still wait, if it has failed too often.
    pub fn blocked(&self, ip: IpAddr, max: usize, window: Duration) -> Option<Duration> {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let q = m.get_mut(&ip)?;
        while q.front().is_some_and(|t| t.elapsed() >= window) {
            q.pop_front();
        }
        if q.is_empty() {
            m.remove(&ip);
            return None;
        }
        (q.len() >= max).then(|| q.front().map(|t| window.saturating_sub(t.elapsed())).unwrap_or_default())
    }

    pub fn failed(&self, ip: IpAddr, max: usize) {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_SOURCES && !m.contains_key(&ip) {
            // forget the source whose last failure is oldest
            if let Some(oldest) = m.iter().min_by_key(|(_, q)| q.back().copied()).map(|(k, _)| *k) {
                m.remove(&oldest);
            }
        }
        let q = m.entry(ip).or_default();
        q.push_back(Instant::now());
        while q.len() > max {
            q.pop_front();
        }
    }
}

pub struct EnrollmentService {
    deps: EnrollmentDeps,
    failures: FailureLimiter,
}

impl EnrollmentService {
    pub fn new(deps: EnrollmentDeps) -> EnrollmentService {
        EnrollmentService { deps, failures: FailureLimiter::default() }
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(&self, req: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        let source = req.remote_addr().map(|a| a.ip());
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let cfg = self.deps.config.get();
        let (max, window) = (cfg.max_failures, cfg.failure_window);
        if let Some(ip) = source
            && let Some(wait) = self.failures.blocked(ip, max, window)
        {
            self.deps.metrics.enrollment("rate_limited");
            tracing::warn!(%peer, "enrollment refused: too many failed attempts from this address");
            return Err(Status::resource_exhausted(format!(
                "too many failed enrollments from {ip}: retry in {} s",
                wait.as_secs() + 1
            )));
        }
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
            if let Some(ip) = source {
                self.failures.failed(ip, max);
            }
            deps.metrics.enrollment("refused");
            tracing::warn!(%peer, reason = %e, "enrollment refused");
        })?;
        let agent_id = uuid::Uuid::new_v4().to_string();
        let issued =
            deps.ca.sign_agent(&r.csr_pem, &agent_id, now, deps.config.get().agent_certificate_ttl)?;
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
            downstream: token.province,
            ..Default::default()
        };
        deps.store.enroll(&r.token, expected, now_us, rec).inspect_err(|e| {
            tracing::warn!(%peer, reason = %e, "enrollment refused");
        })?;
        deps.store.flush().await?;
        deps.metrics.enrollment("enrolled");
        if token.province {
            tracing::info!(%agent_id, province = %token.agency, hostname = %r.hostname, %peer, "downstream collector enrolled");
        } else {
            tracing::info!(%agent_id, agency = %token.agency, hostname = %r.hostname, %peer, "agent enrolled");
        }
        Ok(Response::new(EnrollResponse {
            agent_id,
            agency: token.agency,
            certificate_pem: issued.certificate_pem,
            ca_chain_pem: deps.ca.cert_pem().to_string(),
            not_after: Some(timefmt::to_timestamp(issued.not_after)),
        }))
    }
}
