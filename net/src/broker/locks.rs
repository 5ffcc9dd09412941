//! Queue locks for ordered consumption: LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42), spec §7.7.
//!
//! An orderly consumer (Java `MessageListenerOrderly`, the C++ client's orderly push consumer)
//! consumes only the queues it holds a lock on at the queue's broker, so that two members of a
//! group never process one queue at the same time while a rebalance moves it. A lock belongs
//! to (group, queue) and names one client id; it lasts `broker.rebalance_lock_max_live_ms`
//! (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`, 60 s) from its holder's last lock
//! request, and clients renew theirs every 20 s. A request for a queue that is free, expired
//! or already the requester's gets it; one held by another live client does not.
//!
//! `onlyThisBroker` asks 5.x brokers not to forward the lock to the replicas of their group
//! (strict mode); a shard has no replicas, so every lock is this broker's alone either way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ramjet_core::remoting::body::{
    fastjson, LockBatchRequestBody, LockBatchResponseBody, MessageQueue,
};
use ramjet_core::remoting::{CommandView, ResponseCode};

use super::conn::Conn;
use super::shard::Broker;

/// Most queues one lock table holds (every group and queue of a shard): a bound on what
/// clients can make a shard remember.
pub const MAX_LOCKS: usize = 1_000_000;

struct Held {
    client_id: String,
    renewed: Instant,
}

/// One shard's queue locks: group -> queue -> holder.
#[derive(Default)]
pub struct QueueLocks {
    table: RefCell<HashMap<String, HashMap<MessageQueue, Held>>>,
}

impl QueueLocks {
    /// Locks what `mqs` it can for `client_id` at `now`; returns the queues the client now holds.
    pub fn try_lock(
        &self,
        group: &str,
        client_id: &str,
        mqs: &[MessageQueue],
        max_live: Duration,
        now: Instant,
    ) -> Vec<MessageQueue> {
        let mut table = self.table.borrow_mut();
        let total: usize = table.values().map(HashMap::len).sum();
        let locks = table.entry(group.to_string()).or_default();
        let mut added = 0usize;
        let mut ok = Vec::with_capacity(mqs.len());
        for mq in mqs {
            match locks.get_mut(mq) {
                Some(h) if h.client_id == client_id || now.duration_since(h.renewed) > max_live => {
                    if h.client_id != client_id {
                        tracing::info!(group, queue = ?mq, from = %h.client_id, to = client_id, "expired queue lock taken over");
                        h.client_id = client_id.to_string();
                    }
                    h.renewed = now;
                    ok.push(mq.clone());
                }
                Some(_) => {}
                None if total + added < MAX_LOCKS => {
                    locks.insert(
                        mq.clone(),
                        Held {
                            client_id: client_id.to_string(),
                            renewed: now,
                        },
                    );
                    added += 1;
                    ok.push(mq.clone());
                }
                None => {
                    tracing::warn!(group, queue = ?mq, max = MAX_LOCKS, "queue lock table full; lock refused");
                }
            }
        }
        ok
    }

    /// Releases those of `mqs` that `client_id` holds.
    pub fn unlock(&self, group: &str, client_id: &str, mqs: &[MessageQueue]) {
        let mut table = self.table.borrow_mut();
        let Some(locks) = table.get_mut(group) else {
            return;
        };
        for mq in mqs {
            if locks.get(mq).is_some_and(|h| h.client_id == client_id) {
                locks.remove(mq);
            }
        }
        if locks.is_empty() {
            table.remove(group);
        }
    }

    /// Drops locks that expired more than `max_live` ago (the periodic sweep; an expired lock
    /// is free whether swept or not).
    pub fn sweep(&self, max_live: Duration, now: Instant) {
        let mut table = self.table.borrow_mut();
        table.retain(|_, locks| {
            locks.retain(|_, h| now.duration_since(h.renewed) <= max_live);
            !locks.is_empty()
        });
    }

    /// Locks held (runtime info `ramjet.queueLocks`).
    pub fn len(&self) -> usize {
        self.table.borrow().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn body(conn: &Conn, req: &CommandView<'_>) -> Option<LockBatchRequestBody> {
    match fastjson::from_slice::<LockBatchRequestBody>(req.body, "LockBatchRequestBody") {
        Ok(b) if !b.consumer_group.is_empty() && !b.client_id.is_empty() => Some(b),
        Ok(_) => {
            conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                "lock body without consumerGroup or clientId",
            );
            None
        }
        Err(e) => {
            conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad lock body: {e}"),
            );
            None
        }
    }
}

fn max_live(b: &Broker) -> Duration {
    Duration::from_millis(b.cfg.broker.rebalance_lock_max_live_ms)
}

/// LOCK_BATCH_MQ (41).
pub fn lock_batch(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(body) = body(conn, req) else { return };
    let ok = b.locks.try_lock(
        &body.consumer_group,
        &body.client_id,
        &body.mq_set,
        max_live(b),
        Instant::now(),
    );
    let resp = LockBatchResponseBody { lock_ok_mq_set: ok };
    match fastjson::to_vec(&resp, fastjson::JsonStyle::Standard) {
        Ok(bytes) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &bytes),
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

/// UNLOCK_BATCH_MQ (42).
pub fn unlock_batch(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let Some(body) = body(conn, req) else { return };
    b.locks
        .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(i: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".into(),
            broker_name: "b-s0".into(),
            queue_id: i,
        }
    }

    #[test]
    fn a_lock_is_one_clients_until_released_or_expired() {
        let l = QueueLocks::default();
        let live = Duration::from_secs(60);
        let t0 = Instant::now();
        assert_eq!(l.try_lock("G", "a", &[q(0), q(1)], live, t0), [q(0), q(1)]);
        // b gets only the free one; a renews its own.
        assert_eq!(l.try_lock("G", "b", &[q(1), q(2)], live, t0), [q(2)]);
        assert_eq!(l.try_lock("G", "a", &[q(1)], live, t0), [q(1)]);
        // Another group is independent.
        assert_eq!(l.try_lock("H", "b", &[q(1)], live, t0), [q(1)]);
        // Only the holder releases.
        l.unlock("G", "b", &[q(1)]);
        assert_eq!(
            l.try_lock("G", "b", &[q(1)], live, t0),
            Vec::<MessageQueue>::new()
        );
        l.unlock("G", "a", &[q(1)]);
        assert_eq!(l.try_lock("G", "b", &[q(1)], live, t0), [q(1)]);
        // a's q(0), last renewed at t0, expires after `live`: then b may take it.
        let later = t0 + live + Duration::from_millis(1);
        assert_eq!(
            l.try_lock("G", "b", &[q(0)], live, t0 + live),
            Vec::<MessageQueue>::new()
        );
        assert_eq!(l.try_lock("G", "b", &[q(0)], live, later), [q(0)]);
        assert_eq!(l.len(), 4);
        l.sweep(live, later + live + Duration::from_millis(1));
        assert!(l.is_empty());
    }
}
