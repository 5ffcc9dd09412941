//! POP consumption (RocketMQ 5's POP_MESSAGE, ACK_MESSAGE, BATCH_ACK_MESSAGE,
//! CHANGE_MESSAGE_INVISIBLETIME) against the real broker, driven by ramjet's `PopConsumer`:
//! popped messages stay invisible, acknowledged ones never come back, unacknowledged ones come
//! back from the pop retry topic with their reconsume count + 1 (and go to the DLQ at the
//! group's limit), orderly pops lock their queue, a parked pop wakes on a send, and a SIGKILL
//! loses nothing that was not acknowledged.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use ramjet_net::client::{PopConsumer, PopOptions, PopStatus, Popped};
use ramjet_net::runtime::{start_executor, ExecutorOptions, Pin};
use ramjet_tests::ops::{self, OutMessage, SendOutcome};
use ramjet_tests::rust_client::new_client;
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn};

const UPDATE_GROUP: i32 = 200;

fn run<F, T>(f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    start_executor("e2e-pop", Pin::Unbound, ExecutorOptions::default(), f)
        .expect("executor")
        .join()
        .expect("the executor's checks passed")
}

/// Sends `bodies` to (topic, queue), one after another.
fn send_all(c: &mut Conn, topic: &str, queue: i32, bodies: &[String]) {
    for b in bodies {
        let tag = if b.contains("odd") { "odd" } else { "even" };
        let msg = OutMessage::new(b.clone().into_bytes()).prop("TAGS", tag);
        match ops::send(c, topic, queue, &msg).expect("send") {
            SendOutcome::Ok(_) => {}
            other => panic!("send {b}: {other:?}"),
        }
    }
}

fn bodies(popped: &[Popped]) -> Vec<String> {
    popped
        .iter()
        .map(|p| String::from_utf8_lossy(&p.message.body).into_owned())
        .collect()
}

fn opts(max: i32, invisible_ms: u64, poll_ms: u64) -> PopOptions {
    PopOptions {
        max,
        invisible: Duration::from_millis(invisible_ms),
        poll: Duration::from_millis(poll_ms),
        ..PopOptions::default()
    }
}

/// Pops until `want` messages came or `within` passed.
async fn pop_until(c: &PopConsumer, want: usize, o: &PopOptions, within: Duration) -> Vec<Popped> {
    let until = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < until {
        let b = c.pop(o).await.expect("pop");
        got.extend(b.messages);
    }
    got
}

fn set_group(c: &mut Conn, body: serde_json::Value) {
    let r = c
        .call(UPDATE_GROUP, &[], body.to_string().as_bytes())
        .expect("update group");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

#[test]
fn popped_messages_are_invisible_acked_ones_stay_gone_the_rest_come_back() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_basic";
    ops::create_topic_on(&broker, topic, 2);
    let mut c = ops::connect(broker.shard_addr(0));
    let sent: Vec<String> = (0..10)
        .map(|i| format!("m{i}-{}", if i % 2 == 1 { "odd" } else { "even" }))
        .collect();
    send_all(&mut c, topic, 0, &sent[..5]);
    send_all(&mut c, topic, 1, &sent[5..]);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let (first, again, retried) = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g1", &t);
        let o = opts(32, 2_000, 0);
        let first = pop_until(&pc, 10, &o, Duration::from_secs(10)).await;
        assert_eq!(first.len(), 10, "{:?}", bodies(&first));
        for p in &first {
            assert_eq!(p.message.topic, t);
            assert_eq!(p.real_topic, t);
            assert_eq!(p.message.reconsume_times, 0);
        }
        // Invisible: nothing to pop right away.
        let again = pc.pop(&o).await.expect("pop").messages;
        // Ack the even ones: four one by one, the fifth in a batch ack.
        let evens: Vec<&Popped> = first
            .iter()
            .filter(|p| !String::from_utf8_lossy(&p.message.body).contains("odd"))
            .collect();
        assert_eq!(evens.len(), 5);
        for p in &evens[..4] {
            assert!(pc.ack(p).await.expect("ack"), "acked in flight");
        }
        pc.ack_all(&[evens[4].clone()]).await.expect("batch ack");
        // A second ack of the same handle finds nothing in flight.
        assert!(!pc.ack(evens[0]).await.expect("ack again"));
        // The odd ones come back after their 2 s, from the pop retry topic.
        let wait = opts(32, 30_000, 1_000);
        let retried = pop_until(&pc, 5, &wait, Duration::from_secs(15)).await;
        for p in &retried {
            assert_eq!(p.message.topic, t, "the topic popped");
            assert_eq!(p.real_topic, format!("%RETRY%pop_g1_{t}"));
            assert_eq!(p.message.reconsume_times, 1);
            assert!(pc.ack(p).await.expect("ack retried"));
        }
        let none = pc.pop(&opts(32, 30_000, 0)).await.expect("pop");
        assert_eq!(none.status, PopStatus::NotFound);
        (bodies(&first), again.len(), bodies(&retried))
    });
    let mut sorted = first.clone();
    sorted.sort();
    let mut expect = sent.clone();
    expect.sort();
    assert_eq!(sorted, expect, "every message popped once");
    assert_eq!(again, 0, "popped messages are invisible");
    let odd: BTreeSet<String> = sent.iter().filter(|b| b.contains("odd")).cloned().collect();
    assert_eq!(retried.iter().cloned().collect::<BTreeSet<_>>(), odd);
    assert_eq!(
        retried.len(),
        5,
        "each unacknowledged message once: {retried:?}"
    );
    // Everything acknowledged: the group's offsets are at each queue's end.
    for q in 0..2 {
        assert_eq!(ops::committed_offset(&mut c, "pop_g1", topic, q), Some(5));
    }
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popInflight"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popDeadlineKeys"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popRevived"), 5);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popAcked"), 10);
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.popStale"),
        1,
        "the second ack"
    );
}

