//! Consumer offsets of one shard: (topic, group, queue) -> next offset to consume.
//!
//! Updated by UPDATE_CONSUMER_OFFSET and by the commit offset piggy-backed on pulls; persisted
//! every `offset_persist_interval_ms` (5 s) when changed and at shutdown, atomically, as
//! `config/consumerOffset.json` in RocketMQ's shape (`{"offsetTable":{"topic@group":{"0":12}}}`,
//! keys quoted so that the file is standard JSON).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::persist::{read_optional, PersistError, SnapshotFile};

/// File name under the shard's `config/` directory (RocketMQ's name).
pub const OFFSETS_FILE: &str = "consumerOffset.json";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("consumer offset file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("consumer offset file {path} has a bad key {key:?} (expected topic@group / queue id)")]
    BadKey { path: PathBuf, key: String },
}

#[derive(Serialize, Deserialize, Default)]
struct OffsetFile {
    #[serde(rename = "offsetTable")]
    offset_table: BTreeMap<String, BTreeMap<String, i64>>,
    /// Admin resets still waiting for their queue's next pull (RocketMQ 5's
    /// `resetOffsetTable`), in the same shape: kept across a restart so that a consumer's
    /// commit from before the reset cannot undo it then. Only in the file, not on the wire.
    #[serde(
        rename = "resetOffsetTable",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    reset_offset_table: BTreeMap<String, BTreeMap<String, i64>>,
}

/// `{"topic@group": {"queue": offset}}` (the file's shape) into a [`Table`]; also returns the
/// number of entries.
fn load_table(
    shape: BTreeMap<String, BTreeMap<String, i64>>,
    path: &Path,
) -> Result<(Table, usize), OffsetsError> {
    let mut table = Table::new();
    let mut n = 0;
    for (key, queues) in shape {
        let Some((topic, group)) = key.rsplit_once('@') else {
            return Err(OffsetsError::BadKey {
                path: path.to_path_buf(),
                key,
            });
        };
        let groups = table.entry(topic.to_string()).or_default();
        let q = groups.entry(group.to_string()).or_default();
        for (qid, off) in queues {
            let qid: i32 = qid.parse().map_err(|_| OffsetsError::BadKey {
                path: path.to_path_buf(),
                key: qid.clone(),
            })?;
            q.insert(qid, off);
            n += 1;
        }
    }
    Ok((table, n))
}

/// A [`Table`] in the file's shape, keys sorted.
fn table_shape(t: &Table) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (topic, groups) in t {
        for (group, qs) in groups {
            let e = out.entry(format!("{topic}@{group}")).or_default();
            for (q, o) in qs {
                e.insert(q.to_string(), *o);
            }
        }
    }
    out
}

/// topic -> group -> queue -> offset. Two levels of `String` keys so that lookups by `&str`
/// never allocate.
type Table = HashMap<String, HashMap<String, HashMap<i32, i64>>>;

/// Sets one offset; returns whether it changed. Lookups first, so that the steady state
/// (existing keys) allocates nothing.
fn set(t: &mut Table, topic: &str, group: &str, queue_id: i32, offset: i64) -> bool {
    if let Some(q) = t.get_mut(topic).and_then(|g| g.get_mut(group)) {
        return q.insert(queue_id, offset) != Some(offset);
    }
    t.entry(topic.to_string())
        .or_default()
        .entry(group.to_string())
        .or_default()
        .insert(queue_id, offset);
    true
}

/// One shard's consumer offsets.
pub struct OffsetStore {
    file: SnapshotFile,
    table: RefCell<Table>,
    dirty: Cell<bool>,
    /// Number of the last snapshot taken (see [`SnapshotFile`]).
    generation: Cell<u64>,
    /// Where each group's last pull of each queue started (GET_CONSUME_STATS' `pullOffset`);
    /// in memory only.
    pulled: RefCell<Table>,
    /// Offsets reset by INVOKE_BROKER_TO_RESET_OFFSET that the queue's next pull has not yet
    /// taken; in memory only. While one is pending, the group's commits of that queue are
    /// ignored (they carry offsets from before the reset).
    resets: RefCell<Table>,
    /// Number of entries in `resets`: the commit path looks them up only when there are any.
    resets_pending: Cell<usize>,
}

