//! Worked-bytes unit tests and property round-trips of the record codec.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::*;

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
}

fn v6(a: [u8; 16], port: u16) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
}

fn sample<'a>(topic: &'a str, body: &'a [u8], props: &'a [u8]) -> MessageToStore<'a> {
    MessageToStore {
        topic,
        queue_id: 3,
        flag: 7,
        body,
        properties: props,
        sys_flag: 0,
        born_timestamp: 0x0102_0304_0506_0708,
        born_host: v4([10, 0, 0, 1], 5555),
        store_host: v4([192, 168, 0, 10], 10911),
        reconsume_times: 2,
        prepared_transaction_offset: 99,
        tags_code: 0,
    }
}

#[test]
fn worked_bytes_v1_ipv4() {
    let props = b"a\x01b\x02";
    let msg = sample("T", b"hi", props);
    let mut out = [0u8; 256];
    let n = encode_record(&msg, 5, 0x1000, 0x1111_2222_3333_4444, &mut out).unwrap();
    assert_eq!(n, 91 + 2 + 1 + 4);
    assert_eq!(n, msg.encoded_len());
    let mut want = Vec::new();
    want.extend_from_slice(&(n as i32).to_be_bytes());
    want.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]);
    want.extend_from_slice(&((crc32fast::hash(b"hi") & 0x7FFF_FFFF) as i32).to_be_bytes());
    want.extend_from_slice(&3i32.to_be_bytes());
    want.extend_from_slice(&7i32.to_be_bytes());
    want.extend_from_slice(&5i64.to_be_bytes());
    want.extend_from_slice(&0x1000i64.to_be_bytes());
    want.extend_from_slice(&0i32.to_be_bytes());
    want.extend_from_slice(&0x0102_0304_0506_0708i64.to_be_bytes());
    want.extend_from_slice(&[10, 0, 0, 1]);
    want.extend_from_slice(&5555i32.to_be_bytes());
    want.extend_from_slice(&0x1111_2222_3333_4444i64.to_be_bytes());
    want.extend_from_slice(&[192, 168, 0, 10]);
    want.extend_from_slice(&10911i32.to_be_bytes());
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(&99i64.to_be_bytes());
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(b"hi");
    want.push(1);
    want.extend_from_slice(b"T");
    want.extend_from_slice(&4i16.to_be_bytes());
    want.extend_from_slice(props);
    assert_eq!(&out[..n], &want[..]);
    // Java's fixed positions for an IPv4 born host.
    assert_eq!(&out[16..20], &7i32.to_be_bytes());
    assert_eq!(&out[28..36], &0x1000i64.to_be_bytes());
    assert_eq!(&out[56..64], &0x1111_2222_3333_4444i64.to_be_bytes());

    let v = RecordView::parse_verified(&out).unwrap();
    assert_eq!(v.total_size() as usize, n);
    assert_eq!(v.version(), MagicVersion::V1);
    assert_eq!(v.topic(), "T");
    assert_eq!(v.body(), b"hi");
    assert_eq!(v.property("a"), Some(&b"b"[..]));
    assert_eq!(v.store_timestamp_pos(), 56);
    assert_eq!(v.born_host(), v4([10, 0, 0, 1], 5555));
    assert_eq!(v.store_host(), v4([192, 168, 0, 10], 10911));
}

