//! A slave's copy of its master's metadata (RocketMQ's SlaveSynchronize): every
//! `broker.slave_sync_interval_ms`, the topic table (GET_ALL_TOPIC_CONFIG), the subscription
//! groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG), the consumer
//! offsets (GET_ALL_CONSUMER_OFFSET), the delay offsets (GET_ALL_DELAY_OFFSET) and the timer
//! checkpoint (GET_TIMER_CHECK_POINT) of the master shard, over one kept connection to its
//! main port. Topics make the replicated queues pullable here and are registered with the
//! name servers; consumer offsets let consumers that move to the slave (the master is down)
//! resume where they committed; delay offsets and the timer checkpoint let a slave restarted
//! as master deliver the waiting delayed and timer messages from where its master had durably
//! got to. Both carry the master's CommitLog end below which the copies they count as
//! delivered lie, and are taken only once this slave's log holds that much, durably: a
//! promoted slave may deliver a message again, never skip one whose copy it lacks.

use std::rc::Rc;
use std::time::Duration;

use ramjet_core::remoting::{encode_frame, FrameHead, RequestCode, SerializeType};

use super::HaCounters;
use crate::broker::register::Link;
use crate::broker::shard::Broker;
use crate::runtime;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the periodic copy until cancelled.
pub async fn run(b: Rc<Broker>) {
    let every = Duration::from_millis(b.cfg.broker.slave_sync_interval_ms);
    let mut link: Option<Link> = None;
    loop {
        if let Some(addr) = b.ha.master_addr() {
            if link.as_ref().is_none_or(|l| l.addr() != addr) {
                link = Some(Link::new(addr));
            }
            if let Some(l) = link.as_mut() {
                match sync_once(&b, l).await {
                    Ok(()) => HaCounters::add(&b.ha.counters.syncs, 1),
                    Err(e) => {
                        tracing::warn!(shard = b.index, master = %l.addr(), error = %e, "copying topics and offsets from the master failed")
                    }
                }
            }
        }
        runtime::sleep(every).await;
    }
}

async fn request(b: &Broker, link: &mut Link, code: i32) -> Result<Vec<u8>, String> {
    // Signed with `broker.acl_access_key` when set: the request has no other field and no
    // body, so the signature is the HMAC of the access key alone.
    let (ak, sk) = (&b.cfg.broker.acl_access_key, &b.cfg.broker.acl_secret_key);
    let sig = if ak.is_empty() {
        None
    } else {
        let s = ramjet_core::acl::Signer::new(sk)
            .sign([(ramjet_core::acl::ACCESS_KEY, ak.as_str())], &[])
            .map_err(|e| e.to_string())?;
        Some(s)
    };
    let encode = |out: &mut Vec<u8>, opaque: i32| {
        let head = FrameHead::request(code, opaque);
        match &sig {
            Some(sig) => encode_frame(
                out,
                SerializeType::Json,
                &head,
                &[
                    (ramjet_core::acl::ACCESS_KEY, ak.as_str()),
                    (ramjet_core::acl::SIGNATURE, sig.as_str()),
                ],
                &[],
            ),
            None => encode_frame(out, SerializeType::Json, &head, &(), &[]),
        }
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    link.request(&encode, REQUEST_TIMEOUT)
        .await
        .map(|reply| reply.body.to_vec())
        .map_err(|e| e.to_string())
}

/// One copy of topics and offsets.
pub(crate) async fn sync_once(b: &Broker, link: &mut Link) -> Result<(), String> {
    let topics = request(b, link, RequestCode::GET_ALL_TOPIC_CONFIG).await?;
    if b.topics
        .take_from_master(&topics)
        .map_err(|e| format!("topics: {e}"))?
    {
        tracing::info!(
            shard = b.index,
            topics = b.topics.all().len(),
            "took the master's topics"
        );
        b.registrar.request_now();
    }
    let groups = request(b, link, RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG).await?;
    b.groups
        .take_from_master(&groups)
        .map_err(|e| format!("subscription groups: {e}"))?;
    let offsets = request(b, link, RequestCode::GET_ALL_CONSUMER_OFFSET).await?;
    b.offsets
        .take_from_master(&offsets)
        .map_err(|e| format!("consumer offsets: {e}"))?;
    let delays = request(b, link, RequestCode::GET_ALL_DELAY_OFFSET).await?;
    if b.schedule
        .take_from_master(&delays, b.store.end_offset())
        .map_err(|e| format!("delay offsets: {e}"))?
    {
        b.schedule
            .persist(b)
            .await
            .map_err(|e| format!("writing delay offsets: {e}"))?;
    }
    let timer = request(b, link, RequestCode::GET_TIMER_CHECK_POINT).await?;
    b.timer
        .take_from_master(b, &timer)
        .await
        .map_err(|e| format!("timer checkpoint: {e}"))?;
    Ok(())
}
