//! Tests of the migration on a PostgreSQL cluster owned by the test.

#![allow(clippy::unwrap_used)]

use super::{Finished, MigrateError, Options, check, open_source, open_target, run};
use crate::store::{
    AgencyRec, AgentRec, AlertQuery, AuditCheckpointRec, AuditRec, CorrelationInput, IncidentFilter,
    Incoming, OperatorRec, PgOptions, PgStore, PolicyRec, RecordRec, SledStore, SystemRec, TokenRec,
    pg::testcluster::TestCluster,
};

fn alert(seq: u64, alert: bool, time_us: i64) -> Incoming {
    Incoming::Valid {
        seq,
        alert,
        severity: 1 + (seq % 3) as u32,
        time_us,
        eve_json: format!("{{\"seq\":{seq}}}"),
        facts: None,
        origin: None,
    }
}

fn input(cursor: u64, agency: &str, attacker: &str) -> CorrelationInput {
    CorrelationInput {
        cursor,
        agency: agency.into(),
        category: "intrusion".into(),
        keys: vec![format!("e\0{agency}\0intrusion\0a:{attacker}")],
        opens: true,
        severity: 2,
        time_us: cursor as i64,
        ..Default::default()
    }
}

fn seal(r: &AuditRec) -> String {
    format!("h{}:{}:{}", r.seq, r.prev_hash, r.action)
}