impl OffsetStore {
    /// Loads `<config_dir>/consumerOffset.json` (empty when absent).
    pub fn open(config_dir: &Path) -> Result<OffsetStore, OffsetsError> {
        let path = config_dir.join(OFFSETS_FILE);
        let (mut table, mut resets, mut pending) = (Table::new(), Table::new(), 0);
        if let Some(bytes) = read_optional(&path)? {
            let file: OffsetFile =
                serde_json::from_slice(&bytes).map_err(|source| OffsetsError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
            (table, _) = load_table(file.offset_table, &path)?;
            (resets, pending) = load_table(file.reset_offset_table, &path)?;
        }
        Ok(OffsetStore {
            file: SnapshotFile::new(path),
            table: RefCell::new(table),
            dirty: Cell::new(false),
            generation: Cell::new(0),
            pulled: RefCell::new(Table::new()),
            resets: RefCell::new(resets),
            resets_pending: Cell::new(pending),
        })
    }

    /// Stored offset, if any.
    pub fn get(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.table
            .borrow()
            .get(topic)?
            .get(group)?
            .get(&queue_id)
            .copied()
    }

    /// Overwrites the stored offset (RocketMQ does no monotonic check either).
    pub fn commit(&self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        if set(&mut self.table.borrow_mut(), topic, group, queue_id, offset) {
            self.dirty.set(true);
        }
    }

    /// A consumer's commit (UPDATE_CONSUMER_OFFSET, or the commit offset of a pull): stored
    /// unless an admin reset of that queue is still waiting for its next pull. Returns
    /// whether it was stored.
    pub fn commit_from_client(&self, topic: &str, group: &str, queue_id: i32, offset: i64) -> bool {
        if self.has_reset(topic, group, queue_id) {
            return false;
        }
        self.commit(topic, group, queue_id, offset);
        true
    }

    /// An admin reset (RocketMQ's assignResetOffset): the offset is committed at once, and
    /// the queue's next pull by `group` is answered PULL_OFFSET_MOVED to it
    /// ([`Self::take_reset`]); until then the group's commits of the queue are ignored.
    pub fn assign_reset(&self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        self.commit(topic, group, queue_id, offset);
        if !self.has_reset(topic, group, queue_id) {
            self.resets_pending.set(self.resets_pending.get() + 1);
        }
        if set(
            &mut self.resets.borrow_mut(),
            topic,
            group,
            queue_id,
            offset,
        ) {
            self.dirty.set(true);
        }
    }

    /// Whether a reset of the queue waits for `group`'s next pull.
    pub fn has_reset(&self, topic: &str, group: &str, queue_id: i32) -> bool {
        self.resets_pending.get() > 0
            && self
                .resets
                .borrow()
                .get(topic)
                .and_then(|g| g.get(group))
                .is_some_and(|q| q.contains_key(&queue_id))
    }

    /// Takes the pending reset of the queue, if any (the pull that answers it).
    pub fn take_reset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        if self.resets_pending.get() == 0 {
            return None;
        }
        let mut resets = self.resets.borrow_mut();
        let groups = resets.get_mut(topic)?;
        let queues = groups.get_mut(group)?;
        let offset = queues.remove(&queue_id)?;
        if queues.is_empty() {
            groups.remove(group);
            if groups.is_empty() {
                resets.remove(topic);
            }
        }
        self.resets_pending.set(self.resets_pending.get() - 1);
        self.dirty.set(true);
        Some(offset)
    }

    /// Drops the pending resets of `topic`, or of `group` in every topic.
    fn drop_resets(&self, topic: Option<&str>, group: Option<&str>) {
        let mut resets = self.resets.borrow_mut();
        match (topic, group) {
            (Some(t), _) => {
                resets.remove(t);
            }
            (None, Some(g)) => {
                for groups in resets.values_mut() {
                    groups.remove(g);
                }
                resets.retain(|_, groups| !groups.is_empty());
            }
            (None, None) => resets.clear(),
        }
        let left = resets
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum();
        if left != self.resets_pending.get() {
            self.dirty.set(true);
        }
        self.resets_pending.set(left);
    }

