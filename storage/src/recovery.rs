//! CommitLog recovery: find where the valid CommitLog ends, cut a torn tail, refuse corruption.
//!
//! Runs once when a store opens, before the writer starts, with blocking `std::fs` I/O.
//!
//! What it does, in order:
//! 1. Lists the segment files of `commitlog/` (20-digit zero-padded start offsets) and checks
//!    that they are contiguous (`base[i+1] == base[i] + segment_size`) and no longer than a
//!    segment.
//! 2. Scans from the start of the segment holding `min(dispatch_from_offset, durable_offset)`
//!    (RocketMQ, too, re-scans whole files), record by record: magic, TOTALSIZE, field lengths
//!    (via [`RecordView::parse`]), body CRC ([`RecordView::verify_crc`]) and that the
//!    PHYSICALOFFSET field equals the record's position. A blank marker whose length reaches the
//!    end of the segment ends that segment. Each valid record at or past `dispatch_from_offset`
//!    is handed to `on_record` so that the caller re-dispatches its ConsumeQueue unit and
//!    IndexFile entries (dispatch must be idempotent: a unit is placed by its queue offset).
//!    Records written with RocketMQ 5.x's `__CRC32#` property (the store's `append_prop_crc`)
//!    carry a CRC of the whole record ([`RecordView::verify_prop_crc`]): a record whose property
//!    is present and wrong is invalid, exactly like a body CRC mismatch (unless it also shows
//!    the zero/control bytes of the heuristic below, which then decides). The body CRC alone does
//!    not cover the topic and properties at the end of a record, so a record past
//!    `durable_offset` that lacks a valid `__CRC32#` although one is expected
//!    ([`RecoveryOptions::expect_prop_crc`] and the record before it, if any in the scan, had
//!    one: a write torn inside the property leaves it unrecognisable), or that lacks the property
//!    and whose topic holds control bytes or whose properties hold NUL bytes (the fallback for
//!    records written without it), counts as valid only when a valid entry follows it.
//! 3. The first position that is not a valid record or blank marker is the candidate end `P`.
//!    - If `P` is below `durable_offset` (the checkpoint says it was fdatasync'ed), the bad bytes
//!      are acknowledged data gone bad: [`RecoveryError::Corrupt`].
//!    - Otherwise the rest of that segment and every later segment are searched for a valid
//!      record (magic, PHYSICALOFFSET equal to its own position, structure, CRC). If one exists,
//!      the bad bytes sit before valid data. One crash explains that: the writes in flight
//!      (up to [`RecoveryOptions::max_in_flight_bytes`]) complete in any order, so a later
//!      one can land while an earlier one never did. That is accepted as a torn tail (below)
//!      only when a whole sector of zeros (never written) lies between `P` and the next valid
//!      record (or zeros run from `P`, TOTALSIZE included, to its sector's end: a lost
//!      rewrite of the partial block at a flush point) and every non-zero byte after `P` is
//!      within that bound; nothing there was acknowledged under `flush = sync` (an
//!      acknowledgement needs every byte below it written and synced). Anything else is
//!      [`RecoveryError::Corrupt`], naming the segment file, the offset and the next valid
//!      record. Nothing is modified in either error case.
//!    - If none exists (or the hole is accepted), `P` is the end: the non-zero bytes from `P`
//!      to the end of its segment are overwritten with zeros and fdatasync'ed (so a partial
//!      record can never resurface, e.g. after a later write lengthens the valid data up to
//!      it), and later segments (no valid record, or only records cut with the hole) are
//!      deleted.
//!
//! What it deliberately does not do: skip bad records, guess record boundaries below the end,
//! or touch ConsumeQueue/IndexFile files (the caller truncates units at or past
//! [`RecoveryReport::end_offset`] and re-dispatches through `on_record`).
//!
//! Cost: one sequential read of the scanned segments, plus (with zero-filled preallocation) of
//! the unwritten rest of the active segment; the body CRC runs at memory speed (crc32fast).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ramjet_core::record::{
    blank_len, PropCrc, RecordView, BLANK_RECORD_LEN, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2,
    MIN_RECORD_LEN,
};

use crate::checkpoint::Checkpoint;

