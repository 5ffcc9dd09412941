//! A tiny in-memory name server + broker speaking the remoting protocol, for tests of the
//! client, the CLI and ramjet-bench without a real broker. Plain std threads (one per
//! connection; held pulls get their own), so it runs beside any executor.
//!
//! It answers: GET_ROUTEINFO_BY_TOPIC (route pointing at itself), GET_BROKER_CLUSTER_INFO,
//! GET_ALL_TOPIC_LIST_FROM_NAMESERVER, UPDATE_AND_CREATE_TOPIC, DELETE_TOPIC_IN_BROKER/NAMESRV,
//! SEND_MESSAGE(_V2), SEND_BATCH_MESSAGE, PULL_MESSAGE (with long polling), GET_MAX/MIN_OFFSET,
//! SEARCH_OFFSET_BY_TIMESTAMP, QUERY/UPDATE_CONSUMER_OFFSET, HEART_BEAT,
//! GET_CONSUMER_LIST_BY_GROUP, UNREGISTER_CLIENT, CONSUMER_SEND_MSG_BACK.
//! `stall_at_send`: the Nth send makes the whole server pause `stall` once (a broker hiccup).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ramjet_core::record::{encode_record, MessageToStore};
use ramjet_core::remoting::body::{
    self, BrokerData, ClusterInfo, ConsumerListBody, HeartbeatData, QueueData, TopicList,
    TopicRouteData,
};
use ramjet_core::remoting::headers::SendMessageRequestHeader;
use ramjet_core::remoting::{
    decode_command, CodecLimits, CommandView, RemotingCommand, RequestCode, ResponseCode,
    SerializeType,
};

/// Mock behaviour.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub broker_name: String,
    pub cluster: String,
    /// Queues of topics that are created implicitly on first use.
    pub default_queues: i32,
    /// Topics that exist from the start (others exist once sent to or created).
    pub auto_create: bool,
    /// The Nth send (1-based) pauses the server for `stall`.
    pub stall_at_send: Option<u64>,
    pub stall: Duration,
    /// Other brokers (name, address) to list in routes beside this one, same queue count.
    pub peers: Vec<(String, String)>,
    /// Answer every send with SYSTEM_BUSY (a failing broker).
    pub fail_sends: bool,
    /// Keep sent messages for pulls and [`MockBroker::bodies`]. `false` (a no-op server, as
    /// `bench/examples/mock_floor` runs it): sends are answered with offsets and message ids
    /// as usual, but nothing is encoded or stored.
    pub keep_messages: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            broker_name: "mock-s0".into(),
            cluster: "MockCluster".into(),
            default_queues: 4,
            auto_create: true,
            stall_at_send: None,
            stall: Duration::ZERO,
            peers: Vec::new(),
            fail_sends: false,
            keep_messages: true,
        }
    }
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, i32>,
    /// (topic, queue) -> stored records.
    queues: HashMap<(String, i32), Vec<Vec<u8>>>,
    /// (topic, queue) -> next offset, when messages are not kept.
    sent: HashMap<(String, i32), i64>,
    phys: i64,
    offsets: HashMap<(String, String, i32), i64>,
    consumers: BTreeMap<String, BTreeSet<String>>,
    paused_until: Option<Instant>,
}

struct Shared {
    cfg: MockConfig,
    addr: SocketAddr,
    state: Mutex<State>,
    sends: AtomicU64,
    route_queries: AtomicU64,
    /// Routes leave out `cfg.peers` (a name server that dropped them).
    hide_peers: Arc<AtomicBool>,
    messages: AtomicU64,
    /// Requests received with JSON headers and with binary (ROCKETMQ) headers.
    json_requests: AtomicU64,
    binary_requests: AtomicU64,
    stop: AtomicBool,
}

/// A running mock; stops accepting when dropped.
pub struct MockBroker {
    shared: Arc<Shared>,
}

