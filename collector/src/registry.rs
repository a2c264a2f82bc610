//! Open telemetry streams, so that the collector can tell which agents are
//! connected and close an agent's streams when it is revoked.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::watch;

/// Open streams of one agent: (stream id, close signal).
type AgentStreams = Vec<(u64, watch::Sender<bool>)>;

#[derive(Default)]
pub struct StreamRegistry {
    next_id: AtomicU64,
    open: Mutex<HashMap<String, AgentStreams>>,
}

/// Removes the stream from the registry when dropped.
pub struct StreamGuard {
    registry: Arc<StreamRegistry>,
    agent_id: String,
    id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = open.get_mut(&self.agent_id) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                open.remove(&self.agent_id);
            }
        }
    }
}

impl StreamRegistry {
    /// Registers a stream; the receiver turns `true` when it must close.
    pub fn register(self: &Arc<Self>, agent_id: &str) -> (StreamGuard, watch::Receiver<bool>, usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let streams = open.entry(agent_id.to_string()).or_default();
        streams.push((id, tx));
        let concurrent = streams.len();
        (StreamGuard { registry: self.clone(), agent_id: agent_id.to_string(), id }, rx, concurrent)
    }

    /// Asks every stream of `agent_id` to close; returns how many.
    pub fn close(&self, agent_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(agent_id)
            .map(|v| {
                for (_, tx) in v {
                    tx.send_replace(true);
                }
                v.len()
            })
            .unwrap_or(0)
    }

    /// Agents with at least one open stream.
    pub fn connected(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).contains_key(agent_id)
    }
}

/// Resolves once the flag is `true` (or its sender is gone).
pub async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_close_and_drop() {
        let r = Arc::new(StreamRegistry::default());
        let (g1, rx1, n1) = r.register("a");
        let (g2, _rx2, n2) = r.register("a");
        assert_eq!((n1, n2), (1, 2));
        assert!(r.is_connected("a"));
        assert_eq!(r.close("a"), 2);
        assert!(*rx1.borrow());
        drop(g1);
        drop(g2);
        assert!(!r.is_connected("a"));
        assert_eq!(r.close("a"), 0);
    }
}
