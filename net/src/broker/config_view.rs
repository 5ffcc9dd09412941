//! GET_BROKER_CONFIG (26, `mqadmin getBrokerConfig`): one shard's configuration as Java
//! properties text (`key=value` lines, keys sorted).
//!
//! Two sets of keys: RocketMQ's names for what has an equivalent here (`brokerName`,
//! `listenPort`, `flushDiskType`, `brokerRole`, `storePathRootDir`, `fileReservedTime`, ...),
//! with this shard's values, so that tools reading a Java broker's keys find them; and every
//! ramjet setting as `section.key` (`store.flush`, `broker.long_poll_max_ms`, ...), as the
//! TOML file names it, defaults included. Secrets are masked.
//!
//! UPDATE_BROKER_CONFIG (25) is refused with REQUEST_CODE_NOT_SUPPORTED: settings are read
//! from the TOML file at start, and none changes while the broker runs.

use std::collections::BTreeMap;
use std::rc::Rc;

use ramjet_core::remoting::body::DataVersion;
use ramjet_core::remoting::headers::GetBrokerConfigResponseHeader;
use ramjet_core::remoting::{CommandView, ResponseCode};

use super::conn::Conn;
use super::shard::Broker;

/// Settings whose values never leave the broker.
const SECRET_KEYS: &[&str] = &["broker.acl_secret_key"];

/// A TOML value as one properties value: arrays joined by `;` (as RocketMQ writes
/// `namesrvAddr`), tables left out (none today).
fn prop_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null | serde_json::Value::Object(_) => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(prop_value)
                .collect::<Vec<_>>()
                .join(";"),
        ),
        other => Some(other.to_string()),
    }
}

/// The shard's configuration, key -> value.
pub fn config_table(b: &Broker) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let cfg = &b.cfg;
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(&**cfg) {
        for (section, fields) in sections {
            let serde_json::Value::Object(fields) = fields else {
                continue;
            };
            for (key, v) in fields {
                let name = format!("{section}.{key}");
                let Some(mut value) = prop_value(&v) else {
                    continue;
                };
                if SECRET_KEYS.contains(&name.as_str()) && !value.is_empty() {
                    value = "******".into();
                }
                t.insert(name, value);
            }
        }
    }
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    let dir = cfg.broker.data_dir.join(format!("shard-{}", b.index));
    put("brokerClusterName", b.cluster.clone());
    put("brokerName", b.broker_name.clone());
    put("brokerId", cfg.broker_id().to_string());
    put("brokerIP1", b.addr.ip().to_string());
    put("listenPort", b.addr.port().to_string());
    put("namesrvAddr", cfg.broker.namesrv_addrs.join(";"));
    put(
        "brokerRole",
        if b.ha.is_slave() {
            "SLAVE"
        } else if b.ha.is_sync() {
            "SYNC_MASTER"
        } else {
            "ASYNC_MASTER"
        }
        .into(),
    );
    put(
        "flushDiskType",
        if cfg.store.flush == "sync" {
            "SYNC_FLUSH"
        } else {
            "ASYNC_FLUSH"
        }
        .into(),
    );
    put("storePathRootDir", dir.display().to_string());
    put(
        "storePathCommitLog",
        dir.join("commitlog").display().to_string(),
    );
    put(
        "mappedFileSizeCommitLog",
        cfg.store.segment_size_bytes.to_string(),
    );
    put(
        "mappedFileSizeConsumeQueue",
        (u64::from(cfg.store.cq_units_per_file) * 20).to_string(),
    );
    put(
        "flushIntervalCommitLog",
        cfg.store.flush_interval_ms.to_string(),
    );
    put("fileReservedTime", cfg.store.retention_hours.to_string());
    put(
        "diskMaxUsedSpaceRatio",
        format!("{}", (cfg.store.disk_clean_ratio * 100.0).round()),
    );
    put("maxMessageSize", cfg.broker.max_message_bytes.to_string());
    put("messageDelayLevel", cfg.broker.message_delay_level.clone());
    put(
        "autoCreateTopicEnable",
        cfg.broker.auto_create_topic.to_string(),
    );
    put(
        "defaultTopicQueueNums",
        cfg.broker.default_topic_queue_nums.to_string(),
    );
    put(
        "autoCreateSubscriptionGroup",
        cfg.broker.auto_create_subscription_group.to_string(),
    );
    put(
        "enablePropertyFilter",
        cfg.broker.enable_property_filter.to_string(),
    );
    put("aclEnable", cfg.broker.acl_enable.to_string());
    put("longPollingEnable", "true".into());
    put("slaveReadEnable", cfg.broker.slave_read_enable.to_string());
    put("transferMsgByHeap", (!cfg.broker.zero_copy).to_string());
    put("timerWheelEnable", cfg.broker.timer_enable.to_string());
    put(
        "rejectTransactionMessage",
        cfg.broker.reject_transaction_message.to_string(),
    );
    t
}

/// Java's properties text of `t`.
fn properties(t: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(t.len() * 40);
    for (k, v) in t {
        out.push_str(k);
        out.push('=');
        // One value per line: a line break inside one would start a new key.
        out.push_str(&v.replace(['\n', '\r'], " "));
        out.push('\n');
    }
    out
}

pub fn get_config(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = properties(&config_table(b));
    let version = DataVersion {
        counter: 0,
        state_version: 0,
        timestamp: b.boot_ms,
    };
    let version = serde_json::to_string(&version).unwrap_or_default();
    conn.respond(
        req,
        ResponseCode::SUCCESS,
        None,
        &GetBrokerConfigResponseHeader { version: &version },
        body.as_bytes(),
    );
}

pub fn update_config(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let keys: Vec<&str> = std::str::from_utf8(req.body)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    tracing::warn!(shard = b.index, keys = ?keys, peer = %conn.peer(), "UPDATE_BROKER_CONFIG refused: settings are read from the TOML file at start");
    b.not_supported_with(
        conn,
        req,
        &format!(
            "ramjet reads its settings from its TOML file (ramjet start --config FILE) at start and changes none while running; set {} there and restart the broker",
            if keys.is_empty() { "them".to_string() } else { keys.join(", ") }
        ),
    );
}
