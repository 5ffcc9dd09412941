//! Client against the in-process mock broker: real sockets, real frames.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::remoting::body::MessageModel;

use super::admin::{Admin, TopicSpec};
use super::consumer::{
    ConsumeFrom, ConsumeResult, PullOptions, PushConsumer, PushConsumerConfig, Subscription,
};
use super::mock::{MockBroker, MockConfig};
use super::selector::QueueSelector;
use super::transport::block_on;
use super::*;
use ramjet_core::remoting::SerializeType;

fn client_for(mock: &MockBroker) -> Client {
    let cfg = ClientConfig::new(&mock.addr()).expect("config");
    Client::new(cfg)
}

#[test]
fn sync_async_oneway_and_batch_sends_reach_the_broker() {
    let mock = MockBroker::start(MockConfig::default()).expect("mock");
    let addr = mock.addr();
    let results = block_on(None, async move {
        let client = Client::new(ClientConfig::new(&addr).expect("cfg"));
        let p = Producer::new(client, ProducerConfig::new("PG"));
        let r1 = p
            .send(Message::new("T", "hello").with_tags("A").with_keys("k1"))
            .await
            .expect("sync");
        let batch = vec![
            Message::new("T", "b1"),
            Message::new("T", "b2"),
            Message::new("T", "b3"),
        ];
        let r2 = p.send_batch(batch).await.expect("batch");
        let done = Rc::new(RefCell::new(Vec::new()));
        for i in 0..50 {
            let d = done.clone();
            p.send_async(
                vec![Message::new("T", format!("a{i}"))],
                &QueueSelector::RoundRobin,
                move |r| {
                    d.borrow_mut()
                        .push(r.map(|s| s.queue_offset).map_err(|e| e.to_string()))
                },
            )
            .await
            .expect("async");
        }
        p.flush().await;
        p.send_oneway(Message::new("T", "one-way"))
            .await
            .expect("oneway");
        // ordered: same key, same queue
        let o1 = p
            .send_with(
                Message::new("T", "o1").with_keys("order-7"),
                &QueueSelector::KeyHash,
            )
            .await
            .expect("o1");
        let o2 = p
            .send_with(
                Message::new("T", "o2").with_keys("order-7"),
                &QueueSelector::KeyHash,
            )
            .await
            .expect("o2");
        let n = done.borrow().len();
        let errors = done.borrow().iter().filter(|r| r.is_err()).count();
        (r1, r2, n, errors, o1, o2)
    })
    .expect("executor");
    let (r1, r2, n, errors, o1, o2) = results;
    assert_eq!(r1.status, SendStatus::SendOk);
    assert_eq!(r1.msg_id.len(), 32);
    assert_eq!(r2.msg_id.split(',').count(), 3);
    assert_eq!(r2.offset_msg_id.split(',').count(), 3);
    assert_eq!((n, errors), (50, 0));
    assert_eq!(o1.queue, o2.queue);
    assert_eq!(o2.queue_offset, o1.queue_offset + 1);
    // 1 + 3 + 50 + 1 + 2 messages; the one-way may still be in flight: wait a little.
    for _ in 0..100 {
        if mock.messages() == 57 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mock.messages(), 57);
    assert_eq!(mock.sends(), 1 + 1 + 50 + 1 + 2);
}

