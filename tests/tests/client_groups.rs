//! The project's Rust client's consumer-group features against the real broker binary:
//! clustering rebalance covers every queue exactly once (also after a member leaves),
//! broadcasting delivers everything to everyone, committed offsets survive a restart, and a
//! message the handler asks to see again comes back through the group's retry topic.
//!
//! A producer surviving the loss of one broker is in `failover.rs` (separate broker processes).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::remoting::body::MessageModel;
use ramjet_net::client::selector::QueueSelector;
use ramjet_net::client::transport::{self, block_on};
use ramjet_net::client::{
    ConsumeResult, Message, MessageQueue, Producer, ProducerConfig, PushConsumer, SendStatus,
};
use ramjet_tests::ops;
use ramjet_tests::rust_client::{consumer_config, new_client, send_bodies, start_recording, Seen};
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn};

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(20);
/// Poll step of the bounded waits.
const STEP: Duration = Duration::from_millis(50);
/// After the expected count arrived, wait this long to catch duplicates.
const QUIET: Duration = Duration::from_millis(800);

fn broker_with_topic(topic: &str, queues: u32) -> Broker {
    let broker = Broker::start(BrokerSpec::default());
    let mut c =
        Conn::connect(broker.shard_addr(0)).unwrap_or_else(|e| panic!("connect to shard 0: {e}"));
    let r = ops::create_topic(&mut c, topic, queues)
        .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    assert_eq!(r.code, response::SUCCESS, "create {topic}: {:?}", r.remark);
    ops::wait_route(broker.namesrv_addr(), topic, 1, WAIT);
    broker
}

fn total(seen: &[Seen]) -> usize {
    seen.iter().map(|s| s.borrow().len()).sum()
}

/// Waits until the consumers together saw at least `n` messages, then a quiet period.
async fn wait_total(seen: &[Seen], n: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    while total(seen) < n && Instant::now() < deadline {
        transport::sleep(STEP).await;
    }
    transport::sleep(QUIET).await;
    total(seen)
}

/// The queues of `topic` once the name server has a route for it (bounded by [`WAIT`]).
async fn queues_when_routed(producer: &Producer, topic: &str) -> Vec<MessageQueue> {
    let deadline = Instant::now() + WAIT;
    loop {
        match producer.queues(topic).await {
            Ok(q) if !q.is_empty() => return q,
            r => assert!(
                Instant::now() < deadline,
                "no route for {topic} within {WAIT:?}: {r:?}"
            ),
        }
        transport::sleep(STEP).await;
    }
}

/// The queues assigned across `consumers`, with how many consumers hold each.
fn assignment(consumers: &[&PushConsumer]) -> BTreeMap<MessageQueue, usize> {
    let mut m = BTreeMap::new();
    for c in consumers {
        for q in c.assigned() {
            *m.entry(q).or_insert(0) += 1;
        }
    }
    m
}

/// Waits until every queue of `all` is held by exactly one of `consumers` and each consumer
/// holds at least one; returns the last assignment seen (per consumer).
async fn wait_exact_cover(
    consumers: &[&PushConsumer],
    all: &BTreeSet<MessageQueue>,
) -> Vec<BTreeSet<MessageQueue>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = assignment(consumers);
        let covered = m.len() == all.len()
            && m.iter().all(|(q, n)| *n == 1 && all.contains(q))
            && consumers.iter().all(|c| !c.assigned().is_empty());
        if covered || Instant::now() >= deadline {
            return consumers
                .iter()
                .map(|c| c.assigned().into_iter().collect())
                .collect();
        }
        transport::sleep(STEP).await;
    }
}

fn assert_exact_cover(per: &[BTreeSet<MessageQueue>], all: &BTreeSet<MessageQueue>, what: &str) {
    let mut union = BTreeSet::new();
    let mut count = 0;
    for s in per {
        assert!(!s.is_empty(), "{what}: a consumer holds no queue: {per:?}");
        count += s.len();
        union.extend(s.iter().cloned());
    }
    assert_eq!(&union, all, "{what}: union of assignments: {per:?}");
    assert_eq!(count, all.len(), "{what}: overlapping assignments: {per:?}");
}

/// Each body of `expected` was seen exactly once across `seen`, and nothing else.
fn assert_exactly_once(seen: &[Seen], expected: &[String], what: &str) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in seen {
        for b in s.borrow().iter() {
            *counts.entry(b.clone()).or_insert(0) += 1;
        }
    }
    let want: BTreeMap<String, usize> = expected.iter().map(|b| (b.clone(), 1)).collect();
    assert_eq!(counts, want, "{what}");
}

