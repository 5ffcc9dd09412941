//! Page faults off the shard thread for the large in-memory tables (IndexFile hash slots and
//! entries, ConsumeQueue file buffers).
//!
//! These tables are reserved whole up front and filled front to back (the index's hash slots
//! at random). Measured at 1.5-2.6 M msg/s of 100 B produce on the 2-vCPU guest, the first
//! touches of fresh table memory by `IndexFile::put` and `ConsumeQueue::push_unit` were
//! 13-16 % of the shard's time (`clear_page_erms` under the page fault). Huge pages alone did
//! not change that share (the cost is zeroing fresh memory, which on a VM also makes the host
//! back it), so the faults are taken ahead of the writer by one process-wide thread:
//! `madvise(MADV_POPULATE_WRITE)` maps zeroed pages without changing any byte the program
//! sees, and the shard then writes into memory that is already there. On top of that the
//! tables ask for transparent huge pages (`MADV_HUGEPAGE`): fewer faults and fewer TLB misses
//! on the random slot lookups.
//!
//! The advice is best effort: if the thread cannot start, its queue is full or the kernel
//! lacks the call, the shard takes the faults itself as before. Nothing here changes
//! contents, so no failure can corrupt data.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

/// Size of an x86-64 / aarch64 (4 KiB granule) transparent huge page.
const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// How far ahead of a table's write position its memory is populated.
pub(crate) const AHEAD_BYTES: usize = 16 * 1024 * 1024;
/// Requests the prefault thread may have queued; beyond that, requests are dropped.
const QUEUE_DEPTH: usize = 1024;

/// Asks the kernel to back the whole 2 MiB pages inside `v`'s reserved capacity with huge
/// pages. The Vec must never grow past its capacity afterwards (the advice would stay on
/// freed memory: harmless, but useless).
pub(crate) fn advise_huge<T>(v: &mut Vec<T>) {
    let (start, len) = span(v);
    advise_huge_range(start, len);
}

/// Whether [`advise_huge_range`] asks for huge pages at all (`StoreConfig::huge_pages`, off by
/// default). Process-wide: every shard of a process opens its store with the same config.
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Turns the huge-page advice on or off for tables and write buffers allocated from now on.
///
/// Off by default since session 16. A huge page is zeroed in one page fault, and on a kernel
/// without full preemption (PREEMPT_NONE, this VM's and most distributions' server default)
/// nothing else runs on that CPU until it is done: ~4 ms per 2 MiB on the 2-vCPU guest, where
/// fresh memory is slow. The prefault thread shares the shards' CPUs, so a shard woken
/// meanwhile waited up to 4 ms, and for the first seconds after a start (tables, pool, tail
/// cache all fresh) the zeroing took a third of a CPU. Measured with 4 KiB pages instead
/// (perf/results/session16-2026-12-05.md): 100 B at 87k msg/s open loop, p99 4-15 ms -> 0.5-0.7
/// ms and the shard's CPU 65 % -> 37 %; produce 100 B batch 100, 3 alternating pairs, 2.53 /
/// 2.83 / 2.82 M -> 2.90 / 2.97 / 2.89 M msg/s.
pub fn set_huge_pages(on: bool) {
    HUGE_PAGES.store(on, Ordering::Relaxed);
}

/// Turns transparent huge pages off for the whole process (`StoreConfig::disable_thp`): from
/// now on every page fault of the process maps a 4 KiB page. Pages already huge stay so.
pub fn disable_process_thp() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE with arg2 = 1 sets a flag on the calling process's memory
    // descriptor; the remaining arguments must be zero. It reads and writes no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether transparent huge pages are off for this process (`PR_GET_THP_DISABLE`).
#[cfg(test)]
pub(crate) fn process_thp_disabled() -> bool {
    // SAFETY: PR_GET_THP_DISABLE takes no pointer and only returns the flag (0 or 1).
    let rc = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    rc == 1
}

