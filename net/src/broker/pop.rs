//! POP consumption (RocketMQ 5): POP_MESSAGE (200050), ACK_MESSAGE (200051),
//! CHANGE_MESSAGE_INVISIBLETIME (200053), BATCH_ACK_MESSAGE (200151), and the revive service
//! that redelivers what was popped and never acknowledged. docs/pop.md tells the whole story.
//!
//! The broker keeps each (group, topic, queue)'s pop state on the shard that owns the queue:
//! a *frontier* (the next offset a pop hands out) and the *in-flight* table, one entry per
//! popped offset with its pop time and the time it becomes visible again. A deadline index
//! ordered by that time lets the revive service find what is due without scanning.
//!
//! Durability, and how it differs from RocketMQ: RocketMQ writes a checkpoint message per pop
//! and an ack message per ack into a revive topic. ramjet writes neither. The group's
//! committed offset of a queue only ever moves up to the lowest offset still in flight, so
//! after a crash or restart the frontier starts again from the committed offset and every
//! message that was in flight is delivered again (at least once: acknowledged messages above
//! the lowest unacknowledged one may come again too). A message whose invisible time ends
//! unacknowledged is copied to the pop retry topic `%RETRY%<group>_<topic>` with its
//! reconsume count + 1 (or to `%DLQ%<group>` once the count reaches the group's
//! `retryMaxTimes`), and leaves the in-flight table only once that copy is durable.
//!
//! Orderly pops (`order` = true) lock a queue for the group while anything popped from it is
//! in flight; when the invisible time ends unacknowledged, the same messages are popped again
//! from the same queue with their attempt count in `orderCountInfo`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::{
    offset_msg_id, properties, properties::PropertiesBuilder, tag_hash_bytes, MessageToStore,
    RecordView,
};
use ramjet_core::remoting::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use ramjet_core::remoting::pop::{self as fmt, Receipt, ORDER_REVIVE_QID};
use ramjet_core::remoting::{CommandView, FrameHead, ResponseCode, SerializeType};
use ramjet_core::selector::Selector;
use ramjet_storage::store::GetStatus;

use super::conn::Conn;
use super::longpoll::ANY_QUEUE;
use super::namesrv_host::now_ms;
use super::pull::TagFilter;
use super::shard::{Broker, ShardCounters};
use super::topics::{DLQ_PREFIX, PERM_READ, PERM_WRITE};

/// Most messages one pop hands out (RocketMQ's limit too).
pub const MAX_POP_MESSAGES: i32 = 32;
/// Invisible time bounds: RocketMQ's clients accept 10 s to 12 h; the broker takes down to
/// 1 s so that tests and short-lived consumers need not wait.
pub const MIN_INVISIBLE_MS: i64 = 1_000;
pub const MAX_INVISIBLE_MS: i64 = 12 * 3600 * 1000;
/// Most expired messages the revive service copies per round before it waits for them to be
/// durable and lets the shard's other work run.
const REVIVE_BATCH: usize = 256;
/// How long a message whose revive failed (disk full, say) waits before the next try.
const REVIVE_RETRY_MS: i64 = 1_000;

/// One popped offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    pop_time: i64,
    /// When it becomes visible again; `i64::MAX` while the revive service copies it.
    deadline: i64,
    /// Its key in the deadline index: `(deadline, queue, from, to)`.
    from: i64,
    to: i64,
}

/// The in-flight entries of one queue in offset order. Offsets come in rising order (a
/// queue's frontier only moves forward; an orderly repeat clears the table first), so an
/// entry is appended, found by binary search, and taken out by marking it (`pop_time` 0);
/// marked entries leave once no live entry precedes them. After warm-up the deque's
/// capacity is reused: no allocation per message.
#[derive(Debug, Default)]
struct Flight {
    slots: VecDeque<(i64, Entry)>,
    live: usize,
}

impl Flight {
    fn find(&self, offset: i64) -> Option<usize> {
        let i = self.slots.partition_point(|(o, _)| *o < offset);
        (i < self.slots.len() && self.slots[i].0 == offset && self.slots[i].1.pop_time != 0)
            .then_some(i)
    }

    fn get(&self, offset: i64) -> Option<Entry> {
        self.find(offset).map(|i| self.slots[i].1)
    }

    fn get_mut(&mut self, offset: i64) -> Option<&mut Entry> {
        let i = self.find(offset)?;
        Some(&mut self.slots[i].1)
    }

    fn push(&mut self, offset: i64, e: Entry) {
        debug_assert!(e.pop_time != 0);
        debug_assert!(self.slots.back().is_none_or(|(o, _)| *o < offset));
        self.slots.push_back((offset, e));
        self.live += 1;
    }

    fn remove(&mut self, offset: i64) -> Option<Entry> {
        let i = self.find(offset)?;
        let e = self.slots[i].1;
        self.slots[i].1.pop_time = 0;
        self.live -= 1;
        while self.slots.front().is_some_and(|(_, e)| e.pop_time == 0) {
            self.slots.pop_front();
        }
        Some(e)
    }

    /// The lowest offset in flight.
    fn first(&self) -> Option<i64> {
        self.slots.front().map(|(o, _)| *o)
    }

    fn len(&self) -> usize {
        self.live
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.live = 0;
    }

    fn live(&self) -> impl Iterator<Item = (i64, &Entry)> {
        self.slots
            .iter()
            .filter(|(_, e)| e.pop_time != 0)
            .map(|(o, e)| (*o, e))
    }

    /// Whether a live entry in `from..=to` still has `deadline`.
    fn any_due_at(&self, from: i64, to: i64, deadline: i64) -> bool {
        let start = self.slots.partition_point(|(o, _)| *o < from);
        self.slots
            .range(start..)
            .take_while(|(o, _)| *o <= to)
            .any(|(_, e)| e.pop_time != 0 && e.deadline == deadline)
    }