#[test]
fn invisible_time_changes_tags_filter_and_a_parked_pop_wakes_on_a_send() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_change";
    ops::create_topic_on(&broker, topic, 1);
    let mut c = ops::connect(broker.shard_addr(0));
    send_all(
        &mut c,
        topic,
        0,
        &["a-even".into(), "b-odd".into(), "c-even".into()],
    );
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let addr = broker.shard_addr(0);
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let waited = run(move || async move {
        // Tags: only the even ones; the odd one is skipped for this group.
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g2", &t).with_tags("even");
        let got = pc.pop(&opts(32, 60_000, 0)).await.expect("pop").messages;
        assert_eq!(bodies(&got), ["a-even", "c-even"]);
        // SQL92 on the properties: only the odd one, for another group.
        let sql = PopConsumer::new(new_client(&namesrv), "pop_g2sql", &t).with_sql("TAGS = 'odd'");
        let odd = sql
            .pop(&opts(32, 60_000, 0))
            .await
            .expect("sql pop")
            .messages;
        assert_eq!(bodies(&odd), ["b-odd"]);
        assert!(sql.ack(&odd[0]).await.expect("ack odd"));
        let (mut a, c_msg) = (got[0].clone(), got[1].clone());
        let old = a.clone();
        // Visible again in 1 s instead of 60 s: the old handle no longer acks it.
        pc.change_invisible(&mut a, Duration::from_millis(1_000))
            .await
            .expect("change invisible time");
        assert_ne!(a.handle, old.handle);
        assert!(!pc.ack(&old).await.expect("ack with the old handle"));
        let back = pop_until(&pc, 1, &opts(32, 60_000, 1_000), Duration::from_secs(10)).await;
        assert_eq!(bodies(&back), ["a-even"]);
        assert_eq!(back[0].message.reconsume_times, 1);
        assert!(pc.ack(&back[0]).await.expect("ack"));
        assert!(pc.ack(&c_msg).await.expect("ack c"));
        // Changing a message no longer in flight is refused with NO_MESSAGE.
        let mut gone = c_msg.clone();
        let e = pc
            .change_invisible(&mut gone, Duration::from_secs(5))
            .await
            .expect_err("not in flight");
        assert!(e.to_string().contains("(208)"), "{e}");
        // A pop with nothing there parks; a send 300 ms later wakes it.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut c = ops::connect(addr);
            send_all(&mut c, "e2e_pop_change", 0, &["d-even".into()]);
        });
        let t0 = Instant::now();
        let b = pc.pop(&opts(32, 60_000, 20_000)).await.expect("parked pop");
        let waited = t0.elapsed();
        sender.join().expect("sender");
        assert_eq!(b.status, PopStatus::Found);
        assert_eq!(bodies(&b.messages), ["d-even"]);
        waited
    });
    // Woken by the arrival, long before its 20 s poll time ended.
    assert!(waited < Duration::from_secs(10), "woke after {waited:?}");
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.popInvisibleChanged"),
        1
    );
    // Everything acknowledged but the parked pop's message: its batch's key alone is left.
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popInflight"), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popDeadlineKeys"), 1);
}

