// Connection state recovery (RECOVERY_WINDOW_MS) with the official socket.io-client: a
// client whose transport is cut (not a clean disconnect) comes back with `recovered` true,
// its rooms and every message sent to them meanwhile, once and in order; past the window it
// comes back with `recovered` false and fills the gap with `getMessages {after}`; a `pid`
// presented by another user recovers nothing. Single node, in-memory recovery.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, token, connect, call, next, record, sleep, uid, http, until, chatSockets } from "./helpers.js";

const LIMITS = { RATE_LIMIT_MESSAGE: "1000/1s", RATE_LIMIT_QUERY: "1000/1s" };
const WINDOW_MS = 1000;
let server;
let short;
before(async () => {
  [server, short] = await Promise.all([
    startServer({ ...LIMITS, RECOVERY_WINDOW_MS: "120000" }),
    startServer({ ...LIMITS, RECOVERY_WINDOW_MS: String(WINDOW_MS) }),
  ]);
});
after(async () => {
  for (const s of [server, short]) assert.equal((await s.stop()).code, 0, "server exits 0 on SIGTERM");
});

/**
 * Alice (reconnecting by hand, so the outage lasts as long as the test says) in a room with
 * Bob, having received one message of it (so her client holds an offset).
 */
async function aliceAndBob(url) {
  const [alice, bob] = [uid("alice"), uid("bob")];
  const a = await connect(url, "/chat", token(alice), { transports: ["websocket"], reconnection: false });
  const room = (await call(a, "getOrCreateRoom", { participantIds: [bob] })).data.room;
  const first = next(a, "newMessage");
  const send = (content) => http(url, "POST", "/api/chat/messages", { token: token(bob), body: { roomId: room.id, content } });
  assert.equal((await send("first")).status, 201);
  const seen = (await first).id;
  assert.equal(typeof a._pid, "string", "the join answer carried a pid");
  return { a, alice, bob, room, send, lastSeen: seen };
}

/**
 * Cuts the socket's TCP connection under its WebSocket (no close frame, no Socket.IO leave)
 * and waits until `node` has let the socket go (it is the test's only `/chat` socket there).
 */
async function cut(socket, node) {
  const tcp = socket.io.engine.transport.ws?._socket;
  assert.ok(tcp, "the client's WebSocket exposes its TCP socket");
  const gone = new Promise((resolve) => socket.once("disconnect", resolve));
  tcp.destroy();
  assert.equal(await gone, "transport close");
  await until("the server to see the connection end", async () => (await chatSockets(node)) === 0);
}

/** Reconnects by hand (the client sends its pid and last offset); resolves on `connect`. */
function reconnect(socket) {
  const joined = new Promise((resolve) => socket.once("connect", resolve));
  socket.connect();
  return joined;
}

test("a client cut off for 3 s recovers its rooms and all 100 messages, once, in order", async () => {
  const { a, send } = await aliceAndBob(server.url);
  try {
    const seen = record(a, "newMessage");
    const cutAt = Date.now();
    await cut(a, server);
    for (let i = 0; i < 100; i++) assert.equal((await send(`m${i}`)).status, 201);
    // The outage lasts at least 3 s, however fast the sends were.
    await sleep(Math.max(0, 3000 - (Date.now() - cutAt)));
    await reconnect(a);
    assert.equal(a.recovered, true);
    await until("the 100 missed messages", async () => seen.length >= 100);
    // A live message after them: had anything been delivered twice, it would come first.
    const live = next(a, "newMessage", (m) => m.content === "live");
    await send("live");
    await live;
    assert.deepEqual(
      seen.map((m) => m.content),
      [...Array.from({ length: 100 }, (_, i) => `m${i}`), "live"],
    );
  } finally {
    a.close();
  }
});

test("past the window the client is not recovered and catches up with getMessages {after}", async () => {
  const { a, room, send, lastSeen } = await aliceAndBob(short.url);
  try {
    const seen = record(a, "newMessage");
    const cutAt = Date.now();
    await cut(a, short);
    for (let i = 0; i < 5; i++) assert.equal((await send(`gap${i}`)).status, 201);
    // The window is what this test is about: it must be over.
    await sleep(Math.max(0, 2 * WINDOW_MS - (Date.now() - cutAt)));
    await reconnect(a);
    assert.equal(a.recovered, false);
    // The app's fallback: history after the last message seen.
    const page = await call(a, "getMessages", { roomId: room.id, after: lastSeen });
    assert.deepEqual(
      page.data.messages.map((m) => m.content),
      ["gap0", "gap1", "gap2", "gap3", "gap4"],
    );
    // Nothing was replayed: the live message is the first the socket gets.
    const live = next(a, "newMessage", (m) => m.content === "live");
    await send("live");
    await live;
    assert.deepEqual(seen.map((m) => m.content), ["live"]);
  } finally {
    a.close();
  }
});

test("another user's pid recovers nothing and leaks nothing; its owner still recovers", async () => {
  const { a, send } = await aliceAndBob(server.url);
  const mallory = uid("mallory");
  let m;
  try {
    await cut(a, server);
    assert.equal((await send("secret")).status, 201);
    const [pid, offset] = [a._pid, a._lastOffset];
    m = await connect(server.url, "/chat", undefined, {
      transports: ["websocket"],
      auth: { token: token(mallory), pid, offset },
    });
    assert.equal(m.recovered, false);
    assert.notEqual(m._pid, pid, "a new pid, not Alice's");
    const leaked = record(m, "newMessage");
    // A room of Mallory's own: its message arriving means anything sent before it has too.
    const own = (await call(m, "getOrCreateRoom", { participantIds: [uid("carol")] })).data.room;
    assert.equal((await send("after")).status, 201);
    const mine = next(m, "newMessage", (msg) => msg.content === "own");
    const sent = await http(server.url, "POST", "/api/chat/messages", { token: token(mallory), body: { roomId: own.id, content: "own" } });
    assert.equal(sent.status, 201);
    await mine;
    assert.deepEqual(leaked.map((msg) => msg.content), ["own"], "nothing of Alice's rooms");

    const seen = record(a, "newMessage");
    await reconnect(a);
    assert.equal(a.recovered, true, "the forged attempt did not spend Alice's session");
    await until("Alice's missed messages", async () => seen.length >= 2);
    assert.deepEqual(seen.map((msg) => msg.content), ["secret", "after"]);
  } finally {
    a.close();
    m?.close();
  }
});
