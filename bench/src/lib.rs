//! ramjet-bench: a RocketMQ-protocol load generator that performance engineers can trust.
//!
//! - Thread-per-core: each worker thread is pinned to one of `--cpus`, with its own clients,
//!   producers and consumers; nothing is shared on the hot path. Routes, queues and start
//!   offsets come from the client library (a glommio executor per worker); the load itself runs
//!   on the raw client's plain `ppoll` loop ([`engine`], the default `--client raw`) or on the
//!   client library (`--client full`).
//! - Open loop (`--rate`): each producer sends on a fixed schedule and latency is measured from
//!   the INTENDED send time, so a stalled broker shows up in the percentiles instead of quietly
//!   slowing the load down (coordinated-omission correction). The report adds the generator's
//!   own send lag (actual minus intended send time): milliseconds there mean the generator
//!   itself fell behind (its CPU, or a full `--window` while the broker stalled). Without
//!   `--rate` it runs closed loop at max throughput with `--window` requests in flight per
//!   producer, latency from the actual send.
//! - Latencies go into HDR histograms (µs, 3 significant digits); workers hand interval copies
//!   to the reporter once a second for the live line; the final report prints p50..p99.99 and
//!   max, and can be written as JSON (`--json`) and as an `.hgrm` percentile file (`--hgrm`).
//! - e2e latency: producers stamp the intended send time (µs since the epoch) into the first 8
//!   bytes of each body; consumers subtract it from their clock on arrival.
//! - Catch-up (`consume`): when every queue is read to its end inside the measured window, the
//!   rate is over the time that took (`drained_after_s`), not over the idle rest.

pub mod args;
pub mod engine;
pub mod raw;
pub mod runner;
pub mod stats;
