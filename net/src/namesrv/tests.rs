//! Name server behaviour through the wire codec: requests are encoded, decoded and handled
//! exactly as the hosting loop does; replies are checked field by field.

use super::*;
use ramjet_core::remoting::body::{
    self, ClusterInfo, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData,
};
use ramjet_core::remoting::headers::{RegisterBrokerRequestHeader, RegisterBrokerResponseHeader};
use ramjet_core::remoting::{
    decode_frame, CodecLimits, FrameDecode, RemotingCommand, RequestCode, ResponseCode,
    SerializeType, Version,
};

const S0: &str = "127.0.0.1:10911";
const S1: &str = "127.0.0.1:10915";
const SLAVE: &str = "127.0.0.2:10911";

/// Encodes `cmd`, decodes it like the server loop, handles it, and round-trips the reply
/// through the codec too.
fn call_on(
    ns: &mut NameServer,
    conn: Option<u64>,
    cmd: &RemotingCommand,
    now_ms: i64,
) -> Option<RemotingCommand> {
    let mut wire = Vec::new();
    cmd.encode(&mut wire).expect("request encodes");
    let FrameDecode::Frame {
        command: Ok(view), ..
    } = decode_frame(&wire, &CodecLimits::default()).expect("frame")
    else {
        panic!("request did not decode");
    };
    let resp = match conn {
        Some(c) => ns.handle_from(c, &view, now_ms),
        None => ns.handle(&view, now_ms),
    }?;
    assert_eq!(resp.opaque, cmd.opaque);
    assert!(resp.is_response());
    assert_eq!(
        resp.serialize_type, cmd.serialize_type,
        "reply in the request's serialization"
    );
    let mut out = Vec::new();
    resp.encode(&mut out).expect("reply encodes");
    let FrameDecode::Frame {
        command: Ok(back), ..
    } = decode_frame(&out, &CodecLimits::client()).expect("reply frame")
    else {
        panic!("reply did not decode");
    };
    Some(back.to_owned_command())
}

fn call(ns: &mut NameServer, cmd: &RemotingCommand, now_ms: i64) -> RemotingCommand {
    call_on(ns, None, cmd, now_ms).expect("a reply")
}

fn wrapper(counter: i64, topics: &[(&str, i32, i32)]) -> TopicConfigSerializeWrapper {
    let mut w = TopicConfigSerializeWrapper {
        data_version: DataVersion {
            counter,
            state_version: 0,
            timestamp: 1_700_000_000_000,
        },
        ..Default::default()
    };
    for (name, queues, perm) in topics {
        w.topic_config_table
            .insert((*name).to_owned(), TopicConfig::new(*name, *queues, *perm));
    }
    w
}

fn register_cmd(
    name: &str,
    addr: &str,
    id: i64,
    topics: &TopicConfigSerializeWrapper,
    opaque: i32,
) -> RemotingCommand {
    let body = RegisterBrokerBody {
        filter_server_list: Vec::new(),
        topic_config_serialize_wrapper: topics.clone(),
    };
    let bytes = body::to_vec(&body, body::JsonStyle::Standard).expect("body encodes");
    let crc = RegisterBrokerBody::crc32(&bytes);
    let ha = addr.replace(":10911", ":10912");
    RemotingCommand::request(RequestCode::REGISTER_BROKER, opaque)
        .with_header(&RegisterBrokerRequestHeader {
            broker_name: name,
            broker_addr: addr,
            cluster_name: "C",
            ha_server_addr: &ha,
            broker_id: id,
            heartbeat_timeout_millis: None,
            enable_acting_master: Some(false),
            compressed: Some(false),
            body_crc32: Some(crc),
        })
        .with_body(bytes)
}

fn route_cmd(topic: &str, version: i32, opaque: i32) -> RemotingCommand {
    let mut c = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, opaque)
        .with_ext("topic", topic);
    c.version = version;
    c
}

