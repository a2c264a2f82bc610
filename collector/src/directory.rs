//! The registry's columns: agencies and information systems as named
//! fields, their validation, and CSV/JSON import and export.
//!
//! One table of column names serves `agency set`/`system set`, the gRPC
//! `set` maps, CSV headers and JSON keys, so a spreadsheet exported from
//! the collector imports back unchanged. Computed columns (`*.changed`,
//! `next_assessment_due`, `agents`) are exported and ignored on import.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use time::{Date, OffsetDateTime};

use crate::{
    rules::{Regulation, add_months},
    store::{AgencyRec, SystemRec},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Code,
    Cidrs,
    Phone,
    Email,
    Date,
}

/// Agency columns stored in `AgencyRec::fields` (plus `code`, `name`).
const AGENCY_FIELDS: &[(&str, Kind)] = &[
    ("parent", Kind::Code),
    ("networks", Kind::Cidrs),
    ("head.name", Kind::Text),
    ("head.position", Kind::Text),
    ("head.phone", Kind::Phone),
    ("head.mobile", Kind::Phone),
    ("head.email", Kind::Email),
    ("monitoring.name", Kind::Text),
    ("monitoring.unit", Kind::Text),
    ("monitoring.position", Kind::Text),
    ("monitoring.address", Kind::Text),
    ("monitoring.phone", Kind::Phone),
    ("monitoring.mobile", Kind::Phone),
    ("monitoring.email", Kind::Email),
    ("response.name", Kind::Text),
    ("response.unit", Kind::Text),
    ("response.position", Kind::Text),
    ("response.phone", Kind::Phone),
    ("response.mobile", Kind::Phone),
    ("response.email", Kind::Email),
    ("onsite_team", Kind::Text),
    ("supervision_provider", Kind::Text),
    ("last_inspection", Kind::Date),
    ("upstream_connection", Kind::Text),
    ("last_assessment", Kind::Date),
];

const AGENCY_COMPUTED: &[&str] =
    &["head.changed", "monitoring.changed", "response.changed", "next_assessment_due"];

/// Contact groups and the fields each must have to count as named.
pub const REQUIRED_CONTACTS: &[(&str, &[&str])] = &[
    ("head", &["name", "position"]),
    ("monitoring", &["name", "unit", "position", "phone", "mobile", "email"]),
    ("response", &["name", "unit", "position", "mobile", "email"]),
];

pub const SYSTEM_COLUMNS: &[&str] = &[
    "id",
    "agency",
    "name",
    "type",
    "level",
    "dossier_status",
    "decision_number",
    "decision_date",
    "state_secrets",
    "public_ips",
    "domains",
    "networks",
    "last_assessment",
];

const SYSTEM_COMPUTED: &[&str] = &["next_assessment_due", "agents"];

pub const DOSSIER_STATES: &[&str] = &["draft", "appraised", "approved"];

/// A rejected value: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

