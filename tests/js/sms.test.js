// The sms channel against a real SMPP server: an SMSC written here with the npm `smpp`
// package (its server side; nobody on the project wrote the protocol code). It decodes what
// arrives (GSM 03.38, UCS-2, concatenated parts reassembled by their UDH), answers with
// message ids, sends delivery receipts, throttles on request and drops connections; the tests
// check what the server made of it through the delivery status, dead-letter and readiness
// routes and the metrics.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import smpp from "smpp";
import { startServer, startRedis, freePort, http, until, uid } from "./helpers.js";

const KEY = "js-service-key-0123456789";
const SYSTEM_ID = "switchyard";
const PASSWORD = "s3cret";

/**
 * A small SMSC. `messages` holds each complete message as decoded here (parts joined in
 * their UDH order); `submits` counts submit_sm per text, so a message sent twice shows.
 * With `crossBind`, each receipt goes out on another bound session than the one that
 * submitted (an SMSC may answer on any bind of the account).
 */
function startSmsc(port, { crossBind = false } = {}) {
  const smsc = { messages: [], submits: new Map(), partSubmits: new Map(), binds: 0, refusedBinds: 0, sessions: new Set(), bound: new Set(), throttled: new Map() };
  const partial = new Map();
  let nextId = 1;
  const receipt = (submitter, pdu, id, text) => {
    const stat = text.includes("UNDELIV") ? "UNDELIV" : text.includes("EXPIRE") ? "EXPIRED" : "DELIVRD";
    const session = (crossBind && [...smsc.bound].find((s) => s !== submitter)) || submitter;
    session.deliver_sm({
      source_addr: pdu.destination_addr,
      destination_addr: pdu.source_addr,
      esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
      short_message: `id:${id} sub:001 dlvr:001 submit date:2612050800 done date:2612050801 stat:${stat} err:000 text:`,
    });
  };
  smsc.server = smpp.createServer((session) => {
    smsc.sessions.add(session);
    session.on("close", () => {
      smsc.sessions.delete(session);
      smsc.bound.delete(session);
    });
    session.on("error", () => {});
    const bind = (pdu) => {
      if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
        smsc.refusedBinds++;
        session.send(pdu.response({ command_status: smpp.ESME_RINVPASWD }));
        session.close();
        return;
      }
      smsc.binds++;
      smsc.bound.add(session);
      smsc.lastBind = pdu;
      session.send(pdu.response({ system_id: "test-smsc" }));
    };
    session.on("bind_transceiver", bind);
    session.on("bind_transmitter", bind);
    session.on("enquire_link", (pdu) => session.send(pdu.response()));
    session.on("unbind", (pdu) => {
      session.send(pdu.response());
      session.close();
    });
    session.on("deliver_sm_resp", () => {});
    session.on("submit_sm", (pdu) => {
      const { message, udh } = pdu.short_message;
      const concat = (udh || []).find((h) => h[0] === 0x00);
      // Throttling answers for texts that ask for them (THROTTLE<n> or QUEUEFULL<n>, n times
      // per marker word), before anything is accepted.
      const marker = /THROTTLE(\d)\w*|QUEUEFULL(\d)\w*/.exec(message);
      if (marker) {
        const key = marker[0];
        const times = Number(marker[1] || marker[2]);
        const seen = smsc.throttled.get(key) || 0;
        if (seen < times) {
          smsc.throttled.set(key, seen + 1);
          const status = marker[1] ? smpp.ESME_RTHROTTLED : smpp.ESME_RMSGQFUL;
          session.send(pdu.response({ command_status: status }));
          return;
        }
      }
      const id = `m${nextId++}`;
      session.send(pdu.response({ message_id: id }));
      smsc.partSubmits.set(message, (smsc.partSubmits.get(message) || 0) + 1);
      let text = message;
      let done = true;
      if (concat) {
        const [, , ref, total, seq] = concat;
        const key = `${pdu.destination_addr}/${ref}`;
        const parts = partial.get(key) || [];
        parts[seq - 1] = message;
        partial.set(key, parts);
        done = parts.filter((p) => p !== undefined).length === total;
        if (done) {
          partial.delete(key);
          text = parts.join("");
        }
      }
      if (done) {
        smsc.messages.push({ to: pdu.destination_addr, from: pdu.source_addr, dataCoding: pdu.data_coding, parts: concat ? concat[3] : 1, text });
        smsc.submits.set(text, (smsc.submits.get(text) || 0) + 1);
      }
      if (pdu.registered_delivery & 0x01) receipt(session, pdu, id, message);
    });
  });
  smsc.listen = () => new Promise((resolve) => smsc.server.listen(port, "127.0.0.1", resolve));
  /** Stops listening and drops every session (the SMSC going away). */
  smsc.drop = () =>
    new Promise((resolve) => {
      smsc.server.close(() => resolve());
      for (const session of smsc.sessions) session.destroy();
    });
  smsc.stop = smsc.drop;
  return smsc;
}

