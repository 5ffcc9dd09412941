//! Sends transactional messages with rocketmq-client-rust's `TransactionMQProducer` and answers
//! the broker's checks, as the spec file says; writes one JSON document to `--out`.
//!
//! Usage: `ramjet-interop-rust-rmq transaction|roundtrip|request|admin --namesrv ADDR --spec FILE
//!         --out FILE --deadline-s S [--log-dir DIR]` (the arguments `tests/src/interop.rs`
//! passes to every interop client).
//!
//! `roundtrip`: a `DefaultMQPushConsumer` (clustering, from the first offset) subscribes to
//! the topic, a `DefaultMQProducer` sends the spec's messages (sync; `delay_level` sets
//! `DELAY`, `delay_ms` / `deliver_in_ms` the 5.x timer), and the consumer answers RECONSUME_LATER to the first delivery of each body in
//! `fail_first` (the client then sends it back with CONSUMER_SEND_MSG_BACK and gets it again
//! from `%RETRY%<group>`). With `"sql"`, the consumer subscribes with that SQL92 selector
//! and messages carry their `"props"`. Collects deliveries until `expected` arrived plus `quiet_ms`, or
//! the deadline. Spec: `{"topic", "group", "producer_group", "expected", "quiet_ms",
//! "fail_first": [..], "messages": [{"body", "tags", "delay_level", "delay_ms", "deliver_in_ms"}]}`. Output:
//! `{"sends": [{"body", "ok", "error", "result"}], "deliveries": [{"body", "topic",
//! "queue_id", "queue_offset", "reconsume_times", "msg_id", "tags", "delayed_ms"}]}`.
//!
//! `request`: request-reply. A `DefaultMQPushConsumer` (the replier) subscribes to the topic
//! and answers each request with a reply built as the client's `MessageUtil.createReplyMessage`
//! does (topic `<CLUSTER>_REPLY_TOPIC`, `MSG_TYPE` reply, the request's `REPLY_TO_CLIENT`,
//! `CORRELATION_ID` and `TTL`), body `re:<request body>`, sent by a second producer (which
//! the client sends as SEND_REPLY_MESSAGE_V2) one second after the request came (the
//! client's request future loses a reply that arrives before it waits; see `request`). A `DefaultMQProducer` sends each body with
//! `request(msg, timeout_ms)` and waits for its reply. Spec: `{"topic", "group",
//! "producer_group", "timeout_ms", "bodies": [..]}`. Output: `{"requests": [{"body", "ok",
//! "reply_body", "reply_topic", "correlation_id", "error"}], "replies": [{"for", "ok",
//! "error"}]}`.
//!
//! `admin`: a `DefaultMQAdminExt` asks one broker (`broker_addr`) for `examine_topic_stats`
//! (GET_TOPIC_STATS_INFO), `examine_consume_stats` (GET_CONSUME_STATS) and
//! `examine_consumer_connection_info` (GET_CONSUMER_CONNECTION_LIST) as `mqadmin
//! topicStatus / consumerProgress / consumerConnection` do, after creating the group with
//! `create_and_update_subscription_group_config` (retryMaxTimes 5, `mqadmin updateSubGroup`)
//! and reading it back with `examine_subscription_group_config`. Spec: `{"topic", "group",
//! "broker_addr"}`. Output: `{"topic_stats", "consume_stats", "connection",
//! "group_created", "group_config"}`, each
//! `{"ok": <the client's parsed value, serialized>}` or `{"error": "..."}`.
//!
//! `transaction` spec: `{"topic": "...", "group": "...", "linger_ms": 8000,
//!         "messages": [{"body": "...", "tags": "...", "local": "commit|rollback|unknown",
//!                       "check": "commit|rollback|unknown"}]}`
//! `local` is what the local transaction returns at send time; `check` what the checker
//! answers when the broker asks later. After the sends the producer stays up for `linger_ms`
//! (or until every message whose local state was unknown has been checked and answered with
//! something other than unknown), then shuts down.
//!
//! Output: `{"sends": [{"body", "ok", "error", "state", "msg_id", "offset_msg_id",
//!           "queue_offset", "transaction_id"}], "checks": {"<body>": n}}`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cheetah_string::CheetahString;
use parking_lot::Mutex;
use rocketmq_client_rust::{AclClientRPCHook, SessionCredentials};
use rocketmq_client_rust::{
    BrokerAdmin, ConsumerAdmin, DefaultMQAdminExt, OffsetAdmin, TopicAdmin,
};
use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, LocalTransactionState,
    MQPushConsumer, MessageListenerConcurrently, MessageSelector, TransactionListener,
    TransactionMQProducer,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_builder::MessageBuilder;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::common::message::MessageTrait;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use serde::Deserialize;