/// The no-op mode of the mock (`keep_messages: false`, what `mock_floor` runs) answers a
/// burst of pipelined sends, gathered into few writes, with the offsets a broker would give,
/// and stores nothing.
#[test]
fn a_mock_that_keeps_nothing_answers_pipelined_sends_with_their_offsets() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 1,
        keep_messages: false,
        ..MockConfig::default()
    })
    .expect("mock");
    let addr = mock.addr();
    let (offsets, batch) = block_on(None, async move {
        let p = Producer::new(
            Client::new(ClientConfig::new(&addr).expect("cfg")),
            ProducerConfig::new("PG"),
        );
        let done = Rc::new(RefCell::new(Vec::new()));
        for i in 0..200 {
            let d = done.clone();
            p.send_async(
                vec![Message::new("T", format!("m{i}"))],
                &QueueSelector::RoundRobin,
                move |r| d.borrow_mut().push(r.map(|s| s.queue_offset).ok()),
            )
            .await
            .expect("async");
        }
        p.flush().await;
        let batch = p
            .send_batch(vec![Message::new("T", "b1"), Message::new("T", "b2")])
            .await
            .expect("batch");
        let offsets = done.borrow().clone();
        (offsets, batch)
    })
    .expect("executor");
    let mut offsets: Vec<i64> = offsets.into_iter().map(|o| o.expect("sent")).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
    assert_eq!((batch.queue.queue_id, batch.queue_offset), (0, 200));
    assert_eq!(batch.offset_msg_id.split(',').count(), 2);
    assert_eq!(mock.messages(), 202);
    assert!(mock.bodies("T", 0).is_empty());
}

#[test]
fn headers_go_out_binary_by_default_and_json_when_configured() {
    for (serialize, want_json) in [(None, false), (Some(SerializeType::Json), true)] {
        let mock = MockBroker::start(MockConfig::default()).expect("mock");
        let addr = mock.addr();
        let (sent, pulled) = block_on(None, async move {
            let mut cfg = ClientConfig::new(&addr).expect("cfg");
            if let Some(st) = serialize {
                cfg.serialize_type = st;
            }
            let client = Client::new(cfg);
            let p = Producer::new(client.clone(), ProducerConfig::new("PG"));
            let r = p
                .send(Message::new("T", "typed").with_keys("k"))
                .await
                .expect("send");
            let res = client
                .pull(
                    "CG",
                    &r.queue,
                    &Subscription::new("T", "*"),
                    r.queue_offset,
                    PullOptions::new(32),
                )
                .await
                .expect("pull");
            (r, res.messages)
        })
        .expect("executor");
        assert_eq!(sent.status, SendStatus::SendOk);
        assert_eq!(pulled.len(), 1);
        assert_eq!(&pulled[0].body[..], b"typed");
        let (json, binary) = mock.requests_by_serialize_type();
        assert!(
            json + binary >= 3,
            "route, send and pull: {json} + {binary}"
        );
        if want_json {
            assert_eq!(binary, 0, "a JSON client sent {binary} binary requests");
        } else {
            assert_eq!(json, 0, "a binary client sent {json} JSON requests");
        }
    }
}

#[test]
fn pull_consumer_reads_back_what_was_sent() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 1,
        ..MockConfig::default()
    })
    .expect("mock");
    let c = client_for(&mock);
    let got = block_on(None, async move {
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        for i in 0..5 {
            p.send(Message::new("P", format!("m{i}")).with_tags(if i % 2 == 0 {
                "even"
            } else {
                "odd"
            }))
            .await
            .expect("send");
        }
        let mq = MessageQueue::new("P", "mock-s0", 0);
        let all = c
            .pull(
                "G",
                &mq,
                &Subscription::new("P", "*"),
                0,
                PullOptions::new(32),
            )
            .await
            .expect("pull");
        let even = c
            .pull(
                "G",
                &mq,
                &Subscription::new("P", "even"),
                1,
                PullOptions::new(32),
            )
            .await
            .expect("pull");
        let end = c
            .pull(
                "G",
                &mq,
                &Subscription::new("P", "*"),
                5,
                PullOptions::new(32).suspend(Duration::from_millis(50)),
            )
            .await
            .expect("pull");
        let max = c.max_offset(&mq).await.expect("max");
        c.commit_offset_sync("G", &mq, 3).await.expect("commit");
        let committed = c.committed_offset("G", &mq).await.expect("query");
        let none = c.committed_offset("OTHER", &mq).await.expect("query");
        (all, even, end, max, committed, none)
    })
    .expect("executor");
    let (all, even, end, max, committed, none) = got;
    assert_eq!(all.status, PullStatus::Found);
    let bodies: Vec<&[u8]> = all.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(bodies, vec![&b"m0"[..], b"m1", b"m2", b"m3", b"m4"]);
    assert_eq!(all.next_begin_offset, 5);
    assert_eq!(all.messages[3].queue_offset, 3);
    assert_eq!(all.messages[3].property("MAX_OFFSET"), Some("5"));
    let even_bodies: Vec<&[u8]> = even.messages.iter().map(|m| &m.body[..]).collect();
    assert_eq!(even_bodies, vec![&b"m2"[..], b"m4"]);
    assert_eq!(end.status, PullStatus::NoNewMsg);
    assert_eq!(max, 5);
    assert_eq!(committed, Some(3));
    assert_eq!(none, None);
}

