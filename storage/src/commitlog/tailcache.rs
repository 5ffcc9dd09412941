//! The tail cache: the most recent write-buffer chunks, kept so that consumers reading near the
//! tail get their bytes from memory (no read syscall; with O_DIRECT writes there is no page cache
//! for fresh data). Evicted by size, oldest first; a chunk not yet written to its file is never
//! evicted (its bytes exist nowhere else).

use std::collections::VecDeque;
use std::rc::Rc;

use crate::io::ChunkBuffer;

/// Bytes of the CommitLog held in memory: `len` bytes at `start` of a chunk. Cheap to clone;
/// dereferences to the bytes (send them with a vectored write).
#[derive(Clone)]
pub struct TailSlice {
    chunk: Rc<ChunkBuffer>,
    start: u32,
    len: u32,
}

impl TailSlice {
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `offset` within this slice (a record of a coalesced range), sharing
    /// the chunk. Panics when the range is not inside the slice.
    pub fn sub(&self, offset: usize, len: usize) -> TailSlice {
        assert!(
            offset + len <= self.len as usize,
            "sub-slice outside the slice"
        );
        TailSlice {
            chunk: self.chunk.clone(),
            start: self.start + offset as u32,
            len: len as u32,
        }
    }

    /// Grows the slice by `extra` bytes that directly follow it in the same chunk.
    pub(crate) fn extend(&mut self, extra: u32) {
        self.len += extra;
        debug_assert!(self.start as usize + self.len as usize <= self.chunk.frozen_len());
    }

    pub(crate) fn same_chunk_end(&self, chunk: &Rc<ChunkBuffer>, start: u32) -> bool {
        Rc::ptr_eq(&self.chunk, chunk) && self.start + self.len == start
    }
}

impl AsRef<[u8]> for TailSlice {
    fn as_ref(&self) -> &[u8] {
        self.chunk.bytes(self.start as usize, self.len as usize)
    }
}

impl std::ops::Deref for TailSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl std::fmt::Debug for TailSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailSlice")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

/// One chunk as the cache knows it.
#[derive(Debug, Clone)]
pub(crate) struct CachedChunk {
    pub buf: Rc<ChunkBuffer>,
    /// Global CommitLog offset of `buf[0]` (block-aligned).
    pub base: u64,
    /// Global offset of the first byte appended into this chunk; bytes before it were copied
    /// from the previous chunk (the partial block that the next write rewrites).
    pub data_start: u64,
    /// Set at seal: this chunk's write includes a partial last block that the next chunk
    /// rewrites, so the two writes must not be in flight together.
    pub overlaps_next: bool,
    /// Set at seal: the end of the last whole record that is on disk once this chunk's write
    /// (and every earlier one) completed. The whole chunk for a chunk sealed at a flush point
    /// or a segment end; the last record end at or below the partial block for a chunk sealed
    /// because the next record did not fit (that block is written by the next chunk).
    pub records_end: u64,
}

impl CachedChunk {
    /// Global offset one past the last byte written into the chunk.
    pub fn end(&self) -> u64 {
        self.base + self.buf.frozen_len() as u64
    }
}

/// Recent chunks in offset order (the newest is the writer's open chunk).
#[derive(Debug)]
pub(crate) struct TailCache {
    chunks: VecDeque<CachedChunk>,
    /// Sum of the chunks' capacities (what they really hold in memory).
    bytes: u64,
    limit_bytes: u64,
    hits: u64,
    misses: u64,
}

impl TailCache {
    pub fn new(limit_bytes: u64) -> TailCache {
        TailCache {
            chunks: VecDeque::new(),
            bytes: 0,
            limit_bytes,
            hits: 0,
            misses: 0,
        }
    }

    pub fn push(&mut self, chunk: CachedChunk) {
        debug_assert!(self
            .chunks
            .back()
            .is_none_or(|c| c.data_start <= chunk.data_start));
        self.bytes += chunk.buf.footprint() as u64;
        self.chunks.push_back(chunk);
    }

