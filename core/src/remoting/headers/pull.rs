//! PULL_MESSAGE (11) / LITE_PULL_MESSAGE (361), spec §3.2.

use crate::remoting::ext::ext_header;

/// PullSysFlag bits.
pub struct PullSysFlag;

impl PullSysFlag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL_MESSAGE: i32 = 0x10;
}

ext_header! {
    /// PULL_MESSAGE request.
    pub struct PullMessageRequestHeader<'a> {
        pub consumer_group: &'a str = "consumerGroup",
        pub topic: &'a str = "topic",
        pub queue_id: i32 = "queueId",
        pub queue_offset: i64 = "queueOffset",
        pub max_msg_nums: i32 = "maxMsgNums",
        pub sys_flag: i32 = "sysFlag",
        pub commit_offset: i64 = "commitOffset",
        pub suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        pub subscription: Option<&'a str> = "subscription",
        pub sub_version: i64 = "subVersion",
        pub expression_type: Option<&'a str> = "expressionType",
        pub max_msg_bytes: Option<i32> = "maxMsgBytes",
        pub broker_name: Option<&'a str> = "bname",
    }
}

impl PullMessageRequestHeader<'_> {
    pub fn has_commit_offset(&self) -> bool {
        self.sys_flag & PullSysFlag::COMMIT_OFFSET != 0
    }
    pub fn has_suspend(&self) -> bool {
        self.sys_flag & PullSysFlag::SUSPEND != 0
    }
    pub fn has_subscription(&self) -> bool {
        self.sys_flag & PullSysFlag::SUBSCRIPTION != 0
    }
}

ext_header! {
    /// PULL_MESSAGE response header (all four required fields always written).
    pub struct PullMessageResponseHeader {
        /// 0 = pull from the master next time.
        pub suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        pub next_begin_offset: i64 = "nextBeginOffset",
        pub min_offset: i64 = "minOffset",
        pub max_offset: i64 = "maxOffset",
        pub offset_delta: Option<i64> = "offsetDelta",
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        pub group_sys_flag: Option<i32> = "groupSysFlag",
        pub forbidden_type: Option<i32> = "forbiddenType",
    }
}
