//! Correlation decisions: whether an alert joins an incident, opens one or
//! is left alone, and what joining changes. Pure: no store, no clock (the
//! caller passes `now`); the store looks the keys up and persists what
//! these functions decide.
//!
//! An alert carries its keys most specific first: its flow (`f…`: alerts of
//! one flow always join), then its episode (`e…`: one category family
//! against one victim, or from one attacker, within the window). The first
//! key naming an incident that is still open and within the window wins.

use crate::store::{
    CorrelationInput, EvidenceRec, IncidentEventRec, IncidentRec, MAX_ENTITIES, RECORD_VERSION,
};

use super::State;

/// What the correlator does with one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Add it to this incident.
    Join(u64),
    /// Open a new incident for it.
    Open,
    /// Informational and nothing to attach to: no incident.
    Skip,
}

/// Whether an alert at `time_us` may join `inc`: the incident is open
/// (not closed, not merged) and the alert falls within the window of its
/// alerts.
pub fn joinable(inc: &IncidentRec, time_us: i64, window_us: i64) -> bool {
    State::parse(&inc.state).is_some_and(|s| s != State::Closed)
        && inc.merged_into == 0
        && time_us <= inc.last_seen_us.saturating_add(window_us)
        && time_us >= inc.first_seen_us.saturating_sub(window_us)
}

/// Decides for one alert, given the incident each of its keys names (in
/// the order of `inp.keys`; `None` where a key names none).
pub fn decide(inp: &CorrelationInput, found: &[Option<&IncidentRec>], window_us: i64) -> Decision {
    if inp.mirror.is_some() {
        // a downstream incident: its key names it whatever its state
        return match found.first().copied().flatten() {
            Some(inc) => Decision::Join(inc.id),
            None => Decision::Open,
        };
    }
    if let Some(inc) = found.iter().flatten().find(|inc| joinable(inc, inp.time_us, window_us)) {
        return Decision::Join(inc.id);
    }
    if inp.opens { Decision::Open } else { Decision::Skip }
}

/// A new incident for `inp`, with id `id`, opened at `now_us`.
pub fn open(inp: &CorrelationInput, id: u64, now_us: i64) -> IncidentRec {
    let mut inc = IncidentRec {
        version: RECORD_VERSION,
        id,
        agency: inp.agency.clone(),
        system: inp.system,
        category: inp.category.clone(),
        attacker: inp.attackers.first().cloned().unwrap_or_default(),
        state: State::Detected.as_str().into(),
        severity: inp.severity,
        first_seen_us: inp.time_us,
        last_seen_us: inp.time_us,
        detected_us: now_us,
        history: vec![IncidentEventRec {
            time_us: now_us,
            actor: "collector".into(),
            action: "detected".into(),
            to_state: State::Detected.as_str().into(),
            text: format!("opened by correlation of alert cursor {}", inp.cursor),
            ..Default::default()
        }],
        key: inp.keys.last().cloned().unwrap_or_default(),
        ..Default::default()
    };
    inc.milestones_us.insert(State::Detected.as_str().into(), now_us);
    inc
}

fn add_entity(list: &mut Vec<String>, omitted: &mut u64, e: &str) {
    if e.is_empty() || list.iter().any(|x| x == e) {
        return;
    }
    if list.len() >= MAX_ENTITIES {
        *omitted += 1;
    } else {
        list.push(e.to_string());
    }
}

