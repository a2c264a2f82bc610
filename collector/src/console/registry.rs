//! The registry pages: agencies with their contact points, assessments and
//! four supervision layers; their systems with levels, dossiers and
//! assessments; forms to edit an agency or a system and to import a CSV or
//! JSON sheet. Every change goes through the operator API (`UpdateAgency`,
//! `UpdateSystem`, `ImportRegistry`), so the console validates exactly as
//! the CLI does and the same roles may change the same things.

use std::collections::BTreeMap;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use canhgac_proto::v1::*;
use maud::html;
use serde::Deserialize;

use super::{
    Console, Session,
    pages::{api_error, page, t},
    refusal,
};

/// Agency columns an operator edits (the computed ones are shown, not set).
fn agency_fields() -> Vec<&'static str> {
    crate::directory::agency_columns()
        .into_iter()
        .filter(|c| !matches!(*c, "code") && !c.ends_with(".changed") && *c != "next_assessment_due")
        .collect()
}

/// System columns an operator edits (the registry's, less the identity).
fn system_fields() -> impl Iterator<Item = &'static str> {
    crate::directory::SYSTEM_COLUMNS.iter().copied().filter(|c| !matches!(*c, "id" | "agency"))
}

fn system_values(s: &System) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("name", s.name.clone()),
        ("type", s.r#type.clone()),
        ("level", s.level.to_string()),
        ("dossier_status", s.dossier_status.clone()),
        ("decision_number", s.decision_number.clone()),
        ("decision_date", s.decision_date.clone()),
        ("state_secrets", s.state_secrets.to_string()),
        ("public_ips", s.public_ips.join(", ")),
        ("domains", s.domains.join(", ")),
        ("networks", s.networks.join(", ")),
        ("last_assessment", s.last_assessment.clone()),
    ])
}

fn agency_value(a: &Agency, field: &str) -> String {
    if field == "name" { a.name.clone() } else { a.fields.get(field).cloned().unwrap_or_default() }
}

macro_rules! call {
    ($s:expr, $e:expr) => {
        match $e.await {
            Ok(r) => r.into_inner(),
            Err(e) => return api_error($s, e),
        }
    };
}

/// The registry: every agency the operator may see, its layers, contacts
/// and systems.
pub async fn registry(c: &Console, s: &Session) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let agencies = call!(s, api.list_agencies(ListAgenciesRequest::default()));
    let cov = call!(s, api.get_coverage(GetCoverageRequest::default()));
    let systems = call!(s, api.list_systems(ListSystemsRequest { limit: 10_000, ..Default::default() }));
    let body = html! {
        @for a in &agencies.agencies {
            @let ac = cov.agencies.iter().find(|x| x.agency == a.code);
            section.card.agency id=(format!("agency-{}", a.code)) {
                h2 { (a.name) " (" (a.code) ") " a href=(format!("/registry/agency/{}", a.code)) { small { (tx.get("edit")) } } }
                dl {
                    dt { (tx.get("next_assessment")) } dd { (a.fields.get("next_assessment_due").cloned().unwrap_or_default()) }
                    dt { (tx.get("contacts")) } dd {
                        @for g in ["head", "monitoring", "response"] {
                            (g) ": " (a.fields.get(&format!("{g}.name")).cloned().unwrap_or("-".into()))
                            @let m = a.fields.get(&format!("{g}.mobile")).cloned().unwrap_or_default();
                            @if !m.is_empty() { " (" (m) ")" }
                            br;
                        }
                        @if let Some(ac) = ac { @if !ac.missing_contacts.is_empty() {
                            span.bad { (tx.get("missing_contacts")) ": " (ac.missing_contacts.join(", ")) }
                        } }
                    }
                    @if let Some(ac) = ac {
                        dt { (tx.get("layers")) } dd {
                            @for l in &ac.layers { @if l.ok { span.ok { "✓ " } } @else { span.bad { "✗ " } } (l.name) " " small { (l.detail) } br; }
                        }
                    }
                }
                table.systems {
                    thead { tr {
                        th { "#" } th { (tx.get("system")) } th { (tx.get("level_col")) } th { (tx.get("dossier")) }
                        th { (tx.get("decision")) } th { (tx.get("last_assessment")) } th { (tx.get("next_assessment")) }
                        th { (tx.get("agents")) } th { "" }
                    } }
                    tbody { @for sys in systems.systems.iter().filter(|x| x.agency == a.code) {
                        tr {
                            td { (sys.id) }
                            td { (sys.name) @if sys.state_secrets { " " span.bad { "(" (tx.get("state_secrets")) ")" } } }
                            td { (sys.level) }
                            td { (sys.dossier_status) }
                            td { (sys.decision_number) " " (sys.decision_date) }
                            td { (if sys.last_assessment.is_empty() { "-" } else { &sys.last_assessment }) }
                            td { @if sys.assessment_overdue { span.bad { (tx.get("overdue")) " " } } (sys.next_assessment_due) }
                            td { @if sys.agents.is_empty() { span.bad { "0" } } @else { (sys.agents.len()) } }
                            td { a href=(format!("/registry/system/{}", sys.id)) { (tx.get("edit")) } }
                        }
                    } }
                }
            }
        }
        section.card #import {
            h2 { (tx.get("import")) }
            p { small { (tx.get("import_help")) } }
            form method="post" action="/registry/import" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { (tx.get("kind")) " " select name="kind" { option value="systems" { "systems" } option value="agencies" { "agencies" } } }
                label { (tx.get("format")) " " select name="format" { option { "csv" } option { "json" } } }
                label { input type="checkbox" name="dry_run" value="1" checked; " " (tx.get("dry_run")) }
                p { label for="content" { (tx.get("content")) } br;
                    textarea #content name="content" rows="8" cols="100" maxlength="60000" required {} }
                button #import-submit { (tx.get("import")) }
            }
        }
    };
    page(s, tx.get("nav_registry"), "nav_registry", body)
}

