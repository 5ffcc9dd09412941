//! Registration of a shard with the name servers: REGISTER_BROKER at start, every
//! `register_interval_ms` (30 s), and at once when a topic is created or deleted; on one
//! persistent connection per name server (a name server drops a broker whose registration
//! connection closes). UNREGISTER_BROKER at shutdown.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use ramjet_core::remoting::body::{
    fastjson, DataVersion, RegisterBrokerBody, TopicConfig as WireTopicConfig,
    TopicConfigSerializeWrapper,
};
use ramjet_core::remoting::headers::{RegisterBrokerRequestHeader, UnRegisterBrokerRequestHeader};
use ramjet_core::remoting::{
    decode_frame, encode_frame, CodecLimits, FrameDecode, FrameHead, RemotingCommand, RequestCode,
    ResponseCode, SerializeType,
};

use super::shard::Broker;
use crate::runtime::{self, TcpStream};

/// How long one registration request may take (RocketMQ uses 24 s; a local name server
/// answers in microseconds).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Registration trigger shared by the handlers (topic created) and the registration loop.
pub struct Registrar {
    addrs: Vec<String>,
    wanted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    pub registrations_ok: Cell<u64>,
    pub registrations_failed: Cell<u64>,
}

impl Registrar {
    pub fn new(addrs: Vec<String>) -> Registrar {
        Registrar {
            addrs,
            wanted: Cell::new(false),
            waker: RefCell::new(None),
            registrations_ok: Cell::new(0),
            registrations_failed: Cell::new(0),
        }
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Asks for a registration now (topic table changed).
    pub fn request_now(&self) {
        self.wanted.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

struct Wanted<'a>(&'a Registrar);

impl Future for Wanted<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.wanted.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Appends one request frame with the given opaque to the buffer.
pub(crate) type EncodeRequest<'a> = &'a dyn Fn(&mut Vec<u8>, i32) -> Result<(), String>;

/// One persistent request/response connection to a name server (or, for a slave, to its
/// master).
pub(crate) struct Link {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    next_opaque: i32,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("i/o with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("{addr} sent an undecodable reply: {message}")]
    Protocol { addr: String, message: String },
    #[error("{addr} answered code {code}: {remark}")]
    Refused {
        addr: String,
        code: i32,
        remark: String,
    },
}

impl Link {
    /// The peer's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn new(addr: String) -> Link {
        Link {
            addr,
            stream: None,
            buf: Vec::new(),
            next_opaque: 1,
        }
    }

    /// Sends one request frame and waits for the response with the same opaque; returns it
    /// when its code is SUCCESS.
    pub(crate) async fn request(
        &mut self,
        header: EncodeRequest<'_>,
        timeout: Duration,
    ) -> Result<RemotingCommand, LinkError> {
        let addr = self.addr.clone();
        let fut = async {
            if self.stream.is_none() {
                let s =
                    TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|e| LinkError::Connect {
                            addr: addr.clone(),
                            message: e.to_string(),
                        })?;
                let _ = s.set_nodelay(true);
                self.stream = Some(s);
                self.buf.clear();
            }
            let opaque = self.next_opaque;
            self.next_opaque = self.next_opaque.wrapping_add(1) & i32::MAX;
            let mut out = Vec::with_capacity(4096);
            header(&mut out, opaque).map_err(|message| LinkError::Protocol {
                addr: addr.clone(),
                message,
            })?;
            let Some(stream) = self.stream.as_mut() else {
                return Err(LinkError::Connect {
                    addr: addr.clone(),
                    message: "no stream".into(),
                });
            };
            stream
                .write_all(&out)
                .await
                .map_err(|source| LinkError::Io {
                    addr: addr.clone(),
                    source,
                })?;
            let limits = CodecLimits::client();
            let mut chunk = [0u8; 8192];
            loop {
                // Decode what is buffered; keep unrelated frames out of the way.
                loop {
                    match decode_frame(&self.buf, &limits) {
                        Ok(FrameDecode::NeedMore { .. }) => break,
                        Ok(FrameDecode::Frame { consumed, command }) => {
                            let reply = match command {
                                Ok(v) if v.is_response() && v.opaque == opaque => {
                                    Some(v.to_owned_command())
                                }
                                Ok(_) => None,
                                Err(e) => {
                                    return Err(LinkError::Protocol {
                                        addr: addr.clone(),
                                        message: e.to_string(),
                                    })
                                }
                            };
                            self.buf.drain(..consumed);
                            if let Some(reply) = reply {
                                if reply.code == ResponseCode::SUCCESS {
                                    return Ok(reply);
                                }
                                return Err(LinkError::Refused {
                                    addr: addr.clone(),
                                    code: reply.code,
                                    remark: reply.remark.clone().unwrap_or_default(),
                                });
                            }
                        }
                        Err(e) => {
                            return Err(LinkError::Protocol {
                                addr: addr.clone(),
                                message: e.to_string(),
                            })
                        }
                    }
                }
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|source| LinkError::Io {
                        addr: addr.clone(),
                        source,
                    })?;
                if n == 0 {
                    return Err(LinkError::Io {
                        addr: addr.clone(),
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    });
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        let r = match runtime::timeout(timeout, fut).await {
            Some(r) => r,
            None => Err(LinkError::Timeout {
                addr: self.addr.clone(),
                secs: timeout.as_secs(),
            }),
        };
        if matches!(
            r,
            Err(LinkError::Io { .. } | LinkError::Timeout { .. } | LinkError::Protocol { .. })
        ) {
            self.stream = None; // reconnect next time
        }
        r
    }
}

/// The REGISTER_BROKER body of this shard.
fn register_body(b: &Broker) -> Result<Vec<u8>, String> {
    let v = b.topics.data_version();
    let table = b
        .topics
        .all()
        .into_iter()
        .map(|t| {
            let mut w =
                WireTopicConfig::new(t.topic_name.clone(), t.read_queue_nums as i32, t.perm);
            w.write_queue_nums = t.write_queue_nums as i32;
            w.topic_filter_type = t.topic_filter_type.clone();
            w.topic_sys_flag = t.topic_sys_flag;
            w.order = t.order;
            w.attributes = t.attributes.clone();
            (t.topic_name, w)
        })
        .collect();
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            data_version: DataVersion {
                counter: v.counter,
                state_version: v.state_version,
                timestamp: v.timestamp,
            },
            topic_config_table: table,
        },
    };
    fastjson::to_vec(&body, fastjson::JsonStyle::Standard).map_err(|e| e.to_string())
}

async fn register_once(b: &Broker, links: &mut [Link]) {
    let body = match register_body(b) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(shard = b.index, error = %e, "cannot encode REGISTER_BROKER body");
            return;
        }
    };
    let broker_addr = b.addr.to_string();
    let ha_addr = format!("{}:{}", b.addr.ip(), b.addr.port() + 1);
    for link in links.iter_mut() {
        let header = RegisterBrokerRequestHeader {
            broker_name: &b.broker_name,
            broker_addr: &broker_addr,
            cluster_name: &b.cluster,
            ha_server_addr: &ha_addr,
            broker_id: b.cfg.broker_id(),
            heartbeat_timeout_millis: Some(b.cfg.broker.client_idle_ms as i64),
            enable_acting_master: None,
            compressed: Some(false),
            body_crc32: Some(0),
        };
        let encode = |out: &mut Vec<u8>, opaque: i32| {
            encode_frame(
                out,
                SerializeType::Json,
                &FrameHead::request(RequestCode::REGISTER_BROKER, opaque),
                &header,
                &body,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        match link.request(&encode, REGISTER_TIMEOUT).await {
            Ok(reply) => {
                b.registrar
                    .registrations_ok
                    .set(b.registrar.registrations_ok.get() + 1);
                tracing::debug!(shard = b.index, namesrv = %link.addr, "registered");
                if b.ha.is_slave() {
                    let master = reply.ext_get("masterAddr");
                    let ha = reply.ext_get("haServerAddr");
                    if master.is_some() || !b.ha.knows_master() {
                        b.ha.set_master(master, ha);
                    }
                }
            }
            Err(e) => {
                b.registrar
                    .registrations_failed
                    .set(b.registrar.registrations_failed.get() + 1);
                tracing::warn!(shard = b.index, error = %e, "registration with name server failed");
            }
        }
    }
}

/// Registers now, then every `register_interval_ms` and whenever asked.
pub async fn registration_loop(b: Rc<Broker>) {
    if b.registrar.addrs.is_empty() {
        return;
    }
    let mut links: Vec<Link> = b.registrar.addrs.iter().cloned().map(Link::new).collect();
    let every = Duration::from_millis(b.cfg.broker.register_interval_ms.max(1000));
    loop {
        b.registrar.wanted.set(false);
        register_once(&b, &mut links).await;
        // A slave that has not met its master yet asks every second: the answer names it.
        let wait =
            if b.ha.is_slave() && b.cfg.broker.ha_master_address.is_empty() && !b.ha.knows_master()
            {
                every.min(Duration::from_secs(1))
            } else {
                every
            };
        let _ = runtime::timeout(wait, Wanted(&b.registrar)).await;
    }
}

/// Best-effort UNREGISTER_BROKER to every name server (shutdown).
pub async fn unregister_all(b: &Broker) {
    let broker_addr = b.addr.to_string();
    for addr in b.registrar.addrs.iter() {
        let mut link = Link::new(addr.clone());
        let header = UnRegisterBrokerRequestHeader {
            broker_name: &b.broker_name,
            broker_addr: &broker_addr,
            cluster_name: &b.cluster,
            broker_id: b.cfg.broker_id(),
        };
        let encode = |out: &mut Vec<u8>, opaque: i32| {
            encode_frame(
                out,
                SerializeType::Json,
                &FrameHead::request(RequestCode::UNREGISTER_BROKER, opaque),
                &header,
                &[],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        match link.request(&encode, UNREGISTER_TIMEOUT).await.map(drop) {
            Ok(_) => tracing::debug!(shard = b.index, namesrv = %addr, "unregistered"),
            Err(e) => tracing::debug!(shard = b.index, error = %e, "unregister failed"),
        }
    }
}
