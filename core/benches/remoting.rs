//! Remoting codec micro-benchmarks: the send and pull hot paths in both header
//! serializations (DESIGN.md §7 "JSON header parsing cost vs binary").
//!
//! Run: `cargo bench -p ramjet-core --bench remoting`.
//!
//! Instruction counts per operation (callgrind, `--profile-time 1`, 2026-11-23, release):
//! - SEND_MESSAGE_V2 frame + header decode, binary header: ~1,030 Ir frame + ~2,130 Ir header,
//!   0 allocations (asserted in core/src/remoting/tests.rs). Before slicing keys/values out
//!   of one UTF-8 check of the whole ext region it was ~5,180 Ir (per-string `from_utf8`
//!   was half of it).
//! - Same request with a JSON header (what the C++ client sends): ~13,500 Ir frame decode
//!   (serde_json string scanning and the `\u0001` escapes of the properties dominate) +
//!   ~1,460 Ir header, one `Vec` of ext pairs plus one `String` per escaped value.
//!   So the binary header is ~4.5x cheaper to read: ramjet's own client uses it.
//!
//! Wall-clock numbers from this shared 2-core VM were too noisy to record (load avg 6-8).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ramjet_core::remoting::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
    SendMessageResponseHeader, DEFAULT_MSG_REGION,
};
use ramjet_core::remoting::{
    decode_frame, encode_frame, encode_frame_head, CodecLimits, FrameDecode, FrameHead,
    RequestCode, ResponseCode, SerializeType,
};

fn send_header() -> SendMessageRequestHeader<'static> {
    SendMessageRequestHeader {
        producer_group: "bench_producer_group",
        topic: "BenchTopic",
        default_topic: "TBW102",
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some("UNIQ_KEY\u{1}7F0000011A2B18B4AAC2754E7E2F0000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}"),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: None,
    }
}

fn send_frame(ser: SerializeType) -> Vec<u8> {
    let mut out = Vec::new();
    let body = vec![b'x'; 128];
    if encode_frame(
        &mut out,
        ser,
        &FrameHead::request(RequestCode::SEND_MESSAGE_V2, 42),
        &send_header().v2(),
        &body,
    )
    .is_err()
    {
        panic!("bench frame encodes");
    }
    out
}

fn bench_send(c: &mut Criterion) {
    let limits = CodecLimits::default();
    let mut g = c.benchmark_group("send_v2_decode");
    g.throughput(Throughput::Elements(1));
    for (name, ser) in [
        ("binary", SerializeType::RocketMq),
        ("json", SerializeType::Json),
    ] {
        let frame = send_frame(ser);
        g.bench_function(name, |b| {
            b.iter(|| {
                let Ok(FrameDecode::Frame {
                    command: Ok(cmd), ..
                }) = decode_frame(black_box(&frame), &limits)
                else {
                    panic!("decodes");
                };
                let h = SendMessageRequestHeader::decode(&cmd).map(|h| h.queue_id);
                black_box((h, cmd.body.len()))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("send_response_encode");
    g.throughput(Throughput::Elements(1));
    for (name, ser) in [
        ("binary", SerializeType::RocketMq),
        ("json", SerializeType::Json),
    ] {
        let mut out = Vec::with_capacity(4096);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let resp = SendMessageResponseHeader {
                    msg_id: "7F00000100002A9F00000000000A1B2C",
                    queue_id: 3,
                    queue_offset: black_box(123_456),
                    msg_region: Some(DEFAULT_MSG_REGION),
                    trace_on: Some("true"),
                    ..Default::default()
                };
                let r = encode_frame(
                    &mut out,
                    ser,
                    &FrameHead::response(ResponseCode::SUCCESS, 42),
                    &resp,
                    &[],
                );
                black_box((r.is_ok(), out.len()))
            })
        });
    }
    g.finish();
}

fn bench_pull(c: &mut Criterion) {
    let limits = CodecLimits::default();
    let req = PullMessageRequestHeader {
        consumer_group: "bench_consumer_group",
        topic: "BenchTopic",
        queue_id: 1,
        queue_offset: 1_000_000,
        max_msg_nums: 32,
        sys_flag: 3,
        commit_offset: 999_968,
        suspend_timeout_millis: 15_000,
        subscription: Some("*"),
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG"),
        ..Default::default()
    };
    let mut g = c.benchmark_group("pull");
    for (name, ser) in [
        ("binary", SerializeType::RocketMq),
        ("json", SerializeType::Json),
    ] {
        let mut frame = Vec::new();
        if encode_frame(&mut frame, ser, &FrameHead::request(11, 7), &req, &[]).is_err() {
            panic!("bench frame encodes");
        }
        g.bench_function(format!("request_decode_{name}"), |b| {
            b.iter(|| {
                let Ok(FrameDecode::Frame {
                    command: Ok(cmd), ..
                }) = decode_frame(black_box(&frame), &limits)
                else {
                    panic!("decodes");
                };
                let h: Result<PullMessageRequestHeader, _> = cmd.decode_header();
                black_box(h.map(|h| h.queue_offset))
            })
        });
        let mut out = Vec::with_capacity(4096);
        g.bench_function(format!("response_head_encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                let h = PullMessageResponseHeader {
                    suggest_which_broker_id: 0,
                    next_begin_offset: black_box(1_000_032),
                    min_offset: 0,
                    max_offset: 2_000_000,
                    ..Default::default()
                };
                let r = encode_frame_head(&mut out, ser, &FrameHead::response(0, 7), &h, 32 * 300);
                black_box((r.is_ok(), out.len()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_send, bench_pull);
criterion_main!(benches);
