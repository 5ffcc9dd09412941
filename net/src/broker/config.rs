//! The ramjet configuration file: one TOML file (`--config`), every key optional with the
//! default documented in docs/config.md; command-line flags override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default first broker port (RocketMQ's `listenPort`). Shard i listens on `base + 4*i`.
pub const DEFAULT_BASE_PORT: u16 = 10911;
/// Port step between shards: P, P-2 (VIP) and P+1 (HA) of one shard never meet another's.
pub const SHARD_PORT_STEP: u16 = 4;
/// Offset of the VIP ("fast") port from the main port.
pub const VIP_PORT_OFFSET: u16 = 2;
/// Default name server port.
pub const DEFAULT_NAMESRV_PORT: u16 = 9876;
/// Default `broker.read_coalesce_us`.
pub const DEFAULT_READ_COALESCE_US: u64 = 50;
/// Upper bound of a long-poll hold, whatever the client asks (RocketMQ's push default).
pub const MAX_LONG_POLL_MS: u64 = 15_000;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value for {key}: {value} ({why})")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerSection,
    pub namesrv: NamesrvSection,
    pub store: StoreSection,
    pub runtime: RuntimeSection,
}

/// `[broker]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Broker name prefix; shard i registers as `<name>-s<i>`.
    pub name: String,
    pub cluster: String,
    /// Address the listeners bind to.
    pub listen_ip: String,
    /// Address written into message ids and registered with the name server (what clients
    /// connect to). Empty: the listen ip, or 127.0.0.1 when listening on 0.0.0.0.
    pub advertise_ip: String,
    pub base_port: u16,
    /// Also serve every shard on `port - 2` (the RocketMQ VIP port).
    pub vip_port_enabled: bool,
    /// Name servers, `host:port` entries (`;`-separated also accepted on the command line).
    pub namesrv_addrs: Vec<String>,
    /// Number of shards; 0 = one per online CPU.
    pub shards: usize,
    /// CPUs to pin shards to, e.g. "0-3"; empty = online CPUs in order.
    pub cpus: String,
    pub data_dir: PathBuf,
    /// Auto-create topics on send from the `TBW102` template.
    pub auto_create_topic: bool,
    /// Queue count of the `TBW102` template (and cap of auto-created topics).
    pub default_topic_queue_nums: u32,
    pub auto_create_subscription_group: bool,
    /// Delay of each level, RocketMQ's `messageDelayLevel` syntax (`"1s 5s 10s 30s 1m ..."`):
    /// a send with property `DELAY` = n waits level n's delay in `SCHEDULE_TOPIC_XXXX`.
    pub message_delay_level: String,
    /// Times a consumer group's message is sent back for retry before it goes to
    /// `%DLQ%<group>`, when the send-back request names no limit (RocketMQ's group
    /// `retryMaxTimes`).
    pub retry_max_times: i32,
    /// Longest sleep of the schedule service between two looks at the delay levels (it wakes
    /// sooner when a waiting message is due sooner).
    pub schedule_check_ms: u64,
    /// Serve 5.x timer messages (`TIMER_DELIVER_MS`, `TIMER_DELAY_SEC`, `TIMER_DELAY_MS`;
    /// RocketMQ's `timerWheelEnable`). Off: they are refused with MESSAGE_ILLEGAL.
    pub timer_enable: bool,
    /// Furthest a timer message may be sent into the future (RocketMQ's `timerMaxDelaySec`,
    /// 3 days); further gets MESSAGE_ILLEGAL.
    pub timer_max_delay_ms: u64,
    /// A timer message due later than this after the timer service takes it up is written
    /// again at the timer queue's tail when the window ends ("rolled", RocketMQ's
    /// `timerRollWindowSlot`). Bounds what a restart reads again: the timer queue of the last
    /// window.
    pub timer_roll_window_ms: u64,
    /// Timer messages one shard holds waiting; more get SYSTEM_BUSY until some are delivered
    /// (~16 bytes of memory each).
    pub timer_max_pending: u64,
    /// How long a queue lock of an orderly consumer (LOCK_BATCH_MQ) lasts after its holder's
    /// last lock request (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`).
    pub rebalance_lock_max_live_ms: u64,
    /// Serve SQL92 subscriptions (filter pulls by message properties; RocketMQ's
    /// `enablePropertyFilter`). Off: SQL92 subscriptions are refused.
    pub enable_property_filter: bool,
    /// Refuse transactional (half) messages with NO_PERMISSION (RocketMQ's
    /// `rejectTransactionMessage`).
    pub reject_transaction_message: bool,
    /// How often the transaction check service looks for half messages that have waited
    /// `transaction_timeout_ms` without a commit or rollback (RocketMQ's
    /// `transactionCheckInterval`).
    pub transaction_check_interval_ms: u64,
    /// Age of a half message before its producer group is asked for its state (RocketMQ's
    /// `transactionTimeOut`; a message's `CHECK_IMMUNITY_TIME_IN_SECONDS` may raise it).
    pub transaction_timeout_ms: u64,
    /// Checks of one transaction before its half message is discarded to
    /// `TRANS_CHECK_MAX_TIME_TOPIC` (RocketMQ's `transactionCheckMax`).
    pub transaction_check_max: u32,
    /// Open transactions (half messages without a commit or rollback) one shard holds; more
    /// half messages get SYSTEM_BUSY until some end.
    pub transaction_max_open: u32,
    /// Largest frame accepted from a client (length prefix included).
    pub max_frame_bytes: u32,
    /// Largest message body accepted by a send.
    pub max_message_bytes: u32,
    /// Most messages one SEND_BATCH_MESSAGE may carry; larger batches get MESSAGE_ILLEGAL.
    pub max_batch_messages: u32,
    /// Connections per shard listener beyond which new ones are closed at once.
    pub max_connections: u32,
    /// Parked (long-polling) pulls per shard; beyond it pulls are answered at once.
    pub max_parked_pulls: u32,
    /// A send that finds the CommitLog's unflushed bytes at `store.max_unflushed_bytes` waits
    /// up to this long for the flush to make room (reads of its connection pause meanwhile)
    /// before it is refused with SYSTEM_BUSY; 0 refuses at once. RocketMQ's
    /// `waitTimeMillsInSendQueue` (200 ms) bounds its send queue the same way.
    pub send_busy_wait_ms: u64,
    /// Ceiling of a pull's suspend time.
    pub long_poll_max_ms: u64,
    /// Largest pull response in bytes.
    pub max_pull_bytes: u32,
    pub offset_persist_interval_ms: u64,
    pub register_interval_ms: u64,
    /// Idle connection close (RocketMQ `serverChannelMaxIdleTimeSeconds`).
    pub client_idle_ms: u64,
    /// How often the put and consume rates of the admin views (topicPutTps, consumeTps) are
    /// sampled; each rate is the change over the last interval.
    pub stats_sample_ms: u64,
    /// How long an admin request the broker passes to a client (GET_CONSUMER_RUNNING_INFO,
    /// CONSUME_MESSAGE_DIRECTLY) waits for the client's answer (RocketMQ: 10 s).
    pub client_call_timeout_ms: u64,
    /// POP consumption: messages popped and not yet acknowledged, per shard; a pop that
    /// finds the table full is answered POLLING_FULL (docs/pop.md).
    pub pop_max_inflight: u32,
    /// POP consumption: how often the revive service looks for messages whose invisible
    /// time ended without an ack (they go to the pop retry topic).
    pub pop_revive_interval_ms: u64,
    /// Deliver file-backed pull data with sendfile(2); false forces the copy path.
    pub zero_copy: bool,
    /// Read pull data that is not in the page cache on the blocking thread before sending it,
    /// so that the shard never waits for the disk inside sendfile/pread (see `broker::warm`).
    pub cold_reads_off_shard: bool,
    /// Read coalescing period in microseconds (0: off): a connection whose last read held two
    /// or more requests is read next after a tick of a shard-wide timer of this period (see
    /// `broker::coalesce`).
    pub read_coalesce_us: u64,
    pub region_id: String,
    pub trace_on: bool,
    /// `master` (takes sends, serves slaves on each shard's port + 1) or `slave` (copies a
    /// master's CommitLog, serves pulls, refuses sends). RocketMQ's `brokerRole`.
    pub role: String,
    /// For a master: `async` (acknowledge without waiting for a slave; RocketMQ's
    /// ASYNC_MASTER) or `sync` (acknowledge once a slave has the record; SYNC_MASTER).
    pub replication: String,
    /// RocketMQ's `brokerId`: 0 for a master; a slave's id (0 there means 1).
    pub broker_id: i64,
    /// A slave's master, as the HA address of the master's shard 0 (`host:port`, the master's
    /// `base_port + 1`); shard i connects to that port + 4*i. Empty: the address each shard's
    /// master registered with the name server (RocketMQ's `haMasterAddress`).
    pub ha_master_address: String,
    /// Most CommitLog bytes in one transfer to a slave (RocketMQ's `haTransferBatchSize`).
    pub ha_transfer_batch_bytes: u32,
    /// An idle master sends a slave an empty transfer this often, and a slave reports its
    /// offset at least this often (RocketMQ's `haSendHeartbeatInterval`).
    pub ha_heartbeat_interval_ms: u64,
    /// A replication connection silent this long is closed (RocketMQ's
    /// `haHousekeepingInterval`).
    pub ha_housekeeping_interval_ms: u64,
    /// Under `replication = sync`: how long a send waits for a slave before it is answered
    /// FLUSH_SLAVE_TIMEOUT (stored on the master, not yet confirmed by a slave; RocketMQ's
    /// `syncFlushTimeout`).
    pub replication_timeout_ms: u64,
    /// Under `replication = sync`: a slave further behind than this many bytes does not count,
    /// and sends are answered SLAVE_NOT_AVAILABLE at once (RocketMQ's `haMaxGapNotInSync`).
    pub ha_max_gap_bytes: u64,
    /// A slave copies topics and consumer offsets from its master this often (RocketMQ's
    /// SlaveSynchronize).
    pub slave_sync_interval_ms: u64,
    /// A master answers pulls whose data is no longer in its tail cache with
    /// `suggestWhichBrokerId = 1`, sending such consumers to its slave (RocketMQ's
    /// `slaveReadEnable`).
    pub slave_read_enable: bool,
    /// A slave confirms an offset only once its own flush has written and fdatasync'ed the
    /// records below it (RocketMQ's slave confirms what it appended). With `replication =
    /// sync` on the master, an acknowledged message is then on the slave's disk.
    pub slave_ack_after_flush: bool,
    /// RocketMQ's ACL 1.0 (`aclEnable`): every request must be signed by an account of
    /// `acl_file` (or come from a white-listed address) and hold the permissions its topic and
    /// group need; others are answered SYSTEM_ERROR with the reason (docs/acl.md).
    pub acl_enable: bool,
    /// The accounts file in RocketMQ's `plain_acl.yml` format; empty: `<data_dir>/plain_acl.yml`.
    pub acl_file: String,
    /// How often each shard looks at `acl_file`'s modification time and size, and loads it
    /// again when they changed (0: never; RocketMQ watches it every 500 ms).
    pub acl_reload_interval_ms: u64,
    /// The account this broker signs its own requests to other brokers with (a slave's
    /// copies of its master's topics and offsets), for a master with ACL on. Empty: unsigned
    /// (the master must then white-list the slave's address).
    pub acl_access_key: String,
    pub acl_secret_key: String,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            name: "ramjet".into(),
            cluster: "DefaultCluster".into(),
            listen_ip: "0.0.0.0".into(),
            advertise_ip: String::new(),
            base_port: DEFAULT_BASE_PORT,
            vip_port_enabled: true,
            namesrv_addrs: Vec::new(),
            shards: 0,
            cpus: String::new(),
            data_dir: PathBuf::from("./ramjet-data"),
            auto_create_topic: true,
            default_topic_queue_nums: 8,
            auto_create_subscription_group: true,
            message_delay_level: ramjet_storage::schedule::DEFAULT_DELAY_LEVELS.into(),
            retry_max_times: 16,
            schedule_check_ms: 100,
            timer_enable: true,
            timer_max_delay_ms: 3 * 86_400_000,
            timer_roll_window_ms: 3_600_000,
            timer_max_pending: 4_000_000,
            rebalance_lock_max_live_ms: 60_000,
            enable_property_filter: true,
            reject_transaction_message: false,
            transaction_check_interval_ms: 30_000,
            transaction_timeout_ms: 6_000,
            transaction_check_max: 15,
            transaction_max_open: 262_144,
            max_frame_bytes: 16 * 1024 * 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_batch_messages: 10_000,
            max_connections: 10_000,
            max_parked_pulls: 100_000,
            send_busy_wait_ms: 200,
            long_poll_max_ms: MAX_LONG_POLL_MS,
            max_pull_bytes: 256 * 1024,
            offset_persist_interval_ms: 5_000,
            register_interval_ms: 30_000,
            client_idle_ms: 120_000,
            stats_sample_ms: 10_000,
            client_call_timeout_ms: 10_000,
            pop_max_inflight: 200_000,
            pop_revive_interval_ms: 100,
            zero_copy: true,
            cold_reads_off_shard: true,
            read_coalesce_us: DEFAULT_READ_COALESCE_US,
            region_id: "DefaultRegion".into(),
            trace_on: true,
            role: "master".into(),
            replication: "async".into(),
            broker_id: 0,
            ha_master_address: String::new(),
            ha_transfer_batch_bytes: 256 * 1024,
            ha_heartbeat_interval_ms: 5_000,
            ha_housekeeping_interval_ms: 20_000,
            replication_timeout_ms: 5_000,
            ha_max_gap_bytes: 256 * 1024 * 1024,
            slave_sync_interval_ms: 10_000,
            slave_read_enable: false,
            slave_ack_after_flush: false,
            acl_enable: false,
            acl_file: String::new(),
            acl_reload_interval_ms: 1_000,
            acl_access_key: String::new(),
            acl_secret_key: String::new(),
        }
    }
}

