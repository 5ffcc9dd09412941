//! Admin requests the broker passes to one consumer and whose answer it relays (RocketMQ's
//! callConsumer): GET_CONSUMER_RUNNING_INFO (307, `mqadmin consumerStatus`, the Dashboard's
//! consumer detail) and CONSUME_MESSAGE_DIRECTLY (309, `mqadmin consumeMessage`: the
//! consumer runs its listener on one stored message, which the broker attaches).
//!
//! The consumer is named by group and client id and must be connected to this shard. Its
//! answer goes back unchanged; none within `broker.client_call_timeout_ms` gives
//! CONSUME_MSG_TIMEOUT (207), a consumer that is not connected SYSTEM_ERROR.

use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::decode_offset_msg_id;
use ramjet_core::remoting::headers::{
    ConsumeMessageDirectlyResultRequestHeader, GetConsumerRunningInfoRequestHeader,
};
use ramjet_core::remoting::{CommandView, FrameHead, RequestCode, ResponseCode};

use super::conn::Conn;
use super::queries::decode;
use super::shard::Broker;

/// The consumer's connection, or `None` after answering that it is not online.
fn consumer(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    group: &str,
    client_id: &str,
) -> Option<Rc<Conn>> {
    let found = b.clients.member_conn(group, client_id);
    if found.is_none() {
        conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("The Consumer <{group}> <{client_id}> not online"),
        );
    }
    found
}

fn timeout(b: &Broker) -> Duration {
    Duration::from_millis(b.cfg.broker.client_call_timeout_ms)
}

pub fn consumer_running_info(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetConsumerRunningInfoRequestHeader>(conn, req) else {
        return;
    };
    let Some(target) = consumer(b, conn, req, h.consumer_group, h.client_id) else {
        return;
    };
    target.relay(
        RequestCode::GET_CONSUMER_RUNNING_INFO,
        &req.ext,
        req.body,
        conn,
        (req.opaque, req.serialize_type),
        timeout(b),
    );
}

pub fn consume_directly(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<ConsumeMessageDirectlyResultRequestHeader>(conn, req) else {
        return;
    };
    let (Some(client_id), Some(msg_id)) = (h.client_id, h.msg_id) else {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            "CONSUME_MESSAGE_DIRECTLY needs clientId and msgId",
        );
    };
    let offset = match decode_offset_msg_id(msg_id) {
        Ok((_, o)) if o >= 0 => o as u64,
        Ok((_, o)) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad offset {o} in msgId {msg_id}"),
            )
        }
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("msgId {msg_id} is not an offset message id: {e}"),
            )
        }
    };
    let Some(target) = consumer(b, conn, req, h.consumer_group, client_id) else {
        return;
    };
    // The request's fields with this shard's brokerName, as RocketMQ sets it.
    let mut ext: Vec<(String, String)> = req
        .ext
        .iter()
        .filter(|(k, _)| *k != "brokerName")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ext.push(("brokerName".into(), b.broker_name.clone()));
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let reply = (req.opaque, req.serialize_type);
    let wait = timeout(b);
    crate::runtime::spawn_detached(async move {
        match broker.store.read_record(offset).await {
            Ok(rec) => target.relay(
                RequestCode::CONSUME_MESSAGE_DIRECTLY,
                &ext,
                &rec,
                &conn,
                reply,
                wait,
            ),
            Err(e) => {
                let remark = format!("can not find message by the offset {offset}: {e}");
                let head = FrameHead::response(ResponseCode::SYSTEM_ERROR, reply.0);
                conn.send_frame(reply.1, &head.with_remark(&remark), &(), &[]);
            }
        }
    });
}