#[test]
fn clustering_group_covers_every_queue_once_and_rebalances_when_a_member_leaves() {
    const TOPIC: &str = "e2e_groups_cluster";
    const GROUP: &str = "e2e_groups_cg";
    const QUEUES: u32 = 8;
    const FIRST: usize = 40;
    const SECOND: usize = 40;
    let broker = broker_with_topic(TOPIC, QUEUES);
    let namesrv = broker.namesrv();
    let out = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_groups_pg"));
        let all: BTreeSet<MessageQueue> = producer
            .queues(TOPIC)
            .await
            .unwrap_or_else(|e| panic!("queues of {TOPIC}: {e}"))
            .into_iter()
            .collect();
        let (c1, s1) = start_recording(new_client(&namesrv), consumer_config(GROUP, TOPIC)).await;
        let (c2, s2) = start_recording(new_client(&namesrv), consumer_config(GROUP, TOPIC)).await;
        let (c3, s3) = start_recording(new_client(&namesrv), consumer_config(GROUP, TOPIC)).await;
        // The group's retry topic (created by the members' heartbeats) is shared out too.
        let mut all = all;
        all.extend(queues_when_routed(&producer, &format!("%RETRY%{GROUP}")).await);
        let three = wait_exact_cover(&[&c1, &c2, &c3], &all).await;

        let first: Vec<String> = (0..FIRST).map(|i| format!("first-{i}")).collect();
        send_bodies(&producer, TOPIC, &first).await;
        let seen = [s1.clone(), s2.clone(), s3.clone()];
        wait_total(&seen, FIRST).await;
        let first_seen: Vec<Vec<String>> = seen.iter().map(|s| s.borrow().clone()).collect();

        c3.shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown consumer 3: {e}"));
        // No explicit `rebalance()` here: calling it while the consumer's own rebalance loop
        // runs can start two pull loops for one queue (see the helper's report).
        let two = wait_exact_cover(&[&c1, &c2], &all).await;

        s1.borrow_mut().clear();
        s2.borrow_mut().clear();
        let s3_before = s3.borrow().len();
        let second: Vec<String> = (0..SECOND).map(|i| format!("second-{i}")).collect();
        send_bodies(&producer, TOPIC, &second).await;
        let survivors = [s1.clone(), s2.clone()];
        wait_total(&survivors, SECOND).await;
        let s3_after = s3.borrow().len();
        let _ = c1.shutdown().await;
        let _ = c2.shutdown().await;
        (
            all,
            three,
            first,
            first_seen,
            two,
            second,
            survivors,
            s3_after - s3_before,
        )
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let (all, three, first, first_seen, two, second, survivors, s3_late) = out;
    assert_eq!(
        all.iter().filter(|q| q.topic == TOPIC).count(),
        QUEUES as usize,
        "subscribable queues: {all:?}"
    );
    assert_eq!(
        all.len(),
        QUEUES as usize + 1,
        "the retry topic's queue: {all:?}"
    );
    assert_exact_cover(&three, &all, "three consumers");
    let first_seen: Vec<Seen> = first_seen
        .into_iter()
        .map(|v| Rc::new(RefCell::new(v)))
        .collect();
    assert_exactly_once(&first_seen, &first, "first batch across three consumers");
    assert_exact_cover(&two, &all, "two consumers after one left");
    assert_exactly_once(&survivors, &second, "second batch across two consumers");
    assert_eq!(s3_late, 0, "the stopped consumer kept consuming");
}

#[test]
fn broadcasting_consumers_each_receive_every_message() {
    const TOPIC: &str = "e2e_groups_bcast";
    const GROUP: &str = "e2e_groups_bg";
    const N: usize = 30;
    let broker = broker_with_topic(TOPIC, 4);
    let namesrv = broker.namesrv();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let offset_dir = dir.path().to_path_buf();
    let (expected, got) = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_groups_pg"));
        let bodies: Vec<String> = (0..N).map(|i| format!("bcast-{i}")).collect();
        send_bodies(&producer, TOPIC, &bodies).await;
        let mut cfg = consumer_config(GROUP, TOPIC);
        cfg.model = MessageModel::Broadcasting;
        cfg.offset_dir = offset_dir;
        let (a, sa) = start_recording(new_client(&namesrv), cfg.clone()).await;
        let (b, sb) = start_recording(new_client(&namesrv), cfg).await;
        wait_total(&[sa.clone(), sb.clone()], 2 * N).await;
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
        let got = vec![sa.borrow().clone(), sb.borrow().clone()];
        (bodies, got)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let want: BTreeSet<String> = expected.iter().cloned().collect();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), N, "consumer {i} count: {g:?}");
        let set: BTreeSet<String> = g.iter().cloned().collect();
        assert_eq!(set, want, "consumer {i} bodies");
    }
}

