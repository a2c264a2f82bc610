//! `canhgac incidents`: listing, detail, workflow (over several ids at
//! once), merges, reports and the change feed.

use canhgac_proto::{client::TlsClient, v1::*};
use clap::Subcommand;
use serde_json::{Value, json};

use super::{
    Failure,
    admin::{pairs, ts},
    connect,
    output::{self, say},
    time_str,
};

#[derive(Subcommand, Debug)]
pub enum IncidentsCmd {
    /// Lists incidents, newest first.
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// Only incidents of this system id (0: unattributed ones).
        #[arg(long)]
        system: Option<u64>,
        /// Only this category (malware, c2, scanning, intrusion, ...).
        #[arg(long)]
        category: Option<String>,
        /// Only incidents with events at or after this time (RFC 3339 or a date).
        #[arg(long, value_parser = super::output::parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Only incidents with events before this time.
        #[arg(long, value_parser = super::output::parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Only incidents not closed.
        #[arg(long)]
        open: bool,
        /// Only incidents with a missed deadline.
        #[arg(long)]
        overdue: bool,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledges an incident (records who saw it first).
    Ack {
        id: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Assigns incidents: `canhgac incidents assign 3 4 5 nguyen.van.a`.
    Assign {
        #[arg(required = true, num_args = 2.., value_name = "ID... ASSIGNEE")]
        args: Vec<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    Note {
        id: u64,
        text: String,
    },
    /// Moves incidents: notified, initial_report, in_progress, closed
    /// (`canhgac incidents transition 3 4 closed --reason false_positive`);
    /// all or none.
    Transition {
        #[arg(required = true, num_args = 2.., value_name = "ID... STATE")]
        args: Vec<String>,
        /// Why it is closed: false_positive, duplicate (both dismiss: no
        /// deadline runs) or resolved. Required to close before in_progress.
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Merges incidents of one agency into the first id; the others close
    /// as its duplicates.
    Merge {
        #[arg(required = true, num_args = 2.., value_name = "ID")]
        ids: Vec<u64>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Sets report fields: description, actions_taken, cause, scope, remedy,
    /// consequences, assistance_needed, impacts, owner_cannot_handle.
    Set {
        id: u64,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Prints the initial or completion report with the national form's fields.
    Report {
        id: u64,
        #[arg(long, default_value = "initial")]
        kind: String,
        #[arg(long)]
        json: bool,
    },
    /// Follows incident changes; resumes after disconnects from the last cursor.
    Tail {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        from_cursor: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

/// An incident as JSON, times in the display zone.
pub fn incident_json(i: &Incident) -> Value {
    canhgac_proto::json::incident(i, &|t| time_str(t), &relative)
}

fn incident_detail_json(i: &Incident, alerts: &[StoredAlert]) -> Value {
    let mut v = incident_json(i);
    v["deadlines"] = i
        .deadlines
        .iter()
        .map(|d| json!({"id": d.id, "description": d.description, "due": ts(&d.due), "met": ts(&d.met), "overdue": d.overdue}))
        .collect();
    v["history"] = i
        .history
        .iter()
        .map(|h| json!({"time": ts(&h.time), "actor": h.actor, "action": h.action, "from": h.from_state, "to": h.to_state, "text": h.text}))
        .collect();
    v["alerts"] = alerts.iter().map(|a| Value::from(a.cursor)).collect();
    v
}

const INCIDENT_HEADERS: &[&str] =
    &["ID", "AGENCY", "SYSTEM", "CATEGORY", "ATTACKER", "VICTIM", "STATE", "SEV", "ALERTS", "DEADLINE", ""];

/// A deadline relative to now: "in 4 d 23 h" / "overdue 2 h".
fn relative(t: &prost_types::Timestamp) -> String {
    super::output::relative(canhgac_proto::timefmt::from_timestamp(t), time::OffsetDateTime::now_utc())
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() { "-".into() } else { v.join(", ") }
}

fn first_and_more(v: &[String]) -> String {
    match v {
        [] => "-".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn incident_row(i: &Incident) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.agency.clone(),
        if i.system == 0 { "unattributed".into() } else { format!("{} {}", i.system, i.system_name) },
        i.category.clone(),
        first_and_more(&i.attackers),
        first_and_more(&i.victims),
        if i.dismissed { format!("closed ({})", i.close_reason) } else { i.state.clone() },
        i.severity.to_string(),
        i.alert_count.to_string(),
        i.deadline.as_ref().map(relative).unwrap_or_else(|| "-".into()),
        if i.serious {
            "SERIOUS".into()
        } else if i.possibly_serious {
            "possibly".into()
        } else {
            String::new()
        },
    ]
}

/// Splits `ID... LAST` arguments.
fn ids_and_last(args: &[String], last: &str) -> Result<(Vec<u64>, String), Failure> {
    let Some((value, ids)) = args.split_last() else {
        return Err(Failure::usage(format!("expected ID... {last}")));
    };
    let ids = ids
        .iter()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| Failure::usage(format!("`{s}` is not an incident id (expected ID... {last})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(Failure::usage(format!("expected at least one incident id before {last}")));
    }
    Ok((ids, value.clone()))
}

/// A refusal of `command`, naming the command.
fn command_error(command: &str, s: tonic::Status) -> Failure {
    Failure::from(s).context(command)
}

pub(super) async fn incident(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    cmd: IncidentsCmd,
) -> Result<(), Failure> {
    let action = |id: u64, value: String, note: String| IncidentActionRequest {
        id,
        value,
        note,
        reason: String::new(),
    };
    let done = |i: Incident, what: &str| say(format!("incident {} {what} (state {})", i.id, i.state));
    match cmd {
        IncidentsCmd::List { agency, state, system, category, since, until, open, overdue, limit, json } => {
            let mut page_token = String::new();
            let mut all = Vec::new();
            while all.len() < limit {
                let r = c
                    .list_incidents(ListIncidentsRequest {
                        agency: agency.clone().unwrap_or_default(),
                        state: state.clone().unwrap_or_default(),
                        open_only: open,
                        overdue_only: overdue,
                        limit: (limit - all.len()).min(1000) as u32,
                        page_token: page_token.clone(),
                        system: system.unwrap_or(0),
                        unattributed: system == Some(0),
                        category: category.clone().unwrap_or_default(),
                        since: since.map(canhgac_proto::timefmt::to_timestamp),
                        until: until.map(canhgac_proto::timefmt::to_timestamp),
                    })
                    .await?
                    .into_inner();
                let empty = r.incidents.is_empty();
                all.extend(r.incidents);
                if r.next_page_token.is_empty() || empty {
                    break;
                }
                page_token = r.next_page_token;
            }
            all.truncate(limit);
            output::list(json, INCIDENT_HEADERS, &all, incident_row, |i| incident_json(i).to_string())?;
        }
        IncidentsCmd::Show { id, json } => {
            let d = c.get_incident(GetIncidentRequest { id, alert_limit: 1000 }).await?.into_inner();
            let i = d.incident.unwrap_or_default();
            if output::json(json) {
                say(incident_detail_json(&i, &d.alerts).to_string())?;
            } else {
                // every line fits the width unless --wide: long fields are cut
                let say = |line: String| say(output::clip(&line));
                say(output::detail_table(INCIDENT_HEADERS, vec![incident_row(&i)]))?;
                say(format!("category: {}", i.category_name))?;
                say(format!(
                    "system: {}",
                    if i.system == 0 {
                        "unattributed (no registered system matches the evidence)".to_string()
                    } else {
                        format!("{} {} (level {})", i.system, i.system_name, i.system_level)
                    }
                ))?;
                say(format!("attacker: {}", list_or_dash(&i.attackers)))?;
                say(format!("victim: {}", list_or_dash(&i.victims)))?;
                if i.dismissed {
                    say(format!("dismissed: {}", i.close_reason))?;
                }
                if i.merged_into != 0 {
                    say(format!("merged into incident {}", i.merged_into))?;
                }
                for e in &i.evidence {
                    // the signature gives way, the counts and times stay whole
                    say(output::squeeze(
                        &format!("evidence: [{}] {} ", e.detector, e.signature_id),
                        &e.signature,
                        &format!(
                            " × {} ({} – {})",
                            e.count,
                            e.first_seen.as_ref().map(time_str).unwrap_or_default(),
                            e.last_seen.as_ref().map(time_str).unwrap_or_default()
                        ),
                    ))?;
                }
                if !i.serious_reason.is_empty() {
                    say(format!("serious: {} ({})", i.serious, i.serious_reason))?;
                }
                for dl in &i.deadlines {
                    say(format!(
                        "deadline {}: {} due {}{}",
                        dl.id,
                        dl.description,
                        dl.due
                            .as_ref()
                            .map(|d| format!("{} ({})", time_str(d), relative(d)))
                            .unwrap_or_default(),
                        match (&dl.met, dl.overdue) {
                            (Some(m), _) => format!(", met {}", time_str(m)),
                            (None, true) => ", OVERDUE".into(),
                            (None, false) => String::new(),
                        }
                    ))?;
                }
                for h in &i.history {
                    let t = h.time.as_ref().map(time_str).unwrap_or_default();
                    // the opening event has no state before it
                    let change = if h.to_state.is_empty() || h.from_state.is_empty() {
                        String::new()
                    } else {
                        format!(" {} → {}", h.from_state, h.to_state)
                    };
                    say(format!("{t}  {}  {}{change}  {}", h.actor, h.action, h.text))?;
                }
                say(format!("alerts ({}):", d.alerts.len()))?;
                let headers = crate::alert_headers();
                let headers = headers.each_ref().map(String::as_str);
                for a in &d.alerts {
                    say(output::line(2, &headers, &crate::alert_row(a)))?;
                }
            }
        }
        IncidentsCmd::Ack { id, note } => {
            done(c.ack_incident(action(id, String::new(), note)).await?.into_inner(), "acknowledged")?
        }
        IncidentsCmd::Assign { args, note } => {
            let (ids, assignee) = ids_and_last(&args, "ASSIGNEE")?;
            let r = c
                .bulk_incident_action(BulkIncidentActionRequest {
                    ids,
                    action: "assign".into(),
                    value: assignee,
                    reason: String::new(),
                    note,
                })
                .await
                .map_err(|e| command_error("incidents assign", e))?
                .into_inner();
            for i in r.incidents {
                done(i, "assigned")?;
            }
        }
        IncidentsCmd::Note { id, text } => {
            done(c.add_incident_note(action(id, text, String::new())).await?.into_inner(), "noted")?
        }
        IncidentsCmd::Transition { args, reason, note } => {
            let (ids, state) = ids_and_last(&args, "STATE")?;
            let r = c
                .bulk_incident_action(BulkIncidentActionRequest {
                    ids,
                    action: "transition".into(),
                    value: state,
                    reason,
                    note,
                })
                .await
                .map_err(|e| command_error("incidents transition", e))?
                .into_inner();
            for i in r.incidents {
                let what =
                    if i.dismissed { format!("dismissed ({})", i.close_reason) } else { "moved".into() };
                done(i, &what)?;
            }
        }
        IncidentsCmd::Merge { ids, note } => {
            let i = c
                .merge_incidents(MergeIncidentsRequest { ids: ids.clone(), note })
                .await
                .map_err(|e| command_error("incidents merge", e))?
                .into_inner();
            say(format!(
                "incidents {} merged into incident {} ({} alerts)",
                ids[1..].iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                i.id,
                i.alert_count
            ))?;
        }
        IncidentsCmd::Set { id, fields } => done(
            c.update_incident(UpdateIncidentRequest { id, set: pairs(&fields)? }).await?.into_inner(),
            "updated",
        )?,
        IncidentsCmd::Report { id, kind, json } => {
            let r = c.incident_report(IncidentReportRequest { id, kind }).await?.into_inner();
            say(if output::json(json) { r.json } else { r.text })?;
        }
        IncidentsCmd::Tail { .. } => {}
    }
    Ok(())
}

/// Follows incident changes; on a broken stream reconnects after the last
/// cursor printed.
pub(super) async fn incident_tail(
    client: &TlsClient,
    agency: Option<String>,
    from_cursor: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let cursor = std::cell::Cell::new(from_cursor);
    let headers: Vec<&str> = ["CURSOR", "CHANGE"].iter().chain(INCIDENT_HEADERS).copied().collect();
    let feed = std::cell::RefCell::new(output::Feed::new(json, &headers));
    let (cursor, agency, feed) = (&cursor, &agency, &feed);
    crate::follow("incident", move || async move {
        let mut c = connect(client).await?;
        let mut stream = c
            .subscribe_incidents(SubscribeIncidentsRequest {
                after_cursor: cursor.get(),
                agency: agency.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        loop {
            let ch = tokio::select! {
                m = stream.message() => match m? { Some(ch) => ch, None => break },
                _ = super::output::stdout_closed() => return Err(Failure::closed()),
            };
            let i = ch.incident.clone().unwrap_or_default();
            feed.borrow_mut().item(
                || [vec![ch.cursor.to_string(), ch.change.clone()], incident_row(&i)].concat(),
                || {
                    let mut v = incident_json(&i);
                    v["cursor"] = json!(ch.cursor);
                    v["change"] = json!(ch.change);
                    v.to_string()
                },
            )?;
            cursor.set(Some(ch.cursor));
        }
        Ok(())
    })
    .await
}
