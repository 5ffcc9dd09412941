//! IndexFile tests: key hash, names, chains and collisions, time range and limit, rolling,
//! flush and reload, truncation, deletion.

use std::cell::RefCell;

use proptest::prelude::*;
use ramjet_core::record::properties::PropertiesBuilder;
use ramjet_core::record::{properties, sysflag};

use super::*;

fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("glommio executor starts")
        .run(fut)
}

/// Java String.hashCode of `s`, computed independently of the code under test.
fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(u));
    }
    h
}

const T0: i64 = 1_700_000_000_000;

fn svc(slots: u32, entries: u32) -> IndexService {
    IndexService::new("/nonexistent/index".into(), slots, entries).unwrap()
}

#[test]
fn key_hash_is_abs_java_hash_of_topic_hash_key() {
    assert_eq!(
        key_hash("TopicTest", b"OrderID188"),
        java_hash("TopicTest#OrderID188").abs()
    );
    assert_eq!(key_hash("T", "中文".as_bytes()), java_hash("T#中文").abs());
    // Math.abs(Integer.MIN_VALUE) is negative; RocketMQ then uses 0.
    assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    assert_eq!(i32::MIN.checked_abs().unwrap_or(0), 0);
}

#[test]
fn file_names_are_utc_timestamps() {
    assert_eq!(file_name(0), "19700101000000000");
    assert_eq!(file_name(T0), "20231114221320000");
    assert_eq!(file_name(951_782_400_123), "20000229000000123");
    assert_eq!(parse_file_name("20231114221320000"), Some(T0));
    assert_eq!(parse_file_name("2023111422132000"), None);
    assert_eq!(parse_file_name("20231314221320000"), None);
}

#[test]
fn chains_collisions_newest_first_and_limit() {
    // One slot: every key shares a chain.
    let mut s = svc(1, 100);
    for i in 0..10u64 {
        let key: &[u8] = if i % 2 == 0 { b"even" } else { b"odd" };
        s.put_key("T", key, 100 * i, T0 + i as i64 * 1000).unwrap();
    }
    assert_eq!(
        s.query("T", "even", 100, 0, i64::MAX).unwrap(),
        vec![800, 600, 400, 200, 0]
    );
    assert_eq!(
        s.query("T", "odd", 100, 0, i64::MAX).unwrap(),
        vec![900, 700, 500, 300, 100]
    );
    assert_eq!(s.query("T", "odd", 2, 0, i64::MAX).unwrap(), vec![900, 700]);
    assert_eq!(
        s.query("T", "odd", 0, 0, i64::MAX).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        s.query("U", "odd", 10, 0, i64::MAX).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        s.query("T", "none", 10, 0, i64::MAX).unwrap(),
        Vec::<u64>::new()
    );
    // Time range, second precision: records 3..=6 are at T0+3s..T0+6s.
    assert_eq!(
        s.query("T", "odd", 10, T0 + 3000, T0 + 6000).unwrap(),
        vec![500, 300]
    );
    assert_eq!(
        s.query("T", "even", 10, T0 + 3000, T0 + 6000).unwrap(),
        vec![600, 400]
    );
    assert_eq!(
        s.query("T", "even", 10, T0 + 6000, T0 + 3000).unwrap(),
        Vec::<u64>::new()
    );
    // Equal Java hashes ("Aa" and "BB") cannot be told apart: the caller re-checks the key.
    assert_eq!(key_hash("T", b"Aa"), key_hash("T", b"BB"));
    let mut c = svc(7, 100);
    c.put_key("T", b"Aa", 1, T0).unwrap();
    c.put_key("T", b"BB", 2, T0).unwrap();
    assert_eq!(c.query("T", "Aa", 10, 0, i64::MAX).unwrap(), vec![2, 1]);
    let f = &c.files()[0];
    assert_eq!(f.header().index_count, 3);
    assert_eq!(f.header().hash_slot_count, 2);
    assert_eq!(f.header().begin_phy_offset, 1);
    assert_eq!(f.header().end_phy_offset, 2);
}

