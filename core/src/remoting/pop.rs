//! POP consumption's text formats (RocketMQ 5): the receipt handle a popped message carries
//! (`extraInfo`, the `POP_CK` property), the offset lists of a POP_MESSAGE response, the pop
//! retry topic's name, and the BATCH_ACK_MESSAGE body.
//!
//! A receipt handle is eight fields separated by spaces:
//! `ckQueueOffset popTime invisibleTime reviveQid retry brokerName queueId queueOffset`,
//! where `retry` is `0` for the topic itself, `1` for the pop retry topic
//! `%RETRY%<group>_<topic>` and `2` for its 5.x form `%RETRY%<group>+<topic>`. A ninth field
//! (a retry-policy generation) may follow; it is ignored here.

use std::fmt::Write as _;

use super::RETRY_GROUP_TOPIC_PREFIX;

/// Field separator of a receipt handle (RocketMQ's `MessageConst.KEY_SEPARATOR`).
pub const KEY_SEPARATOR: char = ' ';
/// `reviveQid` of an orderly pop's handles (RocketMQ's `POP_ORDER_REVIVE_QUEUE`).
pub const ORDER_REVIVE_QID: i32 = 999;
/// Property a client puts the receipt handle in.
pub const POP_CK: &str = "POP_CK";
/// Property with the time of a message's first pop (RocketMQ's `1ST_POP_TIME`).
pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";

/// A receipt handle that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad POP receipt handle (extraInfo): {0}")]
pub struct BadReceipt(pub &'static str);

/// A parsed receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt<'a> {
    pub ck_queue_offset: i64,
    pub pop_time: i64,
    pub invisible_time: i64,
    pub revive_qid: i32,
    /// `0` topic, `1` pop retry topic (v1 name), `2` (v2 name).
    pub retry: u8,
    pub broker_name: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
}

impl<'a> Receipt<'a> {
    pub fn parse(text: &'a str) -> Result<Receipt<'a>, BadReceipt> {
        let mut it = text.split(KEY_SEPARATOR);
        let mut next =
            |what: &'static str| it.next().filter(|s| !s.is_empty()).ok_or(BadReceipt(what));
        let num = |s: &str, what: &'static str| s.parse::<i64>().map_err(|_| BadReceipt(what));
        let ck_queue_offset = num(next("no ckQueueOffset")?, "ckQueueOffset is not a number")?;
        let pop_time = num(next("no popTime")?, "popTime is not a number")?;
        let invisible_time = num(next("no invisibleTime")?, "invisibleTime is not a number")?;
        let revive_qid = num(next("no reviveQid")?, "reviveQid is not a number")?;
        let retry = match next("no retry mark")? {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            _ => return Err(BadReceipt("retry mark is not 0, 1 or 2")),
        };
        let broker_name = next("no brokerName")?;
        let queue_id = num(next("no queueId")?, "queueId is not a number")?;
        // Handles built without the message's own offset (pre-5.0) end at queueId.
        let queue_offset = match next("") {
            Ok(s) => num(s, "queueOffset is not a number")?,
            Err(_) => ck_queue_offset,
        };
        Ok(Receipt {
            ck_queue_offset,
            pop_time,
            invisible_time,
            revive_qid: i32::try_from(revive_qid)
                .map_err(|_| BadReceipt("reviveQid out of range"))?,
            retry,
            broker_name,
            queue_id: i32::try_from(queue_id).map_err(|_| BadReceipt("queueId out of range"))?,
            queue_offset,
        })
    }
}

/// The pop retry topic of (group, topic): `%RETRY%<group>_<topic>` (RocketMQ's v1 name, the
/// default while `enableRetryTopicV2` is off).
pub fn retry_topic(group: &str, topic: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}_{topic}")
}

/// The pop retry topic a handle's `retry` mark names.
pub fn real_topic(group: &str, topic: &str, retry: u8) -> String {
    match retry {
        0 => topic.to_string(),
        2 => format!("{RETRY_GROUP_TOPIC_PREFIX}{group}+{topic}"),
        _ => retry_topic(group, topic),
    }
}

/// The retry mark of a stored topic: `1` for a `%RETRY%` topic, else `0`.
pub fn retry_mark(topic: &str) -> u8 {
    u8::from(topic.starts_with(RETRY_GROUP_TOPIC_PREFIX))
}

