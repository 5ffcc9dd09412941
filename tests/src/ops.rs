//! Typed RocketMQ operations on top of [`crate::wire::Conn`]: topic creation, route queries,
//! sends (single and batch), pulls, offsets. Stored records in pull bodies are decoded with the
//! project's own codec (`ramjet_core::record`).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ramjet_core::record::{self, properties, RecordView};

use crate::wire::{request, response, Command, Conn, WireError};

/// PullSysFlag bits (spec §3.2).
pub const PULL_FLAG_COMMIT_OFFSET: i32 = 0x1;
pub const PULL_FLAG_SUSPEND: i32 = 0x2;
pub const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;

/// The producer group every test send uses.
pub const PRODUCER_GROUP: &str = "e2e_producer";

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct OutMessage {
    pub body: Vec<u8>,
    pub flag: i32,
    /// Properties in order (TAGS, KEYS and user properties alike).
    pub props: Vec<(String, String)>,
}

impl OutMessage {
    pub fn new(body: Vec<u8>) -> Self {
        OutMessage {
            body,
            flag: 0,
            props: Vec::new(),
        }
    }

    pub fn prop(mut self, name: &str, value: &str) -> Self {
        self.props.push((name.to_string(), value.to_string()));
        self
    }

    /// The RocketMQ properties string.
    pub fn properties(&self) -> Vec<u8> {
        match properties::encode(self.props.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            Ok(p) => p,
            Err(e) => panic!("test message properties do not encode: {e}"),
        }
    }
}

/// Successful send.
#[derive(Debug, Clone)]
pub struct SendOk {
    pub msg_id: String,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// A send's outcome: the broker's response code and, on success, the parsed header.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    Ok(SendOk),
    Refused { code: i32, remark: Option<String> },
}

impl SendOutcome {
    /// The success, or a test failure naming the code.
    pub fn expect_ok(self, what: &str) -> SendOk {
        match self {
            SendOutcome::Ok(ok) => ok,
            SendOutcome::Refused { code, remark } => {
                panic!("{what}: broker refused the send with code {code}: {remark:?}")
            }
        }
    }
}

/// One message decoded from a pull body.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub flag: i32,
    pub sys_flag: i32,
    pub body_crc: u32,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Vec<u8>,
    pub properties: Vec<u8>,
}

impl Pulled {
    pub fn property(&self, name: &str) -> Option<String> {
        properties::get(&self.properties, name).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A pull's outcome.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub code: i32,
    pub remark: Option<String>,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// The broker id the answer suggests for the next pull (0: the master).
    pub suggest_which_broker_id: i64,
    pub messages: Vec<Pulled>,
}

/// Queue data of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueue {
    pub broker_name: String,
    pub read_queue_nums: i64,
    pub write_queue_nums: i64,
    pub perm: i64,
}

/// Broker data of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteBroker {
    pub broker_name: String,
    pub cluster: String,
    /// (broker id, address); id 0 is the master.
    pub addrs: Vec<(i64, String)>,
}

impl RouteBroker {
    pub fn master(&self) -> Option<&str> {
        self.addrs
            .iter()
            .find(|(id, _)| *id == 0)
            .map(|(_, a)| a.as_str())
    }
}

