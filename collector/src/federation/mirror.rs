//! At an upstream (national) collector: downstream collectors' incidents,
//! kept as their collectors show them, and their daily reports, kept as
//! the province's stored daily reports (`report list` / `report fetch`).
//!
//! Incident records (`RECORD_KIND_INCIDENT`) are stored like any record
//! at ingest; this task follows them in cursor order and keeps one
//! incident per (tenant, province, incident there), replaced by each newer
//! change, in one transaction with its position (`mirrored`), so a crash
//! repeats nothing and loses nothing. The incident gets an id here, keeps
//! the province's id (`origin_id`), is filed under the province's code as
//! its tenant and is read-only: it is handled in the province.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use canhgac_proto::{timefmt, v1};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{
    report::{
        Kind,
        render::Format,
        schedule::{self, Stored},
    },
    store::{
        CorrelationInput, EvidenceRec, IncidentEventRec, IncidentRec, RECORD_VERSION, Store, StoreError,
    },
};

/// How often the mirror looks for new incident records while idle.
const POLL: Duration = Duration::from_secs(1);

fn us(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map(|t| timefmt::micros(timefmt::from_timestamp(t))).unwrap_or(0)
}

/// The stored form of a downstream incident: the fields listings filter
/// on, and the message itself (`origin`) for everything shown.
pub fn mirror_rec(msg: &v1::Incident, tenant: &str, province: &str) -> IncidentRec {
    IncidentRec {
        version: RECORD_VERSION,
        agency: tenant.to_string(),
        category: msg.category.clone(),
        attacker: msg.attacker.clone(),
        state: msg.state.clone(),
        severity: msg.severity,
        alert_count: msg.alert_count,
        first_seen_us: us(&msg.first_seen),
        last_seen_us: us(&msg.last_seen),
        detected_us: us(&msg.detected),
        assignee: msg.assignee.clone(),
        acknowledged_by: msg.acknowledged_by.clone(),
        acknowledged_us: us(&msg.acknowledged),
        impacts: msg.impacts.clone(),
        owner_cannot_handle: msg.owner_cannot_handle,
        fields: msg.fields.clone().into_iter().collect(),
        history: msg
            .history
            .iter()
            .map(|h| IncidentEventRec {
                time_us: us(&h.time),
                actor: h.actor.clone(),
                action: h.action.clone(),
                from_state: h.from_state.clone(),
                to_state: h.to_state.clone(),
                text: h.text.clone(),
            })
            .collect(),
        last_received_us: us(&msg.updated),
        attackers: msg.attackers.clone(),
        victims: msg.victims.clone(),
        dismissed: msg.dismissed,
        close_reason: msg.close_reason.clone(),
        evidence: msg
            .evidence
            .iter()
            .map(|e| EvidenceRec {
                signature_id: e.signature_id,
                signature: e.signature.clone(),
                detector: e.detector.clone(),
                count: e.count,
                first_us: us(&e.first_seen),
                last_us: us(&e.last_seen),
            })
            .collect(),
        entities_omitted: msg.entities_omitted,
        province: province.to_string(),
        origin: Some(msg.clone()),
        ..Default::default()
    }
}

/// Keeps a downstream collector's daily report as the tenant's stored
/// daily report (`reports/TENANT/daily/FROM_TO.json`); the same file again
/// when repeated.
fn keep_summary(reports: &Path, tenant: &str, s: &v1::DailySummary) -> Result<(), String> {
    let day = time::Date::from_julian_day(s.julian_day).map_err(|e| format!("day {}: {e}", s.julian_day))?;
    let next = day.next_day().ok_or("no next day")?;
    let stored =
        Stored { agency: tenant.to_string(), kind: Kind::Daily, from: day, to: next, format: Format::Json };
    // the id is checked like any other: no file outside the directory
    Stored::parse(&stored.id())?;
    schedule::write_bytes(reports, &stored, &s.report_json).map(|_| ())
}

/// One step: incident and summary records after the mirror's position, up
/// to `limit` records looked at. Returns how many records were looked at.
pub fn mirror_once(store: &Store, reports: &Path, limit: usize) -> Result<usize, StoreError> {
    let after = store.mirrored_cursor()?;
    let events = store.events_after(after, limit)?;
    let Some(last) = events.last().map(|(c, _)| *c) else {
        return Ok(0);
    };
    for (cursor, rec) in &events {
        if let Some(s) = &rec.summary {
            // written before the position moves: a crash writes it again.
            // One that cannot be kept is logged and passed over, so that no
            // province's record holds the others' incidents back.
            if let Err(e) = keep_summary(reports, &rec.agency, s) {
                tracing::error!(cursor, tenant = %rec.agency, error = %e, "a downstream daily report could not be kept; passed over");
            }
        }
    }
    let inputs: Vec<CorrelationInput> = events
        .iter()
        .filter_map(|(cursor, rec)| {
            let msg = rec.incident.as_ref()?;
            let province = if rec.province.is_empty() { &rec.agency } else { &rec.province };
            let origin_id = if msg.origin_id != 0 { msg.origin_id } else { msg.id };
            Some(CorrelationInput {
                cursor: *cursor,
                agency: rec.agency.clone(),
                keys: vec![format!("m\0{}\0{province}\0{origin_id}", rec.agency)],
                time_us: rec.time_us,
                received_us: rec.received_us,
                severity: msg.severity,
                mirror: Some(Box::new(mirror_rec(msg, &rec.agency, province))),
                ..Default::default()
            })
        })
        .collect();
    let now = timefmt::micros(OffsetDateTime::now_utc());
    store.mirror_incidents(&inputs, last, now)?;
    Ok(events.len())
}

/// Whether any downstream collector may send incidents here.
fn has_provinces(store: &Store) -> Result<bool, StoreError> {
    Ok(store.agencies()?.iter().any(|a| a.is_province()))
}

/// Runs the mirror until shutdown. Idle (one check a few seconds) while
/// no province is registered, so a provincial collector never reads its
/// own events for it.
pub async fn run(store: Store, reports: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let store = Arc::new(store);
    let reports = Arc::new(reports);
    loop {
        let (s, r) = (store.clone(), reports.clone());
        let step = tokio::task::spawn_blocking(move || {
            if !has_provinces(&s)? {
                return Ok(None);
            }
            mirror_once(&s, &r, 1000).map(Some)
        })
        .await;
        let wait = match step {
            Ok(Ok(Some(n))) if n > 0 => Duration::ZERO,
            Ok(Ok(Some(_))) => POLL,
            Ok(Ok(None)) => POLL * 5,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "keeping downstream incidents failed; retrying");
                POLL * 5
            }
            Err(e) => {
                tracing::error!(error = %e, "downstream incident task failed");
                POLL * 5
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if !wait.is_zero() {
            tokio::select! {
                _ = crate::registry::until_true(&mut shutdown) => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
