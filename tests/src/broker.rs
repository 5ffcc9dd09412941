//! Runs the real `ramjet` binary as a child process: free ports on 127.0.0.1, a temp data dir,
//! a config file, bounded start-up waits, SIGTERM/SIGKILL and restart on the same directory.
//! Its stdout and stderr go to a log file whose tail is printed when a test fails.
//!
//! A process plays one [`Role`]: `ramjet start` (embedded name server + shards, the default),
//! `ramjet namesrv` (name server only) or `ramjet broker` (shards only, registering with a name
//! server of another process). [`Cluster`] starts one name server process plus several broker
//! processes, so that one broker can be killed while the others keep serving.

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

/// Which `ramjet` subcommand a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `ramjet start`: embedded name server plus the shards.
    Start,
    /// `ramjet namesrv`: the name server alone (`shards` is ignored).
    Namesrv,
    /// `ramjet broker`: shards only, registering with the name server at `namesrv`.
    Broker { namesrv: SocketAddr },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub role: Role,
    pub shards: usize,
    pub flush: Flush,
    pub segment_size_bytes: u64,
    /// `[broker] name`: shard i registers as `<name>-s<i>`.
    pub name: String,
    /// Extra TOML lines appended to the `[broker]` section.
    pub broker_toml: String,
    /// Extra TOML lines appended to the `[store]` section.
    pub store_toml: String,
    /// `[broker] data_dir` somewhere else than the process's temp dir (a file system the test
    /// mounted, say); `None`: `data` inside the temp dir.
    pub data_dir: Option<PathBuf>,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            role: Role::Start,
            shards: 1,
            flush: Flush::Async,
            segment_size_bytes: 64 * 1024 * 1024,
            name: "ramjet".to_string(),
            broker_toml: String::new(),
            store_toml: String::new(),
            data_dir: None,
        }
    }
}

