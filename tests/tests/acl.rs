//! ACL 1.0 (`broker.acl_enable`, RocketMQ's plain ACL) against the real binary.
//!
//! - Clients of the project's library signing with an account's keys create topics (admin),
//!   send (PUB) and pull (SUB) what their account allows, and get the broker's reason for
//!   everything else: a wrong secret, a topic or group without the permission, an admin-only
//!   request. Unsigned requests are refused with "No accessKey is configured"; every refusal
//!   is SYSTEM_ERROR with `AclException: ...` and counted in `ramjet.aclDenied`.
//! - The accounts file is loaded again when it changes; a broken file is logged and the
//!   accounts before it stay in force.
//! - `globalWhiteRemoteAddresses` lets a matching peer in without any key.
//! - A broker whose ACL file is missing does not start and says which file it wanted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ramjet_core::acl::{Signer, ACCESS_KEY, SIGNATURE};
use ramjet_net::client::consumer::{PullOptions, Subscription};
use ramjet_net::client::instance::subscribe_queues;
use ramjet_net::client::transport::block_on;
use ramjet_net::client::{
    Admin, Client, ClientConfig, ClientError, Credentials, Message, Producer, ProducerConfig,
    SendStatus, TopicSpec,
};
use ramjet_tests::ops::{self, OutMessage};
use ramjet_tests::wire::{request, response, Command};
use ramjet_tests::{Broker, BrokerSpec};

const TOPIC: &str = "acl_orders";
const WAIT: Duration = Duration::from_secs(20);

const ADMIN: (&str, &str) = ("rjadmin01", "admin-secret-1");
const PRODUCER: (&str, &str) = ("producer01", "producer-secret");
const CONSUMER: (&str, &str) = ("consumer01", "consumer-secret");

fn acl_file(extra_topic_perm: &str, white: &str) -> String {
    let (a, p, c) = (ADMIN, PRODUCER, CONSUMER);
    [
        format!("globalWhiteRemoteAddresses: [{white}]"),
        "accounts:".to_string(),
        format!(
            "  - {{accessKey: {}, secretKey: {}, admin: true}}",
            a.0, a.1
        ),
        format!(
            "  - {{accessKey: {}, secretKey: {}, defaultTopicPerm: DENY, defaultGroupPerm: DENY, \
             topicPerms: [{TOPIC}=PUB{extra_topic_perm}]}}",
            p.0, p.1
        ),
        format!(
            "  - {{accessKey: {}, secretKey: {}, defaultTopicPerm: DENY, defaultGroupPerm: DENY, \
             topicPerms: [{TOPIC}=SUB], groupPerms: [readers=SUB]}}",
            c.0, c.1
        ),
        String::new(),
    ]
    .join("\n")
}

fn start(file: &Path) -> Broker {
    Broker::start(BrokerSpec::default().acl(file))
}

fn client(namesrv: &str, who: (&str, &str)) -> Result<Client, ClientError> {
    let mut cfg = ClientConfig::new(namesrv)?;
    cfg.credentials = Some(Credentials::new(who.0, who.1));
    Ok(Client::new(cfg))
}

fn counter(b: &Broker, key: &str) -> u64 {
    ops::runtime_counter_signed(&mut ops::connect(b.shard_addr(0)), key, ADMIN)
}

fn assert_refused(cmd: &Command, reason: &str) {
    assert_eq!(cmd.code, response::SYSTEM_ERROR, "{:?}", cmd.remark);
    let remark = cmd.remark.clone().unwrap_or_default();
    assert_eq!(remark, format!("AclException: {reason}"));
}

/// Sends `n` messages as `who` to `topic`; per message, the result or the error text.
fn send_as(namesrv: &str, who: (&str, &str), topic: &str, n: usize) -> Vec<Result<i64, String>> {
    let (ns, topic) = (namesrv.to_string(), topic.to_string());
    let (ak, sk) = (who.0.to_string(), who.1.to_string());
    block_on(None, async move {
        let c = client(&ns, (&ak, &sk))?;
        let mut pc = ProducerConfig::new("acl_pg");
        pc.retries = 0;
        let p = Producer::new(c, pc);
        let mut out = Vec::new();
        for i in 0..n {
            let r = p
                .send(Message::new(&topic, format!("m-{i}").into_bytes()))
                .await;
            out.push(match r {
                Ok(r) if r.status == SendStatus::SendOk => Ok(r.queue_offset),
                Ok(r) => Err(format!("status {:?}", r.status)),
                Err(e) => Err(e.to_string()),
            });
        }
        Ok::<_, ClientError>(out)
    })
    .expect("executor")
    .expect("client")
}

