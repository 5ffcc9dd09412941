//! The connection loop shared by the broker and the name server.
//!
//! One connection = a reader task and a writer task over the same socket (split by
//! [`crate::runtime::split_stream`]). The reader fills one reused buffer, decodes every complete
//! frame in it and hands each request to the [`Service`], which answers at once (into the
//! connection's [`Outbox`]) or later from a task of its own (sync flush, long polling): requests
//! are pipelined and answered by opaque, not necessarily in order. Oneway requests are never
//! answered. The writer drains the outbox: response bytes accumulate in one buffer (no
//! allocation per response) and pull responses carry their record chunks, which go out by
//! [`Delivery`] (writev / sendfile) at their place in the byte order.
//!
//! Bad input: a frame that is delimited but does not decode is answered with SYSTEM_ERROR when
//! its opaque could be read (else dropped with a log line); a stream that cannot be
//! re-synchronised (bad length word, frame above the limit) is closed with a log line.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::AsyncReadExt;
use ramjet_core::ratelog::LogEvery;
use ramjet_core::remoting::{
    decode_frame, encode_frame, encode_frame_head, CodecLimits, CommandView, EncodeHeader,
    FrameDecode, FrameHead, RemotingCommand, ResponseCode, SerializeType,
};
use ramjet_storage::Chunk;

use super::coalesce::ReadCoalescer;
use super::delivery::{Delivery, DeliveryCounters, OutChunk};
use super::warm;
use crate::runtime::{self, LocalReceiver, LocalSender, TcpListener, TcpStream};

/// Initial read buffer per connection; it grows up to the frame limit for large frames.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Pending response bytes per connection beyond which the reader stops reading (back-pressure
/// on a client that does not read its responses).
pub const MAX_OUTBOX_BYTES: usize = 64 * 1024 * 1024;

/// Handles requests of one kind of server.
pub trait Service: 'static {
    /// One decoded request (never a response). Answer with [`Conn::respond`] and friends, now
    /// or later; for oneway requests send nothing.
    fn handle(&self, conn: &Rc<Conn>, req: &CommandView<'_>);
    /// A response to a request this server sent on the connection (rare; default ignores it).
    fn response(&self, _conn: &Rc<Conn>, _resp: &CommandView<'_>) {}
    /// The connection closed.
    fn closed(&self, _conn: &Rc<Conn>) {}
}

enum Piece {
    /// Bytes of `Outbox::bytes` up to this position.
    BytesUpTo(usize),
    Chunks(Vec<Chunk>),
}

#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// Chunk lists interleaved with byte ranges; empty when only `bytes` is pending.
    pieces: Vec<Piece>,
    writer: Option<Waker>,
    reader: Option<Waker>,
    closed: bool,
}

/// Server-side state of one connection.
pub struct Conn {
    id: u64,
    peer: SocketAddr,
    local: SocketAddr,
    outbox: RefCell<Outbox>,
    counters: Rc<DeliveryCounters>,
    next_opaque: Cell<i32>,
    /// Serialization of the last request (used for broker-initiated requests).
    last_serialize_type: Cell<SerializeType>,
    /// A request that holds this connection's reads until it completes (see
    /// [`Conn::hold_reads`]).
    hold: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>,
    /// Requests this server sent on the connection on behalf of another connection's request
    /// (see [`Conn::relay`]), by the opaque they were sent with.
    relays: RefCell<HashMap<i32, Relay>>,
}

/// Where the answer to a request the broker sent to a client goes.
enum RelayTo {
    /// Back to the connection whose request it was passed on for, as that request's answer.
    Conn {
        to: Weak<Conn>,
        opaque: i32,
        serialize_type: SerializeType,
    },
    /// To the broker's own task that waits for it ([`Conn::call`]): (code, remark).
    Task(LocalSender<(i32, Option<String>)>),
}

/// A request to this connection's client that waits for its answer.
struct Relay {
    to: RelayTo,
    code: i32,
}

