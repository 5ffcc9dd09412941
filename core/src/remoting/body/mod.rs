//! JSON bodies (spec §3.6, §3.11, §6): serde types with Java's key names, written with keys
//! in fastjson's alphabetical order. Read them with [`from_slice`] (accepts fastjson's bare
//! integer map keys as well as standard JSON); write them with [`to_vec`] / [`write`] in the
//! [`JsonStyle`] the peer expects.

mod consumer;
pub mod fastjson;
mod heartbeat;
pub(crate) mod lenient;
pub mod queue_table;
mod route;
mod topic;

pub use consumer::*;
pub use fastjson::{from_slice, quote_bare_keys, to_vec, write, JsonStyle};
pub use heartbeat::*;
pub use route::*;
pub use topic::*;

#[cfg(test)]
mod tests;
