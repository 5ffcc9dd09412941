//! Consumer group administration against the real broker binary.
//!
//! - Offset resets (INVOKE_BROKER_TO_RESET_OFFSET, mqadmin resetOffsetByTime): the protocol
//!   (pending resets, ignored stale commits, parked pulls woken with PULL_OFFSET_MOVED,
//!   refusals), a clustering group reset while it consumes (the project's client and `ramjet
//!   admin reset-offset`), and a broadcasting group reset through RESET_CONSUMER_CLIENT_OFFSET
//!   pushed to its members.
//! - Requests passed to one consumer and answered by it (GET_CONSUMER_RUNNING_INFO,
//!   CONSUME_MESSAGE_DIRECTLY): the answer relayed unchanged, the stored message attached, a
//!   consumer that does not answer, one that is not online, one that disconnects.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ramjet_core::remoting::body::queue_table::parse_offset_table;
use ramjet_core::remoting::body::{MessageModel, MessageQueue as BodyQueue};
use ramjet_net::client::admin::Admin;
use ramjet_net::client::transport::{self, block_on};
use ramjet_net::client::{Message, Producer, ProducerConfig, PushConsumerConfig};
use ramjet_tests::ops::{self, OutMessage, SendOutcome};
use ramjet_tests::rust_client::{self, new_client, send_bodies, start_recording, Seen};
use ramjet_tests::wire::{encode_frame, request, response, Serialize, FLAG_RESPONSE};
use ramjet_tests::{Broker, BrokerSpec, Command, Conn};

const WAIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(50);
const QUIET: Duration = Duration::from_millis(800);
const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
const PULL_OFFSET_MOVED: i32 = 21;

fn commit(c: &mut Conn, group: &str, topic: &str, queue: i32, offset: i64) -> Command {
    ops::commit_offset(c, group, topic, queue, offset)
}

fn committed(c: &mut Conn, group: &str, topic: &str, queue: i32) -> i64 {
    ops::committed_offset(c, group, topic, queue)
        .unwrap_or_else(|| panic!("no committed offset of {group} {topic}/{queue}"))
}

/// A reset request: all queues by `timestamp`, or `queue` to `offset`.
fn reset(
    c: &mut Conn,
    group: &str,
    topic: &str,
    timestamp: i64,
    force: bool,
    queue: Option<(i32, i64)>,
) -> Command {
    let mut ext = vec![
        ("topic", topic.to_string()),
        ("group", group.to_string()),
        ("timestamp", timestamp.to_string()),
        ("isForce", force.to_string()),
    ];
    if let Some((q, o)) = queue {
        ext.push(("queueId", q.to_string()));
        ext.push(("offset", o.to_string()));
    }
    c.call(INVOKE_BROKER_TO_RESET_OFFSET, &ext, &[])
        .unwrap_or_else(|e| panic!("reset {group} {topic}: {e}"))
}

