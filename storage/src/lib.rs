//! ramjet-storage: one shard's disk. CommitLog, ConsumeQueue, IndexFile, checkpoint, recovery,
//! retention.

pub mod checkpoint;
pub mod consumequeue;
pub mod index;
pub mod recovery;
pub mod retention;
