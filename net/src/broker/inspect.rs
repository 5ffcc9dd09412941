//! Admin reads of one shard's topics, queues and groups, in RocketMQ's request codes and
//! bodies:
//! - GET_TOPIC_CONFIG (351): one topic's config (`TopicConfigAndQueueMapping`, no static
//!   mapping), TOPIC_NOT_EXIST when this shard lacks it;
//! - QUERY_CONSUME_QUEUE (321, `mqadmin queryCq`): ConsumeQueue units from an index, each
//!   marked whether the group's subscription takes it (`eval`);
//! - QUERY_CONSUME_TIME_SPAN (303): per queue, the store times of the oldest and newest
//!   message, of the last one the group consumed, and how far behind it is;
//! - GET_SYSTEM_TOPIC_LIST_FROM_BROKER (305): the system topics this shard holds;
//! - GET_BROKER_CONSUME_STATS (317, `mqadmin brokerConsumeStats`): every group's ConsumeStats
//!   per topic, and the total lag;
//! - QUERY_SUBSCRIPTION_BY_CONSUMER (345): a group's subscription to a topic as its
//!   heartbeats sent it;
//! - GET_ALL_MESSAGE_REQUEST_MODE (402): the POP/PULL modes of `messageRequestMode.json`.

use std::fmt::Write as _;
use std::rc::Rc;

use ramjet_core::remoting::body::TopicList;
use ramjet_core::remoting::headers::{
    GetConsumeStatsInBrokerHeader, QueryConsumeQueueRequestHeader,
    QueryConsumeTimeSpanRequestHeader, QuerySubscriptionByConsumerRequestHeader,
    TopicRequestHeader,
};
use ramjet_core::remoting::{CommandView, ResponseCode};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::queries::decode;
use super::shard::Broker;
use super::stats::{push_f64, push_offset_table, topic_here};
use super::topics::{DLQ_PREFIX, RETRY_PREFIX};

/// Most units one QUERY_CONSUME_QUEUE answers (RocketMQ asks for tens; a bound on the body).
pub const MAX_QUERY_CQ_UNITS: i32 = 1_000;

pub fn topic_config(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<TopicRequestHeader>(conn, req) else {
        return;
    };
    let Some(cfg) = b.topics.get(h.topic) else {
        return conn.respond_error(
            req,
            ResponseCode::TOPIC_NOT_EXIST,
            &format!("No topic in this broker. topic: {}", h.topic),
        );
    };
    // The config's own fields (TopicConfigAndQueueMapping flattens them); no mappingDetail:
    // ramjet has no static topics.
    let body = serde_json::to_vec(&cfg).unwrap_or_default();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CqData {
    physic_offset: i64,
    physic_size: i32,
    tags_code: i64,
    eval: bool,
}

pub fn query_consume_queue(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QueryConsumeQueueRequestHeader>(conn, req) else {
        return;
    };
    let known = b
        .topics
        .queue_info(h.topic)
        .is_some_and(|(r, w, _)| h.queue_id >= 0 && (h.queue_id as u32) < r.max(w));
    if !known {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("{}@{} is not exist!", h.queue_id, h.topic),
        );
    }
    let (min, max) = (
        b.store.min_offset(h.topic, h.queue_id),
        b.store.max_offset(h.topic, h.queue_id),
    );
    if h.index < min || h.index >= max {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "Index {} is out of boundary (the queue holds {min}..{max})",
                h.index
            ),
        );
    }
    let group = h.consumer_group.filter(|g| !g.is_empty());
    let sub = group.and_then(|g| b.clients.subscription_data(g, h.topic));
    let filter = group.and_then(|g| b.clients.subscription(g, h.topic).map(|(_, f)| f));
    let count = h.count.clamp(0, MAX_QUERY_CQ_UNITS) as i64;
    let mut units = Vec::new();
    for offset in h.index..(h.index + count).min(max) {
        let Some(u) = b.store.queue_unit(h.topic, h.queue_id, offset) else {
            break;
        };
        units.push(CqData {
            physic_offset: u.physical_offset as i64,
            physic_size: u.size as i32,
            tags_code: u.tags_code,
            // RocketMQ checks the unit against the subscription's tag codes (a SQL92
            // subscription needs the record; the unit alone passes it).
            eval: filter.as_ref().is_some_and(|f| f.matches(u.tags_code)),
        });
    }
    let body = serde_json::json!({
        "subscriptionData": sub,
        "queueData": units,
        "maxQueueIndex": max,
        "minQueueIndex": min,
    });
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &(),
        body.to_string().as_bytes(),
    );
}

