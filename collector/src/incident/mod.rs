//! Incidents: correlation of alerts, the response workflow, deadlines
//! from the rule packs, the serious-incident rule and the reports.
//!
//! **Correlation.** A background task follows the alert cursor; each alert
//! gets a key (agency, system, category, attacker) and joins the open
//! incident with that key when its event time is within the correlation
//! window of that incident's alerts, otherwise it opens a new incident.
//! The correlator's position is committed with the incident changes, so
//! after a crash every alert is counted exactly once.
//!
//! * category: first matching rule of the category data
//!   ([`Regulation::categorize`]); categories with `creates_incident =
//!   false` (e.g. `agent-silent`) open none;
//! * attacker: `canhgac.attacker` if the detector set it, else
//!   `canhgac.indicator`, else `src_ip`;
//! * system: among the systems linked to the alert's agent, the first
//!   whose public IPs include `dest_ip` or `src_ip`; else the agent's first
//!   linked system; else the first system of the agency whose public IPs
//!   include an address of the alert; else none (0).
//!
//! **Deadlines** are computed when read, from the incident's milestones and
//! the active rule packs, so a changed pack applies to open incidents too.

use std::{collections::HashMap, sync::Arc, time::Duration};

use canhgac_proto::{
    timefmt,
    v1::{Deadline, Incident, IncidentEvent},
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{
    rules::Regulation,
    store::{
        AgencyRec, AgentRec, CorrelationInput, IncidentEventRec, IncidentRec, RecordRec, Store, StoreError,
        SystemRec,
    },
};

pub const STATES: &[&str] = &["detected", "notified", "initial_report", "in_progress", "closed"];

/// Report fields an operator may set with `incidents set`.
pub const TEXT_FIELDS: &[&str] =
    &["description", "actions_taken", "cause", "scope", "remedy", "consequences", "assistance_needed"];

/// States reachable from `state`. `detected → closed` dismisses a false
/// positive.
pub fn next_states(state: &str) -> &'static [&'static str] {
    match state {
        "detected" => &["notified", "closed"],
        "notified" => &["initial_report"],
        "initial_report" => &["in_progress"],
        "in_progress" => &["closed"],
        _ => &[],
    }
}

/// Checks a transition; the error names the allowed ones.
pub fn check_transition(from: &str, to: &str) -> Result<(), String> {
    if !STATES.contains(&to) {
        return Err(format!("unknown state `{to}` (one of {})", STATES.join(", ")));
    }
    let allowed = next_states(from);
    if allowed.contains(&to) {
        Ok(())
    } else if allowed.is_empty() {
        Err(format!("illegal transition {from} → {to}: an incident in state `{from}` cannot change state"))
    } else {
        Err(format!("illegal transition {from} → {to}; allowed from `{from}`: {}", allowed.join(", ")))
    }
}

pub fn event(time_us: i64, actor: &str, action: &str, text: impl Into<String>) -> IncidentEventRec {
    IncidentEventRec {
        time_us,
        actor: actor.into(),
        action: action.into(),
        text: text.into(),
        ..Default::default()
    }
}

fn ip_in(ips: &[String], eve: &Value) -> bool {
    ["dest_ip", "src_ip"].iter().any(|f| eve[*f].as_str().is_some_and(|ip| ips.iter().any(|x| x == ip)))
}

