//! `canhgac-bench`: throughput of the agent → collector pipeline, next to
//! baselines measured in the same run on the same input.
//!
//! Input: a generated capture of N DNS queries, each for a listed domain, so
//! every packet becomes an alert record (the worst case for the pipeline:
//! one ~700-byte EVE record per packet).
//!
//! 1. `detect`: read + decode + detect only (no disk, no network);
//! 2. `spool`: the agent's producer into its durable spool (flushed chunks);
//! 3. `end-to-end`: the agent replays the capture while its uplink streams
//!    to an in-process collector over mutual TLS on loopback, which stores
//!    every batch in sled and flushes before acknowledging; timed until the
//!    agent has every record acknowledged.
//!
//! Usage: `cargo run --release --bin canhgac-bench -- [RECORDS]` (default
//! 100000). Compare the ratios rather than absolute figures across machines.

#![allow(clippy::print_stderr)]

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use canhgac_agent::{
    capture::{LiveSettings, Producer, Source, pcap::PacketReader},
    config,
    counters::Counters,
    daemon,
    decode::{self, LinkType},
    detect::{Engine, EngineBuilder, EngineConfig, IocSet, Output},
    enroll,
    spool::Spool,
    uplink::Finished,
};
use canhgac_collector::{admin, config::ServeConfig, server};
use canhgac_proto::profile::Profile;
use canhgac_proto::v1::{AddAgencyRequest, CreateEnrollmentTokenRequest, operator_client::OperatorClient};
use canhgac_tests::{dns_burst, write_raw_pcap};
use time::OffsetDateTime;

fn ioc() -> Arc<IocSet> {
    let mut s = IocSet::default();
    s.lists.push("bench.txt".into());
    let _ = s.add("evil.example", 0);
    s.seal();
    Arc::new(s)
}

fn detect_only(pcap: &Path) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let mut reader = PacketReader::open(pcap)?;
    let mut engine = Engine::new(ioc(), EngineConfig::default(), Vec::new());
    let mut out = Output::default();
    let (mut packets, mut records) = (0u64, 0u64);
    while let Some(raw) = reader.next_packet()? {
        packets += 1;
        if let Some(link) = LinkType::from_linktype(raw.linktype)
            && let Ok(Some(p)) = decode::decode(link, OffsetDateTime::UNIX_EPOCH + raw.ts, &raw.data)
        {
            engine.on_packet(&p, &mut out);
        }
        records += out.records.len() as u64;
        out.records.clear();
        out.state.clear();
    }
    Ok((packets, records, started.elapsed()))
}

fn spool_only(pcap: &Path, dir: &Path) -> anyhow::Result<(u64, Duration)> {
    let spool = Spool::open_payload_cap(dir, u64::MAX)?;
    let builder = Arc::new(EngineBuilder::new(ioc(), EngineConfig::default(), Vec::new()));
    let started = Instant::now();
    let mut producer = Producer::new(
        spool.clone(),
        builder,
        Arc::new(Counters::default()),
        Arc::new(AtomicBool::new(false)),
        0,
        LiveSettings::default(),
    );
    producer.run(&Source::Pcap(vec![pcap.to_path_buf()]))?;
    Ok((spool.stats().produced, started.elapsed()))
}

async fn end_to_end(pcap: &Path, root: &Path) -> anyhow::Result<(u64, Duration)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let col = root.join("collector");
    let init = admin::init(&col, &["127.0.0.1".to_string()], Some(&url))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(ServeConfig::new(col), listener, async {
        let _ = stop_rx.await;
    }));
    let channel = Profile::load(&init.profile)?.client(None)?.connect(Duration::from_secs(10)).await?;
    let mut op = OperatorClient::new(channel);
    op.add_agency(AddAgencyRequest { code: "BENCH".into(), name: "bench".into(), ..Default::default() })
        .await?;
    let token = op
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            agency: "BENCH".into(),
            ttl_seconds: 0,
            ..Default::default()
        })
        .await?
        .into_inner()
        .token;
    let state = root.join("agent");
    enroll::enroll(enroll::EnrollOptions {
        collector: &url,
        token: &token,
        ca_pin: &init.pin,
        state_dir: &state,
        expected_agency: None,
        force: false,
    })
    .await?;
    let ioc_file = root.join("ioc.txt");
    std::fs::write(&ioc_file, "evil.example\n")?;
    let cfg = config::resolve(
        None,
        config::Overrides {
            state_dir: Some(state),
            pcap: vec![pcap.to_path_buf()],
            ioc: vec![ioc_file],
            exit_when_drained: true,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let started = Instant::now();
    let finished = daemon::run(cfg, std::future::pending::<()>()).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(finished == Finished::Drained);
    let agents = op
        .list_agents(canhgac_proto::v1::ListAgentsRequest { agency: String::new(), ..Default::default() })
        .await?
        .into_inner();
    let stored = agents.agents.first().map(|a| a.records_stored).unwrap_or(0);
    let _ = stop_tx.send(());
    server.await??;
    Ok((stored, elapsed))
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    let pcap = tmp.path().join("bench.pcap");
    let (frames, _) = dns_burst("evil.example", n);
    write_raw_pcap(&pcap, &frames);
    drop(frames);
    eprintln!(
        "input: {n} DNS queries for a listed domain ({} bytes of capture)",
        std::fs::metadata(&pcap)?.len()
    );

    let (packets, records, d1) = detect_only(&pcap)?;
    anyhow::ensure!(records == n as u64, "detect produced {records} records, expected {n}");
    let (spooled, d2) = tokio::task::spawn_blocking({
        let pcap = pcap.clone();
        let dir = tmp.path().join("spool-only");
        move || spool_only(&pcap, &dir)
    })
    .await??;
    anyhow::ensure!(spooled == n as u64);
    let (stored, d3) = end_to_end(&pcap, tmp.path()).await?;
    anyhow::ensure!(stored == n as u64, "collector stored {stored}, expected {n}");

    let r1 = rate(packets, d1);
    let r2 = rate(spooled, d2);
    let r3 = rate(stored, d3);
    println!("stage                         records        seconds    records/s   ratio to detect");
    println!(
        "detect only (baseline)        {records:>10} {:>12.3} {r1:>12.0} {:>10.3}",
        d1.as_secs_f64(),
        1.0
    );
    println!(
        "agent into durable spool      {spooled:>10} {:>12.3} {r2:>12.0} {:>10.3}",
        d2.as_secs_f64(),
        r2 / r1
    );
    println!(
        "end to end, stored + acked    {stored:>10} {:>12.3} {r3:>12.0} {:>10.3}",
        d3.as_secs_f64(),
        r3 / r1
    );
    println!("end to end / spool only: {:.3}", r3 / r2);
    Ok(())
}
