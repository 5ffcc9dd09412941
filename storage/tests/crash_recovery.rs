//! Crash recovery under `flush = sync`: a child process appends from concurrent tasks and
//! prints each record only after `wait_durable` returned; the parent SIGKILLs it at a random
//! moment, again and again on the same directory, and after every kill reopens the store and
//! checks that every acknowledged record is there byte for byte, that no torn bytes survive past
//! the recovered end, and that the ConsumeQueues agree with the CommitLog.
//!
//! The child is this test binary itself, re-invoked with `CRASH_CHILD_DIR` set (the same test
//! function runs the child workload in that case).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ramjet_core::record::{MessageToStore, RecordView};
use ramjet_storage::checkpoint::Checkpoint;
use ramjet_storage::recovery::{recover_commitlog, RecoveryOptions};
use ramjet_storage::{Chunk, FlushMode, Store, StoreConfig};
use rand::Rng;

const CHILD_ENV: &str = "CRASH_CHILD_DIR";
const TEST_NAME: &str = "sigkill_at_random_points_loses_no_acknowledged_record";
const TOPIC: &str = "CrashTopic";
const APPENDERS: u64 = 6;
const QUEUES: u64 = 3;
const SEGMENT_BYTES: u64 = 256 * 1024;
const KILLS: usize = 22;
/// Random delay before the kill, after the child said it is ready.
const KILL_DELAY_MS: std::ops::Range<u64> = 5..250;
/// Budget for the whole loop; the test stops killing early (after the minimum) if exceeded.
const TIME_BUDGET: Duration = Duration::from_secs(50);
const MIN_KILLS: usize = 20;
/// Pause after reaping a killed child (see its use).
const IO_DRAIN_AFTER_KILL: Duration = Duration::from_millis(50);
/// A child that has not opened its store by then is stuck.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_size_bytes = SEGMENT_BYTES;
    cfg.flush = FlushMode::Sync;
    cfg.max_message_bytes = 16 * 1024;
    cfg.max_batch_bytes = 32 * 1024;
    cfg.max_unflushed_bytes = 4 * 1024 * 1024;
    cfg.tail_cache_bytes = 512 * 1024;
    cfg.cq_units_per_file = 1000;
    cfg.index_slots = 1024;
    cfg.index_entries = 4096;
    cfg.checkpoint_interval_ms = 50;
    cfg
}

/// Body of the message with seed `seed`: 40..=1000 deterministic bytes.
fn body(seed: u64) -> Vec<u8> {
    common::body_for(seed, 40 + (seed % 961) as usize)
}

/// One acknowledged record as the child reported it.
#[derive(Clone, Copy, Debug)]
struct Ack {
    phys: u64,
    queue_id: i32,
    queue_offset: i64,
    seed: u64,
    crc: u32,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    let mut next = || it.next().and_then(|s| s.parse::<u64>().ok());
    Some(Ack {
        phys: next()?,
        queue_id: next()? as i32,
        queue_offset: next()? as i64,
        seed: next()?,
        crc: next()? as u32,
    })
}