/// Pulls every message of `topic` as `who` in `group`: the bodies, or the first error.
fn pull_as(namesrv: &str, who: (&str, &str), group: &str) -> Result<Vec<String>, String> {
    let (ns, group) = (namesrv.to_string(), group.to_string());
    let (ak, sk) = (who.0.to_string(), who.1.to_string());
    block_on(None, async move {
        let c = client(&ns, (&ak, &sk))?;
        let route = c.fetch_route(TOPIC).await?;
        let mut bodies = Vec::new();
        for mq in subscribe_queues(TOPIC, &route) {
            let mut offset = 0;
            loop {
                let r = c
                    .pull(
                        &group,
                        &mq,
                        &Subscription::new(TOPIC, "*"),
                        offset,
                        PullOptions::new(32),
                    )
                    .await?;
                if r.messages.is_empty() {
                    break;
                }
                for m in &r.messages {
                    bodies.push(String::from_utf8_lossy(&m.body).into_owned());
                }
                offset = r.next_begin_offset;
            }
        }
        Ok::<_, ClientError>(bodies)
    })
    .expect("executor")
    .map_err(|e| e.to_string())
}

/// Pops as `who` in `group` until the topic is empty, acknowledging each batch with a batch
/// ack; the bodies, or the first error's text.
fn pop_as(namesrv: &str, who: (&str, &str), group: &str) -> Result<Vec<String>, String> {
    use ramjet_net::client::{PopConsumer, PopOptions};
    let (ns, group) = (namesrv.to_string(), group.to_string());
    let (ak, sk) = (who.0.to_string(), who.1.to_string());
    block_on(None, async move {
        let pc = PopConsumer::new(client(&ns, (&ak, &sk))?, &group, TOPIC);
        let opts = PopOptions {
            poll: Duration::ZERO,
            ..PopOptions::default()
        };
        let mut bodies = Vec::new();
        loop {
            let b = pc.pop(&opts).await?;
            if b.messages.is_empty() {
                break;
            }
            pc.ack_all(&b.messages).await?;
            for p in &b.messages {
                bodies.push(String::from_utf8_lossy(&p.message.body).into_owned());
            }
        }
        Ok::<_, ClientError>(bodies)
    })
    .expect("executor")
    .map_err(|e| e.to_string())
}

fn create_topic_as(namesrv: &str, who: (&str, &str), topic: &str) -> Result<(), String> {
    let (ns, topic) = (namesrv.to_string(), topic.to_string());
    let (ak, sk) = (who.0.to_string(), who.1.to_string());
    block_on(None, async move {
        let admin = Admin::new(client(&ns, (&ak, &sk))?);
        admin
            .create_topic(&TopicSpec::new(topic.clone(), 4), None)
            .await
            .map(|_| ())
    })
    .expect("executor")
    .map_err(|e| e.to_string())
}

