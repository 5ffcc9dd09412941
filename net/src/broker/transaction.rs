//! Transactional messages of one shard: half messages, END_TRANSACTION (37) and the check
//! service that sends CHECK_TRANSACTION_STATE (39). Spec §7.6.
//!
//! A send with `TRAN_MSG=true` is stored as a *half message* in `RMQ_SYS_TRANS_HALF_TOPIC`
//! queue 0 (its real topic and queue in `REAL_TOPIC` / `REAL_QID`, its transaction bits
//! cleared), and its transaction is *open*. The producer then ends it with END_TRANSACTION:
//! a commit stores the real message (sysflag COMMIT, prepared-transaction offset = the half's
//! CommitLog offset) and an *op message*; a rollback stores only the op message. An open
//! transaction whose half message is older than `transaction_timeout_ms` is checked: the half
//! message is stored again (a renewed copy, `TRANSACTION_CHECK_TIMES` + 1) and a live
//! producer of its group is asked for the state of the renewed copy. After
//! `transaction_check_max` checks the half message is discarded to
//! `TRANS_CHECK_MAX_TIME_TOPIC`.
//!
//! Identity: a transaction is named by the half queue offset of its first half message, its
//! *root*. Renewed copies carry the root in `TRAN_PREPARED_QUEUE_OFFSET` (RocketMQ's
//! property), so an END that names any copy ends the one transaction, and a second END for a
//! transaction that already ended (a late answer to a check, a commit after the rollback)
//! stores nothing: no transaction is committed twice while this process knows it.
//!
//! Op messages (`RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0, tag `d`) hold the root in decimal. What
//! is open is kept in memory (one entry per open transaction, at most
//! `transaction_max_open`), and rebuilt at start from the logs: the half queue from the
//! first open transaction's offset, the op queue from where its ops could start. Both
//! offsets are stored as the consumer offsets of group `CID_RMQ_SYS_TRANS`, written only once
//! the ops below them are durable, so a crash forgets no open transaction.
//!
//! A commit stores the real message before the op: a crash between the two leaves the
//! transaction open and checked again, never committed without its message.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::sysflag::{reset_transaction_value, TRANSACTION_COMMIT_TYPE};
use ramjet_core::record::{
    encode_record, offset_msg_id, properties, properties::PropertiesBuilder, tag_hash,
    tag_hash_bytes, MessageToStore, RecordError, RecordView,
};
use ramjet_core::remoting::headers::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, TransactionType,
};
use ramjet_core::remoting::{CommandView, FrameHead, RequestCode, ResponseCode};
use ramjet_storage::schedule::{level_of, SCHEDULE_TOPIC, TIMER_TOPIC};
use ramjet_storage::{Chunk, PutResult, Store, StoreError};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::offsets::OffsetStore;
use super::shard::{Broker, ShardCounters};
use super::topics::{PERM_READ, PERM_WRITE};

/// Half messages (queue 0).
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Op messages: which transactions ended (queue 0).
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Half messages discarded after `transaction_check_max` checks.
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The system group whose consumer offsets say where recovery starts.
pub const SYS_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op messages (RocketMQ's `REMOVETAG`).
const OP_TAG: &str = "d";
/// Properties of an op message: `TAGS` = `d`.
const OP_PROPS: &[u8] = b"TAGS\x01d\x02";

/// Most transactions one pass of the check service checks before the shard's other work gets
/// its turn (each is a read and an append).
const MAX_CHECKS_PER_PASS: usize = 1024;

/// Pause between two check passes while more transactions are due (see the schedule
/// service's `BUSY_PAUSE` for why a timer and not a yield).
const BUSY_PAUSE: Duration = Duration::from_micros(20);

/// Why a commit, a check or a discard stored nothing.
#[derive(Debug, thiserror::Error)]
enum TxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Half(String),
    #[error("{1}")]
    Timer(i32, String),
}

