//! MIME messages (RFC 2045/2046): headers, multipart bodies (nested),
//! base64 and quoted-printable parts. Parts are handed back to the
//! scanner, which treats each by its own content (text, HTML, an attached
//! document or archive); file names of attachments are never kept.

use base64::Engine as _;

/// One leaf part: its media type (lowercase) and decoded body.
pub struct Part {
    pub media_type: String,
    pub body: Vec<u8>,
}

/// Whether `data` starts like an RFC 5322 message with MIME headers.
pub fn looks_like(data: &[u8]) -> bool {
    let head = &data[..data.len().min(16 * 1024)];
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let header_line = first.starts_with(b"From ")
        || first
            .iter()
            .position(|b| *b == b':')
            .is_some_and(|p| p > 0 && first[..p].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'));
    if !header_line {
        return false;
    }
    let end = split_head(head).map_or(head.len(), |(h, _)| h.len());
    let lower = head[..end].to_ascii_lowercase();
    memchr::memmem::find(&lower, b"content-type:").is_some()
        || memchr::memmem::find(&lower, b"mime-version:").is_some()
}

fn split_head(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = memchr::memmem::find(data, b"\r\n\r\n").map(|p| (p, 4));
    let lf = memchr::memmem::find(data, b"\n\n").map(|p| (p, 2));
    let (p, n) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&data[..p], &data[p + n..]))
}

/// Unfolded headers, names lowercase.
fn headers(head: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(p) = line.iter().position(|b| *b == b':') {
            let name = String::from_utf8_lossy(&line[..p]).trim().to_ascii_lowercase();
            out.push((name, String::from_utf8_lossy(&line[p + 1..]).trim().to_string()));
        }
    }
    out
}

fn param(value: &str, name: &str) -> Option<String> {
    for piece in value.split(';').skip(1) {
        let (k, v) = piece.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

pub fn base64_decode(body: &[u8]) -> Vec<u8> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    // the common case: lines of a multiple of four characters (the last
    // one padded), gathered without their line breaks and decoded in one
    // call (a call per 76-character line cost twice as much)
    let mut joined = Vec::with_capacity(body.len());
    let mut start = 0;
    let mut clean_lines = true;
    while start < body.len() {
        let end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |p| start + p);
        let line = body[start..end].trim_ascii();
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        let last = start >= body.len() || body[start..].trim_ascii().is_empty();
        if !last && !line.len().is_multiple_of(4) {
            clean_lines = false;
            break;
        }
        joined.extend_from_slice(line);
    }
    if clean_lines {
        let mut out = vec![0u8; joined.len() / 4 * 3 + 3];
        if let Ok(n) = engine.decode_slice(&joined, &mut out) {
            out.truncate(n);
            return out;
        }
        // padding inside (parts encoded separately, joined line by line)
        let mut out = Vec::with_capacity(body.len() / 4 * 3);
        let mut ok = true;
        for line in body.split(|b| *b == b'\n').map(<[u8]>::trim_ascii).filter(|l| !l.is_empty()) {
            if engine.decode_vec(line, &mut out).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            return out;
        }
    }
    // damaged or oddly wrapped: every base64 character, in one piece
    let mut clean: Vec<u8> =
        body.iter().copied().filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/')).collect();
    // a stray length of 4n+1 is damage: drop the last character
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    engine.decode(&clean).unwrap_or_default()
}

pub fn qp_decode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            if body.get(i + 1) == Some(&b'\r') && body.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if body.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = body.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The leaf parts of a message, depth-first, at most `max_parts`; the
/// flag says whether parts were left out (nesting or count).
pub fn parts(data: &[u8], max_parts: usize) -> (Vec<Part>, bool) {
    let mut out = Vec::new();
    let mut cut = false;
    walk(data, 0, max_parts, &mut out, &mut cut);
    (out, cut)
}

fn walk(data: &[u8], depth: usize, max: usize, out: &mut Vec<Part>, cut: &mut bool) {
    if depth > 8 || out.len() >= max {
        *cut = true;
        return;
    }
    let (head, body) = split_head(data).unwrap_or((data, &[]));
    let hs = headers(head);
    let get = |n: &str| hs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let ctype = get("content-type").unwrap_or("text/plain");
    let media_type = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media_type.starts_with("multipart/") {
        let Some(boundary) = param(ctype, "boundary") else {
            out.push(Part { media_type: "text/plain".into(), body: body.to_vec() });
            return;
        };
        let delim = format!("--{boundary}");
        let mut pieces = Vec::new();
        let mut rest = body;
        while let Some(p) = memchr::memmem::find(rest, delim.as_bytes()) {
            pieces.push(&rest[..p]);
            rest = &rest[p + delim.len()..];
            if rest.starts_with(b"--") {
                break;
            }
        }
        if pieces.is_empty() {
            pieces.push(rest);
        }
        // the preamble before the first delimiter is not a part
        for piece in pieces.into_iter().skip(1) {
            let piece = piece.strip_prefix(b"\r\n").or_else(|| piece.strip_prefix(b"\n")).unwrap_or(piece);
            // the line break before a delimiter belongs to the delimiter
            let piece = piece.strip_suffix(b"\r\n").or_else(|| piece.strip_suffix(b"\n")).unwrap_or(piece);
            walk(piece, depth + 1, max, out, cut);
        }
        return;
    }
    let cte = get("content-transfer-encoding").unwrap_or("").to_ascii_lowercase();
    let decoded = match cte.as_str() {
        "base64" => base64_decode(body),
        "quoted-printable" => qp_decode(body),
        _ => body.to_vec(),
    };
    if media_type == "message/rfc822" {
        walk(&decoded, depth + 1, max, out, cut);
        return;
    }
    if out.len() >= max {
        *cut = true;
        return;
    }
    out.push(Part { media_type, body: decoded });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_mime_parts() {
        let msg = b"From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npre\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nM=E1=BA=ACT=\r\n!\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nTeG6rFQ=\r\n--XX--\r\n";
        assert!(looks_like(msg));
        let (p, cut) = parts(msg, 10);
        assert!(!cut);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].body, "MẬT!".as_bytes());
        assert_eq!(p[1].body, "MẬT".as_bytes());
        assert!(!looks_like(b"Hello: world\n\nno mime here"));
    }

    #[test]
    fn secrets_mime_base64_lines_joined_padding_inside_and_damage() {
        // wrapped lines decode as one piece
        assert_eq!(base64_decode(b"TeG6rFQg\r\nTeG6rFQ=\r\n"), "MẬT MẬT".as_bytes());
        // parts encoded separately and joined line by line: padding inside
        assert_eq!(base64_decode(b"TQ==\r\nTQ==\r\n"), b"MM");
        // a line of the wrong length: every base64 character in one piece
        assert_eq!(base64_decode(b"TeG6r\r\nFQ=\r\n"), "MẬT".as_bytes());
        assert_eq!(base64_decode(b"!!!!"), b"");
    }
}