#[test]
fn rolls_when_full_and_queries_across_files() {
    // 4 entry numbers: 3 usable entries per file.
    let mut s = svc(3, 4);
    for i in 0..10u64 {
        s.put_key("T", b"k", 10 * i, T0 + 1000 * i as i64).unwrap();
    }
    assert_eq!(s.files().len(), 4);
    assert!(s.files().windows(2).all(|w| w[0].name_ms < w[1].name_ms));
    assert_eq!(s.files()[0].name_ms, T0);
    assert_eq!(
        s.query("T", "k", 100, 0, i64::MAX).unwrap(),
        (0..10).rev().map(|i| 10 * i).collect::<Vec<u64>>()
    );
    assert_eq!(
        s.query("T", "k", 4, 0, i64::MAX).unwrap(),
        vec![90, 80, 70, 60]
    );
    assert_eq!(
        s.query("T", "k", 100, T0 + 2000, T0 + 4000).unwrap(),
        vec![40, 30, 20]
    );
}

fn props(uniq: &str, keys: &str) -> Vec<u8> {
    let mut b = PropertiesBuilder::new();
    if !uniq.is_empty() {
        b.push_str(properties::UNIQ_KEY, uniq).unwrap();
    }
    if !keys.is_empty() {
        b.push_str(properties::KEYS, keys).unwrap();
    }
    b.push_str(properties::TAGS, "tag").unwrap();
    b.into_bytes()
}

#[test]
fn index_message_indexes_uniq_key_and_keys() {
    let mut s = svc(11, 100);
    assert_eq!(
        s.index_message("T", 0, 100, 50, T0, &props("U1", "a b  c"))
            .unwrap(),
        4
    );
    // Re-dispatch of the same record and older ones is ignored.
    assert_eq!(
        s.index_message("T", 0, 100, 50, T0, &props("U1", "a b  c"))
            .unwrap(),
        0
    );
    assert_eq!(
        s.index_message("T", 0, 50, 50, T0, &props("U0", ""))
            .unwrap(),
        0
    );
    // Rolled back: skipped; no keys: nothing, but the dispatched point moves.
    let rollback = sysflag::TRANSACTION_ROLLBACK_TYPE;
    assert_eq!(
        s.index_message("T", rollback, 150, 50, T0, &props("U2", "a"))
            .unwrap(),
        0
    );
    assert_eq!(
        s.index_message("T", 0, 200, 50, T0 + 1000, &props("", ""))
            .unwrap(),
        0
    );
    assert_eq!(s.dispatched_offset(), 250);
    assert_eq!(
        s.index_message(
            "T",
            sysflag::TRANSACTION_COMMIT_TYPE,
            250,
            50,
            T0 + 1000,
            &props("U3", "a")
        )
        .unwrap(),
        2
    );
    assert_eq!(s.query("T", "a", 10, 0, i64::MAX).unwrap(), vec![250, 100]);
    assert_eq!(s.query("T", "U1", 10, 0, i64::MAX).unwrap(), vec![100]);
    assert_eq!(s.query("T", "c", 10, 0, i64::MAX).unwrap(), vec![100]);
    assert_eq!(
        s.query("T", "U2", 10, 0, i64::MAX).unwrap(),
        Vec::<u64>::new()
    );
}

#[test]
fn truncate_restores_chains() {
    let mut s = svc(1, 100);
    for i in 0..6u64 {
        s.put_key(
            "T",
            if i < 3 { b"x" } else { b"y" },
            100 * i,
            T0 + i as i64 * 1000,
        )
        .unwrap();
    }
    s.truncate(250); // keeps records at 0, 100, 200
    assert_eq!(
        s.query("T", "x", 10, 0, i64::MAX).unwrap(),
        vec![200, 100, 0]
    );
    assert_eq!(
        s.query("T", "y", 10, 0, i64::MAX).unwrap(),
        Vec::<u64>::new()
    );
    let h = s.files()[0].header();
    assert_eq!(
        (h.index_count, h.end_phy_offset, h.end_timestamp),
        (4, 200, T0 + 2000)
    );
    s.put_key("T", b"y", 300, T0 + 3000).unwrap();
    assert_eq!(s.query("T", "y", 10, 0, i64::MAX).unwrap(), vec![300]);
    assert_eq!(
        s.query("T", "x", 10, 0, i64::MAX).unwrap(),
        vec![200, 100, 0]
    );
}

