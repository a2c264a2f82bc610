//! `Operator`: the API behind the `canhgac` command line.

use std::{pin::Pin, sync::Arc, time::Duration};

use base64::Engine as _;
use canhgac_proto::{
    identity::Identity,
    timefmt,
    v1::{
        AddAgencyRequest, Agency, AgentInfo, CreateEnrollmentTokenRequest, CreateEnrollmentTokenResponse,
        ListAgenciesRequest, ListAgenciesResponse, ListAgentsRequest, ListAgentsResponse, ListAlertsRequest,
        ListAlertsResponse, RevokeAgentRequest, RevokeAgentResponse, StoredAlert, SubscribeAlertsRequest,
        operator_server::Operator,
    },
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::{
    auth,
    error::{ApiError, join_error},
    server::Shared,
    store::{AgencyRec, AgentRec, AlertQuery, PageKey, RecordRec, TokenRec, records::RECORD_VERSION},
};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;

pub struct OperatorService {
    shared: Arc<Shared>,
}

impl OperatorService {
    pub fn new(shared: Arc<Shared>) -> OperatorService {
        OperatorService { shared }
    }
}

/// Agency codes: what departments use today (`SO-TTTT`, `UBND.HBT`, ...).
pub fn valid_agency_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && code.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    (us != 0).then(|| timefmt::to_timestamp(timefmt::from_micros(us)))
}

fn agency_msg(a: AgencyRec) -> Agency {
    Agency { code: a.code, name: a.name, created: ts(a.created_us) }
}

fn agent_info(a: AgentRec, connected: bool) -> AgentInfo {
    AgentInfo {
        agent_id: a.agent_id,
        agency: a.agency,
        hostname: a.hostname,
        agent_version: a.agent_version,
        inventory: a.inventory,
        enrolled: ts(a.enrolled_us),
        first_seen: ts(a.first_seen_us),
        last_seen: ts(a.last_seen_us),
        connected,
        revoked: a.revoked_us != 0,
        certificate_not_after: ts(a.cert_not_after_us),
        counters: a.counters,
        records_stored: a.records_stored,
        records_duplicate: a.records_duplicate,
        records_invalid: a.records_invalid,
        batches_rejected: a.batches_rejected,
        highest_seq: a.highest_seq,
    }
}

