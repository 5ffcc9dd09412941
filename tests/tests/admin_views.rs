//! Admin reads against the real broker, on the wire, for the bodies rocketmq-client-rust
//! 1.0.0 cannot be used to check (its QueueTimeSpan expects snake_case keys, which no Java
//! broker writes): QUERY_CONSUME_TIME_SPAN, GET_ALL_MESSAGE_REQUEST_MODE, and the refusals of
//! QUERY_CONSUME_QUEUE. (The other views are checked with the client in interop_rust.rs.)

use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec};

const QUERY_CONSUME_TIME_SPAN: i32 = 303;
const QUERY_CONSUME_QUEUE: i32 = 321;
const SET_MESSAGE_REQUEST_MODE: i32 = 401;
const GET_ALL_MESSAGE_REQUEST_MODE: i32 = 402;

#[test]
fn consume_time_spans_request_modes_and_consume_queue_refusals() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_views";
    ops::create_topic_on(&broker, topic, 2);
    let mut c = ops::connect(broker.shard_addr(0));
    for i in 0..4 {
        ops::send(
            &mut c,
            topic,
            0,
            &OutMessage::new(format!("v{i}").into_bytes()),
        )
        .expect("send")
        .expect_ok("send");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = ops::commit_offset(&mut c, "views_g", topic, 0, 1);
    assert_eq!(r.code, response::SUCCESS);
    let pulled = ops::pull(&mut c, "views_reader", topic, 0, 0, 32, 0).expect("pull");
    assert_eq!(pulled.messages.len(), 4);
    let times: Vec<i64> = pulled.messages.iter().map(|m| m.store_timestamp).collect();

    let r = c
        .call(
            QUERY_CONSUME_TIME_SPAN,
            &[
                ("topic", topic.to_string()),
                ("group", "views_g".to_string()),
            ],
            &[],
        )
        .expect("time span");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let spans = body["consumeTimeSpanSet"]
        .as_array()
        .expect("consumeTimeSpanSet");
    assert_eq!(spans.len(), 2, "{body}");
    let q0 = &spans[0];
    assert_eq!(q0["messageQueue"]["topic"], topic);
    assert_eq!(q0["messageQueue"]["queueId"], 0);
    assert_eq!(
        q0["messageQueue"]["brokerName"],
        broker.shard_broker_name(0).as_str()
    );
    assert_eq!(q0["minTimeStamp"], times[0], "{body}");
    assert_eq!(q0["maxTimeStamp"], times[3], "{body}");
    // Committed 1: the last consumed is message 0, the next (message 1) waits.
    assert_eq!(q0["consumeTimeStamp"], times[0], "{body}");
    let delay = q0["delayTime"].as_i64().expect("delayTime");
    assert!((0..60_000).contains(&delay), "{body}");
    let q1 = &spans[1];
    assert_eq!(
        (&q1["minTimeStamp"], &q1["maxTimeStamp"], &q1["delayTime"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{body}"
    );
    let r = c
        .call(
            QUERY_CONSUME_TIME_SPAN,
            &[
                ("topic", "nope".to_string()),
                ("group", "views_g".to_string()),
            ],
            &[],
        )
        .expect("time span");
    assert_eq!(r.code, response::TOPIC_NOT_EXIST);

    // QUERY_CONSUME_QUEUE: a queue the topic lacks, and an index past the end.
    let cq = |c: &mut ramjet_tests::Conn, queue: i32, index: i64| {
        c.call(
            QUERY_CONSUME_QUEUE,
            &[
                ("topic", topic.to_string()),
                ("queueId", queue.to_string()),
                ("index", index.to_string()),
                ("count", "10".to_string()),
            ],
            &[],
        )
        .expect("query cq")
    };
    let r = cq(&mut c, 7, 0);
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(r
        .remark
        .unwrap_or_default()
        .contains("7@e2e_views is not exist"));
    let r = cq(&mut c, 0, 4);
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("out of boundary"));
    // From index 2, no group: the rest of the queue, not evaluated.
    let r = cq(&mut c, 0, 2);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let units = body["queueData"].as_array().expect("queueData");
    assert_eq!(units.len(), 2, "{body}");
    assert_eq!(units[0]["physicOffset"], pulled.messages[2].physical_offset);
    assert_eq!(units[1]["physicOffset"], pulled.messages[3].physical_offset);
    assert_eq!(units[0]["eval"], false);
    assert_eq!(body["subscriptionData"], serde_json::Value::Null);

    // GET_ALL_MESSAGE_REQUEST_MODE: what SET_MESSAGE_REQUEST_MODE recorded.
    let r = c
        .call(GET_ALL_MESSAGE_REQUEST_MODE, &[], &[])
        .expect("modes");
    assert_eq!(r.code, response::SUCCESS);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        body["messageRequestModeMap"],
        serde_json::json!({}),
        "{body}"
    );
    let mode = serde_json::json!({
        "topic": topic, "consumerGroup": "views_g", "mode": "POP", "popShareQueueNum": 1,
    });
    let r = c
        .call(SET_MESSAGE_REQUEST_MODE, &[], mode.to_string().as_bytes())
        .expect("set mode");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let r = c
        .call(GET_ALL_MESSAGE_REQUEST_MODE, &[], &[])
        .expect("modes");
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        body["messageRequestModeMap"][topic]["views_g"], mode,
        "{body}"
    );
}
