//! Transactional messages from a third-party client: rocketmq-client-rust (the Apache RocketMQ
//! Rust client, a port of the Java client, from crates.io) sends half messages with its
//! `TransactionMQProducer`, ends them with END_TRANSACTION, and answers the broker's
//! CHECK_TRANSACTION_STATE for those its local transaction left unknown. What the topic holds
//! afterwards is read with plain pulls. Its push consumer also gets plain, delayed and retried
//! messages, filters with SQL92, reads from a slave once the master is killed, and signs its
//! requests for a broker with ACL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ramjet_tests::interop;
use ramjet_tests::ops::{self, Pulled};
use ramjet_tests::ops::{connect, create_topic_on};
use ramjet_tests::{setup, Broker, BrokerSpec, Conn, Flush};

/// Runs the driver's `roundtrip` command (40 s at most) in a fresh directory named after
/// `work`, and returns its report.
fn roundtrip(namesrv: &str, spec: &serde_json::Value, work: &str) -> serde_json::Value {
    let dir = setup::temp_dir(work);
    interop::run_rust(
        "roundtrip",
        namesrv,
        spec,
        Duration::from_secs(40),
        dir.path(),
    )
}

/// The bodies a roundtrip report says were delivered, sorted.
fn delivered_bodies(out: &serde_json::Value) -> Vec<String> {
    let mut got: Vec<String> = out["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["body"].as_str().unwrap_or("").to_string())
        .collect();
    got.sort();
    got
}

/// Every message of `topic` (all queues, from offset 0).
fn all_messages(c: &mut Conn, topic: &str, queues: i32) -> Vec<Pulled> {
    let mut out = Vec::new();
    for q in 0..queues {
        let mut offset = 0;
        loop {
            let r = ops::pull(c, "interop_rust_reader", topic, q, offset, 32, 0).expect("pull");
            if r.messages.is_empty() {
                break;
            }
            offset = r.messages.last().unwrap().queue_offset + 1;
            out.extend(r.messages);
        }
    }
    out
}

#[test]
fn rocketmq_client_rust_transactions_commit_roll_back_and_answer_checks() {
    // Build the driver before the broker starts: its first build takes minutes.
    setup::rust_rmq_driver();
    // Two shards (two logical brokers): the client spreads its transactions over both, and
    // each shard checks its own with the producer's connection to it.
    let mut spec = BrokerSpec::default().flush(Flush::Sync).shards(2);
    spec.broker_toml =
        "transaction_check_interval_ms = 200\ntransaction_timeout_ms = 1000\n".into();
    let broker = Broker::start(spec);
    let topic = "rust_client_tx";
    let queues = 4;
    create_topic_on(&broker, topic, queues as u32);
    let mut shards: Vec<Conn> = (0..2).map(|i| connect(broker.shard_addr(i))).collect();

    // (body, local state at send time, answer to the broker's check)
    let mut plan = Vec::new();
    for i in 0..6 {
        plan.push((format!("commit-{i}"), "commit", ""));
        plan.push((format!("rollback-{i}"), "rollback", ""));
    }
    for i in 0..3 {
        plan.push((format!("checked-commit-{i}"), "unknown", "commit"));
        plan.push((format!("checked-rollback-{i}"), "unknown", "rollback"));
    }
    let spec = serde_json::json!({
        "topic": topic,
        "group": "PG_rust_client_tx",
        "linger_ms": 20_000,
        "messages": plan.iter().map(|(body, local, check)| serde_json::json!({
            "body": body, "tags": "T", "local": local, "check": check,
        })).collect::<Vec<_>>(),
    });
    let work = setup::temp_dir("interop-rust");
    let started = Instant::now();
    let out = interop::run_rust(
        "transaction",
        &broker.namesrv(),
        &spec,
        Duration::from_secs(30),
        work.path(),
    );
    let sends = out["sends"].as_array().expect("sends");
    assert_eq!(sends.len(), plan.len());
    for s in sends {
        assert_eq!(s["ok"], true, "send failed: {}", interop::compact(s));
        assert_eq!(
            s["result"]["send_status"],
            "SEND_OK",
            "{}",
            interop::compact(s)
        );
        // The producer's id of the transaction is the message's unique key.
        assert_eq!(s["result"]["transaction_id"], s["result"]["msg_id"]);
    }
    // Each message left unknown was checked once and answered.
    let checks: BTreeMap<String, u64> = out["checks"]
        .as_object()
        .expect("checks")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    let expected_checks: BTreeMap<String, u64> = plan
        .iter()
        .filter(|(_, local, _)| *local == "unknown")
        .map(|(body, _, _)| (body.clone(), 1))
        .collect();
    assert_eq!(
        checks,
        expected_checks,
        "checks after {:?}",
        started.elapsed()
    );

    // The topic holds exactly the committed messages, each once, marked committed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let expected: Vec<String> = {
        let mut v: Vec<String> = plan
            .iter()
            .filter(|(_, local, check)| *local == "commit" || *check == "commit")
            .map(|(body, _, _)| body.clone())
            .collect();
        v.sort();
        v
    };
    loop {
        let got: Vec<(usize, Pulled)> = shards
            .iter_mut()
            .enumerate()
            .flat_map(|(i, c)| {
                all_messages(c, topic, queues)
                    .into_iter()
                    .map(move |m| (i, m))
            })
            .collect();
        let mut bodies: Vec<String> = got
            .iter()
            .map(|(_, m)| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        bodies.sort();
        if bodies == expected {
            let halves: std::collections::BTreeSet<(usize, i64)> = got
                .iter()
                .map(|(i, m)| (*i, m.prepared_transaction_offset))
                .collect();
            assert_eq!(halves.len(), got.len(), "one half message per commit");
            for (_, m) in &got {
                assert_eq!(m.sys_flag & 0xC, 8, "transaction type COMMIT");
                // The half message was stored before its commit.
                assert!(m.prepared_transaction_offset < m.physical_offset);
                assert_eq!(m.property("TAGS").as_deref(), Some("T"));
                assert_eq!(m.property("TRAN_MSG"), None);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topic holds {bodies:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let counter = |shards: &mut Vec<Conn>, name: &str| -> Vec<u64> {
        shards
            .iter_mut()
            .map(|c| ops::runtime_counter(c, name))
            .collect()
    };
    assert_eq!(counter(&mut shards, "ramjet.transactionOpen"), [0, 0]);
    let commits = counter(&mut shards, "ramjet.transactionCommit");
    assert_eq!(commits.iter().sum::<u64>(), 9);
    assert!(
        commits.iter().all(|n| *n > 0),
        "both shards commit: {commits:?}"
    );
    let rollbacks = counter(&mut shards, "ramjet.transactionRollback");
    assert_eq!(rollbacks.iter().sum::<u64>(), 9);
    let checks = counter(&mut shards, "ramjet.transactionChecks");
    assert_eq!(
        checks.iter().sum::<u64>(),
        6,
        "one check per unknown transaction"
    );
    assert_eq!(counter(&mut shards, "ramjet.transactionEndIgnored"), [0, 0]);
}

/// The same client's push consumer (clustering, from the first offset) and producer: every
/// message arrives once, a delayed one after its level, 5.x timer messages (`delay_millis`,
/// `deliver_time_ms`) after their time, and the ones the listener answers RECONSUME_LATER
/// come back once more through `%RETRY%<group>` with their reconsume count.
#[test]
fn rocketmq_client_rust_push_consumer_gets_plain_delayed_and_retried_messages() {
    setup::rust_rmq_driver();
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    // Level 2 (the delayed send) 2 s; level 3 (a first retry) 1 s.
    spec.broker_toml = "message_delay_level = \"1s 2s 1s 1s 1s\"\n".into();
    let broker = Broker::start(spec);
    let topic = "rust_client_roundtrip";
    create_topic_on(&broker, topic, 4);
    let mut c = connect(broker.shard_addr(0));

    let plain: Vec<String> = (0..6).map(|i| format!("plain-{i}")).collect();
    let fail_first = ["plain-1", "plain-4"];
    let mut messages: Vec<serde_json::Value> = plain
        .iter()
        .map(|b| serde_json::json!({"body": b, "tags": "RT"}))
        .collect();
    messages.push(serde_json::json!({"body": "delayed", "tags": "RT", "delay_level": 2}));
    messages.push(serde_json::json!({"body": "timer-ms", "tags": "RT", "delay_ms": 1500}));
    messages.push(serde_json::json!({"body": "timer-at", "tags": "RT", "deliver_in_ms": 2500}));
    // Recalled (RECALL_MESSAGE with its send's recall handle) before its time: never arrives.
    messages.push(
        serde_json::json!({"body": "timer-recalled", "tags": "RT", "delay_ms": 2000, "recall": true}),
    );
    let spec = serde_json::json!({
        "topic": topic,
        "group": "CG_rust_client",
        "producer_group": "PG_rust_client",
        "expected": plain.len() + 3 + fail_first.len(),
        "quiet_ms": 1500,
        "fail_first": fail_first,
        "messages": messages,
    });
    let out = roundtrip(&broker.namesrv(), &spec, "interop-rust-roundtrip");
    for s in out["sends"].as_array().expect("sends") {
        assert_eq!(s["ok"], true, "send failed: {}", interop::compact(s));
    }
    let deliveries = out["deliveries"].as_array().expect("deliveries");
    let mut by_body: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for d in deliveries {
        assert_eq!(d["topic"], topic, "{}", interop::compact(d));
        assert_eq!(d["tags"], "RT", "{}", interop::compact(d));
        by_body
            .entry(d["body"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(d);
    }
    let mut expected_bodies: Vec<String> = plain.clone();
    expected_bodies.extend(["delayed", "timer-ms", "timer-at"].map(String::from));
    expected_bodies.sort();
    assert_eq!(
        by_body.keys().cloned().collect::<Vec<_>>(),
        expected_bodies,
        "{}",
        interop::compact(&out)
    );
    for (body, got) in &by_body {
        let times: Vec<i64> = got
            .iter()
            .map(|d| d["reconsume_times"].as_i64().unwrap_or(-1))
            .collect();
        if fail_first.contains(&body.as_str()) {
            assert_eq!(times, [0, 1], "{body}: first delivery, then the retry");
            assert!(
                got[1]["delayed_ms"].as_u64().unwrap_or(0) >= 900,
                "{body}: retried before its 1 s level: {}",
                interop::compact(got[1])
            );
        } else {
            assert_eq!(times, [0], "{body}: delivered once");
        }
    }
    let delayed = by_body["delayed"][0]["delayed_ms"].as_u64().unwrap_or(0);
    assert!(
        (1_900..10_000).contains(&delayed),
        "level 2 (2 s) delivered after {delayed} ms"
    );
    for (body, ms) in [("timer-ms", 1_500), ("timer-at", 2_500)] {
        let waited = by_body[body][0]["delayed_ms"].as_u64().unwrap_or(0);
        assert!(
            (ms - 50..10_000).contains(&waited),
            "{body} ({ms} ms) delivered after {waited} ms"
        );
    }
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.sendBackRetry"), 2);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerDelivered"), 2);
    // The recall answered with the message's id, and the message was skipped at its time.
    let recalls = out["recalls"].as_array().expect("recalls");
    assert_eq!(recalls.len(), 1, "{}", interop::compact(&out));
    assert_eq!(recalls[0]["ok"], true, "{}", interop::compact(&out));
    let sent = out["sends"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["body"] == "timer-recalled"))
        .expect("the recalled send");
    assert_eq!(
        recalls[0]["result"],
        sent["result"]["msg_id"],
        "{}",
        interop::compact(&out)
    );
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerRecalled"), 1);
}

/// RocketMQ 5's pop consumer: with `clientRebalance` off the push consumer asks the broker for
/// its queues (QUERY_ASSIGNMENT); the group's mode, set to POP with `ramjet admin
/// consume-mode` (SET_MESSAGE_REQUEST_MODE), makes it pop queue -1 of both shards, acknowledge
/// what it consumed, and change the invisible time of what it failed, which then comes back
/// from the pop retry topic with its reconsume count 1.
#[test]
fn rocketmq_client_rust_pop_consumer_pops_acks_and_gets_failed_messages_again() {
    setup::rust_rmq_driver();
    let broker = Broker::start(BrokerSpec::default().shards(2));
    let topic = "rust_client_pop";
    let group = "CG_rust_pop";
    create_topic_on(&broker, topic, 2);
    let out = broker
        .admin_cli(&["consume-mode", group, topic, "pop"])
        .expect("consume-mode");
    assert!(out.contains("POP on ramjet-s0, ramjet-s1"), "{out}");
    let bodies: Vec<String> = (0..8).map(|i| format!("pop-{i}")).collect();
    let fail_first = ["pop-2", "pop-5"];
    let spec = serde_json::json!({
        "topic": topic,
        "group": group,
        "producer_group": "PG_rust_pop",
        "expected": bodies.len() + fail_first.len(),
        "quiet_ms": 1500,
        "fail_first": fail_first,
        "client_rebalance": false,
        "pop_invisible_ms": 5000,
        "messages": bodies.iter().map(|b| serde_json::json!({"body": b, "tags": "P"})).collect::<Vec<_>>(),
    });
    let out = roundtrip(&broker.namesrv(), &spec, "interop-rust-pop");
    for s in out["sends"].as_array().expect("sends") {
        assert_eq!(s["ok"], true, "send failed: {}", interop::compact(s));
    }
    let mut by_body: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for d in out["deliveries"].as_array().expect("deliveries") {
        assert_eq!(d["topic"], topic, "{}", interop::compact(d));
        by_body
            .entry(d["body"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(d["reconsume_times"].as_i64().unwrap_or(-1));
    }
    assert_eq!(
        by_body.keys().cloned().collect::<Vec<_>>(),
        bodies,
        "{}",
        interop::compact(&out)
    );
    for (body, times) in &by_body {
        if fail_first.contains(&body.as_str()) {
            assert_eq!(times, &[0, 1], "{body}: popped, failed, popped again");
        } else {
            assert_eq!(times, &[0], "{body}: popped once and acknowledged");
        }
    }
    // Every pop acknowledged or revived: nothing left in flight; the popped messages were
    // popped (not pulled), and the two failures went through the pop retry topic.
    let (mut popped, mut revived, mut inflight, mut pulls_found) = (0, 0, 0, 0);
    for i in 0..2 {
        let mut c = connect(broker.shard_addr(i));
        popped += ops::runtime_counter(&mut c, "ramjet.popped");
        revived += ops::runtime_counter(&mut c, "ramjet.popRevived");
        inflight += ops::runtime_counter(&mut c, "ramjet.popInflight");
        pulls_found += ops::runtime_counter(&mut c, "ramjet.pullsFound");
    }
    assert_eq!(popped, 10);
    assert_eq!(revived, 2);
    assert_eq!(inflight, 0);
    assert_eq!(pulls_found, 0, "no message went out by PULL_MESSAGE");
}

/// The same push consumer subscribed with a SQL92 selector (`MessageSelector::by_sql`): the
/// client checks the broker with CHECK_CLIENT_CONFIG, its heartbeat carries the expression,
/// and it gets exactly the messages whose properties match, each once.
#[test]
fn rocketmq_client_rust_push_consumer_with_a_sql92_selector() {
    setup::rust_rmq_driver();
    let broker = Broker::start(BrokerSpec::default());
    let topic = "rust_client_sql";
    create_topic_on(&broker, topic, 2);
    let messages: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            serde_json::json!({
                "body": format!("sql-{i}"), "tags": "RT",
                "props": {"level": i.to_string(), "region": if i % 3 == 0 { "eu" } else { "us" }},
            })
        })
        .collect();
    // level >= 6 AND region = 'us': 7, 8, 10, 11.
    let spec = serde_json::json!({
        "topic": topic,
        "group": "CG_rust_sql",
        "producer_group": "PG_rust_sql",
        "expected": 4,
        "quiet_ms": 1500,
        "sql": "level >= 6 AND region = 'us'",
        "messages": messages,
        "running_info": true,
    });
    let out = roundtrip(&broker.namesrv(), &spec, "interop-rust-sql");
    // GET_CONSUMER_RUNNING_INFO went through the broker to the consumer and back: its own
    // account of its subscription.
    let info = &out["running_info"]["ok"];
    let subs = info["subscriptionSet"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", interop::compact(&out)));
    assert!(
        subs.iter().any(|s| s["topic"] == topic
            && s["expressionType"] == "SQL92"
            && s["subString"] == "level >= 6 AND region = 'us'"),
        "{}",
        interop::compact(&out)
    );
    assert!(
        info["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty()),
        "{}",
        interop::compact(&out)
    );
    for s in out["sends"].as_array().expect("sends") {
        assert_eq!(s["ok"], true, "send failed: {}", interop::compact(s));
    }
    let got = delivered_bodies(&out);
    assert_eq!(
        got,
        ["sql-10", "sql-11", "sql-7", "sql-8"],
        "{}",
        interop::compact(&out)
    );
}

/// ACL from the Java client's port: rocketmq-client-rust's `AclClientRPCHook` signs every
/// request of its producer and push consumer (all ext fields after the header is put on the
/// wire, sorted, then the body). A broker with `acl_enable` takes them all from accounts that
/// may only publish, resp. only subscribe in their group; every message arrives once, and the
/// broker refused nothing.
#[test]
fn rocketmq_client_rust_signs_with_acl_credentials() {
    setup::rust_rmq_driver();
    let dir = setup::temp_dir("interop-rust-acl-");
    let topic = "rust_client_acl";
    let admin = ("rustadmin1", "rust-admin-secret");
    let broker = ops::start_acl_broker(
        dir.path(),
        admin,
        &[format!(
            "{{accessKey: rustclient1, secretKey: rust-client-secret, defaultTopicPerm: DENY, \
             defaultGroupPerm: DENY, topicPerms: [{topic}=PUB|SUB], groupPerms: [CG_rust_acl=SUB]}}"
        )],
        topic,
        2,
    );
    let mut c = connect(broker.shard_addr(0));
    let messages: Vec<serde_json::Value> = (0..10)
        .map(|i| serde_json::json!({"body": format!("acl-{i}"), "tags": "RT"}))
        .collect();
    let spec = serde_json::json!({
        "topic": topic,
        "group": "CG_rust_acl",
        "producer_group": "PG_rust_acl",
        "expected": 10,
        "quiet_ms": 1500,
        "access_key": "rustclient1",
        "secret_key": "rust-client-secret",
        "messages": messages,
    });
    let out = roundtrip(&broker.namesrv(), &spec, "interop-rust-acl");
    for s in out["sends"].as_array().expect("sends") {
        assert_eq!(s["ok"], true, "send failed: {}", interop::compact(s));
    }
    let mut want: Vec<String> = (0..10).map(|i| format!("acl-{i}")).collect();
    want.sort();
    assert_eq!(delivered_bodies(&out), want, "{}", interop::compact(&out));
    assert_eq!(
        ops::runtime_counter_signed(&mut c, "ramjet.aclDenied", admin),
        0,
        "a request of rocketmq-client-rust was refused; log:\n{}",
        broker.log_tail()
    );
}

/// Replication seen from a third-party client: messages acknowledged by a sync master (two
/// shards) whose process is then SIGKILLed are consumed by rocketmq-client-rust's push
/// consumer from the slave, which the route lists alone once the master is gone (the Java
/// client's `findBrokerAddressInSubscribe`, ported).
#[test]
fn rocketmq_client_rust_consumes_from_the_slave_after_the_master_is_killed() {
    setup::rust_rmq_driver();
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut mspec = BrokerSpec::broker_only(ns.namesrv_addr(), "rep_rust").shards(2);
    mspec.broker_toml = "replication = \"sync\"\nslave_sync_interval_ms = 200\n".into();
    let mut m = Broker::start(mspec);
    let mut sspec = BrokerSpec::broker_only(ns.namesrv_addr(), "rep_rust").shards(2);
    sspec.broker_toml = "role = \"slave\"\nslave_sync_interval_ms = 200\n".into();
    let s = Broker::start(sspec);
    let topic = "rust_client_slave_read";
    create_topic_on(&m, topic, 2);
    let mut sent = Vec::new();
    for shard in 0..2 {
        let mut c = connect(m.shard_addr(shard));
        let deadline = Instant::now() + Duration::from_secs(20);
        while ops::runtime_counter(&mut c, "ramjet.haSlaves") < 1 {
            assert!(
                Instant::now() < deadline,
                "no slave connected to shard {shard}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for i in 0..10 {
            let body = format!("slave-{shard}-{i}");
            ops::send(
                &mut c,
                topic,
                i % 2,
                &ops::OutMessage::new(body.clone().into_bytes()),
            )
            .unwrap_or_else(|e| panic!("send: {e}"))
            .expect_ok("sync send with the slave connected");
            sent.push(body);
        }
    }
    // The slave has the topic (copied every 200 ms) before the master goes.
    std::thread::sleep(Duration::from_millis(1000));
    m.kill();
    let spec = serde_json::json!({
        "topic": topic,
        "group": "CG_rust_slave",
        "producer_group": "PG_rust_slave",
        "expected": sent.len(),
        "quiet_ms": 1000,
        "messages": [],
    });
    let out = roundtrip(&ns.namesrv(), &spec, "interop-rust-slave");
    let got = delivered_bodies(&out);
    sent.sort();
    // Each acknowledged message once: none lost, none delivered twice.
    assert_eq!(got, sent, "{}", interop::compact(&out));
    drop(s);
}

/// `mqadmin topicStatus / consumerProgress / consumerConnection` through rocketmq-client-rust's
/// `DefaultMQAdminExt`: its parsers read ramjet's GET_TOPIC_STATS_INFO, GET_CONSUME_STATS
/// (fastjson's object keys) and GET_CONSUMER_CONNECTION_LIST, and the numbers are the queues'.
#[test]
fn rocketmq_client_rust_admin_reads_topic_status_consumer_progress_and_connections() {
    setup::rust_rmq_driver();
    let broker = Broker::start(BrokerSpec {
        broker_toml: "stats_sample_ms = 200\n".into(),
        ..BrokerSpec::default()
    });
    let topic = "rrmq_admin";
    let group = "rrmq_admin_g";
    create_topic_on(&broker, topic, 2);
    let mut c = connect(broker.shard_addr(0));
    // The shard stamps records with its cached clock: allow it to lag by a second.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_millis() as i64
        - 1_000;
    for (queue, n) in [(0, 5), (1, 3)] {
        for i in 0..n {
            ops::send(
                &mut c,
                topic,
                queue,
                &ops::OutMessage::new(format!("a-{queue}-{i}").into_bytes()),
            )
            .unwrap_or_else(|e| panic!("send: {e}"))
            .expect_ok("send");
        }
    }
    // A member of the group on this connection, and a committed offset of 2 on queue 0.
    let hb = serde_json::json!({
        "clientID": "127.0.0.1@admin-view",
        "producerDataSet": [{ "groupName": format!("{group}_pg") }],
        "consumerDataSet": [{
            "groupName": group,
            "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING",
            "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
            "unitMode": false,
            "subscriptionDataSet": [{
                "classFilterMode": false, "topic": topic, "subString": "*",
                "tagsSet": [], "codeSet": [], "subVersion": 7, "expressionType": "TAG"
            }]
        }],
    });
    let heartbeat = |c: &mut Conn, body: &serde_json::Value| {
        let r = c
            .call(
                ramjet_tests::wire::request::HEART_BEAT,
                &[],
                body.to_string().as_bytes(),
            )
            .expect("heartbeat");
        assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
    };
    heartbeat(&mut c, &hb);
    let commit = |c: &mut Conn, offset: i64| {
        let ext = [
            ("consumerGroup", group.to_string()),
            ("topic", topic.to_string()),
            ("queueId", "0".to_string()),
            ("commitOffset", offset.to_string()),
        ];
        let r = c
            .call(
                ramjet_tests::wire::request::UPDATE_CONSUMER_OFFSET,
                &ext,
                &[],
            )
            .expect("commit");
        assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
    };
    commit(&mut c, 2);
    // A pull of queue 0 from offset 3 (the group's pull offset, ahead of its commit).
    let p = ops::pull(&mut c, group, topic, 0, 3, 32, 0).expect("pull");
    assert_eq!(p.messages.len(), 2);

    let dir = setup::temp_dir("rrmq-admin");
    let spec = serde_json::json!({
        "topic": topic,
        "group": group,
        "broker_addr": broker.shard_addr(0).to_string(),
    });
    let out = interop::run_rust(
        "admin",
        &broker.namesrv_addr().to_string(),
        &spec,
        Duration::from_secs(40),
        dir.path(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_millis() as i64;
    // Keys are the client's MessageQueue serialized as JSON text.
    let by_queue = |table: &serde_json::Value| -> BTreeMap<i64, serde_json::Value> {
        table
            .as_object()
            .unwrap_or_else(|| panic!("offset table: {table}"))
            .iter()
            .map(|(k, v)| {
                let mq: serde_json::Value =
                    serde_json::from_str(k).unwrap_or_else(|e| panic!("key {k}: {e}"));
                assert_eq!(mq["topic"], topic);
                assert_eq!(mq["brokerName"], broker.shard_broker_name(0).as_str());
                (mq["queueId"].as_i64().expect("queueId"), v.clone())
            })
            .collect()
    };
    let stats = &out["topic_stats"]["ok"];
    let t = by_queue(&stats["offsetTable"]);
    assert_eq!(t.len(), 2, "{out}");
    for (q, max) in [(0, 5), (1, 3)] {
        assert_eq!(t[&q]["minOffset"], 0, "{out}");
        assert_eq!(t[&q]["maxOffset"], max, "{out}");
        let last = t[&q]["lastUpdateTimestamp"].as_i64().unwrap_or(0);
        assert!(
            last >= t0 && last <= now,
            "queue {q}: {last} outside {t0}..{now}"
        );
    }
    let cs = &out["consume_stats"]["ok"];
    let o = by_queue(&cs["offsetTable"]);
    assert_eq!(o.len(), 2, "{out}");
    assert_eq!(
        (
            &o[&0]["brokerOffset"],
            &o[&0]["consumerOffset"],
            &o[&0]["pullOffset"]
        ),
        (
            &serde_json::json!(5),
            &serde_json::json!(2),
            &serde_json::json!(3)
        ),
        "{out}"
    );
    let last = o[&0]["lastTimestamp"].as_i64().unwrap_or(0);
    assert!(last >= t0 && last <= now, "{out}");
    assert_eq!(o[&1]["brokerOffset"], 3, "{out}");
    assert_eq!(o[&1]["consumerOffset"], 0, "{out}");
    assert_eq!(o[&1]["lastTimestamp"], 0, "{out}");
    let conn = &out["connection"]["ok"];
    let set = conn["connectionSet"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(set.len(), 1, "{out}");
    assert_eq!(set[0]["clientId"], "127.0.0.1@admin-view", "{out}");
    assert!(
        set[0]["clientAddr"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1:"),
        "{out}"
    );
    assert_eq!(conn["messageModel"], "CLUSTERING", "{out}");
    assert_eq!(
        conn["consumeFromWhere"], "CONSUME_FROM_FIRST_OFFSET",
        "{out}"
    );
    assert_eq!(conn["subscriptionTable"][topic]["subVersion"], 7, "{out}");
    // The group as the client created it (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP) and read it
    // back (GET_SUBSCRIPTIONGROUP_CONFIG), and as the broker has it.
    assert!(out["group_created"].get("ok").is_some(), "{out}");
    assert_eq!(out["group_config"]["ok"]["retryMaxTimes"], 5, "{out}");
    assert_eq!(out["group_config"]["ok"]["groupName"], group, "{out}");
    // GET_TOPIC_CONFIG, QUERY_CONSUME_QUEUE (queue 0 from index 1, 3 units, checked against
    // the group's "*"), GET_SYSTEM_TOPIC_LIST_FROM_BROKER, GET_BROKER_CONSUME_STATS and
    // QUERY_SUBSCRIPTION_BY_CONSUMER as the client parses them, before the resets.
    let tc = &out["topic_config"]["ok"];
    assert_eq!(
        (
            &tc["topicName"],
            &tc["readQueueNums"],
            &tc["writeQueueNums"],
            &tc["perm"]
        ),
        (
            &serde_json::json!(topic),
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(6)
        ),
        "{out}"
    );
    let cq = &out["consume_queue"]["ok"];
    assert_eq!(
        (&cq["minQueueIndex"], &cq["maxQueueIndex"]),
        (&serde_json::json!(0), &serde_json::json!(5)),
        "{out}"
    );
    assert_eq!(cq["subscriptionData"]["subString"], "*", "{out}");
    let units = cq["queueData"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(units.len(), 3, "{out}");
    let stored = all_messages(&mut c, topic, 1);
    for (u, m) in units.iter().zip(&stored[1..4]) {
        assert_eq!(u["physicOffset"], m.physical_offset, "{out}");
        assert!(u["physicSize"].as_i64().unwrap_or(0) > 0, "{out}");
        assert_eq!(u["eval"], true, "{out}");
    }
    let system: Vec<&str> = out["system_topics"]["ok"]["topicList"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for t in ["TBW102", "SELF_TEST_TOPIC", "DefaultCluster_REPLY_TOPIC"] {
        assert!(system.contains(&t), "{t} missing: {out}");
    }
    assert!(!system.contains(&topic), "{out}");
    let bcs = &out["broker_consume_stats"]["ok"];
    assert_eq!(bcs["brokerAddr"], broker.shard_addr(0).to_string(), "{out}");
    assert_eq!(
        bcs["totalDiff"], 6,
        "5 - 2 on queue 0, 3 - 0 on queue 1: {out}"
    );
    let mine: Vec<&serde_json::Value> = bcs["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .filter(|g| g["group"] == group)
        .collect();
    assert_eq!(mine.len(), 1, "{out}");
    assert_eq!(
        (&mine[0]["topics"], &mine[0]["diff"]),
        (&serde_json::json!(1), &serde_json::json!(6)),
        "{out}"
    );
    let sub = &out["subscription"]["ok"];
    assert_eq!(
        (&sub["topic"], &sub["subString"], &sub["subVersion"]),
        (
            &serde_json::json!(topic),
            &serde_json::json!("*"),
            &serde_json::json!(7)
        ),
        "{out}"
    );
    // UPDATE_AND_CREATE_TOPIC_LIST created both topics with their 3 queues.
    assert!(out["topic_list"].get("ok").is_some(), "{out}");
    for t in ["a", "b"] {
        let r = c
            .call(351, &[("topic", format!("{topic}_list_{t}"))], &[])
            .expect("get topic config");
        assert_eq!(
            r.code,
            ramjet_tests::wire::response::SUCCESS,
            "{:?}",
            r.remark
        );
        let cfg: serde_json::Value = serde_json::from_slice(&r.body).expect("topic config json");
        assert_eq!(
            (
                cfg["readQueueNums"].as_i64(),
                cfg["writeQueueNums"].as_i64()
            ),
            (Some(3), Some(3))
        );
    }
    let r = c
        .call(351, &[("topic", "nope".to_string())], &[])
        .expect("get topic config");
    assert_eq!(r.code, 17, "TOPIC_NOT_EXIST: {:?}", r.remark);
    // DefaultMQAdminExt.resetOffsetByTimestamp to 0 (both queues to their start), then
    // resetOffsetByQueueId to offset 2 of queue 1: the committed offsets follow.
    let reset = by_queue(&out["reset_by_time"]["ok"]);
    assert_eq!(
        (reset.len(), &reset[&0], &reset[&1]),
        (2, &serde_json::json!(0), &serde_json::json!(0)),
        "{out}"
    );
    assert!(out["reset_queue"].get("ok").is_some(), "{out}");
    let committed = |c: &mut Conn, queue: i32| ops::committed_offset(c, group, topic, queue);
    assert_eq!(
        (committed(&mut c, 0), committed(&mut c, 1)),
        (Some(0), Some(2))
    );
    // mqadmin getBrokerConfig: RocketMQ's keys with this shard's values, ramjet's as
    // section.key.
    let cfg = &out["broker_config"]["ok"];
    assert_eq!(
        cfg["brokerName"],
        broker.shard_broker_name(0).as_str(),
        "{out}"
    );
    assert_eq!(cfg["flushDiskType"], "ASYNC_FLUSH", "{out}");
    assert_eq!(cfg["store.flush"], "async", "{out}");
    assert_eq!(cfg["broker.stats_sample_ms"], "200", "{out}");
    // mqadmin producerConnection / the 5.x producer table: the producer of this connection.
    let producers = &out["producers"]["ok"]["connectionSet"];
    assert_eq!(producers.as_array().map(Vec::len), Some(1), "{out}");
    assert_eq!(producers[0]["clientId"], "127.0.0.1@admin-view", "{out}");
    assert_eq!(producers[0]["clientAddr"], set[0]["clientAddr"], "{out}");
    // GET_ALL_PRODUCER_INFO in Java's ProducerTableInfo shape (rocketmq-client-rust 1.0.0's
    // get_all_producer_info expects snake_case keys, which no Java broker writes either, so
    // it is read here).
    let r = c.call(328, &[], &[]).expect("all producers");
    assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
    let all: serde_json::Value = serde_json::from_slice(&r.body).expect("producer table json");
    let table = &all["data"][format!("{group}_pg")];
    assert_eq!(table.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(table[0]["clientId"], "127.0.0.1@admin-view", "{all}");
    assert_eq!(table[0]["remoteIP"], producers[0]["clientAddr"], "{all}");
    assert!(
        table[0]["lastUpdateTimestamp"].as_i64().unwrap_or(0) >= t0,
        "{all}"
    );
    // The group list form created both groups.
    assert!(out["group_list"].get("ok").is_some(), "{out}");
    for retries in [3, 4] {
        let r = c
            .call(352, &[("group", format!("{group}_l{retries}"))], &[])
            .expect("get group");
        assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
        let g: serde_json::Value = serde_json::from_slice(&r.body).expect("group json");
        assert_eq!(g["retryMaxTimes"], retries);
    }
    // cloneGroupOffset copied the reset offsets; then the topic is consumed by both groups,
    // and the group consumes the topic.
    assert!(out["clone"].get("ok").is_some(), "{out}");
    let clone_group = format!("{group}_clone");
    for (queue, want) in [(0, 0), (1, 2)] {
        let got = ops::committed_offset(&mut c, &clone_group, topic, queue);
        assert_eq!(got, Some(want), "queue {queue}");
    }
    let mut by_who: Vec<String> = out["consumed_by"]["ok"]["groupList"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|g| g.as_str().unwrap_or("").to_string())
        .collect();
    by_who.sort();
    assert_eq!(by_who, [group.to_string(), clone_group], "{out}");
    assert_eq!(
        out["topics_of"]["ok"]["topicList"],
        serde_json::json!([topic]),
        "{out}"
    );
    // The group's next pull of each queue is moved there (and takes the reset: commits count
    // again).
    for (queue, from, to) in [(0, 3, 0), (1, 0, 2)] {
        let p = ops::pull(&mut c, group, topic, queue, from, 32, 0).expect("pull");
        assert_eq!(
            (p.code, p.next_begin_offset),
            (21, to),
            "queue {queue}: {p:?}"
        );
    }
    let r = c
        .call(352, &[("group", group.to_string())], &[])
        .expect("get group");
    assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
    let g: serde_json::Value = serde_json::from_slice(&r.body).expect("group json");
    assert_eq!(
        (g["retryMaxTimes"].as_i64(), g["consumeEnable"].as_bool()),
        (Some(5), Some(true))
    );

    // A heartbeat naming another topic replaces the group's subscriptions; an older version
    // of a subscription does not replace a newer one.
    let resubscribe = |topic_name: &str, version: i64| {
        let mut hb = hb.clone();
        hb["consumerDataSet"][0]["subscriptionDataSet"][0]["topic"] = topic_name.into();
        hb["consumerDataSet"][0]["subscriptionDataSet"][0]["subVersion"] = version.into();
        hb["consumerDataSet"][0]["subscriptionDataSet"][0]["subString"] = "tagA".into();
        hb["consumerDataSet"][0]["subscriptionDataSet"][0]["tagsSet"] = serde_json::json!(["tagA"]);
        hb
    };
    let subscriptions = |c: &mut Conn| -> serde_json::Value {
        let r = c
            .call(203, &[("consumerGroup", group.to_string())], &[])
            .expect("connections");
        assert_eq!(r.code, ramjet_tests::wire::response::SUCCESS);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("connection json");
        v["subscriptionTable"].clone()
    };
    for (t, version, want_topic, want_version) in [
        ("rrmq_admin_other", 8, "rrmq_admin_other", 8),
        ("rrmq_admin_other", 5, "rrmq_admin_other", 8),
    ] {
        heartbeat(&mut c, &resubscribe(t, version));
        let subs = subscriptions(&mut c);
        let topics: Vec<&String> = subs.as_object().expect("table").keys().collect();
        assert_eq!(topics, [want_topic], "{subs}");
        assert_eq!(subs[want_topic]["subVersion"], want_version, "{subs}");
    }
    heartbeat(&mut c, &hb);
    assert_eq!(subscriptions(&mut c)[topic]["subVersion"], 7);

    // The refusals, and the rates: sends and commits for a second, sampled every 200 ms.
    const GET_TOPIC_STATS_INFO: i32 = 202;
    const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    const GET_CONSUME_STATS: i32 = 208;
    let r = c
        .call(GET_TOPIC_STATS_INFO, &[("topic", "nope".to_string())], &[])
        .expect("topic stats");
    assert_eq!(r.code, 17, "TOPIC_NOT_EXIST: {:?}", r.remark);
    let r = c
        .call(
            GET_CONSUMER_CONNECTION_LIST,
            &[("consumerGroup", "nobody".to_string())],
            &[],
        )
        .expect("connections");
    assert_eq!(r.code, 206, "CONSUMER_NOT_ONLINE: {:?}", r.remark);
    let rate_in = |body: &[u8], key: &str| -> f64 {
        let text = String::from_utf8_lossy(body);
        let at = text
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing: {text}"));
        let rest = &text[at + key.len() + 3..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end]
            .parse()
            .unwrap_or_else(|e| panic!("{key}: {e}: {text}"))
    };
    let (mut put_tps, mut consume_tps) = (0.0, 0.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut committed = 2;
    while put_tps <= 0.0 || consume_tps <= 0.0 {
        assert!(
            Instant::now() < deadline,
            "rates never rose: put {put_tps} consume {consume_tps}"
        );
        for _ in 0..20 {
            ops::send(&mut c, topic, 0, &ops::OutMessage::new(b"r".to_vec()))
                .unwrap_or_else(|e| panic!("send: {e}"))
                .expect_ok("send");
        }
        committed += 10;
        commit(&mut c, committed);
        std::thread::sleep(Duration::from_millis(100));
        let r = c
            .call(GET_TOPIC_STATS_INFO, &[("topic", topic.to_string())], &[])
            .expect("topic stats");
        put_tps = rate_in(&r.body, "topicPutTps");
        let r = c
            .call(
                GET_CONSUME_STATS,
                &[
                    ("consumerGroup", group.to_string()),
                    ("topic", topic.to_string()),
                ],
                &[],
            )
            .expect("consume stats");
        consume_tps = rate_in(&r.body, "consumeTps");
    }
}

/// Request-reply with the client's own API: `DefaultMQProducer::request` sends each request
/// and waits; a push consumer replies to it through a second producer (SEND_REPLY_MESSAGE_V2
/// to `DefaultCluster_REPLY_TOPIC`), and the broker pushes each reply to the requester's
/// connection (PUSH_REPLY_MESSAGE_TO_CLIENT), two shards serving both topics.
#[test]
fn rocketmq_client_rust_request_gets_its_reply() {
    setup::rust_rmq_driver();
    let broker = Broker::start(BrokerSpec::default().shards(2));
    let topic = "rust_client_requests";
    create_topic_on(&broker, topic, 2);
    let bodies: Vec<String> = (0..6).map(|i| format!("ask-{i}")).collect();
    let spec = serde_json::json!({
        "topic": topic,
        "group": "CG_rust_replier",
        "producer_group": "PG_rust_requester",
        // Generous: the first run after a build is slow on this VM (binaries paged in cold).
        "timeout_ms": 45_000,
        "bodies": bodies,
    });
    let dir = setup::temp_dir("interop-rust-request");
    let out = interop::run_rust(
        "request",
        &broker.namesrv(),
        &spec,
        Duration::from_secs(180),
        dir.path(),
    );
    let requests = out["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), bodies.len(), "{}", interop::compact(&out));
    for (r, body) in requests.iter().zip(&bodies) {
        assert_eq!(r["ok"], true, "request {body}: {}", interop::compact(&out));
        assert_eq!(r["reply_body"], format!("re:{body}"));
        assert_eq!(r["reply_topic"], "DefaultCluster_REPLY_TOPIC");
        assert!(r["correlation_id"].as_str().is_some_and(|c| !c.is_empty()));
    }
    for r in out["replies"].as_array().expect("replies") {
        assert_eq!(r["ok"], true, "reply: {}", interop::compact(r));
    }
    // Each reply pushed once, none refused, and each stored in a reply topic.
    let (mut pushed, mut unpushed, mut stored) = (0, 0, 0);
    for i in 0..2 {
        let mut c = connect(broker.shard_addr(i));
        pushed += ops::runtime_counter(&mut c, "ramjet.repliesPushed");
        unpushed += ops::runtime_counter(&mut c, "ramjet.repliesUnpushed");
        stored += all_messages(&mut c, "DefaultCluster_REPLY_TOPIC", 1).len();
    }
    assert_eq!(pushed, bodies.len() as u64);
    assert_eq!(unpushed, 0);
    assert_eq!(stored, bodies.len());
}
