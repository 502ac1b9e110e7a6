// The notification pipeline and presence end to end with the official socket.io-client:
// a backend posts user.registered, both of the user's sockets get newNotification and the
// unread count, reading brings it down on both, and the polling fallback agrees; presence
// follows the user's last socket. Once over WebSocket and once over long-polling only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, token, connect, call, next, record, sleep, uid, http } from "./helpers.js";

const KEY = "js-service-key-0123456789";
let server;
before(async () => {
  server = await startServer({ SERVICE_API_KEYS: KEY });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, "server exits 0 on SIGTERM");
});

/** Connects with `unreadCount` recorded from the first packet on. */
function notificationsSocket(user, transports) {
  const socket = io(server.url + "/notifications", {
    auth: { token: token(user) },
    forceNew: true,
    reconnection: false,
    transports,
  });
  const counts = record(socket, "unreadCount");
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve({ socket, counts }));
    socket.once("connect_error", reject);
  });
}

async function waitFor(check, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

for (const transports of [["websocket"], ["polling"]]) {
  test(`user.registered reaches both sockets over ${transports[0]}`, async () => {
    const ann = uid("ann");
    const first = await notificationsSocket(ann, transports);
    const second = await notificationsSocket(ann, transports);
    try {
      await waitFor(() => first.counts.length && second.counts.length, "unreadCount on connect");
      assert.deepEqual(first.counts[0], { count: 0 });
      assert.deepEqual(second.counts[0], { count: 0 });

      const got = [next(first.socket, "newNotification"), next(second.socket, "newNotification")];
      const res = await http(server.url, "POST", "/api/events", {
        token: KEY,
        body: { type: "user.registered", userId: ann, data: { name: "Ann" } },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.deepEqual(res.body.jobs.map((j) => j.channel), ["browser"]);
      const [n1, n2] = await Promise.all(got);
      assert.deepEqual(n1, n2);
      assert.equal(n1.id, `${res.body.eventId}.welcome`);
      assert.equal(n1.title, "Welcome to Switchyard, Ann!");
      assert.equal(n1.read, false);
      await waitFor(() => first.counts.at(-1).count === 1 && second.counts.at(-1).count === 1, "count 1");

      // The polling fallback returns what the socket event returns.
      const page = await call(first.socket, "getNotifications", {});
      assert.equal(page.ok, true, JSON.stringify(page));
      assert.equal(page.data.unreadCount, 1);
      const polled = await http(server.url, "GET", "/api/notifications", { token: token(ann) });
      assert.equal(polled.status, 200);
      assert.deepEqual(polled.body, page.data);

      // Reading on one socket brings the count down on both.
      const read = await call(first.socket, "markNotificationsRead", { ids: [n1.id] });
      assert.deepEqual(read, { ok: true, data: { unreadCount: 0 } });
      await waitFor(() => first.counts.at(-1).count === 0 && second.counts.at(-1).count === 0, "count 0");
      const after = await http(server.url, "GET", "/api/notifications?unreadOnly=true", { token: token(ann) });
      assert.deepEqual(after.body, { notifications: [], unreadCount: 0 });
    } finally {
      first.socket.close();
      second.socket.close();
    }
  });
}

test("presence follows the user's last socket", async () => {
  const fay = uid("fay");
  const watcher = await connect(server.url, "/notifications", token(uid("watcher")));
  try {
    const sub = await call(watcher, "subscribePresence", { userIds: [fay] });
    assert.deepEqual(sub, { ok: true, data: { users: [{ userId: fay, online: false }] } });
    const seen = record(watcher, "presence");

    const chat = await connect(server.url, "/chat", token(fay));
    const tab = await connect(server.url, "/notifications", token(fay), { transports: ["polling"] });
    await waitFor(() => seen.length === 1, "online");
    assert.deepEqual(seen[0], { userId: fay, online: true });

    chat.close();
    await sleep(300);
    assert.equal(seen.length, 1, "still online with one socket left");
    const still = await call(watcher, "subscribePresence", { userIds: [fay] });
    assert.deepEqual(still.data.users, [{ userId: fay, online: true }]);

    tab.close();
    await waitFor(() => seen.length === 2, "offline");
    assert.equal(seen[1].userId, fay);
    assert.equal(seen[1].online, false);
    assert.ok(Date.parse(seen[1].lastSeen) <= Date.now(), `lastSeen ${seen[1].lastSeen}`);
  } finally {
    watcher.close();
  }
});

test("backends need a service key; user tokens get 403 and nothing is queued", async () => {
  const eve = uid("eve");
  const socket = await connect(server.url, "/notifications", token(eve));
  try {
    const seen = record(socket, "newNotification");
    const asUser = await http(server.url, "POST", "/api/events", {
      token: token(eve),
      body: { type: "user.registered", userId: eve },
    });
    assert.equal(asUser.status, 403);
    assert.deepEqual(asUser.body.error, {
      code: "forbidden",
      message: "user tokens cannot call service routes; use a service key",
    });
    const unknown = await http(server.url, "POST", "/api/events", {
      token: KEY,
      body: { type: "user.exploded", userId: eve },
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.message, 'type: no rule for event type "user.exploded"');
    await sleep(300);
    assert.equal(seen.length, 0);
  } finally {
    socket.close();
  }
});
