//! [`ChunkBuffer`]: one DMA-aligned write buffer that is, at once, the next chunk of a segment
//! (records are encoded straight into it), the source of one O_DIRECT write, and a tail-cache
//! entry that readers slice without copying.
//!
//! Life of a chunk: *open* (the writer appends at its end; bytes below [`ChunkBuffer::frozen_len`]
//! never change again and may be read), then *sealed* (no more appends; trimmed to the block-
//! aligned length that one write sends to the file). Readers hold `Rc<ChunkBuffer>` and read the
//! frozen prefix in both states. The memory never moves: glommio's `DmaBuffer` owns a heap (or
//! registered) allocation addressed by a raw pointer, so moving the `DmaBuffer` value between the
//! states leaves outstanding slices valid.
//!
//! Recycling: a chunk taken from a [`BufferPool`] goes back to it when its last reference drops
//! (after the tail cache let go of it), so a store in steady state writes into memory that is
//! already mapped instead of paying a fresh allocation, the kernel's page zeroing and a memset
//! per chunk. Recycled memory holds old bytes; nothing reads past the frozen prefix, and
//! [`ChunkBuffer::seal`] zeroes the padding a write sends after it, so the file content is the
//! same as with fresh zeroed buffers. glommio can only shorten a `DmaBuffer` (`trim_to_size`),
//! so a recycled buffer is as long as the last write it served; the pool hands out buffers by
//! best fit and drops those that became too short to be useful.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::{Rc, Weak};

use glommio::io::DmaBuffer;

use crate::config::IO_ALIGNMENT;

enum Storage {
    Open(DmaBuffer),
    Sealed(Rc<DmaBuffer>),
    /// Only inside `seal`, between taking the open buffer and storing the sealed one.
    Moving,
}

/// Buffers shorter than this are not kept by a [`BufferPool`] (they are freed instead).
pub const POOL_MIN_BUFFER_BYTES: usize = 64 * 1024;

/// Chunks below this size get no stocked spares and no off-thread page population: the
/// allocator serves them from memory it already holds, and under `flush = sync` a new small
/// chunk opens at every group commit, where a request to the prefault thread per flush (a
/// cross-thread wake-up) cost more than it saved (1 KiB sync max 115k -> 86k msg/s).
pub const STOCK_MIN_BYTES: usize = 1024 * 1024;

/// Fresh buffers a CommitLog writer's [`BufferPool`] keeps ready for its next chunks (see
/// `BufferPool::restock`): two, so that the prefault thread has one chunk's worth of appends
/// to map the next one.
pub const WARM_SPARES: usize = 2;

/// A pooled buffer serves a chunk only if it is no longer than this many times the chunk's
/// wanted capacity (a short chunk would trim a big buffer down to its own write length).
pub const POOL_MAX_OVERSIZE: usize = 4;

/// Counters of a [`BufferPool`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Chunks served from a recycled buffer.
    pub reused: u64,
    /// Chunks that needed a fresh allocation.
    pub allocated: u64,
    /// Fresh buffers put in the pool ahead of need (their pages populated off the shard
    /// thread by [`crate::prefault`]).
    pub stocked: u64,
    /// Buffers given back and kept.
    pub returned: u64,
    /// Buffers given back and freed (pool full, or too short).
    pub released: u64,
}

/// A small bounded pool of DMA write buffers owned by one store's writer (single-threaded, no
/// lock). See the module docs.
#[derive(Debug)]
pub struct BufferPool {
    /// Free buffers with the size of their allocation (at least their length: glommio trims
    /// the length of a written buffer, never the allocation).
    free: RefCell<Vec<(DmaBuffer, usize)>>,
    held_bytes: Cell<usize>,
    max_buffers: usize,
    max_bytes: usize,
    /// Fresh buffers kept ready for the next chunks (see `restock`).
    spares: usize,
    stats: Cell<PoolStats>,
}

impl BufferPool {
    /// A pool that keeps at most `max_buffers` buffers and `max_bytes` bytes, `spares` of them
    /// stocked ahead of need with fresh memory (0: only recycled buffers).
    pub fn new(max_buffers: usize, max_bytes: usize, spares: usize) -> Rc<BufferPool> {
        Rc::new(BufferPool {
            free: RefCell::new(Vec::with_capacity(max_buffers)),
            held_bytes: Cell::new(0),
            max_buffers,
            max_bytes,
            spares,
            stats: Cell::new(PoolStats::default()),
        })
    }

