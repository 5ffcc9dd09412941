//! ConsumeQueue tests: appends and lookups across files, min/max, time search, truncation,
//! deletion, flush and reload.

use std::cell::RefCell;
use std::collections::HashMap;

use super::*;

fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .expect("glommio executor starts")
        .run(fut)
}

/// Record i of a test queue: 100 bytes at 1000 + 100 * i (a queue's records ascend).
fn phys(i: u64) -> u64 {
    1000 + 100 * i
}

fn fill(store: &mut ConsumeQueueStore, topic: &str, qid: i32, n: i64) {
    for i in 0..n {
        let out = store
            .put(topic, qid, i, phys(i as u64), 100, i * 7)
            .unwrap();
        assert_eq!(out, PutOutcome::Appended);
    }
}

#[test]
fn append_and_lookup_across_files() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    fill(&mut s, "T", 0, 10);
    let q = s.queue("T", 0).unwrap();
    assert_eq!(q.file_count(), 3);
    assert_eq!((q.min_offset(), q.max_offset()), (0, 10));
    assert_eq!(q.max_physical_offset(), phys(9) + 100);
    for i in 0..10 {
        assert_eq!(
            s.get("T", 0, i),
            Some(CqEntry {
                physical_offset: phys(i as u64),
                size: 100,
                tags_code: i * 7
            })
        );
    }
    assert_eq!(s.get("T", 0, 10), None);
    assert_eq!(s.get("T", 0, -1), None);
    assert_eq!(s.get("T", 1, 0), None);
    let offs: Vec<i64> = q.iter_from(3).map(|(o, _)| o).collect();
    assert_eq!(offs, (3..10).collect::<Vec<_>>());
    assert_eq!(s.max_offset("nope", 0), 0);
    assert_eq!(s.queues().collect::<Vec<_>>(), vec![("T", 0)]);
}

#[test]
fn duplicates_gaps_and_bad_input() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    fill(&mut s, "T", 0, 3);
    assert_eq!(
        s.put("T", 0, 1, phys(1), 100, 0).unwrap(),
        PutOutcome::Duplicate
    );
    assert!(matches!(
        s.put("T", 0, 5, phys(5), 100, 0),
        Err(CqError::Gap {
            queue_offset: 5,
            max_offset: 3,
            ..
        })
    ));
    assert!(matches!(
        s.put("T", 0, 3, phys(0), 100, 0),
        Err(CqError::PhysicalBackwards {
            queue_offset: 3,
            ..
        })
    ));
    assert!(matches!(
        s.put("../x", 0, 0, 0, 1, 0),
        Err(CqError::BadTopic { .. })
    ));
    assert!(matches!(
        s.put("T", -1, 0, 0, 1, 0),
        Err(CqError::Invalid {
            field: "queue id",
            ..
        })
    ));
    assert!(matches!(
        s.put("T", 0, 3, phys(3), 0, 0),
        Err(CqError::Invalid {
            field: "record size",
            ..
        })
    ));
    assert_eq!(s.max_offset("T", 0), 3);
}

#[test]
fn redispatch_that_disagrees_repairs_the_queue() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    fill(&mut s, "T", 0, 6);
    // Recovery finds offset 3 at another CommitLog position: units 3.. are replaced.
    assert_eq!(
        s.put("T", 0, 3, 5000, 100, 9).unwrap(),
        PutOutcome::Repaired
    );
    assert_eq!(s.max_offset("T", 0), 4);
    assert_eq!(s.get("T", 0, 3).unwrap().physical_offset, 5000);
    assert_eq!(s.get("T", 0, 2).unwrap().physical_offset, phys(2));
    assert_eq!(
        s.put("T", 0, 3, 5000, 100, 9).unwrap(),
        PutOutcome::Duplicate
    );
}

