//! The audit chain: appends serialised under one lock, nothing rewritten.

use prost::Message as _;

use super::{AuditCheckpointRec, AuditRec, SledStore, StoreError, decode, records::RECORD_VERSION};

impl SledStore {
    // ----- audit -----

    /// Appends an entry: assigns its seq and previous hash, then asks
    /// `seal` for its hash.
    pub fn append_audit(
        &self,
        mut rec: AuditRec,
        seal: impl Fn(&AuditRec) -> String,
    ) -> Result<AuditRec, StoreError> {
        let held = self.inner()?;
        let _guard = held.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (seq, prev) = match self.inner()?.audit.last()? {
            Some((k, v)) => {
                let last: AuditRec = decode("audit", &k, &v)?;
                (last.seq + 1, last.hash)
            }
            None => (1, String::new()),
        };
        rec.version = RECORD_VERSION;
        rec.seq = seq;
        rec.prev_hash = prev;
        rec.hash = seal(&rec);
        self.inner()?.audit.insert(seq.to_be_bytes(), rec.encode_to_vec())?;
        Ok(rec)
    }

    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError> {
        self.inner()?
            .audit
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode("audit", &k, &v)
            })
            .collect()
    }

    /// The last entry of the chain.
    pub fn audit_head(&self) -> Result<Option<AuditRec>, StoreError> {
        match self.inner()?.audit.last()? {
            Some((k, v)) => Ok(Some(decode("audit", &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Keeps a signed head of the chain (at most one per entry).
    pub fn put_audit_checkpoint(&self, rec: AuditCheckpointRec) -> Result<(), StoreError> {
        self.inner()?.audit_checkpoints.insert(rec.seq.to_be_bytes(), rec.encode_to_vec())?;
        Ok(())
    }

    /// Signed heads of entries `from..=to`, oldest first.
    pub fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError> {
        self.inner()?
            .audit_checkpoints
            .range(from.to_be_bytes()..=to.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                decode("audit_checkpoints", &k, &v)
            })
            .collect()
    }

    /// Overwrites a stored audit entry. Only for tests that prove tampering
    /// is detected.
    #[doc(hidden)]
    pub fn overwrite_audit_for_tests(&self, rec: &AuditRec) -> Result<(), StoreError> {
        self.inner()?.audit.insert(rec.seq.to_be_bytes(), rec.encode_to_vec())?;
        Ok(())
    }
}
