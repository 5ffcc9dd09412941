//! One IndexFile: in memory while it takes entries (and until its sealed form is on disk), then
//! read from disk with positioned reads.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use zerocopy::byteorder::big_endian::{I32, I64};
use zerocopy::{FromBytes, IntoBytes};

use super::error::IndexError;
use super::layout::{entry_pos, IndexEntry, IndexHeader, ENTRY_LEN, HEADER_LEN, SLOT_LEN};

/// Where a file's slots and entries live.
#[derive(Debug)]
pub(crate) enum Body {
    /// Slots in native order; entries as stored (entry 0 is the unused placeholder). The entries
    /// buffer has the whole file's capacity reserved, so appends never reallocate.
    Memory { slots: Vec<u32>, entries: Vec<u8> },
    /// Sealed and durable: a query opens the file and reads with pread (queries are rare and
    /// served from the page cache; holding no descriptor keeps thousands of files cheap).
    Disk,
}

/// Header values of a file, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderValues {
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    pub begin_phy_offset: i64,
    pub end_phy_offset: i64,
    pub hash_slot_count: i32,
    /// Next entry number; starts at 1.
    pub index_count: u32,
}

impl HeaderValues {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let h = IndexHeader {
            begin_timestamp: I64::new(self.begin_timestamp),
            end_timestamp: I64::new(self.end_timestamp),
            begin_phy_offset: I64::new(self.begin_phy_offset),
            end_phy_offset: I64::new(self.end_phy_offset),
            hash_slot_count: I32::new(self.hash_slot_count),
            index_count: I32::new(self.index_count as i32),
        };
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(h.as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<HeaderValues> {
        let (h, _) = IndexHeader::ref_from_prefix(bytes).ok()?;
        Some(HeaderValues {
            begin_timestamp: h.begin_timestamp.get(),
            end_timestamp: h.end_timestamp.get(),
            begin_phy_offset: h.begin_phy_offset.get(),
            end_phy_offset: h.end_phy_offset.get(),
            hash_slot_count: h.hash_slot_count.get(),
            index_count: u32::try_from(h.index_count.get()).ok()?,
        })
    }
}

/// One IndexFile.
#[derive(Debug)]
pub struct IndexFile {
    pub(crate) name_ms: i64,
    pub(crate) path: PathBuf,
    pub(crate) slots: u32,
    pub(crate) max_entries: u32,
    pub(crate) header: HeaderValues,
    pub(crate) body: Body,
    /// Entries below this number are on disk.
    pub(crate) durable_count: u32,
    /// The on-disk header is older than `header`.
    pub(crate) header_dirty: bool,
    /// The whole slot table is on disk (written once, when the file is sealed).
    pub(crate) slots_durable: bool,
    pub(crate) on_disk: bool,
    /// Populates `entries` ahead of `put` (page faults off the shard thread).
    ahead: crate::prefault::Ahead,
    pub(crate) generation: u64,
}

impl IndexFile {
    /// A new, empty file in memory. Like RocketMQ, the header starts from the previous file's end.
    pub(crate) fn new(
        path: PathBuf,
        name_ms: i64,
        slots: u32,
        max_entries: u32,
        prev_end_phy: i64,
        prev_end_ts: i64,
    ) -> IndexFile {
        let mut entries = Vec::with_capacity(max_entries as usize * ENTRY_LEN);
        crate::prefault::advise_huge(&mut entries);
        entries.extend_from_slice(&[0u8; ENTRY_LEN]);
        let mut ahead = crate::prefault::Ahead::default();
        ahead.after_write(&entries);
        // Hash slots are hit at random: populate the whole table ahead of the first puts.
        let mut slot_table = vec![0u32; slots as usize];
        crate::prefault::advise_huge(&mut slot_table);
        crate::prefault::populate(
            slot_table.as_ptr() as usize,
            slot_table.len() * std::mem::size_of::<u32>(),
        );
        IndexFile {
            name_ms,
            path,
            slots,
            max_entries,
            header: HeaderValues {
                begin_timestamp: prev_end_ts,
                end_timestamp: prev_end_ts,
                begin_phy_offset: prev_end_phy,
                end_phy_offset: prev_end_phy,
                hash_slot_count: 0,
                index_count: 1,
            },
            body: Body::Memory {
                slots: slot_table,
                entries,
            },
            durable_count: 1,
            header_dirty: true,
            slots_durable: false,
            on_disk: false,
            ahead,
            generation: 0,
        }
    }