/// The attacker key of an alert.
pub fn attacker(eve: &Value) -> String {
    for v in [&eve["canhgac"]["attacker"], &eve["canhgac"]["indicator"], &eve["src_ip"]] {
        if let Some(s) = v.as_str()
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    String::from("unknown")
}

/// The system an alert is about (0: none identified).
pub fn resolve_system(eve: &Value, agent: Option<&AgentRec>, systems: &[SystemRec], agency: &str) -> u64 {
    let linked: Vec<&SystemRec> = match agent {
        Some(a) => systems.iter().filter(|s| a.systems.contains(&s.id)).collect(),
        None => Vec::new(),
    };
    if let Some(s) = linked.iter().find(|s| ip_in(&s.public_ips, eve)) {
        return s.id;
    }
    if let Some(s) = linked.iter().min_by_key(|s| s.id) {
        return s.id;
    }
    systems.iter().find(|s| s.agency == agency && ip_in(&s.public_ips, eve)).map(|s| s.id).unwrap_or(0)
}

/// Turns stored alerts into correlation inputs; alerts whose category
/// opens no incident are left out.
pub fn inputs(
    reg: &Regulation,
    alerts: &[(u64, RecordRec)],
    agents: &HashMap<String, AgentRec>,
    systems: &[SystemRec],
) -> Vec<CorrelationInput> {
    let mut out = Vec::new();
    for (cursor, rec) in alerts {
        let eve: Value = serde_json::from_str(&rec.eve_json).unwrap_or(Value::Null);
        let category = reg.categorize(&eve);
        if reg.category(category).is_some_and(|c| !c.creates_incident) {
            continue;
        }
        out.push(CorrelationInput {
            cursor: *cursor,
            agency: rec.agency.clone(),
            system: resolve_system(&eve, agents.get(&rec.agent_id), systems, &rec.agency),
            category: category.to_string(),
            attacker: attacker(&eve),
            severity: rec.severity,
            time_us: rec.time_us,
            received_us: rec.received_us,
        });
    }
    out
}

/// One correlation step: alerts after the correlator's position, up to
/// `limit`. Returns how many alerts were processed.
pub fn correlate_once(
    store: &Store,
    reg: &Regulation,
    window: Duration,
    limit: usize,
) -> Result<usize, StoreError> {
    let after = store.correlated_cursor()?;
    let alerts = store.alerts_after(after, limit)?;
    let Some(last) = alerts.last().map(|(c, _)| *c) else {
        return Ok(0);
    };
    let agents: HashMap<String, AgentRec> =
        store.agents()?.into_iter().map(|a| (a.agent_id.clone(), a)).collect();
    let systems = store.systems()?;
    let inp = inputs(reg, &alerts, &agents, &systems);
    let now = timefmt::micros(OffsetDateTime::now_utc());
    store.correlate(&inp, last, window.as_micros().min(i64::MAX as u128) as i64, now)?;
    Ok(alerts.len())
}

/// Runs the correlator until shutdown.
pub async fn run_correlator(
    store: Store,
    reg: Arc<Regulation>,
    window: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut committed = store.alert_cursor();
    loop {
        committed.borrow_and_update();
        let (s, r) = (store.clone(), reg.clone());
        let n = match tokio::task::spawn_blocking(move || correlate_once(&s, &r, window, 2000)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "correlation failed; retrying");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "correlation task failed");
                0
            }
        };
        if n > 0 {
            continue;
        }
        tokio::select! {
            r = committed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
    }
}

/// Whether an incident is serious, possibly serious (all but the owner's
/// capacity is met), and why.
pub fn seriousness(inc: &IncidentRec, system: Option<&SystemRec>, reg: &Regulation) -> (bool, bool, String) {
    let rule = &reg.serious;
    let level = system.map(|s| s.level).unwrap_or(0);
    let mut impacts: Vec<String> = inc.impacts.clone();
    if let Some(c) = reg.category(&inc.category) {
        impacts.extend(c.impacts.iter().cloned());
    }
    let hit: Vec<&String> = impacts.iter().filter(|i| rule.impacts.contains(i)).collect();
    if level < rule.min_level || hit.is_empty() {
        return (false, false, String::new());
    }
    let mut reason = format!(
        "level {level} system; impact: {}",
        hit.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    );
    if rule.requires_owner_cannot_handle && !inc.owner_cannot_handle {
        reason.push_str("; the owner's capacity to handle it is not assessed");
        return (false, true, reason);
    }
    if rule.requires_owner_cannot_handle {
        reason.push_str("; the owner cannot handle it alone");
    }
    (true, false, reason)
}

fn ts(us: i64) -> Option<prost_types::Timestamp> {
    (us != 0).then(|| timefmt::to_timestamp(timefmt::from_micros(us)))
}

/// The deadlines of an incident at `now_us`.
pub fn deadlines(inc: &IncidentRec, serious: bool, reg: &Regulation, now_us: i64) -> Vec<Deadline> {
    let mut out = Vec::new();
    for d in &reg.deadlines {
        if d.serious_only && !serious {
            continue;
        }
        let Some(start) = inc.milestones_us.get(&d.from).copied() else {
            continue;
        };
        let due = start.saturating_add(d.within.as_micros().min(i64::MAX as u128) as i64);
        let met = inc.milestones_us.get(&d.met_by).copied().unwrap_or(0);
        out.push(Deadline {
            id: d.id.clone(),
            pack: d.pack.clone(),
            description: d.description.clone(),
            due: ts(due),
            met: ts(met),
            overdue: met == 0 && now_us > due,
        });
    }
    out
}

