//! Producer: sync sends with retry on another broker, async sends within a bounded in-flight
//! window, one-way sends and batches; queue selection by round robin (with latency-based fault
//! avoidance), hash of key, or a custom function. An attempt that fails on the connection makes
//! the next pick use a freshly fetched route (a dead broker leaves it at once), and every
//! attempt is counted per broker ([`Producer::send_stats`]).
//!
//! Wire: SEND_MESSAGE_V2 (310) with one-letter header keys, SEND_BATCH_MESSAGE (320) with the
//! batch body of [`encode_batch`]. Each message gets a `UNIQ_KEY` unless it has one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ramjet_core::record::sysflag::TRANSACTION_PREPARED_TYPE;
use ramjet_core::remoting::headers::{
    RecallMessageRequestHeader, RecallMessageResponseHeader, SendMessageRequestHeader,
    SendMessageResponseHeader,
};
use ramjet_core::remoting::recall::RecallHandle;
use ramjet_core::remoting::{RemotingCommand, RequestCode, ResponseCode};

use super::error::ClientError;
use super::fault::FaultTable;
use super::instance::{publish_queues, Client};
use super::message::{encode_batch, encode_properties, now_ms, prop, Message, MAX_MESSAGE_BYTES};
use super::queue::MessageQueue;
use super::selector::{hash_index, QueueSelector, RoundRobin};
use super::transport::{self, Connection, ResponseWait, Window};

/// Template topic for broker-side auto-creation.
pub const DEFAULT_TOPIC: &str = "TBW102";

/// A send attempt that fails on the connection (broker down) makes the producer fetch the
/// topic's route again before its next attempt: the name server drops a broker as soon as its
/// registration connection closes, so the dead broker's queues leave the selection without
/// waiting for the periodic refresh. While such refreshes do not help (the name server still
/// lists the broker), they happen at most once per this interval.
pub const FAILURE_ROUTE_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub group: String,
    /// Per-attempt timeout (Java `sendMsgTimeout`, 3 s).
    pub send_timeout: Duration,
    /// Extra attempts of a failed sync send, each on another broker when possible (Java 2).
    pub retries: u32,
    /// Avoid brokers that were slow or failing (Java `sendLatencyFaultEnable`).
    pub fault_avoidance: bool,
    pub max_body_bytes: usize,
    /// Async sends allowed in flight at once; `send_async` waits when the window is full.
    pub async_window: usize,
    /// Queue count of auto-created topics (Java `defaultTopicQueueNums`, 4).
    pub default_topic_queue_nums: i32,
    /// Send to a topic without a route through the `TBW102` template route, so a broker with
    /// auto-creation enabled creates it (Java behaviour).
    pub auto_create_topic: bool,
}

impl ProducerConfig {
    pub fn new(group: impl Into<String>) -> Self {
        ProducerConfig {
            group: group.into(),
            send_timeout: Duration::from_secs(3),
            retries: 2,
            fault_avoidance: false,
            max_body_bytes: MAX_MESSAGE_BYTES,
            async_window: 1024,
            default_topic_queue_nums: 4,
            auto_create_topic: true,
        }
    }
}

/// How the message was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendResult {
    pub status: SendStatus,
    /// Client-side unique id(s) (`UNIQ_KEY`), comma-joined for a batch.
    pub msg_id: String,
    /// Broker offset id(s): store host + CommitLog offset.
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    /// Consume-queue offset of the (first) message.
    pub queue_offset: i64,
    pub region: Option<String>,
    /// A timer message's recall handle (RocketMQ 5.3): pass it to [`Producer::recall`] to
    /// take the message back before its time.
    pub recall_handle: Option<String>,
}

/// Send attempts to one broker (each retry of a sync send is an attempt of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BrokerSendStats {
    /// Requests sent, or tried to be sent, to this broker.
    pub attempts: u64,
    /// Attempts that failed (no connection, connection lost, timeout, error answer).
    pub failures: u64,
}

struct TopicPublish {
    queues: Vec<MessageQueue>,
    rr: RoundRobin,
    fetched: Instant,
    /// Fetched because a send failed on the connection.
    after_failure: bool,
    /// A send failed on the connection since: fetch the route again before the next pick.
    stale: Cell<bool>,
}

