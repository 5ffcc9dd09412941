//! The CommitLog: segment files named by their 20-digit start offset, the in-memory writer,
//! the tail cache, and the flush step (O_DIRECT or buffered writes, fdatasync, group commit).
//!
//! - [`writer`]: offsets, chunks, segment roll with a blank record (synchronous, in memory).
//! - [`tailcache`]: recent chunks readable from memory ([`TailSlice`]).
//! - [`flush`]: durable watermark and waiters (group commit), flusher signal.
//! - [`CommitLog`]: ties them to the segment files.

pub mod flush;
pub mod tailcache;
pub mod writer;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::record::{blank_len, RecordView, BLANK_RECORD_LEN, MIN_RECORD_LEN};

pub use tailcache::TailSlice;

use self::flush::{DurableWatch, FlushSignal, RoomWatch};
use self::writer::{Writer, WriterLimits};
use crate::config::{Preallocate, StoreConfig, IO_ALIGNMENT};
use crate::error::StoreError;
use crate::io::{self, SegmentFile};
use crate::latency::{LatencyHistogram, StoreLatency};
use crate::recovery::{list_segments, segment_file_name};

/// Chunk writes of one flush in flight at once (disjoint blocks; bounded so that one flush
/// never queues more than this many DMA writes).
pub const MAX_WRITES_IN_FLIGHT: usize = 16;

/// Read descriptors kept open for segments no longer written (sendfile sources); older ones are
/// closed once no pull result holds them.
pub const MAX_OPEN_READERS: usize = 32;

/// A piece of a pull result. Adjacent ranges are coalesced.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes still in the tail cache: send them from memory (vectored write).
    Memory(TailSlice),
    /// Bytes on disk: `len` bytes at `offset` of `file`, a BUFFERED (non-O_DIRECT) descriptor
    /// of the segment, for sendfile/splice.
    File {
        file: Rc<File>,
        offset: u64,
        len: u32,
    },
}

impl Chunk {
    /// Number of bytes in the chunk.
    pub fn len(&self) -> usize {
        match self {
            Chunk::Memory(s) => s.len(),
            Chunk::File { len, .. } => *len as usize,
        }
    }

    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters of the CommitLog.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitLogStats {
    pub fdatasync_count: u64,
    pub flush_count: u64,
    pub chunk_writes: u64,
    pub bytes_written: u64,
    /// Write phases of the pipelined sync flusher that stopped at
    /// `StoreConfig::sync_group_max_bytes` with sealed chunks left for the next phase.
    pub sync_group_splits: u64,
    pub flush_failures: u64,
    pub segments_created: u64,
    /// Zero fills of a next segment stopped short because appends outran
    /// `StoreConfig::zero_fill_max_append_rate` (the segment is published as filled so far,
    /// the rest grows as it is written).
    pub zero_fills_stopped: u64,
    pub segment_rolls: u64,
    pub tail_cache_hits: u64,
    pub tail_cache_misses: u64,
    pub tail_cache_bytes: u64,
    pub tail_cache_chunks: u64,
    /// Write chunks served from the writer's pool (a recycled buffer or a stocked fresh one)
    /// / from a fresh allocation on the spot.
    pub write_buffers_reused: u64,
    pub write_buffers_allocated: u64,
    /// Fresh buffers stocked into the pool ahead of need / buffers given back and freed.
    pub write_buffers_stocked: u64,
    pub write_buffers_released: u64,
    pub appended_end: u64,
    pub written_end: u64,
    pub durable_end: u64,
}

/// One shard's CommitLog (see the module docs). Used from one executor only.
pub struct CommitLog {
    cfg: StoreConfig,
    dir: PathBuf,
    pub(crate) writer: RefCell<Writer>,
    /// Segments open for writing: the active one, any with chunks still to write or sync, and
    /// the one prepared ahead. Older segments are closed (file descriptors are bounded).
    segments: RefCell<BTreeMap<u64, Rc<SegmentFile>>>,
    /// Base offsets of every segment file present.
    known: RefCell<BTreeSet<u64>>,
    /// Buffered read descriptors of closed segments, most recently used last.
    readers: RefCell<VecDeque<(u64, Rc<File>)>>,
    /// Segments written since their last fdatasync.
    unsynced: RefCell<BTreeSet<u64>>,
    pub(crate) durable: DurableWatch,
    pub(crate) signal: FlushSignal,
    /// Someone waits for everything appended to become durable (explicit flush, a durable
    /// wait, shutdown, a retry): the next flush seals the active chunk whatever its fill.
    whole_wanted: Cell<bool>,
    pub(crate) room: RoomWatch,
    /// Base of the segment a background task is preparing.
    preparing: Cell<Option<u64>>,
    min_offset: Cell<u64>,
    /// Test hook: when set, chunk writes fail with this errno before reaching the file.
    write_fault: Cell<Option<i32>>,
    stats: Cell<CommitLogStats>,
    /// Durations of each fdatasync and each write phase (see [`crate::latency`]).
    fdatasync_latency: RefCell<LatencyHistogram>,
    write_phase_latency: RefCell<LatencyHistogram>,
}

impl CommitLog {
    /// Opens the CommitLog of `cfg` whose valid data ends at `end_offset` (from recovery) and
    /// starts at `min_offset`. Must run inside the shard's executor, after [`io::warm_up`].
    pub async fn open(
        cfg: &StoreConfig,
        end_offset: u64,
        min_offset: u64,
    ) -> Result<Rc<CommitLog>, StoreError> {
        let dir = cfg.commitlog_dir();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating directory", &dir, e))?;
        remove_leftovers(&dir)?;
        let seg_size = cfg.segment_size_bytes;
        let mut known = BTreeSet::new();
        for s in list_segments(&dir).map_err(|e| StoreError::Recovery {
            dir: dir.clone(),
            reason: e.to_string(),
        })? {
            known.insert(s.base_offset);
        }
        let mut segments = BTreeMap::new();
        let active_base = end_offset - end_offset % seg_size;
        let mut created = 0;
        if known.contains(&active_base) {
            let path = dir.join(segment_file_name(active_base));
            let f = SegmentFile::open(&path, active_base, cfg.io_mode).await?;
            segments.insert(active_base, Rc::new(f));
        } else {
            let path = dir.join(segment_file_name(active_base));
            let f = SegmentFile::create_prepared(
                &path,
                active_base,
                seg_size,
                cfg.preallocate,
                cfg.io_mode,
                &|| true,
                &|_, _| Some(Duration::ZERO),
            )
            .await?;
            segments.insert(active_base, Rc::new(f));
            known.insert(active_base);
            created += 1;
        }
        let block_start = end_offset - end_offset % IO_ALIGNMENT;
        let tail = if block_start < end_offset {
            let seg = segments.get(&active_base).ok_or(StoreError::NoRecord {
                offset: end_offset,
                reason: "active segment missing",
            })?;
            seg.read_exact_at(
                block_start - active_base,
                (end_offset - block_start) as usize,
            )?
        } else {
            Vec::new()
        };
        let limits = WriterLimits {
            segment_size: seg_size,
            // A record bigger than this gets a chunk of its own size (`Writer::append`).
            chunk_max_bytes: cfg.write_chunk_bytes,
            max_unflushed_bytes: cfg.max_unflushed_bytes,
            tail_cache_bytes: cfg.tail_cache_bytes,
            pool_bytes: cfg.write_pool_bytes,
            pool_preallocate_bytes: cfg.write_pool_preallocate_bytes,
        };
        let min_offset = known
            .first()
            .copied()
            .map_or(min_offset, |first| first.max(min_offset));
        let log = CommitLog {
            cfg: cfg.clone(),
            dir,
            writer: RefCell::new(Writer::new(limits, end_offset, &tail)),
            segments: RefCell::new(segments),
            known: RefCell::new(known),
            readers: RefCell::new(VecDeque::new()),
            unsynced: RefCell::new(BTreeSet::new()),
            durable: DurableWatch::new(end_offset),
            signal: FlushSignal::default(),
            whole_wanted: Cell::new(false),
            room: RoomWatch::default(),
            preparing: Cell::new(None),
            min_offset: Cell::new(min_offset),
            write_fault: Cell::new(None),
            stats: Cell::new(CommitLogStats {
                segments_created: created,
                ..CommitLogStats::default()
            }),
            fdatasync_latency: RefCell::new(LatencyHistogram::new()),
            write_phase_latency: RefCell::new(LatencyHistogram::new()),
        };
        Ok(Rc::new(log))
    }

