//! Shard runtime: one glommio `LocalExecutor` per shard, pinned to its own CPU.
//!
//! This is the only module of ramjet-net that names glommio. Everything else uses the small
//! surface re-exported here (spawning, timers, TCP, local channels), so that moving to another
//! thread-per-core runtime stays a change to this file.
//!
//! Start-up checks: io_uring may be missing or blocked by a seccomp profile, and glommio locks
//! memory for its registered I/O buffers. Both are checked before any executor starts and fail
//! with an [`RuntimeError`] that says what to do, never a panic trace.

use std::future::Future;
use std::thread::JoinHandle;
use std::time::Duration;

pub use glommio::channels::local_channel::{
    new_unbounded as local_unbounded, LocalReceiver, LocalSender,
};
pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::task::JoinHandle as TaskHandle;
pub use glommio::timer::Timer;
pub use ramjet_storage::io::set_io_worker_cpus;

/// Bytes of io memory glommio registers per executor (its default is 10 MiB). Registered buffers
/// are locked memory, so without CAP_IPC_LOCK every executor needs this much `ulimit -l`.
pub const DEFAULT_IO_MEMORY_BYTES: usize = 512 * 1024;
/// io_uring submission queue depth per executor.
pub const RING_DEPTH: usize = 128;
/// Linux capability number of CAP_IPC_LOCK (locked memory beyond RLIMIT_MEMLOCK).
const CAP_IPC_LOCK_BIT: u32 = 14;
/// Blocking threads per shard executor (file syncs, renames, unlinks off the shard thread).
const BLOCKING_THREADS: usize = 2;

/// What can fail while starting shards.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "io_uring is not available ({0}). ramjet needs Linux >= 5.8 with io_uring enabled. In a \
         container, the default seccomp profile blocks io_uring_setup: run with \
         `--security-opt seccomp=unconfined` (docker/podman) or a profile that allows \
         io_uring_setup, io_uring_enter and io_uring_register; also check \
         /proc/sys/kernel/io_uring_disabled is 0"
    )]
    IoUringUnavailable(std::io::Error),
    #[error(
        "not enough locked memory: RLIMIT_MEMLOCK is {have_bytes} bytes, {shards} executor(s) \
         need {need_bytes} bytes ({per_executor_bytes} each) for io_uring registered buffers. \
         Raise it with `ulimit -l {need_kib}` (or LimitMEMLOCK= in the systemd unit, or \
         --ulimit memlock=-1 for docker), run with CAP_IPC_LOCK, or lower `runtime.io_memory_bytes`"
    )]
    LockedMemory {
        have_bytes: u64,
        need_bytes: u64,
        need_kib: u64,
        per_executor_bytes: u64,
        shards: usize,
    },
    #[error("cpu {cpu} given in --cpus does not exist or is offline (online cpus: {online:?})")]
    NoSuchCpu { cpu: usize, online: Vec<usize> },
    #[error(
        "--cpus lists {cpus} cpu(s) but {shards} shard(s) were asked for; give one cpu per shard"
    )]
    CpuCountMismatch { cpus: usize, shards: usize },
    #[error("invalid cpu list {0:?}: expected comma-separated numbers or ranges like 0-3,6")]
    BadCpuList(String),
    #[error("shard count must be at least 1, got {0}")]
    NoShards(usize),
    #[error("could not start executor thread for {name}: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
    #[error("could not create executor {name}: {message}")]
    Executor { name: String, message: String },
    #[error("executor thread {name} panicked")]
    Panicked { name: String },
}

/// Where a shard's executor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Pinned to this CPU.
    Cpu(usize),
    /// Not pinned (helper executors such as the embedded name server).
    Unbound,
}

