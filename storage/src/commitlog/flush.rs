//! Group-commit plumbing, runtime-independent: a watermark of the durable CommitLog offset with
//! its waiters, and the signal that wakes the flusher.
//!
//! Group commit falls out of the shape: appenders park on the watermark; the single flusher task
//! takes everything appended so far, writes it, issues ONE fdatasync, raises the watermark and
//! wakes every waiter it covers. Appends that arrive meanwhile park again and ride the next
//! flush. Waiters are kept in offset order and only those the new watermark covers are woken
//! (appends that arrived after the flush sealed its data are not covered; waking them too
//! would only re-poll them so that they park again). A failed flush or shutdown wakes all.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::latency::{LatencyHistogram, LatencySummary};

/// Why a wait for durability ended without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFailure {
    /// A flush failed after the wait started; the data is still in memory.
    FlushFailed { no_space: bool, reason: String },
    /// The store shut down before the offset became durable.
    ShutDown,
}

/// The durable offset and the tasks waiting for it.
#[derive(Debug, Default)]
pub struct DurableWatch {
    durable: Cell<u64>,
    /// Bumped on every failed flush, so that waiters that started before it fail too.
    failures: Cell<u64>,
    last_failure: RefCell<Option<(bool, String)>>,
    closed: Cell<bool>,
    /// Parked waits with the offset each needs, in ascending offset order.
    waiters: RefCell<VecDeque<(u64, Waker)>>,
    /// How long the waits that parked took until they resolved durable.
    waits: RefCell<LatencyHistogram>,
}

impl DurableWatch {
    pub fn new(durable: u64) -> DurableWatch {
        DurableWatch {
            durable: Cell::new(durable),
            ..DurableWatch::default()
        }
    }

    /// CommitLog offset below which everything is on disk (fdatasync'ed).
    pub fn durable(&self) -> u64 {
        self.durable.get()
    }

    /// Raises the watermark, clears a recorded failure and wakes the waiters it covers.
    pub fn advance(&self, to: u64) {
        let had_failure = self.last_failure.borrow_mut().take().is_some();
        if had_failure {
            if to > self.durable.get() {
                self.durable.set(to);
            }
            self.wake_all();
            return;
        }
        self.raise(to);
    }

    /// Raises the watermark and wakes the waiters it covers, leaving a recorded failure in
    /// place: data made durable by a sync of earlier writes, while a later write that failed
    /// still waits for its retry.
    pub fn raise(&self, to: u64) {
        if to > self.durable.get() {
            self.durable.set(to);
        }
        let durable = self.durable.get();
        loop {
            // Pop one at a time and wake outside the borrow (a waker may run code that waits).
            let next = {
                let mut ws = self.waiters.borrow_mut();
                match ws.front() {
                    Some((end, _)) if *end <= durable => ws.pop_front(),
                    _ => None,
                }
            };
            match next {
                Some((_, w)) => w.wake(),
                None => break,
            }
        }
    }

    /// Records a failed flush and wakes the waiters, which fail.
    pub fn fail(&self, no_space: bool, reason: String) {
        self.failures.set(self.failures.get() + 1);
        *self.last_failure.borrow_mut() = Some((no_space, reason));
        self.wake_all();
    }

    /// Whether the last flush failed (cheap: no clone of the reason).
    #[inline]
    pub fn has_failure(&self) -> bool {
        self.last_failure.borrow().is_some()
    }

    /// The failure of the last flush, if it failed: `(no_space, reason)`.
    pub fn current_failure(&self) -> Option<(bool, String)> {
        self.last_failure.borrow().clone()
    }

    /// Ends every wait (shutdown).
    pub fn close(&self) {
        self.closed.set(true);
        self.wake_all();
    }

    pub fn waiter_count(&self) -> usize {
        self.waiters.borrow().len()
    }

    /// Latencies of the waits that parked and ended durable, since the watch was made.
    pub fn wait_latency(&self) -> LatencySummary {
        self.waits.borrow().summary()
    }

    /// The same over the last whole [`crate::latency::LATENCY_WINDOW`] before `now`.
    pub fn wait_latency_last_window(&self, now: Instant) -> LatencySummary {
        self.waits.borrow_mut().last_window(now)
    }

    fn wake_all(&self) {
        // Taking the queue and giving it back keeps its capacity: no allocation per flush
        // once the waiter count has peaked.
        let mut ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in ws.drain(..) {
            w.wake();
        }
        let mut cur = self.waiters.borrow_mut();
        if cur.is_empty() {
            *cur = ws;
        }
    }

    /// Parks `waker` until the watermark reaches `end`. Appenders wait in append order, so
    /// this is a push at the back; an out-of-order wait is inserted at its place.
    fn park(&self, end: u64, waker: &Waker) {
        let mut ws = self.waiters.borrow_mut();
        if ws.back().is_none_or(|(e, _)| *e <= end) {
            ws.push_back((end, waker.clone()));
        } else {
            let at = ws.partition_point(|(e, _)| *e <= end);
            ws.insert(at, (end, waker.clone()));
        }
    }

    /// Resolves once `end` is durable, or fails if a flush fails or the store closes first.
    pub fn wait(&self, end: u64) -> WaitDurable<'_> {
        WaitDurable {
            watch: self,
            end,
            failures_at_start: self.failures.get(),
            parked_at: None,
        }
    }
}

/// Future of [`DurableWatch::wait`].
pub struct WaitDurable<'a> {
    watch: &'a DurableWatch,
    end: u64,
    failures_at_start: u64,
    /// When the wait first parked (one clock read per parked wait: vDSO, no syscall).
    parked_at: Option<Instant>,
}

impl Future for WaitDurable<'_> {
    type Output = Result<(), WaitFailure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let w = self.watch;
        if w.durable.get() >= self.end {
            if let Some(t) = self.parked_at {
                w.waits.borrow_mut().record(t, Instant::now());
            }
            return Poll::Ready(Ok(()));
        }
        if w.failures.get() != self.failures_at_start {
            let (no_space, reason) = w
                .last_failure
                .borrow()
                .clone()
                .unwrap_or((false, "flush failed".to_string()));
            return Poll::Ready(Err(WaitFailure::FlushFailed { no_space, reason }));
        }
        if w.closed.get() {
            return Poll::Ready(Err(WaitFailure::ShutDown));
        }
        if self.parked_at.is_none() {
            self.parked_at = Some(Instant::now());
        }
        w.park(self.end, cx.waker());
        Poll::Pending
    }
}

/// Wakes the flusher: a flag plus the flusher's parked waker.
#[derive(Debug, Default)]
pub struct FlushSignal {
    raised: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl FlushSignal {
    /// Asks the flusher to run. Cheap when already raised (the hot path calls it per append in
    /// sync mode).
    #[inline]
    pub fn raise(&self) {
        if self.raised.replace(true) {
            return;
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves when raised, clearing the flag.
    pub fn wait(&self) -> SignalWait<'_> {
        SignalWait { signal: self }
    }
}

/// Future of [`FlushSignal::wait`].
pub struct SignalWait<'a> {
    signal: &'a FlushSignal,
}

impl Future for SignalWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = self.signal.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Parks until there is room for appends again (back-pressure), woken by the flusher after
/// each written chunk.
#[derive(Debug, Default)]
pub struct RoomWatch {
    waiters: RefCell<Vec<Waker>>,
}

impl RoomWatch {
    pub fn wake_all(&self) {
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }

    pub fn register(&self, waker: &Waker) {
        self.waiters.borrow_mut().push(waker.clone());
    }
}
