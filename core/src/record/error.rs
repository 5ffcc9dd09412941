//! Errors of the record codec. Each names the field that failed and the value seen.

/// What went wrong while encoding or decoding a stored record, a batch body, a properties
/// string or a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The input ended before a field could be read.
    #[error("record truncated at field {field}: need {need} bytes from position {at}, only {have} available")]
    Truncated {
        field: &'static str,
        at: usize,
        need: usize,
        have: usize,
    },
    /// The magic code is neither MESSAGE_MAGIC_CODE (v1/v2) nor BLANK_MAGIC_CODE.
    #[error(
        "bad magic code {magic:#010x} at position 4; expected 0xdaa320a7 (v1) or 0xdaa320ab (v2)"
    )]
    BadMagic { magic: u32 },
    /// A BLANK end-of-file record was found where a message record was expected.
    #[error("blank end-of-file record ({len} bytes left in the file) where a message record was expected")]
    UnexpectedBlank { len: u32 },
    /// TOTALSIZE is below the smallest possible record or beyond the bytes available.
    #[error("TOTALSIZE {total_size} out of range: minimum {min}, bytes available {available}")]
    TotalSizeOutOfRange {
        total_size: i32,
        min: usize,
        available: usize,
    },
    /// TOTALSIZE disagrees with the sum of the field lengths.
    #[error("TOTALSIZE {total_size} disagrees with the field lengths, which add up to {computed}")]
    TotalSizeMismatch { total_size: i32, computed: usize },
    /// A length field holds a negative value.
    #[error("negative length in field {field}: {value}")]
    NegativeLength { field: &'static str, value: i64 },
    /// The stored body CRC does not match the body.
    #[error("body CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BodyCrcMismatch { stored: u32, computed: u32 },
    /// The `__CRC32#` property (whole-record CRC) does not match the record bytes it covers.
    #[error("record CRC mismatch: property __CRC32# holds {stored}, the record's first {covered} bytes give {computed}")]
    PropCrcMismatch {
        stored: u32,
        computed: u32,
        covered: usize,
    },
    /// The `__CRC32#` property ending the properties is not 10 digits closed by 0x02.
    #[error(
        "malformed __CRC32# property: value bytes {value:?} (want 10 decimal digits then 0x02)"
    )]
    PropCrcMalformed { value: String },
    /// The topic is not UTF-8.
    #[error("topic is not valid UTF-8 ({len} bytes)")]
    TopicNotUtf8 { len: usize },
    /// The topic is empty or too long for the record format.
    #[error("topic length {len} bytes out of range: 1..={max}")]
    TopicLength { len: usize, max: usize },
    /// The properties string is longer than its int16 length field allows.
    #[error("properties string is {len} bytes, the limit is {max}")]
    PropertiesTooLong { len: usize, max: usize },
    /// The body is longer than the record format allows.
    #[error("body is {len} bytes, the limit is {max}")]
    BodyTooLong { len: usize, max: usize },
    /// The caller's output buffer is too small.
    #[error("output buffer too small: need {need} bytes, have {have}")]
    BufferTooSmall { need: usize, have: usize },
    /// A property name or value contains a separator byte (0x01 or 0x02) or is empty.
    #[error("property {name:?} cannot be encoded: {reason}")]
    BadProperty { name: String, reason: &'static str },
    /// A batch entry declares a TOTALSIZE that disagrees with its body and properties lengths.
    #[error("batch entry {index} at position {at}: TOTALSIZE {total_size} but fields add up to {computed}")]
    BatchEntrySize {
        index: usize,
        at: usize,
        total_size: i32,
        computed: usize,
    },
    /// An offset message id is not 32 or 56 hexadecimal characters.
    #[error("bad offset message id {id:?}: {reason}")]
    BadMessageId { id: String, reason: &'static str },
}
