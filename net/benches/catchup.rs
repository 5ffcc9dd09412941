//! Catch-up consumption benchmark: zero-copy (sendfile) vs copy (`--no-zero-copy`) delivery.
//!
//! Starts the real `ramjet` binary (one shard, pinned with taskset to `--broker-cpu`), fills a
//! topic with `--msgs` messages of `--size` bytes spread over `--queues` queues, with a small
//! tail cache (`--tail-cache` bytes) so pulls are served from CommitLog files. Then, for
//! `--runs` rounds, restarts the broker in each mode (alternating which goes first), reads the
//! data directory once so the page cache is warm for both, and pulls everything from offset 0
//! with `--max` messages per pull, one pull in flight per queue on one connection (so
//! `--queues` pulls are pipelined). Reports bytes/s, msgs/s and broker CPU time
//! (utime+stime from /proc/<pid>/stat and the schedstat sum), and checks the delivery counters
//! (sendfile bytes in zero-copy mode, copied bytes in copy mode) and that nothing was dropped.
//!
//! `cargo bench -p ramjet-net --bench catchup -- --msgs 400000 --size 1024 --runs 3`

mod common;

use std::time::Instant;

use common::*;

const TOPIC: &str = "CatchUpBench";
const GROUP: &str = "catchup_bench";
/// Messages per SEND_BATCH_MESSAGE while filling.
const FILL_BATCH: usize = 32;

struct RunResult {
    zero_copy: bool,
    secs: f64,
    msgs: u64,
    bytes: u64,
    pulls: u64,
    cpu_ticks: u64,
    cpu_sched_ns: u64,
    sendfile: u64,
    copied: u64,
    writev: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("catchup bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    let args = Args::parse(&[
        "bin",
        "msgs",
        "size",
        "queues",
        "runs",
        "max",
        "broker-cpu",
        "client-cpu",
        "dir",
        "port",
        "tail-cache",
        "keep",
    ])?;
    let bin = args.string("bin", &default_bin());
    let msgs: u64 = args.get("msgs", 400_000)?;
    let size: usize = args.get("size", 1024)?;
    let queues: u32 = args.get("queues", 4)?;
    let runs: usize = args.get("runs", 3)?;
    let max: u32 = args.get("max", 32)?;
    let broker_cpu: usize = args.get("broker-cpu", 0)?;
    let client_cpu: usize = args.get("client-cpu", 1)?;
    let dir = args.string("dir", "/tmp/ramjet-bench-catchup");
    let port: u16 = args.get("port", 30911)?;
    let tail_cache: u64 = args.get("tail-cache", 1024 * 1024)?;
    let keep: bool = args.get("keep", false)?;
    if queues == 0 || !msgs.is_multiple_of(u64::from(queues)) {
        return Err(BenchError::Arg {
            arg: format!("--msgs {msgs} --queues {queues}"),
            why: "msgs must be a multiple of a non-zero queue count".into(),
        });
    }
    pin_self(client_cpu)?;
    let root = std::path::PathBuf::from(&dir);
    let data = root.join("data");
    let config = root.join("bench.toml");
    if !keep || !data.exists() {
        fresh_dir(&dir)?;
        std::fs::write(
            &config,
            format!("[store]\ntail_cache_bytes = {tail_cache}\n"),
        )
        .map_err(io_err(format!("writing {}", config.display())))?;
    }
    let spec = |zero_copy| BrokerSpec {
        bin: &bin,
        data_dir: &data,
        config: Some(&config),
        cpu: broker_cpu,
        port,
        namesrv_port: port - 100,
        zero_copy,
    };
    println!(
        "layout: broker pinned to cpu {broker_cpu} (taskset + --cpus), client thread pinned to cpu {client_cpu}"
    );
    println!(
        "data: {msgs} msgs x {size} B body over {queues} queues; tail cache {tail_cache} B; max {max} msgs/pull; {queues} pulls in flight"
    );
    if !keep || !data.exists() || std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0) == 0 {
        let t = Instant::now();
        let mut broker = BrokerProc::start(&spec(true))?;
        let mut conn = Conn::connect(broker.addr)?;
        create_topic(&mut conn, TOPIC, queues)?;
        fill(&mut conn, msgs, size, queues)?;
        drop(conn);
        broker.stop()?;
        println!("filled in {:.1} s", t.elapsed().as_secs_f64());
    }
    let per_queue = msgs / u64::from(queues);
    let mut results = Vec::new();
    for round in 0..runs {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for zero_copy in order {
            let warmed = warm_page_cache(&data)?;
            let mut broker = BrokerProc::start(&spec(zero_copy))?;
            let r = consume(&broker, zero_copy, queues, per_queue, max)?;
            broker.stop()?;
            println!(
                "round {round} {:<9} {:>8.1} MiB/s {:>9.0} msgs/s  {:.3} s  msgs {} bytes {} pulls {}  broker cpu {:.3} s (ticks {}), schedstat {:.3} s  sendfile {} copied {} writev {}  (page cache warmed: {} B read)",
                mode(r.zero_copy),
                r.bytes as f64 / r.secs / (1024.0 * 1024.0),
                r.msgs as f64 / r.secs,
                r.secs,
                r.msgs,
                r.bytes,
                r.pulls,
                r.cpu_ticks as f64 / clock_ticks_per_sec() as f64,
                r.cpu_ticks,
                r.cpu_sched_ns as f64 / 1e9,
                r.sendfile,
                r.copied,
                r.writev,
                warmed
            );
            results.push(r);
        }
    }
    summarize(&results);
    Ok(())
}