impl TopicPublish {
    /// A send through this route failed on the connection: refresh the route, unless this
    /// route is itself such a refresh younger than [`FAILURE_ROUTE_REFRESH_MIN_INTERVAL`].
    fn note_transport_failure(&self) {
        if !self.after_failure || self.fetched.elapsed() >= FAILURE_ROUTE_REFRESH_MIN_INTERVAL {
            self.stale.set(true);
        }
    }
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    topics: RefCell<HashMap<String, Rc<TopicPublish>>>,
    faults: RefCell<FaultTable>,
    stats: RefCell<HashMap<String, BrokerSendStats>>,
    window: Rc<Window>,
    epoch: Instant,
}

/// The request code of a single message: SEND_REPLY_MESSAGE_V2 for a reply (`MSG_TYPE`
/// reply, see `super::request`), as RocketMQ's clients send one; else SEND_MESSAGE_V2.
fn one_code(m: &Message) -> i32 {
    if m.property(ramjet_core::record::properties::MSG_TYPE)
        == Some(super::request::REPLY_MESSAGE_FLAG)
    {
        RequestCode::SEND_REPLY_MESSAGE_V2
    } else {
        RequestCode::SEND_MESSAGE_V2
    }
}

/// A producer bound to one [`Client`] (one executor). Cheap to clone.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<Inner>,
}

