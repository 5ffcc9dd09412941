//! Consumers: the pull API (by queue and offset) and a push-style consumer built on long
//! polling, for clustering and broadcasting groups.
//!
//! Push consumer shape (as the Java client): a rebalance every 20 s and on
//! NOTIFY_CONSUMER_IDS_CHANGED assigns queues ([`Strategy`]); each assigned queue has a pull task
//! (PULL_MESSAGE with suspend 15 s, commit offset piggy-backed) feeding a bounded process queue,
//! and a consume task calling the handler in queue order. Pulls pause while the process queue
//! holds more than `max_cached_msgs` messages or `max_cached_bytes` bytes (flow control).
//! Offsets are committed every 5 s and at shutdown: to the broker (clustering) or to a local
//! file (broadcasting). A handler returning [`ConsumeResult::ReconsumeLater`] sends the message
//! back to the broker for retry (clustering) or retries it locally after 1 s (broadcasting).
//! A clustering consumer also consumes its group's retry topic `%RETRY%<group>` (as the Java
//! client does): the broker delivers sent-back messages there after their delay, and the
//! handler sees them with their original topic (`RETRY_TOPIC`) and reconsume count.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ramjet_core::record::{offset_msg_id, RecordView};
use ramjet_core::remoting::body::{
    self, ConsumeFromWhere, ConsumeType, ConsumerData, ConsumerListBody, HeartbeatData,
    MessageModel, ProducerData, SubscriptionData,
};
use ramjet_core::remoting::headers::{
    ConsumerSendMsgBackRequestHeader, GetConsumerListByGroupRequestHeader,
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, OffsetResponseHeader,
    PullMessageRequestHeader, PullMessageResponseHeader, PullSysFlag,
    QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use ramjet_core::remoting::{RemotingCommand, RequestCode, ResponseCode};

use super::error::ClientError;
use super::instance::{subscribe_queues, Client};
use super::message::{decode_properties, java_hash, prop};
use super::offset_store::{LocalOffsetFile, OffsetTable};
use super::queue::MessageQueue;
use super::rebalance::Strategy;
use super::transport;

/// Java push default suspend (long-poll hold) time.
pub const SUSPEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the client waits for a held pull (Java `CONSUMER_TIMEOUT_MILLIS_WHEN_SUSPEND`).
pub const SUSPENDED_PULL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a pull error before the next one (1 s, 20 ms for FLOW_CONTROL).
const PULL_ERROR_BACKOFF: Duration = Duration::from_secs(1);
const FLOW_CONTROL_BACKOFF: Duration = Duration::from_millis(20);
/// Pause of a pull task while its process queue is over the limits.
const FLOW_CONTROL_PAUSE: Duration = Duration::from_millis(50);

/// Prefix of a consumer group's retry topic (`%RETRY%<group>`).
pub use ramjet_core::remoting::RETRY_GROUP_TOPIC_PREFIX;

/// A consumed message (decoded from the stored record the broker sent).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageExt {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    /// `UNIQ_KEY` when present, else the offset message id.
    pub msg_id: String,
    pub offset_msg_id: String,
    #[serde(skip)]
    pub body: Bytes,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub properties: Vec<(String, String)>,
}

impl MessageExt {
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn tags(&self) -> Option<&str> {
        self.property(prop::TAGS)
    }
    pub fn keys(&self) -> Option<&str> {
        self.property(prop::KEYS)
    }
    /// Whether the body is zlib-compressed (sysflag bit 0); the client does not inflate.
    pub fn is_compressed(&self) -> bool {
        self.sys_flag & 1 != 0
    }
}

/// Decode the stored records of a pull/query/view body. Decoding stops at the first record
/// that does not parse (like the Java client); `body` must be the response body so messages
/// can share it without copying.
pub fn decode_messages(body: &Bytes, broker_name: &str) -> Vec<MessageExt> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let Ok(v) = RecordView::parse(&body[pos..]) else {
            break;
        };
        let size = v.total_size() as usize;
        if size == 0 {
            break;
        }
        let body_off = v.body().as_ptr() as usize - body.as_ptr() as usize;
        let props = decode_properties(v.properties());
        let offset_id = offset_msg_id(v.store_host(), v.physical_offset())
            .as_str()
            .to_string();
        let msg_id = props
            .iter()
            .rev()
            .find(|(n, _)| n == prop::UNIQ_KEY)
            .map_or_else(|| offset_id.clone(), |(_, v)| v.clone());
        out.push(MessageExt {
            topic: v.topic().to_string(),
            broker_name: broker_name.to_string(),
            queue_id: v.queue_id(),
            queue_offset: v.queue_offset(),
            commit_log_offset: v.physical_offset(),
            msg_id,
            offset_msg_id: offset_id,
            body: body.slice(body_off..body_off + v.body().len()),
            flag: v.flag(),
            sys_flag: v.sys_flag(),
            born_timestamp: v.born_timestamp(),
            store_timestamp: v.store_timestamp(),
            born_host: v.born_host(),
            store_host: v.store_host(),
            reconsume_times: v.reconsume_times(),
            properties: props,
        });
        pos += size;
    }
    out
}

/// A tag subscription: `*` (everything) or `TagA || TagB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub expression: String,
    pub tags: Vec<String>,
    pub version: i64,
}

impl Subscription {
    pub fn new(topic: impl Into<String>, expression: &str) -> Subscription {
        let expression = expression.trim();
        let tags: Vec<String> = if expression.is_empty() || expression == "*" {
            Vec::new()
        } else {
            expression
                .split("||")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        };
        Subscription {
            topic: topic.into(),
            expression: if tags.is_empty() {
                "*".into()
            } else {
                expression.to_string()
            },
            tags,
            version: super::message::now_ms() as i64,
        }
    }

    pub fn matches(&self, msg: &MessageExt) -> bool {
        self.tags.is_empty() || msg.tags().is_some_and(|t| self.tags.iter().any(|x| x == t))
    }

    pub fn to_data(&self) -> SubscriptionData {
        SubscriptionData {
            class_filter_mode: false,
            code_set: self.tags.iter().map(|t| java_hash(t)).collect(),
            expression_type: body::EXPRESSION_TYPE_TAG.to_string(),
            sub_string: self.expression.clone(),
            sub_version: self.version,
            tags_set: self.tags.clone(),
            topic: self.topic.clone(),
        }
    }
}

