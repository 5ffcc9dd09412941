//! Codec tests: the spec's worked bytes, real clients' JSON headers, partial frames, every
//! malformed-input class, typed headers, and property round-trips of both serializations.

use super::headers::*;
use super::*;
use proptest::prelude::*;

/// Spec §1.5: GET_ROUTEINFO_BY_TOPIC, ROCKETMQ encoding, opaque 1, version 401, JAVA, topic=T.
const WORKED_BINARY: [u8; 41] = [
    0x00, 0x00, 0x00, 0x25, // frameLength 37
    0x01, 0x00, 0x00, 0x21, // type 1, headerLength 33
    0x00, 0x69, 0x00, 0x01, 0x91, // code 105, language 0, version 401
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // opaque 1, flag 0
    0x00, 0x00, 0x00, 0x00, // remark length 0
    0x00, 0x00, 0x00, 0x0c, // ext length 12
    0x00, 0x05, 0x74, 0x6f, 0x70, 0x69, 0x63, // key "topic"
    0x00, 0x00, 0x00, 0x01, 0x54, // value "T"
];

const WORKED_JSON: &str = r#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":401}"#;

fn worked_head() -> FrameHead<'static> {
    FrameHead {
        code: RequestCode::GET_ROUTEINFO_BY_TOPIC,
        language: LanguageCode::Java,
        version: 401,
        opaque: 1,
        flag: 0,
        remark: None,
    }
}

fn json_frame(header: &str, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    f.extend_from_slice(&(header.len() as u32).to_be_bytes());
    f.extend_from_slice(header.as_bytes());
    f.extend_from_slice(body);
    f
}

fn decode_one(buf: &[u8]) -> (usize, Result<CommandView<'_>, DecodeError>) {
    match decode_frame(buf, &CodecLimits::default()) {
        Ok(FrameDecode::Frame { consumed, command }) => (consumed, command),
        other => panic!("expected one frame, got {other:?}"),
    }
}

#[test]
fn worked_bytes_binary_encode_exact() {
    let mut out = Vec::new();
    let n = encode_frame(
        &mut out,
        SerializeType::RocketMq,
        &worked_head(),
        &[("topic", "T")],
        &[],
    )
    .expect("encodes");
    assert_eq!(n, WORKED_BINARY.len());
    assert_eq!(out, WORKED_BINARY);
}

#[test]
fn worked_bytes_binary_decode() {
    let (consumed, cmd) = decode_one(&WORKED_BINARY);
    let cmd = cmd.expect("decodes");
    assert_eq!(consumed, 41);
    assert_eq!(cmd.serialize_type, SerializeType::RocketMq);
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::Java);
    assert_eq!(cmd.version, 401);
    assert_eq!(cmd.opaque, 1);
    assert_eq!(cmd.flag, 0);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext.iter().collect::<Vec<_>>(), vec![("topic", "T")]);
    assert!(cmd.body.is_empty());
    let h: GetRouteInfoRequestHeader = cmd.decode_header().expect("header");
    assert_eq!(h.topic, "T");
    assert_eq!(h.accept_standard_json_only, None);
}

#[test]
fn worked_bytes_json_encode_exact_and_decode() {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        SerializeType::Json,
        &worked_head(),
        &[("topic", "T")],
        &[],
    )
    .expect("encodes");
    assert_eq!(WORKED_JSON.len(), 123);
    assert_eq!(&out[..8], &[0, 0, 0, 0x7f, 0, 0, 0, 0x7b]);
    assert_eq!(&out[8..], WORKED_JSON.as_bytes());
    let (consumed, cmd) = decode_one(&out);
    let cmd = cmd.expect("decodes");
    assert_eq!(consumed, 131);
    assert_eq!(cmd.serialize_type, SerializeType::Json);
    assert_eq!(
        (cmd.code, cmd.opaque, cmd.version, cmd.flag),
        (105, 1, 401, 0)
    );
    assert_eq!(cmd.ext_get("topic"), Some("T"));
}

#[test]
fn cpp_client_json_header_parses() {
    let header = "{\"code\":105,\"extFields\":{\"AccessKey\":\"\",\"OnsChannel\":\"ALIYUN\",\"Signature\":\"abc=\",\"topic\":\"T\"},\"flag\":0,\"language\":\"CPP\",\"opaque\":0,\"remark\":\"\",\"version\":63}\n";
    let frame = json_frame(header, b"");
    let (_, cmd) = decode_one(&frame);
    let cmd = cmd.expect("decodes");
    assert_eq!(cmd.code, 105);
    assert_eq!(cmd.language, LanguageCode::Cpp);
    assert_eq!(cmd.version, 63);
    assert_eq!(cmd.opaque, 0);
    assert_eq!(cmd.remark, None);
    assert_eq!(cmd.ext.len(), 4);
    assert_eq!(cmd.ext_get("OnsChannel"), Some("ALIYUN"));
    let h: GetRouteInfoRequestHeader = cmd.decode_header().expect("header");
    assert_eq!(h.topic, "T");
}

