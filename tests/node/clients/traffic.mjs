// Chat traffic that must survive faults. alice (WebSocket) and bob (long-polling) connect
// through SY_URL with socket.io-client's own reconnection; alice sends a message every 100 ms
// with a clientMessageId and retries it until acked (safe: the server dedupes on it). Runs
// until the file SY_STOP exists, then checks that every acked message is in the room's history
// exactly once and prints a JSON summary line. Progress lines ("acked N") go to stdout so the
// harness can wait for traffic after each fault.
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { io, token } from "./lib.mjs";

const url = process.env.SY_URL;
const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const open = (sub, transports) =>
  io(`${url}/chat`, { auth: { token: token(sub) }, transports, forceNew: true, timeout: 10000, reconnectionDelayMax: 2000 });
const a = open(`alice-${tag}`, ["websocket"]);
const b = open(`bob-${tag}`, ["polling"]);
let reconnects = 0;
for (const s of [a, b]) s.io.on("reconnect", () => reconnects++);

const ack = (s, ev, data, ms = 5000) =>
  new Promise((resolve) => {
    if (!s.connected) return resolve(null);
    s.timeout(ms).emit(ev, data, (err, res) => resolve(err || !res?.ok ? null : res.data));
  });
async function retry(fn) {
  for (;;) {
    const r = await fn();
    if (r) return r;
    await sleep(200);
  }
}

await retry(async () => a.connected && b.connected);
const { room } = await retry(() => ack(a, "getOrCreateRoom", { participantIds: [`bob-${tag}`] }));
const acked = [];
for (let i = 0; !existsSync(process.env.SY_STOP); i++) {
  const { message } = await retry(() => ack(a, "sendMessage", { roomId: room.id, content: `m${i}`, clientMessageId: `${tag}-${i}` }));
  acked.push(message.id);
  if (acked.length % 10 === 0) console.log(`acked ${acked.length}`);
  await sleep(100);
}

// History, oldest first, page by page.
const seen = [];
let before;
for (;;) {
  const page = await retry(() => ack(b, "getMessages", { roomId: room.id, limit: 100, ...(before ? { before } : {}) }));
  seen.unshift(...page.messages.map((m) => m.id));
  if (!page.hasMore || page.messages.length === 0) break;
  before = page.messages[0].id;
}
const count = new Map();
for (const id of seen) count.set(id, (count.get(id) || 0) + 1);
const missing = acked.filter((id) => !count.has(id)).length;
const duplicated = [...count.values()].filter((n) => n > 1).length;
console.log(JSON.stringify({ room: room.id, acked: acked.length, history: seen.length, missing, duplicated, reconnects }));
a.close();
b.close();
process.exit(missing === 0 && duplicated === 0 && seen.length === acked.length ? 0 : 1);
