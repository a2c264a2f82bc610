//! The conformance suite every storage backend must pass: the guarantees
//! documented in `api.rs`, checked only through the traits. A backend runs
//! it with one call, [`run_all`], given a way to open (and reopen) a store
//! at a place; sled runs it in `cargo test` (below), and a PostgreSQL
//! backend will run the same functions against its database.

use std::path::Path;

use super::{
    AgencyRec, AgentRec, AlertQuery, AuditCheckpointRec, AuditRec, CorrelationInput, EnrollError,
    IncidentFilter, Incoming, IngestOutcome, OperatorRec, PageKey, PolicyRec, RecordRec, StoreError,
    SystemRec, TokenRec, api::Backend,
};

/// One scenario: given how to open a store at a path.
type Scenario<B> = fn(&dyn Fn(&Path) -> B);

/// Runs every scenario, each on a fresh store opened by `open` in its own
/// directory.
pub fn run_all<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let scenarios: &[(&str, Scenario<B>)] = &[
        ("registry: unique agencies, systems, single-use tokens", registry::<B>),
        ("registry: agencies, agents and operators changed in place", registry_updates::<B>),
        ("records: once per (agent, seq), in commit order", records_once_in_order::<B>),
        ("records: invalid ones quarantined", invalid_records_are_quarantined::<B>),
        ("records: filtered pages, newest first", listing_filters_and_pages::<B>),
        ("records: durable across a reopen", durable_across_reopen::<B>),
        ("records: retention deletes what is due, counted", retention::<B>),
        ("incidents: each alert once, changes in order, all or nothing", incidents::<B>),
        ("incidents: a later alert of a flow joins by its flow, also after a reopen", flow_joins::<B>),
        ("audit: one chain", audit_chain::<B>),
        ("policies: versions and scope", policies::<B>),
        ("forward queue: FIFO, capped, counted", forward_queue::<B>),
        ("lifecycle: writable, sized", lifecycle::<B>),
    ];
    for (name, scenario) in scenarios {
        eprintln!("conformance: {name}");
        scenario(open);
    }
}

#[allow(clippy::unwrap_used)]
fn fresh<B: Backend>(open: &dyn Fn(&Path) -> B) -> (tempfile::TempDir, B) {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("db"));
    for code in ["A", "B"] {
        s.add_agency(AgencyRec {
            version: 1,
            code: code.into(),
            name: code.to_lowercase(),
            ..Default::default()
        })
        .unwrap();
    }
    (dir, s)
}

fn agent(id: &str, agency: &str) -> AgentRec {
    AgentRec { version: 1, agent_id: id.into(), agency: agency.into(), ..Default::default() }
}

/// Enrolls an agent the way the service does: through a one-time token.
#[allow(clippy::unwrap_used)]
fn enroll<B: Backend>(s: &B, id: &str, agency: &str) {
    let token = format!("token-{id}");
    s.add_token(
        &token,
        TokenRec { version: 1, agency: agency.into(), expires_us: i64::MAX, ..Default::default() },
    )
    .unwrap();
    s.enroll(&token, Some(agency), 1, agent(id, agency)).unwrap();
}

fn alert(seq: u64, severity: u32, time_us: i64) -> Incoming {
    Incoming::Valid {
        seq,
        alert: true,
        severity,
        time_us,
        eve_json: format!("{{\"seq\":{seq}}}"),
        facts: None,
        origin: None,
    }
}

