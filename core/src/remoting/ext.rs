//! Ext fields: the string map that carries every typed request/response header.
//!
//! Reading: [`ExtFields`] borrows from the frame buffer. A binary (ROCKETMQ) header is kept as
//! the raw entry bytes and iterated in place: no allocation at all. A JSON header's map is one
//! `Vec` of borrowed pairs (an owned string only where the JSON had escapes or a number).
//! Typed headers implement [`DecodeHeader`] from any iterator of `(&str, &str)` in one pass.
//!
//! Writing: typed headers implement [`EncodeHeader`] against an [`ExtWriter`], which appends
//! entries straight into the frame being built (JSON strings or binary entries), formatting
//! numbers on the stack. Values are always written as JSON strings (spec §1.3).

use super::error::{CommandError, EncodeError, HeaderError};
use super::frame::SerializeType;
use std::borrow::Cow;

/// Ext fields of a decoded command, borrowed from the frame.
#[derive(Debug, Clone, Default)]
pub struct ExtFields<'a> {
    repr: ExtRepr<'a>,
}

#[derive(Debug, Clone, Default)]
enum ExtRepr<'a> {
    #[default]
    Empty,
    /// Validated binary entries: (i16 key len, key, i32 value len, value)*. `text` is the
    /// whole region as `&str` when it is valid UTF-8 as a whole (all lengths < 128 per
    /// byte, the common case): keys and values are then sliced from it without
    /// re-validating each one.
    Binary {
        bytes: &'a [u8],
        text: Option<&'a str>,
    },
    Json(Vec<(Cow<'a, str>, Cow<'a, str>)>),
}

impl<'a> ExtFields<'a> {
    /// Entries from a binary header region, validated by `validate_binary`.
    pub(crate) fn from_binary(bytes: &'a [u8], text: Option<&'a str>) -> Self {
        if bytes.is_empty() {
            return ExtFields::default();
        }
        ExtFields {
            repr: ExtRepr::Binary { bytes, text },
        }
    }

    pub(crate) fn from_json(pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Self {
        if pairs.is_empty() {
            return ExtFields::default();
        }
        ExtFields {
            repr: ExtRepr::Json(pairs),
        }
    }

    /// Iterates `(key, value)` in wire order.
    pub fn iter(&self) -> ExtIter<'_> {
        match &self.repr {
            ExtRepr::Empty => ExtIter {
                inner: IterRepr::Binary {
                    bytes: &[],
                    text: None,
                    pos: 0,
                },
            },
            ExtRepr::Binary { bytes, text } => ExtIter {
                inner: IterRepr::Binary {
                    bytes,
                    text: *text,
                    pos: 0,
                },
            },
            ExtRepr::Json(v) => ExtIter {
                inner: IterRepr::Json(v.iter()),
            },
        }
    }

    /// Value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            ExtRepr::Empty => 0,
            ExtRepr::Binary { .. } => self.iter().count(),
            ExtRepr::Json(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self.repr, ExtRepr::Empty)
    }

    /// Owned copy of the entries.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// Iterator over ext entries, yielding `(key, value)`.
#[derive(Debug, Clone)]
pub struct ExtIter<'s> {
    inner: IterRepr<'s>,
}

#[derive(Debug, Clone)]
enum IterRepr<'s> {
    Binary {
        bytes: &'s [u8],
        text: Option<&'s str>,
        pos: usize,
    },
    Json(std::slice::Iter<'s, (Cow<'s, str>, Cow<'s, str>)>),
}

impl<'s> Iterator for ExtIter<'s> {
    type Item = (&'s str, &'s str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            IterRepr::Json(it) => it.next().map(|(k, v)| (k.as_ref(), v.as_ref())),
            IterRepr::Binary { bytes, text, pos } => {
                if *pos >= bytes.len() {
                    return None;
                }
                // Entries were validated when the header was decoded; a malformed tail (which
                // cannot happen) ends the iteration instead of panicking.
                let e = entry_bounds(bytes, *pos).ok()?;
                *pos = e.next;
                match text {
                    Some(t) => Some((t.get(e.key)?, t.get(e.value)?)),
                    None => Some((
                        std::str::from_utf8(bytes.get(e.key)?).ok()?,
                        std::str::from_utf8(bytes.get(e.value)?).ok()?,
                    )),
                }
            }
        }
    }
}

/// Where one binary ext entry's key and value lie, and where the next entry starts.
pub(crate) struct EntryBounds {
    pub key: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
    pub next: usize,
}