#[test]
fn ipv6_hosts_set_sysflag_bits_and_widths() {
    let mut msg = sample("T", b"x", b"");
    msg.sys_flag = sysflag::TRANSACTION_COMMIT_TYPE | sysflag::STOREHOSTADDRESS_V6_FLAG;
    msg.born_host = v6([0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 1);
    // store host is IPv4: the stale STOREHOST bit must be cleared.
    let mut out = [0u8; 256];
    let n = encode_record(&msg, 0, 0, 42, &mut out).unwrap();
    assert_eq!(n, 91 + 1 + 1 + 12);
    let v = RecordView::parse(&out[..n]).unwrap();
    assert_eq!(
        v.sys_flag(),
        sysflag::TRANSACTION_COMMIT_TYPE | sysflag::BORNHOST_V6_FLAG
    );
    assert_eq!(v.born_host(), msg.born_host);
    assert_eq!(v.store_timestamp_pos(), 68);
    assert_eq!(v.store_timestamp(), 42);
}

#[test]
fn long_topic_uses_magic_v2() {
    let topic = "t".repeat(200);
    let msg = sample(&topic, b"", b"");
    let mut out = vec![0u8; 512];
    let n = encode_record(&msg, 1, 2, 3, &mut out).unwrap();
    assert_eq!(n, 92 + 200);
    assert_eq!(&out[4..8], &[0xDA, 0xA3, 0x20, 0xAB]);
    let v = RecordView::parse_verified(&out).unwrap();
    assert_eq!(v.version(), MagicVersion::V2);
    assert_eq!(v.topic(), topic);
}

#[test]
fn encode_rejects_bad_limits() {
    let mut out = [0u8; 64];
    let msg = sample("T", b"hello", b"");
    assert_eq!(
        encode_record(&msg, 0, 0, 0, &mut out),
        Err(RecordError::BufferTooSmall { need: 97, have: 64 })
    );
    let empty = sample("", b"", b"");
    assert!(matches!(
        encode_record(&empty, 0, 0, 0, &mut [0u8; 256]),
        Err(RecordError::TopicLength { len: 0, .. })
    ));
    let big = vec![b'a'; MAX_PROPERTIES_LEN + 1];
    let m = sample("T", b"", &big);
    assert!(matches!(
        encode_record(&m, 0, 0, 0, &mut vec![0u8; 40_000]),
        Err(RecordError::PropertiesTooLong {
            len: 32768,
            max: 32767
        })
    ));
}

#[test]
fn body_crc_matches_java() {
    // CRC32("123456789") = 0xCBF43926 (check value); RocketMQ masks the top bit.
    assert_eq!(body_crc(b"123456789"), 0x4BF4_3926);
    assert_eq!(body_crc(b""), 0);
}

#[test]
fn crc_mismatch_detected_and_named() {
    let msg = sample("T", b"payload", b"");
    let mut out = [0u8; 256];
    let n = encode_record(&msg, 0, 0, 0, &mut out).unwrap();
    let body_at = n - 2 - 1 - 1 - 7;
    out[body_at] ^= 0xFF;
    let v = RecordView::parse(&out[..n]).unwrap();
    match v.verify_crc() {
        Err(RecordError::BodyCrcMismatch { stored, computed }) => {
            assert_eq!(stored, body_crc(b"payload"));
            assert_ne!(stored, computed);
        }
        other => panic!("expected BodyCrcMismatch, got {other:?}"),
    }
}

#[test]
fn parse_errors_name_the_problem() {
    let msg = sample("T", b"abc", b"");
    let mut out = [0u8; 256];
    let n = encode_record(&msg, 0, 0, 0, &mut out).unwrap();
    let mut bad = out;
    bad[4..8].copy_from_slice(&0x1234_5678i32.to_be_bytes());
    assert_eq!(
        RecordView::parse(&bad).unwrap_err(),
        RecordError::BadMagic { magic: 0x1234_5678 }
    );
    assert!(matches!(
        RecordView::parse(&out[..n - 1]),
        Err(RecordError::TotalSizeOutOfRange { available, .. }) if available == n - 1
    ));
    // Body length one too large: fields no longer add up.
    let mut bad = out;
    let body_len_at = n - 2 - 1 - 1 - 3 - 4;
    bad[body_len_at..body_len_at + 4].copy_from_slice(&4i32.to_be_bytes());
    assert!(RecordView::parse(&bad[..n]).is_err());
    let mut bad = out;
    bad[body_len_at..body_len_at + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        RecordView::parse(&bad[..n]).unwrap_err(),
        RecordError::NegativeLength {
            field: "BODYLENGTH",
            value: -1
        }
    );
}

#[test]
fn blank_marker_round_trip() {
    let b = blank_record(1234);
    assert_eq!(b, [0, 0, 0x04, 0xD2, 0xCB, 0xD4, 0x31, 0x94]);
    assert!(is_blank(&b));
    assert_eq!(blank_len(&b), Some(1234));
    assert!(matches!(parse_entry(&b), Ok(Entry::Blank { len: 1234 })));
    assert_eq!(
        RecordView::parse(&b).unwrap_err(),
        RecordError::UnexpectedBlank { len: 1234 }
    );
    let mut out = [0u8; 4];
    assert!(write_blank(5, &mut out).is_err());
}

#[test]
fn iter_entries_walks_records_then_blank() {
    let mut file = vec![0u8; 1024];
    let mut pos = 0;
    let mut starts = Vec::new();
    for i in 0..3 {
        let body = vec![i as u8; i * 10];
        let m = sample("TopicX", &body, b"");
        starts.push(pos);
        pos += encode_record(&m, i as i64, pos as i64, 0, &mut file[pos..]).unwrap();
    }
    let blank_at = pos;
    write_blank((file.len() - pos) as u32, &mut file[pos..]).unwrap();
    let got: Vec<_> = iter_entries(&file).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 4);
    for (i, (at, e)) in got.iter().take(3).enumerate() {
        assert_eq!(*at, starts[i]);
        match e {
            Entry::Record(v) => {
                assert_eq!(v.queue_offset(), i as i64);
                assert_eq!(v.physical_offset(), starts[i] as i64);
            }
            Entry::Blank { .. } => panic!("record expected at {at}"),
        }
    }
    assert!(
        matches!(got[3], (at, Entry::Blank { len }) if at == blank_at && len as usize == 1024 - blank_at)
    );
    // Zeros after the records end the walk without error.
    let mut it = iter_entries(&file[..blank_at]);
    assert_eq!(it.by_ref().count(), 3);
    let zeros = [0u8; 64];
    assert_eq!(iter_entries(&zeros).count(), 0);
}

