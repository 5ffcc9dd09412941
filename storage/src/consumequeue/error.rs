//! Errors of the ConsumeQueue.

use std::path::PathBuf;

use super::disk::DiskError;
use crate::error::StoreError;

/// What went wrong in a ConsumeQueue operation.
#[derive(Debug, thiserror::Error)]
pub enum CqError {
    /// A dispatch skipped queue offsets: the queue holds units up to `max_offset`.
    #[error("ConsumeQueue {topic}/{queue_id}: unit for queue offset {queue_offset} would leave a gap, next offset is {max_offset}")]
    Gap {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        max_offset: i64,
    },
    /// A dispatch went backwards in the CommitLog for a new queue offset.
    #[error("ConsumeQueue {topic}/{queue_id}: unit at queue offset {queue_offset} has CommitLog offset {physical_offset}, below the queue's end {max_physical_offset}")]
    PhysicalBackwards {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        physical_offset: u64,
        max_physical_offset: u64,
    },
    /// A negative queue offset or queue id, or a zero-size record.
    #[error("ConsumeQueue {topic}/{queue_id}: invalid {field} {value}")]
    Invalid {
        topic: String,
        queue_id: i32,
        field: &'static str,
        value: i64,
    },
    /// The topic cannot name a directory (RocketMQ allows `[%|a-zA-Z0-9_-]`, 1..=255 bytes here).
    #[error("topic {topic:?} cannot be used as a ConsumeQueue directory name: only [%|a-zA-Z0-9_-], 1..=255 bytes")]
    BadTopic { topic: String },
    /// A file in the ConsumeQueue tree does not fit the layout.
    #[error("ConsumeQueue file {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// A flush was started while the previous one is still running.
    #[error("a ConsumeQueue flush is already in flight")]
    FlushInFlight,
    /// Reading the tree at load.
    #[error("{op} {path}: {source}")]
    Load {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing or removing files.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

impl From<CqError> for StoreError {
    fn from(e: CqError) -> StoreError {
        match e {
            CqError::Load { op, path, source } => StoreError::io(op, path, source),
            CqError::Disk(d) => StoreError::io(d.op, d.path, d.source),
            other => StoreError::Dispatch {
                what: "ConsumeQueue",
                reason: other.to_string(),
            },
        }
    }
}
