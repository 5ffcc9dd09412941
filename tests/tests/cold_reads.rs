//! Pull answers of data that is only on disk: with `broker.cold_reads_off_shard` (the default)
//! the ranges not in the page cache are read on the blocking thread first and counted in
//! `ramjet.coldReads`, and the kernel is asked to read ahead of what goes out
//! (`ramjet.readAheads`); without it the shard sends them as before. Either way every message
//! comes back byte for byte, in order.
//!
//! The CommitLog is written with O_DIRECT (the default `io_mode`), which leaves nothing in the
//! page cache, and the tail cache (16 MiB in tests) is far smaller than the data, so the early messages can only
//! come from the segment files on disk.

use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};

const TOPIC: &str = "e2e_cold_reads";
/// 40 MiB of bodies against the test broker's 16 MiB tail cache.
const BATCHES: usize = 160;
const PER_BATCH: usize = 64;
const BODY: usize = 4096;

fn body(i: usize) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; BODY];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b
}

/// Stores 40 MiB (flush = sync: on disk when acknowledged), pulls it all back from offset 0
/// and returns `ramjet.coldReads` and `ramjet.readAheads` afterwards.
fn store_and_pull_back(off_shard: bool) -> (u64, u64) {
    let spec = BrokerSpec {
        flush: Flush::Sync,
        broker_toml: format!("cold_reads_off_shard = {off_shard}\n"),
        ..BrokerSpec::default()
    };
    let mut broker = Broker::start(spec);
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    c.set_timeout(Duration::from_secs(30));
    let created = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(created.code, response::SUCCESS, "{:?}", created.remark);
    for b in 0..BATCHES {
        let msgs: Vec<OutMessage> = (0..PER_BATCH)
            .map(|i| OutMessage::new(body(b * PER_BATCH + i)))
            .collect();
        let sent = ops::send_batch(&mut c, TOPIC, 0, &msgs)
            .expect("send batch")
            .expect_ok(&format!("batch {b}"));
        assert_eq!(sent.queue_offset, (b * PER_BATCH) as i64);
    }
    let before = ops::runtime_counter(&mut c, "ramjet.coldReads");
    assert_eq!(before, 0, "nothing pulled yet");
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.readAheads"), 0);
    let pulled = ops::pull_all(&mut c, "cold_group", TOPIC, 0, 0, Duration::from_secs(60));
    assert_eq!(pulled.len(), BATCHES * PER_BATCH, "every message pulled");
    for (i, m) in pulled.iter().enumerate() {
        assert_eq!(m.queue_offset, i as i64, "queue offsets in order");
        assert!(m.body == body(i), "body of message {i} differs");
    }
    let cold = ops::runtime_counter(&mut c, "ramjet.coldReads");
    let cold_bytes = ops::runtime_counter(&mut c, "ramjet.coldReadBytes");
    assert!(
        cold_bytes >= cold,
        "cold reads {cold} but only {cold_bytes} bytes"
    );
    let read_aheads = ops::runtime_counter(&mut c, "ramjet.readAheads");
    broker.stop();
    (cold, read_aheads)
}

#[test]
fn data_on_disk_is_read_in_off_the_shard_and_pulled_back_intact() {
    let (cold, read_aheads) = store_and_pull_back(true);
    // At least 24 MiB come from the files (40 MiB stored, 16 MiB of tail cache); a window of
    // 4 MiB is asked for each time half of the last is left: 6 or more asks.
    assert!(
        read_aheads >= 6,
        "only {read_aheads} read-ahead asks for >= 24 MiB read from the files"
    );
    if ramjet_tests::setup::kernel_has_cachestat() {
        assert!(
            cold >= 1,
            "no pull range was read in off the shard, although the data was only on disk"
        );
    } else {
        assert_eq!(cold, 0, "no cachestat(2): nothing can be told cold");
    }
}

#[test]
fn with_cold_reads_on_the_shard_nothing_is_read_in_first() {
    assert_eq!(store_and_pull_back(false), (0, 0));
}