/// Runtime knobs (the `[runtime]` config section feeds these).
#[derive(Debug, Clone, Copy)]
pub struct ExecutorOptions {
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    /// Keep polling this long after the last event before sleeping in the kernel (0: sleep at
    /// once). Polling trades an idle core's CPU for wake-up latency.
    pub spin_before_park: Duration,
    /// Scheduler time slice a pinned (shard) executor asks the kernel for, see
    /// [`request_time_slice`]; `None` leaves the kernel's default.
    pub shard_slice: Option<Duration>,
    /// How long the executor runs task queues before it polls its rings (submits queued file
    /// writes and fdatasyncs, reaps completions) when no latency-sensitive queue asks for
    /// less; see `ramjet_storage::io::DEFAULT_PREEMPT_TIMER`.
    pub preempt_timer: Duration,
    /// A pinned (shard) executor moves its io_uring worker threads (io-wq: the kernel's
    /// threads for the file writes and fdatasyncs it cannot issue inline) to the online CPUs
    /// that run no shard, see [`set_io_worker_cpus`]; with none, or off, they share the
    /// shard's CPU.
    pub io_workers_off_shard: bool,
    /// The CPUs the process's shards are pinned to (the executor's own counts anyway).
    pub shard_cpus: CpuMask,
}

/// A set of CPU numbers below [`CpuMask::LIMIT`], `Copy` so that it fits [`ExecutorOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuMask([u64; 16]);

impl CpuMask {
    /// One past the largest CPU number a mask holds (as the kernel's `CPU_SETSIZE`).
    pub const LIMIT: usize = 1024;

    /// The set of `cpus`; numbers at or above [`CpuMask::LIMIT`] are left out.
    pub fn of(cpus: impl IntoIterator<Item = usize>) -> CpuMask {
        let mut m = CpuMask::default();
        for c in cpus {
            if c < Self::LIMIT {
                m.0[c / 64] |= 1 << (c % 64);
            }
        }
        m
    }

    pub fn contains(&self, cpu: usize) -> bool {
        cpu < Self::LIMIT && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }
}

/// Where a shard pinned to `own` puts its io_uring workers: the `online` CPUs that run no
/// shard (`shards`, `own` included), in order. Empty when every online CPU runs a shard: the
/// workers then stay on the shard's own CPU (moving them onto another shard's CPU cost 100 B
/// batch produce in the two-shard layout 8 %: perf/results/session23-2026-12-06.md).
pub fn spare_cpus(online: &[usize], shards: CpuMask, own: usize) -> Vec<usize> {
    online
        .iter()
        .copied()
        .filter(|&c| c != own && !shards.contains(c))
        .collect()
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        Self {
            io_memory_bytes: DEFAULT_IO_MEMORY_BYTES,
            ring_depth: RING_DEPTH,
            spin_before_park: Duration::ZERO,
            shard_slice: Some(DEFAULT_SHARD_SLICE),
            preempt_timer: ramjet_storage::io::DEFAULT_PREEMPT_TIMER,
            io_workers_off_shard: true,
            shard_cpus: CpuMask::default(),
        }
    }
}

/// Bounds of a custom fair-class slice (Linux `sched_setattr`, kernel >= 6.12).
pub const SHARD_SLICE_MIN: Duration = Duration::from_micros(100);
pub const SHARD_SLICE_MAX: Duration = Duration::from_millis(100);
/// Default of `runtime.shard_slice_us`: the shortest slice the kernel accepts.
pub const DEFAULT_SHARD_SLICE: Duration = SHARD_SLICE_MIN;

/// `struct sched_attr` of `sched_setattr(2)` (SCHED_ATTR_SIZE_VER1, 56 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Asks the kernel for a time slice of `slice` for the calling thread (SCHED_OTHER, nice 0,
/// `sched_runtime` = slice: EEVDF's custom slice, Linux >= 6.12; older kernels accept and
/// ignore it). Threads it creates afterwards inherit the slice, io_uring's io-wq workers
/// included. Returns the slice the kernel reports in `/proc/thread-self/sched` (`se.slice`,
/// nanoseconds) when it shows one.
///
/// Why: a shard thread is runnable almost all the time, and helpers pinned to its CPU (the
/// io-wq worker that runs the shard's fdatasync, created with the shard's affinity; io-wq
/// workers refuse `sched_setaffinity`, and since session 23 [`set_io_worker_cpus`] moves them
/// off the shard's CPU instead) wait until the shard's slice runs out before they get the CPU. With
/// the default slice (1.4 ms on 2 CPUs, more with more CPUs) and a shard that polls
/// (`spin_before_park_us`), every group commit waited ~1.3 ms for its worker: 1 KiB sync
/// produce at 87k msg/s had p50 893 ms; with a 100 us slice, 0.6 ms
/// (perf/results/session11-2026-12-05.md).
pub fn request_time_slice(slice: Duration) -> std::io::Result<Option<u64>> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: 0,
        priority: 0,
        runtime: slice.as_nanos() as u64,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: `attr` is a fully initialized `struct sched_attr` whose `size` field gives its
    // length; the kernel only reads it during the call. pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const SchedAttr,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(current_time_slice_ns())
}

