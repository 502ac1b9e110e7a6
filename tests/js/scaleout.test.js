// Three server processes sharing one Redis deployment behave as one server: rooms,
// messages, receipts, typing, rate limits, presence and notifications cross nodes, over
// WebSocket and over polling. The whole suite runs on a single Redis, on a Redis Cluster
// (three masters) and on a Sentinel-managed master.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, startRedisCluster, startSentinel, startNginx, token, connect, call, next, record, sleep, uid, http } from "./helpers.js";

const SERVICE_KEY = "scaleout-service-key-0123456789";
const DEPLOYMENTS = { "single Redis": startRedis, "Redis Cluster": startRedisCluster, "Redis Sentinel": startSentinel };

for (const [deployment, start] of Object.entries(DEPLOYMENTS)) {
  describe(deployment, () => {
    let redis;
    let nodes = [];
    before(async () => {
      redis = await start();
      const env = { REDIS_URL: redis.url, TYPING_TIMEOUT_MS: "600", RATE_LIMIT_ROOM: "5/60s", RATE_LIMIT_WARNINGS: "1", SERVICE_API_KEYS: SERVICE_KEY };
      nodes = await Promise.all([startServer(env), startServer(env), startServer(env)]);
    });
    after(async () => {
      for (const n of nodes) assert.equal((await n.stop()).code, 0);
      await redis.stop();
    });

    test("chat crosses nodes over websocket and polling", async () => {
      const [alice, bob] = [uid("alice"), uid("bob")];
      const a = await connect(nodes[0].url, "/chat", token(alice));
      const b1 = await connect(nodes[1].url, "/chat", token(bob), { transports: ["polling"] });
      const b2 = await connect(nodes[2].url, "/chat", token(bob));
      try {
        // The room is created on node 0; Bob's sockets on nodes 1 and 2 hear of it and join it.
        const created = [next(b1, "roomCreated"), next(b2, "roomCreated")];
        const room = (await call(a, "getOrCreateRoom", { participantIds: [bob] })).data.room;
        for (const r of await Promise.all(created)) assert.deepEqual(r, room);
        // Same pair from another node → same room.
        assert.equal((await call(b2, "getOrCreateRoom", { participantIds: [alice] })).data.room.id, room.id);

        const got = [next(b1, "newMessage"), next(b2, "newMessage")];
        const aSeen = record(a, "newMessage");
        const sent = await call(a, "sendMessage", { roomId: room.id, content: "across", clientMessageId: "x1" });
        for (const m of await Promise.all(got)) assert.deepEqual(m, sent.data.message);
        // Idempotent across nodes: a retry through node 2's HTTP API stores nothing new.
        const retry = await http(nodes[2].url, "POST", "/api/chat/messages", {
          token: token(alice),
          body: { roomId: room.id, content: "across", clientMessageId: "x1" },
        });
        assert.equal(retry.status, 200);
        assert.deepEqual(retry.body.message, sent.data.message);

        // Read receipt from node 1 reaches Alice on node 0.
        const receipt = next(a, "messagesRead");
        const read = await call(b1, "markMessagesRead", { roomId: room.id, messageId: sent.data.message.id });
        assert.equal(read.data.unreadCount, 0);
        assert.equal((await receipt).userId, bob);

        // Typing from node 0 reaches node 2, and the server timeout ends it.
        const typing = next(b2, "userTyping");
        await call(a, "typing", { roomId: room.id, isTyping: true });
        assert.equal((await typing).isTyping, true);
        assert.equal((await next(b2, "userTyping", (t) => !t.isTyping, 3000)).userId, alice);

        // HTTP on node 2 reaches both of Bob's sockets and Alice's socket on node 0.
        const viaHttp = [next(b1, "newMessage"), next(a, "newMessage")];
        const posted = await http(nodes[2].url, "POST", "/api/chat/messages", { token: token(bob), body: { roomId: room.id, content: "from http" } });
        assert.equal(posted.status, 201);
        for (const m of await Promise.all(viaHttp)) assert.deepEqual(m, posted.body.message);

        // History is shared: any node returns the same page.
        const pages = await Promise.all(nodes.map((n) => http(n.url, "GET", `/api/chat/rooms/${room.id}/messages`, { token: token(bob) })));
        for (const p of pages) assert.deepEqual(p.body, pages[0].body);
        assert.equal(pages[0].body.messages.length, 2);
        await sleep(100);
        assert.equal(aSeen.filter((m) => m.id === sent.data.message.id).length, 0, "sender socket gets no echo");
      } finally {
        [a, b1, b2].forEach((s) => s.close());
      }
    });

    test("a rate limit of N per window allows N in total across three nodes", async () => {
      const carol = uid("carol");
      const sockets = await Promise.all(nodes.map((n) => connect(n.url, "/chat", token(carol))));
      try {
        const results = [];
        for (let i = 0; i < 9; i++) {
          const s = sockets[i % 3];
          results.push(await call(s, "getOrCreateRoom", { participantIds: [uid("x")] }));
        }
        assert.equal(results.filter((r) => r.ok).length, 5, "RATE_LIMIT_ROOM=5/60s across all nodes");
        const codes = results.filter((r) => !r.ok).map((r) => r.error.code);
        assert.deepEqual([...new Set(codes)], ["rate_limited"]);
        // With one warning allowed, the 7th event blocked Carol everywhere.
        const blocked = await call(sockets[2], "getRooms", {});
        assert.equal(blocked.error.code, "rate_limited");
      } finally {
        sockets.forEach((s) => s.close());
      }
    });

    test("through the nginx sticky-session front, polling and websocket clients work across nodes", async () => {
      const nginx = await startNginx(nodes);
      const sockets = [];
      try {
        // Without a cookie, requests are spread over the nodes.
        const ports = new Set();
        for (let i = 0; i < 30; i++) ports.add((await http(nginx.url, "GET", "/health")).body.port);
        assert.equal(ports.size, 3, "the front balances across all three nodes");

        // Polling-only clients need every request of a session on one node: the cookie does it.
        const users = Array.from({ length: 6 }, (_, i) => uid(`n${i}`));
        for (const [i, u] of users.entries()) {
          const opts = i % 2 ? { transports: ["polling"], withCredentials: true } : { transports: ["websocket"], withCredentials: true };
          sockets.push(await connect(nginx.url, "/chat", token(u), opts));
        }
        const room = (await call(sockets[0], "getOrCreateRoom", { participantIds: users.slice(1), name: "front" })).data.room;
        const got = sockets.slice(1).map((s) => next(s, "newMessage", () => true, 10000));
        const sent = await call(sockets[0], "sendMessage", { roomId: room.id, content: "through nginx" });
        for (const m of await Promise.all(got)) assert.deepEqual(m, sent.data.message);
        // Several more round trips on the polling sockets: still the same session.
        for (const s of sockets.filter((_, i) => i % 2)) {
          for (let k = 0; k < 3; k++) assert.equal((await call(s, "getRooms", {})).ok, true);
          assert.equal(s.io.engine.transport.name, "polling");
        }
      } finally {
        sockets.forEach((s) => s.close());
        await nginx.stop();
      }
    });

    test("presence and notifications cross nodes", async () => {
      const [watcher, xavier] = [uid("watcher"), uid("xavier")];
      const w = await connect(nodes[0].url, "/notifications", token(watcher));
      const sockets = [];
      try {
        const initial = await call(w, "subscribePresence", { userIds: [xavier] });
        assert.deepEqual(initial.data.users, [{ userId: xavier, online: false }]);
        // Xavier comes online on node 1; the watcher on node 0 hears it.
        const online = next(w, "presence", (p) => p.userId === xavier);
        sockets.push(await connect(nodes[1].url, "/chat", token(xavier)));
        assert.deepEqual(await online, { userId: xavier, online: true });
        // A second socket on node 2, in the other namespace: one user, still one "online".
        const n2 = await connect(nodes[2].url, "/notifications", token(xavier), { transports: ["polling"] });
        sockets.push(n2);
        assert.equal((await call(w, "subscribePresence", { userIds: [xavier] })).data.users[0].online, true);

        // A notification produced on node 0 reaches Xavier's socket on node 2.
        const note = next(n2, "newNotification");
        const res = await fetch(`${nodes[0].url}/api/events`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_KEY}` },
          body: JSON.stringify({ type: "user.registered", userId: xavier, data: { name: "Xavier" } }),
        });
        assert.equal(res.status, 202);
        const notification = await note;
        assert.equal(notification.type, "welcome");
        assert.match(notification.title, /Xavier/);

        // Closing one socket keeps him online; closing both takes him offline with lastSeen.
        const events = [];
        w.on("presence", (p) => p.userId === xavier && events.push(p));
        sockets[0].close();
        await sleep(500);
        assert.deepEqual(events, [], "still online with a socket left");
        const offline = next(w, "presence", (p) => p.userId === xavier && !p.online);
        n2.close();
        const gone = await offline;
        assert.ok(!Number.isNaN(Date.parse(gone.lastSeen)));
      } finally {
        w.close();
        sockets.forEach((s) => s.close());
      }
    });
  });
}