#[derive(Deserialize, Clone)]
struct Item {
    body: String,
    #[serde(default)]
    tags: String,
    local: String,
    #[serde(default)]
    check: String,
}

#[derive(Deserialize)]
struct Spec {
    topic: String,
    group: String,
    linger_ms: u64,
    messages: Vec<Item>,
}

fn state(s: &str) -> LocalTransactionState {
    match s {
        "commit" => LocalTransactionState::CommitMessage,
        "rollback" => LocalTransactionState::RollbackMessage,
        _ => LocalTransactionState::Unknown,
    }
}

fn body_of(msg: &dyn MessageTrait) -> String {
    msg.get_body()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

struct Listener {
    plan: HashMap<String, Item>,
    checks: Arc<Mutex<HashMap<String, u32>>>,
    answered: Arc<Mutex<HashMap<String, String>>>,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> LocalTransactionState {
        let body = body_of(msg);
        self.plan
            .get(&body)
            .map_or(LocalTransactionState::Unknown, |i| state(&i.local))
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let body = body_of(msg);
        *self.checks.lock().entry(body.clone()).or_default() += 1;
        let answer = self
            .plan
            .get(&body)
            .map(|i| i.check.clone())
            .unwrap_or_default();
        if answer == "commit" || answer == "rollback" {
            self.answered.lock().insert(body, answer.clone());
        }
        state(&answer)
    }
}

/// One send's entry in the output: its result, or its error.
fn send_outcome<T: serde::Serialize, E: std::fmt::Display>(
    body: &str,
    r: Result<T, E>,
) -> serde_json::Value {
    match r {
        Ok(r) => {
            let v = serde_json::to_value(&r).unwrap_or_default();
            serde_json::json!({"body": body, "ok": true, "result": v})
        }
        Err(e) => serde_json::json!({"body": body, "ok": false, "error": e.to_string()}),
    }
}

fn arg(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("missing {name}"));
    args[i + 1].clone()
}

/// A message of `topic` with `body`, tagged `tags` unless empty.
fn message(topic: &str, body: &str, tags: &str) -> MessageBuilder {
    let b = Message::builder().topic(topic).body_slice(body.as_bytes());
    if tags.is_empty() {
        b
    } else {
        b.tags(tags)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = arg(&args, "--out");
    let namesrv = arg(&args, "--namesrv");
    let deadline_s: f64 = arg(&args, "--deadline-s").parse().expect("--deadline-s");
    let spec = std::fs::read(arg(&args, "--spec")).unwrap();
    let owner = RuntimeOwner::plan(RuntimeConfig {
        thread_name: "ramjet-interop".into(),
        ..Default::default()
    })
    .expect("runtime configuration")
    .build()
    .expect("runtime");
    let telemetry = rocketmq_observability::install_global(
        &rocketmq_observability::TelemetryBootstrapConfig::default(),
    )
    .expect("telemetry");
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        telemetry.handle(),
    )
    .expect("client runtime");
    let doc = match args.get(1).map(String::as_str) {
        Some("transaction") => {
            transaction(
                runtime.clone(),
                serde_json::from_slice(&spec).unwrap(),
                namesrv,
                deadline_s,
            )
            .await
        }
        Some("roundtrip") => {
            roundtrip(
                runtime.clone(),
                serde_json::from_slice(&spec).unwrap(),
                namesrv,
                deadline_s,
            )
            .await
        }
        Some("request") => {
            request(
                runtime.clone(),
                serde_json::from_slice(&spec).unwrap(),
                namesrv,
                deadline_s,
            )
            .await
        }
        Some("admin") => {
            admin(
                runtime.clone(),
                serde_json::from_slice(&spec).unwrap(),
                namesrv,
            )
            .await
        }
        other => panic!("unknown command {other:?}: transaction, roundtrip, request or admin"),
    };
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let _ = runtime.shutdown().await;
    std::process::exit(0);
}

