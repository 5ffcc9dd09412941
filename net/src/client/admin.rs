//! Administration: topics on every master of a cluster, cluster info, consumer progress.

use std::collections::BTreeMap;

use ramjet_core::remoting::body::{self, ClusterInfo, Perm, TopicList, TopicRouteData};
use ramjet_core::remoting::headers::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    ResetOffsetRequestHeader,
};
use ramjet_core::remoting::{RemotingCommand, RequestCode};
use serde::Serialize;

use super::error::ClientError;
use super::instance::{subscribe_queues, Client};
use super::queue::MessageQueue;

/// Queues per broker of an admin-created topic (RocketMQ's default 16; ramjet spreads topics
/// over shards, so a smaller default keeps per-shard queue counts sane).
pub const DEFAULT_TOPIC_QUEUES: i32 = 8;

#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub read_queues: i32,
    pub write_queues: i32,
    pub perm: i32,
    pub order: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, queues: i32) -> Self {
        TopicSpec {
            name: name.into(),
            read_queues: queues,
            write_queues: queues,
            perm: Perm::READ_WRITE,
            order: false,
        }
    }
}

/// One master of a cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokerEntry {
    pub cluster: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub addr: String,
}

/// Progress of one queue for a consumer group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueLag {
    pub queue: MessageQueue,
    pub broker_offset: i64,
    /// `None`: the group never committed on this queue.
    pub consumer_offset: Option<i64>,
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub queues: Vec<QueueLag>,
    pub total_lag: i64,
}