/// `[namesrv]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvSection {
    pub listen: String,
    /// How often brokers that stopped registering are looked for (a broker is dropped when
    /// silent past the `heartbeatTimeoutMillis` it registered with, 120 s for ramjet shards,
    /// or at once when its registration connection closes).
    pub scan_interval_ms: u64,
}

impl Default for NamesrvSection {
    fn default() -> Self {
        Self {
            listen: format!("0.0.0.0:{DEFAULT_NAMESRV_PORT}"),
            scan_interval_ms: 10_000,
        }
    }
}

/// `[store]`: per-shard storage settings (each shard has its own store with these values).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// "async" (ack when in memory) or "sync" (ack after fdatasync; group commit).
    pub flush: String,
    /// "direct" (O_DIRECT) or "buffered" (page cache).
    pub io_mode: String,
    pub segment_size_bytes: u64,
    pub flush_interval_ms: u64,
    pub flush_bytes: u64,
    /// CommitLog bytes appended but not yet written to the file beyond which sends wait for
    /// the flush (`broker.send_busy_wait_ms`) and then get SYSTEM_BUSY.
    pub max_unflushed_bytes: u64,
    pub tail_cache_bytes: u64,
    pub retention_hours: u64,
    pub disk_clean_ratio: f64,
    pub disk_force_clean_ratio: f64,
    pub disk_refuse_ratio: f64,
    pub cq_units_per_file: u32,
    pub index_slots: u32,
    pub index_entries: u32,
    /// Per-pull caps on what one PULL_MESSAGE answer carries, for records still in the tail
    /// cache and for records read from files (RocketMQ: 256 KiB/32 and 64 KiB/8).
    pub max_transfer_bytes_in_memory: u32,
    pub max_transfer_count_in_memory: u32,
    pub max_transfer_bytes_on_disk: u32,
    pub max_transfer_count_on_disk: u32,
    /// Recycled CommitLog write buffers: most bytes kept, and bytes allocated at start-up
    /// (mapped in the background; at most `write_pool_bytes + tail_cache_bytes`, which is the
    /// default when the key is absent: the memory a busy shard holds anyway, taken up front
    /// so that the first fill of the tail cache does not pay for fresh memory, see
    /// `ramjet_storage::StoreConfig::write_pool_preallocate_bytes`).
    pub write_pool_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_pool_preallocate_bytes: Option<u64>,
    /// Transparent huge pages for tables and write buffers (`StoreConfig::huge_pages`).
    pub huge_pages: bool,
    /// Transparent huge pages off for the whole broker process, whatever the host's THP
    /// setting (`StoreConfig::disable_thp`).
    pub disable_thp: bool,
    /// How a new CommitLog segment is prepared: "zero" (written with zeros ahead of use: the
    /// cheapest fdatasync, but every byte reaches the disk twice), "fallocate" (extents
    /// reserved, each byte written once; a durable write converts extents), "none", or
    /// "auto" (the default: "zero" under `flush = sync`, "fallocate" under `flush = async`).
    pub preallocate: String,
    /// `flush = sync`: write the next group while the previous group's fdatasync is in
    /// flight (pipelined group commit, on by default; see
    /// `ramjet_storage::StoreConfig::sync_pipeline`).
    pub sync_pipeline: bool,
    /// Bound on how far ConsumeQueue/IndexFile flushing may trail the CommitLog before it
    /// catches up at full speed (`ramjet_storage::StoreConfig::derived_catch_up_lag_bytes`).
    pub derived_catch_up_lag_bytes: u64,
    /// With `preallocate` "zero" (or "auto" under `flush = sync`): the append rate in bytes
    /// per second above which the next segment's zero fill stops short and the rest of the
    /// segment grows as it is written (0: always zero-fill the whole segment;
    /// `ramjet_storage::StoreConfig::zero_fill_max_append_rate`).
    pub zero_fill_max_append_rate_bytes: u64,
    /// How soon, in microseconds, the CommitLog flusher's I/O completions preempt the shard's
    /// other work (`ramjet_storage::StoreConfig::flusher_latency_us`, 5 ms).
    pub flusher_latency_us: u64,
    /// `flush = sync` with `sync_pipeline`: the most bytes written before an fdatasync
    /// starts; a larger backlog is made durable in parts, the first acknowledged while the
    /// next is written (`ramjet_storage::StoreConfig::sync_group_max_bytes`, 8 MiB).
    pub sync_group_max_bytes: u64,
}

