//! Consumer offset and queue offset requests: QUERY_CONSUMER_OFFSET (14),
//! UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32).

use std::rc::Rc;

use ramjet_core::remoting::headers::{
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, OffsetResponseHeader,
    QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use ramjet_core::remoting::{CommandView, DecodeHeader, ResponseCode};
use ramjet_storage::Chunk;

use super::conn::Conn;
use super::shard::Broker;

/// The request's header, or `None` after answering SYSTEM_ERROR with the decoder's reason.
pub(crate) fn decode<'a, H: DecodeHeader<'a>>(conn: &Conn, req: &'a CommandView<'_>) -> Option<H> {
    match req.decode_header::<H>() {
        Ok(h) => Some(h),
        Err(e) => {
            conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad request header: {e}"),
            );
            None
        }
    }
}

fn respond_offset(conn: &Conn, req: &CommandView<'_>, offset: i64) {
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &OffsetResponseHeader { offset },
        &[],
    );
}

/// RocketMQ's "is the message at `offset` still in memory" (4.9: within the last 40% of RAM;
/// 5.x: page-cache residency), approximated by: its bytes are still in the shard's tail cache.
fn in_memory(b: &Broker, topic: &str, queue_id: i32, offset: i64) -> bool {
    let r = b
        .store
        .get_messages(topic, queue_id, offset, 1, u32::MAX, &|_| true);
    matches!(r.chunks.first(), Some(Chunk::Memory(_)))
}

/// Stored offset, or (for a group with none) 0 when the queue is young — its first message
/// still in memory — so that even CONSUME_FROM_LAST_OFFSET groups read a new queue from the
/// start (spec §7.3); else QUERY_NOT_FOUND.
pub fn query_consumer_offset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<QueryConsumerOffsetRequestHeader>(conn, req) else {
        return;
    };
    if let Some(off) = b.offsets.get(h.topic, h.consumer_group, h.queue_id) {
        return respond_offset(conn, req, off);
    }
    if h.set_zero_if_not_found != Some(false) {
        let min = b.store.min_offset(h.topic, h.queue_id);
        if min <= 0 && in_memory(b, h.topic, h.queue_id, 0) {
            return respond_offset(conn, req, 0);
        }
    }
    conn.respond_error(
        req,
        ResponseCode::QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    );
}

pub fn update_consumer_offset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<UpdateConsumerOffsetRequestHeader>(conn, req) else {
        return;
    };
    // A commit made before an admin reset of the queue is ignored until the group's next
    // pull takes the reset (what RocketMQ 5 answers, remark included).
    let remark =
        (!b.offsets
            .commit_from_client(h.topic, h.consumer_group, h.queue_id, h.commit_offset))
        .then_some("Offset has been previously reset");
    conn.respond(req, ResponseCode::SUCCESS, remark, &(), &[]);
}

pub fn get_max_offset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetMaxOffsetRequestHeader>(conn, req) else {
        return;
    };
    respond_offset(conn, req, b.store.max_offset(h.topic, h.queue_id));
}

pub fn get_min_offset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetMinOffsetRequestHeader>(conn, req) else {
        return;
    };
    respond_offset(conn, req, b.store.min_offset(h.topic, h.queue_id));
}

pub fn search_offset(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<SearchOffsetRequestHeader>(conn, req) else {
        return;
    };
    respond_offset(
        conn,
        req,
        b.store
            .search_offset_by_timestamp(h.topic, h.queue_id, h.timestamp),
    );
}

pub fn earliest_time(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetEarliestMsgStoretimeRequestHeader>(conn, req) else {
        return;
    };
    // RocketMQ answers -1 when the queue has no message.
    let timestamp = b
        .store
        .earliest_msg_store_time(h.topic, h.queue_id)
        .unwrap_or(-1);
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &GetEarliestMsgStoretimeResponseHeader { timestamp },
        &[],
    );
}
