//! `ramjet admin status` against the real broker: the counters it prints are the broker's.

use std::time::Duration;

use ramjet_tests::ops::{self, OutMessage, SendOutcome};
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};

const TOPIC: &str = "e2e_admin_status";

fn admin(broker: &Broker, args: &[&str]) -> String {
    broker
        .admin_cli(args)
        .unwrap_or_else(|e| panic!("ramjet admin {args:?}: {e}"))
}

#[test]
fn admin_status_prints_each_shards_counters() {
    let broker = Broker::start(BrokerSpec::default().shards(2));
    // Five messages on shard 0, none on shard 1.
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    let mut end = 0;
    for i in 0..5 {
        let msg = OutMessage::new(format!("status-{i}").into_bytes());
        match ops::send(&mut c, TOPIC, 0, &msg).expect("send") {
            SendOutcome::Ok(ok) => assert_eq!(ok.queue_offset, i),
            other => panic!("send {i}: {other:?}"),
        }
        end += 1;
    }
    ops::wait_route(broker.namesrv_addr(), TOPIC, 1, Duration::from_secs(20));

    let v: serde_json::Value =
        serde_json::from_str(&admin(&broker, &["status", "--json"])).expect("json");
    let brokers = v["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 2, "{v}");
    let info = |name: &str, key: &str| -> i64 {
        let b = brokers
            .iter()
            .find(|b| b["broker_name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {v}"));
        b["info"][key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name} {key}: {v}"))
    };
    let s0 = broker.shard_broker_name(0);
    let s1 = broker.shard_broker_name(1);
    assert_eq!(info(&s0, "msgPutTotalTodayNow"), end);
    assert_eq!(info(&s1, "msgPutTotalTodayNow"), 0);
    let appended = info(&s0, "ramjet.bytesAppended");
    assert!(appended > 0);
    assert_eq!(info(&s0, "commitLogMaxOffset"), appended);
    assert_eq!(info(&s1, "commitLogMaxOffset"), 0);

    // --filter keeps only matching keys, in text and in JSON.
    let text = admin(&broker, &["status", "--filter", "MSGPUT"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("broker ") && lines[2].starts_with("broker "),
        "{text}"
    );
    assert!(
        text.contains(&format!("msgPutTotalTodayNow                  {end}")),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&admin(
        &broker,
        &["status", "--json", "--filter", "fdatasyncCount"],
    ))
    .expect("json");
    for b in v["brokers"].as_array().expect("brokers") {
        let keys: Vec<&String> = b["info"].as_object().expect("info").keys().collect();
        assert_eq!(keys, ["ramjet.fdatasyncCount"], "{v}");
    }
}

/// Under `flush = sync` the status carries the durability path's latencies: one `syncAck`
/// per single send answered, one `fdatasync` entry per CommitLog fdatasync, and with one
/// send at a time each acknowledgement contains an fdatasync of its own.
#[test]
fn admin_status_reports_sync_ack_and_fdatasync_latencies() {
    const SENDS: i64 = 20;
    let broker = Broker::start(BrokerSpec::default().flush(Flush::Sync));
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let r = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(r.code, response::SUCCESS);
    for i in 0..SENDS {
        let msg = OutMessage::new(format!("sync-{i}").into_bytes());
        match ops::send(&mut c, TOPIC, 0, &msg).expect("send") {
            SendOutcome::Ok(ok) => assert_eq!(ok.queue_offset, i),
            other => panic!("send {i}: {other:?}"),
        }
    }
    ops::wait_route(broker.namesrv_addr(), TOPIC, 1, Duration::from_secs(20));
    let v: serde_json::Value =
        serde_json::from_str(&admin(&broker, &["status", "--json"])).expect("json");
    let info = &v["brokers"][0]["info"];
    let get = |key: &str| -> u64 {
        info[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing or not a number: {v}"))
    };
    assert_eq!(get("ramjet.syncAckCount"), SENDS as u64, "{v}");
    // One send at a time: each had a group commit of its own.
    assert_eq!(get("ramjet.fdatasyncCount"), SENDS as u64, "{v}");
    assert!(get("ramjet.commitWriteCount") >= 1, "{v}");
    for name in ["syncAck", "fdatasync", "commitWrite"] {
        let q: Vec<u64> = ["P50", "P90", "P99", "P999", "Max"]
            .iter()
            .map(|p| get(&format!("ramjet.{name}{p}Us")))
            .collect();
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{name} {q:?}: {v}");
        assert!(q[4] > 0, "{name} max is 0: {v}");
    }
    // The last whole 10 s window: the broker is younger than two windows here, so it holds
    // at most the sends (none unless the first window already ended), percentiles in order.
    for name in ["syncAck", "fdatasync", "commitWrite"] {
        let n = get(&format!("ramjet.{name}Last10sCount"));
        assert!(n <= SENDS as u64, "{name}: {n}: {v}");
        let q: Vec<u64> = ["P50Us", "P99Us", "MaxUs"]
            .iter()
            .map(|p| get(&format!("ramjet.{name}Last10s{p}")))
            .collect();
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "{name} {q:?}: {v}");
        assert_eq!(n == 0, q[2] == 0, "{name}: a max exactly when counted: {v}");
    }
    // Each acknowledgement waited for its own fdatasync (one each), so every percentile of
    // the acknowledgements is at least the same percentile of the fdatasyncs.
    for p in ["P50", "P90", "P99", "P999", "Max"] {
        assert!(
            get(&format!("ramjet.syncAck{p}Us")) >= get(&format!("ramjet.fdatasync{p}Us")),
            "{p}: {v}"
        );
    }

    // `admin config` (GET_BROKER_CONFIG): RocketMQ's keys and ramjet's, this broker's values.
    let v: serde_json::Value =
        serde_json::from_str(&admin(&broker, &["config", "--json", "--filter", "flush"]))
            .expect("json");
    let cfg = &v["brokers"][0]["info"];
    assert_eq!(cfg["flushDiskType"], "SYNC_FLUSH", "{v}");
    assert_eq!(cfg["store.flush"], "sync", "{v}");
    assert!(
        cfg.get("brokerName").is_none(),
        "--filter keeps only flush keys: {v}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&admin(&broker, &["config", "--json"])).expect("json");
    let cfg = &v["brokers"][0]["info"];
    assert_eq!(
        cfg["brokerName"],
        broker.shard_broker_name(0).as_str(),
        "{v}"
    );
    assert_eq!(
        cfg["listenPort"],
        broker.shard_addr(0).port().to_string(),
        "{v}"
    );
    assert_eq!(cfg["brokerRole"], "ASYNC_MASTER", "{v}");
    assert!(
        cfg["storePathRootDir"]
            .as_str()
            .unwrap_or("")
            .ends_with("shard-0"),
        "{v}"
    );
    // Changing it at run time is refused, with what to do instead; nothing changes.
    let r = c
        .call(25, &[], b"flushDiskType=ASYNC_FLUSH\nstore.flush=async\n")
        .expect("update config");
    assert_eq!(r.code, 3, "REQUEST_CODE_NOT_SUPPORTED: {:?}", r.remark);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("flushDiskType, store.flush") && remark.contains("restart"),
        "{remark}"
    );
    let again = admin(&broker, &["config", "--filter", "flushDiskType"]);
    assert!(again.contains("SYNC_FLUSH"), "{again}");
}