/// Two logical brokers (shards) of cluster C: T1 on both, T2 on s1 only, TBW102 on s0.
fn two_brokers(now_ms: i64) -> NameServer {
    let mut ns = NameServer::new(NameServerConfig::default());
    let r = call(
        &mut ns,
        &register_cmd(
            "b-s0",
            S0,
            0,
            &wrapper(1, &[("T1", 4, 6), ("TBW102", 8, 7)]),
            1,
        ),
        now_ms,
    );
    assert_eq!(r.code, ResponseCode::SUCCESS, "{:?}", r.remark);
    let r = call(
        &mut ns,
        &register_cmd("b-s1", S1, 0, &wrapper(1, &[("T1", 8, 6), ("T2", 2, 4)]), 2),
        now_ms,
    );
    assert_eq!(r.code, ResponseCode::SUCCESS, "{:?}", r.remark);
    ns
}

fn route_of(ns: &mut NameServer, topic: &str, now_ms: i64) -> Option<TopicRouteData> {
    let r = call(ns, &route_cmd(topic, Version::V4_9_4, 9), now_ms);
    match r.code {
        ResponseCode::SUCCESS => Some(body::from_slice(&r.body, "route").expect("route JSON")),
        ResponseCode::TOPIC_NOT_EXIST => None,
        other => panic!("route code {other}: {:?}", r.remark),
    }
}

#[test]
fn route_lists_both_brokers_with_queue_data_and_master_addresses() {
    let mut ns = two_brokers(1_000);
    let route = route_of(&mut ns, "T1", 1_000).expect("T1 routed");
    assert_eq!(route.queue_datas.len(), 2);
    assert_eq!(route.queue_datas[0].broker_name, "b-s0");
    assert_eq!(
        (
            route.queue_datas[0].read_queue_nums,
            route.queue_datas[0].write_queue_nums,
            route.queue_datas[0].perm
        ),
        (4, 4, 6)
    );
    assert_eq!(route.queue_datas[1].broker_name, "b-s1");
    assert_eq!(
        (
            route.queue_datas[1].read_queue_nums,
            route.queue_datas[1].write_queue_nums,
            route.queue_datas[1].perm
        ),
        (8, 8, 6)
    );
    assert_eq!(route.broker_datas.len(), 2);
    assert_eq!(route.broker_datas[0].broker_name, "b-s0");
    assert_eq!(route.broker_datas[0].cluster, "C");
    assert_eq!(route.broker_datas[0].master_addr(), Some(S0));
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 1);
    assert_eq!(route.broker_datas[1].master_addr(), Some(S1));
    let t2 = route_of(&mut ns, "T2", 1_000).expect("T2 routed");
    assert_eq!(t2.queue_datas.len(), 1);
    assert_eq!(
        (
            t2.queue_datas[0].broker_name.as_str(),
            t2.queue_datas[0].perm
        ),
        ("b-s1", 4)
    );
    assert_eq!(t2.broker_datas.len(), 1);
}

#[test]
fn route_json_style_follows_request_version_and_parses_both_ways() {
    let mut ns = two_brokers(0);
    // C++ (333): fastjson's bare integer keys.
    let old = call(&mut ns, &route_cmd("T2", Version::V4_6_0, 3), 0);
    let text = String::from_utf8(old.body.to_vec()).expect("utf8");
    assert_eq!(
        text,
        r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10915"},"brokerName":"b-s1","cluster":"C","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"b-s1","perm":4,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2}]}"#
    );
    // 4.9.4+: standard JSON.
    let new = call(&mut ns, &route_cmd("T2", Version::V4_9_4, 4), 0);
    let std_text = String::from_utf8(new.body.to_vec()).expect("utf8");
    assert!(
        std_text.contains(r#""brokerAddrs":{"0":"127.0.0.1:10915"}"#),
        "{std_text}"
    );
    assert!(serde_json::from_slice::<serde_json::Value>(&new.body).is_ok());
    // acceptStandardJsonOnly overrides an old version.
    let forced = call(
        &mut ns,
        &route_cmd("T2", 333, 5).with_ext("acceptStandardJsonOnly", "true"),
        0,
    );
    assert_eq!(forced.body, new.body);
    // The lenient reader gets the same route from both.
    let a: TopicRouteData = body::from_slice(&old.body, "route").expect("bare keys parse");
    let b: TopicRouteData = body::from_slice(&new.body, "route").expect("quoted keys parse");
    assert_eq!(a, b);
    assert_eq!(a.broker_datas[0].master_addr(), Some(S1));
}

