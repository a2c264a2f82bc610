//! `canhgac-collector`: set up the PKI, print the CA pin, serve.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use canhgac_collector::{admin, config::ServeConfig, server};
use clap::{Parser, Subcommand};

/// sled clones and frees tree nodes on every write; glibc's allocator was
/// about 40 % of the collector's CPU time under ingest load (README,
/// "Many agents at once").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "canhgac-collector", version, about = "canhgac provincial collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the CA, the server certificate and the admin operator profile
    /// (DIR/operator.profile); prints the CA pin on the last line.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// A DNS name or IP address agents use to reach the collector.
        /// Repeat for several.
        #[arg(long = "server-name", required = true, num_args = 1..)]
        server_names: Vec<String>,
        /// Address written into the operator profile
        /// (default https://FIRST-SERVER-NAME:7443).
        #[arg(long)]
        address: Option<String>,
    },
    /// Prints the CA pin (SHA-256 of the CA certificate) again.
    CaPin {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Serves agents and operators.
    Serve {
        /// Configuration file (see deploy/collector.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (default 0.0.0.0:7443).
        #[arg(long)]
        listen: Option<String>,
        /// Also serve the operator console (HTTPS) on this address, e.g.
        /// 0.0.0.0:8443 (same as `console.listen` in the configuration).
        #[arg(long)]
        console_listen: Option<String>,
    },
    /// Checks a configuration file (and the regulation files and
    /// certificates it names) without serving: a summary on stdout and
    /// exit 0, or the first error (file, line, field) on stderr and exit 2.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
        /// Data directory, when the file does not set `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Copies the sled database under DIR into PostgreSQL, resumably, and
    /// checks the row counts of every table: exit 0 when all match, 1 when
    /// some differ, 2 on bad input (stop the collector first).
    Migrate {
        #[arg(long)]
        data_dir: PathBuf,
        /// Configuration file: its `[store]` (url, password_file, ca_file)
        /// is the target when --to is absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Target database, postgres://USER@HOST:PORT/DB.
        #[arg(long)]
        to: Option<String>,
        /// File holding the database password (else the URL's, the
        /// configuration's or PGPASSWORD).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// sled entries per transaction: a row, or a chunk of records (one
        /// agent batch, at most 64 KiB of records).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// The link of this (provincial) collector to an upstream (national)
    /// one.
    #[command(subcommand)]
    Upstream(UpstreamCmd),
}

#[derive(Subcommand)]
enum UpstreamCmd {
    /// Enrolls this collector at the national collector with a province
    /// token (`canhgac token create --province CODE` there); `serve` then
    /// streams incidents and selected alerts upward on its own.
    Enroll {
        #[arg(long)]
        data_dir: PathBuf,
        /// The national collector, https://HOST:PORT.
        #[arg(long)]
        national: String,
        #[arg(long)]
        token: String,
        /// The national collector's CA pin (`canhgac-collector ca-pin` there).
        #[arg(long)]
        ca_pin: String,
        /// Replace an existing upstream identity.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init { data_dir, server_names, address } => {
            match admin::init(&data_dir, &server_names, address.as_deref()) {
                Ok(o) => {
                    println!(
                        "created the collector CA and server certificate in {}",
                        data_dir.join("pki").display()
                    );
                    println!(
                        "operator profile: {} (use with --profile or CANHGAC_PROFILE)",
                        o.profile.display()
                    );
                    println!(
                        "agents enroll with: canhgac-agent enroll --collector {} --token TOKEN --ca-pin PIN --state-dir DIR",
                        o.address
                    );
                    println!("CA pin (SHA-256 of the CA certificate):");
                    println!("{}", o.pin);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(2, &e.to_string()),
            }
        }
        Command::CaPin { data_dir } => match admin::ca_pin(&data_dir) {
            Ok(pin) => {
                println!("{pin}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &e.to_string()),
        },
        Command::Serve { config, data_dir, listen, console_listen } => {
            serve(config, data_dir, listen, console_listen)
        }
        Command::CheckConfig { config, data_dir } => check_config(&config, data_dir),
        Command::Migrate { data_dir, config, to, password_file, batch } => {
            migrate(&data_dir, config.as_deref(), to, password_file.as_deref(), batch)
        }
        Command::Upstream(UpstreamCmd::Enroll { data_dir, national, token, ca_pin, force }) => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
            };
            let enrolled = rt.block_on(canhgac_collector::federation::upstream::enroll(
                &data_dir, &national, &token, &ca_pin, force,
            ));
            match enrolled {
                Ok(f) => {
                    println!(
                        "enrolled at {} as the collector of province {} (id {}); `serve` streams upward from now on",
                        f.national, f.province, f.peer_id
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, &e.to_string()),
            }
        }
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("canhgac-collector: error: {message}");
    ExitCode::from(code)
}

/// `check-config`: what `serve` would load, loaded and summarised.
fn check_config(path: &std::path::Path, data_dir: Option<PathBuf>) -> ExitCode {
    let cfg = match ServeConfig::load(path, data_dir) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let pki = canhgac_collector::pki::PkiPaths::new(&cfg.data_dir);
    let ca = if pki.ca_cert().exists() {
        match canhgac_collector::pki::Ca::load(&pki) {
            Ok(_) => "CA and server certificate readable".to_string(),
            Err(e) => return fail(2, &e.to_string()),
        }
    } else {
        format!("no CA yet under {} (run `canhgac-collector init` first)", pki.ca_cert().display())
    };
    println!("configuration {} is valid", path.display());
    println!("  data_dir: {} ({ca})", cfg.data_dir.display());
    println!("  listen: {}", cfg.listen);
    match &cfg.store {
        canhgac_collector::config::StoreConfig::Sled => println!("  store: sled under data_dir"),
        canhgac_collector::config::StoreConfig::Postgres(o) => println!(
            "  store: postgres {}{}",
            canhgac_collector::store::pg::redact_url(&o.url),
            if o.ca_pem.is_some() { " (TLS)" } else { "" }
        ),
    }
    if let Some(c) = &cfg.console {
        println!(
            "  console: https://{}/{}",
            c.listen,
            if c.bind_client_certificate { " (sign-in bound to client certificates)" } else { "" }
        );
    }
    if let Some(m) = cfg.metrics_listen {
        println!("  metrics: http://{m}/metrics");
    }
    if let Some(f) = &cfg.forward {
        println!("  forward: {:?}", f.target);
    }
    for e in &cfg.report_schedule {
        println!("  scheduled: {}", e.describe());
    }
    println!("  incident categories: {}", cfg.regulation.categories.len());
    ExitCode::SUCCESS
}

fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    console_listen: Option<String>,
) -> ExitCode {
    // The runtime and the SIGHUP handler first: from here on a reload
    // (`systemctl reload` right after start) never ends the process.
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
    };
    let hangups = {
        let _in_runtime = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    };
    // Everything is validated before anything binds.
    let mut cfg = match (&config, data_dir.clone()) {
        (Some(path), dir) => match ServeConfig::load(path, dir) {
            Ok(c) => c,
            Err(e) => return fail(2, &e.to_string()),
        },
        (None, Some(dir)) => ServeConfig::new(dir),
        (None, None) => return fail(2, "pass --data-dir DIR or --config FILE"),
    };
    let overrides = Overrides { listen, console_listen };
    if let Err(e) = overrides.apply(&mut cfg) {
        return fail(2, &e);
    }
    if let Err(e) = canhgac_collector::pki::Ca::load(&canhgac_collector::pki::PkiPaths::new(&cfg.data_dir)) {
        return fail(2, &e.to_string());
    }
    canhgac_proto::files::init_logging_as(cfg.log_format);
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => return fail(1, &format!("cannot listen on {}: {e}", cfg.listen)),
        };
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
        tokio::spawn(reload_on_hangup(hangups, config, data_dir, overrides, reload_tx));
        match server::run_reloadable(cfg, listener, shutdown, reloads).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(1, &e.to_string()),
        }
    })
}

