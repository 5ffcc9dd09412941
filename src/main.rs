//! The `ramjet` binary: parses flags and calls into the crates.
//!
//! - `ramjet start`: embedded name server + broker with all shards (the quick start).
//! - `ramjet broker --namesrv HOST:PORT[;HOST:PORT]`: shards only.
//! - `ramjet namesrv`: name server only (port 9876).
//! - `ramjet admin|produce|consume`: the client CLI (ramjet_net::cli).
//!
//! Every command reads one TOML file (`--config`, keys in docs/config.md); flags override it.
//! SIGINT/SIGTERM flush and exit cleanly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ramjet_net::broker::config::{parse_namesrv_list, Config};
use ramjet_net::broker::server::{Roles, Server};
use ramjet_net::runtime;

#[derive(Parser)]
#[command(
    name = "ramjet",
    version,
    about = "RocketMQ-model message broker, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded name server + broker with all shards.
    Start(StartArgs),
    /// Broker shards only, registering with the given name servers.
    Broker(BrokerArgs),
    /// Name server only.
    Namesrv(NamesrvArgs),
    /// Administer a cluster: topics, cluster info, consumer lag.
    Admin(ramjet_net::cli::AdminArgs),
    /// Send messages from arguments or standard input.
    Produce(ramjet_net::cli::ProduceArgs),
    /// Take timer messages back before their time, by the recall handles `produce` printed.
    Recall(ramjet_net::cli::RecallArgs),
    /// Print messages as they arrive (from an offset, a timestamp or the end).
    Consume(ramjet_net::cli::ConsumeArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file (keys in docs/config.md).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct BrokerFlags {
    /// Data directory (shard i stores under DIR/shard-<i>/) [broker.data_dir].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of shards; default one per CPU [broker.shards].
    #[arg(long)]
    shards: Option<usize>,
    /// CPUs to pin shards to, e.g. 0-3 or 0,2 [broker.cpus].
    #[arg(long)]
    cpus: Option<String>,
    /// First broker port; shard i listens on PORT + 4*i and PORT + 4*i - 2 [broker.base_port].
    #[arg(long)]
    port: Option<u16>,
    /// IP address to listen on [broker.listen_ip].
    #[arg(long)]
    listen_ip: Option<String>,
    /// IP address advertised to clients and name servers [broker.advertise_ip].
    #[arg(long)]
    advertise_ip: Option<String>,
    /// Broker name prefix; shard i is <NAME>-s<i> [broker.name].
    #[arg(long)]
    name: Option<String>,
    /// Cluster name [broker.cluster].
    #[arg(long)]
    cluster: Option<String>,
    /// Flush mode: sync (ack after fdatasync) or async [store.flush].
    #[arg(long)]
    flush: Option<String>,
    /// CommitLog I/O mode: direct or buffered [store.io_mode].
    #[arg(long)]
    io_mode: Option<String>,
    /// CommitLog segment size in bytes [store.segment_size_bytes].
    #[arg(long)]
    segment_size_bytes: Option<u64>,
    /// Force the copy path for pull responses (no sendfile) [broker.zero_copy = false].
    #[arg(long)]
    no_zero_copy: bool,
    /// master or slave [broker.role].
    #[arg(long)]
    role: Option<String>,
    /// A master's replication: async, or sync (acknowledge once a slave has the record)
    /// [broker.replication].
    #[arg(long)]
    replication: Option<String>,
    /// A slave's master: the HA address of its shard 0, IP:PORT (the master's port + 1)
    /// [broker.ha_master_address].
    #[arg(long)]
    ha_master: Option<String>,
    /// Turn ACL on with this accounts file in RocketMQ's plain_acl.yml format
    /// [broker.acl_enable = true, broker.acl_file].
    #[arg(long, value_name = "FILE")]
    acl: Option<String>,
}

#[derive(Args)]
struct StartArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    broker: BrokerFlags,
    /// Name server listen address [namesrv.listen].
    #[arg(long)]
    namesrv_listen: Option<String>,
}

#[derive(Args)]
struct BrokerArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    broker: BrokerFlags,
    /// Name servers, HOST:PORT[;HOST:PORT] [broker.namesrv_addrs].
    #[arg(long)]
    namesrv: Option<String>,
}

#[derive(Args)]
struct NamesrvArgs {
    #[command(flatten)]
    common: Common,
    /// Listen address [namesrv.listen], default 0.0.0.0:9876.
    #[arg(long)]
    listen: Option<String>,
    /// Listen port (shorthand for --listen 0.0.0.0:PORT).
    #[arg(long)]
    port: Option<u16>,
}