#[test]
fn flush_reload_truncate_and_delete_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let idir = dir.path().join("index");
    let s = RefCell::new(IndexService::new(idir.clone(), 5, 4).unwrap());
    for i in 0..7u64 {
        let key = format!("k{}", i % 3);
        let added = s
            .borrow_mut()
            .index_message("T", 0, 100 * i, 1, T0 + 1000 * i as i64, &props("", &key))
            .unwrap();
        assert_eq!(added, 1);
    }
    assert_eq!(s.borrow().files().len(), 3);
    // Each flush seals at most one file before writing newer ones.
    let mut flushes = 0;
    while s.borrow().is_dirty() {
        let st = run(flush(&s, u64::MAX, 1)).unwrap();
        flushes += 1;
        if flushes == 1 {
            // File 0 sealed; files 1 and 2 wait, so the durable point is file 1's first record.
            assert_eq!((st.sealed, st.entries, st.durable_offset), (1, 3, 300));
        }
        assert!(flushes < 10, "flush does not converge");
    }
    assert_eq!(flushes, 3);
    assert_eq!(s.borrow().durable_offset(), 601);
    let names: Vec<String> = s
        .borrow()
        .files()
        .iter()
        .map(|f| file_name(f.name_ms))
        .collect();
    assert_eq!(names[0], "20231114221320000");
    // A sealed file on disk: full size, header and the slot of its newest entry.
    let bytes = std::fs::read(idir.join(&names[0])).unwrap();
    assert_eq!(bytes.len() as u64, layout::file_len(5, 4));
    assert_eq!(&bytes[0..8], &T0.to_be_bytes());
    assert_eq!(&bytes[36..40], &4i32.to_be_bytes());
    let slot = (key_hash("T", b"k2") as u32 % 5) as usize;
    assert_eq!(&bytes[40 + 4 * slot..44 + 4 * slot], &3i32.to_be_bytes());
    let e3 = layout::entry_pos(5, 3) as usize;
    assert_eq!(&bytes[e3..e3 + 4], &key_hash("T", b"k2").to_be_bytes());
    assert_eq!(&bytes[e3 + 4..e3 + 12], &200i64.to_be_bytes());
    assert_eq!(&bytes[e3 + 12..e3 + 16], &2i32.to_be_bytes());
    let all = |svc: &IndexService| -> Vec<Vec<u64>> {
        ["k0", "k1", "k2"]
            .iter()
            .map(|k| svc.query("T", k, 100, 0, i64::MAX).unwrap())
            .collect()
    };
    let before = all(&s.borrow());
    assert_eq!(before[0], vec![600, 300, 0]);
    let loaded = IndexService::load(idir.clone(), 5, 4).unwrap();
    assert_eq!(loaded.files().len(), 3);
    assert_eq!(all(&loaded), before);
    assert_eq!(loaded.files()[2].header(), s.borrow().files()[2].header());

    // Reloaded service keeps indexing into its newest file, then truncation and retention.
    let s = RefCell::new(loaded);
    s.borrow_mut().put_key("T", b"k1", 700, T0 + 7000).unwrap();
    s.borrow_mut().put_key("T", b"k2", 800, T0 + 8000).unwrap();
    assert_eq!(
        s.borrow().query("T", "k1", 10, 0, i64::MAX).unwrap(),
        vec![700, 400, 100]
    );
    s.borrow_mut().truncate(800);
    assert_eq!(
        s.borrow().query("T", "k2", 10, 0, i64::MAX).unwrap(),
        vec![500, 200]
    );
    assert_eq!(s.borrow_mut().delete_below(400), 1);
    while s.borrow().is_dirty() {
        run(flush(&s, u64::MAX, 1)).unwrap();
    }
    assert!(!idir.join(&names[0]).exists());
    let loaded = IndexService::load(idir, 5, 4).unwrap();
    assert_eq!(loaded.files().len(), 2);
    assert_eq!(
        loaded.query("T", "k1", 10, 0, i64::MAX).unwrap(),
        vec![700, 400]
    );
    assert_eq!(loaded.query("T", "k2", 10, 0, i64::MAX).unwrap(), vec![500]);
}

#[test]
fn flush_bound_keeps_later_entries_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let idir = dir.path().join("index");
    let s = RefCell::new(IndexService::new(idir.clone(), 3, 100).unwrap());
    for i in 0..5u64 {
        s.borrow_mut()
            .index_message("T", 0, 100 * i, 100, T0 + 1000 * i as i64, &props("", "k"))
            .unwrap();
    }
    let st = run(flush(&s, 300, 1)).unwrap();
    assert_eq!(st.entries, 3);
    assert_eq!(st.durable_offset, 300);
    let loaded = IndexService::load(idir.clone(), 3, 100).unwrap();
    assert_eq!(
        loaded.query("T", "k", 10, 0, i64::MAX).unwrap(),
        vec![200, 100, 0]
    );
    let st = run(flush(&s, u64::MAX, 1)).unwrap();
    assert_eq!(st.entries, 2);
    assert_eq!(st.durable_offset, 500);
    let loaded = IndexService::load(idir, 3, 100).unwrap();
    assert_eq!(
        loaded.query("T", "k", 10, 0, i64::MAX).unwrap(),
        vec![400, 300, 200, 100, 0]
    );
}

