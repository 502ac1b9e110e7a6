// The server API for backends with the official socket.io-client, on two server processes
// sharing one Redis: an emit reaches a user's sockets on both nodes (one over polling), and
// a disconnect ends them with the client's `io server disconnect`, after which the client,
// even with reconnection on, stays disconnected as Socket.IO specifies.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, token, connect, next, uid, http } from "./helpers.js";

const SERVICE_KEY = "server-api-service-key-0123456789";
let redis;
let nodes = [];

before(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, SERVICE_API_KEYS: SERVICE_KEY };
  nodes = await Promise.all([startServer(env), startServer(env)]);
});

after(async () => {
  for (const n of nodes) assert.equal((await n.stop()).code, 0);
  await redis.stop();
});

test("a backend emits to and disconnects a user whose sockets are on two nodes", async () => {
  const alice = uid("alice");
  const chat = await connect(nodes[0].url, "/chat", token(alice), { reconnection: true });
  const notes = await connect(nodes[1].url, "/notifications", token(alice), { transports: ["polling"], reconnection: true });
  try {
    const events = [next(chat, "backendSays"), next(notes, "backendSays")];
    for (const [node, namespace] of [[nodes[1], "/chat"], [nodes[0], "/notifications"]]) {
      const sent = await http(node.url, "POST", `/api/server/users/${alice}/emit`, {
        token: SERVICE_KEY,
        body: { namespace, event: "backendSays", data: { hello: namespace } },
      });
      assert.equal(sent.status, 202, JSON.stringify(sent.body));
    }
    assert.deepEqual(await Promise.all(events), [{ hello: "/chat" }, { hello: "/notifications" }]);

    const reasons = [next(chat, "disconnect"), next(notes, "disconnect")];
    const gone = await http(nodes[1].url, "POST", `/api/server/users/${alice}/disconnect`, { token: SERVICE_KEY });
    assert.equal(gone.status, 202);
    assert.deepEqual(await Promise.all(reasons), ["io server disconnect", "io server disconnect"]);
    assert.equal(chat.active, false);
    assert.equal(notes.active, false);

    const user = token(alice);
    const refused = await http(nodes[0].url, "GET", `/api/server/users/${alice}`, { token: user });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, "forbidden");
  } finally {
    chat.close();
    notes.close();
  }
});