fn mode(zero_copy: bool) -> &'static str {
    if zero_copy {
        "sendfile"
    } else {
        "copy"
    }
}

fn fill(conn: &mut Conn, msgs: u64, size: usize, queues: u32) -> Result<(), BenchError> {
    let per_queue = msgs / u64::from(queues);
    let mut body = Vec::new();
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let entry = ramjet_core::record::batch_entry_len(&payload, b"");
    for q in 0..queues {
        let mut sent = 0u64;
        while sent < per_queue {
            let n = (per_queue - sent).min(FILL_BATCH as u64) as usize;
            body.clear();
            body.resize(entry * n, 0);
            for i in 0..n {
                ramjet_core::record::encode_batch_entry(
                    0,
                    &payload,
                    b"",
                    &mut body[i * entry..(i + 1) * entry],
                )
                .map_err(|e| BenchError::Check(format!("batch entry does not encode: {e}")))?;
            }
            let ext = send_ext(TOPIC, q as i32, true);
            let (code, remark, _) = conn.call(SEND_BATCH_MESSAGE, &ext, &body)?;
            if code != SUCCESS {
                return Err(BenchError::Refused {
                    what: format!("batch send to queue {q} at {sent}"),
                    code,
                    remark,
                });
            }
            sent += n as u64;
        }
    }
    Ok(())
}

