//! Subscription groups of one shard (RocketMQ's SubscriptionGroupManager): a group's consume
//! settings, `config/subscriptionGroup.json`, and the admin requests that change them:
//! UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200, `mqadmin updateSubGroup`),
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), DELETE_SUBSCRIPTIONGROUP (207) and
//! GET_SUBSCRIPTIONGROUP_CONFIG (352).
//!
//! With `broker.auto_create_subscription_group` (the default) a group is created with
//! RocketMQ's defaults the first time a heartbeat, pull or send-back names it; without it, a
//! group must be created first, and pulls and send-backs of any other answer
//! SUBSCRIPTION_GROUP_NOT_EXIST. What a group's settings do:
//! - `consumeEnable = false`: its pulls answer NO_PERMISSION;
//! - `consumeBroadcastEnable = false`: pulls of its broadcasting members answer NO_PERMISSION;
//! - `retryMaxTimes`: reconsumes before the dead-letter queue, for send-backs and retry sends
//!   that do not carry `maxReconsumeTimes`;
//! - `retryQueueNums`: queues of `%RETRY%<group>` when a heartbeat creates it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ramjet_core::remoting::headers::{
    DeleteSubscriptionGroupRequestHeader, GetSubscriptionGroupConfigRequestHeader,
};
use ramjet_core::remoting::{CommandView, ResponseCode};
use serde::{Deserialize, Serialize};

use super::conn::Conn;
use super::persist::PersistError;
use super::queries::decode;
use super::shard::Broker;
use super::versioned::{LoadError, VersionedTable};

/// File name under the shard's `config/` directory (RocketMQ's name).
pub const GROUPS_FILE: &str = "subscriptionGroup.json";

/// Most retry queues a group may ask for.
const MAX_RETRY_QUEUES: i32 = 64;