    /// The live entries with offsets in `from..=to`.
    fn range_mut(&mut self, from: i64, to: i64) -> impl Iterator<Item = (i64, &mut Entry)> {
        let start = self.slots.partition_point(|(o, _)| *o < from);
        self.slots
            .range_mut(start..)
            .take_while(move |(o, _)| *o <= to)
            .filter(|(_, e)| e.pop_time != 0)
            .map(|(o, e)| (*o, e))
    }
}

/// The pop state of one (group, topic, queue).
#[derive(Debug)]
struct PopQueue {
    group: String,
    topic: String,
    /// The topic consumers pop (for the pop retry topic's queues: the topic it retries).
    origin: String,
    queue_id: i32,
    frontier: i64,
    /// Last committed offset written to the offset store.
    committed: i64,
    inflight: Flight,
    /// Orderly: the queue's in-flight messages were popped orderly (not in the deadline
    /// index; they come again from this queue), and how often they have been.
    order: bool,
    order_attempts: i32,
}

/// group -> topic -> queue id -> index into `Inner::queues`: looked up with borrowed names, so
/// a pop or an ack finds its queue without allocating.
#[derive(Default)]
struct QueueIndex(HashMap<String, HashMap<String, HashMap<i32, u32>>>);

impl QueueIndex {
    fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<u32> {
        self.0.get(group)?.get(topic)?.get(&queue_id).copied()
    }

    fn insert(&mut self, group: &str, topic: &str, queue_id: i32, i: u32) {
        self.0
            .entry(group.to_string())
            .or_default()
            .entry(topic.to_string())
            .or_default()
            .insert(queue_id, i);
    }
}

#[derive(Default)]
struct Inner {
    index: QueueIndex,
    queues: Vec<PopQueue>,
    /// (deadline, queue index, first offset, last offset) of each unordered pop's entries
    /// of a queue, and of each entry whose deadline changed since. An entry is due when its
    /// own deadline still equals the index entry's; an index entry goes once none of its
    /// entries is left with its deadline (so the index never outgrows the in-flight table).
    deadlines: BTreeSet<(i64, u32, i64, i64)>,
    inflight: usize,
}

/// Counters of POP consumption (GET_BROKER_RUNTIME_INFO `pop*`).
#[derive(Debug, Default)]
pub struct PopCounters {
    pub pops: Cell<u64>,
    pub popped: Cell<u64>,
    pub acked: Cell<u64>,
    /// Acks and invisible-time changes that named nothing in flight (already acknowledged,
    /// already revived, or an old handle).
    pub stale: Cell<u64>,
    pub changed: Cell<u64>,
    pub revived: Cell<u64>,
    pub revived_dlq: Cell<u64>,
    pub revive_failures: Cell<u64>,
}

/// One shard's POP state.
pub struct PopState {
    inner: RefCell<Inner>,
    /// Reused buffer for records read from a segment file.
    scratch: RefCell<Vec<u8>>,
    max_inflight: usize,
    /// Rotates the first queue of a queue -1 pop, and when the retry topic goes first.
    turn: Cell<u32>,
    /// Pops parked in long polling, by (group, topic, queue id as asked; -1 any): what
    /// POLLING_INFO answers.
    parked: RefCell<HashMap<(String, String, i32), u32>>,
    pub counters: PopCounters,
}

/// A pop parked in long polling, counted in [`PopState`] until dropped.
pub struct ParkedPop {
    broker: Rc<Broker>,
    key: (String, String, i32),
}

impl Drop for ParkedPop {
    fn drop(&mut self) {
        let mut parked = self.broker.pop.parked.borrow_mut();
        if let Some(n) = parked.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                parked.remove(&self.key);
            }
        }
    }
}

/// What an ack or an invisible-time change found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The offset was in flight with the handle's pop time.
    Yes,
    /// Nothing in flight there with that pop time.
    No,
}

/// What a pop asks, after its header is gone.
struct PopArgs {
    group: String,
    topic: String,
    queue_id: i32,
    max: usize,
    invisible: i64,
    init_max: bool,
    order: bool,
    filter: TagFilter,
}

/// What a pop gathered.
#[derive(Default)]
struct Popped {
    body: Vec<u8>,
    count: usize,
    start_info: String,
    msg_info: String,
    order_info: String,
    rest: i64,
    full: bool,
    /// The pop time the in-flight entries carry (the handles must carry the same).
    pop_time: i64,
}

impl PopState {
    pub fn new(max_inflight: usize) -> PopState {
        PopState {
            inner: RefCell::new(Inner::default()),
            scratch: RefCell::new(Vec::new()),
            max_inflight,
            turn: Cell::new(0),
            parked: RefCell::new(HashMap::new()),
            counters: PopCounters::default(),
        }
    }

    /// Messages in flight on this shard.
    pub fn inflight(&self) -> usize {
        self.inner.borrow().inflight
    }

    /// Keys of the deadline index (one per unordered pop batch still in flight, plus one per
    /// changed or re-tried message).
    pub fn deadline_keys(&self) -> usize {
        self.inner.borrow().deadlines.len()
    }

    /// Counts a pop of `group` on (topic, queue) as parked until the guard drops.
    pub fn park(broker: &Rc<Broker>, group: &str, topic: &str, queue_id: i32) -> ParkedPop {
        let key = (group.to_string(), topic.to_string(), queue_id);
        *broker
            .pop
            .parked
            .borrow_mut()
            .entry(key.clone())
            .or_default() += 1;
        ParkedPop {
            broker: broker.clone(),
            key,
        }
    }

    /// Pops of `group` parked on (topic, queue id as they asked).
    pub fn parked(&self, group: &str, topic: &str, queue_id: i32) -> u32 {
        self.parked
            .borrow()
            .get(&(group.to_string(), topic.to_string(), queue_id))
            .copied()
            .unwrap_or(0)
    }

