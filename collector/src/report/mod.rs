//! Periodic reports, built from stored data only: the daily operational
//! summary and the weekly report to each system owner with the fields
//! Circular 31/2017 names (monitoring period; attacked targets with
//! address, service and time; techniques and evidence; attack sources;
//! changes to the monitored systems and to the monitoring system).
//!
//! A report is data first ([`Report`]: one block per agency, sections of
//! rows), then rendered: printable HTML, CSV of the rows, or JSON. The
//! console and `canhgac report` both get it through the `GetReport` call,
//! so tenancy and the audit log apply as for every other call.

pub mod pdf;
pub mod render;
pub mod schedule;
pub mod text;

use std::collections::{BTreeMap, HashMap};

use canhgac_proto::timefmt;
use serde::Serialize;

use crate::{
    incident,
    rules::Regulation,
    store::{AgentRec, AlertQuery, IncidentFilter, Store, StoreError, SystemRec},
};
pub use text::Lang;

/// At most this many alerts are read per agency and report; a report that
/// hit the limit says so.
pub const MAX_ALERTS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Daily,
    Weekly,
    #[serde(rename = "six-month")]
    SixMonth,
    Annual,
    /// An incident's initial or completion notice ([`notice`]).
    Incident,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "daily" => Some(Kind::Daily),
            "weekly" => Some(Kind::Weekly),
            "six-month" => Some(Kind::SixMonth),
            "annual" => Some(Kind::Annual),
            "incident" => Some(Kind::Incident),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
            Kind::SixMonth => "six-month",
            Kind::Annual => "annual",
            Kind::Incident => "incident",
        }
    }
}

/// One table of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Stable identifier (CSV and JSON consumers key on it).
    pub id: &'static str,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The part of a report about one agency.
#[derive(Debug, Clone, Serialize)]
pub struct AgencyBlock {
    pub code: String,
    pub name: String,
    /// Alerts read hit [`MAX_ALERTS`]: the tables count only those.
    pub truncated: bool,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kind: Kind,
    pub language: Lang,
    pub title: String,
    /// RFC 3339, in Vietnam's zone.
    pub from: String,
    pub to: String,
    pub generated: String,
    pub agencies: Vec<AgencyBlock>,
}

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    /// The agencies to cover (already confined to what the caller sees).
    pub agencies: Vec<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub now_us: i64,
    pub lang: Lang,
    /// An agent not heard from for longer counts as silent
    /// (`supervision.agent_silence_limit`).
    pub silence_limit: std::time::Duration,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a report period: not reversed, not in the future, at most a year.
pub fn check_period(from_us: i64, to_us: i64, now_us: i64) -> Result<(), ReportError> {
    if to_us <= from_us {
        return Err(ReportError::Invalid(
            "the period ends before it starts (`to` must be after `from`)".into(),
        ));
    }
    if from_us > now_us {
        return Err(ReportError::Invalid("the period starts in the future".into()));
    }
    if to_us - from_us > 367 * 86_400_000_000 {
        return Err(ReportError::Invalid("the period is longer than a year".into()));
    }
    Ok(())
}

fn vn_time(us: i64) -> String {
    let t = timefmt::from_micros(us).to_offset(text::VIETNAM);
    t.replace_nanosecond(0).map(timefmt::rfc3339).unwrap_or_else(|_| timefmt::rfc3339(t))
}

