//! Persisted record types (protobuf encoding, hand-declared with prost).
//!
//! Every record has `version` as field 1 (currently 1). Fields are only ever
//! added, with new tags; a reader ignores tags it does not know, so older
//! data stays readable and newer data does not break an older collector.
//! `collector/tests/golden/` holds encoded samples of each version (checked
//! by the `golden` test below).

use std::collections::BTreeMap;

use canhgac_proto::v1;

pub const RECORD_VERSION: u32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgencyRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub code: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(int64, tag = "4")]
    pub created_us: i64,
    #[prost(string, tag = "5")]
    pub created_by: String,
    /// Registry columns (see `crate::directory`), by column name.
    #[prost(btree_map = "string, string", tag = "6")]
    pub fields: BTreeMap<String, String>,
    /// When each contact group (`head`, `monitoring`, `response`) last changed.
    #[prost(btree_map = "string, int64", tag = "7")]
    pub changed_us: BTreeMap<String, i64>,
    #[prost(int64, tag = "8")]
    pub updated_us: i64,
    /// `province` for a tenant above agencies whose downstream collector
    /// streams here; empty for an agency.
    #[prost(string, tag = "9")]
    pub kind: String,
}

impl AgencyRec {
    pub fn is_province(&self) -> bool {
        self.kind == PROVINCE
    }
}

/// [`AgencyRec::kind`] of a province.
pub const PROVINCE: &str = "province";

#[derive(Clone, PartialEq, prost::Message)]
pub struct TokenRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub agency: String,
    #[prost(int64, tag = "3")]
    pub created_us: i64,
    #[prost(int64, tag = "4")]
    pub expires_us: i64,
    /// 0 while unused.
    #[prost(int64, tag = "5")]
    pub used_us: i64,
    #[prost(string, tag = "6")]
    pub used_by: String,
    #[prost(string, tag = "7")]
    pub created_by: String,
    /// Enrolls a province's downstream collector, not an agent.
    #[prost(bool, tag = "8")]
    pub province: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub agent_id: String,
    #[prost(string, tag = "3")]
    pub agency: String,
    #[prost(string, tag = "4")]
    pub hostname: String,
    #[prost(string, tag = "5")]
    pub agent_version: String,
    #[prost(message, optional, tag = "6")]
    pub inventory: Option<v1::HostInventory>,
    #[prost(int64, tag = "7")]
    pub enrolled_us: i64,
    /// 0 until the first telemetry stream.
    #[prost(int64, tag = "8")]
    pub first_seen_us: i64,
    #[prost(int64, tag = "9")]
    pub last_seen_us: i64,
    /// 0 unless revoked.
    #[prost(int64, tag = "10")]
    pub revoked_us: i64,
    #[prost(string, tag = "11")]
    pub revoke_reason: String,
    #[prost(int64, tag = "12")]
    pub cert_not_after_us: i64,
    #[prost(string, tag = "13")]
    pub cert_serial: String,
    #[prost(message, optional, tag = "14")]
    pub counters: Option<v1::AgentCounters>,
    #[prost(uint64, tag = "15")]
    pub records_stored: u64,
    #[prost(uint64, tag = "16")]
    pub records_duplicate: u64,
    #[prost(uint64, tag = "17")]
    pub records_invalid: u64,
    #[prost(uint64, tag = "18")]
    pub batches_rejected: u64,
    #[prost(uint64, tag = "19")]
    pub highest_seq: u64,
    #[prost(string, tag = "20")]
    pub enrolled_with_token: String,
    /// Information systems this agent watches.
    #[prost(uint64, repeated, tag = "21")]
    pub systems: Vec<u64>,
    /// Central policy the agent reports running.
    #[prost(message, optional, tag = "22")]
    pub policy: Option<v1::PolicyStatus>,
    /// Start of the silence an `agent-silent` alert was raised for (0: none).
    #[prost(int64, tag = "23")]
    pub silent_alerted_us: i64,
    /// A province's downstream collector (enrolled with a province token):
    /// its records come correlated, and it may send incidents.
    #[prost(bool, tag = "24")]
    pub downstream: bool,
}

