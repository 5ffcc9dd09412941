#!/usr/bin/env python3
"""Drives the real RocketMQ C++ client (PyPI `rocketmq` 0.4.4, librocketmq) against a ramjet broker.

Started by the Rust end-to-end tests (tests/tests/interop_cpp.rs). Every command reads its input
from a JSON spec file and writes one JSON document to --out; the Rust side asserts on it. Every wait
is bounded by --deadline-s; the Rust side also kills this process when its own bound passes.

Commands:
  roundtrip  start a push consumer (group, topic, '*'; orderly when the spec says so), let it
             settle, send the spec's messages with their modes (sync, async, oneway, batch,
             orderly: to queue `arg` % queues), then collect deliveries until every sent message
             arrived (plus a short quiet period to catch duplicates) or the deadline.
  pull       start a pull consumer, find the topic's queue `queue_id`, pull from `offset` until
             `count` messages arrived, NO_NEW_MSG, or the deadline.
  retry      like roundtrip (sync sends), but the listener answers RECONSUME_LATER to the first
             delivery of each body in `fail_first`; collects deliveries until `expected`
             arrived (plus the quiet period) or the deadline. The client then sends the message
             back (CONSUMER_SEND_MSG_BACK) and receives it again from %RETRY%<group>.

Bodies are ASCII: the C++ binding reads bodies as NUL-terminated strings.
"""

import argparse
import ctypes
import json
import sys
import threading
import time
import traceback

from rocketmq.client import Message, Producer, PushConsumer, PullConsumer, RecvMessage
from rocketmq.exceptions import ffi_check
from rocketmq.ffi import dll, _CMessageQueue, _CPullStatus

LOG_LEVEL_WARN = 3


def now():
    return time.monotonic()


def as_text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def build_message(topic, item):
    msg = Message(topic)
    if item.get("tags"):
        msg.set_tags(item["tags"])
    if item.get("keys"):
        msg.set_keys(item["keys"])
    for name, value in sorted(item.get("props", {}).items()):
        msg.set_property(name, value)
    msg.set_body(item["body"])
    return msg


def describe(recv, prop_names):
    return {
        "topic": recv.topic,
        "body": as_text(recv.body),
        "tags": as_text(recv.tags),
        "keys": as_text(recv.keys),
        "props": {name: as_text(recv.get_property(name)) for name in prop_names},
        "queue_id": recv.queue_id,
        "queue_offset": recv.queue_offset,
        "commit_log_offset": recv.commit_log_offset,
        "msg_id": recv.id,
        "reconsume_times": recv.reconsume_times,
        "store_size": recv.store_size,
    }


def send_all(producer, topic, items, deadline, errors):
    """Sends items in order, grouping consecutive 'batch' items into one send_batch call."""
    sent = []
    async_done = threading.Event()
    async_lock = threading.Lock()
    async_pending = [0]

    def async_finished():
        with async_lock:
            async_pending[0] -= 1
            if async_pending[0] == 0:
                async_done.set()

    index = 0
    while index < len(items):
        item = items[index]
        mode = item["mode"]
        record = {"index": index, "mode": mode, "status": None, "msg_id": None, "offset": None}
        try:
            if mode == "sync":
                res = producer.send_sync(build_message(topic, item))
                record.update(status=int(res.status), msg_id=res.msg_id, offset=res.offset)
                sent.append(record)
                index += 1
            elif mode == "async":
                with async_lock:
                    async_pending[0] += 1
                    async_done.clear()

                def on_ok(res, record=record):
                    record.update(status=int(res.status), msg_id=res.msg_id, offset=res.offset)
                    async_finished()

                def on_err(exc, record=record):
                    record.update(status=-1, error=str(exc))
                    async_finished()

                producer.send_async(build_message(topic, item), on_ok, on_err)
                sent.append(record)
                index += 1
            elif mode == "orderly":
                # The binding's hashing selector: queue = arg % queue count.
                res = producer.send_orderly(build_message(topic, item), int(item["arg"]))
                record.update(status=int(res.status), msg_id=res.msg_id, offset=res.offset)
                sent.append(record)
                index += 1
            elif mode == "oneway":
                producer.send_oneway(build_message(topic, item))
                record.update(status=0)
                sent.append(record)
                index += 1
            elif mode == "batch":
                end = index
                while end < len(items) and items[end]["mode"] == "batch" \
                        and items[end].get("batch_id") == item.get("batch_id"):
                    end += 1
                msgs = [build_message(topic, it) for it in items[index:end]]
                res = producer.send_batch(msgs)
                for j in range(index, end):
                    sent.append({"index": j, "mode": "batch", "status": int(res.status),
                                 "msg_id": res.msg_id, "offset": res.offset})
                index = end
            else:
                raise ValueError("unknown send mode %r" % mode)
        except Exception as exc:  # recorded, the Rust side fails the test with it
            errors.append("send %d (%s) failed: %s" % (index, mode, exc))
            record.update(status=-1, error=str(exc))
            sent.append(record)
            index += 1
    with async_lock:
        pending = async_pending[0]
    if pending > 0 and not async_done.wait(max(0.0, deadline - now())):
        errors.append("%d async sends got no callback before the deadline" % async_pending[0])
    return sent


