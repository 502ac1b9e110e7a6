// Connection state recovery (RECOVERY_WINDOW_MS) with the official socket.io-client: a
// client whose transport is cut (not a clean disconnect) comes back with `recovered` true,
// its rooms and every message sent to them meanwhile, once and in order; past the window it
// comes back with `recovered` false and fills the gap with `getMessages {after}`; a `pid`
// presented by another user recovers nothing. On one node in memory, and across nodes with
// Redis (sessions and missed broadcasts in Redis, the bus a Redis stream): after the node
// holding the session is killed with SIGKILL the client recovers on another one behind nginx,
// a Redis restart loses no event, and another user's pid recovers nothing there either.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, startRedisCluster, startSentinel, startNginx, token, connect, call, next, record, sleep, uid, http, until, chatSockets } from "./helpers.js";

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
async function aliceAndBob(url, sendUrl = url) {
  const [alice, bob] = [uid("alice"), uid("bob")];
  const a = await connect(url, "/chat", token(alice), { transports: ["websocket"], reconnection: false });
  const room = (await call(a, "getOrCreateRoom", { participantIds: [bob] })).data.room;
  const first = next(a, "newMessage");
  const send = (content) => http(sendUrl, "POST", "/api/chat/messages", { token: token(bob), body: { roomId: room.id, content } });
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

/**
 * Alice, cut off from `home` (whose window is WINDOW_MS) for twice the window, comes back to
 * `other` unrecovered and catches up with `getMessages {after}`.
 */
async function pastTheWindow(home, other) {
  const { a, room, send, lastSeen } = await aliceAndBob(home.url, other.url);
  try {
    const seen = record(a, "newMessage");
    const cutAt = Date.now();
    await cut(a, home);
    for (let i = 0; i < 5; i++) assert.equal((await send(`gap${i}`)).status, 201);
    // The window is what this test is about: it must be over.
    await sleep(Math.max(0, 2 * WINDOW_MS - (Date.now() - cutAt)));
    // The manager's address is where it reconnects to.
    a.io.uri = other.url;
    await reconnect(a);
    assert.equal(await chatSockets(other), 1, "Alice came back to `other`");
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
}

test("past the window the client is not recovered and catches up with getMessages {after}", async () => {
  await pastTheWindow(short, short);
});

/**
 * Another user's pid, presented to `other` (a node), recovers nothing and leaks nothing; a
 * made-up pid neither; Alice, cut off from `home`, still recovers afterwards.
 */
async function forgedPid(home, other) {
  const { a, send } = await aliceAndBob(home.url);
  const mallory = uid("mallory");
  let m;
  let made;
  try {
    await cut(a, home);
    assert.equal((await send("secret")).status, 201);
    const [pid, offset] = [a._pid, a._lastOffset];
    made = await connect(other.url, "/chat", undefined, {
      transports: ["websocket"],
      auth: { token: token(mallory), pid: "AAAAAAAAAAAAAAAAAAAAAA", offset },
    });
    assert.equal(made.recovered, false, "a made-up pid recovers nothing");
    m = await connect(other.url, "/chat", undefined, {
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
    const sent = await http(other.url, "POST", "/api/chat/messages", { token: token(mallory), body: { roomId: own.id, content: "own" } });
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
    made?.close();
  }
}

test("another user's pid recovers nothing and leaks nothing; its owner still recovers", async () => {
  await forgedPid(server, server);
});

// Across nodes: every node shares one Redis, recovery on with the default two-minute window.
const FLEET = { ...LIMITS, RECOVERY_WINDOW_MS: "120000", REDIS_TIMEOUT_MS: "500", REDIS_RECONNECT_MAX_MS: "300" };

/** Redis and two nodes on it; `stop` ends them (a killed node is left as it is). */
async function fleet(env = {}, start = startRedis) {
  const redis = await start();
  const nodes = await Promise.all([0, 1].map(() => startServer({ ...FLEET, REDIS_URL: redis.url, ...env })));
  return {
    redis,
    nodes,
    async stop() {
      for (const n of nodes) {
        if (n.child.exitCode === null && n.child.signalCode === null) assert.equal((await n.stop()).code, 0, "server exits 0 on SIGTERM");
      }
      await this.redis.stop();
    },
  };
}

test("across nodes: another user's pid recovers nothing and leaks nothing on the other node", async () => {
  const f = await fleet();
  try {
    await forgedPid(f.nodes[0], f.nodes[1]);
  } finally {
    await f.stop();
  }
});

// On each kind of Redis deployment: the stream's reader and the session scripts run on all three.
for (const [deployment, start] of [
  ["single Redis", startRedis],
  ["Redis Cluster", startRedisCluster],
  ["Redis Sentinel", startSentinel],
]) {
  test(`across nodes (${deployment}): the node holding the session is killed with SIGKILL; behind nginx the client recovers all 100 messages on another node, once, in order`, async () => {
    const f = await fleet({}, start);
    const nginx = await startNginx(f.nodes);
    let a;
    try {
      // Alice joins through nginx, which picks her node; Bob sends to the other one.
      const placed = await aliceAndBob(nginx.url);
      a = placed.a;
      const counts = await Promise.all(f.nodes.map(chatSockets));
      const victim = f.nodes[counts.indexOf(1)];
      const survivor = f.nodes.find((n) => n !== victim);
      assert.ok(victim && survivor, `Alice is on one node: ${counts}`);
      const send = (content) => http(survivor.url, "POST", "/api/chat/messages", { token: token(placed.bob), body: { roomId: placed.room.id, content } });

      const seen = record(a, "newMessage");
      const gone = new Promise((resolve) => a.once("disconnect", resolve));
      victim.child.kill("SIGKILL");
      await victim.exited;
      assert.equal(await gone, "transport close");
      const cutAt = Date.now();
      for (let i = 0; i < 100; i++) assert.equal((await send(`m${i}`)).status, 201);
      await sleep(Math.max(0, 3000 - (Date.now() - cutAt)));
      // Through nginx again: the dead node is skipped.
      await reconnect(a);
      assert.equal(await chatSockets(survivor), 1, "Alice is on the survivor now");
      assert.equal(a.recovered, true);
      await until("the 100 missed messages", async () => seen.length >= 100);
      const live = next(a, "newMessage", (m) => m.content === "live");
      await send("live");
      await live;
      assert.deepEqual(
        seen.map((m) => m.content),
        [...Array.from({ length: 100 }, (_, i) => `m${i}`), "live"],
      );
    } finally {
      a?.close();
      await nginx.stop();
      await f.stop();
    }
  });
}

test("across nodes: past the window the client is not recovered on the other node and catches up with getMessages {after}", async () => {
  const f = await fleet({ RECOVERY_WINDOW_MS: String(WINDOW_MS) });
  try {
    await pastTheWindow(f.nodes[0], f.nodes[1]);
  } finally {
    await f.stop();
  }
});

test("across nodes: messages sent while the client comes back on the other node arrive once, in order", async () => {
  const f = await fleet();
  const [home, other] = f.nodes;
  let a;
  try {
    const placed = await aliceAndBob(home.url, other.url);
    a = placed.a;
    const seen = record(a, "newMessage");
    await cut(a, home);
    const acked = [];
    for (let i = 0; i < 10; i++) {
      assert.equal((await placed.send(`gap${i}`)).status, 201);
      acked.push(`gap${i}`);
    }
    // Bob keeps sending while Alice's join is being restored on the other node.
    let sending = true;
    const sender = (async () => {
      for (let i = 0; sending; i++) {
        assert.equal((await placed.send(`flow${i}`)).status, 201);
        acked.push(`flow${i}`);
      }
    })();
    a.io.uri = other.url;
    await reconnect(a);
    assert.equal(a.recovered, true);
    await until("messages after the restore", async () => seen.length >= acked.length && acked.length > 20);
    sending = false;
    await sender;
    await until("every acknowledged message", async () => seen.length >= acked.length);
    assert.deepEqual(seen.map((m) => m.content), acked, "each once, in order");
  } finally {
    a?.close();
    await f.stop();
  }
});

test("across nodes: Redis restarted within the window loses no event", async () => {
  // The typing timeout is what emits while Redis is away: it needs no Redis to fire.
  const f = await fleet({ TYPING_TIMEOUT_MS: "1000" });
  const [home, other] = f.nodes;
  let a;
  let b;
  try {
    const placed = await aliceAndBob(home.url, other.url);
    a = placed.a;
    b = await connect(other.url, "/chat", token(placed.bob), { transports: ["websocket"], reconnection: false });
    const messages = record(a, "newMessage");
    const typing = record(a, "userTyping");
    const acked = [];
    const sendAll = async (prefix, n) => {
      for (let i = 0; i < n; i++) {
        const sent = await placed.send(`${prefix}${i}`);
        if (sent.status === 201) acked.push(`${prefix}${i}`);
      }
    };
    await sendAll("before", 20);
    assert.equal(acked.length, 20);
    assert.equal((await call(b, "typing", { roomId: placed.room.id, isTyping: true })).ok, true);
    await until("Bob typing, at Alice", async () => typing.some((t) => t.isTyping));

    await f.redis.stop("SIGTERM");
    const down = Date.now();
    // Sends while Redis is away fail (nothing is stored); the server ends Bob's typing
    // after its timeout, an emit made while Redis is away.
    await sendAll("during", 5);
    await sleep(Math.max(0, 2500 - (Date.now() - down)));
    assert.equal(typing.filter((t) => !t.isTyping).length, 0, "the end of typing cannot cross nodes while Redis is away");
    f.redis = await startRedis({ port: f.redis.port, dir: f.redis.dir });
    await until("both nodes ready again", async () => {
      const ready = await Promise.all(f.nodes.map((n) => fetch(`${n.url}/ready`).then((r) => r.ok)));
      return ready.every(Boolean);
    });
    await sendAll("after", 20);
    const last = acked[acked.length - 1];
    await until("every acknowledged message", async () => messages.some((m) => m.content === last));
    await until("the end of Bob's typing", async () => typing.some((t) => !t.isTyping));
    assert.deepEqual(messages.map((m) => m.content), acked, "every acknowledged message, once, in order");
    assert.deepEqual(typing.map((t) => t.isTyping), [true, false], "the typing made while Redis was away arrived, once");
  } finally {
    a?.close();
    b?.close();
    await f.stop();
  }
});
