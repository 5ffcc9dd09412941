//! The client's name for one queue: `(topic, brokerName, queueId)`, ordered like Java's
//! `MessageQueue.compareTo` (topic, then broker name, then queue id) so that every client of a
//! group sorts the same list the same way before rebalancing.

use std::fmt;

/// One queue of a topic on one broker.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl fmt::Display for MessageQueue {
    /// Java's `MessageQueue.toString()`; the consistent-hash strategy hashes this exact text,
    /// so Rust and Java consumers of one group place queues identically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}
