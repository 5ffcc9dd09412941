//! Topic configs of one shard (`config/topics.json`, RocketMQ's TopicConfigSerializeWrapper
//! shape), auto-creation from the `TBW102` template, and the data version the name server uses
//! to notice changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::persist::PersistError;
use super::versioned::{LoadError, VersionedTable};

pub const TOPICS_FILE: &str = "topics.json";
/// The auto-create template topic (RocketMQ `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const RETRY_PREFIX: &str = ramjet_core::remoting::RETRY_GROUP_TOPIC_PREFIX;
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Topics producers may not send to (RocketMQ system topics with their own writers).
pub const NOT_ALLOWED_SEND_TOPICS: [&str; 7] = [
    "SCHEDULE_TOPIC_XXXX",
    ramjet_storage::schedule::TIMER_TOPIC,
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];
pub const MAX_TOPIC_LEN: usize = 127;
pub const MAX_SYSTEM_TOPIC_LEN: usize = 255;
/// Most queues a topic may have on one shard.
pub const MAX_QUEUES_PER_TOPIC: u32 = 1024;

pub const PERM_INHERIT: i32 = 1;
pub const PERM_WRITE: i32 = 2;
pub const PERM_READ: i32 = 4;

impl TopicError {
    fn from_load(e: LoadError) -> TopicError {
        match e {
            LoadError::Persist(e) => TopicError::Persist(e),
            LoadError::Corrupt { path, source } => TopicError::Corrupt { path, source },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("topic file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("topic name {name:?} is invalid: {why}")]
    InvalidName { name: String, why: String },
    #[error("queue count {value} for topic {topic} is out of range 1..={max}")]
    BadQueueCount { topic: String, value: i64, max: u32 },
}

/// One topic's config, serialized with RocketMQ's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: i32,
    #[serde(default = "single_tag")]
    pub topic_filter_type: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub order: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

fn single_tag() -> String {
    "SINGLE_TAG".into()
}

impl TopicConfig {
    pub fn new(name: &str, queues: u32, perm: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }

    pub fn readable(&self) -> bool {
        self.perm & PERM_READ != 0
    }

    pub fn writable(&self) -> bool {
        self.perm & PERM_WRITE != 0
    }

    pub fn max_queues(&self) -> u32 {
        self.read_queue_nums.max(self.write_queue_nums)
    }
}

/// RocketMQ's DataVersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    pub timestamp: i64,
    pub counter: i64,
    #[serde(default)]
    pub state_version: i64,
}

/// Checks RocketMQ's topic name rule: `[%|a-zA-Z0-9_-]`, at most 127 bytes (255 for retry/DLQ).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why: String| {
        Err(TopicError::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return invalid("empty".into());
    }
    let max = if name.starts_with(RETRY_PREFIX) || name.starts_with(DLQ_PREFIX) {
        MAX_SYSTEM_TOPIC_LEN
    } else {
        MAX_TOPIC_LEN
    };
    if name.len() > max {
        return invalid(format!("{} bytes, the limit is {max}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return invalid(format!(
            "character {c:?} not allowed; allowed: %|a-zA-Z0-9_-"
        ));
    }
    Ok(())
}

/// One shard's topic table.
pub struct TopicManager {
    t: VersionedTable<TopicConfig>,
}

/// Outcome of an auto-create lookup on send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTopic {
    Existing(TopicConfig),
    /// Newly created: the caller registers with the name server at once.
    Created(TopicConfig),
    /// Missing and not creatable.
    Missing,
}

