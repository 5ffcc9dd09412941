//! Retention: which CommitLog segments to delete, and how full the disk may get.
//!
//! The rules follow RocketMQ's `CleanCommitLogService` with its vocabulary:
//!
//! - A segment is **expired** when its last write is older than `retention` (72 h,
//!   `fileReservedTime`). Age comes from the file's modification time (the last flush wrote it),
//!   which is what RocketMQ uses too; a caller that knows the last record's store time may pass
//!   that instead.
//! - Disk usage (statvfs of the store's file system, used = 1 - available/total) picks a
//!   [`DiskPressure`]:
//!   - below `clean_ratio` (0.75, `diskMaxUsedSpaceRatio`): expired segments are deleted, inside
//!     the optional deletion hour (`deleteWhen`, none by default = any time);
//!   - from `clean_ratio`: expired segments are deleted at once, whatever the hour (clean early);
//!   - from `force_ratio` (0.85, `diskSpaceCleanForciblyRatio`): the oldest segments are deleted
//!     even inside retention, until the projected usage is back under `clean_ratio`;
//!   - from `refuse_ratio` (0.90, `diskSpaceWarningLevelRatio`): as above, and appends are
//!     refused with a disk-full error rather than risk a write failing half-way.
//! - Deletion always takes a prefix of the CommitLog (oldest first, contiguous), never the
//!   active (last) segment, and at most `max_segments_per_sweep` per sweep (RocketMQ deletes
//!   at most 10 files per run) so that one sweep never stalls the shard.
//!
//! Order of a deletion (see [`delete_segments`]): the ConsumeQueue and IndexFile parts below the
//! new minimum offset go first, the CommitLog files after. A crash in between leaves CommitLog
//! data no queue points at (harmless; the next sweep deletes it), never a queue pointing at
//! deleted data.
//!
//! The policy functions are pure ([`DiskThresholds::classify`], [`plan_deletion`]); the probe
//! ([`disk_usage`]) and the deletion ([`delete_segments`]) do blocking syscalls: stat and unlink
//! are metadata operations, cheap next to a flush, and run from the shard's retention timer.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::recovery::{list_segments, segment_file_name, RecoveryError};

/// Default retention: 72 hours (RocketMQ `fileReservedTime`).
pub const DEFAULT_RETENTION_HOURS: u64 = 72;
/// Default ratio from which expired segments are deleted at once (`diskMaxUsedSpaceRatio`).
pub const DEFAULT_CLEAN_RATIO: f64 = 0.75;
/// Default ratio from which segments are deleted even inside retention.
pub const DEFAULT_FORCE_RATIO: f64 = 0.85;
/// Default ratio from which appends are refused.
pub const DEFAULT_REFUSE_RATIO: f64 = 0.90;
/// At most this many segments are deleted per sweep (RocketMQ `DELETE_FILES_BATCH_MAX`).
pub const DEFAULT_MAX_SEGMENTS_PER_SWEEP: usize = 10;
const MS_PER_HOUR: u64 = 3_600_000;

/// What failed while probing the disk or deleting segments.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("statvfs({path}) failed: {source}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("path {path} contains a NUL byte")]
    NulInPath { path: PathBuf },
    #[error("disk thresholds must satisfy 0 < clean ({clean}) <= force ({force}) <= refuse ({refuse}) <= 1")]
    BadThresholds { clean: f64, force: f64, refuse: f64 },
    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listing(#[from] RecoveryError),
    #[error(
        "segment {base_offset} is the active segment or beyond it (newest {active_base}); refusing \
         to delete it"
    )]
    WouldDeleteActive { base_offset: u64, active_base: u64 },
    #[error("deleting ConsumeQueue/IndexFile parts below offset {min_offset} failed: {reason}")]
    DerivedParts { min_offset: u64, reason: String },
}

/// Space on the file system holding the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// Space an unprivileged writer may still use (statvfs `f_bavail`).
    pub available_bytes: u64,
}

