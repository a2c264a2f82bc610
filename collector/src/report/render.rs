//! Renders a [`Report`]: printable HTML (self-contained, print styles), CSV
//! of every section's rows, or JSON.

use maud::{DOCTYPE, Markup, html};

use super::{Report, text::Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
    Csv,
    Json,
}

impl Format {
    /// `html` (also ""), `csv`, `json`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "" | "html" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The report's bytes in `format` (`None`: the PDF font is unreadable).
pub fn render(r: &Report, format: Format) -> Option<Vec<u8>> {
    Some(match format {
        Format::Html => html_page(r).into_string().into_bytes(),
        Format::Pdf => super::pdf::render(r)?,
        Format::Json => serde_json::to_vec_pretty(r).unwrap_or_default(),
        Format::Csv => csv(r),
    })
}

/// The report as an HTML fragment (the console embeds it).
pub fn body(r: &Report) -> Markup {
    let t = Text(r.language);
    html! {
        article.report {
            h1 { (r.title) }
            p {
                strong { (t.get("period")) ": " } (r.from) " – " (r.to) br;
                strong { (t.get("generated")) ": " } (r.generated)
            }
            @for a in &r.agencies {
                section.agency {
                    h2 { (t.get("unit")) ": " (a.name) " (" (a.code) ")" }
                    @if a.truncated { p.warning { (t.get("truncated")) } }
                    @for s in &a.sections {
                        h3 { (s.title) }
                        @if s.rows.is_empty() {
                            p.empty { (t.get("none")) }
                        } @else {
                            table {
                                thead { tr { @for c in &s.columns { th scope="col" { (c) } } } }
                                tbody { @for row in &s.rows { tr { @for cell in row { td { (cell) } } } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Styles shared by the printable page and the console.
pub const REPORT_CSS: &str = "article.report table{border-collapse:collapse;width:100%;margin:.4em 0 1.2em}\
article.report th,article.report td{border:1px solid #777;padding:.2em .4em;text-align:left;vertical-align:top;font-size:.9em}\
article.report th{background:#e8eef5}.warning{color:#8a1c1c;font-weight:bold}\
@media print{body{font-size:10pt}nav,form,.noprint{display:none}section.agency{page-break-before:auto}}";

fn html_page(r: &Report) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(r.language.code()) {
            head {
                meta charset="utf-8";
                title { (r.title) }
                style { "body{font-family:'DejaVu Sans','Noto Sans',Arial,sans-serif;margin:1.5em;color:#111}" (REPORT_CSS) }
            }
            body { (body(r)) }
        }
    }
}

fn csv(r: &Report) -> Vec<u8> {
    let mut w = ::csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    let _ =
        w.write_record(["agency", "section", "row"].iter().map(|s| s.to_string()).chain(std::iter::empty()));
    for a in &r.agencies {
        for s in &a.sections {
            let header: Vec<String> = [a.code.clone(), s.id.to_string(), "header".into()]
                .into_iter()
                .chain(s.columns.iter().cloned())
                .collect();
            let _ = w.write_record(&header);
            for (i, row) in s.rows.iter().enumerate() {
                let rec: Vec<String> = [a.code.clone(), s.id.to_string(), (i + 1).to_string()]
                    .into_iter()
                    .chain(row.iter().cloned())
                    .collect();
                let _ = w.write_record(&rec);
            }
        }
    }
    w.into_inner().unwrap_or_default()
}
