//! ConsumeQueue: per (topic, queue id) index of CommitLog records, in RocketMQ's format
//! (spec §5.3): files `consumequeue/<topic>/<queueId>/<20-digit byte offset of the first unit>`,
//! 20-byte units (i64 CommitLog offset, i32 size, i64 tags code, big-endian), 300,000 units per
//! file by default. Independent of the CommitLog's internals: it receives dispatch calls and
//! answers lookups; it is rebuildable from the CommitLog.
//!
//! Memory: every unit of every queue is resident (20 bytes per message; each file's buffer has
//! its full capacity reserved at creation, touched only as units arrive, so appends never
//! reallocate). Lookups are synchronous and never touch the disk. Retention bounds the total.
//!
//! Store timestamps are not in the unit. Time search takes a callback that reads a record's
//! store timestamp (RocketMQ's `pickupStoreTimestamp`): ~log2(units) record reads per search,
//! and no 8 extra bytes per message held forever. The caller reads them from its tail cache or
//! with a positioned read of the segment.
//!
//! Persistence: units are appended in memory at dispatch; [`flush`] writes what changed since the
//! last flush (each dirty file's new units, one write per file, then fdatasync), removes deleted
//! files, and advances the durable point: the CommitLog offset below which every record's unit
//! is on disk. Recovery persists that point in its checkpoint and re-dispatches from it; units
//! that are already present are ignored ([`PutOutcome::Duplicate`]).
//!
//! API (all on one shard's executor; keep the store in a `RefCell`):
//! ```text
//! ConsumeQueueStore::new(root: PathBuf, units_per_file: u32) -> ConsumeQueueStore
//! ConsumeQueueStore::load(root: PathBuf, units_per_file: u32) -> Result<ConsumeQueueStore, CqError>  // blocking, start-up
//! .put(topic, queue_id: i32, queue_offset: i64, physical_offset: u64, size: u32, tags_code: i64) -> Result<PutOutcome, CqError>
//!     // Appended | Duplicate (offset held, same unit: recovery re-dispatch) | Repaired (held unit
//!     // disagreed: queue cut there, unit appended); gaps and backwards offsets are errors
//! .queue_mut(topic, queue_id) -> Result<&mut ConsumeQueue, CqError>   // creates an empty queue
//! .queue(topic, queue_id) -> Option<&ConsumeQueue>      // .get(offset), .iter_from(offset), .min_offset(), .max_offset(),
//!                                                       // .max_physical_offset(), .search_offset_by_timestamp(ts, Boundary, &mut store_time)
//! .get(topic, queue_id, offset: i64) -> Option<CqEntry>
//! .min_offset(topic, queue_id) / .max_offset(topic, queue_id) -> i64      // 0 for an unknown queue
//! .search_offset_by_timestamp(topic, queue_id, ts_ms, Boundary, &mut dyn FnMut(u64, u32) -> Option<i64>) -> i64
//! .truncate(max_physical_offset: u64)                   // recovery: drop units of records ending past it
//! .delete_below(min_physical_offset: u64) -> usize      // retention: files wholly below, and min offsets
//! .delete_topic(topic) -> bool
//! .queues() -> impl Iterator<Item = (&str, i32)>
//! .durable_offset() -> u64 / .set_durable_offset(u64) / .dispatched_offset() -> u64
//! .begin_flush(up_to_physical_offset: u64, scale: usize) -> Result<Option<CqFlushJob>, CqError>   // sync part
//! CqFlushJob::run(self).await -> CqFlushOutcome                                       // I/O, no borrow held
//! .complete_flush(CqFlushOutcome) -> Result<FlushStats, CqError>                      // sync part
//! flush(&RefCell<ConsumeQueueStore>, up_to_physical_offset, scale).await -> Result<FlushStats, CqError>  // all three
//! ```

pub(crate) mod disk;
mod error;
mod queue;
mod unit;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

