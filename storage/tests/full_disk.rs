//! A full disk: appends are refused cleanly (DiskFull / ENOSPC, never a panic or a corrupt
//! store) and everything acknowledged before is readable after a reopen.
//!
//! `real_full_file_system_refuses_cleanly` mounts an 8 MiB tmpfs (we run as root); when the
//! mount is not allowed it falls back to injecting ENOSPC into CommitLog writes and says so.
//! `disk_ratio_guard_refuses_appends_above_the_refuse_ratio` drives the refuse ratio through the
//! store's disk-usage probe.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ramjet_core::record::{MessageToStore, RecordView};
use ramjet_storage::{FlushMode, Preallocate, Store, StoreConfig, StoreError};

const TOPIC: &str = "FullTopic";
const TMPFS_BYTES: &str = "8m";

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_size_bytes = 1024 * 1024;
    cfg.flush = FlushMode::Sync;
    cfg.max_message_bytes = 16 * 1024;
    cfg.max_batch_bytes = 32 * 1024;
    cfg.max_unflushed_bytes = 1024 * 1024;
    cfg.tail_cache_bytes = 256 * 1024;
    cfg.cq_units_per_file = 1000;
    cfg.index_slots = 1024;
    cfg.index_entries = 4096;
    cfg.disk_check_interval_ms = 5;
    cfg.checkpoint_interval_ms = 20;
    cfg
}

fn msg<'a>(body: &'a [u8], queue_id: i32) -> MessageToStore<'a> {
    MessageToStore {
        topic: TOPIC,
        queue_id,
        flag: 0,
        body,
        properties: b"",
        sys_flag: 0,
        born_timestamp: 1,
        born_host: common::host(50000),
        store_host: common::host(10911),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: 0,
    }
}

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // Right after the store closes, the kernel can still hold a file of the mount for a
        // moment (an io_uring worker finishing its request): a plain umount then fails with
        // "target is busy" and every run left an 8 MiB tmpfs mounted. Retry briefly, then
        // detach it lazily (it goes away once the last reference does).
        for _ in 0..20 {
            if Command::new("umount")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn try_mount_tmpfs(at: &Path) -> Option<Mount> {
    std::fs::create_dir_all(at).ok()?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
        .arg(at)
        .status()
        .ok()?;
    status.success().then(|| Mount(at.to_path_buf()))
}

/// (physical offset, queue offset, seed) of acknowledged appends.
type Acked = Vec<(u64, i64, u64)>;

/// Appends 3000-byte messages with wait_durable until the store refuses; returns what was
/// acknowledged and the refusal. `inject` switches ENOSPC injection on after `after` acks.
async fn fill_until_refused(store: &Store, inject_after: Option<usize>) -> (Acked, StoreError) {
    let mut acked = Vec::new();
    for seed in 0..100_000u64 {
        if inject_after == Some(acked.len()) {
            store.inject_write_fault(Some(libc::ENOSPC));
        }
        let body = common::body_for(seed, 3000);
        let put = match store.put_message(&msg(&body, (seed % 2) as i32)) {
            Ok(p) => p,
            Err(e) => return (acked, e),
        };
        match store.wait_durable(put.end_physical_offset).await {
            Ok(()) => acked.push((put.physical_offset, put.queue_offset, seed)),
            Err(e) => return (acked, e),
        }
    }
    panic!("the store never refused an append after 100000 x 3000 bytes");
}

async fn check_acked(store: &Store, acked: &Acked) {
    for &(phys, qo, seed) in acked {
        let rec = store
            .read_record(phys)
            .await
            .unwrap_or_else(|e| panic!("acknowledged record at {phys} unreadable: {e}"));
        let v = RecordView::parse_verified(&rec).expect("valid record");
        assert_eq!(v.queue_offset(), qo);
        assert_eq!(v.body(), &common::body_for(seed, 3000)[..]);
    }
    for q in 0..2 {
        let expected = acked.iter().filter(|a| a.2 % 2 == q as u64).count() as i64;
        assert!(
            store.max_offset(TOPIC, q) >= expected,
            "queue {q} lost units"
        );
    }
}

#[test]
fn real_full_file_system_refuses_cleanly() {
    full_file_system_refuses_cleanly(Preallocate::Zero, false);
}

/// The same with pipelined group commit (`sync_pipeline`): the fdatasync of one group may be
/// in flight when the next group's write hits the full disk.
#[test]
fn real_full_file_system_refuses_cleanly_pipelined() {
    full_file_system_refuses_cleanly(Preallocate::Zero, true);
}

/// The same with `fallocate`d segments. There the file system can also run out of room inside
/// a chunk write, which the kernel reports as a short O_DIRECT write rather than an error; the
/// store must still call it a full disk (`SegmentFile::write_chunk` writes the rest on its own
/// to get the ENOSPC). Whether this run hits that path or the disk-usage guard first depends
/// on timing; both must end in a clean disk-full refusal.
#[test]
fn real_full_file_system_refuses_cleanly_with_fallocated_segments() {
    full_file_system_refuses_cleanly(Preallocate::Fallocate, false);
}

fn full_file_system_refuses_cleanly(prealloc: Preallocate, sync_pipeline: bool) {
    let config = move |dir: &Path| {
        let mut c = config(dir);
        c.preallocate = prealloc;
        c.sync_pipeline = sync_pipeline;
        c
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = tmp.path().join("mnt");
    let mount = try_mount_tmpfs(&mnt);
    let mode = if mount.is_some() {
        "tmpfs of 8 MiB (real ENOSPC / disk ratio)"
    } else {
        "mount refused: injected ENOSPC on CommitLog writes"
    };
    eprintln!("full-disk test mode: {mode}");
    let dir = if mount.is_some() {
        mnt.join("store")
    } else {
        tmp.path().join("store")
    };
    let dir2 = dir.clone();
    let real = mount.is_some();
    let acked = ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir2)).await.expect("open");
        let (acked, err) = fill_until_refused(&store, if real { None } else { Some(200) }).await;
        eprintln!("refused after {} acknowledged appends: {err}", acked.len());
        assert!(
            err.is_disk_full(),
            "refusal must say the disk is full, got: {err}"
        );
        assert!(
            acked.len() >= 100,
            "only {} appends before the refusal",
            acked.len()
        );
        // Further appends keep being refused the same clean way.
        let body = [7u8; 100];
        for _ in 0..3 {
            let r = store.put_message(&msg(&body, 0));
            if let Ok(p) = r {
                let w = store.wait_durable(p.end_physical_offset).await;
                assert!(w.as_ref().is_err_and(|e| e.is_disk_full()), "{w:?}");
            } else if let Err(e) = r {
                assert!(e.is_disk_full(), "{e}");
            }
        }
        check_acked(&store, &acked).await;
        let _ = store.shutdown().await; // may report the unflushed tail; that is the point
        acked
    })
    .expect("executor");
    // Reopen on the same (still full) file system: recovery, then every ack readable.
    let dir3 = dir.clone();
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir3))
            .await
            .expect("reopen on a full disk");
        check_acked(&store, &acked).await;
        let _ = store.shutdown().await;
    })
    .expect("executor");
    drop(mount);
}