impl StoreSection {
    /// Most write-buffer bytes a shard may allocate up front: its pool plus its tail cache.
    pub fn pool_preallocate_max(&self) -> u64 {
        self.write_pool_bytes.saturating_add(self.tail_cache_bytes)
    }

    /// `write_pool_preallocate_bytes`, or its default (the whole
    /// [`StoreSection::pool_preallocate_max`]) when the key is absent.
    pub fn pool_preallocate_bytes(&self) -> u64 {
        self.write_pool_preallocate_bytes
            .unwrap_or_else(|| self.pool_preallocate_max())
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            flush: "async".into(),
            io_mode: "direct".into(),
            segment_size_bytes: 1 << 30,
            flush_interval_ms: 500,
            flush_bytes: 4 * 1024 * 1024,
            max_unflushed_bytes: 256 * 1024 * 1024,
            tail_cache_bytes: 256 * 1024 * 1024,
            retention_hours: 72,
            disk_clean_ratio: 0.75,
            disk_force_clean_ratio: 0.85,
            disk_refuse_ratio: 0.90,
            cq_units_per_file: 300_000,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
            max_transfer_bytes_in_memory: 256 * 1024,
            max_transfer_count_in_memory: 1024,
            max_transfer_bytes_on_disk: 128 * 1024,
            max_transfer_count_on_disk: 256,
            write_pool_bytes: 128 * 1024 * 1024,
            write_pool_preallocate_bytes: None,
            huge_pages: false,
            disable_thp: false,
            preallocate: "auto".into(),
            sync_pipeline: true,
            derived_catch_up_lag_bytes: 8 << 30,
            zero_fill_max_append_rate_bytes: ramjet_storage::DEFAULT_ZERO_FILL_MAX_APPEND_RATE,
            flusher_latency_us: ramjet_storage::DEFAULT_FLUSHER_LATENCY_US,
            sync_group_max_bytes: ramjet_storage::DEFAULT_SYNC_GROUP_MAX_BYTES,
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// io_uring registered buffer memory per executor (locked memory).
    pub io_memory_bytes: usize,
    pub ring_depth: usize,
    /// Microseconds a shard keeps polling for work before it sleeps in the kernel (0: sleeps
    /// at once). Polling cuts wake-up latency and context switches on a dedicated core.
    pub spin_before_park_us: u64,
    /// Scheduler time slice (microseconds) each shard thread asks the kernel for (Linux >=
    /// 6.12 EEVDF custom slice; 0: the kernel's default). Short slices let helpers on the
    /// shard's CPU (its io_uring fdatasync worker) run without waiting a whole default slice.
    pub shard_slice_us: u64,
    /// Microseconds a shard runs its tasks before it polls its io_uring rings again, when no
    /// latency-sensitive task queue asks for less: file writes and fdatasyncs queued by the
    /// CommitLog flusher go to the kernel only then (1..=100000; the default is glommio's own,
    /// 100000). Shorter helps many concurrent `flush = sync` appenders and costs latency at
    /// moderate rates: see `ramjet_storage::io::DEFAULT_PREEMPT_TIMER`.
    pub preempt_timer_us: u64,
    /// A shard pinned to a CPU moves its io_uring worker threads (the kernel's threads for its
    /// fdatasyncs and most CommitLog writes) to the online CPUs that run no shard, instead of
    /// its own (see `crate::runtime::set_io_worker_cpus` and `crate::runtime::spare_cpus`).
    pub io_workers_off_shard: bool,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            io_memory_bytes: crate::runtime::DEFAULT_IO_MEMORY_BYTES,
            ring_depth: crate::runtime::RING_DEPTH,
            spin_before_park_us: 0,
            shard_slice_us: crate::runtime::DEFAULT_SHARD_SLICE.as_micros() as u64,
            preempt_timer_us: ramjet_storage::io::DEFAULT_PREEMPT_TIMER.as_micros() as u64,
            io_workers_off_shard: true,
        }
    }
}