/// `serve`'s flags that override the configuration file.
#[derive(Clone)]
struct Overrides {
    listen: Option<String>,
    console_listen: Option<String>,
}

impl Overrides {
    fn apply(&self, cfg: &mut ServeConfig) -> Result<(), String> {
        if let Some(l) = &self.listen {
            cfg.listen = l
                .parse::<SocketAddr>()
                .map_err(|_| format!("invalid --listen address `{l}` (expected IP:PORT)"))?;
        }
        if let Some(l) = &self.console_listen {
            let a = l
                .parse::<SocketAddr>()
                .map_err(|_| format!("invalid --console-listen address `{l}` (expected IP:PORT)"))?;
            let (idle_timeout, bind_client_certificate) = cfg
                .console
                .as_ref()
                .map(|c| (c.idle_timeout, c.bind_client_certificate))
                .unwrap_or((canhgac_collector::console::DEFAULT_IDLE, false));
            cfg.console = Some(canhgac_collector::console::ConsoleConfig {
                listen: a,
                idle_timeout,
                bind_client_certificate,
            });
        }
        Ok(())
    }
}

/// SIGHUP (`systemctl reload`): the configuration file is read and
/// checked again, as `check-config` does; a file with an error changes
/// nothing (the log names file, line and field) and the collector keeps
/// running. Without a file there is nothing to reload, which is said.
/// The handler is installed in any case, before the configuration is even
/// read: SIGHUP's default would end the process.
async fn reload_on_hangup(
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    overrides: Overrides,
    reloads: tokio::sync::mpsc::Sender<ServeConfig>,
) {
    let mut hup = match hangups {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload by restarting");
            return;
        }
    };
    while hup.recv().await.is_some() {
        let Some(path) = &config else {
            tracing::warn!("SIGHUP: started without --config, nothing to reload");
            continue;
        };
        tracing::info!(file = %path.display(), "SIGHUP: reloading the configuration");
        match ServeConfig::load(path, data_dir.clone()) {
            Ok(mut c) => {
                // the command line still wins over the file (checked at start)
                let _ = overrides.apply(&mut c);
                if reloads.send(c).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(error = %e, "configuration not reloaded; the running one stays"),
        }
    }
}