async fn transaction(
    runtime: Arc<ClientRuntime>,
    spec: Spec,
    namesrv: String,
    deadline_s: f64,
) -> serde_json::Value {
    let checks = Arc::new(Mutex::new(HashMap::new()));
    let answered = Arc::new(Mutex::new(HashMap::new()));
    let listener = Listener {
        plan: spec
            .messages
            .iter()
            .map(|i| (i.body.clone(), i.clone()))
            .collect(),
        checks: checks.clone(),
        answered: answered.clone(),
    };
    let mut producer = TransactionMQProducer::builder(runtime.clone())
        .producer_group(spec.group.clone())
        .name_server_addr(namesrv)
        .topics(vec![spec.topic.clone()])
        .transaction_listener(listener)
        .build();
    producer.start().await.expect("producer start");
    let mut sends = Vec::new();
    for item in &spec.messages {
        let msg = message(&spec.topic, &item.body, &item.tags).build_unchecked();
        let r = producer
            .send_message_in_transaction::<(), _>(msg, None)
            .await;
        sends.push(send_outcome(&item.body, r));
    }
    let waiting: Vec<String> = spec
        .messages
        .iter()
        .filter(|i| i.local == "unknown" && (i.check == "commit" || i.check == "rollback"))
        .map(|i| i.body.clone())
        .collect();
    let linger = Duration::from_millis(spec.linger_ms).min(Duration::from_secs_f64(deadline_s));
    let deadline = Instant::now() + linger;
    while Instant::now() < deadline {
        if waiting.iter().all(|b| answered.lock().contains_key(b)) {
            // Let the last answers leave the socket.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doc = serde_json::json!({
        "sends": sends,
        "checks": *checks.lock(),
    });
    producer.shutdown().await;
    doc
}

#[derive(Deserialize)]
struct RoundtripItem {
    body: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    delay_level: i32,
    /// 5.x timer: `delay_millis` (TIMER_DELAY_MS).
    #[serde(default)]
    delay_ms: u64,
    /// 5.x timer: `deliver_time_ms` (TIMER_DELIVER_MS) this many ms after the send.
    #[serde(default)]
    deliver_in_ms: u64,
    #[serde(default)]
    props: HashMap<String, String>,
    /// Recall it after the sends (RECALL_MESSAGE with its send result's recall handle).
    #[serde(default)]
    recall: bool,
}

#[derive(Deserialize)]
struct RoundtripSpec {
    topic: String,
    group: String,
    producer_group: String,
    expected: usize,
    quiet_ms: u64,
    #[serde(default)]
    fail_first: Vec<String>,
    /// Subscribe with this SQL92 selector instead of `*`.
    #[serde(default)]
    sql: Option<String>,
    /// After the deliveries, ask the broker for the consumer's running info
    /// (GET_CONSUMER_RUNNING_INFO, which the broker passes to the consumer).
    #[serde(default)]
    running_info: bool,
    /// ACL: producer and consumer sign every request with these keys (`AclClientRPCHook`).
    #[serde(default)]
    access_key: Option<String>,
    #[serde(default)]
    secret_key: Option<String>,
    /// `false`: the broker divides the queues (QUERY_ASSIGNMENT); with the group's mode set
    /// to POP there, the consumer pops (RocketMQ 5's pop consumer).
    #[serde(default)]
    client_rebalance: Option<bool>,
    /// The pop consumer's invisible time, ms.
    #[serde(default)]
    pop_invisible_ms: Option<u64>,
    messages: Vec<RoundtripItem>,
}

