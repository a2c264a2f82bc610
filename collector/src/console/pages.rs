//! The console's pages (maud). Each handler asks the operator API for what
//! it shows, as the signed-in operator; a refusal becomes a page saying so.

use std::collections::BTreeMap;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use canhgac_proto::{timefmt, v1::*};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{Console, Session, refusal, svg};
use crate::report::{
    Lang,
    text::{Text, VIETNAM},
};

const CSS: &str = "body{font-family:'DejaVu Sans','Noto Sans',Arial,sans-serif;margin:0;color:#111;background:#fafbfc}\
header{background:#1f3b57;color:#fff;padding:.5em 1em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#fff}header nav a{margin-right:1em}header nav a[aria-current]{font-weight:bold;text-decoration:underline}\
header form{display:inline;margin:0}main{padding:1em 1.5em}table{border-collapse:collapse;width:100%;margin:.4em 0 1.2em}\
th,td{border:1px solid #bbb;padding:.25em .45em;text-align:left;vertical-align:top;font-size:.92em}th{background:#e8eef5}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em}.card{background:#fff;border:1px solid #ccd;padding:.6em 1em}\
.bad{color:#8a1c1c;font-weight:bold}.ok{color:#1c6b2a}label{display:inline-block;margin:.2em .6em .2em 0}\
figure.chart{margin:.3em 0}figcaption{font-weight:bold;margin-bottom:.2em}button{cursor:pointer}";

pub(super) fn t(s: &Session) -> Text {
    Text(s.lang)
}

pub(super) fn vn(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref()
        .map(|t| {
            let t = timefmt::from_timestamp(t).to_offset(VIETNAM);
            format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), t.month() as u8, t.day(), t.hour(), t.minute())
        })
        .unwrap_or_else(|| "-".into())
}

