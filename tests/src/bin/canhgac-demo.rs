//! `canhgac-demo`: what the product is for, on one machine.
//!
//! Starts a collector (its own CA, sled in a kept working directory) on
//! 127.0.0.1 with the operator console, registers two agencies with their
//! information systems and contact points, enrolls one agent per agency over
//! mutual TLS and replays bundled captures through them, moved in time to
//! the last half hour (a port scan and an SSH password-guessing run against
//! the first agency, a malware check-in and a known-bad DNS lookup in the
//! second), waits until the incidents
//! exist, writes the first agency's weekly report (PDF and HTML), and prints
//! the console's address with a password made for this run, the incident
//! list and the report's path. It keeps serving the console until Ctrl-C;
//! `--exit` stops after printing (the tests use it).

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use canhgac_agent::{config, daemon, enroll, uplink::Finished};
use canhgac_cli::Cli;
use canhgac_collector::{admin, config::ServeConfig, console::ConsoleConfig, server};
use canhgac_proto::{
    profile::Profile,
    v1::{
        CreateEnrollmentTokenRequest, ListIncidentsRequest, ListSystemsRequest, SetOperatorPasswordRequest,
        UpdateAgencyRequest, operator_client::OperatorClient,
    },
};
use clap::Parser as _;

const SCAN: &[u8] = include_bytes!("../../detect/_gen/nmap-syn-vertical.pcap");
const SSH_GUESSING: &[u8] = include_bytes!("../../detect/_pcap/zeek-sshguess.pcap");
const AGENTTESLA: &[u8] = include_bytes!("../../../deploy/demo/agenttesla-c2.pcap");
const SOFACY: &[u8] = include_bytes!("../../../deploy/demo/sofacy-dns.pcap");
const IOC: &[u8] = include_bytes!("../../../deploy/demo/ioc.txt");

fn step(text: &str) {
    println!("\n$ {text}");
}

/// Runs a `canhgac` command line as the admin operator.
async fn canhgac(profile: &Path, args: &[&str]) -> anyhow::Result<()> {
    step(&format!("canhgac {}", args.join(" ")));
    let mut argv = vec!["canhgac", "--profile", profile.to_str().unwrap_or_default()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!(e.to_string()))?;
    canhgac_cli::run(cli).await.map_err(|f| anyhow::anyhow!(f.message))
}

