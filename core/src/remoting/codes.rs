//! Request codes, response codes, language codes, version ordinals and flag bits of RocketMQ's
//! classic remoting protocol (spec §1.2, §2).
//!
//! Codes are plain `i32` constants (the wire carries whatever number the peer sent, known or
//! not), grouped under unit structs so that call sites read like RocketMQ's own
//! (`RequestCode::SEND_MESSAGE_V2`).

use std::fmt;

/// Flag bit 0: set on responses (RPC_TYPE).
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request wants no response (RPC_ONEWAY).
pub const FLAG_ONEWAY: i32 = 2;

/// Request codes (spec §2.1). Handler letters in the spec: N name server, B broker, C client.
pub struct RequestCode;

impl RequestCode {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_BROKER_OFFSET: i32 = 13;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const UPDATE_AND_CREATE_TOPIC_LIST: i32 = 18;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const GET_TOPIC_CONFIG_LIST: i32 = 22;
    pub const GET_TOPIC_NAME_LIST: i32 = 23;
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    pub const GET_BROKER_CONFIG: i32 = 26;
    pub const TRIGGER_DELETE_FILES: i32 = 27;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const GET_CLIENT_CONFIG: i32 = 47;
    pub const UPDATE_AND_CREATE_ACL_CONFIG: i32 = 50;
    pub const DELETE_ACL_CONFIG: i32 = 51;
    pub const GET_BROKER_CLUSTER_ACL_INFO: i32 = 52;
    pub const UPDATE_GLOBAL_WHITE_ADDRS_CONFIG: i32 = 53;
    pub const GET_BROKER_CLUSTER_ACL_CONFIG: i32 = 54;
    pub const GET_TIMER_CHECK_POINT: i32 = 60;
    pub const GET_TIMER_METRICS: i32 = 61;
    pub const PUT_KV_CONFIG: i32 = 100;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const DELETE_KV_CONFIG: i32 = 102;
    pub const REGISTER_BROKER: i32 = 103;
    pub const UNREGISTER_BROKER: i32 = 104;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const GET_PRODUCER_CONNECTION_LIST: i32 = 204;
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const SUSPEND_CONSUMER: i32 = 209;
    pub const RESUME_CONSUMER: i32 = 210;
    pub const RESET_CONSUMER_OFFSET_IN_CONSUMER: i32 = 211;
    pub const RESET_CONSUMER_OFFSET_IN_BROKER: i32 = 212;
    pub const ADJUST_CONSUMER_THREAD_POOL: i32 = 213;
    pub const WHO_CONSUME_THE_MESSAGE: i32 = 214;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    pub const REGISTER_TOPIC_IN_NAMESRV: i32 = 217;
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    pub const GET_CONSUMER_STATUS_FROM_CLIENT: i32 = 221;
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    pub const INVOKE_BROKER_TO_GET_CONSUMER_STATUS: i32 = 223;
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST: i32 = 225;
    pub const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
    pub const REGISTER_FILTER_SERVER: i32 = 301;
    pub const REGISTER_MESSAGE_FILTER_CLASS: i32 = 302;
    pub const QUERY_CONSUME_TIME_SPAN: i32 = 303;
    pub const GET_SYSTEM_TOPIC_LIST_FROM_NS: i32 = 304;
    pub const GET_SYSTEM_TOPIC_LIST_FROM_BROKER: i32 = 305;
    pub const CLEAN_EXPIRED_CONSUMEQUEUE: i32 = 306;
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    pub const QUERY_CORRECTION_OFFSET: i32 = 308;
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const GET_UNIT_TOPIC_LIST: i32 = 311;
    pub const GET_HAS_UNIT_SUB_TOPIC_LIST: i32 = 312;
    pub const GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: i32 = 313;
    pub const CLONE_GROUP_OFFSET: i32 = 314;
    pub const VIEW_BROKER_STATS_DATA: i32 = 315;
    pub const CLEAN_UNUSED_TOPIC: i32 = 316;
    pub const GET_BROKER_CONSUME_STATS: i32 = 317;
    pub const UPDATE_NAMESRV_CONFIG: i32 = 318;
    pub const GET_NAMESRV_CONFIG: i32 = 319;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    pub const QUERY_CONSUME_QUEUE: i32 = 321;
    pub const QUERY_DATA_VERSION: i32 = 322;
    pub const RESUME_CHECK_HALF_MESSAGE: i32 = 323;
    pub const SEND_REPLY_MESSAGE: i32 = 324;
    pub const SEND_REPLY_MESSAGE_V2: i32 = 325;
    pub const PUSH_REPLY_MESSAGE_TO_CLIENT: i32 = 326;
    pub const ADD_WRITE_PERM_OF_BROKER: i32 = 327;
    pub const GET_ALL_PRODUCER_INFO: i32 = 328;
    pub const DELETE_EXPIRED_COMMITLOG: i32 = 329;
    pub const QUERY_TOPICS_BY_CONSUMER: i32 = 343;
    pub const QUERY_SUBSCRIPTION_BY_CONSUMER: i32 = 345;
    pub const GET_TOPIC_CONFIG: i32 = 351;
    pub const GET_SUBSCRIPTIONGROUP_CONFIG: i32 = 352;
    pub const UPDATE_AND_GET_GROUP_FORBIDDEN: i32 = 353;
    pub const CHECK_ROCKSDB_CQ_WRITE_PROGRESS: i32 = 354;
    pub const EXPORT_ROCKSDB_CONFIG_TO_JSON: i32 = 355;
    pub const LITE_PULL_MESSAGE: i32 = 361;
    pub const RECALL_MESSAGE: i32 = 370;
    pub const QUERY_ASSIGNMENT: i32 = 400;
    pub const SET_MESSAGE_REQUEST_MODE: i32 = 401;
    pub const GET_ALL_MESSAGE_REQUEST_MODE: i32 = 402;
    pub const UPDATE_AND_CREATE_STATIC_TOPIC: i32 = 513;
    pub const BROKER_HEARTBEAT: i32 = 904;
    pub const POP_MESSAGE: i32 = 200050;
    pub const ACK_MESSAGE: i32 = 200051;
    pub const PEEK_MESSAGE: i32 = 200052;
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200053;
    pub const NOTIFICATION: i32 = 200054;
    pub const POLLING_INFO: i32 = 200055;
    pub const POP_ROLLBACK: i32 = 200056;
    pub const BATCH_ACK_MESSAGE: i32 = 200151;