impl GroupError {
    fn from_load(e: LoadError) -> GroupError {
        match e {
            LoadError::Persist(e) => GroupError::Persist(e),
            LoadError::Corrupt { path, source } => GroupError::Corrupt { path, source },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("subscription group file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("subscription group config: {0}")]
    Invalid(String),
}

fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}
fn fifteen() -> i64 {
    15
}

/// RocketMQ's SubscriptionGroupConfig, its field names and defaults. Fields ramjet does not
/// act on are kept as sent (and shown again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupConfig {
    pub group_name: String,
    #[serde(default = "yes")]
    pub consume_enable: bool,
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    #[serde(default)]
    pub consume_message_orderly: bool,
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    #[serde(default)]
    pub broker_id: i64,
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default)]
    pub group_sys_flag: i32,
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl GroupConfig {
    /// RocketMQ's defaults.
    pub fn new(name: &str) -> GroupConfig {
        GroupConfig {
            group_name: name.to_string(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
        }
    }

    fn check(&self) -> Result<(), GroupError> {
        if self.group_name.trim().is_empty() {
            return Err(GroupError::Invalid("groupName is empty".into()));
        }
        super::topics::validate_topic_name(&self.group_name)
            .map_err(|e| GroupError::Invalid(format!("groupName: {e}")))?;
        if !(1..=MAX_RETRY_QUEUES).contains(&self.retry_queue_nums) {
            return Err(GroupError::Invalid(format!(
                "retryQueueNums {} out of 1..={MAX_RETRY_QUEUES}",
                self.retry_queue_nums
            )));
        }
        if self.retry_max_times < -1 {
            return Err(GroupError::Invalid(format!(
                "retryMaxTimes {} below -1",
                self.retry_max_times
            )));
        }
        Ok(())
    }
}

/// One shard's subscription groups.
pub struct Groups {
    t: VersionedTable<GroupConfig>,
    auto_create: bool,
    /// `retryMaxTimes` of groups created automatically (`broker.retry_max_times`).
    default_retry_max: i32,
    /// Changed in memory but not yet written (the write failed, e.g. on a full disk): retried
    /// by [`Groups::persist_if_dirty`].
    dirty: Cell<bool>,
    write_warn: ramjet_core::ratelog::LogEvery,
}

impl Groups {
    /// Loads `<config_dir>/subscriptionGroup.json` (empty when absent). Groups created
    /// automatically (`auto_create`) get `default_retry_max` as their `retryMaxTimes`.
    pub fn open(
        config_dir: &Path,
        auto_create: bool,
        default_retry_max: i32,
    ) -> Result<Groups, GroupError> {
        let t = VersionedTable::open(config_dir.join(GROUPS_FILE), "subscriptionGroupTable")
            .map_err(GroupError::from_load)?;
        Ok(Groups {
            t,
            auto_create,
            default_retry_max,
            dirty: Cell::new(false),
            write_warn: ramjet_core::ratelog::LogEvery::default(),
        })
    }

    /// Applies `f` to the group's settings, without cloning them; the group is created with
    /// the defaults (and written) when it is missing and
    /// `broker.auto_create_subscription_group` is on. `None`: it does not exist.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&GroupConfig) -> R) -> Option<R> {
        if let Some(g) = self.t.table.borrow().get(name) {
            return Some(f(g));
        }
        if !self.auto_create {
            return None;
        }
        let g = GroupConfig {
            retry_max_times: self.default_retry_max,
            ..GroupConfig::new(name)
        };
        if let Err(e) = g.check() {
            tracing::warn!(group = name, error = %e, "subscription group not created");
            return None;
        }
        let r = f(&g);
        // In memory at once; a failed write (a full disk) is retried, never a refusal.
        if let Err(e) = self.upsert(g) {
            if let Some(n) = self.write_warn.due() {
                tracing::warn!(group = name, error = %e, failures = n, "subscription group created in memory; writing the file failed, will retry");
            }
        }
        Some(r)
    }

    /// Names of every group with settings, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.t.table.borrow().keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether the group's settings exist (never creates them).
    pub fn contains(&self, name: &str) -> bool {
        self.t.table.borrow().contains_key(name)
    }

    /// The group's settings (see [`Self::with`]).
    pub fn find(&self, name: &str) -> Option<GroupConfig> {
        self.with(name, GroupConfig::clone)
    }

    /// Whether the group may pull (`broadcasting`: whether its members consume by
    /// broadcasting, asked only when the group forbids that): `Err` is the refusal (code,
    /// remark).
    pub fn may_pull(
        &self,
        name: &str,
        broadcasting: impl Fn() -> bool,
    ) -> Result<(), (i32, String)> {
        let allowed = |g: &GroupConfig| {
            if !g.consume_enable {
                return Err((
                    ResponseCode::NO_PERMISSION,
                    format!("subscription group no permission, {name}"),
                ));
            }
            if !g.consume_broadcast_enable && broadcasting() {
                return Err((
                    ResponseCode::NO_PERMISSION,
                    format!("the consumer group[{name}] can not consume by broadcast way"),
                ));
            }
            Ok(())
        };
        self.with(name, allowed).unwrap_or_else(|| {
            Err((
                ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{name}] does not exist"),
            ))
        })
    }

    /// Creates or replaces a group and writes the file. An invalid config changes nothing;
    /// a failed write leaves the change applied in memory and retried later.
    pub fn upsert(&self, g: GroupConfig) -> Result<(), GroupError> {
        self.upsert_all(vec![g])
    }

    /// [`Self::upsert`] of several groups with one write: one invalid config changes nothing.
    pub fn upsert_all(&self, groups: Vec<GroupConfig>) -> Result<(), GroupError> {
        for g in &groups {
            g.check()?;
        }
        let mut table = self.t.table.borrow_mut();
        for g in groups {
            table.insert(g.group_name.clone(), g);
        }
        drop(table);
        self.t.bump();
        self.write()
    }

    /// Removes a group; returns whether it existed (a failed write as in [`Self::upsert`]).
    pub fn remove(&self, name: &str) -> Result<bool, GroupError> {
        let existed = self.t.table.borrow_mut().remove(name).is_some();
        if existed {
            self.t.bump();
            self.write()?;
        }
        Ok(existed)
    }

    /// Writes the file if a change is not on disk yet (the shard's persist tick).
    pub fn persist_if_dirty(&self) -> Result<(), GroupError> {
        if self.dirty.get() {
            self.write()?;
        }
        Ok(())
    }

    fn write(&self) -> Result<(), GroupError> {
        let r = self.t.persist();
        self.dirty.set(r.is_err());
        Ok(r?)
    }

    /// RocketMQ's SubscriptionGroupWrapper (GET_ALL_SUBSCRIPTIONGROUP_CONFIG body).
    pub fn wrapper_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.t.wrapper_json()).unwrap_or_default()
    }

    /// A slave takes its master's groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG body) when the data
    /// version moved; returns whether anything changed.
    pub fn take_from_master(&self, wrapper: &[u8]) -> Result<bool, GroupError> {
        let moved = self
            .t
            .take(wrapper, "<GET_ALL_SUBSCRIPTIONGROUP_CONFIG reply>")
            .map_err(GroupError::from_load)?;
        if moved {
            self.write()?;
        }
        Ok(moved)
    }
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the body is a SubscriptionGroupConfig.
pub fn update_group(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let g: GroupConfig = match ramjet_core::remoting::body::fastjson::from_slice(
        req.body,
        "SubscriptionGroupConfig",
    ) {
        Ok(g) => g,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad SubscriptionGroupConfig body: {e}"),
            )
        }
    };
    let name = g.group_name.clone();
    let r = b.groups.upsert(g);
    answer_upsert(b, conn, req, r, &format!("group {name}"));
}

