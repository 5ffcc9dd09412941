//! Broker integration tests: a whole server (embedded name server + shards) started in-process
//! on 127.0.0.1 with a temp dir, driven over TCP with the project's codec from plain blocking
//! sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use ramjet_core::record::{properties, RecordView};
use ramjet_core::remoting::{
    decode_frame, encode_frame, CodecLimits, FrameDecode, FrameHead, RemotingCommand, RequestCode,
    ResponseCode, SerializeType,
};
use ramjet_net::broker::config::Config;
use ramjet_net::broker::server::{Roles, Server};

/// A distinct port block per test (and per process) so that tests can run in parallel. The
/// blocks lie below the kernel's ephemeral range (32768 and up by default), where the client
/// sockets of tests running meanwhile get their ports (one of them once took 42030 before a
/// broker could bind it), and a block is probed before use.
fn base_port(test: u16) -> u16 {
    const BLOCKS: u32 = 120;
    let pid = std::process::id();
    for k in 0..BLOCKS {
        let base = 20_000 + ((pid + k) % BLOCKS) as u16 * 100 + test * 10;
        // The listeners of up to two shards: P-2, P, P+1 each, shards SHARD_PORT_STEP apart.
        if (base - 2..base + 8).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port block for test {test} in 20000..32000");
}

fn config(dir: &Path, test: u16, shards: usize) -> Config {
    let mut c = Config::default();
    c.broker.data_dir = dir.to_path_buf();
    c.broker.listen_ip = "127.0.0.1".into();
    c.broker.base_port = base_port(test);
    c.broker.shards = shards;
    c.broker.max_message_bytes = 1024 * 1024;
    c.namesrv.listen = "127.0.0.1:0".into();
    c.store.segment_size_bytes = 8 * 1024 * 1024;
    c.store.io_mode = "buffered".into();
    // The default preallocates pool + tail cache (384 MiB per shard), mapped in the
    // background: CPU and memory these tests do not need.
    c.store.write_pool_preallocate_bytes = Some(16 * 1024 * 1024);
    c
}

fn start(cfg: Config) -> Server {
    Server::start(
        cfg,
        Roles {
            namesrv: true,
            broker: true,
        },
    )
    .expect("server starts")
}

/// A blocking remoting client.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    opaque: i32,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            s,
            buf: Vec::new(),
            opaque: 100,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn send(&mut self, code: i32, ext: &[(&str, &str)], body: &[u8], oneway: bool) -> i32 {
        self.opaque += 1;
        let head = if oneway {
            FrameHead::oneway(code, self.opaque)
        } else {
            FrameHead::request(code, self.opaque)
        };
        let mut out = Vec::new();
        encode_frame(&mut out, SerializeType::Json, &head, ext, body).unwrap();
        self.send_raw(&out);
        self.opaque
    }

    /// Next frame from the server; None at EOF.
    fn next_frame(&mut self) -> Option<RemotingCommand> {
        let limits = CodecLimits::client();
        loop {
            if let FrameDecode::Frame { consumed, command } =
                decode_frame(&self.buf, &limits).unwrap()
            {
                let cmd = command.unwrap().to_owned_command();
                self.buf.drain(..consumed);
                return Some(cmd);
            }
            let mut chunk = [0u8; 65536];
            let n = match self.s.read(&mut chunk) {
                Ok(n) => n,
                // The executors' timers signal threads of this process; retry.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn response(&mut self, opaque: i32) -> RemotingCommand {
        loop {
            let f = self.next_frame().expect("connection open");
            if f.is_response() && f.opaque == opaque {
                return f;
            }
        }
    }

    fn call(&mut self, code: i32, ext: &[(&str, &str)], body: &[u8]) -> RemotingCommand {
        let o = self.send(code, ext, body, false);
        self.response(o)
    }
}

fn props(tag: &str, key: &str) -> String {
    let mut p = String::new();
    p.push_str(properties::TAGS);
    p.push('\u{1}');
    p.push_str(tag);
    p.push('\u{2}');
    p.push_str(properties::KEYS);
    p.push('\u{1}');
    p.push_str(key);
    p.push('\u{2}');
    p
}

/// SEND_MESSAGE_V2 header fields for one message to `topic`/`queue` with `props`.
fn send_ext<'a>(topic: &'a str, queue: &'a str, props: &'a str) -> [(&'static str, &'a str); 9] {
    [
        ("a", "PG"),
        ("b", topic),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", queue),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", props),
    ]
}