/// `se.slice` of the calling thread from `/proc/thread-self/sched` (nanoseconds), if shown.
pub fn current_time_slice_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    text.lines()
        .find(|l| l.starts_with("se.slice"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
}

/// CPUs the calling thread may run on (its affinity mask), in ascending order. From the main
/// thread that is what the process was allowed (`taskset`, cgroup cpusets): shard placement
/// uses it. Inside a pinned shard it is that shard's one CPU; the machine's online CPUs are
/// `glommio::CpuSet::online()`.
pub fn allowed_cpus() -> Vec<usize> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut cpus: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
    cpus.sort_unstable();
    if cpus.is_empty() {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        cpus = (0..n).collect();
    }
    cpus
}

/// Parses `0-3,6,8-9` into a list of cpus.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, RuntimeError> {
    let bad = || RuntimeError::BadCpuList(text.to_string());
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.trim().parse().map_err(|_| bad())?;
            let b: usize = b.trim().parse().map_err(|_| bad())?;
            if b < a {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Decides the CPU of each shard: `cpus` if given (one per shard), else the online cpus in order
/// (wrapping when there are more shards than cpus).
pub fn plan_placement(shards: usize, cpus: Option<&[usize]>) -> Result<Vec<Pin>, RuntimeError> {
    if shards == 0 {
        return Err(RuntimeError::NoShards(shards));
    }
    let online = allowed_cpus();
    match cpus {
        Some(list) => {
            if list.len() != shards {
                return Err(RuntimeError::CpuCountMismatch {
                    cpus: list.len(),
                    shards,
                });
            }
            for &cpu in list {
                if !online.contains(&cpu) {
                    return Err(RuntimeError::NoSuchCpu {
                        cpu,
                        online: online.clone(),
                    });
                }
            }
            Ok(list.iter().map(|&c| Pin::Cpu(c)).collect())
        }
        None => Ok((0..shards)
            .map(|i| Pin::Cpu(online[i % online.len()]))
            .collect()),
    }
}

/// Checks that io_uring can be set up and that enough memory can be locked for `executors`
/// executors. Call once before starting any.
pub fn startup_checks(executors: usize, opts: &ExecutorOptions) -> Result<(), RuntimeError> {
    io_uring::IoUring::new(2).map_err(RuntimeError::IoUringUnavailable)?;
    if has_cap_ipc_lock() {
        return Ok(());
    }
    let have = memlock_limit_bytes();
    // glommio registers io_memory plus ring memory; keep 64 KiB of headroom per executor.
    let per = opts.io_memory_bytes as u64 + 64 * 1024;
    let need = per * executors as u64;
    if have < need {
        return Err(RuntimeError::LockedMemory {
            have_bytes: have,
            need_bytes: need,
            need_kib: need.div_ceil(1024),
            per_executor_bytes: per,
            shards: executors,
        });
    }
    Ok(())
}

fn memlock_limit_bytes() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we own; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return 0;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        lim.rlim_cur
    }
}

fn has_cap_ipc_lock() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << CAP_IPC_LOCK_BIT) != 0)
}

/// A running executor thread.
pub struct ExecutorThread<T> {
    name: String,
    handle: JoinHandle<Result<T, RuntimeError>>,
}

impl<T> ExecutorThread<T> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the executor's main future to finish.
    pub fn join(self) -> Result<T, RuntimeError> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Panicked { name: self.name }),
        }
    }
}

