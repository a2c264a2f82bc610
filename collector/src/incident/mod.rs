//! Incidents: correlation of alerts, the response workflow, deadlines
//! from the rule packs, the serious-incident rule and the reports.
//!
//! The decisions are pure and live in the submodules: [`roles`] (who
//! attacked whom, which system the evidence points at), [`correlate`]
//! (join, open or skip; what joining changes) and [`state`] (the workflow).
//! The store persists what they decide.
//!
//! **Correlation.** A background task follows the alert cursor. Each alert
//! gets its category ([`Regulation::categorize`]), its roles, its system
//! and two keys: its flow (alerts of one flow always join) and its episode
//! (agency, episode family of the category, and the victim for outbound
//! categories or the attacker for inbound ones). It joins the open
//! incident a key names when its event time is within the correlation
//! window, else opens one if it may ([`Regulation::opens_incident`]:
//! informational and low-severity alerts only join). The correlator's
//! position is committed with the incident changes, so after a crash every
//! alert is counted exactly once.
//!
//! **Deadlines** are computed when read, from the incident's milestones and
//! the active rule packs, so a changed pack applies to open incidents too;
//! a dismissed incident has none.

pub mod correlate;
pub mod facts;
pub mod roles;
pub mod state;

use std::{collections::HashMap, sync::Arc, time::Duration};

use canhgac_proto::{
    timefmt,
    v1::{Deadline, Incident, IncidentEvent, RecordFacts},
};
use serde_json::{Value, json};
use time::OffsetDateTime;

pub use self::state::{CloseReason, State, WorkflowError};
use crate::{
    rules::Regulation,
    store::{
        AgencyRec, AgentRec, CorrelationInput, IncidentEventRec, IncidentRec, RecordRec, Store, StoreError,
        SystemRec,
    },
};

pub const STATES: &[&str] = &["detected", "notified", "initial_report", "in_progress", "closed"];

/// Report fields an operator may set with `incidents set` (an `agency`
/// operator only these, on its own incidents).
pub const TEXT_FIELDS: &[&str] =
    &["description", "actions_taken", "cause", "scope", "remedy", "consequences", "assistance_needed"];

pub fn event(time_us: i64, actor: &str, action: &str, text: impl Into<String>) -> IncidentEventRec {
    IncidentEventRec {
        time_us,
        actor: actor.into(),
        action: action.into(),
        text: text.into(),
        ..Default::default()
    }
}

/// The typed facts of a stored alert: as received, or derived from its EVE
/// JSON for a record stored before facts existed.
pub fn facts_of(reg: &Regulation, rec: &RecordRec) -> RecordFacts {
    match &rec.facts {
        Some(f) => f.clone(),
        None => {
            let eve: Value = serde_json::from_str(&rec.eve_json).unwrap_or(Value::Null);
            facts::legacy(&eve, &|d| reg.is_host_detector(d))
        }
    }
}

/// The correlation input of one stored alert with its facts
/// ([`facts_of`]).
pub fn input(
    reg: &Regulation,
    cursor: u64,
    rec: &RecordRec,
    f: RecordFacts,
    agent: Option<&AgentRec>,
    systems: &[SystemRec],
) -> CorrelationInput {
    let category = reg.categorize(&f).to_string();
    let internal = |ip| roles::internal_to(systems, &rec.agency, ip);
    let direction = reg.direction(&category);
    let hostname = agent.map(|a| a.hostname.as_str()).unwrap_or_default();
    let r = roles::roles(&f, direction, hostname, &internal);
    // the log's own system, as the agent's configuration names it, when it
    // is one of this agency's; else by address and the agent's links
    let named = systems.iter().find(|s| f.system != 0 && s.id == f.system && s.agency == rec.agency);
    let system = match named {
        Some(s) => s.id,
        None => roles::attribute(f.on_host, &r, agent, systems, &rec.agency),
    };
    let mut keys = Vec::new();
    if f.flow_id != 0 {
        keys.push(format!("f\0{}\0{}\0{}", rec.agency, rec.agent_id, f.flow_id));
    }
    let by_victim = direction == roles::Direction::Outbound;
    let victim = r.victims.first().map(|v| format!("v:{v}"));
    let attacker = r.attackers.first().map(|a| format!("a:{a}"));
    let entity =
        if by_victim { victim.or(attacker) } else { attacker.or(victim) }.unwrap_or_else(|| "unknown".into());
    keys.push(format!("e\0{}\0{}\0{entity}", rec.agency, reg.episode(&category)));
    CorrelationInput {
        cursor,
        agency: rec.agency.clone(),
        system,
        opens: reg.opens_incident(&category, &f, rec.severity),
        category,
        attackers: r.attackers,
        victims: r.victims,
        keys,
        severity: rec.severity,
        time_us: rec.time_us,
        received_us: rec.received_us,
        detector: if f.detector.is_empty() { "rule".into() } else { f.detector },
        signature_id: f.signature_id,
        signature: f.signature,
        mirror: None,
    }
}

