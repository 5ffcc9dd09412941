//! Latency-based fault avoidance for producers (the Java client's `sendLatencyFaultEnable`).
//!
//! After each send the producer reports the broker's latency; a slow or failed broker is kept
//! out of queue selection for a while, by the Java client's table:
//!
//! | latency >= ms | 0 | 50 | 100 | 550 | 1000 | 2000 | 3000 | 15000 |
//! |---|---|---|---|---|---|---|---|---|
//! | not available for ms | 0 | 0 | 0 | 30000 | 60000 | 120000 | 180000 | 600000 |
//!
//! A failed send (isolation) counts as 30000 ms of latency. Pure: the caller passes the clock.

use std::collections::HashMap;

/// (latency threshold ms, not-available duration ms), highest threshold first.
const LATENCY_STEPS_MS: [(u64, u64); 7] = [
    (15_000, 600_000),
    (3_000, 180_000),
    (2_000, 120_000),
    (1_000, 60_000),
    (550, 30_000),
    (100, 0),
    (50, 0),
];

/// Latency charged for a failed send.
pub const ISOLATION_LATENCY_MS: u64 = 30_000;

/// How long a broker with this latency is avoided.
pub fn not_available_ms(latency_ms: u64) -> u64 {
    LATENCY_STEPS_MS
        .iter()
        .find(|(threshold, _)| latency_ms >= *threshold)
        .map_or(0, |(_, duration)| *duration)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FaultItem {
    latency_ms: u64,
    available_at_ms: u64,
}

/// Per broker name: last latency and when it may be used again.
#[derive(Debug, Default, Clone)]
pub struct FaultTable {
    items: HashMap<String, FaultItem>,
}

impl FaultTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a send to `broker` that took `latency_ms` (or failed, when `isolation`).
    pub fn update(&mut self, broker: &str, latency_ms: u64, isolation: bool, now_ms: u64) {
        let latency_ms = if isolation {
            ISOLATION_LATENCY_MS
        } else {
            latency_ms
        };
        let item = FaultItem {
            latency_ms,
            available_at_ms: now_ms + not_available_ms(latency_ms),
        };
        match self.items.get_mut(broker) {
            Some(existing) => *existing = item,
            None => {
                self.items.insert(broker.to_string(), item);
            }
        }
    }

    /// Whether `broker` may be chosen now (unknown brokers are available).
    pub fn is_available(&self, broker: &str, now_ms: u64) -> bool {
        self.items
            .get(broker)
            .is_none_or(|i| now_ms >= i.available_at_ms)
    }

    /// Among `candidates`, the one that becomes available soonest, lowest latency breaking ties
    /// (used when every broker is currently avoided).
    pub fn least_bad<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        candidates.into_iter().min_by_key(|b| {
            self.items
                .get(*b)
                .map_or((0, 0), |i| (i.available_at_ms, i.latency_ms))
        })
    }

    pub fn remove(&mut self, broker: &str) {
        self.items.remove(broker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_java_steps() {
        assert_eq!(not_available_ms(0), 0);
        assert_eq!(not_available_ms(549), 0);
        assert_eq!(not_available_ms(550), 30_000);
        assert_eq!(not_available_ms(1_500), 60_000);
        assert_eq!(not_available_ms(2_000), 120_000);
        assert_eq!(not_available_ms(3_001), 180_000);
        assert_eq!(not_available_ms(20_000), 600_000);
    }

    #[test]
    fn slow_broker_is_avoided_until_its_time_passes() {
        let mut t = FaultTable::new();
        t.update("a", 10, false, 1_000);
        t.update("b", 600, false, 1_000);
        assert!(t.is_available("a", 1_000));
        assert!(!t.is_available("b", 1_000));
        assert!(!t.is_available("b", 30_999));
        assert!(t.is_available("b", 31_000));
        assert!(t.is_available("never-seen", 0));
    }

    #[test]
    fn failure_isolates_for_ten_minutes_and_fast_send_clears_it() {
        let mut t = FaultTable::new();
        t.update("a", 1, true, 0);
        assert!(!t.is_available("a", 599_999));
        assert!(t.is_available("a", 600_000));
        t.update("a", 1, true, 0);
        t.update("a", 3, false, 10);
        assert!(t.is_available("a", 10));
    }

    #[test]
    fn least_bad_prefers_soonest_available() {
        let mut t = FaultTable::new();
        t.update("a", 20_000, false, 0); // 600 s
        t.update("b", 600, false, 0); // 30 s
        assert_eq!(t.least_bad(["a", "b"]), Some("b"));
        assert_eq!(t.least_bad(["a", "b", "c"]), Some("c"));
        assert_eq!(t.least_bad(Vec::<&str>::new()), None);
    }
}
