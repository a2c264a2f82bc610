//! An agent whose clock is hours off the collector's (issue 14, point 5):
//! the agent runs under Debian's libfaketime (`LD_PRELOAD`, package
//! `libfaketime`, installed by `.ci/run`). Seven hours is a server whose
//! clock holds Vietnam's local time as if it were UTC, or the reverse.
//! Enrollment and the mutual-TLS stream must work, every record arrive
//! once and in order, and what the collector decides by time (incident
//! deadlines, last seen, silence) follow its own clock.

use std::time::Duration;

use canhgac_proto::timefmt;
use canhgac_tests::{Agent, Burst, Collector, rrnames};
use serde_json::Value;
use time::OffsetDateTime;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn time_of(v: &Value) -> OffsetDateTime {
    timefmt::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The first timestamp the agent logged (its own clock).
fn first_log_time(logs: &str) -> OffsetDateTime {
    let first = logs.lines().find(|l| !l.trim().is_empty()).expect("the agent logged");
    let stamp = first.split_whitespace().next().unwrap();
    timefmt::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("no timestamp in `{first}`: {e}"))
}

fn skewed_agent_streams_and_the_collector_keeps_its_own_time(hours: i64) {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: `apt-get install libfaketime` (.ci/run does)"
    );
    let skew = time::Duration::hours(hours);
    let tmp = tempfile::tempdir().unwrap();
    let start = OffsetDateTime::now_utc();
    // the collector is initialised now: its CA and server certificate are
    // minutes old, the worst case for an agent behind
    let mut c = Collector::init(tmp.path());
    c.start();
    c.add_agency("SO-SKEW", "Sở lệch giờ");
    let mut agent = Agent::new(tmp.path(), "agent");
    agent.env = vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        ("FAKETIME".into(), format!("{hours:+}h")),
        // timers and backoff on the monotonic clock stay real
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    let enrolled = agent.enroll_output(&c, &c.token("SO-SKEW", None), &[]);
    assert!(
        enrolled.status.success(),
        "enrollment with the agent's clock {hours:+} h off: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );

    const N: usize = 400;
    let burst = Burst::new(tmp.path(), N, "[uplink]\nbatch_max_records = 50\nheartbeat_interval = \"1s\"\n");
    agent.start(&burst.args(&["--replay-pps", "200", "--exit-when-drained"]));
    assert_eq!(agent.wait(Duration::from_secs(90)), 0, "{}", agent.logs());
    let end = OffsetDateTime::now_utc();

    // the agent really ran on the shifted clock
    let logged = first_log_time(&agent.logs());
    let off = logged - start;
    assert!(
        (off - skew).abs() < time::Duration::minutes(5),
        "the agent's log says {logged}, {off} from the real clock, not {hours:+} h: libfaketime did not apply"
    );

    // every record once, in the order the agent produced them (their event
    // times are the capture's; the newest first)
    let alerts = c.alerts();
    let mut got = rrnames(&alerts);
    got.reverse();
    assert_eq!(got, burst.names, "every record exactly once and in order");
    let a = c.agents().into_iter().next().unwrap();
    assert_eq!(a["records_stored"], N as u64, "{a}");
    assert_eq!(a["counters"]["records_acked"], N as u64, "{a}");
    assert_eq!(a["counters"]["spool_dropped"].as_u64().unwrap_or(0), 0, "{a}");

    // last seen is the collector's clock, not the agent's (the listing
    // shows whole seconds)
    let since = start - time::Duration::seconds(1);
    let seen = time_of(&a["last_seen"]);
    assert!(
        seen >= since && seen <= end + time::Duration::seconds(2),
        "last seen {seen}, run {start}..{end}"
    );
    let first_seen = time_of(&a["first_seen"]);
    assert!(first_seen >= since && first_seen <= end, "first seen {first_seen}, run {start}..{end}");
    // a certificate lifetime counted from the collector's clock
    let not_after = time_of(&a["certificate_not_after"]);
    let life = not_after - start;
    assert!(
        // (X.509 times are whole seconds)
        life > time::Duration::days(30) - time::Duration::seconds(2)
            && life < time::Duration::days(30) + (end - start),
        "not after {not_after}"
    );
    assert!(!a["revoked"].as_bool().unwrap_or(false));

    // the incident's detection and deadline follow the collector's clock
    let incidents = canhgac_tests::wait_for("an incident", Duration::from_secs(30), || {
        let l = json_lines(&c.cli(&["incidents", "list", "--json"]));
        (!l.is_empty()).then_some(l)
    });
    for inc in &incidents {
        let detected = time_of(&inc["detected"]);
        assert!(
            detected >= since && detected <= OffsetDateTime::now_utc(),
            "detected at {detected}: not the collector's clock ({start}..)"
        );
        assert_eq!(time_of(&inc["deadline"]) - detected, time::Duration::days(5), "{inc}");
        assert!(!inc["overdue"].as_bool().unwrap_or(false), "{inc}");
    }
    // the agent finished a moment ago: online, and no silence was raised
    // by comparing its clock with the collector's
    let online = c.cli(&["agents", "list", "--json"]);
    assert!(json_lines(&online)[0]["online"].as_bool().unwrap(), "{online}");
    let silent = alerts.iter().filter(|v| v["canhgac"]["detector"] == "agent-silent").count();
    assert_eq!(silent, 0, "agent-silent alerts for an agent that streamed");
    let logs = agent.logs();
    assert!(!logs.contains("asking the collector for a new certificate"), "renewal storm:\n{logs}");
}

#[test]
fn agent_clock_seven_hours_ahead_streams_exactly_once_on_collector_time() {
    skewed_agent_streams_and_the_collector_keeps_its_own_time(7);
}

#[test]
fn agent_clock_seven_hours_behind_streams_exactly_once_on_collector_time() {
    skewed_agent_streams_and_the_collector_keeps_its_own_time(-7);
}
