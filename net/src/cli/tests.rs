use clap::{Parser, Subcommand};

use super::*;
use crate::client::admin::Admin;
use crate::client::mock::{MockBroker, MockConfig};
use crate::client::{Client, ClientConfig, Message, Producer, ProducerConfig};

/// Stand-in for the `ramjet` binary's parser.
#[derive(Debug, Parser)]
struct TestCli {
    #[command(subcommand)]
    cmd: TestCmd,
}

#[derive(Debug, Subcommand)]
enum TestCmd {
    Admin(AdminArgs),
    Produce(ProduceArgs),
    Consume(ConsumeArgs),
}

fn parse(argv: &[&str]) -> TestCmd {
    let mut v = vec!["ramjet"];
    v.extend_from_slice(argv);
    TestCli::try_parse_from(v).expect("parse").cmd
}

#[test]
fn parses_admin_produce_and_consume() {
    let TestCmd::Admin(a) = parse(&[
        "admin",
        "--namesrv",
        "h:1",
        "topic",
        "create",
        "orders",
        "--queues",
        "4",
        "--cluster",
        "C",
    ]) else {
        panic!("admin")
    };
    assert_eq!(a.client.namesrv.as_deref(), Some("h:1"));
    assert!(
        matches!(a.command, AdminCommand::Topic { command: TopicCommand::Create { queues: 4, ref name, .. } } if name == "orders")
    );
    let TestCmd::Admin(a) = parse(&["admin", "lag", "G1", "--json"]) else {
        panic!("lag")
    };
    assert!(a.json);
    assert!(matches!(a.command, AdminCommand::Lag { ref group, topic: None } if group == "G1"));
    let TestCmd::Produce(p) = parse(&[
        "produce",
        "-t",
        "T",
        "--tags",
        "A",
        "--keys",
        "k1 k2",
        "--property",
        "a=b",
        "--property",
        "c=d=e",
        "one",
        "two",
    ]) else {
        panic!("produce")
    };
    assert_eq!(p.messages, vec!["one", "two"]);
    assert_eq!(
        p.properties,
        vec![("a".into(), "b".into()), ("c".into(), "d=e".into())]
    );
    let TestCmd::Consume(c) = parse(&["consume", "-t", "T", "--timestamp", "10m", "--count", "5"])
    else {
        panic!("consume")
    };
    assert_eq!((c.count, c.timestamp.as_deref()), (Some(5), Some("10m")));
    let mut argv = vec![
        "ramjet",
        "consume",
        "-t",
        "T",
        "--from-beginning",
        "--offset",
        "3",
    ];
    assert!(
        TestCli::try_parse_from(argv.clone()).is_err(),
        "conflicting start options"
    );
    argv.truncate(4);
    assert!(TestCli::try_parse_from(argv).is_ok());
    assert!(TestCli::try_parse_from([
        "ramjet",
        "produce",
        "-t",
        "T",
        "--property",
        "novalue",
        "x"
    ])
    .is_err());
}

#[test]
fn namesrv_flag_wins_over_default() {
    assert_eq!(namesrv_from(Some("a:1")), "a:1");
    assert!(!namesrv_from(None).is_empty());
}

#[test]
fn admin_output_text_and_json() {
    let mock = MockBroker::start(MockConfig {
        auto_create: false,
        ..MockConfig::default()
    })
    .expect("mock");
    let ns = mock.addr();
    let outs = crate::client::transport::block_on(None, async move {
        let admin = Admin::new(Client::new(ClientConfig::new(&ns).expect("cfg")));
        let run = |argv: &[&str]| {
            let TestCmd::Admin(a) = parse(argv) else {
                panic!("admin")
            };
            a
        };
        let create = admin_text_of(
            &admin,
            run(&["admin", "topic", "create", "orders", "--queues", "3"]),
        )
        .await;
        let list = admin_text_of(&admin, run(&["admin", "topic", "list"])).await;
        let list_json = admin_text_of(&admin, run(&["admin", "--json", "topic", "list"])).await;
        let cluster = admin_text_of(&admin, run(&["admin", "cluster"])).await;
        let p = Producer::new(admin.client().clone(), ProducerConfig::new("P"));
        for _ in 0..3 {
            p.send(Message::new("orders", "x")).await.expect("send");
        }
        let describe = admin_text_of(&admin, run(&["admin", "topic", "describe", "orders"])).await;
        let lag = admin_text_of(
            &admin,
            run(&["admin", "lag", "G", "--topic", "orders", "--json"]),
        )
        .await;
        let bad = admin_text_of(
            &admin,
            run(&["admin", "topic", "create", "x", "--cluster", "Nope"]),
        )
        .await;
        (create, list, list_json, cluster, describe, lag, bad)
    })
    .expect("executor");
    let (create, list, list_json, cluster, describe, lag, bad) = outs;
    assert!(
        create
            .as_ref()
            .is_ok_and(|s| s.contains("topic orders created/updated on 1 broker(s)")),
        "{create:?}"
    );
    assert_eq!(list.expect("list"), "orders\n");
    let v: serde_json::Value = serde_json::from_str(&list_json.expect("json")).expect("valid json");
    assert_eq!(v["topics"][0], "orders");
    assert!(cluster.expect("cluster").contains("MockCluster"));
    let describe = describe.expect("describe");
    assert!(describe.contains("read 3 write 3 perm 6"), "{describe}");
    assert_eq!(
        describe
            .lines()
            .filter(|l| l.contains("mock-s0") && !l.contains("broker"))
            .count(),
        3,
        "{describe}"
    );
    let lag: serde_json::Value = serde_json::from_str(&lag.expect("lag")).expect("json");
    assert_eq!(lag["topics"][0]["total_lag"], 3);
    let bad = bad.expect_err("unknown cluster").to_string();
    assert!(bad.contains("Nope") && bad.contains("MockCluster"), "{bad}");
}