fn send_msg(c: &mut Client, topic: &str, queue: i32, body: &[u8], tag: &str) -> RemotingCommand {
    let q = queue.to_string();
    let p = props(tag, "k1");
    c.call(RequestCode::SEND_MESSAGE_V2, &send_ext(topic, &q, &p), body)
}

fn pull_ext(
    topic: &str,
    queue: &str,
    offset: &str,
    suspend_ms: &str,
    sys_flag: &str,
) -> Vec<(String, String)> {
    [
        ("consumerGroup", "CG"),
        ("topic", topic),
        ("queueId", queue),
        ("queueOffset", offset),
        ("maxMsgNums", "32"),
        ("sysFlag", sys_flag),
        ("commitOffset", "0"),
        ("suspendTimeoutMillis", suspend_ms),
        ("subscription", "*"),
        ("subVersion", "0"),
        ("expressionType", "TAG"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn send_then_pull_returns_the_same_record_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), 0, 2));
    assert_eq!(server.shards.len(), 2);
    let mut c = Client::connect(server.shards[1].main);
    let r = send_msg(&mut c, "TopicA", 2, b"hello ramjet", "TagA");
    assert_eq!(r.code, ResponseCode::SUCCESS, "{:?}", r.remark);
    assert_eq!(r.ext_get("queueId"), Some("2"));
    assert_eq!(r.ext_get("queueOffset"), Some("0"));
    let msg_id = r.ext_get("msgId").unwrap().to_string();
    assert_eq!(msg_id.len(), 32);
    let r2 = send_msg(&mut c, "TopicA", 2, b"second", "TagB");
    assert_eq!(r2.ext_get("queueOffset"), Some("1"));

    // Pull everything (subscription bit set, "*").
    let ext = pull_ext("TopicA", "2", "0", "0", "4");
    let p = c.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(p.ext_get("nextBeginOffset"), Some("2"));
    assert_eq!(p.ext_get("minOffset"), Some("0"));
    assert_eq!(p.ext_get("maxOffset"), Some("2"));
    assert_eq!(p.ext_get("suggestWhichBrokerId"), Some("0"));
    let first = RecordView::parse(&p.body).unwrap();
    assert_eq!(first.body(), b"hello ramjet");
    assert_eq!(first.topic(), "TopicA");
    assert_eq!(first.queue_offset(), 0);
    let first_len = first.total_size() as usize;
    let second = RecordView::parse(&p.body[first_len..]).unwrap();
    assert_eq!(second.body(), b"second");
    assert_eq!(first_len + second.total_size() as usize, p.body.len());

    // VIEW_MESSAGE_BY_ID returns the very same record bytes.
    let phys = first.physical_offset().to_string();
    let v = c.call(
        RequestCode::VIEW_MESSAGE_BY_ID,
        &[("offset", phys.as_str())],
        &[],
    );
    assert_eq!(v.code, ResponseCode::SUCCESS, "{:?}", v.remark);
    assert_eq!(&v.body[..], &p.body[..first_len]);

    // Tag filter: only TagB.
    let mut ext = pull_ext("TopicA", "2", "0", "0", "4");
    ext[8].1 = "TagB".into();
    let p = c.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::SUCCESS);
    assert_eq!(RecordView::parse(&p.body).unwrap().body(), b"second");

    // Offset past the end: PULL_OFFSET_MOVED with nextBeginOffset = max.
    let ext = pull_ext("TopicA", "2", "9", "0", "4");
    let p = c.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::PULL_OFFSET_MOVED);
    assert_eq!(p.ext_get("nextBeginOffset"), Some("2"));

    // Queue offsets.
    let m = c.call(
        RequestCode::GET_MAX_OFFSET,
        &[("topic", "TopicA"), ("queueId", "2")],
        &[],
    );
    assert_eq!(m.ext_get("offset"), Some("2"));
    let m = c.call(
        RequestCode::GET_MIN_OFFSET,
        &[("topic", "TopicA"), ("queueId", "2")],
        &[],
    );
    assert_eq!(m.ext_get("offset"), Some("0"));

    // The topic lives on shard 1 only.
    let mut c0 = Client::connect(server.shards[0].main);
    let ext = pull_ext("TopicA", "2", "0", "0", "4");
    let p = c0.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::TOPIC_NOT_EXIST);

    // QUERY_MESSAGE by key finds both records (both carry KEYS=k1).
    let q = c.call(
        RequestCode::QUERY_MESSAGE,
        &[
            ("topic", "TopicA"),
            ("key", "k1"),
            ("maxNum", "32"),
            ("beginTimestamp", "0"),
            ("endTimestamp", "9223372036854775807"),
        ],
        &[],
    );
    assert_eq!(q.code, ResponseCode::SUCCESS, "{:?}", q.remark);
    let mut bodies = Vec::new();
    let mut pos = 0;
    while pos < q.body.len() {
        let r = RecordView::parse(&q.body[pos..]).unwrap();
        bodies.push(r.body().to_vec());
        pos += r.total_size() as usize;
    }
    bodies.sort();
    assert_eq!(bodies, vec![b"hello ramjet".to_vec(), b"second".to_vec()]);

    // Runtime info carries real counters.
    let info = c.call(RequestCode::GET_BROKER_RUNTIME_INFO, &[], &[]);
    assert_eq!(info.code, ResponseCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert_eq!(v["table"]["msgPutTotalTodayNow"], "2");
    assert_eq!(v["table"]["ramjet.shard"], "1");

    // Unknown codes are refused, never faked.
    let u = c.call(RequestCode::CHECK_TRANSACTION_STATE, &[], &[]);
    assert_eq!(u.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
}

#[test]
fn long_poll_is_answered_by_the_next_send() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), 1, 1));
    let addr = server.shards[0].main;
    let mut producer = Client::connect(addr);
    assert_eq!(
        send_msg(&mut producer, "LP", 0, b"first", "T").code,
        ResponseCode::SUCCESS
    );

    let mut consumer = Client::connect(addr);
    // offset 1 == max: nothing yet; suspend bit (2) + subscription bit (4); hold 10 s.
    let ext = pull_ext("LP", "0", "1", "10000", "6");
    let opaque = consumer.send(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[], false);
    // Give the pull time to park, then send on another connection.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        send_msg(&mut producer, "LP", 0, b"wake up", "T").code,
        ResponseCode::SUCCESS
    );
    let p = consumer.response(opaque);
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(RecordView::parse(&p.body).unwrap().body(), b"wake up");
    assert_eq!(p.ext_get("nextBeginOffset"), Some("2"));

    // Without a send the hold ends with PULL_NOT_FOUND at the same offset.
    let ext = pull_ext("LP", "0", "2", "300", "6");
    let p = consumer.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::PULL_NOT_FOUND);
    assert_eq!(p.ext_get("nextBeginOffset"), Some("2"));
}

