//! CommitLog segment files: an O_DIRECT glommio `DmaFile` for writes and syncs, and a separate
//! buffered `std::fs::File` of the same segment for sendfile and reads (sendfile from an O_DIRECT
//! descriptor is ~5x slower, DESIGN.md §7) and for `io_mode = buffered` writes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::buffer::ChunkBuffer;
use super::to_io_error;
use crate::config::{IoMode, Preallocate, IO_ALIGNMENT};
use crate::error::StoreError;

/// Name of the small file opened first in each executor, see [`warm_up`].
const PROBE_FILE_NAME: &str = ".dma_probe";

/// Zero-fill writes go out in pieces of this size (one registered-buffer-sized DMA write each).
pub const ZERO_FILL_WRITE_BYTES: usize = 1024 * 1024;

/// glommio decides per device and per thread whether a device supports polled I/O by reading
/// the first block of the first file opened with O_DIRECT; an empty file answers "yes" wrongly
/// and every later read fails with EOPNOTSUPP (glommio issues #605, #670). Opening a non-empty
/// file first settles the answer correctly. Call once per executor before any other DMA open.
pub async fn warm_up(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(PROBE_FILE_NAME);
    let needs_write = match std::fs::metadata(&path) {
        Ok(m) => m.len() < IO_ALIGNMENT,
        Err(_) => true,
    };
    if needs_write {
        std::fs::write(&path, vec![0u8; IO_ALIGNMENT as usize])
            .map_err(|e| StoreError::io("writing the DMA probe file", &path, e))?;
    }
    let f = DmaFile::open(&path)
        .await
        .map_err(|e| StoreError::io("opening the DMA probe file", &path, to_io_error(e)))?;
    f.read_at_aligned(0, IO_ALIGNMENT as usize)
        .await
        .map_err(|e| StoreError::io("reading the DMA probe file", &path, to_io_error(e)))?;
    f.close()
        .await
        .map_err(|e| StoreError::io("closing the DMA probe file", &path, to_io_error(e)))?;
    Ok(())
}

/// One CommitLog segment file, open for writing and reading.
pub struct SegmentFile {
    start_offset: u64,
    path: PathBuf,
    dma: DmaFile,
    buffered: Rc<File>,
    io_mode: IoMode,
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("start_offset", &self.start_offset)
            .field("path", &self.path)
            .finish()
    }
}