/// Starts one executor on its own thread and runs `make()` on it. Errors creating the executor
/// come back from [`ExecutorThread::join`] instead of panicking the thread.
pub fn start_executor<G, F, T>(
    name: &str,
    pin: Pin,
    opts: ExecutorOptions,
    make: G,
) -> Result<ExecutorThread<T>, RuntimeError>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let thread_name = name.to_string();
    let exec_name = name.to_string();
    let handle = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let placement = match pin {
                Pin::Cpu(c) => glommio::Placement::Fixed(c),
                Pin::Unbound => glommio::Placement::Unbound,
            };
            let mut builder = glommio::LocalExecutorBuilder::new(placement)
                .name(&exec_name)
                .io_memory(opts.io_memory_bytes)
                .ring_depth(opts.ring_depth)
                .preempt_timer(opts.preempt_timer);
            if !opts.spin_before_park.is_zero() {
                builder = builder.spin_before_park(opts.spin_before_park);
            }
            if let (Pin::Cpu(_), Some(slice)) = (pin, opts.shard_slice) {
                match request_time_slice(slice) {
                    Ok(got) => tracing::debug!(
                        executor = %exec_name,
                        asked_ns = slice.as_nanos() as u64,
                        kernel_slice_ns = ?got,
                        "shard time slice requested"
                    ),
                    Err(e) => tracing::warn!(
                        executor = %exec_name,
                        error = %e,
                        "could not set the shard's scheduler time slice (runtime.shard_slice_us); \
                         helpers on its CPU may wait a whole default slice for it"
                    ),
                }
            }
            // Two blocking threads per shard: the derived-file rounds (ConsumeQueue/IndexFile
            // writes and syncs, checkpoints) take up to hundreds of ms under load, and a new
            // CommitLog segment's publication (link, directory fsync) queued behind them on a
            // single thread came late: 3-5 segments per 10 s run were created on demand again
            // (session 19).
            builder = builder
                .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(BLOCKING_THREADS));
            if let Pin::Cpu(c) = pin {
                // On the other CPUs: glommio would pin them to the shard's own core, where
                // every millisecond of them is a millisecond the shard's connections wait.
                if let Ok(others) = glommio::CpuSet::online().map(|s| s.filter(|l| l.cpu != c)) {
                    if !others.is_empty() {
                        builder = builder.blocking_thread_pool_placement(
                            glommio::PoolPlacement::Fenced(BLOCKING_THREADS, others),
                        );
                    }
                }
            }
            let ex = builder.make().map_err(|e| RuntimeError::Executor {
                name: exec_name.clone(),
                message: e.to_string(),
            })?;
            Ok(ex.run(async move {
                if let (Pin::Cpu(c), true) = (pin, opts.io_workers_off_shard) {
                    // The machine's online CPUs (not `allowed_cpus`: that reads this thread's
                    // affinity, the shard's CPU alone by now).
                    let online: Vec<usize> = glommio::CpuSet::online()
                        .map(|s| s.into_iter().map(|l| l.cpu).collect())
                        .unwrap_or_default();
                    let others = spare_cpus(&online, opts.shard_cpus, c);
                    if others.is_empty() {
                        tracing::debug!(executor = %exec_name, "no CPU without a shard: the io_uring workers stay on the shard's CPU");
                    } else {
                        match set_io_worker_cpus(&others) {
                            Ok(()) => tracing::debug!(executor = %exec_name, cpus = ?others, "io_uring workers moved off the shard's CPU"),
                            Err(e) => tracing::warn!(executor = %exec_name, error = %e, "could not move the io_uring workers off the shard's CPU (runtime.io_workers_off_shard); they share it"),
                        }
                    }
                }
                ramjet_storage::io::install_wake_guard();
                make().await
            }))
        })
        .map_err(|source| RuntimeError::Thread {
            name: thread_name.clone(),
            source,
        })?;
    Ok(ExecutorThread {
        name: thread_name,
        handle,
    })
}

/// Spawns a task on the current executor and detaches it.
pub fn spawn_detached<F>(fut: F)
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(fut).detach();
}

/// Spawns a task on the current executor and returns its handle (dropping the handle does not
/// cancel it; use [`TaskHandle::cancel`]).
pub fn spawn_task<F>(fut: F) -> TaskHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    glommio::spawn_local(fut).detach()
}

/// Sleeps on the current executor.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Runs `fut` with a deadline; `None` when the deadline passed first.
pub async fn timeout<F, T>(d: Duration, fut: F) -> Option<T>
where
    F: Future<Output = T>,
{
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(d).await;
        None
    })
    .await
}

