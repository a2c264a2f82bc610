//! Text of a PDF: every stream (FlateDecode inflated within the caller's
//! limit; image and other filters skipped), ToUnicode CMaps collected,
//! and the strings of the text operators (`Tj`, `TJ`, `'`, `"`) pulled out
//! of content streams with a line break at each text object, line move or
//! `T*`. Hex strings are mapped through each CMap in turn (fonts are not
//! resolved, so each CMap yields one rendering and the stamp shows in the
//! one of its font); literal strings pass as bytes, so text in a legacy
//! font's encoding (TCVN3, VNI) reaches the prefilter unchanged.

use std::collections::HashMap;

/// A ToUnicode map: (code length in bytes, code) to text.
pub type CMap = HashMap<(u8, u32), String>;

/// A stream: the bytes before it (its dictionary) and its raw content.
pub type Stream<'a> = (&'a [u8], &'a [u8]);

/// The streams of a PDF, at most `max` (the flag: more were left out).
pub fn streams(data: &[u8], max: usize) -> (Vec<Stream<'_>>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = memchr::memmem::find(&data[at..], b"stream") {
        let kw = at + p;
        at = kw + 6;
        // `endstream` also contains the word
        if kw >= 3 && &data[kw - 3..kw] == b"end" {
            continue;
        }
        let mut start = at;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        } else if start == at {
            continue;
        }
        let end = memchr::memmem::find(&data[start..], b"endstream").map_or(data.len(), |e| start + e);
        let window = kw.saturating_sub(4096);
        let dict_start = memchr::memmem::rfind(&data[window..kw], b"obj").map_or(window, |d| window + d);
        let dict = &data[dict_start..kw];
        if out.len() >= max {
            return (out, true);
        }
        out.push((dict, &data[start..end]));
        at = end;
    }
    (out, false)
}

fn hex_value(s: &[u8]) -> Option<(u8, u32)> {
    let digits: Vec<u8> = s.iter().copied().filter(u8::is_ascii_hexdigit).collect();
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let v = u32::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?;
    Some((digits.len().div_ceil(2) as u8, v))
}

fn utf16_hex(s: &[u8]) -> String {
    let digits: Vec<u8> = s.iter().copied().filter(u8::is_ascii_hexdigit).collect();
    let units: Vec<u16> = digits
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok().and_then(|h| u16::from_str_radix(h, 16).ok()))
        .collect();
    char::decode_utf16(units).map(|r| r.unwrap_or('\u{FFFD}')).collect()
}

/// Hex tokens `<...>` of a CMap section.
fn hex_tokens(s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'<', &s[i..]) {
        let a = i + p + 1;
        let Some(e) = memchr::memchr(b'>', &s[a..]) else { break };
        out.push(&s[a..a + e]);
        i = a + e + 1;
    }
    out
}

/// Parses a ToUnicode CMap (`bfchar` and `bfrange` sections).
pub fn cmap(stream: &[u8]) -> Option<CMap> {
    memchr::memmem::find(stream, b"beginbf")?;
    let mut map = CMap::new();
    let mut at = 0;
    while let Some(p) = memchr::memmem::find(&stream[at..], b"beginbf") {
        let start = at + p;
        let is_range = stream[start..].starts_with(b"beginbfrange");
        let Some(e) = memchr::memmem::find(&stream[start..], b"endbf") else { break };
        let section = &stream[start..start + e];
        let toks = hex_tokens(section);
        if is_range {
            for t in toks.chunks(3) {
                let [lo, hi, dst] = t else { continue };
                let (Some((len, lo)), Some((_, hi))) = (hex_value(lo), hex_value(hi)) else { continue };
                let base = utf16_hex(dst);
                let mut chars: Vec<char> = base.chars().collect();
                for code in lo..=hi.min(lo.saturating_add(0xFFFF)) {
                    map.insert((len, code), chars.iter().collect());
                    if let Some(last) = chars.last_mut() {
                        *last = char::from_u32(*last as u32 + 1).unwrap_or(*last);
                    }
                }
            }
        } else {
            for t in toks.chunks(2) {
                let [src, dst] = t else { continue };
                if let Some(k) = hex_value(src) {
                    map.insert(k, utf16_hex(dst));
                }
            }
        }
        at = start + e + 5;
    }
    (!map.is_empty()).then_some(map)
}

/// A string operand of a text operator.
enum Str {
    Literal(Vec<u8>),
    Hex(Vec<u8>),
}

