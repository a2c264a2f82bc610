//! Indicator lists: IP addresses, CIDR ranges and domains.
//!
//! Format: one indicator per line; `#` starts a comment (whole line or
//! after the indicator); blank lines are ignored. A domain also matches its
//! subdomains (`evil.example` matches `a.b.evil.example`), as in Maltrail
//! trails; a leading `*.` or `.` is accepted and means the same. Lines that
//! are not an IP, a CIDR or a domain (URLs, `ip:port`, garbage) are skipped
//! with their file, line and reason; the rest load.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
};

/// One loaded indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// As written in the list (normalised: lower case, no trailing dot).
    pub value: String,
    pub kind: IndicatorKind,
    /// Index into [`IocSet::lists`].
    pub list: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndicatorKind {
    Ip,
    Cidr,
    Domain,
}

impl IndicatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ip => "ip",
            IndicatorKind::Cidr => "cidr",
            IndicatorKind::Domain => "domain",
        }
    }
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
    #[error("too many indicator lists (at most 65535)")]
    TooManyLists,
}

/// Networks by prefix length; exact addresses are /32 and /128.
#[derive(Debug, Default)]
struct PrefixMap {
    by_len: BTreeMap<u8, HashMap<u128, u32>>,
}

impl PrefixMap {
    fn mask(addr: u128, len: u8, bits: u8) -> u128 {
        if len == 0 {
            0
        } else {
            let shift = bits - len;
            (addr >> shift) << shift
        }
    }

    fn insert(&mut self, addr: u128, len: u8, bits: u8, id: u32) -> bool {
        let key = Self::mask(addr, len, bits);
        let map = self.by_len.entry(len).or_default();
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, id);
        true
    }

    /// Most specific match.
    fn lookup(&self, addr: u128, bits: u8) -> Option<u32> {
        self.by_len.iter().rev().find_map(|(len, map)| map.get(&Self::mask(addr, *len, bits)).copied())
    }

    fn len(&self) -> usize {
        self.by_len.values().map(HashMap::len).sum()
    }
}

/// The loaded indicators, ready for matching.
#[derive(Debug, Default)]
pub struct IocSet {
    pub lists: Vec<String>,
    indicators: Vec<Indicator>,
    v4: PrefixMap,
    v6: PrefixMap,
    domains: HashMap<Box<str>, u32>,
    pub duplicates: u64,
}

impl IocSet {
    /// Loads lists; returns the set and the lines that were skipped.
    pub fn load(paths: &[PathBuf]) -> Result<(IocSet, Vec<LineError>), IocError> {
        let mut set = IocSet::default();
        let mut errors = Vec::new();
        for path in paths {
            let text = std::fs::read(path).map_err(|source| IocError::Read { path: path.clone(), source })?;
            let text = String::from_utf8_lossy(&text);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let list = u16::try_from(set.lists.len()).map_err(|_| IocError::TooManyLists)?;
            set.lists.push(name);
            for (i, line) in text.lines().enumerate() {
                if let Err(reason) = set.add_line(line, list) {
                    errors.push(LineError { file: path.clone(), line: i + 1, reason });
                }
            }
        }
        Ok((set, errors))
    }

    /// Adds one line of a list; `Err` names what is wrong with it.
    pub fn add_line(&mut self, line: &str, list: u16) -> Result<(), String> {
        let content = line.split('#').next().unwrap_or("").trim();
        let Some(token) = content.split_whitespace().next() else {
            return Ok(());
        };
        if content.split_whitespace().nth(1).is_some() {
            return Err(format!("more than one value on the line: `{content}`"));
        }
        self.add(token, list)
    }

    pub fn add(&mut self, token: &str, list: u16) -> Result<(), String> {
        if let Ok(ip) = token.parse::<IpAddr>() {
            let (bits, addr) = split(ip);
            return self.insert_net(addr, bits, bits, IndicatorKind::Ip, token, list);
        }
        if let Ok(net) = token.parse::<ipnet::IpNet>() {
            let (bits, addr) = split(net.network());
            return self.insert_net(
                addr,
                net.prefix_len(),
                bits,
                IndicatorKind::Cidr,
                &net.trunc().to_string(),
                list,
            );
        }
        if token.contains("://") || token.contains('/') {
            return Err(format!("`{token}` is a URL; URL indicators are not supported by this detector"));
        }
        if token
            .rsplit_once(':')
            .is_some_and(|(h, p)| h.parse::<IpAddr>().is_ok() && p.parse::<u16>().is_ok())
        {
            return Err(format!("`{token}` is an address with a port; list the address alone"));
        }
        let domain = normalize_domain(token)
            .ok_or_else(|| format!("`{token}` is not an IP address, a CIDR or a domain"))?;
        if self.domains.contains_key(domain.as_str()) {
            self.duplicates += 1;
            return Ok(());
        }
        let id = self.push(Indicator { value: domain.clone(), kind: IndicatorKind::Domain, list });
        self.domains.insert(domain.into_boxed_str(), id);
        Ok(())
    }

