//! Cold file ranges of a pull answer are read into the page cache off the shard before the
//! answer goes out.
//!
//! `sendfile(2)` (and the copy path's `pread(2)`) of pages that are not in the page cache wait
//! for the disk inside the call, on the shard's thread, and every other connection of the shard
//! waits with it. In a catch-up from evicted segment files (1.2-1.5 M msg/s) a 5k msg/s producer
//! on the same shard saw p99 210-280 ms; the shard was in D state in
//! `filemap_splice_read -> folio_wait_bit_common` thousands of times a second.
//!
//! Before a connection writes responses that carry file chunks, [`cold_ranges`] asks the kernel
//! how much of each range is cached (`cachestat(2)`: one call per chunk, no I/O, Linux >= 6.5).
//! Ranges not wholly cached are read on the executor's blocking thread ([`read_in`]: `pread`
//! into a reused buffer fills the page cache), and the kernel is asked to read the next
//! [`WARM_AHEAD_BYTES`] of the file ahead (`posix_fadvise(WILLNEED)`), so that the next pulls of
//! a catch-up find their pages there. Only the connection that needs the cold data waits; the
//! shard goes on serving the others. Where `cachestat` is missing (older kernels) nothing
//! changes: chunks go out as before.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// File bytes after a cold range that the kernel is asked to read ahead.
pub const WARM_AHEAD_BYTES: u64 = 4 << 20;

/// Size of one `pread` of a cold range (the blocking thread's reused buffer).
const READ_PIECE_BYTES: usize = 256 * 1024;

/// `cachestat(2)` on this kernel: unknown until first used, then available or not.
static CACHESTAT: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const AVAILABLE: u8 = 1;
const MISSING: u8 = 2;

/// The syscall number of `cachestat` (the generic table's 451 on both x86_64 and aarch64; the
/// libc crate does not name it for glibc targets).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Whether every page of `len` bytes at `offset` of `file` is in the page cache. `None` when the
/// kernel cannot tell (no `cachestat`): callers treat that as cached.
pub fn is_cached(file: &File, offset: u64, len: u64) -> Option<bool> {
    if len == 0 {
        return Some(true);
    }
    if CACHESTAT.load(Ordering::Relaxed) == MISSING {
        return None;
    }
    let pages = cached_pages(file, offset, len)?;
    let ps = page_size();
    let want = (offset + len).div_ceil(ps) - offset / ps;
    Some(pages >= want)
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn cached_pages(file: &File, offset: u64, len: u64) -> Option<u64> {
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: cachestat(fd, range, out, flags) reads `range` and writes `stat`, both live locals
    // of the declared layout (the kernel's struct cachestat_range / struct cachestat); `file`
    // stays open for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if r == 0 {
        CACHESTAT.store(AVAILABLE, Ordering::Relaxed);
        return Some(stat.nr_cache);
    }
    let e = io::Error::last_os_error();
    if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
        if CACHESTAT.swap(MISSING, Ordering::Relaxed) != MISSING {
            tracing::info!(error = %e, "cachestat(2) unavailable: pull answers read cold file data on the shard");
        }
    } else {
        tracing::debug!(error = %e, "cachestat(2) failed");
    }
    None
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cached_pages(_file: &File, _offset: u64, _len: u64) -> Option<u64> {
    CACHESTAT.store(MISSING, Ordering::Relaxed);
    None
}

/// One cold range to read in: its own descriptor (a dup, so that it can move to the blocking
/// thread), offset and length.
pub struct ColdRange {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

/// Appends to `out` the ranges of `ranges` that are not wholly cached, each with a duplicated
/// descriptor. Ranges whose descriptor cannot be duplicated are left to the caller's path (they
/// read on the shard as before).
pub fn cold_ranges<'a>(
    ranges: impl Iterator<Item = (&'a File, u64, u64)>,
    out: &mut Vec<ColdRange>,
) {
    for (file, offset, len) in ranges {
        if is_cached(file, offset, len) != Some(false) {
            continue;
        }
        match file.try_clone() {
            Ok(file) => out.push(ColdRange { file, offset, len }),
            Err(e) => tracing::debug!(error = %e, "dup of a segment descriptor failed"),
        }
    }
}

/// Reads every range into the page cache (blocking: run it on the blocking thread) and asks the
/// kernel to read [`WARM_AHEAD_BYTES`] past each. Returns the bytes read.
pub fn read_in(ranges: &[ColdRange]) -> io::Result<u64> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        if buf.len() < READ_PIECE_BYTES {
            buf.resize(READ_PIECE_BYTES, 0);
        }
        let mut total = 0u64;
        for r in ranges {
            let end = r.offset + r.len;
            // SAFETY: posix_fadvise on a descriptor we own; advisory only, the result is ignored
            // (readahead is an optimization).
            unsafe {
                libc::posix_fadvise(
                    r.file.as_raw_fd(),
                    end as libc::off_t,
                    WARM_AHEAD_BYTES as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
            let mut at = r.offset;
            while at < end {
                let want = ((end - at) as usize).min(READ_PIECE_BYTES);
                let got = match r.file.read_at(&mut buf[..want], at) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                at += got as u64;
                total += got as u64;
            }
        }
        Ok(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evict(f: &File) {
        f.sync_all().unwrap_or_else(|e| panic!("fsync: {e}"));
        // SAFETY: advisory call on an open descriptor.
        let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(r, 0, "fadvise DONTNEED");
    }

    /// An evicted range reads as cold, `read_in` brings it in (bytes counted), and it then reads
    /// as cached; the cold list holds exactly the evicted ranges.
    #[test]
    fn evicted_ranges_are_cold_until_read_in() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("seg");
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap_or_else(|e| panic!("write: {e}"));
        let f = File::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        evict(&f);
        let Some(cold) = is_cached(&f, 8192, 100_000) else {
            // No cachestat on this kernel: the module does nothing, as documented.
            eprintln!("no cachestat(2) here: only the fallback is checked");
            assert!(cold_list(&f).is_empty());
            return;
        };
        if cold {
            // The file system kept the pages (e.g. tmpfs ignores DONTNEED): nothing to show.
            eprintln!("the file system kept the evicted pages: nothing to check");
            return;
        }
        let list = cold_list(&f);
        assert_eq!(
            list.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(),
            vec![(8192, 100_000), (500_000, 1)]
        );
        let read = read_in(&list).unwrap_or_else(|e| panic!("read_in: {e}"));
        assert_eq!(read, 100_001);
        assert_eq!(is_cached(&f, 8192, 100_000), Some(true));
        assert_eq!(is_cached(&f, 500_000, 1), Some(true));
        assert!(cold_list(&f).is_empty(), "read-in ranges are cached");
        assert_eq!(is_cached(&f, 0, 0), Some(true), "an empty range is cached");
    }

    fn cold_list(f: &File) -> Vec<ColdRange> {
        let mut out = Vec::new();
        cold_ranges(
            [(f, 8192u64, 100_000u64), (f, 500_000, 1)].into_iter(),
            &mut out,
        );
        out
    }
}
