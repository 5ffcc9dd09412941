//! Delayed messages (`DELAY` levels through `SCHEDULE_TOPIC_XXXX`), consumer send-back to
//! `%RETRY%<group>` and the dead-letter queue, against the real broker binary. Short delay
//! levels come from `broker.message_delay_level`.

use std::time::{Duration, Instant};

use ramjet_tests::ops::{self, OutMessage, PullOutcome, Pulled};
use ramjet_tests::ops::{connect, create_topic_on as create_topic};
use ramjet_tests::wire::{request, response};
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};

fn send_ok(c: &mut Conn, topic: &str, queue: i32, m: &OutMessage) -> ops::SendOk {
    ops::send(c, topic, queue, m)
        .expect("send")
        .expect_ok(topic)
}

fn pull(c: &mut Conn, topic: &str, queue: i32, offset: i64, suspend_ms: u64) -> PullOutcome {
    ops::pull(c, "delay_test_reader", topic, queue, offset, 32, suspend_ms).expect("pull")
}

/// Long-polls (topic, queue) from `offset` until at least one message is there or `within`
/// passed; returns the messages and when the first pull answered with them.
fn wait_messages(
    c: &mut Conn,
    topic: &str,
    queue: i32,
    offset: i64,
    within: Duration,
) -> (Vec<Pulled>, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let r = pull(c, topic, queue, offset, 1000);
        if r.code == response::SUCCESS && !r.messages.is_empty() {
            return (r.messages, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "nothing in {topic}/{queue} from offset {offset} within {within:?} (last pull: code {} {:?})",
            r.code,
            r.remark
        );
    }
}

fn prop(p: &Pulled, name: &str) -> Option<String> {
    p.property(name)
}

#[test]
fn delayed_messages_wait_their_level_and_survive_a_sigkill() {
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    spec.broker_toml = "message_delay_level = \"2s 4s 7s\"\nschedule_check_ms = 20\noffset_persist_interval_ms = 200\n".into();
    let mut broker = Broker::start(spec);
    let topic = "delayed";
    create_topic(&broker, topic, 2);
    let mut c = connect(broker.shard_addr(0));

    let sent_at = Instant::now();
    let soon = OutMessage::new(b"due after level 1 (2 s)".to_vec())
        .prop("TAGS", "t1")
        .prop("KEYS", "k-soon")
        .prop("DELAY", "1");
    let late = OutMessage::new(b"due after level 3 (7 s)".to_vec())
        .prop("TAGS", "t3")
        .prop("DELAY", "3");
    let plain = OutMessage::new(b"not delayed".to_vec()).prop("TAGS", "t0");
    let a = send_ok(&mut c, topic, 0, &soon);
    let b = send_ok(&mut c, topic, 1, &late);
    let p = send_ok(&mut c, topic, 0, &plain);
    // The answer names the queue asked for; the offsets are those in the schedule queues
    // (levels 1 and 3) and in the real queue for the plain message.
    assert_eq!((a.queue_id, a.queue_offset), (0, 0));
    assert_eq!((b.queue_id, b.queue_offset), (1, 0));
    assert_eq!((p.queue_id, p.queue_offset), (0, 0));

    // Right away only the plain message is in the topic.
    let q0 = pull(&mut c, topic, 0, 0, 0);
    assert_eq!(q0.code, response::SUCCESS, "{:?}", q0.remark);
    assert_eq!(q0.messages.len(), 1);
    assert_eq!(q0.messages[0].body, plain.body);
    let q1 = pull(&mut c, topic, 1, 0, 0);
    assert_eq!(q1.messages.len(), 0, "level 3 delivered early");
    assert!(
        sent_at.elapsed() < Duration::from_secs(2),
        "the checks above took {:?}: they no longer prove the delay",
        sent_at.elapsed()
    );

    // Level 1 arrives after 2 s, at the next offset of its real queue, as sent.
    let (got, at) = wait_messages(&mut c, topic, 0, 1, Duration::from_secs(10));
    let waited = at.duration_since(sent_at);
    assert!(
        waited >= Duration::from_millis(1900),
        "level 1 (2 s) delivered after {waited:?}"
    );
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(
        (m.topic.as_str(), m.queue_id, m.queue_offset),
        (topic, 0, 1)
    );
    assert_eq!(m.body, soon.body);
    assert_eq!(prop(m, "TAGS").as_deref(), Some("t1"));
    assert_eq!(prop(m, "KEYS").as_deref(), Some("k-soon"));
    assert_eq!(prop(m, "REAL_TOPIC").as_deref(), Some(topic));
    assert_eq!(prop(m, "REAL_QID").as_deref(), Some("0"));
    assert_eq!(prop(m, "DELAY"), None, "DELAY is removed on delivery");
    // Stored when it was delivered, not when it was sent.
    assert!(
        m.store_timestamp - m.born_timestamp >= 1900,
        "born {} stored {}",
        m.born_timestamp,
        m.store_timestamp
    );
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.scheduleDelivered"), 1);
    // RocketMQ's per-level keys: delivered up to, stored up to.
    assert_eq!(ops::runtime_value(&mut c, "scheduleMessageOffset_1"), "1,1");
    assert_eq!(ops::runtime_value(&mut c, "scheduleMessageOffset_3"), "0,1");

    // SIGKILL while level 3 waits: the acknowledged delayed message is still delivered, after
    // its time, once the broker is back.
    assert!(
        sent_at.elapsed() < Duration::from_secs(6),
        "too slow to kill before level 3 is due"
    );
    std::thread::sleep(Duration::from_millis(400)); // the level-1 offset persisted (200 ms)
    broker.kill();
    broker.restart();
    let mut c = connect(broker.shard_addr(0));
    let (got, at) = wait_messages(&mut c, topic, 1, 0, Duration::from_secs(20));
    let waited = at.duration_since(sent_at);
    assert!(
        waited >= Duration::from_millis(6900),
        "level 3 (7 s) delivered after {waited:?}"
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, late.body);
    assert_eq!(prop(&got[0], "TAGS").as_deref(), Some("t3"));
    // Level 1 was delivered and its offset written before the kill: not delivered again.
    let q0 = pull(&mut c, topic, 0, 0, 0);
    let bodies: Vec<&[u8]> = q0.messages.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [plain.body.as_slice(), soon.body.as_slice()]);
}

