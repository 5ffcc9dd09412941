//! Long-polling send-to-receive latency.
//!
//! Starts the real `ramjet` binary (one shard, pinned with taskset to `--broker-cpu`). A
//! consumer connection parks a pull (suspendTimeoutMillis `--suspend-ms`, default 15000) on an
//! empty queue position; after `--park-wait-us` the producer connection sends one message of
//! `--size` bytes; the latency is the time from the start of the send (just before the request
//! is written) to the arrival of the whole pull response. Repeated `--n` times (after
//! `--warmup` unrecorded rounds) for each layout in `--layouts` (`split`: client on
//! `--client-cpu`, `shared`: client on the broker's CPU). Reports p50/p90/p99/max with
//! hdrhistogram and checks with GET_BROKER_RUNTIME_INFO that every pull was parked and woken.
//!
//! `cargo bench -p ramjet-net --bench longpoll -- --n 2000`

mod common;

use std::time::{Duration, Instant};

use common::*;
use hdrhistogram::Histogram;

const TOPIC: &str = "LongPollBench";
const GROUP: &str = "longpoll_bench";
/// Histogram range: 1 µs .. 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("longpoll bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BenchError> {
    let args = Args::parse(&[
        "bin",
        "n",
        "warmup",
        "size",
        "suspend-ms",
        "park-wait-us",
        "broker-cpu",
        "client-cpu",
        "layouts",
        "dir",
        "port",
    ])?;
    let bin = args.string("bin", &default_bin());
    let n: usize = args.get("n", 2000)?;
    let warmup: usize = args.get("warmup", 100)?;
    let size: usize = args.get("size", 256)?;
    let suspend_ms: u64 = args.get("suspend-ms", 15_000)?;
    let park_wait = Duration::from_micros(args.get("park-wait-us", 2000)?);
    let broker_cpu: usize = args.get("broker-cpu", 0)?;
    let client_cpu: usize = args.get("client-cpu", 1)?;
    let layouts = args.string("layouts", "split,shared");
    let dir = args.string("dir", "/tmp/ramjet-bench-longpoll");
    let port: u16 = args.get("port", 30931)?;
    for layout in layouts.split(',') {
        let cpu = match layout {
            "split" => client_cpu,
            "shared" => broker_cpu,
            other => {
                return Err(BenchError::Arg {
                    arg: format!("--layouts {other}"),
                    why: "layouts are split and shared".into(),
                })
            }
        };
        pin_self(cpu)?;
        let data = fresh_dir(&dir)?;
        let mut broker = BrokerProc::start(&BrokerSpec {
            bin: &bin,
            data_dir: &data,
            config: None,
            cpu: broker_cpu,
            port,
            namesrv_port: port - 100,
            zero_copy: true,
        })?;
        let h = measure(&broker, n, warmup, size, suspend_ms, park_wait)?;
        broker.stop()?;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "layout {layout}: broker cpu {broker_cpu}, client cpu {cpu}; n {} ; p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  max {:.1} us  mean {:.1} us  min {:.1} us",
            h.len(),
            us(0.5),
            us(0.9),
            us(0.99),
            h.max() as f64 / 1000.0,
            h.mean() / 1000.0,
            h.min() as f64 / 1000.0
        );
    }
    Ok(())
}

fn measure(
    broker: &BrokerProc,
    n: usize,
    warmup: usize,
    size: usize,
    suspend_ms: u64,
    park_wait: Duration,
) -> Result<Histogram<u64>, BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, HIST_MAX_NS, 3)
        .map_err(|e| BenchError::Check(format!("histogram: {e}")))?;
    let mut producer = Conn::connect(broker.addr)?;
    let mut consumer = Conn::connect(broker.addr)?;
    create_topic(&mut producer, TOPIC, 1)?;
    let info0 = runtime_info(&mut producer)?;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut offset = 0i64;
    for round in 0..warmup + n {
        let pull = pull_ext(GROUP, TOPIC, 0, offset, 32, suspend_ms);
        let pull_opaque = consumer.send(PULL_MESSAGE, &pull, &[])?;
        std::thread::sleep(park_wait);
        let send = send_ext(TOPIC, 0, false);
        let t0 = Instant::now();
        let send_opaque = producer.send(SEND_MESSAGE_V2, &send, &body)?;
        let (code, next, records) = loop {
            let v = consumer.read()?;
            if v.is_response() && v.opaque == pull_opaque {
                let next: i64 = v
                    .ext_get("nextBeginOffset")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                let records = if v.code == SUCCESS {
                    count_records(v.body)?
                } else {
                    0
                };
                break (v.code, next, records);
            }
        };
        let elapsed = t0.elapsed();
        if code != SUCCESS || records != 1 || next != offset + 1 {
            return Err(BenchError::Check(format!(
                "round {round}: parked pull at {offset} answered code {code}, {records} records, next {next}"
            )));
        }
        offset = next;
        loop {
            let v = producer.read()?;
            if v.is_response() && v.opaque == send_opaque {
                if v.code != SUCCESS {
                    return Err(BenchError::Refused {
                        what: format!("send of round {round}"),
                        code: v.code,
                        remark: v.remark().map(str::to_string),
                    });
                }
                break;
            }
        }
        if round >= warmup {
            let ns = (elapsed.as_nanos() as u64).clamp(1_000, HIST_MAX_NS);
            hist.record(ns)
                .map_err(|e| BenchError::Check(format!("histogram record {ns}: {e}")))?;
        }
    }
    let info1 = runtime_info(&mut producer)?;
    let delta = |k: &str| counter(&info1, k).saturating_sub(counter(&info0, k));
    let woken = delta("ramjet.pullsWoken");
    let timed_out = delta("ramjet.pullsTimedOut");
    println!(
        "  broker counters: pullsWoken +{woken}, pullsTimedOut +{timed_out} (rounds {})",
        warmup + n
    );
    if woken != (warmup + n) as u64 {
        return Err(BenchError::Check(format!(
            "{woken} pulls were woken from parking, expected {} (a pull found data before parking)",
            warmup + n
        )));
    }
    Ok(hist)
}
