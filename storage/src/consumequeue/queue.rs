//! One logical queue (topic, queue id): its files in memory, appends, lookups, truncation.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use zerocopy::IntoBytes;

use super::error::CqError;
use super::unit::{decode_unit, file_name, parse_file_name, CqEntry, CQ_UNIT_LEN};
use crate::io::mapping::Mapping;

/// Which end of a run of equal store timestamps a time search returns (RocketMQ 5.x
/// `BoundaryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boundary {
    /// The first queue offset whose store time is >= the timestamp (max offset if none).
    #[default]
    Lower,
    /// The last queue offset whose store time is <= the timestamp (min offset if none).
    Upper,
}

/// What [`ConsumeQueue::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The unit was appended.
    Appended,
    /// The queue already holds this queue offset (a re-dispatch during recovery); nothing changed.
    Duplicate,
    /// The queue held a different unit at this offset (it disagreed with the CommitLog): the
    /// queue was cut there and the unit appended.
    Repaired,
}

/// Files of a queue kept on the heap however old: the one being filled and the one before it
/// (a consumer just behind the head reads it). Older files, once full and wholly on disk, are
/// read through a mapping of the file instead ([`CqUnits::Mapped`]).
pub const CQ_RESIDENT_FILES: usize = 2;

thread_local! {
    /// Failed mappings, logged at most once per `LOG_EVERY` (a full `vm.max_map_count` fails
    /// every file).
    static MAP_FAILURES: ramjet_core::ratelog::LogEvery = ramjet_core::ratelog::LogEvery::default();
}

/// Where a file's units are read from.
#[derive(Debug)]
pub(crate) enum CqUnits {
    /// On the heap: the units written so far; capacity is the whole file, reserved at
    /// creation, so appends never reallocate (untouched capacity costs address space, not
    /// memory).
    Memory(Vec<u8>),
    /// A full file that is wholly on disk, mapped read-only: page-cache memory the kernel can
    /// reclaim, instead of 20 bytes per message on the heap for as long as retention keeps
    /// the file.
    Mapped(Mapping),
}

/// One file of a queue.
#[derive(Debug)]
pub(crate) struct CqFile {
    /// Queue offset of the file's first unit (file name = start_unit * 20).
    pub(crate) start_unit: u64,
    pub(crate) data: CqUnits,
    /// Populates `buf` ahead of the appends (page faults off the shard thread).
    pub(crate) ahead: crate::prefault::Ahead,
    /// Units known to be on disk and synced.
    pub(crate) durable_units: u64,
    /// Units the file on disk may hold (it may hold more than `units()` after a truncation,
    /// until the next flush cuts it).
    pub(crate) disk_units: u64,
    /// Whether the file exists on disk.
    pub(crate) on_disk: bool,
}

impl CqFile {
    /// The units' bytes, wherever they are.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.data {
            CqUnits::Memory(v) => v,
            CqUnits::Mapped(m) => m.bytes(),
        }
    }

    #[inline]
    pub(crate) fn units(&self) -> u64 {
        (self.bytes().len() / CQ_UNIT_LEN) as u64
    }

    #[inline]
    pub(crate) fn entry(&self, i: u64) -> Option<CqEntry> {
        let at = i as usize * CQ_UNIT_LEN;
        decode_unit(self.bytes().get(at..at + CQ_UNIT_LEN)?)
    }

    /// Whether the units are read through a mapping of the file.
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.data, CqUnits::Mapped(_))
    }

    /// The units on the heap, copied back from the mapping first if the file was mapped (a
    /// truncation is about to change them; the mapping is dropped before the file can shrink).
    fn memory_mut(&mut self, units_per_file: u64) -> &mut Vec<u8> {
        if let CqUnits::Mapped(m) = &self.data {
            let mut v = Vec::with_capacity(units_per_file as usize * CQ_UNIT_LEN);
            v.extend_from_slice(m.bytes());
            self.data = CqUnits::Memory(v);
        }
        match &mut self.data {
            CqUnits::Memory(v) => v,
            CqUnits::Mapped(_) => unreachable!("converted to memory above"),
        }
    }
}