pub use disk::{DiskError, DiskStats};
pub use error::CqError;
pub use queue::{Boundary, ConsumeQueue, PutOutcome};
pub use unit::{
    decode_unit, file_name, parse_file_name, CqEntry, CqUnit, CQ_UNIT_LEN, DEFAULT_UNITS_PER_FILE,
    FILLER_SIZE,
};

use disk::FileWrite;
use queue::CqFile;

use crate::fxhash::FxHashMap;

/// Longest topic accepted as a directory name.
pub const MAX_TOPIC_DIR_LEN: usize = 255;

/// Unit bytes one flush writes at most (over all queues). Collecting a flush copies its units
/// on the shard; after a burst of 24 M messages an unbounded flush copied 480 MB there in one
/// go (a 200+ ms stall of every connection). What is left is written by the next flushes,
/// which the background loop runs soon after (paced) while a backlog drains.
pub const MAX_FLUSH_BYTES: usize = 2 << 20;

/// Whether `topic` may name a directory: RocketMQ's topic charset `[%|a-zA-Z0-9_-]`, which rules
/// out `/`, `.` and `..`.
pub fn is_valid_topic_dir(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_DIR_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// Appends one unit to `q` (see [`ConsumeQueueStore::put`]), first cutting the queue where a
/// re-dispatch disagrees with the unit it holds.
#[allow(clippy::too_many_arguments)]
#[inline]
fn put_into(
    q: &mut ConsumeQueue,
    removed: &mut Vec<PathBuf>,
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
    physical_offset: u64,
    size: u32,
    tags_code: i64,
) -> Result<PutOutcome, CqError> {
    // A re-dispatch (recovery) of an offset the queue holds must match the unit there; if it
    // does not, the queue disagrees with the CommitLog from that unit on: cut it there and
    // rebuild from the CommitLog's record.
    let mut repaired = false;
    if queue_offset < q.max_offset() {
        if let Some(held) = q.get_raw(queue_offset) {
            if !held.is_filler() && (held.physical_offset, held.size) != (physical_offset, size) {
                tracing::warn!(
                    topic,
                    queue_id,
                    queue_offset,
                    held = held.physical_offset,
                    record = physical_offset,
                    "ConsumeQueue unit disagrees with the CommitLog; cutting the queue there"
                );
                q.truncate_from(queue_offset, removed);
                repaired = true;
            }
        }
    }
    let out = q.put(
        topic,
        queue_id,
        queue_offset,
        physical_offset,
        size,
        tags_code,
    )?;
    if out == PutOutcome::Appended && repaired {
        return Ok(PutOutcome::Repaired);
    }
    Ok(out)
}

/// A queue borrowed from its [`ConsumeQueueStore`] together with the store's bookkeeping, see
/// [`ConsumeQueueStore::slot`].
#[derive(Debug)]
pub struct QueueSlot<'a> {
    queue: &'a mut ConsumeQueue,
    removed: &'a mut Vec<PathBuf>,
    dispatched_end: &'a mut u64,
}

impl QueueSlot<'_> {
    /// Next queue offset to assign.
    #[inline]
    pub fn max_offset(&self) -> i64 {
        self.queue.max_offset()
    }

    /// Same as [`ConsumeQueueStore::put`] on this queue.
    #[inline]
    pub fn put(
        &mut self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        physical_offset: u64,
        size: u32,
        tags_code: i64,
    ) -> Result<PutOutcome, CqError> {
        let out = put_into(
            self.queue,
            self.removed,
            topic,
            queue_id,
            queue_offset,
            physical_offset,
            size,
            tags_code,
        )?;
        if matches!(out, PutOutcome::Appended | PutOutcome::Repaired) {
            *self.dispatched_end = (*self.dispatched_end).max(physical_offset + u64::from(size));
        }
        Ok(out)
    }
}

