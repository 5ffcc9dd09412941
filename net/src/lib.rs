//! ramjet-net: everything that meets a socket. Shard runtime, broker, name server, client.

pub mod broker;
pub mod cli;
pub mod client;
pub mod namesrv;
pub mod runtime;
