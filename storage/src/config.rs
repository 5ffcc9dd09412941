//! One shard's store configuration: every limit of the write path is a named field here.

use std::path::PathBuf;

use crate::error::StoreError;

/// Direct I/O alignment: offsets, lengths and buffers of O_DIRECT writes are multiples of it
/// (physical block size of the disks we run on; DESIGN.md §7).
pub const IO_ALIGNMENT: u64 = 4096;

/// Largest message body RocketMQ accepts by default (`maxMessageSize`, 4 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Room for everything of a record that is not the body (RocketMQ keeps 64 KiB for it): topic
/// (up to 32767 bytes), properties (up to 32767 bytes) and the fixed fields.
pub const RECORD_OVERHEAD_MAX_BYTES: usize = 64 * 1024 + 256;

/// When a flush is acknowledged (RocketMQ `flushDiskType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushMode {
    /// SYNC_FLUSH: an append is acknowledged after the fdatasync that covers it; appends that
    /// arrive while a flush is in flight share the next one (group commit).
    Sync,
    /// ASYNC_FLUSH: acknowledged once in memory; flushed every `flush_interval_ms` or every
    /// `flush_bytes`, whichever comes first.
    #[default]
    Async,
}

/// How CommitLog bytes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// O_DIRECT writes through io_uring from DMA-aligned buffers; the shard's tail cache
    /// replaces the page cache for fresh data.
    #[default]
    Direct,
    /// Writes through the page cache (the Kafka/RocketMQ way), fdatasync'ed like direct ones.
    Buffered,
}

/// How a new CommitLog segment is prepared before records land in it.
///
/// Measured on this kind of machine (2 vCPU KVM, virtio-blk, ext4; 4 KiB write + fdatasync in a
/// loop, 64 MiB file): zero-filled file 7,300-8,300 syncs/s (121-137 us), `fallocate`d file
/// 4,350-5,400/s (185-230 us), sparse file 5,950/s (168 us), with O_DIRECT; buffered the same
/// order (7,700 / 5,100 / 5,300). `fallocate` leaves unwritten extents whose conversion costs a
/// journal commit on every durable write, so zero-filling (RocketMQ's warm-up) is the default:
/// it costs one sequential write of the segment, done ahead of need by the flusher.
///
/// The price of zero-filling is that every CommitLog byte is written twice (zeros, then
/// records), which caps a store that writes continuously at about half the disk's bandwidth.
/// With many concurrent synchronous appenders `fallocate` wins: `examples/sync_loop.rs`
/// (200,000 x 4 KiB, 64 MiB segments, 1024 / 4096 appenders, back to back, load < 1) gave
/// 508-558 / 730-805 MiB/s with `fallocate` against 427-434 / 654-671 MiB/s zero-filled
/// (+17-23 %). The criterion bench (`benches/append.rs`: a fresh store per sample, whose
/// first segment is zero-filled before the clock starts) showed `fallocate` 18 % slower at
/// 1024 appenders and no faster at 4096, so the default stays. Choose `fallocate` for
/// sustained high-concurrency `flush = sync` traffic; see perf/results/storage-2026-11-23.md
/// (session 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preallocate {
    /// Write zeros over the whole segment before use (fastest single fdatasync; every byte is
    /// written twice over the life of the segment).
    #[default]
    Zero,
    /// `fallocate` the segment (cheap to create, each byte written once; durable writes pay an
    /// extent conversion, one journal commit per fdatasync).
    Fallocate,
    /// Let the file grow as it is written.
    None,
}

impl Preallocate {
    /// The mode named `name` ("zero", "fallocate", "none"), as config files and the profiling
    /// examples' `RAMJET_PREALLOCATE` spell it.
    pub fn from_name(name: &str) -> Option<Preallocate> {
        match name {
            "zero" => Some(Preallocate::Zero),
            "fallocate" => Some(Preallocate::Fallocate),
            "none" => Some(Preallocate::None),
            _ => None,
        }
    }
}

