//! The `canhgac` operator command line.
//!
//! Output: human tables by default; with `--json`, one JSON object per line
//! (alerts are printed as their EVE record, so `jq` pipelines work).
//! Exit codes: 0 success, 1 the collector refused or could not be reached,
//! 2 bad usage or profile.

#![recursion_limit = "256"]

use std::{io::Write as _, path::PathBuf, time::Duration};

use canhgac_proto::{
    client::{TlsClient, error_chain},
    timefmt,
    v1::{
        AddAgencyRequest, AgentInfo, CreateEnrollmentTokenRequest, ListAgenciesRequest, ListAgentsRequest,
        ListAlertsRequest, RevokeAgentRequest, StoredAlert, SubscribeAlertsRequest,
        operator_client::OperatorClient,
    },
};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use tonic::transport::Channel;

use canhgac_proto::profile::Profile;

pub mod admin;
pub mod audit;
pub mod incidents;
pub mod output;
pub mod report;

#[derive(Parser, Debug)]
#[command(name = "canhgac", version, about = "canhgac operator command line")]
pub struct Cli {
    /// Operator profile (written by `canhgac-collector init` or `operator add`).
    #[arg(long, env = "CANHGAC_PROFILE", global = true)]
    pub profile: Option<PathBuf>,
    /// Collector address, overriding the profile's (https://HOST:PORT).
    #[arg(long, env = "CANHGAC_COLLECTOR", global = true)]
    pub collector: Option<String>,
    /// Time zone of the times shown and of times given without an offset
    /// (default: the profile's `display.timezone`, else +07:00).
    #[arg(long, env = "CANHGAC_TIMEZONE", global = true, value_parser = output::parse_offset)]
    pub timezone: Option<time::UtcOffset>,
    /// Show times in UTC.
    #[arg(long, global = true, conflicts_with = "timezone")]
    pub utc: bool,
    /// Lists as a table (the default, cut to 120 columns), JSON lines or
    /// CSV; imports and exports as CSV or JSON; reports as html (the
    /// default), pdf, csv or json.
    #[arg(long, global = true, value_enum)]
    pub format: Option<output::Format>,
    /// CSV for spreadsheets: with a UTF-8 byte-order mark (implies --format csv).
    #[arg(long, global = true)]
    pub excel: bool,
    /// Tables at full width (no cut cells).
    #[arg(long, global = true)]
    pub wide: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Agencies (sở, ban, ngành, UBND) supervised by this collector.
    #[command(subcommand, alias = "agencies")]
    Agency(AgencyCmd),
    /// One-time enrollment tokens for agents (and provinces' collectors).
    #[command(subcommand, alias = "tokens")]
    Token(TokenCmd),
    /// Provinces whose collectors stream to this (national) collector.
    #[command(subcommand, alias = "provinces")]
    Province(ProvinceCmd),
    /// Enrolled agents.
    #[command(subcommand, alias = "agent")]
    Agents(AgentsCmd),
    /// Alerts received from agents.
    #[command(subcommand, alias = "alert")]
    Alerts(AlertsCmd),
    /// Information systems of the agencies (security levels, dossiers).
    #[command(subcommand, alias = "systems")]
    System(crate::admin::SystemCmd),
    /// Incidents: alerts correlated by agency, system, category and attacker.
    #[command(subcommand, alias = "incident")]
    Incidents(crate::incidents::IncidentsCmd),
    /// Supervision coverage and health per agency and agent.
    Coverage {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Central policy: rule files, indicator lists, detector settings.
    #[command(subcommand, alias = "policies")]
    Policy(crate::admin::PolicyCmd),
    /// Operator identities and roles.
    #[command(subcommand, alias = "operators")]
    Operator(crate::admin::OperatorCmd),
    /// The hash-chained audit log of operator actions.
    #[command(subcommand)]
    Audit(crate::audit::AuditCmd),
    /// Periodic reports from stored data (daily, weekly), in Vietnamese or
    /// English, as printable HTML, CSV or JSON.
    Report(crate::report::ReportArgs),
}

#[derive(Subcommand, Debug)]
pub enum AgencyCmd {
    /// Registers an agency.
    Add {
        /// Short code, e.g. SO-TTTT (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        code: String,
        /// Full name, e.g. "Sở Thông tin và Truyền thông".
        #[arg(long)]
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Shows one agency with all registry columns.
    Show {
        code: String,
        #[arg(long)]
        json: bool,
    },
    /// Sets registry columns: `canhgac agency set CODE monitoring.phone=024... parent=UBND`.
    Set {
        code: String,
        #[arg(required = true, value_name = "COLUMN=VALUE")]
        fields: Vec<String>,
    },
    /// Imports agencies from CSV or JSON (all rows or none).
    Import(ImportArgs),
    /// Exports agencies as CSV (default) or JSON (`--format json`) to standard output.
    Export(ExportArgs),
}

/// `import FILE [--dry-run]` of agencies or systems.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// CSV or JSON, by `--format csv|json` or the file name.
    pub file: PathBuf,
    /// Check every row and report, store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `export [--agency CODE]` of agencies or systems.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    #[arg(long)]
    pub agency: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ProvinceCmd {
    /// Registers a province: a tenant above agencies whose own collector
    /// enrolls here (`token create --province CODE`).
    Add {
        /// Short code, e.g. HN, HCM (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        code: String,
        /// Full name, e.g. "Hà Nội".
        #[arg(long)]
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Creates a one-time token; the token is printed alone on the last line.
    #[command(group(clap::ArgGroup::new("tenant").required(true).args(["agency", "province"])))]
    Create {
        /// The agency an agent enrolls into.
        #[arg(long)]
        agency: Option<String>,
        /// The province whose collector enrolls with the token
        /// (`canhgac-collector upstream enroll`).
        #[arg(long)]
        province: Option<String>,
        /// Validity, e.g. 24h, 7d (default: the collector's, 24h).
        #[arg(long, value_parser = canhgac_proto::conf::parse_duration)]
        ttl: Option<Duration>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    List {
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Links an agent to the information systems it watches.
    Link {
        agent_id: String,
        #[arg(long = "system", required = true)]
        systems: Vec<u64>,
        /// Remove the links instead.
        #[arg(long)]
        unlink: bool,
    },
    /// Revokes an agent: refused at its next handshake, open stream closed.
    Revoke {
        agent_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AlertFilter {
    /// Only this agency.
    #[arg(long)]
    pub agency: Option<String>,
    /// Only alerts at least this severe (1 highest .. 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub min_severity: Option<u32>,
}

/// Filters of `alerts list` beyond agency, severity and time.
#[derive(Args, Debug, Clone, Default)]
pub struct AlertMatch {
    /// Either endpoint has this address.
    #[arg(long, value_parser = parse_ip)]
    pub ip: Option<std::net::IpAddr>,
    #[arg(long, value_parser = parse_ip)]
    pub src_ip: Option<std::net::IpAddr>,
    #[arg(long, value_parser = parse_ip)]
    pub dest_ip: Option<std::net::IpAddr>,
    /// Signature id (`alert.signature_id`).
    #[arg(long)]
    pub signature_id: Option<u64>,
    /// Detector: rule, ioc, portscan, bruteforce, beacon, auth-bruteforce, ...
    #[arg(long)]
    pub detector: Option<String>,
    /// Only alerts attributed to this system id (0: unattributed).
    #[arg(long)]
    pub system: Option<u64>,
    /// Incident category: malware, c2, scanning, intrusion, ...
    #[arg(long)]
    pub category: Option<String>,
}

fn parse_ip(s: &str) -> Result<std::net::IpAddr, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not an IP address"))
}

#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    /// Lists stored alerts, newest first.
    List {
        #[command(flatten)]
        filter: AlertFilter,
        #[command(flatten)]
        matching: AlertMatch,
        /// Event time lower bound: RFC 3339 (2026-11-01T08:00:00+07:00) or a date.
        #[arg(long, value_parser = parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Event time upper bound (exclusive), like --since.
        #[arg(long, value_parser = parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Most alerts to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Follows alerts as they arrive; resumes after disconnects.
    Tail {
        #[command(flatten)]
        filter: AlertFilter,
        /// Start after this cursor (0: from the first stored alert) instead
        /// of with new alerts only.
        #[arg(long)]
        from_cursor: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    output::parse_time(s)
}

/// A failure with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    /// Standard output was closed (`| head`): stop quietly, status 0.
    pub(crate) fn closed() -> Failure {
        Failure { code: 0, message: String::new() }
    }
    /// The same failure, prefixed with the command it came from (once).
    pub(crate) fn context(self, command: &str) -> Failure {
        if self.message.starts_with(&format!("{command}:")) {
            return self;
        }
        Failure { code: self.code, message: format!("{command}: {}", self.message) }
    }
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
    pub(crate) fn runtime(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        use tonic::Code;
        let what = match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => "refused",
            Code::NotFound => "not found",
            Code::AlreadyExists => "already exists",
            Code::PermissionDenied | Code::Unauthenticated => "not allowed",
            Code::Unavailable | Code::DeadlineExceeded => "collector unavailable",
            Code::ResourceExhausted => "collector busy or out of space",
            _ => "collector error",
        };
        let message =
            if s.message().is_empty() { what.to_string() } else { format!("{what}: {}", s.message()) };
        Failure::runtime(message)
    }
}

/// Runs one command. A refusal names the command it answers
/// (`incidents show: not found: incident 9 not found`).
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let label = command_label(&cli.command);
    run_command(cli)
        .await
        .map_err(|f| if f.code == 1 && !f.message.starts_with(&label) { f.context(&label) } else { f })
}

/// `agency add`, `incidents transition`, `coverage`: the command as typed.
fn command_label(c: &Command) -> String {
    // the subcommand's variant name is the word typed (`Show` is `show`)
    fn sub(group: &str, d: &dyn std::fmt::Debug) -> String {
        let dbg = format!("{d:?}");
        let word = dbg.split(|ch: char| !ch.is_alphanumeric()).next().unwrap_or_default().to_lowercase();
        format!("{group} {word}")
    }
    match c {
        Command::Agency(x) => sub("agency", x),
        Command::Token(x) => sub("token", x),
        Command::Province(x) => sub("province", x),
        Command::Agents(x) => sub("agents", x),
        Command::Alerts(x) => sub("alerts", x),
        Command::System(x) => sub("system", x),
        Command::Incidents(x) => sub("incidents", x),
        Command::Coverage { .. } => "coverage".into(),
        Command::Policy(x) => sub("policy", x),
        Command::Operator(x) => sub("operator", x),
        Command::Audit(x) => sub("audit", x),
        Command::Report(r) => format!("report {}", r.kind),
    }
}

async fn run_command(cli: Cli) -> Result<(), Failure> {
    let Some(profile_path) = cli.profile.clone() else {
        return Err(Failure::usage("no operator profile: pass --profile FILE or set CANHGAC_PROFILE"));
    };
    let profile = Profile::load(&profile_path).map_err(|e| Failure::usage(e.to_string()))?;
    let profile_tz = profile
        .display
        .as_ref()
        .and_then(|d| d.timezone.as_deref())
        .and_then(|tz| output::parse_offset(tz).ok());
    if matches!(cli.format, Some(output::Format::Html | output::Format::Pdf))
        && !matches!(cli.command, Command::Report(_))
    {
        return Err(Failure::usage("--format html and pdf are for reports; lists are table, json or csv"));
    }
    output::init(output::Display {
        offset: if cli.utc {
            time::UtcOffset::UTC
        } else {
            cli.timezone.or(profile_tz).unwrap_or(output::VIETNAM)
        },
        wide: cli.wide,
        format: if cli.excel { output::Format::Csv } else { cli.format.unwrap_or(output::Format::Table) },
        given: if cli.excel { Some(output::Format::Csv) } else { cli.format },
        excel: cli.excel,
        ..output::Display::default()
    });
    let client = profile.client(cli.collector.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| -> Result<(), Failure> {
        writeln!(out, "{line}").and_then(|_| out.flush()).map_err(output::write_failure)
    };
    match cli.command {
        Command::Agency(AgencyCmd::Add { code, name }) => {
            let a = connect(&client)
                .await?
                .add_agency(AddAgencyRequest { code, name, ..Default::default() })
                .await?
                .into_inner();
            say(format!("added agency {} ({})", a.code, a.name))?;
        }
        Command::Province(ProvinceCmd::Add { code, name }) => {
            let a = connect(&client)
                .await?
                .add_agency(AddAgencyRequest { code, name, kind: "province".into() })
                .await?
                .into_inner();
            say(format!("added province {} ({})", a.code, a.name))?;
        }
        Command::Province(ProvinceCmd::List { json }) => {
            let list = connect(&client).await?.list_agencies(ListAgenciesRequest {}).await?.into_inner();
            let provinces: Vec<_> = list.agencies.into_iter().filter(|a| a.kind == "province").collect();
            drop(out);
            output::list(
                json,
                &["CODE", "NAME", "CREATED"],
                &provinces,
                |a| {
                    vec![a.code.clone(), a.name.clone(), a.created.as_ref().map(time_str).unwrap_or_default()]
                },
                |a| {
                    json!({"code": a.code, "name": a.name, "created": a.created.as_ref().map(time_str)})
                        .to_string()
                },
            )?;
        }
        Command::Agency(AgencyCmd::List { json }) => {
            let list = connect(&client).await?.list_agencies(ListAgenciesRequest {}).await?.into_inner();
            drop(out);
            output::list(
                json,
                &["CODE", "NAME", "CREATED"],
                &list.agencies,
                |a| {
                    vec![a.code.clone(), a.name.clone(), a.created.as_ref().map(time_str).unwrap_or_default()]
                },
                |a| {
                    json!({"code": a.code, "name": a.name, "created": a.created.as_ref().map(time_str)})
                        .to_string()
                },
            )?;
        }
        Command::Token(TokenCmd::Create { agency, province, ttl }) => {
            let for_province = province.is_some();
            let t = connect(&client)
                .await?
                .create_enrollment_token(CreateEnrollmentTokenRequest {
                    agency: agency.or(province).unwrap_or_default(),
                    ttl_seconds: ttl.map(|d| d.as_secs().max(1)).unwrap_or(0),
                    province: for_province,
                })
                .await?
                .into_inner();
            say(format!(
                "one-time enrollment token for {} {}, valid until {}:",
                if for_province { "the collector of province" } else { "agency" },
                t.agency,
                t.expires.as_ref().map(time_str).unwrap_or_default()
            ))?;
            say(t.token)?;
        }
        Command::Agents(AgentsCmd::List { agency, json }) => {
            let list = connect(&client)
                .await?
                .list_agents(ListAgentsRequest { agency: agency.unwrap_or_default(), ..Default::default() })
                .await?
                .into_inner();
            drop(out);
            output::list(
                json,
                &["AGENT ID", "AGENCY", "HOSTNAME", "VERSION", "STATE", "LAST SEEN", "STORED", "DROPPED"],
                &list.agents,
                agent_row,
                |a| agent_json(a).to_string(),
            )?;
        }
        Command::Agents(AgentsCmd::Revoke { agent_id, reason }) => {
            let r = connect(&client)
                .await?
                .revoke_agent(RevokeAgentRequest { agent_id: agent_id.clone(), reason })
                .await?
                .into_inner();
            say(format!("revoked agent {agent_id} ({} open stream(s) closed)", r.streams_closed))?;
        }
        Command::Alerts(AlertsCmd::List { filter, matching, since, until, limit, json }) => {
            let mut c = connect(&client).await?;
            let mut alerts = Vec::new();
            let mut page_token = String::new();
            while alerts.len() < limit {
                let resp = c
                    .list_alerts(ListAlertsRequest {
                        agency: filter.agency.clone().unwrap_or_default(),
                        min_severity: filter.min_severity.unwrap_or(0),
                        since: since.map(timefmt::to_timestamp),
                        until: until.map(timefmt::to_timestamp),
                        limit: (limit - alerts.len()).min(1000) as u32,
                        page_token: page_token.clone(),
                        ip: matching.ip.map(|i| i.to_string()).unwrap_or_default(),
                        src_ip: matching.src_ip.map(|i| i.to_string()).unwrap_or_default(),
                        dest_ip: matching.dest_ip.map(|i| i.to_string()).unwrap_or_default(),
                        signature_id: matching.signature_id.unwrap_or(0),
                        detector: matching.detector.clone().unwrap_or_default(),
                        system: matching.system.unwrap_or(0),
                        unattributed: matching.system == Some(0),
                        category: matching.category.clone().unwrap_or_default(),
                    })
                    .await?
                    .into_inner();
                let done = resp.next_page_token.is_empty() || resp.alerts.is_empty();
                alerts.extend(resp.alerts);
                if done {
                    break;
                }
                page_token = resp.next_page_token;
            }
            alerts.truncate(limit);
            drop(out);
            output::list(json, &alert_headers().each_ref().map(String::as_str), &alerts, alert_row, |a| {
                a.eve_json.clone()
            })?;
        }
        Command::Alerts(AlertsCmd::Tail { filter, from_cursor, json }) => {
            tail(&client, filter, from_cursor, json).await?;
        }
        Command::Report(a) => {
            drop(out);
            crate::report::run(a, cli.format, &client).await?;
        }
        other => {
            let _ = &mut say;
            drop(out);
            crate::admin::run(other, &client, &profile, cli.collector.as_deref()).await?;
        }
    }
    Ok(())
}

pub(crate) async fn connect(client: &TlsClient) -> Result<OperatorClient<Channel>, Failure> {
    let channel =
        client.connect(Duration::from_secs(10)).await.map_err(|e| Failure::runtime(error_chain(&e)))?;
    Ok(OperatorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// Follows the alert subscription; on a broken stream reconnects and
/// resumes after the last cursor printed, so nothing is skipped or repeated.
async fn tail(
    client: &TlsClient,
    filter: AlertFilter,
    from_cursor: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let cursor = std::cell::Cell::new(from_cursor);
    let headers = alert_headers();
    let feed = std::cell::RefCell::new(output::Feed::new(json, &headers.each_ref().map(String::as_str)));
    let (cursor, filter, feed) = (&cursor, &filter, &feed);
    follow("alert", move || async move {
        let mut c = connect(client).await?;
        let mut stream = c
            .subscribe_alerts(SubscribeAlertsRequest {
                after_cursor: cursor.get(),
                agency: filter.agency.clone().unwrap_or_default(),
                min_severity: filter.min_severity.unwrap_or(0),
            })
            .await?
            .into_inner();
        loop {
            let a = tokio::select! {
                m = stream.message() => match m? { Some(a) => a, None => break },
                _ = output::stdout_closed() => return Err(Failure::closed()),
            };
            feed.borrow_mut().item(|| alert_row(&a), || a.eve_json.clone())?;
            cursor.set(Some(a.cursor));
        }
        Ok(())
    })
    .await
}

/// Runs `attempt` (one subscription, which records its cursor) again and
/// again with a growing pause, until it fails with a usage error (code 2).
pub(crate) async fn follow<F, Fut>(what: &str, mut attempt: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(()) => {}
            Err(f) if f.code != 1 => return Err(f),
            Err(f) => eprintln!("canhgac: {what} stream interrupted: {}; resuming", f.message),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

pub(crate) fn time_str(t: &prost_types::Timestamp) -> String {
    output::time_ts(t)
}

/// The state of an agent, from the collector's one definition of online
/// (`AgentInfo.online`: connected, or heard from within the silence
/// limit), the same the coverage view uses.
fn agent_state(a: &AgentInfo) -> &'static str {
    if a.revoked {
        "revoked"
    } else if a.first_seen.is_none() {
        "enrolled"
    } else if a.online {
        "online"
    } else {
        "offline"
    }
}

fn agent_json(a: &AgentInfo) -> Value {
    let c = a.counters.clone().unwrap_or_default();
    json!({
        "agent_id": a.agent_id,
        "agency": a.agency,
        "hostname": a.hostname,
        "version": a.agent_version,
        "state": agent_state(a),
        "connected": a.connected,
        "revoked": a.revoked,
        "enrolled": a.enrolled.as_ref().map(time_str),
        "first_seen": a.first_seen.as_ref().map(time_str),
        "last_seen": a.last_seen.as_ref().map(time_str),
        "certificate_not_after": a.certificate_not_after.as_ref().map(time_str),
        "records_stored": a.records_stored,
        "records_duplicate": a.records_duplicate,
        "records_invalid": a.records_invalid,
        "batches_rejected": a.batches_rejected,
        "highest_seq": a.highest_seq,
        "os": a.inventory.as_ref().map(|i| i.os.clone()),
        "online": a.online,
        "systems": a.systems,
        "policy_version": a.policy.as_ref().map(|p| p.version).unwrap_or(0),
        "policy_rule_files": a.policy.as_ref().map(|p| p.rule_files.iter()
            .map(|f| json!({"name": f.name, "loaded": f.loaded, "total": f.total}))
            .collect::<Vec<_>>()).unwrap_or_default(),
        "policy_error": a.policy.as_ref().map(|p| p.error.clone()).unwrap_or_default(),
        "counters": canhgac_proto::json::counters(&c),
    })
}

fn agent_row(a: &AgentInfo) -> Vec<String> {
    let c = a.counters.clone().unwrap_or_default();
    let dropped =
        c.spool_dropped + c.records_dropped_oversize + c.packets_dropped_kernel + c.packets_dropped_user;
    vec![
        a.agent_id.clone(),
        a.agency.clone(),
        a.hostname.clone(),
        a.agent_version.clone(),
        agent_state(a).to_string(),
        a.last_seen.as_ref().map(time_str).unwrap_or_else(|| "-".into()),
        a.records_stored.to_string(),
        dropped.to_string(),
    ]
}

/// The columns of an alert row ([`alert_row`]).
pub(crate) fn alert_headers() -> [String; 7] {
    let time = output::zone_header("TIME");
    [time.as_str(), "SEV", "AGENCY", "HOST", "DETECTOR", "SIGNATURE", "FLOW"].map(String::from)
}

pub(crate) fn alert_row(a: &StoredAlert) -> Vec<String> {
    let f = a.facts.clone().unwrap_or_default();
    // display only: the host name the collector stamped and the protocol
    let v: Value = serde_json::from_str(&a.eve_json).unwrap_or(Value::Null);
    let endpoint = |e: Option<&canhgac_proto::v1::Endpoint>| match e {
        None => String::new(),
        Some(e) if e.ip.is_empty() => e.host.clone(),
        Some(e) if e.port == 0 => e.ip.clone(),
        Some(e) if e.ip.contains(':') => format!("[{}]:{}", e.ip, e.port),
        Some(e) => format!("{}:{}", e.ip, e.port),
    };
    let flow = {
        let (src, dst) = (endpoint(f.src.as_ref()), endpoint(f.dest.as_ref()));
        if src.is_empty() && dst.is_empty() {
            String::new()
        } else {
            format!("{src} -> {dst} {}", v["proto"].as_str().unwrap_or_default())
        }
    };
    let time = a.time.as_ref().map(output::time_compact).unwrap_or_default();
    vec![
        time,
        a.severity.to_string(),
        a.agency.clone(),
        v["canhgac"]["hostname"].as_str().unwrap_or_default().to_string(),
        if f.detector.is_empty() { "rule".into() } else { f.detector },
        f.signature,
        flow.trim_end().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn refusals_name_the_command_typed() {
        let label = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["canhgac"], args].concat()).unwrap();
            command_label(&cli.command)
        };
        assert_eq!(label(&["incidents", "show", "9"]), "incidents show");
        assert_eq!(label(&["coverage", "--agency", "SO-A"]), "coverage");
        assert_eq!(label(&["agency", "add", "--code", "SO-A", "--name", "A"]), "agency add");
        assert_eq!(label(&["audit", "verify"]), "audit verify");
        let f = Failure::runtime("not found: incident 9 not found").context("incidents show");
        assert_eq!(f.message, "incidents show: not found: incident 9 not found");
        assert_eq!(f.context("incidents show").message, "incidents show: not found: incident 9 not found");
    }
}

#[cfg(test)]
mod boundary {
    /// The command line is a client of the wire contract: it never links
    /// the collector (its store records) or the agent.
    #[test]
    fn depends_on_the_wire_contract_only() {
        let manifest = include_str!("../Cargo.toml");
        let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        assert!(deps.contains("canhgac-proto"), "{deps}");
        for forbidden in ["canhgac-collector", "canhgac-agent", "sled"] {
            assert!(!deps.contains(forbidden), "canhgac-cli depends on {forbidden}");
        }
    }
}
