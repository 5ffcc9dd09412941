//! SIGKILL of the broker while producers send under `flush = sync`: after every restart, each
//! acknowledged message is consumable, byte-exact, at the queue offset it was acknowledged with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::response;
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