#[test]
fn cpp_send_v2_with_numeric_ext_values() {
    let header = r#"{"code":310,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"","a":"PG","b":"TopicA","c":"TBW102","d":4,"e":3,"f":0,"g":"1700000000123","h":0,"i":"KEYS\u0001k1\u0002UNIQ_KEY\u0001ID\u0002","j":0,"k":"false","l":16,"m":false},"flag":0,"language":"CPP","opaque":7,"remark":"","version":333}"#;
    let frame = json_frame(header, b"hello");
    let (_, cmd) = decode_one(&frame);
    let cmd = cmd.expect("decodes");
    assert_eq!(cmd.body, b"hello");
    let h = SendMessageRequestHeader::decode(&cmd).expect("send header");
    assert_eq!(h.producer_group, "PG");
    assert_eq!(h.topic, "TopicA");
    assert_eq!(h.default_topic, "TBW102");
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.queue_id, 3);
    assert_eq!(h.sys_flag, 0);
    assert_eq!(h.born_timestamp, 1_700_000_000_123);
    assert_eq!(h.flag, 0);
    assert_eq!(h.properties, Some("KEYS\u{1}k1\u{2}UNIQ_KEY\u{1}ID\u{2}"));
    assert_eq!(h.reconsume_times, Some(0));
    assert_eq!(h.unit_mode, Some(false));
    assert_eq!(h.max_reconsume_times, Some(16));
    assert_eq!(h.batch, Some(false));
    assert_eq!(h.broker_name, None);
}

#[test]
fn go_and_java_json_variants_parse() {
    // Go: remark null, field order differs, no serializeTypeCurrentRPC.
    let go = r#"{"code":11,"language":"GO","version":317,"opaque":5,"flag":0,"remark":null,"extFields":{"topic":"T","queueId":"1"}}"#;
    let frame = json_frame(go, b"");
    let cmd = decode_one(&frame).1.expect("go header");
    assert_eq!(
        (cmd.code, cmd.language, cmd.version, cmd.opaque),
        (11, LanguageCode::Go, 317, 5)
    );
    assert_eq!(cmd.remark, None);
    // Java 5.x with RPC keys, a response flag, a remark, unknown keys, absent extFields.
    let java = r#"{"code":0,"flag":1,"language":"JAVA","opaque":9,"remark":"ok \"quoted\"","serializeTypeCurrentRPC":"JSON","version":479,"unknownKey":[1,2]}"#;
    let frame = json_frame(java, b"");
    let cmd = decode_one(&frame).1.expect("java header");
    assert!(cmd.is_response());
    assert_eq!(cmd.remark(), Some("ok \"quoted\""));
    assert!(cmd.ext.is_empty());
    // Numbers as strings, language as ordinal, null ext values dropped, whitespace around.
    let odd = " \r\n{\"code\":\"34\",\"language\":12,\"opaque\":\"3\",\"flag\":\"2\",\"extFields\":{\"x\":null,\"y\":1.5,\"z\":true}}\n\n";
    let frame = json_frame(odd, b"");
    let cmd = decode_one(&frame).1.expect("odd header");
    assert_eq!(
        (cmd.code, cmd.language, cmd.opaque),
        (34, LanguageCode::Rust, 3)
    );
    assert!(cmd.is_oneway());
    assert_eq!(
        cmd.ext.iter().collect::<Vec<_>>(),
        vec![("y", "1.5"), ("z", "true")]
    );
}

#[test]
fn partial_frames_need_more_until_complete() {
    let mut stream = WORKED_BINARY.to_vec();
    let mut second = Vec::new();
    encode_frame(
        &mut second,
        SerializeType::Json,
        &FrameHead::response(ResponseCode::SUCCESS, 1),
        &(),
        b"body!",
    )
    .expect("encodes");
    stream.extend_from_slice(&second);
    let limits = CodecLimits::default();
    for cut in 0..WORKED_BINARY.len() {
        match decode_frame(&stream[..cut], &limits).expect("not fatal") {
            FrameDecode::NeedMore { frame_bytes } => {
                assert_eq!(
                    frame_bytes,
                    if cut < 4 { None } else { Some(41) },
                    "cut {cut}"
                )
            }
            FrameDecode::Frame { .. } => panic!("frame from {cut} bytes"),
        }
    }
    let (consumed, first) = decode_one(&stream);
    assert_eq!(consumed, 41);
    assert_eq!(first.expect("first").code, 105);
    let rest = &stream[consumed..];
    let (consumed2, cmd) = decode_one(rest);
    assert_eq!(consumed2, second.len());
    let cmd = cmd.expect("second");
    assert_eq!(cmd.body, b"body!");
    assert!(cmd.is_response());
}