const RULES = `
rules:
  - name: text
    event: sms.test
    title: SMS
    body: "{{data.text}}"
    channels: [sms]
    sms:
      to: "{{data.phone}}"
`;

/** The server's settings for the SMSC on `port`, the rules and password in `dir`. */
const settings = (port, dir) => ({
  SERVICE_API_KEYS: KEY,
  RULES_FILE: path.join(dir, "rules.yaml"),
  SMPP_ADDRESS: `127.0.0.1:${port}`,
  SMPP_SYSTEM_ID: SYSTEM_ID,
  SMPP_PASSWORD_FILE: path.join(dir, "password"),
  SMPP_SOURCE_ADDR: "Switchyard",
  SMPP_MAX_PARTS: "4",
  SMPP_RECONNECT_MAX_MS: "500",
  SMPP_THROTTLE_DELAY_MS: "100",
  // One attempt: a throttled job that used attempts would become a dead letter.
  QUEUE_MAX_ATTEMPTS: "1",
  QUEUE_RATE_LIMIT_SMS: "1000/1s",
});

let smsc;
let server;
let dir;
before(async () => {
  const port = await freePort();
  smsc = startSmsc(port);
  await smsc.listen();
  dir = mkdtempSync(path.join(tmpdir(), "sy-sms-"));
  writeFileSync(path.join(dir, "rules.yaml"), RULES);
  writeFileSync(path.join(dir, "password"), `${PASSWORD}\n`);
  server = await startServer(settings(port, dir));
  await until("the SMPP session to bind", async () => (await http(server.url, "GET", "/ready/sms")).status === 200);
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, "server exits 0 on SIGTERM");
  await smsc.stop();
});

async function send(text, phone = "+4915112345678", url = server.url) {
  const res = await http(url, "POST", "/api/events", { token: KEY, body: { type: "sms.test", userId: uid("u"), data: { text, phone } } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.jobs[0].id;
}

const status = async (job, url = server.url) => http(url, "GET", `/api/admin/deliveries/${encodeURIComponent(job)}`, { token: KEY });

async function settled(job, state, url = server.url) {
  let last;
  await until(`job ${job} to be ${state}`, async () => {
    last = await status(job, url);
    return last.status === 200 && last.body.state === state;
  });
  return last.body;
}

const arrived = (text) => smsc.messages.filter((m) => m.text === text);

async function deadLetter(job) {
  let letter;
  await until(`a dead letter for ${job}`, async () => {
    const res = await http(server.url, "GET", "/api/admin/dead-letters", { token: KEY });
    letter = res.body.deadLetters.find((d) => d.id === job);
    return letter !== undefined;
  });
  return letter;
}

test("GSM 03.38 text arrives as sent, bound as SMPP 3.4 with the secret file's password, and its receipt says delivered", async () => {
  const text = "Your order #42 ships today: 5 € off {next} @ Ånge!";
  const job = await send(text);
  const done = await settled(job, "delivered");
  assert.equal(done.coding, "gsm7");
  assert.equal(done.parts.length, 1);
  assert.match(done.parts[0].messageId, /^m\d+$/);
  const [message] = arrived(text);
  assert.equal(message.dataCoding, 0, "SMSC default alphabet");
  assert.equal(message.to, "4915112345678");
  assert.equal(message.from, "Switchyard");
  assert.equal(smsc.lastBind.interface_version, 0x34);
  const missing = await status("no-such-event.text.sms");
  assert.equal(missing.status, 404);
  assert.match(JSON.stringify(missing.body), /no SMS delivery with this job id/);
  const anonymous = await http(server.url, "GET", `/api/admin/deliveries/${job}`);
  assert.equal(anonymous.status, 401, "the status route needs the service key");
  const metrics = await (await fetch(server.url + "/metrics")).text();
  assert.match(metrics, /switchyard_notification_receipts_total\{[^}]*channel="sms",outcome="delivered"\} [1-9]/);
  // The gauge is refreshed on a timer.
  await until("the readiness gauge", async () => /switchyard_channel_ready\{[^}]*channel="sms"\} 1/.test(await (await fetch(server.url + "/metrics")).text()));
});

