//! Encoding a message into the stored record format, into a caller-provided buffer.

use std::net::SocketAddr;

use zerocopy::byteorder::big_endian::{I16, I32, I64};
use zerocopy::IntoBytes;

use super::crc::{record_crc, record_crc_around, write_prop_crc, PROP_CRC32_LEN};
use super::error::RecordError;
use super::layout::{
    host_len, BlankMarker, HostV4, HostV6, RecordHead, RecordMid, BLANK_MAGIC_CODE,
    BLANK_RECORD_LEN, HEAD_LEN, MAX_PROPERTIES_LEN, MAX_TOPIC_LEN_V1, MAX_TOPIC_LEN_V2,
    MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2, MID_LEN, PROPERTIES_LEN_LEN, STORE_TIMESTAMP_LEN,
};
use super::properties::PROPERTY_SEPARATOR;
use super::sysflag::{BORNHOST_V6_FLAG, STOREHOSTADDRESS_V6_FLAG};

/// A message about to be stored, borrowed from the request buffer. No allocation.
#[derive(Debug, Clone, Copy)]
pub struct MessageToStore<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub flag: i32,
    pub body: &'a [u8],
    /// Already RocketMQ-encoded: name 0x01 value 0x02 ...
    pub properties: &'a [u8],
    /// Written as given, except bits BORNHOST_V6_FLAG / STOREHOSTADDRESS_V6_FLAG, which the
    /// encoder sets from the address families of `born_host` / `store_host`.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// What goes in the ConsumeQueue unit (tag hash, or delivery time); not part of the record.
    pub tags_code: i64,
}

impl<'a> MessageToStore<'a> {
    /// A copy of the stored record `view` for `topic` / `queue_id` with `properties`: body,
    /// flag, sysflag, born time and host, reconsume count and prepared-transaction offset as
    /// stored; `store_host` this broker; `tags_code` 0 (the caller sets what its queue needs).
    /// What a broker stores when it moves a message (a delayed message coming due, a retry, a
    /// committed or renewed half message).
    pub fn copy_of(
        view: &super::view::RecordView<'a>,
        topic: &'a str,
        queue_id: i32,
        properties: &'a [u8],
        store_host: SocketAddr,
    ) -> MessageToStore<'a> {
        MessageToStore {
            topic,
            queue_id,
            flag: view.flag(),
            body: view.body(),
            properties,
            sys_flag: view.sys_flag(),
            born_timestamp: view.born_timestamp(),
            born_host: view.born_host(),
            store_host,
            reconsume_times: view.reconsume_times(),
            prepared_transaction_offset: view.prepared_transaction_offset(),
            tags_code: 0,
        }
    }
}