impl TopicManager {
    /// Loads `<config_dir>/topics.json` and adds the system topics if missing (among them
    /// the cluster's reply topic, `<cluster>_REPLY_TOPIC`, where request-reply answers go).
    pub fn open(
        config_dir: &Path,
        auto_create: bool,
        default_queue_nums: u32,
        reply_topic: &str,
    ) -> Result<TopicManager, TopicError> {
        let t = VersionedTable::open(config_dir.join(TOPICS_FILE), "topicConfigTable")
            .map_err(TopicError::from_load)?;
        let m = TopicManager { t };
        {
            let mut t = m.t.table.borrow_mut();
            let tbw_perm = if auto_create {
                PERM_INHERIT | PERM_READ | PERM_WRITE
            } else {
                PERM_READ | PERM_WRITE
            };
            let q = default_queue_nums.clamp(1, MAX_QUEUES_PER_TOPIC);
            t.insert(
                AUTO_CREATE_TOPIC.into(),
                TopicConfig::new(AUTO_CREATE_TOPIC, q, tbw_perm),
            );
            t.entry(SELF_TEST_TOPIC.into())
                .or_insert_with(|| TopicConfig::new(SELF_TEST_TOPIC, 1, PERM_READ | PERM_WRITE));
            t.entry(OFFSET_MOVED_EVENT.into())
                .or_insert_with(|| TopicConfig::new(OFFSET_MOVED_EVENT, 1, PERM_READ | PERM_WRITE));
            t.entry(reply_topic.into())
                .or_insert_with(|| TopicConfig::new(reply_topic, 1, PERM_READ | PERM_WRITE));
        }
        Ok(m)
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.t.table.borrow().get(topic).cloned()
    }

    /// Queue bounds without cloning the config (hot path): (read, write, perm).
    pub fn queue_info(&self, topic: &str) -> Option<(u32, u32, i32)> {
        self.t
            .table
            .borrow()
            .get(topic)
            .map(|c| (c.read_queue_nums, c.write_queue_nums, c.perm))
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.t.table.borrow().contains_key(topic)
    }

    pub fn all(&self) -> Vec<TopicConfig> {
        self.t.table.borrow().values().cloned().collect()
    }

    pub fn data_version(&self) -> DataVersion {
        self.t.version()
    }

    /// Creates or replaces a topic and persists.
    pub fn upsert(&self, cfg: TopicConfig) -> Result<(), TopicError> {
        self.upsert_all(vec![cfg])
    }

    /// Adds or replaces every topic of `cfgs`, all or none (each is checked first), and
    /// writes the file once.
    pub fn upsert_all(&self, cfgs: Vec<TopicConfig>) -> Result<(), TopicError> {
        for cfg in &cfgs {
            validate_topic_name(&cfg.topic_name)?;
            for v in [cfg.read_queue_nums, cfg.write_queue_nums] {
                if v == 0 || v > MAX_QUEUES_PER_TOPIC {
                    return Err(TopicError::BadQueueCount {
                        topic: cfg.topic_name.clone(),
                        value: v as i64,
                        max: MAX_QUEUES_PER_TOPIC,
                    });
                }
            }
        }
        {
            let mut t = self.t.table.borrow_mut();
            for cfg in cfgs {
                t.insert(cfg.topic_name.clone(), cfg);
            }
        }
        self.t.bump();
        self.persist()
    }

    /// Removes a topic; returns whether it existed.
    pub fn remove(&self, topic: &str) -> Result<bool, TopicError> {
        let existed = self.t.table.borrow_mut().remove(topic).is_some();
        if existed {
            self.t.bump();
            self.persist()?;
        }
        Ok(existed)
    }

