//! Typed request/response headers (spec §3), decoded from and encoded to ext fields.
//!
//! Every struct implements [`DecodeHeader`](super::DecodeHeader) (one pass over the ext
//! entries, strings borrowed from the frame) and [`EncodeHeader`](super::EncodeHeader)
//! (Java's key names, values as strings). Required fields are plain types; a missing or
//! malformed one is a [`HeaderError`](super::HeaderError) naming the key. Optional fields are
//! `Option`s. The 5.x `RpcRequestHeader` keys (`ns`, `nsd`, `oway`, `lo`) are ignored; `bname`
//! is kept where brokers use it.

mod client;
mod message;
mod namesrv;
mod offset;
mod pop;
mod pull;
mod send;
mod topic;
mod transaction;

pub use client::*;
pub use message::*;
pub use namesrv::*;
pub use offset::*;
pub use pop::*;
pub use pull::*;
pub use send::*;
pub use topic::*;
pub use transaction::*;
