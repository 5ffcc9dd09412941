//! The store checkpoint: how far each part of one shard's store is known to be durable.
//!
//! RocketMQ keeps a 4096-byte `checkpoint` file whose first three big-endian int64 fields are the
//! store timestamps of the last flushed CommitLog record, ConsumeQueue unit and IndexFile entry
//! (`StoreCheckpoint.java`; 5.x adds `masterFlushedOffset` and `confirmPhyOffset` at 24 and 32).
//! ramjet keeps that prefix byte for byte and appends what it needs to bound recovery: the
//! CommitLog offset known durable and the CommitLog offsets up to which ConsumeQueue units and
//! IndexFile entries are durable, plus a CRC over the whole thing.
//!
//! Recovery scans the CommitLog from the segment holding
//! [`Checkpoint::dispatch_from_offset`] and re-dispatches every record past it; a missing or
//! stale checkpoint only makes recovery longer, never wrong, because the CommitLog is the
//! source of truth and every record is validated on the way.
//!
//! The file is replaced atomically: write `checkpoint.tmp`, fdatasync it, rename it over
//! `checkpoint`, fsync the directory. It is small (4 KiB) and written from a point the caller
//! chooses (after a flush), so plain blocking `std::fs` is used.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zerocopy::byteorder::big_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// File name inside the store directory (RocketMQ's name).
pub const CHECKPOINT_FILE_NAME: &str = "checkpoint";
/// Temporary file the next checkpoint is written to before the rename.
pub const CHECKPOINT_TMP_FILE_NAME: &str = "checkpoint.tmp";
/// Size of the file on disk: RocketMQ maps one 4 KiB page; ramjet writes the same size.
pub const CHECKPOINT_FILE_BYTES: usize = 4096;
/// "RJCK": marks the ramjet extension after RocketMQ's fields.
pub const CHECKPOINT_MAGIC: u32 = 0x524A_434B;
/// Layout version of the ramjet extension.
pub const CHECKPOINT_VERSION: u32 = 1;

/// On-disk layout (big-endian, like RocketMQ). Bytes 0..40 are RocketMQ 5.x's fields.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
struct CheckpointDisk {
    physic_msg_timestamp: I64,
    logics_msg_timestamp: I64,
    index_msg_timestamp: I64,
    master_flushed_offset: I64,
    confirm_phy_offset: I64,
    magic: U32,
    version: U32,
    commitlog_durable_offset: U64,
    consumequeue_durable_offset: U64,
    index_durable_offset: U64,
    /// CRC32 (IEEE) of the 72 bytes before it.
    crc32: U32,
}

const DISK_BYTES: usize = 76;
const CRC_COVERED_BYTES: usize = 72;
const _: () = assert!(std::mem::size_of::<CheckpointDisk>() == DISK_BYTES);
const _: () = assert!(DISK_BYTES <= CHECKPOINT_FILE_BYTES);

/// What a checkpoint records. Offsets are global CommitLog byte offsets (segment base +
/// position) at record boundaries; timestamps are store timestamps in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Store time of the last CommitLog record known durable (RocketMQ `physicMsgTimestamp`).
    pub physic_msg_timestamp: i64,
    /// Store time of the last message whose ConsumeQueue unit is durable.
    pub logics_msg_timestamp: i64,
    /// Store time of the last message whose IndexFile entries are durable.
    pub index_msg_timestamp: i64,
    /// End of the CommitLog range known durable (everything below was fdatasync'ed).
    pub commitlog_durable_offset: u64,
    /// Every record ending at or below this CommitLog offset has its ConsumeQueue unit durable.
    pub consumequeue_durable_offset: u64,
    /// Every record ending at or below this CommitLog offset has its IndexFile entries durable.
    pub index_durable_offset: u64,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path}: {len} bytes, expected at least {DISK_BYTES}; delete it to force a \
         full CommitLog scan"
    )]
    TooShort { path: PathBuf, len: usize },
    #[error(
        "checkpoint {path}: magic {found:#010x}/version {version}, expected {CHECKPOINT_MAGIC:#010x}/\
         {CHECKPOINT_VERSION} (not a ramjet checkpoint); delete it to force a full CommitLog scan"
    )]
    Unrecognized {
        path: PathBuf,
        found: u32,
        version: u32,
    },
    #[error(
        "checkpoint {path}: CRC {found:#010x} does not match contents ({computed:#010x}); \
         delete it to force a full CommitLog scan"
    )]
    BadCrc {
        path: PathBuf,
        found: u32,
        computed: u32,
    },
}