#[test]
fn offsets_are_persisted_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let addr;
    {
        let mut server = start(config(dir.path(), 2, 1));
        addr = server.shards[0].main;
        let mut c = Client::connect(addr);
        assert_eq!(
            send_msg(&mut c, "OT", 1, b"x", "T").code,
            ResponseCode::SUCCESS
        );
        let q = c.call(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[("consumerGroup", "G9"), ("topic", "OT"), ("queueId", "3")],
            &[],
        );
        assert_eq!(q.code, ResponseCode::QUERY_NOT_FOUND);
        // Oneway update (as Java sends it), then a request-response one.
        c.send(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "G9"),
                ("topic", "OT"),
                ("queueId", "1"),
                ("commitOffset", "1"),
            ],
            &[],
            true,
        );
        let u = c.call(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            &[
                ("consumerGroup", "G9"),
                ("topic", "OT"),
                ("queueId", "2"),
                ("commitOffset", "42"),
            ],
            &[],
        );
        assert_eq!(u.code, ResponseCode::SUCCESS);
        assert!(server.shutdown().is_empty());
    }
    let file = dir.path().join("shard-0/config/consumerOffset.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("OT@G9"), "{text}");

    let server = start(config(dir.path(), 2, 1));
    let mut c = Client::connect(server.shards[0].main);
    for (q, want) in [("1", "1"), ("2", "42")] {
        let r = c.call(
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[("consumerGroup", "G9"), ("topic", "OT"), ("queueId", q)],
            &[],
        );
        assert_eq!(r.code, ResponseCode::SUCCESS);
        assert_eq!(r.ext_get("offset"), Some(want));
    }
    // The message survived the restart too.
    let ext = pull_ext("OT", "1", "0", "0", "4");
    let p = c.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    assert_eq!(RecordView::parse(&p.body).unwrap().body(), b"x");
}

