//! The properties string (spec §4.5): `name 0x01 value 0x02` repeated, a trailing 0x02 after the
//! last pair as Java writes it. Parsing follows Java's `string2messageProperties`: split on 0x02,
//! the first 0x01 in a segment separates name and value, segments with an empty name or value (or
//! no 0x01) are ignored, a missing trailing 0x02 is tolerated, later duplicates win.

use super::error::RecordError;
use super::layout::MAX_PROPERTIES_LEN;

/// Separates a name from its value (Java `NAME_VALUE_SEPARATOR`, char 1).
pub const NAME_VALUE_SEPARATOR: u8 = 0x01;
/// Ends a property (Java `PROPERTY_SEPARATOR`, char 2).
pub const PROPERTY_SEPARATOR: u8 = 0x02;
/// Separates business keys inside the `KEYS` value (Java `KEY_SEPARATOR`).
pub const KEY_SEPARATOR: u8 = b' ';

pub const KEYS: &str = "KEYS";
pub const TAGS: &str = "TAGS";
pub const WAIT: &str = "WAIT";
pub const DELAY: &str = "DELAY";
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
pub const REAL_TOPIC: &str = "REAL_TOPIC";
pub const REAL_QID: &str = "REAL_QID";
pub const TRAN_MSG: &str = "TRAN_MSG";
pub const PGROUP: &str = "PGROUP";
pub const MIN_OFFSET: &str = "MIN_OFFSET";
pub const MAX_OFFSET: &str = "MAX_OFFSET";
pub const BUYER_ID: &str = "BUYER_ID";
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
pub const MQ2_FLAG: &str = "MQ2_FLAG";
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
pub const MSG_REGION: &str = "MSG_REGION";
pub const TRACE_ON: &str = "TRACE_ON";
pub const UNIQ_KEY: &str = "UNIQ_KEY";
pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
pub const INNER_NUM: &str = "INNER_NUM";
pub const INNER_BASE: &str = "INNER_BASE";
pub const DUP_INFO: &str = "DUP_INFO";
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
pub const TRANSACTION_ID: &str = "__transactionId__";
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
pub const INSTANCE_ID: &str = "INSTANCE_ID";
pub const CORRELATION_ID: &str = "CORRELATION_ID";
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
pub const TTL: &str = "TTL";
pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
pub const CLUSTER: &str = "CLUSTER";
pub const MSG_TYPE: &str = "MSG_TYPE";
pub const POP_CK: &str = "POP_CK";
pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
pub const REDIRECT: &str = "REDIRECT";
pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
pub const BORN_HOST: &str = "__BORNHOST";
pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
pub const CRC32: &str = "__CRC32#";
pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// Prefix of 5.x in-memory-only properties, never stored.
pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";

/// Iterates `(name, value)` pairs with Java's parsing rules. Duplicates are all yielded, in order.
#[inline]
pub fn iter(props: &[u8]) -> PropertyIter<'_> {
    PropertyIter { rest: props }
}

/// Iterator of [`iter`].
#[derive(Debug, Clone)]
pub struct PropertyIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (segment, rest) = match memchr::memchr(PROPERTY_SEPARATOR, self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if let Some(i) = memchr::memchr(NAME_VALUE_SEPARATOR, segment) {
                let (name, value) = (&segment[..i], &segment[i + 1..]);
                if !name.is_empty() && !value.is_empty() {
                    return Some((name, value));
                }
            }
        }
        None
    }
}

/// The value of property `name` (the last occurrence, as Java's map keeps it).
pub fn get<'a>(props: &'a [u8], name: &str) -> Option<&'a [u8]> {
    // One pass over the segments, comparing each segment's head with `name` + 0x01: no
    // substring search (`memmem::find` built a searcher per call: 90 ns to reject an absent
    // name, 178 ns for a present one, per message on the send path) and no pair split of the
    // segments that do not match. Same result as `iter(props)` filtered by name, last wins:
    // a segment's first 0x01 ends its name, and names never hold 0x01 or 0x02.
    let n = name.as_bytes();
    if n.is_empty() || n.contains(&NAME_VALUE_SEPARATOR) || n.contains(&PROPERTY_SEPARATOR) {
        return iter(props).filter(|(k, _)| *k == n).last().map(|(_, v)| v);
    }
    let [found] = get_many(props, [name]);
    found
}

