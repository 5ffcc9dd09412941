//! Body tests: samples as Java (fastjson), the C++ client and other servers write them.

use super::*;

#[test]
fn route_from_4_9_name_server_with_bare_keys() {
    let text = br#"{"brokerDatas":[{"brokerAddrs":{0:"192.168.1.10:10911",1:"192.168.1.11:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSynFlag":1,"writeQueueNums":4}]}"#;
    let r: TopicRouteData = from_slice(text, "route").expect("parses");
    assert_eq!(r.broker_datas[0].master_addr(), Some("192.168.1.10:10911"));
    assert_eq!(
        r.broker_datas[0].broker_addrs.get(&1).map(String::as_str),
        Some("192.168.1.11:10911")
    );
    assert!(!r.broker_datas[0].enable_acting_master);
    assert_eq!(
        r.queue_datas[0].topic_sys_flag, 1,
        "old spelling topicSynFlag"
    );
    assert_eq!(r.order_topic_conf, None);
    // Written back in both styles and read again.
    for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
        let bytes = to_vec(&r, style).expect("writes");
        let back: TopicRouteData = from_slice(&bytes, "route").expect("reads");
        assert_eq!(back, r);
    }
    let fj = String::from_utf8(to_vec(&r, JsonStyle::Fastjson).expect("writes")).expect("utf8");
    assert!(
        fj.contains(r#"{0:"192.168.1.10:10911",1:"192.168.1.11:10911"}"#),
        "{fj}"
    );
}

#[test]
fn route_with_nulls_and_5x_keys() {
    let text = br#"{"brokerDatas":null,"queueDatas":null,"orderTopicConf":"a:4","topicQueueMappingByBroker":{"x":{}},"filterServerTable":{}}"#;
    let r: TopicRouteData = from_slice(text, "route").expect("parses");
    assert!(r.broker_datas.is_empty() && r.queue_datas.is_empty());
    assert_eq!(r.order_topic_conf.as_deref(), Some("a:4"));
}