/// Reads the entry at `pos` of a binary ext region.
pub(crate) fn entry_bounds(buf: &[u8], pos: usize) -> Result<EntryBounds, CommandError> {
    let available = |at: usize| buf.len().saturating_sub(at);
    let truncated = |what, needed, at: usize| CommandError::BinaryHeaderTruncated {
        what,
        needed,
        available: available(at),
    };
    let kl = buf
        .get(pos..pos + 2)
        .ok_or(truncated("ext key length", 2, pos))?;
    let key_len = i16::from_be_bytes([kl[0], kl[1]]);
    if key_len < 0 {
        return Err(CommandError::BinaryHeaderNegativeLength {
            what: "ext key length",
            length: i64::from(key_len),
        });
    }
    let key_start = pos + 2;
    let key_end = key_start + key_len as usize;
    if key_end > buf.len() {
        return Err(truncated("ext key", key_len as usize, key_start));
    }
    let vl = buf
        .get(key_end..key_end + 4)
        .ok_or(truncated("ext value length", 4, key_end))?;
    let value_len = i32::from_be_bytes([vl[0], vl[1], vl[2], vl[3]]);
    if value_len < 0 {
        return Err(CommandError::BinaryHeaderNegativeLength {
            what: "ext value length",
            length: i64::from(value_len),
        });
    }
    let value_start = key_end + 4;
    let value_end = value_start
        .checked_add(value_len as usize)
        .filter(|end| *end <= buf.len())
        .ok_or(truncated("ext value", value_len as usize, value_start))?;
    Ok(EntryBounds {
        key: key_start..key_end,
        value: value_start..value_end,
        next: value_end,
    })
}

/// Validates a binary ext region (lengths and UTF-8 of every key and value). Returns the
/// region as text when it is valid UTF-8 as a whole, for cheap iteration.
pub(crate) fn validate_binary(bytes: &[u8]) -> Result<Option<&str>, CommandError> {
    let text = std::str::from_utf8(bytes).ok();
    let mut pos = 0;
    while pos < bytes.len() {
        let e = entry_bounds(bytes, pos)?;
        match text {
            Some(t) => {
                if !t.is_char_boundary(e.key.start) || !t.is_char_boundary(e.key.end) {
                    return Err(CommandError::InvalidUtf8 { what: "ext key" });
                }
                if !t.is_char_boundary(e.value.start) || !t.is_char_boundary(e.value.end) {
                    return Err(CommandError::InvalidUtf8 { what: "ext value" });
                }
            }
            None => {
                if std::str::from_utf8(&bytes[e.key.clone()]).is_err() {
                    return Err(CommandError::InvalidUtf8 { what: "ext key" });
                }
                if std::str::from_utf8(&bytes[e.value.clone()]).is_err() {
                    return Err(CommandError::InvalidUtf8 { what: "ext value" });
                }
            }
        }
        pos = e.next;
    }
    Ok(text)
}

/// A typed header that can be read from ext fields.
pub trait DecodeHeader<'a>: Sized {
    /// Builds the header from `(key, value)` pairs in one pass. Unknown keys are ignored; a
    /// missing required key or a malformed value is a [`HeaderError`] naming the field.
    fn decode_ext<I: Iterator<Item = (&'a str, &'a str)>>(ext: I) -> Result<Self, HeaderError>;
}

/// A typed header that can be written as ext fields.
pub trait EncodeHeader {
    fn encode_ext(&self, w: &mut ExtWriter<'_>);
}

/// No custom header.
impl EncodeHeader for () {
    fn encode_ext(&self, _w: &mut ExtWriter<'_>) {}
}

impl<A: EncodeHeader, B: EncodeHeader> EncodeHeader for (A, B) {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        self.0.encode_ext(w);
        self.1.encode_ext(w);
    }
}

impl<H: EncodeHeader + ?Sized> EncodeHeader for &H {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        (**self).encode_ext(w)
    }
}

impl EncodeHeader for [(String, String)] {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        for (k, v) in self {
            w.put_str(k, v);
        }
    }
}

impl EncodeHeader for Vec<(String, String)> {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        self.as_slice().encode_ext(w)
    }
}

impl EncodeHeader for [(&str, &str)] {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        for (k, v) in self {
            w.put_str(k, v);
        }
    }
}

impl<const N: usize> EncodeHeader for [(&str, &str); N] {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        self.as_slice().encode_ext(w)
    }
}

impl EncodeHeader for ExtFields<'_> {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        for (k, v) in self.iter() {
            w.put_str(k, v);
        }
    }
}