#[allow(clippy::unwrap_used)]
fn registry<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    let err = s.add_agency(AgencyRec { version: 1, code: "A".into(), ..Default::default() }).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    assert_eq!(s.agencies().unwrap().len(), 2);
    let sys = s
        .put_systems(vec![
            SystemRec { agency: "A".into(), name: "x".into(), level: 2, ..Default::default() },
            SystemRec { agency: "B".into(), name: "y".into(), level: 3, ..Default::default() },
        ])
        .unwrap();
    assert!(sys[0].id != 0 && sys[1].id > sys[0].id, "ids assigned in order");
    assert_eq!(s.system(sys[1].id).unwrap().unwrap().name, "y");
    // tokens: unknown, expired, wrong agency, used; a refusal creates nothing
    let rec = |agency: &str, expires_us| TokenRec {
        version: 1,
        agency: agency.into(),
        expires_us,
        ..Default::default()
    };
    s.add_token("t1", rec("A", 1_000)).unwrap();
    s.add_token("t2", rec("A", 10)).unwrap();
    assert!(matches!(s.enroll("nope", None, 5, agent("x", "A")), Err(EnrollError::Unknown)));
    assert!(matches!(s.enroll("t2", None, 10, agent("x", "A")), Err(EnrollError::Expired)));
    assert!(matches!(s.enroll("t1", Some("B"), 5, agent("x", "A")), Err(EnrollError::WrongAgency)));
    assert!(s.agent("x").unwrap().is_none(), "a refused token creates nothing");
    s.enroll("t1", Some("A"), 5, agent("x", "A")).unwrap();
    assert!(matches!(s.enroll("t1", None, 6, agent("y", "A")), Err(EnrollError::Used)));
    assert!(s.agent("y").unwrap().is_none());
    assert_eq!(s.agents().unwrap().len(), 1);
    // operators: revocation is recorded, the last admin stays
    let op = |name: &str, role: &str| OperatorRec {
        version: 1,
        name: name.into(),
        role: role.into(),
        ..Default::default()
    };
    s.add_operator(op("admin", "admin")).unwrap();
    s.add_operator(op("ana", "analyst")).unwrap();
    assert!(s.revoke_operator("admin", 1, "admin", "").is_err(), "the last admin cannot be revoked");
    let r = s.revoke_operator("ana", 7, "admin", "left").unwrap().unwrap();
    assert_eq!((r.revoked_us, r.revoked_by.as_str()), (7, "admin"));
}

#[allow(clippy::unwrap_used)]
fn records_once_in_order<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    enroll(&s, "x", "A");
    enroll(&s, "y", "A");
    let first = s.ingest("x", "A", 0, &[alert(1, 2, 10), alert(2, 2, 20)]).unwrap();
    assert_eq!(first, IngestOutcome { stored: 2, duplicates: 0, invalid: 0 });
    let again = s.ingest("x", "A", 0, &[alert(2, 2, 20), alert(3, 1, 30)]).unwrap();
    assert_eq!(again, IngestOutcome { stored: 1, duplicates: 1, invalid: 0 });
    // the same seq from another agent is a different record
    assert_eq!(s.ingest("y", "A", 0, &[alert(1, 2, 10)]).unwrap().stored, 1);
    let all = s.alerts_after(0, 100).unwrap();
    assert_eq!(all.len(), 4);
    let cursors: Vec<u64> = all.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "commit order: {cursors:?}");
    assert_eq!(*s.alert_cursor().borrow(), *cursors.last().unwrap(), "the watch moved with the commit");
    // resume after any cursor: exactly the later ones
    let after = s.alerts_after(cursors[1], 100).unwrap();
    assert_eq!(after.iter().map(|(c, _)| *c).collect::<Vec<_>>(), cursors[2..].to_vec());
    let a = s.agent("x").unwrap().unwrap();
    assert_eq!((a.records_stored, a.records_duplicate, a.highest_seq), (3, 1, 3));
    // below the highest seq but never stored (a late batch): stored; a seq
    // repeated inside one batch above the highest: stored once
    let z = |seq| alert(seq, 2, 50);
    assert_eq!(
        s.ingest("y", "A", 0, &[z(5)]).unwrap(),
        IngestOutcome { stored: 1, duplicates: 0, invalid: 0 }
    );
    assert_eq!(
        s.ingest("y", "A", 0, &[z(3)]).unwrap(),
        IngestOutcome { stored: 1, duplicates: 0, invalid: 0 }
    );
    assert_eq!(
        s.ingest("y", "A", 0, &[z(3), z(4), z(5), z(6), z(6)]).unwrap(),
        IngestOutcome { stored: 2, duplicates: 3, invalid: 0 }
    );
    let y = s.agent("y").unwrap().unwrap();
    assert_eq!((y.records_stored, y.records_duplicate, y.highest_seq), (5, 3, 6));
    for (_, r) in s.alerts_after(cursors[3], 100).unwrap() {
        assert_eq!(r.agent_id, "y");
    }
    assert_eq!(s.alerts_after(cursors[3], 100).unwrap().len(), 4);
    // events are not alerts
    let ev = Incoming::Valid {
        seq: 9,
        alert: false,
        severity: 0,
        time_us: 40,
        eve_json: "{}".into(),
        facts: None,
        origin: None,
    };
    s.ingest("x", "A", 0, &[ev]).unwrap();
    assert_eq!(s.alerts_after(0, 100).unwrap().len(), 8);
    assert_eq!(s.events_after(0, 100).unwrap().len(), 1);
    // the collector's own alerts take the next cursor
    let own = s
        .insert_collector_alert(RecordRec {
            agency: "A".into(),
            time_us: 50,
            severity: 2,
            ..Default::default()
        })
        .unwrap();
    assert!(own > *cursors.last().unwrap());
    assert_eq!(s.alert(own).unwrap().unwrap().time_us, 50);
}

