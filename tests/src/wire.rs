//! A blocking RocketMQ remoting connection over `std::net::TcpStream`, for tests.
//!
//! Frames (spec §1.1): `i32 frameLength` (not counting itself), `i32 type<<24 | headerLength`,
//! header (JSON, type 0, or ROCKETMQ binary, type 1), body. Requests go out in the
//! serialization chosen with [`Conn::set_serialize`]; responses are decoded in whichever of the
//! two the peer used. Frames are encoded and decoded with the project's own codec
//! (`ramjet_core::remoting`); this module adds sockets, opaques and timeouts. Every read is bounded by a timeout, so a broker that stops answering makes
//! a test fail with a message instead of hanging it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ramjet_core::remoting::{decode_command, CodecLimits, RemotingCommand, SerializeType};

/// Flag bit 0: the frame is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: oneway request.
pub const FLAG_ONEWAY: i32 = 2;
/// Largest frame a test accepts from the broker (RocketMQ's default maximum).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Default bound on one request/response exchange.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on connecting.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Request codes used by the tests (spec §2.1).
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const HEART_BEAT: i32 = 34;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
}

/// Response codes used by the tests (spec §2.2).
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const INVALID_PARAMETER: i32 = 29;
    pub const NO_MESSAGE: i32 = 208;
}

/// Header serialization of a frame (the high byte of the second length word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serialize {
    Json,
    Binary,
}

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("i/o with {addr} failed while {during}: {source}")]
    Io {
        addr: SocketAddr,
        during: &'static str,
        source: std::io::Error,
    },
    #[error("{addr} closed the connection while {during}")]
    Closed {
        addr: SocketAddr,
        during: &'static str,
    },
    #[error("no response from {addr} to code {code} (opaque {opaque}) within {waited:?}")]
    Timeout {
        addr: SocketAddr,
        code: i32,
        opaque: i32,
        waited: Duration,
    },
    #[error("bad frame from {addr}: {why}")]
    BadFrame { addr: SocketAddr, why: String },
}

/// One decoded remoting command.
#[derive(Debug, Clone, Default)]
pub struct Command {
    pub code: i32,
    pub language: String,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// Serialization the frame used.
    pub serialize: Option<Serialize>,
}

impl Command {
    /// An ext field, or a test failure naming it.
    pub fn ext_str(&self, name: &str) -> &str {
        match self.ext.get(name) {
            Some(v) => v,
            None => panic!(
                "response (code {}) lacks ext field {name:?}: {:?}",
                self.code, self
            ),
        }
    }

