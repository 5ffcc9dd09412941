//! Interop with the real RocketMQ C++ client (PyPI `rocketmq` 0.4.4, librocketmq): sync, async,
//! oneway and batch sends; a push consumer in a consumer group receives exactly what was sent
//! (bodies, tags, keys, properties); a pull consumer reads a queue from a given offset.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::response;
use ramjet_tests::{interop, setup, Broker, BrokerSpec, Conn};
use serde_json::{json, Value};

const ROUTE_WAIT: Duration = Duration::from_secs(20);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);
/// Tags alternated over test messages.
const TAGS: [&str; 2] = ["TagA", "TagB"];
const PROP_NAMES: [&str; 2] = ["e2e_mode", "e2e_idx"];

fn create_topic_everywhere(broker: &Broker, topic: &str, queues: u32) {
    for i in 0..broker.shards() {
        let mut c = Conn::connect(broker.shard_addr(i)).unwrap_or_else(|e| panic!("{e}"));
        let r = ops::create_topic(&mut c, topic, queues)
            .unwrap_or_else(|e| panic!("create topic on shard {i}: {e}"));
        assert_eq!(
            r.code,
            response::SUCCESS,
            "UPDATE_AND_CREATE_TOPIC {topic} on shard {i}: {:?}",
            r.remark
        );
    }
    ops::wait_route(broker.namesrv_addr(), topic, broker.shards(), ROUTE_WAIT);
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("field {k} missing or not a string in {v}"))
}

fn int_field(v: &Value, k: &str) -> i64 {
    v.get(k)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("field {k} missing or not an integer in {v}"))
}

fn array<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v.get(k)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("field {k} missing or not an array in {v}"))
}

/// One test message for the script: ASCII body, tags, keys, two user properties.
fn message(run: &str, mode: &str, i: usize) -> Value {
    let pad: String = std::iter::repeat_n(char::from(b'a' + i as u8), i * 97 % 700).collect();
    json!({
        "mode": mode,
        "batch_id": 1,
        "body": format!("{run}|{mode}|{i}|{pad}"),
        "tags": TAGS[i % 2],
        "keys": format!("k-{mode}-{i} shared-{run}"),
        "props": {"e2e_mode": mode, "e2e_idx": i.to_string()},
    })
}