/// [`advise_huge`] for any live allocation `[start, start + len)` (write buffers too): only
/// the whole 2 MiB pages inside it are advised. Nothing while huge pages are off
/// ([`set_huge_pages`]).
pub(crate) fn advise_huge_range(start: usize, len: usize) {
    if !HUGE_PAGES.load(Ordering::Relaxed) {
        return;
    }
    let first = start.next_multiple_of(HUGE_PAGE_BYTES);
    let end = (start + len) & !(HUGE_PAGE_BYTES - 1);
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside the caller's live allocation and is page aligned;
    // MADV_HUGEPAGE only changes how the kernel backs those pages, never the bytes the
    // program sees, so no Rust reference is affected. Failure is harmless (ignored).
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

/// Populates a table's reserved capacity ahead of its writer. One per table.
#[derive(Debug, Default)]
pub(crate) struct Ahead {
    /// Bytes from the start of the allocation already handed to the prefault thread.
    requested: usize,
}

impl Ahead {
    /// Call after the table grew (cheap when nothing is due): once the write position is
    /// within half a window of the populated end, the next window is requested.
    #[inline]
    pub(crate) fn after_write<T>(&mut self, v: &Vec<T>) {
        let written = v.len() * std::mem::size_of::<T>();
        if written + AHEAD_BYTES / 2 >= self.requested {
            self.request_next(v);
        }
    }

    #[cold]
    fn request_next<T>(&mut self, v: &Vec<T>) {
        let (start, cap) = span(v);
        if self.requested >= cap {
            return;
        }
        let written = v.len() * std::mem::size_of::<T>();
        let from = self.requested.max(written);
        let to = (from + AHEAD_BYTES).min(cap);
        self.requested = to;
        populate(start + from, to - from);
    }
}

/// Hands `[addr, addr + len)` to the prefault thread. The range must lie inside a live
/// allocation when this is called; if that allocation is freed before the thread gets to
/// it, the call fails or touches whatever is mapped there now, without changing its bytes.
pub(crate) fn populate(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    let Some(tx) = sender() else { return };
    // Counted before the send so that the thread never takes one off first.
    BACKLOG.fetch_add(1, Ordering::Relaxed);
    match tx.try_send((addr, len)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            BACKLOG.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Requests handed to the prefault thread and not finished yet (process-wide).
static BACKLOG: AtomicUsize = AtomicUsize::new(0);

/// Population requests queued or in progress in this process: 0 once the memory asked for so
/// far (tables' next windows, a store's preallocated write buffers) is mapped. Lets a
/// benchmark start timing a freshly opened store once it is as warm as one that has been up
/// for a moment.
pub fn backlog() -> usize {
    BACKLOG.load(Ordering::Relaxed)
}

fn span<T>(v: &Vec<T>) -> (usize, usize) {
    (
        v.as_ptr() as usize,
        v.capacity().saturating_mul(std::mem::size_of::<T>()),
    )
}

fn sender() -> Option<&'static SyncSender<(usize, usize)>> {
    static TX: OnceLock<Option<SyncSender<(usize, usize)>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<(usize, usize)>(QUEUE_DEPTH);
        let spawned = std::thread::Builder::new()
            .name("ramjet-prefault".into())
            .spawn(move || {
                unpin_to_process_cpus();
                lower_priority();
                while let Ok((addr, len)) = rx.recv() {
                    populate_now(addr, len);
                    BACKLOG.fetch_sub(1, Ordering::Relaxed);
                }
            });
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "prefault thread did not start; table pages fault on the shard");
                None
            }
        }
    })
    .as_ref()
}