    /// Puts up to `count` fresh buffers of `size` bytes in the pool now, while the bytes it
    /// holds stay within `limit_bytes` (which may exceed the pool's own byte limit: the
    /// excess is the memory a busy store's tail cache takes from the pool before anything
    /// comes back, see `StoreConfig::write_pool_preallocate_bytes`). From
    /// [`STOCK_MIN_BYTES`] up, their pages are mapped by the prefault thread in the background
    /// (not zeroed here: like recycled buffers, nothing reads past a chunk's frozen prefix),
    /// so opening a store does not wait for them and the first chunks do not pay for fresh
    /// memory on the append path.
    pub fn preallocate(&self, count: usize, size: usize, limit_bytes: usize) {
        let size = align_up(size);
        for _ in 0..count {
            if self.free.borrow().len() >= self.max_buffers
                || self.held_bytes.get() + size > limit_bytes
            {
                break;
            }
            let buf = fresh_buffer(size);
            self.held_bytes.set(self.held_bytes.get() + size);
            self.free.borrow_mut().push((buf, size));
            self.bump(|s| s.stocked += 1);
        }
    }

    /// Bytes of the buffers held now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes.get()
    }

    /// Counters.
    pub fn stats(&self) -> PoolStats {
        self.stats.get()
    }

    /// Buffers held now.
    pub fn len(&self) -> usize {
        self.free.borrow().len()
    }

    /// Whether the pool holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.free.borrow().is_empty()
    }

    fn has_room_for(&self, size: usize) -> bool {
        self.free.borrow().len() < self.max_buffers
            && self.held_bytes.get() + size <= self.max_bytes
    }

    fn bump(&self, f: impl FnOnce(&mut PoolStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Keeps `spares` buffers that could serve a chunk of `want` bytes in the pool (room
    /// permitting): fresh allocations whose pages the prefault thread maps ahead of use. A
    /// store fills its tail cache with fresh memory before it recycles any, and taking that
    /// memory's first-touch faults on the shard (the kernel clears every page; on a VM the
    /// host backs it too) stalled appends for 5-10 ms per 4 MiB chunk on the 2-vCPU guest:
    /// the periodic e2e latency spikes of a freshly started broker.
    fn restock(&self, want: usize) {
        if want < STOCK_MIN_BYTES {
            return;
        }
        let fits = |len: usize| len >= want / 2 && len <= want.saturating_mul(POOL_MAX_OVERSIZE);
        let mut ready = self
            .free
            .borrow()
            .iter()
            .filter(|(b, _)| fits(b.len()))
            .count();
        while ready < self.spares && self.has_room_for(want) {
            let buf = fresh_buffer(want);
            self.held_bytes.set(self.held_bytes.get() + want);
            self.free.borrow_mut().push((buf, want));
            self.bump(|s| s.stocked += 1);
            ready += 1;
        }
    }

    /// Best fit for a chunk that must hold `min` bytes and would like `want`: the shortest
    /// buffer of at least `want`, else the longest of at least `min` (and at least half of
    /// `want`); never one more than [`POOL_MAX_OVERSIZE`] times `want`.
    fn take(&self, min: usize, want: usize) -> Option<(DmaBuffer, usize)> {
        let floor = min.max(want / 2);
        let ceiling = want.saturating_mul(POOL_MAX_OVERSIZE).max(min);
        let mut free = self.free.borrow_mut();
        let mut best: Option<(usize, usize)> = None;
        for (i, (b, _)) in free.iter().enumerate() {
            let len = b.len();
            if len < floor || len > ceiling {
                continue;
            }
            let better = match best {
                None => true,
                Some((_, cur)) if cur >= want => len >= want && len < cur,
                Some((_, cur)) => len > cur,
            };
            if better {
                best = Some((i, len));
            }
        }
        let (i, _) = best?;
        let (buf, alloc) = free.swap_remove(i);
        self.held_bytes.set(self.held_bytes.get() - alloc);
        Some((buf, alloc))
    }

    /// Takes `buf` (an allocation of `alloc` bytes) back if it is long enough and not mostly
    /// trimmed away (at least half its allocation is usable, which bounds the memory a chunk
    /// holds beyond its capacity); frees it otherwise. When the pool is full the oldest
    /// buffers make room: chunk sizes follow the load (a produce burst leaves 4 MiB buffers
    /// that a slow stream's smaller chunks cannot use), and keeping the newest keeps the pool
    /// serving what the writer asks for now.
    fn give(&self, buf: DmaBuffer, alloc: usize) {
        let len = buf.len();
        if len < POOL_MIN_BUFFER_BYTES
            || len < alloc / 2
            || !len.is_multiple_of(IO_ALIGNMENT as usize)
            || alloc > self.max_bytes
            || self.max_buffers == 0
        {
            self.bump(|s| s.released += 1);
            return;
        }
        {
            let mut free = self.free.borrow_mut();
            while !free.is_empty()
                && (free.len() >= self.max_buffers
                    || self.held_bytes.get() + alloc > self.max_bytes)
            {
                let (_, old) = free.remove(0);
                self.held_bytes.set(self.held_bytes.get() - old);
                self.bump(|s| s.released += 1);
            }
        }
        self.held_bytes.set(self.held_bytes.get() + alloc);
        self.free.borrow_mut().push((buf, alloc));
        self.bump(|s| s.returned += 1);
    }
}

/// Asks the kernel to back the whole 2 MiB pages inside a fresh write buffer with transparent
/// huge pages, before its first touch. A busy store fills its tail cache with fresh chunks
/// (256 MiB by default) before it recycles any, and with 4 KiB pages every first touch is a
/// page fault on the shard thread: under `flush = sync` with 4 KiB records the fault handling
/// of fresh chunks (`exc_page_fault`, `do_anonymous_page`, the irq-restore spin) was ~20 % of
/// the shard's samples beside the zeroing itself. With huge pages it is one fault per 2 MiB;
/// the kernel still clears every byte. Measured (session 3): cold-process 100 B async appends
/// ~+10 %, 4 KiB sync appends unchanged within noise. A no-op when THP is `never` (or the
/// range holds no whole huge page); failures only cost speed and are ignored.
fn advise_huge_pages(buf: &mut DmaBuffer) {
    crate::prefault::advise_huge_range(buf.as_mut_ptr() as usize, buf.len());
}

/// A newly allocated, unzeroed write buffer of `size` bytes; from [`STOCK_MIN_BYTES`] up its
/// pages are advised huge and handed to the prefault thread to be mapped off the shard.
fn fresh_buffer(size: usize) -> DmaBuffer {
    let mut buf = glommio::allocate_dma_buffer(size);
    if size >= STOCK_MIN_BYTES {
        advise_huge_pages(&mut buf);
        crate::prefault::populate(buf.as_mut_ptr() as usize, buf.len());
    }
    buf
}

fn align_up(n: usize) -> usize {
    let align = IO_ALIGNMENT as usize;
    n.max(align).div_ceil(align) * align
}

/// A DMA-aligned, append-only buffer shared between the writer, the flusher and readers.
pub struct ChunkBuffer {
    ptr: NonNull<u8>,
    capacity: usize,
    /// Bytes `[0, frozen)` are written and immutable.
    frozen: Cell<usize>,
    storage: RefCell<Storage>,
    /// Bytes of the allocation behind the buffer (>= capacity; a recycled buffer may be longer
    /// than the chunk uses, or hold a trimmed-off tail).
    footprint: usize,
    /// Where the memory goes when the chunk drops (none: freed).
    pool: Option<Weak<BufferPool>>,
}

impl ChunkBuffer {
    /// Allocates a zero-filled buffer of `capacity` rounded up to the I/O alignment. Zero-filled
    /// so that no uninitialised byte is ever exposed (the padding a write sends past the last
    /// record is zeroed again by [`ChunkBuffer::seal`]).
    pub fn new(capacity: usize) -> ChunkBuffer {
        let capacity = align_up(capacity);
        let mut buf = glommio::allocate_dma_buffer(capacity);
        let ptr = buf.as_mut_ptr();
        // SAFETY: `ptr` addresses `capacity` writable bytes owned by `buf`; no reference to them
        // exists yet.
        unsafe { std::ptr::write_bytes(ptr, 0, capacity) };
        ChunkBuffer::from_dma(buf, capacity, capacity, None)
    }

    /// A buffer holding exactly `bytes` (frozen) and zeros up to the next block boundary: one
    /// allocation, each byte written once.
    pub fn copy_of(bytes: &[u8]) -> ChunkBuffer {
        let capacity = align_up(bytes.len());
        let mut buf = glommio::allocate_dma_buffer(capacity);
        let (data, pad) = buf.as_bytes_mut().split_at_mut(bytes.len());
        data.copy_from_slice(bytes);
        pad.fill(0);
        let c = ChunkBuffer::from_dma(buf, capacity, capacity, None);
        c.freeze(bytes.len());
        c
    }

    /// A buffer from `pool` (recycled or stocked when one fits, else freshly allocated) that
    /// holds at least `min` bytes and about `want` (both rounded up to the I/O alignment); it
    /// goes back to the pool when dropped. Its capacity may be below `want`, never below `min`.
    ///
    /// A recycled buffer longer than `want` gives the chunk up to `max` bytes of it (rounded
    /// down to the I/O alignment; `max <= want` keeps the chunk at `want`): a chunk that uses
    /// only part of a buffer is trimmed to that part when sealed, and a buffer trimmed below
    /// half its allocation is freed instead of recycled.
    pub fn from_pool(pool: &Rc<BufferPool>, min: usize, want: usize, max: usize) -> ChunkBuffer {
        let min = align_up(min);
        let want = align_up(want).max(min);
        let max = (max / IO_ALIGNMENT as usize * IO_ALIGNMENT as usize).max(want);
        let (buf, capacity, footprint) = match pool.take(min, want) {
            Some((buf, alloc)) => {
                pool.bump(|s| s.reused += 1);
                let cap = buf.len().min(max);
                (buf, cap, alloc)
            }
            None => {
                // Not zeroed, like a recycled buffer: nothing reads past the frozen prefix and
                // `seal` zeroes the padding a write sends. A memset here would take every
                // first-touch fault of the chunk at once, on the shard thread.
                pool.bump(|s| s.allocated += 1);
                (fresh_buffer(want), want, want)
            }
        };
        pool.restock(want);
        ChunkBuffer::from_dma(buf, capacity, footprint, Some(Rc::downgrade(pool)))
    }

    fn from_dma(
        mut buf: DmaBuffer,
        capacity: usize,
        footprint: usize,
        pool: Option<Weak<BufferPool>>,
    ) -> ChunkBuffer {
        debug_assert!(capacity <= buf.len() && buf.len() <= footprint);
        let ptr = buf.as_mut_ptr();
        ChunkBuffer {
            // glommio never hands out a null buffer pointer (allocation failure aborts).
            ptr: NonNull::new(ptr).unwrap_or_else(|| std::process::abort()),
            capacity,
            frozen: Cell::new(0),
            storage: RefCell::new(Storage::Open(buf)),
            footprint,
            pool,
        }
    }

    /// Total bytes the buffer can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of memory the buffer holds (its allocation), what memory limits count.
    #[inline]
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    /// Bytes written and readable.
    #[inline]
    pub fn frozen_len(&self) -> usize {
        self.frozen.get()
    }

    /// Whether the buffer is sealed (no more appends).
    pub fn is_sealed(&self) -> bool {
        matches!(*self.storage.borrow(), Storage::Sealed(_))
    }

    /// Gives `f` the writable window `[from, from + len)` and returns its result. The window
    /// must lie at or past the frozen prefix and inside the capacity, and the buffer must be
    /// open; violating that is a writer bug that would corrupt readers' data, so it panics.
    #[inline]
    pub fn write_with<R>(&self, from: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        assert!(
            from >= self.frozen.get() && from + len <= self.capacity,
            "chunk write [{from}, {}) outside the writable window [{}, {})",
            from + len,
            self.frozen.get(),
            self.capacity
        );
        debug_assert!(!self.is_sealed(), "write into a sealed chunk");
        // SAFETY: the window is inside the allocation (checked above) and at or past the frozen
        // prefix, which is the only part readers ever get slices of; the writer is the only
        // code that calls this and it is single-threaded, so no other reference to these bytes
        // exists while `f` runs.
        let window = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(from), len) };
        f(window)
    }

    /// Marks `[0, len)` as written; `len` never goes backwards.
    #[inline]
    pub fn freeze(&self, len: usize) {
        assert!(len >= self.frozen.get() && len <= self.capacity);
        self.frozen.set(len);
    }

    /// The frozen bytes `[start, start + len)`.
    #[inline]
    pub fn bytes(&self, start: usize, len: usize) -> &[u8] {
        assert!(
            start + len <= self.frozen.get(),
            "chunk read [{start}, {}) beyond the frozen prefix {}",
            start + len,
            self.frozen.get()
        );
        // SAFETY: the range is inside the frozen prefix, which is initialised (zero-filled at
        // allocation, then written) and never written again; the memory lives as long as
        // `self` (the DmaBuffer is kept in `storage` until drop).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len) }
    }

    /// Seals the buffer (no more appends) and fixes what its write sends to the file: the
    /// frozen prefix rounded up to the I/O alignment, or, with `include_partial_tail` false,
    /// rounded down (the next chunk starts with a copy of that partial block and writes it).
    /// Returns the write length. Sealing again keeps the first length.
    pub fn seal(&self, include_partial_tail: bool) -> usize {
        let align = IO_ALIGNMENT as usize;
        let frozen = self.frozen.get();
        let write_len = if include_partial_tail {
            frozen.div_ceil(align) * align
        } else {
            frozen / align * align
        };
        let mut st = self.storage.borrow_mut();
        match std::mem::replace(&mut *st, Storage::Moving) {
            Storage::Open(mut buf) => {
                if write_len > frozen {
                    // SAFETY: `[frozen, write_len)` lies inside the allocation (write_len <=
                    // capacity: `frozen` <= capacity and capacity is block-aligned) and past the
                    // frozen prefix, so no reader holds a slice of it; the buffer is still open,
                    // so only this single-threaded writer touches those bytes. Recycled memory
                    // holds old bytes there; the file must get zeros after the last record.
                    unsafe {
                        std::ptr::write_bytes(self.ptr.as_ptr().add(frozen), 0, write_len - frozen)
                    };
                }
                buf.trim_to_size(write_len);
                *st = Storage::Sealed(Rc::new(buf));
                write_len
            }
            Storage::Sealed(buf) => {
                let len = buf.len();
                *st = Storage::Sealed(buf);
                len
            }
            Storage::Moving => write_len,
        }
    }

    /// Length the write of this (sealed) buffer sends; 0 while open.
    pub fn write_len(&self) -> usize {
        match &*self.storage.borrow() {
            Storage::Sealed(b) => b.len(),
            Storage::Open(_) | Storage::Moving => 0,
        }
    }

    /// The sealed DMA buffer, for a write; `None` while open.
    pub(crate) fn sealed_dma(&self) -> Option<Rc<DmaBuffer>> {
        match &*self.storage.borrow() {
            Storage::Sealed(b) => Some(b.clone()),
            Storage::Open(_) | Storage::Moving => None,
        }
    }
}

