//! Read coalescing (`broker.read_coalesce_us`) against the real broker: a connection that sends
//! requests one at a time and waits for each answer is never made to wait for a tick; bursts
//! of pipelined requests are read on the shard's tick and every one is answered, in order, at
//! consecutive queue offsets, and stored byte for byte. With coalescing off the same traffic
//! gives the same answers and no tick runs.

use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::{encode_frame, request, response};
use ramjet_tests::{Broker, BrokerSpec, Conn, Serialize};

const TOPIC: &str = "e2e_read_coalesce";
/// One request at a time, each awaited.
const PING_PONG: usize = 20;
/// Bursts of pipelined sends, each written with one `write`.
const BURSTS: usize = 5;
const PER_BURST: usize = 40;
/// Time between bursts: less than the 10 ms tick, so later bursts arrive while the connection
/// waits for a tick.
const BURST_GAP: Duration = Duration::from_millis(4);

fn body(i: usize) -> Vec<u8> {
    format!("coalesce-{i:05}-")
        .into_bytes()
        .into_iter()
        .chain((0..100).map(|b| ((i + b) % 251) as u8))
        .collect()
}

/// Runs the traffic against a broker with `read_coalesce_us = period_us`; returns
/// (`ramjet.readTicks` after the ping-pong phase, `ramjet.readTicks` and
/// `ramjet.coalescedReads` at the end).
fn run(period_us: u64) -> (u64, u64, u64) {
    let broker = Broker::start(BrokerSpec {
        broker_toml: format!("read_coalesce_us = {period_us}\n"),
        ..BrokerSpec::default()
    });
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    c.set_timeout(Duration::from_secs(30));
    let created = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(created.code, response::SUCCESS, "{:?}", created.remark);

    // One request in flight at a time: every read holds one frame, so no read waits for a tick.
    for i in 0..PING_PONG {
        let ok = ops::send(&mut c, TOPIC, 0, &OutMessage::new(body(i)))
            .expect("send")
            .expect_ok("ping-pong send");
        assert_eq!(ok.queue_offset, i as i64);
    }
    let ticks_after_ping_pong = ops::runtime_counter(&mut c, "ramjet.readTicks");

    // Pipelined bursts, each one write of PER_BURST frames, answers read only at the end.
    let mut opaques = Vec::with_capacity(BURSTS * PER_BURST);
    let mut next_opaque = 1_000_000;
    for burst in 0..BURSTS {
        let mut bytes = Vec::new();
        for k in 0..PER_BURST {
            let i = PING_PONG + burst * PER_BURST + k;
            let msg = OutMessage::new(body(i));
            let ext = ops::send_ext(TOPIC, 0, 0, &msg.properties(), false);
            bytes.extend(encode_frame(
                Serialize::Json,
                request::SEND_MESSAGE_V2,
                next_opaque,
                0,
                &ext,
                &msg.body,
            ));
            opaques.push(next_opaque);
            next_opaque += 1;
        }
        c.write_raw(&bytes).expect("write burst");
        std::thread::sleep(BURST_GAP);
    }
    for (k, &opaque) in opaques.iter().enumerate() {
        let resp = c
            .wait_response(request::SEND_MESSAGE_V2, opaque, Duration::from_secs(30))
            .expect("answer to a pipelined send");
        assert_eq!(resp.code, response::SUCCESS, "send {k}: {:?}", resp.remark);
        assert_eq!(
            resp.ext_i64("queueOffset"),
            (PING_PONG + k) as i64,
            "pipelined send {k} stored out of order"
        );
    }
    let total = PING_PONG + BURSTS * PER_BURST;
    let pulled = ops::pull_all(
        &mut c,
        "coalesce_group",
        TOPIC,
        0,
        0,
        Duration::from_secs(30),
    );
    assert_eq!(pulled.len(), total);
    for (i, m) in pulled.iter().enumerate() {
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(m.body, body(i), "message {i} stored with other bytes");
    }
    let ticks = ops::runtime_counter(&mut c, "ramjet.readTicks");
    let coalesced = ops::runtime_counter(&mut c, "ramjet.coalescedReads");
    (ticks_after_ping_pong, ticks, coalesced)
}

#[test]
fn pipelined_bursts_are_read_on_ticks_and_answered_in_order() {
    let (ping_pong_ticks, ticks, coalesced) = run(10_000);
    println!("read coalescing: {ticks} ticks, {coalesced} coalesced reads");
    assert_eq!(
        ping_pong_ticks, 0,
        "one request at a time never waits for a tick"
    );
    assert!(ticks >= 1, "bursts of pipelined requests made no tick");
    assert!(
        coalesced >= 1,
        "no read after a tick found the bursts sent while the connection waited ({ticks} ticks)"
    );
    assert!(
        coalesced <= ticks,
        "{coalesced} coalesced reads from {ticks} ticks on one connection"
    );
}

#[test]
fn coalescing_off_answers_the_same_and_never_ticks() {
    let (ping_pong_ticks, ticks, coalesced) = run(0);
    assert_eq!((ping_pong_ticks, ticks, coalesced), (0, 0, 0));
}
