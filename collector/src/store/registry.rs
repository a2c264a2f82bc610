//! Registry storage: agencies' registry fields, systems and operators.
//! Trees and keys are listed in the parent module.

use prost::Message as _;
use sled::{Transactional as _, transaction::ConflictableTransactionError};

use super::{
    AgencyRec, AgencyStatsRec, OperatorRec, SledStore, StoreError, SystemRec, decode,
    txn::{abort, list, next_in_tx, tx_result},
};

impl SledStore {
    // ----- agencies (registry fields) -----

    /// Applies `f` to an agency (compare-and-swap loop). `Ok(Err(e))` when
    /// `f` refused; `Ok(Ok(None))` when the agency does not exist.
    pub fn update_agency<E>(
        &self,
        code: &str,
        mut f: impl FnMut(&mut AgencyRec) -> Result<(), E>,
    ) -> Result<Result<Option<AgencyRec>, E>, StoreError> {
        let tree = &self.inner()?.agencies;
        loop {
            let Some(old) = tree.get(code.as_bytes())? else {
                return Ok(Ok(None));
            };
            let mut rec: AgencyRec = decode("agencies", code.as_bytes(), &old)?;
            if let Err(e) = f(&mut rec) {
                return Ok(Err(e));
            }
            if tree.compare_and_swap(code.as_bytes(), Some(&old), Some(rec.encode_to_vec()))?.is_ok() {
                return Ok(Ok(Some(rec)));
            }
        }
    }

    /// Stores all agencies (created or replaced) in one transaction.
    pub fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError> {
        let r = self.inner()?.agencies.transaction(|t| {
            for rec in recs {
                t.insert(rec.code.as_bytes(), rec.encode_to_vec())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        tx_result(r)
    }

    pub fn agency_stats(&self, code: &str) -> Result<AgencyStatsRec, StoreError> {
        Ok(match self.inner()?.agency_stats.get(code.as_bytes())? {
            Some(v) => decode("agency_stats", code.as_bytes(), &v)?,
            None => AgencyStatsRec::default(),
        })
    }

    // ----- systems -----

    /// Stores systems in one transaction; those with id 0 get a new id.
    /// Returns the stored records.
    pub fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError> {
        let i = &self.inner()?;
        let r = (&i.systems, &i.counters).transaction(|(systems, counters)| {
            let mut out = Vec::with_capacity(recs.len());
            for rec in &recs {
                let mut rec = rec.clone();
                if rec.id == 0 {
                    rec.id = next_in_tx(counters, "system")?;
                } else if systems.get(rec.id.to_be_bytes())?.is_none() {
                    return Err(abort(StoreError::NotFound(format!("system {}", rec.id))));
                }
                systems.insert(&rec.id.to_be_bytes(), rec.encode_to_vec())?;
                out.push(rec);
            }
            Ok(out)
        });
        tx_result(r)
    }

    pub fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError> {
        let k = id.to_be_bytes();
        self.inner()?.systems.get(k)?.map(|v| decode("systems", &k, &v)).transpose()
    }

    pub fn systems(&self) -> Result<Vec<SystemRec>, StoreError> {
        list("systems", &self.inner()?.systems)
    }

    // ----- operators -----

    pub fn add_operator(&self, rec: OperatorRec) -> Result<OperatorRec, StoreError> {
        let res = self.inner()?.operators.compare_and_swap(
            rec.name.as_bytes(),
            None as Option<&[u8]>,
            Some(rec.encode_to_vec()),
        )?;
        match res {
            Ok(()) => Ok(rec),
            Err(_) => Err(StoreError::AlreadyExists(format!("operator `{}`", rec.name))),
        }
    }

    pub fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError> {
        self.inner()?
            .operators
            .get(name.as_bytes())?
            .map(|v| decode("operators", name.as_bytes(), &v))
            .transpose()
    }

    pub fn operators(&self) -> Result<Vec<OperatorRec>, StoreError> {
        list("operators", &self.inner()?.operators)
    }

    /// Revokes operator `name` unless it is the last valid admin; returns
    /// the record (unchanged when already revoked), `None` when unknown.
    /// Changes an operator record in place (password, language).
    pub fn update_operator(
        &self,
        name: &str,
        f: impl FnOnce(&mut OperatorRec),
    ) -> Result<Option<OperatorRec>, StoreError> {
        let held = self.inner()?;
        let _guard = held.operators_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut rec) = self.operator(name)? else { return Ok(None) };
        f(&mut rec);
        self.inner()?.operators.insert(name.as_bytes(), rec.encode_to_vec())?;
        Ok(Some(rec))
    }

    pub fn revoke_operator(
        &self,
        name: &str,
        now_us: i64,
        by: &str,
        reason: &str,
    ) -> Result<Option<OperatorRec>, StoreError> {
        let held = self.inner()?;
        let _guard = held.operators_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut rec) = self.operator(name)? else { return Ok(None) };
        if rec.revoked_us != 0 {
            return Ok(Some(rec));
        }
        if rec.role == "admin"
            && !self.operators()?.iter().any(|o| o.name != name && o.role == "admin" && o.revoked_us == 0)
        {
            return Err(StoreError::Conflict(format!(
                "operator `{name}` is the last admin; add another admin before revoking it"
            )));
        }
        rec.revoked_us = now_us;
        rec.revoked_by = by.to_string();
        rec.revoke_reason = reason.to_string();
        self.inner()?.operators.insert(name.as_bytes(), rec.encode_to_vec())?;
        Ok(Some(rec))
    }
}
