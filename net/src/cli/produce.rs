//! `ramjet produce`: send messages given as arguments, or one per line of standard input.

use ramjet_storage::schedule::MAX_DELAY_LEVELS;
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{parse_property, run_on_executor, CliError};
use crate::client::selector::QueueSelector;
use crate::client::transport;
use crate::client::{Client, Message, Producer, ProducerConfig, SendResult};

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: super::ClientFlags,
    #[arg(long, short)]
    pub topic: String,
    /// Message bodies; none: read one message per line from standard input.
    pub messages: Vec<String>,
    #[arg(long)]
    pub tags: Option<String>,
    /// Business keys (space-separated), indexed by the broker.
    #[arg(long)]
    pub keys: Option<String>,
    /// User property, repeatable: --property color=red
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Delay level: the broker stores the message in its topic once the level's delay has
    /// passed (the default levels 1..=18 are 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m
    /// 30m 1h 2h; `broker.message_delay_level` sets them, at most 64; a higher level is capped).
    #[arg(long, conflicts_with_all = ["delay_ms", "deliver_at"])]
    pub delay_level: Option<u8>,
    /// 5.x timer message: the broker stores it in its topic this many ms after it stored
    /// the send (TIMER_DELAY_MS). Its answer carries a recall handle (`ramjet recall`).
    #[arg(long, conflicts_with = "deliver_at")]
    pub delay_ms: Option<u64>,
    /// 5.x timer message: stored in its topic at this time (TIMER_DELIVER_MS): ms since the
    /// epoch or 2026-11-23T12:00:00Z.
    #[arg(long)]
    pub deliver_at: Option<String>,
    /// Route by hash of --keys (all messages with one key go to one queue, in order).
    #[arg(long)]
    pub ordered: bool,
    #[arg(long, default_value = "ramjet_cli_producer")]
    pub group: String,
    /// Print one JSON object per sent message.
    #[arg(long)]
    pub json: bool,
}

impl ProduceArgs {
    fn message(&self, body: String) -> Message {
        let mut m = Message::new(self.topic.clone(), body);
        if let Some(t) = &self.tags {
            m = m.with_tags(t.clone());
        }
        if let Some(k) = &self.keys {
            m = m.with_keys(k.clone());
        }
        if let Some(d) = self.delay_level {
            m = m.with_delay_level(d);
        }
        if let Some(ms) = self.delay_ms {
            m = m.with_delay_ms(ms);
        }
        for (k, v) in &self.properties {
            m.set_property(k.clone(), v.clone());
        }
        m
    }
}

fn report(json: bool, r: &SendResult) -> String {
    if json {
        let mut v = json!({
            "status": r.status, "msg_id": r.msg_id, "offset_msg_id": r.offset_msg_id,
            "topic": r.queue.topic, "broker_name": r.queue.broker_name, "queue_id": r.queue.queue_id,
            "queue_offset": r.queue_offset,
        });
        if let Some(h) = &r.recall_handle {
            v["recall_handle"] = json!(h);
        }
        let mut s = v.to_string();
        s.push('\n');
        s
    } else {
        let recall = r
            .recall_handle
            .as_ref()
            .map(|h| format!(" recall_handle={h}"))
            .unwrap_or_default();
        format!(
            "{:?} msg_id={} broker={} queue={} offset={}{recall}\n",
            r.status, r.msg_id, r.queue.broker_name, r.queue.queue_id, r.queue_offset
        )
    }
}

#[derive(Debug, Clone, Args)]
pub struct RecallArgs {
    #[command(flatten)]
    pub client: super::ClientFlags,
    #[arg(long, short)]
    pub topic: String,
    /// Recall handles, as `ramjet produce --delay-ms/--deliver-at` printed them.
    #[arg(required = true)]
    pub handles: Vec<String>,
    #[arg(long, default_value = "ramjet_cli_producer")]
    pub group: String,
}

/// Run `ramjet recall`: take timer messages back before their time (RECALL_MESSAGE).
pub fn run_recall(args: RecallArgs) -> Result<(), CliError> {
    let cfg = args.client.config()?;
    let ids = run_on_executor(async move {
        let producer = Producer::new(Client::new(cfg), ProducerConfig::new(args.group.clone()));
        let mut ids = Vec::new();
        for h in &args.handles {
            ids.push(producer.recall(&args.topic, h).await?);
        }
        Ok::<_, CliError>(ids)
    })?;
    let mut stdout = std::io::stdout().lock();
    for id in ids {
        writeln!(stdout, "recalled msg_id={id}").map_err(CliError::Output)?;
    }
    Ok(())
}

/// Run `ramjet produce`.
pub fn run_produce(args: ProduceArgs) -> Result<(), CliError> {
    if args
        .delay_level
        .is_some_and(|d| d == 0 || d as usize > MAX_DELAY_LEVELS)
    {
        return Err(CliError::Usage(format!(
            "--delay-level must be between 1 and {MAX_DELAY_LEVELS} (the broker caps it at its highest level)"
        )));
    }
    let deliver_at = match &args.deliver_at {
        Some(t) if t.trim().bytes().all(|b| b.is_ascii_digit()) || t.contains('T') => {
            Some(super::time::parse_time_ms(t, 0).map_err(CliError::Usage)?)
        }
        Some(t) => {
            return Err(CliError::Usage(format!(
                "--deliver-at {t:?}: give a time (ms since the epoch or 2026-11-23T12:00:00Z); for a delay use --delay-ms"
            )))
        }
        None => None,
    };
    if args.ordered && args.keys.is_none() {
        return Err(CliError::Usage(
            "--ordered routes by --keys: give --keys too".into(),
        ));
    }
    let cfg = args.client.config()?;
    // Lines from stdin come through a channel so the executor never blocks on a read.
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>();
    let from_stdin = args.messages.is_empty();
    if from_stdin {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        for m in &args.messages {
            let _ = tx.send(Ok(m.clone()));
        }
        drop(tx);
    }
    let sent = run_on_executor(async move {
        let producer = Producer::new(Client::new(cfg), ProducerConfig::new(args.group.clone()));
        let selector = if args.ordered {
            QueueSelector::KeyHash
        } else {
            QueueSelector::RoundRobin
        };
        let mut sent = 0u64;
        loop {
            let line = match rx.try_recv() {
                Ok(l) => l.map_err(CliError::Stdin)?,
                Err(mpsc::TryRecvError::Empty) => {
                    transport::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            if from_stdin && line.is_empty() {
                continue;
            }
            let mut m = args.message(line);
            if let Some(at) = deliver_at {
                m = m.with_deliver_time_ms(at.max(0) as u64);
            }
            let r = producer.send_with(m, &selector).await?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(report(args.json, &r).as_bytes())
                .map_err(CliError::Output)?;
            stdout.flush().map_err(CliError::Output)?;
            sent += 1;
        }
        Ok(sent)
    })?;
    if sent == 0 && from_stdin {
        eprintln!(
            "no message sent: standard input was empty (pass bodies as arguments or pipe lines in)"
        );
    }
    Ok(())
}
