//! Rule headers: address and port groups, variables.
//!
//! Sets are normalised to sorted, merged, inclusive ranges, so negation and
//! nested lists are resolved once at load time and matching is a binary
//! search. A list `[a, !b]` is the union of its positive items minus the
//! union of its negated items (`any` when it has only negated items), as in
//! Suricata.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Address and port variables (`$HOME_NET`, `$HTTP_PORTS`, ...).
#[derive(Debug, Clone)]
pub struct Vars {
    addr: HashMap<String, String>,
    port: HashMap<String, String>,
}

/// Suricata's default `address-groups` (suricata.yaml).
const DEFAULT_ADDR: [(&str, &str); 15] = [
    ("HOME_NET", "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]"),
    ("EXTERNAL_NET", "!$HOME_NET"),
    ("HTTP_SERVERS", "$HOME_NET"),
    ("SMTP_SERVERS", "$HOME_NET"),
    ("SQL_SERVERS", "$HOME_NET"),
    ("DNS_SERVERS", "$HOME_NET"),
    ("TELNET_SERVERS", "$HOME_NET"),
    ("AIM_SERVERS", "$EXTERNAL_NET"),
    ("DC_SERVERS", "$HOME_NET"),
    ("DNP3_SERVER", "$HOME_NET"),
    ("DNP3_CLIENT", "$HOME_NET"),
    ("MODBUS_CLIENT", "$HOME_NET"),
    ("MODBUS_SERVER", "$HOME_NET"),
    ("ENIP_CLIENT", "$HOME_NET"),
    ("ENIP_SERVER", "$HOME_NET"),
];

/// Suricata's default `port-groups`.
const DEFAULT_PORT: [(&str, &str); 12] = [
    ("HTTP_PORTS", "80"),
    ("SHELLCODE_PORTS", "!80"),
    ("ORACLE_PORTS", "1521"),
    ("SSH_PORTS", "22"),
    ("DNP3_PORTS", "20000"),
    ("MODBUS_PORTS", "502"),
    ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
    ("FTP_PORTS", "21"),
    ("GENEVE_PORTS", "6081"),
    ("VXLAN_PORTS", "4789"),
    ("TEREDO_PORTS", "3544"),
    ("SIP_PORTS", "[5060,5061]"),
];

impl Default for Vars {
    fn default() -> Self {
        let addr = DEFAULT_ADDR.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        let port = DEFAULT_PORT.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        Vars { addr, port }
    }
}

const MAX_DEPTH: usize = 16;