/// The values of several properties in one pass (each as [`get`] would give it: the last
/// occurrence, non-empty). Names must be non-empty and free of separators. The send path reads
/// `TAGS`, `TRAN_MSG`, `DELAY` and the timer properties of every message this way instead of
/// scanning once per name.
pub fn get_many<'a, const N: usize>(props: &'a [u8], names: [&str; N]) -> [Option<&'a [u8]>; N] {
    let mut found = [None; N];
    // The callers pass constant names: checked in debug builds (the tests) only.
    for n in names {
        debug_assert!(
            !n.is_empty() && !n.contains(['\u{1}', '\u{2}']),
            "property name {n:?} is empty or holds a separator"
        );
    }
    let mut rest = props;
    while !rest.is_empty() {
        let (segment, next) = match memchr::memchr(PROPERTY_SEPARATOR, rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        for (slot, name) in found.iter_mut().zip(names) {
            let name = name.as_bytes();
            if segment.len() > name.len()
                && segment[name.len()] == NAME_VALUE_SEPARATOR
                && segment.starts_with(name)
            {
                let value = &segment[name.len() + 1..];
                if !value.is_empty() {
                    *slot = Some(value);
                }
                break;
            }
        }
    }
    found
}

/// The value of property `name` as UTF-8 text; `None` when absent or not UTF-8.
pub fn get_str<'a>(props: &'a [u8], name: &str) -> Option<&'a str> {
    get(props, name).and_then(|v| core::str::from_utf8(v).ok())
}

/// The business keys of a `KEYS` value: split on spaces, empty pieces skipped (as IndexService).
pub fn split_keys(keys: &[u8]) -> impl Iterator<Item = &[u8]> {
    keys.split(|&b| b == KEY_SEPARATOR)
        .filter(|k| !k.is_empty())
}

