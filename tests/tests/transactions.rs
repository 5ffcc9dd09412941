//! Transactional messages against the real broker binary, spoken on the wire as a Java or C++
//! producer does (spec §7.6): half messages, END_TRANSACTION (oneway and answered), the
//! broker's CHECK_TRANSACTION_STATE to a producer of the group, recovery of open
//! transactions after SIGKILL, and the discard after the last check.

use std::time::{Duration, Instant};

use ramjet_core::record::{decode_offset_msg_id, RecordView};
use ramjet_tests::ops::{self, OutMessage, PullOutcome, SendOk};
use ramjet_tests::ops::{connect, create_topic_on as create_topic};
use ramjet_tests::wire::{request, response, Command};
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};

const END_TRANSACTION: i32 = 37;
const CHECK_TRANSACTION_STATE: i32 = 39;
const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;
const GROUP: &str = "PG_tx";

fn half_message(body: &str, uniq: &str) -> OutMessage {
    OutMessage::new(body.as_bytes().to_vec())
        .prop("TAGS", "tx")
        .prop("TRAN_MSG", "true")
        .prop("PGROUP", GROUP)
        .prop("UNIQ_KEY", uniq)
}

/// Sends `m` as a producer does a half message (sysflag 4 = prepared).
fn send_half(c: &mut Conn, topic: &str, queue: i32, m: &OutMessage) -> Command {
    let props = m.properties();
    let mut ext = ops::send_ext(topic, queue, m.flag, &props, false);
    for (k, v) in ext.iter_mut() {
        match *k {
            "a" => *v = GROUP.to_string(),
            "f" => *v = "4".to_string(),
            _ => {}
        }
    }
    c.call(request::SEND_MESSAGE_V2, &ext, &m.body)
        .expect("send half")
}

fn half_ok(r: Command) -> SendOk {
    assert_eq!(
        r.code,
        response::SUCCESS,
        "half message refused: {:?}",
        r.remark
    );
    SendOk {
        msg_id: r.ext_str("msgId").to_string(),
        queue_id: r.ext_i64("queueId") as i32,
        queue_offset: r.ext_i64("queueOffset"),
    }
}

fn end_ext(
    group: &str,
    queue_offset: i64,
    commit_log_offset: i64,
    state: i32,
    from_check: bool,
    uniq: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("producerGroup", group.to_string()),
        ("tranStateTableOffset", queue_offset.to_string()),
        ("commitLogOffset", commit_log_offset.to_string()),
        ("commitOrRollback", state.to_string()),
        ("fromTransactionCheck", from_check.to_string()),
        ("msgId", uniq.to_string()),
    ]
}

/// END_TRANSACTION commit of the half message `h` answered (not oneway), not from a check.
fn commit_answered(c: &mut Conn, h: &SendOk, uniq: &str) -> Command {
    let ext = end_ext(
        GROUP,
        h.queue_offset,
        commit_log_offset(&h.msg_id),
        COMMIT,
        false,
        uniq,
    );
    c.call(END_TRANSACTION, &ext, &[]).unwrap()
}

/// The CommitLog offset in an offset message id (what a producer puts in END_TRANSACTION).
fn commit_log_offset(msg_id: &str) -> i64 {
    decode_offset_msg_id(msg_id).expect("offset msg id").1
}

fn pull(c: &mut Conn, topic: &str, queue: i32, offset: i64) -> PullOutcome {
    ops::pull(c, "tx_reader", topic, queue, offset, 32, 0).expect("pull")
}

fn max_offset(c: &mut Conn, topic: &str, queue: i32) -> i64 {
    let r = c
        .call(
            request::GET_MAX_OFFSET,
            &[("topic", topic.to_string()), ("queueId", queue.to_string())],
            &[],
        )
        .expect("max offset");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    r.ext_i64("offset")
}

