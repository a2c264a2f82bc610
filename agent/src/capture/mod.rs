//! Packet sources and the producer loop: read → decode → detect → spool.
//!
//! Runs on its own thread (blocking I/O). Records are committed to the
//! spool in chunks (every 4096 packets, 512 records or 200 ms), each chunk
//! with the source's checkpoint and the detector state, then flushed.
//!
//! # Exact replay of capture files
//!
//! The checkpoint of `pcap:<path>:<size>` is the number of packets already
//! processed (and whether the file is done), with the run it belongs to
//! (the list of files), the number of records the run had produced up to
//! there and a digest of them. Everything the engine derives from packets
//! (flows in flight, TCP streams, application parsers, signature and
//! behavioural detector state, indicator deduplication) depends on every
//! packet before, and none of it is persisted: after a restart the files
//! of the list are replayed **from their first packet** with a fresh engine
//! ([`EngineBuilder::build_fresh`]), as fast as possible, and what the
//! engine produces up to the checkpoint is dropped, since it was committed
//! before. From the checkpoint on, records are committed again. So an
//! agent killed at any point produces exactly the records of an
//! uninterrupted run (and of `canhgac-agent analyze` on the same files),
//! at the price of re-reading the files at each restart. A list whose files
//! are all done is skipped.
//!
//! The records recomputed before the checkpoint are counted and digested:
//! if they differ from what was committed (the configuration, rules or
//! indicators changed between the runs, a policy update swapped the
//! engine), the replay is not exact; the agent logs it and commits one
//! `canhgac_notice` event (`notice: "replay_diverged"`) that reaches the
//! collector. Checkpoints written before this scheme (no run mark) are
//! honoured by position without that check.

pub mod live;
pub mod pcap;

use std::{
    path::{Path, PathBuf},
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

/// Where a replay run stood at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunMark {
    /// The run: digest of the list of files (paths and sizes).
    id: [u8; 16],
    /// Records the run produced up to the checkpoint, and their digest.
    records: u64,
    digest: [u8; 16],
}

/// A capture file's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Checkpoint {
    packets: u64,
    done: bool,
    run: Option<RunMark>,
}

/// Checkpoint value: packets processed (u64 BE), 1 if the file is done,
/// then the run mark (id, records u64 BE, digest); older values have only
/// the first 9 bytes.
fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + 40);
    v.extend_from_slice(&c.packets.to_be_bytes());
    v.push(c.done as u8);
    if let Some(m) = &c.run {
        v.extend_from_slice(&m.id);
        v.extend_from_slice(&m.records.to_be_bytes());
        v.extend_from_slice(&m.digest);
    }
    v
}

fn decode_checkpoint(v: &[u8]) -> Checkpoint {
    let Some(b) = v.get(..9) else { return Checkpoint::default() };
    let packets = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let run = v.get(9..49).map(|m| RunMark {
        id: m[..16].try_into().unwrap_or([0; 16]),
        records: u64::from_be_bytes(m[16..24].try_into().unwrap_or([0; 8])),
        digest: m[24..40].try_into().unwrap_or([0; 16]),
    });
    Checkpoint { packets, done: b[8] == 1, run }
}

/// Until the input reaches `file`/`packets`, what the engine produces was
/// committed by an earlier run: recomputed, not committed again.
#[derive(Debug, Clone, Copy)]
struct Skip {
    file: usize,
    packets: u64,
    /// What the earlier run had produced there (absent: older checkpoint).
    mark: Option<RunMark>,
}

/// The replay run in progress: every record it produced, in order.
#[derive(Clone, Default)]
struct RunState {
    id: [u8; 16],
    records: u64,
    digest: sha2::Sha256,
    skip: Option<Skip>,
    /// Paths of the files, for messages.
    files: Vec<String>,
}

impl RunState {
    fn account(&mut self, records: &[crate::spool::NewRecord]) {
        use sha2::Digest as _;
        for r in records {
            self.digest.update([r.kind as u8, r.severity as u8]);
            self.digest.update((r.eve_json.len() as u64).to_be_bytes());
            self.digest.update(&r.eve_json);
        }
        self.records += records.len() as u64;
    }

    fn mark(&self) -> RunMark {
        use sha2::Digest as _;
        let d = self.digest.clone().finalize();
        RunMark { id: self.id, records: self.records, digest: d[..16].try_into().unwrap_or([0; 16]) }
    }
}

fn run_id(sources: &[String]) -> [u8; 16] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for s in sources {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.finalize()[..16].try_into().unwrap_or([0; 16])
}

/// Default ring of a live capture worker, MiB (`capture.ring_mib`): 128 ms
/// of a saturated 1 Gbit/s link. The ring counts in the agent's memory.
pub const DEFAULT_RING_MIB: usize = 16;

