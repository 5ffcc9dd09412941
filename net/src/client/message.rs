//! Messages as a producer builds them, their properties string, the SEND_BATCH_MESSAGE body
//! encoding and the producer-side unique id (`UNIQ_KEY`).
//!
//! Properties string: `name 0x01 value 0x02` per property, trailing 0x02 included (as Java writes
//! it). Batch body: per message `TOTALSIZE i32 | MAGIC 0 | BODYCRC 0 | FLAG i32 | BODYLEN i32 |
//! BODY | PROPLEN i16 | PROPERTIES`, TOTALSIZE = 22 + body + properties.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Property names (RocketMQ `MessageConst`).
pub mod prop {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
}

pub const NAME_VALUE_SEPARATOR: u8 = 1;
pub const PROPERTY_SEPARATOR: u8 = 2;
/// The properties string length is an int16 in the stored record.
pub const MAX_PROPERTIES_BYTES: usize = 32_767;
/// Default broker limit on one message body (`maxMessageSize`).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Fixed part of one batch entry: size, magic, crc, flag, body length, properties length.
pub const BATCH_ENTRY_OVERHEAD: usize = 22;

/// Why a message cannot be sent as built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("property name {name:?} contains a separator byte (0x01/0x02) or is empty")]
    BadPropertyName { name: String },
    #[error("property {name:?} value contains a separator byte (0x01/0x02)")]
    BadPropertyValue { name: String },
    #[error("properties take {len} bytes, the limit is {MAX_PROPERTIES_BYTES}")]
    PropertiesTooLong { len: usize },
    #[error("message body is {len} bytes, the limit is {limit}")]
    BodyTooLarge { len: usize, limit: usize },
    #[error("topic {topic:?} is invalid: use 1..=127 characters from [%|a-zA-Z0-9_-]")]
    BadTopic { topic: String },
    #[error("a batch must not be empty")]
    EmptyBatch,
    #[error("all messages of a batch must have the same topic: {first:?} and {other:?}")]
    MixedBatchTopics { first: String, other: String },
    #[error("delayed messages cannot be sent in a batch")]
    DelayInBatch,
}

/// Topic names RocketMQ accepts.
pub fn validate_topic(topic: &str) -> Result<(), MessageError> {
    let ok = !topic.is_empty()
        && topic.len() <= 127
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(MessageError::BadTopic {
            topic: topic.to_string(),
        })
    }
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    pub flag: i32,
    /// User and system properties in insertion order (`TAGS`, `KEYS` included).
    pub properties: Vec<(String, String)>,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            flag: 0,
            properties: Vec::new(),
        }
    }

    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.set_property(prop::TAGS, tags);
        self
    }

    /// Business keys, space-separated; indexed by the broker.
    pub fn with_keys(mut self, keys: impl Into<String>) -> Self {
        self.set_property(prop::KEYS, keys);
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_property(name, value);
        self
    }

    /// Delay level 1..=18 (1 s .. 2 h).
    pub fn with_delay_level(mut self, level: u8) -> Self {
        self.set_property(prop::DELAY, level.to_string());
        self
    }

    /// 5.x timer: delivered `ms` after the broker stores it (`TIMER_DELAY_MS`).
    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.set_property(prop::TIMER_DELAY_MS, ms.to_string());
        self
    }

    /// 5.x timer: delivered at `unix_ms` by the broker's clock (`TIMER_DELIVER_MS`).
    pub fn with_deliver_time_ms(mut self, unix_ms: u64) -> Self {
        self.set_property(prop::TIMER_DELIVER_MS, unix_ms.to_string());
        self
    }

    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.properties.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.properties.push((name, value)),
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn tags(&self) -> Option<&str> {
        self.property(prop::TAGS)
    }

    pub fn keys(&self) -> Option<&str> {
        self.property(prop::KEYS)
    }

    /// Check what the broker would reject, before it goes on the wire.
    pub fn validate(&self, max_body_bytes: usize) -> Result<(), MessageError> {
        validate_topic(&self.topic)?;
        if self.body.len() > max_body_bytes {
            return Err(MessageError::BodyTooLarge {
                len: self.body.len(),
                limit: max_body_bytes,
            });
        }
        let len = properties_len(&self.properties)?;
        if len > MAX_PROPERTIES_BYTES {
            return Err(MessageError::PropertiesTooLong { len });
        }
        Ok(())
    }
}

