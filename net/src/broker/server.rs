//! Process-level start-up: the embedded name server and/or every shard, each on its own
//! executor; ports reported back once bound; a stop flag that every executor polls; clean
//! shutdown (offsets and topics persisted, stores flushed) on [`Server::shutdown`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use super::config::{Config, ConfigError};
use super::namesrv_host::{NamesrvHost, NamesrvHostError};
use super::shard::{Broker, ShardError, ShardPorts};
use crate::runtime::{self, ExecutorOptions, ExecutorThread, Pin, RuntimeError};

/// What to run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub namesrv: bool,
    pub broker: bool,
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Namesrv(#[from] NamesrvHostError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("the broker needs at least one name server address (--namesrv HOST:PORT)")]
    NoNamesrv,
    #[error("broker.acl_enable is on, but {0} (the format: docs/acl.md; or set broker.acl_file)")]
    Acl(String),
    #[error("executor {0} stopped before reporting that it started")]
    Lost(String),
}

enum Started {
    Namesrv(Result<SocketAddr, NamesrvHostError>),
    Shard(Box<Result<ShardPorts, ShardError>>),
}

/// A running server.
pub struct Server {
    /// Stops the shards.
    stop: Arc<AtomicBool>,
    threads: Vec<ExecutorThread<()>>,
    /// Stops the embedded name server, after the shards (they unregister from it on the way out).
    namesrv_stop: Arc<AtomicBool>,
    namesrv_thread: Option<ExecutorThread<()>>,
    pub namesrv: Option<SocketAddr>,
    pub shards: Vec<ShardPorts>,
}

