//! `canhgac` commands for supervision: registry, systems, incidents,
//! coverage, policy, operators and the audit log.

use std::{collections::HashMap, io::Write as _, path::PathBuf};

use canhgac_proto::{client::TlsClient, v1::*};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::{
    cli::{Command, Failure, connect, table, time_str},
    profile::Profile,
    store::AuditRec,
};

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Registers an information system; prints its id on the last line.
    Add {
        #[arg(long)]
        agency: String,
        #[arg(long)]
        name: String,
        /// Security level 1..5 (Decree 85/2016).
        #[arg(long)]
        level: String,
        /// The system processes state secrets (requires level 3 or higher).
        #[arg(long)]
        state_secrets: bool,
        /// Kind of system (portal, public services, email, ...).
        #[arg(long = "type")]
        kind: Option<String>,
        /// A public IP address of the system (repeatable).
        #[arg(long = "public-ip")]
        public_ips: Vec<String>,
        /// A domain of the system (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// An internal network of the system as a CIDR, e.g. 10.1.2.0/24
        /// (repeatable): network alerts whose victim is inside are filed
        /// against this system.
        #[arg(long = "network")]
        networks: Vec<String>,
    },
    /// Sets columns: `canhgac system set 3 dossier_status=approved decision_number=12/QĐ`.
    Set {
        id: u64,
        #[arg(required = true, value_name = "COLUMN=VALUE")]
        fields: Vec<String>,
    },
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Imports systems from CSV or JSON (all rows or none); rows with an id update.
    Import(crate::cli::ImportArgs),
    /// Exports systems as CSV (default) or JSON (`--format json`) to standard output.
    Export(crate::cli::ExportArgs),
}

