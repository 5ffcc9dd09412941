//! Read coalescing (`broker.read_coalesce_us`): a connection whose requests arrive faster than
//! one per period is read once per period of a shard-wide tick instead of once per arrival.
//!
//! Why: every time glommio's executor wakes up for a socket it re-arms its preemption timers and
//! flushes its rings, about three `io_uring_enter` calls per loop iteration before any request
//! is handled. Under an open-loop load of single-message requests each arrival is one
//! iteration: at 87k requests/s of 100 B (one producer connection, `flush = async`) the shard
//! made 255k `io_uring_enter` calls per second, 2.9 per request, and its core was 93-96 % busy,
//! where a plain blocking thread-per-connection server on the same 2-vCPU guest answered the
//! same load at 63 %. The requests were not the work; the wake-ups were
//! (perf/results/session16-2026-12-05.md).
//!
//! How: when the bytes of one read held two or more requests (they queued up while the shard
//! was busy) and the read did not fill its buffer, the connection is *hot*: once it has handled
//! them, it waits for the next tick and then reads the socket directly (non-blocking `recv`):
//! everything that arrived meanwhile comes in one read and its answers leave in one write. A
//! read that fills the buffer is followed by another at once (more is waiting), and a tick
//! read that finds nothing puts the connection back on glommio's readiness wait. So one
//! request at a time (ping-pong) never waits for a tick, and a quiet connection costs one empty
//! `recv`. All hot connections of a shard share one timer: the tick task sleeps only while some
//! connection waits for it.
//!
//! Cost: a request on a hot connection waits up to one period (half on average) before it is
//! read. Measured on the 2-vCPU guest at 87k msg/s of 100 B, broker on CPU 0, alternating
//! runs: shard 95 % busy without, 40 % with 50 us; p99 1.0 / 1.4 -> 0.57 / 0.80 ms; p50 0.025 ->
//! 0.068 ms (25 us: 52 % busy, p50 0.054 ms).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::runtime;

/// Largest accepted `broker.read_coalesce_us`: a longer wait is latency no load needs.
pub const MAX_READ_COALESCE_US: u64 = 10_000;

/// Connections waiting for a tick beyond which the waiter list grows (it never shrinks, so a
/// shard allocates only when it sees more hot connections at once than ever before).
const INITIAL_WAITERS: usize = 64;

/// A shard's read tick. See the module docs.
pub struct ReadCoalescer {
    period: Duration,
    /// Ticks so far; a waiter is done once this moved past the value it started with.
    epoch: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    /// The waiters of the tick being delivered (swapped with `waiters`, so that delivering
    /// allocates nothing).
    delivering: RefCell<Vec<Waker>>,
    /// The tick task, while it sleeps because nobody waits.
    idle: RefCell<Option<Waker>>,
    /// Reads made after a tick that found data.
    coalesced_reads: Cell<u64>,
}

impl ReadCoalescer {
    /// A coalescer with the given period (must be > 0). Spawn [`ReadCoalescer::run`] on the
    /// shard for its ticks.
    pub fn new(period: Duration) -> Rc<ReadCoalescer> {
        assert!(!period.is_zero(), "a read coalescer needs a period");
        Rc::new(ReadCoalescer {
            period,
            epoch: Cell::new(0),
            waiters: RefCell::new(Vec::with_capacity(INITIAL_WAITERS)),
            delivering: RefCell::new(Vec::with_capacity(INITIAL_WAITERS)),
            idle: RefCell::new(None),
            coalesced_reads: Cell::new(0),
        })
    }

    /// Ticks delivered so far.
    pub fn ticks(&self) -> u64 {
        self.epoch.get()
    }

    /// Reads made after a tick that found data (runtime info `ramjet.coalescedReads`).
    pub fn coalesced_reads(&self) -> u64 {
        self.coalesced_reads.get()
    }

    pub(crate) fn count_coalesced_read(&self) {
        self.coalesced_reads.set(self.coalesced_reads.get() + 1);
    }

    /// Resolves at the next tick.
    pub fn next_tick(&self) -> NextTick<'_> {
        NextTick {
            coalescer: self,
            epoch: self.epoch.get(),
            registered: false,
        }
    }

    /// The tick task: sleeps while nobody waits; otherwise one period, then wakes every waiter.
    pub async fn run(self: Rc<Self>) {
        loop {
            Demand { coalescer: &self }.await;
            runtime::sleep(self.period).await;
            self.epoch.set(self.epoch.get() + 1);
            std::mem::swap(
                &mut *self.waiters.borrow_mut(),
                &mut *self.delivering.borrow_mut(),
            );
            let mut now = self.delivering.borrow_mut();
            for w in now.drain(..) {
                w.wake();
            }
        }
    }
}

/// Future of [`ReadCoalescer::next_tick`].
pub struct NextTick<'a> {
    coalescer: &'a ReadCoalescer,
    epoch: u64,
    registered: bool,
}

impl Future for NextTick<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let c = self.coalescer;
        if c.epoch.get() != self.epoch {
            return Poll::Ready(());
        }
        if !self.registered {
            c.waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
            if let Some(w) = c.idle.borrow_mut().take() {
                w.wake();
            }
        }
        Poll::Pending
    }
}

/// Ready once some connection waits for a tick.
struct Demand<'a> {
    coalescer: &'a ReadCoalescer,
}

impl Future for Demand<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let c = self.coalescer;
        if !c.waiters.borrow().is_empty() {
            return Poll::Ready(());
        }
        *c.idle.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{spawn_task, start_executor, ExecutorOptions, Pin as CpuPin};
    use std::time::Instant;

    /// Waiters registered within one period are woken together by one tick, not before it; the
    /// tick task sleeps while nobody waits (no ticks counted while idle).
    #[test]
    fn waiters_of_one_period_share_one_tick_and_idle_costs_no_ticks() {
        let t = start_executor(
            "coalesce-test",
            CpuPin::Unbound,
            ExecutorOptions::default(),
            || async {
                let period = Duration::from_millis(20);
                let c = ReadCoalescer::new(period);
                let ticker = spawn_task(c.clone().run());
                let start = Instant::now();
                let mut tasks = Vec::new();
                for _ in 0..5 {
                    let c = c.clone();
                    tasks.push(spawn_task(async move {
                        c.next_tick().await;
                        (Instant::now(), c.ticks())
                    }));
                }
                let mut woke = Vec::new();
                for t in tasks {
                    woke.push(t.await.expect("waiter"));
                }
                let ticks_after_first = c.ticks();
                // Idle for five periods: the tick task must not tick.
                runtime::sleep(period * 5).await;
                let ticks_idle = c.ticks();
                // A second wait gets the next tick.
                c.next_tick().await;
                let ticks_after_second = c.ticks();
                ticker.cancel();
                (
                    start,
                    woke,
                    ticks_after_first,
                    ticks_idle,
                    ticks_after_second,
                )
            },
        )
        .expect("executor");
        let (start, woke, first, idle, second) = t.join().expect("join");
        assert_eq!(first, 1, "five waiters of one period share one tick");
        assert_eq!(idle, 1, "no tick while nobody waits");
        assert_eq!(second, 2);
        for (at, tick) in &woke {
            let waited = at.duration_since(start);
            assert!(
                waited >= Duration::from_millis(20),
                "woken before the period ended: {waited:?}"
            );
            assert_eq!(*tick, 1, "every waiter woke at the first tick");
        }
    }
}
