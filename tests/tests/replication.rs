//! Master/slave replication against the real binary: one `ramjet namesrv`, a master
//! `ramjet broker` and a slave `ramjet broker` with the same `broker.name` (2 shards each; shard
//! i of the slave copies shard i of the master, finding it through the name server).
//!
//! - With `replication = "sync"` (and `flush = "async"`, so the master's own disk does not
//!   count), every send acknowledged SEND_OK before the master is SIGKILLed is on the slave
//!   byte for byte at its queue and offset, and the project's client reads it there through
//!   the route, which lists only the slave once the master is gone.
//! - A sync master answers SLAVE_NOT_AVAILABLE without a slave and FLUSH_SLAVE_TIMEOUT while
//!   its slave is stopped (SIGSTOP), storing the message either way; a slave refuses sends and
//!   copies the master's topics and consumer offsets.
//! - A slave SIGKILLed while it replicates recovers its store, reconnects, and ends with the
//!   master's records.
//! - With `slave_ack_after_flush` on the slave, every send a sync master acknowledged survives
//!   SIGKILL of both master and slave: the slave confirmed it from its disk.
//! - A master that lost records it had sent (SIGKILLed with them unflushed) refuses its
//!   slave, which holds more than the master now: it cannot count as a copy.
//! - A slave restarted as master (`role = "master"` on its data directory) takes sends where
//!   its copy ends and keeps the consumer offsets it copied; with the timer checkpoint and
//!   delay offsets it copied, it delivers a waiting timer message once and repeats none the
//!   master had delivered.
//! - With `slave_read_enable`, a pull of records no longer in the master's tail cache is
//!   answered with `suggestWhichBrokerId = 1`, and the client's next pull of that queue reads
//!   the slave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ramjet_net::client::consumer::{PullOptions, Subscription};
use ramjet_net::client::instance::subscribe_queues;
use ramjet_net::client::transport::block_on;
use ramjet_net::client::{Client, ClientConfig};
use ramjet_tests::ops::{self, OutMessage, Pulled, SendOutcome};
use ramjet_tests::wire::{request, response};
use ramjet_tests::{Broker, BrokerSpec};
use rand::{Rng, RngCore, SeedableRng};

const NAME: &str = "rep";
const SHARDS: usize = 2;
const QUEUES: u32 = 4;
const WAIT: Duration = Duration::from_secs(20);

/// Replication settings short enough for a test.
const HA_TOML: &str = "ha_heartbeat_interval_ms = 300\n\
                       ha_housekeeping_interval_ms = 3000\n\
                       slave_sync_interval_ms = 200\n";

fn master(namesrv: &Broker, sync: bool, extra: &str) -> Broker {
    let mut spec = BrokerSpec::broker_only(namesrv.namesrv_addr(), NAME).shards(SHARDS);
    spec.broker_toml = format!(
        "{HA_TOML}replication = \"{}\"\n{extra}",
        if sync { "sync" } else { "async" }
    );
    Broker::start(spec)
}

fn slave(namesrv: &Broker) -> Broker {
    let mut spec = BrokerSpec::broker_only(namesrv.namesrv_addr(), NAME).shards(SHARDS);
    spec.broker_toml = format!("{HA_TOML}role = \"slave\"\n");
    Broker::start(spec)
}

