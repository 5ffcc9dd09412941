//! Route data (spec §6.1-6.3): TopicRouteData, QueueData, BrokerData, ClusterInfo, perms.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Topic/broker permission bits (spec §6.2).
pub struct Perm;

impl Perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;
    /// Normal topics.
    pub const READ_WRITE: i32 = 6;

    pub fn is_readable(perm: i32) -> bool {
        perm & Self::READ != 0
    }
    pub fn is_writeable(perm: i32) -> bool {
        perm & Self::WRITE != 0
    }
    pub fn is_inherited(perm: i32) -> bool {
        perm & Self::INHERIT != 0
    }
}

/// Broker id of a master in `brokerAddrs`.
pub const MASTER_ID: i64 = 0;

/// One broker name's queues for a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    #[serde(default)]
    pub perm: i32,
    #[serde(default)]
    pub read_queue_nums: i32,
    /// Spelled `topicSynFlag` up to 4.8.0; both spellings are read.
    #[serde(default, alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub write_queue_nums: i32,
}

/// One broker name: its cluster and the addresses of its master (id 0) and slaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// brokerId -> "ip:port". Written with bare keys in fastjson style.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub enable_acting_master: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address, if a master is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// GET_ROUTEINFO_BY_TOPIC response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default, deserialize_with = "super::lenient::vec_or_null")]
    pub queue_datas: Vec<QueueData>,
}

/// GET_BROKER_CLUSTER_INFO response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// brokerName -> BrokerData.
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// clusterName -> broker names.
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}
