//! Text of XML and HTML: tags dropped, entities decoded (as UTF-8), a line
//! break wherever a paragraph, cell, row, text box or line break ends, so
//! that a stamp in its own paragraph or box stays alone on its line. Runs
//! inside a paragraph are joined, so a word Word split across runs
//! (`<w:t>M</w:t>...<w:t>ẬT</w:t>`) is whole again. Other bytes pass
//! unchanged, whatever their encoding.
//!
//! Office documents may store a stamp in lowercase and show it in
//! capitals through formatting: Word's All Caps (`<w:caps/>` in a run's
//! properties or in its character or paragraph style), DrawingML's
//! `cap="all"`, an ODF style with `fo:text-transform="uppercase"`. With
//! [`CapsStyles`] ([`text_with_caps`]) the text of such runs comes out in
//! uppercase, as it is printed; text without that formatting keeps its
//! case, so a lowercase word in prose never becomes a stamp.

use std::collections::HashMap;

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

/// Value of the attribute with local name `name` (any prefix) in a tag.
fn attr<'a>(tag: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut i = tag.iter().position(|b| b.is_ascii_whitespace())?;
    while i < tag.len() {
        let rest = &tag[i..];
        let eq = memchr::memchr(b'=', rest)?;
        let key = rest[..eq].trim_ascii();
        let local = key.iter().rposition(|b| *b == b':').map_or(key, |c| &key[c + 1..]);
        let after = &rest[eq + 1..];
        let q = after.iter().position(|b| *b == b'"' || *b == b'\'')?;
        let quote = after[q];
        let vstart = q + 1;
        let vlen = memchr::memchr(quote, &after[vstart..])?;
        if local == name {
            return Some(&after[vstart..vstart + vlen]);
        }
        i += eq + 1 + vstart + vlen + 1;
    }
    None
}

/// Whether an on/off property (`<w:caps/>`, `<w:caps w:val="0"/>`) is on.
fn on_off(tag: &[u8]) -> bool {
    !matches!(attr(tag, b"val"), Some(b"0" | b"false" | b"off" | b"none"))
}

/// Styles of an office document that set or clear capitals, by name:
/// Word styles with `<w:caps/>` in their run properties, ODF styles with
/// `fo:text-transform`; each with the style it is based on.
#[derive(Debug, Default, Clone)]
pub struct CapsStyles {
    styles: HashMap<Vec<u8>, StyleDef>,
}

/// One style: whether it sets capitals on or off (`None`: it says
/// nothing) and the style it is based on.
#[derive(Debug, Default, Clone)]
struct StyleDef {
    caps: Option<bool>,
    based_on: Option<Vec<u8>>,
}

