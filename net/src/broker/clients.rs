//! Clients of one shard: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP
//! (38), consumer group membership and subscriptions, and NOTIFY_CONSUMER_IDS_CHANGED (40)
//! pushed to a group's members (on the connection each member heart-beats on) whenever the
//! group's membership changes. Members leave by UNREGISTER_CLIENT, by closing their connection,
//! or by staying silent for `client_idle_ms` (120 s).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::Duration;

use ramjet_core::remoting::body::{
    fastjson, ConsumeFromWhere, ConsumeType, ConsumerListBody, HeartbeatData, MessageModel,
    SubscriptionData,
};
use ramjet_core::remoting::headers::{
    GetConsumerListByGroupRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    UnregisterClientRequestHeader,
};
use ramjet_core::remoting::{CommandView, FrameHead, LanguageCode, RequestCode, ResponseCode};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::pull::TagFilter;
use super::shard::Broker;
use super::topics::{PERM_READ, PERM_WRITE, RETRY_PREFIX};

struct Member {
    conn: Weak<Conn>,
    conn_id: u64,
    last_ms: i64,
    /// The language and version of its last heartbeat's frame (GET_CONSUMER_CONNECTION_LIST).
    language: LanguageCode,
    version: i32,
}

struct Producer {
    conn: Weak<Conn>,
    conn_id: u64,
    last_ms: i64,
    /// The language and version of its last heartbeat's frame.
    language: LanguageCode,
    version: i32,
}

struct Group {
    members: BTreeMap<String, Member>,
    /// topic -> the subscription from the last heartbeat that changed it.
    subs: HashMap<String, Sub>,
    consume_type: ConsumeType,
    message_model: MessageModel,
    consume_from_where: ConsumeFromWhere,
}

impl Default for Group {
    fn default() -> Group {
        Group {
            members: BTreeMap::new(),
            subs: HashMap::new(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
        }
    }
}

/// A stored subscription: its version and filter (what pulls check), and the subscription as
/// the heartbeat sent it (GET_CONSUMER_CONNECTION_LIST shows it).
struct Sub {
    version: i64,
    filter: TagFilter,
    data: SubscriptionData,
}

/// One member in RocketMQ's Connection shape.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionJson<'a> {
    client_id: &'a str,
    client_addr: String,
    language: &'static str,
    version: i32,
}

impl<'a> ConnectionJson<'a> {
    /// The client `id` on `conn`, if that connection is still open.
    fn live(
        id: &'a str,
        conn: &Weak<Conn>,
        language: LanguageCode,
        version: i32,
    ) -> Option<ConnectionJson<'a>> {
        let conn = conn.upgrade().filter(|c| !c.is_closed())?;
        Some(ConnectionJson {
            client_id: id,
            client_addr: conn.peer().to_string(),
            language: language.name(),
            version,
        })
    }
}

/// RocketMQ's ConsumerConnection (GET_CONSUMER_CONNECTION_LIST body).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerConnectionJson<'a> {
    connection_set: Vec<ConnectionJson<'a>>,
    subscription_table: BTreeMap<&'a str, &'a SubscriptionData>,
    consume_type: ConsumeType,
    message_model: MessageModel,
    consume_from_where: ConsumeFromWhere,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    /// producer group -> client id -> the producer's connection and last heartbeat
    producers: HashMap<String, HashMap<String, Producer>>,
}

/// Consumer groups and producers known to one shard.
#[derive(Default)]
pub struct ClientRegistry {
    inner: RefCell<Inner>,
}

impl ClientRegistry {
    /// The stored subscription of `group` to `topic` (from heartbeats).
    pub fn subscription(&self, group: &str, topic: &str) -> Option<(i64, TagFilter)> {
        self.inner
            .borrow()
            .groups
            .get(group)?
            .subs
            .get(topic)
            .map(|s| (s.version, s.filter.clone()))
    }

    /// The subscription of `group` to `topic` as its members' heartbeats sent it.
    pub fn subscription_data(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.inner
            .borrow()
            .groups
            .get(group)?
            .subs
            .get(topic)
            .map(|s| s.data.clone())
    }