#[test]
fn queue_starting_mid_file_gets_fillers() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    assert_eq!(s.put("T", 2, 6, 500, 10, 1).unwrap(), PutOutcome::Appended);
    let q = s.queue("T", 2).unwrap();
    assert_eq!((q.min_offset(), q.max_offset()), (6, 7));
    assert_eq!(q.files[0].start_unit, 4);
    assert_eq!(q.files[0].units(), 3);
    assert_eq!(s.get("T", 2, 5), None);
    assert_eq!(s.get("T", 2, 6).unwrap().physical_offset, 500);
}

#[test]
fn time_search_lower_and_upper() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 3);
    fill(&mut s, "T", 0, 8);
    // Store times by record: 10, 20, 20, 20, 30, 40, 40, 50.
    let times: HashMap<u64, i64> = [10, 20, 20, 20, 30, 40, 40, 50]
        .iter()
        .enumerate()
        .map(|(i, t)| (phys(i as u64), *t))
        .collect();
    let mut calls = 0;
    let mut read = |p: u64, size: u32| {
        assert_eq!(size, 100);
        calls += 1;
        times.get(&p).copied()
    };
    let q = s.queue("T", 0).unwrap();
    assert_eq!(
        q.search_offset_by_timestamp(20, Boundary::Lower, &mut read),
        1
    );
    assert_eq!(
        q.search_offset_by_timestamp(20, Boundary::Upper, &mut read),
        3
    );
    assert_eq!(
        q.search_offset_by_timestamp(25, Boundary::Lower, &mut read),
        4
    );
    assert_eq!(
        q.search_offset_by_timestamp(25, Boundary::Upper, &mut read),
        3
    );
    assert_eq!(
        q.search_offset_by_timestamp(5, Boundary::Lower, &mut read),
        0
    );
    assert_eq!(
        q.search_offset_by_timestamp(5, Boundary::Upper, &mut read),
        0
    );
    assert_eq!(
        q.search_offset_by_timestamp(99, Boundary::Lower, &mut read),
        8
    );
    assert_eq!(
        q.search_offset_by_timestamp(99, Boundary::Upper, &mut read),
        7
    );
    assert_eq!(
        q.search_offset_by_timestamp(40, Boundary::Lower, &mut read),
        5
    );
    assert_eq!(
        q.search_offset_by_timestamp(40, Boundary::Upper, &mut read),
        6
    );
    // A binary search: a handful of reads per search, not one per unit.
    assert!(
        calls <= 10 * 4,
        "{calls} reads for 10 searches over 8 units"
    );
    // Records already gone (None) count as older.
    let mut gone = |p: u64, _| {
        if p < phys(4) {
            None
        } else {
            times.get(&p).copied()
        }
    };
    assert_eq!(
        q.search_offset_by_timestamp(20, Boundary::Lower, &mut gone),
        4
    );
    assert_eq!(
        s.search_offset_by_timestamp("none", 0, 20, Boundary::Lower, &mut gone),
        0
    );
}

#[test]
fn truncate_across_files_and_continue() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    fill(&mut s, "T", 0, 10);
    fill(&mut s, "U", 1, 2);
    // Keep records 0..=4 of T: record 4 ends at phys(5).
    s.truncate(phys(5));
    let q = s.queue("T", 0).unwrap();
    assert_eq!((q.min_offset(), q.max_offset()), (0, 5));
    assert_eq!(q.file_count(), 2);
    assert_eq!(q.max_physical_offset(), phys(5));
    assert_eq!(s.max_offset("U", 1), 2);
    // A record cut in the middle goes too.
    s.truncate(phys(4) + 50);
    assert_eq!(s.max_offset("T", 0), 4);
    assert_eq!(s.queue("T", 0).unwrap().file_count(), 1);
    assert_eq!(s.dispatched_offset(), phys(4) + 50);
    // Appends continue at the new max, in a new second file.
    assert_eq!(
        s.put("T", 0, 4, phys(4), 100, 0).unwrap(),
        PutOutcome::Appended
    );
    assert_eq!(s.queue("T", 0).unwrap().file_count(), 2);
    assert_eq!(s.get("T", 0, 4).unwrap().physical_offset, phys(4));
    // Truncating everything empties the queue but keeps its offsets.
    s.truncate(0);
    assert_eq!((s.min_offset("T", 0), s.max_offset("T", 0)), (0, 0));
    assert_eq!(s.queue("T", 0).unwrap().file_count(), 0);
    fill(&mut s, "T", 0, 1);
    assert_eq!(s.max_offset("T", 0), 1);
}