/// Registers `client` as a producer of [`GROUP`] on `c` (where checks will arrive).
fn heartbeat_producer(c: &mut Conn, client: &str) {
    let body = serde_json::json!({
        "clientID": client,
        "producerDataSet": [{"groupName": GROUP}],
        "consumerDataSet": [],
    });
    let r = c
        .call(request::HEART_BEAT, &[], body.to_string().as_bytes())
        .expect("heartbeat");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
}

/// Reads frames until a CHECK_TRANSACTION_STATE arrives or `within` passes.
fn next_check(c: &mut Conn, within: Duration) -> Command {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no CHECK_TRANSACTION_STATE within {within:?}"
        );
        match c.read_frame(left) {
            Ok(cmd) if !cmd.is_response() && cmd.code == CHECK_TRANSACTION_STATE => return cmd,
            Ok(_) => continue,
            Err(e) => panic!("no CHECK_TRANSACTION_STATE within {within:?}: {e}"),
        }
    }
}

/// Pulls (topic, queue) from `offset` until `n` messages arrived or `within` passed.
fn wait_pulled(
    c: &mut Conn,
    topic: &str,
    queue: i32,
    n: usize,
    within: Duration,
) -> Vec<ops::Pulled> {
    let deadline = Instant::now() + within;
    loop {
        let r = pull(c, topic, queue, 0);
        if r.messages.len() >= n {
            return r.messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages in {topic}/{queue} within {within:?}",
            r.messages.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commits_store_the_message_once_and_rollbacks_store_nothing() {
    let spec = BrokerSpec::default().flush(Flush::Sync);
    let broker = Broker::start(spec);
    let topic = "tx_orders";
    create_topic(&broker, topic, 2);
    let mut c = connect(broker.shard_addr(0));

    let m1 = half_message("order 1: commit", "U1");
    let m2 = half_message("order 2: rollback", "U2");
    let h1 = half_ok(send_half(&mut c, topic, 0, &m1));
    let h2 = half_ok(send_half(&mut c, topic, 1, &m2));
    // The answer names the queue asked for and the half queue's offsets.
    assert_eq!((h1.queue_id, h1.queue_offset), (0, 0));
    assert_eq!((h2.queue_id, h2.queue_offset), (1, 1));
    // Half messages are not consumable.
    assert!(pull(&mut c, topic, 0, 0).messages.is_empty());
    assert!(pull(&mut c, topic, 1, 0).messages.is_empty());
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 2);

    // Commit, answered (a producer may send it twoway): the message is in its real queue.
    let off1 = commit_log_offset(&h1.msg_id);
    let r = c
        .call(
            END_TRANSACTION,
            &end_ext(GROUP, h1.queue_offset, off1, COMMIT, false, "U1"),
            &[],
        )
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let got = pull(&mut c, topic, 0, 0).messages;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body, m1.body);
    assert_eq!(
        (m.topic.as_str(), m.queue_id, m.queue_offset),
        (topic, 0, 0)
    );
    assert_eq!(m.sys_flag & 0xC, COMMIT, "transaction type COMMIT");
    assert_eq!(m.prepared_transaction_offset, off1);
    assert_eq!(m.property("TAGS").as_deref(), Some("tx"));
    assert_eq!(m.property("UNIQ_KEY").as_deref(), Some("U1"));
    assert_eq!(m.property("PGROUP").as_deref(), Some(GROUP));
    for gone in ["TRAN_MSG", "REAL_TOPIC", "REAL_QID"] {
        assert_eq!(
            m.property(gone),
            None,
            "{gone} kept on the committed message"
        );
    }

    // Rollback, oneway as Java and C++ send it: nothing is stored for the topic.
    let off2 = commit_log_offset(&h2.msg_id);
    c.oneway(
        END_TRANSACTION,
        &end_ext(GROUP, h2.queue_offset, off2, ROLLBACK, false, "U2"),
        &[],
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ops::runtime_counter(&mut c, "ramjet.transactionRollback") < 1 {
        assert!(Instant::now() < deadline, "rollback not applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pull(&mut c, topic, 1, 0).messages.is_empty());

    // A second commit of the first, a commit of the rolled-back one: nothing more stored.
    for (h, off, uniq) in [(&h1, off1, "U1"), (&h2, off2, "U2")] {
        let r = c
            .call(
                END_TRANSACTION,
                &end_ext(GROUP, h.queue_offset, off, COMMIT, true, uniq),
                &[],
            )
            .unwrap();
        assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    }
    assert_eq!(max_offset(&mut c, topic, 0), 1);
    assert_eq!(max_offset(&mut c, topic, 1), 0);
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionEndIgnored"),
        2
    );
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionCommit"), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);

    // Ends that do not match a half message are refused with the reason.
    let h3 = half_ok(send_half(&mut c, topic, 0, &half_message("order 3", "U3")));
    let off3 = commit_log_offset(&h3.msg_id);
    let bad = [
        (
            end_ext("other_group", h3.queue_offset, off3, COMMIT, false, "U3"),
            "producer group",
        ),
        (
            end_ext(GROUP, h3.queue_offset, off3 + 1, COMMIT, false, "U3"),
            "commitLogOffset",
        ),
        (
            end_ext(GROUP, 999, off3, COMMIT, false, "U3"),
            "no half message",
        ),
        (
            end_ext(GROUP, h3.queue_offset, off3, 5, false, "U3"),
            "commitOrRollback",
        ),
    ];
    for (ext, why) in bad {
        let r = c.call(END_TRANSACTION, &ext, &[]).unwrap();
        assert_eq!(r.code, response::SYSTEM_ERROR, "{why}: {:?}", r.remark);
        let remark = r.remark.unwrap_or_default();
        assert!(remark.contains(why), "{why}: {remark}");
    }
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 1);
    // State unknown (0): the transaction stays open.
    let r = c
        .call(
            END_TRANSACTION,
            &end_ext(GROUP, h3.queue_offset, off3, 0, false, "U3"),
            &[],
        )
        .unwrap();
    assert_eq!(r.code, response::SUCCESS);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 1);

    // A transactional batch is refused.
    let batch = ops::batch_body(&[half_message("b1", "B1"), half_message("b2", "B2")]);
    let props = half_message("", "B").properties();
    let ext = ops::send_ext(topic, 0, 0, &props, true);
    let r = c.call(request::SEND_BATCH_MESSAGE, &ext, &batch).unwrap();
    assert_eq!(r.code, 13, "MESSAGE_ILLEGAL expected: {:?}", r.remark);
    // Producers may not write the system topics themselves.
    let r = ops::send(
        &mut c,
        "RMQ_SYS_TRANS_HALF_TOPIC",
        0,
        &OutMessage::new(b"x".to_vec()),
    )
    .unwrap();
    assert!(
        matches!(r, ops::SendOutcome::Refused { code: 16, .. }),
        "NO_PERMISSION expected"
    );
}

#[test]
fn unanswered_transactions_are_checked_and_survive_a_sigkill() {
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    spec.broker_toml = "transaction_check_interval_ms = 100\ntransaction_timeout_ms = 1000\noffset_persist_interval_ms = 200\n".into();
    let mut broker = Broker::start(spec);
    let topic = "tx_checked";
    create_topic(&broker, topic, 2);
    let mut c = connect(broker.shard_addr(0));
    let mut producer = connect(broker.shard_addr(0));
    heartbeat_producer(&mut producer, "10.0.0.1@tx-test");

    let a = half_message("A: answered commit at the first check", "UA");
    let b = half_message("B: never answered before the crash", "UB");
    let ha = half_ok(send_half(&mut c, topic, 0, &a));
    let hb = half_ok(send_half(&mut c, topic, 1, &b));
    let sent = Instant::now();

    // Both are checked, each through a renewed copy of its half message.
    let mut checks = Vec::new();
    for _ in 0..2 {
        checks.push(next_check(&mut producer, Duration::from_secs(10)));
    }
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "checked after {:?}, before the 1 s timeout",
        sent.elapsed()
    );
    checks.sort_by_key(|k| k.ext_str("msgId").to_string());
    for (check, (h, m, uniq, queue)) in checks.iter().zip([(&ha, &a, "UA", 0), (&hb, &b, "UB", 1)])
    {
        assert_eq!(check.ext_str("msgId"), uniq);
        assert_eq!(check.ext_str("transactionId"), uniq);
        let copy_offset = check.ext_i64("tranStateTableOffset");
        let copy_phys = check.ext_i64("commitLogOffset");
        assert!(
            copy_offset > h.queue_offset,
            "the check names the renewed copy"
        );
        assert_ne!(copy_phys, commit_log_offset(&h.msg_id));
        assert_eq!(commit_log_offset(check.ext_str("offsetMsgId")), copy_phys);
        // The body is the renewed copy under its real topic and queue, as a client decodes it.
        let v = RecordView::parse(&check.body).expect("check body is a stored record");
        assert_eq!((v.topic(), v.queue_id()), (topic, queue));
        assert_eq!(v.body(), &m.body[..]);
        assert_eq!(
            (v.queue_offset(), v.physical_offset()),
            (copy_offset, copy_phys)
        );
        let prop = |n: &str| {
            ramjet_core::record::properties::get_str(v.properties(), n).map(str::to_string)
        };
        assert_eq!(prop("TRANSACTION_CHECK_TIMES").as_deref(), Some("1"));
        assert_eq!(
            prop("TRAN_PREPARED_QUEUE_OFFSET"),
            Some(h.queue_offset.to_string())
        );
        assert_eq!(prop("PGROUP").as_deref(), Some(GROUP));
    }
    // Answer A's check: commit, oneway, from the check.
    let ca = &checks[0];
    producer
        .oneway(
            END_TRANSACTION,
            &end_ext(
                GROUP,
                ca.ext_i64("tranStateTableOffset"),
                ca.ext_i64("commitLogOffset"),
                COMMIT,
                true,
                "UA",
            ),
            &[],
        )
        .unwrap();
    let got = wait_pulled(&mut c, topic, 0, 1, Duration::from_secs(5));
    assert_eq!(got[0].body, a.body);
    // The transaction state offsets move once the op is durable (persist interval 200 ms).
    std::thread::sleep(Duration::from_millis(700));

    broker.kill();
    broker.restart();
    let mut c = connect(broker.shard_addr(0));
    let mut producer = connect(broker.shard_addr(0));
    heartbeat_producer(&mut producer, "10.0.0.1@tx-test");
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 1);

    // B is still open after the SIGKILL and is checked again, with a higher count.
    let check = next_check(&mut producer, Duration::from_secs(10));
    assert_eq!(check.ext_str("msgId"), "UB");
    let v = RecordView::parse(&check.body).unwrap();
    let times: u32 =
        ramjet_core::record::properties::get_str(v.properties(), "TRANSACTION_CHECK_TIMES")
            .unwrap()
            .parse()
            .unwrap();
    assert!(times >= 2, "check count {times} after the restart");
    // A late END for B's first half message (before its renewal) ends the one transaction…
    c.oneway(
        END_TRANSACTION,
        &end_ext(
            GROUP,
            hb.queue_offset,
            commit_log_offset(&hb.msg_id),
            COMMIT,
            false,
            "UB",
        ),
        &[],
    )
    .unwrap();
    let got = wait_pulled(&mut c, topic, 1, 1, Duration::from_secs(5));
    assert_eq!(got[0].body, b.body);
    // …and the answer to the check that follows stores nothing more.
    producer
        .oneway(
            END_TRANSACTION,
            &end_ext(
                GROUP,
                check.ext_i64("tranStateTableOffset"),
                check.ext_i64("commitLogOffset"),
                COMMIT,
                true,
                "UB",
            ),
            &[],
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ops::runtime_counter(&mut c, "ramjet.transactionEndIgnored") < 1 {
        assert!(Instant::now() < deadline, "second end not seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each committed exactly once; nothing open.
    assert_eq!(max_offset(&mut c, topic, 0), 1);
    assert_eq!(max_offset(&mut c, topic, 1), 1);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);
}

#[test]
fn unanswered_transactions_are_discarded_after_the_last_check() {
    let mut spec = BrokerSpec::default().flush(Flush::Async);
    spec.broker_toml =
        "transaction_check_interval_ms = 50\ntransaction_timeout_ms = 200\ntransaction_check_max = 2\n"
            .into();
    let broker = Broker::start(spec);
    let topic = "tx_lost";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let m = half_message("nobody answers for me", "UL");
    half_ok(send_half(&mut c, topic, 0, &m));

    // No producer of the group is connected: the checks go unsent, then the message moves
    // to TRANS_CHECK_MAX_TIME_TOPIC.
    let got = wait_pulled(
        &mut c,
        "TRANS_CHECK_MAX_TIME_TOPIC",
        0,
        1,
        Duration::from_secs(10),
    );
    assert_eq!(got[0].body, m.body);
    assert_eq!(got[0].property("REAL_TOPIC").as_deref(), Some(topic));
    assert_eq!(
        got[0].property("TRANSACTION_CHECK_TIMES").as_deref(),
        Some("2")
    );
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionChecksUnsent"),
        2
    );
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionDiscarded"),
        1
    );
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);
    assert!(pull(&mut c, topic, 0, 0).messages.is_empty());
    assert!(broker.log_text().contains("transaction discarded"));
}