#[test]
fn an_orderly_pop_locks_its_queue_until_acked_and_repeats_it_in_order() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_order";
    ops::create_topic_on(&broker, topic, 1);
    let mut c = ops::connect(broker.shard_addr(0));
    let sent: Vec<String> = (0..4).map(|i| format!("o{i}")).collect();
    send_all(&mut c, topic, 0, &sent);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g3", &t);
        let o = PopOptions {
            order: true,
            ..opts(2, 1_500, 0)
        };
        let first = pc.pop(&o).await.expect("pop").messages;
        assert_eq!(bodies(&first), ["o0", "o1"]);
        // Locked: neither an orderly nor an unordered pop gets o2 meanwhile.
        assert!(pc.pop(&o).await.expect("pop").messages.is_empty());
        assert!(pc
            .pop(&opts(2, 1_500, 0))
            .await
            .expect("pop")
            .messages
            .is_empty());
        // Unacknowledged past 1.5 s: the same two again, attempt 1, from the same queue.
        std::thread::sleep(Duration::from_millis(1_700));
        let again = pc.pop(&o).await.expect("pop").messages;
        assert_eq!(bodies(&again), ["o0", "o1"]);
        for p in &again {
            assert_eq!(p.real_topic, t, "not through the retry topic");
            assert_eq!(p.message.reconsume_times, 1);
        }
        // Ack o0 only: still locked.
        assert!(pc.ack(&again[0]).await.expect("ack"));
        assert!(pc.pop(&o).await.expect("pop").messages.is_empty());
        assert!(pc.ack(&again[1]).await.expect("ack"));
        let next = pc.pop(&o).await.expect("pop").messages;
        assert_eq!(bodies(&next), ["o2", "o3"]);
        assert_eq!(next[0].message.reconsume_times, 0);
        pc.ack_all(&next).await.expect("batch ack");
    });
    assert_eq!(ops::committed_offset(&mut c, "pop_g3", topic, 0), Some(4));
}

#[test]
fn never_acknowledged_messages_reach_the_dlq_at_the_groups_limit() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_dlq";
    ops::create_topic_on(&broker, topic, 1);
    let mut c = ops::connect(broker.shard_addr(0));
    set_group(
        &mut c,
        serde_json::json!({"groupName": "pop_g4", "retryMaxTimes": 1}),
    );
    send_all(&mut c, topic, 0, &["doomed".into()]);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let attempts = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g4", &t);
        let o = opts(32, 1_000, 1_000);
        let mut attempts = Vec::new();
        // Popped and never acknowledged: once from the topic, once from the retry topic.
        for _ in 0..2 {
            let got = pop_until(&pc, 1, &o, Duration::from_secs(10)).await;
            assert_eq!(bodies(&got), ["doomed"]);
            attempts.push(got[0].message.reconsume_times);
        }
        // The second expiry sends it to %DLQ%pop_g4, not to another pop.
        let none = pop_until(&pc, 1, &o, Duration::from_secs(4)).await;
        assert!(none.is_empty(), "{:?}", bodies(&none));
        attempts
    });
    assert_eq!(attempts, [0, 1]);
    let dlq = ops::pull_all(
        &mut c,
        "dlq_reader",
        "%DLQ%pop_g4",
        0,
        0,
        Duration::from_secs(10),
    );
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].body, b"doomed");
    assert_eq!(dlq[0].reconsume_times, 2);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popRevivedDlq"), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popInflight"), 0);
}

