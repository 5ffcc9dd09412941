//! SQL92 subscriptions against the real broker binary: pulls filtered by message properties
//! (from the tail cache and from cold segment files), the subscription stored from a
//! heartbeat, CHECK_CLIENT_CONFIG, and errors for expressions that do not parse.

use std::time::Duration;

use ramjet_tests::ops::connect;
use ramjet_tests::ops::{self, OutMessage, PullOutcome};
use ramjet_tests::wire::{request, response};
use ramjet_tests::{Broker, BrokerSpec, Conn};

const CHECK_CLIENT_CONFIG: i32 = 46;
const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
const TOPIC: &str = "sql_filtered";
const N: usize = 20;

/// Message `i`: property `b` = even / odd, property `a` = i except every 7th (no `a`).
fn message(i: usize) -> OutMessage {
    let m = OutMessage::new(format!("m{i}").into_bytes())
        .prop("TAGS", "T")
        .prop("b", if i.is_multiple_of(2) { "even" } else { "odd" });
    if i.is_multiple_of(7) {
        m
    } else {
        m.prop("a", &i.to_string())
    }
}

/// PULL_MESSAGE from offset 0; with `sql`, the expression in the header (subscription flag).
fn pull(c: &mut Conn, group: &str, sql: Option<&str>) -> PullOutcome {
    let mut ext = vec![
        ("consumerGroup", group.to_string()),
        ("topic", TOPIC.to_string()),
        ("queueId", "0".to_string()),
        ("queueOffset", "0".to_string()),
        ("maxMsgNums", "64".to_string()),
        ("commitOffset", "0".to_string()),
        ("suspendTimeoutMillis", "0".to_string()),
        ("subVersion", "0".to_string()),
    ];
    match sql {
        Some(expr) => {
            ext.push(("sysFlag", ops::PULL_FLAG_SUBSCRIPTION.to_string()));
            ext.push(("subscription", expr.to_string()));
            ext.push(("expressionType", "SQL92".to_string()));
        }
        None => ext.push(("sysFlag", "0".to_string())),
    }
    let r = c.call(request::PULL_MESSAGE, &ext, &[]).expect("pull");
    ops::pull_outcome(r)
}

fn bodies(r: &PullOutcome) -> Vec<String> {
    r.messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[test]
fn sql92_pulls_return_exactly_the_matching_messages() {
    let broker = Broker::start(BrokerSpec::default());
    let mut c = connect(broker.shard_addr(0));
    c.set_timeout(Duration::from_secs(30));
    ops::create_topic_on(&broker, TOPIC, 1);
    for i in 0..N {
        ops::send(&mut c, TOPIC, 0, &message(i))
            .expect("send")
            .expect_ok("send");
    }
    // From the tail cache: a > 10 AND b = 'even' is 12, 16, 18 (14 has no a).
    let want = ["m12", "m16", "m18"];
    let r = pull(&mut c, "g_sql", Some("a > 10 AND b = 'even'"));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(bodies(&r), want);
    assert_eq!(
        r.next_begin_offset, N as i64,
        "the pull moves past what it skipped"
    );
    let offsets: Vec<i64> = r.messages.iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, [12, 16, 18]);
    // IS NULL, BETWEEN, IN, NOT.
    let r = pull(&mut c, "g_sql", Some("a IS NULL"));
    assert_eq!(bodies(&r), ["m0", "m7", "m14"]);
    let r = pull(&mut c, "g_sql", Some("a BETWEEN 3 AND 5 OR b IN ('none')"));
    assert_eq!(bodies(&r), ["m3", "m4", "m5"]);
    let r = pull(&mut c, "g_sql", Some("NOT (b = 'odd') AND a < 5"));
    assert_eq!(bodies(&r), ["m2", "m4"]);
    // 5.x text operators: a starting with 1 and ending with 9 or 3; absent a never matches.
    let r = pull(
        &mut c,
        "g_sql",
        Some("a STARTSWITH '1' AND (a ENDSWITH '9' OR a ENDSWITH '3') AND b NOT CONTAINS 'ev'"),
    );
    assert_eq!(bodies(&r), ["m13", "m19"]);
    // Nothing matches: the client pulls again from past the range.
    let r = pull(&mut c, "g_sql", Some("a > 100"));
    assert_eq!(r.code, response::PULL_RETRY_IMMEDIATELY, "{:?}", r.remark);
    assert_eq!(r.next_begin_offset, N as i64);
    assert!(r.messages.is_empty());
    // An expression that does not parse: SUBSCRIPTION_PARSE_FAILED with where and why.
    let r = pull(&mut c, "g_sql", Some("a > "));
    assert_eq!(r.code, SUBSCRIPTION_PARSE_FAILED);
    assert!(r.remark.unwrap_or_default().contains("bad SQL92 selector"));

    // A consumer's SQL92 subscription from its heartbeat filters pulls that carry none.
    let hb = serde_json::json!({
        "clientID": "10.0.0.9@sql",
        "producerDataSet": [],
        "consumerDataSet": [{
            "groupName": "g_hb", "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "unitMode": false,
            "subscriptionDataSet": [{"topic": TOPIC, "subString": "a >= 17",
                "expressionType": "SQL92", "subVersion": 1, "tagsSet": [], "codeSet": [],
                "classFilterMode": false}],
        }],
    });
    let r = c
        .call(request::HEART_BEAT, &[], hb.to_string().as_bytes())
        .expect("heartbeat");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let r = pull(&mut c, "g_hb", None);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(bodies(&r), ["m17", "m18", "m19"]);

    // CHECK_CLIENT_CONFIG: SQL92 that parses is served; that does not, is refused.
    for (expr, code) in [
        ("a > 1", response::SUCCESS),
        ("a >", SUBSCRIPTION_PARSE_FAILED),
    ] {
        let body = serde_json::json!({
            "clientId": "10.0.0.9@sql", "group": "g_check",
            "subscriptionData": {"topic": TOPIC, "subString": expr,
                "expressionType": "SQL92", "subVersion": 1},
        });
        let r = c
            .call(CHECK_CLIENT_CONFIG, &[], body.to_string().as_bytes())
            .expect("check client config");
        assert_eq!(r.code, code, "{expr}: {:?}", r.remark);
    }

    // The same from cold segment files: 40 MiB stored after them (O_DIRECT writes leave
    // nothing in the page cache, the tail cache holds 16 MiB).
    let r = ops::create_topic(&mut c, "sql_filler", 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    for b in 0..40 {
        let msgs: Vec<OutMessage> = (0..256)
            .map(|i| OutMessage::new(vec![(b + i) as u8; 4096]))
            .collect();
        ops::send_batch(&mut c, "sql_filler", 0, &msgs)
            .expect("send batch")
            .expect_ok("filler");
    }
    let r = pull(&mut c, "g_sql", Some("a > 10 AND b = 'even'"));
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(bodies(&r), want);
    assert_eq!(r.next_begin_offset, N as i64);
}

#[test]
fn sql92_can_be_turned_off() {
    let broker = Broker::start(BrokerSpec {
        broker_toml: "enable_property_filter = false\n".into(),
        ..BrokerSpec::default()
    });
    let mut c = connect(broker.shard_addr(0));
    let r = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    let r = pull(&mut c, "g_sql", Some("a > 1"));
    assert_eq!(r.code, SUBSCRIPTION_PARSE_FAILED);
    assert!(r
        .remark
        .unwrap_or_default()
        .contains("enable_property_filter"));
}