/// Fills a sled store through its public API with something of every
/// kind it holds.
fn fill(s: &SledStore) {
    for code in ["A", "B"] {
        s.add_agency(AgencyRec { version: 1, code: code.into(), name: code.into(), ..Default::default() })
            .unwrap();
    }
    s.put_systems(vec![
        SystemRec { agency: "A".into(), name: "portal".into(), level: 2, ..Default::default() },
        SystemRec { agency: "B".into(), name: "mail".into(), level: 3, ..Default::default() },
    ])
    .unwrap();
    let token = |agency: &str| TokenRec {
        version: 1,
        agency: agency.into(),
        expires_us: i64::MAX,
        ..Default::default()
    };
    for (id, agency) in [("agent-a", "A"), ("agent-b", "B")] {
        s.add_token(&format!("t-{id}"), token(agency)).unwrap();
        let rec = AgentRec { version: 1, agent_id: id.into(), agency: agency.into(), ..Default::default() };
        s.enroll(&format!("t-{id}"), Some(agency), 5, rec).unwrap();
    }
    s.add_token("unused", token("A")).unwrap();
    for b in 0..6u64 {
        let batch: Vec<_> = (0..5).map(|k| alert(b * 5 + k + 1, k != 4, (b * 5 + k) as i64 * 1000)).collect();
        s.ingest("agent-a", "A", 7, &batch).unwrap();
        s.ingest("agent-b", "B", 8, &batch[..3]).unwrap();
    }
    let bad = Incoming::Invalid { seq: 99, reason: "not json".into(), raw: b"\xff".to_vec() };
    s.ingest("agent-a", "A", 9, &[bad]).unwrap();
    s.insert_collector_alert(RecordRec { version: 1, agency: "A".into(), kind: 1, ..Default::default() })
        .unwrap();
    let alerts = s.alerts_after(0, 1000).unwrap();
    let inputs: Vec<_> = alerts
        .iter()
        .map(|(c, r)| input(*c, &r.agency, if c % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" }))
        .collect();
    let last = alerts.last().unwrap().0;
    s.correlate(&inputs[..10], inputs[9].cursor, 60_000_000, 10).unwrap();
    s.correlate(&inputs[10..], last, 60_000_000, 11).unwrap();
    s.update_incident(1, |r| {
        r.state = "acknowledged".into();
        r.acknowledged_by = "alice".into();
        Ok::<_, ()>(())
    })
    .unwrap()
    .unwrap();
    for n in 0..4 {
        s.append_audit(
            AuditRec {
                time_us: n,
                operator: "alice".into(),
                action: format!("act{n}"),
                ..Default::default()
            },
            seal,
        )
        .unwrap();
    }
    let head = s.audit_head().unwrap().unwrap();
    s.put_audit_checkpoint(AuditCheckpointRec {
        version: 1,
        seq: head.seq,
        hash: head.hash,
        signed_at_us: 1,
        signature: "sig".into(),
        ..Default::default()
    })
    .unwrap();
    s.add_policy(PolicyRec { version: 1, scope: "*".into(), digest: "d1".into(), ..Default::default() })
        .unwrap();
    s.add_policy(PolicyRec { version: 1, scope: "A".into(), digest: "d2".into(), ..Default::default() })
        .unwrap();
    for name in ["alice", "bob"] {
        let op = OperatorRec { version: 1, name: name.into(), role: "admin".into(), ..Default::default() };
        s.add_operator(op).unwrap();
    }
    s.revoke_operator("bob", 3, "alice", "left").unwrap().unwrap();
    s.forward_enqueue(&[b"m1".to_vec(), b"m2".to_vec(), b"m3".to_vec()], 5, 2, 1 << 20).unwrap();
    s.forward_remove(&[(1, 2)], true).unwrap();
}

/// Every listing of the store API gives the same on both.
fn assert_same(s: &SledStore, p: &PgStore) {
    assert_eq!(s.alerts_after(0, 10_000).unwrap(), p.alerts_after(0, 10_000).unwrap());
    assert_eq!(s.events_after(0, 10_000).unwrap(), p.events_after(0, 10_000).unwrap());
    for agency in [None, Some("A".to_string()), Some("B".to_string())] {
        let q = AlertQuery { agency, limit: 1000, ..Default::default() };
        assert_eq!(s.list_alerts(&q).unwrap().0, p.list_alerts(&q).unwrap().0);
        let code = q.agency.clone().unwrap_or_default();
        assert_eq!(s.agency_stats(&code).unwrap(), p.agency_stats(&code).unwrap());
    }
    assert_eq!(s.quarantined().unwrap(), p.quarantined().unwrap());
    assert_eq!(s.agencies().unwrap(), p.agencies().unwrap());
    assert_eq!(s.systems().unwrap(), p.systems().unwrap());
    assert_eq!(s.agents().unwrap(), p.agents().unwrap());
    assert_eq!(s.operators().unwrap(), p.operators().unwrap());
    assert_eq!(s.policies().unwrap(), p.policies().unwrap());
    assert_eq!(s.effective_policy("B").unwrap(), p.effective_policy("B").unwrap());
    assert_eq!(s.check_token("unused", None, 1).unwrap(), p.check_token("unused", None, 1).unwrap());
    let f = IncidentFilter { limit: 1000, ..Default::default() };
    let incidents = s.incidents(&f).unwrap();
    assert_eq!(incidents, p.incidents(&f).unwrap());
    for inc in &incidents.0 {
        assert_eq!(
            s.incident_alert_cursors(inc.id, 1000).unwrap(),
            p.incident_alert_cursors(inc.id, 1000).unwrap()
        );
    }
    assert_eq!(s.incident_changes_after(0, 1000).unwrap(), p.incident_changes_after(0, 1000).unwrap());
    assert_eq!(s.correlated_cursor().unwrap(), p.correlated_cursor().unwrap());
    assert_eq!(s.audit_after(0, 1000).unwrap(), p.audit_after(0, 1000).unwrap());
    assert_eq!(s.audit_head().unwrap(), p.audit_head().unwrap());
    assert_eq!(
        s.audit_checkpoints(0, u64::MAX >> 1).unwrap(),
        p.audit_checkpoints(0, u64::MAX >> 1).unwrap()
    );
    assert_eq!(s.forward_positions().unwrap(), p.forward_positions().unwrap());
    assert_eq!(s.forward_peek(100).unwrap(), p.forward_peek(100).unwrap());
    assert_eq!(s.forward_stats().unwrap(), p.forward_stats().unwrap());
}

/// The same writes on both continue the same sequences.
fn assert_continues_alike(s: &SledStore, p: &PgStore) {
    let batch = [alert(500, true, 1), alert(501, false, 2), alert(3, true, 3)];
    assert_eq!(s.ingest("agent-a", "A", 20, &batch).unwrap(), p.ingest("agent-a", "A", 20, &batch).unwrap());
    let last = s.alerts_after(0, 10_000).unwrap().last().unwrap().0;
    let new = input(last, "B", "10.9.9.9");
    assert_eq!(
        s.correlate(std::slice::from_ref(&new), last, 60_000_000, 30).unwrap(),
        p.correlate(&[new], last, 60_000_000, 30).unwrap()
    );
    let sys = || vec![SystemRec { agency: "A".into(), name: "new".into(), ..Default::default() }];
    assert_eq!(s.put_systems(sys()).unwrap(), p.put_systems(sys()).unwrap());
    let pol = || PolicyRec { version: 1, scope: "B".into(), ..Default::default() };
    assert_eq!(s.add_policy(pol()).unwrap(), p.add_policy(pol()).unwrap());
    let entry = || AuditRec { operator: "alice".into(), action: "after".into(), ..Default::default() };
    assert_eq!(s.append_audit(entry(), seal).unwrap(), p.append_audit(entry(), seal).unwrap());
    s.forward_enqueue(&[b"m4".to_vec()], 9, 9, 1 << 20).unwrap();
    p.forward_enqueue(&[b"m4".to_vec()], 9, 9, 1 << 20).unwrap();
    assert_same(s, p);
}

fn all_ok(s: &SledStore, p: &PgStore) {
    let counts = check(s, p).unwrap();
    assert!(counts.iter().all(|c| c.ok()), "{counts:#?}");
    assert!(counts.iter().any(|c| c.table == "alerts" && c.sled > 0));
}

fn no_progress(_: &super::Progress) {}

#[test]
fn a_sled_store_moves_to_postgres_whole_and_continues_there() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&dir.path().join("db")).unwrap();
    fill(&s);
    cluster.create_db("whole").unwrap();
    let p = PgStore::open(&PgOptions::new(cluster.url("whole"))).unwrap();
    let done = run(&s, &p, "src", &Options::default(), &mut no_progress).unwrap();
    assert_eq!(done, Finished::Complete);
    all_ok(&s, &p);
    assert_same(&s, &p);
    // a second run writes nothing and still checks out
    assert_eq!(run(&s, &p, "src", &Options::default(), &mut no_progress).unwrap(), Finished::Complete);
    all_ok(&s, &p);
    // another source into the same database is refused
    let err = run(&s, &p, "elsewhere", &Options::default(), &mut no_progress).unwrap_err();
    assert!(matches!(err, MigrateError::OtherSource { .. }), "{err}");
    assert_continues_alike(&s, &p);
}

