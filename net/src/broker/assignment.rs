//! Broker-side rebalance (RocketMQ 5): SET_MESSAGE_REQUEST_MODE (401) records whether a
//! group consumes a topic by PULL or POP (mqadmin `setConsumeMode`), QUERY_ASSIGNMENT (400)
//! answers a client that lets the broker divide the queues (`clientRebalance` off) with its
//! queues and that mode.
//!
//! The modes live in `config/messageRequestMode.json` (RocketMQ's file and layout:
//! `{"messageRequestModeMap":{topic:{group:{..}}}}`), written atomically on each change.
//!
//! An assignment covers every broker of the topic, so the shard asks the name servers for
//! the topic's route (one request per QUERY_ASSIGNMENT, every 20 s per consumer). POP mode
//! with `popShareQueueNum` 0 gives each consumer queue -1 of every broker (any queue); with
//! N > 0 each consumer gets its own queues plus those of the N consumers after it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ramjet_core::remoting::{CommandView, FrameHead, ResponseCode, RETRY_GROUP_TOPIC_PREFIX};
use serde::{Deserialize, Serialize};

use super::conn::Conn;
use super::persist::{read_optional, write_atomically, PersistError};
use super::shard::Broker;
use crate::client::rebalance::Strategy;
use crate::client::MessageQueue;

/// File name under the shard's `config/` directory (RocketMQ's name).
pub const MODES_FILE: &str = "messageRequestMode.json";

/// A group's way of consuming a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMode {
    pub topic: String,
    pub consumer_group: String,
    /// `PULL` or `POP`.
    pub mode: String,
    #[serde(default)]
    pub pop_share_queue_num: i32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModesFile {
    #[serde(default)]
    message_request_mode_map: BTreeMap<String, BTreeMap<String, RequestMode>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModesError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("{path} does not parse: {reason} (fix or remove it)")]
    Parse { path: PathBuf, reason: String },
}

/// One shard's request modes.
pub struct RequestModes {
    path: PathBuf,
    table: RefCell<ModesFile>,
}

impl RequestModes {
    pub fn open(config_dir: &Path) -> Result<RequestModes, ModesError> {
        let path = config_dir.join(MODES_FILE);
        let table = match read_optional(&path)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ModesError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            None => ModesFile::default(),
        };
        Ok(RequestModes {
            path,
            table: RefCell::new(table),
        })
    }

    pub fn get(&self, topic: &str, group: &str) -> Option<RequestMode> {
        self.table
            .borrow()
            .message_request_mode_map
            .get(topic)
            .and_then(|g| g.get(group))
            .cloned()
    }

    /// Every mode, as the file holds them (GET_ALL_MESSAGE_REQUEST_MODE's body).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.table.borrow()).expect("strings and numbers")
    }

    /// Records `m` and writes the file.
    pub fn set(&self, m: RequestMode) -> Result<(), PersistError> {
        let bytes = {
            let mut t = self.table.borrow_mut();
            t.message_request_mode_map
                .entry(m.topic.clone())
                .or_default()
                .insert(m.consumer_group.clone(), m);
            serde_json::to_vec_pretty(&*t).expect("strings and numbers")
        };
        write_atomically(&self.path, &bytes)
    }
}