/// Most requests relayed on one connection at a time.
const MAX_RELAYS_PER_CONN: usize = 64;

impl Conn {
    /// Reads no further request from this connection until `until` completes (it must end by
    /// itself, e.g. at a deadline). The requests behind it wait in the socket, so TCP flow
    /// control reaches the client and they are handled in their order afterwards. Used by a
    /// send that waits for the flush to make room instead of being refused at once.
    pub fn hold_reads(&self, until: Pin<Box<dyn Future<Output = ()>>>) {
        let prev = self.hold.borrow_mut().replace(until);
        debug_assert!(prev.is_none(), "one held request per connection");
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn is_closed(&self) -> bool {
        self.outbox.borrow().closed
    }

    fn wake_writer(ob: &mut Outbox) {
        if let Some(w) = ob.writer.take() {
            w.wake();
        }
    }

    /// Appends one frame: `head` + typed header + body, in `st`.
    pub fn send_frame<H: EncodeHeader + ?Sized>(
        &self,
        st: SerializeType,
        head: &FrameHead<'_>,
        header: &H,
        body: &[u8],
    ) {
        let mut ob = self.outbox.borrow_mut();
        if ob.closed {
            return;
        }
        if let Err(e) = encode_frame(&mut ob.bytes, st, head, header, body) {
            // Only oversize headers/bodies fail; tell the peer instead of leaving it waiting.
            tracing::warn!(conn = self.id, code = head.code, error = %e, "cannot encode frame");
            let remark = format!("cannot encode response: {e}");
            let fallback = FrameHead {
                code: ResponseCode::SYSTEM_ERROR,
                ..*head
            };
            let _ = encode_frame(&mut ob.bytes, st, &fallback.with_remark(&remark), &(), &[]);
        }
        Self::wake_writer(&mut ob);
    }

    /// Answers `req` with `code`, a typed header and a body (nothing for oneway requests).
    pub fn respond<H: EncodeHeader + ?Sized>(
        &self,
        req: &CommandView<'_>,
        code: i32,
        remark: Option<&str>,
        header: &H,
        body: &[u8],
    ) {
        if req.is_oneway() {
            return;
        }
        let mut head = req.response_head(code);
        head.remark = remark;
        self.send_frame(req.serialize_type, &head, header, body);
    }

    /// Answers with an error code and remark.
    pub fn respond_error(&self, req: &CommandView<'_>, code: i32, remark: &str) {
        self.respond(req, code, Some(remark), &(), &[]);
    }

    /// Sends an owned command (name server replies, broker-initiated requests).
    pub fn send_command(&self, cmd: &RemotingCommand) {
        let mut ob = self.outbox.borrow_mut();
        if ob.closed {
            return;
        }
        if let Err(e) = cmd.encode(&mut ob.bytes) {
            tracing::warn!(conn = self.id, code = cmd.code, error = %e, "cannot encode command");
            if !cmd.is_oneway() {
                let fallback = RemotingCommand::response(
                    ResponseCode::SYSTEM_ERROR,
                    cmd.opaque,
                    cmd.serialize_type,
                )
                .with_remark(format!("cannot encode response: {e}"));
                let _ = fallback.encode(&mut ob.bytes);
            }
        }
        Self::wake_writer(&mut ob);
    }

    /// Sends a response whose body is `chunks` (record ranges), after the header frame head.
    /// `body_len` must equal the chunks' total length.
    pub fn send_chunks<H: EncodeHeader + ?Sized>(
        &self,
        st: SerializeType,
        head: &FrameHead<'_>,
        header: &H,
        chunks: Vec<Chunk>,
        body_len: usize,
    ) {
        let mut ob = self.outbox.borrow_mut();
        if ob.closed {
            return;
        }
        let mark = ob.bytes.len();
        match encode_frame_head(&mut ob.bytes, st, head, header, body_len) {
            Ok(_) => {
                let end = ob.bytes.len();
                ob.pieces.push(Piece::BytesUpTo(end));
                ob.pieces.push(Piece::Chunks(chunks));
            }
            Err(e) => {
                ob.bytes.truncate(mark);
                let remark = format!("cannot encode response: {e}");
                let fallback = FrameHead {
                    code: ResponseCode::SYSTEM_ERROR,
                    ..*head
                };
                let _ = encode_frame(&mut ob.bytes, st, &fallback.with_remark(&remark), &(), &[]);
            }
        }
        Self::wake_writer(&mut ob);
    }

    /// A fresh opaque for a request this server sends to the client.
    pub fn next_opaque(&self) -> i32 {
        let o = self.next_opaque.get();
        self.next_opaque.set(o.wrapping_add(1) & i32::MAX);
        o
    }

    /// Serialization the client used last (answer broker-initiated requests in it).
    pub fn serialize_type(&self) -> SerializeType {
        self.last_serialize_type.get()
    }

    /// Closes the connection (the writer flushes what is pending, then both halves stop).
    pub fn close(&self) {
        let mut ob = self.outbox.borrow_mut();
        ob.closed = true;
        Self::wake_writer(&mut ob);
        if let Some(w) = ob.reader.take() {
            w.wake();
        }
    }

    pub fn counters(&self) -> &Rc<DeliveryCounters> {
        &self.counters
    }

    /// Sends request `code` (with `header` and `body`) on this connection for `req`, which
    /// arrived on `from`: the answer this connection's peer gives is sent back to `from` as
    /// the answer to `req`, code, remark, header fields and body unchanged (RocketMQ's
    /// broker-to-client calls such as GET_CONSUMER_RUNNING_INFO). With no answer within
    /// `timeout`, `from` gets CONSUME_MSG_TIMEOUT; if this connection closes first,
    /// SYSTEM_ERROR.
    ///
    /// `reply` is the request's (opaque, serialization) on `from`.
    pub fn relay<H: EncodeHeader + ?Sized>(
        self: &Rc<Self>,
        code: i32,
        header: &H,
        body: &[u8],
        from: &Rc<Conn>,
        reply: (i32, SerializeType),
        timeout: Duration,
    ) {
        let to = RelayTo::Conn {
            to: Rc::downgrade(from),
            opaque: reply.0,
            serialize_type: reply.1,
        };
        self.send_relayed(Relay { to, code }, header, body, timeout);
    }

    /// Sends request `code` to this connection's client now; its answer, (code, remark),
    /// comes on the returned receiver ([`answer`]). No answer within `timeout` gives
    /// CONSUME_MSG_TIMEOUT, a connection that closes first SYSTEM_ERROR
    /// (PUSH_REPLY_MESSAGE_TO_CLIENT waits so).
    pub fn call<H: EncodeHeader + ?Sized>(
        self: &Rc<Self>,
        code: i32,
        header: &H,
        body: &[u8],
        timeout: Duration,
    ) -> LocalReceiver<(i32, Option<String>)> {
        let (tx, rx) = runtime::local_unbounded();
        self.send_relayed(
            Relay {
                to: RelayTo::Task(tx),
                code,
            },
            header,
            body,
            timeout,
        );
        rx
    }

    fn send_relayed<H: EncodeHeader + ?Sized>(
        self: &Rc<Self>,
        r: Relay,
        header: &H,
        body: &[u8],
        timeout: Duration,
    ) {
        if self.is_closed() {
            return r.answer_error(
                ResponseCode::SYSTEM_ERROR,
                "the client's connection is closed",
            );
        }
        if self.relays.borrow().len() >= MAX_RELAYS_PER_CONN {
            return r.answer_error(
                ResponseCode::SYSTEM_BUSY,
                &format!("{MAX_RELAYS_PER_CONN} requests to this client are already waiting for its answers; try again"),
            );
        }
        let opaque = self.next_opaque();
        let head = FrameHead::request(r.code, opaque);
        self.relays.borrow_mut().insert(opaque, r);
        self.send_frame(self.serialize_type(), &head, header, body);
        let this = Rc::downgrade(self);
        runtime::spawn_detached(async move {
            runtime::sleep(timeout).await;
            let Some(this) = this.upgrade() else { return };
            let Some(r) = this.relays.borrow_mut().remove(&opaque) else {
                return;
            };
            let remark = format!(
                "the client {} did not answer request {} within {} ms",
                this.peer,
                r.code,
                timeout.as_millis()
            );
            r.answer_error(ResponseCode::CONSUME_MSG_TIMEOUT, &remark);
        });
    }

    /// Sends `resp`, an answer from this connection's peer, on to the connection whose
    /// request it answers; `false` when no relayed request has its opaque.
    fn finish_relay(&self, resp: &CommandView<'_>) -> bool {
        let Some(r) = self.relays.borrow_mut().remove(&resp.opaque) else {
            return false;
        };
        match r.to {
            RelayTo::Conn {
                to,
                opaque,
                serialize_type,
            } => {
                if let Some(to) = to.upgrade() {
                    let mut head = FrameHead::response(resp.code, opaque);
                    head.remark = resp.remark.as_deref();
                    to.send_frame(serialize_type, &head, &resp.ext, resp.body);
                }
            }
            RelayTo::Task(tx) => {
                // The waiting task may have gone (its connection closed): nothing to tell.
                let _ = tx.try_send((resp.code, resp.remark.as_deref().map(str::to_string)));
            }
        }
        true
    }

    /// Answers every relayed request still waiting (the connection closed).
    fn fail_relays(&self) {
        let pending: Vec<Relay> = self.relays.borrow_mut().drain().map(|(_, r)| r).collect();
        for r in pending {
            let remark = format!(
                "the client {} closed its connection before answering request {}",
                self.peer, r.code
            );
            r.answer_error(ResponseCode::SYSTEM_ERROR, &remark);
        }
    }
}

impl Relay {
    fn answer_error(&self, code: i32, remark: &str) {
        match &self.to {
            RelayTo::Conn {
                to,
                opaque,
                serialize_type,
            } => {
                if let Some(to) = to.upgrade() {
                    let head = FrameHead::response(code, *opaque).with_remark(remark);
                    to.send_frame(*serialize_type, &head, &(), &[]);
                }
            }
            RelayTo::Task(tx) => {
                let _ = tx.try_send((code, Some(remark.to_string())));
            }
        }
    }
}

/// The answer to a [`Conn::call`]: (code, remark).
pub async fn answer(rx: LocalReceiver<(i32, Option<String>)>) -> (i32, Option<String>) {
    rx.recv().await.unwrap_or((
        ResponseCode::SYSTEM_ERROR,
        Some("the call to the client ended without an answer".into()),
    ))
}

/// Waits until the outbox has something or is closed; returns the pending bytes and pieces.
struct TakeOutbox<'a> {
    conn: &'a Conn,
    spare: &'a mut Vec<u8>,
    pieces: &'a mut Vec<Piece>,
}

