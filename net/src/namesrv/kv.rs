//! Name server KV config (PUT/GET/DELETE_KV_CONFIG, GET_KVLIST_BY_NAMESPACE), in memory.
//! RocketMQ persists it to `kvConfig.json`; ramjet's name server state is rebuilt from broker
//! registrations, and the only namespace clients read (`ORDER_TOPIC_CONFIG`) is config-driven.

use std::collections::BTreeMap;

/// Namespace of per-topic order configuration (`"brokerA:4;brokerB:4"`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// namespace -> key -> value.
#[derive(Debug, Clone, Default)]
pub struct KvConfig {
    table: BTreeMap<String, BTreeMap<String, String>>,
}

impl KvConfig {
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) {
        self.table
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.table.get(namespace)?.get(key).map(String::as_str)
    }

    pub fn delete(&mut self, namespace: &str, key: &str) {
        if let Some(ns) = self.table.get_mut(namespace) {
            ns.remove(key);
            if ns.is_empty() {
                self.table.remove(namespace);
            }
        }
    }

    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.table.get(namespace)
    }
}
