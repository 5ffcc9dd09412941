//! Latency histograms and the numbers ramjet-bench prints and writes.
//!
//! Latencies are recorded in microseconds into an HDR histogram (3 significant digits, values up
//! to [`MAX_LATENCY_US`]; larger values are clamped to it and counted in `clamped`). Workers keep
//! their own histograms and hand interval copies to the reporter once a second, so recording is a
//! plain local increment: no lock, no allocation.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency the histograms hold: 10 minutes.
pub const MAX_LATENCY_US: u64 = 600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds plus the counters reported beside it.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub hist: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub clamped: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        // 1 us .. 10 min at 3 digits is a valid configuration: this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|_| Histogram::new(SIGNIFICANT_DIGITS).expect("3 digits is valid"));
        Recorder {
            hist,
            messages: 0,
            bytes: 0,
            errors: 0,
            clamped: 0,
        }
    }

    /// One completed request carrying `messages` messages of `bytes` bytes.
    pub fn record(&mut self, latency_us: u64, messages: u64, bytes: u64) {
        let v = latency_us.clamp(1, MAX_LATENCY_US);
        if v != latency_us.max(1) {
            self.clamped += 1;
        }
        // v is within bounds, so recording cannot fail.
        let _ = self.hist.record(v);
        self.messages += messages;
        self.bytes += bytes;
    }

    pub fn record_error(&mut self) {
        self.errors += 1;
    }

    pub fn add(&mut self, other: &Recorder) {
        // Same bounds on both sides: add cannot fail.
        let _ = self.hist.add(&other.hist);
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.clamped += other.clamped;
    }

    /// Empties the recorder, keeping its memory (the histogram's counts are zeroed in place).
    pub fn clear(&mut self) {
        self.hist.reset();
        self.messages = 0;
        self.bytes = 0;
        self.errors = 0;
        self.clamped = 0;
    }

    /// Nothing recorded (no request, no error).
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty() && self.messages == 0 && self.errors == 0
    }

    /// Hands what was recorded since the last call to `out` and starts over, by swapping the
    /// two: no allocation and no copy on the recording thread. `out` must be empty (a recorder
    /// the reporter cleared and gave back). A worker did `clone` + `reset` here once a
    /// second: allocating and copying three ~250 KiB histograms took 1.3-3.3 ms inside the
    /// generator's send loop, a stall in every second of every run.
    pub fn swap_into(&mut self, out: &mut Recorder) {
        debug_assert!(out.is_empty(), "swap_into needs an empty recorder");
        std::mem::swap(self, out);
    }

    pub fn percentile_us(&self, p: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(p / 100.0)
        }
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.hist.len(),
            mean_us: if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean()
            },
            p50_us: self.percentile_us(50.0),
            p90_us: self.percentile_us(90.0),
            p99_us: self.percentile_us(99.0),
            p999_us: self.percentile_us(99.9),
            p9999_us: self.percentile_us(99.99),
            max_us: if self.hist.is_empty() {
                0
            } else {
                self.hist.max()
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

/// The final report of one run (also the `--json` file).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: String,
    pub open_loop: bool,
    pub target_rate_per_s: Option<f64>,
    pub duration_s: f64,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latencies_clamped: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency: LatencySummary,
}

impl Report {
    pub fn new(mode: &str, rate: Option<f64>, duration_s: f64, rec: &Recorder) -> Report {
        let secs = duration_s.max(1e-9);
        Report {
            mode: mode.to_string(),
            open_loop: rate.is_some(),
            target_rate_per_s: rate,
            duration_s,
            messages: rec.messages,
            bytes: rec.bytes,
            errors: rec.errors,
            latencies_clamped: rec.clamped,
            msgs_per_s: rec.messages as f64 / secs,
            mb_per_s: rec.bytes as f64 / secs / 1_000_000.0,
            latency: rec.summary(),
        }
    }

    /// Human-readable multi-line report.
    pub fn render(&self) -> String {
        let l = &self.latency;
        let ms = |us: u64| us as f64 / 1000.0;
        let mut s = String::new();
        let loop_kind = match (self.mode.as_str(), self.target_rate_per_s) {
            ("consume", _) => {
                "latency = arrival minus the producer's stamp (message age)".to_string()
            }
            ("pingpong", _) => "one message at a time, latency = send to consume".to_string(),
            (_, Some(r)) => format!("open loop at {r:.0} msg/s (latency from intended send time)"),
            (_, None) => "closed loop, max throughput (latency from actual send time)".to_string(),
        };
        let _ = writeln!(s, "== ramjet-bench {}: {}", self.mode, loop_kind);
        let _ = writeln!(
            s,
            "duration {:.2} s, messages {}, errors {}, throughput {:.0} msg/s, {:.2} MB/s",
            self.duration_s, self.messages, self.errors, self.msgs_per_s, self.mb_per_s
        );
        let _ = writeln!(
            s,
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}  (mean {:.3}, {} samples)",
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.p9999_us),
            ms(l.max_us),
            l.mean_us / 1000.0,
            l.count
        );
        if self.latencies_clamped > 0 {
            let _ = writeln!(
                s,
                "warning: {} latencies above {} s were clamped",
                self.latencies_clamped,
                MAX_LATENCY_US / 1_000_000
            );
        }
        s
    }
}