#[test]
fn push_consumer_consumes_in_order_and_commits_offsets() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 2,
        ..MockConfig::default()
    })
    .expect("mock");
    let c = client_for(&mock);
    let (seen, offsets) = block_on(None, async move {
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        for i in 0..3 {
            p.send(Message::new("Q", format!("old{i}")))
                .await
                .expect("send");
        }
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s2 = seen.clone();
        let mut cfg = PushConsumerConfig::new("CG", "Q");
        cfg.consume_from = ConsumeFrom::First;
        cfg.suspend = Duration::from_millis(200);
        let consumer = PushConsumer::start(
            c.clone(),
            cfg,
            Rc::new(move |m| {
                s2.borrow_mut()
                    .push(String::from_utf8_lossy(&m.body).into_owned());
                ConsumeResult::Success
            }),
        )
        .await
        .expect("start");
        for i in 0..7 {
            p.send(Message::new("Q", format!("new{i}")))
                .await
                .expect("send");
        }
        for _ in 0..300 {
            if seen.borrow().len() >= 10 {
                break;
            }
            transport::sleep(Duration::from_millis(10)).await;
        }
        consumer.shutdown().await.expect("shutdown");
        transport::sleep(Duration::from_millis(50)).await;
        let offsets = consumer.offsets();
        let seen = seen.borrow().clone();
        (seen, offsets)
    })
    .expect("executor");
    assert_eq!(seen.len(), 10, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10);
    let total: i64 = offsets.values().sum();
    assert_eq!(total, 10);
    let committed: i64 = (0..2)
        .map(|q| mock.committed("CG", "Q", q).unwrap_or(0))
        .sum();
    assert_eq!(committed, 10);
}

#[test]
fn broadcasting_consumer_keeps_offsets_in_a_local_file() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 1,
        ..MockConfig::default()
    })
    .expect("mock");
    let c = client_for(&mock);
    let dir = tempfile::tempdir().expect("tmp");
    let dir_path = dir.path().to_path_buf();
    let (n, file) = block_on(None, async move {
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        for i in 0..4 {
            p.send(Message::new("B", format!("x{i}")))
                .await
                .expect("send");
        }
        let count = Rc::new(RefCell::new(0));
        let c2 = count.clone();
        let mut cfg = PushConsumerConfig::new("BG", "B");
        cfg.model = MessageModel::Broadcasting;
        cfg.consume_from = ConsumeFrom::First;
        cfg.offset_dir = dir_path.clone();
        cfg.suspend = Duration::from_millis(100);
        let consumer = PushConsumer::start(
            c.clone(),
            cfg,
            Rc::new(move |_| {
                *c2.borrow_mut() += 1;
                ConsumeResult::Success
            }),
        )
        .await
        .expect("start");
        for _ in 0..300 {
            if *count.borrow() >= 4 {
                break;
            }
            transport::sleep(Duration::from_millis(10)).await;
        }
        consumer.shutdown().await.expect("shutdown");
        let file = offset_store::LocalOffsetFile::new(&dir_path, c.client_id(), "BG");
        let n = *count.borrow();
        (n, file.load().expect("load"))
    })
    .expect("executor");
    assert_eq!(n, 4);
    assert_eq!(file.get(&MessageQueue::new("B", "mock-s0", 0)), Some(&4));
    assert_eq!(
        mock.committed("BG", "B", 0),
        None,
        "broadcasting must not commit to the broker"
    );
}