/// Appends `<mark> <queueId> <value>` to a `;`-separated info list (startOffsetInfo,
/// orderCountInfo).
pub fn push_info(out: &mut String, topic: &str, queue_id: i32, value: i64) {
    if !out.is_empty() {
        out.push(';');
    }
    let _ = write!(out, "{} {queue_id} {value}", retry_mark(topic));
}

/// Appends `<mark> <queueId> <o1>,<o2>,...` to msgOffsetInfo.
pub fn push_offsets(out: &mut String, topic: &str, queue_id: i32, offsets: &[i64]) {
    if !out.is_empty() {
        out.push(';');
    }
    let _ = write!(out, "{} {queue_id} ", retry_mark(topic));
    for (i, o) in offsets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{o}");
    }
}

/// One entry of a BATCH_ACK_MESSAGE body: the acknowledged offsets of one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAck {
    pub consumer_group: String,
    pub topic: String,
    pub retry: u8,
    pub start_offset: i64,
    pub queue_id: i32,
    pub revive_qid: i32,
    pub pop_time: i64,
    pub invisible_time: i64,
    /// The acknowledged queue offsets (`start_offset` + each set bit).
    pub offsets: Vec<i64>,
}

/// Most entries and offsets one BATCH_ACK_MESSAGE body may carry.
pub const MAX_BATCH_ACK_OFFSETS: usize = 65_536;

/// Parses a BATCH_ACK_MESSAGE body: `{"brokerName":..,"acks":[{..}]}`, each ack with
/// fastjson's short keys (`c t r so q rq pt it b`) or the long ones. The bit set `b` is
/// `BitSet.toByteArray()`: Base64 text from the Java client, a number array from others.
pub fn parse_batch_ack(body: &[u8]) -> Result<(String, Vec<BatchAck>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("batch ack body is not JSON: {e}"))?;
    let broker = v
        .get("brokerName")
        .and_then(|b| b.as_str())
        .unwrap_or_default()
        .to_string();
    let acks = v
        .get("acks")
        .and_then(|a| a.as_array())
        .ok_or("batch ack body has no acks array")?;
    let mut out = Vec::with_capacity(acks.len().min(1024));
    let mut total = 0usize;
    for a in acks {
        let field = |short: &str, long: &str| a.get(short).or_else(|| a.get(long));
        let text = |short: &str, long: &str| -> Result<String, String> {
            match field(short, long) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(n @ serde_json::Value::Number(_)) => Ok(n.to_string()),
                _ => Err(format!("batch ack entry has no {long}")),
            }
        };
        let int = |short: &str, long: &str| -> Result<i64, String> {
            match field(short, long) {
                Some(serde_json::Value::Number(n)) => n.as_i64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("batch ack entry has no numeric {long}"))
        };
        let bytes: Vec<u8> = match field("b", "bitSet") {
            Some(serde_json::Value::String(s)) => {
                crate::base64::decode(s).map_err(|e| format!("batch ack bitSet: {e}"))?
            }
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|x| {
                    x.as_i64()
                        .filter(|n| (-128..=255).contains(n))
                        .map(|n| n as u8)
                        .ok_or("batch ack bitSet holds a non-byte")
                })
                .collect::<Result<_, _>>()?,
            Some(serde_json::Value::Null) | None => Vec::new(),
            _ => return Err("batch ack bitSet is neither Base64 nor an array".into()),
        };
        let start_offset = int("so", "startOffset")?;
        let mut offsets = Vec::new();
        for (i, byte) in bytes.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    offsets.push(start_offset + (i * 8 + bit) as i64);
                }
            }
        }
        total += offsets.len() + 1;
        if total > MAX_BATCH_ACK_OFFSETS {
            return Err(format!(
                "batch ack acknowledges more than {MAX_BATCH_ACK_OFFSETS} messages"
            ));
        }
        let retry = match text("r", "retry")?.as_str() {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            other => return Err(format!("batch ack retry mark {other:?} is not 0, 1 or 2")),
        };
        out.push(BatchAck {
            consumer_group: text("c", "consumerGroup")?,
            topic: text("t", "topic")?,
            retry,
            start_offset,
            queue_id: i32::try_from(int("q", "queueId")?).map_err(|e| e.to_string())?,
            revive_qid: i32::try_from(int("rq", "reviveQueueId")?).map_err(|e| e.to_string())?,
            pop_time: int("pt", "popTime")?,
            invisible_time: int("it", "invisibleTime")?,
            offsets,
        });
    }
    Ok((broker, out))
}