/// The (queue id, offset) pairs of a successful reset's ResetOffsetBody.
fn reset_table(r: &Command, topic: &str, broker_name: &str) -> Vec<(i32, i64)> {
    assert_eq!(r.code, response::SUCCESS, "reset: {:?}", r.remark);
    let t = parse_offset_table(&r.body, "offsetTable", "ResetOffsetBody")
        .unwrap_or_else(|e| panic!("reset body {:?}: {e}", String::from_utf8_lossy(&r.body)));
    let mut out: Vec<(i32, i64)> = t
        .into_iter()
        .map(|(q, o): (BodyQueue, i64)| {
            assert_eq!(
                (q.topic.as_str(), q.broker_name.as_str()),
                (topic, broker_name)
            );
            (q.queue_id, o)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_reset_commits_at_once_ignores_older_commits_and_moves_the_next_pull() {
    const TOPIC: &str = "e2e_reset_wire";
    const G: &str = "e2e_reset_g1";
    let broker = Broker::start(BrokerSpec::default());
    let name = broker.shard_broker_name(0);
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut c, TOPIC, 2).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    for (queue, n) in [(0, 6), (1, 2)] {
        for i in 0..n {
            let msg = OutMessage::new(format!("q{queue}-{i}").into_bytes());
            match ops::send(&mut c, TOPIC, queue, &msg).expect("send") {
                SendOutcome::Ok(ok) => assert_eq!(ok.queue_offset, i),
                other => panic!("send {queue}/{i}: {other:?}"),
            }
        }
    }
    for (q, o) in [(0, 6), (1, 2)] {
        assert_eq!(commit(&mut c, G, TOPIC, q, o).code, response::SUCCESS);
    }

    // Queue 1 back to 1: committed at once; the consumer's commit from before the reset is
    // ignored (as RocketMQ 5 does) until its next pull, which is moved to the new offset.
    let mut puller = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = reset(&mut c, G, TOPIC, -1, true, Some((1, 1)));
    assert_eq!(reset_table(&r, TOPIC, &name), vec![(1, 1)]);
    assert_eq!(committed(&mut c, G, TOPIC, 1), 1, "committed at once");
    let r = commit(&mut c, G, TOPIC, 1, 2);
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(
        r.remark.as_deref(),
        Some("Offset has been previously reset")
    );
    assert_eq!(committed(&mut c, G, TOPIC, 1), 1);
    let p = ops::pull(&mut puller, G, TOPIC, 1, 2, 32, 0).expect("pull");
    assert_eq!(
        (p.code, p.next_begin_offset, p.max_offset),
        (PULL_OFFSET_MOVED, 1, 2),
        "{p:?}"
    );
    assert_eq!(p.remark.as_deref(), Some("OFFSET_RESET"));
    assert_eq!(commit(&mut c, G, TOPIC, 1, 2).remark, None);
    assert_eq!(committed(&mut c, G, TOPIC, 1), 2);

    // A pull parked at the end of queue 0 is answered by the reset, with the new offset.
    let parked = ops::send_pull_request(&mut puller, G, TOPIC, 0, 6, 32, 20_000).expect("pull");
    std::thread::sleep(Duration::from_millis(200));
    let r = reset(&mut c, G, TOPIC, -1, true, Some((0, 2)));
    assert_eq!(reset_table(&r, TOPIC, &name), vec![(0, 2)]);
    let moved = puller
        .wait_response(request::PULL_MESSAGE, parked, Duration::from_secs(10))
        .expect("the parked pull is answered by the reset, not its 20 s hold");
    let moved = ops::pull_outcome(moved);
    assert_eq!(
        (moved.code, moved.next_begin_offset, moved.max_offset),
        (PULL_OFFSET_MOVED, 2, 6),
        "{moved:?}"
    );
    assert_eq!(committed(&mut c, G, TOPIC, 0), 2);
    // The reset was taken: pulls read from it and commits count again.
    let p = ops::pull(&mut puller, G, TOPIC, 0, 2, 32, 0).expect("pull");
    assert_eq!(p.code, response::SUCCESS);
    let bodies: Vec<String> = p
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(bodies, ["q0-2", "q0-3", "q0-4", "q0-5"]);
    assert_eq!(commit(&mut c, G, TOPIC, 0, 3).remark, None);
    assert_eq!(committed(&mut c, G, TOPIC, 0), 3);

    // Every queue by time: 0 = the start of each.
    let r = reset(&mut c, G, TOPIC, 0, true, None);
    assert_eq!(reset_table(&r, TOPIC, &name), vec![(0, 0), (1, 0)]);
    for q in 0..2 {
        let p = ops::pull(&mut puller, G, TOPIC, q, 5, 32, 0).expect("pull");
        assert_eq!(
            (p.code, p.next_begin_offset),
            (PULL_OFFSET_MOVED, 0),
            "{p:?}"
        );
    }
    for (q, o) in [(0, 1), (1, 2)] {
        assert_eq!(commit(&mut c, G, TOPIC, q, o).remark, None);
    }
    // Not forced: a queue whose committed offset is below the target keeps it...
    let r = reset(&mut c, G, TOPIC, -1, false, None);
    assert_eq!(reset_table(&r, TOPIC, &name), vec![(0, 1), (1, 2)]);
    // ...and one above it moves back.
    let r = reset(&mut c, G, TOPIC, 0, false, None);
    assert_eq!(reset_table(&r, TOPIC, &name), vec![(0, 0), (1, 0)]);
    assert_eq!(committed(&mut c, G, TOPIC, 1), 0);

    // Refusals say what is wrong and change nothing.
    let r = reset(&mut c, G, "e2e_reset_nope", 0, true, None);
    assert_eq!(r.code, response::TOPIC_NOT_EXIST, "{:?}", r.remark);
    let r = reset(&mut c, "e2e_reset_nobody", TOPIC, 0, true, None);
    assert_eq!(r.code, 26, "SUBSCRIPTION_GROUP_NOT_EXIST: {:?}", r.remark);
    let r = reset(&mut c, G, TOPIC, -1, true, Some((0, 7)));
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("Target offset 7 not in consume queue range [0-6]")
    );
    let r = reset(&mut c, G, TOPIC, -1, true, Some((2, 0)));
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(
        r.remark
            .as_deref()
            .is_some_and(|m| m.contains("queueId[2] is illegal")),
        "{:?}",
        r.remark
    );
    assert_eq!(committed(&mut c, G, TOPIC, 0), 0);
}

/// A reset still waiting for the group's next pull survives a SIGKILL of the broker (it is
/// written with the offsets): after the restart the consumer's commit from before the reset
/// is still ignored and its next pull is moved.
#[test]
fn a_pending_reset_survives_a_sigkill() {
    const TOPIC: &str = "e2e_reset_restart";
    const G: &str = "e2e_reset_g9";
    let mut broker = Broker::start(BrokerSpec {
        broker_toml: "offset_persist_interval_ms = 100\n".into(),
        ..BrokerSpec::default()
    });
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    for i in 0..4 {
        let msg = OutMessage::new(format!("m{i}").into_bytes());
        match ops::send(&mut c, TOPIC, 0, &msg).expect("send") {
            SendOutcome::Ok(_) => {}
            other => panic!("send {i}: {other:?}"),
        }
    }
    assert_eq!(commit(&mut c, G, TOPIC, 0, 4).code, response::SUCCESS);
    let r = reset(&mut c, G, TOPIC, -1, true, Some((0, 1)));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    // Written within the persist interval; then SIGKILL and a restart on the same files.
    std::thread::sleep(Duration::from_millis(600));
    broker.restart();
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect after the restart");
    assert_eq!(committed(&mut c, G, TOPIC, 0), 1);
    let r = commit(&mut c, G, TOPIC, 0, 4);
    assert_eq!(
        r.remark.as_deref(),
        Some("Offset has been previously reset"),
        "the commit from before the reset is still held off"
    );
    assert_eq!(committed(&mut c, G, TOPIC, 0), 1);
    let p = ops::pull(&mut c, G, TOPIC, 0, 4, 32, 0).expect("pull");
    assert_eq!(
        (p.code, p.next_begin_offset),
        (PULL_OFFSET_MOVED, 1),
        "{p:?}"
    );
    assert_eq!(commit(&mut c, G, TOPIC, 0, 2).remark, None);
    assert_eq!(committed(&mut c, G, TOPIC, 0), 2);
}

/// The shared test consumer, with 2 s long polls: a reset must wake them.
fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    let mut cfg = rust_client::consumer_config(group, topic);
    cfg.suspend = Duration::from_millis(2_000);
    cfg
}