#[test]
fn delete_below_keeps_last_file_and_moves_min() {
    let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), 4);
    fill(&mut s, "T", 0, 10);
    // Records 0..6 are in deleted segments.
    assert_eq!(s.delete_below(phys(6)), 1);
    let q = s.queue("T", 0).unwrap();
    assert_eq!(q.file_count(), 2);
    assert_eq!((q.min_offset(), q.max_offset()), (6, 10));
    assert_eq!(s.get("T", 0, 5), None);
    assert_eq!(s.get("T", 0, 6).unwrap().physical_offset, phys(6));
    // Everything gone: the last file stays, min = max.
    assert_eq!(s.delete_below(u64::MAX), 1);
    let q = s.queue("T", 0).unwrap();
    assert_eq!(q.file_count(), 1);
    assert_eq!((q.min_offset(), q.max_offset()), (10, 10));
    fill_from(&mut s, 10, 12);
    assert_eq!(s.get("T", 0, 11).unwrap().physical_offset, phys(11));
}

fn fill_from(s: &mut ConsumeQueueStore, from: i64, to: i64) {
    for i in from..to {
        s.put("T", 0, i, phys(i as u64), 100, 0).unwrap();
    }
}

/// (topic, queue id, min offset, max offset, units).
type QueueDump = (String, i32, i64, i64, Vec<(i64, CqEntry)>);

fn all_units(s: &ConsumeQueueStore) -> Vec<QueueDump> {
    let mut v: Vec<_> = s
        .queues()
        .map(|(t, q)| {
            let cq = s.queue(t, q).unwrap();
            (
                t.to_owned(),
                q,
                cq.min_offset(),
                cq.max_offset(),
                cq.iter_from(0).collect(),
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    v
}

#[test]
fn flush_then_reload_equals_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("consumequeue");
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 4));
    fill(&mut store.borrow_mut(), "TopicA", 0, 9);
    fill(&mut store.borrow_mut(), "TopicA", 3, 2);
    store
        .borrow_mut()
        .put("TopicB", 1, 5, 50_000, 33, -5)
        .unwrap();
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    // TopicB's file starts at unit 4: one filler, then its unit.
    assert_eq!(stats.units, 9 + 2 + 2);
    let s = store.borrow();
    // Exact bytes of the first unit and file names/sizes.
    let f0 = std::fs::read(root.join("TopicA/0/00000000000000000000")).unwrap();
    assert_eq!(f0.len(), 80);
    let mut want = Vec::new();
    want.extend_from_slice(&1000i64.to_be_bytes());
    want.extend_from_slice(&100i32.to_be_bytes());
    want.extend_from_slice(&0i64.to_be_bytes());
    assert_eq!(&f0[..20], &want[..]);
    assert_eq!(
        std::fs::metadata(root.join("TopicA/0/00000000000000000080"))
            .unwrap()
            .len(),
        80
    );
    assert_eq!(
        std::fs::metadata(root.join("TopicA/0/00000000000000000160"))
            .unwrap()
            .len(),
        20
    );
    assert_eq!(
        std::fs::metadata(root.join("TopicB/1/00000000000000000080"))
            .unwrap()
            .len(),
        40
    );
    assert!(!s.is_dirty());
    let loaded = ConsumeQueueStore::load(root.clone(), 4).unwrap();
    assert_eq!(all_units(&loaded), all_units(&s));
    assert_eq!(loaded.min_offset("TopicB", 1), 5);
    assert_eq!(loaded.dispatched_offset(), 50_033);
    drop(s);

    // Appending after reload continues in the partial file.
    let store = RefCell::new(loaded);
    store
        .borrow_mut()
        .put("TopicA", 0, 9, phys(9), 100, 1)
        .unwrap();
    run(flush(&store, u64::MAX, 1)).unwrap();
    let again = ConsumeQueueStore::load(root, 4).unwrap();
    assert_eq!(again.max_offset("TopicA", 0), 10);
    assert_eq!(again.get("TopicA", 0, 9).unwrap().tags_code, 1);
}

