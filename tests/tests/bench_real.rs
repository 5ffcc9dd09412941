//! ramjet-bench against the real broker binary: what the generator reports is what the broker
//! stored and delivered. Its raw protocol loops (the default `--client raw`) must produce
//! messages a RocketMQ consumer can read (distinct UNIQ_KEYs, stamped bodies), and its raw
//! pullers must count exactly what is there.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Parser;
use ramjet_bench::args::{BenchArgs, Cli, Command};
use ramjet_bench::runner::{run, Mode};
use ramjet_net::client::consumer::{PullOptions, Subscription};
use ramjet_net::client::transport::block_on;
use ramjet_net::client::{Client, ClientConfig, Producer, ProducerConfig};
use ramjet_tests::{ops, Broker, BrokerSpec};

const TOPIC: &str = "e2e_bench_real";
const SIZE: usize = 64;
const BATCH: usize = 10;
/// Open loop: 2 producers x 5,000 msg/s for 1 s.
const RATE: u32 = 10_000;

fn args(cmd: &str, extra: &[&str]) -> BenchArgs {
    let mut argv = vec!["ramjet-bench", cmd];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("bench args: {e}"));
    match cli.command {
        Command::Produce(a)
        | Command::Consume(a)
        | Command::E2e(a)
        | Command::Pingpong(a)
        | Command::Pop(a) => a,
    }
}

/// Sum of the topic's max offsets over every queue of every broker, the UNIQ_KEYs of the
/// messages in queue 0 of each broker, and how many of those carry the generator's body.
fn stored(namesrv: &str) -> (i64, BTreeSet<String>, usize) {
    let ns = namesrv.to_string();
    let r = block_on(None, async move {
        let client = Client::new(ClientConfig::new(&ns)?);
        let queues = Producer::new(client.clone(), ProducerConfig::new("probe"))
            .queues(TOPIC)
            .await?;
        let mut total = 0;
        let mut keys = BTreeSet::new();
        let mut bodies_ok = 0;
        for mq in &queues {
            let max = client.max_offset(mq).await?;
            total += max;
            if mq.queue_id != 0 {
                continue;
            }
            // Read every message of queue 0 of each broker through the client library.
            let mut offset = client.min_offset(mq).await?;
            while offset < max {
                let r = client
                    .pull(
                        "probe_group",
                        mq,
                        &Subscription::new(TOPIC, "*"),
                        offset,
                        PullOptions::new(32),
                    )
                    .await?;
                for m in &r.messages {
                    if m.body.len() == SIZE && m.body[8..].iter().all(|&b| b == b'x') {
                        bodies_ok += 1;
                    }
                    if let Some(k) = m.property("UNIQ_KEY") {
                        keys.insert(k.to_string());
                    }
                }
                offset = r.next_begin_offset;
            }
        }
        Ok::<_, ramjet_net::client::ClientError>((total, keys, bodies_ok))
    });
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("reading the broker: {e}"),
        Err(e) => panic!("executor: {e}"),
    }
}

