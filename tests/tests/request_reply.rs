//! Request-reply (RocketMQ's `DefaultMQProducer.request`) against the real broker, spoken on
//! the wire as Java's clients do: a request message is stored with the broker's CLUSTER, the
//! replier's SEND_REPLY_MESSAGE_V2 to `<cluster>_REPLY_TOPIC` is stored and pushed to the
//! requester's connection as PUSH_REPLY_MESSAGE_TO_CLIENT, and the replier's answer says
//! whether the requester took it.

use std::time::{Duration, Instant};

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::{encode_frame, request, response, Command, Serialize};
use ramjet_tests::{Broker, BrokerSpec, Conn};

const SEND_REPLY_MESSAGE: i32 = 324;
const SEND_REPLY_MESSAGE_V2: i32 = 325;
const PUSH_REPLY_MESSAGE_TO_CLIENT: i32 = 326;
const REPLY_TOPIC: &str = "DefaultCluster_REPLY_TOPIC";

fn heartbeat_producer(c: &mut Conn, group: &str, client: &str) {
    let body = serde_json::json!({
        "clientID": client,
        "producerDataSet": [{"groupName": group}],
        "consumerDataSet": [],
    });
    let r = c
        .call(request::HEART_BEAT, &[], body.to_string().as_bytes())
        .expect("heartbeat");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

/// The reply a replier builds from a request (Java's MessageUtil.createReplyMessage).
fn reply_message(body: &str, correlation: &str, reply_to: &str) -> OutMessage {
    OutMessage::new(body.as_bytes().to_vec())
        .prop("MSG_TYPE", "reply")
        .prop("CORRELATION_ID", correlation)
        .prop("REPLY_TO_CLIENT", reply_to)
        .prop("TTL", "3000")
}

/// Sends a reply without waiting for its answer; returns its opaque.
fn send_reply(c: &mut Conn, code: i32, m: &OutMessage) -> i32 {
    let props = m.properties();
    let mut ext = ops::send_ext(REPLY_TOPIC, -1, 0, &props, false);
    if code == SEND_REPLY_MESSAGE {
        // Long key names (SendMessageRequestHeader), as an older client sends them.
        let long = [
            "producerGroup",
            "topic",
            "defaultTopic",
            "defaultTopicQueueNums",
            "queueId",
            "sysFlag",
            "bornTimestamp",
            "flag",
            "properties",
            "reconsumeTimes",
            "unitMode",
            "batch",
        ];
        for (i, (k, _)) in ext.iter_mut().enumerate() {
            *k = long[i];
        }
    }
    c.send_request(code, &ext, &m.body).expect("send reply")
}

/// Reads frames on the requester's connection until a PUSH_REPLY_MESSAGE_TO_CLIENT comes.
fn next_push(c: &mut Conn, within: Duration) -> Command {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no PUSH_REPLY_MESSAGE_TO_CLIENT within {within:?}"
        );
        match c.read_frame(left) {
            Ok(cmd) if !cmd.is_response() && cmd.code == PUSH_REPLY_MESSAGE_TO_CLIENT => {
                return cmd
            }
            Ok(_) => continue,
            Err(e) => panic!("no PUSH_REPLY_MESSAGE_TO_CLIENT within {within:?}: {e}"),
        }
    }
}

/// Answers a request the broker sent on `c` with `code`.
fn answer(c: &mut Conn, req: &Command, code: i32) {
    let frame = encode_frame(Serialize::Json, code, req.opaque, 1, &[], &[]);
    c.write_raw(&frame).expect("answer the push");
}

/// Every message of (topic, queue 0) from offset 0.
fn pull_queue(c: &mut Conn, topic: &str) -> Vec<ops::Pulled> {
    let r = ops::pull(c, "e2e_rr_reader", topic, 0, 0, 32, 0).expect("pull");
    assert_eq!(r.code, response::SUCCESS, "pull {topic}: {:?}", r.remark);
    r.messages
}