impl SegmentFile {
    /// Opens an existing segment (or creates an empty one) read+write.
    pub async fn open(
        path: &Path,
        start_offset: u64,
        io_mode: IoMode,
    ) -> Result<SegmentFile, StoreError> {
        let dma = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(path)
            .await
            .map_err(|e| StoreError::io("opening segment (O_DIRECT)", path, to_io_error(e)))?;
        let buffered = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("opening segment (buffered)", path, e))?;
        Ok(SegmentFile {
            start_offset,
            path: path.to_path_buf(),
            dma,
            buffered: Rc::new(buffered),
            io_mode,
        })
    }

    /// Creates a segment at `path` prepared as `prealloc` says, writing it under a temporary
    /// name first and linking it into place only if no file has that name yet, so a
    /// half-prepared file never carries a segment name and a segment the writer created in the
    /// meantime is never replaced. Returns the opened file, or an `AlreadyExists` I/O error.
    ///
    /// A zero fill pauses after each write for `pace(bytes_done, last_write_took)`, so that
    /// the caller can keep it from taking the whole disk away from the records being written;
    /// `None` ends the fill there and the segment is published as filled so far (the rest
    /// grows as it is written, as with `Preallocate::None`).
    pub async fn create_prepared(
        path: &Path,
        start_offset: u64,
        size_bytes: u64,
        prealloc: Preallocate,
        io_mode: IoMode,
        still_wanted: &dyn Fn() -> bool,
        pace: &dyn Fn(u64, std::time::Duration) -> Option<std::time::Duration>,
    ) -> Result<SegmentFile, StoreError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".prep");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let dma = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(&tmp)
            .await
            .map_err(|e| StoreError::io("creating segment", &tmp, to_io_error(e)))?;
        match prealloc {
            Preallocate::Zero => {
                let zeros = ChunkBuffer::new(ZERO_FILL_WRITE_BYTES);
                zeros.freeze(zeros.capacity());
                zeros.seal(true);
                let buf = zeros.sealed_dma().ok_or_else(|| {
                    StoreError::io(
                        "zero-filling segment",
                        &tmp,
                        std::io::Error::other("zero buffer not sealed"),
                    )
                })?;
                let mut pos = 0u64;
                // A fill the writer no longer waits for (it created the segment itself) stops
                // at once instead of competing with the records for the disk.
                while pos < size_bytes && still_wanted() {
                    let n = ((size_bytes - pos) as usize).min(ZERO_FILL_WRITE_BYTES);
                    let piece = if n == buf.len() {
                        buf.clone()
                    } else {
                        let mut small = glommio::allocate_dma_buffer(n);
                        small.as_bytes_mut().fill(0);
                        Rc::new(small)
                    };
                    let began = std::time::Instant::now();
                    let written = dma.write_rc_at(piece, pos).await.map_err(|e| {
                        StoreError::io("zero-filling segment", &tmp, to_io_error(e))
                    })?;
                    if written == 0 {
                        return Err(StoreError::io(
                            "zero-filling segment",
                            &tmp,
                            std::io::Error::from_raw_os_error(libc::ENOSPC),
                        ));
                    }
                    pos += written as u64;
                    let Some(pause) = pace(pos, began.elapsed()) else {
                        break;
                    };
                    if pause.is_zero() {
                        super::yield_now().await;
                    } else {
                        super::sleep(pause).await;
                    }
                }
            }
            Preallocate::Fallocate => {
                dma.pre_allocate(size_bytes, false)
                    .await
                    .map_err(|e| StoreError::io("fallocate segment", &tmp, to_io_error(e)))?;
            }
            Preallocate::None => {}
        }
        dma.fdatasync()
            .await
            .map_err(|e| StoreError::io("syncing new segment", &tmp, to_io_error(e)))?;
        dma.close()
            .await
            .map_err(|e| StoreError::io("closing new segment", &tmp, to_io_error(e)))?;
        // Publish under the final name (link, unlink, directory fsync) on the blocking thread:
        // a directory fsync waits for a journal commit, up to 15 ms behind the flusher's I/O
        // under load (session 19), which on the shard thread is 15 ms of no network.
        let wanted = still_wanted();
        let (tmp2, path2) = (tmp.clone(), path.to_path_buf());
        let already = super::blocking(move || publish(&tmp2, &path2, wanted)).await?;
        if already {
            return Err(StoreError::io(
                "preparing segment",
                path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        SegmentFile::open(path, start_offset, io_mode).await
    }

    /// Global CommitLog offset of the segment's first byte.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Path of the segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The buffered descriptor, for sendfile/splice and plain reads.
    pub fn reader(&self) -> Rc<File> {
        self.buffered.clone()
    }

    /// The buffered descriptor, borrowed (to compare identities).
    pub fn reader_ref(&self) -> &Rc<File> {
        &self.buffered
    }

    /// Writes the sealed `chunk` (its write length, see [`ChunkBuffer::seal`]) at file position
    /// `pos`, which must be block-aligned. A zero write length writes nothing.
    pub async fn write_chunk(&self, chunk: &ChunkBuffer, pos: u64) -> Result<(), StoreError> {
        debug_assert_eq!(pos % IO_ALIGNMENT, 0);
        let len = chunk.write_len();
        if len == 0 {
            return Ok(());
        }
        match self.io_mode {
            IoMode::Direct => {
                let buf = chunk.sealed_dma().ok_or_else(|| {
                    StoreError::io(
                        "writing chunk",
                        &self.path,
                        std::io::Error::other("chunk not sealed"),
                    )
                })?;
                let written = self.dma.write_rc_at(buf.clone(), pos).await.map_err(|e| {
                    StoreError::io("writing chunk (O_DIRECT)", &self.path, to_io_error(e))
                })?;
                if written != len {
                    if written > 0 && written < len && (written as u64).is_multiple_of(IO_ALIGNMENT)
                    {
                        // A short write (the file system ran out of room part-way through an
                        // extending or unwritten range): write the rest on its own, which
                        // either completes the chunk or reports why (ENOSPC), so a full disk
                        // is recognised as such.
                        let rest = &buf.as_bytes()[written..len];
                        let mut copy = glommio::allocate_dma_buffer(rest.len());
                        copy.as_bytes_mut().copy_from_slice(rest);
                        let at = pos + written as u64;
                        let more = self.dma.write_rc_at(Rc::new(copy), at).await.map_err(|e| {
                            StoreError::io("writing chunk (O_DIRECT)", &self.path, to_io_error(e))
                        })?;
                        if more == rest.len() {
                            return Ok(());
                        }
                        return Err(StoreError::io(
                            "writing chunk (O_DIRECT)",
                            &self.path,
                            short_write(more, rest.len(), at),
                        ));
                    }
                    return Err(StoreError::io(
                        "writing chunk (O_DIRECT)",
                        &self.path,
                        short_write(written, len, pos),
                    ));
                }
            }
            IoMode::Buffered => {
                // One pwrite per chunk into the page cache: a memory copy, no device wait (the
                // device wait is the fdatasync, which goes through io_uring). Writing from the
                // chunk's memory avoids the extra copy glommio's BufferedFile (owned Vec) needs.
                let data_len = chunk.frozen_len().min(len);
                self.buffered
                    .write_all_at(chunk.bytes(0, data_len), pos)
                    .map_err(|e| StoreError::io("writing chunk (buffered)", &self.path, e))?;
                if data_len < len {
                    // Keep the on-disk bytes identical to direct mode: zeros up to the block.
                    let zeros = [0u8; IO_ALIGNMENT as usize];
                    self.buffered
                        .write_all_at(&zeros[..len - data_len], pos + data_len as u64)
                        .map_err(|e| StoreError::io("writing chunk (buffered)", &self.path, e))?;
                }
            }
        }
        Ok(())
    }

    /// fdatasync through io_uring (covers writes from either descriptor: sync is per inode).
    pub async fn sync_data(&self) -> Result<(), StoreError> {
        self.dma
            .fdatasync()
            .await
            .map_err(|e| StoreError::io("fdatasync segment", &self.path, to_io_error(e)))
    }

    /// Reads `len` bytes at file position `pos` (any alignment) from the buffered descriptor.
    /// Blocking pread: used by the query/view path and recovery, never by appends.
    pub fn read_exact_at(&self, pos: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut out = vec![0u8; len];
        self.buffered
            .read_exact_at(&mut out, pos)
            .map_err(|e| StoreError::io("reading segment", &self.path, e))?;
        Ok(out)
    }

    /// Closes the O_DIRECT descriptor (the buffered one closes when the last reader drops it).
    pub async fn close(self) -> Result<(), StoreError> {
        self.dma
            .close()
            .await
            .map_err(|e| StoreError::io("closing segment", &self.path, to_io_error(e)))
    }
}

fn short_write(written: usize, len: usize, pos: u64) -> std::io::Error {
    if written == 0 {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    } else {
        std::io::Error::other(format!("short write at {pos}: {written} of {len} bytes"))
    }
}

/// Links the prepared segment `tmp` to `path` without ever replacing a file there (the writer
/// may have created the segment itself meanwhile and written records into it; a rename would
/// silently swap its file for this empty one, link(2) fails with EEXIST instead), removes
/// `tmp`, and syncs the directory when linked. `wanted == false` only removes `tmp`. Returns
/// whether the segment was there already (or no longer wanted). Blocking.
fn publish(tmp: &Path, path: &Path, wanted: bool) -> Result<bool, StoreError> {
    let already = !wanted
        || match std::fs::hard_link(tmp, path) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                return Err(StoreError::io("publishing new segment", path, e));
            }
        };
    let _ = std::fs::remove_file(tmp);
    if !already {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(already)
}