/// Waits (bounded) until `seen` holds at least `n` bodies, then a quiet period.
async fn wait_seen(seen: &Seen, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    while seen.borrow().len() < n && Instant::now() < deadline {
        transport::sleep(STEP).await;
    }
    transport::sleep(QUIET).await;
    seen.borrow().clone()
}

/// Sends `old-*`, then (after a gap) `new-*`: returns both lists and a time between them.
async fn old_then_new(
    producer: &Producer,
    topic: &str,
    n: usize,
) -> (Vec<String>, i64, Vec<String>) {
    let old: Vec<String> = (0..n).map(|i| format!("old-{i}")).collect();
    let new: Vec<String> = (0..n).map(|i| format!("new-{i}")).collect();
    send_bodies(producer, topic, &old).await;
    transport::sleep(Duration::from_millis(50)).await;
    let between = ops::now_ms();
    transport::sleep(Duration::from_millis(50)).await;
    send_bodies(producer, topic, &new).await;
    (old, between, new)
}

fn topic_on(broker: &Broker, topic: &str, queues: u32) {
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut c, topic, queues).expect("create topic");
    assert_eq!(r.code, response::SUCCESS, "create {topic}: {:?}", r.remark);
    ops::wait_route(broker.namesrv_addr(), topic, 1, WAIT);
}