fn has_separator(s: &str) -> bool {
    s.bytes()
        .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
}

fn properties_len(props: &[(String, String)]) -> Result<usize, MessageError> {
    let mut len = 0;
    for (n, v) in props {
        if n.is_empty() || has_separator(n) {
            return Err(MessageError::BadPropertyName { name: n.clone() });
        }
        if has_separator(v) {
            return Err(MessageError::BadPropertyValue { name: n.clone() });
        }
        len += n.len() + v.len() + 2;
    }
    Ok(len)
}

/// Append the RocketMQ properties string of `props` to `out`.
pub fn encode_properties(props: &[(String, String)], out: &mut String) {
    for (n, v) in props {
        if v.is_empty() {
            continue;
        }
        out.push_str(n);
        out.push(NAME_VALUE_SEPARATOR as char);
        out.push_str(v);
        out.push(PROPERTY_SEPARATOR as char);
    }
}

/// Parse a properties string (lenient like Java: empty names/values skipped, later wins).
pub fn decode_properties(raw: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for seg in raw.split(|&b| b == PROPERTY_SEPARATOR) {
        let Some(pos) = seg.iter().position(|&b| b == NAME_VALUE_SEPARATOR) else {
            continue;
        };
        let (n, v) = (&seg[..pos], &seg[pos + 1..]);
        if n.is_empty() || v.is_empty() {
            continue;
        }
        let n = String::from_utf8_lossy(n).into_owned();
        let v = String::from_utf8_lossy(v).into_owned();
        match out.iter_mut().find(|(k, _)| *k == n) {
            Some(slot) => slot.1 = v,
            None => out.push((n, v)),
        }
    }
    out
}

/// Encode `msgs` as a SEND_BATCH_MESSAGE body into `out`. All must share one topic and carry
/// no delay. Each message's own properties (with its `UNIQ_KEY`) go into its entry.
pub fn encode_batch(msgs: &[Message], out: &mut BytesMut) -> Result<(), MessageError> {
    let first = msgs.first().ok_or(MessageError::EmptyBatch)?;
    let mut props = String::new();
    for m in msgs {
        if m.topic != first.topic {
            return Err(MessageError::MixedBatchTopics {
                first: first.topic.clone(),
                other: m.topic.clone(),
            });
        }
        if m.property(prop::DELAY).is_some_and(|d| d != "0") {
            return Err(MessageError::DelayInBatch);
        }
        props.clear();
        encode_properties(&m.properties, &mut props);
        if props.len() > MAX_PROPERTIES_BYTES {
            return Err(MessageError::PropertiesTooLong { len: props.len() });
        }
        let total = BATCH_ENTRY_OVERHEAD + m.body.len() + props.len();
        out.reserve(total);
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(m.flag);
        out.put_i32(m.body.len() as i32);
        out.put_slice(&m.body);
        out.put_i16(props.len() as i16);
        out.put_slice(props.as_bytes());
    }
    Ok(())
}

/// Java `String.hashCode` (UTF-16 code units, wrapping): what RocketMQ uses for tag codes and
/// hash-of-key queue selection.
pub fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// Generator of `UNIQ_KEY` message ids: hex of ip(4) | pid(2) | instance hash(4) |
/// ms since the start of the month(4) | counter(2), 32 characters like the Java client's.
#[derive(Debug)]
pub struct UniqIdGenerator {
    prefix: [u8; 10],
    counter: AtomicU16,
    month_start_ms: u64,
}