    /// Drops every offset of a topic (DELETE_TOPIC_IN_BROKER).
    pub fn remove_topic(&self, topic: &str) {
        if self.table.borrow_mut().remove(topic).is_some() {
            self.dirty.set(true);
        }
        self.pulled.borrow_mut().remove(topic);
        self.drop_resets(Some(topic), None);
    }

    /// Drops every offset of a group (DELETE_SUBSCRIPTIONGROUP with `cleanOffset`).
    pub fn remove_group(&self, group: &str) {
        let mut removed = false;
        for groups in self.table.borrow_mut().values_mut() {
            removed |= groups.remove(group).is_some();
        }
        if removed {
            self.dirty.set(true);
        }
        for groups in self.pulled.borrow_mut().values_mut() {
            groups.remove(group);
        }
        self.drop_resets(None, Some(group));
    }

    /// A pull of `group` from `offset` of a queue (allocates only for a new key).
    pub fn note_pull(&self, topic: &str, group: &str, queue_id: i32, offset: i64) {
        set(
            &mut self.pulled.borrow_mut(),
            topic,
            group,
            queue_id,
            offset,
        );
    }

    /// Where `group`'s last pull of the queue started, if it pulled since this process started.
    pub fn pulled(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.pulled
            .borrow()
            .get(topic)?
            .get(group)?
            .get(&queue_id)
            .copied()
    }

    /// Topics `group` has committed offsets of (RocketMQ's whichTopicByConsumer), sorted.
    pub fn topics_of(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .table
            .borrow()
            .iter()
            .filter(|(_, groups)| groups.contains_key(group))
            .map(|(topic, _)| topic.clone())
            .collect();
        out.sort();
        out
    }

