//! ConsumeQueue lookup through `Store::get_messages` (what a pull does before the bytes move):
//! 32 messages from a random offset of a 200,000-message queue, tail cache on (memory chunks)
//! and the plain max-offset query. Also `search_offset_by_timestamp`.

use criterion::{criterion_group, criterion_main, Criterion};
use ramjet_core::record::MessageToStore;
use ramjet_storage::{FlushMode, Store, StoreConfig, StoreError};
use rand::{Rng, SeedableRng};

const TOPIC: &str = "BenchTopic";
const MESSAGES: i64 = 200_000;

fn cq_lookup(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut cfg = StoreConfig::new(tmp.path().join("store"));
    cfg.segment_size_bytes = 64 * 1024 * 1024;
    cfg.flush = FlushMode::Async;
    ramjet_storage::io::block_on(async move {
        let store = Store::open(cfg).await.expect("open");
        let body = [0x5Au8; 100];
        let msg = MessageToStore {
            topic: TOPIC,
            queue_id: 0,
            flag: 0,
            body: &body,
            properties: b"",
            sys_flag: 0,
            born_timestamp: 1,
            born_host: std::net::SocketAddr::from(([127, 0, 0, 1], 50000)),
            store_host: std::net::SocketAddr::from(([127, 0, 0, 1], 10911)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            tags_code: 0,
        };
        let mut n = 0;
        while n < MESSAGES {
            match store.put_message(&msg) {
                Ok(_) => n += 1,
                Err(StoreError::Busy { .. }) => store.wait_writable(msg.encoded_len()).await,
                Err(e) => panic!("append: {e}"),
            }
        }
        store.flush().await.expect("flush");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut g = c.benchmark_group("cq_lookup");
        g.bench_function("get_messages_32", |b| {
            b.iter(|| {
                let off = rng.gen_range(0..MESSAGES - 32);
                let r = store.get_messages(TOPIC, 0, off, 32, 256 * 1024, &|_| true);
                assert_eq!(r.msg_count, 32);
                r
            })
        });
        g.bench_function("max_offset", |b| b.iter(|| store.max_offset(TOPIC, 0)));
        g.finish();
        store.shutdown().await.expect("shutdown");
    })
    .expect("executor");
}

criterion_group!(benches, cq_lookup);
criterion_main!(benches);