def apply_credentials(client, spec, key):
    """ACL: sign every request with spec[key] = {"access_key", "secret_key"} when given."""
    cred = spec.get(key)
    if cred:
        client.set_session_credentials(cred["access_key"], cred["secret_key"],
                                       cred.get("channel", "ALIYUN"))


def new_push_consumer(args, spec, threads, orderly=False):
    """A push consumer of the spec's group with its logs in --log-dir (not started)."""
    consumer = PushConsumer(spec["consumer_group"], orderly=orderly)
    consumer.set_namesrv_addr(args.namesrv)
    apply_credentials(consumer, spec, "consumer_credentials")
    dll.SetPushConsumerLogPath(consumer._handle, (args.log_dir + "/push.log").encode())
    dll.SetPushConsumerLogLevel(consumer._handle, LOG_LEVEL_WARN)
    consumer.set_thread_count(threads)
    return consumer


def start_producer(args, spec):
    """A started producer of the spec's group with its logs in --log-dir."""
    producer = Producer(spec["producer_group"], timeout=3000)
    producer.set_namesrv_addr(args.namesrv)
    apply_credentials(producer, spec, "producer_credentials")
    dll.SetProducerLogPath(producer._handle, (args.log_dir + "/producer.log").encode())
    dll.SetProducerLogLevel(producer._handle, LOG_LEVEL_WARN)
    producer.start()
    return producer


def send_and_collect(args, spec, out, consumer, items, deadline, errors, done, missing,
                     lock, received):
    """Sends `items` with a new producer, waits for `done` (else records `missing`), keeps a
    quiet period in which a duplicate delivery would show up, then shuts both sides down."""
    producer = start_producer(args, spec)
    out["sent"] = send_all(producer, spec["topic"], items, deadline, errors)
    out["errors"] = errors
    if not done.wait(max(0.0, deadline - now())):
        errors.append(missing)
    else:
        time.sleep(min(spec.get("quiet_s", 1.5), max(0.0, deadline - now())))
    with lock:
        out["received"] = list(received)
    producer.shutdown()
    consumer.shutdown()


def cmd_roundtrip(args, spec, out):
    deadline = now() + args.deadline_s
    topic = spec["topic"]
    items = spec["messages"]
    prop_names = spec.get("prop_names", [])
    errors = []
    received = []
    lock = threading.Lock()
    expected_bodies = set(it["body"] for it in items)
    seen_all = threading.Event()

    def on_message(recv):
        info = describe(recv, prop_names)
        with lock:
            received.append(info)
            got = set(r["body"] for r in received)
            if expected_bodies <= got:
                seen_all.set()

    # orderly: the C++ client's orderly push consumer, which consumes a queue only while it
    # holds the queue's lock at the broker (LOCK_BATCH_MQ).
    consumer = new_push_consumer(args, spec, 2, orderly=bool(spec.get("orderly")))
    consumer.subscribe(topic, on_message, spec.get("expression", "*"))
    consumer.start()
    out["consumer_started_s"] = args.deadline_s - (deadline - now())
    time.sleep(spec.get("settle_s", 3.0))

    send_and_collect(args, spec, out, consumer, items, deadline, errors, seen_all,
                     "not every sent message was delivered before the deadline", lock, received)


