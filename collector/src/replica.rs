//! Running as one of several replicas on one database.
//!
//! * **Singleton work** (correlator, silence watchdog and deadlines,
//!   retention, audit-head signer, scheduled reports, forwarder) runs only
//!   while this process holds the task's lease in the store
//!   ([`run_leases`], [`gated`]). A lease lasts [`LEASE_TTL`] and is
//!   renewed every [`LEASE_RENEW`]; a holder that cannot renew stops the
//!   task [`LEASE_MARGIN`] before its lease may expire. When the holder is
//!   killed, another replica takes the lease within
//!   `LEASE_TTL + LEASE_RENEW` (12 s); a clean shutdown releases the
//!   leases at once. On sled (one process) every lease is granted.
//! * **Revocations and policy pushes** made on another replica reach this
//!   one through [`run_sync`]: every [`SYNC_INTERVAL`] it reads revoked
//!   agents and operators and the newest policy version from the store,
//!   refuses the newly revoked at the handshake, closes their streams and
//!   wakes connected agents' sessions when a newer policy exists. Operator
//!   roles need nothing: every operator call reads the operator's record.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use canhgac_proto::identity::Identity;
use tokio::{sync::watch, time::Instant};

use crate::{registry::StreamRegistry, store::Store, tls::Revoked};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the holder renews (and the others try to take) a lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(2);
/// A holder that could not renew stops its task this long before the
/// lease may expire in the database.
pub const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// How often revocations and policies are read back from the store.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Names of the singleton tasks, one lease each.
pub const SINGLETONS: [&str; 8] =
    ["correlator", "watchdog", "retention", "audit-head", "reports", "forwarder", "mirror", "upstream"];

/// Whether this process holds each singleton lease.
pub struct Held {
    senders: HashMap<&'static str, watch::Sender<bool>>,
}

impl Default for Held {
    fn default() -> Self {
        Held { senders: SINGLETONS.iter().map(|n| (*n, watch::channel(false).0)).collect() }
    }
}

impl Held {
    /// Turns true while this process holds lease `name`.
    pub fn watch(&self, name: &str) -> watch::Receiver<bool> {
        match self.senders.get(name) {
            Some(s) => s.subscribe(),
            // an unknown name is never held
            None => watch::channel(false).1,
        }
    }
}

/// A holder id unique to this process run.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}/{}", host.trim(), std::process::id(), uuid::Uuid::new_v4())
}

/// Takes and renews the singleton leases until shutdown, then releases
/// them; `held` follows what this process holds.
pub async fn run_leases(store: Store, holder: String, held: Arc<Held>, mut shutdown: watch::Receiver<bool>) {
    let mut renewed: HashMap<&'static str, Instant> = HashMap::new();
    loop {
        for name in SINGLETONS {
            let started = Instant::now();
            let (s, h) = (store.clone(), holder.clone());
            let got = tokio::task::spawn_blocking(move || s.acquire_lease(name, &h, LEASE_TTL)).await;
            let Some(tx) = held.senders.get(name) else { continue };
            let was = *tx.borrow();
            match got {
                Ok(Ok(true)) => {
                    renewed.insert(name, started);
                    if !was {
                        tracing::info!(task = name, %holder, "took the lease; running the task here");
                        tx.send_replace(true);
                    }
                }
                Ok(Ok(false)) => {
                    renewed.remove(name);
                    if was {
                        tracing::warn!(task = name, "lease taken by another replica; stopping the task here");
                        tx.send_replace(false);
                    }
                }
                Ok(Err(e)) => lease_error(name, &e.to_string(), &mut renewed, tx),
                Err(e) => lease_error(name, &e.to_string(), &mut renewed, tx),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW) => {}
            _ = crate::registry::until_true(&mut shutdown) => break,
        }
    }
    for tx in held.senders.values() {
        tx.send_replace(false);
    }
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.release_leases(&holder)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the leases; they expire on their own"),
        Err(e) => tracing::warn!(error = %e, "cannot release the leases; they expire on their own"),
    }
}

/// A renewal failed: keep running until the lease may be about to expire.
fn lease_error(
    name: &'static str,
    error: &str,
    renewed: &mut HashMap<&'static str, Instant>,
    tx: &watch::Sender<bool>,
) {
    tracing::warn!(task = name, %error, "cannot renew the lease");
    let fresh = renewed.get(name).is_some_and(|t| t.elapsed() < LEASE_TTL.saturating_sub(LEASE_MARGIN));
    if !fresh && *tx.borrow() {
        tracing::warn!(task = name, "lease may expire; stopping the task here");
        renewed.remove(name);
        tx.send_replace(false);
    }
}

/// Runs `task` while `held` is true: started with a stop signal of its own
/// when the lease is taken, stopped (and awaited) when it is lost, until
/// `shutdown`.
pub async fn gated<F, Fut>(
    name: &'static str,
    mut held: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    mut task: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = crate::registry::until_true(&mut held) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let run = task(stop_rx);
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {
                // the task ended by itself (it does on shutdown)
                return;
            }
            _ = until_false(&mut held) => {
                stop_tx.send_replace(true);
                run.await;
                tracing::info!(task = name, "stopped: lease lost");
            }
            _ = crate::registry::until_true(&mut shutdown) => {
                stop_tx.send_replace(true);
                run.await;
                return;
            }
        }
    }
}

async fn until_false(rx: &mut watch::Receiver<bool>) {
    while *rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            // the keeper is gone: treat as lost
            return;
        }
    }
}

/// What [`run_sync`] updates.
pub struct SyncDeps {
    pub store: Store,
    pub revoked: Arc<Revoked>,
    pub streams: Arc<StreamRegistry>,
    pub policy_changed: Arc<watch::Sender<u64>>,
    pub shutdown: watch::Receiver<bool>,
}

/// Reads back revocations and the newest policy every [`SYNC_INTERVAL`],
/// until shutdown.
pub async fn run_sync(deps: SyncDeps) {
    let mut shutdown = deps.shutdown.clone();
    let deps = Arc::new(deps);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
            _ = crate::registry::until_true(&mut shutdown) => return,
        }
        let d = deps.clone();
        match tokio::task::spawn_blocking(move || sync_once(&d)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read revocations and policies back"),
            Err(e) => tracing::warn!(error = %e, "revocation sync task failed"),
        }
    }
}

fn sync_once(d: &SyncDeps) -> Result<(), crate::store::StoreError> {
    for a in d.store.agents()? {
        if a.revoked_us == 0 {
            continue;
        }
        let id = Identity::Agent(a.agent_id.clone());
        if !d.revoked.contains(&id) {
            d.revoked.insert(id);
            let closed = d.streams.close(&a.agent_id);
            tracing::warn!(agent_id = %a.agent_id, streams_closed = closed, "agent revoked on another replica");
        }
    }
    for o in d.store.operators()? {
        let id = Identity::Operator(o.name.clone());
        if o.revoked_us != 0 && !d.revoked.contains(&id) {
            d.revoked.insert(id);
            tracing::warn!(operator = %o.name, "operator revoked on another replica");
        }
    }
    let newest = d.store.policies()?.iter().map(|p| p.policy_version).max().unwrap_or(0);
    if newest > *d.policy_changed.borrow() {
        tracing::info!(version = newest, "policy pushed on another replica; waking agent sessions");
        d.policy_changed.send_replace(newest);
    }
    Ok(())
}