#[test]
fn flush_stops_at_the_bound_and_tracks_the_durable_point() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cq");
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 4));
    fill(&mut store.borrow_mut(), "T", 0, 6);
    // The CommitLog is durable up to the end of record 2.
    let stats = run(flush(&store, phys(3), 1)).unwrap();
    assert_eq!(stats.units, 3);
    assert_eq!(stats.durable_offset, phys(3));
    assert_eq!(store.borrow().durable_offset(), phys(3));
    assert_eq!(
        ConsumeQueueStore::load(root.clone(), 4)
            .unwrap()
            .max_offset("T", 0),
        3
    );
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(stats.units, 3);
    // Never past what was dispatched.
    assert_eq!(store.borrow().durable_offset(), phys(5) + 100);
    assert_eq!(
        ConsumeQueueStore::load(root, 4).unwrap().max_offset("T", 0),
        6
    );
    // A second flush with nothing new is a no-op.
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(stats.units, 0);
    assert_eq!(stats.disk.files_written, 0);
}

#[test]
fn truncate_and_delete_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cq");
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 4));
    fill(&mut store.borrow_mut(), "T", 0, 10);
    fill(&mut store.borrow_mut(), "Gone", 0, 1);
    run(flush(&store, u64::MAX, 1)).unwrap();
    store.borrow_mut().truncate(phys(6));
    assert!(store.borrow_mut().delete_topic("Gone"));
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(stats.disk.files_removed, 1 + 1);
    assert!(!root.join("T/0/00000000000000000160").exists());
    assert_eq!(
        std::fs::metadata(root.join("T/0/00000000000000000080"))
            .unwrap()
            .len(),
        40
    );
    assert!(!root.join("Gone").exists());
    let loaded = ConsumeQueueStore::load(root.clone(), 4).unwrap();
    assert_eq!(loaded.max_offset("T", 0), 6);
    assert!(loaded.queue("Gone", 0).is_none());

    // Retention: the first file goes from disk.
    store.borrow_mut().delete_below(phys(5));
    run(flush(&store, u64::MAX, 1)).unwrap();
    assert!(!root.join("T/0/00000000000000000000").exists());
    let loaded = ConsumeQueueStore::load(root, 4).unwrap();
    assert_eq!(
        (loaded.min_offset("T", 0), loaded.max_offset("T", 0)),
        (4, 6)
    );
}

#[test]
fn load_stops_at_a_torn_tail_and_drops_unreachable_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cq");
    let qdir = root.join("T").join("0");
    std::fs::create_dir_all(&qdir).unwrap();
    let unit = |p: i64| {
        let mut u = Vec::new();
        u.extend_from_slice(&p.to_be_bytes());
        u.extend_from_slice(&10i32.to_be_bytes());
        u.extend_from_slice(&0i64.to_be_bytes());
        u
    };
    // File 0: two units, then zeros, then a stale unit (unreachable), then half a unit.
    let mut f = [unit(0), unit(10), vec![0; 20], unit(30)].concat();
    f.extend_from_slice(&[1, 2, 3]);
    std::fs::write(qdir.join(file_name(0)), &f).unwrap();
    std::fs::write(qdir.join(file_name(4)), unit(40)).unwrap();
    std::fs::write(qdir.join("junk.txt"), b"x").unwrap();
    let s = ConsumeQueueStore::load(root, 4).unwrap();
    assert_eq!((s.min_offset("T", 0), s.max_offset("T", 0)), (0, 2));
    assert_eq!(s.queue("T", 0).unwrap().file_count(), 1);
    assert_eq!(s.pending_removals, vec![qdir.join(file_name(4))]);
    // The next flush cuts the stale bytes.
    assert!(s.is_dirty());
}

