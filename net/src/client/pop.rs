//! A POP consumer (RocketMQ 5's "simple consumer" over remoting): pop messages from any
//! broker of a topic, each invisible to the group's other pops for a while, then acknowledge
//! each one, or change how long it stays invisible. What is not acknowledged in time comes
//! back (from the pop retry topic, with its reconsume count + 1). The broker side is
//! `broker::pop`; docs/pop.md tells both.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use ramjet_core::remoting::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use ramjet_core::remoting::pop::{self as fmt, BatchAck, Receipt};
use ramjet_core::remoting::{RequestCode, ResponseCode};

use super::consumer::{decode_messages, MessageExt};
use super::instance::subscribe_queues;
use super::{transport, Client, ClientError};

/// A popped message and the receipt handle that acknowledges it.
#[derive(Debug, Clone)]
pub struct Popped {
    /// The message; `topic` is the topic popped (also for a retried message).
    pub message: MessageExt,
    /// The topic it is stored in: the topic, or the pop retry topic `%RETRY%<group>_<topic>`.
    pub real_topic: String,
    /// The receipt handle (`extraInfo`); a change of invisible time replaces it.
    pub handle: String,
}

/// What a pop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopStatus {
    Found,
    /// Nothing to pop (within the poll time).
    NotFound,
    /// The broker holds too many messages in flight or parked pops: pop again later.
    PollingFull,
}

/// One pop's answer.
#[derive(Debug, Clone)]
pub struct PopBatch {
    pub status: PopStatus,
    pub messages: Vec<Popped>,
    /// Messages left in the queues the broker looked at.
    pub rest: i64,
}

/// Pop options.
#[derive(Debug, Clone)]
pub struct PopOptions {
    /// At most this many messages (1 to 32).
    pub max: i32,
    /// How long popped messages stay invisible to the group's other pops.
    pub invisible: Duration,
    /// How long the broker may hold the pop when nothing is there (0: answer at once).
    pub poll: Duration,
    /// Orderly: the queue stays locked for the group until what was popped is acknowledged.
    pub order: bool,
    /// Where a group with no offset yet starts: the queue's first message (false) or its end.
    pub from_end: bool,
}

impl Default for PopOptions {
    fn default() -> Self {
        PopOptions {
            max: 32,
            invisible: Duration::from_secs(60),
            poll: Duration::from_secs(5),
            order: false,
            from_end: false,
        }
    }
}

/// A POP consumer of one group and topic.
pub struct PopConsumer {
    client: Client,
    group: String,
    topic: String,
    exp_type: &'static str,
    exp: String,
    next_broker: Cell<usize>,
}

impl PopConsumer {
    /// All messages of `topic` (tag expression `*`).
    pub fn new(client: Client, group: &str, topic: &str) -> PopConsumer {
        PopConsumer {
            client,
            group: group.to_string(),
            topic: topic.to_string(),
            exp_type: "TAG",
            exp: "*".to_string(),
            next_broker: Cell::new(0),
        }
    }

    /// Only the messages with one of these tags (`a || b`).
    pub fn with_tags(mut self, expression: &str) -> PopConsumer {
        self.exp_type = "TAG";
        self.exp = expression.to_string();
        self
    }

    /// Only the messages whose properties match a SQL92 expression.
    pub fn with_sql(mut self, expression: &str) -> PopConsumer {
        self.exp_type = "SQL92";
        self.exp = expression.to_string();
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The brokers with readable queues of the topic, in name order.
    async fn brokers(&self) -> Result<Vec<String>, ClientError> {
        let route = self.client.route(&self.topic).await?;
        let mut names: Vec<String> = subscribe_queues(&self.topic, &route)
            .into_iter()
            .map(|q| q.broker_name)
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(ClientError::Invalid(format!(
                "topic {} has no readable queue",
                self.topic
            )));
        }
        Ok(names)
    }