#[test]
fn fatal_frame_lengths() {
    let limits = CodecLimits::default();
    for len in [0i32, 3, -1, i32::MIN] {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_frame(&buf, &limits).map(|_| ()),
            Err(FrameError::LengthTooSmall {
                length: i64::from(len)
            })
        );
    }
    // Exactly at the limit (prefix included) is accepted; one more byte is fatal.
    let at_limit = (DEFAULT_MAX_FRAME_BYTES - 4) as i32;
    assert_eq!(
        peek_frame_len(&at_limit.to_be_bytes(), &limits),
        Ok(Some(DEFAULT_MAX_FRAME_BYTES))
    );
    assert_eq!(
        peek_frame_len(&(at_limit + 1).to_be_bytes(), &limits),
        Err(FrameError::FrameTooLarge {
            frame_bytes: DEFAULT_MAX_FRAME_BYTES as u64 + 1,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES
        })
    );
    let small = CodecLimits {
        max_frame_bytes: 40,
        ..CodecLimits::default()
    };
    assert!(matches!(
        decode_frame(&WORKED_BINARY, &small),
        Err(FrameError::FrameTooLarge {
            frame_bytes: 41,
            ..
        })
    ));
}

#[test]
fn header_length_beyond_frame_is_recoverable() {
    let mut f = WORKED_BINARY.to_vec();
    f[7] = 0x40; // headerLength 64 > 33 available
    let (consumed, cmd) = decode_one(&f);
    assert_eq!(consumed, 41);
    let e = cmd.expect_err("bad header length");
    assert_eq!(
        e.error,
        CommandError::HeaderLengthExceedsFrame {
            header_len: 64,
            available: 33
        }
    );
    assert_eq!(e.reply_opaque(), None);
}

