//! ramjet-core: the language every ramjet crate speaks. No I/O.
//!
//! - [`record`]: RocketMQ's stored message record (CommitLog format), properties, batches,
//!   tag hash, message ids.
//! - [`remoting`]: RocketMQ remoting frames (JSON and binary headers), request/response codes,
//!   typed request/response headers and JSON bodies.

pub mod record;
pub mod remoting;
