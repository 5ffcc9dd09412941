//! Master/slave replication at the store level: a master reads whole CommitLog entries from any
//! offset for its slaves, and a slave appends them at exactly the offsets the master gave them,
//! dispatching ConsumeQueue units and IndexFile entries from the records themselves (their
//! queue offsets, tags and keys as the master stored them). What travels and when is the
//! broker's business (`ramjet-net`'s `broker::ha`).

use ramjet_core::record::{parse_entry, sysflag, Entry, BLANK_RECORD_LEN};

use super::{redispatch, Store};
use crate::error::StoreError;

/// What [`Store::append_replica`] did with a run of replicated entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAppend {
    /// Bytes of the input taken (whole entries). Less than the input when the write path is
    /// full ([`Store::wait_writable`] for the next entry, then call again with the rest).
    pub consumed: usize,
    /// The CommitLog offset the next replicated entry must start at.
    pub next_offset: u64,
    /// Records appended.
    pub records: u64,
}

impl Store {
    /// CommitLog offset one past the last appended byte (what a slave reports to its master).
    pub fn end_offset(&self) -> u64 {
        self.inner.log.end_offset()
    }

    /// Copies whole entries from `offset` (about `max` bytes, at least one entry) into `out`
    /// for a slave; returns the offset of the next read (`offset` when nothing is stored
    /// there yet). An end-of-segment marker travels as its 8 bytes, and the next read starts
    /// at the next segment.
    pub fn read_for_replica(
        &self,
        offset: u64,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, StoreError> {
        self.inner.log.replica_read(offset, max, out)
    }

    /// The segment file range [`Store::read_for_replica`] would read (`None`: from the tail
    /// cache, or nothing there yet), so that a caller can read it into the page cache off the
    /// shard first.
    pub fn replica_file_range(
        &self,
        offset: u64,
        max: usize,
    ) -> Option<(std::rc::Rc<std::fs::File>, u64, u64)> {
        self.inner.log.replica_file_range(offset, max)
    }

    /// Appends entries a master sent, which start at CommitLog offset `offset`: each record is
    /// checked (structure, body CRC, its own physical offset) and written byte for byte at the
    /// same offset, then dispatched; a blank marker ends the segment where the master's did.
    /// Refuses, with nothing appended from the bad entry on, when `offset` is not this store's
    /// end or an entry does not fit where the master put it.
    pub fn append_replica(&self, offset: u64, data: &[u8]) -> Result<ReplicaAppend, StoreError> {
        let inner = &*self.inner;
        inner.admit()?;
        let mut next = inner.log.end_offset();
        if offset != next {
            return Err(StoreError::ReplicaDiverged {
                offset,
                reason: format!("this store's CommitLog ends at {next}"),
            });
        }
        let mut at = 0usize;
        let mut records = 0u64;
        while at < data.len() {
            let rest = &data[at..];
            let diverged = |reason: String| StoreError::ReplicaDiverged {
                offset: next,
                reason,
            };
            let view = match parse_entry(rest) {
                Ok(Entry::Blank { len }) => {
                    if rest.len() < BLANK_RECORD_LEN {
                        return Err(diverged("a torn end-of-segment marker".into()));
                    }
                    inner
                        .log
                        .writer
                        .borrow_mut()
                        .roll_at_blank(u64::from(len))?;
                    at += BLANK_RECORD_LEN;
                    next += u64::from(len);
                    continue;
                }
                Ok(Entry::Record(v)) => v,
                Err(e) => return Err(diverged(format!("not a record: {e}"))),
            };
            view.verify_crc()
                .map_err(|e| diverged(format!("record fails its check: {e}")))?;
            if view.physical_offset() != next as i64 {
                return Err(diverged(format!(
                    "the record says it is at offset {}",
                    view.physical_offset()
                )));
            }
            let len = view.total_size() as usize;
            let record = &rest[..len];
            {
                let mut w = inner.log.writer.borrow_mut();
                if !w.fits_in_segment(len) {
                    return Err(diverged(format!(
                        "a {len}-byte record does not fit in this store's segment here (store.segment_size_bytes must be the same on master and slave)"
                    )));
                }
                if !w.has_room(len) {
                    inner.log.signal.raise();
                    break;
                }
                let placed = w.append(len, |_, out| {
                    out.copy_from_slice(record);
                    Ok::<(), StoreError>(())
                })??;
                assert_eq!(placed.offset, next, "a replica append moved");
                assert!(!placed.rolled, "a replica append rolled the segment");
            }
            {
                let mut queues = inner.queues.borrow_mut();
                let mut index = inner.index.borrow_mut();
                redispatch(
                    &mut queues,
                    &mut index,
                    &view,
                    next,
                    &inner.cfg.delay_levels_ms,
                )?;
            }
            let ts = view.store_timestamp();
            inner.appended(1, len as u64, ts);
            if sysflag::is_dispatched(view.sys_flag()) {
                inner.notify_arrival(view.topic(), view.queue_id(), view.queue_offset() + 1);
            }
            records += 1;
            at += len;
            next += len as u64;
        }
        Ok(ReplicaAppend {
            consumed: at,
            next_offset: next,
            records,
        })
    }
}