    /// An integer ext field, or a test failure naming it.
    pub fn ext_i64(&self, name: &str) -> i64 {
        let text = self.ext_str(name);
        match text.parse() {
            Ok(v) => v,
            Err(e) => panic!("ext field {name:?} = {text:?} is not an integer: {e}"),
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }
}

/// Encodes a request frame with the project's codec (`ramjet_core::remoting`).
pub fn encode_frame(
    serialize: Serialize,
    code: i32,
    opaque: i32,
    flag: i32,
    ext: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut cmd = RemotingCommand::request(code, opaque)
        .with_serialize_type(match serialize {
            Serialize::Json => SerializeType::Json,
            Serialize::Binary => SerializeType::RocketMq,
        })
        .with_body(body.to_vec());
    cmd.flag = flag;
    for (k, v) in ext {
        cmd = cmd.with_ext(*k, v.clone());
    }
    let mut out = Vec::with_capacity(64 + body.len());
    if let Err(e) = cmd.encode(&mut out) {
        panic!("the test request (code {code}) does not encode: {e}");
    }
    out
}

/// Decodes the part of a frame after its length prefix with the project's codec.
pub fn decode_frame(frame: &[u8]) -> Result<Command, String> {
    let view = decode_command(frame, &CodecLimits::client()).map_err(|e| e.to_string())?;
    let owned = view.to_owned_command();
    Ok(Command {
        code: owned.code,
        language: format!("{:?}", owned.language),
        version: owned.version,
        opaque: owned.opaque,
        flag: owned.flag,
        remark: owned.remark,
        ext: owned.ext_fields.into_iter().collect(),
        body: owned.body.to_vec(),
        serialize: Some(match owned.serialize_type {
            SerializeType::Json => Serialize::Json,
            SerializeType::RocketMq => Serialize::Binary,
        }),
    })
}

/// A blocking connection to a broker or name server.
pub struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    next_opaque: i32,
    serialize: Serialize,
    timeout: Duration,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Result<Conn, WireError> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|source| WireError::Connect { addr, source })?;
        stream.set_nodelay(true).map_err(|source| WireError::Io {
            addr,
            during: "setting TCP_NODELAY",
            source,
        })?;
        Ok(Conn {
            stream,
            addr,
            next_opaque: 1,
            serialize: Serialize::Json,
            timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_serialize(&mut self, s: Serialize) {
        self.serialize = s;
    }

    /// Bound on each [`Conn::call`].
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    fn opaque(&mut self) -> i32 {
        let o = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1) & i32::MAX;
        o
    }

    /// Writes raw bytes (hostile-input tests).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream
            .write_all(bytes)
            .map_err(|source| WireError::Io {
                addr: self.addr,
                during: "writing",
                source,
            })
    }

    /// Sends a request without waiting; returns its opaque.
    pub fn send_request(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> Result<i32, WireError> {
        let opaque = self.opaque();
        let frame = encode_frame(self.serialize, code, opaque, 0, ext, body);
        self.write_raw(&frame)?;
        Ok(opaque)
    }

    /// Sends a oneway request (no response expected).
    pub fn oneway(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> Result<(), WireError> {
        let opaque = self.opaque();
        let frame = encode_frame(self.serialize, code, opaque, FLAG_ONEWAY, ext, body);
        self.write_raw(&frame)
    }

    /// Sends a request and waits (bounded) for the response with its opaque. Requests the
    /// broker sends to us meanwhile (e.g. NOTIFY_CONSUMER_IDS_CHANGED) are skipped.
    pub fn call(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> Result<Command, WireError> {
        let opaque = self.send_request(code, ext, body)?;
        self.wait_response(code, opaque, self.timeout)
    }

    /// Waits for the response to an earlier [`Conn::send_request`].
    pub fn wait_response(
        &mut self,
        code: i32,
        opaque: i32,
        timeout: Duration,
    ) -> Result<Command, WireError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(WireError::Timeout {
                    addr: self.addr,
                    code,
                    opaque,
                    waited: timeout,
                });
            }
            let cmd = match self.read_frame(deadline - now) {
                Ok(cmd) => cmd,
                Err(WireError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(WireError::Timeout {
                        addr: self.addr,
                        code,
                        opaque,
                        waited: timeout,
                    });
                }
                Err(e) => return Err(e),
            };
            if cmd.is_response() && cmd.opaque == opaque {
                return Ok(cmd);
            }
        }
    }

    /// Reads one frame, waiting at most `timeout`.
    pub fn read_frame(&mut self, timeout: Duration) -> Result<Command, WireError> {
        let addr = self.addr;
        let t = timeout.max(Duration::from_millis(1));
        self.stream
            .set_read_timeout(Some(t))
            .map_err(|source| WireError::Io {
                addr,
                during: "setting the read timeout",
                source,
            })?;
        let mut len = [0u8; 4];
        self.read_exact(&mut len, "reading a frame length")?;
        let frame_len = i32::from_be_bytes(len);
        let frame_len = usize::try_from(frame_len)
            .ok()
            .filter(|n| (4..=MAX_FRAME_BYTES).contains(n))
            .ok_or_else(|| WireError::BadFrame {
                addr,
                why: format!("frame length {frame_len}"),
            })?;
        let mut frame = vec![0u8; frame_len];
        self.read_exact(&mut frame, "reading a frame")?;
        decode_frame(&frame).map_err(|why| WireError::BadFrame { addr, why })
    }

    fn read_exact(&mut self, buf: &mut [u8], during: &'static str) -> Result<(), WireError> {
        let addr = self.addr;
        let mut filled = 0;
        while filled < buf.len() {
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => return Err(WireError::Closed { addr, during }),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(WireError::Io {
                        addr,
                        during,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether the peer closed the connection (EOF) within `wait`; data that arrives is read
    /// and discarded. `Ok(false)` = still open when the wait ended.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.stream.set_read_timeout(Some(deadline - now)).is_err() {
                return true;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Half-closes the write side (tests of truncated frames).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_frame_roundtrips() {
        let f = encode_frame(Serialize::Json, 105, 7, 0, &[("topic", "T".into())], b"xy");
        let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(f[4], 0, "JSON serialize type");
        let cmd = decode_frame(&f[4..]).unwrap();
        assert_eq!((cmd.code, cmd.opaque, cmd.flag), (105, 7, 0));
        assert_eq!(cmd.ext.get("topic").map(String::as_str), Some("T"));
        assert_eq!(cmd.body, b"xy");
    }

    #[test]
    fn binary_frame_roundtrips() {
        let f = encode_frame(
            Serialize::Binary,
            105,
            1,
            FLAG_ONEWAY,
            &[("topic", "T".into())],
            b"",
        );
        assert_eq!(f[4], 1, "ROCKETMQ serialize type");
        assert_eq!(&f[8..10], &[0x00, 0x69], "code 105 as int16");
        let cmd = decode_frame(&f[4..]).unwrap();
        assert_eq!((cmd.code, cmd.opaque, cmd.flag), (105, 1, FLAG_ONEWAY));
        assert_eq!(cmd.serialize, Some(Serialize::Binary));
        assert_eq!(cmd.ext.get("topic").map(String::as_str), Some("T"));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(decode_frame(&[0, 0]).is_err());
        assert!(decode_frame(&[0, 0, 0, 9, b'{']).is_err());
        assert!(decode_frame(&[7, 0, 0, 0]).is_err());
        assert!(decode_frame(&[0, 0, 0, 2, b'{', b'x']).is_err());
    }
}