/// Turns stored alerts into correlation inputs. Alerts a downstream
/// collector forwarded were correlated there: its incidents arrive as
/// incidents (see `federation::mirror`), so they give no input here.
pub fn inputs(
    reg: &Regulation,
    alerts: &[(u64, RecordRec)],
    agents: &HashMap<String, AgentRec>,
    systems: &[SystemRec],
) -> Vec<CorrelationInput> {
    alerts
        .iter()
        .filter(|(_, rec)| rec.province.is_empty())
        .map(|(cursor, rec)| input(reg, *cursor, rec, facts_of(reg, rec), agents.get(&rec.agent_id), systems))
        .collect()
}

/// Moves an incident to `to` (with `reason` when closing), recording who
/// did it; a dismissal stops every deadline.
pub fn transition(
    inc: &mut IncidentRec,
    to: &str,
    reason: &str,
    actor: &str,
    note: &str,
    now_us: i64,
) -> Result<(), WorkflowError> {
    let from = State::parse(&inc.state).unwrap_or(State::Detected);
    let (to, why) = state::check(from, to, reason)?;
    let mut text = note.to_string();
    if let Some(r) = why {
        inc.close_reason = r.as_str().into();
        inc.dismissed = r.dismisses();
        text = if note.is_empty() {
            format!("reason: {}", r.as_str())
        } else {
            format!("reason: {}; {note}", r.as_str())
        };
    }
    let mut ev = event(now_us, actor, "transition", text);
    ev.from_state = from.as_str().into();
    ev.to_state = to.as_str().into();
    inc.history.push(ev);
    inc.state = to.as_str().into();
    inc.milestones_us.entry(to.as_str().into()).or_insert(now_us);
    inc.updated_us = now_us;
    Ok(())
}

