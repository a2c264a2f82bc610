//! `canhgac-agent analyze --log FILE...`: the authentication pipeline over
//! log files (plain or `.gz`), EVE JSON lines on stdout, a summary on
//! stderr. The same parser and detectors the daemon runs; nothing is
//! spooled or sent. Each file's year (RFC 3164 lines have none) is taken
//! from its modification time.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use super::{
    auth::{AuthPipeline, AuthStats},
    lines,
    logfmt::{self, Clock, LogFormat},
};
use crate::{analyze::AnalyzeError, config, detect::Output, eve::EveTypes};

#[derive(Debug, Clone, Default)]
pub struct LogAnalyzeOptions {
    pub logs: Vec<PathBuf>,
    pub format: LogFormat,
    pub config: Option<PathBuf>,
    /// `None`: from the config, else alerts only.
    pub eve: Option<EveTypes>,
}

#[derive(Debug, Clone)]
pub struct LogSummary {
    pub files: usize,
    pub unreadable_files: usize,
    pub bytes: u64,
    pub stats: AuthStats,
    pub elapsed: Duration,
}

impl LogSummary {
    pub fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "log_files={} unreadable_files={} lines={} bytes={} auth_events={} alerts={} binary_lines={} \
             truncated_lines={} unparsed_lines={} elapsed={:.3}s",
            self.files,
            self.unreadable_files,
            s.lines,
            self.bytes,
            s.events,
            s.alerts,
            s.binary,
            s.truncated,
            s.unparsed,
            self.elapsed.as_secs_f64()
        )
    }
}

pub fn run(opts: &LogAnalyzeOptions, out: &mut impl Write) -> Result<LogSummary, AnalyzeError> {
    if opts.logs.is_empty() {
        return Err(AnalyzeError::Usage("nothing to analyze: pass --log FILE".into()));
    }
    let cfg = config::load_file(opts.config.as_deref())?;
    let eve = opts.eve.unwrap_or(cfg.eve_types);
    let mut pipeline = AuthPipeline::new(cfg.host.auth.detect.clone(), eve.auth, &[]);
    let offset = cfg.host.timezone.unwrap_or_else(logfmt::local_offset);
    let started = Instant::now();
    let mut unreadable = 0;
    let mut bytes = 0u64;
    let mut batch = Output::default();
    let mut buf = Vec::new();
    let mut each = crate::analyze::eve_lines(out);
    for path in &opts.logs {
        let reference = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map(OffsetDateTime::from)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let clock = Clock { reference, offset };
        let source = path.display().to_string();
        let mut reader = match lines::open(path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read log file; skipped");
                unreadable += 1;
                continue;
            }
        };
        let mut offset = 0u64;
        loop {
            match lines::read_line(&mut reader, &mut buf, logfmt::MAX_LINE) {
                Ok(Some(l)) => {
                    bytes += l.consumed;
                    pipeline.line(&buf, l.truncated, &source, Some(offset), opts.format, &clock, &mut batch);
                    offset += l.consumed;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "log file damaged; stopping this file here");
                    unreadable += 1;
                    break;
                }
            }
            if batch.records.len() >= 256 {
                crate::analyze::flush(&mut batch, &mut each)?;
            }
        }
    }
    crate::analyze::flush(&mut batch, &mut each)?;
    drop(each);
    out.flush().map_err(AnalyzeError::Output)?;
    Ok(LogSummary {
        files: opts.logs.len(),
        unreadable_files: unreadable,
        bytes,
        stats: pipeline.stats,
        elapsed: started.elapsed(),
    })
}