#[test]
fn transactions_can_be_refused_and_bounded() {
    let mut spec = BrokerSpec::default().flush(Flush::Async);
    spec.broker_toml = "transaction_max_open = 2\n".into();
    let broker = Broker::start(spec);
    let topic = "tx_bounded";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    half_ok(send_half(&mut c, topic, 0, &half_message("1", "X1")));
    let h2 = half_ok(send_half(&mut c, topic, 0, &half_message("2", "X2")));
    let r = send_half(&mut c, topic, 0, &half_message("3", "X3"));
    assert_eq!(r.code, response::SYSTEM_BUSY, "{:?}", r.remark);
    assert!(r
        .remark
        .unwrap_or_default()
        .contains("transaction_max_open"));
    // Ending one makes room.
    let r = c
        .call(
            END_TRANSACTION,
            &end_ext(
                GROUP,
                h2.queue_offset,
                commit_log_offset(&h2.msg_id),
                ROLLBACK,
                false,
                "X2",
            ),
            &[],
        )
        .unwrap();
    assert_eq!(r.code, response::SUCCESS);
    half_ok(send_half(&mut c, topic, 0, &half_message("3", "X3")));

    let refusing = Broker::start(BrokerSpec {
        broker_toml: "reject_transaction_message = true\n".into(),
        ..BrokerSpec::default()
    });
    create_topic(&refusing, topic, 1);
    let mut c = connect(refusing.shard_addr(0));
    let r = send_half(&mut c, topic, 0, &half_message("no", "N"));
    assert_eq!(r.code, 16, "NO_PERMISSION expected: {:?}", r.remark);
}