/// How one pull behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    /// Most messages to return (Java push default 32).
    pub max_nums: i32,
    /// Long polling: the broker may hold the request this long waiting for messages.
    pub suspend: Option<Duration>,
    /// Offset to commit for the group with this pull (piggy-backed).
    pub commit: Option<i64>,
}

impl PullOptions {
    pub fn new(max_nums: i32) -> Self {
        PullOptions {
            max_nums,
            suspend: None,
            commit: None,
        }
    }
    pub fn suspend(mut self, d: Duration) -> Self {
        self.suspend = Some(d);
        self
    }
    pub fn commit(mut self, offset: Option<i64>) -> Self {
        self.commit = offset;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PullStatus {
    Found,
    NoNewMsg,
    NoMatchedMsg,
    OffsetIllegal,
}

#[derive(Debug, Clone)]
pub struct PullResult {
    pub status: PullStatus,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<MessageExt>,
}

/// Where a queue without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeFrom {
    /// The queue's current end (only new messages).
    Last,
    /// The queue's first retained message.
    First,
    /// The first message stored at or after this time (ms since epoch).
    Timestamp(i64),
}

impl ConsumeFrom {
    fn to_where(self) -> ConsumeFromWhere {
        match self {
            ConsumeFrom::Last => ConsumeFromWhere::LastOffset,
            ConsumeFrom::First => ConsumeFromWhere::FirstOffset,
            ConsumeFrom::Timestamp(_) => ConsumeFromWhere::Timestamp,
        }
    }
}

/// Offset and pull requests against the broker owning a queue.
impl Client {
    /// Where reads of `mq` go: the master, or its slave while the master is gone.
    async fn queue_addr(&self, mq: &MessageQueue) -> Result<String, ClientError> {
        match self.read_addr(&mq.broker_name) {
            Ok(a) => Ok(a),
            Err(_) => {
                self.fetch_route(&mq.topic).await?;
                self.read_addr(&mq.broker_name)
            }
        }
    }

    async fn offset_request<H: ramjet_core::remoting::EncodeHeader>(
        &self,
        mq: &MessageQueue,
        code: i32,
        header: &H,
    ) -> Result<i64, ClientError> {
        let addr = self.queue_addr(mq).await?;
        let resp = self.invoke_ok(&addr, code, header, &[]).await?;
        let h: OffsetResponseHeader = Client::decode_header(&addr, code, &resp)?;
        Ok(h.offset)
    }

    /// The queue's max offset (next offset to be written).
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        let h = GetMaxOffsetRequestHeader {
            topic: &mq.topic,
            queue_id: mq.queue_id,
            committed: None,
        };
        self.offset_request(mq, RequestCode::GET_MAX_OFFSET, &h)
            .await
    }

    /// The queue's min retained offset.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        let h = GetMinOffsetRequestHeader {
            topic: &mq.topic,
            queue_id: mq.queue_id,
        };
        self.offset_request(mq, RequestCode::GET_MIN_OFFSET, &h)
            .await
    }

    /// The offset of the first message stored at or near `timestamp_ms`.
    pub async fn search_offset(
        &self,
        mq: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        let h = SearchOffsetRequestHeader {
            topic: &mq.topic,
            queue_id: mq.queue_id,
            timestamp: timestamp_ms,
            boundary_type: None,
        };
        self.offset_request(mq, RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, &h)
            .await
    }

    /// The group's committed offset for `mq`; `None` when the broker has none.
    pub async fn committed_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let addr = self.queue_addr(mq).await?;
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: group,
            topic: &mq.topic,
            queue_id: mq.queue_id,
            set_zero_if_not_found: Some(false),
        };
        let code = RequestCode::QUERY_CONSUMER_OFFSET;
        let resp = self
            .invoke(&addr, code, &h, &[], self.config().request_timeout)
            .await?;
        if resp.code == ResponseCode::QUERY_NOT_FOUND {
            return Ok(None);
        }
        let resp = transport::expect_success(&addr, code, resp)?;
        let h: OffsetResponseHeader = Client::decode_header(&addr, code, &resp)?;
        Ok(Some(h.offset))
    }

    /// Commit `offset` for the group (oneway, like the Java client).
    pub async fn commit_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        let addr = self.queue_addr(mq).await?;
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: group,
            topic: &mq.topic,
            queue_id: mq.queue_id,
            commit_offset: offset,
        };
        let conn = self.connection(&addr).await?;
        conn.oneway(RequestCode::UPDATE_CONSUMER_OFFSET, &h, &[])
    }

    /// Commit and wait for the broker's acknowledgement.
    pub async fn commit_offset_sync(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        let addr = self.queue_addr(mq).await?;
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: group,
            topic: &mq.topic,
            queue_id: mq.queue_id,
            commit_offset: offset,
        };
        self.invoke_ok(&addr, RequestCode::UPDATE_CONSUMER_OFFSET, &h, &[])
            .await?;
        Ok(())
    }

    /// Pull up to `max_nums` messages of `mq` from `offset`. With `suspend`, the broker may
    /// hold the request that long waiting for messages (long polling). `commit` piggy-backs an
    /// offset commit for the group.
    pub async fn pull(
        &self,
        group: &str,
        mq: &MessageQueue,
        sub: &Subscription,
        offset: i64,
        opts: PullOptions,
    ) -> Result<PullResult, ClientError> {
        let PullOptions {
            max_nums,
            suspend,
            commit,
        } = opts;
        let addr = match self.pull_addr(mq) {
            Ok(a) => a,
            Err(_) => self.queue_addr(mq).await?,
        };
        let mut sys_flag = PullSysFlag::SUBSCRIPTION;
        if suspend.is_some() {
            sys_flag |= PullSysFlag::SUSPEND;
        }
        if commit.is_some() {
            sys_flag |= PullSysFlag::COMMIT_OFFSET;
        }
        let h = PullMessageRequestHeader {
            consumer_group: group,
            topic: &mq.topic,
            queue_id: mq.queue_id,
            queue_offset: offset,
            max_msg_nums: max_nums,
            sys_flag,
            commit_offset: commit.unwrap_or(0),
            suspend_timeout_millis: suspend.map_or(0, |d| d.as_millis() as i64),
            subscription: Some(&sub.expression),
            sub_version: sub.version,
            expression_type: Some(body::EXPRESSION_TYPE_TAG),
            max_msg_bytes: None,
            broker_name: Some(&mq.broker_name),
        };
        let timeout = match suspend {
            Some(s) => {
                s + SUSPENDED_PULL_TIMEOUT
                    .saturating_sub(SUSPEND_TIMEOUT)
                    .max(Duration::from_secs(5))
            }
            None => self.config().request_timeout,
        };
        let code = RequestCode::PULL_MESSAGE;
        let resp = self.invoke(&addr, code, &h, &[], timeout).await?;
        let status = match resp.code {
            ResponseCode::SUCCESS => PullStatus::Found,
            ResponseCode::PULL_NOT_FOUND => PullStatus::NoNewMsg,
            ResponseCode::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
            ResponseCode::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            _ => {
                return Err(transport::expect_success(&addr, code, resp)
                    .err()
                    .unwrap_or_else(|| {
                        ClientError::Invalid("unreachable: non-success code".into())
                    }))
            }
        };
        let h: PullMessageResponseHeader = Client::decode_header(&addr, code, &resp)?;
        self.set_pull_from(mq, h.suggest_which_broker_id);
        let messages = if status == PullStatus::Found {
            let mut msgs = decode_messages(&resp.body, &mq.broker_name);
            msgs.retain(|m| sub.matches(m));
            for m in &mut msgs {
                m.properties
                    .push((prop::MIN_OFFSET.to_string(), h.min_offset.to_string()));
                m.properties
                    .push((prop::MAX_OFFSET.to_string(), h.max_offset.to_string()));
            }
            msgs
        } else {
            Vec::new()
        };
        Ok(PullResult {
            status,
            next_begin_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            messages,
        })
    }

    /// Client ids of the group's live consumers, asked from the broker at `addr`.
    pub async fn consumer_ids(&self, addr: &str, group: &str) -> Result<Vec<String>, ClientError> {
        let h = GetConsumerListByGroupRequestHeader {
            consumer_group: group,
        };
        let code = RequestCode::GET_CONSUMER_LIST_BY_GROUP;
        let resp = self.invoke_ok(addr, code, &h, &[]).await?;
        let b: ConsumerListBody =
            body::from_slice(&resp.body, "ConsumerListBody").map_err(|e| ClientError::BadBody {
                addr: addr.to_string(),
                code,
                reason: e.to_string(),
            })?;
        Ok(b.consumer_id_list)
    }

    /// Send HEART_BEAT to `addr`.
    pub async fn heartbeat(&self, addr: &str, data: &HeartbeatData) -> Result<(), ClientError> {
        let body = body::to_vec(data, body::JsonStyle::Standard)
            .map_err(|e| ClientError::Invalid(format!("heartbeat body: {e}")))?;
        self.invoke_ok(addr, RequestCode::HEART_BEAT, &(), &body)
            .await?;
        Ok(())
    }
}

