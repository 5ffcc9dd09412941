//! Remoting commands: [`CommandView`] borrows a decoded frame from the receive buffer (the
//! server's hot path), [`RemotingCommand`] owns one (the client, tests, non-hot responses).

use super::codes::{LanguageCode, Version, FLAG_ONEWAY, FLAG_RESPONSE};
use super::error::{EncodeError, HeaderError};
use super::ext::{DecodeHeader, EncodeHeader, ExtFields, ExtWriter};
use super::frame::{encode_frame, FrameHead, SerializeType};
use bytes::Bytes;
use std::borrow::Cow;

/// A decoded command borrowing header strings and body from the frame bytes.
#[derive(Debug, Clone)]
pub struct CommandView<'a> {
    /// Serialization the frame used; answer in the same one.
    pub serialize_type: SerializeType,
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    /// `None` when absent, null or empty.
    pub remark: Option<Cow<'a, str>>,
    pub ext: ExtFields<'a>,
    pub body: &'a [u8],
}

impl<'a> CommandView<'a> {
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn remark(&self) -> Option<&str> {
        self.remark.as_deref()
    }

    /// An ext value by key.
    pub fn ext_get(&self, key: &str) -> Option<&str> {
        self.ext.get(key)
    }

    /// Decodes a typed header from the ext fields (one pass, borrowing).
    pub fn decode_header<'s, H: DecodeHeader<'s>>(&'s self) -> Result<H, HeaderError> {
        H::decode_ext(self.ext.iter())
    }

    /// The head of a response to this request: same opaque, flag RESPONSE, language JAVA.
    pub fn response_head(&self, code: i32) -> FrameHead<'static> {
        FrameHead::response(code, self.opaque)
    }

    /// Owned copy.
    pub fn to_owned_command(&self) -> RemotingCommand {
        RemotingCommand {
            serialize_type: self.serialize_type,
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: self.remark.as_deref().map(str::to_owned),
            ext_fields: self.ext.to_vec(),
            body: Bytes::copy_from_slice(self.body),
        }
    }
}

/// An owned remoting command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// Serialization used by [`RemotingCommand::encode`].
    pub serialize_type: SerializeType,
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    /// Ext fields in order; values are strings on the wire.
    pub ext_fields: Vec<(String, String)>,
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request from ramjet (language RUST, version [`Version::CURRENT`]), JSON-encoded.
    pub fn request(code: i32, opaque: i32) -> Self {
        RemotingCommand {
            serialize_type: SerializeType::Json,
            code,
            language: LanguageCode::Rust,
            version: Version::CURRENT,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A response (language JAVA, flag RESPONSE) in `serialize_type`, which must be the
    /// serialization of the request being answered.
    pub fn response(code: i32, opaque: i32, serialize_type: SerializeType) -> Self {
        RemotingCommand {
            serialize_type,
            code,
            language: LanguageCode::Java,
            version: Version::CURRENT,
            opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `request` (same opaque and serialization).
    pub fn response_to(request: &CommandView<'_>, code: i32) -> Self {
        Self::response(code, request.opaque, request.serialize_type)
    }

    /// Appends the ext entries of a typed header (values rendered to strings).
    pub fn with_header<H: EncodeHeader + ?Sized>(mut self, header: &H) -> Self {
        self.set_header(header);
        self
    }

    /// Appends the ext entries of a typed header.
    pub fn set_header<H: EncodeHeader + ?Sized>(&mut self, header: &H) {
        let mut w = ExtWriter::pairs(&mut self.ext_fields);
        header.encode_ext(&mut w);
        // The pair sink has no length limits, so it cannot fail.
        let _ = w.finish();
    }

    pub fn with_ext(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.ext_fields.push((key.into(), value.into()));
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> Self {
        self.serialize_type = serialize_type;
        self
    }

    /// Marks the request oneway.
    pub fn oneway(mut self) -> Self {
        self.flag |= FLAG_ONEWAY;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// The last value of `key`.
    pub fn ext_get(&self, key: &str) -> Option<&str> {
        self.ext_fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Decodes a typed header from the ext fields.
    pub fn decode_header<'s, H: DecodeHeader<'s>>(&'s self) -> Result<H, HeaderError> {
        H::decode_ext(
            self.ext_fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// The fixed fields as a [`FrameHead`].
    pub fn head(&self) -> FrameHead<'_> {
        FrameHead {
            code: self.code,
            language: self.language,
            version: self.version,
            opaque: self.opaque,
            flag: self.flag,
            remark: self.remark.as_deref(),
        }
    }

    /// Appends the whole frame to `out` in `self.serialize_type`; returns the bytes appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        encode_frame(
            out,
            self.serialize_type,
            &self.head(),
            self.ext_fields.as_slice(),
            &self.body,
        )
    }
}

impl super::error::DecodeError {
    /// The SYSTEM_ERROR reply to a bad request frame, when it can be answered (opaque known,
    /// a request, not oneway); remark = the error text. In the frame's serialization, or JSON
    /// when the type byte itself was bad.
    pub fn error_reply(&self) -> Option<RemotingCommand> {
        let opaque = self.reply_opaque()?;
        Some(
            RemotingCommand::response(
                super::codes::ResponseCode::SYSTEM_ERROR,
                opaque,
                self.serialize_type.unwrap_or_default(),
            )
            .with_remark(self.error.to_string()),
        )
    }
}
