//! Request-reply (RocketMQ's `DefaultMQProducer.request` and `MessageUtil.createReplyMessage`).
//!
//! A [`Requester`] sends a message stamped with `CORRELATION_ID`, `REPLY_TO_CLIENT` (this
//! client's id) and `TTL`, and waits for the reply. The broker stores the request with its
//! `CLUSTER`. A consumer answers with [`reply_message`] (topic `<cluster>_REPLY_TOPIC`,
//! `MSG_TYPE` reply), sent by any [`Producer`]; the producer sends such a message as
//! SEND_REPLY_MESSAGE_V2. The broker pushes the reply to the requester's connection as
//! PUSH_REPLY_MESSAGE_TO_CLIENT, which this module answers and matches to the waiting request
//! by its correlation id.
//!
//! The broker finds the requester among the producers that heart-beat on the shard the reply
//! lands on, so a requester announces its group to every master of the request topic's route
//! (and of the reply topic's, once known) before its first request, and again every 30 s.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ramjet_core::record::properties as prop;
use ramjet_core::remoting::body::{HeartbeatData, ProducerData};
use ramjet_core::remoting::headers::ReplyMessageRequestHeader;
use ramjet_core::remoting::{RemotingCommand, RequestCode, ResponseCode};

use super::consumer::MessageExt;
use super::instance::Client;
use super::message::Message;
use super::producer::{Producer, ProducerConfig};
use super::transport::{self, Connection};
use super::ClientError;

/// The value of `MSG_TYPE` on a reply.
pub const REPLY_MESSAGE_FLAG: &str = "reply";

/// The reply topic of a cluster (`<cluster>_REPLY_TOPIC`).
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}_REPLY_TOPIC")
}

/// The reply to `request` carrying `body` (RocketMQ's `createReplyMessage`): to the reply
/// topic of the cluster that stored the request, with its correlation id, requester and TTL.
/// Fails when the request carries no `CLUSTER` (it was not sent as a request).
pub fn reply_message(request: &MessageExt, body: impl Into<Bytes>) -> Result<Message, ClientError> {
    let cluster = request.property(prop::CLUSTER).ok_or_else(|| {
        ClientError::Invalid(format!(
            "create reply message fail, requestMessage error, property[{}] is null",
            prop::CLUSTER
        ))
    })?;
    let mut m = Message::new(reply_topic(cluster), body);
    m.set_property(prop::MSG_TYPE, REPLY_MESSAGE_FLAG);
    for name in [prop::REPLY_TO_CLIENT, prop::CORRELATION_ID, prop::TTL] {
        if let Some(v) = request.property(name) {
            m.set_property(name, v.to_string());
        }
    }
    Ok(m)
}

struct Inner {
    group: String,
    /// Correlation id -> the waiting request.
    pending: RefCell<HashMap<String, transport::LocalSender<MessageExt>>>,
    seq: Cell<u64>,
    announced: RefCell<HashSet<String>>,
    /// Replies that matched no waiting request (timed out, or not ours).
    unmatched: Cell<u64>,
}

/// A producer that sends requests and waits for their replies. `!Send`, like every client
/// object.
#[derive(Clone)]
pub struct Requester {
    producer: Producer,
    client: Client,
    inner: Rc<Inner>,
}

impl Requester {
    /// A requester of `config.group`.
    pub fn new(client: Client, config: ProducerConfig) -> Requester {
        let inner = Rc::new(Inner {
            group: config.group.clone(),
            pending: RefCell::new(HashMap::new()),
            seq: Cell::new(0),
            announced: RefCell::new(HashSet::new()),
            unmatched: Cell::new(0),
        });
        let weak = Rc::downgrade(&inner);
        client.add_listener(
            RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT,
            move |conn, cmd| {
                let inner = weak.upgrade()?;
                Some(take_reply(&inner, conn, cmd))
            },
        );
        let requester = Requester {
            producer: Producer::new(client.clone(), config),
            client,
            inner,
        };
        let me = Rc::downgrade(&requester.inner);
        let (client, group) = (requester.client.clone(), requester.inner.group.clone());
        transport::spawn(async move {
            loop {
                transport::sleep(Duration::from_secs(30)).await;
                let Some(inner) = me.upgrade() else { return };
                let addrs: Vec<String> = inner.announced.borrow().iter().cloned().collect();
                drop(inner);
                for addr in addrs {
                    if let Err(e) = announce(&client, &group, &addr).await {
                        tracing::warn!(broker = %addr, error = %e, "requester heartbeat failed");
                    }
                }
            }
        });
        requester
    }