fn props_of(text: &str) -> Vec<(String, String)> {
    text.split('\u{2}')
        .filter_map(|kv| kv.split_once('\u{1}'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prop(text: &str, name: &str) -> Option<String> {
    props_of(text)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[test]
fn a_reply_is_stored_and_pushed_to_its_requester() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_rr_requests";
    ops::create_topic_on(&broker, topic, 1);
    let addr = broker.shard_addr(0);
    let mut requester = ops::connect(addr);
    heartbeat_producer(&mut requester, "PG_requester", "10.0.0.9@req-1");
    // The request, as DefaultMQProducer.request sends it.
    let req = OutMessage::new(b"ping".to_vec())
        .prop("CORRELATION_ID", "corr-1")
        .prop("REPLY_TO_CLIENT", "10.0.0.9@req-1")
        .prop("TTL", "3000");
    ops::send(&mut requester, topic, 0, &req)
        .expect("send")
        .expect_ok("request");
    // A plain message is stored as sent: no CLUSTER.
    ops::send(
        &mut requester,
        topic,
        0,
        &OutMessage::new(b"plain".to_vec()),
    )
    .expect("send")
    .expect_ok("plain");
    let mut replier = ops::connect(addr);
    let pulled = pull_queue(&mut replier, topic);
    assert_eq!(pulled.len(), 2);
    assert_eq!(pulled[0].body, b"ping");
    assert_eq!(
        pulled[0].property("CLUSTER").as_deref(),
        Some("DefaultCluster"),
        "the request carries the cluster its reply topic is named after"
    );
    assert_eq!(
        pulled[0].property("CORRELATION_ID").as_deref(),
        Some("corr-1")
    );
    assert_eq!(pulled[1].property("CLUSTER"), None);

    let reply = reply_message("pong", "corr-1", "10.0.0.9@req-1");
    let opaque = send_reply(&mut replier, SEND_REPLY_MESSAGE_V2, &reply);
    let push = next_push(&mut requester, Duration::from_secs(10));
    assert_eq!(push.body, b"pong");
    assert_eq!(push.ext_str("topic"), REPLY_TOPIC);
    assert_eq!(push.ext_str("queueId"), "0");
    assert_eq!(push.ext_str("producerGroup"), ops::PRODUCER_GROUP);
    let props = push.ext_str("properties").to_string();
    assert_eq!(prop(&props, "CORRELATION_ID").as_deref(), Some("corr-1"));
    assert_eq!(prop(&props, "MSG_TYPE").as_deref(), Some("reply"));
    let pushed_at: i64 = prop(&props, "PUSH_REPLY_TIME")
        .expect("PUSH_REPLY_TIME")
        .parse()
        .expect("a time");
    assert!((pushed_at - ops::now_ms()).abs() < 60_000);
    let born: std::net::SocketAddr = push.ext_str("bornHost").parse().expect("bornHost ip:port");
    assert!(born.ip().is_loopback(), "{born}");
    let store: std::net::SocketAddr = push
        .ext_str("storeHost")
        .parse()
        .expect("storeHost ip:port");
    assert_eq!(store.port(), addr.port());
    answer(&mut requester, &push, response::SUCCESS);
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE_V2, opaque, Duration::from_secs(10))
        .expect("reply answered");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext_i64("queueOffset"), 0);
    assert!(!r.ext_str("msgId").is_empty());

    // The reply is stored in the reply topic too.
    let stored = pull_queue(&mut replier, REPLY_TOPIC);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, b"pong");
    assert_eq!(
        stored[0].property("CORRELATION_ID").as_deref(),
        Some("corr-1")
    );

    // The long-key header (SEND_REPLY_MESSAGE, 324) works the same.
    let opaque = send_reply(
        &mut replier,
        SEND_REPLY_MESSAGE,
        &reply_message("pong-2", "corr-2", "10.0.0.9@req-1"),
    );
    let push = next_push(&mut requester, Duration::from_secs(10));
    assert_eq!(push.body, b"pong-2");
    answer(&mut requester, &push, response::SUCCESS);
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE, opaque, Duration::from_secs(10))
        .expect("reply answered");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext_i64("queueOffset"), 1);
    assert_eq!(
        ops::runtime_counter(&mut replier, "ramjet.repliesPushed"),
        2
    );
    assert_eq!(
        ops::runtime_counter(&mut replier, "ramjet.repliesUnpushed"),
        0
    );
}

#[test]
fn replies_that_cannot_be_pushed_are_answered_with_the_reason() {
    let broker = Broker::start(BrokerSpec {
        broker_toml: "client_call_timeout_ms = 500\n".into(),
        ..BrokerSpec::default()
    });
    let addr = broker.shard_addr(0);
    let mut replier = ops::connect(addr);
    // No requester of that id is connected.
    let opaque = send_reply(
        &mut replier,
        SEND_REPLY_MESSAGE_V2,
        &reply_message("r1", "c1", "nobody@1"),
    );
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE_V2, opaque, Duration::from_secs(10))
        .expect("answer");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("nobody@1") && remark.contains("not found"),
        "{remark}"
    );
    // No REPLY_TO_CLIENT: not a reply.
    let bare = OutMessage::new(b"r2".to_vec()).prop("MSG_TYPE", "reply");
    let opaque = send_reply(&mut replier, SEND_REPLY_MESSAGE_V2, &bare);
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE_V2, opaque, Duration::from_secs(10))
        .expect("answer");
    assert_eq!(r.code, response::MESSAGE_ILLEGAL);
    assert!(r.remark.unwrap_or_default().contains("REPLY_TO_CLIENT"));
    // A requester that never answers the push: refused after client_call_timeout_ms.
    let mut silent = ops::connect(addr);
    heartbeat_producer(&mut silent, "PG_requester", "silent@1");
    let started = Instant::now();
    let opaque = send_reply(
        &mut replier,
        SEND_REPLY_MESSAGE_V2,
        &reply_message("r3", "c3", "silent@1"),
    );
    let push = next_push(&mut silent, Duration::from_secs(10));
    assert_eq!(push.body, b"r3");
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE_V2, opaque, Duration::from_secs(10))
        .expect("answer");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(r.remark.unwrap_or_default().contains("silent@1"));
    // A requester that refuses it.
    let opaque = send_reply(
        &mut replier,
        SEND_REPLY_MESSAGE_V2,
        &reply_message("r4", "c4", "silent@1"),
    );
    let push = next_push(&mut silent, Duration::from_secs(10));
    answer(&mut silent, &push, response::SYSTEM_ERROR);
    let r = replier
        .wait_response(SEND_REPLY_MESSAGE_V2, opaque, Duration::from_secs(10))
        .expect("answer");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert_eq!(
        ops::runtime_counter(&mut replier, "ramjet.repliesUnpushed"),
        3
    );
    // Refused pushes are stored all the same (RocketMQ stores every reply): r1, r3 and r4.
    let stored = pull_queue(&mut replier, REPLY_TOPIC);
    let bodies: Vec<&[u8]> = stored.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [&b"r1"[..], b"r3", b"r4"]);
}