/// A topic route (spec §6.1).
#[derive(Debug, Clone)]
pub struct Route {
    pub queues: Vec<RouteQueue>,
    pub brokers: Vec<RouteBroker>,
    pub raw: String,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Decodes every stored record in a pull body with `ramjet_core::record`, checking each body CRC.
pub fn decode_pull_body(body: &[u8]) -> Result<Vec<Pulled>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let view = RecordView::parse(&body[at..]).map_err(|e| {
            format!(
                "record at byte {at} of a {}-byte pull body: {e}",
                body.len()
            )
        })?;
        view.verify_crc()
            .map_err(|e| format!("record at byte {at}: {e}"))?;
        let size = view.total_size() as usize;
        if size == 0 {
            return Err(format!("record at byte {at} has size 0"));
        }
        out.push(Pulled {
            topic: view.topic().to_string(),
            queue_id: view.queue_id(),
            queue_offset: view.queue_offset(),
            physical_offset: view.physical_offset(),
            flag: view.flag(),
            sys_flag: view.sys_flag(),
            body_crc: view.body_crc(),
            born_timestamp: view.born_timestamp(),
            store_timestamp: view.store_timestamp(),
            store_host: view.store_host(),
            born_host: view.born_host(),
            reconsume_times: view.reconsume_times(),
            prepared_transaction_offset: view.prepared_transaction_offset(),
            body: view.body().to_vec(),
            properties: view.properties().to_vec(),
        });
        at += size;
    }
    Ok(out)
}

/// The CRC RocketMQ stores for a body.
pub fn expected_body_crc(body: &[u8]) -> u32 {
    record::body_crc(body)
}

/// Creates (or updates) a topic on one broker (shard) with `queues` read and write queues.
pub fn create_topic(conn: &mut Conn, topic: &str, queues: u32) -> Result<Command, WireError> {
    conn.call(
        request::UPDATE_AND_CREATE_TOPIC,
        &create_topic_ext(topic, queues),
        &[],
    )
}

/// The UPDATE_AND_CREATE_TOPIC header of [`create_topic`].
pub fn create_topic_ext(topic: &str, queues: u32) -> [(&'static str, String); 8] {
    [
        ("topic", topic.to_string()),
        ("defaultTopic", "TBW102".to_string()),
        ("readQueueNums", queues.to_string()),
        ("writeQueueNums", queues.to_string()),
        ("perm", "6".to_string()),
        ("topicFilterType", "SINGLE_TAG".to_string()),
        ("topicSysFlag", "0".to_string()),
        ("order", "false".to_string()),
    ]
}

/// Fixes fastjson's unquoted integer map keys (`{0:"a"}`) so serde_json can read the text.
pub fn quote_numeric_keys(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            out.push(c as char);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            out.push('"');
            i += 1;
            continue;
        }
        if (c == b'{' || c == b',') && i + 1 < bytes.len() {
            out.push(c as char);
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let start = j;
            if j < bytes.len() && (bytes[j] == b'-' || bytes[j].is_ascii_digit()) {
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                let mut k = j;
                while k < bytes.len() && bytes[k].is_ascii_whitespace() {
                    k += 1;
                }
                if k < bytes.len() && bytes[k] == b':' {
                    out.push('"');
                    out.push_str(&text[start..j]);
                    out.push('"');
                    i = j;
                    continue;
                }
            }
            i += 1;
            continue;
        }
        // Multi-byte UTF-8 outside strings cannot occur in valid JSON; copy bytes through.
        let ch_len = text[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Parses a TopicRouteData JSON body (standard or fastjson-default).
pub fn parse_route(body: &[u8]) -> Result<Route, String> {
    let raw = String::from_utf8_lossy(body).into_owned();
    let value: serde_json::Value = serde_json::from_str(&raw)
        .or_else(|_| serde_json::from_str(&quote_numeric_keys(&raw)))
        .map_err(|e| format!("route body is not JSON ({e}): {raw}"))?;
    let int = |v: &serde_json::Value, k: &str| -> Result<i64, String> {
        v.get(k)
            .and_then(|x| x.as_i64())
            .ok_or_else(|| format!("route field {k} missing in {v}"))
    };
    let string = |v: &serde_json::Value, k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("route field {k} missing in {v}"))
    };
    let mut queues = Vec::new();
    for q in value
        .get("queueDatas")
        .and_then(|v| v.as_array())
        .ok_or("no queueDatas")?
    {
        queues.push(RouteQueue {
            broker_name: string(q, "brokerName")?,
            read_queue_nums: int(q, "readQueueNums")?,
            write_queue_nums: int(q, "writeQueueNums")?,
            perm: int(q, "perm")?,
        });
    }
    let mut brokers = Vec::new();
    for b in value
        .get("brokerDatas")
        .and_then(|v| v.as_array())
        .ok_or("no brokerDatas")?
    {
        let mut addrs = Vec::new();
        for (id, addr) in b
            .get("brokerAddrs")
            .and_then(|v| v.as_object())
            .ok_or("no brokerAddrs")?
        {
            let id: i64 = id.parse().map_err(|e| format!("broker id {id:?}: {e}"))?;
            let addr = addr
                .as_str()
                .ok_or_else(|| format!("broker address {addr} not a string"))?;
            addrs.push((id, addr.to_string()));
        }
        brokers.push(RouteBroker {
            broker_name: string(b, "brokerName")?,
            cluster: string(b, "cluster")?,
            addrs,
        });
    }
    queues.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    Ok(Route {
        queues,
        brokers,
        raw,
    })
}

