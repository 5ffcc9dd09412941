//! The CommitLog writer: assigns physical offsets and places encoded records in write-buffer
//! chunks, rolls segments with a blank end-of-file record, and hands sealed chunks to the
//! flusher. Synchronous and in memory only: no syscall, no allocation per message (a chunk is
//! allocated per flush or when one fills up).
//!
//! Layout of the chunks over the file: a chunk starts at a block-aligned file position. When a
//! chunk is sealed (at a flush, or when the next record does not fit), the next chunk starts at
//! the block holding the current end and begins with a copy of that partial block, so that its
//! write rewrites the block whole (O_DIRECT writes whole blocks). Writes are issued in chunk
//! order, so the newer copy of a block always lands last.
//!
//! Back-of-the-envelope: a 1 KiB message costs one encode (memcpy of the body, CRC32 at memory
//! speed) into the chunk; a flush costs one O_DIRECT write per chunk (<= `write_chunk_bytes`) and
//! one fdatasync per flush; a sealed chunk costs one buffer from the writer's [`BufferPool`]
//! (recycled once the tail cache lets go of older chunks; a fresh allocation only while the
//! pool has nothing that fits).

use std::collections::VecDeque;
use std::rc::Rc;

use ramjet_core::record::{write_blank, BLANK_RECORD_LEN};

use super::tailcache::{CachedChunk, TailCache};
use crate::config::IO_ALIGNMENT;
use crate::error::StoreError;
use crate::io::{BufferPool, ChunkBuffer, PoolStats, WARM_SPARES};

/// Smallest chunk the adaptive sizing goes down to (small flushes under `flush = sync`).
pub const MIN_CHUNK_BYTES: usize = 16 * 1024;

/// Most write buffers the writer's pool keeps, whatever their size (bounds the best-fit scan,
/// which runs once per chunk, never per message).
pub const WRITE_POOL_MAX_BUFFERS: usize = 128;

/// How a chunk is sealed, which decides how much of it its write sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seal {
    /// Full: the next chunk starts with a copy of the partial last block and writes it; this
    /// write stops at the block boundary, so the two writes never overlap.
    BeforePartialBlock,
    /// At a flush: the write includes the partial last block (the flush must make it durable);
    /// the next chunk rewrites that block in a later flush.
    FlushPoint,
    /// The segment ended (blank marker written): the write includes the marker's block, the
    /// next chunk is in another file.
    SegmentEnd,
}

/// Limits of the writer, from the store config.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    pub segment_size: u64,
    pub chunk_max_bytes: usize,
    pub max_unflushed_bytes: u64,
    pub tail_cache_bytes: u64,
    /// Bytes of free write buffers kept for reuse (`StoreConfig::write_pool_bytes`).
    pub pool_bytes: u64,
    /// Bytes allocated into the pool up front (`StoreConfig::write_pool_preallocate_bytes`,
    /// at most `pool_bytes + tail_cache_bytes`).
    pub pool_preallocate_bytes: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Writer {
    limits: WriterLimits,
    /// Capacity of the next chunk: follows the bytes appended per flush cycle.
    chunk_target: usize,
    active: CachedChunk,
    /// Global offset where the next record goes.
    appended_end: u64,
    /// Data below this offset is written to the segment files (not necessarily synced).
    written_end: u64,
    /// Sealed chunks not yet written, oldest first.
    pending: VecDeque<CachedChunk>,
    cache: TailCache,
    appended_since_seal: u64,
    blank_count: u64,
    /// Recycled write buffers (see [`crate::io::BufferPool`]).
    pool: Rc<BufferPool>,
    /// End of the last record that ends at or below the block boundary under `appended_end`
    /// (kept per append: two compares, no memory).
    record_end_below_block: u64,
    /// End of what the writes of the sealed chunks cover (the end offset at open: that part
    /// is on file already).
    sealed_cover: u64,
    /// `record_end_below_block` when the active chunk opened: everything below the active
    /// chunk's base that is whole records ends here (the durable point of a flush that writes
    /// only the sealed chunks).
    record_end_at_active_base: u64,
}

