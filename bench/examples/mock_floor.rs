//! A floor for the broker's per-request cost: the client library's in-memory mock broker (one
//! blocking std thread per connection reading through a buffer and answering a burst of
//! requests with one write, a mutex around its state, sent messages not kept) pinned to one
//! CPU, for `ramjet-bench` to drive exactly like a real broker. What the machine charges for a
//! request on a plain blocking socket, with none of the storage work:
//! perf/results/session16-2026-12-05.md compares the shard's CPU with it at the same rates.
//! Until session 20 it read each request with two `read` calls, answered each with a `write`
//! and kept every message: at 1 KiB x 97k/s that alone put the floor's p99 at 1.6 ms
//! (0.17 ms now), perf/results/session20-2026-12-06.md.
//!
//! `cargo run --release -p ramjet-bench --example mock_floor -- [CPU]` prints the address to
//! pass as `--namesrv` (it is name server and broker at once) and serves until killed.

use ramjet_net::client::mock::{MockBroker, MockConfig};

fn main() {
    let cpu: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pin_to(cpu);
    let mock = MockBroker::start(MockConfig {
        default_queues: 8,
        keep_messages: false,
        ..MockConfig::default()
    })
    .unwrap_or_else(|e| panic!("mock broker did not start: {e}"));
    // Threads the mock starts inherit this thread's CPU set.
    println!("{}", mock.addr());
    loop {
        std::thread::park();
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set; CPU_SET writes inside it
    // (cpu is checked against the set's capacity first) and sched_setaffinity(0, ..) only
    // reads it for the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            panic!("cpu {cpu} is out of range");
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        panic!(
            "pinning to cpu {cpu} failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