/// (queue id, offset) of `ramjet admin reset-offset --json` output.
fn cli_table(out: &str) -> Vec<(i64, i64)> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues: {out}"))
        .iter()
        .map(|q| {
            (
                q["queue_id"].as_i64().unwrap_or(-1),
                q["offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn a_consuming_clustering_group_reset_to_a_time_sees_the_later_messages_again() {
    const TOPIC: &str = "e2e_reset_cluster";
    const G: &str = "e2e_reset_cg";
    const N: usize = 10;
    let broker = Broker::start(BrokerSpec::default());
    topic_on(&broker, TOPIC, 2);
    let namesrv = broker.namesrv();
    let (old, new, table, seen, committed_sum) = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_reset_pg"));
        let (old, between, new) = old_then_new(&producer, TOPIC, N).await;
        let (consumer, seen) =
            start_recording(new_client(&namesrv), consumer_config(G, TOPIC)).await;
        wait_seen(&seen, 2 * N).await;
        let admin = Admin::new(new_client(&namesrv));
        let table = admin
            .reset_offsets(G, TOPIC, between, true, None)
            .await
            .unwrap_or_else(|e| panic!("reset: {e}"));
        let seen_all = wait_seen(&seen, 3 * N).await;
        // The group's offsets end where the topic ends.
        let reader = new_client(&namesrv);
        let deadline = Instant::now() + WAIT;
        let mut committed = 0;
        while Instant::now() < deadline {
            committed = 0;
            for (mq, _) in &table {
                committed += reader
                    .committed_offset(G, mq)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0);
            }
            if committed == 2 * N as i64 {
                break;
            }
            transport::sleep(STEP).await;
        }
        consumer
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        (old, new, table, seen_all, committed)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    // Each queue went to its first `new-*` message: the `old-*` ones before it add up to N.
    assert_eq!(table.len(), 2, "{table:?}");
    assert_eq!(
        table.iter().map(|(_, o)| o).sum::<i64>(),
        N as i64,
        "{table:?}"
    );
    assert_eq!(seen.len(), 3 * N, "old once, new twice: {seen:?}");
    let as_set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    assert_eq!(
        as_set(&seen[..2 * N]),
        as_set(&[old.clone(), new.clone()].concat())
    );
    assert_eq!(
        as_set(&seen[2 * N..]),
        as_set(&new),
        "after the reset: {seen:?}"
    );
    assert_eq!(committed_sum, 2 * N as i64);

    // The CLI on the group, now offline: the next consumer starts where it says.
    let out = broker
        .admin_cli(&["reset-offset", G, TOPIC, "--to", "earliest", "--json"])
        .unwrap_or_else(|e| panic!("reset to earliest: {e}"));
    assert_eq!(cli_table(&out), vec![(0, 0), (1, 0)], "{out}");
    let out = broker
        .admin_cli(&[
            "reset-offset",
            G,
            TOPIC,
            "--to",
            "latest",
            "--no-force",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("reset to latest, not forced: {e}"));
    assert_eq!(
        cli_table(&out),
        vec![(0, 0), (1, 0)],
        "only back when not forced: {out}"
    );
    let q0 = format!("{}:0", broker.shard_broker_name(0));
    let out = broker
        .admin_cli(&["reset-offset", G, TOPIC, "--queue", &q0, "--offset", "1"])
        .unwrap_or_else(|e| panic!("reset one queue: {e}"));
    assert!(out.contains("offsets reset on 1 queue(s)"), "{out}");
    let err = broker
        .admin_cli(&["reset-offset", G, TOPIC, "--queue", &q0, "--offset", "999"])
        .expect_err("offset out of range");
    assert!(err.contains("not in consume queue range"), "{err}");
    let err = broker
        .admin_cli(&["reset-offset", "e2e_reset_nobody", TOPIC, "--to", "1h"])
        .expect_err("unknown group");
    assert!(err.contains("does not exist"), "{err}");
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    assert_eq!(committed(&mut c, G, TOPIC, 0), 1);
    assert_eq!(committed(&mut c, G, TOPIC, 1), 0);
}

#[test]
fn a_broadcasting_groups_members_are_each_moved_by_the_reset() {
    const TOPIC: &str = "e2e_reset_bcast";
    const G: &str = "e2e_reset_bg";
    const N: usize = 10;
    let broker = Broker::start(BrokerSpec::default());
    topic_on(&broker, TOPIC, 2);
    let namesrv = broker.namesrv();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let offset_dir = dir.path().to_path_buf();
    let (new, table, seen) = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_reset_pg"));
        let (_old, between, new) = old_then_new(&producer, TOPIC, N).await;
        let mut cfg = consumer_config(G, TOPIC);
        cfg.model = MessageModel::Broadcasting;
        cfg.offset_dir = offset_dir;
        let (a, sa) = start_recording(new_client(&namesrv), cfg.clone()).await;
        let (b, sb) = start_recording(new_client(&namesrv), cfg).await;
        wait_seen(&sa, 2 * N).await;
        wait_seen(&sb, 2 * N).await;
        let admin = Admin::new(new_client(&namesrv));
        let table = admin
            .reset_offsets(G, TOPIC, between, true, None)
            .await
            .unwrap_or_else(|e| panic!("reset: {e}"));
        let seen = vec![wait_seen(&sa, 3 * N).await, wait_seen(&sb, 3 * N).await];
        let _ = a.shutdown().await;
        let _ = b.shutdown().await;
        (new, table, seen)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    assert_eq!(
        table.iter().map(|(_, o)| o).sum::<i64>(),
        N as i64,
        "{table:?}"
    );
    let as_set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.len(), 3 * N, "member {i}: {s:?}");
        assert_eq!(
            as_set(&s[2 * N..]),
            as_set(&new),
            "member {i} after the reset: {s:?}"
        );
    }
}

/// Reads (bounded) the next request the broker sends on `c`.
fn next_request(c: &mut Conn, code: i32) -> Command {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = c
            .read_frame(left)
            .unwrap_or_else(|e| panic!("waiting for request {code}: {e}"));
        if !f.is_response() && f.code == code {
            return f;
        }
    }
}

