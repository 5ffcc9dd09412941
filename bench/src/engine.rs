//! The raw client's event loop (`--client raw`): one plain loop per worker thread over
//! non-blocking sockets and `ppoll(2)`, with no async executor underneath.
//!
//! Why not the glommio executor the rest of the client uses: at batch 1 an open-loop run wakes
//! the generator for every request. Each glommio wake-up re-arms two io_uring timeouts (its
//! preemption timers) in an `io_uring_enter`, and each request cost a task, a response slot and
//! a timer. At 151k msg/s (e2e, 100 B) that left the generator's core 98 % busy and its send
//! lag p99 at 5-12 ms (perf/results/session7-2026-12-04.md). Here a request is a frame appended
//! to its connection's output buffer and an entry in a preallocated table; everything due in
//! one pass goes out in one `write` per connection; one `ppoll` per pass both waits and finds
//! the readable sockets; responses are decoded in place from the receive buffer.
//!
//! Waiting: the loop sleeps in `ppoll` until `--wake-ahead-us` ([`DEFAULT_WAKE_AHEAD_US`])
//! before the next request is due (or until a socket is readable) and polls without sleeping
//! from then on, because waking a sleeping thread takes tens of microseconds (far more on a VM,
//! see tuning/README.md) and that would be lag. At rates where requests are due more often than
//! that (above ~20k/s at 50 us) the loop never sleeps: its CPU is busy whatever the rate. `0`
//! sleeps until each request is due: half the CPU at 97k sends/s on the 2-vCPU VM, a later p50
//! (0.49 -> 0.65 ms, sync 1 KiB) and a shorter p99.9 (perf/results/session19-2026-12-06.md).
//! `--spin-us N` also keeps polling N µs after the last event. A closed-loop run with its window
//! full sleeps until an answer arrives.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ramjet_core::remoting::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, PullSysFlag,
};
use ramjet_core::remoting::{
    decode_frame, CodecLimits, CommandView, FrameDecode, FrameHead, RequestCode, ResponseCode,
    SerializeType,
};
use ramjet_net::client::MessageQueue;

use crate::raw::{self, BatchTemplate};
use crate::stats::Recorder;

/// Default of `--wake-ahead-us`: how long before a request is due the loop stops sleeping and
/// polls.
pub const DEFAULT_WAKE_AHEAD_US: u64 = 50;
/// How often unanswered requests are checked against their deadlines.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Progress callback period.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Receive buffer start size; grows to the largest frame seen.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Output buffer start size.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Connect timeout of the engine's sockets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One producer: its template, its queues (each with the connection it uses) and its schedule.
pub struct ProducerPlan {
    pub template: BatchTemplate,
    /// (queue, index into [`Plan::addrs`]); requests go round robin over them.
    pub targets: Vec<(MessageQueue, usize)>,
}

/// One queue's puller.
pub struct PullerPlan {
    pub mq: MessageQueue,
    /// Index into [`Plan::addrs`].
    pub conn: usize,
    /// Offset of the first pull.
    pub offset: i64,
}

/// What the loop runs.
pub struct Plan {
    /// Broker address of every connection the loop opens (one socket each).
    pub addrs: Vec<String>,
    pub producers: Vec<ProducerPlan>,
    pub pullers: Vec<PullerPlan>,
}

/// Fixed parameters of a run.
pub struct Settings<'a> {
    pub serialize: SerializeType,
    pub producer_group: &'a str,
    pub consumer_group: &'a str,
    /// Requests in flight per producer.
    pub window: usize,
    pub pull_batch: i32,
    /// Keep polling this long after the last event before sleeping.
    pub spin: Duration,
    /// Stop sleeping this long before the next request is due.
    pub wake_ahead: Duration,
    /// How long a send may wait for its answer.
    pub send_timeout: Duration,
    /// Longest long-poll of a pull.
    pub max_suspend: Duration,
    /// Back-off after a failed pull.
    pub pull_retry: Duration,
    /// After the schedule ends, how long answers are awaited.
    pub drain: Duration,
    /// Pullers start at this instant...
    pub start_pulls: Instant,
    /// ... and stop at this one.
    pub stop_pulls: Instant,
    /// Pulls subscribe with this SQL92 selector instead of tag `*`.
    pub sql: Option<&'a str>,
    /// Sends are half messages: each acknowledged one is ended with END_TRANSACTION
    /// (oneway) with this state (8 commit, 12 rollback).
    pub end_transaction: Option<i32>,
    /// Requests are signed (ACL).
    pub signing: Option<&'a raw::Signing>,
}