    /// The next offset `group` would pop from (topic, queue), without creating any state:
    /// the frontier when the queue has pop state, else the committed offset, else the min.
    /// `None` while the queue is locked by an orderly pop (nothing can be popped from it).
    pub fn next_offset(&self, b: &Broker, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let inner = self.inner.borrow();
        let min = b.store.min_offset(topic, queue_id);
        match inner.index.get(group, topic, queue_id) {
            Some(i) => {
                let q = &inner.queues[i as usize];
                if q.order && !q.inflight.is_empty() {
                    return None;
                }
                Some(q.frontier.max(min))
            }
            None => Some(match b.offsets.get(topic, group, queue_id) {
                Some(o) if o >= 0 => o.max(min),
                _ => min,
            }),
        }
    }

    /// Pops up to `want` messages of (topic, queue) into `out`.
    #[allow(clippy::too_many_arguments)]
    fn pop_queue(
        &self,
        b: &Broker,
        a: &PopArgs,
        topic: &str,
        queue_id: i32,
        want: usize,
        pop_time: i64,
        out: &mut Popped,
    ) {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let idx = inner.queue(b, &a.group, topic, &a.topic, queue_id, a.init_max);
        // An admin reset (INVOKE_BROKER_TO_RESET_OFFSET) waits for the group's next take of
        // the queue: pops start again at the reset offset, and what was in flight is dropped
        // (its handles are stale; RocketMQ 5 drops a reset queue's pop checkpoints alike).
        if let Some(reset) = b.offsets.take_reset(topic, &a.group, queue_id) {
            inner.reset_queue(b, idx, reset);
        }
        let max_offset = b.store.max_offset(topic, queue_id);
        let min_offset = b.store.min_offset(topic, queue_id);
        let deadline = pop_time.saturating_add(a.invisible);
        let inflight_total = inner.inflight;
        let q = &mut inner.queues[idx as usize];
        if !a.order && q.order && !q.inflight.is_empty() {
            // Popped orderly and not yet acknowledged: locked for unordered pops too.
            out.rest += (max_offset - q.frontier).max(0);
            return;
        }
        if a.order && !q.inflight.is_empty() {
            // Locked while anything popped orderly is in flight and not yet due again.
            let due = q.inflight.live().all(|(_, e)| e.deadline <= pop_time);
            if !q.order || !due {
                out.rest += (max_offset - q.frontier).max(0);
                return;
            }
            // Due: the same messages again, from the lowest one.
            let first = q.inflight.first().expect("not empty");
            let n = q.inflight.len();
            q.inflight.clear();
            q.frontier = first;
            q.order_attempts += 1;
            inner.inflight -= n;
        }
        let q = &mut inner.queues[idx as usize];
        q.frontier = q.frontier.max(min_offset);
        let start = q.frontier;
        let mut off = start;
        let mut got: Vec<i64> = Vec::new();
        let want = want.min(self.max_inflight.saturating_sub(inflight_total));
        if want == 0 {
            out.full = true;
        }
        let max_bytes = b.cfg.broker.max_pull_bytes;
        // The matching records as CommitLog ranges (one read per run of adjacent records, not
        // one per record), tag filter applied by the store; SQL92 checked here per record.
        while got.len() < want && off < max_offset {
            let left = (want - got.len()) as u32;
            let r = b
                .store
                .get_messages(topic, queue_id, off, left, max_bytes, &|c| {
                    a.filter.matches(c)
                });
            if !matches!(r.status, GetStatus::Found | GetStatus::NoMatchedMessage)
                || r.next_begin_offset <= off
            {
                break;
            }
            out.body.reserve(r.total_bytes as usize);
            let mut scratch = self.scratch.borrow_mut();
            let mut unreadable = false;
            for chunk in &r.chunks {
                let buf = match super::pull::chunk_bytes(chunk, &mut scratch) {
                    Ok(buf) => buf,
                    Err(e) => {
                        tracing::error!(shard = b.index, topic, queue_id, offset = off, error = %e, "pop: records unreadable; the pop stops before them");
                        unreadable = true;
                        break;
                    }
                };
                let mut pos = 0usize;
                while pos < buf.len() {
                    let Ok(view) = RecordView::parse(&buf[pos..]) else {
                        tracing::error!(
                            shard = b.index,
                            topic,
                            queue_id,
                            "pop: unparsable record; the pop stops before it"
                        );
                        unreadable = true;
                        break;
                    };
                    let size = view.total_size() as usize;
                    if size == 0 || pos + size > buf.len() {
                        unreadable = true;
                        break;
                    }
                    let keep = a.filter.sql.as_ref().is_none_or(|sel| {
                        let props = view.properties();
                        sel.matches(|name| properties::get_str(props, name))
                    });
                    if keep {
                        out.body.extend_from_slice(&buf[pos..pos + size]);
                        got.push(view.queue_offset());
                    }
                    pos += size;
                }
                if unreadable {
                    break;
                }
            }
            if unreadable {
                // Up to the last record handed out; what follows is tried again next time.
                off = got.last().map_or(off, |o| o + 1);
                break;
            }
            off = r.next_begin_offset;
        }
        out.rest += (max_offset - off).max(0);
        if off == start {
            return;
        }
        let q = &mut inner.queues[idx as usize];
        q.frontier = off;
        q.order = a.order;
        let (from, to) = (
            got.first().copied().unwrap_or(0),
            got.last().copied().unwrap_or(0),
        );
        for &o in &got {
            q.inflight.push(
                o,
                Entry {
                    pop_time,
                    deadline,
                    from,
                    to,
                },
            );
        }
        if !a.order && !got.is_empty() {
            inner.deadlines.insert((deadline, idx, from, to));
        }
        inner.inflight += got.len();
        inner.commit(b, idx);
        if got.is_empty() {
            return;
        }
        let attempts = inner.queues[idx as usize].order_attempts;
        fmt::push_info(&mut out.start_info, topic, queue_id, start);
        fmt::push_offsets(&mut out.msg_info, topic, queue_id, &got);
        if a.order {
            fmt::push_info(&mut out.order_info, topic, queue_id, i64::from(attempts));
        }
        out.count += got.len();
        ShardCounters::add(&self.counters.popped, got.len() as u64);
    }