/// SET_MESSAGE_REQUEST_MODE (401).
pub fn set_mode(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let m: RequestMode = match serde_json::from_slice(req.body) {
        Ok(m) => m,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad SetMessageRequestModeRequestBody: {e}"),
            )
        }
    };
    if m.mode != "PULL" && m.mode != "POP" {
        return conn.respond_error(
            req,
            ResponseCode::INVALID_PARAMETER,
            &format!("mode {:?} is neither PULL nor POP", m.mode),
        );
    }
    if m.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
        return conn.respond_error(
            req,
            ResponseCode::NO_PERMISSION,
            "retry topic is not allowed to set mode",
        );
    }
    if m.topic.is_empty() || m.consumer_group.is_empty() {
        return conn.respond_error(
            req,
            ResponseCode::INVALID_PARAMETER,
            "topic and consumerGroup are required",
        );
    }
    tracing::info!(shard = b.index, topic = %m.topic, group = %m.consumer_group, mode = %m.mode, share = m.pop_share_queue_num, "message request mode set");
    if let Err(e) = b.request_modes.set(m) {
        return conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string());
    }
    if !req.is_oneway() {
        let head = FrameHead::response(ResponseCode::SUCCESS, req.opaque);
        conn.send_frame(req.serialize_type, &head, &(), &[]);
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryAssignmentBody {
    topic: String,
    consumer_group: String,
    client_id: String,
    #[serde(default)]
    strategy_name: String,
    #[serde(default)]
    message_model: String,
}

/// RocketMQ's strategy names (`AllocateMessageQueueStrategy.getName()`).
fn strategy(name: &str) -> Option<Strategy> {
    match name {
        "" | "AVG" => Some(Strategy::Averagely),
        "AVG_BY_CIRCLE" => Some(Strategy::ByCircle),
        "CONSISTENT_HASH" => Some(Strategy::ConsistentHash {
            virtual_nodes: crate::client::rebalance::DEFAULT_VIRTUAL_NODES,
        }),
        _ => None,
    }
}

/// The queues `client` gets: (queue, mode) pairs, deduplicated.
pub fn assign(
    strategy: Strategy,
    client: &str,
    clients: &[String],
    all: &[MessageQueue],
    broadcasting: bool,
    mode: Option<&RequestMode>,
) -> Vec<MessageQueue> {
    let pop = mode.filter(|m| m.mode == "POP");
    let mut out: Vec<MessageQueue> = if broadcasting {
        all.to_vec()
    } else {
        match pop {
            Some(m) if m.pop_share_queue_num <= 0 => all
                .iter()
                .map(|q| MessageQueue::new(q.topic.clone(), q.broker_name.clone(), -1))
                .collect(),
            Some(m) if clients.len() <= all.len() => {
                let mut sorted = clients.to_vec();
                sorted.sort();
                sorted.dedup();
                let mut out = strategy.allocate(client, &sorted, all);
                if let Some(i) = sorted.iter().position(|c| c == client) {
                    for k in 1..=m.pop_share_queue_num as usize {
                        let other = &sorted[(i + k) % sorted.len()];
                        out.extend(strategy.allocate(other, &sorted, all));
                    }
                }
                out
            }
            _ => strategy.allocate(client, clients, all),
        }
    };
    out.sort();
    out.dedup();
    out
}

/// QUERY_ASSIGNMENT (400).
pub fn query_assignment(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let q: QueryAssignmentBody = match serde_json::from_slice(req.body) {
        Ok(q) => q,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad QueryAssignmentRequestBody: {e}"),
            )
        }
    };
    let Some(strategy) = strategy(&q.strategy_name) else {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "QueryLoad: unsupported strategy [{}], consumer: {} (AVG, AVG_BY_CIRCLE, CONSISTENT_HASH)",
                q.strategy_name, q.client_id
            ),
        );
    };
    let broadcasting = q.message_model == "BROADCASTING";
    let mode = b.request_modes.get(&q.topic, &q.consumer_group);
    let clients = b.clients.consumer_ids(&q.consumer_group);
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    crate::runtime::spawn_detached(async move {
        let route = match broker.route_client() {
            Ok(c) => c.fetch_route(&q.topic).await,
            Err(e) => Err(e),
        };
        if oneway {
            return;
        }
        let route = match route {
            Ok(r) => r,
            Err(e) => {
                let remark = format!("QueryLoad: no route of topic {}: {e}", q.topic);
                let mut head = FrameHead::response(ResponseCode::SYSTEM_ERROR, opaque);
                head.remark = Some(&remark);
                return conn.send_frame(st, &head, &(), &[]);
            }
        };
        let all = crate::client::instance::subscribe_queues(&q.topic, &route);
        let queues = assign(
            strategy,
            &q.client_id,
            &clients,
            &all,
            broadcasting,
            mode.as_ref(),
        );
        let mode_name = match &mode {
            Some(m) if m.mode == "POP" && !broadcasting => "POP",
            _ => "PULL",
        };
        let list: Vec<serde_json::Value> = queues
            .iter()
            .map(|mq| {
                serde_json::json!({
                    "messageQueue": {
                        "topic": mq.topic,
                        "brokerName": mq.broker_name,
                        "queueId": mq.queue_id,
                    },
                    "mode": mode_name,
                    "attachments": {},
                })
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "messageQueueAssignments": list }))
            .expect("strings and numbers");
        let head = FrameHead::response(ResponseCode::SUCCESS, opaque);
        conn.send_frame(st, &head, &(), &body);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> Vec<MessageQueue> {
        let mut v = Vec::new();
        for b in ["b0", "b1"] {
            for i in 0..2 {
                v.push(MessageQueue::new("T", b, i));
            }
        }
        v
    }

    #[test]
    fn pop_mode_gives_every_consumer_any_queue_of_every_broker() {
        let clients = vec!["c1".to_string(), "c2".to_string()];
        let m = RequestMode {
            topic: "T".into(),
            consumer_group: "G".into(),
            mode: "POP".into(),
            pop_share_queue_num: 0,
        };
        let a = assign(
            Strategy::Averagely,
            "c2",
            &clients,
            &queues(),
            false,
            Some(&m),
        );
        assert_eq!(
            a,
            vec![
                MessageQueue::new("T", "b0", -1),
                MessageQueue::new("T", "b1", -1)
            ]
        );
        // Sharing with one neighbour: c1's own two queues plus c2's.
        let share = RequestMode {
            pop_share_queue_num: 1,
            ..m
        };
        let a = assign(
            Strategy::Averagely,
            "c1",
            &clients,
            &queues(),
            false,
            Some(&share),
        );
        assert_eq!(a, queues());
        // PULL (or no mode): the strategy's share.
        let a = assign(Strategy::Averagely, "c1", &clients, &queues(), false, None);
        assert_eq!(
            a,
            vec![
                MessageQueue::new("T", "b0", 0),
                MessageQueue::new("T", "b0", 1)
            ]
        );
        // Broadcasting: everything.
        assert_eq!(
            assign(Strategy::Averagely, "c1", &clients, &queues(), true, None),
            queues()
        );
        // A client the broker does not know gets nothing.
        assert!(assign(Strategy::Averagely, "c9", &clients, &queues(), false, None).is_empty());
    }

    #[test]
    fn modes_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let m = RequestModes::open(dir.path()).unwrap();
        assert!(m.get("T", "G").is_none());
        m.set(RequestMode {
            topic: "T".into(),
            consumer_group: "G".into(),
            mode: "POP".into(),
            pop_share_queue_num: 2,
        })
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(MODES_FILE)).unwrap();
        assert!(text.contains("messageRequestModeMap"), "{text}");
        let again = RequestModes::open(dir.path()).unwrap();
        let got = again.get("T", "G").unwrap();
        assert_eq!(got.mode, "POP");
        assert_eq!(got.pop_share_queue_num, 2);
        std::fs::write(dir.path().join(MODES_FILE), b"{").unwrap();
        assert!(RequestModes::open(dir.path()).is_err());
    }
}