impl Vars {
    /// Sets (or replaces) a variable. `name` with or without `$`. A name
    /// ending in `PORT` or `PORTS`, or a value that is not an address group
    /// but is a port group, makes a port variable.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let name = name.trim().trim_start_matches('$');
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("invalid variable name `{name}`"));
        }
        let value = value.trim().trim_matches('"');
        let upper = name.to_ascii_uppercase();
        let port_name = upper.ends_with("PORTS") || upper.ends_with("PORT");
        if port_name {
            let mut trial = self.clone();
            trial.port.insert(name.to_string(), value.to_string());
            trial.port_set(value).map_err(|e| format!("invalid value `{value}` for `{name}`: {e}"))?;
            self.port = trial.port;
            return Ok(());
        }
        let mut trial = self.clone();
        trial.addr.insert(name.to_string(), value.to_string());
        match trial.addr_set(value) {
            Ok(_) => {
                self.addr = trial.addr;
                self.port.remove(name);
                Ok(())
            }
            Err(ae) => {
                let mut trial = self.clone();
                trial.port.insert(name.to_string(), value.to_string());
                if trial.port_set(value).is_ok() {
                    self.port = trial.port;
                    self.addr.remove(name);
                    Ok(())
                } else {
                    Err(format!("invalid value `{value}` for `{name}`: {ae}"))
                }
            }
        }
    }

    /// Parses a `NAME=VALUE` argument (as given to `--var`).
    pub fn set_arg(&mut self, arg: &str) -> Result<(), String> {
        let (n, v) =
            arg.split_once('=').ok_or_else(|| format!("invalid variable `{arg}`: expected NAME=VALUE"))?;
        self.set(n, v)
    }

    pub(crate) fn addr_set(&self, s: &str) -> Result<AddrSet, String> {
        self.addr_expr(s, 0)
    }

    pub(crate) fn port_set(&self, s: &str) -> Result<PortSet, String> {
        self.port_expr(s, 0)
    }

    fn addr_expr(&self, s: &str, depth: usize) -> Result<AddrSet, String> {
        self.expr(s, depth, &self.addr)
    }

    fn port_expr(&self, s: &str, depth: usize) -> Result<PortSet, String> {
        self.expr(s, depth, &self.port)
    }

    /// An address or port expression: `any`, an item, `$VAR` (looked up
    /// in `vars`), `!expr`, `[a, !b, ...]` or an unbracketed list.
    fn expr<S: SetExpr>(&self, s: &str, depth: usize, vars: &HashMap<String, String>) -> Result<S, String> {
        let kind = S::KIND;
        if depth > MAX_DEPTH {
            return Err(format!("{kind} variables nest too deep at `{s}`"));
        }
        let t = s.trim();
        if has_top_level_comma(t) {
            // a list written without brackets, as Suricata accepts
            return self.expr(&format!("[{t}]"), depth + 1, vars);
        }
        if let Some(rest) = t.strip_prefix('!') {
            return Ok(self.expr::<S>(rest, depth + 1, vars)?.complement());
        }
        if let Some(inner) = t.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| format!("unbalanced `[` in `{t}`"))?;
            let mut pos = S::empty();
            let mut neg = S::empty();
            let mut any_pos = false;
            for item in split_list(inner)? {
                let item = item.trim();
                if item.is_empty() {
                    return Err(format!("empty item in `{t}`"));
                }
                if let Some(n) = item.strip_prefix('!') {
                    neg = neg.union(&self.expr(n, depth + 1, vars)?);
                } else {
                    any_pos = true;
                    pos = pos.union(&self.expr(item, depth + 1, vars)?);
                }
            }
            let base = if any_pos { pos } else { S::any() };
            let r = base.minus(&neg);
            if r.is_empty() {
                return Err(format!("{kind} list `{t}` matches nothing"));
            }
            return Ok(r);
        }
        if let Some(var) = t.strip_prefix('$') {
            let v = vars.get(var).ok_or_else(|| format!("unknown {kind} variable `${var}`"))?;
            return self.expr(v, depth + 1, vars);
        }
        if t.eq_ignore_ascii_case("any") {
            return Ok(S::any());
        }
        S::item(t)
    }
}

/// The set algebra of addresses and ports, as [`Vars::expr`] uses it.
pub(crate) trait SetExpr: Sized {
    /// `address` or `port`, for messages.
    const KIND: &'static str;
    fn any() -> Self;
    fn empty() -> Self;
    fn item(t: &str) -> Result<Self, String>;
    fn is_empty(&self) -> bool;
    fn union(&self, o: &Self) -> Self;
    fn minus(&self, o: &Self) -> Self;
    fn complement(&self) -> Self;
}

impl SetExpr for AddrSet {
    const KIND: &'static str = "address";
    fn any() -> Self {
        AddrSet { v4: vec![(0, u32::MAX)], v6: vec![(0, u128::MAX)] }
    }
    fn empty() -> Self {
        AddrSet { v4: Vec::new(), v6: Vec::new() }
    }
    fn item(t: &str) -> Result<Self, String> {
        parse_addr_item(t)
    }
    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
    fn union(&self, o: &Self) -> Self {
        let mut v4 = self.v4.clone();
        v4.extend_from_slice(&o.v4);
        let mut v6 = self.v6.clone();
        v6.extend_from_slice(&o.v6);
        AddrSet { v4: normalize(v4), v6: normalize(v6) }
    }
    fn minus(&self, o: &Self) -> Self {
        AddrSet { v4: intersect(&self.v4, &complement(&o.v4)), v6: intersect(&self.v6, &complement(&o.v6)) }
    }
    fn complement(&self) -> Self {
        AddrSet { v4: complement(&self.v4), v6: complement(&self.v6) }
    }
}