impl Future for TakeOutbox<'_> {
    type Output = bool; // false: closed and drained
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.get_mut();
        let mut ob = this.conn.outbox.borrow_mut();
        if !ob.bytes.is_empty() || !ob.pieces.is_empty() {
            this.spare.clear();
            std::mem::swap(&mut ob.bytes, this.spare);
            std::mem::swap(&mut ob.pieces, this.pieces);
            if let Some(w) = ob.reader.take() {
                w.wake();
            }
            return Poll::Ready(true);
        }
        if ob.closed {
            return Poll::Ready(false);
        }
        ob.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Waits while the outbox is over its limit.
struct OutboxRoom<'a> {
    conn: &'a Conn,
}

impl Future for OutboxRoom<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut ob = self.conn.outbox.borrow_mut();
        if ob.closed || ob.bytes.len() < MAX_OUTBOX_BYTES {
            return Poll::Ready(());
        }
        ob.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

async fn writer_loop(conn: Rc<Conn>, mut delivery: Delivery, cold_reads_off_shard: bool) {
    let mut buf = Vec::with_capacity(READ_BUFFER_BYTES);
    let mut pieces = Vec::new();
    let mut warm = WarmState::default();
    loop {
        let more = TakeOutbox {
            conn: &conn,
            spare: &mut buf,
            pieces: &mut pieces,
        }
        .await;
        if !more {
            break;
        }
        if cold_reads_off_shard {
            read_in_cold_chunks(&pieces, &mut warm, delivery.counters()).await;
        }
        let result = write_pending(&mut delivery, &buf, &mut pieces).await;
        pieces.clear();
        if let Err(e) = result {
            tracing::debug!(conn = conn.id, peer = %conn.peer, error = %e, "write failed; closing");
            conn.close();
            break;
        }
    }
    delivery.close().await;
}