#[allow(clippy::unwrap_used)]
fn invalid_records_are_quarantined<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    enroll(&s, "x", "A");
    let bad = || Incoming::Invalid { seq: 7, reason: "not json".into(), raw: b"\xff".to_vec() };
    assert_eq!(s.ingest("x", "A", 0, &[bad()]).unwrap().invalid, 1);
    let q = s.quarantined().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].raw, b"\xff");
    // a resend is a duplicate, not a second quarantine entry
    assert_eq!(s.ingest("x", "A", 0, &[bad()]).unwrap().duplicates, 1);
    assert_eq!(s.quarantined().unwrap().len(), 1);
}

#[allow(clippy::unwrap_used)]
fn listing_filters_and_pages<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    enroll(&s, "x", "A");
    enroll(&s, "y", "B");
    let batch: Vec<_> = (1..=50).map(|i| alert(i, 1 + (i % 4) as u32, i as i64 * 1000)).collect();
    s.ingest("x", "A", 0, &batch).unwrap();
    s.ingest("y", "B", 0, &[alert(1, 1, 5_000_000)]).unwrap();
    let mut q = AlertQuery { agency: Some("A".into()), limit: 7, ..Default::default() };
    let mut seen = Vec::new();
    loop {
        let (page, next) = s.list_alerts(&q).unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.into_iter().map(|(_, r)| r));
        match next {
            Some(n) => q.after = Some(PageKey::decode(&n.encode()).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|r| r.agency == "A"));
    assert!(seen.windows(2).all(|w| w[0].time_us >= w[1].time_us));
    let q = AlertQuery {
        max_severity: Some(1),
        since_us: Some(20_000),
        until_us: Some(40_000),
        limit: 100,
        ..Default::default()
    };
    let (page, next) = s.list_alerts(&q).unwrap();
    assert!(next.is_none());
    assert_eq!(page.iter().map(|(_, r)| r.seq).collect::<Vec<_>>(), vec![36, 32, 28, 24, 20]);
    // a caller's predicate
    let keep = super::AlertPredicate(std::sync::Arc::new(|r: &RecordRec| r.seq.is_multiple_of(10)));
    let (page, _) =
        s.list_alerts(&AlertQuery { limit: 100, keep: Some(keep), ..Default::default() }).unwrap();
    assert_eq!(page.iter().map(|(_, r)| r.seq).collect::<Vec<_>>(), vec![50, 40, 30, 20, 10]);
}

