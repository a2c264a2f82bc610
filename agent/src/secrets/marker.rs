//! The marker matcher: decides from NFC text whether a document carries a
//! state-secret stamp, and which level.
//!
//! A stamp (Law 29/2018) is the phrase MẬT, TỐI MẬT or TUYỆT MẬT standing
//! alone: on its own line or in its own box (a paragraph, a cell, a text
//! box), uppercase, possibly with an urgency stamp (KHẨN, THƯỢNG KHẨN, HỎA
//! TỐC) or an "Độ mật:" label beside it. Each such line scores 2, plus 1
//! near the top or bottom of the document, plus 1 for each piece of
//! official-document context (the national motto, "Số:", "Nơi nhận",
//! "Bản số", "Bản sao số", "Chỉ người có tên mới được bóc bì", "Tài liệu
//! thu hồi", "V/v"; at most 3). A stamp needs 3; the bare MẬT, the most
//! ambiguous, also needs some context. Words that merely contain the
//! syllable (bảo mật, mật khẩu, bí mật, mật ong, MẬT KHẨU, TỐI MẬT THƯ,
//! MẬT ĐỘ) never stand alone as a stamp, so they never count. The highest
//! level found wins.

/// Secrecy level, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Mat,
    ToiMat,
    TuyetMat,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Mat => "mat",
            Level::ToiMat => "toi-mat",
            Level::TuyetMat => "tuyet-mat",
        }
    }
}

/// Lines this close to either end of the document count as top or bottom.
const EDGE_LINES: usize = 15;
/// Score a stamp needs.
const THRESHOLD: u32 = 3;

const CONTEXT: &[&[&str]] = &[
    &["cộng hòa xã hội chủ nghĩa việt nam", "cộng hoà xã hội chủ nghĩa việt nam"],
    &["độc lập - tự do - hạnh phúc", "độc lập – tự do – hạnh phúc", "độc lập-tự do-hạnh phúc"],
    &["số:"],
    &["nơi nhận"],
    &["bản số"],
    &["bản sao số"],
    &["chỉ người có tên mới được bóc bì"],
    &["tài liệu thu hồi"],
    &["v/v"],
];

const URGENCY: &[&str] = &["KHẨN", "THƯỢNG", "HỎA", "HOẢ", "TỐC", "HẸN", "GIỜ"];

fn is_break(c: char) -> bool {
    (c < ' ' && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')
}

/// Letters and digits Vietnamese text is written with.
fn is_viet_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c,
            'À'..='Ã' | 'È'..='Ê' | 'Ì' | 'Í' | 'Ò'..='Õ' | 'Ù' | 'Ú' | 'Ý'
            | 'à'..='ã' | 'è'..='ê' | 'ì' | 'í' | 'ò'..='õ' | 'ù' | 'ú' | 'ý'
            | 'Ă' | 'ă' | 'Đ' | 'đ' | 'Ĩ' | 'ĩ' | 'Ũ' | 'ũ' | 'Ơ' | 'ơ' | 'Ư' | 'ư'
            | '\u{1EA0}'..='\u{1EF9}')
}

/// Decoration around a stamp: spaces, frames, brackets, punctuation, and
/// whatever is not Vietnamese text (binary neighbours in legacy Office
/// files decoded as text).
fn is_decoration(c: char) -> bool {
    !is_viet_alnum(c)
}

/// The level of a line that is a stamp and nothing else.
fn stamp(line: &str) -> Option<Level> {
    let mut core = line.trim_matches(is_decoration);
    for label in ["ĐỘ MẬT", "Độ mật", "độ mật"] {
        if let Some(rest) = core.strip_prefix(label)
            && rest.trim_start().starts_with(':')
        {
            core = rest.trim_start().trim_start_matches(':').trim_matches(is_decoration);
        }
    }
    let words: Vec<&str> = core
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '–' | '—' | '/' | ',' | '|' | '+' | ';'))
        .map(|w| w.trim_matches(is_decoration))
        .filter(|w| !w.is_empty() && !URGENCY.contains(w))
        .collect();
    match words.as_slice() {
        ["MẬT"] => Some(Level::Mat),
        ["TỐI", "MẬT"] => Some(Level::ToiMat),
        ["TUYỆT", "MẬT"] => Some(Level::TuyetMat),
        _ => None,
    }
}

/// Official-document context of a text (0..=3).
pub fn context_score(text: &str) -> u32 {
    let lower = text.to_lowercase();
    let n = CONTEXT.iter().filter(|alts| alts.iter().any(|p| lower.contains(p))).count();
    (n as u32).min(3)
}

