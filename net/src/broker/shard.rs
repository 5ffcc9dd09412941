//! One shard = one logical broker (`<name>-s<i>`): its store, topics, offsets, clients and
//! long polling, its listeners (main port and VIP port), and its background loops
//! (registration with the name servers, offset persistence, client expiry). Everything here
//! runs on the shard's own executor and shares nothing with other shards.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::remoting::{CodecLimits, CommandView, RequestCode, ResponseCode};
use ramjet_storage::{FlushMode, IoMode, Preallocate, Store, StoreConfig};

use super::clients::ClientRegistry;
use super::config::{Config, VIP_PORT_OFFSET};
use super::conn::{serve_listener, Conn, ConnOptions, ListenerStats, Service};
use super::delivery::DeliveryCounters;
use super::longpoll::LongPollRegistry;
use super::offsets::OffsetStore;
use super::register::Registrar;
use super::topics::TopicManager;
use crate::runtime::{self, Listener};

/// Errors starting a shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error("shard {shard}: cannot create {path}: {source}")]
    Dir {
        shard: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("shard {shard}: cannot open the store in {path}: {source}")]
    Store {
        shard: usize,
        path: PathBuf,
        source: ramjet_storage::StoreError,
    },
    #[error("shard {shard}: {source}")]
    Topics {
        shard: usize,
        source: super::topics::TopicError,
    },
    #[error("shard {shard}: {source}")]
    Groups {
        shard: usize,
        source: super::groups::GroupError,
    },
    #[error("shard {shard}: {source}")]
    Offsets {
        shard: usize,
        source: super::offsets::OffsetsError,
    },
    #[error("shard {shard}: {source}")]
    Schedule {
        shard: usize,
        source: super::schedule::ScheduleError,
    },
    #[error("shard {shard}: {source}")]
    Transactions {
        shard: usize,
        source: super::transaction::TransactionError,
    },
    #[error("shard {shard}: {source}")]
    Modes {
        shard: usize,
        source: super::assignment::ModesError,
    },
    #[error("shard {shard}: broker.acl_enable is on, but {message} (the format: docs/acl.md; or set broker.acl_file)")]
    Acl { shard: usize, message: String },
    #[error("shard {shard}: cannot listen on {addr}: {message} (is another broker running? change broker.base_port)")]
    Bind {
        shard: usize,
        addr: String,
        message: String,
    },
}

/// Counters of one shard (GET_BROKER_RUNTIME_INFO).
#[derive(Default, Debug)]
pub struct ShardCounters {
    pub msgs_put: Cell<u64>,
    pub msgs_put_failed: Cell<u64>,
    /// Sends that found the store busy and waited for flush room (`broker.send_busy_wait_ms`).
    pub sends_held: Cell<u64>,
    pub msgs_got: Cell<u64>,
    pub pulls: Cell<u64>,
    pub pulls_found: Cell<u64>,
    pub bytes_pulled: Cell<u64>,
    pub not_supported: Cell<u64>,
    /// Replies (SEND_REPLY_MESSAGE) pushed to their requester, and those that were not.
    pub replies_pushed: Cell<u64>,
    pub replies_unpushed: Cell<u64>,
}

