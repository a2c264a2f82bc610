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
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "daily" => Some(Kind::Daily),
            "weekly" => Some(Kind::Weekly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
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
    if to_us - from_us > 366 * 86_400_000_000 {
        return Err(ReportError::Invalid("the period is longer than a year".into()));
    }
    Ok(())
}

fn vn_time(us: i64) -> String {
    let t = timefmt::from_micros(us).to_offset(text::VIETNAM);
    t.replace_nanosecond(0).map(timefmt::rfc3339).unwrap_or_else(|_| timefmt::rfc3339(t))
}

/// Builds a report from the store.
pub fn build(store: &Store, reg: &Regulation, req: &Request) -> Result<Report, ReportError> {
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
        let alerts = store.list_alerts(&AlertQuery {
            agency: Some(code.clone()),
            since_us: Some(req.from_us),
            until_us: Some(req.to_us),
            limit: MAX_ALERTS,
            ..Default::default()
        })?;
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
            let inp = incident::input(reg, *cursor, rec, by_id.get(&rec.agent_id), &systems);
            by_severity[rec.severity.min(4) as usize] += 1;
            *by_detector.entry(inp.detector.clone()).or_default() += 1;
            let service = match (&f.dest, inp.victims.first()) {
                (Some(d), Some(v)) if &d.ip == v && d.port != 0 => d.port.to_string(),
                (Some(_), _) | (None, _) => match (&f.src, inp.victims.first()) {
                    (Some(s), Some(v)) if &s.ip == v && s.port != 0 => s.port.to_string(),
                    _ => String::new(),
                },
            };
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
                    std::time::Duration::from_secs(300),
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
            })
            .into(),
        from: vn_time(req.from_us),
        to: vn_time(req.to_us),
        generated: vn_time(req.now_us),
        agencies: blocks,
    })
}
