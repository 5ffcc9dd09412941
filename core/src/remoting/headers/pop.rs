//! RocketMQ 5 POP consumption: POP_MESSAGE (200050), ACK_MESSAGE (200051),
//! CHANGE_MESSAGE_INVISIBLETIME (200053). The bodies of BATCH_ACK_MESSAGE (200151) are in
//! `body::pop`; the receipt handle (`extraInfo`) format is in `remoting::pop`.

use crate::remoting::ext::ext_header;

ext_header! {
    /// POP_MESSAGE request. `queueId` -1: any readable queue of the topic on this broker.
    pub struct PopMessageRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub max_msg_nums: i32 = "maxMsgNums",
        /// How long popped messages stay invisible to other pops, ms.
        pub invisible_time: i64 = "invisibleTime",
        /// How long to hold the request when nothing is there, ms (0: answer at once).
        pub poll_time: i64 = "pollTime",
        pub born_time: i64 = "bornTime",
        /// Where a group without an offset starts: 0 = the queue's min, 1 = its max.
        pub init_mode: i32 = "initMode",
        pub exp_type: Option<&'a str> = "expType",
        pub exp: Option<&'a str> = "exp",
        pub order: Option<bool> = "order",
        pub attempt_id: Option<&'a str> = "attemptId",
    }
}

ext_header! {
    /// POP_MESSAGE response. The three `*Info` fields are `;`-separated lists of
    /// `<retry mark> <queueId> <value>` (see `remoting::pop`).
    pub struct PopMessageResponseHeader<'a> {
        pub pop_time: i64 = "popTime",
        pub invisible_time: i64 = "invisibleTime",
        pub revive_qid: i32 = "reviveQid",
        /// Messages left after this pop in the queues it looked at.
        pub rest_num: i64 = "restNum",
        pub start_offset_info: Option<&'a str> = "startOffsetInfo",
        pub msg_offset_info: Option<&'a str> = "msgOffsetInfo",
        pub order_count_info: Option<&'a str> = "orderCountInfo",
    }
}

ext_header! {
    /// ACK_MESSAGE request: `topic` is the real topic (the pop retry topic for a retried
    /// message), `offset` the message's queue offset, `extraInfo` its receipt handle.
    pub struct AckMessageRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub extra_info: &'a str = "extraInfo",
        pub offset: i64 = "offset",
    }
}

ext_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME request.
    pub struct ChangeInvisibleTimeRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub extra_info: &'a str = "extraInfo",
        pub offset: i64 = "offset",
        pub invisible_time: i64 = "invisibleTime",
    }
}

ext_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME response: the new pop time goes into the new handle.
    pub struct ChangeInvisibleTimeResponseHeader {
        pub pop_time: i64 = "popTime",
        pub invisible_time: i64 = "invisibleTime",
        pub revive_qid: i32 = "reviveQid",
    }
}

ext_header! {
    /// NOTIFICATION (200054): whether (topic, queue; -1 any) holds messages the group would
    /// pop, waiting up to `pollTime` ms for one.
    pub struct NotificationRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub poll_time: i64 = "pollTime",
        pub born_time: i64 = "bornTime",
        pub order: Option<bool> = "order",
        pub attempt_id: Option<&'a str> = "attemptId",
    }
}

ext_header! {
    /// NOTIFICATION answer.
    pub struct NotificationResponseHeader {
        pub has_msg: bool = "hasMsg",
        /// Too many requests parked already: ask again later.
        pub polling_full: bool = "pollingFull",
    }
}

ext_header! {
    /// POLLING_INFO (200055): how many pops of the group wait on (topic, queue).
    pub struct PollingInfoRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
    }
}

ext_header! {
    /// POLLING_INFO answer.
    pub struct PollingInfoResponseHeader {
        pub polling_num: i32 = "pollingNum",
    }
}

ext_header! {
    /// PEEK_MESSAGE (200052): up to `maxMsgNums` messages the group would pop next, popping
    /// nothing. Answered with a PopMessageResponseHeader (`restNum`).
    pub struct PeekMessageRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub max_msg_nums: i32 = "maxMsgNums",
    }
}
