//! Transactional producer: half message, local transaction, END_TRANSACTION, and answers to
//! the broker's CHECK_TRANSACTION_STATE (spec §7.6).
//!
//! [`TransactionProducer::send_in_transaction`] sends the message as a half message
//! (`TRAN_MSG=true`, `PGROUP`, sysflag PREPARED), runs the caller's local transaction with
//! the send result, and ends the transaction with END_TRANSACTION (oneway, as the Java
//! client) to the broker that stored it. A transaction left [`LocalState::Unknown`] (or whose
//! END was lost) is checked by the broker later: it asks a producer of the group, through the
//! connection that producer heart-beats on, and the checker given to
//! [`TransactionProducer::new`] answers.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::decode_offset_msg_id;
use ramjet_core::remoting::body::{HeartbeatData, ProducerData};
use ramjet_core::remoting::headers::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, TransactionType,
};
use ramjet_core::remoting::{RemotingCommand, RequestCode};

use super::consumer::{decode_messages, MessageExt};
use super::error::ClientError;
use super::instance::Client;
use super::message::{prop, Message};
use super::producer::{Producer, ProducerConfig, SendResult, SendStatus};
use super::transport::{self, Connection};

/// What a local transaction (or a check) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LocalState {
    Commit,
    Rollback,
    /// Not decided yet: the broker will ask again (after `broker.transaction_timeout_ms`).
    Unknown,
}

impl LocalState {
    fn code(self) -> i32 {
        match self {
            LocalState::Commit => TransactionType::COMMIT,
            LocalState::Rollback => TransactionType::ROLLBACK,
            LocalState::Unknown => TransactionType::NOT_TYPE,
        }
    }
}

/// The half message's send result and what the local transaction decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransactionSendResult {
    pub send: SendResult,
    pub state: LocalState,
}

/// Answers the broker's question about a transaction: given the half message (under its real
/// topic and queue), commit, roll back or still unknown.
pub type Checker = dyn Fn(&MessageExt) -> LocalState;

struct Inner {
    group: String,
    checker: Box<Checker>,
    /// Brokers this producer's group was announced to (HEART_BEAT with the group).
    announced: RefCell<HashSet<String>>,
    heartbeat_interval: Duration,
    stopped: Cell<bool>,
    /// Checks answered with commit / rollback / unknown, and checks that could not be read.
    checks: Cell<[u64; 4]>,
}

/// A producer of transactional messages. Cheap to clone; `!Send` like every client object.
#[derive(Clone)]
pub struct TransactionProducer {
    producer: Producer,
    client: Client,
    inner: Rc<Inner>,
}

impl TransactionProducer {
    /// A transactional producer of `config.group`; `checker` answers the broker's checks.
    /// Call [`TransactionProducer::start`] before sending.
    pub fn new(
        client: Client,
        config: ProducerConfig,
        checker: impl Fn(&MessageExt) -> LocalState + 'static,
    ) -> TransactionProducer {
        let inner = Rc::new(Inner {
            group: config.group.clone(),
            checker: Box::new(checker),
            announced: RefCell::new(HashSet::new()),
            heartbeat_interval: Duration::from_secs(30),
            stopped: Cell::new(false),
            checks: Cell::new([0; 4]),
        });
        let weak = Rc::downgrade(&inner);
        client.add_listener(RequestCode::CHECK_TRANSACTION_STATE, move |conn, cmd| {
            if let Some(inner) = weak.upgrade() {
                answer_check(&inner, conn, cmd);
            }
            None
        });
        TransactionProducer {
            producer: Producer::new(client.clone(), config),
            client,
            inner,
        }
    }

    /// The plain producer underneath (for non-transactional sends of the same group).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Starts announcing the group to every known broker every 30 s (the broker forgets a
    /// producer after `client_idle_ms` without one, and sends its checks only to producers it
    /// knows).
    pub fn start(&self) {
        let me = self.clone();
        transport::spawn(async move {
            while !me.inner.stopped.get() {
                transport::sleep(me.inner.heartbeat_interval).await;
                if me.inner.stopped.get() {
                    break;
                }
                for addr in me.client.known_masters() {
                    if let Err(e) = me.announce(&addr).await {
                        tracing::warn!(broker = %addr, error = %e, "producer heartbeat failed");
                    }
                }
            }
        });
    }

    /// Stops the heartbeats; checks are no longer answered once the client is dropped.
    pub fn shutdown(&self) {
        self.inner.stopped.set(true);
    }

    /// Checks answered so far: (commit, rollback, unknown, unreadable).
    pub fn checks_answered(&self) -> (u64, u64, u64, u64) {
        let [c, r, u, bad] = self.inner.checks.get();
        (c, r, u, bad)
    }

