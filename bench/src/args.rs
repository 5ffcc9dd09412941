//! Command line of ramjet-bench.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ramjet_net::client::Message;

/// Default of `--slice-us`: the shortest custom slice the kernel accepts (the broker's shards
/// ask for the same, `runtime.shard_slice_us`).
pub const DEFAULT_SLICE_US: u64 = 100;

#[derive(Debug, Parser)]
#[command(
    name = "ramjet-bench",
    version,
    about = "RocketMQ-protocol load generator with HDR latency (open or closed loop)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send messages; latency = send to broker acknowledgement.
    Produce(BenchArgs),
    /// Consume messages (push consumer on long polling); latency = arrival minus producer stamp.
    Consume(BenchArgs),
    /// Produce and consume at once; latency = produce (intended) time to consume.
    E2e(BenchArgs),
    /// One message at a time: send, wait until it is consumed, repeat.
    Pingpong(BenchArgs),
    /// POP consumption (RocketMQ 5): --consumers poppers each pop up to --pull-batch (at most
    /// 32) messages of any queue and acknowledge them with one BATCH_ACK_MESSAGE; latency =
    /// pop request to ack answer, counted per message. --from first reads a backlog (and the
    /// rate is over the time it took); a group with offsets resumes there.
    Pop(BenchArgs),
}

/// Which client code drives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientImpl {
    /// The generator's own send and pull loops on the remoting protocol: batch bodies encoded
    /// once and patched per request (stamps, distinct UNIQ_KEYs), pulled records read in
    /// place. No allocation per message, so the generator is not the ceiling.
    Raw,
    /// ramjet's client library (Producer, PushConsumer with rebalance): measures the library.
    Full,
}

/// How each transactional message ends (`--transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransactionEnd {
    /// END_TRANSACTION commit: the message becomes visible in its topic.
    Commit,
    /// END_TRANSACTION rollback: nothing is stored for the topic.
    Rollback,
}

impl TransactionEnd {
    /// The `commitOrRollback` value.
    pub fn code(self) -> i32 {
        match self {
            TransactionEnd::Commit => 8,
            TransactionEnd::Rollback => 12,
        }
    }
}

