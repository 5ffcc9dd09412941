//! PULL_MESSAGE (11) / LITE_PULL_MESSAGE (361): RocketMQ statuses and response codes
//! (spec §7.2), tag-hash filtering, piggy-backed commit offset, and long polling.
//!
//! SQL92 subscriptions (`expressionType` SQL92, `broker.enable_property_filter`) are
//! evaluated against each found record's properties; the matching records still go out as
//! chunks (sub-ranges of the tail cache or of the segment files), with cold file ranges read
//! into the page cache off the shard before the properties are read.
//!
//! Found records go out as chunks (tail-cache memory with writev, older data with sendfile),
//! never copied into a response buffer. A pull that finds nothing and may be suspended parks
//! in the [`super::longpoll`] registry and is answered when a message arrives for its queue or
//! its hold time (client's `suspendTimeoutMillis`, at most `long_poll_max_ms`) ends.

use std::rc::Rc;
use std::time::Duration;

use ramjet_core::record::{properties, tag_hash, RecordView};
use ramjet_core::remoting::headers::{PullMessageRequestHeader, PullMessageResponseHeader};
use ramjet_core::remoting::{CommandView, FrameHead, ResponseCode, SerializeType};
use ramjet_core::selector::Selector;
use ramjet_storage::store::{GetResult, GetStatus};
use ramjet_storage::Chunk;

use super::conn::Conn;
use super::shard::{Broker, ShardCounters};
use super::topics::PERM_READ;

/// A subscription's filter: all messages, those whose tags code is in `codes`, or (`sql`)
/// those whose properties satisfy a SQL92 selector (the tags code then passes everything).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TagFilter {
    pub all: bool,
    pub codes: Vec<i64>,
    pub sql: Option<Rc<Selector>>,
}

impl TagFilter {
    pub fn all() -> TagFilter {
        TagFilter {
            all: true,
            codes: Vec::new(),
            sql: None,
        }
    }

    /// A SQL92 subscription.
    pub fn sql(selector: Selector) -> TagFilter {
        TagFilter {
            all: true,
            codes: Vec::new(),
            sql: Some(Rc::new(selector)),
        }
    }

    /// Parses a TAG expression: `*`/empty = all, else tags separated by `||`.
    pub fn parse(expr: &str) -> TagFilter {
        let expr = expr.trim();
        if expr.is_empty() || expr == "*" {
            return TagFilter::all();
        }
        let mut codes: Vec<i64> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(tag_hash)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.is_empty() {
            return TagFilter::all();
        }
        TagFilter {
            all: false,
            codes,
            sql: None,
        }
    }

    /// From a heartbeat's tags set (hashes computed here: the C++ client's codeSet is not).
    pub fn from_tags<'a>(sub_string: &str, tags: impl Iterator<Item = &'a String>) -> TagFilter {
        let mut codes: Vec<i64> = tags.map(|t| tag_hash(t.trim())).collect();
        if codes.is_empty() {
            return TagFilter::parse(sub_string);
        }
        codes.sort_unstable();
        codes.dedup();
        TagFilter {
            all: false,
            codes,
            sql: None,
        }
    }

    pub fn matches(&self, tags_code: i64) -> bool {
        self.all || self.codes.binary_search(&tags_code).is_ok()
    }
}

/// What a pull needs after the request buffer is gone (long polling).
struct PullArgs {
    topic: String,
    group: String,
    queue_id: i32,
    offset: i64,
    max_msgs: u32,
    max_bytes: u32,
    filter: TagFilter,
}

fn map_status(r: &GetResult, req_offset: i64) -> (i32, i64) {
    match r.status {
        GetStatus::Found => (ResponseCode::SUCCESS, r.next_begin_offset),
        GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
            (ResponseCode::PULL_RETRY_IMMEDIATELY, r.next_begin_offset)
        }
        GetStatus::NoMessageInQueue => {
            if req_offset == 0 {
                (ResponseCode::PULL_NOT_FOUND, 0)
            } else {
                (ResponseCode::PULL_OFFSET_MOVED, 0)
            }
        }
        GetStatus::OffsetOverflowOne => (ResponseCode::PULL_NOT_FOUND, req_offset),
        GetStatus::OffsetOverflowBadly => (ResponseCode::PULL_OFFSET_MOVED, r.max_offset),
        GetStatus::OffsetTooSmall => (ResponseCode::PULL_OFFSET_MOVED, r.min_offset),
        GetStatus::OffsetFoundNull => (ResponseCode::PULL_NOT_FOUND, r.next_begin_offset),
    }
}

fn run_get(b: &Broker, a: &PullArgs) -> GetResult {
    let f = &a.filter;
    b.store.get_messages(
        &a.topic,
        a.queue_id,
        a.offset,
        a.max_msgs,
        a.max_bytes,
        &|c| f.matches(c),
    )
}

