//! How `canhgac` prints: times in the display zone with a fixed precision,
//! deadlines as "in 4 d 23 h" / "overdue 2 h", tables that fit the
//! terminal width, CSV and JSON lines; a closed pipe ends the command
//! quietly with status 0.

use std::{io::Write as _, sync::OnceLock};

use canhgac_proto::timefmt;
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

use super::Failure;

/// The output format: of lists (table, json, csv) and of reports (html,
/// pdf, csv, json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
    Pdf,
}

/// Output settings, fixed once per process from the global flags.
#[derive(Debug, Clone)]
pub struct Display {
    pub offset: UtcOffset,
    pub wide: bool,
    pub format: Format,
    /// The format given on the command line, if any.
    pub given: Option<Format>,
    /// CSV starts with a UTF-8 byte-order mark (spreadsheets).
    pub excel: bool,
    /// Table width when not wide.
    pub width: usize,
}

/// Vietnam's zone, the default display zone.
pub const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

impl Default for Display {
    fn default() -> Display {
        Display { offset: VIETNAM, wide: false, format: Format::Table, given: None, excel: false, width: 120 }
    }
}

static DISPLAY: OnceLock<Display> = OnceLock::new();

/// Sets the output settings (the first call wins).
pub fn init(d: Display) {
    let _ = DISPLAY.set(d);
}

pub fn get() -> &'static Display {
    DISPLAY.get_or_init(Display::default)
}

/// Whether JSON lines are asked for, by the command's `--json` or the
/// global `--format json`.
pub fn json(flag: bool) -> bool {
    flag || get().format == Format::Json
}

pub use canhgac_proto::timefmt::parse_offset;

/// A time in the display zone, to the second: `2026-12-06T14:05:09+07:00`.
pub fn time(t: OffsetDateTime) -> String {
    let t = t.to_offset(get().offset).replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A time for a table cell: `2026-12-06 14:05:09` in the display zone
/// (the column header names the zone, see [`zone_header`]).
pub fn time_compact(t: &prost_types::Timestamp) -> String {
    let t = timefmt::from_timestamp(t).to_offset(get().offset);
    format!("{} {:02}:{:02}:{:02}", t.date(), t.hour(), t.minute(), t.second())
}

/// A column header naming the display zone: `TIME (+07:00)`.
pub fn zone_header(name: &str) -> String {
    let o = get().offset;
    let (h, m, _) = o.as_hms();
    let sign = if o.is_negative() { '-' } else { '+' };
    format!("{name} ({sign}{:02}:{:02})", h.unsigned_abs(), m.unsigned_abs())
}

pub fn time_ts(t: &prost_types::Timestamp) -> String {
    time(timefmt::from_timestamp(t))
}

pub fn time_us(us: i64) -> String {
    time(timefmt::from_micros(us))
}

pub use canhgac_proto::timefmt::{relative, span};

/// Parses a time given on the command line: RFC 3339 with any offset, or
/// a date (midnight in the display zone), or a date and time without an
/// offset (in the display zone).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    let t = s.trim();
    if let Ok(v) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(v);
    }
    let off = get().offset;
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, &date_fmt) {
        return Ok(d.midnight().assume_offset(off));
    }
    for fmt in [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ] {
        if let Ok(v) = time::PrimitiveDateTime::parse(t, &fmt) {
            return Ok(v.assume_offset(off));
        }
    }
    Err(format!(
        "`{s}` is not a time (RFC 3339 such as 2026-12-01T08:00:00+07:00, or a date such as 2026-12-01)"
    ))
}

/// Writes one line to standard output; a closed pipe is a quiet success.
pub fn say(line: impl AsRef<str>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line.as_ref()).and_then(|_| out.flush()).map_err(write_failure)
}

