//! IndexFile: hash index of message keys for QUERY_MESSAGE, in RocketMQ's layout (spec §5.4):
//! files `index/<yyyyMMddHHmmssSSS>` (creation time, UTC here), each a 40-byte header, `slots`
//! 4-byte slots and `entries` 20-byte entries (key hash, CommitLog offset, time diff in seconds,
//! previous entry in the slot's chain). Keys indexed per message: `topic#UNIQ_KEY` and
//! `topic#k` for each space-separated `KEYS` value (RocketMQ `IndexService.buildIndex`);
//! rolled-back transactional records are skipped. Rebuildable from the CommitLog.
//!
//! Memory and persistence: the newest (active) file lives in memory (slots as an array, entries
//! appended into a buffer whose capacity is the whole file, reserved up front). Each flush writes
//! its new entries and header (sequential, small); its slot table is not written while it is
//! active — at load it is rebuilt from the entries (one pass), which spares the random 4 KiB
//! page writes a slot table costs. When a file is full it is sealed: the next flush writes its
//! whole slot table once, and only then files after it are written (so a file on disk that is not
//! the newest always has its slots). A sealed, durable file is dropped from memory and queried
//! with positioned reads (blocking, but queries are rare admin operations served from the page
//! cache). Queries may return offsets of other keys with the same hash, like RocketMQ: the caller
//! re-checks the key on the record.
//!
//! API (one shard's executor; keep the service in a `RefCell`):
//! ```text
//! IndexService::new(dir: PathBuf, slots: u32, entries: u32) -> Result<IndexService, IndexError>
//! IndexService::load(dir: PathBuf, slots: u32, entries: u32) -> Result<IndexService, IndexError>  // blocking, start-up
//! .index_message(topic, sys_flag: i32, physical_offset: u64, size: u32, store_timestamp: i64, properties: &[u8])
//!     -> Result<usize, IndexError>                       // dispatch: call for every record; returns entries added
//! .put_key(topic, key: &[u8], physical_offset: u64, store_timestamp: i64) -> Result<(), IndexError>
//! .query(topic, key: &str, max: usize, begin_ms: i64, end_ms: i64) -> Result<Vec<u64>, IndexError>  // newest first
//! .truncate(max_physical_offset: u64)                    // recovery
//! .delete_below(min_physical_offset: u64) -> usize       // retention: files whose entries all precede it
//! .durable_offset() / .set_durable_offset(u64) / .dispatched_offset()
//! .begin_flush(up_to_physical_offset, scale) -> Result<Option<IndexFlushJob>, IndexError>
//! IndexFlushJob::run(self).await -> IndexFlushOutcome
//! .complete_flush(IndexFlushOutcome) -> Result<IndexFlushStats, IndexError>
//! flush(&RefCell<IndexService>, up_to_physical_offset, scale).await -> Result<IndexFlushStats, IndexError>
//! ```

mod error;
mod file;
pub mod layout;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ramjet_core::record::{properties, sysflag};

use crate::consumequeue::disk::{self, FileWrite};
use crate::consumequeue::{DiskError, DiskStats};

pub use error::IndexError;
pub use file::{HeaderValues, IndexFile};
pub use layout::{file_name, key_hash, parse_file_name, DEFAULT_ENTRIES, DEFAULT_SLOTS};

use file::Body;
use layout::{entry_pos, file_len, IndexEntry, ENTRY_LEN, HEADER_LEN};

/// Entries one flush copies per file at most (100,000 entries = 2 MB): the copy runs on the
/// shard, so each flush's stall and memory stay small; the rest goes in the next flush, which
/// the background loop runs soon after while a backlog drains.
pub const MAX_FLUSH_ENTRIES: u32 = 100_000;