impl MockBroker {
    /// Bind 127.0.0.1 on a free port and serve in background threads.
    pub fn start(cfg: MockConfig) -> std::io::Result<MockBroker> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            addr,
            state: Mutex::new(State::default()),
            sends: AtomicU64::new(0),
            route_queries: AtomicU64::new(0),
            hide_peers: Arc::new(AtomicBool::new(false)),
            messages: AtomicU64::new(0),
            json_requests: AtomicU64::new(0),
            binary_requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s2 = s.clone();
                std::thread::spawn(move || serve(s2, conn));
            }
        });
        Ok(MockBroker { shared })
    }

    /// `127.0.0.1:port`, usable as name server and broker address.
    pub fn addr(&self) -> String {
        self.shared.addr.to_string()
    }

    /// Send requests answered so far.
    pub fn sends(&self) -> u64 {
        self.shared.sends.load(Ordering::Relaxed)
    }

    /// Requests received so far as (JSON headers, binary headers).
    pub fn requests_by_serialize_type(&self) -> (u64, u64) {
        (
            self.shared.json_requests.load(Ordering::Relaxed),
            self.shared.binary_requests.load(Ordering::Relaxed),
        )
    }

    /// Route queries (GET_ROUTEINFO_BY_TOPIC) answered so far.
    pub fn route_queries(&self) -> u64 {
        self.shared.route_queries.load(Ordering::Relaxed)
    }

    /// While the returned flag is true, routes leave out the configured peers (as if the
    /// name server had dropped them). Settable from any thread.
    pub fn hide_peers(&self) -> Arc<AtomicBool> {
        self.shared.hide_peers.clone()
    }

    /// Messages stored so far (batches count each message).
    pub fn messages(&self) -> u64 {
        self.shared.messages.load(Ordering::Relaxed)
    }

    /// Stored bodies of one queue, in offset order.
    pub fn bodies(&self, topic: &str, queue: i32) -> Vec<Vec<u8>> {
        let st = lock(&self.shared.state);
        st.queues
            .get(&(topic.to_string(), queue))
            .map(|v| {
                v.iter()
                    .filter_map(|r| {
                        ramjet_core::record::RecordView::parse(r)
                            .ok()
                            .map(|v| v.body().to_vec())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Committed offset of a group.
    pub fn committed(&self, group: &str, topic: &str, queue: i32) -> Option<i64> {
        lock(&self.shared.state)
            .offsets
            .get(&(group.into(), topic.into(), queue))
            .copied()
    }

    /// Create a topic with `queues` queues.
    pub fn create_topic(&self, topic: &str, queues: i32) {
        lock(&self.shared.state)
            .topics
            .insert(topic.to_string(), queues);
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.shared.addr);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bytes read from a connection at a time, and answers gathered before one write.
const CONN_BUFFER_BYTES: usize = 64 * 1024;

/// One connection: requests are read through a buffer and their answers gathered, then written
/// in one call once no whole request is left in the buffer (the next read would wait), so a
/// burst of pipelined sends costs a few system calls instead of three per request. Held pulls
/// answer from their own threads through the same writer. With a read and a write per request
/// the mock saturated one CPU below 280k sends/s, under the e2e row it was a floor for.
fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Mutex::new(writer));
    let mut reader = std::io::BufReader::with_capacity(CONN_BUFFER_BYTES, stream);
    let limits = CodecLimits::client();
    let mut frame = Vec::new();
    let mut out = Vec::with_capacity(CONN_BUFFER_BYTES);
    loop {
        if reader.buffer().len() < 4 || out.len() >= CONN_BUFFER_BYTES {
            // About to wait for the client (or holding a full buffer): answer first.
            flush_answers(&writer, &mut out);
        }
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            return;
        }
        let n = i32::from_be_bytes(len);
        if n < 4 || n as usize > limits.max_frame_bytes {
            return;
        }
        frame.clear();
        frame.resize(n as usize, 0);
        if reader.buffer().len() < frame.len() {
            flush_answers(&writer, &mut out);
        }
        if reader.read_exact(&mut frame).is_err() {
            return;
        }
        let Ok(view) = decode_command(&frame, &limits) else {
            return;
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match view.serialize_type {
            SerializeType::Json => shared.json_requests.fetch_add(1, Ordering::Relaxed),
            SerializeType::RocketMq => shared.binary_requests.fetch_add(1, Ordering::Relaxed),
        };
        if view.code == RequestCode::PULL_MESSAGE {
            let cmd = view.to_owned_command();
            let (s, w) = (shared.clone(), writer.clone());
            std::thread::spawn(move || {
                let resp = pull(&s, &cmd);
                write_resp(&w, &resp);
            });
            continue;
        }
        let resp = handle(&shared, &view);
        // A global pause (the stall) delays every answer while it lasts; answers to earlier
        // requests go out before it.
        let until = lock(&shared.state).paused_until;
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                flush_answers(&writer, &mut out);
                std::thread::sleep(t - now);
            }
        }
        if let Some(resp) = resp {
            if !view.is_oneway() {
                let _ = resp.encode(&mut out);
            }
        }
    }
}

/// Writes the gathered answers, if any.
fn flush_answers(w: &Mutex<TcpStream>, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
    let _ = g.write_all(out);
    out.clear();
}

/// Writes one answer at once (a held pull's, from its own thread).
fn write_resp(w: &Mutex<TcpStream>, resp: &RemotingCommand) {
    let mut out = Vec::new();
    if resp.encode(&mut out).is_ok() {
        flush_answers(w, &mut out);
    }
}

fn ok(view: &CommandView<'_>) -> RemotingCommand {
    RemotingCommand::response_to(view, ResponseCode::SUCCESS)
}

fn err(view: &CommandView<'_>, code: i32, remark: &str) -> RemotingCommand {
    RemotingCommand::response_to(view, code).with_remark(remark)
}

fn ext_i64(view: &CommandView<'_>, k: &str) -> i64 {
    view.ext_get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn handle(shared: &Shared, view: &CommandView<'_>) -> Option<RemotingCommand> {
    let cfg = &shared.cfg;
    let addr = shared.addr.to_string();
    Some(match view.code {
        RequestCode::GET_ROUTEINFO_BY_TOPIC => {
            shared.route_queries.fetch_add(1, Ordering::Relaxed);
            let topic = view.ext_get("topic").unwrap_or("");
            let queues = {
                let mut st = lock(&shared.state);
                match st.topics.get(topic) {
                    Some(q) => Some(*q),
                    None if cfg.auto_create => {
                        st.topics.insert(topic.to_string(), cfg.default_queues);
                        Some(cfg.default_queues)
                    }
                    None => None,
                }
            };
            let Some(q) = queues else {
                return Some(err(
                    view,
                    ResponseCode::TOPIC_NOT_EXIST,
                    &format!("No topic route info in name server for the topic: {topic}"),
                ));
            };
            let mut brokers = vec![(cfg.broker_name.clone(), addr)];
            if !shared.hide_peers.load(Ordering::Relaxed) {
                brokers.extend(cfg.peers.iter().cloned());
            }
            let route = TopicRouteData {
                broker_datas: brokers
                    .iter()
                    .map(|(name, a)| BrokerData {
                        broker_addrs: [(0i64, a.clone())].into_iter().collect(),
                        broker_name: name.clone(),
                        cluster: cfg.cluster.clone(),
                        enable_acting_master: false,
                        zone_name: None,
                    })
                    .collect(),
                filter_server_table: BTreeMap::new(),
                order_topic_conf: None,
                queue_datas: brokers
                    .iter()
                    .map(|(name, _)| QueueData {
                        broker_name: name.clone(),
                        perm: 6,
                        read_queue_nums: q,
                        topic_sys_flag: 0,
                        write_queue_nums: q,
                    })
                    .collect(),
            };
            ok(view).with_body(body::to_vec(&route, body::JsonStyle::Standard).unwrap_or_default())
        }
        RequestCode::GET_BROKER_CLUSTER_INFO => {
            let info = ClusterInfo {
                broker_addr_table: [(
                    cfg.broker_name.clone(),
                    BrokerData {
                        broker_addrs: [(0i64, addr)].into_iter().collect(),
                        broker_name: cfg.broker_name.clone(),
                        cluster: cfg.cluster.clone(),
                        enable_acting_master: false,
                        zone_name: None,
                    },
                )]
                .into_iter()
                .collect(),
                cluster_addr_table: [(
                    cfg.cluster.clone(),
                    [cfg.broker_name.clone()].into_iter().collect(),
                )]
                .into_iter()
                .collect(),
            };
            ok(view).with_body(body::to_vec(&info, body::JsonStyle::Fastjson).unwrap_or_default())
        }
        RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
            let list = TopicList {
                broker_addr: None,
                topic_list: lock(&shared.state).topics.keys().cloned().collect(),
            };
            ok(view).with_body(body::to_vec(&list, body::JsonStyle::Standard).unwrap_or_default())
        }
        RequestCode::UPDATE_AND_CREATE_TOPIC => {
            let topic = view.ext_get("topic").unwrap_or("").to_string();
            let q = ext_i64(view, "writeQueueNums") as i32;
            lock(&shared.state).topics.insert(topic, q);
            ok(view)
        }
        RequestCode::DELETE_TOPIC_IN_BROKER | RequestCode::DELETE_TOPIC_IN_NAMESRV => {
            let topic = view.ext_get("topic").unwrap_or("").to_string();
            let mut st = lock(&shared.state);
            st.topics.remove(&topic);
            st.queues.retain(|(t, _), _| *t != topic);
            ok(view)
        }
        RequestCode::SEND_MESSAGE
        | RequestCode::SEND_MESSAGE_V2
        | RequestCode::SEND_BATCH_MESSAGE => send(shared, view),
        RequestCode::GET_MAX_OFFSET
        | RequestCode::GET_MIN_OFFSET
        | RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => {
            let key = (
                view.ext_get("topic").unwrap_or("").to_string(),
                ext_i64(view, "queueId") as i32,
            );
            let st = lock(&shared.state);
            let max = st.queues.get(&key).map_or(0, |v| v.len() as i64);
            let off = match view.code {
                RequestCode::GET_MAX_OFFSET => max,
                RequestCode::GET_MIN_OFFSET => 0,
                _ => {
                    let ts = ext_i64(view, "timestamp");
                    st.queues
                        .get(&key)
                        .and_then(|v| {
                            v.iter().position(|r| {
                                ramjet_core::record::RecordView::parse(r)
                                    .is_ok_and(|v| v.store_timestamp() >= ts)
                            })
                        })
                        .map_or(max, |p| p as i64)
                }
            };
            ok(view).with_ext("offset", off.to_string())
        }
        RequestCode::QUERY_CONSUMER_OFFSET => {
            let key = (
                view.ext_get("consumerGroup").unwrap_or("").to_string(),
                view.ext_get("topic").unwrap_or("").to_string(),
                ext_i64(view, "queueId") as i32,
            );
            match lock(&shared.state).offsets.get(&key) {
                Some(o) => ok(view).with_ext("offset", o.to_string()),
                None => err(
                    view,
                    ResponseCode::QUERY_NOT_FOUND,
                    "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
                ),
            }
        }
        RequestCode::UPDATE_CONSUMER_OFFSET => {
            let key = (
                view.ext_get("consumerGroup").unwrap_or("").to_string(),
                view.ext_get("topic").unwrap_or("").to_string(),
                ext_i64(view, "queueId") as i32,
            );
            lock(&shared.state)
                .offsets
                .insert(key, ext_i64(view, "commitOffset"));
            ok(view)
        }
        RequestCode::HEART_BEAT => {
            if let Ok(hb) = body::from_slice::<HeartbeatData>(view.body, "HeartbeatData") {
                let mut st = lock(&shared.state);
                for c in hb.consumer_data_set {
                    st.consumers
                        .entry(c.group_name)
                        .or_default()
                        .insert(hb.client_id.clone());
                }
            }
            ok(view)
        }
        RequestCode::UNREGISTER_CLIENT => {
            let id = view.ext_get("clientID").unwrap_or("").to_string();
            if let Some(g) = view.ext_get("consumerGroup") {
                if let Some(set) = lock(&shared.state).consumers.get_mut(g) {
                    set.remove(&id);
                }
            }
            ok(view)
        }
        RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
            let g = view.ext_get("consumerGroup").unwrap_or("");
            let ids: Vec<String> = lock(&shared.state)
                .consumers
                .get(g)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            if ids.is_empty() {
                err(
                    view,
                    ResponseCode::SYSTEM_ERROR,
                    &format!("no consumer for this group, {g}"),
                )
            } else {
                ok(view).with_body(
                    body::to_vec(
                        &ConsumerListBody {
                            consumer_id_list: ids,
                        },
                        body::JsonStyle::Standard,
                    )
                    .unwrap_or_default(),
                )
            }
        }
        RequestCode::CONSUMER_SEND_MSG_BACK => ok(view),
        other => err(
            view,
            ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
            &format!(" request type {other} not supported"),
        ),
    })
}