/// A whole page for a signed-in operator.
pub fn layout(s: &Session, title: &str, active: &str, body: Markup) -> Markup {
    let tx = t(s);
    let nav = [
        ("/", "overview"),
        ("/alerts", "nav_alerts"),
        ("/incidents", "nav_incidents"),
        ("/agents", "nav_agents"),
        ("/registry", "nav_registry"),
        ("/reports", "nav_reports"),
    ];
    html! {
        (DOCTYPE)
        html lang=(s.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · canhgac" }
                style { (PreEscaped(CSS)) (PreEscaped(crate::report::render::REPORT_CSS)) }
            }
            body {
                header {
                    strong { "canhgac" }
                    nav aria-label=(tx.get("console")) {
                        @for (href, key) in nav {
                            @if key == active { a href=(href) aria-current="page" { (tx.get(key)) } }
                            @else { a href=(href) { (tx.get(key)) } }
                        }
                    }
                    span { (tx.get("signed_in_as")) " " strong #operator { (s.operator) } " (" (s.role)
                        @if !s.agency.is_empty() { ", " (s.agency) } ")" }
                    form method="post" action="/lang" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        @if s.lang == Lang::Vi {
                            button name="lang" value="en" { "English" }
                        } @else {
                            button name="lang" value="vi" { "Tiếng Việt" }
                        }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button #signout { (tx.get("sign_out")) }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The sign-in page.
pub fn login(lang: Lang, token: &str, error: Option<&str>) -> Markup {
    let tx = Text(lang);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { meta charset="utf-8"; title { (tx.get("sign_in")) " · canhgac" } style { (PreEscaped(CSS)) } }
            body {
                main {
                    h1 { (tx.get("console")) }
                    @if let Some(e) = error { p.bad role="alert" #error { (e) } }
                    form method="post" action="/login" {
                        input type="hidden" name="login_token" value=(token);
                        p { label for="username" { (tx.get("username")) } input #username name="username" autocomplete="username" required; }
                        p { label for="password" { (tx.get("password")) } input #password type="password" name="password" autocomplete="current-password" required; }
                        button #signin type="submit" { (tx.get("sign_in")) }
                    }
                }
            }
        }
    }
}

/// A page saying why something was refused.
pub fn message_page(lang: Lang, status: StatusCode, message: &str) -> Markup {
    let tx = Text(lang);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { meta charset="utf-8"; title { (tx.get("refused")) " · canhgac" } style { (PreEscaped(CSS)) } }
            body { main {
                h1 { (tx.get("refused")) " (" (status.as_u16()) ")" }
                p.bad role="alert" #refusal { (message) }
                p { a href="/" { (tx.get("back")) } }
            } }
        }
    }
}

/// The page for a refused or failed API call.
pub(super) fn api_error(s: &Session, e: tonic::Status) -> Response {
    let status = match e.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => {
            StatusCode::BAD_REQUEST
        }
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refusal(status, s.lang, e.message())
}

pub(super) fn page(s: &Session, title: &str, active: &str, body: Markup) -> Response {
    Html(layout(s, title, active, body).into_string()).into_response()
}

macro_rules! call {
    ($s:expr, $e:expr) => {
        match $e.await {
            Ok(r) => r.into_inner(),
            Err(e) => return api_error($s, e),
        }
    };
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub async fn overview(c: &Console, s: &Session) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let cov = call!(s, api.get_coverage(GetCoverageRequest::default()));
    let open = call!(
        s,
        api.list_incidents(ListIncidentsRequest { open_only: true, limit: 500, ..Default::default() })
    );
    let since = now() - time::Duration::hours(24);
    let alerts = call!(
        s,
        api.list_alerts(ListAlertsRequest {
            since: Some(timefmt::to_timestamp(since)),
            limit: 10_000,
            ..Default::default()
        })
    );
    let mut silent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in cov.agents.iter().filter(|a| !a.online) {
        silent.entry(a.agency.clone()).or_default().push(a.hostname.clone());
    }
    let overdue: Vec<&Incident> = open.incidents.iter().filter(|i| i.overdue).collect();
    let mut due: Vec<&Incident> =
        open.incidents.iter().filter(|i| !i.overdue && i.deadline.is_some()).collect();
    due.sort_by_key(|i| i.deadline.as_ref().map(|d| (d.seconds, d.nanos)));
    let mut by_sev: BTreeMap<u32, u64> = BTreeMap::new();
    let mut by_det: BTreeMap<String, u64> = BTreeMap::new();
    for a in &alerts.alerts {
        *by_sev.entry(a.severity).or_default() += 1;
        let d =
            a.facts.as_ref().map(|f| f.detector.clone()).filter(|d| !d.is_empty()).unwrap_or("rule".into());
        *by_det.entry(d).or_default() += 1;
    }
    let sev_data: Vec<(String, u64)> = (1..=4)
        .map(|sev| (format!("{} {sev}", tx.get("severity")), by_sev.get(&sev).copied().unwrap_or(0)))
        .collect();
    let mut det_data: Vec<(String, u64)> = by_det.into_iter().collect();
    det_data.sort_by_key(|d| std::cmp::Reverse(d.1));
    det_data.truncate(10);
    let incident_rows = |list: &[&Incident]| {
        html! {
            table {
                thead { tr { th { "#" } th { (tx.get("agency")) } th { (tx.get("category")) } th { (tx.get("system")) } th { (tx.get("deadline")) } } }
                tbody { @for i in list.iter().take(10) {
                    tr {
                        td { a href=(format!("/incidents/{}", i.id)) { (i.id) } }
                        td { (i.agency) }
                        td { (i.category_name) }
                        td { @if i.system == 0 { (tx.get("unattributed")) } @else { (i.system_name) } }
                        td { @if i.overdue { span.bad { (tx.get("overdue")) } } " " (vn(&i.deadline)) }
                    }
                } }
            }
        }
    };
    let body = html! {
        div.grid {
            section.card #silent {
                h2 { (tx.get("silent_agents")) }
                @if silent.is_empty() { p.ok { (tx.get("none")) } }
                @else { ul { @for (agency, hosts) in &silent { li { strong.bad { (agency) } ": " (hosts.join(", ")) } } } }
            }
            section.card #overdue {
                h2 { (tx.get("overdue_incidents")) " (" (overdue.len()) ")" }
                @if overdue.is_empty() { p.ok { (tx.get("none")) } } @else { (incident_rows(&overdue)) }
            }
            section.card #due {
                h2 { (tx.get("due_soonest")) }
                @if due.is_empty() { p { (tx.get("none")) } } @else { (incident_rows(&due)) }
            }
            section.card #alerts24h {
                h2 { (tx.get("alerts_24h")) " (" (alerts.alerts.len()) ")" }
                (svg::bars(tx.get("severity"), &sev_data))
                (svg::bars(tx.get("detector"), &det_data))
            }
        }
        section #coverage {
            h2 { (tx.get("coverage")) }
            table {
                thead { tr {
                    th { (tx.get("agency")) } th { (tx.get("layers")) } th { (tx.get("agents")) }
                    th { (tx.get("unsupervised")) } th { (tx.get("missing_contacts")) } th { (tx.get("assessment_overdue")) }
                    th { (tx.get("nav_incidents")) } th { (tx.get("secret_scan")) }
                } }
                tbody { @for a in &cov.agencies {
                    tr {
                        td { (a.name) " (" (a.agency) ")" }
                        td { @for l in &a.layers { @if l.ok { span.ok { "✓ " } } @else { span.bad { "✗ " } } (l.name) br; } }
                        td { @if a.agents_online < a.agents { span.bad { (a.agents_online) "/" (a.agents) } } @else { (a.agents_online) "/" (a.agents) } }
                        td { (a.systems_unsupervised.len()) }
                        td { @if a.missing_contacts.is_empty() { "-" } @else { span.bad { (a.missing_contacts.join(", ")) } } }
                        td { @if a.agency_assessment_overdue || !a.systems_assessment_overdue.is_empty() { span.bad { (tx.get("yes")) } } @else { (tx.get("no")) } }
                        td { (a.open_incidents) " / " @if a.overdue_incidents > 0 { span.bad { (a.overdue_incidents) } } @else { "0" } }
                        td { (a.secret_scan_hosts) "/" (a.agents) @if a.secret_scan_last_completed.is_some() { br; (vn(&a.secret_scan_last_completed)) } }
                    }
                } }
            }
        }
    };
    page(s, tx.get("overview"), "overview", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertFilter {
    #[serde(default)]
    pub agency: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub detector: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub signature_id: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub hours: String,
}

/// The filter's request, or why it is refused.
fn alert_request(q: &AlertFilter) -> Result<(ListAlertsRequest, u64), String> {
    let num = |v: &str, what: &str| -> Result<u64, String> {
        if v.trim().is_empty() {
            return Ok(0);
        }
        v.trim().parse::<u64>().map_err(|_| format!("{what}: `{v}` is not a number"))
    };
    let (sev, sid, system, hours) = (
        num(&q.severity, "severity")?,
        num(&q.signature_id, "signature_id")?,
        num(&q.system, "system")?,
        num(&q.hours, "hours")?,
    );
    let hours = if hours == 0 { 24 } else { hours.min(24 * 366) };
    let req = ListAlertsRequest {
        agency: q.agency.trim().to_string(),
        min_severity: sev.min(4) as u32,
        since: Some(timefmt::to_timestamp(now() - time::Duration::hours(hours as i64))),
        limit: 500,
        ip: q.ip.trim().to_string(),
        signature_id: sid,
        detector: q.detector.trim().to_string(),
        system,
        ..Default::default()
    };
    Ok((req, hours))
}

/// Table rows of alerts, each carrying its store cursor.
fn alert_rows(alerts: &[&StoredAlert]) -> Markup {
    html! {
        @for a in alerts {
            @let f = a.facts.clone().unwrap_or_default();
            @let end = |e: &Option<Endpoint>| e.as_ref().map(|e| if e.port == 0 { e.ip.clone() } else { format!("{}:{}", e.ip, e.port) }).unwrap_or_default();
            tr data-cursor=(a.cursor) {
                td { (vn(&a.time)) }
                td { (a.severity) }
                td { (a.agency) }
                td { (if f.detector.is_empty() { "rule".to_string() } else { f.detector.clone() }) }
                td { (f.signature) " (" (f.signature_id) ")" }
                td { (end(&f.src)) " → " (end(&f.dest)) }
                td { details { summary { "JSON" } pre { (a.eve_json) } } }
            }
        }
    }
}

/// New alerts appear at the top of the table without a reload: the page
/// asks `/alerts/rows` for rows after the highest cursor it shows.
const LIVE_JS: &str = "(function(){var tb=document.querySelector('#alerts tbody');var max=+tb.dataset.cursor||0;\
var n=document.getElementById('live-new');var got=0;\
setInterval(function(){var q=location.search?'&'+location.search.slice(1):'';\
fetch('/alerts/rows?after='+max+q,{credentials:'same-origin'}).then(function(r){if(!r.ok)throw new Error(r.status);return r.text()})\
.then(function(h){if(!h.trim())return;var t=document.createElement('tbody');t.innerHTML=h;var rows=Array.prototype.slice.call(t.rows);\
for(var i=rows.length-1;i>=0;i--){tb.insertBefore(rows[i],tb.firstChild);max=Math.max(max,+rows[i].dataset.cursor);}\
got+=rows.length;n.textContent='+'+got;}).catch(function(){n.textContent='!';});},3000);})();";

pub async fn alerts(c: &Console, s: &Session, q: AlertFilter) -> Response {
    let tx = t(s);
    let (req, hours) = match alert_request(&q) {
        Ok(x) => x,
        Err(m) => return refusal(StatusCode::BAD_REQUEST, s.lang, &m),
    };
    let mut api = c.api(s);
    let r = call!(s, api.list_alerts(req));
    let highest = r.alerts.iter().map(|a| a.cursor).max().unwrap_or(0);
    let rows: Vec<&StoredAlert> = r.alerts.iter().collect();
    let body = html! {
        form method="get" action="/alerts" {
            label { (tx.get("agency")) " " input name="agency" value=(q.agency) size="10"; }
            label { (tx.get("severity")) " ≤ " input name="severity" value=(q.severity) size="2"; }
            label { (tx.get("detector")) " " input name="detector" value=(q.detector) size="10"; }
            label { (tx.get("signature_id")) " " input name="signature_id" value=(q.signature_id) size="9"; }
            label { (tx.get("ip")) " " input name="ip" value=(q.ip) size="15"; }
            label { (tx.get("system")) " " input name="system" value=(q.system) size="4"; }
            label { (tx.get("hours")) " " input name="hours" value=(hours) size="4"; }
            button { (tx.get("filter")) }
        }
        p { small { (tx.get("live")) " " span #live-new aria-live="polite" {} } }
        table #alerts {
            thead { tr {
                th { (tx.get("time")) } th { (tx.get("severity")) } th { (tx.get("agency")) } th { (tx.get("detector")) }
                th { (tx.get("signature")) } th { "src → dest" } th { "EVE" }
            } }
            tbody data-cursor=(highest) { (alert_rows(&rows)) }
        }
        script { (PreEscaped(LIVE_JS)) }
    };
    page(s, tx.get("nav_alerts"), "nav_alerts", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct RowsQuery {
    #[serde(default)]
    pub after: String,
    #[serde(flatten)]
    pub filter: AlertFilter,
}

/// Rows of the alerts stored after cursor `after` that match the filter,
/// newest first (an HTML fragment for the live table).
pub async fn alert_rows_after(c: &Console, s: &Session, q: RowsQuery) -> Response {
    let Ok(after) = q.after.trim().parse::<u64>() else {
        return refusal(StatusCode::BAD_REQUEST, s.lang, "after: a cursor number is needed");
    };
    let (req, _) = match alert_request(&q.filter) {
        Ok(x) => x,
        Err(m) => return refusal(StatusCode::BAD_REQUEST, s.lang, &m),
    };
    let mut api = c.api(s);
    let r = call!(s, api.list_alerts(req));
    let mut fresh: Vec<&StoredAlert> = r.alerts.iter().filter(|a| a.cursor > after).collect();
    fresh.sort_by_key(|a| std::cmp::Reverse(a.cursor));
    Html(alert_rows(&fresh).into_string()).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct IncidentFilter {
    #[serde(default)]
    pub agency: String,
    #[serde(default)]
    pub open: String,
}

pub async fn incidents(c: &Console, s: &Session, q: IncidentFilter) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let open_only = q.open == "1";
    let r = call!(
        s,
        api.list_incidents(ListIncidentsRequest {
            agency: q.agency.trim().to_string(),
            open_only,
            limit: 500,
            ..Default::default()
        })
    );
    let body = html! {
        form method="get" action="/incidents" {
            label { (tx.get("agency")) " " input name="agency" value=(q.agency) size="10"; }
            label { input type="checkbox" name="open" value="1" checked[open_only]; " " (tx.get("open_only")) }
            button { (tx.get("filter")) }
        }
        table #incidents {
            thead { tr {
                th { "#" } th { (tx.get("agency")) } th { (tx.get("system")) } th { (tx.get("category")) }
                th { (tx.get("attacker")) } th { (tx.get("victim")) } th { (tx.get("state")) } th { (tx.get("severity")) }
                th { (tx.get("alerts")) } th { (tx.get("deadline")) }
            } }
            tbody { @for i in &r.incidents {
                tr {
                    td { a href=(format!("/incidents/{}", i.id)) { (i.id) } }
                    td { (i.agency) }
                    td { @if i.system == 0 { (tx.get("unattributed")) } @else { (i.system_name) " (" (i.system_level) ")" } }
                    td { (i.category_name) }
                    td { (i.attackers.join(", ")) }
                    td { (i.victims.join(", ")) }
                    td { (tx.state(&i.state)) @if i.dismissed { " (" (i.close_reason) ")" } }
                    td { (i.severity) }
                    td { (i.alert_count) }
                    td { @if i.overdue { span.bad { (tx.get("overdue")) } " " } (vn(&i.deadline)) }
                }
            } }
        }
    };
    page(s, tx.get("nav_incidents"), "nav_incidents", body)
}

pub async fn incident(c: &Console, s: &Session, id: u64) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let d = call!(s, api.get_incident(GetIncidentRequest { id, alert_limit: 50 }));
    let Some(i) = d.incident else {
        return refusal(StatusCode::NOT_FOUND, s.lang, "no such incident");
    };
    let next = crate::incident::State::parse(&i.state).and_then(|st| st.next());
    let body = html! {
        dl #summary {
            dt { (tx.get("agency")) } dd { (i.agency) }
            dt { (tx.get("system")) } dd { @if i.system == 0 { (tx.get("unattributed")) } @else { (i.system_name) " (" (tx.get("level")) " " (i.system_level) ")" } }
            dt { (tx.get("category")) } dd { (i.category_name) }
            dt { (tx.get("state")) } dd #state { (tx.state(&i.state)) }
            dt { (tx.get("attacker")) } dd #attacker { (i.attackers.join(", ")) }
            dt { (tx.get("victim")) } dd #victim { (i.victims.join(", ")) }
            dt { (tx.get("severity")) } dd { (i.severity) @if i.serious { " — " span.bad { (i.serious_reason) } } }
            dt { (tx.get("first_seen")) } dd { (vn(&i.first_seen)) }
            dt { (tx.get("deadline")) } dd { @if i.overdue { span.bad { (tx.get("overdue")) } " " } (vn(&i.deadline)) }
        }
        section.noprint {
            @if let Some(n) = next {
                form method="post" action=(format!("/incidents/{id}/action")) #transition {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="action" value="transition";
                    input type="hidden" name="state" value=(n.as_str());
                    label { (tx.get("reason")) " " input name="reason" size="20"; }
                    button #next { (tx.get("move_to")) " " (tx.state(n.as_str())) }
                }
            }
            form method="post" action=(format!("/incidents/{id}/action")) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="action" value="note";
                label { (tx.get("note")) " " input name="text" size="50" maxlength="2000"; }
                button { (tx.get("add_note")) }
            }
            form method="post" action=(format!("/incidents/{id}/action")) {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="action" value="assign";
                label { (tx.get("assign")) " " input name="text" size="20" value=(i.assignee); }
                button { (tx.get("apply")) }
            }
            form method="post" action=(format!("/incidents/{id}/action")) #merge {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="action" value="merge";
                label { (tx.get("merge_into_this")) " " input name="text" size="16" placeholder="12, 15"; }
                label { (tx.get("note")) " " input name="reason" size="30" maxlength="2000"; }
                button { (tx.get("merge")) }
            }
            p #notices { (tx.get("print_reports")) ": "
                @for (notice, key) in [("initial", "initial_report"), ("completion", "completion_report")] {
                    @if notice == "initial" || i.state == "closed" {
                        (tx.get(key)) " "
                        a href=(format!("/reports/download?kind=incident&notice={notice}&id={id}&format=html&lang={}", s.lang.code())) { "HTML" } " "
                        a href=(format!("/reports/download?kind=incident&notice={notice}&id={id}&format=pdf&lang={}", s.lang.code())) { "PDF" } " · "
                    }
                }
            }
        }
        h2 { (tx.get("timeline")) }
        table #timeline {
            thead { tr { th { (tx.get("time")) } th { "" } th { "" } th { "" } } }
            tbody { @for h in &i.history {
                tr { td { (vn(&h.time)) } td { (h.actor) } td { (h.action) @if !h.to_state.is_empty() { " → " (tx.state(&h.to_state)) } } td { (h.text) } }
            } }
        }
        h2 { (tx.get("linked_alerts")) " (" (i.alert_count) ")" }
        table {
            thead { tr { th { (tx.get("time")) } th { (tx.get("detector")) } th { (tx.get("signature")) } } }
            tbody { @for a in &d.alerts {
                @let f = a.facts.clone().unwrap_or_default();
                tr { td { (vn(&a.time)) } td { (f.detector) } td { (f.signature) " (" (f.signature_id) ")" } }
            } }
        }
    };
    page(s, &format!("{} #{}", tx.get("nav_incidents"), i.id), "nav_incidents", body)
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub text: String,
}