test("text outside GSM 03.38 goes as UCS-2 and arrives as sent", async () => {
  const text = "Заказ отправлен ✓ 今日";
  const job = await send(text);
  const done = await settled(job, "delivered");
  assert.equal(done.coding, "ucs2");
  const [message] = arrived(text);
  assert.equal(message.dataCoding, 8);
});

test("long texts are concatenated: 153 septets or 67 UCS-2 characters a part, reassembled as sent", async () => {
  const gsm = Array.from({ length: 40 }, (_, i) => `line ${i};`).join(" ").slice(0, 400);
  const ucs = "Доставка ".repeat(15).slice(0, 140);
  const jobs = [await send(gsm), await send(ucs)];
  const [g, u] = await Promise.all(jobs.map((job) => settled(job, "delivered")));
  assert.deepEqual([g.coding, g.parts.length], ["gsm7", 3]);
  assert.deepEqual([u.coding, u.parts.length], ["ucs2", 3]);
  assert.equal(arrived(gsm).length, 1);
  assert.equal(arrived(gsm)[0].parts, 3);
  assert.equal(arrived(ucs).length, 1);
  assert.equal(arrived(ucs)[0].parts, 3);
});

test("undeliverable and expired receipts are recorded on the status and in the metrics, and make dead letters", async () => {
  const undeliverable = await send("this one is UNDELIV");
  const expired = await send("this one will EXPIRE");
  await settled(undeliverable, "undeliverable");
  const body = await settled(expired, "expired");
  assert.equal(body.parts[0].receipt, "expired");
  const metrics = await (await fetch(server.url + "/metrics")).text();
  assert.match(metrics, /switchyard_notification_receipts_total\{[^}]*channel="sms",outcome="undeliverable"\} 1/);
  assert.match(metrics, /switchyard_notification_receipts_total\{[^}]*channel="sms",outcome="expired"\} 1/);
  const letter = await deadLetter(undeliverable);
  assert.equal(letter.error, "the SMSC's delivery receipt says undeliverable");
  assert.equal(letter.permanent, true);
  assert.equal(letter.delivery.state, "undeliverable");
  assert.equal((await deadLetter(expired)).error, "the SMSC's delivery receipt says expired");
  // Re-driven, it is sent again.
  const redrive = await http(server.url, "POST", `/api/admin/dead-letters/${encodeURIComponent(undeliverable)}/retry`, { token: KEY });
  assert.equal(redrive.status, 202, JSON.stringify(redrive.body));
  await until("the re-driven SMS", async () => smsc.submits.get("this one is UNDELIV") === 2);
});

test("a bad number and a text past SMPP_MAX_PARTS fail their job at once with a clear error", async () => {
  const before = smsc.messages.length;
  const badNumber = await send("hello", "0151 12345678");
  const letter = await deadLetter(badNumber);
  assert.equal(letter.error, '"0151 12345678" is not an E.164 number: it must start with +');
  assert.equal(letter.permanent, true);
  assert.equal(letter.attempts, 1);
  const tooLong = await send("x".repeat(153 * 4 + 1));
  const long = await deadLetter(tooLong);
  assert.equal(long.error, "the text needs 5 gsm7 parts; SMPP_MAX_PARTS allows 4");
  assert.equal(long.permanent, true);
  assert.equal(long.delivery.state, "failed", "the dead letter shows the delivery status");
  assert.equal(smsc.messages.length, before, "nothing was submitted");
});

test("ESME_RTHROTTLED and ESME_RMSGQFUL answers are retried later without using the job's one attempt", async () => {
  const throttled = "slow down THROTTLE3";
  const full = "queue is QUEUEFULL2";
  const jobs = [await send(throttled), await send(full)];
  await Promise.all(jobs.map((job) => settled(job, "delivered")));
  assert.equal(smsc.throttled.get("THROTTLE3"), 3);
  assert.equal(smsc.throttled.get("QUEUEFULL2"), 2);
  assert.equal(arrived(throttled).length, 1);
  assert.equal(arrived(full).length, 1);
  const letters = (await http(server.url, "GET", "/api/admin/dead-letters", { token: KEY })).body.deadLetters;
  assert.ok(!letters.some((d) => jobs.includes(d.id)), "no dead letter");
});

test("a throttled part of a long text is sent again alone, under the same UDH reference", async () => {
  const first = "a".repeat(153);
  const text = `${first}then the second part THROTTLE1 arrives later`;
  const job = await send(text);
  const done = await settled(job, "delivered");
  assert.equal(done.parts.length, 2);
  assert.equal(smsc.throttled.get("THROTTLE1"), 1);
  assert.equal(smsc.partSubmits.get(first), 1, "the accepted first part is not submitted again");
  assert.equal(arrived(text).length, 1, "both parts joined under one reference");
});