/// All consume queues of one shard's store.
#[derive(Debug)]
pub struct ConsumeQueueStore {
    root: PathBuf,
    units_per_file: u32,
    topics: FxHashMap<Box<str>, FxHashMap<i32, ConsumeQueue>>,
    dispatched_end: u64,
    durable_offset: u64,
    pending_removals: Vec<PathBuf>,
    pending_dir_removals: Vec<PathBuf>,
    flush_in_flight: bool,
}

/// What a completed flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub disk: DiskStats,
    /// Units that became durable.
    pub units: u64,
    /// Durable point after the flush.
    pub durable_offset: u64,
    /// Full, durable files whose units moved from the heap to a mapping of the file.
    pub files_mapped: u64,
}

/// Receipt of one file written by a flush.
#[derive(Debug)]
struct Written {
    topic: Box<str>,
    queue_id: i32,
    start_unit: u64,
    units: u64,
    generation: u64,
    truncated: bool,
}

/// The end of the prefix of `f`'s units `from..to` whose records end at or below `bound`
/// (fillers count as flushable: they only precede a queue's first unit). Units ascend in the
/// CommitLog, so the prefix is found by binary search: walking back over the units past the
/// bound cost every flush one step per unit appended since the CommitLog's last flush (2.5 %
/// of the shard under 100 B batch produce).
fn units_ending_by(f: &CqFile, from: u64, to: u64, bound: u64) -> u64 {
    let past = |i: u64| {
        f.entry(i)
            .is_some_and(|e| !e.is_filler() && e.end() > bound)
    };
    let (mut lo, mut hi) = (from, to);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if past(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    debug_assert!(
        (lo..to).all(past),
        "ConsumeQueue units out of CommitLog order"
    );
    lo
}

/// A flush bound search narrows to sorting the ends of the units left between its two bounds
/// once at most this many are.
const BOUND_SORT_UNITS: u64 = 4096;

/// One file's pending units during [`ConsumeQueueStore::flush_bound`]: `from..` are pending;
/// `lo`, `hi` and `mid` are the ends of its prefixes at the search's bounds and probe.
struct BoundSpan<'a> {
    f: &'a CqFile,
    from: u64,
    lo: u64,
    hi: u64,
    mid: u64,
}

/// The I/O half of a flush, detached from the store so no borrow is held across awaits.
#[derive(Debug)]
pub struct CqFlushJob {
    removals: Vec<PathBuf>,
    dir_removals: Vec<PathBuf>,
    writes: Vec<FileWrite>,
    receipts: Vec<Written>,
    durable_candidate: u64,
}

/// Result of [`CqFlushJob::run`], handed back to [`ConsumeQueueStore::complete_flush`].
#[derive(Debug)]
pub struct CqFlushOutcome {
    removals: Vec<PathBuf>,
    dir_removals: Vec<PathBuf>,
    receipts: Vec<Written>,
    durable_candidate: u64,
    result: Result<DiskStats, DiskError>,
}

impl CqFlushJob {
    /// Performs the writes, truncations and removals.
    pub async fn run(self) -> CqFlushOutcome {
        let (removals, dir_removals, result) =
            disk::apply(self.removals, self.writes, self.dir_removals).await;
        CqFlushOutcome {
            removals,
            dir_removals,
            receipts: self.receipts,
            durable_candidate: self.durable_candidate,
            result,
        }
    }
}

impl ConsumeQueueStore {
    /// An empty store rooted at `root` (`<store>/consumequeue`).
    pub fn new(root: PathBuf, units_per_file: u32) -> ConsumeQueueStore {
        ConsumeQueueStore {
            root,
            units_per_file: units_per_file.max(1),
            topics: FxHashMap::default(),
            dispatched_end: 0,
            durable_offset: 0,
            pending_removals: Vec::new(),
            pending_dir_removals: Vec::new(),
            flush_in_flight: false,
        }
    }