fn ferr(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

/// Agency codes: what departments use today (`SO-TTTT`, `UBND.HBT`, ...).
pub fn valid_agency_code(code: &str) -> bool {
    let mut chars = code.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && code.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

pub fn date_str(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn list_items(v: &str) -> Vec<String> {
    v.split([';', ',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn check(field: &str, kind: Kind, value: &str) -> Result<String, FieldError> {
    let v = value.trim();
    if v.chars().any(char::is_control) || v.chars().count() > 500 {
        return Err(ferr(field, "must be at most 500 printable characters"));
    }
    if v.is_empty() {
        return Ok(String::new());
    }
    match kind {
        Kind::Text => Ok(v.to_string()),
        Kind::Code => {
            if valid_agency_code(v) {
                Ok(v.to_string())
            } else {
                Err(ferr(field, format!("invalid agency code `{v}`")))
            }
        }
        Kind::Cidrs => {
            let mut out = Vec::new();
            for item in list_items(v) {
                let net: ipnet::IpNet = item
                    .parse()
                    .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ferr(field, format!("invalid CIDR `{item}`")))?;
                out.push(net.to_string());
            }
            Ok(out.join(";"))
        }
        Kind::Phone => {
            let digits = v.chars().filter(char::is_ascii_digit).count();
            if (6..=15).contains(&digits)
                && v.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
            {
                Ok(v.to_string())
            } else {
                Err(ferr(field, format!("invalid phone number `{v}`")))
            }
        }
        Kind::Email => match v.split_once('@') {
            Some((user, host)) if !user.is_empty() && host.contains('.') && !v.contains(' ') => {
                Ok(v.to_string())
            }
            _ => Err(ferr(field, format!("invalid e-mail address `{v}`"))),
        },
        Kind::Date => match parse_date(v) {
            Some(d) => Ok(date_str(d)),
            None => Err(ferr(field, format!("invalid date `{v}` (YYYY-MM-DD)"))),
        },
    }
}

/// Sets one column of an agency. Contact changes are timestamped.
pub fn set_agency_field(
    rec: &mut AgencyRec,
    field: &str,
    value: &str,
    now_us: i64,
) -> Result<(), FieldError> {
    match field {
        "code" => {
            if value.trim() != rec.code {
                return Err(ferr(field, "the code of an agency cannot be changed"));
            }
            Ok(())
        }
        "name" => {
            let name = value.trim();
            if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
                return Err(ferr(field, "must be 1-200 printable characters"));
            }
            rec.name = name.to_string();
            Ok(())
        }
        f if AGENCY_COMPUTED.contains(&f) => Ok(()),
        f => {
            let Some((_, kind)) = AGENCY_FIELDS.iter().find(|(n, _)| *n == f) else {
                return Err(ferr(f, format!("unknown column (known: code, name, {})", agency_field_names())));
            };
            let v = check(f, *kind, value)?;
            if f == "parent" && v == rec.code {
                return Err(ferr(f, "an agency cannot be its own parent"));
            }
            let old = rec.fields.get(f).cloned().unwrap_or_default();
            if old != v {
                if let Some((group, _)) = f.split_once('.') {
                    rec.changed_us.insert(group.to_string(), now_us);
                }
                if v.is_empty() {
                    rec.fields.remove(f);
                } else {
                    rec.fields.insert(f.to_string(), v);
                }
            }
            Ok(())
        }
    }
}

fn agency_field_names() -> String {
    AGENCY_FIELDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

pub fn agency_columns() -> Vec<&'static str> {
    let mut v = vec!["code", "name"];
    v.extend(AGENCY_FIELDS.iter().map(|(n, _)| *n));
    v.extend(AGENCY_COMPUTED);
    v
}

/// Next agency-wide independent assessment due.
pub fn agency_next_assessment(rec: &AgencyRec, reg: &Regulation) -> Date {
    let base = rec
        .fields
        .get("last_assessment")
        .and_then(|d| parse_date(d))
        .unwrap_or_else(|| crate::timefmt_date(rec.created_us));
    add_months(base, reg.assessment.agency_months)
}

/// Every column of an agency, computed ones included.
pub fn agency_row(rec: &AgencyRec, reg: &Regulation) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = rec.fields.clone();
    m.insert("code".into(), rec.code.clone());
    m.insert("name".into(), rec.name.clone());
    for group in ["head", "monitoring", "response"] {
        if let Some(us) = rec.changed_us.get(group) {
            m.insert(
                format!("{group}.changed"),
                canhgac_proto::timefmt::rfc3339(canhgac_proto::timefmt::from_micros(*us)),
            );
        }
    }
    m.insert("next_assessment_due".into(), date_str(agency_next_assessment(rec, reg)));
    m
}

/// Missing contact fields, e.g. `response.mobile` (a group with no name at
/// all is reported as the group).
pub fn missing_contacts(rec: &AgencyRec) -> Vec<String> {
    let mut out = Vec::new();
    for (group, fields) in REQUIRED_CONTACTS {
        let has = |f: &str| rec.fields.get(&format!("{group}.{f}")).is_some_and(|v| !v.is_empty());
        if !has("name") {
            out.push(group.to_string());
            continue;
        }
        for f in *fields {
            if !has(f) {
                out.push(format!("{group}.{f}"));
            }
        }
    }
    out
}

// ----- systems -----

pub fn parse_level(v: &str) -> Result<u32, FieldError> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=5).contains(&n) => Ok(n),
        _ => Err(ferr("level", format!("invalid security level `{}` (1 to 5)", v.trim()))),
    }
}