#[test]
fn committed_offsets_survive_a_consumer_restart() {
    const TOPIC: &str = "e2e_groups_restart";
    const GROUP: &str = "e2e_groups_rg";
    const N: usize = 25;
    const M: usize = 15;
    let broker = broker_with_topic(TOPIC, 4);
    let namesrv = broker.namesrv();
    let out = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_groups_pg"));
        let old: Vec<String> = (0..N).map(|i| format!("old-{i}")).collect();
        send_bodies(&producer, TOPIC, &old).await;
        let (a, sa) = start_recording(new_client(&namesrv), consumer_config(GROUP, TOPIC)).await;
        wait_total(std::slice::from_ref(&sa), N).await;
        a.shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown first consumer: {e}"));
        let first_seen = sa.borrow().clone();

        // What the broker holds for the group now.
        let reader = new_client(&namesrv);
        let queues = producer
            .queues(TOPIC)
            .await
            .unwrap_or_else(|e| panic!("queues of {TOPIC}: {e}"));
        let mut committed = 0i64;
        for q in &queues {
            let c = reader
                .committed_offset(GROUP, q)
                .await
                .unwrap_or_else(|e| panic!("committed offset of {q:?}: {e}"));
            committed += c.unwrap_or(0);
        }

        let new: Vec<String> = (0..M).map(|i| format!("new-{i}")).collect();
        send_bodies(&producer, TOPIC, &new).await;
        let (b, sb) = start_recording(new_client(&namesrv), consumer_config(GROUP, TOPIC)).await;
        wait_total(std::slice::from_ref(&sb), M).await;
        let _ = b.shutdown().await;
        let second_seen = sb.borrow().clone();
        (old, first_seen, committed, new, second_seen)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let (old, first_seen, committed, new, second_seen) = out;
    let as_set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    assert_eq!(first_seen.len(), N, "first consumer: {first_seen:?}");
    assert_eq!(as_set(&first_seen), as_set(&old));
    assert_eq!(
        committed, N as i64,
        "offsets committed by the first consumer"
    );
    assert_eq!(
        second_seen.len(),
        M,
        "restarted consumer must see only the new messages: {second_seen:?}"
    );
    assert_eq!(as_set(&second_seen), as_set(&new));
}

