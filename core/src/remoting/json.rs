//! JSON header (serialize type 0), read leniently and written the way Java writes it.
//!
//! Reading accepts what real clients send (spec §1.3, README quirks): no
//! `serializeTypeCurrentRPC`; `remark` `""`, null or absent; ext values as JSON strings,
//! numbers or booleans (null values are dropped); numeric fields as numbers or numeric
//! strings; `language` as a name or an ordinal; unknown keys; trailing whitespace/newline.
//! Only `code` is required.
//!
//! Writing follows fastjson: keys in alphabetical order, null `remark` omitted, every ext
//! value a JSON string, `serializeTypeCurrentRPC` = `"JSON"`.

use super::codes::LanguageCode;
use super::command::CommandView;
use super::error::{CommandError, DecodeError, EncodeError};
use super::ext::{format_i64, write_json_string, EncodeHeader, ExtFields};
use super::frame::{write_ext, FrameHead, SerializeType};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A JSON scalar read as text: strings borrowed where unescaped; numbers and booleans
/// rendered as text; null as `None`.
struct LenientText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LenientText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LenientText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Owned(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientText(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientText(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientText(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The `extFields` object as borrowed pairs; null entries dropped; null map = empty.
struct JsonExt<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for JsonExt<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonExt<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string/number/boolean values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some(key) = m.next_key::<LenientText<'a>>()? {
                    let value = m.next_value::<LenientText<'a>>()?;
                    if let (Some(k), Some(v)) = (key.0, value.0) {
                        pairs.push((k, v));
                    }
                }
                Ok(JsonExt(pairs))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(JsonExt(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// An int32 field given as a number, a numeric string, or null (0).
fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    lenient_opt_i32(d).map(|v| v.unwrap_or(0))
}

fn lenient_opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 32-bit integer (number or numeric string)")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} does not fit a 32-bit integer")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} does not fit a 32-bit integer")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                Ok(Some(v as i32))
            } else {
                Err(E::custom(format!("{v} is not a 32-bit integer")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse::<i32>()
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not a 32-bit integer")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `language` as an enum name or an ordinal; unknown reads as OTHER.
fn lenient_language<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = LanguageCode;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a language name or ordinal")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(LanguageCode::from_name(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_u8))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_u8))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(LanguageCode::Other)
        }
    }
    d.deserialize_any(V)
}

#[derive(Deserialize)]
struct JsonHeader<'a> {
    #[serde(default, deserialize_with = "lenient_opt_i32")]
    code: Option<i32>,
    #[serde(default = "default_language", deserialize_with = "lenient_language")]
    language: LanguageCode,
    #[serde(default, deserialize_with = "lenient_i32")]
    version: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    opaque: i32,
    #[serde(default, deserialize_with = "lenient_i32")]
    flag: i32,
    #[serde(default, borrow)]
    remark: Option<LenientText<'a>>,
    #[serde(default, borrow, rename = "extFields")]
    ext_fields: Option<JsonExt<'a>>,
}

fn default_language() -> LanguageCode {
    LanguageCode::Other
}

/// Only the identifying fields, to answer a header whose other parts are malformed.
#[derive(Deserialize)]
struct JsonProbe {
    #[serde(default, deserialize_with = "lenient_opt_i32")]
    code: Option<i32>,
    #[serde(default, deserialize_with = "lenient_opt_i32")]
    opaque: Option<i32>,
    #[serde(default, deserialize_with = "lenient_opt_i32")]
    flag: Option<i32>,
}

pub(crate) fn decode_header(header: &[u8]) -> Result<CommandView<'_>, DecodeError> {
    match serde_json::from_slice::<JsonHeader<'_>>(header) {
        Ok(h) => {
            let Some(code) = h.code else {
                return Err(DecodeError {
                    error: CommandError::MissingHeaderField { field: "code" },
                    serialize_type: Some(SerializeType::Json),
                    opaque: Some(h.opaque),
                    code: None,
                    flag: Some(h.flag),
                });
            };
            let remark = h.remark.and_then(|r| r.0).filter(|r| !r.is_empty());
            Ok(CommandView {
                serialize_type: SerializeType::Json,
                code,
                language: h.language,
                version: h.version,
                opaque: h.opaque,
                flag: h.flag,
                remark,
                ext: ExtFields::from_json(h.ext_fields.map(|e| e.0).unwrap_or_default()),
                body: &[],
            })
        }
        Err(e) => {
            let (code, opaque, flag) = match serde_json::from_slice::<JsonProbe>(header) {
                Ok(p) => (p.code, p.opaque, p.flag),
                Err(_) => (
                    scan_int_field(header, b"code"),
                    scan_int_field(header, b"opaque"),
                    scan_int_field(header, b"flag"),
                ),
            };
            Err(DecodeError {
                error: CommandError::BadJsonHeader {
                    reason: e.to_string(),
                },
                serialize_type: Some(SerializeType::Json),
                opaque,
                code,
                flag,
            })
        }
    }
}

/// Finds `"name"` followed by `:` and an integer in broken JSON text (best effort, top level
/// or not), to recover the opaque of a request that cannot be parsed.
fn scan_int_field(text: &[u8], name: &[u8]) -> Option<i32> {
    let mut i = 0;
    while i + name.len() + 2 <= text.len() {
        if text[i] == b'"'
            && text[i + 1..].starts_with(name)
            && text.get(i + 1 + name.len()) == Some(&b'"')
        {
            let mut j = i + name.len() + 2;
            while text.get(j).is_some_and(|b| b.is_ascii_whitespace()) {
                j += 1;
            }
            if text.get(j) != Some(&b':') {
                i += 1;
                continue;
            }
            j += 1;
            while text
                .get(j)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'"')
            {
                j += 1;
            }
            let start = j;
            if text.get(j) == Some(&b'-') {
                j += 1;
            }
            while text.get(j).is_some_and(|b| b.is_ascii_digit()) {
                j += 1;
            }
            return std::str::from_utf8(&text[start..j]).ok()?.parse().ok();
        }
        i += 1;
    }
    None
}

pub(crate) fn encode_header<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    head: &FrameHead<'_>,
    header: &H,
) -> Result<(), EncodeError> {
    let mut num = [0u8; 20];
    out.extend_from_slice(b"{\"code\":");
    out.extend_from_slice(format_i64(i64::from(head.code), &mut num));
    out.extend_from_slice(b",\"extFields\":{");
    write_ext(out, SerializeType::Json, header)?;
    out.extend_from_slice(b"},\"flag\":");
    out.extend_from_slice(format_i64(i64::from(head.flag), &mut num));
    out.extend_from_slice(b",\"language\":\"");
    out.extend_from_slice(head.language.name().as_bytes());
    out.extend_from_slice(b"\",\"opaque\":");
    out.extend_from_slice(format_i64(i64::from(head.opaque), &mut num));
    if let Some(remark) = head.remark {
        out.extend_from_slice(b",\"remark\":");
        write_json_string(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.extend_from_slice(format_i64(i64::from(head.version), &mut num));
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_recovers_opaque_from_broken_json() {
        assert_eq!(
            scan_int_field(br#"{"code":10,"opaque": 77,"x":"#, b"opaque"),
            Some(77)
        );
        assert_eq!(scan_int_field(br#"{"opaque":"-5""#, b"opaque"), Some(-5));
        assert_eq!(scan_int_field(br#"{"opaqueX":1}"#, b"opaque"), None);
        assert_eq!(scan_int_field(br#"{"code":"#, b"code"), None);
    }
}