#[test]
fn load_stops_at_a_torn_tail_of_the_newest_file() {
    let dir = tempfile::tempdir().unwrap();
    let idir = dir.path().join("index");
    let s = RefCell::new(IndexService::new(idir.clone(), 3, 100).unwrap());
    for i in 0..4u64 {
        s.borrow_mut()
            .index_message(
                "T",
                0,
                100 * (i + 1),
                100,
                T0 + 1000 * i as i64,
                &props("", "k"),
            )
            .unwrap();
    }
    run(flush(&s, u64::MAX, 1)).unwrap();
    // Simulate a crash that persisted the header (count 7) but zeros for entries 5 and 6.
    let path = idir.join(file_name(T0));
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::os::unix::fs::FileExt as _;
    f.write_all_at(&7i32.to_be_bytes(), 36).unwrap();
    f.write_all_at(&[0u8; 40], layout::entry_pos(3, 5)).unwrap();
    drop(f);
    let loaded = IndexService::load(idir, 3, 100).unwrap();
    assert_eq!(loaded.files()[0].header().index_count, 5);
    assert_eq!(loaded.files()[0].header().end_phy_offset, 400);
    assert_eq!(
        loaded.query("T", "k", 10, 0, i64::MAX).unwrap(),
        vec![400, 300, 200, 100]
    );
}

#[test]
fn bad_config_is_refused() {
    assert!(matches!(
        IndexService::new("x".into(), 0, 10),
        Err(IndexError::Config {
            field: "index_slots",
            ..
        })
    ));
    assert!(matches!(
        IndexService::new("x".into(), 1, 1),
        Err(IndexError::Config {
            field: "index_entries",
            ..
        })
    ));
}

proptest! {
    #[test]
    fn key_hash_matches_java(topic in "[A-Za-z0-9_%-]{1,20}", key in "\\PC{0,30}") {
        let h = java_hash(&format!("{topic}#{key}"));
        prop_assert_eq!(key_hash(&topic, key.as_bytes()), h.checked_abs().unwrap_or(0));
    }

    #[test]
    fn file_name_round_trips(ms in 0i64..253_402_300_799_999) {
        let n = file_name(ms);
        prop_assert_eq!(n.len(), 17);
        prop_assert_eq!(parse_file_name(&n), Some(ms));
    }

    #[test]
    fn query_matches_a_model(ops in proptest::collection::vec((0u8..4, 0i64..20), 1..60), slots in 1u32..5, qmax in 1usize..8, b in 0i64..20, len in 0i64..20) {
        let mut s = svc(slots, 9);
        let mut model: Vec<(u8, u64, i64)> = Vec::new();
        let mut t = T0;
        for (i, (k, dt)) in ops.iter().enumerate() {
            t += dt * 500;
            let phy = i as u64 * 10;
            s.put_key("T", &[b'a' + k], phy, t).unwrap();
            model.push((*k, phy, t));
        }
        let (begin, end) = (T0 + b * 1000, T0 + (b + len) * 1000);
        for k in 0u8..4 {
            let key = char::from(b'a' + k).to_string();
            let got = s.query("T", &key, usize::MAX, begin, end).unwrap();
            // Each file's entries carry whole seconds from its begin; an entry may be reported
            // up to 999 ms earlier than stored, so compare on that coarse time.
            let files = s.files();
            let mut want = Vec::new();
            for f in files.iter().rev() {
                if !f.time_matched(begin, end) {
                    if f.header().begin_timestamp < begin { break; }
                    continue;
                }
                let (fb, fe) = (f.header().begin_phy_offset as u64, f.header().end_phy_offset as u64);
                let mut in_file: Vec<u64> = model.iter()
                    .filter(|(mk, p, mt)| *mk == k && *p >= fb && *p <= fe && {
                        let coarse = f.header().begin_timestamp + (mt - f.header().begin_timestamp) / 1000 * 1000;
                        coarse >= begin && coarse <= end
                    })
                    .map(|(_, p, _)| *p)
                    .collect();
                in_file.reverse();
                want.extend(in_file);
                if f.header().begin_timestamp < begin { break; }
            }
            prop_assert_eq!(&got, &want);
            let limited = s.query("T", &key, qmax, begin, end).unwrap();
            prop_assert_eq!(&limited[..], &want[..want.len().min(qmax)]);
        }
    }
}