/// The project's own client: `TransactionProducer` commits, rolls back, and answers the
/// broker's check for the transaction it left unknown.
#[test]
fn ramjet_transaction_producer_commits_rolls_back_and_answers_checks() {
    use ramjet_net::client::{Client, ClientConfig, LocalState, Message, ProducerConfig};
    use ramjet_net::client::{TransactionProducer, TransactionSendResult};
    use ramjet_net::runtime::{start_executor, ExecutorOptions, Pin};

    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    spec.broker_toml = "transaction_check_interval_ms = 100\ntransaction_timeout_ms = 500\n".into();
    let broker = Broker::start(spec);
    let topic = "tx_rust_client";
    create_topic(&broker, topic, 2);
    let namesrv = broker.namesrv();
    type Out = (
        Vec<Result<TransactionSendResult, String>>,
        (u64, u64, u64, u64),
    );
    let exec = start_executor(
        "e2e-tx-client",
        Pin::Unbound,
        ExecutorOptions::default(),
        move || async move {
            let client = Client::new(ClientConfig::new(&namesrv).expect("client config"));
            // The checker commits what the local transaction left unknown.
            let producer = TransactionProducer::new(client, ProducerConfig::new(GROUP), |m| {
                if m.body.as_ref() == b"unknown, then committed by the check" {
                    LocalState::Commit
                } else {
                    LocalState::Rollback
                }
            });
            producer.start();
            let mut results = Vec::new();
            for (body, state) in [
                ("committed at once", LocalState::Commit),
                ("rolled back at once", LocalState::Rollback),
                ("unknown, then committed by the check", LocalState::Unknown),
            ] {
                let msg = Message::new(topic, body.as_bytes().to_vec()).with_tags("rt");
                let r = producer
                    .send_in_transaction(msg, move |_, _| state)
                    .await
                    .map_err(|e| e.to_string());
                results.push(r);
            }
            // Wait (bounded) for the broker's check and this producer's answer.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while producer.checks_answered().0 == 0 && std::time::Instant::now() < deadline {
                ramjet_net::client::transport::sleep(Duration::from_millis(20)).await;
            }
            // Let the oneway answer leave.
            ramjet_net::client::transport::sleep(Duration::from_millis(200)).await;
            producer.shutdown();
            let out: Out = (results, producer.checks_answered());
            out
        },
    )
    .unwrap_or_else(|e| panic!("cannot start the client executor: {e}"));
    let (results, checks) = exec
        .join()
        .unwrap_or_else(|e| panic!("client executor failed: {e}"));
    let results: Vec<TransactionSendResult> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("transactional send failed: {e}")))
        .collect();
    assert_eq!(
        results.iter().map(|r| r.state).collect::<Vec<_>>(),
        [
            LocalState::Commit,
            LocalState::Rollback,
            LocalState::Unknown
        ]
    );
    assert_eq!(checks, (1, 0, 0, 0), "one check, answered commit");
    let mut c = connect(broker.shard_addr(0));
    let mut bodies = Vec::new();
    for q in 0..2 {
        for m in pull(&mut c, topic, q, 0).messages {
            assert_eq!(m.sys_flag & 0xC, COMMIT);
            assert_eq!(m.property("PGROUP").as_deref(), Some(GROUP));
            bodies.push(String::from_utf8(m.body).unwrap());
        }
    }
    bodies.sort();
    assert_eq!(
        bodies,
        ["committed at once", "unknown, then committed by the check"]
    );
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionChecks"), 1);
}