/// Admin operations over a [`Client`].
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let code = RequestCode::GET_BROKER_CLUSTER_INFO;
        let resp = self.client.invoke_namesrv_ok(code, &(), &[]).await?;
        body::from_slice(&resp.body, "ClusterInfo").map_err(|e| ClientError::BadBody {
            addr: self.client.current_namesrv().to_string(),
            code,
            reason: e.to_string(),
        })
    }

    /// Every broker (masters and slaves) of every cluster, sorted.
    pub async fn brokers(&self) -> Result<Vec<BrokerEntry>, ClientError> {
        let info = self.cluster_info().await?;
        let mut out = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            for name in names {
                if let Some(bd) = info.broker_addr_table.get(name) {
                    for (id, addr) in &bd.broker_addrs {
                        out.push(BrokerEntry {
                            cluster: cluster.clone(),
                            broker_name: name.clone(),
                            broker_id: *id,
                            addr: addr.clone(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.cluster, &a.broker_name, a.broker_id).cmp(&(
                &b.cluster,
                &b.broker_name,
                b.broker_id,
            ))
        });
        Ok(out)
    }

    /// Master addresses of `cluster` (`None`: of every cluster).
    pub async fn masters(&self, cluster: Option<&str>) -> Result<Vec<BrokerEntry>, ClientError> {
        let all = self.brokers().await?;
        if let Some(c) = cluster {
            if !all.iter().any(|b| b.cluster == c) {
                let mut known: Vec<&str> = all.iter().map(|b| b.cluster.as_str()).collect();
                known.dedup();
                return Err(ClientError::UnknownCluster {
                    cluster: c.to_string(),
                    known: known.join(", "),
                });
            }
        }
        Ok(all
            .into_iter()
            .filter(|b| b.broker_id == body::MASTER_ID && cluster.is_none_or(|c| b.cluster == c))
            .collect())
    }

    /// The runtime counters of the broker at `addr` (GET_BROKER_RUNTIME_INFO: RocketMQ's keys
    /// such as `msgPutTotalTodayNow`, `commitLogMaxOffset`, and ramjet's `ramjet.*` keys).
    pub async fn runtime_info(&self, addr: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let code = RequestCode::GET_BROKER_RUNTIME_INFO;
        let resp = self.client.invoke_ok(addr, code, &(), &[]).await?;
        let kv: body::KVTable =
            body::from_slice(&resp.body, "KVTable").map_err(|e| ClientError::BadBody {
                addr: addr.to_string(),
                code,
                reason: e.to_string(),
            })?;
        Ok(kv.table)
    }

    /// The configuration of the broker at `addr` (GET_BROKER_CONFIG, as `mqadmin
    /// getBrokerConfig` reads it): Java properties text, parsed.
    pub async fn broker_config(&self, addr: &str) -> Result<BTreeMap<String, String>, ClientError> {
        let resp = self
            .client
            .invoke_ok(addr, RequestCode::GET_BROKER_CONFIG, &(), &[])
            .await?;
        let text = String::from_utf8_lossy(&resp.body);
        Ok(text
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .filter_map(|l| {
                let (k, v) = l.split_once(['=', ':'])?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect())
    }

    /// Every broker of `cluster` (all clusters when `None`), masters and slaves, in
    /// [`Admin::brokers`] order; an unknown cluster is an error.
    async fn brokers_of(&self, cluster: Option<&str>) -> Result<Vec<BrokerEntry>, ClientError> {
        // The cluster check of `masters`, then masters and slaves alike.
        self.masters(cluster).await?;
        let mut all = self.brokers().await?;
        all.retain(|b| cluster.is_none_or(|c| b.cluster == c));
        Ok(all)
    }

    /// [`Admin::runtime_info`] of every broker of `cluster` (all clusters when `None`).
    pub async fn status(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(BrokerEntry, BTreeMap<String, String>)>, ClientError> {
        let mut out = Vec::new();
        for b in self.brokers_of(cluster).await? {
            let info = self.runtime_info(&b.addr).await?;
            out.push((b, info));
        }
        Ok(out)
    }

    /// [`Admin::broker_config`] of every broker of `cluster` (all clusters when `None`).
    pub async fn configs(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(BrokerEntry, BTreeMap<String, String>)>, ClientError> {
        let mut out = Vec::new();
        for b in self.brokers_of(cluster).await? {
            let cfg = self.broker_config(&b.addr).await?;
            out.push((b, cfg));
        }
        Ok(out)
    }

    /// Sends one ACL admin request (UPDATE_AND_CREATE_ACL_CONFIG, DELETE_ACL_CONFIG,
    /// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, GET_BROKER_CLUSTER_ACL_CONFIG) with these header
    /// fields to every master of `cluster` (all clusters when `None`); their answers.
    pub async fn acl_request(
        &self,
        code: i32,
        fields: &[(String, String)],
        cluster: Option<&str>,
    ) -> Result<Vec<(BrokerEntry, RemotingCommand)>, ClientError> {
        let masters = self.masters(cluster).await?;
        let mut out = Vec::with_capacity(masters.len());
        for b in masters {
            let resp = self.client.invoke_ok(&b.addr, code, fields, &[]).await?;
            out.push((b, resp));
        }
        Ok(out)
    }

    /// Create or update `spec` on every master of `cluster` (all clusters when `None`).
    /// Returns the brokers written.
    pub async fn create_topic(
        &self,
        spec: &TopicSpec,
        cluster: Option<&str>,
    ) -> Result<Vec<BrokerEntry>, ClientError> {
        super::message::validate_topic(&spec.name)?;
        let masters = self.masters(cluster).await?;
        if masters.is_empty() {
            return Err(ClientError::Invalid(
                "no master broker is registered with the name server; start a broker first".into(),
            ));
        }
        let h = CreateTopicRequestHeader {
            topic: &spec.name,
            default_topic: super::producer::DEFAULT_TOPIC,
            read_queue_nums: spec.read_queues,
            write_queue_nums: spec.write_queues,
            perm: spec.perm,
            topic_filter_type: "SINGLE_TAG",
            topic_sys_flag: Some(0),
            order: spec.order,
            attributes: None,
            force: None,
        };
        for b in &masters {
            self.client
                .invoke_ok(&b.addr, RequestCode::UPDATE_AND_CREATE_TOPIC, &h, &[])
                .await?;
        }
        self.client.invalidate_route(&spec.name);
        Ok(masters)
    }

    /// Delete `topic` from every master of `cluster` and from the name servers.
    pub async fn delete_topic(
        &self,
        topic: &str,
        cluster: Option<&str>,
    ) -> Result<Vec<BrokerEntry>, ClientError> {
        let masters = self.masters(cluster).await?;
        let h = DeleteTopicRequestHeader { topic };
        for b in &masters {
            self.client
                .invoke_ok(&b.addr, RequestCode::DELETE_TOPIC_IN_BROKER, &h, &[])
                .await?;
        }
        let nh = DeleteTopicFromNamesrvRequestHeader {
            topic,
            cluster_name: cluster,
        };
        for addr in self.client.config().namesrv_addrs.clone() {
            self.client
                .invoke_ok(&addr, RequestCode::DELETE_TOPIC_IN_NAMESRV, &nh, &[])
                .await?;
        }
        self.client.invalidate_route(topic);
        Ok(masters)
    }

    /// All topic names the name server knows, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        let code = RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER;
        let resp = self.client.invoke_namesrv_ok(code, &(), &[]).await?;
        let list: TopicList =
            body::from_slice(&resp.body, "TopicList").map_err(|e| ClientError::BadBody {
                addr: self.client.current_namesrv().to_string(),
                code,
                reason: e.to_string(),
            })?;
        let mut v = list.topic_list;
        v.sort();
        Ok(v)
    }

    /// The route of `topic` plus each readable queue's min/max offsets.
    pub async fn describe_topic(
        &self,
        topic: &str,
    ) -> Result<(TopicRouteData, Vec<(MessageQueue, i64, i64)>), ClientError> {
        let route = self.client.fetch_route(topic).await?;
        let mut offsets = Vec::new();
        for mq in subscribe_queues(topic, &route) {
            let min = self.client.min_offset(&mq).await?;
            let max = self.client.max_offset(&mq).await?;
            offsets.push((mq, min, max));
        }
        Ok(((*route).clone(), offsets))
    }

    /// Per-queue lag of `group` on `topic`: broker max offset minus committed offset.
    pub async fn lag(&self, group: &str, topic: &str) -> Result<GroupLag, ClientError> {
        let route = self.client.fetch_route(topic).await?;
        let mut queues = Vec::new();
        let mut total = 0;
        for mq in subscribe_queues(topic, &route) {
            let max = self.client.max_offset(&mq).await?;
            let committed = self.client.committed_offset(group, &mq).await?;
            let lag = (max - committed.unwrap_or(0)).max(0);
            total += lag;
            queues.push(QueueLag {
                queue: mq,
                broker_offset: max,
                consumer_offset: committed,
                lag,
            });
        }
        Ok(GroupLag {
            group: group.to_string(),
            topic: topic.to_string(),
            queues,
            total_lag: total,
        })
    }

    /// Moves `group`'s offsets on `topic` (INVOKE_BROKER_TO_RESET_OFFSET at every master of the
    /// topic): to the first message stored at or after `timestamp_ms` (-1: the end of each
    /// queue), or with `queue` to `offset` of that one queue. Without `force`, a queue whose
    /// committed offset is already below the target keeps it. A clustering group's consumers
    /// move at their next pull; a broadcasting group's must be online. Returns each queue's
    /// new offset, sorted.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
        force: bool,
        queue: Option<(&str, i32, i64)>,
    ) -> Result<Vec<(MessageQueue, i64)>, ClientError> {
        let route = self.client.fetch_route(topic).await?;
        let code = RequestCode::INVOKE_BROKER_TO_RESET_OFFSET;
        let mut out = Vec::new();
        for bd in &route.broker_datas {
            if queue.is_some_and(|(b, _, _)| b != bd.broker_name) {
                continue;
            }
            let Some(addr) = bd.master_addr() else {
                continue;
            };
            let h = ResetOffsetRequestHeader {
                topic,
                group,
                timestamp: timestamp_ms,
                is_force: force,
                queue_id: Some(queue.map_or(-1, |(_, q, _)| q)),
                offset: Some(queue.map_or(-1, |(_, _, o)| o)),
            };
            let resp = self.client.invoke_ok(addr, code, &h, &[]).await?;
            let table =
                body::queue_table::parse_offset_table(&resp.body, "offsetTable", "ResetOffsetBody")
                    .map_err(|e| ClientError::BadBody {
                        addr: addr.to_string(),
                        code,
                        reason: e.to_string(),
                    })?;
            out.extend(
                table
                    .into_iter()
                    .map(|(q, o)| (MessageQueue::new(q.topic, q.broker_name, q.queue_id), o)),
            );
        }
        if let Some((b, _, _)) = queue.filter(|_| out.is_empty()) {
            return Err(ClientError::Invalid(format!(
                "broker {b} has no master in the route of topic {topic}"
            )));
        }
        out.sort();
        Ok(out)
    }

    /// Sets how `group` consumes `topic` under broker-side rebalance (SET_MESSAGE_REQUEST_MODE)
    /// on every master of the topic; the broker names it was set on.
    pub async fn set_request_mode(
        &self,
        group: &str,
        topic: &str,
        pop: bool,
        pop_share_queue_num: i32,
    ) -> Result<Vec<String>, ClientError> {
        let route = self.client.fetch_route(topic).await?;
        let body = serde_json::to_vec(&serde_json::json!({
            "topic": topic,
            "consumerGroup": group,
            "mode": if pop { "POP" } else { "PULL" },
            "popShareQueueNum": pop_share_queue_num,
        }))
        .expect("strings and numbers");
        let mut out = Vec::new();
        for bd in &route.broker_datas {
            let Some(addr) = bd.master_addr() else {
                continue;
            };
            self.client
                .invoke_ok(addr, RequestCode::SET_MESSAGE_REQUEST_MODE, &(), &body)
                .await?;
            out.push(bd.broker_name.clone());
        }
        out.sort();
        Ok(out)
    }

    /// Topics whose route mentions a subscription of `group`: the retry topic's base plus what
    /// the caller names. Used by `admin lag GROUP` without a topic: every non-system topic is
    /// checked for a committed offset.
    pub async fn lag_all(&self, group: &str) -> Result<Vec<GroupLag>, ClientError> {
        let mut out = Vec::new();
        let mut by_topic: BTreeMap<String, ()> = BTreeMap::new();
        for t in self.list_topics().await? {
            if is_system_topic(&t) && t != format!("%RETRY%{group}") {
                continue;
            }
            by_topic.insert(t, ());
        }
        for topic in by_topic.keys() {
            let Ok(lag) = self.lag(group, topic).await else {
                continue;
            };
            if lag.queues.iter().any(|q| q.consumer_offset.is_some()) {
                out.push(lag);
            }
        }
        Ok(out)
    }
}

/// RocketMQ's internal topics (not user data).
pub fn is_system_topic(t: &str) -> bool {
    t.starts_with("%RETRY%")
        || t.starts_with("%DLQ%")
        || t.starts_with("rmq_sys_")
        || t.starts_with("RMQ_SYS_")
        // The cluster's reply topic, `<cluster>_REPLY_TOPIC` (request-reply).
        || t.ends_with("_REPLY_TOPIC")
        || matches!(
            t,
            "TBW102"
                | "SCHEDULE_TOPIC_XXXX"
                | "SELF_TEST_TOPIC"
                | "BenchmarkTest"
                | "OFFSET_MOVED_EVENT"
                | "TRANS_CHECK_MAX_TIME_TOPIC"
                | "RMQ_SYS_TRACE_TOPIC"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topics() {
        assert!(is_system_topic("TBW102"));
        assert!(is_system_topic("%RETRY%G"));
        assert!(is_system_topic("RMQ_SYS_TRANS_HALF_TOPIC"));
        assert!(is_system_topic("DefaultCluster_REPLY_TOPIC"));
        assert!(!is_system_topic("orders"));
    }
}
