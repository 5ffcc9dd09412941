//! CommitLog append throughput through the Store API.
//!
//! - `append_async/{100B,4KiB}/{direct,buffered}`: one task appends as fast as it can under
//!   `flush = async`; back-pressure (Busy) waits count. Time = appends accepted (in memory,
//!   dispatched), not flushed: RocketMQ ASYNC_FLUSH acknowledges at that point.
//! - `append_async/100B/direct-pool`: the same with the write-buffer pool preallocated to the
//!   tail cache size (`write_pool_preallocate_bytes = tail_cache_bytes`): the memory a busy
//!   store holds in steady state, so appends write into mapped memory as they do once the tail
//!   cache recycles chunks; the default config pays first-touch page faults in every sample.
//! - `append_sync/4KiB/{direct,buffered}/{16,64,256,1024,4096}x`: N concurrent appenders, each
//!   awaiting `wait_durable` after every append (SYNC_FLUSH, group commit). Time = all
//!   acknowledged. A broker has thousands of sync sends in flight across its connections.
//! - `append_sync/4KiB/direct-pool/{256,1024,4096}x`: the sync cases with the preallocated pool.
//! - `append_sync/4KiB/direct-pipeline/{1024,4096}x`: the sync cases with pipelined group
//!   commit (`StoreConfig::sync_pipeline`); `direct-pipeline-pool/4096x` with the pool
//!   preallocated too (the broker's default store under `flush = sync`).
//! - `append_sync/4KiB/direct-pipeline-shard/4096x`: the broker's default store under
//!   `flush = sync` (`direct-pipeline-pool`) in a shard's layout: the executor pinned to the
//!   first online CPU, its io_uring workers (the fdatasyncs, the writes that cannot go inline)
//!   moved to the other CPUs, as `ramjet start --cpus` places a shard
//!   (`runtime.io_workers_off_shard`), and the clock started once the preallocated write
//!   buffers are mapped (a shard is up before its load comes). The other rows run unpinned.
//! - `append_sync/4KiB/direct-pipeline-steady/4096x`: pipelined, one store kept open across
//!   all samples (segments roll and are prepared in the background between and during them).
//! - `append_sync/100B/direct/64x`: the same with small records (fdatasync-bound).
//!
//! `RAMJET_BENCH_SYNC_ROUNDS=N` runs N appends per sync appender and sample instead of 8 (long
//! samples for `perf record` of the steady state). `RAMJET_BENCH_SEGMENT_MIB=N` sets the
//! segment size (64 MiB by default).
//!
//! Each sample (except the `-steady` row's) opens a fresh store in a temporary directory (`RAMJET_BENCH_DIR`, default the
//! system temp dir: put it on the disk you measure) on a fresh glommio executor; only the append
//! loop is timed. Compare with `perf/fio.sh` on the same file system.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ramjet_core::record::MessageToStore;
use ramjet_storage::{FlushMode, IoMode, Store, StoreConfig, StoreError};

