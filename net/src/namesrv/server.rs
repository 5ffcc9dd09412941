//! [`NameServer`]: the name server's request handlers as a pure state machine. The hosting
//! loop decodes a frame, calls [`NameServer::handle`] with the clock, writes back the
//! returned command (already in the request's serialization) and calls
//! [`NameServer::scan_expired`] every [`SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS`].
//!
//! [`SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS`]: super::SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS

use super::kv::{KvConfig, NAMESPACE_ORDER_TOPIC_CONFIG};
use super::routes::{BrokerRegistration, RouteTable};
use ramjet_core::remoting::body::{
    self, DataVersion, JsonStyle, KVTable, RegisterBrokerBody, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData,
};
use ramjet_core::remoting::headers::{
    BrokerNameRequestHeader, DeleteTopicFromNamesrvRequestHeader, GetKVConfigRequestHeader,
    GetKVConfigResponseHeader, GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, PutKVConfigRequestHeader, QueryDataVersionRequestHeader,
    QueryDataVersionResponseHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    RegisterTopicRequestHeader, UnRegisterBrokerRequestHeader,
};
use ramjet_core::remoting::{
    CommandView, DecodeHeader, HeaderError, RemotingCommand, RequestCode, ResponseCode, Version,
};
use serde::Serialize;

/// Name server settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameServerConfig {
    /// Put `orderTopicConf` (KV namespace ORDER_TOPIC_CONFIG) into route replies
    /// (RocketMQ `orderMessageEnable`, default false).
    pub order_message_enable: bool,
}

/// Name server state: route tables and KV config.
#[derive(Debug, Clone, Default)]
pub struct NameServer {
    config: NameServerConfig,
    routes: RouteTable,
    kv: KvConfig,
}

/// TopicSysFlag bit: unit topic.
pub const TOPIC_SYS_FLAG_UNIT: i32 = 0x1;
/// TopicSysFlag bit: topic has unit subscriptions.
pub const TOPIC_SYS_FLAG_UNIT_SUB: i32 = 0x2;

/// Remark of TOPIC_NOT_EXIST route replies (RocketMQ's text; clients log it).
pub fn topic_not_exist_remark(topic: &str) -> String {
    format!(
        "No topic route info in name server for the topic: {topic}\nSee http://rocketmq.apache.org/docs/faq/ for further details."
    )
}

impl NameServer {
    pub fn new(config: NameServerConfig) -> Self {
        NameServer {
            config,
            routes: RouteTable::new(),
            kv: KvConfig::default(),
        }
    }

    pub fn config(&self) -> &NameServerConfig {
        &self.config
    }

    /// The route tables (for an embedded name server and admin views).
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    pub fn routes_mut(&mut self) -> &mut RouteTable {
        &mut self.routes
    }

    pub fn kv(&self) -> &KvConfig {
        &self.kv
    }

    pub fn kv_mut(&mut self) -> &mut KvConfig {
        &mut self.kv
    }

    /// Drops brokers silent past their timeout (120 s by default). Returns their addresses.
    pub fn scan_expired(&mut self, now_ms: i64) -> Vec<String> {
        self.routes.scan_expired(now_ms)
    }

    /// Drops brokers registered through connection `conn` (see [`NameServer::handle_from`]).
    pub fn connection_closed(&mut self, conn: u64) -> Vec<String> {
        self.routes.connection_closed(conn)
    }

    /// Route reply body of `topic` with `orderTopicConf` filled in when enabled.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let mut route = self.routes.topic_route(topic)?;
        if self.config.order_message_enable {
            route.order_topic_conf = self
                .kv
                .get(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
                .map(str::to_owned);
        }
        Some(route)
    }

    /// Handles one request; `None` for oneway requests and for responses (nothing to send).
    pub fn handle(&mut self, req: &CommandView<'_>, now_ms: i64) -> Option<RemotingCommand> {
        self.dispatch(req, now_ms, None)
    }

    /// As [`NameServer::handle`], remembering which connection a broker registered on so
    /// that [`NameServer::connection_closed`] can drop it.
    pub fn handle_from(
        &mut self,
        conn: u64,
        req: &CommandView<'_>,
        now_ms: i64,
    ) -> Option<RemotingCommand> {
        self.dispatch(req, now_ms, Some(conn))
    }