/// How request headers are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Serialize {
    /// RocketMQ's binary header (`SerializeType.ROCKETMQ`): what the RocketMQ brokers also
    /// read; about a tenth of the decode cost of JSON.
    Rocketmq,
    /// JSON headers, the Java client's default.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartFrom {
    First,
    Last,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Name servers, `host:port[;host:port]`.
    #[arg(long, env = "NAMESRV_ADDR", default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Create or update the topic with this many queues per broker before the run.
    #[arg(long)]
    pub queues: Option<i32>,
    /// Cluster to create the topic in (default: every cluster).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Message body size in bytes (at least 8 for the e2e time stamp).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Messages per request (SEND_BATCH_MESSAGE when > 1).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Send every message with property `DELAY` = N: a scheduled message, stored in its topic
    /// by the broker once level N's delay has passed (1..=18 with RocketMQ's default levels;
    /// the broker caps higher ones). Needs `--batch 1`: RocketMQ refuses delayed batches.
    /// With `e2e`, latencies include the delay.
    #[arg(long)]
    pub delay_level: Option<u8>,
    /// Send every message as a 5.x timer message, delivered this many ms after the broker
    /// stores it (property `TIMER_DELAY_MS`). Needs `--batch 1`. With `e2e`, latencies
    /// include the delay.
    #[arg(long, conflicts_with = "delay_level")]
    pub timer_delay_ms: Option<u64>,
    /// Send every message as a transaction: a half message (`TRAN_MSG`), then, once the
    /// broker acknowledged it, END_TRANSACTION (oneway, as the Java client) with this outcome.
    /// Send latencies are the half message's; with `e2e` and `commit`, a message's latency
    /// runs to its arrival after the commit. Needs `--batch 1` and `--client raw`.
    #[arg(long, value_enum)]
    pub transaction: Option<TransactionEnd>,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Client code: `raw` (the generator's own protocol loops) or `full` (the client library).
    #[arg(long, value_enum, default_value_t = ClientImpl::Raw)]
    pub client: ClientImpl,
    /// Header encoding of every request: `rocketmq` (binary) or `json`.
    #[arg(long, value_enum, default_value_t = Serialize::Rocketmq)]
    pub serialize: Serialize,
    /// ACL access key: every request is signed (brokers with `broker.acl_enable`; the
    /// signature costs the generator one HMAC-SHA1 over the header values and body per
    /// request) [env RAMJET_ACCESS_KEY].
    #[arg(long, env = "RAMJET_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// ACL secret key of --access-key [env RAMJET_SECRET_KEY].
    #[arg(long, env = "RAMJET_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Messages asked for per pull (`maxMsgNums`; the Java push consumer asks 32). The broker
    /// caps it too (store.max_transfer_* keys).
    #[arg(long, default_value_t = 32)]
    pub pull_batch: i32,
    /// Microseconds each worker keeps polling before it sleeps in the kernel (0: sleep at
    /// once). For latency runs on dedicated cores.
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// `--client raw`: microseconds before a request is due that the send loop stops sleeping
    /// and polls (waking a sleeping thread is late by tens of µs, more on a VM). At rates with
    /// a request due more often than this the loop never sleeps; 0 sleeps until each is due
    /// (less CPU, later sends, counted in the latencies).
    #[arg(long, default_value_t = crate::engine::DEFAULT_WAKE_AHEAD_US)]
    pub wake_ahead_us: u64,
    /// Scheduler time slice (µs) each pinned worker asks the kernel for (`sched_setattr`,
    /// Linux >= 6.12; 0: the kernel's default). A worker that never sleeps holds its CPU for
    /// a whole slice before kernel work queued there runs (disk-completion workers, softirq
    /// threads, a broker's helper threads); a short slice bounds that wait. Like the broker's
    /// `runtime.shard_slice_us`.
    #[arg(long, default_value_t = DEFAULT_SLICE_US)]
    pub slice_us: u64,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Client instances (each with its own TCP connection per broker); default one per
    /// producer/consumer.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Open loop: total messages per second over all producers. Absent: closed loop, max
    /// throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// CPUs to pin worker threads to: `0,2,3` or `0-3`; one worker per CPU. Absent: one
    /// unpinned worker.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Requests in flight per producer (closed loop); bound for open loop too.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Consumer group of the consuming side.
    #[arg(long, default_value = "ramjet_bench_group")]
    pub group: String,
    /// Consumers pull with this SQL92 selector (`expressionType` SQL92) instead of tag `*`:
    /// the broker evaluates it against every found record's properties. The generator's
    /// messages carry `UNIQ_KEY` only, so `"UNIQ_KEY IS NOT NULL"` keeps every message (the
    /// cost of evaluating) and `"UNIQ_KEY IS NULL"` none. Needs `--client raw`.
    #[arg(long)]
    pub sql: Option<String>,
    /// Where consumers of a new group start (consume mode).
    #[arg(long, value_enum, default_value_t = StartFrom::Last)]
    pub from: StartFrom,
    /// Write the final report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution as an HdrHistogram percentile file.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Parse `0,2,5-7` into CPU ids.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad --cpus item {part:?}: use a list like 0,2 or a range like 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("--cpus lists no CPU".to_string());
    }
    Ok(out)
}

/// How every message waits before the broker stores it in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// `DELAY` = level.
    Level(u8),
    /// `TIMER_DELAY_MS` = ms.
    TimerMs(u64),
}

impl Delay {
    pub fn apply(self, m: Message) -> Message {
        match self {
            Delay::Level(l) => m.with_delay_level(l),
            Delay::TimerMs(ms) => m.with_delay_ms(ms),
        }
    }
}

impl BenchArgs {
    /// `--delay-level` or `--timer-delay-ms`.
    pub fn delay(&self) -> Option<Delay> {
        self.delay_level
            .map(Delay::Level)
            .or(self.timer_delay_ms.map(Delay::TimerMs))
    }