    /// Loads every queue under `root` (blocking std::fs, for start-up). A missing root is an
    /// empty store. The durable point starts at 0 (unknown): set it from the checkpoint with
    /// [`ConsumeQueueStore::set_durable_offset`].
    pub fn load(root: PathBuf, units_per_file: u32) -> Result<ConsumeQueueStore, CqError> {
        let mut store = ConsumeQueueStore::new(root, units_per_file);
        let topics = match std::fs::read_dir(&store.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => {
                return Err(CqError::Load {
                    op: "listing",
                    path: store.root.clone(),
                    source: e,
                })
            }
        };
        let list_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e| CqError::Load {
                op: "listing",
                path,
                source: e,
            }
        };
        for t in topics {
            let t = t.map_err(list_err(&store.root))?;
            let Some(topic) = t.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !t.path().is_dir() || !is_valid_topic_dir(&topic) {
                tracing::warn!(path = %t.path().display(), "ignoring an entry that is not a topic directory");
                continue;
            }
            let mut queues = FxHashMap::default();
            for qd in std::fs::read_dir(t.path()).map_err(list_err(&t.path()))? {
                let qd = qd.map_err(list_err(&t.path()))?;
                let Some(qid) = qd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    tracing::warn!(path = %qd.path().display(), "ignoring an entry that is not a queue directory");
                    continue;
                };
                if qid < 0 || !qd.path().is_dir() {
                    continue;
                }
                let q = ConsumeQueue::load(
                    qd.path(),
                    store.units_per_file,
                    &mut store.pending_removals,
                )?;
                store.dispatched_end = store.dispatched_end.max(q.max_physical_offset());
                queues.insert(qid, q);
            }
            store.topics.insert(topic.into_boxed_str(), queues);
        }
        Ok(store)
    }

    /// Root directory (`<store>/consumequeue`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Units per file.
    pub fn units_per_file(&self) -> u32 {
        self.units_per_file
    }

    /// Dispatch: appends the unit of a record to its queue (creating the queue on first use).
    /// Allocation only when a queue or a file is created.
    pub fn put(
        &mut self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        physical_offset: u64,
        size: u32,
        tags_code: i64,
    ) -> Result<PutOutcome, CqError> {
        // One map lookup on the hot path; the queue is created (and validated) on first use.
        for _ in 0..2 {
            if let Some(q) = self
                .topics
                .get_mut(topic)
                .and_then(|qs| qs.get_mut(&queue_id))
            {
                let out = put_into(
                    q,
                    &mut self.pending_removals,
                    topic,
                    queue_id,
                    queue_offset,
                    physical_offset,
                    size,
                    tags_code,
                )?;
                if matches!(out, PutOutcome::Appended | PutOutcome::Repaired) {
                    self.dispatched_end =
                        self.dispatched_end.max(physical_offset + u64::from(size));
                }
                return Ok(out);
            }
            self.queue_mut(topic, queue_id)?;
        }
        Err(CqError::BadTopic {
            topic: topic.to_owned(),
        })
    }

    /// The existing queue `(topic, queue_id)` with what a put needs beside it, found with one
    /// map lookup, so that an append reads the next queue offset and later dispatches its unit
    /// without looking the queue up twice. `None` when the queue does not exist yet (use
    /// [`ConsumeQueueStore::put`], which creates it).
    #[inline]
    pub fn slot(&mut self, topic: &str, queue_id: i32) -> Option<QueueSlot<'_>> {
        let queue = self.topics.get_mut(topic)?.get_mut(&queue_id)?;
        Some(QueueSlot {
            queue,
            removed: &mut self.pending_removals,
            dispatched_end: &mut self.dispatched_end,
        })
    }

    /// The queue, created empty if new.
    pub fn queue_mut(&mut self, topic: &str, queue_id: i32) -> Result<&mut ConsumeQueue, CqError> {
        if queue_id < 0 {
            return Err(CqError::Invalid {
                topic: topic.to_owned(),
                queue_id,
                field: "queue id",
                value: i64::from(queue_id),
            });
        }
        if !self.topics.contains_key(topic) {
            if !is_valid_topic_dir(topic) {
                return Err(CqError::BadTopic {
                    topic: topic.to_owned(),
                });
            }
            self.topics.insert(topic.into(), FxHashMap::default());
        }
        let root = &self.root;
        let upf = self.units_per_file;
        let queues = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| CqError::BadTopic {
                topic: topic.to_owned(),
            })?;
        Ok(queues
            .entry(queue_id)
            .or_insert_with(|| ConsumeQueue::new(root.join(topic).join(queue_id.to_string()), upf)))
    }

    /// The queue, if it exists.
    #[inline]
    pub fn queue(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue> {
        self.topics.get(topic)?.get(&queue_id)
    }

    /// The unit at `offset` of a queue.
    #[inline]
    pub fn get(&self, topic: &str, queue_id: i32, offset: i64) -> Option<CqEntry> {
        self.queue(topic, queue_id)?.get(offset)
    }

    /// Min offset of a queue; 0 when the queue does not exist.
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queue(topic, queue_id)
            .map_or(0, ConsumeQueue::min_offset)
    }

    /// Max offset (next to assign) of a queue; 0 when the queue does not exist.
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.queue(topic, queue_id)
            .map_or(0, ConsumeQueue::max_offset)
    }

    /// See [`ConsumeQueue::search_offset_by_timestamp`]; 0 when the queue does not exist.
    pub fn search_offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        ts_ms: i64,
        boundary: Boundary,
        store_time: &mut dyn FnMut(u64, u32) -> Option<i64>,
    ) -> i64 {
        self.queue(topic, queue_id).map_or(0, |q| {
            q.search_offset_by_timestamp(ts_ms, boundary, store_time)
        })
    }

    /// Every (topic, queue id).
    pub fn queues(&self) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.topics
            .iter()
            .flat_map(|(t, qs)| qs.keys().map(move |q| (&**t, *q)))
    }

    /// Recovery: drops every unit whose record ends past `max_physical_offset` (the end of the
    /// valid CommitLog), in every queue; lowers the durable and dispatched points to it.
    pub fn truncate(&mut self, max_physical_offset: u64) {
        for qs in self.topics.values_mut() {
            for q in qs.values_mut() {
                q.truncate(max_physical_offset, &mut self.pending_removals);
            }
        }
        self.dispatched_end = self.dispatched_end.min(max_physical_offset);
        self.durable_offset = self.durable_offset.min(max_physical_offset);
    }

    /// Retention: deletes files whose records all start below `min_physical_offset` (never a
    /// queue's last file) and moves min offsets up to it. Files go from disk at the next flush.
    /// Returns the number of files deleted.
    pub fn delete_below(&mut self, min_physical_offset: u64) -> usize {
        let mut n = 0;
        for qs in self.topics.values_mut() {
            for q in qs.values_mut() {
                n += q.delete_below(min_physical_offset, &mut self.pending_removals);
            }
        }
        n
    }

    /// Forgets a topic's queues; its files and directories go at the next flush.
    pub fn delete_topic(&mut self, topic: &str) -> bool {
        let Some(qs) = self.topics.remove(topic) else {
            return false;
        };
        for q in qs.values() {
            for f in &q.files {
                if f.on_disk || f.disk_units > 0 {
                    self.pending_removals
                        .push(q.dir.join(file_name(f.start_unit)));
                }
            }
            self.pending_dir_removals.push(q.dir.clone());
        }
        self.pending_dir_removals.push(self.root.join(topic));
        true
    }

    /// The CommitLog offset below which every dispatched unit is on disk.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }

    /// Sets the durable point (from the checkpoint, at start-up).
    pub fn set_durable_offset(&mut self, offset: u64) {
        self.durable_offset = offset;
    }

    /// Highest record end dispatched (or loaded).
    pub fn dispatched_offset(&self) -> u64 {
        self.dispatched_end
    }

    /// Whether there is anything to flush.
    pub fn is_dirty(&self) -> bool {
        !self.pending_removals.is_empty()
            || !self.pending_dir_removals.is_empty()
            || self.topics.values().any(|qs| {
                qs.values().any(|q| {
                    q.files
                        .iter()
                        .any(|f| f.durable_units < f.units() || f.disk_units > f.units())
                })
            })
    }

    /// The CommitLog offset a flush with a budget of `budget` units goes up to: at most
    /// `up_to_physical_offset`, and below it just far enough that the units of records ending
    /// by then, over all queues, fit the budget. Every queue is flushed up to the same offset,
    /// so the durable point (the lowest first unflushed unit over all queues) moves with each
    /// round. Spending the budget queue by queue in map order flushed the first queue while
    /// the others, and the durable point, stayed where they were: at 2.7 M msg/s over 8
    /// queues the ConsumeQueue durable offset stayed at 0 for 16 s while the IndexFile's
    /// moved to 7 GB (session 19), and the lag it measured started the full-speed catch-up.
    pub fn flush_bound(&self, up_to_physical_offset: u64, budget: u64) -> u64 {
        // The pending units of each file (not of a file to truncate: the budget never cuts
        // its write, see below).
        let mut spans: Vec<BoundSpan<'_>> = Vec::new();
        let mut total = 0u64;
        let mut lowest_end = u64::MAX;
        for qs in self.topics.values() {
            for q in qs.values() {
                for f in &q.files {
                    if f.disk_units > f.units() {
                        continue;
                    }
                    let from = f.durable_units;
                    let upto = units_ending_by(f, from, f.units(), up_to_physical_offset);
                    if upto > from {
                        total += upto - from;
                        // Leading fillers count at any bound: the prefix at `lo` (below the
                        // first pending record's end) is exactly them.
                        let mut first = from;
                        while let Some(e) = (first < upto).then(|| f.entry(first)).flatten() {
                            if !e.is_filler() {
                                lowest_end = lowest_end.min(e.end());
                                break;
                            }
                            first += 1;
                        }
                        spans.push(BoundSpan {
                            f,
                            from,
                            lo: first,
                            hi: upto,
                            mid: first,
                        });
                    }
                }
            }
        }
        if total <= budget || lowest_end == u64::MAX {
            return up_to_physical_offset;
        }
        // Invariant: count(lo) <= budget < count(hi), where count(x) is the number of pending
        // units of records ending at or below x, and every span's `lo`/`hi` is its prefix end
        // at `lo`/`hi` (so a count at a bound between them only searches between the two).
        // Nothing but fillers ends before the first pending record, which ends at
        // `lowest_end`.
        let (mut lo, mut hi) = (lowest_end - 1, up_to_physical_offset);
        let (mut c_lo, mut c_hi) = (spans.iter().map(|s| s.lo - s.from).sum::<u64>(), total);
        if c_lo > budget {
            // Fillers alone exceed the budget (not with the budgets in use).
            return lowest_end;
        }
        // Narrow [lo, hi] by interpolation (units arrive at a steady rate, so the count grows
        // about linearly with the offset) until few units are left between the bounds; those
        // are sorted and the bound is read off exactly. A probe aims a quarter of the sorting
        // size below the budget's count while `lo` is farther than half of it, else as far
        // above (to bring `hi` down), so two probes usually do. A probe that lands on the
        // other side of the budget is followed by a bisection. (A bisection of the whole
        // offset range, counting every file each time, took ~33 counts: 26 ms on the shard
        // per round with 8,000 queues, criterion `cq_flush_bound`.)
        let mut bisect = false;
        while hi - lo > 1 && c_hi - c_lo > BOUND_SORT_UNITS {
            let raise_lo = budget - c_lo > BOUND_SORT_UNITS / 2;
            let mid = if bisect {
                lo + (hi - lo) / 2
            } else {
                let target = if raise_lo {
                    budget - BOUND_SORT_UNITS / 4
                } else {
                    budget + 1 + BOUND_SORT_UNITS / 4
                };
                let target = target.clamp(c_lo + 1, c_hi - 1);
                let step =
                    u128::from(hi - lo) * u128::from(target - c_lo) / u128::from(c_hi - c_lo);
                lo + (step as u64).clamp(1, hi - lo - 1)
            };
            let mut c_mid = 0;
            for s in &mut spans {
                s.mid = units_ending_by(s.f, s.lo, s.hi, mid);
                c_mid += s.mid - s.from;
            }
            let landed_low = c_mid <= budget;
            if landed_low {
                lo = mid;
                c_lo = c_mid;
                spans.iter_mut().for_each(|s| s.lo = s.mid);
            } else {
                hi = mid;
                c_hi = c_mid;
                spans.iter_mut().for_each(|s| s.hi = s.mid);
            }
            bisect = !bisect && landed_low != raise_lo;
        }
        if hi - lo <= 1 {
            // At `lowest_end - 1`: one record's units alone exceed the budget (not with the
            // budgets in use). Flush that much anyway, so that the durable point moves.
            return lo.max(lowest_end);
        }
        // The ends of the units between the bounds, all in (lo, hi]: the largest bound with
        // count <= budget is one below the (budget - c_lo + 1)-th smallest.
        let mut ends: Vec<u64> = spans
            .iter()
            .flat_map(|s| (s.lo..s.hi).filter_map(|i| s.f.entry(i)))
            .map(|e| e.end())
            .collect();
        debug_assert_eq!(ends.len() as u64, c_hi - c_lo);
        let need = (budget - c_lo) as usize;
        let (_, nth, _) = ends.select_nth_unstable(need);
        debug_assert!(*nth > lo && *nth <= hi);
        (*nth - 1).max(lowest_end)
    }

    /// First half of a flush: collects the units of records ending at or below
    /// `up_to_physical_offset` (pass the CommitLog's durable offset, so no unit reaches the disk
    /// before its record) that are not yet on disk, and the pending removals. `Ok(None)` when
    /// there is nothing to do.
    ///
    /// One flush writes at most `scale` (>= 1) times [`MAX_FLUSH_BYTES`] of units: a store
    /// whose derived files fell behind catches up with larger rounds (each round's cost is
    /// mostly its fdatasyncs, whatever it writes). When more is pending, the flush goes up to
    /// the CommitLog offset that keeps it within the budget in every queue alike (see
    /// [`ConsumeQueueStore::flush_bound`]).
    pub fn begin_flush(
        &mut self,
        up_to_physical_offset: u64,
        scale: usize,
    ) -> Result<Option<CqFlushJob>, CqError> {
        if self.flush_in_flight {
            return Err(CqError::FlushInFlight);
        }
        let mut writes = Vec::new();
        let mut receipts = Vec::new();
        let mut first_unflushed = u64::MAX;
        let mut budget = MAX_FLUSH_BYTES * scale.max(1) / CQ_UNIT_LEN;
        let bound = self.flush_bound(up_to_physical_offset, budget as u64);
        for (topic, qs) in &self.topics {
            for (&queue_id, q) in qs {
                for f in &q.files {
                    let units = f.units();
                    let mut upto = units_ending_by(f, f.durable_units, units, bound);
                    if let Some(e) = (upto < units).then(|| f.entry(upto)).flatten() {
                        first_unflushed = first_unflushed.min(e.physical_offset);
                    }
                    let truncate = f.disk_units > units;
                    // The per-flush budget (a truncation is always done whole: rare, small).
                    if !truncate && upto - f.durable_units > budget as u64 {
                        let cut = f.durable_units + budget as u64;
                        // The first unit left for the next flush bounds the durable point.
                        let at = cut as usize * CQ_UNIT_LEN;
                        if let Some(e) = decode_unit(&f.bytes()[at..]) {
                            first_unflushed = first_unflushed.min(e.physical_offset);
                        }
                        upto = cut;
                    }
                    budget -= (upto.saturating_sub(f.durable_units) as usize).min(budget);
                    if upto == f.durable_units && !truncate {
                        continue;
                    }
                    let from = f.durable_units as usize * CQ_UNIT_LEN;
                    let to = upto as usize * CQ_UNIT_LEN;
                    writes.push(FileWrite {
                        path: q.dir.join(file_name(f.start_unit)),
                        ranges: vec![(from as u64, f.bytes()[from..to].to_vec())],
                        truncate_to: truncate.then_some(to as u64),
                        new_file: !f.on_disk,
                    });
                    receipts.push(Written {
                        topic: topic.clone(),
                        queue_id,
                        start_unit: f.start_unit,
                        units: upto,
                        generation: q.generation,
                        truncated: truncate,
                    });
                }
            }
        }
        if writes.is_empty()
            && self.pending_removals.is_empty()
            && self.pending_dir_removals.is_empty()
        {
            // Nothing dirty: every unit at or below the bound is on disk.
            let candidate = first_unflushed
                .min(up_to_physical_offset)
                .min(self.dispatched_end);
            self.durable_offset = self.durable_offset.max(candidate);
            return Ok(None);
        }
        self.flush_in_flight = true;
        Ok(Some(CqFlushJob {
            removals: std::mem::take(&mut self.pending_removals),
            dir_removals: std::mem::take(&mut self.pending_dir_removals),
            writes,
            receipts,
            durable_candidate: first_unflushed
                .min(up_to_physical_offset)
                .min(self.dispatched_end),
        }))
    }

    /// Second half of a flush: marks what was written durable and advances the durable point.
    /// On failure nothing is marked (the next flush rewrites it) and the error is returned.
    pub fn complete_flush(&mut self, outcome: CqFlushOutcome) -> Result<FlushStats, CqError> {
        self.flush_in_flight = false;
        let ok = outcome.result.is_ok();
        let mut stats = FlushStats::default();
        for r in &outcome.receipts {
            let Some(q) = self
                .topics
                .get_mut(&r.topic)
                .and_then(|qs| qs.get_mut(&r.queue_id))
            else {
                continue;
            };
            let generation = q.generation;
            let Some(f) = q.files.iter_mut().find(|f| f.start_unit == r.start_unit) else {
                continue;
            };
            // Whatever happened, the disk may now hold up to r.units units.
            f.disk_units = if ok && r.truncated && generation == r.generation {
                r.units
            } else {
                f.disk_units.max(r.units)
            };
            if ok && generation == r.generation && r.units > f.durable_units {
                f.on_disk = true;
                stats.units += r.units - f.durable_units;
                f.durable_units = r.units;
            }
            if ok {
                stats.files_mapped += q.map_cold_files() as u64;
            }
        }
        let disk = match outcome.result {
            Ok(d) => d,
            Err(e) => {
                // Retry the removals next time (already-removed files are skipped then).
                self.pending_removals.extend(outcome.removals);
                self.pending_dir_removals.extend(outcome.dir_removals);
                return Err(e.into());
            }
        };
        stats.disk = disk;
        self.durable_offset = self.durable_offset.max(outcome.durable_candidate);
        stats.durable_offset = self.durable_offset;
        Ok(stats)
    }
}

/// Flushes `store`: collects under a short borrow, writes with no borrow held, then records the
/// result. See [`ConsumeQueueStore::begin_flush`].
pub async fn flush(
    store: &RefCell<ConsumeQueueStore>,
    up_to_physical_offset: u64,
    scale: usize,
) -> Result<FlushStats, CqError> {
    let job = store
        .borrow_mut()
        .begin_flush(up_to_physical_offset, scale)?;
    let Some(job) = job else {
        let durable_offset = store.borrow().durable_offset();
        return Ok(FlushStats {
            durable_offset,
            ..FlushStats::default()
        });
    };
    let outcome = job.run().await;
    store.borrow_mut().complete_flush(outcome)
}