#[test]
fn a_migration_stopped_after_any_batch_resumes_to_the_same_result() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&dir.path().join("db")).unwrap();
    fill(&s);
    cluster.create_db("resume").unwrap();
    let opts = PgOptions::new(cluster.url("resume"));
    let mut runs = 0;
    loop {
        // 3 batches of 4 rows per run: stops inside tables and between them;
        // each run connects anew, as a new process would
        let p = open_target(&opts).unwrap();
        let stop = Options { batch: 4, stop_after_batches: Some(3) };
        runs += 1;
        assert!(runs < 200, "no end");
        if run(&s, &p, "src", &stop, &mut no_progress).unwrap() == Finished::Complete {
            break;
        }
        if runs == 5 {
            // half-way, the counters are not set yet and the check says so
            assert!(check(&s, &p).unwrap().iter().any(|c| !c.ok()));
            // and a collector refuses to serve the half-filled database
            let err = PgStore::open(&opts).err().unwrap();
            assert!(err.to_string().contains("has not finished"), "{err}");
        }
    }
    assert!(runs > 10, "the migration was really stopped and resumed ({runs} runs)");
    let p = PgStore::open(&opts).unwrap();
    all_ok(&s, &p);
    assert_same(&s, &p);
    assert_continues_alike(&s, &p);
}

#[test]
fn a_database_with_other_data_or_a_locked_source_is_refused() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(&dir.path().join("db")).unwrap();
    fill(&s);
    // a collector has written to the database: refused, nothing written
    cluster.create_db("used").unwrap();
    let p = PgStore::open(&PgOptions::new(cluster.url("used"))).unwrap();
    p.add_agency(AgencyRec { version: 1, code: "X".into(), ..Default::default() }).unwrap();
    let err = run(&s, &p, "src", &Options::default(), &mut no_progress).unwrap_err();
    assert!(matches!(err, MigrateError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("table `agencies` is not empty"), "{err}");
    assert_eq!(p.agencies().unwrap().len(), 1);
    // a collector serving the database: refused
    cluster.create_db("served").unwrap();
    let p = PgStore::open(&PgOptions::new(cluster.url("served"))).unwrap();
    assert!(p.acquire_lease("correlator", "replica-1", std::time::Duration::from_secs(30)).unwrap());
    let err = run(&s, &p, "src", &Options::default(), &mut no_progress).unwrap_err();
    assert!(matches!(err, MigrateError::Served(_)), "{err}");
    // the sled database is open (a collector runs on it): refused clearly
    let err = open_source(dir.path()).err().unwrap();
    assert!(matches!(err, MigrateError::InUse(_)), "{err}");
    drop(s);
    let err = open_source(&dir.path().join("nothing")).err().unwrap();
    assert!(matches!(err, MigrateError::NoSource(_)), "{err}");
    assert!(!dir.path().join("nothing").exists(), "nothing created");
}