    /// Client ids of a group's live members, sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.inner
            .borrow()
            .groups
            .get(group)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// RocketMQ's ConsumerConnection of `group` (JSON): its live members with their address,
    /// language and version, its subscriptions and consume settings as the last heartbeat sent
    /// them. `None`: no member is connected.
    pub fn connection_json(&self, group: &str) -> Option<Vec<u8>> {
        let inner = self.inner.borrow();
        let g = inner.groups.get(group)?;
        let connection_set: Vec<ConnectionJson<'_>> = g
            .members
            .iter()
            .filter_map(|(id, m)| ConnectionJson::live(id, &m.conn, m.language, m.version))
            .collect();
        if connection_set.is_empty() {
            return None;
        }
        let body = ConsumerConnectionJson {
            connection_set,
            subscription_table: g.subs.iter().map(|(t, s)| (t.as_str(), &s.data)).collect(),
            consume_type: g.consume_type,
            message_model: g.message_model,
            consume_from_where: g.consume_from_where,
        };
        // Strings, numbers and enum names always serialize.
        Some(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// RocketMQ's ProducerConnection of `group` (GET_PRODUCER_CONNECTION_LIST body): its
    /// live producers. `None`: none is connected.
    pub fn producer_connection_json(&self, group: &str) -> Option<Vec<u8>> {
        let inner = self.inner.borrow();
        let connection_set: Vec<ConnectionJson<'_>> = inner
            .producers
            .get(group)?
            .iter()
            .filter_map(|(id, p)| ConnectionJson::live(id, &p.conn, p.language, p.version))
            .collect();
        if connection_set.is_empty() {
            return None;
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ProducerConnection<'a> {
            connection_set: Vec<ConnectionJson<'a>>,
        }
        serde_json::to_vec(&ProducerConnection { connection_set }).ok()
    }

    /// RocketMQ's ProducerTableInfo (GET_ALL_PRODUCER_INFO body): every live producer by group.
    pub fn producer_table_json(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ProducerInfo<'a> {
            client_id: &'a str,
            #[serde(rename = "remoteIP")]
            remote_ip: String,
            language: &'static str,
            version: i32,
            last_update_timestamp: i64,
        }
        let inner = self.inner.borrow();
        let data: BTreeMap<&str, Vec<ProducerInfo<'_>>> = inner
            .producers
            .iter()
            .map(|(group, members)| {
                let mut live: Vec<ProducerInfo<'_>> = members
                    .iter()
                    .filter_map(|(id, p)| {
                        let conn = p.conn.upgrade().filter(|c| !c.is_closed())?;
                        Some(ProducerInfo {
                            client_id: id,
                            remote_ip: conn.peer().to_string(),
                            language: p.language.name(),
                            version: p.version,
                            last_update_timestamp: p.last_ms,
                        })
                    })
                    .collect();
                live.sort_by(|a, b| a.client_id.cmp(b.client_id));
                (group.as_str(), live)
            })
            .filter(|(_, live)| !live.is_empty())
            .collect();
        serde_json::to_vec(&serde_json::json!({ "data": data })).unwrap_or_default()
    }

    /// Groups with a member subscribed to `topic` (RocketMQ's queryTopicConsumeByWho).
    pub fn groups_consuming(&self, topic: &str) -> Vec<String> {
        self.inner
            .borrow()
            .groups
            .iter()
            .filter(|(_, g)| g.subs.contains_key(topic))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `group`'s members consume by broadcasting (from their heartbeats).
    pub fn is_broadcasting(&self, group: &str) -> bool {
        self.inner
            .borrow()
            .groups
            .get(group)
            .is_some_and(|g| g.message_model == MessageModel::Broadcasting)
    }

    /// Whether `group` subscribes to `topic` (from heartbeats); `None` when it has no
    /// subscription here at all.
    pub fn subscribes(&self, group: &str, topic: &str) -> Option<bool> {
        let inner = self.inner.borrow();
        let g = inner.groups.get(group).filter(|g| !g.subs.is_empty())?;
        Some(g.subs.contains_key(topic))
    }

    pub fn group_count(&self) -> usize {
        self.inner.borrow().groups.len()
    }

    pub fn producer_count(&self) -> usize {
        self.inner
            .borrow()
            .producers
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// A live connection of a producer of `group` (the most recently heard from): where a
    /// transaction check goes.
    pub fn producer_conn(&self, group: &str) -> Option<Rc<Conn>> {
        let inner = self.inner.borrow();
        let mut live: Vec<&Producer> = inner.producers.get(group)?.values().collect();
        live.sort_by_key(|p| std::cmp::Reverse(p.last_ms));
        live.iter()
            .filter_map(|p| p.conn.upgrade())
            .find(|c| !c.is_closed())
    }

    /// The live connection of the producer client `client_id` in any group (where a reply to
    /// its request goes, RocketMQ's ProducerManager.findChannel). Replies are rare next to
    /// sends: a walk over the producer groups, no index to keep.
    pub fn producer_by_client(&self, client_id: &str) -> Option<Rc<Conn>> {
        let inner = self.inner.borrow();
        let mut found: Vec<&Producer> = inner
            .producers
            .values()
            .filter_map(|g| g.get(client_id))
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.last_ms));
        found
            .iter()
            .filter_map(|p| p.conn.upgrade())
            .find(|c| !c.is_closed())
    }

    /// The connection of member `client_id` of `group`, if it is live.
    pub fn member_conn(&self, group: &str, client_id: &str) -> Option<Rc<Conn>> {
        self.inner
            .borrow()
            .groups
            .get(group)?
            .members
            .get(client_id)?
            .conn
            .upgrade()
            .filter(|c| !c.is_closed())
    }

    /// Connections of a group's members (a reset of a broadcasting group's offsets goes to
    /// each).
    pub fn members_conns(&self, group: &str) -> Vec<Rc<Conn>> {
        self.inner
            .borrow()
            .groups
            .get(group)
            .map(|g| {
                g.members
                    .values()
                    .filter_map(|m| m.conn.upgrade())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes members matching `gone`; returns the groups whose membership changed.
    fn remove_where(&self, gone: impl Fn(&str, &Member) -> bool) -> Vec<String> {
        let mut inner = self.inner.borrow_mut();
        let mut changed = Vec::new();
        inner.groups.retain(|name, g| {
            let before = g.members.len();
            g.members.retain(|id, m| !gone(id, m));
            if g.members.len() != before {
                changed.push(name.clone());
            }
            !g.members.is_empty()
        });
        changed
    }
}

/// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of `group`.
fn notify_group(b: &Broker, group: &str) {
    let header = NotifyConsumerIdsChangedRequestHeader {
        consumer_group: group,
    };
    for conn in b.clients.members_conns(group) {
        let head = FrameHead::oneway(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, conn.next_opaque());
        conn.send_frame(conn.serialize_type(), &head, &header, &[]);
    }
}

pub fn heartbeat(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let data: HeartbeatData = match fastjson::from_slice(req.body, "HeartbeatData") {
        Ok(d) => d,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad heartbeat body: {e}"),
            )
        }
    };
    let now = now_ms();
    let mut changed = Vec::new();
    let mut retry_topics = Vec::new();
    {
        let mut inner = b.clients.inner.borrow_mut();
        for cd in &data.consumer_data_set {
            let g = inner.groups.entry(cd.group_name.clone()).or_default();
            g.consume_type = cd.consume_type;
            g.message_model = cd.message_model;
            g.consume_from_where = cd.consume_from_where;
            let is_new = match g.members.get_mut(&data.client_id) {
                Some(m) => {
                    let moved = m.conn_id != conn.id();
                    m.conn = Rc::downgrade(conn);
                    m.conn_id = conn.id();
                    m.last_ms = now;
                    (m.language, m.version) = (req.language, req.version);
                    moved
                }
                None => {
                    g.members.insert(
                        data.client_id.clone(),
                        Member {
                            conn: Rc::downgrade(conn),
                            conn_id: conn.id(),
                            last_ms: now,
                            language: req.language,
                            version: req.version,
                        },
                    );
                    true
                }
            };
            if is_new {
                changed.push(cd.group_name.clone());
            }
            // The heartbeat's set replaces the group's (RocketMQ's updateSubscription): topics
            // it no longer names are dropped, and a subscription is replaced only by a newer
            // version.
            g.subs
                .retain(|t, _| cd.subscription_data_set.iter().any(|s| &s.topic == t));
            for s in &cd.subscription_data_set {
                if g.subs
                    .get(&s.topic)
                    .is_some_and(|old| old.version > s.sub_version)
                {
                    continue;
                }
                let f = if s.expression_type.is_empty()
                    || s.expression_type.eq_ignore_ascii_case("TAG")
                {
                    TagFilter::from_tags(&s.sub_string, s.tags_set.iter())
                } else if s.expression_type.eq_ignore_ascii_case("SQL92")
                    && b.cfg.broker.enable_property_filter
                {
                    match ramjet_core::selector::Selector::parse(&s.sub_string) {
                        Ok(sel) => TagFilter::sql(sel),
                        Err(e) => {
                            // Not stored: the group's pulls without an expression answer
                            // SUBSCRIPTION_NOT_EXIST.
                            tracing::warn!(shard = b.index, group = %cd.group_name, topic = %s.topic, error = %e, "SQL92 subscription not stored");
                            continue;
                        }
                    }
                } else {
                    // Another type (or SQL92 turned off): no filter is stored, pulls without
                    // an explicit subscription then answer SUBSCRIPTION_NOT_EXIST.
                    continue;
                };
                let sub = Sub {
                    version: s.sub_version,
                    filter: f,
                    data: s.clone(),
                };
                g.subs.insert(s.topic.clone(), sub);
            }
            if cd.message_model == MessageModel::Clustering {
                retry_topics.push(cd.group_name.clone());
            }
        }
        for pd in &data.producer_data_set {
            inner
                .producers
                .entry(pd.group_name.clone())
                .or_default()
                .insert(
                    data.client_id.clone(),
                    Producer {
                        conn: Rc::downgrade(conn),
                        conn_id: conn.id(),
                        last_ms: now,
                        language: req.language,
                        version: req.version,
                    },
                );
        }
    }
    let mut created = false;
    // The group's retry topic, with its retryQueueNums, when the group exists (or is created
    // now under broker.auto_create_subscription_group).
    for group in retry_topics {
        let Some(queues) = b.groups.with(&group, |g| g.retry_queue_nums.max(1) as u32) else {
            continue;
        };
        let t = format!("{RETRY_PREFIX}{group}");
        match b.topics.ensure(&t, queues, PERM_READ | PERM_WRITE) {
            Ok((_, c)) => created |= c,
            Err(e) => {
                tracing::warn!(shard = b.index, topic = %t, error = %e, "cannot create retry topic")
            }
        }
    }
    if created {
        b.registrar.request_now();
    }
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
    for g in changed {
        tracing::info!(shard = b.index, group = %g, client = %data.client_id, "consumer joined group");
        notify_group(b, &g);
    }
}

pub fn unregister_client(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: UnregisterClientRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad request header: {e}"),
            )
        }
    };
    let client = h.client_id;
    let mut changed = Vec::new();
    if let Some(g) = h.consumer_group {
        let mut inner = b.clients.inner.borrow_mut();
        if let Some(group) = inner.groups.get_mut(g) {
            if group.members.remove(client).is_some() {
                changed.push(g.to_string());
            }
            if group.members.is_empty() {
                inner.groups.remove(g);
            }
        }
    }
    if let Some(pg) = h.producer_group {
        if let Some(p) = b.clients.inner.borrow_mut().producers.get_mut(pg) {
            p.remove(client);
        }
    }
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
    for g in changed {
        notify_group(b, &g);
    }
}