impl TxError {
    fn code(&self) -> i32 {
        match self {
            TxError::Store(e) => super::send::store_error_code(e),
            TxError::Record(_) => ResponseCode::MESSAGE_ILLEGAL,
            TxError::Half(_) => ResponseCode::SYSTEM_ERROR,
            TxError::Timer(code, _) => *code,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("transaction recovery: cannot read {topic} offset {offset}: {source}")]
    Read {
        topic: &'static str,
        offset: i64,
        source: StoreError,
    },
}

/// An open transaction: where its latest half message (copy) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    /// Half queue offset of the latest copy.
    copy: i64,
    physical_offset: u64,
    size: u32,
    /// When the latest copy was stored (ms): the check timeout counts from here.
    stored_ms: i64,
    /// Checks so far (`TRANSACTION_CHECK_TIMES` of the latest copy).
    checks: u32,
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS` × 1000 (0 when absent).
    immunity_ms: i64,
    /// Op queue offset when the latest copy was stored: an op for this transaction comes
    /// later.
    op_mark: i64,
}

/// One shard's open transactions and their counters.
pub struct Transactions {
    /// root -> its latest copy.
    open: RefCell<HashMap<i64, Open>>,
    /// latest copy -> root, in half queue order (oldest first).
    by_copy: RefCell<BTreeMap<i64, i64>>,
    max_open: usize,
    /// CommitLog end of the last op or copy stored: durable before the offsets may move.
    last_end: Cell<u64>,
    /// Properties of a renewed copy or a committed message, reused.
    props: RefCell<PropertiesBuilder>,
    /// Where a half message lies (tail cache or file), reused.
    chunks: RefCell<Vec<Chunk>>,
    /// `ramjet.transactionHalf`, `...Commit`, `...Rollback`, `...Checks`, `...Discarded`,
    /// `...EndIgnored` (ends of transactions that had already ended).
    pub halves: Cell<u64>,
    pub commits: Cell<u64>,
    pub rollbacks: Cell<u64>,
    pub checks: Cell<u64>,
    pub checks_unsent: Cell<u64>,
    pub discarded: Cell<u64>,
    pub ends_ignored: Cell<u64>,
    /// Half messages read into the page cache off the shard (`ramjet.transactionColdReads`).
    pub cold_reads: Cell<u64>,
    warn: ramjet_core::ratelog::LogEvery,
}

impl Transactions {
    pub fn new(max_open: usize) -> Transactions {
        Transactions {
            open: RefCell::new(HashMap::new()),
            by_copy: RefCell::new(BTreeMap::new()),
            max_open: max_open.max(1),
            last_end: Cell::new(0),
            props: RefCell::new(PropertiesBuilder::with_capacity(1024)),
            chunks: RefCell::new(Vec::with_capacity(2)),
            halves: Cell::new(0),
            commits: Cell::new(0),
            rollbacks: Cell::new(0),
            checks: Cell::new(0),
            checks_unsent: Cell::new(0),
            discarded: Cell::new(0),
            ends_ignored: Cell::new(0),
            cold_reads: Cell::new(0),
            warn: ramjet_core::ratelog::LogEvery::default(),
        }
    }

    /// Open transactions now.
    pub fn open_count(&self) -> usize {
        self.open.borrow().len()
    }

    /// Whether another half message would pass `transaction_max_open`.
    pub fn is_full(&self) -> bool {
        self.open.borrow().len() >= self.max_open
    }

    /// Where recovery would start now: (half queue offset, op queue offset).
    fn start_offsets(&self, store: &Store) -> (i64, i64) {
        let first = self.by_copy.borrow().iter().next().map(|(c, r)| (*c, *r));
        match first {
            Some((copy, root)) => {
                let op_mark = self.open.borrow().get(&root).map_or(0, |o| o.op_mark);
                (copy, op_mark)
            }
            None => (
                store.max_offset(HALF_TOPIC, 0),
                store.max_offset(OP_TOPIC, 0),
            ),
        }
    }

    fn insert(&self, root: i64, o: Open) {
        let mut open = self.open.borrow_mut();
        let mut by_copy = self.by_copy.borrow_mut();
        if let Some(old) = open.insert(root, o) {
            by_copy.remove(&old.copy);
        }
        by_copy.insert(o.copy, root);
        debug_assert_eq!(open.len(), by_copy.len());
    }

    /// Ends `root`; false when it was not open.
    fn close(&self, root: i64) -> bool {
        let mut open = self.open.borrow_mut();
        let Some(o) = open.remove(&root) else {
            return false;
        };
        let removed = self.by_copy.borrow_mut().remove(&o.copy);
        debug_assert_eq!(removed, Some(root));
        true
    }

    /// A half message was stored (by a send): its transaction is open.
    pub fn on_half_stored(&self, store: &Store, put: &PutResult, size: u32, immunity_ms: i64) {
        ShardCounters::add(&self.halves, 1);
        self.insert(
            put.queue_offset,
            Open {
                copy: put.queue_offset,
                physical_offset: put.physical_offset,
                size,
                stored_ms: put.store_timestamp,
                checks: 0,
                immunity_ms,
                op_mark: store.max_offset(OP_TOPIC, 0),
            },
        );
    }

    /// Rebuilds the open transactions from the half and op queues, starting where the
    /// offsets of [`SYS_GROUP`] say (the start of each queue when absent).
    pub async fn recover(
        &self,
        store: &Store,
        offsets: &OffsetStore,
        shard: usize,
    ) -> Result<(), TransactionError> {
        let half_from = offsets
            .get(HALF_TOPIC, SYS_GROUP, 0)
            .unwrap_or(0)
            .max(store.min_offset(HALF_TOPIC, 0));
        let half_max = store.max_offset(HALF_TOPIC, 0);
        let op_from = offsets
            .get(OP_TOPIC, SYS_GROUP, 0)
            .unwrap_or(0)
            .max(store.min_offset(OP_TOPIC, 0));
        let op_max = store.max_offset(OP_TOPIC, 0);
        let mut halves = Vec::new();
        for_each_record(
            store,
            HALF_TOPIC,
            half_from..half_max,
            shard,
            |q, unit, view| {
                let h = HalfInfo::of(view);
                halves.push((
                    h.root.unwrap_or(q),
                    Open {
                        copy: q,
                        physical_offset: unit.physical_offset,
                        size: unit.size,
                        stored_ms: view.store_timestamp(),
                        checks: h.checks,
                        immunity_ms: h.immunity_ms,
                        op_mark: op_from,
                    },
                ));
            },
        )
        .await?;
        // In queue order: a later copy of a transaction replaces the earlier one.
        for (root, o) in halves {
            self.insert(root, o);
        }
        let halves = self.open_count();
        let mut roots = Vec::new();
        for_each_record(store, OP_TOPIC, op_from..op_max, shard, |_, _, view| {
            roots.extend(op_roots(view.body()));
        })
        .await?;
        let ended = roots.into_iter().filter(|r| self.close(*r)).count();
        if half_max > half_from || op_max > op_from {
            tracing::info!(
                shard,
                half_from,
                half_max,
                op_from,
                op_max,
                halves,
                ended,
                open = self.open_count(),
                "transactions recovered"
            );
        }
        Ok(())
    }

    /// Stores where recovery would start as the offsets of [`SYS_GROUP`], once every op
    /// and copy stored so far is durable.
    pub async fn persist(&self, b: &Broker) {
        let (half, op) = self.start_offsets(&b.store);
        let unchanged = b.offsets.get(HALF_TOPIC, SYS_GROUP, 0) == Some(half)
            && b.offsets.get(OP_TOPIC, SYS_GROUP, 0) == Some(op);
        if unchanged {
            return;
        }
        if let Err(e) = b.store.wait_durable(self.last_end.get()).await {
            tracing::warn!(shard = b.index, error = %e, "transaction offsets not moved: the ops are not durable yet");
            return;
        }
        b.offsets.commit(HALF_TOPIC, SYS_GROUP, 0, half);
        b.offsets.commit(OP_TOPIC, SYS_GROUP, 0, op);
    }
}

/// Calls `f(queue offset, unit, record)` for every record of `topic` queue 0 in `range`
/// (recovery; reads on the shard before it serves). An unreadable record is logged and
/// skipped; a read error stops the recovery.
async fn for_each_record(
    store: &Store,
    topic: &'static str,
    range: std::ops::Range<i64>,
    shard: usize,
    mut f: impl FnMut(i64, ramjet_storage::consumequeue::CqEntry, &RecordView<'_>),
) -> Result<(), TransactionError> {
    for q in range {
        let Some(unit) = store.queue_unit(topic, 0, q) else {
            continue;
        };
        if unit.is_filler() || unit.size == 0 {
            continue;
        }
        let rec = store
            .read_record(unit.physical_offset)
            .await
            .map_err(|source| TransactionError::Read {
                topic,
                offset: q,
                source,
            })?;
        match RecordView::parse(&rec) {
            Ok(view) => f(q, unit, &view),
            Err(e) => {
                tracing::error!(shard, topic, offset = q, error = %e, "unreadable record skipped")
            }
        }
    }
    Ok(())
}

/// What a half message says about its transaction.
struct HalfInfo {
    /// `TRAN_PREPARED_QUEUE_OFFSET`: the root, on a renewed copy.
    root: Option<i64>,
    checks: u32,
    immunity_ms: i64,
}

impl HalfInfo {
    fn of(view: &RecordView<'_>) -> HalfInfo {
        let props = view.properties();
        let [root, checks, immunity] = properties::get_many(
            props,
            [
                properties::TRAN_PREPARED_QUEUE_OFFSET,
                properties::TRANSACTION_CHECK_TIMES,
                properties::CHECK_IMMUNITY_TIME_IN_SECONDS,
            ],
        );
        HalfInfo {
            root: root.and_then(parse_i64),
            checks: checks
                .and_then(parse_i64)
                .map_or(0, |c| c.clamp(0, u32::MAX as i64) as u32),
            immunity_ms: immunity_ms(immunity),
        }
    }
}

fn parse_i64(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// `CHECK_IMMUNITY_TIME_IN_SECONDS` in ms (0 when absent or not a number).
pub fn immunity_ms(v: Option<&[u8]>) -> i64 {
    v.and_then(parse_i64)
        .map_or(0, |s| s.clamp(0, i64::MAX / 1000) * 1000)
}

/// The roots an op message's body names (decimal, separated by `,`).
fn op_roots(body: &[u8]) -> impl Iterator<Item = i64> + '_ {
    body.split(|c| *c == b',').filter_map(parse_i64)
}

/// Stores the op message that ends `root`.
fn write_op(b: &Broker, root: i64) -> Result<PutResult, StoreError> {
    let mut digits = [0u8; 24];
    let len = {
        let mut w = &mut digits[..];
        std::io::Write::write_fmt(&mut w, format_args!("{root}")).expect("24 bytes hold any i64");
        24 - w.len()
    };
    let put = b.store.put_message(&MessageToStore {
        topic: OP_TOPIC,
        queue_id: 0,
        flag: 0,
        body: &digits[..len],
        properties: OP_PROPS,
        sys_flag: 0,
        born_timestamp: now_ms(),
        born_host: b.addr,
        store_host: b.addr,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        tags_code: tag_hash(OP_TAG),
    })?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    b.transactions.last_end.set(put.end_physical_offset);
    Ok(put)
}

/// Runs `f` on the record of `len` bytes at `physical_offset` straight from the tail cache
/// when it is wholly there; `None` when it is on file.
fn in_memory<R>(
    b: &Broker,
    physical_offset: u64,
    len: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let mut chunks = b.transactions.chunks.borrow_mut();
    chunks.clear();
    // Gone or on file: the caller reads it (and reports what is wrong).
    let _ = b.store.chunks_of(physical_offset, len, &mut chunks);
    let r = match chunks.as_slice() {
        [Chunk::Memory(slice)] if slice.len() == len as usize => Some(f(slice.as_ref())),
        _ => None,
    };
    chunks.clear();
    r
}

/// Reads the file ranges of the record at `physical_offset` that are not in the page cache
/// into it on the blocking thread, so that reading the record next does not wait for the
/// disk on the shard's thread (an END or a check of a half message the page cache dropped).
async fn warm(b: &Broker, physical_offset: u64, len: u32) {
    if !b.cfg.broker.cold_reads_off_shard {
        return;
    }
    let mut cold = Vec::new();
    {
        let mut chunks = b.transactions.chunks.borrow_mut();
        chunks.clear();
        let _ = b.store.chunks_of(physical_offset, len, &mut chunks);
        for c in chunks.iter() {
            if let Chunk::File { file, offset, len } = c {
                super::warm::push_if_cold(file, *offset, u64::from(*len), &mut cold);
            }
        }
        chunks.clear();
    }
    if cold.is_empty() {
        return;
    }
    ShardCounters::add(&b.transactions.cold_reads, 1);
    if let Err(e) = crate::runtime::blocking(move || super::warm::read_in(&cold)).await {
        tracing::debug!(shard = b.index, error = %e, "reading a half message in failed; read on the shard");
    }
}

/// How an END_TRANSACTION went.
enum Ended {
    /// Committed or rolled back now; the CommitLog end of what was stored.
    Now(u64),
    /// The transaction had already ended (or been discarded): nothing stored.
    Already,
}

type EndError = (i32, String);

/// END_TRANSACTION (37). Java and C++ producers send it oneway.
pub fn end_transaction(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<EndTransactionRequestHeader>(conn, req) else {
        return;
    };
    let commit = match h.commit_or_rollback {
        TransactionType::COMMIT => true,
        TransactionType::ROLLBACK => false,
        TransactionType::NOT_TYPE => {
            // Unknown: the transaction stays open and is checked later.
            tracing::debug!(shard = b.index, offset = h.tran_state_table_offset, group = h.producer_group, check = ?h.from_transaction_check, "transaction state unknown");
            return conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
        }
        other => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("commitOrRollback {other} is none of 0, 8 (commit), 12 (rollback)"),
            )
        }
    };
    let bad = |remark: String| conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &remark);
    let Some(unit) = b.store.queue_unit(HALF_TOPIC, 0, h.tran_state_table_offset) else {
        return bad(format!(
            "no half message at queue offset {} (commitLogOffset {}, msgId {})",
            h.tran_state_table_offset, h.commit_log_offset, h.msg_id
        ));
    };
    if unit.physical_offset as i64 != h.commit_log_offset {
        return bad(format!(
            "half message at queue offset {} is at commitLogOffset {}, not {}",
            h.tran_state_table_offset, unit.physical_offset, h.commit_log_offset
        ));
    }
    let (queue_offset, group) = (h.tran_state_table_offset, h.producer_group);
    let from_check = h.from_transaction_check == Some(true);
    let r = in_memory(b, unit.physical_offset, unit.size, |rec| {
        end_with_record(
            b,
            group,
            queue_offset,
            unit.physical_offset,
            commit,
            from_check,
            rec,
        )
    });
    match r {
        Some(r) => answer_end(b, conn, req, r),
        None => {
            // On file: read it off the request path, then end it.
            let Some(broker) = b.rc() else { return };
            let conn = conn.clone();
            let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
            let group = group.to_string();
            crate::runtime::spawn_detached(async move {
                warm(&broker, unit.physical_offset, unit.size).await;
                let r = match broker.store.read_record(unit.physical_offset).await {
                    Ok(rec) => end_with_record(
                        &broker,
                        &group,
                        queue_offset,
                        unit.physical_offset,
                        commit,
                        from_check,
                        &rec,
                    ),
                    Err(e) => Err((
                        ResponseCode::SYSTEM_ERROR,
                        format!("half message at {} unreadable: {e}", unit.physical_offset),
                    )),
                };
                answer_end_owned(&broker, &conn, st, opaque, oneway, r).await;
            });
        }
    }
}

fn answer_end(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>, r: Result<Ended, EndError>) {
    if req.is_oneway() {
        return;
    }
    let sync = super::ha::acks_wait(b);
    match r {
        Ok(Ended::Now(end)) if sync => {
            let Some(broker) = b.rc() else { return };
            let conn = conn.clone();
            let (st, opaque) = (req.serialize_type, req.opaque);
            crate::runtime::spawn_detached(async move {
                answer_end_owned(&broker, &conn, st, opaque, false, Ok(Ended::Now(end))).await;
            });
        }
        Ok(_) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]),
        Err((code, remark)) => conn.respond_error(req, code, &remark),
    }
}

async fn answer_end_owned(
    b: &Broker,
    conn: &Conn,
    st: ramjet_core::remoting::SerializeType,
    opaque: i32,
    oneway: bool,
    r: Result<Ended, EndError>,
) {
    if oneway {
        return;
    }
    // As a send: answered once durable (`flush = sync`) and on a slave (`replication =
    // sync`); the commit or rollback is stored either way.
    let r = match r {
        Ok(Ended::Now(end)) if super::ha::acks_wait(b) => super::ha::wait_acked(b, end)
            .await
            .map(|()| Ended::Now(end))
            .map_err(|f| (f.code, f.remark)),
        r => r,
    };
    let (code, remark) = match &r {
        Ok(_) => (ResponseCode::SUCCESS, None),
        Err((code, remark)) => (*code, Some(remark.as_str())),
    };
    let mut head = FrameHead::response(code, opaque);
    head.remark = remark;
    conn.send_frame(st, &head, &(), &[]);
}

