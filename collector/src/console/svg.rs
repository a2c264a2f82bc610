//! Charts as server-rendered SVG: horizontal bars with their labels and
//! values written out (readable without colour, and by screen readers).

use maud::{Markup, html};

/// A horizontal bar chart of `(label, value)`.
pub fn bars(title: &str, data: &[(String, u64)]) -> Markup {
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let row = 22u32;
    let (label_w, bar_w) = (170u32, 260u32);
    let height = row * data.len().max(1) as u32 + 8;
    let width = label_w + bar_w + 70;
    html! {
        figure.chart {
            figcaption { (title) }
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label=(title)
                viewBox=(format!("0 0 {width} {height}")) {
                @if data.is_empty() {
                    text x="4" y="16" font-size="13" { "–" }
                }
                @for (i, (label, v)) in data.iter().enumerate() {
                    @let y = i as u32 * row + 4;
                    @let w = ((*v as f64 / max as f64) * f64::from(bar_w)).round() as u32;
                    text x=(label_w - 6) y=(y + 14) font-size="12" text-anchor="end" { (label) }
                    rect x=(label_w) y=(y + 2) width=(w.max(1)) height=(row - 6) fill="#2f5d8a" {}
                    text x=(label_w + w.max(1) + 4) y=(y + 14) font-size="12" { (v) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars("t", &[("a<b".into(), 10), ("c".into(), 5)]).into_string();
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains(r#"width="260""#) && svg.contains(r#"width="130""#), "{svg}");
        assert!(bars("empty", &[]).into_string().contains("–"));
    }
}