/// Builds a BATCH_ACK_MESSAGE body with the short keys and a Base64 bit set (as the Java
/// client sends it). `acks` offsets must not be below `start_offset`.
pub fn batch_ack_body(broker_name: &str, acks: &[BatchAck]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = acks
        .iter()
        .map(|a| {
            let mut bits = Vec::new();
            for &o in &a.offsets {
                let i = (o - a.start_offset) as usize;
                if bits.len() <= i / 8 {
                    bits.resize(i / 8 + 1, 0u8);
                }
                bits[i / 8] |= 1 << (i % 8);
            }
            let mut b64 = String::with_capacity(bits.len().div_ceil(3) * 4);
            for chunk in bits.chunks(3) {
                let g = crate::base64::encode_group(crate::base64::STANDARD, chunk);
                b64.extend(g.iter().map(|&c| c as char));
            }
            serde_json::json!({
                "c": a.consumer_group,
                "t": a.topic,
                "r": a.retry.to_string(),
                "so": a.start_offset,
                "q": a.queue_id,
                "rq": a.revive_qid,
                "pt": a.pop_time,
                "it": a.invisible_time,
                "b": b64,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"brokerName": broker_name, "acks": entries}))
        .expect("JSON of strings and numbers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_parse_as_rocketmq_builds_them() {
        let r = Receipt::parse("5 1700000000000 60000 0 1 broker-a 3 7").unwrap();
        assert_eq!(
            r,
            Receipt {
                ck_queue_offset: 5,
                pop_time: 1_700_000_000_000,
                invisible_time: 60_000,
                revive_qid: 0,
                retry: 1,
                broker_name: "broker-a",
                queue_id: 3,
                queue_offset: 7,
            }
        );
        // Seven fields: the message's offset is the checkpoint's.
        assert_eq!(Receipt::parse("5 1 2 0 0 b 3").unwrap().queue_offset, 5);
        // A ninth field (retry policy generation) is ignored.
        assert_eq!(Receipt::parse("5 1 2 0 0 b 3 9 4").unwrap().queue_offset, 9);
        for bad in [
            "",
            "5 1 2",
            "x 1 2 0 0 b 3 7",
            "5 1 2 0 9 b 3 7",
            "5 1 2 0 0 b q 7",
        ] {
            assert!(Receipt::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retry_topics_and_info_lists() {
        assert_eq!(retry_topic("G", "T"), "%RETRY%G_T");
        assert_eq!(real_topic("G", "T", 0), "T");
        assert_eq!(real_topic("G", "T", 1), "%RETRY%G_T");
        assert_eq!(real_topic("G", "T", 2), "%RETRY%G+T");
        let mut s = String::new();
        push_info(&mut s, "T", 2, 10);
        push_info(&mut s, "%RETRY%G_T", 0, 4);
        assert_eq!(s, "0 2 10;1 0 4");
        let mut m = String::new();
        push_offsets(&mut m, "T", 2, &[10, 12]);
        push_offsets(&mut m, "%RETRY%G_T", 0, &[4]);
        assert_eq!(m, "0 2 10,12;1 0 4");
    }

    #[test]
    fn batch_acks_round_trip_and_read_both_bit_set_forms() {
        let ack = BatchAck {
            consumer_group: "G".into(),
            topic: "T".into(),
            retry: 0,
            start_offset: 100,
            queue_id: 1,
            revive_qid: 0,
            pop_time: 5,
            invisible_time: 6,
            offsets: vec![100, 102, 109],
        };
        let body = batch_ack_body("b0", std::slice::from_ref(&ack));
        let (broker, acks) = parse_batch_ack(&body).unwrap();
        assert_eq!(broker, "b0");
        assert_eq!(acks, vec![ack.clone()]);
        // Bytes as a number array, long key names (a Rust client's serde form).
        let alt = br#"{"brokerName":"b0","acks":[{"consumerGroup":"G","topic":"T","retry":"0",
            "startOffset":100,"queueId":1,"reviveQueueId":0,"popTime":5,"invisibleTime":6,
            "bitSet":[5,2,0,0,0,0,0,0]}]}"#;
        assert_eq!(parse_batch_ack(alt).unwrap().1, vec![ack]);
        assert!(parse_batch_ack(b"{}").is_err());
        assert!(parse_batch_ack(br#"{"acks":[{"c":"G"}]}"#).is_err());
        assert!(parse_batch_ack(
            br#"{"acks":[{"c":"G","t":"T","r":"0","so":0,"q":0,"rq":0,"pt":0,"it":0,"b":"*"}]}"#
        )
        .is_err());
    }
}