/// How a live interface is captured.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Workers; above 1 they share a PACKET_FANOUT group.
    pub threads: usize,
    /// Ring of each worker, bytes.
    pub ring_bytes: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings { threads: 1, ring_bytes: DEFAULT_RING_MIB << 20 }
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
    /// Live capture: workers (PACKET_FANOUT when above 1) and ring size.
    pub live: LiveSettings,
    worker: usize,
    kernel_drops: u64,
    out: Output,
    last_commit: Instant,
    since_commit: u64,
    run: RunState,
}

impl Producer {
    pub fn new(
        spool: Spool,
        builder: Arc<EngineBuilder>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        replay_pps: u64,
        live: LiveSettings,
    ) -> Producer {
        Producer::worker(spool, builder, counters, stop, replay_pps, live, 0)
    }

    fn worker(
        spool: Spool,
        builder: Arc<EngineBuilder>,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
        replay_pps: u64,
        live: LiveSettings,
        worker: usize,
    ) -> Producer {
        Producer {
            engine: builder.build(),
            spool,
            builder,
            counters,
            stop,
            replay_pps,
            live: LiveSettings { threads: live.threads.max(1), ..live },
            worker,
            kernel_drops: 0,
            out: Output::default(),
            last_commit: Instant::now(),
            since_commit: 0,
            run: RunState::default(),
        }
    }

