//! Retention through the Store: expired CommitLog segments go together with their ConsumeQueue
//! files and IndexFiles, queue minimum offsets move up, and the store reopens from the new
//! first segment; under forced cleaning the oldest segments go even inside retention, never the
//! active one.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ramjet_core::record::{MessageToStore, RecordView};
use ramjet_storage::recovery::list_segments;
use ramjet_storage::{FlushMode, GetStatus, Store, StoreConfig};

const TOPIC: &str = "RetainTopic";
const SEG: u64 = 128 * 1024;
const MESSAGES: u64 = 1200;

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_size_bytes = SEG;
    cfg.flush = FlushMode::Async;
    cfg.flush_interval_ms = 10;
    cfg.max_message_bytes = 16 * 1024;
    cfg.max_batch_bytes = 32 * 1024;
    cfg.max_unflushed_bytes = 1024 * 1024;
    cfg.tail_cache_bytes = 64 * 1024;
    cfg.cq_units_per_file = 100;
    cfg.index_slots = 64;
    cfg.index_entries = 200;
    // Sweeps only when the test asks.
    cfg.retention_check_interval_ms = 3_600_000;
    cfg
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Writes MESSAGES records (500-byte bodies, KEYS k<i>, two queues), then shuts down so that
/// every ConsumeQueue and IndexFile is on disk. Returns each message's physical offset.
fn populate(dir: &Path) -> Vec<u64> {
    let dir = dir.to_path_buf();
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir)).await.expect("open");
        let mut offsets = Vec::new();
        for i in 0..MESSAGES {
            let body = common::body_for(i, 500);
            let props = format!("KEYS\u{1}k{i}\u{2}");
            let msg = MessageToStore {
                topic: TOPIC,
                queue_id: (i % 2) as i32,
                flag: 0,
                body: &body,
                properties: props.as_bytes(),
                sys_flag: 0,
                born_timestamp: 1,
                born_host: common::host(50000),
                store_host: common::host(10911),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                tags_code: 0,
            };
            let put = loop {
                match store.put_message(&msg) {
                    Ok(p) => break p,
                    Err(ramjet_storage::StoreError::Busy { .. }) => {
                        store.wait_writable(msg.encoded_len()).await
                    }
                    Err(e) => panic!("put: {e}"),
                }
            };
            offsets.push(put.physical_offset);
        }
        store.shutdown().await.expect("shutdown");
        offsets
    })
    .expect("executor")
}

fn age_segments_below(commitlog: &Path, below: u64, hours: u64) {
    let old = SystemTime::now() - Duration::from_secs(hours * 3600);
    for s in list_segments(commitlog).expect("list") {
        if s.base_offset < below {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&s.path)
                .expect("open");
            f.set_modified(old).expect("set mtime");
        }
    }
}

