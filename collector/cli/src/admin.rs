//! `canhgac` administration commands: the registry (agencies, systems,
//! import and export), coverage, policy and operators. Incidents are in
//! `incidents.rs`, the audit log in `audit.rs`.

use std::{collections::HashMap, io::Write as _, path::PathBuf};

use canhgac_proto::{client::TlsClient, v1::*};
use clap::Subcommand;
use serde_json::{Value, json};

use canhgac_proto::profile::Profile;

use crate::{Command, Failure, connect, output, time_str};

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
    Import(crate::ImportArgs),
    /// Exports systems as CSV (default) or JSON (`--format json`) to standard output.
    Export(crate::ExportArgs),
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
        /// admin, analyst, agency or auditor; at a national collector also
        /// national (every province) or province (one province).
        #[arg(long)]
        role: String,
        /// The agency of an `agency` operator.
        #[arg(long, conflicts_with = "province")]
        agency: Option<String>,
        /// The province of a `province` operator.
        #[arg(long)]
        province: Option<String>,
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
    /// Sets the password NAME signs in to the console with, read from
    /// standard input (one line; at least 12 characters). An admin may set
    /// anyone's, every operator its own.
    Passwd { name: String },
}

use super::output::say;

pub(super) fn pairs(fields: &[String]) -> Result<HashMap<String, String>, Failure> {
    fields
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("`{f}` is not COLUMN=VALUE")))
        })
        .collect()
}

pub(super) fn ts(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref().map(|t| Value::from(time_str(t))).unwrap_or(Value::Null)
}

pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
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

pub async fn run(
    command: Command,
    client: &TlsClient,
    profile: &Profile,
    collector: Option<&str>,
) -> Result<(), Failure> {
    use crate::{AgencyCmd, AgentsCmd};
    let command = match command {
        Command::Audit(cmd) => return crate::audit::run(cmd, client, profile).await,
        other => other,
    };
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
        Command::Agency(AgencyCmd::Import(crate::ImportArgs { file, dry_run })) => {
            import(&mut c, "agencies", &file, dry_run).await?
        }
        Command::Agency(AgencyCmd::Export(crate::ExportArgs { agency })) => {
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
        Command::Incidents(super::incidents::IncidentsCmd::Tail { agency, from_cursor, json }) => {
            super::incidents::incident_tail(client, agency, from_cursor, json).await?;
        }
        Command::Incidents(cmd) => super::incidents::incident(&mut c, cmd).await?,
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
                    kind: canhgac_proto::files::policy_file_kind(&name).into(),
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
            output::list(
                json,
                &["VERSION", "SCOPE", "FILES", "CREATED", "BY"],
                &r.policies,
                |p| {
                    vec![
                        p.version.to_string(),
                        p.scope.clone(),
                        p.files.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", "),
                        p.created.as_ref().map(time_str).unwrap_or_default(),
                        p.created_by.clone(),
                    ]
                },
                |p| {
                    json!({"version": p.version, "scope": p.scope, "digest": p.digest, "created": ts(&p.created),
                        "created_by": p.created_by,
                        "files": p.files.iter().map(|f| json!({"name": f.name, "kind": f.kind, "sha256": f.sha256})).collect::<Vec<_>>()})
                    .to_string()
                },
            )?;
        }
        Command::Operator(OperatorCmd::Add { name, role, agency, province, out }) => {
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
                    agency: agency.or(province).unwrap_or_default(),
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
        Command::Operator(OperatorCmd::Passwd { name }) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::usage(format!("cannot read the password from standard input: {e}")))?;
            let password = line.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(Failure::usage("no password on standard input"));
            }
            let o =
                c.set_operator_password(SetOperatorPasswordRequest { name, password }).await?.into_inner();
            say(format!("console password set for operator {} ({})", o.name, o.role))?;
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
            output::list(
                json,
                &["NAME", "ROLE", "AGENCY", "CREATED BY", "STATE"],
                &r.operators,
                |o| {
                    let state = if o.revoked.is_some() {
                        format!("revoked by {}", o.revoked_by)
                    } else {
                        "valid".into()
                    };
                    vec![o.name.clone(), o.role.clone(), o.agency.clone(), o.created_by.clone(), state]
                },
                |o| {
                    json!({"name": o.name, "role": o.role, "agency": o.agency, "created": ts(&o.created), "created_by": o.created_by, "revoked": ts(&o.revoked), "revoked_by": o.revoked_by, "revoke_reason": o.revoke_reason}).to_string()
                },
            )?;
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
            output::list(
                json,
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
                &r.systems,
                |s| {
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
                },
                |s| system_json(s).to_string(),
            )?;
        }
        SystemCmd::Import(crate::ImportArgs { file, dry_run }) => {
            import(c, "systems", &file, dry_run).await?
        }
        SystemCmd::Export(crate::ExportArgs { agency }) => export(c, "systems", agency).await?,
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
        Some(
            f @ (super::output::Format::Table | super::output::Format::Html | super::output::Format::Pdf),
        ) => {
            return Err(Failure::usage(format!("import reads csv or json, not {f:?}").to_lowercase()));
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
        Some(
            f @ (super::output::Format::Table | super::output::Format::Html | super::output::Format::Pdf),
        ) => {
            return Err(Failure::usage(format!("export writes csv or json, not {f:?}").to_lowercase()));
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

fn coverage(r: &GetCoverageResponse, json: bool) -> Result<(), Failure> {
    let mut out = output::Lists::new(json);
    out.list(
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
        &r.agencies,
        |a| {
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
        },
        |a| {
            json!({
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
                "secret_scan_hosts": a.secret_scan_hosts, "secret_scan_last_completed": ts(&a.secret_scan_last_completed),
                "policy_version": r.policy_versions.get(&a.agency).copied().unwrap_or(0),
            })
            .to_string()
        },
    )?;
    if out.format() == output::ListFormat::Table {
        say(
            "layers (official letter 1552/2020): 1 on-site team named, 2 professional supervision provider,",
        )?;
        say("  3 independent inspection within 24 months, 4 connected to the national supervision system")?;
        say("incidents O/L/D: open, late (a deadline missed), dismissed (false positive or duplicate)")?;
    }
    out.list(
        &["AGENT", "AGENCY", "HOST", "STATE", "LAST SEEN", "SYSTEMS", "VERSION", "POLICY"],
        &r.agents,
        |g| {
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
        },
        |g| {
            json!({
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
            .to_string()
        },
    )
}
