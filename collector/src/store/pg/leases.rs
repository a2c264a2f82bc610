//! Leases of singleton work on PostgreSQL: one row per task with its holder
//! and expiry. Expiry is set and compared with the database's clock, so the
//! replicas' clocks do not matter.

use std::time::Duration;

use super::{PgStore, exec};
use crate::store::StoreError;

impl PgStore {
    /// Takes or renews lease `name` for `holder` until `ttl` from now;
    /// `false` when another holder has it and it has not expired.
    pub fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let secs = ttl.as_secs_f64();
        let n = self.read(|c| {
            exec(
                c,
                "INSERT INTO leases (name, holder, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE
                   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                   WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < now()",
                &[&name, &holder, &secs],
            )
        })?;
        Ok(n == 1)
    }

    /// Gives up every lease `holder` has (a clean shutdown), so another
    /// replica takes them at its next try instead of after the expiry.
    pub fn release_leases(&self, holder: &str) -> Result<(), StoreError> {
        self.read(|c| exec(c, "DELETE FROM leases WHERE holder = $1", &[&holder])).map(|_| ())
    }
}