#[test]
fn error_reply_answers_requests_only() {
    let frame = json_frame(r#"{"code":10,"opaque":42,"flag":0,"extFields":{"a":"#, b"");
    let e = decode_one(&frame).1.expect_err("broken JSON");
    let reply = e.error_reply().expect("answerable");
    assert_eq!(reply.code, ResponseCode::SYSTEM_ERROR);
    assert_eq!(reply.opaque, 42);
    assert!(reply.is_response());
    assert_eq!(reply.serialize_type, SerializeType::Json);
    assert!(reply
        .remark
        .as_deref()
        .is_some_and(|r| r.starts_with("JSON header does not parse")));
    let frame = json_frame(r#"{"code":10,"opaque":42,"flag":1,"extFields":5}"#, b"");
    let e = decode_one(&frame).1.expect_err("response with bad ext");
    assert!(e.error_reply().is_none());
}

#[test]
fn unknown_serialize_type() {
    let mut f = WORKED_BINARY.to_vec();
    f[4] = 7;
    let e = decode_one(&f).1.expect_err("type 7");
    assert_eq!(e.error, CommandError::UnknownSerializeType { type_byte: 7 });
    assert_eq!(e.serialize_type, None);
}

#[test]
fn bad_json_keeps_opaque_when_readable() {
    // Syntax error after the opaque: recovered by scanning.
    let frame = json_frame(r#"{"code":10,"opaque":42,"flag":0,"extFields":{"a":"#, b"");
    let (consumed, cmd) = decode_one(&frame);
    assert_eq!(consumed, frame.len());
    let e = cmd.expect_err("broken JSON");
    assert!(matches!(e.error, CommandError::BadJsonHeader { .. }));
    assert_eq!(e.serialize_type, Some(SerializeType::Json));
    assert_eq!((e.opaque, e.code), (Some(42), Some(10)));
    assert_eq!(e.reply_opaque(), Some(42));
    // Valid JSON, wrong shape (ext value is an object): recovered by the probe.
    let frame = json_frame(
        r#"{"code":10,"opaque":43,"flag":0,"extFields":{"a":{"b":1}}}"#,
        b"",
    );
    let e = decode_one(&frame).1.expect_err("object ext value");
    assert!(matches!(e.error, CommandError::BadJsonHeader { .. }));
    assert_eq!(e.reply_opaque(), Some(43));
    // Oneway requests are never answered.
    let frame = json_frame(r#"{"code":10,"opaque":44,"flag":2,"extFields":[]}"#, b"");
    let e = decode_one(&frame).1.expect_err("array ext");
    assert_eq!(e.opaque, Some(44));
    assert_eq!(e.reply_opaque(), None);
    // Not JSON at all.
    let frame = json_frame("\u{1}\u{2}garbage", b"");
    let e = decode_one(&frame).1.expect_err("garbage");
    assert_eq!(e.opaque, None);
    // Missing code.
    let frame = json_frame(r#"{"opaque":45}"#, b"");
    let e = decode_one(&frame).1.expect_err("no code");
    assert_eq!(e.error, CommandError::MissingHeaderField { field: "code" });
    assert_eq!(e.reply_opaque(), Some(45));
    // Out-of-range number.
    let frame = json_frame(r#"{"code":99999999999,"opaque":46}"#, b"");
    let e = decode_one(&frame).1.expect_err("code too big");
    assert_eq!(e.opaque, Some(46));
}

fn binary_frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((4 + header.len() + body.len()) as i32).to_be_bytes());
    f.extend_from_slice(&(0x0100_0000u32 | header.len() as u32).to_be_bytes());
    f.extend_from_slice(header);
    f.extend_from_slice(body);
    f
}

#[test]
fn malformed_binary_headers() {
    let fixed = |remark_len: i32| {
        let mut h = vec![0x00, 0x0a, 0x00, 0x01, 0x91, 0, 0, 0, 9, 0, 0, 0, 0];
        h.extend_from_slice(&remark_len.to_be_bytes());
        h
    };
    // Shorter than the fixed part.
    let e = decode_one(&binary_frame(&[0, 10, 0], b""))
        .1
        .expect_err("short");
    assert_eq!(
        e.error,
        CommandError::BinaryHeaderTruncated {
            what: "fixed header",
            needed: 17,
            available: 3
        }
    );
    // Remark longer than the header.
    let e = decode_one(&binary_frame(&fixed(10), b""))
        .1
        .expect_err("remark");
    assert_eq!(
        e.error,
        CommandError::BinaryHeaderTruncated {
            what: "remark",
            needed: 10,
            available: 0
        }
    );
    assert_eq!(e.reply_opaque(), Some(9));
    assert_eq!(e.code, Some(10));
    // Negative remark length.
    let e = decode_one(&binary_frame(&fixed(-2), b""))
        .1
        .expect_err("neg");
    assert_eq!(
        e.error,
        CommandError::BinaryHeaderNegativeLength {
            what: "remark length",
            length: -2
        }
    );
    // Remark not UTF-8.
    let mut h = fixed(2);
    h.extend_from_slice(&[0xff, 0xfe]);
    let e = decode_one(&binary_frame(&h, b"")).1.expect_err("utf8");
    assert_eq!(e.error, CommandError::InvalidUtf8 { what: "remark" });
    // Ext entry whose value runs past the ext region.
    let mut h = fixed(0);
    h.extend_from_slice(&9i32.to_be_bytes());
    h.extend_from_slice(&[0, 1, b'k', 0, 0, 0, 5, b'v']);
    h.push(0);
    let e = decode_one(&binary_frame(&h, b"")).1.expect_err("ext value");
    assert_eq!(
        e.error,
        CommandError::BinaryHeaderTruncated {
            what: "ext value",
            needed: 5,
            available: 2
        }
    );
    // Negative key length.
    let mut h = fixed(0);
    h.extend_from_slice(&2i32.to_be_bytes());
    h.extend_from_slice(&[0xff, 0xff]);
    let e = decode_one(&binary_frame(&h, b"")).1.expect_err("neg key");
    assert_eq!(
        e.error,
        CommandError::BinaryHeaderNegativeLength {
            what: "ext key length",
            length: -1
        }
    );
    // Ext value not UTF-8.
    let mut h = fixed(0);
    h.extend_from_slice(&8i32.to_be_bytes());
    h.extend_from_slice(&[0, 1, b'k', 0, 0, 0, 1, 0xc3]);
    let e = decode_one(&binary_frame(&h, b"")).1.expect_err("bad value");
    assert_eq!(e.error, CommandError::InvalidUtf8 { what: "ext value" });
    // No ext length word at all: accepted as empty.
    let frame = binary_frame(&fixed(0), b"B");
    let cmd = decode_one(&frame).1.expect("no ext word");
    assert!(cmd.ext.is_empty());
    assert_eq!(cmd.body, b"B");
}

#[test]
fn binary_ext_long_and_multibyte_values() {
    // A 200-byte value puts 0xC8 in its length word: the region is not UTF-8 as a whole and
    // entries are validated one by one.
    let long = "é".repeat(100);
    let cmd = RemotingCommand::request(12, 1)
        .with_serialize_type(SerializeType::RocketMq)
        .with_ext("k", long.as_str())
        .with_ext("ü", "v");
    let mut out = Vec::new();
    cmd.encode(&mut out).expect("encodes");
    let view = decode_one(&out).1.expect("decodes");
    assert_eq!(view.ext_get("k"), Some(long.as_str()));
    assert_eq!(view.ext_get("ü"), Some("v"));
    // Valid UTF-8 as a whole, but a character straddles the value-length word and the value:
    // the value alone is not UTF-8.
    let mut h = vec![
        0x00, 0x0c, 0x00, 0x01, 0x91, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut ext = vec![0, 1, b'k', 0, 0, 0, 0xc3, 0xa9];
    ext.extend(std::iter::repeat_n(b'a', 194));
    h.extend_from_slice(&(ext.len() as i32).to_be_bytes());
    h.extend_from_slice(&ext);
    let e = decode_one(&binary_frame(&h, b""))
        .1
        .expect_err("straddling char");
    assert_eq!(e.error, CommandError::InvalidUtf8 { what: "ext value" });
}

#[test]
fn body_over_limit_is_recoverable_with_opaque() {
    let limits = CodecLimits {
        max_body_bytes: 4,
        ..CodecLimits::default()
    };
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        SerializeType::RocketMq,
        &FrameHead::request(10, 77),
        &(),
        b"12345",
    )
    .expect("encodes");
    match decode_frame(&out, &limits).expect("not fatal") {
        FrameDecode::Frame { consumed, command } => {
            assert_eq!(consumed, out.len());
            let e = command.expect_err("too big");
            assert_eq!(
                e.error,
                CommandError::BodyTooLarge {
                    body_len: 5,
                    max_body_bytes: 4
                }
            );
            assert_eq!(e.reply_opaque(), Some(77));
        }
        other => panic!("{other:?}"),
    }
    // At the limit: fine.
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        SerializeType::RocketMq,
        &FrameHead::request(10, 78),
        &(),
        b"1234",
    )
    .expect("encodes");
    assert_eq!(decode_one(&out).1.expect("at limit").body, b"1234");
}

#[test]
fn encode_errors_leave_buffer_untouched() {
    let mut out = vec![1, 2, 3];
    let head = FrameHead::request(RequestCode::POP_MESSAGE, 1);
    let e = encode_frame(&mut out, SerializeType::RocketMq, &head, &(), b"x").expect_err("code");
    assert_eq!(
        e,
        EncodeError::ValueOutOfRange {
            what: "code",
            value: 200050
        }
    );
    assert_eq!(out, vec![1, 2, 3]);
    // JSON carries any code.
    encode_frame(&mut out, SerializeType::Json, &head, &(), b"x").expect("json ok");
    let cmd = decode_one(&out[3..]).1.expect("decodes");
    assert_eq!(cmd.code, 200050);
    let long_key = "k".repeat(40_000);
    let mut out2 = Vec::new();
    let e = encode_frame(
        &mut out2,
        SerializeType::RocketMq,
        &FrameHead::request(10, 1),
        &[(long_key.as_str(), "v")],
        b"",
    )
    .expect_err("key");
    assert_eq!(e, EncodeError::KeyTooLong { len: 40_000 });
    assert!(out2.is_empty());
}

#[test]
fn frame_head_only_for_zero_copy_body() {
    let mut head_bytes = Vec::new();
    let hdr = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 32,
        min_offset: 0,
        max_offset: 100,
        ..Default::default()
    };
    let body = vec![7u8; 300];
    let n = encode_frame_head(
        &mut head_bytes,
        SerializeType::Json,
        &FrameHead::response(ResponseCode::SUCCESS, 5),
        &hdr,
        body.len(),
    )
    .expect("encodes");
    assert_eq!(n, head_bytes.len());
    let mut full = head_bytes.clone();
    full.extend_from_slice(&body);
    let (consumed, cmd) = decode_one(&full);
    assert_eq!(consumed, full.len());
    let cmd = cmd.expect("decodes");
    assert_eq!(cmd.body, body.as_slice());
    let back: PullMessageResponseHeader = cmd.decode_header().expect("pull header");
    assert_eq!(back, hdr);
    // JSON ext values are strings on the wire.
    let text = std::str::from_utf8(&head_bytes[8..]).expect("utf8");
    assert!(text.contains(r#""nextBeginOffset":"32""#), "{text}");
}

#[test]
fn typed_header_errors_name_the_field() {
    let cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, 1)
        .with_ext("consumerGroup", "G")
        .with_ext("topic", "T")
        .with_ext("queueId", "x1");
    let e = cmd
        .decode_header::<PullMessageRequestHeader>()
        .expect_err("bad queueId");
    assert_eq!(
        e,
        HeaderError::Invalid {
            field: "queueId",
            value: "x1".into(),
            expected: "32-bit integer"
        }
    );
    let cmd = RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, 1)
        .with_ext("consumerGroup", "G")
        .with_ext("queueId", "1");
    let e = cmd
        .decode_header::<QueryConsumerOffsetRequestHeader>()
        .expect_err("no topic");
    assert_eq!(e, HeaderError::Missing { field: "topic" });
    assert_eq!(e.field(), "topic");
    let e = SendMessageRequestHeader::decode_v2(
        [
            ("a", "PG"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "0"),
            ("f", "0"),
            ("h", "0"),
        ]
        .into_iter(),
    )
    .expect_err("no born timestamp");
    assert_eq!(
        e,
        HeaderError::Missing {
            field: "g (bornTimestamp)"
        }
    );
    let e = SendMessageRequestHeader::decode_v1([("producerGroup", "PG")].into_iter())
        .expect_err("no topic");
    assert_eq!(e, HeaderError::Missing { field: "topic" });
}

fn sample_send() -> SendMessageRequestHeader<'static> {
    SendMessageRequestHeader {
        producer_group: "PG",
        topic: "T",
        default_topic: "TBW102",
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag: 4,
        born_timestamp: 1_700_000_000_000,
        flag: 3,
        properties: Some("TAGS\u{1}a\u{2}"),
        reconsume_times: Some(2),
        unit_mode: Some(false),
        max_reconsume_times: Some(16),
        batch: Some(true),
        broker_name: Some("b-s0"),
    }
}

#[test]
fn send_header_v1_v2_round_trip_both_serializations() {
    let h = sample_send();
    for ser in [SerializeType::Json, SerializeType::RocketMq] {
        for (code, v2) in [
            (RequestCode::SEND_MESSAGE, false),
            (RequestCode::SEND_MESSAGE_V2, true),
            (RequestCode::SEND_BATCH_MESSAGE, true),
        ] {
            let mut out = Vec::new();
            let head = FrameHead::request(code, 3);
            if v2 {
                encode_frame(&mut out, ser, &head, &h.v2(), b"m").expect("encodes");
            } else {
                encode_frame(&mut out, ser, &head, &h.v1(), b"m").expect("encodes");
            }
            let cmd = decode_one(&out).1.expect("decodes");
            if v2 {
                assert_eq!(cmd.ext_get("b"), Some("T"));
            } else {
                assert_eq!(cmd.ext_get("topic"), Some("T"));
            }
            assert_eq!(SendMessageRequestHeader::decode(&cmd).expect("header"), h);
        }
    }
}

#[test]
fn owned_command_round_trip_and_headers() {
    let resp = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000000000",
        queue_id: 2,
        queue_offset: 99,
        msg_region: Some(headers::DEFAULT_MSG_REGION),
        trace_on: Some("true"),
        ..Default::default()
    };
    let cmd = RemotingCommand::response(ResponseCode::SUCCESS, 12, SerializeType::RocketMq)
        .with_header(&resp)
        .with_remark("fine")
        .with_body(&b"xyz"[..]);
    assert_eq!(cmd.ext_get("queueOffset"), Some("99"));
    let mut out = Vec::new();
    cmd.encode(&mut out).expect("encodes");
    let view = decode_one(&out).1.expect("decodes");
    assert_eq!(view.to_owned_command(), cmd);
    let back: SendMessageResponseHeader = view.decode_header().expect("resp header");
    assert_eq!(back, resp);
}