    pub fn run(&mut self, source: &Source) -> Result<(), CaptureError> {
        match source {
            Source::Pcap(files) => self.replay_files(files),
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

    /// Replays the files of the list in order through one engine (flows
    /// go on from one file to the next), from the first packet of the
    /// first file, committing only what comes after the checkpoint (see
    /// the module doc).
    fn replay_files(&mut self, files: &[PathBuf]) -> Result<(), CaptureError> {
        let mut sources = Vec::with_capacity(files.len());
        let mut checkpoints = Vec::with_capacity(files.len());
        for path in files {
            let size = std::fs::metadata(path)
                .map_err(|source| pcap::PcapError::Open { path: path.clone(), source })?
                .len();
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let source = format!("pcap:{}:{size}", canonical.display());
            checkpoints
                .push(self.spool.checkpoint(&source)?.map(|v| decode_checkpoint(&v)).unwrap_or_default());
            sources.push(source);
        }
        let Some(start) = checkpoints.iter().position(|c| !c.done) else {
            if !files.is_empty() {
                tracing::info!(files = files.len(), "captures already replayed completely; skipping");
            }
            return Ok(());
        };
        let id = run_id(&sources);
        let resume = checkpoints[start];
        self.run = RunState {
            id,
            skip: (start > 0 || resume.packets > 0).then_some(Skip {
                file: start,
                packets: resume.packets,
                mark: resume.run.filter(|m| m.id == id),
            }),
            files: files.iter().map(|f| f.display().to_string()).collect(),
            ..RunState::default()
        };
        // nothing derived from packets survives a restart: recompute it all
        self.engine = self.builder.build_fresh();
        if let Some(skip) = &self.run.skip {
            tracing::info!(
                file = %files[start].display(),
                resume = skip.packets,
                records = skip.mark.map(|m| m.records),
                "resuming capture replay: reading again from the first packet to recompute flows and detectors; \
                 records up to the checkpoint are not committed again"
            );
        }
        for (i, (path, source)) in files.iter().zip(&sources).enumerate() {
            if self.stopping() {
                break;
            }
            self.replay(i, path, source, i + 1 == files.len())?;
        }
        Ok(())
    }

    fn skipping(&self) -> bool {
        self.run.skip.is_some()
    }

    /// While skipping: the records just produced were committed before.
    fn discard(&mut self) {
        let records = std::mem::take(&mut self.out.records);
        self.run.account(&records);
        self.out.state.clear();
        self.since_commit = 0;
    }

    /// At file `file`, `packets` read: ends the skip at the checkpoint and
    /// checks that what was recomputed is what had been committed.
    fn check_reached(&mut self, file: usize, packets: u64) {
        let Some(skip) = self.run.skip else { return };
        if file < skip.file || (file == skip.file && packets < skip.packets) {
            return;
        }
        self.run.skip = None;
        let now = self.run.mark();
        match skip.mark {
            Some(m) if m.records != now.records || m.digest != now.digest => {
                let source = self.run.files.get(file).cloned().unwrap_or_default();
                tracing::warn!(
                    file = %source,
                    packets,
                    committed = m.records,
                    recomputed = now.records,
                    "replay diverged: the records recomputed up to the checkpoint differ from those committed \
                     (configuration, rules or indicators changed?); what follows may repeat or miss records"
                );
                let mut v = serde_json::Map::new();
                v.insert("timestamp".into(), canhgac_proto::timefmt::eve(OffsetDateTime::now_utc()).into());
                v.insert("event_type".into(), "canhgac_notice".into());
                v.insert(
                    "canhgac".into(),
                    serde_json::json!({
                        "notice": "replay_diverged",
                        "file": source,
                        "packets": packets,
                        "records_committed": m.records,
                        "records_recomputed": now.records,
                    }),
                );
                self.out.records.push(crate::spool::NewRecord {
                    kind: canhgac_proto::v1::RecordKind::Event,
                    severity: 0,
                    time: OffsetDateTime::now_utc(),
                    eve_json: serde_json::Value::Object(v).to_string().into_bytes(),
                    facts: None,
                });
                Counters::add(&self.counters.replay_diverged, 1);
            }
            Some(_) => tracing::info!(
                records = now.records,
                "replay reached the checkpoint: recomputed records identical"
            ),
            None => tracing::info!(
                records = now.records,
                "replay reached the checkpoint (older checkpoint: not verified)"
            ),
        }
    }

    /// The checkpoint of `source` after the records pending now.
    fn checkpoint_after(&mut self, packets: u64, done: bool) -> Vec<u8> {
        let pending = std::mem::take(&mut self.out.records);
        self.run.account(&pending);
        self.out.records = pending;
        encode_checkpoint(&Checkpoint { packets, done, run: Some(self.run.mark()) })
    }

    fn replay(&mut self, file: usize, path: &Path, source: &str, last: bool) -> Result<(), CaptureError> {
        let mut reader = pcap::PacketReader::open(path)?;
        tracing::info!(file = %path.display(), "replaying capture");
        // replay pace, from where the skip ended
        let mut pace: Option<(Instant, u64)> = None;
        loop {
            self.check_reached(file, reader.index());
            if self.stopping() {
                if !self.skipping() {
                    let cp = self.checkpoint_after(reader.index(), false);
                    self.commit(Some((source, &cp)))?;
                }
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
            if self.skipping() {
                self.discard();
                continue;
            }
            if self.commit_due() {
                let cp = self.checkpoint_after(reader.index(), false);
                self.commit(Some((source, &cp)))?;
            }
            if self.replay_pps > 0 {
                let (started, first) = *pace.get_or_insert((Instant::now(), reader.index()));
                let due = Duration::from_secs_f64((reader.index() - first) as f64 / self.replay_pps as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    #[allow(clippy::disallowed_methods)] // the capture thread is not async
                    std::thread::sleep(wait.min(Duration::from_millis(200)));
                }
            }
        }
        self.check_reached(file, reader.index());
        if last {
            // the capture is over: every flow ends and is logged
            self.engine.finish(&mut self.out);
        }
        if self.skipping() {
            // done before (an earlier file of the list)
            self.discard();
            return Ok(());
        }
        let cp = self.checkpoint_after(reader.index(), true);
        self.commit(Some((source, &cp)))?;
        tracing::info!(file = %path.display(), packets = reader.index(), "capture replayed");
        Ok(())
    }

    /// Live capture with `live.threads` workers sharing one fanout group.
    fn live(&mut self, name: &str) -> Result<(), CaptureError> {
        let LiveSettings { threads, ring_bytes } = self.live;
        let fanout = (threads > 1).then(rand::random::<u16>);
        // Open every socket first, so that a bad interface or a missing
        // capability fails before anything runs.
        let mut captures = Vec::with_capacity(threads);
        for _ in 0..threads {
            captures.push(live::open(name, fanout, ring_bytes)?);
        }
        tracing::info!(interface = name, workers = threads, ring_mib = ring_bytes >> 20, "capturing");
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
                    self.live,
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
            // a block at a time: every frame with the kernel's receive time
            capture
                .next_block(100, |frame, ns| {
                    let ts = OffsetDateTime::from_unix_timestamp_nanos(ns)
                        .unwrap_or_else(|_| OffsetDateTime::now_utc());
                    self.process(1, ts, frame)
                })
                .map_err(|source| live::LiveError::Io { name: name.to_string(), source })?;
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
        let c = Checkpoint { packets: 42, done: true, run: None };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&c)), c);
        let m = RunMark { id: [7; 16], records: 9, digest: [3; 16] };
        let c = Checkpoint { packets: 42, done: false, run: Some(m) };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&c)), c);
        // a value written before run marks: 9 bytes
        assert_eq!(decode_checkpoint(&encode_checkpoint(&c)[..9]), Checkpoint { run: None, ..c });
        assert_eq!(decode_checkpoint(b"x"), Checkpoint::default());
    }
}
