//! [`Store`]: one shard's store, the API the broker uses. Appends are synchronous and in memory
//! (offsets, encode, dispatch, arrival listener); durability is awaited separately
//! ([`Store::wait_durable`]); a background flusher task writes, syncs and checkpoints.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ramjet_core::ratelog::LogEvery;
use ramjet_core::record::{
    encode_record_with, sysflag, MessageToStore, RecordView, PROP_CRC32_LEN,
};

use crate::checkpoint::Checkpoint;
use crate::commitlog::flush::WaitFailure;
use crate::commitlog::{Chunk, CommitLog};
use crate::config::{FlushMode, StoreConfig};
use crate::consumequeue::{Boundary, ConsumeQueueStore};
use crate::error::StoreError;
use crate::index::IndexService;
use crate::io::{self, BackgroundTask};

mod replica;
pub use replica::ReplicaAppend;

/// Where a put landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a put is durable only once wait_durable(end_physical_offset) resolves under flush = sync"]
pub struct PutResult {
    /// CommitLog offset of the first record.
    pub physical_offset: u64,
    /// CommitLog offset just past the last record: pass it to [`Store::wait_durable`].
    pub end_physical_offset: u64,
    /// Queue offset of the first message.
    pub queue_offset: i64,
    pub msg_count: u32,
    /// Store timestamp written into the records (ms since the epoch).
    pub store_timestamp: i64,
}

/// RocketMQ's GetMessageStatus (store side of a pull).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    NoMatchedMessage,
    NoMessageInQueue,
    OffsetTooSmall,
    OffsetOverflowOne,
    OffsetOverflowBadly,
    OffsetFoundNull,
    MessageWasRemoving,
}

impl GetStatus {
    /// RocketMQ's name of the status (the broker puts it in the response remark).
    pub fn as_str(&self) -> &'static str {
        match self {
            GetStatus::Found => "FOUND",
            GetStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            GetStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
            GetStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
            GetStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            GetStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
            GetStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
            GetStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
        }
    }
}

/// Result of [`Store::get_messages`].
#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    /// The matching records, back to back, as memory and file ranges (adjacent ones coalesced).
    pub chunks: Vec<Chunk>,
    pub msg_count: u32,
    /// Total bytes in `chunks`.
    pub total_bytes: u32,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
}

/// Counters of one store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreStats {
    pub messages_appended: u64,
    pub bytes_appended: u64,
    pub puts_refused_busy: u64,
    /// Appends refused for a full disk: above `disk_refuse_ratio`, or after a write hit ENOSPC.
    pub puts_refused_disk_full: u64,
    pub fdatasync_count: u64,
    pub flush_count: u64,
    pub flush_failures: u64,
    /// ConsumeQueue/IndexFile flush rounds, each ending with a checkpoint.
    pub derived_flush_rounds: u64,
    pub chunk_writes: u64,
    pub bytes_written: u64,
    /// Write phases of the pipelined sync flusher cut at `sync_group_max_bytes` (see
    /// [`StoreConfig::sync_group_max_bytes`]).
    pub sync_group_splits: u64,
    pub segments_created: u64,
    /// Zero fills stopped short because appends ran above `zero_fill_max_append_rate` (the segment published as filled so far).
    pub zero_fills_stopped: u64,
    pub segment_rolls: u64,
    pub tail_cache_hits: u64,
    pub tail_cache_misses: u64,
    pub tail_cache_bytes: u64,
    /// CommitLog chunks served from the writer's buffer pool.
    pub write_buffers_reused: u64,
    /// CommitLog chunks that needed a fresh write buffer on the spot.
    pub write_buffers_allocated: u64,
    /// Fresh write buffers stocked into the pool ahead of need (memory the kernel zeroes).
    pub write_buffers_stocked: u64,
    /// Write buffers freed instead of kept (pool full, or trimmed too short to reuse).
    pub write_buffers_released: u64,
    pub commitlog_min_offset: u64,
    pub commitlog_end_offset: u64,
    pub commitlog_durable_offset: u64,
    /// Last measured disk usage of the store's file system (0.0..=1.0).
    pub disk_used_ratio: f64,
}

/// ConsumeQueue directory inside the store (RocketMQ's name).
pub const CONSUMEQUEUE_DIR: &str = "consumequeue";
/// IndexFile directory inside the store (RocketMQ's name).
pub const INDEX_DIR: &str = "index";

/// How often the flusher wakes in sync mode without appends (disk checks, derived files).
const IDLE_TICK_MS: u64 = 100;
/// Pause before retrying after a failed flush (the failure is logged at most once per
/// [`ramjet_core::ratelog::LOG_EVERY`], with the count).
const FLUSH_RETRY_MS: u64 = 100;

/// Called with (topic, queue id, new max offset) after each put.
pub type ArrivalListener = Box<dyn Fn(&str, i32, i64)>;
type DiskProbe = Box<dyn Fn() -> Option<f64>>;

struct Inner {
    cfg: StoreConfig,
    log: Rc<CommitLog>,
    queues: RefCell<ConsumeQueueStore>,
    index: RefCell<IndexService>,
    listener: RefCell<Option<ArrivalListener>>,
    disk_probe: RefCell<Option<DiskProbe>>,
    disk_used_ratio: Cell<f64>,
    shutdown: Cell<bool>,
    flusher: RefCell<Option<BackgroundTask<()>>>,
    /// ConsumeQueue/IndexFile flush, checkpoint and retention, apart from the CommitLog
    /// flusher so that a sync append never waits behind them.
    background: RefCell<Option<BackgroundTask<()>>>,
    counters: Cell<StoreStats>,
    /// `StoreStats::messages_appended` / `bytes_appended`, kept apart from `counters` so that
    /// an append bumps two integers instead of copying the whole stats struct twice.
    messages_appended: Cell<u64>,
    bytes_appended: Cell<u64>,
    /// Store timestamp of the last appended record.
    last_store_timestamp: Cell<i64>,
    /// Reused unit buffer of `get_messages`.
    scratch_units: Cell<Vec<crate::consumequeue::CqEntry>>,
}

/// One shard's store. `!Send`, cheap to clone (an `Rc` inside); use it only from the glommio
/// executor that opened it.
#[derive(Clone)]
pub struct Store {
    inner: Rc<Inner>,
}

/// Wall-clock milliseconds since the epoch for the store timestamp of a record (one read per
/// `put_message`, one per `put_batch`), from `CLOCK_REALTIME_COARSE`.
///
/// Why the coarse clock: `CLOCK_REALTIME` through the vDSO costs ~24 ns on this kind of host (KVM,
/// tsc clocksource), 10 % of an async 100 B append; the coarse clock ~6 ns. It is the same
/// wall clock (same epoch, same NTP steps and slewing), read as of the last timer tick instead
/// of now, so a stamp can be up to one tick (1/CONFIG_HZ: 4 ms at HZ=250, 1 ms at HZ=1000)
/// behind the true time; `clock_getres` reports that tick. That stays within what RocketMQ's
/// own store timestamps carry: RocketMQ sets `storeTimestamp` with `System.currentTimeMillis()`
/// before it takes the CommitLog put lock, so its stamps already lag the real append by the
/// lock wait and are not ordered by offset either; everything that reads the stamp (time
/// search, retention by file age, the `earliest_msg_store_time` query, client latency
/// metrics) works at millisecond-to-hour granularity. Stamps never run ahead of the
/// wall clock. Falls back to `SystemTime` if the coarse clock is unavailable.
#[inline]
fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; clock_gettime
    // only writes it (vDSO call, no other memory touched).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000;
    }
    // Seconds and sub-second millis separately: no 128-bit arithmetic per message.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs() as i64 * 1000 + i64::from(d.subsec_millis())
    })
}

impl Store {
    /// Opens (or creates) the store in `cfg.dir`: runs recovery (validates the CommitLog from the
    /// checkpoint, cuts a torn tail, refuses corruption), re-dispatches records past the
    /// ConsumeQueue/IndexFile durable point, and starts the flusher task. Must be called inside
    /// the shard's glommio executor.
    pub async fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.validate()?;
        crate::prefault::set_huge_pages(cfg.huge_pages);
        if cfg.disable_thp {
            if let Err(e) = crate::prefault::disable_process_thp() {
                tracing::warn!(error = %e, "transparent huge pages could not be turned off for the process (store.disable_thp)");
            }
        }
        std::fs::create_dir_all(&cfg.dir)
            .map_err(|e| StoreError::io("creating store directory", &cfg.dir, e))?;
        io::warm_up(&cfg.dir).await?;
        let mut queues =
            ConsumeQueueStore::load(cfg.dir.join(CONSUMEQUEUE_DIR), cfg.cq_units_per_file)?;
        let mut index =
            IndexService::load(cfg.dir.join(INDEX_DIR), cfg.index_slots, cfg.index_entries)?;
        let recovered = recover(&cfg, &mut queues, &mut index)?;
        let log = CommitLog::open(&cfg, recovered.end_offset, recovered.min_offset).await?;
        let inner = Rc::new(Inner {
            cfg,
            log,
            queues: RefCell::new(queues),
            index: RefCell::new(index),
            listener: RefCell::new(None),
            disk_probe: RefCell::new(None),
            disk_used_ratio: Cell::new(0.0),
            shutdown: Cell::new(false),
            flusher: RefCell::new(None),
            background: RefCell::new(None),
            counters: Cell::new(StoreStats::default()),
            messages_appended: Cell::new(0),
            bytes_appended: Cell::new(0),
            last_store_timestamp: Cell::new(recovered.last_store_timestamp.unwrap_or(0)),
            scratch_units: Cell::new(Vec::new()),
        });
        inner.refresh_disk_usage();
        let latency = Duration::from_micros(inner.cfg.flusher_latency_us);
        let task = match inner.cfg.flush {
            FlushMode::Sync if inner.cfg.sync_pipeline => io::spawn_urgent(
                "commitlog-flusher",
                latency,
                sync_flusher_loop(Rc::downgrade(&inner), inner.log.clone()),
            ),
            FlushMode::Sync | FlushMode::Async => io::spawn_urgent(
                "commitlog-flusher",
                latency,
                flusher_loop(Rc::downgrade(&inner), inner.log.clone()),
            ),
        };
        *inner.flusher.borrow_mut() = Some(task);
        let task = io::spawn(background_loop(Rc::downgrade(&inner)));
        *inner.background.borrow_mut() = Some(task);
        Ok(Store { inner })
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// Bytes the record of `msg` takes in the CommitLog as this store writes it (with the
    /// `__CRC32#` property when `append_prop_crc` is on). Items of a batch lie back to back from
    /// [`PutResult::physical_offset`], each this long.
    #[inline]
    pub fn record_len(&self, msg: &MessageToStore<'_>) -> usize {
        msg.encoded_len_with(self.inner.cfg.append_prop_crc)
    }

    /// Appends one message, in memory: assigns the physical offset, queue offset and store
    /// timestamp, encodes the record straight into the write buffer, dispatches its
    /// ConsumeQueue unit and IndexFile entries, and calls the arrival listener. Never awaits,
    /// never allocates (after a topic/queue's first message). Durable only after
    /// [`Store::wait_durable`] under `flush = sync`.
    pub fn put_message(&self, msg: &MessageToStore<'_>) -> Result<PutResult, StoreError> {
        let inner = &*self.inner;
        inner.admit()?;
        if msg.body.len() > inner.cfg.max_message_bytes {
            return Err(StoreError::MessageTooLarge {
                what: "message body",
                size: msg.body.len(),
                max: inner.cfg.max_message_bytes,
            });
        }
        let prop_crc = inner.cfg.append_prop_crc;
        msg.check_limits_with(prop_crc)?;
        let len = msg.encoded_len_with(prop_crc);
        let dispatched = sysflag::is_dispatched(msg.sys_flag);
        // One ConsumeQueue lookup per message: the slot gives the next queue offset now and
        // takes the unit after the append (a queue's first message goes the slow way).
        let mut queues = inner.queues.borrow_mut();
        let mut slot = if dispatched {
            queues.slot(msg.topic, msg.queue_id)
        } else {
            None
        };
        let queue_offset = slot.as_ref().map_or(0, |s| s.max_offset());
        let ts = now_ms();
        let placed = inner.log.writer.borrow_mut().append(len, |phys, out| {
            encode_record_with(msg, queue_offset, phys as i64, ts, prop_crc, out).map(|_| ())
        });
        let placed = inner.count_refusal(placed)??;
        let phys = placed.offset;
        if dispatched {
            let tags = msg.tags_code;
            match slot.as_mut() {
                Some(s) => s.put(
                    msg.topic,
                    msg.queue_id,
                    queue_offset,
                    phys,
                    len as u32,
                    tags,
                )?,
                None => queues.put(
                    msg.topic,
                    msg.queue_id,
                    queue_offset,
                    phys,
                    len as u32,
                    tags,
                )?,
            };
        }
        drop(queues);
        inner.index_one(msg, phys, len as u32, ts)?;
        inner.appended(1, len as u64, ts);
        if dispatched {
            inner.notify_arrival(msg.topic, msg.queue_id, queue_offset + 1);
        }
        Ok(PutResult {
            physical_offset: phys,
            end_physical_offset: phys + len as u64,
            queue_offset,
            msg_count: 1,
            store_timestamp: ts,
        })
    }

