// The chat scenario through a real ingress (Traefik) with sticky sessions, then the same
// long-polling clients through a Service without affinity, where they must fail.
//
//   SY_SECRET     the RealtimeCluster's JWT secret
//   SY_INGRESS    http://<routing.host>:<port> of the ingress controller
//   SY_NODE       the address <routing.host> resolves to (the node's), for every request here
//   SY_PODS       name=ip,... of the server pods: their /metrics tell where each client landed
//   SY_PLAIN      http://<ip>:<port> of a Service without session affinity
//   SY_AFFINITY   http://<ip>:<port> of the operator's Service (sessionAffinity: ClientIP)
//
// Prints one "ok:" line per assertion; exits non-zero on any failure.
import assert from "node:assert/strict";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { call, connect, httpDetail, next, token } from "./lib.mjs";

const env = (k) => process.env[k] || (() => { throw new Error(`${k} is not set`); })();
const ingress = new URL(env("SY_INGRESS"));
const node = env("SY_NODE");
const pods = env("SY_PODS").split(",").map((p) => { const [name, ip] = p.split("="); return { name, ip }; });
const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;

// Resolves every name to the node, as a client's DNS would resolve the public host: the
// requests carry the real Host header the Ingress rule matches. Node asks for a list when it
// may try several address families.
const lookup = (_host, opts, cb) => (opts?.all ? cb(null, [{ address: node, family: 4 }]) : cb(null, node, 4));
const agent = new http.Agent({ keepAlive: true, lookup });
// withCredentials makes socket.io-client keep cookies in Node (the affinity cookie), for
// polling requests and the WebSocket upgrade alike.
const viaIngress = { agent, withCredentials: true };

/** socket_active_connections of the /chat namespace on each server pod, by pod name. */
async function chatSockets() {
  const out = {};
  for (const { name, ip } of pods) {
    const text = await (await fetch(`http://${ip}:3001/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("socket_active_connections{") && l.includes('namespace="/chat"'));
    out[name] = Number(line?.split(" ").pop() ?? 0);
  }
  return out;
}

/** Polls until `check(value)` holds for `get()`'s value; generous deadline for a loaded machine. */
async function until(what, get, check, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (check(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms} ms`);
    await sleep(200);
  }
}

/** One HTTP API request through the ingress, as user `sub`. */
function api(method, path, sub, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { agent, host: ingress.hostname, port: ingress.port, method, path, timeout: 30000,
        headers: { authorization: `Bearer ${token(sub)}`, ...(data ? { "content-type": "application/json" } : {}) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c) => (text += c)).on("end", () => {
          try { resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }); } catch (e) { reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`)); }
        });
      });
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: timed out`))).on("error", reject);
    req.end(data);
  });
}

// ---- 1. Through the ingress: WebSocket and long-polling-only clients, one at a time, so the
// pod whose /chat socket count goes up is the one the new client landed on.
const clients = [];
let before = await chatSockets();
const base = Object.values(before).reduce((a, b) => a + b, 0);
for (let i = 0; i < 12; i++) {
  const transport = i % 2 === 0 ? "websocket" : "polling";
  const user = `${transport === "websocket" ? "ws" : "lp"}${i}-${tag}`;
  const s = await connect(ingress.origin, user, [transport], viaIngress);
  const after = await until(`client ${i + 1} counted on a pod`, chatSockets,
    (c) => Object.values(c).reduce((a, b) => a + b, 0) === base + i + 1);
  const pod = pods.find((p) => after[p.name] === before[p.name] + 1)?.name;
  assert.ok(pod, `no pod's count went up by one: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
  const c = { s, user, transport, pod, at: Date.now(), dropped: null };
  s.on("disconnect", (reason) => (c.dropped = reason));
  clients.push(c);
  before = after;
}
for (const t of ["websocket", "polling"]) {
  const by = {};
  for (const c of clients.filter((c) => c.transport === t)) by[c.pod] = (by[c.pod] || 0) + 1;
  console.log(`ok: 6 ${t} clients connected through ${ingress.origin}, by pod: ${JSON.stringify(by)}`);
}
const used = new Set(clients.map((c) => c.pod));
assert.equal(used.size, pods.length, `clients landed on ${[...used]} only, not on all of ${pods.map((p) => p.name)}`);
console.log(`ok: the ${clients.length} clients are spread over all ${pods.length} server pods`);

// ---- 2. Messages cross pods: one group room of all twelve; each sends one message, every
// other client must get it.
const [owner, ...rest] = clients;
const created = rest.map((c) => next(c.s, "roomCreated"));
const { room } = await call(owner.s, "getOrCreateRoom", { participantIds: rest.map((c) => c.user), name: `ingress ${tag}` });
await Promise.all(created);
console.log(`ok: room ${room.id} of ${clients.length} participants announced to all of them`);

const inbox = clients.map(() => new Map());
clients.forEach((c, i) => c.s.on("newMessage", (m) => inbox[i].set(m.id, m)));
const sent = await Promise.all(clients.map(async (c) => ({
  from: c, message: (await call(c.s, "sendMessage", { roomId: room.id, content: `from ${c.user} on ${c.pod}` })).message,
})));
await until("every message at every other client", async () => inbox.map((m) => m.size),
  (sizes) => sizes.every((n) => n >= clients.length - 1));
const pairs = new Set();
let crossing = 0;
for (const { from, message } of sent) {
  clients.forEach((to, i) => {
    if (to === from) return;
    assert.deepEqual(inbox[i].get(message.id), message, `${to.user} did not get ${from.user}'s message`);
    if (to.pod !== from.pod) { crossing++; pairs.add(`${from.pod}->${to.pod}`); }
  });
}
assert.equal(pairs.size, pods.length * (pods.length - 1), `pod pairs crossed: ${[...pairs]}`);
console.log(`ok: ${sent.length} messages each reached the ${clients.length - 1} other clients; ${crossing} deliveries crossed pods, covering all ${pairs.size} ordered pod pairs`);

