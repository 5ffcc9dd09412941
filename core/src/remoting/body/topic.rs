//! Topic configuration bodies (spec §6.4): DataVersion, TopicConfig,
//! TopicConfigSerializeWrapper, RegisterBrokerBody, TopicList, KVTable.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of a broker's topic table; the name server rebuilds queue data when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default, deserialize_with = "super::lenient::i64_or_string")]
    pub counter: i64,
    #[serde(default, deserialize_with = "super::lenient::i64_or_string")]
    pub state_version: i64,
    #[serde(default, deserialize_with = "super::lenient::i64_or_string")]
    pub timestamp: i64,
}

/// `topicFilterType` default.
pub const SINGLE_TAG: &str = "SINGLE_TAG";

fn single_tag() -> String {
    SINGLE_TAG.to_owned()
}

/// One topic's configuration on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// 5.x topic attributes (absent in 4.9).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub order: bool,
    #[serde(default)]
    pub perm: i32,
    #[serde(default)]
    pub read_queue_nums: i32,
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    pub topic_name: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub write_queue_nums: i32,
}

impl TopicConfig {
    /// A read-write topic with `queues` read and write queues.
    pub fn new(topic_name: impl Into<String>, queues: i32, perm: i32) -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm,
            read_queue_nums: queues,
            topic_filter_type: single_tag(),
            topic_name: topic_name.into(),
            topic_sys_flag: 0,
            write_queue_nums: queues,
        }
    }
}

/// A broker's whole topic table with its version (GET_ALL_TOPIC_CONFIG body, and part of
/// REGISTER_BROKER's body). 5.x mapping keys are ignored on read and not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub data_version: DataVersion,
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// REGISTER_BROKER body (uncompressed form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub filter_server_list: Vec<String>,
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

impl RegisterBrokerBody {
    /// The `bodyCrc32` header value for an encoded body: CRC32 (IEEE) & 0x7FFFFFFF.
    pub fn crc32(encoded: &[u8]) -> i32 {
        (crc32fast::hash(encoded) & 0x7FFF_FFFF) as i32
    }
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER / GET_TOPICS_BY_CLUSTER body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub topic_list: Vec<String>,
}

/// KVTable body: `{"table":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KVTable {
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}