    /// RocketMQ's name for a request code, for logs; `None` for codes this table lacks.
    pub fn name(code: i32) -> Option<&'static str> {
        REQUEST_CODE_NAMES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, n)| *n)
    }
}

const REQUEST_CODE_NAMES: &[(i32, &str)] = &[
    (10, "SEND_MESSAGE"),
    (11, "PULL_MESSAGE"),
    (12, "QUERY_MESSAGE"),
    (13, "QUERY_BROKER_OFFSET"),
    (14, "QUERY_CONSUMER_OFFSET"),
    (15, "UPDATE_CONSUMER_OFFSET"),
    (17, "UPDATE_AND_CREATE_TOPIC"),
    (18, "UPDATE_AND_CREATE_TOPIC_LIST"),
    (21, "GET_ALL_TOPIC_CONFIG"),
    (22, "GET_TOPIC_CONFIG_LIST"),
    (23, "GET_TOPIC_NAME_LIST"),
    (25, "UPDATE_BROKER_CONFIG"),
    (26, "GET_BROKER_CONFIG"),
    (27, "TRIGGER_DELETE_FILES"),
    (28, "GET_BROKER_RUNTIME_INFO"),
    (29, "SEARCH_OFFSET_BY_TIMESTAMP"),
    (30, "GET_MAX_OFFSET"),
    (31, "GET_MIN_OFFSET"),
    (32, "GET_EARLIEST_MSG_STORETIME"),
    (33, "VIEW_MESSAGE_BY_ID"),
    (34, "HEART_BEAT"),
    (35, "UNREGISTER_CLIENT"),
    (36, "CONSUMER_SEND_MSG_BACK"),
    (37, "END_TRANSACTION"),
    (38, "GET_CONSUMER_LIST_BY_GROUP"),
    (39, "CHECK_TRANSACTION_STATE"),
    (40, "NOTIFY_CONSUMER_IDS_CHANGED"),
    (41, "LOCK_BATCH_MQ"),
    (42, "UNLOCK_BATCH_MQ"),
    (43, "GET_ALL_CONSUMER_OFFSET"),
    (45, "GET_ALL_DELAY_OFFSET"),
    (46, "CHECK_CLIENT_CONFIG"),
    (47, "GET_CLIENT_CONFIG"),
    (50, "UPDATE_AND_CREATE_ACL_CONFIG"),
    (51, "DELETE_ACL_CONFIG"),
    (52, "GET_BROKER_CLUSTER_ACL_INFO"),
    (53, "UPDATE_GLOBAL_WHITE_ADDRS_CONFIG"),
    (54, "GET_BROKER_CLUSTER_ACL_CONFIG"),
    (60, "GET_TIMER_CHECK_POINT"),
    (61, "GET_TIMER_METRICS"),
    (100, "PUT_KV_CONFIG"),
    (101, "GET_KV_CONFIG"),
    (102, "DELETE_KV_CONFIG"),
    (103, "REGISTER_BROKER"),
    (104, "UNREGISTER_BROKER"),
    (105, "GET_ROUTEINFO_BY_TOPIC"),
    (106, "GET_BROKER_CLUSTER_INFO"),
    (200, "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP"),
    (201, "GET_ALL_SUBSCRIPTIONGROUP_CONFIG"),
    (202, "GET_TOPIC_STATS_INFO"),
    (203, "GET_CONSUMER_CONNECTION_LIST"),
    (204, "GET_PRODUCER_CONNECTION_LIST"),
    (205, "WIPE_WRITE_PERM_OF_BROKER"),
    (206, "GET_ALL_TOPIC_LIST_FROM_NAMESERVER"),
    (207, "DELETE_SUBSCRIPTIONGROUP"),
    (208, "GET_CONSUME_STATS"),
    (209, "SUSPEND_CONSUMER"),
    (210, "RESUME_CONSUMER"),
    (211, "RESET_CONSUMER_OFFSET_IN_CONSUMER"),
    (212, "RESET_CONSUMER_OFFSET_IN_BROKER"),
    (213, "ADJUST_CONSUMER_THREAD_POOL"),
    (214, "WHO_CONSUME_THE_MESSAGE"),
    (215, "DELETE_TOPIC_IN_BROKER"),
    (216, "DELETE_TOPIC_IN_NAMESRV"),
    (217, "REGISTER_TOPIC_IN_NAMESRV"),
    (219, "GET_KVLIST_BY_NAMESPACE"),
    (220, "RESET_CONSUMER_CLIENT_OFFSET"),
    (221, "GET_CONSUMER_STATUS_FROM_CLIENT"),
    (222, "INVOKE_BROKER_TO_RESET_OFFSET"),
    (223, "INVOKE_BROKER_TO_GET_CONSUMER_STATUS"),
    (224, "GET_TOPICS_BY_CLUSTER"),
    (225, "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST"),
    (300, "QUERY_TOPIC_CONSUME_BY_WHO"),
    (301, "REGISTER_FILTER_SERVER"),
    (302, "REGISTER_MESSAGE_FILTER_CLASS"),
    (303, "QUERY_CONSUME_TIME_SPAN"),
    (304, "GET_SYSTEM_TOPIC_LIST_FROM_NS"),
    (305, "GET_SYSTEM_TOPIC_LIST_FROM_BROKER"),
    (306, "CLEAN_EXPIRED_CONSUMEQUEUE"),
    (307, "GET_CONSUMER_RUNNING_INFO"),
    (308, "QUERY_CORRECTION_OFFSET"),
    (309, "CONSUME_MESSAGE_DIRECTLY"),
    (310, "SEND_MESSAGE_V2"),
    (311, "GET_UNIT_TOPIC_LIST"),
    (312, "GET_HAS_UNIT_SUB_TOPIC_LIST"),
    (313, "GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST"),
    (314, "CLONE_GROUP_OFFSET"),
    (315, "VIEW_BROKER_STATS_DATA"),
    (316, "CLEAN_UNUSED_TOPIC"),
    (317, "GET_BROKER_CONSUME_STATS"),
    (318, "UPDATE_NAMESRV_CONFIG"),
    (319, "GET_NAMESRV_CONFIG"),
    (320, "SEND_BATCH_MESSAGE"),
    (321, "QUERY_CONSUME_QUEUE"),
    (322, "QUERY_DATA_VERSION"),
    (323, "RESUME_CHECK_HALF_MESSAGE"),
    (324, "SEND_REPLY_MESSAGE"),
    (325, "SEND_REPLY_MESSAGE_V2"),
    (326, "PUSH_REPLY_MESSAGE_TO_CLIENT"),
    (327, "ADD_WRITE_PERM_OF_BROKER"),
    (328, "GET_ALL_PRODUCER_INFO"),
    (329, "DELETE_EXPIRED_COMMITLOG"),
    (343, "QUERY_TOPICS_BY_CONSUMER"),
    (345, "QUERY_SUBSCRIPTION_BY_CONSUMER"),
    (351, "GET_TOPIC_CONFIG"),
    (352, "GET_SUBSCRIPTIONGROUP_CONFIG"),
    (353, "UPDATE_AND_GET_GROUP_FORBIDDEN"),
    (354, "CHECK_ROCKSDB_CQ_WRITE_PROGRESS"),
    (355, "EXPORT_ROCKSDB_CONFIG_TO_JSON"),
    (361, "LITE_PULL_MESSAGE"),
    (370, "RECALL_MESSAGE"),
    (400, "QUERY_ASSIGNMENT"),
    (401, "SET_MESSAGE_REQUEST_MODE"),
    (402, "GET_ALL_MESSAGE_REQUEST_MODE"),
    (513, "UPDATE_AND_CREATE_STATIC_TOPIC"),
    (904, "BROKER_HEARTBEAT"),
    (200050, "POP_MESSAGE"),
    (200051, "ACK_MESSAGE"),
    (200052, "PEEK_MESSAGE"),
    (200053, "CHANGE_MESSAGE_INVISIBLETIME"),
    (200054, "NOTIFICATION"),
    (200055, "POLLING_INFO"),
    (200056, "POP_ROLLBACK"),
    (200151, "BATCH_ACK_MESSAGE"),
];