    fn dispatch(
        &mut self,
        req: &CommandView<'_>,
        now_ms: i64,
        conn: Option<u64>,
    ) -> Option<RemotingCommand> {
        if req.is_response() {
            return None;
        }
        let resp = match req.code {
            RequestCode::REGISTER_BROKER => self.register_broker(req, now_ms, conn),
            RequestCode::UNREGISTER_BROKER => self.unregister_broker(req),
            RequestCode::GET_ROUTEINFO_BY_TOPIC => self.get_route(req),
            RequestCode::GET_BROKER_CLUSTER_INFO => {
                let style = JsonStyle::for_route_reply(req.version, false);
                json_reply(req, &self.routes.cluster_info(), style)
            }
            RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                let list = TopicList {
                    broker_addr: None,
                    topic_list: self.routes.all_topics(),
                };
                json_reply(req, &list, JsonStyle::Standard)
            }
            RequestCode::GET_TOPICS_BY_CLUSTER => {
                self.with_header(req, |this, h: GetTopicsByClusterRequestHeader| {
                    let list = TopicList {
                        broker_addr: None,
                        topic_list: this.routes.topics_by_cluster(h.cluster),
                    };
                    json_reply(req, &list, JsonStyle::Standard)
                })
            }
            RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                let (topic_list, broker_addr) = self.routes.system_topics();
                let list = TopicList {
                    broker_addr,
                    topic_list,
                };
                json_reply(req, &list, JsonStyle::Standard)
            }
            RequestCode::GET_UNIT_TOPIC_LIST
            | RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST
            | RequestCode::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => {
                let unit = |f: i32| f & TOPIC_SYS_FLAG_UNIT != 0;
                let unit_sub = |f: i32| f & TOPIC_SYS_FLAG_UNIT_SUB != 0;
                let topic_list = match req.code {
                    RequestCode::GET_UNIT_TOPIC_LIST => self.routes.topics_by_sys_flag(unit),
                    RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST => {
                        self.routes.topics_by_sys_flag(unit_sub)
                    }
                    _ => self.routes.topics_by_sys_flag(|f| !unit(f) && unit_sub(f)),
                };
                let list = TopicList {
                    broker_addr: None,
                    topic_list,
                };
                json_reply(req, &list, JsonStyle::Standard)
            }
            RequestCode::DELETE_TOPIC_IN_NAMESRV => {
                self.with_header(req, |this, h: DeleteTopicFromNamesrvRequestHeader| {
                    this.routes.delete_topic(h.topic, h.cluster_name);
                    success(req)
                })
            }
            RequestCode::REGISTER_TOPIC_IN_NAMESRV => self.register_topic(req),
            RequestCode::QUERY_DATA_VERSION => self.query_data_version(req, now_ms),
            RequestCode::WIPE_WRITE_PERM_OF_BROKER | RequestCode::ADD_WRITE_PERM_OF_BROKER => {
                let writable = req.code == RequestCode::ADD_WRITE_PERM_OF_BROKER;
                self.with_header(req, |this, h: BrokerNameRequestHeader| {
                    let count = this.routes.set_write_perm(h.broker_name, writable);
                    let key = if writable {
                        "addTopicCount"
                    } else {
                        "wipeTopicCount"
                    };
                    success(req).with_ext(key, count.to_string())
                })
            }
            RequestCode::PUT_KV_CONFIG => {
                self.with_header(req, |this, h: PutKVConfigRequestHeader| {
                    this.kv.put(h.namespace, h.key, h.value);
                    success(req)
                })
            }
            RequestCode::GET_KV_CONFIG => {
                self.with_header(req, |this, h: GetKVConfigRequestHeader| {
                    match this.kv.get(h.namespace, h.key) {
                        Some(value) => success(req)
                            .with_header(&GetKVConfigResponseHeader { value: Some(value) }),
                        None => error(
                            req,
                            ResponseCode::QUERY_NOT_FOUND,
                            format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
                        ),
                    }
                })
            }
            RequestCode::DELETE_KV_CONFIG => {
                self.with_header(req, |this, h: GetKVConfigRequestHeader| {
                    this.kv.delete(h.namespace, h.key);
                    success(req)
                })
            }
            RequestCode::GET_KVLIST_BY_NAMESPACE => {
                self.with_header(req, |this, h: GetKVListByNamespaceRequestHeader| match this
                    .kv
                    .namespace(h.namespace)
                {
                    Some(table) => json_reply(
                        req,
                        &KVTable {
                            table: table.clone(),
                        },
                        JsonStyle::Standard,
                    ),
                    None => error(
                        req,
                        ResponseCode::QUERY_NOT_FOUND,
                        format!("No config item, Namespace: {}", h.namespace),
                    ),
                })
            }
            code => error(
                req,
                ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            ),
        };
        if req.is_oneway() {
            None
        } else {
            Some(resp)
        }
    }

    /// Decodes header `H` and runs `f`, or answers SYSTEM_ERROR naming the bad field.
    fn with_header<'v, H, F>(&mut self, req: &'v CommandView<'_>, f: F) -> RemotingCommand
    where
        H: DecodeHeader<'v>,
        F: FnOnce(&mut Self, H) -> RemotingCommand,
    {
        match req.decode_header::<H>() {
            Ok(h) => f(self, h),
            Err(e) => header_error(req, &e),
        }
    }

    fn register_broker(
        &mut self,
        req: &CommandView<'_>,
        now_ms: i64,
        conn: Option<u64>,
    ) -> RemotingCommand {
        let h: RegisterBrokerRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return header_error(req, &e),
        };
        if h.compressed == Some(true) {
            return error(
                req,
                ResponseCode::SYSTEM_ERROR,
                "compressed REGISTER_BROKER bodies are not supported; set compressedRegister=false on the broker".to_owned(),
            );
        }
        if let Some(crc) = h.body_crc32.filter(|c| *c != 0) {
            let actual = RegisterBrokerBody::crc32(req.body);
            if actual != crc {
                return error(
                    req,
                    ResponseCode::SYSTEM_ERROR,
                    "crc32 not match".to_owned(),
                );
            }
        }
        let body = if req.body.is_empty() {
            RegisterBrokerBody::default()
        } else if req.version >= Version::V3_0_11 {
            match body::from_slice::<RegisterBrokerBody>(req.body, "RegisterBrokerBody") {
                Ok(b) => b,
                Err(e) => return error(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
            }
        } else {
            match body::from_slice::<TopicConfigSerializeWrapper>(
                req.body,
                "TopicConfigSerializeWrapper",
            ) {
                Ok(w) => RegisterBrokerBody {
                    filter_server_list: Vec::new(),
                    topic_config_serialize_wrapper: w,
                },
                Err(e) => return error(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
            }
        };
        let reg = BrokerRegistration {
            cluster_name: h.cluster_name,
            broker_addr: h.broker_addr,
            broker_name: h.broker_name,
            broker_id: h.broker_id,
            ha_server_addr: h.ha_server_addr,
            heartbeat_timeout_ms: h.heartbeat_timeout_millis,
            topics: &body.topic_config_serialize_wrapper,
            filter_server_list: &body.filter_server_list,
        };
        let result = self.routes.register_broker(&reg, now_ms, conn);
        let mut resp = success(req).with_header(&RegisterBrokerResponseHeader {
            ha_server_addr: result.ha_server_addr.as_deref(),
            master_addr: result.master_addr.as_deref(),
        });
        if let Some(table) = self.kv.namespace(NAMESPACE_ORDER_TOPIC_CONFIG) {
            if let Ok(bytes) = body::to_vec(
                &KVTable {
                    table: table.clone(),
                },
                JsonStyle::Standard,
            ) {
                resp = resp.with_body(bytes);
            }
        }
        resp
    }

    fn unregister_broker(&mut self, req: &CommandView<'_>) -> RemotingCommand {
        match req.decode_header::<UnRegisterBrokerRequestHeader>() {
            Ok(h) => {
                self.routes.unregister_broker(
                    h.cluster_name,
                    h.broker_addr,
                    h.broker_name,
                    h.broker_id,
                );
                success(req)
            }
            Err(e) => header_error(req, &e),
        }
    }

    fn get_route(&self, req: &CommandView<'_>) -> RemotingCommand {
        let h: GetRouteInfoRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return header_error(req, &e),
        };
        match self.topic_route(h.topic) {
            Some(route) => {
                let style = JsonStyle::for_route_reply(
                    req.version,
                    h.accept_standard_json_only.unwrap_or(false),
                );
                json_reply(req, &route, style)
            }
            None => error(
                req,
                ResponseCode::TOPIC_NOT_EXIST,
                topic_not_exist_remark(h.topic),
            ),
        }
    }

    fn register_topic(&mut self, req: &CommandView<'_>) -> RemotingCommand {
        let h: RegisterTopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return header_error(req, &e),
        };
        if req.body.is_empty() {
            return success(req);
        }
        match body::from_slice::<TopicRouteData>(req.body, "TopicRouteData") {
            Ok(route) => {
                self.routes.register_topic(h.topic, &route.queue_datas);
                success(req)
            }
            Err(e) => error(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
        }
    }

    fn query_data_version(&mut self, req: &CommandView<'_>, now_ms: i64) -> RemotingCommand {
        let h: QueryDataVersionRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return header_error(req, &e),
        };
        let version = if req.body.is_empty() {
            DataVersion::default()
        } else {
            match body::from_slice::<DataVersion>(req.body, "DataVersion") {
                Ok(v) => v,
                Err(e) => return error(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
            }
        };
        let (changed, stored) = self.routes.data_version_changed(h.broker_addr, &version);
        self.routes.touch(h.broker_addr, now_ms);
        let mut resp = success(req).with_header(&QueryDataVersionResponseHeader { changed });
        if let Some(stored) = stored {
            if let Ok(bytes) = body::to_vec(&stored, JsonStyle::Standard) {
                resp = resp.with_body(bytes);
            }
        }
        resp
    }
}

fn success(req: &CommandView<'_>) -> RemotingCommand {
    RemotingCommand::response_to(req, ResponseCode::SUCCESS)
}

fn error(req: &CommandView<'_>, code: i32, remark: String) -> RemotingCommand {
    RemotingCommand::response_to(req, code).with_remark(remark)
}

fn header_error(req: &CommandView<'_>, e: &HeaderError) -> RemotingCommand {
    error(req, ResponseCode::SYSTEM_ERROR, e.to_string())
}

fn json_reply<T: Serialize>(req: &CommandView<'_>, value: &T, style: JsonStyle) -> RemotingCommand {
    match body::to_vec(value, style) {
        Ok(bytes) => success(req).with_body(bytes),
        Err(e) => error(req, ResponseCode::SYSTEM_ERROR, e.to_string()),
    }
}