/// Resolves when nobody reads standard output any more (the reader of a
/// pipe went away, as `| head -1` does), so that a command that waits for
/// data (`tail`) can end at once instead of at its next write. Never
/// resolves when standard output is not a pipe or socket.
pub async fn stdout_closed() {
    use std::os::fd::AsFd as _;
    use tokio::io::{Interest, unix::AsyncFd};
    // `with_interest` is deprecated because a type's fd could change or
    // close while registered; an `OwnedFd` we own cannot, so it is sound
    // here (the replacement is an `unsafe fn`, which this crate forbids).
    #[allow(deprecated)]
    let watched = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| AsyncFd::with_interest(fd, Interest::ERROR).ok());
    match watched {
        Some(fd) => {
            let _ = fd.ready(Interest::ERROR).await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The failure of a write to standard output.
pub fn write_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::closed()
    } else {
        Failure::runtime(format!("cannot write output: {e}"))
    }
}

fn cut(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_string();
    }
    let mut s: String = cell.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Column widths that fit `max` (two spaces between columns): the widest
/// columns give way first, none below its header or 6 characters; if that
/// is not enough, headers are cut too (to 4 characters at least).
fn fit(mut widths: Vec<usize>, headers: &[&str], max: usize) -> Vec<usize> {
    let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
    for pass in 0..2 {
        while total(&widths) > max {
            let floor = |i: usize| if pass == 0 { headers[i].chars().count().max(6) } else { 4 };
            let Some((i, _)) =
                widths.iter().enumerate().filter(|(i, w)| **w > floor(*i)).max_by_key(|(_, w)| **w)
            else {
                break;
            };
            widths[i] -= 1;
        }
    }
    widths
}

/// How a list prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

impl Display {
    /// The format of a list: JSON lines with the command's own `--json`
    /// (an alias of `--format json`), else the global `--format`.
    pub fn list_format(&self, json_flag: bool) -> ListFormat {
        match self.format {
            _ if json_flag => ListFormat::Json,
            Format::Json => ListFormat::Json,
            Format::Csv => ListFormat::Csv,
            Format::Table | Format::Html | Format::Pdf => ListFormat::Table,
        }
    }
}

/// Prints a list as the output format asks: a table cut to the width
/// (unless `--wide`), JSON lines (`json` of each item) or CSV with a
/// header line (and a byte-order mark with `--excel`). Every list command
/// prints through here, or through [`Feed`] when it follows a stream, so
/// none can forget a format.
pub fn list<T>(
    json_flag: bool,
    headers: &[&str],
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
    json: impl Fn(&T) -> String,
) -> Result<(), Failure> {
    Lists::new(json_flag).list(headers, items, row, json)
}

/// Several lists in one output (`coverage`: agencies, then agents): JSON
/// lines one after the other, CSV blocks apart by an empty line (one
/// byte-order mark, at the start), tables one after the other.
pub struct Lists {
    format: ListFormat,
    printed: usize,
}

impl Lists {
    pub fn new(json_flag: bool) -> Lists {
        Lists { format: get().list_format(json_flag), printed: 0 }
    }

    pub fn format(&self) -> ListFormat {
        self.format
    }

    /// Prints one list; see [`list`].
    pub fn list<T>(
        &mut self,
        headers: &[&str],
        items: &[T],
        row: impl Fn(&T) -> Vec<String>,
        json: impl Fn(&T) -> String,
    ) -> Result<(), Failure> {
        let text = render(get(), self.format, self.printed == 0, headers, items, row, json);
        self.printed += 1;
        if text.is_empty() { Ok(()) } else { say(text) }
    }
}

fn render<T>(
    d: &Display,
    format: ListFormat,
    first: bool,
    headers: &[&str],
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
    json: impl Fn(&T) -> String,
) -> String {
    match format {
        ListFormat::Json => items.iter().map(json).collect::<Vec<_>>().join("\n"),
        ListFormat::Csv => {
            let body = csv(headers, &items.iter().map(row).collect::<Vec<_>>(), d.excel && first);
            if first { body } else { format!("\n{body}") }
        }
        ListFormat::Table => text_table(d, headers, items.iter().map(row).collect()),
    }
}

