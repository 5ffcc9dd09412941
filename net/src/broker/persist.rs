//! Atomic replacement of a small config file: write a temp file, fsync it, rename it over the
//! target, fsync the directory. A crash leaves either the old or the new content, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

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