#[test]
fn admin_calls_reach_the_named_consumer_and_its_answer_comes_back() {
    const TOPIC: &str = "e2e_calls";
    const G: &str = "e2e_calls_g";
    const CLIENT: &str = "127.0.0.1@calls";
    const RUNNING_INFO: i32 = 307;
    const CONSUME_DIRECTLY: i32 = 309;
    let broker = Broker::start(BrokerSpec {
        broker_toml: "client_call_timeout_ms = 600\n".into(),
        ..BrokerSpec::default()
    });
    let mut admin = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut admin, TOPIC, 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    let msg = OutMessage::new(b"run me".to_vec());
    let SendOutcome::Ok(sent) = ops::send(&mut admin, TOPIC, 0, &msg).expect("send") else {
        panic!("send refused");
    };
    // The consumer: a member of G on its own connection.
    let mut consumer = Conn::connect(broker.shard_addr(0)).expect("connect");
    let hb = serde_json::json!({
        "clientID": CLIENT,
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": G, "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": false,
            "subscriptionDataSet": [{"classFilterMode": false, "topic": TOPIC, "subString": "*",
                "tagsSet": [], "codeSet": [], "subVersion": 1, "expressionType": "TAG"}]
        }],
    });
    let r = consumer
        .call(request::HEART_BEAT, &[], hb.to_string().as_bytes())
        .expect("heartbeat");
    assert_eq!(r.code, response::SUCCESS);
    let answer = |c: &mut Conn, to: &Command, ext: &[(&str, String)], body: &[u8]| {
        let frame = encode_frame(
            Serialize::Json,
            response::SUCCESS,
            to.opaque,
            FLAG_RESPONSE,
            ext,
            body,
        );
        c.write_raw(&frame).expect("answer");
    };
    let info_ext = |client: &str| {
        vec![
            ("consumerGroup", G.to_string()),
            ("clientId", client.to_string()),
            ("jstackEnable", "false".to_string()),
        ]
    };

    // GET_CONSUMER_RUNNING_INFO reaches the consumer with the admin's fields; its answer
    // (code, fields, body) comes back to the admin as the answer to its request.
    let asked = admin
        .send_request(RUNNING_INFO, &info_ext(CLIENT), &[])
        .expect("ask");
    let got = next_request(&mut consumer, RUNNING_INFO);
    assert_eq!(
        (got.ext_str("consumerGroup"), got.ext_str("clientId")),
        (G, CLIENT)
    );
    let body = br#"{"properties":{"consumeType":"CONSUME_PASSIVELY"},"subscriptionSet":[]}"#;
    answer(&mut consumer, &got, &[("k", "v".to_string())], body);
    let r = admin
        .wait_response(RUNNING_INFO, asked, Duration::from_secs(10))
        .expect("relayed answer");
    assert_eq!(
        (r.code, r.ext_str("k"), r.body.as_slice()),
        (response::SUCCESS, "v", &body[..])
    );

    // CONSUME_MESSAGE_DIRECTLY: the broker attaches the stored message and its brokerName.
    let ext = vec![
        ("consumerGroup", G.to_string()),
        ("clientId", CLIENT.to_string()),
        ("msgId", sent.msg_id.clone()),
        ("brokerName", "someone-else".to_string()),
    ];
    let asked = admin
        .send_request(CONSUME_DIRECTLY, &ext, &[])
        .expect("ask");
    let got = next_request(&mut consumer, CONSUME_DIRECTLY);
    assert_eq!(got.ext_str("brokerName"), broker.shard_broker_name(0));
    assert_eq!(got.ext_str("msgId"), sent.msg_id);
    let records = ops::decode_pull_body(&got.body).expect("the stored record");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, b"run me");
    assert_eq!(records[0].queue_offset, sent.queue_offset);
    let result =
        br#"{"autoCommit":true,"consumeResult":"CR_SUCCESS","order":false,"spentTimeMills":1}"#;
    answer(&mut consumer, &got, &[], result);
    let r = admin
        .wait_response(CONSUME_DIRECTLY, asked, Duration::from_secs(10))
        .expect("relayed answer");
    assert_eq!(
        (r.code, r.body.as_slice()),
        (response::SUCCESS, &result[..])
    );

    // No answer within client_call_timeout_ms: CONSUME_MSG_TIMEOUT.
    let asked = admin
        .send_request(RUNNING_INFO, &info_ext(CLIENT), &[])
        .expect("ask");
    let _ignored = next_request(&mut consumer, RUNNING_INFO);
    let r = admin
        .wait_response(RUNNING_INFO, asked, Duration::from_secs(10))
        .expect("timeout answer");
    assert_eq!(r.code, 207, "CONSUME_MSG_TIMEOUT: {:?}", r.remark);
    // A late answer goes nowhere (the admin's next request still gets its own answer).
    answer(&mut consumer, &_ignored, &[], b"late");
    // A client that is not connected, and a message id that is not one.
    let r = admin
        .call(RUNNING_INFO, &info_ext("127.0.0.1@nobody"), &[])
        .expect("ask");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("The Consumer <e2e_calls_g> <127.0.0.1@nobody> not online")
    );
    let mut bad = ext.clone();
    bad[2].1 = "not-a-message-id".into();
    let r = admin.call(CONSUME_DIRECTLY, &bad, &[]).expect("ask");
    assert_eq!(r.code, response::SYSTEM_ERROR, "{:?}", r.remark);

    // The consumer disconnects before answering: SYSTEM_ERROR at once, not a timeout.
    let asked = admin
        .send_request(RUNNING_INFO, &info_ext(CLIENT), &[])
        .expect("ask");
    let _ = next_request(&mut consumer, RUNNING_INFO);
    drop(consumer);
    let r = admin
        .wait_response(RUNNING_INFO, asked, Duration::from_secs(10))
        .expect("closed answer");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(
        r.remark
            .as_deref()
            .is_some_and(|m| m.contains("closed its connection")),
        "{:?}",
        r.remark
    );
}