/// Starting offset for a queue with no committed offset.
pub async fn start_offset(
    client: &Client,
    mq: &MessageQueue,
    from: ConsumeFrom,
) -> Result<i64, ClientError> {
    match from {
        ConsumeFrom::Last => client.max_offset(mq).await,
        ConsumeFrom::First => client.min_offset(mq).await,
        ConsumeFrom::Timestamp(ts) => client.search_offset(mq, ts).await,
    }
}

/// What the handler did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    Success,
    ReconsumeLater,
}

pub type MessageHandler = Rc<dyn Fn(&MessageExt) -> ConsumeResult>;

#[derive(Debug, Clone)]
pub struct PushConsumerConfig {
    pub group: String,
    pub topic: String,
    /// Tag expression: `*` or `TagA || TagB`.
    pub expression: String,
    pub model: MessageModel,
    pub strategy: Strategy,
    /// Where queues without a committed offset start.
    pub consume_from: ConsumeFrom,
    /// Messages per pull (Java 32).
    pub pull_batch: i32,
    /// Flow control: pause pulling a queue above these many cached messages / bytes.
    pub max_cached_msgs: usize,
    pub max_cached_bytes: usize,
    pub suspend: Duration,
    pub rebalance_interval: Duration,
    pub heartbeat_interval: Duration,
    pub persist_interval: Duration,
    /// Broadcasting offsets directory (default `$HOME/.ramjet_offsets`).
    pub offset_dir: PathBuf,
    /// Retries before a message goes to the DLQ (clustering; Java 16).
    pub max_reconsume_times: i32,
    /// Orderly consumption (clustering; Java `MessageListenerOrderly`): a queue is pulled and
    /// consumed only while this client holds its lock at the queue's broker
    /// (LOCK_BATCH_MQ, renewed at every rebalance, released with UNLOCK_BATCH_MQ when the
    /// queue moves away), so no two members ever work on one queue at once, also while a
    /// rebalance moves it. A message the handler wants again is retried in place after 1 s
    /// (the queue waits), never sent back out of order.
    pub orderly: bool,
}

impl PushConsumerConfig {
    pub fn new(group: impl Into<String>, topic: impl Into<String>) -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        PushConsumerConfig {
            group: group.into(),
            topic: topic.into(),
            expression: "*".into(),
            model: MessageModel::Clustering,
            strategy: Strategy::Averagely,
            consume_from: ConsumeFrom::Last,
            pull_batch: 32,
            max_cached_msgs: 1000,
            max_cached_bytes: 100 * 1024 * 1024,
            suspend: SUSPEND_TIMEOUT,
            rebalance_interval: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(30),
            persist_interval: Duration::from_secs(5),
            offset_dir: home.join(".ramjet_offsets"),
            max_reconsume_times: 16,
            orderly: false,
        }
    }
}

/// Messages pulled but not yet consumed for one queue.
#[derive(Default)]
struct ProcessQueue {
    msgs: RefCell<VecDeque<MessageExt>>,
    bytes: Cell<usize>,
    dropped: Cell<bool>,
    flow_control_pauses: Cell<u64>,
    /// The consume task, parked while the queue is empty.
    consumer_waker: Cell<Option<std::task::Waker>>,
    /// Bumped each time the queue's position is moved (an offset reset): a pull or a
    /// consume that started before the move drops what it got.
    epoch: Cell<u64>,
    /// Where the broker's RESET_CONSUMER_CLIENT_OFFSET moved the queue; the pull task takes it.
    moved_to: Cell<Option<i64>>,
    /// When the last pull answered and the last message was consumed (ms; 0: not yet), for
    /// GET_CONSUMER_RUNNING_INFO.
    last_pull_ms: Cell<i64>,
    last_consume_ms: Cell<i64>,
}

impl ProcessQueue {
    /// Forgets the cached messages (they lie before or after a new position).
    fn clear_cache(&self) {
        self.msgs.borrow_mut().clear();
        self.bytes.set(0);
        self.epoch.set(self.epoch.get() + 1);
        self.wake_consumer();
    }