/// A half message pushed out of the tail cache (40 MiB stored after it, O_DIRECT writes that
/// leave nothing in the page cache) is read in off the shard when its END comes, and
/// committed byte for byte.
#[test]
fn a_half_message_on_a_cold_file_is_committed_intact() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "tx_cold";
    create_topic(&broker, topic, 1);
    create_topic(&broker, "tx_cold_filler", 1);
    let mut c = connect(broker.shard_addr(0));
    c.set_timeout(Duration::from_secs(30));
    let body: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut m = half_message("", "UC");
    m.body = body.clone();
    let h = half_ok(send_half(&mut c, topic, 0, &m));
    for b in 0..40 {
        let msgs: Vec<OutMessage> = (0..256)
            .map(|i| OutMessage::new(vec![(b + i) as u8; 4096]))
            .collect();
        ops::send_batch(&mut c, "tx_cold_filler", 0, &msgs)
            .expect("send batch")
            .expect_ok("filler");
    }
    let r = commit_answered(&mut c, &h, "UC");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let got = pull(&mut c, topic, 0, 0).messages;
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "committed body differs");
    if ramjet_tests::setup::kernel_has_cachestat() {
        assert_eq!(
            ops::runtime_counter(&mut c, "ramjet.transactionColdReads"),
            1,
            "the half message was not read in off the shard"
        );
    }
}

