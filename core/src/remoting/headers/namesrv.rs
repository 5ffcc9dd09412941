//! Name server requests (§3.14).

use crate::remoting::ext::ext_header;

ext_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request.
    pub struct GetRouteInfoRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

ext_header! {
    /// REGISTER_BROKER (103) request; body [`crate::remoting::body::RegisterBrokerBody`].
    pub struct RegisterBrokerRequestHeader<'a> {
        pub broker_name: &'a str = "brokerName",
        pub broker_addr: &'a str = "brokerAddr",
        pub cluster_name: &'a str = "clusterName",
        pub ha_server_addr: &'a str = "haServerAddr",
        /// 0 = master.
        pub broker_id: i64 = "brokerId",
        pub heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
        pub enable_acting_master: Option<bool> = "enableActingMaster",
        pub compressed: Option<bool> = "compressed",
        /// CRC32 & 0x7FFFFFFF of the body; 0 = unchecked.
        pub body_crc32: Option<i32> = "bodyCrc32",
    }
}

ext_header! {
    /// REGISTER_BROKER response header.
    pub struct RegisterBrokerResponseHeader<'a> {
        pub ha_server_addr: Option<&'a str> = "haServerAddr",
        pub master_addr: Option<&'a str> = "masterAddr",
    }
}

ext_header! {
    /// UNREGISTER_BROKER (104) request.
    pub struct UnRegisterBrokerRequestHeader<'a> {
        pub broker_name: &'a str = "brokerName",
        pub broker_addr: &'a str = "brokerAddr",
        pub cluster_name: &'a str = "clusterName",
        pub broker_id: i64 = "brokerId",
    }
}

ext_header! {
    /// QUERY_DATA_VERSION (322) request; body DataVersion JSON.
    pub struct QueryDataVersionRequestHeader<'a> {
        pub broker_name: &'a str = "brokerName",
        pub broker_addr: &'a str = "brokerAddr",
        pub cluster_name: &'a str = "clusterName",
        pub broker_id: i64 = "brokerId",
    }
}

ext_header! {
    /// QUERY_DATA_VERSION response header.
    pub struct QueryDataVersionResponseHeader {
        pub changed: bool = "changed",
    }
}

ext_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216) request.
    pub struct DeleteTopicFromNamesrvRequestHeader<'a> {
        pub topic: &'a str = "topic",
        pub cluster_name: Option<&'a str> = "clusterName",
    }
}

ext_header! {
    /// REGISTER_TOPIC_IN_NAMESRV (217) request; body TopicRouteData.
    pub struct RegisterTopicRequestHeader<'a> {
        pub topic: &'a str = "topic",
    }
}

ext_header! {
    /// PUT_KV_CONFIG (100) request.
    pub struct PutKVConfigRequestHeader<'a> {
        pub namespace: &'a str = "namespace",
        pub key: &'a str = "key",
        pub value: &'a str = "value",
    }
}

ext_header! {
    /// GET_KV_CONFIG (101) / DELETE_KV_CONFIG (102) request.
    pub struct GetKVConfigRequestHeader<'a> {
        pub namespace: &'a str = "namespace",
        pub key: &'a str = "key",
    }
}

/// DELETE_KV_CONFIG (102) request.
pub type DeleteKVConfigRequestHeader<'a> = GetKVConfigRequestHeader<'a>;

ext_header! {
    /// GET_KV_CONFIG response header.
    pub struct GetKVConfigResponseHeader<'a> {
        pub value: Option<&'a str> = "value",
    }
}

ext_header! {
    /// GET_KVLIST_BY_NAMESPACE (219) request.
    pub struct GetKVListByNamespaceRequestHeader<'a> {
        pub namespace: &'a str = "namespace",
    }
}

ext_header! {
    /// GET_TOPICS_BY_CLUSTER (224) request.
    pub struct GetTopicsByClusterRequestHeader<'a> {
        pub cluster: &'a str = "cluster",
    }
}

ext_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) / ADD_WRITE_PERM_OF_BROKER (327) request.
    pub struct BrokerNameRequestHeader<'a> {
        pub broker_name: &'a str = "brokerName",
    }
}

ext_header! {
    /// WIPE_WRITE_PERM_OF_BROKER response header.
    pub struct WipeWritePermOfBrokerResponseHeader {
        pub wipe_topic_count: i32 = "wipeTopicCount",
    }
}