    fn wake_consumer(&self) {
        if let Some(w) = self.consumer_waker.take() {
            w.wake();
        }
    }

    fn drop_queue(&self) {
        self.dropped.set(true);
        self.wake_consumer();
    }

    fn over_limit(&self, cfg: &PushConsumerConfig) -> bool {
        self.msgs.borrow().len() >= cfg.max_cached_msgs || self.bytes.get() >= cfg.max_cached_bytes
    }
}

/// Counters of a running push consumer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerStats {
    pub pulled: u64,
    pub consumed: u64,
    pub reconsume_later: u64,
    pub flow_control_pauses: u64,
    pub rebalances: u64,
}

struct PushInner {
    client: Client,
    cfg: PushConsumerConfig,
    sub: Subscription,
    /// `%RETRY%<group>`, `*` (clustering only).
    retry_sub: Option<Subscription>,
    handler: MessageHandler,
    offsets: RefCell<OffsetTable>,
    local_file: Option<LocalOffsetFile>,
    queues: RefCell<BTreeMap<MessageQueue, Rc<ProcessQueue>>>,
    rebalance_wake: Cell<Option<std::task::Waker>>,
    rebalance_due: Cell<bool>,
    stopped: Cell<bool>,
    stats: Cell<ConsumerStats>,
    /// When it started (ms), for GET_CONSUMER_RUNNING_INFO.
    started_ms: i64,
}

impl PushInner {
    /// GET_CONSUMER_RUNNING_INFO (307) from a broker, on behalf of an admin tool: RocketMQ's
    /// ConsumerRunningInfo of this consumer (its settings, subscriptions and, per queue held,
    /// committed offset and cache), written as fastjson writes it (queue objects as keys).
    /// `statusTable` is empty: the client keeps counts, not the rates it holds.
    fn running_info(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        let cfg = &self.cfg;
        let mut props = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            props.insert(k.to_string(), serde_json::Value::String(v));
        };
        put("consumerGroup", cfg.group.clone());
        put("messageModel", format!("{:?}", cfg.model).to_uppercase());
        let from = match cfg.consume_from {
            ConsumeFrom::Last => "CONSUME_FROM_LAST_OFFSET",
            ConsumeFrom::First => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFrom::Timestamp(ms) => {
                put("consumeTimestamp", ms.to_string());
                "CONSUME_FROM_TIMESTAMP"
            }
        };
        put("consumeFromWhere", from.into());
        put("pullBatchSize", cfg.pull_batch.to_string());
        put("pullThresholdForQueue", cfg.max_cached_msgs.to_string());
        put("maxReconsumeTimes", cfg.max_reconsume_times.to_string());
        put("PROP_CONSUME_ORDERLY", cfg.orderly.to_string());
        put("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY".into());
        put("PROP_CONSUMER_START_TIMESTAMP", self.started_ms.to_string());
        put(
            "PROP_NAMESERVER_ADDR",
            self.client.config().namesrv_addrs.join(";"),
        );
        put(
            "PROP_CLIENT_VERSION",
            format!("ramjet {}", env!("CARGO_PKG_VERSION")),
        );
        let mut subs = vec![self.sub.to_data()];
        if let Some(r) = &self.retry_sub {
            subs.push(r.to_data());
        }
        let mut out = format!(
            "{{\"properties\":{},\"subscriptionSet\":{},\"mqTable\":{{",
            serde_json::Value::Object(props),
            serde_json::to_string(&subs).unwrap_or_else(|_| "[]".into())
        );
        let offsets = self.offsets.borrow();
        for (i, (mq, pq)) in self.queues.borrow().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            body::queue_table::write_queue_key(&mut out, &mq.topic, &mq.broker_name, mq.queue_id);
            let msgs = pq.msgs.borrow();
            let (min, max) = match (msgs.front(), msgs.back()) {
                (Some(a), Some(b)) => (a.queue_offset, b.queue_offset),
                _ => (0, 0),
            };
            let _ = write!(
                out,
                ":{{\"commitOffset\":{},\"cachedMsgMinOffset\":{min},\"cachedMsgMaxOffset\":{max},\"cachedMsgCount\":{},\"cachedMsgSizeInMiB\":{},\"transactionMsgMinOffset\":0,\"transactionMsgMaxOffset\":0,\"transactionMsgCount\":0,\"locked\":{},\"tryUnlockTimes\":0,\"lastLockTimestamp\":0,\"droped\":{},\"lastPullTimestamp\":{},\"lastConsumeTimestamp\":{}}}",
                offsets.get(mq).unwrap_or(-1),
                msgs.len(),
                pq.bytes.get() >> 20,
                cfg.orderly,
                pq.dropped.get(),
                pq.last_pull_ms.get(),
                pq.last_consume_ms.get(),
            );
        }
        out.push_str("},\"statusTable\":{},\"userConsumerInfo\":{}}");
        out.into_bytes()
    }

    /// CONSUME_MESSAGE_DIRECTLY (309) from a broker, on behalf of `mqadmin consumeMessage`:
    /// the handler runs on the stored message the broker attached, and the answer is
    /// RocketMQ's ConsumeMessageDirectlyResult. The message's offset is not committed.
    fn consume_directly(&self, cmd: &RemotingCommand) -> RemotingCommand {
        let broker = cmd.ext_get("brokerName").unwrap_or("");
        let msgs = decode_messages(&cmd.body, broker);
        let Some(msg) = msgs.first() else {
            return RemotingCommand::response(
                ResponseCode::SYSTEM_ERROR,
                cmd.opaque,
                cmd.serialize_type,
            )
            .with_remark("CONSUME_MESSAGE_DIRECTLY: the body holds no stored message");
        };
        let started = std::time::Instant::now();
        let r = (self.handler)(msg);
        let body = serde_json::json!({
            "order": self.cfg.orderly,
            "autoCommit": true,
            "consumeResult": match r {
                ConsumeResult::Success => "CR_SUCCESS",
                ConsumeResult::ReconsumeLater => "CR_LATER",
            },
            "remark": format!("consumed by {}", self.client.client_id()),
            "spentTimeMills": started.elapsed().as_millis() as u64,
        });
        RemotingCommand::response(ResponseCode::SUCCESS, cmd.opaque, cmd.serialize_type)
            .with_body(body.to_string().into_bytes())
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (220) from a broker: each queue of the body this client
    /// holds moves to its new offset, its cached messages dropped. A broadcasting client also
    /// keeps the offsets of queues it does not hold (they start there).
    fn reset_offsets(&self, cmd: &RemotingCommand) {
        if cmd.ext_get("group") != Some(self.cfg.group.as_str()) {
            return;
        }
        let table = match body::queue_table::parse_offset_table(
            &cmd.body,
            "offsetTable",
            "ResetOffsetBody",
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(group = %self.cfg.group, error = %e, "offset reset from the broker not understood; ignored");
                return;
            }
        };
        for (q, offset) in table {
            let mq = MessageQueue::new(q.topic, q.broker_name, q.queue_id);
            let held = self.queues.borrow().get(&mq).cloned();
            match held {
                Some(pq) => {
                    pq.clear_cache();
                    pq.moved_to.set(Some(offset));
                }
                None if self.cfg.model == MessageModel::Broadcasting => {}
                None => continue,
            }
            tracing::info!(queue = %mq, offset, "offset reset by the broker");
            self.offsets.borrow_mut().update(&mq, offset, true);
        }
    }
}

