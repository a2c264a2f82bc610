//! The audit log: one entry per operator call (allowed or refused),
//! append-only and hash-chained.
//!
//! `hash = SHA-256(canonical(entry))` in lowercase hex, where `canonical`
//! is the concatenation, for each of `"canhgac-audit-v1"`, seq, time_us,
//! operator, role, operator_agency, action, target, outcome, detail and
//! prev_hash (numbers in decimal), of `LEN:VALUE;` with LEN the byte
//! length of VALUE. `prev_hash` is the previous entry's hash ("" for the
//! first). Changing, removing or reordering any entry breaks every later
//! link, which `canhgac audit verify` reports.

use sha2::Digest as _;

use crate::store::AuditRec;

pub fn canonical(r: &AuditRec) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [
        "canhgac-audit-v1",
        &r.seq.to_string(),
        &r.time_us.to_string(),
        &r.operator,
        &r.role,
        &r.operator_agency,
        &r.action,
        &r.target,
        &r.outcome,
        &r.detail,
        &r.prev_hash,
    ] {
        out.extend_from_slice(format!("{}:", v.len()).as_bytes());
        out.extend_from_slice(v.as_bytes());
        out.push(b';');
    }
    out
}

pub fn seal(r: &AuditRec) -> String {
    hex::encode(sha2::Sha256::digest(canonical(r)))
}

/// Checks a sequence of entries from the start of the log. `Err` names the
/// first bad entry and why.
pub fn verify(entries: &[AuditRec]) -> Result<usize, String> {
    let mut prev = String::new();
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if e.seq != expected_seq {
            return Err(format!("entry {expected_seq}: missing or out of order (found seq {})", e.seq));
        }
        if e.prev_hash != prev {
            return Err(format!("entry {}: prev_hash does not match the hash of entry {}", e.seq, e.seq - 1));
        }
        if seal(e) != e.hash {
            return Err(format!("entry {}: hash does not match its content (modified)", e.seq));
        }
        prev = e.hash.clone();
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRec> {
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRec {
                    seq,
                    operator: format!("op{seq}"),
                    action: "ListAlerts".into(),
                    prev_hash: prev.clone(),
                    ..Default::default()
                };
                r.hash = seal(&r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn detects_modified_removed_and_reordered_entries() {
        let c = chain(5);
        assert_eq!(verify(&c), Ok(5));
        let mut m = c.clone();
        m[2].target = "SO-B".into();
        assert_eq!(verify(&m).unwrap_err(), "entry 3: hash does not match its content (modified)");
        let mut m = c.clone();
        m[2].target = "SO-B".into();
        m[2].hash = seal(&m[2]);
        assert!(verify(&m).unwrap_err().starts_with("entry 4: prev_hash"));
        let mut m = c.clone();
        m.remove(1);
        assert!(verify(&m).unwrap_err().starts_with("entry 2: missing"));
        // field boundaries are unambiguous
        let a = AuditRec { operator: "ab".into(), role: "c".into(), ..Default::default() };
        let b = AuditRec { operator: "a".into(), role: "bc".into(), ..Default::default() };
        assert_ne!(seal(&a), seal(&b));
    }
}