pub async fn incident_action(c: &Console, s: &Session, id: u64, f: ActionForm) -> Response {
    let mut api = c.api(s);
    let req = |value: String, note: String, reason: String| IncidentActionRequest { id, value, note, reason };
    let done = match f.action.as_str() {
        "transition" => api.transition_incident(req(f.state, String::new(), f.reason)).await,
        "note" => api.add_incident_note(req(String::new(), f.text, String::new())).await,
        "assign" => api.assign_incident(req(f.text, String::new(), String::new())).await,
        "merge" => {
            let mut ids = vec![id];
            for part in f.text.split([',', ' ', ';']).map(str::trim).filter(|p| !p.is_empty()) {
                match part.trim_start_matches('#').parse::<u64>() {
                    Ok(other) => ids.push(other),
                    Err(_) => {
                        return refusal(
                            StatusCode::BAD_REQUEST,
                            s.lang,
                            &format!("merge: `{part}` is not an incident number"),
                        );
                    }
                }
            }
            if ids.len() < 2 {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    s.lang,
                    "merge: name the incidents to merge into this one",
                );
            }
            api.merge_incidents(MergeIncidentsRequest { ids, note: f.reason }).await
        }
        other => {
            return refusal(StatusCode::BAD_REQUEST, s.lang, &format!("unknown action `{other}`"));
        }
    };
    match done {
        Ok(_) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Err(e) => api_error(s, e),
    }
}

