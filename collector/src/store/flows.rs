//! Flow keys of the correlator: which incident each recent flow joined.
//!
//! Every alert of a new flow makes a flow key (`f`, agency, agent, flow
//! id), so that a later alert of the same flow joins the same incident
//! even when its entity key differs. Kept as sled keys they were one
//! insert per alert, most of the correlator's cost (one correlation pass
//! of 2,000 alerts: 2,000 inserts into an ever-growing tree). Here they
//! are a bounded map in memory, by a 128-bit hash of the key, holding the
//! newest [`CAPACITY`] flows; each correlation pass appends what it added
//! as one value to the `flow_keys` tree (`pass number (u64 BE)` → entries of
//! `hash (16 bytes), incident id (u64 BE)`), and opening the store reads
//! the newest passes back. Older passes are deleted as the map forgets
//! them.
//!
//! What this gives up: a flow older than the newest [`CAPACITY`] flows
//! no longer joins by its flow (its entity key still joins it), and a
//! crash between a pass's commit and its append loses that pass's flow
//! keys alike. A flow key never names an incident that was not committed.

use std::collections::{HashMap, VecDeque};

use sha2::Digest as _;

use super::{StoreError, u64_of};

/// Flows remembered: about 50 bytes each in memory.
pub(super) const CAPACITY: usize = 500_000;

/// 128 bits of SHA-256 of a flow key.
pub(super) fn hash(key: &str) -> u128 {
    let d = sha2::Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

pub(super) struct FlowMap {
    /// Incident id, and how many entries of `order` the hash has.
    ids: HashMap<u128, (u64, u32)>,
    /// Hashes in the order they were added (a hash added again appears
    /// twice; the map forgets it when its last entry goes).
    order: VecDeque<u128>,
    /// Stored passes, oldest first, with the number of entries each.
    passes: VecDeque<(u64, usize)>,
    /// Key of the next pass stored.
    next_pass: u64,
    capacity: usize,
}

impl FlowMap {
    /// The map as the newest stored passes give it.
    pub(super) fn load(tree: &sled::Tree, capacity: usize) -> Result<FlowMap, StoreError> {
        let mut newest_first = Vec::new();
        let mut n = 0;
        let mut stale = Vec::new();
        for kv in tree.iter().rev() {
            let (k, v) = kv?;
            if n >= capacity {
                stale.push(k);
                continue;
            }
            n += v.len() / 24;
            newest_first.push((u64_of(&k), v));
        }
        for k in stale {
            tree.remove(k)?;
        }
        let mut map = FlowMap {
            ids: HashMap::new(),
            order: VecDeque::new(),
            passes: VecDeque::new(),
            next_pass: tree.last()?.map_or(1, |(k, _)| u64_of(&k) + 1),
            capacity,
        };
        for (pass, v) in newest_first.into_iter().rev() {
            let entries: Vec<(u128, u64)> = v
                .chunks_exact(24)
                .map(|e| {
                    let mut h = [0u8; 16];
                    h.copy_from_slice(&e[..16]);
                    (u128::from_be_bytes(h), u64_of(&e[16..]))
                })
                .collect();
            map.passes.push_back((pass, entries.len()));
            map.add(&entries);
        }
        Ok(map)
    }

    pub(super) fn get(&self, key: &str) -> Option<u64> {
        self.ids.get(&hash(key)).map(|e| e.0)
    }

    fn add(&mut self, entries: &[(u128, u64)]) {
        for &(h, id) in entries {
            let e = self.ids.entry(h).or_insert((id, 0));
            *e = (id, e.1 + 1);
            self.order.push_back(h);
        }
        while self.order.len() > self.capacity {
            let Some(h) = self.order.pop_front() else { break };
            if let Some(e) = self.ids.get_mut(&h) {
                e.1 -= 1;
                if e.1 == 0 {
                    self.ids.remove(&h);
                }
            }
        }
    }

    /// Adds a committed pass's flow keys and stores them as the next
    /// pass; deletes the stored passes the map no longer holds.
    pub(super) fn append(&mut self, tree: &sled::Tree, entries: &[(u128, u64)]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let pass = self.next_pass;
        self.next_pass += 1;
        let mut v = Vec::with_capacity(entries.len() * 24);
        for (h, id) in entries {
            v.extend_from_slice(&h.to_be_bytes());
            v.extend_from_slice(&id.to_be_bytes());
        }
        tree.insert(pass.to_be_bytes(), v)?;
        self.add(entries);
        self.passes.push_back((pass, entries.len()));
        let mut held: usize = self.passes.iter().map(|p| p.1).sum();
        while let Some(&(old, n)) = self.passes.front() {
            if held - n < self.capacity {
                break;
            }
            tree.remove(old.to_be_bytes())?;
            self.passes.pop_front();
            held -= n;
        }
        Ok(())
    }

    /// After a merge: flows that named one of `from` name `into`.
    pub(super) fn renamed(&mut self, from: &[u64], into: u64) {
        for (id, _) in self.ids.values_mut() {
            if from.contains(id) {
                *id = into;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_kept_newest_first_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let tree = db.open_tree("flow_keys").unwrap();
        let mut m = FlowMap::load(&tree, 4).unwrap();
        let e = |k: &str, id: u64| (hash(k), id);
        m.append(&tree, &[e("f\0a", 1), e("f\0b", 1)]).unwrap();
        m.append(&tree, &[e("f\0c", 2)]).unwrap();
        assert_eq!((m.get("f\0a"), m.get("f\0c"), m.get("f\0x")), (Some(1), Some(2), None));
        m.append(&tree, &[e("f\0d", 3), e("f\0e", 3)]).unwrap();
        // five flows, room for four: the oldest is forgotten; its pass is
        // kept while it holds a flow the newer passes do not replace
        assert_eq!(m.get("f\0a"), None);
        assert_eq!(m.get("f\0b"), Some(1));
        assert_eq!(tree.len(), 3);
        m.append(&tree, &[e("f\0f", 4), e("f\0g", 4)]).unwrap();
        assert_eq!(tree.len(), 2, "passes 1 and 2 deleted: 3 and 4 hold four flows");
        assert_eq!(m.get("f\0b"), None);
        m.renamed(&[3], 9);
        assert_eq!(m.get("f\0d"), Some(9));
        let mut back = FlowMap::load(&tree, 4).unwrap();
        assert_eq!((back.get("f\0d"), back.get("f\0g"), back.get("f\0c")), (Some(3), Some(4), None));
        // numbering goes on after the stored passes: nothing overwritten
        back.append(&tree, &[e("f\0h", 5)]).unwrap();
        assert_eq!(tree.len(), 3);
        let again = FlowMap::load(&tree, 4).unwrap();
        assert_eq!((again.get("f\0g"), again.get("f\0h")), (Some(4), Some(5)));
    }

    #[test]
    fn a_flow_added_again_keeps_its_newest_incident() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
        let tree = db.open_tree("flow_keys").unwrap();
        let mut m = FlowMap::load(&tree, 2).unwrap();
        m.append(&tree, &[(hash("f\0a"), 1)]).unwrap();
        m.append(&tree, &[(hash("f\0b"), 2)]).unwrap();
        m.append(&tree, &[(hash("f\0a"), 3)]).unwrap();
        assert_eq!((m.get("f\0a"), m.get("f\0b")), (Some(3), Some(2)));
    }
}
