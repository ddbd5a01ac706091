//! Hold history of pcpu_alloc_mutex: how long each hold the events showed lasted.
//!
//! The engine is the only place that decides when a hold starts and ends (see
//! [`crate::engine::Engine`]'s holder tracking); this is where it writes the result down,
//! for the TUI's sparkline and the metrics' histogram. Durations are lower bounds: the first
//! event that shows a hold comes after the lock was taken.
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Hold durations kept for display.
pub const MAX_RECENT_HOLDS: usize = 256;

/// Upper bounds of the hold-time buckets in nanoseconds: 1 us .. ~4 s in factors of 4.
/// Holds are usually microseconds, but a holder in reclaim can keep the mutex for seconds,
/// which is what an alert wants to see.
pub const HOLD_BUCKETS_NS: [u64; 12] = [
    1_000,
    4_000,
    16_000,
    64_000,
    256_000,
    1_024_000,
    4_096_000,
    16_384_000,
    65_536_000,
    262_144_000,
    1_048_576_000,
    4_194_304_000,
];

/// Completed holds of pcpu_alloc_mutex.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldHistory {
    /// Recent hold durations in nanoseconds, oldest first (at most [`MAX_RECENT_HOLDS`]).
    pub recent_ns: VecDeque<u64>,
    /// Longest hold seen.
    pub max_ns: u64,
    /// Holds completed.
    pub count: u64,
    /// Sum of all hold durations.
    pub sum_ns: u64,
    /// Holds per bucket of [`HOLD_BUCKETS_NS`] (non-cumulative); the last slot counts holds
    /// longer than the last bound.
    pub buckets: [u64; 13],
}

impl HoldHistory {
    /// Writes down one completed hold.
    pub fn push(&mut self, ns: u64) {
        if self.recent_ns.len() == MAX_RECENT_HOLDS {
            self.recent_ns.pop_front();
        }
        self.recent_ns.push_back(ns);
        self.max_ns = self.max_ns.max(ns);
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        let slot = HOLD_BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(HOLD_BUCKETS_NS.len());
        self.buckets[slot] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_hold_once_and_recent_is_bounded() {
        let mut h = HoldHistory::default();
        for ns in [500, 1_000, 1_001, 5_000_000_000] {
            h.push(ns);
        }
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[12], 1);
        assert_eq!(h.count, 4);
        assert_eq!(h.max_ns, 5_000_000_000);
        for _ in 0..1000 {
            h.push(1);
        }
        assert_eq!(h.recent_ns.len(), MAX_RECENT_HOLDS);
    }
}