fn child(dir: PathBuf, run: u64) -> ! {
    let r = ramjet_storage::io::block_on(async move {
        // Every other run appends with pipelined group commit (`sync_pipeline`): a sync in
        // flight while the next group is written must not acknowledge that group.
        // Every fourth run cuts its write phases at one chunk (`sync_group_max_bytes` at its
        // minimum): a sync then covers only the whole records of the chunks written before
        // it, e.g. a segment's last chunk while the next segment's first waits.
        let mut cfg = config(&dir);
        cfg.sync_pipeline = run.is_multiple_of(2);
        if run.is_multiple_of(4) {
            cfg.sync_group_max_bytes = ramjet_storage::MIN_SYNC_GROUP_MAX_BYTES;
        }
        let store = match Store::open(cfg).await {
            Ok(s) => s,
            Err(e) => {
                println!("OPEN-FAILED {e}");
                std::process::exit(3);
            }
        };
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let store = store.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut n = 0u64;
                loop {
                    let seed = (run << 40) | (t << 32) | n;
                    n += 1;
                    let b = body(seed);
                    let msg = MessageToStore {
                        topic: TOPIC,
                        queue_id: (t % QUEUES) as i32,
                        flag: 0,
                        body: &b,
                        properties: b"",
                        sys_flag: 0,
                        born_timestamp: 1,
                        born_host: common::host(50000),
                        store_host: common::host(10911),
                        reconsume_times: 0,
                        prepared_transaction_offset: 0,
                        tags_code: 0,
                    };
                    let put = match store.put_message(&msg) {
                        Ok(p) => p,
                        Err(ramjet_storage::StoreError::Busy { .. }) => {
                            store.wait_writable(msg.encoded_len()).await;
                            continue;
                        }
                        Err(e) => {
                            println!("PUT-FAILED {e}");
                            std::process::exit(4);
                        }
                    };
                    if let Err(e) = store.wait_durable(put.end_physical_offset).await {
                        println!("DURABLE-FAILED {e}");
                        std::process::exit(5);
                    }
                    println!(
                        "ACK {} {} {} {} {}",
                        put.physical_offset,
                        msg.queue_id,
                        put.queue_offset,
                        seed,
                        crc32fast::hash(&b)
                    );
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            println!("EXECUTOR-FAILED {e}");
            std::process::exit(6);
        }
    }
}

/// Runs one child until killed; returns its acknowledged records.
fn run_child_and_kill(dir: &Path, run: u64, rng: &mut impl Rng) -> Vec<Ack> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env("CRASH_CHILD_RUN", run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    // Lines arrive through a thread so that a child that never gets ready cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the child has opened (recovered) the store, then kill it at a random moment.
    // (libtest prints "test <name> ... " without a newline before the child's first line.)
    let mut pre = Vec::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.trim_end().ends_with("READY") => break,
            Ok(line) => {
                assert!(!line.contains("FAILED"), "child failed: {line}");
                pre.push(line);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child not ready within {READY_TIMEOUT:?} ({e}); output: {pre:?}");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(rng.gen_range(KILL_DELAY_MS)));
    child.kill().expect("SIGKILL child");
    let rest: Vec<String> = rx.iter().collect();
    reader_thread.join().expect("reader thread");
    let status = child.wait().expect("wait child");
    // The kernel tears a dead process's io_uring down in a workqueue after it is reaped: its
    // last O_DIRECT writes may still land for a few ms. Buffered writes to the same pages in
    // that window (the torn-tail simulation, recovery's zeroing) make the next fsync report EIO
    // (stale page cache), so give them time to drain, as a restarting broker would.
    std::thread::sleep(IO_DRAIN_AFTER_KILL);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child died by SIGKILL, not on its own; last lines: {:?}",
        &rest[rest.len().saturating_sub(5)..]
    );
    let mut acks = Vec::new();
    for l in &rest {
        assert!(!l.contains("FAILED"), "child reported: {l}");
        // The last line may be cut by the kill; only whole lines with all fields count.
        if let Some(a) = parse_ack(l) {
            acks.push(a);
        }
    }
    acks
}

fn chunk_bytes(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        match c {
            Chunk::Memory(s) => out.extend_from_slice(s.as_ref()),
            Chunk::File { file, offset, len } => {
                let start = out.len();
                out.resize(start + *len as usize, 0);
                file.read_exact_at(&mut out[start..], *offset)
                    .expect("read chunk");
            }
        }
    }
    out
}

/// Where the valid CommitLog ends now (a read-only scan).
fn valid_end(dir: &Path) -> u64 {
    let opts = RecoveryOptions {
        dry_run: true,
        ..RecoveryOptions::full(SEGMENT_BYTES)
    };
    recover_commitlog(&dir.join("commitlog"), &opts, &mut |_, _| {})
        .expect("scan for the valid end")
        .end_offset
}

/// Simulates what a power cut can leave that SIGKILL cannot: a partly written record past the
/// end (a plausible header with this position's PHYSICALOFFSET, then random bytes). Returns
/// the offset written at, or None when the end is at a segment boundary.
fn tear_tail(dir: &Path, rng: &mut impl Rng) -> Option<u64> {
    let end = valid_end(dir);
    let pos = end % SEGMENT_BYTES;
    let room = SEGMENT_BYTES - pos;
    if room < 64 {
        return None;
    }
    let len = rng.gen_range(40..room.min(3000)) as usize;
    let mut junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    junk[0..4].copy_from_slice(&(len as i32 + rng.gen_range(1..500)).to_be_bytes());
    junk[4..8].copy_from_slice(&ramjet_core::record::MESSAGE_MAGIC_CODE_V1.to_be_bytes());
    if len >= 36 {
        junk[28..36].copy_from_slice(&(end as i64).to_be_bytes());
    }
    let seg = dir
        .join("commitlog")
        .join(ramjet_storage::recovery::segment_file_name(end - pos));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).ok()?;
    f.write_all_at(&junk, pos).expect("write torn bytes");
    f.sync_data().expect("sync torn bytes");
    Some(end)
}

