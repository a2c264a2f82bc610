//! `canhgac-agent analyze --log FILE...`: the log pipelines over log files
//! (plain or `.gz`), EVE JSON lines on stdout, a summary on stderr. Each
//! file's kind (authentication, web access, firewall, Windows) is sniffed
//! from its first line unless `--log-format` names it ([`router`]). The
//! same parsers and detectors the daemon runs; nothing is spooled or sent.
//! Each file's year (RFC 3164 lines have none) is taken from its
//! modification time.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use super::{
    auth::AuthPipeline,
    firewall::FirewallPipeline,
    lines,
    logfmt::{self, Clock},
    router::{KindStats, LineSource, LogKind, LogSpec, Pipelines},
    web::{self, WebPipeline},
};
use crate::{analyze::AnalyzeError, config, detect::Output, eve::EveTypes};

#[derive(Debug, Clone, Default)]
pub struct LogAnalyzeOptions {
    pub logs: Vec<PathBuf>,
    pub format: LogSpec,
    pub config: Option<PathBuf>,
    /// Indicator lists besides the configuration's (firewall `ioc`).
    pub ioc: Vec<PathBuf>,
    /// `None`: from the config, else alerts only.
    pub eve: Option<EveTypes>,
}

#[derive(Debug, Clone)]
pub struct LogSummary {
    pub files: usize,
    pub unreadable_files: usize,
    pub bytes: u64,
    /// Per kind, in [`LogKind::ALL`] order.
    pub kinds: Vec<(LogKind, KindStats)>,
    /// Lines only read and split (`--log-format lines`).
    pub lines_only: u64,
    pub elapsed: Duration,
}

impl LogSummary {
    pub fn total(&self) -> KindStats {
        let mut t = KindStats { lines: self.lines_only, ..Default::default() };
        for (_, k) in &self.kinds {
            t.lines += k.lines;
            t.events += k.events;
            t.alerts += k.alerts;
            t.unparsed += k.unparsed;
            t.binary += k.binary;
            t.truncated += k.truncated;
        }
        t
    }

    pub fn kind(&self, kind: LogKind) -> KindStats {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s).unwrap_or_default()
    }

    /// `key=value` pairs: totals, then per kind that had lines
    /// (`web_lines`, `web_events`, `web_alerts`, `web_unparsed`, ...).
    pub fn line(&self) -> String {
        let s = self.total();
        let mut line = format!(
            "log_files={} unreadable_files={} lines={} bytes={} auth_events={} alerts={} binary_lines={} \
             truncated_lines={} unparsed_lines={} elapsed={:.3}s",
            self.files,
            self.unreadable_files,
            s.lines,
            self.bytes,
            self.kind(LogKind::Auth).events,
            s.alerts,
            s.binary,
            s.truncated,
            s.unparsed,
            self.elapsed.as_secs_f64()
        );
        for (kind, k) in &self.kinds {
            if k.lines > 0 {
                let n = kind.name();
                line.push_str(&format!(
                    " {n}_lines={} {n}_events={} {n}_alerts={} {n}_unparsed={}",
                    k.lines,
                    k.events,
                    k.alerts,
                    k.unparsed + k.binary
                ));
            }
        }
        line
    }
}

pub fn run(opts: &LogAnalyzeOptions, out: &mut impl Write) -> Result<LogSummary, AnalyzeError> {
    if opts.logs.is_empty() {
        return Err(AnalyzeError::Usage("nothing to analyze: pass --log FILE".into()));
    }
    let cfg = config::load_file(opts.config.as_deref())?;
    let eve = opts.eve.unwrap_or(cfg.eve_types);
    let sigs = web::SignatureSet::load(&cfg.host.web_logs.signatures).map_err(AnalyzeError::Usage)?;
    let mut pipelines = Pipelines::new(
        AuthPipeline::new(cfg.host.auth.detect.clone(), eve.auth, &[]),
        WebPipeline::new(
            cfg.host.web_logs.detect.clone(),
            std::sync::Arc::new(sigs),
            web::WebShells::default(),
            eve.http,
            &[],
        ),
        {
            let mut files = cfg.ioc_files.clone();
            files.extend(opts.ioc.iter().cloned());
            let (ioc, _) = crate::detect::IocSet::load(&files)?;
            FirewallPipeline::new(
                cfg.host.firewall_logs.detect.clone(),
                cfg.behaviour.portscan.clone(),
                std::sync::Arc::new(ioc),
                cfg.ioc_severity,
                eve.firewall,
                &[],
            )
        },
    );
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
                    let src = LineSource {
                        name: &source,
                        spec: opts.format,
                        system: 0,
                        offset: Some(offset),
                        sender: None,
                    };
                    pipelines.line(&buf, l.truncated, &src, &clock, &mut batch);
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
    pipelines.finish(&mut batch);
    crate::analyze::flush(&mut batch, &mut each)?;
    drop(each);
    out.flush().map_err(AnalyzeError::Output)?;
    Ok(LogSummary {
        files: opts.logs.len(),
        unreadable_files: unreadable,
        bytes,
        kinds: pipelines.stats(),
        lines_only: pipelines.totals().0 - pipelines.stats().iter().map(|(_, k)| k.lines).sum::<u64>(),
        elapsed: started.elapsed(),
    })
}