#[test]
fn every_typed_header_round_trips() {
    fn rt<H>(h: H)
    where
        H: EncodeHeader + for<'a> DecodeHeader<'a> + PartialEq + std::fmt::Debug,
    {
        for ser in [SerializeType::Json, SerializeType::RocketMq] {
            let mut out = Vec::new();
            encode_frame(&mut out, ser, &FrameHead::request(1, 1), &h, b"").expect("encodes");
            let view = decode_one(&out).1.expect("decodes");
            let back: H = view.decode_header().expect("decodes header");
            assert_eq!(back, h);
        }
    }
    rt(PullMessageResponseHeader {
        suggest_which_broker_id: 1,
        next_begin_offset: 2,
        min_offset: 3,
        max_offset: 4,
        offset_delta: Some(5),
        ..Default::default()
    });
    rt(OffsetResponseHeader { offset: -1 });
    rt(GetEarliestMsgStoretimeResponseHeader {
        timestamp: 1_700_000_000_000,
    });
    rt(QueryMessageResponseHeader {
        index_last_update_timestamp: 1,
        index_last_update_phyoffset: 2,
    });
    rt(QueryDataVersionResponseHeader { changed: true });
    rt(WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: 3,
    });
}

#[test]
fn borrowed_typed_headers_round_trip() {
    macro_rules! rt {
        ($t:ident, $v:expr) => {{
            let h: $t = $v;
            for ser in [SerializeType::Json, SerializeType::RocketMq] {
                let mut out = Vec::new();
                encode_frame(&mut out, ser, &FrameHead::request(1, 1), &h, b"").expect("encodes");
                let view = decode_one(&out).1.expect("decodes");
                let back: $t = view.decode_header().expect("header");
                assert_eq!(back, h);
            }
        }};
    }
    rt!(
        PullMessageRequestHeader,
        PullMessageRequestHeader {
            consumer_group: "G",
            topic: "T",
            queue_id: 1,
            queue_offset: 5,
            max_msg_nums: 32,
            sys_flag: 3,
            commit_offset: 4,
            suspend_timeout_millis: 15000,
            subscription: Some("a || b"),
            sub_version: 1,
            expression_type: Some("TAG"),
            max_msg_bytes: Some(262144),
            broker_name: None
        }
    );
    rt!(
        QueryConsumerOffsetRequestHeader,
        QueryConsumerOffsetRequestHeader {
            consumer_group: "G",
            topic: "T",
            queue_id: 0,
            set_zero_if_not_found: Some(true)
        }
    );
    rt!(
        UpdateConsumerOffsetRequestHeader,
        UpdateConsumerOffsetRequestHeader {
            consumer_group: "G",
            topic: "T",
            queue_id: 0,
            commit_offset: 17
        }
    );
    rt!(
        GetMaxOffsetRequestHeader,
        GetMaxOffsetRequestHeader {
            topic: "T",
            queue_id: 2,
            committed: None
        }
    );
    rt!(
        GetMinOffsetRequestHeader,
        GetMinOffsetRequestHeader {
            topic: "T",
            queue_id: 2
        }
    );
    rt!(
        SearchOffsetRequestHeader,
        SearchOffsetRequestHeader {
            topic: "T",
            queue_id: 2,
            timestamp: 5,
            boundary_type: Some("upper")
        }
    );
    rt!(
        GetEarliestMsgStoretimeRequestHeader,
        GetEarliestMsgStoretimeRequestHeader {
            topic: "T",
            queue_id: 2
        }
    );
    rt!(
        GetConsumerListByGroupRequestHeader,
        GetConsumerListByGroupRequestHeader {
            consumer_group: "G"
        }
    );
    rt!(
        NotifyConsumerIdsChangedRequestHeader,
        NotifyConsumerIdsChangedRequestHeader {
            consumer_group: "G"
        }
    );
    rt!(
        UnregisterClientRequestHeader,
        UnregisterClientRequestHeader {
            client_id: "1.2.3.4@1",
            producer_group: Some("P"),
            consumer_group: None
        }
    );
    rt!(
        CreateTopicRequestHeader,
        CreateTopicRequestHeader {
            topic: "T",
            default_topic: "TBW102",
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: 6,
            topic_filter_type: "SINGLE_TAG",
            topic_sys_flag: Some(0),
            order: false,
            attributes: None,
            force: None
        }
    );
    rt!(
        DeleteTopicRequestHeader,
        DeleteTopicRequestHeader { topic: "T" }
    );
    rt!(
        GetRouteInfoRequestHeader,
        GetRouteInfoRequestHeader {
            topic: "T",
            accept_standard_json_only: Some(true)
        }
    );
    rt!(
        RegisterBrokerRequestHeader,
        RegisterBrokerRequestHeader {
            broker_name: "b",
            broker_addr: "1.2.3.4:10911",
            cluster_name: "C",
            ha_server_addr: "1.2.3.4:10912",
            broker_id: 0,
            heartbeat_timeout_millis: Some(120000),
            enable_acting_master: Some(false),
            compressed: Some(false),
            body_crc32: Some(12345)
        }
    );
    rt!(
        UnRegisterBrokerRequestHeader,
        UnRegisterBrokerRequestHeader {
            broker_name: "b",
            broker_addr: "a:1",
            cluster_name: "C",
            broker_id: 1
        }
    );
    rt!(
        QueryMessageRequestHeader,
        QueryMessageRequestHeader {
            topic: "T",
            key: "k",
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key_query: Some(false)
        }
    );
    rt!(
        ViewMessageRequestHeader,
        ViewMessageRequestHeader {
            offset: 1234,
            topic: None
        }
    );
    rt!(
        ConsumerSendMsgBackRequestHeader,
        ConsumerSendMsgBackRequestHeader {
            offset: 1,
            group: "G",
            delay_level: 0,
            origin_msg_id: Some("ID"),
            origin_topic: Some("T"),
            unit_mode: Some(false),
            max_reconsume_times: Some(16),
            broker_name: None
        }
    );
    rt!(
        EndTransactionRequestHeader,
        EndTransactionRequestHeader {
            producer_group: "P",
            tran_state_table_offset: 1,
            commit_log_offset: 2,
            commit_or_rollback: 8,
            from_transaction_check: Some(true),
            msg_id: "M",
            transaction_id: Some("X"),
            topic: None,
            broker_name: None
        }
    );
    rt!(
        CheckTransactionStateRequestHeader,
        CheckTransactionStateRequestHeader {
            tran_state_table_offset: 1,
            commit_log_offset: 2,
            msg_id: Some("M"),
            transaction_id: Some("M"),
            offset_msg_id: Some("O"),
            topic: None,
            broker_name: None
        }
    );
    rt!(
        GetKVConfigRequestHeader,
        GetKVConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG",
            key: "T"
        }
    );
    rt!(
        DeleteTopicFromNamesrvRequestHeader,
        DeleteTopicFromNamesrvRequestHeader {
            topic: "T",
            cluster_name: Some("C")
        }
    );
}

