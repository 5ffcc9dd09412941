//! File writes of the ConsumeQueue and IndexFile flushers, through glommio's buffered files
//! (io_uring). The only glommio code of `consumequeue` and `index`; it belongs beside the
//! CommitLog's in `crate::io` and can move there unchanged.
//!
//! Why buffered, not O_DIRECT: ConsumeQueue units (20 bytes) and index entries are small appends
//! at unaligned positions (a ConsumeQueue file is 6,000,000 bytes, not a multiple of 4096), so
//! O_DIRECT would rewrite whole 4 KiB blocks per flush and pad file ends; the page cache takes
//! the small writes and one fdatasync per file per flush makes them durable. These files are
//! rebuildable from the CommitLog, so they never gate an acknowledgement.

use std::path::{Path, PathBuf};

use glommio::io::OpenOptions;

/// A file operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct DiskError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn disk_err(op: &'static str, path: &Path, source: std::io::Error) -> DiskError {
    DiskError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn glommio_err<T>(op: &'static str, path: &Path, e: glommio::GlommioError<T>) -> DiskError {
    let source = match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    };
    disk_err(op, path, source)
}

/// Byte ranges to put into the file at `path` (`(position, bytes)`, in order), then optionally
/// cut the file to `truncate_to`.
#[derive(Debug)]
pub(crate) struct FileWrite {
    pub path: PathBuf,
    pub ranges: Vec<(u64, Vec<u8>)>,
    pub truncate_to: Option<u64>,
    /// The file may not exist yet: create its directory and fsync the directory afterwards.
    pub new_file: bool,
}

/// What one [`apply`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    pub files_written: u64,
    pub bytes_written: u64,
    pub files_removed: u64,
}

fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    // Once per new file: a blocking open+fsync of the directory is acceptable here.
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| disk_err("fsync directory", dir, e))
}

/// Removes `removals` (absent files are fine), then performs `writes` in order (each file written,
/// truncated if asked, fdatasync'ed), then removes the directories in `dir_removals` that are
/// empty. Stops at the first failure.
pub(crate) async fn apply(
    removals: &[PathBuf],
    writes: Vec<FileWrite>,
    dir_removals: &[PathBuf],
) -> Result<DiskStats, DiskError> {
    let mut stats = DiskStats::default();
    for path in removals {
        match glommio::io::remove(path).await {
            Ok(()) => stats.files_removed += 1,
            Err(e) => {
                let e = glommio_err("removing", path, e);
                if e.source.kind() != std::io::ErrorKind::NotFound {
                    return Err(e);
                }
            }
        }
    }
    for w in writes {
        let dir = w.path.parent().map(Path::to_path_buf);
        if w.new_file {
            if let Some(dir) = &dir {
                std::fs::create_dir_all(dir).map_err(|e| disk_err("creating directory", dir, e))?;
            }
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .buffered_open(&w.path)
            .await
            .map_err(|e| glommio_err("opening", &w.path, e))?;
        for (pos, data) in w.ranges {
            let len = data.len();
            if len == 0 {
                continue;
            }
            // write_at takes the buffer; a regular file writes it whole or fails (a short
            // count means the disk filled up mid-write), so a short write is an error.
            let n = file
                .write_at(data, pos)
                .await
                .map_err(|e| glommio_err("writing", &w.path, e))?;
            if n != len {
                let source = if n == 0 {
                    std::io::Error::from_raw_os_error(libc::ENOSPC)
                } else {
                    std::io::Error::other(format!("short write: {n} of {len} bytes at {pos}"))
                };
                return Err(disk_err("writing", &w.path, source));
            }
            stats.bytes_written += len as u64;
        }
        if let Some(len) = w.truncate_to {
            file.truncate(len)
                .await
                .map_err(|e| glommio_err("truncating", &w.path, e))?;
        }
        file.fdatasync()
            .await
            .map_err(|e| glommio_err("fdatasync", &w.path, e))?;
        file.close()
            .await
            .map_err(|e| glommio_err("closing", &w.path, e))?;
        if w.new_file {
            if let Some(dir) = &dir {
                sync_dir(dir)?;
            }
        }
        stats.files_written += 1;
    }
    for dir in dir_removals {
        // Only empty directories go; a non-empty or missing one is left as is.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(stats)
}
