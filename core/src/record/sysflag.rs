//! SYSFLAG bits of a stored record (spec §4.3, Java `MessageSysFlag`).

/// Body is compressed.
pub const COMPRESSED_FLAG: i32 = 0x1;
/// Topic uses MULTI_TAG filtering.
pub const MULTI_TAGS_FLAG: i32 = 0x2;
/// Transaction type bits (2-3).
pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
/// Not a transactional message.
pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
/// Half (prepared) message.
pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
/// Committed transactional message.
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
/// Rolled-back transactional message.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
/// Born host is IPv6 (20 bytes on disk instead of 8).
pub const BORNHOST_V6_FLAG: i32 = 0x10;
/// Store host is IPv6 (20 bytes on disk instead of 8).
pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x20;
/// 5.x inner batch: needs unwrapping by the client.
pub const NEED_UNWRAP_FLAG: i32 = 0x40;
/// 5.x inner batch.
pub const INNER_BATCH_FLAG: i32 = 0x80;
/// 5.x compression type bits (8-10).
pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
/// 5.x LZ4 compression.
pub const COMPRESSION_LZ4_TYPE: i32 = 0x100;
/// 5.x ZSTD compression.
pub const COMPRESSION_ZSTD_TYPE: i32 = 0x200;
/// 5.x ZLIB compression (0 also means ZLIB for old producers).
pub const COMPRESSION_ZLIB_TYPE: i32 = 0x300;

/// The transaction type bits of `sys_flag`.
#[inline]
pub const fn transaction_value(sys_flag: i32) -> i32 {
    sys_flag & TRANSACTION_TYPE_MASK
}

/// `sys_flag` with its transaction type replaced by `ty` (one of the `TRANSACTION_*` values).
#[inline]
pub const fn reset_transaction_value(sys_flag: i32, ty: i32) -> i32 {
    (sys_flag & !TRANSACTION_TYPE_MASK) | (ty & TRANSACTION_TYPE_MASK)
}

/// Whether a record with this sysflag goes to a consume queue (prepared and rollback do not).
#[inline]
pub const fn is_dispatched(sys_flag: i32) -> bool {
    matches!(
        transaction_value(sys_flag),
        TRANSACTION_NOT_TYPE | TRANSACTION_COMMIT_TYPE
    )
}
