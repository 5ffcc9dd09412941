//! SEND_MESSAGE (10, long key names), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320)
//! (one-letter key names `a`..`n`): one normalised header (spec §3.1).

use crate::remoting::codes::RequestCode;
use crate::remoting::command::CommandView;
use crate::remoting::error::HeaderError;
use crate::remoting::ext::{ext_header, EncodeHeader, ExtValue, ExtWriter};

/// The send header, whichever key style it came in. Borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendMessageRequestHeader<'a> {
    pub producer_group: &'a str,
    pub topic: &'a str,
    /// Auto-create template topic, normally `TBW102`.
    pub default_topic: &'a str,
    pub default_topic_queue_nums: i32,
    /// Negative: the broker picks a writable queue.
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub flag: i32,
    /// RocketMQ properties string (name 0x01 value 0x02 ...).
    pub properties: Option<&'a str>,
    pub reconsume_times: Option<i32>,
    pub unit_mode: Option<bool>,
    pub max_reconsume_times: Option<i32>,
    pub batch: Option<bool>,
    /// 5.x `bname` / V2 `n`.
    pub broker_name: Option<&'a str>,
}

const FIELDS: usize = 14;
/// V1 key, V2 key, and the name used in errors about the V2 key.
const KEYS: [(&str, &str, &str); FIELDS] = [
    ("producerGroup", "a", "a (producerGroup)"),
    ("topic", "b", "b (topic)"),
    ("defaultTopic", "c", "c (defaultTopic)"),
    ("defaultTopicQueueNums", "d", "d (defaultTopicQueueNums)"),
    ("queueId", "e", "e (queueId)"),
    ("sysFlag", "f", "f (sysFlag)"),
    ("bornTimestamp", "g", "g (bornTimestamp)"),
    ("flag", "h", "h (flag)"),
    ("properties", "i", "i (properties)"),
    ("reconsumeTimes", "j", "j (reconsumeTimes)"),
    ("unitMode", "k", "k (unitMode)"),
    ("maxReconsumeTimes", "l", "l (maxReconsumeTimes)"),
    ("batch", "m", "m (batch)"),
    ("bname", "n", "n (bname)"),
];

fn index_v2(k: &str) -> Option<usize> {
    match k.as_bytes() {
        [c @ b'a'..=b'n'] => Some(usize::from(c - b'a')),
        _ => None,
    }
}

fn index_v1(k: &str) -> Option<usize> {
    Some(match k {
        "producerGroup" => 0,
        "topic" => 1,
        "defaultTopic" => 2,
        "defaultTopicQueueNums" => 3,
        "queueId" => 4,
        "sysFlag" => 5,
        "bornTimestamp" => 6,
        "flag" => 7,
        "properties" => 8,
        "reconsumeTimes" => 9,
        "unitMode" => 10,
        "maxReconsumeTimes" => 11,
        "batch" => 12,
        "bname" => 13,
        _ => return None,
    })
}

impl<'a> SendMessageRequestHeader<'a> {
    /// Whether requests with `code` use the one-letter (V2) keys.
    pub fn uses_v2(code: i32) -> bool {
        matches!(
            code,
            RequestCode::SEND_MESSAGE_V2
                | RequestCode::SEND_BATCH_MESSAGE
                | RequestCode::SEND_REPLY_MESSAGE_V2
        )
    }

    /// Decodes by the request's code: V2 keys for 310/320/325, V1 keys otherwise.
    pub fn decode(view: &'a CommandView<'_>) -> Result<Self, HeaderError> {
        if Self::uses_v2(view.code) {
            Self::decode_v2(view.ext.iter())
        } else {
            Self::decode_v1(view.ext.iter())
        }
    }

    /// From long key names (SendMessageRequestHeader).
    pub fn decode_v1<I: Iterator<Item = (&'a str, &'a str)>>(ext: I) -> Result<Self, HeaderError> {
        Self::decode_with(ext, index_v1, false)
    }

    /// From one-letter key names (SendMessageRequestHeaderV2).
    pub fn decode_v2<I: Iterator<Item = (&'a str, &'a str)>>(ext: I) -> Result<Self, HeaderError> {
        Self::decode_with(ext, index_v2, true)
    }

