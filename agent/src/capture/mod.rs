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
    detect::{Engine, EngineBuilder, Output, StateChange},
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
    pub builder: Arc<EngineBuilder>,
    pub engine: Engine,
    pub counters: Arc<Counters>,
    pub stop: Arc<AtomicBool>,
    /// Packets per second when replaying a file; 0 = as fast as possible.
    pub replay_pps: u64,
    /// Capture workers on a live interface (PACKET_FANOUT when above 1).
    pub threads: usize,
    worker: usize,
    kernel_drops: u64,
    out: Output,
    last_commit: Instant,
    since_commit: u64,
}

impl Producer {
    pub fn new(
        spool: Spool,
        builder: Arc<EngineBuilder>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        replay_pps: u64,
        threads: usize,
    ) -> Producer {
        Producer::worker(spool, builder, counters, stop, replay_pps, threads, 0)
    }

    fn worker(
        spool: Spool,
        builder: Arc<EngineBuilder>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        replay_pps: u64,
        threads: usize,
        worker: usize,
    ) -> Producer {
        Producer {
            engine: builder.build(),
            spool,
            builder,
            counters,
            stop,
            replay_pps,
            threads: threads.max(1),
            worker,
            kernel_drops: 0,
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
    ///
    /// On a full disk ([`SpoolError::Full`]) a capture file waits here:
    /// it reads nothing more and retries the same chunk until space
    /// returns, or, when told to stop, leaves without committing (its
    /// checkpoint did not move, so the next run produces the chunk again).
    /// A live capture cannot wait: the chunk's records are counted as
    /// dropped ([`Spool::lost`]) and capture goes on.
    fn commit(&mut self, checkpoint: Option<(&str, &[u8])>) -> Result<(), CaptureError> {
        let out = std::mem::take(&mut self.out);
        let state: Vec<_> = out.state.into_iter().map(StateChange::into_pair).collect();
        let live = checkpoint.is_none();
        if !out.records.is_empty() || checkpoint.is_some() {
            let mut waiting_since: Option<Instant> = None;
            loop {
                match self.spool.commit(&out.records, checkpoint, &state) {
                    Ok(_) => break,
                    Err(e) if e.is_full() && live => {
                        self.spool.lost(&out.records);
                        break;
                    }
                    Err(e) if e.is_full() => {
                        if waiting_since.is_none() {
                            tracing::warn!(error = %e, "spool disk full: capture paused until space returns");
                            waiting_since = Some(Instant::now());
                        }
                        if self.stopping() {
                            tracing::warn!(
                                records = out.records.len(),
                                "stopping on a full disk: the last chunk was not committed and is read again from the checkpoint at the next start"
                            );
                            self.publish_stats();
                            return Ok(());
                        }
                        #[allow(clippy::disallowed_methods)] // the capture thread is not async
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(t) = waiting_since {
                tracing::info!(waited = ?t.elapsed(), "spool has space again: capture resumed");
            }
        }
        self.publish_stats();
        self.last_commit = Instant::now();
        self.since_commit = 0;
        Ok(())
    }

    /// Copies this worker's counters into the ones heartbeats report.
    fn publish_stats(&self) {
        self.counters.publish(
            self.worker,
            crate::counters::WorkerStats {
                engine: self.engine.stats(),
                kernel_drops: self.kernel_drops,
                user_drops: 0,
            },
        );
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
                    Counters::add(&self.counters.input_errors, 1);
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

    /// Live capture with `threads` workers sharing one fanout group.
    fn live(&mut self, name: &str) -> Result<(), CaptureError> {
        let fanout = (self.threads > 1).then(rand::random::<u16>);
        // Open every socket first, so that a bad interface or a missing
        // capability fails before anything runs.
        let mut captures = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            captures.push(live::open(name, fanout)?);
        }
        tracing::info!(interface = name, workers = self.threads, "capturing");
        let mut first = captures.remove(0);
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, capture) in captures.into_iter().enumerate() {
                let mut w = Producer::worker(
                    self.spool.clone(),
                    self.builder.clone(),
                    self.counters.clone(),
                    self.stop.clone(),
                    0,
                    self.threads,
                    i + 1,
                );
                let name = name.to_string();
                handles.push(scope.spawn(move || {
                    let mut capture = capture;
                    w.live_loop(&name, &mut capture)
                }));
            }
            let mut result = self.live_loop(name, &mut first);
            // one worker failing stops the others
            self.stop.store(true, Ordering::Relaxed);
            for h in handles {
                match h.join() {
                    Ok(Err(e)) if result.is_ok() => result = Err(e),
                    Err(_) if result.is_ok() => {
                        result = Err(live::LiveError::Io {
                            name: name.to_string(),
                            source: std::io::Error::other("capture worker panicked"),
                        }
                        .into())
                    }
                    _ => {}
                }
            }
            result
        })
    }

    fn live_loop(&mut self, name: &str, capture: &mut live::Capture) -> Result<(), CaptureError> {
        let mut last_tick = Instant::now();
        loop {
            if self.stopping() {
                self.engine.finish(&mut self.out);
                self.commit(None)?;
                return Ok(());
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                self.engine.tick(OffsetDateTime::now_utc(), &mut self.out);
                if let Some(k) = capture.kernel_stats() {
                    self.kernel_drops += k.drops;
                    if k.drops > 0 {
                        tracing::warn!(
                            interface = name,
                            dropped = k.drops,
                            "the kernel dropped packets: capture too slow"
                        );
                    }
                }
                self.publish_stats();
                last_tick = Instant::now();
            }
            match capture.rx.next() {
                Ok(frame) => self.process(1, OffsetDateTime::now_utc(), frame),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => return Err(live::LiveError::Io { name: name.to_string(), source }.into()),
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
