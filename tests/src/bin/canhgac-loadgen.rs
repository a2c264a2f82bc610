//! `canhgac-loadgen`: many agents in one process against a running
//! collector, over the real protocol.
//!
//! It creates its own agency and one enrollment token per agent through the
//! operator API (the admin profile given), enrolls every agent with a real
//! key and certificate, then each agent streams realistic EVE alert records
//! with typed facts in batches over its own mutual-TLS connection, keeping
//! a few batches in flight as the agent does, and measures what the
//! collector acknowledged (stored and flushed). `--idle` opens the streams
//! and sends heartbeats only (memory per connected agent).
//!
//! `--reconnect` makes each agent behave like the agent's uplink when its
//! stream fails (the collector restarted, the network cut): it connects
//! again after a jittered exponential backoff and sends again everything
//! not acknowledged; after `--duration` it produces nothing more and ends
//! once every record it made is acknowledged. `acked` then counts each
//! record once, however often it was sent: what the collector must have
//! stored.
//!
//! Ends with one line:
//! `acked_per_s=N p50_ack_ms=N p99_ack_ms=N collector_rss_mib=N ...`
//! (the collector's CPU time and RSS are read from /proc: `--collector-pid`,
//! else the process named `canhgac-collector` on this machine); with
//! `--reconnect` the line ends with `reconnects=N reconnect_max_ms=N
//! resent=N` (streams opened again, the longest time from a failed stream
//! to the next Welcome, records sent more than once).
//!
//! Usage: `canhgac-loadgen --profile FILE [--agents N] [--duration SECS]
//! [--rate R] [--batch N] [--idle] [--reconnect] [--collector-pid PID]`

