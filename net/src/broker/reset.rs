//! INVOKE_BROKER_TO_RESET_OFFSET (222): move a consumer group's offsets on this shard's queues
//! of a topic to a point in time, or one queue to an offset (mqadmin resetOffsetByTime,
//! DefaultMQAdminExt.resetOffsetByTimestamp / resetOffsetByQueueId).
//!
//! Clustering groups are reset on the broker, as RocketMQ 5 does (`useServerSideResetOffset`):
//! the offsets are committed at once, so a group with no consumer online starts there, and the
//! next pull of each queue by the group is answered PULL_OFFSET_MOVED to its new offset
//! (pulls parked in long polling are woken for it). Until that pull, the group's commits of
//! the queue are ignored: they carry offsets from before the reset.
//!
//! Broadcasting groups keep their offsets on their clients, so the broker pushes
//! RESET_CONSUMER_CLIENT_OFFSET (220) with the new offsets to every member online, as
//! RocketMQ 4 does, and answers CONSUMER_NOT_ONLINE when none is.
//!
//! The answer's body is RocketMQ's ResetOffsetBody: the new offset of every queue reset.
//!
//! CLONE_GROUP_OFFSET (314, `mqadmin cloneGroupOffset`) copies one group's committed offsets
//! onto another's, for one topic or every topic the source group has offsets on.

use std::rc::Rc;

use ramjet_core::remoting::body::queue_table::offset_table_json;
use ramjet_core::remoting::headers::{CloneGroupOffsetRequestHeader, ResetOffsetRequestHeader};
use ramjet_core::remoting::{CommandView, FrameHead, RequestCode, ResponseCode};

use super::conn::Conn;
use super::queries::decode;
use super::shard::Broker;

/// Where each queue goes: `(queue id, new offset)`, or the refusal (code, remark).
fn targets(b: &Broker, h: &ResetOffsetRequestHeader<'_>) -> Result<Vec<(i32, i64)>, (i32, String)> {
    let Some((read_queues, _, _)) = b.topics.queue_info(h.topic) else {
        return Err((
            ResponseCode::TOPIC_NOT_EXIST,
            format!("Topic {} does not exist", h.topic),
        ));
    };
    let known = b.groups.contains(h.group)
        || !b.offsets.topics_of(h.group).is_empty()
        || !b.clients.consumer_ids(h.group).is_empty();
    if !known {
        return Err((
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {} does not exist", h.group),
        ));
    }
    let by_time = |q: i32| {
        if h.timestamp == -1 {
            b.store.max_offset(h.topic, q)
        } else {
            b.store.search_offset_by_timestamp(h.topic, q, h.timestamp)
        }
    };
    match h.queue_id.filter(|&q| q >= 0) {
        None => Ok((0..read_queues as i32)
            .map(|q| {
                let target = by_time(q).max(0);
                // Not forced: only back (RocketMQ 4's rule), never past what is committed.
                let offset = match b.offsets.get(h.topic, h.group, q) {
                    Some(committed) if !h.is_force && target >= committed => committed,
                    _ => target,
                };
                (q, offset)
            })
            .collect()),
        Some(q) => {
            if q as u32 >= read_queues {
                return Err((
                    ResponseCode::SYSTEM_ERROR,
                    format!(
                        "queueId[{q}] is illegal, topic:[{}] topicConfig.readQueueNums:[{read_queues}]",
                        h.topic
                    ),
                ));
            }
            let offset = match h.offset.filter(|&o| o != -1) {
                Some(o) => {
                    let (min, max) = (
                        b.store.min_offset(h.topic, q),
                        b.store.max_offset(h.topic, q),
                    );
                    if o < min || o > max {
                        return Err((
                            ResponseCode::SYSTEM_ERROR,
                            format!("Target offset {o} not in consume queue range [{min}-{max}]"),
                        ));
                    }
                    o
                }
                None => by_time(q).max(0),
            };
            Ok(vec![(q, offset)])
        }
    }
}

pub fn invoke_reset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<ResetOffsetRequestHeader>(conn, req) else {
        return;
    };
    if b.ha.is_slave() {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            "Can not reset offset in slave broker",
        );
    }
    let queues = match targets(b, &h) {
        Ok(q) => q,
        Err((code, remark)) => return conn.respond_error(req, code, &remark),
    };
    let body = offset_table_json(
        "offsetTable",
        queues
            .iter()
            .map(|&(q, o)| (h.topic, b.broker_name.as_str(), q, o)),
    );
    if b.clients.is_broadcasting(h.group) {
        let members = b.clients.members_conns(h.group);
        if members.is_empty() {
            return conn.respond_error(
                req,
                ResponseCode::CONSUMER_NOT_ONLINE,
                &format!(
                    "Consumer not online, so can not reset offset, Group: {} Topic: {} Timestamp: {}",
                    h.group, h.topic, h.timestamp
                ),
            );
        }
        let push = ResetOffsetRequestHeader {
            queue_id: None,
            offset: None,
            ..h
        };
        for m in &members {
            let head =
                FrameHead::oneway(RequestCode::RESET_CONSUMER_CLIENT_OFFSET, m.next_opaque());
            m.send_frame(m.serialize_type(), &head, &push, body.as_bytes());
        }
        tracing::info!(shard = b.index, group = h.group, topic = h.topic, members = members.len(), offsets = %body, "offsets reset on the broadcasting group's clients");
    } else {
        for &(q, o) in &queues {
            b.offsets.assign_reset(h.topic, h.group, q, o);
            // Parked pulls of the queue answer now; the group's takes the reset.
            b.longpoll.notify_arrival(h.topic, q, i64::MAX);
        }
        tracing::info!(shard = b.index, group = h.group, topic = h.topic, offsets = %body, "consumer offsets reset");
    }
    conn.respond(req, ResponseCode::SUCCESS, None, &(), body.as_bytes());
}

/// CLONE_GROUP_OFFSET: RocketMQ skips a topic this broker lacks, and (unless `offline`) one the
/// source group's online members do not subscribe to; the answer is SUCCESS either way. The
/// log line says what was copied.
pub fn clone_offsets(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<CloneGroupOffsetRequestHeader>(conn, req) else {
        return;
    };
    let topics = match h.topic.filter(|t| !t.trim().is_empty()) {
        Some(t) => vec![t.to_string()],
        None => b.offsets.topics_of(h.src_group),
    };
    let mut copied = Vec::new();
    for topic in &topics {
        if !b.topics.contains(topic) {
            tracing::warn!(shard = b.index, topic = %topic, "clone group offset: no such topic here; skipped");
            continue;
        }
        if !h.offline.unwrap_or(false) && b.clients.subscribes(h.src_group, topic) == Some(false) {
            tracing::warn!(shard = b.index, group = h.src_group, topic = %topic, "clone group offset: the online group does not subscribe to the topic; skipped");
            continue;
        }
        let n = b.offsets.clone_group(h.src_group, h.dest_group, topic);
        copied.push(format!("{topic}: {n} queue(s)"));
    }
    tracing::info!(shard = b.index, src = h.src_group, dest = h.dest_group, copied = ?copied, "consumer offsets cloned");
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
}
