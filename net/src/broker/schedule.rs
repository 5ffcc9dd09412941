//! Delayed messages and consumer retries: the schedule service of one shard, and
//! CONSUMER_SEND_MSG_BACK (36). Spec §7.4 and §7.5.
//!
//! A send with property `DELAY` = level > 0 is stored in `SCHEDULE_TOPIC_XXXX`, queue
//! `level - 1`, with `REAL_TOPIC` / `REAL_QID` added; its ConsumeQueue unit holds the time it
//! is due (`ramjet_storage::schedule`). The service walks each level's queue in order and,
//! once a message is due, stores a copy in its real topic and queue (`DELAY` removed, tags
//! code recomputed, born time and host, flag, sysflag and reconsume count kept). One queue per
//! level means every queue is in due order, so a walk stops at the first message not yet due.
//!
//! Where each level's walk stands is kept in `config/delayOffset.json`
//! (`{"offsetTable":{"1":12,...}}`, RocketMQ's file with its keys quoted). It is written only
//! after the copies below that point are durable, so a crash repeats deliveries (at least
//! once, as in RocketMQ) but never skips one.
//!
//! Send-back: a consumer that failed a message asks the broker to retry it. The broker reads
//! the record at the given CommitLog offset and stores a copy for `%RETRY%<group>` with the
//! reconsume count + 1, delayed by level `3 + reconsumeTimes` (or the level asked for); at the
//! group's limit (`maxReconsumeTimes`, else `broker.retry_max_times`) or with a negative level
//! the copy goes to `%DLQ%<group>` at once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::{
    offset_msg_id, properties, properties::PropertiesBuilder, tag_hash_bytes, MessageToStore,
    RecordView,
};
use ramjet_core::remoting::headers::ConsumerSendMsgBackRequestHeader;
use ramjet_core::remoting::{CommandView, FrameHead, ResponseCode};
use ramjet_storage::schedule::{delay_level, due_time, SCHEDULE_TOPIC};
use ramjet_storage::{Chunk, StoreError};
use serde::{Deserialize, Serialize};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::persist::{read_optional, PersistError, SnapshotFile};
use super::shard::{Broker, ShardCounters};
use super::topics::{DLQ_PREFIX, PERM_READ, PERM_WRITE, RETRY_PREFIX};

/// File name under the shard's `config/` directory (RocketMQ's name).
pub const DELAY_OFFSETS_FILE: &str = "delayOffset.json";

/// Most messages one level delivers per pass before the shard's other work gets its turn
/// (~1 ms of work). With a timer pause after each pass, 256 per pass delivered only half as
/// fast as a saturating closed-loop producer sent, so the delivery lag grew without bound;
/// 1024 kept up (2.5-2.7 M delivered of 2.7 M sent in 8 s) at p99.9 10-15 ms for the sends
/// (perf/results/session29-2026-12-07.md section 3).
const MAX_DELIVERIES_PER_PASS: usize = 1024;

/// Pause between two passes while more is due (see [`run`]): long enough that the executor
/// polls its sockets before the timer fires.
const BUSY_PAUSE: Duration = Duration::from_micros(20);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("delay offset file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("timer checkpoint {path} is corrupt: {reason}")]
    TimerCorrupt { path: String, reason: String },
}

#[derive(Serialize, Deserialize, Default)]
struct DelayOffsetFile {
    #[serde(rename = "offsetTable")]
    offset_table: BTreeMap<String, i64>,
    /// In a GET_ALL_DELAY_OFFSET body only (ramjet's; RocketMQ ignores it): the CommitLog end
    /// below which every copy the offsets count as delivered lies. Absent (0) from a RocketMQ
    /// master.
    #[serde(
        rename = "commitLogEnd",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    commit_log_end: Option<u64>,
}