/// The thread is started by whichever shard first needs it and would inherit that shard's
/// pinning, putting all prefault work on one shard's core. It takes the process's own CPU
/// set instead (the main thread's, which `ramjet` never pins), so the kernel runs it where
/// there is room: background work, like the kernel's own workers.
fn unpin_to_process_cpus() {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the main thread
    // (pid == its tid) and sched_setaffinity(0, ..) applies it to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}

/// Nice value of the prefault thread. Its work is ahead of need, so it should use CPU time
/// nobody else wants: at the default priority, populating a 16 MiB window (~20 ms of page
/// zeroing on the 2-vCPU guest, where fresh memory is slow) took a whole time slice from the
/// load generator or the shard, and a 1 KiB sync produce at 70k msg/s showed a 30-45 ms
/// latency spike every ~420k messages (the index entries table's window).
const PREFAULT_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling weight to [`PREFAULT_NICE`]: a woken shard or
/// client thread then preempts it at once, and it still gets about a tenth of a contended
/// CPU, so it finishes its (short) calls even on a saturated machine. Not SCHED_IDLE: a
/// starved thread inside `madvise` holds the process's mmap lock for reading, which would
/// stall any munmap on a shard until an idle moment.
fn lower_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and who == 0 changes the nice value of the
    // calling thread only (Linux keeps it per thread); it touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, PREFAULT_NICE) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "prefault thread keeps the default priority"
        );
    }
}

/// Bytes one `madvise` call of the prefault thread populates when huge pages are off. The
/// thread shares CPUs with the shards and the load generator; with PREEMPT_NONE a thread
/// already on the CPU is only switched out at a tick or when it gives up the CPU, and one 2 MiB
/// call took 1-2.5 ms on the 2-vCPU guest (`perf sched`: the generator's send lag). 256 KiB
/// (64 pages) is ~0.1 ms there, and the thread yields after each.
const POPULATE_PIECE_BYTES: usize = 256 * 1024;

fn populate_now(addr: usize, len: usize) {
    let page = 4096usize;
    let first = addr.next_multiple_of(page);
    let end = (addr + len) & !(page - 1);
    // With huge pages one call per huge page (its fault cannot be split); else small pieces.
    let piece = if HUGE_PAGES.load(Ordering::Relaxed) {
        HUGE_PAGE_BYTES
    } else {
        POPULATE_PIECE_BYTES
    };
    let mut at = first;
    while at < end {
        let piece_end = (at + 1).next_multiple_of(piece).min(end);
        // SAFETY: MADV_POPULATE_WRITE faults in writable pages for the range without writing
        // to them: a page that is present keeps its bytes, a missing one is mapped zeroed,
        // exactly what the owner would get on its own first touch. No Rust reference is
        // created and no byte changes, so a concurrent writer on the shard thread is
        // unaffected; a range that was freed meanwhile makes the call fail (ignored).
        unsafe {
            libc::madvise(
                at as *mut libc::c_void,
                piece_end - at,
                libc::MADV_POPULATE_WRITE,
            );
        }
        at = piece_end;
        // Background work: whoever else wants this CPU goes first.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_and_populated_tables_keep_contents_and_capacity() {
        let mut v: Vec<u32> = vec![7u32; 3 * HUGE_PAGE_BYTES / 4];
        let cap = v.capacity();
        advise_huge(&mut v);
        populate_now(v.as_ptr() as usize, v.len() * 4);
        assert_eq!(v.capacity(), cap);
        assert_eq!(v.len(), 3 * HUGE_PAGE_BYTES / 4);
        assert!(v.iter().all(|&x| x == 7));

        let mut w: Vec<u8> = Vec::with_capacity(3 * AHEAD_BYTES);
        advise_huge(&mut w);
        let mut ahead = Ahead::default();
        for i in 0..(AHEAD_BYTES + 12345) {
            w.push((i % 251) as u8);
            ahead.after_write(&w);
        }
        // The window was requested ahead of the writer and never past the capacity.
        assert!(ahead.requested >= w.len() + AHEAD_BYTES / 2);
        assert!(ahead.requested <= w.capacity());
        assert!(w.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(w.capacity(), 3 * AHEAD_BYTES);
    }
}