#[derive(Subcommand, Debug)]
pub enum IncidentsCmd {
    /// Lists incidents, newest first.
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// Only incidents of this system id (0: unattributed ones).
        #[arg(long)]
        system: Option<u64>,
        /// Only this category (malware, c2, scanning, intrusion, ...).
        #[arg(long)]
        category: Option<String>,
        /// Only incidents with events at or after this time (RFC 3339 or a date).
        #[arg(long, value_parser = super::output::parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Only incidents with events before this time.
        #[arg(long, value_parser = super::output::parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Only incidents not closed.
        #[arg(long)]
        open: bool,
        /// Only incidents with a missed deadline.
        #[arg(long)]
        overdue: bool,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledges an incident (records who saw it first).
    Ack {
        id: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Assigns incidents: `canhgac incidents assign 3 4 5 nguyen.van.a`.
    Assign {
        #[arg(required = true, num_args = 2.., value_name = "ID... ASSIGNEE")]
        args: Vec<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    Note {
        id: u64,
        text: String,
    },
    /// Moves incidents: notified, initial_report, in_progress, closed
    /// (`canhgac incidents transition 3 4 closed --reason false_positive`);
    /// all or none.
    Transition {
        #[arg(required = true, num_args = 2.., value_name = "ID... STATE")]
        args: Vec<String>,
        /// Why it is closed: false_positive, duplicate (both dismiss: no
        /// deadline runs) or resolved. Required to close before in_progress.
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Merges incidents of one agency into the first id; the others close
    /// as its duplicates.
    Merge {
        #[arg(required = true, num_args = 2.., value_name = "ID")]
        ids: Vec<u64>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Sets report fields: description, actions_taken, cause, scope, remedy,
    /// consequences, assistance_needed, impacts, owner_cannot_handle.
    Set {
        id: u64,
        #[arg(required = true, value_name = "FIELD=VALUE")]
        fields: Vec<String>,
    },
    /// Prints the initial or completion report with the national form's fields.
    Report {
        id: u64,
        #[arg(long, default_value = "initial")]
        kind: String,
        #[arg(long)]
        json: bool,
    },
    /// Follows incident changes; resumes after disconnects from the last cursor.
    Tail {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        from_cursor: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Uploads a new policy version (files: *.rules rule files, *.toml
    /// detector settings, anything else an indicator list).
    Push {
        #[arg(long, conflicts_with = "all")]
        agency: Option<String>,
        #[arg(long)]
        all: bool,
        /// Push although the agents would skip some rules (listed).
        #[arg(long)]
        allow_skipped: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Issues an operator certificate with a role and writes a profile.
    Add {
        #[arg(long)]
        name: String,
        /// admin, analyst, agency or auditor.
        #[arg(long)]
        role: String,
        /// The agency of an `agency` operator.
        #[arg(long)]
        agency: Option<String>,
        /// Where to write the new profile (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revokes an operator's certificate (refused from now on, open
    /// subscriptions end); its name cannot be reused.
    Revoke {
        name: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Prints the audit log, one JSON object per line (an export to verify later).
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Checks the hash chain of the collector's log (or of an exported file);
    /// exits 1 naming the first bad entry.
    Verify {
        /// An export made with `canhgac audit list`.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

use super::output::say;

fn pairs(fields: &[String]) -> Result<HashMap<String, String>, Failure> {
    fields
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("`{f}` is not COLUMN=VALUE")))
        })
        .collect()
}

fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map(|t| Value::from(time_str(t))).unwrap_or(Value::Null)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
}

fn format_of(path: &std::path::Path, given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            "json".into()
        } else {
            "csv".into()
        }
    })
}

pub fn system_json(s: &System) -> Value {
    json!({
        "id": s.id, "agency": s.agency, "name": s.name, "type": s.r#type, "level": s.level,
        "dossier_status": s.dossier_status, "decision_number": s.decision_number,
        "decision_date": s.decision_date, "state_secrets": s.state_secrets,
        "public_ips": s.public_ips, "domains": s.domains, "networks": s.networks, "last_assessment": s.last_assessment,
        "next_assessment_due": s.next_assessment_due, "assessment_overdue": s.assessment_overdue,
        "agents": s.agents,
    })
}

pub fn incident_json(i: &Incident) -> Value {
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

fn incident_detail_json(i: &Incident, alerts: &[StoredAlert]) -> Value {
    let mut v = incident_json(i);
    v["deadlines"] = i
        .deadlines
        .iter()
        .map(|d| json!({"id": d.id, "description": d.description, "due": ts(&d.due), "met": ts(&d.met), "overdue": d.overdue}))
        .collect();
    v["history"] = i
        .history
        .iter()
        .map(|h| json!({"time": ts(&h.time), "actor": h.actor, "action": h.action, "from": h.from_state, "to": h.to_state, "text": h.text}))
        .collect();
    v["alerts"] = alerts.iter().map(|a| Value::from(a.cursor)).collect();
    v
}

const INCIDENT_HEADERS: &[&str] =
    &["ID", "AGENCY", "SYSTEM", "CATEGORY", "ATTACKER", "VICTIM", "STATE", "SEV", "ALERTS", "DEADLINE", ""];

/// A deadline relative to now: "in 4 d 23 h" / "overdue 2 h".
fn relative(t: &prost_types::Timestamp) -> String {
    super::output::relative(canhgac_proto::timefmt::from_timestamp(t), time::OffsetDateTime::now_utc())
}

fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() { "-".into() } else { v.join(", ") }
}

fn first_and_more(v: &[String]) -> String {
    match v {
        [] => "-".into(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn incident_row(i: &Incident) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.agency.clone(),
        if i.system == 0 { "unattributed".into() } else { format!("{} {}", i.system, i.system_name) },
        i.category.clone(),
        first_and_more(&i.attackers),
        first_and_more(&i.victims),
        if i.dismissed { format!("closed ({})", i.close_reason) } else { i.state.clone() },
        i.severity.to_string(),
        i.alert_count.to_string(),
        i.deadline.as_ref().map(relative).unwrap_or_else(|| "-".into()),
        if i.serious {
            "SERIOUS".into()
        } else if i.possibly_serious {
            "possibly".into()
        } else {
            String::new()
        },
    ]
}

/// Splits `ID... LAST` arguments.
fn ids_and_last(args: &[String], last: &str) -> Result<(Vec<u64>, String), Failure> {
    let Some((value, ids)) = args.split_last() else {
        return Err(Failure::usage(format!("expected ID... {last}")));
    };
    let ids = ids
        .iter()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| Failure::usage(format!("`{s}` is not an incident id (expected ID... {last})")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(Failure::usage(format!("expected at least one incident id before {last}")));
    }
    Ok((ids, value.clone()))
}

/// A refusal of `command`, naming the command.
fn command_error(command: &str, s: tonic::Status) -> Failure {
    Failure::from(s).context(command)
}

fn audit_json(e: &AuditEntry) -> Value {
    json!({
        // exact, in UTC: an export is evidence, and the hash covers time_us
        "seq": e.seq, "time_us": e.time_us,
        "time": canhgac_proto::timefmt::rfc3339(canhgac_proto::timefmt::from_micros(e.time_us)),
        "operator": e.operator, "role": e.role,
        "operator_agency": e.operator_agency, "action": e.action, "target": e.target,
        "outcome": e.outcome, "detail": e.detail, "prev_hash": e.prev_hash, "hash": e.hash,
    })
}

/// `audit verify --file`: offline against the signed head and the
/// profile's CA, then, when the collector answers, against its chain.
async fn verify_export_file(
    f: &std::path::Path,
    client: &TlsClient,
    profile: &Profile,
) -> Result<(), Failure> {
    let text = String::from_utf8(read_file(f)?).map_err(|_| Failure::usage("the export is not UTF-8"))?;
    let (entries, head) = parse_export(&text).map_err(|e| Failure::runtime(format!("audit export: {e}")))?;
    let n = crate::audit::verify_export(&entries, head.as_ref(), &profile.ca)
        .map_err(|e| Failure::runtime(format!("audit export broken: {e}")))?;
    let head = head.unwrap_or_default();
    let offline = format!(
        "audit export intact: {n} entries, ending at the head the collector signed (entry {}, {})",
        head.seq, head.hash
    );
    let mut c = match connect(client).await {
        Ok(c) => c,
        Err(e) => {
            say(offline)?;
            return say(format!("not compared with the collector's chain: {}", e.message));
        }
    };
    let theirs = c
        .list_audit(ListAuditRequest { after_seq: head.seq.saturating_sub(1), limit: 1 })
        .await
        .map_err(|e| Failure::from(e).context("audit verify (comparing with the collector)"))?
        .into_inner();
    match theirs.entries.first() {
        Some(e) if e.seq == head.seq && e.hash == head.hash => {}
        Some(e) if e.seq == head.seq => {
            return Err(Failure::runtime(format!(
                "audit export broken: entry {} differs from the collector's chain (hash {} there)",
                e.seq, e.hash
            )));
        }
        _ => {
            return Err(Failure::runtime(format!(
                "audit export broken: the collector has no entry {} (another collector's export?)",
                head.seq
            )));
        }
    }
    say(offline)?;
    say("it matches the collector's chain")
}

/// Reads an export: entry lines, then the signed head line. Every field
/// shown must agree with what the hash covers (`time` with `time_us`).
fn parse_export(text: &str) -> Result<(Vec<AuditRec>, Option<crate::audit::SignedHead>), String> {
    let mut entries = Vec::new();
    let mut head = None;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 1;
        let j: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
        if head.is_some() {
            return Err(format!("line {n}: entries after the signed head"));
        }
        if j["type"] == "head" {
            let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
            head = Some(crate::audit::SignedHead {
                seq: j["seq"].as_u64().ok_or_else(|| format!("line {n}: head without seq"))?,
                hash: s("hash"),
                signed_at_us: j["signed_at_us"].as_i64().unwrap_or(0),
                signature: s("signature"),
                certificate_pem: s("certificate_pem"),
            });
            continue;
        }
        let rec = audit_rec(&j);
        let shown = j["time"].as_str().unwrap_or_default();
        let covered = canhgac_proto::timefmt::rfc3339(canhgac_proto::timefmt::from_micros(rec.time_us));
        let same = canhgac_proto::timefmt::parse_rfc3339(shown)
            .map(|t| canhgac_proto::timefmt::micros(t) == rec.time_us)
            .unwrap_or(false);
        if !same {
            return Err(format!(
                "line {n} (entry {}): `time` {shown} is not the time the hash covers ({covered}): edited",
                rec.seq
            ));
        }
        entries.push(rec);
    }
    Ok((entries, head))
}

fn audit_rec(v: &Value) -> AuditRec {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    AuditRec {
        seq: v["seq"].as_u64().unwrap_or(0),
        time_us: v["time_us"].as_i64().unwrap_or(0),
        operator: s("operator"),
        role: s("role"),
        operator_agency: s("operator_agency"),
        action: s("action"),
        target: s("target"),
        outcome: s("outcome"),
        detail: s("detail"),
        prev_hash: s("prev_hash"),
        hash: s("hash"),
        ..Default::default()
    }
}

pub async fn run(
    command: Command,
    client: &TlsClient,
    profile: &Profile,
    collector: Option<&str>,
) -> Result<(), Failure> {
    use crate::cli::{AgencyCmd, AgentsCmd};
    if let Command::Audit(AuditCmd::Verify { file: Some(f) }) = &command {
        return verify_export_file(f, client, profile).await;
    }
    let mut c = connect(client).await?;
    match command {
        Command::Agency(AgencyCmd::Show { code, json }) => {
            let a = c.get_agency(GetAgencyRequest { code }).await?.into_inner();
            if json {
                say(json!({"code": a.code, "name": a.name, "fields": a.fields}).to_string())?;
            } else {
                say(format!("{}  {}", a.code, a.name))?;
                let mut keys: Vec<_> = a.fields.iter().collect();
                keys.sort();
                for (k, v) in keys {
                    say(format!("  {k}: {v}"))?;
                }
            }
        }
        Command::Agency(AgencyCmd::Set { code, fields }) => {
            let a = c.update_agency(UpdateAgencyRequest { code, set: pairs(&fields)? }).await?.into_inner();
            say(format!("updated agency {}", a.code))?;
        }
        Command::Agency(AgencyCmd::Import(crate::cli::ImportArgs { file, dry_run })) => {
            import(&mut c, "agencies", &file, dry_run).await?
        }
        Command::Agency(AgencyCmd::Export(crate::cli::ExportArgs { agency })) => {
            export(&mut c, "agencies", agency).await?
        }
        Command::Agents(AgentsCmd::Link { agent_id, systems, unlink }) => {
            let a =
                c.link_agent(LinkAgentRequest { agent_id, system_ids: systems, unlink }).await?.into_inner();
            say(format!(
                "agent {} watches system(s): {}",
                a.agent_id,
                if a.systems.is_empty() {
                    "none".into()
                } else {
                    a.systems.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                }
            ))?;
        }
        Command::System(cmd) => system(&mut c, cmd).await?,
        Command::Incidents(IncidentsCmd::Tail { agency, from_cursor, json }) => {
            incident_tail(client, agency, from_cursor, json).await?;
        }
        Command::Incidents(cmd) => incident(&mut c, cmd).await?,
        Command::Coverage { agency, json } => {
            let r =
                c.get_coverage(GetCoverageRequest { agency: agency.unwrap_or_default() }).await?.into_inner();
            coverage(&r, json)?;
        }
        Command::Policy(PolicyCmd::Push { agency, all, allow_skipped, files }) => {
            if agency.is_none() && !all {
                return Err(Failure::usage("give --agency CODE or --all"));
            }
            let mut pf = Vec::new();
            for f in &files {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                pf.push(PolicyFile {
                    kind: crate::policy::kind_of(&name).into(),
                    name,
                    content: read_file(f)?,
                    sha256: String::new(),
                });
            }
            let p = c
                .push_policy(PushPolicyRequest {
                    agency: agency.unwrap_or_default(),
                    all,
                    files: pf,
                    allow_skipped,
                })
                .await
                .map_err(|e| Failure::from(e).context("policy push"))?
                .into_inner();
            for s in &p.skipped_rules {
                eprintln!("canhgac: skipped by the agents: {s}");
            }
            say(format!(
                "policy version {} for {} ({} file(s), digest {}); sent to {} connected agent(s)",
                p.version,
                if p.scope == "*" { "all agencies".to_string() } else { format!("agency {}", p.scope) },
                p.files.len(),
                &p.digest[..12.min(p.digest.len())],
                p.delivered_to
            ))?;
            say(p.version.to_string())?;
        }
        Command::Policy(PolicyCmd::List { agency, json }) => {
            let r = c
                .list_policies(ListPoliciesRequest { agency: agency.unwrap_or_default() })
                .await?
                .into_inner();
            if json {
                for p in &r.policies {
                    say(json!({"version": p.version, "scope": p.scope, "digest": p.digest, "created": ts(&p.created),
                        "created_by": p.created_by,
                        "files": p.files.iter().map(|f| json!({"name": f.name, "kind": f.kind, "sha256": f.sha256})).collect::<Vec<_>>()})
                    .to_string())?;
                }
            } else {
                let rows = r
                    .policies
                    .iter()
                    .map(|p| {
                        vec![
                            p.version.to_string(),
                            p.scope.clone(),
                            p.files.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", "),
                            p.created.as_ref().map(time_str).unwrap_or_default(),
                            p.created_by.clone(),
                        ]
                    })
                    .collect();
                say(table(&["VERSION", "SCOPE", "FILES", "CREATED", "BY"], rows))?;
            }
        }
        Command::Operator(OperatorCmd::Add { name, role, agency, out }) => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| Failure::runtime(format!("cannot create a key: {e}")))?;
            let csr = rcgen::CertificateParams::default()
                .serialize_request(&key)
                .and_then(|r| r.pem())
                .map_err(|e| Failure::runtime(format!("cannot create a request: {e}")))?;
            let r = c
                .add_operator(AddOperatorRequest {
                    name: name.clone(),
                    role: role.clone(),
                    agency: agency.unwrap_or_default(),
                    csr_pem: csr,
                })
                .await?
                .into_inner();
            let p = Profile {
                version: 1,
                collector: collector.map(String::from).unwrap_or_else(|| profile.collector.clone()),
                operator: name.clone(),
                ca: r.ca_pem,
                certificate: r.certificate_pem,
                private_key: key.serialize_pem(),
                display: profile.display.clone(),
            };
            p.write(&out).map_err(|e| Failure::runtime(e.to_string()))?;
            say(format!("operator {name} (role {role}) written to {}", out.display()))?;
        }
        Command::Operator(OperatorCmd::Revoke { name, reason }) => {
            let o = c.revoke_operator(RevokeOperatorRequest { name, reason }).await?.into_inner();
            say(format!(
                "revoked operator {} ({}) at {}",
                o.name,
                o.role,
                ts(&o.revoked).as_str().unwrap_or("?")
            ))?;
        }
        Command::Operator(OperatorCmd::List { json }) => {
            let r = c.list_operators(ListOperatorsRequest {}).await?.into_inner();
            if json {
                for o in &r.operators {
                    say(json!({"name": o.name, "role": o.role, "agency": o.agency, "created": ts(&o.created), "created_by": o.created_by, "revoked": ts(&o.revoked), "revoked_by": o.revoked_by, "revoke_reason": o.revoke_reason}).to_string())?;
                }
            } else {
                let rows = r
                    .operators
                    .iter()
                    .map(|o| {
                        let state = if o.revoked.is_some() {
                            format!("revoked by {}", o.revoked_by)
                        } else {
                            "valid".into()
                        };
                        vec![o.name.clone(), o.role.clone(), o.agency.clone(), o.created_by.clone(), state]
                    })
                    .collect();
                say(table(&["NAME", "ROLE", "AGENCY", "CREATED BY", "STATE"], rows))?;
            }
        }
        Command::Audit(AuditCmd::List { after }) => {
            let mut after = after;
            let mut head = None;
            loop {
                let r = c.list_audit(ListAuditRequest { after_seq: after, limit: 5000 }).await?.into_inner();
                let Some(last) = r.entries.last().map(|e| e.seq) else { break };
                for e in &r.entries {
                    say(audit_json(e).to_string())?;
                }
                head = r.head;
                after = last;
                // Each call is itself audited: stop at a short page, or the
                // listing would chase its own entries.
                if r.entries.len() < 5000 {
                    break;
                }
            }
            // the signed head closes the export (`audit verify --file`)
            if let Some(h) = head {
                say(json!({
                    "type": "head", "seq": h.seq, "hash": h.hash, "signed_at_us": h.signed_at_us,
                    "signature": h.signature, "certificate_pem": h.certificate_pem,
                })
                .to_string())?;
            }
        }
        Command::Audit(AuditCmd::Verify { file: None }) => {
            let mut entries: Vec<AuditRec> = Vec::new();
            let mut after = 0;
            let mut head = None;
            loop {
                let r = c.list_audit(ListAuditRequest { after_seq: after, limit: 5000 }).await?.into_inner();
                let Some(last) = r.entries.last().map(|e| e.seq) else { break };
                entries.extend(r.entries.iter().map(|e| audit_rec(&audit_json(e))));
                head = r.head;
                after = last;
                if r.entries.len() < 5000 {
                    break;
                }
            }
            let head = head.map(|h| crate::audit::SignedHead {
                seq: h.seq,
                hash: h.hash,
                signed_at_us: h.signed_at_us,
                signature: h.signature,
                certificate_pem: h.certificate_pem,
            });
            if let Err(e) = crate::audit::verify_export(&entries, head.as_ref(), &profile.ca) {
                return Err(Failure::runtime(format!("audit log broken: {e}")));
            }
            match crate::audit::verify(&entries) {
                Ok(n) => say(format!(
                    "audit log intact: {n} entries, head {}",
                    entries.last().map(|e| e.hash.as_str()).unwrap_or("-")
                ))?,
                Err(e) => return Err(Failure::runtime(format!("audit log broken: {e}"))),
            }
        }
        other => return Err(Failure::usage(format!("unsupported command {other:?}"))),
    }
    Ok(())
}

