//! Latency histograms of the store's durability path, kept since the store opened: how long an
//! acknowledgement under `flush = sync` waited for its fdatasync, how long each fdatasync and
//! each write phase of the flusher took. They split a produce latency measured at a client
//! into the part the disk path takes inside the shard and the rest (network, scheduling, the
//! client itself).
//!
//! Each keeps its since-start distribution and the last whole 10 s window. Its histograms are
//! allocated once, when the store opens (HdrHistogram, 2 significant digits, 1 ns to 60 s:
//! about 30 KiB each, three per distribution); recording is one array increment, no
//! allocation (a status read copies one).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest value a histogram keeps apart; longer waits are counted at this value.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Length of the windows of [`LatencyHistogram::last_window`]: a long-running broker's
/// since-start percentiles say little about the last minute, so the last whole window is kept
/// too.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(10);

/// One latency distribution in nanoseconds, since it was made and over the last whole
/// [`LATENCY_WINDOW`].
pub struct LatencyHistogram {
    /// Every window that has ended (the one in progress is added at read time, so that a
    /// record is one increment).
    ended: Histogram<u64>,
    /// The window in progress, which ends at `current_end`.
    current: Histogram<u64>,
    /// The last whole window before it (empty when no latency ended in it).
    previous: Histogram<u64>,
    /// When the window in progress ends (`None` until the first latency).
    current_end: Option<Instant>,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyHistogram({:?})", self.summary())
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 2).expect("constant histogram bounds are valid")
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            ended: histogram(),
            current: histogram(),
            previous: histogram(),
            current_end: None,
        }
    }

    /// Counts the latency from `start` to `end` (under 1 ns counts as 1 ns, over 60 s as
    /// 60 s), in the window `end` falls in.
    #[inline]
    pub fn record(&mut self, start: Instant, end: Instant) {
        let ns = u64::try_from(end.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let ns = ns.clamp(1, MAX_TRACKED_NS);
        self.rotate(end);
        self.current.saturating_record(ns);
    }

    /// Moves to the window `now` falls in: the one in progress becomes the last whole one
    /// once it has ended (and an empty one when a whole window passed without any latency).
    #[inline]
    fn rotate(&mut self, now: Instant) {
        match self.current_end {
            Some(end) if now < end => {}
            Some(end) => self.next_window(end, now),
            None => self.current_end = Some(now + LATENCY_WINDOW),
        }
    }

    #[cold]
    fn next_window(&mut self, end: Instant, now: Instant) {
        // Whole windows between the end of the one in progress and `now`.
        let skipped = now.saturating_duration_since(end).as_nanos() / LATENCY_WINDOW.as_nanos();
        add(&mut self.ended, &self.current);
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.reset();
        if skipped >= 1 {
            self.previous.reset();
        }
        let whole = u32::try_from(skipped + 1).unwrap_or(u32::MAX);
        self.current_end = end
            .checked_add(LATENCY_WINDOW * whole)
            .or(Some(now + LATENCY_WINDOW));
    }

    /// Percentiles since the histogram was made (allocates a copy: for status reads, not for
    /// the recording path).
    pub fn summary(&self) -> LatencySummary {
        let mut all = self.ended.clone();
        add(&mut all, &self.current);
        summarize(&all)
    }

    /// Percentiles of the last whole [`LATENCY_WINDOW`] before `now` (all zero when nothing
    /// ended in it).
    pub fn last_window(&mut self, now: Instant) -> LatencySummary {
        self.rotate(now);
        summarize(&self.previous)
    }
}

/// Adds `from` into `to` (same bounds by construction, so it cannot fail).
fn add(to: &mut Histogram<u64>, from: &Histogram<u64>) {
    to.add(from)
        .expect("histograms with the same bounds add up");
}

fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let at = |q: f64| h.value_at_quantile(q) / 1_000;
    LatencySummary {
        count: h.len(),
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: h.max() / 1_000,
    }
}

/// Percentiles of a [`LatencyHistogram`] in microseconds (rounded down), within 1 % of the
/// recorded values; all zero when nothing was recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The store's durability-path latencies (see the module docs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreLatency {
    /// Per acknowledgement that had to wait under `flush = sync`: from the wait's start (right
    /// after the append) until the fdatasync covering it was done and the waiting task ran
    /// again. Appends already durable when their wait began are not counted.
    pub sync_wait: LatencySummary,
    /// Per CommitLog fdatasync, from its submission to its completion as the flusher saw it
    /// (io_uring queueing and the kernel's worker included).
    pub fdatasync: LatencySummary,
    /// Per flusher write phase that wrote something: from sealing its chunks until the last
    /// of their writes completed.
    pub write_phase: LatencySummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_microseconds_within_one_percent() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        // 1..=1000 us, one each: p50 500 us, p90 900, p99 990, p99.9 999, max 1000.
        let t0 = Instant::now();
        for us in 1..=1000u64 {
            h.record(t0, t0 + Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        for (got, want) in [
            (s.p50_us, 500),
            (s.p90_us, 900),
            (s.p99_us, 990),
            (s.p999_us, 999),
            (s.max_us, 1000),
        ] {
            assert!(
                got.abs_diff(want) * 100 <= want,
                "{got} us is not within 1 % of {want} us: {s:?}"
            );
        }
    }

    #[test]
    fn values_outside_the_range_are_counted_at_its_ends() {
        let mut h = LatencyHistogram::new();
        let t0 = Instant::now();
        h.record(t0, t0);
        h.record(t0, t0 + Duration::from_secs(3600));
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50_us, 0, "0 ns counts as 1 ns: {s:?}");
        assert!(
            s.max_us.abs_diff(60_000_000) <= 600_000,
            "an hour counts as 60 s: {s:?}"
        );
    }

    #[test]
    fn the_last_window_holds_the_latencies_that_ended_in_it() {
        let mut h = LatencyHistogram::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let ms = Duration::from_millis(1);
        // Window [0 s, 10 s): 1 ms and 2 ms; [10 s, 20 s): 5 ms.
        h.record(at(0), at(0) + ms);
        h.record(at(5), at(5) + 2 * ms);
        assert_eq!(h.last_window(at(9)).count, 0, "no whole window yet");
        h.record(at(11), at(11) + 5 * ms);
        let w = h.last_window(at(12));
        assert_eq!((w.count, w.max_us / 100), (2, 20), "{w:?}");
        let w = h.last_window(at(21));
        assert_eq!((w.count, w.max_us / 100), (1, 50), "{w:?}");
        // Over two windows later nothing ended in the last whole one.
        assert_eq!(h.last_window(at(45)), LatencySummary::default());
        // Since start: all three.
        assert_eq!(h.summary().count, 3);
    }
}