#[test]
fn binary_request_gets_binary_reply() {
    let mut ns = two_brokers(0);
    let cmd = route_cmd("T1", Version::V4_9_4, 11).with_serialize_type(SerializeType::RocketMq);
    let r = call(&mut ns, &cmd, 0);
    assert_eq!(r.serialize_type, SerializeType::RocketMq);
    assert_eq!(r.code, ResponseCode::SUCCESS);
}

#[test]
fn unknown_topic_is_topic_not_exist() {
    let mut ns = two_brokers(0);
    let r = call(&mut ns, &route_cmd("Nope", Version::V4_9_4, 12), 0);
    assert_eq!(r.code, ResponseCode::TOPIC_NOT_EXIST);
    assert_eq!(
        r.remark.as_deref(),
        Some(topic_not_exist_remark("Nope").as_str())
    );
    assert!(r
        .remark
        .as_deref()
        .is_some_and(|s| s.starts_with("No topic route info in name server for the topic: Nope")));
    assert!(r.body.is_empty());
}

#[test]
fn expiry_after_120_seconds_of_silence() {
    let mut ns = two_brokers(0);
    // s0 re-registers at 60 s with the same version: liveness refreshed, nothing rebuilt.
    let r = call(
        &mut ns,
        &register_cmd(
            "b-s0",
            S0,
            0,
            &wrapper(1, &[("T1", 4, 6), ("TBW102", 8, 7)]),
            20,
        ),
        60_000,
    );
    assert_eq!(r.code, ResponseCode::SUCCESS);
    assert!(
        ns.scan_expired(DEFAULT_BROKER_CHANNEL_EXPIRED_MS)
            .is_empty(),
        "exactly 120 s is not expired"
    );
    assert_eq!(
        ns.scan_expired(DEFAULT_BROKER_CHANNEL_EXPIRED_MS + 1),
        vec![S1.to_owned()]
    );
    assert_eq!(ns.routes().live_broker_count(), 1);
    let t1 = route_of(&mut ns, "T1", 120_001).expect("T1 still on s0");
    assert_eq!(t1.queue_datas.len(), 1);
    assert_eq!(t1.queue_datas[0].broker_name, "b-s0");
    assert_eq!(t1.broker_datas.len(), 1);
    assert!(
        route_of(&mut ns, "T2", 120_001).is_none(),
        "T2 lived only on s1"
    );
    assert_eq!(ns.scan_expired(180_001), vec![S0.to_owned()]);
    assert!(route_of(&mut ns, "T1", 180_001).is_none());
    let info: ClusterInfo = body::from_slice(
        &call(
            &mut ns,
            &RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 1),
            0,
        )
        .body,
        "cluster",
    )
    .expect("cluster");
    assert!(info.broker_addr_table.is_empty());
    assert!(info.cluster_addr_table.is_empty());
}

#[test]
fn heartbeat_timeout_from_header_is_honoured() {
    let mut ns = NameServer::new(NameServerConfig::default());
    let cmd = register_cmd("b-s0", S0, 0, &wrapper(1, &[("T1", 4, 6)]), 1)
        .with_ext("heartbeatTimeoutMillis", "30000");
    assert_eq!(call(&mut ns, &cmd, 0).code, ResponseCode::SUCCESS);
    assert_eq!(
        ns.routes().live_info(S0).map(|l| l.timeout_ms),
        Some(30_000)
    );
    assert!(ns.scan_expired(30_000).is_empty());
    assert_eq!(ns.scan_expired(30_001), vec![S0.to_owned()]);
}

