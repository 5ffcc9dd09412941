//! Answers to single-message sends under `flush = sync` or `replication = sync`, in one queue
//! per shard.
//!
//! A sync send is answered after the fdatasync that covers its record. Each such send used to
//! spawn a task of its own that waited for durability, with its message id copied into a
//! `String`: two heap allocations, a task and a parked waker per message, and at every group
//! commit one task wake-up per acknowledged message. Here a send leaves a fixed-size entry in
//! the shard's queue (records are appended in offset order, so the queue is ordered by end
//! offset), and one task waits for the front entry only; when the durable point moves it
//! answers every entry it covers in one pass, writing each answer into its connection's
//! outbox. The message id is rebuilt from the physical offset at answer time (no copy kept).
//! The task exists only while entries are queued.
//!
//! Batches (one id per message, a per-request string) keep a task of their own; oneway sends
//! are never answered and are not queued.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use ramjet_core::record::offset_msg_id;
use ramjet_core::remoting::{ResponseCode, SerializeType};
use ramjet_storage::latency::{LatencyHistogram, LatencySummary};
use ramjet_storage::StoreError;

use super::conn::Conn;
use super::ha::AckFailure;
use super::shard::Broker;

/// Entries the queue holds without growing (it grows beyond on demand, and keeps the room).
const INITIAL_CAPACITY: usize = 4096;

/// Longest transaction id (a half message's `UNIQ_KEY`) kept for its answer: 32 hex digits
/// from an IPv4 producer, more from an IPv6 one. A longer id is left out of the answer (a
/// 5.x field that Java and C++ producers do not need: they take the id from the message).
const MAX_TRANSACTION_ID: usize = 64;

/// A half message's transaction id, kept inline (no allocation per send).
struct TransactionId {
    len: u8,
    bytes: [u8; MAX_TRANSACTION_ID],
}

impl TransactionId {
    fn new(id: &str) -> Option<TransactionId> {
        let n = id.len();
        if n > MAX_TRANSACTION_ID {
            return None;
        }
        let mut bytes = [0u8; MAX_TRANSACTION_ID];
        bytes[..n].copy_from_slice(id.as_bytes());
        Some(TransactionId {
            len: n as u8,
            bytes,
        })
    }

    fn as_str(&self) -> &str {
        // Copied whole from a &str.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// One send waiting for its fdatasync.
struct PendingAck {
    /// End of the record in the CommitLog: durable at or past this, the send is answered.
    end: u64,
    physical_offset: u64,
    queue_offset: i64,
    queue_id: i32,
    opaque: i32,
    st: SerializeType,
    conn: Rc<Conn>,
    /// When the send was queued, right after its append (one vDSO clock read per send).
    queued_at: Instant,
    /// A half message's transaction id, named in its answer.
    transaction_id: Option<TransactionId>,
    /// A timer message's recall handle, named in its answer (allocated for those only).
    recall_handle: Option<Box<str>>,
}

/// The shard's queue of sync sends awaiting durability (and/or a slave's confirmation).
pub struct SyncAcks {
    queue: RefCell<VecDeque<PendingAck>>,
    /// Whether the task that answers the queue is running.
    running: Cell<bool>,
    /// Per successful answer: from its queueing (after the append) until the answer went into
    /// the connection's outbox.
    latency: RefCell<LatencyHistogram>,
}

impl Default for SyncAcks {
    fn default() -> Self {
        SyncAcks {
            queue: RefCell::new(VecDeque::with_capacity(INITIAL_CAPACITY)),
            running: Cell::new(false),
            latency: RefCell::new(LatencyHistogram::new()),
        }
    }
}

impl SyncAcks {
    /// Queues the answer to a send whose record ends at `end`; starts the answering task when
    /// it is not running.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &self,
        broker: &Broker,
        conn: &Rc<Conn>,
        end: u64,
        physical_offset: u64,
        queue_id: i32,
        queue_offset: i64,
        opaque: i32,
        st: SerializeType,
        transaction_id: Option<&str>,
        recall_handle: Option<&str>,
    ) {
        {
            let mut q = self.queue.borrow_mut();
            debug_assert!(q.back().is_none_or(|b| b.end <= end), "acks out of order");
            q.push_back(PendingAck {
                end,
                physical_offset,
                queue_offset,
                queue_id,
                opaque,
                st,
                conn: conn.clone(),
                queued_at: Instant::now(),
                transaction_id: transaction_id.and_then(TransactionId::new),
                recall_handle: recall_handle.map(Box::from),
            });
        }
        if !self.running.replace(true) {
            match broker.rc() {
                Some(b) => crate::runtime::spawn_detached(answer_loop(b)),
                None => {
                    // The broker is being dropped: nothing can be made durable any more.
                    self.running.set(false);
                    self.answer_ready(
                        broker,
                        Some(&AckFailure {
                            code: ResponseCode::FLUSH_DISK_TIMEOUT,
                            remark: StoreError::ShutDown.to_string(),
                        }),
                    );
                }
            }
        }
    }

    /// Latencies of the sends answered with success since the broker started, from the
    /// append to the answer (the group commit's share of a sync send's latency).
    pub(crate) fn latency(&self) -> LatencySummary {
        self.latency.borrow().summary()
    }

    /// The same over the last whole 10 s window before `now`.
    pub(crate) fn latency_last_window(&self, now: Instant) -> LatencySummary {
        self.latency.borrow_mut().last_window(now)
    }

    /// Answers every queued send the acknowledged point covers (durable and/or confirmed by a
    /// slave, see [`super::ha::acked_offset`]); with `failure`, the rest too (with its code).
    /// Never awaits, so the queue cannot change during the pass.
    fn answer_ready(&self, b: &Broker, failure: Option<&AckFailure>) {
        let durable = super::ha::acked_offset(b);
        let now = Instant::now();
        loop {
            let ack = {
                let mut q = self.queue.borrow_mut();
                match q.front() {
                    Some(a) if a.end <= durable || failure.is_some() => q.pop_front(),
                    _ => None,
                }
            };
            let Some(a) = ack else { break };
            let (code, remark) = match failure {
                Some(f) if a.end > durable => (f.code, Some(f.remark.as_str())),
                _ => {
                    // A short borrow: nothing below runs while it is held.
                    self.latency.borrow_mut().record(a.queued_at, now);
                    (ResponseCode::SUCCESS, None)
                }
            };
            let id = offset_msg_id(b.addr, a.physical_offset as i64);
            super::send::respond_send(
                &a.conn,
                a.st,
                a.opaque,
                code,
                remark,
                id.as_str(),
                a.queue_id,
                a.queue_offset,
                a.transaction_id.as_ref().map(TransactionId::as_str),
                a.recall_handle.as_deref(),
                b,
            );
        }
    }
}

/// Waits for the front entry's durability, answers what it covers, until the queue is empty.
async fn answer_loop(b: Rc<Broker>) {
    loop {
        let front = b.sync_acks.queue.borrow().front().map(|a| a.end);
        let Some(end) = front else {
            b.sync_acks.running.set(false);
            return;
        };
        let r = super::ha::wait_acked(&b, end).await;
        b.sync_acks.answer_ready(&b, r.as_ref().err());
    }
}
