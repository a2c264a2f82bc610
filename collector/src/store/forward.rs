//! The forwarder's durable queue.

use sled::{Transactional as _, transaction::ConflictableTransactionError};

use super::{SledStore, StoreError, txn::tx_result, u64_of};

/// Totals of the forwarder's durable queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    pub queued: u64,
    pub queued_bytes: u64,
    pub sent: u64,
    /// Evicted (oldest first) at the queue cap.
    pub dropped: u64,
}

impl SledStore {
    // ----- forwarder queue -----

    fn counter(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.inner()?.counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0))
    }

    /// Where the forwarder's enqueuer stands: (alert cursor, incident
    /// change cursor); `None` before the first run.
    pub fn forward_positions(&self) -> Result<Option<(u64, u64)>, StoreError> {
        if self.inner()?.counters.get(b"fwd_alert")?.is_none() {
            return Ok(None);
        }
        Ok(Some((self.counter("fwd_alert")?, self.counter("fwd_change")?)))
    }

    /// Appends messages and moves the enqueuer's positions, atomically;
    /// then evicts the oldest messages beyond `max_bytes` (counted).
    pub fn forward_enqueue(
        &self,
        messages: &[Vec<u8>],
        alert_pos: u64,
        change_pos: u64,
        max_bytes: u64,
    ) -> Result<(), StoreError> {
        let i = &self.inner()?;
        let r = (&i.forward_queue, &i.counters).transaction(|(queue, counters)| {
            let mut seq = counters.get(b"fwd_seq")?.map(|v| u64_of(&v)).unwrap_or(0);
            let mut bytes = counters.get(b"fwd_bytes")?.map(|v| u64_of(&v)).unwrap_or(0);
            for m in messages {
                seq += 1;
                bytes += m.len() as u64;
                queue.insert(&seq.to_be_bytes(), m.as_slice())?;
            }
            counters.insert(b"fwd_seq".as_slice(), &seq.to_be_bytes())?;
            counters.insert(b"fwd_bytes".as_slice(), &bytes.to_be_bytes())?;
            counters.insert(b"fwd_alert".as_slice(), &alert_pos.to_be_bytes())?;
            counters.insert(b"fwd_change".as_slice(), &change_pos.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)?;
        let mut bytes = self.counter("fwd_bytes")?;
        while bytes > max_bytes {
            let Some((k, v)) = i.forward_queue.first()? else { break };
            self.forward_remove(&[(u64_of(&k), v.len() as u64)], false)?;
            bytes = self.counter("fwd_bytes")?;
        }
        Ok(())
    }

    /// The oldest queued messages.
    pub fn forward_peek(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner()?
            .forward_queue
            .iter()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((u64_of(&k), v.to_vec()))
            })
            .collect()
    }

    /// Removes messages (seq, size): delivered, or evicted when `!sent`.
    pub fn forward_remove(&self, done: &[(u64, u64)], sent: bool) -> Result<(), StoreError> {
        let i = &self.inner()?;
        let r = (&i.forward_queue, &i.counters).transaction(|(queue, counters)| {
            let mut bytes = counters.get(b"fwd_bytes")?.map(|v| u64_of(&v)).unwrap_or(0);
            let name: &[u8] = if sent { b"fwd_sent" } else { b"fwd_dropped" };
            let mut n = counters.get(name)?.map(|v| u64_of(&v)).unwrap_or(0);
            for (seq, size) in done {
                if queue.remove(&seq.to_be_bytes())?.is_some() {
                    bytes = bytes.saturating_sub(*size);
                    n += 1;
                }
            }
            counters.insert(b"fwd_bytes".as_slice(), &bytes.to_be_bytes())?;
            counters.insert(name, &n.to_be_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)
    }

    pub fn forward_stats(&self) -> Result<ForwardStats, StoreError> {
        Ok(ForwardStats {
            queued: self.inner()?.forward_queue.len() as u64,
            queued_bytes: self.counter("fwd_bytes")?,
            sent: self.counter("fwd_sent")?,
            dropped: self.counter("fwd_dropped")?,
        })
    }
}