/// Appends ext entries into a frame under construction, in the frame's serialization, or
/// collects them as owned pairs (for [`super::RemotingCommand::set_header`]).
pub struct ExtWriter<'o> {
    sink: Sink<'o>,
    count: usize,
    error: Option<EncodeError>,
}

enum Sink<'o> {
    Json(&'o mut Vec<u8>),
    Binary(&'o mut Vec<u8>),
    Pairs(&'o mut Vec<(String, String)>),
}

impl<'o> ExtWriter<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>, mode: SerializeType) -> Self {
        let sink = match mode {
            SerializeType::Json => Sink::Json(out),
            SerializeType::RocketMq => Sink::Binary(out),
        };
        ExtWriter {
            sink,
            count: 0,
            error: None,
        }
    }

    pub(crate) fn pairs(out: &'o mut Vec<(String, String)>) -> Self {
        ExtWriter {
            sink: Sink::Pairs(out),
            count: 0,
            error: None,
        }
    }

    pub(crate) fn finish(self) -> Result<usize, EncodeError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.count),
        }
    }

    /// Number of entries written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Writes `key` = `value`.
    pub fn put_str(&mut self, key: &str, value: &str) {
        self.put_bytes(key, value.as_bytes(), false)
    }

    /// Writes an integer as its decimal string.
    pub fn put_i64(&mut self, key: &str, value: i64) {
        let mut buf = [0u8; 20];
        let text = format_i64(value, &mut buf);
        self.put_bytes(key, text, true);
    }

    pub fn put_i32(&mut self, key: &str, value: i32) {
        self.put_i64(key, i64::from(value));
    }

    /// Writes `"true"` / `"false"` (Java `String.valueOf(boolean)`).
    pub fn put_bool(&mut self, key: &str, value: bool) {
        self.put_bytes(key, if value { b"true" } else { b"false" }, true);
    }

    /// `value` is UTF-8 (from a `&str`, or ASCII when `plain`: digits/true/false, which need
    /// no JSON escaping).
    fn put_bytes(&mut self, key: &str, value: &[u8], plain: bool) {
        match &mut self.sink {
            Sink::Json(out) => {
                if self.count > 0 {
                    out.push(b',');
                }
                write_json_string(out, key);
                out.push(b':');
                if plain {
                    out.push(b'"');
                    out.extend_from_slice(value);
                    out.push(b'"');
                } else {
                    write_json_string(out, std::str::from_utf8(value).unwrap_or_default());
                }
            }
            Sink::Binary(out) => {
                let Ok(key_len) = i16::try_from(key.len()) else {
                    self.error = Some(EncodeError::KeyTooLong { len: key.len() });
                    return;
                };
                out.extend_from_slice(&key_len.to_be_bytes());
                out.extend_from_slice(key.as_bytes());
                // Values are bounded by the header length check done by the frame encoder
                // (24 bits), so the i32 length cannot overflow for any frame that is sent.
                let value_len = i32::try_from(value.len()).unwrap_or(i32::MAX);
                out.extend_from_slice(&value_len.to_be_bytes());
                out.extend_from_slice(value);
            }
            Sink::Pairs(out) => {
                out.push((key.to_owned(), String::from_utf8_lossy(value).into_owned()));
            }
        }
        self.count += 1;
    }
}

/// Decimal text of `v` in `buf` (no allocation).
pub fn format_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Appends `s` as a JSON string literal (quotes, `\"`, `\\`, control characters escaped).
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Common case (ids, names, numbers): nothing to escape. A branch-free fold the compiler
    // vectorizes, then one copy; a batch's msgId list is thousands of bytes per response.
    let needs_escape = bytes.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// One typed header field: how it parses from its ext string, what absence means, and how it
/// is written. Implemented for `&str`, `i32`, `i64`, `bool` and `Option<T>` (optional field).
pub trait ExtValue<'a>: Sized {
    fn parse(field: &'static str, raw: &'a str) -> Result<Self, HeaderError>;
    fn absent(field: &'static str) -> Result<Self, HeaderError> {
        Err(HeaderError::Missing { field })
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>);
}

impl<'a> ExtValue<'a> for &'a str {
    fn parse(_field: &'static str, raw: &'a str) -> Result<Self, HeaderError> {
        Ok(raw)
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>) {
        w.put_str(key, self)
    }
}

