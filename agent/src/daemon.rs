//! Wiring of the agent: spool, indicator lists, detection engine, the
//! capture thread and the uplink task.
//!
//! Central policy ([`crate::policy`]) is swapped in at a safe point: the
//! capture loop stops its producer (which commits its records, detector
//! state and checkpoint), builds a new engine from the configured and the
//! pushed indicator lists and settings, restores the committed detector
//! state and resumes from the checkpoint. Capture files lose nothing; a
//! live capture reopens its socket (packets in that gap of milliseconds
//! are not seen).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{oneshot, watch};

use crate::{
    capture::{CaptureError, LiveSettings, Producer},
    config::AgentConfig,
    counters::Counters,
    detect::{EngineBuilder, EngineConfig, ioc},
    policy::{Policy, PolicyError},
    spool::{Spool, SpoolError},
    state::{AgentIdentity, Paths, StateError},
    uplink::{Finished, Uplink},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Ioc(#[from] ioc::IocError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("capture thread: {0}")]
    Thread(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot read rule files: {0}")]
    Rules(std::io::Error),
    #[error("metrics endpoint: cannot listen on {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Syslog(#[from] crate::host::syslog::net::SyslogError),
}

/// SIGHUP: reads the configuration file again (with the same command-line
/// overrides) and checks it by building an engine from it; only then does
/// the running engine swap to it at its next commit point (as for a pushed
/// policy: no input is lost, capture files resume from their checkpoint).
/// A configuration with an error changes nothing and says why. Settings
/// that need a restart are named and keep their running values.
async fn reload(
    live: &Arc<std::sync::RwLock<AgentConfig>>,
    policy: &Policy,
    spool: &Spool,
    stop: &Arc<AtomicBool>,
    swap_requested: &Arc<AtomicBool>,
) {
    let current = live.read().unwrap_or_else(|p| p.into_inner()).clone();
    let Some((path, overrides)) = current.origin.clone() else {
        tracing::warn!("SIGHUP: the agent was started without --config; nothing to reload");
        return;
    };
    let (policy2, spool2) = (policy.clone(), spool.clone());
    let checked = tokio::task::spawn_blocking(move || {
        let mut new = crate::config::resolve(Some(&path), overrides).map_err(|e| e.to_string())?;
        // a throwaway engine proves the rules and lists load
        build_engine(&new, &policy2, &spool2, &Counters::default()).map_err(|e| e.to_string())?;
        new.exit_when_drained = current.exit_when_drained;
        Ok::<_, String>(new)
    })
    .await;
    let mut new = match checked {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "SIGHUP: configuration not reloaded; the running one stays");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: configuration check failed; the running one stays");
            return;
        }
    };
    let old = live.read().unwrap_or_else(|p| p.into_inner()).clone();
    let fixed = old.restart_only_changes(&new);
    if !fixed.is_empty() {
        tracing::warn!(settings = ?fixed, "SIGHUP: these settings need a restart; they keep their running values");
        new.state_dir = old.state_dir.clone();
        new.collector = old.collector.clone();
        new.source = old.source.clone();
        new.capture_threads = old.capture_threads;
        new.capture_ring_mib = old.capture_ring_mib;
        new.spool_max_bytes = old.spool_max_bytes;
        new.uplink = old.uplink.clone();
        new.metrics_listen = old.metrics_listen;
        new.log_format = old.log_format;
        new.host = old.host.clone();
        new.syslog = old.syslog.clone();
    }
    *live.write().unwrap_or_else(|p| p.into_inner()) = new;
    swap_requested.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    tracing::info!("SIGHUP: configuration reloaded (rules, indicator lists, detector settings)");
}