/// Digits of a segment file name (RocketMQ `UtilAll.offset2FileName`).
pub const SEGMENT_NAME_DIGITS: usize = 20;
/// Bytes read per `pread` while scanning.
pub const SCAN_WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// Largest record recovery accepts unless told otherwise: a 4 MiB body plus RocketMQ's 64 KiB
/// for the other fields (the store passes its own `max_record_bytes`).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024 + 256;
/// Zeros written per `pwrite` when cutting a torn tail.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes of a record head needed to recognise a record start while searching: TOTALSIZE, magic,
/// ..., PHYSICALOFFSET (ends at 36).
const PROBE_BYTES: usize = 36;
const PHYSICAL_OFFSET_POS: usize = 28;
/// Smallest unit a device writes whole (a sector): a write interrupted by a power loss leaves
/// sectors either written or not.
const SECTOR_BYTES: u64 = 512;
/// Bytes of a record's TOTALSIZE field (its first).
const TOTAL_SIZE_BYTES: u64 = 4;
/// Why a position of zeros is not a record.
const UNWRITTEN_REASON: &str = "zero bytes (unwritten)";

/// The file name of the segment starting at `base_offset`.
pub fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:0width$}", width = SEGMENT_NAME_DIGITS)
}

/// One CommitLog segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub base_offset: u64,
    pub path: PathBuf,
    /// File length in bytes (may be shorter than a segment when not preallocated).
    pub len: u64,
}

/// Segment files of `commitlog_dir`, sorted by base offset. Other names (temp files) are
/// ignored. A missing directory has no segments.
pub fn list_segments(commitlog_dir: &Path) -> Result<Vec<SegmentFile>, RecoveryError> {
    let rd = match std::fs::read_dir(commitlog_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_err("read directory", commitlog_dir, source)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| io_err("read directory", commitlog_dir, source))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != SEGMENT_NAME_DIGITS || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base_offset) = name.parse::<u64>() else {
            continue;
        };
        let path = entry.path();
        let meta = entry
            .metadata()
            .map_err(|source| io_err("stat", &path, source))?;
        if !meta.is_file() {
            continue;
        }
        out.push(SegmentFile {
            base_offset,
            path,
            len: meta.len(),
        });
    }
    out.sort_by_key(|s| s.base_offset);
    Ok(out)
}

/// How to recover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// Size of one segment (the store's `segment_size_bytes`).
    pub segment_size: u64,
    /// Records at or past this offset go to `on_record` (ConsumeQueue/IndexFile durable point).
    pub dispatch_from_offset: u64,
    /// The CommitLog is known durable below this offset (checkpoint); bad bytes below it are
    /// corruption even at the tail.
    pub durable_offset: u64,
    /// Records larger than this are invalid.
    pub max_record_bytes: usize,
    /// Report only: do not zero a torn tail nor delete empty trailing segments.
    pub dry_run: bool,
    /// The log is written with the `__CRC32#` whole-record CRC property (the store's
    /// `append_prop_crc`): a record past `durable_offset` without a valid one, when the record
    /// before it in the scan had one (or it is the first scanned), is trusted only when a valid
    /// entry follows it. Records with the property are checked against it either way.
    pub expect_prop_crc: bool,
    /// Most CommitLog bytes the writer can have in flight at once (the store: writes in
    /// flight x largest write). Writes in flight at a crash may complete in any order, so
    /// unacknowledged records can sit after a sector that was never written. Past
    /// `durable_offset`, a bad position followed by valid records is cut as a torn tail
    /// (instead of [`RecoveryError::Corrupt`]) when a sector that was never written lies
    /// between it and the next valid record (see the module docs), and every non-zero byte
    /// after it is within this many bytes. 0: never (any valid record after a bad one is
    /// corruption).
    pub max_in_flight_bytes: u64,
}

impl RecoveryOptions {
    /// Full recovery: scan and dispatch from the first segment, trust nothing.
    pub fn full(segment_size: u64) -> Self {
        RecoveryOptions {
            segment_size,
            dispatch_from_offset: 0,
            durable_offset: 0,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            dry_run: false,
            expect_prop_crc: true,
            max_in_flight_bytes: 0,
        }
    }

    /// Recovery bounded by a checkpoint (full recovery when there is none).
    pub fn from_checkpoint(segment_size: u64, checkpoint: Option<&Checkpoint>) -> Self {
        let mut o = RecoveryOptions::full(segment_size);
        if let Some(cp) = checkpoint {
            o.dispatch_from_offset = cp.dispatch_from_offset();
            o.durable_offset = cp.commitlog_durable_offset;
        }
        o
    }
}

