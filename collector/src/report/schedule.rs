//! Scheduled reports (`[[reports.schedule]]`): when a period ends (a day
//! at midnight in Vietnam, a week on Monday, a half-year on 1 January and
//! 1 July, the compliance year on 15 December), the collector renders the
//! report of that period from stored data and keeps it as a file the
//! operators can list and download later (`canhgac report list|fetch`,
//! the console's Reports page), under the same tenancy as every report.
//!
//! Files live in `DATA_DIR/reports/<agency or _all>/<kind>/<from>_<to>.<ext>`
//! (dates `YYYYMMDD`, Vietnam's calendar, `to` exclusive). A report is made
//! once: a file that exists is not made again, so a collector that was
//! down when a period ended makes it at its next start, and a restart
//! makes nothing twice. Files are written to a temporary name and renamed.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use canhgac_proto::timefmt;
use time::{Date, Month, OffsetDateTime};
use tokio::sync::watch;

use super::{Kind, Lang, Request, render::Format, text::VIETNAM};
use crate::{rules::Regulation, store::Store};

/// Which agencies a scheduled report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One report per registered agency.
    Each,
    /// One report of every agency together.
    All,
    /// One agency.
    Agency(String),
}

/// One `[[reports.schedule]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub scope: Scope,
    pub formats: Vec<Format>,
    pub lang: Lang,
}

impl Entry {
    /// How the console and `report list` describe it.
    pub fn describe(&self) -> String {
        let scope = match &self.scope {
            Scope::Each => "each agency".to_string(),
            Scope::All => "all agencies together".to_string(),
            Scope::Agency(a) => format!("agency {a}"),
        };
        let formats: Vec<&str> = self.formats.iter().map(|f| f.extension()).collect();
        format!("{} report, {scope}, {} ({})", self.kind.as_str(), formats.join(", "), self.lang.code())
    }
}

/// The directory scheduled reports are kept in.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("reports")
}

/// Directory name of a scope that is not one agency.
pub const ALL: &str = "_all";

fn ymd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day())
}

fn parse_ymd(s: &str) -> Option<Date> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month = Month::try_from(s[4..6].parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(s[..4].parse().ok()?, month, s[6..].parse().ok()?).ok()
}

/// Midnight of `d` in Vietnam, in microseconds since the epoch.
pub fn midnight_us(d: Date) -> i64 {
    timefmt::micros(d.midnight().assume_offset(VIETNAM))
}

/// The last period of `kind` that has ended by `now`: `[from, to)` as
/// dates in Vietnam's calendar.
pub fn last_period(kind: Kind, now: OffsetDateTime) -> Option<(Date, Date)> {
    let today = now.to_offset(VIETNAM).date();
    match kind {
        Kind::Daily => Some((today.previous_day()?, today)),
        Kind::Weekly => {
            let monday = today - time::Duration::days(i64::from(today.weekday().number_days_from_monday()));
            Some((monday - time::Duration::weeks(1), monday))
        }
        Kind::SixMonth => {
            let y = today.year();
            let jan = Date::from_calendar_date(y, Month::January, 1).ok()?;
            let jul = Date::from_calendar_date(y, Month::July, 1).ok()?;
            if today >= jul {
                Some((jan, jul))
            } else {
                Some((Date::from_calendar_date(y - 1, Month::July, 1).ok()?, jan))
            }
        }
        Kind::Annual => {
            let y = today.year();
            let this = Date::from_calendar_date(y, Month::December, 15).ok()?;
            let end = if today >= this {
                this
            } else {
                Date::from_calendar_date(y - 1, Month::December, 15).ok()?
            };
            Some((Date::from_calendar_date(end.year() - 1, Month::December, 15).ok()?, end))
        }
        Kind::Incident => None,
    }
}

/// A stored report, identified by `<agency or _all>/<kind>/<from>_<to>.<ext>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub agency: String,
    pub kind: Kind,
    pub from: Date,
    pub to: Date,
    pub format: Format,
}