    /// Appends a batch: all items to the same topic and queue, consecutive queue offsets, one
    /// contiguous CommitLog range that never spans two segments.
    pub fn put_batch(&self, msgs: &[MessageToStore<'_>]) -> Result<PutResult, StoreError> {
        let inner = &*self.inner;
        inner.admit()?;
        let Some(first) = msgs.first() else {
            return Err(StoreError::EmptyBatch);
        };
        let prop_crc = inner.cfg.append_prop_crc;
        let mut total = 0usize;
        for (i, m) in msgs.iter().enumerate() {
            if m.topic != first.topic || m.queue_id != first.queue_id {
                return Err(StoreError::MixedBatch {
                    index: i,
                    topic: m.topic.to_string(),
                    queue_id: m.queue_id,
                    batch_topic: first.topic.to_string(),
                    batch_queue_id: first.queue_id,
                });
            }
            if m.body.len() > inner.cfg.max_message_bytes {
                return Err(StoreError::MessageTooLarge {
                    what: "message body",
                    size: m.body.len(),
                    max: inner.cfg.max_message_bytes,
                });
            }
            m.check_limits_with(prop_crc)?;
            total += m.encoded_len_with(prop_crc);
        }
        if total > inner.cfg.max_batch_bytes {
            return Err(StoreError::MessageTooLarge {
                what: "batch",
                size: total,
                max: inner.cfg.max_batch_bytes,
            });
        }
        let dispatched = sysflag::is_dispatched(first.sys_flag);
        let mut queues = inner.queues.borrow_mut();
        let slot = if dispatched {
            queues.slot(first.topic, first.queue_id)
        } else {
            None
        };
        let first_qo = slot.as_ref().map_or(0, |s| s.max_offset());
        let ts = now_ms();
        // Encodes items `items` of the batch into `out`, the first at CommitLog offset `phys`.
        let encode_items = |items: std::ops::Range<usize>, phys: u64, out: &mut [u8]| {
            let mut at = 0usize;
            for (i, m) in msgs.iter().enumerate().take(items.end).skip(items.start) {
                let qo = if dispatched { first_qo + i as i64 } else { 0 };
                let n = encode_record_with(
                    m,
                    qo,
                    (phys + at as u64) as i64,
                    ts,
                    prop_crc,
                    &mut out[at..],
                )?;
                at += n;
            }
            Ok::<(), ramjet_core::record::RecordError>(())
        };
        let split = batch_split(&inner.log.writer.borrow(), msgs, total, prop_crc);
        let placed = match split {
            None => inner
                .log
                .writer
                .borrow_mut()
                .append(total, |phys, out| encode_items(0..msgs.len(), phys, out)),
            Some((k, head_len)) => {
                // Two appends with nothing between them: the batch stays one contiguous range
                // in one segment (checked by `batch_split`), and both fit (room checked for the
                // whole batch, every item's limits checked above).
                let mut w = inner.log.writer.borrow_mut();
                let head = w.append(head_len, |phys, out| encode_items(0..k, phys, out));
                match head {
                    Ok(Ok(h)) => {
                        let tail = w.append(total - head_len, |phys, out| {
                            assert_eq!(phys, h.offset + head_len as u64);
                            encode_items(k..msgs.len(), phys, out)
                        });
                        assert!(
                            matches!(tail, Ok(Ok(_))),
                            "the rest of a split batch was refused after its first part"
                        );
                        Ok(Ok(h))
                    }
                    other => other,
                }
            }
        };
        let placed = inner.count_refusal(placed)??;
        if dispatched {
            let mut phys = placed.offset;
            let mut units = msgs.iter().enumerate().map(|(i, m)| {
                let len = m.encoded_len_with(prop_crc) as u32;
                let at = phys;
                phys += u64::from(len);
                (m, first_qo + i as i64, at, len)
            });
            match slot {
                Some(mut s) => {
                    for (m, qo, at, len) in &mut units {
                        s.put(m.topic, m.queue_id, qo, at, len, m.tags_code)?;
                    }
                }
                None => {
                    for (m, qo, at, len) in &mut units {
                        queues.put(m.topic, m.queue_id, qo, at, len, m.tags_code)?;
                    }
                }
            }
        }
        drop(queues);
        let mut phys = placed.offset;
        for m in msgs {
            let len = m.encoded_len_with(prop_crc);
            inner.index_one(m, phys, len as u32, ts)?;
            phys += len as u64;
        }
        inner.appended(msgs.len() as u64, total as u64, ts);
        if dispatched {
            inner.notify_arrival(first.topic, first.queue_id, first_qo + msgs.len() as i64);
        }
        Ok(PutResult {
            physical_offset: placed.offset,
            end_physical_offset: placed.offset + total as u64,
            queue_offset: first_qo,
            msg_count: msgs.len() as u32,
            store_timestamp: ts,
        })
    }

    /// CommitLog offset below which everything is durable (fdatasync'ed).
    pub fn durable_offset(&self) -> u64 {
        self.inner.log.durable_offset()
    }

    /// Group commit: resolves once a flush (write + fdatasync) covers `end_physical_offset`.
    /// Fails if a flush fails first (the data stays in memory and is retried) or at shutdown.
    pub async fn wait_durable(&self, end_physical_offset: u64) -> Result<(), StoreError> {
        let log = &self.inner.log;
        if log.durable_offset() >= end_physical_offset {
            return Ok(());
        }
        if self.inner.cfg.flush == FlushMode::Sync {
            log.signal.raise();
        } else {
            log.request_whole_flush();
        }
        log.durable
            .wait(end_physical_offset)
            .await
            .map_err(|f| match f {
                WaitFailure::FlushFailed { no_space, reason } => StoreError::FlushFailed {
                    durable_offset: log.durable_offset(),
                    no_space,
                    reason,
                },
                WaitFailure::ShutDown => StoreError::ShutDown,
            })
    }

    /// Resolves when appends of `len` bytes would not be refused with [`StoreError::Busy`].
    pub async fn wait_writable(&self, len: usize) {
        // Callers pass `MessageToStore::encoded_len`; leave room for the `__CRC32#` property
        // (and the 0x02 that may precede it) the store appends.
        let len = if self.inner.cfg.append_prop_crc {
            len + PROP_CRC32_LEN + 1
        } else {
            len
        };
        let log = self.inner.log.clone();
        std::future::poll_fn(move |cx| {
            if log.writer.borrow().has_room(len) {
                std::task::Poll::Ready(())
            } else {
                log.room.register(cx.waker());
                log.signal.raise();
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// The whole record stored at `physical_offset` (query / view by id), validated.
    pub async fn read_record(&self, physical_offset: u64) -> Result<bytes::Bytes, StoreError> {
        self.inner.log.read_record(physical_offset)
    }

    /// Calls `f(topic, queue_id, new_max_offset)` after every put (long-polling wake-ups).
    pub fn set_arrival_listener(&self, f: ArrivalListener) {
        *self.inner.listener.borrow_mut() = Some(f);
    }

    /// Replaces the disk-usage measurement (statvfs of the store directory) with `probe`, which
    /// returns the used ratio 0.0..=1.0 (`None` = fall back to statvfs). For tests of the
    /// refuse ratio, and for deployments that meter quota differently.
    pub fn set_disk_usage_probe(&self, probe: Box<dyn Fn() -> Option<f64>>) {
        *self.inner.disk_probe.borrow_mut() = Some(probe);
        self.inner.refresh_disk_usage();
    }

    /// Re-measures disk usage now (the flusher does it every `disk_check_interval_ms`).
    pub fn refresh_disk_usage(&self) -> f64 {
        self.inner.refresh_disk_usage()
    }

    /// Test hook: while `Some(errno)`, CommitLog writes fail with that OS error (e.g.
    /// `libc::ENOSPC`) before reaching the file, as a full disk would make them.
    pub fn inject_write_fault(&self, errno: Option<i32>) {
        self.inner.log.set_write_fault(errno);
        if errno.is_none() {
            self.inner.log.request_whole_flush();
        }
    }

    /// Flushes everything appended so far (CommitLog write + fdatasync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let end = self.inner.log.end_offset();
        self.inner.log.request_whole_flush();
        self.wait_durable(end).await
    }

    /// Flushes, stops the flusher, writes the checkpoint and closes the files. Appends fail
    /// with [`StoreError::ShutDown`] afterwards.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        if inner.shutdown.replace(true) {
            return Ok(());
        }
        inner.log.request_whole_flush();
        let task = inner.flusher.borrow_mut().take();
        if let Some(t) = task {
            t.join().await;
        }
        // The background loop sees the flag within one tick; the last ConsumeQueue/IndexFile
        // flush and checkpoint happen here, after the CommitLog's final flush.
        let task = inner.background.borrow_mut().take();
        if let Some(t) = task {
            t.join().await;
        }
        // Everything derived reaches the disk before the last checkpoint, so a clean stop
        // leaves nothing for the next start to rebuild. One flush writes at most
        // `index::MAX_FLUSH_ENTRIES` index entries; after a burst the backlog is larger (60 M
        // messages stopped right after a produce benchmark took 65 s of re-dispatch at the
        // next start). Rounds stop when nothing is left, or when one makes no progress.
        let (mut rounds, mut stalled) = (0u32, 0u32);
        loop {
            let before = inner.derived_durable();
            let more = match inner.flush_derived_round(MAX_DERIVED_SCALE).await {
                Ok(more) => more,
                Err(e) => {
                    tracing::error!(error = %e, "final ConsumeQueue/IndexFile flush or checkpoint failed");
                    break;
                }
            };
            rounds += 1;
            // A round can end short of its budget with work left (an IndexFile sealed in it
            // holds newer files for the next round, and writing a sealed file's slot table
            // may not move the durable point): go on while anything is dirty, until a few
            // rounds in a row made no progress.
            if inner.derived_durable() == before {
                stalled += 1;
            } else {
                stalled = 0;
            }
            let dirty = inner.queues.borrow().is_dirty() || inner.index.borrow().is_dirty();
            let go_on = more || (dirty && stalled < MAX_SHUTDOWN_STALLED_ROUNDS);
            if !go_on || rounds >= MAX_SHUTDOWN_FLUSH_ROUNDS {
                break;
            }
        }
        if rounds > 1 {
            tracing::info!(
                rounds,
                "final ConsumeQueue/IndexFile flush took several rounds"
            );
        }
        let res = if inner.log.durable_offset() < inner.log.end_offset() {
            Err(StoreError::FlushFailed {
                durable_offset: inner.log.durable_offset(),
                no_space: false,
                reason: inner
                    .log
                    .durable
                    .current_failure()
                    .map_or_else(|| "final flush did not complete".to_string(), |f| f.1),
            })
        } else {
            Ok(())
        };
        inner.log.durable.close();
        inner.log.close().await?;
        res
    }

    /// One retention sweep (RocketMQ `CleanCommitLogService`): deletes expired CommitLog
    /// segments (or the oldest ones under disk pressure, see [`crate::retention`]) together
    /// with their ConsumeQueue parts, then re-measures disk usage. The flusher runs it every
    /// `retention_check_interval_ms`; callers may run it at any time.
    pub async fn retention_sweep(&self) -> Result<crate::retention::DeletionReport, StoreError> {
        use crate::retention::{
            delete_derived_parts, disk_usage, plan_deletion, segment_ages, unlink_segments,
            DeletionReport, DiskUsage, RetentionPolicy,
        };
        let inner = &*self.inner;
        let cfg = &inner.cfg;
        let retention_err = |e: crate::retention::RetentionError| StoreError::Recovery {
            dir: cfg.dir.clone(),
            reason: format!("retention: {e}"),
        };
        let policy = RetentionPolicy::from_config(cfg).map_err(retention_err)?;
        let mut usage = disk_usage(&cfg.dir).map_err(retention_err)?;
        let probed = inner.disk_probe.borrow().as_ref().and_then(|p| p());
        if let Some(ratio) = probed {
            usage = DiskUsage::from_used_ratio(usage.total_bytes, ratio);
        }
        let segments = segment_ages(inner.log.dir()).map_err(retention_err)?;
        let end = inner.log.end_offset();
        let active_base = end - end % cfg.segment_size_bytes;
        let plan = plan_deletion(&segments, active_base, now_ms(), usage, &policy);
        let derived = delete_derived_parts(inner.log.dir(), &plan, &mut |min| {
            inner.queues.borrow_mut().delete_below(min);
            inner.index.borrow_mut().delete_below(min);
            Ok(())
        })
        .map_err(retention_err)?;
        let report = match derived {
            None => DeletionReport {
                new_min_offset: plan.new_min_offset,
                ..DeletionReport::default()
            },
            Some(new_min) => {
                let (dir, bases) = (inner.log.dir().to_path_buf(), plan.delete_bases.clone());
                io::blocking(move || unlink_segments(&dir, &bases, new_min))
                    .await
                    .map_err(retention_err)?
            }
        };
        if let Some(min) = report.new_min_offset {
            if !report.deleted_bases.is_empty() {
                inner.log.forget_segments_below(min);
                tracing::info!(
                    deleted = report.deleted_bases.len(),
                    freed_bytes = report.freed_bytes,
                    new_min_offset = min,
                    "retention deleted CommitLog segments"
                );
            }
        }
        inner.refresh_disk_usage();
        Ok(report)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        let l = inner.log.stats();
        let mut s = inner.counters.get();
        s.messages_appended = inner.messages_appended.get();
        s.bytes_appended = inner.bytes_appended.get();
        s.fdatasync_count = l.fdatasync_count;
        s.flush_count = l.flush_count;
        s.flush_failures = l.flush_failures;
        s.chunk_writes = l.chunk_writes;
        s.bytes_written = l.bytes_written;
        s.sync_group_splits = l.sync_group_splits;
        s.segments_created = l.segments_created;
        s.zero_fills_stopped = l.zero_fills_stopped;
        s.segment_rolls = l.segment_rolls;
        s.tail_cache_hits = l.tail_cache_hits;
        s.tail_cache_misses = l.tail_cache_misses;
        s.tail_cache_bytes = l.tail_cache_bytes;
        s.write_buffers_reused = l.write_buffers_reused;
        s.write_buffers_allocated = l.write_buffers_allocated;
        s.write_buffers_stocked = l.write_buffers_stocked;
        s.write_buffers_released = l.write_buffers_released;
        s.commitlog_min_offset = inner.log.min_offset();
        s.commitlog_end_offset = l.appended_end;
        s.commitlog_durable_offset = l.durable_end;
        s.disk_used_ratio = inner.disk_used_ratio.get();
        s
    }

    /// Latencies of the durability path since the store opened: waits for fdatasync under
    /// `flush = sync`, each fdatasync, each flusher write phase (see [`crate::latency`]).
    pub fn latency(&self) -> crate::latency::StoreLatency {
        self.inner.log.latency()
    }

    /// [`Store::latency`] over the last whole [`crate::latency::LATENCY_WINDOW`] (10 s) before
    /// `now`.
    pub fn latency_last_window(&self, now: std::time::Instant) -> crate::latency::StoreLatency {
        self.inner.log.latency_last_window(now)
    }

    /// The CommitLog (segment bases, offsets, read paths) for retention and tools.
    pub fn commitlog(&self) -> &Rc<CommitLog> {
        &self.inner.log
    }
}

impl Inner {
    /// Refusals before any work: shut down, disk full, failing flushes.
    #[inline]
    fn admit(&self) -> Result<(), StoreError> {
        if self.shutdown.get() {
            return Err(StoreError::ShutDown);
        }
        let used = self.disk_used_ratio.get();
        // Inclusive, like retention's DiskThresholds: at the refuse ratio appends stop.
        if used >= self.cfg.disk_refuse_ratio {
            self.bump(|s| s.puts_refused_disk_full += 1);
            return Err(StoreError::DiskFull {
                dir: self.cfg.dir.clone(),
                used_pct: used * 100.0,
                refuse_pct: self.cfg.disk_refuse_ratio * 100.0,
            });
        }
        if !self.log.durable.has_failure() {
            return Ok(());
        }
        if let Some((no_space, reason)) = self.log.durable.current_failure() {
            if no_space {
                // Refused for a full disk too: the write hit ENOSPC before the usage probe
                // saw the ratio.
                self.bump(|s| s.puts_refused_disk_full += 1);
            }
            return Err(StoreError::FlushFailed {
                durable_offset: self.log.durable_offset(),
                no_space,
                reason,
            });
        }
        Ok(())
    }

    fn bump(&self, f: impl FnOnce(&mut StoreStats)) {
        let mut s = self.counters.get();
        f(&mut s);
        self.counters.set(s);
    }

    fn count_refusal<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Busy { .. }) = &r {
            self.bump(|s| s.puts_refused_busy += 1);
            self.log.signal.raise();
        }
        r
    }

    fn appended(&self, msgs: u64, bytes: u64, ts: i64) {
        self.messages_appended
            .set(self.messages_appended.get() + msgs);
        self.bytes_appended.set(self.bytes_appended.get() + bytes);
        self.last_store_timestamp.set(ts);
        match self.cfg.flush {
            FlushMode::Sync => self.log.signal.raise(),
            FlushMode::Async => {
                if self.log.writer.borrow().unflushed_bytes() >= self.cfg.flush_bytes {
                    self.log.signal.raise();
                }
            }
        }
    }