    async fn announce(&self, addr: &str) -> Result<(), ClientError> {
        let data = HeartbeatData {
            client_id: self.client.client_id().to_string(),
            consumer_data_set: Vec::new(),
            heartbeat_fingerprint: None,
            producer_data_set: vec![ProducerData {
                group_name: self.inner.group.clone(),
            }],
            without_sub: None,
        };
        self.client.heartbeat(addr, &data).await?;
        self.inner.announced.borrow_mut().insert(addr.to_string());
        Ok(())
    }

    /// Sends `msg` as a half message, runs `local` with its result, and ends the transaction
    /// as `local` decides. A failed send runs no local transaction and returns the error.
    pub async fn send_in_transaction(
        &self,
        mut msg: Message,
        local: impl FnOnce(&Message, &SendResult) -> LocalState,
    ) -> Result<TransactionSendResult, ClientError> {
        msg.set_property(prop::TRAN_MSG, "true");
        msg.set_property(prop::PGROUP, self.inner.group.clone());
        let send = self.producer.send(msg.clone()).await?;
        let addr = self.client.master_addr(&send.queue.broker_name)?;
        if !self.inner.announced.borrow().contains(&addr) {
            // Before the local transaction: a check may come as soon as it takes long.
            if let Err(e) = self.announce(&addr).await {
                tracing::warn!(broker = %addr, error = %e, "producer heartbeat failed; checks of this transaction may not reach this producer");
            }
        }
        let state = if send.status == SendStatus::SendOk {
            local(&msg, &send)
        } else {
            // Not stored durably (flush or slave timeout): never commit it.
            LocalState::Rollback
        };
        let (_, commit_log_offset) = decode_offset_msg_id(&send.offset_msg_id).map_err(|e| {
            ClientError::Invalid(format!("offset message id {}: {e}", send.offset_msg_id))
        })?;
        let header = EndTransactionRequestHeader {
            producer_group: &self.inner.group,
            tran_state_table_offset: send.queue_offset,
            commit_log_offset,
            commit_or_rollback: state.code(),
            from_transaction_check: Some(false),
            msg_id: &send.msg_id,
            transaction_id: Some(&send.msg_id),
            topic: Some(&send.queue.topic),
            broker_name: Some(&send.queue.broker_name),
        };
        let conn = self.client.connection(&addr).await?;
        // Oneway, as the Java client: a lost END leaves the transaction to the broker's check.
        conn.oneway(RequestCode::END_TRANSACTION, &header, &[])?;
        Ok(TransactionSendResult { send, state })
    }
}

/// Answers one CHECK_TRANSACTION_STATE on the connection it came on.
fn answer_check(inner: &Inner, conn: &Connection, cmd: &RemotingCommand) {
    let bump = |i: usize| {
        let mut c = inner.checks.get();
        c[i] += 1;
        inner.checks.set(c);
    };
    let h = match cmd.decode_header::<CheckTransactionStateRequestHeader>() {
        Ok(h) => h,
        Err(e) => {
            bump(3);
            tracing::warn!(broker = %conn.addr(), error = %e, "unreadable transaction check");
            return;
        }
    };
    let body = bytes::Bytes::copy_from_slice(&cmd.body);
    let Some(msg) = decode_messages(&body, h.broker_name.unwrap_or(""))
        .into_iter()
        .next()
    else {
        bump(3);
        tracing::warn!(broker = %conn.addr(), "transaction check without a readable message");
        return;
    };
    if msg.property(prop::PGROUP) != Some(inner.group.as_str()) {
        // Another transactional producer of this client answers it.
        return;
    }
    let state = (inner.checker)(&msg);
    bump(match state {
        LocalState::Commit => 0,
        LocalState::Rollback => 1,
        LocalState::Unknown => 2,
    });
    let uniq = h.msg_id.unwrap_or(msg.msg_id.as_str());
    let header = EndTransactionRequestHeader {
        producer_group: &inner.group,
        tran_state_table_offset: h.tran_state_table_offset,
        commit_log_offset: h.commit_log_offset,
        commit_or_rollback: state.code(),
        from_transaction_check: Some(true),
        msg_id: uniq,
        transaction_id: h.transaction_id.or(Some(uniq)),
        topic: h.topic,
        broker_name: h.broker_name,
    };
    if let Err(e) = conn.oneway(RequestCode::END_TRANSACTION, &header, &[]) {
        tracing::warn!(broker = %conn.addr(), error = %e, "answer to a transaction check not sent");
    }
}