    /// The send path's lookup: an existing topic, or one created from the `default_topic`
    /// template (it must carry PERM_INHERIT) with min(requested, template) queues.
    pub fn for_send(
        &self,
        topic: &str,
        default_topic: &str,
        requested_queues: i32,
    ) -> Result<SendTopic, TopicError> {
        if let Some(c) = self.t.table.borrow().get(topic) {
            return Ok(SendTopic::Existing(c.clone()));
        }
        validate_topic_name(topic)?;
        let cfg = if topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX) {
            TopicConfig::new(topic, 1, PERM_READ | PERM_WRITE)
        } else {
            let Some(tpl) = self.get(default_topic) else {
                return Ok(SendTopic::Missing);
            };
            if tpl.perm & PERM_INHERIT == 0 {
                return Ok(SendTopic::Missing);
            }
            let q = (requested_queues.max(1) as u32)
                .min(tpl.write_queue_nums)
                .max(1);
            TopicConfig::new(topic, q, tpl.perm & !PERM_INHERIT)
        };
        self.upsert(cfg.clone())?;
        Ok(SendTopic::Created(cfg))
    }

    /// Creates `topic` with `queues` queues unless it exists (retry topics from heartbeats).
    /// Returns the config and whether it was created.
    pub fn ensure(
        &self,
        topic: &str,
        queues: u32,
        perm: i32,
    ) -> Result<(TopicConfig, bool), TopicError> {
        if let Some(c) = self.get(topic) {
            return Ok((c, false));
        }
        let cfg = TopicConfig::new(topic, queues, perm);
        self.upsert(cfg.clone())?;
        Ok((cfg, true))
    }

    /// A slave takes its master's table (GET_ALL_TOPIC_CONFIG body) when its data version
    /// differs from the one taken last: the table is replaced, the version copied, and the file
    /// written. Returns whether anything changed.
    pub fn take_from_master(&self, wrapper: &[u8]) -> Result<bool, TopicError> {
        let moved = self
            .t
            .take(wrapper, "<GET_ALL_TOPIC_CONFIG reply>")
            .map_err(TopicError::from_load)?;
        if moved {
            self.persist()?;
        }
        Ok(moved)
    }

    /// The TopicConfigSerializeWrapper JSON (GET_ALL_TOPIC_CONFIG body, REGISTER_BROKER part).
    pub fn wrapper_json(&self) -> serde_json::Value {
        self.t.wrapper_json()
    }

    pub fn persist(&self) -> Result<(), TopicError> {
        Ok(self.t.persist()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_create_from_template_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicManager::open(dir.path(), true, 8, "C_REPLY_TOPIC").unwrap();
        assert_eq!(m.get(AUTO_CREATE_TOPIC).unwrap().perm, 7);
        let v0 = m.data_version().counter;
        match m.for_send("T1", AUTO_CREATE_TOPIC, 4).unwrap() {
            SendTopic::Created(c) => {
                assert_eq!((c.read_queue_nums, c.write_queue_nums, c.perm), (4, 4, 6));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.data_version().counter, v0 + 1);
        assert!(matches!(
            m.for_send("T1", AUTO_CREATE_TOPIC, 4).unwrap(),
            SendTopic::Existing(_)
        ));
        // Requested more than the template has: capped at 8.
        match m.for_send("T2", AUTO_CREATE_TOPIC, 64).unwrap() {
            SendTopic::Created(c) => assert_eq!(c.write_queue_nums, 8),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.for_send("T3", "NOPE", 4).unwrap(), SendTopic::Missing);
        assert!(m.for_send("bad topic", AUTO_CREATE_TOPIC, 4).is_err());

        let r = TopicManager::open(dir.path(), true, 8, "C_REPLY_TOPIC").unwrap();
        assert_eq!(r.get("T1").unwrap().write_queue_nums, 4);
        assert_eq!(r.get("T2").unwrap().write_queue_nums, 8);
        assert_eq!(r.data_version(), m.data_version());
        assert!(r.remove("T1").unwrap());
        assert!(!r.remove("T1").unwrap());
    }

    #[test]
    fn no_auto_create_without_inherit() {
        let dir = tempfile::tempdir().unwrap();
        let m = TopicManager::open(dir.path(), false, 8, "C_REPLY_TOPIC").unwrap();
        assert_eq!(
            m.for_send("T1", AUTO_CREATE_TOPIC, 4).unwrap(),
            SendTopic::Missing
        );
        // Retry topics are always creatable (1 queue).
        match m.for_send("%RETRY%G", AUTO_CREATE_TOPIC, 4).unwrap() {
            SendTopic::Created(c) => assert_eq!(c.write_queue_nums, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn name_rules() {
        validate_topic_name("Ab_9-%|x").unwrap();
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(&"a".repeat(128)).is_err());
        validate_topic_name(&format!("%RETRY%{}", "a".repeat(200))).unwrap();
        assert!(validate_topic_name("a.b").is_err());
    }
}
