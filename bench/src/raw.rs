//! The load generator's own send and pull loops, straight on the RocketMQ remoting protocol
//! (`--client raw`, the default).
//!
//! The full client library (`--client full`) builds a `Message` per message, a `UNIQ_KEY`
//! string per message, a properties string and a `MessageExt` with owned strings per pulled
//! message. At millions of messages per second that work costs more than the broker's, and the
//! generator, not the broker, sets the ceiling. Here a batch body is encoded once
//! ([`BatchTemplate`]); each request only patches, in place, the 8-byte time stamp at the
//! start of every body and the counter part of every `UNIQ_KEY`, so the bytes on the wire are
//! what a Java producer sends (one distinct `UNIQ_KEY` per message) while the generator
//! allocates per request, never per message. Pulled records are read in place
//! ([`for_each_record`]) without decoding them into owned messages.

use std::cell::Cell;

use ramjet_core::acl::{Signer, ACCESS_KEY, SIGNATURE};
use ramjet_core::record::sysflag::TRANSACTION_PREPARED_TYPE;
use ramjet_core::record::{decode_offset_msg_id, RecordView};
use ramjet_core::remoting::headers::{
    EndTransactionRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use ramjet_core::remoting::{
    decode_command, encode_frame, CodecLimits, CommandView, EncodeError, EncodeHeader, FrameHead,
    RequestCode, ResponseCode, SerializeType,
};
use ramjet_net::client::message::{encode_batch, encode_properties, prop};
use ramjet_net::client::{Client, ClientError, Message, MessageQueue};

use crate::args::Delay;

/// Hex digits of a `UNIQ_KEY` (16 bytes).
const UNIQ_KEY_HEX: usize = 32;
/// Hex digits at the end of each `UNIQ_KEY` that the template rewrites per message.
const COUNTER_HEX: usize = 12;
/// Topic the broker may create the bench topic from (RocketMQ's `TBW102`).
const DEFAULT_TOPIC: &str = "TBW102";
/// Queues of an auto-created topic.
const DEFAULT_TOPIC_QUEUES: i32 = 4;
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// One request's body, encoded once, with the places that change per message.
pub struct BatchTemplate {
    /// SEND_BATCH_MESSAGE body, or the single message's body.
    body: Vec<u8>,
    /// For a single message: the properties string of the request header.
    props: Vec<u8>,
    /// Body offsets of every message's 8-byte stamp (empty when bodies are under 8 bytes).
    stamps: Vec<usize>,
    /// Offsets, in `body` (batch) or `props` (single), of every message's counter digits.
    counters: Vec<usize>,
    batch: bool,
    /// Next counter value (unique per template; the id prefix holds the producer's number).
    next: u64,
    /// Body bytes of one message.
    size: usize,
    /// Half messages (sysflag PREPARED), ended by END_TRANSACTION after each answer.
    transactional: bool,
}

impl BatchTemplate {
    /// `id_prefix`: 20 uppercase hex digits (address, pid and instance of a `UNIQ_KEY`).
    /// `delay`: property `DELAY` or `TIMER_DELAY_MS` on every message.
    pub fn new(
        topic: &str,
        count: usize,
        size: usize,
        id_prefix: &str,
        delay: Option<Delay>,
    ) -> Result<Self, ClientError> {
        Self::new_with(topic, count, size, id_prefix, delay, None)
    }

    /// [`BatchTemplate::new`]; with `transaction_group`, a half message of that producer
    /// group (`TRAN_MSG=true`, `PGROUP`, sysflag PREPARED): single messages only.
    pub fn new_with(
        topic: &str,
        count: usize,
        size: usize,
        id_prefix: &str,
        delay: Option<Delay>,
        transaction_group: Option<&str>,
    ) -> Result<Self, ClientError> {
        assert!(count >= 1, "a request carries at least one message");
        assert!(
            transaction_group.is_none() || count == 1,
            "transactional messages are sent one per request"
        );
        assert_eq!(id_prefix.len(), UNIQ_KEY_HEX - COUNTER_HEX);
        let placeholder = format!("{id_prefix}{}", "0".repeat(COUNTER_HEX));
        let body_bytes = vec![b'x'; size];
        let msgs: Vec<Message> = (0..count)
            .map(|_| {
                let mut m = Message::new(topic, body_bytes.clone());
                m.set_property(prop::UNIQ_KEY, placeholder.clone());
                if let Some(group) = transaction_group {
                    m.set_property(prop::TRAN_MSG, "true");
                    m.set_property(prop::PGROUP, group);
                }
                match delay {
                    Some(d) => d.apply(m),
                    None => m,
                }
            })
            .collect();
        let mut t = BatchTemplate {
            body: Vec::new(),
            props: Vec::new(),
            stamps: Vec::with_capacity(count),
            counters: Vec::with_capacity(count),
            batch: count > 1,
            next: 0,
            size,
            transactional: transaction_group.is_some(),
        };
        let key = format!("{}\u{1}", prop::UNIQ_KEY);
        if t.batch {
            let mut out = bytes::BytesMut::new();
            encode_batch(&msgs, &mut out)?;
            t.body = out.to_vec();
            // Walk the entries: total(4) magic(4) crc(4) flag(4) body_len(4) body
            // props_len(2) props.
            let mut pos = 0;
            while pos < t.body.len() {
                let total = be_u32(&t.body[pos..]) as usize;
                let body_len = be_u32(&t.body[pos + 16..]) as usize;
                let body_at = pos + 20;
                if body_len >= 8 {
                    t.stamps.push(body_at);
                }
                let props_at = body_at + body_len + 2;
                let props = &t.body[props_at..pos + total];
                let v = find(props, key.as_bytes()).expect("template has a UNIQ_KEY") + key.len();
                t.counters.push(props_at + v + UNIQ_KEY_HEX - COUNTER_HEX);
                pos += total;
            }
        } else {
            t.body = body_bytes;
            if size >= 8 {
                t.stamps.push(0);
            }
            let mut props = String::new();
            encode_properties(&msgs[0].properties, &mut props);
            t.props = props.into_bytes();
            let v = find(&t.props, key.as_bytes()).expect("template has a UNIQ_KEY") + key.len();
            t.counters.push(v + UNIQ_KEY_HEX - COUNTER_HEX);
        }
        assert_eq!(t.counters.len(), count);
        Ok(t)
    }

    /// Stamps every body with `stamp_us` and gives every message the next unique id.
    pub fn prepare(&mut self, stamp_us: u64) {
        let stamp = stamp_us.to_be_bytes();
        for &at in &self.stamps {
            self.body[at..at + 8].copy_from_slice(&stamp);
        }
        let buf = if self.batch {
            &mut self.body
        } else {
            &mut self.props
        };
        for &at in &self.counters {
            let mut v = self.next;
            for i in (0..COUNTER_HEX).rev() {
                buf[at + i] = HEX_UPPER[(v & 0xf) as usize];
                v >>= 4;
            }
            self.next += 1;
        }
    }

    pub fn is_batch(&self) -> bool {
        self.batch
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The header's properties (single message only).
    pub fn properties(&self) -> Option<&str> {
        if self.batch {
            None
        } else {
            // Built from `encode_properties` and patched with ASCII hex only.
            std::str::from_utf8(&self.props).ok()
        }
    }

    pub fn messages(&self) -> usize {
        self.counters.len()
    }

    /// Message body bytes of one request (what the report counts as bytes).
    pub fn payload_bytes(&self) -> usize {
        self.size * self.counters.len()
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The 20-digit prefix of this producer's `UNIQ_KEY`s: the client's address, pid and instance
/// digits, with the producer's number in the last two.
pub fn id_prefix(client: &Client, producer: usize) -> String {
    let id = client.uniq_ids().next_id();
    let base = &id[..UNIQ_KEY_HEX - COUNTER_HEX - 2];
    format!("{base}{:02X}", producer as u8)
}

/// ACL credentials of the raw loops (`--access-key`, `--secret-key`).
pub struct Signing {
    pub access_key: String,
    signer: Signer,
    /// Frames as large as any the loops send (a batch body included).
    limits: CodecLimits,
}

impl Signing {
    pub fn new(access_key: &str, secret_key: &str) -> Signing {
        Signing {
            access_key: access_key.to_string(),
            signer: Signer::new(secret_key),
            limits: CodecLimits {
                max_frame_bytes: usize::MAX / 2,
                max_body_bytes: usize::MAX / 2,
                max_batch_count: usize::MAX / 2,
            },
        }
    }
}

/// Appends a request, signed when `signing` is given. Signing encodes the frame with its
/// `AccessKey`, reads the fields back in place to sign them (what the broker will do), and
/// encodes it again with the `Signature`: no allocation with binary headers.
pub fn encode_request<H: EncodeHeader + ?Sized>(
    out: &mut Vec<u8>,
    serialize: SerializeType,
    head: &FrameHead<'_>,
    header: &H,
    body: &[u8],
    signing: Option<&Signing>,
) -> Result<(), EncodeError> {
    let Some(s) = signing else {
        return encode_frame(out, serialize, head, header, body).map(|_| ());
    };
    let start = out.len();
    let ak = [(ACCESS_KEY, s.access_key.as_str())];
    encode_frame(out, serialize, head, &(header, ak), body)?;
    let sig = decode_command(&out[start + 4..], &s.limits)
        .ok()
        .and_then(|view| s.signer.sign(view.ext.iter(), view.body).ok());
    out.truncate(start);
    let Some(sig) = sig else {
        // Cannot happen for frames this encoder wrote (at most a few dozen fields); sent
        // unsigned, the broker answers with the reason.
        return encode_frame(out, serialize, head, &(header, ak), body).map(|_| ());
    };
    let signed = [
        (ACCESS_KEY, s.access_key.as_str()),
        (SIGNATURE, sig.as_str()),
    ];
    encode_frame(out, serialize, head, &(header, signed), body).map(|_| ())
}

/// Request code and header of one send of `t` to `mq`.
pub fn send_header<'a>(
    group: &'a str,
    mq: &'a MessageQueue,
    t: &'a BatchTemplate,
    born_ms: i64,
) -> (i32, SendMessageRequestHeader<'a>) {
    let header = SendMessageRequestHeader {
        producer_group: group,
        topic: &mq.topic,
        default_topic: DEFAULT_TOPIC,
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUES,
        queue_id: mq.queue_id,
        sys_flag: if t.transactional {
            TRANSACTION_PREPARED_TYPE
        } else {
            0
        },
        born_timestamp: born_ms,
        flag: 0,
        properties: t.properties(),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: t.is_batch().then_some(true),
        broker_name: Some(&mq.broker_name),
    };
    let code = if t.is_batch() {
        RequestCode::SEND_BATCH_MESSAGE
    } else {
        RequestCode::SEND_MESSAGE_V2
    };
    (code, header)
}

/// Appends the END_TRANSACTION (oneway) that ends the half message `answer` acknowledged:
/// its offsets come from the answer's `msgId` (offset id) and `queueOffset`. Returns false
/// (nothing appended) when the answer does not name them.
pub fn end_transaction(
    out: &mut Vec<u8>,
    serialize: SerializeType,
    opaque: i32,
    group: &str,
    answer: &CommandView<'_>,
    state: i32,
    signing: Option<&Signing>,
) -> bool {
    let Ok(h) = answer.decode_header::<SendMessageResponseHeader>() else {
        return false;
    };
    let Ok((_, commit_log_offset)) = decode_offset_msg_id(h.msg_id) else {
        return false;
    };
    let header = EndTransactionRequestHeader {
        producer_group: group,
        tran_state_table_offset: h.queue_offset,
        commit_log_offset,
        commit_or_rollback: state,
        from_transaction_check: Some(false),
        msg_id: h.msg_id,
        transaction_id: None,
        topic: None,
        broker_name: None,
    };
    let head = FrameHead::oneway(RequestCode::END_TRANSACTION, opaque);
    encode_request(out, serialize, &head, &header, &[], signing).is_ok()
}

/// What a send's answer means for the report.
pub fn send_ok(code: i32) -> bool {
    code == ResponseCode::SUCCESS
}

/// Calls `f(body, born_timestamp_ms)` for every stored record in a pull response body.
/// Returns the number of records; a malformed record ends the walk (and is counted in `bad`).
pub fn for_each_record(buf: &[u8], bad: &Cell<u64>, mut f: impl FnMut(&[u8], i64)) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while pos + 4 <= buf.len() {
        let total = be_u32(&buf[pos..]) as usize;
        if total == 0 || pos + total > buf.len() {
            bad.set(bad.get() + 1);
            break;
        }
        match RecordView::parse(&buf[pos..pos + total]) {
            Ok(v) => f(v.body(), v.born_timestamp()),
            Err(_) => {
                bad.set(bad.get() + 1);
                break;
            }
        }
        n += 1;
        pos += total;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramjet_core::record::{decode_batch, properties};
    use std::collections::HashSet;

    const PREFIX: &str = "7F00000112340000ABCD";

    #[test]
    fn signed_requests_pass_the_brokers_acl_check_and_unsigned_ones_do_not() {
        let policy = ramjet_net::broker::acl::AclPolicy::parse(
            "accounts:\n  - {accessKey: bench0001, secretKey: bench-secret, \
             defaultTopicPerm: PUB, defaultGroupPerm: SUB}\n",
        )
        .unwrap();
        let mq = MessageQueue::new("T", "b-s0", 1);
        let peer = "127.0.0.1".parse().unwrap();
        for serialize in [SerializeType::RocketMq, SerializeType::Json] {
            for (t, good) in [
                (
                    BatchTemplate::new("T", 10, 100, PREFIX, None).unwrap(),
                    true,
                ),
                (BatchTemplate::new("T", 1, 100, PREFIX, None).unwrap(), true),
                (
                    BatchTemplate::new("T", 1, 100, PREFIX, None).unwrap(),
                    false,
                ),
            ] {
                let (code, header) = send_header("pg", &mq, &t, 1_700_000_000_000);
                let signing = Signing::new("bench0001", if good { "bench-secret" } else { "x" });
                let mut out = b"earlier bytes".to_vec();
                let head = FrameHead::request(code, 9);
                encode_request(
                    &mut out,
                    serialize,
                    &head,
                    &header.v2(),
                    t.body(),
                    Some(&signing),
                )
                .unwrap();
                let view = decode_command(&out[13 + 4..], &CodecLimits::default()).unwrap();
                assert_eq!(view.body, t.body());
                assert_eq!(view.ext_get("b"), Some("T"));
                let r = policy.check(peer, &view);
                assert_eq!(
                    r.is_ok(),
                    good,
                    "{serialize:?} batch {}: {r:?}",
                    t.is_batch()
                );
            }
        }
    }

    #[test]
    fn batch_template_is_a_valid_batch_with_stamps_and_distinct_ids() {
        let mut t = BatchTemplate::new("T", 50, 100, PREFIX, None).unwrap();
        assert!(t.is_batch());
        assert_eq!(t.messages(), 50);
        let mut seen = HashSet::new();
        for round in 0..3u64 {
            t.prepare(1_000_000 + round);
            let mut n = 0;
            for item in decode_batch(t.body()) {
                let item = item.unwrap();
                assert_eq!(item.body.len(), 100);
                assert_eq!(&item.body[..8], &(1_000_000 + round).to_be_bytes());
                assert!(item.body[8..].iter().all(|&b| b == b'x'));
                let id = properties::get_str(item.properties, "UNIQ_KEY").unwrap();
                assert_eq!(id.len(), 32);
                assert!(id.starts_with(PREFIX));
                assert!(seen.insert(id.to_string()), "duplicate id {id}");
                n += 1;
            }
            assert_eq!(n, 50);
        }
        assert_eq!(seen.len(), 150);
        assert!(seen.contains(&format!("{PREFIX}{:012X}", 149)));
    }

    #[test]
    fn single_template_carries_its_id_in_the_header_properties() {
        let mut t = BatchTemplate::new("T", 1, 16, PREFIX, None).unwrap();
        assert!(!t.is_batch());
        t.prepare(42);
        assert_eq!(&t.body()[..8], &42u64.to_be_bytes());
        let p = t.properties().unwrap();
        assert_eq!(
            properties::get_str(p.as_bytes(), "UNIQ_KEY"),
            Some(format!("{PREFIX}{:012X}", 0).as_str())
        );
        t.prepare(43);
        assert_eq!(
            properties::get_str(t.properties().unwrap().as_bytes(), "UNIQ_KEY"),
            Some(format!("{PREFIX}{:012X}", 1).as_str())
        );
    }

    #[test]
    fn a_delayed_template_carries_the_level() {
        let mut t = BatchTemplate::new("T", 1, 16, PREFIX, Some(Delay::Level(3))).unwrap();
        t.prepare(1);
        let p = t.properties().unwrap();
        assert_eq!(properties::get_str(p.as_bytes(), "DELAY"), Some("3"));
        assert!(properties::get_str(p.as_bytes(), "UNIQ_KEY").is_some());
        let mut t = BatchTemplate::new("T", 1, 16, PREFIX, Some(Delay::TimerMs(1500))).unwrap();
        t.prepare(1);
        let p = t.properties().unwrap();
        assert_eq!(
            properties::get_str(p.as_bytes(), "TIMER_DELAY_MS"),
            Some("1500")
        );
        assert_eq!(properties::get_str(p.as_bytes(), "DELAY"), None);
    }

    #[test]
    fn small_bodies_get_no_stamp() {
        let mut t = BatchTemplate::new("T", 3, 4, PREFIX, None).unwrap();
        t.prepare(7);
        for item in decode_batch(t.body()) {
            assert_eq!(item.unwrap().body, b"xxxx");
        }
    }

    #[test]
    fn record_walk_counts_and_stops_at_garbage() {
        use ramjet_core::record::{encode_record, MessageToStore};
        let mut buf = Vec::new();
        for i in 0..3u8 {
            let body = [i; 12];
            let m = MessageToStore {
                topic: "T",
                queue_id: 0,
                flag: 0,
                body: &body,
                properties: b"",
                sys_flag: 0,
                born_timestamp: 1000 + i64::from(i),
                born_host: "127.0.0.1:1".parse().unwrap(),
                store_host: "127.0.0.1:2".parse().unwrap(),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                tags_code: 0,
            };
            let start = buf.len();
            buf.resize(start + 4096, 0);
            let n = encode_record(&m, 0, 0, 0, &mut buf[start..]).unwrap();
            buf.truncate(start + n);
        }
        let bad = Cell::new(0);
        let mut got = Vec::new();
        assert_eq!(for_each_record(&buf, &bad, |b, ts| got.push((b[0], ts))), 3);
        assert_eq!(got, vec![(0, 1000), (1, 1001), (2, 1002)]);
        assert_eq!(bad.get(), 0);
        buf.extend_from_slice(&[0, 0, 0, 99, 1, 2]);
        assert_eq!(for_each_record(&buf, &bad, |_, _| {}), 3);
        assert_eq!(bad.get(), 1);
    }
}