/// Default of [`StoreConfig::zero_fill_max_append_rate`]: 256 MiB/s, above the 1 KiB
/// `flush = sync` streams whose latency the fill serves (~185 MB/s at their closed-loop
/// maximum on the development VM) and far below a disk-bound writer (1.1-2 GB/s).
pub const DEFAULT_ZERO_FILL_MAX_APPEND_RATE: u64 = 256 << 20;

/// Default of [`StoreConfig::flusher_latency_us`]: 5 ms.
pub const DEFAULT_FLUSHER_LATENCY_US: u64 = 5_000;
/// Shortest accepted [`StoreConfig::flusher_latency_us`]: below it the executor would spend
/// its time re-arming and firing the preempt timer.
pub const MIN_FLUSHER_LATENCY_US: u64 = 50;
/// Longest accepted [`StoreConfig::flusher_latency_us`]: the executor's default preempt timer
/// (glommio's 100 ms, `runtime.preempt_timer_us`), which preempts anyway.
pub const MAX_FLUSHER_LATENCY_US: u64 = 100_000;

/// Default of [`StoreConfig::sync_group_max_bytes`]: 8 MiB, two of the default 4 MiB write
/// chunks.
pub const DEFAULT_SYNC_GROUP_MAX_BYTES: u64 = 8 << 20;
/// Smallest accepted [`StoreConfig::sync_group_max_bytes`]: one block (a write phase always
/// writes at least one chunk, so any value this small means one chunk per fdatasync).
pub const MIN_SYNC_GROUP_MAX_BYTES: u64 = IO_ALIGNMENT;
/// Largest accepted [`StoreConfig::sync_group_max_bytes`]: 1 TiB, no bound in practice (the
/// backlog is capped far lower by `max_unflushed_bytes`).
pub const MAX_SYNC_GROUP_MAX_BYTES: u64 = 1 << 40;