/// Lookups an incident view needs.
pub struct View<'a> {
    pub reg: &'a Regulation,
    pub systems: &'a HashMap<u64, SystemRec>,
    pub now_us: i64,
}

pub fn incident_msg(inc: &IncidentRec, v: &View<'_>) -> Incident {
    let system = v.systems.get(&inc.system);
    let (serious, possibly_serious, serious_reason) = seriousness(inc, system, v.reg);
    let dl = deadlines(inc, serious, v.reg, v.now_us);
    let next =
        dl.iter().filter(|d| d.met.is_none()).min_by_key(|d| d.due.as_ref().map(|t| (t.seconds, t.nanos)));
    Incident {
        id: inc.id,
        agency: inc.agency.clone(),
        system: inc.system,
        system_name: system.map(|s| s.name.clone()).unwrap_or_default(),
        system_level: system.map(|s| s.level).unwrap_or(0),
        category: inc.category.clone(),
        category_name: v
            .reg
            .category(&inc.category)
            .map(|c| format!("{} ({})", c.name_vi, c.name))
            .unwrap_or_default(),
        attacker: inc.attacker.clone(),
        state: inc.state.clone(),
        severity: inc.severity,
        alert_count: inc.alert_count,
        first_seen: ts(inc.first_seen_us),
        last_seen: ts(inc.last_seen_us),
        detected: ts(inc.detected_us),
        assignee: inc.assignee.clone(),
        acknowledged_by: inc.acknowledged_by.clone(),
        acknowledged: ts(inc.acknowledged_us),
        serious,
        possibly_serious,
        serious_reason,
        impacts: inc.impacts.clone(),
        owner_cannot_handle: inc.owner_cannot_handle,
        deadline: next.and_then(|d| d.due),
        deadline_id: next.map(|d| d.id.clone()).unwrap_or_default(),
        overdue: dl.iter().any(|d| d.overdue),
        deadlines: dl,
        fields: inc.fields.clone().into_iter().collect(),
        history: inc
            .history
            .iter()
            .map(|h| IncidentEvent {
                time: ts(h.time_us),
                actor: h.actor.clone(),
                action: h.action.clone(),
                from_state: h.from_state.clone(),
                to_state: h.to_state.clone(),
                text: h.text.clone(),
            })
            .collect(),
        updated: ts(inc.updated_us),
    }
}

fn time_text(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map(|t| timefmt::rfc3339(timefmt::from_timestamp(t))).unwrap_or_else(|| "-".into())
}

