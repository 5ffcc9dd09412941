//! File writes of the ConsumeQueue and IndexFile flushers: plain positioned writes and
//! fdatasync on the executor's blocking thread ([`crate::io::blocking`]), never on the shard's
//! own thread.
//!
//! Why buffered, not O_DIRECT: ConsumeQueue units (20 bytes) and index entries are small appends
//! at unaligned positions (a ConsumeQueue file is 6,000,000 bytes, not a multiple of 4096), so
//! O_DIRECT would rewrite whole 4 KiB blocks per flush and pad file ends; the page cache takes
//! the small writes and one fdatasync per file per flush makes them durable. These files are
//! rebuildable from the CommitLog, so they never gate an acknowledgement.
//!
//! Why not io_uring: a buffered write through io_uring is punted to an io-wq worker (the page
//! cache copy may block), and io-wq workers inherit the shard thread's CPU pinning, so after a
//! burst the copy of megabytes of units and index entries, and any dirty-page throttling, ran
//! on the shard's core (13-18 % of it in the session-4 profiles). The blocking thread is not
//! pinned to the shard's core (see `ramjet_net::runtime`), so the kernel runs this work where
//! there is room.

use std::path::{Path, PathBuf};

use std::os::unix::fs::FileExt;

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
/// empty. Stops at the first failure. Blocking: runs on the executor's blocking thread.
pub(crate) async fn apply(
    removals: Vec<PathBuf>,
    writes: Vec<FileWrite>,
    dir_removals: Vec<PathBuf>,
) -> (Vec<PathBuf>, Vec<PathBuf>, Result<DiskStats, DiskError>) {
    crate::io::blocking(move || {
        let res = apply_blocking(&removals, writes, &dir_removals);
        (removals, dir_removals, res)
    })
    .await
}

fn apply_blocking(
    removals: &[PathBuf],
    writes: Vec<FileWrite>,
    dir_removals: &[PathBuf],
) -> Result<DiskStats, DiskError> {
    let mut stats = DiskStats::default();
    for path in removals {
        match std::fs::remove_file(path) {
            Ok(()) => stats.files_removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(disk_err("removing", path, e)),
        }
    }
    for w in writes {
        let dir = w.path.parent().map(Path::to_path_buf);
        if w.new_file {
            if let Some(dir) = &dir {
                std::fs::create_dir_all(dir).map_err(|e| disk_err("creating directory", dir, e))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&w.path)
            .map_err(|e| disk_err("opening", &w.path, e))?;
        for (pos, data) in &w.ranges {
            // write_all_at reports a full disk as ENOSPC (a zero-length write) and retries
            // short writes, so a partial range never passes for a written one.
            file.write_all_at(data, *pos)
                .map_err(|e| disk_err("writing", &w.path, e))?;
            stats.bytes_written += data.len() as u64;
        }
        if let Some(len) = w.truncate_to {
            file.set_len(len)
                .map_err(|e| disk_err("truncating", &w.path, e))?;
        }
        file.sync_data()
            .map_err(|e| disk_err("fdatasync", &w.path, e))?;
        drop(file);
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
