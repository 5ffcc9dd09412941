//! The client's only glommio module: one TCP connection speaking remoting frames.
//!
//! A [`Connection`] runs two local tasks on the executor that opened it: a writer that drains one
//! shared output buffer (all requests queued while a write was in flight go out in one `write`:
//! natural batching, no per-request syscall under load) and a reader that decodes frames from a
//! reused receive buffer. Requests are matched to responses by opaque, so any number may be in
//! flight. Requests the broker sends to the client (NOTIFY_CONSUMER_IDS_CHANGED,
//! CHECK_TRANSACTION_STATE, ...) go to the handler set with [`Connection::set_request_handler`].
//!
//! Everything here is `!Send`: a connection belongs to its executor (thread-per-core).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use ramjet_core::remoting::{
    decode_frame, encode_frame, CodecLimits, EncodeHeader, FrameDecode, FrameHead, RemotingCommand,
    SerializeType,
};

use super::error::ClientError;

/// ACL credentials a client signs its requests with (RocketMQ's `SessionCredentials` with an
/// `AclClientRPCHook`): `AccessKey`, an optional `SecurityToken` and the `Signature` of the
/// whole request are added to every request's ext fields.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: String,
    pub security_token: Option<String>,
    signer: ramjet_core::acl::Signer,
}

impl Credentials {
    pub fn new(access_key: &str, secret_key: &str) -> Credentials {
        Credentials {
            access_key: access_key.to_string(),
            security_token: None,
            signer: ramjet_core::acl::Signer::new(secret_key),
        }
    }

    /// The ext fields of a request with `header` and `body`, signed.
    fn signed_fields<H: EncodeHeader + ?Sized>(
        &self,
        header: &H,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, ramjet_core::acl::SignError> {
        let mut cmd = RemotingCommand::default();
        cmd.set_header(header);
        let mut fields = cmd.ext_fields;
        fields.push((ramjet_core::acl::ACCESS_KEY.into(), self.access_key.clone()));
        if let Some(t) = &self.security_token {
            fields.push((ramjet_core::acl::SECURITY_TOKEN.into(), t.clone()));
        }
        let sig = self
            .signer
            .sign(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), body)?;
        fields.push((ramjet_core::acl::SIGNATURE.into(), sig.as_str().to_string()));
        Ok(fields)
    }
}

/// Receive buffer start size; grows to the largest frame seen.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Default connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Handler for requests the server sends to the client.
pub type RequestHandler = Rc<dyn Fn(&Connection, RemotingCommand)>;

struct Slot {
    result: RefCell<Option<Result<RemotingCommand, ClientError>>>,
    waker: Cell<Option<Waker>>,
}

struct Inner {
    addr: String,
    serialize_type: SerializeType,
    out: RefCell<Vec<u8>>,
    writer_waker: Cell<Option<Waker>>,
    pending: RefCell<HashMap<i32, Rc<Slot>>>,
    next_opaque: Cell<i32>,
    closed: RefCell<Option<String>>,
    handler: RefCell<Option<RequestHandler>>,
    stream: Rc<RefCell<TcpStream>>,
    credentials: Option<Credentials>,
}

/// One client connection. Cheap to clone (shared).
#[derive(Clone)]
pub struct Connection {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

struct Half(Rc<RefCell<TcpStream>>);

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Single-threaded: the borrow lasts only for this synchronous poll.
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.borrow_mut();
        Pin::new(&mut *s).poll_close(cx)
    }
}