/// A connection writer's page-cache bookkeeping (see [`super::warm`]): its read-ahead edges and
/// the reused lists of cold and read-ahead ranges.
#[derive(Default)]
struct WarmState {
    read_ahead: warm::ReadAhead,
    cold: Vec<warm::ColdRange>,
    ahead: Vec<warm::ColdRange>,
}

/// Reads the file chunks of `pieces` that are not in the page cache on the blocking thread
/// (see [`super::warm`]), so that the sendfile/pread that follows does not wait for the disk on
/// the shard, and asks the kernel there to read ahead of the chunks ([`warm::ReadAhead`]):
/// awaited together with cold reads, else in a task of its own that nothing waits for. A failed
/// read-in is only logged: the write path then reads as before and reports a real error itself.
async fn read_in_cold_chunks(pieces: &[Piece], st: &mut WarmState, counters: &DeliveryCounters) {
    let files = pieces.iter().flat_map(|p| match p {
        Piece::Chunks(chunks) => chunks.as_slice(),
        Piece::BytesUpTo(_) => &[],
    });
    let files = files.filter_map(|c| match c {
        Chunk::File { file, offset, len } => Some((&**file, *offset, u64::from(*len))),
        Chunk::Memory(_) => None,
    });
    st.cold.clear();
    st.ahead.clear();
    warm::cold_ranges(files, &mut st.read_ahead, &mut st.cold, &mut st.ahead);
    if !st.ahead.is_empty() {
        counters
            .read_aheads
            .set(counters.read_aheads.get() + st.ahead.len() as u64);
    }
    if st.cold.is_empty() {
        if !st.ahead.is_empty() {
            let ahead = std::mem::take(&mut st.ahead);
            runtime::spawn_detached(runtime::blocking(move || warm::advise(&ahead)));
        }
        return;
    }
    let ranges = std::mem::take(&mut st.cold);
    let ahead = std::mem::take(&mut st.ahead);
    let (ranges, ahead, res) = runtime::blocking(move || {
        warm::advise(&ahead);
        let res = warm::read_in(&ranges);
        (ranges, ahead, res)
    })
    .await;
    match res {
        Ok(bytes) => {
            counters
                .cold_reads
                .set(counters.cold_reads.get() + ranges.len() as u64);
            counters
                .cold_read_bytes
                .set(counters.cold_read_bytes.get() + bytes);
        }
        Err(e) => tracing::warn!(error = %e, "reading cold pull data into the page cache failed"),
    }
    st.cold = ranges;
    st.cold.clear();
    st.ahead = ahead;
    st.ahead.clear();
}