/// The initial or completion report, with the fields of the national
/// forms (reporting unit and contact, affected system and its level,
/// public IPs and domains, detection time, category, description, actions
/// taken, status; the completion report adds the end of response, cause,
/// scope, remedy and consequences). Returns (text, JSON).
pub fn report(
    kind: &str,
    inc: &Incident,
    agency: Option<&AgencyRec>,
    system: Option<&SystemRec>,
) -> Result<(String, Value), String> {
    let title = match kind {
        "initial" => "BÁO CÁO BAN ĐẦU SỰ CỐ / INITIAL INCIDENT REPORT",
        "completion" => "BÁO CÁO KẾT THÚC ỨNG PHÓ SỰ CỐ / INCIDENT COMPLETION REPORT",
        other => return Err(format!("unknown report kind `{other}` (initial or completion)")),
    };
    if kind == "completion" && inc.state != "closed" {
        return Err(format!(
            "the completion report needs a closed incident (incident {} is `{}`)",
            inc.id, inc.state
        ));
    }
    let f = |k: &str| agency.and_then(|a| a.fields.get(k)).cloned().unwrap_or_default();
    let contact_group = if f("response.name").is_empty() { "monitoring" } else { "response" };
    let contact = |k: &str| f(&format!("{contact_group}.{k}"));
    let field = |k: &str| inc.fields.get(k).cloned().unwrap_or_default();
    let description = if field("description").is_empty() {
        format!(
            "{} alert(s) of category {} from {} between {} and {}",
            inc.alert_count,
            inc.category,
            inc.attacker,
            time_text(&inc.first_seen),
            time_text(&inc.last_seen)
        )
    } else {
        field("description")
    };
    let closed = inc
        .history
        .iter()
        .rev()
        .find(|h| h.to_state == "closed")
        .map(|h| time_text(&h.time))
        .unwrap_or_default();
    let mut j = json!({
        "report": kind,
        "incident_id": inc.id,
        "reporting_unit": {
            "agency": inc.agency,
            "name": agency.map(|a| a.name.clone()).unwrap_or_default(),
            "contact_name": contact("name"),
            "contact_unit": contact("unit"),
            "contact_position": contact("position"),
            "contact_phone": contact("phone"),
            "contact_mobile": contact("mobile"),
            "contact_email": contact("email"),
        },
        "affected_system": {
            "id": inc.system,
            "name": system.map(|s| s.name.clone()).unwrap_or_default(),
            "type": system.map(|s| s.kind.clone()).unwrap_or_default(),
            "security_level": system.map(|s| s.level).unwrap_or(0),
            "state_secrets": system.is_some_and(|s| s.state_secrets),
            "public_ips": system.map(|s| s.public_ips.clone()).unwrap_or_default(),
            "domains": system.map(|s| s.domains.clone()).unwrap_or_default(),
        },
        "detection_time": time_text(&inc.detected),
        "first_seen": time_text(&inc.first_seen),
        "last_seen": time_text(&inc.last_seen),
        "category": inc.category,
        "category_name": inc.category_name,
        "attacker": inc.attacker,
        "alert_count": inc.alert_count,
        "severity": inc.severity,
        "serious": inc.serious,
        "serious_reason": inc.serious_reason,
        "description": description,
        "actions_taken": field("actions_taken"),
        "status": inc.state,
        "assistance_needed": field("assistance_needed"),
    });
    if kind == "completion" {
        j["response_ended"] = json!(closed);
        for k in ["cause", "scope", "remedy", "consequences"] {
            j[k] = json!(field(k));
        }
    }
    let mut t = vec![title.to_string(), String::new()];
    let mut line =
        |label: &str, v: String| t.push(format!("{label}: {}", if v.is_empty() { "-".into() } else { v }));
    let ru = &j["reporting_unit"];
    let s = |v: &Value| v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
    line("Đơn vị báo cáo / Reporting unit", format!("{} ({})", s(&ru["name"]), inc.agency));
    line(
        "Đầu mối liên hệ / Contact",
        format!(
            "{}, {} - {}; ĐT {} / DĐ {}; {}",
            s(&ru["contact_name"]),
            s(&ru["contact_position"]),
            s(&ru["contact_unit"]),
            s(&ru["contact_phone"]),
            s(&ru["contact_mobile"]),
            s(&ru["contact_email"])
        ),
    );
    let sys = &j["affected_system"];
    line("Hệ thống bị sự cố / Affected system", format!("{} (id {})", s(&sys["name"]), inc.system));
    line("Cấp độ / Security level", s(&sys["security_level"]));
    line("Địa chỉ IP công khai / Public IPs", system.map(|x| x.public_ips.join(", ")).unwrap_or_default());
    line("Tên miền / Domains", system.map(|x| x.domains.join(", ")).unwrap_or_default());
    line("Thời điểm phát hiện / Detection time", time_text(&inc.detected));
    line("Loại sự cố / Category", format!("{} - {}", inc.category, inc.category_name));
    line("Nguồn tấn công / Attack source", inc.attacker.clone());
    line("Mô tả sự cố / Description", s(&j["description"]));
    line("Biện pháp đã thực hiện / Actions taken", field("actions_taken"));
    line("Tình trạng / Status", inc.state.clone());
    line(
        "Sự cố nghiêm trọng / Serious incident",
        if inc.serious { format!("yes: {}", inc.serious_reason) } else { "no".into() },
    );
    line("Đề nghị hỗ trợ / Assistance needed", field("assistance_needed"));
    if kind == "completion" {
        line("Thời điểm kết thúc ứng phó / End of response", closed);
        line("Nguyên nhân / Cause", field("cause"));
        line("Phạm vi ảnh hưởng / Scope", field("scope"));
        line("Biện pháp khắc phục / Remedy", field("remedy"));
        line("Hậu quả / Consequences", field("consequences"));
    }
    Ok((t.join("\n"), j))
}