/// Simulates the other thing a power cut can leave: writes in flight completed out of order.
/// Valid records are laid past the end, then one 4 KiB block among them is zeroed (a write
/// that never reached the disk) so that the record at the end is torn and valid ones follow.
/// Returns the offset written at, or None when the segment has too little room left.
fn hole_tail(dir: &Path, rng: &mut impl Rng) -> Option<u64> {
    let end = valid_end(dir);
    let pos = end % SEGMENT_BYTES;
    let hole = pos.next_multiple_of(4096);
    if SEGMENT_BYTES - pos < 16 * 1024 || hole + 8192 > SEGMENT_BYTES {
        return None;
    }
    let seg = dir
        .join("commitlog")
        .join(ramjet_storage::recovery::segment_file_name(end - pos));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).ok()?;
    // The first record reaches into the hole; the others run past it. Queue offsets far
    // beyond anything acknowledged: these records were never acknowledged.
    let overhead = common::encode(TOPIC, 0, 1 << 40, &[], 0).len();
    let mut at = pos;
    let mut n = 0i64;
    while at < hole + 4096 + 1200 {
        let total = if n == 0 {
            (hole - at) as usize + rng.gen_range(1..400)
        } else {
            rng.gen_range(200..1000)
        };
        let body = common::body_for(n as u64, total.saturating_sub(overhead));
        let rec = common::encode(TOPIC, 0, (1 << 40) | n, &body, end - pos + at);
        f.write_all_at(&rec, at).expect("write in-flight record");
        at += rec.len() as u64;
        n += 1;
    }
    f.write_all_at(&[0u8; 4096], hole).expect("unwrite a block");
    f.sync_data().expect("sync the hole");
    Some(end)
}

/// What recovery would do right after the crash (read-only): the checkpoint must never claim
/// more than is valid, and the bytes past the end must be a torn tail, not corruption.
/// Returns whether there was a torn tail (non-zero bytes past the last valid record).
fn inspect_after_crash(dir: &Path) -> bool {
    let cp = Checkpoint::load(dir).expect("checkpoint readable");
    let opts = RecoveryOptions {
        dry_run: true,
        // What the store allows in flight is far more than `hole_tail` lays out.
        max_in_flight_bytes: 64 << 20,
        ..RecoveryOptions::from_checkpoint(SEGMENT_BYTES, cp.as_ref())
    };
    match recover_commitlog(&dir.join("commitlog"), &opts, &mut |_, _| {}) {
        Ok(r) => r.truncated.is_some(),
        Err(e) => panic!("after a crash: {e}"),
    }
}

