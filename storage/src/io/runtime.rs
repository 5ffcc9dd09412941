//! Tasks and timers of the shard's executor.

use std::future::Future;
use std::time::Duration;

/// A task running on the current executor; dropping the handle leaves it running.
pub struct BackgroundTask<T> {
    task: Option<glommio::Task<T>>,
}

impl<T> BackgroundTask<T> {
    /// Waits for the task's result.
    pub async fn join(mut self) -> Option<T> {
        match self.task.take() {
            Some(t) => Some(t.await),
            None => None,
        }
    }
}

impl<T> Drop for BackgroundTask<T> {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

/// Spawns `fut` on the current glommio executor. Panics if called outside one (a programming
/// error: the store is only ever used from its shard's executor).
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> BackgroundTask<T> {
    BackgroundTask {
        task: Some(glommio::spawn_local(fut)),
    }
}

/// Like [`spawn`], in a task queue of its own that glommio treats as latency-sensitive: while
/// it has runnable work, the executor stops running the other queues after at most `latency`
/// and polls its rings (`StoreConfig::flusher_latency_us` for the CommitLog flusher). Without
/// it, a shard kept busy by connection tasks only looks at I/O completions when its run queue
/// empties or every 100 ms (glommio's preempt timer), and the CommitLog flusher fell behind
/// the appends. Panics only if glommio refuses the queue it just created (a programming error,
/// like calling it outside an executor).
pub fn spawn_urgent<T: 'static>(
    name: &str,
    latency: Duration,
    fut: impl Future<Output = T> + 'static,
) -> BackgroundTask<T> {
    let tq = glommio::executor().create_task_queue(
        glommio::Shares::default(),
        glommio::Latency::Matters(latency),
        name,
    );
    match glommio::spawn_local_into(fut, tq) {
        Ok(task) => BackgroundTask { task: Some(task) },
        Err(e) => panic!("spawning into a task queue created just now failed: {e}"),
    }
}

/// Runs blocking work (a small file written with fsync) on the executor's blocking thread and
/// waits for it without stalling the shard.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// Sleeps on the executor's timer.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Lets other tasks of the executor run if this one has used its time slice.
pub async fn yield_now() {
    glommio::yield_if_needed().await
}

/// Runs `fut` to completion on a fresh single-threaded glommio executor on the calling thread
/// (tests, tools). Fails if the executor cannot start (io_uring blocked, locked memory).
pub fn block_on<T>(fut: impl Future<Output = T>) -> std::io::Result<T> {
    block_on_with_preempt(DEFAULT_PREEMPT_TIMER, fut)
}

/// Like [`block_on`], with the executor's preempt timer set to `preempt` (see
/// [`DEFAULT_PREEMPT_TIMER`]).
pub fn block_on_with_preempt<T>(
    preempt: Duration,
    fut: impl Future<Output = T>,
) -> std::io::Result<T> {
    block_on_pinned(preempt, None, fut)
}

/// Like [`block_on_with_preempt`], with the executor's thread pinned to `cpu` when given, as a
/// broker pins each shard (`--cpus`): profiling tools measure the store in the layout it runs
/// in.
pub fn block_on_pinned<T>(
    preempt: Duration,
    cpu: Option<usize>,
    fut: impl Future<Output = T>,
) -> std::io::Result<T> {
    let placement = cpu.map_or(glommio::Placement::Unbound, glommio::Placement::Fixed);
    let ex = glommio::LocalExecutorBuilder::new(placement)
        .preempt_timer(preempt)
        .make()
        .map_err(super::to_io_error)?;
    Ok(ex.run(async move {
        install_wake_guard();
        fut.await
    }))
}

/// How long a glommio executor runs task queues before it polls its rings again, when no
/// latency-sensitive queue asks for less: glommio's own default, which the broker's shards
/// use too (`runtime.preempt_timer_us`).
///
/// What it decides: glommio hands file writes and fdatasyncs to the kernel only when it polls
/// its rings, and it polls them only between runs of task queues (every queue idle, a
/// completion on the latency ring, or this timer). Under `flush = sync` a durable point that
/// moves wakes thousands of appenders at once, ~1 us of CPU each, and the flusher's next
/// fdatasync, queued while they run, waits for them (block trace of `sync_loop`, 4 KiB x 4096
/// appenders: 1-2.6 ms gaps with the disk idle, 16 % of the run). A 200 us timer gave
/// `sync_loop` +1.4 to +6.5 % in five sittings (6-8 alternating runs each) but cost the
/// broker's 1 KiB `flush = sync` produce at 97k msg/s a quarter more p50 (0.52-0.54 ->
/// 0.66-0.78 ms, 4 alternating runs) and b100 ~3 %, so it stays a knob
/// (perf/results/session21-2026-12-06.md).
pub const DEFAULT_PREEMPT_TIMER: Duration = Duration::from_millis(100);