#[test]
fn after_a_sigkill_every_unacknowledged_pop_comes_again() {
    let spec = BrokerSpec {
        broker_toml: "offset_persist_interval_ms = 100\n".into(),
        ..BrokerSpec::default()
    }
    .flush(ramjet_tests::Flush::Sync);
    let mut broker = Broker::start(spec);
    let topic = "e2e_pop_crash";
    ops::create_topic_on(&broker, topic, 1);
    let mut c = ops::connect(broker.shard_addr(0));
    let sent: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    send_all(&mut c, topic, 0, &sent);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g5", &t);
        // k0..k3 with a 1 s invisible time; k4, k5 with 60 s.
        let short = pc.pop(&opts(4, 1_000, 0)).await.expect("pop").messages;
        assert_eq!(bodies(&short), ["k0", "k1", "k2", "k3"]);
        let long = pc.pop(&opts(4, 60_000, 0)).await.expect("pop").messages;
        assert_eq!(bodies(&long), ["k4", "k5"]);
        // k0, k1 acknowledged; k2, k3 expire and are revived into the retry topic.
        assert!(pc.ack(&short[0]).await.expect("ack"));
        assert!(pc.ack(&short[1]).await.expect("ack"));
    });
    let until = Instant::now() + Duration::from_secs(10);
    while ops::runtime_counter(&mut c, "ramjet.popRevived") < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popRevived"), 2);
    // Offsets persisted (every 100 ms); k4, k5 still in flight.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ops::committed_offset(&mut c, "pop_g5", topic, 0), Some(4));
    drop(c);
    broker.kill();
    broker.restart();
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let (again, reconsumes) = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g5", &t);
        let got = pop_until(&pc, 4, &opts(32, 60_000, 500), Duration::from_secs(20)).await;
        pc.ack_all(&got).await.expect("batch ack");
        let mut r: Vec<(String, i32)> = got
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.message.body).into_owned(),
                    p.message.reconsume_times,
                )
            })
            .collect();
        r.sort();
        (bodies(&got).len(), r)
    });
    // k2, k3 from the retry topic (their copies were durable before the kill), k4, k5 again
    // from the topic (in flight when it died); k0, k1 were acknowledged and stay gone.
    assert_eq!(again, 4);
    assert_eq!(
        reconsumes,
        [
            ("k2".to_string(), 1),
            ("k3".to_string(), 1),
            ("k4".to_string(), 0),
            ("k5".to_string(), 0)
        ]
    );
}

/// Many small pops, each acknowledged: every handle matches its message (the answer's pop
/// time is the one the broker keeps), so nothing is left in flight or acknowledged stale.
#[test]
fn every_handle_of_many_small_pops_acknowledges_its_message() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_many";
    ops::create_topic_on(&broker, topic, 4);
    let mut c = ops::connect(broker.shard_addr(0));
    let sent: Vec<String> = (0..400).map(|i| format!("n{i}")).collect();
    for q in 0..4 {
        let part: Vec<String> = sent.iter().skip(q).step_by(4).cloned().collect();
        send_all(&mut c, topic, q as i32, &part);
    }
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let (got, unacked) = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g7", &t);
        let o = opts(1, 60_000, 0);
        let (mut got, mut unacked) = (Vec::new(), 0);
        for _ in 0..500 {
            let b = pc.pop(&o).await.expect("pop");
            for p in &b.messages {
                if !pc.ack(p).await.expect("ack") {
                    unacked += 1;
                }
            }
            got.extend(bodies(&b.messages));
            if got.len() == 400 {
                break;
            }
        }
        (got, unacked)
    });
    let mut got = got;
    got.sort();
    let mut expect = sent;
    expect.sort();
    assert_eq!(got, expect, "each message once");
    assert_eq!(unacked, 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popStale"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popInflight"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popDeadlineKeys"), 0);
}