test("a dropped SMSC connection is reconnected and the jobs queued meanwhile go out once each", async () => {
  const binds = smsc.binds;
  await smsc.drop();
  await until("readiness to fail", async () => (await http(server.url, "GET", "/ready/sms")).status === 503);
  const texts = Array.from({ length: 6 }, (_, i) => `queued while down ${i}`);
  const jobs = [];
  for (const text of texts) jobs.push(await send(text));
  await smsc.listen();
  await Promise.all(jobs.map((job) => settled(job, "delivered")));
  assert.ok(smsc.binds > binds, "bound again");
  for (const text of texts) assert.equal(smsc.submits.get(text), 1, `${text} submitted once`);
  assert.equal((await http(server.url, "GET", "/ready/sms")).status, 200);
});

test("on Redis, two nodes share the statuses: each answers for every job, a receipt on the other node's bind settles its job once, and a retry on either node resends no accepted part", async () => {
  const redis = await startRedis();
  const port = await freePort();
  const shared = startSmsc(port, { crossBind: true });
  await shared.listen();
  const nodes = [];
  try {
    for (let i = 0; i < 2; i++) nodes.push(await startServer({ ...settings(port, dir), REDIS_URL: redis.url }));
    await until("both nodes to bind", async () => shared.bound.size === 2);
    const texts = Array.from({ length: 6 }, (_, i) => `shared ${i}`);
    // Long texts whose second part is throttled once: the retry may run on either node.
    const long = Array.from({ length: 3 }, (_, i) => `${String(i).repeat(153)}then part two THROTTLE1x${i}`);
    const jobs = [];
    for (const [i, text] of [...texts, ...long].entries()) jobs.push(await send(text, "+4915112345678", nodes[i % 2].url));
    for (const job of jobs) for (const node of nodes) await settled(job, "delivered", node.url);
    for (const text of [...texts, ...long]) assert.equal(shared.submits.get(text), 1, `${text} sent once`);
    for (let i = 0; i < 3; i++) assert.equal(shared.partSubmits.get(String(i).repeat(153)), 1, `the first part of long text ${i} is not resent`);
    let reported = 0;
    for (const node of nodes) {
      const metrics = await (await fetch(node.url + "/metrics")).text();
      reported += Number(/switchyard_notification_receipts_total\{[^}]*channel="sms",outcome="delivered"\} (\d+)/.exec(metrics)?.[1] ?? 0);
    }
    assert.equal(reported, jobs.length, "each job's outcome is reported once across the two nodes");
  } finally {
    for (const node of nodes) assert.equal((await node.stop()).code, 0);
    await shared.stop();
    await redis.stop();
  }
});

test("wrong credentials: one clear error, a failing readiness signal for the channel, and the server keeps serving", async () => {
  const port = await freePort();
  const refusing = startSmsc(port);
  await refusing.listen();
  const wrong = await startServer({
    SERVICE_API_KEYS: KEY,
    SMPP_ADDRESS: `127.0.0.1:${port}`,
    SMPP_SYSTEM_ID: SYSTEM_ID,
    SMPP_PASSWORD: "wrong",
    SMPP_SOURCE_ADDR: "+4930123456",
    SMPP_RECONNECT_MAX_MS: "250",
  });
  try {
    let ready;
    await until("readiness to report the refusal", async () => {
      ready = await http(wrong.url, "GET", "/ready/sms");
      return ready.status === 503 && ready.body.state === "refused";
    });
    assert.equal(ready.body.error, 'the SMSC refused the bind of "switchyard": ESME_RINVPASWD (0x0000000E)');
    await until("a few more refused binds", async () => refusing.refusedBinds >= 3);
    const refusals = wrong.logs.filter((l) => l.includes("SMPP bind refused"));
    assert.equal(refusals.length, 1, refusals.join("\n"));
    assert.equal((await http(wrong.url, "GET", "/health")).status, 200);
    assert.equal((await http(wrong.url, "GET", "/ready")).status, 200, "the server itself stays ready");
    await until("the readiness gauge", async () => /switchyard_channel_ready\{[^}]*channel="sms"\} 0/.test(await (await fetch(wrong.url + "/metrics")).text()));
  } finally {
    const { code } = await wrong.stop();
    assert.equal(code, 0);
    await refusing.stop();
  }
});
