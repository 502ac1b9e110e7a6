// The seed's chat scenario end to end with the official socket.io-client, once over
// WebSocket and once over long-polling only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, token, connect, call, next, record, sleep, uid, http } from "./helpers.js";

let server;
before(async () => {
  server = await startServer({ TYPING_TIMEOUT_MS: "600" });
});
after(async () => {
  const { code } = await server.stop();
  assert.equal(code, 0, "server exits 0 on SIGTERM");
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`chat scenario over ${transports[0]}`, async () => {
    const alice = uid("alice");
    const bob = uid("bob");
    const [ta, tb] = [token(alice), token(bob)];
    const a = await connect(server.url, "/chat", ta, { transports });
    const a2 = await connect(server.url, "/chat", ta, { transports }); // Alice's second tab
    const b = await connect(server.url, "/chat", tb, { transports });
    assert.equal(a.io.engine.transport.name, transports[0]);
    try {
      // A opens the direct room; every socket of both users is told and joins it.
      const created = next(b, "roomCreated");
      const r1 = await call(a, "getOrCreateRoom", { participantIds: [bob] });
      assert.equal(r1.ok, true, JSON.stringify(r1));
      const room = r1.data.room;
      assert.equal(room.type, "direct");
      assert.deepEqual(room.participantIds, [alice, bob].sort());
      assert.deepEqual(await created, room);
      // The same pair always gets the same room, whoever asks.
      const again = await call(b, "getOrCreateRoom", { participantIds: [alice] });
      assert.equal(again.data.room.id, room.id);

      // A sends; B and A's other tab get newMessage, the sending socket does not.
      const aSeen = record(a, "newMessage");
      const bGot = next(b, "newMessage");
      const a2Got = next(a2, "newMessage");
      const sent = await call(a, "sendMessage", { roomId: room.id, content: "  hello bob  ", clientMessageId: "c-1" });
      assert.equal(sent.ok, true, JSON.stringify(sent));
      assert.equal(sent.data.message.content, "hello bob");
      assert.deepEqual(await bGot, sent.data.message);
      assert.deepEqual(await a2Got, sent.data.message);
      // A retry with the same clientMessageId returns the stored message and emits nothing.
      const bSeen = record(b, "newMessage");
      const retry = await call(a, "sendMessage", { roomId: room.id, content: "hello bob", clientMessageId: "c-1" });
      assert.deepEqual(retry.data.message, sent.data.message);
      await sleep(200);
      assert.equal(aSeen.length, 0, "sender socket gets an ack, not newMessage");
      assert.equal(bSeen.length, 0, "a retried message is not delivered twice");

      // B's room list shows one unread; B marks it read and A hears about it.
      const rooms = await call(b, "getRooms", {});
      const summary = rooms.data.rooms.find((r) => r.id === room.id);
      assert.equal(summary.unreadCount, 1);
      assert.equal(summary.lastMessage.id, sent.data.message.id);
      const readSeen = next(a, "messagesRead");
      const read = await call(b, "markMessagesRead", { roomId: room.id, messageId: sent.data.message.id });
      assert.deepEqual(read.data, { roomId: room.id, userId: bob, lastReadMessageId: sent.data.message.id, unreadCount: 0 });
      const receipt = await readSeen;
      assert.equal(receipt.userId, bob);
      assert.equal(receipt.lastReadMessageId, sent.data.message.id);
      assert.ok(!Number.isNaN(Date.parse(receipt.readAt)));

      // Typing: start, stop, and the server's timeout for an unrefreshed start.
      const typingA = record(a2, "userTyping"); // the typist's own sockets hear nothing
      let t = next(b, "userTyping");
      assert.deepEqual(await call(a, "typing", { roomId: room.id, isTyping: true }), { ok: true, data: {} });
      assert.deepEqual(await t, { roomId: room.id, userId: alice, isTyping: true });
      t = next(b, "userTyping");
      await call(a, "typing", { roomId: room.id, isTyping: false });
      assert.deepEqual(await t, { roomId: room.id, userId: alice, isTyping: false });
      await call(a, "typing", { roomId: room.id, isTyping: true });
      const started = Date.now();
      const stop = await next(b, "userTyping", (d) => d.isTyping === false, 3000);
      assert.equal(stop.userId, alice);
      assert.ok(Date.now() - started >= 400, "timeout is the server's, not immediate");
      assert.equal(typingA.length, 0);

      // HTTP fallback: a message posted over HTTP reaches B's socket.
      const viaHttp = next(b, "newMessage");
      const posted = await http(server.url, "POST", "/api/chat/messages", { token: ta, body: { roomId: room.id, content: "over http" } });
      assert.equal(posted.status, 201);
      assert.deepEqual(await viaHttp, posted.body.message);

      // B drops off; A sends two more; B reconnects and fetches exactly what it missed.
      const lastSeen = posted.body.message.id;
      b.disconnect();
      const m1 = await call(a, "sendMessage", { roomId: room.id, content: "missed 1" });
      const m2 = await call(a, "sendMessage", { roomId: room.id, content: "missed 2" });
      b.connect();
      await next(b, "connect");
      const missed = await call(b, "getMessages", { roomId: room.id, after: lastSeen });
      assert.deepEqual(missed.data, { messages: [m1.data.message, m2.data.message], hasMore: false });
      // The reconnected socket is back in the room.
      const live = next(b, "newMessage");
      const m3 = await call(a, "sendMessage", { roomId: room.id, content: "live again" });
      assert.deepEqual(await live, m3.data.message);
      // Paging backwards from the newest.
      const older = await call(b, "getMessages", { roomId: room.id, before: m3.data.message.id, limit: 2 });
      assert.deepEqual(older.data.messages.map((m) => m.content), ["missed 1", "missed 2"]);
      assert.equal(older.data.hasMore, true);
    } finally {
      a.close();
      a2.close();
      b.close();
    }
  });
}

test("group rooms reach every participant's sockets at once", async () => {
  const [u1, u2, u3] = [uid("g1"), uid("g2"), uid("g3")];
  const s1 = await connect(server.url, "/chat", token(u1));
  const s2 = await connect(server.url, "/chat", token(u2), { transports: ["polling"] });
  const s3 = await connect(server.url, "/chat", token(u3));
  try {
    const c2 = next(s2, "roomCreated");
    const c3 = next(s3, "roomCreated");
    const res = await call(s1, "getOrCreateRoom", { participantIds: [u2, u3], name: "  team  " });
    assert.equal(res.data.room.type, "group");
    assert.equal(res.data.room.name, "team");
    await Promise.all([c2, c3]);
    // The new room was joined by sockets that never asked for it.
    const g2 = next(s2, "newMessage");
    const g3 = next(s3, "newMessage");
    await call(s1, "sendMessage", { roomId: res.data.room.id, content: "hi team" });
    assert.equal((await g2).content, "hi team");
    assert.equal((await g3).content, "hi team");
  } finally {
    s1.close();
    s2.close();
    s3.close();
  }
});