#[test]
fn expired_segments_go_with_their_consumequeue_and_index_parts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let offsets = populate(&dir);
    let end = offsets.last().copied().expect("offsets") + 600;
    assert!(end > 5 * SEG, "data spans 6+ segments ({end})");
    let commitlog = dir.join("commitlog");
    let cq_before = files_under(&dir.join("consumequeue")).len();
    let index_before = files_under(&dir.join("index")).len();
    assert!(cq_before >= 12, "{cq_before} CQ files");
    assert!(index_before >= 1, "IndexFiles on disk");
    // Three oldest segments last written 100 h ago (retention 72 h); the rest are fresh.
    age_segments_below(&commitlog, 3 * SEG, 100);

    let dir2 = dir.clone();
    let offsets2 = offsets.clone();
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir2)).await.expect("open");
        let report = store.retention_sweep().await.expect("sweep");
        assert_eq!(report.deleted_bases, vec![0, SEG, 2 * SEG]);
        assert_eq!(report.new_min_offset, Some(3 * SEG));
        assert!(report.freed_bytes > 0);
        assert_eq!(store.stats().commitlog_min_offset, 3 * SEG);
        let left: Vec<u64> = list_segments(&dir2.join("commitlog"))
            .expect("list")
            .iter()
            .map(|s| s.base_offset)
            .collect();
        assert_eq!(left.first(), Some(&(3 * SEG)), "{left:?}");
        // Queues start at the first record still stored.
        for q in 0..2 {
            let min = store.min_offset(TOPIC, q);
            assert!(min > 0, "queue {q} min offset moved up");
            let r = store.get_messages(TOPIC, q, 0, 1, 1 << 20, &|_| true);
            assert_eq!(r.status, GetStatus::OffsetTooSmall, "queue {q}");
            let r = store.get_messages(TOPIC, q, min, 1, 1 << 20, &|_| true);
            assert_eq!(r.status, GetStatus::Found);
            let bytes = match &r.chunks[0] {
                ramjet_storage::Chunk::Memory(s) => s.as_ref().to_vec(),
                ramjet_storage::Chunk::File { file, offset, len } => {
                    use std::os::unix::fs::FileExt;
                    let mut b = vec![0u8; *len as usize];
                    file.read_exact_at(&mut b, *offset).expect("read");
                    b
                }
            };
            let v = RecordView::parse_verified(&bytes).expect("valid");
            assert_eq!(v.queue_offset(), min);
            // The first kept unit is the first record of this queue at or past the new minimum.
            let first_kept = offsets2
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as u64) % 2 == q as u64)
                .map(|(_, &o)| o)
                .find(|&o| o >= 3 * SEG)
                .expect("kept");
            assert!(v.physical_offset() as u64 <= first_kept);
        }
        assert!(
            store.read_record(offsets2[0]).await.is_err(),
            "deleted data unreadable"
        );
        let last = *offsets2.last().expect("last");
        assert!(store.read_record(last).await.is_ok());
        store.shutdown().await.expect("shutdown");
    })
    .expect("executor");

    let cq_after = files_under(&dir.join("consumequeue")).len();
    let index_after = files_under(&dir.join("index")).len();
    assert!(
        cq_after < cq_before,
        "CQ files deleted: {cq_before} -> {cq_after}"
    );
    // IndexFiles go only when every entry is below the new minimum, and never the newest one.
    assert!(
        index_after <= index_before,
        "IndexFiles: {index_before} -> {index_after}"
    );

    // Reopen: recovery starts at the new first segment and the minimums persist.
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir)).await.expect("reopen");
        assert_eq!(store.stats().commitlog_min_offset, 3 * SEG);
        assert!(store.stats().commitlog_end_offset >= end);
        for q in 0..2 {
            assert!(store.min_offset(TOPIC, q) > 0);
            assert_eq!(store.max_offset(TOPIC, q), (MESSAGES / 2) as i64);
        }
        let hits = store.query_by_key(TOPIC, &format!("k{}", MESSAGES - 1), 10, 0, i64::MAX);
        assert_eq!(hits, vec![*offsets.last().expect("last")]);
        // Keys of deleted records lead nowhere below the new minimum.
        for k in [0, 1, 2] {
            let hits = store.query_by_key(TOPIC, &format!("k{k}"), 10, 0, i64::MAX);
            assert!(hits.iter().all(|&o| o >= 3 * SEG), "k{k} -> {hits:?}");
        }
        store.shutdown().await.expect("shutdown");
    })
    .expect("executor");
}

#[test]
fn forced_cleaning_deletes_unexpired_oldest_but_never_the_active_segment() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let offsets = populate(&dir);
    let last = *offsets.last().expect("last");
    let active_base = (last + 600) - (last + 600) % SEG;
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir)).await.expect("open");
        let end = store.stats().commitlog_end_offset;
        let active = end - end % SEG;
        assert!(active >= active_base - SEG);
        // Normal pressure, nothing expired: nothing goes.
        store.set_disk_usage_probe(Box::new(|| Some(0.50)));
        let r = store.retention_sweep().await.expect("sweep");
        assert!(r.deleted_bases.is_empty(), "{r:?}");
        // 88 % used: force-clean the oldest, up to 10 per sweep, never the active segment.
        store.set_disk_usage_probe(Box::new(|| Some(0.88)));
        let r = store.retention_sweep().await.expect("sweep");
        let expected: Vec<u64> = (0..active / SEG).map(|i| i * SEG).take(10).collect();
        assert_eq!(r.deleted_bases, expected);
        let left = list_segments(&dir.join("commitlog")).expect("list");
        assert!(
            left.iter().any(|s| s.base_offset == active),
            "active segment kept"
        );
        assert!(
            store.read_record(last).await.is_ok(),
            "newest record still readable"
        );
        store.shutdown().await.expect("shutdown");
    })
    .expect("executor");
}