/// Merges `incs[1..]` into `incs[0]`: one agency, none closed; the others
/// are closed as duplicates of the first.
pub fn merge(incs: &mut [IncidentRec], actor: &str, note: &str, now_us: i64) -> Result<(), String> {
    let Some((into, others)) = incs.split_first_mut() else {
        return Err("merge needs at least two incident ids".into());
    };
    if others.is_empty() {
        return Err("merge needs at least two incident ids".into());
    }
    for o in others.iter() {
        if o.id == into.id {
            return Err(format!("incident {} is named twice", o.id));
        }
        if o.agency != into.agency {
            return Err(format!(
                "incident {} belongs to agency `{}` and incident {} to `{}`: only incidents of one agency merge",
                into.id, into.agency, o.id, o.agency
            ));
        }
    }
    for x in std::iter::once(&*into).chain(others.iter()) {
        if x.state == State::Closed.as_str() {
            return Err(format!("incident {} is closed: only open incidents merge", x.id));
        }
    }
    for o in others.iter_mut() {
        correlate::merge(into, o, now_us);
        let text = format!(
            "merged into incident {}{}",
            into.id,
            if note.is_empty() { String::new() } else { format!(": {note}") }
        );
        transition(o, State::Closed.as_str(), CloseReason::Duplicate.as_str(), actor, &text, now_us)
            .map_err(|e| format!("incident {}: {e}", o.id))?;
        o.merged_into = into.id;
        into.history.push(event(
            now_us,
            actor,
            "merge",
            format!("merged incident {} ({} alerts)", o.id, o.alert_count),
        ));
    }
    Ok(())
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

/// Most alerts one correlation pass reads. A pass writes each incident it
/// touches once (the incident, its change entry, its alert links); a
/// larger pass writes less per alert but holds sled's commit lock longer,
/// during which no batch is stored. Measured with `canhgac-loadgen
/// --agents 100` flat out: passes of 10,000 correlated no faster than
/// 2,000 and took more memory; 500 acknowledged faster but left the
/// correlator further behind.
const CORRELATION_PASS: usize = 2000;

/// Runs the correlator until shutdown.
pub async fn run_correlator(
    store: Store,
    reg: Arc<Regulation>,
    window: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut committed = store.alert_cursor();
    // stops between passes, also while catching up on a backlog
    while !*shutdown.borrow() {
        committed.borrow_and_update();
        let (s, r) = (store.clone(), reg.clone());
        let n = match tokio::task::spawn_blocking(move || correlate_once(&s, &r, window, CORRELATION_PASS))
            .await
        {
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
    if inc.dismissed {
        return out;
    }
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
    if let Some(o) = &inc.origin {
        return mirrored_msg(inc, o, v.now_us);
    }
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
        attackers: inc.attackers.clone(),
        victims: inc.victims.clone(),
        dismissed: inc.dismissed,
        close_reason: inc.close_reason.clone(),
        evidence: inc
            .evidence
            .iter()
            .map(|e| canhgac_proto::v1::Evidence {
                signature_id: e.signature_id,
                signature: e.signature.clone(),
                detector: e.detector.clone(),
                count: e.count,
                first_seen: ts(e.first_us),
                last_seen: ts(e.last_us),
            })
            .collect(),
        merged_into: inc.merged_into,
        entities_omitted: inc.entities_omitted,
        province: String::new(),
        origin_id: 0,
    }
}

/// A province's incident as its collector showed it, under this
/// collector's id, with its deadlines read against `now_us`.
fn mirrored_msg(inc: &IncidentRec, origin: &Incident, now_us: i64) -> Incident {
    let mut m = origin.clone();
    if m.origin_id == 0 {
        m.origin_id = origin.id;
    }
    m.id = inc.id;
    m.province = inc.province.clone();
    m.merged_into = 0;
    let now = ts(now_us);
    let key = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    for d in &mut m.deadlines {
        d.overdue = d.met.is_none() && !m.dismissed && d.due.is_some() && key(&d.due) < key(&now);
    }
    m.overdue = m.deadlines.iter().any(|d| d.overdue);
    m
}

fn s_of(v: &Value) -> String {
    v.as_str().map(String::from).unwrap_or_else(|| v.to_string())
}

fn time_text(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map(|t| timefmt::rfc3339(timefmt::from_timestamp(t))).unwrap_or_else(|| "-".into())
}

/// The initial or completion report, with the fields of the national
/// forms (reporting unit and contact, affected system and its level,
/// public IPs and domains, detection time, category, description, actions
/// taken, status; the completion report adds the end of response, cause,
/// scope, remedy and consequences). Returns (text, JSON).
pub struct ReportContext<'a> {
    pub reg: &'a Regulation,
    /// The operator producing the report.
    pub operator: &'a str,
    pub now_us: i64,
}

pub fn report(
    kind: &str,
    inc: &Incident,
    agency: Option<&AgencyRec>,
    system: Option<&SystemRec>,
    ctx: &ReportContext<'_>,
) -> Result<Notice, String> {
    let (title, suffix) = match kind {
        "initial" => ("BÁO CÁO BAN ĐẦU SỰ CỐ / INITIAL INCIDENT REPORT", "BĐ"),
        "completion" => ("BÁO CÁO KẾT THÚC ỨNG PHÓ SỰ CỐ / INCIDENT COMPLETION REPORT", "KT"),
        other => return Err(format!("unknown report kind `{other}` (initial or completion)")),
    };
    let year = inc.detected.as_ref().map(|t| timefmt::from_timestamp(t).year()).unwrap_or(1970);
    let prefix = if ctx.reg.reports.number_prefix.is_empty() { "SC" } else { &ctx.reg.reports.number_prefix };
    let report_number = format!("{prefix}-{year}-{:06}-{suffix}", inc.id);
    let state = State::parse(&inc.state).unwrap_or(State::Detected);
    let status_vi =
        if inc.dismissed { "Đã loại bỏ (không phải sự cố)" } else { state.name_vi() };
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
            inc.attackers.join(", "),
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
        "report_number": report_number,
        "report_date": timefmt::rfc3339(timefmt::from_micros(ctx.now_us)),
        "reporting_operator": ctx.operator,
        "recipients": ctx.reg.reports.recipients,
        "system": system.map(|s| json!({
            "id": s.id,
            "name": s.name,
            "type": s.kind,
            "security_level": s.level,
            "state_secrets": s.state_secrets,
            "public_ips": s.public_ips,
            "domains": s.domains,
            "networks": s.networks,
        })),
        "unattributed": system.is_none(),
        "detection_time": time_text(&inc.first_seen),
        "receipt_time": time_text(&inc.detected),
        "first_seen": time_text(&inc.first_seen),
        "last_seen": time_text(&inc.last_seen),
        "category": inc.category,
        "category_name": inc.category_name,
        "attacker": inc.attackers,
        "victim": inc.victims,
        "evidence": inc.evidence.iter().map(|e| json!({
            "signature_id": e.signature_id,
            "signature": e.signature,
            "detector": e.detector,
            "count": e.count,
            "first_seen": time_text(&e.first_seen),
            "last_seen": time_text(&e.last_seen),
        })).collect::<Vec<_>>(),
        "alert_count": inc.alert_count,
        "severity": inc.severity,
        "serious": inc.serious,
        "serious_reason": inc.serious_reason,
        "description": description,
        "actions_taken": field("actions_taken"),
        "status": {"code": inc.state, "vi": status_vi, "en": if inc.dismissed { format!("dismissed ({})", inc.close_reason) } else { inc.state.replace('_', " ") }},
        "dismissed": inc.dismissed,
        "assistance_needed": field("assistance_needed"),
    });
    if kind == "completion" {
        j["response_ended"] = json!(closed);
        for k in ["cause", "scope", "remedy", "consequences"] {
            j[k] = json!(field(k));
        }
    }
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut line = |label: &str, v: String| lines.push((label.to_string(), v));
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
    match system {
        Some(sys) => {
            line("Hệ thống bị sự cố / Affected system", format!("{} (id {})", sys.name, sys.id));
            line("Cấp độ / Security level", sys.level.to_string());
            line("Địa chỉ IP công khai / Public IPs", sys.public_ips.join(", "));
            line("Tên miền / Domains", sys.domains.join(", "));
        }
        None => line(
            "Hệ thống bị sự cố / Affected system",
            "chưa xác định (không có bằng chứng) / unattributed (no registered system matches the evidence)"
                .into(),
        ),
    }
    line("Máy bị tấn công / Victim hosts", inc.victims.join(", "));
    line("Thời điểm phát hiện / Detection time (first event)", time_text(&inc.first_seen));
    line("Thời điểm tiếp nhận / Receipt time", time_text(&inc.detected));
    line("Loại sự cố / Category", format!("{} - {}", inc.category, inc.category_name));
    line("Nguồn tấn công / Attack source", inc.attackers.join(", "));
    for e in &inc.evidence {
        line(
            "Bằng chứng / Evidence",
            format!(
                "[{}] {} {} × {} ({} – {})",
                e.detector,
                e.signature_id,
                e.signature,
                e.count,
                time_text(&e.first_seen),
                time_text(&e.last_seen)
            ),
        );
    }
    line("Mô tả sự cố / Description", s(&j["description"]));
    line("Biện pháp đã thực hiện / Actions taken", field("actions_taken"));
    line("Tình trạng / Status", format!("{} / {}", s(&j["status"]["vi"]), s(&j["status"]["en"])));
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
    line("Người lập / Reported by", ctx.operator.to_string());
    line("Nơi nhận / Recipients", ctx.reg.reports.recipients.join("; "));
    let mut t = vec![
        title.to_string(),
        format!("Số / No.: {report_number}   Ngày / Date: {}", s_of(&j["report_date"])),
        String::new(),
    ];
    t.extend(lines.iter().map(|(label, v)| format!("{label}: {}", if v.is_empty() { "-" } else { v })));
    Ok(Notice { title, text: t.join("\n"), json: j, lines })
}

/// An incident notice (initial or completion report): the bilingual text,
/// the same fields as JSON, and as (label, value) lines whose labels read
/// `Vietnamese / English`.
#[derive(Debug, Clone)]
pub struct Notice {
    pub title: &'static str,
    pub text: String,
    pub json: Value,
    pub lines: Vec<(String, String)>,
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
}
