//! LOCK_BATCH_MQ / UNLOCK_BATCH_MQ (queue locks of orderly consumers) against the real broker:
//! a queue is one client's until it unlocks it or its lock expires
//! (`broker.rebalance_lock_max_live_ms`), groups are independent, bad bodies are refused.

use std::time::Duration;

use ramjet_tests::ops;
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn};
use serde_json::{json, Value};

const LOCK_BATCH_MQ: i32 = 41;
const UNLOCK_BATCH_MQ: i32 = 42;
const LIVE_MS: u64 = 2000;

fn body(group: &str, client: &str, broker_name: &str, queues: &[i32]) -> Vec<u8> {
    let mqs: Vec<Value> = queues
        .iter()
        .map(|q| json!({"topic": "locked", "brokerName": broker_name, "queueId": q}))
        .collect();
    json!({"consumerGroup": group, "clientId": client, "mqSet": mqs, "onlyThisBroker": false})
        .to_string()
        .into_bytes()
}

/// Locks `queues` for (group, client); returns the queue ids the broker says the client holds.
fn lock(c: &mut Conn, bn: &str, group: &str, client: &str, queues: &[i32]) -> Vec<i64> {
    let r = c
        .call(LOCK_BATCH_MQ, &[], &body(group, client, bn, queues))
        .expect("lock");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let v: Value = serde_json::from_slice(&r.body).expect("lock response json");
    let mut held: Vec<i64> = v["lockOKMQSet"]
        .as_array()
        .expect("lockOKMQSet")
        .iter()
        .map(|m| m["queueId"].as_i64().expect("queueId"))
        .collect();
    held.sort();
    held
}

fn unlock(c: &mut Conn, bn: &str, group: &str, client: &str, queues: &[i32]) {
    let r = c
        .call(UNLOCK_BATCH_MQ, &[], &body(group, client, bn, queues))
        .expect("unlock");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

#[test]
fn a_queue_lock_is_one_clients_until_unlocked_or_expired() {
    let spec = BrokerSpec {
        broker_toml: format!("rebalance_lock_max_live_ms = {LIVE_MS}\n"),
        ..BrokerSpec::default()
    };
    let broker = Broker::start(spec);
    let bn = broker.shard_broker_name(0);
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    assert_eq!(lock(&mut c, &bn, "G", "a", &[0, 1]), [0, 1]);
    assert_eq!(lock(&mut c, &bn, "G", "b", &[1, 2]), [2], "q1 is a's");
    assert_eq!(lock(&mut c, &bn, "H", "b", &[1]), [1], "another group");
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.queueLocks"), 4);
    unlock(&mut c, &bn, "G", "b", &[1]);
    assert_eq!(
        lock(&mut c, &bn, "G", "b", &[1]),
        Vec::<i64>::new(),
        "b cannot unlock a's"
    );
    unlock(&mut c, &bn, "G", "a", &[1]);
    assert_eq!(lock(&mut c, &bn, "G", "b", &[1]), [1]);
    // a stops renewing q0: after the lock's lifetime b may take it; b's own renewals keep
    // its locks.
    std::thread::sleep(Duration::from_millis(LIVE_MS / 2));
    assert_eq!(lock(&mut c, &bn, "G", "b", &[0, 1, 2]), [1, 2]);
    std::thread::sleep(Duration::from_millis(LIVE_MS / 2 + 300));
    assert_eq!(lock(&mut c, &bn, "G", "b", &[0, 1, 2]), [0, 1, 2]);
    assert_eq!(lock(&mut c, &bn, "G", "a", &[0]), Vec::<i64>::new());

    // A body without a group or client is refused with a reason, and locks nothing.
    let r = c
        .call(LOCK_BATCH_MQ, &[], br#"{"mqSet":[]}"#)
        .expect("lock");
    assert_eq!(r.code, response::SYSTEM_ERROR);
    assert!(r.remark.unwrap_or_default().contains("consumerGroup"));
    let r = c.call(LOCK_BATCH_MQ, &[], b"not json").expect("lock");
    assert_eq!(r.code, response::SYSTEM_ERROR);
}