/// How long a preparation watches the append rate before it may stop its zero fill short (a
/// burst shorter than this does not count as a rate).
pub const ZERO_FILL_RATE_WINDOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Configuration of one shard's store. Defaults follow RocketMQ's where one exists.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Root of this shard's store (`commitlog/`, `consumequeue/`, `index/`, `checkpoint`).
    pub dir: PathBuf,
    /// Size of one CommitLog segment file (1 GiB). Multiple of 4096.
    pub segment_size_bytes: u64,
    /// SYNC_FLUSH or ASYNC_FLUSH.
    pub flush: FlushMode,
    /// O_DIRECT or page-cache writes.
    pub io_mode: IoMode,
    /// How new segments are prepared.
    pub preallocate: Preallocate,
    /// Async mode: flush at least this often (RocketMQ `flushIntervalCommitLog`, 500 ms).
    pub flush_interval_ms: u64,
    /// Async mode: flush as soon as this many bytes are waiting.
    pub flush_bytes: u64,
    /// Largest write-buffer chunk the writer allocates at a time (a record bigger than this gets
    /// a chunk of its own size). Chunks shrink to fit the recent flush sizes.
    pub write_chunk_bytes: usize,
    /// Back-pressure: appends fail with [`StoreError::Busy`] while this many appended bytes are
    /// not yet written to the file.
    pub max_unflushed_bytes: u64,
    /// Write buffers (chunks) no longer referenced are kept for reuse, up to this many bytes
    /// (the writer's bounded pool): reusing mapped memory spares a fresh allocation, the
    /// kernel's page zeroing and a memset per chunk. 0 disables reuse. The default holds two
    /// flush windows of full chunks (2 x 16 x 4 MiB): a completed window lets the tail cache
    /// evict 64 MiB at once, and with a 64 MiB pool half of it was freed and allocated again
    /// within the next window (100 B produce, session 10: ~100 MB/s of fresh pages for the
    /// kernel to zero, the prefault thread 21 % -> 13 % of a CPU with 128 MiB+).
    pub write_pool_bytes: u64,
    /// Bytes of write buffers put into the pool when the store opens, in chunks of the
    /// largest chunk size, their pages mapped by the prefault thread in the background; at
    /// most `write_pool_bytes + tail_cache_bytes`: the memory a busy store holds anyway once
    /// its tail cache is full, paid up front instead of on the append path (RocketMQ's
    /// `transientStorePool` does the same with 5 GiB). Above `write_pool_bytes` the pool
    /// holds the excess only until the first fill of the tail cache has taken it; buffers
    /// coming back are kept within `write_pool_bytes`. The broker's default is the whole
    /// `write_pool_bytes + tail_cache_bytes` (also bounded by the pool's 128 buffers): a
    /// freshly opened store fills its tail cache with fresh memory otherwise, the prefault
    /// thread mapping it during the load. Measured with `examples/sync_loop.rs` (4 KiB,
    /// 4096 appenders, 1 GiB, alternating): process CPU 0.58-1.07 s -> 0.46-0.68 s per run;
    /// the rate unchanged on a quiet VM (5 triples, mean 1,460 -> 1,449 MiB/s) and +20 % when
    /// the CPUs were contended (5 pairs, mean 1,066 -> 1,283 MiB/s),
    /// perf/results/session18-2026-12-06.md. The library keeps a small default (16 MiB) for
    /// embedders and tests that open many stores.
    pub write_pool_preallocate_bytes: u64,
    /// Ask for transparent huge pages (`MADV_HUGEPAGE`) for the in-memory tables and the write
    /// buffers. Off by default: each huge page is zeroed in one uninterruptible page fault on
    /// the prefault thread, which shares the shards' CPUs (see `prefault::set_huge_pages` for
    /// what that cost). Process-wide: the last store opened decides.
    pub huge_pages: bool,
    /// Turn transparent huge pages off for the whole process when the store opens
    /// (`prctl(PR_SET_THP_DISABLE)`), whatever `/sys/kernel/mm/transparent_hugepage/enabled`
    /// says. `huge_pages = false` only skips the `MADV_HUGEPAGE` advice: on a host with THP
    /// `always` every 2 MiB-aligned stretch of fresh memory is still zeroed in one page fault,
    /// also on the shard thread itself (glibc touching fresh arena memory when a write
    /// buffer is allocated: 78 % of the samples in the shard's runs over 2 ms in session 27,
    /// up to 14.5 ms per run). Off by default because it is not a clear win everywhere
    /// (perf/results/session27-2026-12-07.md, 2-vCPU guest, alternating runs):
    /// - e2e at 265k msg/s: p99 1.0-9.7 ms with it (4 of 5 rounds under 4.1 ms), 6.2-28.6
    ///   ms without.
    /// - 100 B batch-100 produce: 3.32-3.40 M vs 3.19-3.35 M msg/s.
    /// - 4 KiB sync store: median ratio to fio 0.748 vs 0.737.
    /// - 1 KiB sync at 92k msg/s: p99 1.95-2.07 vs 1.58-1.93 ms, p99.9 6.5-17.7 vs 3.1-4.8
    ///   ms (worse).
    ///
    /// Process-wide and one-way: once a store of the process turned it off, THP stays off.
    pub disable_thp: bool,
    /// Recent CommitLog bytes kept in memory for reads (evicted by size, oldest first; data not
    /// yet written is never evicted and counts toward `max_unflushed_bytes` instead).
    pub tail_cache_bytes: u64,
    /// Largest message body accepted (RocketMQ `maxMessageSize`, 4 MiB).
    pub max_message_bytes: usize,
    /// Largest total encoded size of one batch (a batch never spans two segments).
    pub max_batch_bytes: usize,
    /// Retention of CommitLog segments (RocketMQ `fileReservedTime`, 72 h).
    pub retention_hours: u64,
    /// Disk usage ratio above which retention starts deleting expired files.
    pub disk_clean_ratio: f64,
    /// Disk usage ratio above which retention deletes the oldest files even if not expired.
    pub disk_force_clean_ratio: f64,
    /// Disk usage ratio above which appends are refused with [`StoreError::DiskFull`].
    pub disk_refuse_ratio: f64,
    /// How often the flusher runs a retention sweep (RocketMQ `cleanResourceInterval`), in ms.
    pub retention_check_interval_ms: u64,
    /// How often the flusher re-reads the disk usage (statvfs), in ms.
    pub disk_check_interval_ms: u64,
    /// ConsumeQueue units per file (300,000 = 6,000,000 bytes).
    pub cq_units_per_file: u32,
    /// IndexFile hash slots per file.
    pub index_slots: u32,
    /// IndexFile entries per file.
    pub index_entries: u32,
    /// How often the checkpoint file is rewritten after flushes, in ms.
    pub checkpoint_interval_ms: u64,
    /// Pull caps when the data is in the tail cache (RocketMQ
    /// `maxTransferBytesOnMessageInMemory` 256 KiB / `maxTransferCountOnMessageInMemory` 32).
    pub max_transfer_bytes_in_memory: u32,
    pub max_transfer_count_in_memory: u32,
    /// Pull caps when the data is on disk (RocketMQ `...OnMessageInDisk`, 64 KiB / 8).
    pub max_transfer_bytes_on_disk: u32,
    pub max_transfer_count_on_disk: u32,
    /// Append RocketMQ 5.x's `__CRC32#` property (`enabledAppendPropCRC`) to every record: a
    /// CRC32 of the whole record, which recovery checks, so damage in the topic or properties
    /// of the last record (not covered by the body CRC) is detected. On by default: ramjet owns
    /// recovery. Adds 20 bytes per record (21 when the properties lack a closing 0x02).
    pub append_prop_crc: bool,
    /// `flush = sync` only: pipelined group commit. The next group's writes go out while the
    /// previous group's fdatasync is in flight (at most one fdatasync in flight; the durable
    /// point still moves only after a sync that covers it). On by default since session 14:
    /// it raises the throughput of many concurrent synchronous appenders (`examples/sync_loop.rs`,
    /// 4 KiB x 4096 appenders, 5 alternating pairs on a prewritten segment: 938-1,505 ->
    /// 1,191-1,623 MiB/s; 1 KiB sync produce closed loop 161-172k -> 178-186k msg/s), and with
    /// sync sends answered from one ack queue per shard it also lowered the latency at moderate
    /// load (1 KiB at 87k msg/s, 5 alternating pairs at the generator's default window: p90
    /// 1.45-1.54 -> 0.91-1.25 ms, median p99 2.84 -> 2.27 ms; p99.9 mixed).
    /// perf/results/session12-2026-12-05.md, perf/results/session14-2026-12-05.md.
    pub sync_pipeline: bool,
    /// ConsumeQueue/IndexFile flushing falls behind the CommitLog by at most about this many
    /// bytes under a sustained load: beyond it, derived-flush rounds follow each other without
    /// their pacing pause and with up to 8x the budget. Below it they are paced (a pause as
    /// long as the last round), which spares the CPUs after a burst. The lag is the work a
    /// recovery redoes after a crash, and the units and entries it holds stay on the heap until
    /// written (about a quarter of the lagging CommitLog bytes for 100 B messages). Before this
    /// bound (session 18) the lag grew without limit at 2.7 M msg/s of 100 B produce (to 9.9
    /// GB in 18 s, the heap by ~100 MB/s); catching up costs produce throughput on a small
    /// machine (2 vCPUs, 40 s at max: 2.56 -> 2.42 M msg/s).
    pub derived_catch_up_lag_bytes: u64,
    /// With `preallocate = Zero`: the append rate (bytes per second, measured from when the
    /// preparation of the next segment starts) above which its zero fill stops where it is
    /// and the segment is published as filled so far, the rest growing as it is written; 0:
    /// always zero-fill the whole segment. Why: a zero fill writes every byte a second time,
    /// which a disk-bound writer pays for in full. `sync_loop`, 4 KiB x 4096 appenders under
    /// `flush = sync`, 4 GB from a fresh store in 1 GiB segments, 6 rounds: 1,108 MiB/s mean
    /// zero-filling whole segments against 1,260 MiB/s with the fill stopped at this rate
    /// (fio 1,370-2,188 MiB/s). A 1 KiB `flush = sync` stream at 92k msg/s (~100 MB/s) has
    /// its p50 doubled by segments that grow as written (0.52 -> 1.0 ms: each fdatasync also
    /// writes the inode), so slow streams keep the fill
    /// (perf/results/session21-2026-12-06.md).
    pub zero_fill_max_append_rate: u64,
    /// How soon, in microseconds, the CommitLog flusher's I/O completions take the shard's
    /// CPU from other work: the flusher runs in a glommio task queue of its own with this
    /// latency requirement (`Latency::Matters`), so while it has work the executor stops
    /// running other task queues after at most this long and polls its rings. Without one (a
    /// 100 ms preempt timer) a shard kept busy by connections saw the flusher's completions
    /// late and refused batch-1000 produce (session 2, 1 ms chosen then).
    ///
    /// Why 5 ms rather than 1 ms: a shorter one preempts more often, and each preemption hands
    /// the writes and fdatasyncs queued so far to the kernel, so group commits get smaller
    /// and more frequent. 1 KiB `flush = sync` at 92k msg/s, one broker per run, 4 alternating
    /// rounds (session 22): p50 / p90 / p99 0.52-0.54 / 1.20-1.34 / 1.82-2.34 ms at 1 ms,
    /// 0.46-0.51 / 0.79-0.93 / 1.62-1.78 ms at 5 ms (2 ms behaved like 1 ms, 3 ms in between);
    /// closed loop 183-189k -> 194-199k msg/s. Batch-100 and batch-1000 produce and e2e
    /// latency were unchanged. The cost: `sync_loop` (4 KiB x 4096 appenders, whose wake-ups
    /// come in bursts of ~2 ms of CPU) lost 1-9 % in five interleaved sets of 4-8 rounds,
    /// within this VM's noise for the store (perf/results/session22-2026-12-06.md).
    pub flusher_latency_us: u64,
    /// `flush = sync` with `sync_pipeline`: the most bytes one write phase writes before its
    /// fdatasync starts. A larger backlog (thousands of synchronous appenders, each waiting
    /// with its record) is made durable in parts: the first part's appenders are acknowledged
    /// and append again while the next part is written, instead of all of them waiting for
    /// the whole backlog and then appending while the disk idles. At least one write chunk
    /// goes out per phase whatever the value; groups smaller than this (every 1 KiB sync
    /// produce row of the broker) are not touched.
    ///
    /// `sync_loop`, 4 KiB x 4096 appenders (16 MiB in flight) on a prewritten segment, 5
    /// interleaved rounds in one sitting (session 23): unbounded (everything written before
    /// each fdatasync, the behaviour before) 1,152 MiB/s mean, ratio to fio 0.75; 4 MiB 1,320
    /// (0.85); 8 MiB 1,423 (0.91); 12 MiB 1,403 (0.90). `perf/sync-ratio.sh`, 8 pairs: median
    /// 0.974 at 8 MiB vs 0.892 unbounded (7 of 8 pairs higher). fdatasyncs double (59 -> 118
    /// for 0.94 GB); on this disk they are cheap (session 21: fio with an fdatasync every 2 MiB
    /// kept its bandwidth). perf/results/session23-2026-12-06.md.
    pub sync_group_max_bytes: u64,
    /// Delay of each level in ms, index 0 = level 1 (RocketMQ `messageDelayLevel`, parsed by
    /// [`crate::schedule::parse_delay_levels`]). Recovery rebuilds the due times of scheduled
    /// messages from it, so it must not change while scheduled messages wait.
    pub delay_levels_ms: Vec<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: PathBuf::from("store"),
            segment_size_bytes: 1 << 30,
            flush: FlushMode::Async,
            io_mode: IoMode::Direct,
            preallocate: Preallocate::Zero,
            flush_interval_ms: 500,
            flush_bytes: 16 * 1024 * 1024,
            write_chunk_bytes: 4 * 1024 * 1024,
            max_unflushed_bytes: 256 * 1024 * 1024,
            write_pool_bytes: 128 * 1024 * 1024,
            write_pool_preallocate_bytes: 16 * 1024 * 1024,
            huge_pages: false,
            disable_thp: false,
            tail_cache_bytes: 256 * 1024 * 1024,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_batch_bytes: DEFAULT_MAX_MESSAGE_BYTES + RECORD_OVERHEAD_MAX_BYTES,
            retention_hours: 72,
            disk_clean_ratio: 0.75,
            disk_force_clean_ratio: 0.85,
            disk_refuse_ratio: 0.90,
            disk_check_interval_ms: 1000,
            retention_check_interval_ms: 10_000,
            cq_units_per_file: 300_000,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
            checkpoint_interval_ms: 1000,
            derived_catch_up_lag_bytes: 8 << 30,
            zero_fill_max_append_rate: DEFAULT_ZERO_FILL_MAX_APPEND_RATE,
            flusher_latency_us: DEFAULT_FLUSHER_LATENCY_US,
            sync_group_max_bytes: DEFAULT_SYNC_GROUP_MAX_BYTES,
            delay_levels_ms: crate::schedule::parse_delay_levels(
                crate::schedule::DEFAULT_DELAY_LEVELS,
            )
            .expect("the default delay levels parse"),
            max_transfer_bytes_in_memory: 256 * 1024,
            max_transfer_count_in_memory: 32,
            max_transfer_bytes_on_disk: 64 * 1024,
            max_transfer_count_on_disk: 8,
            append_prop_crc: true,
            sync_pipeline: true,
        }
    }
}