fn write_acl(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("plain_acl.yml");
    // Write-then-rename, as an editor or a config tool would: a reload never sees half a file.
    let tmp = dir.join("plain_acl.yml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
    p
}

#[test]
fn signed_accounts_get_what_their_permissions_allow_and_nothing_else() {
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let file = write_acl(dir.path(), &acl_file("", ""));
    let b = start(&file);
    let ns = b.namesrv();

    // Topic creation is admin-only.
    let e = create_topic_as(&ns, PRODUCER, TOPIC).unwrap_err();
    assert!(
        e.contains("Need admin permission for request code=17, but accessKey=producer01 is not"),
        "{e}"
    );
    let e = create_topic_as(&ns, (ADMIN.0, "not-the-secret"), TOPIC).unwrap_err();
    assert!(
        e.contains("Check signature failed for accessKey=rjadmin01"),
        "{e}"
    );
    create_topic_as(&ns, ADMIN, TOPIC).expect("the admin creates the topic");
    ops::wait_route(b.namesrv_addr(), TOPIC, 1, WAIT);

    // The producer may publish to its topic, and only there.
    let sent = send_as(&ns, PRODUCER, TOPIC, 20);
    assert!(sent.iter().all(|r| r.is_ok()), "{sent:?}");
    let other = send_as(&ns, PRODUCER, "acl_elsewhere", 1);
    let e = other[0].as_ref().unwrap_err();
    assert!(
        e.contains("No PUB permission for topic acl_elsewhere (has DENY)"),
        "{e}"
    );
    // The consumer may not publish.
    let e = send_as(&ns, CONSUMER, TOPIC, 1).remove(0).unwrap_err();
    assert!(
        e.contains("No PUB permission for topic acl_orders (has SUB)"),
        "{e}"
    );

    // The consumer reads every message in its group; another group is refused, as is the
    // producer.
    let mut bodies = pull_as(&ns, CONSUMER, "readers").expect("consumer pull");
    bodies.sort_by_key(|b| b[2..].parse::<usize>().unwrap());
    let want: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    assert_eq!(bodies, want);
    let e = pull_as(&ns, CONSUMER, "strangers").unwrap_err();
    assert!(
        e.contains("No SUB permission for group strangers (has DENY)"),
        "{e}"
    );
    let e = pull_as(&ns, PRODUCER, "readers").unwrap_err();
    assert!(e.contains("No SUB permission for topic acl_orders"), "{e}");
    // POP (POP_MESSAGE, BATCH_ACK_MESSAGE) asks the same permissions; setting a group's
    // consume mode is admin-only.
    let mut popped = pop_as(&ns, CONSUMER, "readers").expect("consumer pop");
    popped.sort_by_key(|b| b[2..].parse::<usize>().unwrap());
    assert_eq!(
        popped, want,
        "the pull group's offsets do not bind a fresh pop: \
        the pulls above committed nothing"
    );
    let e = pop_as(&ns, CONSUMER, "strangers").unwrap_err();
    assert!(e.contains("No SUB permission for group strangers"), "{e}");
    let e = pop_as(&ns, PRODUCER, "readers").unwrap_err();
    assert!(e.contains("No SUB permission for topic acl_orders"), "{e}");
    let mode =
        serde_json::json!({"topic": TOPIC, "consumerGroup": "readers", "mode": "POP"}).to_string();
    let mut c = ops::connect(b.shard_addr(0));
    let r = ops::call_signed(&mut c, 401, &[], mode.as_bytes(), CONSUMER);
    assert_refused(
        &r,
        "Need admin permission for request code=401, but accessKey=consumer01 is not",
    );
    let r = ops::call_signed(&mut c, 401, &[], mode.as_bytes(), ADMIN);
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);

    // Unsigned, unknown account, tampered body: refused on the wire with the reason, and
    // nothing is stored.
    let mut c = ops::connect(b.shard_addr(0));
    let msg = OutMessage::new(b"unsigned".to_vec());
    let props = String::from_utf8(msg.properties()).unwrap();
    let ext = [
        ("a", "acl_pg".to_string()),
        ("b", TOPIC.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", "0".to_string()),
        ("f", "0".to_string()),
        ("g", ops::now_ms().to_string()),
        ("h", "0".to_string()),
        ("i", props),
    ];
    let r = c.call(request::SEND_MESSAGE_V2, &ext, b"unsigned").unwrap();
    assert_refused(&r, "No accessKey is configured");
    let r = ops::call_signed(
        &mut c,
        request::SEND_MESSAGE_V2,
        &ext,
        b"signed",
        ("nobody007", "whatever1"),
    );
    assert_refused(&r, "No acl config for nobody007");
    // Signed for one body, sent with another.
    let mut fields: Vec<(&str, String)> = ext.to_vec();
    fields.push((ACCESS_KEY, PRODUCER.0.to_string()));
    let sig = Signer::new(PRODUCER.1)
        .sign(fields.iter().map(|(k, v)| (*k, v.as_str())), b"original")
        .unwrap();
    fields.push((SIGNATURE, sig.as_str().to_string()));
    let r = c
        .call(request::SEND_MESSAGE_V2, &fields, b"tampered")
        .unwrap();
    assert_refused(&r, "Check signature failed for accessKey=producer01");
    // The same signature with the body it was made for is accepted: the check is the
    // signature, not the account.
    let r = c
        .call(request::SEND_MESSAGE_V2, &fields, b"original")
        .unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let r = ops::call_signed(
        &mut c,
        request::GET_MAX_OFFSET,
        &[("topic", TOPIC.to_string()), ("queueId", "0".to_string())],
        &[],
        CONSUMER,
    );
    assert_eq!(r.code, response::SUCCESS);
    let total: i64 = (0..4)
        .map(|q| {
            let r = ops::call_signed(
                &mut c,
                request::GET_MAX_OFFSET,
                &[("topic", TOPIC.to_string()), ("queueId", q.to_string())],
                &[],
                CONSUMER,
            );
            r.ext_i64("offset")
        })
        .sum();
    assert_eq!(total, 21, "20 client sends and the one signed wire send");

    // Every refusal above was counted: 2 topic creations, 1 + 1 sends, 2 pulls
    // (at least one each), 3 wire requests.
    let denied = counter(&b, "ramjet.aclDenied");
    assert!(denied >= 9, "ramjet.aclDenied = {denied}");
    assert_eq!(counter(&b, "ramjet.aclAccounts"), 3);
    assert!(
        b.log_text().contains("ACL refused request code"),
        "refusals are logged"
    );
}

#[test]
fn the_accounts_file_is_reloaded_when_it_changes() {
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let file = write_acl(dir.path(), &acl_file("", ""));
    let b = start(&file);
    let ns = b.namesrv();
    create_topic_as(&ns, ADMIN, "acl_later").unwrap();
    ops::wait_route(b.namesrv_addr(), "acl_later", 1, WAIT);
    let e = send_as(&ns, PRODUCER, "acl_later", 1)
        .remove(0)
        .unwrap_err();
    assert!(e.contains("No PUB permission for topic acl_later"), "{e}");

    // Grant it: within a few reload intervals the same send goes through.
    write_acl(dir.path(), &acl_file(", acl_later=PUB|SUB", ""));
    let deadline = Instant::now() + WAIT;
    loop {
        if send_as(&ns, PRODUCER, "acl_later", 1)[0].is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the changed file was not loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(counter(&b, "ramjet.aclReloads") >= 1);

    // A broken file: logged, the accounts before it stay.
    write_acl(dir.path(), "accounts:\n  - accessKey: [broken\n");
    let deadline = Instant::now() + WAIT;
    while counter(&b, "ramjet.aclReloadFailures") < 1 {
        assert!(Instant::now() < deadline, "the broken file was not noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        b.log_text()
            .contains("the accounts loaded before stay in force"),
        "{}",
        b.log_tail()
    );
    assert!(send_as(&ns, PRODUCER, "acl_later", 1)[0].is_ok());
}

#[test]
fn a_globally_white_listed_peer_needs_no_key() {
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let file = write_acl(dir.path(), &acl_file("", "127.0.0.*"));
    let b = start(&file);
    let mut c = ops::connect(b.shard_addr(0));
    let r = ops::create_topic(&mut c, "acl_white", 2).unwrap();
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    let s = ops::send(&mut c, "acl_white", 0, &OutMessage::new(b"w".to_vec()))
        .unwrap()
        .expect_ok("white-listed send");
    assert_eq!(s.queue_offset, 0);
}

#[test]
fn a_missing_acl_file_stops_the_start_with_its_path() {
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let missing = dir.path().join("nowhere").join("plain_acl.yml");
    let out = std::process::Command::new(ramjet_tests::setup::ramjet_bin())
        .args(["start", "--shards", "1", "--namesrv-listen"])
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--acl")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broker.acl_enable is on, but cannot read")
            && err.contains(&missing.display().to_string()),
        "{err}"
    );
}

/// A slave of a master with ACL copies the master's topics with its own account
/// (`broker.acl_access_key`), and a slave without one is refused and says so.
#[test]
fn a_slave_signs_its_copies_from_an_acl_master() {
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let file = write_acl(dir.path(), &acl_file("", ""));
    let ns = Broker::start(BrokerSpec::namesrv_only());
    let mut mspec = BrokerSpec::broker_only(ns.namesrv_addr(), "aclrep").acl(&file);
    mspec.broker_toml.push_str("slave_sync_interval_ms = 200\n");
    let m = Broker::start(mspec);
    let slave_toml = |keys: &str| {
        let mut s = BrokerSpec::broker_only(ns.namesrv_addr(), "aclrep");
        s.broker_toml = format!("role = \"slave\"\nslave_sync_interval_ms = 200\n{keys}");
        s
    };
    let s = Broker::start(slave_toml(&format!(
        "acl_access_key = \"{}\"\nacl_secret_key = \"{}\"\n",
        CONSUMER.0, CONSUMER.1
    )));
    let mut c = ops::connect(m.shard_addr(0));
    let r = ops::call_signed(
        &mut c,
        request::UPDATE_AND_CREATE_TOPIC,
        &ops::create_topic_ext("acl_copied", 2),
        &[],
        ADMIN,
    );
    assert_eq!(r.code, response::SUCCESS, "{:?}", r.remark);
    // The slave serves its copy to anyone on its own port (it has no ACL of its own here).
    let deadline = Instant::now() + WAIT;
    let mut sc = ops::connect(s.shard_addr(0));
    loop {
        let r = sc.call(request::GET_ALL_TOPIC_CONFIG, &[], &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if v["topicConfigTable"].get("acl_copied").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slave did not copy the topic; slave log:\n{}",
            s.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
    // Without an account, the master refuses the copies and the slave logs why.
    let unsigned = Broker::start(slave_toml(""));
    let deadline = Instant::now() + WAIT;
    while !unsigned.log_text().contains("No accessKey is configured") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged; slave log:\n{}",
            unsigned.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ramjet admin acl` (the ACL admin requests) on a two-shard broker: an admin creates an
/// account, which can then send at once on the shard that took the request and, after its
/// reload, on the other; a non-admin may not; deleting it refuses its sends again.
#[test]
fn accounts_are_managed_through_the_admin_requests() {
    use ramjet_core::remoting::RequestCode;
    let dir = ramjet_tests::setup::temp_dir("acl-");
    let file = write_acl(dir.path(), &acl_file("", ""));
    let b = Broker::start(BrokerSpec::default().shards(2).acl(&file));
    let ns = b.namesrv();
    create_topic_as(&ns, ADMIN, "acl_managed").unwrap();
    ops::wait_route(b.namesrv_addr(), "acl_managed", 2, WAIT);
    let acl_request = |who: (&str, &str), code: i32, fields: Vec<(String, String)>| {
        let (ns, ak, sk) = (ns.clone(), who.0.to_string(), who.1.to_string());
        block_on(None, async move {
            let admin = Admin::new(client(&ns, (&ak, &sk))?);
            admin
                .acl_request(code, &fields, None)
                .await
                .map(|v| v.len())
        })
        .expect("executor")
        .map_err(|e| e.to_string())
    };
    let newbie = ("newbie007", "newbie-secret");
    let create = vec![
        ("accessKey".to_string(), newbie.0.to_string()),
        ("secretKey".to_string(), newbie.1.to_string()),
        ("topicPerms".to_string(), "acl_managed=PUB".to_string()),
    ];
    let e = acl_request(
        PRODUCER,
        RequestCode::UPDATE_AND_CREATE_ACL_CONFIG,
        create.clone(),
    )
    .unwrap_err();
    assert!(
        e.contains("Need admin permission for request code=50"),
        "{e}"
    );
    assert_eq!(
        acl_request(ADMIN, RequestCode::UPDATE_AND_CREATE_ACL_CONFIG, create),
        Ok(2)
    );
    // Both shards answer for the new account within a reload interval.
    let deadline = Instant::now() + WAIT;
    loop {
        let r = send_as(&ns, newbie, "acl_managed", 8);
        if r.iter().all(|x| x.is_ok()) {
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("newbie007"), "{text}");
    assert_eq!(
        acl_request(
            ADMIN,
            RequestCode::DELETE_ACL_CONFIG,
            vec![("accessKey".to_string(), newbie.0.to_string())]
        ),
        Ok(2),
        "deleting on the second shard of the same file succeeds too"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let r = send_as(&ns, newbie, "acl_managed", 4);
        if r.iter().all(|x| {
            x.as_ref()
                .is_err_and(|e| e.contains("No acl config for newbie007"))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