impl Connection {
    /// Connect to `addr` (`host:port`) and start the reader and writer tasks. Requests go out
    /// with headers encoded as `serialize_type`.
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        serialize_type: SerializeType,
    ) -> Result<Connection, ClientError> {
        Self::connect_with(addr, timeout, serialize_type, None).await
    }

    /// [`Connection::connect`], signing every request with `credentials` when given.
    pub async fn connect_with(
        addr: &str,
        timeout: Duration,
        serialize_type: SerializeType,
        credentials: Option<Credentials>,
    ) -> Result<Connection, ClientError> {
        let stream = match TcpStream::connect_timeout(addr, timeout).await {
            Ok(s) => s,
            Err(glommio::GlommioError::TimedOut(_)) => {
                return Err(ClientError::ConnectTimeout {
                    addr: addr.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Err(e) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    source: e.into(),
                })
            }
        };
        // Latency over packet count: requests are already batched by the writer.
        let _ = stream.set_nodelay(true);
        let stream = Rc::new(RefCell::new(stream));
        let inner = Rc::new(Inner {
            addr: addr.to_string(),
            serialize_type,
            out: RefCell::new(Vec::with_capacity(READ_BUFFER_BYTES)),
            writer_waker: Cell::new(None),
            pending: RefCell::new(HashMap::new()),
            next_opaque: Cell::new(1),
            closed: RefCell::new(None),
            handler: RefCell::new(None),
            stream: stream.clone(),
            credentials,
        });
        let conn = Connection { inner };
        glommio::spawn_local(reader_task(
            Rc::downgrade(&conn.inner),
            Half(stream.clone()),
        ))
        .detach();
        glommio::spawn_local(writer_task(Rc::downgrade(&conn.inner), Half(stream))).detach();
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Why the connection is closed, if it is.
    pub fn closed_reason(&self) -> Option<String> {
        self.inner.closed.borrow().clone()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.borrow().is_some()
    }

    /// Handler for server-initiated requests on this connection.
    pub fn set_request_handler(&self, handler: RequestHandler) {
        *self.inner.handler.borrow_mut() = Some(handler);
    }

    fn next_opaque(&self) -> i32 {
        let o = self.inner.next_opaque.get();
        // Stay non-negative like the C++ client; wrap to 1.
        self.inner
            .next_opaque
            .set(if o == i32::MAX { 1 } else { o + 1 });
        o
    }

    fn closed_error(&self) -> Option<ClientError> {
        self.inner
            .closed
            .borrow()
            .as_ref()
            .map(|r| ClientError::ConnectionClosed {
                addr: self.inner.addr.clone(),
                reason: r.clone(),
            })
    }

    fn enqueue<H: EncodeHeader + ?Sized>(
        &self,
        head: &FrameHead<'_>,
        header: &H,
        body: &[u8],
    ) -> Result<(), ClientError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let encode_err = |source| ClientError::Encode {
            code: head.code,
            source,
        };
        // The binary header holds a 16-bit code: 5.x codes above it (POP_MESSAGE 200050 and
        // its kin) go as JSON, as RocketMQ's own clients send everything by default.
        let st = if i16::try_from(head.code).is_ok() {
            self.inner.serialize_type
        } else {
            SerializeType::Json
        };
        let mut out = self.inner.out.borrow_mut();
        match &self.inner.credentials {
            Some(c) if head.flag & ramjet_core::remoting::FLAG_RESPONSE == 0 => {
                let fields = c
                    .signed_fields(header, body)
                    .map_err(|e| ClientError::Acl(e.to_string()))?;
                encode_frame(&mut out, st, head, fields.as_slice(), body).map_err(encode_err)?;
            }
            _ => {
                encode_frame(&mut out, st, head, header, body).map_err(encode_err)?;
            }
        }
        drop(out);
        if let Some(w) = self.inner.writer_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Send a request and wait for its response (any response code; see
    /// [`Connection::invoke_ok`]).
    pub async fn invoke<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let wait = self.start(code, header, body)?;
        self.finish(code, wait, timeout).await
    }

    /// Queue a request and return the handle to await its response. The request is written
    /// in order with every other one queued on this connection.
    pub fn start<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
    ) -> Result<ResponseWait, ClientError> {
        let opaque = self.next_opaque();
        self.enqueue(&FrameHead::request(code, opaque), header, body)?;
        let slot = Rc::new(Slot {
            result: RefCell::new(None),
            waker: Cell::new(None),
        });
        self.inner.pending.borrow_mut().insert(opaque, slot.clone());
        Ok(ResponseWait { slot, opaque })
    }

    /// Wait for a started request, at most `timeout`.
    pub async fn finish(
        &self,
        code: i32,
        wait: ResponseWait,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let opaque = wait.opaque;
        let timer = async {
            glommio::timer::sleep(timeout).await;
            Err(ClientError::Timeout {
                addr: self.inner.addr.clone(),
                code,
                timeout_ms: timeout.as_millis() as u64,
            })
        };
        let r = futures_lite::future::or(wait, timer).await;
        self.inner.pending.borrow_mut().remove(&opaque);
        r
    }

    /// Like [`Connection::invoke`], but a non-SUCCESS response code is an error.
    pub async fn invoke_ok<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let resp = self.invoke(code, header, body, timeout).await?;
        expect_success(&self.inner.addr, code, resp)
    }

    /// Send a request that gets no response.
    pub fn oneway<H: EncodeHeader + ?Sized>(
        &self,
        code: i32,
        header: &H,
        body: &[u8],
    ) -> Result<(), ClientError> {
        let opaque = self.next_opaque();
        self.enqueue(&FrameHead::oneway(code, opaque), header, body)
    }

    /// Answer a server-initiated request.
    pub fn respond(&self, resp: &RemotingCommand) -> Result<(), ClientError> {
        self.enqueue(&resp.head(), resp.ext_fields.as_slice(), &resp.body)
    }

    /// Close the connection; pending requests fail.
    pub fn close(&self) {
        fail_all(&self.inner, "closed by the client".to_string());
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.inner.stream.borrow());
        // SAFETY: `fd` is the open socket owned by `self.inner.stream`, alive for this call;
        // shutdown(2) only changes the socket's state (the reader then sees EOF and exits).
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }

    /// Number of requests awaiting a response.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.borrow().len()
    }
}