// ---- 3. The HTTP API through the same ingress: a message sent over HTTP reaches every socket,
// and the history over HTTP has all thirteen.
const fromHttp = clients.map((c) => next(c.s, "newMessage"));
const posted = await api("POST", "/api/chat/messages", owner.user, { roomId: room.id, content: `over http ${tag}` });
assert.equal(posted.status, 201, JSON.stringify(posted));
for (const m of await Promise.all(fromHttp)) assert.deepEqual(m, posted.body.message);
console.log(`ok: POST /api/chat/messages through the ingress: 201, delivered to all ${clients.length} sockets`);
const history = await api("GET", `/api/chat/rooms/${encodeURIComponent(room.id)}/messages?limit=100`, rest[0].user);
assert.equal(history.status, 200, JSON.stringify(history));
assert.deepEqual(history.body.messages.map((m) => m.id).sort(), [...sent.map((x) => x.message.id), posted.body.message.id].sort());
console.log(`ok: GET /api/chat/rooms/:id/messages through the ingress: 200 with all ${history.body.messages.length} messages`);
// The first WebSocket and polling clients stay connected for step 5.
const held = clients.slice(0, 2);
for (const c of clients.slice(2)) c.s.close();

// ---- 4. Without affinity long-polling breaks. An Engine.IO polling session lives in the
// memory of the process that made it; socket.io-client's Node transport opens a new TCP
// connection for every request (no agent given), and kube-proxy picks a random endpoint for
// every new connection. With 3 pods a request after the handshake reaches the session's pod
// with probability 1/3, and connecting plus three acked calls takes several requests, so a
// client survives with a probability of about (1/3)^6: the others get 400 "Session ID unknown"
// and fail. Requiring at least half of 16 to fail cannot pass by luck; one WebSocket client per
// check shows the Service itself works (a WebSocket session is one connection).
/** n long-polling-only clients at `url`, each connecting and making three acked calls; the
 * failures, as "<stage>: <error>" (user names left out, so equal failures count together). */
async function pollingRound(url, n) {
  const results = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const user = `plain${i}-${tag}`;
    let s;
    try {
      s = await connect(url, user, ["polling"]);
    } catch (e) {
      return `connect_error: ${e.message.replace(`${user} at ${url}: `, "")}`;
    }
    const dropped = new Promise((_, reject) => s.once("disconnect", (r, d) => reject(new Error(`${r}${httpDetail(d)}`))));
    dropped.catch(() => {});
    try {
      for (let k = 0; k < 3; k++) await Promise.race([call(s, "getRooms", {}), dropped]);
      return null;
    } catch (e) {
      return `disconnect after connecting: ${e.message}`;
    } finally {
      s.close();
    }
  }));
  return results.filter(Boolean);
}

const plain = env("SY_PLAIN");
const ws = await connect(plain, `plainws-${tag}`, ["websocket"]);
await call(ws, "getRooms", {});
ws.close();
console.log(`ok: a WebSocket client works through the Service without affinity (${plain})`);
const failed = await pollingRound(plain, 16);
const kinds = {};
for (const f of failed) kinds[f] = (kinds[f] || 0) + 1;
console.log(`   polling-only clients through ${plain}: ${failed.length} of 16 failed: ${JSON.stringify(kinds)}`);
assert.ok(failed.length >= 8, `only ${failed.length} of 16 long-polling clients failed without affinity`);
assert.ok(failed.some((f) => f.includes("Session ID unknown")), "no failure was the server's \"Session ID unknown\"");
console.log(`ok: without session affinity ${failed.length} of 16 long-polling-only clients failed, with "Session ID unknown" among the errors`);

// The operator's own Service has sessionAffinity: ClientIP, and this host is one client IP.
const affinity = env("SY_AFFINITY");
const failedWithAffinity = await pollingRound(affinity, 16);
assert.deepEqual(failedWithAffinity, [], `through the operator's Service (${affinity})`);
console.log(`ok: the same 16 long-polling-only clients all work through the operator's Service (sessionAffinity: ClientIP)`);

// ---- 5. Traefik v3's entrypoints have a 60 s readTimeout by default. A WebSocket and a
// long-polling session through it must outlive that (the server's heartbeat keeps them
// busy): held 65 s from their connect, without a disconnect (reconnection is off), then used.
const holdMs = 65000;
const left = held[0].at + holdMs - Date.now();
if (left > 0) await sleep(left); // a hold of fixed length against Traefik's timeout, not a wait for a condition
for (const c of held) {
  assert.equal(c.dropped, null, `${c.transport} client through Traefik dropped: ${c.dropped}`);
  await call(c.s, "getRooms", {});
  c.s.close();
}
agent.destroy();
console.log(`ok: a WebSocket and a long-polling session through Traefik held ${Math.round((Date.now() - held[0].at) / 1000)} s (past its 60 s default readTimeout) without a disconnect, then answered`);
process.exit(0);