impl SetExpr for PortSet {
    const KIND: &'static str = "port";
    fn any() -> Self {
        PortSet { ranges: vec![(0, u16::MAX)] }
    }
    fn empty() -> Self {
        PortSet { ranges: Vec::new() }
    }
    fn item(t: &str) -> Result<Self, String> {
        parse_port_item(t)
    }
    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    fn union(&self, o: &Self) -> Self {
        let mut r = self.ranges.clone();
        r.extend_from_slice(&o.ranges);
        PortSet { ranges: normalize(r) }
    }
    fn minus(&self, o: &Self) -> Self {
        PortSet { ranges: intersect(&self.ranges, &complement(&o.ranges)) }
    }
    fn complement(&self) -> Self {
        PortSet { ranges: complement(&self.ranges) }
    }
}

fn has_top_level_comma(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

/// Splits a list on top-level commas.
fn split_list(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `]` in `{s}`"));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `[` in `{s}`"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_addr_item(t: &str) -> Result<AddrSet, String> {
    let bad = || format!("invalid address `{t}`");
    if let Some((a, p)) = t.split_once('/') {
        let ip: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let p = p.trim();
        let prefix: u32 = match ip {
            IpAddr::V4(_) => {
                if let Ok(n) = p.parse::<u32>() {
                    n
                } else {
                    // netmask form 255.255.255.0
                    let m: Ipv4Addr = p.parse().map_err(|_| bad())?;
                    let m = u32::from(m);
                    if m.leading_ones() + m.trailing_zeros() != 32 {
                        return Err(bad());
                    }
                    m.leading_ones()
                }
            }
            IpAddr::V6(_) => p.parse().map_err(|_| bad())?,
        };
        return match ip {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return Err(bad());
                }
                let base = u32::from(v4);
                let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                let lo = base & mask;
                Ok(AddrSet { v4: vec![(lo, lo | !mask)], v6: Vec::new() })
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(bad());
                }
                let base = u128::from(v6);
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                let lo = base & mask;
                Ok(AddrSet { v4: Vec::new(), v6: vec![(lo, lo | !mask)] })
            }
        };
    }
    if let Some((a, b)) = t.split_once('-') {
        let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
        return match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) if u32::from(a) <= u32::from(b) => {
                Ok(AddrSet { v4: vec![(u32::from(a), u32::from(b))], v6: Vec::new() })
            }
            (IpAddr::V6(a), IpAddr::V6(b)) if u128::from(a) <= u128::from(b) => {
                Ok(AddrSet { v4: Vec::new(), v6: vec![(u128::from(a), u128::from(b))] })
            }
            _ => Err(bad()),
        };
    }
    let ip: IpAddr = t.parse().map_err(|_| bad())?;
    Ok(AddrSet::single(ip))
}

fn parse_port_item(t: &str) -> Result<PortSet, String> {
    let bad = || format!("invalid port `{t}`");
    let num = |s: &str| -> Result<u16, String> { s.trim().parse::<u16>().map_err(|_| bad()) };
    if let Some((a, b)) = t.split_once(':') {
        let lo = if a.trim().is_empty() { 0 } else { num(a)? };
        let hi = if b.trim().is_empty() { u16::MAX } else { num(b)? };
        if lo > hi {
            return Err(bad());
        }
        return Ok(PortSet { ranges: vec![(lo, hi)] });
    }
    let p = num(t)?;
    Ok(PortSet { ranges: vec![(p, p)] })
}

/// Merges sorted-or-not inclusive ranges.
fn normalize<T: Copy + Ord + One>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        if let Some(last) = out.last_mut() {
            // adjacent or overlapping
            if a <= last.1 || last.1.succ() == Some(a) {
                if b > last.1 {
                    last.1 = b;
                }
                continue;
            }
        }
        out.push((a, b));
    }
    out
}

trait One: Sized {
    fn succ(self) -> Option<Self>;
    fn pred(self) -> Option<Self>;
    const MIN: Self;
    const MAX: Self;
}

macro_rules! one {
    ($t:ty) => {
        impl One for $t {
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            fn pred(self) -> Option<Self> {
                self.checked_sub(1)
            }
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
        }
    };
}
one!(u16);
one!(u32);
one!(u128);

