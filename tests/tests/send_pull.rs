//! Send and pull through the real broker with the project's own codec: byte-exact bodies,
//! offsets, batches, two shards as two logical brokers (route and on-disk placement), long
//! polling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ramjet_core::record::decode_offset_msg_id;
use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::response;
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};
use rand::{Rng, RngCore, SeedableRng};

const ROUTE_WAIT: Duration = Duration::from_secs(20);
const PULL_WAIT: Duration = Duration::from_secs(20);

fn connect(addr: std::net::SocketAddr) -> Conn {
    match Conn::connect(addr) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn create_topic_everywhere(broker: &Broker, topic: &str, queues: u32) {
    for i in 0..broker.shards() {
        let mut c = connect(broker.shard_addr(i));
        let r = ops::create_topic(&mut c, topic, queues)
            .unwrap_or_else(|e| panic!("create topic on shard {i}: {e}"));
        assert_eq!(
            r.code,
            response::SUCCESS,
            "UPDATE_AND_CREATE_TOPIC {topic} on shard {i}: {:?}",
            r.remark
        );
    }
    ops::wait_route(broker.namesrv_addr(), topic, broker.shards(), ROUTE_WAIT);
}

fn random_body(rng: &mut impl RngCore, marker: &[u8], len: usize) -> Vec<u8> {
    let mut body = vec![0u8; len.max(marker.len())];
    rng.fill_bytes(&mut body);
    body[..marker.len()].copy_from_slice(marker);
    body
}

#[test]
fn send_then_pull_is_byte_exact() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_bytes";
    create_topic_everywhere(&broker, topic, 4);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut c = connect(broker.shard_addr(0));

    // 40 messages to queue 1, 15 to queue 2; bodies of random bytes (every byte value, NULs
    // included) and sizes from 1 byte to 12 KiB.
    let mut sent: BTreeMap<i32, Vec<(OutMessage, ops::SendOk)>> = BTreeMap::new();
    for i in 0..55u32 {
        let queue = if i < 40 { 1 } else { 2 };
        let len = match i % 5 {
            0 => 1,
            1 => rng.gen_range(2..64),
            2 => rng.gen_range(64..1024),
            3 => rng.gen_range(1024..4096),
            _ => rng.gen_range(4096..12 * 1024),
        };
        let mut body = vec![0u8; len];
        rng.fill_bytes(&mut body);
        let msg = OutMessage::new(body)
            .prop("TAGS", ["TagA", "TagB"][i as usize % 2])
            .prop("KEYS", &format!("key-{i} alt-{i}"))
            .prop("e2e_index", &i.to_string());
        let mut msg = msg;
        msg.flag = i as i32 * 3;
        let ok = ops::send(&mut c, topic, queue, &msg)
            .unwrap_or_else(|e| panic!("send {i}: {e}"))
            .expect_ok("send");
        assert_eq!(ok.queue_id, queue, "send {i} stored in another queue");
        let expected_offset = sent.get(&queue).map_or(0, |v| v.len() as i64);
        assert_eq!(
            ok.queue_offset, expected_offset,
            "queue offsets of queue {queue} must be consecutive from 0"
        );
        let (host, _phys) = decode_offset_msg_id(&ok.msg_id)
            .unwrap_or_else(|e| panic!("msgId {:?}: {e}", ok.msg_id));
        assert_eq!(
            host,
            broker.shard_addr(0),
            "offset msgId must name the shard's advertised address"
        );
        sent.entry(queue).or_default().push((msg, ok));
    }

    for (queue, msgs) in &sent {
        assert_eq!(
            ops::max_offset(&mut c, topic, *queue).unwrap(),
            msgs.len() as i64,
            "GET_MAX_OFFSET of queue {queue}"
        );
        let pulled = ops::pull_all(&mut c, "e2e_reader", topic, *queue, 0, PULL_WAIT);
        assert_eq!(pulled.len(), msgs.len(), "queue {queue}: pulled count");
        for (k, (p, (m, ok))) in pulled.iter().zip(msgs).enumerate() {
            assert_eq!(p.body, m.body, "queue {queue} offset {k}: body differs");
            assert_eq!(
                p.body_crc,
                ops::expected_body_crc(&m.body),
                "queue {queue} offset {k}: stored body CRC"
            );
            assert_eq!(p.queue_offset, k as i64);
            assert_eq!(p.queue_offset, ok.queue_offset);
            assert_eq!(p.queue_id, *queue);
            assert_eq!(p.topic, topic);
            assert_eq!(p.flag, m.flag, "user flag");
            for (name, value) in &m.props {
                assert_eq!(
                    p.property(name).as_deref(),
                    Some(value.as_str()),
                    "property {name}"
                );
            }
            let (_, phys) = decode_offset_msg_id(&ok.msg_id).unwrap();
            assert_eq!(
                p.physical_offset, phys,
                "msgId's physical offset must be the record's"
            );
            assert_eq!(p.store_host, broker.shard_addr(0));
        }
    }

    // A pull from the middle starts exactly there.
    let r = ops::pull(&mut c, "e2e_reader", topic, 1, 25, 4, 0).unwrap();
    assert_eq!(r.code, response::SUCCESS);
    let offsets: Vec<i64> = r.messages.iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, vec![25, 26, 27, 28], "maxMsgNums 4 from offset 25");
    assert_eq!(r.next_begin_offset, 29);
    assert_eq!(r.messages[0].body, sent[&1][25].0.body);
    assert_eq!((r.min_offset, r.max_offset), (0, 40));

    // At the end of the queue without suspension: PULL_NOT_FOUND, next = offset.
    let r = ops::pull(&mut c, "e2e_reader", topic, 1, 40, 32, 0).unwrap();
    assert_eq!(
        r.code,
        response::PULL_NOT_FOUND,
        "pull at max offset: {:?}",
        r.remark
    );
    assert_eq!(r.next_begin_offset, 40);
    // Past the end: OFFSET_MOVED with next = max.
    let r = ops::pull(&mut c, "e2e_reader", topic, 1, 1000, 32, 0).unwrap();
    assert_eq!(
        r.code,
        response::PULL_OFFSET_MOVED,
        "pull past max offset: {:?}",
        r.remark
    );
    assert_eq!(r.next_begin_offset, 40);
    // An untouched queue is empty.
    let r = ops::pull(&mut c, "e2e_reader", topic, 3, 0, 32, 0).unwrap();
    assert_eq!(r.code, response::PULL_NOT_FOUND);
    assert!(r.messages.is_empty());
}