/// One shard's schedule service state: per level, the next queue offset to deliver.
pub struct Scheduler {
    /// Delay per level in ms (index 0 = level 1), the store's table.
    levels: Vec<u64>,
    next: RefCell<Vec<i64>>,
    /// What the file holds.
    persisted: RefCell<Vec<i64>>,
    /// CommitLog end when `persisted` was taken (at open: the recovered log's end): every
    /// copy it counts as delivered lies below. A slave takes the offsets only once its own
    /// log reaches this far.
    persisted_end: Cell<u64>,
    file: SnapshotFile,
    generation: Cell<u64>,
    /// Delivered copies since start (`ramjet.scheduleDelivered`).
    pub delivered: Cell<u64>,
    /// Send-backs stored for retry / to the DLQ (`ramjet.sendBackRetry`, `ramjet.sendBackDlq`).
    pub sent_back_retry: Cell<u64>,
    pub sent_back_dlq: Cell<u64>,
    /// Scheduled records read into the page cache off the shard before delivery
    /// (`ramjet.scheduleColdReads`).
    pub cold_reads: Cell<u64>,
    /// Sent-back records read in off the shard first (`ramjet.sendBackColdReads`).
    pub send_back_cold_reads: Cell<u64>,
    /// The delivered copy's properties, reused from message to message.
    props: RefCell<PropertiesBuilder>,
    /// The properties of a delayed send (`REAL_TOPIC` / `REAL_QID` added), reused from send
    /// to send.
    pub(crate) send_props: RefCell<PropertiesBuilder>,
    /// Where a due record lies (tail cache or file), reused from message to message.
    chunks: RefCell<Vec<Chunk>>,
    /// Rate limit of the "cannot deliver" warnings (a full disk fails every pass).
    warn: ramjet_core::ratelog::LogEvery,
}

impl Scheduler {
    /// Loads `<config_dir>/delayOffset.json` (all levels at 0 when absent). `log_end`: where
    /// the recovered CommitLog ends (the offsets' copies lie below).
    pub fn open(
        config_dir: &Path,
        levels: Vec<u64>,
        log_end: u64,
    ) -> Result<Scheduler, ScheduleError> {
        let path = config_dir.join(DELAY_OFFSETS_FILE);
        let mut next = vec![0i64; levels.len()];
        if let Some(bytes) = read_optional(&path)? {
            let corrupt = |reason: String| ScheduleError::Corrupt {
                path: path.display().to_string(),
                reason,
            };
            let f: DelayOffsetFile =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            for (k, v) in f.offset_table {
                let level: usize = k
                    .parse()
                    .map_err(|_| corrupt(format!("key {k:?} is not a delay level")))?;
                if v < 0 {
                    return Err(corrupt(format!("level {level}: negative offset {v}")));
                }
                match next.get_mut(level.wrapping_sub(1)) {
                    Some(slot) => *slot = v,
                    // Levels dropped from the configuration: their messages stay undelivered
                    // until the level is configured again.
                    None => tracing::warn!(
                        level,
                        offset = v,
                        levels = levels.len(),
                        "delay offset file names a level the configuration does not have"
                    ),
                }
            }
        }
        Ok(Scheduler {
            persisted: RefCell::new(next.clone()),
            next: RefCell::new(next),
            levels,
            persisted_end: Cell::new(log_end),
            file: SnapshotFile::new(path),
            generation: Cell::new(0),
            delivered: Cell::new(0),
            sent_back_retry: Cell::new(0),
            sent_back_dlq: Cell::new(0),
            cold_reads: Cell::new(0),
            send_back_cold_reads: Cell::new(0),
            props: RefCell::new(PropertiesBuilder::with_capacity(1024)),
            chunks: RefCell::new(Vec::with_capacity(2)),
            send_props: RefCell::new(PropertiesBuilder::with_capacity(1024)),
            warn: ramjet_core::ratelog::LogEvery::default(),
        })
    }

    pub fn levels(&self) -> &[u64] {
        &self.levels
    }

    /// Next queue offset to deliver of each level (index 0 = level 1).
    pub fn offsets(&self) -> Vec<i64> {
        self.next.borrow().clone()
    }

    fn snapshot(&self) -> (u64, Vec<u8>, Vec<i64>) {
        let next = self.next.borrow().clone();
        let f = DelayOffsetFile {
            offset_table: next
                .iter()
                .enumerate()
                .map(|(i, o)| ((i + 1).to_string(), *o))
                .collect(),
            commit_log_end: None,
        };
        self.generation.set(self.generation.get() + 1);
        // A map of strings and integers always serializes.
        let bytes = serde_json::to_vec_pretty(&f).unwrap_or_default();
        (self.generation.get(), bytes, next)
    }