#[test]
fn a_message_consumed_later_comes_back_through_the_retry_topic() {
    const TOPIC: &str = "e2e_groups_retry";
    const GROUP: &str = "e2e_groups_rg";
    // Level 3 (the first retry's) is 1 s here.
    let spec = BrokerSpec {
        broker_toml: "message_delay_level = \"1s 1s 1s 1s\"\nschedule_check_ms = 20\n".into(),
        ..BrokerSpec::default()
    };
    let broker = Broker::start(spec);
    let mut c =
        Conn::connect(broker.shard_addr(0)).unwrap_or_else(|e| panic!("connect to shard 0: {e}"));
    let r = ops::create_topic(&mut c, TOPIC, 2).unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    ops::wait_route(broker.namesrv_addr(), TOPIC, 1, WAIT);
    let namesrv = broker.namesrv();
    // (body, topic seen by the handler, reconsume count, ms since the first delivery)
    type Delivery = (String, String, i32, u128);
    let deliveries = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_groups_pg"));
        let seen: Rc<RefCell<Vec<Delivery>>> = Rc::new(RefCell::new(Vec::new()));
        let first_at: Rc<RefCell<Option<Instant>>> = Rc::new(RefCell::new(None));
        let (s, f) = (seen.clone(), first_at.clone());
        let consumer = PushConsumer::start(
            new_client(&namesrv),
            consumer_config(GROUP, TOPIC),
            Rc::new(move |m| {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                let t0 = *f.borrow_mut().get_or_insert_with(Instant::now);
                s.borrow_mut().push((
                    body.clone(),
                    m.topic.clone(),
                    m.reconsume_times,
                    t0.elapsed().as_millis(),
                ));
                // "flaky" fails its first delivery only.
                if body == "flaky" && m.reconsume_times == 0 {
                    ConsumeResult::ReconsumeLater
                } else {
                    ConsumeResult::Success
                }
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("start consumer: {e}"));
        send_bodies(
            &producer,
            TOPIC,
            &["steady".to_string(), "flaky".to_string()],
        )
        .await;
        let deadline = Instant::now() + WAIT;
        while seen.borrow().len() < 3 && Instant::now() < deadline {
            transport::sleep(STEP).await;
        }
        transport::sleep(QUIET).await;
        let stats = consumer.stats();
        let _ = consumer.shutdown().await;
        assert_eq!(stats.reconsume_later, 1, "{stats:?}");
        let out = seen.borrow().clone();
        out
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let mut by_body: BTreeMap<String, Vec<(String, i32, u128)>> = BTreeMap::new();
    for (b, t, n, ms) in deliveries {
        by_body.entry(b).or_default().push((t, n, ms));
    }
    assert_eq!(by_body["steady"].len(), 1, "{by_body:?}");
    let flaky = &by_body["flaky"];
    assert_eq!(
        flaky.len(),
        2,
        "delivered once, then once more from the retry topic: {by_body:?}"
    );
    assert_eq!((flaky[0].0.as_str(), flaky[0].1), (TOPIC, 0));
    // The retry: under its original topic, counted, after the level's delay.
    assert_eq!((flaky[1].0.as_str(), flaky[1].1), (TOPIC, 1));
    assert!(
        flaky[1].2 >= flaky[0].2 + 900,
        "retried after {} ms",
        flaky[1].2 - flaky[0].2
    );
}

#[test]
fn orderly_consumers_hold_their_queues_locks_and_keep_each_keys_order() {
    const TOPIC: &str = "e2e_groups_orderly";
    const GROUP: &str = "e2e_groups_og";
    const KEYS: usize = 4;
    const PER_KEY: usize = 10;
    let broker = broker_with_topic(TOPIC, 4);
    let namesrv = broker.namesrv();
    let addr = broker.shard_addr(0);
    let out = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_groups_pg"));
        let mut all: BTreeSet<MessageQueue> = producer
            .queues(TOPIC)
            .await
            .unwrap_or_else(|e| panic!("queues of {TOPIC}: {e}"))
            .into_iter()
            .collect();
        let mut cfg = consumer_config(GROUP, TOPIC);
        cfg.orderly = true;
        let (c1, s1) = start_recording(new_client(&namesrv), cfg.clone()).await;
        let (c2, s2) = start_recording(new_client(&namesrv), cfg).await;
        all.extend(queues_when_routed(&producer, &format!("%RETRY%{GROUP}")).await);
        let split = wait_exact_cover(&[&c1, &c2], &all).await;
        // Every assigned queue is locked at the broker by its consumer.
        let mut c = Conn::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        let locks = ops::runtime_counter(&mut c, "ramjet.queueLocks");
        let mut sent = Vec::new();
        for i in 0..PER_KEY {
            for k in 0..KEYS {
                let body = format!("ord-k{k}-{i:02}");
                let m =
                    Message::new(TOPIC, body.clone().into_bytes()).with_keys(format!("key-{k}"));
                let r = producer
                    .send_with(m, &QueueSelector::KeyHash)
                    .await
                    .unwrap_or_else(|e| panic!("send {body}: {e}"));
                assert_eq!(r.status, SendStatus::SendOk);
                sent.push(body);
            }
        }
        let seen = [s1.clone(), s2.clone()];
        wait_total(&seen, sent.len()).await;
        let per: Vec<Vec<String>> = seen.iter().map(|s| s.borrow().clone()).collect();
        // One leaves: it releases its locks, and the other takes every queue.
        c2.shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown consumer 2: {e}"));
        let one = wait_exact_cover(&[&c1], &all).await;
        let locks_after = ops::runtime_counter(&mut c, "ramjet.queueLocks");
        let _ = c1.shutdown().await;
        (all, split, locks, sent, per, one, locks_after)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let (all, split, locks, sent, per, one, locks_after) = out;
    assert_exact_cover(&split, &all, "two orderly consumers");
    assert_eq!(locks as usize, all.len(), "one lock per assigned queue");
    assert_exact_cover(&one, &all, "one orderly consumer after the other left");
    assert_eq!(
        locks_after as usize,
        all.len(),
        "the leaver's locks went to the stayer"
    );
    let seen: Vec<Seen> = per
        .iter()
        .map(|v| Rc::new(RefCell::new(v.clone())))
        .collect();
    assert_exactly_once(&seen, &sent, "orderly delivery");
    for k in 0..KEYS {
        let tag = format!("ord-k{k}-");
        let by: Vec<&Vec<String>> = per
            .iter()
            .filter(|v| v.iter().any(|b| b.starts_with(&tag)))
            .collect();
        assert_eq!(by.len(), 1, "key {k} consumed by one member");
        let got: Vec<&String> = by[0].iter().filter(|b| b.starts_with(&tag)).collect();
        let want: Vec<String> = (0..PER_KEY).map(|i| format!("{tag}{i:02}")).collect();
        assert_eq!(
            got,
            want.iter().collect::<Vec<_>>(),
            "key {k} in the order sent"
        );
    }
}