impl CapsStyles {
    /// Adds the style definitions of one XML part (Word's styles.xml, an
    /// ODF styles.xml or content.xml with its automatic styles).
    pub fn collect(&mut self, data: &[u8]) {
        if self.styles.len() > 10_000 {
            return;
        }
        // the style being read and its name
        let mut current: Option<(Vec<u8>, StyleDef)> = None;
        let mut i = 0;
        while let Some(off) = memchr::memchr(b'<', &data[i..]) {
            let start = i + off + 1;
            let end = memchr::memchr(b'>', &data[start..]).map_or(data.len(), |e| start + e);
            let tag = &data[start..end];
            i = end;
            let name = local_name(tag);
            let closing = tag.first() == Some(&b'/');
            match name.as_slice() {
                b"style" if closing => {
                    if let Some((n, def)) = current.take() {
                        self.styles.insert(n, def);
                    }
                }
                b"style" => {
                    let n = attr(tag, b"styleId").or_else(|| attr(tag, b"name"));
                    let based_on = attr(tag, b"parent-style-name").map(<[u8]>::to_vec);
                    current = n.map(|n| (n.to_vec(), StyleDef { caps: None, based_on }));
                    if tag.ends_with(b"/")
                        && let Some((n, def)) = current.take()
                    {
                        self.styles.insert(n, def);
                    }
                }
                b"basedon" => {
                    if let (Some((_, def)), Some(v)) = (current.as_mut(), attr(tag, b"val")) {
                        def.based_on = Some(v.to_vec());
                    }
                }
                b"caps" => {
                    if let Some((_, def)) = current.as_mut() {
                        def.caps = Some(on_off(tag));
                    }
                }
                b"text-properties" => {
                    if let (Some((_, def)), Some(t)) = (current.as_mut(), attr(tag, b"text-transform")) {
                        def.caps = Some(t == b"uppercase");
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether `data` names (as an attribute value) a style that shows
    /// its text in capitals.
    fn referenced_in(&self, data: &[u8]) -> bool {
        self.styles.keys().filter(|n| self.caps(n) == Some(true)).any(|n| {
            let mut quoted = Vec::with_capacity(n.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(n);
            quoted.push(b'"');
            memchr::memmem::find(data, &quoted).is_some()
        })
    }

    /// Whether a style shows its text in capitals (its own setting or the
    /// nearest one of the styles it is based on), `None` if none says.
    fn caps(&self, name: &[u8]) -> Option<bool> {
        let mut n = name;
        for _ in 0..16 {
            let def = self.styles.get(n)?;
            if def.caps.is_some() {
                return def.caps;
            }
            n = def.based_on.as_deref()?;
        }
        None
    }
}

/// Whether an XML part may format text in capitals: a direct property
/// (`<w:caps/>`, `cap="all"`: one search for `cap`), in ODF a transform,
/// or a reference to one of the document's styles that do.
pub fn may_format_caps(data: &[u8], styles: &CapsStyles, odf: bool) -> bool {
    memchr::memmem::find(data, b"cap").is_some()
        || (odf && memchr::memmem::find(data, b"text-transform").is_some())
        || styles.referenced_in(data)
}

/// Capitals in effect while reading an office XML part.
#[derive(Default)]
struct CapsState {
    /// Word and DrawingML: inside a run, its direct setting and its
    /// character style's.
    run: Option<(Option<bool>, Option<bool>)>,
    /// Word: the paragraph style's setting.
    paragraph: Option<bool>,
    /// ODF: the setting of each open paragraph, heading and span.
    odf: Vec<Option<bool>>,
}

impl CapsState {
    fn on(&self) -> bool {
        if let Some((direct, style)) = self.run {
            if let Some(c) = direct.or(style) {
                return c;
            }
            return self.paragraph.unwrap_or(false);
        }
        self.odf.iter().rev().find_map(|c| *c).unwrap_or(false)
    }

    fn tag(&mut self, name: &[u8], tag: &[u8], closing: bool, styles: &CapsStyles) {
        let empty = tag.ends_with(b"/");
        match name {
            b"r" if closing => self.run = None,
            b"r" if !empty => self.run = Some((None, None)),
            b"p" | b"h" | b"span" if closing => {
                if name == b"p" {
                    self.paragraph = None;
                }
                self.odf.pop();
            }
            b"p" | b"h" | b"span" if !empty => {
                if name == b"p" {
                    self.paragraph = None;
                }
                if self.odf.len() < 64 {
                    self.odf.push(attr(tag, b"style-name").and_then(|n| styles.caps(n)));
                }
            }
            b"pstyle" => self.paragraph = attr(tag, b"val").and_then(|n| styles.caps(n)),
            b"rstyle" => {
                if let Some(r) = self.run.as_mut() {
                    r.1 = attr(tag, b"val").and_then(|n| styles.caps(n));
                }
            }
            b"caps" => {
                if let Some(r) = self.run.as_mut() {
                    r.0 = Some(on_off(tag));
                }
            }
            // DrawingML run properties: cap="all" | "small" | "none"
            b"rpr" => {
                if let (Some(r), Some(c)) = (self.run.as_mut(), attr(tag, b"cap")) {
                    r.0 = Some(c == b"all");
                }
            }
            _ => {}
        }
    }
}

fn push_text(out: &mut Vec<u8>, text: &[u8], upper: bool) {
    match std::str::from_utf8(text) {
        Ok(t) if upper => out.extend_from_slice(t.to_uppercase().as_bytes()),
        _ => out.extend_from_slice(text),
    }
}

/// The text of an XML or HTML document.
pub fn text(data: &[u8]) -> Vec<u8> {
    extract(data, None)
}

/// The text of an office XML part, runs formatted in capitals uppercased.
pub fn text_with_caps(data: &[u8], styles: &CapsStyles) -> Vec<u8> {
    extract(data, Some(styles))
}

fn extract(data: &[u8], styles: Option<&CapsStyles>) -> Vec<u8> {
    let mut caps = CapsState::default();
    let upper = |c: &CapsState| styles.is_some() && c.on();
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut i = 0;
    let mut skipping: Option<Vec<u8>> = None;
    while i < data.len() {
        let Some(off) = memchr2(b'<', b'&', &data[i..]) else {
            if skipping.is_none() {
                push_text(&mut out, &data[i..], upper(&caps));
            }
            break;
        };
        if skipping.is_none() {
            push_text(&mut out, &data[i..i + off], upper(&caps));
        }
        i += off;
        if data[i] == b'&' {
            let end = data[i..].iter().take(12).position(|b| *b == b';');
            match end.and_then(|e| entity(&data[i + 1..i + e]).map(|c| (e, c))) {
                Some((e, c)) => {
                    if skipping.is_none() {
                        let mut buf = [0u8; 4];
                        push_text(&mut out, c.encode_utf8(&mut buf).as_bytes(), upper(&caps));
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
                push_text(&mut out, &data[i + 9..end], upper(&caps));
            }
            i = (end + 3).min(data.len());
            continue;
        }
        let end = memchr::memchr(b'>', &data[i..]).map_or(data.len(), |e| i + e);
        let tag = &data[i + 1..end];
        let name = local_name(tag);
        let closing = tag.first() == Some(&b'/');
        if let Some(styles) = styles {
            caps.tag(&name, tag, closing, styles);
        }
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

    #[test]
    fn secrets_markup_caps_formatting_shows_runs_in_capitals() {
        let caps = |xml: &str, styles: &str| {
            let mut s = CapsStyles::default();
            s.collect(styles.as_bytes());
            s.collect(xml.as_bytes());
            String::from_utf8_lossy(&text_with_caps(xml.as_bytes(), &s)).into_owned()
        };
        // Word: direct All Caps, turned off, through a style based on one
        let styles = r#"<w:styles><w:style w:styleId="A"><w:rPr><w:caps/></w:rPr></w:style><w:style w:styleId="B"><w:basedOn w:val="A"/></w:style></w:styles>"#;
        let doc = r#"<w:p><w:r><w:rPr><w:caps/></w:rPr><w:t>tối mật</w:t></w:r></w:p><w:p><w:r><w:rPr><w:caps w:val="0"/></w:rPr><w:t>mật</w:t></w:r></w:p><w:p><w:pPr><w:pStyle w:val="B"/></w:pPr><w:r><w:t>Mật</w:t></w:r><w:r><w:rPr><w:caps w:val="false"/></w:rPr><w:t> x</w:t></w:r></w:p><w:p><w:r><w:t>mật</w:t></w:r></w:p>"#;
        assert_eq!(caps(doc, styles), "\nTỐI MẬT\n\nmật\n\nMẬT x\n\nmật\n");
        // a paragraph mark's properties do not format the runs
        let mark = r#"<w:p><w:pPr><w:rPr><w:caps/></w:rPr></w:pPr><w:r><w:t>mật</w:t></w:r></w:p>"#;
        assert_eq!(caps(mark, ""), "\nmật\n");
        // DrawingML
        let slide = r#"<a:p><a:r><a:rPr lang="vi" cap="all"/><a:t>tuyệt mật</a:t></a:r><a:r><a:t> a</a:t></a:r></a:p>"#;
        assert_eq!(caps(slide, ""), "\nTUYỆT MẬT a\n");
        // ODF: span and paragraph styles, a parent style, a span that
        // clears the transform inside an uppercase paragraph
        let styles = r#"<style:style style:name="S"><style:text-properties fo:text-transform="uppercase"/></style:style>"#;
        let content = r#"<office:automatic-styles><style:style style:name="P1" style:parent-style-name="S"/><style:style style:name="N"><style:text-properties fo:text-transform="none"/></style:style></office:automatic-styles><text:p text:style-name="P1">mật <text:span text:style-name="N">độ</text:span></text:p><text:p>mật</text:p>"#;
        assert_eq!(caps(content, styles), "\nMẬT độ\n\nmật\n");
        // without caps styles, text keeps its case
        assert_eq!(String::from_utf8_lossy(&text(doc.as_bytes())), "\ntối mật\n\nmật\n\nMật x\n\nmật\n");
    }
}
