//! 5.x timer messages ("accurate delay"): a send with `TIMER_DELIVER_MS` (an absolute time,
//! ms), `TIMER_DELAY_SEC` or `TIMER_DELAY_MS` (relative to the broker's clock) is delivered to
//! its topic at that time, to the millisecond as far as the shard's timer allows.
//!
//! RocketMQ's rules, as its broker applies them to a send:
//! - A delay level (`DELAY` > 0) wins: the timer properties are dropped.
//! - `TIMER_DELAY_SEC` wins over `TIMER_DELAY_MS`, which wins over `TIMER_DELIVER_MS`.
//! - A value that is not a number, or a time further out than `broker.timer_max_delay_ms`
//!   (3 days), gets MESSAGE_ILLEGAL.
//! - A time not in the future is no timer message: it is stored at once, as sent.
//! - Half messages keep their timer properties until their commit, which applies them.
//! - Batches cannot carry a timer (MESSAGE_ILLEGAL).
//!
//! **Storage.** A timer message is stored in [`TIMER_TOPIC`], queue 0, with `REAL_TOPIC` /
//! `REAL_QID` and `TIMER_OUT_MS` (the deliver time) added. Its ConsumeQueue unit's tags code is
//! when this service takes it up (`fire`): the deliver time, or, further out than
//! `broker.timer_roll_window_ms`, the end of that window ([`TIMER_FIRE_MS`]). A message taken
//! up before its time is *rolled*: written again at the queue's tail with the next window
//! (`TIMER_ROLL_TIMES` + 1). So every unit is taken up within one window of being stored.
//!
//! **Memory.** The units of the timer queue are read in order ("loaded") as `(fire, queue
//! offset)`, 16 bytes each, at most `broker.timer_max_pending`; a send beyond that gets
//! SYSTEM_BUSY. A unit firing no earlier than the last one loaded goes to the back of a FIFO
//! (all of them, when every message has the same delay), any other into a min-heap: see
//! [`Waiting`]. The service pops what is due, delivers it (a copy in its real topic,
//! with `TIMER_ENQUEUE_MS` / `TIMER_DEQUEUE_MS` added) or rolls it, and sleeps until the next
//! fire time; a send with an earlier one wakes it.
//!
//! **Restart.** `config/timerCheckpoint.json` holds, written only once the copies stored so far
//! are durable: `lastTimerQueueOffset` (units below it were loaded), `lastReadTimeMs` (every
//! loaded unit firing before it was handled) and `lowQueueOffset` (every unit below it was
//! handled). A restart loads again from `lowQueueOffset`: a unit below `lastTimerQueueOffset`
//! firing before `lastReadTimeMs` was handled and is skipped; any other is pending. Deliveries
//! after the last checkpoint may repeat (at least once, as in RocketMQ), none is skipped. As
//! every unit fires within one roll window, the restart reads at most about one window of
//! the timer queue.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::record::{properties, properties::PropertiesBuilder, tag_hash_bytes};
use ramjet_core::record::{MessageToStore, RecordError, RecordView};
use ramjet_core::remoting::ext::format_i64;
use ramjet_core::remoting::ResponseCode;
use ramjet_storage::schedule::{TIMER_FIRE_MS, TIMER_TOPIC};
use ramjet_storage::StoreError;
use serde::{Deserialize, Serialize};

use super::namesrv_host::now_ms;
use super::persist::{read_optional, SnapshotFile};
use super::schedule::{deliver_from_memory, read_in, real_target_skipping, Found, ScheduleError};
use super::shard::{Broker, ShardCounters};

/// File name under the shard's `config/` directory.
pub const TIMER_CHECKPOINT_FILE: &str = "timerCheckpoint.json";

/// The recalls not yet applied (`{"<topic>+<UNIQ_KEY>": deliver ms}`), written before each
/// checkpoint: a recall whose marker a checkpoint counts as handled is in this file.
pub const TIMER_RECALLS_FILE: &str = "timerRecalls.json";

/// Most units one pass loads before the shard's other work gets its turn.
const MAX_LOADS_PER_PASS: i64 = 8192;

/// Most messages one pass delivers or rolls (as the schedule service's passes).
const MAX_FIRES_PER_PASS: usize = 1024;

/// Pause between two passes while more is due (see `schedule::BUSY_PAUSE`).
const BUSY_PAUSE: Duration = Duration::from_micros(20);

/// Pending units are counted per block of 2^12 queue offsets, to know the lowest offset a
/// restart must read from without keeping each offset.
const BLOCK_SHIFT: u32 = 12;

/// Length of the GET_TIMER_CHECK_POINT body: RocketMQ's 56 bytes and ramjet's low offset.
pub const CHECKPOINT_BODY_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckpointFile {
    low_queue_offset: i64,
    last_timer_queue_offset: i64,
    last_read_time_ms: i64,
}