/// All index files of one shard's store.
#[derive(Debug)]
pub struct IndexService {
    dir: PathBuf,
    slots: u32,
    entries: u32,
    /// Oldest first; the last one takes new entries.
    files: Vec<IndexFile>,
    pending_removals: Vec<PathBuf>,
    dispatched_end: u64,
    durable_offset: u64,
    flush_in_flight: bool,
}

/// What a completed flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexFlushStats {
    pub disk: DiskStats,
    /// Entries that became durable.
    pub entries: u64,
    /// Files whose slot table was written (sealed).
    pub sealed: u64,
    pub durable_offset: u64,
}

#[derive(Debug)]
struct Written {
    name_ms: i64,
    generation: u64,
    count: u32,
    header: HeaderValues,
    sealed: bool,
}

/// The I/O half of a flush, detached from the service so no borrow is held across awaits.
#[derive(Debug)]
pub struct IndexFlushJob {
    removals: Vec<PathBuf>,
    writes: Vec<FileWrite>,
    receipts: Vec<Written>,
    durable_candidate: u64,
}

/// Result of [`IndexFlushJob::run`].
#[derive(Debug)]
pub struct IndexFlushOutcome {
    removals: Vec<PathBuf>,
    receipts: Vec<Written>,
    durable_candidate: u64,
    result: Result<DiskStats, DiskError>,
}

impl IndexFlushJob {
    /// Performs the writes and removals.
    pub async fn run(self) -> IndexFlushOutcome {
        let (removals, _, result) = disk::apply(self.removals, self.writes, Vec::new()).await;
        IndexFlushOutcome {
            removals,
            receipts: self.receipts,
            durable_candidate: self.durable_candidate,
            result,
        }
    }
}

fn check_config(slots: u32, entries: u32) -> Result<(), IndexError> {
    if slots == 0 {
        return Err(IndexError::Config {
            field: "index_slots",
            value: 0,
            reason: "must be at least 1",
        });
    }
    if entries < 2 {
        return Err(IndexError::Config {
            field: "index_entries",
            value: u64::from(entries),
            reason: "must be at least 2 (entry 0 is never used)",
        });
    }
    if entries > i32::MAX as u32 / 2 {
        return Err(IndexError::Config {
            field: "index_entries",
            value: u64::from(entries),
            reason: "entry numbers are int32",
        });
    }
    Ok(())
}

impl IndexService {
    /// An empty index in `dir` (`<store>/index`).
    pub fn new(dir: PathBuf, slots: u32, entries: u32) -> Result<IndexService, IndexError> {
        check_config(slots, entries)?;
        Ok(IndexService {
            dir,
            slots,
            entries,
            files: Vec::new(),
            pending_removals: Vec::new(),
            dispatched_end: 0,
            durable_offset: 0,
            flush_in_flight: false,
        })
    }