/// An admin reset (INVOKE_BROKER_TO_RESET_OFFSET) of a queue a group pops: the next pop starts
/// at the reset offset at once (what was in flight is dropped, its handles are stale), and the
/// group's commits count again after it.
#[test]
fn an_admin_reset_moves_the_pop_frontier_and_drops_what_was_in_flight() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_reset";
    ops::create_topic_on(&broker, topic, 1);
    let mut c = ops::connect(broker.shard_addr(0));
    let sent: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    send_all(&mut c, topic, 0, &sent);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let mut admin = ops::connect(broker.shard_addr(0));
    let (first, after, stale, inflight) = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g9", &t);
        let o = opts(32, 60_000, 0);
        let first = pop_until(&pc, 6, &o, Duration::from_secs(10)).await;
        let ext = [
            ("topic", t.clone()),
            ("group", "pop_g9".to_string()),
            ("timestamp", "0".to_string()),
            ("isForce", "true".to_string()),
            ("queueId", "0".to_string()),
            ("offset", "2".to_string()),
        ];
        let r = admin.call(222, &ext, &[]).expect("reset");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        // Invisible for a minute, yet the reset hands r2.. out again now.
        let after = pop_until(&pc, 4, &o, Duration::from_secs(10)).await;
        let inflight = ops::runtime_counter(&mut admin, "ramjet.popInflight");
        let stale = pc.ack(&first[0]).await.expect("ack of a dropped handle");
        pc.ack_all(&after).await.expect("batch ack");
        (bodies(&first), bodies(&after), stale, inflight)
    });
    assert_eq!(first, sent);
    assert_eq!(after, sent[2..]);
    assert_eq!(inflight, 4, "only the pop after the reset is in flight");
    assert!(
        !stale,
        "a handle from before the reset names nothing in flight"
    );
    assert_eq!(ops::committed_offset(&mut c, "pop_g9", topic, 0), Some(6));
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popInflight"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popDeadlineKeys"), 0);
}

