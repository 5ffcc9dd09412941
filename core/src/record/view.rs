//! Zero-copy view over one stored record.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use zerocopy::byteorder::big_endian::{I16, I64};
use zerocopy::FromBytes;

use super::crc::{body_crc, read_prop_crc_digits, record_crc, PROP_CRC32_DIGITS, PROP_CRC32_LEN};
use super::error::RecordError;
use super::layout::{
    host_len, BlankMarker, HostV4, HostV6, RecordHead, RecordMid, BLANK_MAGIC_CODE,
    BLANK_RECORD_LEN, HEAD_LEN, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2, MID_LEN,
    MIN_RECORD_LEN, PROPERTIES_LEN_LEN, STORE_TIMESTAMP_LEN,
};
use super::properties::{CRC32, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};
use super::sysflag::{BORNHOST_V6_FLAG, STOREHOSTADDRESS_V6_FLAG};

/// Version of the record format, told by its magic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagicVersion {
    /// MESSAGE_MAGIC_CODE: 1-byte topic length.
    V1,
    /// MESSAGE_MAGIC_CODE_V2: 2-byte topic length.
    V2,
}

/// What sits at a position of a CommitLog file.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    /// A message record.
    Record(RecordView<'a>),
    /// The end-of-file marker; `len` = bytes from the marker to the end of the file.
    Blank { len: u32 },
}

/// Reads the first entry of `buf`: a record (structure checked, CRC not) or a blank marker.
pub fn parse_entry(buf: &[u8]) -> Result<Entry<'_>, RecordError> {
    if let Some(len) = blank_len(buf) {
        return Ok(Entry::Blank { len });
    }
    RecordView::parse(buf).map(Entry::Record)
}

/// Whether `buf` starts with the end-of-file marker.
#[inline]
pub fn is_blank(buf: &[u8]) -> bool {
    blank_len(buf).is_some()
}

/// The end-of-file marker's length field when `buf` starts with one.
#[inline]
pub fn blank_len(buf: &[u8]) -> Option<u32> {
    let (marker, _) = BlankMarker::ref_from_prefix(buf).ok()?;
    (marker.magic.get() == BLANK_MAGIC_CODE).then(|| marker.len.get() as u32)
}

/// Zero-copy view over one stored record. Built by [`RecordView::parse`], which checks the magic
/// and that every length field agrees with TOTALSIZE; [`RecordView::verify_crc`] checks the body
/// CRC separately so a hot path can skip it.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Exactly the record's bytes (`TOTALSIZE` long).
    bytes: &'a [u8],
    head: &'a RecordHead,
    mid: &'a RecordMid,
    version: MagicVersion,
    born_host: HostRef<'a>,
    store_timestamp: &'a I64,
    store_timestamp_at: u32,
    store_host: HostRef<'a>,
    body_at: u32,
    body_len: u32,
    topic: &'a str,
    properties_at: u32,
    properties_len: u32,
}

fn need(buf: &[u8], field: &'static str, at: usize, n: usize) -> Result<(), RecordError> {
    if buf.len() < at || buf.len() - at < n {
        return Err(RecordError::Truncated {
            field,
            at,
            need: n,
            have: buf.len().saturating_sub(at),
        });
    }
    Ok(())
}