/// Checks the half message `rec` against the request, then commits or rolls back its
/// transaction. No await: nothing else runs between the look at what is open and the appends.
fn end_with_record(
    b: &Broker,
    group: &str,
    queue_offset: i64,
    physical_offset: u64,
    commit: bool,
    from_check: bool,
    rec: &[u8],
) -> Result<Ended, EndError> {
    let sys = |remark: String| (ResponseCode::SYSTEM_ERROR, remark);
    let view = RecordView::parse(rec).map_err(|e| sys(format!("bad half message: {e}")))?;
    if view.topic() != HALF_TOPIC
        || view.queue_offset() != queue_offset
        || view.physical_offset() as u64 != physical_offset
    {
        return Err(sys(format!(
            "the record at {physical_offset} is not the half message of queue offset {queue_offset}"
        )));
    }
    // What the END reads of the half message, in one pass over its properties.
    let [pgroup, root, real_topic, real_qid, delay, tags] = properties::get_many(
        view.properties(),
        [
            properties::PGROUP,
            properties::TRAN_PREPARED_QUEUE_OFFSET,
            properties::REAL_TOPIC,
            properties::REAL_QID,
            properties::DELAY,
            properties::TAGS,
        ],
    );
    if pgroup != Some(group.as_bytes()) {
        return Err(sys(format!(
            "the producer group of the half message ({}) is not the request's ({group})",
            String::from_utf8_lossy(pgroup.unwrap_or_default())
        )));
    }
    let t = &b.transactions;
    let root = root.and_then(parse_i64).unwrap_or(queue_offset);
    if !t.open.borrow().contains_key(&root) {
        ShardCounters::add(&t.ends_ignored, 1);
        tracing::debug!(
            shard = b.index,
            root,
            queue_offset,
            commit,
            from_check,
            "end of a transaction that already ended; nothing stored"
        );
        return Ok(Ended::Already);
    }
    if commit {
        let place = RealPlace {
            topic: real_topic,
            queue_id: real_qid,
            delay,
            tags,
        };
        commit_message(b, &view, physical_offset, &place).map_err(|e| {
            (
                e.code(),
                format!("commit of the half message at {physical_offset} not stored: {e}"),
            )
        })?;
    }
    // The transaction ends here even if its op is not stored: this process commits it once.
    t.close(root);
    let end = match write_op(b, root) {
        Ok(p) => p.end_physical_offset,
        Err(e) => {
            // Without its op the transaction is open again after a restart (and checked).
            tracing::error!(shard = b.index, root, error = %e, "op message not stored");
            t.last_end.get()
        }
    };
    if commit {
        ShardCounters::add(&t.commits, 1);
    } else {
        ShardCounters::add(&t.rollbacks, 1);
    }
    Ok(Ended::Now(end))
}