/// A running push consumer. Dropping it does not stop it: call [`PushConsumer::shutdown`].
#[derive(Clone)]
pub struct PushConsumer {
    inner: Rc<PushInner>,
}

impl PushConsumer {
    /// Subscribe and start consuming on the current executor.
    pub async fn start(
        client: Client,
        cfg: PushConsumerConfig,
        handler: MessageHandler,
    ) -> Result<PushConsumer, ClientError> {
        let sub = Subscription::new(cfg.topic.clone(), &cfg.expression);
        let retry_sub = (cfg.model == MessageModel::Clustering)
            .then(|| Subscription::new(format!("{RETRY_GROUP_TOPIC_PREFIX}{}", cfg.group), "*"));
        let local_file = (cfg.model == MessageModel::Broadcasting)
            .then(|| LocalOffsetFile::new(&cfg.offset_dir, client.client_id(), &cfg.group));
        let mut offsets = OffsetTable::new();
        if let Some(f) = &local_file {
            for (mq, o) in f.load()? {
                offsets.update(&mq, o, true);
            }
            offsets.take_dirty();
        }
        // Fail early (with the route error) if the topic does not exist.
        client.route(&cfg.topic).await?;
        let inner = Rc::new(PushInner {
            client: client.clone(),
            cfg,
            sub,
            retry_sub,
            handler,
            offsets: RefCell::new(offsets),
            local_file,
            queues: RefCell::new(BTreeMap::new()),
            rebalance_wake: Cell::new(None),
            rebalance_due: Cell::new(true),
            stopped: Cell::new(false),
            stats: Cell::new(ConsumerStats::default()),
            started_ms: super::message::now_ms() as i64,
        });
        let weak = Rc::downgrade(&inner);
        let group = inner.cfg.group.clone();
        client.add_listener(
            RequestCode::NOTIFY_CONSUMER_IDS_CHANGED,
            move |_conn, cmd| {
                if cmd.ext_get("consumerGroup") == Some(group.as_str()) {
                    if let Some(i) = weak.upgrade() {
                        i.rebalance_due.set(true);
                        if let Some(w) = i.rebalance_wake.take() {
                            w.wake();
                        }
                    }
                }
                None
            },
        );
        let weak = Rc::downgrade(&inner);
        client.add_listener(
            RequestCode::RESET_CONSUMER_CLIENT_OFFSET,
            move |_conn, cmd| {
                if let Some(i) = weak.upgrade() {
                    i.reset_offsets(cmd);
                }
                None
            },
        );
        for code in [
            RequestCode::GET_CONSUMER_RUNNING_INFO,
            RequestCode::CONSUME_MESSAGE_DIRECTLY,
        ] {
            let weak = Rc::downgrade(&inner);
            client.add_listener(code, move |_conn, cmd| {
                let i = weak.upgrade()?;
                if cmd.ext_get("consumerGroup") != Some(i.cfg.group.as_str()) {
                    return None;
                }
                Some(if cmd.code == RequestCode::GET_CONSUMER_RUNNING_INFO {
                    RemotingCommand::response(ResponseCode::SUCCESS, cmd.opaque, cmd.serialize_type)
                        .with_body(i.running_info())
                } else {
                    i.consume_directly(cmd)
                })
            });
        }
        let c = PushConsumer { inner };
        c.send_heartbeats().await;
        transport::spawn(c.clone().heartbeat_loop());
        transport::spawn(c.clone().rebalance_loop());
        transport::spawn(c.clone().persist_loop());
        Ok(c)
    }