fn complement<T: Copy + Ord + One>(v: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut next = Some(T::MIN);
    for &(a, b) in v {
        if let Some(n) = next
            && n < a
            && let Some(p) = a.pred()
        {
            out.push((n, p));
        }
        next = b.succ();
    }
    if let Some(n) = next {
        out.push((n, T::MAX));
    }
    out
}

fn contains<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    // last range starting at or before x
    let idx = v.partition_point(|r| r.0 <= x);
    idx > 0 && v.get(idx - 1).is_some_and(|r| x <= r.1)
}

fn intersect<T: Copy + Ord>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        let lo = if x.0 > y.0 { x.0 } else { y.0 };
        let hi = if x.1 < y.1 { x.1 } else { y.1 };
        if lo <= hi {
            out.push((lo, hi));
        }
        if x.1 < y.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// CIDR blocks (address, prefix length), IPv4 then IPv6.
pub(crate) type Cidrs = (Vec<(u32, u8)>, Vec<(u128, u8)>);

/// A set of IPv4 and IPv6 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddrSet {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

impl AddrSet {
    pub fn single(ip: IpAddr) -> AddrSet {
        match ip {
            IpAddr::V4(a) => AddrSet { v4: vec![(u32::from(a), u32::from(a))], v6: Vec::new() },
            IpAddr::V6(a) => AddrSet { v4: Vec::new(), v6: vec![(u128::from(a), u128::from(a))] },
        }
    }

    pub fn is_any(&self) -> bool {
        self.v4 == [(0, u32::MAX)] && self.v6 == [(0, u128::MAX)]
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                // an IPv4-mapped address also matches the IPv4 entries
                Some(v4) => contains(&self.v6, u128::from(a)) || contains(&self.v4, u32::from(v4)),
                None => contains(&self.v6, u128::from(a)),
            },
        }
    }

    /// Decomposes into CIDR blocks (for the address index), or `None` when
    /// there would be more than `max`.
    pub fn cidrs(&self, max: usize) -> Option<Cidrs> {
        let mut v4 = Vec::new();
        for &(a, b) in &self.v4 {
            cidr_split_u32(a, b, &mut v4);
            if v4.len() > max {
                return None;
            }
        }
        let mut v6 = Vec::new();
        for &(a, b) in &self.v6 {
            cidr_split_u128(a, b, &mut v6);
            if v6.len() + v4.len() > max {
                return None;
            }
        }
        Some((v4, v6))
    }
}

fn cidr_split_u32(mut a: u32, b: u32, out: &mut Vec<(u32, u8)>) {
    loop {
        // largest block aligned at a and not past b
        let mut size_bits = if a == 0 { 32 } else { a.trailing_zeros() };
        while size_bits > 0 {
            let end = u64::from(a) + (1u64 << size_bits) - 1;
            if end <= u64::from(b) {
                break;
            }
            size_bits -= 1;
        }
        out.push((a, (32 - size_bits) as u8));
        let end = u64::from(a) + (1u64 << size_bits) - 1;
        if end >= u64::from(b) || out.len() > 1_000_000 {
            return;
        }
        a = (end + 1) as u32;
    }
}

fn cidr_split_u128(mut a: u128, b: u128, out: &mut Vec<(u128, u8)>) {
    loop {
        let mut size_bits = if a == 0 { 128 } else { a.trailing_zeros() };
        while size_bits > 0 {
            let span = if size_bits == 128 { u128::MAX } else { (1u128 << size_bits) - 1 };
            match a.checked_add(span) {
                Some(end) if end <= b => break,
                _ => size_bits -= 1,
            }
        }
        out.push((a, (128 - size_bits) as u8));
        let span = if size_bits == 128 { u128::MAX } else { (1u128 << size_bits) - 1 };
        let end = a.saturating_add(span);
        if end >= b || out.len() > 1_000_000 {
            return;
        }
        a = end + 1;
    }
}

/// A set of ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortSet {
    pub ranges: Vec<(u16, u16)>,
}

impl PortSet {
    pub fn is_any(&self) -> bool {
        self.ranges == [(0, u16::MAX)]
    }

    pub fn contains(&self, p: u16) -> bool {
        contains(&self.ranges, p)
    }
}

