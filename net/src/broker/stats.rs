//! RocketMQ's admin views of one shard: GET_TOPIC_STATS_INFO (202, `mqadmin topicStatus`),
//! GET_CONSUME_STATS (208, `mqadmin consumerProgress`), GET_CONSUMER_CONNECTION_LIST (203,
//! `mqadmin consumerConnection`), GET_PRODUCER_CONNECTION_LIST (204, `mqadmin
//! producerConnection`), GET_ALL_PRODUCER_INFO (328), QUERY_TOPIC_CONSUME_BY_WHO (300) and
//! QUERY_TOPICS_BY_CONSUMER (343).
//!
//! The two bodies keyed by message queue are written as fastjson writes them: a JSON object as
//! a map key (`{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}}`), which
//! Java's and rocketmq-client-rust's parsers read (spec §6.7).
//!
//! Rates come from samples taken every `broker.stats_sample_ms` (10 s) off the hot paths:
//! `topicPutTps` is how fast the sum of a topic's max queue offsets grew over the last
//! interval, `consumeTps` how fast a group's committed offsets of the topic grew (RocketMQ
//! counts pulled messages instead; committed offsets are what a lag view cares about). Both
//! are 0 until two samples exist.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Instant;

use ramjet_core::remoting::body::queue_table::write_queue_key;
use ramjet_core::remoting::body::TopicList;
use ramjet_core::remoting::headers::{
    GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetProducerConnectionListRequestHeader, GetTopicStatsInfoRequestHeader,
    QueryTopicConsumeByWhoRequestHeader, QueryTopicsByConsumerRequestHeader,
};
use ramjet_core::remoting::{CommandView, ResponseCode};

use super::conn::Conn;
use super::queries::decode;
use super::shard::Broker;

#[derive(Clone, Copy, Default)]
struct Rate {
    total: i64,
    per_sec: f64,
}

/// The sampled rates of one shard.
#[derive(Default)]
pub struct Rates {
    /// topic -> put rate.
    topics: RefCell<HashMap<String, Rate>>,
    /// (topic, group) -> consume rate.
    groups: RefCell<HashMap<(String, String), Rate>>,
    last: Cell<Option<Instant>>,
}

impl Rates {
    /// Takes a sample: every topic's max offsets and every group's committed offsets.
    pub fn sample(&self, b: &Broker) {
        let now = Instant::now();
        let secs = self
            .last
            .replace(Some(now))
            .map(|t| now.duration_since(t).as_secs_f64());
        let rate = |old: Option<&Rate>, total: i64| Rate {
            total,
            per_sec: match (old, secs) {
                (Some(o), Some(s)) if s > 0.0 => (total - o.total).max(0) as f64 / s,
                _ => 0.0,
            },
        };
        let mut topics = self.topics.borrow_mut();
        let mut next = HashMap::with_capacity(topics.len());
        for t in b.topics.all() {
            let total: i64 = (0..t.write_queue_nums as i32)
                .map(|q| b.store.max_offset(&t.topic_name, q).max(0))
                .sum();
            let r = rate(topics.get(&t.topic_name), total);
            next.insert(t.topic_name, r);
        }
        *topics = next;
        let mut groups = self.groups.borrow_mut();
        let mut next = HashMap::with_capacity(groups.len());
        for (topic, group, total) in b.offsets.totals() {
            let key = (topic, group);
            let r = rate(groups.get(&key), total);
            next.insert(key, r);
        }
        *groups = next;
    }

    fn topic_tps(&self, topic: &str) -> f64 {
        self.topics.borrow().get(topic).map_or(0.0, |r| r.per_sec)
    }

    pub(crate) fn consume_tps(&self, topic: &str, group: &str) -> f64 {
        self.groups
            .borrow()
            .get(&(topic.to_string(), group.to_string()))
            .map_or(0.0, |r| r.per_sec)
    }
}

