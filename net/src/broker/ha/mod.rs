//! Master/slave replication (RocketMQ's HA service), per shard.
//!
//! Shard i of a master listens on its port + 1. Shard i of a slave (same `broker.name`,
//! `broker.role = "slave"`) connects there, reports the end of its CommitLog (8 bytes, big
//! endian) and receives transfers: an 8-byte CommitLog offset, a 4-byte length and that many
//! bytes of whole CommitLog entries, which it appends at the same offsets (see
//! `ramjet_storage::Store::append_replica`). It reports its new end after every transfer; an
//! idle master sends an empty transfer every `broker.ha_heartbeat_interval_ms`. This is
//! RocketMQ's classic HA framing, with one difference: at a segment roll only the 8-byte
//! end-of-segment marker travels, and the next transfer starts at the next segment.
//!
//! Under `broker.replication = "sync"` a send is answered once a slave has confirmed an offset
//! at or past its record ([`wait_acked`]; one watermark, many waiters, like group commit).
//! A slave also copies its master's topics and consumer offsets every
//! `broker.slave_sync_interval_ms` ([`sync`]), refuses sends, and serves pulls.

pub mod master;
pub mod slave;
pub mod sync;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ramjet_core::remoting::ResponseCode;
use ramjet_storage::commitlog::flush::DurableWatch;
use ramjet_storage::FlushMode;

use super::shard::Broker;

/// Length of a transfer's header: CommitLog offset (8) and byte count (4).
pub const TRANSFER_HEADER_LEN: usize = 12;

/// Counters of one shard's replication (GET_BROKER_RUNTIME_INFO `ramjet.ha*`).
#[derive(Debug, Default)]
pub struct HaCounters {
    /// Master: transfers and CommitLog bytes sent to slaves.
    pub transfers_sent: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    /// Slave: transfers, bytes and records received and appended.
    pub transfers_received: Cell<u64>,
    pub bytes_received: Cell<u64>,
    pub records_received: Cell<u64>,
    /// Connections made (slave) or accepted (master).
    pub connections: Cell<u64>,
    /// Master, `replication = sync`: sends answered FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE.
    pub slave_timeouts: Cell<u64>,
    pub slave_not_available: Cell<u64>,
    /// Slave: synchronisations of topics and offsets with the master that succeeded.
    pub syncs: Cell<u64>,
    /// Master: transfers whose bytes were read into the page cache off the shard first.
    pub cold_reads: Cell<u64>,
}

impl HaCounters {
    pub(crate) fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

/// One shard's replication state.
pub struct Replication {
    slave: bool,
    sync: bool,
    /// Master: the highest CommitLog offset a slave confirmed, with the sends waiting for it.
    confirmed: DurableWatch,
    /// Master: slave connections that reported an offset.
    slaves: Cell<u32>,
    /// Master: bumped when records are appended; senders to slaves wait for a change.
    data_generation: Cell<u64>,
    data_waiters: RefCell<Vec<Waker>>,
    /// Slave: the master's HA and main addresses, as the name server gave them.
    master_ha_addr: RefCell<Option<String>>,
    master_addr: RefCell<Option<String>>,
    /// Slave: the master's CommitLog end as of the last transfer.
    master_offset: Cell<u64>,
    /// Master: rate limit of the "slave refused" error (a refused slave reconnects every
    /// second).
    pub(crate) refused_log: ramjet_core::ratelog::LogEvery,
    pub counters: HaCounters,
}

impl Replication {
    pub fn new(slave: bool, sync: bool) -> Replication {
        Replication {
            slave,
            sync: sync && !slave,
            confirmed: DurableWatch::new(0),
            slaves: Cell::new(0),
            data_generation: Cell::new(0),
            data_waiters: RefCell::new(Vec::new()),
            master_ha_addr: RefCell::new(None),
            master_addr: RefCell::new(None),
            master_offset: Cell::new(0),
            refused_log: ramjet_core::ratelog::LogEvery::default(),
            counters: HaCounters::default(),
        }
    }

    /// Whether this shard is a slave.
    pub fn is_slave(&self) -> bool {
        self.slave
    }

    /// Whether sends wait for a slave (`replication = "sync"` on a master).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// Master: slaves connected (that reported an offset).
    pub fn slave_count(&self) -> u32 {
        self.slaves.get()
    }

    /// Master: the highest offset a slave confirmed.
    pub fn confirmed_offset(&self) -> u64 {
        self.confirmed.durable()
    }

    /// Slave: the master's CommitLog end as of the last transfer.
    pub fn master_offset(&self) -> u64 {
        self.master_offset.get()
    }

    /// Records appended: wakes the senders to slaves. Called for every append (the store's
    /// arrival listener); without senders waiting it is a flag check.
    #[inline]
    pub fn data_appended(&self) {
        if self.data_waiters.borrow().is_empty() {
            return;
        }
        self.wake_senders();
    }

