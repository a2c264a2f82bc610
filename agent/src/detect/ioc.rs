//! Indicator sets: IP addresses, CIDR ranges, address:port pairs, domains
//! (matching their subdomains), URLs and JA3 fingerprints.
//!
//! # Formats
//!
//! An indicator file is named `[FORMAT:]PATH`:
//!
//! * `plain` (default) and `maltrail`: one indicator per line, `#` starts a
//!   comment (whole line or after the value). Values: IPv4/IPv6 address,
//!   CIDR, `address:port`, domain (`*.` or `.` prefix accepted), URL (with
//!   or without scheme; `/path` alone matches that path on any host), a
//!   32-hex-digit JA3 hash. Maltrail trail files are this format.
//! * `dataset-string`: a Suricata `type string` dataset, one base64-encoded
//!   value per line (domains or URLs).
//! * `dataset-ip`: a Suricata `ipv4`/`ipv6`/`ip` dataset, one address per
//!   line.
//! * `dataset-sha256` and `dataset-md5`: hex digests (JA3 hashes are MD5).
//!
//! Lines that cannot be read are skipped with file, line and reason (and
//! counted: `ioc_lines_skipped`); the rest load. A token meant as an
//! address or a network that is not one (`192.168.1.0/33`, `10.0.0.0/240`,
//! `10.0.0.256`, `2001:db8:::1`) is such a line, not a URL path or a domain
//! that would match nothing.
//!
//! # Memory
//!
//! Millions of indicators stay compact: domains and URLs live in one byte
//! arena with an index and a hash table (about 25 bytes per entry besides
//! the text), exact addresses in sorted vectors, CIDRs in per-prefix-length
//! hash maps (few distinct lengths), and per-indicator metadata in 4 bytes.

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use base64::Engine as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndicatorKind {
    Ip,
    Cidr,
    IpPort,
    Domain,
    Url,
    Ja3,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ip => "ip",
            IndicatorKind::Cidr => "cidr",
            IndicatorKind::IpPort => "ip_port",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Ja3 => "ja3",
        }
    }
}

/// A matched indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The indicator as listed (normalised).
    pub value: String,
    pub kind: IndicatorKind,
    /// File name of the list.
    pub list: String,
    /// Stable id within the set (for deduplication).
    pub id: u32,
}

/// A line that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IocError {
    #[error("cannot read indicator list {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "unknown indicator list format `{0}` (expected plain, maltrail, dataset-string, dataset-ip, dataset-sha256 or dataset-md5)"
    )]
    Format(String),
    #[error("too many indicator lists (at most 65535)")]
    TooManyLists,
    #[error("too many indicators (at most 4294967295)")]
    TooMany,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    DatasetString,
    DatasetIp,
    DatasetHex,
}

/// Splits `FORMAT:PATH`; a path without a known prefix is plain.
pub fn parse_spec(spec: &str) -> Result<(Format, PathBuf), IocError> {
    if let Some((prefix, path)) = spec.split_once(':') {
        let format = match prefix {
            "plain" | "maltrail" => Some(Format::Plain),
            "dataset-string" => Some(Format::DatasetString),
            "dataset-ip" | "dataset-ipv4" | "dataset-ipv6" => Some(Format::DatasetIp),
            "dataset-sha256" | "dataset-md5" => Some(Format::DatasetHex),
            p if p.starts_with("dataset") => return Err(IocError::Format(p.to_string())),
            _ => None,
        };
        if let Some(f) = format {
            return Ok((f, PathBuf::from(path)));
        }
    }
    Ok((Format::Plain, PathBuf::from(spec)))
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    list: u16,
    kind: u8,
    _pad: u8,
}

/// Strings in one arena, a sorted index (for de-duplication) and a hash
/// index for constant-time lookups.
#[derive(Debug, Default)]
struct StrSet {
    arena: Vec<u8>,
    /// (start, len, id); sorted by text after [`StrSet::seal`].
    index: Vec<(u32, u16, u32)>,
    /// Hash of the text → position in `index`.
    by_hash: HashMap<u64, u32>,
    /// The rare texts whose hash another text already took.
    collisions: HashMap<Box<[u8]>, u32>,
    sealed: bool,
}

