//! Content analysis of web roots: defacement of pages and web shells.
//! Pure functions over bytes (at most [`SAMPLE`] bytes of a file are read).
//!
//! * A page's **profile** (title, hosts of external scripts and frames,
//!   defacer phrases present, a MinHash sketch of its word 4-shingles) is
//!   kept in the baseline, so a change can be judged against the page it
//!   replaces without keeping the page.
//! * **Defacement**: a defacer phrase that was not there (`hacked by`,
//!   `defaced by`, `h4ck3d`, ...), a script or frame from a new external
//!   host, a hidden frame, or the content replaced (similarity of the
//!   sketches below 0.2 and a different title).
//! * **Web shell**: a server-side script (PHP, JSP, ASP, ASPX) holding code
//!   execution fed by request input (`eval($_POST`, `system($_GET`,
//!   `Runtime.getRuntime().exec(request`, ...) or two weaker constructs
//!   (`shell_exec(`, `base64_decode(`, `move_uploaded_file(`, ...), or a
//!   known shell's name (c99, r57, WSO, b374k).

use serde::{Deserialize, Serialize};

pub const SAMPLE: usize = 1024 * 1024;

const SKETCH: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageProfile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sketch: Vec<u32>,
}

const PHRASES: &[&str] = &[
    "hacked by",
    "hacked_by",
    "h4ck3d",
    "hacked!!",
    "defaced by",
    "deface by",
    "owned by",
    "pwned by",
    "was here",
    "greetz",
    "greets to",
    "your security is",
    "security is low",
    "cyber army",
    "cyber team",
    "bị hack",
    "bi hack boi",
];

pub fn is_page(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".html", ".htm", ".shtml", ".xhtml", ".php", ".asp", ".aspx", ".jsp", ".txt"]
        .iter()
        .any(|e| lower.ends_with(e))
}

pub fn is_server_script(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [
        ".php", ".phtml", ".php3", ".php4", ".php5", ".php7", ".phar", ".jsp", ".jspx", ".asp", ".aspx",
        ".ashx", ".asmx", ".cfm",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

fn lower(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(SAMPLE)]).to_lowercase()
}

