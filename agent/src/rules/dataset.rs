//! `dataset`: sets of strings, hashes or IP addresses, loaded with the rules
//! (static) and changed by `dataset:set` / `unset` at runtime (in
//! [`Runtime`], part of the engine-wide state, bounded).
//!
//! File formats (Suricata's): one value per line, strings in base64, `md5`
//! and `sha256` in hex, `ipv4`/`ip` as text; or JSON (`format json`, an array
//! or the array at `array_key`, objects carrying `value_key`) and JSON lines
//! (`format ndjson` / `jsonline`), where strings are plain text.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
};

use base64::Engine as _;

use super::header::ip_key;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DsType {
    String,
    Md5,
    Sha256,
    Ipv4,
    Ip,
}

impl DsType {
    pub fn parse(s: &str) -> Option<DsType> {
        Some(match s {
            "string" => DsType::String,
            "md5" => DsType::Md5,
            "sha256" => DsType::Sha256,
            "ipv4" => DsType::Ipv4,
            "ip" | "ipv6" => DsType::Ip,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub(crate) struct Dataset {
    /// Kept for diagnostics (`Debug`).
    #[allow(dead_code)]
    pub name: String,
    pub ty: DsType,
    pub data: HashSet<Box<[u8]>>,
    /// Reputation values of a `datarep` set (`value,reputation` lines).
    pub rep: HashMap<Box<[u8]>, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DsCmd {
    Set,
    Unset,
    IsSet,
    IsNotSet,
}

#[derive(Debug, Clone)]
pub(crate) struct DatasetOp {
    /// Index of the loaded set in the rule set.
    pub id: u32,
    /// Hash of the set's name: runtime changes are keyed by it, so they
    /// survive a rule reload.
    pub key: u64,
    pub ty: DsType,
    pub cmd: DsCmd,
    /// `match subdomain`: the value or any parent domain is in the set.
    pub subdomain: bool,
    /// `datarep`: the value's reputation must satisfy this (the command is
    /// then `IsSet`).
    pub rep: Option<super::numbers::UintCmp>,
}

/// Runtime additions and removals, bounded.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    added: HashMap<u64, HashSet<Box<[u8]>>>,
    removed: HashMap<u64, HashSet<Box<[u8]>>>,
    count: usize,
    capacity: usize,
}

const DEFAULT_CAPACITY: usize = 65_536;

impl Runtime {
    pub fn set_capacity(&mut self, c: usize) {
        self.capacity = c;
    }

    fn cap(&self) -> usize {
        if self.capacity == 0 { DEFAULT_CAPACITY } else { self.capacity }
    }

    fn contains(&self, sets: &[Dataset], op: &DatasetOp, key: &[u8]) -> bool {
        if self.removed.get(&op.key).is_some_and(|r| r.contains(key)) {
            return false;
        }
        sets.get(op.id as usize).is_some_and(|s| s.data.contains(key))
            || self.added.get(&op.key).is_some_and(|a| a.contains(key))
    }
}

/// Normalised lookup key of a buffer for a set type; `None` when the buffer
/// cannot be such a value.
fn key_of(ty: DsType, buf: &[u8]) -> Option<Vec<u8>> {
    match ty {
        DsType::String => Some(buf.to_vec()),
        DsType::Md5 => (buf.len() == 16).then(|| buf.to_vec()),
        DsType::Sha256 => (buf.len() == 32).then(|| buf.to_vec()),
        DsType::Ipv4 | DsType::Ip => {
            let ip = match buf.len() {
                4 => {
                    let a: [u8; 4] = buf.try_into().ok()?;
                    IpAddr::from(a)
                }
                16 => {
                    let a: [u8; 16] = buf.try_into().ok()?;
                    IpAddr::from(a)
                }
                _ => std::str::from_utf8(buf).ok()?.trim().parse().ok()?,
            };
            if ty == DsType::Ipv4
                && !ip.is_ipv4()
                && ip_key(ip)[..12] != [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
            {
                return None;
            }
            Some(ip_key(ip).to_vec())
        }
    }
}

/// Runs a dataset keyword on a buffer; `true` when it matches.
pub(crate) fn apply(
    op: &DatasetOp,
    buf: &[u8],
    sets: &[Dataset],
    rt: &mut Runtime,
    refused: &mut u64,
) -> bool {
    let Some(key) = key_of(op.ty, buf) else {
        return op.cmd == DsCmd::IsNotSet;
    };
    if let Some(cmp) = op.rep {
        return sets
            .get(op.id as usize)
            .and_then(|s| s.rep.get(key.as_slice()))
            .is_some_and(|v| cmp.matches(*v));
    }
    match op.cmd {
        DsCmd::IsSet | DsCmd::IsNotSet => {
            let found = if op.subdomain && op.ty == DsType::String {
                subdomain_keys(&key).any(|k| rt.contains(sets, op, k))
            } else {
                rt.contains(sets, op, &key)
            };
            found == (op.cmd == DsCmd::IsSet)
        }
        DsCmd::Set => {
            if rt.contains(sets, op, &key) {
                return false;
            }
            let boxed: Box<[u8]> = key.into_boxed_slice();
            if let Some(r) = rt.removed.get_mut(&op.key)
                && r.remove(&boxed)
            {
                return true;
            }
            if rt.count >= rt.cap() {
                *refused += 1;
                return false;
            }
            rt.count += 1;
            rt.added.entry(op.key).or_default().insert(boxed);
            true
        }
        DsCmd::Unset => {
            if !rt.contains(sets, op, &key) {
                return false;
            }
            let boxed: Box<[u8]> = key.into_boxed_slice();
            if let Some(a) = rt.added.get_mut(&op.key)
                && a.remove(&boxed)
            {
                rt.count = rt.count.saturating_sub(1);
                return true;
            }
            if rt.count >= rt.cap() {
                *refused += 1;
                return false;
            }
            rt.count += 1;
            rt.removed.entry(op.key).or_default().insert(boxed);
            true
        }
    }
}

/// The value, then every suffix that starts at a label boundary, with and
/// without its leading dot (`a.b.c` → `a.b.c`, `.b.c`, `b.c`, `.c`, `c`).
fn subdomain_keys(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let dots = v.iter().enumerate().filter(|(_, b)| **b == b'.').map(|(i, _)| i);
    std::iter::once(v).chain(dots.flat_map(move |i| [v.get(i..), v.get(i + 1..)].into_iter().flatten()))
}

/// How a dataset file is written.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileFormat {
    pub json: Option<JsonKind>,
    pub value_key: Option<String>,
    pub array_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    Json,
    Lines,
}

/// Loads a `datarep` file: `value,reputation` per line (values as in
/// [`load`]'s CSV form).
pub(crate) fn load_rep(path: &Path, ty: DsType) -> Result<HashMap<Box<[u8]>, u64>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read dataset `{}`: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("invalid {what} in `{}` line {}", path.display(), i + 1);
        let (v, rep) = l.rsplit_once(',').ok_or_else(|| bad("`value,reputation` line"))?;
        let key = parse_value(ty, v.trim(), true).ok_or_else(|| bad("value"))?;
        let rep: u64 = rep.trim().parse().map_err(|_| bad("reputation"))?;
        out.insert(key.into_boxed_slice(), rep);
    }
    Ok(out)
}

/// Loads a dataset file.
pub(crate) fn load(path: &Path, ty: DsType, fmt: &FileFormat) -> Result<HashSet<Box<[u8]>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read dataset `{}`: {e}", path.display()))?;
    let mut out = HashSet::new();
    let add_text = |out: &mut HashSet<Box<[u8]>>, v: &str, lineno: usize, b64: bool| -> Result<(), String> {
        let key = parse_value(ty, v, b64).ok_or_else(|| {
            format!("invalid value `{}` in `{}` line {lineno}", super::text::trunc(v), path.display())
        })?;
        out.insert(key.into_boxed_slice());
        Ok(())
    };
    match fmt.json {
        None => {
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let v = l.split(',').next().unwrap_or("").trim();
                add_text(&mut out, v, i + 1, true)?;
            }
        }
        Some(JsonKind::Lines) => {
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.is_empty() {
                    continue;
                }
                let j: serde_json::Value = serde_json::from_str(l)
                    .map_err(|e| format!("invalid json in `{}` line {}: {e}", path.display(), i + 1))?;
                if let Some(v) = json_value(&j, fmt.value_key.as_deref()) {
                    add_text(&mut out, &v, i + 1, false)?;
                }
            }
        }
        Some(JsonKind::Json) => {
            let j: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("invalid json in `{}`: {e}", path.display()))?;
            let mut node = &j;
            if let Some(path_key) = fmt.array_key.as_deref() {
                for part in path_key.split('.') {
                    node =
                        node.get(part).ok_or_else(|| format!("no `{path_key}` in `{}`", path.display()))?;
                }
            }
            let arr = node.as_array().ok_or_else(|| format!("`{}` holds no json array", path.display()))?;
            for (i, e) in arr.iter().enumerate() {
                if let Some(v) = json_value(e, fmt.value_key.as_deref()) {
                    add_text(&mut out, &v, i + 1, false)?;
                }
            }
        }
    }
    if out.is_empty() && fmt.json.is_some() {
        return Err(format!("no value found in `{}`", path.display()));
    }
    Ok(out)
}

