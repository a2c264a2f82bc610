//! Rule text: logical lines (with `\` continuations and comments), the
//! header tokens and the option list of one rule.

/// One enabled rule as written, joined if it spans several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRule {
    /// 1-based line of the rule's first line.
    pub line: usize,
    pub text: String,
}

const ACTIONS: [&str; 7] = ["alert", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth", "pass"];

fn starts_with_action(s: &str) -> bool {
    let word: String = s.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    ACTIONS.contains(&word.as_str()) && s[word.len()..].starts_with(|c: char| c.is_whitespace())
}

/// Splits a rule file into enabled rules. Blank lines and comments are
/// dropped; a commented-out rule (`# alert ...`) is disabled and not returned.
/// A line ending in `\` continues on the next line.
pub(crate) fn rule_lines(text: &str) -> (Vec<RawRule>, usize) {
    let mut out = Vec::new();
    let mut disabled = 0usize;
    let mut acc = String::new();
    let mut start = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches(['\r', '\n']);
        if acc.is_empty() {
            start = i + 1;
        }
        let trimmed_end = line.trim_end();
        if let Some(stripped) = trimmed_end.strip_suffix('\\') {
            acc.push_str(stripped);
            continue;
        }
        acc.push_str(line);
        let logical = std::mem::take(&mut acc);
        push_logical(&mut out, &mut disabled, start, &logical);
    }
    if !acc.is_empty() {
        push_logical(&mut out, &mut disabled, start, &acc);
    }
    (out, disabled)
}

fn push_logical(out: &mut Vec<RawRule>, disabled: &mut usize, line: usize, logical: &str) {
    let t = logical.trim();
    if t.is_empty() {
        return;
    }
    if t.starts_with('#') {
        if is_disabled_rule(t) {
            *disabled += 1;
        }
        return;
    }
    out.push(RawRule { line, text: t.to_string() });
}

/// Whether a comment line holds a disabled rule (`#alert ...`).
pub(crate) fn is_disabled_rule(line: &str) -> bool {
    let t = line.trim_start();
    match t.strip_prefix('#') {
        Some(rest) => starts_with_action(rest.trim_start_matches(['#', ' ', '\t'])),
        None => false,
    }
}

/// Header tokens and the text between the option parentheses.
pub(crate) fn split_rule(text: &str) -> Result<(Vec<&str>, &str), String> {
    let open = text.find('(').ok_or_else(|| "no option list `(`".to_string())?;
    let close = text.rfind(')').ok_or_else(|| "no closing `)`".to_string())?;
    if close < open {
        return Err("no closing `)`".to_string());
    }
    if !text[close + 1..].trim().is_empty() {
        return Err(format!("text after the closing `)`: `{}`", trunc(text[close + 1..].trim())));
    }
    let header = header_tokens(&text[..open]);
    Ok((header, &text[open + 1..close]))
}

/// Splits the header on whitespace outside brackets.
fn header_tokens(h: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, c) in h.char_indices() {
        match c {
            '[' => {
                depth += 1;
                start.get_or_insert(i);
            }
            ']' => {
                depth -= 1;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && depth <= 0 => {
                if let Some(s) = start.take() {
                    out.push(&h[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&h[s..]);
    }
    out
}

/// One `keyword[:value];` option; the value keeps its escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opt<'a> {
    pub key: &'a str,
    pub value: Option<&'a str>,
}

/// Splits the option list on `;` not escaped by `\`.
pub(crate) fn split_options(body: &str) -> Result<Vec<Opt<'_>>, String> {
    let mut out = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0usize;
    while i < bytes.len() {
        // skip separators
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b';') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let kstart = i;
        while i < bytes.len() && bytes[i] != b':' && bytes[i] != b';' {
            i += 1;
        }
        let key = body[kstart..i].trim();
        if key.is_empty() {
            return Err("empty option name".to_string());
        }
        if i >= bytes.len() || bytes[i] == b';' {
            out.push(Opt { key, value: None });
            i += 1;
            continue;
        }
        // value
        i += 1;
        let vstart = i;
        let mut escaped = false;
        while i < bytes.len() {
            let b = bytes[i];
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b';' {
                break;
            }
            i += 1;
        }
        let value = body.get(vstart..i).unwrap_or("").trim();
        out.push(Opt { key, value: Some(value) });
        i += 1;
    }
    Ok(out)
}

/// Shortens a value for a message.
pub(crate) fn trunc(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let t: String = s.chars().take(MAX).collect();
        format!("{t}…")
    }
}

/// Removes surrounding double quotes if both are present.
pub(crate) fn unquote(s: &str) -> &str {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') { &t[1..t.len() - 1] } else { t }
}

/// Unescapes `\x` sequences of a quoted string value (`msg`, names).
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_disabled() {
        let t = "# comment\n\n#alert tcp any any -> any any (sid:1;)\nalert tcp any any -> \\\n any any (sid:2;)\n  alert udp any any -> any any (sid:3;)\r\n";
        let (r, disabled) = rule_lines(t);
        assert_eq!(disabled, 1);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].line, 4);
        assert_eq!(r[0].text, "alert tcp any any ->  any any (sid:2;)");
        assert_eq!(r[1].line, 6);
        assert!(is_disabled_rule("#alert tcp any any -> any any (sid:1;)"));
        assert!(is_disabled_rule("# drop ip any any -> any any (sid:1;)"));
        assert!(!is_disabled_rule("# alerting is fun"));
    }

    #[test]
    fn options_with_escapes() {
        let o = split_options(r#"msg:"a\;b"; content:"x\"y"; nocase; sid:1"#).unwrap();
        assert_eq!(o.len(), 4);
        assert_eq!(o[0], Opt { key: "msg", value: Some(r#""a\;b""#) });
        assert_eq!(o[1].value, Some(r#""x\"y""#));
        assert_eq!(o[2], Opt { key: "nocase", value: None });
        assert_eq!(o[3].value, Some("1"));
    }

    #[test]
    fn header_with_spaces_in_lists() {
        let (h, body) = split_rule("alert ip [1.2.3.4, 5.6.7.8] any -> $HOME_NET any (sid:1;)").unwrap();
        assert_eq!(h, vec!["alert", "ip", "[1.2.3.4, 5.6.7.8]", "any", "->", "$HOME_NET", "any"]);
        assert_eq!(body, "sid:1;");
    }
}
