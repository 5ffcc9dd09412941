//! Helpers for tests that drive the project's own Rust client (`ramjet_net::client`).

use std::cell::RefCell;
use std::rc::Rc;

use ramjet_net::client::{
    Client, ClientConfig, ConsumeResult, Message, Producer, PushConsumer, PushConsumerConfig,
    SendStatus,
};

/// Bodies seen by one consumer, in arrival order.
pub type Seen = Rc<RefCell<Vec<String>>>;

pub fn new_client(namesrv: &str) -> Client {
    Client::new(ClientConfig::new(namesrv).unwrap_or_else(|e| panic!("client config: {e}")))
}

/// Starts a push consumer whose handler records each body (and answers Success).
pub async fn start_recording(client: Client, cfg: PushConsumerConfig) -> (PushConsumer, Seen) {
    let seen: Seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let consumer = PushConsumer::start(
        client,
        cfg,
        Rc::new(move |m| {
            s.borrow_mut()
                .push(String::from_utf8_lossy(&m.body).into_owned());
            ConsumeResult::Success
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("start consumer: {e}"));
    (consumer, seen)
}

/// Sends each body to `topic`, one sync send after another; fails the test on any refusal.
pub async fn send_bodies(producer: &Producer, topic: &str, bodies: &[String]) {
    for b in bodies {
        let r = producer
            .send(Message::new(topic, b.clone().into_bytes()))
            .await
            .unwrap_or_else(|e| panic!("send {b}: {e}"));
        assert_eq!(r.status, SendStatus::SendOk, "send {b}");
    }
}

/// A push consumer of `group` on `topic` from the first offset, with short pauses
/// (200 ms long polls, 300 ms rebalance and offset persist intervals) so tests run fast.
pub fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    let mut cfg = PushConsumerConfig::new(group, topic);
    cfg.consume_from = ramjet_net::client::ConsumeFrom::First;
    cfg.suspend = std::time::Duration::from_millis(200);
    cfg.rebalance_interval = std::time::Duration::from_millis(300);
    cfg.persist_interval = std::time::Duration::from_millis(300);
    cfg
}