    /// One pass over the queues a pop names (and the pop retry topic's).
    fn pop_once(&self, b: &Broker, a: &PopArgs) -> Popped {
        let pop_time = now_ms();
        let mut out = Popped {
            pop_time,
            ..Popped::default()
        };
        let turn = self.turn.get();
        self.turn.set(turn.wrapping_add(1));
        let retry = fmt::retry_topic(&a.group, &a.topic);
        let retry_queues = if a.order {
            0
        } else {
            b.topics.queue_info(&retry).map_or(0, |(r, _, _)| r)
        };
        let pop_retry = |out: &mut Popped| {
            for q in 0..retry_queues as i32 {
                let want = a.max - out.count;
                if want == 0 {
                    break;
                }
                self.pop_queue(b, a, &retry, q, want, pop_time, out);
            }
        };
        // As RocketMQ: the retry topic first one pop in five, else after the topic.
        let retry_first = turn.is_multiple_of(5);
        if retry_first {
            pop_retry(&mut out);
        }
        let read_queues = b.topics.queue_info(&a.topic).map_or(0, |(r, _, _)| r) as i32;
        if a.queue_id >= 0 {
            if out.count < a.max {
                let want = a.max - out.count;
                self.pop_queue(b, a, &a.topic, a.queue_id, want, pop_time, &mut out);
            }
        } else if read_queues > 0 {
            let first = (turn % read_queues as u32) as i32;
            for i in 0..read_queues {
                if out.count >= a.max {
                    break;
                }
                let q = (first + i) % read_queues;
                let want = a.max - out.count;
                self.pop_queue(b, a, &a.topic, q, want, pop_time, &mut out);
            }
        }
        if !retry_first && out.count < a.max {
            pop_retry(&mut out);
        }
        out
    }

    /// Acknowledges `offset` of (group, topic, queue) popped at `pop_time`.
    pub fn ack(
        &self,
        b: &Broker,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        pop_time: i64,
    ) -> Found {
        if self.ack_many(b, group, topic, queue_id, &[offset], pop_time) == 1 {
            Found::Yes
        } else {
            Found::No
        }
    }

    /// Acknowledges `offsets` of (group, topic, queue), all popped at `pop_time` (one entry of
    /// a batch ack): one lookup of the queue, one commit. Returns how many were in flight.
    pub fn ack_many(
        &self,
        b: &Broker,
        group: &str,
        topic: &str,
        queue_id: i32,
        offsets: &[i64],
        pop_time: i64,
    ) -> usize {
        let mut inner = self.inner.borrow_mut();
        let Some(idx) = inner.index.get(group, topic, queue_id) else {
            ShardCounters::add(&self.counters.stale, offsets.len() as u64);
            return 0;
        };
        let mut acked = 0;
        for &offset in offsets {
            let q = &mut inner.queues[idx as usize];
            // Not in flight with that pop time; or a revive in progress (its copy is being
            // stored and will be delivered).
            let Some(e) = q
                .inflight
                .get(offset)
                .filter(|e| e.pop_time == pop_time && e.deadline != i64::MAX)
            else {
                continue;
            };
            q.inflight.remove(offset);
            let order = q.order;
            inner.inflight -= 1;
            if !order {
                inner.drop_key_if_done(idx, e.deadline, e.from, e.to);
            }
            acked += 1;
        }
        ShardCounters::add(&self.counters.stale, (offsets.len() - acked) as u64);
        if acked == 0 {
            return 0;
        }
        ShardCounters::add(&self.counters.acked, acked as u64);
        inner.commit(b, idx);
        let q = &mut inner.queues[idx as usize];
        if q.order && q.inflight.is_empty() {
            q.order_attempts = 0;
            // The queue is unlocked: a parked orderly pop may take what follows.
            let origin = q.origin.clone();
            drop(inner);
            b.longpoll.notify_arrival(&origin, ANY_QUEUE, i64::MAX);
        }
        acked
    }