const TOPIC: &str = "BenchTopic";
/// CommitLog segment size of the bench stores; `RAMJET_BENCH_SEGMENT_MIB` overrides it.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// [`SEGMENT_BYTES`], or `RAMJET_BENCH_SEGMENT_MIB` MiB when set (a multiple of 4 KiB):
/// `RAMJET_BENCH_SEGMENT_MIB=1024` gives the broker's default segment, whose first segment
/// a fresh store prepares before the clock starts, so that a sample's appends meet no segment
/// roll and no background zero fill (64 MiB puts both into every 64 MiB of a sample).
fn segment_bytes() -> u64 {
    std::env::var("RAMJET_BENCH_SEGMENT_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(SEGMENT_BYTES, |mib| (mib << 20).max(1 << 20))
}

/// Async samples append at least this many bytes of bodies and report the time scaled to the
/// count criterion asked for: a store opened per sample costs a fixed amount on its first
/// appends (queue and chunk creation) that must not pass for the per-message cost when
/// criterion picks tiny counts (it does when opening the store is slow, e.g. with a
/// preallocated pool). 32 MiB stays well below `max_unflushed_bytes`.
const MIN_ASYNC_BYTES: u64 = 32 * 1024 * 1024;

/// Sync samples run at least this many appends per appender, scaled the same way (each sample
/// then covers several group commits, not just the first one of a fresh store).
const MIN_SYNC_ROUNDS: u64 = 8;

thread_local! {
    /// `StoreConfig::sync_pipeline` for the next runs (the `direct-pipeline` cases).
    static SYNC_PIPELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// For the next runs (the `-shard` case): the executor pinned to the first online CPU and
    /// its io_uring workers moved to the others, the layout of a broker's shard (`--cpus`,
    /// `runtime.io_workers_off_shard`). Unpinned otherwise.
    static SHARD_LAYOUT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The shard layout's CPUs: the executor's and its io workers' (empty with one CPU).
fn shard_layout() -> Option<(usize, Vec<usize>)> {
    if !SHARD_LAYOUT.with(|l| l.get()) {
        return None;
    }
    let mut online: Vec<usize> = glommio::CpuSet::online()
        .expect("online CPUs")
        .into_iter()
        .map(|l| l.cpu)
        .collect();
    online.sort_unstable();
    online.dedup();
    let shard = *online.first().expect("an online CPU");
    Some((shard, online.into_iter().filter(|&c| c != shard).collect()))
}

/// `run_with` for `iters` async appends, measured over at least [`MIN_ASYNC_BYTES`].
fn run_async(iters: u64, body_len: usize, io_mode: IoMode, pool: bool) -> Duration {
    let n = iters.max(MIN_ASYNC_BYTES / body_len as u64);
    let t = run_with(n, body_len, io_mode, FlushMode::Async, 1, pool);
    t.mul_f64(iters as f64 / n as f64)
}

/// `run_with` for `iters` sync appends by `appenders` tasks, measured over at least
/// [`MIN_SYNC_ROUNDS`] appends per task.
fn run_sync(iters: u64, body_len: usize, io_mode: IoMode, appenders: u64, pool: bool) -> Duration {
    let n = iters.max(appenders * sync_rounds());
    let t = run_with(n, body_len, io_mode, FlushMode::Sync, appenders, pool);
    t.mul_f64(iters as f64 / n as f64)
}

/// [`MIN_SYNC_ROUNDS`], or `RAMJET_BENCH_SYNC_ROUNDS` when set: long samples for profiling
/// the steady state (`perf record` sees the store set-up of every sample otherwise).
fn sync_rounds() -> u64 {
    std::env::var("RAMJET_BENCH_SYNC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_SYNC_ROUNDS)
        .max(1)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("RAMJET_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn host(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

fn message(body: &[u8], queue_id: i32) -> MessageToStore<'_> {
    MessageToStore {
        topic: TOPIC,
        queue_id,
        flag: 0,
        body,
        properties: b"",
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: host(50000),
        store_host: host(10911),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: 0,
    }
}

fn config(dir: PathBuf, io_mode: IoMode, flush: FlushMode, pool: bool) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.sync_pipeline = SYNC_PIPELINE.with(|p| p.get());
    cfg.segment_size_bytes = segment_bytes();
    cfg.io_mode = io_mode;
    cfg.flush = flush;
    if pool {
        cfg.write_pool_bytes = cfg.write_pool_bytes.max(cfg.tail_cache_bytes);
        cfg.write_pool_preallocate_bytes = cfg.tail_cache_bytes;
    }
    cfg
}

/// Appends `iters` messages of `body_len` bytes with `appenders` tasks; returns the time.
fn run_with(
    iters: u64,
    body_len: usize,
    io_mode: IoMode,
    flush: FlushMode,
    appenders: u64,
    pool: bool,
) -> Duration {
    let tmp = tempfile::tempdir_in(bench_dir()).expect("bench temp dir");
    let cfg = config(tmp.path().join("store"), io_mode, flush, pool);
    let layout = shard_layout();
    let cpu = layout.as_ref().map(|(c, _)| *c);
    ramjet_storage::io::block_on_pinned(
        ramjet_storage::io::DEFAULT_PREEMPT_TIMER,
        cpu,
        async move {
            if let Some((_, workers)) = layout.filter(|(_, w)| !w.is_empty()) {
                ramjet_storage::io::set_io_worker_cpus(&workers).expect("io workers off the shard");
            }
            let store = Store::open(cfg).await.expect("open store");
            if cpu.is_some() {
                // As a broker's shard meets its load: up for a while, its preallocated write
                // buffers mapped by the prefault thread (`sync_loop` waits the same way).
                while ramjet_storage::prefault_backlog() > 0 {
                    ramjet_storage::io::sleep(Duration::from_millis(5)).await;
                }
            }
            let elapsed = append_all(&store, iters, body_len, flush, appenders).await;
            store.shutdown().await.expect("shutdown");
            elapsed
        },
    )
    .expect("glommio executor")
}

/// The timed part of a sample: `iters` appends of `body_len` bytes by `appenders` tasks, each
/// waiting for durability after every append under `flush = sync`.
async fn append_all(
    store: &Store,
    iters: u64,
    body_len: usize,
    flush: FlushMode,
    appenders: u64,
) -> Duration {
    let body = vec![0xA5u8; body_len];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..appenders {
        let store = store.clone();
        let body = body.clone();
        let n = iters / appenders + u64::from(t < iters % appenders);
        tasks.push(glommio::spawn_local(async move {
            let msg = message(&body, (t % 8) as i32);
            for _ in 0..n {
                let put = loop {
                    match store.put_message(&msg) {
                        Ok(p) => break p,
                        Err(StoreError::Busy { .. }) => {
                            store.wait_writable(msg.encoded_len()).await
                        }
                        Err(e) => panic!("append failed: {e}"),
                    }
                };
                if flush == FlushMode::Sync {
                    store
                        .wait_durable(put.end_physical_offset)
                        .await
                        .expect("durable");
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    start.elapsed()
}

/// A sync store kept open across samples (the `-steady` rows): one store on an executor
/// thread of its own, appended to by every sample in turn, with its segments rolling and the
/// next one prepared in the background as in a running broker. A fresh store per sample
/// measures only the first second of a store's life, right after it zero-filled its first
/// segment (session 24 traced metadata writes of 3-5 ms in that half second of one run).
struct SteadyStore {
    requests: Option<std::sync::mpsc::Sender<(u64, std::sync::mpsc::Sender<Duration>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SteadyStore {
    fn start(appenders: u64) -> SteadyStore {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, std::sync::mpsc::Sender<Duration>)>();
        let thread = std::thread::spawn(move || {
            let tmp = tempfile::tempdir_in(bench_dir()).expect("bench temp dir");
            let mut cfg = config(
                tmp.path().join("store"),
                IoMode::Direct,
                FlushMode::Sync,
                false,
            );
            cfg.sync_pipeline = true;
            ramjet_storage::io::block_on(async move {
                let store = Store::open(cfg).await.expect("open store");
                loop {
                    // Between samples the executor keeps running the store's own tasks
                    // (flusher, segment preparation), as a broker's shard does.
                    match rx.try_recv() {
                        Ok((n, reply)) => {
                            let d = append_all(&store, n, 4096, FlushMode::Sync, appenders).await;
                            let _ = reply.send(d);
                        }
                        Err(std::sync::mpsc::TryRecvError::Empty) => {
                            ramjet_storage::io::sleep(Duration::from_millis(1)).await
                        }
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                    }
                }
                store.shutdown().await.expect("shutdown");
            })
            .expect("glommio executor");
        });
        SteadyStore {
            requests: Some(tx),
            thread: Some(thread),
        }
    }

    /// Like [`run_sync`] on the kept store.
    fn run(&self, iters: u64, appenders: u64) -> Duration {
        let n = iters.max(appenders * sync_rounds());
        let (tx, rx) = std::sync::mpsc::channel();
        self.requests
            .as_ref()
            .expect("store thread running")
            .send((n, tx))
            .expect("store thread alive");
        let t = rx.recv().expect("store thread answered");
        t.mul_f64(iters as f64 / n as f64)
    }
}

impl Drop for SteadyStore {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_async");
    g.sample_size(10);
    for (label, len) in [("100B", 100usize), ("4KiB", 4096)] {
        for (mode_label, mode) in [("direct", IoMode::Direct), ("buffered", IoMode::Buffered)] {
            g.throughput(Throughput::Elements(1));
            g.bench_function(BenchmarkId::new(label, mode_label), |b| {
                b.iter_custom(|iters| run_async(iters, len, mode, false))
            });
        }
    }
    g.bench_function(BenchmarkId::new("100B", "direct-pool"), |b| {
        b.iter_custom(|iters| run_async(iters, 100, IoMode::Direct, true))
    });
    g.finish();

    let mut g = c.benchmark_group("append_sync");
    g.sample_size(10);
    for (mode_label, mode) in [("direct", IoMode::Direct), ("buffered", IoMode::Buffered)] {
        let counts: &[u64] = match mode {
            IoMode::Direct => &[16, 64, 256, 1024, 4096],
            IoMode::Buffered => &[16, 64],
        };
        for &appenders in counts {
            g.throughput(Throughput::Bytes(4096));
            g.bench_function(
                BenchmarkId::new(format!("4KiB/{mode_label}"), format!("{appenders}x")),
                |b| b.iter_custom(|iters| run_sync(iters, 4096, mode, appenders, false)),
            );
        }
    }
    for appenders in [256u64, 1024, 4096] {
        g.throughput(Throughput::Bytes(4096));
        g.bench_function(
            BenchmarkId::new("4KiB/direct-pool", format!("{appenders}x")),
            |b| b.iter_custom(|iters| run_sync(iters, 4096, IoMode::Direct, appenders, true)),
        );
    }
    SYNC_PIPELINE.with(|p| p.set(true));
    for appenders in [1024u64, 4096] {
        g.throughput(Throughput::Bytes(4096));
        g.bench_function(
            BenchmarkId::new("4KiB/direct-pipeline", format!("{appenders}x")),
            |b| b.iter_custom(|iters| run_sync(iters, 4096, IoMode::Direct, appenders, false)),
        );
    }
    // The same in a broker shard's layout: the executor pinned, its io workers on the other
    // CPUs (`shard_layout`).
    SHARD_LAYOUT.with(|l| l.set(true));
    g.throughput(Throughput::Bytes(4096));
    g.bench_function(
        BenchmarkId::new("4KiB/direct-pipeline-shard", "4096x"),
        |b| b.iter_custom(|iters| run_sync(iters, 4096, IoMode::Direct, 4096, true)),
    );
    SHARD_LAYOUT.with(|l| l.set(false));
    // The same store kept open across samples (see `SteadyStore`).
    {
        let steady = SteadyStore::start(4096);
        g.throughput(Throughput::Bytes(4096));
        g.bench_function(
            BenchmarkId::new("4KiB/direct-pipeline-steady", "4096x"),
            |b| b.iter_custom(|iters| steady.run(iters, 4096)),
        );
    }
    // The broker's default store under `flush = sync`: pipelined, with the write pool
    // preallocated.
    g.throughput(Throughput::Bytes(4096));
    g.bench_function(
        BenchmarkId::new("4KiB/direct-pipeline-pool", "4096x"),
        |b| b.iter_custom(|iters| run_sync(iters, 4096, IoMode::Direct, 4096, true)),
    );
    SYNC_PIPELINE.with(|p| p.set(false));
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("100B/direct", "64x"), |b| {
        b.iter_custom(|iters| run_sync(iters, 100, IoMode::Direct, 64, false))
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