#[test]
fn disk_ratio_guard_refuses_appends_above_the_refuse_ratio() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("store");
    let dir2 = dir.clone();
    let acked = ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir2)).await.expect("open");
        let ratio = std::rc::Rc::new(std::cell::Cell::new(0.50f64));
        let r2 = ratio.clone();
        store.set_disk_usage_probe(Box::new(move || Some(r2.get())));
        let mut acked = Vec::new();
        for seed in 0..50u64 {
            let body = common::body_for(seed, 3000);
            let put = store
                .put_message(&msg(&body, (seed % 2) as i32))
                .expect("put below the ratio");
            store
                .wait_durable(put.end_physical_offset)
                .await
                .expect("durable");
            acked.push((put.physical_offset, put.queue_offset, seed));
        }
        let end_before = store.stats().commitlog_end_offset;
        ratio.set(0.95);
        assert!((store.refresh_disk_usage() - 0.95).abs() < 1e-9);
        let body = common::body_for(999, 3000);
        let err = store
            .put_message(&msg(&body, 0))
            .expect_err("refused above 90 %");
        match &err {
            StoreError::DiskFull {
                used_pct,
                refuse_pct,
                ..
            } => {
                assert!(
                    (used_pct - 95.0).abs() < 1e-6 && (refuse_pct - 90.0).abs() < 1e-6,
                    "{err}"
                );
            }
            other => panic!("expected DiskFull, got {other}"),
        }
        assert!(err.to_string().contains("95.0%"), "{err}");
        assert_eq!(
            store.stats().commitlog_end_offset,
            end_before,
            "a refused append writes nothing"
        );
        assert!(store.stats().puts_refused_disk_full >= 1);
        // Back under the ratio (retention freed space): appends resume.
        ratio.set(0.80);
        store.refresh_disk_usage();
        let put = store.put_message(&msg(&body, 0)).expect("accepted again");
        store
            .wait_durable(put.end_physical_offset)
            .await
            .expect("durable");
        acked.push((put.physical_offset, put.queue_offset, 999));
        store.shutdown().await.expect("shutdown");
        acked
    })
    .expect("executor");
    ramjet_storage::io::block_on(async move {
        let store = Store::open(config(&dir)).await.expect("reopen");
        for &(phys, qo, seed) in &acked {
            let rec = store.read_record(phys).await.expect("readable");
            let v = RecordView::parse_verified(&rec).expect("valid");
            assert_eq!(v.queue_offset(), qo);
            assert_eq!(v.body(), &common::body_for(seed, 3000)[..]);
        }
        store.shutdown().await.expect("shutdown");
        // Give the executor's timers a moment to wind down before it is dropped.
        ramjet_storage::io::sleep(Duration::from_millis(1)).await;
    })
    .expect("executor");
}
