//! Frame layer: the length prefix, the type-and-header-length word, and the encoders.
//!
//! ```text
//! [frameLength i32 BE][type u8 | headerLength u24 BE][header][body]
//! frameLength = 4 + headerLength + bodyLength (it does not count itself)
//! ```
//!
//! Decoding works on a byte buffer that may hold partial frames: [`decode_frame`] answers
//! "need more", one frame (a [`CommandView`] or a recoverable [`DecodeError`]), or a fatal
//! [`FrameError`]. Encoding appends to a caller-owned, reused `Vec<u8>`; the only writes are
//! the frame bytes themselves (numbers are formatted on the stack).

use super::binary;
use super::codes::{LanguageCode, Version, FLAG_ONEWAY, FLAG_RESPONSE};
use super::command::CommandView;
use super::error::{CommandError, DecodeError, EncodeError, FrameError};
use super::ext::{EncodeHeader, ExtWriter};
use super::json;
use super::limits::{CodecLimits, LENGTH_PREFIX_BYTES, MAX_HEADER_BYTES};

/// Header serialization, the high byte of the second length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// Type 0: the command as JSON text. The only one the C++ client reads.
    #[default]
    Json,
    /// Type 1: RocketMQ's binary header.
    RocketMq,
}

impl SerializeType {
    pub fn from_u8(b: u8) -> Option<SerializeType> {
        match b {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }
}

/// Outcome of looking at the front of a receive buffer.
#[derive(Debug)]
pub enum FrameDecode<'a> {
    /// The buffer holds no complete frame. `frame_bytes` is the full size (prefix included) of
    /// the next frame once its length prefix is in, so the caller can size its buffer.
    NeedMore { frame_bytes: Option<usize> },
    /// One complete frame; `consumed` bytes (prefix included) can be dropped from the buffer.
    /// `command` is `Err` for a malformed but well-delimited frame: the stream stays in sync.
    Frame {
        consumed: usize,
        command: Result<CommandView<'a>, DecodeError>,
    },
}

/// Size of the next frame (prefix included) once the 4-byte prefix is in the buffer.
/// Fatal if the length is below 4 or the frame exceeds `limits.max_frame_bytes`.
pub fn peek_frame_len(buf: &[u8], limits: &CodecLimits) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if length < 4 {
        return Err(FrameError::LengthTooSmall {
            length: i64::from(length),
        });
    }
    // Netty compares the whole frame, prefix included, against the maximum.
    let frame_bytes = length as usize + LENGTH_PREFIX_BYTES;
    if frame_bytes > limits.max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            frame_bytes: frame_bytes as u64,
            max_frame_bytes: limits.max_frame_bytes,
        });
    }
    Ok(Some(frame_bytes))
}

/// Decodes the frame at the front of `buf`, if complete. See [`FrameDecode`].
pub fn decode_frame<'a>(
    buf: &'a [u8],
    limits: &CodecLimits,
) -> Result<FrameDecode<'a>, FrameError> {
    let Some(frame_bytes) = peek_frame_len(buf, limits)? else {
        return Ok(FrameDecode::NeedMore { frame_bytes: None });
    };
    let Some(frame) = buf.get(LENGTH_PREFIX_BYTES..frame_bytes) else {
        return Ok(FrameDecode::NeedMore {
            frame_bytes: Some(frame_bytes),
        });
    };
    Ok(FrameDecode::Frame {
        consumed: frame_bytes,
        command: decode_command(frame, limits),
    })
}