/// Adds one alert to an incident: counts, severity, time span, roles,
/// evidence, keys; an unattributed incident takes the alert's system.
pub fn add(inc: &mut IncidentRec, inp: &CorrelationInput, now_us: i64) {
    if let Some(m) = &inp.mirror {
        // a downstream collector's incident replaces what was kept of it,
        // under this collector's id and key (it is handled there); a change
        // older than the one kept (sent again) changes nothing
        let stamp = |i: &IncidentRec| i.origin.as_ref().and_then(|o| o.updated).map(|t| (t.seconds, t.nanos));
        if inc.origin.is_some() && stamp(inc) > stamp(m) {
            return;
        }
        let id = inc.id;
        *inc = (**m).clone();
        inc.id = id;
        inc.key = inp.keys.first().cloned().unwrap_or_default();
        inc.keys = inp.keys.clone();
        inc.updated_us = now_us;
        return;
    }
    inc.alert_count += 1;
    if inc.severity == 0 || (inp.severity != 0 && inp.severity < inc.severity) {
        inc.severity = inp.severity;
    }
    inc.first_seen_us = inc.first_seen_us.min(inp.time_us);
    inc.last_seen_us = inc.last_seen_us.max(inp.time_us);
    inc.last_received_us = inc.last_received_us.max(inp.received_us);
    inc.updated_us = now_us;
    if inc.system == 0 && inp.system != 0 {
        inc.system = inp.system;
    }
    let mut omitted = inc.entities_omitted;
    // an informational alert that joins (same flow or episode) is evidence,
    // but its category reads roles its own way: it names no one
    if inp.opens {
        for a in &inp.attackers {
            add_entity(&mut inc.attackers, &mut omitted, a);
        }
        for v in &inp.victims {
            add_entity(&mut inc.victims, &mut omitted, v);
        }
    }
    if inc.attacker.is_empty() {
        inc.attacker = inc.attackers.first().cloned().unwrap_or_default();
    }
    for k in &inp.keys {
        if !inc.keys.contains(k) && inc.keys.len() < 4 * MAX_ENTITIES {
            inc.keys.push(k.clone());
        }
    }
    let full = inc.evidence.len() >= MAX_ENTITIES;
    match inc.evidence.iter_mut().find(|e| e.signature_id == inp.signature_id && e.detector == inp.detector) {
        Some(e) => {
            e.count += 1;
            e.first_us = e.first_us.min(inp.time_us);
            e.last_us = e.last_us.max(inp.time_us);
        }
        None if !full => inc.evidence.push(EvidenceRec {
            signature_id: inp.signature_id,
            signature: inp.signature.clone(),
            detector: inp.detector.clone(),
            count: 1,
            first_us: inp.time_us,
            last_us: inp.time_us,
        }),
        None => omitted += 1,
    }
    inc.entities_omitted = omitted;
}