struct Collector {
    fail_first: Mutex<HashMap<String, bool>>,
    deliveries: Arc<Mutex<Vec<serde_json::Value>>>,
    sent_at: Arc<Mutex<HashMap<String, Instant>>>,
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut later = false;
        for m in msgs {
            let body = body_of(*m);
            let delayed_ms = self
                .sent_at
                .lock()
                .get(&body)
                .map(|t| t.elapsed().as_millis() as u64);
            self.deliveries.lock().push(serde_json::json!({
                "body": body,
                "topic": m.topic().as_str(),
                "queue_id": m.queue_id(),
                "queue_offset": m.queue_offset(),
                "reconsume_times": m.reconsume_times(),
                "msg_id": m.msg_id().as_str(),
                "tags": m.property(&"TAGS".into()).map(|t| t.to_string()),
                "delayed_ms": delayed_ms,
            }));
            if let Some(first) = self.fail_first.lock().get_mut(&body) {
                if *first {
                    *first = false;
                    later = true;
                }
            }
        }
        Ok(if later {
            ConsumeConcurrentlyStatus::ReconsumeLater
        } else {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

async fn roundtrip(
    runtime: Arc<ClientRuntime>,
    spec: RoundtripSpec,
    namesrv: String,
    deadline_s: f64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs_f64(deadline_s);
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let sent_at = Arc::new(Mutex::new(HashMap::new()));
    let hook: Option<Arc<AclClientRPCHook>> = match (&spec.access_key, &spec.secret_key) {
        (Some(ak), Some(sk)) => Some(Arc::new(AclClientRPCHook::new(
            SessionCredentials::with_keys(ak.as_str(), sk.as_str()),
        ))),
        _ => None,
    };
    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(spec.group.clone())
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        // Each message its own consume call: a RECONSUME_LATER sends back only that one.
        .consume_message_batch_max_size(1);
    if let Some(r) = spec.client_rebalance {
        consumer = consumer.client_rebalance(r);
    }
    if let Some(ms) = spec.pop_invisible_ms {
        consumer = consumer.pop_invisible_time(ms);
    }
    if let Some(h) = &hook {
        consumer = consumer.rpc_hook(Some(h.clone()));
    }
    let mut consumer = consumer.build();
    match &spec.sql {
        Some(sql) => consumer
            .subscribe_with_selector(
                spec.topic.as_str(),
                Some(MessageSelector::by_sql(sql.as_str())),
            )
            .await
            .expect("subscribe with a SQL92 selector"),
        None => consumer
            .subscribe(spec.topic.as_str(), "*")
            .await
            .expect("subscribe"),
    }
    consumer.register_message_listener_concurrently(Collector {
        fail_first: Mutex::new(spec.fail_first.iter().map(|b| (b.clone(), true)).collect()),
        deliveries: deliveries.clone(),
        sent_at: sent_at.clone(),
    });
    consumer.start().await.expect("consumer start");
    let namesrv_admin = namesrv.clone();
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(spec.producer_group.clone())
        .name_server_addr(namesrv);
    if let Some(h) = hook {
        producer = producer.rpc_hook(h);
    }
    let mut producer = producer.build();
    producer.start().await.expect("producer start");
    let mut sends = Vec::new();
    let mut to_recall = Vec::new();
    for item in &spec.messages {
        let mut b = message(&spec.topic, &item.body, &item.tags);
        if item.delay_level > 0 {
            b = b.delay_level(item.delay_level);
        }
        if item.delay_ms > 0 {
            b = b.delay_millis(item.delay_ms);
        }
        if item.deliver_in_ms > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis() as u64;
            b = b.deliver_time_ms(now + item.deliver_in_ms);
        }
        let mut props: Vec<_> = item.props.iter().collect();
        props.sort();
        for (k, v) in props {
            b = b
                .raw_property(k.as_str(), v.as_str())
                .expect("user property");
        }
        sent_at.lock().insert(item.body.clone(), Instant::now());
        let r = producer.send(b.build_unchecked()).await;
        if item.recall {
            if let Ok(Some(sent)) = &r {
                to_recall.push((item.body.clone(), sent.recall_handle.clone()));
            }
        }
        sends.push(send_outcome(&item.body, r));
    }
    let mut recalls = Vec::new();
    for (body, handle) in to_recall {
        let r = match handle {
            Some(h) => producer
                .recall_message(spec.topic.as_str(), h.as_str())
                .await
                .map_err(|e| e.to_string()),
            None => Err("the send's result carries no recall handle".to_string()),
        };
        recalls.push(send_outcome(&body, r));
    }
    let mut complete_at: Option<Instant> = None;
    while Instant::now() < deadline {
        let n = deliveries.lock().len();
        if n >= spec.expected {
            let t = *complete_at.get_or_insert_with(Instant::now);
            if t.elapsed() >= Duration::from_millis(spec.quiet_ms) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running_info = if spec.running_info {
        let mut a = DefaultMQAdminExt::new(runtime.clone());
        a.set_namesrv_addr(namesrv_admin.as_str());
        a.start().await.expect("admin start");
        let group = CheetahString::from(spec.group.as_str());
        let r = async {
            let conn =
                ConsumerAdmin::examine_consumer_connection_info(&a, group.clone(), None).await?;
            let client_id = conn
                .get_connection_set()
                .iter()
                .next()
                .map(|c| c.get_client_id())
                .unwrap_or_default();
            ConsumerAdmin::get_consumer_running_info(&a, group, client_id, false, None).await
        }
        .await;
        outcome(r)
    } else {
        serde_json::Value::Null
    };
    let doc = serde_json::json!({
        "sends": sends,
        "deliveries": *deliveries.lock(),
        "running_info": running_info,
        "recalls": recalls,
    });
    producer.shutdown().await;
    consumer.shutdown().await;
    doc
}

#[derive(Deserialize)]
struct AdminSpec {
    topic: String,
    group: String,
    broker_addr: String,
}

/// The client's parsed answer, serialized, or its error.
fn outcome<T: serde::Serialize>(r: ClientResult<T>) -> serde_json::Value {
    match r {
        Ok(v) => serde_json::json!({ "ok": serde_json::to_value(&v).unwrap() }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

async fn admin(runtime: Arc<ClientRuntime>, spec: AdminSpec, namesrv: String) -> serde_json::Value {
    let mut a = DefaultMQAdminExt::new(runtime);
    a.set_namesrv_addr(namesrv.as_str());
    a.start().await.expect("admin start");
    let addr = Some(CheetahString::from(spec.broker_addr.as_str()));
    let topic = CheetahString::from(spec.topic.as_str());
    let group = CheetahString::from(spec.group.as_str());
    // `mqadmin updateSubGroup` with retryMaxTimes 5, then read back.
    let config = serde_json::from_value(serde_json::json!({
        "groupName": spec.group,
        "consumeEnable": true,
        "consumeBroadcastEnable": true,
        "retryQueueNums": 1,
        "retryMaxTimes": 5,
    }))
    .expect("SubscriptionGroupConfig");
    let group_created = ConsumerAdmin::create_and_update_subscription_group_config(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        config,
    )
    .await;
    let group_config = ConsumerAdmin::examine_subscription_group_config(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        group.clone(),
    )
    .await;
    let topic_stats = TopicAdmin::examine_topic_stats(&a, topic.clone(), addr.clone()).await;
    let consume_stats = ConsumerAdmin::examine_consume_stats(
        &a,
        group.clone(),
        Some(topic.clone()),
        None,
        addr.clone(),
        None,
    )
    .await;
    let connection =
        ConsumerAdmin::examine_consumer_connection_info(&a, group.clone(), addr.clone()).await;
    // The broker's own views (before the resets below move the offsets): `mqadmin
    // topicList -c` style config, queryCq, the system topics, brokerConsumeStats and the
    // group's subscription; then the 5.x list form of topic creation.
    let topic_config = TopicAdmin::examine_topic_config(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        topic.clone(),
    )
    .await;
    let consume_queue = ConsumerAdmin::query_consume_queue(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        topic.clone(),
        0,
        1,
        3,
        group.clone(),
    )
    .await;
    let system_topics = TopicAdmin::get_system_topic_list_from_broker(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
    )
    .await;
    let broker_consume_stats = ConsumerAdmin::fetch_consume_stats_in_broker(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        false,
        5_000,
    )
    .await
    .map(|l| {
        serde_json::json!({
            "brokerAddr": l.broker_addr.map(|a| a.to_string()),
            "totalDiff": l.total_diff,
            "groups": l.consume_stats_list.iter().flat_map(|m| m.iter().map(|(g, stats)| {
                serde_json::json!({
                    "group": g.as_str(),
                    "topics": stats.len(),
                    "diff": stats.iter().map(|s| s.compute_total_diff()).sum::<i64>(),
                })
            })).collect::<Vec<_>>(),
        })
    });
    let subscription = ConsumerAdmin::query_subscription(&a, group.clone(), topic.clone()).await;
    let topic_list = TopicAdmin::create_and_update_topic_config_list(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        ["a", "b"]
            .iter()
            .map(|s| {
                serde_json::from_value(serde_json::json!({
                    "topicName": format!("{}_list_{s}", spec.topic),
                    "readQueueNums": 3,
                    "writeQueueNums": 3,
                    "perm": 6,
                    "topicFilterType": "SINGLE_TAG",
                    "topicSysFlag": 0,
                    "order": false,
                    "attributes": {},
                }))
                .expect("TopicConfig")
            })
            .collect(),
    )
    .await;
    // `mqadmin resetOffsetByTime -s 0`, then queue 1 alone to offset 2.
    // Its table is keyed by MessageQueue: keyed here by the queue's JSON text, as the
    // stats tables serialize.
    let reset_by_time =
        OffsetAdmin::reset_offset_by_timestamp(&a, None, topic.clone(), group.clone(), 0, true)
            .await
            .map(|t| {
                t.into_iter()
                    .map(|(mq, o)| (serde_json::to_string(&mq).unwrap(), o))
                    .collect::<std::collections::BTreeMap<String, u64>>()
            });
    let reset_queue = OffsetAdmin::reset_offset_by_queue_id(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        group,
        topic,
        1,
        2,
    )
    .await;
    // The lookups and the list form of group creation, then the group's offsets copied.
    let producers = ConsumerAdmin::examine_producer_connection_info(
        &a,
        CheetahString::from(format!("{}_pg", spec.group)),
        CheetahString::from(spec.topic.as_str()),
    )
    .await;
    let configs = [3, 4]
        .iter()
        .map(|retries| {
            serde_json::from_value(serde_json::json!({
                "groupName": format!("{}_l{retries}", spec.group),
                "consumeEnable": true,
                "retryQueueNums": 1,
                "retryMaxTimes": retries,
            }))
            .expect("SubscriptionGroupConfig")
        })
        .collect();
    let group_list = ConsumerAdmin::create_and_update_subscription_group_config_list(
        &a,
        CheetahString::from(spec.broker_addr.as_str()),
        configs,
    )
    .await;
    let clone = OffsetAdmin::clone_group_offset(
        &a,
        CheetahString::from(spec.group.as_str()),
        CheetahString::from(format!("{}_clone", spec.group)),
        CheetahString::from(spec.topic.as_str()),
        true,
    )
    .await;
    let consumed_by =
        TopicAdmin::query_topic_consume_by_who(&a, CheetahString::from(spec.topic.as_str())).await;
    let topics_of =
        TopicAdmin::query_topics_by_consumer(&a, CheetahString::from(spec.group.as_str())).await;
    // `mqadmin getBrokerConfig`.
    let broker_config =
        BrokerAdmin::get_broker_config(&a, CheetahString::from(spec.broker_addr.as_str()))
            .await
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<std::collections::BTreeMap<String, String>>()
            });
    serde_json::json!({
        "topic_config": outcome(topic_config),
        "consume_queue": outcome(consume_queue),
        "system_topics": outcome(system_topics),
        "broker_consume_stats": outcome(broker_consume_stats),
        "subscription": outcome(subscription),
        "topic_list": outcome(topic_list),
        "broker_config": outcome(broker_config),
        "producers": outcome(producers),
        "group_list": outcome(group_list),
        "clone": outcome(clone),
        "consumed_by": outcome(consumed_by),
        "topics_of": outcome(topics_of),
        "reset_by_time": outcome(reset_by_time),
        "reset_queue": outcome(reset_queue),
        "topic_stats": outcome(topic_stats),
        "consume_stats": outcome(consume_stats),
        "connection": outcome(connection),
        "group_created": outcome(group_created),
        "group_config": outcome(group_config),
    })
}

#[derive(Deserialize)]
struct RequestSpec {
    topic: String,
    group: String,
    producer_group: String,
    timeout_ms: u64,
    bodies: Vec<String>,
}

/// Passes each delivered request on to the task that replies.
struct Replier {
    tx: tokio::sync::mpsc::UnboundedSender<MessageExt>,
}

impl MessageListenerConcurrently for Replier {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            let _ = self.tx.send((*m).clone());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// The reply to `req` (what the client's MessageUtil.createReplyMessage builds).
fn reply_to(req: &MessageExt, body: &str) -> Result<Message, String> {
    let prop = |name: &str| req.property(&CheetahString::from(name));
    let cluster = prop("CLUSTER").ok_or("the request carries no CLUSTER property")?;
    let mut reply = Message::builder()
        .topic(rocketmq_model::common::mix_all::get_reply_topic(
            cluster.as_str(),
        ))
        .body_slice(body.as_bytes())
        .build_unchecked();
    reply.put_property("MSG_TYPE".into(), "reply".into());
    for name in ["REPLY_TO_CLIENT", "CORRELATION_ID", "TTL"] {
        if let Some(v) = prop(name) {
            reply.put_property(name.into(), v);
        }
    }
    Ok(reply)
}

async fn request(
    runtime: Arc<ClientRuntime>,
    spec: RequestSpec,
    namesrv: String,
    deadline_s: f64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs_f64(deadline_s);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<MessageExt>();
    let mut consumer = DefaultMQPushConsumer::builder(runtime.clone())
        .consumer_group(spec.group.clone())
        .name_server_addr(namesrv.clone())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    consumer
        .subscribe(spec.topic.as_str(), "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(Replier { tx });
    consumer.start().await.expect("consumer start");
    let mut replier = DefaultMQProducer::builder(runtime.clone())
        .producer_group(format!("{}_replier", spec.producer_group))
        .name_server_addr(namesrv.clone())
        .build();
    replier.start().await.expect("replier start");
    let replies = Arc::new(Mutex::new(Vec::new()));
    let replied = replies.clone();
    let reply_task = tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            // rocketmq-client-rust 1.0.0's RequestResponseFuture wakes its waiter with
            // `Notify::notify_waiters`, which keeps no permit: a reply that arrives before
            // `request` starts waiting (the broker pushes it at once) is stored but never
            // seen, and the request times out. Replying a second later keeps the requester
            // clear of that race; the broker's side is what this measures, not the delay.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let body = body_of(&req);
            let r = match reply_to(&req, &format!("re:{body}")) {
                Ok(m) => replier.send(m).await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            replied.lock().push(match r {
                Ok(_) => serde_json::json!({ "for": body, "ok": true }),
                Err(e) => serde_json::json!({ "for": body, "ok": false, "error": e }),
            });
        }
        replier.shutdown().await;
    });
    let mut producer = DefaultMQProducer::builder(runtime.clone())
        .producer_group(spec.producer_group.clone())
        .name_server_addr(namesrv)
        .build();
    producer.start().await.expect("producer start");
    let mut requests = Vec::new();
    for body in &spec.bodies {
        if Instant::now() >= deadline {
            requests.push(serde_json::json!({ "body": body, "ok": false, "error": "deadline" }));
            continue;
        }
        let msg = message(&spec.topic, body, "").build_unchecked();
        requests.push(match producer.request(msg, spec.timeout_ms).await {
            Ok(reply) => serde_json::json!({
                "body": body,
                "ok": true,
                "reply_body": body_of(reply.as_ref()),
                "reply_topic": reply.topic().as_str(),
                "correlation_id": reply
                    .property(&CheetahString::from("CORRELATION_ID"))
                    .map(|v| v.to_string()),
            }),
            Err(e) => serde_json::json!({ "body": body, "ok": false, "error": e.to_string() }),
        });
    }
    producer.shutdown().await;
    consumer.shutdown().await;
    reply_task.abort();
    let doc = serde_json::json!({
        "requests": requests,
        "replies": *replies.lock(),
    });
    doc
}