#[test]
fn batches_with_a_delay_are_refused_and_store_nothing() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "delayed_batch";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let msgs = [
        OutMessage::new(b"one".to_vec()),
        OutMessage::new(b"two".to_vec()),
    ];
    let body = ops::batch_body(&msgs);
    let ext = ops::send_ext(topic, 0, 0, b"DELAY\x012\x02", true);
    let r = c
        .call(request::SEND_BATCH_MESSAGE, &ext, &body)
        .expect("batch send");
    assert_eq!(r.code, 13, "MESSAGE_ILLEGAL expected: {:?}", r.remark);
    assert!(
        r.remark.as_deref().unwrap_or("").contains("delay"),
        "{:?}",
        r.remark
    );
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), 0);
}

/// CONSUMER_SEND_MSG_BACK of the record at `offset` for `group`.
fn send_back(c: &mut Conn, offset: i64, group: &str, delay_level: i32, max: i32) -> (i32, String) {
    let ext = [
        ("offset", offset.to_string()),
        ("group", group.to_string()),
        ("delayLevel", delay_level.to_string()),
        ("originMsgId", String::new()),
        ("unitMode", "false".to_string()),
        ("maxReconsumeTimes", max.to_string()),
    ];
    let r = c
        .call(request::CONSUMER_SEND_MSG_BACK, &ext, &[])
        .expect("send back");
    (r.code, r.remark.unwrap_or_default())
}

