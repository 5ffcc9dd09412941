//! Hosts the I/O-free name server state machine ([`crate::namesrv::NameServer`]) on a TCP
//! listener: requests in, responses out, expiry scan every `scan_interval_ms`, and brokers
//! dropped when the connection they registered on closes.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ramjet_core::remoting::{CodecLimits, CommandView};

use super::conn::{serve_listener, Conn, ConnOptions, ListenerStats, Service};
use super::delivery::DeliveryCounters;
use crate::namesrv::{NameServer, NameServerConfig};
use crate::runtime::{self, Listener};

/// Errors starting the name server.
#[derive(Debug, thiserror::Error)]
pub enum NamesrvHostError {
    #[error("cannot listen on {addr} for the name server: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct NamesrvService {
    ns: RefCell<NameServer>,
}

impl Service for NamesrvService {
    fn handle(&self, conn: &Rc<Conn>, req: &CommandView<'_>) {
        let reply = self.ns.borrow_mut().handle_from(conn.id(), req, now_ms());
        if let Some(cmd) = reply {
            conn.send_command(&cmd);
        }
    }

    fn closed(&self, conn: &Rc<Conn>) {
        let gone = self.ns.borrow_mut().connection_closed(conn.id());
        for addr in gone {
            tracing::info!(broker = %addr, "broker connection closed; removed from routes");
        }
    }
}

/// A bound name server listener (bind first so that start-up reports the port).
pub struct NamesrvHost {
    listener: Listener,
    local: SocketAddr,
    scan_interval: Duration,
}

impl NamesrvHost {
    pub fn bind(addr: &str, scan_interval_ms: u64) -> Result<NamesrvHost, NamesrvHostError> {
        let listener = runtime::bind_listener(addr).map_err(|source| NamesrvHostError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let local = listener
            .listener
            .local_addr()
            .map_err(|e| NamesrvHostError::Bind {
                addr: addr.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(NamesrvHost {
            listener,
            local,
            scan_interval: Duration::from_millis(scan_interval_ms.max(1)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `stop` turns true.
    pub async fn run(self, stop: Rc<dyn Fn() -> bool>) {
        let service = Rc::new(NamesrvService {
            ns: RefCell::new(NameServer::new(NameServerConfig::default())),
        });
        let opts = ConnOptions {
            limits: CodecLimits::default(),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(120),
            zero_copy: false,
            cold_reads_off_shard: false,
            read_coalesce: None,
        };
        let svc: Rc<dyn Service> = service.clone();
        let fd = self.listener.fd();
        let accept = runtime::spawn_task(serve_listener(
            self.listener.listener,
            svc,
            opts,
            Rc::new(ListenerStats::default()),
            Rc::new(DeliveryCounters::default()),
            Rc::new(Cell::new(1)),
        ));
        let mut since_scan = Duration::ZERO;
        let tick = Duration::from_millis(100);
        while !stop() {
            runtime::sleep(tick).await;
            since_scan += tick;
            if since_scan >= self.scan_interval {
                since_scan = Duration::ZERO;
                for addr in service.ns.borrow_mut().scan_expired(now_ms()) {
                    tracing::info!(broker = %addr, "broker expired (no registration for 120 s)");
                }
            }
        }
        runtime::shutdown_listener(fd);
        accept.cancel();
    }
}