#[test]
fn admin_topics_cluster_and_lag() {
    let mock = MockBroker::start(MockConfig {
        auto_create: false,
        ..MockConfig::default()
    })
    .expect("mock");
    let c = client_for(&mock);
    let out = block_on(None, async move {
        let admin = Admin::new(c.clone());
        let written = admin
            .create_topic(&TopicSpec::new("orders", 2), Some("MockCluster"))
            .await
            .expect("create");
        let bad_cluster = admin
            .create_topic(&TopicSpec::new("x", 2), Some("Nope"))
            .await
            .err()
            .map(|e| e.to_string());
        let topics = admin.list_topics().await.expect("list");
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        for _ in 0..6 {
            p.send(Message::new("orders", "x")).await.expect("send");
        }
        let mq0 = MessageQueue::new("orders", "mock-s0", 0);
        c.commit_offset_sync("LG", &mq0, 1).await.expect("commit");
        let lag = admin.lag("LG", "orders").await.expect("lag");
        admin.delete_topic("orders", None).await.expect("delete");
        let after = admin.list_topics().await.expect("list");
        let missing = p
            .send(Message::new("orders", "x"))
            .await
            .err()
            .map(|e| e.to_string());
        (written.len(), bad_cluster, topics, lag, after, missing)
    })
    .expect("executor");
    let (written, bad_cluster, topics, lag, after, missing) = out;
    assert_eq!(written, 1);
    assert!(bad_cluster.is_some_and(|e| e.contains("MockCluster")));
    assert_eq!(topics, vec!["orders".to_string()]);
    assert_eq!(lag.queues.len(), 2);
    assert_eq!(lag.total_lag, 5);
    assert_eq!(lag.queues[0].consumer_offset, Some(1));
    assert!(after.is_empty());
    assert!(missing.is_some());
}

#[test]
fn name_server_failover_and_connection_errors() {
    let mock = MockBroker::start(MockConfig::default()).expect("mock");
    // A closed port first: the client must move on to the mock.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let list = format!("{dead_addr};{}", mock.addr());
    let r = block_on(None, async move {
        let c = Client::new(ClientConfig::new(&list).expect("cfg"));
        let route = c.fetch_route("T").await.map(|r| r.queue_datas.len());
        let current = c.current_namesrv().to_string();
        let lonely = Client::new(ClientConfig::new(&dead_addr).expect("cfg"));
        let e = lonely.fetch_route("T").await.err().map(|e| e.to_string());
        (route.ok(), current, e)
    })
    .expect("executor");
    assert_eq!(r.0, Some(1));
    assert_eq!(r.1, mock.addr());
    assert!(r.2.is_some_and(|e| e.contains("cannot connect")));
}

#[test]
fn sync_send_retries_on_another_broker_and_fault_avoidance_skips_it() {
    let bad = MockBroker::start(MockConfig {
        broker_name: "b".into(),
        fail_sends: true,
        ..MockConfig::default()
    })
    .expect("bad mock");
    let good = MockBroker::start(MockConfig {
        broker_name: "a".into(),
        default_queues: 1,
        peers: vec![("b".into(), bad.addr())],
        ..MockConfig::default()
    })
    .expect("good mock");
    let c = client_for(&good);
    let results = block_on(None, async move {
        let mut cfg = ProducerConfig::new("PG");
        cfg.fault_avoidance = true;
        let p = Producer::new(c, cfg);
        let mut brokers = Vec::new();
        for i in 0..6 {
            let r = p
                .send(Message::new("T", format!("m{i}")))
                .await
                .expect("retried send succeeds");
            brokers.push(r.queue.broker_name);
        }
        let stats = p.send_stats();
        (
            brokers,
            stats.get("a").copied(),
            stats.get("b").copied(),
            p.is_broker_available("a"),
            p.is_broker_available("b"),
        )
    })
    .expect("executor");
    let (results, stats_a, stats_b, a_available, b_available) = results;
    assert!(results.iter().all(|b| b == "a"), "{results:?}");
    assert_eq!(good.messages(), 6);
    // Broker b failed at most once; after that fault avoidance kept it out.
    assert_eq!(bad.sends(), 1);
    // What the producer reports: every attempt counted, the failing broker avoided.
    assert_eq!(
        stats_a,
        Some(BrokerSendStats {
            attempts: 6,
            failures: 0
        })
    );
    assert_eq!(
        stats_b,
        Some(BrokerSendStats {
            attempts: 1,
            failures: 1
        })
    );
    assert!(a_available);
    assert!(!b_available, "a failed broker is avoided for 600 s");
}