pub async fn agents(c: &Console, s: &Session) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let cov = call!(s, api.get_coverage(GetCoverageRequest::default()));
    let body = html! {
        table #agents {
            thead { tr {
                th { (tx.get("agency")) } th { (tx.get("host")) } th { (tx.get("online")) } th { (tx.get("last_seen")) }
                th { (tx.get("version")) } th { (tx.get("policy_version")) } th { (tx.get("dropped")) }
                th { (tx.get("counters")) } @if s.role == "admin" { th { (tx.get("revoke")) } }
            } }
            tbody { @for a in &cov.agents {
                @let c = a.counters.clone().unwrap_or_default();
                tr {
                    td { (a.agency) } td { (a.hostname) }
                    td { @if a.online { span.ok { (tx.get("yes")) } } @else { span.bad { (tx.get("silent")) } } }
                    td { (vn(&a.last_seen)) } td { (a.agent_version) }
                    td { (a.policy.as_ref().map(|p| p.version).unwrap_or(0)) }
                    td { (c.spool_dropped + c.records_dropped_oversize + c.packets_dropped_kernel + c.packets_dropped_user) }
                    td { details { summary { (tx.get("counters")) } pre { (serde_json::to_string_pretty(&canhgac_proto::json::counters(&c)).unwrap_or_default()) } } }
                    @if s.role == "admin" { td {
                        form method="post" action="/agents/revoke" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            input type="hidden" name="agent_id" value=(a.agent_id);
                            label { (tx.get("reason")) " " input name="reason" size="12" required; }
                            button { (tx.get("revoke")) }
                        }
                    } }
                }
            } }
        }
    };
    page(s, tx.get("nav_agents"), "nav_agents", body)
}