fn title(text: &str) -> String {
    text.split_once("<title")
        .and_then(|(_, r)| r.split_once('>'))
        .and_then(|(_, r)| r.split_once("</title"))
        .map(|(t, _)| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .map(|t| t.chars().take(200).collect())
        .unwrap_or_default()
}

/// Hosts of `<script src=...>` and `<iframe src=...>` that are absolute.
fn external_hosts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["<script", "<iframe", "<frame", "<embed", "<object"] {
        for (i, _) in text.match_indices(tag) {
            let end = text[i..].find('>').map(|e| i + e).unwrap_or(text.len());
            let t = &text[i..end];
            for attr in ["src=", "data="] {
                if let Some(p) = t.find(attr) {
                    let v = t[p + attr.len()..].trim_start_matches(['"', '\'', ' ']);
                    let v = v.split(['"', '\'', ' ', '>']).next().unwrap_or("");
                    let host = v
                        .strip_prefix("http://")
                        .or_else(|| v.strip_prefix("https://"))
                        .or_else(|| v.strip_prefix("//"))
                        .map(|r| r.split(['/', '?', '#']).next().unwrap_or(r).to_string());
                    if let Some(h) = host.filter(|h| !h.is_empty())
                        && !out.contains(&h)
                        && out.len() < 64
                    {
                        out.push(h);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

fn hidden_frame(text: &str) -> bool {
    text.match_indices("<iframe").any(|(i, _)| {
        let end = text[i..].find('>').map(|e| i + e).unwrap_or(text.len());
        let t = text[i..end].replace(' ', "");
        t.contains("width=\"0\"")
            || t.contains("height=\"0\"")
            || t.contains("width=0")
            || t.contains("display:none")
            || t.contains("visibility:hidden")
    })
}

fn sketch(text: &str) -> Vec<u32> {
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let mut mins = vec![u32::MAX; SKETCH];
    let shingles = words.windows(4.min(words.len().max(1)));
    let mut any = false;
    for sh in shingles {
        any = true;
        let h = blake3::hash(sh.join(" ").as_bytes());
        let b = h.as_bytes();
        for (i, m) in mins.iter_mut().enumerate() {
            let off = (i % 8) * 4;
            let base = u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]);
            let v = base.rotate_left((i / 8) as u32 * 7) ^ (i as u32).wrapping_mul(0x9e37_79b9);
            *m = (*m).min(v);
        }
    }
    if any { mins } else { Vec::new() }
}

fn similarity(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() || b.is_empty() || a.len() != b.len() {
        return if a.is_empty() && b.is_empty() { 1.0 } else { 0.0 };
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

pub fn profile(data: &[u8]) -> PageProfile {
    let text = lower(data);
    PageProfile {
        title: title(&text),
        external: external_hosts(&text),
        phrases: PHRASES.iter().filter(|p| text.contains(*p)).map(|p| p.to_string()).collect(),
        sketch: sketch(&text),
    }
}

/// Why a page change looks like a defacement (empty: it does not).
pub fn defacement(old: Option<&PageProfile>, new_data: &[u8]) -> (PageProfile, Vec<String>) {
    let new = profile(new_data);
    let text = lower(new_data);
    let mut why = Vec::new();
    let old_phrases: &[String] = old.map(|o| o.phrases.as_slice()).unwrap_or(&[]);
    for p in &new.phrases {
        if !old_phrases.contains(p) {
            why.push(format!("defacer phrase \"{p}\""));
        }
    }
    if let Some(o) = old {
        let added: Vec<&String> = new.external.iter().filter(|h| !o.external.contains(h)).collect();
        if !added.is_empty() {
            why.push(format!(
                "script or frame from a new host: {}",
                added.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let sim = similarity(&o.sketch, &new.sketch);
        if !o.sketch.is_empty() && sim < 0.2 && o.title != new.title {
            why.push(format!(
                "content replaced (similarity {sim:.2}, title \"{}\" → \"{}\")",
                o.title, new.title
            ));
        }
    }
    if hidden_frame(&text) && !old.is_some_and(|o| o.phrases.iter().any(|p| p == "hidden-frame")) {
        why.push("hidden frame".into());
    }
    (new, why)
}

const STRONG: &[&str] = &[
    "eval($_post",
    "eval($_get",
    "eval($_request",
    "eval($_cookie",
    "eval(base64_decode($_",
    "eval(gzinflate(",
    "eval(str_rot13(",
    "assert($_post",
    "assert($_get",
    "assert($_request",
    "system($_",
    "exec($_",
    "shell_exec($_",
    "passthru($_",
    "popen($_",
    "proc_open($_",
    "preg_replace(\"/.*/e\"",
    "`$_get",
    "`$_post",
    "runtime.getruntime().exec(request",
    "eval(request",
    "execute(request",
    "process.start(request",
    "c99shell",
    "r57shell",
    "b374k",
    "filesman",
    "wso shell",
    "weevely",
    "china chopper",
];

const WEAK: &[&str] = &[
    "shell_exec(",
    "passthru(",
    "system(",
    "proc_open(",
    "popen(",
    "base64_decode(",
    "gzinflate(",
    "str_rot13(",
    "move_uploaded_file(",
    "create_function(",
    "runtime.getruntime().exec(",
    "processbuilder",
    "process.start(",
    "cmd.exe",
    "/bin/sh",
    "$_request[",
    "$_post[",
    "request.getparameter(",
    "request.form(",
    "request.form[",
    "request.querystring",
];

/// Web-shell constructs found (empty: none).
pub fn webshell(data: &[u8]) -> Vec<String> {
    let text: String = lower(data).chars().filter(|c| !c.is_whitespace()).collect();
    let strong: Vec<String> =
        STRONG.iter().filter(|s| text.contains(&s.replace(' ', ""))).map(|s| s.to_string()).collect();
    if !strong.is_empty() {
        return strong;
    }
    let weak: Vec<String> = WEAK.iter().filter(|s| text.contains(*s)).map(|s| s.to_string()).collect();
    let exec = weak.iter().any(|w| {
        [
            "shell_exec(",
            "passthru(",
            "system(",
            "proc_open(",
            "popen(",
            "runtime.getruntime().exec(",
            "processbuilder",
            "process.start(",
            "cmd.exe",
            "/bin/sh",
            "create_function(",
        ]
        .contains(&w.as_str())
    });
    let input = weak.iter().any(|w| {
        [
            "$_request[",
            "$_post[",
            "request.getparameter(",
            "request.form(",
            "request.form[",
            "request.querystring",
            "move_uploaded_file(",
        ]
        .contains(&w.as_str())
    });
    if weak.len() >= 2 && exec && (input || weak.len() >= 3) { weak } else { Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<html><head><title>Sở Tài nguyên và Môi trường tỉnh</title><script src=\"/js/app.js\"></script></head>\
        <body><h1>Cổng thông tin điện tử</h1><p>Thông báo về việc tiếp nhận hồ sơ đất đai trực tuyến của người dân và doanh nghiệp \
        trên địa bàn tỉnh trong tháng mười một năm nay, thời hạn giải quyết và các thủ tục hành chính liên quan.</p></body></html>";

    #[test]
    fn defacement_signals() {
        let old = profile(PAGE.as_bytes());
        let edit = PAGE.replace("tháng mười một", "tháng mười hai");
        assert!(defacement(Some(&old), edit.as_bytes()).1.is_empty(), "an edit is not a defacement");
        let hacked = "<html><head><title>HACKED</title></head><body bgcolor=black><h1>Hacked by Kurd3x Team</h1>greetz to all</body></html>";
        let why = defacement(Some(&old), hacked.as_bytes()).1;
        assert!(
            why.iter().any(|w| w.contains("hacked by")) && why.iter().any(|w| w.contains("content replaced")),
            "{why:?}"
        );
        let injected =
            PAGE.replace("</body>", "<script src=\"https://cdn-stats.example.ru/x.js\"></script></body>");
        let why = defacement(Some(&old), injected.as_bytes()).1;
        assert!(why.iter().any(|w| w.contains("cdn-stats.example.ru")), "{why:?}");
        let hidden = PAGE.replace("</body>", "<iframe src=\"/x\" width=\"0\" height=\"0\"></iframe></body>");
        assert!(!defacement(Some(&old), hidden.as_bytes()).1.is_empty());
    }

    #[test]
    fn webshells_and_ordinary_scripts() {
        assert!(!webshell(b"<?php @eval($_POST['pass']); ?>").is_empty());
        assert!(!webshell(b"<?php echo shell_exec($_GET['c']); ?>").is_empty());
        assert!(!webshell(b"<%@ page import=\"java.io.*\" %><% Process p = Runtime.getRuntime().exec(request.getParameter(\"cmd\")); %>").is_empty());
        assert!(!webshell(b"<%@ Page Language=\"C#\" %><% System.Diagnostics.Process.Start(\"cmd.exe\", Request.Form[\"c\"]); %>").is_empty());
        assert!(
            webshell(
                b"<?php $title = 'Trang chu'; include 'header.php'; echo htmlspecialchars($_GET['q']); ?>"
            )
            .is_empty()
        );
        assert!(webshell(b"<?php $data = base64_decode($row['photo']); ?>").is_empty());
    }
}