impl ShardCounters {
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

/// One shard's broker state.
pub struct Broker {
    pub index: usize,
    pub broker_name: String,
    pub cluster: String,
    /// Address clients use (store host of records, registered with the name servers).
    pub addr: SocketAddr,
    pub cfg: Rc<Config>,
    pub store: Store,
    pub topics: TopicManager,
    pub offsets: OffsetStore,
    /// Queue locks of orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ).
    pub locks: super::locks::QueueLocks,
    /// Delayed messages and their delivery (`SCHEDULE_TOPIC_XXXX`).
    pub schedule: super::schedule::Scheduler,
    pub timer: super::timer::TimerWheel,
    /// Subscription groups and their consume settings.
    pub groups: super::groups::Groups,
    /// Sampled put and consume rates of the admin views.
    pub stats: super::stats::Rates,
    /// Open transactions (half messages) and their check service's state.
    pub transactions: super::transaction::Transactions,
    pub longpoll: LongPollRegistry,
    /// POP consumption's in-flight messages and counters.
    pub pop: super::pop::PopState,
    /// Each (topic, group)'s PULL or POP mode (SET_MESSAGE_REQUEST_MODE).
    pub request_modes: super::assignment::RequestModes,
    /// A client of the name servers, made on first use (QUERY_ASSIGNMENT needs the routes).
    route_client: std::cell::OnceCell<crate::client::Client>,
    pub clients: ClientRegistry,
    pub counters: ShardCounters,
    pub delivery: Rc<DeliveryCounters>,
    pub listeners: Rc<ListenerStats>,
    /// The read tick of this shard's connections (`broker.read_coalesce_us`; `None`: off).
    pub read_coalesce: Option<Rc<super::coalesce::ReadCoalescer>>,
    pub registrar: Registrar,
    pub boot_ms: i64,
    /// Round-robin cursor for sends with queueId < 0.
    pub(crate) rr_queue: Cell<u32>,
    /// Answers to single-message sends waiting for their fdatasync (`flush = sync`) and/or a
    /// slave (`replication = sync`).
    pub sync_acks: super::syncack::SyncAcks,
    /// Master/slave replication of this shard.
    pub ha: Rc<super::ha::Replication>,
    /// The ACL every request passes (`broker.acl_enable`).
    pub acl: Option<super::acl::Acl>,
    /// Rate limit of the "send refused: disk full" warning (a full disk refuses every send;
    /// a line per send would flood the log at the send rate).
    pub(crate) disk_full_warn: ramjet_core::ratelog::LogEvery,
    /// Itself, for handlers that continue in a task of their own.
    me: std::rc::Weak<Broker>,
}

/// Ports a running shard listens on.
#[derive(Debug, Clone)]
pub struct ShardPorts {
    pub index: usize,
    pub broker_name: String,
    pub main: SocketAddr,
    pub vip: Option<SocketAddr>,
    /// A master's replication listener (port + 1).
    pub ha: Option<SocketAddr>,
    pub data_dir: PathBuf,
}

pub(crate) fn store_config(cfg: &Config, dir: PathBuf) -> StoreConfig {
    let s = &cfg.store;
    // A slave that confirms only what it fdatasync'ed waits for every flush like a sync
    // store: it gets the pipelined group commit and zero-filled segments (measured in session
    // 31: 400k against 320-330k msg/s through the master, p50 0.67 against 1.09 ms at 50k/s).
    let sync = s.flush == "sync" || (cfg.is_slave() && cfg.broker.slave_ack_after_flush);
    StoreConfig {
        dir,
        segment_size_bytes: s.segment_size_bytes,
        flush: if sync {
            FlushMode::Sync
        } else {
            FlushMode::Async
        },
        io_mode: if s.io_mode == "buffered" {
            IoMode::Buffered
        } else {
            IoMode::Direct
        },
        flush_interval_ms: s.flush_interval_ms,
        flush_bytes: s.flush_bytes,
        max_unflushed_bytes: s.max_unflushed_bytes,
        tail_cache_bytes: s.tail_cache_bytes,
        max_message_bytes: cfg.broker.max_message_bytes as usize,
        retention_hours: s.retention_hours,
        disk_clean_ratio: s.disk_clean_ratio,
        disk_force_clean_ratio: s.disk_force_clean_ratio,
        disk_refuse_ratio: s.disk_refuse_ratio,
        cq_units_per_file: s.cq_units_per_file,
        index_slots: s.index_slots,
        index_entries: s.index_entries,
        max_transfer_bytes_in_memory: s.max_transfer_bytes_in_memory,
        max_transfer_count_in_memory: s.max_transfer_count_in_memory,
        max_transfer_bytes_on_disk: s.max_transfer_bytes_on_disk,
        max_transfer_count_on_disk: s.max_transfer_count_on_disk,
        write_pool_bytes: s.write_pool_bytes,
        write_pool_preallocate_bytes: s.pool_preallocate_bytes(),
        huge_pages: s.huge_pages,
        disable_thp: s.disable_thp,
        sync_pipeline: s.sync_pipeline,
        derived_catch_up_lag_bytes: s.derived_catch_up_lag_bytes,
        zero_fill_max_append_rate: s.zero_fill_max_append_rate_bytes,
        flusher_latency_us: s.flusher_latency_us,
        sync_group_max_bytes: s.sync_group_max_bytes,
        // Checked by `Config::validate`; the default stays if it somehow does not parse.
        delay_levels_ms: ramjet_storage::schedule::parse_delay_levels(
            &cfg.broker.message_delay_level,
        )
        .unwrap_or_else(|_| StoreConfig::default().delay_levels_ms),
        preallocate: match Preallocate::from_name(&s.preallocate) {
            Some(p) => p,
            // "auto": zeros where a sync append waits for the fdatasync (no extent conversion
            // on the acknowledgement path), extents reserved where nobody waits for it (each
            // byte reaches the disk once instead of twice).
            None if sync => Preallocate::Zero,
            None => Preallocate::Fallocate,
        },
        ..StoreConfig::default()
    }
}

fn bind(shard: usize, ip: &str, port: u16) -> Result<(Listener, SocketAddr), ShardError> {
    let addr = format!("{ip}:{port}");
    let l = runtime::bind_listener(addr.as_str()).map_err(|e| ShardError::Bind {
        shard,
        addr: addr.clone(),
        message: e.to_string(),
    })?;
    let local = l.listener.local_addr().map_err(|e| ShardError::Bind {
        shard,
        addr,
        message: e.to_string(),
    })?;
    Ok((l, local))
}

impl Broker {
    /// Opens shard `index`'s state and binds its listeners (not yet serving).
    pub async fn open(
        cfg: Rc<Config>,
        index: usize,
    ) -> Result<(Rc<Broker>, Vec<Listener>, ShardPorts), ShardError> {
        let dir = cfg.broker.data_dir.join(format!("shard-{index}"));
        let config_dir = dir.join("config");
        std::fs::create_dir_all(&config_dir).map_err(|source| ShardError::Dir {
            shard: index,
            path: config_dir.clone(),
            source,
        })?;
        let port = cfg.shard_port(index)?;
        let (main_l, main_addr) = bind(index, &cfg.broker.listen_ip, port)?;
        let mut listeners = vec![main_l];
        let mut vip = None;
        if cfg.broker.vip_port_enabled && port > VIP_PORT_OFFSET {
            let (l, a) = bind(index, &cfg.broker.listen_ip, port - VIP_PORT_OFFSET)?;
            listeners.push(l);
            vip = Some(a);
        }
        let store = Store::open(store_config(&cfg, dir.clone()))
            .await
            .map_err(|source| ShardError::Store {
                shard: index,
                path: dir.clone(),
                source,
            })?;
        let topics = TopicManager::open(
            &config_dir,
            cfg.broker.auto_create_topic,
            cfg.broker.default_topic_queue_nums,
            &super::reply::reply_topic(&cfg.broker.cluster),
        )
        .map_err(|source| ShardError::Topics {
            shard: index,
            source,
        })?;
        let groups = super::groups::Groups::open(
            &config_dir,
            cfg.broker.auto_create_subscription_group,
            cfg.broker.retry_max_times,
        )
        .map_err(|source| ShardError::Groups {
            shard: index,
            source,
        })?;
        let offsets = OffsetStore::open(&config_dir).map_err(|source| ShardError::Offsets {
            shard: index,
            source,
        })?;
        let schedule = super::schedule::Scheduler::open(
            &config_dir,
            store.config().delay_levels_ms.clone(),
            store.end_offset(),
        )
        .map_err(|source| ShardError::Schedule {
            shard: index,
            source,
        })?;
        let timer = super::timer::TimerWheel::open(
            &config_dir,
            cfg.broker.timer_roll_window_ms,
            store.end_offset(),
        )
        .map_err(|source| ShardError::Schedule {
            shard: index,
            source,
        })?;
        let transactions =
            super::transaction::Transactions::new(cfg.broker.transaction_max_open as usize);
        transactions
            .recover(&store, &offsets, index)
            .await
            .map_err(|source| ShardError::Transactions {
                shard: index,
                source,
            })?;
        let request_modes =
            super::assignment::RequestModes::open(&config_dir).map_err(|source| {
                ShardError::Modes {
                    shard: index,
                    source,
                }
            })?;
        let longpoll = LongPollRegistry::new(cfg.broker.max_parked_pulls as usize);
        let lp = longpoll.clone();
        let ha = Rc::new(super::ha::Replication::new(
            cfg.is_slave(),
            cfg.broker.replication == "sync",
        ));
        let ha2 = ha.clone();
        store.set_arrival_listener(Box::new(move |topic, queue, max| {
            lp.notify_arrival(topic, queue, max);
            ha2.data_appended();
        }));
        // A master serves its slaves on its port + 1 (RocketMQ's haListenPort).
        let mut ha_addr = None;
        if !cfg.is_slave() {
            let (l, a) = bind(index, &cfg.broker.listen_ip, port.saturating_add(1))?;
            listeners.push(l);
            ha_addr = Some(a);
        }
        let acl = if cfg.broker.acl_enable {
            Some(
                super::acl::Acl::open(cfg.acl_file()).map_err(|message| ShardError::Acl {
                    shard: index,
                    message,
                })?,
            )
        } else {
            None
        };
        let broker_name = format!("{}-s{index}", cfg.broker.name);
        let addr = SocketAddr::new(cfg.advertise_ip(), main_addr.port());
        let registrar = Registrar::new(cfg.broker.namesrv_addrs.clone());
        let broker = Rc::new_cyclic(|me| Broker {
            index,
            broker_name: broker_name.clone(),
            cluster: cfg.broker.cluster.clone(),
            addr,
            cfg: cfg.clone(),
            store,
            topics,
            offsets,
            locks: super::locks::QueueLocks::default(),
            schedule,
            timer,
            groups,
            stats: super::stats::Rates::default(),
            transactions,
            longpoll,
            pop: super::pop::PopState::new(cfg.broker.pop_max_inflight as usize),
            request_modes,
            route_client: std::cell::OnceCell::new(),
            clients: ClientRegistry::default(),
            counters: ShardCounters::default(),
            delivery: Rc::new(DeliveryCounters::default()),
            listeners: Rc::new(ListenerStats::default()),
            read_coalesce: (cfg.broker.read_coalesce_us > 0).then(|| {
                super::coalesce::ReadCoalescer::new(Duration::from_micros(
                    cfg.broker.read_coalesce_us,
                ))
            }),
            registrar,
            boot_ms: super::namesrv_host::now_ms(),
            rr_queue: Cell::new(0),
            sync_acks: super::syncack::SyncAcks::default(),
            ha,
            acl,
            disk_full_warn: ramjet_core::ratelog::LogEvery::default(),
            me: me.clone(),
        });
        let ports = ShardPorts {
            index,
            broker_name,
            main: main_addr,
            vip,
            ha: ha_addr,
            data_dir: dir,
        };
        Ok((broker, listeners, ports))
    }

