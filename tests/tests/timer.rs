//! 5.x timer messages (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`) through
//! `rmq_sys_wheel_timer`, against the real broker binary: delivered at their time, rolled
//! past the roll window, kept across a SIGKILL, refused with RocketMQ's codes when illegal.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ramjet_net::client::transport::block_on;
use ramjet_net::client::{Client, ClientConfig, Message, Producer, ProducerConfig};
use ramjet_tests::ops::{self, OutMessage, PullOutcome, Pulled};
use ramjet_tests::ops::{connect, create_topic_on as create_topic};
use ramjet_tests::wire::request;
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn send_ok(c: &mut Conn, topic: &str, m: &OutMessage) -> ops::SendOk {
    ops::send(c, topic, 0, m).expect("send").expect_ok(topic)
}

fn refused(c: &mut Conn, topic: &str, m: &OutMessage) -> (i32, String) {
    match ops::send(c, topic, 0, m).expect("send") {
        ops::SendOutcome::Refused { code, remark } => (code, remark.unwrap_or_default()),
        ops::SendOutcome::Ok(ok) => panic!("stored at {ok:?}, a refusal was expected"),
    }
}

fn pull(c: &mut Conn, topic: &str, offset: i64, suspend_ms: u64) -> PullOutcome {
    ops::pull(c, "timer_test_reader", topic, 0, offset, 32, suspend_ms).expect("pull")
}

/// Long-polls queue 0 of `topic` until it holds `n` messages from offset 0, each checked the
/// moment it arrives: returns them with when each was seen.
fn collect(c: &mut Conn, topic: &str, n: usize, within: Duration) -> Vec<(Pulled, i64)> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let r = pull(c, topic, got.len() as i64, 500);
        let seen = now_ms();
        for m in r.messages {
            got.push((m, seen));
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages in {topic} within {within:?}",
            got.len()
        );
    }
    got
}

fn prop(p: &Pulled, name: &str) -> Option<String> {
    p.property(name)
}