/// The project's push consumer answers what admin tools ask it through the broker: its
/// running info (settings, subscriptions, per queue its committed offset and cache) and a
/// message to consume directly (its handler runs on the stored message).
#[test]
fn the_projects_consumer_answers_running_info_and_consumes_directly() {
    const TOPIC: &str = "e2e_calls_rust";
    const G: &str = "e2e_calls_rust_g";
    let broker = Broker::start(BrokerSpec::default());
    topic_on(&broker, TOPIC, 1);
    let namesrv = broker.namesrv();
    let shard = broker.shard_addr(0).to_string();
    let name = broker.shard_broker_name(0);
    let (info, direct, seen) = block_on(None, async move {
        let producer = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_calls_pg"));
        let bodies: Vec<String> = (0..3).map(|i| format!("d-{i}")).collect();
        send_bodies(&producer, TOPIC, &bodies).await;
        let consumer_client = new_client(&namesrv);
        let client_id = consumer_client.client_id().to_string();
        let (consumer, seen) = start_recording(consumer_client, consumer_config(G, TOPIC)).await;
        wait_seen(&seen, 3).await;
        let admin = new_client(&namesrv);
        let ask = |code: i32, extra: Vec<(String, String)>| {
            let mut h = vec![
                ("consumerGroup".to_string(), G.to_string()),
                ("clientId".to_string(), client_id.clone()),
            ];
            h.extend(extra);
            let (admin, shard) = (admin.clone(), shard.clone());
            async move { admin.invoke_ok(&shard, code, &h, &[]).await }
        };
        let info = ask(307, vec![("jstackEnable".into(), "false".into())])
            .await
            .unwrap_or_else(|e| panic!("running info: {e}"));
        let sent = producer
            .send(Message::new(TOPIC, b"direct-me".to_vec()))
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        let direct = ask(
            309,
            vec![
                ("msgId".into(), sent.offset_msg_id.clone()),
                ("topic".into(), TOPIC.into()),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("consume directly: {e}"));
        let seen = wait_seen(&seen, 5).await;
        consumer
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        (info, direct, seen)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    let text = String::from_utf8_lossy(&info.body).into_owned();
    for want in [
        format!("\"consumerGroup\":\"{G}\""),
        "\"PROP_CONSUME_TYPE\":\"CONSUME_PASSIVELY\"".to_string(),
        "\"consumeFromWhere\":\"CONSUME_FROM_FIRST_OFFSET\"".to_string(),
        format!("\"topic\":\"{TOPIC}\""),
        format!(
            "{{\"brokerName\":\"{name}\",\"queueId\":0,\"topic\":\"{TOPIC}\"}}:{{\"commitOffset\":"
        ),
        "\"cachedMsgCount\":0".to_string(),
    ] {
        assert!(text.contains(&want), "{want} missing from {text}");
    }
    let d: serde_json::Value = serde_json::from_slice(&direct.body).expect("result json");
    assert_eq!(d["consumeResult"], "CR_SUCCESS", "{d}");
    assert_eq!(d["autoCommit"], true, "{d}");
    // Consumed twice: once pulled, once directly.
    assert_eq!(
        seen.iter().filter(|b| *b == "direct-me").count(),
        2,
        "{seen:?}"
    );
}
