//! JSON forms of wire messages, shared by the command line (`--json`) and
//! the collector's forwarder, so both say the same thing the same way.

use prost_types::Timestamp;
use serde_json::{Value, json};

use crate::v1::Incident;

/// An incident as one JSON object (`canhgac incidents list --json`, the
/// forwarder): `time` formats a timestamp, `relative` says how far a
/// deadline is (`in 4 d 23 h`, `overdue 2 h`).
pub fn incident(
    i: &Incident,
    time: &dyn Fn(&Timestamp) -> String,
    relative: &dyn Fn(&Timestamp) -> String,
) -> Value {
    let ts = |t: &Option<Timestamp>| t.as_ref().map(|t| Value::from(time(t))).unwrap_or(Value::Null);
    json!({
        "id": i.id, "agency": i.agency,
        "system": if i.system == 0 { Value::Null } else { json!(i.system) },
        "system_name": i.system_name, "system_level": i.system_level,
        "category": i.category, "category_name": i.category_name,
        "attacker": i.attackers, "victim": i.victims,
        "state": i.state, "dismissed": i.dismissed, "close_reason": i.close_reason,
        "merged_into": if i.merged_into == 0 { Value::Null } else { json!(i.merged_into) },
        "severity": i.severity, "alert_count": i.alert_count,
        "first_seen": ts(&i.first_seen), "last_seen": ts(&i.last_seen), "detected": ts(&i.detected),
        "deadline": ts(&i.deadline), "deadline_id": i.deadline_id,
        "deadline_in": i.deadline.as_ref().map(relative), "overdue": i.overdue,
        "serious": i.serious, "possibly_serious": i.possibly_serious, "serious_reason": i.serious_reason,
        "assignee": i.assignee, "acknowledged_by": i.acknowledged_by, "impacts": i.impacts,
        "evidence": i.evidence.iter().map(|e| json!({
            "signature_id": e.signature_id, "signature": e.signature, "detector": e.detector,
            "count": e.count, "first_seen": ts(&e.first_seen), "last_seen": ts(&e.last_seen),
        })).collect::<Vec<_>>(),
        "fields": i.fields,
    })
}