/// The form for one agency.
pub async fn agency_form(c: &Console, s: &Session, code: &str) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let a = call!(s, api.get_agency(GetAgencyRequest { code: code.to_string() }));
    let body = html! {
        form method="post" action=(format!("/registry/agency/{}", a.code)) #edit {
            input type="hidden" name="csrf" value=(s.csrf);
            table {
                tbody { @for f in agency_fields() {
                    tr { th { label for=(f) { (f) } } td { input id=(f) name=(f) value=(agency_value(&a, f)) size="60" maxlength="2000"; } }
                } }
            }
            button #save { (tx.get("save")) }
        }
    };
    page(s, &format!("{} {}", tx.get("agency"), a.code), "nav_registry", body)
}

/// The form for one system.
pub async fn system_form(c: &Console, s: &Session, id: u64) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let sys = call!(s, api.get_system(GetSystemRequest { id }));
    let values = system_values(&sys);
    let value = |f: &str| values.get(f).cloned().unwrap_or_default();
    let body = html! {
        p { (tx.get("agency")) ": " (sys.agency) }
        form method="post" action=(format!("/registry/system/{id}")) #edit {
            input type="hidden" name="csrf" value=(s.csrf);
            table {
                tbody { @for f in system_fields() {
                    tr { th { label for=(f) { (f) } } td {
                        @if f == "dossier_status" {
                            select id=(f) name=(f) { @for d in crate::directory::DOSSIER_STATES {
                                option selected[value(f) == *d] { (d) }
                            } }
                        } @else if f == "state_secrets" {
                            select id=(f) name=(f) {
                                option value="false" selected[value(f) == "false"] { (tx.get("no")) }
                                option value="true" selected[value(f) == "true"] { (tx.get("yes")) }
                            }
                        } @else {
                            input id=(f) name=(f) value=(value(f)) size="60" maxlength="2000";
                        }
                    } }
                } }
            }
            button #save { (tx.get("save")) }
        }
    };
    page(s, &format!("{} #{} {}", tx.get("system"), sys.id, sys.name), "nav_registry", body)
}

/// Fields of an edit form, as posted (unknown names are refused by the API).
pub type EditForm = BTreeMap<String, String>;

/// Applies the fields that changed; the API validates them as the CLI's
/// `agency set` does.
pub async fn agency_save(c: &Console, s: &Session, code: &str, form: EditForm) -> Response {
    let mut api = c.api(s);
    let a = call!(s, api.get_agency(GetAgencyRequest { code: code.to_string() }));
    let allowed = agency_fields();
    let mut set = std::collections::HashMap::new();
    for (k, v) in form {
        if k == "csrf" {
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return refusal(StatusCode::BAD_REQUEST, s.lang, &format!("field `{k}`: not an agency field"));
        }
        if v.trim() != agency_value(&a, &k).trim() {
            set.insert(k, v);
        }
    }
    if !set.is_empty() {
        call!(s, api.update_agency(UpdateAgencyRequest { code: code.to_string(), set }));
    }
    Redirect::to(&format!("/registry#agency-{code}")).into_response()
}

pub async fn system_save(c: &Console, s: &Session, id: u64, form: EditForm) -> Response {
    let mut api = c.api(s);
    let sys = call!(s, api.get_system(GetSystemRequest { id }));
    let current = system_values(&sys);
    let mut set = std::collections::HashMap::new();
    for (k, v) in form {
        if k == "csrf" {
            continue;
        }
        let Some(old) = current.get(k.as_str()) else {
            return refusal(StatusCode::BAD_REQUEST, s.lang, &format!("field `{k}`: not a system field"));
        };
        if v.trim() != old.trim() {
            set.insert(k, v);
        }
    }
    if !set.is_empty() {
        call!(s, api.update_system(UpdateSystemRequest { id, set }));
    }
    Redirect::to(&format!("/registry#agency-{}", sys.agency)).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub dry_run: String,
    #[serde(default)]
    pub content: String,
}

/// Imports a sheet through `ImportRegistry` (all rows or none).
pub async fn import(c: &Console, s: &Session, f: ImportForm) -> Response {
    let tx = t(s);
    let mut api = c.api(s);
    let dry_run = f.dry_run == "1";
    let r = call!(
        s,
        api.import_registry(ImportRegistryRequest {
            kind: f.kind.clone(),
            format: f.format.clone(),
            content: f.content.into_bytes(),
            dry_run,
        })
    );
    let body = html! {
        p #result {
            @if dry_run { (tx.get("dry_run_ok")) " " }
            (tx.get("created")) ": " (r.created) ", " (tx.get("updated_n")) ": " (r.updated)
            @if !r.system_ids.is_empty() { " (" (r.system_ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) ")" }
        }
        p { a href="/registry" { (tx.get("back")) } }
    };
    page(s, tx.get("import"), "nav_registry", body)
}
