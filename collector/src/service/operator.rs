//! `Operator`: the API behind the `canhgac` command line.

use std::{
    collections::{BTreeMap, HashMap},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use canhgac_proto::{identity::Identity, timefmt, v1::operator_server::Operator, v1::*};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::{
    auth::{self, OperatorCaller},
    directory,
    error::{ApiError, invalid, join_error},
    incident,
    store::{
        AgencyRec, AgentRec, AlertQuery, IncidentFilter, IncidentRec, OperatorRec, PageKey, PolicyRec,
        RecordRec, SystemRec, TokenRec, records::RECORD_VERSION,
    },
    supervise,
};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;

/// What the operator API needs. It is the widest service (it administers
/// everything), but it still sees no TLS statistics and no task handles.
pub struct OperatorDeps {
    pub store: crate::store::Store,
    pub ca: Arc<crate::pki::Ca>,
    /// Replaced by a reload (SIGHUP).
    pub config: crate::config::Live<OperatorConfig>,
    pub revoked: Arc<crate::tls::Revoked>,
    pub streams: Arc<crate::registry::StreamRegistry>,
    /// Bumped on every policy push.
    pub policy_changed: Arc<tokio::sync::watch::Sender<u64>>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Signs the audit head of every listing.
    pub audit_signer: Arc<crate::audit::Signer>,
}

/// The settings the operator API reads.
#[derive(Clone)]
pub struct OperatorConfig {
    pub regulation: Arc<crate::rules::Regulation>,
    pub agent_silence_limit: std::time::Duration,
    pub enrollment_token_ttl: std::time::Duration,
    pub max_enrollment_token_ttl: std::time::Duration,
    /// Where scheduled reports are kept, and the schedule.
    pub reports_dir: std::path::PathBuf,
    pub report_schedule: Vec<crate::report::schedule::Entry>,
}

impl OperatorConfig {
    pub fn of(c: &crate::config::ServeConfig) -> OperatorConfig {
        OperatorConfig {
            regulation: c.regulation.clone(),
            agent_silence_limit: c.agent_silence_limit,
            enrollment_token_ttl: c.enrollment_token_ttl,
            max_enrollment_token_ttl: c.max_enrollment_token_ttl,
            reports_dir: crate::report::schedule::dir(&c.data_dir),
            report_schedule: c.report_schedule.clone(),
        }
    }
}

pub struct OperatorService {
    deps: Arc<OperatorDeps>,
}

impl OperatorService {
    pub fn new(deps: OperatorDeps) -> OperatorService {
        OperatorService { deps: Arc::new(deps) }
    }
}

pub use crate::directory::valid_agency_code;

fn now_us() -> i64 {
    timefmt::micros(OffsetDateTime::now_utc())
}

fn not_found(m: impl Into<String>) -> Status {
    ApiError::NotFound(m.into()).into()
}

/// Runs blocking storage work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    (us != 0).then(|| timefmt::to_timestamp(timefmt::from_micros(us)))
}

fn agency_msg(a: AgencyRec, reg: &crate::rules::Regulation) -> Agency {
    let fields =
        directory::agency_row(&a, reg).into_iter().filter(|(k, _)| k != "code" && k != "name").collect();
    let kind = if a.is_province() { "province" } else { "agency" }.to_string();
    Agency { code: a.code, name: a.name, created: ts(a.created_us), fields, kind }
}

