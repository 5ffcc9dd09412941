//! ramjet's Rust client: producer, consumers and admin over RocketMQ's remoting protocol.
//!
//! Layering: the protocol logic (queue selection, fault avoidance, rebalance, batch and property
//! encoding, route interpretation, offset bookkeeping) is plain code without I/O; the socket work
//! lives in [`transport`] (glommio, thread-per-core). Every client object is `!Send` and belongs to
//! the executor that created it; a multi-core program creates one client per core.

pub mod error;
pub mod fault;
pub mod message;
pub mod queue;
pub mod rebalance;
pub mod selector;
pub mod transport;

pub use error::ClientError;
pub use message::Message;
pub use queue::MessageQueue;
pub use transport::{Connection, Credentials};
pub mod instance;
pub mod producer;

pub use instance::{Client, ClientConfig};
pub use producer::{BrokerSendStats, Producer, ProducerConfig, SendResult, SendStatus};
pub mod consumer;
pub mod offset_store;

pub use consumer::{
    ConsumeFrom, ConsumeResult, MessageExt, PullOptions, PullResult, PullStatus, PushConsumer,
    PushConsumerConfig, Subscription,
};
pub mod admin;
pub mod pop;
pub mod request;
pub mod transaction;

pub use request::{reply_message, Requester};
pub use transaction::{LocalState, TransactionProducer, TransactionSendResult};

pub use admin::{Admin, TopicSpec};
pub use pop::{PopBatch, PopConsumer, PopOptions, PopStatus, Popped};
pub mod mock;

#[cfg(test)]
mod tests;
