//! Background supervision: the agent-silence watchdog and retention.

use std::{collections::HashMap, sync::Arc, time::Duration};

use canhgac_proto::{
    timefmt,
    v1::{RecordFacts, RecordKind, RoleBasis},
};
use serde_json::json;
use time::OffsetDateTime;

use crate::{
    registry::StreamRegistry,
    rules::Regulation,
    store::{RecordRec, Store, StoreError, records::RECORD_VERSION},
};

/// What the watchdog needs: the store, who is connected, the rules and
/// the silence limit.
pub struct Watchdog {
    pub store: Store,
    pub streams: Arc<StreamRegistry>,
    pub regulation: Arc<Regulation>,
    pub silence_limit: Duration,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Signature id of `agent-silent` alerts (see `canhgac_proto::sid`).
pub const SID_AGENT_SILENT: u64 = canhgac_proto::sid::AGENT_SILENT;

/// Whether an agent counts as online: connected, or heard from within the
/// silence limit.
pub fn online(connected: bool, last_seen_us: i64, now_us: i64, limit: Duration) -> bool {
    connected || (last_seen_us != 0 && now_us - last_seen_us <= limit.as_micros() as i64)
}

/// One watchdog pass: raises an `agent-silent` alert for every agent
/// silent longer than `limit`, once per silence. Returns how many.
pub fn check_silence(watchdog: &Watchdog, now_us: i64) -> Result<usize, StoreError> {
    let limit = watchdog.silence_limit;
    let limit_us = limit.as_micros() as i64;
    let mut raised = 0;
    for a in watchdog.store.agents()? {
        if a.revoked_us != 0 || a.first_seen_us == 0 || a.last_seen_us == 0 {
            continue;
        }
        if now_us - a.last_seen_us <= limit_us || a.silent_alerted_us == a.last_seen_us {
            continue;
        }
        let since = a.last_seen_us;
        let eve = json!({
            "timestamp": timefmt::eve(timefmt::from_micros(now_us)),
            "event_type": "alert",
            "alert": {
                "action": "allowed", "gid": 1, "signature_id": SID_AGENT_SILENT, "rev": 1,
                "signature": format!("CANHGAC agent silent for more than {}", humantime::format_duration(limit)),
                "category": "Sensor Outage", "severity": 2,
            },
            "canhgac": {
                "agent_id": a.agent_id, "agency": a.agency, "hostname": a.hostname,
                "detector": "agent-silent",
                "last_seen": timefmt::rfc3339(timefmt::from_micros(since)),
                "silence_limit_seconds": limit.as_secs(),
                "connected": watchdog.streams.is_connected(&a.agent_id),
            },
        });
        watchdog.store.insert_collector_alert(RecordRec {
            version: RECORD_VERSION,
            agent_id: a.agent_id.clone(),
            agency: a.agency.clone(),
            seq: 0,
            kind: RecordKind::Alert as i32,
            severity: 2,
            time_us: now_us,
            received_us: now_us,
            eve_json: eve.to_string(),
            facts: Some(RecordFacts {
                detector: "agent-silent".into(),
                signature_id: SID_AGENT_SILENT,
                signature: eve["alert"]["signature"].as_str().unwrap_or_default().into(),
                rule_category: "Sensor Outage".into(),
                on_host: true,
                role_basis: RoleBasis::Detector as i32,
                ..Default::default()
            }),
            ..Default::default()
        })?;
        watchdog.store.update_agent(&a.agent_id, |r| r.silent_alerted_us = since)?;
        tracing::warn!(agent_id = %a.agent_id, agency = %a.agency, "agent silent; alert raised");
        raised += 1;
    }
    Ok(raised)
}

/// Marks newly missed deadlines on open incidents: one `overdue` event in
/// the incident's history per missed deadline, which also reaches
/// incident subscribers and the forwarder. Returns how many.
pub fn flag_overdue(store: &Store, reg: &Regulation, now_us: i64) -> Result<usize, StoreError> {
    let (open, _) = store.incidents(&crate::store::IncidentFilter {
        open_only: true,
        limit: usize::MAX,
        ..Default::default()
    })?;
    let mut flagged = 0;
    for inc in open {
        let system = store.system(inc.system)?;
        let (serious, _, _) = crate::incident::seriousness(&inc, system.as_ref(), reg);
        let missed: Vec<String> = crate::incident::deadlines(&inc, serious, reg, now_us)
            .into_iter()
            .filter(|d| d.overdue && !inc.milestones_us.contains_key(&format!("overdue:{}", d.id)))
            .map(|d| format!("{}: {}", d.id, d.description))
            .collect();
        if missed.is_empty() {
            continue;
        }
        store
            .update_incident(inc.id, |i| {
                for m in &missed {
                    let id = m.split(':').next().unwrap_or_default();
                    i.milestones_us.insert(format!("overdue:{id}"), now_us);
                    i.history.push(crate::incident::event(
                        now_us,
                        "collector",
                        "overdue",
                        format!("deadline missed: {m}"),
                    ));
                }
                i.updated_us = now_us;
                Ok::<(), ()>(())
            })?
            .ok();
        tracing::warn!(incident = inc.id, agency = %inc.agency, deadlines = ?missed, "incident deadline missed");
        flagged += 1;
    }
    Ok(flagged)
}

pub async fn run_watchdog(watchdog: Arc<Watchdog>) {
    let every = (watchdog.silence_limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
    let mut shutdown = watchdog.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
        let s = watchdog.clone();
        let now = timefmt::micros(OffsetDateTime::now_utc());
        match tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>(check_silence(&s, now)? + flag_overdue(&s.store, &s.regulation, now)?)
        })
        .await
        {
            Ok(Ok(n)) if n > 0 => {
                let _ = watchdog.store.flush().await;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "silence watchdog failed"),
            Err(e) => tracing::error!(error = %e, "silence watchdog task failed"),
        }
    }
}