fn text_hash(s: &[u8]) -> u64 {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(s)
}

impl StrSet {
    fn push(&mut self, s: &[u8], id: u32) -> bool {
        if s.len() > u16::MAX as usize || self.arena.len() + s.len() > u32::MAX as usize {
            return false;
        }
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(s);
        self.index.push((start, s.len() as u16, id));
        self.sealed = false;
        true
    }

    fn text(&self, e: &(u32, u16, u32)) -> &[u8] {
        &self.arena[e.0 as usize..e.0 as usize + e.1 as usize]
    }

    /// Sorts, removes duplicates (keeping the first id) and builds the hash
    /// index; returns the number of duplicates removed.
    fn seal(&mut self) -> u64 {
        let arena = std::mem::take(&mut self.arena);
        let text = |e: &(u32, u16, u32)| &arena[e.0 as usize..e.0 as usize + e.1 as usize];
        self.index.sort_by(|a, b| text(a).cmp(text(b)).then(a.2.cmp(&b.2)));
        let before = self.index.len();
        self.index.dedup_by(|b, a| text(a) == text(b));
        self.by_hash = HashMap::with_capacity(self.index.len());
        self.collisions.clear();
        for (pos, e) in self.index.iter().enumerate() {
            let t = text(e);
            match self.by_hash.entry(text_hash(t)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(pos as u32);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.collisions.insert(t.into(), e.2);
                }
            }
        }
        self.arena = arena;
        self.sealed = true;
        (before - self.index.len()) as u64
    }

    fn get(&self, s: &[u8]) -> Option<u32> {
        debug_assert!(self.sealed);
        if let Some(pos) = self.by_hash.get(&text_hash(s)) {
            let e = &self.index[*pos as usize];
            if self.text(e) == s {
                return Some(e.2);
            }
        }
        if self.collisions.is_empty() {
            return None;
        }
        self.collisions.get(s).copied()
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Networks by prefix length.
#[derive(Debug, Default)]
struct PrefixMap {
    by_len: Vec<(u8, HashMap<u128, u32>)>,
}

impl PrefixMap {
    fn mask(addr: u128, len: u8, bits: u8) -> u128 {
        if len == 0 { 0 } else { (addr >> (bits - len)) << (bits - len) }
    }

    fn insert(&mut self, addr: u128, len: u8, bits: u8, id: u32) -> bool {
        let key = Self::mask(addr, len, bits);
        let pos = match self.by_len.iter().position(|(l, _)| *l == len) {
            Some(p) => p,
            None => {
                self.by_len.push((len, HashMap::new()));
                self.by_len.sort_by_key(|e| std::cmp::Reverse(e.0)); // longest first
                self.by_len.iter().position(|(l, _)| *l == len).unwrap_or(0)
            }
        };
        let map = &mut self.by_len[pos].1;
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, id);
        true
    }

    fn lookup(&self, addr: u128, bits: u8) -> Option<u32> {
        self.by_len.iter().find_map(|(len, map)| map.get(&Self::mask(addr, *len, bits)).copied())
    }

    fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }
}

#[derive(Debug, Default)]
pub struct IocSet {
    pub lists: Vec<String>,
    meta: Vec<Meta>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u32)>,
    nets_v4: PrefixMap,
    nets_v6: PrefixMap,
    ip_ports: HashMap<(IpAddr, u16), u32>,
    domains: StrSet,
    urls: StrSet,
    /// Path-only URL indicators (`/gate.php`), matched on any host.
    paths: StrSet,
    ja3: StrSet,
    /// Text of CIDR and ip:port indicators, by id (few of them).
    texts: HashMap<u32, String>,
    pub duplicates: u64,
    sealed: bool,
}

fn split_ip(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (32, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (32, u128::from(u32::from(v4))),
            None => (128, u128::from(v6)),
        },
    }
}

fn normalize_domain(token: &str) -> Option<String> {
    let d = token.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    let valid = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !d.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    valid.then_some(d)
}