/// How often the wake guard nudges every executor that installed it.
pub const WAKE_GUARD_PERIOD: Duration = Duration::from_millis(50);

/// Bounds a lost wake-up of the calling glommio executor to [`WAKE_GUARD_PERIOD`].
///
/// Why: on the 2-vCPU Firecracker guest (kernel 6.18, glommio 0.9) an executor was seen
/// asleep in `io_uring_enter` (waiting for one completion on its main ring, rings linked by a
/// poll) while its timers had expired: the full-disk storage test hung for 25 minutes, and in
/// a loop under write-back pressure about 1 run in 7 hung. A signal (attaching gdb) made the
/// `io_uring_enter` return and the executor carried on at once, so the work was ready and only
/// the wake-up was lost. Every shard relies on its timers (flush interval, retries, long-poll
/// expiry), so a lost timer wake-up is a stalled shard.
///
/// How: one process-wide thread writes a byte every [`WAKE_GUARD_PERIOD`] into one end of a
/// socket pair per executor; a task of that executor reads the other end through glommio, so
/// each nudge is a completion on the executor's main ring, which ends any sleep. A busy shard
/// pays 20 small reads a second. The guard ends when its executor ends (the reader's end
/// closes and the writer drops the socket on the next failed write). Failures to set it up
/// are logged and leave the executor as it was.
pub fn install_wake_guard() {
    if let Err(e) = try_install_wake_guard() {
        tracing::warn!(error = %e, "executor wake guard not installed");
    }
}

/// Nudges read by all executors of the process so far.
static WAKE_GUARD_NUDGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Nudges the wake guard delivered to executors of this process so far.
pub fn wake_guard_nudges() -> u64 {
    WAKE_GUARD_NUDGES.load(std::sync::atomic::Ordering::Relaxed)
}

fn try_install_wake_guard() -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream as StdUnixStream;
    let (ours, theirs) = StdUnixStream::pair()?;
    ours.set_nonblocking(true)?;
    theirs.set_nonblocking(true)?;
    wake_guard_registry()
        .lock()
        .map_err(|_| std::io::Error::other("wake guard registry poisoned"))?
        .push(theirs);
    let fd = ours.into_raw_fd();
    // SAFETY: `fd` was just released by `into_raw_fd`, so it is an open, non-blocking Unix
    // stream socket that nothing else owns; glommio's `UnixStream` takes ownership and closes
    // it on drop.
    let stream = unsafe { <glommio::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    glommio::spawn_local(async move {
        use futures_lite::AsyncReadExt;
        let mut stream = stream;
        let mut buf = [0u8; 64];
        // Each read completes on a nudge; the bytes carry nothing but their count.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            WAKE_GUARD_NUDGES.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .detach();
    Ok(())
}

/// The sockets the nudging thread writes to; the thread starts with the registry. If it cannot
/// start, that is logged and the registered sockets are simply never written (the executors
/// run as they would without a guard).
fn wake_guard_registry() -> &'static std::sync::Mutex<Vec<std::os::unix::net::UnixStream>> {
    use std::sync::{Mutex, OnceLock};
    static REGISTRY: OnceLock<Mutex<Vec<std::os::unix::net::UnixStream>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("ramjet-wake-guard".into())
            .spawn(|| loop {
                std::thread::sleep(WAKE_GUARD_PERIOD);
                let Some(reg) = REGISTRY.get() else { continue };
                let Ok(mut socks) = reg.lock() else { return };
                socks.retain(nudge);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "executor wake guard thread not started");
        }
        Mutex::new(Vec::new())
    })
}