#[test]
fn unregister_removes_broker_and_its_queues() {
    let mut ns = two_brokers(0);
    let cmd = RemotingCommand::request(RequestCode::UNREGISTER_BROKER, 30)
        .with_ext("brokerName", "b-s0")
        .with_ext("brokerAddr", S0)
        .with_ext("clusterName", "C")
        .with_ext("brokerId", "0");
    assert_eq!(call(&mut ns, &cmd, 0).code, ResponseCode::SUCCESS);
    let t1 = route_of(&mut ns, "T1", 0).expect("T1 on s1");
    assert_eq!(
        t1.queue_datas
            .iter()
            .map(|q| q.broker_name.as_str())
            .collect::<Vec<_>>(),
        vec!["b-s1"]
    );
    assert!(route_of(&mut ns, "TBW102", 0).is_none());
    let info: ClusterInfo = body::from_slice(
        &call(
            &mut ns,
            &RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 31),
            0,
        )
        .body,
        "cluster",
    )
    .expect("cluster");
    assert_eq!(
        info.cluster_addr_table["C"].iter().collect::<Vec<_>>(),
        vec!["b-s1"]
    );
    assert_eq!(
        info.broker_addr_table.keys().collect::<Vec<_>>(),
        vec!["b-s1"]
    );
    assert_eq!(ns.routes().live_broker_count(), 1);
}

#[test]
fn cluster_info_and_topic_list() {
    let mut ns = two_brokers(0);
    let mut req = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 40);
    req.version = Version::V4_6_0;
    let r = call(&mut ns, &req, 0);
    assert_eq!(r.code, ResponseCode::SUCCESS);
    let text = String::from_utf8(r.body.to_vec()).expect("utf8");
    assert!(
        text.contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""clusterAddrTable":{"C":["b-s0","b-s1"]}"#),
        "{text}"
    );
    let info: ClusterInfo = body::from_slice(&r.body, "cluster").expect("cluster JSON");
    assert_eq!(info.broker_addr_table.len(), 2);
    assert_eq!(info.broker_addr_table["b-s1"].master_addr(), Some(S1));
    let r = call(
        &mut ns,
        &RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 41),
        0,
    );
    let list: TopicList = body::from_slice(&r.body, "topics").expect("topic list");
    assert_eq!(list.topic_list, vec!["T1", "T2", "TBW102"]);
    let r = call(
        &mut ns,
        &RemotingCommand::request(RequestCode::GET_TOPICS_BY_CLUSTER, 42).with_ext("cluster", "C"),
        0,
    );
    let list: TopicList = body::from_slice(&r.body, "topics").expect("topic list");
    assert_eq!(list.topic_list, vec!["T1", "T2", "TBW102"]);
    let r = call(
        &mut ns,
        &RemotingCommand::request(RequestCode::GET_TOPICS_BY_CLUSTER, 43).with_ext("cluster", "X"),
        0,
    );
    let list: TopicList = body::from_slice(&r.body, "topics").expect("topic list");
    assert!(list.topic_list.is_empty());
}

#[test]
fn slave_registration_gets_master_address_and_its_topics_are_ignored() {
    let mut ns = two_brokers(0);
    let r = call(
        &mut ns,
        &register_cmd("b-s0", SLAVE, 1, &wrapper(5, &[("OnlyOnSlave", 4, 6)]), 50),
        0,
    );
    assert_eq!(r.code, ResponseCode::SUCCESS);
    let h: RegisterBrokerResponseHeader = r.decode_header().expect("header");
    assert_eq!(h.master_addr, Some(S0));
    assert_eq!(h.ha_server_addr, Some("127.0.0.1:10912"));
    assert!(route_of(&mut ns, "OnlyOnSlave", 0).is_none());
    let t1 = route_of(&mut ns, "T1", 0).expect("T1");
    let s0 = t1
        .broker_datas
        .iter()
        .find(|b| b.broker_name == "b-s0")
        .expect("s0 data");
    assert_eq!(s0.broker_addrs.get(&0).map(String::as_str), Some(S0));
    assert_eq!(s0.broker_addrs.get(&1).map(String::as_str), Some(SLAVE));
    // Master registration answers no master address.
    let r = call(
        &mut ns,
        &register_cmd("b-s0", S0, 0, &wrapper(1, &[("T1", 4, 6)]), 51),
        0,
    );
    let h: RegisterBrokerResponseHeader = r.decode_header().expect("header");
    assert_eq!(h.master_addr, None);
}