/// One shard's timer service state.
pub struct TimerWheel {
    /// Loaded, not yet handled units.
    waiting: RefCell<Waiting>,
    /// Pending units per block of queue offsets, from block `base_block`.
    blocks: RefCell<VecDeque<u32>>,
    base_block: Cell<i64>,
    /// Where loading started in this run (the checkpoint's low offset).
    start: Cell<i64>,
    /// Next queue offset to load.
    loaded: Cell<i64>,
    /// From the checkpoint: units below `recover_until` firing before `recover_before` were
    /// handled before the restart.
    recover_until: i64,
    recover_before: i64,
    roll_window_ms: i64,
    persisted: Cell<Option<CheckpointFile>>,
    /// CommitLog end when the persisted checkpoint was taken (at open: the recovered log's
    /// end): every copy it counts as handled lies below. A slave takes the checkpoint only
    /// once its own log reaches this far.
    persisted_end: Cell<u64>,
    file: SnapshotFile,
    generation: Cell<u64>,
    /// Timer messages stored by sends and commits (`ramjet.timerEnqueued`).
    pub enqueued: Cell<u64>,
    /// Copies delivered to their topics (`ramjet.timerDelivered`).
    pub delivered: Cell<u64>,
    /// Units written again for the next window (`ramjet.timerRolled`).
    pub rolled: Cell<u64>,
    /// Units lost before they were handled (retention removed them, or they were unreadable
    /// or without a destination; `ramjet.timerDropped`).
    pub dropped: Cell<u64>,
    /// Messages not delivered at their time because their producer recalled them
    /// (`ramjet.timerRecalled`).
    pub recalled: Cell<u64>,
    /// Recalled messages (`<topic>+<UNIQ_KEY>`, RocketMQ's delete key) and their deliver time:
    /// entered by RECALL_MESSAGE, again when its marker comes up, and from
    /// [`TIMER_RECALLS_FILE`] at start; taken
    /// out when the message comes up.
    recalls: RefCell<HashMap<String, i64>>,
    /// Whether `recalls` changed since it was last written to [`TIMER_RECALLS_FILE`].
    recalls_dirty: Cell<bool>,
    recalls_file: SnapshotFile,
    recalls_generation: Cell<u64>,
    /// Timer records read into the page cache off the shard before they were taken up
    /// (`ramjet.timerColdReads`).
    pub cold_reads: Cell<u64>,
    /// The copy's properties, reused from message to message.
    props: RefCell<PropertiesBuilder>,
    /// When the sleeping service wakes (ms), `i64::MIN` while it runs.
    sleeping_until: Cell<i64>,
    wake_tx: crate::runtime::LocalSender<()>,
    wake_rx: RefCell<Option<crate::runtime::LocalReceiver<()>>>,
    warn: ramjet_core::ratelog::LogEvery,
    drop_log: ramjet_core::ratelog::LogEvery,
}

/// The loaded, not yet handled units, `(fire ms, queue offset)`, earliest first. Units are
/// loaded in queue order; one firing no earlier than the last in `sorted` goes to its back in
/// O(1), any other into `heap`. With one delay for every message (the common case) all go to
/// the FIFO: a binary heap of the ~250k units waiting at 230k timer messages/s with a 1 s delay
/// took 8 % of the shard's CPU in `pop` alone (cache misses of the sift-down).
#[derive(Default)]
struct Waiting {
    sorted: VecDeque<(i64, i64)>,
    heap: BinaryHeap<Reverse<(i64, i64)>>,
}

impl Waiting {
    fn push(&mut self, fire: i64, offset: i64) {
        match self.sorted.back() {
            Some(&(last, _)) if fire < last => self.heap.push(Reverse((fire, offset))),
            _ => self.sorted.push_back((fire, offset)),
        }
    }