#[test]
fn cluster_info_fastjson_sample() {
    let text = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"192.168.1.10:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
    let c: ClusterInfo = from_slice(text, "cluster").expect("parses");
    assert_eq!(
        c.broker_addr_table["broker-a"].master_addr(),
        Some("192.168.1.10:10911")
    );
    assert!(c.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    let again = to_vec(&c, JsonStyle::Fastjson).expect("writes");
    assert_eq!(again.as_slice(), text.as_slice());
}

#[test]
fn java_heartbeat_parses() {
    let text = br#"{"clientID":"192.168.1.20@12345#8723476281","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G1","messageModel":"CLUSTERING","unitMode":false,"subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T1"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%G1"}]}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"P1"}],"withoutSub":false}"#;
    let h: HeartbeatData = from_slice(text, "heartbeat").expect("parses");
    assert_eq!(h.client_id, "192.168.1.20@12345#8723476281");
    let c = &h.consumer_data_set[0];
    assert_eq!(c.consume_from_where, ConsumeFromWhere::LastOffset);
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(c.message_model, MessageModel::Clustering);
    assert_eq!(c.subscription_data_set.len(), 2);
    assert_eq!(c.subscription_data_set[0].code_set, vec![2598919]);
    assert_eq!(c.subscription_data_set[1].sub_version, 1_700_000_000_001);
    assert_eq!(h.producer_data_set.len(), 2);
    assert_eq!(h.heartbeat_fingerprint, Some(0));
    let again: HeartbeatData =
        from_slice(&to_vec(&h, JsonStyle::Standard).expect("writes"), "hb").expect("reads");
    assert_eq!(again, h);
}

#[test]
fn cpp_heartbeat_variants_parse() {
    // Enum names (current C++), string subVersion, no unitMode/expressionType, no producers.
    let names = b"{\"clientID\":\"10.0.0.5@4242\",\"consumerDataSet\":[{\"consumeFromWhere\":\"CONSUME_FROM_FIRST_OFFSET\",\"consumeType\":\"CONSUME_ACTIVELY\",\"groupName\":\"G\",\"messageModel\":\"BROADCASTING\",\"subscriptionDataSet\":[{\"codeSet\":[0],\"subString\":\"TagA || TagB\",\"subVersion\":\"1700000000000\",\"tagsSet\":[\"TagA\",\"TagB\"],\"topic\":\"T\"}]}]}\n";
    let h: HeartbeatData = from_slice(names, "heartbeat").expect("parses");
    assert!(h.producer_data_set.is_empty());
    let c = &h.consumer_data_set[0];
    assert_eq!(c.consume_from_where, ConsumeFromWhere::FirstOffset);
    assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
    assert_eq!(c.message_model, MessageModel::Broadcasting);
    let s = &c.subscription_data_set[0];
    assert_eq!(s.sub_version, 1_700_000_000_000);
    assert_eq!(s.expression_type, EXPRESSION_TYPE_TAG);
    assert_eq!(s.tags_set, vec!["TagA", "TagB"]);
    // Ordinals (older C++), numeric strings, producer only, enums missing.
    let ords = br#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":5,"consumeType":"1","groupName":"G","messageModel":1,"subscriptionDataSet":null},{"groupName":"H"}],"producerDataSet":[{"groupName":"P"}]}"#;
    let h: HeartbeatData = from_slice(ords, "heartbeat").expect("parses");
    assert_eq!(
        h.consumer_data_set[0].consume_from_where,
        ConsumeFromWhere::Timestamp
    );
    assert_eq!(
        h.consumer_data_set[0].consume_type,
        ConsumeType::ConsumePassively
    );
    assert_eq!(
        h.consumer_data_set[0].message_model,
        MessageModel::Clustering
    );
    assert_eq!(
        h.consumer_data_set[1].consume_type,
        ConsumeType::ConsumePassively
    );
    // A bad enum value is an error naming the type.
    let bad =
        br#"{"clientID":"c","consumerDataSet":[{"groupName":"G","messageModel":"SOMETIMES"}]}"#;
    let e = from_slice::<HeartbeatData>(bad, "heartbeat").expect_err("bad enum");
    assert!(e.to_string().contains("MessageModel"), "{e}");
    // Names are written.
    let out = String::from_utf8(to_vec(&h, JsonStyle::Standard).expect("writes")).expect("utf8");
    assert!(
        out.contains(r#""consumeFromWhere":"CONSUME_FROM_TIMESTAMP""#),
        "{out}"
    );
}

#[test]
fn register_body_and_topic_config_samples() {
    let body49 = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"timestamp":1700000000000},"topicConfigTable":{"T1":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":4}}}}"#;
    let b: RegisterBrokerBody = from_slice(body49, "register").expect("parses");
    let w = &b.topic_config_serialize_wrapper;
    assert_eq!(w.data_version.counter, 3);
    assert_eq!(w.data_version.state_version, 0);
    assert_eq!(
        w.topic_config_table["T1"],
        TopicConfig::new("T1", 4, Perm::READ_WRITE)
    );
    let out = String::from_utf8(to_vec(&b, JsonStyle::Standard).expect("writes")).expect("utf8");
    assert_eq!(
        out,
        r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"T1":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":4}}}}"#
    );
    assert_eq!(
        RegisterBrokerBody::crc32(b"123456789"),
        0xCBF4_3926u32 as i32 & 0x7FFF_FFFF
    );
}

#[test]
fn consumer_and_lock_bodies() {
    let req = br#"{"clientId":"10.0.0.5@4242#123","consumerGroup":"G","mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"},{"brokerName":"broker-a","queueId":"1","topic":"T"}],"onlyThisBroker":false}"#;
    let l: LockBatchRequestBody = from_slice(req, "lock").expect("parses");
    assert_eq!(l.mq_set.len(), 2);
    assert_eq!(l.mq_set[1].queue_id, 1);
    assert_eq!(l.consumer_group, "G");
    let resp = LockBatchResponseBody {
        lock_ok_mq_set: vec![MessageQueue {
            topic: "T".into(),
            broker_name: "broker-a".into(),
            queue_id: 0,
        }],
    };
    assert_eq!(
        String::from_utf8(to_vec(&resp, JsonStyle::Standard).expect("writes")).expect("utf8"),
        r#"{"lockOKMQSet":[{"topic":"T","brokerName":"broker-a","queueId":0}]}"#
    );
    let list: ConsumerListBody =
        from_slice(br#"{"consumerIdList":["a@1","b@2"]}"#, "list").expect("parses");
    assert_eq!(list.consumer_id_list, vec!["a@1", "b@2"]);
    assert_eq!(
        to_vec(&list, JsonStyle::Standard).expect("writes"),
        br#"{"consumerIdList":["a@1","b@2"]}"#.to_vec()
    );
    let tl: TopicList = from_slice(br#"{"topicList":["T1","T2"]}"#, "topics").expect("parses");
    assert_eq!(tl.topic_list, vec!["T1", "T2"]);
    assert!(from_slice::<TopicList>(b"[1,2", "topics").is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_-]{1,10}",
            Just("{0:\"x\",1:y}".to_string()),
            Just("a\\\"b".to_string()),
            any::<String>()
        ]
    }

    prop_compose! {
        fn arb_broker()(
            addrs in proptest::collection::btree_map(any::<i64>(), arb_name(), 0..4),
            name in arb_name(),
            cluster in arb_name(),
            acting in any::<bool>(),
            zone in proptest::option::of(arb_name()),
        ) -> BrokerData {
            BrokerData { broker_addrs: addrs, broker_name: name, cluster, enable_acting_master: acting, zone_name: zone }
        }
    }

    prop_compose! {
        fn arb_route()(
            brokers in proptest::collection::vec(arb_broker(), 0..4),
            queues in proptest::collection::vec((arb_name(), any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>()), 0..4),
            order in proptest::option::of(arb_name()),
            filters in proptest::collection::btree_map(arb_name(), proptest::collection::vec(arb_name(), 0..3), 0..2),
        ) -> TopicRouteData {
            TopicRouteData {
                broker_datas: brokers,
                filter_server_table: filters,
                order_topic_conf: order,
                queue_datas: queues.into_iter().map(|(b, p, r, s, w)| QueueData { broker_name: b, perm: p, read_queue_nums: r, topic_sys_flag: s, write_queue_nums: w }).collect(),
            }
        }
    }

    proptest! {
        #[test]
        fn route_round_trips_in_both_styles(route in arb_route()) {
            for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
                let bytes = to_vec(&route, style).expect("writes");
                let back: TopicRouteData = from_slice(&bytes, "route").expect("reads");
                prop_assert_eq!(&back, &route);
            }
        }

        #[test]
        fn integer_keyed_maps_round_trip(m in proptest::collection::btree_map(any::<i64>(), proptest::collection::btree_map(any::<u32>(), arb_name(), 0..3), 0..5)) {
            let bytes = to_vec(&m, JsonStyle::Fastjson).expect("writes");
            let back: BTreeMap<i64, BTreeMap<u32, String>> = from_slice(&bytes, "map").expect("reads");
            prop_assert_eq!(back, m);
        }
    }
}
