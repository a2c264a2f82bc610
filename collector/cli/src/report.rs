//! `canhgac report daily|weekly`: a report rendered by the collector from
//! its stored data, written to a file (or standard output).

use std::path::PathBuf;

use canhgac_proto::{client::TlsClient, v1::GetReportRequest};
use clap::Args;

use crate::{Failure, connect, output};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// `daily`, `weekly`, `six-month` or `annual` (level compliance, the
    /// window 15/12–14/12).
    pub kind: String,
    /// One agency (default: every agency the operator may see).
    #[arg(long)]
    pub agency: Option<String>,
    /// Start of the period: a date (midnight, display zone) or RFC 3339.
    /// Default: the period ending at `--to` (a day or a week).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period (exclusive); default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// `vi` (default) or `en`.
    #[arg(long, default_value = "vi")]
    pub lang: String,
    /// Where to write it (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `format`: the global `--format` (html when not given).
pub async fn run(a: ReportArgs, format: Option<output::Format>, client: &TlsClient) -> Result<(), Failure> {
    let format = match format {
        None | Some(output::Format::Html) => "html",
        Some(output::Format::Csv) => "csv",
        Some(output::Format::Json) => "json",
        Some(output::Format::Pdf) => "pdf",
        Some(output::Format::Table) => {
            return Err(Failure::usage(
                "report: --format table is for lists; reports are html, pdf, csv or json",
            ));
        }
    };
    let span = match a.kind.as_str() {
        "daily" => time::Duration::days(1),
        "weekly" => time::Duration::weeks(1),
        "six-month" => time::Duration::days(183),
        "annual" => time::Duration::days(365),
        other => {
            return Err(Failure::usage(format!(
                "report: `{other}` is not a report (daily, weekly, six-month, annual)"
            )));
        }
    };
    let time = |flag: &str, v: &str| {
        output::parse_time(v).map_err(|e| Failure::usage(format!("report: --{flag}: {e}")))
    };
    let now = time::OffsetDateTime::now_utc();
    let (to, from) = match (&a.to, &a.from, a.kind.as_str()) {
        // the compliance window that contains today, up to now
        (None, None, "annual") => {
            let today = now.to_offset(output::VIETNAM).date();
            let year =
                if (today.month() as u8, today.day()) >= (12, 15) { today.year() } else { today.year() - 1 };
            let start = time::Date::from_calendar_date(year, time::Month::December, 15)
                .map_err(|e| Failure::usage(e.to_string()))?
                .midnight()
                .assume_offset(output::VIETNAM);
            (now, start)
        }
        (to, from, _) => {
            let to = match to {
                Some(t) => time("to", t)?,
                None => now,
            };
            let from = match from {
                Some(f) => time("from", f)?,
                None => to - span,
            };
            (to, from)
        }
    };
    if to <= from {
        return Err(Failure::usage("report: --to must be after --from"));
    }
    let mut c = connect(client).await?;
    let r = c
        .get_report(GetReportRequest {
            kind: a.kind.clone(),
            agency: a.agency.clone().unwrap_or_default(),
            from: Some(canhgac_proto::timefmt::to_timestamp(from)),
            to: Some(canhgac_proto::timefmt::to_timestamp(to)),
            format: format.into(),
            language: a.lang.clone(),
        })
        .await?
        .into_inner();
    match &a.out {
        Some(path) => {
            std::fs::write(path, &r.content)
                .map_err(|e| Failure::runtime(format!("report: cannot write {}: {e}", path.display())))?;
            output::say(format!(
                "{} report written to {} ({} bytes)",
                a.kind,
                path.display(),
                r.content.len()
            ))
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(&r.content).map_err(output::write_failure)
        }
    }
}
