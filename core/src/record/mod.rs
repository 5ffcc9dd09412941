//! RocketMQ's stored message record (CommitLog entry, also the unit of pull/query/view bodies),
//! and what surrounds it: sysflag bits, properties strings, SEND_BATCH_MESSAGE bodies, tag hash,
//! offset message ids. Facts: spec `remoting-protocol.md` §4.
//!
//! Guarantees: decoding is zero-copy ([`RecordView`] borrows the bytes, fixed-width parts are
//! zerocopy big-endian structs, no `unsafe`); encoding writes into a caller-provided buffer and
//! never allocates; every length is checked before use, so malformed input yields a
//! [`RecordError`] naming the field and value, never a panic. Not here: compression (bodies are
//! stored as the producer sent them) and any I/O.
//!
//! API summary:
//! - [`MessageToStore`] + [`encode_record`]`(msg, queue_offset, physical_offset, store_timestamp, out)`
//!   → bytes written; [`MessageToStore::encoded_len`].
//! - [`encode_record_with`]`(.., prop_crc, out)` also appends RocketMQ 5.x's `__CRC32#`
//!   whole-record CRC property; [`MessageToStore::encoded_len_with`].
//! - [`RecordView::parse`] (structure) / [`RecordView::verify_crc`] / [`RecordView::parse_verified`];
//!   [`RecordView::verify_prop_crc`] checks `__CRC32#` when present;
//!   getters per field; [`parse_entry`] / [`iter_entries`] also recognise the blank marker.
//! - [`blank_record`], [`write_blank`], [`is_blank`], [`blank_len`], [`BLANK_RECORD_LEN`].
//! - [`properties`]: `get`, `get_str`, `iter`, `split_keys`, `PropertiesBuilder`, `write_pair`,
//!   name constants (`KEYS`, `TAGS`, `UNIQ_KEY`, ...).
//! - [`decode_batch`] → iterator of [`BatchItem`]; [`encode_batch_entry`] for clients.
//! - [`tag_hash`], [`tag_hash_bytes`], [`java_string_hash`], [`java_hash_continue`].
//! - [`offset_msg_id`] → [`OffsetMsgId`] (stack string), [`decode_offset_msg_id`].
//! - [`sysflag`] bit constants; [`body_crc`].

mod batch;
mod crc;
mod encode;
mod error;
pub mod layout;
mod msgid;
pub mod properties;
pub mod sysflag;
mod tag;
mod view;

pub use batch::{batch_entry_len, decode_batch, encode_batch_entry, BatchItem, BatchIter};
pub use crc::{body_crc, record_crc, record_crc_around, PROP_CRC32_LEN};
pub use encode::{blank_record, encode_record, encode_record_with, write_blank, MessageToStore};
pub use error::RecordError;
pub use layout::{
    BLANK_MAGIC_CODE, BLANK_RECORD_LEN, MAX_PROPERTIES_LEN, MAX_TOPIC_LEN_V1, MAX_TOPIC_LEN_V2,
    MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2, MIN_RECORD_LEN,
};
pub use msgid::{decode_offset_msg_id, offset_msg_id, OffsetMsgId, MSG_ID_V4_LEN, MSG_ID_V6_LEN};
pub use tag::{java_hash_continue, java_string_hash, tag_hash, tag_hash_bytes};
pub use view::{
    blank_len, is_blank, iter_entries, parse_entry, Entry, EntryIter, MagicVersion, PropCrc,
    RecordView,
};

#[cfg(test)]
mod tests;
