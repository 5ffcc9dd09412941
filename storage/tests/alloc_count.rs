//! The append hot path allocates nothing per message: `put_message` and `put_batch` encode
//! straight into the write buffer and dispatch into preallocated ConsumeQueue buffers. Counted
//! with a global allocator that counts only on the thread under test, only while enabled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ramjet_core::record::{properties, tag_hash, MessageToStore};
use ramjet_storage::{io, FlushMode, Store, StoreConfig};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed) - before, out)
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad test address {s}: {e}"))
}

#[test]
fn put_message_and_put_batch_do_not_allocate_per_message() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let cfg = StoreConfig {
        segment_size_bytes: 64 * 1024 * 1024,
        write_chunk_bytes: 4 * 1024 * 1024,
        max_message_bytes: 1024 * 1024,
        max_batch_bytes: 2 * 1024 * 1024,
        max_unflushed_bytes: 32 * 1024 * 1024,
        flush: FlushMode::Async,
        flush_interval_ms: 3_600_000,
        flush_bytes: u64::MAX,
        ..StoreConfig::new(dir.path())
    };
    let body = vec![0xA5u8; 200];
    // Tag, unique id and two keys: every message also gets three IndexFile entries.
    let props = properties::encode([
        (properties::TAGS, "TagA"),
        (properties::UNIQ_KEY, "0A0000010FA0000000000000000001F4"),
        (properties::KEYS, "order-1 user-7"),
    ])
    .unwrap_or_else(|e| panic!("properties: {e}"));
    let msg = MessageToStore {
        topic: "AllocTopic",
        queue_id: 3,
        flag: 0,
        body: &body,
        properties: &props,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: addr("10.0.0.1:4000"),
        store_host: addr("10.0.0.2:10911"),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: tag_hash("TagA"),
    };
    let batch = [msg; 16];
    io::block_on(async {
        let store = Store::open(cfg)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        // Warm-up: creates the queue, and one flush cycle sizes the write chunks for this load
        // (chunks are allocated per flush or when one fills, never per message).
        for _ in 0..2000 {
            let _ = store
                .put_message(&msg)
                .unwrap_or_else(|e| panic!("warm-up put: {e}"));
        }
        store.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
        let _ = store
            .put_message(&msg)
            .unwrap_or_else(|e| panic!("put: {e}"));

        const MESSAGES: usize = 1000;
        let (allocs, last) = allocations_in(|| {
            let mut last = None;
            for _ in 0..MESSAGES {
                last = Some(store.put_message(&msg));
            }
            last
        });
        let last = last
            .unwrap_or_else(|| panic!("no put"))
            .unwrap_or_else(|e| panic!("put: {e}"));
        assert_eq!(
            allocs, 0,
            "{allocs} allocations for {MESSAGES} put_message calls"
        );
        assert_eq!(last.queue_offset, 2000 + MESSAGES as i64);

        let (allocs, res) = allocations_in(|| {
            let mut last = None;
            for _ in 0..20 {
                last = Some(store.put_batch(&batch));
            }
            last
        });
        let res = res
            .unwrap_or_else(|| panic!("no batch"))
            .unwrap_or_else(|e| panic!("put_batch: {e}"));
        assert_eq!(
            allocs, 0,
            "{allocs} allocations for 20 put_batch calls of 16"
        );
        assert_eq!(res.msg_count, 16);
        assert_eq!(
            store.max_offset("AllocTopic", 3),
            2001 + MESSAGES as i64 + 20 * 16
        );
        store
            .shutdown()
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
    })
    .unwrap_or_else(|e| panic!("executor: {e}"));
}