    /// Wakes the senders to slaves without new data (a slave connected or left).
    fn wake_senders(&self) {
        self.data_generation.set(self.data_generation.get() + 1);
        for w in self.data_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves at the next [`Replication::data_appended`] after this call.
    pub(crate) fn next_append(&self) -> NextAppend<'_> {
        NextAppend {
            ha: self,
            generation: self.data_generation.get(),
        }
    }

    fn slave_connected(&self) {
        self.slaves.set(self.slaves.get() + 1);
    }

    fn slave_gone(&self) {
        self.slaves.set(self.slaves.get().saturating_sub(1));
    }

    /// A slave confirmed everything below `offset`.
    fn slave_acked(&self, offset: u64) {
        self.confirmed.raise(offset);
    }

    /// Slave: what registration learned about the master.
    pub(crate) fn set_master(&self, master_addr: Option<&str>, ha_addr: Option<&str>) {
        let clean = |a: Option<&str>| a.filter(|a| !a.is_empty()).map(str::to_owned);
        *self.master_addr.borrow_mut() = clean(master_addr);
        *self.master_ha_addr.borrow_mut() = clean(ha_addr);
    }

    /// Slave: the master's main address (for copying topics and offsets), if known.
    pub fn master_addr(&self) -> Option<String> {
        self.master_addr.borrow().clone()
    }

    /// Slave: whether the master's HA address is known yet (configured or registered).
    pub(crate) fn knows_master(&self) -> bool {
        self.master_ha_addr.borrow().is_some()
    }

    /// Ends every wait for a slave (shutdown).
    pub fn close(&self) {
        self.confirmed.close();
    }
}

/// Future of [`Replication::next_append`].
pub(crate) struct NextAppend<'a> {
    ha: &'a Replication,
    generation: u64,
}

impl Future for NextAppend<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ha.data_generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.ha.data_waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

/// Why a send could not be acknowledged as RocketMQ's SEND_OK: the response code (the record
/// is stored on this broker either way) and a remark.
#[derive(Debug, Clone)]
pub struct AckFailure {
    pub code: i32,
    pub remark: String,
}

/// Whether answers to sends wait for something after the append: the fdatasync
/// (`flush = sync`) and/or a slave (`replication = sync`).
#[inline]
pub fn acks_wait(b: &Broker) -> bool {
    b.store.config().flush == FlushMode::Sync || b.ha.is_sync()
}

/// The CommitLog offset below which sends may be answered SEND_OK: durable (under
/// `flush = sync`) and confirmed by a slave (under `replication = sync`).
pub fn acked_offset(b: &Broker) -> u64 {
    let mut acked = u64::MAX;
    if b.store.config().flush == FlushMode::Sync {
        acked = acked.min(b.store.durable_offset());
    }
    if b.ha.is_sync() {
        acked = acked.min(b.ha.confirmed_offset());
    }
    acked
}

/// Waits until a send whose record ends at `end` may be answered SEND_OK: the fdatasync that
/// covers it, then a slave's confirmation. A flush failure answers FLUSH_DISK_TIMEOUT; no
/// slave in reach SLAVE_NOT_AVAILABLE; a slave too slow FLUSH_SLAVE_TIMEOUT. RocketMQ's
/// clients count all three as stored.
pub async fn wait_acked(b: &Broker, end: u64) -> Result<(), AckFailure> {
    if b.store.config().flush == FlushMode::Sync {
        b.store.wait_durable(end).await.map_err(|e| AckFailure {
            code: ResponseCode::FLUSH_DISK_TIMEOUT,
            remark: e.to_string(),
        })?;
    }
    if !b.ha.is_sync() {
        return Ok(());
    }
    let ha = &b.ha;
    if ha.confirmed_offset() >= end {
        return Ok(());
    }
    let not_available = |remark: String| {
        HaCounters::add(&ha.counters.slave_not_available, 1);
        Err(AckFailure {
            code: ResponseCode::SLAVE_NOT_AVAILABLE,
            remark,
        })
    };
    if ha.slave_count() == 0 {
        return not_available("no slave connected".into());
    }
    let gap = b.store.end_offset().saturating_sub(ha.confirmed_offset());
    if gap > b.cfg.broker.ha_max_gap_bytes {
        return not_available(format!(
            "the slave is {gap} bytes behind (broker.ha_max_gap_bytes {})",
            b.cfg.broker.ha_max_gap_bytes
        ));
    }
    let limit = Duration::from_millis(b.cfg.broker.replication_timeout_ms);
    match crate::runtime::timeout(limit, ha.confirmed.wait(end)).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => not_available("the broker is shutting down".into()),
        None => {
            HaCounters::add(&ha.counters.slave_timeouts, 1);
            Err(AckFailure {
                code: ResponseCode::FLUSH_SLAVE_TIMEOUT,
                remark: format!(
                    "no slave confirmed the record within {} ms (broker.replication_timeout_ms)",
                    limit.as_millis()
                ),
            })
        }
    }
}
