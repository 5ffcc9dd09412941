//! Consumer bodies: ConsumerListBody (§3.6), MessageQueue and the batch lock bodies (§3.11).

use serde::{Deserialize, Serialize};

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerListBody {
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub consumer_id_list: Vec<String>,
}

/// A queue: (topic, broker name, queue id). Ordered by topic, then broker, then queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    #[serde(deserialize_with = "super::lenient::i32_or_string")]
    pub queue_id: i32,
}

/// LOCK_BATCH_MQ request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub consumer_group: String,
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub mq_set: Vec<MessageQueue>,
    #[serde(default)]
    pub only_this_broker: bool,
}

/// UNLOCK_BATCH_MQ request body (same shape as the lock request).
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ response body: the queues now held by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LockBatchResponseBody {
    #[serde(
        rename = "lockOKMQSet",
        default,
        deserialize_with = "super::lenient::vec_or_null"
    )]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}