/// fsync of a directory, so that a create or rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let f = File::open(dir).map_err(|e| StoreError::io("opening directory", dir, e))?;
    f.sync_all()
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `create_prepared` declined to publish: an `AlreadyExists` I/O error.
    fn assert_already_exists(res: Result<(), StoreError>) {
        match res {
            Err(StoreError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
    }

    /// A zero fill that is no longer wanted (the writer created the segment itself) stops
    /// after the write in flight: the abandoned file is removed and not a zero more is written.
    #[test]
    fn an_unwanted_zero_fill_stops_early() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("00000000000000000000");
        let dir_path = dir.path().to_path_buf();
        let path2 = path.clone();
        let writes = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let w = writes.clone();
        let res = crate::io::block_on(async move {
            warm_up(&dir_path).await?;
            // Wanted for the first two checks only; the pace hook counts the zero writes.
            let checks = std::cell::Cell::new(0u32);
            let wanted = || {
                checks.set(checks.get() + 1);
                checks.get() <= 2
            };
            let pace = |_: u64, _: std::time::Duration| {
                w.set(w.get() + 1);
                Some(std::time::Duration::ZERO)
            };
            SegmentFile::create_prepared(
                &path2,
                0,
                8 * ZERO_FILL_WRITE_BYTES as u64,
                Preallocate::Zero,
                IoMode::Direct,
                &wanted,
                &pace,
            )
            .await
            .map(|_| ())
        })
        .unwrap_or_else(|e| panic!("executor: {e}"));
        assert_already_exists(res);
        assert_eq!(
            writes.get(),
            2,
            "two of eight zero writes, then the fill stopped"
        );
        assert!(!path.exists());
        assert!(!dir.path().join("00000000000000000000.prep").exists());
    }

    /// A segment the writer created (and wrote) while a preparation ran must survive the
    /// preparation's publish step untouched.
    #[test]
    fn prepared_segment_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("00000000000000000000");
        std::fs::write(&path, b"records written by the writer")
            .unwrap_or_else(|e| panic!("write: {e}"));
        let dir_path = dir.path().to_path_buf();
        let res = crate::io::block_on(async move {
            warm_up(&dir_path).await?;
            SegmentFile::create_prepared(
                &path,
                0,
                64 * 1024,
                Preallocate::Zero,
                IoMode::Direct,
                &|| true,
                &|_, _| Some(std::time::Duration::ZERO),
            )
            .await
            .map(|_| ())
        })
        .unwrap_or_else(|e| panic!("executor: {e}"));
        assert_already_exists(res);
        let kept = std::fs::read(dir.path().join("00000000000000000000"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(kept, b"records written by the writer");
        assert!(!dir.path().join("00000000000000000000.prep").exists());
        // And a fresh name gets a zero-filled segment of the full size.
        let dir_path = dir.path().to_path_buf();
        let fresh = dir.path().join("00000000000000065536");
        let fresh2 = fresh.clone();
        crate::io::block_on(async move {
            warm_up(&dir_path).await?;
            let f = SegmentFile::create_prepared(
                &fresh2,
                65536,
                64 * 1024,
                Preallocate::Zero,
                IoMode::Direct,
                &|| true,
                &|_, _| Some(std::time::Duration::ZERO),
            )
            .await?;
            f.close().await
        })
        .unwrap_or_else(|e| panic!("executor: {e}"))
        .unwrap_or_else(|e| panic!("prepare: {e}"));
        let bytes = std::fs::read(&fresh).unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(bytes.len(), 64 * 1024);
        assert!(bytes.iter().all(|b| *b == 0));
    }
}
