//! Who is calling and what they may do: the one place where RPCs are
//! authorised.
//!
//! * `Enrollment`: anyone who completed the TLS handshake (the token is the
//!   credential);
//! * `Telemetry`: agent certificates only, not revoked (interceptor);
//! * `Operator`: operator certificates only, wrapped in [`Guarded`], which
//!   looks the operator's role up in the store, checks the method against
//!   [`access`] (unknown methods are refused: a new RPC without an entry
//!   cannot be called), attaches an [`OperatorCaller`] for the handlers and
//!   writes one audit-log entry per call, refusals included.
//!
//! Roles: `admin` (everything), `analyst` (all agencies: read, incident
//! workflow, policy push), `agency` (its own agency only: read, incident
//! notes), `auditor` (read-only, and the audit log); at an upstream
//! (national) collector also `national` (every province: read, incident
//! workflow of its own incidents) and `province` (one province's data
//! only, read and notes, like `agency` one level up: a province is a
//! tenant whose code names its records and incidents here). Tenancy of the
//! `agency` and `province` roles is decided by [`OperatorCaller::agency_filter`] and
//! [`OperatorCaller::may_see`], which handlers call with the agency of what
//! they are about to return.
//!
//! Revocation is checked at the handshake (new connections) and here (new
//! calls on a connection that was open before the revocation); open
//! telemetry streams are closed by [`crate::registry`].

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use canhgac_proto::{identity::Identity, timefmt};
use tonic::{
    Request, Status,
    body::Body,
    server::NamedService,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use crate::{
    store::{AuditRec, Store},
    tls::Revoked,
};

/// The agent behind a telemetry call.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    pub agent_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Analyst,
    Agency,
    Auditor,
    National,
    Province,
}

impl Role {
    pub const NAMES: &'static [&'static str] =
        &["admin", "analyst", "agency", "auditor", "national", "province"];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "analyst" => Some(Role::Analyst),
            "agency" => Some(Role::Agency),
            "auditor" => Some(Role::Auditor),
            "national" => Some(Role::National),
            "province" => Some(Role::Province),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Agency => "agency",
            Role::Auditor => "auditor",
            Role::National => "national",
            Role::Province => "province",
        }
    }
}

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading; `agency` operators only their own agency's data.
    Read,
    /// Notes on incidents (the agency may add to its own).
    Note,
    /// Incident workflow and policy: admin, analyst.
    Operate,
    /// Registry changes: admin; an agency only its own contact points
    /// (the handler limits the fields).
    Registry,
    /// Registry, enrollment, revocation, operators: admin.
    Admin,
    /// The audit log and operator list: admin, auditor.
    Audit,
}

/// The access each Operator method needs; `None` for methods this build
/// does not know (refused).
pub fn access(method: &str) -> Option<Access> {
    use Access::*;
    Some(match method {
        "ListAgencies" | "GetAgency" | "ListAgents" | "ListAlerts" | "SubscribeAlerts" | "GetSystem"
        | "ListSystems" | "ExportRegistry" | "GetCoverage" | "ListIncidents" | "GetIncident"
        | "SubscribeIncidents" | "ListPolicies" | "IncidentReport" | "GetReport" | "ListReportFiles"
        | "GetReportFile" => Read,
        // any operator for itself; an admin for anyone (the handler checks)
        "SetOperatorPassword" => Read,
        // the agency fills in its own incidents' report fields (the handler
        // limits which fields)
        "AddIncidentNote" | "UpdateIncident" => Note,
        "UpdateAgency" => Registry,
        "AckIncident" | "AssignIncident" | "TransitionIncident" | "BulkIncidentAction" | "MergeIncidents"
        | "PushPolicy" => Operate,
        "AddAgency"
        | "AddSystem"
        | "UpdateSystem"
        | "ImportRegistry"
        | "LinkAgent"
        | "CreateEnrollmentToken"
        | "RevokeAgent"
        | "AddOperator"
        | "RevokeOperator" => Admin,
        "ListAudit" | "ListOperators" => Audit,
        _ => return None,
    })
}