fn num(p: &Pulled, name: &str) -> i64 {
    prop(p, name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", String::from_utf8_lossy(&p.body)))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// The timer checkpoint of shard 0 as written, if any: (low, last loaded, read time).
fn checkpoint(data: &Path) -> Option<(i64, i64, i64)> {
    let text = std::fs::read(data.join("shard-0/config/timerCheckpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    Some((
        v["lowQueueOffset"].as_i64()?,
        v["lastTimerQueueOffset"].as_i64()?,
        v["lastReadTimeMs"].as_i64()?,
    ))
}

#[test]
fn timer_messages_arrive_at_their_time_roll_and_survive_a_sigkill() {
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    // A 2 s roll window: the 4 s and 7 s messages are written again on the way.
    spec.broker_toml = "message_delay_level = \"1s 2s\"\nschedule_check_ms = 20\noffset_persist_interval_ms = 100\ntimer_roll_window_ms = 2000\n".into();
    let mut broker = Broker::start(spec);
    let topic = "timed";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));

    let t0 = now_ms();
    let past = OutMessage::new(b"deliver time passed: stored at once".to_vec())
        .prop("TIMER_DELIVER_MS", &(t0 - 5_000).to_string());
    let level = OutMessage::new(b"a delay level wins over a timer".to_vec())
        .prop("DELAY", "1")
        .prop("TIMER_DELAY_SEC", "100");
    let a = OutMessage::new(b"a: 1.5 s".to_vec())
        .prop("TAGS", "ta")
        .prop("KEYS", "ka")
        .prop("TIMER_DELAY_MS", "1500");
    let b = OutMessage::new(b"b: deliver at t0 + 4 s".to_vec())
        .prop("TAGS", "tb")
        .prop("TIMER_DELIVER_MS", &(t0 + 4_000).to_string());
    let cc = OutMessage::new(b"c: 7 s".to_vec()).prop("TIMER_DELAY_SEC", "7");
    let p = send_ok(&mut c, topic, &past);
    assert_eq!(p.queue_offset, 0, "a passed deliver time is no timer");
    send_ok(&mut c, topic, &level);
    let sa = send_ok(&mut c, topic, &a);
    send_ok(&mut c, topic, &b);
    send_ok(&mut c, topic, &cc);
    // The answer names the queue asked for and the timer queue's offset.
    assert_eq!((sa.queue_id, sa.queue_offset), (0, 0));
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerEnqueued"), 3);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerPending"), 3);

    // The delay level (1 s) and a (1.5 s) arrive, in that order, not before their time.
    let got = collect(&mut c, topic, 3, Duration::from_secs(10));
    assert_eq!(got[0].0.body, past.body);
    assert_eq!(got[1].0.body, level.body);
    assert_eq!(
        prop(&got[1].0, "TIMER_DELAY_SEC"),
        None,
        "dropped for the level"
    );
    let (ma, seen_a) = &got[2];
    assert_eq!(ma.body, a.body);
    assert!(*seen_a >= t0 + 1_500, "a seen {} ms after t0", seen_a - t0);
    assert_eq!(prop(ma, "TAGS").as_deref(), Some("ta"));
    assert_eq!(prop(ma, "KEYS").as_deref(), Some("ka"));
    assert_eq!(prop(ma, "REAL_TOPIC").as_deref(), Some(topic));
    assert_eq!(prop(ma, "REAL_QID").as_deref(), Some("0"));
    let out = num(ma, "TIMER_OUT_MS");
    assert!(
        (t0..t0 + 1_500 + 1_000).contains(&(out - 1_500)),
        "TIMER_OUT_MS {out}, t0 {t0}"
    );
    assert!(num(ma, "TIMER_DEQUEUE_MS") >= out);
    assert!(num(ma, "TIMER_ENQUEUE_MS") <= out - 1_500 + 1_000);
    // Stored when delivered (the store's clock is the coarse one: a few ms behind).
    assert!(
        ma.store_timestamp >= out - 20,
        "stored {} before TIMER_OUT_MS {out}",
        ma.store_timestamp
    );
    assert_eq!(prop(ma, "TIMER_ROLL_TIMES"), None, "inside the window");
    assert_eq!(prop(ma, "TIMER_FIRE_MS"), None);

    // Wait until the checkpoint shows a handled and the 2 s rolls of b and c loaded (5 units
    // in the timer queue), then SIGKILL while b and c wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cp = loop {
        if let Some(cp) = checkpoint(&broker.data_dir()) {
            if cp.1 >= 5 {
                break cp;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint past the rolls");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(cp.2 > out, "read time {} not past a's {out}", cp.2);
    // b and c rolled at 2 s (c rolls again at 4 s).
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerRolled"), 2);
    broker.kill();
    broker.restart();
    let mut c = connect(broker.shard_addr(0));

    // b and c arrive after their times; a is not delivered again.
    let got = collect(&mut c, topic, 5, Duration::from_secs(20));
    let (mb, seen_b) = &got[3];
    assert_eq!(mb.body, b.body);
    assert!(*seen_b >= t0 + 4_000, "b seen {} ms after t0", seen_b - t0);
    assert_eq!(num(mb, "TIMER_OUT_MS"), t0 + 4_000);
    assert_eq!(prop(mb, "TAGS").as_deref(), Some("tb"));
    assert_eq!(num(mb, "TIMER_ROLL_TIMES"), 1);
    let (mc, seen_c) = &got[4];
    assert_eq!(mc.body, cc.body);
    assert!(*seen_c >= t0 + 7_000, "c seen {} ms after t0", seen_c - t0);
    assert_eq!(num(mc, "TIMER_ROLL_TIMES"), 3, "7 s through 2 s windows");
    assert_eq!(prop(mc, "TIMER_FIRE_MS"), None);
    // Nothing more (the timer queue is drained; a came once).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), 5);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerPending"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerDropped"), 0);
}

#[test]
fn illegal_timers_are_refused_with_rocketmqs_codes_and_store_nothing() {
    let spec = BrokerSpec {
        broker_toml: "timer_max_delay_ms = 60000\ntimer_max_pending = 2\n".into(),
        ..Default::default()
    };
    let broker = Broker::start(spec);
    let topic = "timer_refusals";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));

    let (code, remark) = refused(
        &mut c,
        topic,
        &OutMessage::new(b"x".to_vec()).prop("TIMER_DELAY_SEC", "61"),
    );
    assert_eq!(code, 13, "MESSAGE_ILLEGAL: {remark}");
    assert!(remark.contains("max delay 60000ms"), "{remark}");
    let (code, remark) = refused(
        &mut c,
        topic,
        &OutMessage::new(b"x".to_vec()).prop("TIMER_DELIVER_MS", "tomorrow"),
    );
    assert_eq!(code, 13, "{remark}");
    assert!(remark.contains("TIMER_DELIVER_MS"), "{remark}");
    // Batches cannot carry a timer.
    let body = ops::batch_body(&[OutMessage::new(b"one".to_vec())]);
    let ext = ops::send_ext(topic, 0, 0, b"TIMER_DELAY_MS\x011000\x02", true);
    let r = c
        .call(request::SEND_BATCH_MESSAGE, &ext, &body)
        .expect("batch send");
    assert_eq!(r.code, 13, "{:?}", r.remark);
    assert!(r.remark.unwrap_or_default().contains("batch"));
    // Producers cannot write the timer queue themselves.
    let (code, _) = refused(
        &mut c,
        "rmq_sys_wheel_timer",
        &OutMessage::new(b"x".to_vec()),
    );
    assert_ne!(code, 0);

    // Two may wait (broker.timer_max_pending = 2); the third is told the shard is busy.
    for _ in 0..2 {
        send_ok(
            &mut c,
            topic,
            &OutMessage::new(b"w".to_vec()).prop("TIMER_DELAY_SEC", "30"),
        );
    }
    let (code, remark) = refused(
        &mut c,
        topic,
        &OutMessage::new(b"x".to_vec()).prop("TIMER_DELAY_SEC", "30"),
    );
    assert_eq!(code, 2, "SYSTEM_BUSY: {remark}");
    assert!(remark.contains("broker.timer_max_pending"), "{remark}");
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerPending"), 2);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerEnqueued"), 2);

    // Off: refused as a broker with its timer wheel off refuses them.
    let spec = BrokerSpec {
        broker_toml: "timer_enable = false\n".into(),
        ..Default::default()
    };
    let off = Broker::start(spec);
    create_topic(&off, topic, 1);
    let mut c = connect(off.shard_addr(0));
    let (code, remark) = refused(
        &mut c,
        topic,
        &OutMessage::new(b"x".to_vec()).prop("TIMER_DELAY_MS", "100"),
    );
    assert_eq!(code, 13, "{remark}");
    assert!(remark.contains("broker.timer_enable"), "{remark}");
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), 0);
}