/// The schedule and the clock translation of a run (see `runner::Timing`).
pub trait Schedule {
    /// When request `k` of a producer is due (`now` in a closed loop); `None` past the end
    /// of the run.
    fn intended(&self, k: u64, now: Instant) -> Option<Instant>;
    /// Whether a request intended at `t` is measured (past the warm-up).
    fn measured(&self, t: Instant) -> bool;
    /// Wall-clock µs of an instant (body stamps, born timestamps).
    fn epoch_us(&self, t: Instant) -> u64;
    /// Latency of a pulled record arriving at `now`, `None` when outside the measured window.
    fn arrival(&self, body: &[u8], born_ms: i64, now: Instant) -> Option<u64>;
    /// Whether the run is open loop (send lag is recorded).
    fn open_loop(&self) -> bool;
}

/// Where the loop records.
pub struct Sinks<'a> {
    pub produce: &'a mut Recorder,
    pub consume: &'a mut Recorder,
    pub lag: &'a mut Recorder,
}

/// What the loop leaves behind.
#[derive(Debug, Default)]
pub struct Finish {
    /// Next offset of every puller (to commit for the group).
    pub pull_offsets: Vec<i64>,
    /// Malformed records found in pull answers.
    pub malformed: u64,
    /// When every puller had read its queue to the end (its last answer left nothing behind
    /// it), if they all had by the end of the run: the end of a catch-up.
    pub drained_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Send {
        producer: usize,
        intended: Instant,
        measured: bool,
        deadline: Instant,
    },
    Pull {
        puller: usize,
        deadline: Instant,
        /// The request carried a COMMIT_OFFSET of this offset.
        committed: Option<i64>,
    },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match *self {
            Pending::Send { deadline, .. } | Pending::Pull { deadline, .. } => deadline,
        }
    }
}

/// Takes the next request id (positive, wrapping to 1).
fn next_opaque(next: &mut i32) -> i32 {
    let o = *next;
    *next = if o == i32::MAX { 1 } else { o + 1 };
    o
}

struct Conn {
    addr: String,
    sock: TcpStream,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    inb: Vec<u8>,
    start: usize,
    end: usize,
    next_opaque: i32,
    pending: HashMap<i32, Pending>,
    /// Why the connection is unusable.
    failed: Option<String>,
}