/// Where an append went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Global offset of the first byte.
    pub offset: u64,
    /// Whether a segment roll (blank record) happened first.
    pub rolled: bool,
}

impl Writer {
    /// A writer that continues at `end_offset`. `tail_block` holds the bytes from the block
    /// boundary below `end_offset` up to it (read back from the file), so that the first write
    /// rewrites that block with its existing content.
    pub fn new(limits: WriterLimits, end_offset: u64, tail_block: &[u8]) -> Writer {
        let base = end_offset - end_offset % IO_ALIGNMENT;
        assert_eq!(
            tail_block.len() as u64,
            end_offset - base,
            "tail block must cover the partial block below the end offset"
        );
        let chunk_target = MIN_CHUNK_BYTES
            .min(limits.chunk_max_bytes)
            .max(IO_ALIGNMENT as usize);
        let cap = chunk_target.max(tail_block.len() + IO_ALIGNMENT as usize);
        let cap = cap.min(segment_room(&limits, base) as usize);
        let chunk_max = limits.chunk_max_bytes.max(MIN_CHUNK_BYTES);
        let pool = BufferPool::new(
            WRITE_POOL_MAX_BUFFERS,
            usize::try_from(limits.pool_bytes).unwrap_or(usize::MAX),
            WARM_SPARES,
        );
        let pre = limits
            .pool_preallocate_bytes
            .min(limits.pool_bytes.saturating_add(limits.tail_cache_bytes));
        let pre = usize::try_from(pre).unwrap_or(usize::MAX);
        pool.preallocate(pre / chunk_max, chunk_max, pre);
        let buf = Rc::new(ChunkBuffer::from_pool(&pool, cap, cap, cap));
        buf.write_with(0, tail_block.len(), |w| w.copy_from_slice(tail_block));
        buf.freeze(tail_block.len());
        let active = CachedChunk {
            buf,
            base,
            data_start: end_offset,
            overlaps_next: false,
            records_end: end_offset,
        };
        let mut cache = TailCache::new(limits.tail_cache_bytes);
        cache.push(active.clone());
        Writer {
            limits,
            chunk_target,
            active,
            appended_end: end_offset,
            written_end: end_offset,
            pending: VecDeque::new(),
            cache,
            appended_since_seal: 0,
            blank_count: 0,
            record_end_below_block: base,
            record_end_at_active_base: base,
            sealed_cover: end_offset,
            pool,
        }
    }

    /// Global offset where the next record goes.
    pub fn appended_end(&self) -> u64 {
        self.appended_end
    }

    /// Data below this offset has been written to the files.
    pub fn written_end(&self) -> u64 {
        self.written_end
    }

    /// Bytes appended but not yet written.
    pub fn unflushed_bytes(&self) -> u64 {
        self.appended_end - self.written_end
    }

    /// Segment rolls done by this writer (blank records written).
    pub fn blank_count(&self) -> u64 {
        self.blank_count
    }

