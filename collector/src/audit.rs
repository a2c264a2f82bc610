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

use std::path::Path;

use base64::Engine as _;
use rcgen::{KeyPair, SigningKey as _};
use sha2::Digest as _;

use crate::store::AuditRec;

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

/// Signs audit heads with the collector's server key.
pub struct Signer {
    key: KeyPair,
    certificate_pem: String,
}

impl Signer {
    /// Loads the server key and certificate (PEM files).
    pub fn load(key: &Path, cert: &Path) -> Result<Signer, String> {
        let key_pem =
            std::fs::read_to_string(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
        let certificate_pem =
            std::fs::read_to_string(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("invalid key {}: {e}", key.display()))?;
        Ok(Signer { key, certificate_pem })
    }

    pub fn sign(&self, seq: u64, hash: &str, signed_at_us: i64) -> Result<SignedHead, String> {
        let sig =
            self.key.sign(&head_message(seq, hash, signed_at_us)).map_err(|e| format!("cannot sign: {e}"))?;
        Ok(SignedHead {
            seq,
            hash: hash.to_string(),
            signed_at_us,
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
            certificate_pem: self.certificate_pem.clone(),
        })
    }
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
pub fn verify_export(entries: &[AuditRec], head: Option<&SignedHead>, ca_pem: &str) -> Result<usize, String> {
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

    #[test]
    fn signed_heads_catch_cut_recomputed_and_forged_exports() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::pki::PkiPaths::new(dir.path());
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::pki::Ca::create(&paths, now).unwrap();
        ca.issue_server(&paths, &["localhost".to_string()], now).unwrap();
        let signer = Signer::load(&paths.server_key(), &paths.server_cert()).unwrap();
        let ca_pem = ca.cert_pem().to_string();
        let c = chain(5);
        let head = signer.sign(5, &c[4].hash, 42).unwrap();
        assert_eq!(verify_export(&c, Some(&head), &ca_pem), Ok(5));
        assert!(verify_export(&c, None, &ca_pem).unwrap_err().contains("no signed head"));
        // the tail cut
        let e = verify_export(&c[..4], Some(&head), &ca_pem).unwrap_err();
        assert!(e.contains("entries were cut"), "{e}");
        // an entry edited and every hash recomputed
        let mut m = c.clone();
        m[1].target = "edited".into();
        let mut prev = m[0].hash.clone();
        for r in m.iter_mut().skip(1) {
            r.prev_hash = prev.clone();
            r.hash = seal(r);
            prev = r.hash.clone();
        }
        assert_eq!(verify(&m), Ok(5), "a recomputed chain is consistent in itself");
        let e = verify_export(&m, Some(&head), &ca_pem).unwrap_err();
        assert!(e.contains("the chain was recomputed"), "{e}");
        // a head re-signed by someone else, or edited
        let mut forged = head.clone();
        forged.hash = m[4].hash.clone();
        assert!(verify_export(&m, Some(&forged), &ca_pem).unwrap_err().contains("head was altered"));
        let other = tempfile::tempdir().unwrap();
        let opaths = crate::pki::PkiPaths::new(other.path());
        let oca = crate::pki::Ca::create(&opaths, now).unwrap();
        oca.issue_server(&opaths, &["localhost".to_string()], now).unwrap();
        let osigner = Signer::load(&opaths.server_key(), &opaths.server_cert()).unwrap();
        let fake = osigner.sign(5, &m[4].hash, 42).unwrap();
        let e = verify_export(&m, Some(&fake), &ca_pem).unwrap_err();
        assert!(e.contains("not issued by this collector's CA"), "{e}");
    }
}
