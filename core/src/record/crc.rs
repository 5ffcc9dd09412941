//! Body CRC as RocketMQ stores it: `java.util.zip.CRC32` (IEEE, zlib's crc32) ANDed with 0x7FFFFFFF.

/// CRC32 (IEEE) of `body`, masked to 31 bits like RocketMQ's `UtilAll.crc32`.
#[inline]
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}