    /// Moves the time `offset` becomes visible again to `now + invisible`; the new pop time
    /// (`now`) identifies it from then on. `None` when it is not in flight with `pop_time`.
    #[allow(clippy::too_many_arguments)]
    pub fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        pop_time: i64,
        invisible: i64,
        now: i64,
    ) -> Option<i64> {
        let mut inner = self.inner.borrow_mut();
        let idx = inner.index.get(group, topic, queue_id)?;
        let q = &mut inner.queues[idx as usize];
        let e = q.inflight.get_mut(offset)?;
        if e.pop_time != pop_time || e.deadline == i64::MAX {
            return None;
        }
        let old = *e;
        // Two changes within one millisecond still get distinct pop times.
        let new_pop = now.max(old.pop_time + 1);
        e.pop_time = new_pop;
        e.deadline = new_pop.saturating_add(invisible);
        (e.from, e.to) = (offset, offset);
        let new = *e;
        if !q.order {
            inner.deadlines.insert((new.deadline, idx, offset, offset));
            inner.drop_key_if_done(idx, old.deadline, old.from, old.to);
        }
        ShardCounters::add(&self.counters.changed, 1);
        Some(new_pop)
    }

    /// Takes up to `max` unordered entries due at `now` out of the deadline index (marked as
    /// being revived): (queue index, offset, pop time).
    fn take_due(&self, now: i64, max: usize) -> Vec<(u32, i64, i64)> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let mut due = Vec::new();
        while due.len() < max {
            let Some(&(deadline, idx, from, to)) = inner.deadlines.first() else {
                break;
            };
            if deadline > now {
                break;
            }
            inner.deadlines.pop_first();
            for (offset, e) in inner.queues[idx as usize].inflight.range_mut(from, to) {
                if e.deadline == deadline {
                    due.push((idx, offset, e.pop_time));
                    e.deadline = i64::MAX;
                }
            }
        }
        due
    }

    /// The revive of `(idx, offset)` is durable: it leaves the in-flight table.
    fn revived(&self, b: &Broker, idx: u32, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let flight = &mut inner.queues[idx as usize].inflight;
        // Still the entry being revived (an admin reset may have dropped it meanwhile, and
        // the offset been popped again since).
        if flight.get(offset).is_some_and(|e| e.deadline == i64::MAX)
            && flight.remove(offset).is_some()
        {
            inner.inflight -= 1;
            inner.commit(b, idx);
        }
    }

    /// The revive of `(idx, offset)` failed: due again at `at`.
    fn revive_later(&self, idx: u32, offset: i64, at: i64) {
        let mut inner = self.inner.borrow_mut();
        if let Some(e) = inner.queues[idx as usize]
            .inflight
            .get_mut(offset)
            .filter(|e| e.deadline == i64::MAX)
        {
            e.deadline = at;
            (e.from, e.to) = (offset, offset);
            inner.deadlines.insert((at, idx, offset, offset));
        }
    }

    fn queue_meta(&self, idx: u32) -> (String, String, String, i32) {
        let inner = self.inner.borrow();
        let q = &inner.queues[idx as usize];
        (
            q.group.clone(),
            q.topic.clone(),
            q.origin.clone(),
            q.queue_id,
        )
    }

    /// Forgets the pop state of a deleted topic (its queues and their pop retry topics).
    pub fn remove_topic(&self, topic: &str) {
        let mut inner = self.inner.borrow_mut();
        let mut dropped = 0;
        for q in inner.queues.iter_mut() {
            if q.topic == topic || q.origin == topic {
                dropped += q.inflight.len();
                q.inflight.clear();
                q.frontier = 0;
            }
        }
        let queues = &inner.queues;
        let keep: BTreeSet<(i64, u32, i64, i64)> = inner
            .deadlines
            .iter()
            .filter(|(_, idx, _, _)| {
                let q = &queues[*idx as usize];
                q.topic != topic && q.origin != topic
            })
            .copied()
            .collect();
        inner.deadlines = keep;
        inner.inflight -= dropped;
    }
}

impl Inner {
    /// The index of (group, topic, queue)'s state, created with its frontier at the group's
    /// committed offset (else the queue's min, or its max with `init_max`; a retry topic
    /// always starts at its min).
    fn queue(
        &mut self,
        b: &Broker,
        group: &str,
        topic: &str,
        origin: &str,
        queue_id: i32,
        init_max: bool,
    ) -> u32 {
        if let Some(i) = self.index.get(group, topic, queue_id) {
            return i;
        }
        let frontier = match b.offsets.get(topic, group, queue_id) {
            Some(o) if o >= 0 => o,
            _ if init_max && topic == origin => b.store.max_offset(topic, queue_id),
            _ => b.store.min_offset(topic, queue_id),
        };
        let i = self.queues.len() as u32;
        self.queues.push(PopQueue {
            group: group.to_string(),
            topic: topic.to_string(),
            origin: origin.to_string(),
            queue_id,
            frontier,
            committed: -1,
            inflight: Flight::default(),
            order: false,
            order_attempts: 0,
        });
        self.index.insert(group, topic, queue_id, i);
        i
    }

    /// Moves a queue's frontier to an admin reset's offset and drops what it had in flight.
    fn reset_queue(&mut self, b: &Broker, idx: u32, offset: i64) {
        let q = &mut self.queues[idx as usize];
        let dropped = q.inflight.len();
        q.inflight.clear();
        q.frontier = offset;
        q.committed = offset;
        q.order = false;
        q.order_attempts = 0;
        self.inflight -= dropped;
        self.deadlines.retain(|&(_, i, _, _)| i != idx);
        tracing::info!(
            shard = b.index,
            group = %self.queues[idx as usize].group,
            topic = %self.queues[idx as usize].topic,
            queue_id = self.queues[idx as usize].queue_id,
            offset,
            dropped,
            "pop: the queue takes the admin reset; what was in flight is dropped"
        );
    }

    /// Takes the deadline index's key out once no entry it covers still has its deadline.
    fn drop_key_if_done(&mut self, idx: u32, deadline: i64, from: i64, to: i64) {
        if !self.queues[idx as usize]
            .inflight
            .any_due_at(from, to, deadline)
        {
            self.deadlines.remove(&(deadline, idx, from, to));
        }
    }

    /// Commits the lowest offset in flight (else the frontier) as the group's offset.
    fn commit(&mut self, b: &Broker, idx: u32) {
        let q = &mut self.queues[idx as usize];
        let at = q.inflight.first().unwrap_or(q.frontier);
        if at != q.committed {
            q.committed = at;
            b.offsets.commit(&q.topic, &q.group, q.queue_id, at);
        }
    }
}

/// The filter of a pop: `expType` TAG (default) or SQL92 with `exp`.
fn pop_filter(b: &Broker, h: &PopMessageRequestHeader<'_>) -> Result<TagFilter, (i32, String)> {
    let exp = h.exp.unwrap_or("*");
    let ty = h.exp_type.unwrap_or("TAG");
    if ty.eq_ignore_ascii_case("SQL92") {
        if !b.cfg.broker.enable_property_filter {
            return Err((
                ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                "The broker does not support consumer to filter message by SQL92 (broker.enable_property_filter)".into(),
            ));
        }
        return Selector::parse(exp)
            .map(TagFilter::sql)
            .map_err(|e| (ResponseCode::SUBSCRIPTION_PARSE_FAILED, e.to_string()));
    }
    if !ty.eq_ignore_ascii_case("TAG") {
        return Err((
            ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            format!("expression type {ty} is not supported by this broker (TAG, SQL92)"),
        ));
    }
    Ok(TagFilter::parse(exp))
}

