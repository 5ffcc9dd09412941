//! The slave's side of replication: per shard, a connection to the master shard's HA port
//! that reports this store's CommitLog end and appends the transfers it receives.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use ramjet_storage::StoreError;

use super::{HaCounters, TRANSFER_HEADER_LEN};
use crate::broker::config::SHARD_PORT_STEP;
use crate::broker::shard::Broker;
use crate::runtime::{self, TcpStream};

/// Pause before connecting again after a failed or lost connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Largest transfer accepted (a master's `ha_transfer_batch_bytes` is at most 64 MiB, and a
/// transfer holds at least one whole record).
const MAX_TRANSFER_BYTES: usize = 128 * 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_BYTES: usize = 256 * 1024;

/// The master shard's HA address: `broker.ha_master_address` moved to this shard's port, or
/// the one the name server gave at registration.
fn master_ha_addr(b: &Broker) -> Option<String> {
    let configured = &b.cfg.broker.ha_master_address;
    if !configured.is_empty() {
        let mut a: std::net::SocketAddr = configured.parse().ok()?;
        let port = a.port() as usize + SHARD_PORT_STEP as usize * b.index;
        a.set_port(u16::try_from(port).ok()?);
        return Some(a.to_string());
    }
    b.ha.master_ha_addr.borrow().clone()
}

/// Connects to the master and replicates, reconnecting after failures, until cancelled.
pub async fn run(b: Rc<Broker>) {
    let mut warned_no_master = false;
    // A master that refuses this slave closes at once; one line per 10 s, with a count.
    let lost_log = ramjet_core::ratelog::LogEvery::default();
    loop {
        let Some(addr) = master_ha_addr(&b) else {
            if !warned_no_master {
                tracing::info!(shard = b.index, "slave waits for its master (set broker.ha_master_address, or start the master with the same broker.name and name server)");
                warned_no_master = true;
            }
            runtime::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        let stream = match runtime::timeout(
            Duration::from_secs(3),
            TcpStream::connect(addr.as_str()),
        )
        .await
        {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(shard = b.index, master = %addr, error = %e, "cannot connect to the master's HA port");
                runtime::sleep(RECONNECT_PAUSE).await;
                continue;
            }
            None => {
                tracing::debug!(shard = b.index, master = %addr, "connecting to the master's HA port timed out");
                runtime::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        HaCounters::add(&b.ha.counters.connections, 1);
        tracing::info!(shard = b.index, master = %addr, offset = b.store.end_offset(), "replicating from the master");
        let why = session(&b, stream).await;
        match &why {
            Err(SessionEnd::Diverged(e)) => {
                tracing::error!(shard = b.index, master = %addr, error = %e, "the master's CommitLog does not continue this slave's; replication stops until both agree (give the slave a copy of the master's store)");
                runtime::sleep(RECONNECT_PAUSE * 10).await;
            }
            Err(SessionEnd::Lost(e)) => {
                if let Some(n) = lost_log.due() {
                    tracing::warn!(shard = b.index, master = %addr, reason = %e, lost = n, "replication connection lost; reconnecting");
                }
                runtime::sleep(RECONNECT_PAUSE).await;
            }
            Ok(never) => match *never {},
        }
    }
}

enum SessionEnd {
    /// The connection failed or the master misbehaved: connect again.
    Lost(String),
    /// The data does not fit this store: connecting again will not help soon.
    Diverged(StoreError),
}

/// One connection: reports, then appends transfers until the connection ends.
async fn session(
    b: &Broker,
    mut stream: TcpStream,
) -> Result<std::convert::Infallible, SessionEnd> {
    let idle = Duration::from_millis(b.cfg.broker.ha_housekeeping_interval_ms);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
    report(&mut stream, confirmable(b).await?).await?;
    loop {
        // Take every whole transfer buffered.
        let mut at = 0usize;
        let mut took = false;
        while buf.len() - at >= TRANSFER_HEADER_LEN {
            let head = &buf[at..at + TRANSFER_HEADER_LEN];
            let offset = u64::from_be_bytes(head[..8].try_into().unwrap_or([0; 8]));
            let size = u32::from_be_bytes(head[8..12].try_into().unwrap_or([0; 4])) as usize;
            if size > MAX_TRANSFER_BYTES {
                return Err(SessionEnd::Lost(format!(
                    "the master announced a {size}-byte transfer"
                )));
            }
            if buf.len() - at < TRANSFER_HEADER_LEN + size {
                break;
            }
            let data = &buf[at + TRANSFER_HEADER_LEN..at + TRANSFER_HEADER_LEN + size];
            if size > 0 {
                append(b, offset, data).await?;
                HaCounters::add(&b.ha.counters.transfers_received, 1);
                HaCounters::add(&b.ha.counters.bytes_received, size as u64);
            }
            b.ha.master_offset
                .set(b.ha.master_offset.get().max(offset + size as u64));
            at += TRANSFER_HEADER_LEN + size;
            took = true;
        }
        buf.drain(..at);
        if took {
            report(&mut stream, confirmable(b).await?).await?;
        }
        let len = buf.len();
        buf.resize(len + READ_BYTES, 0);
        let n = match runtime::timeout(idle, stream.read(&mut buf[len..])).await {
            Some(Ok(0)) => return Err(SessionEnd::Lost("the master closed the connection".into())),
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(SessionEnd::Lost(format!("read failed: {e}"))),
            None => {
                return Err(SessionEnd::Lost(format!(
                    "nothing from the master for {} ms (broker.ha_housekeeping_interval_ms)",
                    idle.as_millis()
                )))
            }
        };
        buf.truncate(len + n);
    }
}

/// Appends one transfer, waiting for flush room when the write path is full.
async fn append(b: &Broker, mut offset: u64, mut data: &[u8]) -> Result<(), SessionEnd> {
    while !data.is_empty() {
        let r = match b.store.append_replica(offset, data) {
            Ok(r) => r,
            Err(StoreError::ShutDown) => return Err(SessionEnd::Lost("store shut down".into())),
            Err(e @ StoreError::ReplicaDiverged { .. }) => return Err(SessionEnd::Diverged(e)),
            Err(e) => return Err(SessionEnd::Lost(format!("append failed: {e}"))),
        };
        HaCounters::add(&b.ha.counters.records_received, r.records);
        data = &data[r.consumed..];
        offset = r.next_offset;
        if !data.is_empty() {
            let next_len = data.get(..4).map_or(4096, |s| {
                u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize
            });
            b.store.wait_writable(next_len).await;
        }
    }
    Ok(())
}

/// The offset this slave confirms: the end of what it appended (RocketMQ's slave), or with
/// `broker.slave_ack_after_flush` the end of what is on its disk, after a flush that covers
/// everything appended so far (transfers read together share it).
async fn confirmable(b: &Broker) -> Result<u64, SessionEnd> {
    let end = b.store.end_offset();
    if !b.cfg.broker.slave_ack_after_flush {
        return Ok(end);
    }
    match b.store.wait_durable(end).await {
        Ok(()) => Ok(end),
        Err(StoreError::ShutDown) => Err(SessionEnd::Lost("store shut down".into())),
        // Keep the connection: the confirmed point stays where it was until a flush works.
        Err(e) => {
            tracing::warn!(shard = b.index, error = %e, "slave flush failed; confirming only what is on disk");
            Ok(b.store.durable_offset())
        }
    }
}

async fn report(stream: &mut TcpStream, offset: u64) -> Result<(), SessionEnd> {
    stream
        .write_all(&offset.to_be_bytes())
        .await
        .map_err(|e| SessionEnd::Lost(format!("report failed: {e}")))
}