    /// The shard's client of the name servers (created on first use).
    pub fn route_client(&self) -> Result<&crate::client::Client, crate::client::ClientError> {
        if let Some(c) = self.route_client.get() {
            return Ok(c);
        }
        if self.cfg.broker.namesrv_addrs.is_empty() {
            return Err(crate::client::ClientError::Invalid(
                "this broker knows no name server (broker.namesrv_addrs)".into(),
            ));
        }
        let cfg = crate::client::ClientConfig::new(&self.cfg.broker.namesrv_addrs.join(";"))?;
        Ok(self
            .route_client
            .get_or_init(|| crate::client::Client::new(cfg)))
    }

    /// An owning handle to this broker (for tasks spawned by handlers).
    pub fn rc(&self) -> Option<Rc<Broker>> {
        self.me.upgrade()
    }

    pub fn conn_options(&self) -> ConnOptions {
        let b = &self.cfg.broker;
        ConnOptions {
            limits: CodecLimits {
                max_frame_bytes: b.max_frame_bytes as usize,
                // Bodies: a message or batch plus room for a batch's per-message overhead.
                max_body_bytes: b.max_frame_bytes as usize,
                max_batch_count: b.max_batch_messages as usize,
            },
            max_connections: b.max_connections,
            idle_timeout: Duration::from_millis(b.client_idle_ms),
            zero_copy: b.zero_copy,
            cold_reads_off_shard: b.cold_reads_off_shard,
            read_coalesce: self.read_coalesce.clone(),
        }
    }