/// The checks every request of the POP family starts with: the group may consume, the topic
/// exists and is readable, and the queue id is one of its readable queues or -1. Returns the
/// queue ids it names (all readable ones for -1), or `None` after answering the refusal.
pub(super) fn pop_queues(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Option<Vec<i32>> {
    if let Err((code, remark)) = b.groups.may_pull(group, || false) {
        conn.respond_error(req, code, &remark);
        return None;
    }
    let read_q = super::pull::readable_queues(b, conn, req, topic, "peeking")?;
    if queue_id >= 0 && (queue_id as u32) < read_q {
        return Some(vec![queue_id]);
    }
    if queue_id == -1 {
        return Some((0..read_q as i32).collect());
    }
    conn.respond_error(
        req,
        ResponseCode::INVALID_PARAMETER,
        &format!(
            "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{read_q}]"
        ),
    );
    None
}

/// Whether `maxMsgNums` is within 1 to [`MAX_POP_MESSAGES`]; answers the refusal when not.
pub(super) fn max_msg_nums_ok(conn: &Conn, req: &CommandView<'_>, n: i32) -> bool {
    if (1..=MAX_POP_MESSAGES).contains(&n) {
        return true;
    }
    conn.respond_error(
        req,
        ResponseCode::INVALID_PARAMETER,
        &format!("maxMsgNums {n} is out of range 1 to {MAX_POP_MESSAGES}"),
    );
    false
}

/// POP_MESSAGE (200050).
pub fn handle_pop(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    ShardCounters::add(&b.pop.counters.pops, 1);
    let Some(h) = super::queries::decode::<PopMessageRequestHeader>(conn, req) else {
        return;
    };
    if pop_queues(b, conn, req, h.consumer_group, h.topic, h.queue_id).is_none()
        || !max_msg_nums_ok(conn, req, h.max_msg_nums)
    {
        return;
    }
    if !(MIN_INVISIBLE_MS..=MAX_INVISIBLE_MS).contains(&h.invisible_time) {
        return conn.respond_error(
            req,
            ResponseCode::INVALID_PARAMETER,
            &format!(
                "invisibleTime {} ms is out of range {MIN_INVISIBLE_MS} to {MAX_INVISIBLE_MS}",
                h.invisible_time
            ),
        );
    }
    let filter = match pop_filter(b, &h) {
        Ok(f) => f,
        Err((code, remark)) => return conn.respond_error(req, code, &remark),
    };
    let args = PopArgs {
        group: h.consumer_group.to_string(),
        topic: h.topic.to_string(),
        queue_id: h.queue_id,
        max: h.max_msg_nums as usize,
        invisible: h.invisible_time,
        init_max: h.init_mode == 1,
        order: h.order.unwrap_or(false),
        filter,
    };
    let popped = b.pop.pop_once(b, &args);
    let hold_ms = (h.poll_time.max(0) as u64).min(b.cfg.broker.long_poll_max_ms);
    let (st, opaque) = (req.serialize_type, req.opaque);
    if popped.count > 0 || popped.full || hold_ms == 0 || req.is_oneway() {
        if !req.is_oneway() {
            respond(b, conn, st, opaque, &args, popped, hold_ms > 0);
        }
        return;
    }
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    crate::runtime::spawn_detached(async move {
        let _parked = PopState::park(&broker, &args.group, &args.topic, args.queue_id);
        let until = std::time::Instant::now() + Duration::from_millis(hold_ms);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(parked) = broker.longpoll.park(&args.topic, ANY_QUEUE, i64::MIN, left) else {
                // Registry full: RocketMQ's POLLING_FULL; the client pops again.
                let out = Popped {
                    full: true,
                    ..Popped::default()
                };
                return respond(&broker, &conn, st, opaque, &args, out, true);
            };
            let _ = parked.wait().await;
            if conn.is_closed() {
                return;
            }
            let popped = broker.pop.pop_once(&broker, &args);
            if popped.count > 0 || popped.full {
                return respond(&broker, &conn, st, opaque, &args, popped, true);
            }
        }
        let popped = broker.pop.pop_once(&broker, &args);
        respond(&broker, &conn, st, opaque, &args, popped, true);
    });
}

fn respond(
    b: &Broker,
    conn: &Conn,
    st: SerializeType,
    opaque: i32,
    a: &PopArgs,
    p: Popped,
    polled: bool,
) {
    let (code, remark) = if p.count > 0 {
        (ResponseCode::SUCCESS, None)
    } else if p.full {
        (
            ResponseCode::POLLING_FULL,
            Some("too many messages in flight on this broker (broker.pop_max_inflight), or too many parked pops (broker.max_parked_pulls)"),
        )
    } else if polled {
        (
            ResponseCode::POLLING_TIMEOUT,
            Some("no new message in the poll time"),
        )
    } else {
        (ResponseCode::PULL_NOT_FOUND, Some("no new message"))
    };
    let header = PopMessageResponseHeader {
        // The time the entries were put in flight with: an ack matches on it.
        pop_time: if p.pop_time > 0 { p.pop_time } else { now_ms() },
        invisible_time: a.invisible,
        revive_qid: if a.order { ORDER_REVIVE_QID } else { 0 },
        rest_num: p.rest,
        start_offset_info: (!p.start_info.is_empty()).then_some(p.start_info.as_str()),
        msg_offset_info: (!p.msg_info.is_empty()).then_some(p.msg_info.as_str()),
        order_count_info: (!p.order_info.is_empty()).then_some(p.order_info.as_str()),
    };
    let mut head = FrameHead::response(code, opaque);
    head.remark = remark;
    if code == ResponseCode::SUCCESS {
        ShardCounters::add(&b.counters.msgs_got, p.count as u64);
        ShardCounters::add(&b.counters.bytes_pulled, p.body.len() as u64);
    }
    conn.send_frame(st, &head, &header, &p.body);
}

