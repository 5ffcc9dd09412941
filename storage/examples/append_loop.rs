//! Profiling aid: one store, one appender, N async appends of B-byte bodies (no criterion, no
//! per-sample setup), prints the rate. `cargo run --release -p ramjet-storage --example
//! append_loop -- DIR [N] [B] [POOL_MIB] [SEGMENT_MIB] [REPEAT]`; run it under `perf record -g` to
//! see the append path alone. With REPEAT > 1 it opens REPEAT fresh stores one after the other
//! in the same process, as the criterion bench does per sample (memory freed by one store is
//! reused by the next), and prints the rate of each, with the flusher's write phases and
//! fdatasyncs (where a disk-bound run waits). `RAMJET_PREALLOCATE=zero|fallocate|none` sets
//! how segments are prepared; `RAMJET_YIELD=1` makes the appender yield when the executor asks,
//! as a broker's connection tasks do (without it the flusher runs only when appends are
//! refused for room, and a disk-bound run writes in phases of ~`max_unflushed_bytes`).

use std::time::Instant;

use ramjet_core::record::MessageToStore;
use ramjet_storage::{Store, StoreConfig, StoreError};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "append-loop-store".to_string());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let body_len: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let pool_mib: Option<u64> = args.next().and_then(|s| s.parse().ok()).filter(|m| *m > 0);
    let segment_mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let repeat: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    for _ in 0..repeat.max(1) {
        run_once(&dir, n, body_len, pool_mib, segment_mib);
    }
}

fn run_once(dir: &str, n: u64, body_len: usize, pool_mib: Option<u64>, segment_mib: u64) {
    let tmp = tempfile::tempdir_in(dir).unwrap_or_else(|e| panic!("temp dir in {dir}: {e}"));
    let mut cfg = StoreConfig::new(tmp.path().join("store"));
    // RAMJET_HUGE_PAGES=1: transparent huge pages for buffers and tables (`StoreConfig::huge_pages`).
    cfg.huge_pages = std::env::var("RAMJET_HUGE_PAGES").as_deref() == Ok("1");
    cfg.segment_size_bytes = segment_mib << 20;
    // RAMJET_PREALLOCATE=zero|fallocate|none overrides how segments are prepared.
    if let Some(p) = std::env::var("RAMJET_PREALLOCATE")
        .ok()
        .and_then(|v| ramjet_storage::Preallocate::from_name(&v))
    {
        cfg.preallocate = p;
    }
    if let Some(mib) = pool_mib {
        cfg.write_pool_bytes = cfg.write_pool_bytes.max(mib << 20);
        cfg.write_pool_preallocate_bytes = mib << 20;
    }
    let (rate, reused, allocated) = ramjet_storage::io::block_on(async move {
        let store = Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        let body = vec![0xA5u8; body_len];
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 50000));
        let msg = MessageToStore {
            topic: "BenchTopic",
            queue_id: 0,
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
        let start = Instant::now();
        // RAMJET_YIELD=1: the appender yields whenever the executor asks (a broker's connection
        // tasks do at every request); without it the loop hands the CPU to the flusher only
        // when appends are refused for room.
        let cooperate = std::env::var("RAMJET_YIELD").as_deref() == Ok("1");
        for _ in 0..n {
            if cooperate {
                glommio::yield_if_needed().await;
            }
            loop {
                match store.put_message(&msg) {
                    Ok(_) => break,
                    Err(StoreError::Busy { .. }) => store.wait_writable(msg.encoded_len()).await,
                    Err(e) => panic!("append: {e}"),
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let st = store.commitlog().stats();
        // Where a disk-bound run waits: the flusher's write phases and fdatasyncs.
        let lat = store.latency();
        for (name, l) in [
            ("write phases", lat.write_phase),
            ("fdatasyncs", lat.fdatasync),
        ] {
            println!(
                "{name}: {}, p50 {} us, p90 {} us, p99 {} us, max {} us",
                l.count, l.p50_us, l.p90_us, l.p99_us, l.max_us
            );
        }
        println!(
            "flushes {} chunk writes {} bytes written {}",
            st.flush_count, st.chunk_writes, st.bytes_written
        );
        store
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        (
            n as f64 / secs,
            st.write_buffers_reused,
            st.write_buffers_allocated,
        )
    })
    .unwrap_or_else(|e| panic!("executor: {e}"));
    println!(
        "{n} appends of {body_len} B: {:.3} M/s; write chunks: {reused} from recycled buffers, {allocated} freshly allocated",
        rate / 1e6
    );
}