/// A host field inside a record.
#[derive(Debug, Clone, Copy)]
enum HostRef<'a> {
    V4(&'a HostV4),
    V6(&'a HostV6),
}

impl<'a> HostRef<'a> {
    fn read(
        bytes: &'a [u8],
        at: usize,
        v6: bool,
        field: &'static str,
    ) -> Result<HostRef<'a>, RecordError> {
        let trunc = |need| RecordError::Truncated {
            field,
            at,
            need,
            have: bytes.len().saturating_sub(at),
        };
        let rest = bytes.get(at..).ok_or_else(|| trunc(host_len(v6)))?;
        if v6 {
            HostV6::ref_from_prefix(rest)
                .map(|(h, _)| HostRef::V6(h))
                .map_err(|_| trunc(host_len(true)))
        } else {
            HostV4::ref_from_prefix(rest)
                .map(|(h, _)| HostRef::V4(h))
                .map_err(|_| trunc(host_len(false)))
        }
    }

    fn addr(self) -> SocketAddr {
        match self {
            HostRef::V4(h) => SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(h.addr),
                h.port.get() as u16,
            )),
            HostRef::V6(h) => SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(h.addr),
                h.port.get() as u16,
                0,
                0,
            )),
        }
    }
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `buf` (which may hold more after it). Checks the magic,
    /// that TOTALSIZE fits in `buf`, that every length is non-negative and that the field lengths
    /// add up to TOTALSIZE, and that the topic is UTF-8. Does not check the body CRC.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RecordError> {
        need(buf, "TOTALSIZE+MAGICCODE", 0, BLANK_RECORD_LEN)?;
        if let Some(len) = blank_len(buf) {
            return Err(RecordError::UnexpectedBlank { len });
        }
        let (head, _) = RecordHead::ref_from_prefix(buf).map_err(|_| RecordError::Truncated {
            field: "record head",
            at: 0,
            need: HEAD_LEN,
            have: buf.len(),
        })?;
        let magic = head.magic.get();
        let version = match magic {
            MESSAGE_MAGIC_CODE_V1 => MagicVersion::V1,
            MESSAGE_MAGIC_CODE_V2 => MagicVersion::V2,
            _ => {
                return Err(RecordError::BadMagic {
                    magic: magic as u32,
                })
            }
        };
        let total_size = head.total_size.get();
        if total_size < MIN_RECORD_LEN as i32 || total_size as usize > buf.len() {
            return Err(RecordError::TotalSizeOutOfRange {
                total_size,
                min: MIN_RECORD_LEN,
                available: buf.len(),
            });
        }
        let bytes = &buf[..total_size as usize];
        let sys_flag = head.sys_flag.get();
        let born_host_at = HEAD_LEN;
        let store_timestamp_at = born_host_at + host_len(sys_flag & BORNHOST_V6_FLAG != 0);
        let store_host_at = store_timestamp_at + STORE_TIMESTAMP_LEN;
        let mid_at = store_host_at + host_len(sys_flag & STOREHOSTADDRESS_V6_FLAG != 0);
        let born_host = HostRef::read(
            bytes,
            born_host_at,
            sys_flag & BORNHOST_V6_FLAG != 0,
            "BORNHOST",
        )?;
        let store_host = HostRef::read(
            bytes,
            store_host_at,
            sys_flag & STOREHOSTADDRESS_V6_FLAG != 0,
            "STOREHOST",
        )?;
        let (store_timestamp, _) =
            I64::ref_from_prefix(&bytes[store_timestamp_at..]).map_err(|_| {
                RecordError::Truncated {
                    field: "STORETIMESTAMP",
                    at: store_timestamp_at,
                    need: STORE_TIMESTAMP_LEN,
                    have: bytes.len() - store_timestamp_at,
                }
            })?;
        need(bytes, "RECONSUMETIMES..BODYLENGTH", mid_at, MID_LEN)?;
        let (mid, _) =
            RecordMid::ref_from_prefix(&bytes[mid_at..]).map_err(|_| RecordError::Truncated {
                field: "RECONSUMETIMES..BODYLENGTH",
                at: mid_at,
                need: MID_LEN,
                have: bytes.len() - mid_at,
            })?;
        let body_len = mid.body_len.get();
        if body_len < 0 {
            return Err(RecordError::NegativeLength {
                field: "BODYLENGTH",
                value: i64::from(body_len),
            });
        }
        let body_at = mid_at + MID_LEN;
        need(bytes, "BODY", body_at, body_len as usize)?;
        let topic_len_at = body_at + body_len as usize;
        let (topic_len, topic_at) = match version {
            MagicVersion::V1 => {
                need(bytes, "TOPICLENGTH", topic_len_at, 1)?;
                (i64::from(bytes[topic_len_at] as i8), topic_len_at + 1)
            }
            MagicVersion::V2 => {
                let (l, _) = I16::read_from_prefix(&bytes[topic_len_at..]).map_err(|_| {
                    RecordError::Truncated {
                        field: "TOPICLENGTH",
                        at: topic_len_at,
                        need: 2,
                        have: bytes.len() - topic_len_at,
                    }
                })?;
                (i64::from(l.get()), topic_len_at + 2)
            }
        };
        if topic_len < 0 {
            return Err(RecordError::NegativeLength {
                field: "TOPICLENGTH",
                value: topic_len,
            });
        }
        let topic_len = topic_len as usize;
        need(bytes, "TOPIC", topic_at, topic_len)?;
        let topic_bytes = &bytes[topic_at..topic_at + topic_len];
        let topic = core::str::from_utf8(topic_bytes)
            .map_err(|_| RecordError::TopicNotUtf8 { len: topic_len })?;
        let props_len_at = topic_at + topic_len;
        let (props_len, _) =
            I16::read_from_prefix(&bytes[props_len_at..]).map_err(|_| RecordError::Truncated {
                field: "PROPERTIESLENGTH",
                at: props_len_at,
                need: PROPERTIES_LEN_LEN,
                have: bytes.len() - props_len_at,
            })?;
        let props_len = props_len.get();
        if props_len < 0 {
            return Err(RecordError::NegativeLength {
                field: "PROPERTIESLENGTH",
                value: i64::from(props_len),
            });
        }
        let properties_at = props_len_at + PROPERTIES_LEN_LEN;
        let end = properties_at + props_len as usize;
        if end != bytes.len() {
            return Err(RecordError::TotalSizeMismatch {
                total_size,
                computed: end,
            });
        }
        Ok(RecordView {
            bytes,
            head,
            mid,
            version,
            born_host,
            store_timestamp,
            store_timestamp_at: store_timestamp_at as u32,
            store_host,
            body_at: body_at as u32,
            body_len: body_len as u32,
            topic,
            properties_at: properties_at as u32,
            properties_len: props_len as u32,
        })
    }

    /// Parses and checks the body CRC.
    pub fn parse_verified(buf: &'a [u8]) -> Result<Self, RecordError> {
        let view = Self::parse(buf)?;
        view.verify_crc()?;
        Ok(view)
    }

    /// Checks the stored body CRC against the body.
    pub fn verify_crc(&self) -> Result<(), RecordError> {
        let stored = self.body_crc();
        let computed = body_crc(self.body());
        if stored != computed {
            return Err(RecordError::BodyCrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// Checks the `__CRC32#` property (RocketMQ 5.x `enabledAppendPropCRC`) when the record has
    /// one: the properties string ends with the pair `__CRC32#` 0x01 <10 digits> 0x02, starting
    /// at a pair boundary. The digits (least significant first, as Java writes them) must equal
    /// the CRC32 (31-bit masked) of every record byte before the pair.
    ///
    /// Returns [`PropCrc::Absent`] when the properties do not end with that pair's name (records
    /// written without the option), [`PropCrc::Valid`] when it matches. Errors: the pair's value
    /// is not 10 digits closed by 0x02 ([`RecordError::PropCrcMalformed`]) or the CRC differs
    /// ([`RecordError::PropCrcMismatch`]).
    pub fn verify_prop_crc(&self) -> Result<PropCrc, RecordError> {
        let props = self.properties();
        if props.len() < PROP_CRC32_LEN {
            return Ok(PropCrc::Absent);
        }
        let start = props.len() - PROP_CRC32_LEN;
        let name = CRC32.as_bytes();
        let tail = &props[start..];
        if &tail[..name.len()] != name
            || tail[name.len()] != NAME_VALUE_SEPARATOR
            || (start > 0 && props[start - 1] != PROPERTY_SEPARATOR)
        {
            return Ok(PropCrc::Absent);
        }
        let value = &tail[name.len() + 1..];
        let digits = &value[..PROP_CRC32_DIGITS];
        let stored = match read_prop_crc_digits(digits) {
            Some(v) if value[PROP_CRC32_DIGITS] == PROPERTY_SEPARATOR => v,
            _ => {
                return Err(RecordError::PropCrcMalformed {
                    value: String::from_utf8_lossy(value).into_owned(),
                })
            }
        };
        let covered = self.bytes.len() - PROP_CRC32_LEN;
        let computed = record_crc(&self.bytes[..covered]);
        if stored != computed {
            return Err(RecordError::PropCrcMismatch {
                stored,
                computed,
                covered,
            });
        }
        Ok(PropCrc::Valid)
    }

    /// The record's bytes (TOTALSIZE long).
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// TOTALSIZE.
    #[inline]
    pub fn total_size(&self) -> u32 {
        self.bytes.len() as u32
    }
    /// Format version from the magic code.
    #[inline]
    pub fn version(&self) -> MagicVersion {
        self.version
    }
    /// The magic code as stored.
    #[inline]
    pub fn magic(&self) -> i32 {
        self.head.magic.get()
    }
    /// BODYCRC as stored.
    #[inline]
    pub fn body_crc(&self) -> u32 {
        self.head.body_crc.get() as u32
    }
    #[inline]
    pub fn queue_id(&self) -> i32 {
        self.head.queue_id.get()
    }
    #[inline]
    pub fn flag(&self) -> i32 {
        self.head.flag.get()
    }
    #[inline]
    pub fn queue_offset(&self) -> i64 {
        self.head.queue_offset.get()
    }
    #[inline]
    pub fn physical_offset(&self) -> i64 {
        self.head.physical_offset.get()
    }
    #[inline]
    pub fn sys_flag(&self) -> i32 {
        self.head.sys_flag.get()
    }
    #[inline]
    pub fn born_timestamp(&self) -> i64 {
        self.head.born_timestamp.get()
    }
    /// Born host; IPv6 when SYSFLAG has BORNHOST_V6_FLAG.
    #[inline]
    pub fn born_host(&self) -> SocketAddr {
        self.born_host.addr()
    }
    #[inline]
    pub fn store_timestamp(&self) -> i64 {
        self.store_timestamp.get()
    }
    /// Store host; IPv6 when SYSFLAG has STOREHOSTADDRESS_V6_FLAG.
    #[inline]
    pub fn store_host(&self) -> SocketAddr {
        self.store_host.addr()
    }
    /// Byte position of the store timestamp inside the record (56 for an IPv4 born host).
    #[inline]
    pub fn store_timestamp_pos(&self) -> usize {
        self.store_timestamp_at as usize
    }
    #[inline]
    pub fn reconsume_times(&self) -> i32 {
        self.mid.reconsume_times.get()
    }
    #[inline]
    pub fn prepared_transaction_offset(&self) -> i64 {
        self.mid.prepared_transaction_offset.get()
    }
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        let at = self.body_at as usize;
        &self.bytes[at..at + self.body_len as usize]
    }
    #[inline]
    pub fn topic(&self) -> &'a str {
        self.topic
    }
    /// The raw properties string (name 0x01 value 0x02 ...); see [`super::properties`].
    #[inline]
    pub fn properties(&self) -> &'a [u8] {
        let at = self.properties_at as usize;
        &self.bytes[at..at + self.properties_len as usize]
    }
    /// A property's value, by name (last occurrence wins, as in Java).
    #[inline]
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        super::properties::get(self.properties(), name)
    }
}

