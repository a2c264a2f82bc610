//! Counters of the running agent, reported in every heartbeat.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use canhgac_proto::v1::{AgentCounters, SeverityCount};

use crate::{detect::EngineStats, spool::SpoolStats};

/// What one capture worker reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerStats {
    pub engine: EngineStats,
    /// Dropped by the kernel before the worker read them (live capture).
    pub kernel_drops: u64,
    /// Dropped inside the agent.
    pub user_drops: u64,
}

#[derive(Debug)]
pub struct Counters {
    workers: Mutex<Vec<WorkerStats>>,
    pub ioc_entries: AtomicU64,
    pub ioc_lines_rejected: AtomicU64,
    pub rules_loaded: AtomicU64,
    pub rules_skipped: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub connects: AtomicU64,
    /// Capture files that ended in damage (the rest of the file is lost).
    pub input_errors: AtomicU64,
    /// Capture replays resumed after a restart whose recomputed records
    /// differed from those committed (see `capture`); each also commits a
    /// `canhgac_notice` event, which is how the collector learns of it.
    pub replay_diverged: AtomicU64,
    /// The host sensor's counters.
    pub host: std::sync::Arc<crate::host::HostCounters>,
    /// Seconds from sending a batch to its acknowledgement.
    pub ack_seconds: prometheus_client::metrics::histogram::Histogram,
    started: Instant,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            workers: Mutex::new(Vec::new()),
            ioc_entries: AtomicU64::new(0),
            ioc_lines_rejected: AtomicU64::new(0),
            rules_loaded: AtomicU64::new(0),
            rules_skipped: AtomicU64::new(0),
            batches_rejected: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            input_errors: AtomicU64::new(0),
            replay_diverged: AtomicU64::new(0),
            host: Default::default(),
            ack_seconds: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14),
            ),
            started: Instant::now(),
        }
    }
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Records the latest figures of capture worker `index`.
    pub fn publish(&self, index: usize, stats: WorkerStats) {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() <= index {
            w.resize(index + 1, WorkerStats::default());
        }
        w[index] = stats;
    }

    /// Sum over the workers.
    pub fn workers(&self) -> WorkerStats {
        let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = WorkerStats::default();
        for s in w.iter() {
            let e = &s.engine;
            t.engine.packets += e.packets;
            t.engine.bytes += e.bytes;
            t.engine.decode_errors += e.decode_errors + e.unknown_link;
            t.engine.suppressed += e.suppressed;
            t.engine.dedup_evictions += e.dedup_evictions;
            t.engine.flows.evicted += e.flows.evicted;
            t.engine.defrag.timeouts += e.defrag.timeouts + e.defrag.evicted + e.defrag.invalid;
            t.engine.tcp_gaps += e.tcp_gaps;
            t.engine.rules.threshold_evictions += e.rules.threshold_evictions;
            t.engine.rules.dataset_refused += e.rules.dataset_refused;
            t.engine.rules.inspection_limit_hits += e.rules.inspection_limit_hits;
            t.engine.behaviour.evictions = t.engine.behaviour.evictions.max(e.behaviour.evictions);
            t.engine.secrets.objects += e.secrets.objects;
            t.engine.secrets.limits_hit += e.secrets.limits_hit;
            t.engine.secrets.errors += e.secrets.errors;
            t.kernel_drops += s.kernel_drops;
            t.user_drops += s.user_drops;
        }
        t
    }

    pub fn snapshot(&self, spool: &SpoolStats) -> AgentCounters {
        let w = self.workers();
        AgentCounters {
            packets_captured: w.engine.packets,
            bytes_captured: w.engine.bytes,
            packets_dropped_kernel: w.kernel_drops,
            packets_dropped_user: w.user_drops,
            decode_errors: w.engine.decode_errors + self.input_errors.load(Relaxed),
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
            alerts_suppressed: w.engine.suppressed,
            dedup_evictions: w.engine.dedup_evictions + w.engine.behaviour.evictions,
            uptime_seconds: self.started.elapsed().as_secs(),
            flows_evicted: w.engine.flows.evicted,
            fragments_dropped: w.engine.defrag.timeouts,
            tcp_reassembly_gaps: w.engine.tcp_gaps,
            rules_loaded: self.rules_loaded.load(Relaxed),
            rules_skipped: self.rules_skipped.load(Relaxed),
            rule_threshold_evictions: w.engine.rules.threshold_evictions,
            rule_dataset_refused: w.engine.rules.dataset_refused,
            rule_inspection_limit_hits: w.engine.rules.inspection_limit_hits,
            host_log_lines: self.host.log_lines.load(Relaxed),
            host_log_lines_skipped: self.host.log_lines_skipped.load(Relaxed),
            host_log_read_errors: self.host.log_read_errors.load(Relaxed),
            host_journal_unavailable: self.host.journal_unavailable.load(Relaxed),
            host_auth_events: self.host.auth_events.load(Relaxed),
            host_web_requests: self.host.web_requests.load(Relaxed),
            host_fim_files: self.host.fim_files.load(Relaxed),
            host_fim_changes: self.host.fim_changes.load(Relaxed),
            host_fim_skipped: self.host.fim_skipped.load(Relaxed),
            host_tracker_evictions: self.host.tracker_evictions.load(Relaxed),
            host_syslog_messages: self.host.syslog_messages.load(Relaxed),
            host_syslog_refused: self.host.syslog_refused.load(Relaxed),
            host_syslog_rate_limited: self.host.syslog_rate_limited.load(Relaxed),
            host_syslog_queue_full: self.host.syslog_queue_full.load(Relaxed),
            host_syslog_garbage: self.host.syslog_garbage.load(Relaxed),
            host_syslog_truncated: self.host.syslog_truncated.load(Relaxed),
            host_syslog_tls_failures: self.host.syslog_tls_failures.load(Relaxed),
            host_syslog_unparsed: self.host.syslog_unparsed.load(Relaxed),
            host_firewall_events: self.host.firewall_events.load(Relaxed),
            host_windows_events: self.host.windows_events.load(Relaxed),
            spool_disk_bytes: spool.disk_bytes,
            spool_payload_cap: spool.payload_cap,
            spool_storage_failures: spool.storage_failures,
            spool_full: spool.full,
            replay_diverged: self.replay_diverged.load(Relaxed),
            secret_scan_files: self.host.secret_files.load(Relaxed),
            secret_scan_objects: w.engine.secrets.objects,
            secret_scan_limits_hit: self.host.secret_limits_hit.load(Relaxed) + w.engine.secrets.limits_hit,
            secret_scan_errors: self.host.secret_errors.load(Relaxed) + w.engine.secrets.errors,
            secret_scan_last_completed: self.host.secret_last_completed.load(Relaxed) as i64,
        }
    }
}