#[test]
fn send_back_retries_after_a_delay_then_dead_letters() {
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    // Every level 1 s: the first retry (level 3 + 0) waits 1 s.
    spec.broker_toml = "message_delay_level = \"1s 1s 1s 1s 1s\"\nschedule_check_ms = 20\n".into();
    let broker = Broker::start(spec);
    let topic = "sendback";
    let group = "sb_group";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let orig = OutMessage::new(b"fails twice".to_vec())
        .prop("TAGS", "x")
        .prop("KEYS", "k1");
    let ok = send_ok(&mut c, topic, 0, &orig);
    let first = pull(&mut c, topic, 0, 0, 0).messages.remove(0);
    let own_id = ok.msg_id.clone();
    assert_eq!(first.reconsume_times, 0);

    // Retry 1: stored delayed for %RETRY%group, reconsume count 1, original topic and id kept.
    let t0 = Instant::now();
    assert_eq!(
        send_back(&mut c, first.physical_offset, group, 0, 2),
        (0, String::new())
    );
    let retry_topic = format!("%RETRY%{group}");
    assert_eq!(
        pull(&mut c, &retry_topic, 0, 0, 0).messages.len(),
        0,
        "retry delivered before its delay"
    );
    let (got, at) = wait_messages(&mut c, &retry_topic, 0, 0, Duration::from_secs(10));
    assert!(
        at.duration_since(t0) >= Duration::from_millis(900),
        "retry after {:?}",
        at.duration_since(t0)
    );
    let r1 = &got[0];
    assert_eq!(r1.body, orig.body);
    assert_eq!(r1.reconsume_times, 1);
    assert_eq!(r1.born_timestamp, first.born_timestamp);
    assert_eq!(prop(r1, "RETRY_TOPIC").as_deref(), Some(topic));
    assert_eq!(prop(r1, "TAGS").as_deref(), Some("x"));
    assert_eq!(prop(r1, "KEYS").as_deref(), Some("k1"));
    let origin = prop(r1, "ORIGIN_MESSAGE_ID").expect("ORIGIN_MESSAGE_ID");
    // The broker names the original by its offset message id (what the send answered here
    // is the client-side UNIQ id when present; this test's sends carry none).
    assert_eq!(origin, own_id);
    // The route lists the retry topic (created by the send-back, registered at once).
    ops::wait_route(
        broker.namesrv_addr(),
        &retry_topic,
        1,
        Duration::from_secs(20),
    );

    // Retry 2 from the retry copy: count 2, RETRY_TOPIC and ORIGIN_MESSAGE_ID unchanged.
    assert_eq!(send_back(&mut c, r1.physical_offset, group, 0, 2).0, 0);
    let (got, _) = wait_messages(&mut c, &retry_topic, 0, 1, Duration::from_secs(10));
    let r2 = &got[0];
    assert_eq!(r2.reconsume_times, 2);
    assert_eq!(prop(r2, "RETRY_TOPIC").as_deref(), Some(topic));
    assert_eq!(
        prop(r2, "ORIGIN_MESSAGE_ID").as_deref(),
        Some(origin.as_str())
    );

    // At the limit (2): straight to %DLQ%group, undelayed.
    assert_eq!(send_back(&mut c, r2.physical_offset, group, 0, 2).0, 0);
    let dlq = format!("%DLQ%{group}");
    let d = pull(&mut c, &dlq, 0, 0, 0);
    assert_eq!(d.code, response::SUCCESS, "{:?}", d.remark);
    assert_eq!(d.messages.len(), 1);
    assert_eq!(d.messages[0].body, orig.body);
    assert_eq!(d.messages[0].reconsume_times, 3);
    assert_eq!(prop(&d.messages[0], "DELAY"), None);
    // A negative level also dead-letters at once, whatever the count.
    assert_eq!(send_back(&mut c, first.physical_offset, group, -1, 16).0, 0);
    assert_eq!(pull(&mut c, &dlq, 0, 1, 0).messages.len(), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.sendBackRetry"), 2);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.sendBackDlq"), 2);

    // A client's own fallback (a send to %RETRY%group at its limit) is dead-lettered too.
    let mut ext = ops::send_ext(
        &retry_topic,
        0,
        0,
        b"DELAY\x018\x02RETRY_TOPIC\x01sendback\x02",
        false,
    );
    for (k, v) in ext.iter_mut() {
        if *k == "j" {
            *v = "5".into();
        }
    }
    ext.push(("l", "5".into()));
    let r = c
        .call(request::SEND_MESSAGE_V2, &ext, b"client fallback")
        .expect("send");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let d = pull(&mut c, &dlq, 0, 2, 0);
    assert_eq!(d.messages.len(), 1);
    assert_eq!(d.messages[0].body, b"client fallback");
    // Stored undelayed, with DELAY 0 as RocketMQ does; the other properties kept.
    assert_eq!(prop(&d.messages[0], "DELAY").as_deref(), Some("0"));
    assert_eq!(prop(&d.messages[0], "RETRY_TOPIC").as_deref(), Some(topic));

    // An offset with no record behind it is an error, not a silent success.
    let (code, remark) = send_back(&mut c, 1 << 40, group, 0, 2);
    assert_eq!(code, response::SYSTEM_ERROR, "{remark}");
    assert!(remark.contains("offset"), "{remark}");
}

