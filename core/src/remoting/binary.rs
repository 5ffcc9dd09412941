//! ROCKETMQ binary header (serialize type 1), spec §1.4.
//!
//! ```text
//! code i16 | language u8 | version i16 | opaque i32 | flag i32 |
//! remarkLen i32 | remark | extLen i32 | (keyLen i16, key, valueLen i32, value)*
//! ```
//! Decoding borrows everything from the header bytes and validates the ext entries once
//! (lengths and UTF-8), so later iteration is allocation-free. Codes and versions are 16-bit
//! on this wire and are sign-extended like Java's `short` reads.

use super::codes::LanguageCode;
use super::command::CommandView;
use super::error::{CommandError, DecodeError, EncodeError};
use super::ext::{validate_binary, EncodeHeader, ExtFields};
use super::frame::{write_ext, FrameHead, SerializeType};
use std::borrow::Cow;

/// Bytes before the remark.
pub const FIXED_HEADER_BYTES: usize = 17;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CommandError> {
        if self.buf.len() < n {
            return Err(CommandError::BinaryHeaderTruncated {
                what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn len_i32(&mut self, what: &'static str) -> Result<usize, CommandError> {
        let b = self.take(4, what)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if v < 0 {
            return Err(CommandError::BinaryHeaderNegativeLength {
                what,
                length: i64::from(v),
            });
        }
        Ok(v as usize)
    }
}

pub(crate) fn decode_header(header: &[u8]) -> Result<CommandView<'_>, DecodeError> {
    if header.len() < FIXED_HEADER_BYTES {
        return Err(DecodeError::bare(CommandError::BinaryHeaderTruncated {
            what: "fixed header",
            needed: FIXED_HEADER_BYTES,
            available: header.len(),
        }));
    }
    let code = i32::from(i16::from_be_bytes([header[0], header[1]]));
    let language = LanguageCode::from_u8(header[2]);
    let version = i32::from(i16::from_be_bytes([header[3], header[4]]));
    let opaque = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let flag = i32::from_be_bytes([header[9], header[10], header[11], header[12]]);
    let fail = |error| DecodeError {
        error,
        serialize_type: Some(SerializeType::RocketMq),
        opaque: Some(opaque),
        code: Some(code),
        flag: Some(flag),
    };
    let mut r = Reader { buf: &header[13..] };
    let remark_len = r.len_i32("remark length").map_err(fail)?;
    let remark_bytes = r.take(remark_len, "remark").map_err(fail)?;
    let remark = if remark_bytes.is_empty() {
        None
    } else {
        Some(Cow::Borrowed(std::str::from_utf8(remark_bytes).map_err(
            |_| fail(CommandError::InvalidUtf8 { what: "remark" }),
        )?))
    };
    // Some encoders omit the ext length word entirely when there are no entries.
    let ext_bytes: &[u8] = if r.buf.is_empty() {
        &[]
    } else {
        let ext_len = r.len_i32("ext length").map_err(fail)?;
        r.take(ext_len, "ext fields").map_err(fail)?
    };
    let ext_text = validate_binary(ext_bytes).map_err(fail)?;
    Ok(CommandView {
        serialize_type: SerializeType::RocketMq,
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext: ExtFields::from_binary(ext_bytes, ext_text),
        body: &[],
    })
}

pub(crate) fn encode_header<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    head: &FrameHead<'_>,
    header: &H,
) -> Result<(), EncodeError> {
    let code = i16::try_from(head.code).map_err(|_| EncodeError::ValueOutOfRange {
        what: "code",
        value: head.code,
    })?;
    let version = i16::try_from(head.version).map_err(|_| EncodeError::ValueOutOfRange {
        what: "version",
        value: head.version,
    })?;
    out.extend_from_slice(&code.to_be_bytes());
    out.push(head.language.as_u8());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&head.opaque.to_be_bytes());
    out.extend_from_slice(&head.flag.to_be_bytes());
    let remark = head.remark.unwrap_or("").as_bytes();
    out.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    out.extend_from_slice(remark);
    let ext_len_at = out.len();
    out.extend_from_slice(&[0u8; 4]);
    write_ext(out, SerializeType::RocketMq, header)?;
    let ext_len = (out.len() - ext_len_at - 4) as i32;
    out[ext_len_at..ext_len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
    Ok(())
}
