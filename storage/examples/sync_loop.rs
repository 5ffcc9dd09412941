//! Profiling aid for group commit: A appenders on one store under `flush = sync`, each waiting
//! for durability after every append; prints the rate and the flush counters.
//! `cargo run --release -p ramjet-storage --example sync_loop -- DIR [N] [B] [A] [SEGMENT_MIB] [POOL_MIB]`
//!
//! The thread runs unpinned unless `RAMJET_CPU` pins it; `RAMJET_CPU=0 RAMJET_IO_WORKER_CPUS=1`
//! is a broker shard's layout on two CPUs (`perf/sync-ratio.sh`'s `pipelined_shard` column).

use std::time::Instant;

use ramjet_core::record::MessageToStore;
use ramjet_storage::{FlushMode, Store, StoreConfig, StoreError};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "sync-loop-store".to_string());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let body_len: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let appenders: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let segment_mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let pool_mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let tmp = tempfile::tempdir_in(&dir).unwrap_or_else(|e| panic!("temp dir in {dir}: {e}"));
    let mut cfg = StoreConfig::new(tmp.path().join("store"));
    // RAMJET_HUGE_PAGES=1: transparent huge pages for buffers and tables (`StoreConfig::huge_pages`).
    cfg.huge_pages = std::env::var("RAMJET_HUGE_PAGES").as_deref() == Ok("1");
    // RAMJET_DISABLE_THP=1: transparent huge pages off for the process (`StoreConfig::disable_thp`).
    cfg.disable_thp = std::env::var("RAMJET_DISABLE_THP").as_deref() == Ok("1");
    cfg.segment_size_bytes = segment_mib << 20;
    cfg.flush = FlushMode::Sync;
    // RAMJET_PREALLOCATE=zero|fallocate|none overrides how segments are prepared.
    if let Some(p) = std::env::var("RAMJET_PREALLOCATE")
        .ok()
        .and_then(|v| ramjet_storage::Preallocate::from_name(&v))
    {
        cfg.preallocate = p;
    }
    // RAMJET_CHUNK_KIB=N: largest write chunk (`StoreConfig::write_chunk_bytes`).
    if let Some(kib) = env_u64("RAMJET_CHUNK_KIB") {
        cfg.write_chunk_bytes = (kib as usize) << 10;
    }
    // RAMJET_TAIL_CACHE_MIB=N: tail cache size (`StoreConfig::tail_cache_bytes`).
    if let Some(mib) = env_u64("RAMJET_TAIL_CACHE_MIB") {
        cfg.tail_cache_bytes = mib << 20;
    }
    // RAMJET_ZERO_FILL_MAX_RATE_MIB=N: `StoreConfig::zero_fill_max_append_rate` in MiB/s (0:
    // always zero-fill).
    if let Some(mib) = env_u64("RAMJET_ZERO_FILL_MAX_RATE_MIB") {
        cfg.zero_fill_max_append_rate = mib << 20;
    }
    // RAMJET_FLUSHER_LATENCY_US=N: `StoreConfig::flusher_latency_us`.
    if let Some(us) = env_u64("RAMJET_FLUSHER_LATENCY_US") {
        cfg.flusher_latency_us = us;
    }
    // RAMJET_SYNC_GROUP_MAX_KIB=N: `StoreConfig::sync_group_max_bytes` in KiB.
    if let Some(kib) = env_u64("RAMJET_SYNC_GROUP_MAX_KIB") {
        cfg.sync_group_max_bytes = kib << 10;
    }
    // RAMJET_SYNC_PIPELINE=1: pipelined group commit (`StoreConfig::sync_pipeline`).
    cfg.sync_pipeline = std::env::var("RAMJET_SYNC_PIPELINE").as_deref() == Ok("1");
    // POOL_MIB: write buffers allocated at open; 0 (the default): the broker's default, the
    // pool plus the tail cache (`store.write_pool_preallocate_bytes`).
    cfg.write_pool_preallocate_bytes = if pool_mib > 0 {
        cfg.write_pool_bytes = cfg.write_pool_bytes.max(pool_mib << 20);
        pool_mib << 20
    } else {
        cfg.write_pool_bytes + cfg.tail_cache_bytes
    };
    // RAMJET_PREWRITTEN=1: segment 0 exists already, fully written (zeros), as a recycled
    // segment would be; with RAMJET_PREALLOCATE=none nothing else is prepared during the run.
    // RAMJET_PREWRITTEN=direct: the same written with O_DIRECT, so that none of it is in the
    // page cache (as a segment the store zero-filled itself).
    let prewritten = std::env::var("RAMJET_PREWRITTEN").ok();
    if matches!(prewritten.as_deref(), Some("1") | Some("direct")) {
        prewrite_first_segment(
            &cfg.dir.join("commitlog"),
            cfg.segment_size_bytes,
            prewritten.as_deref() == Some("direct"),
        );
    }
    // RAMJET_PREEMPT_US=N: the executor's preempt timer (`io::DEFAULT_PREEMPT_TIMER`).
    let preempt = env_u64("RAMJET_PREEMPT_US")
        .map_or(ramjet_storage::io::DEFAULT_PREEMPT_TIMER, |us| {
            std::time::Duration::from_micros(us)
        });
    // RAMJET_CPU=c: the store's thread pinned to CPU c, as a broker pins a shard (`--cpus`).
    // RAMJET_IO_WORKER_CPUS=a,b: its io_uring workers (the fdatasyncs, the writes that cannot
    // go inline) moved there, as a broker moves a pinned shard's to the CPUs without a shard
    // (`runtime.io_workers_off_shard`).
    let cpu = env_u64("RAMJET_CPU").map(|c| c as usize);
    let io_workers: Vec<usize> = std::env::var("RAMJET_IO_WORKER_CPUS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|c| {
                    c.trim()
                        .parse()
                        .expect("RAMJET_IO_WORKER_CPUS: CPU numbers")
                })
                .collect()
        })
        .unwrap_or_default();
    let (secs, stats) = ramjet_storage::io::block_on_pinned(preempt, cpu, async move {
        if !io_workers.is_empty() {
            ramjet_storage::io::set_io_worker_cpus(&io_workers)
                .unwrap_or_else(|e| panic!("io workers on {io_workers:?}: {e}"));
        }
        let store = Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let body = std::rc::Rc::new(vec![0xA5u8; body_len]);
        // The preallocated write buffers are mapped in the background; time the store as it
        // is once that is done (a broker is up for a while before its load arrives).
        let warm = Instant::now();
        while ramjet_storage::prefault_backlog() > 0 && warm.elapsed().as_secs() < 30 {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        println!(
            "write buffers mapped {:.0} ms after open",
            warm.elapsed().as_secs_f64() * 1000.0
        );
        // RAMJET_SETTLE_MS=N: wait N ms more before timing (lets the disk finish what the
        // open and the preparation of the next segment wrote).
        if let Some(ms) = env_u64("RAMJET_SETTLE_MS") {
            glommio::timer::sleep(std::time::Duration::from_millis(ms)).await;
        }
        // On stderr so that a profiler can attach when the timed part starts.
        eprintln!("sync_loop: store open, appending");
        let start = Instant::now();
        let cpu0 = cpu_seconds();
        let thread0 = thread_cpu_seconds();
        let mut tasks = Vec::new();
        for t in 0..appenders {
            let store = store.clone();
            let body = body.clone();
            let count = n / appenders + u64::from(t < n % appenders);
            tasks.push(glommio::spawn_local(async move {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 50000));
                let msg = MessageToStore {
                    topic: "BenchTopic",
                    queue_id: (t % 8) as i32,
                    flag: 0,
                    body: &body,
                    properties: b"",
                    sys_flag: 0,
                    born_timestamp: 1_700_000_000_000,
                    born_host: addr,
                    store_host: addr,
                    reconsume_times: 0,
                    prepared_transaction_offset: 0,
                    tags_code: 0,
                };
                for _ in 0..count {
                    let put = loop {
                        match store.put_message(&msg) {
                            Ok(p) => break p,
                            Err(StoreError::Busy { .. }) => {
                                store.wait_writable(msg.encoded_len()).await
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    };
                    store
                        .wait_durable(put.end_physical_offset)
                        .await
                        .unwrap_or_else(|e| panic!("durable: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "process CPU during the run: {:.2} s of {secs:.2} s wall (the store's thread {:.2} s)",
            cpu_seconds() - cpu0,
            thread_cpu_seconds() - thread0
        );
        let stats = store.stats();
        for (name, l) in [
            ("durable waits", store.latency().sync_wait),
            ("fdatasyncs", store.latency().fdatasync),
            ("write phases", store.latency().write_phase),
        ] {
            println!(
                "{name}: {}, p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us",
                l.count, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        store
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        (secs, stats)
    })
    .unwrap_or_else(|e| panic!("executor: {e}"));
    let bytes = n as f64 * body_len as f64;
    println!(
        "{n} x {body_len} B, {appenders} appenders: {:.1} MiB/s, {:.0} msg/s; flushes {} fdatasyncs {} chunk writes {} bytes written {} ({:.2} MiB/flush)",
        bytes / secs / (1 << 20) as f64,
        n as f64 / secs,
        stats.flush_count,
        stats.fdatasync_count,
        stats.chunk_writes,
        stats.bytes_written,
        stats.bytes_written as f64 / stats.flush_count.max(1) as f64 / (1 << 20) as f64
    );
    println!(
        "segments created {} (zero fills stopped short: {}); write phases cut at sync_group_max_bytes: {}",
        stats.segments_created, stats.zero_fills_stopped, stats.sync_group_splits
    );
    println!(
        "write buffers: reused {} allocated {} stocked {} released {}",
        stats.write_buffers_reused,
        stats.write_buffers_allocated,
        stats.write_buffers_stocked,
        stats.write_buffers_released
    );
}

fn prewrite_first_segment(commitlog: &std::path::Path, size: u64, direct: bool) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(commitlog).expect("commitlog dir");
    let path = commitlog.join(format!("{:020}", 0));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let mut f = opts.open(&path).expect("segment 0");
    // 8 MiB of zeros starting at a 4 KiB boundary (O_DIRECT needs aligned memory).
    const PIECE: usize = 8 << 20;
    let backing = vec![0u8; PIECE + 4096];
    let skip = (4096 - backing.as_ptr() as usize % 4096) % 4096;
    let zeros = &backing[skip..skip + PIECE];
    let mut left = size;
    while left > 0 {
        let n = left.min(PIECE as u64) as usize;
        f.write_all(&zeros[..n]).expect("zero fill");
        left -= n as u64;
    }
    f.sync_all().expect("sync segment 0");
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// User + system CPU seconds of the calling thread so far.
fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

/// The number in environment variable `name`; `None` when it is unset or empty. Panics with
/// the variable's name when it holds something else, rather than running with the default.
fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(e) => panic!("{name}={v:?} is not a non-negative integer: {e}"),
    }
}
