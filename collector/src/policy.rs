//! Central policy: rule files, indicator lists and detector settings
//! pushed to agents. A policy is a complete set of files with a version
//! (one counter for the whole collector); agents of an agency run the
//! newest policy pushed to that agency or to all agencies.

use canhgac_proto::v1::PolicyFile;
use sha2::Digest as _;

pub const KINDS: &[&str] = &["ioc", "rules", "settings", "websig"];
/// Most bytes of all files of one policy.
pub const MAX_POLICY_BYTES: usize = 32 * 1024 * 1024;

/// Checks names, kinds and sizes; recomputes each file's SHA-256.
pub fn validate(files: &mut [PolicyFile]) -> Result<(), String> {
    if files.is_empty() {
        return Err("a policy needs at least one file".into());
    }
    let mut total = 0;
    let mut names = std::collections::HashSet::new();
    for f in files.iter_mut() {
        let ok = !f.name.is_empty()
            && f.name.len() <= 128
            && !f.name.starts_with('.')
            && f.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(format!("invalid policy file name `{}` (letters, digits, `.`, `-`, `_`)", f.name));
        }
        if !names.insert(f.name.clone()) {
            return Err(format!("policy file `{}` given twice", f.name));
        }
        if !KINDS.contains(&f.kind.as_str()) {
            return Err(format!(
                "policy file `{}`: invalid kind `{}` ({})",
                f.name,
                f.kind,
                KINDS.join(", ")
            ));
        }
        if f.kind != "rules" && std::str::from_utf8(&f.content).is_err() {
            return Err(format!("policy file `{}` is not UTF-8 text", f.name));
        }
        if f.kind == "settings" {
            let text = String::from_utf8_lossy(&f.content);
            if let Err(e) = text.parse::<toml::Table>() {
                return Err(format!("policy file `{}`: invalid TOML: {}", f.name, e.message()));
            }
        }
        if f.kind == "websig" {
            let text = String::from_utf8_lossy(&f.content);
            canhgac_agent::host::web::SignatureSet::check_text(&text, &f.name)
                .map_err(|e| format!("policy file `{}`: {e}", f.name))?;
        }
        total += f.content.len();
        f.sha256 = hex::encode(sha2::Sha256::digest(&f.content));
    }
    if total > MAX_POLICY_BYTES {
        return Err(format!("policy of {total} bytes exceeds {MAX_POLICY_BYTES}"));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

/// The rules of a policy's rule files that the agents would skip, as
/// `file:line sid N: reason`, with the agents' own parser; plus per file
/// (name, loaded, total).
pub fn check_rules(files: &[PolicyFile]) -> (Vec<String>, Vec<(String, usize, usize)>) {
    let vars = canhgac_agent::rules::Vars::default();
    let mut problems = Vec::new();
    let mut per_file = Vec::new();
    for f in files.iter().filter(|f| f.kind == "rules") {
        let text = String::from_utf8_lossy(&f.content);
        let (_, report) = canhgac_agent::rules::RuleSet::from_str_in(&text, &vars, std::path::Path::new("."));
        for s in &report.skipped {
            let sid = s.sid.map(|n| format!(" sid {n}")).unwrap_or_default();
            problems.push(format!("{}:{}{sid}: {}", f.name, s.line, s.reason));
        }
        per_file.push((f.name.clone(), report.loaded, report.total));
    }
    (problems, per_file)
}

/// Digest of a policy: SHA-256 over `name kind sha256\n` of each file, by name.
pub fn digest(files: &[PolicyFile]) -> String {
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(format!("{} {} {}\n", f.name, f.kind, f.sha256));
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_are_checked_with_the_agents_parser() {
        let f = |name: &str, text: &str| PolicyFile {
            name: name.into(),
            kind: "rules".into(),
            content: text.as_bytes().to_vec(),
            sha256: String::new(),
        };
        let good = "alert tcp any any -> any 80 (msg:\"x\"; content:\"GET\"; sid:1000001; rev:1;)\n";
        let bad = "alert tcp any any -> any 80 (msg:\"y\"; nosuchkeyword; sid:1000002; rev:1;)\n\
                   # a comment\n\
                   alert tcp any any -> any any (msg:\"z\"; content:\"a\"; sid:1000003;\n";
        let (problems, per_file) = check_rules(&[f("good.rules", good), f("local.rules", bad)]);
        assert_eq!(per_file, vec![("good.rules".to_string(), 1, 1), ("local.rules".to_string(), 0, 2)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("local.rules:1 sid 1000002: "), "{problems:?}");
        assert!(problems[0].contains("nosuchkeyword"), "{problems:?}");
        assert!(problems[1].starts_with("local.rules:3"), "{problems:?}");
    }

    #[test]
    fn validation() {
        let f = |name: &str, kind: &str, content: &str| PolicyFile {
            name: name.into(),
            kind: kind.into(),
            content: content.as_bytes().to_vec(),
            sha256: String::new(),
        };
        let mut ok = vec![f("b.txt", "ioc", "1.2.3.4\n"), f("a.toml", "settings", "[ioc]\nseverity = 1\n")];
        validate(&mut ok).unwrap();
        assert_eq!(ok[0].name, "a.toml");
        assert_eq!(ok[1].sha256.len(), 64);
        assert_eq!(digest(&ok).len(), 64);
        assert!(validate(&mut [f("../x", "ioc", "")]).unwrap_err().contains("invalid policy file name"));
        assert!(validate(&mut [f("x", "bin", "")]).unwrap_err().contains("invalid kind"));
        assert!(validate(&mut [f("x.toml", "settings", "= =")]).unwrap_err().contains("invalid TOML"));
        assert_eq!(canhgac_proto::files::policy_file_kind("et.rules"), "rules");
        // web signatures are compiled before they are accepted
        assert_eq!(canhgac_proto::files::policy_file_kind("local.websig"), "websig");
        let sig = |pattern: &str| {
            format!("[[signature]]\nid = 9001\ncategory = \"exploit\"\nname = \"x\"\npattern = '{pattern}'\n")
        };
        validate(&mut [f("local.websig", "websig", &sig("/secret-admin"))]).unwrap();
        let e = validate(&mut [f("local.websig", "websig", &sig("(open"))]).unwrap_err();
        assert!(
            e.contains("local.websig") && e.contains("signature 9001") && e.contains("invalid pattern"),
            "{e}"
        );
    }
}