fn parse_bool(field: &str, v: &str) -> Result<bool, FieldError> {
    match v.trim().to_lowercase().as_str() {
        "" | "false" | "no" | "0" | "không" => Ok(false),
        "true" | "yes" | "1" | "có" => Ok(true),
        other => Err(ferr(field, format!("invalid boolean `{other}` (true or false)"))),
    }
}

/// Sets one column of a system (no cross-field checks: see
/// [`validate_system`]).
pub fn set_system_field(rec: &mut SystemRec, field: &str, value: &str) -> Result<(), FieldError> {
    let v = value.trim();
    if v.chars().any(char::is_control) || v.chars().count() > 2000 {
        return Err(ferr(field, "must be at most 2000 printable characters"));
    }
    match field {
        "id" => {
            if !v.is_empty() && v.parse::<u64>().ok() != Some(rec.id) {
                return Err(ferr(field, "the id of a system cannot be changed"));
            }
        }
        "agency" => {
            if !valid_agency_code(v) {
                return Err(ferr(field, format!("invalid agency code `{v}`")));
            }
            rec.agency = v.to_string();
        }
        "name" => {
            if v.is_empty() || v.chars().count() > 200 {
                return Err(ferr(field, "must be 1-200 printable characters"));
            }
            rec.name = v.to_string();
        }
        "type" => rec.kind = v.to_string(),
        "level" => rec.level = parse_level(v)?,
        "dossier_status" => {
            if !DOSSIER_STATES.contains(&v) {
                return Err(ferr(
                    field,
                    format!("invalid dossier status `{v}` ({})", DOSSIER_STATES.join(", ")),
                ));
            }
            rec.dossier_status = v.to_string();
        }
        "decision_number" => rec.decision_number = v.to_string(),
        "decision_date" => rec.decision_date = check(field, Kind::Date, v)?,
        "state_secrets" => rec.state_secrets = parse_bool(field, v)?,
        "public_ips" => {
            let mut ips = Vec::new();
            for item in list_items(v) {
                let ip: IpAddr =
                    item.parse().map_err(|_| ferr(field, format!("invalid IP address `{item}`")))?;
                ips.push(ip.to_string());
            }
            rec.public_ips = ips;
        }
        "networks" => {
            let mut nets = Vec::new();
            for item in list_items(v) {
                let net: ipnet::IpNet = item.parse().map_err(|_| {
                    ferr(field, format!("invalid network `{item}` (a CIDR such as 10.1.0.0/16)"))
                })?;
                if net.trunc() != net {
                    return Err(ferr(
                        field,
                        format!("network `{item}` has host bits set (did you mean {}?)", net.trunc()),
                    ));
                }
                nets.push(net.to_string());
            }
            rec.networks = nets;
        }
        "domains" => {
            let mut ds = Vec::new();
            for item in list_items(v) {
                let d = item.trim_end_matches('.').to_lowercase();
                let ok = d.len() <= 253
                    && d.contains('.')
                    && d.split('.').all(|l| {
                        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_alphanumeric() || c == '-')
                    });
                if !ok {
                    return Err(ferr(field, format!("invalid domain `{item}`")));
                }
                ds.push(d);
            }
            rec.domains = ds;
        }
        "last_assessment" => rec.last_assessment = check(field, Kind::Date, v)?,
        f if SYSTEM_COMPUTED.contains(&f) => {}
        f => {
            return Err(ferr(f, format!("unknown column (known: {})", SYSTEM_COLUMNS.join(", "))));
        }
    }
    Ok(())
}