    pub fn stats(&self) -> ConsumerStats {
        self.inner.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut ConsumerStats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    /// Queues currently assigned to this client.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        self.inner.queues.borrow().keys().cloned().collect()
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        let cfg = &self.inner.cfg;
        let mut subs = vec![self.inner.sub.to_data()];
        if cfg.model == MessageModel::Clustering {
            subs.push(
                Subscription::new(format!("{RETRY_GROUP_TOPIC_PREFIX}{}", cfg.group), "*")
                    .to_data(),
            );
        }
        HeartbeatData {
            client_id: self.inner.client.client_id().to_string(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: cfg.consume_from.to_where(),
                consume_type: ConsumeType::ConsumePassively,
                group_name: cfg.group.clone(),
                message_model: cfg.model,
                subscription_data_set: subs,
                unit_mode: false,
            }],
            heartbeat_fingerprint: None,
            producer_data_set: vec![ProducerData {
                group_name: "CLIENT_INNER_PRODUCER".into(),
            }],
            without_sub: None,
        }
    }

    async fn send_heartbeats(&self) {
        let data = self.heartbeat_data();
        if let Ok(route) = self.inner.client.route(&self.inner.cfg.topic).await {
            for b in &route.broker_datas {
                for addr in b.broker_addrs.values() {
                    if let Err(e) = self.inner.client.heartbeat(addr, &data).await {
                        tracing::warn!(broker = %addr, error = %e, "heartbeat failed");
                    }
                }
            }
        }
    }

    async fn heartbeat_loop(self) {
        while !self.inner.stopped.get() {
            transport::sleep(self.inner.cfg.heartbeat_interval).await;
            if self.inner.stopped.get() {
                break;
            }
            self.send_heartbeats().await;
        }
    }

    async fn rebalance_loop(self) {
        while !self.inner.stopped.get() {
            if self.inner.rebalance_due.replace(false) {
                if let Err(e) = self.rebalance().await {
                    tracing::warn!(group = %self.inner.cfg.group, error = %e, "rebalance failed");
                }
            }
            let interval = self.inner.cfg.rebalance_interval;
            let inner = self.inner.clone();
            let woken = futures_lite::future::poll_fn(move |cx| {
                if inner.rebalance_due.get() || inner.stopped.get() {
                    std::task::Poll::Ready(())
                } else {
                    inner.rebalance_wake.set(Some(cx.waker().clone()));
                    std::task::Poll::Pending
                }
            });
            futures_lite::future::or(woken, transport::sleep(interval)).await;
            self.inner.rebalance_due.set(true);
        }
    }

    /// Recompute this client's queues now.
    pub async fn rebalance(&self) -> Result<(), ClientError> {
        let cfg = &self.inner.cfg;
        let client = &self.inner.client;
        let route = client.route(&cfg.topic).await?;
        let all = subscribe_queues(&cfg.topic, &route);
        // The retry topic's queues, allocated on their own as the Java client does (its route
        // appears once a broker has seen this group's heartbeat).
        let retry_all = match &self.inner.retry_sub {
            Some(rs) => match client.route(&rs.topic).await {
                Ok(r) => subscribe_queues(&rs.topic, &r),
                Err(e) => {
                    tracing::debug!(topic = %rs.topic, error = %e, "no route for the retry topic yet");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let mine = match cfg.model {
            MessageModel::Broadcasting => all,
            MessageModel::Clustering => {
                let mut ids = Vec::new();
                for b in &route.broker_datas {
                    if let Ok(addr) = client.read_addr(&b.broker_name) {
                        match client.consumer_ids(&addr, &cfg.group).await {
                            Ok(v) if !v.is_empty() => {
                                ids = v;
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(broker = %addr, error = %e, "consumer list failed")
                            }
                        }
                    }
                }
                if ids.is_empty() {
                    // The broker has not seen our heartbeat yet: consume alone for now.
                    ids.push(client.client_id().to_string());
                }
                let mut mine = cfg.strategy.allocate(client.client_id(), &ids, &all);
                if !retry_all.is_empty() {
                    mine.extend(cfg.strategy.allocate(client.client_id(), &ids, &retry_all));
                }
                mine
            }
        };
        self.bump(|s| s.rebalances += 1);
        // Orderly: lock (or renew) every assigned queue; only the locked ones are consumed.
        let locked = if self.orderly() {
            Some(self.lock_queues(&mine).await)
        } else {
            None
        };
        let may_consume = |q: &MessageQueue| locked.as_ref().is_none_or(|l| l.contains(q));
        let current: Vec<MessageQueue> = self.assigned();
        let mut released = Vec::new();
        for mq in current
            .iter()
            .filter(|q| !mine.contains(q) || !may_consume(q))
        {
            let pq = self.inner.queues.borrow_mut().remove(mq);
            if let Some(pq) = pq {
                pq.drop_queue();
            }
            self.persist_queue(mq).await;
            self.inner.offsets.borrow_mut().remove(mq);
            if !mine.contains(mq) {
                released.push(mq.clone());
            }
        }
        if self.orderly() && !released.is_empty() {
            self.unlock_queues(&released).await;
        }
        for mq in mine
            .into_iter()
            .filter(|q| !current.contains(q) && may_consume(q))
        {
            let offset = match self.initial_offset(&mq).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(queue = %mq, error = %e, "cannot find a start offset; skipping the queue this round");
                    continue;
                }
            };
            // A rebalance that ran concurrently (the loop and an explicit call) may have taken
            // the queue while this one awaited: a second pull/consume loop pair for the same
            // queue would deliver every message twice.
            if self.inner.queues.borrow().contains_key(&mq) {
                continue;
            }
            self.inner.offsets.borrow_mut().update(&mq, offset, true);
            let pq = Rc::new(ProcessQueue::default());
            self.inner
                .queues
                .borrow_mut()
                .insert(mq.clone(), pq.clone());
            transport::spawn(self.clone().pull_loop(mq.clone(), pq.clone(), offset));
            transport::spawn(self.clone().consume_loop(mq, pq));
        }
        Ok(())
    }

    async fn initial_offset(&self, mq: &MessageQueue) -> Result<i64, ClientError> {
        let cfg = &self.inner.cfg;
        let stored = match cfg.model {
            MessageModel::Broadcasting => self.inner.offsets.borrow().get(mq),
            MessageModel::Clustering => self.inner.client.committed_offset(&cfg.group, mq).await?,
        };
        match stored {
            Some(o) if o >= 0 => Ok(o),
            // A retry queue without an offset starts at its beginning, except for a group
            // that starts at a timestamp (then at its end), as the Java client does.
            _ if self.is_retry(mq) => match cfg.consume_from {
                ConsumeFrom::Timestamp(_) => self.inner.client.max_offset(mq).await,
                ConsumeFrom::Last | ConsumeFrom::First => Ok(0),
            },
            _ => start_offset(&self.inner.client, mq, cfg.consume_from).await,
        }
    }

    fn orderly(&self) -> bool {
        self.inner.cfg.orderly && self.inner.cfg.model == MessageModel::Clustering
    }

    /// The lock request body for `mqs` (all of one broker).
    fn lock_body(&self, mqs: &[&MessageQueue]) -> Result<Vec<u8>, ClientError> {
        let body = body::LockBatchRequestBody {
            client_id: self.inner.client.client_id().to_string(),
            consumer_group: self.inner.cfg.group.clone(),
            mq_set: mqs
                .iter()
                .map(|q| body::MessageQueue {
                    topic: q.topic.clone(),
                    broker_name: q.broker_name.clone(),
                    queue_id: q.queue_id,
                })
                .collect(),
            only_this_broker: true,
        };
        body::fastjson::to_vec(&body, body::fastjson::JsonStyle::Standard)
            .map_err(|e| ClientError::Invalid(format!("lock request body: {e}")))
    }

    /// The queues of `mqs` whose locks this client now holds (LOCK_BATCH_MQ at each queue's
    /// broker; a broker that fails to answer grants nothing this round).
    async fn lock_queues(&self, mqs: &[MessageQueue]) -> std::collections::BTreeSet<MessageQueue> {
        let mut by_broker: BTreeMap<&str, Vec<&MessageQueue>> = BTreeMap::new();
        for q in mqs {
            by_broker.entry(&q.broker_name).or_default().push(q);
        }
        let mut held = std::collections::BTreeSet::new();
        for (broker, qs) in by_broker {
            let r = async {
                let addr = self.inner.client.master_addr(broker)?;
                let body = self.lock_body(&qs)?;
                let resp = self
                    .inner
                    .client
                    .invoke_ok(&addr, RequestCode::LOCK_BATCH_MQ, &(), &body)
                    .await?;
                body::from_slice::<body::LockBatchResponseBody>(&resp.body, "LockBatchResponseBody")
                    .map_err(|e| ClientError::BadBody {
                        addr: addr.clone(),
                        code: RequestCode::LOCK_BATCH_MQ,
                        reason: e.to_string(),
                    })
            }
            .await;
            match r {
                Ok(ok) => held.extend(
                    ok.lock_ok_mq_set
                        .into_iter()
                        .map(|q| MessageQueue::new(q.topic, q.broker_name, q.queue_id)),
                ),
                Err(e) => tracing::warn!(broker, error = %e, "queue lock request failed"),
            }
        }
        held
    }

    /// Releases this client's locks of `mqs` (UNLOCK_BATCH_MQ; errors only logged: the locks
    /// then expire at the broker).
    async fn unlock_queues(&self, mqs: &[MessageQueue]) {
        let mut by_broker: BTreeMap<&str, Vec<&MessageQueue>> = BTreeMap::new();
        for q in mqs {
            by_broker.entry(&q.broker_name).or_default().push(q);
        }
        for (broker, qs) in by_broker {
            let r = async {
                let addr = self.inner.client.master_addr(broker)?;
                let body = self.lock_body(&qs)?;
                self.inner
                    .client
                    .invoke_ok(&addr, RequestCode::UNLOCK_BATCH_MQ, &(), &body)
                    .await
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(broker, error = %e, "queue unlock request failed");
            }
        }
    }

    fn is_retry(&self, mq: &MessageQueue) -> bool {
        self.inner
            .retry_sub
            .as_ref()
            .is_some_and(|rs| rs.topic == mq.topic)
    }

    async fn pull_loop(self, mq: MessageQueue, pq: Rc<ProcessQueue>, mut offset: i64) {
        let cfg = self.inner.cfg.clone();
        let retry = self.is_retry(&mq);
        let sub = match (&self.inner.retry_sub, retry) {
            (Some(rs), true) => rs.clone(),
            _ => self.inner.sub.clone(),
        };
        while !pq.dropped.get() && !self.inner.stopped.get() {
            if let Some(to) = pq.moved_to.take() {
                offset = to;
            }
            if pq.over_limit(&cfg) {
                pq.flow_control_pauses.set(pq.flow_control_pauses.get() + 1);
                self.bump(|s| s.flow_control_pauses += 1);
                transport::sleep(FLOW_CONTROL_PAUSE).await;
                continue;
            }
            let epoch = pq.epoch.get();
            let commit = if cfg.model == MessageModel::Clustering {
                self.inner.offsets.borrow().get(&mq).filter(|o| *o > 0)
            } else {
                None
            };
            let r = self
                .inner
                .client
                .pull(
                    &cfg.group,
                    &mq,
                    &sub,
                    offset,
                    PullOptions::new(cfg.pull_batch)
                        .suspend(cfg.suspend)
                        .commit(commit),
                )
                .await;
            if pq.dropped.get() {
                break;
            }
            if pq.epoch.get() != epoch {
                // Moved while pulling: what came back is from the old position.
                continue;
            }
            pq.last_pull_ms.set(super::message::now_ms() as i64);
            match r {
                Ok(mut res) => {
                    match res.status {
                        PullStatus::Found => {
                            if retry {
                                // The handler sees a retried message under its own topic.
                                for m in &mut res.messages {
                                    if let Some(t) = m.property(prop::RETRY_TOPIC) {
                                        m.topic = t.to_string();
                                    }
                                }
                            }
                            let n = res.messages.len() as u64;
                            let bytes: usize = res.messages.iter().map(|m| m.body.len()).sum();
                            pq.msgs.borrow_mut().extend(res.messages.drain(..));
                            pq.wake_consumer();
                            pq.bytes.set(pq.bytes.get() + bytes);
                            self.bump(|s| s.pulled += n);
                            // Tag-filtered pulls can be empty: move the offset on anyway.
                            if n == 0 {
                                self.inner.offsets.borrow_mut().update(
                                    &mq,
                                    res.next_begin_offset,
                                    false,
                                );
                            }
                        }
                        PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                            if pq.msgs.borrow().is_empty() {
                                self.inner.offsets.borrow_mut().update(
                                    &mq,
                                    res.next_begin_offset,
                                    false,
                                );
                            }
                        }
                        PullStatus::OffsetIllegal => {
                            // Moved by the broker (an admin reset, or messages deleted): the
                            // cached messages go, as the Java client drops its process queue.
                            tracing::warn!(queue = %mq, offset, next = res.next_begin_offset, "offset moved by the broker");
                            pq.clear_cache();
                            self.inner.offsets.borrow_mut().update(
                                &mq,
                                res.next_begin_offset,
                                true,
                            );
                        }
                    }
                    offset = res.next_begin_offset;
                }
                Err(e) => {
                    let pause = match &e {
                        ClientError::Broker { code: 215, .. } => FLOW_CONTROL_BACKOFF,
                        _ => PULL_ERROR_BACKOFF,
                    };
                    tracing::debug!(queue = %mq, error = %e, "pull failed");
                    if !matches!(e, ClientError::Broker { .. }) {
                        // The broker may be gone: the route says whether its slave serves
                        // the queue now.
                        let _ = self.inner.client.fetch_route(&mq.topic).await;
                    }
                    transport::sleep(pause).await;
                }
            }
        }
    }

    async fn consume_loop(self, mq: MessageQueue, pq: Rc<ProcessQueue>) {
        while !pq.dropped.get() && !self.inner.stopped.get() {
            let next = pq.msgs.borrow().front().cloned();
            let Some(msg) = next else {
                // Park until the pull task adds messages or the queue is dropped.
                let (pq2, inner) = (pq.clone(), self.inner.clone());
                futures_lite::future::poll_fn(move |cx| {
                    if !pq2.msgs.borrow().is_empty() || pq2.dropped.get() || inner.stopped.get() {
                        std::task::Poll::Ready(())
                    } else {
                        pq2.consumer_waker.set(Some(cx.waker().clone()));
                        std::task::Poll::Pending
                    }
                })
                .await;
                continue;
            };
            let epoch = pq.epoch.get();
            let result = (self.inner.handler)(&msg);
            if result == ConsumeResult::ReconsumeLater {
                self.bump(|s| s.reconsume_later += 1);
                let sent_back = self.inner.cfg.model == MessageModel::Clustering
                    && !self.inner.cfg.orderly
                    && self.send_back(&msg).await.is_ok();
                if !sent_back {
                    // Keep it at the head and try again after a pause.
                    transport::sleep(PULL_ERROR_BACKOFF).await;
                    continue;
                }
                if pq.epoch.get() != epoch {
                    // The queue moved while the message went back: its cache is gone.
                    continue;
                }
            }
            pq.msgs.borrow_mut().pop_front();
            pq.last_consume_ms.set(super::message::now_ms() as i64);
            pq.bytes.set(pq.bytes.get().saturating_sub(msg.body.len()));
            self.bump(|s| s.consumed += 1);
            let next_offset = pq
                .msgs
                .borrow()
                .front()
                .map_or(msg.queue_offset + 1, |m| m.queue_offset);
            if !pq.dropped.get() {
                self.inner
                    .offsets
                    .borrow_mut()
                    .update(&mq, next_offset, false);
            }
        }
    }

    async fn send_back(&self, msg: &MessageExt) -> Result<(), ClientError> {
        let cfg = &self.inner.cfg;
        let addr = self.inner.client.master_addr(&msg.broker_name)?;
        let h = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset,
            group: &cfg.group,
            delay_level: 0,
            origin_msg_id: Some(&msg.msg_id),
            origin_topic: Some(&msg.topic),
            unit_mode: Some(false),
            max_reconsume_times: Some(cfg.max_reconsume_times),
            broker_name: Some(&msg.broker_name),
        };
        self.inner
            .client
            .invoke_ok(&addr, RequestCode::CONSUMER_SEND_MSG_BACK, &h, &[])
            .await?;
        Ok(())
    }

    async fn persist_queue(&self, mq: &MessageQueue) {
        let Some(o) = self.inner.offsets.borrow().get(mq) else {
            return;
        };
        if self.inner.cfg.model == MessageModel::Clustering {
            if let Err(e) = self
                .inner
                .client
                .commit_offset(&self.inner.cfg.group, mq, o)
                .await
            {
                tracing::warn!(queue = %mq, error = %e, "offset commit failed");
            }
        }
    }

    /// Commit every changed offset now.
    pub async fn persist(&self) -> Result<(), ClientError> {
        let dirty = self.inner.offsets.borrow_mut().take_dirty();
        match &self.inner.local_file {
            Some(f) => {
                if !dirty.is_empty() {
                    let all = self.inner.offsets.borrow().all();
                    f.store(&all)?;
                }
            }
            None => {
                for (mq, o) in dirty {
                    self.inner
                        .client
                        .commit_offset(&self.inner.cfg.group, &mq, o)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn persist_loop(self) {
        while !self.inner.stopped.get() {
            transport::sleep(self.inner.cfg.persist_interval).await;
            if let Err(e) = self.persist().await {
                tracing::warn!(group = %self.inner.cfg.group, error = %e, "offset persist failed");
            }
        }
    }

    /// Offsets this client holds (next offset to consume per queue).
    pub fn offsets(&self) -> HashMap<MessageQueue, i64> {
        self.inner.offsets.borrow().all().into_iter().collect()
    }

    /// Stop pulling, commit offsets, unregister from the brokers.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.inner.stopped.set(true);
        if let Some(w) = self.inner.rebalance_wake.take() {
            w.wake();
        }
        for pq in self.inner.queues.borrow().values() {
            pq.drop_queue();
        }
        // Make every offset dirty once more so the final commit covers all of them.
        let all = self.inner.offsets.borrow().all();
        for (mq, o) in &all {
            self.inner.offsets.borrow_mut().update(mq, *o, true);
        }
        let r = self.persist().await;
        // Orderly: give the queues' locks back after the offsets are committed, so that the
        // group's other members take the queues at their next rebalance, not a lock lifetime
        // (60 s) later.
        if self.orderly() {
            let held = self.assigned();
            self.unlock_queues(&held).await;
        }
        let h = UnregisterClientRequestHeader {
            client_id: self.inner.client.client_id(),
            producer_group: None,
            consumer_group: Some(&self.inner.cfg.group),
        };
        for addr in self.inner.client.known_masters() {
            let _ = self
                .inner
                .client
                .invoke(
                    &addr,
                    RequestCode::UNREGISTER_CLIENT,
                    &h,
                    &[],
                    Duration::from_secs(1),
                )
                .await;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramjet_core::record::{encode_record, MessageToStore};

    fn record(topic: &str, body: &[u8], props: &[u8], qoff: i64, phys: i64) -> Vec<u8> {
        let m = MessageToStore {
            topic,
            queue_id: 1,
            flag: 0,
            body,
            properties: props,
            sys_flag: 0,
            born_timestamp: 1000,
            born_host: "127.0.0.1:5000".parse().expect("addr"),
            store_host: "127.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            tags_code: 0,
        };
        let mut out = vec![0u8; m.encoded_len()];
        let n = encode_record(&m, qoff, phys, 2000, &mut out).expect("encode");
        out.truncate(n);
        out
    }

    #[test]
    fn decodes_pull_body_and_filters_tags() {
        let mut buf = record("T", b"one", b"TAGS\x01A\x02UNIQ_KEY\x01U1\x02", 7, 100);
        let second = record("T", b"two", b"TAGS\x01B\x02", 8, 200);
        buf.extend_from_slice(&second);
        buf.extend_from_slice(&[1, 2, 3]); // trailing garbage is ignored
        let body = Bytes::from(buf);
        let msgs = decode_messages(&body, "b0");
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].body[..], b"one");
        assert_eq!(msgs[0].msg_id, "U1");
        assert_eq!(
            (
                msgs[0].queue_id,
                msgs[0].queue_offset,
                msgs[0].commit_log_offset
            ),
            (1, 7, 100)
        );
        assert_eq!(msgs[1].msg_id, msgs[1].offset_msg_id);
        assert_eq!(msgs[1].offset_msg_id, "7F00000100002A9F00000000000000C8");
        assert_eq!(msgs[1].tags(), Some("B"));
        let sub = Subscription::new("T", "A || C");
        assert_eq!(sub.tags, vec!["A", "C"]);
        assert!(sub.matches(&msgs[0]));
        assert!(!sub.matches(&msgs[1]));
        assert!(Subscription::new("T", " * ").matches(&msgs[1]));
        assert_eq!(sub.to_data().code_set, vec![java_hash("A"), java_hash("C")]);
    }
}