    /// A sealed file found on disk at load.
    pub(crate) fn sealed_on_disk(
        path: PathBuf,
        name_ms: i64,
        slots: u32,
        max_entries: u32,
        header: HeaderValues,
    ) -> IndexFile {
        IndexFile {
            name_ms,
            path,
            slots,
            max_entries,
            header,
            body: Body::Disk,
            durable_count: header.index_count,
            header_dirty: false,
            slots_durable: true,
            on_disk: true,
            ahead: crate::prefault::Ahead::default(),
            generation: 0,
        }
    }

    /// Header values.
    pub fn header(&self) -> &HeaderValues {
        &self.header
    }

    /// Entries held (index count - 1).
    pub fn entry_count(&self) -> u32 {
        self.header.index_count.saturating_sub(1)
    }

    /// No room for another entry (RocketMQ `isWriteFull`).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.header.index_count >= self.max_entries
    }

    /// Whether it holds no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.header.index_count <= 1
    }

    /// Adds an entry; false when the file is full or no longer in memory.
    pub(crate) fn put(&mut self, key_hash: i32, phy: u64, store_ts: i64) -> bool {
        if self.is_full() {
            return false;
        }
        let Body::Memory { slots, entries } = &mut self.body else {
            return false;
        };
        let count = self.header.index_count;
        let slot = (key_hash as u32 % self.slots) as usize;
        let mut prev = slots[slot];
        if prev >= count {
            prev = 0;
        }
        if count <= 1 {
            self.header.begin_phy_offset = phy as i64;
            self.header.begin_timestamp = store_ts;
        }
        let diff_s = if self.header.begin_timestamp <= 0 {
            0
        } else {
            ((store_ts - self.header.begin_timestamp) / 1000).clamp(0, i64::from(i32::MAX))
        };
        let e = IndexEntry {
            key_hash: I32::new(key_hash),
            phy_offset: I64::new(phy as i64),
            time_diff_s: I32::new(diff_s as i32),
            prev_index: I32::new(prev as i32),
        };
        entries.extend_from_slice(e.as_bytes());
        self.ahead.after_write(entries);
        slots[slot] = count;
        self.header.hash_slot_count = self.header.hash_slot_count.saturating_add(1);
        self.header.index_count = count + 1;
        self.header.end_phy_offset = phy as i64;
        self.header.end_timestamp = store_ts;
        self.header_dirty = true;
        true
    }

    fn read_slot(&self, disk: Option<&std::fs::File>, slot: u32) -> Result<u32, IndexError> {
        match (&self.body, disk) {
            (Body::Memory { slots, .. }, _) => Ok(slots[slot as usize]),
            (Body::Disk, None) => Err(self.not_open()),
            (Body::Disk, Some(file)) => {
                let mut b = [0u8; SLOT_LEN];
                let pos = (HEADER_LEN + slot as usize * SLOT_LEN) as u64;
                file.read_exact_at(&mut b, pos)
                    .map_err(|e| self.read_err(e))?;
                Ok(u32::try_from(i32::from_be_bytes(b)).unwrap_or(0))
            }
        }
    }

    pub(crate) fn read_entry(
        &self,
        disk: Option<&std::fs::File>,
        i: u32,
    ) -> Result<IndexEntry, IndexError> {
        match (&self.body, disk) {
            (Body::Memory { entries, .. }, _) => {
                let at = i as usize * ENTRY_LEN;
                IndexEntry::read_from_prefix(entries.get(at..).unwrap_or(&[]))
                    .map(|(e, _)| e)
                    .map_err(|_| IndexError::Layout {
                        path: self.path.clone(),
                        reason: format!("entry {i} beyond the {} held", self.header.index_count),
                    })
            }
            (Body::Disk, None) => Err(self.not_open()),
            (Body::Disk, Some(file)) => {
                let mut b = [0u8; ENTRY_LEN];
                file.read_exact_at(&mut b, entry_pos(self.slots, i))
                    .map_err(|e| self.read_err(e))?;
                IndexEntry::read_from_bytes(&b).map_err(|_| IndexError::Layout {
                    path: self.path.clone(),
                    reason: format!("entry {i} unreadable"),
                })
            }
        }
    }

    fn not_open(&self) -> IndexError {
        IndexError::Layout {
            path: self.path.clone(),
            reason: "file on disk read without opening it".into(),
        }
    }

    fn read_err(&self, e: std::io::Error) -> IndexError {
        IndexError::Read {
            op: "reading",
            path: self.path.clone(),
            source: e,
        }
    }

    /// RocketMQ `isTimeMatched`: the file's time span overlaps [begin, end].
    pub fn time_matched(&self, begin: i64, end: i64) -> bool {
        let (b, e) = (self.header.begin_timestamp, self.header.end_timestamp);
        (begin < b && end > e) || (begin >= b && begin <= e) || (end >= b && end <= e)
    }

    /// Walks the chain of `key_hash`'s slot (newest first), adding the offsets of entries with
    /// that hash whose time (begin + diff seconds) is in [begin, end], until `out` holds `max`.
    pub(crate) fn select(
        &self,
        key_hash: i32,
        max: usize,
        begin: i64,
        end: i64,
        out: &mut Vec<u64>,
    ) -> Result<(), IndexError> {
        let count = self.header.index_count;
        if count <= 1 {
            return Ok(());
        }
        let file = match self.body {
            Body::Memory { .. } => None,
            Body::Disk => Some(
                std::fs::File::open(&self.path).map_err(|e| IndexError::Read {
                    op: "opening",
                    path: self.path.clone(),
                    source: e,
                })?,
            ),
        };
        let disk = file.as_ref();
        let mut next = self.read_slot(disk, key_hash as u32 % self.slots)?;
        // The chain is bounded by the entry count; prev < current always holds for entries we
        // wrote, and the step bound protects against a corrupt file's cycles.
        let mut steps = 0u32;
        while next > 0 && next < count && out.len() < max && steps < count {
            steps += 1;
            let e = self.read_entry(disk, next)?;
            let diff = e.time_diff_s.get();
            if diff < 0 {
                break;
            }
            let time = self.header.begin_timestamp + i64::from(diff) * 1000;
            if e.key_hash.get() == key_hash && time >= begin && time <= end {
                out.push(e.phy_offset.get() as u64);
            }
            let prev = e.prev_index.get();
            if prev <= 0 || prev as u32 >= next || time < begin {
                break;
            }
            next = prev as u32;
        }
        Ok(())
    }

    /// Drops the newest entries whose record is at or past `max_phy` (in-memory files only);
    /// returns whether anything changed.
    pub(crate) fn truncate(&mut self, max_phy: u64) -> bool {
        let Body::Memory { slots, entries } = &mut self.body else {
            return false;
        };
        let mut changed = false;
        while self.header.index_count > 1 {
            let last = self.header.index_count - 1;
            let at = last as usize * ENTRY_LEN;
            let Ok((e, _)) = IndexEntry::read_from_prefix(&entries[at..]) else {
                break;
            };
            if (e.phy_offset.get() as u64) < max_phy {
                break;
            }
            let slot = (e.key_hash.get() as u32 % self.slots) as usize;
            slots[slot] = u32::try_from(e.prev_index.get()).unwrap_or(0);
            entries.truncate(at);
            self.header.index_count = last;
            self.header.hash_slot_count = self.header.hash_slot_count.saturating_sub(1);
            changed = true;
        }
        if changed {
            let last = self.header.index_count - 1;
            if last == 0 {
                self.header.end_phy_offset = self.header.begin_phy_offset;
                self.header.end_timestamp = self.header.begin_timestamp;
            } else if let Ok((e, _)) =
                IndexEntry::read_from_prefix(&entries[last as usize * ENTRY_LEN..])
            {
                self.header.end_phy_offset = e.phy_offset.get();
                self.header.end_timestamp =
                    self.header.begin_timestamp + i64::from(e.time_diff_s.get()) * 1000;
            }
            self.durable_count = self.durable_count.min(self.header.index_count);
            self.slots_durable = false;
            self.header_dirty = true;
            self.generation += 1;
        }
        changed
    }
}
