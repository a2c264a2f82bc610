//! `canhgac-agent scan-secrets PATH...`: files and directories (recursive,
//! symbolic links not followed) scanned offline; one EVE alert line per
//! file with a marker on stdout, a summary on stderr. Nothing is spooled.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use super::{Level, Scanner, alert};

#[derive(Debug, Default, Clone)]
pub struct ScanSummary {
    pub files: u64,
    pub bytes: u64,
    /// Files with a marker, per level (mat, toi-mat, tuyet-mat).
    pub hits: [u64; 3],
    pub limits_hit: u64,
    pub errors: u64,
    /// Files or directories that could not be read.
    pub unreadable: u64,
    pub elapsed: Duration,
}

impl ScanSummary {
    pub fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "files={} bytes={} hits_mat={} hits_toi_mat={} hits_tuyet_mat={} secret_scan_limits_hit={} \
             secret_scan_errors={} unreadable={} elapsed={:.3}s mb_per_sec={:.1}",
            self.files,
            self.bytes,
            self.hits[0],
            self.hits[1],
            self.hits[2],
            self.limits_hit,
            self.errors,
            self.unreadable,
            secs,
            self.bytes as f64 / 1e6 / secs,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

pub fn level_index(l: Level) -> usize {
    match l {
        Level::Mat => 0,
        Level::ToiMat => 1,
        Level::TuyetMat => 2,
    }
}

/// Scans `paths`; every path must exist (else a usage error before
/// anything is scanned).
pub fn run(scanner: &Scanner, paths: &[PathBuf], out: &mut impl Write) -> Result<ScanSummary, ScanError> {
    if paths.is_empty() {
        return Err(ScanError::Usage("nothing to scan: pass files or directories".into()));
    }
    if let Some(missing) = paths.iter().find(|p| std::fs::symlink_metadata(p).is_err()) {
        return Err(ScanError::Usage(format!("no such file or directory `{}`", missing.display())));
    }
    let started = Instant::now();
    let mut s = ScanSummary::default();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            s.unreadable += 1;
            continue;
        };
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(rd) => {
                    let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    stack.extend(children.into_iter().rev());
                }
                Err(_) => s.unreadable += 1,
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        scan_one(scanner, &p, &mut s, out)?;
    }
    out.flush().map_err(ScanError::Output)?;
    s.elapsed = started.elapsed();
    Ok(s)
}

fn scan_one(scanner: &Scanner, p: &Path, s: &mut ScanSummary, out: &mut impl Write) -> Result<(), ScanError> {
    let (report, sha, size) = match scanner.scan_file(p) {
        Ok(r) => r,
        Err(_) => {
            s.unreadable += 1;
            return Ok(());
        }
    };
    s.files += 1;
    s.bytes += size.min(scanner.limits.max_object);
    s.limits_hit += report.limits_hit;
    s.errors += report.errors;
    if let Some(v) = &report.verdict {
        s.hits[level_index(v.level)] += 1;
        let facts = alert::FileFacts::of(p, size);
        let rec = alert::file_alert(&facts, v, &sha, OffsetDateTime::now_utc());
        out.write_all(&rec.eve_json).map_err(ScanError::Output)?;
        out.write_all(b"\n").map_err(ScanError::Output)?;
    }
    Ok(())
}

/// One row of the throughput benchmark.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub kind: String,
    pub files: usize,
    pub bytes: u64,
    /// MB/s of a plain memory scan (`memmem` for the UTF-8 marker) over
    /// the same bytes, in the same run.
    pub baseline_mb_s: f64,
    /// MB/s (of the same stored bytes) of what a plain tool does to
    /// search a container's text ([`plain_tool_scan`]): the same as
    /// `baseline_mb_s` for text and HTML.
    pub decoded_baseline_mb_s: f64,
    pub scan_mb_s: f64,
    pub hits: usize,
}

fn walk(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                stack.extend(children.into_iter().rev());
            }
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

/// Times `f` over the corpus, repeated until at least `min` has passed;
/// MB/s.
fn mb_per_sec(bytes: u64, min: Duration, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut last = 0;
    while rounds == 0 || started.elapsed() < min {
        last = std::hint::black_box(f());
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    ((bytes * rounds) as f64 / 1e6 / secs, last)
}

/// What a plain tool must do to search a document's text for the UTF-8
/// marker: open its container one level first (each ZIP entry inflated,
/// as `unzip -p | grep -F`; gzip inflated, as `zgrep -F`; each MIME part
/// decoded, as `munpack` then `grep -F`), then `memmem` every piece. The
/// same inflate and decoders as the scanner's, so the two compare the
/// work each adds. Occurrences found.
pub fn plain_tool_scan(finder: &memchr::memmem::Finder<'_>, data: &[u8]) -> usize {
    const MAX: u64 = 256 << 20;
    if data.starts_with(b"PK\x03\x04") {
        let Ok((entries, _)) = super::zip::entries(data, 10_000) else { return 0 };
        return entries.iter().map(|e| finder.find_iter(&super::zip::extract(e, MAX).0).count()).sum();
    }
    if data.starts_with(&[0x1F, 0x8B]) {
        let (bytes, _, _) = super::zip::read_bounded(flate2::read::MultiGzDecoder::new(data), MAX);
        return finder.find_iter(&bytes).count();
    }
    if super::mime::looks_like(data) {
        return super::mime::parts(data, 10_000).0.iter().map(|p| finder.find_iter(&p.body).count()).sum();
    }
    finder.find_iter(data).count()
}

/// `scan-secrets --bench`: files read into memory, grouped by extension,
/// then scanned, memory-scanned and plain-tool-scanned in the same run.
pub fn bench(scanner: &Scanner, paths: &[PathBuf]) -> Result<Vec<BenchRow>, ScanError> {
    if paths.is_empty() {
        return Err(ScanError::Usage("nothing to scan: pass files or directories".into()));
    }
    let mut groups: std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> = Default::default();
    for p in walk(paths) {
        let Ok(data) = std::fs::read(&p) else { continue };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        // `NNNN-KIND.EXT` (the benchmark generator's names) groups by
        // KIND.EXT, anything else by its extension
        let kind = match name.split_once('-') {
            Some((n, kind)) if n.bytes().all(|b| b.is_ascii_digit()) => kind.to_string(),
            _ => name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_else(|| "none".into()),
        };
        groups.entry(kind).or_default().push((name, data));
    }
    let all: Vec<(String, Vec<u8>)> = groups.values().flatten().cloned().collect();
    groups.insert("all".into(), all);
    let needle = "M\u{1EAC}T".as_bytes();
    let finder = memchr::memmem::Finder::new(needle);
    let min = Duration::from_millis(300);
    let mut rows = Vec::new();
    for (kind, files) in groups {
        let bytes: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
        let (baseline, _) =
            mb_per_sec(bytes, min, || files.iter().map(|(_, d)| finder.find_iter(d).count()).sum());
        let (decoded_baseline, _) =
            mb_per_sec(bytes, min, || files.iter().map(|(_, d)| plain_tool_scan(&finder, d)).sum());
        let (scan, hits) = mb_per_sec(bytes, min, || {
            files.iter().filter(|(n, d)| scanner.scan(d, Some(n)).verdict.is_some()).count()
        });
        rows.push(BenchRow {
            kind,
            files: files.len(),
            bytes,
            baseline_mb_s: baseline,
            decoded_baseline_mb_s: decoded_baseline,
            scan_mb_s: scan,
            hits,
        });
    }
    Ok(rows)
}