def cmd_retry(args, spec, out):
    deadline = now() + args.deadline_s
    topic = spec["topic"]
    fail_first = set(spec["fail_first"])
    expected = spec["expected"]
    received = []
    lock = threading.Lock()
    enough = threading.Event()
    started = now()

    # The binding's own wrapper turns a raised exception into CONSUME_SUCCESS (ctypes returns 0
    # from a callback that raises), so the listener is registered raw: 1 = RECONSUME_LATER.
    def on_message(_consumer, msg):
        recv = RecvMessage(msg)
        info = describe(recv, [])
        info["retry_topic"] = as_text(recv.get_property("RETRY_TOPIC"))
        info["at_s"] = now() - started
        with lock:
            received.append(info)
            if len(received) >= expected:
                enough.set()
        if info["body"] in fail_first and recv.reconsume_times == 0:
            return 1
        return 0

    consumer = new_push_consumer(args, spec, 1)
    ffi_check(dll.Subscribe(consumer._handle, topic.encode(), b"*"))
    consumer._register_callback(on_message)
    consumer.start()
    time.sleep(spec.get("settle_s", 3.0))

    send_and_collect(args, spec, out, consumer, spec["messages"], deadline, [], enough,
                     "fewer deliveries than expected before the deadline", lock, received)


def cmd_pull(args, spec, out):
    deadline = now() + args.deadline_s
    topic = spec["topic"]
    prop_names = spec.get("prop_names", [])
    consumer = PullConsumer(spec["consumer_group"])
    consumer.set_namesrv_addr(args.namesrv)
    dll.SetPullConsumerLogPath(consumer._handle, (args.log_dir + "/pull.log").encode())
    dll.SetPullConsumerLogLevel(consumer._handle, LOG_LEVEL_WARN)
    consumer.start()

    queues_ptr = ctypes.POINTER(_CMessageQueue)()
    queue_count = ctypes.c_int()
    rc = dll.FetchSubscriptionMessageQueues(consumer._handle, topic.encode(),
                                            ctypes.pointer(queues_ptr), ctypes.pointer(queue_count))
    if rc != 0:
        raise RuntimeError("FetchSubscriptionMessageQueues(%s) failed with status %d" % (topic, rc))
    queues = [queues_ptr[i] for i in range(queue_count.value)]
    out["queues"] = [{"broker": q.brokerName.decode(), "queue_id": q.queueId} for q in queues]
    wanted = [q for q in queues if q.queueId == spec["queue_id"]
              and (spec.get("broker") is None or q.brokerName.decode() == spec["broker"])]
    if not wanted:
        raise RuntimeError("queue %s of topic %s is not in the route: %s"
                           % (spec["queue_id"], topic, out["queues"]))
    mq = _CMessageQueue()
    ctypes.memmove(ctypes.byref(mq), ctypes.byref(wanted[0]), ctypes.sizeof(_CMessageQueue))
    dll.ReleaseSubscriptionMessageQueue(queues_ptr)

    offset = spec["offset"]
    results = []
    messages = []
    while now() < deadline and len(messages) < spec["count"]:
        res = dll.Pull(consumer._handle, ctypes.pointer(mq), spec.get("expression", "*").encode(),
                       ctypes.c_longlong(offset), spec.get("max_num", 32))
        entry = {"status": int(res.pullStatus), "request_offset": offset,
                 "next_begin_offset": res.nextBeginOffset, "min_offset": res.minOffset,
                 "max_offset": res.maxOffset, "count": int(res.size)}
        results.append(entry)
        status = int(res.pullStatus)
        if status == _CPullStatus.FOUND.value:
            for i in range(int(res.size)):
                from rocketmq.client import RecvMessage
                messages.append(describe(RecvMessage(res.msgFoundList[i]), prop_names))
        dll.ReleasePullResult(res)
        if status == _CPullStatus.BROKER_TIMEOUT.value:
            time.sleep(0.2)
            continue
        if status in (_CPullStatus.NO_NEW_MSG.value, _CPullStatus.OFFSET_ILLEGAL.value):
            break
        offset = entry["next_begin_offset"]
    out["results"] = results
    out["messages"] = messages
    consumer.shutdown()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["roundtrip", "pull", "retry"])
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--deadline-s", type=float, default=60.0)
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    out = {"command": args.command, "errors": []}
    code = 0
    try:
        if args.command == "roundtrip":
            cmd_roundtrip(args, spec, out)
        elif args.command == "retry":
            cmd_retry(args, spec, out)
        else:
            cmd_pull(args, spec, out)
    except Exception:
        out.setdefault("errors", []).append(traceback.format_exc())
        code = 1
    with open(args.out, "w") as f:
        json.dump(out, f)
    sys.stdout.flush()
    # librocketmq's background threads can hang interpreter shutdown; the result is written.
    import os
    os._exit(code)


if __name__ == "__main__":
    main()