impl Stored {
    /// The relative path, which is also its identifier.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}_{}.{}",
            self.agency,
            self.kind.as_str(),
            ymd(self.from),
            ymd(self.to),
            self.format.extension()
        )
    }

    /// Parses an identifier; anything else (`..`, other directories,
    /// unknown kinds or formats) is refused, so an identifier can never
    /// name a file outside the reports directory.
    pub fn parse(id: &str) -> Result<Stored, String> {
        let bad = || format!("`{id}` is not a stored report (AGENCY/KIND/YYYYMMDD_YYYYMMDD.EXT)");
        let parts: Vec<&str> = id.split('/').collect();
        let [agency, kind, file] = parts.as_slice() else { return Err(bad()) };
        let agency_ok = *agency == ALL
            || (!agency.is_empty()
                && agency.len() <= 64
                && agency.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !agency.starts_with('_'));
        if !agency_ok {
            return Err(bad());
        }
        let kind = Kind::parse(kind).filter(|k| *k != Kind::Incident).ok_or_else(bad)?;
        let (dates, ext) = file.rsplit_once('.').ok_or_else(bad)?;
        let (from, to) = dates.split_once('_').ok_or_else(bad)?;
        let format = Format::parse(ext).filter(|_| !ext.is_empty()).ok_or_else(bad)?;
        let (from, to) = (parse_ymd(from).ok_or_else(bad)?, parse_ymd(to).ok_or_else(bad)?);
        if to <= from {
            return Err(bad());
        }
        Ok(Stored { agency: agency.to_string(), kind, from, to, format })
    }

    /// The name a download is saved under.
    pub fn file_name(&self) -> String {
        let scope = if self.agency == ALL { "all" } else { &self.agency };
        format!(
            "canhgac-{}-{scope}-{}-{}.{}",
            self.kind.as_str(),
            ymd(self.from),
            ymd(self.to),
            self.format.extension()
        )
    }

    pub fn from_us(&self) -> i64 {
        midnight_us(self.from)
    }

    pub fn to_us(&self) -> i64 {
        midnight_us(self.to)
    }
}

/// Every stored report under `dir`, newest period first, with its size
/// and the time it was written.
pub fn list(dir: &Path) -> std::io::Result<Vec<(Stored, u64, i64)>> {
    let mut out = Vec::new();
    let read = |p: &Path| -> std::io::Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(p) {
            Ok(rd) => rd.collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    for a in read(dir)? {
        for k in read(&a.path())? {
            for f in read(&k.path())? {
                let id = format!(
                    "{}/{}/{}",
                    a.file_name().to_string_lossy(),
                    k.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                );
                // temporary files and anything foreign are not reports
                let Ok(s) = Stored::parse(&id) else { continue };
                let meta = f.metadata()?;
                let written = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0);
                out.push((s, meta.len(), written));
            }
        }
    }
    out.sort_by(|a, b| b.0.to.cmp(&a.0.to).then(a.0.id().cmp(&b.0.id())));
    Ok(out)
}

/// Reads a stored report.
pub fn read(dir: &Path, s: &Stored) -> std::io::Result<Vec<u8>> {
    std::fs::read(dir.join(s.id()))
}

/// What a scheduling pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub written: usize,
    pub failed: usize,
}

/// Makes every scheduled report whose last period has ended and whose file
/// does not exist yet.
pub fn run_once(
    store: &Store,
    reg: &Regulation,
    dir: &Path,
    entries: &[Entry],
    silence_limit: Duration,
    now: OffsetDateTime,
) -> Pass {
    let mut pass = Pass::default();
    let agencies = match store.agencies() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "scheduled reports: cannot read the registry");
            pass.failed += 1;
            return pass;
        }
    };
    for e in entries {
        let Some((from, to)) = last_period(e.kind, now) else { continue };
        let targets: Vec<(String, Vec<String>)> = match &e.scope {
            Scope::Each => agencies.iter().map(|a| (a.code.clone(), vec![a.code.clone()])).collect(),
            // nothing registered yet: no report of nobody (it would be kept)
            Scope::All if agencies.is_empty() => Vec::new(),
            Scope::All => vec![(ALL.to_string(), agencies.iter().map(|a| a.code.clone()).collect())],
            Scope::Agency(code) => {
                if !agencies.iter().any(|a| &a.code == code) {
                    tracing::warn!(agency = %code, kind = e.kind.as_str(), "scheduled report for an agency that is not registered");
                    pass.failed += 1;
                    continue;
                }
                vec![(code.clone(), vec![code.clone()])]
            }
        };
        for (name, codes) in targets {
            let pending: Vec<Stored> = e
                .formats
                .iter()
                .map(|f| Stored { agency: name.clone(), kind: e.kind, from, to, format: *f })
                .filter(|s| !dir.join(s.id()).exists())
                .collect();
            if pending.is_empty() {
                continue;
            }
            let req = Request {
                kind: e.kind,
                agencies: codes,
                from_us: midnight_us(from),
                to_us: midnight_us(to),
                now_us: timefmt::micros(now),
                lang: e.lang,
                silence_limit,
            };
            let report = match super::build(store, reg, &req) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(error = %err, kind = e.kind.as_str(), agency = %name, "scheduled report failed");
                    pass.failed += pending.len();
                    continue;
                }
            };
            for s in pending {
                match write(dir, &s, &report) {
                    Ok(bytes) => {
                        pass.written += 1;
                        tracing::info!(report = %s.id(), bytes, "scheduled report written");
                    }
                    Err(err) => {
                        pass.failed += 1;
                        tracing::warn!(report = %s.id(), error = %err, "scheduled report not written");
                    }
                }
            }
        }
    }
    pass
}