#[test]
fn batch_send_stores_consecutive_offsets() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_batch";
    create_topic_everywhere(&broker, topic, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut c = connect(broker.shard_addr(0));

    // One single message first, so the batch starts at offset 1.
    let first = OutMessage::new(b"first".to_vec());
    ops::send(&mut c, topic, 0, &first)
        .unwrap()
        .expect_ok("single send");
    let batch: Vec<OutMessage> = (0..10)
        .map(|i| {
            let len = rng.gen_range(1..3000);
            let mut body = vec![0u8; len];
            rng.fill_bytes(&mut body);
            OutMessage::new(body)
                .prop("TAGS", &format!("T{i}"))
                .prop("e2e_batch_index", &i.to_string())
        })
        .collect();
    let ok = ops::send_batch(&mut c, topic, 0, &batch)
        .unwrap()
        .expect_ok("batch send");
    assert_eq!(ok.queue_id, 0);
    assert_eq!(ok.queue_offset, 1, "batch's first queue offset");
    let ids: Vec<&str> = ok.msg_id.split(',').collect();
    assert_eq!(
        ids.len(),
        10,
        "a batch answers one offset msgId per message: {:?}",
        ok.msg_id
    );

    let pulled = ops::pull_all(&mut c, "e2e_reader", topic, 0, 0, PULL_WAIT);
    assert_eq!(pulled.len(), 11);
    assert_eq!(pulled[0].body, b"first");
    for (i, (p, m)) in pulled[1..].iter().zip(&batch).enumerate() {
        assert_eq!(p.queue_offset, 1 + i as i64);
        assert_eq!(p.body, m.body, "batch item {i}");
        assert_eq!(p.property("TAGS"), Some(format!("T{i}")));
        assert_eq!(p.property("e2e_batch_index"), Some(i.to_string()));
        let (_, phys) = decode_offset_msg_id(ids[i]).unwrap();
        assert_eq!(p.physical_offset, phys, "batch item {i}: msgId offset");
    }
}