/// Map a non-SUCCESS response to [`ClientError::Broker`].
pub fn expect_success(
    addr: &str,
    request_code: i32,
    resp: RemotingCommand,
) -> Result<RemotingCommand, ClientError> {
    if resp.code == 0 {
        Ok(resp)
    } else {
        Err(ClientError::Broker {
            addr: addr.to_string(),
            request_code,
            code: resp.code,
            remark: resp.remark.unwrap_or_default(),
        })
    }
}

/// A response not yet received.
pub struct ResponseWait {
    slot: Rc<Slot>,
    opaque: i32,
}

impl Future for ResponseWait {
    type Output = Result<RemotingCommand, ClientError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.slot.result.borrow_mut().take() {
            return Poll::Ready(r);
        }
        self.slot.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

fn complete(slot: &Slot, r: Result<RemotingCommand, ClientError>) {
    *slot.result.borrow_mut() = Some(r);
    if let Some(w) = slot.waker.take() {
        w.wake();
    }
}

fn fail_all(inner: &Inner, reason: String) {
    if inner.closed.borrow().is_none() {
        *inner.closed.borrow_mut() = Some(reason.clone());
    }
    let drained: Vec<Rc<Slot>> = inner.pending.borrow_mut().drain().map(|(_, s)| s).collect();
    for slot in drained {
        complete(
            &slot,
            Err(ClientError::ConnectionClosed {
                addr: inner.addr.clone(),
                reason: reason.clone(),
            }),
        );
    }
    if let Some(w) = inner.writer_waker.take() {
        w.wake();
    }
}

async fn writer_task(inner: Weak<Inner>, mut half: Half) {
    let mut spare: Vec<u8> = Vec::with_capacity(READ_BUFFER_BYTES);
    loop {
        // Wait for bytes (or close).
        let ready = futures_lite::future::poll_fn(|cx| {
            let Some(inner) = inner.upgrade() else {
                return Poll::Ready(false);
            };
            if inner.closed.borrow().is_some() {
                return Poll::Ready(false);
            }
            if !inner.out.borrow().is_empty() {
                return Poll::Ready(true);
            }
            inner.writer_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if !ready {
            return;
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        std::mem::swap(&mut *strong.out.borrow_mut(), &mut spare);
        drop(strong);
        let r = half.write_all(&spare).await;
        spare.clear();
        if let Err(e) = r {
            if let Some(strong) = inner.upgrade() {
                fail_all(&strong, format!("write failed: {e}"));
            }
            return;
        }
    }
}

async fn reader_task(inner: Weak<Inner>, mut half: Half) {
    let limits = CodecLimits::client();
    let mut buf: Vec<u8> = vec![0; READ_BUFFER_BYTES];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Decode every complete frame in buf[start..end].
        loop {
            match decode_frame(&buf[start..end], &limits) {
                Ok(FrameDecode::NeedMore { frame_bytes }) => {
                    let need = frame_bytes.unwrap_or(8);
                    if start > 0 && (buf.len() - start < need || start == end) {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    if buf.len() < need {
                        buf.resize(need, 0);
                    }
                    break;
                }
                Ok(FrameDecode::Frame { consumed, command }) => {
                    let Some(strong) = inner.upgrade() else {
                        return;
                    };
                    match command {
                        Ok(view) => dispatch(&strong, view.to_owned_command()),
                        Err(e) => {
                            // A response we cannot read still answers its request.
                            if let (Some(op), Some(flag)) = (e.opaque, e.flag) {
                                if flag & 1 != 0 {
                                    let slot = strong.pending.borrow_mut().remove(&op);
                                    if let Some(slot) = slot {
                                        complete(
                                            &slot,
                                            Err(ClientError::BadBody {
                                                addr: strong.addr.clone(),
                                                code: e.code.unwrap_or(-1),
                                                reason: e.to_string(),
                                            }),
                                        );
                                    }
                                }
                            }
                            tracing::warn!(addr = %strong.addr, error = %e, "undecodable frame");
                        }
                    }
                    start += consumed;
                }
                Err(e) => {
                    if let Some(strong) = inner.upgrade() {
                        fail_all(&strong, format!("stream corrupt: {e}"));
                    }
                    return;
                }
            }
        }
        if end == buf.len() {
            let n = buf.len();
            buf.resize(n * 2, 0);
        }
        match half.read(&mut buf[end..]).await {
            Ok(0) => {
                if let Some(strong) = inner.upgrade() {
                    fail_all(&strong, "closed by the server".to_string());
                }
                return;
            }
            Ok(n) => end += n,
            Err(e) => {
                if let Some(strong) = inner.upgrade() {
                    fail_all(&strong, format!("read failed: {e}"));
                }
                return;
            }
        }
        if inner.strong_count() == 0 {
            return;
        }
    }
}

fn dispatch(inner: &Rc<Inner>, cmd: RemotingCommand) {
    if cmd.is_response() {
        let slot = inner.pending.borrow_mut().remove(&cmd.opaque);
        match slot {
            Some(slot) => complete(&slot, Ok(cmd)),
            None => {
                tracing::debug!(addr = %inner.addr, opaque = cmd.opaque, "response to an abandoned request")
            }
        }
        return;
    }
    let handler = inner.handler.borrow().clone();
    let conn = Connection {
        inner: inner.clone(),
    };
    match handler {
        Some(h) => h(&conn, cmd),
        None => {
            if !cmd.is_oneway() {
                let resp = RemotingCommand::response(
                    ramjet_core::remoting::ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
                    cmd.opaque,
                    cmd.serialize_type,
                )
                .with_remark(format!(" request type {} not supported", cmd.code));
                let _ = conn.respond(&resp);
            }
        }
    }
}

/// Run `fut` on a new single-threaded glommio executor on this thread (optionally pinned to
/// `cpu`), for programs that are not already inside one (CLI, tests).
pub fn block_on<T: 'static>(
    cpu: Option<usize>,
    fut: impl Future<Output = T> + 'static,
) -> Result<T, ClientError> {
    block_on_spinning(cpu, Duration::ZERO, fut)
}

/// [`block_on`], polling `spin` before the executor sleeps in the kernel (lower wake-up
/// latency for load generators on a dedicated core).
pub fn block_on_spinning<T: 'static>(
    cpu: Option<usize>,
    spin: Duration,
    fut: impl Future<Output = T> + 'static,
) -> Result<T, ClientError> {
    let placement = match cpu {
        Some(c) => glommio::Placement::Fixed(c),
        None => glommio::Placement::Unbound,
    };
    let mut builder = glommio::LocalExecutorBuilder::new(placement);
    if !spin.is_zero() {
        builder = builder.spin_before_park(spin);
    }
    let ex = builder.make().map_err(|e| {
        ClientError::Runtime(format!(
            "{e}; glommio needs io_uring and ~512 KiB of locked memory (ulimit -l)"
        ))
    })?;
    Ok(ex.run(async move {
        // Bounds a lost executor wake-up (see `ramjet_storage::io::install_wake_guard`).
        ramjet_storage::io::install_wake_guard();
        fut.await
    }))
}

pub use glommio::channels::local_channel::{LocalReceiver, LocalSender};

/// A channel between tasks of the client's executor.
pub fn local_channel<T>() -> (LocalSender<T>, LocalReceiver<T>) {
    glommio::channels::local_channel::new_unbounded()
}

/// Sleep on the client's executor.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Spawn a detached task on the client's executor.
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    glommio::spawn_local(fut).detach();
}

/// Spawn a task whose result can be awaited.
pub fn spawn_joinable<T: 'static, F: Future<Output = T> + 'static>(
    fut: F,
) -> glommio::task::JoinHandle<T> {
    glommio::spawn_local(fut).detach()
}

/// A bounded window of in-flight operations.
pub type Window = glommio::sync::Semaphore;