fn agent_info(a: AgentRec, connected: bool, online: bool) -> AgentInfo {
    AgentInfo {
        systems: a.systems.clone(),
        policy: a.policy.clone(),
        online,
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

pub fn stored_alert(reg: &crate::rules::Regulation, cursor: u64, r: RecordRec) -> StoredAlert {
    let facts = Some(incident::facts_of(reg, &r));
    StoredAlert {
        facts,
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

/// The checked name and kind of a new agency or province.
pub(crate) fn new_agency(r: &AddAgencyRequest) -> Result<(String, String), Status> {
    if !valid_agency_code(&r.code) {
        return Err(invalid(format!(
            "invalid agency code `{}`: 1-32 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            r.code
        )));
    }
    let name = r.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid("agency name must be 1-200 printable characters"));
    }
    let kind = match r.kind.as_str() {
        "" | "agency" => String::new(),
        crate::store::PROVINCE => crate::store::PROVINCE.to_string(),
        other => return Err(invalid(format!("unknown kind `{other}` (agency or province)"))),
    };
    Ok((name.to_string(), kind))
}

/// The addresses (`ip`, `src_ip`, `dest_ip`) of an alert listing, parsed,
/// once its category is checked.
pub(crate) fn alert_fields(
    r: &ListAlertsRequest,
    reg: &crate::rules::Regulation,
) -> Result<[Option<std::net::IpAddr>; 3], Status> {
    let ip = |field: &str, v: &str| -> Result<Option<std::net::IpAddr>, Status> {
        if v.is_empty() {
            return Ok(None);
        }
        v.trim().parse().map(Some).map_err(|_| invalid(format!("{field}: `{v}` is not an IP address")))
    };
    let addrs = [ip("ip", &r.ip)?, ip("src_ip", &r.src_ip)?, ip("dest_ip", &r.dest_ip)?];
    if !r.category.is_empty() && reg.category(&r.category).is_none() {
        return Err(invalid(format!(
            "category: unknown category `{}` (one of {})",
            r.category,
            reg.categories.iter().map(|c| c.code.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(addrs)
}

/// The ids of a bulk request: at least `min`, each once, at most 1000.
pub(crate) fn distinct_ids(ids: &[u64], min: usize) -> Result<Vec<u64>, Status> {
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(*id) {
            return Err(invalid(format!("incident {id} is named twice")));
        }
    }
    if ids.len() < min {
        return Err(invalid(format!("at least {min} incident id(s) needed")));
    }
    if ids.len() > 1000 {
        return Err(invalid("at most 1000 incidents at once"));
    }
    Ok(ids.to_vec())
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<StoredAlert, Status>> + Send>>;
type IncidentStream = Pin<Box<dyn Stream<Item = Result<IncidentChange, Status>> + Send>>;

fn system_msg(s: SystemRec, agents: Vec<String>, reg: &crate::rules::Regulation) -> System {
    let (due, overdue) = directory::system_next_assessment(&s, reg, directory::today());
    System {
        id: s.id,
        agency: s.agency,
        name: s.name,
        r#type: s.kind,
        level: s.level,
        dossier_status: s.dossier_status,
        decision_number: s.decision_number,
        decision_date: s.decision_date,
        state_secrets: s.state_secrets,
        public_ips: s.public_ips,
        domains: s.domains,
        networks: s.networks,
        last_assessment: s.last_assessment,
        next_assessment_due: directory::date_str(due),
        assessment_overdue: overdue,
        agents,
        created: ts(s.created_us),
        updated: ts(s.updated_us),
    }
}

fn field_error(e: directory::FieldError) -> Status {
    invalid(e.to_string())
}

pub(crate) fn page_id(token: &str, prefix: char) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(prefix)
        .and_then(|t| t.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| invalid(format!("invalid page_token `{token}`")))
}

fn policy_msg(p: PolicyRec, with_content: bool) -> Policy {
    Policy {
        version: p.policy_version,
        scope: p.scope,
        digest: p.digest,
        files: p
            .files
            .into_iter()
            .map(|mut f| {
                if !with_content {
                    f.content.clear();
                }
                f
            })
            .collect(),
        created: ts(p.created_us),
        created_by: p.created_by,
        delivered_to: 0,
        skipped_rules: Vec::new(),
    }
}

impl OperatorService {
    fn online(&self, a: &AgentRec, now: i64) -> bool {
        supervise::online(
            self.deps.streams.is_connected(&a.agent_id),
            a.last_seen_us,
            now,
            self.deps.config.get().agent_silence_limit,
        )
    }

    fn agents_by_system(&self) -> Result<HashMap<u64, Vec<String>>, Status> {
        let mut m: HashMap<u64, Vec<String>> = HashMap::new();
        for a in self.deps.store.agents()? {
            for s in &a.systems {
                m.entry(*s).or_default().push(a.agent_id.clone());
            }
        }
        Ok(m)
    }

    fn systems_map(&self) -> Result<HashMap<u64, SystemRec>, Status> {
        Ok(self.deps.store.systems()?.into_iter().map(|s| (s.id, s)).collect())
    }

    /// An incident's initial or completion notice, as `caller` may see it.
    /// The first completion report of a closed incident is a milestone,
    /// recorded in its history (not for an auditor, who changes nothing).
    async fn incident_notice(
        &self,
        who: &OperatorCaller,
        id: u64,
        kind: &str,
    ) -> Result<incident::Notice, Status> {
        let mut inc = self.visible_incident(who, id)?;
        if kind == "completion"
            && who.role != auth::Role::Auditor
            && inc.state == "closed"
            && inc.origin.is_none()
            && !inc.milestones_us.contains_key("completion_report")
        {
            let name = who.name.clone();
            let store = self.deps.store.clone();
            inc = blocking(move || {
                Ok(store
                    .update_incident(id, |i| {
                        let now = now_us();
                        i.milestones_us.entry("completion_report".into()).or_insert(now);
                        i.history.push(incident::event(now, &name, "report", "completion report generated"));
                        Ok::<_, String>(())
                    })?
                    .map_err(invalid)?
                    .unwrap_or_default())
            })
            .await?;
            self.deps.store.flush().await?;
        }
        let view = self.incident_view(&inc)?;
        let agency = self.deps.store.agency(&inc.agency)?;
        let system = self.deps.store.system(inc.system)?;
        incident::report(
            kind,
            &view,
            agency.as_ref(),
            system.as_ref(),
            &incident::ReportContext {
                reg: &self.deps.config.get().regulation,
                operator: &who.name,
                now_us: now_us(),
            },
        )
        .map_err(invalid)
    }

    fn incident_view(&self, inc: &IncidentRec) -> Result<Incident, Status> {
        let systems = self.systems_map()?;
        let v =
            incident::View { reg: &self.deps.config.get().regulation, systems: &systems, now_us: now_us() };
        Ok(incident::incident_msg(inc, &v))
    }

    /// Loads an incident the caller may see.
    fn visible_incident(&self, caller: &OperatorCaller, id: u64) -> Result<IncidentRec, Status> {
        caller.target(format!("incident {id}"));
        let inc =
            self.deps.store.incident(id)?.ok_or_else(|| not_found(format!("incident {id} not found")))?;
        caller.may_see(&inc.agency)?;
        Ok(inc)
    }

    /// Loads an incident the caller may see and this collector handles:
    /// a province's incident kept at an upstream collector is changed in
    /// the province, not here.
    fn local_incident(&self, caller: &OperatorCaller, id: u64) -> Result<IncidentRec, Status> {
        let inc = self.visible_incident(caller, id)?;
        if let Some(o) = &inc.origin {
            return Err(invalid(format!(
                "incident {id} is handled by province `{}` (its incident {}); change it there",
                inc.province, o.id
            )));
        }
        Ok(inc)
    }

    /// Applies an incident change made by `caller`; `f` may refuse.
    async fn change_incident(
        &self,
        caller: &OperatorCaller,
        id: u64,
        f: impl Fn(&mut IncidentRec) -> Result<(), String> + Send + 'static,
    ) -> Result<Response<Incident>, Status> {
        self.local_incident(caller, id)?;
        let store = self.deps.store.clone();
        let updated = blocking(move || {
            store
                .update_incident(id, |inc| {
                    f(inc)?;
                    inc.updated_us = now_us();
                    Ok::<(), String>(())
                })?
                .map_err(invalid)
        })
        .await?
        .ok_or_else(|| not_found(format!("incident {id} not found")))?;
        self.deps.store.flush().await?;
        Ok(Response::new(self.incident_view(&updated)?))
    }

    /// The filters of an alert listing beyond agency, severity and time.
    fn alert_filter(&self, r: &ListAlertsRequest) -> Result<Option<crate::store::AlertPredicate>, Status> {
        let reg = self.deps.config.get().regulation.clone();
        let [any, src, dest] = alert_fields(r, &reg)?;
        let (sid, detector, category) = (r.signature_id, r.detector.clone(), r.category.clone());
        let system = (r.system != 0 || r.unattributed).then_some(r.system);
        if any.is_none()
            && src.is_none()
            && dest.is_none()
            && sid == 0
            && detector.is_empty()
            && category.is_empty()
            && system.is_none()
        {
            return Ok(None);
        }
        let (agents, systems) = if system.is_some() {
            let agents: HashMap<String, crate::store::AgentRec> =
                self.deps.store.agents()?.into_iter().map(|a| (a.agent_id.clone(), a)).collect();
            (agents, self.deps.store.systems()?)
        } else {
            (HashMap::new(), Vec::new())
        };
        Ok(Some(crate::store::AlertPredicate(Arc::new(move |rec: &RecordRec| {
            let f = incident::facts_of(&reg, rec);
            let (s, d) = (incident::facts::ip(f.src.as_ref()), incident::facts::ip(f.dest.as_ref()));
            let rec_detector = if f.detector.is_empty() { "rule" } else { f.detector.as_str() };
            if any.is_some_and(|a| s != Some(a) && d != Some(a))
                || src.is_some_and(|a| s != Some(a))
                || dest.is_some_and(|a| d != Some(a))
                || (sid != 0 && f.signature_id != sid)
                || (!detector.is_empty() && rec_detector != detector)
                || (!category.is_empty() && reg.categorize(&f) != category)
            {
                return false;
            }
            match system {
                Some(want) => {
                    incident::input(&reg, 0, rec, f, agents.get(&rec.agent_id), &systems).system == want
                }
                None => true,
            }
        }))))
    }

    fn coverage(&self, agency: Option<&str>) -> Result<GetCoverageResponse, Status> {
        let online = |g: &AgentRec, now: i64| self.online(g, now);
        Ok(crate::coverage::coverage(
            &self.deps.store,
            &self.deps.config.get().regulation,
            agency,
            now_us(),
            &online,
        )?)
    }
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn add_agency(&self, req: Request<AddAgencyRequest>) -> Result<Response<Agency>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(r.code.clone());
        let (name, kind) = new_agency(&r)?;
        let now = now_us();
        let rec = self.deps.store.add_agency(AgencyRec {
            version: RECORD_VERSION,
            code: r.code,
            name,
            created_us: now,
            created_by: who.name.clone(),
            updated_us: now,
            kind,
            ..Default::default()
        })?;
        self.deps.store.flush().await?;
        tracing::info!(operator = %who.name, code = %rec.code, kind = if rec.is_province() { "province" } else { "agency" }, "tenant added");
        Ok(Response::new(agency_msg(rec, &self.deps.config.get().regulation)))
    }

    async fn list_agencies(
        &self,
        req: Request<ListAgenciesRequest>,
    ) -> Result<Response<ListAgenciesResponse>, Status> {
        let who = auth::operator(&req)?;
        let reg = &self.deps.config.get().regulation;
        let agencies = self
            .deps
            .store
            .agencies()?
            .into_iter()
            .filter(|a| who.sees(&a.code))
            .map(|a| agency_msg(a, reg))
            .collect();
        Ok(Response::new(ListAgenciesResponse { agencies }))
    }

    async fn create_enrollment_token(
        &self,
        req: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(r.agency.clone());
        let cfg = self.deps.config.get();
        match self.deps.store.agency(&r.agency)? {
            None if r.province => return Err(not_found(format!("province `{}` not found", r.agency))),
            None => return Err(not_found(format!("agency `{}` not found", r.agency))),
            Some(a) if a.is_province() && !r.province => {
                return Err(invalid(format!(
                    "`{}` is a province: its collector enrolls with `token create --province {}`; agents enroll at that collector",
                    r.agency, r.agency
                )));
            }
            Some(a) if !a.is_province() && r.province => {
                return Err(invalid(format!("`{}` is an agency, not a province", r.agency)));
            }
            Some(_) => {}
        }
        let ttl = match r.ttl_seconds {
            0 => cfg.enrollment_token_ttl,
            s => Duration::from_secs(s),
        };
        if ttl > cfg.max_enrollment_token_ttl {
            return Err(invalid(format!(
                "token validity {} exceeds the maximum of {}",
                humantime::format_duration(ttl),
                humantime::format_duration(cfg.max_enrollment_token_ttl)
            )));
        }
        let token = format!(
            "cgt_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
        );
        let now = OffsetDateTime::now_utc();
        let expires = now + ttl;
        self.deps.store.add_token(
            &token,
            TokenRec {
                version: RECORD_VERSION,
                agency: r.agency.clone(),
                created_us: timefmt::micros(now),
                expires_us: timefmt::micros(expires),
                created_by: who.name.clone(),
                province: r.province,
                ..Default::default()
            },
        )?;
        self.deps.store.flush().await?;
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
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let after = r.page_token.strip_prefix('a').map(String::from);
        if !r.page_token.is_empty() && after.is_none() {
            return Err(invalid(format!("invalid page_token `{}`", r.page_token)));
        }
        let now = now_us();
        let limit = if r.limit == 0 { usize::MAX } else { r.limit as usize };
        let mut agents = Vec::new();
        let mut next = String::new();
        for a in self.deps.store.agents()? {
            if agency.as_ref().is_some_and(|x| &a.agency != x)
                || after.as_ref().is_some_and(|x| &a.agent_id <= x)
            {
                continue;
            }
            if agents.len() == limit {
                next = agents.last().map(|x: &AgentInfo| format!("a{}", x.agent_id)).unwrap_or_default();
                break;
            }
            let connected = self.deps.streams.is_connected(&a.agent_id);
            let online = self.online(&a, now);
            agents.push(agent_info(a, connected, online));
        }
        Ok(Response::new(ListAgentsResponse { agents, next_page_token: next }))
    }

    async fn revoke_agent(
        &self,
        req: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("agent {}", r.agent_id));
        let now = now_us();
        let reason = crate::service::clean_text(&r.reason, 500);
        let updated = self.deps.store.update_agent(&r.agent_id, |a| {
            if a.revoked_us == 0 {
                a.revoked_us = now;
                a.revoke_reason = reason.clone();
            }
        })?;
        if updated.is_none() {
            return Err(not_found(format!("agent `{}` not found", r.agent_id)));
        }
        self.deps.store.flush().await?;
        self.deps.revoked.insert(Identity::Agent(r.agent_id.clone()));
        let closed = self.deps.streams.close(&r.agent_id);
        tracing::warn!(operator = %who.name, agent_id = %r.agent_id, streams_closed = closed, "agent revoked");
        Ok(Response::new(RevokeAgentResponse { streams_closed: closed as u32 }))
    }

    async fn list_alerts(
        &self,
        req: Request<ListAlertsRequest>,
    ) -> Result<Response<ListAlertsResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(PageKey::decode(t).ok_or_else(|| invalid(format!("invalid page_token `{t}`")))?),
        };
        if r.min_severity > 4 {
            return Err(invalid(format!("min_severity {} is not in 1..4", r.min_severity)));
        }
        let q = AlertQuery {
            agency,
            max_severity: (r.min_severity != 0).then_some(r.min_severity),
            since_us: r.since.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
            until_us: r.until.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
            limit: match r.limit as usize {
                0 => DEFAULT_PAGE,
                n => n.min(MAX_PAGE),
            },
            after,
            keep: self.alert_filter(&r)?,
        };
        let store = self.deps.store.clone();
        let (page, next) = blocking(move || Ok(store.list_alerts(&q)?)).await?;
        let cfg = self.deps.config.get();
        Ok(Response::new(ListAlertsResponse {
            alerts: page.into_iter().map(|(c, r)| stored_alert(&cfg.regulation, c, r)).collect(),
            next_page_token: next.map(|k| k.encode()).unwrap_or_default(),
        }))
    }

    type SubscribeAlertsStream = AlertStream;

    async fn subscribe_alerts(
        &self,
        req: Request<SubscribeAlertsRequest>,
    ) -> Result<Response<Self::SubscribeAlertsStream>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let store = self.deps.store.clone();
        let committed = store.alert_cursor();
        let min_severity = r.min_severity;
        let reg = self.deps.config.get().regulation.clone();
        let feed = Feed {
            who: (Identity::Operator(who.name.clone()), self.deps.revoked.clone()),
            committed,
            after: r.after_cursor,
            shutdown: self.deps.shutdown.clone(),
            read: move |c| store.alerts_after(c, 512),
        };
        let rx = feed.spawn(move |c, rec: RecordRec| {
            let keep = agency.as_ref().is_none_or(|a| &rec.agency == a)
                && (min_severity == 0 || rec.severity <= min_severity);
            keep.then(|| stored_alert(&reg, c, rec))
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_agency(&self, req: Request<GetAgencyRequest>) -> Result<Response<Agency>, Status> {
        let who = auth::operator(&req)?;
        let code = req.into_inner().code;
        who.target(code.clone());
        who.may_see(&code)?;
        let a =
            self.deps.store.agency(&code)?.ok_or_else(|| not_found(format!("agency `{code}` not found")))?;
        Ok(Response::new(agency_msg(a, &self.deps.config.get().regulation)))
    }

    async fn update_agency(&self, req: Request<UpdateAgencyRequest>) -> Result<Response<Agency>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(r.code.clone());
        who.detail(r.set.keys().cloned().collect::<Vec<_>>().join(","));
        if who.role == auth::Role::Agency {
            // an agency keeps its own contact points current (changes must
            // reach the department within 24 hours); nothing else
            who.may_see(&r.code)?;
            let contact = |k: &str| ["head.", "monitoring.", "response."].iter().any(|p| k.starts_with(p));
            if let Some(k) = r.set.keys().find(|k| !contact(k)) {
                return Err(crate::error::denied(format!(
                    "an agency operator may update its own contact points (head.*, monitoring.*, response.*), not `{k}`"
                )));
            }
        }
        if let Some(p) = r.set.get("parent").map(|p| p.trim().to_string()).filter(|p| !p.is_empty()) {
            if self.deps.store.agency(&p)?.is_none() {
                return Err(invalid(format!("field `parent`: unknown agency `{p}`")));
            }
            let all: HashMap<String, AgencyRec> =
                self.deps.store.agencies()?.into_iter().map(|a| (a.code.clone(), a)).collect();
            let code = r.code.clone();
            let parent_of = |c: &str| -> Option<String> {
                if c == code {
                    Some(p.clone())
                } else {
                    all.get(c).and_then(|a| a.fields.get("parent").cloned())
                }
            };
            if directory::parent_cycle(&r.code, &parent_of) {
                return Err(invalid(format!(
                    "field `parent`: agency `{}` would be its own ancestor",
                    r.code
                )));
            }
        }
        let now = now_us();
        let set: BTreeMap<String, String> = r.set.into_iter().collect();
        let updated = self.deps.store.update_agency(&r.code, |a| {
            for (k, v) in &set {
                directory::set_agency_field(a, k, v, now)?;
            }
            a.updated_us = now;
            Ok::<(), directory::FieldError>(())
        })?;
        let rec = updated
            .map_err(field_error)?
            .ok_or_else(|| not_found(format!("agency `{}` not found", r.code)))?;
        self.deps.store.flush().await?;
        Ok(Response::new(agency_msg(rec, &self.deps.config.get().regulation)))
    }

    async fn add_system(&self, req: Request<AddSystemRequest>) -> Result<Response<System>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(r.agency.clone());
        if self.deps.store.agency(&r.agency)?.is_none() {
            return Err(not_found(format!("agency `{}` not found", r.agency)));
        }
        let now = now_us();
        let mut rec = SystemRec {
            version: RECORD_VERSION,
            agency: r.agency.clone(),
            dossier_status: "draft".into(),
            state_secrets: r.state_secrets,
            created_us: now,
            updated_us: now,
            ..Default::default()
        };
        directory::set_system_field(&mut rec, "name", &r.name).map_err(field_error)?;
        rec.level = directory::parse_level(&r.level.to_string()).map_err(field_error)?;
        for (k, v) in &r.set {
            if k == "agency" || k == "id" {
                return Err(invalid(format!("field `{k}` cannot be set here")));
            }
            directory::set_system_field(&mut rec, k, v).map_err(field_error)?;
        }
        directory::validate_system(&rec).map_err(field_error)?;
        let rec = self.deps.store.put_systems(vec![rec])?.remove(0);
        self.deps.store.flush().await?;
        who.target(format!("{} system {}", r.agency, rec.id));
        tracing::info!(operator = %who.name, agency = %rec.agency, id = rec.id, level = rec.level, "system added");
        Ok(Response::new(system_msg(rec, Vec::new(), &self.deps.config.get().regulation)))
    }

    async fn update_system(&self, req: Request<UpdateSystemRequest>) -> Result<Response<System>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("system {}", r.id));
        let mut rec =
            self.deps.store.system(r.id)?.ok_or_else(|| not_found(format!("system {} not found", r.id)))?;
        for (k, v) in &r.set {
            directory::set_system_field(&mut rec, k, v).map_err(field_error)?;
        }
        directory::validate_system(&rec).map_err(field_error)?;
        if self.deps.store.agency(&rec.agency)?.is_none() {
            return Err(invalid(format!("field `agency`: unknown agency `{}`", rec.agency)));
        }
        rec.updated_us = now_us();
        let rec = self.deps.store.put_systems(vec![rec])?.remove(0);
        self.deps.store.flush().await?;
        let agents = self.agents_by_system()?.remove(&rec.id).unwrap_or_default();
        Ok(Response::new(system_msg(rec, agents, &self.deps.config.get().regulation)))
    }

    async fn get_system(&self, req: Request<GetSystemRequest>) -> Result<Response<System>, Status> {
        let who = auth::operator(&req)?;
        let id = req.into_inner().id;
        who.target(format!("system {id}"));
        let rec = self.deps.store.system(id)?.ok_or_else(|| not_found(format!("system {id} not found")))?;
        who.may_see(&rec.agency)?;
        let agents = self.agents_by_system()?.remove(&rec.id).unwrap_or_default();
        Ok(Response::new(system_msg(rec, agents, &self.deps.config.get().regulation)))
    }

    async fn list_systems(
        &self,
        req: Request<ListSystemsRequest>,
    ) -> Result<Response<ListSystemsResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let after = page_id(&r.page_token, 's')?.unwrap_or(0);
        let limit = if r.limit == 0 { usize::MAX } else { r.limit as usize };
        let mut by_system = self.agents_by_system()?;
        let reg = &self.deps.config.get().regulation;
        let mut systems = Vec::new();
        let mut next = String::new();
        for s in self.deps.store.systems()? {
            if s.id <= after || agency.as_ref().is_some_and(|a| &s.agency != a) {
                continue;
            }
            if systems.len() == limit {
                next = systems.last().map(|x: &System| format!("s{}", x.id)).unwrap_or_default();
                break;
            }
            let agents = by_system.remove(&s.id).unwrap_or_default();
            systems.push(system_msg(s, agents, reg));
        }
        Ok(Response::new(ListSystemsResponse { systems, next_page_token: next }))
    }

    async fn import_registry(
        &self,
        req: Request<ImportRegistryRequest>,
    ) -> Result<Response<ImportRegistryResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("{} ({})", r.kind, r.format));
        let rows = directory::parse_rows(&r.format, &r.content).map_err(invalid)?;
        let now = now_us();
        let store = &self.deps.store;
        let agencies: HashMap<String, AgencyRec> =
            store.agencies()?.into_iter().map(|a| (a.code.clone(), a)).collect();
        let report = |errs: Vec<String>| {
            let n = errs.len();
            let mut shown: Vec<String> = errs.into_iter().take(50).collect();
            if n > 50 {
                shown.push(format!("... and {} more", n - 50));
            }
            invalid(format!("nothing imported; {n} error(s):\n{}", shown.join("\n")))
        };
        let resp = match r.kind.as_str() {
            "agencies" => {
                let (recs, created, updated) =
                    directory::import_agencies(&rows, &agencies, now, &who.name).map_err(report)?;
                if !r.dry_run {
                    store.put_agencies(&recs)?;
                }
                ImportRegistryResponse { created, updated, system_ids: Vec::new() }
            }
            "systems" => {
                let existing: HashMap<u64, SystemRec> =
                    store.systems()?.into_iter().map(|s| (s.id, s)).collect();
                let (recs, created, updated) =
                    directory::import_systems(&rows, &existing, &agencies, now).map_err(report)?;
                let ids = if r.dry_run {
                    Vec::new()
                } else {
                    store.put_systems(recs)?.into_iter().map(|s| s.id).collect()
                };
                ImportRegistryResponse { created, updated, system_ids: ids }
            }
            other => return Err(invalid(format!("unknown registry kind `{other}` (agencies or systems)"))),
        };
        store.flush().await?;
        who.detail(format!(
            "created {}, updated {}{}",
            resp.created,
            resp.updated,
            if r.dry_run { " (dry run)" } else { "" }
        ));
        Ok(Response::new(resp))
    }

    async fn export_registry(
        &self,
        req: Request<ExportRegistryRequest>,
    ) -> Result<Response<ExportRegistryResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let reg = &self.deps.config.get().regulation;
        let content = match r.kind.as_str() {
            "agencies" => {
                let rows: Vec<_> = self
                    .deps
                    .store
                    .agencies()?
                    .iter()
                    .filter(|a| agency.as_ref().is_none_or(|x| &a.code == x))
                    .map(|a| directory::agency_row(a, reg))
                    .collect();
                directory::render_rows(&r.format, &directory::agency_columns(), &rows)
            }
            "systems" => {
                let mut by_system = self.agents_by_system()?;
                let today = directory::today();
                let rows: Vec<_> = self
                    .deps
                    .store
                    .systems()?
                    .iter()
                    .filter(|s| agency.as_ref().is_none_or(|x| &s.agency == x))
                    .map(|s| {
                        directory::system_row(s, &by_system.remove(&s.id).unwrap_or_default(), reg, today)
                    })
                    .collect();
                directory::render_rows(&r.format, &directory::system_columns(), &rows)
            }
            other => return Err(invalid(format!("unknown registry kind `{other}` (agencies or systems)"))),
        }
        .map_err(invalid)?;
        Ok(Response::new(ExportRegistryResponse { content }))
    }

    async fn link_agent(&self, req: Request<LinkAgentRequest>) -> Result<Response<AgentInfo>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("agent {}", r.agent_id));
        let agent = self
            .deps
            .store
            .agent(&r.agent_id)?
            .ok_or_else(|| not_found(format!("agent `{}` not found", r.agent_id)))?;
        for id in &r.system_ids {
            let s =
                self.deps.store.system(*id)?.ok_or_else(|| not_found(format!("system {id} not found")))?;
            if s.agency != agent.agency {
                return Err(invalid(format!(
                    "system {id} belongs to agency `{}`, the agent to `{}`",
                    s.agency, agent.agency
                )));
            }
        }
        let ids = r.system_ids.clone();
        let unlink = r.unlink;
        let a = self
            .deps
            .store
            .update_agent(&r.agent_id, |a| {
                if unlink {
                    a.systems.retain(|s| !ids.contains(s));
                } else {
                    for id in &ids {
                        if !a.systems.contains(id) {
                            a.systems.push(*id);
                        }
                    }
                    a.systems.sort_unstable();
                }
            })?
            .ok_or_else(|| not_found(format!("agent `{}` not found", r.agent_id)))?;
        self.deps.store.flush().await?;
        let connected = self.deps.streams.is_connected(&a.agent_id);
        let online = self.online(&a, now_us());
        Ok(Response::new(agent_info(a, connected, online)))
    }

    async fn get_coverage(
        &self,
        req: Request<GetCoverageRequest>,
    ) -> Result<Response<GetCoverageResponse>, Status> {
        let who = auth::operator(&req)?;
        let agency = who.agency_filter(&req.into_inner().agency)?;
        Ok(Response::new(self.coverage(agency.as_deref())?))
    }

    async fn list_incidents(
        &self,
        req: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        if !r.state.is_empty() && !incident::STATES.contains(&r.state.as_str()) {
            return Err(invalid(format!(
                "unknown state `{}` (one of {})",
                r.state,
                incident::STATES.join(", ")
            )));
        }
        let limit = match r.limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let systems = self.systems_map()?;
        let v =
            incident::View { reg: &self.deps.config.get().regulation, systems: &systems, now_us: now_us() };
        let mut before = page_id(&r.page_token, 'i')?;
        let mut out = Vec::new();
        let mut next = String::new();
        loop {
            let f = IncidentFilter {
                agency: agency.clone(),
                state: (!r.state.is_empty()).then(|| r.state.clone()),
                system: (r.system != 0).then_some(r.system),
                category: (!r.category.is_empty()).then(|| r.category.clone()),
                open_only: r.open_only,
                since_us: r.since.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
                until_us: r.until.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))),
                unattributed: r.unattributed,
                before_id: before,
                limit,
            };
            let (page, more) = self.deps.store.incidents(&f)?;
            for inc in &page {
                let m = incident::incident_msg(inc, &v);
                if r.overdue_only && !m.overdue {
                    continue;
                }
                if out.len() == limit {
                    next = out.last().map(|x: &Incident| format!("i{}", x.id)).unwrap_or_default();
                    break;
                }
                out.push(m);
            }
            match more {
                Some(id) if next.is_empty() && out.len() < limit => before = Some(id),
                Some(_) if next.is_empty() => {
                    next = out.last().map(|x| format!("i{}", x.id)).unwrap_or_default();
                    break;
                }
                _ => break,
            }
        }
        Ok(Response::new(ListIncidentsResponse { incidents: out, next_page_token: next }))
    }

    async fn get_incident(
        &self,
        req: Request<GetIncidentRequest>,
    ) -> Result<Response<IncidentDetail>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let inc = self.visible_incident(&who, r.id)?;
        let limit = if r.alert_limit == 0 { 100 } else { r.alert_limit.min(10_000) as usize };
        let mut alerts = Vec::new();
        let cfg = self.deps.config.get();
        for c in self.deps.store.incident_alert_cursors(r.id, limit)? {
            if let Some(rec) = self.deps.store.alert(c)? {
                alerts.push(stored_alert(&cfg.regulation, c, rec));
            }
        }
        Ok(Response::new(IncidentDetail { incident: Some(self.incident_view(&inc)?), alerts }))
    }

    async fn ack_incident(&self, req: Request<IncidentActionRequest>) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let name = who.name.clone();
        self.change_incident(&who, r.id, move |inc| {
            let now = now_us();
            if inc.acknowledged_us == 0 {
                inc.acknowledged_us = now;
                inc.acknowledged_by = name.clone();
            }
            inc.history.push(incident::event(now, &name, "ack", r.note.clone()));
            Ok(())
        })
        .await
    }

    async fn assign_incident(
        &self,
        req: Request<IncidentActionRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let assignee = crate::service::clean_text(r.value.trim(), 128);
        if assignee.is_empty() {
            return Err(invalid("the assignee must not be empty"));
        }
        let name = who.name.clone();
        self.change_incident(&who, r.id, move |inc| {
            let text = format!(
                "assigned to {assignee}{}",
                if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
            );
            inc.assignee = assignee.clone();
            inc.history.push(incident::event(now_us(), &name, "assign", text));
            Ok(())
        })
        .await
    }

    async fn add_incident_note(
        &self,
        req: Request<IncidentActionRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let text = crate::service::clean_text(&r.value.replace('\n', " "), 5000);
        if text.trim().is_empty() {
            return Err(invalid("the note must not be empty"));
        }
        let name = who.name.clone();
        self.change_incident(&who, r.id, move |inc| {
            inc.history.push(incident::event(now_us(), &name, "note", text.clone()));
            Ok(())
        })
        .await
    }

    async fn transition_incident(
        &self,
        req: Request<IncidentActionRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.detail(format!("→ {}", r.value));
        let name = who.name.clone();
        self.change_incident(&who, r.id, move |inc| {
            incident::transition(inc, &r.value, &r.reason, &name, &r.note, now_us())
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn update_incident(
        &self,
        req: Request<UpdateIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.detail(r.set.keys().cloned().collect::<Vec<_>>().join(","));
        let set: BTreeMap<String, String> = r.set.into_iter().collect();
        if who.role == auth::Role::Agency
            && let Some(k) = set.keys().find(|k| !incident::TEXT_FIELDS.contains(&k.as_str()))
        {
            return Err(crate::error::denied(format!(
                "an agency operator may set {} on its own incidents, not `{k}`",
                incident::TEXT_FIELDS.join(", ")
            )));
        }
        let name = who.name.clone();
        let reg = self.deps.config.get().regulation.clone();
        self.change_incident(&who, r.id, move |inc| {
            incident::apply_fields(inc, &set, &reg)?;
            let keys: Vec<&str> = set.keys().map(String::as_str).collect();
            inc.history.push(incident::event(now_us(), &name, "update", format!("set {}", keys.join(", "))));
            Ok(())
        })
        .await
    }

    async fn incident_report(
        &self,
        req: Request<IncidentReportRequest>,
    ) -> Result<Response<IncidentReportResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.detail(format!("{} report", r.kind));
        let n = self.incident_notice(&who, r.id, &r.kind).await?;
        Ok(Response::new(IncidentReportResponse { kind: r.kind, text: n.text, json: n.json.to_string() }))
    }

    async fn bulk_incident_action(
        &self,
        req: Request<BulkIncidentActionRequest>,
    ) -> Result<Response<BulkIncidentActionResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let ids = distinct_ids(&r.ids, 1)?;
        who.target(format!("incidents {}", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")));
        who.detail(format!("{} {}", r.action, r.value));
        for id in &ids {
            self.local_incident(&who, *id)?;
        }
        let name = who.name.clone();
        let action = r.action.clone();
        let assignee = crate::service::clean_text(r.value.trim(), 128);
        if action == "assign" && assignee.is_empty() {
            return Err(invalid("the assignee must not be empty"));
        }
        if action != "assign" && action != "transition" {
            return Err(invalid(format!("unknown action `{action}` (transition or assign)")));
        }
        let store = self.deps.store.clone();
        let updated = blocking(move || {
            store
                .update_incidents(&ids, |incs| {
                    let now = now_us();
                    for inc in incs.iter_mut() {
                        if action == "assign" {
                            inc.assignee = assignee.clone();
                            let text = format!(
                                "assigned to {assignee}{}",
                                if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
                            );
                            inc.history.push(incident::event(now, &name, "assign", text));
                            inc.updated_us = now;
                        } else {
                            incident::transition(inc, &r.value, &r.reason, &name, &r.note, now)
                                .map_err(|e| format!("incident {}: {e}", inc.id))?;
                        }
                    }
                    Ok::<(), String>(())
                })?
                .map_err(invalid)
        })
        .await?
        .ok_or_else(|| not_found("an incident of the list was not found"))?;
        self.deps.store.flush().await?;
        let incidents = updated.iter().map(|i| self.incident_view(i)).collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(BulkIncidentActionResponse { incidents }))
    }

    async fn merge_incidents(
        &self,
        req: Request<MergeIncidentsRequest>,
    ) -> Result<Response<Incident>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let ids = distinct_ids(&r.ids, 2)?;
        who.target(format!("incidents {}", ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")));
        for id in &ids {
            self.local_incident(&who, *id)?;
        }
        let name = who.name.clone();
        let store = self.deps.store.clone();
        let merged = blocking(move || {
            store
                .merge_incidents(&ids, |incs| incident::merge(incs, &name, &r.note, now_us()))?
                .map_err(invalid)
        })
        .await?
        .ok_or_else(|| not_found("an incident of the list was not found"))?;
        self.deps.store.flush().await?;
        let first = merged.first().ok_or_else(|| invalid("nothing merged"))?;
        Ok(Response::new(self.incident_view(first)?))
    }

    type SubscribeIncidentsStream = IncidentStream;

    async fn subscribe_incidents(
        &self,
        req: Request<SubscribeIncidentsRequest>,
    ) -> Result<Response<Self::SubscribeIncidentsStream>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let agency = who.agency_filter(&r.agency)?;
        let store = self.deps.store.clone();
        let committed = store.incident_change_cursor();
        let reg = self.deps.config.get().regulation.clone();
        let store2 = store.clone();
        let feed = Feed {
            who: (Identity::Operator(who.name.clone()), self.deps.revoked.clone()),
            committed,
            after: r.after_cursor,
            shutdown: self.deps.shutdown.clone(),
            read: move |c| store.incident_changes_after(c, 256),
        };
        let rx = feed.spawn(move |c, ch: crate::store::IncidentChangeRec| {
            let inc = ch.incident?;
            if agency.as_ref().is_some_and(|a| &inc.agency != a) {
                return None;
            }
            let systems: HashMap<u64, SystemRec> =
                store2.system(inc.system).ok().flatten().map(|s| (s.id, s)).into_iter().collect();
            let v = incident::View { reg: &reg, systems: &systems, now_us: now_us() };
            Some(IncidentChange {
                cursor: c,
                incident: Some(incident::incident_msg(&inc, &v)),
                change: ch.change,
            })
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn push_policy(&self, req: Request<PushPolicyRequest>) -> Result<Response<Policy>, Status> {
        let who = auth::operator(&req)?;
        let mut r = req.into_inner();
        let scope = match (r.all, r.agency.as_str()) {
            (true, "") => "*".to_string(),
            (false, a) if !a.is_empty() => {
                if self.deps.store.agency(a)?.is_none() {
                    return Err(not_found(format!("agency `{a}` not found")));
                }
                a.to_string()
            }
            _ => return Err(invalid("give exactly one of agency or all")),
        };
        who.target(scope.clone());
        crate::policy::validate(&mut r.files).map_err(invalid)?;
        let files = r.files.clone();
        let (skipped, per_file) = blocking(move || Ok(crate::policy::check_rules(&files))).await?;
        if !skipped.is_empty() && !r.allow_skipped {
            const SHOWN: usize = 200;
            let mut text = format!(
                "{} rule(s) would be skipped by the agents; fix them or push with --allow-skipped:\n{}",
                skipped.len(),
                skipped.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("\n")
            );
            if skipped.len() > SHOWN {
                text.push_str(&format!("\n… and {} more", skipped.len() - SHOWN));
            }
            who.detail(format!("refused: {} rule(s) would be skipped", skipped.len()));
            return Err(invalid(text));
        }
        let digest = crate::policy::digest(&r.files);
        let rec = self.deps.store.add_policy(PolicyRec {
            version: RECORD_VERSION,
            scope,
            digest,
            files: r.files,
            created_us: now_us(),
            created_by: who.name.clone(),
            ..Default::default()
        })?;
        self.deps.store.flush().await?;
        who.detail(format!("version {} ({} files)", rec.policy_version, rec.files.len()));
        let delivered = self
            .deps
            .store
            .agents()?
            .iter()
            .filter(|a| {
                (rec.scope == "*" || a.agency == rec.scope) && self.deps.streams.is_connected(&a.agent_id)
            })
            .count();
        self.deps.policy_changed.send_replace(rec.policy_version);
        tracing::info!(operator = %who.name, version = rec.policy_version, scope = %rec.scope, "policy pushed");
        let mut msg = policy_msg(rec, false);
        msg.delivered_to = delivered as u32;
        msg.skipped_rules = skipped;
        for (name, loaded, total) in per_file {
            tracing::info!(file = %name, loaded, total, "policy rule file checked");
        }
        Ok(Response::new(msg))
    }

    async fn list_policies(
        &self,
        req: Request<ListPoliciesRequest>,
    ) -> Result<Response<ListPoliciesResponse>, Status> {
        let who = auth::operator(&req)?;
        let agency = who.agency_filter(&req.into_inner().agency)?;
        let policies = self
            .deps
            .store
            .policies()?
            .into_iter()
            .filter(|p| agency.as_ref().is_none_or(|a| p.scope == "*" || &p.scope == a))
            .map(|p| policy_msg(p, false))
            .collect();
        Ok(Response::new(ListPoliciesResponse { policies }))
    }

    async fn add_operator(
        &self,
        req: Request<AddOperatorRequest>,
    ) -> Result<Response<AddOperatorResponse>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("operator {}", r.name));
        who.detail(format!("role {} {}", r.role, r.agency));
        if Identity::from_uri(&Identity::Operator(r.name.clone()).uri()).is_none() {
            return Err(invalid(format!(
                "invalid operator name `{}` (letters, digits, `-`, `_`, `.`, `@`)",
                r.name
            )));
        }
        let Some(role) = auth::Role::parse(&r.role) else {
            return Err(invalid(format!(
                "invalid role `{}` (one of {})",
                r.role,
                auth::Role::NAMES.join(", ")
            )));
        };
        match (role, r.agency.as_str()) {
            (auth::Role::Agency, "") => return Err(invalid("the agency role needs an agency")),
            (auth::Role::Province, "") => return Err(invalid("the province role needs a province")),
            (auth::Role::Agency, a) => match self.deps.store.agency(a)? {
                None => return Err(not_found(format!("agency `{a}` not found"))),
                Some(t) if t.is_province() => {
                    return Err(invalid(format!("`{a}` is a province: use the province role")));
                }
                Some(_) => {}
            },
            (auth::Role::Province, p) => match self.deps.store.agency(p)? {
                Some(t) if t.is_province() => {}
                _ => return Err(not_found(format!("province `{p}` not found"))),
            },
            (_, "") => {}
            (_, _) => {
                return Err(invalid(format!(
                    "only the agency and province roles are bound to a tenant, not `{}`",
                    r.role
                )));
            }
        }
        if self.deps.store.operator(&r.name)?.is_some() {
            return Err(ApiError::Store(crate::store::StoreError::AlreadyExists(format!(
                "operator `{}`",
                r.name
            )))
            .into());
        }
        let issued = self.deps.ca.sign_operator(&r.csr_pem, &r.name, OffsetDateTime::now_utc())?;
        self.deps.store.add_operator(OperatorRec {
            version: RECORD_VERSION,
            name: r.name.clone(),
            role: role.as_str().into(),
            agency: r.agency.clone(),
            created_us: now_us(),
            created_by: who.name.clone(),
            cert_serial: issued.serial.clone(),
            ..Default::default()
        })?;
        self.deps.store.flush().await?;
        tracing::info!(operator = %who.name, new = %r.name, role = role.as_str(), "operator added");
        Ok(Response::new(AddOperatorResponse {
            certificate_pem: issued.certificate_pem,
            ca_pem: self.deps.ca.cert_pem().to_string(),
            not_after: Some(timefmt::to_timestamp(issued.not_after)),
        }))
    }

    async fn list_operators(
        &self,
        req: Request<ListOperatorsRequest>,
    ) -> Result<Response<ListOperatorsResponse>, Status> {
        auth::operator(&req)?;
        let operators = self.deps.store.operators()?.into_iter().map(operator_account).collect();
        Ok(Response::new(ListOperatorsResponse { operators }))
    }

    async fn revoke_operator(
        &self,
        req: Request<RevokeOperatorRequest>,
    ) -> Result<Response<OperatorAccount>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("operator {}", r.name));
        let reason = crate::service::clean_text(&r.reason, 500);
        who.detail(reason.clone());
        let rec = self
            .deps
            .store
            .revoke_operator(&r.name, now_us(), &who.name, &reason)?
            .ok_or_else(|| not_found(format!("operator `{}` not found", r.name)))?;
        self.deps.store.flush().await?;
        self.deps.revoked.insert(Identity::Operator(r.name.clone()));
        tracing::warn!(operator = %who.name, revoked = %r.name, "operator revoked");
        Ok(Response::new(operator_account(rec)))
    }

    async fn set_operator_password(
        &self,
        req: Request<SetOperatorPasswordRequest>,
    ) -> Result<Response<OperatorAccount>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("operator {}", r.name));
        if r.name != who.name && who.role != auth::Role::Admin {
            return Err(crate::error::denied(format!(
                "operator `{}` may set only its own password, not `{}`'s",
                who.name, r.name
            )));
        }
        crate::console::password::check(&r.password).map_err(crate::error::invalid)?;
        let phc = tokio::task::spawn_blocking(move || crate::console::password::hash(&r.password))
            .await
            .map_err(|e| crate::error::internal("hashing a password", e))?
            .map_err(|e| crate::error::internal("hashing a password", e))?;
        let rec = self
            .deps
            .store
            .update_operator(&r.name, |o| o.password_hash = phc)?
            .ok_or_else(|| not_found(format!("operator `{}` not found", r.name)))?;
        if rec.revoked_us != 0 {
            return Err(crate::error::invalid(format!("operator `{}` is revoked", r.name)));
        }
        self.deps.store.flush().await?;
        Ok(Response::new(operator_account(rec)))
    }

    async fn get_report(&self, req: Request<GetReportRequest>) -> Result<Response<ReportFile>, Status> {
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let kind = crate::report::Kind::parse(&r.kind).ok_or_else(|| {
            crate::error::invalid(format!(
                "kind: `{}` is not a report (daily, weekly, six-month, annual, incident)",
                r.kind
            ))
        })?;
        let format = crate::report::render::Format::parse(&r.format).ok_or_else(|| {
            crate::error::invalid(format!("format: `{}` is not one of html, pdf, csv, json", r.format))
        })?;
        let lang = crate::report::Lang::parse(&r.language).ok_or_else(|| {
            crate::error::invalid(format!("language: `{}` is not one of vi, en", r.language))
        })?;
        let rendered = |report: &crate::report::Report, file_name: String| {
            Ok(Response::new(ReportFile {
                file_name,
                content_type: format.content_type().into(),
                content: crate::report::render::render(report, format).ok_or_else(|| {
                    crate::error::internal("rendering a report", "the embedded font cannot be read")
                })?,
            }))
        };
        if kind == crate::report::Kind::Incident {
            let notice = match r.notice.as_str() {
                "" | "initial" => "initial",
                "completion" => "completion",
                other => {
                    return Err(crate::error::invalid(format!(
                        "notice: `{other}` is not one of initial, completion"
                    )));
                }
            };
            if r.incident_id == 0 {
                return Err(crate::error::invalid("incident_id: the incident's number is required"));
            }
            who.detail(format!("{notice} notice"));
            let n = self.incident_notice(&who, r.incident_id, notice).await?;
            let report = crate::report::notice(&n, lang, now_us());
            return rendered(
                &report,
                format!("canhgac-incident-{}-{notice}.{}", r.incident_id, format.extension()),
            );
        }
        let (Some(from), Some(to)) = (r.from.as_ref(), r.to.as_ref()) else {
            return Err(crate::error::invalid("from and to: the report period is required"));
        };
        let (from_us, to_us) =
            (timefmt::micros(timefmt::from_timestamp(from)), timefmt::micros(timefmt::from_timestamp(to)));
        let agencies = match who.agency_filter(&r.agency)? {
            Some(a) => {
                if self.deps.store.agency(&a)?.is_none() {
                    return Err(not_found(format!("agency `{a}` not found")));
                }
                vec![a]
            }
            None => self.deps.store.agencies()?.into_iter().map(|a| a.code).collect(),
        };
        who.detail(format!("{} report {}", kind.as_str(), r.agency));
        let req = crate::report::Request {
            kind,
            agencies,
            from_us,
            to_us,
            now_us: now_us(),
            lang,
            silence_limit: self.deps.config.get().agent_silence_limit,
        };
        let (store, reg) = (self.deps.store.clone(), self.deps.config.get().regulation.clone());
        let report = tokio::task::spawn_blocking(move || crate::report::build(&store, &reg, &req))
            .await
            .map_err(|e| crate::error::internal("building a report", e))?
            .map_err(|e| match e {
                crate::report::ReportError::Invalid(m) => crate::error::invalid(m),
                crate::report::ReportError::Store(e) => e.into(),
            })?;
        let day = |us: i64| {
            let t = timefmt::from_micros(us).to_offset(crate::report::text::VIETNAM);
            format!("{:04}{:02}{:02}", t.year(), t.month() as u8, t.day())
        };
        let scope = if r.agency.is_empty() { "all".to_string() } else { r.agency.clone() };
        rendered(
            &report,
            format!(
                "canhgac-{}-{scope}-{}-{}.{}",
                kind.as_str(),
                day(from_us),
                day(to_us),
                format.extension()
            ),
        )
    }

    async fn list_report_files(
        &self,
        req: Request<ListReportFilesRequest>,
    ) -> Result<Response<ListReportFilesResponse>, Status> {
        use crate::report::schedule;
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        let only = who.agency_filter(&r.agency)?;
        let dir = self.deps.config.get().reports_dir.clone();
        let list = blocking(move || {
            schedule::list(&dir).map_err(|e| crate::error::internal("reading the reports directory", e))
        })
        .await?;
        let reports = list
            .into_iter()
            .filter(|(s, _, _)| match (&only, s.agency.as_str()) {
                // a report of every agency is for those who see every agency
                (_, schedule::ALL) => who.agency.is_none() && only.is_none(),
                (Some(a), code) => a == code,
                (None, code) => who.sees(code),
            })
            .map(|(s, size, written)| StoredReport {
                id: s.id(),
                agency: if s.agency == schedule::ALL { String::new() } else { s.agency.clone() },
                kind: s.kind.as_str().into(),
                from: ts(s.from_us()),
                to: ts(s.to_us()),
                format: s.format.extension().into(),
                size,
                written: ts(written),
                file_name: s.file_name(),
            })
            .collect();
        let schedule = self.deps.config.get().report_schedule.iter().map(schedule::Entry::describe).collect();
        Ok(Response::new(ListReportFilesResponse { reports, schedule }))
    }

    async fn get_report_file(
        &self,
        req: Request<GetReportFileRequest>,
    ) -> Result<Response<ReportFile>, Status> {
        use crate::report::schedule;
        let who = auth::operator(&req)?;
        let r = req.into_inner();
        who.target(format!("report {}", r.id));
        let s = schedule::Stored::parse(&r.id).map_err(crate::error::invalid)?;
        if s.agency == schedule::ALL {
            if let Some(own) = &who.agency {
                return Err(who.denied(own));
            }
        } else {
            who.may_see(&s.agency)?;
        }
        let dir = self.deps.config.get().reports_dir.clone();
        let s2 = s.clone();
        let content = blocking(move || match schedule::read(&dir, &s2) {
            Ok(c) => Ok(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(not_found(format!("report `{}` not found", s2.id())))
            }
            Err(e) => Err(crate::error::internal("reading a stored report", e)),
        })
        .await?;
        Ok(Response::new(ReportFile {
            file_name: s.file_name(),
            content_type: s.format.content_type().into(),
            content,
        }))
    }

    async fn list_audit(
        &self,
        req: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        auth::operator(&req)?;
        let r = req.into_inner();
        let limit = if r.limit == 0 { 1000 } else { r.limit.min(10_000) as usize };
        let entries: Vec<AuditEntry> =
            self.deps.store.audit_after(r.after_seq, limit)?.iter().map(crate::audit::entry).collect();
        let head = match entries.last() {
            Some(last) => {
                let h = self
                    .deps
                    .audit_signer
                    .sign(last.seq, &last.hash, now_us())
                    .map_err(|e| crate::error::internal("signing the audit head", e))?;
                Some(audit_head(h.seq, h.hash, h.signed_at_us, h.signature, h.certificate_pem))
            }
            None => None,
        };
        let checkpoints = match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => self
                .deps
                .store
                .audit_checkpoints(first.seq, last.seq)?
                .into_iter()
                .map(|c| audit_head(c.seq, c.hash, c.signed_at_us, c.signature, c.certificate_pem))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Response::new(ListAuditResponse { entries, head, checkpoints }))
    }
}