impl Config {
    /// Reads a TOML file; a missing key takes its default.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let inv = |key, value: String, why| Err(ConfigError::Invalid { key, value, why });
        if !matches!(self.store.flush.as_str(), "sync" | "async") {
            return inv(
                "store.flush",
                self.store.flush.clone(),
                "expected \"sync\" or \"async\"",
            );
        }
        if !matches!(
            self.store.preallocate.as_str(),
            "auto" | "zero" | "fallocate" | "none"
        ) {
            return inv(
                "store.preallocate",
                self.store.preallocate.clone(),
                "expected \"auto\", \"zero\", \"fallocate\" or \"none\"",
            );
        }
        let slice = self.runtime.shard_slice_us;
        let (lo, hi) = (
            crate::runtime::SHARD_SLICE_MIN.as_micros() as u64,
            crate::runtime::SHARD_SLICE_MAX.as_micros() as u64,
        );
        if slice != 0 && !(lo..=hi).contains(&slice) {
            return inv(
                "runtime.shard_slice_us",
                slice.to_string(),
                "expected 0 (the kernel's default) or 100..=100000 (the kernel's bounds)",
            );
        }
        if !(1..=100_000).contains(&self.runtime.preempt_timer_us) {
            return inv(
                "runtime.preempt_timer_us",
                self.runtime.preempt_timer_us.to_string(),
                "expected 1..=100000 (microseconds)",
            );
        }
        if !matches!(self.broker.role.as_str(), "master" | "slave") {
            return inv(
                "broker.role",
                self.broker.role.clone(),
                "expected \"master\" or \"slave\"",
            );
        }
        if !matches!(self.broker.replication.as_str(), "async" | "sync") {
            return inv(
                "broker.replication",
                self.broker.replication.clone(),
                "expected \"async\" or \"sync\"",
            );
        }
        if self.broker.role == "master" && self.broker.broker_id != 0 {
            return inv(
                "broker.broker_id",
                self.broker.broker_id.to_string(),
                "a master's id is 0 (set broker.role = \"slave\" for a slave)",
            );
        }
        if self.broker.broker_id < 0 {
            return inv(
                "broker.broker_id",
                self.broker.broker_id.to_string(),
                "expected 0 or more",
            );
        }
        if !self.broker.ha_master_address.is_empty()
            && self
                .broker
                .ha_master_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return inv(
                "broker.ha_master_address",
                self.broker.ha_master_address.clone(),
                "expected IP:PORT (the master's base_port + 1)",
            );
        }
        if !(4096..=64 * 1024 * 1024).contains(&self.broker.ha_transfer_batch_bytes) {
            return inv(
                "broker.ha_transfer_batch_bytes",
                self.broker.ha_transfer_batch_bytes.to_string(),
                "expected 4096 to 67108864 bytes",
            );
        }
        if self.broker.ha_heartbeat_interval_ms == 0
            || self.broker.ha_housekeeping_interval_ms <= self.broker.ha_heartbeat_interval_ms
        {
            return inv(
                "broker.ha_housekeeping_interval_ms",
                self.broker.ha_housekeeping_interval_ms.to_string(),
                "expected more than broker.ha_heartbeat_interval_ms, which must be above 0",
            );
        }
        if self.broker.replication_timeout_ms == 0 || self.broker.slave_sync_interval_ms == 0 {
            return inv(
                "broker.replication_timeout_ms",
                format!(
                    "{} (slave_sync_interval_ms {})",
                    self.broker.replication_timeout_ms, self.broker.slave_sync_interval_ms
                ),
                "replication_timeout_ms and slave_sync_interval_ms must be above 0",
            );
        }
        if !(100..=3_600_000).contains(&self.broker.stats_sample_ms) {
            return inv(
                "broker.stats_sample_ms",
                self.broker.stats_sample_ms.to_string(),
                "expected 100 to 3600000 ms",
            );
        }
        if !(100..=600_000).contains(&self.broker.client_call_timeout_ms) {
            return inv(
                "broker.client_call_timeout_ms",
                self.broker.client_call_timeout_ms.to_string(),
                "expected 100 to 600000 ms",
            );
        }
        if !(1..=10_000_000).contains(&self.broker.pop_max_inflight) {
            return inv(
                "broker.pop_max_inflight",
                self.broker.pop_max_inflight.to_string(),
                "expected 1 to 10000000 messages",
            );
        }
        if !(10..=60_000).contains(&self.broker.pop_revive_interval_ms) {
            return inv(
                "broker.pop_revive_interval_ms",
                self.broker.pop_revive_interval_ms.to_string(),
                "expected 10 to 60000 ms",
            );
        }
        if self.broker.acl_reload_interval_ms != 0 && self.broker.acl_reload_interval_ms < 10 {
            return inv(
                "broker.acl_reload_interval_ms",
                self.broker.acl_reload_interval_ms.to_string(),
                "expected 0 (never reload) or at least 10 ms",
            );
        }
        if self.broker.acl_access_key.is_empty() != self.broker.acl_secret_key.is_empty() {
            return inv(
                "broker.acl_access_key",
                self.broker.acl_access_key.clone(),
                "acl_access_key and acl_secret_key go together",
            );
        }
        if !matches!(self.store.io_mode.as_str(), "direct" | "buffered") {
            return inv(
                "store.io_mode",
                self.store.io_mode.clone(),
                "expected \"direct\" or \"buffered\"",
            );
        }
        if self.broker.read_coalesce_us > super::coalesce::MAX_READ_COALESCE_US {
            return inv(
                "broker.read_coalesce_us",
                self.broker.read_coalesce_us.to_string(),
                "expected 0 (off) to 10000 microseconds",
            );
        }
        if ramjet_storage::schedule::parse_delay_levels(&self.broker.message_delay_level).is_err() {
            return inv(
                "broker.message_delay_level",
                self.broker.message_delay_level.clone(),
                "expected 1 to 64 delays with a unit (s, m, h or d) separated by spaces, e.g. \"1s 5s 10s 30s 1m\"",
            );
        }
        if self.broker.retry_max_times < 0 {
            return inv(
                "broker.retry_max_times",
                self.broker.retry_max_times.to_string(),
                "must be 0 or more",
            );
        }
        if !(1..=60_000).contains(&self.broker.schedule_check_ms) {
            return inv(
                "broker.schedule_check_ms",
                self.broker.schedule_check_ms.to_string(),
                "expected 1..=60000 (milliseconds)",
            );
        }
        if !(1_000..=365 * 86_400_000).contains(&self.broker.timer_max_delay_ms) {
            return inv(
                "broker.timer_max_delay_ms",
                self.broker.timer_max_delay_ms.to_string(),
                "expected 1000..=31536000000 (milliseconds, at most a year)",
            );
        }
        if !(1_000..=30 * 86_400_000).contains(&self.broker.timer_roll_window_ms) {
            return inv(
                "broker.timer_roll_window_ms",
                self.broker.timer_roll_window_ms.to_string(),
                "expected 1000..=2592000000 (milliseconds, at most 30 days)",
            );
        }
        if !(1..=1_000_000_000).contains(&self.broker.timer_max_pending) {
            return inv(
                "broker.timer_max_pending",
                self.broker.timer_max_pending.to_string(),
                "expected 1..=1000000000",
            );
        }
        if self.broker.rebalance_lock_max_live_ms == 0 {
            return inv(
                "broker.rebalance_lock_max_live_ms",
                "0".into(),
                "must be at least 1 (milliseconds)",
            );
        }
        if !(10..=3_600_000).contains(&self.broker.transaction_check_interval_ms) {
            return inv(
                "broker.transaction_check_interval_ms",
                self.broker.transaction_check_interval_ms.to_string(),
                "expected 10..=3600000 (milliseconds)",
            );
        }
        if self.broker.transaction_timeout_ms == 0 {
            return inv(
                "broker.transaction_timeout_ms",
                "0".into(),
                "must be at least 1 (milliseconds)",
            );
        }
        if self.broker.transaction_max_open == 0 {
            return inv(
                "broker.transaction_max_open",
                "0".into(),
                "must be at least 1 (set reject_transaction_message to refuse transactions)",
            );
        }
        if self.broker.max_frame_bytes < 1024 {
            return inv(
                "broker.max_frame_bytes",
                self.broker.max_frame_bytes.to_string(),
                "must be at least 1024",
            );
        }
        if self.broker.max_message_bytes >= self.broker.max_frame_bytes {
            return inv(
                "broker.max_message_bytes",
                self.broker.max_message_bytes.to_string(),
                "must be below broker.max_frame_bytes",
            );
        }
        for (key, v) in [
            (
                "store.max_transfer_bytes_in_memory",
                self.store.max_transfer_bytes_in_memory,
            ),
            (
                "store.max_transfer_count_in_memory",
                self.store.max_transfer_count_in_memory,
            ),
            (
                "store.max_transfer_bytes_on_disk",
                self.store.max_transfer_bytes_on_disk,
            ),
            (
                "store.max_transfer_count_on_disk",
                self.store.max_transfer_count_on_disk,
            ),
        ] {
            if v == 0 {
                return inv(key, v.to_string(), "must be at least 1");
            }
        }
        for (key, v, range, why) in [
            (
                "store.flusher_latency_us",
                self.store.flusher_latency_us,
                ramjet_storage::MIN_FLUSHER_LATENCY_US..=ramjet_storage::MAX_FLUSHER_LATENCY_US,
                "must be within 50..=100000 (microseconds)",
            ),
            (
                "store.sync_group_max_bytes",
                self.store.sync_group_max_bytes,
                ramjet_storage::MIN_SYNC_GROUP_MAX_BYTES..=ramjet_storage::MAX_SYNC_GROUP_MAX_BYTES,
                "must be within 4096..=1099511627776 (bytes)",
            ),
        ] {
            if !range.contains(&v) {
                return inv(key, v.to_string(), why);
            }
        }
        // The messages name the bounds.
        const _: () = assert!(
            ramjet_storage::MIN_SYNC_GROUP_MAX_BYTES == 4096
                && ramjet_storage::MAX_SYNC_GROUP_MAX_BYTES == 1 << 40
        );
        const _: () = assert!(
            ramjet_storage::MIN_FLUSHER_LATENCY_US == 50
                && ramjet_storage::MAX_FLUSHER_LATENCY_US == 100_000
        );
        if let Some(pre) = self.store.write_pool_preallocate_bytes {
            if pre > self.store.pool_preallocate_max() {
                return inv(
                    "store.write_pool_preallocate_bytes",
                    pre.to_string(),
                    "must not exceed store.write_pool_bytes + store.tail_cache_bytes",
                );
            }
        }
        if self.broker.name.is_empty() || self.broker.name.len() > 100 {
            return inv(
                "broker.name",
                self.broker.name.clone(),
                "1 to 100 characters",
            );
        }
        if self.broker.listen_ip.parse::<std::net::IpAddr>().is_err() {
            return inv(
                "broker.listen_ip",
                self.broker.listen_ip.clone(),
                "not an IP address",
            );
        }
        if !self.broker.advertise_ip.is_empty()
            && self
                .broker
                .advertise_ip
                .parse::<std::net::IpAddr>()
                .is_err()
        {
            return inv(
                "broker.advertise_ip",
                self.broker.advertise_ip.clone(),
                "not an IP address",
            );
        }
        Ok(())
    }

    /// The address clients are told to use.
    pub fn advertise_ip(&self) -> std::net::IpAddr {
        use std::net::{IpAddr, Ipv4Addr};
        if let Ok(ip) = self.broker.advertise_ip.parse::<IpAddr>() {
            return ip;
        }
        match self.broker.listen_ip.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Main port of shard `i`.
    /// The ACL accounts file (`broker.acl_file`, else `<data_dir>/plain_acl.yml`).
    pub fn acl_file(&self) -> PathBuf {
        if self.broker.acl_file.is_empty() {
            self.broker.data_dir.join("plain_acl.yml")
        } else {
            PathBuf::from(&self.broker.acl_file)
        }
    }

    /// Whether this broker is a slave (`broker.role = "slave"`).
    pub fn is_slave(&self) -> bool {
        self.broker.role == "slave"
    }

    /// The id registered with the name servers: 0 for a master, `broker_id` (at least 1) for
    /// a slave.
    pub fn broker_id(&self) -> i64 {
        if self.is_slave() {
            self.broker.broker_id.max(1)
        } else {
            0
        }
    }

    pub fn shard_port(&self, i: usize) -> Result<u16, ConfigError> {
        let port = self.broker.base_port as usize + SHARD_PORT_STEP as usize * i;
        u16::try_from(port).map_err(|_| ConfigError::Invalid {
            key: "broker.base_port",
            value: self.broker.base_port.to_string(),
            why: "base_port + 4 * shard index exceeds 65535",
        })
    }
}