impl DiskUsage {
    /// Used fraction, 0.0..=1.0: 1 - available/total (reserved blocks count as used). A file
    /// system reporting zero size counts as full.
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        let avail = self.available_bytes.min(self.total_bytes);
        1.0 - avail as f64 / self.total_bytes as f64
    }

    /// A usage of `total_bytes` at `used_ratio` (clamped to 0..=1), for callers that measure
    /// the ratio some other way (quota, a test probe).
    pub fn from_used_ratio(total_bytes: u64, used_ratio: f64) -> DiskUsage {
        let free = (1.0 - used_ratio.clamp(0.0, 1.0)) * total_bytes as f64;
        DiskUsage {
            total_bytes,
            available_bytes: (free as u64).min(total_bytes),
        }
    }

    /// Usage after `freed_bytes` more bytes become available.
    pub fn after_freeing(&self, freed_bytes: u64) -> DiskUsage {
        DiskUsage {
            total_bytes: self.total_bytes,
            available_bytes: self
                .available_bytes
                .saturating_add(freed_bytes)
                .min(self.total_bytes),
        }
    }
}

/// statvfs of the file system holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage, RetentionError> {
    let c_path =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| RetentionError::NulInPath {
            path: path.to_path_buf(),
        })?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call, and `st` points
    // to writable memory of the size of `struct statvfs`, which the kernel fills on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(RetentionError::Statvfs {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: statvfs returned 0, so it initialised the struct (and it was zeroed before).
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types are u32 or u64 depending on the target
    let (frsize, blocks, bfree, bavail) = (
        (st.f_frsize as u64).max(1),
        st.f_blocks as u64,
        st.f_bfree as u64,
        st.f_bavail as u64,
    );
    Ok(usage_like_df(frsize, blocks, bfree, bavail))
}

/// Usage as `df` reports it: used / (used + available), where blocks reserved for root (the
/// difference between free and available) count as neither. Taking `f_blocks` as the total
/// would count the reserve as used: on this project's machine 161 of 252 GiB are reserved, so
/// an empty disk read as 76 % full and retention deleted live segments every sweep.
fn usage_like_df(frsize: u64, blocks: u64, bfree: u64, bavail: u64) -> DiskUsage {
    let used = blocks.saturating_sub(bfree);
    DiskUsage {
        total_bytes: used.saturating_add(bavail).saturating_mul(frsize),
        available_bytes: bavail.saturating_mul(frsize),
    }
}

/// How hard the disk is pressed; decides what a sweep may delete and whether appends go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskPressure {
    /// Below the clean ratio: expired segments go, inside the deletion hour if one is set.
    Normal,
    /// At or above the clean ratio: expired segments go at once.
    CleanEarly,
    /// At or above the force ratio: the oldest segments go even inside retention.
    ForceClean,
    /// At or above the refuse ratio: as ForceClean, and appends are refused (DiskFull).
    Refuse,
}

/// The three disk watermarks, as fractions of the file system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskThresholds {
    pub clean_ratio: f64,
    pub force_ratio: f64,
    pub refuse_ratio: f64,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            clean_ratio: DEFAULT_CLEAN_RATIO,
            force_ratio: DEFAULT_FORCE_RATIO,
            refuse_ratio: DEFAULT_REFUSE_RATIO,
        }
    }
}

impl DiskThresholds {
    /// Checks 0 < clean <= force <= refuse <= 1.
    pub fn new(
        clean_ratio: f64,
        force_ratio: f64,
        refuse_ratio: f64,
    ) -> Result<Self, RetentionError> {
        let ok = clean_ratio > 0.0
            && clean_ratio <= force_ratio
            && force_ratio <= refuse_ratio
            && refuse_ratio <= 1.0;
        if !ok {
            return Err(RetentionError::BadThresholds {
                clean: clean_ratio,
                force: force_ratio,
                refuse: refuse_ratio,
            });
        }
        Ok(DiskThresholds {
            clean_ratio,
            force_ratio,
            refuse_ratio,
        })
    }

    /// The pressure at `used_ratio` (thresholds are inclusive: 0.90 used with refuse 0.90
    /// refuses).
    pub fn classify(&self, used_ratio: f64) -> DiskPressure {
        if used_ratio >= self.refuse_ratio {
            DiskPressure::Refuse
        } else if used_ratio >= self.force_ratio {
            DiskPressure::ForceClean
        } else if used_ratio >= self.clean_ratio {
            DiskPressure::CleanEarly
        } else {
            DiskPressure::Normal
        }
    }