/// The project's client on both sides: a `Requester` sends requests and waits; a push
/// consumer replies to each with `reply_message` through a plain producer (sent as
/// SEND_REPLY_MESSAGE_V2). A request nobody answers times out, and its late reply matches
/// nothing.
#[test]
fn the_projects_requester_gets_each_reply() {
    use std::cell::RefCell;
    use std::rc::Rc;

    use ramjet_net::client::transport::{self, block_on};
    use ramjet_net::client::{
        reply_message, ConsumeResult, Message, MessageExt, Producer, ProducerConfig, PushConsumer,
        Requester,
    };
    use ramjet_tests::rust_client::{consumer_config, new_client};

    let broker = Broker::start(BrokerSpec::default().shards(2));
    let topic = "e2e_rr_client";
    ops::create_topic_on(&broker, topic, 2);
    ops::wait_route(broker.namesrv_addr(), topic, 2, Duration::from_secs(20));
    let namesrv = broker.namesrv();
    let (replies, timed_out) = block_on(None, async move {
        let requests: Rc<RefCell<Vec<MessageExt>>> = Rc::new(RefCell::new(Vec::new()));
        let seen = requests.clone();
        let consumer = PushConsumer::start(
            new_client(&namesrv),
            consumer_config("e2e_rr_replier", topic),
            Rc::new(move |m| {
                seen.borrow_mut().push(m.clone());
                ConsumeResult::Success
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("start the replier: {e}"));
        let replier = Producer::new(new_client(&namesrv), ProducerConfig::new("e2e_rr_rp"));
        // The replier: answers every request but "silent".
        let pending = requests.clone();
        let r = replier.clone();
        transport::spawn(async move {
            loop {
                let next: Vec<MessageExt> = pending.borrow_mut().drain(..).collect();
                for m in next {
                    let body = String::from_utf8_lossy(&m.body).into_owned();
                    if body == "silent" {
                        continue;
                    }
                    let reply = reply_message(&m, format!("re:{body}")).expect("a request");
                    r.send(reply).await.expect("send the reply");
                }
                transport::sleep(Duration::from_millis(5)).await;
            }
        });
        let requester = Requester::new(new_client(&namesrv), ProducerConfig::new("e2e_rr_req"));
        let mut replies = Vec::new();
        for i in 0..6 {
            let msg = Message::new(topic, format!("ask-{i}"));
            let reply = requester
                .request(msg, Duration::from_secs(45))
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            replies.push((
                String::from_utf8_lossy(&reply.body).into_owned(),
                reply.topic.clone(),
                reply.property("MSG_TYPE").map(str::to_string),
            ));
        }
        let timed_out = requester
            .request(Message::new(topic, "silent"), Duration::from_millis(500))
            .await
            .is_err();
        let _ = consumer.shutdown().await;
        (replies, timed_out)
    })
    .expect("the client's executor");
    assert_eq!(replies.len(), 6);
    for (i, (body, topic, kind)) in replies.iter().enumerate() {
        assert_eq!(body, &format!("re:ask-{i}"));
        assert_eq!(topic, REPLY_TOPIC);
        assert_eq!(kind.as_deref(), Some("reply"));
    }
    assert!(timed_out, "a request without a reply times out");
    let mut pushed = 0;
    for i in 0..2 {
        let mut c = ops::connect(broker.shard_addr(i));
        pushed += ops::runtime_counter(&mut c, "ramjet.repliesPushed");
        assert_eq!(ops::runtime_counter(&mut c, "ramjet.repliesUnpushed"), 0);
    }
    assert_eq!(pushed, 6);
}