    fn peek(&self) -> Option<(i64, i64)> {
        let a = self.sorted.front().copied();
        let b = self.heap.peek().map(|Reverse(u)| *u);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop(&mut self) -> Option<(i64, i64)> {
        let from_heap = match (self.sorted.front(), self.heap.peek()) {
            (Some(a), Some(Reverse(b))) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        if from_heap {
            self.heap.pop().map(|Reverse(u)| u)
        } else {
            self.sorted.pop_front()
        }
    }

    fn len(&self) -> usize {
        self.sorted.len() + self.heap.len()
    }
}

/// Why a send's timer properties cannot be served: RocketMQ's response code and a remark.
pub type TimerRefusal = (i32, String);

impl TimerWheel {
    /// Loads `<config_dir>/timerCheckpoint.json` (everything from queue offset 0 when absent).
    /// `log_end`: where the recovered CommitLog ends (the checkpoint's copies lie below).
    pub fn open(
        config_dir: &Path,
        roll_window_ms: u64,
        log_end: u64,
    ) -> Result<TimerWheel, ScheduleError> {
        let path = config_dir.join(TIMER_CHECKPOINT_FILE);
        let cp = match read_optional(&path)? {
            Some(bytes) => {
                let corrupt = |reason: String| ScheduleError::TimerCorrupt {
                    path: path.display().to_string(),
                    reason,
                };
                let cp: CheckpointFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                cp.check().map_err(corrupt)?;
                Some(cp)
            }
            None => None,
        };
        let recalls_path = config_dir.join(TIMER_RECALLS_FILE);
        let recalls: HashMap<String, i64> = match read_optional(&recalls_path)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| ScheduleError::TimerCorrupt {
                    path: recalls_path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            None => HashMap::new(),
        };
        let low = cp.map_or(0, |c| c.low_queue_offset);
        let (wake_tx, wake_rx) = crate::runtime::local_unbounded();
        Ok(TimerWheel {
            waiting: RefCell::new(Waiting::default()),
            blocks: RefCell::new(VecDeque::new()),
            base_block: Cell::new(low >> BLOCK_SHIFT),
            start: Cell::new(low),
            loaded: Cell::new(low),
            recover_until: cp.map_or(0, |c| c.last_timer_queue_offset),
            recover_before: cp.map_or(i64::MIN, |c| c.last_read_time_ms),
            roll_window_ms: roll_window_ms as i64,
            persisted: Cell::new(cp),
            persisted_end: Cell::new(log_end),
            file: SnapshotFile::new(path),
            generation: Cell::new(0),
            enqueued: Cell::new(0),
            delivered: Cell::new(0),
            rolled: Cell::new(0),
            dropped: Cell::new(0),
            recalled: Cell::new(0),
            recalls: RefCell::new(recalls),
            recalls_dirty: Cell::new(false),
            recalls_file: SnapshotFile::new(recalls_path),
            recalls_generation: Cell::new(0),
            cold_reads: Cell::new(0),
            props: RefCell::new(PropertiesBuilder::with_capacity(1024)),
            sleeping_until: Cell::new(i64::MIN),
            wake_tx,
            wake_rx: RefCell::new(Some(wake_rx)),
            warn: ramjet_core::ratelog::LogEvery::default(),
            drop_log: ramjet_core::ratelog::LogEvery::default(),
        })
    }

    /// Timer messages waiting: loaded and not yet handled, plus those stored and not loaded.
    pub fn pending(&self, b: &Broker) -> u64 {
        let unloaded = (b.store.max_offset(TIMER_TOPIC, 0) - self.loaded.get()).max(0);
        self.waiting.borrow().len() as u64 + unloaded as u64
    }

    /// The checkpoint as it stands now, or `None` while a restart is still loading what the
    /// last one left pending.
    fn checkpoint(&self) -> Option<CheckpointFile> {
        let loaded = self.loaded.get();
        if loaded < self.recover_until {
            return None;
        }
        let read_time = self.waiting.borrow().peek().map_or(i64::MAX, |(f, _)| f);
        Some(CheckpointFile {
            low_queue_offset: self.low(),
            last_timer_queue_offset: loaded,
            last_read_time_ms: read_time,
        })
    }

    /// `"low/loaded/readTime"` for the runtime info (`ramjet.timerCheckpoint`).
    pub fn describe(&self) -> String {
        let read = self
            .waiting
            .borrow()
            .peek()
            .map_or(String::from("-"), |(f, _)| f.to_string());
        format!("{}/{}/{read}", self.low(), self.loaded.get())
    }

    /// The lowest queue offset that may still be pending: the start of the first block with a
    /// pending unit (not below where this run started loading), else the next offset to load.
    fn low(&self) -> i64 {
        let mut blocks = self.blocks.borrow_mut();
        let loaded = self.loaded.get();
        // Blocks wholly loaded and wholly handled are done.
        while blocks.front() == Some(&0) && (self.base_block.get() + 1) << BLOCK_SHIFT <= loaded {
            blocks.pop_front();
            self.base_block.set(self.base_block.get() + 1);
        }
        match blocks.iter().position(|n| *n > 0) {
            Some(i) => ((self.base_block.get() + i as i64) << BLOCK_SHIFT).max(self.start.get()),
            None => loaded,
        }
    }

    fn block_add(&self, offset: i64) {
        let mut blocks = self.blocks.borrow_mut();
        let block = offset >> BLOCK_SHIFT;
        if blocks.is_empty() {
            self.base_block.set(block);
        }
        let i = block - self.base_block.get();
        assert!(i >= 0, "timer unit {offset} below the first pending block");
        let i = i as usize;
        if blocks.len() <= i {
            blocks.resize(i + 1, 0);
        }
        blocks[i] += 1;
    }

    fn block_done(&self, offset: i64) {
        let mut blocks = self.blocks.borrow_mut();
        let i = (offset >> BLOCK_SHIFT) - self.base_block.get();
        let n = usize::try_from(i)
            .ok()
            .and_then(|i| blocks.get_mut(i))
            .filter(|n| **n > 0);
        let n = n.unwrap_or_else(|| panic!("timer unit {offset} handled but not pending"));
        *n -= 1;
    }

    /// Loads up to [`MAX_LOADS_PER_PASS`] units of the timer queue; true when more are there.
    fn load(&self, b: &Broker) -> bool {
        let max = b.store.max_offset(TIMER_TOPIC, 0);
        let min = b.store.min_offset(TIMER_TOPIC, 0);
        let mut offset = self.loaded.get();
        if offset < min {
            tracing::warn!(
                shard = b.index,
                from = offset,
                to = min,
                "timer messages removed by retention before they were loaded"
            );
            ShardCounters::add(&self.dropped, (min - offset) as u64);
            offset = min;
            if self.blocks.borrow().is_empty() {
                self.start.set(min);
            }
        }
        let end = max.min(offset + MAX_LOADS_PER_PASS);
        let mut waiting = self.waiting.borrow_mut();
        while offset < end {
            let Some(unit) = b.store.queue_unit(TIMER_TOPIC, 0, offset) else {
                break;
            };
            if !unit.is_filler() && unit.size > 0 {
                let fire = unit.tags_code;
                let handled = offset < self.recover_until && fire < self.recover_before;
                if !handled {
                    waiting.push(fire, offset);
                    self.block_add(offset);
                }
            }
            offset += 1;
        }
        self.loaded.set(offset);
        offset < max
    }

    /// The earliest waiting unit was handled (delivered, rolled or dropped).
    fn pop(&self, offset: i64) {
        let top = self.waiting.borrow_mut().pop();
        assert_eq!(
            top.map(|(_, o)| o),
            Some(offset),
            "timer heap changed under a pass"
        );
        self.block_done(offset);
    }

    /// The earliest waiting unit cannot be delivered (`why`): counted in
    /// `ramjet.timerDropped`, logged at most once per 10 s, and handled.
    fn drop_unit(&self, shard: usize, offset: i64, why: &str) {
        ShardCounters::add(&self.dropped, 1);
        if let Some(n) = self.drop_log.due() {
            tracing::error!(shard, offset, dropped = n, "timer message {why}; dropped");
        }
        self.pop(offset);
    }

    /// A timer message firing at `fire` was stored: wakes the service if it sleeps past then.
    fn stored(&self, fire: i64) {
        ShardCounters::add(&self.enqueued, 1);
        if fire < self.sleeping_until.get() {
            self.sleeping_until.set(i64::MIN);
            // Unbounded, and at most one message per sleep: cannot fail while the receiver
            // lives (the service holds it for the shard's life).
            let _ = self.wake_tx.try_send(());
        }
    }

    /// Writes the checkpoint if it moved, once every copy stored so far is durable. The
    /// write runs on a blocking thread.
    pub async fn persist(&self, b: &Broker) -> Result<(), ScheduleError> {
        // Taken in the same turn as the checkpoint: every copy it counts lies below.
        let end = b.store.end_offset();
        let Some(cp) = self.checkpoint() else {
            return Ok(());
        };
        // The recalls first: a checkpoint that counts a recall's marker as handled must not
        // reach the disk before the recall does.
        if self.recalls_dirty.replace(false) {
            let bytes = serde_json::to_vec(&*self.recalls.borrow()).unwrap_or_default();
            self.recalls_generation
                .set(self.recalls_generation.get() + 1);
            let (file, generation) = (self.recalls_file.clone(), self.recalls_generation.get());
            if let Err(e) = crate::runtime::blocking(move || file.write(generation, &bytes)).await {
                self.recalls_dirty.set(true);
                return Err(e.into());
            }
        }
        if self.persisted.get() == Some(cp) {
            return Ok(());
        }
        let generation = self.next_generation();
        if let Err(e) = b.store.wait_durable(end).await {
            tracing::warn!(shard = b.index, error = %e, "timer checkpoint not written: the stored copies are not durable yet");
            return Ok(());
        }
        self.write(generation, cp, end).await
    }

    fn next_generation(&self) -> u64 {
        self.generation.set(self.generation.get() + 1);
        self.generation.get()
    }

    async fn write(
        &self,
        generation: u64,
        cp: CheckpointFile,
        end: u64,
    ) -> Result<(), ScheduleError> {
        // Three integers always serialize.
        let bytes = serde_json::to_vec_pretty(&cp).unwrap_or_default();
        let file = self.file.clone();
        crate::runtime::blocking(move || file.write(generation, &bytes)).await?;
        self.persisted.set(Some(cp));
        self.persisted_end.set(end);
        Ok(())
    }

    /// RocketMQ's GET_TIMER_CHECK_POINT body for the checkpoint on disk (all zero before the
    /// first): its 56 bytes, big-endian, then ramjet's own 8.
    /// - 0 `lastReadTimeMs`, 16 `lastTimerQueueOffset`: as in the file.
    /// - 8 `lastTimerLogFlushPos`: ramjet has no timer log; the CommitLog end below which
    ///   every copy the checkpoint counts as handled lies.
    /// - 24 `masterTimerQueueOffset`: `lastTimerQueueOffset` again.
    /// - 32..56 the data version (state version, timestamp, counter): ramjet keeps none, 0.
    /// - 56 `lowQueueOffset`: where a restart starts reading the timer queue.
    pub fn checkpoint_body(&self) -> [u8; CHECKPOINT_BODY_LEN] {
        let cp = self.persisted.get().unwrap_or(CheckpointFile {
            low_queue_offset: 0,
            last_timer_queue_offset: 0,
            last_read_time_ms: 0,
        });
        let mut out = [0u8; CHECKPOINT_BODY_LEN];
        let fields = [
            (0, cp.last_read_time_ms),
            (8, self.persisted_end.get() as i64),
            (16, cp.last_timer_queue_offset),
            (24, cp.last_timer_queue_offset),
            (56, cp.low_queue_offset),
        ];
        for (at, v) in fields {
            out[at..at + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// A slave takes its master's checkpoint ([`Self::checkpoint_body`]) once its own log
    /// holds, durably, every copy the checkpoint counts as handled; until then it keeps the
    /// one it has (restarted as master it would deliver some again, never skip one). Returns
    /// whether it wrote a new one.
    pub async fn take_from_master(&self, b: &Broker, body: &[u8]) -> Result<bool, String> {
        let (cp, end) = decode_checkpoint_body(body)?;
        if cp.last_timer_queue_offset == 0 || self.persisted.get() == Some(cp) {
            // Nothing loaded on the master yet, or nothing new.
            return Ok(false);
        }
        if b.store.end_offset() < end {
            // Not replicated this far yet: the next round.
            return Ok(false);
        }
        let generation = self.next_generation();
        b.store
            .wait_durable(end)
            .await
            .map_err(|e| format!("the replicated copies are not durable: {e}"))?;
        self.write(generation, cp, end)
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// `"low/last/readTime"` of the checkpoint on disk (a slave's: the one it took).
    pub fn describe_persisted(&self) -> String {
        self.persisted.get().map_or(String::from("-"), |c| {
            format!(
                "{}/{}/{}",
                c.low_queue_offset, c.last_timer_queue_offset, c.last_read_time_ms
            )
        })
    }
}

/// The checkpoint and CommitLog end of a GET_TIMER_CHECK_POINT body
/// ([`TimerWheel::checkpoint_body`]).
fn decode_checkpoint_body(body: &[u8]) -> Result<(CheckpointFile, u64), String> {
    let Some(body) = body.get(..CHECKPOINT_BODY_LEN) else {
        return Err(format!(
            "a timer checkpoint of {} bytes, not {CHECKPOINT_BODY_LEN}: not from a ramjet master",
            body.len()
        ));
    };
    let at = |i: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&body[i..i + 8]);
        i64::from_be_bytes(v)
    };
    let cp = CheckpointFile {
        low_queue_offset: at(56),
        last_timer_queue_offset: at(16),
        last_read_time_ms: at(0),
    };
    cp.check()?;
    let end = u64::try_from(at(8)).map_err(|_| format!("CommitLog end {} below 0", at(8)))?;
    Ok((cp, end))
}

impl CheckpointFile {
    fn check(&self) -> Result<(), String> {
        if self.low_queue_offset < 0 || self.last_timer_queue_offset < self.low_queue_offset {
            return Err(format!(
                "offsets out of order: low {} last {}",
                self.low_queue_offset, self.last_timer_queue_offset
            ));
        }
        Ok(())
    }
}

/// When a send's timer properties (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`
/// values) ask it to be delivered, RocketMQ's precedence applied: delay seconds, then delay
/// ms, then the deliver time. `Ok(None)`: none is set.
pub fn deliver_time(
    at: Option<&[u8]>,
    delay_s: Option<&[u8]>,
    delay_ms: Option<&[u8]>,
    now: i64,
) -> Result<Option<i64>, String> {
    let num = |name: &str, v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                format!(
                    "timer message illegal: {name} {:?} is not a whole number",
                    String::from_utf8_lossy(v)
                )
            })
    };
    if let Some(v) = delay_s {
        return Ok(Some(now.saturating_add(
            num(properties::TIMER_DELAY_SEC, v)?.saturating_mul(1000),
        )));
    }
    if let Some(v) = delay_ms {
        return Ok(Some(
            now.saturating_add(num(properties::TIMER_DELAY_MS, v)?),
        ));
    }
    match at {
        Some(v) => Ok(Some(num(properties::TIMER_DELIVER_MS, v)?)),
        None => Ok(None),
    }
}

/// Where a message whose timer asks for `deliver` (ms) goes: `Ok(None)` when that is not in
/// the future (stored at once, as sent); else its properties for [`TIMER_TOPIC`] (`REAL_TOPIC`
/// / `REAL_QID` / `TIMER_OUT_MS`, and [`TIMER_FIRE_MS`] beyond the roll window) in `out`, and
/// the unit's tags code (when the service takes it up).
pub fn timer_target(
    b: &Broker,
    deliver: i64,
    now: i64,
    topic: &str,
    queue_id: i32,
    props: &[u8],
    out: &mut PropertiesBuilder,
) -> Result<Option<i64>, TimerRefusal> {
    if deliver <= now {
        return Ok(None);
    }
    let max = b.cfg.broker.timer_max_delay_ms as i64;
    if deliver - now > max {
        return Err((
            ResponseCode::MESSAGE_ILLEGAL,
            format!(
                "timer message illegal, the delay time should not be bigger than the max delay {max}ms (broker.timer_max_delay_ms); asked for {}ms",
                deliver - now
            ),
        ));
    }
    let limit = b.cfg.broker.timer_max_pending;
    if b.timer.pending(b) >= limit {
        return Err((
            ResponseCode::SYSTEM_BUSY,
            format!(
                "[TIMER_FLOW_CONTROL]timer message is under flow control: {limit} timer messages wait on this shard (broker.timer_max_pending)"
            ),
        ));
    }
    let fire = deliver.min(now.saturating_add(b.timer.roll_window_ms));
    let illegal = |e: RecordError| (ResponseCode::MESSAGE_ILLEGAL, e.to_string());
    // Any earlier timer bookkeeping in the properties is replaced by ours.
    let skip = [
        properties::REAL_TOPIC,
        properties::REAL_QID,
        properties::TIMER_OUT_MS,
        TIMER_FIRE_MS,
    ];
    real_target_skipping(topic, queue_id, props, &skip, out).map_err(illegal)?;
    push_num(out, properties::TIMER_OUT_MS, deliver).map_err(illegal)?;
    if fire < deliver {
        push_num(out, TIMER_FIRE_MS, fire).map_err(illegal)?;
    }
    Ok(Some(fire))
}

/// A recall marker's property: the deliver time of the message it recalls (ramjet's own).
const RECALL_OF_MS: &str = "TIMER_RECALL_OF_MS";

/// How long a recall is remembered past its message's deliver time (a marker for a message
/// that never comes up does not stay forever).
const RECALL_KEEP_MS: i64 = 60_000;

impl TimerWheel {
    /// Remembers a recall of the message `key` (`<topic>+<UNIQ_KEY>`) due at `deliver`.
    fn note_recall(&self, key: &str, deliver: i64, now: i64) {
        let mut r = self.recalls.borrow_mut();
        r.retain(|_, due| *due >= now - RECALL_KEEP_MS);
        r.insert(key.to_string(), deliver);
        self.recalls_dirty.set(true);
    }