/// Parses `host:port;host:port` (RocketMQ's namesrvAddr form; `,` also accepted).
pub fn parse_namesrv_list(text: &str) -> Vec<String> {
    text.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.broker.base_port, 10911);
        assert_eq!(c.broker.data_dir, PathBuf::from("./ramjet-data"));
        assert_eq!(c.store.flush, "async");
        assert_eq!(c.namesrv.listen, "0.0.0.0:9876");
        c.validate().unwrap();
    }

    #[test]
    fn keys_override_and_unknown_keys_fail() {
        let c =
            Config::parse("[broker]\nbase_port = 20000\nshards = 2\n[store]\nflush = \"sync\"\n")
                .unwrap();
        assert_eq!(c.broker.base_port, 20000);
        assert_eq!(c.broker.shards, 2);
        assert_eq!(c.shard_port(1).unwrap(), 20004);
        assert_eq!(c.store.flush, "sync");
        assert!(Config::parse("[broker]\nbase_prot = 1\n").is_err());
    }

    #[test]
    fn validate_rejects_bad_values() {
        type Breaks = fn(&mut Config);
        let bad_ha: [(&str, Breaks); 6] = [
            ("broker.role", |c| c.broker.role = "primary".into()),
            ("broker.replication", |c| {
                c.broker.replication = "semi".into()
            }),
            ("broker.broker_id", |c| c.broker.broker_id = 1),
            ("broker.ha_master_address", |c| {
                c.broker.role = "slave".into();
                c.broker.ha_master_address = "master:10912".into();
            }),
            ("broker.ha_transfer_batch_bytes", |c| {
                c.broker.ha_transfer_batch_bytes = 100
            }),
            ("broker.ha_housekeeping_interval_ms", |c| {
                c.broker.ha_housekeeping_interval_ms = c.broker.ha_heartbeat_interval_ms
            }),
        ];
        for (key, set) in bad_ha {
            let mut c = Config::default();
            set(&mut c);
            assert!(
                matches!(c.validate(), Err(ConfigError::Invalid { key: k, .. }) if k == key),
                "{key}: {:?}",
                c.validate()
            );
        }
        let mut slave = Config::default();
        slave.broker.role = "slave".into();
        slave.broker.ha_master_address = "10.0.0.5:10912".into();
        assert!(slave.validate().is_ok());
        assert_eq!((slave.is_slave(), slave.broker_id()), (true, 1));
        assert_eq!(Config::default().broker_id(), 0);
        for bad in [0, 4095, (1 << 40) + 1] {
            let mut c = Config::default();
            c.store.sync_group_max_bytes = bad;
            assert!(
                matches!(
                    c.validate(),
                    Err(ConfigError::Invalid {
                        key: "store.sync_group_max_bytes",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        for bad in [0, 49, 100_001] {
            let mut c = Config::default();
            c.store.flusher_latency_us = bad;
            assert!(
                matches!(
                    c.validate(),
                    Err(ConfigError::Invalid {
                        key: "store.flusher_latency_us",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        let mut c = Config::default();
        c.store.flush = "sometimes".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "store.flush",
                ..
            })
        ));
        let mut c = Config::default();
        c.store.preallocate = "lazily".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "store.preallocate",
                ..
            })
        ));
        for bad in [50, 200_000] {
            let mut c = Config::default();
            c.runtime.shard_slice_us = bad;
            assert!(matches!(
                c.validate(),
                Err(ConfigError::Invalid {
                    key: "runtime.shard_slice_us",
                    ..
                })
            ));
        }
        let mut c = Config::default();
        c.runtime.shard_slice_us = 0;
        c.validate().unwrap();
        for bad in [0, 100_001] {
            let mut c = Config::default();
            c.runtime.preempt_timer_us = bad;
            assert!(matches!(
                c.validate(),
                Err(ConfigError::Invalid {
                    key: "runtime.preempt_timer_us",
                    ..
                })
            ));
        }
        assert!(Config::default().runtime.io_workers_off_shard);
        let c = Config::parse("[runtime]\nio_workers_off_shard = false\n").unwrap();
        assert!(!c.runtime.io_workers_off_shard);
        let c = Config::parse("[runtime]\npreempt_timer_us = 1000\n").unwrap();
        assert_eq!(c.runtime.preempt_timer_us, 1000);
        c.validate().unwrap();
        let mut c = Config::default();
        c.broker.read_coalesce_us = 10_001;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "broker.read_coalesce_us",
                ..
            })
        ));
        for ok in [0, 10_000] {
            let mut c = Config::default();
            c.broker.read_coalesce_us = ok;
            c.validate().unwrap();
        }
        let mut c = Config::default();
        c.broker.base_port = 65530;
        assert!(c.shard_port(2).is_err());
        let mut c = Config::default();
        c.store.max_transfer_count_on_disk = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "store.max_transfer_count_on_disk",
                ..
            })
        ));
        let mut c = Config::default();
        c.store.write_pool_preallocate_bytes =
            Some(c.store.write_pool_bytes + c.store.tail_cache_bytes + 1);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "store.write_pool_preallocate_bytes",
                ..
            })
        ));
        // The keys reach the store.
        let mut c = Config::default();
        c.store.max_transfer_count_in_memory = 77;
        c.store.write_pool_bytes = 8 << 20;
        c.store.tail_cache_bytes = 2 << 20;
        c.store.derived_catch_up_lag_bytes = 123 << 20;
        c.store.zero_fill_max_append_rate_bytes = 77 << 20;
        c.store.flusher_latency_us = 750;
        c.store.sync_group_max_bytes = 3 << 20;
        assert!(!crate::broker::shard::store_config(&c, "/tmp/x".into()).disable_thp);
        c.store.disable_thp = true;
        let sc = crate::broker::shard::store_config(&c, "/tmp/x".into());
        assert!(sc.disable_thp);
        assert_eq!(sc.sync_group_max_bytes, 3 << 20);
        assert_eq!(sc.derived_catch_up_lag_bytes, 123 << 20);
        assert_eq!(sc.zero_fill_max_append_rate, 77 << 20);
        assert_eq!(sc.flusher_latency_us, 750);
        assert_eq!(sc.max_transfer_count_in_memory, 77);
        assert_eq!(sc.write_pool_bytes, 8 << 20);
        // Absent, the preallocation covers the pool and the tail cache; set, it is taken.
        assert_eq!(sc.write_pool_preallocate_bytes, 10 << 20);
        sc.validate().expect("the default preallocation is valid");
        c.store.write_pool_preallocate_bytes = Some(3 << 20);
        let sc = crate::broker::shard::store_config(&c, "/tmp/x".into());
        assert_eq!(sc.write_pool_preallocate_bytes, 3 << 20);
    }

    #[test]
    fn preallocate_auto_follows_the_flush_mode() {
        use ramjet_storage::Preallocate;
        let resolved = |flush: &str, pre: &str| {
            let mut c = Config::default();
            c.store.flush = flush.into();
            c.store.preallocate = pre.into();
            assert!(c.validate().is_ok(), "{flush}/{pre}");
            crate::broker::shard::store_config(&c, "/tmp/x".into()).preallocate
        };
        assert_eq!(Config::default().store.preallocate, "auto");
        assert_eq!(resolved("sync", "auto"), Preallocate::Zero);
        assert_eq!(resolved("async", "auto"), Preallocate::Fallocate);
        assert_eq!(resolved("async", "zero"), Preallocate::Zero);
        assert_eq!(resolved("sync", "fallocate"), Preallocate::Fallocate);
        assert_eq!(resolved("sync", "none"), Preallocate::None);
    }

    #[test]
    fn namesrv_list_splits() {
        assert_eq!(
            parse_namesrv_list("a:1;b:2, c:3"),
            vec!["a:1", "b:2", "c:3"]
        );
        assert!(parse_namesrv_list(" ; ").is_empty());
    }
}