/// Cross-field rules: a system that processes state secrets is level 3 or
/// higher; an approved dossier has a decision number and date.
pub fn validate_system(rec: &SystemRec) -> Result<(), FieldError> {
    match system_problems(rec).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every rule a system record breaks (not only the first), so that an
/// import reports all of a row's problems at once.
pub fn system_problems(rec: &SystemRec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if rec.agency.is_empty() {
        out.push(ferr("agency", "is required"));
    }
    if rec.name.is_empty() {
        out.push(ferr("name", "is required"));
    }
    if !(1..=5).contains(&rec.level) {
        out.push(ferr("level", format!("invalid security level `{}` (1 to 5)", rec.level)));
    }
    if rec.state_secrets && rec.level < 3 {
        out.push(ferr(
            "level",
            format!("a system that processes state secrets is level 3 or higher, not {}", rec.level),
        ));
    }
    if rec.dossier_status == "approved" && (rec.decision_number.is_empty() || rec.decision_date.is_empty()) {
        out.push(ferr("decision_number", "an approved dossier needs decision_number and decision_date"));
    }
    out
}

/// Next independent assessment of a system and whether it is overdue.
pub fn system_next_assessment(rec: &SystemRec, reg: &Regulation, today: Date) -> (Date, bool) {
    let base = parse_date(&rec.last_assessment).unwrap_or_else(|| crate::timefmt_date(rec.created_us));
    let due = add_months(base, reg.assessment_months(rec.level));
    (due, due < today)
}

pub fn system_columns() -> Vec<&'static str> {
    let mut v = SYSTEM_COLUMNS.to_vec();
    v.extend(SYSTEM_COMPUTED);
    v
}

pub fn system_row(
    rec: &SystemRec,
    agents: &[String],
    reg: &Regulation,
    today: Date,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let (due, _) = system_next_assessment(rec, reg, today);
    for (k, v) in [
        ("id", rec.id.to_string()),
        ("agency", rec.agency.clone()),
        ("name", rec.name.clone()),
        ("type", rec.kind.clone()),
        ("level", rec.level.to_string()),
        ("dossier_status", rec.dossier_status.clone()),
        ("decision_number", rec.decision_number.clone()),
        ("decision_date", rec.decision_date.clone()),
        ("state_secrets", rec.state_secrets.to_string()),
        ("public_ips", rec.public_ips.join(";")),
        ("domains", rec.domains.join(";")),
        ("networks", rec.networks.join(";")),
        ("last_assessment", rec.last_assessment.clone()),
        ("next_assessment_due", date_str(due)),
        ("agents", agents.join(";")),
    ] {
        m.insert(k.to_string(), v);
    }
    m
}

// ----- import and export -----

/// A row of an import file: its number (1 = first data row) and cells.
pub type Row = (usize, Vec<(String, String)>);

/// Parses CSV (header row of column names) or JSON (an array of objects).
pub fn parse_rows(format: &str, content: &[u8]) -> Result<Vec<Row>, String> {
    match format {
        "csv" => {
            let mut r = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(content);
            let headers: Vec<String> = r
                .headers()
                .map_err(|e| format!("header row: {e}"))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').to_string())
                .collect();
            let mut rows = Vec::new();
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| format!("row {}: {e}", i + 1))?;
                rows.push((i + 1, headers.iter().cloned().zip(rec.iter().map(String::from)).collect()));
            }
            Ok(rows)
        }
        "json" => {
            let v: serde_json::Value =
                serde_json::from_slice(content).map_err(|e| format!("not valid JSON: {e}"))?;
            let arr = v.as_array().ok_or("JSON import must be an array of objects")?;
            let mut rows = Vec::new();
            for (i, item) in arr.iter().enumerate() {
                let obj = item.as_object().ok_or_else(|| format!("row {}: not a JSON object", i + 1))?;
                let cells = obj
                    .iter()
                    .map(|(k, v)| {
                        let s = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            serde_json::Value::Array(a) => a
                                .iter()
                                .map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))
                                .collect::<Vec<_>>()
                                .join(";"),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect();
                rows.push((i + 1, cells));
            }
            Ok(rows)
        }
        other => Err(format!("unknown format `{other}` (csv or json)")),
    }
}

