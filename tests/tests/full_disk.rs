//! A full disk under the real broker binary with `flush = sync`: the data directory is an
//! 8 MiB tmpfs mounted by the test (we run as root), so a CommitLog write fails with ENOSPC.
//!
//! What must hold, send by send: every send answered SUCCESS is stored, byte for byte, at the
//! queue offset its answer named; the sends waiting for the failed flush are answered
//! FLUSH_DISK_TIMEOUT (the sync-ack queue's failure branch: the outcome is unknown to the
//! client, as in RocketMQ); the sends after it are refused with SERVICE_NOT_AVAILABLE and never
//! stored. Killed and restarted on the still-full disk, the broker starts, serves every
//! acknowledged message and refuses sends cleanly. Once space is freed (the tmpfs grows), the
//! flusher's retry succeeds and sends are acknowledged again without a restart; after a
//! SIGKILL and a restart every acknowledged message is still there, in order. Failures that
//! repeat (refused sends, flush retries, background flushes) are logged, not once each.
//!
//! The store is configured so that only the real ENOSPC can refuse: the disk-usage guards are
//! at 1.0 (no early refusal, no clean-up deleting acknowledged segments), segments are not
//! preallocated, and writes go through the page cache (tmpfs has no O_DIRECT).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ramjet_tests::ops::{self, Pulled};
use ramjet_tests::wire::{request, response, Conn};
use ramjet_tests::{setup, Broker, BrokerSpec, Flush};

const TOPIC: &str = "e2e_full_disk";
const GROUP: &str = "e2e_full_disk_reader";
/// Body bytes per message: ~1000 messages fill the tmpfs.
const BODY: usize = 8 * 1024;
/// Sync sends in flight on the connection.
const WINDOW: usize = 16;
const TMPFS_SMALL: &str = "8m";
const TMPFS_LARGE: &str = "64m";
/// Sends after the first refusal: all of them must be refused too (the disk stays full).
const AFTER_REFUSAL: usize = 64;
/// Sends acknowledged after the space is freed.
const AFTER_GROWTH: u64 = 40;

/// The body of message `seq`: its number in the first 8 bytes, then a pattern of it.
fn body_for(seq: u64) -> Vec<u8> {
    let mut b = vec![0u8; BODY];
    b[..8].copy_from_slice(&seq.to_be_bytes());
    for (i, x) in b[8..].iter_mut().enumerate() {
        *x = (seq as usize * 31 + i) as u8;
    }
    b
}

fn seq_of(body: &[u8]) -> u64 {
    assert_eq!(body.len(), BODY, "stored body has the wrong length");
    let seq = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
    assert_eq!(
        body,
        &body_for(seq)[..],
        "stored body of message {seq} differs"
    );
    seq
}

/// Unmounts the tmpfs when the test ends, whatever happens (after the broker is gone).
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path) -> Mount {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SMALL}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting an {TMPFS_SMALL} tmpfs at {} failed (this test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }

    fn grow(&self) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={TMPFS_LARGE}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remounting the tmpfs larger failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: an io_uring worker of the killed broker can hold a file for a moment.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// How the broker answered one send.
#[derive(Debug, Clone, Copy)]
struct Answer {
    code: i32,
    queue_offset: i64,
}

/// Sends `seqs` with up to [`WINDOW`] in flight, until `stop` says so after an answer (the
/// sends in flight then are still answered). Answers may come out of send order (a refusal
/// at append overtakes sends waiting for their flush), so they are matched by opaque.
fn send_windowed(
    c: &mut Conn,
    seqs: impl Iterator<Item = u64>,
    mut stop: impl FnMut(&HashMap<u64, Answer>) -> bool,
) -> HashMap<u64, Answer> {
    let mut seqs = seqs.peekable();
    let mut in_flight: HashMap<i32, u64> = HashMap::new();
    let mut answers = HashMap::new();
    let mut stopped = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        while !stopped && in_flight.len() < WINDOW {
            let Some(seq) = seqs.next() else { break };
            let ext = ops::send_ext(TOPIC, 0, 0, b"", false);
            let opaque = c
                .send_request(request::SEND_MESSAGE_V2, &ext, &body_for(seq))
                .expect("write send");
            in_flight.insert(opaque, seq);
        }
        if in_flight.is_empty() {
            return answers;
        }
        assert!(Instant::now() < deadline, "sends not answered within 120 s");
        let frame = c.read_frame(Duration::from_secs(30)).expect("read answer");
        if !frame.is_response() {
            continue;
        }
        let seq = in_flight
            .remove(&frame.opaque)
            .unwrap_or_else(|| panic!("answer with unknown opaque {}", frame.opaque));
        let queue_offset = if frame.code == response::SUCCESS {
            frame.ext_i64("queueOffset")
        } else {
            -1
        };
        answers.insert(
            seq,
            Answer {
                code: frame.code,
                queue_offset,
            },
        );
        stopped = stopped || stop(&answers);
    }
}