impl MessageToStore<'_> {
    /// The sysflag as it will be stored: host-family bits derived from the addresses.
    #[inline]
    pub fn stored_sys_flag(&self) -> i32 {
        let mut f = self.sys_flag & !(BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG);
        if self.born_host.is_ipv6() {
            f |= BORNHOST_V6_FLAG;
        }
        if self.store_host.is_ipv6() {
            f |= STOREHOSTADDRESS_V6_FLAG;
        }
        f
    }

    /// Whether the record uses magic v2 (2-byte topic length): only for topics over 127 bytes,
    /// as RocketMQ 5.x does with `autoMessageVersionOnTopicLen`.
    #[inline]
    pub fn uses_magic_v2(&self) -> bool {
        self.topic.len() > MAX_TOPIC_LEN_V1
    }

    /// Length of the stored record in bytes, without the `__CRC32#` property.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        let topic_len_len = if self.uses_magic_v2() { 2 } else { 1 };
        HEAD_LEN
            + host_len(self.born_host.is_ipv6())
            + STORE_TIMESTAMP_LEN
            + host_len(self.store_host.is_ipv6())
            + MID_LEN
            + self.body.len()
            + topic_len_len
            + self.topic.len()
            + PROPERTIES_LEN_LEN
            + self.properties.len()
    }

    /// Bytes the `__CRC32#` property adds to the record (0 when `prop_crc` is false): a 0x02
    /// closing the given properties when they do not end with one (as RocketMQ 5.x's
    /// `needAppendLastPropertySeparator`), plus [`PROP_CRC32_LEN`].
    #[inline]
    pub fn prop_crc_extra_len(&self, prop_crc: bool) -> usize {
        if !prop_crc {
            return 0;
        }
        let sep = match self.properties.last() {
            Some(&b) if b != PROPERTY_SEPARATOR => 1,
            _ => 0,
        };
        sep + PROP_CRC32_LEN
    }

    /// Length of the stored record in bytes as [`encode_record_with`] writes it: with the
    /// `__CRC32#` property when `prop_crc` is true, else [`MessageToStore::encoded_len`].
    #[inline]
    pub fn encoded_len_with(&self, prop_crc: bool) -> usize {
        self.encoded_len() + self.prop_crc_extra_len(prop_crc)
    }

    /// Checks the limits of the record format (topic, properties and total lengths).
    pub fn check_limits(&self) -> Result<(), RecordError> {
        self.check_limits_with(false)
    }

    /// [`MessageToStore::check_limits`] for the record as written with or without the
    /// `__CRC32#` property (which counts toward the properties limit).
    pub fn check_limits_with(&self, prop_crc: bool) -> Result<(), RecordError> {
        if self.topic.is_empty() || self.topic.len() > MAX_TOPIC_LEN_V2 {
            return Err(RecordError::TopicLength {
                len: self.topic.len(),
                max: MAX_TOPIC_LEN_V2,
            });
        }
        let props_len = self.properties.len() + self.prop_crc_extra_len(prop_crc);
        if props_len > MAX_PROPERTIES_LEN {
            return Err(RecordError::PropertiesTooLong {
                len: props_len,
                max: MAX_PROPERTIES_LEN,
            });
        }
        let max_body = i32::MAX as usize - (self.encoded_len_with(prop_crc) - self.body.len());
        if self.body.len() > max_body {
            return Err(RecordError::BodyTooLong {
                len: self.body.len(),
                max: max_body,
            });
        }
        Ok(())
    }
}

/// Writes `value` at `out[*pos..]` and advances `pos`. The caller has checked the room.
#[inline]
fn put(out: &mut [u8], pos: &mut usize, bytes: &[u8]) {
    out[*pos..*pos + bytes.len()].copy_from_slice(bytes);
    *pos += bytes.len();
}

#[inline]
fn put_host(out: &mut [u8], pos: &mut usize, host: &SocketAddr) {
    match host {
        SocketAddr::V4(a) => put(
            out,
            pos,
            HostV4 {
                addr: a.ip().octets(),
                port: I32::new(i32::from(a.port())),
            }
            .as_bytes(),
        ),
        SocketAddr::V6(a) => put(
            out,
            pos,
            HostV6 {
                addr: a.ip().octets(),
                port: I32::new(i32::from(a.port())),
            }
            .as_bytes(),
        ),
    }
}

/// Writes the full stored record (RocketMQ CommitLog format, body CRC included, no
/// `__CRC32#` property) into `out[..len]` and returns `len`. Never allocates.
pub fn encode_record(
    msg: &MessageToStore<'_>,
    queue_offset: i64,
    physical_offset: i64,
    store_timestamp: i64,
    out: &mut [u8],
) -> Result<usize, RecordError> {
    encode_record_with(
        msg,
        queue_offset,
        physical_offset,
        store_timestamp,
        false,
        out,
    )
}

/// Bodies at least this long get their whole-record CRC by combining CRCs around the body
/// (`record_crc_around`) instead of a second pass over the record. Below it the second pass is
/// cheaper: `cargo bench -p ramjet-core --bench record -- encode_prop_crc` gave 64 ns (one
/// pass) vs 162 ns (combine) for a 100 B body, 189 vs 154 ns for 4 KiB, in cache.
const PROP_CRC_COMBINE_MIN_BODY: usize = 1024;

