// A chat workload for fault drills: participants in one room send with clientMessageIds,
// retry until acked, catch up after reconnects with `getMessages { after }`, and finally
// check the contract: every acked message is in the history exactly once, and every
// participant received it or fetched it.
import assert from "node:assert/strict";
import { token, connect, call, sleep, uid, http } from "./helpers.js";

const seqOf = (id) => Number(id);

/** One participant: a socket with reconnection, what it has seen, and a catch-up routine. */
class Participant {
  constructor(user, socket, roomId) {
    this.user = user;
    this.socket = socket;
    this.roomId = roomId;
    this.seen = new Set();
    this.reconnects = 0;
    socket.on("newMessage", (m) => m.roomId === roomId && this.seen.add(seqOf(m.id)));
    socket.io.on("reconnect", () => {
      this.reconnects++;
      this.catchUp().catch(() => {});
    });
  }

  /** Highest sequence number below which nothing is missing. */
  contiguous() {
    let n = 0;
    while (this.seen.has(n + 1)) n++;
    return n;
  }

  /** Fetches everything after the first gap, page by page. */
  async catchUp() {
    for (;;) {
      const after = this.contiguous();
      const payload = { roomId: this.roomId, limit: 100, after: String(after).padStart(12, "0") };
      const res = await call(this.socket, "getMessages", payload);
      if (!res.ok) throw new Error(JSON.stringify(res.error));
      for (const m of res.data.messages) this.seen.add(seqOf(m.id));
      if (!res.data.hasMore || res.data.messages.length === 0) return;
    }
  }
}

/** Sets up `count` participants connected through `url` (alternating transports). */
export async function setupRoom(url, count, { prefix = "p" } = {}) {
  const users = Array.from({ length: count }, (_, i) => uid(`${prefix}${i}`));
  const opts = (i) => ({
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
    withCredentials: true,
    transports: i % 2 ? ["polling"] : ["websocket"],
  });
  const sockets = [];
  for (const [i, u] of users.entries()) sockets.push(await connect(url, "/chat", token(u), opts(i)));
  const room = (await call(sockets[0], "getOrCreateRoom", { participantIds: users.slice(1), name: "drill" })).data.room;
  await sleep(200); // let the cross-node joins land
  return { room, participants: users.map((u, i) => new Participant(u, sockets[i], room.id)) };
}

/** Sends from every participant in turn until `stop()` resolves; returns the acked messages. */
export function runTraffic(participants, { intervalMs = 30, ackTimeoutMs = 3000 } = {}) {
  const acked = new Map(); // clientMessageId -> message
  const failures = [];
  let running = true;
  const loop = (async () => {
    let n = 0;
    while (running) {
      const p = participants[n % participants.length];
      const cid = `${p.user}-${n++}`;
      // Retry the same clientMessageId until acked: safe, the server stores it once.
      for (let attempt = 0; attempt < 200; attempt++) {
        try {
          const res = await p.socket.timeout(ackTimeoutMs).emitWithAck("sendMessage", { roomId: p.roomId, content: `m ${cid}`, clientMessageId: cid });
          if (res.ok) {
            acked.set(cid, res.data.message);
            p.seen.add(seqOf(res.data.message.id));
            break;
          }
          failures.push(res.error.code);
        } catch {
          failures.push("timeout");
        }
        await sleep(100);
        if (!running && attempt > 50) break;
      }
      await sleep(intervalMs);
    }
  })();
  return {
    acked,
    failures,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Checks history and delivery after a drill. */
export async function verify(url, room, participants, acked) {
  assert.ok(acked.size > 0, "traffic was acked");
  // The whole history, through the HTTP API.
  const history = [];
  let after = "000000000000"; // from the oldest retained message
  for (;;) {
    const q = new URLSearchParams({ limit: "100", after });
    const res = await http(url, "GET", `/api/chat/rooms/${room.id}/messages?${q}`, { token: token(participants[0].user) });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    history.push(...res.body.messages);
    if (!res.body.hasMore) break;
    after = res.body.messages.at(-1).id;
  }
  const ids = history.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, "no message id twice");
  const byCid = new Map();
  for (const m of history) byCid.set(m.clientMessageId, (byCid.get(m.clientMessageId) || 0) + 1);
  for (const [cid, m] of acked) {
    assert.equal(byCid.get(cid), 1, `acked ${cid} stored exactly once`);
    assert.ok(ids.includes(m.id), `acked ${cid} is in history`);
  }
  // Every participant got every acked message live or by catching up.
  for (const p of participants) {
    await p.catchUp();
    for (const m of acked.values()) assert.ok(p.seen.has(seqOf(m.id)), `${p.user} has ${m.id}`);
  }
  return history;
}

export function closeAll(participants) {
  for (const p of participants) p.socket.close();
}