    /// Counters of the write-buffer pool.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    pub fn limits(&self) -> &WriterLimits {
        &self.limits
    }

    pub(crate) fn cache(&self) -> &TailCache {
        &self.cache
    }

    pub(crate) fn cache_mut(&mut self) -> &mut TailCache {
        &mut self.cache
    }

    /// Bytes of records one append may add now without sealing the active chunk or rolling
    /// the segment (the end-of-segment marker's room kept).
    pub fn room_in_chunk(&self) -> usize {
        let seg = self.limits.segment_size;
        let seg_left = seg - self.appended_end % seg;
        (seg_left.min(self.chunk_left() as u64) as usize).saturating_sub(BLANK_RECORD_LEN)
    }

    /// Whether an append of `len` bytes now stays in the current segment (no roll). The same
    /// rule [`Writer::append`] rolls by.
    pub fn fits_in_segment(&self, len: usize) -> bool {
        let seg = self.limits.segment_size;
        self.appended_end % seg + (len + BLANK_RECORD_LEN) as u64 <= seg
    }

    /// Bytes left in the active chunk's buffer after the appended data.
    fn chunk_left(&self) -> usize {
        self.active
            .buf
            .capacity()
            .saturating_sub(self.chunk_pos(self.appended_end))
    }

    /// Whether `len` more bytes may be appended now (back-pressure).
    pub fn has_room(&self, len: usize) -> bool {
        self.unflushed_bytes() + len as u64 <= self.limits.max_unflushed_bytes
    }

    /// Appends `len` bytes of records: finds room (rolling the segment with a blank record when
    /// the records plus a blank marker do not fit, sealing the chunk when they do not fit in
    /// it), then lets `encode(physical_offset, window)` fill exactly `window`. If `encode` fails
    /// the window is cleared and nothing is appended (a roll that happened stays: the blank
    /// record is valid on its own).
    pub fn append<E>(
        &mut self,
        len: usize,
        encode: impl FnOnce(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Result<Placement, E>, StoreError> {
        let need = len + BLANK_RECORD_LEN;
        if need as u64 > self.limits.segment_size {
            return Err(StoreError::MessageTooLarge {
                what: "record (or batch) plus end-of-file marker",
                size: need,
                max: self.limits.segment_size as usize,
            });
        }
        if !self.has_room(len) {
            return Err(StoreError::Busy {
                unflushed_bytes: self.unflushed_bytes(),
                limit_bytes: self.limits.max_unflushed_bytes,
            });
        }
        let seg = self.limits.segment_size;
        let pos_in_seg = self.appended_end % seg;
        let mut rolled = false;
        if !self.fits_in_segment(len) {
            self.roll_segment(seg - pos_in_seg, need);
            rolled = true;
        } else if need > self.chunk_left() {
            // The next chunk rewrites the partial block, so this one stops before it; and the
            // chunk filled up between flushes, so the next ones are made bigger.
            self.seal_active(Seal::BeforePartialBlock);
            self.chunk_target = (self.chunk_target.saturating_mul(2))
                .min(self.limits.chunk_max_bytes.max(MIN_CHUNK_BYTES));
            self.open_chunk(need);
        }
        let offset = self.appended_end;
        let at = self.chunk_pos(offset);
        let buf = &self.active.buf;
        let res = buf.write_with(at, len, |w| {
            let r = encode(offset, w);
            if r.is_err() {
                w.fill(0);
            }
            r
        });
        if let Err(e) = res {
            return Ok(Err(e));
        }
        buf.freeze(at + len);
        self.appended_end += len as u64;
        self.appended_since_seal += len as u64;
        let end = self.appended_end;
        if end.is_multiple_of(IO_ALIGNMENT) {
            self.record_end_below_block = end;
        } else if end - end % IO_ALIGNMENT > offset {
            // This record crosses a block boundary: the one before it ended below it.
            self.record_end_below_block = offset;
        }
        Ok(Ok(Placement { offset, rolled }))
    }

    /// Ends the current segment with a blank record of `left` bytes where a replicated
    /// stream has one (the master rolled here). Refuses when `left` does not reach this
    /// store's segment end exactly (the master's segment size differs).
    pub fn roll_at_blank(&mut self, left: u64) -> Result<(), StoreError> {
        let seg = self.limits.segment_size;
        let room = seg - self.appended_end % seg;
        if left != room || left < BLANK_RECORD_LEN as u64 {
            return Err(StoreError::ReplicaDiverged {
                offset: self.appended_end,
                reason: format!(
                    "the master ends its segment with a {left}-byte blank here, this store has {room} bytes left in the segment (store.segment_size_bytes must be the same on master and slave)"
                ),
            });
        }
        self.roll_segment(left, BLANK_RECORD_LEN);
        Ok(())
    }

    /// Position of global `offset` inside the active chunk.
    fn chunk_pos(&self, offset: u64) -> usize {
        (offset - self.active.base) as usize
    }

    /// Ends the current segment with a blank record of `left` bytes (>= 8 by the invariant that
    /// every append leaves room for the marker) and opens a chunk at the next segment with room
    /// for `need` bytes.
    fn roll_segment(&mut self, left: u64, need: usize) {
        let at = self.chunk_pos(self.appended_end);
        let buf = &self.active.buf;
        buf.write_with(at, BLANK_RECORD_LEN, |w| {
            // The window is exactly BLANK_RECORD_LEN bytes, so this cannot fail.
            let _ = write_blank(left as u32, w);
        });
        buf.freeze(at + BLANK_RECORD_LEN);
        self.appended_end += left;
        self.blank_count += 1;
        self.seal_active(Seal::SegmentEnd);
        self.open_chunk(need);
    }

    /// Moves the active chunk to the pending queue if it holds appended data.
    /// At a flush point also a chunk that holds only the copy of a partial block that no
    /// sealed write covers (its predecessor was sealed before that block): the records ending
    /// in it must reach the file.
    fn seal_active(&mut self, how: Seal) -> bool {
        let no_data = self.active.end() <= self.active.data_start;
        if no_data && (how == Seal::BeforePartialBlock || self.sealed_cover >= self.active.end()) {
            return false;
        }
        let partial = !self.active.end().is_multiple_of(IO_ALIGNMENT);
        let write_len = self.active.buf.seal(how != Seal::BeforePartialBlock);
        self.sealed_cover = self.sealed_cover.max(self.active.base + write_len as u64);
        self.active.overlaps_next = how == Seal::FlushPoint && partial;
        self.active.records_end = if how == Seal::BeforePartialBlock {
            self.record_end_below_block
        } else {
            self.appended_end
        };
        debug_assert!(self.active.records_end <= self.appended_end);
        self.pending.push_back(self.active.clone());
        true
    }

    /// Opens a new active chunk at the block holding `appended_end`, with room for at least
    /// `need` bytes after the copied partial block.
    fn open_chunk(&mut self, need: usize) {
        if self.active.end() <= self.active.data_start && !self.active.buf.is_sealed() {
            // The active chunk holds no appended data (nothing to write): drop it from the cache.
            self.cache.remove_newest(&self.active.buf);
        }
        let end = self.appended_end;
        let base = end - end % IO_ALIGNMENT;
        if end == base {
            // Block aligned (a segment roll, or records that happened to end there).
            self.record_end_below_block = end;
        }
        self.record_end_at_active_base = self.record_end_below_block;
        let prefix = (end - base) as usize;
        let room = segment_room(&self.limits, base) as usize;
        let min = (prefix + need).min(room);
        let cap = self.chunk_target.max(prefix + need).min(room);
        // A bigger recycled buffer is used whole, within the segment.
        let buf = Rc::new(ChunkBuffer::from_pool(&self.pool, min, cap, room));
        if prefix > 0 && base >= self.active.base {
            let from = (base - self.active.base) as usize;
            let old = self.active.buf.clone();
            buf.write_with(0, prefix, |w| w.copy_from_slice(old.bytes(from, prefix)));
        }
        buf.freeze(prefix);
        self.active = CachedChunk {
            buf,
            base,
            data_start: end,
            overlaps_next: false,
            records_end: end,
        };
        self.cache.push(self.active.clone());
    }

    /// Prepares a flush: seals the active chunk if it holds appended data (opening the next
    /// one) and sizes future chunks after this cycle's volume. Returns the offset the flush
    /// will make durable. With `whole == false` the active chunk stays open while it is under
    /// half full, whether or not sealed chunks wait to be written; then only those are
    /// written (if any), and the flush makes durable the whole records below the active
    /// chunk's base.
    pub fn seal_for_flush(&mut self, whole: bool) -> u64 {
        let fill = self.active.end() - self.active.base;
        if !whole && fill < (self.active.buf.capacity() / 2) as u64 {
            debug_assert!(self.record_end_at_active_base <= self.active.base);
            return self.record_end_at_active_base;
        }
        if self.seal_active(Seal::FlushPoint) {
            let cycle = self.appended_since_seal.min(usize::MAX as u64 / 4) as usize;
            self.chunk_target = (cycle * 2).next_power_of_two().clamp(
                MIN_CHUNK_BYTES,
                self.limits.chunk_max_bytes.max(MIN_CHUNK_BYTES),
            );
            self.appended_since_seal = 0;
            self.open_chunk(0);
        }
        self.appended_end
    }

    /// Sealed chunks not yet written.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The oldest sealed chunk not yet written.
    pub(crate) fn next_pending(&self) -> Option<CachedChunk> {
        self.pending.front().cloned()
    }

    /// The oldest sealed chunks whose writes may be in flight together (up to `max`): a run
    /// that ends at the first chunk whose partial last block the next chunk rewrites.
    pub(crate) fn pending_window(&self, max: usize, out: &mut Vec<CachedChunk>) {
        out.clear();
        for c in self.pending.iter().take(max) {
            out.push(c.clone());
            if c.overlaps_next {
                break;
            }
        }
    }

    /// Records that the oldest pending chunk is written.
    pub(crate) fn pop_written(&mut self) {
        if let Some(done) = self.pending.pop_front() {
            self.cache.compact(&done.buf);
            let covered = done.base + done.buf.write_len() as u64;
            self.written_end = if covered >= done.end() {
                // Everything before the next chunk's appended data is written: the popped
                // chunk's records, and after a roll the blank-marked rest of the old segment.
                self.pending
                    .front()
                    .map_or(self.active.data_start, |c| c.data_start)
            } else {
                // The partial last block is written by the next chunk.
                covered.max(self.written_end)
            };
            self.cache.evict(self.written_end);
        }
    }

    /// Segment base of global `offset`.
    pub fn segment_base(&self, offset: u64) -> u64 {
        offset - offset % self.limits.segment_size
    }
}

/// Bytes from `base` to the end of its segment.
fn segment_room(limits: &WriterLimits, base: u64) -> u64 {
    limits.segment_size - base % limits.segment_size
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer at offset 0 with `segment_size` segments and chunks of up to `chunk_max_bytes`.
    fn test_writer(segment_size: u64, chunk_max_bytes: usize) -> Writer {
        let limits = WriterLimits {
            segment_size,
            chunk_max_bytes,
            max_unflushed_bytes: 64 << 20,
            tail_cache_bytes: 1 << 20,
            pool_bytes: 0,
            pool_preallocate_bytes: 0,
        };
        Writer::new(limits, 0, &[])
    }

    /// Runs `f` with a writer from [`test_writer`] and the record-end list that
    /// [`append_record`] fills (starting at 0), on an executor: write buffers need one.
    fn with_writer(
        segment_size: u64,
        chunk_max_bytes: usize,
        f: impl FnOnce(&mut Writer, &mut Vec<u64>),
    ) {
        crate::io::block_on(async move {
            let mut w = test_writer(segment_size, chunk_max_bytes);
            let mut ends = vec![0u64];
            f(&mut w, &mut ends);
        })
        .unwrap_or_else(|e| panic!("executor: {e}"));
    }

    /// The next value of a small linear congruential generator (test input, not randomness).
    fn next_seed(seed: u64) -> u64 {
        seed.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    }

    /// Appends one record of `len` bytes and records in `ends` where it ends (and, after a
    /// roll, where the blank record ended the old segment).
    fn append_record(w: &mut Writer, len: usize, fill: u8, ends: &mut Vec<u64>) -> Placement {
        let placed = w
            .append(len, |_, buf| {
                buf.fill(fill);
                Ok::<(), ()>(())
            })
            .unwrap_or_else(|e| panic!("append: {e}"))
            .unwrap_or_else(|()| panic!("encode"));
        if placed.rolled {
            ends.push(placed.offset);
        }
        ends.push(placed.offset + len as u64);
        placed
    }

    /// `chunk_max_bytes` bounds every chunk, whatever the largest record could be; a record
    /// bigger than the limit gets a chunk of its own size, and chunks after it are back within
    /// the limit. (The limit used to be raised to the largest record the config allowed, so
    /// with 4 MiB messages no chunk below ~4 MiB could be configured.)
    #[test]
    fn chunks_stay_within_the_limit_and_a_bigger_record_gets_its_own() {
        let limit = 64 * 1024;
        with_writer(1 << 20, limit, |w, ends| {
            let mut big = 0;
            for i in 0..600u64 {
                let len = if i % 150 == 75 { 100 * 1024 } else { 900 };
                append_record(w, len, 9, ends);
                if i % 40 == 39 {
                    w.seal_for_flush(true);
                }
                while let Some(c) = w.next_pending() {
                    let data = (c.end() - c.data_start) as usize;
                    if data >= 100 * 1024 {
                        big += 1;
                        assert!(c.buf.capacity() <= 100 * 1024 + 2 * IO_ALIGNMENT as usize);
                    } else {
                        assert!(
                            c.buf.capacity() <= limit,
                            "chunk at {} holds {data} B in {} B",
                            c.base,
                            c.buf.capacity()
                        );
                    }
                    w.pop_written();
                }
            }
            assert_eq!(big, 4, "each 100 KiB record in a chunk of its own");
        });
    }

    /// An append that seals the full chunk and then fails to encode leaves an open chunk that
    /// holds only the copy of the partial block the sealed chunk stops before. The next whole
    /// flush must still write that block: before the fix it sealed nothing there, its target
    /// (the appended end) passed the written end, and the flusher's "durable target past the
    /// written end" assertion fired.
    #[test]
    fn a_failed_append_after_a_full_chunk_leaves_nothing_unwritten_at_the_next_flush() {
        with_writer(1 << 20, 16 * 1024, |w, ends| {
            // 16 KiB chunks: 100 B records fill one with a record ending mid-block.
            while w.room_in_chunk() >= 100 {
                append_record(w, 100, 5, ends);
            }
            let end = w.appended_end();
            assert!(
                !end.is_multiple_of(IO_ALIGNMENT),
                "end {end} on a block edge"
            );
            let failed = w
                .append(100, |_, _| Err::<(), &str>("encode failed"))
                .unwrap_or_else(|e| panic!("append: {e}"));
            assert_eq!(failed, Err("encode failed"));
            assert_eq!(w.appended_end(), end);
            assert_eq!(w.pending_len(), 1, "the full chunk was sealed");
            assert_eq!(w.seal_for_flush(true), end);
            let mut written_to = 0;
            while let Some(c) = w.next_pending() {
                written_to = c.base + c.buf.write_len() as u64;
                w.pop_written();
            }
            assert!(
                written_to >= end,
                "writes end at {written_to}, records at {end}"
            );
            assert_eq!(w.written_end(), end);
            // Nothing is written twice at the next flush.
            assert_eq!(w.seal_for_flush(true), end);
            assert_eq!(w.pending_len(), 0);
        });
    }

    /// A byte-threshold flush (`whole == false`) leaves an active chunk under half full open
    /// also when nothing sealed waits, so its buffer is not trimmed (a buffer trimmed below
    /// half is freed, and the pool restocks fresh memory); a whole flush seals it.
    #[test]
    fn a_partial_flush_keeps_an_under_half_chunk_open_with_nothing_sealed() {
        with_writer(1 << 20, 64 * 1024, |w, ends| {
            for _ in 0..3 {
                append_record(w, 1000, 1, ends);
            }
            assert_eq!(w.pending_len(), 0);
            assert!(
                w.active.buf.capacity() >= 6000,
                "{}",
                w.active.buf.capacity()
            );
            let target = w.seal_for_flush(false);
            assert_eq!(w.pending_len(), 0, "an under-half chunk was sealed");
            assert_eq!(target, 0, "nothing below the open chunk's base");
            assert_eq!(w.seal_for_flush(true), 3000);
            assert_eq!(w.pending_len(), 1);
        });
    }

    /// A flush that leaves the open chunk alone makes durable exactly the records that end at
    /// or below that chunk's base: never a point inside a record, never past the base.
    #[test]
    fn partial_flush_target_is_the_last_record_end_below_the_open_chunk() {
        with_writer(1 << 20, 64 * 1024, |w, ends| {
            let mut seed = 12345u64;
            let mut targets = 0;
            for i in 0..20_000u64 {
                seed = next_seed(seed);
                // Mostly small records, now and then one over a block (a batch's size).
                let len = if i % 97 == 0 {
                    5000
                } else {
                    40 + (seed >> 33) as usize % 400
                };
                append_record(w, len, 7, ends);
                if (seed >> 20).is_multiple_of(61) {
                    let t = w.seal_for_flush(false);
                    assert!(
                        ends.binary_search(&t).is_ok(),
                        "target {t} is not a record end"
                    );
                    assert!(t <= w.appended_end());
                    if t < w.appended_end() {
                        // Each append here is one record: the target is the last end below
                        // the open chunk's base, not just some record end.
                        let base = w.active.base;
                        let last = ends.iter().copied().filter(|e| *e <= base).max();
                        assert_eq!(Some(t), last, "open chunk at {base}");
                        targets += 1;
                    }
                    while w.next_pending().is_some() {
                        w.pop_written();
                    }
                }
            }
            eprintln!("partial flushes: {targets}");
            assert!(targets >= 3, "only {targets} partial flushes");
        });
    }

    /// Every sealed chunk knows how far its write makes whole records durable (what a write
    /// phase cut at `sync_group_max_bytes` hands its sync): a record end whose bytes the chunk
    /// and the ones before it write, never decreasing from chunk to chunk, and the
    /// whole chunk for one sealed at a flush point. Chunks sealed because the next record did
    /// not fit, at segment ends and at flush points all occur.
    #[test]
    fn each_sealed_chunk_makes_a_record_end_durable() {
        with_writer(256 * 1024, 16 * 1024, |w, ends| {
            let mut seed = 99u64;
            let (mut partial, mut rolls, mut flush_points) = (0, 0, 0);
            let mut last_durable = 0u64;
            for i in 0..30_000u64 {
                seed = next_seed(seed);
                let len = if i % 89 == 0 {
                    6000
                } else {
                    30 + (seed >> 33) as usize % 700
                };
                if append_record(w, len, 3, ends).rolled {
                    rolls += 1;
                }
                if !(seed >> 24).is_multiple_of(97) {
                    continue;
                }
                let target = w.seal_for_flush(true);
                while let Some(c) = w.next_pending() {
                    assert!(
                        ends.binary_search(&c.records_end).is_ok(),
                        "records_end {} of the chunk at {} is not a record end",
                        c.records_end,
                        c.base
                    );
                    // The written bytes reach it (past the chunk's own bytes only a blank
                    // record's skipped rest of the segment, which is never written).
                    let covered = c.base + c.buf.write_len() as u64;
                    let data_end = c.records_end.min(c.end());
                    assert!(data_end <= covered, "{data_end} > {covered}");
                    assert!(c.records_end >= last_durable);
                    if c.buf.write_len() as u64 >= c.end() - c.base {
                        // The whole chunk is written (a flush point, or a segment end whose
                        // blank record reaches past the bytes the chunk holds).
                        assert!(c.records_end >= c.end(), "chunk at {}", c.base);
                        flush_points += 1;
                    } else {
                        partial += 1;
                    }
                    last_durable = c.records_end;
                    w.pop_written();
                }
                assert_eq!(
                    last_durable, target,
                    "the last chunk reaches the flush target"
                );
            }
            eprintln!(
                "chunks: {partial} cut before a partial block, {flush_points} whole; {rolls} rolls"
            );
            assert!(partial >= 3 && flush_points >= 3 && rolls >= 3);
        });
    }
}