#[allow(clippy::unwrap_used)]
fn durable_across_reopen<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = open(&path);
        s.add_agency(AgencyRec { version: 1, code: "A".into(), name: "a".into(), ..Default::default() })
            .unwrap();
        enroll(&s, "x", "A");
        s.ingest("x", "A", 0, &[alert(1, 1, 1), alert(2, 1, 2)]).unwrap();
        s.append_audit(AuditRec { operator: "op".into(), ..Default::default() }, |r| format!("h{}", r.seq))
            .unwrap();
        s.flush_blocking().unwrap();
    }
    let s = open(&path);
    assert_eq!(*s.alert_cursor().borrow(), 2);
    s.ingest("x", "A", 0, &[alert(3, 1, 3)]).unwrap();
    let cursors: Vec<u64> = s.alerts_after(0, 10).unwrap().iter().map(|(c, _)| *c).collect();
    assert_eq!(cursors, vec![1, 2, 3]);
    assert_eq!(s.ingest("x", "A", 0, &[alert(1, 1, 1)]).unwrap().duplicates, 1, "dedupe survives");
    assert_eq!(s.audit_after(0, 10).unwrap().len(), 1);
    assert!(!s.recover().unwrap(), "a healthy store needs no recovery");
}

#[allow(clippy::unwrap_used)]
fn registry_updates<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    // agencies: a refusal changes nothing, an unknown code is None
    let refused = s
        .update_agency("A", |a| {
            a.name = "x".into();
            Err("no")
        })
        .unwrap();
    assert_eq!(refused.unwrap_err(), "no");
    assert_eq!(s.agency("A").unwrap().unwrap().name, "a");
    assert!(s.update_agency("Z", |_| Ok::<_, ()>(())).unwrap().unwrap().is_none());
    let changed = s
        .update_agency("A", |a| {
            a.name = "Sở A".into();
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(changed.name, "Sở A");
    assert_eq!(s.agency("A").unwrap().unwrap().name, "Sở A");
    let rec = |code: &str, name: &str| AgencyRec {
        version: 1,
        code: code.into(),
        name: name.into(),
        ..Default::default()
    };
    s.put_agencies(&[rec("C", "c"), rec("B", "bb")]).unwrap();
    let all: Vec<(String, String)> = s.agencies().unwrap().into_iter().map(|a| (a.code, a.name)).collect();
    let want = [("A", "Sở A"), ("B", "bb"), ("C", "c")];
    assert_eq!(all, want.map(|(c, n)| (c.to_string(), n.to_string())), "created, replaced, in code order");
    // checking a token uses nothing
    let token = TokenRec { version: 1, agency: "A".into(), expires_us: 100, ..Default::default() };
    s.add_token("t", token).unwrap();
    assert_eq!(s.check_token("t", Some("A"), 5).unwrap().agency, "A");
    assert!(matches!(s.check_token("t", Some("B"), 5), Err(EnrollError::WrongAgency)));
    assert!(matches!(s.check_token("nope", None, 5), Err(EnrollError::Unknown)));
    assert!(matches!(s.check_token("t", None, 100), Err(EnrollError::Expired)));
    s.enroll("t", None, 6, agent("x", "A")).unwrap();
    assert!(matches!(s.check_token("t", None, 7), Err(EnrollError::Used)));
    // agents
    let a = s.update_agent("x", |a| a.hostname = "h1".into()).unwrap().unwrap();
    assert_eq!(a.hostname, "h1");
    assert_eq!(s.agent("x").unwrap().unwrap().hostname, "h1");
    assert!(s.update_agent("nobody", |_| {}).unwrap().is_none());
    // operators
    let op = OperatorRec { version: 1, name: "ana".into(), role: "analyst".into(), ..Default::default() };
    s.add_operator(op.clone()).unwrap();
    assert!(matches!(s.add_operator(op), Err(StoreError::AlreadyExists(_))));
    s.update_operator("ana", |o| o.language = "en".into()).unwrap().unwrap();
    assert_eq!(s.operator("ana").unwrap().unwrap().language, "en");
    assert!(s.operator("bob").unwrap().is_none());
    assert!(s.update_operator("bob", |_| {}).unwrap().is_none());
    // incidents: an unknown id changes nothing
    assert!(s.update_incident(42, |_| Ok::<_, ()>(())).unwrap().unwrap().is_none());
}

#[allow(clippy::unwrap_used)]
fn retention<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    enroll(&s, "x", "A");
    enroll(&s, "y", "B");
    let event = |seq: u64| Incoming::Valid {
        seq,
        alert: false,
        severity: 0,
        time_us: seq as i64,
        eve_json: "{}".into(),
        facts: None,
        origin: None,
    };
    s.ingest("x", "A", 100, &[alert(1, 1, 1), alert(2, 1, 2)]).unwrap();
    s.ingest("y", "B", 100, &[alert(1, 1, 1)]).unwrap();
    s.ingest("x", "A", 200, &[alert(3, 1, 3), event(4)]).unwrap();
    s.ingest("x", "A", 300, &[alert(5, 1, 5)]).unwrap();
    let st = s.agency_stats("A").unwrap();
    assert_eq!((st.alerts, st.events), (4, 1));
    assert!(st.alert_bytes > 0 && st.event_bytes > 0);
    assert_eq!(s.agency_stats("Z").unwrap().alerts, 0, "nothing stored: zero");
    // A keeps what was received from 250 on, B everything
    let cutoff = |a: &str| if a == "A" { 250 } else { 0 };
    // the sweep stops at the first record received after the floor
    assert_eq!(s.retention_sweep(cutoff, 150, 100).unwrap(), 2);
    // and after `max` deletions
    assert_eq!(s.retention_sweep(cutoff, 1000, 1).unwrap(), 1);
    assert_eq!(s.retention_sweep(cutoff, 1000, 100).unwrap(), 1, "the event");
    let left: Vec<(String, u64)> =
        s.alerts_after(0, 100).unwrap().into_iter().map(|(_, r)| (r.agency, r.seq)).collect();
    assert_eq!(left, vec![("B".to_string(), 1), ("A".to_string(), 5)]);
    assert!(s.events_after(0, 100).unwrap().is_empty());
    let st = s.agency_stats("A").unwrap();
    assert_eq!((st.alerts, st.events, st.event_bytes, st.deleted_by_retention), (1, 0, 0, 4));
    let (page, _) = s.list_alerts(&AlertQuery { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(page.len(), 2, "the listing forgets deleted alerts");
}

#[allow(clippy::unwrap_used)]
fn lifecycle<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    s.probe_write().unwrap();
    assert!(s.size_on_disk().unwrap() > 0);
    assert_eq!(s.reopened(), 0);
    s.flush_blocking().unwrap();
}

fn input(cursor: u64, attacker: &str, time_us: i64) -> CorrelationInput {
    CorrelationInput {
        cursor,
        agency: "A".into(),
        category: "intrusion".into(),
        attackers: vec![attacker.into()],
        keys: vec![format!("e\0A\0intrusion\0a:{attacker}")],
        opens: true,
        severity: 2,
        time_us,
        received_us: time_us,
        ..Default::default()
    }
}

#[allow(clippy::unwrap_used)]
fn flow_joins<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let w = 60_000_000;
    // the same flow, seen by its attacker and then by another entity
    let on_flow = |cursor: u64, attacker: &str, flow: u64| {
        let mut i = input(cursor, attacker, cursor as i64 * 1_000_000);
        i.keys.insert(0, format!("f\0A\0x\0{flow}"));
        i
    };
    let first = {
        let s = open(&path);
        s.add_agency(AgencyRec { version: 1, code: "A".into(), name: "a".into(), ..Default::default() })
            .unwrap();
        let first = s.correlate(&[on_flow(1, "203.0.113.7", 77)], 1, w, 1).unwrap()[0];
        let second = s.correlate(&[on_flow(2, "198.51.100.1", 77)], 2, w, 2).unwrap();
        assert_eq!(second, vec![first], "joined by the flow, not opened for the other entity");
        let other = s.correlate(&[on_flow(3, "198.51.100.2", 78)], 3, w, 3).unwrap();
        assert_ne!(other, vec![first], "another flow and entity: another incident");
        s.flush_blocking().unwrap();
        first
    };
    let s = open(&path);
    let again = s.correlate(&[on_flow(4, "192.0.2.9", 77)], 4, w, 4).unwrap();
    assert_eq!(again, vec![first], "the flow is remembered across a reopen");
    assert_eq!(s.incident_alert_cursors(first, 10).unwrap(), vec![1, 2, 4]);
    // one pass links 10 and 12 to one incident, 11 to another; merged,
    // the alerts still come oldest first
    let ids = s
        .correlate(
            &[
                input(10, "192.0.2.50", 10_000_000),
                input(11, "192.0.2.51", 11_000_000),
                input(12, "192.0.2.50", 12_000_000),
            ],
            12,
            w,
            5,
        )
        .unwrap();
    assert_eq!(ids.len(), 2);
    let (p, q) = (ids[0], ids[1]);
    s.merge_incidents(&[p, q], |_| Ok::<_, ()>(())).unwrap().unwrap().unwrap();
    assert_eq!(s.incident_alert_cursors(p, 10).unwrap(), vec![10, 11, 12]);
    assert_eq!(s.incident_alert_cursors(p, 2).unwrap(), vec![10, 11], "the limit keeps the oldest");
}

