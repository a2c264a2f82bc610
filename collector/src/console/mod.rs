//! The operator console: server-rendered pages over HTTPS (the collector's
//! server certificate), served beside the gRPC port.
//!
//! **One authority.** Every page is built from calls to the operator API,
//! made in-process through the same `Guarded` service the network uses,
//! as the signed-in operator ([`crate::auth::ConsoleOperator`]): roles,
//! tenancy and the audit log apply to the console exactly as to the CLI,
//! and nothing here reads the store to decide what an operator may see.
//! Sign-ins, sign-outs and refused forms are audited too.
//!
//! **Sessions.** Sign-in by user name and password (argon2id, set with
//! `canhgac operator passwd`); five failures in 15 minutes lock the name
//! for 15 minutes. A session is a random token in a `Secure; HttpOnly;
//! SameSite=Strict` cookie, ends after `console.idle_timeout` without use,
//! and carries a CSRF token every form must return.
//!
//! **Bound to a certificate** (`console.bind_client_certificate`): the
//! console then asks for a client certificate of the collector's CA; a
//! name signs in only over a connection presenting that operator's own
//! certificate (`urn:canhgac:operator:NAME`, not revoked), and its session
//! is honoured only on connections presenting the same certificate, so a
//! password or a cookie alone is not enough.

pub mod pages;
pub mod password;
pub mod registry;
pub mod svg;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Form, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use canhgac_proto::v1::operator_client::OperatorClient;
use serde::Deserialize;
use tokio::{net::TcpListener, sync::watch};
use tonic::body::Body;

use crate::{
    auth::{Auth, ConsoleOperator},
    report::Lang,
    store::Store,
};

/// Failures that lock a user name, and the window they are counted in.
pub const LOCKOUT_FAILURES: usize = 5;
pub const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
const COOKIE: &str = "canhgac_session";
const LOGIN_COOKIE: &str = "canhgac_login";
/// Sessions end after this long without use, by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// Largest form accepted (bytes).
const MAX_FORM: usize = 64 * 1024;

/// The operator API as a tower service, called in-process.
pub type Api = crate::auth::Guarded<
    canhgac_proto::v1::operator_server::OperatorServer<crate::service::operator::OperatorService>,
>;

/// The API with the session's operator attached to every call.
#[derive(Clone)]
pub struct AsOperator {
    api: Api,
    operator: String,
}

impl tower::Service<http::Request<Body>> for AsOperator {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = <Api as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::poll_ready(&mut self.api, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        req.extensions_mut().insert(ConsoleOperator(self.operator.clone()));
        tower::Service::call(&mut self.api, req)
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: String,
    pub role: String,
    pub agency: String,
    pub csrf: String,
    pub lang: Lang,
    /// The operator certificate of the connection that signed in (bound
    /// consoles).
    pub peer: Option<String>,
    last: Instant,
}

/// The operator named by the client certificate of a request's connection
/// (`None`: no certificate, or the console is not bound).
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<String>);

/// Console settings.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
    pub idle_timeout: Duration,
    /// Sign-in needs the operator's client certificate as well.
    pub bind_client_certificate: bool,
}

pub struct Console {
    store: Store,
    auth: Auth,
    api: Api,
    idle: Duration,
    bind: bool,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("x=; Path=/"))
}

/// A page refusing something, with its status.
pub fn refusal(status: StatusCode, lang: Lang, message: &str) -> Response {
    (status, Html(pages::message_page(lang, status, message).into_string())).into_response()
}

impl Console {
    pub fn new(store: Store, auth: Auth, api: Api, idle: Duration, bind: bool) -> Console {
        Console { store, auth, api, idle, bind, sessions: Mutex::default(), failures: Mutex::default() }
    }

    /// The API as this session's operator.
    pub fn api(&self, s: &Session) -> OperatorClient<AsOperator> {
        OperatorClient::new(AsOperator { api: self.api.clone(), operator: s.operator.clone() })
    }

