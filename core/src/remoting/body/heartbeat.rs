//! HEART_BEAT body (spec §6.5): HeartbeatData, ConsumerData, ProducerData, SubscriptionData.
//!
//! Java writes enums by name; C++ by ordinal, `subVersion` as a string, and omits keys it
//! has no data for. Both are read; names are written.

use super::lenient::java_enum;
use serde::{Deserialize, Serialize};

java_enum! {
    /// How the consumer consumes.
    pub enum ConsumeType {
        ConsumeActively = 0 => "CONSUME_ACTIVELY" | "PULL",
        ConsumePassively = 1 => "CONSUME_PASSIVELY" | "PUSH",
        ConsumePop = 2 => "CONSUME_POP" | "POP",
    }
}

java_enum! {
    /// Clustering (queues shared in the group) or broadcasting (every client gets all).
    pub enum MessageModel {
        Broadcasting = 0 => "BROADCASTING",
        Clustering = 1 => "CLUSTERING",
    }
}

java_enum! {
    /// Where a new group starts.
    pub enum ConsumeFromWhere {
        LastOffset = 0 => "CONSUME_FROM_LAST_OFFSET",
        LastOffsetAndFromMinWhenBootFirst = 1 => "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset = 2 => "CONSUME_FROM_MIN_OFFSET",
        MaxOffset = 3 => "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = 4 => "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = 5 => "CONSUME_FROM_TIMESTAMP",
    }
}

/// `expressionType` of tag subscriptions.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
/// `expressionType` of SQL92 subscriptions.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";
/// Subscribe-all expression.
pub const SUB_ALL: &str = "*";

fn tag_type() -> String {
    EXPRESSION_TYPE_TAG.to_owned()
}

/// One topic subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default, deserialize_with = "super::lenient::bool_or_string")]
    pub class_filter_mode: bool,
    /// Tag hashes (Java); C++ sends `atoi(tag)` here, so brokers recompute from `tags_set`.
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub code_set: Vec<i32>,
    #[serde(default = "tag_type")]
    pub expression_type: String,
    #[serde(default)]
    pub sub_string: String,
    #[serde(default, deserialize_with = "super::lenient::i64_or_string")]
    pub sub_version: i64,
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub tags_set: Vec<String>,
    pub topic: String,
}

fn default_from_where() -> ConsumeFromWhere {
    ConsumeFromWhere::LastOffset
}

fn default_consume_type() -> ConsumeType {
    ConsumeType::ConsumePassively
}

fn default_message_model() -> MessageModel {
    MessageModel::Clustering
}

/// A consumer group as seen by one client. Enum keys a client leaves out read as the Java
/// push consumer's defaults (LAST_OFFSET, PASSIVELY, CLUSTERING).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    #[serde(default = "default_from_where")]
    pub consume_from_where: ConsumeFromWhere,
    #[serde(default = "default_consume_type")]
    pub consume_type: ConsumeType,
    pub group_name: String,
    #[serde(default = "default_message_model")]
    pub message_model: MessageModel,
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default, deserialize_with = "super::lenient::bool_or_string")]
    pub unit_mode: bool,
}

/// A producer group of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

/// HEART_BEAT request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(
        rename = "consumerDataSet",
        default,
        deserialize_with = "super::lenient::vec_or_null"
    )]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x only; not written when `None`.
    #[serde(
        rename = "heartbeatFingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_fingerprint: Option<i64>,
    #[serde(
        rename = "producerDataSet",
        default,
        deserialize_with = "super::lenient::vec_or_null"
    )]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x only; not written when `None`.
    #[serde(
        rename = "withoutSub",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub without_sub: Option<bool>,
}