/// A torn tail that recovery cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    pub segment: PathBuf,
    /// Global offset of the first invalid byte (the new end).
    pub offset: u64,
    /// Non-zero bytes found from `offset` to the end of the segment, now zeroed (0 in dry run
    /// means nothing was written).
    pub bytes_zeroed: u64,
    /// Why the bytes at `offset` are not a record.
    pub reason: String,
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Where the next record goes: the end of the last valid record, or the start of the next
    /// segment when the last one ends with a blank marker (or is exactly full).
    pub end_offset: u64,
    /// Lowest offset still stored (first segment's base; equals `end_offset` when empty).
    pub min_offset: u64,
    /// Segment base where the scan started.
    pub scanned_from: u64,
    pub records_scanned: u64,
    /// Records handed to `on_record`.
    pub records_dispatched: u64,
    /// Store timestamp of the last valid record scanned.
    pub last_store_timestamp: Option<i64>,
    /// Set when a torn tail (non-zero bytes past the end) was found.
    pub truncated: Option<TruncatedTail>,
    /// Later segments without any valid record, deleted (or to delete, in dry run).
    pub removed_segments: Vec<PathBuf>,
}

/// Why recovery stopped. Nothing on disk was changed when it returns one of these.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "CommitLog segment {path} is {len} bytes, longer than the segment size {segment_size} \
         (was segment_size_bytes changed?)"
    )]
    SegmentTooLong {
        path: PathBuf,
        len: u64,
        segment_size: u64,
    },
    #[error(
        "CommitLog segments not contiguous: expected {expected_name} after the previous one, \
         found {path} (missing file, or segment_size_bytes changed?)"
    )]
    SegmentGap {
        path: PathBuf,
        expected_name: String,
    },
    #[error(
        "corrupt CommitLog: segment {segment}, offset {offset} (position {position} in the file): \
         {reason}; {context}. Acknowledged data may be damaged: restore the segment from a \
         replica or backup, or move it aside knowing what is lost"
    )]
    Corrupt {
        segment: PathBuf,
        /// Global CommitLog offset of the bad record.
        offset: u64,
        /// Byte position inside the segment file.
        position: u64,
        reason: String,
        /// Why this is not a torn tail.
        context: String,
    },
    #[error(
        "CommitLog ends at offset {recovered_end} but the checkpoint says everything below \
         {durable_offset} was durable: segment files are missing or were truncated"
    )]
    DurableDataMissing {
        recovered_end: u64,
        durable_offset: u64,
    },
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> RecoveryError {
    RecoveryError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl RecoveryError {
    /// The store-level error: corruption keeps its segment and offset, the rest names `dir`.
    pub fn into_store_error(self, dir: &Path) -> crate::error::StoreError {
        use crate::error::StoreError;
        match self {
            RecoveryError::Corrupt {
                segment,
                offset,
                reason,
                context,
                ..
            } => StoreError::Corrupt {
                segment,
                offset,
                reason: format!("{reason}; {context}"),
            },
            RecoveryError::Io { op, path, source } => StoreError::Io { op, path, source },
            other => StoreError::Recovery {
                dir: dir.to_path_buf(),
                reason: other.to_string(),
            },
        }
    }
}

/// A read window over one segment file. Bytes past the end of the file (up to the segment size)
/// read as zeros, like a preallocated file.
struct SegmentReader {
    file: File,
    path: PathBuf,
    file_len: u64,
    segment_size: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl SegmentReader {
    fn open(seg: &SegmentFile, segment_size: u64) -> Result<Self, RecoveryError> {
        let file = File::open(&seg.path).map_err(|source| io_err("open", &seg.path, source))?;
        advise(&file, 0, 0, libc::POSIX_FADV_RANDOM);
        Ok(SegmentReader {
            file,
            path: seg.path.clone(),
            file_len: seg.len,
            segment_size,
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// Up to `len` bytes at `pos` (fewer only at the end of the segment).
    fn get(&mut self, pos: u64, len: usize) -> Result<&[u8], RecoveryError> {
        let want = (len as u64).min(self.segment_size.saturating_sub(pos)) as usize;
        let have_end = self.buf_start + self.buf.len() as u64;
        if pos < self.buf_start || pos + want as u64 > have_end {
            let fill = want
                .max(SCAN_WINDOW_BYTES)
                .min(self.segment_size.saturating_sub(pos) as usize);
            self.buf.clear();
            self.buf.resize(fill, 0);
            self.buf_start = pos;
            let from_file = self.file_len.saturating_sub(pos).min(fill as u64) as usize;
            let mut done = 0usize;
            while done < from_file {
                let n = self
                    .file
                    .read_at(&mut self.buf[done..from_file], pos + done as u64)
                    .map_err(|source| io_err("read", &self.path, source))?;
                if n == 0 {
                    break; // shorter than stat said: the rest stays zero
                }
                done += n;
            }
            drop_cached(&self.file, pos, done as u64);
        }
        let at = (pos - self.buf_start) as usize;
        Ok(&self.buf[at..at + want])
    }
}

/// Drops the page cache of `len` bytes at `pos` of `file`, which the scan has read and will not
/// read again (`posix_fadvise(POSIX_FADV_DONTNEED)`; clean pages go at once, and the scan only
/// reads). The reader's descriptor is marked `POSIX_FADV_RANDOM` when opened, so the kernel
/// reads no more than each window asks for: read-ahead pages still in flight when their range
/// is dropped would stay (half of a 1 GiB segment did).
///
/// Why: the scan reads the unwritten rest of the active segment too (up to a whole segment of
/// zeros), and left it all in the page cache: memory nobody reads, and every O_DIRECT chunk
/// write into that range had to invalidate cached pages first. Measured with
/// `examples/sync_loop` on a prewritten 1 GiB segment (perf/results/session28-2026-12-07.md):
/// 518-746 MB of the segment cached after the store opened, now none; the open (the scan)
/// took 1.54-1.66 s instead of 1.66-1.99 s; the appenders' rate did not move beyond noise.
fn drop_cached(file: &File, pos: u64, len: u64) {
    if len > 0 {
        advise(file, pos, len, libc::POSIX_FADV_DONTNEED);
    }
}

/// `posix_fadvise` on `len` bytes at `pos` (`len` 0: to the end). Advisory: a failure only costs
/// speed, so it is only logged.
fn advise(file: &File, pos: u64, len: u64, advice: libc::c_int) {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(pos), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise on a descriptor this reader owns; it reads and writes no memory of
    // ours and changes no file contents.
    let rc = unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(file), off, n, advice) };
    if rc != 0 {
        tracing::debug!(
            errno = rc,
            advice,
            "posix_fadvise on a segment during recovery failed"
        );
    }
}

impl Drop for SegmentReader {
    /// The whole file once more: a window's drop covers only the pages wholly inside it, and
    /// the page cache may hold a large folio (up to 2 MiB) across two windows. Those stayed
    /// (2 MiB of every 4 MiB window) until the file was dropped whole.
    fn drop(&mut self) {
        advise(&self.file, 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// What sits at a position.
enum Probe {
    Record {
        len: u64,
        store_timestamp: i64,
        /// Carries a valid `__CRC32#` property.
        prop_crc: bool,
    },
    /// Valid by magic, sizes and CRC, but with zero/control bytes where a torn write ending
    /// inside it would leave them (topic, properties): not dispatched yet.
    Suspicious {
        len: u64,
        reason: String,
    },
    /// A blank marker reaching the end of the segment.
    Blank,
    Invalid(String),
}

fn probe(
    reader: &mut SegmentReader,
    base: u64,
    pos: u64,
    max_record_bytes: usize,
    trust_suspicious: bool,
    expect_prop_crc: bool,
    on_valid: &mut dyn FnMut(&RecordView<'_>, u64),
) -> Result<Probe, RecoveryError> {
    let seg_left = reader.segment_size - pos;
    let head = reader.get(pos, BLANK_RECORD_LEN)?;
    if head.iter().all(|&b| b == 0) {
        return Ok(Probe::Invalid(UNWRITTEN_REASON.to_string()));
    }
    if let Some(len) = blank_len(head) {
        if u64::from(len) == seg_left {
            return Ok(Probe::Blank);
        }
        return Ok(Probe::Invalid(format!(
            "blank marker says {len} bytes remain, the segment has {seg_left}"
        )));
    }
    let total = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if total < MIN_RECORD_LEN as i32 || total as u64 > seg_left || total as usize > max_record_bytes
    {
        return Ok(Probe::Invalid(format!(
            "TOTALSIZE {total} out of range (min {MIN_RECORD_LEN}, max {max_record_bytes}, \
             {seg_left} bytes left in the segment)"
        )));
    }
    let bytes = reader.get(pos, total as usize)?;
    let view = match RecordView::parse(bytes) {
        Ok(v) => v,
        Err(e) => return Ok(Probe::Invalid(e.to_string())),
    };
    if let Err(e) = view.verify_crc() {
        return Ok(Probe::Invalid(e.to_string()));
    }
    let global = base + pos;
    if view.physical_offset() != global as i64 {
        return Ok(Probe::Invalid(format!(
            "PHYSICALOFFSET field says {}, the record is at {global}",
            view.physical_offset()
        )));
    }
    let prop_crc = match view.verify_prop_crc() {
        Ok(PropCrc::Valid) => true,
        Ok(PropCrc::Absent) => false,
        // A wrong `__CRC32#` is damage like a wrong body CRC, except where the record also
        // shows what a torn write leaves (zeros): then the heuristic's rule applies, trusted
        // when known durable or followed by a valid entry.
        Err(e) => match torn_end_sign(&view) {
            Some(sign) if !trust_suspicious => {
                return Ok(Probe::Suspicious {
                    len: u64::from(view.total_size()),
                    reason: format!("{e}; {sign}"),
                })
            }
            Some(_) => false,
            None => return Ok(Probe::Invalid(e.to_string())),
        },
    };
    if !trust_suspicious && !prop_crc {
        let reason = if expect_prop_crc {
            Some(
                "no valid __CRC32# property at the end of the properties, where one is expected \
                 (torn write?)"
                    .to_string(),
            )
        } else {
            torn_end_sign(&view)
        };
        if let Some(reason) = reason {
            return Ok(Probe::Suspicious {
                len: u64::from(view.total_size()),
                reason,
            });
        }
    }
    on_valid(&view, global);
    Ok(Probe::Record {
        len: u64::from(view.total_size()),
        store_timestamp: view.store_timestamp(),
        prop_crc,
    })
}

/// The body CRC does not cover the topic and properties, which come last in a record: a write
/// torn inside them leaves zeros there that parse. Real topics have no control characters and
/// property strings no NUL bytes (RocketMQ writes Java strings), so such bytes in a record that
/// is not followed by a valid one mark it as part of a torn tail.
fn torn_end_sign(view: &RecordView<'_>) -> Option<String> {
    if let Some(b) = view.topic().bytes().find(|&b| b < 0x20) {
        return Some(format!(
            "topic contains control byte {b:#04x} (torn write?)"
        ));
    }
    if view.properties().contains(&0) {
        return Some("properties contain NUL bytes (torn write?)".to_string());
    }
    None
}

/// Searches `[candidates_from, segment end)` of one segment for a valid record; also returns
/// the position just past the last non-zero byte at or after `from` (`from` when all zero).
fn find_valid_record(
    reader: &mut SegmentReader,
    base: u64,
    from: u64,
    candidates_from: u64,
    max_record_bytes: usize,
) -> Result<(Option<u64>, u64), RecoveryError> {
    let seg = reader.segment_size;
    let mut nonzero_end = from;
    let mut q = from;
    let magic_v1 = MESSAGE_MAGIC_CODE_V1.to_be_bytes();
    let magic_v2 = MESSAGE_MAGIC_CODE_V2.to_be_bytes();
    while q < seg {
        let mut candidate = None;
        let advance;
        {
            let chunk = reader.get(q, SCAN_WINDOW_BYTES)?;
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                nonzero_end = nonzero_end.max(q + i as u64 + 1);
            }
            let n = chunk.len();
            // Starts whose probe bytes lie inside this chunk; the others are looked at again
            // from the next chunk, which begins where these end.
            let last_full = n.saturating_sub(PROBE_BYTES);
            let at_segment_end = q + n as u64 >= seg;
            advance = if at_segment_end { n } else { last_full.max(1) };
            let mut i = 0usize;
            while i + PROBE_BYTES <= n && i < advance {
                // Both magics start with 0xDA; jump between occurrences at i + 4.
                match chunk[i + 4..n].iter().position(|&b| b == 0xDA) {
                    None => break,
                    Some(k) => i += k,
                }
                if i + PROBE_BYTES > n || i >= advance {
                    break;
                }
                let m = &chunk[i + 4..i + 8];
                if (m == magic_v1 || m == magic_v2) && q + i as u64 >= candidates_from {
                    let mut po = [0u8; 8];
                    po.copy_from_slice(
                        &chunk[i + PHYSICAL_OFFSET_POS..i + PHYSICAL_OFFSET_POS + 8],
                    );
                    if i64::from_be_bytes(po) == (base + q + i as u64) as i64 {
                        candidate = Some(q + i as u64);
                        break;
                    }
                }
                i += 1;
            }
        }
        if let Some(c) = candidate {
            match probe(
                reader,
                base,
                c,
                max_record_bytes,
                true,
                false,
                &mut |_, _| {},
            )? {
                Probe::Record { .. } => return Ok((Some(c), nonzero_end)),
                Probe::Suspicious { .. } => return Ok((Some(c), nonzero_end)),
                Probe::Blank | Probe::Invalid(_) => {
                    q = c + 1;
                    continue;
                }
            }
        }
        q += advance as u64;
    }
    Ok((None, nonzero_end))
}

/// The position of the first whole sector ([`SECTOR_BYTES`]-aligned in the file) of zeros in
/// `[from, to)` of one segment, if any.
fn zero_sector_in(
    reader: &mut SegmentReader,
    from: u64,
    to: u64,
) -> Result<Option<u64>, RecoveryError> {
    let mut s = from.next_multiple_of(SECTOR_BYTES);
    while s + SECTOR_BYTES <= to {
        let want = ((to - s) / SECTOR_BYTES * SECTOR_BYTES).min(SCAN_WINDOW_BYTES as u64);
        let bytes = reader.get(s, want as usize)?;
        let got = bytes.len() as u64 / SECTOR_BYTES * SECTOR_BYTES;
        if got == 0 {
            break;
        }
        if let Some(i) = bytes[..got as usize]
            .chunks_exact(SECTOR_BYTES as usize)
            .position(|sec| sec.iter().all(|&b| b == 0))
        {
            return Ok(Some(s + i as u64 * SECTOR_BYTES));
        }
        s += got;
    }
    Ok(None)
}

fn zero_range(path: &Path, from: u64, to: u64) -> Result<(), RecoveryError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| io_err("open for truncation", path, source))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(zeros.len());
        file.write_all_at(&zeros[..n], at)
            .map_err(|source| io_err("zero torn tail of", path, source))?;
        at += n as u64;
    }
    file.sync_data()
        .map_err(|source| io_err("fdatasync", path, source))
}

/// Recovers the CommitLog in `commitlog_dir` (see the module docs). `on_record(view, offset)`
/// gets every valid record at or past `opts.dispatch_from_offset`, in offset order.
pub fn recover_commitlog(
    commitlog_dir: &Path,
    opts: &RecoveryOptions,
    on_record: &mut dyn FnMut(&RecordView<'_>, u64),
) -> Result<RecoveryReport, RecoveryError> {
    let seg_size = opts.segment_size;
    let segments = list_segments(commitlog_dir)?;
    for (i, s) in segments.iter().enumerate() {
        if s.len > seg_size {
            return Err(RecoveryError::SegmentTooLong {
                path: s.path.clone(),
                len: s.len,
                segment_size: seg_size,
            });
        }
        if i > 0 && s.base_offset != segments[i - 1].base_offset + seg_size {
            return Err(RecoveryError::SegmentGap {
                path: s.path.clone(),
                expected_name: segment_file_name(segments[i - 1].base_offset + seg_size),
            });
        }
    }
    let Some(first) = segments.first() else {
        if opts.durable_offset > 0 {
            return Err(RecoveryError::DurableDataMissing {
                recovered_end: 0,
                durable_offset: opts.durable_offset,
            });
        }
        return Ok(RecoveryReport::default());
    };
    let min_offset = first.base_offset;
    let scan_target = opts
        .dispatch_from_offset
        .min(opts.durable_offset)
        .max(min_offset);
    let start_idx = segments
        .iter()
        .rposition(|s| s.base_offset <= scan_target)
        .unwrap_or(0);
    let mut report = RecoveryReport {
        min_offset,
        scanned_from: segments[start_idx].base_offset,
        ..RecoveryReport::default()
    };
    let dispatch_from = opts.dispatch_from_offset;
    let dispatched = std::cell::Cell::new(0u64);
    let mut dispatch = |v: &RecordView<'_>, off: u64| {
        if off >= dispatch_from {
            dispatched.set(dispatched.get() + 1);
            on_record(v, off);
        }
    };

    // Whether the last valid record scanned carried a valid `__CRC32#` (None before the first).
    let mut prev_prop_crc: Option<bool> = None;
    for idx in start_idx..segments.len() {
        let seg = &segments[idx];
        let base = seg.base_offset;
        let mut reader = SegmentReader::open(seg, seg_size)?;
        let mut pos = 0u64;
        loop {
            if seg_size - pos < BLANK_RECORD_LEN as u64 {
                // No room left even for a blank marker: the segment is full.
                report.end_offset = base + seg_size;
                break;
            }
            let expect_prop_crc = opts.expect_prop_crc && prev_prop_crc.unwrap_or(true);
            let mut probed = probe(
                &mut reader,
                base,
                pos,
                opts.max_record_bytes,
                false,
                expect_prop_crc,
                &mut dispatch,
            )?;
            if let Probe::Suspicious { len, reason } = probed {
                // Trusted when known durable or followed by a valid entry; else a torn tail.
                let next = pos + len;
                let followed = base + next <= opts.durable_offset
                    || seg_size - next < BLANK_RECORD_LEN as u64
                    || matches!(
                        probe(
                            &mut reader,
                            base,
                            next,
                            opts.max_record_bytes,
                            true,
                            false,
                            &mut |_, _| {}
                        )?,
                        Probe::Record { .. } | Probe::Blank
                    );
                probed = if followed {
                    probe(
                        &mut reader,
                        base,
                        pos,
                        opts.max_record_bytes,
                        true,
                        false,
                        &mut dispatch,
                    )?
                } else {
                    Probe::Invalid(reason)
                };
            }
            match probed {
                Probe::Suspicious { reason, .. } => {
                    // Not reached: re-probed with trust above. Handled like an invalid record.
                    drop(reader);
                    report.records_dispatched = dispatched.get();
                    return finish_at_invalid(&segments, idx, pos, reason, opts, report);
                }
                Probe::Record {
                    len,
                    store_timestamp,
                    prop_crc,
                } => {
                    prev_prop_crc = Some(prop_crc);
                    report.records_scanned += 1;
                    report.last_store_timestamp = Some(store_timestamp);
                    pos += len;
                }
                Probe::Blank => {
                    report.end_offset = base + seg_size;
                    break;
                }
                Probe::Invalid(reason) => {
                    drop(reader);
                    report.records_dispatched = dispatched.get();
                    return finish_at_invalid(&segments, idx, pos, reason, opts, report);
                }
            }
        }
    }
    report.records_dispatched = dispatched.get();
    if report.end_offset < opts.durable_offset {
        return Err(RecoveryError::DurableDataMissing {
            recovered_end: report.end_offset,
            durable_offset: opts.durable_offset,
        });
    }
    Ok(report)
}

/// The scan stopped at `pos` of `segments[idx]`: decide torn tail or corruption.
fn finish_at_invalid(
    segments: &[SegmentFile],
    idx: usize,
    pos: u64,
    reason: String,
    opts: &RecoveryOptions,
    mut report: RecoveryReport,
) -> Result<RecoveryReport, RecoveryError> {
    let seg = &segments[idx];
    let end = seg.base_offset + pos;
    let corrupt = |reason: String, context: String| RecoveryError::Corrupt {
        segment: seg.path.clone(),
        offset: end,
        position: pos,
        reason,
        context,
    };
    if end < opts.durable_offset {
        if reason == UNWRITTEN_REASON {
            return Err(RecoveryError::DurableDataMissing {
                recovered_end: end,
                durable_offset: opts.durable_offset,
            });
        }
        return Err(corrupt(
            reason,
            format!(
                "the checkpoint says the CommitLog was durable up to offset {}",
                opts.durable_offset
            ),
        ));
    }
    let mut reader = SegmentReader::open(seg, opts.segment_size)?;
    // Non-zero bytes are measured from `pos`; valid records are looked for after it (the
    // record at `pos` may parse when it was rejected as the damaged last one).
    let (found, nonzero_end) = find_valid_record(
        &mut reader,
        seg.base_offset,
        pos,
        pos + 1,
        opts.max_record_bytes,
    )?;
    // The first valid record after `pos` (global offset, segment), and the global end of the
    // last non-zero byte of this and the later segments.
    let mut valid_after = found.map(|at| (seg.base_offset + at, &seg.path));
    let mut last_nonzero = seg.base_offset + nonzero_end;
    for later in &segments[idx + 1..] {
        let mut r = SegmentReader::open(later, opts.segment_size)?;
        let (at, nz) = find_valid_record(&mut r, later.base_offset, 0, 0, opts.max_record_bytes)?;
        if valid_after.is_none() {
            valid_after = at.map(|at| (later.base_offset + at, &later.path));
        }
        if nz > 0 {
            last_nonzero = later.base_offset + nz;
        }
    }
    let mut reason = reason;
    if let Some((at, at_path)) = valid_after {
        let where_ = if at_path == &seg.path {
            format!("at offset {at} in the same segment")
        } else {
            format!("at offset {at} in segment {}", at_path.display())
        };
        let hole_to = (at - seg.base_offset).min(opts.segment_size);
        let mut hole = zero_sector_in(&mut reader, pos, hole_to)?;
        let sector_end = pos.next_multiple_of(SECTOR_BYTES).min(hole_to);
        if hole.is_none() && sector_end >= pos + TOTAL_SIZE_BYTES {
            // A lost rewrite of the partial block at a flush point: the sector keeps its old
            // content, the durable records and the zeros written after them, up to its end.
            // At least TOTALSIZE must be zero (no record starts so); 1-3 zero bytes before a
            // sector's end are what every record under 16 MiB starts with, so they prove
            // nothing and the rule above decides.
            let rest = reader.get(pos, (sector_end - pos) as usize)?;
            if rest.iter().all(|&b| b == 0) {
                hole = Some(pos);
            }
        }
        let extent = last_nonzero - end;
        match hole {
            Some(sector) if opts.max_in_flight_bytes > 0 && extent <= opts.max_in_flight_bytes => {
                // Out-of-order completion of the writes in flight at a crash: nothing at or
                // after `end` was acknowledged under `flush = sync` (an acknowledgement needs
                // every byte below it written and synced), so all of it is cut.
                tracing::warn!(
                    segment = %seg.path.display(),
                    offset = end,
                    unwritten_sector = seg.base_offset + sector,
                    next_valid = at,
                    data_end = last_nonzero,
                    "CommitLog: records after a sector that was never written (writes in flight at a crash completed out of order); cutting them as a torn tail"
                );
                reason = format!(
                    "{reason}; the sector at offset {} was never written, and the records after it \
                     (up to offset {last_nonzero}) were still in flight",
                    seg.base_offset + sector
                );
            }
            _ => {
                let why = if hole.is_none() {
                    "and no unwritten sector lies before it".to_string()
                } else {
                    format!(
                        "{extent} bytes past it, more than the {} a crash can leave in flight",
                        opts.max_in_flight_bytes
                    )
                };
                return Err(corrupt(
                    reason,
                    format!("a valid record follows {where_} {why}, so this is not a torn tail"),
                ));
            }
        }
    }
    // A torn tail (or the clean end of the data). Cut it.
    let garbage = nonzero_end.saturating_sub(pos);
    if garbage > 0 {
        tracing::warn!(
            segment = %seg.path.display(),
            offset = end,
            bytes = garbage,
            %reason,
            "CommitLog torn tail: zeroing the bytes past the last valid record"
        );
        if !opts.dry_run {
            zero_range(&seg.path, pos, nonzero_end.min(seg.len))?;
        }
        report.truncated = Some(TruncatedTail {
            segment: seg.path.clone(),
            offset: end,
            bytes_zeroed: if opts.dry_run { 0 } else { garbage },
            reason,
        });
    }
    for later in &segments[idx + 1..] {
        if !opts.dry_run {
            std::fs::remove_file(&later.path)
                .map_err(|source| io_err("remove empty trailing segment", &later.path, source))?;
        }
        tracing::warn!(segment = %later.path.display(), "CommitLog: removed trailing segment without valid records");
        report.removed_segments.push(later.path.clone());
    }
    if !opts.dry_run && !report.removed_segments.is_empty() {
        if let Some(dir) = seg.path.parent() {
            crate::checkpoint::sync_dir(dir)
                .map_err(|source| io_err("fsync directory", dir, source))?;
        }
    }
    report.end_offset = end;
    Ok(report)
}
