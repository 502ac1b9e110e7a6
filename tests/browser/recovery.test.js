// The web app with connection state recovery on (RECOVERY_WINDOW_MS): when its WebSocket is cut
// (not a clean leave) and comes back within the window, the messages sent meanwhile appear
// once, in order, replayed by the server, and the app fetches nothing (no `getMessages`, over
// the socket or HTTP). Playwright's WebSocket routing stands between the page and the server,
// so the test can cut the connection and hold the reconnect while messages are sent.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, devServer, devToken, launch, newUser, roomButton, shooter, signIn, waitConnection } from "./lib.js";

let server;
let browser;
const shot = shooter("recovery");

before(async () => {
  server = await devServer({ RECOVERY_WINDOW_MS: "120000" });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Inbound `getMessages` events the server counted on `/chat`. */
async function getMessagesCount() {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith("socket_messages_total{") && l.includes('event="getMessages"') && l.includes('direction="inbound"'));
  return line ? Number(line.split(" ").pop()) : 0;
}

test("a cut WebSocket back within the window: the missed messages appear, replayed, with nothing fetched", async () => {
  const alice = await newUser(browser);
  // Every WebSocket of the page goes through here: proxied to the server, or, while `cut`,
  // held until the cut ends.
  const open = [];
  const held = [];
  let cut = false;
  await alice.context.routeWebSocket(/\/socket\.io\//, (ws) => {
    if (cut) held.push(ws);
    else open.push({ ws, server: ws.connectToServer() });
  });
  await signIn(alice.page, server.url, "Alice");
  await waitConnection(alice.page, "connected", "websocket");
  await alice.page.getByRole("button", { name: "New" }).click();
  await alice.page.getByLabel("People").fill("bob");
  await alice.page.getByRole("button", { name: "Start" }).click();
  await alice.page.locator("#room-title", { hasText: "bob" }).waitFor();
  const roomId = await roomButton(alice.page, "bob").getAttribute("data-room-id");
  const bob = await devToken(server.url, "bob");
  const send = async (content) => {
    const sent = await api(server.url, bob, "POST", "/api/chat/messages", { roomId, content, clientMessageId: content });
    assert.equal(sent.status, 201);
  };
  // A message live first, so the client holds an offset.
  await send("before the cut");
  await alice.page.locator(".msg-text", { hasText: "before the cut" }).waitFor();
  const httpFetches = [];
  alice.page.on("request", (r) => r.url().includes("/messages") && r.method() === "GET" && httpFetches.push(r.url()));
  const fetchedBefore = await getMessagesCount();

  // Cut: both ends of the WebSocket close without a Socket.IO leave; the reconnect is held.
  cut = true;
  for (const { ws, server: upstream } of open.splice(0)) {
    await upstream.close();
    await ws.close();
  }
  await waitConnection(alice.page, "reconnecting");
  for (const content of ["missed one", "missed two", "missed three"]) await send(content);
  await shot(alice.page, "cut");
  // Let the held reconnects through.
  cut = false;
  for (const ws of held.splice(0)) open.push({ ws, server: ws.connectToServer() });
  await waitConnection(alice.page, "connected", "websocket");
  await alice.page.locator(".msg-text", { hasText: "missed three" }).waitFor();
  await send("live after");
  await alice.page.locator(".msg-text", { hasText: "live after" }).waitFor();
  await shot(alice.page, "recovered");

  const texts = await alice.page.locator("#message-list .msg-text").allTextContents();
  assert.deepEqual(texts, ["before the cut", "missed one", "missed two", "missed three", "live after"]);
  assert.equal(await getMessagesCount(), fetchedBefore, "no getMessages over the socket after the recovered reconnect");
  assert.deepEqual(httpFetches, [], "nor over HTTP");
  assert.deepEqual(alice.errors, []);
  await alice.context.close();
});
