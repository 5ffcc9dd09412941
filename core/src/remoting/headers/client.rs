//! Client management headers: UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
//! NOTIFY_CONSUMER_IDS_CHANGED (40), GET_CONSUMER_RUNNING_INFO (307).

use crate::remoting::ext::ext_header;

ext_header! {
    /// UNREGISTER_CLIENT request.
    pub struct UnregisterClientRequestHeader<'a> {
        pub client_id: &'a str = "clientID",
        pub producer_group: Option<&'a str> = "producerGroup",
        pub consumer_group: Option<&'a str> = "consumerGroup",
    }
}

ext_header! {
    /// GET_CONSUMER_LIST_BY_GROUP request; response body [`crate::remoting::body::ConsumerListBody`].
    pub struct GetConsumerListByGroupRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
    }
}

ext_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (broker -> consumer, oneway).
    pub struct NotifyConsumerIdsChangedRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
    }
}

ext_header! {
    /// GET_CONSUMER_RUNNING_INFO (admin -> broker -> client).
    pub struct GetConsumerRunningInfoRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub client_id: &'a str = "clientId",
        pub jstack_enable: Option<bool> = "jstackEnable",
    }
}

ext_header! {
    /// Requests naming only a consumer group: GET_CONSUMER_CONNECTION_LIST (203),
    /// GET_CONSUME_STATS without topic, DELETE_SUBSCRIPTIONGROUP (`groupName` differs: see
    /// [`DeleteSubscriptionGroupRequestHeader`]).
    pub struct ConsumerGroupRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
    }
}

ext_header! {
    /// GET_CONSUME_STATS (208) request.
    pub struct GetConsumeStatsRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: Option<&'a str> = "topic",
    }
}

ext_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207) request.
    pub struct DeleteSubscriptionGroupRequestHeader<'a> {
        pub group_name: &'a str = "groupName",
        pub clean_offset: Option<bool> = "cleanOffset",
    }
}

ext_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309) request (admin -> broker -> client).
    pub struct ConsumeMessageDirectlyResultRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub client_id: Option<&'a str> = "clientId",
        pub msg_id: Option<&'a str> = "msgId",
        pub broker_name: Option<&'a str> = "brokerName",
        pub topic: Option<&'a str> = "topic",
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        pub group_sys_flag: Option<i32> = "groupSysFlag",
    }
}

ext_header! {
    /// RESET_CONSUMER_CLIENT_OFFSET (220, broker -> client) and
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) request.
    pub struct ResetOffsetRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub group: &'a str = "group",
        pub timestamp: i64 = "timestamp",
        pub is_force: bool = "isForce",
        pub queue_id: Option<i32> = "queueId",
        pub offset: Option<i64> = "offset",
    }
}

ext_header! {
    /// GET_CONSUMER_STATUS_FROM_CLIENT (221) / INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223).
    pub struct GetConsumerStatusRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub group: &'a str = "group",
        pub client_addr: Option<&'a str> = "clientAddr",
    }
}

ext_header! {
    /// GET_SUBSCRIPTIONGROUP_CONFIG (352, 5.x) request.
    pub struct GetSubscriptionGroupConfigRequestHeader<'a> {
        pub group: &'a str = "group",
    }
}