/// A list printed item by item as a stream delivers it (`tail`): JSON
/// lines, CSV rows after one header line, or table rows each cut to the
/// width (unless `--wide`).
pub struct Feed {
    format: ListFormat,
    headers: Vec<String>,
    started: bool,
}

impl Feed {
    pub fn new(json_flag: bool, headers: &[&str]) -> Feed {
        Feed {
            format: get().list_format(json_flag),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            started: false,
        }
    }

    /// Prints one item.
    pub fn item(
        &mut self,
        row: impl FnOnce() -> Vec<String>,
        json: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        say(self.render(get(), row, json))
    }

    fn render(
        &mut self,
        d: &Display,
        row: impl FnOnce() -> Vec<String>,
        json: impl FnOnce() -> String,
    ) -> String {
        let headers: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        let first = !self.started;
        self.started = true;
        match self.format {
            ListFormat::Json => json(),
            ListFormat::Csv if first => csv(&headers, &[row()], d.excel),
            ListFormat::Csv => {
                let both = csv(&headers, &[row()], false);
                both.split_once('\n').map(|(_, r)| r.to_string()).unwrap_or_default()
            }
            ListFormat::Table => row_line(d, &headers, &row()),
        }
    }
}

/// One row of cells on one line after `indent` spaces, two spaces apart,
/// the widest cells cut first so that the line fits the width (unless
/// `--wide`).
pub fn line(indent: usize, headers: &[&str], cells: &[String]) -> String {
    let d = get();
    let narrower = Display { width: d.width.saturating_sub(indent), ..d.clone() };
    format!("{}{}", " ".repeat(indent), row_line(&narrower, headers, cells))
}

fn row_line(d: &Display, headers: &[&str], cells: &[String]) -> String {
    let joined = |cells: Vec<String>| cells.join("  ").trim_end().to_string();
    if d.wide {
        return joined(cells.to_vec());
    }
    let mut floors: Vec<&str> = headers.to_vec();
    floors.resize(cells.len(), "");
    let widths = fit(cells.iter().map(|c| c.chars().count()).collect(), &floors, d.width);
    joined(cells.iter().zip(&widths).map(|(c, w)| cut(c, *w)).collect())
}

/// `head`, `field` and `tail` on one line, the field cut so that the line
/// fits the width (unless `--wide`): `evidence: [ioc] 9000001 CANHGAC IOC
/// … × 7 (…)` keeps its counts and times whole.
pub fn squeeze(head: &str, field: &str, tail: &str) -> String {
    squeeze_in(get(), head, field, tail)
}

fn squeeze_in(d: &Display, head: &str, field: &str, tail: &str) -> String {
    let fixed = head.chars().count() + tail.chars().count();
    if d.wide || fixed + field.chars().count() <= d.width {
        return format!("{head}{field}{tail}");
    }
    let field = cut(field, d.width.saturating_sub(fixed).max(8));
    clip_in(d, &format!("{head}{field}{tail}"))
}

/// Free text with each line cut to the width (unless `--wide`).
pub fn clip(text: &str) -> String {
    clip_in(get(), text)
}

fn clip_in(d: &Display, text: &str) -> String {
    if d.wide {
        return text.to_string();
    }
    text.split('\n').map(|l| cut(l, d.width)).collect::<Vec<_>>().join("\n")
}

/// A table for a detail view (`incidents show`), whatever the list format.
pub fn detail_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    text_table(get(), headers, rows)
}