/// Writes everything the outbox held: plain response bytes and pull responses' record chunks
/// in their byte order, gathered into as few `writev` calls as the iovec limit allows (file
/// chunks go out by sendfile between them). Several pull responses answered in one turn, e.g.
/// the parked pulls of several queues woken by one batch of sends, leave in one system call:
/// at 90k msg/s of open-loop e2e over 8 queues this was ~5 writev calls per 10 messages.
async fn write_pending(
    delivery: &mut Delivery,
    bytes: &[u8],
    pieces: &mut [Piece],
) -> std::io::Result<()> {
    if pieces.is_empty() {
        return delivery.write_all(bytes).await;
    }
    let mut out: Vec<OutChunk<'_>> = Vec::with_capacity(pieces.len() * 2 + 1);
    let mut pos = 0usize;
    for piece in pieces.iter() {
        match piece {
            Piece::BytesUpTo(end) => {
                if *end > pos {
                    out.push(OutChunk::Memory(&bytes[pos..*end]));
                }
                pos = pos.max(*end);
            }
            Piece::Chunks(chunks) => out.extend(chunks.iter().map(out_chunk)),
        }
    }
    if pos < bytes.len() {
        out.push(OutChunk::Memory(&bytes[pos..]));
    }
    delivery.write_response(&[], &out).await
}