#[test]
fn iter_entries_reports_damage_once_and_stops() {
    let mut file = vec![0u8; 512];
    let m = sample("T", b"abc", b"");
    let n = encode_record(&m, 0, 0, 0, &mut file).unwrap();
    encode_record(&m, 1, n as i64, 0, &mut file[n..]).unwrap();
    file[n + 4] ^= 0xFF; // second record's magic
    let got: Vec<_> = iter_entries(&file).collect();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[0], Ok((0, Entry::Record(_)))));
    assert!(matches!(got[1], Err(RecordError::BadMagic { .. })));
}

#[test]
fn tag_hash_matches_java() {
    assert_eq!(tag_hash("TagA"), 2_598_919);
    assert_eq!(tag_hash("TagB"), 2_598_920);
    assert_eq!(tag_hash("*"), 42);
    assert_eq!(tag_hash(""), 0);
    assert_eq!(tag_hash("hello world"), 1_794_106_052);
    assert_eq!(tag_hash("Aa"), tag_hash("BB"));
    assert_eq!(tag_hash("Aa"), 2112);
    // Negative results sign-extend.
    assert_eq!(tag_hash("polygenelubricants"), i64::from(i32::MIN));
    assert_eq!(
        tag_hash("hello world, this is long"),
        i64::from(java_string_hash("hello world, this is long"))
    );
    // Non-ASCII: U+00E9 is one code unit; CJK two units; U+1F600 is a surrogate pair D83D DE00.
    assert_eq!(tag_hash("\u{e9}"), 233);
    assert_eq!(tag_hash("中文"), 20013 * 31 + 25991);
    assert_eq!(tag_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    // Raw bytes: valid UTF-8 hashes like the str; invalid bytes become U+FFFD.
    assert_eq!(tag_hash_bytes("中文".as_bytes()), tag_hash("中文"));
    assert_eq!(tag_hash_bytes(b"a\xFFb"), tag_hash("a\u{FFFD}b"));
}

#[test]
fn offset_msg_id_matches_spec_example() {
    let id = offset_msg_id(v4([192, 168, 0, 10], 10911), 0x1234);
    assert_eq!(id.as_str(), "C0A8000A00002A9F0000000000001234");
    assert_eq!(
        decode_offset_msg_id("c0a8000a00002a9f0000000000001234").unwrap(),
        (v4([192, 168, 0, 10], 10911), 0x1234)
    );
    let six = offset_msg_id(
        v6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            10911,
        ),
        7,
    );
    assert_eq!(six.as_str().len(), 56);
    assert_eq!(
        six.as_str(),
        "20010DB800000000000000000000000100002A9F0000000000000007"
    );
    assert!(matches!(
        decode_offset_msg_id("ABC"),
        Err(RecordError::BadMessageId { .. })
    ));
    assert!(matches!(
        decode_offset_msg_id("G0A8000A00002A9F0000000000001234"),
        Err(RecordError::BadMessageId { .. })
    ));
    assert!(matches!(
        decode_offset_msg_id("C0A8000A0001000F0000000000001234"),
        Err(RecordError::BadMessageId {
            reason: "port out of range 0..=65535",
            ..
        })
    ));
}

