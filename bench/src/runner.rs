//! Running a benchmark: worker threads (pinned when `--cpus` is given; each sets up its
//! clients on a glommio executor, then runs the raw loop of [`crate::engine`] or the client
//! library), the per-second reporter and the final report.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use ramjet_core::remoting::SerializeType;
use ramjet_net::client::admin::{Admin, TopicSpec};
use ramjet_net::client::consumer::{
    ConsumeFrom, ConsumeResult, PullOptions, PushConsumer, PushConsumerConfig, Subscription,
};
use ramjet_net::client::selector::QueueSelector;
use ramjet_net::client::transport::{self, block_on, block_on_spinning};
use ramjet_net::client::{
    Client, ClientConfig, ClientError, Message, MessageExt, Producer, ProducerConfig,
};

use crate::args::{parse_cpus, BenchArgs, ClientImpl, StartFrom};
use crate::engine;
use crate::raw::{self, BatchTemplate};
use crate::stats::{progress_line, LatencySummary, Recorder, Report};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    E2e,
    Pingpong,
    Pop,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::E2e => "e2e",
            Mode::Pingpong => "pingpong",
            Mode::Pop => "pop",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("worker {worker} failed: {reason}")]
    Worker { worker: usize, reason: String },
    #[error("cannot write {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
}

/// How long a run waits for a topic it created to show in the name server's route.
const ROUTE_WAIT: Duration = Duration::from_secs(10);
/// Seconds after start-up before the load begins (connections and routes are set up first).
const SETUP_SECS: f64 = 0.3;
/// How long producers wait for in-flight requests after the run.
const DRAIN: Duration = Duration::from_secs(5);
/// How long e2e consumers keep receiving after the producers stop.
const E2E_GRACE: Duration = Duration::from_secs(1);
/// A stamp outside [now - this, now + this] is not a ramjet-bench stamp.
const STAMP_PLAUSIBLE_US: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Produce,
    Consume,
    /// Open loop: how late each request left against its schedule (the generator's own lag).
    Lag,
}

enum WorkerMsg {
    /// One interval of one side from worker `usize`; the recorder goes back to that worker,
    /// cleared, through its spares channel.
    Interval(usize, Side, Recorder),
    /// A consume run read every queue of this worker to its end at this instant.
    Drained(Instant),
    Done,
    Failed(usize, String),
}

/// The result of a run: the primary side's report and recorder, plus the produce side of e2e.
pub struct Outcome {
    pub report: Report,
    pub recorder: Recorder,
    pub produce_side: Option<(Report, Recorder)>,
    /// Open loop: actual minus intended send time of every measured request. A generator that
    /// keeps up shows tens of microseconds here; milliseconds mean the load generator itself
    /// (its CPU, its wake-ups) is part of the latency the report shows.
    pub send_lag: Option<LatencySummary>,
    /// Consume runs that read the whole backlog before the window ended: seconds after the
    /// measured start when the last queue was read to its end. The report's duration and rates
    /// are over that time.
    pub drained_after_s: Option<f64>,
}

/// Shared timing of one run (all `Instant`s of this process).
#[derive(Debug, Clone, Copy)]
struct Timing {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    /// `epoch_us` at `base`, to turn instants into wall-clock µs for body stamps.
    base: Instant,
    base_epoch_us: u64,
}

impl Timing {
    fn epoch_us(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_epoch_us + d.as_micros() as u64,
            None => self
                .base_epoch_us
                .saturating_sub(self.base.duration_since(t).as_micros() as u64),
        }
    }
}

fn now_epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Work of one worker thread.
#[derive(Debug, Clone)]
struct Assignment {
    index: usize,
    cpu: Option<usize>,
    producers: usize,
    consumers: usize,
    clients: usize,
    /// Global numbers of this worker's first producer and consumer.
    first_producer: usize,
    first_consumer: usize,
    /// Consumers over all workers (raw pullers split the queues by global number).
    all_consumers: usize,
}

fn assignments(args: &BenchArgs, mode: Mode) -> Result<Vec<Assignment>, BenchError> {
    let cpus: Vec<Option<usize>> = match &args.cpus {
        Some(c) => parse_cpus(c)
            .map_err(BenchError::Args)?
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    };
    let w = cpus.len();
    let (producers, consumers) = match mode {
        Mode::Produce => (args.producers, 0),
        Mode::Consume | Mode::Pop => (0, args.consumers),
        Mode::E2e => (args.producers, args.consumers),
        Mode::Pingpong => (1, 1),
    };
    let share = |n: usize, i: usize| n / w + usize::from(i < n % w);
    let conns = args.connections.unwrap_or(producers + consumers).max(1);
    let (mut first_producer, mut first_consumer) = (0, 0);
    Ok(cpus
        .into_iter()
        .enumerate()
        .map(|(i, cpu)| {
            let a = Assignment {
                index: i,
                cpu,
                producers: share(producers, i),
                consumers: share(consumers, i),
                clients: share(conns, i).max(1),
                first_producer,
                first_consumer,
                all_consumers: consumers,
            };
            first_producer += a.producers;
            first_consumer += a.consumers;
            a
        })
        .collect())
}