/// Splits a TCP stream into a reader and a writer that can be used by two tasks at once, by
/// duplicating its descriptor: glommio 0.9 has no split, and one task per direction keeps a
/// connection's writes ordered while its reads continue.
pub fn split_stream(stream: TcpStream) -> std::io::Result<(TcpStream, TcpStream)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup(2) on a descriptor we own; the result is checked before use.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor from dup(2) for the same non-blocking socket; the new
    // TcpStream takes sole ownership of it and closes it on drop.
    let writer = unsafe { TcpStream::from_raw_fd(fd) };
    set_nonblocking(fd)?;
    Ok((stream, writer))
}

/// One non-blocking `recv(2)` on `stream` into `buf`: `Some(n)` bytes read (0: the peer closed),
/// `None` when nothing is waiting (EAGAIN). For a reader that knows data is likely there (read
/// coalescing) and wants it without a trip through the reactor.
pub fn try_recv(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the duration of the
        // call, and the descriptor belongs to `stream`, which the caller borrows (so it stays
        // open); MSG_DONTWAIT keeps the call from blocking the shard.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Runs blocking work (file writes with fsync) on the executor's blocking thread and waits
/// for it without stalling the shard.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}

/// How long [`bind_listener`] keeps retrying a port that is still in use. A process that just
/// exited can hold its listening sockets for a moment: io_uring tears a ring down in a kernel
/// worker after the process is reaped, and a pending accept keeps the socket in LISTEN until
/// then. A restart (or a supervisor's) must not fail on that; a port held by a live process
/// still fails after this long.
pub const BIND_RETRY: Duration = Duration::from_secs(3);

/// Binds a TCP listener WITHOUT SO_REUSEPORT (glommio's `TcpListener::bind` sets it, which
/// would let a second broker silently share a port with a running one). SO_REUSEADDR is on
/// (std sets it), so TIME_WAIT connections never block a restart; EADDRINUSE is retried for
/// up to [`BIND_RETRY`].
pub fn bind_listener(addr: &str) -> std::io::Result<Listener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let deadline = std::time::Instant::now() + BIND_RETRY;
    let std_listener = loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    let fd = std_listener.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket we just created and own; the glommio
    // listener takes sole ownership of it and closes it on drop.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    Ok(Listener { listener, fd })
}

/// A bound listener and its descriptor (glommio's listener does not expose it), so that
/// shutdown can [`shutdown_listener`] it while an accept task still owns it.
pub struct Listener {
    pub listener: TcpListener,
    fd: std::os::fd::RawFd,
}

impl Listener {
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.fd
    }
}

