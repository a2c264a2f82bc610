//! A report as PDF (A4, portrait): the same title, period and tables as the
//! HTML, set in DejaVu Sans (embedded, subset to the glyphs used), so that
//! Vietnamese text prints with its diacritics on any machine.
//!
//! Layout is ours and simple: text is measured with the font's advance
//! widths and wrapped; table columns share the page width in proportion to
//! their content; rows that do not fit start a new page with the header
//! repeated.

use std::sync::OnceLock;

use printpdf::{
    Mm, Op, ParsedFont, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};

use super::{Report, text::Text};

const REGULAR: &[u8] = include_bytes!("../../data/fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../../data/fonts/DejaVuSans-Bold.ttf");

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 14.0;
const PT_MM: f32 = 0.352_778;

fn fonts() -> Option<&'static (ParsedFont, ParsedFont)> {
    static FONTS: OnceLock<Option<(ParsedFont, ParsedFont)>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let r = ParsedFont::from_bytes(REGULAR, 0, &mut Vec::new())?;
            let b = ParsedFont::from_bytes(BOLD, 0, &mut Vec::new())?;
            Some((r, b))
        })
        .as_ref()
}

/// Width of `s` in millimetres at `size` points.
fn width(font: &ParsedFont, s: &str, size: f32) -> f32 {
    let upem = f32::from(font.units_per_em.max(1));
    let units: f32 = s
        .chars()
        .map(|c| {
            let gid = font.lookup_glyph_index(c as u32).unwrap_or(0);
            f32::from(font.get_glyph_width(gid).unwrap_or(font.units_per_em / 2))
        })
        .sum();
    units / upem * size * PT_MM
}

/// `s` cut into lines no wider than `max` mm (words first, then letters).
fn wrap(font: &ParsedFont, s: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for para in s.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if width(font, &candidate, size) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // a word wider than the line: cut it
            for ch in word.chars() {
                line.push(ch);
                if width(font, &line, size) > max && line.chars().count() > 1 {
                    let last = line.pop().unwrap_or(' ');
                    lines.push(std::mem::take(&mut line));
                    line.push(last);
                }
            }
        }
        lines.push(line);
    }
    lines
}

struct Writer<'a> {
    fonts: &'a (ParsedFont, ParsedFont),
    ids: (printpdf::FontId, printpdf::FontId),
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Writer<'_> {
    fn page(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_H - MARGIN;
    }

    fn ensure(&mut self, height: f32) -> bool {
        if self.y - height < MARGIN {
            self.page();
            return true;
        }
        false
    }

    fn text(&mut self, x: f32, s: &str, size: f32, bold: bool) {
        let id = if bold { self.ids.1.clone() } else { self.ids.0.clone() };
        let y = self.y;
        if let Some(ops) = self.pages.last_mut() {
            ops.extend([
                Op::StartTextSection,
                Op::SetFont { font: PdfFontHandle::External(id), size: Pt(size) },
                Op::SetTextCursor { pos: Point::new(Mm(x), Mm(y)) },
                Op::ShowText { items: vec![TextItem::Text(s.to_string())] },
                Op::EndTextSection,
            ]);
        }
    }

    /// A wrapped paragraph across the page width.
    fn paragraph(&mut self, s: &str, size: f32, bold: bool, after: f32) {
        let font = if bold { &self.fonts.1 } else { &self.fonts.0 };
        let line_h = size * PT_MM * 1.35;
        for line in wrap(font, s, size, PAGE_W - 2.0 * MARGIN) {
            self.ensure(line_h);
            self.y -= line_h;
            self.text(MARGIN, &line, size, bold);
        }
        self.y -= after;
    }

    fn table(&mut self, columns: &[String], rows: &[Vec<String>], none: &str) {
        const SIZE: f32 = 7.5;
        const GAP: f32 = 2.0;
        if rows.is_empty() {
            self.paragraph(none, 9.0, false, 2.0);
            return;
        }
        let n = columns.len().max(1);
        let avail = PAGE_W - 2.0 * MARGIN - GAP * (n as f32 - 1.0);
        // columns share the width by content, within bounds
        let weight: Vec<f32> = (0..n)
            .map(|i| {
                let longest = std::iter::once(columns.get(i).map(String::as_str).unwrap_or(""))
                    .chain(rows.iter().map(|r| r.get(i).map(String::as_str).unwrap_or("")))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(1);
                (longest.clamp(3, 40)) as f32
            })
            .collect();
        let total: f32 = weight.iter().sum();
        let widths: Vec<f32> = weight.iter().map(|w| avail * w / total).collect();
        let line_h = SIZE * PT_MM * 1.35;
        let measure = |w: &Writer<'_>, cells: &[String], bold: bool| -> Vec<Vec<String>> {
            let font = if bold { &w.fonts.1 } else { &w.fonts.0 };
            (0..n)
                .map(|i| wrap(font, cells.get(i).map(String::as_str).unwrap_or(""), SIZE, widths[i]))
                .collect()
        };
        let height =
            |cells: &[Vec<String>]| cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * line_h + 1.0;
        let paint = |w: &mut Writer<'_>, cells: &[Vec<String>], bold: bool| {
            let top = w.y;
            for (i, cell) in cells.iter().enumerate() {
                let x = MARGIN + widths[..i].iter().sum::<f32>() + GAP * i as f32;
                w.y = top;
                for l in cell {
                    w.y -= line_h;
                    w.text(x, l, SIZE, bold);
                }
            }
            w.y = top - height(cells);
        };
        let header = measure(self, columns, true);
        self.ensure(height(&header) + line_h * 2.0);
        paint(self, &header, true);
        for row in rows {
            let cells = measure(self, row, false);
            if self.ensure(height(&cells)) {
                // a new page: the header again
                paint(self, &header, true);
            }
            paint(self, &cells, false);
        }
        self.y -= 2.0;
    }
}