/// Enrolls an agent for `agency` and replays `captures` through it.
async fn agent(
    url: &str,
    pin: &str,
    profile: &Path,
    api: &mut OperatorClient<tonic::transport::Channel>,
    root: &Path,
    agency: &str,
    captures: &[(&str, &[u8])],
) -> anyhow::Result<()> {
    let token = api
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            agency: agency.into(),
            ttl_seconds: 0,
            ..Default::default()
        })
        .await?
        .into_inner()
        .token;
    let state_dir = root.join(format!("agent-{agency}"));
    step(&format!(
        "canhgac-agent enroll --collector {url} --token {token} --ca-pin {pin} --state-dir {}",
        state_dir.display()
    ));
    let id = enroll::enroll(enroll::EnrollOptions {
        collector: url,
        token: &token,
        ca_pin: pin,
        state_dir: &state_dir,
        expected_agency: None,
        force: false,
    })
    .await?;
    println!("enrolled as agent {} of agency {}", id.agent_id, id.agency);
    // the agent watches every system of its agency (coverage counts them supervised)
    let systems = api
        .list_systems(ListSystemsRequest { agency: agency.into(), ..Default::default() })
        .await?
        .into_inner()
        .systems;
    let mut link = vec!["agents".to_string(), "link".into(), id.agent_id.clone()];
    for s in &systems {
        link.extend(["--system".to_string(), s.id.to_string()]);
    }
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    canhgac(profile, &link).await?;
    let data = root.join(format!("data-{agency}"));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("ioc.txt"), IOC)?;
    let mut pcaps = Vec::new();
    // replayed as if they began 30 minutes ago
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?
        - std::time::Duration::from_secs(30 * 60);
    for (name, bytes) in captures {
        std::fs::write(data.join(name), shifted(bytes, start)?)?;
        pcaps.push(data.join(name));
    }
    let names: Vec<&str> = captures.iter().map(|c| c.0).collect();
    step(&format!(
        "canhgac-agent run --state-dir {} --pcap {} --ioc ioc.txt --exit-when-drained",
        state_dir.display(),
        names.join(" --pcap ")
    ));
    let cfg = config::resolve(
        None,
        config::Overrides {
            state_dir: Some(state_dir),
            pcap: pcaps,
            ioc: vec![data.join("ioc.txt")],
            exit_when_drained: true,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let finished =
        tokio::time::timeout(Duration::from_secs(120), daemon::run(cfg, std::future::pending::<()>()))
            .await
            .context("the agent did not drain within 2 minutes")??;
    anyhow::ensure!(finished == Finished::Drained, "agent stopped early: {finished:?}");
    println!("the agent replayed its captures; every alert was acknowledged by the collector");
    Ok(())
}

/// `capture` with its packets moved in time so that its first packet is at
/// `start`: the demo's incidents, alerts and reports are about today.
fn shifted(capture: &[u8], start: std::time::Duration) -> anyhow::Result<Vec<u8>> {
    use pcap_file::pcap::{PcapReader, PcapWriter};
    let mut reader = PcapReader::new(capture)?;
    let mut out = PcapWriter::with_header(Vec::new(), reader.header())?;
    let mut offset = None;
    while let Some(p) = reader.next_packet() {
        let mut p = p?;
        let first = *offset.get_or_insert(p.timestamp);
        p.timestamp = start + p.timestamp.saturating_sub(first);
        out.write_packet(&p)?;
    }
    Ok(out.into_writer())
}

fn free_console_port() -> u16 {
    for port in [8443, 0] {
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().map(|a| a.port()).unwrap_or(port);
        }
    }
    0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let exit = std::env::args().any(|a| a == "--exit");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let root = tempfile::Builder::new().prefix("canhgac-demo-").tempdir()?.keep();
    println!(
        "canhgac DEMO: a provincial collector with its console, two agencies and their agents on this machine\n\
         (working directory {}, kept after the demo)",
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

    let console_port = free_console_port();
    let console = format!("127.0.0.1:{console_port}");
    step(&format!(
        "canhgac-collector serve --data-dir {} --listen {} --console-listen {console}",
        col_dir.display(),
        &url[8..]
    ));
    let mut cfg = ServeConfig::new(col_dir.clone());
    cfg.console = Some(ConsoleConfig {
        listen: console.parse()?,
        idle_timeout: canhgac_collector::console::DEFAULT_IDLE,
        bind_client_certificate: false,
    });
    // the console's Reports page lists what the schedule keeps
    {
        use canhgac_collector::report::{
            Kind, Lang,
            render::Format,
            schedule::{Entry, Scope},
        };
        cfg.report_schedule = vec![
            Entry {
                kind: Kind::Daily,
                scope: Scope::Each,
                formats: vec![Format::Html, Format::Pdf],
                lang: Lang::Vi,
            },
            Entry {
                kind: Kind::Weekly,
                scope: Scope::Each,
                formats: vec![Format::Html, Format::Pdf],
                lang: Lang::Vi,
            },
        ];
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(cfg, listener, async {
        let _ = stop_rx.await;
    }));

    let profile = init.profile.clone();
    let channel = Profile::load(&profile)?.client(None)?.connect(Duration::from_secs(10)).await?;
    let mut api = OperatorClient::new(channel);

    // the registry: two agencies, their systems (addresses say which system
    // an attack concerns) and contact points
    canhgac(&profile, &["agency", "add", "--code", "SO-TTTT", "--name", "Sở Thông tin và Truyền thông"])
        .await?;
    canhgac(&profile, &["agency", "add", "--code", "UBND-HUYEN", "--name", "Ủy ban nhân dân huyện (demo)"])
        .await?;
    step("canhgac agency set SO-TTTT head.name=… monitoring.…=… response.…=…");
    let contacts = [
        ("head.name", "Nguyễn Văn An"),
        ("head.position", "Giám đốc"),
        ("monitoring.name", "Trần Thị Bình"),
        ("monitoring.unit", "Trung tâm Công nghệ thông tin và Truyền thông"),
        ("monitoring.position", "Phó Giám đốc"),
        ("monitoring.phone", "0203 3800 000"),
        ("monitoring.mobile", "0912 000 001"),
        ("monitoring.email", "giamsat@stttt.example.gov.vn"),
        ("response.name", "Lê Văn Cường"),
        ("response.unit", "Phòng An toàn thông tin"),
        ("response.position", "Trưởng phòng"),
        ("response.mobile", "0912 000 002"),
        ("response.email", "ungcuu@stttt.example.gov.vn"),
        // the four supervision layers (official letter 1552/2020)
        ("onsite_team", "Tổ giám sát tại chỗ của Sở"),
        ("supervision_provider", "Doanh nghiệp giám sát chuyên nghiệp (hợp đồng 2026)"),
        ("last_inspection", "2026-03-15"),
        ("upstream_connection", "Kết nối hệ thống giám sát quốc gia (NCSC)"),
    ];
    api.update_agency(UpdateAgencyRequest {
        code: "SO-TTTT".into(),
        set: contacts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })
    .await?;
    for args in [
        &[
            "system",
            "add",
            "--agency",
            "SO-TTTT",
            "--name",
            "Cổng thông tin điện tử tỉnh",
            "--level",
            "3",
            "--network",
            "10.99.0.0/24",
        ][..],
        &[
            "system",
            "add",
            "--agency",
            "SO-TTTT",
            "--name",
            "Hệ thống quản lý văn bản và điều hành",
            "--level",
            "2",
            "--network",
            "192.168.56.0/24",
        ][..],
        &[
            "system",
            "add",
            "--agency",
            "UBND-HUYEN",
            "--name",
            "Mạng nội bộ và máy trạm",
            "--level",
            "2",
            "--network",
            "192.168.1.0/24",
            "--network",
            "192.168.35.0/24",
        ][..],
    ] {
        canhgac(&profile, args).await?;
    }
    // the portal's level is approved and assessed; the others' dossiers are drafts
    let portal = api
        .list_systems(ListSystemsRequest { agency: "SO-TTTT".into(), ..Default::default() })
        .await?
        .into_inner()
        .systems
        .into_iter()
        .find(|s| s.level == 3)
        .context("the portal system")?
        .id
        .to_string();
    canhgac(
        &profile,
        &[
            "system",
            "set",
            &portal,
            "dossier_status=approved",
            "decision_number=125/QĐ-STTTT",
            "decision_date=2025-06-10",
            "last_assessment=2026-05-20",
        ],
    )
    .await?;

    // one agent per agency, replaying what happened to it
    agent(
        &url,
        &init.pin,
        &profile,
        &mut api,
        &root,
        "SO-TTTT",
        &[("port-scan.pcap", SCAN), ("ssh-guessing.pcap", SSH_GUESSING)],
    )
    .await?;
    agent(
        &url,
        &init.pin,
        &profile,
        &mut api,
        &root,
        "UBND-HUYEN",
        &[("agenttesla-c2.pcap", AGENTTESLA), ("sofacy-dns.pcap", SOFACY)],
    )
    .await?;

    // the correlator follows the stored alerts
    let mut last = 0;
    for _ in 0..100 {
        let n = api.list_incidents(ListIncidentsRequest::default()).await?.into_inner().incidents.len();
        if n >= 4 && n == last {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    canhgac(&profile, &["incidents", "list"]).await?;
    canhgac(&profile, &["coverage"]).await?;

    let pdf = root.join("weekly-SO-TTTT.pdf");
    let html = root.join("weekly-SO-TTTT.html");
    // the week ending now
    for (fmt, out) in [("pdf", &pdf), ("html", &html)] {
        canhgac(
            &profile,
            &[
                "report",
                "weekly",
                "--agency",
                "SO-TTTT",
                "--format",
                fmt,
                "--out",
                out.to_str().unwrap_or_default(),
            ],
        )
        .await?;
    }

    // a password for this run, to sign in to the console
    let password = format!("demo-{}", hex::encode(rand::random::<[u8; 8]>()));
    api.set_operator_password(SetOperatorPasswordRequest {
        name: "admin".into(),
        password: password.clone(),
    })
    .await?;
    println!("\n======================================================================");
    println!("Operator console: https://{console}/");
    println!("  user name: admin");
    println!("  password:  {password}   (made for this run)");
    println!(
        "  the certificate is issued by this demo's own CA: {}",
        canhgac_collector::pki::PkiPaths::new(&col_dir).ca_cert().display()
    );
    println!("Weekly report of SO-TTTT: {}", pdf.display());
    println!("                          {}", html.display());
    println!("======================================================================");

    if !exit {
        println!("\nThe collector and its console keep running; press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop_tx.send(());
    server.await??;
    println!("\ndemo finished; everything above ran over mutual TLS on 127.0.0.1 with sled on disk");
    Ok(())
}
