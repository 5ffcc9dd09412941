//! Body CRC as RocketMQ stores it: `java.util.zip.CRC32` (IEEE, zlib's crc32) ANDed with 0x7FFFFFFF.

/// CRC32 (IEEE) of `body`, masked to 31 bits like RocketMQ's `UtilAll.crc32`.
#[inline]
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// Bytes of the `__CRC32#` property RocketMQ 5.x appends when `enabledAppendPropCRC` is on
/// (`CommitLog.CRC32_RESERVED_LEN`): the name (8 bytes), 0x01, 10 decimal digits, 0x02. It is
/// always the last pair of the properties string, so the last bytes of the record.
pub const PROP_CRC32_LEN: usize = super::properties::CRC32.len() + 1 + PROP_CRC32_DIGITS + 1;
/// Digits of the `__CRC32#` value.
pub const PROP_CRC32_DIGITS: usize = 10;

/// The whole-record CRC held by `__CRC32#`: CRC32 (IEEE) of every record byte before the
/// property (TOTALSIZE up to the end of the preceding properties), masked to 31 bits.
#[inline]
pub fn record_crc(covered: &[u8]) -> u32 {
    crc32fast::hash(covered) & 0x7FFF_FFFF
}

/// [`record_crc`] of `head ++ body ++ tail` without reading the body: `body_full_crc` is the
/// unmasked CRC32 of the body's `body_len` bytes (computed once for the body CRC field), joined
/// to the CRCs of the pieces around it with CRC32's combine rule (a multiply by x^(8 * len)
/// modulo the polynomial per set bit of `body_len`, about 0.1 us for 4 KiB). Why: the encoder
/// copies the body into a write buffer that is usually cold; a second CRC pass over that
/// copy stalled on memory and was the largest single cost of a 4 KiB append
/// (perf/results/session12-2026-12-05.md).
#[inline]
pub fn record_crc_around(head: &[u8], body_full_crc: u32, body_len: usize, tail: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.combine(&crc32fast::Hasher::new_with_initial_len(
        body_full_crc,
        body_len as u64,
    ));
    h.update(tail);
    h.finalize() & 0x7FFF_FFFF
}

/// Writes the `__CRC32#` pair for `crc` into `out` (exactly [`PROP_CRC32_LEN`] bytes). The
/// digits are written as Java's `MessageDecoder.createCrc32` writes them: least significant
/// digit first, padded with '0' up to 10 digits (so 12345 is stored as "5432100000").
#[inline]
pub fn write_prop_crc(out: &mut [u8], crc: u32) {
    let name = super::properties::CRC32.as_bytes();
    out[..name.len()].copy_from_slice(name);
    out[name.len()] = super::properties::NAME_VALUE_SEPARATOR;
    let mut v = crc;
    for d in &mut out[name.len() + 1..name.len() + 1 + PROP_CRC32_DIGITS] {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out[PROP_CRC32_LEN - 1] = super::properties::PROPERTY_SEPARATOR;
}

/// Reads the value of a `__CRC32#` pair (10 digits, least significant first, as Java's
/// `checkMessageAndReturnSize` reads them). `None` when a byte is not a digit or the value does
/// not fit the 31-bit CRC.
#[inline]
pub fn read_prop_crc_digits(digits: &[u8]) -> Option<u32> {
    let mut v: u64 = 0;
    for &d in digits.iter().rev() {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    if v > 0x7FFF_FFFF {
        return None;
    }
    Some(v as u32)
}