async fn system(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    cmd: SystemCmd,
) -> Result<(), Failure> {
    match cmd {
        SystemCmd::Add { agency, name, level, state_secrets, kind, public_ips, domains, networks } => {
            let level: u32 = level
                .trim()
                .parse()
                .ok()
                .filter(|l| (1..=5).contains(l))
                .ok_or_else(|| Failure::usage(format!("invalid security level `{level}` (1 to 5)")))?;
            let mut set = HashMap::new();
            if let Some(k) = kind {
                set.insert("type".to_string(), k);
            }
            if !public_ips.is_empty() {
                set.insert("public_ips".to_string(), public_ips.join(";"));
            }
            if !domains.is_empty() {
                set.insert("domains".to_string(), domains.join(";"));
            }
            if !networks.is_empty() {
                set.insert("networks".to_string(), networks.join(";"));
            }
            let s = c
                .add_system(AddSystemRequest { agency, name, level, state_secrets, set })
                .await?
                .into_inner();
            say(format!("added system {} of agency {} (level {}); id:", s.name, s.agency, s.level))?;
            say(s.id.to_string())?;
        }
        SystemCmd::Set { id, fields } => {
            let s = c.update_system(UpdateSystemRequest { id, set: pairs(&fields)? }).await?.into_inner();
            say(format!("updated system {}", s.id))?;
        }
        SystemCmd::Show { id, json } => {
            let s = c.get_system(GetSystemRequest { id }).await?.into_inner();
            let v = system_json(&s);
            if json {
                say(v.to_string())?;
            } else if let Some(m) = v.as_object() {
                for (k, x) in m {
                    say(format!("{k}: {}", x.as_str().map(String::from).unwrap_or_else(|| x.to_string())))?;
                }
            }
        }
        SystemCmd::List { agency, json } => {
            let r = c
                .list_systems(ListSystemsRequest { agency: agency.unwrap_or_default(), ..Default::default() })
                .await?
                .into_inner();
            if json {
                for s in &r.systems {
                    say(system_json(s).to_string())?;
                }
            } else {
                let rows = r
                    .systems
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.agency.clone(),
                            s.name.clone(),
                            s.level.to_string(),
                            s.dossier_status.clone(),
                            if s.state_secrets { "yes".into() } else { String::new() },
                            s.public_ips.join(" "),
                            format!(
                                "{}{}",
                                s.next_assessment_due,
                                if s.assessment_overdue { " OVERDUE" } else { "" }
                            ),
                            s.agents.len().to_string(),
                        ]
                    })
                    .collect();
                say(table(
                    &[
                        "ID",
                        "AGENCY",
                        "NAME",
                        "LEVEL",
                        "DOSSIER",
                        "SECRETS",
                        "PUBLIC IPS",
                        "NEXT ASSESSMENT",
                        "AGENTS",
                    ],
                    rows,
                ))?;
            }
        }
        SystemCmd::Import(crate::cli::ImportArgs { file, dry_run }) => {
            import(c, "systems", &file, dry_run).await?
        }
        SystemCmd::Export(crate::cli::ExportArgs { agency }) => export(c, "systems", agency).await?,
    }
    Ok(())
}