/// The answer to a group creation: SUCCESS, or SYSTEM_ERROR saying whether the change was
/// applied (a failed write is retried) or refused.
fn answer_upsert(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    r: Result<(), GroupError>,
    what: &str,
) {
    match r {
        Ok(()) => {
            tracing::info!(shard = b.index, groups = %what, "subscription group(s) created or updated");
            conn.respond(req, ResponseCode::SUCCESS, None, &(), &[])
        }
        Err(e @ GroupError::Persist(_)) => conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("{what} applied, but not written yet (retried): {e}"),
        ),
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST (225, 5.x): the body is a SubscriptionGroupList
/// (`{"groupConfigList":[...]}`); applied together, with one write, or not at all.
pub fn update_group_list(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct GroupList {
        group_config_list: Vec<GroupConfig>,
    }
    let list: GroupList = match ramjet_core::remoting::body::fastjson::from_slice(
        req.body,
        "SubscriptionGroupList",
    ) {
        Ok(l) => l,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad SubscriptionGroupList body: {e}"),
            )
        }
    };
    let names: Vec<String> = list
        .group_config_list
        .iter()
        .map(|g| g.group_name.clone())
        .collect();
    let r = b.groups.upsert_all(list.group_config_list);
    answer_upsert(b, conn, req, r, &format!("groups {names:?}"));
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
pub fn all_groups(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.groups.wrapper_json();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

/// GET_SUBSCRIPTIONGROUP_CONFIG: one group, or SUBSCRIPTION_GROUP_NOT_EXIST.
pub fn get_group(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<GetSubscriptionGroupConfigRequestHeader>(conn, req) else {
        return;
    };
    match b.groups.t.table.borrow().get(h.group) {
        Some(g) => {
            let body = serde_json::to_vec(g).unwrap_or_default();
            conn.respond(req, ResponseCode::SUCCESS, None, &(), &body)
        }
        None => conn.respond_error(
            req,
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            &format!("The consumer group {} not exist", h.group),
        ),
    }
}

/// DELETE_SUBSCRIPTIONGROUP (with `cleanOffset`: its committed offsets too).
pub fn delete_group(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = decode::<DeleteSubscriptionGroupRequestHeader>(conn, req) else {
        return;
    };
    match b.groups.remove(h.group_name) {
        Ok(existed) => {
            if h.clean_offset == Some(true) {
                b.offsets.remove_group(h.group_name);
            }
            tracing::info!(
                shard = b.index,
                group = h.group_name,
                existed,
                "subscription group deleted"
            );
            conn.respond(req, ResponseCode::SUCCESS, None, &(), &[])
        }
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_created_read_back_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = Groups::open(dir.path(), false, 16).unwrap();
        assert_eq!(g.find("G1"), None, "created without auto-create");
        assert_eq!(
            g.may_pull("G1", || false).unwrap_err().0,
            ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST
        );
        // Java's body: unknown and missing fields take RocketMQ's defaults.
        let body = br#"{"groupName":"G1","consumeEnable":false,"retryMaxTimes":3,"extra":1}"#;
        let c: GroupConfig =
            ramjet_core::remoting::body::fastjson::from_slice(body, "SubscriptionGroupConfig")
                .unwrap();
        assert_eq!((c.retry_queue_nums, c.consume_broadcast_enable), (1, true));
        g.upsert(c).unwrap();
        assert_eq!(
            g.may_pull("G1", || false).unwrap_err().0,
            ResponseCode::NO_PERMISSION
        );
        let mut c = g.find("G1").unwrap();
        c.consume_enable = true;
        c.consume_broadcast_enable = false;
        g.upsert(c).unwrap();
        assert!(g.may_pull("G1", || false).is_ok());
        assert_eq!(
            g.may_pull("G1", || true).unwrap_err().0,
            ResponseCode::NO_PERMISSION
        );
        let mut bad = GroupConfig::new("G2");
        bad.retry_queue_nums = 0;
        assert!(g.upsert(bad).is_err());
        assert!(g.upsert(GroupConfig::new("bad name")).is_err());
        // Read back from the file.
        let r = Groups::open(dir.path(), false, 16).unwrap();
        assert_eq!(r.find("G1").map(|c| c.retry_max_times), Some(3));
        assert!(r.remove("G1").unwrap());
        assert!(!r.remove("G1").unwrap());
        // Auto-create: defaults, written.
        let a = Groups::open(dir.path(), true, 16).unwrap();
        assert_eq!(a.find("G3"), Some(GroupConfig::new("G3")));
        let v: serde_json::Value = serde_json::from_slice(&a.wrapper_json()).unwrap();
        assert_eq!(v["subscriptionGroupTable"]["G3"]["retryMaxTimes"], 16);
        assert!(v["dataVersion"]["counter"].as_i64().unwrap() > 0);
    }

    #[test]
    fn a_failed_write_keeps_the_group_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let g = Groups::open(&config, true, 7).unwrap();
        // A file where the directory should be: every write fails (as on a full disk).
        std::fs::write(&config, b"not a directory").unwrap();
        assert_eq!(g.find("G").map(|c| c.retry_max_times), Some(7));
        assert!(g.may_pull("G", || false).is_ok());
        assert!(g.dirty.get());
        assert!(g.persist_if_dirty().is_err());
        std::fs::remove_file(&config).unwrap();
        g.persist_if_dirty().unwrap();
        assert!(!g.dirty.get());
        let r = Groups::open(&config, false, 16).unwrap();
        assert_eq!(r.find("G").map(|c| c.retry_max_times), Some(7));
    }
}