/// Writes the response for `r` (chunks when found); with a SQL92 selector, only the
/// records it matches, read in off the shard first when their file ranges are cold.
fn respond_pull_filtered(
    b: &Broker,
    conn: &Rc<Conn>,
    st: SerializeType,
    opaque: i32,
    mut r: GetResult,
    offset: i64,
    sql: Option<&Rc<Selector>>,
) {
    let Some(sel) = sql.filter(|_| r.status == GetStatus::Found) else {
        return respond_pull(b, conn, st, opaque, r, offset);
    };
    let mut cold = Vec::new();
    if b.cfg.broker.cold_reads_off_shard {
        for c in &r.chunks {
            if let Chunk::File { file, offset, len } = c {
                super::warm::push_if_cold(file, *offset, u64::from(*len), &mut cold);
            }
        }
    }
    if cold.is_empty() {
        keep_matching(b, &mut r, sel);
        return respond_pull(b, conn, st, opaque, r, offset);
    }
    let Some(broker) = b.rc() else { return };
    let (conn, sel) = (conn.clone(), sel.clone());
    crate::runtime::spawn_detached(async move {
        if let Err(e) = crate::runtime::blocking(move || super::warm::read_in(&cold)).await {
            tracing::debug!(shard = broker.index, error = %e, "reading records in for a SQL92 pull failed; read on the shard");
        }
        keep_matching(&broker, &mut r, &sel);
        respond_pull(&broker, &conn, st, opaque, r, offset);
    });
}

/// The bytes of `chunk`: the tail cache's, or those of its file range read into `scratch`.
pub(super) fn chunk_bytes<'a>(
    chunk: &'a Chunk,
    scratch: &'a mut Vec<u8>,
) -> std::io::Result<&'a [u8]> {
    use std::os::unix::fs::FileExt;
    match chunk {
        Chunk::Memory(slice) => Ok(slice.as_ref()),
        Chunk::File { file, offset, len } => {
            scratch.resize(*len as usize, 0);
            file.read_exact_at(scratch, *offset)?;
            Ok(scratch)
        }
    }
}

/// Keeps in `r` the records `sel` matches (chunks narrowed to those records). None left: the
/// status becomes NO_MATCHED_MESSAGE (the client pulls again from the next offset). A range
/// that cannot be read is dropped with a log line, never sent unfiltered.
fn keep_matching(b: &Broker, r: &mut GetResult, sel: &Selector) {
    let mut kept = Vec::with_capacity(r.chunks.len());
    let (mut count, mut bytes) = (0u32, 0u32);
    let mut scratch = Vec::new();
    for chunk in std::mem::take(&mut r.chunks) {
        // Each record of the range: (start in the range, size) when it matches.
        let mut matched = Vec::new();
        let buf = match chunk_bytes(&chunk, &mut scratch) {
            Ok(buf) => buf,
            Err(e) => {
                tracing::error!(shard = b.index, error = %e, "SQL92 pull: records unreadable; skipped");
                continue;
            }
        };
        let mut pos = 0usize;
        while pos < buf.len() {
            let Ok(view) = RecordView::parse(&buf[pos..]) else {
                tracing::error!(
                    shard = b.index,
                    at = pos,
                    "SQL92 pull: unparsable record; rest of the range skipped"
                );
                break;
            };
            let size = view.total_size() as usize;
            if size == 0 {
                break;
            }
            let props = view.properties();
            if sel.matches(|name| properties::get_str(props, name)) {
                matched.push((pos, size));
            }
            pos += size;
        }
        // Adjacent matches go out as one range (one sendfile / iovec, not one per record).
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (at, size) in matched {
            count += 1;
            bytes += size as u32;
            match runs.last_mut() {
                Some((start, len)) if *start + *len == at => *len += size,
                _ => runs.push((at, size)),
            }
        }
        for (at, size) in runs {
            kept.push(match &chunk {
                Chunk::Memory(slice) => Chunk::Memory(slice.sub(at, size)),
                Chunk::File { file, offset, .. } => Chunk::File {
                    file: file.clone(),
                    offset: offset + at as u64,
                    len: size as u32,
                },
            });
        }
    }
    r.chunks = kept;
    r.msg_count = count;
    r.total_bytes = bytes;
    if count == 0 {
        r.status = GetStatus::NoMatchedMessage;
    }
}

