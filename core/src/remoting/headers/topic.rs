//! Topic administration on the broker (§3.13).

use crate::remoting::ext::ext_header;

ext_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request.
    pub struct CreateTopicRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub default_topic: &'a str = "defaultTopic",
        pub read_queue_nums: i32 = "readQueueNums",
        pub write_queue_nums: i32 = "writeQueueNums",
        pub perm: i32 = "perm",
        /// `SINGLE_TAG` / `MULTI_TAG`.
        pub topic_filter_type: &'a str = "topicFilterType",
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        pub order: bool = "order",
        /// 5.x: comma-separated `+key=value` / `-key`.
        pub attributes: Option<&'a str> = "attributes",
        pub force: Option<bool> = "force",
    }
}

ext_header! {
    /// DELETE_TOPIC_IN_BROKER (215) request.
    pub struct DeleteTopicRequestHeader<'a> {
        pub topic: &'a str = "topic",
    }
}

ext_header! {
    /// GET_TOPIC_CONFIG (351) / GET_TOPIC_STATS_INFO (202) request.
    pub struct TopicRequestHeader<'a> {
        pub topic: &'a str = "topic",
    }
}

ext_header! {
    /// GET_TOPIC_STATS_INFO (202) request (`mqadmin topicStatus`).
    pub struct GetTopicStatsInfoRequestHeader<'a> {
        pub topic: &'a str = "topic",
    }
}

ext_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203) request (`mqadmin consumerConnection`).
    pub struct GetConsumerConnectionListRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
    }
}

ext_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204) request (`mqadmin producerConnection`).
    pub struct GetProducerConnectionListRequestHeader<'a> {
        pub producer_group: &'a str = "producerGroup",
    }
}

ext_header! {
    /// QUERY_TOPIC_CONSUME_BY_WHO (300) request (`mqadmin topicStatus` / consumer lookups).
    pub struct QueryTopicConsumeByWhoRequestHeader<'a> {
        pub topic: &'a str = "topic",
    }
}

ext_header! {
    /// QUERY_TOPICS_BY_CONSUMER (343) request.
    pub struct QueryTopicsByConsumerRequestHeader<'a> {
        pub group: &'a str = "group",
    }
}

ext_header! {
    /// CLONE_GROUP_OFFSET (314) request (`mqadmin cloneGroupOffset`): `topic` absent = every
    /// topic the source group has offsets on; `offline` = copy even topics the source group's
    /// online members do not subscribe to.
    pub struct CloneGroupOffsetRequestHeader<'a> {
        pub src_group: &'a str = "srcGroup",
        pub dest_group: &'a str = "destGroup",
        pub topic: Option<&'a str> = "topic",
        pub offline: Option<bool> = "offline",
    }
}

ext_header! {
    /// GET_BROKER_CONFIG (26) response: the configuration's DataVersion as JSON (the body is
    /// the configuration, `key=value` lines).
    pub struct GetBrokerConfigResponseHeader<'a> {
        pub version: &'a str = "version",
    }
}

ext_header! {
    /// QUERY_CONSUME_QUEUE (321, `mqadmin queryCq`): `count` units of (topic, queue) from
    /// `index`, checked against `consumerGroup`'s subscription when given.
    pub struct QueryConsumeQueueRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub index: i64 = "index",
        pub count: i32 = "count",
        pub consumer_group: Option<&'a str> = "consumerGroup",
    }
}

ext_header! {
    /// QUERY_CONSUME_TIME_SPAN (303): per queue of `topic`, the store times `group` is between.
    pub struct QueryConsumeTimeSpanRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub group: &'a str = "group",
    }
}

ext_header! {
    /// GET_BROKER_CONSUME_STATS (317, `mqadmin brokerConsumeStats`): every group's consume
    /// stats on the broker, of ordered topics only with `isOrder`.
    pub struct GetConsumeStatsInBrokerHeader {
        pub is_order: bool = "isOrder",
    }
}

ext_header! {
    /// QUERY_SUBSCRIPTION_BY_CONSUMER (345): the subscription of `group` to `topic`.
    pub struct QuerySubscriptionByConsumerRequestHeader<'a> {
        pub group: &'a str = "group",
        pub topic: &'a str = "topic",
    }
}