/// Renders rows as CSV or JSON with the given columns.
pub fn render_rows(
    format: &str,
    columns: &[&str],
    rows: &[BTreeMap<String, String>],
) -> Result<Vec<u8>, String> {
    match format {
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(columns).map_err(|e| e.to_string())?;
            for r in rows {
                w.write_record(columns.iter().map(|c| r.get(*c).map(String::as_str).unwrap_or("")))
                    .map_err(|e| e.to_string())?;
            }
            w.into_inner().map_err(|e| e.to_string())
        }
        "json" => {
            let arr: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        columns
                            .iter()
                            .map(|c| {
                                (
                                    c.to_string(),
                                    serde_json::Value::from(r.get(*c).cloned().unwrap_or_default()),
                                )
                            })
                            .collect(),
                    )
                })
                .collect();
            serde_json::to_vec_pretty(&arr).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown format `{other}` (csv or json)")),
    }
}

/// Whether following `parent` links from `code` comes back to it.
pub fn parent_cycle(code: &str, parent_of: &dyn Fn(&str) -> Option<String>) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut cur = parent_of(code);
    while let Some(p) = cur {
        if p == code || !seen.insert(p.clone()) {
            return true;
        }
        cur = parent_of(&p);
    }
    false
}

/// Validates every agency row against the existing agencies; returns the
/// records to store (new or updated) or every error, row and field named.
pub fn import_agencies(
    rows: &[Row],
    existing: &HashMap<String, AgencyRec>,
    now_us: i64,
    actor: &str,
) -> Result<(Vec<AgencyRec>, u32, u32), Vec<String>> {
    let mut errors = Vec::new();
    let mut out: Vec<AgencyRec> = Vec::new();
    let (mut created, mut updated) = (0, 0);
    for (n, cells) in rows {
        let code =
            cells.iter().find(|(k, _)| k == "code").map(|(_, v)| v.trim().to_string()).unwrap_or_default();
        if !valid_agency_code(&code) {
            errors.push(format!("row {n}: field `code`: invalid agency code `{code}`"));
            continue;
        }
        if out.iter().any(|a| a.code == code) {
            errors.push(format!("row {n}: field `code`: agency `{code}` appears twice in the file"));
            continue;
        }
        let mut rec = match existing.get(&code) {
            Some(r) => {
                updated += 1;
                r.clone()
            }
            None => {
                created += 1;
                AgencyRec {
                    version: crate::store::records::RECORD_VERSION,
                    code: code.clone(),
                    created_us: now_us,
                    created_by: actor.to_string(),
                    ..Default::default()
                }
            }
        };
        let mut name_bad = false;
        for (k, v) in cells {
            if let Err(e) = set_agency_field(&mut rec, k, v, now_us) {
                name_bad |= e.field == "name";
                errors.push(format!("row {n}: {e}"));
            }
        }
        if !name_bad && rec.name.is_empty() {
            errors.push(format!("row {n}: field `name`: is required"));
        }
        rec.updated_us = now_us;
        out.push(rec);
    }
    for rec in &out {
        if let Some(p) = rec.fields.get("parent")
            && !existing.contains_key(p)
            && !out.iter().any(|a| &a.code == p)
        {
            let n = rows
                .iter()
                .find(|(_, c)| c.iter().any(|(k, v)| k == "code" && v.trim() == rec.code))
                .map(|(n, _)| *n)
                .unwrap_or(0);
            errors.push(format!("row {n}: field `parent`: unknown agency `{p}`"));
        }
    }
    let parent_of = |c: &str| -> Option<String> {
        out.iter()
            .find(|a| a.code == c)
            .or_else(|| existing.get(c))
            .and_then(|a| a.fields.get("parent").cloned())
    };
    for (n, cells) in rows {
        let code = cells.iter().find(|(k, _)| k == "code").map(|(_, v)| v.trim()).unwrap_or_default();
        if out.iter().any(|a| a.code == code) && parent_cycle(code, &parent_of) {
            errors.push(format!("row {n}: field `parent`: agency `{code}` would be its own ancestor"));
        }
    }
    if errors.is_empty() { Ok((out, created, updated)) } else { Err(errors) }
}