/// Writes the response for `r` (chunks when found).
fn respond_pull(
    b: &Broker,
    conn: &Conn,
    st: SerializeType,
    opaque: i32,
    r: GetResult,
    offset: i64,
) {
    let (code, next) = map_status(&r, offset);
    // RocketMQ's slaveReadEnable: a consumer reading what is no longer in memory here is sent
    // to the slave (id 1), the others to the master.
    let cold = r.chunks.iter().any(|c| matches!(c, Chunk::File { .. }));
    let to_slave =
        b.cfg.broker.slave_read_enable && cold && (b.ha.is_slave() || b.ha.slave_count() > 0);
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: match (to_slave, b.ha.is_slave()) {
            (false, _) => 0,
            (true, true) => b.cfg.broker_id(),
            (true, false) => 1,
        },
        next_begin_offset: next,
        min_offset: r.min_offset,
        max_offset: r.max_offset,
        offset_delta: None,
        topic_sys_flag: None,
        group_sys_flag: None,
        forbidden_type: None,
    };
    let head = FrameHead::response(code, opaque).with_remark(r.status.as_str());
    if code == ResponseCode::SUCCESS {
        ShardCounters::add(&b.counters.pulls_found, 1);
        ShardCounters::add(&b.counters.msgs_got, r.msg_count as u64);
        ShardCounters::add(&b.counters.bytes_pulled, r.total_bytes as u64);
        let len = r.total_bytes as usize;
        conn.send_chunks(st, &head, &header, r.chunks, len);
    } else {
        conn.send_frame(st, &head, &header, &[]);
    }
}

/// PULL_OFFSET_MOVED to `offset`, the queue's pending admin reset (RocketMQ 5's OFFSET_RESET
/// status): the client moves its pull and its offset there.
fn respond_reset(
    b: &Broker,
    conn: &Conn,
    st: SerializeType,
    opaque: i32,
    topic: &str,
    queue_id: i32,
    offset: i64,
) {
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: offset,
        min_offset: b.store.min_offset(topic, queue_id),
        max_offset: b.store.max_offset(topic, queue_id),
        offset_delta: None,
        topic_sys_flag: None,
        group_sys_flag: None,
        forbidden_type: None,
    };
    let head =
        FrameHead::response(ResponseCode::PULL_OFFSET_MOVED, opaque).with_remark("OFFSET_RESET");
    conn.send_frame(st, &head, &header, &[]);
}

/// The read queue count of `topic`, or `None` after answering TOPIC_NOT_EXIST or (a topic
/// without read permission) NO_PERMISSION, naming what was forbidden (`verb`: "pulling").
pub(super) fn readable_queues(
    b: &Broker,
    conn: &Conn,
    req: &CommandView<'_>,
    topic: &str,
    verb: &str,
) -> Option<u32> {
    let Some((read_q, _, perm)) = b.topics.queue_info(topic) else {
        conn.respond_error(
            req,
            ResponseCode::TOPIC_NOT_EXIST,
            &format!("topic[{topic}] not exist, apply first please!"),
        );
        return None;
    };
    if perm & PERM_READ == 0 {
        conn.respond_error(
            req,
            ResponseCode::NO_PERMISSION,
            &format!("the topic[{topic}] {verb} message is forbidden"),
        );
        return None;
    }
    Some(read_q)
}