    /// Serves the listeners and runs the background loops until `stop()` is true, then shuts
    /// the shard down (offsets and topics persisted, store flushed and closed).
    pub async fn run(self: Rc<Self>, listeners: Vec<Listener>, stop: Rc<dyn Fn() -> bool>) {
        let next_id = Rc::new(Cell::new(1u64));
        let mut tasks = Vec::new();
        let fds: Vec<_> = listeners.iter().map(Listener::fd).collect();
        let mut listeners = listeners;
        if !self.ha.is_slave() {
            // Bound last in `open`.
            if let Some(ha) = listeners.pop() {
                tasks.push(runtime::spawn_task(super::ha::master::serve(
                    self.clone(),
                    ha.listener,
                )));
            }
        }
        for l in listeners {
            let svc: Rc<dyn Service> = self.clone();
            tasks.push(runtime::spawn_task(serve_listener(
                l.listener,
                svc,
                self.conn_options(),
                self.listeners.clone(),
                self.delivery.clone(),
                next_id.clone(),
            )));
        }
        if let Some(c) = &self.read_coalesce {
            tasks.push(runtime::spawn_task(c.clone().run()));
        }
        if self.ha.is_slave() {
            // A slave writes only what its master sends: no delayed deliveries, no
            // transaction checks of its own.
            tasks.push(runtime::spawn_task(super::ha::slave::run(self.clone())));
            tasks.push(runtime::spawn_task(super::ha::sync::run(self.clone())));
        } else {
            tasks.push(runtime::spawn_task(super::schedule::run(self.clone())));
            tasks.push(runtime::spawn_task(super::timer::run(self.clone())));
            tasks.push(runtime::spawn_task(super::transaction::run(self.clone())));
            tasks.push(runtime::spawn_task(super::pop::run(self.clone())));
        }
        let reg = runtime::spawn_task(super::register::registration_loop(self.clone()));
        let tick = Duration::from_millis(100);
        let persist_every =
            Duration::from_millis(self.cfg.broker.offset_persist_interval_ms.max(100));
        let scan_every = Duration::from_secs(10);
        let sample_every = Duration::from_millis(self.cfg.broker.stats_sample_ms);
        let mut since_sample = Duration::ZERO;
        self.stats.sample(&self);
        let acl_every = Duration::from_millis(self.cfg.broker.acl_reload_interval_ms);
        let (mut since_persist, mut since_scan) = (Duration::ZERO, Duration::ZERO);
        let mut since_acl = Duration::ZERO;
        while !stop() {
            runtime::sleep(tick).await;
            since_persist += tick;
            since_scan += tick;
            since_acl += tick;
            since_sample += tick;
            if since_sample >= sample_every {
                since_sample = Duration::ZERO;
                self.stats.sample(&self);
            }
            if let Some(acl) = &self.acl {
                if !acl_every.is_zero() && since_acl >= acl_every {
                    since_acl = Duration::ZERO;
                    acl.reload_if_changed();
                }
            }
            if since_persist >= persist_every {
                since_persist = Duration::ZERO;
                self.transactions.persist(&self).await;
                if let Err(e) = self.offsets.persist_if_dirty().await {
                    tracing::error!(shard = self.index, error = %e, "persisting consumer offsets failed");
                }
                if let Err(e) = self.groups.persist_if_dirty() {
                    tracing::error!(shard = self.index, error = %e, "writing subscription groups failed");
                }
            }
            if since_scan >= scan_every {
                since_scan = Duration::ZERO;
                let idle = Duration::from_millis(self.cfg.broker.client_idle_ms);
                super::clients::expire_clients(&self, idle);
                self.locks.sweep(
                    Duration::from_millis(self.cfg.broker.rebalance_lock_max_live_ms),
                    std::time::Instant::now(),
                );
            }
        }
        // Free the ports first (the tasks still own the descriptors), then stop accepting.
        for fd in fds {
            runtime::shutdown_listener(fd);
        }
        for t in tasks {
            t.cancel();
        }
        reg.cancel();
        self.shutdown().await;
    }