/// Validates every system row; rows with an `id` update that system.
pub fn import_systems(
    rows: &[Row],
    existing: &HashMap<u64, SystemRec>,
    agencies: &HashMap<String, AgencyRec>,
    now_us: i64,
) -> Result<(Vec<SystemRec>, u32, u32), Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let (mut created, mut updated) = (0, 0);
    for (n, cells) in rows {
        let id = cells.iter().find(|(k, _)| k == "id").map(|(_, v)| v.trim()).unwrap_or("");
        let mut rec = if id.is_empty() {
            created += 1;
            SystemRec {
                version: crate::store::records::RECORD_VERSION,
                created_us: now_us,
                dossier_status: "draft".into(),
                ..Default::default()
            }
        } else {
            match id.parse::<u64>().ok().and_then(|i| existing.get(&i)) {
                Some(r) => {
                    updated += 1;
                    r.clone()
                }
                None => {
                    errors.push(format!("row {n}: field `id`: unknown system `{id}`"));
                    continue;
                }
            }
        };
        // every problem of the row, not only the first: a field that does
        // not parse, then every rule the record breaks
        let mut bad_fields = Vec::new();
        for (k, v) in cells {
            if let Err(e) = set_system_field(&mut rec, k, v) {
                errors.push(format!("row {n}: {e}"));
                bad_fields.push(e.field);
            }
        }
        let problems: Vec<FieldError> =
            system_problems(&rec).into_iter().filter(|e| !bad_fields.contains(&e.field)).collect();
        let row_ok = bad_fields.is_empty() && problems.is_empty();
        errors.extend(problems.iter().map(|e| format!("row {n}: {e}")));
        if !rec.agency.is_empty()
            && !bad_fields.iter().any(|f| f == "agency")
            && !agencies.contains_key(&rec.agency)
        {
            errors.push(format!("row {n}: field `agency`: unknown agency `{}`", rec.agency));
            continue;
        }
        if !row_ok {
            continue;
        }
        rec.updated_us = now_us;
        out.push(rec);
    }
    if errors.is_empty() { Ok((out, created, updated)) } else { Err(errors) }
}

