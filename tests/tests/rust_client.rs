//! The project's own Rust client (`ramjet_net::client`) against the real broker: a producer on
//! a glommio executor spreads sends over both shards (two logical brokers) and every send it
//! reports as stored is there, byte-exact, at the queue and offset it reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ramjet_net::client::{Client, ClientConfig, Message, Producer, ProducerConfig, SendStatus};
use ramjet_net::runtime::{start_executor, ExecutorOptions, Pin};
use ramjet_tests::ops;
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn};

const TOPIC: &str = "e2e_rust_client";
const SENDS: usize = 24;
const BATCH: usize = 5;

/// What the executor hands back: per send, the body and the result (or the error text).
/// Per (broker name, queue id): (queue offset, body, UNIQ_KEY) expected there.
type Expected = BTreeMap<(String, i32), Vec<(i64, Vec<u8>, String)>>;

type Sent = Vec<(Vec<u8>, Result<ramjet_net::client::SendResult, String>)>;

#[test]
fn rust_producer_spreads_over_shards_and_every_send_is_stored() {
    let broker = Broker::start(BrokerSpec::default().shards(2));
    for i in 0..2 {
        let mut c = Conn::connect(broker.shard_addr(i)).unwrap();
        let r = ops::create_topic(&mut c, TOPIC, 4).unwrap();
        assert_eq!(
            r.code,
            response::SUCCESS,
            "create topic on shard {i}: {:?}",
            r.remark
        );
    }
    let route = ops::wait_route(broker.namesrv_addr(), TOPIC, 2, Duration::from_secs(20));
    let masters: BTreeMap<String, String> = route
        .brokers
        .iter()
        .map(|b| {
            (
                b.broker_name.clone(),
                b.master().unwrap_or_default().to_string(),
            )
        })
        .collect();

    let namesrv = broker.namesrv();
    let exec = start_executor(
        "e2e-rust-client",
        Pin::Unbound,
        ExecutorOptions::default(),
        move || async move {
            let mut sent: Sent = Vec::new();
            let config = match ClientConfig::new(&namesrv) {
                Ok(c) => c,
                Err(e) => {
                    sent.push((Vec::new(), Err(format!("client config: {e}"))));
                    return sent;
                }
            };
            let producer = Producer::new(Client::new(config), ProducerConfig::new("e2e_rust_pg"));
            for i in 0..SENDS {
                let body: Vec<u8> = (0..(50 + i * 37)).map(|k| (k * 7 + i) as u8).collect();
                let msg = Message::new(TOPIC, body.clone())
                    .with_tags(format!("Tag{}", i % 3))
                    .with_keys(format!("rk-{i}"))
                    .with_property("e2e_idx", i.to_string());
                let r = producer.send(msg).await.map_err(|e| e.to_string());
                sent.push((body, r));
            }
            let batch: Vec<Message> = (0..BATCH)
                .map(|i| {
                    Message::new(TOPIC, format!("batch-{i}").into_bytes())
                        .with_property("e2e_idx", format!("b{i}"))
                })
                .collect();
            let r = producer.send_batch(batch).await.map_err(|e| e.to_string());
            sent.push((b"batch-0".to_vec(), r));
            sent
        },
    )
    .unwrap_or_else(|e| panic!("cannot start the client executor: {e}"));
    let sent = exec
        .join()
        .unwrap_or_else(|e| panic!("client executor failed: {e}"));

    assert_eq!(sent.len(), SENDS + 1);
    let mut used_brokers = BTreeSet::new();
    let mut by_queue: Expected = BTreeMap::new();
    for (i, (body, r)) in sent.iter().enumerate() {
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("send {i} failed: {e}"),
        };
        assert_eq!(r.status, SendStatus::SendOk, "send {i}");
        assert_eq!(r.queue.topic, TOPIC);
        used_brokers.insert(r.queue.broker_name.clone());
        if i < SENDS {
            by_queue
                .entry((r.queue.broker_name.clone(), r.queue.queue_id))
                .or_default()
                .push((r.queue_offset, body.clone(), r.msg_id.clone()));
        } else {
            for k in 0..BATCH {
                by_queue
                    .entry((r.queue.broker_name.clone(), r.queue.queue_id))
                    .or_default()
                    .push((
                        r.queue_offset + k as i64,
                        format!("batch-{k}").into_bytes(),
                        String::new(),
                    ));
            }
        }
    }
    assert_eq!(
        used_brokers.len(),
        2,
        "the producer must use both logical brokers (shards): {used_brokers:?}"
    );

    for ((broker_name, queue), expect) in by_queue {
        let addr = masters
            .get(&broker_name)
            .unwrap_or_else(|| panic!("broker {broker_name} not in route {}", route.raw));
        let addr: std::net::SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("master address {addr}: {e}"));
        let mut c = Conn::connect(addr).unwrap();
        let stored = ops::pull_all(
            &mut c,
            "e2e_rust_reader",
            TOPIC,
            queue,
            0,
            Duration::from_secs(20),
        );
        for (offset, body, uniq) in expect {
            let p = stored
                .iter()
                .find(|p| p.queue_offset == offset)
                .unwrap_or_else(|| {
                    panic!("{broker_name}/{queue}@{offset} reported stored but not found")
                });
            assert_eq!(p.body, body, "{broker_name}/{queue}@{offset}");
            if !uniq.is_empty() {
                assert_eq!(
                    p.property("UNIQ_KEY"),
                    Some(uniq),
                    "UNIQ_KEY of {broker_name}/{queue}@{offset}"
                );
                let idx = p.property("e2e_idx").unwrap_or_default();
                assert_eq!(p.property("KEYS"), Some(format!("rk-{idx}")));
            }
        }
    }
}