impl Checkpoint {
    /// The lowest CommitLog offset whose records may lack a durable ConsumeQueue unit or
    /// IndexFile entry: recovery re-dispatches from here.
    pub fn dispatch_from_offset(&self) -> u64 {
        self.consumequeue_durable_offset
            .min(self.index_durable_offset)
            .min(self.commitlog_durable_offset)
    }

    /// The full 4 KiB file image.
    pub fn encode(&self) -> [u8; CHECKPOINT_FILE_BYTES] {
        let mut disk = CheckpointDisk {
            physic_msg_timestamp: I64::new(self.physic_msg_timestamp),
            logics_msg_timestamp: I64::new(self.logics_msg_timestamp),
            index_msg_timestamp: I64::new(self.index_msg_timestamp),
            master_flushed_offset: I64::new(0),
            // RocketMQ 5.x's "confirmPhyOffset" is the same fact as our durable offset.
            confirm_phy_offset: I64::new(clamp_i64(self.commitlog_durable_offset)),
            magic: U32::new(CHECKPOINT_MAGIC),
            version: U32::new(CHECKPOINT_VERSION),
            commitlog_durable_offset: U64::new(self.commitlog_durable_offset),
            consumequeue_durable_offset: U64::new(self.consumequeue_durable_offset),
            index_durable_offset: U64::new(self.index_durable_offset),
            crc32: U32::new(0),
        };
        let crc = crc32fast::hash(&disk.as_bytes()[..CRC_COVERED_BYTES]);
        disk.crc32 = U32::new(crc);
        let mut out = [0u8; CHECKPOINT_FILE_BYTES];
        out[..DISK_BYTES].copy_from_slice(disk.as_bytes());
        out
    }

    /// Parses a file image; `path` is only used in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
        let Some(head) = bytes.get(..DISK_BYTES) else {
            return Err(CheckpointError::TooShort {
                path: path.to_path_buf(),
                len: bytes.len(),
            });
        };
        let disk =
            CheckpointDisk::read_from_bytes(head).map_err(|_| CheckpointError::TooShort {
                path: path.to_path_buf(),
                len: bytes.len(),
            })?;
        if disk.magic.get() != CHECKPOINT_MAGIC || disk.version.get() != CHECKPOINT_VERSION {
            return Err(CheckpointError::Unrecognized {
                path: path.to_path_buf(),
                found: disk.magic.get(),
                version: disk.version.get(),
            });
        }
        let computed = crc32fast::hash(&head[..CRC_COVERED_BYTES]);
        if computed != disk.crc32.get() {
            return Err(CheckpointError::BadCrc {
                path: path.to_path_buf(),
                found: disk.crc32.get(),
                computed,
            });
        }
        Ok(Checkpoint {
            physic_msg_timestamp: disk.physic_msg_timestamp.get(),
            logics_msg_timestamp: disk.logics_msg_timestamp.get(),
            index_msg_timestamp: disk.index_msg_timestamp.get(),
            commitlog_durable_offset: disk.commitlog_durable_offset.get(),
            consumequeue_durable_offset: disk.consumequeue_durable_offset.get(),
            index_durable_offset: disk.index_durable_offset.get(),
        })
    }

    /// Reads `<dir>/checkpoint`. `Ok(None)` when there is none (a new store, or a crash before
    /// the first checkpoint): recover from the start of the CommitLog.
    pub fn load(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE_NAME);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path,
                    op: "open",
                    source,
                })
            }
        };
        let mut buf = Vec::with_capacity(CHECKPOINT_FILE_BYTES);
        Read::take(&mut file, CHECKPOINT_FILE_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(|source| CheckpointError::Io {
                path: path.clone(),
                op: "read",
                source,
            })?;
        Checkpoint::decode(&buf, &path).map(Some)
    }

    /// Atomically replaces `<dir>/checkpoint`: temp file, fdatasync, rename, directory fsync.
    /// After it returns the new checkpoint survives a crash; a crash before leaves the old one.
    pub fn store(&self, dir: &Path) -> Result<(), CheckpointError> {
        let tmp = dir.join(CHECKPOINT_TMP_FILE_NAME);
        let dst = dir.join(CHECKPOINT_FILE_NAME);
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| CheckpointError::Io { path, op, source }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp, "create"))?;
        file.write_all(&self.encode()).map_err(io(&tmp, "write"))?;
        file.sync_data().map_err(io(&tmp, "fdatasync"))?;
        drop(file);
        std::fs::rename(&tmp, &dst).map_err(io(&dst, "rename"))?;
        sync_dir(dir).map_err(io(dir, "fsync directory"))
    }
}