    /// The session of a request, refreshed; `None` when absent or idle.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let tok = cookie_of(headers, COOKIE)?;
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        map.retain(|_, s| s.last.elapsed() < idle);
        let s = map.get_mut(&tok)?;
        s.last = Instant::now();
        Some((tok, s.clone()))
    }

    /// The session of a request without counting it as use.
    fn session_peek(&self, headers: &HeaderMap) -> Option<Session> {
        let tok = cookie_of(headers, COOKIE)?;
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&tok).filter(|s| s.last.elapsed() < self.idle).cloned()
    }

    fn locked(&self, name: &str) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let list = f.entry(name.to_string()).or_default();
        list.retain(|t| t.elapsed() < LOCKOUT_WINDOW);
        list.len() >= LOCKOUT_FAILURES
    }

    fn failed(&self, name: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(name.to_string()).or_default().push(Instant::now());
    }
}

type Shared = Arc<Console>;

/// A request's session, or the sign-in page.
pub enum Signed {
    In(Session),
    Out(Response),
}

fn signed(c: &Console, headers: &HeaderMap) -> Signed {
    match c.session(headers) {
        Some((_, s)) => Signed::In(s),
        None => Signed::Out(Redirect::to("/login").into_response()),
    }
}

macro_rules! session_or_login {
    ($c:expr, $h:expr) => {
        match signed(&$c, &$h) {
            Signed::In(s) => s,
            Signed::Out(r) => return r,
        }
    };
}

/// Checks a form's CSRF token; a mismatch is refused and audited.
async fn csrf_ok(c: &Console, s: &Session, given: &str, what: &str) -> Result<(), Response> {
    if !given.is_empty() && constant_eq(given.as_bytes(), s.csrf.as_bytes()) {
        return Ok(());
    }
    let _ =
        c.auth.audit_console(&s.operator, "ConsoleForm", what, Some("forged or missing CSRF token")).await;
    tracing::warn!(operator = %s.operator, form = what, "console form refused: bad CSRF token");
    Err(refusal(StatusCode::FORBIDDEN, s.lang, "forged or missing form token: nothing was changed"))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_token: String,
}

async fn login_page(headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let tok = token();
    let mut r = Html(pages::login(lang, &tok, None).into_string()).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &tok, Some(900)));
    r
}

fn lang_of(headers: &HeaderMap) -> Lang {
    match cookie_of(headers, "canhgac_lang").as_deref() {
        Some("en") => Lang::En,
        _ => Lang::Vi,
    }
}

async fn login(
    State(c): State<Shared>,
    axum::Extension(peer): axum::Extension<Peer>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    let again = |msg: &str| {
        let tok = token();
        let mut r = (StatusCode::UNAUTHORIZED, Html(pages::login(lang, &tok, Some(msg)).into_string()))
            .into_response();
        r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &tok, Some(900)));
        r
    };
    let name: String = f.username.trim().chars().take(64).collect();
    let expected = cookie_of(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_eq(expected.as_bytes(), f.login_token.as_bytes()) {
        let _ = c
            .auth
            .audit_console(&name, "ConsoleSignIn", "console", Some("forged or missing sign-in token"))
            .await;
        return again("the sign-in form expired; try again");
    }
    if c.locked(&name) {
        let _ = c
            .auth
            .audit_console(&name, "ConsoleSignIn", "console", Some("locked after repeated failures"))
            .await;
        return again("too many failed sign-ins: this user name is locked for 15 minutes");
    }
    let rec = c.store.operator(&name).ok().flatten();
    let (password, phc) =
        (f.password.clone(), rec.as_ref().map(|r| r.password_hash.clone()).unwrap_or_default());
    let good = tokio::task::spawn_blocking(move || password::verify(&password, &phc)).await.unwrap_or(false);
    let rec = match rec {
        Some(r) if good && r.revoked_us == 0 => r,
        _ => {
            c.failed(&name);
            let _ = c
                .auth
                .audit_console(&name, "ConsoleSignIn", "console", Some("wrong user name or password"))
                .await;
            tracing::warn!(operator = %name, "console sign-in refused");
            return again("wrong user name or password");
        }
    };
    if c.bind && peer.0.as_deref() != Some(rec.name.as_str()) {
        let why = match &peer.0 {
            None => "no client certificate".to_string(),
            Some(other) => format!("the client certificate is operator `{other}`'s"),
        };
        let _ = c
            .auth
            .audit_console(
                &name,
                "ConsoleSignIn",
                "console",
                Some(&format!("certificate-bound sign-in: {why}")),
            )
            .await;
        tracing::warn!(operator = %name, reason = %why, "console sign-in refused: not the operator's certificate");
        return again("this console signs in only with your operator certificate: present it in the browser");
    }
    if let Err(e) = c.auth.audit_console(&name, "ConsoleSignIn", "console", None).await {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, lang, e.message());
    }
    let tok = token();
    let lang = Lang::parse(&rec.language).unwrap_or(lang);
    let s = Session {
        operator: rec.name.clone(),
        role: rec.role.clone(),
        agency: rec.agency.clone(),
        csrf: token(),
        lang,
        peer: peer.0.clone(),
        last: Instant::now(),
    };
    c.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(tok.clone(), s);
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(COOKIE, &tok, None));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
}