pub async fn reports(c: &Console, s: &Session) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let kept = call!(s, api.list_report_files(ListReportFilesRequest::default()));
    let today = now().to_offset(VIETNAM).date();
    let week_ago = today - time::Duration::days(7);
    let body = html! {
        h2 { (tx.get("generate")) }
        form method="get" action="/reports/download" #report {
            label { (tx.get("kind")) " " select name="kind" {
                option value="weekly" { "weekly" } option value="daily" { "daily" }
                option value="six-month" { "six-month" } option value="annual" { "annual" }
            } }
            label { (tx.get("agency")) " " input name="agency" value=(s.agency) size="10"; }
            label { (tx.get("from")) " " input type="date" name="from" value=(week_ago.to_string()); }
            label { (tx.get("to")) " " input type="date" name="to" value=((today + time::Duration::days(1)).to_string()); }
            label { (tx.get("format")) " " select name="format" { option { "html" } option { "pdf" } option { "csv" } option { "json" } } }
            label { (tx.get("language")) " " select name="lang" {
                option value="vi" selected[s.lang == Lang::Vi] { "Tiếng Việt" }
                option value="en" selected[s.lang == Lang::En] { "English" }
            } }
            button #generate { (tx.get("download")) }
        }
        h2 { (tx.get("schedule")) }
        @if kept.schedule.is_empty() { p #schedule { (tx.get("no_schedule")) } }
        @else { ul #schedule { @for line in &kept.schedule { li { (line) } } } }
        h2 { (tx.get("kept_reports")) " (" (kept.reports.len()) ")" }
        @if kept.reports.is_empty() { p { (tx.get("none")) } } @else {
            table #kept {
                thead { tr {
                    th { (tx.get("kind")) } th { (tx.get("agency")) } th { (tx.get("period")) }
                    th { (tx.get("format")) } th { (tx.get("generated")) } th { "" }
                } }
                tbody { @for r in &kept.reports {
                    tr {
                        td { (r.kind) }
                        td { @if r.agency.is_empty() { (tx.get("all_agencies")) } @else { (r.agency) } }
                        td { (vn(&r.from)) " – " (vn(&r.to)) }
                        td { (r.format) " (" (r.size / 1024 + 1) " KiB)" }
                        td { (vn(&r.written)) }
                        td { a href=(format!("/reports/stored?id={}", urlencode(&r.id))) download=(r.file_name) { (tx.get("download")) } }
                    }
                } }
            }
        }
    };
    page(s, tx.get("nav_reports"), "nav_reports", body)
}

