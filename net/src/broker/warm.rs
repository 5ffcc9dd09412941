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
//! into a reused buffer fills the page cache). Only the connection that needs the cold data
//! waits; the shard goes on serving the others. Where `cachestat` is missing (older kernels)
//! nothing changes: chunks go out as before.
//!
//! Read-ahead ([`ReadAhead`]): each connection remembers, per segment file, how far it has asked
//! the kernel to read ahead (`posix_fadvise(WILLNEED)`, on the blocking thread). Once a chunk it
//! sends ends within half of [`WARM_AHEAD_BYTES`] of that edge, it asks for the next window
//! beyond the chunk, so the disk reads the next window while the consumer takes the current
//! one. Until session 28 the window was asked for only after a cold range, that is once the
//! consumer had already caught up with the disk: every window then began with a cold read that
//! the pull waited for, and the disk sat idle while the window was consumed.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// File bytes past a sent chunk that the kernel is asked to read ahead ([`ReadAhead`]).
pub const WARM_AHEAD_BYTES: u64 = 4 << 20;

/// Segment files whose read-ahead edge one connection remembers (a catch-up reads one file, two
/// across a segment boundary; the least recently used entry makes room).
const READ_AHEAD_FILES: usize = 4;

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

/// Sorts the file chunks a connection is about to send: appends to `cold` the ranges that are not
/// wholly cached, and to `ahead` the ranges `read_ahead` says the kernel should now read ahead
/// (see [`ReadAhead::advance`]), each with a duplicated descriptor. Ranges whose descriptor
/// cannot be duplicated are left out (cold ones then read on the shard as before).
pub fn cold_ranges<'a>(
    ranges: impl Iterator<Item = (&'a File, u64, u64)>,
    read_ahead: &mut ReadAhead,
    cold: &mut Vec<ColdRange>,
    ahead: &mut Vec<ColdRange>,
) {
    for (file, offset, len) in ranges {
        let is_cold = push_if_cold(file, offset, len, cold);
        if let Some((at, n)) = read_ahead.advance(file.as_raw_fd(), offset + len, is_cold) {
            push_dup(file, at, n, ahead);
        }
    }
}

/// Appends the range (with a duplicated descriptor) to `cold` when the kernel says it is not
/// wholly cached; returns whether it is cold.
pub fn push_if_cold(file: &File, offset: u64, len: u64, cold: &mut Vec<ColdRange>) -> bool {
    let is_cold = is_cached(file, offset, len) == Some(false);
    if is_cold {
        push_dup(file, offset, len, cold);
    }
    is_cold
}

fn push_dup(file: &File, offset: u64, len: u64, out: &mut Vec<ColdRange>) {
    match file.try_clone() {
        Ok(file) => out.push(ColdRange { file, offset, len }),
        Err(e) => tracing::debug!(error = %e, "dup of a segment descriptor failed"),
    }
}

/// One connection's read-ahead edges: per segment file descriptor, the file offset up to which
/// the kernel has been asked to read ahead. Fixed capacity, no allocation after [`ReadAhead::new`].
pub struct ReadAhead {
    /// (descriptor, edge), most recently used first.
    edges: Vec<(RawFd, u64)>,
}

impl Default for ReadAhead {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadAhead {
    pub fn new() -> ReadAhead {
        ReadAhead {
            edges: Vec::with_capacity(READ_AHEAD_FILES),
        }
    }

    /// Notes that bytes of the file `fd` up to `end` are about to be sent (`cold`: they were not
    /// cached, so an edge remembered for the descriptor says nothing: a closed segment's number
    /// may have been reused). Returns the range `(offset, len)` to ask the kernel to read ahead
    /// when `end` has come within half a window of the edge: from the edge (or `end`, whichever
    /// is further) up to `end + WARM_AHEAD_BYTES`, which becomes the new edge.
    pub fn advance(&mut self, fd: RawFd, end: u64, cold: bool) -> Option<(u64, u64)> {
        let i = self.edges.iter().position(|&(f, _)| f == fd);
        let edge = match i {
            Some(i) => {
                let e = self.edges.remove(i);
                if cold {
                    0
                } else {
                    e.1
                }
            }
            None => {
                if self.edges.len() == READ_AHEAD_FILES {
                    self.edges.pop();
                }
                0
            }
        };
        let want = end + WARM_AHEAD_BYTES;
        if end + WARM_AHEAD_BYTES / 2 <= edge {
            self.edges.insert(0, (fd, edge));
            return None;
        }
        let from = edge.max(end);
        self.edges.insert(0, (fd, want));
        debug_assert!(self.edges.len() <= READ_AHEAD_FILES);
        debug_assert!(want > from);
        Some((from, want - from))
    }
}

/// Asks the kernel to read every range ahead into the page cache (`posix_fadvise(WILLNEED)`:
/// it allocates the pages and submits the reads, so run it on the blocking thread).
pub fn advise(ranges: &[ColdRange]) {
    for r in ranges {
        // SAFETY: posix_fadvise on a descriptor we own; advisory only, the result is ignored
        // (read-ahead is an optimization).
        unsafe {
            libc::posix_fadvise(
                r.file.as_raw_fd(),
                r.offset as libc::off_t,
                r.len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
}

/// Largest record [`read_in_record`] reads in (a sanity bound on the size it reads first).
const MAX_RECORD_READ_IN: u64 = 64 * 1024 * 1024;

/// Reads the stored record that starts at `at.offset` into the page cache: first its 4-byte
/// TOTALSIZE, then the whole record (blocking: run it on the blocking thread; `at.len` is
/// ignored). For a record known only by its offset (a send-back). Returns the bytes read.
pub fn read_in_record(at: ColdRange) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut size = [0u8; 4];
    at.file.read_exact_at(&mut size, at.offset)?;
    let len = u64::from(u32::from_be_bytes(size));
    if !(4..=MAX_RECORD_READ_IN).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record size {len} at {} out of range", at.offset),
        ));
    }
    read_in(&[ColdRange { len, ..at }])
}

