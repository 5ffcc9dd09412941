//! A name-keyed table of one shard kept as one JSON file in RocketMQ's wrapper shape,
//! `{"dataVersion": {...}, "<table key>": {name: value}}`: the topic configs
//! (`topicConfigTable`) and the subscription groups (`subscriptionGroupTable`). The data
//! version moves with every change, so that name servers and slaves notice them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::namesrv_host::now_ms;
use super::persist::{read_optional, write_atomically, PersistError};
use super::topics::DataVersion;

/// Why a table could not be read: the file (or a master's reply) is not the wrapper.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub struct VersionedTable<V> {
    path: PathBuf,
    key: &'static str,
    pub table: RefCell<BTreeMap<String, V>>,
    version: Cell<DataVersion>,
}

fn decode<V: DeserializeOwned>(
    bytes: &[u8],
    key: &str,
) -> Result<(DataVersion, BTreeMap<String, V>), serde_json::Error> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    let version = serde_json::from_value(v["dataVersion"].take())?;
    let table = match v[key].take() {
        serde_json::Value::Null => BTreeMap::new(),
        t => serde_json::from_value(t)?,
    };
    Ok((version, table))
}

impl<V: Serialize + DeserializeOwned + Clone> VersionedTable<V> {
    /// Loads `path` (empty, with a fresh data version, when absent).
    pub fn open(path: PathBuf, key: &'static str) -> Result<VersionedTable<V>, LoadError> {
        let (version, table) = match read_optional(&path)? {
            Some(bytes) => decode(&bytes, key).map_err(|source| LoadError::Corrupt {
                path: path.clone(),
                source,
            })?,
            None => (
                DataVersion {
                    timestamp: now_ms(),
                    counter: 0,
                    state_version: 0,
                },
                BTreeMap::new(),
            ),
        };
        Ok(VersionedTable {
            path,
            key,
            table: RefCell::new(table),
            version: Cell::new(version),
        })
    }

    pub fn version(&self) -> DataVersion {
        self.version.get()
    }

    /// Moves the data version (after a change of the table).
    pub fn bump(&self) {
        let v = self.version.get();
        self.version.set(DataVersion {
            timestamp: now_ms(),
            counter: v.counter + 1,
            state_version: v.state_version,
        });
    }

    /// The wrapper: the data version and the table.
    pub fn wrapper_json(&self) -> serde_json::Value {
        serde_json::json!({
            "dataVersion": self.version.get(),
            self.key: &*self.table.borrow(),
        })
    }

    /// Takes a master's wrapper when its data version differs from the one held: the table
    /// is replaced and the version copied (the caller writes the file). Returns whether
    /// anything changed.
    pub fn take(&self, wrapper: &[u8], what: &str) -> Result<bool, LoadError> {
        let (version, table) = decode(wrapper, self.key).map_err(|source| LoadError::Corrupt {
            path: PathBuf::from(what),
            source,
        })?;
        if version == self.version.get() {
            return Ok(false);
        }
        *self.table.borrow_mut() = table;
        self.version.set(version);
        Ok(true)
    }

    /// Writes the file atomically (on the calling thread).
    pub fn persist(&self) -> Result<(), PersistError> {
        // Strings, numbers and maps of them always serialize.
        let bytes = serde_json::to_vec_pretty(&self.wrapper_json()).unwrap_or_default();
        write_atomically(&self.path, &bytes)
    }
}