#[test]
fn malformed_frames_are_answered_or_closed_while_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), 3, 1));
    let addr = server.shards[0].main;
    let mut good = Client::connect(addr);
    let mut bad = Client::connect(addr);

    // A binary (type 1) header whose ext length runs past the header: opaque 77 is readable,
    // so the broker answers SYSTEM_ERROR to it and keeps the connection.
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&(RequestCode::GET_MAX_OFFSET as i16).to_be_bytes());
    hdr.push(0);
    hdr.extend_from_slice(&401i16.to_be_bytes());
    hdr.extend_from_slice(&77i32.to_be_bytes());
    hdr.extend_from_slice(&0i32.to_be_bytes()); // flag
    hdr.extend_from_slice(&0i32.to_be_bytes()); // remark len
    hdr.extend_from_slice(&1000i32.to_be_bytes()); // ext len: too long
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + hdr.len()) as i32).to_be_bytes());
    frame.extend_from_slice(&((1u32 << 24) | hdr.len() as u32).to_be_bytes());
    frame.extend_from_slice(&hdr);
    bad.send_raw(&frame);
    let r = bad.response(77);
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR);

    // The same connection still serves well-formed requests.
    let m = bad.call(
        RequestCode::GET_MAX_OFFSET,
        &[("topic", "None"), ("queueId", "0")],
        &[],
    );
    assert_eq!(m.code, ResponseCode::SUCCESS);
    assert_eq!(m.ext_get("offset"), Some("0"));

    // A negative length word cannot be re-synchronised: the broker closes the connection.
    bad.send_raw(&(-5i32).to_be_bytes());
    bad.send_raw(&[0u8; 16]);
    assert!(bad.next_frame().is_none(), "connection should be closed");

    // A header that is missing required fields gets an error response, not a crash.
    let r = good.call(RequestCode::PULL_MESSAGE, &[("topic", "X")], &[]);
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR);
    // And the other connection never noticed.
    let r = send_msg(&mut good, "M", 0, b"still fine", "T");
    assert_eq!(r.code, ResponseCode::SUCCESS);
}

#[test]
fn heartbeat_membership_and_notify() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), 4, 1));
    let addr = server.shards[0].main;
    let hb = |id: &str| {
        format!(
            "{{\"clientID\":\"{id}\",\"consumerDataSet\":[{{\"consumeFromWhere\":0,\"consumeType\":1,\"groupName\":\"HG\",\"messageModel\":1,\"subscriptionDataSet\":[{{\"codeSet\":[],\"subString\":\"TagA\",\"subVersion\":\"5\",\"tagsSet\":[\"TagA\"],\"topic\":\"HT\"}}]}}],\"producerDataSet\":[]}}"
        )
    };
    let mut a = Client::connect(addr);
    let r = a.call(RequestCode::HEART_BEAT, &[], hb("10.0.0.1@a").as_bytes());
    assert_eq!(r.code, ResponseCode::SUCCESS, "{:?}", r.remark);
    let mut b = Client::connect(addr);
    let r = b.call(RequestCode::HEART_BEAT, &[], hb("10.0.0.2@b").as_bytes());
    assert_eq!(r.code, ResponseCode::SUCCESS);
    // `a` is told that the group changed.
    let n = loop {
        let f = a.next_frame().unwrap();
        if !f.is_response() {
            break f;
        }
    };
    assert_eq!(n.code, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED);
    assert!(n.is_oneway());
    assert_eq!(n.ext_get("consumerGroup"), Some("HG"));
    let l = a.call(
        RequestCode::GET_CONSUMER_LIST_BY_GROUP,
        &[("consumerGroup", "HG")],
        &[],
    );
    assert_eq!(l.code, ResponseCode::SUCCESS);
    let body: serde_json::Value = serde_json::from_slice(&l.body).unwrap();
    assert_eq!(
        body["consumerIdList"],
        serde_json::json!(["10.0.0.1@a", "10.0.0.2@b"])
    );
    // The retry topic was created for the group.
    let t = a.call(RequestCode::GET_ALL_TOPIC_CONFIG, &[], &[]);
    let body: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
    assert!(body["topicConfigTable"].get("%RETRY%HG").is_some());
    // Pulls without the subscription bit use the heartbeat's subscription (TagA only).
    assert_eq!(
        send_msg(&mut a, "HT", 0, b"b-msg", "TagB").code,
        ResponseCode::SUCCESS
    );
    assert_eq!(
        send_msg(&mut a, "HT", 0, b"a-msg", "TagA").code,
        ResponseCode::SUCCESS
    );
    let mut ext = pull_ext("HT", "0", "0", "0", "0");
    ext[0].1 = "HG".into();
    let p = a.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
    assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
    let rec = RecordView::parse(&p.body).unwrap();
    assert_eq!(rec.body(), b"a-msg");
    assert_eq!(rec.total_size() as usize, p.body.len());
    // `b` leaves by closing its connection: `a` is notified again and the list shrinks.
    drop(b);
    let n = loop {
        let f = a.next_frame().unwrap();
        if !f.is_response() {
            break f;
        }
    };
    assert_eq!(n.code, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED);
    let l = a.call(
        RequestCode::GET_CONSUMER_LIST_BY_GROUP,
        &[("consumerGroup", "HG")],
        &[],
    );
    let body: serde_json::Value = serde_json::from_slice(&l.body).unwrap();
    assert_eq!(body["consumerIdList"], serde_json::json!(["10.0.0.1@a"]));
}