fn send(shared: &Shared, view: &CommandView<'_>) -> RemotingCommand {
    let Ok(h) = SendMessageRequestHeader::decode(view) else {
        return err(view, ResponseCode::SYSTEM_ERROR, "bad send header");
    };
    let n = shared.sends.fetch_add(1, Ordering::Relaxed) + 1;
    if shared.cfg.fail_sends {
        return err(
            view,
            ResponseCode::SYSTEM_BUSY,
            "[REJECTREQUEST]system busy, start flow control for a while",
        );
    }
    let mut st = lock(&shared.state);
    if shared.cfg.stall_at_send == Some(n) {
        st.paused_until = Some(Instant::now() + shared.cfg.stall);
    }
    let template = st.topics.get(h.default_topic).copied();
    let queues = match st.topics.get(h.topic) {
        Some(q) => *q,
        None if shared.cfg.auto_create => {
            st.topics
                .insert(h.topic.to_string(), shared.cfg.default_queues);
            shared.cfg.default_queues
        }
        None => match template {
            // Broker-side auto-creation from the template topic.
            Some(t) => {
                let q = t.min(h.default_topic_queue_nums.max(1));
                st.topics.insert(h.topic.to_string(), q);
                q
            }
            None => return err(view, ResponseCode::TOPIC_NOT_EXIST, "topic not exist"),
        },
    };
    let qid = if h.queue_id < 0 || h.queue_id >= queues {
        0
    } else {
        h.queue_id
    };
    let mut items: Vec<(&[u8], &[u8], i32)> = Vec::new();
    if view.code == RequestCode::SEND_BATCH_MESSAGE {
        for item in ramjet_core::record::decode_batch(view.body) {
            match item {
                Ok(i) => items.push((i.body, i.properties, i.flag)),
                Err(_) => return err(view, ResponseCode::MESSAGE_ILLEGAL, "bad batch"),
            }
        }
    } else {
        items.push((view.body, h.properties.unwrap_or("").as_bytes(), h.flag));
    }
    let key = (h.topic.to_string(), qid);
    let keep = shared.cfg.keep_messages;
    let first_offset = if keep {
        st.queues.get(&key).map_or(0, |v| v.len() as i64)
    } else {
        let next = st.sent.entry(key.clone()).or_default();
        let first = *next;
        *next += items.len() as i64;
        first
    };
    let now = super::message::now_ms() as i64;
    let store: SocketAddr = shared.addr;
    let mut ids = Vec::new();
    for (i, (body_bytes, props, flag)) in items.iter().enumerate() {
        let m = MessageToStore {
            topic: h.topic,
            queue_id: qid,
            flag: *flag,
            body: body_bytes,
            properties: props,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: store,
            store_host: store,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            tags_code: 0,
        };
        let phys = st.phys;
        if !keep {
            st.phys += m.encoded_len() as i64;
            ids.push(
                ramjet_core::record::offset_msg_id(store, phys)
                    .as_str()
                    .to_string(),
            );
            continue;
        }
        let mut rec = vec![0u8; m.encoded_len()];
        if let Ok(len) = encode_record(&m, first_offset + i as i64, phys, now, &mut rec) {
            rec.truncate(len);
            st.phys += len as i64;
            ids.push(
                ramjet_core::record::offset_msg_id(store, phys)
                    .as_str()
                    .to_string(),
            );
            st.queues.entry(key.clone()).or_default().push(rec);
        }
    }
    shared
        .messages
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    ok(view)
        .with_ext("msgId", ids.join(","))
        .with_ext("queueId", qid.to_string())
        .with_ext("queueOffset", first_offset.to_string())
        .with_ext("MSG_REGION", "DefaultRegion")
}

