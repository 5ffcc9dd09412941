//! Consumer offsets (§3.3) and queue offset queries (§3.4).

use crate::remoting::ext::ext_header;

ext_header! {
    /// QUERY_CONSUMER_OFFSET (14) request.
    pub struct QueryConsumerOffsetRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}

ext_header! {
    /// QUERY_CONSUMER_OFFSET response (SUCCESS), also GET_MAX/MIN_OFFSET and
    /// SEARCH_OFFSET_BY_TIMESTAMP responses: one `offset`.
    pub struct OffsetResponseHeader {
        pub offset: i64 = "offset",
    }
}

/// QUERY_CONSUMER_OFFSET response.
pub type QueryConsumerOffsetResponseHeader = OffsetResponseHeader;
/// GET_MAX_OFFSET response.
pub type GetMaxOffsetResponseHeader = OffsetResponseHeader;
/// GET_MIN_OFFSET response.
pub type GetMinOffsetResponseHeader = OffsetResponseHeader;
/// SEARCH_OFFSET_BY_TIMESTAMP response.
pub type SearchOffsetResponseHeader = OffsetResponseHeader;

ext_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request. Response: SUCCESS, empty header.
    pub struct UpdateConsumerOffsetRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub commit_offset: i64 = "commitOffset",
    }
}

ext_header! {
    /// GET_MAX_OFFSET (30) request. `committed` is 5.x (default true).
    pub struct GetMaxOffsetRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub committed: Option<bool> = "committed",
    }
}

ext_header! {
    /// GET_MIN_OFFSET (31) request.
    pub struct GetMinOffsetRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
    }
}

ext_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request. `boundaryType` (5.x): `lower` (default) / `upper`.
    pub struct SearchOffsetRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub timestamp: i64 = "timestamp",
        pub boundary_type: Option<&'a str> = "boundaryType",
    }
}

ext_header! {
    /// GET_EARLIEST_MSG_STORETIME (32) request.
    pub struct GetEarliestMsgStoretimeRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
    }
}

ext_header! {
    /// GET_EARLIEST_MSG_STORETIME response.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        pub timestamp: i64 = "timestamp",
    }
}