    /// Whether the message of `topic` with `uniq_key` was recalled; forgets the recall.
    fn take_recall(&self, topic: Option<&[u8]>, uniq_key: Option<&[u8]>) -> bool {
        let mut r = self.recalls.borrow_mut();
        if r.is_empty() {
            return false;
        }
        let (Some(topic), Some(id)) = (topic, uniq_key) else {
            return false;
        };
        let key = format!(
            "{}+{}",
            String::from_utf8_lossy(topic),
            String::from_utf8_lossy(id)
        );
        let taken = r.remove(&key).is_some();
        if taken {
            self.recalls_dirty.set(true);
        }
        taken
    }
}

/// RocketMQ's delete key of a timer message.
fn recall_key(topic: &str, uniq_key: &str) -> String {
    format!("{topic}+{uniq_key}")
}

/// RECALL_MESSAGE (370, RocketMQ 5.3): the producer of a timer message takes it back before
/// its time, with the handle its send's answer gave (`remoting::recall`). A marker goes into
/// the timer queue, due at once, carrying RocketMQ's delete key (`TIMER_DEL_UNIQKEY` =
/// `<topic>+<UNIQ_KEY>`); when the message comes up it is skipped (`ramjet.timerRecalled`).
/// The recall is remembered at once and written to [`TIMER_RECALLS_FILE`] before the
/// checkpoint that counts the marker; a restart before that reads the marker again. Answered
/// as a send is (after the fdatasync / the slave when those are waited for). Refusals are
/// RocketMQ's codes and remarks.
pub fn recall(
    b: &Broker,
    conn: &Rc<super::conn::Conn>,
    req: &ramjet_core::remoting::CommandView<'_>,
) {
    use ramjet_core::remoting::headers::{RecallMessageRequestHeader, RecallMessageResponseHeader};
    use ramjet_core::remoting::recall::RecallHandle;
    let Some(h) = super::queries::decode::<RecallMessageRequestHeader>(conn, req) else {
        return;
    };
    let refuse = |code: i32, remark: &str| conn.respond_error(req, code, remark);
    if !b.cfg.broker.timer_enable {
        return refuse(
            ResponseCode::NO_PERMISSION,
            "recall failed, operation is forbidden (broker.timer_enable = false)",
        );
    }
    if b.ha.is_slave() {
        return refuse(
            ResponseCode::SLAVE_NOT_AVAILABLE,
            "recall failed, broker service not available (this broker is a slave)",
        );
    }
    if !b.topics.contains(h.topic) {
        return refuse(
            ResponseCode::TOPIC_NOT_EXIST,
            &format!("recall failed, the topic[{}] not exist", h.topic),
        );
    }
    let handle = match RecallHandle::decode(h.recall_handle) {
        Ok(x) => x,
        Err(e) => return refuse(ResponseCode::ILLEGAL_OPERATION, &e.to_string()),
    };
    if handle.topic != h.topic {
        return refuse(
            ResponseCode::ILLEGAL_OPERATION,
            "recall failed, topic not match",
        );
    }
    if handle.broker_name != b.broker_name {
        return refuse(
            ResponseCode::ILLEGAL_OPERATION,
            &format!(
                "recall failed, broker service not available (the handle names broker {}, this is {})",
                handle.broker_name, b.broker_name
            ),
        );
    }
    let now = now_ms();
    let deliver = handle.deliver_ms().unwrap_or(-1);
    let left = deliver - now;
    if left <= 0 || left >= b.cfg.broker.timer_max_delay_ms as i64 {
        return refuse(
            ResponseCode::ILLEGAL_OPERATION,
            "recall failed, timestamp invalid",
        );
    }
    let key = recall_key(&handle.topic, &handle.message_id);
    let mut input = PropertiesBuilder::new();
    let built = input
        .push_str(properties::UNIQ_KEY, &handle.message_id)
        .and_then(|p| p.push_str(properties::TIMER_DEL_UNIQKEY, &key))
        .and_then(|p| p.push_str(RECALL_OF_MS, &deliver.to_string()));
    if let Err(e) = built {
        return refuse(
            ResponseCode::ILLEGAL_OPERATION,
            &format!("recall failed: {e}"),
        );
    }
    // Due at once: the marker is the recall's record in the log until a checkpoint counts
    // it, and by then TIMER_RECALLS_FILE holds the recall.
    let marker_due = now + 1;
    let mut out = PropertiesBuilder::new();
    let fire = match timer_target(b, marker_due, now, h.topic, 0, input.as_bytes(), &mut out) {
        Ok(Some(fire)) => fire,
        Ok(None) => {
            return refuse(
                ResponseCode::ILLEGAL_OPERATION,
                "recall failed, timestamp invalid",
            )
        }
        Err((code, remark)) => return refuse(code, &remark),
    };
    let msg = MessageToStore {
        topic: TIMER_TOPIC,
        queue_id: 0,
        flag: 0,
        body: b"0",
        properties: out.as_bytes(),
        sys_flag: 0,
        born_timestamp: now,
        born_host: conn.peer(),
        store_host: b.addr,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: fire,
    };
    let put = match b.store.put_message(&msg) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                super::send::store_error_code(&e),
                &format!("recall failed: {}", super::send::store_error_remark(&e)),
            )
        }
    };
    b.timer.note_recall(&key, deliver, now);
    stored(b, fire);
    tracing::info!(shard = b.index, topic = h.topic, msg_id = %handle.message_id, deliver, "timer message recalled");
    let answer =
        |conn: &super::conn::Conn, head: &ramjet_core::remoting::FrameHead<'_>, st, id: &str| {
            conn.send_frame(st, head, &RecallMessageResponseHeader { msg_id: id }, &[]);
        };
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    if !super::ha::acks_wait(b) {
        if !oneway {
            let head = ramjet_core::remoting::FrameHead::response(ResponseCode::SUCCESS, opaque);
            answer(conn, &head, st, &handle.message_id);
        }
        return;
    }
    // As a send: answered once the marker is durable (flush = sync) and on a sync slave.
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let id = handle.message_id;
    crate::runtime::spawn_detached(async move {
        let r = super::ha::wait_acked(&broker, put.end_physical_offset).await;
        if oneway {
            return;
        }
        let ok = ramjet_core::remoting::FrameHead::response(ResponseCode::SUCCESS, opaque);
        match &r {
            Ok(()) => answer(&conn, &ok, st, &id),
            Err(f) => answer(
                &conn,
                &ramjet_core::remoting::FrameHead::response(f.code, opaque).with_remark(&f.remark),
                st,
                &id,
            ),
        }
    });
}

