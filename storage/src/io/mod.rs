//! The only place glommio is touched in ramjet-storage (DESIGN.md §8 "the runtime is
//! contained"): DMA-aligned write buffers, segment files (O_DIRECT through io_uring, plus a
//! buffered descriptor for sendfile), task spawning and timers. A move to another io_uring
//! runtime changes this module only.

mod buffer;
mod file;
pub(crate) mod mapping;
mod runtime;

pub use buffer::{
    BufferPool, ChunkBuffer, PoolStats, POOL_MAX_OVERSIZE, POOL_MIN_BUFFER_BYTES, WARM_SPARES,
};
pub use file::{sync_dir, warm_up, SegmentFile, ZERO_FILL_WRITE_BYTES};
pub use runtime::{
    block_on, block_on_pinned, block_on_with_preempt, blocking, install_wake_guard,
    set_io_worker_cpus, sleep, spawn, spawn_urgent, wake_guard_nudges, yield_now, BackgroundTask,
    DEFAULT_PREEMPT_TIMER, WAKE_GUARD_PERIOD,
};

/// Turns a glommio error into the `std::io::Error` it wraps, keeping the OS error code (glommio's
/// own conversion drops it for "enhanced" errors, and ENOSPC must stay recognisable).
pub(crate) fn to_io_error<T>(err: glommio::GlommioError<T>) -> std::io::Error {
    match err {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => other.into(),
    }
}