/// A half message with a 5.x timer (`TIMER_DELAY_MS`): the commit applies it, from the time of
/// the commit, as RocketMQ's END_TRANSACTION does.
#[test]
fn a_committed_half_message_with_a_timer_waits_its_time() {
    let broker = Broker::start(BrokerSpec::default().flush(Flush::Sync));
    let topic = "tx_timer";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let m = half_message("timed order", "UT1").prop("TIMER_DELAY_MS", "1500");
    let h = half_ok(send_half(&mut c, topic, 0, &m));
    let committed_at = Instant::now();
    let r = commit_answered(&mut c, &h, "UT1");
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.transactionOpen"), 0);
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerPending"), 1);
    assert!(
        pull(&mut c, topic, 0, 0).messages.is_empty(),
        "delivered at once"
    );
    let got = wait_pulled(&mut c, topic, 0, 1, Duration::from_secs(10));
    assert!(
        committed_at.elapsed() >= Duration::from_millis(1450),
        "delivered {:?} after the commit",
        committed_at.elapsed()
    );
    let d = &got[0];
    assert_eq!(d.body, m.body);
    assert_eq!(d.sys_flag & 0xC, COMMIT, "transaction type COMMIT");
    assert_eq!(d.property("UNIQ_KEY").as_deref(), Some("UT1"));
    assert_eq!(d.property("TRAN_MSG"), None);
    assert!(d.property("TIMER_OUT_MS").is_some());
    assert_eq!(ops::runtime_counter(&mut c, "ramjet.timerDelivered"), 1);
}