    /// RocketMQ's GET_ALL_DELAY_OFFSET body (`{"offsetTable":{"1":12,...}}`): the offsets
    /// written to disk, i.e. those whose delivered copies are durable, and (ramjet's)
    /// `commitLogEnd`, below which those copies lie. A slave that takes them and is later made
    /// master delivers again what came after them rather than skipping anything.
    pub fn wrapper_json(&self) -> Vec<u8> {
        let f = DelayOffsetFile {
            offset_table: self
                .persisted
                .borrow()
                .iter()
                .enumerate()
                .map(|(i, o)| ((i + 1).to_string(), *o))
                .collect(),
            commit_log_end: Some(self.persisted_end.get()),
        };
        serde_json::to_vec(&f).unwrap_or_default()
    }

    /// A slave takes its master's delay offsets (GET_ALL_DELAY_OFFSET body) for the levels it
    /// has, once its own log (ending at `log_end`) holds every copy they count as delivered:
    /// until then it keeps the ones it has (restarted as master it would deliver some again,
    /// never skip one). Returns whether any moved (the caller persists them).
    pub fn take_from_master(&self, wrapper: &[u8], log_end: u64) -> Result<bool, String> {
        let f: DelayOffsetFile = serde_json::from_slice(wrapper).map_err(|e| e.to_string())?;
        if f.commit_log_end.is_some_and(|end| end > log_end) {
            // Not replicated this far yet: the next round.
            return Ok(false);
        }
        let mut next = self.next.borrow_mut();
        let mut moved = false;
        for (k, v) in f.offset_table {
            let level: usize = k
                .parse()
                .map_err(|_| format!("key {k:?} is not a delay level"))?;
            if let Some(slot) = next.get_mut(level.wrapping_sub(1)) {
                if *slot != v {
                    *slot = v;
                    moved = true;
                }
            }
        }
        Ok(moved)
    }

    /// Writes the offsets if they moved, once every copy below them is durable. The write
    /// runs on a blocking thread.
    pub async fn persist(&self, b: &Broker) -> Result<(), ScheduleError> {
        if *self.next.borrow() == *self.persisted.borrow() {
            return Ok(());
        }
        // Taken in the same turn as the offsets: every copy they count lies below.
        let end = b.store.end_offset();
        let (generation, bytes, next) = self.snapshot();
        if let Err(e) = b.store.wait_durable(end).await {
            // Not durable: keep the old offsets on disk (the copies may be redelivered).
            tracing::warn!(shard = b.index, error = %e, "delay offsets not written: the delivered copies are not durable yet");
            return Ok(());
        }
        let file = self.file.clone();
        crate::runtime::blocking(move || file.write(generation, &bytes)).await?;
        *self.persisted.borrow_mut() = next;
        self.persisted_end.set(end);
        Ok(())
    }
}

/// The schedule service loop of one shard: delivers what is due, persists the offsets every
/// `broker.offset_persist_interval_ms`, and when nothing more is due sleeps until the earliest
/// waiting message is, at most `broker.schedule_check_ms`.
pub async fn run(b: Rc<Broker>) {
    let check = Duration::from_millis(b.cfg.broker.schedule_check_ms.max(1));
    let persist_every = Duration::from_millis(b.cfg.broker.offset_persist_interval_ms.max(100));
    let mut last_persist = std::time::Instant::now();
    loop {
        let mut busy = false;
        let mut wake = now_ms() + check.as_millis() as i64;
        for level in 1..=b.schedule.levels.len() {
            let pass = deliver_level(&b, level).await;
            busy |= pass.more;
            if let Some(due) = pass.next_due {
                wake = wake.min(due);
            }
        }
        if last_persist.elapsed() >= persist_every {
            last_persist = std::time::Instant::now();
            if let Err(e) = b.schedule.persist(&b).await {
                tracing::error!(shard = b.index, error = %e, "persisting delay offsets failed");
            }
        }
        if busy {
            // More is due: let the shard's other work run, then go on. A timer, not a plain
            // yield: glommio polls the sockets (and fires timers) only when no task is ready,
            // or at its preemption timer (100 ms), so a task that stays ready keeps the new
            // requests of every connection waiting until then. With yields, delayed produce at
            // saturation stalled ~100 ms every 2 s (p99.9 38-76 ms, max 93-102 ms).
            crate::runtime::sleep(BUSY_PAUSE).await;
        } else {
            // Until the earliest waiting message is due (RocketMQ sets each level's timer to
            // its next message the same way), at most `schedule_check_ms`: a new message of
            // an empty level is due no sooner than the shortest delay.
            let ms = (wake - now_ms()).clamp(1, check.as_millis() as i64);
            crate::runtime::sleep(Duration::from_millis(ms as u64)).await;
        }
    }
}

