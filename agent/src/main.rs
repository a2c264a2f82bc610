//! `canhgac-agent`: enroll, run, inspect.

use std::{path::PathBuf, process::ExitCode};

use canhgac_agent::{
    config::{self, Overrides, ResolveError},
    daemon, enroll,
    spool::Spool,
    state::{AgentIdentity, Paths},
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "canhgac-agent", version, about = "canhgac agent for agency servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enrolls this machine with a one-time token from the provincial SOC.
    Enroll {
        /// Collector address, https://HOST:PORT.
        #[arg(long)]
        collector: String,
        /// One-time token from `canhgac token create`.
        #[arg(long)]
        token: String,
        /// SHA-256 of the collector CA (printed by `canhgac-collector init`).
        #[arg(long)]
        ca_pin: String,
        #[arg(long)]
        state_dir: PathBuf,
        /// Refuse unless the token belongs to this agency.
        #[arg(long)]
        agency: Option<String>,
        /// Discard an existing identity in the state directory.
        #[arg(long)]
        force: bool,
    },
    /// Runs the agent.
    Run {
        /// Configuration file (see deploy/agent.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Replay capture files instead of a live interface (several after
        /// one flag, or the flag repeated).
        #[arg(long, num_args = 1..)]
        pcap: Vec<PathBuf>,
        /// Capture live on this interface (needs CAP_NET_RAW).
        #[arg(long)]
        interface: Option<String>,
        /// Indicator lists: one IP, CIDR or domain per line (several after
        /// one flag, or the flag repeated).
        #[arg(long, num_args = 1..)]
        ioc: Vec<PathBuf>,
        /// Suricata rule files (several after one flag, or the flag
        /// repeated); replace `[rules] files`.
        #[arg(long, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// With --pcap: exit 0 once everything produced is acknowledged.
        #[arg(long)]
        exit_when_drained: bool,
        /// Replay rate in packets per second (0: as fast as possible).
        #[arg(long)]
        replay_pps: Option<u64>,
        /// Collector address, overriding the one recorded at enrollment.
        #[arg(long)]
        collector: Option<String>,
    },
    /// Runs the detection engine over capture files and log files: EVE
    /// JSON lines on stdout (alerts only by default), a summary on stderr.
    Analyze {
        /// Capture files (pcap or pcapng): `--pcap A B` or `--pcap A --pcap B`.
        #[arg(long, num_args = 1.., required_unless_present = "log")]
        pcap: Vec<PathBuf>,
        /// Log files: authentication (syslog, RFC 5424, journal JSON, sshd
        /// -E), web access (combined, IIS, JSON), firewall, Windows events;
        /// `.gz` too. Several after one flag, or the flag repeated.
        #[arg(long, num_args = 1..)]
        log: Vec<PathBuf>,
        /// Kind and format of the --log files (auto: sniffed per file):
        /// auto, auth, syslog, rfc5424, journal-json, web, combined, common,
        /// iis, web-json, firewall, windows; `lines` reads and splits lines
        /// only (the baseline of the throughput benchmark).
        #[arg(long, default_value = "auto", value_parser = canhgac_agent::host::router::LogSpec::parse)]
        log_format: canhgac_agent::host::router::LogSpec,
        /// Suricata rule files; several after one flag, or the flag repeated.
        #[arg(long, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Indicator lists, `[FORMAT:]PATH`; several after one flag, or the
        /// flag repeated.
        #[arg(long, num_args = 1..)]
        ioc: Vec<PathBuf>,
        /// Agent configuration (indicator lists, detector settings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Event types to print: any of alert,flow,dns,tls,http,ssh,auth,fim.
        #[arg(long, value_parser = canhgac_agent::eve::EveTypes::parse)]
        eve_types: Option<canhgac_agent::eve::EveTypes>,
        /// Engines working on the capture files in parallel, each on its
        /// share of the flows, as the live workers of `capture.threads`
        /// (the default: that setting of --config, else 1); the output is
        /// then in no fixed order between flows. 1 to 64.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: Option<u16>,
    },
    /// Scans files and directories (recursively) for state-secret markers
    /// (MẬT, TỐI MẬT, TUYỆT MẬT): one EVE alert line per marked file on
    /// stdout, a summary on stderr. Exits 0 whether or not markers are found.
    ScanSecrets {
        /// Files and directories.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Larger files are skipped and counted (`secret_scan_limits_hit`).
        #[arg(long, default_value = "64MiB")]
        max_file_size: bytesize::ByteSize,
        /// Throughput benchmark instead: the files are read into memory,
        /// then scanned, memory-scanned (the baseline) and searched as a
        /// plain tool would (containers inflated or decoded, then
        /// memory-scanned) in the same run; a table per kind on stdout.
        #[arg(long)]
        bench: bool,
    },
    /// File integrity administration.
    Fim {
        #[command(subcommand)]
        command: FimCommand,
    },
    /// Prints the identity and the spool state.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Suricata rule files.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Checks a configuration file and the indicator lists and rule files it
    /// names, without running anything: a summary on stdout and exit 0, or
    /// the first error (file, line, field) on stderr and exit 2.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Loads rule files and explains every rule that cannot be loaded.
    Check {
        /// Rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Address or port variable, NAME=VALUE (repeatable; Suricata's defaults otherwise).
        #[arg(long = "var")]
        vars: Vec<String>,
        /// classification.config (Suricata's built-in table otherwise).
        #[arg(long)]
        classification: Option<PathBuf>,
        /// One JSON object per skipped rule, then a summary object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FimCommand {
    /// Opens a maintenance window: changes under these paths are taken into
    /// the baseline without alerts until it closes (a deployment). The
    /// running agent picks it up within a second.
    Accept {
        #[arg(long)]
        state_dir: PathBuf,
        /// How long the window stays open.
        #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Closes every open window instead.
        #[arg(long)]
        clear: bool,
        #[arg(required_unless_present = "clear")]
        paths: Vec<PathBuf>,
    },
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("canhgac-agent: error: {message}");
    ExitCode::from(code)
}

/// `check-config`: what `run` would load, loaded and summarised.
fn check_config(path: &std::path::Path) -> ExitCode {
    use canhgac_agent::config::ResolveError;
    let cfg = match canhgac_agent::config::load_file(Some(path)) {
        Ok(c) => c,
        Err(ResolveError::Config(e)) => return fail(2, &e.to_string()),
        Err(ResolveError::Usage(m)) => return fail(2, &m),
    };
    let (ioc, ioc_errors) = match canhgac_agent::detect::ioc::IocSet::load(&cfg.ioc_files) {
        Ok(x) => x,
        Err(e) => return fail(2, &format!("indicator lists: {e}")),
    };
    for e in ioc_errors.iter().take(20) {
        eprintln!("canhgac-agent: warning: indicator line skipped: {e}");
    }
    let (rules, report) = match canhgac_agent::detect::load_rules_logged(
        &cfg.rule_files,
        &cfg.rule_vars,
        cfg.classification.as_deref(),
    ) {
        Ok(x) => x,
        Err(e) => return fail(2, &format!("rule files: {e}")),
    };
    let source = match &cfg.source {
        Some(canhgac_agent::capture::Source::Interface(i)) => format!("interface {i}"),
        Some(canhgac_agent::capture::Source::Pcap(p)) => format!("{} capture file(s)", p.len()),
        None => "none (host sensor only, or --pcap/--interface at run)".into(),
    };
    println!("configuration {} is valid", path.display());
    println!(
        "  state_dir: {}",
        if cfg.state_dir.as_os_str().is_empty() {
            "(from --state-dir)".into()
        } else {
            cfg.state_dir.display().to_string()
        }
    );
    println!("  capture: {source}, {} worker(s)", cfg.capture_threads);
    println!(
        "  indicators: {} entries from {} list(s), {} line(s) skipped",
        ioc.len(),
        cfg.ioc_files.len(),
        ioc_errors.len()
    );
    println!(
        "  rules: {} loaded, {} skipped from {} file(s) (`canhgac-agent rules check` explains each)",
        rules.as_ref().map(|r| r.len()).unwrap_or(0),
        report.skipped.len(),
        cfg.rule_files.len()
    );
    println!("  spool.max_bytes: {}", bytesize::ByteSize(cfg.spool_max_bytes));
    println!("  host sensor: {}", if cfg.host.enabled { "on" } else { "off" });
    if let Some(m) = cfg.metrics_listen {
        println!("  metrics: http://{m}/metrics");
    }
    ExitCode::SUCCESS
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(1, &format!("cannot start the runtime: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Enroll { collector, token, ca_pin, state_dir, agency, force } => {
            let rt = match runtime() {
                Ok(r) => r,
                Err(c) => return c,
            };
            let opts = enroll::EnrollOptions {
                collector: &collector,
                token: &token,
                ca_pin: &ca_pin,
                state_dir: &state_dir,
                expected_agency: agency.as_deref(),
                force,
            };
            match rt.block_on(enroll::enroll(opts)) {
                Ok(id) => {
                    println!("enrolled as agent {} of agency {}", id.agent_id, id.agency);
                    println!("identity written to {}", state_dir.display());
                    ExitCode::SUCCESS
                }
                Err(e @ enroll::EnrollError::AlreadyEnrolled(_)) => fail(2, &e.to_string()),
                Err(e @ enroll::EnrollError::Client(canhgac_proto::client::ClientError::BadPin(_))) => {
                    fail(2, &e.to_string())
                }
                Err(e @ enroll::EnrollError::Client(canhgac_proto::client::ClientError::BadAddress(_))) => {
                    fail(2, &e.to_string())
                }
                Err(e) => fail(1, &e.to_string()),
            }
        }
        Command::Run {
            config,
            state_dir,
            pcap,
            interface,
            ioc,
            rules,
            exit_when_drained,
            replay_pps,
            collector,
        } => {
            let overrides = Overrides {
                state_dir,
                collector,
                pcap,
                interface,
                ioc,
                rules,
                replay_pps,
                exit_when_drained,
            };
            // Everything is validated before anything starts.
            let cfg = match config::resolve(config.as_deref(), overrides) {
                Ok(c) => c,
                Err(ResolveError::Config(e)) => return fail(2, &e.to_string()),
                Err(ResolveError::Usage(m)) => return fail(2, &m),
            };
            if !canhgac_agent::state::is_enrolled(&cfg.state_dir) {
                return fail(
                    2,
                    &canhgac_agent::state::StateError::NotEnrolled(cfg.state_dir.clone()).to_string(),
                );
            }
            canhgac_proto::files::init_logging_as(cfg.log_format);
            let rt = match runtime() {
                Ok(r) => r,
                Err(c) => return c,
            };
            let shutdown = async {
                let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            match rt.block_on(daemon::run(cfg, shutdown)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(1, &e.to_string()),
            }
        }
        Command::Analyze { pcap, log, log_format, rules, ioc, config, eve_types, workers } => {
            canhgac_proto::files::init_logging();
            if !log.is_empty() {
                let opts = canhgac_agent::host::analyze::LogAnalyzeOptions {
                    logs: log,
                    format: log_format,
                    config: config.clone(),
                    ioc: ioc.clone(),
                    eve: eve_types,
                };
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                match canhgac_agent::host::analyze::run(&opts, &mut out) {
                    Ok(summary) => {
                        drop(out);
                        eprintln!("{}", summary.line());
                    }
                    Err(e @ canhgac_agent::analyze::AnalyzeError::Config(_)) => {
                        return fail(2, &e.to_string());
                    }
                    Err(e @ canhgac_agent::analyze::AnalyzeError::Usage(_)) => {
                        return fail(2, &e.to_string());
                    }
                    Err(e) => return fail(1, &e.to_string()),
                }
                if pcap.is_empty() {
                    return ExitCode::SUCCESS;
                }
            }
            let opts = canhgac_agent::analyze::AnalyzeOptions {
                pcaps: pcap,
                ioc,
                rules,
                config,
                eve: eve_types,
                workers: workers.map_or(0, usize::from),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match canhgac_agent::analyze::run(&opts, &mut out) {
                Ok(summary) => {
                    drop(out);
                    eprintln!("{}", summary.line());
                    ExitCode::SUCCESS
                }
                Err(e @ canhgac_agent::analyze::AnalyzeError::Config(_)) => fail(2, &e.to_string()),
                Err(e @ canhgac_agent::analyze::AnalyzeError::Usage(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
        Command::ScanSecrets { paths, max_file_size, bench } => {
            let limits =
                canhgac_agent::secrets::Limits { max_object: max_file_size.as_u64(), ..Default::default() };
            let scanner = canhgac_agent::secrets::Scanner::new(limits);
            if bench {
                return match canhgac_agent::secrets::cli::bench(&scanner, &paths) {
                    Ok(rows) => {
                        println!(
                            "| files | kind | MB | memory scan MB/s | decode + memory scan MB/s | \
                             secret scan MB/s | ratio to memory scan | ratio to decode + memory scan | marked |"
                        );
                        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
                        for r in rows {
                            println!(
                                "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {} |",
                                r.files,
                                r.kind,
                                r.bytes as f64 / 1e6,
                                r.baseline_mb_s,
                                r.decoded_baseline_mb_s,
                                r.scan_mb_s,
                                r.scan_mb_s / r.baseline_mb_s.max(1e-9),
                                r.scan_mb_s / r.decoded_baseline_mb_s.max(1e-9),
                                r.hits
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(2, &e.to_string()),
                };
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match canhgac_agent::secrets::cli::run(&scanner, &paths, &mut out) {
                Ok(summary) => {
                    drop(out);
                    eprintln!("{}", summary.line());
                    ExitCode::SUCCESS
                }
                Err(e @ canhgac_agent::secrets::cli::ScanError::Usage(_)) => fail(2, &e.to_string()),
                Err(e) => fail(1, &e.to_string()),
            }
        }
        Command::CheckConfig { config } => check_config(&config),
        Command::Rules { cmd: RulesCmd::Check { files, vars, classification, json } } => {
            let args = canhgac_agent::rules::check::CheckArgs { files, vars, classification, json };
            match canhgac_agent::rules::check::run(&args, &mut std::io::stdout().lock()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(e.exit_code(), &e.to_string()),
            }
        }
        Command::Fim { command: FimCommand::Accept { state_dir, duration, clear, paths } } => {
            if !state_dir.is_dir() {
                return fail(2, &format!("no state directory `{}`", state_dir.display()));
            }
            let r = if clear {
                canhgac_agent::host::fim::accept_clear(&state_dir).map(|_| 0)
            } else {
                canhgac_agent::host::fim::accept(&state_dir, &paths, duration)
            };
            match r {
                Ok(0) => {
                    println!("maintenance windows closed");
                    ExitCode::SUCCESS
                }
                Ok(until) => {
                    let until = time::OffsetDateTime::from_unix_timestamp(until)
                        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                    println!(
                        "changes under {} accepted until {}",
                        paths.len(),
                        canhgac_proto::timefmt::rfc3339(until)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, &format!("cannot write the maintenance file: {e}")),
            }
        }
        Command::Status { state_dir } => {
            let id = match AgentIdentity::load(&state_dir) {
                Ok(i) => i,
                Err(e) => return fail(2, &e.to_string()),
            };
            println!("agent id:   {}", id.file.agent_id);
            println!("agency:     {}", id.file.agency);
            println!("collector:  {}", id.file.collector);
            if let Some((nb, na)) = id.certificate_validity() {
                println!(
                    "certificate: valid {} .. {}",
                    canhgac_proto::timefmt::rfc3339(nb),
                    canhgac_proto::timefmt::rfc3339(na)
                );
            }
            match Spool::open_payload_cap(&Paths::spool(&state_dir), u64::MAX) {
                Ok(s) => {
                    let st = s.stats();
                    println!(
                        "spool:      {} records, {} bytes; produced {}, acknowledged {}, evicted at cap {}, oversize {}",
                        st.records,
                        st.bytes,
                        st.produced,
                        st.acked,
                        st.dropped_total(),
                        st.oversize
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, &format!("cannot open the spool (is the agent running?): {e}")),
            }
        }
    }
}
