// Fault drills, each bounded and self-stopping, each ending with the delivery check:
// kill -9 of a node, a Redis restart, Redis paused, a Sentinel failover, and restarts of
// every Redis Cluster master.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, startRedisCluster, startSentinel, startNginx, token, connect, call, next, sleep, until, uid, http, chatSockets } from "./helpers.js";
import { setupRoom, runTraffic, verify, closeAll } from "./traffic.js";

const ENV = (redis) => ({
  REDIS_URL: redis.url,
  REDIS_TIMEOUT_MS: "500",
  REDIS_RECONNECT_MAX_MS: "300",
  RATE_LIMIT_MESSAGE: "1000/1s",
  RATE_LIMIT_QUERY: "1000/1s",
});

/** Three nodes behind nginx on the Redis deployment `start` returns (a single Redis by default). */
async function cluster(start = startRedis) {
  const redis = await start();
  const nodes = await Promise.all([0, 1, 2].map(() => startServer(ENV(redis))));
  const nginx = await startNginx(nodes);
  return {
    redis,
    nodes,
    nginx,
    async stop() {
      await nginx.stop();
      for (const n of nodes) await n.stop("SIGKILL");
      await this.redis.stop();
    },
  };
}

test("kill -9 of a node while messages flow: its clients reconnect elsewhere, nothing acked is lost", async () => {
  const c = await cluster();
  const { room, participants } = await setupRoom(c.nginx.url, 6, { prefix: "k" });
  try {
    // nginx hashes each client to a node; the node that dies is the one holding the most
    // participants (at least 2 of 6 on 3 nodes), so some always have to reconnect.
    const counts = await Promise.all(c.nodes.map(chatSockets));
    const victim = c.nodes[counts.indexOf(Math.max(...counts))];
    const survivor = c.nodes.find((n) => n !== victim);
    // A user whose only socket is on the node that dies, and someone watching them.
    const lonely = uid("lonely");
    const watcher = await connect(survivor.url, "/notifications", token(uid("watcher")));
    await call(watcher, "subscribePresence", { userIds: [lonely] });
    const cameOnline = next(watcher, "presence", (p) => p.userId === lonely && p.online, 10000);
    const doomed = await connect(victim.url, "/chat", token(lonely), { reconnection: false });
    await cameOnline;
    const wentOffline = next(watcher, "presence", (p) => p.userId === lonely && !p.online, 40000);

    const traffic = runTraffic(participants);
    await sleep(1500);
    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    await sleep(3000);
    await traffic.stop();
    const reconnected = participants.reduce((n, p) => n + p.reconnects, 0);
    assert.ok(reconnected > 0, "some clients were on the killed node and reconnected");
    for (const p of participants) assert.equal(p.socket.connected, true, `${p.user} is connected again`);
    await verify(c.nginx.url, room, participants, traffic.acked);
    // Presence converges: the dead node's user is offline within the documented bound
    // (heartbeat TTL 15 s + sweep interval 5 s).
    const gone = await wentOffline;
    assert.ok(Date.now() - killedAt < 25000, "offline within the bound");
    assert.ok(gone.lastSeen);
    doomed.close();
    watcher.close();
  } finally {
    closeAll(participants);
    await c.stop();
  }
});

test("Redis restarted (AOF on) while messages flow: history survives, traffic resumes", async () => {
  const c = await cluster();
  const { room, participants } = await setupRoom(c.nginx.url, 4, { prefix: "r" });
  try {
    const traffic = runTraffic(participants);
    await sleep(1000);
    const before = traffic.acked.size;
    const oldPid = c.redis.child.pid;
    await c.redis.stop("SIGTERM");
    await sleep(700);
    c.redis = await startRedis({ port: c.redis.port, dir: c.redis.dir });
    await sleep(2500);
    await traffic.stop();
    assert.ok(traffic.acked.size > before + 5, "sends succeed again after the restart");
    // Whether a send happened to hit the short outage is timing; the restart itself is not.
    assert.notEqual(c.redis.child.pid, oldPid, "Redis really restarted");
    const history = await verify(c.nginx.url, room, participants, traffic.acked);
    assert.ok(history.length >= traffic.acked.size);
    // Broadcasts work again after the restart: the adapter re-subscribed.
    const [a, b] = participants;
    const live = new Promise((resolve) => b.socket.once("newMessage", resolve));
    await call(a.socket, "sendMessage", { roomId: room.id, content: "after restart" });
    assert.equal((await live).content, "after restart");
  } finally {
    closeAll(participants);
    await c.stop();
  }
});

