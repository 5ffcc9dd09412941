//! The broker: one logical RocketMQ broker per shard (`<name>-s<i>`), serving the RocketMQ
//! remoting protocol on its own port (and the VIP port P-2), with its own store, topics,
//! consumer offsets, long polling and client registry. [`server`] starts whole processes
//! (`ramjet start` / `broker` / `namesrv`).

pub mod acl;
pub mod admin;
pub mod assignment;
pub mod client_calls;
pub mod clients;
pub mod coalesce;
pub mod config;
pub mod config_view;
pub mod conn;
pub mod delivery;
pub mod groups;
pub mod ha;
pub mod inspect;
pub mod locks;
pub mod longpoll;
pub mod namesrv_host;
pub mod offsets;
pub mod persist;
pub mod pop;
pub mod pop_info;
pub mod pull;
pub mod queries;
pub mod register;
pub mod reply;
pub mod reset;
pub mod schedule;
pub mod send;
pub mod server;
pub mod shard;
pub mod stats;
pub mod syncack;
pub mod timer;
pub mod topics;
pub mod transaction;
pub mod versioned;
pub mod warm;