    /// Persists offsets and topics, unregisters, and closes the store.
    pub async fn shutdown(&self) {
        self.ha.close();
        self.transactions.persist(self).await;
        if let Err(e) = self.offsets.persist() {
            tracing::error!(shard = self.index, error = %e, "persisting consumer offsets at shutdown failed");
        }
        if let Err(e) = self.groups.persist_if_dirty() {
            tracing::error!(shard = self.index, error = %e, "writing subscription groups at shutdown failed");
        }
        if let Err(e) = self.topics.persist() {
            tracing::error!(shard = self.index, error = %e, "persisting topics at shutdown failed");
        }
        super::register::unregister_all(self).await;
        if let Err(e) = self.schedule.persist(self).await {
            tracing::error!(shard = self.index, error = %e, "persisting delay offsets at shutdown failed");
        }
        if !self.ha.is_slave() {
            if let Err(e) = self.timer.persist(self).await {
                tracing::error!(shard = self.index, error = %e, "writing the timer checkpoint at shutdown failed");
            }
        }
        if let Err(e) = self.store.shutdown().await {
            tracing::error!(shard = self.index, error = %e, "store shutdown failed");
        }
    }

    /// Answers a request code this broker does not serve.
    pub fn not_supported(&self, conn: &Conn, req: &CommandView<'_>) {
        let remark = format!(" request type {} not supported", req.code);
        self.not_supported_with(conn, req, &remark);
    }

