//! The route tables of a name server (RocketMQ's RouteInfoManager), as plain data.
//!
//! - topic -> brokerName -> QueueData
//! - brokerName -> BrokerData (cluster, brokerId -> address)
//! - cluster -> broker names
//! - broker address -> liveness (last registration, timeout, topic table version)
//!
//! Everything is single-threaded and I/O-free: the hosting loop owns the value and passes
//! the clock in. Ordered maps keep replies deterministic (and sorted like fastjson's output).

use ramjet_core::remoting::body::{
    BrokerData, ClusterInfo, DataVersion, Perm, QueueData, TopicConfigSerializeWrapper,
    TopicRouteData, MASTER_ID,
};
use std::collections::{BTreeMap, BTreeSet};

/// A broker silent for this long is dropped (RocketMQ `BROKER_CHANNEL_EXPIRED_TIME`).
pub const DEFAULT_BROKER_CHANNEL_EXPIRED_MS: i64 = 120_000;
/// How often the hosting loop should call [`RouteTable::scan_expired`] (4.9: 10 s).
pub const SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS: i64 = 10_000;

/// Liveness record of one broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveInfo {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub last_update_ms: i64,
    pub timeout_ms: i64,
    pub data_version: DataVersion,
    pub ha_server_addr: String,
    /// Connection the registration arrived on, if the host tracks connections.
    pub conn: Option<u64>,
}

/// One broker's registration, decoded from REGISTER_BROKER (or built by an embedded broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration<'a> {
    pub cluster_name: &'a str,
    pub broker_addr: &'a str,
    pub broker_name: &'a str,
    pub broker_id: i64,
    pub ha_server_addr: &'a str,
    /// `None` = the default [`DEFAULT_BROKER_CHANNEL_EXPIRED_MS`].
    pub heartbeat_timeout_ms: Option<i64>,
    pub topics: &'a TopicConfigSerializeWrapper,
    pub filter_server_list: &'a [String],
}

/// What a registration answers (REGISTER_BROKER response header).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegisterResult {
    /// For slaves: the master's address, if a master is registered.
    pub master_addr: Option<String>,
    /// For slaves: the master's HA address.
    pub ha_server_addr: Option<String>,
    /// True when the broker's queue data was (re)built from this registration.
    pub topics_updated: bool,
}