    /// Drops the oldest chunks while over the limit, keeping every chunk that ends past
    /// `written_end` (not yet in the file) and always the newest one (the open chunk).
    pub fn evict(&mut self, written_end: u64) {
        while self.bytes > self.limit_bytes && self.chunks.len() > 1 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            if front.end() > written_end {
                break;
            }
            self.bytes -= front.buf.footprint() as u64;
            self.chunks.pop_front();
        }
    }

    /// Replaces the cached copy of `chunk` (just written to its file) by a right-sized copy when
    /// it fills less than half of its capacity, so that small flushes (`flush = sync` at low
    /// load) do not fill the cache with mostly empty buffers. One copy of at most half a chunk,
    /// once per written chunk.
    pub fn compact(&mut self, chunk: &Rc<ChunkBuffer>) {
        let used = chunk.frozen_len();
        let align = crate::config::IO_ALIGNMENT as usize;
        let compact_cap = used.div_ceil(align).max(1) * align;
        if compact_cap * 2 > chunk.capacity() {
            return;
        }
        let Some(slot) = self
            .chunks
            .iter_mut()
            .rev()
            .find(|c| Rc::ptr_eq(&c.buf, chunk))
        else {
            return;
        };
        let copy = Rc::new(ChunkBuffer::copy_of(chunk.bytes(0, used)));
        copy.seal(true);
        self.bytes -= (chunk.footprint() - copy.footprint()) as u64;
        slot.buf = copy;
    }

    /// Removes the newest chunk if it is `chunk`.
    pub fn remove_newest(&mut self, chunk: &Rc<ChunkBuffer>) {
        if self
            .chunks
            .back()
            .is_some_and(|c| Rc::ptr_eq(&c.buf, chunk))
        {
            self.bytes -= chunk.footprint() as u64;
            self.chunks.pop_back();
        }
    }

    /// Drops every chunk below `offset` (segments deleted by retention).
    pub fn drop_below(&mut self, offset: u64) {
        while self.chunks.len() > 1 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            if front.end() > offset {
                break;
            }
            self.bytes -= front.buf.footprint() as u64;
            self.chunks.pop_front();
        }
    }

    /// Lowest offset readable from memory.
    pub fn min_offset(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.data_start)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// The chunk holding the record that starts at `offset`, if cached.
    fn find(&self, offset: u64) -> Option<&CachedChunk> {
        // Chunks are ordered by data_start; the record lives in the last chunk whose appended
        // data starts at or before it.
        let idx = self.chunks.partition_point(|c| c.data_start <= offset);
        if idx == 0 {
            return None;
        }
        let c = &self.chunks[idx - 1];
        (offset < c.end()).then_some(c)
    }

    /// `len` bytes at `offset` from memory (a record never spans chunks), counting a hit or a
    /// miss.
    pub fn get(&mut self, offset: u64, len: u32) -> Option<TailSlice> {
        let found = self.find(offset).and_then(|c| {
            let start = offset - c.base;
            (offset + len as u64 <= c.end()).then(|| TailSlice {
                chunk: c.buf.clone(),
                start: start as u32,
                len,
            })
        });
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// The cached bytes from `offset` to the end of the chunk that holds it (whole records:
    /// a chunk ends at a record end), without counting a hit or a miss. For replication,
    /// which streams ranges rather than records.
    pub fn contiguous(&self, offset: u64) -> Option<TailSlice> {
        let c = self.find(offset)?;
        Some(TailSlice {
            chunk: c.buf.clone(),
            start: (offset - c.base) as u32,
            len: (c.end() - offset) as u32,
        })
    }

    /// Like [`TailCache::get`], but extends `prev` in place (returning `None`) when the bytes
    /// directly follow it in the same chunk.
    pub fn get_or_extend(
        &mut self,
        offset: u64,
        len: u32,
        prev: Option<&mut TailSlice>,
    ) -> Result<Option<TailSlice>, ()> {
        let Some(c) = self.find(offset) else {
            self.misses += 1;
            return Err(());
        };
        if offset + len as u64 > c.end() {
            self.misses += 1;
            return Err(());
        }
        let start = (offset - c.base) as u32;
        let buf = c.buf.clone();
        self.hits += 1;
        if let Some(p) = prev {
            if p.same_chunk_end(&buf, start) {
                p.extend(len);
                return Ok(None);
            }
        }
        Ok(Some(TailSlice {
            chunk: buf,
            start,
            len,
        }))
    }
}
