//! Central policy versions.

use prost::Message as _;
use sled::Transactional as _;

use super::{
    PolicyRec, SledStore, StoreError, decode,
    txn::{list, next_in_tx, tx_result},
};

impl SledStore {
    // ----- policies -----

    /// Stores a new policy version for `scope` (agency code or `*`).
    pub fn add_policy(&self, mut rec: PolicyRec) -> Result<PolicyRec, StoreError> {
        let i = &self.inner()?;
        let r = (&i.policies, &i.counters).transaction(|(policies, counters)| {
            let mut rec = rec.clone();
            rec.policy_version = next_in_tx(counters, "policy")?;
            policies.insert(&rec.policy_version.to_be_bytes(), rec.encode_to_vec())?;
            Ok(rec)
        });
        rec = tx_result(r)?;
        Ok(rec)
    }

    /// All policy versions, newest first.
    pub fn policies(&self) -> Result<Vec<PolicyRec>, StoreError> {
        let mut v: Vec<PolicyRec> = list("policies", &self.inner()?.policies)?;
        v.reverse();
        Ok(v)
    }

    /// The policy agents of `agency` must run: the newest pushed to the
    /// agency or to all agencies.
    pub fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError> {
        for kv in self.inner()?.policies.iter().rev() {
            let (k, v) = kv?;
            let rec: PolicyRec = decode("policies", &k, &v)?;
            if rec.scope == "*" || rec.scope == agency {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }
}
