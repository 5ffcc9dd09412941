//! Runs the real `ramjet` binary as a child process: free ports on 127.0.0.1, a temp data dir,
//! a config file, bounded start-up waits, SIGTERM/SIGKILL and restart on the same directory.
//! Its stdout and stderr go to a log file whose tail is printed when a test fails.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::setup;

/// Bound on a broker start (process spawn to every port accepting).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a graceful stop before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Port step between shards (DESIGN §1: shard i listens on base + 4*i).
pub const SHARD_PORT_STEP: u16 = 4;
/// Lines of the broker log printed when a test fails.
pub const LOG_TAIL_LINES: usize = 150;
/// Ports handed out are drawn from here (below Linux's ephemeral range 32768..).
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Durability mode (`[store] flush`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Sync,
    Async,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub shards: usize,
    pub flush: Flush,
    pub segment_size_bytes: u64,
    /// Extra TOML lines appended to the `[broker]` section.
    pub broker_toml: String,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            shards: 1,
            flush: Flush::Async,
            segment_size_bytes: 64 * 1024 * 1024,
            broker_toml: String::new(),
        }
    }
}

impl BrokerSpec {
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    pub fn flush(mut self, f: Flush) -> Self {
        self.flush = f;
        self
    }
}

static RESERVED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Picks `namesrv` + a base port such that namesrv, and for each shard P-2, P, P+1, are free
/// now and not handed out before in this process.
fn pick_ports(shards: usize) -> (u16, u16) {
    let span = 4 + SHARD_PORT_STEP * shards as u16 + 4;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let start = rng.gen_range(PORT_RANGE.start..PORT_RANGE.end - span);
        let namesrv = start;
        let base = start + 4;
        let mut wanted = vec![namesrv];
        for i in 0..shards as u16 {
            let p = base + SHARD_PORT_STEP * i;
            wanted.extend([p - 2, p, p + 1]);
        }
        let mut guard = match RESERVED_PORTS.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let reserved = guard.get_or_insert_with(HashSet::new);
        if wanted.iter().any(|p| reserved.contains(p)) {
            continue;
        }
        let free = wanted
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
        if free {
            reserved.extend(wanted.iter().copied());
            return (namesrv, base);
        }
    }
    panic!("found no free block of {span} ports in {PORT_RANGE:?}");
}

/// A running (or stopped) ramjet process with its directory and ports.
pub struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    spec: BrokerSpec,
    namesrv_port: u16,
    base_port: u16,
    starts: u32,
}

impl Broker {
    /// Starts a broker and waits until the name server and every shard accept connections.
    pub fn start(spec: BrokerSpec) -> Broker {
        let bin = setup::ramjet_bin();
        let dir = setup::temp_dir("ramjet-e2e-");
        let (namesrv_port, base_port) = pick_ports(spec.shards);
        let mut b = Broker {
            child: None,
            dir,
            spec,
            namesrv_port,
            base_port,
            starts: 0,
        };
        b.write_config();
        b.spawn(bin);
        b
    }

    pub fn spec(&self) -> &BrokerSpec {
        &self.spec
    }

    /// The data directory (`[broker] data_dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ramjet.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    pub fn namesrv_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.namesrv_port))
    }

    /// `127.0.0.1:port` of the name server, as clients take it.
    pub fn namesrv(&self) -> String {
        self.namesrv_addr().to_string()
    }

    /// Main listening address of shard `i`.
    pub fn shard_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + SHARD_PORT_STEP * i as u16))
    }

    pub fn shards(&self) -> usize {
        self.spec.shards
    }

    fn write_config(&self) {
        let flush = match self.spec.flush {
            Flush::Sync => "sync",
            Flush::Async => "async",
        };
        let text = format!(
            "[broker]\n\
             listen_ip = \"127.0.0.1\"\n\
             advertise_ip = \"127.0.0.1\"\n\
             base_port = {base}\n\
             shards = {shards}\n\
             data_dir = \"{data}\"\n\
             namesrv_addrs = [\"127.0.0.1:{ns}\"]\n\
             {extra}\n\
             [namesrv]\n\
             listen = \"127.0.0.1:{ns}\"\n\
             \n\
             [store]\n\
             flush = \"{flush}\"\n\
             segment_size_bytes = {seg}\n\
             tail_cache_bytes = {tail}\n\
             index_slots = 4096\n\
             index_entries = 16384\n",
            base = self.base_port,
            shards = self.spec.shards,
            data = self.data_dir().display(),
            ns = self.namesrv_port,
            extra = self.spec.broker_toml,
            seg = self.spec.segment_size_bytes,
            tail = 16 * 1024 * 1024,
        );
        if let Err(e) = std::fs::write(self.config_path(), text) {
            panic!("cannot write {}: {e}", self.config_path().display());
        }
    }

    /// The command line (after the binary).
    fn args(&self) -> Vec<String> {
        vec![
            "start".into(),
            "--config".into(),
            self.config_path().display().to_string(),
        ]
    }

    fn spawn(&mut self, bin: &Path) {
        self.starts += 1;
        let mut log = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            Ok(f) => f,
            Err(e) => panic!("cannot open {}: {e}", self.log_path().display()),
        };
        let args = self.args();
        let _ = writeln!(
            log,
            "==== e2e: start #{} : {} {}",
            self.starts,
            bin.display(),
            args.join(" ")
        );
        let err_log = match log.try_clone() {
            Ok(f) => f,
            Err(e) => panic!("cannot clone the log handle: {e}"),
        };
        let child = Command::new(bin)
            .args(&args)
            .env(
                "RAMJET_LOG",
                std::env::var("RAMJET_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn();
        match child {
            Ok(c) => self.child = Some(c),
            Err(e) => panic!("cannot start {}: {e}", bin.display()),
        }
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addrs = vec![self.namesrv_addr()];
        addrs.extend((0..self.spec.shards).map(|i| self.shard_addr(i)));
        let mut pending = addrs.clone();
        while !pending.is_empty() {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "ramjet exited during start-up ({status}); log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                );
            }
            pending.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                self.kill();
                panic!("ramjet did not accept connections on {pending:?} within {START_TIMEOUT:?}; log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit_status().is_none()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns the exit status when the
    /// process stopped on its own.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return None;
                }
            }
        }
    }

    /// Starts the process again on the same directory, config and ports.
    pub fn restart(&mut self) {
        self.kill();
        let bin = setup::ramjet_bin();
        self.spawn(bin);
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last [`LOG_TAIL_LINES`] lines of the log.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[from..].join("\n")
    }

    /// Files under the data dir whose bytes contain `needle`, as paths relative to it.
    pub fn files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let root = self.data_dir();
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(p.strip_prefix(&root).map(Path::to_path_buf).unwrap_or(p));
                    }
                }
            }
        }
        found.sort();
        found
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let running = self.is_running();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- ramjet log ({}; process was {}) last {LOG_TAIL_LINES} lines ----\n{}\n---- end of ramjet log ----",
                self.log_path().display(),
                if running { "running" } else { "NOT running" },
                self.log_tail()
            );
        }
    }
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let r = File::create(&p).and_then(|mut f| f.write_all(text));
    if let Err(e) = r {
        panic!("cannot write {}: {e}", p.display());
    }
    p
}