/// A timer message firing at `fire` was stored in [`TIMER_TOPIC`].
pub fn stored(b: &Broker, fire: i64) {
    b.timer.stored(fire);
}

/// Appends `name` = `v` in decimal, without an allocation (by hand: `core::fmt` took 3 % of
/// the shard's CPU at ~240k timer messages/s, three numbers per message).
fn push_num(out: &mut PropertiesBuilder, name: &str, v: i64) -> Result<(), RecordError> {
    let mut buf = [0u8; 20];
    out.push(name, format_i64(v, &mut buf))?;
    Ok(())
}

fn parse_num(v: Option<&[u8]>) -> Option<i64> {
    std::str::from_utf8(v?).ok()?.trim().parse().ok()
}

/// The timer service loop of one shard: loads new units, delivers or rolls what is due,
/// writes the checkpoint every `broker.offset_persist_interval_ms`, and sleeps until the next
/// fire time (at most `broker.schedule_check_ms`, or until a send stores an earlier one).
pub async fn run(b: Rc<Broker>) {
    let Some(wake) = b.timer.wake_rx.borrow_mut().take() else {
        return;
    };
    let t = &b.timer;
    let check = b.cfg.broker.schedule_check_ms.max(1) as i64;
    let persist_every = Duration::from_millis(b.cfg.broker.offset_persist_interval_ms.max(100));
    let mut last_persist = Instant::now();
    loop {
        let more_to_load = t.load(&b);
        let pass = fire_pass(&b).await;
        if last_persist.elapsed() >= persist_every {
            last_persist = Instant::now();
            if let Err(e) = t.persist(&b).await {
                tracing::error!(shard = b.index, error = %e, "writing the timer checkpoint failed");
            }
        }
        if more_to_load || pass.more {
            crate::runtime::sleep(BUSY_PAUSE).await;
            continue;
        }
        let now = now_ms();
        let until = pass.next_fire.unwrap_or(i64::MAX).min(now + check);
        t.sleeping_until.set(until);
        let ms = (until - now).clamp(1, check) as u64;
        let _ = crate::runtime::timeout(Duration::from_millis(ms), wake.recv()).await;
        t.sleeping_until.set(i64::MIN);
    }
}