#[test]
fn topic_table_rebuilt_only_when_data_version_changes() {
    let mut ns = two_brokers(0);
    let del = RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_NAMESRV, 60)
        .with_ext("topic", "TBW102");
    assert_eq!(call(&mut ns, &del, 0).code, ResponseCode::SUCCESS);
    assert!(route_of(&mut ns, "TBW102", 0).is_none());
    // Same version: the periodic registration does not resurrect the deleted topic.
    call(
        &mut ns,
        &register_cmd(
            "b-s0",
            S0,
            0,
            &wrapper(1, &[("T1", 4, 6), ("TBW102", 8, 7)]),
            61,
        ),
        10,
    );
    assert!(route_of(&mut ns, "TBW102", 10).is_none());
    // New version: rebuilt, with the new queue counts.
    call(
        &mut ns,
        &register_cmd(
            "b-s0",
            S0,
            0,
            &wrapper(2, &[("T1", 16, 6), ("TBW102", 8, 7)]),
            62,
        ),
        20,
    );
    assert!(route_of(&mut ns, "TBW102", 20).is_some());
    let t1 = route_of(&mut ns, "T1", 20).expect("T1");
    assert_eq!(t1.queue_datas[0].write_queue_nums, 16);
}

#[test]
fn delete_topic_scoped_to_cluster() {
    let mut ns = two_brokers(0);
    let del = RemotingCommand::request(RequestCode::DELETE_TOPIC_IN_NAMESRV, 63)
        .with_ext("topic", "T1")
        .with_ext("clusterName", "Other");
    assert_eq!(call(&mut ns, &del, 0).code, ResponseCode::SUCCESS);
    assert_eq!(
        route_of(&mut ns, "T1", 0)
            .expect("T1 kept")
            .queue_datas
            .len(),
        2
    );
    let del = del.with_ext("clusterName", "C");
    call(&mut ns, &del, 0);
    assert!(route_of(&mut ns, "T1", 0).is_none());
}

#[test]
fn kv_config_and_order_topic_conf() {
    let mut ns = NameServer::new(NameServerConfig {
        order_message_enable: true,
    });
    call(
        &mut ns,
        &register_cmd("b-s0", S0, 0, &wrapper(1, &[("T1", 4, 6)]), 1),
        0,
    );
    let get = RemotingCommand::request(RequestCode::GET_KV_CONFIG, 70)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "T1");
    let r = call(&mut ns, &get, 0);
    assert_eq!(r.code, ResponseCode::QUERY_NOT_FOUND);
    assert_eq!(
        r.remark.as_deref(),
        Some("No config item, Namespace: ORDER_TOPIC_CONFIG Key: T1")
    );
    let put = RemotingCommand::request(RequestCode::PUT_KV_CONFIG, 71)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "T1")
        .with_ext("value", "b-s0:4");
    assert_eq!(call(&mut ns, &put, 0).code, ResponseCode::SUCCESS);
    let r = call(&mut ns, &get, 0);
    assert_eq!(r.code, ResponseCode::SUCCESS);
    assert_eq!(r.ext_get("value"), Some("b-s0:4"));
    let route = route_of(&mut ns, "T1", 0).expect("route");
    assert_eq!(route.order_topic_conf.as_deref(), Some("b-s0:4"));
    let list = RemotingCommand::request(RequestCode::GET_KVLIST_BY_NAMESPACE, 72)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG);
    let r = call(&mut ns, &list, 0);
    assert_eq!(
        std::str::from_utf8(&r.body).expect("utf8"),
        r#"{"table":{"T1":"b-s0:4"}}"#
    );
    let del = RemotingCommand::request(RequestCode::DELETE_KV_CONFIG, 73)
        .with_ext("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)
        .with_ext("key", "T1");
    assert_eq!(call(&mut ns, &del, 0).code, ResponseCode::SUCCESS);
    assert_eq!(call(&mut ns, &list, 0).code, ResponseCode::QUERY_NOT_FOUND);
}