/// PEEK_MESSAGE, NOTIFICATION and POLLING_INFO on the wire: peeking shows what the group
/// would pop next and pops nothing; a notification says whether there is something to pop
/// (waiting for a send when asked to); polling info counts the group's parked pops.
#[test]
fn peek_notification_and_polling_info_change_nothing() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_peek";
    ops::create_topic_on(&broker, topic, 2);
    let mut c = ops::connect(broker.shard_addr(0));
    for g in ["pop_g10", "pop_g11"] {
        set_group(
            &mut c,
            serde_json::json!({"groupName": g, "consumeEnable": true, "retryMaxTimes": 3}),
        );
    }
    let notify = |c: &mut Conn, group: &str, poll_ms: u64| -> i32 {
        c.send_request(
            200054,
            &[
                ("consumerGroup", group.to_string()),
                ("topic", topic.to_string()),
                ("queueId", "-1".to_string()),
                ("pollTime", poll_ms.to_string()),
                ("bornTime", ops::now_ms().to_string()),
            ],
            &[],
        )
        .expect("notification")
    };
    let has_msg = |c: &mut Conn, opaque: i32| -> bool {
        let r = c
            .wait_response(200054, opaque, Duration::from_secs(10))
            .expect("notification answer");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        assert_eq!(r.ext_str("pollingFull"), "false");
        r.ext_str("hasMsg") == "true"
    };
    let peek = |c: &mut Conn, group: &str, max: i32| {
        let r = c
            .call(
                200052,
                &[
                    ("consumerGroup", group.to_string()),
                    ("topic", topic.to_string()),
                    ("queueId", "-1".to_string()),
                    ("maxMsgNums", max.to_string()),
                ],
                &[],
            )
            .expect("peek");
        let bodies: Vec<String> = ops::decode_pull_body(&r.body)
            .expect("records")
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        (r.code, r.ext_i64("restNum"), bodies)
    };
    let o = notify(&mut c, "pop_g10", 0);
    assert!(!has_msg(&mut c, o), "nothing sent yet");
    assert_eq!(
        peek(&mut c, "pop_g10", 4),
        (response::PULL_NOT_FOUND, 0, vec![])
    );
    let sent: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    send_all(&mut c, topic, 0, &sent[..3]);
    send_all(&mut c, topic, 1, &sent[3..]);
    let o = notify(&mut c, "pop_g10", 0);
    assert!(has_msg(&mut c, o));
    // Four of five, queue 0 first; again the same four: peeking popped nothing.
    let first = peek(&mut c, "pop_g10", 4);
    assert_eq!(first, (response::SUCCESS, 1, sent[..4].to_vec()));
    assert_eq!(peek(&mut c, "pop_g10", 4), first);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.popped"), 0);

    // Pop all five (invisible for a minute): nothing left to pop, peek or notify.
    let namesrv = broker.namesrv();
    let t = topic.to_string();
    let popped = run(move || async move {
        let pc = PopConsumer::new(new_client(&namesrv), "pop_g10", &t);
        bodies(&pop_until(&pc, 5, &opts(32, 60_000, 0), Duration::from_secs(10)).await)
    });
    assert_eq!(popped.len(), 5);
    let o = notify(&mut c, "pop_g10", 0);
    assert!(!has_msg(&mut c, o), "all in flight");
    assert_eq!(peek(&mut c, "pop_g10", 4).0, response::PULL_NOT_FOUND);

    // A pop of pop_g10 parked for 10 s: POLLING_INFO counts it.
    let mut parked = ops::connect(broker.shard_addr(0));
    let pop_opaque = parked
        .send_request(
            200050,
            &[
                ("consumerGroup", "pop_g10".to_string()),
                ("topic", topic.to_string()),
                ("queueId", "-1".to_string()),
                ("maxMsgNums", "32".to_string()),
                ("invisibleTime", "60000".to_string()),
                ("pollTime", "10000".to_string()),
                ("bornTime", ops::now_ms().to_string()),
                ("initMode", "0".to_string()),
                ("expType", "TAG".to_string()),
                ("exp", "*".to_string()),
            ],
            &[],
        )
        .expect("parked pop");
    let polling = |c: &mut Conn, group: &str| -> i64 {
        let r = c
            .call(
                200055,
                &[
                    ("consumerGroup", group.to_string()),
                    ("topic", topic.to_string()),
                    ("queueId", "-1".to_string()),
                ],
                &[],
            )
            .expect("polling info");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
        r.ext_i64("pollingNum")
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while polling(&mut c, "pop_g10") == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(polling(&mut c, "pop_g10"), 1);
    assert_eq!(polling(&mut c, "pop_g11"), 0);
    // pop_g11 has popped nothing: a notification says so at once.
    let o = notify(&mut c, "pop_g11", 0);
    assert!(has_msg(&mut c, o));
    // The parked pop takes the next send.
    send_all(&mut c, topic, 1, &["k5".to_string()]);
    let r = parked
        .wait_response(200050, pop_opaque, Duration::from_secs(10))
        .expect("parked pop answered");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let got: Vec<String> = ops::decode_pull_body(&r.body)
        .expect("records")
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(got, ["k5"]);
    assert_eq!(polling(&mut c, "pop_g10"), 0);
    // pop_g10 has everything in flight: its notification parks until a send.
    let mut waiter = ops::connect(broker.shard_addr(0));
    let started = std::time::Instant::now();
    let o = notify(&mut waiter, "pop_g10", 10_000);
    std::thread::sleep(Duration::from_millis(300));
    send_all(&mut c, topic, 0, &["k6".to_string()]);
    assert!(has_msg(&mut waiter, o));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Refusals: an unknown group, a queue the topic lacks.
    let r = c
        .call(
            200055,
            &[
                ("consumerGroup", "nobody".to_string()),
                ("topic", topic.to_string()),
                ("queueId", "-1".to_string()),
            ],
            &[],
        )
        .expect("polling info");
    assert_eq!(r.code, 26, "SUBSCRIPTION_GROUP_NOT_EXIST: {:?}", r.remark);
    let r = c
        .call(
            200052,
            &[
                ("consumerGroup", "pop_g10".to_string()),
                ("topic", topic.to_string()),
                ("queueId", "9".to_string()),
                ("maxMsgNums", "4".to_string()),
            ],
            &[],
        )
        .expect("peek");
    assert_eq!(r.code, response::INVALID_PARAMETER);
}