/// Builds the detection engines' factory from the configuration and the
/// policy in force (indicator lists, rule files, settings); updates the
/// indicator counters.
fn build_engine(
    cfg: &AgentConfig,
    policy: &Policy,
    spool: &Spool,
    counters: &Counters,
) -> Result<(Arc<EngineBuilder>, u64), RunError> {
    let active = policy.active();
    let mut files = cfg.ioc_files.clone();
    files.extend(active.ioc_files.iter().cloned());
    let (ioc, rejected) = ioc::load_logged(&files)?;
    counters.ioc_entries.store(ioc.len() as u64, Ordering::Relaxed);
    counters.ioc_lines_rejected.store(rejected as u64, Ordering::Relaxed);
    let mut rule_files = cfg.rule_files.clone();
    rule_files.extend(active.rule_files.iter().cloned());
    let (rules, report) =
        crate::detect::load_rules_logged(&rule_files, &cfg.rule_vars, cfg.classification.as_deref())
            .map_err(RunError::Rules)?;
    let skipped = report.skipped.len();
    // how each of the policy's rule files loaded, for the policy status
    let loads = report
        .files
        .iter()
        .filter(|(path, _, _)| active.rule_files.contains(path))
        .map(|(path, total, loaded)| canhgac_proto::v1::PolicyFileLoad {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            loaded: *loaded as u64,
            total: *total as u64,
        })
        .collect();
    policy.set_rule_file_loads(loads);
    counters.rules_loaded.store(rules.as_ref().map(|r| r.len() as u64).unwrap_or(0), Ordering::Relaxed);
    counters.rules_skipped.store(skipped as u64, Ordering::Relaxed);
    crate::eve::set_community_id_seed(cfg.community_id_seed);
    let engine_cfg = EngineConfig {
        ioc_severity: active.settings.ioc.severity.unwrap_or(cfg.ioc_severity),
        dedup_capacity: active.settings.detect.dedup_capacity.unwrap_or(cfg.dedup_capacity),
        eve: cfg.eve_types,
        behaviour: cfg.behaviour.clone(),
        rules,
        secrets: cfg.secrets.clone(),
        ..Default::default()
    };
    let builder = EngineBuilder::new(Arc::new(ioc), engine_cfg, spool.detector_state()?);
    Ok((Arc::new(builder), active.version))
}