/// One stored alert or event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub agent_id: String,
    #[prost(string, tag = "3")]
    pub agency: String,
    #[prost(uint64, tag = "4")]
    pub seq: u64,
    #[prost(enumeration = "v1::RecordKind", tag = "5")]
    pub kind: i32,
    #[prost(uint32, tag = "6")]
    pub severity: u32,
    #[prost(int64, tag = "7")]
    pub time_us: i64,
    #[prost(int64, tag = "8")]
    pub received_us: i64,
    /// As received; kept for export and subscriptions, never read to decide.
    #[prost(string, tag = "9")]
    pub eve_json: String,
    /// An alert's typed facts, as the agent sent them or derived once at
    /// ingest from an older agent's EVE JSON. `None` for events, and for
    /// alerts stored before facts existed (see `incident::facts_of`).
    #[prost(message, optional, tag = "10")]
    pub facts: Option<v1::RecordFacts>,
    /// From a downstream collector: its incident (`RECORD_KIND_INCIDENT`).
    #[prost(message, optional, tag = "11")]
    pub incident: Option<v1::Incident>,
    /// From a downstream collector: the agency there, and the province.
    #[prost(string, tag = "12")]
    pub origin_agency: String,
    #[prost(string, tag = "13")]
    pub province: String,
    /// From a downstream collector: its daily report (`RECORD_KIND_SUMMARY`).
    #[prost(message, optional, tag = "14")]
    pub summary: Option<v1::DailySummary>,
}

/// A record the collector could not accept as EVE JSON, kept verbatim.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QuarantineRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub agent_id: String,
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    #[prost(int64, tag = "4")]
    pub received_us: i64,
    #[prost(string, tag = "5")]
    pub reason: String,
    #[prost(bytes = "vec", tag = "6")]
    pub raw: Vec<u8>,
}

/// An information system of an agency.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SystemRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(string, tag = "3")]
    pub agency: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub kind: String,
    #[prost(uint32, tag = "6")]
    pub level: u32,
    #[prost(string, tag = "7")]
    pub dossier_status: String,
    #[prost(string, tag = "8")]
    pub decision_number: String,
    #[prost(string, tag = "9")]
    pub decision_date: String,
    #[prost(bool, tag = "10")]
    pub state_secrets: bool,
    #[prost(string, repeated, tag = "11")]
    pub public_ips: Vec<String>,
    #[prost(string, repeated, tag = "12")]
    pub domains: Vec<String>,
    #[prost(string, tag = "13")]
    pub last_assessment: String,
    #[prost(int64, tag = "14")]
    pub created_us: i64,
    #[prost(int64, tag = "15")]
    pub updated_us: i64,
    /// Internal networks of the system (CIDRs): a network alert whose
    /// victim is inside one is filed against this system.
    #[prost(string, repeated, tag = "16")]
    pub networks: Vec<String>,
}

/// Operator identities and their roles.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub name: String,
    /// admin, analyst, agency, auditor.
    #[prost(string, tag = "3")]
    pub role: String,
    #[prost(string, tag = "4")]
    pub agency: String,
    #[prost(int64, tag = "5")]
    pub created_us: i64,
    #[prost(string, tag = "6")]
    pub created_by: String,
    #[prost(string, tag = "7")]
    pub cert_serial: String,
    /// 0 while valid.
    #[prost(int64, tag = "8")]
    pub revoked_us: i64,
    #[prost(string, tag = "9")]
    pub revoked_by: String,
    #[prost(string, tag = "10")]
    pub revoke_reason: String,
    /// Console password, an argon2id PHC string ("" = none set).
    #[prost(string, tag = "11")]
    pub password_hash: String,
    /// Console language (`vi`, `en`; "" = the default).
    #[prost(string, tag = "12")]
    pub language: String,
}

/// One audit-log entry; `hash` chains it to the previous one (see
/// `crate::audit`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(int64, tag = "3")]
    pub time_us: i64,
    #[prost(string, tag = "4")]
    pub operator: String,
    #[prost(string, tag = "5")]
    pub role: String,
    #[prost(string, tag = "6")]
    pub operator_agency: String,
    #[prost(string, tag = "7")]
    pub action: String,
    #[prost(string, tag = "8")]
    pub target: String,
    #[prost(string, tag = "9")]
    pub outcome: String,
    #[prost(string, tag = "10")]
    pub detail: String,
    #[prost(string, tag = "11")]
    pub prev_hash: String,
    #[prost(string, tag = "12")]
    pub hash: String,
}