/// Retention days for each agency: the period of its highest system level.
pub fn retention_days(
    store: &Store,
    reg: &crate::rules::Regulation,
) -> Result<HashMap<String, u32>, StoreError> {
    let mut level: HashMap<String, u32> = HashMap::new();
    for s in store.systems()? {
        let e = level.entry(s.agency.clone()).or_default();
        *e = (*e).max(s.level);
    }
    let mut out = HashMap::new();
    for a in store.agencies()? {
        out.insert(a.code.clone(), reg.retention_days(level.get(&a.code).copied().unwrap_or(0)));
    }
    Ok(out)
}

/// Counter: the last alert cursor the upstream collector acknowledged.
pub const UPSTREAM_POSITION: &str = "upstream_alerts";
/// Counter: alerts selected for upstream that retention removed before
/// they went up (the upstream queue is the store; its cap is retention).
pub const UPSTREAM_DROPPED: &str = "upstream_dropped";

/// One retention pass; returns records deleted. With `upstream` (the
/// alert severity a link to an upstream collector sends), the selected
/// alerts about to be removed before that collector acknowledged them are
/// counted first (`upstream_dropped`) and logged.
pub fn retention_once(
    store: &Store,
    reg: &crate::rules::Regulation,
    now_us: i64,
    upstream: Option<u32>,
) -> Result<u64, StoreError> {
    let days = retention_days(store, reg)?;
    let day_us = 86_400_000_000i64;
    let min_days = i64::from(reg.retention.min_days);
    let floor = now_us - min_days * day_us;
    let cutoff = |agency: &str| {
        now_us - i64::from(days.get(agency).copied().unwrap_or(reg.retention_days(0))) * day_us
    };
    if let Some(severity) = upstream.filter(|s| *s > 0) {
        let mut after = store.counter_value(UPSTREAM_POSITION)?;
        let mut lost = 0u64;
        loop {
            let page = store.alerts_after(after, 5000)?;
            let Some(last) = page.last().map(|(c, _)| *c) else { break };
            lost += page
                .iter()
                .filter(|(_, r)| {
                    (1..=severity).contains(&r.severity)
                        && r.received_us < cutoff(&r.agency)
                        && r.received_us <= floor
                })
                .count() as u64;
            after = last;
        }
        if lost > 0 {
            store.add_to_counter(UPSTREAM_DROPPED, lost)?;
            tracing::warn!(
                lost,
                "retention removes alerts the upstream collector has not received (it has been away longer than retention)"
            );
        }
    }
    let mut total = 0;
    loop {
        let n = store.retention_sweep(cutoff, floor, 50_000)?;
        total += n;
        if n < 50_000 {
            return Ok(total);
        }
    }
}

