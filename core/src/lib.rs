//! ramjet-core: the language every ramjet crate speaks. No I/O.
//!
//! - [`record`]: RocketMQ's stored message record (CommitLog format), properties, batches,
//!   tag hash, message ids.
//! - [`remoting`]: RocketMQ remoting frames (JSON and binary headers), request/response codes,
//!   typed request/response headers and JSON bodies.
//! - [`acl`]: RocketMQ ACL 1.0 request signatures, permission bits, address patterns.
//! - [`ratelog`]: rate-limited logging for conditions that repeat per message or per retry.

pub mod acl;
pub mod base64;
pub mod ratelog;
pub mod record;
pub mod remoting;
pub mod selector;