    /// Whether an append may proceed at `used_ratio`.
    pub fn appends_allowed(&self, used_ratio: f64) -> bool {
        used_ratio < self.refuse_ratio
    }
}

/// Retention settings of one store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetentionPolicy {
    pub retention_hours: u64,
    pub thresholds: DiskThresholds,
    pub max_segments_per_sweep: usize,
    /// RocketMQ `deleteWhen`: under Normal pressure expired segments are deleted only during
    /// this hour of the day (UTC). `None` (default): at any time.
    pub delete_hour_utc: Option<u8>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            retention_hours: DEFAULT_RETENTION_HOURS,
            thresholds: DiskThresholds::default(),
            max_segments_per_sweep: DEFAULT_MAX_SEGMENTS_PER_SWEEP,
            delete_hour_utc: None,
        }
    }
}

impl RetentionPolicy {
    /// The policy a store's configuration asks for (checks the ratio order).
    pub fn from_config(cfg: &crate::config::StoreConfig) -> Result<Self, RetentionError> {
        Ok(RetentionPolicy {
            retention_hours: cfg.retention_hours,
            thresholds: DiskThresholds::new(
                cfg.disk_clean_ratio,
                cfg.disk_force_clean_ratio,
                cfg.disk_refuse_ratio,
            )?,
            ..RetentionPolicy::default()
        })
    }
}

/// One CommitLog segment as retention sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentAge {
    /// Global offset of the first byte (the file name).
    pub base_offset: u64,
    /// Bytes the file occupies on disk (what deleting it frees).
    pub size_bytes: u64,
    /// Last write, ms since the epoch (mtime, or the last record's store time).
    pub last_write_ms: i64,
}

/// What a sweep should do.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPlan {
    pub pressure: DiskPressure,
    /// The oldest `delete_count` segments of the input are to be deleted.
    pub delete_count: usize,
    /// Base offsets of those segments, oldest first.
    pub delete_bases: Vec<u64>,
    /// Lowest CommitLog offset still stored afterwards (the first kept segment's base): the
    /// ConsumeQueue and IndexFile parts below it are deleted with the segments.
    pub new_min_offset: Option<u64>,
    /// Whether appends may proceed.
    pub appends_allowed: bool,
    /// The active segment's base the plan was made with (deletion refuses it and later ones).
    pub active_base: u64,
}

/// Decides which segments to delete. `segments` must be sorted by base offset;
/// `active_base` is the base of the segment the writer appends to: it and every segment after
/// it (one prepared ahead) are never deleted. Pure: same input, same plan.
pub fn plan_deletion(
    segments: &[SegmentAge],
    active_base: u64,
    now_ms: i64,
    usage: DiskUsage,
    policy: &RetentionPolicy,
) -> RetentionPlan {
    let ratio = usage.used_ratio();
    let pressure = policy.thresholds.classify(ratio);
    let retention_ms = policy.retention_hours.saturating_mul(MS_PER_HOUR);
    let expired = |s: &SegmentAge| {
        let age_ms = now_ms.saturating_sub(s.last_write_ms);
        age_ms >= 0 && age_ms as u64 >= retention_ms
    };
    let in_hour = match policy.delete_hour_utc {
        None => true,
        Some(h) => now_ms >= 0 && ((now_ms as u64 / MS_PER_HOUR) % 24) as u8 == h,
    };
    let time_deletion_allowed = pressure >= DiskPressure::CleanEarly || in_hour;
    let deletable = segments
        .iter()
        .take_while(|s| s.base_offset < active_base)
        .count()
        .min(segments.len().saturating_sub(1));
    let limit = deletable.min(policy.max_segments_per_sweep);

    let mut count = 0usize;
    if time_deletion_allowed {
        while count < limit && expired(&segments[count]) {
            count += 1;
        }
    }
    if pressure >= DiskPressure::ForceClean {
        let freed: u64 = segments[..count].iter().map(|s| s.size_bytes).sum();
        let mut projected = usage.after_freeing(freed);
        while count < limit && projected.used_ratio() >= policy.thresholds.clean_ratio {
            projected = projected.after_freeing(segments[count].size_bytes);
            count += 1;
        }
    }
    RetentionPlan {
        pressure,
        delete_count: count,
        delete_bases: segments[..count].iter().map(|s| s.base_offset).collect(),
        new_min_offset: segments.get(count).map(|s| s.base_offset),
        appends_allowed: policy.thresholds.appends_allowed(ratio),
        active_base,
    }
}