/// What one pass over a level found.
struct Pass {
    /// Stopped at [`MAX_DELIVERIES_PER_PASS`]: more may be due now.
    more: bool,
    /// When the level's next message is due (ms), if it has one waiting.
    next_due: Option<i64>,
}

/// Delivers up to [`MAX_DELIVERIES_PER_PASS`] due messages of `level`.
async fn deliver_level(b: &Broker, level: usize) -> Pass {
    let s = &b.schedule;
    let queue_id = (level - 1) as i32;
    let max = b.store.max_offset(SCHEDULE_TOPIC, queue_id);
    let min = b.store.min_offset(SCHEDULE_TOPIC, queue_id);
    let mut offset = s.next.borrow()[level - 1];
    if offset < min {
        // Retention removed messages that were never delivered (the store kept them past
        // their due time only while the files lasted).
        tracing::warn!(
            shard = b.index,
            level,
            from = offset,
            to = min,
            "scheduled messages removed by retention before delivery"
        );
        offset = min;
    }
    let mut pass = Pass {
        more: false,
        next_due: None,
    };
    let mut delivered = 0;
    while offset < max {
        if delivered == MAX_DELIVERIES_PER_PASS {
            pass.more = true;
            break;
        }
        let Some(unit) = b.store.queue_unit(SCHEDULE_TOPIC, queue_id, offset) else {
            break;
        };
        if unit.is_filler() || unit.size == 0 {
            offset += 1;
            continue;
        }
        if unit.tags_code > now_ms() {
            pass.next_due = Some(unit.tags_code);
            break;
        }
        let r = match deliver_from_memory(b, unit.physical_offset, unit.size, deliver_one) {
            Found::Delivered(r) => r,
            Found::OnFile(cold) => {
                // On file: read in off the shard first, then read and check it (CRC).
                read_in(b, cold, &s.cold_reads).await;
                match b.store.read_record(unit.physical_offset).await {
                    Ok(rec) => deliver_one(b, &rec),
                    Err(e) => {
                        if let Some(n) = s.warn.due() {
                            tracing::error!(shard = b.index, level, offset, physical_offset = unit.physical_offset, error = %e, failures = n, "scheduled message unreadable; will retry");
                        }
                        break;
                    }
                }
            }
        };
        match r {
            Ok(true) => ShardCounters::add(&s.delivered, 1),
            Ok(false) => {
                tracing::error!(
                    shard = b.index,
                    level,
                    offset,
                    "scheduled message without a valid REAL_TOPIC / REAL_QID; skipped"
                );
            }
            Err(e) => {
                if let Some(n) = s.warn.due() {
                    tracing::warn!(shard = b.index, level, offset, error = %e, failures = n, "scheduled message not delivered yet; will retry");
                }
                // Try again soon (a full store, a busy flusher).
                pass.next_due = Some(now_ms() + b.cfg.broker.schedule_check_ms as i64);
                break;
            }
        }
        offset += 1;
        delivered += 1;
        // Recorded per message: the task may be cancelled (shutdown) at the next await.
        s.next.borrow_mut()[level - 1] = offset;
    }
    s.next.borrow_mut()[level - 1] = offset;
    pass
}

/// Where a due record is.
pub(super) enum Found {
    /// Delivered straight from the tail cache (no read, no copy).
    Delivered(Result<bool, StoreError>),
    /// On file: its ranges that are not in the page cache (empty when all are, when the
    /// kernel cannot tell, or when `broker.cold_reads_off_shard` is off).
    OnFile(Vec<super::warm::ColdRange>),
}