/// A rate as Java writes a double (always with a fraction).
pub(crate) fn push_f64(out: &mut String, v: f64) {
    let v = if v.is_finite() { v } else { 0.0 };
    if v.fract() == 0.0 {
        let _ = write!(out, "{v:.1}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The topic's config on this shard, or `None` after answering TOPIC_NOT_EXIST.
pub(crate) fn topic_here(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    topic: &str,
) -> Option<super::topics::TopicConfig> {
    let cfg = b.topics.get(topic);
    if cfg.is_none() {
        conn.respond_error(
            req,
            ResponseCode::TOPIC_NOT_EXIST,
            &format!("topic[{topic}] not exist"),
        );
    }
    cfg
}

/// GET_TOPIC_STATS_INFO: per queue of the topic, min and max offset and the store time of the
/// last message; TOPIC_NOT_EXIST for a topic this shard does not have.
pub fn topic_stats(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetTopicStatsInfoRequestHeader>(conn, req) else {
        return;
    };
    let Some(cfg) = topic_here(b, conn, req, h.topic) else {
        return;
    };
    let mut out = String::from("{\"offsetTable\":{");
    for q in 0..cfg.write_queue_nums as i32 {
        if q > 0 {
            out.push(',');
        }
        let min = b.store.min_offset(h.topic, q).max(0);
        let max = b.store.max_offset(h.topic, q).max(0);
        let last = if max > 0 {
            b.store.store_time_at(h.topic, q, max - 1).unwrap_or(0)
        } else {
            0
        };
        write_queue_key(&mut out, h.topic, &b.broker_name, q);
        let _ = write!(
            out,
            ":{{\"lastUpdateTimestamp\":{last},\"maxOffset\":{max},\"minOffset\":{min}}}"
        );
    }
    out.push_str("},\"topicPutTps\":");
    push_f64(&mut out, b.stats.topic_tps(h.topic));
    out.push('}');
    conn.respond(req, ResponseCode::SUCCESS, None, &(), out.as_bytes());
}

/// GET_CONSUME_STATS: per queue of the topic (or of every topic the group committed offsets
/// of), the broker's max offset, the group's committed offset, where its last pull started
/// and the store time of the last message it consumed; with the group's consume rate.
pub fn consume_stats(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetConsumeStatsRequestHeader>(conn, req) else {
        return;
    };
    let group = h.consumer_group;
    let topics = match h.topic.filter(|t| !t.trim().is_empty()) {
        Some(t) => vec![t.to_string()],
        None => b.offsets.topics_of(group),
    };
    let mut out = String::from("{\"consumeTps\":");
    let mut tps = 0.0;
    let mut table = String::new();
    for topic in &topics {
        let Some(cfg) = b.topics.get(topic) else {
            tracing::debug!(
                shard = b.index,
                group,
                topic,
                "consume stats: no such topic here"
            );
            continue;
        };
        // RocketMQ leaves out a topic the group's online members do not subscribe to.
        if b.clients.subscribes(group, topic) == Some(false) {
            continue;
        }
        push_offset_table(b, group, topic, cfg.read_queue_nums, &mut table);
        tps += b.stats.consume_tps(topic, group);
    }
    push_f64(&mut out, tps);
    out.push_str(",\"offsetTable\":{");
    out.push_str(&table);
    out.push_str("}}");
    conn.respond(req, ResponseCode::SUCCESS, None, &(), out.as_bytes());
}

/// Appends the ConsumeStats offset-table entries of `group` on queues `0..queues` of `topic`
/// to `table` (comma-separated, as fastjson writes a map keyed by MessageQueue); returns the
/// messages not yet consumed (broker offset - consumer offset, summed).
pub(crate) fn push_offset_table(
    b: &Broker,
    group: &str,
    topic: &str,
    queues: u32,
    table: &mut String,
) -> i64 {
    let mut diff = 0;
    for q in 0..queues as i32 {
        let broker_offset = b.store.max_offset(topic, q).max(0);
        let consumer_offset = b.offsets.get(topic, group, q).unwrap_or(0).max(0);
        let pull_offset = b
            .offsets
            .pulled(topic, group, q)
            .unwrap_or(0)
            .max(consumer_offset);
        let last = if consumer_offset > 0 {
            b.store
                .store_time_at(topic, q, consumer_offset - 1)
                .unwrap_or(0)
        } else {
            0
        };
        if !table.is_empty() {
            table.push(',');
        }
        write_queue_key(table, topic, &b.broker_name, q);
        let _ = write!(
            table,
            ":{{\"brokerOffset\":{broker_offset},\"consumerOffset\":{consumer_offset},\"lastTimestamp\":{last},\"pullOffset\":{pull_offset}}}"
        );
        diff += (broker_offset - consumer_offset).max(0);
    }
    diff
}

/// GET_CONSUMER_CONNECTION_LIST: the group's live members (client id, address, language,
/// version), subscriptions and consume settings; CONSUMER_NOT_ONLINE when none is connected.
pub fn consumer_connections(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetConsumerConnectionListRequestHeader>(conn, req) else {
        return;
    };
    match b.clients.connection_json(h.consumer_group) {
        Some(body) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &body),
        None => conn.respond_error(
            req,
            ResponseCode::CONSUMER_NOT_ONLINE,
            &format!("the consumer group[{}] not online", h.consumer_group),
        ),
    }
}

/// GET_PRODUCER_CONNECTION_LIST: the group's live producers; SYSTEM_ERROR (RocketMQ's answer)
/// when none is connected.
pub fn producer_connections(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetProducerConnectionListRequestHeader>(conn, req) else {
        return;
    };
    match b.clients.producer_connection_json(h.producer_group) {
        Some(body) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &body),
        None => conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("the producer group[{}] not exist", h.producer_group),
        ),
    }
}

/// GET_ALL_PRODUCER_INFO: every live producer of this shard, by group.
pub fn all_producers(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.clients.producer_table_json();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

/// QUERY_TOPIC_CONSUME_BY_WHO: groups subscribed to the topic (heartbeats) or with committed
/// offsets on it, as RocketMQ's GroupList.
pub fn topic_consumed_by(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QueryTopicConsumeByWhoRequestHeader>(conn, req) else {
        return;
    };
    let mut groups = b.clients.groups_consuming(h.topic);
    groups.extend(b.offsets.groups_of(h.topic));
    groups.sort();
    groups.dedup();
    let body = serde_json::json!({ "groupList": groups }).to_string();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), body.as_bytes());
}

/// QUERY_TOPICS_BY_CONSUMER: topics the group has committed offsets on, as RocketMQ's
/// TopicList with this shard's address.
pub fn topics_of_group(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QueryTopicsByConsumerRequestHeader>(conn, req) else {
        return;
    };
    let list = TopicList {
        broker_addr: Some(b.addr.to_string()),
        topic_list: b.offsets.topics_of(h.group),
    };
    // Strings always serialize.
    let body = serde_json::to_vec(&list).unwrap_or_default();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}
