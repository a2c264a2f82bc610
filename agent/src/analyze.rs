//! `canhgac-agent analyze`: the detection engine over capture files, EVE
//! JSON lines on stdout, a summary on stderr. The same engine the daemon
//! runs; nothing is spooled or sent.

use std::{
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use crate::{
    capture::pcap::{PacketReader, PcapError, RawPacket},
    config::{self, ResolveError},
    detect::{EngineBuilder, EngineConfig, EngineStats, Output, ioc},
    eve::EveTypes,
};

#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub pcaps: Vec<PathBuf>,
    pub ioc: Vec<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub config: Option<PathBuf>,
    /// `None`: from the config, else alerts only.
    pub eve: Option<EveTypes>,
    /// Engines in parallel threads (1: one, in this thread; 0: the
    /// configuration's `capture.threads`, 1 without a configuration).
    pub workers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Config(#[from] ResolveError),
    #[error(transparent)]
    Ioc(#[from] ioc::IocError),
    #[error(transparent)]
    Pcap(#[from] PcapError),
    #[error("cannot read rules: {0}")]
    Rules(std::io::Error),
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub stats: EngineStats,
    pub files: usize,
    /// Files that ended early because they were damaged or truncated.
    pub damaged_files: usize,
    pub ioc_entries: usize,
    pub ioc_lines_skipped: usize,
    /// Signature rules loaded and rules seen (enabled lines).
    pub rules_loaded: usize,
    pub rules_total: usize,
    /// Engines that ran in parallel.
    pub workers: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn line(&self) -> String {
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "packets={} bytes={} flows={} alerts={} events={} decode_errors={} unknown_link={} damaged_files={} \
             dropped_flows={} dropped_fragments={} tcp_gaps={} dns_errors={} tls_errors={} http_errors={} \
             ioc_entries={} ioc_lines_skipped={} rules_loaded={} rules_total={} secret_scan_objects={} \
             secret_scan_hits={} secret_scan_limits_hit={} secret_scan_errors={} workers={} elapsed={:.3}s \
             packets_per_sec={:.0}",
            s.packets,
            s.bytes,
            s.flows.created,
            s.alerts,
            s.events,
            s.decode_errors,
            s.unknown_link,
            self.damaged_files,
            s.flows.evicted,
            s.defrag.timeouts + s.defrag.evicted + s.defrag.invalid,
            s.tcp_gaps,
            s.dns_errors,
            s.tls_errors,
            s.http_errors,
            self.ioc_entries,
            self.ioc_lines_skipped,
            self.rules_loaded,
            self.rules_total,
            s.secrets.objects,
            s.secrets.hits,
            s.secrets.limits_hit,
            s.secrets.errors,
            self.workers,
            secs,
            s.packets as f64 / secs,
        )
    }
}

pub fn run(opts: &AnalyzeOptions, out: &mut impl Write) -> Result<Summary, AnalyzeError> {
    let summary = records(opts, &mut eve_lines(out))?;
    out.flush().map_err(AnalyzeError::Output)?;
    Ok(summary)
}

/// Runs the engine over the captures like [`run`], handing each record (EVE
/// JSON and typed facts) to `each` in order.
pub fn records(
    opts: &AnalyzeOptions,
    each: &mut dyn FnMut(crate::spool::NewRecord) -> std::io::Result<()>,
) -> Result<Summary, AnalyzeError> {
    if opts.pcaps.is_empty() {
        return Err(AnalyzeError::Usage("nothing to analyze: pass --pcap FILE".into()));
    }
    let cfg = config::load_file(opts.config.as_deref())?;
    let mut ioc_files = cfg.ioc_files.clone();
    ioc_files.extend(opts.ioc.iter().cloned());
    let (ioc, skipped) = ioc::IocSet::load(&ioc_files)?;
    for e in skipped.iter().take(20) {
        tracing::warn!(error = %e, "indicator line skipped");
    }
    let ioc_entries = ioc.len();
    let mut rule_files = cfg.rule_files.clone();
    rule_files.extend(opts.rules.iter().cloned());
    let (rules, rules_loaded, rules_total) = if rule_files.is_empty() {
        (None, 0, 0)
    } else {
        let (set, report) =
            crate::rules::RuleSet::load(&rule_files, &cfg.rule_vars, cfg.classification.as_deref())
                .map_err(AnalyzeError::Rules)?;
        if !report.skipped.is_empty() {
            let reasons: Vec<String> =
                report.reasons().iter().take(8).map(|(r, n)| format!("{r}: {n}")).collect();
            tracing::warn!(
                skipped = report.skipped.len(),
                reasons = %reasons.join("; "),
                "rules skipped (`canhgac-agent rules check` lists them)"
            );
        }
        (Some(Arc::new(set)), report.loaded, report.total)
    };
    crate::eve::set_community_id_seed(cfg.community_id_seed);
    let engine_cfg = EngineConfig {
        ioc_severity: cfg.ioc_severity,
        dedup_capacity: cfg.dedup_capacity,
        eve: opts.eve.unwrap_or(cfg.eve_types),
        behaviour: cfg.behaviour.clone(),
        rules,
        secrets: cfg.secrets.clone(),
        ..Default::default()
    };
    let builder = EngineBuilder::new(Arc::new(ioc), engine_cfg, Vec::new());
    let started = Instant::now();
    let n = if opts.workers == 0 { cfg.capture_threads } else { opts.workers };
    let (stats, damaged) = if n > 1 {
        workers::run(&builder, n, &opts.pcaps, each)?
    } else {
        let mut engine = builder.build();
        let mut batch = Output::default();
        let damaged = each_frame(&opts.pcaps, |raw| {
            engine.on_frame(raw.linktype, OffsetDateTime::UNIX_EPOCH + raw.ts, &raw.data, &mut batch);
            if batch.records.len() >= 256 {
                flush(&mut batch, each)?;
            }
            Ok(())
        })?;
        engine.finish(&mut batch);
        flush(&mut batch, each)?;
        (engine.stats(), damaged)
    };
    Ok(Summary {
        stats,
        files: opts.pcaps.len(),
        damaged_files: damaged,
        ioc_entries,
        ioc_lines_skipped: skipped.len(),
        rules_loaded,
        rules_total,
        workers: n.max(1),
        elapsed: started.elapsed(),
    })
}

/// Hands every frame of the captures, in order, to `frame`. A damaged or
/// truncated file stops where the damage is (warned and counted); returns
/// the files that ended early.
fn each_frame(
    pcaps: &[PathBuf],
    mut frame: impl FnMut(RawPacket<'_>) -> Result<(), AnalyzeError>,
) -> Result<usize, AnalyzeError> {
    let mut damaged = 0;
    for path in pcaps {
        let mut reader = PacketReader::open(path)?;
        loop {
            match reader.next_packet() {
                Ok(Some(raw)) => frame(raw)?,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "capture file damaged; stopping this file here");
                    damaged += 1;
                    break;
                }
            }
        }
    }
    Ok(damaged)
}

/// Several engines over the same captures: the packets of a flow go to one
/// of them by a hash of the flow, as `PACKET_FANOUT_HASH` spreads a live
/// interface over the workers of `capture.threads`.
mod workers {
    use std::{
        hash::BuildHasher as _,
        net::IpAddr,
        ops::Range,
        path::PathBuf,
        sync::{
            Condvar, Mutex,
            mpsc::{self, Receiver, Sender},
        },
        time::Duration,
    };

    use time::OffsetDateTime;

    use super::AnalyzeError;
    use crate::{
        decode::{self, LinkType, PROTO_TCP},
        detect::{Engine, EngineBuilder, EngineStats, Output},
        spool::NewRecord,
    };

    /// A batch is handed to its worker at this many packets or bytes.
    const BATCH_PACKETS: usize = 512;
    const BATCH_BYTES: usize = 256 << 10;
    /// Bytes of packets read but not yet analysed, over all workers, above
    /// which the reader waits. One budget rather than a queue per worker:
    /// a long run of one flow (the concatenated captures of the benchmark
    /// are made of them) backs up its worker's queue while the reader goes
    /// on feeding the others (a queue of 8 batches of 256 packets per
    /// worker gave 1.42x one worker; this, 1.74x: README, "Two workers
    /// against one"). 8 MiB ran faster than 2, 4 or 32.
    const IN_FLIGHT_BYTES: usize = 8 << 20;

    /// The bytes in flight, and a wait for room.
    #[derive(Default)]
    struct Budget {
        state: Mutex<Flight>,
        room: Condvar,
    }

    #[derive(Default)]
    struct Flight {
        bytes: usize,
        /// A worker has ended: the reader must not wait for it.
        worker_gone: bool,
        /// The reader waits for room (a notification is a system call:
        /// only then).
        reader_waits: bool,
    }

    /// Marks the end of a worker, however it ends (a panic included), so
    /// that a reader waiting for room sees it and stops waiting.
    struct Leaving<'a>(&'a Budget);

    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            self.0.lock().worker_gone = true;
            self.0.room.notify_all();
        }
    }

    impl Budget {
        fn lock(&self) -> std::sync::MutexGuard<'_, Flight> {
            self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Waits until `n` more bytes fit (always when none are in flight)
        /// or a worker has ended (the send that follows then fails).
        fn take(&self, n: usize) {
            let mut f = self.lock();
            while f.bytes > 0 && f.bytes + n > IN_FLIGHT_BYTES && !f.worker_gone {
                f.reader_waits = true;
                f = self.room.wait(f).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            f.reader_waits = false;
            f.bytes += n;
        }

        fn give(&self, n: usize) {
            let mut f = self.lock();
            f.bytes = f.bytes.saturating_sub(n);
            // wake the reader at half the budget, not for every batch: a
            // wake-up is two system calls and a switch
            if f.reader_waits && f.bytes <= IN_FLIGHT_BYTES / 2 {
                self.room.notify_one();
            }
        }
    }

    /// Frames for one worker in one buffer (both allocations reused).
    #[derive(Default)]
    struct Batch {
        data: Vec<u8>,
        frames: Vec<(u32, Duration, Range<usize>)>,
    }

    /// The worker of `n` a frame goes to: a hash of its two ends that does
    /// not depend on the direction. TCP ends are address and port; for
    /// other protocols only the addresses count, so that an IP fragment
    /// (which has no ports) goes where the rest of its datagram's flow goes.
    /// A frame that does not decode goes to worker 0, which counts it.
    pub(super) fn worker_of(linktype: u32, data: &[u8], n: usize) -> usize {
        let Some(link) = LinkType::from_linktype(linktype) else { return 0 };
        let Ok(Some(p)) = decode::decode(link, OffsetDateTime::UNIX_EPOCH, data) else { return 0 };
        let (sp, dp) = if p.proto == PROTO_TCP && p.frag.is_none() { (p.sport, p.dport) } else { (0, 0) };
        let (a, b): ((IpAddr, u16), (IpAddr, u16)) = ((p.src, sp), (p.dst, dp));
        let ends = if a <= b { (a, b) } else { (b, a) };
        let h = foldhash::fast::FixedState::with_seed(0x6361_6e68_6761_6321).hash_one(ends);
        (h % n as u64) as usize
    }

    /// One worker: its engine over the batches it is given, until the
    /// reader closes its queue; then the flows still open end.
    fn work(
        mut engine: Engine,
        budget: &Budget,
        queue: Receiver<Batch>,
        free: Sender<Batch>,
        found: Sender<Vec<NewRecord>>,
    ) -> EngineStats {
        let _leaving = Leaving(budget);
        let mut out = Output::default();
        for mut b in queue {
            for (linktype, ts, range) in &b.frames {
                let frame = b.data.get(range.clone()).unwrap_or_default();
                engine.on_frame(*linktype, OffsetDateTime::UNIX_EPOCH + *ts, frame, &mut out);
            }
            budget.give(b.data.len());
            b.data.clear();
            b.frames.clear();
            let _ = free.send(b);
            // offline analysis persists nothing
            out.state.clear();
            if !out.records.is_empty() && found.send(std::mem::take(&mut out.records)).is_err() {
                break;
            }
        }
        engine.finish(&mut out);
        if !out.records.is_empty() {
            let _ = found.send(out.records);
        }
        engine.stats()
    }

    /// Hands on what the workers found so far.
    fn drain(
        found: &Receiver<Vec<NewRecord>>,
        each: &mut dyn FnMut(NewRecord) -> std::io::Result<()>,
    ) -> Result<(), AnalyzeError> {
        while let Ok(records) = found.try_recv() {
            for r in records {
                each(r).map_err(AnalyzeError::Output)?;
            }
        }
        Ok(())
    }

    fn worker_gone() -> AnalyzeError {
        AnalyzeError::Output(std::io::Error::other("an analysis worker ended early"))
    }

    /// Queues worker `i`'s batch, first handing on what the workers found
    /// (the reader may wait here for a worker: that is the back-pressure).
    fn send(
        i: usize,
        queues: &mut [(Sender<Batch>, Batch)],
        budget: &Budget,
        free: &Receiver<Batch>,
        found: &Receiver<Vec<NewRecord>>,
        each: &mut dyn FnMut(NewRecord) -> std::io::Result<()>,
    ) -> Result<(), AnalyzeError> {
        drain(found, each)?;
        let Some((tx, b)) = queues.get_mut(i) else { return Ok(()) };
        budget.take(b.data.len());
        let next = free.try_recv().unwrap_or_default();
        tx.send(std::mem::replace(b, next)).map_err(|_| worker_gone())
    }

    /// Reads the captures in this thread and spreads their frames over `n`
    /// engines (from `builder`: they share the behavioural detectors and
    /// the rules' thresholds). Records reach `each` in this thread, in the
    /// order each worker found them. Returns the engines' counters, added,
    /// and the files that ended early because they were damaged.
    pub(super) fn run(
        builder: &EngineBuilder,
        n: usize,
        pcaps: &[PathBuf],
        each: &mut dyn FnMut(NewRecord) -> std::io::Result<()>,
    ) -> Result<(EngineStats, usize), AnalyzeError> {
        let budget = &Budget::default();
        std::thread::scope(|scope| {
            // unbounded: a worker never waits on the reader, which waits
            // for room in the budget of packets in flight, so memory stays
            // bounded by what those packets can produce
            let (found_tx, found) = mpsc::channel::<Vec<NewRecord>>();
            let (free_tx, free) = mpsc::channel::<Batch>();
            let mut queues: Vec<(Sender<Batch>, Batch)> = Vec::with_capacity(n);
            let mut handles = Vec::with_capacity(n);
            for i in 0..n {
                let (tx, rx) = mpsc::channel::<Batch>();
                let engine = builder.build();
                let (found_tx, free_tx) = (found_tx.clone(), free_tx.clone());
                let h = std::thread::Builder::new()
                    .name(format!("analyze-{i}"))
                    .spawn_scoped(scope, move || work(engine, budget, rx, free_tx, found_tx))
                    .map_err(AnalyzeError::Output)?;
                handles.push(h);
                queues.push((tx, Batch::default()));
            }
            drop((found_tx, free_tx));
            let mut read = || -> Result<usize, AnalyzeError> {
                let damaged = super::each_frame(pcaps, |raw| {
                    let i = worker_of(raw.linktype, &raw.data, n);
                    let Some((_, b)) = queues.get_mut(i) else { return Ok(()) };
                    let start = b.data.len();
                    b.data.extend_from_slice(&raw.data);
                    b.frames.push((raw.linktype, raw.ts, start..b.data.len()));
                    if b.frames.len() >= BATCH_PACKETS || b.data.len() >= BATCH_BYTES {
                        send(i, &mut queues, budget, &free, &found, each)?;
                    }
                    Ok(())
                })?;
                for i in 0..n {
                    if queues.get(i).is_some_and(|(_, b)| !b.frames.is_empty()) {
                        send(i, &mut queues, budget, &free, &found, each)?;
                    }
                }
                Ok(damaged)
            };
            let mut result = read();
            // closing the queues ends the workers (after their open flows)
            drop(queues);
            for records in found.iter() {
                for r in records {
                    if result.is_ok()
                        && let Err(e) = each(r)
                    {
                        result = Err(AnalyzeError::Output(e));
                    }
                }
            }
            let mut stats = EngineStats::default();
            for h in handles {
                match h.join() {
                    Ok(s) => stats.absorb(&s),
                    Err(_) => result = result.and_then(|_| Err(worker_gone())),
                }
            }
            result.map(|damaged| (stats, damaged))
        })
    }
}