test("Redis paused: events fail fast with unavailable, /ready is 503, everything recovers", async () => {
  const c = await cluster();
  const direct = c.nodes[1];
  const { room, participants } = await setupRoom(c.nginx.url, 4, { prefix: "z" });
  const probe = await connect(direct.url, "/chat", token(participants[0].user));
  try {
    const traffic = runTraffic(participants);
    await sleep(800);
    c.redis.child.kill("SIGSTOP");
    try {
      const t0 = Date.now();
      const res = await call(probe, "sendMessage", { roomId: room.id, content: "while paused" });
      const took = Date.now() - t0;
      assert.deepEqual(res.error, { code: "unavailable", message: "storage is temporarily unavailable" });
      assert.ok(took < 4000, `failed fast (${took} ms), not hung`);
      await sleep(1500);
      const ready = await http(direct.url, "GET", "/ready");
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.body, { status: "unavailable" });
      // New sessions are turned away while the store is down (clients retry with back-off).
      const hs = await fetch(`${direct.url}/socket.io/?EIO=4&transport=polling`);
      assert.equal(hs.status, 503);
      assert.equal(probe.connected, true, "existing sockets stay connected");
    } finally {
      c.redis.child.kill("SIGCONT");
    }
    await sleep(2500);
    await traffic.stop();
    assert.equal((await http(direct.url, "GET", "/ready")).status, 200, "ready again");
    assert.equal((await call(probe, "getRooms", {})).ok, true);
    await verify(c.nginx.url, room, participants, traffic.acked);
  } finally {
    probe.close();
    closeAll(participants);
    await c.stop();
  }
});

test("Sentinel failover while messages flow: sends resume on the new master, nothing acked is lost or doubled", async () => {
  const c = await cluster(startSentinel);
  const { room, participants } = await setupRoom(c.nginx.url, 4, { prefix: "s" });
  try {
    const traffic = runTraffic(participants);
    await sleep(1000);
    const oldMaster = await c.redis.masterPort();
    await c.redis.failover();
    const failedOver = Date.now();
    assert.notEqual(await c.redis.masterPort(), oldMaster, "the other server is master now");
    const acked = traffic.acked.size;
    // With min-replicas-to-write 1, the new master takes writes once the old one has rejoined
    // as its replica, which Sentinel arranges within its 10 s INFO period.
    await until("sends to succeed on the new master", async () => traffic.acked.size >= acked + 5, 20000);
    const resumed = Date.now() - failedOver;
    await sleep(1000);
    await traffic.stop();
    assert.ok(resumed < 20000, `sends resumed ${resumed} ms after the failover`);
    await verify(c.nginx.url, room, participants, traffic.acked);
    // Broadcasts work again: the adapter's subscriptions moved to the new master.
    const [a, b] = participants;
    const live = next(b.socket, "newMessage", (m) => m.content === "after failover");
    await call(a.socket, "sendMessage", { roomId: room.id, content: "after failover" });
    await live;
    assert.ok(c.nodes.every((n) => n.logs.some((l) => l.includes("Redis master changed; following it"))));
  } finally {
    closeAll(participants);
    await c.stop();
  }
});

test("Redis Cluster masters restarted in turn while messages flow: sends and broadcasts resume, nothing acked is lost", async () => {
  const c = await cluster(startRedisCluster);
  const { room, participants } = await setupRoom(c.nginx.url, 4, { prefix: "c" });
  try {
    const traffic = runTraffic(participants);
    await sleep(1000);
    // Every master once: the shards holding the room and the adapter's channels all restart.
    for (let i = 0; i < c.redis.nodes.length; i++) {
      await c.redis.restart(i);
      const acked = traffic.acked.size;
      await until(`sends to succeed after restarting master ${i}`, async () => traffic.acked.size >= acked + 3, 15000);
    }
    await sleep(1000);
    await traffic.stop();
    await verify(c.nginx.url, room, participants, traffic.acked);
    // Broadcasts cross nodes again: the restarted shards have the adapter's subscriptions back.
    for (const n of c.nodes) {
      const [a, b] = await Promise.all([connect(n.url, "/chat", token(participants[0].user)), connect(c.nodes.find((m) => m !== n).url, "/chat", token(participants[1].user))]);
      const live = next(b, "newMessage", (m) => m.content === `after restarts via ${n.port}`);
      await call(a, "sendMessage", { roomId: room.id, content: `after restarts via ${n.port}` });
      await live;
      a.close();
      b.close();
    }
  } finally {
    closeAll(participants);
    await c.stop();
  }
});