#[test]
fn unsupported_oneway_and_bad_requests() {
    let mut ns = two_brokers(0);
    let r = call(
        &mut ns,
        &RemotingCommand::request(RequestCode::SEND_MESSAGE, 80),
        0,
    );
    assert_eq!(r.code, ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(r.remark.as_deref(), Some(" request type 10 not supported"));
    // Oneway: handled, never answered.
    let oneway = RemotingCommand::request(RequestCode::UNREGISTER_BROKER, 81)
        .with_ext("brokerName", "b-s1")
        .with_ext("brokerAddr", S1)
        .with_ext("clusterName", "C")
        .with_ext("brokerId", "0")
        .oneway();
    assert!(call_on(&mut ns, None, &oneway, 0).is_none());
    assert!(route_of(&mut ns, "T2", 0).is_none());
    // Responses arriving at the name server are ignored.
    let resp = RemotingCommand::response(0, 82, SerializeType::Json);
    let mut wire = Vec::new();
    resp.encode(&mut wire).expect("encodes");
    let FrameDecode::Frame {
        command: Ok(view), ..
    } = decode_frame(&wire, &CodecLimits::default()).expect("frame")
    else {
        panic!("decodes");
    };
    assert!(ns.handle(&view, 0).is_none());
    // Missing header field: SYSTEM_ERROR naming it.
    let bad = RemotingCommand::request(RequestCode::REGISTER_BROKER, 83)
        .with_ext("brokerName", "b")
        .with_ext("clusterName", "C");
    let r = call(&mut ns, &bad, 0);
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("required header field `brokerAddr` is missing")
    );
    // CRC mismatch.
    let mut reg = register_cmd(
        "b-s9",
        "127.0.0.1:10999",
        0,
        &wrapper(1, &[("T9", 1, 6)]),
        84,
    );
    for (k, v) in reg.ext_fields.iter_mut() {
        if k == "bodyCrc32" {
            *v = "1".into();
        }
    }
    let r = call(&mut ns, &reg, 0);
    assert_eq!(
        (r.code, r.remark.as_deref()),
        (ResponseCode::SYSTEM_ERROR, Some("crc32 not match"))
    );
    assert!(route_of(&mut ns, "T9", 0).is_none());
    // Malformed body.
    let reg = RemotingCommand::request(RequestCode::REGISTER_BROKER, 85)
        .with_ext("brokerName", "b")
        .with_ext("brokerAddr", "a:1")
        .with_ext("clusterName", "C")
        .with_ext("haServerAddr", "a:2")
        .with_ext("brokerId", "0")
        .with_body(&b"{not json"[..]);
    let r = call(&mut ns, &reg, 0);
    assert_eq!(r.code, ResponseCode::SYSTEM_ERROR);
    assert!(r
        .remark
        .as_deref()
        .is_some_and(|s| s.contains("RegisterBrokerBody")));
}

#[test]
fn java_fastjson_register_body_with_5x_keys_is_accepted() {
    // As a 5.x Java broker sends it (attributes, stateVersion, mapping keys).
    let body = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":12,"stateVersion":0,"timestamp":1700000000000},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1},"topicConfigTable":{"T1":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":4}},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;
    let mut ns = NameServer::new(NameServerConfig::default());
    let reg = RemotingCommand::request(RequestCode::REGISTER_BROKER, 90)
        .with_ext("brokerName", "broker-a")
        .with_ext("brokerAddr", S0)
        .with_ext("clusterName", "DefaultCluster")
        .with_ext("haServerAddr", "127.0.0.1:10912")
        .with_ext("brokerId", "0")
        .with_ext("compressed", "false")
        .with_ext("bodyCrc32", "0")
        .with_body(body.as_bytes().to_vec());
    assert_eq!(call(&mut ns, &reg, 0).code, ResponseCode::SUCCESS);
    let route = route_of(&mut ns, "T1", 0).expect("routed");
    assert_eq!(route.queue_datas[0].read_queue_nums, 4);
    assert_eq!(route.broker_datas[0].cluster, "DefaultCluster");
}