/// Percent-encodes a query value.
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub agency: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub notice: String,
}

/// A date (midnight in Vietnam) or RFC 3339.
fn parse_day(v: &str) -> Option<OffsetDateTime> {
    let v = v.trim();
    if let Ok(t) = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let d = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_offset(VIETNAM))
}

pub async fn report_download(c: &Console, s: &Session, q: ReportQuery) -> Response {
    let mut api = c.api(s);
    let req = if q.kind == "incident" {
        let Ok(id) = q.id.trim().parse::<u64>() else {
            return refusal(StatusCode::BAD_REQUEST, s.lang, "id: an incident number is needed");
        };
        GetReportRequest {
            kind: q.kind.clone(),
            incident_id: id,
            notice: q.notice.clone(),
            format: q.format.clone(),
            language: q.lang.clone(),
            ..Default::default()
        }
    } else {
        let (Some(from), Some(to)) = (parse_day(&q.from), parse_day(&q.to)) else {
            return refusal(
                StatusCode::BAD_REQUEST,
                s.lang,
                "from and to: dates such as 2026-12-01 are needed",
            );
        };
        GetReportRequest {
            kind: q.kind.clone(),
            agency: q.agency.trim().to_string(),
            from: Some(timefmt::to_timestamp(from)),
            to: Some(timefmt::to_timestamp(to)),
            format: q.format.clone(),
            language: q.lang.clone(),
            ..Default::default()
        }
    };
    let r = call!(s, api.get_report(req));
    file_response(r)
}

#[derive(Debug, Default, Deserialize)]
pub struct StoredQuery {
    #[serde(default)]
    pub id: String,
}

/// A report kept by the schedule.
pub async fn report_stored(c: &Console, s: &Session, q: StoredQuery) -> Response {
    let mut api = c.api(s);
    let r = call!(s, api.get_report_file(GetReportFileRequest { id: q.id }));
    file_response(r)
}

/// A report as a download (HTML shown in the browser).
fn file_response(r: ReportFile) -> Response {
    let disposition = if r.content_type.starts_with("text/html") { "inline" } else { "attachment" };
    let mut resp = r.content.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&r.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{}\"", r.file_name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Debug, Default, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub reason: String,
}

/// Revokes an agent's certificate (admins; the API checks).
pub async fn agent_revoke(c: &Console, s: &Session, f: RevokeForm) -> Response {
    let mut api = c.api(s);
    call!(s, api.revoke_agent(RevokeAgentRequest { agent_id: f.agent_id, reason: f.reason }));
    Redirect::to("/agents").into_response()
}