/// What one request carries.
enum Payload<'a> {
    One(&'a Message),
    Batch(&'a [Message]),
}

impl Payload<'_> {
    fn topic(&self) -> &str {
        match self {
            Payload::One(m) => &m.topic,
            Payload::Batch(ms) => ms.first().map_or("", |m| m.topic.as_str()),
        }
    }
    fn key(&self) -> Option<&str> {
        match self {
            Payload::One(m) => m.keys(),
            Payload::Batch(ms) => ms.first().and_then(|m| m.keys()),
        }
    }
    fn first(&self) -> Option<&Message> {
        match self {
            Payload::One(m) => Some(m),
            Payload::Batch(ms) => ms.first(),
        }
    }
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let window = Rc::new(Window::new(config.async_window.max(1) as u64));
        Producer {
            inner: Rc::new(Inner {
                client,
                config,
                topics: RefCell::new(HashMap::new()),
                faults: RefCell::new(FaultTable::new()),
                stats: RefCell::new(HashMap::new()),
                window,
                epoch: Instant::now(),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    fn clock_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// Writable queues of `topic` (route fetched or refreshed as needed).
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.topic_publish(topic).await?.queues.clone())
    }

    async fn topic_publish(&self, topic: &str) -> Result<Rc<TopicPublish>, ClientError> {
        let refresh = self.inner.client.config().route_refresh;
        let mut after_failure = false;
        if let Some(tp) = self.inner.topics.borrow().get(topic) {
            if tp.stale.get() {
                after_failure = true;
                self.inner.client.expire_route(topic);
            } else if tp.fetched.elapsed() < refresh {
                return Ok(tp.clone());
            }
        }
        let route = match self.inner.client.route(topic).await {
            Ok(r) => r,
            Err(e @ ClientError::NoRoute { .. }) if self.inner.config.auto_create_topic => {
                // Like the Java producer: borrow the route of the template topic (queue counts
                // capped); the broker creates the topic on the first send.
                let Ok(template) = self.inner.client.route(DEFAULT_TOPIC).await else {
                    return Err(e);
                };
                let mut r = (*template).clone();
                for qd in &mut r.queue_datas {
                    let n = qd
                        .read_queue_nums
                        .min(self.inner.config.default_topic_queue_nums);
                    qd.read_queue_nums = n;
                    qd.write_queue_nums = n;
                }
                Rc::new(r)
            }
            Err(e) => return Err(e),
        };
        let queues = publish_queues(topic, &route);
        if queues.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
                reason: "no writable queue on a broker with a master".to_string(),
            });
        }
        let start = rand::random::<u16>() as usize;
        let tp = Rc::new(TopicPublish {
            queues,
            rr: RoundRobin::new(start),
            fetched: Instant::now(),
            after_failure,
            stale: Cell::new(false),
        });
        self.inner
            .topics
            .borrow_mut()
            .insert(topic.to_string(), tp.clone());
        Ok(tp)
    }

    fn pick(
        &self,
        tp: &TopicPublish,
        selector: &QueueSelector,
        payload: &Payload<'_>,
        exclude: Option<&str>,
    ) -> Option<MessageQueue> {
        match selector {
            QueueSelector::RoundRobin => {
                let faults = self.inner.faults.borrow();
                let f = self
                    .inner
                    .config
                    .fault_avoidance
                    .then(|| (&*faults, self.clock_ms()));
                tp.rr.pick(&tp.queues, f, exclude).cloned()
            }
            QueueSelector::KeyHash => {
                let key = payload.key().unwrap_or("");
                tp.queues.get(hash_index(key, tp.queues.len())).cloned()
            }
            QueueSelector::Custom(f) => {
                let m = payload.first()?;
                let n = tp.queues.len();
                if n == 0 {
                    None
                } else {
                    tp.queues.get(f(&tp.queues, m) % n).cloned()
                }
            }
        }
    }

    fn prepare_message(&self, msg: &mut Message) -> Result<(), ClientError> {
        msg.validate(self.inner.config.max_body_bytes)?;
        if msg.property(prop::UNIQ_KEY).is_none() {
            let id = self.inner.client.uniq_ids().next_id();
            msg.set_property(prop::UNIQ_KEY, id);
        }
        Ok(())
    }

    /// Encode and queue the request on `conn`; returns the response handle (None for oneway).
    fn start_request(
        &self,
        conn: &Connection,
        mq: &MessageQueue,
        payload: &Payload<'_>,
        oneway: bool,
    ) -> Result<Option<ResponseWait>, ClientError> {
        let mut props = String::new();
        let (code, body_buf, flag);
        let mut sys_flag = 0;
        let body: &[u8] = match payload {
            Payload::One(m) => {
                encode_properties(&m.properties, &mut props);
                if m.property(prop::TRAN_MSG) == Some("true") {
                    // A half message (spec §7.6), as the Java client marks it.
                    sys_flag = TRANSACTION_PREPARED_TYPE;
                }
                code = one_code(m);
                flag = m.flag;
                body_buf = BytesMut::new();
                let _ = &body_buf;
                &m.body
            }
            Payload::Batch(ms) => {
                let mut b = BytesMut::new();
                encode_batch(ms, &mut b)?;
                code = RequestCode::SEND_BATCH_MESSAGE;
                flag = 0;
                body_buf = b;
                &body_buf
            }
        };
        let header = SendMessageRequestHeader {
            producer_group: &self.inner.config.group,
            topic: &mq.topic,
            default_topic: DEFAULT_TOPIC,
            default_topic_queue_nums: self.inner.config.default_topic_queue_nums,
            queue_id: mq.queue_id,
            sys_flag,
            born_timestamp: now_ms() as i64,
            flag,
            properties: if props.is_empty() { None } else { Some(&props) },
            reconsume_times: Some(0),
            unit_mode: Some(false),
            max_reconsume_times: None,
            batch: matches!(payload, Payload::Batch(_)).then_some(true),
            broker_name: Some(&mq.broker_name),
        };
        if oneway {
            conn.oneway(code, &header.v2(), body)?;
            Ok(None)
        } else {
            conn.start(code, &header.v2(), body).map(Some)
        }
    }

    /// Per broker name: the send attempts made so far and how many failed.
    pub fn send_stats(&self) -> HashMap<String, BrokerSendStats> {
        self.inner.stats.borrow().clone()
    }

    /// Whether round-robin selection may choose `broker_name` now: false while fault avoidance
    /// keeps it out after a slow or failed send (always true with fault avoidance off).
    pub fn is_broker_available(&self, broker_name: &str) -> bool {
        !self.inner.config.fault_avoidance
            || self
                .inner
                .faults
                .borrow()
                .is_available(broker_name, self.clock_ms())
    }

    /// A send to `topic` failed on the connection: refresh its route before the next pick
    /// (see [`FAILURE_ROUTE_REFRESH_MIN_INTERVAL`]).
    fn route_failed(&self, topic: &str) {
        if let Some(tp) = self.inner.topics.borrow().get(topic) {
            tp.note_transport_failure();
        }
    }

    /// Records an attempt's outcome: the per-broker counters, and the latency for fault
    /// avoidance when it is on.
    fn note_latency(&self, broker: &str, started: Instant, failed: bool) {
        {
            let mut stats = self.inner.stats.borrow_mut();
            let failures = u64::from(failed);
            match stats.get_mut(broker) {
                Some(e) => {
                    e.attempts += 1;
                    e.failures += failures;
                }
                None => {
                    stats.insert(
                        broker.to_string(),
                        BrokerSendStats {
                            attempts: 1,
                            failures,
                        },
                    );
                }
            }
        }
        if self.inner.config.fault_avoidance {
            let ms = started.elapsed().as_millis() as u64;
            let now = self.clock_ms();
            self.inner
                .faults
                .borrow_mut()
                .update(broker, ms, failed, now);
        }
    }

    async fn send_payload(
        &self,
        payload: Payload<'_>,
        selector: &QueueSelector,
    ) -> Result<SendResult, ClientError> {
        let attempts = 1 + self.inner.config.retries;
        let mut exclude: Option<String> = None;
        let mut last_err: Option<ClientError> = None;
        let topic = payload.topic().to_string();
        for attempt in 0..attempts {
            let tp = self.topic_publish(&topic).await?;
            let Some(mq) = self.pick(&tp, selector, &payload, exclude.as_deref()) else {
                break;
            };
            let started = Instant::now();
            match self.attempt(&mq, &payload).await {
                Ok(r) => {
                    self.note_latency(&mq.broker_name, started, false);
                    return Ok(r);
                }
                Err(e) => {
                    self.note_latency(&mq.broker_name, started, true);
                    let retriable = e.is_retriable_send();
                    tracing::debug!(attempt, broker = %mq.broker_name, error = %e, "send failed");
                    if e.is_transport() {
                        tp.note_transport_failure();
                    }
                    if matches!(&e, ClientError::Broker { code, .. } if *code == ResponseCode::TOPIC_NOT_EXIST)
                    {
                        self.inner.topics.borrow_mut().remove(&topic);
                        self.inner.client.invalidate_route(&topic);
                    }
                    exclude = Some(mq.broker_name.clone());
                    last_err = Some(e);
                    if !retriable
                        || matches!(selector, QueueSelector::KeyHash | QueueSelector::Custom(_))
                    {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::NoRoute {
            topic: topic.clone(),
            reason: "no queue could be selected".to_string(),
        }))
    }

    /// The master connection for `mq`'s broker. A failure to connect counts like a failed
    /// attempt: fault avoidance and the route refresh see it.
    async fn connect_to(&self, mq: &MessageQueue) -> Result<(String, Connection), ClientError> {
        let addr = self.inner.client.master_addr(&mq.broker_name)?;
        let connecting = Instant::now();
        match self.inner.client.connection(&addr).await {
            Ok(c) => Ok((addr, c)),
            Err(e) => {
                self.note_latency(&mq.broker_name, connecting, true);
                if e.is_transport() {
                    self.route_failed(&mq.topic);
                }
                Err(e)
            }
        }
    }

    async fn attempt(
        &self,
        mq: &MessageQueue,
        payload: &Payload<'_>,
    ) -> Result<SendResult, ClientError> {
        let addr = self.inner.client.master_addr(&mq.broker_name)?;
        let conn = self.inner.client.connection(&addr).await?;
        let code = match payload {
            Payload::One(m) => one_code(m),
            Payload::Batch(_) => RequestCode::SEND_BATCH_MESSAGE,
        };
        let Some(wait) = self.start_request(&conn, mq, payload, false)? else {
            return Err(ClientError::Invalid(
                "oneway request has no response".into(),
            ));
        };
        let resp = conn
            .finish(code, wait, self.inner.config.send_timeout)
            .await?;
        parse_send_response(&addr, code, resp, mq.clone(), uniq_ids(payload))
    }

    /// Send and wait for the broker's answer; retries on another broker (round robin only).
    /// Recalls a timer message of `topic` before its time (RECALL_MESSAGE), with the recall
    /// handle its send's result carried; returns the message's id (`UNIQ_KEY`). The broker
    /// the handle names must be in `topic`'s route.
    pub async fn recall(&self, topic: &str, handle: &str) -> Result<String, ClientError> {
        let h = RecallHandle::decode(handle).map_err(|e| ClientError::Invalid(e.to_string()))?;
        if h.topic != topic {
            return Err(ClientError::Invalid(format!(
                "the recall handle is for topic {}, not {topic}",
                h.topic
            )));
        }
        self.inner.client.route(topic).await?;
        let addr = self.inner.client.master_addr(&h.broker_name)?;
        let header = RecallMessageRequestHeader {
            producer_group: Some(&self.inner.config.group),
            topic,
            recall_handle: handle,
        };
        let code = RequestCode::RECALL_MESSAGE;
        let resp = self
            .inner
            .client
            .invoke_ok(&addr, code, &header, &[])
            .await?;
        let r: RecallMessageResponseHeader<'_> = Client::decode_header(&addr, code, &resp)?;
        Ok(r.msg_id.to_string())
    }

    pub async fn send(&self, mut msg: Message) -> Result<SendResult, ClientError> {
        self.prepare_message(&mut msg)?;
        self.send_payload(Payload::One(&msg), &QueueSelector::RoundRobin)
            .await
    }

    /// Send with a chosen selector (hash of key for ordered messages, or custom).
    pub async fn send_with(
        &self,
        mut msg: Message,
        selector: &QueueSelector,
    ) -> Result<SendResult, ClientError> {
        self.prepare_message(&mut msg)?;
        self.send_payload(Payload::One(&msg), selector).await
    }

    /// Send to a given queue, no retry.
    pub async fn send_to_queue(
        &self,
        mut msg: Message,
        mq: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.prepare_message(&mut msg)?;
        self.topic_publish(&msg.topic).await?;
        self.attempt(mq, &Payload::One(&msg)).await
    }

    /// Send several messages of one topic in one request (SEND_BATCH_MESSAGE).
    pub async fn send_batch(&self, mut msgs: Vec<Message>) -> Result<SendResult, ClientError> {
        for m in &mut msgs {
            self.prepare_message(m)?;
        }
        self.send_payload(Payload::Batch(&msgs), &QueueSelector::RoundRobin)
            .await
    }

    /// Send without waiting for (or getting) an answer.
    pub async fn send_oneway(&self, mut msg: Message) -> Result<(), ClientError> {
        self.prepare_message(&mut msg)?;
        let tp = self.topic_publish(&msg.topic).await?;
        let payload = Payload::One(&msg);
        let mq = self
            .pick(&tp, &QueueSelector::RoundRobin, &payload, None)
            .ok_or_else(|| ClientError::NoRoute {
                topic: msg.topic.clone(),
                reason: "no queue".into(),
            })?;
        let (_, conn) = self.connect_to(&mq).await?;
        self.start_request(&conn, &mq, &payload, true)?;
        Ok(())
    }

    /// Send asynchronously: waits only while the in-flight window is full, writes the request
    /// at once, and calls `callback` with the outcome when the answer arrives (one attempt, no
    /// retry). `batch` with more than one message goes as SEND_BATCH_MESSAGE.
    pub async fn send_async(
        &self,
        mut msgs: Vec<Message>,
        selector: &QueueSelector,
        callback: impl FnOnce(Result<SendResult, ClientError>) + 'static,
    ) -> Result<(), ClientError> {
        for m in &mut msgs {
            self.prepare_message(m)?;
        }
        let window = self.inner.window.clone();
        window
            .acquire(1)
            .await
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let started = self.start_async(&msgs, selector).await;
        let (conn, wait, mq, addr, code, ids) = match started {
            Ok(s) => s,
            Err(e) => {
                window.signal(1);
                callback(Err(e));
                return Ok(());
            }
        };
        let this = self.clone();
        let timeout = self.inner.config.send_timeout;
        let t0 = Instant::now();
        transport::spawn(async move {
            let r = match conn.finish(code, wait, timeout).await {
                Ok(resp) => parse_send_response(&addr, code, resp, mq.clone(), ids),
                Err(e) => Err(e),
            };
            this.note_latency(&mq.broker_name, t0, r.is_err());
            if r.as_ref().is_err_and(ClientError::is_transport) {
                this.route_failed(&mq.topic);
            }
            window.signal(1);
            callback(r);
        });
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    async fn start_async(
        &self,
        msgs: &[Message],
        selector: &QueueSelector,
    ) -> Result<(Connection, ResponseWait, MessageQueue, String, i32, String), ClientError> {
        let payload = if msgs.len() == 1 {
            Payload::One(&msgs[0])
        } else {
            Payload::Batch(msgs)
        };
        let topic = payload.topic().to_string();
        let tp = self.topic_publish(&topic).await?;
        let mq = self
            .pick(&tp, selector, &payload, None)
            .ok_or_else(|| ClientError::NoRoute {
                topic: topic.clone(),
                reason: "no queue".into(),
            })?;
        let (addr, conn) = self.connect_to(&mq).await?;
        let code = match payload {
            Payload::One(m) => one_code(m),
            Payload::Batch(_) => RequestCode::SEND_BATCH_MESSAGE,
        };
        let wait = self
            .start_request(&conn, &mq, &payload, false)?
            .ok_or_else(|| ClientError::Invalid("oneway request has no response".into()))?;
        let ids = uniq_ids(&payload);
        Ok((conn, wait, mq, addr, code, ids))
    }

    /// Async sends currently in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.config.async_window.max(1) - self.inner.window.available() as usize
    }

    /// Wait until every async send has completed.
    pub async fn flush(&self) {
        while self.in_flight() > 0 {
            transport::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn uniq_ids(payload: &Payload<'_>) -> String {
    match payload {
        Payload::One(m) => m.property(prop::UNIQ_KEY).unwrap_or("").to_string(),
        Payload::Batch(ms) => ms
            .iter()
            .map(|m| m.property(prop::UNIQ_KEY).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Interpret a send response (spec §3.1 result mapping).
pub fn parse_send_response(
    addr: &str,
    code: i32,
    resp: RemotingCommand,
    mut mq: MessageQueue,
    msg_id: String,
) -> Result<SendResult, ClientError> {
    let status = match resp.code {
        ResponseCode::SUCCESS => SendStatus::SendOk,
        ResponseCode::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
        ResponseCode::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
        ResponseCode::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
        _ => {
            return Err(ClientError::Broker {
                addr: addr.to_string(),
                request_code: code,
                code: resp.code,
                remark: resp.remark.unwrap_or_default(),
            })
        }
    };
    let h: SendMessageResponseHeader<'_> = Client::decode_header(addr, code, &resp)?;
    mq.queue_id = h.queue_id;
    Ok(SendResult {
        status,
        msg_id,
        offset_msg_id: h.msg_id.to_string(),
        queue: mq,
        queue_offset: h.queue_offset,
        region: h.msg_region.map(str::to_string),
        recall_handle: h.recall_handle.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramjet_core::remoting::SerializeType;

    #[test]
    fn send_response_mapping() {
        let mq = MessageQueue::new("T", "b", 0);
        let ok = RemotingCommand::response(0, 1, SerializeType::Json)
            .with_ext("msgId", "7F00000100002A9F0000000000000000")
            .with_ext("queueId", "3")
            .with_ext("queueOffset", "42");
        let r = parse_send_response("x", 310, ok, mq.clone(), "U".into()).expect("ok");
        assert_eq!(
            (r.status, r.queue.queue_id, r.queue_offset),
            (SendStatus::SendOk, 3, 42)
        );
        let flush = RemotingCommand::response(10, 1, SerializeType::Json)
            .with_ext("msgId", "A")
            .with_ext("queueId", "0")
            .with_ext("queueOffset", "1");
        assert_eq!(
            parse_send_response("x", 310, flush, mq.clone(), "U".into())
                .expect("stored")
                .status,
            SendStatus::FlushDiskTimeout
        );
        let err = RemotingCommand::response(17, 1, SerializeType::Json).with_remark("no topic");
        let e = parse_send_response("x", 310, err, mq.clone(), "U".into()).expect_err("error");
        assert!(e.is_retriable_send());
        assert!(e.to_string().contains("TOPIC_NOT_EXIST"), "{e}");
        let missing = RemotingCommand::response(0, 1, SerializeType::Json);
        assert!(matches!(
            parse_send_response("x", 310, missing, mq, "U".into()),
            Err(ClientError::BadHeader { .. })
        ));
    }
}