mod model {
    use proptest::prelude::*;

    use super::super::*;

    /// (units as (queue offset, physical offset), min offset, max offset).
    type ModelQueue = (Vec<(i64, u64)>, i64, i64);

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8),
        Truncate(u8),
        DeleteBelow(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..3).prop_map(Op::Put),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::DeleteBelow),
        ]
    }

    proptest! {
        /// Random puts (three queues sharing one CommitLog), truncations and deletions against
        /// a model: per queue a list of (queue offset, physical offset) plus min/max offsets.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(), 1..120), upf in 1u32..6) {
            let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), upf);
            let mut phys_end = 0u64;
            // The CommitLog never truncates below what retention deleted.
            let mut deleted_below = 0u64;
            // Per queue: units by offset, min, max.
            let mut model: Vec<ModelQueue> = vec![(Vec::new(), 0, 0); 3];
            for op in ops {
                match op {
                    Op::Put(q) => {
                        let m = &mut model[q as usize];
                        let off = m.2;
                        let out = s.put("T", i32::from(q), off, phys_end, 10, i64::from(q)).unwrap();
                        prop_assert_eq!(out, PutOutcome::Appended);
                        if m.0.is_empty() { m.1 = off; }
                        m.0.push((off, phys_end));
                        m.2 += 1;
                        phys_end += 10;
                    }
                    Op::Truncate(x) => {
                        let cut = (u64::from(x) * 10 % (phys_end + 10)).max(deleted_below).min(phys_end);
                        s.truncate(cut);
                        for m in &mut model {
                            while m.0.last().is_some_and(|&(_, p)| p + 10 > cut) {
                                let (o, _) = m.0.pop().unwrap();
                                m.2 = o;
                            }
                            m.1 = m.1.min(m.2);
                        }
                        phys_end = phys_end.min(cut);
                    }
                    Op::DeleteBelow(x) => {
                        let min = (u64::from(x) * 10 % (phys_end + 10)).max(deleted_below);
                        deleted_below = min;
                        s.delete_below(min);
                        for m in &mut model {
                            let first = m.0.iter().find(|&&(o, p)| o >= m.1 && p >= min).map(|&(o, _)| o);
                            m.1 = first.unwrap_or(m.2).max(m.1);
                        }
                    }
                }
                for (q, m) in model.iter().enumerate() {
                    let q = q as i32;
                    prop_assert_eq!(s.max_offset("T", q), m.2, "max of queue {}", q);
                    prop_assert_eq!(s.min_offset("T", q), m.1, "min of queue {}", q);
                    for &(o, p) in &m.0 {
                        let got = s.get("T", q, o);
                        if o >= m.1 {
                            prop_assert_eq!(got.map(|e| e.physical_offset), Some(p));
                        } else {
                            prop_assert_eq!(got, None);
                        }
                    }
                    prop_assert_eq!(s.get("T", q, m.2), None);
                }
            }
        }
    }
}

mod bound_model {
    use proptest::prelude::*;

    use super::super::*;

    /// `flush_bound` by brute force: every pending unit's record end, sorted; fillers count
    /// at any bound.
    fn reference(s: &ConsumeQueueStore, up_to: u64, budget: u64) -> u64 {
        let (mut fillers, mut ends) = (0u64, Vec::new());
        for (topic, qid) in s
            .queues()
            .map(|(t, q)| (t.to_string(), q))
            .collect::<Vec<_>>()
        {
            for f in &s.queue(&topic, qid).unwrap().files {
                for e in (f.durable_units..f.units()).filter_map(|i| f.entry(i)) {
                    if e.is_filler() {
                        fillers += 1;
                    } else if e.end() <= up_to {
                        ends.push(e.end());
                    }
                }
            }
        }
        ends.sort_unstable();
        if ends.is_empty() || fillers + ends.len() as u64 <= budget {
            return up_to;
        }
        let lowest_end = ends[0];
        let count = |x: u64| fillers + ends.partition_point(|&e| e <= x) as u64;
        if count(lowest_end) > budget {
            return lowest_end;
        }
        // The largest bound whose count fits: one below the first end past the budget.
        ends[(budget - fillers) as usize] - 1
    }

