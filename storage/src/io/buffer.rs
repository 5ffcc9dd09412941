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

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::config::IO_ALIGNMENT;

enum Storage {
    Open(DmaBuffer),
    Sealed(Rc<DmaBuffer>),
    /// Only inside `seal`, between taking the open buffer and storing the sealed one.
    Moving,
}

/// A DMA-aligned, append-only buffer shared between the writer, the flusher and readers.
pub struct ChunkBuffer {
    ptr: NonNull<u8>,
    capacity: usize,
    /// Bytes `[0, frozen)` are written and immutable.
    frozen: Cell<usize>,
    storage: RefCell<Storage>,
}

impl ChunkBuffer {
    /// Allocates a zero-filled buffer of `capacity` rounded up to the I/O alignment. Zero-filled
    /// so that the padding a write sends past the last record is zeros (what recovery expects
    /// after the tail) and no uninitialised byte is ever exposed.
    pub fn new(capacity: usize) -> ChunkBuffer {
        let align = IO_ALIGNMENT as usize;
        let capacity = capacity.max(align).div_ceil(align) * align;
        let mut buf = glommio::allocate_dma_buffer(capacity);
        let ptr = buf.as_mut_ptr();
        // SAFETY: `ptr` addresses `capacity` writable bytes owned by `buf`; no reference to them
        // exists yet.
        unsafe { std::ptr::write_bytes(ptr, 0, capacity) };
        ChunkBuffer {
            // glommio never hands out a null buffer pointer (allocation failure aborts).
            ptr: NonNull::new(ptr).unwrap_or_else(|| std::process::abort()),
            capacity,
            frozen: Cell::new(0),
            storage: RefCell::new(Storage::Open(buf)),
        }
    }

    /// Total bytes the buffer can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
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

impl std::fmt::Debug for ChunkBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkBuffer")
            .field("capacity", &self.capacity)
            .field("frozen", &self.frozen.get())
            .field("sealed", &self.is_sealed())
            .finish()
    }
}