/// Response codes (spec §2.2). Codes whose meaning differs between 4.9 and 5.x carry both names.
pub struct ResponseCode;

impl ResponseCode {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const TRANSACTION_FAILED: i32 = 4;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const TOPIC_EXIST_ALREADY: i32 = 18;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    pub const FILTER_DATA_NOT_LATEST: i32 = 28;
    pub const INVALID_PARAMETER: i32 = 29;
    pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
    pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
    pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
    pub const TRANSACTION_STATE_GROUP_WRONG: i32 = 203;
    pub const NO_BUYER_ID: i32 = 204;
    pub const NOT_IN_CURRENT_UNIT: i32 = 205;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    pub const CONSUME_MSG_TIMEOUT: i32 = 207;
    pub const NO_MESSAGE: i32 = 208;
    /// 5.x name of 209 (4.9: UPDATE_AND_CREATE_ACL_CONFIG_FAILED).
    pub const POLLING_FULL: i32 = 209;
    pub const UPDATE_AND_CREATE_ACL_CONFIG_FAILED: i32 = 209;
    /// 5.x name of 210 (4.9: DELETE_ACL_CONFIG_FAILED).
    pub const POLLING_TIMEOUT: i32 = 210;
    pub const DELETE_ACL_CONFIG_FAILED: i32 = 210;
    /// 5.x name of 211 (4.9: UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED).
    pub const BROKER_NOT_EXIST: i32 = 211;
    pub const UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED: i32 = 211;
    pub const BROKER_DISPATCH_NOT_COMPLETE: i32 = 212;
    pub const BROADCAST_CONSUMPTION: i32 = 213;
    pub const FLOW_CONTROL: i32 = 215;
    pub const NOT_LEADER_FOR_QUEUE: i32 = 501;
    pub const ILLEGAL_OPERATION: i32 = 604;
    pub const GO_AWAY: i32 = 1500;
    pub const USER_NOT_EXIST: i32 = 3001;
    pub const POLICY_NOT_EXIST: i32 = 3002;
    /// Client-local codes: never on the wire.
    pub const RPC_UNKNOWN: i32 = -1000;
    pub const RPC_ADDR_IS_NULL: i32 = -1002;
    pub const RPC_SEND_TO_CHANNEL_FAILED: i32 = -1004;
    pub const RPC_TIME_OUT: i32 = -1006;

