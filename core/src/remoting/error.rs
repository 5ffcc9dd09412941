//! Error types of the remoting codec.
//!
//! Three classes, by what the caller can still do:
//! - [`FrameError`]: the byte stream cannot be re-synchronised; close the connection.
//! - [`DecodeError`]: one well-delimited frame is bad (its bytes are consumed); answer it with
//!   SYSTEM_ERROR if [`DecodeError::reply_opaque`] says who to answer, else close or drop.
//! - [`HeaderError`]: a typed header is missing a field or has a malformed one.

use super::frame::SerializeType;
use thiserror::Error;

/// Fatal framing errors: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame length {length} is below the minimum of 4 (the header-length word); stream is corrupt")]
    LengthTooSmall { length: i64 },
    #[error("frame of {frame_bytes} bytes (prefix included) exceeds the limit of {max_frame_bytes} bytes")]
    FrameTooLarge {
        frame_bytes: u64,
        max_frame_bytes: usize,
    },
}

/// What is wrong with one frame whose extent is known.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("unknown serialize type {type_byte} (0 = JSON, 1 = ROCKETMQ)")]
    UnknownSerializeType { type_byte: u8 },
    #[error(
        "header length {header_len} exceeds the frame's {available} bytes after the length words"
    )]
    HeaderLengthExceedsFrame { header_len: usize, available: usize },
    #[error("body of {body_len} bytes exceeds the limit of {max_body_bytes} bytes")]
    BodyTooLarge {
        body_len: usize,
        max_body_bytes: usize,
    },
    #[error("JSON header does not parse: {reason}")]
    BadJsonHeader { reason: String },
    #[error("JSON header lacks the required key `{field}`")]
    MissingHeaderField { field: &'static str },
    #[error("binary header truncated reading {what}: need {needed} bytes, {available} left")]
    BinaryHeaderTruncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("binary header has a negative length {length} for {what}")]
    BinaryHeaderNegativeLength { what: &'static str, length: i64 },
    #[error("binary header {what} is not UTF-8")]
    InvalidUtf8 { what: &'static str },
}

/// A bad frame, with whatever identifying fields could be read, so the server can answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad remoting command (opaque {opaque:?}, code {code:?}): {error}")]
pub struct DecodeError {
    pub error: CommandError,
    /// Serialization of the frame, when the type byte was valid.
    pub serialize_type: Option<SerializeType>,
    pub opaque: Option<i32>,
    pub code: Option<i32>,
    pub flag: Option<i32>,
}

impl DecodeError {
    pub(crate) fn bare(error: CommandError) -> Self {
        DecodeError {
            error,
            serialize_type: None,
            opaque: None,
            code: None,
            flag: None,
        }
    }

    /// The opaque to answer with SYSTEM_ERROR: known, the frame was a request, and not oneway.
    pub fn reply_opaque(&self) -> Option<i32> {
        let flag = self.flag.unwrap_or(0);
        if flag & super::codes::FLAG_RESPONSE != 0 || flag & super::codes::FLAG_ONEWAY != 0 {
            return None;
        }
        self.opaque
    }
}

/// A typed header could not be built from the ext fields.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("required header field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("header field `{field}` = {value:?} is not a valid {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl HeaderError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            HeaderError::Missing { field } | HeaderError::Invalid { field, .. } => field,
        }
    }
}

/// A command could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("header of {header_bytes} bytes exceeds the 24-bit header length limit of 16777215")]
    HeaderTooLarge { header_bytes: usize },
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max_frame_bytes} bytes")]
    FrameTooLarge {
        frame_bytes: usize,
        max_frame_bytes: usize,
    },
    #[error(
        "{what} {value} does not fit the binary header's 16-bit field; use the JSON serialization"
    )]
    ValueOutOfRange { what: &'static str, value: i32 },
    #[error("ext key of {len} bytes is longer than the binary header's 32767-byte limit")]
    KeyTooLong { len: usize },
}

/// A JSON body could not be decoded or encoded.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("{what} body is not valid JSON of the expected shape: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} body is not UTF-8")]
    NotUtf8 { what: &'static str },
}