#[test]
fn name_server_routes_topics_to_shards() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path(), 5, 2));
    let ns = server.namesrv.unwrap();
    let mut c = Client::connect(server.shards[0].main);
    assert_eq!(
        send_msg(&mut c, "RT", 0, b"x", "T").code,
        ResponseCode::SUCCESS
    );
    // Auto-creation registers at once; poll briefly for the route.
    let mut n = Client::connect(ns);
    let mut route = None;
    for _ in 0..50 {
        let r = n.call(RequestCode::GET_ROUTEINFO_BY_TOPIC, &[("topic", "RT")], &[]);
        if r.code == ResponseCode::SUCCESS {
            route = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let route = route.expect("route registered");
    let text = String::from_utf8_lossy(&route.body).to_string();
    assert!(text.contains("ramjet-s0"), "{text}");
    assert!(!text.contains("ramjet-s1"), "{text}");
    let port = server.shards[0].main.port().to_string();
    assert!(text.contains(&port), "{text}");
}

/// Pulls the first `n` records of (topic, queue 0) in as many pulls as needed.
fn pull_all(c: &mut Client, topic: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < n {
        let o = offset.to_string();
        let ext = pull_ext(topic, "0", &o, "0", "4");
        let p = c.call(RequestCode::PULL_MESSAGE, &as_refs(&ext), &[]);
        assert_eq!(p.code, ResponseCode::SUCCESS, "{:?}", p.remark);
        out.extend_from_slice(&p.body);
        offset = p.ext_get("nextBeginOffset").unwrap().parse().unwrap();
    }
    out
}

#[test]
fn sendfile_and_copy_paths_serve_identical_pull_bytes() {
    const N: usize = 64;
    let mut results = Vec::new();
    for (i, zero_copy) in [(6u16, true), (7u16, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), i, 1);
        cfg.broker.zero_copy = zero_copy;
        // A tiny tail cache and sync flush: older records are served from the segment file.
        cfg.store.tail_cache_bytes = 64 * 1024;
        cfg.store.flush = "sync".into();
        let server = start(cfg);
        let mut c = Client::connect(server.shards[0].main);
        for m in 0..N {
            let body = vec![b'a' + (m % 26) as u8; 8 * 1024];
            assert_eq!(
                send_msg(&mut c, "ZC", 0, &body, "T").code,
                ResponseCode::SUCCESS
            );
        }
        let bytes = pull_all(&mut c, "ZC", N);
        let info = c.call(RequestCode::GET_BROKER_RUNTIME_INFO, &[], &[]);
        let v: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
        let sendfile: u64 = v["table"]["ramjet.bytesOutSendfile"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        results.push((bytes, sendfile));
    }
    // Records differ only in timestamps/hosts between the two servers; compare bodies.
    let bodies = |b: &[u8]| {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let r = RecordView::parse(&b[pos..]).unwrap();
            out.push(r.body().to_vec());
            pos += r.total_size() as usize;
        }
        out
    };
    let zc = bodies(&results[0].0);
    let copy = bodies(&results[1].0);
    assert_eq!(zc.len(), N);
    assert_eq!(zc, copy);
    for (m, b) in zc.iter().enumerate() {
        assert_eq!(b, &vec![b'a' + (m % 26) as u8; 8 * 1024]);
    }
    assert!(
        results[0].1 > 0,
        "zero-copy server sent nothing with sendfile"
    );
    assert_eq!(results[1].1, 0, "copy-path server used sendfile");
}