/// Left-aligned columns, cut to the width unless `--wide`.
fn text_table(d: &Display, headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    if !d.wide {
        widths = fit(widths, headers, d.width);
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let c = cut(cell, *w);
            if i + 1 == cells.len() {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    let empty = rows.is_empty();
    out.extend(rows.into_iter().map(line));
    if empty {
        out.push(String::from("(none)"));
    }
    out.join("\n")
}

fn csv(headers: &[&str], rows: &[Vec<String>], bom: bool) -> String {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = w.write_record(headers);
    for r in rows {
        let _ = w.write_record(r);
    }
    let body = w.into_inner().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let body = body.trim_end_matches('\n').to_string();
    if bom { format!("\u{feff}{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_deadlines_read_like_people_write_them() {
        assert_eq!(span(4 * 86_400 + 23 * 3_600 + 59), "4 d 23 h");
        assert_eq!(span(2 * 3_600), "2 h");
        assert_eq!(span(-(2 * 3_600 + 5 * 60)), "2 h 5 min");
        assert_eq!(span(40), "40 s");
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(relative(now + time::Duration::hours(3), now), "in 3 h");
        assert_eq!(relative(now - time::Duration::hours(2), now), "overdue 2 h");
    }

    #[test]
    fn times_show_in_vietnam_to_the_second() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_789).unwrap();
        assert_eq!(time(t), "2025-12-06T12:46:40+07:00");
        assert_eq!(parse_time("2025-12-06T12:46:40+07:00").unwrap().unix_timestamp(), 1_765_000_000);
        assert_eq!(parse_time("2025-12-06").unwrap().offset(), VIETNAM);
        assert_eq!(parse_time("2025-12-06 12:46:40").unwrap().unix_timestamp(), 1_765_000_000);
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.contains("`yesterday` is not a time"), "{e}");
        assert_eq!(parse_offset("+07:00").unwrap(), VIETNAM);
        assert_eq!(parse_offset("utc").unwrap(), UtcOffset::UTC);
        assert!(parse_offset("+25:00").is_err());
    }

    #[test]
    fn tables_fit_the_width() {
        let rows = vec![vec!["1".to_string(), "x".repeat(200), "short".into(), "y".repeat(80)]];
        let t = text_table(&Display::default(), &["ID", "SIGNATURE", "STATE", "HOST"], rows);
        for line in t.lines() {
            assert!(line.chars().count() <= 120, "{} > 120: {line}", line.chars().count());
        }
        assert!(t.contains('…'));
        let w = fit(vec![2, 9], &["ID", "SIGNATURE"], 120);
        assert_eq!(w, vec![2, 9], "narrow tables are left alone");
        // headers alone wider than the screen: they are cut too
        let headers: Vec<String> = (0..10).map(|i| format!("A LONG HEADER NUMBER {i}")).collect();
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        let t = text_table(&Display::default(), &h, vec![headers.clone()]);
        assert!(t.lines().all(|l| l.chars().count() <= 120), "{t}");
    }

    fn shown(format: Format, excel: bool, wide: bool) -> Display {
        Display { format, excel, wide, ..Display::default() }
    }

    /// Rows of (name, count) as every list command renders them.
    fn render_items(d: &Display, json_flag: bool, first: bool) -> String {
        let items = vec![("SO-A".to_string(), 3u32), ("Sở \"B\", Hà Nội".to_string(), 7)];
        render(
            d,
            d.list_format(json_flag),
            first,
            &["NAME", "COUNT"],
            &items,
            |(n, c)| vec![n.clone(), c.to_string()],
            |(n, c)| serde_json::json!({"name": n, "count": c}).to_string(),
        )
    }

    #[test]
    fn every_format_of_a_list_comes_from_one_function() {
        // table (the default): a header, one line per item
        let t = render_items(&shown(Format::Table, false, false), false, true);
        assert_eq!(t.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(), ["NAME", "COUNT"]);
        assert_eq!(t.lines().count(), 3, "{t}");
        // --format json: the command's JSON lines, not a table
        let j = render_items(&shown(Format::Json, false, false), false, true);
        let v: Vec<serde_json::Value> = j.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            v,
            [
                serde_json::json!({"name": "SO-A", "count": 3}),
                serde_json::json!({"name": "Sở \"B\", Hà Nội", "count": 7})
            ]
        );
        // the command's --json is the same as --format json, whatever --format says
        assert_eq!(render_items(&shown(Format::Table, false, false), true, true), j);
        assert_eq!(render_items(&shown(Format::Csv, false, false), true, true), j);
        // --format csv: a header line and one row per item, quoted
        let c = render_items(&shown(Format::Csv, false, false), false, true);
        assert_eq!(c, "NAME,COUNT\nSO-A,3\n\"Sở \"\"B\"\", Hà Nội\",7");
        // --excel: a byte-order mark at the very start only
        assert!(
            render_items(&shown(Format::Csv, true, false), false, true).starts_with("\u{feff}NAME,COUNT\n")
        );
        let second = render_items(&shown(Format::Csv, true, false), false, false);
        assert!(second.starts_with("\nNAME,COUNT\n"), "a second list is a block of its own: {second:?}");
        // html and pdf are not list formats (refused earlier): a table
        assert_eq!(shown(Format::Pdf, false, false).list_format(false), ListFormat::Table);
    }

    #[test]
    fn a_feed_prints_one_csv_header_and_rows_that_fit() {
        let headers = ["TIME", "SEV", "SIGNATURE", "FLOW"];
        let row = || vec!["2026-12-06 14:05:09".into(), "1".into(), "S".repeat(150), "F".repeat(60)];
        let mut f =
            Feed { format: ListFormat::Csv, headers: headers.map(String::from).to_vec(), started: false };
        let d = shown(Format::Csv, false, false);
        assert_eq!(f.render(&d, row, String::new).lines().count(), 2, "header and the first row");
        let next = f.render(&d, row, String::new);
        assert!(next.starts_with("2026-12-06 14:05:09,1,SSS") && next.lines().count() == 1, "{next}");
        f.format = ListFormat::Table;
        let line = f.render(&shown(Format::Table, false, false), row, String::new);
        assert!(line.chars().count() <= 120 && line.contains('…'), "{} > 120: {line}", line.chars().count());
        assert!(line.starts_with("2026-12-06 14:05:09  1  SSS"), "{line}");
        let wide = f.render(&shown(Format::Table, false, true), row, String::new);
        assert!(wide.contains(&"S".repeat(150)), "--wide cuts nothing");
        f.format = ListFormat::Json;
        assert_eq!(f.render(&d, row, || "{\"a\":1}".into()), "{\"a\":1}");
    }

    #[test]
    fn a_long_field_gives_way_and_the_rest_of_the_line_stays() {
        let d = shown(Format::Table, false, false);
        let sig = format!("CANHGAC IOC address {}", "x".repeat(200));
        let tail = " × 7 (2026-12-06T14:05:09+07:00 – 2026-12-06T14:05:19+07:00)";
        let l = squeeze_in(&d, "evidence: [ioc] 9000001 ", &sig, tail);
        assert_eq!(l.chars().count(), 120, "{l}");
        assert!(l.starts_with("evidence: [ioc] 9000001 CANHGAC IOC") && l.ends_with(tail), "{l}");
        let wide = squeeze_in(&shown(Format::Table, false, true), "evidence: ", &sig, tail);
        assert!(wide.contains(&sig));
        assert_eq!(clip_in(&d, &"é".repeat(300)).chars().count(), 120);
        let two = clip_in(&d, &format!("{}\n{}", "a".repeat(130), "b".repeat(5)));
        assert_eq!(two.lines().map(|l| l.chars().count()).collect::<Vec<_>>(), [120, 5], "line by line");
        assert_eq!(squeeze_in(&d, "a ", "short", " b"), "a short b");
    }

    #[test]
    fn csv_quotes_and_marks_spreadsheets() {
        let out = csv(&["A", "B"], &[vec!["x,y".into(), "Sở \"TT\"".into()]], true);
        assert!(out.starts_with('\u{feff}'));
        assert_eq!(out.trim_start_matches('\u{feff}'), "A,B\n\"x,y\",\"Sở \"\"TT\"\"\"");
    }
}
