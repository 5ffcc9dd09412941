//! Choosing the queue a message goes to.
//!
//! - [`QueueSelector::RoundRobin`]: the next queue of the topic's writable list, skipping
//!   brokers the [`FaultTable`] avoids when fault avoidance is on and `exclude` (the broker that
//!   just failed, on a retry).
//! - [`QueueSelector::KeyHash`]: `abs(java_hash(key) % n)`, like Java's
//!   `SelectMessageQueueByHash` with a String argument, so one key always lands on one queue
//!   (ordered messages). Sharding key = the message's `KEYS` (or the explicit key given).
//! - [`QueueSelector::Custom`]: a function of (queues, message) returning an index.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use super::fault::FaultTable;
use super::message::{java_hash, Message};
use super::queue::MessageQueue;

/// A user-supplied choice: index into `queues` (taken modulo the length).
pub type CustomSelector = Rc<dyn Fn(&[MessageQueue], &Message) -> usize>;

#[derive(Clone)]
pub enum QueueSelector {
    RoundRobin,
    KeyHash,
    Custom(CustomSelector),
}

impl fmt::Debug for QueueSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueSelector::RoundRobin => f.write_str("RoundRobin"),
            QueueSelector::KeyHash => f.write_str("KeyHash"),
            QueueSelector::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Index chosen by hash of `key` among `n` queues (Java `SelectMessageQueueByHash`).
pub fn hash_index(key: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (java_hash(key) % n as i32).unsigned_abs() as usize
}

/// Round-robin position shared by all sends of one producer and topic.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: Cell<usize>,
}

impl RoundRobin {
    pub fn new(start: usize) -> Self {
        RoundRobin {
            next: Cell::new(start),
        }
    }

    /// Next queue; with `faults`, skip avoided brokers (falling back to the least bad one);
    /// never pick `exclude` if another broker exists.
    pub fn pick<'a>(
        &self,
        queues: &'a [MessageQueue],
        faults: Option<(&FaultTable, u64)>,
        exclude: Option<&str>,
    ) -> Option<&'a MessageQueue> {
        let n = queues.len();
        if n == 0 {
            return None;
        }
        let start = self.next.get();
        self.next.set(start.wrapping_add(1));
        let usable = |q: &MessageQueue| exclude != Some(q.broker_name.as_str());
        for i in 0..n {
            let q = &queues[start.wrapping_add(i) % n];
            let available = faults.is_none_or(|(t, now)| t.is_available(&q.broker_name, now));
            if available && usable(q) {
                if i > 0 {
                    self.next.set(start.wrapping_add(i + 1));
                }
                return Some(q);
            }
        }
        // Everything avoided: the least bad broker that is not excluded, else anything.
        if let Some((table, _)) = faults {
            let names = queues
                .iter()
                .filter(|q| usable(q))
                .map(|q| q.broker_name.as_str());
            if let Some(best) = table.least_bad(names) {
                return queues[start % n..]
                    .iter()
                    .chain(queues[..start % n].iter())
                    .find(|q| q.broker_name == best);
            }
        }
        queues
            .iter()
            .cycle()
            .skip(start % n)
            .take(n)
            .find(|q| usable(q))
            .or(Some(&queues[start % n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qs() -> Vec<MessageQueue> {
        let mut v = Vec::new();
        for b in ["a", "b"] {
            for i in 0..2 {
                v.push(MessageQueue::new("T", b, i));
            }
        }
        v
    }

    #[test]
    fn round_robin_cycles() {
        let q = qs();
        let rr = RoundRobin::new(0);
        let got: Vec<_> = (0..5).map(|_| rr.pick(&q, None, None).cloned()).collect();
        assert_eq!(
            got[0]
                .as_ref()
                .map(|q| (q.broker_name.as_str(), q.queue_id)),
            Some(("a", 0))
        );
        assert_eq!(
            got[3]
                .as_ref()
                .map(|q| (q.broker_name.as_str(), q.queue_id)),
            Some(("b", 1))
        );
        assert_eq!(got[4], got[0]);
    }

    #[test]
    fn round_robin_skips_faulty_and_excluded_brokers() {
        let q = qs();
        let rr = RoundRobin::new(0);
        let mut t = FaultTable::new();
        t.update("a", 0, true, 0);
        for _ in 0..4 {
            assert_eq!(
                rr.pick(&q, Some((&t, 1)), None)
                    .map(|q| q.broker_name.as_str()),
                Some("b")
            );
        }
        let rr = RoundRobin::new(0);
        for _ in 0..4 {
            assert_eq!(
                rr.pick(&q, None, Some("a")).map(|q| q.broker_name.as_str()),
                Some("b")
            );
        }
    }

    #[test]
    fn all_avoided_falls_back_to_least_bad() {
        let q = qs();
        let mut t = FaultTable::new();
        t.update("a", 20_000, false, 0);
        t.update("b", 600, false, 0);
        let rr = RoundRobin::new(0);
        assert_eq!(
            rr.pick(&q, Some((&t, 1)), None)
                .map(|q| q.broker_name.as_str()),
            Some("b")
        );
        assert!(rr.pick(&[], None, None).is_none());
    }

    #[test]
    fn hash_index_is_stable_and_matches_java() {
        // "TagA".hashCode() = 2598919; 2598919 % 4 = 3
        assert_eq!(hash_index("TagA", 4), 3);
        // negative hash: "order-1".hashCode() = -1207111310 -> abs of remainder
        let h = java_hash("order-1");
        assert!(h < 0);
        assert_eq!(hash_index("order-1", 7), 6);
        assert_eq!(hash_index("x", 0), 0);
    }
}
