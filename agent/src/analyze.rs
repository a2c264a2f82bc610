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
    capture::pcap::{PacketReader, PcapError},
    config::{self, ResolveError},
    detect::{Engine, EngineConfig, EngineStats, Output, ioc},
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
             secret_scan_hits={} secret_scan_limits_hit={} secret_scan_errors={} elapsed={:.3}s \
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
    let mut engine = Engine::new(Arc::new(ioc), engine_cfg, Vec::new());
    let started = Instant::now();
    let mut damaged = 0;
    let mut batch = Output::default();
    for path in &opts.pcaps {
        let mut reader = PacketReader::open(path)?;
        loop {
            match reader.next_packet() {
                Ok(Some(raw)) => {
                    engine.on_frame(raw.linktype, OffsetDateTime::UNIX_EPOCH + raw.ts, &raw.data, &mut batch);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "capture file damaged; stopping this file here");
                    damaged += 1;
                    break;
                }
            }
            if batch.records.len() >= 256 {
                flush(&mut batch, each)?;
            }
        }
    }
    engine.finish(&mut batch);
    flush(&mut batch, each)?;
    Ok(Summary {
        stats: engine.stats(),
        files: opts.pcaps.len(),
        damaged_files: damaged,
        ioc_entries,
        ioc_lines_skipped: skipped.len(),
        rules_loaded,
        rules_total,
        elapsed: started.elapsed(),
    })
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
