//! `ramjet admin ...`: topics, cluster, broker status, consumer lag.

use std::io::Write;

use clap::{Args, Subcommand};
use ramjet_core::remoting::body::Perm;
use serde_json::json;

use super::{run_on_executor, CliError};
use crate::client::admin::{is_system_topic, Admin, DEFAULT_TOPIC_QUEUES};
use crate::client::{Client, TopicSpec};

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub client: super::ClientFlags,
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
    /// Configuration of every broker, masters and slaves (GET_BROKER_CONFIG, like mqadmin
    /// getBrokerConfig): RocketMQ's keys (brokerRole, flushDiskType, ...) and every ramjet
    /// setting as section.key, defaults included.
    Config {
        /// Only brokers of this cluster (default: every cluster).
        #[arg(long)]
        cluster: Option<String>,
        /// Only keys containing this text (case-insensitive), e.g. `flush` or `store.`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// ACL accounts of brokers with `broker.acl_enable` (docs/acl.md): show, create or change,
    /// delete, set the global white list. Changes rewrite each broker's accounts file. Needs
    /// an admin account (--access-key/--secret-key).
    Acl {
        #[command(subcommand)]
        command: AclCommand,
        /// Only brokers of this cluster (default: every cluster).
        #[arg(long, global = true)]
        cluster: Option<String>,
    },
    /// Move GROUP's offsets on TOPIC, like mqadmin resetOffsetByTime: to a point in time, the
    /// start or the end of each queue, or one queue to an offset. A clustering group's
    /// consumers move at their next pull (and one offline starts there); a broadcasting
    /// group's consumers must be online.
    ResetOffset {
        group: String,
        topic: String,
        /// Where to: a time (ms since the epoch, 2026-11-23T12:00:00Z, or an age like 10m),
        /// `earliest` or `latest`.
        #[arg(long, conflicts_with_all = ["queue", "offset"])]
        to: Option<String>,
        /// One queue, BROKER_NAME:QUEUE_ID (with --offset).
        #[arg(long, requires = "offset")]
        queue: Option<String>,
        /// That queue's new offset (with --queue).
        #[arg(long, requires = "queue")]
        offset: Option<i64>,
        /// Only move queues back: a committed offset already below the target stays.
        #[arg(long)]
        no_force: bool,
    },
    /// How GROUP consumes TOPIC when its consumers let the broker divide the queues
    /// (RocketMQ 5 `clientRebalance` off): `pull`, or `pop` (mqadmin setConsumeMode). Set on
    /// every master of the topic.
    ConsumeMode {
        group: String,
        topic: String,
        /// `pull` or `pop`.
        mode: String,
        /// POP: each consumer also pops the queues of this many consumers after it (0: every
        /// consumer pops every queue).
        #[arg(long, default_value_t = 0)]
        share: i32,
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
pub enum AclCommand {
    /// The accounts and the global white list of every master.
    Show,
    /// Create the account ACCOUNT or change the fields given (RocketMQ's updateAclConfig).
    Update {
        /// The account's access key (longer than 6 characters).
        account: String,
        /// Its secret key (needed for a new account).
        #[arg(long)]
        secret: Option<String>,
        /// Addresses that need no signature for it, e.g. 192.168.1.*.
        #[arg(long)]
        white_remote_address: Option<String>,
        /// May create and delete topics and groups and change ACL (every update sets it: leave
        /// it out and the account is not an admin, as with RocketMQ's updateAclConfig).
        #[arg(long)]
        admin: bool,
        /// PUB, SUB, PUB|SUB or DENY for topics not listed.
        #[arg(long)]
        default_topic_perm: Option<String>,
        /// PUB, SUB, PUB|SUB or DENY for groups not listed.
        #[arg(long)]
        default_group_perm: Option<String>,
        /// Per-topic permissions, e.g. orders=PUB,audit=SUB (replaces the list).
        #[arg(long)]
        topic_perms: Option<String>,
        /// Per-group permissions, e.g. readers=SUB (replaces the list).
        #[arg(long)]
        group_perms: Option<String>,
    },
    /// Delete the account ACCOUNT.
    Delete { account: String },
    /// Replace the global white list (addresses that need no key at all); none: empty it.
    White { addresses: Vec<String> },
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
    let cfg = args.client.config()?;
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
        AdminCommand::Status { cluster, filter } | AdminCommand::Config { cluster, filter } => {
            let all = if matches!(args.command, AdminCommand::Config { .. }) {
                admin.configs(cluster.as_deref()).await?
            } else {
                admin.status(cluster.as_deref()).await?
            };
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
        AdminCommand::Acl { command, cluster } => {
            let (code, fields) = acl_request(command);
            let answers = admin.acl_request(code, &fields, cluster.as_deref()).await?;
            if let AclCommand::Show = command {
                let docs: Vec<serde_json::Value> = answers
                    .iter()
                    .map(|(b, r)| {
                        json!({
                            "broker": b.broker_name,
                            "addr": b.addr,
                            "acl": serde_json::from_slice::<serde_json::Value>(&r.body)
                                .unwrap_or(serde_json::Value::Null),
                        })
                    })
                    .collect();
                if json {
                    s = json!({ "brokers": docs }).to_string();
                    s.push('\n');
                } else {
                    for d in &docs {
                        let _ = writeln!(
                            s,
                            "broker {} ({})",
                            d["broker"].as_str().unwrap_or(""),
                            d["addr"].as_str().unwrap_or("")
                        );
                        let _ =
                            writeln!(s, "  global white list: {}", d["acl"]["globalWhiteAddrs"]);
                        for a in d["acl"]["plainAccessConfigs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            let _ = writeln!(
                                s,
                                "  {} admin={} white={} topics: default {} {} groups: default {} {}",
                                a["accessKey"].as_str().unwrap_or(""),
                                a["admin"],
                                a["whiteRemoteAddress"].as_str().unwrap_or("-"),
                                a["defaultTopicPerm"].as_str().unwrap_or("DENY"),
                                a["topicPerms"],
                                a["defaultGroupPerm"].as_str().unwrap_or("DENY"),
                                a["groupPerms"],
                            );
                        }
                    }
                }
            } else if json {
                let brokers: Vec<&str> = answers
                    .iter()
                    .map(|(b, _)| b.broker_name.as_str())
                    .collect();
                s = json!({ "ok": true, "brokers": brokers }).to_string();
                s.push('\n');
            } else {
                for (b, _) in &answers {
                    let _ = writeln!(s, "ACL changed on {} ({})", b.broker_name, b.addr);
                }
            }
        }
        AdminCommand::ConsumeMode {
            group,
            topic,
            mode,
            share,
        } => {
            let pop = match mode.to_ascii_lowercase().as_str() {
                "pop" => true,
                "pull" => false,
                other => {
                    return Err(CliError::Usage(format!(
                        "mode {other:?}: expected pull or pop"
                    )))
                }
            };
            if *share < 0 {
                return Err(CliError::Usage("--share must be 0 or more".into()));
            }
            let brokers = admin.set_request_mode(group, topic, pop, *share).await?;
            let m = if pop { "POP" } else { "PULL" };
            if json {
                s = json!({ "group": group, "topic": topic, "mode": m, "share": share, "brokers": brokers }).to_string();
                s.push('\n');
            } else {
                let _ = writeln!(
                    s,
                    "group {group} topic {topic}: {m} on {}",
                    brokers.join(", ")
                );
            }
        }
        AdminCommand::ResetOffset {
            group,
            topic,
            to,
            queue,
            offset,
            no_force,
        } => {
            let one = match (queue, offset) {
                (Some(q), Some(o)) => {
                    let parsed = q
                        .rsplit_once(':')
                        .and_then(|(b, id)| Some((b, id.parse::<i32>().ok()?)));
                    let Some((b, id)) = parsed.filter(|(b, id)| !b.is_empty() && *id >= 0) else {
                        return Err(CliError::Usage(format!(
                            "--queue {q:?}: expected BROKER_NAME:QUEUE_ID, e.g. ramjet-s0:3 (see `ramjet admin topic describe {topic}`)"
                        )));
                    };
                    Some((b, id, *o))
                }
                _ => None,
            };
            let timestamp =
                match (to.as_deref(), &one) {
                    (Some("earliest"), _) => 0,
                    (Some("latest"), _) | (None, Some(_)) => -1,
                    (Some(t), _) => {
                        super::time::parse_time_ms(t, crate::client::message::now_ms() as i64)
                            .map_err(CliError::Usage)?
                    }
                    (None, None) => return Err(CliError::Usage(
                        "say where to: --to TIME|earliest|latest, or --queue BROKER:ID --offset N"
                            .into(),
                    )),
                };
            let table = admin
                .reset_offsets(group, topic, timestamp, !no_force, one)
                .await?;
            if json {
                let queues: Vec<_> = table
                    .iter()
                    .map(|(mq, o)| json!({"broker_name": mq.broker_name, "queue_id": mq.queue_id, "offset": o}))
                    .collect();
                s = json!({ "group": group, "topic": topic, "queues": queues }).to_string();
                s.push('\n');
            } else {
                let _ = writeln!(
                    s,
                    "group {group} topic {topic}: offsets reset on {} queue(s)",
                    table.len()
                );
                let _ = writeln!(s, "  {:<24} {:>6} {:>14}", "BROKER", "QUEUE", "OFFSET");
                for (mq, o) in &table {
                    let _ = writeln!(s, "  {:<24} {:>6} {:>14}", mq.broker_name, mq.queue_id, o);
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

/// The request code and header of an `admin acl` command.
pub(super) fn acl_request(c: &AclCommand) -> (i32, Vec<(String, String)>) {
    use ramjet_core::remoting::RequestCode;
    let mut f = Vec::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            f.push((k.to_string(), v.clone()));
        }
    };
    let code = match c {
        AclCommand::Show => RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG,
        AclCommand::Update {
            account,
            secret,
            white_remote_address,
            admin,
            default_topic_perm,
            default_group_perm,
            topic_perms,
            group_perms,
        } => {
            put("accessKey", Some(account));
            put("secretKey", secret.as_ref());
            put("whiteRemoteAddress", white_remote_address.as_ref());
            put("admin", Some(&admin.to_string()));
            put("defaultTopicPerm", default_topic_perm.as_ref());
            put("defaultGroupPerm", default_group_perm.as_ref());
            put("topicPerms", topic_perms.as_ref());
            put("groupPerms", group_perms.as_ref());
            RequestCode::UPDATE_AND_CREATE_ACL_CONFIG
        }
        AclCommand::Delete { account } => {
            put("accessKey", Some(account));
            RequestCode::DELETE_ACL_CONFIG
        }
        AclCommand::White { addresses } => {
            put("globalWhiteAddrs", Some(&addresses.join(",")));
            RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG
        }
    };
    (code, f)
}