#[test]
fn properties_parse_like_java() {
    let p = b"KEYS\x01k1 k2\x02TAGS\x01TagA\x02\x02=\x01\x02\x01v\x02n\x01\x02TAGS\x01TagB";
    let pairs: Vec<_> = properties::iter(p).collect();
    assert_eq!(
        pairs,
        vec![
            (&b"KEYS"[..], &b"k1 k2"[..]),
            (&b"TAGS"[..], &b"TagA"[..]),
            (&b"TAGS"[..], &b"TagB"[..]),
        ]
    );
    assert_eq!(properties::get(p, properties::TAGS), Some(&b"TagB"[..]));
    assert_eq!(properties::get_str(p, properties::KEYS), Some("k1 k2"));
    assert_eq!(properties::get(p, "n"), None);
    let keys: Vec<_> = properties::split_keys(b" k1  k2 ").collect();
    assert_eq!(keys, vec![&b"k1"[..], &b"k2"[..]]);
}

#[test]
fn properties_builder_and_errors() {
    let mut b = properties::PropertiesBuilder::new();
    b.push_str(properties::UNIQ_KEY, "ABC").unwrap();
    b.push_str(properties::TAGS, "t").unwrap();
    assert_eq!(b.as_bytes(), b"UNIQ_KEY\x01ABC\x02TAGS\x01t\x02");
    let mut c = properties::PropertiesBuilder::new();
    c.extend_from(b.as_bytes(), &[properties::TAGS]).unwrap();
    c.push_str(properties::CLUSTER, "DefaultCluster").unwrap();
    assert_eq!(
        c.as_bytes(),
        b"UNIQ_KEY\x01ABC\x02CLUSTER\x01DefaultCluster\x02"
    );
    assert!(matches!(
        b.push_str("x", "a\x02b"),
        Err(RecordError::BadProperty { .. })
    ));
    assert!(matches!(
        b.push_str("", "v"),
        Err(RecordError::BadProperty { .. })
    ));
    let mut out = [0u8; 8];
    assert_eq!(properties::write_pair(&mut out, "K", b"vv").unwrap(), 5);
    assert_eq!(&out[..5], b"K\x01vv\x02");
    assert!(properties::write_pair(&mut out, "KKKK", b"vvvv").is_err());
    assert_eq!(
        properties::encode([("A", "1"), ("B", "2")]).unwrap(),
        b"A\x011\x02B\x012\x02".to_vec()
    );
}

#[test]
fn batch_worked_bytes() {
    let mut body = vec![0u8; 128];
    let n1 = encode_batch_entry(1, b"ab", b"K\x01v\x02", &mut body).unwrap();
    assert_eq!(n1, 22 + 2 + 4);
    let mut want = Vec::new();
    want.extend_from_slice(&28i32.to_be_bytes());
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&2i32.to_be_bytes());
    want.extend_from_slice(b"ab");
    want.extend_from_slice(&4i16.to_be_bytes());
    want.extend_from_slice(b"K\x01v\x02");
    assert_eq!(&body[..n1], &want[..]);
    let n2 = encode_batch_entry(2, b"", b"", &mut body[n1..]).unwrap();
    let items: Vec<_> = decode_batch(&body[..n1 + n2])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        items,
        vec![
            BatchItem {
                flag: 1,
                body: b"ab",
                properties: b"K\x01v\x02"
            },
            BatchItem {
                flag: 2,
                body: b"",
                properties: b""
            },
        ]
    );
    // A wrong TOTALSIZE is reported with its index, and iteration stops.
    let mut bad = body[..n1 + n2].to_vec();
    bad[n1..n1 + 4].copy_from_slice(&23i32.to_be_bytes());
    let r: Vec<_> = decode_batch(&bad).collect();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[1],
        Err(RecordError::BatchEntrySize {
            index: 1,
            at: n1,
            total_size: 23,
            computed: 22
        })
    );
    // Truncated body.
    let r: Vec<_> = decode_batch(&body[..n1 - 1]).collect();
    assert!(matches!(
        r[..],
        [Err(RecordError::Truncated {
            field: "batch PROPERTIES",
            ..
        })]
    ));
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| v4(a, p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(a, p)| v6(a, p)),
    ]
}

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z_#.%][A-Za-z0-9_#.%]{0,15}"
}