/// `broker.max_batch_messages`: a batch of exactly the limit is stored; one message more is
/// refused with MESSAGE_ILLEGAL and nothing of it is stored.
#[test]
fn batch_at_the_max_batch_messages_limit() {
    const LIMIT: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 8, 1);
    cfg.broker.max_batch_messages = LIMIT as u32;
    let server = start(cfg);
    let mut c = Client::connect(server.shards[0].main);
    let batch = |n: usize| {
        let mut body = Vec::new();
        let p = props("T", "k");
        for i in 0..n {
            let payload = format!("m{i}");
            let start = body.len();
            body.resize(
                start + ramjet_core::record::batch_entry_len(payload.as_bytes(), p.as_bytes()),
                0,
            );
            ramjet_core::record::encode_batch_entry(
                0,
                payload.as_bytes(),
                p.as_bytes(),
                &mut body[start..],
            )
            .unwrap();
        }
        body
    };
    let ext = [
        ("a", "PG"),
        ("b", "BatchT"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "0"),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", ""),
        ("m", "true"),
    ];
    let ok = c.call(RequestCode::SEND_BATCH_MESSAGE, &ext, &batch(LIMIT));
    assert_eq!(ok.code, ResponseCode::SUCCESS, "{:?}", ok.remark);
    let over = c.call(RequestCode::SEND_BATCH_MESSAGE, &ext, &batch(LIMIT + 1));
    assert_eq!(over.code, ResponseCode::MESSAGE_ILLEGAL);
    assert!(
        over.remark.as_deref().unwrap_or("").contains("more than 5"),
        "{:?}",
        over.remark
    );
    let m = c.call(
        RequestCode::GET_MAX_OFFSET,
        &[("topic", "BatchT"), ("queueId", "0")],
        &[],
    );
    assert_eq!(m.ext_get("offset"), Some("5"));
}

/// `flush = sync`: many sends pipelined on one connection (a oneway one among them) are all
/// answered from the shard's ack queue after their fdatasync, each with the queue offset and
/// the offset message id of its own record, and the oneway send is stored but never answered.
#[test]
fn pipelined_sync_sends_get_their_own_ids_and_offsets() {
    const N: usize = 300;
    const ONEWAY: usize = 137;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 9, 1);
    cfg.store.flush = "sync".into();
    let server = start(cfg);
    let mut c = Client::connect(server.shards[0].main);
    let p = props("T", "k1");
    let mut opaques = Vec::new();
    for m in 0..N {
        let body = format!("sync-{m:04}-{}", "x".repeat(m % 50));
        let ext = send_ext("SA", "0", &p);
        let o = c.send(
            RequestCode::SEND_MESSAGE_V2,
            &ext,
            body.as_bytes(),
            m == ONEWAY,
        );
        opaques.push(o);
    }
    let mut answers = std::collections::HashMap::new();
    while answers.len() < N - 1 {
        let f = c.next_frame().expect("connection open");
        assert!(f.is_response());
        assert!(
            answers.insert(f.opaque, f).is_none(),
            "an opaque answered twice"
        );
    }
    assert!(!answers.contains_key(&opaques[ONEWAY]), "oneway answered");
    let bytes = pull_all(&mut c, "SA", N);
    let mut pos = 0;
    let mut m = 0;
    while pos < bytes.len() {
        let r = RecordView::parse(&bytes[pos..]).unwrap();
        let want = format!("sync-{m:04}-{}", "x".repeat(m % 50));
        assert_eq!(r.body(), want.as_bytes(), "record {m}");
        assert_eq!(r.queue_offset(), m as i64);
        if m != ONEWAY {
            let a = &answers[&opaques[m]];
            assert_eq!(a.code, ResponseCode::SUCCESS, "{:?}", a.remark);
            assert_eq!(a.ext_get("queueOffset"), Some(m.to_string().as_str()));
            assert_eq!(a.ext_get("queueId"), Some("0"));
            let id = a.ext_get("msgId").expect("msgId");
            assert_eq!(id.len(), 32, "IPv4 offset id: {id}");
            assert_eq!(&id[16..], format!("{:016X}", r.physical_offset()));
        }
        pos += r.total_size() as usize;
        m += 1;
    }
    assert_eq!(m, N);
}