#[test]
fn many_timers_in_mixed_order_each_arrive_once_and_not_early() {
    let spec = BrokerSpec {
        broker_toml: "timer_roll_window_ms = 1000\n".into(),
        ..Default::default()
    };
    let broker = Broker::start(spec);
    let topic = "timer_mixed";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    // Delays out of order (some past the 1 s roll window, some 0: stored at once), so both
    // the in-order FIFO and the heap are used.
    const N: usize = 600;
    let mut due = std::collections::HashMap::new();
    for i in 0..N {
        let delay = (i * 7919 % 2_500) as i64;
        let m = OutMessage::new(format!("m{i}").into_bytes())
            .prop("TIMER_DELAY_MS", &delay.to_string());
        let sent = now_ms();
        send_ok(&mut c, topic, &m);
        due.insert(format!("m{i}"), sent + delay);
    }
    let got = collect(&mut c, topic, N, Duration::from_secs(30));
    let mut seen = std::collections::HashSet::new();
    for (m, _) in &got {
        let body = String::from_utf8(m.body.clone()).expect("utf-8 body");
        assert!(seen.insert(body.clone()), "{body} delivered twice");
        // Stored no earlier than its time (the store's coarse clock: a few ms).
        assert!(
            m.store_timestamp >= due[&body] - 20,
            "{body} stored {} ms early",
            due[&body] - m.store_timestamp
        );
    }
    assert_eq!(seen.len(), N);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ops::max_offset(&mut c, topic, 0).unwrap(), N as i64);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerPending"), 0);
    // A message is rolled once per 1 s window it outlasts (give or take one at the
    // windows' edges: the broker's clock moved between the send and the store).
    let want: u64 = (0..N)
        .map(|i| {
            ((i * 7919 % 2_500) as u64)
                .div_ceil(1_000)
                .saturating_sub(1)
        })
        .sum();
    let rolled = ops::runtime_counter(&mut c, "ramjet.timerRolled");
    assert!(
        (want.saturating_sub(5)..=want + 5).contains(&rolled),
        "{rolled} rolls, {want} expected"
    );
}