fn arb_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("separator", |b| *b != 1 && *b != 2),
        1..24,
    )
}

#[derive(Debug, Clone)]
struct Fields {
    topic: String,
    queue_id: i32,
    flag: i32,
    body: Vec<u8>,
    props: Vec<u8>,
    sys_flag: i32,
    born_ts: i64,
    born: SocketAddr,
    store: SocketAddr,
    reconsume: i32,
    prepared: i64,
    queue_offset: i64,
    phys: i64,
    store_ts: i64,
}

fn arb_fields() -> impl Strategy<Value = Fields> {
    (
        ("[a-zA-Z0-9%_-]{1,140}", any::<i32>(), any::<i32>()),
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<i32>(),
        ),
        (any::<i64>(), arb_addr(), arb_addr()),
        (
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (topic, queue_id, flag),
                (body, props, sys_flag),
                (born_ts, born, store),
                (reconsume, prepared, queue_offset, phys, store_ts),
            )| Fields {
                topic,
                queue_id,
                flag,
                body,
                props,
                sys_flag,
                born_ts,
                born,
                store,
                reconsume,
                prepared,
                queue_offset,
                phys,
                store_ts,
            },
        )
}

proptest! {
    #[test]
    fn record_round_trip(f in arb_fields()) {
        let msg = MessageToStore {
            topic: &f.topic,
            queue_id: f.queue_id,
            flag: f.flag,
            body: &f.body,
            properties: &f.props,
            sys_flag: f.sys_flag,
            born_timestamp: f.born_ts,
            born_host: f.born,
            store_host: f.store,
            reconsume_times: f.reconsume,
            prepared_transaction_offset: f.prepared,
            tags_code: 0,
        };
        let mut out = vec![0u8; msg.encoded_len() + 16];
        let n = encode_record(&msg, f.queue_offset, f.phys, f.store_ts, &mut out).unwrap();
        prop_assert_eq!(n, msg.encoded_len());
        let v = RecordView::parse_verified(&out).unwrap();
        prop_assert_eq!(v.as_bytes().len(), n);
        prop_assert_eq!(v.queue_id(), f.queue_id);
        prop_assert_eq!(v.flag(), f.flag);
        prop_assert_eq!(v.queue_offset(), f.queue_offset);
        prop_assert_eq!(v.physical_offset(), f.phys);
        prop_assert_eq!(v.sys_flag(), msg.stored_sys_flag());
        prop_assert_eq!(v.sys_flag() & !0x30, f.sys_flag & !0x30);
        prop_assert_eq!(v.born_timestamp(), f.born_ts);
        prop_assert_eq!(v.born_host(), f.born);
        prop_assert_eq!(v.store_timestamp(), f.store_ts);
        prop_assert_eq!(v.store_host(), f.store);
        prop_assert_eq!(v.reconsume_times(), f.reconsume);
        prop_assert_eq!(v.prepared_transaction_offset(), f.prepared);
        prop_assert_eq!(v.body(), &f.body[..]);
        prop_assert_eq!(v.topic(), &f.topic[..]);
        prop_assert_eq!(v.properties(), &f.props[..]);
        prop_assert_eq!(v.body_crc(), body_crc(&f.body));
        prop_assert_eq!(v.version() == MagicVersion::V2, f.topic.len() > 127);
        // Every strict prefix fails cleanly.
        for cut in [0, 1, 7, 8, 47, 48, n / 2, n - 1] {
            prop_assert!(RecordView::parse(&out[..cut]).is_err());
        }
    }

    #[test]
    fn garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300), magic in prop_oneof![Just(MESSAGE_MAGIC_CODE_V1), Just(MESSAGE_MAGIC_CODE_V2), any::<i32>()], size in 0i32..400) {
        let mut buf = buf;
        if buf.len() >= 8 {
            buf[0..4].copy_from_slice(&size.to_be_bytes());
            buf[4..8].copy_from_slice(&magic.to_be_bytes());
        }
        if let Ok(v) = RecordView::parse(&buf) {
            prop_assert_eq!(v.total_size() as i32, size);
            let _ = v.verify_crc();
        }
        for e in iter_entries(&buf) {
            let _ = e;
        }
    }

    #[test]
    fn properties_round_trip(pairs in proptest::collection::vec((arb_name(), arb_value()), 0..12)) {
        let mut b = properties::PropertiesBuilder::new();
        for (n, v) in &pairs {
            b.push(n, v).unwrap();
        }
        let got: Vec<(Vec<u8>, Vec<u8>)> = properties::iter(b.as_bytes()).map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.clone())).collect();
        prop_assert_eq!(&got, &want);
        for (n, _) in &pairs {
            let last = pairs.iter().rev().find(|(m, _)| m == n).map(|(_, v)| &v[..]);
            prop_assert_eq!(properties::get(b.as_bytes(), n), last);
        }
        // Dropping the trailing separator is tolerated.
        let bytes = b.as_bytes();
        if !bytes.is_empty() {
            let trimmed = &bytes[..bytes.len() - 1];
            prop_assert_eq!(properties::iter(trimmed).count(), pairs.len());
        }
    }

    #[test]
    fn batch_round_trip(items in proptest::collection::vec((any::<i32>(), proptest::collection::vec(any::<u8>(), 0..100), proptest::collection::vec(any::<u8>(), 0..60)), 0..10)) {
        let total: usize = items.iter().map(|(_, b, p)| batch_entry_len(b, p)).sum();
        let mut buf = vec![0u8; total];
        let mut pos = 0;
        for (f, b, p) in &items {
            pos += encode_batch_entry(*f, b, p, &mut buf[pos..]).unwrap();
        }
        prop_assert_eq!(pos, total);
        let got: Vec<_> = decode_batch(&buf).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), items.len());
        for (g, (f, b, p)) in got.iter().zip(&items) {
            prop_assert_eq!(g.flag, *f);
            prop_assert_eq!(g.body, &b[..]);
            prop_assert_eq!(g.properties, &p[..]);
        }
        if total > 0 {
            let r: Vec<_> = decode_batch(&buf[..total - 1]).collect();
            prop_assert!(r.last().is_some_and(|x| x.is_err()));
        }
    }

    #[test]
    fn msg_id_round_trip(addr in arb_addr(), off in any::<i64>()) {
        let id = offset_msg_id(addr, off);
        let s = id.as_str();
        prop_assert_eq!(s.len(), if addr.is_ipv4() { 32 } else { 56 });
        prop_assert!(s.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        prop_assert_eq!(decode_offset_msg_id(s).unwrap(), (addr, off));
    }

    #[test]
    fn tag_hash_is_java_formula(s in "\\PC{0,40}") {
        let mut h: i32 = 0;
        for u in s.encode_utf16() {
            h = h.wrapping_mul(31).wrapping_add(u as i32);
        }
        prop_assert_eq!(tag_hash(&s), h as i64);
        prop_assert_eq!(tag_hash_bytes(s.as_bytes()), h as i64);
        let (a, b) = s.split_at(s.char_indices().nth(s.chars().count() / 2).map_or(s.len(), |(i, _)| i));
        prop_assert_eq!(java_hash_continue(java_string_hash(a), b.as_bytes()), h);
    }
}

