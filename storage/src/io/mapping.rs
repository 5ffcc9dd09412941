//! [`Mapping`]: a read-only, shared memory mapping of a finished file (the kernel's page cache
//! backs it, and the kernel can take that memory back under pressure).
//!
//! Used for ConsumeQueue files that are full and wholly on disk: their units are read in place
//! instead of being kept on the heap for as long as retention keeps the files (20 bytes per
//! message: at 2.5 M msg/s the heap grew by 50 MB/s, without bound, until session 18).
//!
//! The file must not shrink while it is mapped: reading a page past the end of a file raises
//! SIGBUS. ramjet never truncates or rewrites a file it has mapped (a ConsumeQueue file is
//! mapped only once it is full and durable; a truncation first reads it back into memory and
//! drops the mapping); a person truncating the file by hand under a running broker would crash
//! it, as with RocketMQ's mapped files.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// A read-only mapping of the first `len` bytes of a file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; nothing writes through it,
// so sharing or moving it between threads cannot race.
unsafe impl Send for Mapping {}
// SAFETY: as above: only shared reads of immutable bytes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `path` read-only. Fails if the file is shorter than `len`
    /// (a mapping past the end would fault on access) or `len` is 0.
    pub(crate) fn open(path: &Path, len: usize) -> std::io::Result<Mapping> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if len == 0 || size < len as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} holds {size} bytes, {len} wanted", path.display()),
            ));
        }
        // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file, at an
        // address the kernel chooses; it aliases no Rust object. The descriptor may be closed
        // afterwards (the mapping keeps the file).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned a null address without failing"))?;
        Ok(Mapping { ptr, len })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` addresses `len` readable bytes for as long as `self` lives (unmapped
        // only in drop); the file is never shrunk while mapped (module docs), so every page
        // is backed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Mapping {
    /// Drops this process's page-table entries for the mapping (`MADV_DONTNEED`): the pages
    /// stay in the page cache and the next read maps them again, but they no longer count in
    /// the process's resident set. Call after reading a whole mapping once (a verification).
    pub(crate) fn forget_resident(&self) {
        // SAFETY: advice on exactly the range this value mapped, read-only and file-backed:
        // DONTNEED on a shared file mapping drops page-table entries only, the bytes seen by
        // later reads are the file's, and no Rust reference depends on residency.
        unsafe {
            libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `open` mapped; no slice of it outlives `self`
        // (`bytes` borrows `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_file_and_refuses_a_short_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Mapping::open(&path, 9_000).unwrap();
        assert_eq!(m.bytes(), &data[..9_000]);
        let err = Mapping::open(&path, 10_001).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(Mapping::open(&path, 0).is_err());
        assert!(Mapping::open(&dir.path().join("missing"), 10).is_err());
        // Dropping the resident pages changes nothing that is read.
        m.forget_resident();
        assert_eq!(m.bytes(), &data[..9_000]);
        // Unlinked while mapped: still readable (the mapping keeps the file).
        std::fs::remove_file(&path).unwrap();
        assert_eq!(m.bytes()[8_999], data[8_999]);
    }
}