/// Hands the record at `physical_offset` to `deliver` from the tail cache if it is wholly
/// there, else says which of its file ranges are cold. One lookup of where the bytes are.
/// `deliver` must not use `b.schedule`'s chunk list (held meanwhile).
pub(super) fn deliver_from_memory(
    b: &Broker,
    physical_offset: u64,
    size: u32,
    deliver: impl FnOnce(&Broker, &[u8]) -> Result<bool, StoreError>,
) -> Found {
    let mut chunks = b.schedule.chunks.borrow_mut();
    chunks.clear();
    // Gone (retention): the read that follows reports it.
    let _ = b.store.chunks_of(physical_offset, size, &mut chunks);
    let mut cold = Vec::new();
    let found = match chunks.as_slice() {
        [Chunk::Memory(slice)] if slice.len() == size as usize => {
            Found::Delivered(deliver(b, slice.as_ref()))
        }
        on_file => {
            if b.cfg.broker.cold_reads_off_shard {
                for c in on_file {
                    if let Chunk::File { file, offset, len } = c {
                        super::warm::push_if_cold(file, *offset, u64::from(*len), &mut cold);
                    }
                }
            }
            Found::OnFile(cold)
        }
    };
    chunks.clear();
    found
}

/// Reads `cold` into the page cache on the blocking thread, so that reading the record next
/// does not wait for the disk on the shard's thread (a level of an hour or two delivers from
/// files the page cache may have dropped).
/// Counts the ranges in `counter`.
pub(super) async fn read_in(b: &Broker, cold: Vec<super::warm::ColdRange>, counter: &Cell<u64>) {
    if cold.is_empty() {
        return;
    }
    ShardCounters::add(counter, cold.len() as u64);
    if let Err(e) = crate::runtime::blocking(move || super::warm::read_in(&cold)).await {
        tracing::debug!(shard = b.index, error = %e, "reading a scheduled record in failed; read on the shard");
    }
}

/// Reads the record at `offset` into the page cache off the shard when its first bytes are on
/// a file range the page cache does not hold (a consumer sends back a message it got long
/// ago), so that reading it next does not wait for the disk on the shard's thread.
pub(super) async fn read_in_record_at(b: &Broker, offset: u64) {
    if !b.cfg.broker.cold_reads_off_shard {
        return;
    }
    let mut cold = Vec::new();
    {
        let mut chunks = b.schedule.chunks.borrow_mut();
        chunks.clear();
        // Its TOTALSIZE: where the record starts tells where it lies (records do not span
        // segments). Gone (retention): the read that follows reports it.
        let _ = b.store.chunks_of(offset, 4, &mut chunks);
        if let Some(Chunk::File { file, offset, len }) = chunks.first() {
            super::warm::push_if_cold(file, *offset, u64::from(*len), &mut cold);
        }
        chunks.clear();
    }
    let Some(at) = cold.pop() else { return };
    ShardCounters::add(&b.schedule.send_back_cold_reads, 1);
    if let Err(e) = crate::runtime::blocking(move || super::warm::read_in_record(at)).await {
        tracing::debug!(shard = b.index, error = %e, "reading a sent-back record in failed; read on the shard");
    }
}

/// Stores the copy of a due scheduled record in its real topic. `Ok(false)`: the record does
/// not say where it goes.
fn deliver_one(b: &Broker, rec: &[u8]) -> Result<bool, StoreError> {
    let view = RecordView::parse(rec).map_err(StoreError::Record)?;
    let props = view.properties();
    let real_topic = properties::get_str(props, properties::REAL_TOPIC);
    let real_qid = properties::get_str(props, properties::REAL_QID).and_then(|q| q.parse().ok());
    let (Some(topic), Some(queue_id)) = (real_topic, real_qid) else {
        return Ok(false);
    };
    let mut out = b.schedule.props.borrow_mut();
    out.clear();
    out.extend_from(props, &[properties::DELAY])
        .map_err(StoreError::Record)?;
    let msg = MessageToStore {
        tags_code: properties::get(out.as_bytes(), properties::TAGS).map_or(0, tag_hash_bytes),
        ..MessageToStore::copy_of(&view, topic, queue_id, out.as_bytes(), b.addr)
    };
    // Durable before the offsets that count it are written: `persist` waits for the log's
    // end first.
    let _ = b.store.put_message(&msg)?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    Ok(true)
}

