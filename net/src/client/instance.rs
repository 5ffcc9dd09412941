//! One client per executor (the Java client's `MQClientInstance`): name-server access with
//! failover, the topic route cache (refreshed when older than `route_refresh`, 30 s by default),
//! connections to brokers (one per address, shared by producers, consumers and admin), and the
//! dispatch of broker-initiated requests.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::remoting::body::{self, Perm, TopicRouteData};
use ramjet_core::remoting::headers::GetRouteInfoRequestHeader;
use ramjet_core::remoting::{
    DecodeHeader, EncodeHeader, RemotingCommand, RequestCode, ResponseCode, SerializeType,
};

use super::error::ClientError;
use super::message::UniqIdGenerator;
use super::queue::MessageQueue;
use super::transport::{self, Connection, RequestHandler};

/// Default name server port.
pub const DEFAULT_NAMESRV_PORT: u16 = 9876;

/// Settings shared by everything built on one [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name servers, tried in order with failover.
    pub namesrv_addrs: Vec<String>,
    /// Timeout of ordinary requests (Java `mqClientApiTimeout`, 3 s).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Routes older than this are fetched again (Java `pollNameServerInterval`, 30 s).
    pub route_refresh: Duration,
    /// Distinguishes clients in one process; part of the client id.
    pub instance_name: String,
    /// Address reported in the client id and message ids.
    pub client_ip: IpAddr,
    /// How request headers are encoded: `RocketMq` (binary, RocketMQ's
    /// `SerializeType.ROCKETMQ`, which every RocketMQ broker reads and answers in kind) or
    /// `Json` (the Java client's default). Binary costs the broker about a tenth of the
    /// instructions to decode (perf/results/core-2026-11-23.md).
    pub serialize_type: SerializeType,
    /// ACL credentials to sign every request with (brokers with `acl_enable`).
    pub credentials: Option<transport::Credentials>,
}

impl ClientConfig {
    /// Config for name servers given as `host:port[;host:port...]` (RocketMQ's
    /// `NAMESRV_ADDR` format; commas also accepted; a missing port means 9876).
    pub fn new(namesrv: &str) -> Result<ClientConfig, ClientError> {
        let addrs = parse_namesrv_list(namesrv);
        if addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Ok(ClientConfig {
            namesrv_addrs: addrs,
            request_timeout: Duration::from_secs(3),
            connect_timeout: transport::CONNECT_TIMEOUT,
            route_refresh: Duration::from_secs(30),
            instance_name: format!("{}#{}", std::process::id(), nanos),
            client_ip: local_ip(),
            serialize_type: SerializeType::RocketMq,
            credentials: None,
        })
    }
}

/// Split a `NAMESRV_ADDR`-style list.
pub fn parse_namesrv_list(s: &str) -> Vec<String> {
    s.split([';', ',', ' '])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            if a.contains(':') {
                a.to_string()
            } else {
                format!("{a}:{DEFAULT_NAMESRV_PORT}")
            }
        })
        .collect()
}

/// The address this host uses to reach the outside, else loopback. No packet is sent: a UDP
/// `connect` only picks the route.
pub fn local_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

struct CachedRoute {
    route: Rc<TopicRouteData>,
    fetched: Instant,
    /// Marked by [`Client::expire_route`]: fetch again on next use, still the fallback.
    expired: bool,
}

type Listener = Rc<dyn Fn(&Connection, &RemotingCommand) -> Option<RemotingCommand>>;

struct Inner {
    config: ClientConfig,
    client_id: String,
    conns: RefCell<HashMap<String, Connection>>,
    connect_lock: transport::Window,
    namesrv_index: Cell<usize>,
    routes: RefCell<HashMap<String, CachedRoute>>,
    /// brokerName -> brokerId -> address, from every route seen.
    brokers: RefCell<HashMap<String, BTreeMap<i64, String>>>,
    /// Handlers of broker-initiated requests, by request code.
    listeners: RefCell<HashMap<i32, Vec<Listener>>>,
    uniq: UniqIdGenerator,
    /// Per queue: the broker id the last pull's `suggestWhichBrokerId` named (RocketMQ's
    /// `pullFromWhichNodeTable`).
    pull_from: RefCell<HashMap<crate::client::MessageQueue, i64>>,
}

