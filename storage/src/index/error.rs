//! Errors of the IndexFile.

use std::path::PathBuf;

use crate::consumequeue::DiskError;
use crate::error::StoreError;

/// What went wrong in an IndexFile operation.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Slot or entry counts out of range.
    #[error("invalid index config: {field} = {value} ({reason})")]
    Config {
        field: &'static str,
        value: u64,
        reason: &'static str,
    },
    /// A CommitLog offset that does not fit the entry's int64.
    #[error("CommitLog offset {offset} cannot be indexed: above {max}", max = i64::MAX)]
    OffsetOutOfRange { offset: u64 },
    /// A file in `index/` does not fit the layout.
    #[error("index file {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// A flush was started while the previous one is still running.
    #[error("an IndexFile flush is already in flight")]
    FlushInFlight,
    /// Reading files (at load, or a query on a sealed file).
    #[error("{op} {path}: {source}")]
    Read {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing or removing files.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

impl From<IndexError> for StoreError {
    fn from(e: IndexError) -> StoreError {
        match e {
            IndexError::Read { op, path, source } => StoreError::io(op, path, source),
            IndexError::Disk(d) => StoreError::io(d.op, d.path, d.source),
            other => StoreError::Dispatch {
                what: "IndexFile",
                reason: other.to_string(),
            },
        }
    }
}
