//! Fuzz target bodies for what the collector accepts from the network,
//! shared by the libFuzzer targets in `fuzz/` (seeds in `fuzz/corpus/`):
//! telemetry from agents (and downstream collectors) and operator requests.
//! They call the same validation the services run, without a server or a
//! store: the batch check and record preparation of `Telemetry/Stream`, and
//! the request checks and parsers of the `Operator` RPCs (agency and system
//! fields, registry import, policy files and their rules, incident
//! workflow, page tokens, report and operator names). Each takes untrusted
//! bytes and must neither panic nor hang.

use std::{
    collections::{BTreeMap, HashMap},
    sync::OnceLock,
};

use canhgac_proto::v1;
use prost::Message as _;

use crate::{
    directory,
    rules::Regulation,
    service::{clean_text, operator, telemetry},
    store::{AgencyRec, AgentRec, IncidentRec, SystemRec},
};

fn regulation() -> &'static Regulation {
    static REG: OnceLock<Regulation> = OnceLock::new();
    REG.get_or_init(Regulation::embedded)
}

/// Limits of the default configuration's batches.
const MAX_BATCH_RECORDS: u32 = 1000;
const MAX_BATCH_BYTES: u32 = 4 << 20;

/// An agent's stream message as the collector handles it: a batch is
/// checked as a whole, then every record is prepared for storage as from
/// an agent and as from a downstream collector; a Hello's texts are
/// cleaned. The first byte says whether the batch limits are the default
/// ones or tiny.
pub fn telemetry(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(msg) = v1::AgentMessage::decode(rest) else { return };
    let received = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    match msg.body {
        Some(v1::agent_message::Body::Batch(batch)) => {
            let (records, bytes) =
                if first & 1 == 0 { (MAX_BATCH_RECORDS, MAX_BATCH_BYTES) } else { (4, 512) };
            if telemetry::check_batch(&batch, records, bytes).is_some() {
                return;
            }
            let agent = AgentRec {
                agent_id: "fuzz-agent".into(),
                agency: "SO-FUZZ".into(),
                hostname: "fuzz".into(),
                ..Default::default()
            };
            let downstream = AgentRec { downstream: true, agency: "HN".into(), ..agent.clone() };
            for r in &batch.records {
                let _ = telemetry::prepare(r, &agent, received, regulation());
                let _ = telemetry::prepare(r, &downstream, received, regulation());
            }
        }
        Some(v1::agent_message::Body::Hello(h)) => {
            let _ = clean_text(&h.agent_version, 64);
            if let Some(inv) = &h.inventory {
                let _ = clean_text(&inv.hostname, 255);
            }
        }
        Some(v1::agent_message::Body::PolicyApplied(p)) => {
            let _ = clean_text(&p.error, 500);
        }
        _ => {}
    }
}

/// An operator request: the first byte picks the RPC, the rest is its
/// protobuf request, checked as the RPC checks it before touching the
/// store.
pub fn operator(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    match first % 12 {
        0 => add_agency(rest),
        1 => update_agency(rest),
        2 => add_system(rest),
        3 => update_system(rest),
        4 => import_registry(rest),
        5 => push_policy(rest),
        6 => incident_action(rest),
        7 => update_incident(rest),
        8 => bulk_incidents(rest),
        9 => listings(rest),
        10 => reports(rest),
        _ => operators(rest),
    }
}

fn add_agency(data: &[u8]) {
    let Ok(r) = v1::AddAgencyRequest::decode(data) else { return };
    let _ = operator::new_agency(&r);
}

fn update_agency(data: &[u8]) {
    let Ok(r) = v1::UpdateAgencyRequest::decode(data) else { return };
    let mut rec = AgencyRec { code: r.code.clone(), name: "fuzz".into(), ..Default::default() };
    let set: BTreeMap<String, String> = r.set.into_iter().collect();
    for (k, v) in &set {
        let _ = directory::set_agency_field(&mut rec, k, v, 1);
    }
    if let Some(p) = set.get("parent") {
        let p = p.trim().to_string();
        let _ = directory::parent_cycle(&r.code, &|c: &str| (c == r.code).then(|| p.clone()));
    }
    let _ = directory::agency_row(&rec, regulation());
    let _ = directory::missing_contacts(&rec);
}

fn add_system(data: &[u8]) {
    let Ok(r) = v1::AddSystemRequest::decode(data) else { return };
    let mut rec =
        SystemRec { agency: r.agency.clone(), dossier_status: "draft".into(), ..Default::default() };
    let _ = directory::set_system_field(&mut rec, "name", &r.name);
    if let Ok(level) = directory::parse_level(&r.level.to_string()) {
        rec.level = level;
    }
    for (k, v) in &r.set {
        let _ = directory::set_system_field(&mut rec, k, v);
    }
    let _ = directory::validate_system(&rec);
    let _ = directory::system_problems(&rec);
    let _ = directory::system_row(
        &rec,
        &[],
        regulation(),
        directory::parse_date("2026-12-01").unwrap_or(time::Date::MIN),
    );
}

fn update_system(data: &[u8]) {
    let Ok(r) = v1::UpdateSystemRequest::decode(data) else { return };
    let mut rec = SystemRec {
        id: r.id,
        agency: "SO-FUZZ".into(),
        name: "fuzz".into(),
        level: 2,
        dossier_status: "draft".into(),
        ..Default::default()
    };
    for (k, v) in &r.set {
        let _ = directory::set_system_field(&mut rec, k, v);
    }
    let _ = directory::validate_system(&rec);
    let today = directory::parse_date("2026-12-01").unwrap_or(time::Date::MIN);
    let _ = directory::system_next_assessment(&rec, regulation(), today);
}