/// What one pass found.
struct Pass {
    /// Stopped at [`MAX_FIRES_PER_PASS`]: more may be due now.
    more: bool,
    /// When the next unit fires, if one waits.
    next_fire: Option<i64>,
}

/// Delivers or rolls up to [`MAX_FIRES_PER_PASS`] due units.
async fn fire_pass(b: &Broker) -> Pass {
    let t = &b.timer;
    let mut pass = Pass {
        more: false,
        next_fire: None,
    };
    let retry_at = || now_ms() + b.cfg.broker.schedule_check_ms as i64;
    let mut handled = 0;
    loop {
        let Some((fire, offset)) = t.waiting.borrow().peek() else {
            break;
        };
        if fire > now_ms() {
            pass.next_fire = Some(fire);
            break;
        }
        if handled == MAX_FIRES_PER_PASS {
            pass.more = true;
            break;
        }
        handled += 1;
        let unit = b
            .store
            .queue_unit(TIMER_TOPIC, 0, offset)
            .filter(|u| !u.is_filler() && u.size > 0);
        let Some(unit) = unit else {
            t.drop_unit(b.index, offset, "removed by retention before delivery");
            continue;
        };
        let r = match deliver_from_memory(b, unit.physical_offset, unit.size, take_up) {
            Found::Delivered(r) => r,
            Found::OnFile(cold) => {
                // On file: read in off the shard first, then read and check it (CRC).
                read_in(b, cold, &t.cold_reads).await;
                let rec = b.store.read_record(unit.physical_offset).await;
                rec.and_then(|rec| take_up(b, &rec))
            }
        };
        match r {
            Ok(true) => t.pop(offset),
            Ok(false) => t.drop_unit(
                b.index,
                offset,
                "without a valid REAL_TOPIC / REAL_QID / TIMER_OUT_MS",
            ),
            Err(e) => {
                if let Some(n) = t.warn.due() {
                    tracing::warn!(shard = b.index, offset, physical_offset = unit.physical_offset, error = %e, failures = n, "timer message not read or not stored yet; will retry");
                }
                // Unreadable, a full store, a busy flusher: try again soon.
                pass.next_fire = Some(retry_at());
                break;
            }
        }
    }
    pass
}