/// A closed port on 127.0.0.1 (a broker that died).
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    drop(l);
    a
}

/// Broker "a" (2 queues) whose route also lists broker "b" at an address nobody listens on.
fn mock_a_with_dead_peer_b() -> MockBroker {
    MockBroker::start(MockConfig {
        broker_name: "a".into(),
        default_queues: 2,
        peers: vec![("b".into(), dead_addr())],
        ..MockConfig::default()
    })
    .expect("mock")
}

#[test]
fn connection_failure_refreshes_the_route_so_a_dead_broker_leaves_the_selection() {
    // Fault avoidance off: only the route refresh keeps the dead broker out.
    let good = mock_a_with_dead_peer_b();
    // The name server still lists b: one forced refresh, then none for a while.
    let c = client_for(&good);
    let queries0 = good.route_queries();
    let r = block_on(None, async move {
        let p = Producer::new(c, ProducerConfig::new("PG"));
        let mut brokers = Vec::new();
        for i in 0..12 {
            let r = p
                .send(Message::new("T", format!("m{i}")))
                .await
                .expect("retried send succeeds");
            brokers.push(r.queue.broker_name);
        }
        (brokers, p.send_stats())
    })
    .expect("executor");
    let (brokers, stats) = r;
    assert!(brokers.iter().all(|b| b == "a"), "{brokers:?}");
    let b = stats.get("b").copied().unwrap_or_default();
    assert_eq!(stats.get("a").map(|s| s.attempts), Some(12));
    assert!(
        b.attempts >= 2,
        "b stays in the route and gets chosen: {stats:?}"
    );
    assert_eq!(b.failures, b.attempts);
    assert_eq!(
        good.route_queries() - queries0,
        2,
        "the first fetch plus one forced refresh within {:?}",
        producer::FAILURE_ROUTE_REFRESH_MIN_INTERVAL
    );

    // The name server drops b after the producer cached the route: the first failure on b
    // refreshes the route and b is never chosen again.
    let c = client_for(&good);
    let hide = good.hide_peers();
    let queries0 = good.route_queries();
    let r = block_on(None, async move {
        let p = Producer::new(c, ProducerConfig::new("PG"));
        let cached = p.queues("T").await.expect("route").len();
        hide.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut brokers = Vec::new();
        for i in 0..12 {
            let r = p
                .send(Message::new("T", format!("n{i}")))
                .await
                .expect("retried send succeeds");
            brokers.push(r.queue.broker_name);
        }
        let after = p.queues("T").await.expect("route").len();
        (cached, brokers, p.send_stats(), after)
    })
    .expect("executor");
    let (cached, brokers, stats, after) = r;
    assert_eq!(cached, 4, "the cached route lists b");
    assert!(brokers.iter().all(|b| b == "a"), "{brokers:?}");
    assert_eq!(
        stats.get("b").copied(),
        Some(BrokerSendStats {
            attempts: 1,
            failures: 1
        }),
        "b is chosen once, then the refreshed route leaves it out"
    );
    assert_eq!(after, 2, "only a's queues remain");
    assert_eq!(good.route_queries() - queries0, 2);
}

