//! The POP family's requests that change nothing (RocketMQ 5):
//! - NOTIFICATION (200054): whether the group has something to pop on (topic, queue; -1 any,
//!   the group's pop retry topic included), parked up to `pollTime` ms
//!   (`broker.long_poll_max_ms` at most) until a send makes it so;
//! - POLLING_INFO (200055): how many of the group's pops are parked on (topic, queue);
//! - PEEK_MESSAGE (200052): the messages the group would pop next, as stored records, with
//!   `restNum`; nothing is popped, no frontier moves.
//!
//! "Would pop next" is the queue's pop frontier when the group pops it already, else the
//! group's committed offset, else the queue's first offset; a queue an orderly pop has
//! locked has nothing to pop.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::remoting::headers::{
    NotificationRequestHeader, NotificationResponseHeader, PeekMessageRequestHeader,
    PollingInfoRequestHeader, PollingInfoResponseHeader, PopMessageResponseHeader,
};
use ramjet_core::remoting::pop as fmt;
use ramjet_core::remoting::{CommandView, FrameHead, ResponseCode};
use ramjet_storage::store::GetStatus;

use super::conn::Conn;
use super::longpoll::ANY_QUEUE;
use super::namesrv_host::now_ms;
use super::pop::{max_msg_nums_ok, pop_queues};
use super::shard::Broker;

/// Whether `group` has a message to pop on `queues` of `topic` (or, unordered, on its pop
/// retry topic).
fn has_msg(b: &Broker, group: &str, topic: &str, queues: &[i32], order: bool) -> bool {
    let waiting = |t: &str, q: i32| {
        b.pop
            .next_offset(b, group, t, q)
            .is_some_and(|next| next < b.store.max_offset(t, q))
    };
    if queues.iter().any(|&q| waiting(topic, q)) {
        return true;
    }
    if order {
        return false;
    }
    let retry = fmt::retry_topic(group, topic);
    let retry_q = b.topics.queue_info(&retry).map_or(0, |(r, _, _)| r);
    (0..retry_q as i32).any(|q| waiting(&retry, q))
}

pub fn handle_notification(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<NotificationRequestHeader>(conn, req) else {
        return;
    };
    let Some(queues) = pop_queues(b, conn, req, h.consumer_group, h.topic, h.queue_id) else {
        return;
    };
    let order = h.order.unwrap_or(false);
    let (group, topic) = (h.consumer_group.to_string(), h.topic.to_string());
    let has = has_msg(b, &group, &topic, &queues, order);
    let hold_ms = (h.poll_time.max(0) as u64).min(b.cfg.broker.long_poll_max_ms);
    if has || hold_ms == 0 || req.is_oneway() {
        if !req.is_oneway() {
            let header = NotificationResponseHeader {
                has_msg: has,
                polling_full: false,
            };
            conn.respond(req, ResponseCode::SUCCESS, None, &header, &[]);
        }
        return;
    }
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque) = (req.serialize_type, req.opaque);
    crate::runtime::spawn_detached(async move {
        let until = Instant::now() + Duration::from_millis(hold_ms);
        let mut answer = NotificationResponseHeader::default();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(parked) = broker.longpoll.park(&topic, ANY_QUEUE, i64::MIN, left) else {
                answer.polling_full = true;
                break;
            };
            let _ = parked.wait().await;
            if conn.is_closed() {
                return;
            }
            if has_msg(&broker, &group, &topic, &queues, order) {
                answer.has_msg = true;
                break;
            }
        }
        answer.has_msg = answer.has_msg || has_msg(&broker, &group, &topic, &queues, order);
        conn.send_frame(
            st,
            &FrameHead::response(ResponseCode::SUCCESS, opaque),
            &answer,
            &[],
        );
    });
}

pub fn handle_polling_info(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<PollingInfoRequestHeader>(conn, req) else {
        return;
    };
    if !b.groups.contains(h.consumer_group) {
        return conn.respond_error(
            req,
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            &format!("the consumer's group info not exist {}", h.consumer_group),
        );
    }
    if pop_queues(b, conn, req, h.consumer_group, h.topic, h.queue_id).is_none() {
        return;
    }
    let header = PollingInfoResponseHeader {
        polling_num: b.pop.parked(h.consumer_group, h.topic, h.queue_id) as i32,
    };
    conn.respond(req, ResponseCode::SUCCESS, None, &header, &[]);
}

pub fn handle_peek(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<PeekMessageRequestHeader>(conn, req) else {
        return;
    };
    let Some(queues) = pop_queues(b, conn, req, h.consumer_group, h.topic, h.queue_id) else {
        return;
    };
    if !max_msg_nums_ok(conn, req, h.max_msg_nums) {
        return;
    }
    let max = h.max_msg_nums as u32;
    let mut body = Vec::new();
    let (mut got, mut rest) = (0u32, 0i64);
    let retry = fmt::retry_topic(h.consumer_group, h.topic);
    let retry_q = b.topics.queue_info(&retry).map_or(0, |(r, _, _)| r) as i32;
    let targets = queues
        .iter()
        .map(|&q| (h.topic, q))
        .chain((0..retry_q).map(|q| (retry.as_str(), q)));
    for (topic, q) in targets {
        let Some(next) = b.pop.next_offset(b, h.consumer_group, topic, q) else {
            continue;
        };
        let end = b.store.max_offset(topic, q);
        let n = if got < max {
            match peek_queue(b, topic, q, next, max - got, &mut body) {
                Ok(n) => n,
                Err(e) => {
                    return conn.respond_error(
                        req,
                        ResponseCode::SYSTEM_ERROR,
                        &format!("peek {topic}/{q}: records unreadable: {e}"),
                    )
                }
            }
        } else {
            0
        };
        got += n;
        rest += (end - next - n as i64).max(0);
    }
    let header = PopMessageResponseHeader {
        pop_time: now_ms(),
        rest_num: rest,
        ..PopMessageResponseHeader::default()
    };
    if got > 0 {
        conn.respond(req, ResponseCode::SUCCESS, Some("FOUND"), &header, &body);
    } else {
        conn.respond(
            req,
            ResponseCode::PULL_NOT_FOUND,
            Some("NO_MESSAGE_IN_QUEUE"),
            &header,
            &[],
        );
    }
}

/// Appends up to `max` stored records of (topic, queue) from `offset` to `out`; returns how
/// many.
fn peek_queue(
    b: &Broker,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: u32,
    out: &mut Vec<u8>,
) -> std::io::Result<u32> {
    let r = b.store.get_messages(
        topic,
        queue_id,
        offset,
        max,
        b.cfg.broker.max_pull_bytes,
        &|_| true,
    );
    if r.status != GetStatus::Found {
        return Ok(0);
    }
    let mut scratch = Vec::new();
    out.reserve(r.total_bytes as usize);
    for chunk in &r.chunks {
        out.extend_from_slice(super::pull::chunk_bytes(chunk, &mut scratch)?);
    }
    Ok(r.msg_count)
}