/// The shared client of one executor. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        let client_id = format!("{}@{}", config.client_ip, config.instance_name);
        let uniq = UniqIdGenerator::new(config.client_ip);
        Client {
            inner: Rc::new(Inner {
                config,
                client_id,
                conns: RefCell::new(HashMap::new()),
                connect_lock: transport::Window::new(1),
                namesrv_index: Cell::new(0),
                pull_from: RefCell::new(HashMap::new()),
                routes: RefCell::new(HashMap::new()),
                brokers: RefCell::new(HashMap::new()),
                listeners: RefCell::new(HashMap::new()),
                uniq,
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `<ip>@<instance>`, what brokers list for consumer groups.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn uniq_ids(&self) -> &UniqIdGenerator {
        &self.inner.uniq
    }

    /// Register a handler for requests with `code` sent by brokers (e.g.
    /// NOTIFY_CONSUMER_IDS_CHANGED). A handler may return a response for non-oneway requests.
    pub fn add_listener(
        &self,
        code: i32,
        f: impl Fn(&Connection, &RemotingCommand) -> Option<RemotingCommand> + 'static,
    ) {
        self.inner
            .listeners
            .borrow_mut()
            .entry(code)
            .or_default()
            .push(Rc::new(f));
    }

    fn request_handler(&self) -> RequestHandler {
        let weak = Rc::downgrade(&self.inner);
        Rc::new(move |conn: &Connection, cmd: RemotingCommand| {
            let Some(inner) = weak.upgrade() else { return };
            let listeners = inner
                .listeners
                .borrow()
                .get(&cmd.code)
                .cloned()
                .unwrap_or_default();
            let mut answered = false;
            for l in listeners {
                if let Some(resp) = l(conn, &cmd) {
                    if !cmd.is_oneway() && !answered {
                        let _ = conn.respond(&resp);
                        answered = true;
                    }
                }
            }
            if !cmd.is_oneway() && !answered {
                let resp = RemotingCommand::response(
                    ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    cmd.opaque,
                    cmd.serialize_type,
                )
                .with_remark(format!(" request type {} not supported", cmd.code));
                let _ = conn.respond(&resp);
            }
        })
    }

    /// The open connection to `addr`, connecting if needed.
    pub async fn connection(&self, addr: &str) -> Result<Connection, ClientError> {
        if let Some(c) = self.live_connection(addr) {
            return Ok(c);
        }
        let _guard = self
            .inner
            .connect_lock
            .acquire_permit(1)
            .await
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        if let Some(c) = self.live_connection(addr) {
            return Ok(c);
        }
        let conn = Connection::connect_with(
            addr,
            self.inner.config.connect_timeout,
            self.inner.config.serialize_type,
            self.inner.config.credentials.clone(),
        )
        .await?;
        conn.set_request_handler(self.request_handler());
        self.inner
            .conns
            .borrow_mut()
            .insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    fn live_connection(&self, addr: &str) -> Option<Connection> {
        let conns = self.inner.conns.borrow();
        conns.get(addr).filter(|c| !c.is_closed()).cloned()
    }

    /// Invoke `addr`, expecting SUCCESS.
    pub async fn invoke_ok<H: EncodeHeader + ?Sized>(
        &self,
        addr: &str,
        code: i32,
        header: &H,
        body: &[u8],
    ) -> Result<RemotingCommand, ClientError> {
        let conn = self.connection(addr).await?;
        conn.invoke_ok(code, header, body, self.inner.config.request_timeout)
            .await
    }

    /// Invoke `addr`, any response code.
    pub async fn invoke<H: EncodeHeader + ?Sized>(
        &self,
        addr: &str,
        code: i32,
        header: &H,
        body: &[u8],
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let conn = self.connection(addr).await?;
        conn.invoke(code, header, body, timeout).await
    }

    /// Send a request to the name servers: the current one first, then the others in turn
    /// when the connection fails. A response (whatever its code) ends the search.
    pub async fn invoke_namesrv<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
    ) -> Result<RemotingCommand, ClientError> {
        let addrs = &self.inner.config.namesrv_addrs;
        let start = self.inner.namesrv_index.get();
        let mut last_err = ClientError::NoNameServer;
        for i in 0..addrs.len() {
            let idx = (start + i) % addrs.len();
            let addr = &addrs[idx];
            match self
                .invoke(addr, code, header, body, self.inner.config.request_timeout)
                .await
            {
                Ok(resp) => {
                    self.inner.namesrv_index.set(idx);
                    return Ok(resp);
                }
                Err(e) if e.is_transport() => {
                    tracing::warn!(namesrv = %addr, error = %e, "name server failed, trying the next");
                    last_err = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    /// Name-server request expecting SUCCESS.
    pub async fn invoke_namesrv_ok<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
    ) -> Result<RemotingCommand, ClientError> {
        let resp = self.invoke_namesrv(code, header, body).await?;
        let addr = self.current_namesrv().to_string();
        transport::expect_success(&addr, code, resp)
    }

    pub fn current_namesrv(&self) -> &str {
        let addrs = &self.inner.config.namesrv_addrs;
        &addrs[self.inner.namesrv_index.get() % addrs.len()]
    }

    /// Route of `topic`: cached, or fetched when missing or older than `route_refresh`.
    /// A failed refresh keeps serving the stale route.
    pub async fn route(&self, topic: &str) -> Result<Rc<TopicRouteData>, ClientError> {
        let cached = self
            .inner
            .routes
            .borrow()
            .get(topic)
            .map(|c| (c.route.clone(), c.fetched, c.expired));
        if let Some((route, fetched, expired)) = &cached {
            if !expired && fetched.elapsed() < self.inner.config.route_refresh {
                return Ok(route.clone());
            }
        }
        match self.fetch_route(topic).await {
            Ok(r) => Ok(r),
            Err(e) => match cached {
                Some((route, _, _)) if e.is_transport() => {
                    tracing::warn!(topic, error = %e, "route refresh failed, using the cached route");
                    Ok(route)
                }
                _ => Err(e),
            },
        }
    }

    /// Fetch the route of `topic` from the name servers now.
    pub async fn fetch_route(&self, topic: &str) -> Result<Rc<TopicRouteData>, ClientError> {
        let header = GetRouteInfoRequestHeader {
            topic,
            accept_standard_json_only: Some(true),
        };
        let resp = self
            .invoke_namesrv(RequestCode::GET_ROUTEINFO_BY_TOPIC, &header, &[])
            .await?;
        if resp.code == ResponseCode::TOPIC_NOT_EXIST {
            self.inner.routes.borrow_mut().remove(topic);
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
                reason: resp
                    .remark
                    .unwrap_or_else(|| "the name server knows no such topic".into()),
            });
        }
        let addr = self.current_namesrv().to_string();
        let resp = transport::expect_success(&addr, RequestCode::GET_ROUTEINFO_BY_TOPIC, resp)?;
        let route: TopicRouteData =
            body::from_slice(&resp.body, "TopicRouteData").map_err(|e| ClientError::BadBody {
                addr: addr.clone(),
                code: RequestCode::GET_ROUTEINFO_BY_TOPIC,
                reason: e.to_string(),
            })?;
        {
            let mut brokers = self.inner.brokers.borrow_mut();
            for b in &route.broker_datas {
                brokers.insert(b.broker_name.clone(), b.broker_addrs.clone());
            }
        }
        let route = Rc::new(route);
        self.inner.routes.borrow_mut().insert(
            topic.to_string(),
            CachedRoute {
                route: route.clone(),
                fetched: Instant::now(),
                expired: false,
            },
        );
        Ok(route)
    }

    /// Forget the cached route so the next use fetches it.
    pub fn invalidate_route(&self, topic: &str) {
        self.inner.routes.borrow_mut().remove(topic);
    }

    /// Make the next [`Client::route`] of `topic` fetch it again, keeping the cached route
    /// as the fallback when the name servers cannot be reached.
    pub fn expire_route(&self, topic: &str) {
        if let Some(c) = self.inner.routes.borrow_mut().get_mut(topic) {
            c.expired = true;
        }
    }

    /// Master address of `broker_name`, from the routes seen so far.
    pub fn master_addr(&self, broker_name: &str) -> Result<String, ClientError> {
        self.inner
            .brokers
            .borrow()
            .get(broker_name)
            .and_then(|ids| ids.get(&body::MASTER_ID).cloned())
            .ok_or_else(|| ClientError::NoBrokerAddr {
                broker_name: broker_name.to_string(),
            })
    }

    /// Address to read `broker_name` from (pulls, offsets): its master, else, while the
    /// master is gone from the route, its slave with the lowest id (RocketMQ's
    /// `findBrokerAddressInSubscribe`).
    pub fn read_addr(&self, broker_name: &str) -> Result<String, ClientError> {
        self.inner
            .brokers
            .borrow()
            .get(broker_name)
            .and_then(|ids| {
                ids.get(&body::MASTER_ID)
                    .or_else(|| ids.values().next())
                    .cloned()
            })
            .ok_or_else(|| ClientError::NoBrokerAddr {
                broker_name: broker_name.to_string(),
            })
    }

    /// Address the next pull of `mq` goes to: the broker the last pull suggested (a master
    /// with `slave_read_enable` sends consumers far behind to its slave), when the route has
    /// it; else [`Client::read_addr`].
    pub fn pull_addr(&self, mq: &crate::client::MessageQueue) -> Result<String, ClientError> {
        if let Some(id) = self.inner.pull_from.borrow().get(mq) {
            let suggested = self
                .inner
                .brokers
                .borrow()
                .get(&mq.broker_name)
                .and_then(|ids| ids.get(id).cloned());
            if let Some(a) = suggested {
                return Ok(a);
            }
        }
        self.read_addr(&mq.broker_name)
    }

    /// Records the broker a pull answer suggested for the next pull of `mq`.
    pub fn set_pull_from(&self, mq: &crate::client::MessageQueue, broker_id: i64) {
        let mut t = self.inner.pull_from.borrow_mut();
        if broker_id == body::MASTER_ID {
            t.remove(mq);
        } else {
            t.insert(mq.clone(), broker_id);
        }
    }

    /// All master addresses known from routes.
    pub fn known_masters(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .brokers
            .borrow()
            .values()
            .filter_map(|ids| ids.get(&body::MASTER_ID).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Decode a typed response header, naming the peer on failure.
    pub fn decode_header<'a, H: DecodeHeader<'a>>(
        addr: &str,
        code: i32,
        resp: &'a RemotingCommand,
    ) -> Result<H, ClientError> {
        resp.decode_header::<H>()
            .map_err(|source| ClientError::BadHeader {
                addr: addr.to_string(),
                code,
                source,
            })
    }
}

/// Queues a producer may write: WRITE perm and a master address (or `orderTopicConf`).
pub fn publish_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out = Vec::new();
    if let Some(conf) = route
        .order_topic_conf
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        for item in conf.split(';') {
            if let Some((name, n)) = item.split_once(':') {
                let n: i32 = n.trim().parse().unwrap_or(0);
                out.extend((0..n).map(|i| MessageQueue::new(topic, name.trim(), i)));
            }
        }
        return out;
    }
    let mut qds = route.queue_datas.clone();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    for qd in &qds {
        if !Perm::is_writeable(qd.perm) {
            continue;
        }
        let has_master = route
            .broker_datas
            .iter()
            .any(|b| b.broker_name == qd.broker_name && b.master_addr().is_some());
        if has_master {
            out.extend(
                (0..qd.write_queue_nums).map(|i| MessageQueue::new(topic, &qd.broker_name, i)),
            );
        }
    }
    out
}

/// Queues a consumer may read: READ perm, `0..readQueueNums` per broker.
pub fn subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| Perm::is_readable(qd.perm))
        .flat_map(|qd| {
            (0..qd.read_queue_nums).map(move |i| MessageQueue::new(topic, &qd.broker_name, i))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"b-s0","cluster":"C"},{"brokerAddrs":{1:"127.0.0.1:10931"},"brokerName":"b-s1","cluster":"C"}],"filterServerTable":{},"queueDatas":[{"brokerName":"b-s1","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},{"brokerName":"b-s0","perm":6,"readQueueNums":3,"topicSynFlag":0,"writeQueueNums":2}]}"#;

    #[test]
    fn route_with_bare_keys_gives_publish_and_subscribe_queues() {
        let route: TopicRouteData = body::from_slice(ROUTE.as_bytes(), "route").expect("parse");
        let pubq = publish_queues("T", &route);
        // b-s1 has no master: not writable.
        assert_eq!(
            pubq,
            vec![
                MessageQueue::new("T", "b-s0", 0),
                MessageQueue::new("T", "b-s0", 1)
            ]
        );
        let subq = subscribe_queues("T", &route);
        assert_eq!(subq.len(), 5);
        assert_eq!(subq[0], MessageQueue::new("T", "b-s0", 0));
        assert_eq!(subq[4], MessageQueue::new("T", "b-s1", 1));
    }

    #[test]
    fn order_topic_conf_overrides() {
        let mut route: TopicRouteData = body::from_slice(ROUTE.as_bytes(), "route").expect("parse");
        route.order_topic_conf = Some("x:2;y:1".into());
        let q = publish_queues("T", &route);
        assert_eq!(q.len(), 3);
        assert_eq!(q[2], MessageQueue::new("T", "y", 0));
    }

    #[test]
    fn namesrv_list_parsing() {
        assert_eq!(
            parse_namesrv_list("a:1; b ,c"),
            vec!["a:1", "b:9876", "c:9876"]
        );
        assert!(parse_namesrv_list(" ; ").is_empty());
        assert!(matches!(
            ClientConfig::new(""),
            Err(ClientError::NoNameServer)
        ));
    }
}
