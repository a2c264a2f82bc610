//! Packet sources and the producer loop: read → decode → detect → spool.
//!
//! Runs on its own thread (blocking I/O). Records are committed to the
//! spool in chunks (every 4096 packets, 512 records or 200 ms), each chunk
//! with the source's checkpoint and the detector state, then flushed.
//!
//! Capture files are resumable: the checkpoint of `pcap:<path>:<size>` is
//! the number of packets already processed, so an agent killed in the
//! middle of a replay continues where its last durable chunk ended and
//! produces every record exactly once. A file already replayed completely
//! is skipped.

pub mod live;
pub mod pcap;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use crate::{
    counters::Counters,
    detect::{Engine, Output, StateChange},
    spool::{Spool, SpoolError},
};

const CHUNK_PACKETS: u64 = 4096;
const CHUNK_RECORDS: usize = 512;
const CHUNK_TIME: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub enum Source {
    Pcap(Vec<PathBuf>),
    Interface(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Pcap(#[from] pcap::PcapError),
    #[error(transparent)]
    Live(#[from] live::LiveError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Checkpoint value: packets processed (u64 BE), then 1 if the file is done.
fn encode_checkpoint(packets: u64, done: bool) -> [u8; 9] {
    let mut v = [0u8; 9];
    v[..8].copy_from_slice(&packets.to_be_bytes());
    v[8] = done as u8;
    v
}

fn decode_checkpoint(v: &[u8]) -> (u64, bool) {
    match v.get(..9) {
        Some(b) => (u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8])), b[8] == 1),
        None => (0, false),
    }
}

pub struct Producer {
    pub spool: Spool,
    pub engine: Engine,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    /// Packets per second when replaying a file; 0 = as fast as possible.
    pub replay_pps: u64,
    out: Output,
    last_commit: Instant,
    since_commit: u64,
}

impl Producer {
    pub fn new(
        spool: Spool,
        engine: Engine,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        replay_pps: u64,
    ) -> Producer {
        Producer {
            spool,
            engine,
            counters,
            stop,
            replay_pps,
            out: Output::default(),
            last_commit: Instant::now(),
            since_commit: 0,
        }
    }

    pub fn run(&mut self, source: &Source) -> Result<(), CaptureError> {
        match source {
            Source::Pcap(files) => {
                for (i, f) in files.iter().enumerate() {
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    self.replay(f, i + 1 == files.len())?;
                }
                Ok(())
            }
            Source::Interface(name) => self.live(name),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn process(&mut self, linktype: u32, ts: OffsetDateTime, data: &[u8]) {
        self.since_commit += 1;
        self.engine.on_frame(linktype, ts, data, &mut self.out);
    }

    fn commit_due(&self) -> bool {
        self.since_commit >= CHUNK_PACKETS
            || self.out.records.len() >= CHUNK_RECORDS
            || (self.last_commit.elapsed() >= CHUNK_TIME && (self.since_commit > 0 || !self.out.is_empty()))
    }

    /// Commits pending records, detector state and checkpoint, then flushes.
    fn commit(&mut self, checkpoint: Option<(&str, &[u8])>) -> Result<(), CaptureError> {
        let out = std::mem::take(&mut self.out);
        let state = out
            .state
            .into_iter()
            .map(|c| match c {
                StateChange::Put(k, v) => (k, Some(v)),
                StateChange::Delete(k) => (k, None),
            })
            .collect();
        if !out.records.is_empty() || checkpoint.is_some() {
            self.spool.append_with_state(out.records, checkpoint, state)?;
            self.spool.flush()?;
        }
        self.publish_stats();
        self.last_commit = Instant::now();
        self.since_commit = 0;
        Ok(())
    }

    /// Copies the engine's counters into the ones the heartbeats report.
    fn publish_stats(&self) {
        let s = self.engine.stats();
        let c = &self.counters;
        c.packets_captured.store(s.packets, Ordering::Relaxed);
        c.bytes_captured.store(s.bytes, Ordering::Relaxed);
        c.decode_errors.store(s.decode_errors + s.unknown_link, Ordering::Relaxed);
        c.alerts_suppressed.store(s.suppressed, Ordering::Relaxed);
        c.dedup_evictions.store(s.dedup_evictions, Ordering::Relaxed);
        c.flows_evicted.store(s.flows.evicted, Ordering::Relaxed);
        c.defrag_dropped.store(s.defrag.timeouts + s.defrag.evicted + s.defrag.invalid, Ordering::Relaxed);
        c.tcp_gaps.store(s.tcp_gaps, Ordering::Relaxed);
    }

    fn replay(&mut self, path: &PathBuf, last: bool) -> Result<(), CaptureError> {
        let size = std::fs::metadata(path)
            .map_err(|source| pcap::PcapError::Open { path: path.clone(), source })?
            .len();
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let source = format!("pcap:{}:{size}", canonical.display());
        let (resume, done) =
            self.spool.checkpoint(&source)?.map(|v| decode_checkpoint(&v)).unwrap_or((0, false));
        if done {
            tracing::info!(file = %path.display(), packets = resume, "capture already replayed completely; skipping");
            return Ok(());
        }
        let mut reader = pcap::PacketReader::open(path)?;
        while reader.index() < resume {
            if reader.next_packet()?.is_none() {
                break;
            }
        }
        if resume > 0 {
            tracing::info!(file = %path.display(), resume, "resuming capture replay after the last checkpoint");
        } else {
            tracing::info!(file = %path.display(), "replaying capture");
        }
        let started = Instant::now();
        let first = reader.index();
        loop {
            if self.stopping() {
                self.commit(Some((&source, &encode_checkpoint(reader.index(), false))))?;
                return Ok(());
            }
            match reader.next_packet() {
                Ok(Some(raw)) => {
                    let ts = OffsetDateTime::UNIX_EPOCH + raw.ts;
                    self.process(raw.linktype, ts, &raw.data);
                }
                Ok(None) => break,
                Err(e) => {
                    // A damaged or truncated file: keep what was read.
                    tracing::warn!(error = %e, "capture file damaged; stopping this file here");
                    Counters::add(&self.counters.decode_errors, 1);
                    break;
                }
            }
            if self.commit_due() {
                self.commit(Some((&source, &encode_checkpoint(reader.index(), false))))?;
            }
            if self.replay_pps > 0 {
                let due = Duration::from_secs_f64((reader.index() - first) as f64 / self.replay_pps as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    #[allow(clippy::disallowed_methods)] // the capture thread is not async
                    std::thread::sleep(wait.min(Duration::from_millis(200)));
                }
            }
        }
        if last {
            // the capture is over: every flow ends and is logged
            self.engine.finish(&mut self.out);
        }
        self.commit(Some((&source, &encode_checkpoint(reader.index(), true))))?;
        tracing::info!(file = %path.display(), packets = reader.index(), "capture replayed");
        Ok(())
    }

    fn live(&mut self, name: &str) -> Result<(), CaptureError> {
        let mut rx = live::open(name)?;
        tracing::info!(interface = name, "capturing");
        let mut last_tick = Instant::now();
        loop {
            if self.stopping() {
                self.engine.finish(&mut self.out);
                self.commit(None)?;
                return Ok(());
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                self.engine.tick(OffsetDateTime::now_utc(), &mut self.out);
                last_tick = Instant::now();
            }
            match rx.next() {
                Ok(frame) => self.process(1, OffsetDateTime::now_utc(), frame),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(live::LiveError::Io { name: name.to_string(), source }.into());
                }
            }
            if self.commit_due() {
                self.commit(None)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_garbage() {
        assert_eq!(decode_checkpoint(&encode_checkpoint(42, true)), (42, true));
        assert_eq!(decode_checkpoint(b"x"), (0, false));
    }
}