    proptest! {
        /// Random queues (some starting mid-file, so with fillers), skewed traffic, record
        /// sizes and budgets: the bound equals the brute-force one, whichever way the search
        /// narrows (interpolation, bisection, the final sort).
        #[test]
        fn flush_bound_matches_brute_force(
            queues in 1usize..40,
            records in 1u64..20_000,
            skew in 0u32..4,
            upf in 50u32..2_000,
            budget in 1u64..8_000,
            cut in 0u64..=100,
            seed in any::<u64>(),
        ) {
            let mut s = ConsumeQueueStore::new("/nonexistent/cq".into(), upf);
            let mut rng = seed;
            let mut next = vec![None::<i64>; queues];
            let mut phys = 0u64;
            for _ in 0..records {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let r = (rng >> 33) as usize;
                // skew 0: uniform; higher: low queue ids far busier.
                let q = (r % queues) >> (skew as usize).min(r % 3);
                let size = 60 + (r % 400) as u32;
                let off = next[q].unwrap_or((r % (2 * upf as usize)) as i64);
                s.put(&format!("T{}", q / 8), (q % 8) as i32, off, phys, size, 0).unwrap();
                next[q] = Some(off + 1);
                phys += u64::from(size);
            }
            let up_to = phys * cut / 100;
            prop_assert_eq!(s.flush_bound(up_to, budget), reference(&s, up_to, budget));
        }
    }
}

/// A flush with more pending than its budget goes up to one CommitLog offset in every queue
/// (the records in CommitLog order that fit the budget), so the durable point moves with
/// each round; spending the budget queue by queue left the durable point at the first
/// queue's start for as long as the backlog lasted.
#[test]
fn a_flush_writes_its_budget_in_commitlog_order_and_the_rest_follows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cq");
    let budget = (MAX_FLUSH_BYTES / CQ_UNIT_LEN) as u64;
    // Two queues with 0.75 budget each, interleaved in the CommitLog: record k (queue k % 2)
    // at phys(k), ending at phys(k + 1).
    let per_queue = budget * 3 / 4;
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 1_000_000));
    {
        let mut s = store.borrow_mut();
        for i in 0..per_queue {
            s.put("T", 0, i as i64, phys(2 * i), 100, 0).unwrap();
            s.put("T", 1, i as i64, phys(2 * i + 1), 100, 0).unwrap();
        }
    }
    let first = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(first.units, budget, "one flush writes exactly its budget");
    assert!(store.borrow().is_dirty());
    // Records 0..budget are written, in both queues alike; the durable point is the first
    // record left for the next flush.
    let loaded = ConsumeQueueStore::load(root.clone(), 1_000_000).unwrap();
    assert_eq!(loaded.max_offset("T", 0) as u64, budget.div_ceil(2));
    assert_eq!(loaded.max_offset("T", 1) as u64, budget / 2);
    assert_eq!(first.durable_offset, phys(budget));
    let left = per_queue * 2 - budget;
    let second = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(second.units, left);
    assert!(!store.borrow().is_dirty());
    assert_eq!(second.durable_offset, phys(2 * per_queue - 1) + 100);
    let loaded = ConsumeQueueStore::load(root, 1_000_000).unwrap();
    assert_eq!(all_units(&loaded), all_units(&store.borrow()));
}

