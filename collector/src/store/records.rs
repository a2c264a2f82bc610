//! Persisted record types (protobuf encoding, hand-declared with prost).
//!
//! Every record has `version` as field 1 (currently 1). Fields are only ever
//! added, with new tags; a reader ignores tags it does not know, so older
//! data stays readable and newer data does not break an older collector.
//! `tests/golden/` holds encoded samples of each version.

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
}

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
    #[prost(string, tag = "9")]
    pub eve_json: String,
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
