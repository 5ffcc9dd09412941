//! SIGKILL of the broker while producers send under `flush = sync`: after every restart, each
//! acknowledged message is consumable, byte-exact, at the queue offset it was acknowledged with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::{request, response};
use ramjet_tests::{Broker, BrokerSpec, Conn, Flush};
use rand::{Rng, RngCore, SeedableRng};

const TRIALS: u32 = 10;
const PRODUCERS: usize = 3;
const QUEUES: u32 = 4;
/// Bound on waiting for the first acknowledgement of a trial.
const FIRST_ACK_WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
struct Acked {
    queue: i32,
    offset: i64,
    body: Vec<u8>,
}

#[test]
fn sigkill_during_sync_flush_loses_nothing_acknowledged() {
    // Small segments so that some trials cross a segment boundary.
    let mut spec = BrokerSpec::default().flush(Flush::Sync);
    spec.segment_size_bytes = 4 * 1024 * 1024;
    let mut broker = Broker::start(spec);
    let topic = "e2e_crash";
    {
        let mut c = Conn::connect(broker.shard_addr(0)).unwrap();
        let r = ops::create_topic(&mut c, topic, QUEUES).unwrap();
        assert_eq!(r.code, response::SUCCESS, "create topic: {:?}", r.remark);
    }
    let mut all_acked: Vec<Acked> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);

    for trial in 0..TRIALS {
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ack_count = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for p in 0..PRODUCERS {
            let acked = Arc::clone(&acked);
            let stop = Arc::clone(&stop);
            let ack_count = Arc::clone(&ack_count);
            let addr = broker.shard_addr(0);
            let seed = rng.gen::<u64>();
            handles.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let Ok(mut conn) = Conn::connect(addr) else {
                    return;
                };
                conn.set_timeout(Duration::from_secs(10));
                let mut seq = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let queue = ((p as u32 + seq) % QUEUES) as i32;
                    let len = rng.gen_range(16..3000);
                    let mut body = vec![0u8; len];
                    rng.fill_bytes(&mut body);
                    let tag = format!("t{trial}-p{p}-s{seq}|");
                    body[..tag.len().min(len)]
                        .copy_from_slice(&tag.as_bytes()[..tag.len().min(len)]);
                    let msg = OutMessage::new(body.clone());
                    match ops::send(&mut conn, topic, queue, &msg) {
                        Ok(ops::SendOutcome::Ok(ok)) => {
                            assert_eq!(ok.queue_id, queue);
                            if let Ok(mut a) = acked.lock() {
                                a.push(Acked {
                                    queue,
                                    offset: ok.queue_offset,
                                    body,
                                });
                            }
                            ack_count.fetch_add(1, Ordering::Relaxed);
                        }
                        // Not acknowledged: may or may not be stored; nothing to check.
                        Ok(ops::SendOutcome::Refused { .. }) => {}
                        // The broker died under us.
                        Err(_) => return,
                    }
                    seq += 1;
                }
            }));
        }
        // Let some acknowledgements happen, then kill at a random moment.
        let deadline = Instant::now() + FIRST_ACK_WAIT;
        while ack_count.load(Ordering::Relaxed) == 0 {
            if Instant::now() >= deadline {
                stop.store(true, Ordering::Relaxed);
                panic!("trial {trial}: no send acknowledged within {FIRST_ACK_WAIT:?} under flush=sync");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..300)));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("producer thread panicked");
        }
        let trial_acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
        all_acked.extend(trial_acked.iter().cloned());
        eprintln!(
            "trial {trial}: {} sends acknowledged before SIGKILL ({} in total)",
            trial_acked.len(),
            all_acked.len()
        );

        broker.restart();
        verify(&broker, topic, &all_acked, trial);
    }
    assert!(
        all_acked.len() >= TRIALS as usize,
        "too few acknowledged sends overall: {}",
        all_acked.len()
    );
}