#[test]
fn bad_pop_requests_get_clear_errors() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_bad";
    ops::create_topic_on(&broker, topic, 2);
    let mut c = ops::connect(broker.shard_addr(0));
    let pop = |c: &mut Conn, queue: &str, max: &str, invisible: &str, exp_type: &str| {
        c.call(
            200050,
            &[
                ("consumerGroup", "pop_g6".to_string()),
                ("topic", topic.to_string()),
                ("queueId", queue.to_string()),
                ("maxMsgNums", max.to_string()),
                ("invisibleTime", invisible.to_string()),
                ("pollTime", "0".to_string()),
                ("bornTime", "0".to_string()),
                ("initMode", "0".to_string()),
                ("expType", exp_type.to_string()),
                ("exp", "*".to_string()),
            ],
            &[],
        )
        .expect("pop")
    };
    let r = pop(&mut c, "5", "1", "60000", "TAG");
    assert_eq!(r.code, response::INVALID_PARAMETER, "{:?}", r.remark);
    assert!(r
        .remark
        .unwrap_or_default()
        .contains("queueId[5] is illegal"));
    let r = pop(&mut c, "-1", "33", "60000", "TAG");
    assert_eq!(r.code, response::INVALID_PARAMETER);
    let r = pop(&mut c, "-1", "1", "10", "TAG");
    assert_eq!(r.code, response::INVALID_PARAMETER);
    assert!(r.remark.unwrap_or_default().contains("invisibleTime"));
    let r = pop(&mut c, "-1", "1", "60000", "XPATH");
    assert_eq!(r.code, response::SUBSCRIPTION_PARSE_FAILED);
    let r = pop(&mut c, "-1", "1", "60000", "TAG");
    assert_eq!(
        r.code,
        response::PULL_NOT_FOUND,
        "an empty topic: {:?}",
        r.remark
    );
    // An ack with a handle that does not parse, and one outside the queue.
    let ack = |c: &mut Conn, extra: &str, offset: &str| {
        c.call(
            200051,
            &[
                ("consumerGroup", "pop_g6".to_string()),
                ("topic", topic.to_string()),
                ("queueId", "0".to_string()),
                ("extraInfo", extra.to_string()),
                ("offset", offset.to_string()),
            ],
            &[],
        )
        .expect("ack")
    };
    let r = ack(&mut c, "garbage", "0");
    assert_eq!(r.code, response::INVALID_PARAMETER);
    assert!(r.remark.unwrap_or_default().contains("extraInfo"));
    let r = ack(&mut c, "0 1 60000 0 0 ramjet-s0 0 0", "0");
    assert_eq!(r.code, response::NO_MESSAGE, "{:?}", r.remark);
    let r = c.call(200151, &[], b"{not json").expect("batch ack");
    assert_eq!(r.code, response::INVALID_PARAMETER);
    // The broker is still serving.
    send_all(&mut c, topic, 0, &["after".into()]);
    let r = pop(&mut c, "0", "1", "60000", "TAG");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

/// `ramjet consume --pop`: prints each message once and acknowledges it (a second run finds
/// nothing); with `--no-ack` what it popped comes again after `--invisible-s`.
#[test]
fn the_cli_pops_prints_and_acknowledges() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_pop_cli";
    ops::create_topic_on(&broker, topic, 2);
    let mut c = ops::connect(broker.shard_addr(0));
    send_all(&mut c, topic, 0, &["c0".into(), "c1".into()]);
    send_all(&mut c, topic, 1, &["c2".into()]);
    ops::wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(ramjet_tests::setup::ramjet_bin())
            .args(["consume", "--topic", topic, "--pop", "--json"])
            .args(args)
            .args(["--namesrv", &broker.namesrv()])
            .output()
            .expect("run ramjet");
        assert!(
            out.status.success(),
            "ramjet consume {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<(String, i64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                (
                    v["body"].as_str().unwrap_or("").to_string(),
                    v["reconsume_times"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        got.sort();
        got
    };
    let first = cli(&["--group", "cli_g", "--count", "3", "--idle-timeout", "10"]);
    assert_eq!(
        first,
        [("c0".into(), 0), ("c1".into(), 0), ("c2".into(), 0)]
    );
    assert!(cli(&["--group", "cli_g", "--idle-timeout", "1.5"]).is_empty());
    // Not acknowledged: the same message again after its second, from the retry topic.
    let args = [
        "--group",
        "cli_n",
        "--count",
        "1",
        "--no-ack",
        "--invisible-s",
        "1",
        "--idle-timeout",
        "10",
    ];
    let once = cli(&args);
    assert_eq!(once.len(), 1);
    // (The first run popped all three and printed one; all three come back, retried once.)
    let again = cli(&args);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, 1, "{again:?}");
    assert!(
        ["c0", "c1", "c2"].contains(&again[0].0.as_str()),
        "{again:?}"
    );
    assert_eq!(ops::committed_offset(&mut c, "cli_g", topic, 0), Some(2));
}