impl Server {
    /// Starts the roles and waits until every listener is bound (or something failed).
    pub fn start(mut cfg: Config, roles: Roles) -> Result<Server, ServerError> {
        cfg.validate()?;
        if roles.broker && cfg.broker.acl_enable {
            // Before anything is bound or opened: each shard loads the file again for itself.
            super::acl::Acl::open(cfg.acl_file()).map_err(ServerError::Acl)?;
        }
        runtime::keep_heap_mapped();
        let shards = if roles.broker {
            if cfg.broker.shards == 0 {
                runtime::allowed_cpus().len()
            } else {
                cfg.broker.shards
            }
        } else {
            0
        };
        let cpus = if cfg.broker.cpus.trim().is_empty() {
            None
        } else {
            Some(runtime::parse_cpu_list(&cfg.broker.cpus)?)
        };
        let placement = if roles.broker {
            runtime::plan_placement(shards, cpus.as_deref())?
        } else {
            Vec::new()
        };
        let shard_cpus = runtime::CpuMask::of(placement.iter().filter_map(|p| match p {
            Pin::Cpu(c) => Some(*c),
            Pin::Unbound => None,
        }));
        let opts = ExecutorOptions {
            io_memory_bytes: cfg.runtime.io_memory_bytes,
            ring_depth: cfg.runtime.ring_depth,
            spin_before_park: std::time::Duration::from_micros(cfg.runtime.spin_before_park_us),
            shard_slice: (cfg.runtime.shard_slice_us > 0)
                .then(|| std::time::Duration::from_micros(cfg.runtime.shard_slice_us)),
            preempt_timer: std::time::Duration::from_micros(cfg.runtime.preempt_timer_us),
            io_workers_off_shard: cfg.runtime.io_workers_off_shard,
            shard_cpus,
        };
        runtime::startup_checks(shards + usize::from(roles.namesrv), &opts)?;
        let stop = Arc::new(AtomicBool::new(false));
        let namesrv_stop = Arc::new(AtomicBool::new(false));
        let mut server = Server {
            stop: stop.clone(),
            threads: Vec::new(),
            namesrv_stop: namesrv_stop.clone(),
            namesrv_thread: None,
            namesrv: None,
            shards: Vec::new(),
        };
        let (tx, rx) = mpsc::channel::<Started>();

        if roles.namesrv {
            let listen = cfg.namesrv.listen.clone();
            let scan = cfg.namesrv.scan_interval_ms;
            let stop2 = namesrv_stop.clone();
            let tx2 = tx.clone();
            let t = runtime::start_executor(
                "ramjet-namesrv",
                Pin::Unbound,
                opts,
                move || async move {
                    match NamesrvHost::bind(&listen, scan) {
                        Ok(host) => {
                            let _ = tx2.send(Started::Namesrv(Ok(host.local_addr())));
                            let stop_fn: Rc<dyn Fn() -> bool> =
                                Rc::new(move || stop2.load(Ordering::Relaxed));
                            host.run(stop_fn).await;
                        }
                        Err(e) => {
                            let _ = tx2.send(Started::Namesrv(Err(e)));
                        }
                    }
                },
            )?;
            server.namesrv_thread = Some(t);
            match rx.recv() {
                Ok(Started::Namesrv(Ok(addr))) => {
                    server.namesrv = Some(addr);
                    if roles.broker && cfg.broker.namesrv_addrs.is_empty() {
                        let ip = if addr.ip().is_unspecified() {
                            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                        } else {
                            addr.ip()
                        };
                        cfg.broker.namesrv_addrs =
                            vec![SocketAddr::new(ip, addr.port()).to_string()];
                    }
                }
                Ok(Started::Namesrv(Err(e))) => {
                    server.shutdown();
                    return Err(e.into());
                }
                _ => {
                    server.shutdown();
                    return Err(ServerError::Lost("ramjet-namesrv".into()));
                }
            }
        }
        if roles.broker && cfg.broker.namesrv_addrs.is_empty() {
            server.shutdown();
            return Err(ServerError::NoNamesrv);
        }
        let cfg = Arc::new(cfg);
        for (i, pin) in placement.into_iter().enumerate() {
            let cfg = cfg.clone();
            let stop2 = stop.clone();
            let tx2 = tx.clone();
            let name = format!("ramjet-shard-{i}");
            let t = runtime::start_executor(&name, pin, opts, move || async move {
                let cfg = Rc::new((*cfg).clone());
                match Broker::open(cfg, i).await {
                    Ok((broker, listeners, ports)) => {
                        let _ = tx2.send(Started::Shard(Box::new(Ok(ports))));
                        let stop_fn: Rc<dyn Fn() -> bool> =
                            Rc::new(move || stop2.load(Ordering::Relaxed));
                        broker.run(listeners, stop_fn).await;
                    }
                    Err(e) => {
                        let _ = tx2.send(Started::Shard(Box::new(Err(e))));
                    }
                }
            });
            match t {
                Ok(t) => server.threads.push(t),
                Err(e) => {
                    server.shutdown();
                    return Err(e.into());
                }
            }
        }
        drop(tx);
        let mut first_err = None;
        for _ in 0..shards {
            match rx.recv() {
                Ok(Started::Shard(r)) => match *r {
                    Ok(p) => server.shards.push(p),
                    Err(e) => {
                        first_err.get_or_insert(ServerError::Shard(e));
                    }
                },
                Ok(Started::Namesrv(_)) => {}
                Err(_) => {
                    first_err.get_or_insert(ServerError::Lost("shard".into()));
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            server.shutdown();
            return Err(e);
        }
        server.shards.sort_by_key(|p| p.index);
        Ok(server)
    }

    /// Asks every executor to stop, waits for them (stores flushed), and reports failures.
    /// The shards go first, so that they can still unregister from the embedded name server.
    pub fn shutdown(&mut self) -> Vec<RuntimeError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut errs = Vec::new();
        for t in self.threads.drain(..) {
            if let Err(e) = t.join() {
                errs.push(e);
            }
        }
        self.namesrv_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.namesrv_thread.take() {
            if let Err(e) = t.join() {
                errs.push(e);
            }
        }
        errs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() || self.namesrv_thread.is_some() {
            self.shutdown();
        }
    }
}