/// `host/path` (lower-case host, no scheme, no port, no query), or a bare
/// `/path`.
pub fn normalize_url(token: &str) -> Option<String> {
    let rest = token.split_once("://").map(|(_, r)| r).unwrap_or(token);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    if let Some(path) = rest.strip_prefix('/') {
        return (!path.is_empty()).then(|| format!("/{path}"));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{}/{path}", host.to_ascii_lowercase()))
}

/// Rejects what is meant as an address or a network but is not one (a
/// prefix length beyond the address size, an octet above 255, a mangled
/// IPv6 address), which would otherwise be read as a URL path or a domain
/// and match nothing. Called for tokens that did not parse as an address or
/// a network.
fn malformed_address(token: &str) -> Result<(), String> {
    let (addr, prefix) = match token.split_once('/') {
        Some((a, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (a, Some(p)),
        Some(_) => return Ok(()),
        None => (token, None),
    };
    let dotted = addr.contains('.') && addr.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let colons = addr.bytes().filter(|b| *b == b':').count();
    let v6ish = !addr.starts_with('[')
        && colons >= 2
        && addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    match addr.parse::<IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            Err(match prefix {
                Some(p) => format!("`{token}`: prefix length /{p} is more than {max}"),
                None => format!("`{token}` is not a valid address"),
            })
        }
        Err(_) if dotted && (prefix.is_some() || addr.split('.').count() == 4) => {
            Err(format!("`{token}` is not a valid IPv4 address or network"))
        }
        Err(_) if v6ish && (prefix.is_some() || colons > 2 || addr.contains("::")) => {
            Err(format!("`{token}` is not a valid IPv6 address or network"))
        }
        Err(_) => Ok(()),
    }
}

impl IocSet {
    /// Loads `[FORMAT:]PATH` lists; returns the set and the skipped lines.
    pub fn load(specs: &[PathBuf]) -> Result<(IocSet, Vec<LineError>), IocError> {
        let mut set = IocSet::default();
        let mut errors = Vec::new();
        for spec in specs {
            let (format, path) = parse_spec(&spec.to_string_lossy())?;
            let bytes =
                std::fs::read(&path).map_err(|source| IocError::Read { path: path.clone(), source })?;
            let text = String::from_utf8_lossy(&bytes);
            let list = set
                .add_list(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())?;
            for (i, line) in text.lines().enumerate() {
                let r = match format {
                    Format::Plain => set.add_line(line, list),
                    Format::DatasetString => set.add_dataset_string(line, list),
                    Format::DatasetIp | Format::DatasetHex => set.add_line(line, list),
                };
                if let Err(reason) = r {
                    errors.push(LineError { file: path.clone(), line: i + 1, reason });
                }
            }
        }
        set.seal();
        Ok((set, errors))
    }

    pub fn add_list(&mut self, name: &str) -> Result<u16, IocError> {
        let id = u16::try_from(self.lists.len()).map_err(|_| IocError::TooManyLists)?;
        self.lists.push(name.to_string());
        Ok(id)
    }

    /// Adds one line of a plain list; `Err` names what is wrong with it.
    pub fn add_line(&mut self, line: &str, list: u16) -> Result<(), String> {
        let content = line.split(" #").next().unwrap_or("");
        let content = if content.trim_start().starts_with('#') { "" } else { content };
        let content = content.split('\t').next().unwrap_or("").trim();
        let Some(token) = content.split_whitespace().next() else {
            return Ok(());
        };
        if content.split_whitespace().nth(1).is_some() {
            return Err(format!("more than one value on the line: `{content}`"));
        }
        self.add(token, list)
    }

    fn add_dataset_string(&mut self, line: &str, list: u16) -> Result<(), String> {
        let token = line.split(',').next().unwrap_or("").trim();
        if token.is_empty() || token.starts_with('#') {
            return Ok(());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|e| format!("`{token}` is not base64: {e}"))?;
        let value = String::from_utf8(decoded).map_err(|_| format!("`{token}` does not decode to text"))?;
        self.add(value.trim(), list)
    }

    fn next_id(&mut self, list: u16, kind: IndicatorKind) -> Result<u32, String> {
        let id = u32::try_from(self.meta.len()).map_err(|_| String::from("too many indicators"))?;
        self.meta.push(Meta { list, kind: kind as u8, _pad: 0 });
        self.sealed = false;
        Ok(id)
    }

    /// Adds one indicator value.
    pub fn add(&mut self, token: &str, list: u16) -> Result<(), String> {
        if let Ok(ip) = token.parse::<IpAddr>() {
            let id = self.next_id(list, IndicatorKind::Ip)?;
            match split_ip(ip) {
                (32, a) => self.v4.push((a as u32, id)),
                (_, a) => self.v6.push((a, id)),
            }
            return Ok(());
        }
        if let Ok(net) = token.parse::<ipnet::IpNet>() {
            let net = net.trunc();
            let (bits, addr) = split_ip(net.network());
            let len = if bits == 32 && net.network().is_ipv6() {
                net.prefix_len().saturating_sub(96)
            } else {
                net.prefix_len()
            };
            let id = self.meta.len() as u32;
            let map = if bits == 32 { &mut self.nets_v4 } else { &mut self.nets_v6 };
            if map.insert(addr, len, bits, id) {
                self.next_id(list, IndicatorKind::Cidr)?;
                self.texts.insert(id, net.to_string());
            } else {
                self.duplicates += 1;
            }
            return Ok(());
        }
        malformed_address(token)?;
        if let Some((h, p)) = token.rsplit_once(':')
            && let (Ok(ip), Ok(port)) =
                (h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>(), p.parse::<u16>())
        {
            if self.ip_ports.contains_key(&(ip, port)) {
                self.duplicates += 1;
                return Ok(());
            }
            let id = self.next_id(list, IndicatorKind::IpPort)?;
            self.ip_ports.insert((ip, port), id);
            self.texts.insert(id, token.to_string());
            return Ok(());
        }
        if token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
            let id = self.next_id(list, IndicatorKind::Ja3)?;
            self.ja3.push(token.to_ascii_lowercase().as_bytes(), id);
            return Ok(());
        }
        if token.contains('/') {
            let url = normalize_url(token).ok_or_else(|| format!("`{token}` is not a usable URL"))?;
            let id = self.next_id(list, IndicatorKind::Url)?;
            let set = if url.starts_with('/') { &mut self.paths } else { &mut self.urls };
            set.push(url.as_bytes(), id);
            return Ok(());
        }
        // `host:port` of a domain: the domain (any port).
        let host =
            token.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map(|(h, _)| h).unwrap_or(token);
        let domain = normalize_domain(host).ok_or_else(|| {
            format!("`{token}` is not an address, a network, a domain, a URL or a JA3 hash")
        })?;
        let id = self.next_id(list, IndicatorKind::Domain)?;
        self.domains.push(domain.as_bytes(), id);
        Ok(())
    }

    /// Builds the lookup structures; call after adding.
    pub fn seal(&mut self) {
        self.v4.sort_unstable();
        let n = self.v4.len();
        self.v4.dedup_by_key(|e| e.0);
        self.duplicates += (n - self.v4.len()) as u64;
        self.v6.sort_unstable();
        let n = self.v6.len();
        self.v6.dedup_by_key(|e| e.0);
        self.duplicates += (n - self.v6.len()) as u64;
        self.duplicates += self.domains.seal() + self.urls.seal() + self.paths.seal() + self.ja3.seal();
        self.sealed = true;
    }

    pub fn len(&self) -> usize {
        self.v4.len()
            + self.v6.len()
            + self.nets_v4.len()
            + self.nets_v6.len()
            + self.ip_ports.len()
            + self.domains.len()
            + self.urls.len()
            + self.paths.len()
            + self.ja3.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the lookup structures (approximate).
    pub fn memory_bytes(&self) -> usize {
        let strs = |s: &StrSet| s.arena.capacity() + s.index.capacity() * 12 + s.by_hash.capacity() * 13;
        self.meta.capacity() * 4
            + self.v4.capacity() * 8
            + self.v6.capacity() * 32
            + (self.nets_v4.len() + self.nets_v6.len()) * 40
            + self.ip_ports.len() * 48
            + strs(&self.domains)
            + strs(&self.urls)
            + strs(&self.paths)
            + strs(&self.ja3)
            + self.texts.values().map(|t| t.len() + 40).sum::<usize>()
    }

    fn hit(&self, id: u32, value: String) -> Option<Hit> {
        let m = self.meta.get(id as usize)?;
        let kind = match m.kind {
            0 => IndicatorKind::Ip,
            1 => IndicatorKind::Cidr,
            2 => IndicatorKind::IpPort,
            3 => IndicatorKind::Domain,
            4 => IndicatorKind::Url,
            _ => IndicatorKind::Ja3,
        };
        let value = self.texts.get(&id).cloned().unwrap_or(value);
        Some(Hit { value, kind, list: self.lists.get(m.list as usize).cloned().unwrap_or_default(), id })
    }

    /// An address (exact, then most specific network).
    pub fn match_ip(&self, ip: IpAddr) -> Option<Hit> {
        if !self.sealed {
            return None;
        }
        let (bits, addr) = split_ip(ip);
        let exact = if bits == 32 {
            self.v4.binary_search_by_key(&(addr as u32), |e| e.0).ok().map(|i| self.v4[i].1)
        } else {
            self.v6.binary_search_by_key(&addr, |e| e.0).ok().map(|i| self.v6[i].1)
        };
        let id = exact.or_else(|| {
            if bits == 32 { self.nets_v4.lookup(addr, 32) } else { self.nets_v6.lookup(addr, 128) }
        })?;
        self.hit(id, ip.to_string())
    }

    pub fn match_ip_port(&self, ip: IpAddr, port: u16) -> Option<Hit> {
        if self.ip_ports.is_empty() {
            return None;
        }
        let id = *self.ip_ports.get(&(ip, port))?;
        self.hit(id, format!("{ip}:{port}"))
    }

    /// The listed domain equal to `name` or a parent of it.
    pub fn match_domain(&self, name: &str) -> Option<Hit> {
        if !self.sealed || self.domains.len() == 0 {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(id) = self.domains.get(rest.as_bytes()) {
                return self.hit(id, rest.to_string());
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return None,
            }
        }
    }

    /// A URL given as host and path (query ignored).
    pub fn match_url(&self, host: &str, path: &str) -> Option<Hit> {
        if !self.sealed || (self.urls.len() == 0 && self.paths.len() == 0) {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        let full = format!("{}{path}", host.to_ascii_lowercase());
        if let Some(id) = self.urls.get(full.as_bytes()) {
            return self.hit(id, full);
        }
        let id = self.paths.get(path.as_bytes())?;
        self.hit(id, path)
    }

    pub fn match_ja3(&self, hash: &str) -> Option<Hit> {
        if self.ja3.len() == 0 {
            return None;
        }
        let id = self.ja3.get(hash.as_bytes())?;
        self.hit(id, hash.to_string())
    }
}

/// Loads lists and logs what was skipped.
pub fn load_logged(specs: &[PathBuf]) -> Result<(IocSet, usize), IocError> {
    let started = std::time::Instant::now();
    let (set, errors) = IocSet::load(specs)?;
    for e in errors.iter().take(20) {
        tracing::warn!(error = %e, "indicator line skipped");
    }
    if errors.len() > 20 {
        tracing::warn!(more = errors.len() - 20, "further indicator lines skipped");
    }
    tracing::info!(
        indicators = set.len(),
        lists = set.lists.len(),
        skipped = errors.len(),
        duplicates = set.duplicates,
        memory_kib = set.memory_bytes() / 1024,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "indicator lists loaded"
    );
    Ok((set, errors.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &str) -> (IocSet, Vec<LineError>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(&p, lines).unwrap();
        IocSet::load(&[p]).unwrap()
    }

    fn ip(x: &str) -> IpAddr {
        x.parse().unwrap()
    }

    #[test]
    fn matches_every_kind() {
        let (s, errors) = set(concat!(
            "# header\n45.9.74.78\n10.20.0.0/16 # lab\n2001:db8::/32\n\nDrivres-Update.info.\n*.evil.example\n",
            "1.2.3.4:8080\nhttp://bad.example:8080/gate.php?x=1\n185.203.118.198/en/check.php\n/fdfd_iunub.php\n",
            "e7d705a3286e19ea42f587b344ee6865\n"
        ));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.len(), 10);
        assert_eq!(s.match_ip(ip("45.9.74.78")).unwrap().kind, IndicatorKind::Ip);
        let net = s.match_ip(ip("10.20.3.4")).unwrap();
        assert_eq!((net.kind, net.value.as_str()), (IndicatorKind::Cidr, "10.20.0.0/16"));
        assert!(s.match_ip(ip("10.21.0.1")).is_none());
        assert!(s.match_ip(ip("2001:db8::1")).is_some());
        assert!(s.match_ip(ip("::ffff:45.9.74.78")).is_some());
        assert!(s.match_ip_port(ip("1.2.3.4"), 8080).is_some());
        assert!(s.match_ip_port(ip("1.2.3.4"), 80).is_none());
        let d = s.match_domain("WWW.drivres-update.INFO.").unwrap();
        assert_eq!((d.value.as_str(), d.list.as_str()), ("drivres-update.info", "list.txt"));
        assert!(s.match_domain("a.b.evil.example").is_some());
        assert!(s.match_domain("notevil.example").is_none());
        assert!(s.match_domain("update.info").is_none());
        assert!(s.match_url("BAD.example", "/gate.php?y=2").is_some());
        assert!(s.match_url("185.203.118.198", "/en/check.php").is_some());
        assert!(s.match_url("anything.example", "/fdfd_iunub.php").is_some());
        assert!(s.match_url("bad.example", "/other.php").is_none());
        assert!(s.match_ja3("e7d705a3286e19ea42f587b344ee6865").is_some());
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_load() {
        let (s, errors) = set("1.2.3.4\nnot a domain\n-\n5.6.7.8\n999.1.1.1\nhttp://\n");
        assert_eq!(s.len(), 2);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6]);
        assert!(errors[0].to_string().contains("list.txt:2:"));
    }

    #[test]
    fn bad_networks_and_addresses_are_skipped_with_the_reason() {
        let (s, errors) = set(concat!(
            "192.168.1.0/33\n10.0.0.0/240\n192.168.1.195/99\n2001:db8::/129\n",
            "10.0.0.256\n300.1.2.3/24\n1.2.3/24\n2001:db8:::1\n2001:db8::zz\n",
            "10.1.0.0/16\n192.168.1.195/32\n2001:db8::1\n[2001:db8::1]:443\n1.2.3.4:80\n",
            "evil.example\nhttp://10.0.0.1/x/1\n10.0.0.1/gate.php\n",
        ));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, (1..=9).collect::<Vec<_>>(), "{errors:?}");
        assert_eq!(s.len(), 8);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("list.txt:1:") && text[0].contains("/33 is more than 32"), "{text:?}");
        assert!(text[1].contains("/240 is more than 32"), "{text:?}");
        assert!(text[2].contains("/99 is more than 32"), "{text:?}");
        assert!(text[3].contains("/129 is more than 128"), "{text:?}");
        assert!(text[4].contains("not a valid IPv4"), "{text:?}");
        assert!(text[7].contains("not a valid IPv6"), "{text:?}");
        // nothing of the bad lines matches, the good ones do
        assert!(s.match_ip(ip("192.168.1.1")).is_none());
        assert!(s.match_ip(ip("192.168.1.195")).is_some());
        assert!(s.match_ip(ip("10.1.2.3")).is_some());
        assert!(s.match_url("10.0.0.1", "/gate.php").is_some());
    }

    #[test]
    fn duplicates_are_counted_and_the_most_specific_network_wins() {
        let (s, _) =
            set("10.0.0.0/8\n10.1.0.0/16\n10.1.0.0/16\nexample.org\nexample.org\n9.9.9.9\n9.9.9.9\n");
        let hit = s.match_ip(ip("10.1.2.3")).unwrap();
        assert_eq!(hit.value, "10.1.0.0/16");
        assert_eq!(s.duplicates, 3);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn suricata_string_datasets_are_base64() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("domains.lst");
        std::fs::write(&p, "ZXhhbXBsZS5jb20=\nbm90IGJhc2U2NA==\n!!!\n").unwrap();
        let spec = PathBuf::from(format!("dataset-string:{}", p.display()));
        let (s, errors) = IocSet::load(&[spec]).unwrap();
        assert!(s.match_domain("www.example.com").is_some());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(matches!(parse_spec("dataset-bogus:x"), Err(IocError::Format(_))));
    }
}
