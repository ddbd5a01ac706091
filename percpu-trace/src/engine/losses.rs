//! What was lost on the way from the kernel, by reason, and the one definition of "events
//! lost": every reason except those that lose only detail (a stack), not an event.
//!
//! The pipeline counts (kernel drop counters, undecodable records, a slow consumer); the
//! engine keeps the latest cumulative totals it was given ([`crate::engine::Engine::set_losses`],
//! or a recording's `drops` records on replay) and everything that shows losses reads them
//! from [`crate::engine::EngineState::losses`].
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Loss reasons that lose detail (a kernel stack), not events.
pub const DETAIL_ONLY: &[&str] = &["stack", "stack_read"];

/// Cumulative loss counters by reason (`ringbuf_full`, `stack`, `task_map_full`,
/// `undecodable`, `stack_read`, `consumer_full`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossTotals {
    /// Totals by reason name.
    pub by_reason: BTreeMap<String, u64>,
}

impl LossTotals {
    /// Events lost: every reason except [`DETAIL_ONLY`].
    pub fn events_lost(&self) -> u64 {
        self.by_reason
            .iter()
            .filter(|(k, _)| !DETAIL_ONLY.contains(&k.as_str()))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Stacks that could not be taken or read (the events themselves arrived).
    pub fn detail_lost(&self) -> u64 {
        self.by_reason
            .iter()
            .filter(|(k, _)| DETAIL_ONLY.contains(&k.as_str()))
            .map(|(_, v)| *v)
            .sum()
    }

    /// What was lost, as perf says it: "N events lost (reason: count, ...)", then the
    /// stacks lost the same way when any were; "no events lost" when none.
    pub fn describe(&self) -> String {
        let part = |n: u64, what: &str, detail: bool| {
            let reasons: Vec<String> = self
                .by_reason
                .iter()
                .filter(|(k, v)| **v > 0 && DETAIL_ONLY.contains(&k.as_str()) == detail)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            format!("{n} {what} lost ({})", reasons.join(", "))
        };
        let events = self.events_lost();
        let mut s = if events == 0 {
            "no events lost".to_string()
        } else {
            part(events, "events", false)
        };
        let stacks = self.detail_lost();
        if stacks > 0 {
            s.push_str(", ");
            s.push_str(&part(stacks, "stacks", true));
        }
        s
    }

    /// Nothing lost at all.
    pub fn is_clean(&self) -> bool {
        self.by_reason.values().all(|&v| v == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_losses_are_detail_not_events() {
        let l = LossTotals {
            by_reason: [
                ("ringbuf_full".to_string(), 3),
                ("stack".to_string(), 5),
                ("stack_read".to_string(), 1),
                ("consumer_full".to_string(), 2),
            ]
            .into(),
        };
        assert_eq!(l.events_lost(), 5);
        assert_eq!(l.detail_lost(), 6);
        assert!(!l.is_clean());
        assert_eq!(
            l.describe(),
            "5 events lost (consumer_full: 2, ringbuf_full: 3), 6 stacks lost (stack: 5, stack_read: 1)"
        );
        let none = LossTotals {
            by_reason: [("ringbuf_full".to_string(), 0)].into(),
        };
        assert_eq!(none.describe(), "no events lost");
    }
}