async fn logout(State(c): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some((tok, s)) = c.session(&headers) else { return Redirect::to("/login").into_response() };
    if let Err(r) = csrf_ok(&c, &s, &f.csrf, "sign out").await {
        return r;
    }
    c.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&tok);
    let _ = c.auth.audit_console(&s.operator, "ConsoleSignOut", "console", None).await;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(COOKIE, "", Some(0)));
    r
}

async fn set_lang(State(c): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let Some((tok, s)) = c.session(&headers) else { return Redirect::to("/login").into_response() };
    if let Err(r) = csrf_ok(&c, &s, &f.csrf, "language").await {
        return r;
    }
    let lang = Lang::parse(&f.lang).unwrap_or(Lang::Vi);
    if let Some(x) = c.sessions.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&tok) {
        x.lang = lang;
    }
    // remembered per user
    let _ = c.store.update_operator(&s.operator, |o| o.language = lang.code().into());
    let _ = c.store.flush().await;
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").and_then(|i| r[i + 3..].find('/').map(|j| r[i + 3 + j..].to_string())))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    let mut r = Redirect::to(&back).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie("canhgac_lang", lang.code(), Some(365 * 86_400)));
    r
}

async fn overview(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = session_or_login!(c, headers);
    pages::overview(&c, &s).await
}

async fn alerts(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<pages::AlertFilter>,
) -> Response {
    let s = session_or_login!(c, headers);
    pages::alerts(&c, &s, q).await
}

async fn alert_rows(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<pages::RowsQuery>,
) -> Response {
    // polling is not use: it does not keep an idle session alive
    let Some(s) = c.session_peek(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    pages::alert_rows_after(&c, &s, q).await
}

async fn incidents(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<pages::IncidentFilter>,
) -> Response {
    let s = session_or_login!(c, headers);
    pages::incidents(&c, &s, q).await
}

async fn incident(State(c): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = session_or_login!(c, headers);
    let Ok(id) = id.parse::<u64>() else {
        return refusal(StatusCode::NOT_FOUND, s.lang, "no such incident");
    };
    pages::incident(&c, &s, id).await
}

async fn incident_action(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<pages::ActionForm>,
) -> Response {
    let s = session_or_login!(c, headers);
    if let Err(r) = csrf_ok(&c, &s, &f.csrf, &format!("incident {id}")).await {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return refusal(StatusCode::NOT_FOUND, s.lang, "no such incident");
    };
    pages::incident_action(&c, &s, id, f).await
}

async fn agents(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = session_or_login!(c, headers);
    pages::agents(&c, &s).await
}

async fn reports(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = session_or_login!(c, headers);
    pages::reports(&c, &s).await
}

async fn report_stored(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<pages::StoredQuery>,
) -> Response {
    let s = session_or_login!(c, headers);
    pages::report_stored(&c, &s, q).await
}

async fn report_download(
    State(c): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<pages::ReportQuery>,
) -> Response {
    let s = session_or_login!(c, headers);
    pages::report_download(&c, &s, q).await
}

async fn agent_revoke(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<pages::RevokeForm>,
) -> Response {
    let s = session_or_login!(c, headers);
    if let Err(r) = csrf_ok(&c, &s, &f.csrf, "revoke agent").await {
        return r;
    }
    pages::agent_revoke(&c, &s, f).await
}

async fn registry_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let s = session_or_login!(c, headers);
    registry::registry(&c, &s).await
}