/// Every stored message of the queue, by queue offset, as message numbers.
fn stored(broker: &Broker) -> Vec<(i64, u64)> {
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let msgs: Vec<Pulled> = ops::pull_all(&mut c, GROUP, TOPIC, 0, 0, Duration::from_secs(60));
    msgs.iter()
        .map(|m| (m.queue_offset, seq_of(&m.body)))
        .collect()
}

/// Checks `stored` against the answers: queue offsets dense from 0, every SUCCESS present at
/// its offset, nothing refused at append (SERVICE_NOT_AVAILABLE) present, no message twice.
fn check(stored: &[(i64, u64)], answers: &HashMap<u64, Answer>, when: &str) {
    for (i, &(qo, _)) in stored.iter().enumerate() {
        assert_eq!(qo, i as i64, "{when}: queue offsets are not dense");
    }
    let at: HashMap<u64, i64> = stored.iter().map(|&(qo, s)| (s, qo)).collect();
    assert_eq!(at.len(), stored.len(), "{when}: a message is stored twice");
    for (seq, a) in answers {
        match a.code {
            response::SUCCESS => assert_eq!(
                at.get(seq),
                Some(&a.queue_offset),
                "{when}: acknowledged message {seq} is not at queue offset {}",
                a.queue_offset
            ),
            response::SERVICE_NOT_AVAILABLE => assert!(
                !at.contains_key(seq),
                "{when}: message {seq} was refused but is stored"
            ),
            // Unknown outcome for the client: stored or not, both are allowed.
            response::FLUSH_DISK_TIMEOUT => {}
            code => panic!("{when}: message {seq} answered with unexpected code {code}"),
        }
    }
    for (_, seq) in stored {
        assert!(
            answers.contains_key(seq),
            "{when}: message {seq} is stored but was never sent"
        );
    }
}

