//! ramjet-storage: one shard's disk. CommitLog, ConsumeQueue, IndexFile, checkpoint, recovery,
//! retention.
//!
//! What it guarantees: records are stored in RocketMQ's CommitLog format in segment files named
//! by their start offset; under `flush = sync` an append is acknowledged only after the
//! fdatasync that covers it (group commit); recovery at open cuts a torn tail and refuses
//! corruption before it. What it does not do: networking, or any locking: a [`Store`] belongs to
//! one glommio executor (one shard) and is `!Send`.
//!
//! glommio is touched only in [`io`] (and the ConsumeQueue/IndexFile flush writes in
//! `consumequeue::disk`).
//!
//! Using a [`Store`] (one per shard): open it with [`Store::open`] inside the shard's glommio
//! executor (it spawns its flusher task there). `put_message`/`put_batch` never await; under
//! `flush = sync` acknowledge after [`Store::wait_durable`]. Blocking calls on the executor
//! thread, all off the append path: recovery at open (sequential reads of the scanned segments),
//! the checkpoint rewrite (4 KiB + fsync, every `checkpoint_interval_ms`), retention sweeps
//! (stat/unlink, every `retention_check_interval_ms`), statvfs (every
//! `disk_check_interval_ms`), `read_record` (pread), buffered-mode chunk writes (pwrite into the
//! page cache).

pub mod checkpoint;
pub mod commitlog;
pub mod config;
pub mod consumequeue;
pub mod error;
pub mod fxhash;
pub mod index;
pub mod io;
pub mod latency;
mod prefault;
pub mod recovery;
pub mod retention;
pub mod schedule;
pub mod store;

pub use commitlog::{Chunk, TailSlice};
pub use config::{
    FlushMode, IoMode, Preallocate, StoreConfig, DEFAULT_FLUSHER_LATENCY_US,
    DEFAULT_SYNC_GROUP_MAX_BYTES, DEFAULT_ZERO_FILL_MAX_APPEND_RATE, MAX_FLUSHER_LATENCY_US,
    MAX_SYNC_GROUP_MAX_BYTES, MIN_FLUSHER_LATENCY_US, MIN_SYNC_GROUP_MAX_BYTES,
    ZERO_FILL_RATE_WINDOW,
};
pub use error::StoreError;
pub use prefault::backlog as prefault_backlog;
pub use store::{
    ArrivalListener, GetResult, GetStatus, PutResult, ReplicaAppend, Store, StoreStats,
};