fn json_value(j: &serde_json::Value, key: Option<&str>) -> Option<String> {
    let v = match key {
        Some(k) => j.get(k)?,
        None => j,
    };
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_value(ty: DsType, v: &str, b64: bool) -> Option<Vec<u8>> {
    match ty {
        DsType::String => {
            if b64 {
                base64::engine::general_purpose::STANDARD.decode(v).ok()
            } else {
                Some(v.as_bytes().to_vec())
            }
        }
        DsType::Md5 => hex::decode(v).ok().filter(|b| b.len() == 16),
        DsType::Sha256 => hex::decode(v).ok().filter(|b| b.len() == 32),
        DsType::Ipv4 => v.parse::<std::net::Ipv4Addr>().ok().map(|a| ip_key(IpAddr::V4(a)).to_vec()),
        DsType::Ip => v.parse::<IpAddr>().ok().map(|a| ip_key(a).to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_suffixes() {
        let v: Vec<&[u8]> = subdomain_keys(b".mail.evil.com").collect();
        assert!(v.contains(&&b".evil.com"[..]));
        assert!(v.contains(&&b"evil.com"[..]));
        assert!(v.contains(&&b"com"[..]));
        let v: Vec<&[u8]> = subdomain_keys(b"notevil.com").collect();
        assert!(!v.contains(&&b"evil.com"[..]));
    }

    #[test]
    fn set_unset_and_capacity() {
        let sets =
            vec![Dataset { name: "s".into(), ty: DsType::String, data: HashSet::new(), rep: HashMap::new() }];
        let mut rt = Runtime::default();
        rt.set_capacity(1);
        let mut refused = 0;
        let set =
            DatasetOp { id: 0, key: 7, ty: DsType::String, cmd: DsCmd::Set, subdomain: false, rep: None };
        let isset = DatasetOp { cmd: DsCmd::IsSet, ..set.clone() };
        let unset = DatasetOp { cmd: DsCmd::Unset, ..set.clone() };
        assert!(!apply(&isset, b"ua1", &sets, &mut rt, &mut refused));
        assert!(apply(&set, b"ua1", &sets, &mut rt, &mut refused));
        assert!(!apply(&set, b"ua1", &sets, &mut rt, &mut refused), "only new values match set");
        assert!(apply(&isset, b"ua1", &sets, &mut rt, &mut refused));
        assert!(!apply(&set, b"ua2", &sets, &mut rt, &mut refused));
        assert_eq!(refused, 1);
        assert!(apply(&unset, b"ua1", &sets, &mut rt, &mut refused));
        assert!(!apply(&isset, b"ua1", &sets, &mut rt, &mut refused));
    }

    #[test]
    fn ip_keys() {
        assert_eq!(key_of(DsType::Ip, &[1, 2, 3, 4]), key_of(DsType::Ip, b"1.2.3.4"));
        assert!(key_of(DsType::Ipv4, b"::1").is_none());
        assert!(key_of(DsType::Sha256, b"short").is_none());
    }
}