/// Reopens the store (recovery) and checks everything acknowledged so far.
fn verify(dir: &Path, acks: &[Ack]) -> (u64, usize) {
    let acks_owned = acks.to_vec();
    let dir2 = dir.to_path_buf();
    let (end, units) = ramjet_storage::io::block_on(async move {
        let acks = acks_owned;
        let store = Store::open(config(&dir2))
            .await
            .expect("reopen after crash (recovery)");
        // 1. Every acknowledged record, byte for byte.
        for a in &acks {
            let rec = store
                .read_record(a.phys)
                .await
                .unwrap_or_else(|e| panic!("acknowledged record at {} missing: {e}", a.phys));
            let v = RecordView::parse_verified(&rec).expect("acknowledged record valid");
            assert_eq!(v.physical_offset(), a.phys as i64);
            assert_eq!(v.topic(), TOPIC);
            assert_eq!(v.queue_id(), a.queue_id);
            assert_eq!(
                v.queue_offset(),
                a.queue_offset,
                "queue offset of record at {}",
                a.phys
            );
            assert_eq!(crc32fast::hash(v.body()), a.crc);
            assert_eq!(v.body(), &body(a.seed)[..], "body of record at {}", a.phys);
        }
        // 2. ConsumeQueue agrees with the CommitLog: unit k of each queue points at a record of
        //    that topic and queue whose queue offset is k; offsets are dense from 0.
        let mut acked_per_queue: HashMap<i32, i64> = HashMap::new();
        for a in &acks {
            let m = acked_per_queue.entry(a.queue_id).or_insert(-1);
            *m = (*m).max(a.queue_offset);
        }
        let mut units = 0usize;
        for q in 0..QUEUES as i32 {
            let max = store.max_offset(TOPIC, q);
            assert!(
                max > acked_per_queue.get(&q).copied().unwrap_or(-1),
                "queue {q}: max offset {max} below an acknowledged queue offset"
            );
            let mut off = store.min_offset(TOPIC, q);
            assert_eq!(off, 0);
            while off < max {
                let r = store.get_messages(TOPIC, q, off, 32, 1 << 20, &|_| true);
                assert!(r.msg_count > 0, "queue {q} offset {off}: {:?}", r.status);
                let bytes = chunk_bytes(&r.chunks);
                let mut at = 0usize;
                for i in 0..r.msg_count as i64 {
                    let v = RecordView::parse_verified(&bytes[at..])
                        .expect("CQ points at a valid record");
                    assert_eq!(v.topic(), TOPIC);
                    assert_eq!(v.queue_id(), q);
                    assert_eq!(
                        v.queue_offset(),
                        off + i,
                        "CQ unit {} of queue {q}",
                        off + i
                    );
                    at += v.total_size() as usize;
                    units += 1;
                }
                assert_eq!(at, bytes.len());
                off = r.next_begin_offset;
            }
        }
        let end = store.stats().commitlog_end_offset;
        store.shutdown().await.expect("shutdown");
        (end, units)
    })
    .expect("executor");
    // 3. Nothing invalid survives: a read-only scan of the whole CommitLog finds every record
    //    valid up to the end and only zeros after it.
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let opts = RecoveryOptions {
        dry_run: true,
        ..RecoveryOptions::full(SEGMENT_BYTES)
    };
    let report = recover_commitlog(&dir.join("commitlog"), &opts, &mut |v, off| {
        seen.insert(off, v.total_size() as usize);
    })
    .expect("scan after reopen");
    assert_eq!(report.truncated, None, "torn bytes left after recovery");
    assert!(report.removed_segments.is_empty());
    assert_eq!(report.end_offset, end);
    for a in acks {
        assert!(
            seen.contains_key(&a.phys),
            "ack at {} not in the scan",
            a.phys
        );
    }
    (end, units)
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_record() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let run = std::env::var("CRASH_CHILD_RUN")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        child(PathBuf::from(dir), run);
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut all: Vec<Ack> = Vec::new();
    let mut runs_with_acks = 0usize;
    let mut kills = 0usize;
    let mut last_end = 0u64;
    let mut torn_tails = 0usize;
    let mut holes = 0usize;
    while kills < KILLS && (kills < MIN_KILLS || started.elapsed() < TIME_BUDGET) {
        let acks = run_child_and_kill(&dir, kills as u64 + 1, &mut rng);
        kills += 1;
        if !acks.is_empty() {
            runs_with_acks += 1;
        }
        all.extend(acks);
        // Power-cut leftovers SIGKILL cannot make: a torn record past the end (every other
        // kill) or in-flight records after a block that never reached the disk (every fourth).
        let torn = match kills % 4 {
            1 | 3 => tear_tail(&dir, &mut rng).is_some(),
            2 => {
                let h = hole_tail(&dir, &mut rng).is_some();
                holes += usize::from(h);
                h
            }
            _ => false,
        };
        let cut = inspect_after_crash(&dir);
        assert!(
            cut || !torn,
            "torn bytes written past the end were not recognised as a torn tail"
        );
        if cut {
            torn_tails += 1;
        }
        let (end, units) = verify(&dir, &all);
        assert!(
            end >= last_end,
            "recovered end went backwards: {end} < {last_end}"
        );
        assert!(
            units >= all.len(),
            "{units} CQ units for {} acks",
            all.len()
        );
        last_end = end;
    }
    eprintln!(
        "crash test: {kills} kills, {} acknowledged records in {runs_with_acks} runs, {torn_tails} torn tails cut ({holes} after an unwritten block), CommitLog end {last_end}, {:?}",
        all.len(),
        started.elapsed()
    );
    assert!(kills >= MIN_KILLS);
    assert!(torn_tails >= 3, "only {torn_tails} torn tails exercised");
    assert!(
        holes >= 2,
        "only {holes} holes before in-flight records exercised"
    );
    assert!(
        runs_with_acks >= kills / 2,
        "only {runs_with_acks} of {kills} runs acknowledged anything"
    );
    assert!(
        last_end > SEGMENT_BYTES,
        "data spans several segments ({last_end} bytes)"
    );
}