/// Where a message with `DELAY` goes instead of its topic: the properties with `REAL_TOPIC` /
/// `REAL_QID` added (replacing any earlier ones), the schedule queue and its due time.
pub fn schedule_target(
    levels: &[u64],
    level: usize,
    topic: &str,
    queue_id: i32,
    props: &[u8],
    out: &mut PropertiesBuilder,
) -> Result<(i32, i64), ramjet_core::record::RecordError> {
    // A delay level wins over 5.x timer properties, which go (as RocketMQ clears them).
    real_target_skipping(
        topic,
        queue_id,
        props,
        &[
            properties::REAL_TOPIC,
            properties::REAL_QID,
            properties::TIMER_DELIVER_MS,
            properties::TIMER_DELAY_SEC,
            properties::TIMER_DELAY_MS,
        ],
        out,
    )?;
    Ok(((level - 1) as i32, due_time(levels, level, now_ms())))
}

/// `props` with `REAL_TOPIC` / `REAL_QID` set to `topic` / `queue_id` (replacing any earlier
/// ones), into `out`: what a message parked in a system topic (delayed, or a transaction's
/// half message) carries to find its way back.
pub fn with_real_target(
    topic: &str,
    queue_id: i32,
    props: &[u8],
    out: &mut PropertiesBuilder,
) -> Result<(), ramjet_core::record::RecordError> {
    real_target_skipping(
        topic,
        queue_id,
        props,
        &[properties::REAL_TOPIC, properties::REAL_QID],
        out,
    )
}

/// [`with_real_target`], leaving out the properties named in `skip` (which names
/// `REAL_TOPIC` and `REAL_QID`).
pub(super) fn real_target_skipping(
    topic: &str,
    queue_id: i32,
    props: &[u8],
    skip: &[&str],
    out: &mut PropertiesBuilder,
) -> Result<(), ramjet_core::record::RecordError> {
    // The queue id as text without an allocation.
    let mut qid = [0u8; 20];
    out.clear();
    out.extend_from(props, skip)?
        .push_str(properties::REAL_TOPIC, topic)?
        .push(
            properties::REAL_QID,
            ramjet_core::remoting::ext::format_i64(queue_id.into(), &mut qid),
        )?;
    Ok(())
}

/// CONSUMER_SEND_MSG_BACK (36).
pub fn send_back(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<ConsumerSendMsgBackRequestHeader>(conn, req) else {
        return;
    };
    if h.offset < 0 {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("bad offset {}", h.offset),
        );
    }
    let Some((group_max, retry_queues)) = b.groups.with(h.group, |g| {
        (g.retry_max_times, g.retry_queue_nums.max(1) as u32)
    }) else {
        return conn.respond_error(
            req,
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            &format!("subscription group not exist, {}", h.group),
        );
    };
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    let group = h.group.to_string();
    // The client's limit when it sends one (3.4.9 and later do), else the group's.
    let max_times = h.max_reconsume_times.unwrap_or(group_max);
    let (offset, asked_level) = (h.offset as u64, h.delay_level);
    let origin_id = h.origin_msg_id.map(str::to_string);
    // The record may be on file: read it off the request path, as VIEW_MESSAGE_BY_ID does.
    crate::runtime::spawn_detached(async move {
        let r = send_back_store(
            &broker,
            &group,
            offset,
            asked_level,
            max_times,
            retry_queues,
            origin_id.as_deref(),
        )
        .await;
        if oneway {
            return;
        }
        // As a send: answered once durable (`flush = sync`) and on a slave
        // (`replication = sync`); the copy is stored either way.
        let r = match r {
            Ok(end) if super::ha::acks_wait(&broker) => super::ha::wait_acked(&broker, end)
                .await
                .map_err(|f| (f.code, f.remark)),
            r => r.map(|_| ()),
        };
        let (code, remark) = match r {
            Ok(()) => (ResponseCode::SUCCESS, None),
            Err((code, remark)) => (code, Some(remark)),
        };
        let mut head = FrameHead::response(code, opaque);
        head.remark = remark.as_deref();
        conn.send_frame(st, &head, &(), &[]);
    });
}

