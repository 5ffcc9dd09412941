//! Transactional messages from a third-party client: rocketmq-client-rust (the Apache RocketMQ
//! Rust client, a port of the Java client, from crates.io) sends half messages with its
//! `TransactionMQProducer`, ends them with END_TRANSACTION, and answers the broker's
//! CHECK_TRANSACTION_STATE for those its local transaction left unknown. What the topic holds
//! afterwards is read with plain pulls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ramjet_tests::interop;
use ramjet_tests::ops::{self, Pulled};
use ramjet_tests::wire::response;
use ramjet_tests::{setup, Broker, BrokerSpec, Conn, Flush};

const ROUTE_WAIT: Duration = Duration::from_secs(20);

fn connect(addr: std::net::SocketAddr) -> Conn {
    Conn::connect(addr).unwrap_or_else(|e| panic!("{e}"))
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
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    spec.broker_toml =
        "transaction_check_interval_ms = 200\ntransaction_timeout_ms = 1000\n".into();
    let broker = Broker::start(spec);
    let topic = "rust_client_tx";
    let queues = 4;
    let mut c = connect(broker.shard_addr(0));
    let r = ops::create_topic(&mut c, topic, queues as u32).expect("create topic");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    ops::wait_route(broker.namesrv_addr(), topic, 1, ROUTE_WAIT);

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
        let got = all_messages(&mut c, topic, queues);
        let mut bodies: Vec<String> = got
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect();
        bodies.sort();
        if bodies == expected {
            let halves: std::collections::BTreeSet<i64> =
                got.iter().map(|m| m.prepared_transaction_offset).collect();
            assert_eq!(halves.len(), got.len(), "one half message per commit");
            for m in &got {
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
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionCommit"), 9);
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionRollback"),
        9
    );
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionEndIgnored"),
        0
    );
}
