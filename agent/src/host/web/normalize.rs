//! The transformations a request field goes through before the web
//! signatures look at it, as OWASP CRS chains them (`t:urlDecodeUni`
//! repeated, `t:htmlEntityDecode`, `t:lowercase`, `t:replaceComments`,
//! `t:compressWhitespace`, `t:removeNulls`): what an evasion changes
//! (double encoding, `%u0027`, `&#x27;`, `UnIoN/**/SeLeCt`, `+` for a
//! space) no longer matters. Bounded: at most three decoding rounds, the
//! output never longer than the input.

/// Rounds of URL decoding (double and triple encoding).
const ROUNDS: usize = 3;

/// The normalised form of a request field.
pub fn normalize(raw: &str) -> String {
    // most fields have nothing to transform
    let plain = raw.bytes().all(|b| {
        !(matches!(b, b'%' | b'+' | b'&' | b'*' | b'\0')
            || b.is_ascii_whitespace()
            || b.is_ascii_uppercase()
            || b >= 0x80)
    });
    if plain {
        return raw.to_string();
    }
    let mut bytes = raw.as_bytes().to_vec();
    for _ in 0..ROUNDS {
        let next = url_decode(&bytes);
        if next == bytes {
            break;
        }
        bytes = next;
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = html_decode(&text);
    let mut out = String::with_capacity(text.len());
    let lower = text.to_lowercase();
    let mut rest = lower.as_str();
    // comments become a space: `union/**/select`, `un/*x*/ion` stays cut
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = match rest[i + 2..].find("*/") {
            Some(j) => &rest[i + 2 + j + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    compress(&out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX`, `%uXXXX` (IIS) and `+`; invalid escapes are kept as they are.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                if let (Some(&u), true) = (s.get(i + 1), s.len() >= i + 6)
                    && (u == b'u' || u == b'U')
                    && let (Some(a), Some(b), Some(c), Some(d)) =
                        (hex(s[i + 2]), hex(s[i + 3]), hex(s[i + 4]), hex(s[i + 5]))
                {
                    let cp = (u32::from(a) << 12) | (u32::from(b) << 8) | (u32::from(c) << 4) | u32::from(d);
                    // full-width forms (`%uff07`) are their ASCII letters
                    let cp = if (0xff01..=0xff5e).contains(&cp) { cp - 0xfee0 } else { cp };
                    let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
                match (s.get(i + 1).and_then(|b| hex(*b)), s.get(i + 2).and_then(|b| hex(*b))) {
                    (Some(h), Some(l)) => {
                        out.push((h << 4) | l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&amp;`, `&nbsp;` and numeric
/// references (`&#60;`, `&#x3c;`, with or without the `;`).
fn html_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (decoded, used) = entity(after);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(s: &str) -> (Option<char>, usize) {
    const NAMED: &[(&str, char)] =
        &[("lt", '<'), ("gt", '>'), ("quot", '"'), ("apos", '\''), ("amp", '&'), ("nbsp", ' ')];
    let lower: String = s.chars().take(8).collect::<String>().to_ascii_lowercase();
    for (name, c) in NAMED {
        if lower.starts_with(name) {
            let used = name.len() + usize::from(s[name.len()..].starts_with(';'));
            return (Some(*c), used);
        }
    }
    let Some(num) = s.strip_prefix('#') else { return (None, 0) };
    let (radix, digits_at) = if num.starts_with(['x', 'X']) { (16, 2) } else { (10, 1) };
    let digits: String = s[digits_at..].chars().take_while(|c| c.is_digit(radix)).take(7).collect();
    if digits.is_empty() {
        return (None, 0);
    }
    let used = digits_at + digits.len();
    let used = used + usize::from(s[used..].starts_with(';'));
    (u32::from_str_radix(&digits, radix).ok().and_then(char::from_u32), used)
}

/// Runs of whitespace become one space; NULs go.
fn compress(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c == '\0' {
            continue;
        }
        if c.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evasions_come_out_plain() {
        assert_eq!(normalize("/?id=1%2527%20UnIoN/**/SeLeCt+1"), "/?id=1' union select 1");
        assert_eq!(normalize("%252e%252e%252f"), "../");
        assert_eq!(normalize("%u0027%u003cscript%u003e"), "'<script>");
        assert_eq!(normalize("%uff1cscript%uff1e"), "<script>");
        assert_eq!(normalize("&#x3C;svg onload&#61;alert(1)&gt;"), "<svg onload=alert(1)>");
        assert_eq!(normalize("&#60script&#62"), "<script>");
        assert_eq!(normalize("a%00b\t\n  c"), "ab c");
        // Vietnamese text decodes to itself, lowercased
        assert_eq!(normalize("q=Ngh%E1%BB%8B+%C4%91%E1%BB%8Bnh"), "q=nghị định");
        // broken escapes survive
        assert_eq!(normalize("100%+sure%zz&x"), "100% sure%zz&x");
        assert_eq!(normalize("a/*unterminated"), "a ");
    }
}