/// Runs the script's `roundtrip` (push consumer first, then the sends) and checks that every
/// send was acknowledged SEND_OK and the consumer received each message exactly once with its
/// topic, tags, keys and properties.
fn roundtrip_exactly_once(
    broker: &Broker,
    topic: &str,
    run: &str,
    messages: &[Value],
    deadline: Duration,
    extra: &Value,
) -> Value {
    let mut spec = json!({
        "topic": topic,
        "producer_group": format!("e2e_cpp_pg_{run}"),
        "consumer_group": format!("e2e_cpp_cg_{run}"),
        "messages": messages,
        "prop_names": PROP_NAMES,
        "settle_s": 3.0,
        "quiet_s": 1.5,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let work = setup::temp_dir("interop-roundtrip-");
    let out = interop::run("roundtrip", &broker.namesrv(), &spec, deadline, work.path());

    let sent = array(&out, "sent");
    assert_eq!(sent.len(), messages.len(), "one send record per message");
    for s in sent {
        assert_eq!(int_field(s, "status"), 0, "send not OK: {s}");
        if str_field(s, "mode") != "oneway" {
            assert!(
                int_field(s, "offset") >= 0,
                "send result without a queue offset: {s}"
            );
        }
    }

    let received = array(&out, "received");
    let mut by_body: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for r in received {
        by_body.entry(str_field(r, "body")).or_default().push(r);
    }
    let sent_bodies: BTreeSet<&str> = messages.iter().map(|m| str_field(m, "body")).collect();
    let got_bodies: BTreeSet<&str> = by_body.keys().copied().collect();
    let missing: Vec<_> = sent_bodies
        .difference(&got_bodies)
        .map(|b| &b[..b.len().min(40)])
        .collect();
    let unexpected: Vec<_> = got_bodies
        .difference(&sent_bodies)
        .map(|b| &b[..b.len().min(40)])
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing {missing:?}, unexpected {unexpected:?}"
    );
    for m in messages {
        let body = str_field(m, "body");
        let got = &by_body[body];
        assert_eq!(
            got.len(),
            1,
            "message delivered {} times: {}",
            got.len(),
            &body[..body.len().min(40)]
        );
        let r = got[0];
        assert_eq!(str_field(r, "topic"), topic);
        assert_eq!(
            str_field(r, "tags"),
            str_field(m, "tags"),
            "tags of {body:.40}"
        );
        assert_eq!(
            str_field(r, "keys"),
            str_field(m, "keys"),
            "keys of {body:.40}"
        );
        for name in PROP_NAMES {
            assert_eq!(
                r["props"][name], m["props"][name],
                "property {name} of {body:.40}"
            );
        }
        assert_eq!(int_field(r, "reconsume_times"), 0);
    }
    out
}

#[test]
fn cpp_producer_sync_async_oneway_reach_a_push_consumer_exactly_once() {
    let broker = Broker::start(BrokerSpec::default().shards(2));
    let topic = "e2e_cpp_roundtrip";
    create_topic_everywhere(&broker, topic, 4);
    let run = format!("{:08x}", rand::random::<u32>());
    let mut messages = Vec::new();
    for mode in ["sync", "async", "oneway"] {
        for i in 0..8 {
            messages.push(message(&run, mode, i));
        }
    }
    // A body above the C++ client's 4 KiB compression threshold: stored compressed (sysflag
    // bit 0), delivered inflated.
    let big: String = (0..6000)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    messages.push(json!({
        "mode": "sync", "body": format!("{run}|big|{big}"), "tags": "TagBig", "keys": "k-big",
        "props": {"e2e_mode": "sync", "e2e_idx": "big"},
    }));
    roundtrip_exactly_once(&broker, topic, &run, &messages, SCRIPT_DEADLINE, &json!({}));

    // The broker's own view agrees: the queues of both shards hold exactly these messages.
    let mut per_shard = Vec::new();
    for shard in 0..broker.shards() {
        let mut c = Conn::connect(broker.shard_addr(shard)).unwrap();
        let mut n = 0;
        for q in 0..4 {
            n += ops::max_offset(&mut c, topic, q).unwrap();
        }
        per_shard.push(n);
    }
    assert_eq!(
        per_shard.iter().sum::<i64>(),
        messages.len() as i64,
        "messages stored over both shards"
    );
    assert!(
        per_shard.iter().all(|n| *n > 0),
        "the C++ producer must use both shards: {per_shard:?}"
    );
}

/// ACL 1.0: the C++ client signs every request itself (`set_session_credentials`: its own
/// HMAC-SHA1 over its own field order, plus an `OnsChannel` field the Java client does not
/// send). A broker with `acl_enable` takes all of them (sends, heartbeats, pulls, offset
/// commits, consumer lists) from accounts that may only publish, resp. only subscribe to that
/// topic in that group, and refuses none. (The producer's account holds SUB on the topic and
/// the group too: in one process the C++ client's producer and consumer share one client
/// instance, whose heartbeat names the consumer's group and subscription and goes out signed
/// with the producer's keys.)
#[test]
fn cpp_clients_signing_with_acl_credentials_send_and_consume() {
    let dir = setup::temp_dir("interop-acl-");
    let admin = ("cppadmin1", "cpp-admin-secret");
    let (producer, consumer) = (
        ("cppprod01", "prod-secret-1"),
        ("cppcons01", "cons-secret-1"),
    );
    let topic = "e2e_cpp_acl";
    let run = format!("{:08x}", rand::random::<u32>());
    let group = format!("e2e_cpp_cg_{run}");
    let broker = ops::start_acl_broker(
        dir.path(),
        admin,
        &[
            format!(
                "{{accessKey: {}, secretKey: {}, defaultTopicPerm: DENY, defaultGroupPerm: DENY, \
                 topicPerms: [{topic}=PUB|SUB], groupPerms: [{group}=SUB]}}",
                producer.0, producer.1
            ),
            format!(
                "{{accessKey: {}, secretKey: {}, defaultTopicPerm: DENY, defaultGroupPerm: DENY, \
                 topicPerms: [{topic}=SUB], groupPerms: [{group}=SUB]}}",
                consumer.0, consumer.1
            ),
        ],
        topic,
        2,
    );
    let mut c = Conn::connect(broker.shard_addr(0)).unwrap();

    let messages: Vec<Value> = ["sync", "async", "oneway"]
        .iter()
        .flat_map(|mode| (0..6).map(|i| message(&run, mode, i)))
        .collect();
    let cred = |who: (&str, &str)| json!({"access_key": who.0, "secret_key": who.1});
    roundtrip_exactly_once(
        &broker,
        topic,
        &run,
        &messages,
        SCRIPT_DEADLINE,
        &json!({
            "producer_credentials": cred(producer),
            "consumer_credentials": cred(consumer),
        }),
    );
    assert_eq!(
        ops::runtime_counter_signed(&mut c, "ramjet.aclDenied", admin),
        0,
        "a request of the C++ client was refused; log:\n{}",
        broker.log_tail()
    );
}

/// The C++ client 2.0 (PyPI rocketmq 0.4.4) sends a batch as SEND_MESSAGE (code 10) with the
/// header field `batch` = "1" (not "true") and the batch encoding as body. A broker that takes
/// it as a batch stores one record per entry; one that reads `batch` with Java's
/// `Boolean.parseBoolean` stores the whole batch as one message (rocketmq-client-cpp issue
/// #363). This test asks for the former: each entry delivered on its own.
#[test]
fn cpp_batch_send_is_delivered_as_individual_messages() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_cpp_batch";
    create_topic_everywhere(&broker, topic, 2);
    let run = format!("{:08x}", rand::random::<u32>());
    let messages: Vec<Value> = (0..8).map(|i| message(&run, "batch", i)).collect();
    roundtrip_exactly_once(
        &broker,
        topic,
        &run,
        &messages,
        Duration::from_secs(30),
        &json!({}),
    );
    let mut c = Conn::connect(broker.shard_addr(0)).unwrap();
    let stored: i64 = (0..2)
        .map(|q| ops::max_offset(&mut c, topic, q).unwrap())
        .sum();
    assert_eq!(stored, 8, "one stored record per batch entry");
}

