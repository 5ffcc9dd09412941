//! Fault avoidance against the real broker binary: one `ramjet namesrv` process and two
//! `ramjet broker` processes (flush = sync) host one topic; the project's Rust producer sends
//! sync messages in a loop and one broker process is SIGKILLed under it. The producer keeps
//! getting acknowledgements from the survivor without being restarted, stops choosing the dead
//! broker, and after the dead broker is restarted on its data dir every acknowledged message is
//! consumable, byte-exact, at the broker, queue and offset it was acknowledged with.
//!
//! Two producers: with latency fault avoidance on (the dead broker is isolated after its first
//! failed attempt) and with the default settings (the failed attempt makes the producer fetch
//! the route again, and the name server dropped the dead broker when its registration
//! connection closed).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ramjet_net::client::{
    BrokerSendStats, Client, ClientConfig, Message, Producer, ProducerConfig, SendStatus,
};
use ramjet_net::runtime::{start_executor, ExecutorOptions, Pin};
use ramjet_tests::ops::{self, Pulled};
use ramjet_tests::wire::response;
use ramjet_tests::{BrokerSpec, Cluster, Conn, Flush};
use rand::{Rng, RngCore, SeedableRng};

const TOPIC: &str = "e2e_failover";
/// Queues of the topic on each broker.
const QUEUES: u32 = 4;
/// Broker process names; shard 0 of each registers as `<name>-s0`.
const NAMES: [&str; 2] = ["fo-a", "fo-b"];
/// The broker process that gets SIGKILLed.
const VICTIM: usize = 1;
/// Acknowledgements (spread over both brokers) before the kill.
const ACKS_BEFORE_KILL: u64 = 120;
/// Acknowledgements after the kill before the producer stops ...
const ACKS_AFTER_KILL: u64 = 200;
/// ... and for at least this long after the kill.
const MIN_SENDING_AFTER_KILL: Duration = Duration::from_millis(2500);
/// From this long after the kill on, no attempt may go to the dead broker, whatever the
/// settings: a route refresh forced by a failed attempt is at most
/// `FAILURE_ROUTE_REFRESH_MIN_INTERVAL` (1 s) away.
const SETTLE: Duration = Duration::from_millis(1500);
/// Sends may fail only if they started within this window after the kill.
const ERROR_WINDOW: Duration = Duration::from_secs(2);
/// Bound on each phase of the producer and on every other wait.
const WAIT: Duration = Duration::from_secs(15);
/// With fault avoidance on, attempts on the dead broker allowed after the producer saw the
/// kill: the first attempt that finds it dead isolates it (a request in flight at the kill
/// fails before).
const MAX_DEAD_ATTEMPTS_AFTER_KILL: u64 = 1;

/// One sync send as the producer saw it.
struct Sent {
    key: String,
    body: Vec<u8>,
    /// The send started after the test had killed (and reaped) the victim.
    after_kill: bool,
    /// Milliseconds from the kill to the start of the send (0 when before).
    ms_after_kill: u64,
    /// The send returned after the test had killed the victim (it may have been in flight).
    finished_after_kill: bool,
    /// (broker name, queue id, queue offset, status), or the error text.
    result: Result<(String, i32, i64, SendStatus), String>,
}

/// What the producer's executor hands back.
struct Run {
    sent: Vec<Sent>,
    /// Per broker: attempts when the producer first saw the kill, [`SETTLE`] after it, and at
    /// the end.
    stats_at_kill: HashMap<String, BrokerSendStats>,
    stats_settled: Option<HashMap<String, BrokerSendStats>>,
    stats_end: HashMap<String, BrokerSendStats>,
    /// Per broker seen: whether fault avoidance lets round robin choose it at the end.
    available_end: BTreeMap<String, bool>,
    /// The producer's setup failed before any send.
    setup_error: Option<String>,
}