/// GET_ROUTEINFO_BY_TOPIC. `Ok(None)` when the name server does not know the topic (code 17).
pub fn get_route(conn: &mut Conn, topic: &str) -> Result<Option<Route>, String> {
    let ext = [
        ("topic", topic.to_string()),
        ("acceptStandardJsonOnly", "true".to_string()),
    ];
    let resp = conn
        .call(request::GET_ROUTEINFO_BY_TOPIC, &ext, &[])
        .map_err(|e| e.to_string())?;
    match resp.code {
        response::SUCCESS => parse_route(&resp.body).map(Some),
        response::TOPIC_NOT_EXIST => Ok(None),
        code => Err(format!(
            "route query for {topic} answered code {code}: {:?}",
            resp.remark
        )),
    }
}

/// Polls the name server until the topic's route lists `brokers` broker names, each with at
/// least one queue; bounded by `timeout`.
pub fn wait_route(namesrv: SocketAddr, topic: &str, brokers: usize, timeout: Duration) -> Route {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match Conn::connect(namesrv)
            .map_err(|e| e.to_string())
            .and_then(|mut c| get_route(&mut c, topic))
        {
            Ok(Some(route)) if route.brokers.len() >= brokers && route.queues.len() >= brokers => {
                return route
            }
            Ok(Some(route)) => format!("partial route: {}", route.raw),
            Ok(None) => "TOPIC_NOT_EXIST".to_string(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("name server {namesrv} did not route topic {topic} to {brokers} broker(s) within {timeout:?}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Ext fields of a SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request (one-letter keys).
pub fn send_ext(
    topic: &str,
    queue_id: i32,
    flag: i32,
    props: &[u8],
    batch: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("a", PRODUCER_GROUP.to_string()),
        ("b", topic.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", queue_id.to_string()),
        ("f", "0".to_string()),
        ("g", now_ms().to_string()),
        ("h", flag.to_string()),
        ("i", String::from_utf8_lossy(props).into_owned()),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", batch.to_string()),
    ]
}

fn send_outcome(resp: Command) -> SendOutcome {
    if resp.code != response::SUCCESS {
        return SendOutcome::Refused {
            code: resp.code,
            remark: resp.remark,
        };
    }
    SendOutcome::Ok(SendOk {
        msg_id: resp.ext_str("msgId").to_string(),
        queue_id: resp.ext_i64("queueId") as i32,
        queue_offset: resp.ext_i64("queueOffset"),
    })
}

/// SEND_MESSAGE_V2 to one queue.
pub fn send(
    conn: &mut Conn,
    topic: &str,
    queue_id: i32,
    msg: &OutMessage,
) -> Result<SendOutcome, WireError> {
    let props = msg.properties();
    let ext = send_ext(topic, queue_id, msg.flag, &props, false);
    conn.call(request::SEND_MESSAGE_V2, &ext, &msg.body)
        .map(send_outcome)
}

/// The body of a SEND_BATCH_MESSAGE carrying `msgs` (encoded with `ramjet_core::record`).
pub fn batch_body(msgs: &[OutMessage]) -> Vec<u8> {
    let mut body = Vec::new();
    for m in msgs {
        let props = m.properties();
        let start = body.len();
        body.resize(start + record::batch_entry_len(&m.body, &props), 0);
        if let Err(e) = record::encode_batch_entry(m.flag, &m.body, &props, &mut body[start..]) {
            panic!("batch entry does not encode: {e}");
        }
    }
    body
}

/// SEND_BATCH_MESSAGE of `msgs` to one queue (body encoded with `ramjet_core::record`).
pub fn send_batch(
    conn: &mut Conn,
    topic: &str,
    queue_id: i32,
    msgs: &[OutMessage],
) -> Result<SendOutcome, WireError> {
    let body = batch_body(msgs);
    let ext = send_ext(topic, queue_id, 0, b"", true);
    conn.call(request::SEND_BATCH_MESSAGE, &ext, &body)
        .map(send_outcome)
}

/// PULL_MESSAGE. `suspend_ms` > 0 sets the suspend flag (long polling).
pub fn pull(
    conn: &mut Conn,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max_msgs: u32,
    suspend_ms: u64,
) -> Result<PullOutcome, WireError> {
    let opaque = send_pull_request(conn, group, topic, queue_id, offset, max_msgs, suspend_ms)?;
    let wait = Duration::from_millis(suspend_ms) + crate::wire::DEFAULT_CALL_TIMEOUT;
    let resp = conn.wait_response(request::PULL_MESSAGE, opaque, wait)?;
    Ok(pull_outcome(resp))
}

/// Writes a PULL_MESSAGE request and returns its opaque (for long-poll tests).
pub fn send_pull_request(
    conn: &mut Conn,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max_msgs: u32,
    suspend_ms: u64,
) -> Result<i32, WireError> {
    let mut sys_flag = PULL_FLAG_SUBSCRIPTION;
    if suspend_ms > 0 {
        sys_flag |= PULL_FLAG_SUSPEND;
    }
    let ext = [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
        ("queueOffset", offset.to_string()),
        ("maxMsgNums", max_msgs.to_string()),
        ("sysFlag", sys_flag.to_string()),
        ("commitOffset", "0".to_string()),
        ("suspendTimeoutMillis", suspend_ms.to_string()),
        ("subscription", "*".to_string()),
        ("subVersion", now_ms().to_string()),
        ("expressionType", "TAG".to_string()),
    ];
    conn.send_request(request::PULL_MESSAGE, &ext, &[])
}

/// Turns a PULL_MESSAGE response into a [`PullOutcome`]; a body that does not decode fails
/// the test.
pub fn pull_outcome(resp: Command) -> PullOutcome {
    let field = |name: &str| {
        resp.ext
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let messages = if resp.code == response::SUCCESS {
        match decode_pull_body(&resp.body) {
            Ok(m) => m,
            Err(e) => panic!("pull body does not decode: {e}"),
        }
    } else {
        Vec::new()
    };
    PullOutcome {
        code: resp.code,
        remark: resp.remark.clone(),
        next_begin_offset: field("nextBeginOffset"),
        min_offset: field("minOffset"),
        max_offset: field("maxOffset"),
        suggest_which_broker_id: field("suggestWhichBrokerId"),
        messages,
    }
}

/// Pulls a queue from `from` until `max_offset` (or until `limit` messages), bounded by
/// `timeout`; fails the test on an unexpected code.
pub fn pull_all(
    conn: &mut Conn,
    group: &str,
    topic: &str,
    queue_id: i32,
    from: i64,
    timeout: Duration,
) -> Vec<Pulled> {
    let deadline = Instant::now() + timeout;
    let mut out: Vec<Pulled> = Vec::new();
    let mut offset = from;
    loop {
        if Instant::now() >= deadline {
            panic!("pulling {topic}/{queue_id} from {from} did not finish within {timeout:?} (at offset {offset}, {} messages)", out.len());
        }
        let r = match pull(conn, group, topic, queue_id, offset, 32, 0) {
            Ok(r) => r,
            Err(e) => panic!("pull {topic}/{queue_id}@{offset} failed: {e}"),
        };
        match r.code {
            response::SUCCESS => {
                if r.messages.is_empty() {
                    panic!("pull {topic}/{queue_id}@{offset} answered SUCCESS with no messages");
                }
                if r.next_begin_offset <= offset {
                    panic!(
                        "pull {topic}/{queue_id}@{offset} did not advance: next {}",
                        r.next_begin_offset
                    );
                }
                offset = r.next_begin_offset;
                out.extend(r.messages);
            }
            response::PULL_NOT_FOUND => return out,
            response::PULL_RETRY_IMMEDIATELY => offset = r.next_begin_offset.max(offset),
            code => panic!(
                "pull {topic}/{queue_id}@{offset} answered code {code}: {:?}",
                r.remark
            ),
        }
    }
}

/// One value of GET_BROKER_RUNTIME_INFO as text; fails the test when it is missing.
pub fn runtime_value(conn: &mut Conn, key: &str) -> String {
    let info = conn
        .call(request::GET_BROKER_RUNTIME_INFO, &[], &[])
        .expect("runtime info");
    assert_eq!(info.code, response::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&info.body).expect("runtime info json");
    v["table"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing from runtime info"))
        .to_string()
}

/// One numeric counter of GET_BROKER_RUNTIME_INFO (`ramjet admin status`); fails the test
/// when the broker does not answer or has no such numeric key.
pub fn runtime_counter(conn: &mut Conn, key: &str) -> u64 {
    let v = runtime_value(conn, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not a number"))
}

/// GET_MAX_OFFSET of a queue.
pub fn max_offset(conn: &mut Conn, topic: &str, queue_id: i32) -> Result<i64, String> {
    let ext = [
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
    ];
    let resp = conn
        .call(request::GET_MAX_OFFSET, &ext, &[])
        .map_err(|e| e.to_string())?;
    if resp.code != response::SUCCESS {
        return Err(format!(
            "GET_MAX_OFFSET {topic}/{queue_id} answered code {}: {:?}",
            resp.code, resp.remark
        ));
    }
    resp.ext
        .get("offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("GET_MAX_OFFSET response has no offset: {:?}", resp.ext))
}

/// A request signed with an ACL account's keys (`AccessKey` and `Signature` added; see
/// docs/acl.md); a broken connection fails the test.
pub fn call_signed(
    c: &mut Conn,
    code: i32,
    ext: &[(&str, String)],
    body: &[u8],
    who: (&str, &str),
) -> Command {
    let mut fields: Vec<(&str, String)> = ext.to_vec();
    fields.push((ramjet_core::acl::ACCESS_KEY, who.0.to_string()));
    let sig = ramjet_core::acl::Signer::new(who.1)
        .sign(fields.iter().map(|(k, v)| (*k, v.as_str())), body)
        .unwrap_or_else(|e| panic!("cannot sign: {e}"));
    fields.push((ramjet_core::acl::SIGNATURE, sig.as_str().to_string()));
    c.call(code, &fields, body)
        .unwrap_or_else(|e| panic!("signed request {code}: {e}"))
}

/// A numeric runtime-info counter read with a signed request (a broker with ACL on).
pub fn runtime_counter_signed(conn: &mut Conn, key: &str, who: (&str, &str)) -> u64 {
    let info = call_signed(conn, request::GET_BROKER_RUNTIME_INFO, &[], &[], who);
    assert_eq!(info.code, response::SUCCESS, "{:?}", info.remark);
    let v: serde_json::Value = serde_json::from_slice(&info.body).expect("runtime info json");
    v["table"][key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from runtime info or not a number"))
}

/// Connects to `addr`; a failure fails the test with the reason.
pub fn connect(addr: SocketAddr) -> Conn {
    Conn::connect(addr).unwrap_or_else(|e| panic!("{e}"))
}

/// Creates `topic` with `queues` queues on every shard of `broker`, then waits (bounded) until
/// the name server routes it to all of them.
pub fn create_topic_on(broker: &crate::Broker, topic: &str, queues: u32) {
    for i in 0..broker.shards() {
        let mut c = connect(broker.shard_addr(i));
        let r = create_topic(&mut c, topic, queues)
            .unwrap_or_else(|e| panic!("create {topic} on shard {i}: {e}"));
        assert_eq!(
            r.code,
            response::SUCCESS,
            "create {topic} on shard {i}: {:?}",
            r.remark
        );
    }
    wait_route(
        broker.namesrv_addr(),
        topic,
        broker.shards(),
        Duration::from_secs(20),
    );
}

/// A one-shard broker with ACL on: `dir/plain_acl.yml` lists the admin account `admin` and
/// `accounts` (YAML flow mappings, `{accessKey: .., secretKey: .., ...}`); the admin creates
/// `topic` with `queues` queues and the name server routes it.
pub fn start_acl_broker(
    dir: &std::path::Path,
    admin: (&str, &str),
    accounts: &[String],
    topic: &str,
    queues: u32,
) -> crate::Broker {
    let mut text = format!(
        "accounts:\n  - {{accessKey: {}, secretKey: {}, admin: true}}\n",
        admin.0, admin.1
    );
    for a in accounts {
        text.push_str(&format!("  - {a}\n"));
    }
    let file = dir.join("plain_acl.yml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let broker = crate::Broker::start(crate::BrokerSpec::default().acl(&file));
    let mut c = connect(broker.shard_addr(0));
    let r = call_signed(
        &mut c,
        request::UPDATE_AND_CREATE_TOPIC,
        &create_topic_ext(topic, queues),
        &[],
        admin,
    );
    assert_eq!(r.code, response::SUCCESS, "create {topic}: {:?}", r.remark);
    wait_route(broker.namesrv_addr(), topic, 1, Duration::from_secs(20));
    broker
}

/// UPDATE_CONSUMER_OFFSET of `group` on queue `queue` of `topic`: the broker's answer.
pub fn commit_offset(c: &mut Conn, group: &str, topic: &str, queue: i32, offset: i64) -> Command {
    let ext = [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue.to_string()),
        ("commitOffset", offset.to_string()),
    ];
    c.call(request::UPDATE_CONSUMER_OFFSET, &ext, &[])
        .unwrap_or_else(|e| panic!("commit {group} {topic}/{queue}: {e}"))
}

/// QUERY_CONSUMER_OFFSET: `group`'s committed offset of queue `queue` of `topic`, `None` when
/// the broker answers that it has none.
pub fn committed_offset(c: &mut Conn, group: &str, topic: &str, queue: i32) -> Option<i64> {
    let ext = [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue.to_string()),
    ];
    let r = c
        .call(request::QUERY_CONSUMER_OFFSET, &ext, &[])
        .unwrap_or_else(|e| panic!("query {group} {topic}/{queue}: {e}"));
    if r.code != response::SUCCESS {
        return None;
    }
    r.ext.get("offset").and_then(|o| o.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_keys_are_quoted() {
        let t = r#"{"brokerAddrs":{0:"127.0.0.1:1",1:"x:2"},"s":"{3:4}"}"#;
        let fixed = quote_numeric_keys(t);
        assert_eq!(
            fixed,
            r#"{"brokerAddrs":{"0":"127.0.0.1:1","1":"x:2"},"s":"{3:4}"}"#
        );
        let route = parse_route(
            br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"b","cluster":"C"}],"filterServerTable":{},"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#,
        )
        .unwrap();
        assert_eq!(route.brokers[0].master(), Some("127.0.0.1:10911"));
        assert_eq!(route.queues[0].write_queue_nums, 4);
    }
}
