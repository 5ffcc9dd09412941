//! The 20-byte ConsumeQueue unit (spec §5.3) and file naming.

use zerocopy::byteorder::big_endian::{I32, I64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes per unit.
pub const CQ_UNIT_LEN: usize = 20;
/// RocketMQ's units per file (`mappedFileSizeConsumeQueue` = 6,000,000 bytes).
pub const DEFAULT_UNITS_PER_FILE: u32 = 300_000;
/// Size of the filler units RocketMQ writes before the first unit of a queue whose first file
/// starts at a non-zero offset (physical offset 0, tags code 0).
pub const FILLER_SIZE: i32 = i32::MAX;

/// One unit as stored: CommitLog offset, record size, tags code; big-endian.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CqUnit {
    pub physical_offset: I64,
    pub size: I32,
    pub tags_code: I64,
}
const _: () = assert!(core::mem::size_of::<CqUnit>() == CQ_UNIT_LEN);

/// A unit, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// CommitLog offset of the record.
    pub physical_offset: u64,
    /// Record size in bytes.
    pub size: u32,
    /// Tag hash, or delivery time for `SCHEDULE_TOPIC_XXXX`.
    pub tags_code: i64,
}

impl CqEntry {
    /// A filler unit (placed before the first real unit of a queue that starts mid-file).
    #[inline]
    pub fn is_filler(&self) -> bool {
        self.physical_offset == 0 && self.size == FILLER_SIZE as u32
    }

    /// End of the record in the CommitLog.
    #[inline]
    pub fn end(&self) -> u64 {
        self.physical_offset + u64::from(self.size)
    }

    pub(crate) fn to_unit(self) -> CqUnit {
        CqUnit {
            physical_offset: I64::new(self.physical_offset as i64),
            size: I32::new(self.size as i32),
            tags_code: I64::new(self.tags_code),
        }
    }

    pub(crate) fn filler() -> CqEntry {
        CqEntry {
            physical_offset: 0,
            size: FILLER_SIZE as u32,
            tags_code: 0,
        }
    }
}

/// Decodes the unit at the start of `bytes`; `None` for an invalid unit (negative offset,
/// size <= 0: the unwritten tail of a file) or fewer than 20 bytes.
#[inline]
pub fn decode_unit(bytes: &[u8]) -> Option<CqEntry> {
    let (u, _) = CqUnit::ref_from_prefix(bytes).ok()?;
    let phys = u.physical_offset.get();
    let size = u.size.get();
    (phys >= 0 && size > 0).then(|| CqEntry {
        physical_offset: phys as u64,
        size: size as u32,
        tags_code: u.tags_code.get(),
    })
}

/// File name of the ConsumeQueue file whose first unit is `start_unit`: its byte offset
/// (`start_unit * 20`) as 20 zero-padded digits.
pub fn file_name(start_unit: u64) -> String {
    format!("{:020}", start_unit * CQ_UNIT_LEN as u64)
}

/// The first unit of a file named `name`, if it is a ConsumeQueue file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes: u64 = name.parse().ok()?;
    let (unit, rest) = (bytes / CQ_UNIT_LEN as u64, bytes % CQ_UNIT_LEN as u64);
    (rest == 0).then_some(unit)
}
