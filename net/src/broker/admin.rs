//! Admin requests: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21), GET_BROKER_RUNTIME_INFO (28), QUERY_MESSAGE (12),
//! VIEW_MESSAGE_BY_ID (33).

use std::collections::BTreeMap;
use std::rc::Rc;

use ramjet_core::remoting::body::{fastjson, KVTable};
use ramjet_core::remoting::headers::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, QueryMessageRequestHeader,
    QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use ramjet_core::remoting::{CommandView, FrameHead, RequestCode, ResponseCode, Version};

use super::conn::Conn;
use super::namesrv_host::now_ms;
use super::shard::Broker;
use super::topics::{TopicConfig, MAX_QUEUES_PER_TOPIC};

/// Results of a unique-key query (RocketMQ `defaultQueryMaxNum`).
const UNIQUE_KEY_QUERY_MAX: usize = 32;
/// Upper bound of QUERY_MESSAGE results whatever the client asks.
const QUERY_MAX_RESULTS: usize = 64;

fn bad_header(conn: &Conn, req: &CommandView<'_>, e: impl std::fmt::Display) {
    conn.respond_error(
        req,
        ResponseCode::SYSTEM_ERROR,
        &format!("bad request header: {e}"),
    );
}

pub fn create_topic(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: CreateTopicRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return bad_header(conn, req, e),
    };
    if h.topic == h.default_topic {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "the topic[{}] is conflict with system reserved words.",
                h.topic
            ),
        );
    }
    let qs = [h.read_queue_nums, h.write_queue_nums];
    if qs
        .iter()
        .any(|&q| q <= 0 || q as u32 > MAX_QUEUES_PER_TOPIC)
    {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "queue counts read={} write={} out of range 1..={MAX_QUEUES_PER_TOPIC}",
                h.read_queue_nums, h.write_queue_nums
            ),
        );
    }
    let cfg = TopicConfig {
        topic_name: h.topic.to_string(),
        read_queue_nums: h.read_queue_nums as u32,
        write_queue_nums: h.write_queue_nums as u32,
        perm: h.perm,
        topic_filter_type: h.topic_filter_type.to_string(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order,
        attributes: BTreeMap::new(),
    };
    match b.topics.upsert(cfg) {
        Ok(()) => {
            tracing::info!(shard = b.index, topic = %h.topic, "topic created/updated");
            b.registrar.request_now();
            conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
        }
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

/// UPDATE_AND_CREATE_TOPIC_LIST (18, RocketMQ 5): body `{"topicConfigList": [TopicConfig]}`;
/// every topic is checked before any is written (one refused: none written).
pub fn create_topic_list(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        topic_config_list: Vec<TopicConfig>,
    }
    let body: Body = match serde_json::from_slice(req.body) {
        Ok(b) => b,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("the body is not a CreateTopicListRequestBody: {e}"),
            )
        }
    };
    if b.ha.is_slave() {
        return conn.respond_error(
            req,
            ResponseCode::NO_PERMISSION,
            "Can't modify topic or subscription group from slave broker, please execute it from master broker.",
        );
    }
    if let Some(t) = body
        .topic_config_list
        .iter()
        .find(|t| t.topic_name == super::topics::AUTO_CREATE_TOPIC)
    {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "the topic[{}] is conflict with system reserved words.",
                t.topic_name
            ),
        );
    }
    let names: Vec<String> = body
        .topic_config_list
        .iter()
        .map(|t| t.topic_name.clone())
        .collect();
    match b.topics.upsert_all(body.topic_config_list) {
        Ok(()) => {
            tracing::info!(shard = b.index, topics = ?names, "topics created/updated");
            b.registrar.request_now();
            conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]);
        }
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

