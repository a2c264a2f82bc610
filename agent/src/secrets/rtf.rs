//! Text of an RTF document: `\'hh` escapes as their bytes (the document's
//! code page or a legacy font's encoding), `\uN` as UTF-8 (its fallback
//! characters skipped), paragraph, line, cell and row ends as line breaks;
//! font tables, style sheets, pictures, field instructions and other
//! `\*` destinations dropped. Headers and footers are kept.

const SKIP_DESTINATIONS: &[&[u8]] = &[
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"generator",
    b"xmlnstbl",
    b"fldinst",
    b"object",
    b"bkmkstart",
    b"bkmkend",
    b"filetbl",
    b"revtbl",
    b"mmathPr",
    b"wgrffmtfilter",
];

const BREAK_WORDS: &[&[u8]] = &[b"par", b"line", b"row", b"cell", b"sect", b"page", b"nestcell", b"column"];

/// The text of an RTF document (bounded by its size: the output is never
/// longer than the input).
pub fn text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2);
    // per group: (skipping, \uc value)
    let mut stack: Vec<(bool, usize)> = vec![(false, 1)];
    let mut pending_skip = 0usize;
    let mut i = 0;
    let n = data.len();
    while i < n {
        let b = data[i];
        let (skipping, uc) = *stack.last().unwrap_or(&(false, 1));
        match b {
            b'{' => {
                stack.push((skipping, uc));
                if stack.len() > 4096 {
                    break;
                }
                i += 1;
            }
            b'}' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            b'\\' => {
                i += 1;
                let Some(&c) = data.get(i) else { break };
                if c == b'\'' {
                    let hex = data.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                    i += 3;
                    if pending_skip > 0 {
                        pending_skip -= 1;
                    } else if let (Some(v), false) = (v, skipping) {
                        out.push(v);
                    }
                    continue;
                }
                if !c.is_ascii_alphabetic() {
                    // control symbol
                    i += 1;
                    match c {
                        b'*' => {
                            if let Some(top) = stack.last_mut() {
                                top.0 = true;
                            }
                        }
                        b'\\' | b'{' | b'}' if !skipping => out.push(c),
                        b'~' if !skipping => out.push(b' '),
                        b'\n' | b'\r' if !skipping => out.push(b'\n'),
                        _ => {}
                    }
                    continue;
                }
                let start = i;
                while i < n && data[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word = &data[start..i];
                let num_start = i;
                if i < n && data[i] == b'-' {
                    i += 1;
                }
                while i < n && data[i].is_ascii_digit() {
                    i += 1;
                }
                let param: Option<i64> =
                    std::str::from_utf8(&data[num_start..i]).ok().and_then(|s| s.parse().ok());
                if i < n && data[i] == b' ' {
                    i += 1;
                }
                pending_skip = 0;
                if SKIP_DESTINATIONS.contains(&word) {
                    if let Some(top) = stack.last_mut() {
                        top.0 = true;
                    }
                } else if word == b"uc" {
                    if let Some(top) = stack.last_mut() {
                        top.1 = usize::try_from(param.unwrap_or(1)).unwrap_or(1).min(8);
                    }
                } else if word == b"u" {
                    let v = param.unwrap_or(0);
                    let v = if v < 0 { v + 65536 } else { v };
                    if !skipping && let Some(ch) = u32::try_from(v).ok().and_then(char::from_u32) {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    pending_skip = uc;
                } else if !skipping && BREAK_WORDS.contains(&word) {
                    out.push(b'\n');
                } else if !skipping && word == b"tab" {
                    out.push(b' ');
                }
            }
            b'\r' | b'\n' => i += 1,
            _ => {
                if pending_skip > 0 {
                    pending_skip -= 1;
                } else if !skipping {
                    out.push(b);
                }
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_rtf_text() {
        let rtf = br"{\rtf1\ansi\ansicpg1258{\fonttbl{\f0 Times;}}{\*\generator X;}\pard TUY\u7878?T M\'c2\'f2T\par {\header Noi}\par}";
        assert_eq!(text(rtf), b"TUY\xe1\xbb\x86T M\xc2\xf2T\nNoi\n".to_vec());
    }
}