#[test]
fn async_send_that_cannot_connect_counts_as_a_failed_attempt() {
    let good = mock_a_with_dead_peer_b();
    let c = client_for(&good);
    let r = block_on(None, async move {
        let mut cfg = ProducerConfig::new("PG");
        cfg.fault_avoidance = true;
        let p = Producer::new(c, cfg);
        let outcomes = Rc::new(RefCell::new(Vec::new()));
        for i in 0..12 {
            let o = outcomes.clone();
            p.send_async(
                vec![Message::new("T", format!("x{i}"))],
                &QueueSelector::RoundRobin,
                move |r| o.borrow_mut().push(r.map(|s| s.queue.broker_name)),
            )
            .await
            .expect("queued");
            p.flush().await;
        }
        let outcomes: Vec<_> = outcomes.borrow_mut().drain(..).collect();
        (outcomes, p.send_stats(), p.is_broker_available("b"))
    })
    .expect("executor");
    let (outcomes, stats, b_available) = r;
    assert_eq!(outcomes.len(), 12);
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err().map(|e| e.to_string()))
        .collect();
    // Async sends make one attempt: the first one on b (round robin reaches it within three
    // sends) fails, after that b is avoided.
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed.iter().all(|e| e.contains("cannot connect")),
        "{failed:?}"
    );
    assert!(outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .all(|b| b == "a"));
    let b = stats.get("b").copied().unwrap_or_default();
    assert_eq!(b.attempts as usize, failed.len(), "{stats:?}");
    assert_eq!(b.failures, b.attempts);
    assert!(!b_available);
}

#[test]
fn unknown_topic_goes_through_the_template_route_when_auto_creation_is_on() {
    let mock = MockBroker::start(MockConfig {
        auto_create: false,
        ..MockConfig::default()
    })
    .expect("mock");
    mock.create_topic("TBW102", 8);
    let c = client_for(&mock);
    let (auto, strict) = block_on(None, async move {
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        let auto = p
            .send(Message::new("fresh", "x"))
            .await
            .map(|r| r.queue.queue_id);
        let mut cfg = ProducerConfig::new("PG");
        cfg.auto_create_topic = false;
        let strict = Producer::new(c, cfg)
            .send(Message::new("fresh2", "x"))
            .await
            .err()
            .map(|e| e.to_string());
        (auto, strict)
    })
    .expect("executor");
    // Template queue count 8 is capped to the producer's 4.
    assert!(auto.is_ok_and(|q| (0..4).contains(&q)));
    assert_eq!(mock.messages(), 1);
    assert!(strict.is_some_and(|e| e.contains("ramjet admin topic create fresh2")));
}

#[test]
fn flow_control_stops_pulling_when_the_process_queue_is_full() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 1,
        ..MockConfig::default()
    })
    .expect("mock");
    let c = client_for(&mock);
    let dir = tempfile::tempdir().expect("tmp");
    let dir_path = dir.path().to_path_buf();
    let stats = block_on(None, async move {
        let p = Producer::new(c.clone(), ProducerConfig::new("PG"));
        for i in 0..20 {
            p.send(Message::new("F", format!("f{i}")))
                .await
                .expect("send");
        }
        let mut cfg = PushConsumerConfig::new("FG", "F");
        cfg.model = MessageModel::Broadcasting;
        cfg.consume_from = ConsumeFrom::First;
        cfg.offset_dir = dir_path;
        cfg.pull_batch = 2;
        cfg.max_cached_msgs = 5;
        cfg.suspend = Duration::from_millis(50);
        // The handler never succeeds: nothing leaves the process queue.
        let consumer = PushConsumer::start(c, cfg, Rc::new(|_| ConsumeResult::ReconsumeLater))
            .await
            .expect("start");
        transport::sleep(Duration::from_millis(400)).await;
        let stats = consumer.stats();
        consumer.shutdown().await.expect("shutdown");
        stats
    })
    .expect("executor");
    // Pulls of 2 continue while fewer than 5 are cached: 2, 4, 6, then pause.
    assert_eq!(stats.pulled, 6, "{stats:?}");
    assert!(stats.flow_control_pauses >= 2, "{stats:?}");
    assert_eq!(stats.consumed, 0);
    assert!(stats.reconsume_later >= 1);
}