    fn insert_net(
        &mut self,
        addr: u128,
        len: u8,
        bits: u8,
        kind: IndicatorKind,
        value: &str,
        list: u16,
    ) -> Result<(), String> {
        let id = self.indicators.len() as u32;
        let map = if bits == 32 { &mut self.v4 } else { &mut self.v6 };
        if map.insert(addr, len, bits, id) {
            self.push(Indicator { value: value.to_ascii_lowercase(), kind, list });
        } else {
            self.duplicates += 1;
        }
        Ok(())
    }

    fn push(&mut self, ind: Indicator) -> u32 {
        self.indicators.push(ind);
        (self.indicators.len() - 1) as u32
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn indicator(&self, id: u32) -> Option<&Indicator> {
        self.indicators.get(id as usize)
    }

    pub fn list_name(&self, ind: &Indicator) -> &str {
        self.lists.get(ind.list as usize).map(String::as_str).unwrap_or("")
    }

    /// Most specific network containing `ip`.
    pub fn match_ip(&self, ip: IpAddr) -> Option<u32> {
        let (bits, addr) = split(ip);
        if bits == 32 { self.v4.lookup(addr, 32) } else { self.v6.lookup(addr, 128) }
    }

    /// The listed domain equal to `name` or a parent of it.
    pub fn match_domain(&self, name: &str) -> Option<u32> {
        if self.domains.is_empty() {
            return None;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut rest = name.as_str();
        loop {
            if let Some(id) = self.domains.get(rest) {
                return Some(*id);
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return None,
            }
        }
    }
}

fn split(ip: IpAddr) -> (u8, u128) {
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

/// Loads lists and logs what was skipped.
pub fn load_logged(paths: &[PathBuf]) -> Result<(IocSet, usize), IocError> {
    let (set, errors) = IocSet::load(paths)?;
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

    #[test]
    fn matches_ips_networks_and_subdomains() {
        let (s, errors) = set(
            "# header\n45.9.74.78\n10.20.0.0/16 # lab\n2001:db8::/32\n\nDrivres-Update.info.\n*.evil.example\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.len(), 5);
        let ip = |x: &str| x.parse::<IpAddr>().unwrap();
        assert_eq!(s.indicator(s.match_ip(ip("45.9.74.78")).unwrap()).unwrap().value, "45.9.74.78");
        assert_eq!(s.indicator(s.match_ip(ip("10.20.3.4")).unwrap()).unwrap().kind, IndicatorKind::Cidr);
        assert!(s.match_ip(ip("10.21.0.1")).is_none());
        assert!(s.match_ip(ip("2001:db8::1")).is_some());
        assert!(s.match_ip(ip("::ffff:45.9.74.78")).is_some());
        assert!(s.match_domain("drivres-update.info").is_some());
        assert!(s.match_domain("WWW.drivres-update.INFO.").is_some());
        assert!(s.match_domain("a.b.evil.example").is_some());
        assert!(s.match_domain("notevil.example").is_none());
        assert!(s.match_domain("update.info").is_none());
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_load() {
        let (s, errors) =
            set("1.2.3.4\nhttp://x.example/a\n1.2.3.4:8080\nnot a domain\n-\n5.6.7.8\n999.1.1.1\n");
        assert_eq!(s.len(), 2);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 7]);
        assert!(errors[0].reason.contains("URL"));
        assert!(errors[0].to_string().contains("list.txt:2:"));
    }

    #[test]
    fn more_specific_network_wins_and_duplicates_are_counted() {
        let (s, _) = set("10.0.0.0/8\n10.1.0.0/16\n10.1.0.0/16\n");
        let id = s.match_ip("10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(s.indicator(id).unwrap().value, "10.1.0.0/16");
        assert_eq!(s.duplicates, 1);
    }
}