fn consume(
    broker: &BrokerProc,
    zero_copy: bool,
    queues: u32,
    per_queue: u64,
    max: u32,
) -> Result<RunResult, BenchError> {
    let mut conn = Conn::connect(broker.addr)?;
    let info0 = runtime_info(&mut conn)?;
    let end = per_queue as i64;
    let mut offsets = vec![0i64; queues as usize];
    // (opaque, queue) of the pull in flight per queue.
    let mut inflight: Vec<Option<i32>> = vec![None; queues as usize];
    let cpu0 = cpu_time(broker.pid())?;
    let t0 = Instant::now();
    for (q, slot) in inflight.iter_mut().enumerate() {
        let ext = pull_ext(GROUP, TOPIC, q as i32, 0, max, 0);
        *slot = Some(conn.send(PULL_MESSAGE, &ext, &[])?);
    }
    let (mut msgs, mut bytes, mut pulls) = (0u64, 0u64, 0u64);
    let mut open = queues as usize;
    while open > 0 {
        let (q, code, next, n, len) = {
            let v = conn.read()?;
            if !v.is_response() {
                continue;
            }
            let Some(q) = inflight.iter().position(|o| *o == Some(v.opaque)) else {
                continue;
            };
            let next: i64 = v
                .ext_get("nextBeginOffset")
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            let n = if v.code == SUCCESS {
                count_records(v.body)?
            } else {
                0
            };
            (q, v.code, next, n, v.body.len() as u64)
        };
        pulls += 1;
        inflight[q] = None;
        let at = offsets[q];
        match code {
            SUCCESS => {
                if n == 0 || next - at != n as i64 {
                    return Err(BenchError::Check(format!(
                        "queue {q}: pull at {at} returned {n} records but nextBeginOffset {next}"
                    )));
                }
                msgs += n;
                bytes += len;
                offsets[q] = next;
            }
            PULL_RETRY_IMMEDIATELY => {}
            c => {
                return Err(BenchError::Refused {
                    what: format!("pull of queue {q} at {at} (end {end})"),
                    code: c,
                    remark: None,
                })
            }
        }
        if offsets[q] >= end {
            open -= 1;
        } else {
            let ext = pull_ext(GROUP, TOPIC, q as i32, offsets[q], max, 0);
            inflight[q] = Some(conn.send(PULL_MESSAGE, &ext, &[])?);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_time(broker.pid())?;
    let info1 = runtime_info(&mut conn)?;
    let expected = per_queue * u64::from(queues);
    if msgs != expected {
        return Err(BenchError::Check(format!(
            "consumed {msgs} messages, expected {expected}"
        )));
    }
    let delta = |k: &str| counter(&info1, k).saturating_sub(counter(&info0, k));
    let r = RunResult {
        zero_copy,
        secs,
        msgs,
        bytes,
        pulls,
        cpu_ticks: cpu1.ticks - cpu0.ticks,
        cpu_sched_ns: cpu1.sched_ns - cpu0.sched_ns,
        sendfile: delta("ramjet.bytesOutSendfile"),
        copied: delta("ramjet.bytesOutCopied"),
        writev: delta("ramjet.bytesOutWritev"),
    };
    if zero_copy && r.sendfile == 0 {
        return Err(BenchError::Check(
            "zero-copy run sent no bytes with sendfile".into(),
        ));
    }
    if !zero_copy && r.sendfile != 0 {
        return Err(BenchError::Check(format!(
            "copy run sent {} bytes with sendfile",
            r.sendfile
        )));
    }
    Ok(r)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summarize(results: &[RunResult]) {
    let pick = |zc: bool, f: &dyn Fn(&RunResult) -> f64| -> f64 {
        median(
            results
                .iter()
                .filter(|r| r.zero_copy == zc)
                .map(f)
                .collect(),
        )
    };
    let mib = |r: &RunResult| r.bytes as f64 / r.secs / (1024.0 * 1024.0);
    let mps = |r: &RunResult| r.msgs as f64 / r.secs;
    let cpu = |r: &RunResult| r.cpu_sched_ns as f64 / 1e9;
    let cpu_per_gib =
        |r: &RunResult| r.cpu_sched_ns as f64 / 1e9 / (r.bytes as f64 / (1024.0 * 1024.0 * 1024.0));
    println!("median over {} runs per mode:", results.len() / 2);
    for zc in [true, false] {
        println!(
            "  {:<9} {:>8.1} MiB/s {:>9.0} msgs/s  broker cpu {:.3} s  ({:.3} cpu-s per GiB)",
            mode(zc),
            pick(zc, &mib),
            pick(zc, &mps),
            pick(zc, &cpu),
            pick(zc, &cpu_per_gib)
        );
    }
    println!(
        "  ratio sendfile/copy: throughput {:.3}x, broker cpu per GiB {:.3}x",
        pick(true, &mib) / pick(false, &mib),
        pick(true, &cpu_per_gib) / pick(false, &cpu_per_gib)
    );
    // Per-round ratios (same round, back-to-back).
    for pair in results.chunks(2) {
        if let [a, b] = pair {
            let (zc, cp) = if a.zero_copy { (a, b) } else { (b, a) };
            println!(
                "  round ratio sendfile/copy: throughput {:.3}x, cpu per GiB {:.3}x",
                mib(zc) / mib(cp),
                cpu_per_gib(zc) / cpu_per_gib(cp)
            );
        }
    }
}
