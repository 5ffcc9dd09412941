//! Errors of the store. Each names what failed, with which value, and where.

use std::path::PathBuf;

use ramjet_core::record::RecordError;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Disk usage is above the refuse ratio: appends are refused until retention frees space.
    /// The broker answers RocketMQ's SERVICE_NOT_AVAILABLE.
    #[error("disk of {dir} is {used_pct:.1}% full, above the {refuse_pct:.1}% limit (disk_refuse_ratio): appends refused until space is freed")]
    DiskFull {
        dir: PathBuf,
        used_pct: f64,
        refuse_pct: f64,
    },
    /// A message body or a whole batch is over the configured limit.
    #[error("{what} is {size} bytes, the limit is {max} bytes")]
    MessageTooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// Back-pressure: too many appended bytes are not yet written to the file. Retry after
    /// [`crate::Store::wait_writable`] (or answer RocketMQ's SYSTEM_BUSY / flow control).
    #[error("write buffers full: {unflushed_bytes} bytes not yet flushed, limit {limit_bytes} (max_unflushed_bytes); retry after the flusher catches up")]
    Busy {
        unflushed_bytes: u64,
        limit_bytes: u64,
    },
    /// The message cannot be encoded as a record (topic or properties too long, ...).
    #[error("message cannot be stored: {0}")]
    Record(#[from] RecordError),
    /// An empty batch was given to `put_batch`.
    #[error("a batch must hold at least one message")]
    EmptyBatch,
    /// The items of one batch disagree on topic or queue.
    #[error("batch item {index} is for {topic}/{queue_id}, the batch is for {batch_topic}/{batch_queue_id}")]
    MixedBatch {
        index: usize,
        topic: String,
        queue_id: i32,
        batch_topic: String,
        batch_queue_id: i32,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing or syncing the CommitLog failed earlier; the data appended since the last good
    /// flush is still in memory and the flusher retries. Appends are refused until it succeeds.
    #[error("CommitLog flush failing since offset {durable_offset}: {reason}; appends refused until a flush succeeds")]
    FlushFailed {
        durable_offset: u64,
        no_space: bool,
        reason: String,
    },
    /// A record on disk failed validation.
    #[error("corrupt CommitLog record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// No record starts at (or is stored at) this physical offset.
    #[error("no record at CommitLog offset {offset}: {reason}")]
    NoRecord { offset: u64, reason: &'static str },
    /// A configuration field is invalid.
    #[error("invalid store config field {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// Recovery at open failed.
    #[error("recovery of {dir} failed: {reason}")]
    Recovery { dir: PathBuf, reason: String },
    /// The store is shut down.
    #[error("store is shut down")]
    ShutDown,
    /// Replicated bytes do not continue this store's CommitLog where it ends.
    #[error("replicated data at CommitLog offset {offset} does not fit this store: {reason}")]
    ReplicaDiverged { offset: u64, reason: String },
    /// A ConsumeQueue or IndexFile operation failed.
    #[error("{what}: {reason}")]
    Dispatch { what: &'static str, reason: String },
}

impl StoreError {
    /// Builds an [`StoreError::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this error says the disk has no room (refuse ratio or ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            StoreError::FlushFailed { no_space, .. } => *no_space,
            _ => false,
        }
    }
}