/// 40 MiB of delayed messages against the test broker's 16 MiB tail cache: by the time the
/// early ones are due they are only in the segment file (O_DIRECT writes leave nothing in the
/// page cache), so the schedule service reads them in off the shard first. All arrive in
/// their real queue, in order, byte for byte.
#[test]
fn many_delayed_messages_are_delivered_in_order_also_from_cold_files() {
    const N: usize = 10_240;
    const BODY: usize = 4096;
    let spec = BrokerSpec {
        broker_toml: "message_delay_level = \"3s\"\nschedule_check_ms = 20\n".into(),
        ..BrokerSpec::default()
    };
    let broker = Broker::start(spec);
    let topic = "delayed_bulk";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    c.set_timeout(Duration::from_secs(30));
    let body = |i: usize| {
        let mut b = vec![(i % 251) as u8; BODY];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b
    };
    for i in 0..N {
        let m = OutMessage::new(body(i)).prop("DELAY", "1");
        let ok = send_ok(&mut c, topic, 0, &m);
        assert_eq!(ok.queue_offset, i as i64, "schedule queue offset");
    }
    let mut next = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < N as i64 {
        assert!(Instant::now() < deadline, "only {next} of {N} delivered");
        let r = pull(&mut c, topic, 0, next, 1000);
        for m in &r.messages {
            assert_eq!(m.queue_offset, next);
            assert_eq!(m.body, body(next as usize), "message {next}");
            next += 1;
        }
    }
    assert_eq!(
        ops::max_offset(&mut c, topic, 0).unwrap(),
        N as i64,
        "delivered once each"
    );
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.scheduleDelivered"),
        N as u64
    );
    if ramjet_tests::setup::kernel_has_cachestat() {
        let cold = ops::runtime_counter(&mut c, "ramjet.scheduleColdReads");
        assert!(cold > 0, "no scheduled record was read in off the shard");
    }
}

/// A consumer sends back a message that left the tail cache long ago (40 MiB stored after it,
/// O_DIRECT writes leave nothing in the page cache): the broker reads it in off the shard,
/// then stores its retry copy intact.
#[test]
fn a_send_back_of_a_message_on_a_cold_file_is_read_in_off_the_shard() {
    let spec = BrokerSpec {
        broker_toml: "message_delay_level = \"1s 1s 1s\"\n".into(),
        ..BrokerSpec::default()
    };
    let broker = Broker::start(spec);
    let topic = "cold_send_back";
    create_topic(&broker, topic, 1);
    create_topic(&broker, "cold_send_back_filler", 1);
    let mut c = connect(broker.shard_addr(0));
    c.set_timeout(Duration::from_secs(30));
    let body: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 253) as u8).collect();
    send_ok(
        &mut c,
        topic,
        0,
        &OutMessage::new(body.clone()).prop("TAGS", "cold"),
    );
    let offset = pull(&mut c, topic, 0, 0, 0).messages[0].physical_offset;
    for b in 0..40 {
        let msgs: Vec<OutMessage> = (0..256)
            .map(|i| OutMessage::new(vec![(b + i) as u8; 4096]))
            .collect();
        ops::send_batch(&mut c, "cold_send_back_filler", 0, &msgs)
            .expect("send batch")
            .expect_ok("filler");
    }
    let (code, remark) = send_back(&mut c, offset, "cold_group", 0, 16);
    assert_eq!(code, response::SUCCESS, "{remark}");
    // The retry copy (level 3 = 1 s here) arrives in %RETRY%cold_group, body intact.
    let (got, _) = wait_messages(&mut c, "%RETRY%cold_group", 0, 0, Duration::from_secs(10));
    assert!(got[0].body == body, "retry copy body differs");
    assert_eq!(got[0].reconsume_times, 1);
    if ramjet_tests::setup::kernel_has_cachestat() {
        assert_eq!(ops::runtime_counter(&mut c, "ramjet.sendBackColdReads"), 1);
    }
}