/// Decodes one frame's content (everything after the length prefix; `frameLength` bytes).
pub fn decode_command<'a>(
    frame: &'a [u8],
    limits: &CodecLimits,
) -> Result<CommandView<'a>, DecodeError> {
    let Some(word) = frame.get(..4) else {
        return Err(DecodeError::bare(CommandError::HeaderLengthExceedsFrame {
            header_len: 0,
            available: frame.len(),
        }));
    };
    let type_byte = word[0];
    let header_len = usize::from(word[1]) << 16 | usize::from(word[2]) << 8 | usize::from(word[3]);
    let rest = &frame[4..];
    if header_len > rest.len() {
        return Err(DecodeError::bare(CommandError::HeaderLengthExceedsFrame {
            header_len,
            available: rest.len(),
        }));
    }
    let (header, body) = rest.split_at(header_len);
    let Some(serialize_type) = SerializeType::from_u8(type_byte) else {
        return Err(DecodeError::bare(CommandError::UnknownSerializeType {
            type_byte,
        }));
    };
    let parsed = match serialize_type {
        SerializeType::Json => json::decode_header(header),
        SerializeType::RocketMq => binary::decode_header(header),
    };
    let mut view = match parsed {
        Ok(v) => v,
        Err(mut e) => {
            e.serialize_type = Some(serialize_type);
            return Err(e);
        }
    };
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError {
            error: CommandError::BodyTooLarge {
                body_len: body.len(),
                max_body_bytes: limits.max_body_bytes,
            },
            serialize_type: Some(serialize_type),
            opaque: Some(view.opaque),
            code: Some(view.code),
            flag: Some(view.flag),
        });
    }
    view.serialize_type = serialize_type;
    view.body = body;
    Ok(view)
}

/// The fixed fields of a command to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead<'a> {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<&'a str>,
}

impl FrameHead<'static> {
    /// A request from ramjet's client (language RUST, version [`Version::CURRENT`]).
    pub fn request(code: i32, opaque: i32) -> Self {
        FrameHead {
            code,
            language: LanguageCode::Rust,
            version: Version::CURRENT,
            opaque,
            flag: 0,
            remark: None,
        }
    }

    /// A oneway request (no response expected).
    pub fn oneway(code: i32, opaque: i32) -> Self {
        FrameHead {
            flag: FLAG_ONEWAY,
            ..Self::request(code, opaque)
        }
    }

    /// A response to the request with `opaque`. Language JAVA, which every client knows
    /// (spec §1.6), version [`Version::CURRENT`].
    pub fn response(code: i32, opaque: i32) -> Self {
        FrameHead {
            code,
            language: LanguageCode::Java,
            version: Version::CURRENT,
            opaque,
            flag: FLAG_RESPONSE,
            remark: None,
        }
    }
}

impl<'a> FrameHead<'a> {
    pub fn with_remark<'b>(self, remark: &'b str) -> FrameHead<'b> {
        FrameHead {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: Some(remark),
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }
}

/// Appends one complete frame (prefix, header, body) to `out`; returns the bytes appended.
/// On error `out` is left as it was.
pub fn encode_frame<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    serialize_type: SerializeType,
    head: &FrameHead<'_>,
    header: &H,
    body: &[u8],
) -> Result<usize, EncodeError> {
    let n = encode_frame_head(out, serialize_type, head, header, body.len())?;
    out.extend_from_slice(body);
    Ok(n + body.len())
}

/// Appends the prefix and header of a frame whose `body_len` body bytes the caller sends
/// separately (zero-copy pull delivery). Returns the bytes appended. On error `out` is
/// left as it was.
pub fn encode_frame_head<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    serialize_type: SerializeType,
    head: &FrameHead<'_>,
    header: &H,
    body_len: usize,
) -> Result<usize, EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    let header_start = out.len();
    let written = match serialize_type {
        SerializeType::Json => json::encode_header(out, head, header),
        SerializeType::RocketMq => binary::encode_header(out, head, header),
    };
    if let Err(e) = written {
        out.truncate(start);
        return Err(e);
    }
    let header_len = out.len() - header_start;
    if header_len > MAX_HEADER_BYTES {
        out.truncate(start);
        return Err(EncodeError::HeaderTooLarge {
            header_bytes: header_len,
        });
    }
    let frame_len = 4 + header_len + body_len;
    let Ok(frame_len_i32) = i32::try_from(frame_len) else {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            frame_bytes: frame_len + LENGTH_PREFIX_BYTES,
            max_frame_bytes: i32::MAX as usize,
        });
    };
    let type_word = (u32::from(serialize_type.as_u8()) << 24) | header_len as u32;
    out[start..start + 4].copy_from_slice(&frame_len_i32.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&type_word.to_be_bytes());
    Ok(out.len() - start)
}

/// Writes the entries of `header` through an [`ExtWriter`]; shared by both serializations.
pub(crate) fn write_ext<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    serialize_type: SerializeType,
    header: &H,
) -> Result<usize, EncodeError> {
    let mut w = ExtWriter::new(out, serialize_type);
    header.encode_ext(&mut w);
    w.finish()
}