/// Folds `other` into `into` (a merge): counts, span, roles, evidence and
/// keys; the caller closes `other` as a duplicate.
pub fn merge(into: &mut IncidentRec, other: &IncidentRec, now_us: i64) {
    into.alert_count += other.alert_count;
    if into.severity == 0 || (other.severity != 0 && other.severity < into.severity) {
        into.severity = other.severity;
    }
    into.first_seen_us = into.first_seen_us.min(other.first_seen_us);
    into.last_seen_us = into.last_seen_us.max(other.last_seen_us);
    into.last_received_us = into.last_received_us.max(other.last_received_us);
    if into.system == 0 {
        into.system = other.system;
    }
    let mut omitted = into.entities_omitted + other.entities_omitted;
    for a in &other.attackers {
        add_entity(&mut into.attackers, &mut omitted, a);
    }
    for v in &other.victims {
        add_entity(&mut into.victims, &mut omitted, v);
    }
    for e in &other.evidence {
        let full = into.evidence.len() >= MAX_ENTITIES;
        match into.evidence.iter_mut().find(|x| x.signature_id == e.signature_id && x.detector == e.detector)
        {
            Some(x) => {
                x.count += e.count;
                x.first_us = x.first_us.min(e.first_us);
                x.last_us = x.last_us.max(e.last_us);
            }
            None if !full => into.evidence.push(e.clone()),
            None => omitted += 1,
        }
    }
    into.entities_omitted = omitted;
    into.updated_us = now_us;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(time_us: i64, keys: &[&str], opens: bool) -> CorrelationInput {
        CorrelationInput {
            cursor: 1,
            agency: "A".into(),
            category: "c2".into(),
            attackers: vec!["203.0.113.9".into()],
            victims: vec!["10.0.0.5".into()],
            keys: keys.iter().map(|k| k.to_string()).collect(),
            opens,
            severity: 1,
            time_us,
            detector: "rule".into(),
            signature_id: 2001,
            signature: "ET TROJAN x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_mirrored_incident_is_replaced_whole_under_its_key_whatever_its_state() {
        let mut theirs = IncidentRec {
            id: 41,
            agency: "HN".into(),
            state: "closed".into(),
            alert_count: 7,
            province: "HN".into(),
            ..Default::default()
        };
        let inp = CorrelationInput {
            cursor: 9,
            keys: vec!["m\0HN\0HN\0#41".into()],
            mirror: Some(Box::new(theirs.clone())),
            ..Default::default()
        };
        assert_eq!(decide(&inp, &[None], 0), Decision::Open);
        let mut ours = open(&inp, 3, 100);
        add(&mut ours, &inp, 100);
        assert_eq!((ours.id, ours.alert_count, ours.state.as_str()), (3, 7, "closed"));
        assert_eq!(ours.keys, inp.keys);
        // a closed incident still takes its next change: no window, no state
        assert_eq!(decide(&inp, &[Some(&ours)], 0), Decision::Join(3));
        theirs.alert_count = 9;
        let next = CorrelationInput { mirror: Some(Box::new(theirs.clone())), ..inp.clone() };
        add(&mut ours, &next, 200);
        assert_eq!((ours.id, ours.alert_count, ours.updated_us), (3, 9, 200));
        // changes carry the time they were made there: an older one sent
        // again (a replay) never replaces a newer one
        let at = |s: i64| {
            let mut m = theirs.clone();
            m.origin = Some(canhgac_proto::v1::Incident {
                updated: Some(prost_types::Timestamp { seconds: s, nanos: 0 }),
                ..Default::default()
            });
            m
        };
        let newer = at(50);
        add(&mut ours, &CorrelationInput { mirror: Some(Box::new(newer)), ..inp.clone() }, 300);
        let mut older = at(40);
        older.alert_count = 1;
        add(&mut ours, &CorrelationInput { mirror: Some(Box::new(older)), ..inp }, 400);
        assert_eq!((ours.alert_count, ours.updated_us), (9, 300), "the older change was ignored");
    }

    #[test]
    fn joins_the_first_open_incident_in_the_window() {
        let inp = input(1_000, &["f", "e"], true);
        let mut a = open(&inp, 7, 5);
        add(&mut a, &inp, 5);
        assert_eq!(decide(&input(2_000, &["f", "e"], true), &[None, Some(&a)], 10_000), Decision::Join(7));
        // outside the window: a new incident
        assert_eq!(decide(&input(50_000, &["e"], true), &[Some(&a)], 10_000), Decision::Open);
        // an informational alert never opens one
        assert_eq!(decide(&input(50_000, &["e"], false), &[Some(&a)], 10_000), Decision::Skip);
        assert_eq!(decide(&input(2_000, &["e"], false), &[Some(&a)], 10_000), Decision::Join(7));
        // closed or merged incidents take nothing
        let mut closed = a.clone();
        closed.state = "closed".into();
        assert_eq!(decide(&input(2_000, &["e"], true), &[Some(&closed)], 10_000), Decision::Open);
        let mut info = input(2_000, &["e"], false);
        info.attackers = vec!["10.0.0.5".into()];
        let mut with_info = a.clone();
        add(&mut with_info, &info, 6);
        assert_eq!(with_info.alert_count, 2);
        assert_eq!(with_info.attackers, a.attackers, "an informational alert names no one");
        let mut merged = a.clone();
        merged.merged_into = 9;
        assert_eq!(decide(&input(2_000, &["e"], false), &[Some(&merged)], 10_000), Decision::Skip);
    }

    #[test]
    fn adding_keeps_roles_evidence_and_the_first_system() {
        let first = input(1_000, &["e"], true);
        let mut inc = open(&first, 1, 0);
        add(&mut inc, &first, 0);
        assert_eq!(inc.system, 0);
        let mut second = input(3_000, &["f2", "e"], true);
        second.system = 4;
        second.attackers = vec!["evil.example".into(), "203.0.113.9".into()];
        second.detector = "ioc".into();
        second.signature_id = 9_000_001;
        add(&mut inc, &second, 9);
        add(&mut inc, &second, 10);
        assert_eq!(inc.alert_count, 3);
        assert_eq!(inc.system, 4, "an unattributed incident takes the first evidence of a system");
        assert_eq!(inc.attackers, vec!["203.0.113.9", "evil.example"]);
        assert_eq!(inc.victims, vec!["10.0.0.5"]);
        assert_eq!(inc.evidence.len(), 2);
        assert_eq!(inc.evidence[1].count, 2);
        assert_eq!((inc.first_seen_us, inc.last_seen_us), (1_000, 3_000));
        assert_eq!(inc.keys, vec!["e", "f2"]);
        let mut other = open(&first, 2, 0);
        add(&mut other, &first, 0);
        merge(&mut inc, &other, 11);
        assert_eq!(inc.alert_count, 4);
        assert_eq!(inc.evidence[0].count, 2);
    }

    #[test]
    fn entity_lists_are_bounded_and_count_what_they_leave_out() {
        let mut inc = IncidentRec::default();
        for i in 0..(MAX_ENTITIES + 5) {
            let mut inp = input(i as i64, &["e"], true);
            inp.victims = vec![format!("10.0.{}.{}", i / 256, i % 256)];
            add(&mut inc, &inp, 0);
        }
        assert_eq!(inc.victims.len(), MAX_ENTITIES);
        assert_eq!(inc.entities_omitted, 5);
    }
}