/// Where a half message's real message goes, as its properties say (raw values).
struct RealPlace<'a> {
    topic: Option<&'a [u8]>,
    queue_id: Option<&'a [u8]>,
    delay: Option<&'a [u8]>,
    tags: Option<&'a [u8]>,
}

/// Stores the real message of a committed half message (delayed if it has a delay level).
fn commit_message(
    b: &Broker,
    half: &RecordView<'_>,
    half_offset: u64,
    place: &RealPlace<'_>,
) -> Result<u64, TxError> {
    let props = half.properties();
    let (real_topic, real_qid, delay) = (place.topic, place.queue_id, place.delay);
    let bad = |what: &str| TxError::Half(format!("half message without a valid {what}"));
    let topic = real_topic
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| bad(properties::REAL_TOPIC))?;
    let queue_id: i32 = real_qid
        .and_then(|q| std::str::from_utf8(q).ok()?.parse().ok())
        .ok_or_else(|| bad(properties::REAL_QID))?;
    let mut out = b.transactions.props.borrow_mut();
    out.clear();
    out.extend_from(
        props,
        &[
            properties::REAL_TOPIC,
            properties::REAL_QID,
            properties::TRAN_MSG,
        ],
    )?;
    let levels = &b.store.config().delay_levels_ms;
    let level = delay.and_then(|v| level_of(levels, v));
    let mut sched = PropertiesBuilder::new();
    // Without a delay level, the half message's 5.x timer properties apply now.
    let mut timer_fire = None;
    if level.is_none() && b.cfg.broker.timer_enable {
        let [at, delay_s, delay_ms] = properties::get_many(
            out.as_bytes(),
            [
                properties::TIMER_DELIVER_MS,
                properties::TIMER_DELAY_SEC,
                properties::TIMER_DELAY_MS,
            ],
        );
        let now = super::namesrv_host::now_ms();
        // Checked when the half message was sent.
        if let Ok(Some(deliver)) = super::timer::deliver_time(at, delay_s, delay_ms, now) {
            timer_fire = super::timer::timer_target(
                b,
                deliver,
                now,
                topic,
                queue_id,
                out.as_bytes(),
                &mut sched,
            )
            .map_err(|(code, remark)| TxError::Timer(code, remark))?;
        }
    }
    let (store_topic, store_queue, store_props, tags) = match (level, timer_fire) {
        (Some(level), _) => {
            let (q, due) = super::schedule::schedule_target(
                levels,
                level,
                topic,
                queue_id,
                out.as_bytes(),
                &mut sched,
            )?;
            (SCHEDULE_TOPIC, q, sched.as_bytes(), due)
        }
        (None, Some(fire)) => (TIMER_TOPIC, 0, sched.as_bytes(), fire),
        (None, None) => (
            topic,
            queue_id,
            out.as_bytes(),
            place.tags.map_or(0, tag_hash_bytes),
        ),
    };
    let put = b.store.put_message(&MessageToStore {
        sys_flag: reset_transaction_value(half.sys_flag(), TRANSACTION_COMMIT_TYPE),
        prepared_transaction_offset: half_offset as i64,
        tags_code: tags,
        ..MessageToStore::copy_of(half, store_topic, store_queue, store_props, b.addr)
    })?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    if let Some(fire) = timer_fire {
        super::timer::stored(b, fire);
    }
    Ok(put.end_physical_offset)
}

