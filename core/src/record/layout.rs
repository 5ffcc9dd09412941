//! Fixed-width parts of the stored record (CommitLog entry), as zerocopy structs.
//!
//! A record (spec §4.1) is: [`RecordHead`] (48 bytes), born host (8 or 20), store timestamp (8),
//! store host (8 or 20), [`RecordMid`] (16 bytes, ends with the body length), body, topic length
//! (1 byte in v1, 2 in v2), topic, properties length (2), properties. The host widths are chosen by
//! the sysflag bits [`super::sysflag::BORNHOST_V6_FLAG`] / [`super::sysflag::STOREHOSTADDRESS_V6_FLAG`].

use zerocopy::byteorder::big_endian::{I32, I64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// MESSAGE_MAGIC_CODE v1: 1-byte topic length.
pub const MESSAGE_MAGIC_CODE_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// MESSAGE_MAGIC_CODE_V2 (5.x): 2-byte topic length, used when the topic is longer than 127 bytes.
pub const MESSAGE_MAGIC_CODE_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// BLANK_MAGIC_CODE: end-of-file filler.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD4_3194_u32 as i32;
/// Length of the blank marker written at the end of a CommitLog file (size + magic), and the
/// room a writer must always keep free at the end of a file (RocketMQ END_FILE_MIN_BLANK_LENGTH).
pub const BLANK_RECORD_LEN: usize = 8;

/// Longest topic a v1 record can hold (signed 1-byte length).
pub const MAX_TOPIC_LEN_V1: usize = i8::MAX as usize;
/// Longest topic a v2 record can hold (signed 2-byte length).
pub const MAX_TOPIC_LEN_V2: usize = i16::MAX as usize;
/// Longest properties string (signed 2-byte length).
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Encoded width of an IPv4 host: 4 address bytes + int32 port.
pub const HOST_V4_LEN: usize = 8;
/// Encoded width of an IPv6 host: 16 address bytes + int32 port.
pub const HOST_V6_LEN: usize = 20;
/// Width of the store timestamp between the two hosts.
pub const STORE_TIMESTAMP_LEN: usize = 8;
/// Width of the properties length field.
pub const PROPERTIES_LEN_LEN: usize = 2;

/// Smallest record: v1, IPv4 hosts, empty body, 1-byte topic, no properties: 91 + 1.
pub const MIN_RECORD_LEN: usize = HEAD_LEN
    + HOST_V4_LEN
    + STORE_TIMESTAMP_LEN
    + HOST_V4_LEN
    + MID_LEN
    + 1
    + 1
    + PROPERTIES_LEN_LEN;

/// Fields 1-9: total size .. born timestamp.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHead {
    pub total_size: I32,
    pub magic: I32,
    pub body_crc: I32,
    pub queue_id: I32,
    pub flag: I32,
    pub queue_offset: I64,
    pub physical_offset: I64,
    pub sys_flag: I32,
    pub born_timestamp: I64,
}
/// Size of [`RecordHead`].
pub const HEAD_LEN: usize = 48;
const _: () = assert!(core::mem::size_of::<RecordHead>() == HEAD_LEN);

/// Fields 13-15: reconsume times, prepared transaction offset, body length.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordMid {
    pub reconsume_times: I32,
    pub prepared_transaction_offset: I64,
    pub body_len: I32,
}
/// Size of [`RecordMid`].
pub const MID_LEN: usize = 16;
const _: () = assert!(core::mem::size_of::<RecordMid>() == MID_LEN);

/// An IPv4 host as stored: address bytes then int32 port.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HostV4 {
    pub addr: [u8; 4],
    pub port: I32,
}
const _: () = assert!(core::mem::size_of::<HostV4>() == HOST_V4_LEN);

/// An IPv6 host as stored: address bytes then int32 port.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HostV6 {
    pub addr: [u8; 16],
    pub port: I32,
}
const _: () = assert!(core::mem::size_of::<HostV6>() == HOST_V6_LEN);

/// The 8-byte end-of-file marker: bytes left in the file, then BLANK_MAGIC_CODE.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BlankMarker {
    pub len: I32,
    pub magic: I32,
}
const _: () = assert!(core::mem::size_of::<BlankMarker>() == BLANK_RECORD_LEN);

/// Fixed prefix of one SEND_BATCH_MESSAGE entry (spec §4.7): total size, magic (0), body CRC (0),
/// flag, body length.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchEntryHead {
    pub total_size: I32,
    pub magic: I32,
    pub body_crc: I32,
    pub flag: I32,
    pub body_len: I32,
}
/// Size of [`BatchEntryHead`].
pub const BATCH_ENTRY_HEAD_LEN: usize = 20;
const _: () = assert!(core::mem::size_of::<BatchEntryHead>() == BATCH_ENTRY_HEAD_LEN);
/// Fixed bytes per batch entry: head + int16 properties length (total = 22 + body + properties).
pub const BATCH_ENTRY_FIXED_LEN: usize = BATCH_ENTRY_HEAD_LEN + PROPERTIES_LEN_LEN;

/// Width of an encoded host given whether it is IPv6.
#[inline]
pub const fn host_len(v6: bool) -> usize {
    if v6 {
        HOST_V6_LEN
    } else {
        HOST_V4_LEN
    }
}