/// Sets report fields, impacts and the owner's capacity from a `set` map.
pub fn apply_fields(
    inc: &mut IncidentRec,
    set: &std::collections::BTreeMap<String, String>,
    reg: &Regulation,
) -> Result<(), String> {
    for (k, v) in set {
        let v = v.trim();
        if v.chars().count() > 5000 {
            return Err(format!("field `{k}`: at most 5000 characters"));
        }
        match k.as_str() {
            "impacts" => {
                let items: Vec<String> = v
                    .split([',', ';', ' '])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                for i in &items {
                    if !reg.serious.impacts.contains(i) && i != "none" {
                        return Err(format!(
                            "field `impacts`: unknown impact `{i}` (one of {})",
                            reg.serious.impacts.join(", ")
                        ));
                    }
                }
                inc.impacts = items.into_iter().filter(|i| i != "none").collect();
            }
            "owner_cannot_handle" => {
                inc.owner_cannot_handle = match v {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    other => return Err(format!("field `owner_cannot_handle`: invalid boolean `{other}`")),
                }
            }
            f if TEXT_FIELDS.contains(&f) => {
                if v.is_empty() {
                    inc.fields.remove(f);
                } else {
                    inc.fields.insert(f.to_string(), v.to_string());
                }
            }
            other => {
                return Err(format!(
                    "unknown incident field `{other}` (one of impacts, owner_cannot_handle, {})",
                    TEXT_FIELDS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_name_the_allowed_ones() {
        assert!(check_transition("detected", "notified").is_ok());
        let e = check_transition("detected", "in_progress").unwrap_err();
        assert!(e.contains("allowed from `detected`: notified, closed"), "{e}");
        assert!(check_transition("closed", "notified").unwrap_err().contains("cannot change state"));
        assert!(check_transition("notified", "done").unwrap_err().contains("unknown state `done`"));
    }

    #[test]
    fn deadlines_from_the_packs() {
        let reg = Regulation::embedded();
        let day = 86_400_000_000i64;
        let mut inc = IncidentRec { category: "intrusion".into(), ..Default::default() };
        inc.milestones_us.insert("detected".into(), 0);
        let d = deadlines(&inc, false, &reg, 6 * day);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].id, "2017/notify");
        assert!(d[0].overdue);
        let d = deadlines(&inc, true, &reg, 0);
        assert_eq!(d.len(), 3);
        inc.milestones_us.insert("notified".into(), day);
        inc.milestones_us.insert("closed".into(), 2 * day);
        let d = deadlines(&inc, false, &reg, 10 * day);
        let completion = d.iter().find(|d| d.id == "2017/completion").unwrap();
        assert!(completion.overdue);
        assert!(!d.iter().find(|d| d.id == "2017/notify").unwrap().overdue);
    }

    #[test]
    fn serious_rule() {
        let reg = Regulation::embedded();
        let sys = SystemRec { level: 4, ..Default::default() };
        let mut inc = IncidentRec { category: "state_secret_exposure".into(), ..Default::default() };
        assert!(!seriousness(&inc, Some(&sys), &reg).0);
        assert!(seriousness(&inc, Some(&sys), &reg).1);
        inc.owner_cannot_handle = true;
        assert!(seriousness(&inc, Some(&sys), &reg).0);
        let low = SystemRec { level: 3, ..Default::default() };
        assert_eq!(seriousness(&inc, Some(&low), &reg), (false, false, String::new()));
    }

    #[test]
    fn system_resolution_and_attacker() {
        let eve = json!({"src_ip": "203.0.113.7", "dest_ip": "198.51.100.10", "canhgac": {"indicator": "203.0.113.7"}});
        assert_eq!(attacker(&eve), "203.0.113.7");
        let systems = vec![
            SystemRec { id: 1, agency: "A".into(), ..Default::default() },
            SystemRec {
                id: 2,
                agency: "A".into(),
                public_ips: vec!["198.51.100.10".into()],
                ..Default::default()
            },
        ];
        assert_eq!(resolve_system(&eve, None, &systems, "A"), 2);
        assert_eq!(resolve_system(&eve, None, &systems, "B"), 0);
        let agent = AgentRec { systems: vec![1], ..Default::default() };
        assert_eq!(resolve_system(&eve, Some(&agent), &systems, "A"), 1);
    }
}
