//! `canhgac report daily|weekly|six-month|annual|incident`: a report
//! rendered by the collector from its stored data, written to a file (or
//! standard output).

use std::path::PathBuf;

use canhgac_proto::{
    client::TlsClient,
    v1::{GetReportFileRequest, GetReportRequest, ListReportFilesRequest},
};
use clap::Args;

use crate::{Failure, connect, output};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// `daily`, `weekly`, `six-month`, `annual` (level compliance, the
    /// window 15/12–14/12) or `incident` (an incident's notice: `--id`,
    /// `--notice`); `list` shows the reports kept by the schedule and
    /// `fetch ID` downloads one.
    pub kind: String,
    /// `fetch`: the id `report list` shows (AGENCY/KIND/FROM_TO.EXT).
    pub stored: Option<String>,
    /// `incident`: the incident's number.
    #[arg(long)]
    pub id: Option<u64>,
    /// `incident`: `initial` (default) or `completion`.
    #[arg(long, default_value = "initial")]
    pub notice: String,
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
    if a.kind == "list" {
        return list(&a, client).await;
    }
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
    if a.stored.is_some() && a.kind != "fetch" {
        return Err(Failure::usage(format!(
            "report {}: unexpected argument `{}`",
            a.kind,
            a.stored.as_deref().unwrap_or_default()
        )));
    }
    if a.kind == "fetch" {
        let Some(id) = a.stored.clone() else {
            return Err(Failure::usage("report fetch: the report's id is required (see `report list`)"));
        };
        let mut c = connect(client).await?;
        let r = c.get_report_file(GetReportFileRequest { id }).await?.into_inner();
        return write_out(&a, &r.content);
    }
    if a.kind == "incident" {
        let Some(id) = a.id else {
            return Err(Failure::usage("report incident: --id NUMBER is required"));
        };
        if a.from.is_some() || a.to.is_some() || a.agency.is_some() {
            return Err(Failure::usage(
                "report incident: --from, --to and --agency do not apply (the notice is of one incident)",
            ));
        }
        let mut c = connect(client).await?;
        let r = c
            .get_report(GetReportRequest {
                kind: a.kind.clone(),
                format: format.into(),
                language: a.lang.clone(),
                incident_id: id,
                notice: a.notice.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        return write_out(&a, &r.content);
    }
    let span = match a.kind.as_str() {
        "daily" => time::Duration::days(1),
        "weekly" => time::Duration::weeks(1),
        "six-month" => time::Duration::days(183),
        "annual" => time::Duration::days(365),
        other => {
            return Err(Failure::usage(format!(
                "report: `{other}` is not a report (daily, weekly, six-month, annual, incident)"
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
            ..Default::default()
        })
        .await?
        .into_inner();
    write_out(&a, &r.content)
}

fn write_out(a: &ReportArgs, content: &[u8]) -> Result<(), Failure> {
    match &a.out {
        Some(path) => {
            std::fs::write(path, content)
                .map_err(|e| Failure::runtime(format!("report: cannot write {}: {e}", path.display())))?;
            output::say(format!("{} report written to {} ({} bytes)", a.kind, path.display(), content.len()))
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(content).map_err(output::write_failure)
        }
    }
}

/// `report list`: the schedule and the reports it kept.
async fn list(a: &ReportArgs, client: &TlsClient) -> Result<(), Failure> {
    let mut c = connect(client).await?;
    let r = c
        .list_report_files(ListReportFilesRequest { agency: a.agency.clone().unwrap_or_default() })
        .await?
        .into_inner();
    if output::get().list_format(false) == output::ListFormat::Table {
        if r.schedule.is_empty() {
            output::say("schedule: none ([[reports.schedule]] in the collector's configuration)")?;
        }
        for line in &r.schedule {
            output::say(format!("schedule: {line}"))?;
        }
    }
    output::list(
        false,
        &["ID", "KIND", "AGENCY", "FROM", "TO", "BYTES"],
        &r.reports,
        |s| {
            vec![
                s.id.clone(),
                s.kind.clone(),
                if s.agency.is_empty() { "(all)".into() } else { s.agency.clone() },
                s.from.as_ref().map(output::time_ts).unwrap_or_default(),
                s.to.as_ref().map(output::time_ts).unwrap_or_default(),
                s.size.to_string(),
            ]
        },
        |s| {
            serde_json::json!({
                "id": s.id,
                "agency": s.agency,
                "kind": s.kind,
                "from": s.from.as_ref().map(output::time_ts),
                "to": s.to.as_ref().map(output::time_ts),
                "format": s.format,
                "size": s.size,
                "written": s.written.as_ref().map(output::time_ts),
                "file_name": s.file_name,
            })
            .to_string()
        },
    )
}