/// Checks an ack's or a change's target exists; answers the error otherwise.
fn check_target(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> bool {
    let Some((read_q, _, _)) = b.topics.queue_info(topic) else {
        conn.respond_error(
            req,
            ResponseCode::TOPIC_NOT_EXIST,
            &format!("topic[{topic}] not exist, apply first please!"),
        );
        return false;
    };
    if queue_id < 0 || queue_id as u32 >= read_q {
        conn.respond_error(
            req,
            ResponseCode::MESSAGE_ILLEGAL,
            &format!("queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{read_q}]"),
        );
        return false;
    }
    let (min, max) = (
        b.store.min_offset(topic, queue_id),
        b.store.max_offset(topic, queue_id),
    );
    if offset < min || offset >= max {
        conn.respond_error(
            req,
            ResponseCode::NO_MESSAGE,
            &format!("offset {offset} is not in the queue's range [{min}, {max})"),
        );
        return false;
    }
    true
}

/// ACK_MESSAGE (200051). Answered SUCCESS also when nothing was in flight with the handle
/// (as RocketMQ does); the remark then says so.
pub fn handle_ack(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<AckMessageRequestHeader>(conn, req) else {
        return;
    };
    let receipt = match Receipt::parse(h.extra_info) {
        Ok(r) => r,
        Err(e) => return conn.respond_error(req, ResponseCode::INVALID_PARAMETER, &e.to_string()),
    };
    if !check_target(b, conn, req, h.topic, h.queue_id, h.offset) {
        return;
    }
    let found = b.pop.ack(
        b,
        h.consumer_group,
        h.topic,
        h.queue_id,
        h.offset,
        receipt.pop_time,
    );
    if req.is_oneway() {
        return;
    }
    let mut head = FrameHead::response(ResponseCode::SUCCESS, req.opaque);
    if found == Found::No {
        head.remark = Some("not in flight: already acknowledged, redelivered, or an old handle");
    }
    conn.send_frame(req.serialize_type, &head, &(), &[]);
}

/// BATCH_ACK_MESSAGE (200151).
pub fn handle_batch_ack(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let (_, acks) = match fmt::parse_batch_ack(req.body) {
        Ok(v) => v,
        Err(e) => return conn.respond_error(req, ResponseCode::INVALID_PARAMETER, &e),
    };
    for a in &acks {
        let topic = fmt::real_topic(&a.consumer_group, &a.topic, a.retry);
        b.pop.ack_many(
            b,
            &a.consumer_group,
            &topic,
            a.queue_id,
            &a.offsets,
            a.pop_time,
        );
    }
    if !req.is_oneway() {
        let head = FrameHead::response(ResponseCode::SUCCESS, req.opaque);
        conn.send_frame(req.serialize_type, &head, &(), &[]);
    }
}

/// CHANGE_MESSAGE_INVISIBLETIME (200053).
pub fn handle_change_invisible(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(h) = super::queries::decode::<ChangeInvisibleTimeRequestHeader>(conn, req) else {
        return;
    };
    let receipt = match Receipt::parse(h.extra_info) {
        Ok(r) => r,
        Err(e) => return conn.respond_error(req, ResponseCode::INVALID_PARAMETER, &e.to_string()),
    };
    if !(0..=MAX_INVISIBLE_MS).contains(&h.invisible_time) {
        return conn.respond_error(
            req,
            ResponseCode::INVALID_PARAMETER,
            &format!(
                "invisibleTime {} ms is out of range 0 to {MAX_INVISIBLE_MS}",
                h.invisible_time
            ),
        );
    }
    if !check_target(b, conn, req, h.topic, h.queue_id, h.offset) {
        return;
    }
    let Some(pop_time) = b.pop.change_invisible(
        h.consumer_group,
        h.topic,
        h.queue_id,
        h.offset,
        receipt.pop_time,
        h.invisible_time,
        now_ms(),
    ) else {
        ShardCounters::add(&b.pop.counters.stale, 1);
        return conn.respond_error(
            req,
            ResponseCode::NO_MESSAGE,
            &format!(
                "offset {} of {} queue {} is not in flight for group {} with this handle (acknowledged, redelivered, or an old handle)",
                h.offset, h.topic, h.queue_id, h.consumer_group
            ),
        );
    };
    if req.is_oneway() {
        return;
    }
    let header = ChangeInvisibleTimeResponseHeader {
        pop_time,
        invisible_time: h.invisible_time,
        revive_qid: receipt.revive_qid,
    };
    let head = FrameHead::response(ResponseCode::SUCCESS, req.opaque);
    conn.send_frame(req.serialize_type, &head, &header, &[]);
}

/// The revive service of one shard (a master's): copies each message whose invisible time
/// ended unacknowledged to the pop retry topic (or the DLQ), then, once the copies are
/// durable, takes them out of flight.
pub async fn run(b: Rc<Broker>) {
    let every = Duration::from_millis(b.cfg.broker.pop_revive_interval_ms);
    loop {
        crate::runtime::sleep(every).await;
        loop {
            let due = b.pop.take_due(now_ms(), REVIVE_BATCH);
            if due.is_empty() {
                break;
            }
            let more = due.len() == REVIVE_BATCH;
            revive_batch(&b, due).await;
            if !more {
                break;
            }
        }
    }
}

async fn revive_batch(b: &Broker, due: Vec<(u32, i64, i64)>) {
    let mut end = 0u64;
    let mut stored = Vec::with_capacity(due.len());
    let mut origins: Vec<String> = Vec::new();
    for (idx, offset, pop_time) in due {
        let (group, topic, origin, queue_id) = b.pop.queue_meta(idx);
        match revive_one(b, &group, &topic, &origin, queue_id, offset, pop_time).await {
            Ok(e) => {
                end = end.max(e);
                stored.push((idx, offset));
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            Err(e) => {
                ShardCounters::add(&b.pop.counters.revive_failures, 1);
                tracing::warn!(shard = b.index, group, topic, queue_id, offset, error = %e, "pop revive failed; tried again later");
                b.pop.revive_later(idx, offset, now_ms() + REVIVE_RETRY_MS);
            }
        }
    }
    if end > 0 {
        if let Err(e) = b.store.wait_durable(end).await {
            tracing::warn!(shard = b.index, error = %e, "pop revive copies not durable; tried again later");
            for (idx, offset) in stored {
                b.pop.revive_later(idx, offset, now_ms() + REVIVE_RETRY_MS);
            }
            return;
        }
    }
    for (idx, offset) in stored {
        b.pop.revived(b, idx, offset);
    }
    for origin in origins {
        b.longpoll.notify_arrival(&origin, ANY_QUEUE, i64::MAX);
    }
}

/// Stores the retry (or DLQ) copy of one expired message; its CommitLog end. A message no
/// longer stored (retention took it) has nothing to copy: `Ok(0)`.
#[allow(clippy::too_many_arguments)]
async fn revive_one(
    b: &Broker,
    group: &str,
    topic: &str,
    origin: &str,
    queue_id: i32,
    offset: i64,
    pop_time: i64,
) -> Result<u64, String> {
    let Some(unit) = b.store.queue_unit(topic, queue_id, offset) else {
        return Ok(0);
    };
    super::schedule::read_in_record_at(b, unit.physical_offset).await;
    let rec = b
        .store
        .read_record(unit.physical_offset)
        .await
        .map_err(|e| format!("record at {} unreadable: {e}", unit.physical_offset))?;
    let view = RecordView::parse(&rec).map_err(|e| format!("bad record: {e}"))?;
    let props = view.properties();
    let reconsume = view.reconsume_times();
    let max_times = b
        .groups
        .with(group, |g| g.retry_max_times)
        .unwrap_or(b.cfg.broker.retry_max_times);
    let to_dlq = reconsume >= max_times;
    let target = if to_dlq {
        format!("{DLQ_PREFIX}{group}")
    } else {
        fmt::retry_topic(group, origin)
    };
    match b.topics.ensure(&target, 1, PERM_READ | PERM_WRITE) {
        Ok((_, true)) => {
            tracing::info!(shard = b.index, topic = %target, "topic created for pop retries");
            b.registrar.request_now();
        }
        Ok(_) => {}
        Err(e) => return Err(format!("cannot create {target}: {e}")),
    }
    let mut p = PropertiesBuilder::with_capacity(props.len() + 96);
    let bad = |e: ramjet_core::record::RecordError| e.to_string();
    p.extend_from(props, &[]).map_err(bad)?;
    if properties::get(props, properties::RETRY_TOPIC).is_none() {
        p.push_str(properties::RETRY_TOPIC, origin).map_err(bad)?;
    }
    if properties::get(props, properties::ORIGIN_MESSAGE_ID).is_none() {
        let id = offset_msg_id(view.store_host(), view.physical_offset());
        p.push_str(properties::ORIGIN_MESSAGE_ID, id.as_str())
            .map_err(bad)?;
    }
    if properties::get(props, fmt::FIRST_POP_TIME).is_none() {
        p.push_str(fmt::FIRST_POP_TIME, &pop_time.to_string())
            .map_err(bad)?;
    }
    let tags_code = properties::get(p.as_bytes(), properties::TAGS).map_or(0, tag_hash_bytes);
    let msg = MessageToStore {
        reconsume_times: reconsume.saturating_add(1),
        tags_code,
        ..MessageToStore::copy_of(&view, &target, 0, p.as_bytes(), b.addr)
    };
    let put = b
        .store
        .put_message(&msg)
        .map_err(|e| format!("copy to {target} not stored: {e}"))?;
    ShardCounters::add(&b.counters.msgs_put, 1);
    if to_dlq {
        ShardCounters::add(&b.pop.counters.revived_dlq, 1);
        tracing::info!(
            shard = b.index,
            group,
            topic,
            offset,
            reconsume_times = reconsume,
            max_times,
            "popped message never acknowledged: moved to the dead-letter queue"
        );
    } else {
        ShardCounters::add(&b.pop.counters.revived, 1);
    }
    Ok(put.end_physical_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pop_time: i64, deadline: i64) -> Entry {
        Entry {
            pop_time,
            deadline,
            from: 10,
            to: 14,
        }
    }

    #[test]
    fn the_flight_table_finds_marks_and_trims() {
        let mut f = Flight::default();
        for o in [10, 11, 13, 14] {
            f.push(o, e(5, 100));
        }
        assert_eq!((f.len(), f.first()), (4, Some(10)));
        assert_eq!(f.get(12), None, "a skipped offset");
        assert_eq!(f.remove(11).map(|x| x.pop_time), Some(5));
        assert_eq!(f.remove(11), None, "taken out once");
        assert_eq!(
            f.first(),
            Some(10),
            "a hole in the middle stays until the front passes"
        );
        assert!(f.any_due_at(10, 14, 100));
        f.remove(10);
        assert_eq!((f.len(), f.first()), (2, Some(13)));
        assert_eq!(
            f.slots.len(),
            2,
            "marked entries before the first live one are gone"
        );
        f.get_mut(13).expect("live").deadline = 200;
        assert!(f.any_due_at(10, 14, 100), "14 still has it");
        f.remove(14);
        assert!(!f.any_due_at(10, 14, 100));
        let due: Vec<i64> = f.range_mut(0, 20).map(|(o, _)| o).collect();
        assert_eq!(due, [13]);
        assert_eq!(f.live().map(|(o, _)| o).collect::<Vec<_>>(), [13]);
        f.clear();
        assert!(f.is_empty() && f.first().is_none());
    }
}
