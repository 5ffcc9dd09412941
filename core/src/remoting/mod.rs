//! RocketMQ classic remoting protocol: frames, headers, codes and JSON bodies. No I/O.
//!
//! Layers, bottom up:
//! - [`frame`]: length-prefixed frames; [`decode_frame`] works on a receive buffer that may
//!   hold partial frames and separates "need more", one frame, a recoverable bad frame
//!   ([`DecodeError`], answerable with the opaque if it could be read) and a fatal stream
//!   error ([`FrameError`], close the connection). Encoders append into a reused `Vec<u8>`.
//! - Header serializations: JSON (type 0, read leniently like the C++ and Go clients write
//!   it) and ROCKETMQ binary (type 1, read without allocation). Answer in the request's one.
//! - [`CommandView`] (borrowed, server hot path) and [`RemotingCommand`] (owned).
//! - [`ExtFields`], [`DecodeHeader`] / [`EncodeHeader`] and the typed [`headers`].
//! - [`body`]: serde types for the JSON bodies, with fastjson's unquoted integer map keys.
//! - [`codes`]: request/response/language codes and version ordinals.
//!
//! What this module does not do: sockets, timeouts, opaque bookkeeping, dispatch.

pub mod binary;
pub mod body;
pub mod codes;
pub mod command;
pub mod error;
pub mod ext;
pub mod frame;
pub mod headers;
pub mod json;
pub mod limits;
pub mod pop;
pub mod recall;

#[cfg(test)]
pub(crate) mod tests;

pub use codes::{LanguageCode, RequestCode, ResponseCode, Version, FLAG_ONEWAY, FLAG_RESPONSE};
pub use command::{CommandView, RemotingCommand};
pub use error::{BodyError, CommandError, DecodeError, EncodeError, FrameError, HeaderError};
pub use ext::{DecodeHeader, EncodeHeader, ExtFields, ExtIter, ExtValue, ExtWriter};
pub use frame::{
    decode_command, decode_frame, encode_frame, encode_frame_head, peek_frame_len, FrameDecode,
    FrameHead, SerializeType,
};
pub use limits::{
    CodecLimits, DEFAULT_MAX_BATCH_COUNT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_FRAME_BYTES,
    LENGTH_PREFIX_BYTES, MAX_HEADER_BYTES,
};

/// Prefix of a consumer group's retry topic (`%RETRY%<group>`).
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