impl<'a> ExtValue<'a> for i32 {
    fn parse(field: &'static str, raw: &'a str) -> Result<Self, HeaderError> {
        raw.parse::<i32>().map_err(|_| HeaderError::Invalid {
            field,
            value: raw.to_owned(),
            expected: "32-bit integer",
        })
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>) {
        w.put_i32(key, *self)
    }
}

impl<'a> ExtValue<'a> for i64 {
    fn parse(field: &'static str, raw: &'a str) -> Result<Self, HeaderError> {
        raw.parse::<i64>().map_err(|_| HeaderError::Invalid {
            field,
            value: raw.to_owned(),
            expected: "64-bit integer",
        })
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>) {
        w.put_i64(key, *self)
    }
}

/// Java `Boolean.parseBoolean` (case-insensitive `"true"`), extended with `"1"`: the C++ client
/// of PyPI `rocketmq` 0.4.4 (librocketmq 2.0) writes booleans as `"1"`/`"0"` (e.g. `batch` on a
/// batch send, upstream rocketmq-client-cpp issue #363), which Java would read as false and so
/// store a whole batch as one message. Never an error.
impl<'a> ExtValue<'a> for bool {
    fn parse(_field: &'static str, raw: &'a str) -> Result<Self, HeaderError> {
        Ok(raw.eq_ignore_ascii_case("true") || raw == "1")
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>) {
        w.put_bool(key, *self)
    }
}

impl<'a, T: ExtValue<'a>> ExtValue<'a> for Option<T> {
    fn parse(field: &'static str, raw: &'a str) -> Result<Self, HeaderError> {
        T::parse(field, raw).map(Some)
    }
    fn absent(_field: &'static str) -> Result<Self, HeaderError> {
        Ok(None)
    }
    fn put(&self, key: &str, w: &mut ExtWriter<'_>) {
        if let Some(v) = self {
            v.put(key, w)
        }
    }
}

/// Declares a typed header struct with its ext key names and derives [`DecodeHeader`] and
/// [`EncodeHeader`]. Field types: `&'a str`, `i32`, `i64`, `bool` (required) or `Option<_>`.
macro_rules! ext_header {
    (@decode $name:ty, $lt:lifetime, { $( $field:ident : $ty:ty = $key:literal ),* }) => {
        impl<$lt> $crate::remoting::ext::DecodeHeader<$lt> for $name {
            fn decode_ext<I: Iterator<Item = (&$lt str, &$lt str)>>(
                ext: I,
            ) -> Result<Self, $crate::remoting::error::HeaderError> {
                $( let mut $field: Option<$ty> = None; )*
                for (k, v) in ext {
                    match k {
                        $( $key => {
                            $field = Some(<$ty as $crate::remoting::ext::ExtValue<$lt>>::parse($key, v)?);
                        } )*
                        _ => {}
                    }
                    let _ = v;
                }
                Ok(Self {
                    $( $field: match $field {
                        Some(v) => v,
                        None => <$ty as $crate::remoting::ext::ExtValue<$lt>>::absent($key)?,
                    }, )*
                })
            }
        }
    };
    (@encode $name:ty, { $( $field:ident = $key:literal ),* }) => {
        impl $crate::remoting::ext::EncodeHeader for $name {
            fn encode_ext(&self, w: &mut $crate::remoting::ext::ExtWriter<'_>) {
                let _ = &w;
                $( $crate::remoting::ext::ExtValue::put(&self.$field, $key, w); )*
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident<$lt:lifetime> {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name<$lt> {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }
        ext_header!(@decode $name<$lt>, $lt, { $( $field : $ty = $key ),* });
        ext_header!(@encode $name<'_>, { $( $field = $key ),* });
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }
        ext_header!(@decode $name, 'a, { $( $field : $ty = $key ),* });
        ext_header!(@encode $name, { $( $field = $key ),* });
    };
}
pub(crate) use ext_header;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_i64_edges() {
        let mut b = [0u8; 20];
        assert_eq!(format_i64(0, &mut b), b"0");
        assert_eq!(format_i64(-7, &mut b), b"-7");
        assert_eq!(format_i64(i64::MIN, &mut b), b"-9223372036854775808");
        assert_eq!(format_i64(i64::MAX, &mut b), b"9223372036854775807");
    }

    #[test]
    fn json_string_escapes() {
        let mut out = Vec::new();
        write_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"".as_bytes());
        let back: String = serde_json::from_slice(&out).expect("valid JSON string");
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
        out.clear();
        write_json_string(&mut out, "7F000001000027AF0000000000000000,é/x");
        assert_eq!(out, "\"7F000001000027AF0000000000000000,é/x\"".as_bytes());
    }
}