    fn decode_with<I: Iterator<Item = (&'a str, &'a str)>>(
        ext: I,
        index: fn(&str) -> Option<usize>,
        v2: bool,
    ) -> Result<Self, HeaderError> {
        let mut raw: [Option<&'a str>; FIELDS] = [None; FIELDS];
        for (k, v) in ext {
            if let Some(i) = index(k) {
                raw[i] = Some(v);
            }
        }
        let name = |i: usize| if v2 { KEYS[i].2 } else { KEYS[i].0 };
        fn get<'a, T: ExtValue<'a>>(
            raw: Option<&'a str>,
            field: &'static str,
        ) -> Result<T, HeaderError> {
            match raw {
                Some(v) => T::parse(field, v),
                None => T::absent(field),
            }
        }
        Ok(SendMessageRequestHeader {
            producer_group: get(raw[0], name(0))?,
            topic: get(raw[1], name(1))?,
            default_topic: get(raw[2], name(2))?,
            default_topic_queue_nums: get(raw[3], name(3))?,
            queue_id: get(raw[4], name(4))?,
            sys_flag: get(raw[5], name(5))?,
            born_timestamp: get(raw[6], name(6))?,
            flag: get(raw[7], name(7))?,
            properties: get(raw[8], name(8))?,
            reconsume_times: get(raw[9], name(9))?,
            unit_mode: get(raw[10], name(10))?,
            max_reconsume_times: get(raw[11], name(11))?,
            batch: get(raw[12], name(12))?,
            broker_name: get(raw[13], name(13))?,
        })
    }

    fn encode_with(&self, w: &mut ExtWriter<'_>, v2: bool) {
        let k = |i: usize| if v2 { KEYS[i].1 } else { KEYS[i].0 };
        w.put_str(k(0), self.producer_group);
        w.put_str(k(1), self.topic);
        w.put_str(k(2), self.default_topic);
        w.put_i32(k(3), self.default_topic_queue_nums);
        w.put_i32(k(4), self.queue_id);
        w.put_i32(k(5), self.sys_flag);
        w.put_i64(k(6), self.born_timestamp);
        w.put_i32(k(7), self.flag);
        self.properties.put(k(8), w);
        self.reconsume_times.put(k(9), w);
        self.unit_mode.put(k(10), w);
        self.max_reconsume_times.put(k(11), w);
        self.batch.put(k(12), w);
        self.broker_name.put(k(13), w);
    }

    /// Encoder with long key names (code 10).
    pub fn v1(&self) -> SendHeaderV1<'_, 'a> {
        SendHeaderV1(self)
    }

    /// Encoder with one-letter key names (codes 310, 320).
    pub fn v2(&self) -> SendHeaderV2<'_, 'a> {
        SendHeaderV2(self)
    }
}

/// [`SendMessageRequestHeader`] written with V1 (long) keys.
pub struct SendHeaderV1<'h, 'a>(pub &'h SendMessageRequestHeader<'a>);
/// [`SendMessageRequestHeader`] written with V2 (one-letter) keys.
pub struct SendHeaderV2<'h, 'a>(pub &'h SendMessageRequestHeader<'a>);

impl EncodeHeader for SendHeaderV1<'_, '_> {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        self.0.encode_with(w, false)
    }
}

impl EncodeHeader for SendHeaderV2<'_, '_> {
    fn encode_ext(&self, w: &mut ExtWriter<'_>) {
        self.0.encode_with(w, true)
    }
}

/// Region reported when none is configured (BrokerConfig `regionId`).
pub const DEFAULT_MSG_REGION: &str = "DefaultRegion";

ext_header! {
    /// SEND_MESSAGE response. Java 5.x reads `MSG_REGION`/`TRACE_ON` from the ext map.
    pub struct SendMessageResponseHeader<'a> {
        /// Offset message id; for a batch, all ids joined with `,`.
        pub msg_id: &'a str = "msgId",
        pub queue_id: i32 = "queueId",
        pub queue_offset: i64 = "queueOffset",
        pub transaction_id: Option<&'a str> = "transactionId",
        pub batch_uniq_id: Option<&'a str> = "batchUniqId",
        pub msg_region: Option<&'a str> = "MSG_REGION",
        pub trace_on: Option<&'a str> = "TRACE_ON",
        /// 5.3: a timer message's recall handle (see `remoting::recall`).
        pub recall_handle: Option<&'a str> = "recallHandle",
    }
}

ext_header! {
    /// RECALL_MESSAGE (370) request: recall a timer message before its time.
    pub struct RecallMessageRequestHeader<'a> {
        pub producer_group: Option<&'a str> = "producerGroup",
        pub topic: &'a str = "topic",
        pub recall_handle: &'a str = "recallHandle",
    }
}

ext_header! {
    /// RECALL_MESSAGE response: the recalled message's id (its UNIQ_KEY).
    pub struct RecallMessageResponseHeader<'a> {
        pub msg_id: &'a str = "msgId",
    }
}

ext_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326, broker -> requesting producer): a reply sent with
    /// SEND_REPLY_MESSAGE(_V2), its body the reply's body. Hosts are `ip:port` text.
    pub struct ReplyMessageRequestHeader<'a> {
        pub producer_group: &'a str = "producerGroup",
        pub topic: &'a str = "topic",
        pub default_topic: &'a str = "defaultTopic",
        pub default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        pub queue_id: i32 = "queueId",
        pub sys_flag: i32 = "sysFlag",
        pub born_timestamp: i64 = "bornTimestamp",
        pub flag: i32 = "flag",
        pub properties: Option<&'a str> = "properties",
        pub reconsume_times: Option<i32> = "reconsumeTimes",
        pub unit_mode: Option<bool> = "unitMode",
        pub born_host: &'a str = "bornHost",
        pub store_host: &'a str = "storeHost",
        pub store_timestamp: i64 = "storeTimestamp",
    }
}