impl UniqIdGenerator {
    pub fn new(ip: IpAddr) -> Self {
        let ip4 = match ip {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        let pid = std::process::id() as u16;
        let now = now_ms();
        let instance = (now as u32) ^ (std::process::id().rotate_left(16));
        let mut prefix = [0u8; 10];
        prefix[..4].copy_from_slice(&ip4);
        prefix[4..6].copy_from_slice(&pid.to_be_bytes());
        prefix[6..].copy_from_slice(&instance.to_be_bytes());
        // Month boundaries in UTC; only uniqueness matters to the broker.
        let month_start_ms = month_start_utc_ms(now);
        UniqIdGenerator {
            prefix,
            counter: AtomicU16::new(0),
            month_start_ms,
        }
    }

    /// The next id, uppercase hex.
    pub fn next_id(&self) -> String {
        let mut raw = [0u8; 16];
        raw[..10].copy_from_slice(&self.prefix);
        let since = now_ms().saturating_sub(self.month_start_ms) as u32;
        raw[10..14].copy_from_slice(&since.to_be_bytes());
        let c = self.counter.fetch_add(1, Ordering::Relaxed);
        raw[14..].copy_from_slice(&c.to_be_bytes());
        let mut out = String::with_capacity(32);
        for b in raw {
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
        }
        out
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// First millisecond of the UTC month containing `ms` (civil-from-days, Howard Hinnant).
fn month_start_utc_ms(ms: u64) -> u64 {
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5; // day of month, 0-based
    ((days - d) as u64) * 86_400_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_with_trailing_separator() {
        let m = Message::new("T", "x")
            .with_tags("TagA")
            .with_keys("k1 k2")
            .with_property("a", "b");
        let mut s = String::new();
        encode_properties(&m.properties, &mut s);
        assert_eq!(s, "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}a\u{1}b\u{2}");
        assert_eq!(decode_properties(s.as_bytes()), m.properties);
        // missing trailing separator, empty pieces and a duplicate
        let d = decode_properties(b"a\x01b\x02\x02x\x01\x02a\x01c");
        assert_eq!(d, vec![("a".to_string(), "c".to_string())]);
    }

    #[test]
    fn batch_encoding_matches_spec_bytes() {
        let mut a = Message::new("T", &b"hi"[..]).with_tags("A");
        a.flag = 7;
        let b = Message::new("T", &b""[..]);
        let mut out = BytesMut::new();
        encode_batch(&[a, b], &mut out).expect("encode");
        let props = b"TAGS\x01A\x02";
        let mut expect = Vec::new();
        expect.extend_from_slice(&((22 + 2 + props.len()) as i32).to_be_bytes());
        expect.extend_from_slice(&[0; 8]);
        expect.extend_from_slice(&7i32.to_be_bytes());
        expect.extend_from_slice(&2i32.to_be_bytes());
        expect.extend_from_slice(b"hi");
        expect.extend_from_slice(&(props.len() as i16).to_be_bytes());
        expect.extend_from_slice(props);
        expect.extend_from_slice(&22i32.to_be_bytes());
        expect.extend_from_slice(&[0; 16]);
        expect.extend_from_slice(&0i16.to_be_bytes());
        assert_eq!(&out[..], &expect[..]);
    }

    #[test]
    fn batch_rules_enforced() {
        let mut out = BytesMut::new();
        assert_eq!(encode_batch(&[], &mut out), Err(MessageError::EmptyBatch));
        let r = encode_batch(&[Message::new("A", "x"), Message::new("B", "y")], &mut out);
        assert!(matches!(r, Err(MessageError::MixedBatchTopics { .. })));
        let r = encode_batch(&[Message::new("A", "x").with_delay_level(3)], &mut out);
        assert_eq!(r, Err(MessageError::DelayInBatch));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(Message::new("ok_T-1%|", "x").validate(10).is_ok());
        assert!(matches!(
            Message::new("bad topic", "x").validate(10),
            Err(MessageError::BadTopic { .. })
        ));
        assert_eq!(
            Message::new("T", vec![0u8; 11]).validate(10),
            Err(MessageError::BodyTooLarge { len: 11, limit: 10 })
        );
        assert!(matches!(
            Message::new("T", "x")
                .with_property("a\u{1}", "b")
                .validate(10),
            Err(MessageError::BadPropertyName { .. })
        ));
    }

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_hash("TagA"), 2_598_919);
        assert_eq!(java_hash("*"), 42);
        assert_eq!(java_hash(""), 0);
    }

    #[test]
    fn uniq_ids_are_32_hex_and_distinct() {
        let g = UniqIdGenerator::new("10.0.0.1".parse().expect("ip"));
        let (a, b) = (g.next_id(), g.next_id());
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("0A000001"));
        assert_ne!(a, b);
    }

    #[test]
    fn month_start() {
        // 2026-11-23T11:44:57Z -> 2026-11-01T00:00:00Z
        assert_eq!(month_start_utc_ms(1_795_434_297_000), 1_793_491_200_000);
    }
}
