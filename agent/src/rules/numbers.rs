//! Integer keyword values: Suricata's unsigned comparisons (`dsize`, `bsize`,
//! `urilen`, `itype`, `icode`, `ttl`, `ip_proto`) and number literals.

/// `N`, `=N`, `!N`, `!=N`, `<N`, `<=N`, `>N`, `>=N`, `N<>M` and `N-M`
/// (exclusive ranges, like Suricata), `!N-M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UintCmp {
    Eq(u64),
    Ne(u64),
    Lt(u64),
    Le(u64),
    Gt(u64),
    Ge(u64),
    Range(u64, u64),
    NotRange(u64, u64),
}

impl UintCmp {
    pub(crate) fn matches(&self, v: u64) -> bool {
        match *self {
            UintCmp::Eq(a) => v == a,
            UintCmp::Ne(a) => v != a,
            UintCmp::Lt(a) => v < a,
            UintCmp::Le(a) => v <= a,
            UintCmp::Gt(a) => v > a,
            UintCmp::Ge(a) => v >= a,
            UintCmp::Range(a, b) => v > a && v < b,
            UintCmp::NotRange(a, b) => !(v > a && v < b),
        }
    }

    /// Parses the value and checks it fits in `max`.
    pub(crate) fn parse(s: &str, max: u64) -> Result<UintCmp, String> {
        let t = s.trim();
        let bad = || format!("invalid number comparison `{t}`");
        let check = |v: u64| {
            if v > max { Err(format!("value {v} out of range (max {max}) in `{t}`")) } else { Ok(v) }
        };
        if t.is_empty() {
            return Err(bad());
        }
        if let Some((a, b)) = t.split_once("<>") {
            let a = check(parse_u64(a).ok_or_else(bad)?)?;
            let b = check(parse_u64(b).ok_or_else(bad)?)?;
            if a >= b {
                return Err(format!("empty range `{t}`"));
            }
            return Ok(UintCmp::Range(a, b));
        }
        let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
            ("<=", r)
        } else if let Some(r) = t.strip_prefix(">=") {
            (">=", r)
        } else if let Some(r) = t.strip_prefix("!=") {
            ("!", r)
        } else if let Some(r) = t.strip_prefix('<') {
            ("<", r)
        } else if let Some(r) = t.strip_prefix('>') {
            (">", r)
        } else if let Some(r) = t.strip_prefix('!') {
            ("!", r)
        } else if let Some(r) = t.strip_prefix('=') {
            ("=", r)
        } else {
            ("=", t)
        };
        let rest = rest.trim();
        if (op == "=" || op == "!")
            && let Some((a, b)) = rest.split_once('-')
            && !a.trim().is_empty()
        {
            let a = check(parse_u64(a).ok_or_else(bad)?)?;
            let b = check(parse_u64(b).ok_or_else(bad)?)?;
            if a >= b {
                return Err(format!("empty range `{t}`"));
            }
            return Ok(if op == "!" { UintCmp::NotRange(a, b) } else { UintCmp::Range(a, b) });
        }
        let v = check(parse_u64(rest).ok_or_else(bad)?)?;
        Ok(match op {
            "<=" => UintCmp::Le(v),
            ">=" => UintCmp::Ge(v),
            "<" => UintCmp::Lt(v),
            ">" => UintCmp::Gt(v),
            "!" => UintCmp::Ne(v),
            _ => UintCmp::Eq(v),
        })
    }
}

/// Decimal or `0x` hexadecimal.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

/// Signed decimal or hexadecimal.
pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(r) = t.strip_prefix('-') {
        parse_u64(r).and_then(|v| i64::try_from(-i128::from(v)).ok())
    } else {
        parse_u64(t.strip_prefix('+').unwrap_or(t)).and_then(|v| i64::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        assert_eq!(UintCmp::parse("8", 255), Ok(UintCmp::Eq(8)));
        assert_eq!(UintCmp::parse(">30", 255), Ok(UintCmp::Gt(30)));
        assert_eq!(UintCmp::parse("<=3", 255), Ok(UintCmp::Le(3)));
        assert_eq!(UintCmp::parse("!9", 255), Ok(UintCmp::Ne(9)));
        assert_eq!(UintCmp::parse("8<>20", 65535), Ok(UintCmp::Range(8, 20)));
        assert_eq!(UintCmp::parse("8-20", 65535), Ok(UintCmp::Range(8, 20)));
        assert!(UintCmp::Range(8, 20).matches(9));
        assert!(!UintCmp::Range(8, 20).matches(8));
        assert!(!UintCmp::Range(8, 20).matches(20));
        assert!(UintCmp::parse("300", 255).is_err());
        assert!(UintCmp::parse("x", 255).is_err());
        assert!(UintCmp::parse("", 255).is_err());
        assert_eq!(parse_i64("-0x10"), Some(-16));
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64("9223372036854775808"), None);
    }
}