fn out_chunk(c: &Chunk) -> OutChunk<'_> {
    match c {
        Chunk::Memory(s) => OutChunk::Memory(s.as_ref()),
        Chunk::File { file, offset, len } => OutChunk::File {
            file,
            offset: *offset,
            len: *len,
        },
    }
}

/// Per-listener settings.
#[derive(Clone)]
pub struct ConnOptions {
    pub limits: CodecLimits,
    pub max_connections: u32,
    pub idle_timeout: Duration,
    pub zero_copy: bool,
    /// See `broker.cold_reads_off_shard`.
    pub cold_reads_off_shard: bool,
    /// The shard's read tick (`broker.read_coalesce_us`), if coalescing is on.
    pub read_coalesce: Option<Rc<ReadCoalescer>>,
}

/// Shared counters of a listener (and the shard's totals).
#[derive(Default, Debug)]
pub struct ListenerStats {
    pub open_connections: Cell<u32>,
    pub accepted_total: Cell<u64>,
    pub refused_total: Cell<u64>,
    pub bad_frames_total: Cell<u64>,
    pub requests_total: Cell<u64>,
    /// Rate limits ([`ramjet_core::ratelog::LOG_EVERY`]) of the lines a client can cause per
    /// frame or per connection (malformed frames, unrecoverable streams, refused connections)
    /// and of accept errors: a hostile or broken client must not flood the log. The counters
    /// above count every event.
    bad_frame_log: LogEvery,
    resync_log: LogEvery,
    refused_log: LogEvery,
    accept_error_log: LogEvery,
}

