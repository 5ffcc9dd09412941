//! QUERY_MESSAGE (12), VIEW_MESSAGE_BY_ID (33), CONSUMER_SEND_MSG_BACK (36), spec §3.7, §3.12.

use crate::remoting::ext::ext_header;

ext_header! {
    /// QUERY_MESSAGE request. `_UNIQUE_KEY_QUERY` = true: `key` is a UNIQ_KEY.
    pub struct QueryMessageRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub key: &'a str = "key",
        pub max_num: i32 = "maxNum",
        pub begin_timestamp: i64 = "beginTimestamp",
        pub end_timestamp: i64 = "endTimestamp",
        pub unique_key_query: Option<bool> = "_UNIQUE_KEY_QUERY",
    }
}

ext_header! {
    /// QUERY_MESSAGE response header.
    pub struct QueryMessageResponseHeader {
        pub index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        pub index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

ext_header! {
    /// VIEW_MESSAGE_BY_ID request: CommitLog physical offset.
    pub struct ViewMessageRequestHeader<'a> {
        pub offset: i64 = "offset",
        pub topic: Option<&'a str> = "topic",
    }
}

ext_header! {
    /// CONSUMER_SEND_MSG_BACK request.
    pub struct ConsumerSendMsgBackRequestHeader<'a> {
        /// CommitLog physical offset of the failed message.
        pub offset: i64 = "offset",
        pub group: &'a str = "group",
        /// 0 = broker chooses (3 + reconsumeTimes); < 0 = DLQ; > 0 = that level.
        pub delay_level: i32 = "delayLevel",
        pub origin_msg_id: Option<&'a str> = "originMsgId",
        pub origin_topic: Option<&'a str> = "originTopic",
        pub unit_mode: Option<bool> = "unitMode",
        pub max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        pub broker_name: Option<&'a str> = "bname",
    }
}
