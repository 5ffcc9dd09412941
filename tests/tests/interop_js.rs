//! Interop with ali-ons (npm), a RocketMQ remoting client written in JavaScript after the Java
//! client, against the real broker binary: its producer and push consumer over two shards,
//! tag filtering, properties, a delayed message (DELAY level 1) and a retry through
//! CONSUMER_SEND_MSG_BACK. It reads the route
//! bodies with a fastjson-compatible parser (bare integer keys) and sends JSON headers.

use std::collections::BTreeMap;
use std::time::Duration;

use ramjet_tests::ops;
use ramjet_tests::wire::response;
use ramjet_tests::{interop, setup, Broker, BrokerSpec, Conn};
use serde_json::{json, Value};

const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string {k} in {}", interop::compact(v)))
}

fn n(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("no integer {k} in {}", interop::compact(v)))
}

#[test]
fn js_client_sends_filters_by_tag_and_retries_through_the_broker() {
    let spec = BrokerSpec {
        // Level 3 (a first retry's) is 1 s here.
        broker_toml: "message_delay_level = \"1s 1s 1s 1s\"\nschedule_check_ms = 20\n".into(),
        ..BrokerSpec::default()
    }
    .shards(2);
    let broker = Broker::start(spec);
    let topic = "e2e_js";
    for i in 0..2 {
        let mut c = Conn::connect(broker.shard_addr(i)).unwrap_or_else(|e| panic!("{e}"));
        let r = ops::create_topic(&mut c, topic, 2).expect("create topic");
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    ops::wait_route(broker.namesrv_addr(), topic, 2, Duration::from_secs(20));
    let run = format!("{:08x}", rand::random::<u32>());
    // Message 4 is delayed (level 1: 1 s).
    let messages: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "body": format!("js-{run}-{i}"),
                "tags": if i % 2 == 0 { "TagA" } else { "TagB" },
                "keys": format!("jk-{i} shared-{run}"),
                "props": {"e2e_idx": i.to_string()},
                "delay_level": if i == 4 { 1 } else { 0 },
            })
        })
        .collect();
    let flaky = format!("js-{run}-2");
    let spec = json!({
        "topic": topic,
        "expression": "TagA",
        "producer_group": format!("e2e_js_pg_{run}"),
        "consumer_group": format!("e2e_js_cg_{run}"),
        "messages": messages,
        "prop_names": ["e2e_idx"],
        "fail_first": [flaky],
        // Four TagA messages, one of them twice.
        "expected": 5,
        "settle_ms": 3000,
        "quiet_ms": 1500,
    });
    let work = setup::temp_dir("interop-js-");
    let out = interop::run_js(
        "roundtrip",
        &broker.namesrv(),
        &spec,
        SCRIPT_DEADLINE,
        work.path(),
    );

    // Every send acknowledged, spread over both shards, with offset message ids.
    let sent = out["sent"].as_array().expect("sent");
    assert_eq!(sent.len(), 8);
    let mut brokers = BTreeMap::new();
    for r in sent {
        assert_eq!(s(r, "status"), "SEND_OK", "{r}");
        assert_eq!(s(r, "msg_id").len(), 32, "{r}");
        assert!(n(r, "queue_offset") >= 0);
        *brokers.entry(s(r, "broker").to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        brokers.len(),
        2,
        "the producer uses both shards: {brokers:?}"
    );

    // TagA only; each once, except the flaky one: first as sent, then retried after the delay
    // with reconsumeTimes 1 under its original topic (the client restores it from RETRY_TOPIC).
    let received = out["received"].as_array().expect("received");
    let mut by_body: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for r in received {
        by_body.entry(s(r, "body")).or_default().push(r);
    }
    let want: Vec<String> = (0..8)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("js-{run}-{i}"))
        .collect();
    assert_eq!(
        by_body.keys().copied().collect::<Vec<_>>(),
        want.iter().map(String::as_str).collect::<Vec<_>>(),
        "{}",
        interop::compact(&out)
    );
    for (i, body) in (0..8).filter(|i| i % 2 == 0).zip(&want) {
        let got = &by_body[body.as_str()];
        let expect_n = if *body == flaky { 2 } else { 1 };
        assert_eq!(got.len(), expect_n, "{body}: {}", interop::compact(&out));
        let first = got[0];
        assert_eq!(s(first, "topic"), topic);
        assert_eq!(s(first, "tags"), "TagA");
        assert_eq!(n(first, "reconsume_times"), 0);
        assert_eq!(first["props"]["e2e_idx"], i.to_string());
        assert!(first["retry_topic"].is_null());
    }
    let again = by_body[flaky.as_str()][1];
    assert_eq!(s(again, "topic"), topic);
    assert_eq!(s(again, "retry_topic"), topic);
    assert_eq!(n(again, "reconsume_times"), 1);
    assert_eq!(s(again, "tags"), "TagA");
    assert_eq!(again["props"]["e2e_idx"], "2");
    assert!(!s(again, "origin_msg_id").is_empty());
    let waited = n(again, "at_ms") - n(by_body[flaky.as_str()][0], "at_ms");
    assert!(
        waited >= 900,
        "retried {waited} ms after the first delivery"
    );
    // The delayed one arrived a level's delay after it was sent, in its own topic.
    let delayed = format!("js-{run}-4");
    let sent_at = sent
        .iter()
        .find(|r| s(r, "body") == delayed)
        .map(|r| n(r, "sent_at_ms"))
        .expect("delayed send");
    let got = by_body[delayed.as_str()][0];
    assert_eq!(s(got, "topic"), topic);
    let late = n(got, "at_ms") - sent_at;
    assert!(
        late >= 900,
        "delayed message delivered {late} ms after its send"
    );
}