pub fn query_consume_time_span(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QueryConsumeTimeSpanRequestHeader>(conn, req) else {
        return;
    };
    let Some(cfg) = topic_here(b, conn, req, h.topic) else {
        return;
    };
    let now = now_ms();
    let spans: Vec<serde_json::Value> = (0..cfg.write_queue_nums as i32)
        .map(|q| {
            let min_time = b.store.earliest_msg_store_time(h.topic, q).unwrap_or(0);
            let max = b.store.max_offset(h.topic, q).max(0);
            let max_time = if max > 0 {
                b.store.store_time_at(h.topic, q, max - 1).unwrap_or(0)
            } else {
                0
            };
            let consumed = b.offsets.get(h.topic, h.group, q).unwrap_or(-1);
            let consume_time = if consumed > 0 {
                b.store.store_time_at(h.topic, q, consumed - 1).unwrap_or(0)
            } else {
                min_time
            };
            // How long the next message has waited for the group.
            let delay = if consumed >= 0 && consumed < max {
                b.store
                    .store_time_at(h.topic, q, consumed)
                    .map_or(0, |t| (now - t).max(0))
            } else {
                0
            };
            serde_json::json!({
                "messageQueue": {"topic": h.topic, "brokerName": b.broker_name, "queueId": q},
                "minTimeStamp": min_time,
                "maxTimeStamp": max_time,
                "consumeTimeStamp": consume_time,
                "delayTime": delay,
            })
        })
        .collect();
    let body = serde_json::json!({ "consumeTimeSpanSet": spans });
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &(),
        body.to_string().as_bytes(),
    );
}

/// A topic RocketMQ counts as a system topic: the broker's own (the list the CLI hides, which
/// covers the reply and timer topics too); retry and dead-letter topics are the groups'.
fn is_system_topic(t: &str) -> bool {
    !t.starts_with(RETRY_PREFIX)
        && !t.starts_with(DLQ_PREFIX)
        && crate::client::admin::is_system_topic(t)
}

pub fn system_topics(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let mut topics: Vec<String> = b
        .topics
        .all()
        .into_iter()
        .map(|t| t.topic_name)
        .filter(|t| is_system_topic(t))
        .collect();
    topics.sort();
    let list = TopicList {
        broker_addr: None,
        topic_list: topics,
    };
    let body = serde_json::to_vec(&list).unwrap_or_default();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

pub fn broker_consume_stats(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetConsumeStatsInBrokerHeader>(conn, req) else {
        return;
    };
    let mut groups: Vec<String> = b.groups.names();
    groups.extend(b.offsets.totals().into_iter().map(|(_, g, _)| g));
    groups.sort();
    groups.dedup();
    let mut out = String::from("{\"brokerAddr\":");
    let _ = write!(out, "\"{}\",\"consumeStatsList\":[", b.addr);
    let mut total_diff = 0i64;
    for (gi, group) in groups.iter().enumerate() {
        if gi > 0 {
            out.push(',');
        }
        out.push('{');
        let _ = write!(out, "{}:[", serde_json::Value::from(group.as_str()));
        let mut first = true;
        for topic in b.offsets.topics_of(group) {
            let Some(cfg) = b.topics.get(&topic) else {
                continue;
            };
            if h.is_order && !cfg.order {
                continue;
            }
            if b.clients.subscribes(group, &topic) == Some(false) {
                continue;
            }
            let mut table = String::new();
            total_diff += push_offset_table(b, group, &topic, cfg.write_queue_nums, &mut table);
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str("{\"consumeTps\":");
            push_f64(&mut out, b.stats.consume_tps(&topic, group));
            out.push_str(",\"offsetTable\":{");
            out.push_str(&table);
            out.push_str("}}");
        }
        out.push_str("]}");
    }
    let _ = write!(
        out,
        "],\"totalDiff\":{total_diff},\"totalInflightDiff\":0}}"
    );
    conn.respond(req, ResponseCode::SUCCESS, None, &(), out.as_bytes());
}

pub fn query_subscription(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QuerySubscriptionByConsumerRequestHeader>(conn, req) else {
        return;
    };
    let body = serde_json::json!({
        "group": h.group,
        "topic": h.topic,
        "subscriptionData": b.clients.subscription_data(h.group, h.topic),
    });
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &(),
        body.to_string().as_bytes(),
    );
}

pub fn all_request_modes(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.request_modes.encode();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}