/// The check service of one shard: every `transaction_check_interval_ms`, checks the open
/// transactions whose latest half message is older than the timeout.
pub async fn run(b: Rc<Broker>) {
    let every = Duration::from_millis(b.cfg.broker.transaction_check_interval_ms.max(1));
    loop {
        crate::runtime::sleep(every).await;
        while check_pass(&b).await {
            crate::runtime::sleep(BUSY_PAUSE).await;
        }
    }
}

/// Checks up to [`MAX_CHECKS_PER_PASS`] due transactions; true when more may be due.
async fn check_pass(b: &Broker) -> bool {
    let t = &b.transactions;
    let now = now_ms();
    let timeout = b.cfg.broker.transaction_timeout_ms as i64;
    let mut due = Vec::new();
    let mut more = false;
    {
        let open = t.open.borrow();
        for root in t.by_copy.borrow().values() {
            let Some(o) = open.get(root) else { continue };
            if now - o.stored_ms < timeout {
                // Copies are in store order: the later ones are younger still.
                break;
            }
            if now - o.stored_ms < o.immunity_ms {
                continue;
            }
            if due.len() == MAX_CHECKS_PER_PASS {
                more = true;
                break;
            }
            due.push((*root, *o));
        }
    }
    for (root, o) in due {
        let r = match in_memory(b, o.physical_offset, o.size, |rec| {
            check_one(b, root, &o, rec)
        }) {
            Some(r) => r,
            None => {
                warm(b, o.physical_offset, o.size).await;
                match b.store.read_record(o.physical_offset).await {
                    // Re-checked inside: the transaction may have ended during the reads.
                    Ok(rec) => check_one(b, root, &o, &rec),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Err(e) = r {
            if let Some(n) = t.warn.due() {
                tracing::warn!(shard = b.index, root, copy = o.copy, error = %e, failures = n, "transaction check failed; will retry");
            }
            return false;
        }
    }
    more
}

/// Checks one open transaction from its latest half message `rec`: discards it after
/// `transaction_check_max` checks, else stores a renewed copy and asks a producer of its
/// group for its state.
fn check_one(b: &Broker, root: i64, o: &Open, rec: &[u8]) -> Result<(), TxError> {
    let t = &b.transactions;
    if t.open.borrow().get(&root) != Some(o) {
        return Ok(());
    }
    let view = RecordView::parse(rec)?;
    let props = view.properties();
    if o.checks >= b.cfg.broker.transaction_check_max {
        return discard(b, root, o, &view);
    }
    let mut out = t.props.borrow_mut();
    out.clear();
    out.extend_from(
        props,
        &[
            properties::TRANSACTION_CHECK_TIMES,
            properties::TRAN_PREPARED_QUEUE_OFFSET,
        ],
    )
    .and_then(|p| {
        p.push_str(
            properties::TRANSACTION_CHECK_TIMES,
            &(o.checks + 1).to_string(),
        )
    })
    .and_then(|p| p.push_str(properties::TRAN_PREPARED_QUEUE_OFFSET, &root.to_string()))?;
    let copy = MessageToStore {
        tags_code: view.property(properties::TAGS).map_or(0, tag_hash_bytes),
        ..MessageToStore::copy_of(&view, HALF_TOPIC, 0, out.as_bytes(), b.addr)
    };
    let size = b.store.record_len(&copy) as u32;
    let put = b.store.put_message(&copy)?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    t.last_end.set(put.end_physical_offset);
    t.insert(
        root,
        Open {
            copy: put.queue_offset,
            physical_offset: put.physical_offset,
            size,
            stored_ms: put.store_timestamp,
            checks: o.checks + 1,
            immunity_ms: o.immunity_ms,
            op_mark: b.store.max_offset(OP_TOPIC, 0),
        },
    );
    ShardCounters::add(&t.checks, 1);
    let pgroup = properties::get_str(props, properties::PGROUP).unwrap_or("");
    let Some(conn) = b.clients.producer_conn(pgroup) else {
        ShardCounters::add(&t.checks_unsent, 1);
        if let Some(n) = t.warn.due() {
            tracing::warn!(
                shard = b.index,
                group = pgroup,
                root,
                checks = o.checks + 1,
                unsent = n,
                "transaction check not sent: no producer of the group is connected"
            );
        }
        return Ok(());
    };
    // The body: the renewed copy as stored, under its real topic and queue (what the client
    // decodes and hands to its checker).
    let real_topic = properties::get_str(props, properties::REAL_TOPIC).unwrap_or("");
    let real_qid = properties::get_str(props, properties::REAL_QID)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0);
    let shown = MessageToStore {
        topic: real_topic,
        queue_id: real_qid,
        ..copy
    };
    let mut body = vec![0u8; shown.encoded_len()];
    encode_record(
        &shown,
        put.queue_offset,
        put.physical_offset as i64,
        put.store_timestamp,
        &mut body,
    )?;
    let uniq = properties::get_str(props, properties::UNIQ_KEY);
    let offset_id = offset_msg_id(b.addr, put.physical_offset as i64);
    let header = CheckTransactionStateRequestHeader {
        tran_state_table_offset: put.queue_offset,
        commit_log_offset: put.physical_offset as i64,
        msg_id: uniq,
        transaction_id: uniq,
        offset_msg_id: Some(offset_id.as_str()),
        topic: Some(real_topic),
        broker_name: Some(b.broker_name.as_str()),
    };
    let head = FrameHead::oneway(RequestCode::CHECK_TRANSACTION_STATE, conn.next_opaque());
    conn.send_frame(conn.serialize_type(), &head, &header, &body);
    tracing::debug!(
        shard = b.index,
        group = pgroup,
        root,
        copy = put.queue_offset,
        checks = o.checks + 1,
        "transaction check sent"
    );
    Ok(())
}

/// Moves a transaction checked `transaction_check_max` times to `TRANS_CHECK_MAX_TIME_TOPIC`
/// and ends it.
fn discard(b: &Broker, root: i64, o: &Open, view: &RecordView<'_>) -> Result<(), TxError> {
    match b.topics.ensure(CHECK_MAX_TOPIC, 1, PERM_READ | PERM_WRITE) {
        Ok((_, true)) => b.registrar.request_now(),
        Ok((_, false)) => {}
        Err(e) => {
            return Err(TxError::Half(format!(
                "cannot create {CHECK_MAX_TOPIC}: {e}"
            )))
        }
    }
    let props = view.properties();
    let put = b.store.put_message(&MessageToStore {
        tags_code: view.property(properties::TAGS).map_or(0, tag_hash_bytes),
        ..MessageToStore::copy_of(view, CHECK_MAX_TOPIC, 0, props, b.addr)
    })?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    let t = &b.transactions;
    t.last_end.set(put.end_physical_offset);
    t.close(root);
    if let Err(e) = write_op(b, root) {
        tracing::error!(shard = b.index, root, error = %e, "op message of a discarded transaction not stored");
    }
    ShardCounters::add(&t.discarded, 1);
    tracing::warn!(
        shard = b.index,
        root,
        copy = o.copy,
        checks = o.checks,
        group = properties::get_str(props, properties::PGROUP).unwrap_or(""),
        topic = properties::get_str(props, properties::REAL_TOPIC).unwrap_or(""),
        "transaction discarded after its last check; half message moved to {CHECK_MAX_TOPIC}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_bodies_parse_one_or_many_roots() {
        assert_eq!(op_roots(b"17").collect::<Vec<_>>(), [17]);
        assert_eq!(op_roots(b"1,2,30").collect::<Vec<_>>(), [1, 2, 30]);
        assert_eq!(op_roots(b"x,5,").collect::<Vec<_>>(), [5]);
        assert_eq!(immunity_ms(Some(b"12")), 12_000);
        assert_eq!(immunity_ms(Some(b"-3")), 0);
        assert_eq!(immunity_ms(None), 0);
    }

    #[test]
    fn open_and_close_keep_both_maps_paired() {
        let t = Transactions::new(4);
        let o = |copy| Open {
            copy,
            physical_offset: copy as u64 * 100,
            size: 100,
            stored_ms: copy,
            checks: 0,
            immunity_ms: 0,
            op_mark: 0,
        };
        t.insert(0, o(0));
        t.insert(1, o(1));
        // A renewed copy replaces the root's latest copy.
        t.insert(0, Open { checks: 1, ..o(2) });
        assert_eq!(t.open_count(), 2);
        assert_eq!(
            t.by_copy
                .borrow()
                .iter()
                .map(|(c, r)| (*c, *r))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 0)]
        );
        assert!(t.close(0));
        assert!(!t.close(0));
        assert_eq!(t.by_copy.borrow().len(), 1);
        assert!(!t.is_full());
    }
}
