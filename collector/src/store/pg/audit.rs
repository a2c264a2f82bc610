//! The audit chain and the forwarder's queue on PostgreSQL.

use prost::Message as _;

use super::{PgStore, big, counter, exec, lock_counter, opt, rec, rows, set_counter};
use crate::store::{AuditCheckpointRec, AuditRec, ForwardStats, StoreError, records::RECORD_VERSION};

impl PgStore {
    // ----- audit -----

    /// Appends an entry: under the `audit` row lock (one chain, on every
    /// replica), assigns its seq and previous hash, then asks `seal`.
    pub fn append_audit(
        &self,
        mut r: AuditRec,
        seal: impl Fn(&AuditRec) -> String,
    ) -> Result<AuditRec, StoreError> {
        self.tx(|tx| {
            let last = lock_counter(tx, "audit")?;
            let prev = match opt(tx, "SELECT rec FROM audit WHERE seq = $1", &[&big(last)])? {
                Some(row) => rec::<AuditRec>("audit", &row, 0)?.hash,
                None => String::new(),
            };
            r.version = RECORD_VERSION;
            r.seq = last + 1;
            r.prev_hash = prev;
            r.hash = seal(&r);
            exec(tx, "INSERT INTO audit (seq, rec) VALUES ($1, $2)", &[&big(r.seq), &r.encode_to_vec()])?;
            set_counter(tx, "audit", r.seq)?;
            Ok(r)
        })
    }

    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRec>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            rows(c, "SELECT rec FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2", &[&big(after), &limit])?
                .iter()
                .map(|r| rec("audit", r, 0))
                .collect()
        })
    }

    /// The last entry of the chain.
    pub fn audit_head(&self) -> Result<Option<AuditRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM audit ORDER BY seq DESC LIMIT 1", &[])?
                .map(|r| rec("audit", &r, 0))
                .transpose()
        })
    }

    /// Keeps a signed head of the chain (at most one per entry).
    pub fn put_audit_checkpoint(&self, r: AuditCheckpointRec) -> Result<(), StoreError> {
        self.read(|c| {
            exec(
                c,
                "INSERT INTO audit_checkpoints (seq, rec) VALUES ($1, $2)
                 ON CONFLICT (seq) DO UPDATE SET rec = excluded.rec",
                &[&big(r.seq), &r.encode_to_vec()],
            )
        })?;
        Ok(())
    }

    /// Signed heads of entries `from..=to`, oldest first.
    pub fn audit_checkpoints(&self, from: u64, to: u64) -> Result<Vec<AuditCheckpointRec>, StoreError> {
        self.read(|c| {
            rows(
                c,
                "SELECT rec FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
                &[&big(from), &big(to)],
            )?
            .iter()
            .map(|r| rec("audit_checkpoints", r, 0))
            .collect()
        })
    }

    /// Overwrites a stored audit entry. Only for tests that prove tampering
    /// is detected.
    #[doc(hidden)]
    pub fn overwrite_audit_for_tests(&self, r: &AuditRec) -> Result<(), StoreError> {
        self.read(|c| {
            exec(c, "UPDATE audit SET rec = $2 WHERE seq = $1", &[&big(r.seq), &r.encode_to_vec()])
        })?;
        Ok(())
    }

    // ----- forwarder queue -----

    /// Where the forwarder's enqueuer stands; `None` before the first run.
    pub fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.read(|c| {
            Ok(opt(c, "SELECT alert, change FROM forward_positions WHERE id = 1", &[])?
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
        })
    }

    /// Appends messages and moves the enqueuer's positions, then evicts the
    /// oldest messages beyond `max_bytes` (counted), all in one transaction.
    pub fn forward_enqueue(
        &self,
        messages: &[Vec<u8>],
        alert_pos: u64,
        change_pos: u64,
        max_bytes: u64,
    ) -> Result<(), StoreError> {
        self.tx(|tx| {
            let mut seq = lock_counter(tx, "fwd_seq")?;
            let mut bytes = counter(tx, "fwd_bytes")?;
            let (mut seqs, mut msgs) =
                (Vec::with_capacity(messages.len()), Vec::with_capacity(messages.len()));
            for m in messages {
                seq += 1;
                bytes += m.len() as u64;
                seqs.push(big(seq));
                msgs.push(m.as_slice());
            }
            if !seqs.is_empty() {
                exec(
                    tx,
                    "INSERT INTO forward_queue (seq, msg) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                    &[&seqs, &msgs],
                )?;
            }
            set_counter(tx, "fwd_seq", seq)?;
            exec(
                tx,
                "INSERT INTO forward_positions (id, alert, change) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO UPDATE SET alert = excluded.alert, change = excluded.change",
                &[&big(alert_pos), &big(change_pos)],
            )?;
            let mut evicted = Vec::new();
            let mut after = i64::MIN;
            while bytes > max_bytes {
                let page = rows(
                    tx,
                    "SELECT seq, octet_length(msg) FROM forward_queue WHERE seq > $1 ORDER BY seq LIMIT 500",
                    &[&after],
                )?;
                if page.is_empty() {
                    break;
                }
                for r in &page {
                    if bytes <= max_bytes {
                        break;
                    }
                    after = r.get(0);
                    evicted.push(after);
                    bytes = bytes.saturating_sub(r.get::<_, i32>(1) as u64);
                }
            }
            if !evicted.is_empty() {
                exec(tx, "DELETE FROM forward_queue WHERE seq = ANY($1)", &[&evicted])?;
                exec(
                    tx,
                    "UPDATE counters SET value = value + $1 WHERE name = 'fwd_dropped'",
                    &[&(evicted.len() as i64)],
                )?;
            }
            set_counter(tx, "fwd_bytes", bytes)?;
            Ok(())
        })
    }

    /// The oldest queued messages.
    pub fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            Ok(rows(c, "SELECT seq, msg FROM forward_queue ORDER BY seq LIMIT $1", &[&limit])?
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    /// Removes messages (seq, size): delivered, or evicted when `!sent`.
    pub fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError> {
        self.tx(|tx| {
            lock_counter(tx, "fwd_seq")?;
            let seqs: Vec<i64> = done.iter().map(|(s, _)| big(*s)).collect();
            let gone: std::collections::BTreeSet<i64> =
                rows(tx, "DELETE FROM forward_queue WHERE seq = ANY($1) RETURNING seq", &[&seqs])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            let size: u64 = done.iter().filter(|(s, _)| gone.contains(&big(*s))).map(|(_, n)| *n).sum();
            let bytes = counter(tx, "fwd_bytes")?.saturating_sub(size);
            set_counter(tx, "fwd_bytes", bytes)?;
            let name = if sent { "fwd_sent" } else { "fwd_dropped" };
            exec(
                tx,
                "UPDATE counters SET value = value + $2 WHERE name = $1",
                &[&name, &(gone.len() as i64)],
            )?;
            Ok(())
        })
    }

    pub fn forward_stats(&self) -> Result<ForwardStats, StoreError> {
        self.read(|c| {
            Ok(ForwardStats {
                queued: super::one(c, "SELECT count(*) FROM forward_queue", &[])?.get::<_, i64>(0) as u64,
                queued_bytes: counter(c, "fwd_bytes")?,
                sent: counter(c, "fwd_sent")?,
                dropped: counter(c, "fwd_dropped")?,
            })
        })
    }
}
