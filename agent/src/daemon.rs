//! Wiring of the agent: spool, indicator lists, detection engine, the
//! capture thread and the uplink task.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{oneshot, watch};

use crate::{
    capture::{CaptureError, Producer},
    config::AgentConfig,
    counters::Counters,
    detect::{EngineBuilder, EngineConfig, ioc},
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
}

/// Runs until `shutdown` resolves, or (with `exit_when_drained`) until
/// everything produced from the capture files has been acknowledged.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()> + Send) -> Result<Finished, RunError> {
    let identity = AgentIdentity::load(&cfg.state_dir)?;
    tracing::info!(agent_id = %identity.file.agent_id, agency = %identity.file.agency, "starting agent");
    let spool = Spool::open(&Paths::spool(&cfg.state_dir), cfg.spool_max_bytes)?;
    let counters = Arc::new(Counters::default());
    let ioc_files = cfg.ioc_files.clone();
    let (ioc, rejected) = tokio::task::spawn_blocking(move || ioc::load_logged(&ioc_files))
        .await
        .map_err(|e| RunError::Thread(e.to_string()))??;
    counters.ioc_entries.store(ioc.len() as u64, Ordering::Relaxed);
    counters.ioc_lines_rejected.store(rejected as u64, Ordering::Relaxed);
    let builder = EngineBuilder::new(
        Arc::new(ioc),
        EngineConfig {
            ioc_severity: cfg.ioc_severity,
            dedup_capacity: cfg.dedup_capacity,
            eve: cfg.eve_types,
            behaviour: cfg.behaviour.clone(),
            ..Default::default()
        },
        spool.detector_state()?,
    );

    let host = crate::host::HostSensor::start(&cfg, &spool, counters.host.clone(), &builder.restored)?;

    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = watch::channel(false);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (result_tx, mut result_rx) = oneshot::channel();
    // a host-only agent has no capture source: the capture thread ends at once
    let source = cfg.source.clone().unwrap_or(crate::capture::Source::Pcap(Vec::new()));
    let mut producer = Producer::new(
        spool.clone(),
        Arc::new(builder),
        counters.clone(),
        stop.clone(),
        cfg.replay_pps,
        cfg.capture_threads,
    );
    let thread = std::thread::Builder::new()
        .name("canhgac-capture".into())
        .spawn(move || {
            let r = producer.run(&source);
            done_tx.send_replace(true);
            let _ = result_tx.send(r);
        })
        .map_err(|e| RunError::Thread(e.to_string()))?;

    let uplink = Uplink {
        spool: spool.clone(),
        state_dir: cfg.state_dir.clone(),
        collector: cfg.collector.clone(),
        cfg: cfg.uplink.clone(),
        counters,
        producer_done: done_rx,
        exit_when_drained: cfg.exit_when_drained,
        shutdown: shutdown_rx,
    };
    let uplink = tokio::spawn(uplink.run());
    tokio::pin!(uplink);
    tokio::pin!(shutdown);
    let mut producer_failed = None;
    let finished = loop {
        tokio::select! {
            r = &mut uplink => break r.map_err(|e| RunError::Thread(e.to_string()))??,
            _ = &mut shutdown => {
                tracing::info!("shutting down");
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
                        producer_failed = Some(Some(CaptureError::Spool(SpoolError::Corrupt { seq: 0, reason: "capture thread ended".into() })));
                        shutdown_tx.send_replace(true);
                    }
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    let _ = tokio::task::spawn_blocking(move || host.stop()).await;
    spool.flush()?;
    if let Some(Some(e)) = producer_failed {
        return Err(e.into());
    }
    if let Ok(Err(e)) = result_rx.try_recv() {
        return Err(e.into());
    }
    Ok(finished)
}