/// Writes one byte to `s`; false when its executor is gone (the socket is then dropped).
fn nudge(s: &std::os::unix::net::UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let byte = 0u8;
    // SAFETY: `s` is an open socket borrowed for the duration of the call and `byte` is a live
    // one-byte buffer; MSG_NOSIGNAL turns a closed peer into EPIPE instead of a SIGPIPE.
    let rc = unsafe {
        libc::send(
            s.as_raw_fd(),
            std::ptr::from_ref(&byte).cast(),
            1,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    // A full socket buffer means the reader is behind: it is awake anyway. Anything else
    // (EPIPE, ECONNRESET): the executor ended and closed its end.
    rc >= 0 || std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// `IORING_REGISTER_IOWQ_AFF` of `io_uring_register(2)` (Linux >= 5.14).
const IORING_REGISTER_IOWQ_AFF: libc::c_uint = 17;
/// Size of `struct io_uring_params` (`io_uring_setup(2)`).
const IO_URING_PARAMS_BYTES: usize = 120;

/// Moves the io_uring worker threads of the calling thread (its io-wq: the kernel threads that
/// run the requests it cannot issue inline, which for a shard are every fdatasync and most
/// CommitLog writes) onto `cpus`, present and future workers alike.
///
/// Why: io-wq workers are created with the affinity of the thread that submits, so a shard
/// pinned to CPU c had its fdatasync run on CPU c too, where it waited for the shard's own
/// time slice to end (`runtime.shard_slice_us` shortened that wait, it did not remove it), and
/// io-wq workers refuse `sched_setaffinity`. 1 KiB `flush = sync` produce at 92k msg/s, one
/// broker per run, workers on the shard's CPU vs on the other one, two sets of 4 and 5
/// alternating rounds (perf/results/session23-2026-12-06.md): p50 0.50-0.54 -> 0.44-0.48 ms
/// and 0.46-0.49 -> 0.42-0.45 ms; the closed loop 187-215k -> 201-227k msg/s; b100 and e2e
/// unchanged.
///
/// How: `IORING_REGISTER_IOWQ_AFF` acts on the calling thread's io_uring context whatever
/// ring it is issued on, so it goes through a one-entry ring made for the call and closed
/// after it (glommio does not hand out its own).
pub fn set_io_worker_cpus(cpus: &[usize]) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let limit = libc::CPU_SETSIZE as usize;
    if cpus.is_empty() || cpus.iter().any(|&c| c >= limit) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("io worker CPUs {cpus:?}: need at least one, each below {limit}"),
        ));
    }
    // SAFETY: an all-zero `cpu_set_t` is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` is below CPU_SETSIZE (checked above), so the bit lies inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let mut params = [0u8; IO_URING_PARAMS_BYTES];
    // SAFETY: `params` is a zeroed `struct io_uring_params` (no flags, no features asked for)
    // that the kernel fills during the call; one entry is the smallest ring.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns; the
    // `OwnedFd` closes it when this function returns.
    let ring = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: `set` is an initialized `cpu_set_t` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_REGISTER_IOWQ_AFF,
            &set as *const libc::cpu_set_t,
            std::mem::size_of::<libc::cpu_set_t>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The io workers of the executor's thread end up on the CPU asked for: an fdatasync (which
    /// io_uring always hands to a worker) runs in a thread named `iou-wrk-<tid>` whose allowed
    /// CPUs are exactly that one. Bad CPU lists are refused before any syscall.
    #[test]
    fn io_workers_run_on_the_cpus_asked_for() {
        assert!(set_io_worker_cpus(&[]).is_err());
        assert!(set_io_worker_cpus(&[libc::CPU_SETSIZE as usize]).is_err());
        let online: Vec<usize> = glommio::CpuSet::online()
            .expect("online CPUs")
            .into_iter()
            .map(|l| l.cpu)
            .collect();
        let target = *online.iter().max().expect("a CPU");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        let (tid, allowed) = block_on(async move {
            let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
            let tid = me.file_name().expect("tid").to_string_lossy().into_owned();
            set_io_worker_cpus(&[target]).expect("IORING_REGISTER_IOWQ_AFF");
            let f = glommio::io::DmaFile::create(&path).await.expect("create");
            f.fdatasync().await.expect("fdatasync");
            // The worker that ran it idles for seconds before it exits: it is there now.
            let mut allowed = Vec::new();
            for task in std::fs::read_dir("/proc/self/task")
                .expect("tasks")
                .flatten()
            {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if comm.trim() != format!("iou-wrk-{tid}") {
                    continue;
                }
                let status =
                    std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
                    allowed.push(l["Cpus_allowed_list:".len()..].trim().to_string());
                }
            }
            f.close().await.expect("close");
            (tid, allowed)
        })
        .expect("executor");
        assert!(!allowed.is_empty(), "no io worker of thread {tid} found");
        for a in &allowed {
            assert_eq!(a, &target.to_string(), "worker of {tid} allowed on {a}");
        }
    }

    /// An executor started by `block_on` gets the nudges while it sleeps on a timer: each one
    /// is a completion on its ring, so a lost timer wake-up lasts one period at most.
    #[test]
    fn a_sleeping_executor_is_nudged_every_period() {
        let before = wake_guard_nudges();
        block_on(sleep(WAKE_GUARD_PERIOD * 8)).expect("executor");
        let got = wake_guard_nudges() - before;
        assert!(
            (3..=40).contains(&got),
            "{got} nudges in 8 periods of {WAKE_GUARD_PERIOD:?}"
        );
    }
}