#[test]
fn raw_bench_counts_equal_what_the_broker_stored_and_delivered() {
    let broker = Broker::start(BrokerSpec::default().shards(2));
    let ns = broker.namesrv();
    // Both shards registered (their TBW102 template route shows both).
    ops::wait_route(broker.namesrv_addr(), "TBW102", 2, Duration::from_secs(20));
    let rate = RATE.to_string();
    let size = SIZE.to_string();
    let batch = BATCH.to_string();
    let produce = args(
        "produce",
        &[
            "--namesrv",
            &ns,
            "--topic",
            TOPIC,
            "--queues",
            "4",
            "--size",
            &size,
            "--batch",
            &batch,
            "--producers",
            "2",
            "--rate",
            &rate,
            "--duration",
            "1",
            "--quiet",
        ],
    );
    let p = run(Mode::Produce, &produce).unwrap_or_else(|e| panic!("produce run: {e}"));
    let produced = p.recorder.messages;
    assert_eq!(p.recorder.errors, 0, "produce errors");
    assert_eq!(produced % BATCH as u64, 0);
    // 1 s at 10,000 msg/s, batches of 10: about 1,000 requests.
    assert!(
        (9_900..=10_100).contains(&produced),
        "produced {produced} messages, expected about 10,000"
    );

    let (total, keys, bodies_ok) = stored(&ns);
    assert_eq!(total as u64, produced, "broker max offsets vs acknowledged");
    // Every message read back from queue 0 of both brokers has its own UNIQ_KEY and the
    // generator's body (8-byte stamp, then filler).
    assert!(bodies_ok > 0);
    assert_eq!(keys.len(), bodies_ok, "UNIQ_KEYs must be distinct");

    // Catch up from the first offset with two raw pullers: exactly what is stored.
    let consume = args(
        "consume",
        &[
            "--namesrv",
            &ns,
            "--topic",
            TOPIC,
            "--group",
            "bench_real_catchup",
            "--from",
            "first",
            "--consumers",
            "2",
            "--pull-batch",
            "100",
            "--duration",
            "3",
            "--quiet",
        ],
    );
    let c = run(Mode::Consume, &consume).unwrap_or_else(|e| panic!("consume run: {e}"));
    assert_eq!(c.recorder.errors, 0, "consume errors");
    assert_eq!(c.recorder.messages, produced, "consumed vs produced");
    assert_eq!(c.recorder.bytes, produced * SIZE as u64);

    // The pullers committed their offsets: the same group starts at the end next time.
    let again = run(
        Mode::Consume,
        &BenchArgs {
            duration: 0.5,
            ..consume.clone()
        },
    )
    .unwrap_or_else(|e| panic!("second consume run: {e}"));
    assert_eq!(again.recorder.messages, 0, "offsets were not committed");

    // The same backlog popped by three poppers (POP_MESSAGE + BATCH_ACK_MESSAGE): each
    // message once, every one acknowledged, so the group's next run finds nothing.
    let pop = BenchArgs {
        group: "bench_real_pop".into(),
        consumers: 3,
        pull_batch: 32,
        ..consume.clone()
    };
    let p = run(Mode::Pop, &pop).unwrap_or_else(|e| panic!("pop run: {e}"));
    assert_eq!(p.recorder.errors, 0, "pop errors");
    assert_eq!(p.recorder.messages, produced, "popped vs produced");
    assert_eq!(p.recorder.bytes, produced * SIZE as u64);
    let again = run(
        Mode::Pop,
        &BenchArgs {
            duration: 0.5,
            ..pop
        },
    )
    .unwrap_or_else(|e| panic!("second pop run: {e}"));
    assert_eq!(again.recorder.messages, 0, "pops were not acknowledged");
}

/// `--transaction commit`: every acknowledged half message is committed (its message is in
/// the topic once); `--transaction rollback`: none is.
#[test]
fn raw_bench_transactions_commit_every_acknowledged_half_message() {
    let broker = Broker::start(BrokerSpec::default());
    let ns = broker.namesrv();
    ops::wait_route(broker.namesrv_addr(), "TBW102", 1, Duration::from_secs(20));
    let run_tx = |topic: &str, end: &str| {
        let a = args(
            "produce",
            &[
                "--namesrv",
                &ns,
                "--topic",
                topic,
                "--queues",
                "2",
                "--size",
                "32",
                "--rate",
                "2000",
                "--duration",
                "1",
                "--transaction",
                end,
                "--quiet",
            ],
        );
        let r = run(Mode::Produce, &a).unwrap_or_else(|e| panic!("produce run: {e}"));
        assert_eq!(r.recorder.errors, 0, "{end}: produce errors");
        assert!(
            (1_900..=2_100).contains(&r.recorder.messages),
            "{end}: {} half messages acknowledged, expected about 2,000",
            r.recorder.messages
        );
        r.recorder.messages
    };
    let committed = run_tx("bench_tx_commit", "commit");
    let rolled_back = run_tx("bench_tx_rollback", "rollback");
    let mut c = ramjet_tests::Conn::connect(broker.shard_addr(0)).unwrap();
    // The ENDs are oneway: wait (bounded) until the broker applied all of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ops::runtime_counter(&mut c, "ramjet.transactionOpen") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "transactions left open"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionCommit"),
        committed
    );
    assert_eq!(
        ops::runtime_counter(&mut c, "ramjet.transactionRollback"),
        rolled_back
    );
    let stored = |topic: &str, c: &mut ramjet_tests::Conn| -> i64 {
        (0..2)
            .map(|q| {
                let r = c
                    .call(
                        ramjet_tests::wire::request::GET_MAX_OFFSET,
                        &[("topic", topic.to_string()), ("queueId", q.to_string())],
                        &[],
                    )
                    .unwrap();
                r.ext_i64("offset")
            })
            .sum()
    };
    assert_eq!(stored("bench_tx_commit", &mut c) as u64, committed);
    assert_eq!(stored("bench_tx_rollback", &mut c), 0);
}
