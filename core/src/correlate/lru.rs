//! A bounded map that evicts its least recently touched entry in O(1).
//!
//! The identity tables are keyed by pids and PASIDs, which any local user can mint by the
//! hundred thousand; a scan for the oldest entry (or a `retain` past a threshold) per event made
//! every event cost tens of microseconds once the tables were full. Entries live in a slab with
//! an intrusive doubly linked recency list, so touch, lookup and eviction are constant time.
use std::hash::Hash;

use rustc_hash::FxHashMap as HashMap;

const NIL: usize = usize::MAX;

struct Slot<K, V> {
    key: K,
    value: V,
    /// Towards the most recently touched entry.
    newer: usize,
    /// Towards the least recently touched entry.
    older: usize,
}

pub struct Lru<K, V> {
    cap: usize,
    index: HashMap<K, usize>,
    slots: Vec<Slot<K, V>>,
    newest: usize,
    oldest: usize,
}

impl<K: Copy + Eq + Hash, V> Lru<K, V> {
    /// A map holding at most `cap` (at least 1) entries.
    pub fn new(cap: usize) -> Self {
        Lru {
            cap: cap.max(1),
            index: HashMap::default(),
            slots: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The value for `key`, without changing its recency.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&i| &self.slots[i].value)
    }

    /// Mutable access without changing recency.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        Some(&mut self.slots[i].value)
    }

    /// Marks `key` most recently used, inserting `make()` when absent. When the map is full the
    /// least recently used entry makes room; it is returned so the caller can count it.
    pub fn touch(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            self.link_newest(i);
            return (&mut self.slots[i].value, None);
        }
        let slot = Slot {
            key,
            value: make(),
            newer: NIL,
            older: NIL,
        };
        let (i, evicted) = if self.slots.len() < self.cap {
            self.slots.push(slot);
            (self.slots.len() - 1, None)
        } else {
            let i = self.oldest;
            self.unlink(i);
            let old = std::mem::replace(&mut self.slots[i], slot);
            self.index.remove(&old.key);
            (i, Some((old.key, old.value)))
        };
        self.index.insert(key, i);
        self.link_newest(i);
        (&mut self.slots[i].value, evicted)
    }

    fn unlink(&mut self, i: usize) {
        let (newer, older) = (self.slots[i].newer, self.slots[i].older);
        match newer {
            NIL => self.newest = older,
            n => self.slots[n].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o].newer = newer,
        }
    }

    fn link_newest(&mut self, i: usize) {
        self.slots[i].newer = NIL;
        self.slots[i].older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n].newer = i,
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a reference model (a Vec in recency order) through random touches.
    #[test]
    fn evicts_the_least_recently_touched_like_a_scan_would() {
        let mut st = 0x2545_f491_4f6c_dd1du64;
        let mut lru: Lru<u32, u64> = Lru::new(8);
        let mut model: Vec<(u32, u64)> = Vec::new();
        for step in 0..50_000u64 {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            let key = (st % 20) as u32;
            let (v, evicted) = lru.touch(key, || step);
            *v += 1;
            let want_evicted = match model.iter().position(|(k, _)| *k == key) {
                Some(p) => {
                    let mut e = model.remove(p);
                    e.1 += 1;
                    model.push(e);
                    None
                }
                None => {
                    let ev = (model.len() == 8).then(|| model.remove(0));
                    model.push((key, step + 1));
                    ev
                }
            };
            assert_eq!(evicted, want_evicted, "step {step}");
            assert_eq!(lru.len(), model.len());
            for (k, v) in &model {
                assert_eq!(lru.get(k), Some(v));
            }
        }
    }
}
