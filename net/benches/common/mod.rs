//! Shared plumbing of the broker benchmarks (`catchup`, `longpoll`): starting the real `ramjet`
//! binary pinned to a CPU, a blocking remoting connection built on `ramjet_core::remoting`,
//! broker CPU time from `/proc`, and GET_BROKER_RUNTIME_INFO counters.
//!
//! Benchmarks are measurement programs, not tests: failures end the program with a message
//! (`BenchError`), nothing here asserts on timing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ramjet_core::remoting::{decode_command, CodecLimits, CommandView, RemotingCommand};

/// Request codes (spec §2.1).
pub const SEND_MESSAGE_V2: i32 = 310;
pub const SEND_BATCH_MESSAGE: i32 = 320;
pub const PULL_MESSAGE: i32 = 11;
pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
/// Response codes (spec §2.2).
pub const SUCCESS: i32 = 0;
pub const PULL_NOT_FOUND: i32 = 19;
pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
/// PullSysFlag bits (spec §3.2).
pub const PULL_FLAG_SUSPEND: i32 = 0x2;
pub const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;
/// Largest frame the benchmark client accepts.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// How long the broker gets to open its port.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the broker gets to exit after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each blocking read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Receive buffer of the client connection.
pub const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// What went wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad argument {arg:?}: {why}")]
    Arg { arg: String, why: String },
    #[error("i/o failed while {during}: {source}")]
    Io {
        during: String,
        source: std::io::Error,
    },
    #[error("broker did not open {addr} within {waited:?}")]
    StartTimeout { addr: SocketAddr, waited: Duration },
    #[error("bad frame from the broker: {0}")]
    Frame(String),
    #[error("broker answered {what} with code {code}: {remark:?}")]
    Refused {
        what: String,
        code: i32,
        remark: Option<String>,
    },
    #[error("unexpected result: {0}")]
    Check(String),
}

pub fn io_err(during: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let during = during.into();
    move |source| BenchError::Io { during, source }
}

/// `--name value` arguments after `cargo bench ... --`; cargo's own `--bench` flag is ignored.
pub struct Args {
    pairs: BTreeMap<String, String>,
}

impl Args {
    pub fn parse(known: &[&str]) -> Result<Args, BenchError> {
        let mut pairs = BTreeMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if a == "--bench" {
                continue;
            }
            let Some(name) = a.strip_prefix("--") else {
                return Err(BenchError::Arg {
                    arg: a,
                    why: "expected --name value".into(),
                });
            };
            if !known.contains(&name) {
                return Err(BenchError::Arg {
                    arg: a.clone(),
                    why: format!("unknown; known: {known:?}"),
                });
            }
            let Some(v) = it.next() else {
                return Err(BenchError::Arg {
                    arg: a,
                    why: "missing value".into(),
                });
            };
            pairs.insert(name.to_string(), v);
        }
        Ok(Args { pairs })
    }

    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, BenchError>
    where
        T::Err: std::fmt::Display,
    {
        match self.pairs.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| BenchError::Arg {
                arg: format!("--{name} {v}"),
                why: e.to_string(),
            }),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.pairs
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

/// The `ramjet` binary: `--bin`, else `$CARGO_TARGET_DIR/release/ramjet`, else
/// `target/release/ramjet` of the workspace.
pub fn default_bin() -> String {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(d) => format!("{d}/release/ramjet"),
        Err(_) => format!("{}/../target/release/ramjet", env!("CARGO_MANIFEST_DIR")),
    }
}

/// A running `ramjet start` process, pinned with `taskset`; stopped (SIGTERM) on drop.
pub struct BrokerProc {
    child: Option<Child>,
    pub addr: SocketAddr,
}

pub struct BrokerSpec<'a> {
    pub bin: &'a str,
    pub data_dir: &'a Path,
    pub config: Option<&'a Path>,
    pub cpu: usize,
    pub port: u16,
    pub namesrv_port: u16,
    pub zero_copy: bool,
}

