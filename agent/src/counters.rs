//! Counters of the running agent, reported in every heartbeat.

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Instant,
};

use canhgac_proto::v1::{AgentCounters, SeverityCount};

use crate::spool::SpoolStats;

#[derive(Debug)]
pub struct Counters {
    pub packets_captured: AtomicU64,
    pub bytes_captured: AtomicU64,
    pub packets_dropped_kernel: AtomicU64,
    pub packets_dropped_user: AtomicU64,
    pub decode_errors: AtomicU64,
    pub alerts_suppressed: AtomicU64,
    pub dedup_evictions: AtomicU64,
    pub ioc_entries: AtomicU64,
    pub ioc_lines_rejected: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub connects: AtomicU64,
    pub flows_evicted: AtomicU64,
    pub defrag_dropped: AtomicU64,
    pub tcp_gaps: AtomicU64,
    started: Instant,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets_captured: AtomicU64::new(0),
            bytes_captured: AtomicU64::new(0),
            packets_dropped_kernel: AtomicU64::new(0),
            packets_dropped_user: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            alerts_suppressed: AtomicU64::new(0),
            dedup_evictions: AtomicU64::new(0),
            ioc_entries: AtomicU64::new(0),
            ioc_lines_rejected: AtomicU64::new(0),
            batches_rejected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            flows_evicted: AtomicU64::new(0),
            defrag_dropped: AtomicU64::new(0),
            tcp_gaps: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self, spool: &SpoolStats) -> AgentCounters {
        AgentCounters {
            packets_captured: self.packets_captured.load(Relaxed),
            bytes_captured: self.bytes_captured.load(Relaxed),
            packets_dropped_kernel: self.packets_dropped_kernel.load(Relaxed),
            packets_dropped_user: self.packets_dropped_user.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            records_produced: spool.produced,
            records_acked: spool.acked,
            spool_records: spool.records,
            spool_bytes: spool.bytes,
            spool_max_bytes: spool.max_bytes,
            spool_dropped: spool.dropped_total(),
            spool_dropped_by_severity: spool
                .dropped
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| SeverityCount { severity: i as u32 + 1, count: *n })
                .collect(),
            records_dropped_oversize: spool.oversize,
            batches_rejected: self.batches_rejected.load(Relaxed),
            connects: self.connects.load(Relaxed),
            ioc_lines_rejected: self.ioc_lines_rejected.load(Relaxed),
            ioc_entries: self.ioc_entries.load(Relaxed),
            alerts_suppressed: self.alerts_suppressed.load(Relaxed),
            dedup_evictions: self.dedup_evictions.load(Relaxed),
            uptime_seconds: self.started.elapsed().as_secs(),
            flows_evicted: self.flows_evicted.load(Relaxed),
            fragments_dropped: self.defrag_dropped.load(Relaxed),
            tcp_reassembly_gaps: self.tcp_gaps.load(Relaxed),
        }
    }
}