/// Java's createCrc32 digit order: least significant digit first, '0'-padded to 10.
fn java_crc_digits(mut crc: u32) -> [u8; 10] {
    let mut d = [b'0'; 10];
    for x in &mut d {
        *x = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
    d
}

#[test]
fn prop_crc_worked_bytes_closed_properties() {
    let props = b"a\x01b\x02";
    let msg = sample("T", b"hi", props);
    let mut out = [0u8; 256];
    let plain = msg.encoded_len();
    let n = encode_record_with(&msg, 5, 0x1000, 77, true, &mut out).unwrap();
    assert_eq!(n, plain + PROP_CRC32_LEN);
    assert_eq!(n, msg.encoded_len_with(true));
    assert_eq!(PROP_CRC32_LEN, 20);
    let rec = &out[..n];
    assert_eq!(i32::from_be_bytes(rec[..4].try_into().unwrap()), n as i32);
    // The first n-20 bytes equal the plain record except TOTALSIZE and the properties length.
    let mut plain_out = [0u8; 256];
    encode_record(&msg, 5, 0x1000, 77, &mut plain_out).unwrap();
    let props_len_at = plain - props.len() - 2;
    assert_eq!(&rec[4..props_len_at], &plain_out[4..props_len_at]);
    assert_eq!(
        &rec[props_len_at..props_len_at + 2],
        &((props.len() + 20) as i16).to_be_bytes()
    );
    let crc = crc32fast::hash(&rec[..n - 20]) & 0x7FFF_FFFF;
    let mut want_tail = b"__CRC32#\x01".to_vec();
    want_tail.extend_from_slice(&java_crc_digits(crc));
    want_tail.push(0x02);
    assert_eq!(&rec[n - 20..], &want_tail[..]);
    let view = RecordView::parse_verified(rec).unwrap();
    assert_eq!(view.properties().len(), props.len() + 20);
    assert_eq!(view.verify_prop_crc(), Ok(PropCrc::Valid));
    assert_eq!(view.property("a"), Some(&b"b"[..]));
    // Value read as Java reads it (reversed digits) gives the CRC back.
    let v = view.property(properties::CRC32).unwrap();
    let mut back = 0u64;
    for &d in v.iter().rev() {
        back = back * 10 + u64::from(d - b'0');
    }
    assert_eq!(back, u64::from(crc));
}

#[test]
fn prop_crc_adds_separator_and_handles_empty_properties() {
    let msg = sample("T", b"body", b"a\x01b");
    let mut out = [0u8; 256];
    let n = encode_record_with(&msg, 0, 0, 1, true, &mut out).unwrap();
    assert_eq!(n, msg.encoded_len() + 21);
    let view = RecordView::parse_verified(&out[..n]).unwrap();
    assert_eq!(&view.properties()[..4], b"a\x01b\x02");
    assert_eq!(view.verify_prop_crc(), Ok(PropCrc::Valid));

    let msg = sample("T", b"body", b"");
    let n = encode_record_with(&msg, 0, 0, 1, true, &mut out).unwrap();
    assert_eq!(n, msg.encoded_len() + 20);
    let view = RecordView::parse_verified(&out[..n]).unwrap();
    assert_eq!(view.properties().len(), 20);
    assert_eq!(view.verify_prop_crc(), Ok(PropCrc::Valid));

    // Without the option nothing changes and the check reports absence.
    let n = encode_record_with(&msg, 0, 0, 1, false, &mut out).unwrap();
    assert_eq!(n, msg.encoded_len());
    let view = RecordView::parse_verified(&out[..n]).unwrap();
    assert_eq!(view.verify_prop_crc(), Ok(PropCrc::Absent));
}

#[test]
fn prop_crc_detects_damage_past_the_body() {
    let msg = sample("TopicX", b"body", b"KEYS\x01k1\x02");
    let mut out = [0u8; 256];
    let n = encode_record_with(&msg, 9, 4096, 5, true, &mut out).unwrap();
    let topic_at = n - 20 - 2 - msg.properties.len() - msg.topic.len();
    let mut bad = out[..n].to_vec();
    bad[topic_at] = b'U'; // still a valid topic; body CRC still passes
    let view = RecordView::parse_verified(&bad).unwrap();
    assert!(matches!(
        view.verify_prop_crc(),
        Err(RecordError::PropCrcMismatch { covered, .. }) if covered == n - 20
    ));
    // A damaged digit.
    let mut bad = out[..n].to_vec();
    bad[n - 5] = if bad[n - 5] == b'9' {
        b'0'
    } else {
        bad[n - 5] + 1
    };
    let view = RecordView::parse_verified(&bad).unwrap();
    assert!(matches!(
        view.verify_prop_crc(),
        Err(RecordError::PropCrcMismatch { .. })
    ));
    // A non-digit in the value.
    let mut bad = out[..n].to_vec();
    bad[n - 3] = 0x95;
    let view = RecordView::parse(&bad).unwrap();
    assert!(matches!(
        view.verify_prop_crc(),
        Err(RecordError::PropCrcMalformed { .. })
    ));
}

#[test]
fn prop_crc_limits_count_the_property() {
    let props = vec![b'x'; MAX_PROPERTIES_LEN - 10];
    let msg = sample("T", b"", &props);
    assert!(msg.check_limits().is_ok());
    assert_eq!(
        msg.check_limits_with(true),
        Err(RecordError::PropertiesTooLong {
            len: MAX_PROPERTIES_LEN - 10 + 21,
            max: MAX_PROPERTIES_LEN
        })
    );
    let mut out = vec![0u8; 40_000];
    assert!(encode_record_with(&msg, 0, 0, 0, true, &mut out).is_err());
    // Buffer one byte short.
    let msg = sample("T", b"b", b"");
    let mut out = vec![0u8; msg.encoded_len_with(true) - 1];
    assert_eq!(
        encode_record_with(&msg, 0, 0, 0, true, &mut out),
        Err(RecordError::BufferTooSmall {
            need: msg.encoded_len_with(true),
            have: msg.encoded_len_with(true) - 1
        })
    );
}

proptest! {
    #[test]
    fn record_crc_around_equals_the_crc_of_the_joined_bytes(
        head in proptest::collection::vec(any::<u8>(), 0..200),
        body in proptest::collection::vec(any::<u8>(), 0..10_000),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut all = head.clone();
        all.extend_from_slice(&body);
        all.extend_from_slice(&tail);
        prop_assert_eq!(
            record_crc_around(&head, crc32fast::hash(&body), body.len(), &tail),
            record_crc(&all)
        );
    }

    #[test]
    fn prop_crc_round_trips(
        topic in "[A-Za-z0-9_%-]{1,200}",
        // Past 1 KiB the encoder combines CRCs instead of reading the body twice.
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        props in proptest::collection::vec(3u8..=255, 0..100),
        qo in any::<i64>(),
        phys in any::<i64>(),
        ts in any::<i64>(),
    ) {
        let msg = sample(&topic, &body, &props);
        let len = msg.encoded_len_with(true);
        let mut out = vec![0u8; len];
        let n = encode_record_with(&msg, qo, phys, ts, true, &mut out).unwrap();
        prop_assert_eq!(n, len);
        let view = RecordView::parse_verified(&out).unwrap();
        prop_assert_eq!(view.verify_prop_crc(), Ok(PropCrc::Valid));
        prop_assert_eq!(view.body(), &body[..]);
        prop_assert_eq!(view.topic(), &topic[..]);
        prop_assert_eq!(&view.properties()[..props.len()], &props[..]);
    }
}

#[test]
fn copy_of_keeps_the_stored_fields_and_takes_the_new_place() {
    let props = b"TAGS\x01x\x02";
    let mut msg = sample("T", b"body bytes", props);
    msg.sys_flag = 0x4;
    msg.born_host = v6([1; 16], 7);
    let mut out = [0u8; 512];
    let n = encode_record(&msg, 5, 0x1000, 77, &mut out).unwrap();
    let view = RecordView::parse(&out[..n]).unwrap();
    let store = v4([10, 9, 8, 7], 10911);
    let c = MessageToStore::copy_of(&view, "OTHER", 2, b"k\x01v\x02", store);
    assert_eq!(
        (c.topic, c.queue_id, c.properties),
        ("OTHER", 2, &b"k\x01v\x02"[..])
    );
    assert_eq!(c.body, b"body bytes");
    assert_eq!(
        (c.flag, c.born_timestamp, c.born_host, c.reconsume_times),
        (7, 0x0102_0304_0506_0708, v6([1; 16], 7), 2)
    );
    assert_eq!(c.prepared_transaction_offset, 99);
    // The stored sysflag (with its host-family bit) is kept; the encoder re-derives the bits.
    assert_eq!(c.sys_flag & 0x4, 0x4);
    assert_eq!((c.store_host, c.tags_code), (store, 0));
}