/// The open-loop generator's own lateness (actual minus intended send time), one line.
pub fn lag_line(l: &LatencySummary) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "generator send lag ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (late sends are counted in the latencies above)",
        ms(l.p50_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us)
    )
}

/// One live progress line for an interval of `secs` seconds.
pub fn progress_line(elapsed_s: f64, interval: &Recorder, secs: f64) -> String {
    let secs = secs.max(1e-9);
    format!(
        "[{:>6.1}s] {:>10.0} msg/s {:>9.2} MB/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  errors {}",
        elapsed_s,
        interval.messages as f64 / secs,
        interval.bytes as f64 / secs / 1_000_000.0,
        interval.percentile_us(50.0) as f64 / 1000.0,
        interval.percentile_us(99.0) as f64 / 1000.0,
        if interval.hist.is_empty() { 0.0 } else { interval.hist.max() as f64 / 1000.0 },
        interval.errors
    )
}

/// HdrHistogram's classic percentile-distribution text (values in milliseconds), readable by
/// the HdrHistogram plotter.
pub fn hgrm(rec: &Recorder) -> String {
    let h = &rec.hist;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if h.is_empty() {
        return s;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value_ms = v.value_iterated_to() as f64 / 1000.0;
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                value_ms,
                q,
                total,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(s, "{:>12.3} {:>2.12} {:>10}", value_ms, q, total);
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_known_distribution() {
        let mut r = Recorder::new();
        for v in 1..=1000u64 {
            r.record(v * 1000, 1, 100); // 1 ms .. 1000 ms
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1 %
        let near =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(s.p50_us, 500_000), "{}", s.p50_us);
        assert!(near(s.p90_us, 900_000), "{}", s.p90_us);
        assert!(near(s.p99_us, 990_000), "{}", s.p99_us);
        assert!(near(s.max_us, 1_000_000), "{}", s.max_us);
        assert_eq!(r.messages, 1000);
        assert_eq!(r.bytes, 100_000);
    }

    #[test]
    fn swap_into_hands_over_and_add_merges() {
        let mut a = Recorder::new();
        a.record(10, 1, 1);
        a.record_error();
        let mut t = Recorder::new();
        assert!(t.is_empty());
        a.swap_into(&mut t);
        assert_eq!((t.messages, t.errors, t.hist.len()), (1, 1, 1));
        assert_eq!((a.messages, a.errors, a.hist.len()), (0, 0, 0));
        assert!(a.is_empty());
        // Cleared, the handed-over recorder can be given back for the next interval.
        let mut back = t.clone();
        back.clear();
        assert!(back.is_empty());
        assert_eq!(back.hist.len(), 0);
        let mut total = Recorder::new();
        total.add(&t);
        total.add(&t);
        assert_eq!((total.messages, total.errors, total.hist.len()), (2, 2, 2));
    }

    #[test]
    fn clamps_huge_latencies_and_counts_them() {
        let mut r = Recorder::new();
        r.record(MAX_LATENCY_US * 2, 1, 0);
        assert_eq!(r.clamped, 1);
        assert!(r.summary().max_us >= MAX_LATENCY_US * 999 / 1000);
    }

    #[test]
    fn report_numbers_and_json() {
        let mut r = Recorder::new();
        for _ in 0..100 {
            r.record(2_000, 10, 1_000);
        }
        let rep = Report::new("produce", Some(1000.0), 2.0, &r);
        assert_eq!(rep.messages, 1000);
        assert!((rep.msgs_per_s - 500.0).abs() < 1e-9);
        assert!((rep.mb_per_s - 0.05).abs() < 1e-9);
        let text = rep.render();
        assert!(text.contains("open loop at 1000 msg/s"), "{text}");
        let json = serde_json::to_value(&rep).expect("json");
        assert_eq!(json["messages"], 1000);
        assert_eq!(json["open_loop"], true);
        assert!(json["latency"]["p99_us"]
            .as_u64()
            .is_some_and(|v| (1998..=2002).contains(&v)));
    }

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut r = Recorder::new();
        for v in [1_000u64, 2_000, 3_000, 100_000] {
            r.record(v, 1, 0);
        }
        let text = hgrm(&r);
        assert!(
            text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
            "{text}"
        );
        assert!(
            text.contains("#[Max     =      100.031, Total count    =            4]")
                || text.contains("Total count    =            4]"),
            "{text}"
        );
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .expect("rows");
        assert!(last_row.contains("1.000000000000"), "{last_row}");
        assert!(last_row.trim_end().ends_with('4'), "{last_row}");
    }
}
