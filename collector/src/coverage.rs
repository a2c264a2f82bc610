//! Supervision coverage per agency: the four layers (official letter
//! 1552/2020), systems supervised by a live agent, levels and assessments,
//! contact points, agents, stored data and incidents. One computation for
//! the operator API, the console and the reports.

use std::collections::HashMap;

use canhgac_proto::{
    timefmt,
    v1::{AgencyCoverage, AgentCoverage, GetCoverageResponse, Layer},
};

use crate::{
    directory, incident,
    rules::Regulation,
    store::{AgentRec, IncidentFilter, IncidentRec, Store, StoreError, SystemRec},
    supervise,
};

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    (us != 0).then(|| timefmt::to_timestamp(timefmt::from_micros(us)))
}

/// Coverage of every agency (or one), as of `now`; `is_online` says whether
/// an agent counts as online.
pub fn coverage(
    store: &Store,
    reg: &Regulation,
    agency: Option<&str>,
    now: i64,
    is_online: &dyn Fn(&AgentRec, i64) -> bool,
) -> Result<GetCoverageResponse, StoreError> {
    let today = directory::today();
    let agents = store.agents()?;
    let systems = store.systems()?;
    let retention = supervise::retention_days(store, reg)?;
    let (every_incident, _) = store.incidents(&IncidentFilter {
        agency: agency.map(String::from),
        limit: usize::MAX,
        ..Default::default()
    })?;
    let (all_incidents, closed): (Vec<IncidentRec>, Vec<IncidentRec>) =
        every_incident.into_iter().partition(|i| i.state != "closed");
    let sys_map: HashMap<u64, SystemRec> = systems.iter().map(|s| (s.id, s.clone())).collect();
    let view = incident::View { reg, systems: &sys_map, now_us: now };
    let mut resp = GetCoverageResponse::default();
    for a in store.agencies()? {
        if agency.is_some_and(|x| x != a.code) {
            continue;
        }
        let mine: Vec<&SystemRec> = systems.iter().filter(|s| s.agency == a.code).collect();
        let my_agents: Vec<&AgentRec> =
            agents.iter().filter(|g| g.agency == a.code && g.revoked_us == 0).collect();
        let online: Vec<&&AgentRec> = my_agents.iter().filter(|g| is_online(g, now)).collect();
        let supervised: Vec<u64> =
            mine.iter().filter(|s| online.iter().any(|g| g.systems.contains(&s.id))).map(|s| s.id).collect();
        let f = |k: &str| a.fields.get(k).cloned().unwrap_or_default();
        let inspection_ok = directory::parse_date(&f("last_inspection"))
            .is_some_and(|d| crate::rules::add_months(d, reg.assessment.agency_months) >= today);
        let layers = vec![
            Layer { name: "on_site".into(), ok: !f("onsite_team").is_empty(), detail: f("onsite_team") },
            Layer {
                name: "supervision_provider".into(),
                ok: !f("supervision_provider").is_empty(),
                detail: f("supervision_provider"),
            },
            Layer {
                name: "independent_inspection".into(),
                ok: inspection_ok,
                detail: if f("last_inspection").is_empty() {
                    "never".into()
                } else {
                    format!("last {}", f("last_inspection"))
                },
            },
            Layer {
                name: "upstream".into(),
                ok: !f("upstream_connection").is_empty(),
                detail: f("upstream_connection"),
            },
        ];
        let stats = store.agency_stats(&a.code)?;
        let scans: Vec<i64> = my_agents
            .iter()
            .filter_map(|g| g.counters.as_ref().map(|c| c.secret_scan_last_completed))
            .filter(|t| *t > 0)
            .collect();
        let open: Vec<&IncidentRec> = all_incidents.iter().filter(|i| i.agency == a.code).collect();
        let overdue = open.iter().filter(|i| incident::incident_msg(i, &view).overdue).count();
        resp.agencies.push(AgencyCoverage {
            agency: a.code.clone(),
            name: a.name.clone(),
            systems: mine.len() as u32,
            systems_supervised: supervised.len() as u32,
            systems_unsupervised: mine.iter().map(|s| s.id).filter(|id| !supervised.contains(id)).collect(),
            systems_without_approved_level: mine
                .iter()
                .filter(|s| s.dossier_status != "approved")
                .map(|s| s.id)
                .collect(),
            systems_assessment_overdue: mine
                .iter()
                .filter(|s| directory::system_next_assessment(s, reg, today).1)
                .map(|s| s.id)
                .collect(),
            agency_assessment_overdue: directory::agency_next_assessment(&a, reg) < today,
            missing_contacts: directory::missing_contacts(&a),
            layers,
            agents: my_agents.len() as u32,
            agents_online: online.len() as u32,
            stored_alerts: stats.alerts,
            stored_bytes: stats.alert_bytes + stats.event_bytes,
            retention_days: retention.get(&a.code).copied().unwrap_or(0),
            open_incidents: open.len() as u32,
            overdue_incidents: overdue as u32,
            dismissed_incidents: closed.iter().filter(|i| i.agency == a.code && i.dismissed).count() as u32,
            secret_scan_hosts: scans.len() as u32,
            secret_scan_last_completed: scans.iter().max().and_then(|s| ts(s.saturating_mul(1_000_000))),
        });
        if let Some(p) = store.effective_policy(&a.code)? {
            resp.policy_versions.insert(a.code.clone(), p.policy_version);
        }
    }
    for g in agents {
        if g.revoked_us != 0 || agency.is_some_and(|x| x != g.agency) {
            continue;
        }
        let online = is_online(&g, now);
        let silent = !online && g.last_seen_us != 0;
        resp.agents.push(AgentCoverage {
            online,
            silent,
            last_seen: ts(g.last_seen_us),
            systems: g.systems.clone(),
            agent_version: g.agent_version.clone(),
            policy: g.policy.clone(),
            counters: g.counters.clone(),
            agent_id: g.agent_id,
            agency: g.agency,
            hostname: g.hostname,
        });
    }
    Ok(resp)
}