fn check_part(name: &str, part: &[u8], what: &'static str) -> Result<(), RecordError> {
    if part.is_empty() {
        return Err(RecordError::BadProperty {
            name: name.to_owned(),
            reason: what,
        });
    }
    if part
        .iter()
        .any(|&b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
    {
        return Err(RecordError::BadProperty {
            name: name.to_owned(),
            reason: "contains a separator byte 0x01 or 0x02",
        });
    }
    Ok(())
}

/// Bytes one pair takes when encoded: name + 1 + value + 1.
#[inline]
pub fn pair_len(name: &str, value: &[u8]) -> usize {
    name.len() + value.len() + 2
}

/// Writes one pair (`name 0x01 value 0x02`) at the start of `out`, returning the bytes written.
/// No allocation; rejects empty parts and parts containing a separator byte.
pub fn write_pair(out: &mut [u8], name: &str, value: &[u8]) -> Result<usize, RecordError> {
    check_part(name, name.as_bytes(), "empty name")?;
    check_part(name, value, "empty value")?;
    let n = pair_len(name, value);
    if out.len() < n {
        return Err(RecordError::BufferTooSmall {
            need: n,
            have: out.len(),
        });
    }
    out[..name.len()].copy_from_slice(name.as_bytes());
    out[name.len()] = NAME_VALUE_SEPARATOR;
    out[name.len() + 1..n - 1].copy_from_slice(value);
    out[n - 1] = PROPERTY_SEPARATOR;
    Ok(n)
}

/// Builds a properties string in a reusable buffer (keep one per connection or shard and
/// [`PropertiesBuilder::clear`] it: no allocation once its capacity suffices).
#[derive(Debug, Clone, Default)]
pub struct PropertiesBuilder {
    buf: Vec<u8>,
}

impl PropertiesBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(bytes: usize) -> Self {
        PropertiesBuilder {
            buf: Vec::with_capacity(bytes),
        }
    }
    /// Empties the builder, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
    /// Appends one pair; fails if a part is empty, holds a separator, or the string would pass
    /// the record's 32767-byte limit.
    pub fn push(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, RecordError> {
        check_part(name, name.as_bytes(), "empty name")?;
        check_part(name, value, "empty value")?;
        let len = self.buf.len() + pair_len(name, value);
        if len > MAX_PROPERTIES_LEN {
            return Err(RecordError::PropertiesTooLong {
                len,
                max: MAX_PROPERTIES_LEN,
            });
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(NAME_VALUE_SEPARATOR);
        self.buf.extend_from_slice(value);
        self.buf.push(PROPERTY_SEPARATOR);
        Ok(self)
    }
    /// Appends one pair with a text value.
    pub fn push_str(&mut self, name: &str, value: &str) -> Result<&mut Self, RecordError> {
        self.push(name, value.as_bytes())
    }
    /// Copies every valid pair of `props` except those named in `skip` (normalising separators).
    pub fn extend_from(&mut self, props: &[u8], skip: &[&str]) -> Result<&mut Self, RecordError> {
        for (name, value) in iter(props) {
            if skip.iter().any(|s| s.as_bytes() == name) {
                continue;
            }
            let len = self.buf.len() + name.len() + value.len() + 2;
            if len > MAX_PROPERTIES_LEN {
                return Err(RecordError::PropertiesTooLong {
                    len,
                    max: MAX_PROPERTIES_LEN,
                });
            }
            self.buf.extend_from_slice(name);
            self.buf.push(NAME_VALUE_SEPARATOR);
            self.buf.extend_from_slice(value);
            self.buf.push(PROPERTY_SEPARATOR);
        }
        Ok(self)
    }
    /// The encoded string.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Takes the encoded string out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Encodes `pairs` into a new string (for cold paths and clients).
pub fn encode<'a, I>(pairs: I) -> Result<Vec<u8>, RecordError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut b = PropertiesBuilder::new();
    for (n, v) in pairs {
        b.push_str(n, v)?;
    }
    Ok(b.into_bytes())
}

#[cfg(test)]
mod get_matches_the_pair_split {
    use super::*;
    use proptest::prelude::*;

    fn reference<'a>(props: &'a [u8], name: &str) -> Option<&'a [u8]> {
        iter(props)
            .filter(|(n, _)| *n == name.as_bytes())
            .last()
            .map(|(_, v)| v)
    }

    proptest! {
        /// Any bytes, any name from a small alphabet that makes matches, prefixes and
        /// duplicates likely: `get` agrees with splitting every pair.
        #[test]
        fn on_any_input(
            props in proptest::collection::vec(prop_oneof![Just(1u8), Just(2u8), Just(b'A'), Just(b'B'), any::<u8>()], 0..64),
            name in "[AB]{0,3}",
        ) {
            prop_assert_eq!(get(&props, &name), reference(&props, &name));
        }

        /// `get_many` finds, in one pass, what `get` finds name by name.
        #[test]
        fn get_many_agrees_with_get(
            props in proptest::collection::vec(prop_oneof![Just(1u8), Just(2u8), Just(b'A'), Just(b'B'), any::<u8>()], 0..64),
            a in "[AB]{1,3}",
            b in "[AB]{1,3}",
            c in "[AB]{1,3}",
        ) {
            prop_assume!(a != b && b != c && a != c);
            let got = get_many(&props, [a.as_str(), b.as_str(), c.as_str()]);
            prop_assert_eq!(got, [get(&props, &a), get(&props, &b), get(&props, &c)]);
        }
    }

    #[test]
    fn java_cases() {
        let p = b"TAGS\x01a\x02TAGSX\x01b\x02TAG\x01c\x02TAGS\x01\x02TAGS\x01d\x01e";
        assert_eq!(
            get(p, "TAGS"),
            Some(&b"d\x01e"[..]),
            "last non-empty wins, value keeps 0x01"
        );
        assert_eq!(get(p, "TAG"), Some(&b"c"[..]));
        assert_eq!(get(p, "TAGSX"), Some(&b"b"[..]));
        assert_eq!(get(p, "KEYS"), None);
        assert_eq!(get(b"\x01x\x02", ""), None, "empty names are ignored");
    }
}