fn load(common: &Common) -> Result<Config, String> {
    match &common.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn apply_broker_flags(cfg: &mut Config, f: &BrokerFlags) {
    let b = &mut cfg.broker;
    if let Some(v) = &f.data_dir {
        b.data_dir = v.clone();
    }
    if let Some(v) = &f.role {
        b.role = v.clone();
    }
    if let Some(v) = &f.replication {
        b.replication = v.clone();
    }
    if let Some(v) = &f.ha_master {
        b.ha_master_address = v.clone();
    }
    if let Some(v) = &f.acl {
        b.acl_enable = true;
        b.acl_file = v.clone();
    }
    if let Some(v) = f.shards {
        b.shards = v;
    }
    if let Some(v) = &f.cpus {
        b.cpus = v.clone();
    }
    if let Some(v) = f.port {
        b.base_port = v;
    }
    if let Some(v) = &f.listen_ip {
        b.listen_ip = v.clone();
    }
    if let Some(v) = &f.advertise_ip {
        b.advertise_ip = v.clone();
    }
    if let Some(v) = &f.name {
        b.name = v.clone();
    }
    if let Some(v) = &f.cluster {
        b.cluster = v.clone();
    }
    if f.no_zero_copy {
        b.zero_copy = false;
    }
    if let Some(v) = &f.flush {
        cfg.store.flush = v.clone();
    }
    if let Some(v) = &f.io_mode {
        cfg.store.io_mode = v.clone();
    }
    if let Some(v) = f.segment_size_bytes {
        cfg.store.segment_size_bytes = v;
    }
}

/// ", slaves on ADDR" for a master shard's HA listener.
fn ha_note(s: &ramjet_net::broker::shard::ShardPorts) -> String {
    s.ha.map(|a| format!(", slaves on {a}")).unwrap_or_default()
}

fn run(cli: Cli) -> Result<(), String> {
    let (cfg, roles) = match cli.command {
        Command::Admin(a) => return ramjet_net::cli::run_admin(a).map_err(|e| e.to_string()),
        Command::Produce(a) => return ramjet_net::cli::run_produce(a).map_err(|e| e.to_string()),
        Command::Recall(a) => return ramjet_net::cli::run_recall(a).map_err(|e| e.to_string()),
        Command::Consume(a) => return ramjet_net::cli::run_consume(a).map_err(|e| e.to_string()),
        Command::Start(a) => {
            let mut cfg = load(&a.common)?;
            apply_broker_flags(&mut cfg, &a.broker);
            if let Some(l) = a.namesrv_listen {
                cfg.namesrv.listen = l;
            }
            (
                cfg,
                Roles {
                    namesrv: true,
                    broker: true,
                },
            )
        }
        Command::Broker(a) => {
            let mut cfg = load(&a.common)?;
            apply_broker_flags(&mut cfg, &a.broker);
            if let Some(n) = a.namesrv {
                cfg.broker.namesrv_addrs = parse_namesrv_list(&n);
            }
            (
                cfg,
                Roles {
                    namesrv: false,
                    broker: true,
                },
            )
        }
        Command::Namesrv(a) => {
            let mut cfg = load(&a.common)?;
            if let Some(l) = a.listen {
                cfg.namesrv.listen = l;
            }
            if let Some(p) = a.port {
                cfg.namesrv.listen = format!("0.0.0.0:{p}");
            }
            (
                cfg,
                Roles {
                    namesrv: true,
                    broker: false,
                },
            )
        }
    };
    // Before any executor thread exists, so that they all inherit the blocked mask.
    runtime::block_shutdown_signals();
    let flush = cfg.store.flush.clone();
    let cluster = cfg.broker.cluster.clone();
    let mut role = if cfg.is_slave() {
        format!("slave (id {})", cfg.broker_id())
    } else {
        format!("master, {} replication", cfg.broker.replication)
    };
    if cfg.broker.acl_enable && roles.broker {
        role.push_str(&format!(", ACL from {}", cfg.acl_file().display()));
    }
    let mut server = Server::start(cfg, roles).map_err(|e| e.to_string())?;
    if let Some(a) = server.namesrv {
        println!("ramjet: name server listening on {a}");
    }
    for s in &server.shards {
        match s.vip {
            Some(v) => println!(
                "ramjet: shard {} (broker {}) listening on {} and {} (vip){}, data {}",
                s.index,
                s.broker_name,
                s.main,
                v,
                ha_note(s),
                s.data_dir.display()
            ),
            None => println!(
                "ramjet: shard {} (broker {}) listening on {}{}, data {}",
                s.index,
                s.broker_name,
                s.main,
                ha_note(s),
                s.data_dir.display()
            ),
        }
    }
    if roles.broker {
        println!(
            "ramjet: ready (cluster {cluster}, {} shard(s), flush {flush}, {role})",
            server.shards.len()
        );
    } else {
        println!("ramjet: ready");
    }
    let sig = runtime::wait_for_shutdown_signal();
    println!("ramjet: signal {sig} received, shutting down");
    let errs = server.shutdown();
    if errs.is_empty() {
        println!("ramjet: stopped cleanly");
        Ok(())
    } else {
        Err(errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "))
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMJET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ramjet: error: {e}");
            ExitCode::FAILURE
        }
    }
}