impl BrokerProc {
    pub fn start(spec: &BrokerSpec<'_>) -> Result<BrokerProc, BenchError> {
        let cpu = spec.cpu.to_string();
        let port = spec.port.to_string();
        let ns = format!("127.0.0.1:{}", spec.namesrv_port);
        let mut cmd = Command::new("taskset");
        cmd.args([
            "-c", &cpu, spec.bin, "start", "--shards", "1", "--cpus", &cpu,
        ])
        .arg("--data-dir")
        .arg(spec.data_dir)
        .args(["--port", &port, "--listen-ip", "127.0.0.1"])
        .args(["--segment-size-bytes", "67108864", "--namesrv-listen", &ns]);
        if let Some(c) = spec.config {
            cmd.arg("--config").arg(c);
        }
        if !spec.zero_copy {
            cmd.arg("--no-zero-copy");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawning taskset {}", spec.bin)))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], spec.port));
        let mut b = BrokerProc {
            child: Some(child),
            addr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(b);
            }
            if let Some(c) = b.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    b.child = None;
                    return Err(BenchError::Check(format!(
                        "broker exited during start-up: {status}"
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::StartTimeout {
                    addr,
                    waited: START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, wait (bounded), SIGKILL if it is still there.
    pub fn stop(&mut self) -> Result<(), BenchError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(BenchError::Check(format!(
                        "broker pid {pid} did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                    )));
                }
            }
        }
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Broker CPU time: utime+stime from `/proc/<pid>/stat` (clock ticks) and the sum of
/// `/proc/<pid>/task/*/schedstat` run times (ns, finer).
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    pub ticks: u64,
    pub sched_ns: u64,
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

pub fn cpu_time(pid: u32) -> Result<CpuTime, BenchError> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&stat_path).map_err(io_err(format!("reading {stat_path}")))?;
    // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| BenchError::Check(format!("{stat_path} has no comm: {stat:?}")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64, BenchError> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| BenchError::Check(format!("{stat_path} field {} unreadable", i + 3)))
    };
    let ticks = num(11)? + num(12)?;
    let task_dir = format!("/proc/{pid}/task");
    let mut sched_ns = 0u64;
    for e in std::fs::read_dir(&task_dir).map_err(io_err(format!("listing {task_dir}")))? {
        let e = e.map_err(io_err(format!("listing {task_dir}")))?;
        if let Ok(s) = std::fs::read_to_string(e.path().join("schedstat")) {
            sched_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(CpuTime { ticks, sched_ns })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A pipelined blocking connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_opaque: i32,
    out: Vec<u8>,
    frame: Vec<u8>,
    limits: CodecLimits,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Result<Conn, BenchError> {
        let s = TcpStream::connect(addr).map_err(io_err(format!("connecting to {addr}")))?;
        s.set_nodelay(true).map_err(io_err("setting TCP_NODELAY"))?;
        s.set_read_timeout(Some(READ_TIMEOUT))
            .map_err(io_err("setting the read timeout"))?;
        let writer = s.try_clone().map_err(io_err("cloning the socket"))?;
        Ok(Conn {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, s),
            writer,
            next_opaque: 1,
            out: Vec::with_capacity(4096),
            frame: Vec::with_capacity(READ_BUFFER_BYTES),
            limits: CodecLimits::client(),
        })
    }

    /// Writes a request; returns its opaque.
    pub fn send(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> Result<i32, BenchError> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1) & i32::MAX;
        let mut cmd = RemotingCommand::request(code, opaque).with_body(body.to_vec());
        for (k, v) in ext {
            cmd = cmd.with_ext(*k, v.clone());
        }
        self.out.clear();
        cmd.encode(&mut self.out)
            .map_err(|e| BenchError::Frame(format!("request code {code} does not encode: {e}")))?;
        self.writer
            .write_all(&self.out)
            .map_err(io_err(format!("writing request code {code}")))?;
        Ok(opaque)
    }

    /// Reads the next frame and decodes it (borrowing from the connection's frame buffer).
    pub fn read(&mut self) -> Result<CommandView<'_>, BenchError> {
        let mut len = [0u8; 4];
        self.reader
            .read_exact(&mut len)
            .map_err(io_err("reading a frame length"))?;
        let n = i32::from_be_bytes(len);
        let n = usize::try_from(n)
            .ok()
            .filter(|n| (4..=MAX_FRAME_BYTES).contains(n))
            .ok_or_else(|| BenchError::Frame(format!("frame length {n}")))?;
        self.frame.resize(n, 0);
        self.reader
            .read_exact(&mut self.frame)
            .map_err(io_err("reading a frame"))?;
        decode_command(&self.frame, &self.limits).map_err(|e| BenchError::Frame(e.to_string()))
    }

    /// Request and wait for its response (skipping other frames); returns (code, remark, body).
    pub fn call(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> Result<(i32, Option<String>, Vec<u8>), BenchError> {
        let opaque = self.send(code, ext, body)?;
        loop {
            let v = self.read()?;
            if v.is_response() && v.opaque == opaque {
                return Ok((v.code, v.remark().map(str::to_string), v.body.to_vec()));
            }
        }
    }
}

pub fn create_topic(conn: &mut Conn, topic: &str, queues: u32) -> Result<(), BenchError> {
    let ext = [
        ("topic", topic.to_string()),
        ("defaultTopic", "TBW102".to_string()),
        ("readQueueNums", queues.to_string()),
        ("writeQueueNums", queues.to_string()),
        ("perm", "6".to_string()),
        ("topicFilterType", "SINGLE_TAG".to_string()),
        ("topicSysFlag", "0".to_string()),
        ("order", "false".to_string()),
    ];
    let (code, remark, _) = conn.call(UPDATE_AND_CREATE_TOPIC, &ext, &[])?;
    if code != SUCCESS {
        return Err(BenchError::Refused {
            what: format!("creating topic {topic}"),
            code,
            remark,
        });
    }
    Ok(())
}

/// SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE header fields.
pub fn send_ext(topic: &str, queue_id: i32, batch: bool) -> Vec<(&'static str, String)> {
    vec![
        ("a", "bench_producer".to_string()),
        ("b", topic.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", queue_id.to_string()),
        ("f", "0".to_string()),
        ("g", now_ms().to_string()),
        ("h", "0".to_string()),
        ("i", String::new()),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", batch.to_string()),
    ]
}

/// PULL_MESSAGE header fields.
pub fn pull_ext(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max_msgs: u32,
    suspend_ms: u64,
) -> Vec<(&'static str, String)> {
    let mut sys_flag = PULL_FLAG_SUBSCRIPTION;
    if suspend_ms > 0 {
        sys_flag |= PULL_FLAG_SUSPEND;
    }
    vec![
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", queue_id.to_string()),
        ("queueOffset", offset.to_string()),
        ("maxMsgNums", max_msgs.to_string()),
        ("sysFlag", sys_flag.to_string()),
        ("commitOffset", "0".to_string()),
        ("suspendTimeoutMillis", suspend_ms.to_string()),
        ("subscription", "*".to_string()),
        ("subVersion", now_ms().to_string()),
        ("expressionType", "TAG".to_string()),
    ]
}

/// Counts the stored records in a pull body by walking their TOTALSIZE words.
pub fn count_records(body: &[u8]) -> Result<u64, BenchError> {
    let mut at = 0usize;
    let mut n = 0u64;
    while at < body.len() {
        let word = body
            .get(at..at + 4)
            .ok_or_else(|| BenchError::Check(format!("truncated record header at {at}")))?;
        let size = i32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s >= 4 && at + *s <= body.len())
            .ok_or_else(|| {
                BenchError::Check(format!(
                    "record at {at} has size {size}, body is {} bytes",
                    body.len()
                ))
            })?;
        at += size;
        n += 1;
    }
    Ok(n)
}

/// GET_BROKER_RUNTIME_INFO as a map (the JSON `{"table": {...}}` body).
pub fn runtime_info(conn: &mut Conn) -> Result<BTreeMap<String, String>, BenchError> {
    let (code, remark, body) = conn.call(GET_BROKER_RUNTIME_INFO, &[], &[])?;
    if code != SUCCESS {
        return Err(BenchError::Refused {
            what: "GET_BROKER_RUNTIME_INFO".into(),
            code,
            remark,
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| BenchError::Frame(format!("runtime info is not JSON: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(t) = v.get("table").and_then(|t| t.as_object()) {
        for (k, v) in t {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(k.clone(), s);
        }
    }
    Ok(out)
}

pub fn counter(info: &BTreeMap<String, String>, name: &str) -> u64 {
    info.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> Result<(), BenchError> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(BenchError::Check(format!(
            "could not pin the client to cpu {cpu}"
        )))
    }
}

/// A fresh, empty directory.
pub fn fresh_dir(path: &str) -> Result<PathBuf, BenchError> {
    let p = PathBuf::from(path);
    if p.exists() {
        std::fs::remove_dir_all(&p).map_err(io_err(format!("removing {path}")))?;
    }
    std::fs::create_dir_all(&p).map_err(io_err(format!("creating {path}")))?;
    Ok(p)
}

/// Reads every file under `dir` once (brings them into the page cache); returns bytes read.
pub fn warm_page_cache(dir: &Path) -> Result<u64, BenchError> {
    let mut total = 0u64;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io_err(format!("listing {}", d.display())))? {
            let e = e.map_err(io_err(format!("listing {}", d.display())))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(mut f) = std::fs::File::open(&p) {
                loop {
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n as u64,
                    }
                }
            }
        }
    }
    Ok(total)
}