#[test]
fn query_data_version_refreshes_liveness() {
    let mut ns = two_brokers(0);
    let q = |counter: i64, opaque: i32| {
        RemotingCommand::request(RequestCode::QUERY_DATA_VERSION, opaque)
            .with_ext("brokerName", "b-s0")
            .with_ext("brokerAddr", S0)
            .with_ext("clusterName", "C")
            .with_ext("brokerId", "0")
            .with_body(
                body::to_vec(
                    &DataVersion {
                        counter,
                        state_version: 0,
                        timestamp: 1_700_000_000_000,
                    },
                    body::JsonStyle::Standard,
                )
                .expect("encodes"),
            )
    };
    let r = call(&mut ns, &q(1, 100), 100_000);
    assert_eq!(r.ext_get("changed"), Some("false"));
    let stored: DataVersion = body::from_slice(&r.body, "dv").expect("dv");
    assert_eq!(stored.counter, 1);
    let r = call(&mut ns, &q(2, 101), 100_000);
    assert_eq!(r.ext_get("changed"), Some("true"));
    // s0 was refreshed at 100 s, s1 not.
    assert_eq!(ns.scan_expired(150_000), vec![S1.to_owned()]);
}

#[test]
fn connection_close_drops_brokers_registered_on_it() {
    let mut ns = NameServer::new(NameServerConfig::default());
    call_on(
        &mut ns,
        Some(7),
        &register_cmd("b-s0", S0, 0, &wrapper(1, &[("T1", 4, 6)]), 1),
        0,
    );
    call_on(
        &mut ns,
        Some(8),
        &register_cmd("b-s1", S1, 0, &wrapper(1, &[("T1", 4, 6)]), 2),
        0,
    );
    assert_eq!(ns.connection_closed(7), vec![S0.to_owned()]);
    let route = route_of(&mut ns, "T1", 0).expect("T1 on s1");
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "b-s1");
    assert!(ns.connection_closed(7).is_empty());
}

#[test]
fn unit_topic_lists_follow_topic_sys_flag() {
    let mut ns = NameServer::new(NameServerConfig::default());
    let mut w = wrapper(
        1,
        &[
            ("Plain", 4, 6),
            ("Unit", 4, 6),
            ("UnitSub", 4, 6),
            ("Both", 4, 6),
        ],
    );
    for (name, flag) in [("Unit", 1), ("UnitSub", 2), ("Both", 3)] {
        if let Some(tc) = w.topic_config_table.get_mut(name) {
            tc.topic_sys_flag = flag;
        }
    }
    call(&mut ns, &register_cmd("b-s0", S0, 0, &w, 1), 0);
    let list = |ns: &mut NameServer, code| -> Vec<String> {
        let r = call(ns, &RemotingCommand::request(code, 2), 0);
        body::from_slice::<TopicList>(&r.body, "topics")
            .expect("list")
            .topic_list
    };
    assert_eq!(
        list(&mut ns, RequestCode::GET_UNIT_TOPIC_LIST),
        vec!["Both", "Unit"]
    );
    assert_eq!(
        list(&mut ns, RequestCode::GET_HAS_UNIT_SUB_TOPIC_LIST),
        vec!["Both", "UnitSub"]
    );
    assert_eq!(
        list(&mut ns, RequestCode::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST),
        vec!["UnitSub"]
    );
}

#[test]
fn wipe_and_add_write_perm() {
    let mut ns = two_brokers(0);
    let wipe = RemotingCommand::request(RequestCode::WIPE_WRITE_PERM_OF_BROKER, 110)
        .with_ext("brokerName", "b-s0");
    let r = call(&mut ns, &wipe, 0);
    assert_eq!(r.ext_get("wipeTopicCount"), Some("2"));
    let t1 = route_of(&mut ns, "T1", 0).expect("T1");
    assert_eq!(t1.queue_datas[0].perm, 4);
    let add = RemotingCommand::request(RequestCode::ADD_WRITE_PERM_OF_BROKER, 111)
        .with_ext("brokerName", "b-s0");
    assert_eq!(call(&mut ns, &add, 0).ext_get("addTopicCount"), Some("2"));
    assert_eq!(
        route_of(&mut ns, "T1", 0).expect("T1").queue_datas[0].perm,
        6
    );
}