/// `agency import` / `system import`: all rows or none.
async fn import(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    kind: &str,
    file: &std::path::Path,
    dry_run: bool,
) -> Result<(), Failure> {
    let format = match super::output::get().given {
        Some(super::output::Format::Json) => "json".to_string(),
        Some(super::output::Format::Csv) => "csv".to_string(),
        Some(super::output::Format::Table) => {
            return Err(Failure::usage("import reads csv or json (`--format table` is for lists)"));
        }
        None => format_of(file, None),
    };
    let content = read_file(file)?;
    let r = c
        .import_registry(ImportRegistryRequest { kind: kind.into(), format, content, dry_run })
        .await?
        .into_inner();
    let dry = if dry_run { "(dry run) " } else { "" };
    say(format!("{dry}{kind}: {} created, {} updated", r.created, r.updated))
}

/// `agency export` / `system export` to standard output.
async fn export(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    kind: &str,
    agency: Option<String>,
) -> Result<(), Failure> {
    let format = match super::output::get().given {
        Some(super::output::Format::Json) => "json",
        None | Some(super::output::Format::Csv) => "csv",
        Some(super::output::Format::Table) => {
            return Err(Failure::usage("export writes csv or json (`--format table` is for lists)"));
        }
    }
    .to_string();
    let r = c
        .export_registry(ExportRegistryRequest {
            kind: kind.into(),
            format,
            agency: agency.unwrap_or_default(),
        })
        .await?
        .into_inner();
    std::io::stdout().lock().write_all(&r.content).map_err(super::output::write_failure)
}