impl Conn {
    fn open(addr: &str, window: usize) -> io::Result<Conn> {
        let mut last = None;
        for sa in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                Ok(sock) => {
                    // Latency over packet count: a pass already batches what is due.
                    sock.set_nodelay(true)?;
                    sock.set_nonblocking(true)?;
                    return Ok(Conn {
                        addr: addr.to_string(),
                        sock,
                        out: Vec::with_capacity(WRITE_BUFFER_BYTES),
                        written: 0,
                        inb: vec![0; READ_BUFFER_BYTES],
                        start: 0,
                        end: 0,
                        next_opaque: 1,
                        pending: HashMap::with_capacity(window * 2 + 64),
                        failed: None,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other(format!("{addr} resolves to no address"))))
    }

    fn opaque(&mut self) -> i32 {
        next_opaque(&mut self.next_opaque)
    }

    fn wants_write(&self) -> bool {
        self.failed.is_none() && self.written < self.out.len()
    }

    /// Writes what is queued until the socket is full. Returns whether bytes went out.
    fn flush(&mut self) -> bool {
        let mut any = false;
        while self.wants_write() {
            match self.sock.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.failed = Some("write returned 0".into());
                }
                Ok(n) => {
                    self.written += n;
                    any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.failed = Some(format!("write failed: {e}")),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        any
    }

    /// Reads what the socket has (until a read comes back short). Returns whether bytes came
    /// in.
    fn fill(&mut self) -> bool {
        let mut any = false;
        while self.failed.is_none() {
            if self.end == self.inb.len() {
                if self.start > 0 {
                    self.inb.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let n = self.inb.len();
                    self.inb.resize(n * 2, 0);
                }
            }
            let room = self.inb.len() - self.end;
            match self.sock.read(&mut self.inb[self.end..]) {
                Ok(0) => self.failed = Some("closed by the broker".into()),
                Ok(n) => {
                    self.end += n;
                    any = true;
                    if n < room {
                        // A short read emptied the socket's receive queue: asking again would
                        // only cost a read that says EAGAIN (one syscall per readable pass;
                        // what arrives meanwhile is seen by the next poll).
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.failed = Some(format!("read failed: {e}")),
            }
        }
        any
    }
}

struct Producer {
    template: BatchTemplate,
    targets: Vec<(MessageQueue, usize)>,
    k: u64,
    in_flight: usize,
    /// The schedule has ended.
    done: bool,
}

struct Puller {
    mq: MessageQueue,
    conn: usize,
    offset: i64,
    committed: i64,
    in_flight: bool,
    retry_at: Option<Instant>,
    /// Since when this queue has had nothing left to read (`None` while it has).
    drained_at: Option<Instant>,
}

/// Runs the plan until the schedule ends and its answers are in (or `drain` passed) and the
/// pullers reached `stop_pulls`. `report` is called about once a second.
pub fn run(
    plan: Plan,
    s: &Settings<'_>,
    sched: &dyn Schedule,
    sinks: &mut Sinks<'_>,
    report: &mut dyn FnMut(&mut Sinks<'_>),
) -> io::Result<Finish> {
    let mut conns = Vec::with_capacity(plan.addrs.len());
    for addr in &plan.addrs {
        conns.push(Conn::open(addr, s.window).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot connect to broker {addr}: {e}"))
        })?);
    }
    let mut producers: Vec<Producer> = plan
        .producers
        .into_iter()
        .map(|p| Producer {
            template: p.template,
            targets: p.targets,
            k: 0,
            in_flight: 0,
            done: false,
        })
        .collect();
    for p in &producers {
        assert!(!p.targets.is_empty(), "a producer needs a queue");
        assert!(p.targets.iter().all(|t| t.1 < conns.len()));
    }
    let mut pullers: Vec<Puller> = plan
        .pullers
        .into_iter()
        .map(|p| {
            assert!(p.conn < conns.len());
            Puller {
                mq: p.mq,
                conn: p.conn,
                offset: p.offset,
                committed: p.offset,
                in_flight: false,
                retry_at: None,
                drained_at: None,
            }
        })
        .collect();
    let limits = CodecLimits::client();
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.sock.as_raw_fd(),
            events: 0,
            revents: 0,
        })
        .collect();
    let mut malformed = 0u64;
    let mut last_event = Instant::now();
    let mut next_sweep = last_event + SWEEP_EVERY;
    let mut next_report = last_event + REPORT_EVERY;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut busy = false;
        // 1. Everything due: frames appended to the connections' output buffers.
        let mut next_due: Option<Instant> = None;
        for (pi, p) in producers.iter_mut().enumerate() {
            while !p.done {
                let Some(intended) = sched.intended(p.k, now) else {
                    p.done = true;
                    break;
                };
                if intended > now {
                    next_due = Some(next_due.map_or(intended, |d: Instant| d.min(intended)));
                    break;
                }
                if p.in_flight >= s.window {
                    break;
                }
                let measured = sched.measured(intended);
                if measured && sched.open_loop() {
                    sinks.lag.record(
                        now.saturating_duration_since(intended).as_micros() as u64,
                        0,
                        0,
                    );
                }
                let ti = (p.k % p.targets.len() as u64) as usize;
                let (mq, ci) = (&p.targets[ti].0, p.targets[ti].1);
                p.k += 1;
                let conn = &mut conns[ci];
                if conn.failed.is_some() {
                    if measured {
                        sinks.produce.record_error();
                    }
                    continue;
                }
                p.template.prepare(sched.epoch_us(intended));
                let born_ms = (sched.epoch_us(now) / 1000) as i64;
                let (code, header) = raw::send_header(s.producer_group, mq, &p.template, born_ms);
                let opaque = conn.opaque();
                if let Err(e) = raw::encode_request(
                    &mut conn.out,
                    s.serialize,
                    &FrameHead::request(code, opaque),
                    &header.v2(),
                    p.template.body(),
                    s.signing,
                ) {
                    tracing::debug!(error = %e, "send not encoded");
                    if measured {
                        sinks.produce.record_error();
                    }
                    continue;
                }
                conn.pending.insert(
                    opaque,
                    Pending::Send {
                        producer: pi,
                        intended,
                        measured,
                        deadline: now + s.send_timeout,
                    },
                );
                p.in_flight += 1;
                busy = true;
            }
        }
        // 2. Pulls: one in flight per queue until the pullers stop.
        for (qi, p) in pullers.iter_mut().enumerate() {
            if p.in_flight
                || now < s.start_pulls
                || now >= s.stop_pulls
                || p.retry_at.is_some_and(|t| t > now)
            {
                continue;
            }
            p.retry_at = None;
            let conn = &mut conns[p.conn];
            if conn.failed.is_some() {
                continue;
            }
            let suspend = (s.stop_pulls - now)
                .min(s.max_suspend)
                .max(Duration::from_millis(1));
            let commit = p.offset != p.committed;
            let mut sys_flag = PullSysFlag::SUBSCRIPTION | PullSysFlag::SUSPEND;
            if commit {
                sys_flag |= PullSysFlag::COMMIT_OFFSET;
            }
            let h = PullMessageRequestHeader {
                consumer_group: s.consumer_group,
                topic: &p.mq.topic,
                queue_id: p.mq.queue_id,
                queue_offset: p.offset,
                max_msg_nums: s.pull_batch,
                sys_flag,
                commit_offset: if commit { p.offset } else { 0 },
                suspend_timeout_millis: suspend.as_millis() as i64,
                subscription: Some(s.sql.unwrap_or("*")),
                sub_version: 0,
                expression_type: Some(if s.sql.is_some() { "SQL92" } else { "TAG" }),
                max_msg_bytes: None,
                broker_name: Some(&p.mq.broker_name),
            };
            let opaque = conn.opaque();
            let head = FrameHead::request(RequestCode::PULL_MESSAGE, opaque);
            if let Err(e) =
                raw::encode_request(&mut conn.out, s.serialize, &head, &h, &[], s.signing)
            {
                tracing::warn!(error = %e, queue = ?p.mq, "pull not encoded");
                sinks.consume.record_error();
                p.retry_at = Some(now + s.pull_retry);
                continue;
            }
            conn.pending.insert(
                opaque,
                Pending::Pull {
                    puller: qi,
                    deadline: now + suspend + s.send_timeout,
                    committed: commit.then_some(p.offset),
                },
            );
            p.in_flight = true;
            busy = true;
        }
        // 3. Out: one write per connection with queued bytes.
        for c in conns.iter_mut() {
            busy |= c.flush();
        }
        // Done?
        let sends_done = producers.iter().all(|p| p.done);
        let in_flight_sends: usize = producers.iter().map(|p| p.in_flight).sum();
        if sends_done && drain_until.is_none() {
            drain_until = Some(now + s.drain);
        }
        let pulls_done = now >= s.stop_pulls && pullers.iter().all(|p| !p.in_flight);
        let drained = in_flight_sends == 0 || drain_until.is_some_and(|d| now >= d);
        if sends_done && drained && (pulls_done || now >= s.stop_pulls + s.drain) {
            break;
        }
        // 4. Wait (or not) and find readable sockets.
        if busy {
            last_event = now;
        }
        let mut wake = next_sweep.min(next_report);
        if let Some(d) = next_due {
            wake = wake.min(d.checked_sub(s.wake_ahead).unwrap_or(d));
        }
        if in_flight_sends > 0 {
            if let Some(d) = drain_until {
                wake = wake.min(d);
            }
        }
        if now < s.start_pulls {
            wake = wake.min(s.start_pulls);
        } else if now < s.stop_pulls {
            wake = wake.min(s.stop_pulls);
        }
        for p in &pullers {
            if let Some(t) = p.retry_at {
                wake = wake.min(t);
            }
        }
        let spinning = now.saturating_duration_since(last_event) < s.spin;
        let timeout = if busy || spinning {
            Duration::ZERO
        } else {
            wake.saturating_duration_since(now)
        };
        for (f, c) in fds.iter_mut().zip(&conns) {
            f.events = if c.failed.is_some() {
                0
            } else if c.wants_write() {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            };
            f.revents = 0;
        }
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live, initialized array of `fds.len()` pollfd entries for the
        // duration of the call, `ts` outlives it, and a null sigmask leaves the mask alone.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(e.kind(), format!("ppoll failed: {e}")));
            }
        }
        // 5. In: decode every complete frame where it lies.
        let now = Instant::now();
        for (ci, f) in fds.iter().enumerate() {
            if f.revents == 0 {
                continue;
            }
            let c = &mut conns[ci];
            if f.revents & libc::POLLOUT != 0 {
                c.flush();
            }
            if f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
                continue;
            }
            if c.fill() {
                last_event = now;
            }
            loop {
                match decode_frame(&c.inb[c.start..c.end], &limits) {
                    Ok(FrameDecode::NeedMore { frame_bytes }) => {
                        let need = frame_bytes.unwrap_or(8);
                        if c.start > 0 && (c.inb.len() - c.start < need || c.start == c.end) {
                            c.inb.copy_within(c.start..c.end, 0);
                            c.end -= c.start;
                            c.start = 0;
                        }
                        if c.inb.len() < need {
                            c.inb.resize(need, 0);
                        }
                        break;
                    }
                    Ok(FrameDecode::Frame { consumed, command }) => {
                        match command {
                            Ok(view) if view.is_response() => {
                                if let Some(p) = c.pending.remove(&view.opaque) {
                                    if let (Some(state), Pending::Send { .. }) =
                                        (s.end_transaction, &p)
                                    {
                                        if raw::send_ok(view.code) {
                                            // Fields, not methods: `view` borrows `c.inb`.
                                            let opaque = next_opaque(&mut c.next_opaque);
                                            if !raw::end_transaction(
                                                &mut c.out,
                                                s.serialize,
                                                opaque,
                                                s.producer_group,
                                                &view,
                                                state,
                                                s.signing,
                                            ) {
                                                malformed += 1;
                                            }
                                        }
                                    }
                                    answer(
                                        &view,
                                        p,
                                        now,
                                        &mut producers,
                                        &mut pullers,
                                        sched,
                                        sinks,
                                        s,
                                        &mut malformed,
                                    );
                                }
                            }
                            // A request from the broker (e.g. NOTIFY_CONSUMER_IDS_CHANGED):
                            // the raw pullers own fixed queues, so there is nothing to do.
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(addr = %c.addr, error = %e, "undecodable frame");
                                if let (Some(op), Some(flag)) = (e.opaque, e.flag) {
                                    if flag & 1 != 0 {
                                        if let Some(p) = c.pending.remove(&op) {
                                            fail(p, now, &mut producers, &mut pullers, sinks, s);
                                        }
                                    }
                                }
                            }
                        }
                        c.start += consumed;
                    }
                    Err(e) => {
                        c.failed = Some(format!("stream corrupt: {e}"));
                        break;
                    }
                }
            }
        }
        // 6. Failed connections fail their requests; deadlines; progress.
        for c in conns.iter_mut() {
            if let Some(reason) = &c.failed {
                if !c.pending.is_empty() {
                    tracing::warn!(addr = %c.addr, %reason, requests = c.pending.len(), "connection lost");
                    for (_, p) in c.pending.drain() {
                        fail(p, now, &mut producers, &mut pullers, sinks, s);
                    }
                }
            }
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY;
            for c in conns.iter_mut() {
                let late: Vec<i32> = c
                    .pending
                    .iter()
                    .filter(|(_, p)| p.deadline() <= now)
                    .map(|(&o, _)| o)
                    .collect();
                for o in late {
                    if let Some(p) = c.pending.remove(&o) {
                        tracing::debug!(addr = %c.addr, "request timed out");
                        fail(p, now, &mut producers, &mut pullers, sinks, s);
                    }
                }
            }
        }
        if now >= next_report {
            next_report = now + REPORT_EVERY;
            report(sinks);
        }
    }
    let drained_at = if !pullers.is_empty() && pullers.iter().all(|p| p.drained_at.is_some()) {
        pullers.iter().filter_map(|p| p.drained_at).max()
    } else {
        None
    };
    Ok(Finish {
        pull_offsets: pullers.iter().map(|p| p.offset).collect(),
        malformed,
        drained_at,
    })
}