/// Reads every range into the page cache (blocking: run it on the blocking thread). Returns the
/// bytes read.
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
        let mut ahead = Vec::new();
        cold_ranges(
            [(f, 8192u64, 100_000u64), (f, 500_000, 1)].into_iter(),
            &mut ReadAhead::new(),
            &mut out,
            &mut ahead,
        );
        // The first chunk asks for a window past itself. The second lies inside that window
        // and asks only when it is cold (a cold chunk resets the edge).
        let second_cold = out.iter().any(|r| r.offset == 500_000);
        let mut want = vec![(108_192, WARM_AHEAD_BYTES)];
        if second_cold {
            want.push((500_001, WARM_AHEAD_BYTES));
        }
        assert_eq!(
            ahead.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(),
            want
        );
        out
    }

    const W: u64 = WARM_AHEAD_BYTES;

    /// A file's first chunk asks for a window past it; chunks that end more than half a window
    /// before the edge ask nothing; the first that ends within half a window asks for what lies
    /// between the edge and a window past its end.
    #[test]
    fn read_ahead_asks_for_the_next_window_once_half_the_last_is_left() {
        let mut ra = ReadAhead::new();
        assert_eq!(ra.advance(7, 1000, false), Some((1000, W)));
        let edge = 1000 + W;
        assert_eq!(ra.advance(7, 5000, false), None);
        assert_eq!(
            ra.advance(7, edge - W / 2, false),
            None,
            "exactly half left"
        );
        let end = edge - W / 2 + 1;
        assert_eq!(ra.advance(7, end, false), Some((edge, end + W - edge)));
        assert_eq!(ra.advance(7, end + 1, false), None);
        // A chunk past the edge (the consumer outran the disk) asks from its own end.
        let far = end + 3 * W;
        assert_eq!(ra.advance(7, far, false), Some((far, W)));
    }

    /// A cold chunk means the remembered edge was wrong (e.g. a reused descriptor number): it
    /// asks for a window past itself whatever the edge said.
    #[test]
    fn a_cold_chunk_resets_the_edge() {
        let mut ra = ReadAhead::new();
        assert_eq!(ra.advance(3, 10 * W, false), Some((10 * W, W)));
        assert_eq!(ra.advance(3, 4096, false), None, "far behind the edge");
        assert_eq!(ra.advance(3, 4096, true), Some((4096, W)));
        assert_eq!(ra.advance(3, 8192, false), None);
    }

    /// Edges are kept per descriptor, for the most recently used few; a file pushed out starts
    /// over with a window past its next chunk.
    #[test]
    fn read_ahead_edges_are_per_file_and_bounded() {
        let mut ra = ReadAhead::new();
        for fd in 0..READ_AHEAD_FILES as RawFd {
            assert_eq!(ra.advance(fd, 100, false), Some((100, W)));
        }
        for fd in 0..READ_AHEAD_FILES as RawFd {
            assert_eq!(ra.advance(fd, 200, false), None, "file {fd} remembered");
        }
        assert_eq!(ra.advance(99, 100, false), Some((100, W)));
        assert_eq!(ra.edges.len(), READ_AHEAD_FILES);
        // Descriptor 0 was the least recently used: forgotten.
        assert_eq!(ra.advance(0, 300, false), Some((300, W)));
        assert_eq!(
            ra.advance(99, 300, false),
            None,
            "the newcomer is remembered"
        );
    }
}