/// One logical queue. All of its units are kept in memory (20 bytes per message): lookups are
/// synchronous and never touch the disk; retention bounds the total.
#[derive(Debug)]
pub struct ConsumeQueue {
    pub(crate) dir: PathBuf,
    units_per_file: u64,
    /// Contiguous files, oldest first; every file but the last is full.
    pub(crate) files: VecDeque<CqFile>,
    min_offset: i64,
    max_offset: i64,
    max_physical_end: u64,
    /// Bumped by truncation and deletion, so a flush that raced them does not mark stale
    /// units durable.
    pub(crate) generation: u64,
}

impl ConsumeQueue {
    pub(crate) fn new(dir: PathBuf, units_per_file: u32) -> ConsumeQueue {
        ConsumeQueue {
            dir,
            units_per_file: u64::from(units_per_file.max(1)),
            files: VecDeque::new(),
            min_offset: 0,
            max_offset: 0,
            max_physical_end: 0,
            generation: 0,
        }
    }

    /// Smallest queue offset still readable.
    #[inline]
    pub fn min_offset(&self) -> i64 {
        self.min_offset
    }

    /// Next queue offset to be assigned (number of units ever written).
    #[inline]
    pub fn max_offset(&self) -> i64 {
        self.max_offset
    }

    /// End (offset + size) in the CommitLog of the last unit; 0 for an empty queue.
    #[inline]
    pub fn max_physical_offset(&self) -> u64 {
        self.max_physical_end
    }