/// Today's date (UTC).
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_names_row_and_field_and_keeps_nothing_on_error() {
        let csv = "code,name,networks,monitoring.email,last_inspection\n\
                   SO-A,Sở A,10.1.0.0/16;203.0.113.0/24,a@x.vn,2025-01-31\n\
                   SO-B,Sở B,10.2.0.0/33,,\n\
                   SO-C,Sở C,,not-an-email,2025-02-30\n";
        let rows = parse_rows("csv", csv.as_bytes()).unwrap();
        let errs = import_agencies(&rows, &HashMap::new(), 1, "t").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("row 2: field `networks`: invalid CIDR `10.2.0.0/33`"), "{errs:?}");
        assert!(errs[1].contains("row 3: field `monitoring.email`"), "{errs:?}");
        assert!(errs[2].contains("row 3: field `last_inspection`: invalid date `2025-02-30`"), "{errs:?}");
        let cyc = "code,name,parent\nX,X,Y\nY,Y,X\n";
        let errs = import_agencies(&parse_rows("csv", cyc.as_bytes()).unwrap(), &HashMap::new(), 1, "t")
            .unwrap_err();
        assert!(errs[0].contains("row 1: field `parent`: agency `X` would be its own ancestor"), "{errs:?}");
        let ok = "code,name,parent\nUBND,UBND tỉnh,\nSO-A,Sở A,UBND\n";
        let (recs, created, _) =
            import_agencies(&parse_rows("csv", ok.as_bytes()).unwrap(), &HashMap::new(), 1, "t").unwrap();
        assert_eq!((recs.len(), created), (2, 2));
        assert_eq!(recs[1].fields["parent"], "UBND");
    }

    #[test]
    fn systems_validate_levels_and_secrets() {
        let mut agencies = HashMap::new();
        agencies.insert("A".to_string(), AgencyRec { code: "A".into(), ..Default::default() });
        let json = r#"[{"agency":"A","name":"Cổng","level":3,"public_ips":["203.0.113.10"]},
                       {"agency":"A","name":"Mật","level":2,"state_secrets":true},
                       {"agency":"A","name":"X","level":7},
                       {"agency":"Z","name":"Y","level":1}]"#;
        let rows = parse_rows("json", json.as_bytes()).unwrap();
        let errs = import_systems(&rows, &HashMap::new(), &agencies, 1).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with("row 2: field `level`: a system that processes state secrets"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("row 3: field `level`: invalid security level `7`"), "{errs:?}");
        assert!(errs[2].starts_with("row 4: field `agency`: unknown agency `Z`"), "{errs:?}");
    }

    #[test]
    fn an_import_reports_every_problem_of_every_row_at_once() {
        let mut agencies = HashMap::new();
        agencies.insert("A".to_string(), AgencyRec { code: "A".into(), ..Default::default() });
        // row 1: a bad address and secrets below level 3 and an approved
        // dossier without a decision; row 2: a bad network and an unknown agency
        let json = r#"[{"agency":"A","name":"P","level":2,"state_secrets":true,"public_ips":["1.2.3.999"],"dossier_status":"approved"},
                       {"agency":"Z","name":"Q","level":1,"networks":["10.0.0.0/33"]}]"#;
        let rows = parse_rows("json", json.as_bytes()).unwrap();
        let errs = import_systems(&rows, &HashMap::new(), &agencies, 1).unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        for want in [
            "row 1: field `public_ips`",
            "row 1: field `level`: a system that processes state secrets",
            "row 1: field `decision_number`",
            "row 2: field `networks`",
            "row 2: field `agency`: unknown agency `Z`",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want} missing from {errs:#?}");
        }
    }

    #[test]
    fn export_round_trips() {
        let reg = Regulation::embedded();
        let mut a = AgencyRec { code: "A".into(), name: "Agency, \"A\"".into(), ..Default::default() };
        set_agency_field(&mut a, "response.mobile", "0912 345 678", 5).unwrap();
        assert_eq!(a.changed_us["response"], 5);
        let rows = vec![agency_row(&a, &reg)];
        for format in ["csv", "json"] {
            let bytes = render_rows(format, &agency_columns(), &rows).unwrap();
            let parsed = parse_rows(format, &bytes).unwrap();
            let mut existing = HashMap::new();
            existing.insert("A".to_string(), a.clone());
            let (recs, _, updated) = import_agencies(&parsed, &existing, 9, "t").unwrap();
            assert_eq!(updated, 1);
            assert_eq!(recs[0].name, a.name);
            assert_eq!(recs[0].fields, a.fields);
            assert_eq!(recs[0].changed_us, a.changed_us, "unchanged contacts keep their time");
        }
        assert!(missing_contacts(&a).contains(&"monitoring".to_string()));
        assert!(missing_contacts(&a).contains(&"response".to_string()));
    }
}