    /// Pops from the next broker in turn (any of its queues).
    pub async fn pop(&self, opts: &PopOptions) -> Result<PopBatch, ClientError> {
        let brokers = self.brokers().await?;
        let i = self.next_broker.get() % brokers.len();
        self.next_broker.set(i + 1);
        self.pop_from(&brokers[i], -1, opts).await
    }

    /// Pops from one broker: queue `queue_id`, or any (-1).
    pub async fn pop_from(
        &self,
        broker_name: &str,
        queue_id: i32,
        opts: &PopOptions,
    ) -> Result<PopBatch, ClientError> {
        self.client.route(&self.topic).await?;
        let addr = self.client.master_addr(broker_name)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let h = PopMessageRequestHeader {
            consumer_group: &self.group,
            topic: &self.topic,
            queue_id,
            max_msg_nums: opts.max,
            invisible_time: opts.invisible.as_millis() as i64,
            poll_time: opts.poll.as_millis() as i64,
            born_time: now,
            init_mode: i32::from(opts.from_end),
            exp_type: Some(self.exp_type),
            exp: Some(&self.exp),
            order: Some(opts.order),
            attempt_id: None,
        };
        let code = RequestCode::POP_MESSAGE;
        let timeout = opts.poll + self.client.config().request_timeout;
        let resp = self.client.invoke(&addr, code, &h, &[], timeout).await?;
        let status = match resp.code {
            ResponseCode::SUCCESS => PopStatus::Found,
            ResponseCode::POLLING_TIMEOUT | ResponseCode::PULL_NOT_FOUND => PopStatus::NotFound,
            ResponseCode::POLLING_FULL => PopStatus::PollingFull,
            _ => {
                return Err(transport::expect_success(&addr, code, resp)
                    .err()
                    .unwrap_or_else(|| ClientError::Invalid("unreachable".into())))
            }
        };
        let ph: PopMessageResponseHeader = Client::decode_header(&addr, code, &resp)?;
        let rest = ph.rest_num;
        if status != PopStatus::Found {
            return Ok(PopBatch {
                status,
                messages: Vec::new(),
                rest,
            });
        }
        let bad = |reason: String| ClientError::BadBody {
            addr: addr.clone(),
            code,
            reason,
        };
        let starts = parse_info(ph.start_offset_info.unwrap_or(""))
            .ok_or_else(|| bad("startOffsetInfo does not parse".into()))?;
        let counts = parse_info(ph.order_count_info.unwrap_or(""))
            .ok_or_else(|| bad("orderCountInfo does not parse".into()))?;
        let mut out = Vec::new();
        for mut m in decode_messages(&resp.body, broker_name) {
            let mark = fmt::retry_mark(&m.topic);
            let key = (mark, m.queue_id);
            let start = *starts
                .get(&key)
                .ok_or_else(|| bad(format!("no start offset for queue {}", m.queue_id)))?;
            let handle = format!(
                "{start} {} {} {} {mark} {broker_name} {} {}",
                ph.pop_time, ph.invisible_time, ph.revive_qid, m.queue_id, m.queue_offset
            );
            if let Some(&n) = counts.get(&key) {
                if n > 0 {
                    m.reconsume_times = n as i32;
                }
            }
            let real_topic = std::mem::replace(&mut m.topic, self.topic.clone());
            out.push(Popped {
                message: m,
                real_topic,
                handle,
            });
        }
        Ok(PopBatch {
            status,
            messages: out,
            rest,
        })
    }

    /// Acknowledges one popped message. `Ok(false)`: the broker had nothing in flight for
    /// the handle (acknowledged before, or its invisible time ended and it was redelivered).
    pub async fn ack(&self, p: &Popped) -> Result<bool, ClientError> {
        let addr = self.client.master_addr(&p.message.broker_name)?;
        let h = AckMessageRequestHeader {
            consumer_group: &self.group,
            topic: &p.real_topic,
            queue_id: p.message.queue_id,
            extra_info: &p.handle,
            offset: p.message.queue_offset,
        };
        let resp = self
            .client
            .invoke_ok(&addr, RequestCode::ACK_MESSAGE, &h, &[])
            .await?;
        Ok(resp.remark.is_none())
    }