/// Shared between the test thread and the producer's executor.
struct Control {
    acks: AtomicU64,
    killed: AtomicBool,
    kill_at: std::sync::Mutex<Option<Instant>>,
    stop: AtomicBool,
}

fn body_for(seq: u64, rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    let len = rng.gen_range(40..4000);
    let mut body = vec![0u8; len];
    rng.fill_bytes(&mut body);
    let tag = format!("fo-{seq:06}|");
    body[..tag.len()].copy_from_slice(tag.as_bytes());
    body
}

fn run_producer(namesrv: String, fault_avoidance: bool, ctl: Arc<Control>) -> Run {
    let mut run = Run {
        sent: Vec::new(),
        stats_at_kill: HashMap::new(),
        stats_settled: None,
        stats_end: HashMap::new(),
        available_end: BTreeMap::new(),
        setup_error: None,
    };
    let exec = start_executor(
        "e2e-failover-producer",
        Pin::Unbound,
        ExecutorOptions::default(),
        move || async move {
            let config = match ClientConfig::new(&namesrv) {
                Ok(c) => c,
                Err(e) => {
                    run.setup_error = Some(format!("client config: {e}"));
                    return run;
                }
            };
            let mut pcfg = ProducerConfig::new("e2e_failover_pg");
            pcfg.fault_avoidance = fault_avoidance;
            let producer = Producer::new(Client::new(config), pcfg);
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xFA11_0BE5);
            let mut seen_kill = false;
            let mut seq = 0u64;
            while !ctl.stop.load(Ordering::Acquire) {
                let after_kill = ctl.killed.load(Ordering::Acquire);
                let mut ms_after_kill = 0;
                if after_kill {
                    if !seen_kill {
                        seen_kill = true;
                        run.stats_at_kill = producer.send_stats();
                    }
                    if let Ok(at) = ctl.kill_at.lock() {
                        ms_after_kill = at.map_or(0, |t| t.elapsed().as_millis() as u64);
                    }
                    if run.stats_settled.is_none() && ms_after_kill >= SETTLE.as_millis() as u64 {
                        run.stats_settled = Some(producer.send_stats());
                    }
                }
                let key = format!("fo-key-{seq}");
                let body = body_for(seq, &mut rng);
                let msg = Message::new(TOPIC, body.clone()).with_keys(key.clone());
                let result = producer
                    .send(msg)
                    .await
                    .map(|r| {
                        (
                            r.queue.broker_name,
                            r.queue.queue_id,
                            r.queue_offset,
                            r.status,
                        )
                    })
                    .map_err(|e| e.to_string());
                if result.is_ok() {
                    ctl.acks.fetch_add(1, Ordering::AcqRel);
                }
                let finished_after_kill = ctl.killed.load(Ordering::Acquire);
                run.sent.push(Sent {
                    key,
                    body,
                    after_kill,
                    ms_after_kill,
                    finished_after_kill,
                    result,
                });
                seq += 1;
            }
            run.stats_end = producer.send_stats();
            for name in run.stats_end.keys() {
                run.available_end
                    .insert(name.clone(), producer.is_broker_available(name));
            }
            run
        },
    )
    .unwrap_or_else(|e| panic!("cannot start the producer executor: {e}"));
    exec.join()
        .unwrap_or_else(|e| panic!("producer executor failed: {e}"))
}

