//! `ConsumeQueueStore::flush_bound`: the CommitLog offset a budget-bound ConsumeQueue flush goes
//! up to, computed on the shard at the start of every derived round that has a backlog. Cost
//! with 8, 1,000 and 8,000 queues sharing 1,000,000 pending units (100 B records dispatched
//! round robin), against the default budget (`MAX_FLUSH_BYTES` of units).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ramjet_storage::consumequeue::{ConsumeQueueStore, CQ_UNIT_LEN, MAX_FLUSH_BYTES};

const PENDING_UNITS: u64 = 1_000_000;
const RECORD: u32 = 254;

fn cq_flush_bound(c: &mut Criterion) {
    let mut g = c.benchmark_group("cq_flush_bound");
    for queues in [8u64, 1_000, 8_000] {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut store = ConsumeQueueStore::new(tmp.path().join("consumequeue"), 300_000);
        let topics: Vec<String> = (0..queues.div_ceil(8)).map(|t| format!("T{t}")).collect();
        let mut next = vec![0i64; queues as usize];
        for i in 0..PENDING_UNITS {
            let q = (i % queues) as usize;
            let topic = &topics[q / 8];
            store
                .put(
                    topic,
                    (q % 8) as i32,
                    next[q],
                    i * u64::from(RECORD),
                    RECORD,
                    0,
                )
                .expect("put");
            next[q] += 1;
        }
        let end = PENDING_UNITS * u64::from(RECORD);
        let budget = (MAX_FLUSH_BYTES / CQ_UNIT_LEN) as u64;
        let bound = store.flush_bound(end, budget);
        assert!(bound < end, "the backlog exceeds one round's budget");
        g.bench_with_input(BenchmarkId::from_parameter(queues), &store, |b, s| {
            b.iter(|| s.flush_bound(end, budget))
        });
    }
    g.finish();
}

criterion_group!(benches, cq_flush_bound);
criterion_main!(benches);