    /// Check the combination before starting anything.
    /// The ACL credentials of `--access-key` and `--secret-key`.
    pub fn credentials(&self) -> Option<ramjet_net::client::Credentials> {
        match (&self.access_key, &self.secret_key) {
            (Some(ak), Some(sk)) => Some(ramjet_net::client::Credentials::new(ak, sk)),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.access_key.is_some() != self.secret_key.is_some() {
            return Err("--access-key and --secret-key go together".into());
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: --producers and --consumers are both 0".into());
        }
        if self.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        match self.delay_level {
            Some(0) => return Err("--delay-level must be at least 1".into()),
            Some(_) if self.batch > 1 => {
                return Err("--delay-level needs --batch 1 (brokers refuse delayed batches)".into())
            }
            _ => {}
        }
        match self.timer_delay_ms {
            Some(0) => return Err("--timer-delay-ms must be at least 1".into()),
            Some(_) if self.batch > 1 => {
                return Err(
                    "--timer-delay-ms needs --batch 1 (brokers refuse timer batches)".into(),
                )
            }
            _ => {}
        }
        if self.transaction.is_some() {
            if self.batch > 1 {
                return Err(
                    "--transaction needs --batch 1 (brokers refuse transactional batches)".into(),
                );
            }
            if self.client != ClientImpl::Raw {
                return Err("--transaction needs --client raw".into());
            }
        }
        if self.sql.is_some() && self.client != ClientImpl::Raw {
            return Err("--sql needs --client raw".into());
        }
        if self.pull_batch < 1 {
            return Err(format!(
                "--pull-batch must be at least 1, got {}",
                self.pull_batch
            ));
        }
        if self.window == 0 {
            return Err("--window must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(format!(
                    "--rate must be a positive number of messages per second, got {r}"
                ));
            }
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return Err(format!(
                "--duration must be positive seconds, got {}",
                self.duration
            ));
        }
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            return Err(format!(
                "--warmup must be zero or positive seconds, got {}",
                self.warmup
            ));
        }
        if matches!(self.connections, Some(0)) {
            return Err("--connections must be at least 1".into());
        }
        if let Some(c) = &self.cpus {
            parse_cpus(c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_command_line() {
        let cli = Cli::try_parse_from([
            "ramjet-bench",
            "produce",
            "--namesrv",
            "h:1",
            "--topic",
            "T",
            "--queues",
            "8",
            "--size",
            "1024",
            "--batch",
            "16",
            "--producers",
            "4",
            "--connections",
            "2",
            "--rate",
            "50000",
            "--duration",
            "30",
            "--warmup",
            "5",
            "--cpus",
            "0-1",
            "--json",
            "r.json",
            "--hgrm",
            "r.hgrm",
            "--wake-ahead-us",
            "10",
            "--slice-us",
            "250",
        ])
        .expect("parse");
        let Command::Produce(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            (a.size, a.batch, a.producers, a.connections, a.queues),
            (1024, 16, 4, Some(2), Some(8))
        );
        assert_eq!(a.rate, Some(50_000.0));
        assert_eq!((a.wake_ahead_us, a.slice_us), (10, 250));
        let Command::E2e(d) = Cli::try_parse_from(["ramjet-bench", "e2e"])
            .expect("parse")
            .command
        else {
            panic!("wrong subcommand")
        };
        assert_eq!(d.slice_us, DEFAULT_SLICE_US);
        assert_eq!(parse_cpus(a.cpus.as_deref().unwrap_or("")), Ok(vec![0, 1]));
        assert!(a.validate().is_ok());
    }

    #[test]
    fn rejects_bad_values_with_a_reason() {
        let cli = Cli::try_parse_from(["ramjet-bench", "e2e", "--rate=-5"]).expect("parse");
        let Command::E2e(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert!(a.validate().is_err_and(|e| e.contains("--rate")));
        assert!(parse_cpus("3-1").is_err());
        assert_eq!(parse_cpus("0, 2,4-5"), Ok(vec![0, 2, 4, 5]));
        assert!(Cli::try_parse_from(["ramjet-bench", "fly"]).is_err());
        let delayed = |extra: &[&str]| {
            let mut argv = vec!["ramjet-bench", "produce"];
            argv.extend_from_slice(extra);
            let Command::Produce(a) = Cli::try_parse_from(argv).expect("parse").command else {
                panic!("wrong subcommand")
            };
            a.validate()
        };
        assert!(delayed(&["--delay-level", "3"]).is_ok());
        assert!(delayed(&["--delay-level", "0"]).is_err_and(|e| e.contains("at least 1")));
        assert!(delayed(&["--delay-level", "3", "--batch", "10"])
            .is_err_and(|e| e.contains("--batch 1")));
        assert!(delayed(&["--timer-delay-ms", "1500"]).is_ok());
        assert!(delayed(&["--timer-delay-ms", "0"]).is_err_and(|e| e.contains("at least 1")));
        assert!(delayed(&["--timer-delay-ms", "9", "--batch", "2"])
            .is_err_and(|e| e.contains("--batch 1")));
        assert!(delayed(&["--transaction", "commit"]).is_ok());
        assert!(delayed(&["--transaction", "rollback", "--batch", "2"])
            .is_err_and(|e| e.contains("--batch 1")));
        assert!(delayed(&["--transaction", "commit", "--client", "full"])
            .is_err_and(|e| e.contains("--client raw")));
        assert!(
            Cli::try_parse_from(["ramjet-bench", "produce", "--transaction", "maybe"]).is_err()
        );
    }
}