/// IPv6 address helper for tests and datasets.
pub(crate) fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[allow(dead_code)]
pub(crate) fn ip_from_key(k: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_and_negation() {
        let v = Vars::default();
        let home = v.addr_set("$HOME_NET").unwrap();
        let ext = v.addr_set("$EXTERNAL_NET").unwrap();
        assert!(home.contains(ip("10.1.2.3")));
        assert!(home.contains(ip("172.31.255.255")));
        assert!(!home.contains(ip("172.32.0.0")));
        assert!(!ext.contains(ip("192.168.1.1")));
        assert!(ext.contains(ip("8.8.8.8")));
        assert!(ext.contains(ip("2001:db8::1")));
        let http = v.port_set("$HTTP_PORTS").unwrap();
        assert!(http.contains(80) && !http.contains(81));
    }

    #[test]
    fn nested_lists() {
        let v = Vars::default();
        let s = v.addr_set("[10.0.0.0/8,![10.1.0.0/16,10.2.0.0/16],1.2.3.4]").unwrap();
        assert!(s.contains(ip("10.3.0.1")));
        assert!(!s.contains(ip("10.1.5.5")));
        assert!(!s.contains(ip("10.2.0.0")));
        assert!(s.contains(ip("1.2.3.4")));
        assert!(!s.contains(ip("1.2.3.5")));
        let only_neg = v.addr_set("[!1.2.3.4]").unwrap();
        assert!(only_neg.contains(ip("1.2.3.5")) && !only_neg.contains(ip("1.2.3.4")));
        let p = v.port_set("!5800,!445").unwrap();
        assert!(!p.contains(445) && !p.contains(5800) && p.contains(80));
        let p = v.port_set("[1024:,!8080,22]").unwrap();
        assert!(p.contains(22) && p.contains(1024) && !p.contains(8080) && !p.contains(80));
        assert!(v.port_set(":1023").unwrap().contains(0));
        assert!(v.addr_set("[1.2.3.4").is_err());
        assert!(v.addr_set("$NOPE").is_err());
        assert!(v.addr_set("[!any]").is_err());
        assert!(v.port_set("70000").is_err());
        let r = v.addr_set("1.2.3.4-1.2.3.8").unwrap();
        assert!(r.contains(ip("1.2.3.6")) && !r.contains(ip("1.2.3.9")));
        let m = v.addr_set("192.168.0.0/255.255.0.0").unwrap();
        assert!(m.contains(ip("192.168.3.3")));
        assert!(v.addr_set("2001:db8::/32").unwrap().contains(ip("2001:db8:1::1")));
    }

    #[test]
    fn set_vars() {
        let mut v = Vars::default();
        v.set("HOME_NET", "[10.10.0.0/16]").unwrap();
        assert!(v.addr_set("$EXTERNAL_NET").unwrap().contains(ip("10.11.0.1")));
        v.set("$HTTP_PORTS", "[80,8080]").unwrap();
        assert!(v.port_set("$HTTP_PORTS").unwrap().contains(8080));
        assert!(v.set("HOME_NET", "[10.0.0.0/8").is_err());
        assert!(v.set("", "1.2.3.4").is_err());
        v.set_arg("MY_SRV=1.2.3.4").unwrap();
        assert!(v.addr_set("$MY_SRV").unwrap().contains(ip("1.2.3.4")));
        assert!(v.set_arg("nothing").is_err());
        // loops are caught
        v.set("A", "1.1.1.1").unwrap();
        v.addr.insert("A".into(), "$B".into());
        v.addr.insert("B".into(), "$A".into());
        assert!(v.addr_set("$A").is_err());
    }

    #[test]
    fn cidr_decomposition() {
        let v = Vars::default();
        let s = v.addr_set("[1.2.3.4,10.0.0.0/8,1.2.3.5-1.2.3.9]").unwrap();
        let (v4, _) = s.cidrs(100).unwrap();
        assert!(v4.contains(&(u32::from(ip4("10.0.0.0")), 8)));
        assert!(AddrSet::any().cidrs(10).is_some());
        assert_eq!(ip_from_key(ip_key(ip("1.2.3.4"))), ip("1.2.3.4"));
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
}
