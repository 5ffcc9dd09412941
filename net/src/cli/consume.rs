//! `ramjet consume`: print messages of a topic as they arrive, from the end (default), the
//! beginning, an offset or a time. One long-polling pull loop per queue.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::time::parse_time_ms;
use super::{run_on_executor, CliError};
use crate::client::consumer::{
    start_offset, ConsumeFrom, PullOptions, PullStatus, Subscription, SUSPEND_TIMEOUT,
};
use crate::client::instance::subscribe_queues;
use crate::client::message::now_ms;
use crate::client::{
    transport, Client, MessageExt, MessageQueue, PopConsumer, PopOptions, PopStatus,
};

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: super::ClientFlags,
    #[arg(long, short)]
    pub topic: String,
    /// Tag filter: `*` or `TagA || TagB`.
    #[arg(long, default_value = "*")]
    pub tags: String,
    /// Start at each queue's first retained message.
    #[arg(long, conflicts_with_all = ["offset", "timestamp"])]
    pub from_beginning: bool,
    /// Start every queue at this offset.
    #[arg(long, conflicts_with = "timestamp")]
    pub offset: Option<i64>,
    /// Start at messages stored since this time: ms since the epoch,
    /// 2026-11-23T12:00:00Z (UTC), or an age like 10m / 2h / 1d.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Only this queue id.
    #[arg(long)]
    pub queue: Option<i32>,
    /// Consumer group: resume from its committed offsets and commit progress.
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this many seconds without a message.
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// One JSON object per message.
    #[arg(long)]
    pub json: bool,
    /// POP consumption (RocketMQ 5): the broker hands each message of the group (--group
    /// needed) to one popper at a time and redelivers it unless acknowledged; each message
    /// printed is acknowledged. Starts at each queue's first message, or its end with
    /// --from-end when the group has no offset yet.
    #[arg(long, requires = "group", conflicts_with_all = ["offset", "timestamp", "queue"])]
    pub pop: bool,
    /// With --pop: seconds a popped message stays invisible to other poppers.
    #[arg(long, default_value_t = 60, requires = "pop")]
    pub invisible_s: u64,
    /// With --pop: do not acknowledge (each message comes again after --invisible-s).
    #[arg(long, requires = "pop")]
    pub no_ack: bool,
    /// With --pop: a group without an offset starts at each queue's end.
    #[arg(long, requires = "pop", conflicts_with = "from_beginning")]
    pub from_end: bool,
}