mod model {
    //! Random operation sequences against the route tables, checking the invariants a client
    //! relies on after every step.
    use super::super::*;
    use proptest::prelude::*;
    use ramjet_core::remoting::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};

    #[derive(Debug, Clone)]
    enum Op {
        Register {
            broker: usize,
            slave: bool,
            version: i64,
            topics: Vec<usize>,
        },
        Unregister {
            broker: usize,
            slave: bool,
        },
        Advance {
            ms: i64,
        },
        DeleteTopic {
            topic: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0usize..3,
                any::<bool>(),
                0i64..3,
                proptest::collection::vec(0usize..4, 0..4)
            )
                .prop_map(|(broker, slave, version, topics)| Op::Register {
                    broker,
                    slave,
                    version,
                    topics
                }),
            (0usize..3, any::<bool>()).prop_map(|(broker, slave)| Op::Unregister { broker, slave }),
            (0i64..90_000).prop_map(|ms| Op::Advance { ms }),
            (0usize..4).prop_map(|topic| Op::DeleteTopic { topic }),
        ]
    }

    fn addr(broker: usize, slave: bool) -> String {
        format!(
            "10.0.0.{}:{}",
            broker + 1,
            if slave { 20911 } else { 10911 }
        )
    }

    proptest! {
        #[test]
        fn route_tables_stay_consistent(ops in proptest::collection::vec(op(), 1..40)) {
            let mut t = RouteTable::new();
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Register { broker, slave, version, topics } => {
                        let mut w = TopicConfigSerializeWrapper {
                            data_version: DataVersion { counter: version, state_version: 0, timestamp: 1 },
                            ..Default::default()
                        };
                        for topic in topics {
                            let name = format!("T{topic}");
                            w.topic_config_table.insert(name.clone(), TopicConfig::new(name, 4, 6));
                        }
                        let name = format!("b{broker}");
                        let a = addr(broker, slave);
                        let reg = BrokerRegistration {
                            cluster_name: "C", broker_addr: &a, broker_name: &name,
                            broker_id: i64::from(slave), ha_server_addr: "", heartbeat_timeout_ms: None,
                            topics: &w, filter_server_list: &[],
                        };
                        t.register_broker(&reg, now, None);
                    }
                    Op::Unregister { broker, slave } => {
                        t.unregister_broker("C", &addr(broker, slave), &format!("b{broker}"), i64::from(slave));
                    }
                    Op::Advance { ms } => {
                        now += ms;
                        t.scan_expired(now);
                    }
                    Op::DeleteTopic { topic } => {
                        t.delete_topic(&format!("T{topic}"), None);
                    }
                }
                // Invariants.
                let info = t.cluster_info();
                for (name, bd) in &info.broker_addr_table {
                    prop_assert!(!bd.broker_addrs.is_empty(), "broker {} kept with no address", name);
                    prop_assert!(info.cluster_addr_table.get("C").is_some_and(|s| s.contains(name)));
                    for a in bd.broker_addrs.values() {
                        let live = t.live_info(a);
                        prop_assert!(live.is_some(), "address {} listed but not live", a);
                        prop_assert!(live.is_some_and(|l| now - l.last_update_ms <= DEFAULT_BROKER_CHANNEL_EXPIRED_MS));
                    }
                }
                for names in info.cluster_addr_table.values() {
                    for n in names {
                        prop_assert!(info.broker_addr_table.contains_key(n));
                    }
                }
                for topic in t.all_topics() {
                    let route = t.topic_route(&topic);
                    prop_assert!(route.is_some(), "topic {} listed without a route", topic);
                    if let Some(r) = route {
                        prop_assert_eq!(r.queue_datas.len(), r.broker_datas.len());
                        for (q, b) in r.queue_datas.iter().zip(&r.broker_datas) {
                            prop_assert_eq!(&q.broker_name, &b.broker_name);
                        }
                    }
                }
            }
        }
    }
}