/// [`encode_record`], and with `prop_crc` also the whole-record CRC as RocketMQ 5.x writes it
/// with `enabledAppendPropCRC`: the properties string gets a closing 0x02 if it lacks one, then
/// the pair `__CRC32#` 0x01 <10 digits> 0x02 as its last bytes, holding the CRC32 (31-bit
/// masked) of every record byte before that pair. Returns
/// [`MessageToStore::encoded_len_with`]`(prop_crc)`. Never allocates.
pub fn encode_record_with(
    msg: &MessageToStore<'_>,
    queue_offset: i64,
    physical_offset: i64,
    store_timestamp: i64,
    prop_crc: bool,
    out: &mut [u8],
) -> Result<usize, RecordError> {
    msg.check_limits_with(prop_crc)?;
    let len = msg.encoded_len_with(prop_crc);
    let extra = msg.prop_crc_extra_len(prop_crc);
    if out.len() < len {
        return Err(RecordError::BufferTooSmall {
            need: len,
            have: out.len(),
        });
    }
    let v2 = msg.uses_magic_v2();
    // The body CRC field is this masked to 31 bits (`body_crc`); unmasked, it also gives the
    // whole-record CRC without a second pass over the body (`record_crc_around`).
    let body_full_crc = crc32fast::hash(msg.body);
    let head = RecordHead {
        // check_limits keeps len within i32.
        total_size: I32::new(len as i32),
        magic: I32::new(if v2 {
            MESSAGE_MAGIC_CODE_V2
        } else {
            MESSAGE_MAGIC_CODE_V1
        }),
        body_crc: I32::new((body_full_crc & 0x7FFF_FFFF) as i32),
        queue_id: I32::new(msg.queue_id),
        flag: I32::new(msg.flag),
        queue_offset: I64::new(queue_offset),
        physical_offset: I64::new(physical_offset),
        sys_flag: I32::new(msg.stored_sys_flag()),
        born_timestamp: I64::new(msg.born_timestamp),
    };
    let mid = RecordMid {
        reconsume_times: I32::new(msg.reconsume_times),
        prepared_transaction_offset: I64::new(msg.prepared_transaction_offset),
        body_len: I32::new(msg.body.len() as i32),
    };
    let mut pos = 0;
    put(out, &mut pos, head.as_bytes());
    put_host(out, &mut pos, &msg.born_host);
    put(out, &mut pos, I64::new(store_timestamp).as_bytes());
    put_host(out, &mut pos, &msg.store_host);
    put(out, &mut pos, mid.as_bytes());
    let body_start = pos;
    put(out, &mut pos, msg.body);
    let body_end = pos;
    if v2 {
        put(out, &mut pos, I16::new(msg.topic.len() as i16).as_bytes());
    } else {
        put(out, &mut pos, &[msg.topic.len() as u8]);
    }
    put(out, &mut pos, msg.topic.as_bytes());
    put(
        out,
        &mut pos,
        // check_limits_with keeps this within MAX_PROPERTIES_LEN (i16::MAX).
        I16::new((msg.properties.len() + extra) as i16).as_bytes(),
    );
    put(out, &mut pos, msg.properties);
    if prop_crc {
        if extra > PROP_CRC32_LEN {
            put(out, &mut pos, &[PROPERTY_SEPARATOR]);
        }
        let crc = if msg.body.len() >= PROP_CRC_COMBINE_MIN_BODY {
            let crc = record_crc_around(
                &out[..body_start],
                body_full_crc,
                msg.body.len(),
                &out[body_end..pos],
            );
            debug_assert_eq!(crc, record_crc(&out[..pos]));
            crc
        } else {
            record_crc(&out[..pos])
        };
        write_prop_crc(&mut out[pos..pos + PROP_CRC32_LEN], crc);
        pos += PROP_CRC32_LEN;
    }
    debug_assert_eq!(pos, len);
    Ok(len)
}

/// The 8-byte end-of-file marker for a file with `len` bytes left from the marker's position.
#[inline]
pub fn blank_record(len: u32) -> [u8; BLANK_RECORD_LEN] {
    let mut out = [0u8; BLANK_RECORD_LEN];
    out.copy_from_slice(
        BlankMarker {
            len: I32::new(len as i32),
            magic: I32::new(BLANK_MAGIC_CODE),
        }
        .as_bytes(),
    );
    out
}

/// Writes the end-of-file marker into `out[..8]`.
pub fn write_blank(len: u32, out: &mut [u8]) -> Result<usize, RecordError> {
    if out.len() < BLANK_RECORD_LEN {
        return Err(RecordError::BufferTooSmall {
            need: BLANK_RECORD_LEN,
            have: out.len(),
        });
    }
    out[..BLANK_RECORD_LEN].copy_from_slice(&blank_record(len));
    Ok(BLANK_RECORD_LEN)
}
