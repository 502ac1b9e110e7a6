// The web app when the WebSocket is blocked in the page: the seed scenario over long-polling,
// and, with every Socket.IO request refused too, the HTTP API fallback.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  api,
  devServer,
  devToken,
  hasNotifications,
  launch,
  newUser,
  roomButton,
  shooter,
  signIn,
  waitConnection,
} from "./lib.js";
import { notificationScenario, presenceScenario, seedScenario } from "./scenario.js";

let server;
let browser;
let users;
const shot = shooter("polling");

before(async () => {
  // A short ping interval: a long-poll that the network drops is noticed within seconds.
  server = await devServer({ PING_INTERVAL_MS: "3000", PING_TIMEOUT_MS: "3000" });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("WebSocket blocked: the seed scenario passes over long-polling", async () => {
  users = await seedScenario({ browser, server, shot, network: "polling" });
  const { alice } = users;
  assert.equal(await alice.page.locator("#conn-text").textContent(), "Live · long-polling");
  // The client did try the WebSocket first, and it was refused.
  assert.ok((await alice.page.evaluate(() => window.__wsAttempts)) >= 1);
});

test("WebSocket blocked: notifications arrive over long-polling", async (t) => {
  if (!(await hasNotifications(server.url))) return t.skip("this server build has no notification routes yet");
  await notificationScenario({ server, alice: users.alice, shot });
});

test("WebSocket blocked: presence turns on and off over long-polling", async (t) => {
  if (!(await hasNotifications(server.url))) return t.skip("this server build has no /notifications namespace yet");
  await presenceScenario({ server, alice: users.alice, bob: users.bob, shot });
  assert.deepEqual(users.alice.errors, []);
});

test("Socket.IO refused altogether: the app falls back to the HTTP API and still chats", async () => {
  const { alice } = users;
  const carol = await newUser(browser, { network: "http" });
  await signIn(carol.page, server.url, "Carol");
  await waitConnection(carol.page, "fallback");
  assert.equal(await carol.page.locator("#conn-text").textContent(), "HTTP fallback");
  await shot(carol.page, "http-fallback");

  // Carol starts a room and sends over HTTP; Alice (on polling) gets it live.
  await carol.page.getByRole("button", { name: "New" }).click();
  await carol.page.getByLabel("People").fill("alice");
  await carol.page.getByRole("button", { name: "Start" }).click();
  await carol.page.locator("#room-title", { hasText: "alice" }).waitFor();
  await carol.page.getByLabel("Message", { exact: true }).fill("My proxy eats WebSockets, but this still works");
  await carol.page.getByLabel("Message", { exact: true }).press("Enter");
  await carol.page.locator('.msg.mine .receipt[data-status="sent"]').waitFor();

  const room = roomButton(alice.page, "carol");
  await room.locator(".unread", { hasText: "1" }).waitFor();
  await room.click();
  await alice.page.locator(".msg.theirs .msg-text", { hasText: "My proxy eats WebSockets" }).waitFor();
  await alice.page.getByLabel("Message", { exact: true }).fill("Got it over polling; you get this over HTTP");
  await alice.page.getByLabel("Message", { exact: true }).press("Enter");

  // Carol's app syncs over HTTP every few seconds: the reply shows up.
  await carol.page.locator(".msg.theirs .msg-text", { hasText: "Got it over polling" }).waitFor({ timeout: 20000 });
  await shot(carol.page, "http-fallback-conversation");
  // Carol read the reply (her markMessagesRead went over HTTP): Alice sees the receipt live.
  await alice.page.locator('.msg.mine .receipt[data-status="read"]').waitFor();
  await shot(alice.page, "http-fallback-alice");
  assert.deepEqual(carol.errors, []);
  await carol.context.close();
});

test("connection lost and back: reconnecting, HTTP fallback meanwhile, live again with nothing missed", async () => {
  const { alice } = users;
  const { context, page } = alice;
  await roomButton(page, "bob").click();
  await page.locator("#room-title", { hasText: "bob" }).waitFor();
  const roomId = await roomButton(page, "bob").getAttribute("data-room-id");
  const bob = await devToken(server.url, "bob");
  // Record every state the connection pill shows.
  await page.evaluate(() => {
    const conn = document.getElementById("conn");
    window.__states = [conn.dataset.state];
    new MutationObserver(() => {
      if (window.__states.at(-1) !== conn.dataset.state) window.__states.push(conn.dataset.state);
    }).observe(conn, { attributes: true, attributeFilter: ["data-state"] });
  });

  await context.route("**/socket.io/**", (route) => route.abort("connectionrefused"));
  await waitConnection(page, "fallback");
  await shot(page, "connection-lost-fallback");
  const away = await api(server.url, bob, "POST", "/api/chat/messages", {
    roomId,
    content: "Sent while your socket was down",
    clientMessageId: "away-1",
  });
  assert.equal(away.status, 201);
  await page.locator(".msg-text", { hasText: "Sent while your socket was down" }).waitFor();

  await context.unroute("**/socket.io/**");
  await waitConnection(page, "connected", "polling");
  const live = await api(server.url, bob, "POST", "/api/chat/messages", {
    roomId,
    content: "And this one arrives live",
    clientMessageId: "live-1",
  });
  assert.equal(live.status, 201);
  await page.locator(".msg-text", { hasText: "And this one arrives live" }).waitFor();
  await shot(page, "connection-back");
  const states = await page.evaluate(() => window.__states);
  assert.deepEqual(states, ["connected", "reconnecting", "fallback", "connected"]);
  // Each message once, in order.
  const texts = await page.locator("#message-list .msg-text").allTextContents();
  assert.equal(texts.filter((t) => t === "Sent while your socket was down").length, 1);
  assert.ok(texts.indexOf("Sent while your socket was down") < texts.indexOf("And this one arrives live"));
  assert.deepEqual(alice.errors, []);
});