/// Stores the retry (or dead-letter) copy of the record at `offset`; returns the CommitLog
/// end of the copy. Errors are (code, remark).
async fn send_back_store(
    b: &Broker,
    group: &str,
    offset: u64,
    asked_level: i32,
    max_times: i32,
    retry_queues: u32,
    origin_id: Option<&str>,
) -> Result<u64, (i32, String)> {
    let sys = |remark: String| (ResponseCode::SYSTEM_ERROR, remark);
    read_in_record_at(b, offset).await;
    let rec = b
        .store
        .read_record(offset)
        .await
        .map_err(|e| sys(format!("look message by offset failed, {offset}: {e}")))?;
    let view = RecordView::parse(&rec).map_err(|e| sys(format!("bad record at {offset}: {e}")))?;
    let props = view.properties();
    let reconsume = view.reconsume_times();
    let to_dlq = reconsume >= max_times || asked_level < 0;
    let target = if to_dlq {
        format!("{DLQ_PREFIX}{group}")
    } else {
        format!("{RETRY_PREFIX}{group}")
    };
    let queues = if to_dlq { 1 } else { retry_queues };
    let target_queues = match b.topics.ensure(&target, queues, PERM_READ | PERM_WRITE) {
        Ok((cfg, created)) => {
            if created {
                tracing::info!(shard = b.index, topic = %target, "topic created for send-back");
                b.registrar.request_now();
            }
            cfg.write_queue_nums.max(1)
        }
        Err(e) => return Err(sys(format!("cannot create {target}: {e}"))),
    };
    // Properties: the original ones, RETRY_TOPIC and ORIGIN_MESSAGE_ID kept where present,
    // else set; DELAY replaced.
    let mut base = PropertiesBuilder::with_capacity(props.len() + 96);
    let bad = |e: ramjet_core::record::RecordError| (ResponseCode::MESSAGE_ILLEGAL, e.to_string());
    base.extend_from(props, &[properties::DELAY]).map_err(bad)?;
    if properties::get(props, properties::RETRY_TOPIC).is_none() {
        base.push_str(properties::RETRY_TOPIC, view.topic())
            .map_err(bad)?;
    }
    if properties::get(props, properties::ORIGIN_MESSAGE_ID).is_none() {
        let own = offset_msg_id(view.store_host(), view.physical_offset());
        let id = origin_id.filter(|s| !s.is_empty()).unwrap_or(own.as_str());
        base.push_str(properties::ORIGIN_MESSAGE_ID, id)
            .map_err(bad)?;
    }
    let levels = b.store.config().delay_levels_ms.clone();
    let mut sched = PropertiesBuilder::new();
    let (topic, queue_id, props_out, tags_code) = if to_dlq {
        let tags = properties::get(base.as_bytes(), properties::TAGS).map_or(0, tag_hash_bytes);
        (target.as_str(), 0, base.as_bytes(), tags)
    } else {
        let level = if asked_level > 0 {
            asked_level
        } else {
            3 + reconsume
        };
        base.push_str(properties::DELAY, &level.to_string())
            .map_err(bad)?;
        // The level as stored (capped at the highest).
        let level = delay_level(&levels, base.as_bytes()).unwrap_or(levels.len());
        // Spread over the retry topic's queues by the record's place (RocketMQ: at random).
        let real_queue = (offset % u64::from(target_queues)) as i32;
        let (q, due) = schedule_target(
            &levels,
            level,
            &target,
            real_queue,
            base.as_bytes(),
            &mut sched,
        )
        .map_err(bad)?;
        (SCHEDULE_TOPIC, q, sched.as_bytes(), due)
    };
    let msg = MessageToStore {
        reconsume_times: reconsume.saturating_add(1),
        tags_code,
        ..MessageToStore::copy_of(&view, topic, queue_id, props_out, b.addr)
    };
    let put = b.store.put_message(&msg).map_err(|e| {
        (
            super::send::store_error_code(&e),
            format!("send-back of {offset} not stored: {e}"),
        )
    })?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    if to_dlq {
        ShardCounters::add(&b.schedule.sent_back_dlq, 1);
        tracing::info!(
            shard = b.index,
            group,
            offset,
            reconsume_times = reconsume,
            max_times,
            "message moved to the dead-letter queue"
        );
    } else {
        ShardCounters::add(&b.schedule.sent_back_retry, 1);
    }
    Ok(put.end_physical_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_file_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let s = Scheduler::open(dir.path(), vec![1000, 2000, 3000], 0).unwrap();
        assert_eq!(s.offsets(), [0, 0, 0]);
        s.next.borrow_mut()[1] = 7;
        let (g, bytes, _) = s.snapshot();
        s.file.write(g, &bytes).unwrap();
        let text = std::fs::read_to_string(dir.path().join(DELAY_OFFSETS_FILE)).unwrap();
        assert!(text.contains("\"offsetTable\""), "{text}");
        assert!(text.contains("\"2\": 7"), "{text}");
        let s = Scheduler::open(dir.path(), vec![1000, 2000, 3000], 0).unwrap();
        assert_eq!(s.offsets(), [0, 7, 0]);
        // Fewer levels configured: the dropped level's offset is not applied anywhere.
        let s = Scheduler::open(dir.path(), vec![1000], 0).unwrap();
        assert_eq!(s.offsets(), [0]);
        std::fs::write(
            dir.path().join(DELAY_OFFSETS_FILE),
            br#"{"offsetTable":{"x":1}}"#,
        )
        .unwrap();
        let e = Scheduler::open(dir.path(), vec![1000], 0).err().unwrap();
        assert!(e.to_string().contains("not a delay level"), "{e}");
        std::fs::write(dir.path().join(DELAY_OFFSETS_FILE), b"{").unwrap();
        assert!(Scheduler::open(dir.path(), vec![1000], 0).is_err());
    }

    #[test]
    fn a_slave_takes_delay_offsets_only_once_its_log_holds_their_copies() {
        let dir = tempfile::tempdir().unwrap();
        let master = Scheduler::open(dir.path(), vec![1000, 2000], 900).unwrap();
        master.persisted.borrow_mut()[0] = 12;
        let body = master.wrapper_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["offsetTable"]["1"], 12);
        assert_eq!(v["commitLogEnd"], 900);
        let slave_dir = tempfile::tempdir().unwrap();
        let slave = Scheduler::open(slave_dir.path(), vec![1000, 2000], 0).unwrap();
        assert!(!slave.take_from_master(&body, 899).unwrap());
        assert_eq!(
            slave.offsets(),
            [0, 0],
            "taken before the slave had the copies"
        );
        assert!(slave.take_from_master(&body, 900).unwrap());
        assert_eq!(slave.offsets(), [12, 0]);
        assert!(
            !slave.take_from_master(&body, 1000).unwrap(),
            "nothing moved"
        );
        // A RocketMQ master sends no end: taken as it comes.
        let plain = br#"{"offsetTable":{"2":5}}"#;
        assert!(slave.take_from_master(plain, 0).unwrap());
        assert_eq!(slave.offsets(), [12, 5]);
    }

    #[test]
    fn schedule_target_replaces_real_topic_and_queue() {
        let levels = [1000u64, 5000];
        let mut p = PropertiesBuilder::new();
        p.push_str("TAGS", "a")
            .unwrap()
            .push_str("REAL_TOPIC", "old")
            .unwrap()
            .push_str("DELAY", "2")
            .unwrap();
        let mut out = PropertiesBuilder::new();
        let before = now_ms();
        let (q, due) = schedule_target(&levels, 2, "T", 3, p.as_bytes(), &mut out).unwrap();
        assert_eq!(q, 1);
        assert!(due >= before + 5000 && due <= now_ms() + 5000);
        let o = out.as_bytes();
        assert_eq!(properties::get_str(o, "REAL_TOPIC"), Some("T"));
        assert_eq!(properties::get_str(o, "REAL_QID"), Some("3"));
        assert_eq!(properties::get_str(o, "TAGS"), Some("a"));
        assert_eq!(properties::get_str(o, "DELAY"), Some("2"));
        assert_eq!(
            properties::iter(o)
                .filter(|(n, _)| *n == b"REAL_TOPIC")
                .count(),
            1
        );
    }
}