/// Takes up a due timer record: stores its copy in its real topic when its deliver time has
/// come, else writes it again at the timer queue's tail for the next window. `Ok(false)`: the
/// record does not say where or when it goes.
fn take_up(b: &Broker, rec: &[u8]) -> Result<bool, StoreError> {
    let t = &b.timer;
    let now = now_ms();
    let view = RecordView::parse(rec).map_err(StoreError::Record)?;
    let props = view.properties();
    let [out_ms, rolls, enqueued, real_topic, real_qid, recall_key] = properties::get_many(
        props,
        [
            properties::TIMER_OUT_MS,
            properties::TIMER_ROLL_TIMES,
            properties::TIMER_ENQUEUE_MS,
            properties::REAL_TOPIC,
            properties::REAL_QID,
            properties::TIMER_DEL_UNIQKEY,
        ],
    );
    let Some(deliver) = parse_num(out_ms) else {
        return Ok(false);
    };
    if deliver <= now {
        if let Some(key) = recall_key {
            // A recall marker: nothing is delivered. It names the message's time in
            // RECALL_OF_MS; the message is skipped when it comes up.
            let key = String::from_utf8_lossy(key);
            let of = parse_num(properties::get(props, RECALL_OF_MS)).unwrap_or(deliver);
            t.note_recall(&key, of, now);
            return Ok(true);
        }
        if t.take_recall(real_topic, properties::get(props, properties::UNIQ_KEY)) {
            ShardCounters::add(&t.recalled, 1);
            return Ok(true);
        }
    }
    let enqueued = parse_num(enqueued).unwrap_or_else(|| view.store_timestamp());
    let mut out = t.props.borrow_mut();
    out.clear();
    let skip = [
        TIMER_FIRE_MS,
        properties::TIMER_ROLL_TIMES,
        properties::TIMER_ENQUEUE_MS,
        properties::TIMER_DEQUEUE_MS,
    ];
    out.extend_from(props, &skip).map_err(StoreError::Record)?;
    push_num(&mut out, properties::TIMER_ENQUEUE_MS, enqueued).map_err(StoreError::Record)?;
    // Either copy is durable before a checkpoint that counts it is written: `persist` waits
    // for the log's end first.
    if deliver > now {
        // Not yet: the next window.
        let fire = deliver.min(now.saturating_add(t.roll_window_ms));
        let n = parse_num(rolls).unwrap_or(0).saturating_add(1);
        push_num(&mut out, properties::TIMER_ROLL_TIMES, n).map_err(StoreError::Record)?;
        if fire < deliver {
            push_num(&mut out, TIMER_FIRE_MS, fire).map_err(StoreError::Record)?;
        }
        let _ = b.store.put_message(&MessageToStore {
            tags_code: fire,
            ..MessageToStore::copy_of(&view, TIMER_TOPIC, 0, out.as_bytes(), b.addr)
        })?;
        ShardCounters::add(&t.rolled, 1);
    } else {
        let topic = real_topic.and_then(|t| std::str::from_utf8(t).ok());
        let queue_id = parse_num(real_qid).and_then(|q| i32::try_from(q).ok());
        let (Some(topic), Some(queue_id)) = (topic, queue_id) else {
            return Ok(false);
        };
        if let Some(n) = rolls {
            out.push(properties::TIMER_ROLL_TIMES, n)
                .map_err(StoreError::Record)?;
        }
        push_num(&mut out, properties::TIMER_DEQUEUE_MS, now).map_err(StoreError::Record)?;
        let _ = b.store.put_message(&MessageToStore {
            tags_code: properties::get(out.as_bytes(), properties::TAGS).map_or(0, tag_hash_bytes),
            ..MessageToStore::copy_of(&view, topic, queue_id, out.as_bytes(), b.addr)
        })?;
        ShardCounters::add(&t.delivered, 1);
    }
    ShardCounters::add(&b.counters.msgs_put, 1);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_time_follows_rocketmqs_precedence() {
        let now = 1_000_000;
        assert_eq!(deliver_time(None, None, None, now), Ok(None));
        assert_eq!(
            deliver_time(Some(b"1000500"), None, None, now),
            Ok(Some(1_000_500))
        );
        assert_eq!(
            deliver_time(Some(b"1000500"), None, Some(b"250"), now),
            Ok(Some(1_000_250))
        );
        assert_eq!(
            deliver_time(Some(b"1000500"), Some(b"3"), Some(b"250"), now),
            Ok(Some(1_003_000))
        );
        let e = deliver_time(None, Some(b"soon"), None, now).unwrap_err();
        assert!(e.contains("TIMER_DELAY_SEC") && e.contains("soon"), "{e}");
        let e = deliver_time(Some(b"12x"), None, None, now).unwrap_err();
        assert!(e.contains("TIMER_DELIVER_MS"), "{e}");
    }

    #[test]
    fn the_low_offset_follows_the_first_pending_block() {
        let dir = tempfile::tempdir().unwrap();
        let t = TimerWheel::open(dir.path(), 60_000, 0).unwrap();
        assert_eq!(t.low(), 0);
        let block = 1i64 << BLOCK_SHIFT;
        for o in [5, 6, block + 1, 3 * block + 2] {
            t.waiting.borrow_mut().push(o, o);
            t.block_add(o);
        }
        t.loaded.set(3 * block + 3);
        assert_eq!(t.low(), 0);
        // Handled in fire order (= offset order here).
        t.pop(5);
        assert_eq!(t.low(), 0);
        t.pop(6);
        assert_eq!(t.low(), block, "block 0 is done");
        t.pop(block + 1);
        assert_eq!(t.low(), 3 * block);
        t.pop(3 * block + 2);
        assert_eq!(
            t.low(),
            3 * block + 3,
            "nothing pending: the next offset to load"
        );
        assert_eq!(
            t.checkpoint(),
            Some(CheckpointFile {
                low_queue_offset: 3 * block + 3,
                last_timer_queue_offset: 3 * block + 3,
                last_read_time_ms: i64::MAX,
            })
        );
    }

    #[test]
    fn the_checkpoint_body_has_rocketmqs_layout_and_decodes_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(TIMER_CHECKPOINT_FILE),
            br#"{"lowQueueOffset":4100,"lastTimerQueueOffset":9000,"lastReadTimeMs":77}"#,
        )
        .unwrap();
        let t = TimerWheel::open(dir.path(), 60_000, 123_456).unwrap();
        let body = t.checkpoint_body();
        let be = |i: usize| i64::from_be_bytes(body[i..i + 8].try_into().unwrap());
        assert_eq!(
            [be(0), be(8), be(16), be(24), be(32), be(40), be(48), be(56)],
            [77, 123_456, 9000, 9000, 0, 0, 0, 4100]
        );
        let (cp, end) = decode_checkpoint_body(&body).unwrap();
        assert_eq!(t.persisted.get(), Some(cp));
        assert_eq!(end, 123_456);
        assert_eq!(t.describe_persisted(), "4100/9000/77");
        // RocketMQ's 56 bytes lack the low offset; offsets out of order are refused.
        let e = decode_checkpoint_body(&body[..56]).unwrap_err();
        assert!(e.contains("56 bytes"), "{e}");
        let mut bad = body;
        bad[56..64].copy_from_slice(&9001i64.to_be_bytes());
        assert!(decode_checkpoint_body(&bad)
            .unwrap_err()
            .contains("out of order"));
        // Nothing written yet: all zero, the end of the log at open.
        let empty = tempfile::tempdir().unwrap();
        let t = TimerWheel::open(empty.path(), 60_000, 5).unwrap();
        let (cp, end) = decode_checkpoint_body(&t.checkpoint_body()).unwrap();
        assert_eq!(
            (cp.last_timer_queue_offset, cp.low_queue_offset, end),
            (0, 0, 5)
        );
        assert_eq!(t.describe_persisted(), "-");
    }

    #[test]
    fn a_restart_starts_where_the_checkpoint_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(TIMER_CHECKPOINT_FILE),
            br#"{"lowQueueOffset":4100,"lastTimerQueueOffset":9000,"lastReadTimeMs":77}"#,
        )
        .unwrap();
        let t = TimerWheel::open(dir.path(), 60_000, 0).unwrap();
        assert_eq!((t.start.get(), t.loaded.get()), (4100, 4100));
        assert_eq!((t.recover_until, t.recover_before), (9000, 77));
        // Still re-reading what the last run left: no checkpoint yet.
        assert_eq!(t.checkpoint(), None);
        // A pending unit in the first block does not move the low offset below the start.
        t.waiting.borrow_mut().push(80, 4101);
        t.block_add(4101);
        t.loaded.set(9000);
        assert_eq!(t.checkpoint().map(|c| c.low_queue_offset), Some(4100));
        std::fs::write(
            dir.path().join(TIMER_CHECKPOINT_FILE),
            br#"{"lowQueueOffset":10,"lastTimerQueueOffset":9,"lastReadTimeMs":77}"#,
        )
        .unwrap();
        let e = TimerWheel::open(dir.path(), 60_000, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("out of order"), "{e}");
    }

    #[test]
    fn waiting_units_come_out_earliest_first() {
        let mut w = Waiting::default();
        // Loaded in queue order; fire times partly in order.
        let units = [
            (10, 0),
            (20, 1),
            (15, 2),
            (20, 3),
            (30, 4),
            (5, 5),
            (30, 6),
            (25, 7),
        ];
        for (f, o) in units {
            w.push(f, o);
        }
        assert_eq!((w.sorted.len(), w.heap.len()), (5, 3));
        assert_eq!(w.len(), 8);
        let mut out = Vec::new();
        while let Some(u) = w.peek() {
            assert_eq!(w.pop(), Some(u), "pop takes what peek showed");
            out.push(u);
        }
        let mut want = units.to_vec();
        want.sort();
        assert_eq!(out, want);
        assert_eq!((w.peek(), w.len()), (None, 0));
    }

    #[test]
    fn numbers_are_written_without_allocating() {
        let mut b = PropertiesBuilder::new();
        push_num(&mut b, "A", i64::MIN).unwrap();
        push_num(&mut b, "B", 1_700_000_000_123).unwrap();
        assert_eq!(
            properties::get_str(b.as_bytes(), "A"),
            Some("-9223372036854775808")
        );
        assert_eq!(
            parse_num(properties::get(b.as_bytes(), "B")),
            Some(1_700_000_000_123)
        );
    }
}
