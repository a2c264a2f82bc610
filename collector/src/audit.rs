//! The collector's side of the audit log: sealing entries into the hash
//! chain and signing its head with the server key. The chain format and
//! its verification are `canhgac_proto::audit` (the command line verifies
//! exports with the same code).

use std::{path::Path, sync::Arc, time::Duration};

use base64::Engine as _;
pub use canhgac_proto::audit::{SignedHead, verify_head};
use canhgac_proto::{audit::head_message, v1::AuditEntry};
use rcgen::{KeyPair, SigningKey as _};

use crate::store::{AuditCheckpointRec, AuditRec, Store};

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

/// Signs the chain's head and keeps it as a checkpoint, unless the head
/// already has one. Returns the new checkpoint.
pub fn checkpoint_once(
    store: &Store,
    signer: &Signer,
    now_us: i64,
) -> Result<Option<AuditCheckpointRec>, String> {
    let Some(head) = store.audit_head().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if !store.audit_checkpoints(head.seq, head.seq).map_err(|e| e.to_string())?.is_empty() {
        return Ok(None);
    }
    let h = signer.sign(head.seq, &head.hash, now_us)?;
    let rec = AuditCheckpointRec {
        version: crate::store::records::RECORD_VERSION,
        seq: h.seq,
        hash: h.hash,
        signed_at_us: h.signed_at_us,
        signature: h.signature,
        certificate_pem: h.certificate_pem,
    };
    store.put_audit_checkpoint(rec.clone()).map_err(|e| e.to_string())?;
    Ok(Some(rec))
}

/// Keeps checkpoints every `every` while the chain grows, and one more at
/// shutdown. Each is also written to the collector's log (journald), a
/// copy outside the database.
pub async fn run_head_signer(
    store: Store,
    signer: Arc<Signer>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = crate::registry::until_true(&mut shutdown) => true,
        };
        let (s, k) = (store.clone(), signer.clone());
        let now = canhgac_proto::timefmt::micros(time::OffsetDateTime::now_utc());
        match tokio::task::spawn_blocking(move || checkpoint_once(&s, &k, now)).await {
            Ok(Ok(Some(c))) => {
                let _ = store.flush().await;
                tracing::info!(seq = c.seq, hash = %c.hash, signature = %c.signature, "audit checkpoint signed");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
        }
        if stopping {
            return;
        }
    }
}

/// The wire form of a stored entry (what the chain covers).
pub fn entry(r: &AuditRec) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        time: Some(canhgac_proto::timefmt::to_timestamp(canhgac_proto::timefmt::from_micros(r.time_us))),
        operator: r.operator.clone(),
        role: r.role.clone(),
        operator_agency: r.operator_agency.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        outcome: r.outcome.clone(),
        detail: r.detail.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
        time_us: r.time_us,
    }
}

/// The hash of a stored entry.
pub fn seal(r: &AuditRec) -> String {
    canhgac_proto::audit::seal(&entry(r))
}

/// Checks stored entries from the start of the log.
pub fn verify(entries: &[AuditRec]) -> Result<usize, String> {
    canhgac_proto::audit::verify(&entries.iter().map(entry).collect::<Vec<_>>())
}

/// Checks stored entries against a signed head.
pub fn verify_export(entries: &[AuditRec], head: Option<&SignedHead>, ca_pem: &str) -> Result<usize, String> {
    canhgac_proto::audit::verify_export(&entries.iter().map(entry).collect::<Vec<_>>(), head, ca_pem)
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

    #[test]
    fn checkpoints_are_kept_once_per_head_and_catch_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::pki::PkiPaths::new(dir.path());
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::pki::Ca::create(&paths, now).unwrap();
        ca.issue_server(&paths, &["localhost".to_string()], now).unwrap();
        let signer = Signer::load(&paths.server_key(), &paths.server_cert()).unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(checkpoint_once(&store, &signer, 1).unwrap(), None, "no chain, nothing to sign");
        for n in 0..3 {
            store.append_audit(AuditRec { operator: format!("op{n}"), ..Default::default() }, seal).unwrap();
        }
        let c = checkpoint_once(&store, &signer, 2).unwrap().expect("a checkpoint of entry 3");
        assert_eq!(c.seq, 3);
        assert_eq!(checkpoint_once(&store, &signer, 3).unwrap(), None, "the head has one already");
        let chain: Vec<_> = store.audit_after(0, 10).unwrap().iter().map(entry).collect();
        let heads: Vec<SignedHead> = store
            .audit_checkpoints(1, 3)
            .unwrap()
            .into_iter()
            .map(|c| SignedHead {
                seq: c.seq,
                hash: c.hash,
                signed_at_us: c.signed_at_us,
                signature: c.signature,
                certificate_pem: c.certificate_pem,
            })
            .collect();
        let ca_pem = ca.cert_pem().to_string();
        assert_eq!(canhgac_proto::audit::verify_checkpoints(&chain, &heads, &ca_pem), Ok(1));
        // entry 2 rewritten, the chain recomputed: consistent, but not the checkpoint
        let mut rewritten = chain.clone();
        rewritten[1].target = "SO-Z".into();
        let mut prev = rewritten[0].hash.clone();
        for e in rewritten.iter_mut().skip(1) {
            e.prev_hash = prev.clone();
            e.hash = canhgac_proto::audit::seal(e);
            prev = e.hash.clone();
        }
        assert_eq!(canhgac_proto::audit::verify(&rewritten), Ok(3));
        let e = canhgac_proto::audit::verify_checkpoints(&rewritten, &heads, &ca_pem).unwrap_err();
        assert!(e.contains("entry 3") && e.contains("rewritten after it"), "{e}");
    }
}