/// Subscription groups (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP and friends) with
/// `auto_create_subscription_group = false`: pulls and send-backs of an unknown group are
/// refused, a created group's `retryMaxTimes` and `retryQueueNums` shape its retries,
/// `consumeEnable = false` stops its pulls, and the groups survive a restart.
#[test]
fn subscription_groups_gate_pulls_and_shape_retries() {
    const UPDATE_GROUP: i32 = 200;
    const ALL_GROUPS: i32 = 201;
    const DELETE_GROUP: i32 = 207;
    const GET_GROUP: i32 = 352;
    const NOT_EXIST: i32 = 26;
    let mut broker = Broker::start(BrokerSpec {
        broker_toml: "auto_create_subscription_group = false\n\
                      message_delay_level = \"1s 1s 1s 1s\"\nschedule_check_ms = 20\n"
            .into(),
        ..BrokerSpec::default()
    });
    let topic = "sg";
    let group = "sg_g";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    send_ok(&mut c, topic, 0, &OutMessage::new(b"retried".to_vec()));
    let group_pull = |c: &mut Conn, topic: &str, queue: i32| {
        ops::pull(c, group, topic, queue, 0, 32, 0).expect("pull")
    };
    let r = group_pull(&mut c, topic, 0);
    assert_eq!(r.code, NOT_EXIST, "{:?}", r.remark);
    // A send-back without maxReconsumeTimes: the group's retryMaxTimes applies.
    let send_back_default = |c: &mut Conn, offset: i64| {
        let ext = [
            ("offset", offset.to_string()),
            ("group", group.to_string()),
            ("delayLevel", "0".to_string()),
            ("originMsgId", String::new()),
            ("unitMode", "false".to_string()),
        ];
        let r = c
            .call(request::CONSUMER_SEND_MSG_BACK, &ext, &[])
            .expect("send back");
        (r.code, r.remark.unwrap_or_default())
    };
    // Refused before the record is looked at.
    assert_eq!(send_back_default(&mut c, 0).0, NOT_EXIST);
    // The reader this file's helpers pull with (retry and DLQ topics), with the defaults.
    let reader = serde_json::json!({"groupName": "delay_test_reader"});
    let r = c
        .call(UPDATE_GROUP, &[], reader.to_string().as_bytes())
        .expect("update group");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);

    let body = serde_json::json!({"groupName": group, "retryMaxTimes": 1, "retryQueueNums": 2});
    let r = c
        .call(UPDATE_GROUP, &[], body.to_string().as_bytes())
        .expect("update group");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let get = |c: &mut Conn| {
        let r = c
            .call(GET_GROUP, &[("group", group.to_string())], &[])
            .expect("get group");
        let v: serde_json::Value = if r.code == response::SUCCESS {
            serde_json::from_slice(&r.body).expect("group json")
        } else {
            serde_json::Value::Null
        };
        (r.code, v)
    };
    let (code, g) = get(&mut c);
    assert_eq!(code, response::SUCCESS);
    assert_eq!(
        (
            &g["retryMaxTimes"],
            &g["retryQueueNums"],
            &g["consumeEnable"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(true)
        )
    );
    let mut r = group_pull(&mut c, topic, 0);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.messages.len(), 1);
    let first = r.messages.remove(0);

    // Retry 1 (reconsume 0 < 1) goes to one of the retry topic's two queues after level 3.
    assert_eq!(
        send_back_default(&mut c, first.physical_offset),
        (0, String::new())
    );
    let retry = format!("%RETRY%{group}");
    let queue = (first.physical_offset % 2) as i32;
    let (got, _) = wait_messages(&mut c, &retry, queue, 0, Duration::from_secs(10));
    assert_eq!(got[0].body, b"retried");
    assert_eq!(got[0].reconsume_times, 1);
    assert_eq!(ops::max_offset(&mut c, &retry, 1 - queue).unwrap(), 0);
    // Retry 2: at the group's limit, the dead-letter queue.
    assert_eq!(send_back_default(&mut c, got[0].physical_offset).0, 0);
    let d = pull(&mut c, &format!("%DLQ%{group}"), 0, 0, 0);
    assert_eq!(d.code, response::SUCCESS, "{:?}", d.remark);
    assert_eq!(d.messages.len(), 1);
    assert_eq!(d.messages[0].reconsume_times, 2);

    // consumeEnable = false stops pulls; the groups are listed and survive a restart.
    let body = serde_json::json!({"groupName": group, "consumeEnable": false, "retryMaxTimes": 1});
    let r = c
        .call(UPDATE_GROUP, &[], body.to_string().as_bytes())
        .expect("update group");
    assert_eq!(r.code, response::SUCCESS);
    let r = group_pull(&mut c, topic, 0);
    assert_eq!(r.code, 16, "NO_PERMISSION: {:?}", r.remark);
    let r = c.call(ALL_GROUPS, &[], &[]).expect("all groups");
    let all: serde_json::Value = serde_json::from_slice(&r.body).expect("wrapper json");
    assert_eq!(
        all["subscriptionGroupTable"][group]["consumeEnable"], false,
        "{all}"
    );
    drop(c);
    broker.restart();
    let mut c = connect(broker.shard_addr(0));
    let (code, g) = get(&mut c);
    assert_eq!(code, response::SUCCESS);
    assert_eq!(g["consumeEnable"], false);
    let r = c
        .call(DELETE_GROUP, &[("groupName", group.to_string())], &[])
        .expect("delete group");
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(get(&mut c).0, NOT_EXIST);
    assert_eq!(group_pull(&mut c, topic, 0).code, NOT_EXIST);
}