    /// Loads the files in `dir` (blocking std::fs, start-up). Older files are opened for reads;
    /// the newest is read into memory and its slot table rebuilt from its entries. The durable
    /// point starts at 0: set it from the checkpoint.
    pub fn load(dir: PathBuf, slots: u32, entries: u32) -> Result<IndexService, IndexError> {
        let mut svc = IndexService::new(dir, slots, entries)?;
        let rd = match std::fs::read_dir(&svc.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(svc),
            Err(e) => {
                return Err(IndexError::Read {
                    op: "listing",
                    path: svc.dir.clone(),
                    source: e,
                })
            }
        };
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| IndexError::Read {
                op: "listing",
                path: svc.dir.clone(),
                source: e,
            })?;
            match ent
                .file_name()
                .to_str()
                .and_then(|n| parse_file_name(n).map(|ms| (ms, n.to_owned())))
            {
                Some(x) => names.push(x),
                None => {
                    tracing::warn!(path = %ent.path().display(), "ignoring a file that is not an index file")
                }
            }
        }
        names.sort();
        let n = names.len();
        for (i, (ms, name)) in names.into_iter().enumerate() {
            let path = svc.dir.join(&name);
            let f = svc.load_file(path, ms, i + 1 == n)?;
            svc.files.push(f);
        }
        if let Some(last) = svc.files.last() {
            svc.dispatched_end = last.header.end_phy_offset.max(0) as u64;
        }
        Ok(svc)
    }

    fn load_file(
        &self,
        path: PathBuf,
        name_ms: i64,
        newest: bool,
    ) -> Result<IndexFile, IndexError> {
        let rerr = |op, e| IndexError::Read {
            op,
            path: path.clone(),
            source: e,
        };
        let file = std::fs::File::open(&path).map_err(|e| rerr("opening", e))?;
        let len = file.metadata().map_err(|e| rerr("stat", e))?.len();
        let full = file_len(self.slots, self.entries);
        if len > full {
            return Err(IndexError::Layout {
                path,
                reason: format!(
                    "{len} bytes, more than {full} for index_slots {} and index_entries {} (was the config changed?)",
                    self.slots, self.entries
                ),
            });
        }
        let mut hb = [0u8; HEADER_LEN];
        file.read_exact_at(&mut hb, 0)
            .map_err(|e| rerr("reading header of", e))?;
        let mut header = HeaderValues::decode(&hb).ok_or_else(|| IndexError::Layout {
            path: path.clone(),
            reason: "negative index count in header".into(),
        })?;
        let first_entry = entry_pos(self.slots, 0);
        let present = (len.saturating_sub(first_entry) / ENTRY_LEN as u64) as u32;
        header.index_count = header
            .index_count
            .clamp(1, self.entries)
            .min(present.max(1));
        if !newest {
            return Ok(IndexFile::sealed_on_disk(
                path,
                name_ms,
                self.slots,
                self.entries,
                header,
            ));
        }
        let mut f = IndexFile::new(path.clone(), name_ms, self.slots, self.entries, 0, 0);
        f.on_disk = true;
        f.header_dirty = false;
        // The newest file: read its entries and rebuild the slot table.
        let count = header.index_count;
        let mut bytes = vec![0u8; count as usize * ENTRY_LEN];
        file.read_exact_at(&mut bytes, first_entry)
            .map_err(|e| rerr("reading entries of", e))?;
        let Body::Memory { slots, entries } = &mut f.body else {
            return Err(IndexError::Layout {
                path: f.path.clone(),
                reason: "new file not in memory".into(),
            });
        };
        let mut last_phy = i64::MIN;
        let mut kept = 1u32;
        for i in 1..count {
            let at = i as usize * ENTRY_LEN;
            let Ok((e, _)) = zerocopy::FromBytes::ref_from_prefix(&bytes[at..]) else {
                break;
            };
            let e: &IndexEntry = e;
            let phy = e.phy_offset.get();
            // Entries ascend in the CommitLog; a lower one is an unwritten (torn) tail.
            if phy < last_phy || phy < 0 || e.key_hash.get() < 0 {
                break;
            }
            last_phy = phy;
            entries.extend_from_slice(&bytes[at..at + ENTRY_LEN]);
            slots[(e.key_hash.get() as u32 % self.slots) as usize] = i;
            kept = i + 1;
        }
        header.index_count = kept;
        if kept > 1 {
            header.end_phy_offset = last_phy;
        }
        header.hash_slot_count = header.hash_slot_count.min(kept as i32 - 1).max(0);
        f.header = header;
        f.durable_count = kept;
        f.header_dirty = kept != count;
        Ok(f)
    }

    /// Directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files, oldest first.
    pub fn files(&self) -> &[IndexFile] {
        &self.files
    }

    fn active_file(&mut self, store_ts: i64) -> &mut IndexFile {
        let roll = self
            .files
            .last()
            .is_none_or(|f| f.is_full() || !matches!(f.body, Body::Memory { .. }));
        if roll {
            let (name_ms, prev_phy, prev_ts) = match self.files.last() {
                Some(l) => (
                    store_ts.max(l.name_ms + 1),
                    l.header.end_phy_offset,
                    l.header.end_timestamp,
                ),
                None => (store_ts.max(0), 0, 0),
            };
            let path = self.dir.join(file_name(name_ms));
            self.files.push(IndexFile::new(
                path,
                name_ms,
                self.slots,
                self.entries,
                prev_phy,
                prev_ts,
            ));
        }
        let i = self.files.len() - 1;
        &mut self.files[i]
    }

    /// Adds `topic#key` for the record at `physical_offset`. Rolls to a new file when full.
    pub fn put_key(
        &mut self,
        topic: &str,
        key: &[u8],
        physical_offset: u64,
        store_timestamp: i64,
    ) -> Result<(), IndexError> {
        if physical_offset > i64::MAX as u64 {
            return Err(IndexError::OffsetOutOfRange {
                offset: physical_offset,
            });
        }
        let h = key_hash(topic, key);
        let f = self.active_file(store_timestamp);
        if f.put(h, physical_offset, store_timestamp) {
            return Ok(());
        }
        // active_file returned a file with room, so this is unreachable in practice; report it.
        Err(IndexError::Layout {
            path: f.path.clone(),
            reason: format!(
                "no room for an entry (index count {})",
                f.header.index_count
            ),
        })
    }

    /// Dispatch of one record: indexes its `UNIQ_KEY` and each `KEYS` key as `topic#key`.
    /// Records already indexed (at or below the last indexed offset) and rolled-back
    /// transactional records are skipped. Returns the entries added. Call it for every record,
    /// keyed or not, so the dispatched point advances.
    pub fn index_message(
        &mut self,
        topic: &str,
        sys_flag: i32,
        physical_offset: u64,
        size: u32,
        store_timestamp: i64,
        props: &[u8],
    ) -> Result<usize, IndexError> {
        let already = self
            .files
            .last()
            .is_some_and(|f| !f.is_empty() && physical_offset <= f.header.end_phy_offset as u64);
        self.dispatched_end = self
            .dispatched_end
            .max(physical_offset.saturating_add(u64::from(size)));
        if already || sysflag::transaction_value(sys_flag) == sysflag::TRANSACTION_ROLLBACK_TYPE {
            return Ok(0);
        }
        // One pass over the properties; the last occurrence of a name wins, as in Java.
        let (mut uniq, mut keys) = (None, None);
        for (name, value) in properties::iter(props) {
            if name == properties::UNIQ_KEY.as_bytes() {
                uniq = Some(value);
            } else if name == properties::KEYS.as_bytes() {
                keys = Some(value);
            }
        }
        let mut added = 0;
        if let Some(uniq) = uniq {
            self.put_key(topic, uniq, physical_offset, store_timestamp)?;
            added += 1;
        }
        if let Some(keys) = keys {
            for k in properties::split_keys(keys) {
                self.put_key(topic, k, physical_offset, store_timestamp)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// CommitLog offsets of records indexed under `topic#key` with store time in
    /// [begin_ms, end_ms] (second precision, as stored), newest first, at most `max`.
    pub fn query(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<u64>, IndexError> {
        let mut out = Vec::new();
        if max == 0 || begin_ms > end_ms {
            return Ok(out);
        }
        let h = key_hash(topic, key.as_bytes());
        for f in self.files.iter().rev() {
            if f.time_matched(begin_ms, end_ms) {
                f.select(h, max, begin_ms, end_ms, &mut out)?;
            }
            if out.len() >= max || f.header.begin_timestamp < begin_ms {
                break;
            }
        }
        Ok(out)
    }

    /// Recovery: drops entries of records at or past `max_physical_offset` from the newest file,
    /// and whole files that begin past it.
    pub fn truncate(&mut self, max_physical_offset: u64) {
        while self.files.len() > 1 {
            let Some(last) = self.files.last() else { break };
            if last.is_empty() || (last.header.begin_phy_offset as u64) < max_physical_offset {
                break;
            }
            if let Some(f) = self.files.pop() {
                if f.on_disk {
                    self.pending_removals.push(f.path);
                }
            }
        }
        if let Some(last) = self.files.last_mut() {
            last.truncate(max_physical_offset);
        }
        self.dispatched_end = self.dispatched_end.min(max_physical_offset);
        self.durable_offset = self.durable_offset.min(max_physical_offset);
    }

    /// Retention: deletes files (never the newest) whose last entry is below
    /// `min_physical_offset`; they go from disk at the next flush. Returns files deleted.
    pub fn delete_below(&mut self, min_physical_offset: u64) -> usize {
        let mut n = 0;
        while self.files.len() > 1
            && (self.files[0].header.end_phy_offset.max(0) as u64) < min_physical_offset
        {
            let f = self.files.remove(0);
            if f.on_disk {
                self.pending_removals.push(f.path);
            }
            n += 1;
        }
        n
    }

    /// The CommitLog offset below which every record's index entries are on disk.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset
    }

    /// Sets the durable point (from the checkpoint, at start-up).
    pub fn set_durable_offset(&mut self, offset: u64) {
        self.durable_offset = offset;
    }

    /// Highest record end dispatched.
    pub fn dispatched_offset(&self) -> u64 {
        self.dispatched_end
    }

    /// First half of a flush: new entries of records below `up_to_physical_offset` (the
    /// CommitLog's durable offset), headers, slot tables of sealed files, removals.
    /// Up to `scale` (>= 1) times [`MAX_FLUSH_ENTRIES`] entries per file.
    pub fn begin_flush(
        &mut self,
        up_to_physical_offset: u64,
        scale: u32,
    ) -> Result<Option<IndexFlushJob>, IndexError> {
        let max_entries = MAX_FLUSH_ENTRIES.saturating_mul(scale.max(1));
        if self.flush_in_flight {
            return Err(IndexError::FlushInFlight);
        }
        let mut writes = Vec::new();
        let mut receipts = Vec::new();
        let mut first_unflushed = u64::MAX;
        // Once a file cannot be completed in this flush (bounded, or sealing), newer files wait:
        // a file on disk that is not the newest must be whole, slot table included.
        let mut blocked = false;
        let phy_at = |entries: &[u8], i: u32| -> u64 {
            let at = i as usize * ENTRY_LEN + 4;
            entries
                .get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, |b| i64::from_be_bytes(b).max(0) as u64)
        };
        for f in &self.files {
            let Body::Memory { slots, entries } = &f.body else {
                continue;
            };
            let count = f.header.index_count;
            if blocked {
                if f.durable_count < count {
                    first_unflushed = first_unflushed.min(phy_at(entries, f.durable_count));
                }
                continue;
            }
            let mut upto = count.min(f.durable_count.saturating_add(max_entries));
            while upto > f.durable_count && phy_at(entries, upto - 1) >= up_to_physical_offset {
                upto -= 1;
            }
            if upto < count {
                first_unflushed = first_unflushed.min(phy_at(entries, upto));
                blocked = true;
            }
            let seal = f.is_full() && upto == count && !f.slots_durable;
            if seal {
                blocked = true;
            }
            if upto == f.durable_count && !f.header_dirty && !seal {
                continue;
            }
            // Header for the prefix being written.
            let mut header = f.header;
            if upto < count {
                header.index_count = upto;
                if upto > 1 {
                    let at = (upto - 1) as usize * ENTRY_LEN;
                    if let Ok((e, _)) =
                        <IndexEntry as zerocopy::FromBytes>::read_from_prefix(&entries[at..])
                    {
                        header.end_phy_offset = e.phy_offset.get();
                        header.end_timestamp =
                            header.begin_timestamp + i64::from(e.time_diff_s.get()) * 1000;
                    }
                }
            }
            let mut ranges = Vec::with_capacity(2);
            let mut head = header.encode().to_vec();
            if seal {
                head.reserve(slots.len() * 4);
                for s in slots {
                    head.extend_from_slice(&(*s as i32).to_be_bytes());
                }
            }
            ranges.push((0, head));
            if upto > f.durable_count {
                let from = f.durable_count as usize * ENTRY_LEN;
                let to = upto as usize * ENTRY_LEN;
                ranges.push((
                    entry_pos(self.slots, f.durable_count),
                    entries[from..to].to_vec(),
                ));
            }
            writes.push(FileWrite {
                path: f.path.clone(),
                ranges,
                truncate_to: None,
                new_file: !f.on_disk,
            });
            receipts.push(Written {
                name_ms: f.name_ms,
                generation: f.generation,
                count: upto,
                header,
                sealed: seal,
            });
        }
        let candidate = first_unflushed
            .min(up_to_physical_offset)
            .min(self.dispatched_end);
        if writes.is_empty() && self.pending_removals.is_empty() {
            if first_unflushed == u64::MAX {
                self.durable_offset = self.durable_offset.max(candidate);
            }
            return Ok(None);
        }
        self.flush_in_flight = true;
        Ok(Some(IndexFlushJob {
            removals: std::mem::take(&mut self.pending_removals),
            writes,
            receipts,
            durable_candidate: candidate,
        }))
    }

    /// Second half of a flush: marks what was written durable; a sealed file that is now
    /// wholly on disk leaves memory. On failure nothing is marked and the error is returned.
    pub fn complete_flush(
        &mut self,
        outcome: IndexFlushOutcome,
    ) -> Result<IndexFlushStats, IndexError> {
        self.flush_in_flight = false;
        let disk = match outcome.result {
            Ok(d) => d,
            Err(e) => {
                self.pending_removals.extend(outcome.removals);
                return Err(e.into());
            }
        };
        let mut stats = IndexFlushStats {
            disk,
            ..IndexFlushStats::default()
        };
        let mut all_done = true;
        for r in &outcome.receipts {
            let Some(f) = self.files.iter_mut().find(|f| f.name_ms == r.name_ms) else {
                continue;
            };
            if f.generation != r.generation {
                all_done = false;
                continue;
            }
            f.on_disk = true;
            if r.count > f.durable_count {
                stats.entries += u64::from(r.count - f.durable_count);
                f.durable_count = r.count;
            }
            if f.header == r.header {
                f.header_dirty = false;
            }
            if r.sealed {
                f.slots_durable = true;
                stats.sealed += 1;
                // Wholly on disk now: queries read it from there, memory is released.
                f.body = Body::Disk;
            }
        }
        if all_done {
            self.durable_offset = self.durable_offset.max(outcome.durable_candidate);
        }
        stats.durable_offset = self.durable_offset;
        Ok(stats)
    }

    /// Whether there is anything to flush.
    pub fn is_dirty(&self) -> bool {
        !self.pending_removals.is_empty()
            || self.files.iter().any(|f| {
                matches!(f.body, Body::Memory { .. })
                    && (f.header_dirty
                        || f.durable_count < f.header.index_count
                        || (f.is_full() && !f.slots_durable))
            })
    }
}

/// Flushes `svc`: collects under a short borrow, writes with no borrow held, records the result.
pub async fn flush(
    svc: &RefCell<IndexService>,
    up_to_physical_offset: u64,
    scale: u32,
) -> Result<IndexFlushStats, IndexError> {
    let job = svc.borrow_mut().begin_flush(up_to_physical_offset, scale)?;
    let Some(job) = job else {
        let durable_offset = svc.borrow().durable_offset();
        return Ok(IndexFlushStats {
            durable_offset,
            ..IndexFlushStats::default()
        });
    };
    let outcome = job.run().await;
    svc.borrow_mut().complete_flush(outcome)
}
