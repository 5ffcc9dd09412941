//! Parked pulls (long polling), keyed by (topic, queue).
//!
//! A pull that finds no new message and may be suspended waits here until either the store's
//! arrival listener reports a new max offset beyond the pull's offset for that queue, or its own
//! timer expires. Nothing scans: an arrival touches only the parked pulls of its queue, and each
//! parked pull has its own deadline. The number of parked pulls per shard is bounded; when full,
//! pulls are answered at once (the client pulls again).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The queue id of a waiter parked on a whole topic (a POP of queue -1): any arrival to the
/// topic wakes it.
pub const ANY_QUEUE: i32 = -1;

/// Why a parked pull woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A message arrived beyond the pull's offset.
    Arrived,
    /// The hold time passed.
    TimedOut,
}

struct Slot {
    id: u64,
    offset: i64,
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

#[derive(Default)]
struct Inner {
    queues: HashMap<String, HashMap<i32, Vec<Slot>>>,
    parked: usize,
    next_id: u64,
}

/// One shard's registry of parked pulls. Cheap to clone.
#[derive(Clone)]
pub struct LongPollRegistry {
    inner: Rc<RefCell<Inner>>,
    max_parked: usize,
    woken_total: Rc<Cell<u64>>,
    timed_out_total: Rc<Cell<u64>>,
}

/// Counters for runtime info.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongPollStats {
    pub parked: usize,
    pub woken_total: u64,
    pub timed_out_total: u64,
}

impl LongPollRegistry {
    pub fn new(max_parked: usize) -> LongPollRegistry {
        LongPollRegistry {
            inner: Rc::new(RefCell::new(Inner::default())),
            max_parked,
            woken_total: Rc::new(Cell::new(0)),
            timed_out_total: Rc::new(Cell::new(0)),
        }
    }

    pub fn stats(&self) -> LongPollStats {
        LongPollStats {
            parked: self.inner.borrow().parked,
            woken_total: self.woken_total.get(),
            timed_out_total: self.timed_out_total.get(),
        }
    }

    /// Called by the store's arrival listener: `max_offset` is the queue's new max (next offset
    /// to be written). Wakes the parked pulls of that queue whose offset is below it, and the
    /// waiters parked on the whole topic ([`ANY_QUEUE`]).
    pub fn notify_arrival(&self, topic: &str, queue_id: i32, max_offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let Some(queues) = inner.queues.get_mut(topic) else {
            return;
        };
        let mut woken = 0;
        for (q, limit) in [(queue_id, max_offset), (ANY_QUEUE, i64::MAX)] {
            let Some(slots) = queues.get_mut(&q) else {
                continue;
            };
            let before = slots.len();
            slots.retain(|s| {
                if s.offset < limit {
                    s.fired.set(true);
                    if let Some(w) = s.waker.borrow_mut().take() {
                        w.wake();
                    }
                    false
                } else {
                    true
                }
            });
            woken += before - slots.len();
            if slots.is_empty() {
                queues.remove(&q);
            }
            if queue_id == ANY_QUEUE {
                break;
            }
        }
        if queues.is_empty() {
            inner.queues.remove(topic);
        }
        inner.parked -= woken;
        self.woken_total.set(self.woken_total.get() + woken as u64);
    }

    /// Parks a pull of (topic, queue) at `offset` for at most `hold`. Returns `None` when the
    /// registry is full (answer the pull now).
    pub fn park(&self, topic: &str, queue_id: i32, offset: i64, hold: Duration) -> Option<Parked> {
        let mut inner = self.inner.borrow_mut();
        if inner.parked >= self.max_parked {
            return None;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let fired = Rc::new(Cell::new(false));
        let waker = Rc::new(RefCell::new(None));
        inner
            .queues
            .entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_default()
            .push(Slot {
                id,
                offset,
                fired: fired.clone(),
                waker: waker.clone(),
            });
        inner.parked += 1;
        Some(Parked {
            registry: self.clone(),
            topic: topic.to_string(),
            queue_id,
            id,
            fired,
            waker,
            hold,
        })
    }

    fn remove(&self, topic: &str, queue_id: i32, id: u64) {
        let mut inner = self.inner.borrow_mut();
        let Some(q) = inner.queues.get_mut(topic) else {
            return;
        };
        let Some(slots) = q.get_mut(&queue_id) else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| s.id != id);
        let removed = before - slots.len();
        if slots.is_empty() {
            q.remove(&queue_id);
            if q.is_empty() {
                inner.queues.remove(topic);
            }
        }
        inner.parked -= removed;
    }
}