/// The report as PDF bytes; `None` when the embedded font cannot be read.
pub fn render(r: &Report) -> Option<Vec<u8>> {
    let fonts = fonts()?;
    let t = Text(r.language);
    let mut doc = PdfDocument::new(&r.title);
    let ids = (doc.add_font(&fonts.0), doc.add_font(&fonts.1));
    let mut w = Writer { fonts, ids, pages: Vec::new(), y: 0.0 };
    w.page();
    w.paragraph(&r.title, 15.0, true, 2.0);
    w.paragraph(&format!("{}: {} – {}", t.get("period"), r.from, r.to), 9.5, false, 0.5);
    w.paragraph(&format!("{}: {}", t.get("generated"), r.generated), 9.5, false, 3.0);
    for a in &r.agencies {
        w.paragraph(&format!("{}: {} ({})", t.get("unit"), a.name, a.code), 12.0, true, 1.5);
        if a.truncated {
            w.paragraph(t.get("truncated"), 9.0, true, 1.0);
        }
        for s in &a.sections {
            w.ensure(20.0);
            w.paragraph(&s.title, 10.5, true, 1.0);
            w.table(&s.columns, &s.rows, t.get("none"));
        }
    }
    let pages: Vec<PdfPage> =
        w.pages.into_iter().map(|ops| PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops)).collect();
    let opts = PdfSaveOptions { subset_fonts: true, ..Default::default() };
    Some(doc.with_pages(pages).save(&opts, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_covers_vietnamese_and_text_wraps_within_the_width() {
        let (f, _) = fonts().expect("embedded fonts parse");
        for c in "ẠẢÃÀÁÂẬẦẤẨẪĂẮẰẲẴẶĐÊỆỀẾỂỄÔỘỒỐỔỖƠỢỜỚỞỠƯỰỪỨỬỮỲÝỶỸỴđươ".chars()
        {
            assert!(f.lookup_glyph_index(c as u32).is_some_and(|g| g != 0), "no glyph for {c}");
        }
        let lines = wrap(f, "Nguồn tấn công và đối tượng bị tấn công trong kỳ giám sát", 9.0, 40.0);
        assert!(lines.len() > 1, "{lines:?}");
        for l in &lines {
            assert!(width(f, l, 9.0) <= 40.0 + 0.01, "{l}");
        }
        assert_eq!(lines.join(" "), "Nguồn tấn công và đối tượng bị tấn công trong kỳ giám sát");
    }
}