#[test]
fn sync_sends_on_a_full_disk_fail_cleanly_and_resume_when_space_returns() {
    let scratch = setup::temp_dir("ramjet-e2e-full-");
    let data = scratch.path().join("data");
    let mount = Mount::new(&data);
    let spec = BrokerSpec {
        flush: Flush::Sync,
        segment_size_bytes: 1024 * 1024,
        store_toml: "io_mode = \"buffered\"\npreallocate = \"none\"\ncq_units_per_file = 1000\n\
                     disk_clean_ratio = 1.0\ndisk_force_clean_ratio = 1.0\ndisk_refuse_ratio = 1.0\n\
                     max_unflushed_bytes = 16777216\nwrite_pool_preallocate_bytes = 0\n"
            .to_string(),
        data_dir: Some(data.clone()),
        ..BrokerSpec::default()
    };
    let mut broker = Broker::start(spec);
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect");
    let created = ops::create_topic(&mut c, TOPIC, 1).expect("create topic");
    assert_eq!(created.code, response::SUCCESS, "{:?}", created.remark);

    // 1. Fill the disk: send until a refusal, then AFTER_REFUSAL more.
    let mut first_refusal: Option<usize> = None;
    let mut answers = send_windowed(&mut c, 0..100_000, |a| {
        let refused = a.values().any(|x| x.code != response::SUCCESS);
        if refused && first_refusal.is_none() {
            first_refusal = Some(a.len());
        }
        first_refusal.is_some_and(|n| a.len() >= n + AFTER_REFUSAL)
    });
    let count =
        |answers: &HashMap<u64, Answer>, code| answers.values().filter(|a| a.code == code).count();
    let (ok, timeout, unavailable) = (
        count(&answers, response::SUCCESS),
        count(&answers, response::FLUSH_DISK_TIMEOUT),
        count(&answers, response::SERVICE_NOT_AVAILABLE),
    );
    eprintln!(
        "full disk: {ok} acknowledged, {timeout} FLUSH_DISK_TIMEOUT, {unavailable} SERVICE_NOT_AVAILABLE of {}",
        answers.len()
    );
    assert!(
        ok >= 100,
        "only {ok} sends acknowledged before the 8 MiB disk filled"
    );
    assert!(
        timeout >= 1,
        "no send waiting for the failed flush was answered FLUSH_DISK_TIMEOUT"
    );
    assert!(
        unavailable >= 1,
        "no send was refused at append after the flush failed"
    );
    assert_eq!(
        ok + timeout + unavailable,
        answers.len(),
        "unexpected codes: {answers:?}"
    );
    // Acknowledgements form a prefix: nothing after the first failure was acknowledged.
    let last_ok = answers
        .iter()
        .filter(|(_, a)| a.code == response::SUCCESS)
        .map(|(&s, _)| s)
        .max()
        .expect("an acknowledged send");
    let first_bad = answers
        .iter()
        .filter(|(_, a)| a.code != response::SUCCESS)
        .map(|(&s, _)| s)
        .min()
        .expect("a refused send");
    assert!(
        last_ok < first_bad,
        "message {last_ok} acknowledged after {first_bad} failed"
    );
    check(&stored(&broker), &answers, "with the disk full");
    // The refusals and the flusher's retries are logged, but not a line per send or retry.
    std::thread::sleep(Duration::from_millis(500));
    let log = broker.log_text();
    let refusal_lines = log.matches("send refused: disk full").count();
    assert!(
        (1..=2).contains(&refusal_lines),
        "{refusal_lines} 'send refused' lines for {unavailable} refusals"
    );
    let retry_lines = log
        .matches("appends refused until a retry succeeds")
        .count();
    assert!(
        (1..=2).contains(&retry_lines),
        "{retry_lines} flush failure lines in 0.5 s of retries every 100 ms"
    );
    // ... while the runtime counters count every failure and refusal.
    let failures = ops::runtime_counter(&mut c, "ramjet.flushFailures");
    assert!(
        failures >= 3,
        "ramjet.flushFailures {failures} after 0.5 s of retries every 100 ms"
    );
    let refused = ops::runtime_counter(&mut c, "ramjet.putsRefusedDiskFull");
    assert!(
        refused >= unavailable as u64,
        "ramjet.putsRefusedDiskFull {refused} for {unavailable} SERVICE_NOT_AVAILABLE answers"
    );

    // 2. SIGKILL and restart while the disk is still full: the broker starts, serves every
    // acknowledged message, refuses sends cleanly, and its background flushes (ConsumeQueue,
    // IndexFile, checkpoint: every 500 ms, all failing) do not flood the log.
    drop(c);
    let log_before = broker.log_text().len();
    broker.restart();
    check(&stored(&broker), &answers, "restarted on the full disk");
    let mut c = Conn::connect(broker.shard_addr(0)).expect("connect after restart");
    let next = answers.keys().max().expect("answers") + 1;
    let on_full = send_windowed(&mut c, next..next + 8, |_| false);
    for (seq, a) in &on_full {
        assert!(
            a.code == response::FLUSH_DISK_TIMEOUT || a.code == response::SERVICE_NOT_AVAILABLE,
            "send {seq} on the full disk after the restart answered {}",
            a.code
        );
    }
    // The first send after the restart either finds the disk-usage probe at 100 % already
    // (refused before any write: SERVICE_NOT_AVAILABLE) or gets appended and its flush fails
    // (FLUSH_DISK_TIMEOUT); only the second starts a failure episode in this process.
    let flush_failed_after_restart = on_full
        .values()
        .any(|a| a.code == response::FLUSH_DISK_TIMEOUT);
    answers.extend(on_full);
    std::thread::sleep(Duration::from_millis(1600));
    let since_restart = broker.log_text()[log_before..].to_string();
    let derived_lines = since_restart
        .matches("flushing ConsumeQueue/IndexFile or checkpoint failed")
        .count();
    assert!(
        derived_lines <= 2,
        "{derived_lines} background flush failure lines in 1.6 s (a round every 500 ms)"
    );
    check(&stored(&broker), &answers, "after sends on the full disk");

    // 3. Free space: the flusher's retry succeeds and sends are acknowledged again.
    mount.grow();
    let next = answers.keys().max().expect("answers") + 1;
    let resumed = Instant::now() + Duration::from_secs(20);
    let mut seq = next;
    loop {
        let a = send_windowed(&mut c, seq..seq + 1, |_| false);
        let code = a[&seq].code;
        answers.extend(a);
        seq += 1;
        if code == response::SUCCESS {
            break;
        }
        assert_eq!(
            code,
            response::SERVICE_NOT_AVAILABLE,
            "while the retry is pending"
        );
        assert!(
            Instant::now() < resumed,
            "sends still refused 20 s after the disk grew"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = send_windowed(&mut c, seq..seq + AFTER_GROWTH, |_| false);
    for (s, a) in &after {
        assert_eq!(a.code, response::SUCCESS, "send {s} after the disk grew");
    }
    answers.extend(after);
    let recovered_lines = broker
        .log_text()
        .matches("CommitLog flush succeeded again; appends accepted")
        .count();
    assert_eq!(
        recovered_lines,
        usize::from(flush_failed_after_restart),
        "the log says once that the disk took data again, when a flush had failed"
    );
    let before_kill = stored(&broker);
    check(&before_kill, &answers, "after the disk grew");

    // 4. SIGKILL and restart: every acknowledged message survives, in the same places.
    drop(c);
    broker.restart();
    let after_restart = stored(&broker);
    check(&after_restart, &answers, "after SIGKILL and restart");
    assert_eq!(
        after_restart, before_kill,
        "the queue changed across the restart"
    );
    broker.kill();
    drop(mount);
}