/// The route tables.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: BTreeMap<String, BrokerLiveInfo>,
    filter_server_table: BTreeMap<String, Vec<String>>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or refreshes) a broker. A master's topic table replaces its queue data
    /// when its DataVersion changed or on first registration; slaves' tables are ignored.
    pub fn register_broker(
        &mut self,
        reg: &BrokerRegistration<'_>,
        now_ms: i64,
        conn: Option<u64>,
    ) -> RegisterResult {
        self.cluster_addr_table
            .entry(reg.cluster_name.to_owned())
            .or_default()
            .insert(reg.broker_name.to_owned());

        let mut register_first = false;
        let broker_data = self
            .broker_addr_table
            .entry(reg.broker_name.to_owned())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    broker_addrs: BTreeMap::new(),
                    broker_name: reg.broker_name.to_owned(),
                    cluster: reg.cluster_name.to_owned(),
                    enable_acting_master: false,
                    zone_name: None,
                }
            });
        broker_data.cluster = reg.cluster_name.to_owned();
        // The same address under another id (a slave promoted to master, or the reverse):
        // the old entry goes.
        broker_data
            .broker_addrs
            .retain(|id, addr| !(addr == reg.broker_addr && *id != reg.broker_id));
        let old = broker_data
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.to_owned());
        register_first |= old.is_none();

        let version = reg.topics.data_version;
        let changed = self
            .broker_live_table
            .get(reg.broker_addr)
            .is_none_or(|live| live.data_version != version);
        let mut topics_updated = false;
        if reg.broker_id == MASTER_ID && (changed || register_first) {
            for tc in reg.topics.topic_config_table.values() {
                let qd = QueueData {
                    broker_name: reg.broker_name.to_owned(),
                    perm: tc.perm,
                    read_queue_nums: tc.read_queue_nums,
                    topic_sys_flag: tc.topic_sys_flag,
                    write_queue_nums: tc.write_queue_nums,
                };
                self.topic_queue_table
                    .entry(tc.topic_name.clone())
                    .or_default()
                    .insert(reg.broker_name.to_owned(), qd);
            }
            topics_updated = true;
        }

        self.broker_live_table.insert(
            reg.broker_addr.to_owned(),
            BrokerLiveInfo {
                cluster_name: reg.cluster_name.to_owned(),
                broker_name: reg.broker_name.to_owned(),
                broker_id: reg.broker_id,
                last_update_ms: now_ms,
                timeout_ms: reg
                    .heartbeat_timeout_ms
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_BROKER_CHANNEL_EXPIRED_MS),
                data_version: version,
                ha_server_addr: reg.ha_server_addr.to_owned(),
                conn,
            },
        );
        if reg.filter_server_list.is_empty() {
            self.filter_server_table.remove(reg.broker_addr);
        } else {
            self.filter_server_table
                .insert(reg.broker_addr.to_owned(), reg.filter_server_list.to_vec());
        }

        let mut result = RegisterResult {
            topics_updated,
            ..RegisterResult::default()
        };
        if reg.broker_id != MASTER_ID {
            if let Some(master) = self
                .broker_addr_table
                .get(reg.broker_name)
                .and_then(|b| b.master_addr())
            {
                result.ha_server_addr = self
                    .broker_live_table
                    .get(master)
                    .map(|l| l.ha_server_addr.clone());
                result.master_addr = Some(master.to_owned());
            }
        }
        result
    }

    /// Removes one broker address (UNREGISTER_BROKER, expiry, connection close). When the
    /// broker name has no address left, its cluster membership and queue data go too.
    /// Returns whether the address was known.
    pub fn unregister_broker(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        broker_name: &str,
        broker_id: i64,
    ) -> bool {
        let was_live = self.broker_live_table.remove(broker_addr).is_some();
        self.filter_server_table.remove(broker_addr);
        let mut removed_addr = false;
        let mut name_gone = false;
        if let Some(bd) = self.broker_addr_table.get_mut(broker_name) {
            if bd
                .broker_addrs
                .get(&broker_id)
                .is_some_and(|a| a == broker_addr)
            {
                bd.broker_addrs.remove(&broker_id);
                removed_addr = true;
            }
            if bd.broker_addrs.is_empty() {
                self.broker_addr_table.remove(broker_name);
                name_gone = true;
            }
        }
        if name_gone {
            if let Some(names) = self.cluster_addr_table.get_mut(cluster_name) {
                names.remove(broker_name);
                if names.is_empty() {
                    self.cluster_addr_table.remove(cluster_name);
                }
            }
            self.remove_broker_name_queues(broker_name);
        }
        was_live || removed_addr
    }

    fn remove_broker_name_queues(&mut self, broker_name: &str) {
        self.topic_queue_table.retain(|_, by_broker| {
            by_broker.remove(broker_name);
            !by_broker.is_empty()
        });
    }

    /// Drops every broker whose last registration is older than its timeout. Returns the
    /// removed broker addresses.
    pub fn scan_expired(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<(String, BrokerLiveInfo)> = self
            .broker_live_table
            .iter()
            .filter(|(_, l)| l.last_update_ms.saturating_add(l.timeout_ms) < now_ms)
            .map(|(a, l)| (a.clone(), l.clone()))
            .collect();
        for (addr, live) in &expired {
            self.unregister_broker(&live.cluster_name, addr, &live.broker_name, live.broker_id);
        }
        expired.into_iter().map(|(a, _)| a).collect()
    }

    /// Drops every broker registered through connection `conn` (RocketMQ drops a broker as
    /// soon as its channel closes). Returns the removed broker addresses.
    pub fn connection_closed(&mut self, conn: u64) -> Vec<String> {
        let gone: Vec<(String, BrokerLiveInfo)> = self
            .broker_live_table
            .iter()
            .filter(|(_, l)| l.conn == Some(conn))
            .map(|(a, l)| (a.clone(), l.clone()))
            .collect();
        for (addr, live) in &gone {
            self.unregister_broker(&live.cluster_name, addr, &live.broker_name, live.broker_id);
        }
        gone.into_iter().map(|(a, _)| a).collect()
    }

    /// Route of `topic`: its queue data and the brokers hosting it; `None` when the topic has
    /// no queue data or none of its brokers is registered (TOPIC_NOT_EXIST).
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let by_broker = self.topic_queue_table.get(topic)?;
        let queue_datas: Vec<QueueData> = by_broker.values().cloned().collect();
        let mut broker_datas = Vec::with_capacity(by_broker.len());
        let mut filter_server_table = BTreeMap::new();
        for name in by_broker.keys() {
            if let Some(bd) = self.broker_addr_table.get(name) {
                for addr in bd.broker_addrs.values() {
                    if let Some(fs) = self.filter_server_table.get(addr) {
                        filter_server_table.insert(addr.clone(), fs.clone());
                    }
                }
                broker_datas.push(bd.clone());
            }
        }
        if queue_datas.is_empty() || broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            broker_datas,
            filter_server_table,
            order_topic_conf: None,
            queue_datas,
        })
    }

    /// All brokers and clusters.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    /// Every topic with queue data.
    pub fn all_topics(&self) -> Vec<String> {
        self.topic_queue_table.keys().cloned().collect()
    }

    /// Topics hosted by any broker of `cluster`.
    pub fn topics_by_cluster(&self, cluster: &str) -> Vec<String> {
        let Some(names) = self.cluster_addr_table.get(cluster) else {
            return Vec::new();
        };
        self.topic_queue_table
            .iter()
            .filter(|(_, by_broker)| by_broker.keys().any(|b| names.contains(b)))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Topics whose (first) queue data's `topicSysFlag` satisfies `pred` (RocketMQ's unit
    /// topic lists look at the first broker's flag only).
    pub fn topics_by_sys_flag(&self, pred: impl Fn(i32) -> bool) -> Vec<String> {
        self.topic_queue_table
            .iter()
            .filter(|(_, by_broker)| {
                by_broker
                    .values()
                    .next()
                    .is_some_and(|q| pred(q.topic_sys_flag))
            })
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Cluster names and broker names (RocketMQ's "system topics"), and one master address.
    pub fn system_topics(&self) -> (Vec<String>, Option<String>) {
        let mut topics = BTreeSet::new();
        let mut any_master = None;
        for (cluster, names) in &self.cluster_addr_table {
            topics.insert(cluster.clone());
            for name in names {
                topics.insert(name.clone());
                if any_master.is_none() {
                    any_master = self
                        .broker_addr_table
                        .get(name)
                        .and_then(|b| b.broker_addrs.values().next().cloned());
                }
            }
        }
        (topics.into_iter().collect(), any_master)
    }

    /// Removes a topic's queue data; with `cluster`, only on that cluster's brokers.
    /// Returns whether anything was removed.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) -> bool {
        match cluster {
            None => self.topic_queue_table.remove(topic).is_some(),
            Some(cluster) => {
                let Some(names) = self.cluster_addr_table.get(cluster) else {
                    return false;
                };
                let Some(by_broker) = self.topic_queue_table.get_mut(topic) else {
                    return false;
                };
                let before = by_broker.len();
                by_broker.retain(|b, _| !names.contains(b));
                let removed = by_broker.len() != before;
                if by_broker.is_empty() {
                    self.topic_queue_table.remove(topic);
                }
                removed
            }
        }
    }

    /// REGISTER_TOPIC_IN_NAMESRV: adds queue data for brokers that are registered.
    pub fn register_topic(&mut self, topic: &str, queue_datas: &[QueueData]) {
        for qd in queue_datas {
            if self.broker_addr_table.contains_key(&qd.broker_name) {
                self.topic_queue_table
                    .entry(topic.to_owned())
                    .or_default()
                    .insert(qd.broker_name.clone(), qd.clone());
            }
        }
    }

    /// Clears (wipe) or sets (add) the WRITE bit on every queue of `broker_name`. Returns the
    /// number of topics changed.
    pub fn set_write_perm(&mut self, broker_name: &str, writable: bool) -> i32 {
        let mut count = 0;
        for by_broker in self.topic_queue_table.values_mut() {
            if let Some(qd) = by_broker.get_mut(broker_name) {
                qd.perm = if writable {
                    qd.perm | Perm::WRITE
                } else {
                    qd.perm & !Perm::WRITE
                };
                count += 1;
            }
        }
        count
    }

    /// Stored DataVersion of a broker address and whether `version` differs from it.
    pub fn data_version_changed(
        &self,
        broker_addr: &str,
        version: &DataVersion,
    ) -> (bool, Option<DataVersion>) {
        match self.broker_live_table.get(broker_addr) {
            Some(l) => (l.data_version != *version, Some(l.data_version)),
            None => (true, None),
        }
    }

    /// Refreshes a broker's liveness without a full registration (QUERY_DATA_VERSION).
    pub fn touch(&mut self, broker_addr: &str, now_ms: i64) {
        if let Some(l) = self.broker_live_table.get_mut(broker_addr) {
            l.last_update_ms = now_ms;
        }
    }

    /// Liveness record of a broker address.
    pub fn live_info(&self, broker_addr: &str) -> Option<&BrokerLiveInfo> {
        self.broker_live_table.get(broker_addr)
    }

    /// Number of live broker addresses.
    pub fn live_broker_count(&self) -> usize {
        self.broker_live_table.len()
    }
}
