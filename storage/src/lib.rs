//! ramjet-storage: one shard's disk.