pub fn consumer_list(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: GetConsumerListByGroupRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad request header: {e}"),
            )
        }
    };
    let ids = b.clients.consumer_ids(h.consumer_group);
    if ids.is_empty() {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("no consumer for this group, {}", h.consumer_group),
        );
    }
    let body = ConsumerListBody {
        consumer_id_list: ids,
    };
    match fastjson::to_vec(&body, fastjson::JsonStyle::Standard) {
        Ok(bytes) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &bytes),
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

/// CHECK_CLIENT_CONFIG's body (Java's `CheckClientRequestBody`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckClientBody {
    #[serde(default)]
    group: String,
    subscription_data: ramjet_core::remoting::body::SubscriptionData,
}

/// CHECK_CLIENT_CONFIG (46): whether this broker serves a consumer's subscription. Java's push
/// consumer asks at start for every non-TAG subscription and does not start on an error.
pub fn check_client_config(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body: CheckClientBody = match fastjson::from_slice(req.body, "CheckClientRequestBody") {
        Ok(d) => d,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad CHECK_CLIENT_CONFIG body: {e}"),
            )
        }
    };
    let s = &body.subscription_data;
    let ty = s.expression_type.as_str();
    if ty.is_empty() || ty.eq_ignore_ascii_case("TAG") {
        return conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
    }
    if !ty.eq_ignore_ascii_case("SQL92") || !b.cfg.broker.enable_property_filter {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("The broker does not support consumer to filter message by {ty}"),
        );
    }
    match ramjet_core::selector::Selector::parse(&s.sub_string) {
        Ok(_) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]),
        Err(e) => conn.respond_error(
            req,
            ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            &format!("group {} topic {}: {e}", body.group, s.topic),
        ),
    }
}

/// A connection closed: its clients leave their groups.
pub fn connection_closed(b: &Broker, conn: &Rc<Conn>) {
    let id = conn.id();
    let changed = b.clients.remove_where(|_, m| m.conn_id == id);
    b.clients.inner.borrow_mut().producers.retain(|_, p| {
        p.retain(|_, c| c.conn_id != id);
        !p.is_empty()
    });
    for g in changed {
        tracing::info!(shard = b.index, group = %g, "consumer left group (connection closed)");
        notify_group(b, &g);
    }
}

/// Drops clients silent for `idle` and notifies their groups.
pub fn expire_clients(b: &Broker, idle: Duration) {
    let cutoff = now_ms() - idle.as_millis() as i64;
    let changed = b
        .clients
        .remove_where(|_, m| m.last_ms < cutoff || m.conn.upgrade().is_none());
    b.clients.inner.borrow_mut().producers.retain(|_, p| {
        p.retain(|_, c| c.last_ms >= cutoff && c.conn.upgrade().is_some());
        !p.is_empty()
    });
    for g in changed {
        notify_group(b, &g);
    }
}