#![allow(clippy::print_stderr)]

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use canhgac_agent::{enroll, state::AgentIdentity, uplink::Backoff};
use canhgac_proto::{
    profile::Profile,
    timefmt,
    v1::{
        AddAgencyRequest, AgentMessage, Batch, CreateEnrollmentTokenRequest, Endpoint, Heartbeat, Hello,
        Record, RecordFacts, RecordKind, RoleBasis, agent_message::Body as Out,
        collector_message::Body as In, operator_client::OperatorClient, telemetry_client::TelemetryClient,
    },
};
use clap::Parser;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Parser)]
#[command(name = "canhgac-loadgen", about = "simulated agents streaming alerts to a collector")]
struct Args {
    /// Admin operator profile of the collector under load.
    #[arg(long)]
    profile: PathBuf,
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Seconds of load after every agent is connected.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Alerts per second for all agents together (0: as fast as the
    /// collector acknowledges).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batches in flight per agent (as `uplink.max_in_flight`).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Connect and send heartbeats only.
    #[arg(long)]
    idle: bool,
    /// Reconnect after a failed stream and send again what was not
    /// acknowledged; drain everything after `--duration`.
    #[arg(long, conflicts_with = "idle")]
    reconnect: bool,
    /// First reconnection delay (ms), doubled up to `--backoff-max-ms`,
    /// each drawn between half and all of it (the agent's backoff).
    #[arg(long, default_value_t = 500)]
    backoff_initial_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    backoff_max_ms: u64,
    /// With `--reconnect`: go on producing after `--duration` until this
    /// file exists (a test ends the load once it has measured what it
    /// wanted).
    #[arg(long, requires = "reconnect")]
    stop_file: Option<PathBuf>,
    #[arg(long)]
    collector_pid: Option<u32>,
    /// The collector's metrics endpoint (`host:port`): after the load, wait
    /// until its correlator has caught up (`correlation_backlog` 0) and
    /// report how long that took after the last acknowledgement.
    #[arg(long)]
    collector_metrics: Option<std::net::SocketAddr>,
}

/// `canhgac_collector_correlation_backlog` read from the metrics endpoint.
fn correlation_backlog(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("metrics endpoint {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.lines()
        .find_map(|l| l.strip_prefix("canhgac_collector_correlation_backlog "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no correlation_backlog in the metrics of {addr}"))
}

/// One alert as an agent sends it: EVE JSON and typed facts.
fn record(seq: u64, agent: usize) -> Record {
    let now = time::OffsetDateTime::now_utc();
    let a = (seq % 250) as u8;
    let sport = 1024 + (seq % 60000) as u32;
    let eve = format!(
        concat!(
            r#"{{"timestamp":"{t}","flow_id":{f},"event_type":"alert","src_ip":"203.0.113.{a}","src_port":{sp},"#,
            r#""dest_ip":"10.{g}.0.10","dest_port":443,"proto":"TCP","#,
            r#""alert":{{"action":"allowed","gid":1,"signature_id":9000002,"rev":1,"#,
            r#""signature":"CANHGAC IOC traffic from listed address 203.0.113.{a} (national.txt)","#,
            r#""category":"Potentially Bad Traffic","severity":2}},"#,
            r#""canhgac":{{"detector":"ioc","technique":"T1071","indicator":"203.0.113.{a}","indicator_type":"ip","list":"national.txt","matched":"src_ip"}}}}"#
        ),
        t = timefmt::rfc3339(now),
        f = seq * 7919 + agent as u64,
        a = a,
        sp = sport,
        g = agent % 250,
    );
    let ip = |s: String, port: u32| Endpoint { ip: s, port, ..Default::default() };
    let attacker = ip(format!("203.0.113.{a}"), sport);
    let victim = ip(format!("10.{}.0.10", agent % 250), 443);
    Record {
        seq,
        kind: RecordKind::Alert as i32,
        time: Some(timefmt::to_timestamp(now)),
        severity: 2,
        eve_json: eve.into_bytes(),
        facts: Some(RecordFacts {
            detector: "ioc".into(),
            signature_id: 9000002,
            signature: format!("CANHGAC IOC traffic from listed address 203.0.113.{a} (national.txt)"),
            rule_category: "Potentially Bad Traffic".into(),
            technique: "T1071".into(),
            flow_id: seq * 7919 + agent as u64,
            src: Some(attacker.clone()),
            dest: Some(victim.clone()),
            attackers: vec![attacker],
            victims: vec![victim],
            role_basis: RoleBasis::Detector as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct Totals {
    acked: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
    failed_agents: AtomicU64,
    /// `--reconnect`: streams opened again, the longest outage (ms), and
    /// records sent more than once.
    reconnects: AtomicU64,
    reconnect_max_ms: AtomicU64,
    resent: AtomicU64,
}

/// Pacing shared by all agents: a token bucket of `rate` records/s.
struct Pace {
    rate: u64,
    start: Instant,
    taken: AtomicU64,
}

impl Pace {
    async fn take(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let before = self.taken.fetch_add(n, Relaxed);
        let due = Duration::from_secs_f64(before as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

type Session = (mpsc::Sender<AgentMessage>, tonic::Streaming<canhgac_proto::v1::CollectorMessage>);

/// Connects one simulated agent: mutual TLS, Hello, Welcome.
async fn connect(index: usize, state_dir: &Path, args: &Args) -> anyhow::Result<Session> {
    let identity = AgentIdentity::load(state_dir)?;
    let channel = identity.client(None)?.connect(Duration::from_secs(30)).await?;
    let mut grpc = TelemetryClient::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<AgentMessage>(args.in_flight + 2);
    tx.send(AgentMessage {
        body: Some(Out::Hello(Hello {
            protocol_version: canhgac_proto::TELEMETRY_PROTOCOL_VERSION,
            agent_version: "loadgen".into(),
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = grpc.stream(ReceiverStream::new(rx)).await?.into_inner();
    match inbound.message().await? {
        Some(m) if matches!(m.body, Some(In::Welcome(_))) => Ok((tx, inbound)),
        _ => anyhow::bail!("agent {index}: no welcome"),
    }
}

/// One simulated agent: connects, waits until every agent is connected,
/// then loads for `--duration`; returns its acknowledgement latencies (ms).
async fn run_agent(
    index: usize,
    state_dir: PathBuf,
    args: Arc<Args>,
    totals: Arc<Totals>,
    pace: Arc<Pace>,
    start_load: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Vec<f64>> {
    let session = connect(index, &state_dir, &args).await;
    // every agent passes the barrier, connected or not, so none waits forever
    start_load.wait().await;
    let (tx, mut inbound) = session?;
    let until = Instant::now() + Duration::from_secs(args.duration);
    let mut latencies = Vec::new();
    if args.idle {
        while Instant::now() < until {
            tx.send(AgentMessage {
                body: Some(Out::Heartbeat(Heartbeat {
                    time: Some(timefmt::to_timestamp(time::OffsetDateTime::now_utc())),
                    ..Default::default()
                })),
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())))
                .await;
        }
        return Ok(latencies);
    }
    // the sender keeps up to `in_flight` batches out; the receiver reads
    // every answer as it comes, so a latency is the collector's, not ours
    let window = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let sent_at: Arc<std::sync::Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let sender = {
        let (window, sent_at, totals, args) = (window.clone(), sent_at.clone(), totals.clone(), args.clone());
        async move {
            let mut seq = 0u64;
            while Instant::now() < until {
                window.acquire().await?.forget();
                pace.take(args.batch as u64).await;
                let records: Vec<Record> = (0..args.batch)
                    .map(|_| {
                        seq += 1;
                        record(seq, index)
                    })
                    .collect();
                sent_at.lock().unwrap_or_else(|p| p.into_inner()).push_back(Instant::now());
                tx.send(AgentMessage { body: Some(Out::Batch(Batch { records })) }).await?;
                totals.sent.fetch_add(args.batch as u64, Relaxed);
            }
            // every permit back: every batch answered
            let _all = window.acquire_many(args.in_flight as u32).await?;
            drop(tx);
            Ok::<_, anyhow::Error>(())
        }
    };
    let receiver = async {
        while let Some(m) = inbound.message().await? {
            let answered = match m.body {
                Some(In::Ack(a)) => {
                    totals.acked.fetch_add(a.last_seq - a.first_seq + 1, Relaxed);
                    true
                }
                Some(In::Rejected(r)) => {
                    totals.rejected.fetch_add(r.last_seq - r.first_seq + 1, Relaxed);
                    true
                }
                _ => false,
            };
            if answered {
                if let Some(t) = sent_at.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                window.add_permits(1);
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    // the sender ends the stream once everything is answered; the
    // collector then ends its side and the receiver returns
    let (s, r) = tokio::join!(sender, receiver);
    s.with_context(|| format!("agent {index}: sending"))?;
    r.with_context(|| format!("agent {index}: receiving"))?;
    Ok(latencies)
}

impl Args {
    /// Whether a reconnecting agent stops producing.
    fn load_over(&self, until: Instant) -> bool {
        Instant::now() >= until && self.stop_file.as_ref().is_none_or(|f| f.exists())
    }
}

/// One simulated agent with `--reconnect`: sessions until everything it
/// made is acknowledged, a jittered backoff between them.
async fn run_reconnecting(
    index: usize,
    state_dir: PathBuf,
    args: Arc<Args>,
    totals: Arc<Totals>,
    pace: Arc<Pace>,
    start_load: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Vec<f64>> {
    let mut backoff = Backoff::new(
        Duration::from_millis(args.backoff_initial_ms),
        Duration::from_millis(args.backoff_max_ms),
    );
    let mut session = connect(index, &state_dir, &args).await;
    start_load.wait().await;
    let until = Instant::now() + Duration::from_secs(args.duration);
    let mut progress = Progress::default();
    let mut latencies = Vec::new();
    let mut lost_at: Option<Instant> = None;
    loop {
        let (tx, mut inbound) = match session {
            Ok(s) => s,
            Err(e) => {
                let lost = *lost_at.get_or_insert_with(Instant::now);
                if lost.elapsed() > Duration::from_secs(110) {
                    return Err(e.context(format!("agent {index}: not reconnected within 110 s")));
                }
                tokio::time::sleep(backoff.next_delay()).await;
                session = connect(index, &state_dir, &args).await;
                continue;
            }
        };
        backoff.reset();
        if let Some(t) = lost_at.take() {
            totals.reconnects.fetch_add(1, Relaxed);
            totals.reconnect_max_ms.fetch_max(t.elapsed().as_millis() as u64, Relaxed);
        }
        match stream(index, tx, &mut inbound, &args, &totals, &pace, until, &mut progress, &mut latencies)
            .await
        {
            Ok(()) => return Ok(latencies),
            Err(e) => {
                lost_at = Some(Instant::now());
                session = Err(e);
            }
        }
    }
}

/// What a reconnecting agent made and what was acknowledged (every seq up
/// to `acked`; answers come in the order of the batches).
#[derive(Default)]
struct Progress {
    produced: u64,
    acked: u64,
    /// Highest seq sent on any stream.
    sent_through: u64,
}

/// One stream of a reconnecting agent: sends from the first record not
/// acknowledged; `Ok` once nothing more is to be made and all is answered.
#[allow(clippy::too_many_arguments)]
async fn stream(
    index: usize,
    tx: mpsc::Sender<AgentMessage>,
    inbound: &mut tonic::Streaming<canhgac_proto::v1::CollectorMessage>,
    args: &Args,
    totals: &Totals,
    pace: &Pace,
    until: Instant,
    p: &mut Progress,
    latencies: &mut Vec<f64>,
) -> anyhow::Result<()> {
    let batch = args.batch as u64;
    let mut last_sent = p.acked;
    // (last seq, sent at) of each batch awaiting its answer
    let mut in_flight: std::collections::VecDeque<(u64, Instant)> = Default::default();
    loop {
        while in_flight.len() < args.in_flight {
            if last_sent == p.produced {
                if args.load_over(until) {
                    break;
                }
                pace.take(batch).await;
                p.produced += batch;
                totals.sent.fetch_add(batch, Relaxed);
            }
            let first = last_sent + 1;
            let last = p.produced.min(last_sent + batch);
            if first <= p.sent_through {
                totals.resent.fetch_add(p.sent_through.min(last) - first + 1, Relaxed);
            }
            p.sent_through = p.sent_through.max(last);
            let records: Vec<Record> = (first..=last).map(|seq| record(seq, index)).collect();
            tx.send(AgentMessage { body: Some(Out::Batch(Batch { records })) })
                .await
                .map_err(|_| anyhow::anyhow!("agent {index}: the stream ended"))?;
            in_flight.push_back((last, Instant::now()));
            last_sent = last;
        }
        if in_flight.is_empty() {
            drop(tx);
            // let the collector see the end of the stream
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while let Ok(Some(_)) = inbound.message().await {}
            })
            .await;
            return Ok(());
        }
        let m = tokio::time::timeout(Duration::from_secs(30), inbound.message())
            .await
            .map_err(|_| anyhow::anyhow!("agent {index}: no answer within 30 s"))??
            .ok_or_else(|| anyhow::anyhow!("agent {index}: the collector closed the stream"))?;
        let last = match m.body {
            Some(In::Ack(a)) => a.last_seq,
            Some(In::Rejected(r)) => {
                totals.rejected.fetch_add(r.last_seq - r.first_seq + 1, Relaxed);
                r.last_seq
            }
            _ => continue,
        };
        if let Some((_, t)) = in_flight.pop_front() {
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        if last > p.acked {
            totals.acked.fetch_add(last - p.acked, Relaxed);
            p.acked = last;
        }
    }
}

/// (CPU seconds, RSS MiB) of `pid` from /proc.
fn proc_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based) of the whole line
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks / 100.0, rss_kib / 1024.0))
}

/// The process named `canhgac-collector` (comm is cut to 15 characters).
fn find_collector() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "canhgac-collect").then_some(pid)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(
        args.agents > 0 && args.batch > 0 && args.in_flight > 0,
        "--agents, --batch and --in-flight must be positive"
    );
    let profile =
        Profile::load(&args.profile).with_context(|| format!("profile {}", args.profile.display()))?;
    let pin = canhgac_proto::cert_pin(
        canhgac_proto::client::parse_certs(&profile.ca, "CA certificate")?
            .first()
            .context("no CA certificate")?,
    );
    let channel = profile.client(None)?.connect(Duration::from_secs(10)).await?;
    let mut api = OperatorClient::new(channel);
    let code = format!("LOADGEN-{:06X}", rand::random::<u32>() & 0xFF_FFFF);
    api.add_agency(AddAgencyRequest {
        code: code.clone(),
        name: "canhgac-loadgen".into(),
        ..Default::default()
    })
    .await?;
    let tmp = tempfile::tempdir()?;
    let enrolling = Instant::now();
    let mut dirs = Vec::with_capacity(args.agents);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.agents {
        let token = api
            .create_enrollment_token(CreateEnrollmentTokenRequest {
                agency: code.clone(),
                ttl_seconds: 3600,
                ..Default::default()
            })
            .await?
            .into_inner()
            .token;
        let dir = tmp.path().join(format!("agent-{i}"));
        dirs.push(dir.clone());
        let (collector, pin) = (profile.collector.clone(), pin.clone());
        tasks.spawn(async move {
            enroll::enroll(enroll::EnrollOptions {
                collector: &collector,
                token: &token,
                ca_pin: &pin,
                state_dir: &dir,
                expected_agency: None,
                force: false,
            })
            .await
            .map(|_| ())
        });
        while tasks.len() >= 32 {
            tasks.join_next().await.context("enrollment task")???;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let enroll_s = enrolling.elapsed().as_secs_f64();
    eprintln!(
        "enrolled {} agents in {enroll_s:.1} s ({:.0}/s) in agency {code}",
        args.agents,
        args.agents as f64 / enroll_s
    );

    let pid = args.collector_pid.or_else(find_collector);
    let totals = Arc::new(Totals::default());
    let start_load = Arc::new(tokio::sync::Barrier::new(args.agents + 1));
    let pace = Arc::new(Pace { rate: args.rate, start: Instant::now(), taken: AtomicU64::new(0) });
    // (the pace's clock starts before the connections: a rate is reached
    // a little faster at first, never exceeded on average)
    let mut agents = tokio::task::JoinSet::new();
    for (i, dir) in dirs.into_iter().enumerate() {
        let (args, totals, pace, start_load) =
            (args.clone(), totals.clone(), pace.clone(), start_load.clone());
        agents.spawn(async move {
            let r = if args.reconnect {
                run_reconnecting(i, dir, args, totals.clone(), pace, start_load).await
            } else {
                run_agent(i, dir, args, totals.clone(), pace, start_load).await
            };
            if let Err(e) = &r {
                totals.failed_agents.fetch_add(1, Relaxed);
                eprintln!("agent {i}: {e:#}");
            }
            r
        });
    }
    start_load.wait().await;
    // the clock starts once every agent is connected
    let began = Instant::now();
    let cpu_before = pid.and_then(proc_usage);
    let mut latencies = Vec::new();
    let mut peak_rss = 0f64;
    let mut sampler = tokio::time::interval(Duration::from_millis(500));
    let stop_at = began + Duration::from_secs(args.duration);
    loop {
        tokio::select! {
            r = agents.join_next() => match r {
                Some(Ok(Ok(l))) => latencies.extend(l),
                Some(_) => {}
                None => break,
            },
            _ = sampler.tick() => {
                if let Some((_, rss)) = pid.and_then(proc_usage) {
                    peak_rss = peak_rss.max(rss);
                }
                if Instant::now() > stop_at + Duration::from_secs(120) && args.stop_file.is_none() {
                    anyhow::bail!("agents still running two minutes after the end");
                }
            }
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let acked_at = Instant::now();
    let correlated = match args.collector_metrics {
        Some(addr) => {
            let mut left = correlation_backlog(addr)?;
            let at_end = left;
            while left > 0 {
                if acked_at.elapsed() > Duration::from_secs(600) {
                    anyhow::bail!("the correlator still has {left} alerts to correlate after 10 minutes");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                left = correlation_backlog(addr)?;
            }
            format!(" backlog_at_end={at_end} correlated_after_s={:.1}", acked_at.elapsed().as_secs_f64())
        }
        None => String::new(),
    };
    let cpu = match (cpu_before, pid.and_then(proc_usage)) {
        (Some((a, _)), Some((b, rss))) => {
            peak_rss = peak_rss.max(rss);
            b - a
        }
        _ => f64::NAN,
    };
    latencies.sort_by(f64::total_cmp);
    let acked = totals.acked.load(Relaxed);
    let reconnecting = if args.reconnect {
        format!(
            " reconnects={} reconnect_max_ms={} resent={}",
            totals.reconnects.load(Relaxed),
            totals.reconnect_max_ms.load(Relaxed),
            totals.resent.load(Relaxed)
        )
    } else {
        String::new()
    };
    println!(
        "acked_per_s={:.0} p50_ack_ms={:.1} p99_ack_ms={:.1} collector_rss_mib={:.0} collector_cpu_s={:.1} agents={} failed_agents={} acked={} sent={} rejected={} seconds={:.1} enroll_per_s={:.0}{reconnecting}{correlated}",
        acked as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        peak_rss,
        cpu,
        args.agents,
        totals.failed_agents.load(Relaxed),
        acked,
        totals.sent.load(Relaxed),
        totals.rejected.load(Relaxed),
        elapsed,
        args.agents as f64 / enroll_s,
    );
    Ok(())
}