/// Run a benchmark to completion, printing progress unless `args.quiet`.
pub fn run(mode: Mode, args: &BenchArgs) -> Result<Outcome, BenchError> {
    args.validate().map_err(BenchError::Args)?;
    if args.size < 8 && matches!(mode, Mode::E2e | Mode::Consume | Mode::Pingpong) {
        return Err(BenchError::Args(format!(
            "--size {} is too small: e2e latency needs 8 body bytes for the time stamp",
            args.size
        )));
    }
    ClientConfig::new(&args.namesrv)?;
    if let Some(q) = args.queues {
        let (ns, topic, cluster) = (
            args.namesrv.clone(),
            args.topic.clone(),
            args.cluster.clone(),
        );
        let credentials = args.credentials();
        block_on(None, async move {
            let mut cfg = ClientConfig::new(&ns)?;
            cfg.credentials = credentials;
            let client = Client::new(cfg);
            let admin = Admin::new(client.clone());
            let masters = admin
                .create_topic(&TopicSpec::new(topic.clone(), q), cluster.as_deref())
                .await?;
            // The brokers tell the name servers at once, but asynchronously: wait until the
            // route shows the topic on every broker, or routes fall back to TBW102.
            let deadline = Instant::now() + ROUTE_WAIT;
            loop {
                let seen = match client.fetch_route(&topic).await {
                    Ok(r) => masters.iter().all(|m| {
                        r.queue_datas
                            .iter()
                            .any(|qd| qd.broker_name == m.broker_name && qd.write_queue_nums == q)
                    }),
                    Err(_) => false,
                };
                if seen {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(BenchError::Args(format!(
                        "topic {topic} was created but the name server does not show it on every broker after {} s",
                        ROUTE_WAIT.as_secs()
                    )));
                }
                transport::sleep(Duration::from_millis(50)).await;
            }
        })??;
    }
    let plan = assignments(args, mode)?;
    let now = Instant::now();
    let start = now + Duration::from_secs_f64(SETUP_SECS);
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let timing = Timing {
        start,
        measure_start,
        end: measure_start + Duration::from_secs_f64(args.duration),
        base: now,
        base_epoch_us: now_epoch_us(),
    };
    let (tx, rx) = mpsc::channel::<WorkerMsg>();
    let mut handles = Vec::new();
    // Interval recorders travel worker -> here -> back (cleared): see `Spares`.
    let mut give_back = Vec::with_capacity(plan.len());
    for a in plan.clone() {
        let (tx, args) = (tx.clone(), args.clone());
        let (back_tx, back_rx) = mpsc::channel::<Recorder>();
        give_back.push(back_tx);
        handles.push(std::thread::spawn(move || {
            let idx = a.index;
            let cpu = a.cpu;
            let tx2 = tx.clone();
            let spin = Duration::from_micros(args.spin_us);
            if cpu.is_some() && args.slice_us > 0 {
                // Before the executor starts: the threads it creates inherit the slice.
                if let Err(e) = ramjet_net::runtime::request_time_slice(Duration::from_micros(
                    args.slice_us,
                )) {
                    tracing::warn!(error = %e, slice_us = args.slice_us, "could not set the worker's time slice (--slice-us); the kernel's default stays");
                }
            }
            let r = block_on_spinning(cpu, spin, worker(mode, a, args, timing, tx2, back_rx));
            let msg = match r {
                Ok(Ok(())) => WorkerMsg::Done,
                Ok(Err(e)) => WorkerMsg::Failed(idx, e.to_string()),
                Err(e) => WorkerMsg::Failed(idx, e.to_string()),
            };
            let _ = tx.send(msg);
        }));
    }
    drop(tx);
    let (mut produce_total, mut consume_total) = (Recorder::new(), Recorder::new());
    let mut lag_total = Recorder::new();
    let mut interval = Recorder::new();
    let mut last_tick = Instant::now();
    let mut done = 0;
    let mut failure: Option<BenchError> = None;
    let mut drained: Vec<Instant> = Vec::new();
    let primary = if mode == Mode::Produce {
        Side::Produce
    } else {
        Side::Consume
    };
    while done < plan.len() {
        let wait = Duration::from_secs(1).saturating_sub(last_tick.elapsed());
        match rx.recv_timeout(wait) {
            Ok(WorkerMsg::Interval(worker, side, mut rec)) => {
                match side {
                    Side::Produce => produce_total.add(&rec),
                    Side::Consume => consume_total.add(&rec),
                    Side::Lag => lag_total.add(&rec),
                }
                if side == primary {
                    interval.add(&rec);
                }
                rec.clear();
                if let Some(back) = give_back.get(worker) {
                    let _ = back.send(rec);
                }
            }
            Ok(WorkerMsg::Drained(t)) => drained.push(t),
            Ok(WorkerMsg::Done) => done += 1,
            Ok(WorkerMsg::Failed(worker, reason)) => {
                done += 1;
                failure.get_or_insert(BenchError::Worker { worker, reason });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let secs = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            if !args.quiet && Instant::now() > timing.start {
                let elapsed = Instant::now()
                    .saturating_duration_since(timing.start)
                    .as_secs_f64();
                eprintln!("{}", progress_line(elapsed, &interval, secs));
            }
            interval = Recorder::new();
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let rate = if matches!(mode, Mode::Pingpong | Mode::Consume | Mode::Pop) {
        None
    } else {
        args.rate
    };
    let rec = if primary == Side::Produce {
        produce_total.clone()
    } else {
        consume_total.clone()
    };
    let side_name = mode.name();
    // A consume run that read every queue to its end inside the window (a drained catch-up
    // backlog) is rated over the time it took, not over the idle rest of the window.
    let consumer_workers = plan.iter().filter(|a| a.consumers > 0).count();
    let drained_after_s = (matches!(mode, Mode::Consume | Mode::Pop)
        && consumer_workers > 0
        && drained.len() == consumer_workers)
        .then(|| drained.iter().max().copied())
        .flatten()
        .filter(|&t| t > timing.measure_start && t < timing.end)
        .map(|t| {
            t.saturating_duration_since(timing.measure_start)
                .as_secs_f64()
                .max(1e-3)
        });
    let report = Report::new(
        side_name,
        rate,
        drained_after_s.unwrap_or(args.duration),
        &rec,
    );
    let produce_side = (mode == Mode::E2e).then(|| {
        (
            Report::new(
                "e2e (produce side)",
                args.rate,
                args.duration,
                &produce_total,
            ),
            produce_total,
        )
    });
    let send_lag = (args.rate.is_some() && matches!(mode, Mode::Produce | Mode::E2e))
        .then(|| lag_total.summary());
    Ok(Outcome {
        report,
        recorder: rec,
        produce_side,
        send_lag,
        drained_after_s,
    })
}

/// Write `--json` / `--hgrm` outputs of an outcome.
pub fn write_outputs(args: &BenchArgs, out: &Outcome) -> Result<(), BenchError> {
    if let Some(p) = &args.json {
        let mut v =
            serde_json::to_value(&out.report).map_err(|e| BenchError::Args(e.to_string()))?;
        if let Some((r, _)) = &out.produce_side {
            v["produce_side"] =
                serde_json::to_value(r).map_err(|e| BenchError::Args(e.to_string()))?;
        }
        if let Some(l) = &out.send_lag {
            v["send_lag"] = serde_json::to_value(l).map_err(|e| BenchError::Args(e.to_string()))?;
        }
        if let Some(d) = out.drained_after_s {
            v["drained_after_s"] = serde_json::json!(d);
        }
        let text = serde_json::to_string_pretty(&v).map_err(|e| BenchError::Args(e.to_string()))?;
        std::fs::write(p, text + "\n").map_err(|source| BenchError::Output {
            path: p.display().to_string(),
            source,
        })?;
    }
    if let Some(p) = &args.hgrm {
        std::fs::write(p, crate::stats::hgrm(&out.recorder)).map_err(|source| {
            BenchError::Output {
                path: p.display().to_string(),
                source,
            }
        })?;
    }
    Ok(())
}

async fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        transport::sleep(t - now).await;
    }
}

type Rec = Rc<RefCell<Recorder>>;
/// Hands one interval's (produce, consume, lag) recorders over, leaving empty ones.
type ReportFn = Rc<dyn Fn(&mut Recorder, &mut Recorder, &mut Recorder)>;

async fn worker(
    mode: Mode,
    a: Assignment,
    args: BenchArgs,
    timing: Timing,
    tx: mpsc::Sender<WorkerMsg>,
    back: mpsc::Receiver<Recorder>,
) -> Result<(), BenchError> {
    let mut clients = Vec::new();
    for _ in 0..a.clients {
        let mut cfg = ClientConfig::new(&args.namesrv)?;
        cfg.serialize_type = match args.serialize {
            crate::args::Serialize::Rocketmq => SerializeType::RocketMq,
            crate::args::Serialize::Json => SerializeType::Json,
        };
        cfg.credentials = args.credentials();
        clients.push(Client::new(cfg));
    }
    let stop_reporting = Rc::new(std::cell::Cell::new(false));
    let drained_tx = tx.clone();
    let me = a.index;
    let spares = Spares::new(back);
    let report: ReportFn = Rc::new(move |p, c, l| {
        for (side, live) in [(Side::Produce, p), (Side::Consume, c), (Side::Lag, l)] {
            let mut out = spares.take();
            live.swap_into(&mut out);
            let _ = tx.send(WorkerMsg::Interval(me, side, out));
        }
    });
    let recs = Recs {
        produce: Rc::new(RefCell::new(Recorder::new())),
        consume: Rc::new(RefCell::new(Recorder::new())),
        lag: Rc::new(RefCell::new(Recorder::new())),
        report,
        drained: Rc::new(std::cell::Cell::new(None)),
    };
    let hand_over = |r: &Recs| {
        (r.report)(
            &mut r.produce.borrow_mut(),
            &mut r.consume.borrow_mut(),
            &mut r.lag.borrow_mut(),
        )
    };
    {
        let (p, c, l, report, stop) = (
            recs.produce.clone(),
            recs.consume.clone(),
            recs.lag.clone(),
            recs.report.clone(),
            stop_reporting.clone(),
        );
        transport::spawn(async move {
            while !stop.get() {
                transport::sleep(Duration::from_secs(1)).await;
                if stop.get() {
                    break;
                }
                report(
                    &mut p.borrow_mut(),
                    &mut c.borrow_mut(),
                    &mut l.borrow_mut(),
                );
            }
        });
    }
    let result = match mode {
        Mode::Pingpong => pingpong(&clients, &args, timing, &recs.consume).await,
        Mode::Pop => pop_load(&a, &clients, &args, timing, &recs).await,
        _ => load(mode, &a, &clients, &args, timing, &recs).await,
    };
    stop_reporting.set(true);
    hand_over(&recs);
    if let Some(t) = recs.drained.get() {
        let _ = drained_tx.send(WorkerMsg::Drained(t));
    }
    result
}

/// Empty recorders a worker swaps its interval recorders with once a second (three per
/// interval): allocated and zeroed before the run, then the same ones come back cleared by the
/// reporter thread, so the send loop never allocates, copies or frees a histogram.
struct Spares {
    stock: RefCell<Vec<Recorder>>,
    back: mpsc::Receiver<Recorder>,
}

/// Spares a worker starts with: two intervals' worth, so one can be away at the reporter.
const SPARE_RECORDERS: usize = 6;

impl Spares {
    fn new(back: mpsc::Receiver<Recorder>) -> Spares {
        let stock = (0..SPARE_RECORDERS)
            .map(|_| {
                let mut r = Recorder::new();
                // Touch every page of the counts now, not on the first records of an interval.
                r.clear();
                r
            })
            .collect();
        Spares {
            stock: RefCell::new(stock),
            back,
        }
    }

    /// An empty recorder: one given back, else from the stock, else (the reporter fell behind)
    /// a new one.
    fn take(&self) -> Recorder {
        let mut stock = self.stock.borrow_mut();
        while let Ok(r) = self.back.try_recv() {
            stock.push(r);
        }
        stock.pop().unwrap_or_default()
    }
}

/// The recorders a worker's load loops write into.
struct Recs {
    produce: Rec,
    consume: Rec,
    lag: Rec,
    /// Hands one interval's recorders (produce, consume, lag) to the reporter thread, leaving
    /// empty ones in their place.
    report: ReportFn,
    /// Consume runs: when this worker's pullers had read their queues to the end.
    drained: Rc<std::cell::Cell<Option<Instant>>>,
}

async fn load(
    mode: Mode,
    a: &Assignment,
    clients: &[Client],
    args: &BenchArgs,
    timing: Timing,
    recs: &Recs,
) -> Result<(), BenchError> {
    if args.client == ClientImpl::Raw {
        return raw_load(mode, a, clients, args, timing, recs).await;
    }
    let consume_rec = &recs.consume;
    // Consumers first, so e2e sees every message.
    let mut consumers = Vec::new();
    for i in 0..a.consumers {
        let client = clients[(a.producers + i) % clients.len()].clone();
        let mut cfg = PushConsumerConfig::new(args.group.clone(), args.topic.clone());
        cfg.consume_from = match (mode, args.from) {
            (Mode::E2e, _) | (_, StartFrom::Last) => ConsumeFrom::Last,
            (_, StartFrom::First) => ConsumeFrom::First,
        };
        let rec = consume_rec.clone();
        let by_stamp = mode == Mode::E2e;
        let handler = Rc::new(move |m: &MessageExt| {
            record_arrival(&rec, m, timing, by_stamp);
            ConsumeResult::Success
        });
        consumers.push(PushConsumer::start(client, cfg, handler).await?);
    }
    let mut tasks = Vec::new();
    for i in 0..a.producers {
        let client = clients[i % clients.len()].clone();
        let mut cfg = ProducerConfig::new(PRODUCER_GROUP);
        cfg.async_window = args.window;
        let producer = Producer::new(client, cfg);
        // Route and connection before the clock starts.
        let queues = producer.queues(&args.topic).await?;
        for mq in &queues {
            producer
                .client()
                .connection(&producer.client().master_addr(&mq.broker_name)?)
                .await?;
        }
        tasks.push(transport::spawn_joinable(produce_loop(
            producer,
            args.clone(),
            timing,
            recs.produce.clone(),
            recs.lag.clone(),
        )));
    }
    sleep_until(timing.end).await;
    for t in tasks {
        let _ = t.await;
    }
    if !consumers.is_empty() {
        if mode == Mode::E2e {
            transport::sleep(E2E_GRACE).await;
        }
        for c in consumers {
            let _ = c.shutdown().await;
        }
    }
    Ok(())
}

fn record_arrival(rec: &Rec, m: &MessageExt, timing: Timing, by_stamp: bool) {
    let now = Instant::now();
    if let Some(lat) = arrival_latency(&m.body, m.born_timestamp, now, timing, by_stamp) {
        rec.borrow_mut().record(lat, 1, m.body.len() as u64);
    }
}

/// Latency of a message that arrived at `now`: from the body's stamp (or the born time when
/// the body carries none); `None` when outside the measured window.
fn arrival_latency(
    body: &[u8],
    born_ms: i64,
    now: Instant,
    timing: Timing,
    by_stamp: bool,
) -> Option<u64> {
    let now_us = timing.epoch_us(now);
    let stamp = body
        .get(..8)
        .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .filter(|s| s.abs_diff(now_us) < STAMP_PLAUSIBLE_US)
        .unwrap_or((born_ms.max(0) as u64) * 1000);
    let in_window = if by_stamp {
        stamp >= timing.epoch_us(timing.measure_start) && stamp < timing.epoch_us(timing.end)
    } else {
        now >= timing.measure_start && now < timing.end
    };
    in_window.then(|| now_us.saturating_sub(stamp))
}

/// Producer group of the generator's sends.
const PRODUCER_GROUP: &str = "ramjet_bench_producer";
/// How long a send may wait for its answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest long-poll of a raw pull (shorter near the end of the run).
const MAX_SUSPEND: Duration = Duration::from_secs(1);
/// Back-off after a failed pull.
const PULL_RETRY: Duration = Duration::from_millis(100);

/// `load` with the generator's own protocol loop (`--client raw`, [`engine`]): routes, queues
/// and start offsets come from the client library; the load runs on plain sockets.
async fn raw_load(
    mode: Mode,
    a: &Assignment,
    clients: &[Client],
    args: &BenchArgs,
    timing: Timing,
    recs: &Recs,
) -> Result<(), BenchError> {
    // The route, fetched by every client (each keeps its own broker table); every producer
    // and puller uses the same queue list.
    let mut queues = Vec::new();
    for c in clients {
        queues = Producer::new(c.clone(), ProducerConfig::new(PRODUCER_GROUP))
            .queues(&args.topic)
            .await?;
    }
    if queues.is_empty() {
        return Err(BenchError::Args(format!(
            "topic {} has no queue in the route",
            args.topic
        )));
    }
    // One socket per (client instance, broker), like the client library's connections.
    let mut addrs: Vec<String> = Vec::new();
    let mut slots: Vec<(usize, String)> = Vec::new();
    let mut slot = |client: usize, addr: String| -> usize {
        match slots.iter().position(|s| s.0 == client && s.1 == addr) {
            Some(i) => i,
            None => {
                slots.push((client, addr.clone()));
                addrs.push(addr);
                addrs.len() - 1
            }
        }
    };
    let mut pullers = Vec::new();
    let mut pulled_queues = Vec::new();
    for i in 0..a.consumers {
        let global = a.first_consumer + i;
        let ci = (a.producers + i) % clients.len();
        let client = &clients[ci];
        for (qi, mq) in queues.iter().enumerate() {
            if qi % a.all_consumers.max(1) != global {
                continue;
            }
            let addr = client.master_addr(&mq.broker_name)?;
            let offset = match client.committed_offset(&args.group, mq).await? {
                Some(o) if o >= 0 && mode != Mode::E2e => o,
                _ => match (mode, args.from) {
                    (Mode::E2e, _) | (_, StartFrom::Last) => client.max_offset(mq).await?,
                    (_, StartFrom::First) => client.min_offset(mq).await?,
                },
            };
            pullers.push(engine::PullerPlan {
                mq: mq.clone(),
                conn: slot(ci, addr),
                offset,
            });
            pulled_queues.push((ci, mq.clone()));
        }
    }
    let mut producers = Vec::new();
    for i in 0..a.producers {
        let ci = i % clients.len();
        let client = &clients[ci];
        let mut targets = Vec::with_capacity(queues.len());
        for mq in &queues {
            targets.push((mq.clone(), slot(ci, client.master_addr(&mq.broker_name)?)));
        }
        let prefix = raw::id_prefix(client, a.first_producer + i);
        let template = BatchTemplate::new_with(
            &args.topic,
            args.batch,
            args.size,
            &prefix,
            args.delay(),
            args.transaction.map(|_| PRODUCER_GROUP),
        )?;
        producers.push(engine::ProducerPlan { template, targets });
    }
    let signing = match (&args.access_key, &args.secret_key) {
        (Some(ak), Some(sk)) => Some(raw::Signing::new(ak, sk)),
        _ => None,
    };
    let settings = engine::Settings {
        signing: signing.as_ref(),
        serialize: clients[0].config().serialize_type,
        producer_group: PRODUCER_GROUP,
        consumer_group: &args.group,
        window: args.window,
        pull_batch: args.pull_batch,
        spin: Duration::from_micros(args.spin_us),
        wake_ahead: Duration::from_micros(args.wake_ahead_us),
        send_timeout: SEND_TIMEOUT,
        max_suspend: MAX_SUSPEND,
        pull_retry: PULL_RETRY,
        drain: DRAIN,
        start_pulls: timing.start,
        stop_pulls: match mode {
            Mode::E2e => timing.end + E2E_GRACE,
            _ => timing.end,
        },
        end_transaction: args.transaction.map(|t| t.code()),
        sql: args.sql.as_deref(),
    };
    let sched = RunSchedule {
        timing,
        rate: args.rate,
        producers: args.producers,
        batch: args.batch,
        by_stamp: mode == Mode::E2e,
    };
    let plan = engine::Plan {
        addrs,
        producers,
        pullers,
    };
    // The loop owns the thread until the run ends; it hands the interval recorders to the
    // reporter itself.
    let finish = {
        let (mut p, mut c, mut l) = (
            recs.produce.borrow_mut(),
            recs.consume.borrow_mut(),
            recs.lag.borrow_mut(),
        );
        let mut sinks = engine::Sinks {
            produce: &mut p,
            consume: &mut c,
            lag: &mut l,
        };
        let report = &recs.report;
        engine::run(plan, &settings, &sched, &mut sinks, &mut |s| {
            report(s.produce, s.consume, s.lag)
        })
        .map_err(|e| BenchError::Args(e.to_string()))?
    };
    if mode == Mode::Consume {
        recs.drained.set(finish.drained_at);
    }
    if finish.malformed > 0 {
        tracing::warn!(
            malformed = finish.malformed,
            "pull answers held malformed records"
        );
    }
    // Leave the group's progress on the broker (the pulls carried it until the last one).
    for ((ci, mq), offset) in pulled_queues.iter().zip(finish.pull_offsets) {
        if let Err(e) = clients[*ci].commit_offset(&args.group, mq, offset).await {
            tracing::debug!(error = %e, "final offset commit failed");
        }
    }
    Ok(())
}

/// The open- or closed-loop schedule of a run, for the raw loop.
struct RunSchedule {
    timing: Timing,
    rate: Option<f64>,
    producers: usize,
    batch: usize,
    by_stamp: bool,
}

impl engine::Schedule for RunSchedule {
    fn intended(&self, k: u64, now: Instant) -> Option<Instant> {
        let t = match self.rate {
            Some(r) => {
                let per_producer = r / self.producers.max(1) as f64;
                let interval = self.batch as f64 / per_producer;
                self.timing.start + Duration::from_secs_f64(interval * k as f64)
            }
            None => now.max(self.timing.start),
        };
        (t < self.timing.end).then_some(t)
    }

    fn measured(&self, t: Instant) -> bool {
        t >= self.timing.measure_start
    }

    fn epoch_us(&self, t: Instant) -> u64 {
        self.timing.epoch_us(t)
    }

    fn arrival(&self, body: &[u8], born_ms: i64, now: Instant) -> Option<u64> {
        arrival_latency(body, born_ms, now, self.timing, self.by_stamp)
    }

    fn open_loop(&self) -> bool {
        self.rate.is_some()
    }
}

fn build_batch(args: &BenchArgs, stamp_us: u64) -> Vec<Message> {
    (0..args.batch)
        .map(|_| {
            let mut b = BytesMut::with_capacity(args.size.max(8));
            if args.size >= 8 {
                b.put_u64(stamp_us);
            }
            b.resize(args.size, b'x');
            let m = Message::new(args.topic.clone(), b.freeze());
            match args.delay() {
                Some(d) => d.apply(m),
                None => m,
            }
        })
        .collect()
}

async fn produce_loop(producer: Producer, args: BenchArgs, timing: Timing, rec: Rec, lag: Rec) {
    use engine::Schedule;
    sleep_until(timing.start).await;
    let mut k: u64 = 0;
    let selector = QueueSelector::RoundRobin;
    let sched = RunSchedule {
        timing,
        rate: args.rate,
        producers: args.producers,
        batch: args.batch,
        by_stamp: false,
    };
    while let Some(intended) = sched.intended(k, Instant::now()) {
        sleep_until(intended).await;
        let msgs = build_batch(&args, timing.epoch_us(intended));
        let (n, bytes) = (args.batch as u64, (args.batch * args.size) as u64);
        let r = rec.clone();
        let measured = sched.measured(intended);
        if measured && sched.open_loop() {
            // How late the request leaves against its schedule (after waiting for a window
            // permit: a full window is lag too).
            let us = Instant::now()
                .saturating_duration_since(intended)
                .as_micros() as u64;
            lag.borrow_mut().record(us, 0, 0);
        }
        let sent = producer
            .send_async(msgs, &selector, move |res| {
                if !measured {
                    return;
                }
                let lat = Instant::now()
                    .saturating_duration_since(intended)
                    .as_micros() as u64;
                match res {
                    Ok(_) => r.borrow_mut().record(lat, n, bytes),
                    Err(e) => {
                        tracing::debug!(error = %e, "send failed");
                        r.borrow_mut().record_error();
                    }
                }
            })
            .await;
        if sent.is_err() && measured {
            rec.borrow_mut().record_error();
        }
        k += 1;
    }
    futures_lite::future::or(producer.flush(), transport::sleep(DRAIN)).await;
}

/// `pop`: the worker's poppers, each on its own task: pop (any queue of the next broker),
/// acknowledge the batch, record. When every popper found nothing for its last second or more
/// and got messages before, the backlog was drained at the last message popped.
async fn pop_load(
    a: &Assignment,
    clients: &[Client],
    args: &BenchArgs,
    timing: Timing,
    recs: &Recs,
) -> Result<(), BenchError> {
    use ramjet_net::client::{PopConsumer, PopOptions, PopStatus};
    let opts = PopOptions {
        max: args.pull_batch.clamp(1, 32),
        invisible: Duration::from_secs(60),
        poll: Duration::from_millis(200),
        order: false,
        from_end: args.from == StartFrom::Last,
    };
    let failed: Rc<RefCell<Option<BenchError>>> = Rc::new(RefCell::new(None));
    // Per popper: its last message's time, `None` while it never got one or still got some
    // in its last second.
    let last: Rc<RefCell<Vec<Option<Instant>>>> = Rc::new(RefCell::new(Vec::new()));
    let left = Rc::new(std::cell::Cell::new(a.consumers));
    for i in 0..a.consumers {
        let pc = PopConsumer::new(clients[i % clients.len()].clone(), &args.group, &args.topic);
        let (opts, rec, failed, left, last) = (
            opts.clone(),
            recs.consume.clone(),
            failed.clone(),
            left.clone(),
            last.clone(),
        );
        transport::spawn(async move {
            sleep_until(timing.start).await;
            let mut last_found: Option<Instant> = None;
            while Instant::now() < timing.end {
                let t0 = Instant::now();
                let batch = match pc.pop(&opts).await {
                    Ok(b) => b,
                    Err(e) => {
                        failed.borrow_mut().get_or_insert(e.into());
                        break;
                    }
                };
                if batch.status == PopStatus::PollingFull {
                    rec.borrow_mut().record_error();
                    transport::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                if batch.messages.is_empty() {
                    continue;
                }
                last_found = Some(Instant::now());
                let n = batch.messages.len() as u64;
                let bytes: u64 = batch
                    .messages
                    .iter()
                    .map(|p| p.message.body.len() as u64)
                    .sum();
                if let Err(e) = pc.ack_all(&batch.messages).await {
                    failed.borrow_mut().get_or_insert(e.into());
                    break;
                }
                if t0 >= timing.measure_start {
                    rec.borrow_mut()
                        .record(t0.elapsed().as_micros() as u64, n, bytes);
                }
            }
            let idle_at_end = last_found
                .filter(|t| timing.end.saturating_duration_since(*t) >= Duration::from_secs(1));
            last.borrow_mut().push(idle_at_end);
            left.set(left.get() - 1);
        });
    }
    while left.get() > 0 {
        transport::sleep(Duration::from_millis(20)).await;
    }
    let ends = last.borrow();
    if !ends.is_empty() && ends.iter().all(Option::is_some) {
        recs.drained.set(ends.iter().flatten().max().copied());
    }
    let e = failed.borrow_mut().take();
    e.map_or(Ok(()), Err)
}

/// Send one message, consume it, repeat: the round trip through the broker.
async fn pingpong(
    clients: &[Client],
    args: &BenchArgs,
    timing: Timing,
    rec: &Rec,
) -> Result<(), BenchError> {
    let client = clients[0].clone();
    let producer = Producer::new(client.clone(), ProducerConfig::new("ramjet_bench_producer"));
    let queues = producer.queues(&args.topic).await?;
    let Some(mq) = queues.first().cloned() else {
        return Err(BenchError::Args(format!(
            "topic {} has no writable queue",
            args.topic
        )));
    };
    let sub = Subscription::new(args.topic.clone(), "*");
    let mut offset = client.max_offset(&mq).await?;
    sleep_until(timing.start).await;
    while Instant::now() < timing.end {
        let t0 = Instant::now();
        let msgs = build_batch(
            &BenchArgs {
                batch: 1,
                ..args.clone()
            },
            timing.epoch_us(t0),
        );
        let Some(msg) = msgs.into_iter().next() else {
            break;
        };
        if let Err(e) = producer.send_to_queue(msg, &mq).await {
            tracing::debug!(error = %e, "pingpong send failed");
            rec.borrow_mut().record_error();
            continue;
        }
        loop {
            let r = client
                .pull(
                    &args.group,
                    &mq,
                    &sub,
                    offset,
                    PullOptions::new(1).suspend(Duration::from_secs(5)),
                )
                .await?;
            offset = r.next_begin_offset;
            if !r.messages.is_empty() {
                break;
            }
            if Instant::now() >= timing.end + DRAIN {
                break;
            }
        }
        if t0 >= timing.measure_start {
            rec.borrow_mut()
                .record(t0.elapsed().as_micros() as u64, 1, args.size as u64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;
    use ramjet_net::client::mock::{MockBroker, MockConfig};

    const STALL: Duration = Duration::from_millis(200);
    const STALL_US: u64 = 200_000;

    fn args_for(mock: &MockBroker, extra: &[&str]) -> BenchArgs {
        let mut argv = vec![
            "ramjet-bench",
            "produce",
            "--namesrv",
            Box::leak(mock.addr().into_boxed_str()),
            "--topic",
            "CO",
            "--quiet",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parse").command {
            Command::Produce(a) => a,
            _ => unreachable!("produce parsed"),
        }
    }

    fn stalled_mock() -> MockBroker {
        MockBroker::start(MockConfig {
            stall_at_send: Some(200),
            stall: STALL,
            ..MockConfig::default()
        })
        .expect("mock")
    }

    /// `--wake-ahead-us 0`: the loop sleeps until each request is due and still sends the
    /// whole schedule, each request once with its send lag recorded.
    #[test]
    fn sleeping_until_each_send_is_due_keeps_the_schedule() {
        let mock = MockBroker::start(MockConfig::default()).expect("mock");
        let args = args_for(
            &mock,
            &["--rate", "2000", "--duration", "1", "--wake-ahead-us", "0"],
        );
        assert_eq!(args.wake_ahead_us, 0);
        let out = run(Mode::Produce, &args).expect("open run, no wake-ahead");
        assert_eq!(out.recorder.errors, 0);
        assert!(
            out.recorder.messages >= 1800 && out.recorder.messages <= 2001,
            "sent {}",
            out.recorder.messages
        );
        let lag = out.send_lag.expect("open loop reports its send lag");
        assert_eq!(lag.count, out.recorder.messages);
    }

    /// The broker stalls once for 200 ms. Open loop at 1000 msg/s: every request intended during
    /// the stall waits for it, so ~200 samples carry up to 200 ms and p99/p99.9/max show it.
    /// Closed loop with one request in flight: the stall delays exactly one request (the load
    /// generator itself waits), so p99 stays small: the omission the correction avoids.
    #[test]
    fn open_loop_sees_the_stall_that_closed_loop_hides() {
        let open_mock = stalled_mock();
        let open = run(
            Mode::Produce,
            &args_for(
                &open_mock,
                &["--rate", "1000", "--duration", "1", "--window", "1024"],
            ),
        )
        .expect("open run");
        let closed_mock = stalled_mock();
        let closed = run(
            Mode::Produce,
            &args_for(&closed_mock, &["--duration", "1", "--window", "1"]),
        )
        .expect("closed run");

        let o = &open.recorder;
        let c = &closed.recorder;
        eprintln!("open loop:   {:?}", o.summary());
        eprintln!("closed loop: {:?}", c.summary());
        assert_eq!(o.errors + c.errors, 0);
        assert!(
            o.messages >= 900 && o.messages <= 1001,
            "open loop sent {}",
            o.messages
        );
        assert!(c.messages >= 300, "closed loop sent only {}", c.messages);
        // Samples of at least half the stall.
        let slow = |r: &Recorder| {
            r.hist
                .count_between(STALL_US / 2, crate::stats::MAX_LATENCY_US)
        };
        assert!(slow(o) >= 50, "open loop: only {} slow samples", slow(o));
        assert!(slow(c) <= 2, "closed loop: {} slow samples", slow(c));
        // Open loop: the stall is in p99 and p99.9, and max covers it.
        assert!(
            o.percentile_us(99.0) >= STALL_US / 2,
            "open p99 {}",
            o.percentile_us(99.0)
        );
        assert!(
            o.percentile_us(99.9) >= STALL_US * 8 / 10,
            "open p99.9 {}",
            o.percentile_us(99.9)
        );
        assert!(
            o.hist.max() >= STALL_US * 9 / 10,
            "open max {}",
            o.hist.max()
        );
        // Closed loop: the stalled request is the max, but p99 does not see it.
        assert!(
            c.hist.max() >= STALL_US * 9 / 10,
            "closed max {}",
            c.hist.max()
        );
        assert!(
            c.percentile_us(99.0) < STALL_US / 2,
            "closed p99 {}",
            c.percentile_us(99.0)
        );
        assert_eq!(open_mock.messages(), o.messages);
        // A wide window keeps the generator on schedule through the stall; closed loop has
        // no schedule to lag behind.
        let lag = open.send_lag.expect("open loop reports its send lag");
        assert!(lag.count >= 900, "lag samples {}", lag.count);
        assert!(lag.p99_us < STALL_US / 2, "send lag p99 {} us", lag.p99_us);
        assert!(closed.send_lag.is_none());
    }

    #[test]
    fn send_lag_shows_a_generator_held_back_by_its_window() {
        // One request in flight: requests due during the stall leave only after it, and the
        // report says so (the latencies include it as well).
        let mock = stalled_mock();
        let out = run(
            Mode::Produce,
            &args_for(
                &mock,
                &["--rate", "1000", "--duration", "1", "--window", "1"],
            ),
        )
        .expect("open run, window 1");
        let lag = out.send_lag.expect("open loop reports its send lag");
        assert!(lag.count >= 900, "lag samples {}", lag.count);
        assert!(
            lag.max_us >= STALL_US * 8 / 10,
            "send lag max {} us",
            lag.max_us
        );
        assert!(
            out.recorder.hist.max() >= lag.max_us,
            "latency max {} below send lag max {}",
            out.recorder.hist.max(),
            lag.max_us
        );
    }

    #[test]
    fn batch_produce_counts_messages_and_writes_outputs() {
        let mock = MockBroker::start(MockConfig::default()).expect("mock");
        let dir = tempfile::tempdir().expect("tmp");
        let json = dir.path().join("r.json");
        let hgrm = dir.path().join("r.hgrm");
        let a = args_for(
            &mock,
            &[
                "--rate",
                "2000",
                "--duration",
                "0.5",
                "--batch",
                "4",
                "--size",
                "64",
                "--producers",
                "2",
                "--json",
                json.to_str().expect("utf8"),
                "--hgrm",
                hgrm.to_str().expect("utf8"),
            ],
        );
        let out = run(Mode::Produce, &a).expect("run");
        write_outputs(&a, &out).expect("write");
        // The client library's path counts the same way (the mock tallies both runs).
        let before = mock.messages();
        let full = run(
            Mode::Produce,
            &BenchArgs {
                client: ClientImpl::Full,
                json: None,
                hgrm: None,
                ..a.clone()
            },
        )
        .expect("run full");
        assert!(full.recorder.messages > 0);
        assert_eq!(full.recorder.messages % 4, 0);
        assert_eq!(full.recorder.messages, mock.messages() - before);
        let mock_total_raw = before;
        assert_eq!(out.recorder.messages % 4, 0);
        assert_eq!(out.recorder.messages, mock_total_raw);
        assert_eq!(out.recorder.bytes, out.recorder.messages * 64);
        assert_eq!(out.recorder.hist.len() * 4, out.recorder.messages);
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
        assert_eq!(v["messages"], out.recorder.messages);
        assert_eq!(v["open_loop"], true);
        let text = std::fs::read_to_string(&hgrm).expect("hgrm");
        assert!(text.contains("#[Max"), "{text}");
    }

    #[test]
    fn refused_sends_are_errors_not_messages() {
        // Every send is answered SYSTEM_BUSY: each measured request is one error, nothing is
        // counted as produced, and the run still ends on schedule.
        let mock = MockBroker::start(MockConfig {
            fail_sends: true,
            ..MockConfig::default()
        })
        .expect("mock");
        let out = run(
            Mode::Produce,
            &args_for(&mock, &["--rate", "1000", "--duration", "0.5"]),
        )
        .expect("run");
        assert_eq!(out.recorder.messages, 0);
        assert_eq!(out.recorder.hist.len(), 0);
        assert!(
            (450..=501).contains(&out.recorder.errors),
            "errors {}",
            out.recorder.errors
        );
    }

    #[test]
    fn an_unreachable_broker_in_the_route_fails_the_run_with_its_address() {
        // A port nobody listens on (bound, then closed).
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_addr = dead.local_addr().expect("addr").to_string();
        drop(dead);
        let mock = MockBroker::start(MockConfig {
            peers: vec![("dead-s0".into(), dead_addr.clone())],
            ..MockConfig::default()
        })
        .expect("mock");
        let err = run(
            Mode::Produce,
            &args_for(&mock, &["--rate", "1000", "--duration", "0.3"]),
        )
        .err()
        .expect("the run must fail");
        let text = err.to_string();
        assert!(text.contains(&dead_addr), "{text}");
        assert_eq!(
            mock.messages(),
            0,
            "nothing is sent before every connection is up"
        );
    }

    #[test]
    fn a_drained_backlog_is_rated_over_the_time_it_took() {
        // 2,000 messages stored first; a 3 s consume from the first offset reads them in a
        // fraction of it, so the rate is over the time until every queue was read to its end.
        let mock = MockBroker::start(MockConfig::default()).expect("mock");
        let produced = run(
            Mode::Produce,
            &args_for(&mock, &["--rate", "4000", "--duration", "0.5"]),
        )
        .expect("produce");
        assert_eq!(produced.recorder.errors, 0);
        let stored = mock.messages();
        assert!(stored >= 1_900, "stored {stored}");
        let mut a = args_for(
            &mock,
            &["--duration", "3", "--from", "first", "--pull-batch", "64"],
        );
        a.producers = 0;
        a.consumers = 1;
        a.group = "drain".into();
        let out = run(Mode::Consume, &a).expect("consume");
        assert_eq!(
            out.recorder.messages, stored,
            "every stored message read once"
        );
        let d = out
            .drained_after_s
            .expect("the backlog was read to its end");
        assert!(d > 0.0 && d < 3.0, "drained after {d} s");
        assert!((out.report.duration_s - d).abs() < 1e-9);
        let rate = stored as f64 / d;
        assert!(
            (out.report.msgs_per_s - rate).abs() < 1e-6 * rate,
            "{} vs {rate}",
            out.report.msgs_per_s
        );
        // A producing run never reports a drain.
        assert!(produced.drained_after_s.is_none());
    }

    #[test]
    fn e2e_latency_from_stamps() {
        let mock = MockBroker::start(MockConfig {
            default_queues: 2,
            ..MockConfig::default()
        })
        .expect("mock");
        let mut a = args_for(
            &mock,
            &["--rate", "500", "--duration", "0.6", "--size", "32"],
        );
        a.consumers = 1;
        for client in [ClientImpl::Raw, ClientImpl::Full] {
            a.client = client;
            a.group = format!("e2e_{client:?}");
            let out = run(Mode::E2e, &a).expect("run");
            let (_, produced) = out.produce_side.as_ref().expect("produce side");
            assert!(produced.messages > 0, "{client:?}");
            // Every produced message of the window arrives once.
            assert_eq!(out.recorder.messages, produced.messages, "{client:?}");
            assert!(out.recorder.hist.max() < 10_000_000);
        }
    }
}