fn audit_head(
    seq: u64,
    hash: String,
    signed_at_us: i64,
    signature: String,
    certificate_pem: String,
) -> AuditHead {
    AuditHead { seq, hash, signed_at_us, signature, certificate_pem }
}

/// A gap-free feed over a committed cursor: reads records after a cursor,
/// waits for the cursor to move, resumes from where it was.
fn operator_account(o: OperatorRec) -> OperatorAccount {
    OperatorAccount {
        name: o.name,
        role: o.role,
        agency: o.agency,
        created: ts(o.created_us),
        created_by: o.created_by,
        revoked: (o.revoked_us != 0).then(|| ts(o.revoked_us)).flatten(),
        revoked_by: o.revoked_by,
        revoke_reason: o.revoke_reason,
    }
}

/// A subscription: reads committed records after a cursor, then waits for
/// more. It ends when the client goes, the collector shuts down, or the
/// subscriber is revoked.
struct Feed<R> {
    /// The subscriber, and the revoked identities.
    who: (Identity, Arc<crate::tls::Revoked>),
    committed: tokio::sync::watch::Receiver<u64>,
    /// `None`: only what is committed from now on.
    after: Option<u64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    read: R,
}

impl<R, T> Feed<R>
where
    R: Fn(u64) -> Result<Vec<(u64, T)>, crate::store::StoreError> + Send + Sync + 'static,
    T: Send + 'static,
{
    fn spawn<M: Send + 'static>(
        self,
        map: impl Fn(u64, T) -> Option<M> + Send + 'static,
    ) -> mpsc::Receiver<Result<M, Status>> {
        let Feed { who: (who, revoked), mut committed, after, mut shutdown, read } = self;
        let mut revocations = revoked.watch();
        let read = Arc::new(read);
        let mut cursor = match after {
            Some(c) => c,
            None => *committed.borrow_and_update(),
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                if revoked.contains(&who) {
                    let _ = tx.send(Err(crate::error::denied(format!("{who} is revoked")))).await;
                    return;
                }
                committed.borrow_and_update();
                let r = read.clone();
                let batch = match tokio::task::spawn_blocking(move || r(cursor)).await {
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
                        _ = revocations.changed() => {}
                        _ = crate::registry::until_true(&mut shutdown) => {
                            let _ = tx.send(Err(crate::error::unavailable("collector is shutting down"))).await;
                            return;
                        }
                    }
                    continue;
                }
                for (c, item) in batch {
                    cursor = c;
                    if let Some(m) = map(c, item)
                        && tx.send(Ok(m)).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        rx
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