    /// Whether a send response with this code means the message was stored (spec §3.1).
    pub fn send_stored(code: i32) -> bool {
        matches!(
            code,
            Self::SUCCESS
                | Self::FLUSH_DISK_TIMEOUT
                | Self::FLUSH_SLAVE_TIMEOUT
                | Self::SLAVE_NOT_AVAILABLE
        )
    }

    /// Codes on which the Java producer retries another queue or broker (spec §2.2).
    pub fn producer_retries(code: i32) -> bool {
        matches!(code, 17 | 14 | 1 | 2 | 16 | 204 | 205 | 1500)
    }
}

/// Sender language (spec §1.2). Unknown values read as [`LanguageCode::Other`] (lenient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum LanguageCode {
    #[default]
    Java = 0,
    Cpp = 1,
    Dotnet = 2,
    Python = 3,
    Delphi = 4,
    Erlang = 5,
    Ruby = 6,
    Other = 7,
    Http = 8,
    Go = 9,
    Php = 10,
    Oms = 11,
    Rust = 12,
    NodeJs = 13,
}

const LANGUAGES: [(LanguageCode, &str); 14] = [
    (LanguageCode::Java, "JAVA"),
    (LanguageCode::Cpp, "CPP"),
    (LanguageCode::Dotnet, "DOTNET"),
    (LanguageCode::Python, "PYTHON"),
    (LanguageCode::Delphi, "DELPHI"),
    (LanguageCode::Erlang, "ERLANG"),
    (LanguageCode::Ruby, "RUBY"),
    (LanguageCode::Other, "OTHER"),
    (LanguageCode::Http, "HTTP"),
    (LanguageCode::Go, "GO"),
    (LanguageCode::Php, "PHP"),
    (LanguageCode::Oms, "OMS"),
    (LanguageCode::Rust, "RUST"),
    (LanguageCode::NodeJs, "NODE_JS"),
];