/// A parked pull; [`Parked::wait`] resolves on arrival or timeout. Dropping it unparks it.
pub struct Parked {
    registry: LongPollRegistry,
    topic: String,
    queue_id: i32,
    id: u64,
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
    hold: Duration,
}

struct Arrival {
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Future for Arrival {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.get() {
            return Poll::Ready(());
        }
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Parked {
    pub async fn wait(self) -> Wake {
        let arrival = Arrival {
            fired: self.fired.clone(),
            waker: self.waker.clone(),
        };
        match crate::runtime::timeout(self.hold, arrival).await {
            Some(()) => Wake::Arrived,
            None => {
                let r = &self.registry;
                r.timed_out_total.set(r.timed_out_total.get() + 1);
                Wake::TimedOut
            }
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if !self.fired.get() {
            self.registry.remove(&self.topic, self.queue_id, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{start_executor, ExecutorOptions, Pin as CpuPin};

    fn run<F, T>(f: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        start_executor("lp-test", CpuPin::Unbound, ExecutorOptions::default(), f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn arrival_wakes_only_matching_queue_and_offsets() {
        let out = run(|| async {
            let r = LongPollRegistry::new(10);
            let a = r.park("T", 0, 5, Duration::from_secs(10)).unwrap();
            let b = r.park("T", 1, 5, Duration::from_millis(50)).unwrap();
            let c = r.park("T", 0, 9, Duration::from_millis(50)).unwrap();
            assert_eq!(r.stats().parked, 3);
            // Max offset 5 is not beyond offset 5: nobody wakes.
            r.notify_arrival("T", 0, 5);
            assert_eq!(r.stats().parked, 3);
            r.notify_arrival("T", 0, 6);
            assert_eq!(r.stats().parked, 2);
            let wa = a.wait().await;
            let wb = b.wait().await;
            let wc = c.wait().await;
            (wa, wb, wc, r.stats())
        });
        assert_eq!(out.0, Wake::Arrived);
        assert_eq!(out.1, Wake::TimedOut);
        assert_eq!(out.2, Wake::TimedOut);
        assert_eq!(
            out.3,
            LongPollStats {
                parked: 0,
                woken_total: 1,
                timed_out_total: 2
            }
        );
    }

    #[test]
    fn a_topic_waiter_wakes_on_any_queue() {
        let out = run(|| async {
            let r = LongPollRegistry::new(10);
            let a = r
                .park("T", ANY_QUEUE, i64::MIN, Duration::from_secs(10))
                .unwrap();
            let b = r
                .park("U", ANY_QUEUE, i64::MIN, Duration::from_millis(30))
                .unwrap();
            let c = r.park("T", 3, 9, Duration::from_millis(30)).unwrap();
            r.notify_arrival("T", 3, 2);
            assert_eq!(
                r.stats().parked,
                2,
                "the topic waiter woke, not queue 3's at 9"
            );
            let wa = a.wait().await;
            let wb = b.wait().await;
            let wc = c.wait().await;
            // An explicit wake of the whole topic.
            let d = r
                .park("T", ANY_QUEUE, i64::MIN, Duration::from_secs(10))
                .unwrap();
            r.notify_arrival("T", ANY_QUEUE, i64::MAX);
            let wd = d.wait().await;
            (wa, wb, wc, wd, r.stats().parked)
        });
        assert_eq!(out.0, Wake::Arrived);
        assert_eq!(out.1, Wake::TimedOut);
        assert_eq!(out.2, Wake::TimedOut);
        assert_eq!(out.3, Wake::Arrived);
        assert_eq!(out.4, 0);
    }

    #[test]
    fn registry_is_bounded() {
        let n = run(|| async {
            let r = LongPollRegistry::new(2);
            let a = r.park("T", 0, 0, Duration::from_secs(1));
            let b = r.park("T", 0, 0, Duration::from_secs(1));
            let c = r.park("T", 0, 0, Duration::from_secs(1));
            assert!(a.is_some() && b.is_some());
            assert!(c.is_none());
            drop(a);
            let d = r.park("T", 0, 0, Duration::from_secs(1));
            assert!(d.is_some());
            r.stats().parked
        });
        assert_eq!(n, 2);
    }
}