/// An RPC method named for people: `RevokeOperator` → `revoke operator`.
pub fn method_words(method: &str) -> String {
    let mut out = String::new();
    for (i, ch) in method.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

pub fn allowed(role: Role, access: Access) -> bool {
    match access {
        Access::Read => true,
        Access::Note => role != Role::Auditor,
        Access::Operate => matches!(role, Role::Admin | Role::Analyst | Role::National),
        Access::Registry => matches!(role, Role::Admin | Role::Agency),
        Access::Admin => role == Role::Admin,
        Access::Audit => matches!(role, Role::Admin | Role::Auditor),
    }
}

/// What a handler tells the audit log about the call.
#[derive(Debug, Default)]
struct Note {
    target: String,
    detail: String,
}

/// The operator behind an operator-API call.
#[derive(Debug, Clone)]
pub struct OperatorCaller {
    pub name: String,
    pub role: Role,
    /// The agency of an `agency` operator.
    pub agency: Option<String>,
    note: Arc<Mutex<Note>>,
}

impl OperatorCaller {
    /// Records what the call is about (shown in the audit log).
    pub fn target(&self, target: impl Into<String>) {
        self.note.lock().unwrap_or_else(|p| p.into_inner()).target = target.into();
    }

    pub fn detail(&self, detail: impl Into<String>) {
        self.note.lock().unwrap_or_else(|p| p.into_inner()).detail = detail.into();
    }

    pub(crate) fn denied(&self, agency: &str) -> Status {
        {
            let mut note = self.note.lock().unwrap_or_else(|p| p.into_inner());
            if note.target.is_empty() {
                note.target = agency.to_string();
            }
        }
        crate::error::denied(format!(
            "operator `{}` of agency `{}` may not see data of agency `{agency}`",
            self.name,
            self.agency.as_deref().unwrap_or("")
        ))
    }

    /// The agency filter to apply for a requested one ("" = all): an
    /// `agency` operator is confined to its own agency.
    pub fn agency_filter(&self, requested: &str) -> Result<Option<String>, Status> {
        match (&self.agency, requested) {
            (Some(own), "") => Ok(Some(own.clone())),
            (Some(own), r) if r == own => Ok(Some(own.clone())),
            (Some(_), r) => Err(self.denied(r)),
            (None, "") => Ok(None),
            (None, r) => {
                self.target(r.to_string());
                Ok(Some(r.to_string()))
            }
        }
    }

    /// Whether the caller may see something of `agency`.
    pub fn may_see(&self, agency: &str) -> Result<(), Status> {
        match &self.agency {
            Some(own) if own != agency => Err(self.denied(agency)),
            _ => Ok(()),
        }
    }

    /// Like [`Self::may_see`], for filtering lists silently.
    pub fn sees(&self, agency: &str) -> bool {
        self.agency.as_deref().is_none_or(|own| own == agency)
    }
}

/// Identity from the peer certificate, if the client presented one.
pub fn identity<T>(req: &Request<T>) -> Option<Identity> {
    let certs = req.peer_certs()?;
    Identity::from_cert_der(certs.first()?).ok()
}

/// The operator a console session signed in, attached in-process by the
/// console to the calls it makes for that session. A call from the network
/// always carries its TLS connection instead, and never this.
#[derive(Debug, Clone)]
pub struct ConsoleOperator(pub String);

fn identity_http<B>(req: &http::Request<B>) -> Option<Identity> {
    match req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>() {
        Some(tls) => Identity::from_cert_der(tls.peer_certs()?.first()?).ok(),
        None => req.extensions().get::<ConsoleOperator>().map(|c| Identity::Operator(c.0.clone())),
    }
}

#[derive(Clone)]
pub struct Auth {
    revoked: Arc<Revoked>,
    store: Store,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Auth {
    pub fn new(revoked: Arc<Revoked>, store: Store, metrics: Arc<crate::metrics::Metrics>) -> Auth {
        Auth { revoked, store, metrics }
    }

    fn check(&self, id: Option<Identity>) -> Result<Identity, Status> {
        let Some(id) = id else {
            return Err(crate::error::unauthenticated(
                "a client certificate issued by this collector is required",
            ));
        };
        if self.revoked.contains(&id) {
            return Err(crate::error::denied(format!("{id} is revoked")));
        }
        Ok(id)
    }

    /// Interceptor for the telemetry service.
    pub fn agents(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |mut req: Request<()>| match auth.check(identity(&req))? {
            Identity::Agent(agent_id) => {
                req.extensions_mut().insert(AgentCaller { agent_id });
                Ok(req)
            }
            other => Err(crate::error::denied(format!("{other} may not stream telemetry"))),
        }
    }

    /// Interceptor for services open to any operator (gRPC reflection).
    pub fn any_operator(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |req: Request<()>| match auth.check(identity(&req))? {
            Identity::Operator(_) => Ok(req),
            other => Err(crate::error::denied(format!("{other} may not use the operator API"))),
        }
    }

    /// Decides an operator call: the caller, or the refusal and what is
    /// known of the caller for the audit log.
    #[allow(clippy::result_large_err)] // built once per call, not propagated
    fn operator_call(
        &self,
        id: Option<Identity>,
        method: &str,
    ) -> Result<OperatorCaller, (Status, AuditRec)> {
        let mut entry = AuditRec { action: method.to_string(), ..Default::default() };
        let id = self.check(id).map_err(|s| (s, entry.clone()))?;
        let Identity::Operator(name) = id else {
            entry.operator = id.to_string();
            return Err((crate::error::denied(format!("{id} may not use the operator API")), entry));
        };
        entry.operator = name.clone();
        let rec = match self.store.operator(&name) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err((crate::error::denied(format!("operator `{name}` is not registered")), entry));
            }
            Err(e) => return Err((Status::from(e), entry)),
        };
        entry.role = rec.role.clone();
        entry.operator_agency = rec.agency.clone();
        if rec.revoked_us != 0 {
            // also refused at the handshake once the collector knows; this
            // covers the calls already on an open connection
            return Err((crate::error::denied(format!("operator `{name}` is revoked")), entry));
        }
        let Some(role) = Role::parse(&rec.role) else {
            return Err((crate::error::denied(format!("operator `{name}` has an unknown role")), entry));
        };
        let Some(need) = access(method) else {
            return Err((
                crate::error::denied(format!("`{}` is not a known operation", method_words(method))),
                entry,
            ));
        };
        if !allowed(role, need) {
            return Err((
                crate::error::denied(format!("role `{}` may not {}", role.as_str(), method_words(method))),
                entry,
            ));
        }
        let agency = matches!(role, Role::Agency | Role::Province).then(|| rec.agency.clone());
        Ok(OperatorCaller { name, role, agency, note: Arc::default() })
    }

    fn audit(&self, mut entry: AuditRec, status: Option<&Status>, code: Option<&str>) -> Result<(), String> {
        entry.time_us = timefmt::micros(time::OffsetDateTime::now_utc());
        entry.outcome = match (status, code) {
            (Some(s), _) => format!("{:?}", s.code()),
            (None, Some(c)) => c.to_string(),
            (None, None) => "ok".into(),
        };
        if let Some(s) = status
            && entry.detail.is_empty()
        {
            entry.detail = s.message().chars().take(300).collect();
        }
        self.store.append_audit(entry, crate::audit::seal).map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            e.to_string()
        })
    }

    /// Audits a console event that is not an API call (a sign-in, a refused
    /// form): `refused` is the reason when it was refused. `Err` when the
    /// entry cannot be made durable (the console then refuses too).
    pub async fn audit_console(
        &self,
        operator: &str,
        action: &str,
        target: &str,
        refused: Option<&str>,
    ) -> Result<(), Status> {
        let rec = self.store.operator(operator).ok().flatten();
        let entry = AuditRec {
            operator: operator.chars().take(100).collect(),
            role: rec.as_ref().map(|r| r.role.clone()).unwrap_or_default(),
            operator_agency: rec.map(|r| r.agency).unwrap_or_default(),
            action: action.into(),
            target: target.into(),
            detail: refused.unwrap_or_default().chars().take(300).collect(),
            ..Default::default()
        };
        let code = refused.map(|_| "PermissionDenied".to_string());
        self.audit_durably(entry, None, code).await
    }

    /// Writes a call's audit entry and makes it durable; `Err` is the
    /// refusal to send instead of the call's answer (fail closed).
    async fn audit_durably(
        &self,
        entry: AuditRec,
        status: Option<Status>,
        code: Option<String>,
    ) -> Result<(), Status> {
        let a = self.clone();
        let written = tokio::task::spawn_blocking(move || a.audit(entry, status.as_ref(), code.as_deref()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let flushed = match written {
            Ok(()) => self.store.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        flushed.map_err(|e| {
            tracing::error!(error = %e, "audit entry not durable: call refused");
            crate::error::unavailable(
                "the audit log cannot be written (collector storage full or failing): the call is refused and its result withheld; retry later",
            )
        })
    }
}

/// The Operator service behind authorisation and the audit log.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Auth,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, auth: Auth) -> Guarded<S> {
        Guarded { inner, auth }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

fn grpc_code_name(v: &http::HeaderValue) -> Option<String> {
    let n: i32 = v.to_str().ok()?.parse().ok()?;
    (n != 0).then(|| format!("{:?}", tonic::Code::from_i32(n)))
}

impl<S> tower::Service<http::Request<Body>> for Guarded<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_string();
        let auth = self.auth.clone();
        // The clone that was made ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let id = identity_http(&req);
        let started = std::time::Instant::now();
        Box::pin(async move {
            let caller = match auth.operator_call(id, &method) {
                Ok(c) => c,
                Err((status, entry)) => {
                    tracing::warn!(%method, operator = %entry.operator, reason = %status.message(), "operator call refused");
                    auth.metrics.operator_call(&method, &format!("{:?}", status.code()), started.elapsed());
                    if let Err(refusal) = auth.audit_durably(entry, Some(status.clone()), None).await {
                        return Ok(refusal.into_http());
                    }
                    return Ok(status.into_http());
                }
            };
            req.extensions_mut().insert(caller.clone());
            let resp = inner.call(req).await?;
            let code = resp.headers().get("grpc-status").and_then(grpc_code_name);
            let message = resp
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode)
                .unwrap_or_default();
            let note = std::mem::take(&mut *caller.note.lock().unwrap_or_else(|p| p.into_inner()));
            let entry = AuditRec {
                operator: caller.name.clone(),
                role: caller.role.as_str().into(),
                operator_agency: caller.agency.clone().unwrap_or_default(),
                action: method.clone(),
                target: note.target,
                detail: if note.detail.is_empty() {
                    message.chars().take(300).collect()
                } else {
                    note.detail
                },
                ..Default::default()
            };
            if code.as_deref() == Some("PermissionDenied") {
                tracing::warn!(%method, operator = %caller.name, "operator call refused");
            }
            auth.metrics.operator_call(&method, code.as_deref().unwrap_or("Ok"), started.elapsed());
            match auth.audit_durably(entry, None, code).await {
                Ok(()) => Ok(resp),
                Err(refusal) => Ok(refusal.into_http()),
            }
        })
    }
}