pub fn handle_pull(b: &Broker, conn: &Rc<Conn>, req: &CommandView<'_>) {
    ShardCounters::add(&b.counters.pulls, 1);
    let h: PullMessageRequestHeader = match req.decode_header() {
        Ok(h) => h,
        Err(e) => {
            return conn.respond_error(
                req,
                ResponseCode::SYSTEM_ERROR,
                &format!("bad pull header: {e}"),
            )
        }
    };
    // The group's settings first, as RocketMQ checks them (docs/admin.md).
    if let Err((code, remark)) = b.groups.may_pull(h.consumer_group, || {
        b.clients.is_broadcasting(h.consumer_group)
    }) {
        return conn.respond_error(req, code, &remark);
    }
    let Some(read_q) = readable_queues(b, conn, req, h.topic, "pulling") else {
        return;
    };
    if h.queue_id < 0 || h.queue_id as u32 >= read_q {
        return conn.respond_error(
            req,
            ResponseCode::SYSTEM_ERROR,
            &format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{read_q}] consumer:[{}]",
                h.queue_id,
                h.topic,
                conn.peer()
            ),
        );
    }
    let filter = if h.has_subscription() {
        let ty = h.expression_type.unwrap_or("TAG");
        if ty.eq_ignore_ascii_case("SQL92") {
            if !b.cfg.broker.enable_property_filter {
                return conn.respond_error(
                    req,
                    ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                    "The broker does not support consumer to filter message by SQL92 (broker.enable_property_filter)",
                );
            }
            match Selector::parse(h.subscription.unwrap_or("")) {
                Ok(sel) => TagFilter::sql(sel),
                Err(e) => {
                    return conn.respond_error(
                        req,
                        ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                        &e.to_string(),
                    )
                }
            }
        } else if !ty.eq_ignore_ascii_case("TAG") {
            return conn.respond_error(
                req,
                ResponseCode::SUBSCRIPTION_PARSE_FAILED,
                &format!("expression type {ty} is not supported by this broker (TAG, SQL92)"),
            );
        } else {
            TagFilter::parse(h.subscription.unwrap_or("*"))
        }
    } else {
        match b.clients.subscription(h.consumer_group, h.topic) {
            Some((version, f)) => {
                if version < h.sub_version {
                    return conn.respond_error(
                        req,
                        ResponseCode::SUBSCRIPTION_NOT_LATEST,
                        "the consumer's subscription not latest",
                    );
                }
                f
            }
            None => {
                return conn.respond_error(
                    req,
                    ResponseCode::SUBSCRIPTION_NOT_EXIST,
                    &format!(
                        "the consumer's subscription not exist, group: {} topic: {}",
                        h.consumer_group, h.topic
                    ),
                )
            }
        }
    };
    // An admin reset of this queue (INVOKE_BROKER_TO_RESET_OFFSET) waits for this pull: it is
    // answered PULL_OFFSET_MOVED to the reset offset, and its own commit offset, from before
    // the reset, is dropped.
    if let Some(reset) = b.offsets.take_reset(h.topic, h.consumer_group, h.queue_id) {
        if !req.is_oneway() {
            respond_reset(
                b,
                conn,
                req.serialize_type,
                req.opaque,
                h.topic,
                h.queue_id,
                reset,
            );
        }
        return;
    }
    if h.has_commit_offset() {
        b.offsets
            .commit_from_client(h.topic, h.consumer_group, h.queue_id, h.commit_offset);
    }
    b.offsets
        .note_pull(h.topic, h.consumer_group, h.queue_id, h.queue_offset);
    let max_msgs = h.max_msg_nums.clamp(1, i32::MAX) as u32;
    let max_bytes = h
        .max_msg_bytes
        .filter(|&m| m > 0)
        .map(|m| m as u32)
        .unwrap_or(b.cfg.broker.max_pull_bytes);
    let args = PullArgs {
        topic: h.topic.to_string(),
        // Needed only by a parked pull (set there): no allocation for the others.
        group: String::new(),
        queue_id: h.queue_id,
        offset: h.queue_offset,
        max_msgs,
        max_bytes,
        filter,
    };
    let r = run_get(b, &args);
    let (code, _) = map_status(&r, args.offset);
    let hold_ms = (h.suspend_timeout_millis.max(0) as u64).min(b.cfg.broker.long_poll_max_ms);
    if code != ResponseCode::PULL_NOT_FOUND || !h.has_suspend() || hold_ms == 0 || req.is_oneway() {
        if !req.is_oneway() {
            respond_pull_filtered(
                b,
                conn,
                req.serialize_type,
                req.opaque,
                r,
                args.offset,
                args.filter.sql.as_ref(),
            );
        }
        return;
    }
    let Some(parked) = b.longpoll.park(
        &args.topic,
        args.queue_id,
        args.offset,
        Duration::from_millis(hold_ms),
    ) else {
        // Registry full: answer now; the client pulls again.
        return respond_pull_filtered(
            b,
            conn,
            req.serialize_type,
            req.opaque,
            r,
            args.offset,
            args.filter.sql.as_ref(),
        );
    };
    drop(r);
    let mut args = args;
    args.group = h.consumer_group.to_string();
    let Some(broker) = b.rc() else { return };
    let conn = conn.clone();
    let (st, opaque) = (req.serialize_type, req.opaque);
    crate::runtime::spawn_detached(async move {
        let _ = parked.wait().await;
        if conn.is_closed() {
            return;
        }
        // A reset while it was parked wakes it (see super::reset).
        if let Some(reset) = broker
            .offsets
            .take_reset(&args.topic, &args.group, args.queue_id)
        {
            return respond_reset(
                &broker,
                &conn,
                st,
                opaque,
                &args.topic,
                args.queue_id,
                reset,
            );
        }
        let r = run_get(&broker, &args);
        respond_pull_filtered(
            &broker,
            &conn,
            st,
            opaque,
            r,
            args.offset,
            args.filter.sql.as_ref(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filter_parses_expressions() {
        assert!(TagFilter::parse("*").all);
        assert!(TagFilter::parse("").all);
        let f = TagFilter::parse("TagA || TagB");
        assert!(!f.all);
        assert!(f.matches(2598919));
        assert!(f.matches(2598920));
        assert!(!f.matches(0));
        let g = TagFilter::from_tags("TagA", ["TagA".to_string()].iter());
        assert_eq!(g.codes, vec![2598919]);
    }
}