async fn incident(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    cmd: IncidentsCmd,
) -> Result<(), Failure> {
    let action = |id: u64, value: String, note: String| IncidentActionRequest {
        id,
        value,
        note,
        reason: String::new(),
    };
    let done = |i: Incident, what: &str| say(format!("incident {} {what} (state {})", i.id, i.state));
    match cmd {
        IncidentsCmd::List { agency, state, system, category, since, until, open, overdue, limit, json } => {
            let json = super::output::json(json);
            let mut page_token = String::new();
            let mut all = Vec::new();
            while all.len() < limit {
                let r = c
                    .list_incidents(ListIncidentsRequest {
                        agency: agency.clone().unwrap_or_default(),
                        state: state.clone().unwrap_or_default(),
                        open_only: open,
                        overdue_only: overdue,
                        limit: (limit - all.len()).min(1000) as u32,
                        page_token: page_token.clone(),
                        system: system.unwrap_or(0),
                        unattributed: system == Some(0),
                        category: category.clone().unwrap_or_default(),
                        since: since.map(canhgac_proto::timefmt::to_timestamp),
                        until: until.map(canhgac_proto::timefmt::to_timestamp),
                    })
                    .await?
                    .into_inner();
                let empty = r.incidents.is_empty();
                all.extend(r.incidents);
                if r.next_page_token.is_empty() || empty {
                    break;
                }
                page_token = r.next_page_token;
            }
            if json {
                for i in &all {
                    say(incident_json(i).to_string())?;
                }
            } else {
                say(table(INCIDENT_HEADERS, all.iter().map(incident_row).collect()))?;
            }
        }
        IncidentsCmd::Show { id, json } => {
            let d = c.get_incident(GetIncidentRequest { id, alert_limit: 1000 }).await?.into_inner();
            let i = d.incident.unwrap_or_default();
            if super::output::json(json) {
                say(incident_detail_json(&i, &d.alerts).to_string())?;
            } else {
                say(table(INCIDENT_HEADERS, vec![incident_row(&i)]))?;
                say(format!("category: {}", i.category_name))?;
                say(format!(
                    "system: {}",
                    if i.system == 0 {
                        "unattributed (no registered system matches the evidence)".to_string()
                    } else {
                        format!("{} {} (level {})", i.system, i.system_name, i.system_level)
                    }
                ))?;
                say(format!("attacker: {}", list_or_dash(&i.attackers)))?;
                say(format!("victim: {}", list_or_dash(&i.victims)))?;
                if i.dismissed {
                    say(format!("dismissed: {}", i.close_reason))?;
                }
                if i.merged_into != 0 {
                    say(format!("merged into incident {}", i.merged_into))?;
                }
                for e in &i.evidence {
                    say(format!(
                        "evidence: [{}] {} {} × {} ({} – {})",
                        e.detector,
                        e.signature_id,
                        e.signature,
                        e.count,
                        e.first_seen.as_ref().map(time_str).unwrap_or_default(),
                        e.last_seen.as_ref().map(time_str).unwrap_or_default()
                    ))?;
                }
                if !i.serious_reason.is_empty() {
                    say(format!("serious: {} ({})", i.serious, i.serious_reason))?;
                }
                for dl in &i.deadlines {
                    say(format!(
                        "deadline {}: {} due {}{}",
                        dl.id,
                        dl.description,
                        dl.due
                            .as_ref()
                            .map(|d| format!("{} ({})", time_str(d), relative(d)))
                            .unwrap_or_default(),
                        match (&dl.met, dl.overdue) {
                            (Some(m), _) => format!(", met {}", time_str(m)),
                            (None, true) => ", OVERDUE".into(),
                            (None, false) => String::new(),
                        }
                    ))?;
                }
                for h in &i.history {
                    let t = h.time.as_ref().map(time_str).unwrap_or_default();
                    let change = if h.to_state.is_empty() {
                        String::new()
                    } else {
                        format!(" {} → {}", h.from_state, h.to_state)
                    };
                    say(format!("{t}  {}  {}{change}  {}", h.actor, h.action, h.text))?;
                }
                say(format!("alerts ({}):", d.alerts.len()))?;
                for a in &d.alerts {
                    say(format!("  {}", crate::cli::alert_row(a).join("  ")))?;
                }
            }
        }
        IncidentsCmd::Ack { id, note } => {
            done(c.ack_incident(action(id, String::new(), note)).await?.into_inner(), "acknowledged")?
        }
        IncidentsCmd::Assign { args, note } => {
            let (ids, assignee) = ids_and_last(&args, "ASSIGNEE")?;
            let r = c
                .bulk_incident_action(BulkIncidentActionRequest {
                    ids,
                    action: "assign".into(),
                    value: assignee,
                    reason: String::new(),
                    note,
                })
                .await
                .map_err(|e| command_error("incidents assign", e))?
                .into_inner();
            for i in r.incidents {
                done(i, "assigned")?;
            }
        }
        IncidentsCmd::Note { id, text } => {
            done(c.add_incident_note(action(id, text, String::new())).await?.into_inner(), "noted")?
        }
        IncidentsCmd::Transition { args, reason, note } => {
            let (ids, state) = ids_and_last(&args, "STATE")?;
            let r = c
                .bulk_incident_action(BulkIncidentActionRequest {
                    ids,
                    action: "transition".into(),
                    value: state,
                    reason,
                    note,
                })
                .await
                .map_err(|e| command_error("incidents transition", e))?
                .into_inner();
            for i in r.incidents {
                let what =
                    if i.dismissed { format!("dismissed ({})", i.close_reason) } else { "moved".into() };
                done(i, &what)?;
            }
        }
        IncidentsCmd::Merge { ids, note } => {
            let i = c
                .merge_incidents(MergeIncidentsRequest { ids: ids.clone(), note })
                .await
                .map_err(|e| command_error("incidents merge", e))?
                .into_inner();
            say(format!(
                "incidents {} merged into incident {} ({} alerts)",
                ids[1..].iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                i.id,
                i.alert_count
            ))?;
        }
        IncidentsCmd::Set { id, fields } => done(
            c.update_incident(UpdateIncidentRequest { id, set: pairs(&fields)? }).await?.into_inner(),
            "updated",
        )?,
        IncidentsCmd::Report { id, kind, json } => {
            let r = c.incident_report(IncidentReportRequest { id, kind }).await?.into_inner();
            say(if super::output::json(json) { r.json } else { r.text })?;
        }
        IncidentsCmd::Tail { .. } => {}
    }
    Ok(())
}