    fn notify_arrival(&self, topic: &str, queue_id: i32, new_max: i64) {
        if let Some(f) = &*self.listener.borrow() {
            f(topic, queue_id, new_max);
        }
    }

    fn refresh_disk_usage(&self) -> f64 {
        let probed = self.disk_probe.borrow().as_ref().and_then(|p| p());
        let ratio = match probed {
            Some(r) => r,
            None => match crate::retention::disk_usage(&self.cfg.dir) {
                Ok(u) => u.used_ratio(),
                Err(e) => {
                    tracing::warn!(dir = %self.cfg.dir.display(), error = %e, "measuring disk usage failed");
                    self.disk_used_ratio.get()
                }
            },
        };
        self.disk_used_ratio.set(ratio);
        ratio
    }
}

/// The CommitLog flusher: waits for appends (sync), the interval or the byte threshold
/// (async), writes and syncs the CommitLog and wakes the waiters. Nothing else runs in this
/// loop: a sync append waits for this loop only. Exits after the final flush at shutdown, or
/// when the store is dropped.
async fn flusher_loop(store: Weak<Inner>, log: Rc<CommitLog>) {
    let (mode, interval_ms) = match store.upgrade() {
        Some(s) => (s.cfg.flush, s.cfg.flush_interval_ms),
        None => return,
    };
    let tick = Duration::from_millis(match mode {
        FlushMode::Sync => IDLE_TICK_MS.min(interval_ms),
        FlushMode::Async => interval_ms,
    });
    // The interval flush makes everything appended durable; flushes woken in between (byte
    // threshold, back-pressure) in async mode write the filled chunks only.
    let mut last_whole = Instant::now();
    let failures = LogEvery::default();
    loop {
        futures_lite::future::or(log.signal.wait(), io::sleep(tick)).await;
        let Some(inner) = store.upgrade() else { return };
        let shutting = inner.shutdown.get();
        drop(inner);
        let whole = mode == FlushMode::Sync || shutting || last_whole.elapsed() >= tick;
        if whole {
            last_whole = Instant::now();
        }
        let failed = match log.flush_once(whole).await {
            Ok(_) => false,
            Err(e) => {
                if let Some(n) = failures.due() {
                    tracing::error!(error = %e, failures = n, "CommitLog flush failed; appends refused until a retry succeeds");
                }
                log.flush_failed(&e);
                true
            }
        };
        if shutting {
            return;
        }
        if failed {
            io::sleep(Duration::from_millis(FLUSH_RETRY_MS)).await;
        }
    }
}

/// Batches at least this large that do not fit in the rest of the active write chunk are
/// split between it and the next chunk (see [`batch_split`]).
const SPLIT_BATCH_MIN_BYTES: usize = 64 * 1024;