    /// Directory of the queue's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of files (in memory, which is also the number on disk after a flush).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    fn new_file(&self, start_unit: u64) -> CqFile {
        let mut buf = Vec::with_capacity(self.units_per_file as usize * CQ_UNIT_LEN);
        crate::prefault::advise_huge(&mut buf);
        let mut ahead = crate::prefault::Ahead::default();
        ahead.after_write(&buf);
        CqFile {
            start_unit,
            data: CqUnits::Memory(buf),
            ahead,
            durable_units: 0,
            disk_units: 0,
            on_disk: false,
        }
    }

    #[inline]
    fn push_unit(&mut self, e: CqEntry) {
        let need_file = self
            .files
            .back()
            .is_none_or(|f| f.units() >= self.units_per_file);
        if need_file {
            let start = self.files.back().map_or_else(
                || {
                    let q = self.max_offset as u64;
                    q - q % self.units_per_file
                },
                |f| f.start_unit + self.units_per_file,
            );
            let f = self.new_file(start);
            self.files.push_back(f);
        }
        let upf = self.units_per_file;
        if let Some(f) = self.files.back_mut() {
            // The last file is mapped only after a reload or truncation left a full file
            // last, and then `need_file` opened a new one: this is a heap file.
            if f.is_mapped() {
                f.memory_mut(upf);
            }
            if let CqUnits::Memory(buf) = &mut f.data {
                buf.extend_from_slice(e.to_unit().as_bytes());
                f.ahead.after_write(buf);
            }
        }
    }

    /// Appends the unit for `queue_offset`. A queue offset below the max is a re-dispatch and is
    /// ignored; one above the max is a gap (an error) unless the queue has no units yet, in which
    /// case the queue starts there (earlier slots of its first file get filler units, as
    /// RocketMQ does). No allocation except when a new file starts.
    pub fn put(
        &mut self,
        topic: &str,
        queue_id: i32,
        queue_offset: i64,
        physical_offset: u64,
        size: u32,
        tags_code: i64,
    ) -> Result<PutOutcome, CqError> {
        if queue_offset < 0
            || size == 0
            || size > i32::MAX as u32
            || physical_offset > i64::MAX as u64
        {
            let (field, value) = if queue_offset < 0 {
                ("queue offset", queue_offset)
            } else if size == 0 || size > i32::MAX as u32 {
                ("record size", i64::from(size))
            } else {
                ("CommitLog offset", physical_offset as i64)
            };
            return Err(CqError::Invalid {
                topic: topic.to_owned(),
                queue_id,
                field,
                value,
            });
        }
        if queue_offset < self.max_offset {
            return Ok(PutOutcome::Duplicate);
        }
        if queue_offset > self.max_offset && !self.files.is_empty() {
            return Err(CqError::Gap {
                topic: topic.to_owned(),
                queue_id,
                queue_offset,
                max_offset: self.max_offset,
            });
        }
        if self.files.is_empty() {
            // First unit of the queue (or first after a truncation emptied it): the file starts
            // at a multiple of units_per_file and earlier slots get fillers.
            let q = queue_offset as u64;
            let start = q - q % self.units_per_file;
            self.files.push_back(self.new_file(start));
            for _ in start..q {
                self.push_unit(CqEntry::filler());
            }
            self.min_offset = queue_offset;
            self.max_offset = queue_offset;
        }
        if physical_offset < self.max_physical_end {
            return Err(CqError::PhysicalBackwards {
                topic: topic.to_owned(),
                queue_id,
                queue_offset,
                physical_offset,
                max_physical_offset: self.max_physical_end,
            });
        }
        self.push_unit(CqEntry {
            physical_offset,
            size,
            tags_code,
        });
        self.max_offset += 1;
        self.max_physical_end = physical_offset + u64::from(size);
        Ok(PutOutcome::Appended)
    }

    /// File index and unit index inside it of queue offset `offset` (which must be held).
    #[inline]
    fn locate(&self, offset: u64) -> Option<(usize, u64)> {
        let first = self.files.front()?.start_unit;
        let rel = offset.checked_sub(first)?;
        let fi = (rel / self.units_per_file) as usize;
        let f = self.files.get(fi)?;
        let i = offset - f.start_unit;
        (i < f.units()).then_some((fi, i))
    }

    /// The unit at `offset`, if `min_offset <= offset < max_offset`.
    #[inline]
    pub fn get(&self, offset: i64) -> Option<CqEntry> {
        if offset < self.min_offset || offset >= self.max_offset {
            return None;
        }
        let (fi, i) = self.locate(offset as u64)?;
        self.files[fi].entry(i)
    }

    /// Units from `offset` (clamped up to `min_offset`) to the max, in order, with their offsets.
    pub fn iter_from(&self, offset: i64) -> impl Iterator<Item = (i64, CqEntry)> + '_ {
        let from = offset.max(self.min_offset);
        (from..self.max_offset).map_while(move |o| self.get(o).map(|e| (o, e)))
    }

    /// Store timestamp of the unit at `o` via `store_time`; unreadable units (None) count as
    /// older than anything.
    fn time_at(&self, o: i64, store_time: &mut dyn FnMut(u64, u32) -> Option<i64>) -> Option<i64> {
        let e = self.get(o)?;
        if e.is_filler() {
            return None;
        }
        store_time(e.physical_offset, e.size)
    }

    /// Binary search by store timestamp (RocketMQ `getOffsetInQueueByTime`). The unit does not
    /// hold the store time, so `store_time(physical_offset, size)` reads it from the record, as
    /// RocketMQ's `pickupStoreTimestamp` does; about log2(units) calls. Units it cannot read
    /// (None: already deleted) are treated as older than `ts_ms`. Assumes store times do not
    /// decrease along the queue (the broker's clock). Empty queue: returns `max_offset`.
    pub fn search_offset_by_timestamp(
        &self,
        ts_ms: i64,
        boundary: Boundary,
        store_time: &mut dyn FnMut(u64, u32) -> Option<i64>,
    ) -> i64 {
        let (mut lo, mut hi) = (self.min_offset, self.max_offset);
        // Partition point of "time < ts" (Lower) or "time <= ts" (Upper).
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let before = match self.time_at(mid, store_time) {
                None => true,
                Some(t) => match boundary {
                    Boundary::Lower => t < ts_ms,
                    Boundary::Upper => t <= ts_ms,
                },
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match boundary {
            Boundary::Lower => lo,
            Boundary::Upper => (lo - 1).max(self.min_offset),
        }
    }

    /// Drops the units whose record ends beyond `max_physical_offset` (recovery cut the
    /// CommitLog there). Files left empty are returned for removal from disk.
    pub(crate) fn truncate(
        &mut self,
        max_physical_offset: u64,
        removed: &mut Vec<PathBuf>,
    ) -> bool {
        let mut changed = false;
        let upf = self.units_per_file;
        while let Some(f) = self.files.back_mut() {
            let mut keep = f.units();
            while keep > 0 {
                match f.entry(keep - 1) {
                    Some(e) if e.is_filler() || e.end() <= max_physical_offset => break,
                    _ => keep -= 1,
                }
            }
            if keep == f.units() {
                break;
            }
            changed = true;
            self.max_offset = (f.start_unit + keep) as i64;
            f.memory_mut(upf).truncate(keep as usize * CQ_UNIT_LEN);
            f.durable_units = f.durable_units.min(keep);
            let only_fillers = (0..keep).all(|i| f.entry(i).is_some_and(|e| e.is_filler()));
            if keep == 0 || only_fillers {
                if f.on_disk || f.disk_units > 0 {
                    removed.push(self.dir.join(file_name(f.start_unit)));
                }
                self.files.pop_back();
                continue;
            }
            break;
        }
        if changed {
            self.max_physical_end = self
                .files
                .back()
                .and_then(|f| f.entry(f.units().checked_sub(1)?))
                .filter(|e| !e.is_filler())
                .map_or(0, |e| e.end());
            self.min_offset = self.min_offset.min(self.max_offset);
            self.generation += 1;
        }
        changed
    }

    /// Deletes the files (never the last) whose last record starts below `min_physical_offset`,
    /// and moves `min_offset` to the first unit at or above it (RocketMQ
    /// `deleteExpiredFileByOffset` + `correctMinOffset`). Returns files deleted.
    pub(crate) fn delete_below(
        &mut self,
        min_physical_offset: u64,
        removed: &mut Vec<PathBuf>,
    ) -> usize {
        let mut deleted = 0;
        while self.files.len() > 1 {
            let f = &self.files[0];
            let last = f.units().checked_sub(1).and_then(|i| f.entry(i));
            if last.is_none_or(|e| e.physical_offset >= min_physical_offset) {
                break;
            }
            if f.on_disk || f.disk_units > 0 {
                removed.push(self.dir.join(file_name(f.start_unit)));
            }
            self.files.pop_front();
            deleted += 1;
        }
        if let Some(f) = self.files.front() {
            self.min_offset = self.min_offset.max(f.start_unit as i64);
        }
        // First unit at or above the threshold (units ascend by offset; fillers count as below).
        let (mut lo, mut hi) = (self.min_offset, self.max_offset);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = self
                .get(mid)
                .is_none_or(|e| e.is_filler() || e.physical_offset < min_physical_offset);
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo != self.min_offset || deleted > 0 {
            self.generation += 1;
        }
        self.min_offset = lo;
        deleted
    }

    /// Loads the queue's files from `dir` (blocking std::fs; start-up only). Files must be
    /// consecutive; the first file shorter than full ends the queue, and any later files are
    /// returned in `removed` (their units could not be reached). Loaded units count as durable.
    pub(crate) fn load(
        dir: PathBuf,
        units_per_file: u32,
        removed: &mut Vec<PathBuf>,
    ) -> Result<ConsumeQueue, CqError> {
        let mut q = ConsumeQueue::new(dir, units_per_file);
        let upf = q.units_per_file;
        let mut starts = Vec::new();
        let rd = std::fs::read_dir(&q.dir).map_err(|e| CqError::Load {
            op: "listing",
            path: q.dir.clone(),
            source: e,
        })?;
        for ent in rd {
            let ent = ent.map_err(|e| CqError::Load {
                op: "listing",
                path: q.dir.clone(),
                source: e,
            })?;
            let name = ent.file_name();
            match name.to_str().and_then(parse_file_name) {
                Some(start) if start % upf == 0 => starts.push(start),
                Some(start) => {
                    return Err(CqError::Layout {
                        path: ent.path(),
                        reason: format!(
                            "starts at unit {start}, not a multiple of cq_units_per_file {upf} (was the setting changed?)"
                        ),
                    })
                }
                None => tracing::warn!(path = %ent.path().display(), "ignoring a file that is not a ConsumeQueue file"),
            }
        }
        starts.sort_unstable();
        let mut ended = false;
        for start in starts {
            let path = q.dir.join(file_name(start));
            let contiguous = q.files.back().is_none_or(|f| f.start_unit + upf == start);
            if ended || !contiguous {
                tracing::warn!(path = %path.display(), "ConsumeQueue file after a gap or a partial file: removing");
                removed.push(path);
                ended = true;
                continue;
            }
            let mut buf = std::fs::read(&path).map_err(|e| CqError::Load {
                op: "reading",
                path: path.clone(),
                source: e,
            })?;
            let disk_units = buf.len().div_ceil(CQ_UNIT_LEN) as u64;
            let max_units = (buf.len() / CQ_UNIT_LEN).min(upf as usize);
            let units = (0..max_units)
                .take_while(|&i| decode_unit(&buf[i * CQ_UNIT_LEN..]).is_some())
                .count();
            buf.truncate(units * CQ_UNIT_LEN);
            if (units as u64) < upf {
                ended = true;
                buf.reserve_exact(upf as usize * CQ_UNIT_LEN - buf.len());
            }
            q.files.push_back(CqFile {
                start_unit: start,
                data: CqUnits::Memory(buf),
                ahead: crate::prefault::Ahead::default(),
                durable_units: units as u64,
                disk_units,
                on_disk: true,
            });
            // Older full files go to mappings as the load goes, so a long retention is never
            // on the heap at once.
            q.map_cold_files();
        }
        // Drop trailing files left without units (but keep one to anchor max_offset).
        while q.files.len() > 1 && q.files.back().is_some_and(|f| f.units() == 0) {
            if let Some(f) = q.files.pop_back() {
                removed.push(q.dir.join(file_name(f.start_unit)));
            }
        }
        if let Some(last) = q.files.back() {
            q.max_offset = (last.start_unit + last.units()) as i64;
            q.max_physical_end = last
                .units()
                .checked_sub(1)
                .and_then(|i| last.entry(i))
                .filter(|e| !e.is_filler())
                .map_or(0, |e| e.end());
        }
        let first = q.files.front().map_or(0, |f| f.start_unit as i64);
        q.min_offset = (first..q.max_offset)
            .find(|&o| q.get_raw(o).is_some_and(|e| !e.is_filler()))
            .unwrap_or(q.max_offset);
        if q.files.len() == 1 && q.files[0].units() == 0 {
            // An empty file: nothing to anchor; the queue restarts at its start.
            if let Some(f) = q.files.pop_back() {
                q.min_offset = f.start_unit as i64;
                q.max_offset = f.start_unit as i64;
                removed.push(q.dir.join(file_name(f.start_unit)));
            }
        }
        Ok(q)
    }

    /// Reads the full files that are wholly on disk, except the last [`CQ_RESIDENT_FILES`],
    /// through mappings of their files and frees their heap copies. Files are mapped oldest
    /// first and never go back unless truncated, so the scan stops at the first mapped file.
    /// Returns the files mapped now. A file that cannot be mapped stays on the heap (logged).
    pub(crate) fn map_cold_files(&mut self) -> usize {
        let upf = self.units_per_file;
        let Some(end) = self.files.len().checked_sub(CQ_RESIDENT_FILES) else {
            return 0;
        };
        let mut mapped = 0;
        for i in (0..end).rev() {
            let f = &mut self.files[i];
            if f.is_mapped() {
                break;
            }
            if f.units() != upf || f.durable_units != upf || f.disk_units != upf || !f.on_disk {
                continue;
            }
            let path = self.dir.join(file_name(f.start_unit));
            match Mapping::open(&path, upf as usize * CQ_UNIT_LEN) {
                Ok(m) if m.bytes() == f.bytes() => {
                    m.forget_resident();
                    f.data = CqUnits::Mapped(m);
                    mapped += 1;
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "ConsumeQueue file differs from its units in memory; keeping them in memory")
                }
                // One mapping per file: past `vm.max_map_count` (65,530 by default, ~20 G
                // messages of 300,000-unit files) mmap fails and files stay on the heap.
                Err(e) => MAP_FAILURES.with(|l| {
                    if let Some(n) = l.due() {
                        tracing::warn!(path = %path.display(), error = %e, failures = n, "ConsumeQueue file not mapped; keeping its units in memory");
                    }
                }),
            }
        }
        mapped
    }

    /// Drops the units at queue offsets >= `offset` (files left empty go to `removed`).
    pub(crate) fn truncate_from(&mut self, offset: i64, removed: &mut Vec<PathBuf>) -> bool {
        let Some(e) = self.get_raw(offset) else {
            return false;
        };
        // Units ascend in the CommitLog, so cutting at this unit's start drops it and all after.
        self.truncate(e.physical_offset, removed)
    }

    /// The unit at `offset` ignoring `min_offset`.
    pub(crate) fn get_raw(&self, offset: i64) -> Option<CqEntry> {
        let (fi, i) = self.locate(u64::try_from(offset).ok()?)?;
        self.files[fi].entry(i)
    }
}