/// RECALL_MESSAGE (RocketMQ 5.3): a timer send's answer carries a recall handle; recalling
/// with it before the time keeps the message from arriving while its neighbours arrive, and
/// the refusals are RocketMQ's (bad handle, wrong topic, wrong broker, time passed).
#[test]
fn a_recalled_timer_message_never_arrives_and_bad_recalls_are_refused() {
    const RECALL: i32 = 370;
    let broker = Broker::start(BrokerSpec::default());
    let topic = "timer_recall";
    create_topic(&broker, topic, 1);
    create_topic(&broker, "timer_recall_other", 1);
    let mut c = connect(broker.shard_addr(0));
    // Three timer messages 1.5 s out; the middle one is recalled.
    let mut handles = Vec::new();
    for (i, id) in ["ID-KEEP-1", "ID-RECALL", "ID-KEEP-2"].iter().enumerate() {
        let m = OutMessage::new(format!("m{i}").into_bytes())
            .prop("UNIQ_KEY", id)
            .prop("TIMER_DELAY_MS", "1500");
        let ext = ops::send_ext(topic, 0, 0, &m.properties(), false);
        let r = c
            .call(request::SEND_MESSAGE_V2, &ext, &m.body)
            .expect("send");
        assert_eq!(r.code, 0, "{:?}", r.remark);
        let h = r.ext_str("recallHandle").to_string();
        assert!(
            !h.is_empty(),
            "a timer send's answer carries a recall handle: {:?}",
            r.ext
        );
        handles.push(h);
    }
    // A plain send's answer has none.
    let m = OutMessage::new(b"plain".to_vec()).prop("UNIQ_KEY", "ID-PLAIN");
    let ext = ops::send_ext("timer_recall_other", 0, 0, &m.properties(), false);
    let r = c
        .call(request::SEND_MESSAGE_V2, &ext, &m.body)
        .expect("send");
    assert!(!r.ext.contains_key("recallHandle"), "{:?}", r.ext);

    let recall = |c: &mut Conn, topic: &str, handle: &str| {
        let ext = [
            ("producerGroup", "timer_recall_pg".to_string()),
            ("topic", topic.to_string()),
            ("recallHandle", handle.to_string()),
        ];
        c.call(RECALL, &ext, &[]).expect("recall")
    };
    let r = recall(&mut c, topic, &handles[1]);
    assert_eq!(
        (r.code, r.ext_str("msgId")),
        (0, "ID-RECALL"),
        "{:?}",
        r.remark
    );
    // Refusals (ILLEGAL_OPERATION 604, TOPIC_NOT_EXIST 17).
    let r = recall(&mut c, topic, "not a handle");
    assert_eq!(r.code, 604, "{:?}", r.remark);
    let r = recall(&mut c, "timer_recall_other", &handles[0]);
    assert_eq!(
        (r.code, r.remark.as_deref()),
        (604, Some("recall failed, topic not match"))
    );
    let r = recall(&mut c, "timer_recall_nope", &handles[0]);
    assert_eq!(r.code, 17, "{:?}", r.remark);
    let foreign = ramjet_core::remoting::recall::RecallHandle::encode(
        topic,
        "another-broker",
        now_ms() + 5_000,
        "ID-KEEP-1",
    );
    let r = recall(&mut c, topic, &foreign);
    assert_eq!(r.code, 604, "{:?}", r.remark);
    let past = ramjet_core::remoting::recall::RecallHandle::encode(
        topic,
        &broker.shard_broker_name(0),
        now_ms() - 1,
        "ID-KEEP-1",
    );
    let r = recall(&mut c, topic, &past);
    assert_eq!(
        (r.code, r.remark.as_deref()),
        (604, Some("recall failed, timestamp invalid"))
    );

    // The project's client: the handle in its SendResult, Producer::recall.
    let namesrv = broker.namesrv();
    let (id, recalled) = block_on(None, async move {
        let config = ClientConfig::new(&namesrv).unwrap_or_else(|e| panic!("{e}"));
        let p = Producer::new(
            Client::new(config),
            ProducerConfig::new("timer_recall_rust"),
        );
        let m = Message::new(topic, b"m3".to_vec()).with_delay_ms(1500);
        let r = p.send(m).await.unwrap_or_else(|e| panic!("send: {e}"));
        let handle = r
            .recall_handle
            .clone()
            .expect("a timer send's result has a handle");
        let got = p
            .recall(topic, &handle)
            .await
            .unwrap_or_else(|e| panic!("recall: {e}"));
        (r.msg_id, got)
    })
    .unwrap_or_else(|e| panic!("client executor: {e}"));
    assert_eq!(id, recalled);
    // And the CLI: `ramjet produce --delay-ms` prints the handle, `ramjet recall` uses it.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(ramjet_tests::setup::ramjet_bin())
            .args(args)
            .args(["--namesrv", &broker.namesrv()])
            .output()
            .expect("run ramjet");
        assert!(
            out.status.success(),
            "ramjet {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let sent: serde_json::Value = serde_json::from_str(&cli(&[
        "produce",
        "--topic",
        topic,
        "--delay-ms",
        "1500",
        "--json",
        "m4",
    ]))
    .expect("produce json");
    let handle = sent["recall_handle"]
        .as_str()
        .expect("a recall handle")
        .to_string();
    let out = cli(&["recall", "--topic", topic, &handle]);
    assert_eq!(
        out.trim(),
        format!("recalled msg_id={}", sent["msg_id"].as_str().unwrap_or(""))
    );

    // The two kept arrive; the recalled ones do not, before or after their time.
    let got = collect(&mut c, topic, 2, Duration::from_secs(15));
    let bodies: Vec<&[u8]> = got.iter().map(|(m, _)| m.body.as_slice()).collect();
    assert_eq!(bodies, [b"m0".as_slice(), b"m2".as_slice()]);
    // All three recalled ones come up (and are skipped) within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops::runtime_counter(&mut c, "ramjet.timerRecalled") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = pull(&mut c, topic, 2, 0);
    assert!(r.messages.is_empty(), "{:?}", r.messages.len());
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerRecalled"), 3);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerDelivered"), 2);
    // Recalling it again after its time: refused.
    let r = recall(&mut c, topic, &handles[1]);
    assert_eq!(r.code, 604, "{:?}", r.remark);
}