impl Drop for ChunkBuffer {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take().and_then(|p| p.upgrade()) else {
            return;
        };
        let buf = match std::mem::replace(self.storage.get_mut(), Storage::Moving) {
            Storage::Open(buf) => Some(buf),
            // A write still holding the buffer (never the case once the flusher popped the
            // chunk) keeps it; it is freed with the last reference.
            Storage::Sealed(rc) => Rc::try_unwrap(rc).ok(),
            Storage::Moving => None,
        };
        if let Some(buf) = buf {
            pool.give(buf, self.footprint);
        }
    }
}

impl std::fmt::Debug for ChunkBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkBuffer")
            .field("capacity", &self.capacity)
            .field("frozen", &self.frozen.get())
            .field("sealed", &self.is_sealed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        crate::io::block_on(f).unwrap_or_else(|e| panic!("executor: {e}"))
    }

    #[test]
    fn recycled_buffer_is_reused_and_its_padding_zeroed() {
        run(async {
            let pool = BufferPool::new(4, 1 << 20, 0);
            let cap = 128 * 1024;
            let first = ChunkBuffer::from_pool(&pool, cap, cap, cap);
            assert_eq!(first.capacity(), cap);
            first.write_with(0, cap, |w| w.fill(0xEE));
            first.freeze(cap);
            assert_eq!(first.seal(true), cap);
            drop(first);
            assert_eq!(pool.len(), 1);

            // Reused: the old 0xEE bytes are there, but a write sends zeros after the data.
            let second = ChunkBuffer::from_pool(&pool, 64 * 1024, cap, cap);
            assert_eq!(second.capacity(), cap);
            assert!(pool.is_empty());
            second.write_with(0, 100, |w| w.fill(0x11));
            second.freeze(100);
            assert_eq!(second.seal(true), 4096);
            let dma = second
                .sealed_dma()
                .unwrap_or_else(|| panic!("sealed chunk has no DMA buffer"));
            let bytes = dma.as_bytes();
            assert_eq!(bytes.len(), 4096);
            assert!(bytes[..100].iter().all(|b| *b == 0x11));
            assert!(bytes[100..].iter().all(|b| *b == 0));
            drop(dma);
            drop(second);
            // Trimmed to 4 KiB by its write: too short to keep.
            assert!(pool.is_empty());
            let st = pool.stats();
            assert_eq!(
                (st.allocated, st.reused, st.returned, st.released),
                (1, 1, 1, 1)
            );
        });
    }

    #[test]
    fn pool_picks_the_best_fit_and_respects_its_limits() {
        run(async {
            let pool = BufferPool::new(2, 10 << 20, 0);
            pool.preallocate(3, 4 << 20, 10 << 20);
            // Two 4 MiB buffers fit the byte limit and the count limit stops at two.
            assert_eq!(pool.len(), 2);
            assert_eq!(pool.stats().stocked, 2);
            // A 16 KiB chunk must not trim a 4 MiB buffer down: fresh allocation.
            let small = ChunkBuffer::from_pool(&pool, 16 * 1024, 16 * 1024, 16 * 1024);
            assert_eq!(small.capacity(), 16 * 1024);
            assert_eq!(pool.len(), 2);
            assert_eq!(pool.stats().allocated, 1);
            // A 2 MiB chunk takes a 4 MiB buffer and uses 2 MiB of it.
            let big = ChunkBuffer::from_pool(&pool, 4096, 2 << 20, 2 << 20);
            assert_eq!(big.capacity(), 2 << 20);
            assert_eq!(pool.len(), 1);
            assert_eq!(pool.stats().reused, 1);
            // Dropped while open: the whole 4 MiB buffer goes back.
            drop(big);
            assert_eq!(pool.len(), 2);
            let again = ChunkBuffer::from_pool(&pool, 4096, 4 << 20, 4 << 20);
            assert_eq!(again.capacity(), 4 << 20);
            drop(again);
            // Allowed to, a 2 MiB chunk uses the whole 4 MiB buffer it gets (so that sealing
            // it full keeps the buffer recyclable), bounded by `max`.
            let whole = ChunkBuffer::from_pool(&pool, 4096, 2 << 20, 16 << 20);
            assert_eq!(whole.capacity(), 4 << 20);
            let bounded = ChunkBuffer::from_pool(&pool, 4096, 2 << 20, (3 << 20) + 100);
            assert_eq!(bounded.capacity(), 3 << 20);
            drop((whole, bounded));
            assert_eq!(pool.len(), 2);
            // A full pool makes room for a returned buffer by freeing its oldest one, so it
            // follows the chunk sizes in use now.
            let released = pool.stats().released;
            let half = ChunkBuffer::from_pool(&pool, 4096, 512 << 10, 512 << 10);
            assert_eq!(
                pool.stats().allocated,
                2,
                "4 MiB buffers are too big for 512 KiB"
            );
            drop(half);
            assert_eq!(pool.len(), 2);
            assert_eq!(pool.stats().released, released + 1);
            let reused = pool.stats().reused;
            let again = ChunkBuffer::from_pool(&pool, 4096, 512 << 10, 512 << 10);
            assert_eq!(pool.stats().reused, reused + 1);
            assert_eq!(again.capacity(), 512 << 10);
        });
    }

    #[test]
    fn preallocation_may_exceed_the_pool_until_buffers_come_back() {
        run(async {
            // A pool that keeps 8 MiB, preallocated with 16 MiB (the part a tail cache takes).
            let pool = BufferPool::new(8, 8 << 20, 0);
            pool.preallocate(5, 4 << 20, 16 << 20);
            assert_eq!((pool.len(), pool.held_bytes()), (4, 16 << 20));
            assert_eq!(pool.stats().stocked, 4);
            let chunks: Vec<ChunkBuffer> = (0..3)
                .map(|_| ChunkBuffer::from_pool(&pool, 4 << 20, 4 << 20, 4 << 20))
                .collect();
            assert_eq!(pool.stats().reused, 3);
            assert_eq!(pool.stats().allocated, 0, "served by the preallocation");
            assert_eq!((pool.len(), pool.held_bytes()), (1, 4 << 20));
            // Coming back, the buffers are kept within the pool's own limit again.
            drop(chunks);
            assert_eq!((pool.len(), pool.held_bytes()), (2, 8 << 20));
            assert_eq!(pool.stats().released, 2);
        });
    }

    #[test]
    fn spares_are_stocked_for_the_next_chunk_within_the_limits() {
        run(async {
            let cap = STOCK_MIN_BYTES;
            let pool = BufferPool::new(8, 4 * cap, 2);
            let first = ChunkBuffer::from_pool(&pool, cap, cap, cap);
            // One fresh buffer for the chunk, two stocked beside it.
            assert_eq!(pool.len(), 2);
            let st = pool.stats();
            assert_eq!((st.allocated, st.stocked, st.reused), (1, 2, 0));
            // The next chunk takes a stocked buffer and one more is stocked in its place.
            let second = ChunkBuffer::from_pool(&pool, cap, cap, cap);
            assert_eq!(second.capacity(), cap);
            let st = pool.stats();
            assert_eq!((st.allocated, st.stocked, st.reused), (1, 3, 1));
            assert_eq!(pool.len(), 2);
            // A stocked buffer holds what is written into it, and a write pads it with zeros.
            second.write_with(0, 5000, |w| w.fill(0x5A));
            second.freeze(5000);
            assert_eq!(second.seal(true), 8192);
            let dma = second
                .sealed_dma()
                .unwrap_or_else(|| panic!("sealed chunk has no DMA buffer"));
            assert!(dma.as_bytes()[..5000].iter().all(|b| *b == 0x5A));
            assert!(dma.as_bytes()[5000..8192].iter().all(|b| *b == 0));
            drop(dma);
            drop((first, second));

            // The pool's byte limit bounds the stock: room for one spare only.
            let small = BufferPool::new(8, cap + cap / 2, 2);
            let only = ChunkBuffer::from_pool(&small, cap, cap, cap);
            assert_eq!(small.len(), 1);
            assert_eq!(small.stats().stocked, 1);
            drop(only);

            // Small chunks (a group commit's) get no spares.
            let sync_pool = BufferPool::new(8, 16 * cap, 2);
            let group = ChunkBuffer::from_pool(&sync_pool, 64 * 1024, 64 * 1024, 64 * 1024);
            assert_eq!((sync_pool.len(), sync_pool.stats().stocked), (0, 0));
            drop(group);
        });
    }

    #[test]
    fn copy_of_holds_the_bytes_and_zero_padding() {
        run(async {
            let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8 + 1).collect();
            let c = ChunkBuffer::copy_of(&data);
            assert_eq!(c.capacity(), 8192);
            assert_eq!(c.frozen_len(), 5000);
            assert_eq!(c.bytes(0, 5000), &data[..]);
            assert_eq!(c.seal(true), 8192);
            let dma = c
                .sealed_dma()
                .unwrap_or_else(|| panic!("sealed chunk has no DMA buffer"));
            assert_eq!(&dma.as_bytes()[..5000], &data[..]);
            assert!(dma.as_bytes()[5000..].iter().all(|b| *b == 0));
        });
    }
}