#[allow(clippy::unwrap_used)]
fn incidents<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    let w = 60_000_000;
    let batch: Vec<_> = (1..=5).map(|c| input(c, "203.0.113.7", c as i64 * 1_000_000)).collect();
    s.correlate(&batch, 5, w, 7).unwrap();
    s.correlate(&[input(6, "198.51.100.1", 6_000_000)], 6, w, 8).unwrap();
    assert_eq!(s.correlated_cursor().unwrap(), 6, "the position commits with the changes");
    let (all, _) = s.incidents(&IncidentFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 2);
    let first = s.incident(1).unwrap().unwrap();
    assert_eq!((first.alert_count, first.detected_us), (5, 7));
    assert_eq!(s.incident_alert_cursors(1, 100).unwrap(), vec![1, 2, 3, 4, 5]);
    let changes = s.incident_changes_after(0, 100).unwrap();
    assert_eq!(changes.iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(*s.incident_change_cursor().borrow(), 2);
    // several incidents: all or nothing
    let refused = s
        .update_incidents(&[1, 2], |incs| {
            incs[0].state = "notified".into();
            if incs[1].id == 2 { Err("no") } else { Ok(()) }
        })
        .unwrap();
    assert!(refused.is_err());
    assert_eq!(s.incident(1).unwrap().unwrap().state, "detected", "nothing half-applied");
    assert_eq!(*s.incident_change_cursor().borrow(), 2);
    assert!(s.update_incidents(&[1, 99], |_| Ok::<_, ()>(())).unwrap().unwrap().is_none(), "unknown id");
    let done = s
        .update_incidents(&[1, 2], |incs| {
            for i in incs.iter_mut() {
                i.assignee = "b".into();
            }
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(*s.incident_change_cursor().borrow(), 4, "one change per incident");
    // a merge moves the alerts and the keys
    s.merge_incidents(&[1, 2], |incs| crate::incident::merge(incs, "op", "", 9)).unwrap().unwrap().unwrap();
    assert_eq!(s.incident_alert_cursors(1, 100).unwrap(), vec![1, 2, 3, 4, 5, 6]);
    s.correlate(&[input(7, "198.51.100.1", 7_000_000)], 7, w, 10).unwrap();
    assert_eq!(s.incident(1).unwrap().unwrap().alert_count, 7, "the merged episode joins the first");
}

#[allow(clippy::unwrap_used)]
fn audit_chain<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    for n in 0..3 {
        s.append_audit(AuditRec { operator: format!("op{n}"), ..Default::default() }, |r| {
            format!("h{}", r.seq)
        })
        .unwrap();
    }
    let all = s.audit_after(0, 10).unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!((all[0].prev_hash.as_str(), all[2].prev_hash.as_str()), ("", "h2"));
    assert_eq!(s.audit_after(2, 10).unwrap().len(), 1);
    assert_eq!(s.audit_head().unwrap().map(|h| h.seq), Some(3));
    // checkpoints: one per entry, the later replaces, ranges inclusive
    let cp = |seq: u64, at: i64| AuditCheckpointRec {
        seq,
        hash: format!("h{seq}"),
        signed_at_us: at,
        ..Default::default()
    };
    s.put_audit_checkpoint(cp(1, 10)).unwrap();
    s.put_audit_checkpoint(cp(3, 20)).unwrap();
    s.put_audit_checkpoint(cp(3, 30)).unwrap();
    let all = s.audit_checkpoints(1, 3).unwrap();
    assert_eq!(all.iter().map(|c| (c.seq, c.signed_at_us)).collect::<Vec<_>>(), vec![(1, 10), (3, 30)]);
    assert_eq!(s.audit_checkpoints(2, 2).unwrap().len(), 0);
    assert_eq!(s.audit_checkpoints(3, 3).unwrap().len(), 1);
}

#[allow(clippy::unwrap_used)]
fn policies<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    let p = |scope: &str| PolicyRec { version: 1, scope: scope.into(), ..Default::default() };
    let v1 = s.add_policy(p("*")).unwrap().policy_version;
    let v2 = s.add_policy(p("A")).unwrap().policy_version;
    assert!(v2 > v1);
    assert_eq!(s.effective_policy("A").unwrap().unwrap().policy_version, v2);
    assert_eq!(s.effective_policy("B").unwrap().unwrap().policy_version, v1);
    assert_eq!(s.policies().unwrap().len(), 2);
}