async fn agency_form(State(c): State<Shared>, headers: HeaderMap, Path(code): Path<String>) -> Response {
    let s = session_or_login!(c, headers);
    registry::agency_form(&c, &s, &code).await
}

async fn agency_save(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Form(f): Form<registry::EditForm>,
) -> Response {
    let s = session_or_login!(c, headers);
    let token = f.get("csrf").cloned().unwrap_or_default();
    if let Err(r) = csrf_ok(&c, &s, &token, &format!("agency {code}")).await {
        return r;
    }
    registry::agency_save(&c, &s, &code, f).await
}

async fn system_form(State(c): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let s = session_or_login!(c, headers);
    let Ok(id) = id.parse::<u64>() else {
        return refusal(StatusCode::NOT_FOUND, s.lang, "no such system");
    };
    registry::system_form(&c, &s, id).await
}

async fn system_save(
    State(c): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<registry::EditForm>,
) -> Response {
    let s = session_or_login!(c, headers);
    let token = f.get("csrf").cloned().unwrap_or_default();
    if let Err(r) = csrf_ok(&c, &s, &token, &format!("system {id}")).await {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return refusal(StatusCode::NOT_FOUND, s.lang, "no such system");
    };
    registry::system_save(&c, &s, id, f).await
}

async fn registry_import(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<registry::ImportForm>,
) -> Response {
    let s = session_or_login!(c, headers);
    if let Err(r) = csrf_ok(&c, &s, &f.csrf, "registry import").await {
        return r;
    }
    registry::import(&c, &s, f).await
}

/// The console's routes.
pub fn router(c: Shared) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/lang", post(set_lang))
        .route("/", get(overview))
        .route("/alerts", get(alerts))
        .route("/alerts/rows", get(alert_rows))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/action", post(incident_action))
        .route("/agents", get(agents))
        .route("/agents/revoke", post(agent_revoke))
        .route("/registry", get(registry_page))
        .route("/registry/import", post(registry_import))
        .route("/registry/agency/{code}", get(agency_form).post(agency_save))
        .route("/registry/system/{id}", get(system_form).post(system_save))
        .route("/reports", get(reports))
        .route("/reports/download", get(report_download))
        .route("/reports/stored", get(report_stored))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::from_fn_with_state(c.clone(), bound_sessions))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(c)
}

/// On a bound console, a session is honoured only on connections that
/// present the certificate it signed in with.
async fn bound_sessions(
    State(c): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if c.bind {
        let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
        if let Some(s) = c.session_peek(req.headers())
            && s.peer != peer.0
        {
            let _ = c
                .auth
                .audit_console(
                    &s.operator,
                    "ConsoleSession",
                    "console",
                    Some("session used without its certificate"),
                )
                .await;
            return refusal(StatusCode::FORBIDDEN, s.lang, "this session belongs to another certificate");
        }
    }
    next.run(req).await
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serves the console on `listener` over TLS until `shutdown`.
pub async fn serve(
    console: Shared,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(console);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::registry::until_true(&mut shutdown) => break,
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        conns.spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "console TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // who the connection's certificate names (bound consoles ask for one)
            let who = Peer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| canhgac_proto::identity::Identity::from_cert_der(der).ok())
                    .and_then(|id| match id {
                        canhgac_proto::identity::Identity::Operator(name) => Some(name),
                        canhgac_proto::identity::Identity::Agent(_) => None,
                    }),
            );
            let app = app.layer(axum::Extension(who));
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await {
                tracing::debug!(%peer, error = %e, "console connection ended");
            }
        });
        while conns.try_join_next().is_some() {}
    }
    conns.shutdown().await;
}