fn wait_acks(ctl: &Control, at_least: u64, what: &str) {
    let deadline = Instant::now() + WAIT;
    while ctl.acks.load(Ordering::Acquire) < at_least {
        if Instant::now() >= deadline {
            ctl.stop.store(true, Ordering::Release);
            panic!(
                "{what}: only {} sends acknowledged within {WAIT:?} (wanted {at_least})",
                ctl.acks.load(Ordering::Acquire)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn attempts_since(
    at_kill: &HashMap<String, BrokerSendStats>,
    end: &HashMap<String, BrokerSendStats>,
    broker: &str,
) -> BrokerSendStats {
    let a = at_kill.get(broker).copied().unwrap_or_default();
    let e = end.get(broker).copied().unwrap_or_default();
    BrokerSendStats {
        attempts: e.attempts - a.attempts,
        failures: e.failures - a.failures,
    }
}

#[test]
fn producer_with_fault_avoidance_keeps_sending_when_one_broker_is_killed_and_loses_no_ack() {
    failover(true);
}

#[test]
fn producer_with_default_settings_keeps_sending_when_one_broker_is_killed_and_loses_no_ack() {
    failover(false);
}

fn failover(fault_avoidance: bool) {
    let mut cluster = Cluster::start(&NAMES, BrokerSpec::default().flush(Flush::Sync));
    for b in cluster.brokers() {
        let mut c = Conn::connect(b.shard_addr(0))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", b.shard_broker_name(0)));
        let r = ops::create_topic(&mut c, TOPIC, QUEUES)
            .unwrap_or_else(|e| panic!("create {TOPIC} on {}: {e}", b.shard_broker_name(0)));
        assert_eq!(
            r.code,
            response::SUCCESS,
            "create {TOPIC} on {}: {:?}",
            b.shard_broker_name(0),
            r.remark
        );
    }
    let route = ops::wait_route(cluster.namesrv_addr(), TOPIC, NAMES.len(), WAIT);
    for name in NAMES {
        let shard = format!("{name}-s0");
        let q = route
            .queues
            .iter()
            .find(|q| q.broker_name == shard)
            .unwrap_or_else(|| panic!("route has no queues on {shard}: {}", route.raw));
        assert_eq!(q.write_queue_nums, i64::from(QUEUES), "{}", route.raw);
    }
    let victim = cluster.broker(VICTIM).shard_broker_name(0);
    let survivor = cluster.broker(1 - VICTIM).shard_broker_name(0);

    let ctl = Arc::new(Control {
        acks: AtomicU64::new(0),
        killed: AtomicBool::new(false),
        kill_at: std::sync::Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let producer = {
        let ctl = Arc::clone(&ctl);
        let namesrv = cluster.namesrv();
        std::thread::spawn(move || run_producer(namesrv, fault_avoidance, ctl))
    };

    wait_acks(&ctl, ACKS_BEFORE_KILL, "before the kill");
    let acks_at_kill = ctl.acks.load(Ordering::Acquire);
    cluster.broker_mut(VICTIM).kill();
    if let Ok(mut at) = ctl.kill_at.lock() {
        *at = Some(Instant::now());
    }
    ctl.killed.store(true, Ordering::Release);
    let killed_at = Instant::now();
    wait_acks(&ctl, acks_at_kill + ACKS_AFTER_KILL, "after the kill");
    let rest = MIN_SENDING_AFTER_KILL.saturating_sub(killed_at.elapsed());
    std::thread::sleep(rest);
    ctl.stop.store(true, Ordering::Release);
    let run = match producer.join() {
        Ok(r) => r,
        Err(_) => panic!("the producer thread panicked"),
    };
    if let Some(e) = run.setup_error {
        panic!("producer setup failed: {e}");
    }

    // The producer's view: acks before the kill from both brokers, after it from the
    // survivor only; failures only right after the kill.
    let mut acked_before: BTreeMap<String, usize> = BTreeMap::new();
    let mut acked_after = 0usize;
    let mut errors = Vec::new();
    for s in &run.sent {
        match &s.result {
            Ok((broker, _, _, status)) => {
                assert_eq!(
                    *status,
                    SendStatus::SendOk,
                    "{}: flush = sync acknowledges with SEND_OK",
                    s.key
                );
                if s.after_kill {
                    assert_eq!(
                        broker, &survivor,
                        "{} started {} ms after {victim} was killed but reports being stored on it",
                        s.key, s.ms_after_kill
                    );
                    acked_after += 1;
                } else {
                    *acked_before.entry(broker.clone()).or_default() += 1;
                }
            }
            Err(e) => {
                assert!(
                    s.finished_after_kill && s.ms_after_kill <= ERROR_WINDOW.as_millis() as u64,
                    "{} failed outside the window of {ERROR_WINDOW:?} after the kill (started after the kill: {}, {} ms): {e}",
                    s.key,
                    s.after_kill,
                    s.ms_after_kill
                );
                errors.push(format!("{}: {e}", s.key));
            }
        }
    }
    eprintln!(
        "failover (fault avoidance {fault_avoidance}): {} sends; acked before the kill per broker {acked_before:?}, after the kill {acked_after}; {} failed: {errors:?}",
        run.sent.len(),
        errors.len()
    );
    eprintln!(
        "failover (fault avoidance {fault_avoidance}): attempts at the kill {:?}, {SETTLE:?} after it {:?}, at the end {:?}, available at the end {:?}",
        run.stats_at_kill, run.stats_settled, run.stats_end, run.available_end
    );
    for name in [&victim, &survivor] {
        assert!(
            acked_before.get(name).copied().unwrap_or(0) > 0,
            "before the kill both brokers must get sends: {acked_before:?}"
        );
    }
    assert!(
        acked_after as u64 >= ACKS_AFTER_KILL,
        "the producer must keep getting acknowledgements after the kill: {acked_after}"
    );

    // The producer stops choosing the dead broker: with fault avoidance, once it saw the kill
    // the dead broker got at most the one attempt that found it dead, and it is reported
    // unavailable; in any case no attempt goes to it from SETTLE after the kill on.
    let dead = attempts_since(&run.stats_at_kill, &run.stats_end, &victim);
    let alive = attempts_since(&run.stats_at_kill, &run.stats_end, &survivor);
    if fault_avoidance {
        assert!(
            dead.attempts <= MAX_DEAD_ATTEMPTS_AFTER_KILL,
            "after the kill the producer still chose {victim} {} times ({} failed) against {} attempts on {survivor}",
            dead.attempts,
            dead.failures,
            alive.attempts
        );
        assert_eq!(
            run.available_end.get(&victim),
            Some(&false),
            "fault avoidance must report {victim} unavailable"
        );
    }
    let settled = run
        .stats_settled
        .as_ref()
        .unwrap_or_else(|| panic!("the producer stopped before {SETTLE:?} after the kill"));
    let dead_late = attempts_since(settled, &run.stats_end, &victim);
    let alive_late = attempts_since(settled, &run.stats_end, &survivor);
    assert_eq!(
        dead_late.attempts, 0,
        "{SETTLE:?} after the kill the producer still chose {victim} ({} attempts on {survivor} meanwhile)",
        alive_late.attempts
    );
    assert!(alive_late.attempts > 0, "{alive_late:?}");
    assert_eq!(
        dead.failures, dead.attempts,
        "{victim} is dead: no attempt on it can succeed"
    );
    assert_eq!(
        alive.failures, 0,
        "no attempt on the survivor {survivor} may fail"
    );
    assert!(alive.attempts >= ACKS_AFTER_KILL, "{alive:?}");
    let victim_failed_total = run.stats_end.get(&victim).map_or(0, |s| s.failures);
    assert!(
        victim_failed_total >= 1,
        "the producer must have noticed {victim} dying: {:?}",
        run.stats_end
    );
    assert_eq!(run.available_end.get(&survivor), Some(&true));

    // Restart the dead broker on its data dir; it registers again.
    cluster.broker_mut(VICTIM).restart();
    ops::wait_route(cluster.namesrv_addr(), TOPIC, NAMES.len(), WAIT);

    // Consume every queue of both brokers from offset 0.
    let mut stored: HashMap<(String, i32), Vec<Pulled>> = HashMap::new();
    for b in cluster.brokers() {
        let name = b.shard_broker_name(0);
        let mut c = Conn::connect(b.shard_addr(0))
            .unwrap_or_else(|e| panic!("connect to {name} after the restart: {e}"));
        for q in 0..QUEUES as i32 {
            let got = ops::pull_all(&mut c, "e2e_failover_reader", TOPIC, q, 0, WAIT);
            for (k, p) in got.iter().enumerate() {
                assert_eq!(
                    p.queue_offset, k as i64,
                    "{name}/{q}: queue offsets must be dense from 0"
                );
            }
            stored.insert((name.clone(), q), got);
        }
    }
    let by_key: HashMap<String, Vec<(&str, i32, &Pulled)>> = {
        let mut m: HashMap<String, Vec<(&str, i32, &Pulled)>> = HashMap::new();
        for ((name, q), msgs) in &stored {
            for p in msgs {
                let key = p.property("KEYS").unwrap_or_else(|| {
                    panic!("{name}/{q}@{}: stored message has no KEYS", p.queue_offset)
                });
                m.entry(key).or_default().push((name.as_str(), *q, p));
            }
        }
        m
    };

    // Every acknowledged message is there, byte-exact, where it was acknowledged; nothing is
    // stored that was never sent; a message appears twice at most when it was in flight on
    // the victim at the kill (stored there, unacknowledged, retried on the survivor).
    let sent_keys: HashMap<&str, &Sent> = run.sent.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut acked = 0usize;
    for s in &run.sent {
        let Ok((broker, queue, offset, _)) = &s.result else {
            continue;
        };
        acked += 1;
        let msgs = stored
            .get(&(broker.clone(), *queue))
            .unwrap_or_else(|| panic!("{}: acknowledged on unknown queue {broker}/{queue}", s.key));
        let p = msgs
            .get(usize::try_from(*offset).unwrap_or(usize::MAX))
            .unwrap_or_else(|| {
                panic!(
                    "{}: acknowledged at {broker}/{queue}@{offset} but the queue holds {} messages after the restart",
                    s.key,
                    msgs.len()
                )
            });
        assert_eq!(
            p.property("KEYS").as_deref(),
            Some(s.key.as_str()),
            "{broker}/{queue}@{offset}: another message than the one acknowledged there"
        );
        assert!(
            p.body == s.body,
            "{}: stored body at {broker}/{queue}@{offset} differs from the sent one ({} vs {} bytes)",
            s.key,
            p.body.len(),
            s.body.len()
        );
    }
    let mut duplicates = Vec::new();
    for (key, copies) in &by_key {
        let s = sent_keys
            .get(key.as_str())
            .unwrap_or_else(|| panic!("stored message with key {key} was never sent"));
        for (name, q, p) in copies {
            assert!(
                p.body == s.body,
                "{key}: copy at {name}/{q}@{} differs from the sent body",
                p.queue_offset
            );
        }
        if copies.len() > 1 {
            duplicates.push((key.clone(), copies.len()));
        }
    }
    let total_stored: usize = stored.values().map(Vec::len).sum();
    eprintln!(
        "failover (fault avoidance {fault_avoidance}): {acked} acknowledged, {total_stored} stored, {} distinct keys, duplicates {duplicates:?}",
        by_key.len()
    );
    assert!(
        duplicates.len() <= 1 && duplicates.iter().all(|(_, n)| *n == 2),
        "only the one send in flight at the kill may be stored twice: {duplicates:?}"
    );
    // Stored = acknowledged + the unacknowledged ones that made it (failed sends, the one in
    // flight at the kill).
    assert!(
        by_key.len() >= acked && by_key.len() <= acked + errors.len() + 1,
        "distinct stored keys {} vs {acked} acknowledged and {} failed sends",
        by_key.len(),
        errors.len()
    );
    let unacked_stored = by_key.len() - acked;
    assert!(
        total_stored == acked + unacked_stored + duplicates.len(),
        "stored {total_stored} = acknowledged {acked} + unacknowledged {unacked_stored} + duplicates {}",
        duplicates.len()
    );
}