/// A recall is durable: once the checkpoint counts the recall's marker as handled, the recall
/// itself is in `timerRecalls.json`, so a SIGKILLed broker restarted from that checkpoint
/// still skips the message, and delivers its neighbour.
#[test]
fn a_recall_survives_a_sigkill_of_the_broker() {
    let spec = BrokerSpec {
        broker_toml: "offset_persist_interval_ms = 100\n".into(),
        ..Default::default()
    };
    let mut broker = Broker::start(spec);
    let topic = "timer_recall_kill";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let mut handles = Vec::new();
    for id in ["ID-KEEP", "ID-GONE"] {
        let m = OutMessage::new(id.as_bytes().to_vec())
            .prop("UNIQ_KEY", id)
            .prop("TIMER_DELAY_MS", "4000");
        let ext = ops::send_ext(topic, 0, 0, &m.properties(), false);
        let r = c
            .call(request::SEND_MESSAGE_V2, &ext, &m.body)
            .expect("send");
        assert_eq!(r.code, 0, "{:?}", r.remark);
        handles.push(r.ext_str("recallHandle").to_string());
    }
    let ext = [
        ("topic", topic.to_string()),
        ("recallHandle", handles[1].clone()),
    ];
    let r = c.call(370, &ext, &[]).expect("recall");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let recalled_at = now_ms();
    // Wait until a checkpoint counts the marker (read time past the recall) and the recall
    // file holds it.
    let data = broker.data_dir();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let file = std::fs::read_to_string(data.join("shard-0/config/timerRecalls.json"))
            .unwrap_or_default();
        let counted = checkpoint(&data).is_some_and(|cp| cp.2 > recalled_at + 50);
        if counted && file.contains("ID-GONE") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint past the recall: {file:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill();
    broker.restart();
    let mut c = connect(broker.shard_addr(0));
    let got = collect(&mut c, topic, 1, Duration::from_secs(20));
    assert_eq!(got[0].0.body, b"ID-KEEP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops::runtime_counter(&mut c, "ramjet.timerRecalled") < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerRecalled"), 1);
    let r = pull(&mut c, topic, 1, 0);
    assert!(
        r.messages.is_empty(),
        "the recalled message arrived after the restart"
    );
}