/// fsync a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            physic_msg_timestamp: 1_700_000_000_123,
            logics_msg_timestamp: 1_700_000_000_100,
            index_msg_timestamp: 1_700_000_000_050,
            commitlog_durable_offset: 5 * 1024 * 1024 + 17,
            consumequeue_durable_offset: 4 * 1024 * 1024,
            index_durable_offset: 3 * 1024 * 1024,
        }
    }

    #[test]
    fn rocketmq_prefix_layout_is_big_endian_at_fixed_offsets() {
        let img = sample().encode();
        assert_eq!(img.len(), 4096);
        assert_eq!(&img[0..8], &1_700_000_000_123i64.to_be_bytes());
        assert_eq!(&img[8..16], &1_700_000_000_100i64.to_be_bytes());
        assert_eq!(&img[16..24], &1_700_000_000_050i64.to_be_bytes());
        assert_eq!(&img[24..32], &0i64.to_be_bytes());
        assert_eq!(&img[32..40], &((5 * 1024 * 1024 + 17) as i64).to_be_bytes());
        assert_eq!(&img[40..44], b"RJCK");
        assert!(img[DISK_BYTES..].iter().all(|&b| b == 0));
    }

    #[test]
    fn encode_decode_round_trip() {
        let cp = sample();
        let back = Checkpoint::decode(&cp.encode(), Path::new("x")).expect("decodes");
        assert_eq!(back, cp);
        assert_eq!(back.dispatch_from_offset(), 3 * 1024 * 1024);
    }

    #[test]
    fn flipped_bit_is_detected() {
        let mut img = sample().encode();
        img[50] ^= 0x08;
        let err = Checkpoint::decode(&img, Path::new("cp")).expect_err("bad crc");
        assert!(matches!(err, CheckpointError::BadCrc { .. }), "{err}");
    }

    #[test]
    fn rocketmq_checkpoint_is_unrecognized_and_short_is_too_short() {
        let mut img = [0u8; 4096];
        img[0..8].copy_from_slice(&42i64.to_be_bytes());
        let err = Checkpoint::decode(&img, Path::new("cp")).expect_err("foreign");
        assert!(matches!(
            err,
            CheckpointError::Unrecognized { found: 0, .. }
        ));
        let err = Checkpoint::decode(&img[..40], Path::new("cp")).expect_err("short");
        assert!(matches!(err, CheckpointError::TooShort { len: 40, .. }));
    }

    #[test]
    fn store_and_load_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), None);
        let mut cp = sample();
        cp.store(dir.path()).expect("store");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), Some(cp));
        cp.commitlog_durable_offset += 4096;
        cp.store(dir.path()).expect("store again");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), Some(cp));
        assert!(!dir.path().join(CHECKPOINT_TMP_FILE_NAME).exists());
        let len = std::fs::metadata(dir.path().join(CHECKPOINT_FILE_NAME))
            .expect("meta")
            .len();
        assert_eq!(len, CHECKPOINT_FILE_BYTES as u64);
    }
}
