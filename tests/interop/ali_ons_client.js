#!/usr/bin/env node
// Drives ali-ons (npm, a RocketMQ remoting client written in JavaScript after the Java client:
// JSON headers, fastjson route bodies) against a ramjet broker.
//
// Started by tests/tests/interop_js.rs. Reads a JSON spec, writes one JSON document to --out;
// the Rust side asserts on it. Every wait is bounded by --deadline-s.
//
// Command:
//   roundtrip  start a push consumer (group, topic, expression), let it settle, send the spec's
//              messages (tags, keys, properties) with a producer, and collect deliveries until
//              `expected` arrived (plus a quiet period to catch duplicates) or the deadline. The
//              listener answers ACTION_RETRY to the first delivery of each body in
//              `fail_first`: the client sends the message back and receives it again from
//              %RETRY%<group>. A message with `delay_level` is sent delayed (DELAY property).
'use strict';

const fs = require('fs');
const { Producer, Consumer, Message } = require('ali-ons');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    if (dflt !== undefined) return dflt;
    throw new Error(`missing ${name}`);
  }
  return process.argv[i + 1];
}

const command = process.argv[2];
const namesrv = arg('--namesrv');
const spec = JSON.parse(fs.readFileSync(arg('--spec'), 'utf8'));
const outPath = arg('--out');
const deadlineMs = Number(arg('--deadline-s', '60')) * 1000;
const started = Date.now();
const out = { command, errors: [] };
const sleep = ms => new Promise(r => setTimeout(r, ms));
// The client logs to the console by default; keep stdout for real failures.
const quiet = { info() {}, warn() {}, debug() {}, error(e) { out.client_errors = (out.client_errors || 0) + 1; } };
const common = {
  // Only used with onsAddr (Aliyun's address service); required by the constructor.
  httpclient: {},
  nameSrv: namesrv,
  accessKeyId: 'ramjet-interop',
  accessKeySecret: 'ramjet-interop',
  onsChannel: 'ALL',
  logger: quiet,
  // Refresh routes every second: the group's retry topic appears once the broker has seen the
  // consumer's heartbeat (the default 30 s would outlast the test).
  pollNameServerInteval: 1000,
};

async function roundtrip() {
  const failFirst = new Set(spec.fail_first || []);
  const received = [];
  const producer = new Producer(Object.assign({}, common, { producerGroup: spec.producer_group }));
  await producer.ready();
  const consumer = new Consumer(Object.assign({}, common, {
    consumerGroup: spec.consumer_group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
    rebalanceInterval: 1000,
    maxReconsumeTimes: 4,
  }));
  consumer.on('error', () => {});
  await consumer.ready();
  consumer.subscribe(spec.topic, spec.expression || '*', async msg => {
    const body = msg.body.toString();
    received.push({
      body,
      topic: msg.topic,
      tags: msg.tags,
      keys: msg.keys,
      props: Object.fromEntries((spec.prop_names || []).map(n => [n, msg.properties[n] || null])),
      retry_topic: msg.properties.RETRY_TOPIC || null,
      origin_msg_id: msg.properties.ORIGIN_MESSAGE_ID || null,
      reconsume_times: msg.reconsumeTimes,
      queue_id: msg.queueId,
      queue_offset: Number(msg.queueOffset),
      at_ms: Date.now() - started,
    });
    if (failFirst.has(body) && msg.reconsumeTimes === 0) return Consumer.ACTION_RETRY;
  });
  await sleep(spec.settle_ms || 3000);
  out.sent = [];
  for (const m of spec.messages) {
    const msg = new Message(spec.topic, m.tags, m.body);
    if (m.keys) msg.keys = m.keys.split(' ');
    for (const [k, v] of Object.entries(m.props || {})) msg.properties[k] = v;
    if (m.delay_level) msg.delayTimeLevel = m.delay_level;
    const sentAt = Date.now() - started;
    const r = await producer.send(msg);
    out.sent.push({
      body: m.body,
      status: r.sendStatus,
      msg_id: r.msgId,
      broker: r.messageQueue.brokerName,
      queue_id: Number(r.messageQueue.queueId),
      queue_offset: Number(r.queueOffset),
      sent_at_ms: sentAt,
    });
  }
  while (received.length < spec.expected && Date.now() - started < deadlineMs) await sleep(50);
  if (received.length < spec.expected) {
    out.errors.push(`${received.length} of ${spec.expected} deliveries before the deadline`);
  } else {
    await sleep(Math.min(spec.quiet_ms || 1500, Math.max(0, deadlineMs - (Date.now() - started))));
  }
  out.received = received;
  await consumer.close();
  await producer.close();
}

(async () => {
  let code = 0;
  try {
    if (command !== 'roundtrip') throw new Error(`unknown command ${command}`);
    await roundtrip();
  } catch (e) {
    out.errors.push(String(e && e.stack || e));
    code = 1;
  }
  fs.writeFileSync(outPath, JSON.stringify(out));
  process.exit(code);
})();
