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
        "province": if i.province.is_empty() { Value::Null } else { json!(i.province) },
        "origin_id": if i.origin_id == 0 { Value::Null } else { json!(i.origin_id) },
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

/// An agent's counters as one JSON object (`agents list --json`, the
/// console's agents page): every counter by its wire name.
pub fn counters(c: &crate::v1::AgentCounters) -> Value {
    let by_severity: serde_json::Map<String, Value> =
        c.spool_dropped_by_severity.iter().map(|s| (s.severity.to_string(), Value::from(s.count))).collect();
    let fields: [(&str, Value); 53] = [
        ("packets_captured", Value::from(c.packets_captured)),
        ("bytes_captured", Value::from(c.bytes_captured)),
        ("packets_dropped_kernel", Value::from(c.packets_dropped_kernel)),
        ("packets_dropped_user", Value::from(c.packets_dropped_user)),
        ("decode_errors", Value::from(c.decode_errors)),
        ("records_produced", Value::from(c.records_produced)),
        ("records_acked", Value::from(c.records_acked)),
        ("spool_records", Value::from(c.spool_records)),
        ("spool_bytes", Value::from(c.spool_bytes)),
        ("spool_max_bytes", Value::from(c.spool_max_bytes)),
        ("spool_dropped", Value::from(c.spool_dropped)),
        ("spool_dropped_by_severity", Value::Object(by_severity)),
        ("records_dropped_oversize", Value::from(c.records_dropped_oversize)),
        ("batches_rejected", Value::from(c.batches_rejected)),
        ("connects", Value::from(c.connects)),
        ("ioc_entries", Value::from(c.ioc_entries)),
        ("ioc_lines_rejected", Value::from(c.ioc_lines_rejected)),
        ("alerts_suppressed", Value::from(c.alerts_suppressed)),
        ("dedup_evictions", Value::from(c.dedup_evictions)),
        ("uptime_seconds", Value::from(c.uptime_seconds)),
        ("flows_evicted", Value::from(c.flows_evicted)),
        ("fragments_dropped", Value::from(c.fragments_dropped)),
        ("tcp_reassembly_gaps", Value::from(c.tcp_reassembly_gaps)),
        ("rules_loaded", Value::from(c.rules_loaded)),
        ("rules_skipped", Value::from(c.rules_skipped)),
        ("rule_threshold_evictions", Value::from(c.rule_threshold_evictions)),
        ("rule_dataset_refused", Value::from(c.rule_dataset_refused)),
        ("rule_inspection_limit_hits", Value::from(c.rule_inspection_limit_hits)),
        ("host_log_lines", Value::from(c.host_log_lines)),
        ("host_log_lines_skipped", Value::from(c.host_log_lines_skipped)),
        ("host_log_read_errors", Value::from(c.host_log_read_errors)),
        ("host_journal_unavailable", Value::from(c.host_journal_unavailable)),
        ("host_auth_events", Value::from(c.host_auth_events)),
        ("host_web_requests", Value::from(c.host_web_requests)),
        ("host_fim_files", Value::from(c.host_fim_files)),
        ("host_fim_changes", Value::from(c.host_fim_changes)),
        ("host_fim_skipped", Value::from(c.host_fim_skipped)),
        ("host_tracker_evictions", Value::from(c.host_tracker_evictions)),
        ("host_syslog_messages", Value::from(c.host_syslog_messages)),
        ("host_syslog_refused", Value::from(c.host_syslog_refused)),
        ("host_syslog_rate_limited", Value::from(c.host_syslog_rate_limited)),
        ("host_syslog_queue_full", Value::from(c.host_syslog_queue_full)),
        ("host_syslog_garbage", Value::from(c.host_syslog_garbage)),
        ("host_syslog_truncated", Value::from(c.host_syslog_truncated)),
        ("host_syslog_tls_failures", Value::from(c.host_syslog_tls_failures)),
        ("host_syslog_unparsed", Value::from(c.host_syslog_unparsed)),
        ("host_firewall_events", Value::from(c.host_firewall_events)),
        ("host_windows_events", Value::from(c.host_windows_events)),
        ("spool_disk_bytes", Value::from(c.spool_disk_bytes)),
        ("spool_payload_cap", Value::from(c.spool_payload_cap)),
        ("spool_storage_failures", Value::from(c.spool_storage_failures)),
        ("spool_full", Value::from(c.spool_full)),
        ("replay_diverged", Value::from(c.replay_diverged)),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}