// ---- allocation accounting (per thread, so parallel tests do not disturb each other) ----
// This is the global allocator of ramjet-core's whole lib test binary. Other modules' tests
// can use `crate::remoting::tests::alloc_count::count()` instead of declaring their own
// (two `#[global_allocator]`s do not compile).

pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    // SAFETY: forwards every call to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            COUNT.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as our caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as our caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            COUNT.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as our caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub fn count() -> u64 {
        COUNT.with(|c| c.get())
    }
}

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

#[test]
fn binary_send_v2_decode_and_response_encode_do_not_allocate() {
    let h = sample_send();
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        SerializeType::RocketMq,
        &FrameHead::request(RequestCode::SEND_MESSAGE_V2, 5),
        &h.v2(),
        b"payload",
    )
    .expect("encodes");
    let mut out = Vec::with_capacity(1024);
    let limits = CodecLimits::default();
    let before = alloc_count::count();
    let FrameDecode::Frame {
        command: Ok(cmd), ..
    } = decode_frame(&frame, &limits).expect("ok")
    else {
        panic!("no frame");
    };
    let got = SendMessageRequestHeader::decode(&cmd).expect("header");
    let resp = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000000000",
        queue_id: got.queue_id,
        queue_offset: 12,
        msg_region: Some(headers::DEFAULT_MSG_REGION),
        trace_on: Some("true"),
        ..Default::default()
    };
    encode_frame(
        &mut out,
        cmd.serialize_type,
        &cmd.response_head(ResponseCode::SUCCESS),
        &resp,
        b"",
    )
    .expect("encodes");
    let pull = PullMessageResponseHeader {
        next_begin_offset: 1,
        ..Default::default()
    };
    encode_frame_head(
        &mut out,
        SerializeType::Json,
        &FrameHead::response(0, 1),
        &pull,
        100,
    )
    .expect("encodes");
    let after = alloc_count::count();
    assert_eq!(after - before, 0, "allocations on the binary send path");
    assert_eq!(got, h);
}