impl BrokerSpec {
    /// A `ramjet namesrv` process.
    pub fn namesrv_only() -> Self {
        BrokerSpec {
            role: Role::Namesrv,
            shards: 0,
            ..BrokerSpec::default()
        }
    }
    /// A `ramjet broker` process named `name` registering with the name server at `namesrv`.
    pub fn broker_only(namesrv: SocketAddr, name: &str) -> Self {
        BrokerSpec {
            role: Role::Broker { namesrv },
            name: name.to_string(),
            ..BrokerSpec::default()
        }
    }
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    pub fn flush(mut self, f: Flush) -> Self {
        self.flush = f;
        self
    }
    /// ACL on (`broker.acl_enable`), accounts from `file`, looked at again every 100 ms.
    pub fn acl(mut self, file: &Path) -> Self {
        self.broker_toml.push_str(&format!(
            "acl_enable = true\nacl_file = \"{}\"\nacl_reload_interval_ms = 100\n",
            file.display()
        ));
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
    /// Shards this process serves (none for a name server).
    pub fn shard_count(&self) -> usize {
        match self.role {
            Role::Namesrv => 0,
            Role::Start | Role::Broker { .. } => self.shards,
        }
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
    /// Port of the embedded (`start`) or standalone (`namesrv`) name server; reserved but
    /// unused for `broker`.
    namesrv_port: u16,
    base_port: u16,
    starts: u32,
}

impl Broker {
    /// Starts a broker and waits until the name server and every shard accept connections.
    pub fn start(spec: BrokerSpec) -> Broker {
        let bin = setup::ramjet_bin();
        let dir = setup::temp_dir("ramjet-e2e-");
        let (namesrv_port, base_port) = pick_ports(spec.shard_count());
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
        match &self.spec.data_dir {
            Some(d) => d.clone(),
            None => self.dir.path().join("data"),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("ramjet.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// The name server this process runs (`start`, `namesrv`) or registers with (`broker`).
    pub fn namesrv_addr(&self) -> SocketAddr {
        match &self.spec.role {
            Role::Broker { namesrv } => *namesrv,
            Role::Start | Role::Namesrv => SocketAddr::from(([127, 0, 0, 1], self.namesrv_port)),
        }
    }

    /// `127.0.0.1:port` of the name server, as clients take it.
    pub fn namesrv(&self) -> String {
        self.namesrv_addr().to_string()
    }

    /// Runs `ramjet admin --namesrv <this name server> ARGS`: its stdout, or its stderr when
    /// it fails.
    pub fn admin_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(setup::ramjet_bin())
            .arg("admin")
            .args(["--namesrv", &self.namesrv()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run ramjet admin {args:?}: {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Main listening address of shard `i`.
    pub fn shard_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + SHARD_PORT_STEP * i as u16))
    }

    pub fn shards(&self) -> usize {
        self.spec.shard_count()
    }

    /// The broker name shard `i` registers with (`<name>-s<i>`).
    pub fn shard_broker_name(&self, i: usize) -> String {
        format!("{}-s{i}", self.spec.name)
    }

    fn write_config(&self) {
        let flush = match self.spec.flush {
            Flush::Sync => "sync",
            Flush::Async => "async",
        };
        let text = format!(
            "[broker]\n\
             name = \"{name}\"\n\
             listen_ip = \"127.0.0.1\"\n\
             advertise_ip = \"127.0.0.1\"\n\
             base_port = {base}\n\
             shards = {shards}\n\
             data_dir = \"{data}\"\n\
             namesrv_addrs = [\"{ns_addr}\"]\n\
             {extra}\n\
             [namesrv]\n\
             listen = \"127.0.0.1:{ns}\"\n\
             \n\
             [store]\n\
             flush = \"{flush}\"\n\
             segment_size_bytes = {seg}\n\
             tail_cache_bytes = {tail}\n\
             write_pool_bytes = {pool}\n\
             index_slots = 4096\n\
             index_entries = 16384\n\
             {store_extra}\n",
            name = self.spec.name,
            base = self.base_port,
            shards = self.spec.shards,
            data = self.data_dir().display(),
            ns_addr = self.namesrv_addr(),
            ns = self.namesrv_port,
            extra = self.spec.broker_toml,
            store_extra = self.spec.store_toml,
            seg = self.spec.segment_size_bytes,
            tail = 16 * 1024 * 1024,
            // Small like the tail cache: the write buffers preallocated at start (pool + tail
            // cache by default) are mapped in the background, CPU the tests do not need.
            pool = 16 * 1024 * 1024,
        );
        if let Err(e) = std::fs::write(self.config_path(), text) {
            panic!("cannot write {}: {e}", self.config_path().display());
        }
    }

    /// The command line (after the binary).
    fn args(&self) -> Vec<String> {
        let command = match self.spec.role {
            Role::Start => "start",
            Role::Namesrv => "namesrv",
            Role::Broker { .. } => "broker",
        };
        vec![
            command.into(),
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
        let mut addrs = Vec::new();
        if matches!(self.spec.role, Role::Start | Role::Namesrv) {
            addrs.push(self.namesrv_addr());
        }
        addrs.extend((0..self.shards()).map(|i| self.shard_addr(i)));
        let mut pending = addrs.clone();
        while !pending.is_empty() {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "ramjet exited during start-up ({status}); log {}:\n{}",
                    self.log_path().display(),
                    self.log_tail()
                );
            }
            // The process's own "ready" line first: until the previous process's listening
            // sockets are gone (io_uring tears a ring down after the process is reaped), a
            // connect can still land in the old socket's backlog and be reset when it closes.
            // The new process binds without SO_REUSEPORT, so it prints "ready" only after the
            // old sockets left LISTEN.
            if self.printed_ready() {
                pending
                    .retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
                if pending.is_empty() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                self.kill();
                panic!("ramjet did not accept connections on {pending:?} within {START_TIMEOUT:?}; log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the current start (the log after its `==== e2e: start #N` marker) printed
    /// `ramjet: ready`.
    fn printed_ready(&self) -> bool {
        let text = self.log_text();
        let marker = format!("==== e2e: start #{} :", self.starts);
        text.rfind(&marker)
            .is_some_and(|at| text[at..].contains("\nramjet: ready"))
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

/// One `ramjet namesrv` process and several `ramjet broker` processes registering with it,
/// each its own process with its own ports and data dir, so that one broker can be killed (or
/// stopped, restarted) while the name server and the other brokers keep running.
pub struct Cluster {
    /// Dropped (killed) first, then the name server.
    brokers: Vec<Broker>,
    namesrv: Broker,
}

impl Cluster {
    /// Starts the name server, then one broker process per name in `names` (shard i of broker
    /// `n` registers as `<n>-s<i>`), each from `spec` (its role and name are set here). Returns
    /// once every process accepts connections; registration with the name server follows
    /// within milliseconds (wait for a topic's route with [`crate::ops::wait_route`]).
    pub fn start(names: &[&str], spec: BrokerSpec) -> Cluster {
        let namesrv = Broker::start(BrokerSpec::namesrv_only());
        let ns = namesrv.namesrv_addr();
        let brokers = names
            .iter()
            .map(|name| {
                Broker::start(BrokerSpec {
                    role: Role::Broker { namesrv: ns },
                    name: (*name).to_string(),
                    ..spec.clone()
                })
            })
            .collect();
        Cluster { brokers, namesrv }
    }

    /// The name server process.
    pub fn namesrv_process(&self) -> &Broker {
        &self.namesrv
    }

    pub fn namesrv_addr(&self) -> SocketAddr {
        self.namesrv.namesrv_addr()
    }

    /// `127.0.0.1:port` of the name server, as clients take it.
    pub fn namesrv(&self) -> String {
        self.namesrv.namesrv()
    }

    pub fn brokers(&self) -> &[Broker] {
        &self.brokers
    }

    /// Broker process `i` (in the order of the names given to [`Cluster::start`]).
    pub fn broker(&self, i: usize) -> &Broker {
        match self.brokers.get(i) {
            Some(b) => b,
            None => panic!(
                "the cluster has {} broker process(es), not {i}",
                self.brokers.len()
            ),
        }
    }

    pub fn broker_mut(&mut self, i: usize) -> &mut Broker {
        let n = self.brokers.len();
        match self.brokers.get_mut(i) {
            Some(b) => b,
            None => panic!("the cluster has {n} broker process(es), not {i}"),
        }
    }

    /// The broker process whose shard registers as `broker_name`, with the shard index.
    pub fn find_shard(&self, broker_name: &str) -> Option<(usize, usize)> {
        self.brokers.iter().enumerate().find_map(|(p, b)| {
            (0..b.shards())
                .find(|&i| b.shard_broker_name(i) == broker_name)
                .map(|i| (p, i))
        })
    }

    /// Main address of the shard registered as `broker_name`.
    pub fn shard_addr_of(&self, broker_name: &str) -> Option<SocketAddr> {
        self.find_shard(broker_name)
            .map(|(p, i)| self.brokers[p].shard_addr(i))
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
