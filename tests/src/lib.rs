//! End-to-end test support: starts the real `ramjet` binary on 127.0.0.1 with a temp dir and
//! talks to it over TCP.
//!
//! - [`setup`]: the target dir, the release binary (built on demand), the Python venv with the
//!   real RocketMQ C++ client (`rocketmq==0.4.4`), temp dirs on a real disk.
//! - [`broker`]: [`Broker`] = one `ramjet start` (or `ramjet namesrv`, `ramjet broker`) child
//!   process with free ports, start/stop/kill/restart on the same directory, its log printed
//!   when a test fails; [`Cluster`] = a `ramjet namesrv` process plus several `ramjet broker`
//!   processes registering with it (one can be killed while the others serve).
//! - [`wire`]: a blocking remoting connection ([`Conn`]), JSON and binary headers.
//! - [`ops`]: typed requests (create topic, route, send, batch send, pull, offsets); pulled
//!   records are decoded with the project's own `ramjet_core::record` codec.
//! - [`rust_client`]: the project's own client in tests (recording consumers, sends).
//! - [`interop`]: runs `tests/interop/rmq_client.py` and returns its JSON.
//!
//! Every wait is bounded; a bound that passes fails the test with what was last seen.

pub mod broker;
pub mod interop;
pub mod ops;
pub mod rust_client;
pub mod setup;
pub mod wire;

pub use broker::{Broker, BrokerSpec, Cluster, Flush, Role};
pub use ops::{OutMessage, PullOutcome, Pulled, Route, SendOk, SendOutcome};
pub use wire::{Command, Conn, Serialize, WireError};