#[test]
fn cpp_pull_consumer_reads_a_queue_from_an_offset() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_cpp_pull";
    create_topic_everywhere(&broker, topic, 2);
    let mut c = Conn::connect(broker.shard_addr(0)).unwrap();
    let mut bodies = Vec::new();
    for i in 0..10 {
        let body = format!("pull-body-{i}-{}", "z".repeat(i * 31));
        let msg = OutMessage::new(body.clone().into_bytes())
            .prop("TAGS", &format!("TagP{}", i % 3))
            .prop("KEYS", &format!("pk-{i}"))
            .prop("e2e_idx", &i.to_string());
        let ok = ops::send(&mut c, topic, 1, &msg).unwrap().expect_ok("send");
        assert_eq!(ok.queue_offset, i as i64);
        bodies.push(body);
    }
    let work = setup::temp_dir("interop-pull-");
    let spec = json!({
        "topic": topic, "consumer_group": "e2e_cpp_puller", "queue_id": 1, "offset": 4, "count": 6,
        "max_num": 4, "prop_names": ["e2e_idx"],
    });
    let out = interop::run(
        "pull",
        &broker.namesrv(),
        &spec,
        SCRIPT_DEADLINE,
        work.path(),
    );
    let queues: BTreeSet<i64> = array(&out, "queues")
        .iter()
        .map(|q| int_field(q, "queue_id"))
        .collect();
    assert_eq!(
        queues,
        BTreeSet::from([0, 1]),
        "the C++ client sees the topic's two queues"
    );
    let msgs = array(&out, "messages");
    assert_eq!(msgs.len(), 6, "pulled from offset 4 to the end: {out}");
    for (k, m) in msgs.iter().enumerate() {
        let i = 4 + k;
        assert_eq!(int_field(m, "queue_offset"), i as i64);
        assert_eq!(int_field(m, "queue_id"), 1);
        assert_eq!(str_field(m, "body"), bodies[i]);
        assert_eq!(str_field(m, "tags"), format!("TagP{}", i % 3));
        assert_eq!(str_field(m, "keys"), format!("pk-{i}"));
        assert_eq!(m["props"]["e2e_idx"], json!(i.to_string()));
    }
    // The first FOUND answer (the C++ client may report BROKER_TIMEOUT while it connects).
    let results = array(&out, "results");
    let first = results
        .iter()
        .find(|r| int_field(r, "status") == 0)
        .unwrap_or_else(|| panic!("no FOUND pull result: {}", interop::compact(&out)));
    assert_eq!(int_field(first, "request_offset"), 4);
    assert_eq!(int_field(first, "count"), 4, "maxNums 4 honoured");
    assert_eq!(int_field(first, "next_begin_offset"), 8);
    assert_eq!(int_field(first, "max_offset"), 10);

    // At the end of the queue the C++ client sees NO_NEW_MSG.
    let spec = json!({
        "topic": topic, "consumer_group": "e2e_cpp_puller", "queue_id": 1, "offset": 10, "count": 1,
        "prop_names": [],
    });
    let out = interop::run(
        "pull",
        &broker.namesrv(),
        &spec,
        SCRIPT_DEADLINE,
        work.path(),
    );
    assert!(array(&out, "messages").is_empty());
    let results = array(&out, "results");
    assert_eq!(
        int_field(results.last().unwrap(), "status"),
        1,
        "NO_NEW_MSG at the end: {out}"
    );
}