    /// The plain producer underneath (to send replies too).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Replies that came for no waiting request (late or not ours).
    pub fn unmatched_replies(&self) -> u64 {
        self.inner.unmatched.get()
    }

    /// Sends `msg` as a request and waits up to `timeout` for its reply.
    pub async fn request(
        &self,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<MessageExt, ClientError> {
        let seq = self.inner.seq.get() + 1;
        self.inner.seq.set(seq);
        let correlation = format!("{}-{seq}", self.client.client_id());
        msg.set_property(prop::CORRELATION_ID, correlation.clone());
        msg.set_property(prop::REPLY_TO_CLIENT, self.client.client_id().to_string());
        msg.set_property(prop::TTL, timeout.as_millis().to_string());
        self.announce_to(&msg.topic).await;
        let (tx, rx) = transport::local_channel();
        self.inner
            .pending
            .borrow_mut()
            .insert(correlation.clone(), tx);
        let sent = self.producer.send(msg).await;
        if let Err(e) = sent {
            self.inner.pending.borrow_mut().remove(&correlation);
            return Err(e);
        }
        let got = futures_lite::future::or(rx.recv(), async {
            transport::sleep(timeout).await;
            None
        })
        .await;
        self.inner.pending.borrow_mut().remove(&correlation);
        got.ok_or_else(|| ClientError::Timeout {
            addr: "the reply".into(),
            code: RequestCode::PUSH_REPLY_MESSAGE_TO_CLIENT,
            timeout_ms: timeout.as_millis() as u64,
        })
    }

    /// Announces the group to every master of `topic`'s route not yet announced to.
    async fn announce_to(&self, topic: &str) {
        let Ok(route) = self.client.route(topic).await else {
            return;
        };
        for b in &route.broker_datas {
            let Some(addr) = b.master_addr() else {
                continue;
            };
            if self.inner.announced.borrow().contains(addr) {
                continue;
            }
            match announce(&self.client, &self.inner.group, addr).await {
                Ok(()) => {
                    self.inner.announced.borrow_mut().insert(addr.to_string());
                }
                Err(e) => {
                    tracing::warn!(broker = %addr, error = %e, "requester heartbeat failed; replies through this broker may not reach it")
                }
            }
        }
    }
}

async fn announce(client: &Client, group: &str, addr: &str) -> Result<(), ClientError> {
    let data = HeartbeatData {
        client_id: client.client_id().to_string(),
        consumer_data_set: Vec::new(),
        heartbeat_fingerprint: None,
        producer_data_set: vec![ProducerData {
            group_name: group.to_string(),
        }],
        without_sub: None,
    };
    client.heartbeat(addr, &data).await
}

/// Answers one PUSH_REPLY_MESSAGE_TO_CLIENT and hands the reply to its waiting request.
fn take_reply(inner: &Inner, conn: &Connection, cmd: &RemotingCommand) -> RemotingCommand {
    let respond = |code: i32, remark: Option<String>| {
        let r = RemotingCommand::response(code, cmd.opaque, cmd.serialize_type);
        match remark {
            Some(m) => r.with_remark(m),
            None => r,
        }
    };
    let h = match cmd.decode_header::<ReplyMessageRequestHeader>() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(broker = %conn.addr(), error = %e, "unreadable reply push");
            return respond(
                ResponseCode::SYSTEM_ERROR,
                Some(format!("decode reply message request header failed: {e}")),
            );
        }
    };
    let properties: Vec<(String, String)> = prop::iter(h.properties.unwrap_or("").as_bytes())
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let host = |s: &str| {
        s.parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    let msg = MessageExt {
        topic: h.topic.to_string(),
        broker_name: String::new(),
        queue_id: h.queue_id,
        queue_offset: -1,
        commit_log_offset: -1,
        msg_id: String::new(),
        offset_msg_id: String::new(),
        body: Bytes::copy_from_slice(&cmd.body),
        flag: h.flag,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        store_timestamp: h.store_timestamp,
        born_host: host(h.born_host),
        store_host: host(h.store_host),
        reconsume_times: h.reconsume_times.unwrap_or(0),
        properties,
    };
    let waiting = msg
        .property(prop::CORRELATION_ID)
        .and_then(|c| inner.pending.borrow_mut().remove(c));
    match waiting {
        Some(tx) => {
            let _ = tx.try_send(msg);
        }
        None => {
            inner.unmatched.set(inner.unmatched.get() + 1);
            tracing::debug!(broker = %conn.addr(), correlation = msg.property(prop::CORRELATION_ID).unwrap_or(""), "reply matched no waiting request");
        }
    }
    respond(ResponseCode::SUCCESS, None)
}
