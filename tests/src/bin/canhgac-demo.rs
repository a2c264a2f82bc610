//! `canhgac-demo`: the whole path on one machine, in one process.
//!
//! Starts a collector (its own CA, sled in a temporary directory) on
//! 127.0.0.1, registers an agency, creates a one-time token, enrolls an
//! agent over mutual TLS, replays the bundled captures with the bundled
//! indicator list through the agent's spool and uplink, and prints the
//! alerts as an operator sees them with `canhgac alerts list`.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use canhgac_agent::{capture::Source, config, daemon, enroll, uplink::Finished};
use canhgac_cli::{self as cli, AgencyCmd, AgentsCmd, AlertFilter, AlertsCmd, Cli, Command};
use canhgac_collector::{admin, config::ServeConfig, server};
use canhgac_proto::{
    profile::Profile,
    v1::{CreateEnrollmentTokenRequest, operator_client::OperatorClient},
};

const SOFACY: &[u8] = include_bytes!("../../../deploy/demo/sofacy-dns.pcap");
const AGENTTESLA: &[u8] = include_bytes!("../../../deploy/demo/agenttesla-c2.pcap");
const IOC: &[u8] = include_bytes!("../../../deploy/demo/ioc.txt");

fn step(text: &str) {
    println!("\n$ {text}");
}

async fn operator(profile: &Path, command: Command) -> anyhow::Result<()> {
    cli::run(Cli {
        profile: Some(profile.to_path_buf()),
        collector: None,
        timezone: None,
        utc: false,
        format: None,
        excel: false,
        wide: true,
        command,
    })
    .await
    .map_err(|f| anyhow::anyhow!(f.message))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    println!(
        "canhgac DEMO: collector, agent and operator on this machine (working directory {})",
        root.display()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let col_dir = root.join("collector");
    step(&format!(
        "canhgac-collector init --data-dir {} --server-name 127.0.0.1 --address {url}",
        col_dir.display()
    ));
    let init = admin::init(&col_dir, &["127.0.0.1".to_string()], Some(&url))?;
    println!("CA pin: {}", init.pin);

    step(&format!("canhgac-collector serve --data-dir {} --listen {}", col_dir.display(), &url[8..]));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(ServeConfig::new(col_dir.clone()), listener, async {
        let _ = stop_rx.await;
    }));

    let profile = init.profile.clone();
    step("canhgac agency add --code SO-TTTT --name \"Sở Thông tin và Truyền thông\"");
    operator(
        &profile,
        Command::Agency(AgencyCmd::Add {
            code: "SO-TTTT".into(),
            name: "Sở Thông tin và Truyền thông".into(),
        }),
    )
    .await?;

    step("canhgac token create --agency SO-TTTT");
    let channel = Profile::load(&profile)?.client(None)?.connect(Duration::from_secs(10)).await?;
    let token = OperatorClient::new(channel)
        .create_enrollment_token(CreateEnrollmentTokenRequest { agency: "SO-TTTT".into(), ttl_seconds: 0 })
        .await?
        .into_inner()
        .token;
    println!("{token}");

    let state_dir = root.join("agent");
    step(&format!(
        "canhgac-agent enroll --collector {url} --token {token} --ca-pin {} --state-dir {}",
        init.pin,
        state_dir.display()
    ));
    let id = enroll::enroll(enroll::EnrollOptions {
        collector: &url,
        token: &token,
        ca_pin: &init.pin,
        state_dir: &state_dir,
        expected_agency: None,
        force: false,
    })
    .await?;
    println!("enrolled as agent {} of agency {}", id.agent_id, id.agency);

    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let files = [("sofacy-dns.pcap", SOFACY), ("agenttesla-c2.pcap", AGENTTESLA), ("ioc.txt", IOC)];
    for (name, bytes) in files {
        std::fs::write(data.join(name), bytes)?;
    }
    step(&format!(
        "canhgac-agent run --state-dir {} --pcap sofacy-dns.pcap --pcap agenttesla-c2.pcap --ioc ioc.txt --exit-when-drained",
        state_dir.display()
    ));
    let cfg = config::resolve(
        None,
        config::Overrides {
            state_dir: Some(state_dir.clone()),
            pcap: vec![data.join("sofacy-dns.pcap"), data.join("agenttesla-c2.pcap")],
            ioc: vec![data.join("ioc.txt")],
            exit_when_drained: true,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    debug_assert!(matches!(cfg.source, Some(Source::Pcap(_))));
    let finished =
        tokio::time::timeout(Duration::from_secs(120), daemon::run(cfg, std::future::pending::<()>()))
            .await
            .context("the agent did not drain within 2 minutes")??;
    anyhow::ensure!(finished == Finished::Drained, "agent stopped early: {finished:?}");
    println!("the agent replayed the captures and every alert was acknowledged");

    step("canhgac alerts list");
    let filter = AlertFilter { agency: None, min_severity: None };
    operator(
        &profile,
        Command::Alerts(AlertsCmd::List {
            filter: filter.clone(),
            matching: Default::default(),
            since: None,
            until: None,
            limit: 100,
            json: false,
        }),
    )
    .await?;
    step("canhgac alerts list --json --limit 1");
    operator(
        &profile,
        Command::Alerts(AlertsCmd::List {
            filter,
            matching: Default::default(),
            since: None,
            until: None,
            limit: 1,
            json: true,
        }),
    )
    .await?;
    step("canhgac agents list");
    operator(&profile, Command::Agents(AgentsCmd::List { agency: None, json: false })).await?;

    let _ = stop_tx.send(());
    server.await??;
    println!("\ndemo finished; everything above ran over mutual TLS on 127.0.0.1 with sled on disk");
    Ok(())
}