#[test]
fn binary_pull_request_decode_does_not_allocate() {
    let h = PullMessageRequestHeader {
        consumer_group: "G",
        topic: "T",
        queue_id: 1,
        queue_offset: 5,
        max_msg_nums: 32,
        sys_flag: 3,
        commit_offset: 4,
        suspend_timeout_millis: 15000,
        subscription: Some("*"),
        sub_version: 1,
        ..Default::default()
    };
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        SerializeType::RocketMq,
        &FrameHead::request(11, 5),
        &h,
        b"",
    )
    .expect("encodes");
    let before = alloc_count::count();
    let (_, cmd) = decode_one(&frame);
    let cmd = cmd.expect("decodes");
    let got: PullMessageRequestHeader = cmd.decode_header().expect("header");
    assert_eq!(alloc_count::count() - before, 0);
    assert_eq!(got, h);
}

// ---- property round-trips ----

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_%|-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(20).collect()),
        Just("\u{1}\u{2}\"\\\n".to_string()),
    ]
}

prop_compose! {
    fn arb_command(binary: bool)(
        code in if binary { (i16::MIN as i32..=i16::MAX as i32).boxed() } else { any::<i32>().boxed() },
        lang in 0u8..14,
        version in if binary { (i16::MIN as i32..=i16::MAX as i32).boxed() } else { any::<i32>().boxed() },
        opaque in any::<i32>(),
        flag in any::<i32>(),
        remark in proptest::option::of(arb_text().prop_filter("non-empty", |s| !s.is_empty())),
        ext in proptest::collection::vec((arb_text(), arb_text()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> RemotingCommand {
        RemotingCommand {
            serialize_type: if binary { SerializeType::RocketMq } else { SerializeType::Json },
            code, language: LanguageCode::from_u8(lang), version, opaque, flag, remark,
            ext_fields: ext, body: body.into(),
        }
    }
}

proptest! {
    #[test]
    fn prop_binary_round_trip(cmd in arb_command(true)) {
        let mut out = Vec::new();
        let n = cmd.encode(&mut out).expect("encodes");
        prop_assert_eq!(n, out.len());
        let (consumed, view) = decode_one(&out);
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(view.expect("decodes").to_owned_command(), cmd);
    }

    #[test]
    fn prop_json_round_trip(cmd in arb_command(false)) {
        let mut out = Vec::new();
        cmd.encode(&mut out).expect("encodes");
        let (consumed, view) = decode_one(&out);
        prop_assert_eq!(consumed, out.len());
        prop_assert_eq!(view.expect("decodes").to_owned_command(), cmd);
    }

    #[test]
    fn prop_stream_of_frames_split_anywhere(cmds in proptest::collection::vec(arb_command(true), 1..5), cut in 0usize..400) {
        let mut stream = Vec::new();
        for c in &cmds {
            c.encode(&mut stream).expect("encodes");
        }
        // Feed the stream in two chunks; decode everything that is complete each time.
        let cut = cut.min(stream.len());
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        for chunk in [&stream[..cut], &stream[cut..]] {
            buf.extend_from_slice(chunk);
            loop {
                match decode_frame(&buf, &CodecLimits::default()).expect("not fatal") {
                    FrameDecode::NeedMore { .. } => break,
                    FrameDecode::Frame { consumed, command } => {
                        got.push(command.expect("decodes").to_owned_command());
                        buf.drain(..consumed);
                    }
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, cmds);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic_and_classify(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        match decode_frame(&bytes, &CodecLimits::default()) {
            Ok(FrameDecode::NeedMore { frame_bytes }) => {
                prop_assert!(frame_bytes.is_none_or(|n| n > bytes.len()));
            }
            Ok(FrameDecode::Frame { consumed, .. }) => prop_assert!(consumed <= bytes.len() && consumed >= 8),
            Err(FrameError::LengthTooSmall { length }) => prop_assert!(length < 4),
            Err(FrameError::FrameTooLarge { .. }) => {}
        }
    }
}