/// Writes each record's EVE JSON as one line.
pub(crate) fn eve_lines(
    out: &mut impl Write,
) -> impl FnMut(crate::spool::NewRecord) -> std::io::Result<()> + '_ {
    |r| {
        out.write_all(&r.eve_json)?;
        out.write_all(b"\n")
    }
}

/// Hands the batch's records on (state changes are dropped: offline
/// analysis persists nothing).
pub(crate) fn flush(
    batch: &mut Output,
    each: &mut dyn FnMut(crate::spool::NewRecord) -> std::io::Result<()>,
) -> Result<(), AnalyzeError> {
    for r in batch.records.drain(..) {
        each(r).map_err(AnalyzeError::Output)?;
    }
    batch.state.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::IpAddr, path::Path};

    use time::OffsetDateTime;

    use super::workers::worker_of;
    use crate::{
        capture::pcap::PacketReader,
        decode::{self, LinkType},
    };

    /// On real captures (fragmented IPv6 DNS, GRE and Teredo tunnels,
    /// scans, TLS): every packet of a flow, both directions and every
    /// fragment, goes to the same worker, and the flows are spread.
    #[test]
    fn a_flow_goes_to_one_worker() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/detect/_pcap");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 20);
        for n in [2usize, 3] {
            // the addresses of a datagram's flow (fragments have no ports)
            let mut by_pair: HashMap<(IpAddr, IpAddr), usize> = HashMap::new();
            let mut by_flow: HashMap<(IpAddr, u16, IpAddr, u16), usize> = HashMap::new();
            let mut used = vec![0usize; n];
            let mut fragments = 0;
            for path in &paths {
                let mut r = PacketReader::open(path).unwrap();
                while let Some(raw) = r.next_packet().unwrap() {
                    let w = worker_of(raw.linktype, &raw.data, n);
                    assert!(w < n);
                    let link = LinkType::from_linktype(raw.linktype).unwrap();
                    let Ok(Some(p)) = decode::decode(link, OffsetDateTime::UNIX_EPOCH, &raw.data) else {
                        assert_eq!(w, 0, "{}: a frame that does not decode goes to worker 0", path.display());
                        continue;
                    };
                    used[w] += 1;
                    let pair = if p.src <= p.dst { (p.src, p.dst) } else { (p.dst, p.src) };
                    if p.proto == 6 && p.frag.is_none() {
                        let (a, b) = ((p.src, p.sport), (p.dst, p.dport));
                        let (a, b) = if a <= b { (a, b) } else { (b, a) };
                        let seen = *by_flow.entry((a.0, a.1, b.0, b.1)).or_insert(w);
                        assert_eq!(seen, w, "{}: TCP flow {a:?} {b:?} on two workers", path.display());
                    } else {
                        fragments += usize::from(p.frag.is_some());
                        let seen = *by_pair.entry(pair).or_insert(w);
                        assert_eq!(seen, w, "{}: {pair:?} on two workers", path.display());
                    }
                }
            }
            assert!(fragments > 0, "the captures hold fragments");
            assert!(used.iter().all(|u| *u > 0), "every worker gets packets: {used:?}");
        }
    }
}