pub fn delete_topic(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: DeleteTopicRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return bad_header(conn, req, e),
    };
    let topic = h.topic.to_string();
    if let Err(e) = b.topics.remove(&topic) {
        return conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string());
    }
    b.offsets.remove_topic(&topic);
    b.pop.remove_topic(&topic);
    b.registrar.request_now();
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    crate::runtime::spawn_detached(async move {
        let r = broker.store.delete_topic(&topic).await;
        if oneway {
            return;
        }
        match r {
            Ok(()) => conn.send_frame(
                st,
                &FrameHead::response(ResponseCode::SUCCESS, opaque),
                &(),
                &[],
            ),
            Err(e) => {
                let remark = format!("deleting topic {topic} from the store failed: {e}");
                let head = FrameHead::response(ResponseCode::SYSTEM_ERROR, opaque);
                conn.send_frame(st, &head.with_remark(&remark), &(), &[]);
            }
        }
    });
}

pub fn all_topic_config(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    match serde_json::to_vec(&b.topics.wrapper_json()) {
        Ok(body) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &body),
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

/// GET_ALL_CONSUMER_OFFSET: every committed offset of this shard (a slave copies them).
pub fn all_consumer_offsets(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.offsets.wrapper_json();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

/// GET_ALL_DELAY_OFFSET: where the schedule service stands per delay level (a slave copies
/// it).
pub fn all_delay_offsets(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.schedule.wrapper_json();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

/// GET_TIMER_CHECK_POINT: the timer checkpoint on disk (a slave copies it; see
/// `TimerWheel::checkpoint_body` for the layout).
pub fn timer_checkpoint(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let body = b.timer.checkpoint_body();
    conn.respond(req, ResponseCode::SUCCESS, None, &(), &body);
}

/// The ACL admin requests (UPDATE_AND_CREATE_ACL_CONFIG, DELETE_ACL_CONFIG,
/// UPDATE_GLOBAL_WHITE_ADDRS_CONFIG, GET_BROKER_CLUSTER_ACL_INFO, GET_BROKER_CLUSTER_ACL_CONFIG):
/// they change or show this process's accounts file (docs/acl.md).
pub fn acl_admin(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let fail_code = match req.code {
        RequestCode::UPDATE_AND_CREATE_ACL_CONFIG => {
            ResponseCode::UPDATE_AND_CREATE_ACL_CONFIG_FAILED
        }
        RequestCode::DELETE_ACL_CONFIG => ResponseCode::DELETE_ACL_CONFIG_FAILED,
        RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG => {
            ResponseCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED
        }
        _ => ResponseCode::SYSTEM_ERROR,
    };
    let Some(acl) = &b.acl else {
        return conn.respond_error(
            req,
            fail_code,
            "ACL is off on this broker (broker.acl_enable = false): there are no accounts to change or show",
        );
    };
    let done = match req.code {
        RequestCode::UPDATE_AND_CREATE_ACL_CONFIG => {
            super::acl::AccountUpdate::from_request(req).and_then(|u| acl.update_account(&u))
        }
        RequestCode::DELETE_ACL_CONFIG => match req.ext_get("accessKey") {
            Some(ak) => acl.delete_account(ak),
            None => Err("the request names no accessKey".into()),
        },
        RequestCode::UPDATE_GLOBAL_WHITE_ADDRS_CONFIG => {
            let list: Vec<String> = req
                .ext_get("globalWhiteAddrs")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            acl.set_global_white(&list)
        }
        _ => Ok(()),
    };
    if let Err(e) = done {
        return conn.respond_error(req, fail_code, &e);
    }
    let version = acl.version_json();
    let addr = b.addr.to_string();
    let header = [
        ("version", version.as_str()),
        ("brokerName", b.broker_name.as_str()),
        ("brokerAddr", addr.as_str()),
        ("clusterName", b.cluster.as_str()),
    ];
    match req.code {
        RequestCode::GET_BROKER_CLUSTER_ACL_CONFIG => match acl.config_json() {
            Ok(v) => conn.respond(
                req,
                ResponseCode::SUCCESS,
                None,
                &header,
                v.to_string().as_bytes(),
            ),
            Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e),
        },
        RequestCode::GET_BROKER_CLUSTER_ACL_INFO => {
            conn.respond(req, ResponseCode::SUCCESS, None, &header, &[])
        }
        _ => conn.respond(req, ResponseCode::SUCCESS, None, &(), &[]),
    }
}

/// Runtime counters as RocketMQ's KVTable (real values; ramjet-specific keys prefixed).
pub fn runtime_table(b: &Broker) -> BTreeMap<String, String> {
    let s = b.store.stats();
    let c = &b.counters;
    let d = &b.delivery;
    let l = &b.listeners;
    let lp = b.longpoll.stats();
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    put("brokerVersion", Version::CURRENT.to_string());
    put(
        "brokerVersionDesc",
        format!("ramjet {}", env!("CARGO_PKG_VERSION")),
    );
    put("bootTimestamp", b.boot_ms.to_string());
    put("runtime", format!("{} ms", now_ms() - b.boot_ms));
    put("msgPutTotalTodayNow", c.msgs_put.get().to_string());
    put("msgGetTotalTodayNow", c.msgs_got.get().to_string());
    put("commitLogMinOffset", s.commitlog_min_offset.to_string());
    put("commitLogMaxOffset", s.commitlog_end_offset.to_string());
    put("commitLogDiskRatio", format!("{:.4}", s.disk_used_ratio));
    put("ramjet.shard", b.index.to_string());
    // Write buffers still being mapped in the background after start (process-wide): a
    // benchmark waits for 0 so that the mapping does not share its CPUs.
    put(
        "ramjet.prefaultBacklog",
        ramjet_storage::prefault_backlog().to_string(),
    );
    let ha = &b.ha;
    put(
        "brokerRole",
        if ha.is_slave() {
            "SLAVE"
        } else if ha.is_sync() {
            "SYNC_MASTER"
        } else {
            "ASYNC_MASTER"
        }
        .to_string(),
    );
    let hc = &ha.counters;
    put("ramjet.haSlaves", ha.slave_count().to_string());
    put(
        "ramjet.haConfirmedOffset",
        ha.confirmed_offset().to_string(),
    );
    put("ramjet.haMasterOffset", ha.master_offset().to_string());
    put("ramjet.haConnections", hc.connections.get().to_string());
    put(
        "ramjet.haTransfersSent",
        hc.transfers_sent.get().to_string(),
    );
    put("ramjet.haBytesSent", hc.bytes_sent.get().to_string());
    put(
        "ramjet.haTransfersReceived",
        hc.transfers_received.get().to_string(),
    );
    put(
        "ramjet.haBytesReceived",
        hc.bytes_received.get().to_string(),
    );
    put(
        "ramjet.haRecordsReceived",
        hc.records_received.get().to_string(),
    );
    put(
        "ramjet.haSlaveTimeouts",
        hc.slave_timeouts.get().to_string(),
    );
    put(
        "ramjet.haSlaveNotAvailable",
        hc.slave_not_available.get().to_string(),
    );
    put("ramjet.haSyncs", hc.syncs.get().to_string());
    put("ramjet.haColdReads", hc.cold_reads.get().to_string());
    if let Some(acl) = &b.acl {
        put("ramjet.aclAccounts", acl.accounts().to_string());
        put("ramjet.aclDenied", acl.denied.get().to_string());
        put("ramjet.aclReloads", acl.reloads.get().to_string());
        put(
            "ramjet.aclReloadFailures",
            acl.reload_failures.get().to_string(),
        );
    }
    put("ramjet.msgsPutFailed", c.msgs_put_failed.get().to_string());
    put("ramjet.sendsHeld", c.sends_held.get().to_string());
    put("ramjet.repliesPushed", c.replies_pushed.get().to_string());
    put(
        "ramjet.repliesUnpushed",
        c.replies_unpushed.get().to_string(),
    );
    let tx = &b.transactions;
    put("ramjet.transactionHalf", tx.halves.get().to_string());
    put("ramjet.transactionCommit", tx.commits.get().to_string());
    put("ramjet.transactionRollback", tx.rollbacks.get().to_string());
    put("ramjet.transactionChecks", tx.checks.get().to_string());
    put(
        "ramjet.transactionChecksUnsent",
        tx.checks_unsent.get().to_string(),
    );
    put(
        "ramjet.transactionDiscarded",
        tx.discarded.get().to_string(),
    );
    put(
        "ramjet.transactionEndIgnored",
        tx.ends_ignored.get().to_string(),
    );
    put("ramjet.transactionOpen", tx.open_count().to_string());
    put(
        "ramjet.transactionColdReads",
        tx.cold_reads.get().to_string(),
    );
    put(
        "ramjet.sendBackColdReads",
        b.schedule.send_back_cold_reads.get().to_string(),
    );
    put(
        "ramjet.scheduleDelivered",
        b.schedule.delivered.get().to_string(),
    );
    put(
        "ramjet.scheduleOffsets",
        b.schedule
            .offsets()
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    let tw = &b.timer;
    put("ramjet.timerEnqueued", tw.enqueued.get().to_string());
    put("ramjet.timerDelivered", tw.delivered.get().to_string());
    put("ramjet.timerRolled", tw.rolled.get().to_string());
    put("ramjet.timerDropped", tw.dropped.get().to_string());
    put("ramjet.timerRecalled", tw.recalled.get().to_string());
    put("ramjet.timerColdReads", tw.cold_reads.get().to_string());
    if b.ha.is_slave() {
        // A slave replicates the timer queue but never loads it (only masters deliver); it
        // shows the checkpoint it took from its master.
        put("ramjet.timerCheckpoint", tw.describe_persisted());
    } else {
        put("ramjet.timerPending", tw.pending(b).to_string());
        put("ramjet.timerCheckpoint", tw.describe());
    }
    put("ramjet.queueLocks", b.locks.len().to_string());
    let pc = &b.pop.counters;
    put("ramjet.popRequests", pc.pops.get().to_string());
    put("ramjet.popped", pc.popped.get().to_string());
    put("ramjet.popInflight", b.pop.inflight().to_string());
    put("ramjet.popDeadlineKeys", b.pop.deadline_keys().to_string());
    put("ramjet.popAcked", pc.acked.get().to_string());
    put("ramjet.popStale", pc.stale.get().to_string());
    put("ramjet.popInvisibleChanged", pc.changed.get().to_string());
    put("ramjet.popRevived", pc.revived.get().to_string());
    put("ramjet.popRevivedDlq", pc.revived_dlq.get().to_string());
    put(
        "ramjet.popReviveFailures",
        pc.revive_failures.get().to_string(),
    );
    // RocketMQ's keys (mqadmin brokerStatus): per level, "delivered up to,stored up to".
    for (i, delivered) in b.schedule.offsets().iter().enumerate() {
        let max = b
            .store
            .max_offset(ramjet_storage::schedule::SCHEDULE_TOPIC, i as i32);
        put(
            &format!("scheduleMessageOffset_{}", i + 1),
            format!("{delivered},{max}"),
        );
    }
    put(
        "ramjet.sendBackRetry",
        b.schedule.sent_back_retry.get().to_string(),
    );
    put(
        "ramjet.sendBackDlq",
        b.schedule.sent_back_dlq.get().to_string(),
    );
    put(
        "ramjet.scheduleColdReads",
        b.schedule.cold_reads.get().to_string(),
    );
    put("ramjet.pulls", c.pulls.get().to_string());
    put("ramjet.pullsFound", c.pulls_found.get().to_string());
    put("ramjet.bytesPulled", c.bytes_pulled.get().to_string());
    put(
        "ramjet.requestsNotSupported",
        c.not_supported.get().to_string(),
    );
    put("ramjet.bytesIn", d.bytes_in.get().to_string());
    put("ramjet.bytesOut", d.bytes_out().to_string());
    put("ramjet.bytesOutWritev", d.bytes_writev.get().to_string());
    put(
        "ramjet.bytesOutSendfile",
        d.bytes_sendfile.get().to_string(),
    );
    put("ramjet.bytesOutCopied", d.bytes_copied.get().to_string());
    put(
        "ramjet.eagainFallbacks",
        d.eagain_fallbacks.get().to_string(),
    );
    put("ramjet.coldReads", d.cold_reads.get().to_string());
    put("ramjet.coldReadBytes", d.cold_read_bytes.get().to_string());
    put("ramjet.readAheads", d.read_aheads.get().to_string());
    put(
        "ramjet.connectionsOpen",
        l.open_connections.get().to_string(),
    );
    put(
        "ramjet.connectionsAccepted",
        l.accepted_total.get().to_string(),
    );
    put(
        "ramjet.connectionsRefused",
        l.refused_total.get().to_string(),
    );
    put("ramjet.badFrames", l.bad_frames_total.get().to_string());
    put("ramjet.requests", l.requests_total.get().to_string());
    let (ticks, coalesced) = b
        .read_coalesce
        .as_ref()
        .map_or((0, 0), |c| (c.ticks(), c.coalesced_reads()));
    put("ramjet.readTicks", ticks.to_string());
    put("ramjet.coalescedReads", coalesced.to_string());
    put("ramjet.pullsParked", lp.parked.to_string());
    put("ramjet.pullsWoken", lp.woken_total.to_string());
    put("ramjet.pullsTimedOut", lp.timed_out_total.to_string());
    put("ramjet.consumerGroups", b.clients.group_count().to_string());
    put("ramjet.producers", b.clients.producer_count().to_string());
    put("ramjet.fdatasyncCount", s.fdatasync_count.to_string());
    put("ramjet.flushCount", s.flush_count.to_string());
    put("ramjet.segmentsCreated", s.segments_created.to_string());
    put("ramjet.zeroFillsStopped", s.zero_fills_stopped.to_string());
    put("ramjet.syncGroupSplits", s.sync_group_splits.to_string());
    // Durability-path latencies in microseconds (within 1 %), since start and over the last
    // whole 10 s window (a long-running broker's since-start percentiles say little about the
    // last minute): `syncAck` per single send answered under `flush = sync`, from its append
    // to its answer; `fdatasync` per CommitLog fdatasync (as many as `ramjet.fdatasyncCount`);
    // `commitWrite` per flusher write phase.
    let now = std::time::Instant::now();
    let (lat, last) = (b.store.latency(), b.store.latency_last_window(now));
    let ack = b.sync_acks.latency();
    put("ramjet.syncAckCount", ack.count.to_string());
    put("ramjet.commitWriteCount", lat.write_phase.count.to_string());
    for (name, l, w) in [
        ("syncAck", ack, b.sync_acks.latency_last_window(now)),
        ("fdatasync", lat.fdatasync, last.fdatasync),
        ("commitWrite", lat.write_phase, last.write_phase),
    ] {
        for (key, v) in [
            ("P50Us", l.p50_us),
            ("P90Us", l.p90_us),
            ("P99Us", l.p99_us),
            ("P999Us", l.p999_us),
            ("MaxUs", l.max_us),
            ("Last10sCount", w.count),
            ("Last10sP50Us", w.p50_us),
            ("Last10sP99Us", w.p99_us),
            ("Last10sMaxUs", w.max_us),
        ] {
            put(&format!("ramjet.{name}{key}"), v.to_string());
        }
    }
    put("ramjet.bytesAppended", s.bytes_appended.to_string());
    put("ramjet.tailCacheHits", s.tail_cache_hits.to_string());
    put("ramjet.tailCacheMisses", s.tail_cache_misses.to_string());
    put(
        "ramjet.writeBuffersReused",
        s.write_buffers_reused.to_string(),
    );
    put(
        "ramjet.writeBuffersAllocated",
        s.write_buffers_allocated.to_string(),
    );
    put(
        "ramjet.writeBuffersStocked",
        s.write_buffers_stocked.to_string(),
    );
    put(
        "ramjet.writeBuffersReleased",
        s.write_buffers_released.to_string(),
    );
    put("ramjet.putsRefusedBusy", s.puts_refused_busy.to_string());
    put(
        "ramjet.putsRefusedDiskFull",
        s.puts_refused_disk_full.to_string(),
    );
    // Every failed CommitLog write or fdatasync, retries included (the log says it once per
    // 10 s): nonzero means the disk refused data at some point since start.
    put("ramjet.flushFailures", s.flush_failures.to_string());
    put(
        "ramjet.registrationsOk",
        b.registrar.registrations_ok.get().to_string(),
    );
    put(
        "ramjet.registrationsFailed",
        b.registrar.registrations_failed.get().to_string(),
    );
    t
}

pub fn runtime_info(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let table = KVTable {
        table: runtime_table(b),
    };
    match fastjson::to_vec(&table, fastjson::JsonStyle::Standard) {
        Ok(body) => conn.respond(req, ResponseCode::SUCCESS, None, &(), &body),
        Err(e) => conn.respond_error(req, ResponseCode::SYSTEM_ERROR, &e.to_string()),
    }
}

pub fn query_message(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: QueryMessageRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return bad_header(conn, req, e),
    };
    let max = if h.unique_key_query == Some(true) {
        UNIQUE_KEY_QUERY_MAX
    } else {
        (h.max_num.max(1) as usize).min(QUERY_MAX_RESULTS)
    };
    let offsets = b
        .store
        .query_by_key(h.topic, h.key, max, h.begin_timestamp, h.end_timestamp);
    if offsets.is_empty() {
        return conn.respond_error(
            req,
            ResponseCode::QUERY_NOT_FOUND,
            &format!(
                "can not find message, maybe time range not correct; topic {} key {}",
                h.topic, h.key
            ),
        );
    }
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    crate::runtime::spawn_detached(async move {
        let mut body = Vec::new();
        for off in offsets {
            match broker.store.read_record(off).await {
                Ok(rec) => body.extend_from_slice(&rec),
                Err(e) => tracing::debug!(offset = off, error = %e, "indexed record unreadable"),
            }
        }
        if oneway {
            return;
        }
        let stats = broker.store.stats();
        let header = QueryMessageResponseHeader {
            index_last_update_timestamp: now_ms(),
            index_last_update_phyoffset: stats.commitlog_end_offset as i64,
        };
        let code = if body.is_empty() {
            ResponseCode::QUERY_NOT_FOUND
        } else {
            ResponseCode::SUCCESS
        };
        conn.send_frame(st, &FrameHead::response(code, opaque), &header, &body);
    });
}

pub fn view_message(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    let h: ViewMessageRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => return bad_header(conn, req, e),
    };
    if h.offset < 0 {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!("bad offset {}", h.offset),
        );
    }
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque, oneway) = (req.serialize_type, req.opaque, req.is_oneway());
    let offset = h.offset as u64;
    crate::runtime::spawn_detached(async move {
        let r = broker.store.read_record(offset).await;
        if oneway {
            return;
        }
        match r {
            Ok(rec) => conn.send_frame(
                st,
                &FrameHead::response(ResponseCode::SUCCESS, opaque),
                &(),
                &rec,
            ),
            Err(e) => {
                let remark = format!("can not find message by the offset {offset}: {e}");
                let head = FrameHead::response(ResponseCode::SYSTEM_ERROR, opaque);
                conn.send_frame(st, &head.with_remark(&remark), &(), &[]);
            }
        }
    });
}