/// The compliance sections (annual and six-month reports): systems by
/// level with dossiers and assessments, a summary per level, and the four
/// supervision layers of the agency.
fn compliance(
    store: &Store,
    reg: &Regulation,
    t: text::Text,
    code: &str,
    systems: &[&SystemRec],
    req: &Request,
) -> Result<Vec<Section>, ReportError> {
    let cols = |keys: &[&'static str]| keys.iter().map(|k| t.get(k).to_string()).collect::<Vec<_>>();
    let end = timefmt::from_micros(req.to_us.min(req.now_us)).to_offset(text::VIETNAM).date();
    let mut rows = Vec::new();
    let mut per_level: BTreeMap<u32, [u64; 4]> = BTreeMap::new();
    for s in systems {
        let (due, overdue) = crate::directory::system_next_assessment(s, reg, end);
        let assessed_in_period = crate::directory::parse_date(&s.last_assessment).is_some_and(|d| {
            let us = timefmt::micros(d.midnight().assume_offset(text::VIETNAM));
            us >= req.from_us && us < req.to_us
        });
        let e = per_level.entry(s.level).or_default();
        e[0] += 1;
        e[1] += u64::from(s.dossier_status == "approved");
        e[2] += u64::from(assessed_in_period);
        e[3] += u64::from(overdue);
        rows.push(vec![
            s.name.clone(),
            s.level.to_string(),
            s.dossier_status.clone(),
            if s.decision_number.is_empty() {
                "-".into()
            } else {
                format!("{} ({})", s.decision_number, s.decision_date)
            },
            if s.last_assessment.is_empty() { "-".into() } else { s.last_assessment.clone() },
            crate::directory::date_str(due),
            if overdue { t.get("overdue").into() } else { "-".into() },
        ]);
    }
    let cov = crate::coverage::coverage(store, reg, Some(code), req.to_us.min(req.now_us), &|g, now| {
        crate::supervise::online(false, g.last_seen_us, now, req.silence_limit)
    })?;
    let layers = cov
        .agencies
        .first()
        .map(|a| {
            a.layers
                .iter()
                .map(|l| {
                    vec![
                        t.get(layer_key(&l.name)).to_string(),
                        if l.ok { t.get("yes") } else { t.get("no") }.into(),
                        l.detail.clone(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(vec![
        Section {
            id: "systems_by_level",
            title: t.get("systems_by_level").into(),
            columns: cols(&[
                "system",
                "level_col",
                "dossier",
                "decision",
                "last_assessment",
                "next_assessment",
                "overdue",
            ]),
            rows,
        },
        Section {
            id: "compliance_summary",
            title: t.get("compliance_summary").into(),
            columns: cols(&["level_col", "count", "approved", "assessed", "assessment_overdue"]),
            rows: per_level
                .into_iter()
                .map(|(l, n)| {
                    vec![
                        l.to_string(),
                        n[0].to_string(),
                        n[1].to_string(),
                        n[2].to_string(),
                        n[3].to_string(),
                    ]
                })
                .collect(),
        },
        Section {
            id: "layers",
            title: t.get("layers_title").into(),
            columns: cols(&["layer", "in_place", "detail"]),
            rows: layers,
        },
    ])
}

fn layer_key(name: &str) -> &'static str {
    match name {
        "on_site" => "layer_on_site",
        "supervision_provider" => "layer_provider",
        "independent_inspection" => "layer_inspection",
        _ => "layer_upstream",
    }
}

/// The annual compliance window that contains `day`: 15 December to
/// 14 December (Vietnam's time), as `[from, to)` in microseconds.
pub fn annual_window(day: time::Date) -> (i64, i64) {
    let start_year = if (day.month() as u8, day.day()) >= (12, 15) { day.year() } else { day.year() - 1 };
    let at = |y: i32| {
        time::Date::from_calendar_date(y, time::Month::December, 15)
            .map(|d| timefmt::micros(d.midnight().assume_offset(text::VIETNAM)))
            .unwrap_or(0)
    };
    (at(start_year), at(start_year + 1))
}

/// Builds a report from the store.
pub fn build(store: &Store, reg: &Regulation, req: &Request) -> Result<Report, ReportError> {
    if req.kind == Kind::Incident {
        return Err(ReportError::Invalid(
            "an incident notice is made from its incident, not a period".into(),
        ));
    }
    check_period(req.from_us, req.to_us, req.now_us)?;
    let t = text::Text(req.lang);
    let agents: Vec<AgentRec> = store.agents()?;
    let by_id: HashMap<String, AgentRec> = agents.iter().map(|a| (a.agent_id.clone(), a.clone())).collect();
    let systems = store.systems()?;
    let mut blocks = Vec::new();
    for code in &req.agencies {
        let Some(agency) = store.agency(code)? else {
            return Err(ReportError::Invalid(format!("agency `{code}` not found")));
        };
        let own_systems: Vec<&SystemRec> = systems.iter().filter(|s| &s.agency == code).collect();
        let own_agents: Vec<&AgentRec> = agents.iter().filter(|a| &a.agency == code).collect();
        // the long-period reports are about incidents and compliance, not alerts
        let with_alerts = matches!(req.kind, Kind::Daily | Kind::Weekly);
        let alerts = if with_alerts {
            store.list_alerts(&AlertQuery {
                agency: Some(code.clone()),
                since_us: Some(req.from_us),
                until_us: Some(req.to_us),
                limit: MAX_ALERTS,
                ..Default::default()
            })?
        } else {
            (Vec::new(), None)
        };
        let truncated = alerts.1.is_some();
        let (incidents, _) = store.incidents(&IncidentFilter {
            agency: Some(code.clone()),
            since_us: Some(req.from_us),
            until_us: Some(req.to_us),
            limit: 10_000,
            ..Default::default()
        })?;
        let sys_name = |id: u64| {
            own_systems
                .iter()
                .find(|s| s.id == id)
                .map(|s| format!("{} ({} {})", s.name, t.get("level"), s.level))
                .unwrap_or_else(|| t.get("unattributed").into())
        };
        // targets, techniques and sources, from each alert's typed facts
        struct Agg {
            count: u64,
            first: i64,
            last: i64,
            extra: std::collections::BTreeSet<String>,
        }
        let bump = |m: &mut BTreeMap<Vec<String>, Agg>, key: Vec<String>, time: i64, extra: String| {
            let a =
                m.entry(key).or_insert(Agg { count: 0, first: time, last: time, extra: Default::default() });
            a.count += 1;
            a.first = a.first.min(time);
            a.last = a.last.max(time);
            if !extra.is_empty() && a.extra.len() < 8 {
                a.extra.insert(extra);
            }
        };
        let (mut targets, mut techniques, mut sources) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut by_severity = [0u64; 5];
        let mut by_detector: BTreeMap<String, u64> = BTreeMap::new();
        for (cursor, rec) in &alerts.0 {
            let f = incident::facts_of(reg, rec);
            let inp = incident::input(reg, *cursor, rec, f.clone(), by_id.get(&rec.agent_id), &systems);
            by_severity[rec.severity.min(4) as usize] += 1;
            *by_detector.entry(inp.detector.clone()).or_default() += 1;
            // the victim's port: the service attacked
            let service = inp
                .victims
                .first()
                .and_then(|v| [&f.dest, &f.src].into_iter().flatten().find(|e| &e.ip == v && e.port != 0))
                .map(|e| e.port.to_string())
                .unwrap_or_default();
            for v in &inp.victims {
                bump(&mut targets, vec![v.clone(), sys_name(inp.system)], rec.time_us, service.clone());
            }
            let technique = if f.technique.is_empty() { "-".to_string() } else { f.technique.clone() };
            bump(
                &mut techniques,
                vec![
                    inp.signature_id.to_string(),
                    inp.signature.clone(),
                    inp.detector.clone(),
                    technique,
                    reg.category(&inp.category)
                        .map(|c| t.pick(&c.name_vi, &c.name).to_string())
                        .unwrap_or(inp.category.clone()),
                ],
                rec.time_us,
                String::new(),
            );
            for a in &inp.attackers {
                bump(&mut sources, vec![a.clone()], rec.time_us, inp.category.clone());
            }
        }
        let agg_rows = |m: BTreeMap<Vec<String>, Agg>, with_extra: bool| -> Vec<Vec<String>> {
            let mut v: Vec<(Vec<String>, Agg)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
            v.into_iter()
                .map(|(mut k, a)| {
                    if with_extra {
                        k.push(a.extra.into_iter().collect::<Vec<_>>().join(", "));
                    }
                    k.extend([a.count.to_string(), vn_time(a.first), vn_time(a.last)]);
                    k
                })
                .collect()
        };
        let mut sections = Vec::new();
        let cols = |keys: &[&'static str]| keys.iter().map(|k| t.get(k).to_string()).collect::<Vec<_>>();
        sections.push(Section {
            id: "systems",
            title: t.get("systems_monitored").into(),
            columns: cols(&["system", "level_col", "dossier", "agents"]),
            rows: own_systems
                .iter()
                .map(|s| {
                    let n =
                        own_agents.iter().filter(|a| a.systems.contains(&s.id) && a.revoked_us == 0).count();
                    vec![s.name.clone(), s.level.to_string(), s.dossier_status.clone(), n.to_string()]
                })
                .collect(),
        });
        if req.kind == Kind::Daily {
            sections.push(Section {
                id: "alerts_by_severity",
                title: t.get("alerts_by_severity").into(),
                columns: cols(&["severity", "count"]),
                rows: (1..=4).map(|s| vec![s.to_string(), by_severity[s].to_string()]).collect(),
            });
            sections.push(Section {
                id: "alerts_by_detector",
                title: t.get("alerts_by_detector").into(),
                columns: cols(&["detector", "count"]),
                rows: by_detector.iter().map(|(d, n)| vec![d.clone(), n.to_string()]).collect(),
            });
        }
        if req.kind == Kind::Annual || req.kind == Kind::SixMonth {
            sections.extend(compliance(store, reg, t, code, &own_systems, req)?);
        }
        if req.kind == Kind::SixMonth {
            let mut by: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
            for i in &incidents {
                let level = own_systems
                    .iter()
                    .find(|s| s.id == i.system)
                    .map(|s| s.level.to_string())
                    .unwrap_or_else(|| t.get("unattributed").into());
                let name = reg
                    .category(&i.category)
                    .map(|c| t.pick(&c.name_vi, &c.name).to_string())
                    .unwrap_or(i.category.clone());
                let (serious, _, _) =
                    crate::incident::seriousness(i, systems.iter().find(|s| s.id == i.system), reg);
                let e = by.entry((name, level)).or_default();
                e[0] += 1;
                e[1] += u64::from(serious);
                e[2] += u64::from(i.dismissed);
            }
            sections.push(Section {
                id: "incidents_by_category",
                title: t.get("incidents_by_category").into(),
                columns: cols(&["category", "level_col", "count", "serious", "dismissed"]),
                rows: by
                    .into_iter()
                    .map(|((c, l), n)| vec![c, l, n[0].to_string(), n[1].to_string(), n[2].to_string()])
                    .collect(),
            });
        }
        if with_alerts {
            sections.push(Section {
                id: "targets",
                title: t.get("attacked_targets").into(),
                columns: cols(&["address", "system", "services", "alerts", "first_seen", "last_seen"]),
                rows: agg_rows(targets, true),
            });
            sections.push(Section {
                id: "techniques",
                title: t.get("techniques_evidence").into(),
                columns: cols(&[
                    "signature_id",
                    "signature",
                    "detector",
                    "technique",
                    "category",
                    "alerts",
                    "first_seen",
                    "last_seen",
                ]),
                rows: agg_rows(techniques, false),
            });
            sections.push(Section {
                id: "sources",
                title: t.get("attack_sources").into(),
                columns: cols(&["source", "categories", "alerts", "first_seen", "last_seen"]),
                rows: agg_rows(sources, true),
            });
        }
        let system_map: HashMap<u64, SystemRec> = systems.iter().map(|s| (s.id, s.clone())).collect();
        let view = incident::View { reg, systems: &system_map, now_us: req.now_us };
        sections.push(Section {
            id: "incidents",
            title: t.get("incidents").into(),
            columns: cols(&[
                "id",
                "category",
                "state",
                "severity",
                "system",
                "attacker",
                "victim",
                "alerts",
                "first_seen",
                "deadline",
            ]),
            rows: incidents
                .iter()
                .map(|i| {
                    let m = incident::incident_msg(i, &view);
                    let deadline = match (&m.deadline, m.overdue) {
                        (_, true) => t.get("overdue").to_string(),
                        (Some(d), false) => vn_time(timefmt::micros(timefmt::from_timestamp(d))),
                        (None, false) => "-".into(),
                    };
                    vec![
                        i.id.to_string(),
                        reg.category(&i.category)
                            .map(|c| t.pick(&c.name_vi, &c.name).to_string())
                            .unwrap_or(i.category.clone()),
                        t.state(&i.state).to_string(),
                        i.severity.to_string(),
                        sys_name(i.system),
                        m.attackers.join(", "),
                        m.victims.join(", "),
                        i.alert_count.to_string(),
                        vn_time(i.first_seen_us),
                        deadline,
                    ]
                })
                .collect(),
        });
        let in_period = |us: i64| us >= req.from_us && us < req.to_us;
        sections.push(Section {
            id: "system_changes",
            title: t.get("system_changes").into(),
            columns: cols(&["system", "change", "time"]),
            rows: own_systems
                .iter()
                .flat_map(|s| {
                    let mut v = Vec::new();
                    if in_period(s.created_us) {
                        v.push(vec![s.name.clone(), t.get("registered").into(), vn_time(s.created_us)]);
                    } else if in_period(s.updated_us) {
                        v.push(vec![s.name.clone(), t.get("updated").into(), vn_time(s.updated_us)]);
                    }
                    v
                })
                .collect(),
        });
        let mut monitoring = Vec::new();
        for a in &own_agents {
            if in_period(a.enrolled_us) {
                monitoring.push(vec![
                    a.hostname.clone(),
                    t.get("agent_enrolled").into(),
                    vn_time(a.enrolled_us),
                ]);
            }
            if in_period(a.revoked_us) {
                monitoring.push(vec![
                    a.hostname.clone(),
                    t.get("agent_revoked").into(),
                    vn_time(a.revoked_us),
                ]);
            }
            if a.revoked_us == 0
                && !crate::supervise::online(
                    false,
                    a.last_seen_us,
                    req.to_us.min(req.now_us),
                    req.silence_limit,
                )
            {
                monitoring.push(vec![
                    a.hostname.clone(),
                    t.get("agent_silent").into(),
                    if a.last_seen_us == 0 { "-".into() } else { vn_time(a.last_seen_us) },
                ]);
            }
        }
        for p in store.policies()? {
            if in_period(p.created_us) && (p.scope == "*" || &p.scope == code) {
                monitoring.push(vec![
                    format!("{} {}", t.get("policy"), p.policy_version),
                    t.get("policy_pushed").into(),
                    vn_time(p.created_us),
                ]);
            }
        }
        sections.push(Section {
            id: "monitoring_changes",
            title: t.get("monitoring_changes").into(),
            columns: cols(&["object", "change", "time"]),
            rows: monitoring,
        });
        blocks.push(AgencyBlock {
            code: agency.code.clone(),
            name: agency.name.clone(),
            truncated,
            sections,
        });
    }
    Ok(Report {
        kind: req.kind,
        language: req.lang,
        title: t
            .get(match req.kind {
                Kind::Daily => "daily_title",
                Kind::Weekly => "weekly_title",
                Kind::SixMonth => "six_month_title",
                Kind::Annual | Kind::Incident => "annual_title",
            })
            .into(),
        from: vn_time(req.from_us),
        to: vn_time(req.to_us),
        generated: vn_time(req.now_us),
        agencies: blocks,
    })
}

/// An incident notice (initial or completion report, the national form's
/// fields) as a report in one language: the fields, then the evidence.
pub fn notice(n: &incident::Notice, lang: Lang, now_us: i64) -> Report {
    let t = text::Text(lang);
    // labels and fixed texts read `Vietnamese / English`
    let pick = |s: &str| -> String {
        match s.split_once(" / ") {
            Some((vi, en)) => t.pick(vi, en).to_string(),
            None => s.to_string(),
        }
    };
    let j = &n.json;
    let s = |v: &serde_json::Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    let status = s(&j["status"][lang.code()]);
    let mut rows =
        vec![vec![pick("Số / No."), s(&j["report_number"])], vec![pick("Ngày / Date"), s(&j["report_date"])]];
    for (label, value) in &n.lines {
        if label.starts_with("Bằng chứng") {
            continue;
        }
        let value = if label.starts_with("Tình trạng") {
            status.clone()
        } else if label.starts_with("Hệ thống bị sự cố") && j["unattributed"] == true {
            pick(value)
        } else {
            value.clone()
        };
        rows.push(vec![pick(label), if value.is_empty() { "-".into() } else { value }]);
    }
    let evidence = j["evidence"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    ["signature_id", "signature", "detector", "count", "first_seen", "last_seen"]
                        .iter()
                        .map(|k| s(&e[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let cols = |keys: &[&'static str]| keys.iter().map(|k| t.get(k).to_string()).collect::<Vec<_>>();
    Report {
        kind: Kind::Incident,
        language: lang,
        title: pick(n.title),
        from: s(&j["first_seen"]),
        to: s(&j["last_seen"]),
        generated: vn_time(now_us),
        agencies: vec![AgencyBlock {
            code: s(&j["reporting_unit"]["agency"]),
            name: s(&j["reporting_unit"]["name"]),
            truncated: false,
            sections: vec![
                Section {
                    id: "notice",
                    title: format!("{} #{}", t.get("incident"), s(&j["incident_id"])),
                    columns: cols(&["field", "value"]),
                    rows,
                },
                Section {
                    id: "evidence",
                    title: t.get("evidence").into(),
                    columns: cols(&[
                        "signature_id",
                        "signature",
                        "detector",
                        "alerts",
                        "first_seen",
                        "last_seen",
                    ]),
                    rows: evidence,
                },
            ],
        }],
    }
}
