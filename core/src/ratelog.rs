//! Rate-limited logging for conditions that repeat per message or per retry (a full disk
//! refuses every send; a failing flush is retried every 100 ms): the first occurrence is
//! logged, then at most one line per interval, each saying how many occurrences it stands for.
//! Single-threaded (one per shard or per task), no I/O: the caller passes the time.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Least time between two lines of one repeated condition, everywhere in ramjet (a full disk's
/// refusals and retries, bad input on a listener, failing background flushes).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// See the module docs.
#[derive(Debug, Default)]
pub struct LogEvery {
    last: Cell<Option<Instant>>,
    since: Cell<u64>,
}

impl LogEvery {
    /// [`LogEvery::hit`] now, with [`LOG_EVERY`]: what every call site logs through.
    pub fn due(&self) -> Option<u64> {
        self.hit(Instant::now(), LOG_EVERY)
    }

    /// Counts one occurrence at `now`. Returns `Some(n)` when a line is due (`n` occurrences
    /// since the last line, this one included), `None` while within `every` of the last line.
    pub fn hit(&self, now: Instant, every: Duration) -> Option<u64> {
        let n = self.since.get() + 1;
        match self.last.get() {
            Some(t) if now.saturating_duration_since(t) < every => {
                self.since.set(n);
                None
            }
            _ => {
                self.last.set(Some(now));
                self.since.set(0);
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_every_logs_the_first_then_one_line_per_interval_with_the_count() {
        let l = LogEvery::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(l.hit(t0, every), Some(1));
        for i in 1..=999u64 {
            assert_eq!(l.hit(t0 + Duration::from_millis(i), every), None);
        }
        // The line after the interval stands for the 999 silent ones and itself.
        assert_eq!(l.hit(t0 + every, every), Some(1000));
        assert_eq!(l.hit(t0 + every + Duration::from_secs(1), every), None);
        assert_eq!(l.hit(t0 + every * 2, every), Some(2));
    }
}
