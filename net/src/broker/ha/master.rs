//! The master's side of replication: one listener per shard (its port + 1) and, per slave
//! connection, a reader of the slave's offset reports and a sender of CommitLog transfers.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::{HaCounters, TRANSFER_HEADER_LEN};
use crate::broker::shard::Broker;
use crate::runtime::{self, TcpListener, TcpStream};

/// Accepts slaves until the listener is shut down.
pub async fn serve(b: Rc<Broker>, listener: TcpListener) {
    let errors = ramjet_core::ratelog::LogEvery::default();
    loop {
        let Some(stream) =
            crate::broker::conn::accept_next(&listener, &errors, "HA accept failed").await
        else {
            return;
        };
        let _ = stream.set_nodelay(true);
        HaCounters::add(&b.ha.counters.connections, 1);
        runtime::spawn_detached(connection(b.clone(), stream));
    }
}

/// State one slave connection's two tasks share.
struct Link {
    /// The slave's first report: where transfers start.
    start: Cell<Option<u64>>,
    /// The slave's last report.
    acked: Cell<u64>,
    closed: Cell<bool>,
}

async fn connection(b: Rc<Broker>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let fd = stream.as_raw_fd();
    let (reader, writer) = match runtime::split_stream(stream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(shard = b.index, slave = %peer, error = %e, "cannot split the HA connection");
            return;
        }
    };
    let link = Rc::new(Link {
        start: Cell::new(None),
        acked: Cell::new(0),
        closed: Cell::new(false),
    });
    let reports = runtime::spawn_task(read_reports(b.clone(), reader, link.clone(), peer.clone()));
    let why = transfer(&b, writer, &link).await;
    link.closed.set(true);
    // Ends the reader's pending read too.
    runtime::shutdown_listener(fd);
    let _ = reports.await;
    if link.start.get().is_some() {
        tracing::info!(shard = b.index, slave = %peer, acked = link.acked.get(), reason = %why, "slave disconnected");
    } else {
        // Refused or silent before its first report (logged above, rate-limited).
        tracing::debug!(shard = b.index, slave = %peer, reason = %why, "slave connection closed");
    }
}

/// Reads the slave's 8-byte offset reports; the last whole one of each read counts.
async fn read_reports(b: Rc<Broker>, mut reader: TcpStream, link: Rc<Link>, peer: String) {
    let idle = Duration::from_millis(b.cfg.broker.ha_housekeeping_interval_ms);
    let mut buf = [0u8; 8 * 64];
    let mut have = 0usize;
    let mut counted = false;
    while !link.closed.get() {
        let n = match runtime::timeout(idle, reader.read(&mut buf[have..])).await {
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
            None => {
                tracing::warn!(shard = b.index, slave = %peer, idle_ms = idle.as_millis() as u64, "slave silent for broker.ha_housekeeping_interval_ms; closing");
                break;
            }
        };
        have += n;
        let whole = have - have % 8;
        if whole == 0 {
            continue;
        }
        let mut last = [0u8; 8];
        last.copy_from_slice(&buf[whole - 8..whole]);
        let offset = u64::from_be_bytes(last);
        buf.copy_within(whole..have, 0);
        have -= whole;
        let end = b.store.end_offset();
        if link.start.get().is_none() && offset > end {
            // The slave holds records this master no longer has (unflushed ones lost in a
            // crash of the master, say): its bytes from `end` on are not this master's, so
            // it can neither continue nor confirm anything.
            if let Some(n) = b.ha.refused_log.due() {
                tracing::error!(shard = b.index, slave = %peer, slave_offset = offset, master_end = end, refused = n, "slave refused: its CommitLog is longer than this master's (the master lost records it had sent it); re-seed the slave from the master's store");
            }
            break;
        }
        link.acked.set(offset);
        if link.start.get().is_none() {
            tracing::info!(shard = b.index, slave = %peer, offset, "slave connected");
            link.start.set(Some(offset));
            b.ha.slave_connected();
            counted = true;
            // The sender waits for the first report.
            b.ha.wake_senders();
        }
        // Never beyond what this master holds (a slave cannot confirm what it was not sent).
        b.ha.slave_acked(offset.min(end));
    }
    if counted {
        b.ha.slave_gone();
    }
    link.closed.set(true);
    b.ha.wake_senders();
}

/// Sends transfers from the slave's first reported offset on; returns why it stopped.
async fn transfer(b: &Broker, mut writer: TcpStream, link: &Link) -> String {
    let batch = b.cfg.broker.ha_transfer_batch_bytes as usize;
    let heartbeat = Duration::from_millis(b.cfg.broker.ha_heartbeat_interval_ms);
    let idle = Duration::from_millis(b.cfg.broker.ha_housekeeping_interval_ms);
    // Wait for the slave's first report.
    let started = Instant::now();
    let mut next = loop {
        if link.closed.get() {
            return "closed before reporting an offset".into();
        }
        if let Some(o) = link.start.get() {
            break o;
        }
        if started.elapsed() > idle {
            return "no offset report".into();
        }
        let _ = runtime::timeout(heartbeat, b.ha.next_append()).await;
    };
    let min = b.store.commitlog().min_offset();
    if next < min {
        tracing::error!(shard = b.index, slave_offset = next, master_min_offset = min, "the slave asks for CommitLog bytes this master no longer has (deleted by retention); give the slave a copy of the master's store directory");
        return format!("slave offset {next} is below the master's first offset {min}");
    }
    let mut buf: Vec<u8> = Vec::with_capacity(TRANSFER_HEADER_LEN + batch);
    let mut last_write = Instant::now();
    loop {
        if link.closed.get() {
            return "connection closed".into();
        }
        // A slave far behind reads segment files: the bytes not in the page cache are read in
        // on a blocking thread first, so that the shard never waits for the disk.
        if b.cfg.broker.cold_reads_off_shard {
            if let Some((file, pos, len)) = b.store.replica_file_range(next, batch) {
                let mut cold = Vec::new();
                if crate::broker::warm::push_if_cold(&file, pos, len, &mut cold) {
                    if let Err(e) =
                        runtime::blocking(move || crate::broker::warm::read_in(&cold)).await
                    {
                        tracing::debug!(shard = b.index, error = %e, "reading CommitLog bytes in for a slave failed; read on the shard");
                    }
                    HaCounters::add(&b.ha.counters.cold_reads, 1);
                }
            }
        }
        buf.clear();
        buf.resize(TRANSFER_HEADER_LEN, 0);
        let after = match b.store.read_for_replica(next, batch, &mut buf) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(shard = b.index, offset = next, error = %e, "reading the CommitLog for a slave failed");
                return e.to_string();
            }
        };
        let size = buf.len() - TRANSFER_HEADER_LEN;
        if size == 0 {
            let since = last_write.elapsed();
            if since < heartbeat {
                let _ = runtime::timeout(heartbeat - since, b.ha.next_append()).await;
                continue;
            }
        }
        buf[..8].copy_from_slice(&next.to_be_bytes());
        buf[8..12].copy_from_slice(&(size as u32).to_be_bytes());
        if let Err(e) = writer.write_all(&buf).await {
            return format!("write failed: {e}");
        }
        last_write = Instant::now();
        if size > 0 {
            HaCounters::add(&b.ha.counters.transfers_sent, 1);
            HaCounters::add(&b.ha.counters.bytes_sent, size as u64);
        }
        next = after;
    }
}