/// The database `migrate` writes to: `--to` (with `--password-file`), else
/// the configuration's `[store]`.
fn migrate_target(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
    to: Option<String>,
    password_file: Option<&std::path::Path>,
) -> Result<canhgac_collector::store::PgOptions, String> {
    use canhgac_collector::{config::StoreConfig, store::PgOptions};
    let from_config = match config {
        Some(path) => match ServeConfig::load(path, Some(data_dir.to_path_buf())) {
            Ok(c) => match c.store {
                StoreConfig::Postgres(o) => Some(o),
                StoreConfig::Sled => None,
            },
            Err(e) => return Err(e.to_string()),
        },
        None => None,
    };
    let mut opts = match (to, from_config) {
        (Some(url), Some(mut o)) => {
            o.url = url;
            o
        }
        (Some(url), None) => {
            let mut o = PgOptions::new(url);
            o.password = std::env::var("PGPASSWORD").ok();
            o
        }
        (None, Some(o)) => o,
        (None, None) => {
            return Err("no target database: pass --to postgres://USER@HOST:PORT/DB or a --config \
                        whose [store] has backend = \"postgres\""
                .into());
        }
    };
    if let Some(f) = password_file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let pw = text.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            return Err(format!("the password file {} is empty", f.display()));
        }
        opts.password = Some(pw);
    }
    Ok(opts)
}

/// `migrate`: sled under DATA_DIR to PostgreSQL, then the counts checked.
fn migrate(
    data_dir: &std::path::Path,
    config: Option<&std::path::Path>,
    to: Option<String>,
    password_file: Option<&std::path::Path>,
    batch: usize,
) -> ExitCode {
    use canhgac_collector::store::migrate;
    if !data_dir.is_dir() {
        return fail(2, &format!("data directory {} does not exist", data_dir.display()));
    }
    let opts = match migrate_target(data_dir, config, to, password_file) {
        Ok(o) => o,
        Err(e) => return fail(2, &e),
    };
    let src = match migrate::open_source(data_dir) {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    let dst = match migrate::open_target(&opts) {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    let source = std::fs::canonicalize(data_dir.join("db")).unwrap_or_else(|_| data_dir.join("db"));
    println!("migrating {} to {}", source.display(), dst.url());
    // a line when a table starts, then at most one a second, and when done
    let (mut last_print, mut last_table) = (std::time::Instant::now(), "");
    let mut report = |p: &migrate::Progress| {
        if p.done || p.table != last_table || last_print.elapsed() >= std::time::Duration::from_secs(1) {
            (last_print, last_table) = (std::time::Instant::now(), p.table);
            println!(
                "{}: {}/{} rows{}{}",
                p.table,
                p.copied,
                p.total,
                if p.done { " done" } else { "" },
                if p.resumed { " (resumed)" } else { "" }
            );
        }
    };
    let run = migrate::run(
        &src,
        &dst,
        &source.display().to_string(),
        &migrate::Options { batch, ..Default::default() },
        &mut report,
    );
    match run {
        Ok(_) => {}
        Err(e @ migrate::MigrateError::Store(_)) => {
            return fail(1, &format!("{e} (run the same command again to continue)"));
        }
        Err(e) => return fail(2, &e.to_string()),
    }
    let counts = match migrate::check(&src, &dst) {
        Ok(c) => c,
        Err(e) => return fail(1, &format!("cannot check the counts: {e}")),
    };
    let width = counts.iter().map(|c| c.table.len()).max().unwrap_or(5).max(5);
    println!("{:width$}  {:>10}  {:>10}  ok", "table", "sled", "postgres");
    for c in &counts {
        println!(
            "{:width$}  {:>10}  {:>10}  {}",
            c.table,
            c.sled,
            c.postgres,
            if c.ok() { "yes" } else { "NO" }
        );
    }
    let bad: Vec<_> = counts.iter().filter(|c| !c.ok()).collect();
    if bad.is_empty() {
        println!("migration complete: every count matches");
        ExitCode::SUCCESS
    } else {
        let list: Vec<String> =
            bad.iter().map(|c| format!("{} (sled {}, postgres {})", c.table, c.sled, c.postgres)).collect();
        fail(1, &format!("counts differ: {}", list.join(", ")))
    }
}
