//! Consumer offsets kept by the client between commits.
//!
//! Clustering groups commit to the broker that owns the queue (UPDATE_CONSUMER_OFFSET); the
//! broker is the source of truth. Broadcasting groups keep offsets in a local JSON file per
//! (client, group) like the Java client's `LocalFileOffsetStore`, written atomically (temp file,
//! fsync, rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ClientError;
use super::queue::MessageQueue;

/// On-disk form: one entry per queue.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct OffsetFile {
    offsets: Vec<OffsetEntry>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct OffsetEntry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

/// In-memory offsets of one group, with the dirty set since the last persist.
#[derive(Debug, Default)]
pub struct OffsetTable {
    offsets: BTreeMap<MessageQueue, i64>,
    dirty: BTreeMap<MessageQueue, i64>,
}

impl OffsetTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the next offset to consume; offsets only move forward unless `force`.
    pub fn update(&mut self, mq: &MessageQueue, offset: i64, force: bool) {
        let cur = self.offsets.get(mq).copied();
        if force || cur.is_none_or(|c| offset > c) {
            self.offsets.insert(mq.clone(), offset);
            self.dirty.insert(mq.clone(), offset);
        }
    }

    pub fn get(&self, mq: &MessageQueue) -> Option<i64> {
        self.offsets.get(mq).copied()
    }

    pub fn remove(&mut self, mq: &MessageQueue) {
        self.offsets.remove(mq);
        self.dirty.remove(mq);
    }

    /// Offsets changed since the last call.
    pub fn take_dirty(&mut self) -> Vec<(MessageQueue, i64)> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub fn all(&self) -> Vec<(MessageQueue, i64)> {
        self.offsets.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Local file store for broadcasting groups.
#[derive(Debug, Clone)]
pub struct LocalOffsetFile {
    path: PathBuf,
}

impl LocalOffsetFile {
    /// `<dir>/<client id>/<group>/offsets.json`.
    pub fn new(dir: &Path, client_id: &str, group: &str) -> Self {
        let safe = |s: &str| s.replace(['/', '\\', ':'], "_");
        LocalOffsetFile {
            path: dir
                .join(safe(client_id))
                .join(safe(group))
                .join("offsets.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: std::io::Error) -> ClientError {
        ClientError::OffsetFile {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// All stored offsets (empty when the file does not exist yet).
    pub fn load(&self) -> Result<BTreeMap<MessageQueue, i64>, ClientError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err(e)),
        };
        let file: OffsetFile = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Ok(file
            .offsets
            .into_iter()
            .map(|e| {
                (
                    MessageQueue::new(e.topic, e.broker_name, e.queue_id),
                    e.offset,
                )
            })
            .collect())
    }

    /// Replace the file with `offsets`, atomically.
    pub fn store(&self, offsets: &[(MessageQueue, i64)]) -> Result<(), ClientError> {
        let file = OffsetFile {
            offsets: offsets
                .iter()
                .map(|(mq, o)| OffsetEntry {
                    topic: mq.topic.clone(),
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                    offset: *o,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| self.err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.err(e))?;
        f.write_all(&json).map_err(|e| self.err(e))?;
        f.sync_all().map_err(|e| self.err(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_moves_forward_and_tracks_dirty() {
        let mut t = OffsetTable::new();
        let q = MessageQueue::new("T", "b", 0);
        t.update(&q, 5, false);
        t.update(&q, 3, false);
        assert_eq!(t.get(&q), Some(5));
        assert_eq!(t.take_dirty(), vec![(q.clone(), 5)]);
        assert!(t.take_dirty().is_empty());
        t.update(&q, 2, true);
        assert_eq!(t.get(&q), Some(2));
        assert_eq!(t.take_dirty(), vec![(q, 2)]);
    }

    #[test]
    fn local_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = LocalOffsetFile::new(dir.path(), "1.2.3.4@9#1", "G");
        assert!(f.load().expect("empty").is_empty());
        let q0 = MessageQueue::new("T", "b", 0);
        let q1 = MessageQueue::new("T", "b", 1);
        f.store(&[(q0.clone(), 10), (q1.clone(), 20)])
            .expect("store");
        let back = f.load().expect("load");
        assert_eq!(back.get(&q0), Some(&10));
        assert_eq!(back.get(&q1), Some(&20));
        f.store(&[(q0.clone(), 11)]).expect("store again");
        assert_eq!(f.load().expect("load").len(), 1);
    }
}
