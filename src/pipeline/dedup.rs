//! Repeated event ids: a registry resends a notification it got no 2xx
//! answer for, so the same event (same `id`) can reach the pipeline twice
//! (pullstats answered too late, or crashed after committing it). The first
//! occurrence counts; later ones within the window are dropped and counted.
//!
//! The window is event time: an id is remembered while its event is no
//! older than the watermark minus the lateness bound (twice the lateness
//! behind the newest event). Ids are kept as 128-bit BLAKE3 prefixes (a
//! fixed function, so saved states stay valid across releases), in the
//! sessionizer's saved state, so a restarted engine still recognises the
//! events of its last commit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::event::Micros;

/// One remembered id: the event's time and the id's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeenId(pub Micros, pub [u64; 2]);

/// The ids seen within the window.
#[derive(Debug, Default)]
pub struct SeenIds {
    ids: foldhash::HashSet<[u64; 2]>,
    by_time: BinaryHeap<Reverse<SeenId>>,
}

fn hash(id: &str) -> [u64; 2] {
    let digest = blake3::hash(id.as_bytes());
    let b = digest.as_bytes();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    [word(0), word(8)]
}

impl SeenIds {
    pub fn restore(saved: Vec<SeenId>) -> Self {
        let mut s = Self::default();
        for seen in saved {
            if s.ids.insert(seen.1) {
                s.by_time.push(Reverse(seen));
            }
        }
        s
    }

    /// Whether `id` (of an event at `ts`) is seen for the first time; ids
    /// of events before `forget_before` are forgotten first.
    pub fn first_time(&mut self, id: &str, ts: Micros, forget_before: Option<Micros>) -> bool {
        if let Some(limit) = forget_before {
            while let Some(Reverse(SeenId(t, h))) = self.by_time.peek().copied() {
                if t >= limit {
                    break;
                }
                self.by_time.pop();
                self.ids.remove(&h);
            }
        }
        let h = hash(id);
        if !self.ids.insert(h) {
            return false;
        }
        self.by_time.push(Reverse(SeenId(ts, h)));
        true
    }

    /// What to save, oldest first.
    pub fn snapshot(&self) -> Vec<SeenId> {
        let mut v: Vec<SeenId> = self.by_time.iter().map(|Reverse(s)| *s).collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_dropped_until_it_leaves_the_window() {
        let mut s = SeenIds::default();
        assert!(s.first_time("a", 10, None));
        assert!(!s.first_time("a", 10, None));
        assert!(s.first_time("b", 20, Some(5)));
        // "a" (at 10) is forgotten once the window starts after it.
        assert!(s.first_time("c", 30, Some(15)));
        assert_eq!(s.len(), 2);
        assert!(s.first_time("a", 10, Some(15)));
    }

    #[test]
    fn a_saved_window_is_the_same_window() {
        let mut s = SeenIds::default();
        for (i, id) in ["x", "y", "z"].iter().enumerate() {
            assert!(s.first_time(id, i as Micros, None));
        }
        let saved = serde_json::to_string(&s.snapshot()).expect("json");
        let mut r = SeenIds::restore(serde_json::from_str(&saved).expect("back"));
        assert_eq!(r.snapshot(), s.snapshot());
        assert!(!r.first_time("y", 1, None));
        assert!(r.first_time("w", 3, None));
    }
}