/// A request that will get no answer.
fn fail(
    p: Pending,
    now: Instant,
    producers: &mut [Producer],
    pullers: &mut [Puller],
    sinks: &mut Sinks<'_>,
    s: &Settings<'_>,
) {
    match p {
        Pending::Send {
            producer, measured, ..
        } => {
            producers[producer].in_flight -= 1;
            if measured {
                sinks.produce.record_error();
            }
        }
        Pending::Pull { puller, .. } => {
            let q = &mut pullers[puller];
            q.in_flight = false;
            q.retry_at = Some(now + s.pull_retry);
            sinks.consume.record_error();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn answer(
    view: &CommandView<'_>,
    p: Pending,
    now: Instant,
    producers: &mut [Producer],
    pullers: &mut [Puller],
    sched: &dyn Schedule,
    sinks: &mut Sinks<'_>,
    s: &Settings<'_>,
    malformed: &mut u64,
) {
    match p {
        Pending::Send {
            producer,
            intended,
            measured,
            ..
        } => {
            let pr = &mut producers[producer];
            pr.in_flight -= 1;
            if !measured {
                return;
            }
            if raw::send_ok(view.code) {
                let lat = now.saturating_duration_since(intended).as_micros() as u64;
                let n = pr.template.messages() as u64;
                let bytes = pr.template.payload_bytes() as u64;
                sinks.produce.record(lat, n, bytes);
            } else {
                tracing::debug!(code = view.code, remark = ?view.remark(), "send refused");
                sinks.produce.record_error();
            }
        }
        Pending::Pull {
            puller, committed, ..
        } => {
            let q = &mut pullers[puller];
            q.in_flight = false;
            if let Some(o) = committed {
                q.committed = o;
            }
            let found = match view.code {
                ResponseCode::SUCCESS => true,
                ResponseCode::PULL_NOT_FOUND
                | ResponseCode::PULL_RETRY_IMMEDIATELY
                | ResponseCode::PULL_OFFSET_MOVED => false,
                other => {
                    tracing::debug!(code = other, remark = ?view.remark(), queue = ?q.mq, "pull refused");
                    sinks.consume.record_error();
                    q.retry_at = Some(now + s.pull_retry);
                    return;
                }
            };
            match view.decode_header::<PullMessageResponseHeader>() {
                Ok(h) => {
                    q.offset = h.next_begin_offset;
                    // Read to the end: by these records (now), or earlier, when the queue
                    // was already empty.
                    if found && h.next_begin_offset >= h.max_offset {
                        q.drained_at = Some(now);
                    } else if !found {
                        q.drained_at.get_or_insert(now);
                    } else {
                        q.drained_at = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = ?q.mq, "pull answer without a readable header");
                    sinks.consume.record_error();
                    q.retry_at = Some(now + s.pull_retry);
                    return;
                }
            }
            if found {
                let bad = std::cell::Cell::new(0u64);
                raw::for_each_record(view.body, &bad, |b, born| {
                    if let Some(lat) = sched.arrival(b, born, now) {
                        sinks.consume.record(lat, 1, b.len() as u64);
                    }
                });
                if bad.get() > 0 {
                    *malformed += bad.get();
                    sinks.consume.record_error();
                }
            }
        }
    }
}
