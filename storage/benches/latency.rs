//! What the durability-path latency histograms cost per acknowledged send: the clock read at
//! queueing (`Instant::now`, vDSO) and the histogram record at the answer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ramjet_storage::latency::LatencyHistogram;

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    let mut h = LatencyHistogram::new();
    // Values spread over 50 us .. 6.5 ms, as sync acknowledgements are.
    let mut v = 50_000u64;
    let t0 = Instant::now();
    g.bench_function("record", |b| {
        b.iter(|| {
            v = (v * 1_103_515_245 + 12_345) % 6_500_000 + 50_000;
            h.record(t0, t0 + Duration::from_nanos(black_box(v)));
        })
    });
    g.finish();
    black_box(h.summary());
}

criterion_group!(benches, latency);
criterion_main!(benches);