/// `ramjet consume --pop`: pop (long polling), print, acknowledge.
fn run_pop(args: ConsumeArgs) -> Result<(), CliError> {
    let cfg = args.client.config()?;
    run_on_executor(async move {
        let group = args.group.clone().unwrap_or_default();
        let mut pc = PopConsumer::new(Client::new(cfg), &group, &args.topic);
        if args.tags != "*" {
            pc = pc.with_tags(&args.tags);
        }
        let opts = PopOptions {
            max: 32,
            invisible: Duration::from_secs(args.invisible_s.max(1)),
            poll: SUSPEND_TIMEOUT,
            order: false,
            from_end: args.from_end,
        };
        let (mut count, mut last) = (0u64, Instant::now());
        loop {
            if args.count.is_some_and(|c| count >= c) {
                return Ok(());
            }
            if args
                .idle_timeout
                .is_some_and(|t| last.elapsed().as_secs_f64() >= t)
            {
                return Ok(());
            }
            let batch = match pc.pop(&opts).await {
                Ok(b) => b,
                Err(e) if e.is_transport() => {
                    eprintln!("pop: {e}; retrying in 1 s");
                    transport::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(CliError::Client(e)),
            };
            if batch.status == PopStatus::PollingFull {
                transport::sleep(Duration::from_millis(200)).await;
            }
            let mut printed = Vec::with_capacity(batch.messages.len());
            for p in batch.messages {
                if args.count.is_some_and(|c| count >= c) {
                    break;
                }
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(format_message(&p.message, args.json).as_bytes())
                    .and_then(|_| stdout.flush())
                    .map_err(CliError::Output)?;
                count += 1;
                last = Instant::now();
                printed.push(p);
            }
            // What was not printed (past --count) comes back after its invisible time.
            if !args.no_ack && !printed.is_empty() {
                pc.ack_all(&printed).await?;
            }
        }
    })
}

/// Group used for pulls when none is given (it never commits).
const ANONYMOUS_GROUP: &str = "ramjet_cli_consumer";

/// One message as printed.
pub(crate) fn format_message(m: &MessageExt, json: bool) -> String {
    let body = String::from_utf8_lossy(&m.body);
    if json {
        let props: serde_json::Map<String, serde_json::Value> = m
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut s = json!({
            "topic": m.topic, "broker_name": m.broker_name, "queue_id": m.queue_id,
            "queue_offset": m.queue_offset, "msg_id": m.msg_id, "tags": m.tags(), "keys": m.keys(),
            "born_timestamp": m.born_timestamp, "store_timestamp": m.store_timestamp,
            "reconsume_times": m.reconsume_times, "properties": props, "body": body,
            "compressed": m.is_compressed(),
        })
        .to_string();
        s.push('\n');
        s
    } else {
        let mut head = format!("{}/{}@{}", m.broker_name, m.queue_id, m.queue_offset);
        if let Some(t) = m.tags() {
            head.push_str(&format!(" tags={t}"));
        }
        if let Some(k) = m.keys() {
            head.push_str(&format!(" keys={k}"));
        }
        format!("{head} id={} | {body}\n", m.msg_id)
    }
}

/// Run `ramjet consume`.
pub fn run_consume(args: ConsumeArgs) -> Result<(), CliError> {
    if args.pop {
        return run_pop(args);
    }
    let from = if args.from_beginning {
        ConsumeFrom::First
    } else if let Some(t) = &args.timestamp {
        ConsumeFrom::Timestamp(parse_time_ms(t, now_ms() as i64).map_err(CliError::Usage)?)
    } else {
        ConsumeFrom::Last
    };
    let cfg = args.client.config()?;
    run_on_executor(async move {
        let client = Client::new(cfg);
        let route = client.fetch_route(&args.topic).await?;
        let queues: Vec<MessageQueue> = subscribe_queues(&args.topic, &route)
            .into_iter()
            .filter(|q| args.queue.is_none_or(|id| q.queue_id == id))
            .collect();
        if queues.is_empty() {
            return Err(CliError::Usage(match args.queue {
                Some(q) => format!("topic {} has no readable queue {q}", args.topic),
                None => format!("topic {} has no readable queue", args.topic),
            }));
        }
        let count = Rc::new(Cell::new(0u64));
        let last = Rc::new(Cell::new(Instant::now()));
        let failed: Rc<std::cell::RefCell<Option<CliError>>> =
            Rc::new(std::cell::RefCell::new(None));
        let sub = Rc::new(Subscription::new(args.topic.clone(), &args.tags));
        let args = Rc::new(args);
        for mq in queues {
            let mut offset = match args.offset {
                Some(o) => o,
                None => {
                    let committed = match &args.group {
                        Some(g) => client.committed_offset(g, &mq).await?,
                        None => None,
                    };
                    match committed {
                        Some(o) => o,
                        None => start_offset(&client, &mq, from).await?,
                    }
                }
            };
            let (client, count, last, failed, sub, args) = (
                client.clone(),
                count.clone(),
                last.clone(),
                failed.clone(),
                sub.clone(),
                args.clone(),
            );
            transport::spawn(async move {
                let group = args
                    .group
                    .clone()
                    .unwrap_or_else(|| ANONYMOUS_GROUP.to_string());
                loop {
                    let commit = args.group.as_ref().map(|_| offset);
                    let r = client
                        .pull(
                            &group,
                            &mq,
                            &sub,
                            offset,
                            PullOptions::new(32).suspend(SUSPEND_TIMEOUT).commit(commit),
                        )
                        .await;
                    match r {
                        Ok(res) => {
                            if res.status == PullStatus::OffsetIllegal {
                                eprintln!(
                                    "queue {mq}: offset {offset} is outside [{}, {}], moving to {}",
                                    res.min_offset, res.max_offset, res.next_begin_offset
                                );
                            }
                            offset = res.next_begin_offset;
                            for m in &res.messages {
                                if args.count.is_some_and(|c| count.get() >= c) {
                                    return;
                                }
                                let mut stdout = std::io::stdout().lock();
                                if let Err(e) = stdout
                                    .write_all(format_message(m, args.json).as_bytes())
                                    .and_then(|_| stdout.flush())
                                {
                                    failed.borrow_mut().get_or_insert(CliError::Output(e));
                                    return;
                                }
                                count.set(count.get() + 1);
                                last.set(Instant::now());
                            }
                            if let Some(g) = &args.group {
                                let _ = client.commit_offset(g, &mq, offset).await;
                            }
                        }
                        Err(e) if e.is_transport() => {
                            eprintln!("queue {mq}: {e}; retrying in 1 s");
                            transport::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => {
                            failed.borrow_mut().get_or_insert(CliError::Client(e));
                            return;
                        }
                    }
                }
            });
        }
        loop {
            transport::sleep(Duration::from_millis(20)).await;
            if let Some(e) = failed.borrow_mut().take() {
                return Err(e);
            }
            if args.count.is_some_and(|c| count.get() >= c) {
                return Ok(());
            }
            if args
                .idle_timeout
                .is_some_and(|t| last.get().elapsed().as_secs_f64() >= t)
            {
                return Ok(());
            }
        }
    })
}