async fn admin_text_of(admin: &Admin, args: AdminArgs) -> Result<String, CliError> {
    super::admin::admin_text(admin, &args).await
}

#[test]
fn produce_and_consume_commands_round_trip() {
    let mock = MockBroker::start(MockConfig {
        default_queues: 1,
        ..MockConfig::default()
    })
    .expect("mock");
    let ns = mock.addr();
    let TestCmd::Produce(p) = parse(&[
        "produce",
        "--namesrv",
        &ns,
        "-t",
        "CLI",
        "--tags",
        "A",
        "--property",
        "k=v",
        "hello",
        "world",
    ]) else {
        panic!("produce")
    };
    run_produce(p).expect("produce");
    assert_eq!(
        mock.bodies("CLI", 0),
        vec![b"hello".to_vec(), b"world".to_vec()]
    );
    let TestCmd::Consume(c) = parse(&[
        "consume",
        "--namesrv",
        &ns,
        "-t",
        "CLI",
        "--from-beginning",
        "--count",
        "2",
        "--group",
        "CG",
    ]) else {
        panic!("consume")
    };
    run_consume(c).expect("consume");
    // The group's progress was committed.
    for _ in 0..100 {
        if mock.committed("CG", "CLI", 0) == Some(2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(mock.committed("CG", "CLI", 0), Some(2));
}

#[test]
fn message_formatting() {
    use crate::client::consumer::MessageExt;
    let m = MessageExt {
        topic: "T".into(),
        broker_name: "b".into(),
        queue_id: 2,
        queue_offset: 9,
        commit_log_offset: 100,
        msg_id: "ID".into(),
        offset_msg_id: "OID".into(),
        body: bytes::Bytes::from_static(b"hi"),
        flag: 0,
        sys_flag: 0,
        born_timestamp: 1,
        store_timestamp: 2,
        born_host: "127.0.0.1:1".parse().expect("addr"),
        store_host: "127.0.0.1:2".parse().expect("addr"),
        reconsume_times: 0,
        properties: vec![("TAGS".into(), "A".into()), ("x".into(), "y".into())],
    };
    assert_eq!(
        consume::format_message(&m, false),
        "b/2@9 tags=A id=ID | hi\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&consume::format_message(&m, true)).expect("json");
    assert_eq!(v["queue_offset"], 9);
    assert_eq!(v["properties"]["x"], "y");
    assert_eq!(v["body"], "hi");
}

#[test]
fn admin_acl_commands_become_rocketmqs_acl_requests() {
    use ramjet_core::remoting::RequestCode;
    // `ramjet admin --access-key .. --secret-key .. acl <argv>`
    let acl = |argv: &[&str]| {
        let mut full = vec![
            "admin",
            "--access-key",
            "rjadmin01",
            "--secret-key",
            "s3cret-key",
            "acl",
        ];
        full.extend_from_slice(argv);
        let TestCmd::Admin(a) = parse(&full) else {
            panic!("not admin")
        };
        let AdminCommand::Acl { command, cluster } = a.command else {
            panic!("not acl")
        };
        assert_eq!(a.client.acl.access_key.as_deref(), Some("rjadmin01"));
        (super::admin::acl_request(&command), cluster)
    };
    let ((code, fields), cluster) = acl(&[
        "update",
        "producer01",
        "--secret",
        "p-secret-1",
        "--topic-perms",
        "orders=PUB,audit=SUB",
        "--default-group-perm",
        "SUB",
        "--cluster",
        "C1",
    ]);
    assert_eq!(code, RequestCode::UPDATE_AND_CREATE_ACL_CONFIG);
    assert_eq!(cluster.as_deref(), Some("C1"));
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        f,
        [
            ("accessKey", "producer01"),
            ("secretKey", "p-secret-1"),
            ("admin", "false"),
            ("defaultGroupPerm", "SUB"),
            ("topicPerms", "orders=PUB,audit=SUB"),
        ]
    );
    let ((code, fields), _) = acl(&["white", "10.0.0.*", "192.168.1.1"]);
    assert_eq!(code, RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG);
    assert_eq!(
        fields,
        [(
            "globalWhiteAddrs".to_string(),
            "10.0.0.*,192.168.1.1".to_string()
        )]
    );
    let ((code, fields), _) = acl(&["delete", "producer01"]);
    assert_eq!(code, RequestCode::DELETE_ACL_CONFIG);
    assert_eq!(fields.len(), 1);
}