/// Under `replication = "sync"` an answered END_TRANSACTION and a send-back wait for a slave
/// as sends do: with none connected they are answered SLAVE_NOT_AVAILABLE (RocketMQ's clients
/// count that as stored) and what they wrote is stored anyway.
#[test]
fn with_sync_replication_and_no_slave_commits_and_send_backs_say_so() {
    let broker = Broker::start(BrokerSpec {
        broker_toml: "replication = \"sync\"\n".into(),
        ..BrokerSpec::default()
    });
    let topic = "tx_sync_rep";
    create_topic(&broker, topic, 1);
    let mut c = connect(broker.shard_addr(0));
    let r = send_half(&mut c, topic, 0, &half_message("held", "SYNCREP1"));
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE, "{:?}", r.remark);
    let h = SendOk {
        msg_id: r.ext_str("msgId").to_string(),
        queue_id: r.ext_i64("queueId") as i32,
        queue_offset: r.ext_i64("queueOffset"),
    };
    let r = commit_answered(&mut c, &h, "SYNCREP1");
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE, "{:?}", r.remark);
    assert!(
        r.remark.as_deref().unwrap_or("").contains("no slave"),
        "{:?}",
        r.remark
    );
    let got = pull(&mut c, topic, 0, 0);
    assert_eq!(got.code, response::SUCCESS, "{:?}", got.remark);
    assert_eq!(got.messages.len(), 1, "the commit was not stored");
    assert_eq!(got.messages[0].body, b"held");

    // Straight to the dead-letter queue (delay level -1).
    let ext = [
        ("offset", got.messages[0].physical_offset.to_string()),
        ("group", "tx_sync_rep_g".to_string()),
        ("delayLevel", "-1".to_string()),
        ("originMsgId", String::new()),
        ("unitMode", "false".to_string()),
        ("maxReconsumeTimes", "16".to_string()),
    ];
    let r = c
        .call(request::CONSUMER_SEND_MSG_BACK, &ext, &[])
        .expect("send back");
    assert_eq!(r.code, response::SLAVE_NOT_AVAILABLE, "{:?}", r.remark);
    let dlq = ops::pull(&mut c, "tx_reader", "%DLQ%tx_sync_rep_g", 0, 0, 32, 0).expect("pull");
    assert_eq!(dlq.code, response::SUCCESS, "{:?}", dlq.remark);
    assert_eq!(dlq.messages.len(), 1, "the send-back was not stored");
    assert_eq!(dlq.messages[0].body, b"held");
}