/// A queue written three times as often as another: each budget-bound flush still moves the
/// durable point to the CommitLog offset it flushed up to, in both queues.
#[test]
fn uneven_queues_share_a_flush_by_commitlog_offset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cq");
    let budget = (MAX_FLUSH_BYTES / CQ_UNIT_LEN) as u64;
    let records = budget * 5 / 2;
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 1_000_000));
    {
        let mut s = store.borrow_mut();
        let mut next = [0i64; 2];
        for k in 0..records {
            let q = usize::from(k % 4 == 3);
            s.put("T", q as i32, next[q], phys(k), 100, 0).unwrap();
            next[q] += 1;
        }
    }
    let mut durable = Vec::new();
    loop {
        let st = run(flush(&store, u64::MAX, 1)).unwrap();
        if st.units == 0 {
            break;
        }
        assert!(st.units <= budget);
        durable.push(st.durable_offset);
    }
    assert_eq!(
        durable,
        vec![phys(budget), phys(2 * budget), phys(records - 1) + 100]
    );
    let loaded = ConsumeQueueStore::load(root, 1_000_000).unwrap();
    assert_eq!(all_units(&loaded), all_units(&store.borrow()));
}

fn mapped_files(s: &ConsumeQueueStore, topic: &str, qid: i32) -> Vec<bool> {
    s.queue(topic, qid)
        .unwrap()
        .files
        .iter()
        .map(|f| f.is_mapped())
        .collect()
}

#[test]
fn full_durable_files_are_read_through_mappings_and_come_back_for_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("consumequeue");
    let store = RefCell::new(ConsumeQueueStore::new(root.clone(), 10));
    fill(&mut store.borrow_mut(), "T", 0, 55);
    let before = all_units(&store.borrow());
    // Nothing is mapped before it is on disk.
    assert_eq!(mapped_files(&store.borrow(), "T", 0), vec![false; 6]);
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(stats.units, 55);
    // Files 0..4 are full and durable; the last CQ_RESIDENT_FILES (4 and the partial 5) stay.
    assert_eq!(queue::CQ_RESIDENT_FILES, 2);
    assert_eq!(stats.files_mapped, 4);
    assert_eq!(
        mapped_files(&store.borrow(), "T", 0),
        vec![true, true, true, true, false, false]
    );
    // Every unit reads the same, by offset, by iteration and by time search.
    assert_eq!(all_units(&store.borrow()), before);
    for i in 0..55 {
        assert_eq!(
            store.borrow().get("T", 0, i).unwrap().physical_offset,
            phys(i as u64)
        );
    }
    // A reload maps the old full files as it goes.
    let loaded = ConsumeQueueStore::load(root.clone(), 10).unwrap();
    assert_eq!(all_units(&loaded), before);
    assert_eq!(
        mapped_files(&loaded, "T", 0),
        vec![true, true, true, true, false, false]
    );
    drop(loaded);

    // A truncation into a mapped file brings it back to the heap, cuts it, and the next
    // flush cuts the file on disk; appends continue from there.
    store.borrow_mut().truncate(phys(24) + 100);
    assert_eq!(store.borrow().max_offset("T", 0), 25);
    assert_eq!(
        mapped_files(&store.borrow(), "T", 0),
        vec![true, true, false]
    );
    run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("T/0/00000000000000000400"))
            .unwrap()
            .len(),
        5 * 20
    );
    fill_from(&mut store.borrow_mut(), 25, 47);
    let stats = run(flush(&store, u64::MAX, 1)).unwrap();
    assert_eq!(stats.units, 22);
    assert_eq!(
        stats.files_mapped, 1,
        "file 2 is full and durable again, and cold"
    );
    assert_eq!(
        mapped_files(&store.borrow(), "T", 0),
        vec![true, true, true, false, false]
    );
    let s = store.borrow();
    for i in 0..47 {
        assert_eq!(s.get("T", 0, i).unwrap().physical_offset, phys(i as u64));
    }
    // Retention drops mapped files like any other (the unlink follows at the next flush).
    drop(s);
    assert_eq!(store.borrow_mut().delete_below(phys(30)), 3);
    run(flush(&store, u64::MAX, 1)).unwrap();
    assert!(!root.join("T/0/00000000000000000000").exists());
    assert_eq!(store.borrow().min_offset("T", 0), 30);
    assert_eq!(
        store.borrow().get("T", 0, 30).unwrap().physical_offset,
        phys(30)
    );
}