    /// [`Self::not_supported`] with a remark that says what to do instead.
    pub fn not_supported_with(&self, conn: &Conn, req: &CommandView<'_>, remark: &str) {
        ShardCounters::add(&self.counters.not_supported, 1);
        conn.respond_error(req, ResponseCode::REQUEST_CODE_NOT_SUPPORTED, remark);
    }
}

impl Service for Broker {
    fn handle(&self, conn: &Rc<Conn>, req: &CommandView<'_>) {
        if let Some(acl) = &self.acl {
            if let Err(why) = acl.check(conn.peer().ip(), req) {
                // What a 4.x broker answers (its RPC hook throws AclException).
                conn.respond_error(
                    req,
                    ResponseCode::SYSTEM_ERROR,
                    &format!("AclException: {why}"),
                );
                return;
            }
        }
        if self.ha.is_slave()
            && matches!(
                req.code,
                RequestCode::SEND_MESSAGE
                    | RequestCode::SEND_MESSAGE_V2
                    | RequestCode::SEND_BATCH_MESSAGE
                    | RequestCode::SEND_REPLY_MESSAGE
                    | RequestCode::SEND_REPLY_MESSAGE_V2
                    | RequestCode::CONSUMER_SEND_MSG_BACK
                    | RequestCode::END_TRANSACTION
                    | RequestCode::POP_MESSAGE
                    | RequestCode::ACK_MESSAGE
                    | RequestCode::BATCH_ACK_MESSAGE
                    | RequestCode::CHANGE_MESSAGE_INVISIBLETIME
                    | RequestCode::PEEK_MESSAGE
                    | RequestCode::NOTIFICATION
            )
        {
            conn.respond_error(
                req,
                ResponseCode::SERVICE_NOT_AVAILABLE,
                "this broker is a slave (broker.role = slave) and stores only what its master sends; send (and pop) to the master",
            );
            return;
        }
        match req.code {
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 => {
                super::send::handle_send(self, conn, req, false)
            }
            RequestCode::SEND_BATCH_MESSAGE => super::send::handle_send(self, conn, req, true),
            RequestCode::SEND_REPLY_MESSAGE | RequestCode::SEND_REPLY_MESSAGE_V2 => {
                super::reply::handle_reply(self, conn, req)
            }
            RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
                super::pull::handle_pull(self, conn, req)
            }
            RequestCode::POP_MESSAGE => super::pop::handle_pop(self, conn, req),
            RequestCode::ACK_MESSAGE => super::pop::handle_ack(self, conn, req),
            RequestCode::BATCH_ACK_MESSAGE => super::pop::handle_batch_ack(self, conn, req),
            RequestCode::NOTIFICATION => super::pop_info::handle_notification(self, conn, req),
            RequestCode::POLLING_INFO => super::pop_info::handle_polling_info(self, conn, req),
            RequestCode::PEEK_MESSAGE => super::pop_info::handle_peek(self, conn, req),
            RequestCode::CHANGE_MESSAGE_INVISIBLETIME => {
                super::pop::handle_change_invisible(self, conn, req)
            }
            RequestCode::QUERY_ASSIGNMENT => super::assignment::query_assignment(self, conn, req),
            RequestCode::SET_MESSAGE_REQUEST_MODE => super::assignment::set_mode(self, conn, req),
            RequestCode::QUERY_CONSUMER_OFFSET => {
                super::queries::query_consumer_offset(self, conn, req)
            }
            RequestCode::UPDATE_CONSUMER_OFFSET => {
                super::queries::update_consumer_offset(self, conn, req)
            }
            RequestCode::GET_MAX_OFFSET => super::queries::get_max_offset(self, conn, req),
            RequestCode::GET_MIN_OFFSET => super::queries::get_min_offset(self, conn, req),
            RequestCode::SEARCH_OFFSET_BY_TIMESTAMP => {
                super::queries::search_offset(self, conn, req)
            }
            RequestCode::GET_EARLIEST_MSG_STORETIME => {
                super::queries::earliest_time(self, conn, req)
            }
            RequestCode::HEART_BEAT => super::clients::heartbeat(self, conn, req),
            RequestCode::UNREGISTER_CLIENT => super::clients::unregister_client(self, conn, req),
            RequestCode::GET_CONSUMER_LIST_BY_GROUP => {
                super::clients::consumer_list(self, conn, req)
            }
            RequestCode::UPDATE_AND_CREATE_TOPIC => super::admin::create_topic(self, conn, req),
            RequestCode::UPDATE_AND_CREATE_TOPIC_LIST => {
                super::admin::create_topic_list(self, conn, req)
            }
            RequestCode::GET_TOPIC_CONFIG => super::inspect::topic_config(self, conn, req),
            RequestCode::QUERY_CONSUME_QUEUE => {
                super::inspect::query_consume_queue(self, conn, req)
            }
            RequestCode::QUERY_CONSUME_TIME_SPAN => {
                super::inspect::query_consume_time_span(self, conn, req)
            }
            RequestCode::GET_SYSTEM_TOPIC_LIST_FROM_BROKER => {
                super::inspect::system_topics(self, conn, req)
            }
            RequestCode::GET_BROKER_CONSUME_STATS => {
                super::inspect::broker_consume_stats(self, conn, req)
            }
            RequestCode::QUERY_SUBSCRIPTION_BY_CONSUMER => {
                super::inspect::query_subscription(self, conn, req)
            }
            RequestCode::GET_ALL_MESSAGE_REQUEST_MODE => {
                super::inspect::all_request_modes(self, conn, req)
            }
            RequestCode::DELETE_TOPIC_IN_BROKER => super::admin::delete_topic(self, conn, req),
            RequestCode::GET_ALL_TOPIC_CONFIG => super::admin::all_topic_config(self, conn, req),
            RequestCode::GET_ALL_CONSUMER_OFFSET => {
                super::admin::all_consumer_offsets(self, conn, req)
            }
            RequestCode::GET_ALL_DELAY_OFFSET => super::admin::all_delay_offsets(self, conn, req),
            RequestCode::GET_TIMER_CHECK_POINT => super::admin::timer_checkpoint(self, conn, req),
            RequestCode::GET_TOPIC_STATS_INFO => super::stats::topic_stats(self, conn, req),
            RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
                super::groups::update_group(self, conn, req)
            }
            RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                super::groups::all_groups(self, conn, req)
            }
            RequestCode::GET_SUBSCRIPTIONGROUP_CONFIG => super::groups::get_group(self, conn, req),
            RequestCode::DELETE_SUBSCRIPTIONGROUP => super::groups::delete_group(self, conn, req),
            RequestCode::GET_CONSUME_STATS => super::stats::consume_stats(self, conn, req),
            RequestCode::GET_CONSUMER_CONNECTION_LIST => {
                super::stats::consumer_connections(self, conn, req)
            }
            RequestCode::GET_BROKER_RUNTIME_INFO => super::admin::runtime_info(self, conn, req),
            RequestCode::QUERY_MESSAGE => super::admin::query_message(self, conn, req),
            RequestCode::VIEW_MESSAGE_BY_ID => super::admin::view_message(self, conn, req),
            RequestCode::CONSUMER_SEND_MSG_BACK => super::schedule::send_back(self, conn, req),
            RequestCode::CHECK_CLIENT_CONFIG => {
                super::clients::check_client_config(self, conn, req)
            }
            RequestCode::END_TRANSACTION => super::transaction::end_transaction(self, conn, req),
            RequestCode::LOCK_BATCH_MQ => super::locks::lock_batch(self, conn, req),
            RequestCode::UPDATE_AND_CREATE_ACL_CONFIG
            | RequestCode::DELETE_ACL_CONFIG
            | RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG
            | RequestCode::GET_BROKER_CLUSTER_ACL_INFO
            | RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG => {
                super::admin::acl_admin(self, conn, req)
            }
            RequestCode::UNLOCK_BATCH_MQ => super::locks::unlock_batch(self, conn, req),
            RequestCode::INVOKE_BROKER_TO_RESET_OFFSET => {
                super::reset::invoke_reset(self, conn, req)
            }
            RequestCode::GET_CONSUMER_RUNNING_INFO => {
                super::client_calls::consumer_running_info(self, conn, req)
            }
            RequestCode::CONSUME_MESSAGE_DIRECTLY => {
                super::client_calls::consume_directly(self, conn, req)
            }
            RequestCode::RECALL_MESSAGE => super::timer::recall(self, conn, req),
            RequestCode::GET_BROKER_CONFIG => super::config_view::get_config(self, conn, req),
            RequestCode::UPDATE_BROKER_CONFIG => super::config_view::update_config(self, conn, req),
            RequestCode::CLONE_GROUP_OFFSET => super::reset::clone_offsets(self, conn, req),
            RequestCode::GET_PRODUCER_CONNECTION_LIST => {
                super::stats::producer_connections(self, conn, req)
            }
            RequestCode::GET_ALL_PRODUCER_INFO => super::stats::all_producers(self, conn, req),
            RequestCode::QUERY_TOPIC_CONSUME_BY_WHO => {
                super::stats::topic_consumed_by(self, conn, req)
            }
            RequestCode::QUERY_TOPICS_BY_CONSUMER => super::stats::topics_of_group(self, conn, req),
            RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST => {
                super::groups::update_group_list(self, conn, req)
            }
            _ => self.not_supported(conn, req),
        }
    }

    fn closed(&self, conn: &Rc<Conn>) {
        super::clients::connection_closed(self, conn);
    }
}