/// A head of the audit chain signed with the server key (a checkpoint).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuditCheckpointRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(string, tag = "3")]
    pub hash: String,
    #[prost(int64, tag = "4")]
    pub signed_at_us: i64,
    #[prost(string, tag = "5")]
    pub signature: String,
    #[prost(string, tag = "6")]
    pub certificate_pem: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IncidentEventRec {
    #[prost(int64, tag = "1")]
    pub time_us: i64,
    #[prost(string, tag = "2")]
    pub actor: String,
    #[prost(string, tag = "3")]
    pub action: String,
    #[prost(string, tag = "4")]
    pub from_state: String,
    #[prost(string, tag = "5")]
    pub to_state: String,
    #[prost(string, tag = "6")]
    pub text: String,
}

/// An incident: alerts grouped by agency, system, category and attacker.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IncidentRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(string, tag = "3")]
    pub agency: String,
    #[prost(uint64, tag = "4")]
    pub system: u64,
    #[prost(string, tag = "5")]
    pub category: String,
    #[prost(string, tag = "6")]
    pub attacker: String,
    #[prost(string, tag = "7")]
    pub state: String,
    #[prost(uint32, tag = "8")]
    pub severity: u32,
    #[prost(uint64, tag = "9")]
    pub alert_count: u64,
    #[prost(int64, tag = "10")]
    pub first_seen_us: i64,
    #[prost(int64, tag = "11")]
    pub last_seen_us: i64,
    #[prost(int64, tag = "12")]
    pub detected_us: i64,
    #[prost(string, tag = "13")]
    pub assignee: String,
    #[prost(string, tag = "14")]
    pub acknowledged_by: String,
    #[prost(int64, tag = "15")]
    pub acknowledged_us: i64,
    #[prost(string, repeated, tag = "16")]
    pub impacts: Vec<String>,
    #[prost(bool, tag = "17")]
    pub owner_cannot_handle: bool,
    /// Report fields (description, actions_taken, cause, ...).
    #[prost(btree_map = "string, string", tag = "18")]
    pub fields: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "19")]
    pub history: Vec<IncidentEventRec>,
    /// When each milestone was reached: state names, `completion_report`.
    #[prost(btree_map = "string, int64", tag = "20")]
    pub milestones_us: BTreeMap<String, i64>,
    #[prost(int64, tag = "21")]
    pub updated_us: i64,
    /// The correlation key this incident was opened for.
    #[prost(string, tag = "22")]
    pub key: String,
    /// Received time of the last alert added.
    #[prost(int64, tag = "23")]
    pub last_received_us: i64,
    /// Attacker entities (addresses, domains, indicators), in the order
    /// first seen, at most [`MAX_ENTITIES`].
    #[prost(string, repeated, tag = "24")]
    pub attackers: Vec<String>,
    /// Victim entities (addresses, host names), likewise.
    #[prost(string, repeated, tag = "25")]
    pub victims: Vec<String>,
    /// Closed as `false_positive` or `duplicate`: no deadline runs, and it
    /// is neither open nor overdue anywhere.
    #[prost(bool, tag = "26")]
    pub dismissed: bool,
    /// Why it was closed: false_positive, duplicate, resolved.
    #[prost(string, tag = "27")]
    pub close_reason: String,
    /// What raised it: one entry per (detector, signature).
    #[prost(message, repeated, tag = "28")]
    pub evidence: Vec<EvidenceRec>,
    /// The incident this one was merged into (0: none).
    #[prost(uint64, tag = "29")]
    pub merged_into: u64,
    /// Every correlation key that points at this incident.
    #[prost(string, repeated, tag = "30")]
    pub keys: Vec<String>,
    /// Entities and evidence entries not kept past the caps.
    #[prost(uint64, tag = "31")]
    pub entities_omitted: u64,
    /// At an upstream collector: the province that reported it, and the
    /// incident as that province's collector last showed it. Such an
    /// incident is read-only here (`agency` is the province's code).
    #[prost(string, tag = "32")]
    pub province: String,
    #[prost(message, optional, tag = "33")]
    pub origin: Option<v1::Incident>,
}

/// Most attacker or victim entities, and evidence entries, an incident keeps.
pub const MAX_ENTITIES: usize = 64;

/// One signature or detector that contributed alerts to an incident.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EvidenceRec {
    #[prost(uint64, tag = "1")]
    pub signature_id: u64,
    #[prost(string, tag = "2")]
    pub signature: String,
    #[prost(string, tag = "3")]
    pub detector: String,
    #[prost(uint64, tag = "4")]
    pub count: u64,
    #[prost(int64, tag = "5")]
    pub first_us: i64,
    #[prost(int64, tag = "6")]
    pub last_us: i64,
}