/// The next connection of `listener`; `None` once the listener is shut down. Failed accepts
/// (out of descriptors, say) are logged through `log` with `what` and retried after 10 ms.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    log: &ramjet_core::ratelog::LogEvery,
    what: &str,
) -> Option<runtime::TcpStream> {
    loop {
        match listener.accept().await {
            Ok(s) => return Some(s),
            Err(e) => {
                let e = std::io::Error::from(e);
                if runtime::is_listener_shut_down(&e) {
                    return None;
                }
                if let Some(n) = log.due() {
                    tracing::warn!(error = %e, failures = n, "{what}");
                }
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accepts connections forever, serving each with `service`.
pub async fn serve_listener(
    listener: TcpListener,
    service: Rc<dyn Service>,
    opts: ConnOptions,
    stats: Rc<ListenerStats>,
    counters: Rc<DeliveryCounters>,
    next_conn_id: Rc<Cell<u64>>,
) {
    loop {
        let Some(stream) = accept_next(&listener, &stats.accept_error_log, "accept failed").await
        else {
            return;
        };
        if stats.open_connections.get() >= opts.max_connections {
            stats.refused_total.set(stats.refused_total.get() + 1);
            if let Some(n) = stats.refused_log.due() {
                tracing::warn!(
                    limit = opts.max_connections,
                    refused = n,
                    "connection refused: broker.max_connections reached"
                );
            }
            drop(stream);
            continue;
        }
        let id = next_conn_id.get();
        next_conn_id.set(id + 1);
        let service = service.clone();
        let stats2 = stats.clone();
        let counters = counters.clone();
        stats.accepted_total.set(stats.accepted_total.get() + 1);
        stats.open_connections.set(stats.open_connections.get() + 1);
        let opts = opts.clone();
        runtime::spawn_detached(async move {
            if let Err(e) = serve_connection(stream, id, service, opts, &stats2, counters).await {
                tracing::debug!(conn = id, error = %e, "connection ended");
            }
            stats2
                .open_connections
                .set(stats2.open_connections.get() - 1);
        });
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve_connection(
    stream: TcpStream,
    id: u64,
    service: Rc<dyn Service>,
    opts: ConnOptions,
    stats: &ListenerStats,
    counters: Rc<DeliveryCounters>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (mut reader, writer) = runtime::split_stream(stream)?;
    let delivery = Delivery::new(writer, counters.clone(), opts.zero_copy)?;
    let conn = Rc::new(Conn {
        id,
        peer,
        local,
        outbox: RefCell::new(Outbox::default()),
        counters: counters.clone(),
        next_opaque: Cell::new(1),
        last_serialize_type: Cell::new(SerializeType::Json),
        hold: RefCell::new(None),
        relays: RefCell::new(HashMap::new()),
    });
    let writer_task = runtime::spawn_task(writer_loop(
        conn.clone(),
        delivery,
        opts.cold_reads_off_shard,
    ));

    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut start = 0usize;
    let mut end = 0usize;
    // Read coalescing (see `super::coalesce`): frames decoded from the bytes of the last read;
    // two or more mean requests queued up while the shard was busy, and then the next read
    // waits for the shard's tick.
    let mut frames_since_read = 0u32;
    // Whether the last read filled all the room it had (more is likely waiting: read on).
    let mut read_filled = false;
    let result = loop {
        // Decode every complete frame in buf[start..end].
        let mut fatal = None;
        loop {
            match decode_frame(&buf[start..end], &opts.limits) {
                Ok(FrameDecode::NeedMore { frame_bytes }) => {
                    if let Some(need) = frame_bytes {
                        if need > buf.len() - start {
                            // Make room for a large frame: compact, then grow.
                            buf.copy_within(start..end, 0);
                            end -= start;
                            start = 0;
                            if need > buf.len() {
                                buf.resize(need, 0);
                            }
                        }
                    }
                    break;
                }
                Ok(FrameDecode::Frame { consumed, command }) => {
                    start += consumed;
                    frames_since_read += 1;
                    match command {
                        Ok(view) => {
                            conn.last_serialize_type.set(view.serialize_type);
                            if view.is_response() {
                                if !conn.finish_relay(&view) {
                                    service.response(&conn, &view);
                                }
                            } else {
                                stats.requests_total.set(stats.requests_total.get() + 1);
                                tracing::trace!(
                                    conn = id,
                                    code = view.code,
                                    opaque = view.opaque,
                                    flag = view.flag,
                                    body_len = view.body.len(),
                                    "request"
                                );
                                service.handle(&conn, &view);
                            }
                        }
                        Err(e) => {
                            stats.bad_frames_total.set(stats.bad_frames_total.get() + 1);
                            if let Some(n) = stats.bad_frame_log.due() {
                                tracing::warn!(conn = id, peer = %peer, error = %e, bad_frames = n, "malformed frame");
                            }
                            if let Some(opaque) = e.reply_opaque() {
                                let st = e.serialize_type.unwrap_or(SerializeType::Json);
                                let remark = e.to_string();
                                let head = FrameHead::response(ResponseCode::SYSTEM_ERROR, opaque);
                                conn.send_frame(st, &head.with_remark(&remark), &(), &[]);
                            }
                        }
                    }
                    // A request that waits (a send held for flush room) keeps the ones behind it
                    // unread until it is answered.
                    let held = conn.hold.borrow_mut().take();
                    if let Some(until) = held {
                        until.await;
                    }
                }
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = fatal {
            stats.bad_frames_total.set(stats.bad_frames_total.get() + 1);
            if let Some(n) = stats.resync_log.due() {
                tracing::warn!(conn = id, peer = %peer, error = %e, closed = n, "closing connection: stream cannot be re-synchronised");
            }
            break Ok(());
        }
        if start == end {
            start = 0;
            end = 0;
        } else if start > buf.len() / 2 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            // Partial frame fills the buffer (header lengths are checked by peek); grow.
            let new_len = (buf.len() * 2).min(opts.limits.max_frame_bytes.max(READ_BUFFER_BYTES));
            if new_len <= buf.len() {
                break Ok(());
            }
            buf.resize(new_len, 0);
        }
        OutboxRoom { conn: &conn }.await;
        if conn.is_closed() {
            break Ok(());
        }
        let hot = frames_since_read >= 2 && !read_filled;
        frames_since_read = 0;
        let room = buf.len() - end;
        if let (true, Some(tick)) = (hot, &opts.read_coalesce) {
            tick.next_tick().await;
            if conn.is_closed() {
                break Ok(());
            }
            match runtime::try_recv(&reader, &mut buf[end..]) {
                Ok(Some(0)) => break Ok(()),
                Ok(Some(n)) => {
                    tick.count_coalesced_read();
                    counters.bytes_in.set(counters.bytes_in.get() + n as u64);
                    end += n;
                    read_filled = n == room;
                    continue;
                }
                // Nothing came during a whole period: wait for readiness again.
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        }
        let read = runtime::timeout(opts.idle_timeout, reader.read(&mut buf[end..])).await;
        match read {
            None => {
                tracing::debug!(conn = id, peer = %peer, "idle timeout; closing");
                break Ok(());
            }
            Some(Ok(0)) => break Ok(()),
            Some(Ok(n)) => {
                counters.bytes_in.set(counters.bytes_in.get() + n as u64);
                end += n;
                read_filled = n == room;
            }
            Some(Err(e)) => break Err(e),
        }
    };
    service.closed(&conn);
    conn.fail_relays();
    conn.close();
    let _ = writer_task.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{spawn_task, start_executor, ExecutorOptions, Pin};
    use std::io::Write;

    /// Response bytes and several pull responses' chunks pending together go out in their
    /// byte order (in one pass over the outbox).
    #[test]
    fn pending_bytes_and_chunks_keep_their_order() {
        let mut f = tempfile::tempfile().expect("tempfile");
        let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).expect("write");
        let got = start_executor(
            "write-pending-test",
            Pin::Unbound,
            ExecutorOptions::default(),
            move || async move {
                let file = Rc::new(f);
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let reader = spawn_task(async move {
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.expect("read");
                    got
                });
                let server = listener.accept().await.expect("accept");
                let mut d = Delivery::new(server, Rc::new(DeliveryCounters::default()), true)
                    .expect("delivery");
                let bytes: Vec<u8> = (0..40u8).map(|b| b + 200).collect();
                let chunk = |offset: u64, len: u32| Chunk::File {
                    file: file.clone(),
                    offset,
                    len,
                };
                let mut pieces = vec![
                    Piece::BytesUpTo(10),
                    Piece::Chunks(vec![chunk(0, 1000)]),
                    Piece::BytesUpTo(25),
                    Piece::Chunks(vec![chunk(5000, 20_000), chunk(1000, 7)]),
                ];
                write_pending(&mut d, &bytes, &mut pieces)
                    .await
                    .expect("write_pending");
                d.close().await;
                drop(d);
                let got = reader.await.expect("reader task");
                let mut want = bytes[..10].to_vec();
                want.extend_from_slice(&data[..1000]);
                want.extend_from_slice(&bytes[10..25]);
                want.extend_from_slice(&data[5000..25_000]);
                want.extend_from_slice(&data[1000..1007]);
                want.extend_from_slice(&bytes[25..]);
                (got, want)
            },
        )
        .expect("executor")
        .join()
        .expect("join");
        let (got, want): (Vec<u8>, Vec<u8>) = got;
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
    }
}