/// Stops a listening socket at once: shutdown(2) moves it out of LISTEN, so the port is free
/// for a successor even while the io_uring ring that owns the descriptor is still being torn
/// down, and a pending accept completes with EINVAL (which [`is_listener_shut_down`] names).
pub fn shutdown_listener(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown(2) on a descriptor the caller still holds open; it changes socket
    // state only and does not close or free the descriptor.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// True when an accept error means the listener was shut down by [`shutdown_listener`].
pub fn is_listener_shut_down(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Puts a socket in non-blocking mode. glommio's own socket calls pass MSG_DONTWAIT and do not
/// care; raw calls that take no flags (sendfile, writev) need O_NONBLOCK so that they answer
/// EAGAIN instead of stalling the whole shard.
pub fn set_nonblocking(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(2) flag get/set on a descriptor the caller holds open.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if flags & libc::O_NONBLOCK == 0
            && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Blocks SIGINT and SIGTERM in the calling thread (and threads it starts afterwards), so that
/// [`wait_for_shutdown_signal`] can take them synchronously. Call before starting executors.
pub fn block_shutdown_signals() {
    // SAFETY: sigset manipulation on a local sigset_t and pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until SIGINT or SIGTERM arrives; returns the signal number.
pub fn wait_for_shutdown_signal() -> i32 {
    // SAFETY: sigwait on a local sigset_t; the signals were blocked by block_shutdown_signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig: libc::c_int = 0;
        if libc::sigwait(&set, &mut sig) != 0 {
            return 0;
        }
        sig
    }
}

/// glibc malloc: allocations up to this size come from the arenas (reused), not from a fresh
/// `mmap` each (glibc's fixed maximum for this setting on 64-bit).
const MALLOC_MMAP_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
/// glibc malloc: an arena grows by at least this much at a time (fewer `mprotect` calls).
const MALLOC_TOP_PAD: libc::c_int = 16 * 1024 * 1024;
/// glibc malloc: free memory at the top of an arena is kept up to this size (never trimmed in
/// practice: an arena heap is at most 64 MiB).
const MALLOC_TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Keeps freed heap memory mapped, process-wide, so that steady-state allocation on a shard
/// makes no `mmap`, `munmap` or `mprotect` call.
///
/// Why: those calls take the process's mmap lock for writing. The lock is also held, for
/// reading, by every `madvise(MADV_POPULATE_WRITE)` of the prefault thread (storage/src/
/// prefault.rs) and by page faults. With glibc's defaults (a dynamic mmap threshold and heap
/// trimming) a shard at 151k msg/s e2e called `munmap` or `mprotect` a few times a second, and
/// each call waited 2-5 ms behind a populate call whose thread had been preempted:
/// `perf record -e sched:sched_switch -g` showed the shard in `rwsem_down_write_slowpath` from
/// `__vm_munmap` / `do_mprotect_pkey` inside most multi-millisecond e2e stalls
/// (perf/results/session7-2026-12-04.md). Allocations above 32 MiB (IndexFile tables) still
/// use `mmap`; they happen once per file.
///
/// Called once by [`crate::broker::server::Server::start`]; a no-op where the C library is not
/// glibc.
pub fn keep_heap_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            for (param, value, name) in [
                (
                    libc::M_MMAP_THRESHOLD,
                    MALLOC_MMAP_THRESHOLD,
                    "M_MMAP_THRESHOLD",
                ),
                (libc::M_TOP_PAD, MALLOC_TOP_PAD, "M_TOP_PAD"),
                (
                    libc::M_TRIM_THRESHOLD,
                    MALLOC_TRIM_THRESHOLD,
                    "M_TRIM_THRESHOLD",
                ),
            ] {
                // SAFETY: mallopt only changes glibc malloc's tuning parameters (it takes the
                // arena locks itself); the values are within the documented ranges.
                let ok = unsafe { libc::mallopt(param, value) };
                if ok != 1 {
                    tracing::debug!(param = name, value, "mallopt refused; glibc default kept");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernel release as (major, minor), from `uname -r`'s text in /proc.
    fn kernel_version() -> (u32, u32) {
        let text = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = text.trim().split(['.', '-']);
        let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor)
    }

    #[test]
    fn a_pinned_executor_gets_its_time_slice_and_passes_it_on() {
        let cpu = allowed_cpus()[0];
        let opts = ExecutorOptions {
            shard_slice: Some(Duration::from_micros(250)),
            ..ExecutorOptions::default()
        };
        let t = start_executor("slice-test", Pin::Cpu(cpu), opts, || async {
            let own = current_time_slice_ns();
            // A thread created afterwards (as io_uring creates its io-wq workers) inherits it.
            let child = std::thread::spawn(current_time_slice_ns).join().unwrap();
            (own, child)
        })
        .unwrap();
        let (own, child) = t.join().unwrap();
        // An unpinned executor keeps the kernel's slice.
        let u = start_executor("slice-test-unbound", Pin::Unbound, opts, || async {
            current_time_slice_ns()
        })
        .unwrap();
        let unbound = u.join().unwrap();
        if kernel_version() >= (6, 12) {
            assert_eq!(own, Some(250_000));
            assert_eq!(child, Some(250_000));
            assert_ne!(unbound, Some(250_000));
        } else {
            // Older kernels accept the call and keep their own slice.
            assert_eq!(own, child);
        }
    }

    /// The CPUs io_uring workers of the thread `tid` may run on, one list per worker
    /// (`iou-wrk-<tid>` threads of this process).
    fn io_worker_cpus_of(tid: i32) -> Vec<String> {
        let want = format!("iou-wrk-{tid}");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() != want {
                continue;
            }
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list")) {
                out.push(l.split(':').nth(1).unwrap_or("").trim().to_string());
            }
        }
        out
    }

    /// A pinned executor's fdatasync (always run by an io-wq worker) runs on the other CPUs
    /// with `io_workers_off_shard`, on the executor's own CPU without it.
    #[test]
    fn a_pinned_executor_moves_its_io_workers_off_its_cpu() {
        let online = allowed_cpus();
        if online.len() < 2 {
            eprintln!("one CPU: nothing to move the io workers to");
            return;
        }
        let cpu = online[0];
        let others: Vec<String> = online[1..].iter().map(|c| c.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        // (option on, every online CPU runs a shard): only (true, false) moves them.
        for (off, all_shards) in [(true, false), (false, false), (true, true)] {
            let opts = ExecutorOptions {
                io_workers_off_shard: off,
                shard_cpus: if all_shards {
                    CpuMask::of(online.iter().copied())
                } else {
                    CpuMask::of([cpu])
                },
                ..ExecutorOptions::default()
            };
            let path = dir.path().join(format!("f-{off}-{all_shards}"));
            let t = start_executor("iowq-test", Pin::Cpu(cpu), opts, move || async move {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                let f = glommio::io::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .dma_open(&path)
                    .await
                    .unwrap();
                let mut buf = f.alloc_dma_buffer(4096);
                buf.as_bytes_mut().fill(7);
                f.write_at(buf, 0).await.unwrap();
                f.fdatasync().await.unwrap();
                let cpus = io_worker_cpus_of(tid);
                f.close().await.unwrap();
                cpus
            })
            .unwrap();
            let workers = t.join().unwrap();
            assert!(!workers.is_empty(), "no io worker seen (off = {off})");
            let expect = if off && !all_shards {
                others.join(",")
            } else {
                cpu.to_string()
            };
            for w in &workers {
                // The kernel prints ranges ("1-3"); compare as CPU lists.
                assert_eq!(
                    parse_cpu_list(w).unwrap(),
                    parse_cpu_list(&expect).unwrap(),
                    "off = {off}: workers {workers:?}"
                );
            }
        }
    }

    /// io workers go to the CPUs without a shard, never to the shard's own, and nowhere when
    /// every CPU runs one.
    #[test]
    fn spare_cpus_are_the_ones_without_a_shard() {
        let online = [0, 1, 2, 3, 64, 200];
        assert_eq!(
            spare_cpus(&online, CpuMask::of([0]), 0),
            vec![1, 2, 3, 64, 200]
        );
        assert_eq!(
            spare_cpus(&online, CpuMask::of([0, 1, 64]), 1),
            vec![2, 3, 200]
        );
        // The own CPU is left out even when the mask does not list it.
        assert_eq!(
            spare_cpus(&online, CpuMask::default(), 2),
            vec![0, 1, 3, 64, 200]
        );
        assert!(spare_cpus(&online, CpuMask::of(online), 3).is_empty());
        let m = CpuMask::of([0, 63, 64, 1023, 1024]);
        assert!(m.contains(0) && m.contains(63) && m.contains(64) && m.contains(1023));
        assert!(!m.contains(1) && !m.contains(1024) && !m.contains(5000));
    }

    #[test]
    fn cpu_list_parses_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("2").unwrap(), vec![2]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn placement_wraps_over_allowed_cpus() {
        let online = allowed_cpus();
        let plan = plan_placement(online.len() + 1, None).unwrap();
        assert_eq!(plan.len(), online.len() + 1);
        assert_eq!(plan[online.len()], Pin::Cpu(online[0]));
        assert!(matches!(
            plan_placement(0, None),
            Err(RuntimeError::NoShards(0))
        ));
        assert!(matches!(
            plan_placement(2, Some(&[online[0]])),
            Err(RuntimeError::CpuCountMismatch { cpus: 1, shards: 2 })
        ));
        assert!(matches!(
            plan_placement(1, Some(&[100_000])),
            Err(RuntimeError::NoSuchCpu { cpu: 100_000, .. })
        ));
    }

    #[test]
    fn executor_runs_future_and_returns_value() {
        let t = start_executor(
            "test-exec",
            Pin::Unbound,
            ExecutorOptions::default(),
            || async {
                sleep(Duration::from_millis(1)).await;
                41 + 1
            },
        )
        .unwrap();
        assert_eq!(t.join().unwrap(), 42);
    }

    #[test]
    fn startup_checks_pass_here() {
        // This machine has io_uring and (as root) CAP_IPC_LOCK or enough memlock for one executor.
        startup_checks(1, &ExecutorOptions::default()).unwrap();
    }
}