/// One entry of the incident change feed: the incident as it was after
/// the change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IncidentChangeRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub change: String,
    #[prost(message, optional, tag = "3")]
    pub incident: Option<IncidentRec>,
}

/// A central policy version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PolicyRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub policy_version: u64,
    /// Agency code or `*`.
    #[prost(string, tag = "3")]
    pub scope: String,
    #[prost(string, tag = "4")]
    pub digest: String,
    #[prost(message, repeated, tag = "5")]
    pub files: Vec<v1::PolicyFile>,
    #[prost(int64, tag = "6")]
    pub created_us: i64,
    #[prost(string, tag = "7")]
    pub created_by: String,
}

/// Stored volume of one agency.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgencyStatsRec {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(uint64, tag = "2")]
    pub alerts: u64,
    #[prost(uint64, tag = "3")]
    pub alert_bytes: u64,
    #[prost(uint64, tag = "4")]
    pub events: u64,
    #[prost(uint64, tag = "5")]
    pub event_bytes: u64,
    #[prost(uint64, tag = "6")]
    pub deleted_by_retention: u64,
}

#[cfg(test)]
mod golden {
    //! Encoded samples of each record version (`collector/tests/golden/`):
    //! a newer collector must keep reading them. Regenerate only for a new
    //! version, with `CANHGAC_WRITE_GOLDEN=1 cargo test -p canhgac-collector golden`.

    use super::*;
    use prost::Message as _;

    fn samples() -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = BTreeMap::new();
        fields.insert("response.mobile".to_string(), "0912 345 678".to_string());
        let mut changed = BTreeMap::new();
        changed.insert("response".to_string(), 1_700_000_000_000_000);
        let mut milestones = BTreeMap::new();
        milestones.insert("detected".to_string(), 1_700_000_000_000_000);
        vec![
            (
                "agency_v1.bin",
                AgencyRec {
                    version: 1,
                    code: "SO-A".into(),
                    name: "Sở A".into(),
                    fields,
                    changed_us: changed,
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "agent_v1.bin",
                AgentRec {
                    version: 1,
                    agent_id: "a1".into(),
                    agency: "SO-A".into(),
                    systems: vec![3],
                    policy: Some(v1::PolicyStatus { version: 2, ..Default::default() }),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "system_v1.bin",
                SystemRec {
                    version: 1,
                    id: 3,
                    agency: "SO-A".into(),
                    name: "Cổng".into(),
                    level: 3,
                    state_secrets: true,
                    public_ips: vec!["198.51.100.10".into()],
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "incident_v1.bin",
                IncidentRec {
                    version: 1,
                    id: 7,
                    agency: "SO-A".into(),
                    system: 3,
                    category: "intrusion".into(),
                    state: "notified".into(),
                    alert_count: 6,
                    milestones_us: milestones,
                    history: vec![IncidentEventRec { action: "detected".into(), ..Default::default() }],
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "audit_v1.bin",
                AuditRec {
                    version: 1,
                    seq: 1,
                    operator: "admin".into(),
                    hash: "ab".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
            (
                "policy_v1.bin",
                PolicyRec { version: 1, policy_version: 2, scope: "*".into(), ..Default::default() }
                    .encode_to_vec(),
            ),
            (
                "operator_v1.bin",
                OperatorRec {
                    version: 1,
                    name: "op".into(),
                    role: "agency".into(),
                    agency: "SO-A".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ),
        ]
    }

    #[test]
    fn golden_records_stay_readable() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let write = std::env::var_os("CANHGAC_WRITE_GOLDEN").is_some();
        for (name, bytes) in samples() {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(stored, bytes, "{name}: the encoding of version 1 changed");
        }
        let a = AgencyRec::decode(std::fs::read(dir.join("agency_v1.bin")).unwrap().as_slice()).unwrap();
        assert_eq!(a.fields["response.mobile"], "0912 345 678");
        let i = IncidentRec::decode(std::fs::read(dir.join("incident_v1.bin")).unwrap().as_slice()).unwrap();
        assert_eq!((i.id, i.alert_count, i.state.as_str()), (7, 6, "notified"));
        let g = AgentRec::decode(std::fs::read(dir.join("agent_v1.bin")).unwrap().as_slice()).unwrap();
        assert_eq!(g.systems, vec![3]);
    }
}