fn literal(data: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 1;
    while i < data.len() {
        let b = data[i];
        i += 1;
        match b {
            b'\\' => {
                let Some(&c) = data.get(i) else { break };
                i += 1;
                match c {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' | b'f' => {}
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match data.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((v & 0xFF) as u8);
                    }
                    b'\r' | b'\n' => {}
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(b);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    (out, i)
}

/// The text of a content stream, one rendering per CMap (or one with no
/// CMap). Literal strings are bytes; mapped hex strings are UTF-8.
pub fn content_text(stream: &[u8], cmaps: &[CMap]) -> Vec<Vec<u8>> {
    let mut strings: Vec<Option<Str>> = Vec::new(); // None = a line break
    let mut i = 0;
    let mut in_text = false;
    while i < stream.len() {
        let b = stream[i];
        match b {
            b'(' => {
                let (s, next) = literal(stream, i + 1);
                strings.push(Some(Str::Literal(s)));
                i = next;
            }
            b'<' if stream.get(i + 1) != Some(&b'<') => {
                let end = memchr::memchr(b'>', &stream[i..]).map_or(stream.len(), |e| i + e);
                strings.push(Some(Str::Hex(stream[i + 1..end].to_vec())));
                i = end + 1;
            }
            b'%' => {
                i = memchr::memchr2(b'\n', b'\r', &stream[i..]).map_or(stream.len(), |e| i + e);
            }
            _ if b.is_ascii_alphabetic() || b == b'\'' || b == b'"' || b == b'*' => {
                let start = i;
                while i < stream.len()
                    && (stream[i].is_ascii_alphabetic() || matches!(stream[i], b'*' | b'\'' | b'"'))
                {
                    i += 1;
                }
                match &stream[start..i] {
                    b"BT" => in_text = true,
                    b"ET" | b"Td" | b"TD" | b"T*" | b"Tm" | b"'" | b"\"" => {
                        in_text &= &stream[start..i] != b"ET";
                        strings.push(None);
                    }
                    b"Tj" | b"TJ" => {}
                    _ if !in_text => {
                        // operands outside text objects are not text
                        while matches!(strings.last(), Some(Some(_))) {
                            strings.pop();
                        }
                    }
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    let render = |map: Option<&CMap>| {
        let mut out = Vec::new();
        for s in &strings {
            match s {
                None => out.push(b'\n'),
                Some(Str::Literal(bytes)) => {
                    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
                        let units = rest.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
                        let text: String =
                            char::decode_utf16(units).map(|r| r.unwrap_or('\u{FFFD}')).collect();
                        out.extend_from_slice(text.as_bytes());
                    } else {
                        out.extend_from_slice(bytes);
                    }
                }
                Some(Str::Hex(h)) => {
                    let digits: Vec<u8> = h.iter().copied().filter(u8::is_ascii_hexdigit).collect();
                    let Some(map) = map else {
                        // without a map: the bytes themselves
                        for c in digits.chunks(2) {
                            if let Some(v) =
                                std::str::from_utf8(c).ok().and_then(|x| u8::from_str_radix(x, 16).ok())
                            {
                                out.push(v);
                            }
                        }
                        continue;
                    };
                    let width = map.keys().next().map_or(2, |k| usize::from(k.0)).max(1) * 2;
                    for c in digits.chunks(width) {
                        let code = std::str::from_utf8(c).ok().and_then(|x| u32::from_str_radix(x, 16).ok());
                        if let Some(t) = code.and_then(|v| map.get(&((width / 2) as u8, v))) {
                            out.extend_from_slice(t.as_bytes());
                        }
                    }
                }
            }
        }
        out
    };
    if cmaps.is_empty() { vec![render(None)] } else { cmaps.iter().map(|m| render(Some(m))).collect() }
}

/// Whether a stream's dictionary asks for Flate decoding, for no filter,
/// or for a filter we do not read.
pub enum Filter {
    None,
    Flate,
    Other,
}

pub fn filter(dict: &[u8]) -> Filter {
    let Some(p) = memchr::memmem::find(dict, b"/Filter") else { return Filter::None };
    let rest = &dict[p + 7..dict.len().min(p + 64)];
    if memchr::memmem::find(rest, b"FlateDecode").is_some() {
        // a chain of filters starting with Flate, then another one, is
        // still read: the text is in the inflated bytes or nowhere
        Filter::Flate
    } else {
        Filter::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_pdf_text_through_cmap() {
        let cm = b"beginbfchar\n<0001> <004D>\n<0002> <1EAC>\nendbfchar\n1 beginbfrange\n<0003> <0004> <0054>\nendbfrange";
        let map = cmap(cm).expect("cmap");
        let content = b"BT /F1 12 Tf 10 700 Td <000100020003> Tj ET BT (plain) Tj ET";
        let texts = content_text(content, &[map]);
        assert_eq!(String::from_utf8_lossy(&texts[0]), "\nM\u{1EAC}T\nplain\n");
    }
}