    /// Directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the next record goes.
    pub fn end_offset(&self) -> u64 {
        self.writer.borrow().appended_end()
    }

    /// Everything below is on disk.
    pub fn durable_offset(&self) -> u64 {
        self.durable.durable()
    }

    /// Lowest offset still stored.
    pub fn min_offset(&self) -> u64 {
        self.min_offset.get()
    }

    /// The durability path's latencies since the CommitLog opened.
    pub fn latency(&self) -> StoreLatency {
        StoreLatency {
            sync_wait: self.durable.wait_latency(),
            fdatasync: self.fdatasync_latency.borrow().summary(),
            write_phase: self.write_phase_latency.borrow().summary(),
        }
    }

    /// The same over the last whole [`crate::latency::LATENCY_WINDOW`] before `now`.
    pub fn latency_last_window(&self, now: Instant) -> StoreLatency {
        StoreLatency {
            sync_wait: self.durable.wait_latency_last_window(now),
            fdatasync: self.fdatasync_latency.borrow_mut().last_window(now),
            write_phase: self.write_phase_latency.borrow_mut().last_window(now),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CommitLogStats {
        let mut s = self.stats.get();
        let w = self.writer.borrow();
        s.segment_rolls = w.blank_count();
        s.tail_cache_hits = w.cache().hits();
        s.tail_cache_misses = w.cache().misses();
        s.tail_cache_bytes = w.cache().bytes();
        s.tail_cache_chunks = w.cache().chunk_count() as u64;
        let pool = w.pool_stats();
        s.write_buffers_reused = pool.reused;
        s.write_buffers_allocated = pool.allocated;
        s.write_buffers_stocked = pool.stocked;
        s.write_buffers_released = pool.released;
        s.appended_end = w.appended_end();
        s.written_end = w.written_end();
        s.durable_end = self.durable.durable();
        s
    }

    fn bump(&self, f: impl FnOnce(&mut CommitLogStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Test hook for disk-full handling: while `Some(errno)`, every chunk write fails with that
    /// OS error (e.g. `libc::ENOSPC`) without touching the file.
    pub fn set_write_fault(&self, errno: Option<i32>) {
        self.write_fault.set(errno);
    }

    /// Base offsets of the segment files, oldest first.
    pub fn segment_bases(&self) -> Vec<u64> {
        self.known.borrow().iter().copied().collect()
    }

    /// The buffered read descriptor and in-file position of global `offset`: the open
    /// segment's own, or one from the bounded reader cache (opened on a miss).
    fn file_position(&self, offset: u64) -> Result<(Rc<File>, u64), StoreError> {
        let missing = StoreError::NoRecord {
            offset,
            reason: "no segment holds this offset (deleted?)",
        };
        let base = *self
            .known
            .borrow()
            .range(..=offset)
            .next_back()
            .ok_or(missing)?;
        let pos = offset - base;
        if pos >= self.cfg.segment_size_bytes {
            return Err(StoreError::NoRecord {
                offset,
                reason: "no segment holds this offset (deleted?)",
            });
        }
        if let Some(f) = self.segments.borrow().get(&base) {
            return Ok((f.reader(), pos));
        }
        let mut readers = self.readers.borrow_mut();
        if let Some(i) = readers.iter().position(|(b, _)| *b == base) {
            if let Some(entry) = readers.remove(i) {
                let f = entry.1.clone();
                readers.push_back(entry);
                return Ok((f, pos));
            }
        }
        let path = self.dir.join(segment_file_name(base));
        let f = Rc::new(
            File::open(&path).map_err(|e| StoreError::io("opening segment for reads", &path, e))?,
        );
        if readers.len() >= MAX_OPEN_READERS {
            readers.pop_front();
        }
        readers.push_back((base, f.clone()));
        Ok((f, pos))
    }

    /// Closes the write descriptors of segments wholly written and synced (never the active
    /// one nor the one prepared ahead).
    fn close_finished_segments(&self) {
        let written = self.writer.borrow().written_end();
        let active_base = written - written % self.cfg.segment_size_bytes;
        let unsynced = self.unsynced.borrow();
        let mut segs = self.segments.borrow_mut();
        let done: Vec<u64> = segs
            .keys()
            .copied()
            .filter(|b| *b < active_base && !unsynced.contains(b))
            .collect();
        for b in done {
            // Dropping the O_DIRECT file closes it asynchronously; readers keep their own fd.
            segs.remove(&b);
        }
    }

    /// Appends to `chunks` the `len` bytes of the record at `offset`, for a pull: from the tail
    /// cache if there, else a range of the segment's buffered descriptor. When the bytes follow
    /// the last chunk directly (same cache chunk, or same file), that chunk grows instead.
    pub fn read_into(
        &self,
        offset: u64,
        len: u32,
        chunks: &mut Vec<Chunk>,
    ) -> Result<(), StoreError> {
        {
            let mut w = self.writer.borrow_mut();
            let prev = match chunks.last_mut() {
                Some(Chunk::Memory(s)) => Some(s),
                _ => None,
            };
            match w.cache_mut().get_or_extend(offset, len, prev) {
                Ok(None) => return Ok(()),
                Ok(Some(s)) => {
                    chunks.push(Chunk::Memory(s));
                    return Ok(());
                }
                Err(()) => {}
            }
            if offset + len as u64 > w.written_end() {
                return Err(StoreError::NoRecord {
                    offset,
                    reason: "neither in the tail cache nor written to the file",
                });
            }
        }
        let (reader, pos) = self.file_position(offset)?;
        if let Some(Chunk::File {
            file,
            offset: at,
            len: l,
        }) = chunks.last_mut()
        {
            if Rc::ptr_eq(file, &reader)
                && *at + *l as u64 == pos
                && *l as u64 + len as u64 <= u32::MAX as u64
            {
                *l += len;
                return Ok(());
            }
        }
        chunks.push(Chunk::File {
            file: reader,
            offset: pos,
            len,
        });
        Ok(())
    }

    /// The segment file range [`CommitLog::replica_read`] would read for `offset` and `max`:
    /// the file, the position in it and the length. `None` when those bytes are in the tail
    /// cache or nothing is stored there. Lets a caller read cold bytes into the page cache off
    /// the shard first.
    pub fn replica_file_range(&self, offset: u64, max: usize) -> Option<(Rc<File>, u64, u64)> {
        if offset >= self.end_offset() || offset < self.min_offset() {
            return None;
        }
        if self.writer.borrow().cache().contiguous(offset).is_some() {
            return None;
        }
        let written = self.writer.borrow().written_end();
        let (reader, pos) = self.file_position(offset).ok()?;
        let len = written
            .saturating_sub(offset)
            .min(self.cfg.segment_size_bytes - pos)
            .min(max as u64);
        (len > 0).then_some((reader, pos, len))
    }

    /// Copies whole entries (records, or an end-of-segment marker) starting at `offset` into
    /// `out`, about `max` bytes (at least one entry), for a slave: from the tail cache when
    /// there, else with one read of the segment. Returns the offset the next read starts at:
    /// past the last entry copied, or the next segment's base when a blank marker was copied
    /// (only its 8 bytes travel, not the filler). Returns `offset` itself, copying nothing,
    /// when nothing is stored there yet.
    pub fn replica_read(
        &self,
        offset: u64,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, StoreError> {
        if offset >= self.end_offset() {
            return Ok(offset);
        }
        if offset < self.min_offset() {
            return Err(StoreError::NoRecord {
                offset,
                reason: "below the CommitLog's first segment (deleted by retention)",
            });
        }
        let seg = self.cfg.segment_size_bytes;
        let cached = self.writer.borrow().cache().contiguous(offset);
        let start = out.len();
        match cached {
            Some(slice) => {
                let n = whole_entries(&slice, max).ok_or(StoreError::NoRecord {
                    offset,
                    reason: "no whole entry in the cached range",
                })?;
                out.extend_from_slice(&slice[..n]);
            }
            None => {
                let written = self.writer.borrow().written_end();
                let (reader, pos) = self.file_position(offset)?;
                let limit = (written.saturating_sub(offset))
                    .min(seg - pos)
                    .min(max.max(BLANK_RECORD_LEN) as u64) as usize;
                if limit < BLANK_RECORD_LEN {
                    return Err(StoreError::NoRecord {
                        offset,
                        reason: "neither in the tail cache nor written to the file",
                    });
                }
                let read = |out: &mut Vec<u8>, len: usize| {
                    out.resize(start + len, 0);
                    std::os::unix::fs::FileExt::read_exact_at(&*reader, &mut out[start..], pos)
                        .map_err(|e| {
                            StoreError::io("reading segment", self.segment_path(offset), e)
                        })
                };
                read(out, limit)?;
                let n = match whole_entries(&out[start..], max) {
                    Some(n) => n,
                    None => {
                        // One record bigger than what was read: read exactly it.
                        let size = u32::from_be_bytes([
                            out[start],
                            out[start + 1],
                            out[start + 2],
                            out[start + 3],
                        ]) as u64;
                        if size < MIN_RECORD_LEN as u64
                            || size > seg - pos
                            || offset + size > written
                        {
                            return Err(StoreError::Corrupt {
                                segment: self.segment_path(offset),
                                offset,
                                reason: format!("record size {size} out of range"),
                            });
                        }
                        read(out, size as usize)?;
                        size as usize
                    }
                };
                out.truncate(start + n);
            }
        }
        let copied = &out[start..];
        let mut at = 0usize;
        let mut next = offset;
        while at < copied.len() {
            if let Some(len) = blank_len(&copied[at..]) {
                next = offset + at as u64 + u64::from(len);
                debug_assert!(next.is_multiple_of(seg));
                return Ok(next);
            }
            let size =
                u32::from_be_bytes([copied[at], copied[at + 1], copied[at + 2], copied[at + 3]])
                    as usize;
            at += size;
            next = offset + at as u64;
        }
        Ok(next)
    }

    /// The whole record stored at `offset`, validated (structure and body CRC).
    pub fn read_record(&self, offset: u64) -> Result<bytes::Bytes, StoreError> {
        let size_bytes = self.read_bytes(offset, 8)?;
        if blank_len(&size_bytes).is_some() {
            return Err(StoreError::NoRecord {
                offset,
                reason: "blank end-of-segment marker",
            });
        }
        let size = i32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
        let max = self.cfg.max_record_bytes().max(self.cfg.max_batch_bytes);
        if size < MIN_RECORD_LEN as i32 || size as usize > max {
            return Err(StoreError::NoRecord {
                offset,
                reason: "no record starts here (size field out of range)",
            });
        }
        let bytes = self.read_bytes(offset, size as usize)?;
        let view = RecordView::parse_verified(&bytes).map_err(|e| StoreError::Corrupt {
            segment: self.segment_path(offset),
            offset,
            reason: e.to_string(),
        })?;
        if view.physical_offset() != offset as i64 {
            return Err(StoreError::NoRecord {
                offset,
                reason: "the record found there belongs to another offset",
            });
        }
        Ok(bytes::Bytes::from(bytes))
    }

    /// Store timestamp of the record at `offset`, reading only its head.
    pub fn store_timestamp_at(&self, offset: u64) -> Result<i64, StoreError> {
        use ramjet_core::record::layout::{host_len, HEAD_LEN};
        use ramjet_core::record::sysflag::BORNHOST_V6_FLAG;
        const SYSFLAG_POS: usize = 36;
        let head = self.read_bytes(offset, HEAD_LEN + host_len(true) + 8)?;
        if head.len() < HEAD_LEN + host_len(false) + 8 {
            return Err(StoreError::NoRecord {
                offset,
                reason: "record head truncated",
            });
        }
        let be4 =
            |at: usize| i32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let sys_flag = be4(SYSFLAG_POS);
        let pos = HEAD_LEN + host_len(sys_flag & BORNHOST_V6_FLAG != 0);
        let bytes: [u8; 8] = head
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or(StoreError::NoRecord {
                offset,
                reason: "record head truncated",
            })?;
        Ok(i64::from_be_bytes(bytes))
    }

    fn segment_path(&self, offset: u64) -> PathBuf {
        let base = offset - offset % self.cfg.segment_size_bytes;
        self.dir.join(segment_file_name(base))
    }

    /// `len` bytes at `offset`, from memory or the file.
    fn read_bytes(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        if offset >= self.end_offset() || offset < self.min_offset() {
            return Err(StoreError::NoRecord {
                offset,
                reason: "outside the stored CommitLog range",
            });
        }
        let len = len.min((self.end_offset() - offset) as usize);
        if let Some(s) = self.writer.borrow_mut().cache_mut().get(offset, len as u32) {
            return Ok(s.as_ref().to_vec());
        }
        let (reader, pos) = self.file_position(offset)?;
        let len = len.min((self.cfg.segment_size_bytes - pos) as usize);
        let mut out = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&*reader, &mut out, pos)
            .map_err(|e| StoreError::io("reading segment", self.segment_path(offset), e))?;
        Ok(out)
    }

    /// Wakes the flusher for a flush that covers everything appended so far.
    pub(crate) fn request_whole_flush(&self) {
        self.whole_wanted.set(true);
        self.signal.raise();
    }

    /// One flush cycle: writes the chunks sealed when it starts, in order, then one fdatasync per segment
    /// written (one, except at a roll), then raises the durable watermark. Returns whether
    /// anything was flushed. Only the flusher task calls this.
    ///
    /// `whole` (or a pending [`CommitLog::request_whole_flush`]) seals the active chunk too, so
    /// that everything appended becomes durable. Without it (an async-mode flush woken by the
    /// byte threshold) a chunk under half full stays open: sealing trims its buffer to the
    /// written length, and a buffer trimmed below half its allocation cannot be recycled, so
    /// such flushes made every new chunk a fresh allocation (page faults on the shard; see
    /// `io::buffer`). Such a flush makes durable the whole records below the open chunk; the
    /// rest follows with the next whole flush (at most `flush_interval_ms` later).
    ///
    /// Until session 27 the chunk stayed open only when sealed chunks were there to write.
    /// Byte-threshold flushes that found none sealed small chunks several times a second at
    /// 265k msg/s of 100 B e2e. Their 4 MiB buffers were trimmed and freed, the next chunk
    /// sizes swung between 512 KiB and 4 MiB, and each swing restocked a fresh buffer. In one
    /// 12 s run that was 179 fresh 4 MiB buffers, each glibc arena growth (`mprotect` under
    /// the mmap lock) plus 2 MiB huge pages zeroed on the shard. With the chunk kept open
    /// there were 0 restocks and 27 releases instead of 205. e2e at 265k msg/s, 4 alternating
    /// rounds: p99 1.3-2.8 ms instead of 6.6-28.4 ms (perf/results/session27-2026-12-07.md).
    pub(crate) async fn flush_once(self: &Rc<Self>, whole: bool) -> Result<bool, StoreError> {
        match self.write_phase(whole, u64::MAX).await? {
            None => Ok(false),
            Some(target) => {
                if let Some(segs) = self.take_unsynced(target) {
                    self.sync_phase(target, segs).await?;
                }
                Ok(true)
            }
        }
    }

    /// The first half of [`CommitLog::flush_once`]: seals and writes, and marks the segments
    /// written as needing a sync. Returns the offset a [`CommitLog::sync_phase`] started after
    /// it makes durable, or `None` when there is nothing to write or sync.
    pub(crate) async fn write_phase(
        self: &Rc<Self>,
        whole: bool,
        max_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        let whole = self.whole_wanted.replace(false) || whole;
        let sealed_end = self.writer.borrow_mut().seal_for_flush(whole);
        let mut target = sealed_end;
        if target <= self.durable.durable()
            && self.writer.borrow().next_pending().is_none()
            && self.unsynced.borrow().is_empty()
        {
            if self.durable.current_failure().is_some() {
                // Nothing left to retry (a fault hit after the data was made durable): appends
                // may go on.
                self.advance_durable(target);
            }
            return Ok(None);
        }
        let seg_size = self.cfg.segment_size_bytes;
        let started = Instant::now();
        let mut window = Vec::with_capacity(MAX_WRITES_IN_FLIGHT);
        // Only the chunks sealed by now: they hold everything below `target`. Chunks sealed
        // while this flush writes wait for the next one, so that under a sustained load each
        // cycle ends with its fdatasync and the durable point keeps moving (writing until
        // nothing was pending never ended while appends kept up with the disk: no fdatasync,
        // no durable progress, no derived-file flush or checkpoint for as long as the load
        // lasted).
        let mut left = self.writer.borrow().pending_len();
        let mut phase_bytes = 0u64;
        while left > 0 {
            if phase_bytes >= max_bytes {
                // Stop here: the chunks written so far get their sync now, the rest waits for
                // the next phase (written while this one's sync is in flight).
                break;
            }
            self.writer
                .borrow()
                .pending_window(MAX_WRITES_IN_FLIGHT.min(left), &mut window);
            if window.is_empty() {
                break;
            }
            // At least one chunk, then only as many as the byte budget takes.
            let mut budget = max_bytes - phase_bytes;
            let mut keep = 0;
            for c in &window {
                keep += 1;
                let len = c.buf.write_len() as u64;
                if len >= budget {
                    break;
                }
                budget -= len;
            }
            window.truncate(keep);
            left -= window.len();
            // The window's writes cover disjoint blocks, so they go out together; the next
            // window starts after all of them completed.
            let mut writes = Vec::with_capacity(window.len());
            for chunk in &window {
                let seg_base = chunk.base - chunk.base % seg_size;
                let file = self.segment_for_write(seg_base).await?;
                if let Some(errno) = self.write_fault.get() {
                    return Err(StoreError::io(
                        "writing chunk (injected fault)",
                        file.path(),
                        std::io::Error::from_raw_os_error(errno),
                    ));
                }
                let buf = chunk.buf.clone();
                let pos = chunk.base - seg_base;
                self.unsynced.borrow_mut().insert(seg_base);
                if window.len() == 1 {
                    // The common case under `flush = sync`: no task needed.
                    file.write_chunk(&buf, pos).await?;
                } else {
                    writes.push(io::spawn(async move { file.write_chunk(&buf, pos).await }));
                }
            }
            let mut failure = None;
            for w in writes {
                let res = w.join().await.unwrap_or_else(|| {
                    Err(StoreError::io(
                        "writing chunk",
                        self.dir.clone(),
                        std::io::Error::other("write task cancelled"),
                    ))
                });
                if let Err(e) = res {
                    failure.get_or_insert(e);
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            for chunk in &window {
                let written = chunk.buf.write_len() as u64;
                phase_bytes += written;
                self.writer.borrow_mut().pop_written();
                self.bump(|s| {
                    s.chunk_writes += 1;
                    s.bytes_written += written;
                });
            }
            // Everything sealed for this phase written: what the seal returned. Chunks left
            // for the next phase: the whole records the written ones hold.
            target = match (left, window.last()) {
                (0, _) | (_, None) => sealed_end,
                (_, Some(last)) => last.records_end,
            };
            self.room.wake_all();
        }
        if left > 0 {
            self.bump(|s| s.sync_group_splits += 1);
        }
        if phase_bytes > 0 {
            self.write_phase_latency
                .borrow_mut()
                .record(started, Instant::now());
        }
        debug_assert!(target <= sealed_end);
        Ok(Some(target))
    }

    /// The segments written since the last call, unmarked: what a sync started now for
    /// `target` must cover. Call it right after [`CommitLog::write_phase`] returned `target`
    /// (all its writes complete) and before anything can issue another write: a segment with a
    /// write still in flight must stay marked for the sync after. `None` when `target` is
    /// durable already and nothing was written. The durable point never moves without an
    /// fdatasync: with nothing marked and `target` not yet durable, `target`'s own segment is
    /// synced.
    pub(crate) fn take_unsynced(&self, target: u64) -> Option<Vec<u64>> {
        let segs: Vec<u64> = std::mem::take(&mut *self.unsynced.borrow_mut())
            .into_iter()
            .collect();
        if !segs.is_empty() {
            return Some(segs);
        }
        if target <= self.durable.durable() {
            return None;
        }
        let last = target - 1;
        Some(vec![last - last % self.cfg.segment_size_bytes])
    }

    /// The second half of [`CommitLog::flush_once`]: one fdatasync per segment in `segs` (from
    /// [`CommitLog::take_unsynced`]; at most the two of a roll), then the durable watermark goes to `target` (the value
    /// the [`CommitLog::write_phase`] before it returned). Writes issued after `segs` was taken
    /// mark their segment again and wait for the next sync. On failure the segments not synced
    /// are marked again, so a retry syncs them.
    pub(crate) async fn sync_phase(
        self: &Rc<Self>,
        target: u64,
        segs: Vec<u64>,
    ) -> Result<(), StoreError> {
        for (i, &base) in segs.iter().enumerate() {
            let synced = match self.segment_for_write(base).await {
                Ok(file) => {
                    let started = Instant::now();
                    let r = file.sync_data().await;
                    if r.is_ok() {
                        self.fdatasync_latency
                            .borrow_mut()
                            .record(started, Instant::now());
                    }
                    r
                }
                Err(e) => Err(e),
            };
            if let Err(e) = synced {
                self.unsynced.borrow_mut().extend(segs[i..].iter().copied());
                return Err(e);
            }
            self.bump(|s| s.fdatasync_count += 1);
        }
        self.advance_durable(target);
        self.bump(|s| s.flush_count += 1);
        self.close_finished_segments();
        self.maybe_prepare_next();
        Ok(())
    }

    /// Raises the durable watermark; after failed flushes this is where appends are accepted
    /// again, which the log says (the failures were logged at most once per 10 s) - unless a
    /// written chunk is still pending: then a sync of earlier writes ended after a later
    /// write failed (the pipelined flusher overlaps them), and the failure stands until the
    /// retry writes it. Clearing it there accepted appends on a disk that was still full and
    /// logged a recovery that had not happened (`tests/tests/full_disk.rs` failed on it in
    /// CI, session 19).
    fn advance_durable(&self, target: u64) {
        // Paired with the write phase's target: the durable point never passes the bytes
        // written (an acknowledgement of data that is not on disk would be a lost message).
        let written = self.writer.borrow().written_end();
        assert!(
            target <= written.max(self.durable.durable()),
            "durable target {target} past the written end {written}"
        );
        let was_failing = self.durable.has_failure();
        if was_failing && self.writer.borrow().next_pending().is_some() {
            self.durable.raise(target);
            return;
        }
        self.durable.advance(target);
        if was_failing {
            tracing::info!(
                durable_offset = self.durable.durable(),
                flush_failures = self.stats.get().flush_failures,
                "CommitLog flush succeeded again; appends accepted"
            );
        }
    }

    /// Records a failed flush: waiters fail, appends are refused until a flush succeeds.
    pub(crate) fn flush_failed(&self, err: &StoreError) {
        self.bump(|s| s.flush_failures += 1);
        self.durable.fail(err.is_disk_full(), err.to_string());
    }

    /// The segment file at `base`, creating it (without preparation) when the writer got there
    /// before the background preparation.
    async fn segment_for_write(self: &Rc<Self>, base: u64) -> Result<Rc<SegmentFile>, StoreError> {
        if let Some(f) = self.segments.borrow().get(&base) {
            return Ok(f.clone());
        }
        let path = self.dir.join(segment_file_name(base));
        if self.cfg.preallocate != Preallocate::None {
            // Appends outran the preparation (zero fill or fallocate of the next segment):
            // this segment's writes extend the file, which on ext4 serializes them on the
            // inode lock. Larger segments give the preparation more time.
            tracing::info!(
                segment = base,
                "CommitLog segment created on demand: its preparation had not finished"
            );
        }
        let f = SegmentFile::open(&path, base, self.cfg.io_mode).await?;
        // The directory fsync on the blocking thread, not the shard's (see `create_prepared`).
        let dir = self.dir.clone();
        io::blocking(move || crate::io::sync_dir(&dir)).await?;
        if let Some(f) = self.segments.borrow().get(&base) {
            // Registered meanwhile (a preparation published it while this one waited).
            return Ok(f.clone());
        }
        let f = Rc::new(f);
        self.segments.borrow_mut().insert(base, f.clone());
        self.known.borrow_mut().insert(base);
        self.bump(|s| s.segments_created += 1);
        Ok(f)
    }

    /// Prepares the next segment in the background as soon as the writer is in the one before
    /// it (as RocketMQ's allocation service does when a file is created), so that a roll finds
    /// it zero-filled (or fallocated) already. Starting only at half full lost the race under
    /// load: at 256 MiB segments and 2.7 M msg/s of 100 B (a segment every 0.37 s) the
    /// preparation's fdatasync, close and reopen waited 150-250 ms behind the flusher's I/O,
    /// and every segment after the 18th was created on demand by the writer, whose extending
    /// writes then slowed the flusher until appends were refused (session 19). A zero fill is
    /// paced by the append rate ([`zero_fill_pause`]), so the earlier start only spreads it.
    fn maybe_prepare_next(self: &Rc<Self>) {
        if self.cfg.preallocate == Preallocate::None || self.preparing.get().is_some() {
            return;
        }
        let seg_size = self.cfg.segment_size_bytes;
        let end = self.end_offset();
        let next = end - end % seg_size + seg_size;
        if self.known.borrow().contains(&next) {
            return;
        }
        self.preparing.set(Some(next));
        let me = Rc::downgrade(self);
        let path = self.dir.join(segment_file_name(next));
        let (prealloc, io_mode) = (self.cfg.preallocate, self.cfg.io_mode);
        let (started, end_at_start) = (Instant::now(), end);
        let rate_limit = match prealloc {
            Preallocate::Zero => self.cfg.zero_fill_max_append_rate,
            Preallocate::Fallocate | Preallocate::None => 0,
        };
        io::spawn(async move {
            let wanted = {
                let me = me.clone();
                move || {
                    me.upgrade()
                        .is_some_and(|log| !log.known.borrow().contains(&next))
                }
            };
            let pace = {
                let me = me.clone();
                move |done: u64, took: Duration| {
                    let Some(log) = me.upgrade() else {
                        return Some(Duration::ZERO);
                    };
                    let appended = log.end_offset().saturating_sub(end_at_start);
                    if appends_outrun_fill(appended, started.elapsed(), rate_limit) {
                        // The rest of the segment grows as it is written: the disk is the
                        // appends' (see `StoreConfig::zero_fill_max_append_rate`).
                        log.bump(|s| s.zero_fills_stopped += 1);
                        return None;
                    }
                    if rate_limit > 0 && started.elapsed() < crate::config::ZERO_FILL_RATE_WINDOW {
                        // While the rate is being watched the fill goes at its slowest, so
                        // that a fill about to be stopped has not taken the disk meanwhile.
                        return Some(took.mul_f64(ZERO_FILL_MAX_SLOWDOWN - 1.0));
                    }
                    Some(zero_fill_pause(PrepProgress {
                        zero_left: seg_size.saturating_sub(done),
                        last_write: took,
                        write_bytes: io::ZERO_FILL_WRITE_BYTES as u64,
                        room_left: next.saturating_sub(log.end_offset()),
                        appended,
                        elapsed: started.elapsed(),
                    }))
                }
            };
            let res = SegmentFile::create_prepared(
                &path, next, seg_size, prealloc, io_mode, &wanted, &pace,
            )
            .await;
            let Some(log) = me.upgrade() else { return };
            log.preparing.set(None);
            match res {
                Ok(f) => {
                    let inserted = match log.segments.borrow_mut().entry(next) {
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(Rc::new(f));
                            log.known.borrow_mut().insert(next);
                            true
                        }
                        std::collections::btree_map::Entry::Occupied(_) => false,
                    };
                    if inserted {
                        log.bump(|s| s.segments_created += 1);
                    }
                }
                // The writer got there first (it created the file on demand, and may not have
                // registered it yet): nothing is wrong, the preparation was only too late.
                Err(_) if log.known.borrow().contains(&next) => {}
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    tracing::warn!(segment = next, error = %e, "preparing the next CommitLog segment failed; it will be created on demand")
                }
            }
        });
    }

    /// Forgets segments below `offset` (retention deleted their files) and raises the minimum.
    pub fn forget_segments_below(&self, offset: u64) {
        let base = offset - offset % self.cfg.segment_size_bytes;
        {
            let mut segs = self.segments.borrow_mut();
            let keep = segs.split_off(&base);
            *segs = keep;
        }
        {
            let mut known = self.known.borrow_mut();
            let keep = known.split_off(&base);
            *known = keep;
            if let Some(&first) = known.first() {
                self.min_offset.set(self.min_offset.get().max(first));
            }
        }
        self.readers.borrow_mut().retain(|(b, _)| *b >= base);
        self.writer.borrow_mut().cache_mut().drop_below(offset);
    }

    /// Closes the O_DIRECT descriptors (after the final flush).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.readers.borrow_mut().clear();
        let segs = std::mem::take(&mut *self.segments.borrow_mut());
        for (_, f) in segs {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await?;
            }
        }
        Ok(())
    }
}

/// Where the zero fill of the next segment stands, for [`zero_fill_pause`].
#[derive(Debug, Clone, Copy)]
struct PrepProgress {
    /// Bytes of the next segment still to zero.
    zero_left: u64,
    /// How long the last zero write (of `write_bytes`) took.
    last_write: Duration,
    write_bytes: u64,
    /// Bytes the writer may still append before it needs the next segment.
    room_left: u64,
    /// Bytes appended since the preparation started, over `elapsed`.
    appended: u64,
    elapsed: Duration,
}

/// Most a zero fill slows itself down: it then uses about 1/16 of the disk's write time.
const ZERO_FILL_MAX_SLOWDOWN: f64 = 16.0;

/// How long the zero fill pauses after a write. Zeroing a segment writes as many bytes as the
/// records that will fill it, and at full speed it takes the disk away from `flush = sync`
/// writers: every fdatasync's device flush then also waits for the zeros written meanwhile
/// (a 1 KiB sync stream at 70k msg/s stalled ~180 ms while a 1 GiB segment was zeroed). So the
/// fill runs only as fast as the appends require: it aims to be done when half of the time the
/// writer needs to reach the next segment (at the append rate seen since the preparation
/// started) has passed, between full speed and [`ZERO_FILL_MAX_SLOWDOWN`] times slower.
/// Length of the longest run of whole entries at the start of `bytes` that stays within
/// `max` (at least the first entry if it is whole), stopping after a blank marker (whose 8
/// bytes are included). `None` when not even the first entry is whole.
fn whole_entries(bytes: &[u8], max: usize) -> Option<usize> {
    let mut at = 0usize;
    while at + BLANK_RECORD_LEN <= bytes.len() {
        if blank_len(&bytes[at..]).is_some() {
            return Some(at + BLANK_RECORD_LEN);
        }
        let size =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if size < MIN_RECORD_LEN || at + size > bytes.len() || (at > 0 && at + size > max) {
            break;
        }
        at += size;
    }
    (at > 0).then_some(at)
}

fn zero_fill_pause(p: PrepProgress) -> Duration {
    if p.zero_left == 0 || p.last_write.is_zero() || p.write_bytes == 0 {
        return Duration::ZERO;
    }
    // Full-speed time for the rest of the fill, from the last write.
    let full_speed = p.last_write.as_secs_f64() * p.zero_left as f64 / p.write_bytes as f64;
    // Time until the writer needs the next segment; unknown (idle) counts as plenty.
    let elapsed = p.elapsed.as_secs_f64().max(0.010);
    let rate = p.appended as f64 / elapsed;
    let until_needed = if rate > 0.0 {
        p.room_left as f64 / rate
    } else {
        f64::INFINITY
    };
    let slowdown = (until_needed / 2.0 / full_speed).clamp(1.0, ZERO_FILL_MAX_SLOWDOWN);
    p.last_write.mul_f64(slowdown - 1.0)
}

/// Whether a zero fill should stop short: `appended` bytes in `elapsed` since the preparation
/// started is above `limit` bytes per second (0: never), watched for at least
/// [`crate::config::ZERO_FILL_RATE_WINDOW`].
fn appends_outrun_fill(appended: u64, elapsed: Duration, limit: u64) -> bool {
    limit > 0
        && elapsed >= crate::config::ZERO_FILL_RATE_WINDOW
        && appended as f64 / elapsed.as_secs_f64() > limit as f64
}

/// Removes half-prepared segments (`*.prep`) left by a crash.
fn remove_leftovers(dir: &Path) -> Result<(), StoreError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io("reading directory", dir, e))?;
    for entry in rd.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "prep") {
            std::fs::remove_file(&p).map_err(|e| StoreError::io("removing leftover", &p, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_fill_stops_only_above_the_rate_after_the_window() {
        let w = crate::config::ZERO_FILL_RATE_WINDOW;
        // 300 MiB in 1 s: above 256 MiB/s.
        assert!(appends_outrun_fill(
            300 << 20,
            Duration::from_secs(1),
            256 << 20
        ));
        assert!(!appends_outrun_fill(
            200 << 20,
            Duration::from_secs(1),
            256 << 20
        ));
        // The same rate before the window has passed does not count (a burst).
        assert!(!appends_outrun_fill(30 << 20, w / 2, 1));
        assert!(!appends_outrun_fill(1 << 30, w, 0), "0: never");
        assert!(!appends_outrun_fill(0, w * 10, 1), "nothing appended");
        assert!(appends_outrun_fill(1, w, 1), "1 byte in 0.1 s: 10 B/s");
    }

    fn progress(room_left: u64, appended: u64, elapsed_ms: u64) -> PrepProgress {
        PrepProgress {
            zero_left: 512 << 20,
            last_write: Duration::from_micros(500),
            write_bytes: 1 << 20,
            room_left,
            appended,
            elapsed: Duration::from_millis(elapsed_ms),
        }
    }

    #[test]
    fn an_idle_writer_gets_the_slowest_zero_fill() {
        // Nothing appended: the next segment is not needed soon.
        let p = zero_fill_pause(progress(512 << 20, 0, 1_000));
        assert_eq!(
            p,
            Duration::from_micros(500).mul_f64(ZERO_FILL_MAX_SLOWDOWN - 1.0)
        );
    }

    #[test]
    fn a_writer_about_to_need_the_segment_gets_full_speed() {
        // 100 MiB appended in 100 ms (1 GiB/s), 64 MiB of room: needed in 62.5 ms, while the
        // rest of the fill takes 512 x 0.5 ms = 256 ms at full speed.
        assert_eq!(
            zero_fill_pause(progress(64 << 20, 100 << 20, 100)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_fill_aims_to_finish_at_half_the_time_left() {
        // 70 MiB/s and 512 MiB of room: needed in 7.31 s; the fill aims at 3.66 s, 14.3 times
        // its full-speed 256 ms, so each 0.5 ms write is followed by a 13.3 x 0.5 ms pause.
        let p = zero_fill_pause(progress(512 << 20, 70 << 20, 1_000));
        let want = (512.0 / 70.0) / 2.0 / 0.256 - 1.0;
        let got = p.as_secs_f64() / 0.0005;
        assert!((got - want).abs() < 1e-6, "pause {got} writes, want {want}");
        // Finished fills and unmeasured writes never pause.
        let mut done = progress(512 << 20, 0, 1_000);
        done.zero_left = 0;
        assert_eq!(zero_fill_pause(done), Duration::ZERO);
        let mut unmeasured = progress(512 << 20, 0, 1_000);
        unmeasured.last_write = Duration::ZERO;
        assert_eq!(zero_fill_pause(unmeasured), Duration::ZERO);
    }
}
