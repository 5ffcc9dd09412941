//! fastjson compatibility for JSON bodies (spec §6.1, §6.7).
//!
//! Java's fastjson writes non-string map keys unquoted (`"brokerAddrs":{0:"host:port"}`),
//! which standard JSON parsers reject; RocketMQ name servers send that form to clients older
//! than 4.9.4, and other servers send quoted keys. So:
//! - [`from_slice`] reads both: it quotes bare numeric object keys first (only when there are
//!   any, otherwise the input is parsed in place) and then parses standard JSON.
//! - [`to_vec`] / [`write`] write either style: [`JsonStyle::Standard`] (keys quoted) or
//!   [`JsonStyle::Fastjson`] (integer map keys bare, exactly where fastjson leaves them bare).
//!
//! Map keys that are objects (fastjson's MessageQueue-keyed maps) are not supported.

use crate::remoting::codes::Version;
use crate::remoting::error::BodyError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::io;

/// How integer map keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonStyle {
    /// Standard JSON: every key quoted (fastjson BrowserCompatible, 4.9.4+ route replies).
    #[default]
    Standard,
    /// fastjson default: integer map keys unquoted.
    Fastjson,
}

impl JsonStyle {
    /// The style a RocketMQ name server uses for a route reply: standard for request version
    /// >= 4.9.4 (401) or when the client sent `acceptStandardJsonOnly=true`, fastjson otherwise.
    pub fn for_route_reply(request_version: i32, accept_standard_json_only: bool) -> JsonStyle {
        if accept_standard_json_only || request_version >= Version::V4_9_4 {
            JsonStyle::Standard
        } else {
            JsonStyle::Fastjson
        }
    }
}

/// Parses a body written by fastjson or by a standard JSON writer.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, BodyError> {
    let normalized = quote_bare_keys(bytes);
    serde_json::from_slice(&normalized).map_err(|source| BodyError::Json { what, source })
}

/// Serializes `value` in `style` into a new vector.
pub fn to_vec<T: Serialize + ?Sized>(value: &T, style: JsonStyle) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value, style)?;
    Ok(out)
}

/// Appends `value` serialized in `style` to `out`.
pub fn write<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    style: JsonStyle,
) -> Result<(), BodyError> {
    let result = match style {
        JsonStyle::Standard => serde_json::to_writer(&mut *out, value),
        JsonStyle::Fastjson => {
            let mut ser = serde_json::Serializer::with_formatter(&mut *out, BareIntKeys::default());
            value.serialize(&mut ser)
        }
    };
    result.map_err(|source| BodyError::Json {
        what: std::any::type_name::<T>(),
        source,
    })
}

/// Quotes numeric object keys (`{0:"a"}` -> `{"0":"a"}`); borrows the input when none exist.
pub fn quote_bare_keys(input: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    // Container stack: true = object. Bounded by input length.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            if let Some(o) = out.as_mut() {
                o.push(b);
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                expect_key = false;
            }
            b'{' => {
                stack.push(true);
                expect_key = true;
            }
            b'[' => {
                stack.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = stack.last().copied().unwrap_or(false),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'-' | b'0'..=b'9' if expect_key => {
                let start = i;
                while i < input.len()
                    && matches!(input[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let o = out.get_or_insert_with(|| {
                    let mut v = Vec::with_capacity(input.len() + 16);
                    v.extend_from_slice(&input[..start]);
                    v
                });
                o.push(b'"');
                o.extend_from_slice(&input[start..i]);
                o.push(b'"');
                expect_key = false;
                continue;
            }
            _ => expect_key = false,
        }
        if let Some(o) = out.as_mut() {
            o.push(b);
        }
        i += 1;
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(input),
    }
}

/// serde_json formatter that leaves integer map keys unquoted. serde_json writes an integer
/// key as `begin_string`, `write_iN`, `end_string`; a string key writes fragments instead.
#[derive(Default)]
struct BareIntKeys {
    in_key: bool,
    /// Inside a key: the opening quote is held back until we know what the key is.
    pending_quote: bool,
    bare: bool,
}

macro_rules! bare_int {
    ($($name:ident: $t:ty),*) => {
        $(
            fn $name<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: $t) -> io::Result<()> {
                if self.pending_quote {
                    self.pending_quote = false;
                    self.bare = true;
                }
                serde_json::ser::CompactFormatter.$name(writer, value)
            }
        )*
    };
}

impl serde_json::ser::Formatter for BareIntKeys {
    bare_int!(write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64,
              write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64);

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.in_key = true;
        serde_json::ser::CompactFormatter.begin_object_key(writer, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.in_key = false;
        serde_json::ser::CompactFormatter.end_object_key(writer)
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.in_key {
            self.pending_quote = true;
            self.bare = false;
            return Ok(());
        }
        writer.write_all(b"\"")
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        if self.in_key {
            if self.pending_quote {
                // Empty string key.
                self.pending_quote = false;
                return writer.write_all(b"\"\"");
            }
            if self.bare {
                self.bare = false;
                return Ok(());
            }
        }
        writer.write_all(b"\"")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if self.pending_quote {
            self.pending_quote = false;
            writer.write_all(b"\"")?;
        }
        writer.write_all(fragment.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        if self.pending_quote {
            self.pending_quote = false;
            writer.write_all(b"\"")?;
        }
        serde_json::ser::CompactFormatter.write_char_escape(writer, char_escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn quotes_bare_integer_keys_only_in_key_position() {
        let src = br#"{"a":{0:"x:1",1:"y"},"b":[1,2,{-3:"z"}],"s":"{0:1}"}"#;
        let got = quote_bare_keys(src);
        assert_eq!(
            &*got,
            br#"{"a":{"0":"x:1","1":"y"},"b":[1,2,{"-3":"z"}],"s":"{0:1}"}"#.as_slice()
        );
        let plain = br#"{"a":{"0":"x"},"n":[1,2]}"#;
        assert!(matches!(quote_bare_keys(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn fastjson_writer_leaves_only_integer_keys_bare() {
        let mut m: BTreeMap<i64, String> = BTreeMap::new();
        m.insert(0, "a:1".into());
        m.insert(12, "b".into());
        let mut s: BTreeMap<String, i32> = BTreeMap::new();
        s.insert("0".into(), 1);
        s.insert("q\"".into(), 2);
        s.insert(String::new(), 3);
        let v = (m, s);
        let fj = to_vec(&v, JsonStyle::Fastjson).expect("serializes");
        assert_eq!(
            std::str::from_utf8(&fj).expect("utf8"),
            r#"[{0:"a:1",12:"b"},{"":3,"0":1,"q\"":2}]"#
        );
        let std_json = to_vec(&v, JsonStyle::Standard).expect("serializes");
        assert_eq!(
            std::str::from_utf8(&std_json).expect("utf8"),
            r#"[{"0":"a:1","12":"b"},{"":3,"0":1,"q\"":2}]"#
        );
        let back: (BTreeMap<i64, String>, BTreeMap<String, i32>) =
            from_slice(&fj, "test").expect("parses");
        assert_eq!(back, v);
    }

    #[test]
    fn route_style_by_version() {
        assert_eq!(JsonStyle::for_route_reply(333, false), JsonStyle::Fastjson);
        assert_eq!(JsonStyle::for_route_reply(333, true), JsonStyle::Standard);
        assert_eq!(JsonStyle::for_route_reply(401, false), JsonStyle::Standard);
        assert_eq!(JsonStyle::for_route_reply(400, false), JsonStyle::Fastjson);
    }
}
