//! Text of XML and HTML: tags dropped, entities decoded (as UTF-8), a line
//! break wherever a paragraph, cell, row, text box or line break ends, so
//! that a stamp in its own paragraph or box stays alone on its line. Runs
//! inside a paragraph are joined, so a word Word split across runs
//! (`<w:t>M</w:t>...<w:t>ẬT</w:t>`) is whole again. Other bytes pass
//! unchanged, whatever their encoding.

use memchr::memchr2;

/// Elements (local names, lowercase) whose start or end breaks a line.
const BREAKS: &[&[u8]] = &[
    b"p",
    b"br",
    b"cr",
    b"tab",
    b"tc",
    b"tr",
    b"td",
    b"th",
    b"li",
    b"div",
    b"h",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"si",
    b"c",
    b"row",
    b"table-cell",
    b"table-row",
    b"line-break",
    b"title",
    b"table",
    b"txbxcontent",
    b"comment",
    b"footnote",
    b"endnote",
    b"hdr",
    b"ftr",
    b"center",
    b"blockquote",
    b"pre",
    b"section",
    b"frame",
    b"text-box",
    b"note",
    b"annotation",
    b"sp",
];

/// Elements whose content is not text.
const SKIP: &[&[u8]] = &[b"script", b"style", b"instrtext"];

fn local_name(tag: &[u8]) -> Vec<u8> {
    let t = tag.strip_prefix(b"/").unwrap_or(tag);
    let end = t.iter().position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>').unwrap_or(t.len());
    let name = &t[..end];
    let local = match name.iter().rposition(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    local.to_ascii_lowercase()
}

fn named_entity(name: &[u8]) -> Option<char> {
    Some(match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => ' ',
        b"Acirc" => 'Â',
        b"acirc" => 'â',
        b"Ecirc" => 'Ê',
        b"ecirc" => 'ê',
        b"Ocirc" => 'Ô',
        b"ocirc" => 'ô',
        b"Agrave" => 'À',
        b"agrave" => 'à',
        b"Aacute" => 'Á',
        b"aacute" => 'á',
        b"Atilde" => 'Ã',
        b"atilde" => 'ã',
        b"Egrave" => 'È',
        b"egrave" => 'è',
        b"Eacute" => 'É',
        b"eacute" => 'é',
        b"Igrave" => 'Ì',
        b"igrave" => 'ì',
        b"Iacute" => 'Í',
        b"iacute" => 'í',
        b"Ograve" => 'Ò',
        b"ograve" => 'ò',
        b"Oacute" => 'Ó',
        b"oacute" => 'ó',
        b"Otilde" => 'Õ',
        b"otilde" => 'õ',
        b"Ugrave" => 'Ù',
        b"ugrave" => 'ù',
        b"Uacute" => 'Ú',
        b"uacute" => 'ú',
        b"Yacute" => 'Ý',
        b"yacute" => 'ý',
        _ => return None,
    })
}

fn entity(body: &[u8]) -> Option<char> {
    if let Some(num) = body.strip_prefix(b"#") {
        let s = std::str::from_utf8(num).ok()?;
        let v = match s.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => s.parse().ok()?,
        };
        return char::from_u32(v);
    }
    named_entity(body)
}

/// The text of an XML or HTML document.
pub fn text(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut i = 0;
    let mut skipping: Option<Vec<u8>> = None;
    while i < data.len() {
        let Some(off) = memchr2(b'<', b'&', &data[i..]) else {
            if skipping.is_none() {
                out.extend_from_slice(&data[i..]);
            }
            break;
        };
        if skipping.is_none() {
            out.extend_from_slice(&data[i..i + off]);
        }
        i += off;
        if data[i] == b'&' {
            let end = data[i..].iter().take(12).position(|b| *b == b';');
            match end.and_then(|e| entity(&data[i + 1..i + e]).map(|c| (e, c))) {
                Some((e, c)) => {
                    if skipping.is_none() {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    i += e + 1;
                }
                None => {
                    if skipping.is_none() {
                        out.push(b'&');
                    }
                    i += 1;
                }
            }
            continue;
        }
        // a tag, comment, CDATA section or declaration
        if data[i..].starts_with(b"<!--") {
            i = find(data, i + 4, b"-->").map_or(data.len(), |e| e + 3);
            continue;
        }
        if data[i..].starts_with(b"<![CDATA[") {
            let end = find(data, i + 9, b"]]>").unwrap_or(data.len());
            if skipping.is_none() {
                out.extend_from_slice(&data[i + 9..end]);
            }
            i = (end + 3).min(data.len());
            continue;
        }
        let end = memchr::memchr(b'>', &data[i..]).map_or(data.len(), |e| i + e);
        let tag = &data[i + 1..end];
        let name = local_name(tag);
        let closing = tag.first() == Some(&b'/');
        if let Some(s) = &skipping {
            if closing && *s == name {
                skipping = None;
            }
        } else if !closing && !tag.ends_with(b"/") && SKIP.contains(&name.as_slice()) {
            skipping = Some(name);
        } else if BREAKS.contains(&name.as_slice()) {
            out.push(b'\n');
        } else if name.as_slice() == b"s" {
            // ODF's `<text:s/>`: spaces
            out.push(b' ');
        }
        i = end + 1;
    }
    out
}

fn find(data: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= data.len() {
        return None;
    }
    memchr::memmem::find(&data[from..], needle).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_markup_joins_runs_and_breaks_paragraphs() {
        let xml = r#"<w:p><w:r><w:t>TUYỆT M</w:t></w:r><w:proofErr/><w:r><w:t>ẬT</w:t></w:r></w:p><w:p><w:r><w:t>Số: 1 &amp; &#7852;</w:t></w:r></w:p>"#.as_bytes();
        assert_eq!(String::from_utf8_lossy(&text(xml)), "\nTUYỆT MẬT\n\nSố: 1 & Ậ\n");
        let html = b"<html><style>p{}</style><body><div>M&Acirc;&#803;T</div><p>x</p></body></html>";
        assert_eq!(String::from_utf8_lossy(&text(html)), "\nMÂ\u{323}T\n\nx\n");
    }
}