/// The C++ client's push consumer answers RECONSUME_LATER once: the client sends the message
/// back (CONSUMER_SEND_MSG_BACK), the broker delays it (level 3, 1 s here) into the group's
/// retry topic, and the client delivers it again with reconsumeTimes 1 under its original
/// topic. The other message is delivered once.
#[test]
fn cpp_consumer_retry_comes_back_after_the_delay() {
    let spec = BrokerSpec {
        broker_toml: "message_delay_level = \"1s 1s 1s 1s\"\nschedule_check_ms = 20\n".into(),
        ..BrokerSpec::default()
    };
    let broker = Broker::start(spec);
    let topic = "e2e_cpp_retry";
    create_topic_everywhere(&broker, topic, 2);
    let run = format!("{:08x}", rand::random::<u32>());
    let flaky = format!("flaky-{run}");
    let steady = format!("steady-{run}");
    let spec = json!({
        "topic": topic,
        "producer_group": format!("e2e_cpp_rpg_{run}"),
        "consumer_group": format!("e2e_cpp_rcg_{run}"),
        "messages": [
            {"mode": "sync", "body": flaky, "tags": "TagR", "keys": "kr"},
            {"mode": "sync", "body": steady, "tags": "TagR", "keys": "ks"},
        ],
        "fail_first": [flaky],
        "expected": 3,
        "settle_s": 3.0,
        "quiet_s": 1.5,
    });
    let work = setup::temp_dir("interop-retry-");
    let out = interop::run(
        "retry",
        &broker.namesrv(),
        &spec,
        SCRIPT_DEADLINE,
        work.path(),
    );
    let received = array(&out, "received");
    let of = |body: &str| -> Vec<&Value> {
        received
            .iter()
            .filter(|r| str_field(r, "body") == body)
            .collect()
    };
    assert_eq!(of(&steady).len(), 1, "{}", interop::compact(&out));
    let f = of(&flaky);
    assert_eq!(
        f.len(),
        2,
        "first delivery and one retry: {}",
        interop::compact(&out)
    );
    assert_eq!(int_field(f[0], "reconsume_times"), 0);
    assert_eq!(int_field(f[1], "reconsume_times"), 1);
    assert_eq!(
        str_field(f[1], "topic"),
        topic,
        "the retry carries its original topic"
    );
    assert_eq!(str_field(f[1], "tags"), "TagR");
    assert_eq!(str_field(f[1], "keys"), "kr");
    let waited = f[1]["at_s"].as_f64().unwrap() - f[0]["at_s"].as_f64().unwrap();
    assert!(
        waited >= 0.9,
        "retried {waited:.3} s after the first delivery"
    );
    let shards_back: u64 = (0..broker.shards())
        .map(|i| {
            let mut c = Conn::connect(broker.shard_addr(i)).unwrap();
            ops::runtime_counter(&mut c, "ramjet.sendBackRetry")
        })
        .sum();
    assert_eq!(shards_back, 1, "one send-back stored");
}