/// Which top-level directory of the data dir each file lives in.
fn top_dirs(files: &[std::path::PathBuf]) -> Vec<String> {
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

#[test]
fn two_shards_are_two_brokers_with_separate_storage() {
    let broker = Broker::start(BrokerSpec::default().shards(2).flush(Flush::Sync));
    let topic = "e2e_sharded";
    create_topic_everywhere(&broker, topic, 4);

    // The name server routes the topic to two logical brokers, one per shard port.
    let route = ops::wait_route(broker.namesrv_addr(), topic, 2, ROUTE_WAIT);
    assert_eq!(route.brokers.len(), 2, "route: {}", route.raw);
    assert_ne!(route.brokers[0].broker_name, route.brokers[1].broker_name);
    let mut masters: Vec<String> = route
        .brokers
        .iter()
        .map(|b| b.master().unwrap_or("none").to_string())
        .collect();
    masters.sort();
    let mut expected = vec![
        broker.shard_addr(0).to_string(),
        broker.shard_addr(1).to_string(),
    ];
    expected.sort();
    assert_eq!(
        masters, expected,
        "master addresses must be the shard ports; route: {}",
        route.raw
    );
    for q in &route.queues {
        assert_eq!(
            (q.read_queue_nums, q.write_queue_nums),
            (4, 4),
            "route: {}",
            route.raw
        );
        assert_eq!(q.perm & 6, 6, "topic must be readable and writable");
    }

    let marker0 = b"@@SHARD-ZERO-ONLY@@".to_vec();
    let marker1 = b"@@SHARD-ONE-ONLY@@".to_vec();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut c0 = connect(broker.shard_addr(0));
    let mut c1 = connect(broker.shard_addr(1));
    let mut bodies1 = Vec::new();
    for i in 0..20 {
        let body = random_body(&mut rng, &marker1, 200 + i * 10);
        let ok = ops::send(&mut c1, topic, 0, &OutMessage::new(body.clone()))
            .unwrap()
            .expect_ok("send to shard 1");
        assert_eq!(ok.queue_offset, i as i64);
        let (host, _) = decode_offset_msg_id(&ok.msg_id).unwrap();
        assert_eq!(
            host,
            broker.shard_addr(1),
            "msgId of a shard-1 message names shard 1"
        );
        bodies1.push(body);
    }
    let body0 = random_body(&mut rng, &marker0, 300);
    ops::send(&mut c0, topic, 2, &OutMessage::new(body0.clone()))
        .unwrap()
        .expect_ok("send to shard 0");

    // Queue 0 of shard 0 is a different queue from queue 0 of shard 1.
    assert_eq!(
        ops::max_offset(&mut c0, topic, 0).unwrap(),
        0,
        "shard 0 queue 0 must be empty"
    );
    assert_eq!(ops::max_offset(&mut c1, topic, 0).unwrap(), 20);
    let pulled = ops::pull_all(&mut c1, "e2e_reader", topic, 0, 0, PULL_WAIT);
    assert_eq!(
        pulled.iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
        bodies1
    );
    let pulled0 = ops::pull_all(&mut c0, "e2e_reader", topic, 2, 0, PULL_WAIT);
    assert_eq!(pulled0.len(), 1);
    assert_eq!(pulled0[0].body, body0);

    // flush = sync: acknowledged means on disk. Each shard's bytes are only in its own dir.
    let files1 = broker.files_containing(&marker1);
    let files0 = broker.files_containing(&marker0);
    assert!(
        !files1.is_empty(),
        "no file under {} holds the shard-1 messages",
        broker.data_dir().display()
    );
    assert!(
        !files0.is_empty(),
        "no file under {} holds the shard-0 message",
        broker.data_dir().display()
    );
    assert!(
        files1
            .iter()
            .any(|p| p.to_string_lossy().contains("commitlog")),
        "shard-1 messages are in no commitlog file: {files1:?}"
    );
    let d1 = top_dirs(&files1);
    let d0 = top_dirs(&files0);
    assert_eq!(
        d1.len(),
        1,
        "shard-1 messages spread over several shard dirs: {files1:?}"
    );
    assert_eq!(
        d0.len(),
        1,
        "shard-0 message spread over several shard dirs: {files0:?}"
    );
    assert_ne!(
        d0, d1,
        "both shards wrote into the same directory: {files0:?} / {files1:?}"
    );
    assert!(
        d1[0].ends_with('1') && d0[0].ends_with('0'),
        "shard dirs should be named by shard index: {d0:?} {d1:?}"
    );
}

#[test]
fn parked_pull_is_answered_by_the_next_send() {
    let broker = Broker::start(BrokerSpec::default());
    let topic = "e2e_longpoll";
    create_topic_everywhere(&broker, topic, 2);
    let mut consumer = connect(broker.shard_addr(0));
    let mut producer = connect(broker.shard_addr(0));
    ops::send(&mut producer, topic, 1, &OutMessage::new(b"m0".to_vec()))
        .unwrap()
        .expect_ok("send m0");

    // Pull at the end of the queue with a 10 s suspend: the broker must park it.
    let opaque = ops::send_pull_request(&mut consumer, "e2e_lp", topic, 1, 1, 32, 10_000).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let body = b"arrives-while-parked".to_vec();
    let sent_at = Instant::now();
    let ok = ops::send(&mut producer, topic, 1, &OutMessage::new(body.clone()))
        .unwrap()
        .expect_ok("send m1");
    assert_eq!(ok.queue_offset, 1);
    let resp = consumer
        .wait_response(
            ramjet_tests::wire::request::PULL_MESSAGE,
            opaque,
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("parked pull got no answer: {e}"));
    let woke_after = sent_at.elapsed();
    let r = ops::pull_outcome(resp);
    // The message did not exist when the pull was issued, so a response holding it proves the
    // pull was parked and woken by the arrival.
    assert_eq!(r.code, response::SUCCESS, "woken pull: {:?}", r.remark);
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].body, body);
    assert_eq!(r.messages[0].queue_offset, 1);
    assert_eq!(r.next_begin_offset, 2);
    assert!(
        woke_after < Duration::from_secs(10),
        "the pull was answered by its timeout, not by the arrival"
    );

    // A parked pull with nothing arriving is answered PULL_NOT_FOUND when its hold expires.
    let started = Instant::now();
    let r = ops::pull(&mut consumer, "e2e_lp", topic, 0, 0, 32, 1_000).unwrap();
    assert_eq!(
        r.code,
        response::PULL_NOT_FOUND,
        "expired hold: {:?}",
        r.remark
    );
    assert!(r.messages.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "an empty queue's pull with a 1 s suspend was not held"
    );

    // A send to another queue does not wake a pull parked on queue 1.
    let opaque = ops::send_pull_request(&mut consumer, "e2e_lp", topic, 1, 2, 32, 1_500).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ops::send(
        &mut producer,
        topic,
        0,
        &OutMessage::new(b"other-queue".to_vec()),
    )
    .unwrap()
    .expect_ok("send q0");
    let resp = consumer
        .wait_response(
            ramjet_tests::wire::request::PULL_MESSAGE,
            opaque,
            Duration::from_secs(15),
        )
        .unwrap();
    let r = ops::pull_outcome(resp);
    assert_eq!(
        r.code,
        response::PULL_NOT_FOUND,
        "queue 1 pull must not return queue 0's message"
    );
    assert_eq!(r.next_begin_offset, 2);
}
