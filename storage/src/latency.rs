//! Latency histograms of the store's durability path, kept since the store opened: how long an
//! acknowledgement under `flush = sync` waited for its fdatasync, how long each fdatasync and
//! each write phase of the flusher took. They split a produce latency measured at a client
//! into the part the disk path takes inside the shard and the rest (network, scheduling, the
//! client itself).
//!
//! A histogram is allocated once, when the store opens (HdrHistogram, 2 significant digits,
//! 1 ns to 60 s: about 30 KiB each); recording is an array increment, no allocation.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest value a histogram keeps apart; longer waits are counted at this value.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// One latency distribution in nanoseconds.
pub struct LatencyHistogram {
    h: Histogram<u64>,
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

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        let h = Histogram::new_with_bounds(1, MAX_TRACKED_NS, 2)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { h }
    }

    /// Counts one latency (under 1 ns counts as 1 ns, over 60 s as 60 s).
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.h.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    pub fn summary(&self) -> LatencySummary {
        if self.h.is_empty() {
            return LatencySummary::default();
        }
        let at = |q: f64| self.h.value_at_quantile(q) / 1_000;
        LatencySummary {
            count: self.h.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: self.h.max() / 1_000,
        }
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
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
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
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50_us, 0, "0 ns counts as 1 ns: {s:?}");
        assert!(
            s.max_us.abs_diff(60_000_000) <= 600_000,
            "an hour counts as 60 s: {s:?}"
        );
    }
}
