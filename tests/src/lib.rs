//! End-to-end test support: starts the real ramjet binary.