/// Waits until every master shard counts a connected slave.
fn wait_slaves(m: &Broker) {
    let deadline = Instant::now() + WAIT;
    for i in 0..m.shards() {
        let mut c = ops::connect(m.shard_addr(i));
        while ops::runtime_counter(&mut c, "ramjet.haSlaves") < 1 {
            assert!(
                Instant::now() < deadline,
                "no slave connected to master shard {i} within {WAIT:?}; master log:\n{}",
                m.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until slave shard `i` knows `topic` (copied from its master).
fn wait_topic_on(s: &Broker, i: usize, topic: &str) {
    let deadline = Instant::now() + WAIT;
    let mut c = ops::connect(s.shard_addr(i));
    loop {
        let r = c
            .call(request::GET_ALL_TOPIC_CONFIG, &[], &[])
            .unwrap_or_else(|e| panic!("topics of slave shard {i}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if v["topicConfigTable"].get(topic).is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slave shard {i} did not copy topic {topic} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every thread of process `pid` is stopped (SIGSTOP takes effect asynchronously).
fn wait_stopped(pid: i32) {
    let deadline = Instant::now() + WAIT;
    let dir = format!("/proc/{pid}/task");
    loop {
        let all_stopped = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(Result::ok)
            .all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the ")" that closes the command name.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn body_for(tag: &str, seq: u64, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let len = rng.gen_range(60..3000);
    let mut body = vec![0u8; len];
    rng.fill_bytes(&mut body);
    let head = format!("{tag}-{seq:06}|");
    body[..head.len()].copy_from_slice(head.as_bytes());
    body
}

/// Every message of `topic` on every shard and queue of `b`, keyed by (shard, queue, offset).
fn pull_everything(b: &Broker, topic: &str) -> HashMap<(usize, i32, i64), Pulled> {
    let mut out = HashMap::new();
    for i in 0..b.shards() {
        let mut c = ops::connect(b.shard_addr(i));
        for q in 0..QUEUES as i32 {
            for m in ops::pull_all(&mut c, "rep_check", topic, q, 0, WAIT) {
                out.insert((i, q, m.queue_offset), m);
            }
        }
    }
    out
}

/// Sends to `topic` on shard `shard` of `m` until `stop`; returns the acknowledged sends as
/// (queue, offset, body). Any answer but SEND_OK fails the test; a connection error (the
/// master was killed) ends the loop.
fn send_until(
    m: std::net::SocketAddr,
    shard: usize,
    topic: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> Vec<(i32, i64, Vec<u8>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7 + shard as u64);
    let mut c = ops::connect(m);
    let mut acked = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let q = (seq % QUEUES as u64) as i32;
        let body = body_for(&format!("s{shard}"), seq, &mut rng);
        seq += 1;
        match ops::send(&mut c, &topic, q, &OutMessage::new(body.clone())) {
            Ok(SendOutcome::Ok(ok)) => {
                assert_eq!(ok.queue_id, q);
                acked.push((q, ok.queue_offset, body));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(SendOutcome::Refused { code, remark }) => {
                panic!("shard {shard}: a send with the slave connected got code {code}: {remark:?}")
            }
            Err(_) => break,
        }
    }
    acked
}

#[test]
fn every_send_acknowledged_by_a_sync_master_is_on_the_slave_after_the_master_is_killed() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut m = master(&ns, true, "");
    let s = slave(&ns);
    let topic = "rep_sync_kill";
    ops::create_topic_on(&m, topic, QUEUES);
    wait_slaves(&m);
    for i in 0..SHARDS {
        wait_topic_on(&s, i, topic);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..SHARDS)
        .map(|i| {
            let (addr, stop, acks, topic) = (
                m.shard_addr(i),
                stop.clone(),
                acks.clone(),
                topic.to_string(),
            );
            std::thread::spawn(move || send_until(addr, i, topic, stop, acks))
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while acks.load(Ordering::Relaxed) < 1500 {
        assert!(
            Instant::now() < deadline,
            "sends did not reach 1500 acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Killed under load: sends are in flight on both shards.
    m.kill();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Vec<(i32, i64, Vec<u8>)>> = senders
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| panic!("a sender panicked")))
        .collect();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total >= 1500, "{total} acknowledged");

    let on_slave = pull_everything(&s, topic);
    for (shard, sends) in acked.iter().enumerate() {
        for (q, off, body) in sends {
            let got = on_slave.get(&(shard, *q, *off)).unwrap_or_else(|| {
                panic!(
                    "acknowledged send at shard {shard} queue {q} offset {off} is not on the slave"
                )
            });
            assert_eq!(&got.body, body, "shard {shard} queue {q} offset {off}");
            assert_eq!(got.body_crc, ops::expected_body_crc(body));
        }
    }

    // The name server dropped the master; the client reads the slave through the route.
    let namesrv = ns.namesrv();
    let want: usize = on_slave.len();
    let read = block_on(None, async move {
        let client = Client::new(ClientConfig::new(&namesrv)?);
        let deadline = Instant::now() + WAIT;
        let route = loop {
            let r = client.fetch_route(topic).await?;
            if r.broker_datas.iter().all(|b| b.master_addr().is_none()) {
                break r;
            }
            assert!(Instant::now() < deadline, "the route still names a master");
            ramjet_net::client::transport::sleep(Duration::from_millis(100)).await;
        };
        let mut n = 0usize;
        for mq in subscribe_queues(topic, &route) {
            let mut offset = 0;
            loop {
                let r = client
                    .pull(
                        "rep_client",
                        &mq,
                        &Subscription::new(topic, "*"),
                        offset,
                        PullOptions::new(32),
                    )
                    .await?;
                if r.messages.is_empty() {
                    break;
                }
                n += r.messages.len();
                offset = r.next_begin_offset;
            }
        }
        Ok::<_, ramjet_net::client::ClientError>(n)
    });
    match read {
        Ok(Ok(n)) => assert_eq!(n, want, "messages the client read from the slave"),
        Ok(Err(e)) => panic!("client read from the slave: {e}"),
        Err(e) => panic!("executor: {e}"),
    }
}

#[test]
fn a_sync_master_reports_a_missing_or_stalled_slave_and_a_slave_takes_no_sends() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let m = master(
        &ns,
        true,
        "replication_timeout_ms = 700\noffset_persist_interval_ms = 200\n",
    );
    let topic = "rep_codes";
    ops::create_topic_on(&m, topic, QUEUES);
    let mut c = ops::connect(m.shard_addr(0));
    let msg = |i: u32| OutMessage::new(format!("codes-{i}").into_bytes());

    // No slave: stored, answered SLAVE_NOT_AVAILABLE.
    match ops::send(&mut c, topic, 0, &msg(0)).unwrap_or_else(|e| panic!("send: {e}")) {
        SendOutcome::Refused { code, .. } => assert_eq!(code, response::SLAVE_NOT_AVAILABLE),
        SendOutcome::Ok(_) => panic!("a sync master without a slave answered SEND_OK"),
    }
    let stored = ops::pull_all(&mut c, "rep_codes_g", topic, 0, 0, WAIT);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, b"codes-0");

    let mut s = slave(&ns);
    wait_slaves(&m);
    ops::send(&mut c, topic, 0, &msg(1))
        .unwrap_or_else(|e| panic!("send: {e}"))
        .expect_ok("send with the slave connected");

    // A stopped slave keeps its connection but confirms nothing.
    let pid = s.pid().unwrap_or_else(|| panic!("slave has no pid")) as i32;
    // SAFETY: signals to a child process this test started and still owns.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    wait_stopped(pid);
    let t = Instant::now();
    let r = ops::send(&mut c, topic, 0, &msg(2)).unwrap_or_else(|e| panic!("send: {e}"));
    let waited = t.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    match r {
        SendOutcome::Refused { code, .. } => assert_eq!(code, response::FLUSH_SLAVE_TIMEOUT),
        SendOutcome::Ok(_) => panic!("a send answered SEND_OK while the only slave was stopped"),
    }
    assert!(
        waited >= Duration::from_millis(600),
        "answered after {waited:?}, before broker.replication_timeout_ms"
    );
    let mut confirmed = false;
    let deadline = Instant::now() + WAIT;
    while !confirmed {
        assert!(
            Instant::now() < deadline,
            "the resumed slave never confirmed a send"
        );
        confirmed = matches!(ops::send(&mut c, topic, 0, &msg(3)), Ok(SendOutcome::Ok(_)));
    }
    let all = ops::pull_all(&mut c, "rep_codes_g", topic, 0, 0, WAIT);
    assert!(all.len() >= 4);
    assert_eq!(
        all[..3].iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
        vec![
            b"codes-0".to_vec(),
            b"codes-1".to_vec(),
            b"codes-2".to_vec()
        ]
    );

    // The slave refuses sends and has the master's records and consumer offsets.
    let mut sc = ops::connect(s.shard_addr(0));
    match ops::send(&mut sc, topic, 0, &msg(9)).unwrap_or_else(|e| panic!("send: {e}")) {
        SendOutcome::Refused { code, .. } => assert_eq!(code, response::SERVICE_NOT_AVAILABLE),
        SendOutcome::Ok(_) => panic!("a slave took a send"),
    }
    let ext = |off: i64| {
        vec![
            ("consumerGroup", "rep_codes_g".to_string()),
            ("topic", topic.to_string()),
            ("queueId", "0".to_string()),
            ("commitOffset", off.to_string()),
        ]
    };
    let r = c
        .call(request::UPDATE_CONSUMER_OFFSET, &ext(3), &[])
        .unwrap_or_else(|e| panic!("commit: {e}"));
    assert_eq!(r.code, response::SUCCESS);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = sc
            .call(request::QUERY_CONSUMER_OFFSET, &ext(0)[..3], &[])
            .unwrap_or_else(|e| panic!("query: {e}"));
        if r.code == response::SUCCESS && r.ext_i64("offset") == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave never took the master's offset: code {} {:?}",
            r.code,
            r.ext
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_slave = ops::pull_all(&mut sc, "rep_codes_g", topic, 0, 0, WAIT);
    assert_eq!(
        on_slave.iter().map(|p| &p.body).collect::<Vec<_>>(),
        all.iter().map(|p| &p.body).collect::<Vec<_>>()
    );

    // A delayed message (level 1, 1 s): once the master delivered it and wrote its delay
    // offsets, the slave has them too (a slave made master goes on from there).
    ops::send(
        &mut c,
        topic,
        1,
        &OutMessage::new(b"later".to_vec()).prop("DELAY", "1"),
    )
    .unwrap_or_else(|e| panic!("send: {e}"))
    .expect_ok("delayed send");
    let deadline = Instant::now() + WAIT;
    while !ops::runtime_value(&mut sc, "ramjet.scheduleOffsets").starts_with("1,") {
        assert!(
            Instant::now() < deadline,
            "the slave never took the master's delay offsets: master {}, slave {}",
            ops::runtime_value(&mut c, "ramjet.scheduleOffsets"),
            ops::runtime_value(&mut sc, "ramjet.scheduleOffsets")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivered = ops::pull_all(&mut sc, "rep_codes_g", topic, 1, 0, WAIT);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body, b"later");
    let _ = s.stop();
}

#[test]
fn a_slave_killed_while_replicating_recovers_and_ends_with_the_masters_records() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let m = master(&ns, false, "");
    let mut s = slave(&ns);
    let topic = "rep_slave_kill";
    ops::create_topic_on(&m, topic, QUEUES);
    wait_slaves(&m);
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut conns: Vec<_> = (0..SHARDS).map(|i| ops::connect(m.shard_addr(i))).collect();
    let mut send_some = |n: u64, conns: &mut Vec<ramjet_tests::Conn>| {
        for seq in 0..n {
            let shard = (seq % SHARDS as u64) as usize;
            let q = ((seq / SHARDS as u64) % QUEUES as u64) as i32;
            let body = body_for("k", seq, &mut rng);
            ops::send(&mut conns[shard], topic, q, &OutMessage::new(body))
                .unwrap_or_else(|e| panic!("send: {e}"))
                .expect_ok("async master send");
        }
    };
    send_some(1500, &mut conns);
    s.kill();
    send_some(1500, &mut conns);
    s.restart();
    send_some(500, &mut conns);
    // Caught up: each slave shard's CommitLog ends where its master's does.
    let deadline = Instant::now() + WAIT;
    for i in 0..SHARDS {
        let mut mc = ops::connect(m.shard_addr(i));
        let mut sc = ops::connect(s.shard_addr(i));
        let want = ops::runtime_counter(&mut mc, "commitLogMaxOffset");
        while ops::runtime_counter(&mut sc, "commitLogMaxOffset") != want {
            assert!(
                Instant::now() < deadline,
                "slave shard {i} did not catch up; slave log:\n{}",
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_topic_on(&s, i, topic);
    }
    let on_master = pull_everything(&m, topic);
    let on_slave = pull_everything(&s, topic);
    assert_eq!(on_master.len(), 3500);
    assert_eq!(on_slave.len(), on_master.len());
    for (k, mm) in &on_master {
        let sm = on_slave
            .get(k)
            .unwrap_or_else(|| panic!("{k:?} missing on the slave"));
        assert_eq!(sm.body, mm.body, "{k:?}");
        assert_eq!(sm.physical_offset, mm.physical_offset, "{k:?}");
        assert_eq!(sm.store_timestamp, mm.store_timestamp, "{k:?}");
        assert_eq!(sm.store_host, mm.store_host, "{k:?}");
        assert_eq!(sm.properties, mm.properties, "{k:?}");
    }
}

#[test]
fn a_master_with_slave_read_enable_sends_readers_of_cold_records_to_the_slave() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let m = master(&ns, false, "slave_read_enable = true\n");
    let s = slave(&ns);
    let topic = "rep_slave_read";
    ops::create_topic_on(&m, topic, QUEUES);
    wait_slaves(&m);
    wait_topic_on(&s, 0, topic);
    // 32 MiB into queue 0 of shard 0: twice the tail cache the tests give a store.
    let mut c = ops::connect(m.shard_addr(0));
    let batch: Vec<OutMessage> = (0..64)
        .map(|i| OutMessage::new(vec![b'a' + (i % 26) as u8; 8000]))
        .collect();
    for _ in 0..64 {
        ops::send_batch(&mut c, topic, 0, &batch)
            .unwrap_or_else(|e| panic!("send: {e}"))
            .expect_ok("batch");
    }
    let max = ops::max_offset(&mut c, topic, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(max, 64 * 64);
    let mut sc = ops::connect(s.shard_addr(0));
    let deadline = Instant::now() + WAIT;
    while ops::max_offset(&mut sc, topic, 0).unwrap_or(0) < max {
        assert!(Instant::now() < deadline, "the slave did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The oldest records are read from the file once the flusher wrote them out.
    let deadline = Instant::now() + WAIT;
    loop {
        let cold = ops::pull(&mut c, "rep_sr", topic, 0, 0, 8, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cold.code, response::SUCCESS);
        if cold.suggest_which_broker_id == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a cold pull never suggested the slave"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let hot =
        ops::pull(&mut c, "rep_sr", topic, 0, max - 4, 4, 0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (hot.code, hot.suggest_which_broker_id),
        (response::SUCCESS, 0)
    );

    // The client follows the suggestion: its second pull of the queue goes to the slave.
    let got_before = ops::runtime_counter(&mut sc, "msgGetTotalTodayNow");
    let namesrv = ns.namesrv();
    let pulled = block_on(None, async move {
        let client = Client::new(ClientConfig::new(&namesrv)?);
        let route = client.fetch_route(topic).await?;
        let mq = subscribe_queues(topic, &route)
            .into_iter()
            .find(|q| q.broker_name == format!("{NAME}-s0") && q.queue_id == 0)
            .ok_or_else(|| ramjet_net::client::ClientError::Invalid("no queue 0".into()))?;
        let sub = Subscription::new(topic, "*");
        let first = client
            .pull("rep_sr_client", &mq, &sub, 0, PullOptions::new(8))
            .await?;
        let second = client
            .pull(
                "rep_sr_client",
                &mq,
                &sub,
                first.next_begin_offset,
                PullOptions::new(8),
            )
            .await?;
        Ok::<_, ramjet_net::client::ClientError>((first, second))
    });
    let (first, second) = match pulled {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("client: {e}"),
        Err(e) => panic!("executor: {e}"),
    };
    assert_eq!(first.messages.len(), 8);
    assert_eq!(second.messages.len(), 8);
    assert_eq!(second.messages[0].queue_offset, 8);
    assert_eq!(
        second.messages[0].body.as_ref(),
        vec![b'a' + 8; 8000].as_slice()
    );
    let got_after = ops::runtime_counter(&mut sc, "msgGetTotalTodayNow");
    assert_eq!(
        got_after - got_before,
        8,
        "the second pull was not served by the slave"
    );
}

#[test]
fn a_master_that_lost_records_its_slave_has_refuses_the_slave() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut spec = BrokerSpec::broker_only(ns.namesrv_addr(), NAME).shards(1);
    spec.broker_toml = format!("{HA_TOML}replication = \"async\"\n");
    // Nothing reaches the master's disk on its own: SIGKILL loses every record.
    spec.store_toml = "flush_interval_ms = 600000\nflush_bytes = 1073741824\n".into();
    let mut m = Broker::start(spec);
    let mut sspec = BrokerSpec::broker_only(ns.namesrv_addr(), NAME).shards(1);
    sspec.broker_toml = format!("{HA_TOML}role = \"slave\"\n");
    let s = Broker::start(sspec);
    let topic = "rep_lost";
    ops::create_topic_on(&m, topic, 1);
    wait_slaves(&m);
    let mut c = ops::connect(m.shard_addr(0));
    for i in 0..50 {
        ops::send(
            &mut c,
            topic,
            0,
            &OutMessage::new(format!("lost-{i}").into_bytes()),
        )
        .unwrap_or_else(|e| panic!("send: {e}"))
        .expect_ok("send");
    }
    let mut mc = ops::connect(m.shard_addr(0));
    let end = ops::runtime_counter(&mut mc, "commitLogMaxOffset");
    let mut sc = ops::connect(s.shard_addr(0));
    let deadline = Instant::now() + WAIT;
    while ops::runtime_counter(&mut sc, "commitLogMaxOffset") < end {
        assert!(Instant::now() < deadline, "the slave did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    m.kill();
    m.restart();
    let mut mc = ops::connect(m.shard_addr(0));
    let master_end = ops::runtime_counter(&mut mc, "commitLogMaxOffset");
    assert!(
        master_end < end,
        "the master kept its unflushed records ({master_end} of {end})"
    );
    let deadline = Instant::now() + WAIT;
    while !m.log_text().contains("slave refused") {
        assert!(
            Instant::now() < deadline,
            "the master never refused the longer slave; log:\n{}",
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ops::runtime_counter(&mut mc, "ramjet.haSlaves"), 0);
    assert_eq!(ops::runtime_counter(&mut mc, "ramjet.haConfirmedOffset"), 0);
    // The slave keeps what it had.
    assert_eq!(ops::runtime_counter(&mut sc, "commitLogMaxOffset"), end);
}

#[test]
fn a_slave_restarted_as_master_takes_sends_where_its_copy_ends() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut m = master(&ns, true, "offset_persist_interval_ms = 200\n");
    let mut s = slave(&ns);
    let topic = "rep_promote";
    ops::create_topic_on(&m, topic, QUEUES);
    wait_slaves(&m);
    wait_topic_on(&s, 0, topic);
    let mut c = ops::connect(m.shard_addr(0));
    for i in 0..100 {
        ops::send(
            &mut c,
            topic,
            0,
            &OutMessage::new(format!("p-{i}").into_bytes()),
        )
        .unwrap_or_else(|e| panic!("send: {e}"))
        .expect_ok("sync send");
    }
    let offset_ext = |off: i64| {
        vec![
            ("consumerGroup", "rep_promote_g".to_string()),
            ("topic", topic.to_string()),
            ("queueId", "0".to_string()),
            ("commitOffset", off.to_string()),
        ]
    };
    let r = c
        .call(request::UPDATE_CONSUMER_OFFSET, &offset_ext(40), &[])
        .unwrap_or_else(|e| panic!("commit: {e}"));
    assert_eq!(r.code, response::SUCCESS);
    let committed = |conn: &mut ramjet_tests::Conn| {
        let r = conn
            .call(request::QUERY_CONSUMER_OFFSET, &offset_ext(0)[..3], &[])
            .unwrap_or_else(|e| panic!("query: {e}"));
        (r.code == response::SUCCESS).then(|| r.ext_i64("offset"))
    };
    let deadline = Instant::now() + WAIT;
    while committed(&mut ops::connect(s.shard_addr(0))) != Some(40) {
        assert!(Instant::now() < deadline, "the slave never took the offset");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Waiting messages: a timer message and a delayed one the master delivers before it dies,
    // and a timer message due after the promotion. The slave takes the master's timer
    // checkpoint and delay offsets, so the promoted broker delivers the first two no second
    // time and the third once.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_millis() as i64;
    let late_at = now + 6_000;
    let sends = [
        (
            1,
            OutMessage::new(b"t-early".to_vec()).prop("TIMER_DELAY_MS", "300"),
        ),
        (2, OutMessage::new(b"d-early".to_vec()).prop("DELAY", "1")),
        (
            1,
            OutMessage::new(b"t-late".to_vec()).prop("TIMER_DELIVER_MS", &late_at.to_string()),
        ),
    ];
    for (q, msg) in &sends {
        ops::send(&mut c, topic, *q, msg)
            .unwrap_or_else(|e| panic!("send: {e}"))
            .expect_ok("waiting message");
    }
    let mut sc = ops::connect(s.shard_addr(0));
    let want_timer = format!("0/2/{late_at}");
    let deadline = Instant::now() + WAIT;
    while ops::runtime_value(&mut sc, "ramjet.timerCheckpoint") != want_timer
        || !ops::runtime_value(&mut sc, "ramjet.scheduleOffsets").starts_with("1,")
    {
        assert!(
            Instant::now() < deadline,
            "the slave never took the master's timer checkpoint ({want_timer}) and delay \
             offsets: master {} {}, slave {} {}",
            ops::runtime_value(&mut c, "ramjet.timerCheckpoint"),
            ops::runtime_value(&mut c, "ramjet.scheduleOffsets"),
            ops::runtime_value(&mut sc, "ramjet.timerCheckpoint"),
            ops::runtime_value(&mut sc, "ramjet.scheduleOffsets"),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bodies_of = |conn: &mut ramjet_tests::Conn, q: i32| -> Vec<Vec<u8>> {
        ops::pull_all(conn, "rep_promote_w", topic, q, 0, WAIT)
            .into_iter()
            .map(|p| p.body)
            .collect()
    };
    assert_eq!(
        bodies_of(&mut c, 1),
        [b"t-early".to_vec()],
        "the master delivered t-late early"
    );
    assert_eq!(bodies_of(&mut c, 2), [b"d-early".to_vec()]);
    drop(sc);
    m.kill();

    // Promote: stop the slave (a clean stop flushes what it appended), then start it on the
    // same data directory and ports as a master.
    let stopped = s.stop();
    assert!(
        stopped.is_some_and(|st| st.success()),
        "the slave did not stop cleanly"
    );
    let path = s.config_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("role = \"slave\""));
    std::fs::write(&path, text.replace("role = \"slave\"", "role = \"master\""))
        .unwrap_or_else(|e| panic!("{e}"));
    s.restart();
    let want = s.shard_addr(0).to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let route = ops::get_route(&mut ops::connect(ns.namesrv_addr()), topic)
            .unwrap_or_else(|e| panic!("{e}"));
        let master_is_s = route.as_ref().is_some_and(|r| {
            r.brokers
                .iter()
                .any(|b| b.broker_name == format!("{NAME}-s0") && b.master() == Some(want.as_str()))
        });
        if master_is_s {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the promoted broker never became the route's master: {route:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut pc = ops::connect(s.shard_addr(0));
    let ok = ops::send(&mut pc, topic, 0, &OutMessage::new(b"after".to_vec()))
        .unwrap_or_else(|e| panic!("send: {e}"))
        .expect_ok("send to the promoted master (no slave: async)");
    assert_eq!(ok.queue_offset, 100);
    let all = ops::pull_all(&mut pc, "rep_promote_g", topic, 0, 0, WAIT);
    let bodies: Vec<Vec<u8>> = all.iter().map(|p| p.body.clone()).collect();
    let mut want_bodies: Vec<Vec<u8>> = (0..100).map(|i| format!("p-{i}").into_bytes()).collect();
    want_bodies.push(b"after".to_vec());
    assert_eq!(bodies, want_bodies);
    assert_eq!(committed(&mut pc), Some(40));

    // t-late arrives once, at its time; nothing the master had delivered comes again.
    let deadline = Instant::now() + WAIT;
    while bodies_of(&mut pc, 1).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the promoted broker never delivered t-late: timer {}",
            ops::runtime_value(&mut pc, "ramjet.timerCheckpoint")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let arrived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_millis() as i64;
    assert_eq!(
        bodies_of(&mut pc, 1),
        [b"t-early".to_vec(), b"t-late".to_vec()]
    );
    assert!(
        arrived >= late_at,
        "t-late delivered {} ms early",
        late_at - arrived
    );
    assert_eq!(bodies_of(&mut pc, 2), [b"d-early".to_vec()]);
    assert_eq!(ops::runtime_counter(&mut pc, "ramjet.timerDelivered"), 1);
    assert_eq!(ops::runtime_counter(&mut pc, "ramjet.scheduleDelivered"), 0);
}

#[test]
fn with_slave_ack_after_flush_acknowledged_sends_survive_killing_master_and_slave() {
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut m = master(&ns, true, "");
    let mut sspec = BrokerSpec::broker_only(ns.namesrv_addr(), NAME).shards(SHARDS);
    // Without this key the same run loses acknowledged sends: the slave confirms what it
    // appended, and its flush had not run when it was killed (checked when the key came in).
    sspec.broker_toml = format!("{HA_TOML}role = \"slave\"\nslave_ack_after_flush = true\n");
    let mut s = Broker::start(sspec);
    let topic = "rep_durable";
    ops::create_topic_on(&m, topic, QUEUES);
    wait_slaves(&m);
    wait_topic_on(&s, 0, topic);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut c = ops::connect(m.shard_addr(0));
    let mut acked = Vec::new();
    for seq in 0..300u64 {
        let q = (seq % QUEUES as u64) as i32;
        let body = body_for("d", seq, &mut rng);
        let ok = ops::send(&mut c, topic, q, &OutMessage::new(body.clone()))
            .unwrap_or_else(|e| panic!("send: {e}"))
            .expect_ok("sync send");
        acked.push((q, ok.queue_offset, body));
    }
    // Both processes die at once; neither flushes on the way out.
    m.kill();
    s.kill();
    s.restart();
    let mut sc = ops::connect(s.shard_addr(0));
    let mut on_disk = HashMap::new();
    for q in 0..QUEUES as i32 {
        for p in ops::pull_all(&mut sc, "rep_durable_g", topic, q, 0, WAIT) {
            on_disk.insert((q, p.queue_offset), p.body);
        }
    }
    for (q, off, body) in &acked {
        assert_eq!(
            on_disk.get(&(*q, *off)),
            Some(body),
            "acknowledged send at queue {q} offset {off} is not on the restarted slave"
        );
    }
}