fn write(dir: &Path, s: &Stored, report: &super::Report) -> Result<usize, String> {
    let bytes = super::render::render(report, s.format).ok_or("the embedded font cannot be read")?;
    write_bytes(dir, s, &bytes)
}

/// Keeps `bytes` as the stored report `s` (a temporary name, synced, then
/// renamed): a report made here or received from a downstream collector.
pub fn write_bytes(dir: &Path, s: &Stored, bytes: &[u8]) -> Result<usize, String> {
    let path = dir.join(s.id());
    let parent = path.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{}", rand::random::<u64>()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", path.display())
        })?;
    Ok(bytes.len())
}

/// Checks the schedule every `every` (`reports.check_interval`, a minute
/// by default) until `shutdown`.
pub async fn run(
    store: Store,
    reg: Arc<Regulation>,
    dir: PathBuf,
    entries: Vec<Entry>,
    every: Duration,
    silence_limit: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if entries.is_empty() {
        return;
    }
    for e in &entries {
        tracing::info!(schedule = %e.describe(), "scheduled report");
    }
    loop {
        let (s, r, d, e) = (store.clone(), reg.clone(), dir.clone(), entries.clone());
        if let Err(err) = tokio::task::spawn_blocking(move || {
            run_once(&s, &r, &d, &e, silence_limit, OffsetDateTime::now_utc())
        })
        .await
        {
            tracing::warn!(error = %err, "scheduled reports pass panicked");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn last_periods_end_at_vietnam_midnight_boundaries() {
        // 2026-12-06 is a Sunday; 01:30 in Vietnam is still the 6th
        let now = datetime!(2026-12-05 18:30 UTC);
        let d = |s: &str| parse_ymd(s).unwrap();
        assert_eq!(last_period(Kind::Daily, now), Some((d("20261205"), d("20261206"))));
        assert_eq!(last_period(Kind::Weekly, now), Some((d("20261123"), d("20261130"))));
        assert_eq!(last_period(Kind::SixMonth, now), Some((d("20260101"), d("20260701"))));
        assert_eq!(last_period(Kind::Annual, now), Some((d("20241215"), d("20251215"))));
        // on the 15th of December the year just ended is due
        let dec15 = datetime!(2026-12-14 17:00 UTC);
        assert_eq!(last_period(Kind::Annual, dec15), Some((d("20251215"), d("20261215"))));
        // a Monday: the week that just ended
        let monday = datetime!(2026-12-06 17:00 UTC);
        assert_eq!(last_period(Kind::Weekly, monday), Some((d("20261130"), d("20261207"))));
        assert_eq!(
            last_period(Kind::SixMonth, datetime!(2026-03-01 0:00 UTC)),
            Some((d("20250701"), d("20260101")))
        );
    }

    #[test]
    fn identifiers_never_leave_the_directory() {
        let s = Stored::parse("SO-TTTT/weekly/20261130_20261207.pdf").unwrap();
        assert_eq!(s.file_name(), "canhgac-weekly-SO-TTTT-20261130-20261207.pdf");
        assert_eq!(Stored::parse(&s.id()).unwrap(), s);
        assert_eq!(Stored::parse("_all/six-month/20260101_20260701.html").unwrap().agency, ALL);
        for bad in [
            "../weekly/20261130_20261207.pdf",
            "SO/../../etc/passwd",
            "SO/weekly/../20261130_20261207.pdf",
            "SO/weekly/20261130_20261207.exe",
            "SO/weekly/20261207_20261130.pdf",
            "SO/incident/20261130_20261207.pdf",
            "SO/weekly/20261130_20261207",
            "_x/weekly/20261130_20261207.pdf",
            "SO/weekly/.tmp-1",
            "/etc/weekly/20261130_20261207.pdf",
        ] {
            assert!(Stored::parse(bad).is_err(), "{bad}");
        }
    }
}
