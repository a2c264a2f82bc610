//! The audit chain's verification, shared by the collector (which seals
//! and signs) and the `canhgac` command line (which verifies exports
//! offline): one entry per operator call (allowed or refused),
//! append-only and hash-chained.
//!
//! `hash = SHA-256(canonical(entry))` in lowercase hex, where `canonical`
//! is the concatenation, for each of `"canhgac-audit-v1"`, seq, time_us,
//! operator, role, operator_agency, action, target, outcome, detail and
//! prev_hash (numbers in decimal), of `LEN:VALUE;` with LEN the byte
//! length of VALUE. `prev_hash` is the previous entry's hash ("" for the
//! first). Changing, removing or reordering any entry breaks every later
//! link, which `canhgac audit verify` reports.
//!
//! **Signed heads.** Whoever can write the database or an export could
//! recompute every hash after an edit, or cut the tail. So every audit
//! listing carries a head signed with the collector's server key:
//! `ECDSA-P256-SHA256(head_message(seq, hash, signed_at_us))`, with the
//! server certificate (issued by the collector's CA). `audit verify --file`
//! checks the chain, that the export ends at the signed head (nothing cut),
//! that its hash is the signed one (nothing recomputed), the signature
//! against the CA of the operator's profile, and, when the collector is
//! reachable, that the collector's own chain has the same hash at that
//! entry.

use base64::Engine as _;
use sha2::Digest as _;

use crate::v1::AuditEntry;

/// The bytes a head signature covers.
pub fn head_message(seq: u64, hash: &str, signed_at_us: i64) -> Vec<u8> {
    format!("canhgac-audit-head-v1\n{seq}\n{hash}\n{signed_at_us}\n").into_bytes()
}

/// A signed statement that entry `seq` of the chain has hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    pub signed_at_us: i64,
    /// DER ECDSA signature, base64.
    pub signature: String,
    pub certificate_pem: String,
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| format!("{what}: not a PEM certificate: {e}"))
}

fn ecdsa_ok(spki_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, spki_key)
        .verify(msg, sig)
        .is_ok()
}

/// Checks a signed head: its certificate was issued by the CA in `ca_pem`
/// and its signature covers (seq, hash, time).
pub fn verify_head(head: &SignedHead, ca_pem: &str) -> Result<(), String> {
    let ca_der = pem_der(ca_pem, "the profile's CA")?;
    let cert_der = pem_der(&head.certificate_pem, "the head's certificate")?;
    let (_, ca) =
        x509_parser::parse_x509_certificate(&ca_der).map_err(|e| format!("the profile's CA: {e}"))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&cert_der).map_err(|e| format!("the head's certificate: {e}"))?;
    if !ecdsa_ok(
        &ca.public_key().subject_public_key.data,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    ) {
        return Err("the head's certificate was not issued by this collector's CA".into());
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(head.signature.trim())
        .map_err(|_| "the head's signature is not base64".to_string())?;
    if !ecdsa_ok(
        &cert.public_key().subject_public_key.data,
        &head_message(head.seq, &head.hash, head.signed_at_us),
        &sig,
    ) {
        return Err(format!(
            "the signature of the head (entry {}) does not match: the head was altered",
            head.seq
        ));
    }
    Ok(())
}

/// Checks an export: a chain from entry 1 that ends exactly at a head
/// signed by the collector.
pub fn verify_export(
    entries: &[AuditEntry],
    head: Option<&SignedHead>,
    ca_pem: &str,
) -> Result<usize, String> {
    let n = verify(entries)?;
    let Some(head) = head else {
        return Err("the export has no signed head: it cannot be shown complete and unaltered".into());
    };
    verify_head(head, ca_pem)?;
    let Some(last) = entries.last() else {
        return Err(format!("the export holds no entries but its head names entry {}", head.seq));
    };
    if last.seq < head.seq {
        return Err(format!(
            "the export ends at entry {} but the collector signed entry {} as its end: entries were cut",
            last.seq, head.seq
        ));
    }
    if last.seq > head.seq {
        return Err(format!(
            "the export goes on past the signed head (entry {}): entries {}..{} were added",
            head.seq,
            head.seq + 1,
            last.seq
        ));
    }
    if last.hash != head.hash {
        return Err(format!(
            "entry {}: its hash differs from the one the collector signed: the chain was recomputed",
            head.seq
        ));
    }
    Ok(n)
}

/// Checks checkpoints (heads the collector signed periodically) against a
/// chain: each is signed by the collector and names the hash the chain
/// has at that entry. Checkpoints past the chain's end are ignored.
/// Returns how many were checked.
pub fn verify_checkpoints(
    entries: &[AuditEntry],
    checkpoints: &[SignedHead],
    ca_pem: &str,
) -> Result<usize, String> {
    let first = entries.first().map(|e| e.seq).unwrap_or(1);
    let mut checked = 0;
    for c in checkpoints {
        let Some(e) = c.seq.checked_sub(first).and_then(|i| entries.get(i as usize)) else {
            continue;
        };
        verify_head(c, ca_pem).map_err(|err| format!("checkpoint of entry {}: {err}", c.seq))?;
        if e.seq != c.seq || e.hash != c.hash {
            return Err(format!(
                "entry {}: its hash differs from the checkpoint the collector signed at {}: the chain was rewritten after it",
                c.seq,
                crate::timefmt::rfc3339(crate::timefmt::from_micros(c.signed_at_us))
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

pub fn canonical(r: &AuditEntry) -> Vec<u8> {
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

pub fn seal(r: &AuditEntry) -> String {
    hex::encode(sha2::Sha256::digest(canonical(r)))
}

/// Checks a sequence of entries from the start of the log. `Err` names the
/// first bad entry and why.
pub fn verify(entries: &[AuditEntry]) -> Result<usize, String> {
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