impl LanguageCode {
    /// From the binary header byte; unknown bytes read as `Other`.
    pub fn from_u8(b: u8) -> LanguageCode {
        LANGUAGES
            .get(usize::from(b))
            .map(|(l, _)| *l)
            .unwrap_or(LanguageCode::Other)
    }

    /// From the JSON enum name (case-insensitive); unknown names read as `Other`.
    pub fn from_name(name: &str) -> LanguageCode {
        LANGUAGES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(l, _)| *l)
            .unwrap_or(LanguageCode::Other)
    }

    /// The JSON enum name, as Java writes it.
    pub fn name(self) -> &'static str {
        LANGUAGES[self as usize].1
    }

    /// The binary header byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for LanguageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `MQVersion.Version` ordinals that change behaviour (spec §2.3). Release ordinal of 4.y.z is
/// `213 + 20*y + 2*z`; 5.y.z continues as minor 10+y.
pub struct Version;

impl Version {
    pub const V3_0_11: i32 = 37;
    pub const V3_4_9: i32 = 121;
    pub const V4_0_0: i32 = 213;
    pub const V4_1_0_SNAPSHOT: i32 = 232;
    pub const V4_6_0: i32 = 333;
    pub const V4_9_3: i32 = 399;
    pub const V4_9_4: i32 = 401;
    pub const V5_0_0: i32 = 413;
    pub const V5_3_1: i32 = 475;
    pub const V5_3_3: i32 = 479;
    /// The version ramjet writes into its own commands: 4.9.4, the first whose route JSON is
    /// standard and the last 4.x protocol without 5.x-only expectations.
    pub const CURRENT: i32 = Self::V4_9_4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_round_trips_by_byte_and_name() {
        for (i, (l, n)) in LANGUAGES.iter().enumerate() {
            assert_eq!(LanguageCode::from_u8(i as u8), *l);
            assert_eq!(l.as_u8() as usize, i);
            assert_eq!(LanguageCode::from_name(n), *l);
            assert_eq!(l.name(), *n);
        }
        assert_eq!(LanguageCode::from_u8(200), LanguageCode::Other);
        assert_eq!(LanguageCode::from_name("cpp"), LanguageCode::Cpp);
        assert_eq!(LanguageCode::from_name("KOTLIN"), LanguageCode::Other);
    }

    #[test]
    fn request_code_names() {
        assert_eq!(RequestCode::name(310), Some("SEND_MESSAGE_V2"));
        assert_eq!(RequestCode::name(105), Some("GET_ROUTEINFO_BY_TOPIC"));
        assert_eq!(RequestCode::name(9999), None);
    }

    #[test]
    fn version_formula() {
        assert_eq!(Version::V4_6_0, 213 + 20 * 6);
        assert_eq!(Version::V4_9_4, 213 + 20 * 9 + 2 * 4);
        assert_eq!(Version::V5_3_1, 213 + 20 * 13 + 2);
    }
}