    /// Acknowledges messages in one BATCH_ACK_MESSAGE per broker.
    pub async fn ack_all(&self, popped: &[Popped]) -> Result<(), ClientError> {
        let mut by_broker: HashMap<&str, Vec<BatchAck>> = HashMap::new();
        for p in popped {
            let r = Receipt::parse(&p.handle).map_err(|e| ClientError::Invalid(e.to_string()))?;
            let acks = by_broker.entry(&p.message.broker_name).or_default();
            let same = acks.iter_mut().find(|a| {
                a.retry == r.retry
                    && a.queue_id == r.queue_id
                    && a.start_offset == r.ck_queue_offset
                    && a.pop_time == r.pop_time
            });
            match same {
                Some(a) => a.offsets.push(r.queue_offset),
                None => acks.push(BatchAck {
                    consumer_group: self.group.clone(),
                    topic: self.topic.clone(),
                    retry: r.retry,
                    start_offset: r.ck_queue_offset,
                    queue_id: r.queue_id,
                    revive_qid: r.revive_qid,
                    pop_time: r.pop_time,
                    invisible_time: r.invisible_time,
                    offsets: vec![r.queue_offset],
                }),
            }
        }
        for (broker, acks) in by_broker {
            let addr = self.client.master_addr(broker)?;
            let body = fmt::batch_ack_body(broker, &acks);
            self.client
                .invoke_ok(&addr, RequestCode::BATCH_ACK_MESSAGE, &(), &body)
                .await?;
        }
        Ok(())
    }

    /// Makes a popped message invisible for `invisible` from now (0: visible again at once,
    /// a negative acknowledgement); its handle is replaced by the new one.
    pub async fn change_invisible(
        &self,
        p: &mut Popped,
        invisible: Duration,
    ) -> Result<(), ClientError> {
        let addr = self.client.master_addr(&p.message.broker_name)?;
        let ms = invisible.as_millis() as i64;
        let h = ChangeInvisibleTimeRequestHeader {
            consumer_group: &self.group,
            topic: &p.real_topic,
            queue_id: p.message.queue_id,
            extra_info: &p.handle,
            offset: p.message.queue_offset,
            invisible_time: ms,
        };
        let code = RequestCode::CHANGE_MESSAGE_INVISIBLETIME;
        let resp = self.client.invoke_ok(&addr, code, &h, &[]).await?;
        let ch: ChangeInvisibleTimeResponseHeader = Client::decode_header(&addr, code, &resp)?;
        let r = Receipt::parse(&p.handle).map_err(|e| ClientError::Invalid(e.to_string()))?;
        p.handle = format!(
            "{} {} {ms} {} {} {} {} {}",
            r.ck_queue_offset,
            ch.pop_time,
            r.revive_qid,
            r.retry,
            r.broker_name,
            r.queue_id,
            r.queue_offset
        );
        Ok(())
    }
}

/// `mark qid value;...` as a map of (mark, qid) to value; `None` when it does not parse.
fn parse_info(s: &str) -> Option<HashMap<(u8, i32), i64>> {
    let mut out = HashMap::new();
    for part in s.split(';').filter(|p| !p.is_empty()) {
        let mut it = part.split(' ');
        let mark: u8 = it.next()?.parse().ok()?;
        let qid: i32 = it.next()?.parse().ok()?;
        let value: i64 = it.next()?.parse().ok()?;
        out.insert((mark, qid), value);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_parse() {
        let m = parse_info("0 2 10;1 0 4").unwrap();
        assert_eq!(m[&(0, 2)], 10);
        assert_eq!(m[&(1, 0)], 4);
        assert!(parse_info("").unwrap().is_empty());
        assert!(parse_info("0 x 1").is_none());
    }
}