/// The CommitLog segments in `commitlog_dir` with their on-disk size and modification time.
pub fn segment_ages(commitlog_dir: &Path) -> Result<Vec<SegmentAge>, RetentionError> {
    let mut out = Vec::new();
    for seg in list_segments(commitlog_dir)? {
        let meta = std::fs::metadata(&seg.path).map_err(|source| RetentionError::Io {
            op: "stat",
            path: seg.path.clone(),
            source,
        })?;
        let last_write_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        out.push(SegmentAge {
            base_offset: seg.base_offset,
            size_bytes: std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512),
            last_write_ms,
        });
    }
    Ok(out)
}

/// What a deletion did.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeletionReport {
    pub deleted_bases: Vec<u64>,
    pub freed_bytes: u64,
    pub new_min_offset: Option<u64>,
}

/// Carries out `plan`: first `delete_derived_below(new_min_offset)` (the ConsumeQueue and
/// IndexFile parts, through their owners' delete-below-offset APIs), then the CommitLog files,
/// oldest first, then an fsync of the directory. Refuses to delete the active segment (or a
/// later one), or the newest segment present.
/// The caller must drop its own handles to the deleted segments (open fds keep the space).
pub fn delete_segments(
    commitlog_dir: &Path,
    plan: &RetentionPlan,
    delete_derived_below: &mut dyn FnMut(u64) -> Result<(), String>,
) -> Result<DeletionReport, RetentionError> {
    match delete_derived_parts(commitlog_dir, plan, delete_derived_below)? {
        None => Ok(DeletionReport {
            new_min_offset: plan.new_min_offset,
            ..DeletionReport::default()
        }),
        Some(new_min) => unlink_segments(commitlog_dir, &plan.delete_bases, new_min),
    }
}

/// First half of [`delete_segments`]: checks the plan against the segments present and deletes
/// the ConsumeQueue and IndexFile parts below the new minimum offset. Returns that minimum, or
/// `None` when the plan deletes nothing.
pub fn delete_derived_parts(
    commitlog_dir: &Path,
    plan: &RetentionPlan,
    delete_derived_below: &mut dyn FnMut(u64) -> Result<(), String>,
) -> Result<Option<u64>, RetentionError> {
    if plan.delete_bases.is_empty() {
        return Ok(None);
    }
    let present = list_segments(commitlog_dir)?;
    let active_base = present
        .last()
        .map_or(0, |s| s.base_offset)
        .min(plan.active_base);
    for &base in &plan.delete_bases {
        if base >= active_base {
            return Err(RetentionError::WouldDeleteActive {
                base_offset: base,
                active_base,
            });
        }
    }
    let new_min = plan.new_min_offset.unwrap_or(active_base);
    delete_derived_below(new_min).map_err(|reason| RetentionError::DerivedParts {
        min_offset: new_min,
        reason,
    })?;
    Ok(Some(new_min))
}