/// Every acknowledged message (all trials so far) is at its acknowledged offset, byte-exact.
fn verify(broker: &Broker, topic: &str, acked: &[Acked], trial: u32) {
    let mut c = Conn::connect(broker.shard_addr(0))
        .unwrap_or_else(|e| panic!("trial {trial}: reconnect: {e}"));
    let mut by_queue: HashMap<i32, Vec<&Acked>> = HashMap::new();
    for a in acked {
        by_queue.entry(a.queue).or_default().push(a);
    }
    for (queue, msgs) in by_queue {
        let stored = ops::pull_all(
            &mut c,
            "e2e_crash_reader",
            topic,
            queue,
            0,
            Duration::from_secs(30),
        );
        let by_offset: HashMap<i64, &ops::Pulled> =
            stored.iter().map(|p| (p.queue_offset, p)).collect();
        assert_eq!(
            by_offset.len(),
            stored.len(),
            "trial {trial}: queue {queue} has duplicate queue offsets"
        );
        for (k, p) in stored.iter().enumerate() {
            assert_eq!(
                p.queue_offset, k as i64,
                "trial {trial}: queue {queue} offsets must be dense from 0"
            );
        }
        for a in msgs {
            match by_offset.get(&a.offset) {
                Some(p) => assert!(
                    p.body == a.body,
                    "trial {trial}: queue {queue} offset {}: stored body differs from the acknowledged one ({} vs {} bytes)",
                    a.offset,
                    p.body.len(),
                    a.body.len()
                ),
                None => panic!(
                    "trial {trial}: acknowledged message at queue {queue} offset {} is gone after SIGKILL + restart (queue now holds {} messages)",
                    a.offset,
                    stored.len()
                ),
            }
        }
    }
}

#[test]
fn sigterm_stop_and_restart_keep_messages_topics_and_consumer_offsets() {
    // flush = async: a clean stop must flush what was acknowledged from memory.
    let mut broker = Broker::start(BrokerSpec::default().shards(2));
    let topic = "e2e_restart";
    let mut bodies: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 2];
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for (shard, shard_bodies) in bodies.iter_mut().enumerate() {
        let mut c = Conn::connect(broker.shard_addr(shard)).unwrap();
        let r = ops::create_topic(&mut c, topic, 2).unwrap();
        assert_eq!(r.code, response::SUCCESS);
        for i in 0..30 {
            let mut body = vec![0u8; rng.gen_range(1..5000)];
            rng.fill_bytes(&mut body);
            let ok = ops::send(&mut c, topic, 1, &OutMessage::new(body.clone()))
                .unwrap()
                .expect_ok("send");
            assert_eq!(ok.queue_offset, i);
            shard_bodies.push(body);
        }
        let ext = [
            ("consumerGroup", "e2e_restart_group".to_string()),
            ("topic", topic.to_string()),
            ("queueId", "1".to_string()),
            ("commitOffset", (17 + shard).to_string()),
        ];
        let r = c.call(request::UPDATE_CONSUMER_OFFSET, &ext, &[]).unwrap();
        assert_eq!(
            r.code,
            response::SUCCESS,
            "UPDATE_CONSUMER_OFFSET: {:?}",
            r.remark
        );
    }
    let status = broker.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must stop the broker cleanly within the bound, got {status:?}"
    );
    broker.restart();
    // Every shard registers again and routes the topic (its config survived).
    ops::wait_route(broker.namesrv_addr(), topic, 2, Duration::from_secs(20));
    for (shard, shard_bodies) in bodies.iter().enumerate() {
        let mut c = Conn::connect(broker.shard_addr(shard)).unwrap();
        let stored = ops::pull_all(
            &mut c,
            "e2e_restart_reader",
            topic,
            1,
            0,
            Duration::from_secs(20),
        );
        let got: Vec<Vec<u8>> = stored.into_iter().map(|p| p.body).collect();
        assert!(
            got == *shard_bodies,
            "shard {shard}: messages after restart differ ({} vs {})",
            got.len(),
            shard_bodies.len()
        );
        let ext = [
            ("consumerGroup", "e2e_restart_group".to_string()),
            ("topic", topic.to_string()),
            ("queueId", "1".to_string()),
        ];
        let r = c.call(request::QUERY_CONSUMER_OFFSET, &ext, &[]).unwrap();
        assert_eq!(
            r.code,
            response::SUCCESS,
            "QUERY_CONSUMER_OFFSET after restart: {:?}",
            r.remark
        );
        assert_eq!(
            r.ext_i64("offset"),
            17 + shard as i64,
            "shard {shard}: committed offset survives a restart"
        );
    }
}
