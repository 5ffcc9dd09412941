//! Client errors: each names the peer, the request and what the user can do about it.

use ramjet_core::remoting::{EncodeError, HeaderError, ResponseCode};

use super::message::MessageError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot sign the request (ACL): {0}")]
    Acl(String),
    #[error(
        "cannot connect to {addr}: {source}; check that the server runs and the address is right"
    )]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "connection to {addr} timed out after {timeout_ms} ms; check the address and firewall"
    )]
    ConnectTimeout { addr: String, timeout_ms: u64 },
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed { addr: String, reason: String },
    #[error("request code {code} to {addr} got no response within {timeout_ms} ms")]
    Timeout {
        addr: String,
        code: i32,
        timeout_ms: u64,
    },
    #[error("cannot encode request code {code}: {source}")]
    Encode { code: i32, source: EncodeError },
    #[error("{addr} answered request code {request_code} with {} ({code}): {remark}{}", response_code_name(*.code), acl_hint(remark))]
    Broker {
        addr: String,
        request_code: i32,
        code: i32,
        remark: String,
    },
    #[error("response to request code {code} from {addr} has a bad header: {source}")]
    BadHeader {
        addr: String,
        code: i32,
        source: HeaderError,
    },
    #[error("response to request code {code} from {addr} has a bad body: {reason}")]
    BadBody {
        addr: String,
        code: i32,
        reason: String,
    },
    #[error(
        "no name server address given; pass --namesrv host:port[;host:port] or set NAMESRV_ADDR"
    )]
    NoNameServer,
    #[error("topic {topic:?} has no route: {reason}; create it with `ramjet admin topic create {topic}`")]
    NoRoute { topic: String, reason: String },
    #[error("broker {broker_name:?} has no reachable master address in the route")]
    NoBrokerAddr { broker_name: String },
    #[error("cluster {cluster:?} is unknown to the name server; known clusters: {known}")]
    UnknownCluster { cluster: String, known: String },
    #[error("invalid message: {0}")]
    Message(#[from] MessageError),
    #[error("{0}")]
    Invalid(String),
    #[error("local offset store {path}: {source}")]
    OffsetFile {
        path: String,
        source: std::io::Error,
    },
    #[error("glommio executor: {0}")]
    Runtime(String),
}

impl ClientError {
    /// Errors after which a producer tries another broker (the Java client's retry set plus
    /// transport failures).
    pub fn is_retriable_send(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectTimeout { .. }
            | ClientError::ConnectionClosed { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. } => matches!(
                *code,
                ResponseCode::TOPIC_NOT_EXIST
                    | ResponseCode::SERVICE_NOT_AVAILABLE
                    | ResponseCode::SYSTEM_ERROR
                    | ResponseCode::SYSTEM_BUSY
                    | ResponseCode::NO_PERMISSION
                    | ResponseCode::NO_BUYER_ID
                    | ResponseCode::NOT_IN_CURRENT_UNIT
                    | 1500
            ),
            _ => false,
        }
    }

    /// Whether the connection itself failed (as opposed to the server refusing the request).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::ConnectionClosed { .. }
                | ClientError::Timeout { .. }
        )
    }
}

/// Name of a response code for messages.
pub fn response_code_name(code: i32) -> &'static str {
    match code {
        ResponseCode::SUCCESS => "SUCCESS",
        ResponseCode::SYSTEM_ERROR => "SYSTEM_ERROR",
        ResponseCode::SYSTEM_BUSY => "SYSTEM_BUSY",
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED",
        ResponseCode::FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
        ResponseCode::SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
        ResponseCode::FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
        ResponseCode::MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL",
        ResponseCode::SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE",
        ResponseCode::NO_PERMISSION => "NO_PERMISSION",
        ResponseCode::TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST",
        ResponseCode::TOPIC_EXIST_ALREADY => "TOPIC_EXIST_ALREADY",
        ResponseCode::PULL_NOT_FOUND => "PULL_NOT_FOUND",
        ResponseCode::PULL_RETRY_IMMEDIATELY => "PULL_RETRY_IMMEDIATELY",
        ResponseCode::PULL_OFFSET_MOVED => "PULL_OFFSET_MOVED",
        ResponseCode::QUERY_NOT_FOUND => "QUERY_NOT_FOUND",
        ResponseCode::SUBSCRIPTION_PARSE_FAILED => "SUBSCRIPTION_PARSE_FAILED",
        ResponseCode::SUBSCRIPTION_NOT_EXIST => "SUBSCRIPTION_NOT_EXIST",
        ResponseCode::SUBSCRIPTION_NOT_LATEST => "SUBSCRIPTION_NOT_LATEST",
        ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST => "SUBSCRIPTION_GROUP_NOT_EXIST",
        ResponseCode::CONSUMER_NOT_ONLINE => "CONSUMER_NOT_ONLINE",
        ResponseCode::UPDATE_AND_CREATE_ACL_CONFIG_FAILED => "UPDATE_AND_CREATE_ACL_CONFIG_FAILED",
        ResponseCode::DELETE_ACL_CONFIG_FAILED => "DELETE_ACL_CONFIG_FAILED",
        ResponseCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED => {
            "UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED"
        }
        215 => "FLOW_CONTROL",
        _ => "error",
    }
}

/// What to do about a refusal of the broker's ACL (docs/acl.md).
fn acl_hint(remark: &str) -> &'static str {
    if remark.starts_with("AclException: No accessKey")
        || remark.starts_with("AclException: Check signature")
        || remark.starts_with("AclException: No acl config")
    {
        " (the broker checks ACL: sign with the keys of an account in its ACL file, \
         e.g. --access-key/--secret-key or RAMJET_ACCESS_KEY/RAMJET_SECRET_KEY)"
    } else if remark.starts_with("AclException: ") {
        " (the account lacks this permission in the broker's ACL file)"
    } else {
        ""
    }
}