    /// Groups with committed offsets on `topic` (RocketMQ's whichGroupByTopic), sorted.
    pub fn groups_of(&self, topic: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .table
            .borrow()
            .get(topic)
            .map(|groups| groups.keys().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Copies `src`'s offsets on `topic` to `dest` (RocketMQ's cloneOffset): `dest`'s queues
    /// that `src` has are overwritten. Returns the number of queues copied.
    pub fn clone_group(&self, src: &str, dest: &str, topic: &str) -> usize {
        let Some(queues) = self
            .table
            .borrow()
            .get(topic)
            .and_then(|g| g.get(src))
            .cloned()
        else {
            return 0;
        };
        for (&q, &o) in &queues {
            self.commit(topic, dest, q, o);
        }
        queues.len()
    }

    /// Sum of the committed offsets of each (topic, group) (the consume rate's samples).
    pub fn totals(&self) -> Vec<(String, String, i64)> {
        let t = self.table.borrow();
        t.iter()
            .flat_map(|(topic, groups)| {
                groups
                    .iter()
                    .map(move |(group, qs)| (topic.clone(), group.clone(), qs.values().sum()))
            })
            .collect()
    }

    /// All (topic@group, queue, offset) entries, sorted (admin and tests).
    pub fn entries(&self) -> Vec<(String, i32, i64)> {
        let t = self.table.borrow();
        let mut out: Vec<(String, i32, i64)> = t
            .iter()
            .flat_map(|(topic, groups)| {
                groups.iter().flat_map(move |(group, qs)| {
                    qs.iter()
                        .map(move |(&q, &o)| (format!("{topic}@{group}"), q, o))
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Number of (topic, group) pairs with offsets.
    pub fn group_topic_count(&self) -> usize {
        self.table.borrow().values().map(HashMap::len).sum()
    }

    /// Writes the file if anything changed since the last write (the periodic persist). The
    /// write and its two fsyncs run on a blocking thread: done on the shard they stall every
    /// connection of the shard for the fsync time (milliseconds).
    pub async fn persist_if_dirty(&self) -> Result<bool, OffsetsError> {
        if !self.dirty.get() {
            return Ok(false);
        }
        let (generation, bytes) = self.snapshot();
        self.dirty.set(false);
        let file = self.file.clone();
        let r = crate::runtime::blocking(move || file.write(generation, &bytes)).await;
        if let Err(e) = r {
            self.dirty.set(true);
            return Err(e.into());
        }
        Ok(true)
    }

    /// The next snapshot's number and the file's bytes for the current table.
    fn snapshot(&self) -> (u64, Vec<u8>) {
        let mut file = self.file();
        file.reset_offset_table = table_shape(&self.resets.borrow());
        self.generation.set(self.generation.get() + 1);
        // Serializing a map of strings and integers cannot fail.
        let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
        (self.generation.get(), bytes)
    }

    /// RocketMQ's ConsumerOffsetSerializeWrapper (GET_ALL_CONSUMER_OFFSET body): the same
    /// JSON as the file.
    pub fn wrapper_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.file()).unwrap_or_default()
    }

    /// The table in the file's (and the wire's) shape.
    fn file(&self) -> OffsetFile {
        let mut file = OffsetFile::default();
        for (key, q, o) in self.entries() {
            file.offset_table
                .entry(key)
                .or_default()
                .insert(q.to_string(), o);
        }
        file
    }

    /// A slave takes its master's offsets (GET_ALL_CONSUMER_OFFSET body): every entry the
    /// master has overwrites this store's (RocketMQ's `putAll`); entries only here stay.
    /// Returns the number of entries taken.
    pub fn take_from_master(&self, wrapper: &[u8]) -> Result<usize, String> {
        let file: OffsetFile = serde_json::from_slice(wrapper).map_err(|e| e.to_string())?;
        let mut n = 0;
        for (key, queues) in &file.offset_table {
            let Some((topic, group)) = key.rsplit_once('@') else {
                return Err(format!("bad key {key:?} (expected topic@group)"));
            };
            for (qid, off) in queues {
                let qid: i32 = qid
                    .parse()
                    .map_err(|_| format!("bad queue id {qid:?} under {key:?}"))?;
                self.commit(topic, group, qid, *off);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes the file now (atomically).
    pub fn persist(&self) -> Result<(), OffsetsError> {
        let (generation, bytes) = self.snapshot();
        // Clear before writing: an update racing the write marks it dirty again.
        self.dirty.set(false);
        if let Err(e) = self.file.write(generation, &bytes) {
            self.dirty.set(true);
            return Err(e.into());
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(s.get("T", "G", 0), None);
        s.commit("T", "G", 0, 12);
        s.commit("T", "G", 3, 7);
        s.commit("T@x", "G2", 1, 99);
        s.commit("T", "G", 0, 13);
        s.persist().unwrap();
        let text = std::fs::read_to_string(dir.path().join(OFFSETS_FILE)).unwrap();
        assert!(text.contains("\"offsetTable\""), "{text}");
        assert!(text.contains("\"T@G\""), "{text}");

        let r = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(r.get("T", "G", 0), Some(13));
        assert_eq!(r.get("T", "G", 3), Some(7));
        assert_eq!(r.get("T@x", "G2", 1), Some(99));
        assert_eq!(r.get("T", "G2", 1), None);
        assert_eq!(r.group_topic_count(), 2);
        r.remove_topic("T");
        assert_eq!(r.get("T", "G", 0), None);
        r.persist().unwrap();
        assert_eq!(OffsetStore::open(dir.path()).unwrap().entries().len(), 1);
    }

    #[test]
    fn a_reset_holds_off_client_commits_until_the_next_pull_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::open(dir.path()).unwrap();
        assert!(s.commit_from_client("T", "G", 0, 50));
        assert!(s.commit_from_client("T", "G", 1, 60));
        s.assign_reset("T", "G", 0, 10);
        s.assign_reset("T", "G", 0, 12); // a second reset replaces the first
        assert_eq!(s.get("T", "G", 0), Some(12));
        assert!(s.has_reset("T", "G", 0));
        assert!(!s.has_reset("T", "G", 1));
        assert!(!s.has_reset("T", "G2", 0));
        // A commit from before the reset is ignored; other queues and groups are not held.
        assert!(!s.commit_from_client("T", "G", 0, 51));
        assert_eq!(s.get("T", "G", 0), Some(12));
        assert!(s.commit_from_client("T", "G", 1, 61));
        assert!(s.commit_from_client("T", "G2", 0, 5));
        assert_eq!(s.take_reset("T", "G", 1), None);
        assert_eq!(s.take_reset("T", "G", 0), Some(12));
        assert_eq!(s.take_reset("T", "G", 0), None);
        assert!(s.commit_from_client("T", "G", 0, 13));
        assert_eq!(s.get("T", "G", 0), Some(13));
        // Deleting the group or the topic drops its pending resets.
        s.assign_reset("T", "G", 0, 1);
        s.assign_reset("U", "G", 3, 2);
        s.assign_reset("U", "H", 3, 3);
        s.remove_group("G");
        assert!(!s.has_reset("T", "G", 0) && !s.has_reset("U", "G", 3));
        assert!(s.has_reset("U", "H", 3));
        s.remove_topic("U");
        assert!(!s.has_reset("U", "H", 3));
        assert_eq!(s.resets_pending.get(), 0);
    }

    #[test]
    fn a_pending_reset_survives_a_restart_and_its_pull_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::open(dir.path()).unwrap();
        assert!(s.commit_from_client("T", "G", 0, 50));
        s.assign_reset("T", "G", 0, 10);
        s.assign_reset("T@x", "G", 2, 4);
        s.persist().unwrap();
        // The wire shape (GET_ALL_CONSUMER_OFFSET) carries only the offsets.
        let wire: serde_json::Value = serde_json::from_slice(&s.wrapper_json()).unwrap();
        assert!(wire.get("resetOffsetTable").is_none(), "{wire}");

        let r = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(r.get("T", "G", 0), Some(10));
        assert!(r.has_reset("T", "G", 0) && r.has_reset("T@x", "G", 2));
        // The consumer's commit from before the restart (and the reset) is still ignored.
        assert!(!r.commit_from_client("T", "G", 0, 51));
        assert_eq!(r.take_reset("T", "G", 0), Some(10));
        r.persist().unwrap();
        let again = OffsetStore::open(dir.path()).unwrap();
        assert!(!again.has_reset("T", "G", 0));
        assert_eq!(again.take_reset("T@x", "G", 2), Some(4));
        assert_eq!(again.resets_pending.get(), 0);
    }

    #[test]
    fn a_groups_offsets_clone_onto_another_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = OffsetStore::open(dir.path()).unwrap();
        s.commit("T", "src", 0, 5);
        s.commit("T", "src", 1, 7);
        s.commit("T", "dest", 1, 1);
        s.commit("T", "dest", 2, 9);
        s.commit("U", "src", 0, 3);
        assert_eq!(s.clone_group("src", "dest", "T"), 2);
        assert_eq!(
            [0, 1, 2].map(|q| s.get("T", "dest", q)),
            [Some(5), Some(7), Some(9)]
        );
        assert_eq!(s.get("U", "dest", 0), None, "only the topic named");
        assert_eq!(s.clone_group("nobody", "dest", "T"), 0);
        assert_eq!(s.groups_of("T"), ["dest", "src"]);
        assert!(s.groups_of("V").is_empty());
    }

    #[test]
    fn periodic_persist_writes_off_the_shard_and_only_when_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let s = OffsetStore::open(&path).unwrap();
                assert!(!s.persist_if_dirty().await.unwrap());
                s.commit("T", "G", 2, 41);
                assert!(s.persist_if_dirty().await.unwrap());
                assert!(!s.persist_if_dirty().await.unwrap());
                s.commit("T", "G", 2, 42);
                assert!(s.persist_if_dirty().await.unwrap());
            })
            .unwrap();
        ex.join().unwrap();
        let r = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(r.get("T", "G", 2), Some(42));
        assert!(!dir.path().join(format!("{OFFSETS_FILE}.tmp")).exists());
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OFFSETS_FILE), b"{not json").unwrap();
        match OffsetStore::open(dir.path()) {
            Err(OffsetsError::Corrupt { path, .. }) => assert!(path.ends_with(OFFSETS_FILE)),
            other => panic!("expected Corrupt, got {:?}", other.err()),
        }
    }
}