/// The levels of the stamp lines of `text` (NFC), wherever they are.
pub fn stamp_lines(text: &str, caseless: bool) -> Vec<Level> {
    let mut found = Vec::new();
    for line in text.split(is_break) {
        if line.len() > 200 {
            continue;
        }
        let level = if caseless {
            if !line.contains(['ậ', 'Ậ']) {
                continue;
            }
            stamp(&line.to_uppercase())
        } else {
            if !line.contains('Ậ') {
                continue;
            }
            stamp(line)
        };
        found.extend(level);
    }
    found
}

/// Stamps found in one text, before scoring.
#[derive(Debug, Clone, Default)]
pub struct Stamps {
    /// (level, near the top or bottom of the text)
    pub found: Vec<(Level, bool)>,
    /// Official-document context of the text (0..=3).
    pub context: u32,
}

/// The stamp lines of `text` (NFC). `caseless`: the encoding lost letter
/// case (TCVN3), so lines are compared in uppercase.
pub fn stamps(text: &str, caseless: bool) -> Stamps {
    let lines: Vec<&str> =
        text.split(is_break).filter(|l| !l.trim_matches(is_decoration).is_empty()).collect();
    let n = lines.len();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.len() > 200 {
            continue;
        }
        let level = if caseless {
            if !line.contains(['ậ', 'Ậ']) {
                continue;
            }
            stamp(&line.to_uppercase())
        } else {
            if !line.contains('Ậ') {
                continue;
            }
            stamp(line)
        };
        if let Some(l) = level {
            found.push((l, i < EDGE_LINES || i + EDGE_LINES >= n));
        }
    }
    let context = if found.is_empty() { 0 } else { context_score(text) };
    Stamps { found, context }
}

/// Whether a stamp line scores enough. `context`: the document's (0..=3);
/// `bonus`: 1 when the text is a page header, footer or comment of an
/// office document (printed at the top or bottom of every page).
pub fn accept(level: Level, edge: bool, context: u32, bonus: u32) -> bool {
    let score = 2 + u32::from(edge) + context.min(3) + bonus;
    score >= THRESHOLD && (level != Level::Mat || context + bonus > 0)
}

/// The highest stamped level in `text` (NFC), judged on its own.
pub fn find(text: &str, caseless: bool) -> Option<Level> {
    let s = stamps(text, caseless);
    s.found.iter().filter(|(l, edge)| accept(*l, *edge, s.context, 0)).map(|(l, _)| *l).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "UBND TỈNH X\nSỞ Y\nSố: 12/BC-SY\nCỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc\n";

    #[test]
    fn secrets_marker_levels_and_highest_wins() {
        assert_eq!(find(&format!("{HEADER}MẬT\nBáo cáo"), false), Some(Level::Mat));
        assert_eq!(find(&format!("{HEADER}\n  TỐI MẬT  \nBáo cáo"), false), Some(Level::ToiMat));
        assert_eq!(find(&format!("{HEADER}[ TUYỆT MẬT ]\nBáo cáo"), false), Some(Level::TuyetMat));
        assert_eq!(find(&format!("MẬT\n{HEADER}TUYỆT MẬT\nBáo cáo\nTỐI MẬT"), false), Some(Level::TuyetMat));
        assert_eq!(find(&format!("{HEADER}Độ mật: TỐI MẬT\n"), false), Some(Level::ToiMat));
        assert_eq!(find(&format!("{HEADER}MẬT - HỎA TỐC\n"), false), Some(Level::Mat));
        // a stamp at the top needs no context for the two higher levels
        assert_eq!(find("TUYỆT MẬT\nKế hoạch", false), Some(Level::TuyetMat));
        // TCVN3 text loses case
        assert_eq!(find(&format!("{HEADER}tuyệt mật\n"), true), Some(Level::TuyetMat));
        assert_eq!(find(&format!("{HEADER}tuyệt mật\n"), false), None);
    }

    #[test]
    fn secrets_marker_hard_negatives() {
        for neg in [
            "Hệ thống bảo mật và mật khẩu; bí mật; mật ong rừng",
            "MẬT KHẨU\nNhập MẬT KHẨU của bạn",
            "Chương 3\nTỐI MẬT THƯ\nCâu chuyện",
            "MẬT ĐỘ DÂN SỐ\nSố: 3",
            "BẢO MẬT\nSố: 1/QĐ\nNơi nhận:",
            "BÍ MẬT\nCỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
            "Tài liệu này không phải TUYỆT MẬT theo quy định",
            "MẬT\nmật ong nguyên chất",
        ] {
            assert_eq!(find(neg, false), None, "{neg}");
        }
        // a bare MẬT in the middle of a long text without context
        let story = format!("{}MẬT\n{}", "dòng\n".repeat(40), "dòng\n".repeat(40));
        assert_eq!(find(&story, false), None);
    }
}