/// Second half of [`delete_segments`]: unlinks the CommitLog segments `bases`, oldest first,
/// then fsyncs the directory. Blocking file-system work only (no store state), so the store
/// runs it on a blocking thread: unlinking a full 256 MiB segment on ext4 took ~45 ms here,
/// which on the shard thread stalled every connection of the shard.
pub fn unlink_segments(
    commitlog_dir: &Path,
    bases: &[u64],
    new_min: u64,
) -> Result<DeletionReport, RetentionError> {
    let mut report = DeletionReport {
        new_min_offset: Some(new_min),
        ..DeletionReport::default()
    };
    for &base in bases {
        let path = commitlog_dir.join(segment_file_name(base));
        let blocks = match std::fs::metadata(&path) {
            Ok(m) => std::os::unix::fs::MetadataExt::blocks(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(RetentionError::Io {
                    op: "stat",
                    path,
                    source,
                })
            }
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(RetentionError::Io {
                    op: "unlink",
                    path,
                    source,
                })
            }
        }
        tracing::info!(segment = %path.display(), "retention deleted CommitLog segment");
        report.deleted_bases.push(base);
        report.freed_bytes = report
            .freed_bytes
            .saturating_add(blocks.saturating_mul(512));
    }
    crate::checkpoint::sync_dir(commitlog_dir).map_err(|source| RetentionError::Io {
        op: "fsync directory",
        path: commitlog_dir.to_path_buf(),
        source,
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {

    #[test]
    fn usage_ignores_the_root_reserve_like_df() {
        // The machine this was found on: 252 GiB of blocks, 220.7 GiB free, 59.6 GiB available.
        let gib = 1u64 << 30;
        let u = usage_like_df(
            4096,
            252 * gib / 4096,
            2207 * gib / 40960,
            596 * gib / 40960,
        );
        let r = u.used_ratio();
        assert!((0.33..0.36).contains(&r), "ratio {r}");
        // No reserve: plain used / total.
        let u = usage_like_df(1, 100, 40, 40);
        assert_eq!((u.total_bytes, u.available_bytes), (100, 40));
        assert!((u.used_ratio() - 0.6).abs() < 1e-9);
    }

    use super::*;

    const GIB: u64 = 1 << 30;
    const HOUR_MS: i64 = MS_PER_HOUR as i64;

    fn usage(ratio: f64) -> DiskUsage {
        let total = 100 * GIB;
        DiskUsage {
            total_bytes: total,
            available_bytes: ((1.0 - ratio) * total as f64) as u64,
        }
    }

    fn segs(ages_h: &[i64], now: i64) -> Vec<SegmentAge> {
        ages_h
            .iter()
            .enumerate()
            .map(|(i, &h)| SegmentAge {
                base_offset: i as u64 * GIB,
                size_bytes: GIB,
                last_write_ms: now - h * HOUR_MS,
            })
            .collect()
    }

    #[test]
    fn classify_thresholds_are_inclusive() {
        let t = DiskThresholds::default();
        assert_eq!(t.classify(0.0), DiskPressure::Normal);
        assert_eq!(t.classify(0.7499), DiskPressure::Normal);
        assert_eq!(t.classify(0.75), DiskPressure::CleanEarly);
        assert_eq!(t.classify(0.8499), DiskPressure::CleanEarly);
        assert_eq!(t.classify(0.85), DiskPressure::ForceClean);
        assert_eq!(t.classify(0.8999), DiskPressure::ForceClean);
        assert_eq!(t.classify(0.90), DiskPressure::Refuse);
        assert_eq!(t.classify(1.0), DiskPressure::Refuse);
        assert!(t.appends_allowed(0.8999));
        assert!(!t.appends_allowed(0.90));
    }

    #[test]
    fn policy_from_the_default_config_is_rocketmqs() {
        let p = RetentionPolicy::from_config(&crate::config::StoreConfig::default()).expect("ok");
        assert_eq!(p, RetentionPolicy::default());
        let cfg = crate::config::StoreConfig {
            disk_force_clean_ratio: 0.95,
            ..crate::config::StoreConfig::default()
        };
        assert!(
            RetentionPolicy::from_config(&cfg).is_err(),
            "force above refuse"
        );
    }

    #[test]
    fn thresholds_must_be_ordered() {
        assert!(DiskThresholds::new(0.75, 0.85, 0.90).is_ok());
        assert!(matches!(
            DiskThresholds::new(0.9, 0.85, 0.95),
            Err(RetentionError::BadThresholds { .. })
        ));
        assert!(DiskThresholds::new(0.0, 0.5, 0.9).is_err());
        assert!(DiskThresholds::new(0.5, 0.6, 1.1).is_err());
    }

    #[test]
    fn used_ratio_counts_reserved_as_used_and_empty_fs_as_full() {
        let u = DiskUsage {
            total_bytes: 1000,
            available_bytes: 250,
        };
        assert!((u.used_ratio() - 0.75).abs() < 1e-12);
        assert!((u.after_freeing(250).used_ratio() - 0.5).abs() < 1e-12);
        assert_eq!(u.after_freeing(10_000).available_bytes, 1000);
        let empty = DiskUsage {
            total_bytes: 0,
            available_bytes: 0,
        };
        assert_eq!(empty.used_ratio(), 1.0);
        let r = DiskUsage::from_used_ratio(1 << 30, 0.8).used_ratio();
        assert!((r - 0.8).abs() < 1e-6, "{r}");
        assert_eq!(DiskUsage::from_used_ratio(100, 7.0).available_bytes, 0);
    }

    #[test]
    fn normal_pressure_deletes_only_the_expired_prefix() {
        let now = 1_000 * HOUR_MS;
        // ages: 100h, 80h, 73h, 10h (not expired), 90h (expired but after a kept one), active
        let s = segs(&[100, 80, 73, 10, 90, 0], now);
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.10), &RetentionPolicy::default());
        assert_eq!(plan.pressure, DiskPressure::Normal);
        assert_eq!(plan.delete_bases, vec![0, GIB, 2 * GIB]);
        assert_eq!(plan.new_min_offset, Some(3 * GIB));
        assert!(plan.appends_allowed);
    }

    #[test]
    fn exactly_retention_old_is_expired_and_active_is_never_deleted() {
        let now = 500 * HOUR_MS;
        let s = segs(&[72, 71], now);
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.1), &RetentionPolicy::default());
        assert_eq!(plan.delete_bases, vec![0]);
        let s = segs(&[500], now);
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.99), &RetentionPolicy::default());
        assert_eq!(plan.delete_count, 0, "the only segment is the active one");
        assert_eq!(plan.new_min_offset, Some(0));
        assert!(!plan.appends_allowed);
    }

    #[test]
    fn delete_hour_applies_only_under_normal_pressure() {
        let policy = RetentionPolicy {
            delete_hour_utc: Some(4),
            ..RetentionPolicy::default()
        };
        let at_noon = 1_000 * 24 * HOUR_MS + 12 * HOUR_MS;
        let at_four = 1_000 * 24 * HOUR_MS + 4 * HOUR_MS + 59 * 60_000;
        let s = segs(&[100, 1, 0], at_noon);
        assert_eq!(
            plan_deletion(&s, u64::MAX, at_noon, usage(0.5), &policy).delete_count,
            0
        );
        let early = plan_deletion(&s, u64::MAX, at_noon, usage(0.80), &policy);
        assert_eq!(early.pressure, DiskPressure::CleanEarly);
        assert_eq!(early.delete_bases, vec![0], "clean early ignores the hour");
        let s = segs(&[100, 1, 0], at_four);
        assert_eq!(
            plan_deletion(&s, u64::MAX, at_four, usage(0.5), &policy).delete_count,
            1
        );
    }

    #[test]
    fn force_clean_deletes_unexpired_oldest_until_under_clean_ratio() {
        let now = 1_000 * HOUR_MS;
        // 100 GiB disk at 88 %: 12 GiB free. Each segment frees 1 GiB; under 75 % needs 13+.
        let s = segs(&[1; 20], now);
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.88), &RetentionPolicy::default());
        assert_eq!(plan.pressure, DiskPressure::ForceClean);
        assert_eq!(plan.delete_count, 10, "capped per sweep");
        let policy = RetentionPolicy {
            max_segments_per_sweep: 100,
            ..RetentionPolicy::default()
        };
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.88), &policy);
        // 88 % -> after k GiB freed: (88 - k) %; first value < 75 is k = 14.
        assert_eq!(plan.delete_count, 14);
        assert_eq!(plan.new_min_offset, Some(14 * GIB));
        assert!(plan.appends_allowed);
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.95), &policy);
        assert_eq!(plan.pressure, DiskPressure::Refuse);
        assert!(!plan.appends_allowed);
        assert_eq!(plan.delete_count, 19, "everything but the active segment");
    }

    #[test]
    fn force_clean_counts_space_freed_by_expired_segments() {
        let now = 1_000 * HOUR_MS;
        let mut s = segs(&[100, 100, 1, 1, 1, 0], now);
        for seg in &mut s {
            seg.size_bytes = 5 * GIB;
        }
        let policy = RetentionPolicy::default();
        // 86 %: two expired segments free 10 GiB -> 76 %, one more -> 71 %.
        let plan = plan_deletion(&s, u64::MAX, now, usage(0.86), &policy);
        assert_eq!(plan.delete_count, 3);
    }

    #[test]
    fn the_active_segment_and_the_one_prepared_ahead_are_never_deleted() {
        let now = 1_000 * HOUR_MS;
        // Active is segment 3; segment 4 was prepared ahead. All look expired.
        let s = segs(&[500, 500, 500, 500, 500], now);
        let policy = RetentionPolicy::default();
        let plan = plan_deletion(&s, 3 * GIB, now, usage(0.99), &policy);
        assert_eq!(plan.delete_bases, vec![0, GIB, 2 * GIB]);
        assert_eq!(plan.new_min_offset, Some(3 * GIB));
        assert_eq!(plan.active_base, 3 * GIB);
    }

    #[test]
    fn deletion_removes_the_prefix_after_the_derived_parts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        for i in 0..4u64 {
            std::fs::write(dir.join(segment_file_name(i * 4096)), vec![1u8; 4096]).expect("write");
        }
        std::fs::write(dir.join("not-a-segment"), b"x").expect("write");
        let ages = segment_ages(dir).expect("ages");
        assert_eq!(ages.len(), 4);
        let now = ages[0].last_write_ms + 100 * HOUR_MS;
        let plan = plan_deletion(
            &ages,
            3 * 4096,
            now,
            usage(0.1),
            &RetentionPolicy::default(),
        );
        assert_eq!(plan.delete_bases, vec![0, 4096, 8192]);
        let mut derived_calls = Vec::new();
        let report = delete_segments(dir, &plan, &mut |min| {
            // The CommitLog files are still there when the derived parts go.
            assert!(dir.join(segment_file_name(0)).exists());
            derived_calls.push(min);
            Ok(())
        })
        .expect("delete");
        assert_eq!(derived_calls, vec![3 * 4096]);
        assert_eq!(report.deleted_bases, vec![0, 4096, 8192]);
        assert_eq!(report.new_min_offset, Some(3 * 4096));
        let left: Vec<u64> = list_segments(dir)
            .expect("list")
            .iter()
            .map(|s| s.base_offset)
            .collect();
        assert_eq!(left, vec![3 * 4096]);
        assert!(dir.join("not-a-segment").exists());
        // A plan naming the active segment is refused before anything is deleted.
        let bad = RetentionPlan {
            delete_bases: vec![3 * 4096],
            delete_count: 1,
            new_min_offset: None,
            active_base: 3 * 4096,
            pressure: DiskPressure::Refuse,
            appends_allowed: false,
        };
        let err = delete_segments(dir, &bad, &mut |_| Ok(())).expect_err("active");
        assert!(
            matches!(err, RetentionError::WouldDeleteActive { .. }),
            "{err}"
        );
        assert!(dir.join(segment_file_name(3 * 4096)).exists());
        // A failing derived-part deletion stops before any CommitLog file goes.
        std::fs::write(dir.join(segment_file_name(4 * 4096)), vec![1u8; 4096]).expect("write");
        let plan = RetentionPlan {
            delete_bases: vec![3 * 4096],
            delete_count: 1,
            new_min_offset: Some(4 * 4096),
            active_base: 4 * 4096,
            pressure: DiskPressure::Normal,
            appends_allowed: true,
        };
        let err = delete_segments(dir, &plan, &mut |_| Err("cq says no".to_string()))
            .expect_err("derived");
        assert!(err.to_string().contains("cq says no"), "{err}");
        assert!(dir.join(segment_file_name(3 * 4096)).exists());
    }

    #[test]
    fn disk_usage_of_tmp_is_sane() {
        let u = disk_usage(Path::new("/tmp")).expect("statvfs /tmp");
        assert!(u.total_bytes > 0);
        assert!(u.available_bytes <= u.total_bytes);
        let r = u.used_ratio();
        assert!((0.0..=1.0).contains(&r), "{r}");
        let err = disk_usage(Path::new("/definitely/not/here")).expect_err("missing");
        assert!(matches!(err, RetentionError::Statvfs { .. }), "{err}");
    }
}