/// Decodes the percent-encoding of `grpc-message`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The caller attached by the interceptor.
pub fn agent<T>(req: &Request<T>) -> Result<AgentCaller, Status> {
    req.extensions()
        .get::<AgentCaller>()
        .cloned()
        .ok_or_else(|| crate::error::unauthenticated("no agent identity"))
}

pub fn operator<T>(req: &Request<T>) -> Result<OperatorCaller, Status> {
    req.extensions()
        .get::<OperatorCaller>()
        .cloned()
        .ok_or_else(|| crate::error::unauthenticated("no operator identity"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Every method of the Operator service has an access rule: a new RPC
    /// cannot be added without deciding who may call it.
    #[test]
    fn every_operator_method_has_an_access_rule() {
        let fds = prost_types::FileDescriptorSet::decode(canhgac_proto::FILE_DESCRIPTOR_SET).unwrap();
        let svc = fds.file.iter().flat_map(|f| f.service.iter()).find(|s| s.name() == "Operator").unwrap();
        assert!(svc.method.len() >= 30);
        for m in &svc.method {
            assert!(access(m.name()).is_some(), "no access rule for {}", m.name());
        }
        assert_eq!(access("Nope"), None);
    }

    #[test]
    fn roles() {
        assert!(allowed(Role::Auditor, Access::Read) && !allowed(Role::Auditor, Access::Note));
        assert!(allowed(Role::Agency, Access::Note) && !allowed(Role::Agency, Access::Operate));
        assert!(allowed(Role::Agency, Access::Registry) && !allowed(Role::Analyst, Access::Registry));
        assert!(!allowed(Role::Auditor, Access::Registry) && allowed(Role::Admin, Access::Registry));
        assert!(allowed(Role::Analyst, Access::Operate) && !allowed(Role::Analyst, Access::Admin));
        assert!(!allowed(Role::Analyst, Access::Audit) && allowed(Role::Auditor, Access::Audit));
        let c = OperatorCaller {
            name: "a".into(),
            role: Role::Agency,
            agency: Some("A".into()),
            note: Arc::default(),
        };
        assert_eq!(c.agency_filter("").unwrap(), Some("A".into()));
        assert!(c.agency_filter("B").is_err());
        assert!(c.may_see("B").is_err() && c.may_see("A").is_ok());
        assert_eq!(percent_decode("a%20b%"), "a b%");
    }
}
