//! `ramjet admin ...`: topics, cluster, broker status, consumer lag.

use std::io::Write;

use clap::{Args, Subcommand};
use ramjet_core::remoting::body::Perm;
use serde_json::json;

use super::{client_config, run_on_executor, CliError};
use crate::client::admin::{is_system_topic, Admin, DEFAULT_TOPIC_QUEUES};
use crate::client::{Client, TopicSpec};

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Name servers `host:port[;host:port]` (default: $NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(long, global = true)]
    pub namesrv: Option<String>,
    #[command(flatten)]
    pub acl: super::AclFlags,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create, list, delete or describe topics.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Brokers registered with the name server, by cluster.
    Cluster,
    /// Runtime counters of every broker, masters and slaves (GET_BROKER_RUNTIME_INFO, like mqadmin
    /// brokerStatus): messages put and got, CommitLog offsets, flushes, fdatasyncs, pulls,
    /// bytes in and out, refusals.
    Status {
        /// Only brokers of this cluster (default: every cluster).
        #[arg(long)]
        cluster: Option<String>,
        /// Only keys containing this text (case-insensitive), e.g. `flush` or `ramjet.`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Consumer progress of GROUP: committed offset vs. broker offset, per queue.
    Lag {
        group: String,
        /// Only this topic (default: every topic the group committed offsets on).
        #[arg(long)]
        topic: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TopicCommand {
    /// Create or update a topic on every master broker of a cluster.
    Create {
        name: String,
        /// Read and write queues per broker.
        #[arg(long, default_value_t = DEFAULT_TOPIC_QUEUES)]
        queues: i32,
        #[arg(long)]
        read_queues: Option<i32>,
        #[arg(long)]
        write_queues: Option<i32>,
        /// Permission bits: 6 read+write, 4 read only, 2 write only.
        #[arg(long, default_value_t = Perm::READ_WRITE)]
        perm: i32,
        /// Mark the topic as ordered.
        #[arg(long)]
        order: bool,
        /// Cluster to create it in (default: every cluster).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// List topics.
    List {
        /// Include system topics (TBW102, %RETRY%..., SCHEDULE_TOPIC_XXXX, ...).
        #[arg(long)]
        all: bool,
    },
    /// Delete a topic from the brokers and the name servers.
    Delete {
        name: String,
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Route and per-queue offsets of a topic.
    Describe { name: String },
}

fn out(text: String) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .map_err(CliError::Output)?;
    stdout.flush().map_err(CliError::Output)
}

/// Run `ramjet admin ...`.
pub fn run_admin(args: AdminArgs) -> Result<(), CliError> {
    let cfg = client_config(args.namesrv.as_deref(), &args.acl)?;
    let text = run_on_executor(async move {
        let admin = Admin::new(Client::new(cfg));
        admin_text(&admin, &args).await
    })?;
    out(text)
}

/// The output of one admin command (text or JSON, per `args.json`).
pub(crate) async fn admin_text(admin: &Admin, args: &AdminArgs) -> Result<String, CliError> {
    let json = args.json;
    let mut s = String::new();
    use std::fmt::Write as _;
    match &args.command {
        AdminCommand::Topic { command } => match command {
            TopicCommand::Create {
                name,
                queues,
                read_queues,
                write_queues,
                perm,
                order,
                cluster,
            } => {
                if *queues <= 0
                    || read_queues.is_some_and(|q| q <= 0)
                    || write_queues.is_some_and(|q| q <= 0)
                {
                    return Err(CliError::Usage("queue counts must be at least 1".into()));
                }
                let spec = TopicSpec {
                    name: name.clone(),
                    read_queues: read_queues.unwrap_or(*queues),
                    write_queues: write_queues.unwrap_or(*queues),
                    perm: *perm,
                    order: *order,
                };
                let brokers = admin.create_topic(&spec, cluster.as_deref()).await?;
                if json {
                    s = json!({"topic": name, "read_queues": spec.read_queues, "write_queues": spec.write_queues,
                               "perm": spec.perm, "brokers": brokers})
                    .to_string();
                    s.push('\n');
                } else {
                    let _ = writeln!(
                        s,
                        "topic {name} created/updated on {} broker(s): {} (read {}, write {}, perm {})",
                        brokers.len(),
                        brokers.iter().map(|b| format!("{} {}", b.broker_name, b.addr)).collect::<Vec<_>>().join(", "),
                        spec.read_queues,
                        spec.write_queues,
                        spec.perm
                    );
                }
            }
            TopicCommand::List { all } => {
                let topics: Vec<String> = admin
                    .list_topics()
                    .await?
                    .into_iter()
                    .filter(|t| *all || !is_system_topic(t))
                    .collect();
                if json {
                    s = json!({ "topics": topics }).to_string();
                    s.push('\n');
                } else {
                    for t in &topics {
                        let _ = writeln!(s, "{t}");
                    }
                    if topics.is_empty() {
                        let _ = writeln!(
                            s,
                            "(no topics; create one with `ramjet admin topic create NAME`)"
                        );
                    }
                }
            }
            TopicCommand::Delete { name, cluster } => {
                let brokers = admin.delete_topic(name, cluster.as_deref()).await?;
                if json {
                    s = json!({"deleted": name, "brokers": brokers}).to_string();
                    s.push('\n');
                } else {
                    let _ = writeln!(
                        s,
                        "topic {name} deleted from {} broker(s) and the name server",
                        brokers.len()
                    );
                }
            }
            TopicCommand::Describe { name } => {
                let (route, offsets) = admin.describe_topic(name).await?;
                if json {
                    let queues: Vec<_> = offsets
                        .iter()
                        .map(|(mq, min, max)| json!({"broker_name": mq.broker_name, "queue_id": mq.queue_id, "min_offset": min, "max_offset": max}))
                        .collect();
                    s = json!({"topic": name, "route": route, "queues": queues}).to_string();
                    s.push('\n');
                } else {
                    let _ = writeln!(s, "topic {name}");
                    for qd in &route.queue_datas {
                        let addr = route
                            .broker_datas
                            .iter()
                            .find(|b| b.broker_name == qd.broker_name)
                            .and_then(|b| b.master_addr())
                            .unwrap_or("-");
                        let _ = writeln!(
                            s,
                            "  broker {} ({addr}): read {} write {} perm {}",
                            qd.broker_name, qd.read_queue_nums, qd.write_queue_nums, qd.perm
                        );
                    }
                    let _ = writeln!(
                        s,
                        "  {:<24} {:>6} {:>14} {:>14} {:>12}",
                        "BROKER", "QUEUE", "MIN", "MAX", "MESSAGES"
                    );
                    for (mq, min, max) in &offsets {
                        let _ = writeln!(
                            s,
                            "  {:<24} {:>6} {:>14} {:>14} {:>12}",
                            mq.broker_name,
                            mq.queue_id,
                            min,
                            max,
                            max - min
                        );
                    }
                }
            }
        },
        AdminCommand::Cluster => {
            let brokers = admin.brokers().await?;
            if json {
                s = json!({ "brokers": brokers }).to_string();
                s.push('\n');
            } else if brokers.is_empty() {
                let _ = writeln!(
                    s,
                    "no broker registered with the name server; start one with `ramjet start`"
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:<20} {:<24} {:>4} {:<24}",
                    "CLUSTER", "BROKER", "ID", "ADDRESS"
                );
                for b in &brokers {
                    let _ = writeln!(
                        s,
                        "{:<20} {:<24} {:>4} {:<24}",
                        b.cluster, b.broker_name, b.broker_id, b.addr
                    );
                }
            }
        }
        AdminCommand::Status { cluster, filter } => {
            let all = admin.status(cluster.as_deref()).await?;
            let wanted = |k: &str| {
                filter
                    .as_ref()
                    .is_none_or(|f| k.to_lowercase().contains(&f.to_lowercase()))
            };
            if json {
                let brokers: Vec<_> = all
                    .iter()
                    .map(|(b, info)| {
                        let info: std::collections::BTreeMap<&String, &String> =
                            info.iter().filter(|(k, _)| wanted(k)).collect();
                        json!({"cluster": b.cluster, "broker_name": b.broker_name, "broker_id": b.broker_id, "addr": b.addr, "info": info})
                    })
                    .collect();
                s = json!({ "brokers": brokers }).to_string();
                s.push('\n');
            } else if all.is_empty() {
                let _ = writeln!(
                    s,
                    "no broker registered with the name server; start one with `ramjet start`"
                );
            } else {
                for (b, info) in &all {
                    let role = if b.broker_id == 0 {
                        String::new()
                    } else {
                        format!(" slave {}", b.broker_id)
                    };
                    let _ = writeln!(
                        s,
                        "broker {}{role} ({}, cluster {})",
                        b.broker_name, b.addr, b.cluster
                    );
                    for (k, v) in info.iter().filter(|(k, _)| wanted(k)) {
                        let _ = writeln!(s, "  {k:<36} {v}");
                    }
                }
            }
        }
        AdminCommand::Lag { group, topic } => {
            let lags = match topic {
                Some(t) => vec![admin.lag(group, t).await?],
                None => admin.lag_all(group).await?,
            };
            if json {
                s = json!({ "group": group, "topics": lags }).to_string();
                s.push('\n');
            } else if lags.is_empty() {
                let _ = writeln!(s, "group {group} has no committed offsets; pass --topic to see a topic's queues anyway");
            } else {
                for l in &lags {
                    let _ = writeln!(
                        s,
                        "group {} topic {}: total lag {}",
                        l.group, l.topic, l.total_lag
                    );
                    let _ = writeln!(
                        s,
                        "  {:<24} {:>6} {:>14} {:>14} {:>10}",
                        "BROKER", "QUEUE", "BROKER_OFFSET", "CONSUMER_OFFSET", "LAG"
                    );
                    for q in &l.queues {
                        let co = q
                            .consumer_offset
                            .map_or_else(|| "-".to_string(), |o| o.to_string());
                        let _ = writeln!(
                            s,
                            "  {:<24} {:>6} {:>14} {:>14} {:>10}",
                            q.queue.broker_name, q.queue.queue_id, q.broker_offset, co, q.lag
                        );
                    }
                }
            }
        }
    }
    Ok(s)
}
