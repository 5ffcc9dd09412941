//! Request-reply (RocketMQ 4.6+ "RPC" messages): SEND_REPLY_MESSAGE (324) and
//! SEND_REPLY_MESSAGE_V2 (325) in, PUSH_REPLY_MESSAGE_TO_CLIENT (326) out.
//!
//! A requester (`DefaultMQProducer.request`) sends an ordinary message carrying
//! `CORRELATION_ID`, `REPLY_TO_CLIENT` (its client id) and `TTL`; the send path stamps such a
//! request with the broker's `CLUSTER` (see `send.rs`), which the replier needs to
//! name the reply topic `<cluster>_REPLY_TOPIC` (created on every shard at start). The
//! replier's producer sends the reply with code 324/325. The broker stores it in the reply
//! topic, pushes it at once to the requester's connection (found by client id among the
//! producers that heart-beat on this shard) and answers the replier with the push's outcome,
//! as RocketMQ does: SUCCESS once the requester took it, SYSTEM_ERROR with a remark when the
//! requester is not connected here or did not take it within `broker.client_call_timeout_ms`.
//!
//! Differences from RocketMQ: a reply the store refuses (disk full, say) is answered with the
//! store's error and not pushed (RocketMQ pushes it and only logs the store failure); under
//! `flush = sync` (or sync replication) the answer also waits for the stored reply to be
//! durable, as a send's does.

use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::properties::{self, PropertiesBuilder};
use ramjet_core::record::{offset_msg_id, tag_hash_bytes, MessageToStore};
use ramjet_core::remoting::headers::{ReplyMessageRequestHeader, SendMessageRequestHeader};
use ramjet_core::remoting::{CommandView, RequestCode, ResponseCode};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::send::{respond_send, store_error_code, store_error_remark};
use super::shard::{Broker, ShardCounters};

/// RocketMQ's `MixAll.REPLY_TOPIC_POSTFIX`, after `<cluster>_`.
pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";

/// The cluster's reply topic, `<cluster>_REPLY_TOPIC`.
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_{REPLY_TOPIC_POSTFIX}")
}

pub fn handle_reply(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h = match SendMessageRequestHeader::decode(req) {
        Ok(h) => h,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad reply header: {e}"),
            )
        }
    };
    let fail = |code: i32, remark: &str| {
        ShardCounters::add(&b.counters.msgs_put_failed, 1);
        conn.respond_error(req, code, remark);
    };
    let queue_id = match super::send::target_queue(b, conn, &h) {
        Ok(q) => q,
        Err((code, remark)) => return fail(code, &remark),
    };
    let max_body = b.cfg.broker.max_message_bytes as usize;
    if req.body.len() > max_body {
        return fail(
            ResponseCode::MESSAGE_ILLEGAL,
            &format!(
                "message body size {} exceeds the limit {max_body}",
                req.body.len()
            ),
        );
    }
    let props = h.properties.unwrap_or("");
    let Some(reply_to) = properties::get_str(props.as_bytes(), properties::REPLY_TO_CLIENT) else {
        return fail(
            ResponseCode::MESSAGE_ILLEGAL,
            "a reply message needs the REPLY_TO_CLIENT property (the requester's client id)",
        );
    };
    let reply_to = reply_to.to_string();
    let reconsume_times = h.reconsume_times.unwrap_or(0);
    let msg = MessageToStore {
        topic: h.topic,
        queue_id,
        flag: h.flag,
        body: req.body,
        properties: props.as_bytes(),
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        born_host: conn.peer(),
        store_host: b.addr,
        reconsume_times,
        prepared_transaction_offset: 0,
        tags_code: properties::get(props.as_bytes(), properties::TAGS).map_or(0, tag_hash_bytes),
    };
    let put = match b.store.put_message(&msg) {
        Ok(p) => p,
        Err(e) => return fail(store_error_code(&e), &store_error_remark(&e)),
    };
    ShardCounters::add(&b.counters.msgs_put, 1);
    let store_timestamp = now_ms();
    // What the requester gets: the reply's properties plus PUSH_REPLY_TIME.
    let mut pushed_props = PropertiesBuilder::new();
    let stamped = pushed_props
        .extend_from(props.as_bytes(), &[properties::PUSH_REPLY_TIME])
        .and_then(|o| o.push_str(properties::PUSH_REPLY_TIME, &store_timestamp.to_string()))
        .is_ok();
    let pushed_props = if stamped {
        String::from_utf8(pushed_props.into_bytes()).unwrap_or_else(|_| props.to_string())
    } else {
        props.to_string()
    };
    let (born_host, store_host) = (conn.peer().to_string(), b.addr.to_string());
    let header = ReplyMessageRequestHeader {
        producer_group: h.producer_group,
        topic: h.topic,
        default_topic: h.default_topic,
        default_topic_queue_nums: h.default_topic_queue_nums,
        queue_id,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        flag: h.flag,
        properties: Some(&pushed_props),
        reconsume_times: Some(reconsume_times),
        unit_mode: h.unit_mode,
        born_host: &born_host,
        store_host: &store_host,
        store_timestamp,
    };
    let requester = b.clients.producer_by_client(&reply_to);
    let Some(broker) = b.rc() else { return };
    let wait = Duration::from_millis(b.cfg.broker.client_call_timeout_ms);
    // The push is sent now (the header borrows the request); its answer is awaited below.
    let pushed = requester.map(|c| {
        c.call(
            RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT,
            &header,
            req.body,
            wait,
        )
    });
    let conn = conn.clone();
    let (opaque, st, oneway) = (req.opaque, req.serialize_type, req.is_oneway());
    let msg_id = offset_msg_id(b.addr, put.physical_offset as i64);
    let acks_wait = super::ha::acks_wait(b);
    crate::runtime::spawn_detached(async move {
        let (code, remark) = match pushed {
            None => (
                ResponseCode::SYSTEM_ERROR,
                Some(format!(
                    "push reply message fail, channel of <{reply_to}> not found (the requester is not connected to this broker)"
                )),
            ),
            Some(rx) => match super::conn::answer(rx).await {
                (ResponseCode::SUCCESS, _) => (ResponseCode::SUCCESS, None),
                (code, remark) => (
                    ResponseCode::SYSTEM_ERROR,
                    Some(format!(
                        "push reply message to <{reply_to}> fail: the requester answered {code} {}",
                        remark.unwrap_or_default()
                    )),
                ),
            },
        };
        ShardCounters::add(
            if code == ResponseCode::SUCCESS {
                &broker.counters.replies_pushed
            } else {
                &broker.counters.replies_unpushed
            },
            1,
        );
        if code != ResponseCode::SUCCESS {
            tracing::warn!(shard = broker.index, requester = %reply_to, remark = remark.as_deref().unwrap_or(""), "reply not pushed");
        }
        if acks_wait {
            if let Err(f) = super::ha::wait_acked(&broker, put.end_physical_offset).await {
                tracing::warn!(shard = broker.index, code = f.code, remark = %f.remark, "stored reply not acknowledged durable");
            }
        }
        if oneway {
            return;
        }
        respond_send(
            &conn,
            st,
            opaque,
            code,
            remark.as_deref(),
            msg_id.as_str(),
            queue_id,
            put.queue_offset,
            None,
            None,
            &broker,
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_topic_is_named_after_the_cluster() {
        assert_eq!(reply_topic("DefaultCluster"), "DefaultCluster_REPLY_TOPIC");
    }
}
