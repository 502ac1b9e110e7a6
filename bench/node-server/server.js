// The Node socket.io 4 peer: the /chat events the benchmarks use, with the same contract as
// Switchyard (HS256 JWT at connect, user:U and room:R rooms, acks { ok, data }), so the
// load generator drives both the same way. With REDIS_URL it uses @socket.io/redis-adapter.
import { createServer } from "node:http";
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT || 3002);
const SECRET = process.env.JWT_SECRET || "bench-secret-that-is-long-enough-for-hs256";

function verify(token) {
  const [h, p, s] = String(token || "").split(".");
  if (!s) return null;
  const header = JSON.parse(Buffer.from(h, "base64url"));
  if (header.alg !== "HS256") return null;
  const expected = createHmac("sha256", SECRET).update(`${h}.${p}`).digest();
  const got = Buffer.from(s, "base64url");
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return null;
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  if (typeof claims.sub !== "string" || (claims.exp && claims.exp * 1000 < Date.now())) return null;
  return claims;
}

const http = createServer((req, res) => res.writeHead(req.url === "/health" ? 200 : 404).end());
const io = new Server(http, { cors: { origin: "*" } });
// State: in memory alone; in Redis with REDIS_URL, like Switchyard, so cross-node runs
// compare the same work (a store write before the ack).
const memory = { rooms: new Map(), seq: new Map(), msgs: new Map(), reads: new Map() };
let store = {
  async putRoom(room) { memory.rooms.set(room.id, room); },
  async getRoom(id) { return memory.rooms.get(id); },
  async append(roomId, make) {
    const seq = (memory.seq.get(roomId) || 0) + 1;
    memory.seq.set(roomId, seq);
    const message = make(seq);
    const list = memory.msgs.get(roomId) || [];
    list.push(message);
    if (list.length > 10000) list.shift(); // the same history cap as Switchyard's default
    memory.msgs.set(roomId, list);
    return message;
  },
  // The read position never moves back; unread counts every later message (the peer does not
  // exclude the reader's own, a small saving Switchyard does not take).
  async markRead(roomId, userId, seq) {
    const key = `${roomId}/${userId}`;
    const position = Math.max(memory.reads.get(key) || 0, seq);
    memory.reads.set(key, position);
    return { position, unread: (memory.seq.get(roomId) || 0) - position };
  },
};
if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  const db = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), db.connect()]);
  io.adapter(createAdapter(pub, sub));
  store = {
    async putRoom(room) { await db.set(`node:room:${room.id}`, JSON.stringify(room)); },
    async getRoom(id) { const j = await db.get(`node:room:${id}`); return j && JSON.parse(j); },
    async append(roomId, make) {
      const message = make(await db.incr(`node:room:${roomId}:seq`));
      await db.zAdd(`node:room:${roomId}:msgs`, { score: Number(message.id), value: JSON.stringify(message) });
      return message;
    },
    async markRead(roomId, userId, seq) {
      const key = `node:room:${roomId}:reads`;
      const [, position, last] = await db.multi()
        .zAdd(key, { score: seq, value: userId }, { GT: true }).zScore(key, userId).get(`node:room:${roomId}:seq`).exec();
      return { position: Number(position), unread: Number(last || 0) - Number(position) };
    },
  };
}

const chat = io.of("/chat");
chat.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token);
  if (!claims) return next(new Error("unauthorized"));
  socket.data.user = claims.sub;
  next();
});
chat.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join(`user:${user}`);
  socket.on("getOrCreateRoom", async (payload, ack) => {
    const ids = [...new Set([...(payload?.participantIds || []), user])].sort();
    // Two participants and no name make a direct room, the same one for the pair.
    const direct = ids.length === 2 && !payload?.name;
    const id = direct ? `d-${ids.join("-")}` : `g-${randomUUID()}`;
    const existing = direct && (await store.getRoom(id));
    if (existing) return ack?.({ ok: true, data: { room: existing } });
    const room = { id, type: direct ? "direct" : "group", name: payload?.name, participantIds: ids, createdAt: new Date().toISOString() };
    await store.putRoom(room);
    await chat.in(ids.map((u) => `user:${u}`)).socketsJoin(`room:${room.id}`);
    for (const u of ids) chat.to(`user:${u}`).emit("roomCreated", room);
    ack?.({ ok: true, data: { room } });
  });
  socket.on("sendMessage", async (payload, ack) => {
    const room = await store.getRoom(payload?.roomId);
    if (!room || !room.participantIds.includes(user)) return ack?.({ ok: false, error: { code: "forbidden", message: "not a participant" } });
    const message = await store.append(room.id, (seq) => ({
      id: String(seq).padStart(12, "0"), roomId: room.id, senderId: user, content: String(payload.content).trim(), createdAt: new Date().toISOString(),
    }));
    socket.to(`room:${room.id}`).emit("newMessage", message);
    ack?.({ ok: true, data: { message } });
  });
  socket.on("markMessagesRead", async (payload, ack) => {
    const room = await store.getRoom(payload?.roomId);
    if (!room || !room.participantIds.includes(user)) return ack?.({ ok: false, error: { code: "forbidden", message: "not a participant" } });
    const read = await store.markRead(room.id, user, Number(payload.messageId));
    const receipt = { roomId: room.id, userId: user, lastReadMessageId: String(read.position).padStart(12, "0"), readAt: new Date().toISOString() };
    chat.to(`room:${room.id}`).emit("messagesRead", receipt);
    ack?.({ ok: true, data: { ...receipt, unreadCount: read.unread } });
  });
  socket.on("typing", async (payload, ack) => {
    const room = await store.getRoom(payload?.roomId);
    if (!room || !room.participantIds.includes(user)) return ack?.({ ok: false, error: { code: "forbidden", message: "not a participant" } });
    socket.to(`room:${room.id}`).except(`user:${user}`).emit("userTyping", { roomId: room.id, userId: user, isTyping: Boolean(payload.isTyping) });
    ack?.({ ok: true, data: {} });
  });
});
http.listen(PORT, "127.0.0.1", () => console.log(`node socket.io peer listening on ${PORT}`));
