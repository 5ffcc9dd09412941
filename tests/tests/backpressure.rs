//! Back-pressure of sends: a send that finds the CommitLog's unflushed bytes at
//! `store.max_unflushed_bytes` waits for the flush (`broker.send_busy_wait_ms`), with its
//! connection's later requests kept in order behind it, instead of being refused; with the wait
//! set to 0 it is refused with SYSTEM_BUSY at once. Either way nothing refused is stored and
//! everything acknowledged is.

use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::{request, response};
use ramjet_tests::{Broker, BrokerSpec, Conn};

const TOPIC: &str = "e2e_backpressure";
/// Messages per batch and body bytes per message: 256 KiB of bodies per request.
const PER_BATCH: usize = 64;
const BODY: usize = 4096;
/// Requests written back to back before any answer is read: ~50 MiB against a 40 MiB limit.
const REQUESTS: usize = 200;
/// The smallest limit the store accepts with the default 4 MiB message limit is ~8 MiB;
/// 40 MiB leaves whole batches room.
const MAX_UNFLUSHED: u64 = 40 * 1024 * 1024;

fn spec(wait_ms: u64) -> BrokerSpec {
    BrokerSpec {
        broker_toml: format!("send_busy_wait_ms = {wait_ms}\n"),
        // Nothing flushes on its own during the test: only a full store asks for a flush.
        store_toml: format!(
            "max_unflushed_bytes = {MAX_UNFLUSHED}\nflush_bytes = 1073741824\nflush_interval_ms = 600000\n"
        ),
        segment_size_bytes: 256 * 1024 * 1024,
        ..BrokerSpec::default()
    }
}

/// Writes every request, then reads every answer: (answers in request order, queue 0's max
/// offset afterwards, the broker's `ramjet.sendsHeld`).
fn pipelined_batches(broker: &Broker) -> (Vec<i32>, i64, u64) {
    let addr = broker.shard_addr(0);
    let mut c = Conn::connect(addr).expect("connect");
    c.set_timeout(Duration::from_secs(60));
    let created = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(created.code, response::SUCCESS, "{:?}", created.remark);
    let msgs: Vec<OutMessage> = (0..PER_BATCH)
        .map(|i| OutMessage::new(vec![(i % 251) as u8; BODY]))
        .collect();
    let body = ops::batch_body(&msgs);
    let ext = ops::send_ext(TOPIC, 0, 0, b"", true);
    let mut opaques = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        opaques.push(
            c.send_request(request::SEND_BATCH_MESSAGE, &ext, &body)
                .expect("write request"),
        );
    }
    let codes = opaques
        .iter()
        .map(|&o| {
            c.wait_response(request::SEND_BATCH_MESSAGE, o, Duration::from_secs(60))
                .expect("answer")
                .code
        })
        .collect();
    let max = ops::max_offset(&mut c, TOPIC, 0).expect("max offset");
    let held = ops::runtime_counter(&mut c, "ramjet.sendsHeld");
    (codes, max, held)
}

#[test]
fn a_full_store_holds_sends_until_the_flush_makes_room() {
    let mut broker = Broker::start(spec(10_000));
    let (codes, max, held) = pipelined_batches(&broker);
    let refused: Vec<_> = codes.iter().filter(|&&c| c != response::SUCCESS).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    assert_eq!(max, (REQUESTS * PER_BATCH) as i64, "every message stored");
    assert!(
        held >= 1,
        "no send waited ({held}): the limit was never reached"
    );
    broker.stop();
}

#[test]
fn without_a_wait_a_full_store_refuses_and_stores_only_what_it_acknowledged() {
    let mut broker = Broker::start(spec(0));
    let (codes, max, held) = pipelined_batches(&broker);
    let ok = codes.iter().filter(|&&c| c == response::SUCCESS).count();
    let busy = codes
        .iter()
        .filter(|&&c| c == response::SYSTEM_BUSY)
        .count();
    assert_eq!(ok + busy, REQUESTS, "unexpected codes: {codes:?}");
    assert!(busy >= 1, "nothing refused: the limit was never reached");
    assert_eq!(max, (ok * PER_BATCH) as i64, "stored = acknowledged");
    assert_eq!(held, 0);
    broker.stop();
}
