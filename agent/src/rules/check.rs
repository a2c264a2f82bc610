//! `canhgac-agent rules check FILE... [--var NAME=VALUE]... [--classification FILE] [--json]`:
//! loads rule files the way the agent does and explains every rule it
//! cannot load.
//!
//! Human output: `loaded/total` per file and in total, the skip reasons
//! (category → count, most frequent first), then each skipped rule as
//! `file:line sid N: reason`, then what the loaded rules need (buffers,
//! protocols). With `--json`: one JSON object per skipped rule, then one
//! summary object `{"summary": {...}}`.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{LoadReport, RuleSet, RuleSetStats, Vars};

/// Arguments of `rules check`.
#[derive(Debug, Clone, Default)]
pub struct CheckArgs {
    pub files: Vec<PathBuf>,
    /// `NAME=VALUE` variable settings.
    pub vars: Vec<String>,
    pub classification: Option<PathBuf>,
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Var(String),
    #[error("{0}")]
    Read(std::io::Error),
    #[error("cannot write the report: {0}")]
    Output(std::io::Error),
}

impl CheckError {
    /// Process exit code: 2 for bad arguments and unreadable files.
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Var(_) | CheckError::Read(_) => 2,
            CheckError::Output(_) => 1,
        }
    }
}

/// Runs the check and writes the report to `out`.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<LoadReport, CheckError> {
    let mut vars = Vars::default();
    for v in &args.vars {
        vars.set_arg(v).map_err(CheckError::Var)?;
    }
    if args.files.is_empty() {
        return Err(CheckError::Var("no rule file given".to_string()));
    }
    let t0 = Instant::now();
    let (set, report) =
        RuleSet::load(&args.files, &vars, args.classification.as_deref()).map_err(CheckError::Read)?;
    let elapsed = t0.elapsed();
    let stats = set.stats();
    let r = if args.json {
        write_json(out, &report, elapsed)
    } else {
        write_human(out, &report, &stats, elapsed)
    };
    r.map_err(CheckError::Output)?;
    Ok(report)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 { 100.0 } else { a as f64 * 100.0 / b as f64 }
}

fn write_human(
    out: &mut dyn Write,
    r: &LoadReport,
    stats: &RuleSetStats,
    elapsed: Duration,
) -> std::io::Result<()> {
    for (f, total, loaded) in &r.files {
        writeln!(out, "{}: {loaded}/{total} rules loaded", f.display())?;
    }
    writeln!(
        out,
        "total: {}/{} rules loaded ({:.2}%), {} skipped, {} disabled (commented out), {} ms",
        r.loaded,
        r.total,
        pct(r.loaded, r.total),
        r.skipped.len(),
        r.disabled,
        elapsed.as_millis()
    )?;
    let reasons = r.reasons();
    if !reasons.is_empty() {
        writeln!(out, "\nskip reasons:")?;
        for (cat, n) in &reasons {
            writeln!(out, "  {n:6}  {cat}")?;
        }
        writeln!(out, "\nskipped rules:")?;
        for s in &r.skipped {
            let sid = s.sid.map(|x| x.to_string()).unwrap_or_else(|| "-".to_string());
            writeln!(out, "  {}:{} sid {sid}: {}", s.file.display(), s.line, s.reason)?;
        }
    }
    writeln!(out, "\nloaded rules by protocol:")?;
    for (p, n) in &stats.protocols {
        writeln!(out, "  {n:6}  {p}")?;
    }
    writeln!(out, "\nbuffers the loaded rules need (the rule fires only if the parsers produce them):")?;
    for (b, n) in &stats.buffers_used {
        writeln!(out, "  {n:6}  {b}")?;
    }
    let pre: usize = stats.prefiltered.iter().map(|x| x.1).sum();
    writeln!(
        out,
        "\nprefilter: {pre} rules by fast pattern, {} by required buffer only, {} header-only ({} IP-only), {} KiB; {} with pcre, {} datasets",
        stats.no_fast_pattern,
        stats.header_only,
        stats.ip_only,
        stats.prefilter_bytes / 1024,
        stats.pcre,
        stats.datasets
    )?;
    Ok(())
}

fn write_json(out: &mut dyn Write, r: &LoadReport, elapsed: Duration) -> std::io::Result<()> {
    for s in &r.skipped {
        let v = json!({
            "file": s.file.display().to_string(),
            "line": s.line,
            "sid": s.sid,
            "category": s.category,
            "reason": s.reason,
        });
        writeln!(out, "{v}")?;
    }
    let files: Vec<_> = r
        .files
        .iter()
        .map(|(f, t, l)| json!({"file": f.display().to_string(), "total": t, "loaded": l}))
        .collect();
    let reasons: serde_json::Map<String, serde_json::Value> =
        r.reasons().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let v = json!({"summary": {
        "total": r.total,
        "loaded": r.loaded,
        "skipped": r.skipped.len(),
        "disabled": r.disabled,
        "percent": (pct(r.loaded, r.total) * 100.0).round() / 100.0,
        "load_ms": elapsed.as_millis() as u64,
        "files": files,
        "reasons": reasons,
    }});
    writeln!(out, "{v}")
}
