// The web app over WebSocket in real Chromium: the seed scenario between two browser contexts,
// notifications, presence, group rooms, history paging, keyboard use and the phone layout.
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
const shot = shooter("ws");

before(async () => {
  // A generous message budget: the history test seeds 75 messages.
  server = await devServer({ RATE_LIMIT_MESSAGE: "500/10s" });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("seed scenario over WebSocket: sign in, open a room, send, the other reads, read receipt", async () => {
  users = await seedScenario({ browser, server, shot });
  // socket.io-client really used the WebSocket.
  assert.equal(await users.alice.page.locator("#conn-text").textContent(), "Live · WebSocket");
});

test("a notification from POST /api/events appears in the bell", async (t) => {
  if (!(await hasNotifications(server.url))) return t.skip("this server build has no notification routes yet");
  await notificationScenario({ server, alice: users.alice, shot });
});

test("presence turns on and off", async (t) => {
  if (!(await hasNotifications(server.url))) return t.skip("this server build has no /notifications namespace yet");
  await presenceScenario({ server, alice: users.alice, bob: users.bob, shot });
});

test("group rooms: create, everyone sees it, messages reach all members", async () => {
  const { alice, bob } = users;
  const carol = await newUser(browser);
  await signIn(carol.page, server.url, "Carol");
  await waitConnection(carol.page, "connected", "websocket");

  await alice.page.getByRole("button", { name: "New" }).click();
  await alice.page.getByLabel("People").fill("bob, carol");
  await alice.page.getByLabel(/Group name/).fill("Launch crew");
  await shot(alice.page, "group-new");
  await alice.page.getByRole("button", { name: "Start" }).click();
  await alice.page.locator("#room-title", { hasText: "Launch crew" }).waitFor();
  await alice.page.getByLabel("Message", { exact: true }).fill("Launch is at 15:00. Checklist in the doc.");
  await alice.page.getByLabel("Message", { exact: true }).press("Enter");

  for (const page of [bob.page, carol.page]) {
    const room = roomButton(page, "Launch crew");
    await room.locator(".unread", { hasText: "1" }).waitFor();
  }
  await roomButton(carol.page, "Launch crew").click();
  await carol.page.locator(".msg.theirs .sender", { hasText: "alice" }).waitFor();
  await carol.page.getByLabel("Message", { exact: true }).fill("On it — checklist done ✓");
  await carol.page.getByLabel("Message", { exact: true }).press("Enter");
  await alice.page.locator(".msg.theirs .msg-text", { hasText: "On it — checklist done ✓" }).waitFor();
  // In a group the receipt names who read it.
  await alice.page.locator('.msg.mine .receipt[data-status="read"]', { hasText: "Read by carol" }).waitFor();
  await shot(alice.page, "group-conversation");
  await shot(carol.page, "group-carol");
  assert.deepEqual(carol.errors, []);
  await carol.context.close();
});

test("history: the newest page first, then 'Load older messages' down to the first message", async () => {
  const { alice } = users;
  const dave = await devToken(server.url, "dave");
  const room = (await api(server.url, dave, "POST", "/api/chat/rooms", { participantIds: ["alice"] })).body.room;
  for (let i = 1; i <= 75; i++) {
    const res = await api(server.url, dave, "POST", "/api/chat/messages", {
      roomId: room.id,
      content: `Log line ${i}`,
      clientMessageId: `seed-${i}`,
    });
    assert.equal(res.status, 201);
  }
  const item = roomButton(alice.page, "dave");
  await item.locator(".unread", { hasText: "75" }).waitFor();
  await item.click();
  const texts = alice.page.locator("#message-list .msg-text");
  await alice.page.locator(".msg-text", { hasText: "Log line 75" }).waitFor();
  assert.equal(await texts.count(), 30);
  const older = alice.page.getByRole("button", { name: "Load older messages" });
  await older.click();
  await alice.page.locator(".msg-text", { hasText: /^Log line 45$/ }).waitFor();
  await shot(alice.page, "history-older");
  await older.click();
  await alice.page.locator(".msg-text", { hasText: /^Log line 1$/ }).waitFor();
  await older.waitFor({ state: "hidden" });
  assert.equal(await texts.count(), 75);
  // In order, oldest first.
  const all = await texts.allTextContents();
  assert.deepEqual(all, Array.from({ length: 75 }, (_, i) => `Log line ${i + 1}`));
  await item.locator(".unread").waitFor({ state: "detached" });
});

test("keyboard only: move through the list with arrows, open with Enter, send with Enter", async () => {
  const { alice } = users;
  const page = alice.page;
  await roomButton(page, "bob").focus();
  await page.keyboard.press("ArrowDown");
  const focusedName = await page.evaluate(() => document.activeElement.querySelector(".room-name")?.textContent);
  assert.ok(focusedName && focusedName !== "bob", `focus moved to another room, got ${focusedName}`);
  await page.keyboard.press("ArrowUp");
  assert.equal(await page.evaluate(() => document.activeElement.querySelector(".room-name")?.textContent), "bob");
  await page.keyboard.press("Enter");
  await page.locator("#room-title", { hasText: "bob" }).waitFor();
  // The message box has focus after opening a room on a wide screen.
  assert.equal(await page.evaluate(() => document.activeElement.id), "composer-input");
  await page.keyboard.type("Typed without a mouse");
  await page.keyboard.press("Enter");
  await page.locator(".msg.mine .msg-text", { hasText: "Typed without a mouse" }).waitFor();
  // Dialogs: Escape closes, focus is inside while open.
  await page.getByRole("button", { name: "New" }).click();
  assert.equal(await page.evaluate(() => document.activeElement.id), "nr-people");
  await page.keyboard.press("Escape");
  await page.locator("#new-room-dialog").waitFor({ state: "hidden" });
});

test("every control has an accessible name; landmarks and live regions are in place", async () => {
  const { page } = users.alice;
  const unnamed = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll("button, input, textarea, [role=img], a[href]")) {
      if (el.closest("[hidden]") || el.type === "hidden") continue;
      const labelled =
        el.getAttribute("aria-label") ||
        el.getAttribute("aria-labelledby") ||
        (el.labels && el.labels.length) ||
        el.textContent.trim();
      if (!labelled) bad.push(el.outerHTML.slice(0, 120));
    }
    return bad;
  });
  assert.deepEqual(unnamed, []);
  for (const role of ["banner", "navigation", "main", "log", "status"]) {
    assert.ok((await page.getByRole(role).count()) >= 1, `a ${role} landmark/role exists`);
  }
  assert.deepEqual(users.alice.errors, []);
  assert.deepEqual(users.bob.errors, []);
});

test("phone-sized screen: one pane at a time, back button, nothing overflows", async () => {
  const { bob } = users;
  const page = bob.page;
  await page.goto(server.url);
  await page.locator("#app").waitFor();
  await roomButton(page, "alice").waitFor();
  assert.equal(await page.locator("#conversation").isVisible(), false);
  await shot(page, "phone-list");
  await roomButton(page, "alice").click();
  await page.locator("#room-title", { hasText: "alice" }).waitFor();
  assert.equal(await page.locator(".sidebar").isVisible(), false);
  // Focus follows to the conversation (its title), not the hidden list.
  assert.equal(await page.evaluate(() => document.activeElement.id), "room-title");
  // Receipts seen before the reload are still there.
  await page.locator('.msg.mine .receipt[data-status="read"]').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "no horizontal scrolling on a phone");
  await shot(page, "phone-conversation");
  await page.getByRole("button", { name: "Back to conversations" }).click();
  await roomButton(page, "alice").waitFor();
  assert.deepEqual(bob.errors, []);
});