pub async fn run_retention(
    store: Store,
    regulation: Arc<Regulation>,
    every: Duration,
    upstream: Option<u32>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if every.is_zero() {
        return;
    }
    loop {
        let (store, reg) = (store.clone(), regulation.clone());
        let now = timefmt::micros(OffsetDateTime::now_utc());
        match tokio::task::spawn_blocking(move || retention_once(&store, &reg, now, upstream)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "retention removed old records"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
    }
}

/// Watches storage health: after a write failure (a full disk) reopens the
/// database as soon as there is room again, so ingest and operator calls
/// resume without a restart. Checks once a second.
pub async fn run_storage_watch(store: crate::store::Store, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut reported = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.recover()).await {
            Ok(Ok(true)) => reported = false,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                if !reported {
                    tracing::error!(error = %e, "storage is failing (disk full?): writes refused until space returns");
                    reported = true;
                }
            }
            Err(e) => tracing::error!(error = %e, "storage watch failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AgencyRec, Incoming, SystemRec};

    /// The upstream queue is the store: what retention removes before the
    /// upstream collector acknowledged it is counted, only the selected
    /// severities, only past the acknowledged position.
    #[test]
    fn retention_counts_the_selected_alerts_it_removes_before_they_went_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let reg = crate::rules::Regulation::embedded();
        s.add_agency(AgencyRec { code: "A".into(), ..Default::default() }).unwrap();
        let day = 86_400_000_000i64;
        let now = 400 * day;
        let alert = |seq, severity| Incoming::Valid {
            seq,
            alert: true,
            severity,
            time_us: 0,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        // 100 days old, past A's 30: cursors 1..=4; 1 went up already
        s.ingest("a", "A", now - 100 * day, &[alert(1, 1), alert(2, 1), alert(3, 3), alert(4, 2)]).unwrap();
        // recent: kept
        s.ingest("a", "A", now - day, &[alert(5, 1)]).unwrap();
        s.raise_counter(UPSTREAM_POSITION, 1).unwrap();
        s.raise_counter(UPSTREAM_POSITION, 0).unwrap();
        assert_eq!(s.counter_value(UPSTREAM_POSITION).unwrap(), 1, "a position never goes back");
        assert_eq!(retention_once(&s, &reg, now, Some(2)).unwrap(), 4);
        // cursors 2 and 4 were selected and not sent; 3 is below the selection
        assert_eq!(s.counter_value(UPSTREAM_DROPPED).unwrap(), 2);
        // nothing left to lose: the next pass counts nothing more
        assert_eq!(retention_once(&s, &reg, now, Some(2)).unwrap(), 0);
        assert_eq!(s.counter_value(UPSTREAM_DROPPED).unwrap(), 2);
        // without a link nothing is counted
        s.ingest("a", "A", now - 100 * day, &[alert(6, 1)]).unwrap();
        retention_once(&s, &reg, now, None).unwrap();
        assert_eq!(s.counter_value(UPSTREAM_DROPPED).unwrap(), 2);
    }

    #[test]
    fn retention_keeps_by_the_highest_level() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let reg = crate::rules::Regulation::embedded();
        for code in ["A", "B"] {
            s.add_agency(AgencyRec { code: code.into(), ..Default::default() }).unwrap();
        }
        s.put_systems(vec![SystemRec { agency: "B".into(), level: 4, ..Default::default() }]).unwrap();
        let day = 86_400_000_000i64;
        let now = 400 * day;
        let alert = |seq| Incoming::Valid {
            seq,
            alert: true,
            severity: 2,
            time_us: 0,
            eve_json: "{}".into(),
            facts: None,
            origin: None,
        };
        // 100 days old: past A's 30 days, within B's 180
        s.ingest("a", "A", now - 100 * day, &[alert(1)]).unwrap();
        s.ingest("b", "B", now - 100 * day, &[alert(1)]).unwrap();
        s.ingest("a", "A", now - day, &[alert(2)]).unwrap();
        assert_eq!(retention_once(&s, &reg, now, None).unwrap(), 1);
        let left: Vec<String> = s.alerts_after(0, 10).unwrap().into_iter().map(|(_, r)| r.agency).collect();
        assert_eq!(left, vec!["B", "A"]);
        assert_eq!(s.agency_stats("A").unwrap().alerts, 1);
        assert_eq!(s.agency_stats("A").unwrap().deleted_by_retention, 1);
        // a deleted record's (agent, seq) can be stored again
        let (page, _) = s
            .list_alerts(&crate::store::AlertQuery {
                agency: Some("A".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.len(), 1);
    }
}