/// Follows incident changes; on a broken stream reconnects after the last
/// cursor printed.
async fn incident_tail(
    client: &TlsClient,
    agency: Option<String>,
    from_cursor: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let cursor = std::cell::Cell::new(from_cursor);
    let (cursor, agency) = (&cursor, &agency);
    crate::cli::follow("incident", move || async move {
        let mut c = connect(client).await?;
        let mut stream = c
            .subscribe_incidents(SubscribeIncidentsRequest {
                after_cursor: cursor.get(),
                agency: agency.clone().unwrap_or_default(),
            })
            .await?
            .into_inner();
        loop {
            let ch = tokio::select! {
                m = stream.message() => match m? { Some(ch) => ch, None => break },
                _ = super::output::stdout_closed() => return Err(Failure::closed()),
            };
            let i = ch.incident.clone().unwrap_or_default();
            if json {
                let mut v = incident_json(&i);
                v["cursor"] = json!(ch.cursor);
                v["change"] = json!(ch.change);
                say(v.to_string())?;
            } else {
                say(format!("{}  {}  {}", ch.cursor, ch.change, incident_row(&i).join("  ")))?;
            }
            cursor.set(Some(ch.cursor));
        }
        Ok(())
    })
    .await
}

fn coverage(r: &GetCoverageResponse, json: bool) -> Result<(), Failure> {
    if json {
        for a in &r.agencies {
            say(json!({
                "type": "agency", "agency": a.agency, "name": a.name, "systems": a.systems,
                "systems_supervised": a.systems_supervised, "systems_unsupervised": a.systems_unsupervised,
                "systems_without_approved_level": a.systems_without_approved_level,
                "systems_assessment_overdue": a.systems_assessment_overdue,
                "agency_assessment_overdue": a.agency_assessment_overdue,
                "missing_contacts": a.missing_contacts,
                "layers": a.layers.iter().map(|l| json!({"name": l.name, "ok": l.ok, "detail": l.detail})).collect::<Vec<_>>(),
                "agents": a.agents, "agents_online": a.agents_online, "stored_alerts": a.stored_alerts,
                "stored_bytes": a.stored_bytes, "retention_days": a.retention_days,
                "open_incidents": a.open_incidents, "overdue_incidents": a.overdue_incidents,
                "dismissed_incidents": a.dismissed_incidents,
                "policy_version": r.policy_versions.get(&a.agency).copied().unwrap_or(0),
            })
            .to_string())?;
        }
        for g in &r.agents {
            say(json!({
                "type": "agent", "agent_id": g.agent_id, "agency": g.agency, "hostname": g.hostname,
                "online": g.online, "silent": g.silent, "last_seen": ts(&g.last_seen), "systems": g.systems,
                "agent_version": g.agent_version,
                "policy_version": g.policy.as_ref().map(|p| p.version).unwrap_or(0),
                "policy_error": g.policy.as_ref().map(|p| p.error.clone()).unwrap_or_default(),
                "counters": g.counters.as_ref().map(|c| json!({"packets_captured": c.packets_captured,
                    "packets_dropped": c.packets_dropped_kernel + c.packets_dropped_user,
                    "records_produced": c.records_produced, "records_acked": c.records_acked,
                    "spool_records": c.spool_records, "spool_bytes": c.spool_bytes, "ioc_entries": c.ioc_entries})),
            })
            .to_string())?;
        }
        return Ok(());
    }
    let rows = r
        .agencies
        .iter()
        .map(|a| {
            let layer = |n: &str| {
                a.layers.iter().find(|l| l.name == n).map(|l| if l.ok { "yes" } else { "NO" }).unwrap_or("-")
            };
            vec![
                a.agency.clone(),
                format!("{}/{}", a.systems_supervised, a.systems),
                a.systems_without_approved_level.len().to_string(),
                (a.systems_assessment_overdue.len() + usize::from(a.agency_assessment_overdue)).to_string(),
                if a.missing_contacts.is_empty() { "-".into() } else { a.missing_contacts.join(",") },
                format!(
                    "{} {} {} {}",
                    layer("on_site"),
                    layer("supervision_provider"),
                    layer("independent_inspection"),
                    layer("upstream")
                ),
                format!("{}/{}", a.agents_online, a.agents),
                format!("{}/{}/{}", a.open_incidents, a.overdue_incidents, a.dismissed_incidents),
                format!("{} ({} d)", bytesize::ByteSize(a.stored_bytes), a.retention_days),
            ]
        })
        .collect();
    say(table(
        &[
            "AGENCY",
            "SUPERVISED",
            "NO LEVEL",
            "ASSESS DUE",
            "MISSING CONTACTS",
            "LAYERS 1/2/3/4",
            "AGENTS ON",
            "INCIDENTS O/L/D",
            "STORED (KEEP)",
        ],
        rows,
    ))?;
    if !super::output::json(false) && super::output::get().format == super::output::Format::Table {
        say(
            "layers (official letter 1552/2020): 1 on-site team named, 2 professional supervision provider,",
        )?;
        say("  3 independent inspection within 24 months, 4 connected to the national supervision system")?;
        say("incidents O/L/D: open, late (a deadline missed), dismissed (false positive or duplicate)")?;
    }
    let rows = r
        .agents
        .iter()
        .map(|g| {
            vec![
                g.agent_id.clone(),
                g.agency.clone(),
                g.hostname.clone(),
                if g.online { "online".into() } else { "SILENT".into() },
                g.last_seen.as_ref().map(time_str).unwrap_or_else(|| "-".into()),
                g.systems.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
                g.agent_version.clone(),
                g.policy.as_ref().map(|p| p.version.to_string()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    say(table(&["AGENT", "AGENCY", "HOST", "STATE", "LAST SEEN", "SYSTEMS", "VERSION", "POLICY"], rows))?;
    Ok(())
}