/// Runs until `shutdown` resolves, or (with `exit_when_drained`) until
/// everything produced from the capture files has been acknowledged.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()> + Send) -> Result<Finished, RunError> {
    let identity = AgentIdentity::load(&cfg.state_dir)?;
    tracing::info!(agent_id = %identity.file.agent_id, agency = %identity.file.agency, "starting agent");
    tokio::pin!(shutdown);
    let spool = {
        // a disk too full even for the spool's recovery: wait for space
        // rather than exit (systemd would only restart it into the same)
        let mut warned = false;
        loop {
            let (dir, max) = (Paths::spool(&cfg.state_dir), cfg.spool_max_bytes);
            match tokio::task::spawn_blocking(move || Spool::open(&dir, max))
                .await
                .map_err(|e| RunError::Thread(e.to_string()))?
            {
                Ok(s) => break s,
                Err(e) if e.is_full() => {
                    if !warned {
                        tracing::error!(error = %e, "cannot open the spool: disk full; waiting for space");
                        warned = true;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = &mut shutdown => return Ok(Finished::Shutdown),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let counters = Arc::new(Counters::default());
    let policy = Policy::open(&cfg.state_dir)?;
    let (engine, version) = {
        let (cfg, policy, spool, counters) = (cfg.clone(), policy.clone(), spool.clone(), counters.clone());
        tokio::task::spawn_blocking(move || build_engine(&cfg, &policy, &spool, &counters))
            .await
            .map_err(|e| RunError::Thread(e.to_string()))??
    };
    if version > 0 {
        tracing::info!(version, "running central policy");
    }

    let (syslog, syslog_input) =
        match crate::host::syslog::SyslogReceiver::start(&cfg, counters.host.clone()).await? {
            Some((r, input)) => (Some(r), Some(input)),
            None => (None, None),
        };
    let host = crate::host::HostSensor::start(
        &cfg,
        &spool,
        counters.host.clone(),
        &engine.restored,
        Some(policy.clone()),
        syslog_input,
        engine.ioc.clone(),
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let shutting_down = Arc::new(AtomicBool::new(false));
    let swap_requested = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = watch::channel(false);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(addr) = cfg.metrics_listen {
        let src = crate::metrics::Sources { counters: counters.clone(), spool: spool.clone() };
        crate::metrics::serve(addr, Arc::new(src), shutdown_rx.clone())
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
    }
    let (result_tx, mut result_rx) = oneshot::channel();
    // a host-only agent has no capture source: the capture thread ends at once
    let source = cfg.source.clone().unwrap_or(crate::capture::Source::Pcap(Vec::new()));
    let new_producer = {
        let (spool, counters, stop) = (spool.clone(), counters.clone(), stop.clone());
        let (replay_pps, live) = (
            cfg.replay_pps,
            LiveSettings { threads: cfg.capture_threads, ring_bytes: cfg.capture_ring_mib << 20 },
        );
        move |engine| Producer::new(spool.clone(), engine, counters.clone(), stop.clone(), replay_pps, live)
    };
    let mut producer = new_producer(engine);
    // A pushed policy stops the producer at its next commit point.
    let watcher = {
        let mut swap = policy.swap_signal();
        let (stop, swap_requested) = (stop.clone(), swap_requested.clone());
        tokio::spawn(async move {
            while swap.changed().await.is_ok() {
                swap_requested.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
        })
    };
    policy.set_running(true);
    // what the engine is built from; a SIGHUP replaces it after checking it
    let live_cfg = Arc::new(std::sync::RwLock::new(cfg.clone()));
    let thread = {
        let (live_cfg, policy, spool, counters) =
            (live_cfg.clone(), policy.clone(), spool.clone(), counters.clone());
        let (stop, shutting_down, swap_requested) =
            (stop.clone(), shutting_down.clone(), swap_requested.clone());
        std::thread::Builder::new()
            .name("canhgac-capture".into())
            .spawn(move || {
                let r = loop {
                    let r = producer.run(&source);
                    if r.is_err()
                        || shutting_down.load(Ordering::SeqCst)
                        || !swap_requested.swap(false, Ordering::SeqCst)
                    {
                        break r.map_err(RunError::from);
                    }
                    stop.store(false, Ordering::SeqCst);
                    let cfg = live_cfg.read().unwrap_or_else(|p| p.into_inner()).clone();
                    match build_engine(&cfg, &policy, &spool, &counters) {
                        Ok((engine, version)) => {
                            producer = new_producer(engine);
                            policy.mark_applied(version);
                            tracing::info!(
                                version,
                                "detection engine swapped to the new policy or configuration"
                            );
                        }
                        Err(e) => break Err(e),
                    }
                };
                policy.set_running(false);
                policy.mark_applied(u64::MAX);
                done_tx.send_replace(true);
                let _ = result_tx.send(r);
            })
            .map_err(|e| RunError::Thread(e.to_string()))?
    };

    let uplink = Uplink {
        spool: spool.clone(),
        state_dir: cfg.state_dir.clone(),
        collector: cfg.collector.clone(),
        cfg: cfg.uplink.clone(),
        counters,
        producer_done: done_rx,
        exit_when_drained: cfg.exit_when_drained,
        shutdown: shutdown_rx,
        policy: Some(policy.clone()),
    };
    let uplink = tokio::spawn(uplink.run());
    tokio::pin!(uplink);
    let mut producer_failed = None;
    // a completed future must not be polled again: the signal future of
    // `main` panics if it is ("async fn resumed after completion")
    let mut shutdown_requested = false;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let finished = loop {
        tokio::select! {
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                reload(&live_cfg, &policy, &spool, &stop, &swap_requested).await;
            }
            r = &mut uplink => break r.map_err(|e| RunError::Thread(e.to_string()))??,
            _ = &mut shutdown, if !shutdown_requested => {
                shutdown_requested = true;
                tracing::info!("shutting down");
                shutting_down.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::Relaxed);
                shutdown_tx.send_replace(true);
            }
            r = &mut result_rx, if producer_failed.is_none() => {
                match r {
                    Ok(Ok(())) => producer_failed = Some(None),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "capture failed");
                        producer_failed = Some(Some(e));
                        shutdown_tx.send_replace(true);
                    }
                    Err(_) => {
                        producer_failed = Some(Some(RunError::Capture(CaptureError::Spool(SpoolError::Corrupt { seq: 0, reason: "capture thread ended".into() }))));
                        shutdown_tx.send_replace(true);
                    }
                }
            }
        }
    };
    shutting_down.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    watcher.abort();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    if let Some(s) = syslog {
        s.stop().await;
    }
    let _ = tokio::task::spawn_blocking(move || host.stop()).await;
    match spool.flush() {
        Err(e) if e.is_full() => tracing::warn!(error = %e, "final spool flush failed: disk full"),
        r => r?,
    }
    if let Some(Some(e)) = producer_failed {
        return Err(e);
    }
    if let Ok(Err(e)) = result_rx.try_recv() {
        return Err(e);
    }
    Ok(finished)
}
