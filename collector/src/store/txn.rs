//! Helpers for sled transactions shared by the store's modules.

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{StoreError, decode, u64_of};

pub(super) fn abort<E>(e: E) -> ConflictableTransactionError<E> {
    ConflictableTransactionError::Abort(e)
}

pub(super) fn tx_result<T, E: From<StoreError>>(r: Result<T, TransactionError<E>>) -> Result<T, E> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::from(e).into()),
    }
}

/// Next value of a named counter inside a transaction.
pub(super) fn next_in_tx(
    counters: &TransactionalTree,
    name: &str,
) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let n = counters.get(name.as_bytes())?.map(|v| u64_of(&v)).unwrap_or(0) + 1;
    counters.insert(name.as_bytes(), &n.to_be_bytes())?;
    Ok(n)
}

pub(super) fn list<M: prost::Message + Default>(
    tree: &'static str,
    t: &sled::Tree,
) -> Result<Vec<M>, StoreError> {
    t.iter()
        .map(|kv| {
            let (k, v) = kv?;
            decode(tree, &k, &v)
        })
        .collect()
}