fn import_registry(data: &[u8]) {
    let Ok(r) = v1::ImportRegistryRequest::decode(data) else { return };
    let Ok(rows) = directory::parse_rows(&r.format, &r.content) else { return };
    let agencies: HashMap<String, AgencyRec> = [("SO-FUZZ", ""), ("HN", crate::store::PROVINCE)]
        .into_iter()
        .map(|(code, kind)| {
            (
                code.to_string(),
                AgencyRec { code: code.into(), name: code.into(), kind: kind.into(), ..Default::default() },
            )
        })
        .collect();
    let systems: HashMap<u64, SystemRec> = [(
        1,
        SystemRec { id: 1, agency: "SO-FUZZ".into(), name: "web".into(), level: 2, ..Default::default() },
    )]
    .into_iter()
    .collect();
    match r.kind.as_str() {
        "systems" => {
            let _ = directory::import_systems(&rows, &systems, &agencies, 1);
        }
        _ => {
            let _ = directory::import_agencies(&rows, &agencies, 1, "fuzz");
        }
    }
}

fn push_policy(data: &[u8]) {
    let Ok(mut r) = v1::PushPolicyRequest::decode(data) else { return };
    if crate::policy::validate(&mut r.files).is_err() {
        return;
    }
    let _ = crate::policy::check_rules(&r.files);
    let _ = crate::policy::digest(&r.files);
}

/// An incident in every workflow state, as incidents are when operators
/// act on them.
fn incidents_in_every_state() -> Vec<IncidentRec> {
    crate::incident::STATES
        .iter()
        .enumerate()
        .map(|(i, s)| IncidentRec {
            id: i as u64 + 1,
            agency: "SO-FUZZ".into(),
            state: (*s).into(),
            ..Default::default()
        })
        .collect()
}

fn incident_action(data: &[u8]) {
    let Ok(r) = v1::IncidentActionRequest::decode(data) else { return };
    let _ = clean_text(r.value.trim(), 128);
    let _ = clean_text(&r.value.replace('\n', " "), 5000);
    for mut inc in incidents_in_every_state() {
        let _ = crate::incident::transition(&mut inc, &r.value, &r.reason, "fuzz", &r.note, 1);
    }
}

fn update_incident(data: &[u8]) {
    let Ok(r) = v1::UpdateIncidentRequest::decode(data) else { return };
    let set: BTreeMap<String, String> = r.set.into_iter().collect();
    let mut inc = IncidentRec { id: r.id, agency: "SO-FUZZ".into(), ..Default::default() };
    let _ = crate::incident::apply_fields(&mut inc, &set, regulation());
}

fn bulk_incidents(data: &[u8]) {
    let Ok(r) = v1::BulkIncidentActionRequest::decode(data) else { return };
    let Ok(ids) = operator::distinct_ids(&r.ids, 1) else { return };
    let states = incidents_in_every_state();
    let mut incs: Vec<IncidentRec> =
        ids.iter().map(|id| IncidentRec { id: *id, ..states[*id as usize % states.len()].clone() }).collect();
    for inc in &mut incs {
        let _ = crate::incident::transition(inc, &r.value, &r.reason, "fuzz", &r.note, 1);
    }
    let _ = crate::incident::merge(&mut incs, "fuzz", &r.note, 2);
}

/// Page tokens and filters of the listings.
fn listings(data: &[u8]) {
    let Ok(r) = v1::ListAlertsRequest::decode(data) else { return };
    let _ = crate::store::PageKey::decode(&r.page_token).map(|k| k.encode());
    let _ = operator::alert_fields(&r, regulation());
    for prefix in ['s', 'i'] {
        let _ = operator::page_id(&r.page_token, prefix);
    }
}

fn reports(data: &[u8]) {
    let Ok(r) = v1::GetReportRequest::decode(data) else { return };
    let _ = crate::report::Kind::parse(&r.kind);
    let _ = crate::report::render::Format::parse(&r.format);
    let _ = crate::report::Lang::parse(&r.language);
    // a stored report's id comes in GetReportFileRequest.id, a string too
    if let Ok(s) = crate::report::schedule::Stored::parse(&r.kind) {
        let _ = (s.id(), s.file_name(), s.from_us(), s.to_us());
    }
}

fn operators(data: &[u8]) {
    let Ok(r) = v1::AddOperatorRequest::decode(data) else { return };
    let id = canhgac_proto::identity::Identity::Operator(r.name.clone());
    let _ = canhgac_proto::identity::Identity::from_uri(&id.uri());
    let _ = crate::auth::Role::parse(&r.role);
    let _ = directory::valid_agency_code(&r.agency);
    // a password arrives as SetOperatorPasswordRequest.password, a string
    let _ = crate::console::password::check(&r.csr_pem);
}

#[cfg(test)]
mod tests {
    /// The committed seeds of the collector's targets (written by
    /// `fuzz/make-corpus.py`) run through their bodies: the seeds decode,
    /// and nothing in them panics.
    #[test]
    fn fuzz_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (target, body) in
            [("collector_telemetry", super::telemetry as fn(&[u8])), ("operator", super::operator)]
        {
            let mut n = 0;
            for entry in std::fs::read_dir(root.join(target)).unwrap() {
                let input = std::fs::read(entry.unwrap().path()).unwrap();
                let (_, rest) = input.split_first().unwrap();
                assert!(
                    match target {
                        "operator" => !rest.is_empty(),
                        _ => <canhgac_proto::v1::AgentMessage as prost::Message>::decode(rest).is_ok(),
                    },
                    "{target}: a seed that does not decode"
                );
                body(&input);
                n += 1;
            }
            assert!(n >= 2, "{target}: {n} seeds");
        }
    }
}
