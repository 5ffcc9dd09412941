//! Atomic replacement of a small config file: write a temp file, fsync it, rename it over the
//! target, fsync the directory. A crash leaves either the old or the new content, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// A failed atomic write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct PersistError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `bytes` atomically.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let err = |source| PersistError {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

/// One file replaced atomically by snapshots written from any thread (the shard's blocking
/// threads, or the shard itself at shutdown). Writes are serialized, because they share the
/// temp file `<path>.tmp`, and numbered: a snapshot taken before the one already on disk is
/// dropped instead of being renamed over it. Two blocking threads per shard (segment
/// publication beside the derived-file rounds) made two overlapping writes of one file
/// possible in principle; this keeps them apart.
#[derive(Clone)]
pub struct SnapshotFile {
    path: Arc<PathBuf>,
    /// The generation of the snapshot last written (0: none yet).
    written: Arc<Mutex<u64>>,
}

impl SnapshotFile {
    pub fn new(path: PathBuf) -> SnapshotFile {
        SnapshotFile {
            path: Arc::new(path),
            written: Arc::new(Mutex::new(0)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes snapshot number `generation` (> 0, taken in increasing order) unless a later
    /// one is on disk already. Returns whether it wrote. Blocking (two fsyncs).
    pub fn write(&self, generation: u64, bytes: &[u8]) -> Result<bool, PersistError> {
        assert!(generation > 0, "snapshot generations start at 1");
        // A panic in another writer leaves the number as it was: still the right one.
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if generation <= *written {
            return Ok(false);
        }
        write_atomically(&self.path, bytes)?;
        *written = generation;
        Ok(true)
    }
}

/// Reads a file that may not exist yet (`Ok(None)` then).
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::new(dir.path().join("o.json"));
        assert!(f.write(2, b"second").unwrap());
        assert!(!f.write(1, b"first").unwrap());
        assert_eq!(std::fs::read(f.path()).unwrap(), b"second");
        assert!(!f.write(2, b"again").unwrap());
        assert!(f.write(3, b"third").unwrap());
        assert_eq!(std::fs::read(f.path()).unwrap(), b"third");
    }

    #[test]
    fn writers_on_many_threads_leave_the_newest_snapshot_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = SnapshotFile::new(dir.path().join("o.json"));
        // Eight threads, 25 snapshots each, generations interleaved; every snapshot has its
        // own length so that a mix of two would show.
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for i in 0..25u64 {
                        let g = i * 8 + t + 1;
                        f.write(g, g.to_string().repeat(g as usize).as_bytes())
                            .expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            "200".repeat(200).as_bytes()
        );
        let tmp = dir.path().join("o.json.tmp");
        assert!(!tmp.exists(), "no temp file left");
    }

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        assert_eq!(read_optional(&p).unwrap(), None);
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two!").unwrap();
        assert_eq!(read_optional(&p).unwrap().unwrap(), b"two!");
        assert!(!dir.path().join("sub/x.json.tmp").exists());
    }
}
