//! IndexFile layout (spec §5.4): 40-byte header, `slots` 4-byte slots, `entries` 20-byte
//! entries; all big-endian. File name: creation time as `yyyyMMddHHmmssSSS`.

use zerocopy::byteorder::big_endian::{I32, I64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use ramjet_core::record::{java_hash_continue, java_string_hash};

/// Header size.
pub const HEADER_LEN: usize = 40;
/// Slot size.
pub const SLOT_LEN: usize = 4;
/// Entry size.
pub const ENTRY_LEN: usize = 20;
/// RocketMQ's default slots per file (`maxHashSlotNum`).
pub const DEFAULT_SLOTS: u32 = 5_000_000;
/// RocketMQ's default entries per file (`maxIndexNum`); entry 0 is never used.
pub const DEFAULT_ENTRIES: u32 = 20_000_000;
/// Length of a file name (`yyyyMMddHHmmssSSS`).
pub const FILE_NAME_LEN: usize = 17;

/// The header as stored.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IndexHeader {
    pub begin_timestamp: I64,
    pub end_timestamp: I64,
    pub begin_phy_offset: I64,
    pub end_phy_offset: I64,
    pub hash_slot_count: I32,
    pub index_count: I32,
}
const _: () = assert!(core::mem::size_of::<IndexHeader>() == HEADER_LEN);

/// One entry as stored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct IndexEntry {
    pub key_hash: I32,
    pub phy_offset: I64,
    pub time_diff_s: I32,
    pub prev_index: I32,
}
const _: () = assert!(core::mem::size_of::<IndexEntry>() == ENTRY_LEN);

/// File size for a slot and entry count.
#[inline]
pub const fn file_len(slots: u32, entries: u32) -> u64 {
    HEADER_LEN as u64 + slots as u64 * SLOT_LEN as u64 + entries as u64 * ENTRY_LEN as u64
}

/// Position of entry `i` in the file.
#[inline]
pub const fn entry_pos(slots: u32, i: u32) -> u64 {
    HEADER_LEN as u64 + slots as u64 * SLOT_LEN as u64 + i as u64 * ENTRY_LEN as u64
}

/// The key RocketMQ indexes: `topic#key`, hashed with Java `String.hashCode`, made
/// non-negative with `Math.abs` (Integer.MIN_VALUE becomes 0). No allocation.
#[inline]
pub fn key_hash(topic: &str, key: &[u8]) -> i32 {
    let h = java_hash_continue(java_hash_continue(java_string_hash(topic), b"#"), key);
    h.checked_abs().unwrap_or(0)
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// File name for a creation time in ms since the epoch: `yyyyMMddHHmmssSSS`, in UTC (RocketMQ
/// uses the local time zone; a shard's names only need to sort by time).
pub fn file_name(ms: i64) -> String {
    let ms = ms.clamp(0, 253_402_300_799_999); // year 9999: keeps the name 17 digits
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}{:03}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Creation time (ms) of a file named by [`file_name`]; `None` for other names.
pub fn parse_file_name(name: &str) -> Option<i64> {
    if name.len() != FILE_NAME_LEN || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| name[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s, ms) = (n(8..10)?, n(10..12)?, n(12..14)?, n(14..17)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + ms)
}