/// The C++ client's orderly push consumer takes each queue's lock at the broker
/// (LOCK_BATCH_MQ) before it consumes the queue, and renews it; its orderly producer sends each key's
/// messages to one queue. Every message arrives once, and each key's in the order sent.
#[test]
fn cpp_orderly_consumer_locks_queues_and_keeps_each_keys_order() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_cpp_orderly";
    create_topic_everywhere(&broker, topic, 4);
    let run = format!("{:08x}", rand::random::<u32>());
    const KEYS: usize = 4;
    const PER_KEY: usize = 10;
    let mut messages = Vec::new();
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            messages.push(json!({
                "mode": "orderly", "arg": k, "body": format!("ord-{run}-k{k}-{i:02}"),
                "tags": "TagO", "keys": format!("key-{k}"),
            }));
        }
    }
    let spec = json!({
        "topic": topic,
        "producer_group": format!("e2e_cpp_opg_{run}"),
        "consumer_group": format!("e2e_cpp_ocg_{run}"),
        "messages": messages,
        "orderly": true,
        "prop_names": [],
        "settle_s": 3.0,
        "quiet_s": 1.5,
    });
    let work = setup::temp_dir("interop-orderly-");
    let out = interop::run(
        "roundtrip",
        &broker.namesrv(),
        &spec,
        SCRIPT_DEADLINE,
        work.path(),
    );
    for s in array(&out, "sent") {
        assert_eq!(int_field(s, "status"), 0, "send not OK: {s}");
    }
    let received = array(&out, "received");
    assert_eq!(received.len(), KEYS * PER_KEY, "{}", interop::compact(&out));
    for k in 0..KEYS {
        let got: Vec<&str> = received
            .iter()
            .map(|r| str_field(r, "body"))
            .filter(|b| b.contains(&format!("-k{k}-")))
            .collect();
        let want: Vec<String> = (0..PER_KEY)
            .map(|i| format!("ord-{run}-k{k}-{i:02}"))
            .collect();
        assert_eq!(got, want, "key {k}: delivered in the order sent, once each");
        // One queue per key.
        let queues: BTreeSet<i64> = received
            .iter()
            .filter(|r| str_field(r, "body").contains(&format!("-k{k}-")))
            .map(|r| int_field(r, "queue_id"))
            .collect();
        assert_eq!(queues.len(), 1, "key {k} spread over {queues:?}");
    }
    // The C++ orderly consumer takes messages of a queue only while it holds the queue's lock,
    // so all of them arriving means the broker granted the locks (before LOCK_BATCH_MQ was
    // served, it answered REQUEST_CODE_NOT_SUPPORTED). Lock semantics: tests/tests/queue_locks.rs.
}