/// Outcome of [`RecordView::verify_prop_crc`] for a record that passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropCrc {
    /// The record carries no `__CRC32#` property at the end of its properties.
    Absent,
    /// The `__CRC32#` property matches the record.
    Valid,
}

/// Iterates the records (and blank markers) laid back to back in `buf`, stopping at the first
/// error (yielded once) or when fewer than 8 bytes remain. Zero bytes where a record should start
/// end the iteration without error (the unwritten tail of a file).
pub fn iter_entries(buf: &[u8]) -> EntryIter<'_> {
    EntryIter {
        buf,
        pos: 0,
        done: false,
    }
}

/// Iterator of [`iter_entries`]; yields `(position, entry)`.
#[derive(Debug, Clone)]
pub struct EntryIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl EntryIter<'_> {
    /// Position just past the last entry yielded.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<(usize, Entry<'a>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest.len() < BLANK_RECORD_LEN || rest[..BLANK_RECORD_LEN] == [0u8; BLANK_RECORD_LEN] {
            self.done = true;
            return None;
        }
        match parse_entry(rest) {
            Ok(Entry::Blank { len }) => {
                self.done = true;
                Some(Ok((self.pos, Entry::Blank { len })))
            }
            Ok(Entry::Record(v)) => {
                let at = self.pos;
                self.pos += v.total_size() as usize;
                Some(Ok((at, Entry::Record(v))))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
