//! Central policy: rule files, indicator lists and detector settings
//! pushed to agents. A policy is a complete set of files with a version
//! (one counter for the whole collector); agents of an agency run the
//! newest policy pushed to that agency or to all agencies.

use canhgac_proto::v1::PolicyFile;
use sha2::Digest as _;

pub const KINDS: &[&str] = &["ioc", "rules", "settings"];
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
        total += f.content.len();
        f.sha256 = hex::encode(sha2::Sha256::digest(&f.content));
    }
    if total > MAX_POLICY_BYTES {
        return Err(format!("policy of {total} bytes exceeds {MAX_POLICY_BYTES}"));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

/// Digest of a policy: SHA-256 over `name kind sha256\n` of each file, by name.
pub fn digest(files: &[PolicyFile]) -> String {
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(format!("{} {} {}\n", f.name, f.kind, f.sha256));
    }
    hex::encode(h.finalize())
}

/// The kind of a file from its name, for `canhgac policy push`.
pub fn kind_of(name: &str) -> &'static str {
    if name.ends_with(".rules") {
        "rules"
    } else if name.ends_with(".toml") {
        "settings"
    } else {
        "ioc"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(kind_of("et.rules"), "rules");
    }
}