#[allow(clippy::unwrap_used)]
fn forward_queue<B: Backend>(open: &dyn Fn(&Path) -> B) {
    let (_d, s) = fresh(open);
    assert_eq!(s.forward_positions().unwrap(), None);
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10]).collect();
    s.forward_enqueue(&msgs, 7, 3, 1000).unwrap();
    assert_eq!(s.forward_positions().unwrap(), Some((7, 3)));
    let head = s.forward_peek(2).unwrap();
    assert_eq!(head.iter().map(|(k, v)| (*k, v[0])).collect::<Vec<_>>(), vec![(1, 0), (2, 1)]);
    s.forward_remove(&[(1, 10), (2, 10)], true).unwrap();
    // the cap evicts the oldest, counted
    s.forward_enqueue(&[vec![9; 30]], 8, 3, 40).unwrap();
    let st = s.forward_stats().unwrap();
    assert_eq!((st.sent, st.dropped, st.queued, st.queued_bytes), (2, 2, 2, 40));
    assert_eq!(s.forward_peek(10).unwrap()[0].0, 5);
}

#[cfg(test)]
mod tests {
    /// sled's flusher may hold the file lock a moment after the last
    /// handle is dropped; a restarted process never sees this.
    #[allow(clippy::disallowed_methods, clippy::unwrap_used)]
    fn open_sled(path: &std::path::Path) -> crate::store::Store {
        for _ in 0..100 {
            if let Ok(s) = crate::store::Store::open(path) {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        crate::store::Store::open(path).unwrap()
    }

    #[test]
    fn sled_passes_the_conformance_suite() {
        super::run_all(&open_sled);
    }
}