impl StoreConfig {
    /// A config rooted at `dir` with all other fields at their defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            ..StoreConfig::default()
        }
    }

    /// Directory of the CommitLog segments.
    pub fn commitlog_dir(&self) -> PathBuf {
        self.dir.join("commitlog")
    }

    /// Largest single record this config lets the writer hold.
    pub fn max_record_bytes(&self) -> usize {
        self.max_message_bytes + RECORD_OVERHEAD_MAX_BYTES
    }

    /// Checks the relations between fields; says which one is wrong and why.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |field: &'static str, reason: String| Err(StoreError::Config { field, reason });
        if self.delay_levels_ms.is_empty()
            || self.delay_levels_ms.len() > crate::schedule::MAX_DELAY_LEVELS
        {
            return bad(
                "delay_levels_ms",
                format!(
                    "{} levels; between 1 and {}",
                    self.delay_levels_ms.len(),
                    crate::schedule::MAX_DELAY_LEVELS
                ),
            );
        }
        if self.segment_size_bytes == 0 || !self.segment_size_bytes.is_multiple_of(IO_ALIGNMENT) {
            return bad(
                "segment_size_bytes",
                format!(
                    "{} is not a positive multiple of {IO_ALIGNMENT}",
                    self.segment_size_bytes
                ),
            );
        }
        if self.segment_size_bytes > i64::MAX as u64 / 2 {
            return bad(
                "segment_size_bytes",
                format!("{} is too large", self.segment_size_bytes),
            );
        }
        let largest = self.max_record_bytes().max(self.max_batch_bytes) as u64;
        if self.max_unflushed_bytes < 2 * (largest + IO_ALIGNMENT) {
            return bad(
                "max_unflushed_bytes",
                format!(
                    "{} must be at least twice the largest record or batch plus one block ({})",
                    self.max_unflushed_bytes,
                    2 * (largest + IO_ALIGNMENT)
                ),
            );
        }
        if self.write_chunk_bytes < IO_ALIGNMENT as usize {
            return bad(
                "write_chunk_bytes",
                format!(
                    "{} is below one block ({IO_ALIGNMENT})",
                    self.write_chunk_bytes
                ),
            );
        }
        let pre_max = self.write_pool_bytes.saturating_add(self.tail_cache_bytes);
        if self.write_pool_preallocate_bytes > pre_max {
            return bad(
                "write_pool_preallocate_bytes",
                format!(
                    "{} is above write_pool_bytes + tail_cache_bytes ({pre_max})",
                    self.write_pool_preallocate_bytes
                ),
            );
        }
        if self.flush_interval_ms == 0 {
            return bad("flush_interval_ms", "must be at least 1".to_string());
        }
        if !(MIN_FLUSHER_LATENCY_US..=MAX_FLUSHER_LATENCY_US).contains(&self.flusher_latency_us) {
            return bad(
                "flusher_latency_us",
                format!(
                    "{} is not within {MIN_FLUSHER_LATENCY_US}..={MAX_FLUSHER_LATENCY_US} (microseconds)",
                    self.flusher_latency_us
                ),
            );
        }
        if !(MIN_SYNC_GROUP_MAX_BYTES..=MAX_SYNC_GROUP_MAX_BYTES)
            .contains(&self.sync_group_max_bytes)
        {
            return bad(
                "sync_group_max_bytes",
                format!(
                    "{} is not within {MIN_SYNC_GROUP_MAX_BYTES}..={MAX_SYNC_GROUP_MAX_BYTES}",
                    self.sync_group_max_bytes
                ),
            );
        }
        for (field, v) in [
            ("disk_clean_ratio", self.disk_clean_ratio),
            ("disk_force_clean_ratio", self.disk_force_clean_ratio),
            ("disk_refuse_ratio", self.disk_refuse_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} is not within 0.0..=1.0"));
            }
        }
        if self.cq_units_per_file == 0 {
            return bad("cq_units_per_file", "must be at least 1".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric field set by `set` is accepted at its bounds and default and refused just
    /// outside them, with an error that names `field` and the value.
    fn assert_bounded(
        field: &str,
        (min, default, max): (u64, u64, u64),
        set: impl Fn(&mut StoreConfig, u64),
    ) {
        for ok in [min, default, max] {
            let mut cfg = StoreConfig::default();
            set(&mut cfg, ok);
            assert!(cfg.validate().is_ok(), "{field} = {ok}");
        }
        for bad in [0, min - 1, max + 1] {
            let mut cfg = StoreConfig::default();
            set(&mut cfg, bad);
            match cfg.validate() {
                Err(StoreError::Config { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains(&bad.to_string()), "{reason}");
                }
                other => panic!("{field} = {bad}: {other:?}"),
            }
        }
    }

    /// The flusher's latency requirement is accepted within its bounds and refused outside
    /// them, naming the field.
    #[test]
    fn flusher_latency_is_bounded() {
        assert_eq!(
            StoreConfig::default().flusher_latency_us,
            DEFAULT_FLUSHER_LATENCY_US
        );
        assert_bounded(
            "flusher_latency_us",
            (
                MIN_FLUSHER_LATENCY_US,
                DEFAULT_FLUSHER_LATENCY_US,
                MAX_FLUSHER_LATENCY_US,
            ),
            |c, v| c.flusher_latency_us = v,
        );
    }

    /// The sync group bound is accepted within its bounds and refused outside them, naming
    /// the field.
    #[test]
    fn sync_group_max_is_bounded() {
        assert_eq!(
            StoreConfig::default().sync_group_max_bytes,
            DEFAULT_SYNC_GROUP_MAX_BYTES
        );
        assert_bounded(
            "sync_group_max_bytes",
            (
                MIN_SYNC_GROUP_MAX_BYTES,
                DEFAULT_SYNC_GROUP_MAX_BYTES,
                MAX_SYNC_GROUP_MAX_BYTES,
            ),
            |c, v| c.sync_group_max_bytes = v,
        );
    }
}