pub fn stored_alert(cursor: u64, r: RecordRec) -> StoredAlert {
    StoredAlert {
        cursor,
        agent_id: r.agent_id,
        agency: r.agency,
        severity: r.severity,
        time: ts(r.time_us),
        received: ts(r.received_us),
        eve_json: r.eve_json,
        seq: r.seq,
    }
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<StoredAlert, Status>> + Send>>;

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn add_agency(&self, req: Request<AddAgencyRequest>) -> Result<Response<Agency>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        if !valid_agency_code(&r.code) {
            return Err(ApiError::InvalidArgument(format!(
                "invalid agency code `{}`: 1-32 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
                r.code
            ))
            .into());
        }
        let name = r.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(
                ApiError::InvalidArgument("agency name must be 1-200 printable characters".into()).into()
            );
        }
        let rec = self.shared.store.add_agency(AgencyRec {
            version: RECORD_VERSION,
            code: r.code,
            name: name.to_string(),
            created_us: timefmt::micros(OffsetDateTime::now_utc()),
            created_by: who.name.clone(),
        })?;
        self.shared.store.flush().await?;
        tracing::info!(operator = %who.name, code = %rec.code, "agency added");
        Ok(Response::new(agency_msg(rec)))
    }

    async fn list_agencies(
        &self,
        req: Request<ListAgenciesRequest>,
    ) -> Result<Response<ListAgenciesResponse>, Status> {
        auth::operator(&req)?;
        let agencies = self.shared.store.agencies()?.into_iter().map(agency_msg).collect();
        Ok(Response::new(ListAgenciesResponse { agencies }))
    }

    async fn create_enrollment_token(
        &self,
        req: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let cfg = &self.shared.config;
        if self.shared.store.agency(&r.agency)?.is_none() {
            return Err(ApiError::NotFound(format!("agency `{}` not found", r.agency)).into());
        }
        let ttl = match r.ttl_seconds {
            0 => cfg.enrollment_token_ttl,
            s => Duration::from_secs(s),
        };
        if ttl > cfg.max_enrollment_token_ttl {
            return Err(ApiError::InvalidArgument(format!(
                "token validity {} exceeds the maximum of {}",
                humantime::format_duration(ttl),
                humantime::format_duration(cfg.max_enrollment_token_ttl)
            ))
            .into());
        }
        let token = format!(
            "cgt_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
        );
        let now = OffsetDateTime::now_utc();
        let expires = now + ttl;
        self.shared.store.add_token(
            &token,
            TokenRec {
                version: RECORD_VERSION,
                agency: r.agency.clone(),
                created_us: timefmt::micros(now),
                expires_us: timefmt::micros(expires),
                created_by: who.name.clone(),
                ..Default::default()
            },
        )?;
        self.shared.store.flush().await?;
        tracing::info!(operator = %who.name, agency = %r.agency, expires = %timefmt::rfc3339(expires), "enrollment token created");
        Ok(Response::new(CreateEnrollmentTokenResponse {
            token,
            agency: r.agency,
            expires: Some(timefmt::to_timestamp(expires)),
        }))
    }

    async fn list_agents(
        &self,
        req: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        auth::operator(&req)?;
        let r = req.into_inner();
        let agents = self
            .shared
            .store
            .agents()?
            .into_iter()
            .filter(|a| r.agency.is_empty() || a.agency == r.agency)
            .map(|a| {
                let connected = self.shared.streams.is_connected(&a.agent_id);
                agent_info(a, connected)
            })
            .collect();
        Ok(Response::new(ListAgentsResponse { agents }))
    }

    async fn revoke_agent(
        &self,
        req: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let now = timefmt::micros(OffsetDateTime::now_utc());
        let reason = crate::service::clean_text(&r.reason, 500);
        let updated = self.shared.store.update_agent(&r.agent_id, |a| {
            if a.revoked_us == 0 {
                a.revoked_us = now;
                a.revoke_reason = reason.clone();
            }
        })?;
        if updated.is_none() {
            return Err(ApiError::NotFound(format!("agent `{}` not found", r.agent_id)).into());
        }
        self.shared.store.flush().await?;
        self.shared.revoked.insert(Identity::Agent(r.agent_id.clone()));
        let closed = self.shared.streams.close(&r.agent_id);
        tracing::warn!(operator = %who.name, agent_id = %r.agent_id, streams_closed = closed, "agent revoked");
        Ok(Response::new(RevokeAgentResponse { streams_closed: closed as u32 }))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        auth::operator(&req)?;
        let r = req.into_inner();
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(
                PageKey::decode(t)
                    .ok_or_else(|| ApiError::InvalidArgument(format!("invalid page_token `{t}`")))?,
            ),
        };
        if r.min_severity > 4 {
            return Err(
                ApiError::InvalidArgument(format!("min_severity {} is not in 1..4", r.min_severity)).into()
            );
        }
        let q = AlertQuery {
            agency: (!r.agency.is_empty()).then_some(r.agency),
            max_severity: (r.min_severity != 0).then_some(r.min_severity),
            since_us: r.since.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
            until_us: r.until.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
            limit: match r.limit as usize {
                0 => DEFAULT_PAGE,
                n => n.min(MAX_PAGE),
            },
            after,
        };
        let store = self.shared.store.clone();
        let (page, next) =
            tokio::task::spawn_blocking(move || store.list_alerts(&q)).await.map_err(join_error)??;
        Ok(Response::new(ListAlertsResponse {
            alerts: page.into_iter().map(|(c, r)| stored_alert(c, r)).collect(),
            next_page_token: next.map(|k| k.encode()).unwrap_or_default(),
        }))
    }

    type SubscribeAlertsStream = AlertStream;

    async fn subscribe_alerts(
        &self,
        req: Request<SubscribeAlertsRequest>,
    ) -> Result<Response<Self::SubscribeAlertsStream>, Status> {
        auth::operator(&req)?;
        let r = req.into_inner();
        let store = self.shared.store.clone();
        let mut committed = store.alert_cursor();
        let mut cursor = match r.after_cursor {
            Some(c) => c,
            None => *committed.borrow_and_update(),
        };
        let mut shutdown = self.shared.shutdown.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                committed.borrow_and_update();
                let s = store.clone();
                let batch = match tokio::task::spawn_blocking(move || s.alerts_after(cursor, 512)).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(join_error(e))).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        changed = committed.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                        _ = crate::registry::until_true(&mut shutdown) => {
                            let _ = tx.send(Err(Status::unavailable("collector is shutting down"))).await;
                            return;
                        }
                    }
                    continue;
                }
                for (c, rec) in batch {
                    cursor = c;
                    if (!r.agency.is_empty() && rec.agency != r.agency)
                        || (r.min_severity != 0 && rec.severity > r.min_severity)
                    {
                        continue;
                    }
                    if tx.send(Ok(stored_alert(c, rec))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_codes() {
        for ok in ["SO-TTTT", "UBND.HBT", "a", "A_1"] {
            assert!(valid_agency_code(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "ấp", &"x".repeat(33)] {
            assert!(!valid_agency_code(bad), "{bad}");
        }
    }
}
