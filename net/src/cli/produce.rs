//! `ramjet produce`: send messages given as arguments, or one per line of standard input.

use ramjet_storage::schedule::MAX_DELAY_LEVELS;
use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{client_config, parse_property, run_on_executor, CliError};
use crate::client::selector::QueueSelector;
use crate::client::transport;
use crate::client::{Client, Message, Producer, ProducerConfig, SendResult};

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Name servers `host:port[;host:port]` (default: $NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(long)]
    pub namesrv: Option<String>,
    #[command(flatten)]
    pub acl: super::AclFlags,
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
    #[arg(long)]
    pub delay_level: Option<u8>,
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
        for (k, v) in &self.properties {
            m.set_property(k.clone(), v.clone());
        }
        m
    }
}

fn report(json: bool, r: &SendResult) -> String {
    if json {
        let mut s = json!({
            "status": r.status, "msg_id": r.msg_id, "offset_msg_id": r.offset_msg_id,
            "topic": r.queue.topic, "broker_name": r.queue.broker_name, "queue_id": r.queue.queue_id,
            "queue_offset": r.queue_offset,
        })
        .to_string();
        s.push('\n');
        s
    } else {
        format!(
            "{:?} msg_id={} broker={} queue={} offset={}\n",
            r.status, r.msg_id, r.queue.broker_name, r.queue.queue_id, r.queue_offset
        )
    }
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
    if args.ordered && args.keys.is_none() {
        return Err(CliError::Usage(
            "--ordered routes by --keys: give --keys too".into(),
        ));
    }
    let cfg = client_config(args.namesrv.as_deref(), &args.acl)?;
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
            let r = producer.send_with(args.message(line), &selector).await?;
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