/// Where to split a batch of `total` bytes between the active write chunk and the next one:
/// `Some((k, head_bytes))` puts items `..k` (`head_bytes`) into the rest of the active chunk.
///
/// Why: a chunk is written from its buffer trimmed to the bytes it holds, and a trimmed
/// buffer keeps its shorter length when it is recycled (glommio cannot lengthen it again). A
/// batch that does not fit the rest of a chunk used to seal the chunk short, so with 252 KiB
/// batches (1000 x 100 B) every reuse of a buffer lost ~126 KiB on average, and after ~16
/// uses it fell below half its allocation and was freed for fresh memory: ~144 fresh 4 MiB
/// buffers per 10 s whose pages the prefault thread cleared (perf/results/session25). Split
/// at an item boundary the chunk is filled to within one item, and the buffer loses at most
/// a block per use. The batch is still one contiguous CommitLog range in one segment (the
/// split is skipped when the batch would roll the segment), appended with no await between
/// the parts, and only when the whole batch has room, so both parts always succeed.
fn batch_split(
    w: &crate::commitlog::writer::Writer,
    msgs: &[MessageToStore<'_>],
    total: usize,
    prop_crc: bool,
) -> Option<(usize, usize)> {
    if total < SPLIT_BATCH_MIN_BYTES || msgs.len() < 2 || !w.has_room(total) {
        return None;
    }
    let room = w.room_in_chunk();
    if total <= room || !w.fits_in_segment(total) {
        return None;
    }
    let mut head = 0usize;
    for (k, m) in msgs.iter().enumerate() {
        let len = m.encoded_len_with(prop_crc);
        if head + len > room {
            return (k > 0).then_some((k, head));
        }
        head += len;
    }
    None
}

/// The CommitLog flusher under `flush = sync`: a pipelined group commit. The writes of the
/// next group go out while the previous group's fdatasync is in flight, and that group's sync
/// starts as soon as the previous one ended, so a cycle costs about the longer of the two
/// instead of their sum. At most one fdatasync is in flight, the durable point moves in
/// order, and a sync covers only writes that completed before it was started (see
/// [`CommitLog::take_unsynced`]).
async fn sync_flusher_loop(store: Weak<Inner>, log: Rc<CommitLog>) {
    let (tick, group_max) = match store.upgrade() {
        Some(s) => (
            Duration::from_millis(IDLE_TICK_MS.min(s.cfg.flush_interval_ms)),
            s.cfg.sync_group_max_bytes,
        ),
        None => return,
    };
    // The result of the sync in flight; the sync raises the flush signal when it is there.
    let done: Rc<RefCell<Option<Result<(), StoreError>>>> = Rc::default();
    let mut in_flight = false;
    // The offset the next sync makes durable (the latest write phase's target).
    let mut next: Option<u64> = None;
    let failures = LogEvery::default();
    loop {
        futures_lite::future::or(log.signal.wait(), io::sleep(tick)).await;
        let Some(inner) = store.upgrade() else { return };
        let shutting = inner.shutdown.get();
        drop(inner);
        // Taken into a local first: the borrow must not live across the await below.
        let finished = done.borrow_mut().take();
        if let Some(r) = finished {
            in_flight = false;
            if let Err(e) = r {
                if let Some(n) = failures.due() {
                    tracing::error!(error = %e, failures = n, "CommitLog fdatasync failed; appends refused until a retry succeeds");
                }
                log.flush_failed(&e);
                io::sleep(Duration::from_millis(FLUSH_RETRY_MS)).await;
            }
        }
        if shutting {
            // The last flush, in order: the sync in flight, then everything appended.
            wait_sync(&log, &done, in_flight).await;
            if let Err(e) = log.flush_once(true).await {
                tracing::error!(error = %e, "final CommitLog flush failed");
                log.flush_failed(&e);
            }
            return;
        }
        // Writes completed by earlier passes get their sync now, before this pass writes:
        // no write of this loop is in flight here, and waiting for this pass's writes first
        // would leave the disk without a sync for the whole write phase.
        start_sync(&log, &done, &mut next, &mut in_flight);
        // Writes go out even while a sync is in flight: that is the overlap.
        match log.write_phase(true, group_max).await {
            Ok(Some(t)) => next = Some(next.map_or(t, |n| n.max(t))),
            Ok(None) => {}
            Err(e) => {
                // The sync in flight ends first, so that its success cannot clear this failure.
                if let Some(Err(se)) = wait_sync(&log, &done, in_flight).await {
                    tracing::error!(error = %se, "CommitLog fdatasync failed");
                }
                in_flight = false;
                if let Some(n) = failures.due() {
                    tracing::error!(error = %e, failures = n, "CommitLog write failed; appends refused until a retry succeeds");
                }
                log.flush_failed(&e);
                io::sleep(Duration::from_millis(FLUSH_RETRY_MS)).await;
                log.signal.raise();
                continue;
            }
        }
        // Right after the write phase: no write of this loop is in flight.
        start_sync(&log, &done, &mut next, &mut in_flight);
        if log.writer.borrow().pending_len() > 0 {
            // A phase cut at `group_max` (or chunks sealed meanwhile): the next phase goes
            // out now, while this one's sync is in flight.
            log.signal.raise();
        }
    }
}

/// Starts the sync that makes `next` durable, unless one is in flight or nothing waits. Call
/// only when no write of the flusher is in flight: the sync covers the segments marked by
/// completed writes ([`CommitLog::take_unsynced`]).
fn start_sync(
    log: &Rc<CommitLog>,
    done: &Rc<RefCell<Option<Result<(), StoreError>>>>,
    next: &mut Option<u64>,
    in_flight: &mut bool,
) {
    if *in_flight {
        return;
    }
    let Some(target) = next.take() else { return };
    let Some(segs) = log.take_unsynced(target) else {
        return;
    };
    *in_flight = true;
    let (log2, done2) = (log.clone(), done.clone());
    io::spawn(async move {
        let r = log2.sync_phase(target, segs).await;
        *done2.borrow_mut() = Some(r);
        log2.signal.raise();
    });
}

/// Waits until the sync in flight (if any) has left its result in `done`, and takes it.
async fn wait_sync(
    log: &CommitLog,
    done: &RefCell<Option<Result<(), StoreError>>>,
    in_flight: bool,
) -> Option<Result<(), StoreError>> {
    if !in_flight {
        return done.borrow_mut().take();
    }
    loop {
        if let Some(r) = done.borrow_mut().take() {
            return Some(r);
        }
        log.signal.wait().await;
    }
}

/// Everything else on its own cadence: ConsumeQueue/IndexFile flush and checkpoint (every
/// `min(checkpoint_interval_ms, flush_interval_ms)`), disk usage, retention. Stops at
/// shutdown; [`Store::shutdown`] does the last derived flush itself.
async fn background_loop(store: Weak<Inner>) {
    let (interval_ms, disk_ms, cp_ms, retention_ms, catch_up_lag) = match store.upgrade() {
        Some(s) => (
            s.cfg.flush_interval_ms,
            s.cfg.disk_check_interval_ms,
            s.cfg.checkpoint_interval_ms,
            s.cfg.retention_check_interval_ms,
            s.cfg.derived_catch_up_lag_bytes,
        ),
        None => return,
    };
    let derived_every = Duration::from_millis(cp_ms.min(interval_ms).max(1));
    let tick = Duration::from_millis(IDLE_TICK_MS).min(derived_every);
    let mut last_disk = Instant::now();
    let mut last_derived = Instant::now();
    let mut last_retention = Instant::now();
    // Set when a derived flush left work behind (each writes a bounded amount, see
    // `consumequeue::MAX_FLUSH_BYTES` and `index::MAX_FLUSH_ENTRIES`): the next one follows
    // after a pause as long as the round took, not after the interval.
    let mut backlog = false;
    let mut last_round = Duration::ZERO;
    // Budget multiplier of the rounds (`next_derived_scale`): doubled after each round that
    // left a backlog, up to 4 while paced and 8 past `derived_catch_up_lag_bytes`, halved
    // otherwise. A round's cost is mostly its fdatasyncs (one per file written, plus the
    // checkpoint's), not its bytes: with the base budget (100k units, 100k index entries) a
    // round took 45-70 ms on the 2-vCPU guest, and paced rounds flushed ~0.9 M messages/s
    // against a 2.7 M msg/s produce (perf/results/session18-2026-12-06.md).
    let mut scale: u32 = 1;
    // Past `derived_catch_up_lag_bytes`: rounds back to back.
    let mut catching_up = false;
    let (derived_failures, retention_failures) = (LogEvery::default(), LogEvery::default());
    loop {
        if backlog && catching_up {
            // Catching up: the next round at once (`derived_catch_up_lag_bytes`).
            io::yield_now().await;
        } else if backlog {
            // Paced: a pause as long as the last round took. The rounds' page-cache copy runs
            // at a few hundred MB/s; back to back, draining a burst's backlog kept a whole
            // CPU busy for seconds (the shard's or the load generator's on a small machine).
            io::sleep(last_round.min(derived_every)).await;
        } else {
            io::sleep(tick).await;
        }
        let Some(inner) = store.upgrade() else { return };
        if inner.shutdown.get() {
            return;
        }
        let now = Instant::now();
        if now.duration_since(last_disk) >= Duration::from_millis(disk_ms) {
            inner.refresh_disk_usage();
            last_disk = now;
        }
        if backlog || now.duration_since(last_derived) >= derived_every {
            let started = Instant::now();
            let res = inner.flush_derived_round(scale).await;
            last_round = started.elapsed();
            backlog = match res {
                Ok(more) => more,
                Err(e) => {
                    // Retried every round (500 ms by default) for as long as, say, the disk
                    // stays full: logged once per `LOG_EVERY` with the count.
                    if let Some(n) = derived_failures.due() {
                        tracing::error!(error = %e, failures = n, "flushing ConsumeQueue/IndexFile or checkpoint failed");
                    }
                    false
                }
            };
            last_derived = Instant::now();
            let lag = inner.derived_lag();
            catching_up = lag > catch_up_lag;
            scale = next_derived_scale(scale, backlog, lag, catch_up_lag);
        }
        if inner.shutdown.get() {
            return;
        }
        if now.duration_since(last_retention) >= Duration::from_millis(retention_ms) {
            let st = Store {
                inner: inner.clone(),
            };
            if let Err(e) = st.retention_sweep().await {
                if let Some(n) = retention_failures.due() {
                    tracing::error!(error = %e, failures = n, "retention sweep failed");
                }
            }
            last_retention = Instant::now();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch: ConsumeQueue and IndexFile (modules of helper "record").
//
// What this file calls on them (kept narrow on purpose):
//   consumequeue: ConsumeQueueStore::load, put, queue(..).get/iter_from, min/max_offset,
//     search_offset_by_timestamp, truncate (recovery), queues, delete_topic, flush(&RefCell, up_to, scale)
//   index: IndexService::load, index_message, query, truncate (recovery), delete_below,
//     flush(&RefCell, up_to, scale)
// ---------------------------------------------------------------------------------------------

/// What recovery told the store.
struct Recovered {
    end_offset: u64,
    min_offset: u64,
    last_store_timestamp: Option<i64>,
}

/// Runs CommitLog recovery from the checkpoint and re-dispatches the records past the
/// ConsumeQueue/IndexFile durable point.
fn recover(
    cfg: &StoreConfig,
    queues: &mut ConsumeQueueStore,
    index: &mut IndexService,
) -> Result<Recovered, StoreError> {
    use crate::recovery::{recover_commitlog, RecoveryOptions};
    let checkpoint = match Checkpoint::load(&cfg.dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint unreadable; recovering the whole CommitLog");
            None
        }
    };
    if let Some(cp) = &checkpoint {
        queues.set_durable_offset(cp.consumequeue_durable_offset);
        index.set_durable_offset(cp.index_durable_offset);
    }
    let mut opts = RecoveryOptions::from_checkpoint(cfg.segment_size_bytes, checkpoint.as_ref());
    opts.max_record_bytes = cfg.max_record_bytes().max(cfg.max_batch_bytes);
    opts.expect_prop_crc = cfg.append_prop_crc;
    // A write carries at most a chunk, or one record (batch) bigger than a chunk, plus the
    // rewritten partial block before it and the block it ends in.
    let largest_write = (cfg.write_chunk_bytes as u64)
        .max(StoreConfig::default().write_chunk_bytes as u64)
        .max(opts.max_record_bytes as u64)
        + 2 * crate::config::IO_ALIGNMENT;
    opts.max_in_flight_bytes = crate::commitlog::MAX_WRITES_IN_FLIGHT as u64 * largest_write;
    let mut dispatch_error: Option<String> = None;
    let report = recover_commitlog(&cfg.commitlog_dir(), &opts, &mut |view, offset| {
        if dispatch_error.is_some() {
            return;
        }
        if let Err(e) = redispatch(queues, index, view, offset, &cfg.delay_levels_ms) {
            dispatch_error = Some(e.to_string());
        }
    })
    .map_err(|e| StoreError::Recovery {
        dir: cfg.dir.clone(),
        reason: e.to_string(),
    })?;
    if let Some(reason) = dispatch_error {
        return Err(StoreError::Recovery {
            dir: cfg.dir.clone(),
            reason: format!("re-dispatching recovered records: {reason}"),
        });
    }
    queues.truncate(report.end_offset);
    index.truncate(report.end_offset);
    if let Some(t) = &report.truncated {
        tracing::warn!(segment = %t.segment.display(), offset = t.offset, reason = %t.reason, "cut a torn CommitLog tail");
    }
    Ok(Recovered {
        end_offset: report.end_offset,
        min_offset: report.min_offset,
        last_store_timestamp: report.last_store_timestamp,
    })
}

/// ConsumeQueue unit and IndexFile entries of one recovered record.
fn redispatch(
    queues: &mut ConsumeQueueStore,
    index: &mut IndexService,
    view: &RecordView<'_>,
    offset: u64,
    delay_levels_ms: &[u64],
) -> Result<(), StoreError> {
    let props = view.properties();
    let topic = view.topic();
    if sysflag::is_dispatched(view.sys_flag()) {
        // A scheduled message's unit holds its due time (as the broker stored it), not a tag.
        // A timer message's unit holds when the timer service takes it up.
        let scheduled = if topic == crate::schedule::SCHEDULE_TOPIC {
            crate::schedule::scheduled_tags_code(delay_levels_ms, props, view.store_timestamp())
        } else if topic == crate::schedule::TIMER_TOPIC {
            crate::schedule::timer_tags_code(props)
        } else {
            None
        };
        let tags_code = scheduled.unwrap_or_else(|| {
            ramjet_core::record::properties::get(props, ramjet_core::record::properties::TAGS)
                .map_or(0, ramjet_core::record::tag_hash_bytes)
        });
        queues.put(
            topic,
            view.queue_id(),
            view.queue_offset(),
            offset,
            view.total_size(),
            tags_code,
        )?;
    }
    index.index_message(
        topic,
        view.sys_flag(),
        offset,
        view.total_size(),
        view.store_timestamp(),
        props,
    )?;
    Ok(())
}

impl Inner {
    /// IndexFile dispatch of one appended record, in the same step as the append.
    #[inline]
    fn index_one(
        &self,
        msg: &MessageToStore<'_>,
        phys: u64,
        len: u32,
        ts: i64,
    ) -> Result<(), StoreError> {
        self.index.borrow_mut().index_message(
            msg.topic,
            msg.stored_sys_flag(),
            phys,
            len,
            ts,
            msg.properties,
        )?;
        Ok(())
    }

    /// Durable offsets of the ConsumeQueues and the IndexFile (progress of derived flushes).
    /// CommitLog bytes made durable whose ConsumeQueue units or index entries are not yet.
    fn derived_lag(&self) -> u64 {
        let (cq, ix) = self.derived_durable();
        self.log.durable_offset().saturating_sub(cq.min(ix))
    }

    fn derived_durable(&self) -> (u64, u64) {
        (
            self.queues.borrow().durable_offset(),
            self.index.borrow().durable_offset(),
        )
    }

    /// One bounded [`Inner::flush_derived`]; returns whether it left a backlog: it wrote as
    /// much as one round may (`consumequeue::MAX_FLUSH_BYTES` of units, or
    /// `index::MAX_FLUSH_ENTRIES` entries of a file), files are still dirty, and it moved the
    /// durable point (dirty without progress means the units wait for the CommitLog's durable
    /// offset). Merely dirty again is no backlog: under a steady load units arrive during
    /// every round, and taking that for a backlog ran the rounds back to back (1 KiB sync
    /// produce at 25k msg/s, session 10: ~56 rounds/s, each an open, pwrite, fdatasync and
    /// close per file plus a checkpoint: ~560 extra fdatasyncs/s on the CommitLog's disk and
    /// ~9 % of the other core) instead of once per interval.
    async fn flush_derived_round(&self, scale: u32) -> Result<bool, StoreError> {
        let before = self.derived_durable();
        let (units, entries) = self.flush_derived(scale).await?;
        self.bump(|s| s.derived_flush_rounds += 1);
        let scale = u64::from(scale.max(1));
        let full = units
            >= (crate::consumequeue::MAX_FLUSH_BYTES / crate::consumequeue::CQ_UNIT_LEN) as u64
                * scale
            || entries >= u64::from(crate::index::MAX_FLUSH_ENTRIES) * scale;
        let dirty = self.queues.borrow().is_dirty() || self.index.borrow().is_dirty();
        Ok(full && dirty && self.derived_durable() != before)
    }

    /// Flushes ConsumeQueue and IndexFile files, then writes the checkpoint. Returns the units
    /// and index entries that became durable.
    async fn flush_derived(&self, scale: u32) -> Result<(u64, u64), StoreError> {
        // Units and entries reach the disk only for records already durable (pass the
        // CommitLog's durable offset), so a crash never leaves one pointing past the recovered
        // end.
        let durable = self.log.durable_offset();
        let cq = crate::consumequeue::flush(&self.queues, durable, scale as usize).await?;
        let ix = crate::index::flush(&self.index, durable, scale).await?;
        let (cq_durable, index_durable) = (cq.durable_offset, ix.durable_offset);
        let written = (cq.units, ix.entries);
        let durable = self.log.durable_offset();
        let ts = self.last_store_timestamp.get();
        let cp = Checkpoint {
            physic_msg_timestamp: ts,
            logics_msg_timestamp: ts,
            index_msg_timestamp: ts,
            commitlog_durable_offset: durable,
            consumequeue_durable_offset: cq_durable.min(durable),
            index_durable_offset: index_durable.min(durable),
        };
        // Two fsyncs (file, directory): on a blocking thread, never on the shard.
        let dir = self.cfg.dir.clone();
        io::blocking(move || cp.store(&dir)).await.map_err(|e| {
            StoreError::io(
                "writing checkpoint",
                &self.cfg.dir,
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok(written)
    }
}

/// The budget multiplier of the next derived-flush round: doubled after a round that left a
/// backlog, up to [`MAX_PACED_DERIVED_SCALE`] while the derived files trail the CommitLog by
/// at most `bound` bytes (the rounds stay paced) and up to [`MAX_DERIVED_SCALE`] past it (the
/// rounds run back to back); halved (down to 1) once a round leaves no backlog. A round's
/// cost is mostly its fdatasyncs, not its bytes, so a larger paced round flushes more for
/// about the same time: at the base budget the paced rounds fell behind a 2.7 M msg/s
/// produce from the first second (~0.8 M msg/s) and the lag reached the bound after ~20 s.
fn next_derived_scale(scale: u32, backlog: bool, lag: u64, bound: u64) -> u32 {
    if !backlog {
        return (scale / 2).max(1);
    }
    let cap = if lag > bound {
        MAX_DERIVED_SCALE
    } else {
        MAX_PACED_DERIVED_SCALE
    };
    scale.saturating_mul(2).clamp(1, cap)
}

/// Largest budget multiplier of a derived-flush round (and of every round at shutdown).
const MAX_DERIVED_SCALE: u32 = 8;

/// Largest budget multiplier of a paced derived-flush round (lag within the bound).
const MAX_PACED_DERIVED_SCALE: u32 = 4;

/// Rounds in a row without progress after which the final derived flush gives up on files
/// still dirty (a failing disk; the next start rebuilds what is missing from the CommitLog).
const MAX_SHUTDOWN_STALLED_ROUNDS: u32 = 3;

/// Most derived-flush rounds at shutdown (each writes up to `index::MAX_FLUSH_ENTRIES`
/// entries): a bound, never reached unless a flush stops making progress.
const MAX_SHUTDOWN_FLUSH_ROUNDS: u32 = 10_000;

/// ConsumeQueue bytes a pull scans at least (RocketMQ: 16000 bytes of units).
const MIN_UNITS_SCANNED_PER_PULL: usize = 16000 / 20;

impl Store {
    /// Pull read (RocketMQ `getMessage`): scans ConsumeQueue units of (topic, queue) from
    /// `offset`, keeps those whose tags code passes `filter`, and returns the CommitLog ranges
    /// of the matching records, capped by `max_msgs`, `max_bytes` and RocketMQ's per-pull
    /// transfer limits (memory vs disk). Status and `next_begin_offset` follow RocketMQ's
    /// GetMessageStatus rules.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        max_msgs: u32,
        max_bytes: u32,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetResult {
        let inner = &*self.inner;
        let queues = inner.queues.borrow();
        let min = queues.min_offset(topic, queue_id);
        let max = queues.max_offset(topic, queue_id);
        let mut r = GetResult {
            status: GetStatus::NoMessageInQueue,
            chunks: Vec::new(),
            msg_count: 0,
            total_bytes: 0,
            next_begin_offset: 0,
            min_offset: min,
            max_offset: max,
        };
        if max == 0 {
            return r;
        }
        if offset < min {
            r.status = GetStatus::OffsetTooSmall;
            r.next_begin_offset = min;
            return r;
        }
        if offset == max {
            r.status = GetStatus::OffsetOverflowOne;
            r.next_begin_offset = offset;
            return r;
        }
        if offset > max {
            r.status = GetStatus::OffsetOverflowBadly;
            r.next_begin_offset = max;
            return r;
        }
        let max_units = MIN_UNITS_SCANNED_PER_PULL.max(max_msgs as usize);
        let Some(queue) = queues.queue(topic, queue_id) else {
            return r;
        };
        if queue.get(offset).is_none() {
            // min <= offset < max but the unit is gone: skip to the next ConsumeQueue file.
            let per_file = i64::from(queues.units_per_file());
            r.status = GetStatus::OffsetFoundNull;
            r.next_begin_offset = (offset / per_file + 1) * per_file;
            return r;
        }
        let mut units = inner.scratch_units.take();
        units.clear();
        units.extend(queue.iter_from(offset).take(max_units).map(|(_, e)| e));
        drop(queues);
        let cfg = &inner.cfg;
        let log = &inner.log;
        let log_min = log.min_offset();
        let cache_min = log.writer.borrow().cache().min_offset().unwrap_or(u64::MAX);
        let mut scanned = 0i64;
        let mut removing = false;
        for u in &units {
            if u.is_filler() || u.size == 0 || u.physical_offset < log_min {
                removing = true;
                scanned += 1;
                continue;
            }
            let (size_u, phys_u) = (u.size, u.physical_offset);
            if r.msg_count > 0 {
                let in_memory = phys_u >= cache_min;
                let (cap_bytes, cap_count) = if in_memory {
                    (
                        cfg.max_transfer_bytes_in_memory,
                        cfg.max_transfer_count_in_memory,
                    )
                } else {
                    (
                        cfg.max_transfer_bytes_on_disk,
                        cfg.max_transfer_count_on_disk,
                    )
                };
                let next_total = r.total_bytes as u64 + size_u as u64;
                if r.msg_count >= max_msgs
                    || next_total > max_bytes as u64
                    || next_total > cap_bytes as u64
                    || r.msg_count >= cap_count
                {
                    break;
                }
            }
            if !filter(u.tags_code) {
                scanned += 1;
                continue;
            }
            match log.read_into(phys_u, size_u, &mut r.chunks) {
                Ok(()) => {
                    r.msg_count += 1;
                    r.total_bytes += size_u;
                }
                Err(_) => removing = true,
            }
            scanned += 1;
            if r.msg_count >= max_msgs {
                break;
            }
        }
        inner.scratch_units.replace(units);
        r.next_begin_offset = offset + scanned;
        r.status = if r.msg_count > 0 {
            GetStatus::Found
        } else if removing {
            GetStatus::MessageWasRemoving
        } else {
            GetStatus::NoMatchedMessage
        };
        r
    }

    /// The ConsumeQueue unit at `offset` of (topic, queue): where its record lies and its tags
    /// code (for a scheduled message, its due time); `None` outside the stored range.
    pub fn queue_unit(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> Option<crate::consumequeue::CqEntry> {
        self.inner.queues.borrow().get(topic, queue_id, offset)
    }

    /// Where the `len` bytes at CommitLog `physical_offset` are: in the tail cache, or a range
    /// of a segment file (appended to `chunks`), as a pull would send them.
    pub fn chunks_of(
        &self,
        physical_offset: u64,
        len: u32,
        chunks: &mut Vec<Chunk>,
    ) -> Result<(), StoreError> {
        self.inner.log.read_into(physical_offset, len, chunks)
    }

    /// Lowest queue offset still stored.
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.queues.borrow().min_offset(topic, queue_id)
    }

    /// Next queue offset to be assigned (= number of messages ever stored in the queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        self.inner.queues.borrow().max_offset(topic, queue_id)
    }

    /// Store timestamp of the record behind queue offset `queue_offset` (RocketMQ
    /// `getMessageStoreTimeStamp`); `None` when there is none or it cannot be read.
    pub fn store_time_at(&self, topic: &str, queue_id: i32, queue_offset: i64) -> Option<i64> {
        let e = self
            .inner
            .queues
            .borrow()
            .get(topic, queue_id, queue_offset)?;
        if e.is_filler() {
            return None;
        }
        self.inner.log.store_timestamp_at(e.physical_offset).ok()
    }

    /// First queue offset whose message was stored at or after `ts_ms` (RocketMQ
    /// `getOffsetInQueueByTime`): the min offset if all are later, the max offset if all are
    /// earlier.
    pub fn search_offset_by_timestamp(&self, topic: &str, queue_id: i32, ts_ms: i64) -> i64 {
        let log = &self.inner.log;
        self.inner.queues.borrow().search_offset_by_timestamp(
            topic,
            queue_id,
            ts_ms,
            Boundary::Lower,
            &mut |phys, _size| log.store_timestamp_at(phys).ok(),
        )
    }

    /// Store time of the oldest message still in the queue.
    pub fn earliest_msg_store_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let min = self.min_offset(topic, queue_id);
        if self.max_offset(topic, queue_id) <= min {
            return None;
        }
        self.store_time_at(topic, queue_id, min)
    }

    /// CommitLog offsets of messages of `topic` with key (or unique id) `key` stored within
    /// `[begin_ms, end_ms]`, newest first, at most `max`. Callers re-check the key on the
    /// records (hash collisions).
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Vec<u64> {
        match self
            .inner
            .index
            .borrow()
            .query(topic, key, max, begin_ms, end_ms)
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(topic, key, error = %e, "IndexFile query failed");
                Vec::new()
            }
        }
    }

    /// Every (topic, queue id) with a ConsumeQueue.
    pub fn queues(&self) -> Vec<(String, i32)> {
        let mut v: Vec<(String, i32)> = self
            .inner
            .queues
            .borrow()
            .queues()
            .map(|(t, q)| (t.to_string(), q))
            .collect();
        v.sort();
        v
    }

    /// Deletes the ConsumeQueues of `topic` (its CommitLog records expire with their segments).
    pub async fn delete_topic(&self, topic: &str) -> Result<(), StoreError> {
        self.inner.queues.borrow_mut().delete_topic(topic);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::unix::fs::FileExt;
    use std::rc::Rc;
    use std::time::Duration;

    use ramjet_core::record::{properties, tag_hash, MessageToStore, RecordView};

    use super::*;
    use crate::config::{IoMode, Preallocate};

    const MIB: u64 = 1024 * 1024;

    fn cfg(dir: &std::path::Path) -> StoreConfig {
        StoreConfig {
            segment_size_bytes: 2 * MIB,
            write_chunk_bytes: 256 * 1024,
            max_message_bytes: 256 * 1024,
            max_batch_bytes: 512 * 1024,
            max_unflushed_bytes: 8 * MIB,
            tail_cache_bytes: 4 * MIB,
            flush_interval_ms: 20,
            ..StoreConfig::new(dir)
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("bad test address {s}: {e}"))
    }

    /// Owns the bytes a `MessageToStore` borrows.
    struct Msg {
        topic: String,
        queue_id: i32,
        body: Vec<u8>,
        props: Vec<u8>,
        tags_code: i64,
    }

    impl Msg {
        fn new(topic: &str, queue_id: i32, body: Vec<u8>, tag: &str, key: &str) -> Msg {
            let props = properties::encode([(properties::TAGS, tag), (properties::KEYS, key)])
                .unwrap_or_else(|e| panic!("properties: {e}"));
            Msg {
                topic: topic.to_string(),
                queue_id,
                body,
                props,
                tags_code: tag_hash(tag),
            }
        }

        fn view(&self) -> MessageToStore<'_> {
            MessageToStore {
                topic: &self.topic,
                queue_id: self.queue_id,
                flag: 7,
                body: &self.body,
                properties: &self.props,
                sys_flag: 0,
                born_timestamp: 1_700_000_000_000,
                born_host: addr("10.0.0.1:4000"),
                store_host: addr("10.0.0.2:10911"),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                tags_code: self.tags_code,
            }
        }
    }

    fn body(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        io::block_on(f).unwrap_or_else(|e| panic!("glommio executor: {e}"))
    }

    /// Concatenated bytes of a pull result (memory and file chunks).
    fn chunk_bytes(chunks: &[Chunk]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Chunk::Memory(s) => out.extend_from_slice(s.as_ref()),
                Chunk::File { file, offset, len } => {
                    let mut b = vec![0u8; *len as usize];
                    file.read_exact_at(&mut b, *offset)
                        .unwrap_or_else(|e| panic!("pread: {e}"));
                    out.extend_from_slice(&b);
                }
            }
        }
        out
    }

    /// Splits concatenated records and returns their bodies and queue offsets.
    fn records(mut bytes: &[u8]) -> Vec<(i64, i64, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let v = RecordView::parse_verified(bytes).unwrap_or_else(|e| panic!("record: {e}"));
            out.push((v.queue_offset(), v.physical_offset(), v.body().to_vec()));
            bytes = &bytes[v.total_size() as usize..];
        }
        out
    }

    fn all(_: i64) -> bool {
        true
    }

    #[test]
    fn append_prop_crc_off_writes_records_without_the_property() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut c = cfg(dir.path());
        c.append_prop_crc = false;
        run(async {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("T", 0, body(7, 40), "A", "k");
            assert_eq!(store.record_len(&m.view()), m.view().encoded_len());
            let r = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(r.end_physical_offset, m.view().encoded_len() as u64);
            let rec = store
                .read_record(0)
                .await
                .unwrap_or_else(|e| panic!("read_record: {e}"));
            let v = RecordView::parse_verified(&rec).unwrap_or_else(|e| panic!("parse: {e}"));
            assert_eq!(
                v.verify_prop_crc(),
                Ok(ramjet_core::record::PropCrc::Absent)
            );
            assert_eq!(v.properties(), m.view().properties);
        });
    }

    #[test]
    fn put_and_read_single_and_batch() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let store = Store::open(cfg(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let m0 = Msg::new("T", 0, body(0, 100), "A", "k0");
            let r0 = store
                .put_message(&m0.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(
                (r0.physical_offset, r0.queue_offset, r0.msg_count),
                (0, 0, 1)
            );
            // The store appends the 20-byte `__CRC32#` property (props end with 0x02).
            assert_eq!(store.record_len(&m0.view()), m0.view().encoded_len() + 20);
            assert_eq!(r0.end_physical_offset, store.record_len(&m0.view()) as u64);
            let batch: Vec<Msg> = (1..4)
                .map(|i| Msg::new("T", 0, body(i, 50 + i), "B", "kb"))
                .collect();
            let views: Vec<MessageToStore<'_>> = batch.iter().map(Msg::view).collect();
            let rb = store
                .put_batch(&views)
                .unwrap_or_else(|e| panic!("batch: {e}"));
            assert_eq!(
                (rb.physical_offset, rb.queue_offset, rb.msg_count),
                (r0.end_physical_offset, 1, 3)
            );
            let total: usize = views.iter().map(|v| store.record_len(v)).sum();
            assert_eq!(rb.end_physical_offset, rb.physical_offset + total as u64);
            assert_eq!(store.max_offset("T", 0), 4);

            let got = store.get_messages("T", 0, 0, 32, 1 << 20, &all);
            assert_eq!(got.status, GetStatus::Found);
            assert_eq!(
                (got.msg_count, got.next_begin_offset, got.max_offset),
                (4, 4, 4)
            );
            // Everything is adjacent and in the tail cache: one coalesced memory chunk.
            assert_eq!(got.chunks.len(), 1);
            assert!(matches!(got.chunks[0], Chunk::Memory(_)));
            let recs = records(&chunk_bytes(&got.chunks));
            let bodies: Vec<Vec<u8>> = recs.iter().map(|r| r.2.clone()).collect();
            assert_eq!(
                bodies,
                vec![body(0, 100), body(1, 51), body(2, 52), body(3, 53)]
            );
            assert_eq!(
                recs.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![0, 1, 2, 3]
            );

            let rec = store
                .read_record(rb.physical_offset)
                .await
                .unwrap_or_else(|e| panic!("read_record: {e}"));
            let v = RecordView::parse_verified(&rec).unwrap_or_else(|e| panic!("parse: {e}"));
            assert_eq!(v.verify_prop_crc(), Ok(ramjet_core::record::PropCrc::Valid));
            assert_eq!(
                (v.body(), v.queue_offset(), v.topic()),
                (&body(1, 51)[..], 1, "T")
            );
            assert!(store.read_record(rb.physical_offset + 1).await.is_err());
            assert_eq!(store.query_by_key("T", "k0", 10, 0, i64::MAX), vec![0]);
            assert_eq!(store.query_by_key("T", "kb", 10, 0, i64::MAX).len(), 3);
            shut(&store).await;
        });
    }

    /// Batches of ~100 KiB into 256 KiB write chunks: a batch that does not fit the rest of a
    /// chunk is split at an item boundary (`batch_split`), so chunks are written full, no batch
    /// spans two segments, and every record reads back byte for byte, before and after a
    /// reopen (recovery scans the same contiguous records).
    #[test]
    fn big_batches_fill_write_chunks_and_read_back_across_the_split() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut c = cfg(dir.path());
        // No flush before the end: the chunks are sealed by appends (or the segment end) only.
        c.flush_interval_ms = 60_000;
        c.flush_bytes = u64::MAX;
        let seg = c.segment_size_bytes;
        let chunk = c.write_chunk_bytes as u64;
        const BATCHES: usize = 60;
        const ITEMS: usize = 230;
        let msgs: Vec<Vec<Msg>> = (0..BATCHES)
            .map(|b| {
                (0..ITEMS)
                    .map(|i| Msg::new("S", 0, body(b * ITEMS + i, 300), "A", "k"))
                    .collect()
            })
            .collect();
        let batch_bytes = |store: &Store, b: &[Msg]| -> u64 {
            b.iter().map(|m| store.record_len(&m.view()) as u64).sum()
        };
        let check = |store: &Store| {
            let mut next = 0i64;
            while next < (BATCHES * ITEMS) as i64 {
                let got = store.get_messages("S", 0, next, 64, 1 << 20, &all);
                assert_eq!(got.status, GetStatus::Found);
                for (k, (qo, _, b)) in records(&chunk_bytes(&got.chunks)).into_iter().enumerate() {
                    let i = next as usize + k;
                    assert_eq!((qo, b), (i as i64, body(i, 300)), "item {i}");
                }
                next = got.next_begin_offset;
            }
            assert_eq!(next, (BATCHES * ITEMS) as i64);
        };
        let mut appended = 0u64;
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let mut splits = 0;
            for b in &msgs {
                let views: Vec<MessageToStore<'_>> = b.iter().map(Msg::view).collect();
                let len = batch_bytes(&store, b);
                assert!(len > 64 * 1024 && len < chunk / 2, "batch of {len} bytes");
                let before = store.commitlog().writer.borrow().room_in_chunk() as u64;
                let r = store
                    .put_batch(&views)
                    .unwrap_or_else(|e| panic!("batch: {e}"));
                assert_eq!(r.end_physical_offset - r.physical_offset, len);
                assert_eq!(
                    r.physical_offset / seg,
                    (r.end_physical_offset - 1) / seg,
                    "a batch spans two segments"
                );
                if len > before && r.physical_offset % seg + len + 8 <= seg {
                    // Did not fit the rest of the chunk, stayed in its segment: split.
                    splits += 1;
                }
                appended = r.end_physical_offset;
            }
            assert!(splits >= 10, "only {splits} batches were split");
            // Nothing was flushed yet: every sealed chunk is pending. Each one that does not
            // end its segment is full to within one item (with batches kept whole, up to a
            // batch of ~100 KiB of every chunk stayed unused). The last chunk of a segment is
            // left out: a batch that does not fit the segment's rest goes whole to the next.
            let item = msgs[0]
                .iter()
                .map(|m| store.record_len(&m.view()))
                .max()
                .unwrap_or(0);
            let mut sealed = Vec::new();
            store
                .commitlog()
                .writer
                .borrow()
                .pending_window(usize::MAX, &mut sealed);
            assert!(sealed.len() >= 15, "{} sealed chunks", sealed.len());
            let biggest = msgs
                .iter()
                .map(|b| batch_bytes(&store, b))
                .max()
                .unwrap_or(0);
            for ch in sealed
                .iter()
                .filter(|ch| seg - ch.end() % seg > biggest + 8)
            {
                let unused = ch.buf.capacity() - (ch.end() - ch.base) as usize;
                assert!(
                    unused < item + 8,
                    "chunk at {} left {unused} of {} bytes unused",
                    ch.base,
                    ch.buf.capacity()
                );
            }
            check(&store);
            shut(&store).await;
        });
        run(async {
            let store = reopen(c).await;
            assert_eq!(store.commitlog().end_offset(), appended);
            check(&store);
            shut(&store).await;
        });
    }

    #[test]
    fn arrival_listener_time_search_and_earliest_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let store = Store::open(cfg(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let seen: Rc<RefCell<Vec<(String, i32, i64)>>> = Rc::new(RefCell::new(Vec::new()));
            let sink = seen.clone();
            store.set_arrival_listener(Box::new(move |t, q, max| {
                sink.borrow_mut().push((t.to_string(), q, max))
            }));
            assert_eq!(store.earliest_msg_store_time("L", 0), None);
            let m = Msg::new("L", 0, body(1, 10), "t", "k");
            let first = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            let views = [m.view(), m.view()];
            let _ = store
                .put_batch(&views)
                .unwrap_or_else(|e| panic!("batch: {e}"));
            io::sleep(Duration::from_millis(20)).await;
            let later = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(
                *seen.borrow(),
                vec![
                    ("L".to_string(), 0, 1),
                    ("L".to_string(), 0, 3),
                    ("L".to_string(), 0, 4)
                ]
            );
            assert_eq!(
                store.earliest_msg_store_time("L", 0),
                Some(first.store_timestamp)
            );
            assert!(later.store_timestamp > first.store_timestamp);
            assert_eq!(store.search_offset_by_timestamp("L", 0, 0), 0);
            assert_eq!(
                store.search_offset_by_timestamp("L", 0, later.store_timestamp),
                3
            );
            assert_eq!(
                store.search_offset_by_timestamp("L", 0, later.store_timestamp + 1),
                4
            );
            shut(&store).await;
            assert!(matches!(
                store.put_message(&m.view()),
                Err(StoreError::ShutDown)
            ));
        });
    }

    #[test]
    fn many_small_segments_under_sync_stay_valid() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            segment_size_bytes: 256 * 1024,
            flush: FlushMode::Sync,
            max_message_bytes: 16 * 1024,
            max_batch_bytes: 32 * 1024,
            max_unflushed_bytes: 4 * 1024 * 1024,
            tail_cache_bytes: 512 * 1024,
            ..StoreConfig::new(dir.path())
        };
        const TASKS: usize = 6;
        const PER_TASK: usize = 1500;
        let acked = run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let acked = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let store = store.clone();
                let acked = acked.clone();
                tasks.push(io::spawn(async move {
                    for i in 0..PER_TASK {
                        let seed = t * 100_000 + i;
                        let m =
                            Msg::new("S", (t % 3) as i32, body(seed, 40 + seed % 961), "t", "k");
                        let r = loop {
                            match store.put_message(&m.view()) {
                                Ok(r) => break r,
                                Err(StoreError::Busy { .. }) => {
                                    store.wait_writable(m.view().encoded_len()).await
                                }
                                Err(e) => panic!("put: {e}"),
                            }
                        };
                        store
                            .wait_durable(r.end_physical_offset)
                            .await
                            .unwrap_or_else(|e| panic!("durable: {e}"));
                        acked.borrow_mut().push((r.physical_offset, seed));
                    }
                }));
            }
            for t in tasks {
                t.join().await;
            }
            let out = acked.borrow().clone();
            // Check the files themselves before shutdown: a dry-run recovery scan.
            let opts = crate::recovery::RecoveryOptions {
                dry_run: true,
                durable_offset: store.stats().commitlog_durable_offset,
                ..crate::recovery::RecoveryOptions::full(c.segment_size_bytes)
            };
            let report =
                crate::recovery::recover_commitlog(&c.commitlog_dir(), &opts, &mut |_, _| {})
                    .unwrap_or_else(|e| panic!("files invalid while running: {e}"));
            assert_eq!(report.end_offset, store.stats().commitlog_end_offset);
            shut(&store).await;
            out
        });
        run(async {
            let store = reopen(c).await;
            for (phys, seed) in &acked {
                assert!(
                    stored_body(&store, *phys).await == body(*seed, 40 + seed % 961),
                    "body at {phys}"
                );
            }
            shut(&store).await;
        });
    }

    #[test]
    fn segment_roll_writes_blank_and_offsets_continue() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let seg = 1024 * 1024u64;
        let c = StoreConfig {
            segment_size_bytes: seg,
            ..cfg(dir.path())
        };
        let mut ends = Vec::new();
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            for i in 0..30 {
                let m = Msg::new("R", 1, body(i, 60_000), "t", "k");
                let r = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put {i}: {e}"));
                assert_eq!(r.queue_offset, i as i64);
                ends.push((r.physical_offset, r.end_physical_offset));
            }
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
            assert!(store.stats().segment_rolls >= 1);
            shut(&store).await;
        });
        // The first record of the second segment starts exactly at its base.
        let first_in_2 = ends
            .iter()
            .position(|(p, _)| *p >= seg)
            .unwrap_or_else(|| panic!("no roll"));
        assert_eq!(ends[first_in_2].0, seg);
        let (_, last_end_in_1) = ends[first_in_2 - 1];
        assert!(
            last_end_in_1 + 60_000 + 8 > seg,
            "rolled although the record fitted"
        );
        let seg0 = std::fs::read(dir.path().join("commitlog").join("00000000000000000000"))
            .unwrap_or_else(|e| panic!("read seg0: {e}"));
        let at = last_end_in_1 as usize;
        let left = i32::from_be_bytes(seg0[at..at + 4].try_into().unwrap_or([0; 4]));
        let magic = i32::from_be_bytes(seg0[at + 4..at + 8].try_into().unwrap_or([0; 4]));
        assert_eq!(magic, ramjet_core::record::BLANK_MAGIC_CODE);
        assert_eq!(left as u64, seg - last_end_in_1);
        assert!(dir
            .path()
            .join("commitlog")
            .join("00000000000001048576")
            .exists());
        // Reopen: offsets continue and every record reads back.
        run(async {
            let store = reopen(c).await;
            let m = Msg::new("R", 1, body(99, 10), "t", "k");
            let r = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(r.physical_offset, ends[ends.len() - 1].1);
            assert_eq!(r.queue_offset, 30);
            for (i, (p, _)) in ends.iter().enumerate() {
                let rec = store
                    .read_record(*p)
                    .await
                    .unwrap_or_else(|e| panic!("read {i}: {e}"));
                let v =
                    RecordView::parse_verified(&rec).unwrap_or_else(|e| panic!("parse {i}: {e}"));
                assert_eq!(v.body(), &body(i, 60_000)[..]);
            }
            shut(&store).await;
        });
    }

    #[test]
    fn tail_cache_serves_recent_data_and_files_serve_older() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            tail_cache_bytes: 256 * 1024,
            write_chunk_bytes: 64 * 1024,
            flush: FlushMode::Sync,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            for i in 0..200 {
                let m = Msg::new("C", 0, body(i, 4000), "t", "k");
                let _durable = put_durable(&store, &m).await;
            }
            let s = store.stats();
            assert!(
                s.tail_cache_bytes <= 256 * 1024 + 128 * 1024,
                "cache holds {} bytes",
                s.tail_cache_bytes
            );
            let old = store.get_messages("C", 0, 0, 8, 1 << 20, &all);
            assert_eq!(old.status, GetStatus::Found);
            assert!(
                old.chunks.iter().all(|c| matches!(c, Chunk::File { .. })),
                "{:?}",
                old.chunks
            );
            // Adjacent records of one segment coalesce into one file range.
            assert_eq!(old.chunks.len(), 1);
            assert_eq!(old.msg_count, 8);
            let recs = records(&chunk_bytes(&old.chunks));
            assert_eq!(recs.len(), 8);
            for (i, r) in recs.iter().enumerate() {
                assert_eq!((r.0, &r.2), (i as i64, &body(i, 4000)));
            }
            let hits_before = store.stats().tail_cache_hits;
            let new = store.get_messages("C", 0, 196, 8, 1 << 20, &all);
            assert_eq!(
                (new.status, new.msg_count, new.next_begin_offset),
                (GetStatus::Found, 4, 200)
            );
            assert!(
                new.chunks.iter().all(|c| matches!(c, Chunk::Memory(_))),
                "{:?}",
                new.chunks
            );
            assert!(store.stats().tail_cache_hits >= hits_before + 4);
            let recs = records(&chunk_bytes(&new.chunks));
            assert_eq!(
                recs.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
                (196..200).map(|i| body(i, 4000)).collect::<Vec<_>>()
            );
            shut(&store).await;
        });
    }

    #[test]
    fn get_messages_statuses_and_filter() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let store = Store::open(cfg(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let g = store.get_messages("Q", 0, 0, 32, 1 << 20, &all);
            assert_eq!(
                (g.status, g.next_begin_offset),
                (GetStatus::NoMessageInQueue, 0)
            );
            for i in 0..10 {
                let tag = if i % 2 == 0 { "even" } else { "odd" };
                let m = Msg::new("Q", 0, body(i, 30), tag, "k");
                let _ = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
            let g = store.get_messages("Q", 0, 10, 32, 1 << 20, &all);
            assert_eq!(
                (g.status, g.next_begin_offset, g.max_offset),
                (GetStatus::OffsetOverflowOne, 10, 10)
            );
            let g = store.get_messages("Q", 0, 15, 32, 1 << 20, &all);
            assert_eq!(
                (g.status, g.next_begin_offset),
                (GetStatus::OffsetOverflowBadly, 10)
            );
            let g = store.get_messages("Q", 0, -1, 32, 1 << 20, &all);
            assert_eq!(
                (g.status, g.next_begin_offset),
                (GetStatus::OffsetTooSmall, 0)
            );
            let odd = tag_hash("odd");
            let g = store.get_messages("Q", 0, 0, 32, 1 << 20, &|c| c == odd);
            assert_eq!(
                (g.status, g.msg_count, g.next_begin_offset),
                (GetStatus::Found, 5, 10)
            );
            let recs = records(&chunk_bytes(&g.chunks));
            assert_eq!(
                recs.iter().map(|r| r.0).collect::<Vec<_>>(),
                vec![1, 3, 5, 7, 9]
            );
            // Non-adjacent records: one chunk each.
            assert_eq!(g.chunks.len(), 5);
            let none = tag_hash("none");
            let g = store.get_messages("Q", 0, 0, 32, 1 << 20, &|c| c == none);
            assert_eq!(
                (g.status, g.msg_count, g.next_begin_offset),
                (GetStatus::NoMatchedMessage, 0, 10)
            );
            let g = store.get_messages("Q", 0, 2, 3, 1 << 20, &all);
            assert_eq!(
                (g.status, g.msg_count, g.next_begin_offset),
                (GetStatus::Found, 3, 5)
            );
            // max_bytes: always at least one message, then stop before exceeding.
            let g = store.get_messages("Q", 0, 0, 32, 1, &all);
            assert_eq!((g.msg_count, g.next_begin_offset), (1, 1));
            assert_eq!(
                store.get_messages("Q", 1, 0, 32, 1 << 20, &all).status,
                GetStatus::NoMessageInQueue
            );
            assert_eq!(store.queues(), vec![("Q".to_string(), 0)]);
            shut(&store).await;
        });
    }

    /// The body of the record stored at `phys`, read back and CRC-verified.
    async fn stored_body(store: &Store, phys: u64) -> Vec<u8> {
        let rec = store
            .read_record(phys)
            .await
            .unwrap_or_else(|e| panic!("read {phys}: {e}"));
        let v = RecordView::parse_verified(&rec).unwrap_or_else(|e| panic!("parse {phys}: {e}"));
        v.body().to_vec()
    }

    /// (physical offset, body) of acknowledged appends.
    type Acked = Vec<(u64, Vec<u8>)>;

    /// Appends `m` and waits until it is durable (`flush = sync`).
    /// Shuts `store` down; a test fails on any error.
    async fn shut(store: &Store) {
        store
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
    }

    /// Opens the store of `cfg` again after a shutdown or a simulated crash.
    async fn reopen(cfg: StoreConfig) -> Store {
        Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}"))
    }

    async fn put_durable(store: &Store, m: &Msg) -> PutResult {
        let r = store
            .put_message(&m.view())
            .unwrap_or_else(|e| panic!("put: {e}"));
        store
            .wait_durable(r.end_physical_offset)
            .await
            .unwrap_or_else(|e| panic!("durable: {e}"));
        r
    }

    /// Runs `tasks` concurrent appenders of `per_task` messages (bodies of `body_len` bytes,
    /// topic `topic`, 4 queues), each waiting for durability after every append and checking
    /// that the durable point covers it. Returns (physical offset, body) of every append, all
    /// acknowledged.
    async fn sync_appenders(
        store: &Store,
        topic: &'static str,
        tasks: usize,
        per_task: usize,
        body_len: usize,
    ) -> Acked {
        let acked: Rc<RefCell<Acked>> = Rc::default();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            let acked = acked.clone();
            handles.push(io::spawn(async move {
                for i in 0..per_task {
                    let b = body(t * 1000 + i, body_len);
                    let m = Msg::new(topic, (t % 4) as i32, b.clone(), "g", "k");
                    let r = put_durable(&store, &m).await;
                    assert!(store.stats().commitlog_durable_offset >= r.end_physical_offset);
                    acked.borrow_mut().push((r.physical_offset, b));
                }
            }));
        }
        for h in handles {
            h.join().await;
        }
        let acked = std::mem::take(&mut *acked.borrow_mut());
        assert_eq!(acked.len(), tasks * per_task);
        acked
    }

    #[test]
    fn derived_flush_rounds_grow_with_a_backlog_and_most_past_the_lag_bound() {
        let bound = 8 << 30;
        // Without a backlog: the base budget, whatever the lag.
        assert_eq!(next_derived_scale(1, false, bound * 4, bound), 1);
        // A backlog within the bound: paced rounds grow up to the paced cap.
        let mut scale = 1;
        let mut seen = Vec::new();
        for _ in 0..4 {
            scale = next_derived_scale(scale, true, bound, bound);
            seen.push(scale);
        }
        assert_eq!(seen, vec![2, 4, 4, 4]);
        assert_eq!(MAX_PACED_DERIVED_SCALE, 4);
        // Past it: the budget keeps doubling, up to the cap.
        let mut seen = Vec::new();
        for _ in 0..3 {
            scale = next_derived_scale(scale, true, bound + 1, bound);
            seen.push(scale);
        }
        assert_eq!(seen, vec![8, 8, 8]);
        assert_eq!(MAX_DERIVED_SCALE, 8);
        // Back within the bound with a backlog: down to the paced cap.
        assert_eq!(next_derived_scale(8, true, bound, bound), 4);
        // Caught up (or the backlog gone): back down by halves.
        let mut down = Vec::new();
        for _ in 0..4 {
            scale = next_derived_scale(scale, false, 0, bound);
            down.push(scale);
        }
        assert_eq!(down, vec![4, 2, 1, 1]);
        // A zero bound means: always catch up when behind.
        assert_eq!(next_derived_scale(1, true, 1, 0), 2);
    }

    #[test]
    fn group_commit_shares_fdatasyncs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            flush: FlushMode::Sync,
            ..cfg(dir.path())
        };
        const TASKS: usize = 64;
        const PER_TASK: usize = 20;
        run(async {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            sync_appenders(&store, "G", TASKS, PER_TASK, 200).await;
            let total = TASKS * PER_TASK;
            let s = store.stats();
            assert_eq!(s.messages_appended, total as u64);
            assert!(s.fdatasync_count >= 1);
            assert!(
                s.fdatasync_count < (total / 4) as u64,
                "{} fdatasyncs for {total} messages",
                s.fdatasync_count
            );
            let sum: i64 = (0..4).map(|q| store.max_offset("G", q)).sum();
            assert_eq!(sum, total as i64);
            // The latency histograms saw the same work: one entry per fdatasync, at least one
            // write phase, and a parked wait for at most every message.
            let l = store.latency();
            assert_eq!(l.fdatasync.count, s.fdatasync_count, "{l:?}");
            assert!(l.write_phase.count >= 1, "{l:?}");
            assert!(
                (1..=total as u64).contains(&l.sync_wait.count),
                "{} parked waits for {total} messages",
                l.sync_wait.count
            );
            for h in [l.sync_wait, l.fdatasync, l.write_phase] {
                assert!(
                    h.p50_us <= h.p90_us
                        && h.p90_us <= h.p99_us
                        && h.p99_us <= h.p999_us
                        && h.p999_us <= h.max_us,
                    "{h:?}"
                );
            }
            shut(&store).await;
        });
    }

    /// The next CommitLog segment is prepared as soon as the writer is in the one before it,
    /// not only once that one is half full: under load the preparation (create, fallocate,
    /// fdatasync, link, reopen) took longer than half a segment's worth of appends, and the
    /// writer then created every segment itself. Here a few records fill far less than half of
    /// segment 0, and segment 1 still appears, full size, without being appended to.
    #[test]
    fn next_segment_is_prepared_while_the_active_one_is_nearly_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            preallocate: crate::config::Preallocate::Fallocate,
            ..cfg(dir.path())
        };
        let seg = c.segment_size_bytes;
        let next = dir
            .path()
            .join("commitlog")
            .join(crate::recovery::segment_file_name(seg));
        let next2 = next.clone();
        run(async move {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let mut end = 0;
            for i in 0..4 {
                let m = Msg::new("Prep", 0, body(i, 1000), "g", "k");
                end = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"))
                    .end_physical_offset;
            }
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
            assert_eq!(store.stats().commitlog_durable_offset, end);
            assert!(end > 0 && end < seg / 8, "records end at {end}");
            // The preparation runs in the background; give it up to 10 s.
            let mut waited = 0;
            while store.stats().segments_created < 2 && waited < 1000 {
                io::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            assert_eq!(store.stats().segments_created, 2, "segment 1 prepared");
            assert!(store.stats().commitlog_durable_offset < seg / 8);
            shut(&store).await;
        });
        let len = std::fs::metadata(&next2)
            .unwrap_or_else(|e| panic!("{}: {e}", next2.display()))
            .len();
        assert_eq!(len, seg, "the prepared segment is fallocated to full size");
    }

    /// Pipelined group commit (`sync_pipeline`): many appenders over several segment rolls are
    /// all acknowledged with far fewer fdatasyncs than messages, never before the durable point
    /// covers them, and after a reopen every acknowledged record is there byte for byte.
    #[test]
    fn pipelined_group_commit_acknowledges_only_durable_records_across_rolls() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            flush: FlushMode::Sync,
            sync_pipeline: true,
            ..cfg(dir.path())
        };
        pipelined_run_keeps_every_ack(c, "P", (64, 40, 2000), 2, |_| {});
    }

    /// The pipelined flusher cut at `sync_group_max_bytes` (here one block, so one chunk per
    /// write phase): with many appenders in flight, phases stop with chunks left, each sync
    /// makes durable only the whole records of the chunks written before it, and after a
    /// reopen every acknowledged record is there byte for byte.
    #[test]
    fn pipelined_group_commit_cut_at_the_group_bound_acknowledges_only_durable_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            flush: FlushMode::Sync,
            sync_pipeline: true,
            sync_group_max_bytes: crate::MIN_SYNC_GROUP_MAX_BYTES,
            write_chunk_bytes: 64 * 1024,
            ..cfg(dir.path())
        };
        pipelined_run_keeps_every_ack(c, "G", (256, 20, 4000), 4, |s| {
            assert!(s.sync_group_splits > 0, "no write phase was cut: {s:?}");
        });
    }

    /// `tasks` sync appenders of `per_task` records of `body` bytes each on a store opened with
    /// `c`: every message appended, the run past `rolls` segment rolls (2 MiB segments), far
    /// fewer fdatasyncs than messages, `check` on the stats, and after a reopen every
    /// acknowledged record there byte for byte and the queues' offsets adding up.
    fn pipelined_run_keeps_every_ack(
        c: StoreConfig,
        topic: &'static str,
        (tasks, per_task, body): (usize, usize, usize),
        rolls: u64,
        check: impl FnOnce(&StoreStats) + 'static,
    ) {
        let c2 = c.clone();
        let acked = run(async move {
            let store = Store::open(c2)
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let acked = sync_appenders(&store, topic, tasks, per_task, body).await;
            let total = tasks * per_task;
            let s = store.stats();
            assert_eq!(s.messages_appended, total as u64);
            assert!(
                s.commitlog_durable_offset > rolls * 2 * MIB,
                "the run crosses {rolls} segment rolls"
            );
            assert!(
                s.fdatasync_count < (total / 4) as u64,
                "{} fdatasyncs for {total} messages",
                s.fdatasync_count
            );
            check(&s);
            shut(&store).await;
            acked
        });
        reopen_and_check_acked(c, acked, move |store| {
            let sum: i64 = (0..4).map(|q| store.max_offset(topic, q)).sum();
            assert_eq!(sum, (tasks * per_task) as i64);
        });
    }

    /// A zero fill that the appends outrun (`zero_fill_max_append_rate`, here 1 byte/s) stops
    /// short once: the segment is published as filled so far (shorter than a segment, no
    /// `.prep` left), the writer rolls into it and writes past the zeros, and every
    /// acknowledged record is there after a reopen.
    #[test]
    fn a_zero_fill_outrun_by_appends_stops_short_and_the_segment_grows_as_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let seg = 64 * MIB;
        let c = StoreConfig {
            flush: FlushMode::Sync,
            preallocate: Preallocate::Zero,
            segment_size_bytes: seg,
            zero_fill_max_append_rate: 1,
            ..cfg(dir.path())
        };
        let log_dir = dir.path().join("commitlog");
        let next = log_dir.join(crate::recovery::segment_file_name(seg));
        let c2 = c.clone();
        let acked = run(async move {
            let store = Store::open(c2)
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            // Slow appends: the fill paces itself (up to 16x slower), so it is still running
            // when the rate window ends, and any append rate is above 1 byte/s.
            let mut acked = Vec::new();
            let mut i = 0;
            while store.stats().zero_fills_stopped == 0 && i < 1000 {
                let b = body(i, 1000);
                let m = Msg::new("Z", 0, b.clone(), "g", "k");
                let r = put_durable(&store, &m).await;
                acked.push((r.physical_offset, b));
                io::sleep(Duration::from_millis(5)).await;
                i += 1;
            }
            assert_eq!(store.stats().zero_fills_stopped, 1, "after {i} appends");
            // The stopped fill is published as it is.
            let mut waited = 0;
            while store.stats().segments_created < 2 && waited < 500 {
                io::sleep(Duration::from_millis(10)).await;
                waited += 1;
            }
            assert_eq!(store.stats().segments_created, 2, "segment 1 published");
            assert!(!has_prep_file(&log_dir), "no .prep file left");
            let filled = std::fs::metadata(&next)
                .unwrap_or_else(|e| panic!("{}: {e}", next.display()))
                .len();
            assert!(
                filled > 0 && filled < seg,
                "segment 1 filled to {filled} of {seg}"
            );
            // Fast appends across the roll and past the zeros (~25 MB a round).
            let mut rounds = 0;
            while store.stats().commitlog_durable_offset <= seg + filled && rounds < 8 {
                acked.extend(sync_appenders(&store, "Z", 64, 100, 4000).await);
                rounds += 1;
            }
            let s = store.stats();
            assert!(
                s.commitlog_durable_offset > seg + filled,
                "the run writes past the zeros"
            );
            assert!(s.zero_fills_stopped >= 1);
            shut(&store).await;
            acked
        });
        reopen_and_check_acked(c, acked, |_| {});
    }

    /// Reopens the store at `c`, checks every acknowledged record byte for byte, runs `also`
    /// on the reopened store and shuts it down.
    fn reopen_and_check_acked(c: StoreConfig, acked: Acked, also: impl FnOnce(&Store) + 'static) {
        run(async move {
            let store = reopen(c).await;
            for (phys, b) in &acked {
                assert_eq!(&stored_body(&store, *phys).await, b, "record at {phys}");
            }
            also(&store);
            shut(&store).await;
        });
    }

    fn has_prep_file(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "prep"))
            })
            .unwrap_or(false)
    }

    /// More index entries than one derived flush writes (`index::MAX_FLUSH_ENTRIES`): a clean
    /// shutdown still leaves the checkpoint with ConsumeQueues and IndexFile durable up to the
    /// CommitLog's end, so the next start re-dispatches nothing.
    #[test]
    fn clean_shutdown_flushes_the_whole_derived_backlog() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let n = crate::index::MAX_FLUSH_ENTRIES as usize + 50_000;
        run(async {
            let c = StoreConfig {
                segment_size_bytes: 256 * MIB,
                max_unflushed_bytes: 64 * MIB,
                tail_cache_bytes: 16 * MIB,
                flush_interval_ms: 3_600_000,
                checkpoint_interval_ms: 3_600_000,
                index_slots: 100_000,
                index_entries: 2 * n as u32,
                ..cfg(dir.path())
            };
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("A", 0, body(3, 16), "t", "k");
            let mut last = None;
            for _ in 0..n {
                let r = loop {
                    match store.put_message(&m.view()) {
                        Ok(r) => break r,
                        Err(StoreError::Busy { .. }) => store.wait_writable(200).await,
                        Err(e) => panic!("put: {e}"),
                    }
                };
                last = Some(r);
            }
            let end = last.map_or(0, |r| r.end_physical_offset);
            shut(&store).await;
            let cp = crate::checkpoint::Checkpoint::load(dir.path())
                .unwrap_or_else(|e| panic!("checkpoint: {e}"))
                .unwrap_or_else(|| panic!("no checkpoint"));
            assert_eq!(cp.commitlog_durable_offset, end);
            assert_eq!(cp.consumequeue_durable_offset, end);
            assert_eq!(cp.index_durable_offset, end);
        });
    }

    /// One flush cycle writes the chunks sealed when it began, syncs and advances the durable
    /// point; chunks sealed while it writes wait for the next cycle. (A cycle that wrote until
    /// nothing was pending never ended while appends kept sealing chunks faster than a window
    /// of writes completed: 100 B produce at ~300 MB/s ran 8 s without one fdatasync.)
    #[test]
    fn a_flush_cycle_stops_at_the_chunks_sealed_when_it_began() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let c = StoreConfig {
                segment_size_bytes: 64 * MIB,
                write_chunk_bytes: 64 * 1024,
                max_unflushed_bytes: 32 * MIB,
                // Only this test's calls flush.
                flush_interval_ms: 3_600_000,
                flush_bytes: u64::MAX,
                ..cfg(dir.path())
            };
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("A", 0, body(3, 1000), "t", "k");
            let mut appended = 0u64;
            let mut append_until = |store: &Store, end: u64| {
                while appended < end {
                    appended = store
                        .put_message(&m.view())
                        .unwrap_or_else(|e| panic!("put at {appended}: {e}"))
                        .end_physical_offset;
                }
                appended
            };
            let log = store.inner.log.clone();
            let pending = || log.writer.borrow().pending_len();
            let first_end = append_until(&store, 256 * 1024);
            let sealed_first = pending();
            assert!(sealed_first >= 2, "{sealed_first} chunks sealed");
            let flusher = log.clone();
            let cycle = io::spawn(async move { flusher.flush_once(false).await });
            // The cycle starts and waits for its writes; appends go on meanwhile.
            futures_lite::future::yield_now().await;
            let second_end = append_until(&store, first_end + 1024 * 1024);
            let sealed_both = pending();
            assert!(
                sealed_both > sealed_first,
                "{sealed_first} chunks sealed before the cycle, {sealed_both} after the appends"
            );
            let flushed = cycle
                .join()
                .await
                .unwrap_or_else(|| panic!("flush task cancelled"))
                .unwrap_or_else(|e| panic!("flush: {e}"));
            assert!(flushed);
            let durable = store.stats().commitlog_durable_offset;
            assert!(
                durable > 0 && durable <= first_end,
                "durable {durable}: within what was sealed before the cycle ({first_end})"
            );
            assert_eq!(
                pending(),
                sealed_both - sealed_first,
                "the chunks sealed during the cycle wait for the next one"
            );
            assert_eq!(store.stats().flush_count, 1);
            assert!(log
                .flush_once(true)
                .await
                .unwrap_or_else(|e| panic!("flush: {e}")));
            assert_eq!(pending(), 0);
            assert_eq!(store.stats().commitlog_durable_offset, second_end);
            shut(&store).await;
        });
    }

    /// Under a steady load the ConsumeQueue/IndexFile flush runs once per interval: units that
    /// arrived during a round are no backlog (rounds back to back cost an fdatasync per file
    /// and a checkpoint each, on the disk the CommitLog syncs to).
    #[test]
    fn derived_flushes_keep_their_interval_under_a_steady_load() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let c = StoreConfig {
                segment_size_bytes: 64 * MIB,
                flush_interval_ms: 100,
                checkpoint_interval_ms: 100,
                ..cfg(dir.path())
            };
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let msgs: Vec<Msg> = (0..4)
                .map(|q| Msg::new("A", q, body(q as usize, 200), "t", "k"))
                .collect();
            let began = Instant::now();
            let rounds_at_start = store.stats().derived_flush_rounds;
            let mut n = 0usize;
            while began.elapsed() < Duration::from_millis(1200) {
                for _ in 0..50 {
                    let _ = store
                        .put_message(&msgs[n % msgs.len()].view())
                        .unwrap_or_else(|e| panic!("put {n}: {e}"));
                    n += 1;
                }
                io::sleep(Duration::from_millis(1)).await;
            }
            let rounds = store.stats().derived_flush_rounds - rounds_at_start;
            let secs = began.elapsed().as_secs_f64();
            // One round per 100 ms (a few more where a tick lands late are fine; back to back
            // they were several per 10 ms).
            assert!(
                (3..=secs as u64 * 10 + 5).contains(&rounds),
                "{rounds} derived flush rounds in {secs:.2} s for {n} messages"
            );
            shut(&store).await;
        });
    }

    #[test]
    fn async_flush_by_interval_and_by_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            // By interval: nothing forces a flush but the 30 ms timer.
            let c = StoreConfig {
                flush_interval_ms: 30,
                flush_bytes: u64::MAX,
                ..cfg(&dir.path().join("interval"))
            };
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("A", 0, body(1, 100), "t", "k");
            let r = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(
                store.stats().commitlog_durable_offset,
                0,
                "acknowledged in memory only"
            );
            io::sleep(Duration::from_millis(300)).await;
            assert!(store.stats().commitlog_durable_offset >= r.end_physical_offset);
            shut(&store).await;

            // By bytes: the interval is an hour, the threshold 64 KiB.
            let c = StoreConfig {
                flush_interval_ms: 3_600_000,
                flush_bytes: 64 * 1024,
                ..cfg(&dir.path().join("bytes"))
            };
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("A", 0, body(2, 1000), "t", "k");
            let first = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            io::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                store.stats().commitlog_durable_offset,
                0,
                "below the byte threshold"
            );
            let mut last = first;
            while last.end_physical_offset < 64 * 1024 {
                last = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
            io::sleep(Duration::from_millis(200)).await;
            // The threshold flush wrote the filled chunks; the open chunk (under half full)
            // waits for the interval or an explicit flush. The durable point is a record end.
            let durable = store.stats().commitlog_durable_offset;
            let record_len = first.end_physical_offset;
            assert!(
                durable > 0 && durable + 64 * 1024 / 2 >= last.end_physical_offset,
                "durable {durable}, appended {}",
                last.end_physical_offset
            );
            assert_eq!(durable % record_len, 0, "durable {durable} inside a record");
            assert_eq!(store.stats().flush_count, 1);
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
            assert_eq!(
                store.stats().commitlog_durable_offset,
                last.end_physical_offset
            );
            shut(&store).await;
        });
    }

    /// Writes the same workload; returns the record stream read back after reopening.
    fn workload(c: StoreConfig) -> Vec<(i64, i64, Vec<u8>)> {
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            for i in 0..300 {
                let m = Msg::new("W", 0, body(i, 100 + i * 13), "t", "k");
                let _ = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"));
                if i % 50 == 0 {
                    store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
                }
            }
            shut(&store).await;
            let store = reopen(c).await;
            let mut out = Vec::new();
            let mut off = 0;
            loop {
                let g = store.get_messages("W", 0, off, 32, 1 << 24, &all);
                if g.status != GetStatus::Found {
                    break;
                }
                out.extend(records(&chunk_bytes(&g.chunks)));
                off = g.next_begin_offset;
            }
            shut(&store).await;
            out
        })
    }

    #[test]
    fn buffered_io_mode_gives_the_same_results() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let direct = workload(StoreConfig {
            io_mode: IoMode::Direct,
            ..cfg(&dir.path().join("direct"))
        });
        let buffered = workload(StoreConfig {
            io_mode: IoMode::Buffered,
            preallocate: Preallocate::Fallocate,
            ..cfg(&dir.path().join("buffered"))
        });
        assert_eq!(direct.len(), 300);
        assert_eq!(direct, buffered);
        for (i, r) in direct.iter().enumerate() {
            assert_eq!((r.0, &r.2), (i as i64, &body(i, 100 + i * 13)));
        }
    }

    /// `disable_thp` turns transparent huge pages off for the process as the store opens
    /// (`PR_GET_THP_DISABLE` reads 1 afterwards), and the store works as usual. The flag is
    /// process-wide and one-way, so this only checks the state after the open.
    #[test]
    fn disable_thp_turns_transparent_huge_pages_off_for_the_process() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            disable_thp: true,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            assert!(crate::prefault::process_thp_disabled());
            let m = Msg::new("T", 0, body(1, 3000), "t", "k");
            let r = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            assert_eq!(stored_body(&store, r.physical_offset).await, m.body);
            shut(&store).await;
        });
    }

    /// `write_chunk_bytes` is the largest chunk write also when messages may be bigger: 1 KiB
    /// messages in 16 KiB chunks under a 256 KiB message limit are written in chunks of at
    /// most 16 KiB (the limit used to be raised to the largest record plus a block, 260 KiB
    /// here), and one 200 KiB message still goes out whole, in a chunk of its own.
    #[test]
    fn write_chunk_bytes_bounds_every_chunk_write_below_the_message_limit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            write_chunk_bytes: 16 * 1024,
            flush_interval_ms: 60_000,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let before = store.stats();
            let mut bytes = 0;
            for i in 0..1000 {
                let m = Msg::new("C", 0, body(i, 1024), "t", "k");
                let r = store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"));
                bytes += r.end_physical_offset - r.physical_offset;
            }
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
            let small = store.stats();
            let writes = small.chunk_writes - before.chunk_writes;
            let written = small.bytes_written - before.bytes_written;
            assert!(
                written >= bytes,
                "{written} B written for {bytes} B appended"
            );
            assert!(
                written <= writes * 16 * 1024,
                "{writes} chunk writes sent {written} B: some chunk was over 16 KiB"
            );
            let big = Msg::new("C", 0, body(7, 200 * 1024), "t", "k");
            let r = store
                .put_message(&big.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
            let after = store.stats();
            assert!(
                after.bytes_written - small.bytes_written
                    >= r.end_physical_offset - r.physical_offset
            );
            assert_eq!(stored_body(&store, r.physical_offset).await, big.body);
            shut(&store).await;
        });
    }

    #[test]
    fn reopen_after_clean_shutdown_reads_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = cfg(dir.path());
        let (bytes_before, end) = run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let mut last = None;
            for i in 0..500 {
                let m = Msg::new("B", (i % 3) as i32, body(i, 1 + i * 7 % 3000), "t", "k");
                last = Some(
                    store
                        .put_message(&m.view())
                        .unwrap_or_else(|e| panic!("put: {e}")),
                );
            }
            let mut all_bytes = Vec::new();
            for q in 0..3 {
                let mut got = Vec::new();
                let mut off = 0;
                loop {
                    let g = store.get_messages("B", q, off, 1000, u32::MAX, &all);
                    if g.status != GetStatus::Found {
                        break;
                    }
                    got.extend(chunk_bytes(&g.chunks));
                    off = g.next_begin_offset;
                }
                all_bytes.push(got);
            }
            shut(&store).await;
            (all_bytes, last.map_or(0, |r| r.end_physical_offset))
        });
        run(async {
            let store = reopen(c).await;
            assert_eq!(store.stats().commitlog_end_offset, end);
            for q in 0..3 {
                let mut got = Vec::new();
                let mut off = 0;
                loop {
                    let g = store.get_messages("B", q, off, 1000, u32::MAX, &all);
                    if g.status != GetStatus::Found {
                        break;
                    }
                    assert!(g.chunks.iter().all(|c| matches!(c, Chunk::File { .. })));
                    got.extend(chunk_bytes(&g.chunks));
                    off = g.next_begin_offset;
                }
                assert!(
                    got == bytes_before[q as usize],
                    "queue {q}: {} bytes read back, {} before",
                    got.len(),
                    bytes_before[q as usize].len()
                );
            }
            shut(&store).await;
        });
    }

    #[test]
    fn disk_full_and_enospc_refuse_cleanly() {
        disk_full_and_enospc_refuse_cleanly_with(false);
    }

    /// The same with pipelined group commit: a failed write fails its waiters, and its retry
    /// after the fault clears makes the same records durable.
    #[test]
    fn disk_full_and_enospc_refuse_cleanly_pipelined() {
        disk_full_and_enospc_refuse_cleanly_with(true);
    }

    /// One write phase of the CommitLog that has something to write, and the segments its
    /// sync must cover: `(target, segments)`.
    async fn write_pass(log: &Rc<CommitLog>, what: &str) -> (u64, Vec<u64>) {
        let target = log
            .write_phase(true, u64::MAX)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: nothing to write"));
        let segs = log
            .take_unsynced(target)
            .unwrap_or_else(|| panic!("{what}: no segment to sync"));
        (target, segs)
    }

    /// The pipelined flusher's order of events: the writes of cycle k complete, cycle k+1's
    /// write fails (ENOSPC), then cycle k's sync completes. That sync makes cycle k's data
    /// durable, but the failed write still waits for its retry: appends stay refused until
    /// the retry succeeds. (Clearing the failure on any sync accepted appends on a full disk.)
    #[test]
    fn a_sync_of_earlier_writes_does_not_clear_a_later_write_failure() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // Async, with an interval and byte threshold the test never reaches: the phases are
        // driven by hand.
        let c = StoreConfig {
            flush: FlushMode::Async,
            flush_interval_ms: 600_000,
            flush_bytes: 1 << 30,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let log = store.inner.log.clone();
            let m = Msg::new("F", 0, body(1, 100), "t", "k");
            let put = |what: &str| {
                store
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put {what}: {e}"))
            };
            let r1 = put("1");
            let (t1, segs) = write_pass(&log, "write 1").await;
            assert_eq!(t1, r1.end_physical_offset);
            let r2 = put("2");
            log.set_write_fault(Some(libc::ENOSPC));
            let e = log
                .write_phase(true, u64::MAX)
                .await
                .err()
                .unwrap_or_else(|| panic!("write 2 should fail"));
            log.flush_failed(&e);
            log.sync_phase(t1, segs)
                .await
                .unwrap_or_else(|e| panic!("sync 1: {e}"));
            assert_eq!(store.stats().commitlog_durable_offset, t1);
            let refused = store.put_message(&m.view()).err();
            assert!(
                matches!(
                    refused,
                    Some(StoreError::FlushFailed { no_space: true, .. })
                ),
                "append while the write of record 2 is still failing: {refused:?}"
            );
            // The retry writes record 2; its sync clears the failure.
            log.set_write_fault(None);
            let (t2, segs) = write_pass(&log, "write 2 retried").await;
            assert_eq!(t2, r2.end_physical_offset);
            log.sync_phase(t2, segs)
                .await
                .unwrap_or_else(|e| panic!("sync 2: {e}"));
            assert_eq!(store.stats().commitlog_durable_offset, t2);
            let r3 = put("3");
            assert_eq!(
                r3.physical_offset, t2,
                "appended right after the retried record"
            );
            shut(&store).await;
        });
    }

    fn disk_full_and_enospc_refuse_cleanly_with(sync_pipeline: bool) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            flush: FlushMode::Sync,
            sync_pipeline,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c.clone())
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("D", 0, body(1, 100), "t", "k");
            let r = put_durable(&store, &m).await;

            let ratio = Rc::new(Cell::new(0.95));
            let probe = ratio.clone();
            store.set_disk_usage_probe(Box::new(move || Some(probe.get())));
            let e = store.put_message(&m.view()).err();
            assert!(matches!(e, Some(StoreError::DiskFull { .. })), "{e:?}");
            assert_eq!(store.max_offset("D", 0), 1, "nothing appended when refused");
            ratio.set(0.5);
            store.refresh_disk_usage();

            store.inject_write_fault(Some(libc::ENOSPC));
            let r2 = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put: {e}"));
            let e = store.wait_durable(r2.end_physical_offset).await.err();
            assert!(
                matches!(&e, Some(StoreError::FlushFailed { no_space: true, .. })),
                "{e:?}"
            );
            assert!(e.is_some_and(|e| e.is_disk_full()));
            let e = store.put_message(&m.view()).err();
            assert!(matches!(e, Some(StoreError::FlushFailed { .. })), "{e:?}");
            assert_eq!(
                store.stats().commitlog_durable_offset,
                r.end_physical_offset
            );

            store.inject_write_fault(None);
            store
                .flush()
                .await
                .unwrap_or_else(|e| panic!("flush after fault cleared: {e}"));
            assert!(store.stats().commitlog_durable_offset >= r2.end_physical_offset);
            let _r3 = put_durable(&store, &m).await;
            shut(&store).await;
        });
        run(async {
            let store = reopen(c).await;
            let g = store.get_messages("D", 0, 0, 32, u32::MAX, &all);
            assert_eq!(g.msg_count, 3);
            let recs = records(&chunk_bytes(&g.chunks));
            assert!(recs.iter().all(|r| r.2 == body(1, 100)));
            shut(&store).await;
        });
    }

    #[test]
    fn back_pressure_refuses_then_resumes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let c = StoreConfig {
            flush_interval_ms: 3_600_000,
            flush_bytes: u64::MAX,
            max_message_bytes: 64 * 1024,
            max_batch_bytes: 128 * 1024,
            max_unflushed_bytes: 512 * 1024,
            ..cfg(dir.path())
        };
        run(async {
            let store = Store::open(c).await.unwrap_or_else(|e| panic!("open: {e}"));
            let m = Msg::new("P", 0, body(3, 10_000), "t", "k");
            let mut n = 0;
            let err = loop {
                match store.put_message(&m.view()) {
                    Ok(_) => n += 1,
                    Err(e) => break e,
                }
                assert!(n < 1000, "never refused");
            };
            assert!(matches!(err, StoreError::Busy { .. }), "{err}");
            assert!(store.stats().commitlog_end_offset <= 512 * 1024);
            assert_eq!(store.stats().puts_refused_busy, 1);
            store.wait_writable(m.view().encoded_len()).await;
            let r = store
                .put_message(&m.view())
                .unwrap_or_else(|e| panic!("put after room: {e}"));
            assert_eq!(r.queue_offset, n);
            let big = Msg::new("P", 0, body(4, 64 * 1024 + 1), "t", "k");
            assert!(matches!(
                store.put_message(&big.view()),
                Err(StoreError::MessageTooLarge { .. })
            ));
            shut(&store).await;
        });
    }

    /// Copies everything `master` holds from `from` into `slave` the way the broker's HA
    /// connection does (reads of about `max` bytes, each appended whole); returns the offset
    /// both reached.
    async fn replicate(master: &Store, slave: &Store, mut from: u64, max: usize) -> u64 {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let next = master
                .read_for_replica(from, max, &mut buf)
                .unwrap_or_else(|e| panic!("read_for_replica at {from}: {e}"));
            if next == from {
                assert!(buf.is_empty());
                return from;
            }
            let mut at = 0;
            while at < buf.len() {
                let r = slave
                    .append_replica(from, &buf[at..])
                    .unwrap_or_else(|e| panic!("append_replica at {from}: {e}"));
                at += r.consumed;
                if at < buf.len() {
                    slave.wait_writable(4096).await;
                    from = r.next_offset;
                    continue;
                }
                assert_eq!(
                    r.next_offset, next,
                    "slave and master disagree on the next offset"
                );
            }
            from = next;
        }
    }

    /// Every record of every queue, as bytes, in queue order.
    fn queue_bytes(store: &Store, queues: &[(&str, i32)]) -> Vec<Vec<u8>> {
        queues
            .iter()
            .map(|(t, q)| {
                let mut out = Vec::new();
                let mut off = 0;
                loop {
                    let r = store.get_messages(t, *q, off, 10_000, u32::MAX, &all);
                    if r.msg_count == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk_bytes(&r.chunks));
                    off = r.next_begin_offset;
                }
                out
            })
            .collect()
    }

    #[test]
    fn a_slave_holds_the_masters_records_byte_for_byte_across_segment_rolls() {
        let mdir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let sdir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut mcfg = cfg(mdir.path());
        // Older records come from the segment files, newer ones from the tail cache.
        mcfg.tail_cache_bytes = MIB;
        let queues = [("RA", 0), ("RA", 1), ("RB", 0)];
        run(async {
            let master = Store::open(mcfg)
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let slave = Store::open(cfg(sdir.path()))
                .await
                .unwrap_or_else(|e| panic!("open slave: {e}"));
            let mut synced = 0;
            for round in 0..3usize {
                for i in 0..500usize {
                    let (t, q) = queues[i % queues.len()];
                    let n = round * 1000 + i;
                    if i % 10 == 0 {
                        let ms: Vec<Msg> = (0..5)
                            .map(|j| Msg::new(t, q, body(n + j, 700), "B", &format!("k{n}-{j}")))
                            .collect();
                        let views: Vec<_> = ms.iter().map(Msg::view).collect();
                        let _ = master
                            .put_batch(&views)
                            .unwrap_or_else(|e| panic!("batch: {e}"));
                    } else {
                        let m = Msg::new(t, q, body(n, 3000 + i), "A", &format!("k{n}"));
                        let _ = master
                            .put_message(&m.view())
                            .unwrap_or_else(|e| panic!("put: {e}"));
                    }
                }
                master
                    .flush()
                    .await
                    .unwrap_or_else(|e| panic!("flush: {e}"));
                synced = replicate(&master, &slave, synced, 64 * 1024).await;
                assert_eq!(synced, master.end_offset());
                assert_eq!(slave.end_offset(), master.end_offset());
            }
            assert!(
                master.commitlog().segment_bases().len() >= 3,
                "the test must cross segment rolls"
            );
            slave
                .flush()
                .await
                .unwrap_or_else(|e| panic!("flush slave: {e}"));
            assert_eq!(
                master.commitlog().segment_bases(),
                slave.commitlog().segment_bases()
            );
            let want = queue_bytes(&master, &queues);
            assert!(want.iter().all(|q| !q.is_empty()));
            assert_eq!(queue_bytes(&slave, &queues), want);
            for (t, q) in queues {
                assert_eq!(slave.max_offset(t, q), master.max_offset(t, q));
            }
            let hit = slave.query_by_key("RA", "k2003", 8, 0, i64::MAX);
            assert_eq!(hit, master.query_by_key("RA", "k2003", 8, 0, i64::MAX));
            assert_eq!(hit.len(), 1);
            shut(&master).await;
            shut(&slave).await;
            // The slave's files recover like any store's.
            let slave = Store::open(cfg(sdir.path()))
                .await
                .unwrap_or_else(|e| panic!("reopen slave: {e}"));
            assert_eq!(slave.end_offset(), synced);
            assert_eq!(queue_bytes(&slave, &queues), want);
            shut(&slave).await;
        });
    }

    #[test]
    fn a_slave_refuses_replicated_data_that_does_not_continue_its_log() {
        let mdir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let sdir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        run(async {
            let master = Store::open(cfg(mdir.path()))
                .await
                .unwrap_or_else(|e| panic!("open: {e}"));
            let slave = Store::open(cfg(sdir.path()))
                .await
                .unwrap_or_else(|e| panic!("open slave: {e}"));
            for i in 0..4 {
                let m = Msg::new("T", 0, body(i, 100), "A", "k");
                let _ = master
                    .put_message(&m.view())
                    .unwrap_or_else(|e| panic!("put: {e}"));
            }
            let mut buf = Vec::new();
            let next = master
                .read_for_replica(0, 1 << 20, &mut buf)
                .unwrap_or_else(|e| panic!("read: {e}"));
            assert_eq!(next, master.end_offset());
            assert_eq!(buf.len() as u64, next);
            let first = RecordView::parse(&buf)
                .unwrap_or_else(|e| panic!("parse: {e}"))
                .total_size() as usize;
            // Not where the slave's log ends.
            let e = slave.append_replica(first as u64, &buf[first..]);
            assert!(
                matches!(e, Err(StoreError::ReplicaDiverged { offset, .. }) if offset == first as u64),
                "{e:?}"
            );
            // A flipped body byte in the second record: the first is kept, nothing after.
            let mut bad = buf.clone();
            let second = RecordView::parse(&buf[first..]).unwrap_or_else(|e| panic!("parse: {e}"));
            let body_at = second.body().as_ptr() as usize - buf.as_ptr() as usize;
            bad[body_at + 5] ^= 0x40;
            let e = slave.append_replica(0, &bad);
            assert!(
                matches!(e, Err(StoreError::ReplicaDiverged { .. })),
                "{e:?}"
            );
            assert!(slave.end_offset() < master.end_offset());
            let kept = slave.end_offset();
            let r = slave
                .append_replica(kept, &buf[kept as usize..])
                .unwrap_or_else(|e| panic!("append the rest: {e}"));
            assert_eq!(r.next_offset, master.end_offset());
            assert_eq!(
                queue_bytes(&slave, &[("T", 0)]),
                queue_bytes(&master, &[("T", 0)])
            );
            // Nothing stored past the end: the master answers with no bytes.
            buf.clear();
            let end = master.end_offset();
            assert_eq!(master.read_for_replica(end, 4096, &mut buf).ok(), Some(end));
            assert!(buf.is_empty());
            shut(&master).await;
            shut(&slave).await;
        });
    }
}
