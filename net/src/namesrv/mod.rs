//! Name server logic, I/O-free: broker registration and expiry, route queries, cluster
//! info, topic lists and KV config, as a state machine the hosting loop (net/src/runtime,
//! net/src/broker) feeds with decoded requests and the current time.
//!
//! - [`NameServer::handle`] / [`NameServer::handle_from`]: one request in, the response
//!   command out (in the request's serialization), `None` for oneway requests.
//! - [`NameServer::scan_expired`]: drop brokers silent for 120 s (call every 10 s).
//! - [`RouteTable`]: the tables themselves, usable directly by an embedded name server.
//!
//! Route replies use standard JSON for clients at version >= 4.9.4 or with
//! `acceptStandardJsonOnly=true`, and fastjson's bare integer keys otherwise (spec §6.1).
//! Unsupported codes answer REQUEST_CODE_NOT_SUPPORTED. State is in memory only: brokers
//! re-register every 30 s, so a restarted name server is whole again within one period.

mod kv;
mod routes;
mod server;

#[cfg(test)]
mod tests;

pub use kv::{KvConfig, NAMESPACE_ORDER_TOPIC_CONFIG};
pub use routes::{
    BrokerLiveInfo, BrokerRegistration, RegisterResult, RouteTable,
    DEFAULT_BROKER_CHANNEL_EXPIRED_MS, SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS,
};
pub use server::{
    topic_not_exist_remark, NameServer, NameServerConfig, TOPIC_SYS_FLAG_UNIT,
    TOPIC_SYS_FLAG_UNIT_SUB,
};