fn pull(shared: &Shared, cmd: &RemotingCommand) -> RemotingCommand {
    let get = |k: &str| cmd.ext_get(k).unwrap_or("").to_string();
    let num = |k: &str| {
        cmd.ext_get(k)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let key = (get("topic"), num("queueId") as i32);
    let offset = num("queueOffset");
    let max_nums = num("maxMsgNums").clamp(1, 32) as usize;
    let suspend = Duration::from_millis(num("suspendTimeoutMillis").clamp(0, 15_000) as u64);
    if num("sysFlag") & 1 != 0 {
        let k = (get("consumerGroup"), key.0.clone(), key.1);
        lock(&shared.state).offsets.insert(k, num("commitOffset"));
    }
    let deadline = Instant::now() + suspend;
    loop {
        let (max, body) = {
            let st = lock(&shared.state);
            let v = st.queues.get(&key);
            let max = v.map_or(0, |v| v.len() as i64);
            let body: Vec<u8> = if offset >= 0 && offset < max {
                v.map(|v| {
                    v[offset as usize..]
                        .iter()
                        .take(max_nums)
                        .flatten()
                        .copied()
                        .collect()
                })
                .unwrap_or_default()
            } else {
                Vec::new()
            };
            (max, body)
        };
        let resp = |code: i32, next: i64| {
            RemotingCommand::response(code, cmd.opaque, cmd.serialize_type)
                .with_ext("suggestWhichBrokerId", "0")
                .with_ext("nextBeginOffset", next.to_string())
                .with_ext("minOffset", "0")
                .with_ext("maxOffset", max.to_string())
        };
        if offset > max || offset < 0 {
            return resp(ResponseCode::PULL_OFFSET_MOVED, max);
        }
        if !body.is_empty() {
            let n = (max - offset).min(max_nums as i64);
            return resp(ResponseCode::SUCCESS, offset + n).with_body(body);
        }
        if Instant::now() >= deadline || shared.stop.load(Ordering::Relaxed) {
            return resp(ResponseCode::PULL_NOT_FOUND, offset);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
