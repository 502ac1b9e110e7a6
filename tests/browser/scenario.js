// The seed's browser scenario ("Login → Room → Message → Read"), plus notifications and
// presence, written once and run over each network condition (WebSocket, polling only).
import assert from "node:assert/strict";
import { PHONE, newUser, postEvent, roomButton, signIn, waitConnection } from "./lib.js";

const composer = (page) => page.getByLabel("Message", { exact: true });

/**
 * Alice (desktop) and Bob (phone-sized) sign in; Alice opens a direct room with Bob and types
 * (Bob sees "typing…"), sends; Bob sees the unread count, opens the room and reads; Alice sees
 * the read receipt. Then the same the other way round. Returns both users, still signed in.
 */
export async function seedScenario({ browser, server, shot, network = "websocket" }) {
  const transport = network === "websocket" ? "websocket" : "polling";
  const alice = await newUser(browser, { network });
  const bob = await newUser(browser, { network, viewport: PHONE, phone: true });

  // Sign in.
  await alice.page.goto(server.url);
  await alice.page.getByLabel("Your name").fill("Alice", { timeout: 30000 });
  await shot(alice.page, "alice-sign-in");
  await alice.page.getByRole("button", { name: "Continue" }).click();
  await waitConnection(alice.page, "connected", transport);
  await shot(alice.page, "alice-signed-in");
  await signIn(bob.page, server.url, "Bob");
  await waitConnection(bob.page, "connected", transport);

  // Open a room.
  await alice.page.getByRole("button", { name: "New" }).click();
  await alice.page.getByLabel("People").fill("bob");
  await shot(alice.page, "alice-new-room");
  await alice.page.getByRole("button", { name: "Start" }).click();
  await alice.page.locator("#room-title", { hasText: "bob" }).waitFor();
  const bobsRoom = roomButton(bob.page, "alice");
  await bobsRoom.waitFor(); // roomCreated reached Bob

  // Type (Bob sees it in his list), then send with Enter.
  await composer(alice.page).pressSequentially("Hi Bob! Lunch at noon?", { delay: 15 });
  await bobsRoom.locator(".typing-preview").waitFor();
  await shot(bob.page, "bob-sees-alice-typing");
  await composer(alice.page).press("Enter");
  await alice.page.locator('.msg.mine .receipt[data-status="sent"]').waitFor();
  await shot(alice.page, "alice-sent");

  // The other sees it: unread count in the list.
  await bobsRoom.locator(".unread", { hasText: "1" }).waitFor();
  await bobsRoom.locator(".room-preview", { hasText: "Lunch at noon?" }).waitFor();
  await shot(bob.page, "bob-unread");

  // Bob reads it; Alice sees the read receipt.
  await bobsRoom.click();
  await bob.page.locator(".msg.theirs .msg-text", { hasText: "Hi Bob! Lunch at noon?" }).waitFor();
  await shot(bob.page, "bob-reads");
  await alice.page.locator('.msg.mine .receipt[data-status="read"]', { hasText: "Read" }).waitFor();
  await shot(alice.page, "alice-sees-read-receipt");

  // And back: Bob types (Alice sees the indicator), taps Send; Alice has the room open and
  // reads at once, so Bob gets his receipt.
  await composer(bob.page).pressSequentially("Sounds good, see you there", { delay: 15 });
  await alice.page.locator("#typing", { hasText: "bob is typing" }).waitFor();
  await shot(alice.page, "alice-sees-bob-typing");
  await bob.page.getByRole("button", { name: "Send" }).click();
  await alice.page.locator(".msg.theirs .msg-text", { hasText: "Sounds good, see you there" }).waitFor();
  await alice.page.locator('#typing[data-active="false"]').waitFor();
  await bob.page.locator('.msg.mine .receipt[data-status="read"]').waitFor();
  await shot(bob.page, "bob-sees-read-receipt");
  await shot(alice.page, "alice-conversation");

  // Nothing was left unread on either side.
  assert.equal(await roomButton(alice.page, "bob").locator(".unread").count(), 0);
  await bob.page.getByRole("button", { name: "Back to conversations" }).click();
  await bobsRoom.waitFor();
  assert.equal(await bobsRoom.locator(".unread").count(), 0);
  await shot(bob.page, "bob-list-read");
  return { alice, bob };
}

/** A `user.registered` event for Alice becomes a notification in her bell; she reads it. */
export async function notificationScenario({ server, alice, shot }) {
  const { page } = alice;
  await page.locator('#bell:not([aria-label*="unread"])').waitFor();
  const res = await postEvent(server.url, { type: "user.registered", userId: "alice", data: { name: "Alice" } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  await page.locator("#bell-badge", { hasText: "1" }).waitFor();
  await page.locator(".toast", { hasText: "Welcome to Switchyard, Alice!" }).waitFor();
  await shot(page, "notification-arrives");
  await page.getByRole("button", { name: "Notifications, 1 unread" }).click();
  await page.locator(".notif.is-unread .notif-title", { hasText: "Welcome to Switchyard, Alice!" }).waitFor();
  await shot(page, "notification-panel");
  await page.getByRole("button", { name: "Mark all read" }).click();
  await page.locator("#bell-badge").waitFor({ state: "hidden" });
  await page.locator(".notif:not(.is-unread) .notif-title", { hasText: "Welcome to Switchyard" }).waitFor();
  await shot(page, "notification-read");
  await page.keyboard.press("Escape");
  await page.locator("#notif-panel").waitFor({ state: "hidden" });
}

/** Alice watches Bob: online, offline when he closes the app, online when he comes back. */
export async function presenceScenario({ server, alice, bob, shot }) {
  const { page } = alice;
  await roomButton(page, "bob").click();
  const dot = (online) => page.locator(`#room-avatar .presence[data-user="bob"][data-online="${online}"]`);
  await dot(true).waitFor();
  await page.locator("#room-sub", { hasText: "Online" }).waitFor();
  await roomButton(page, "bob").locator('.presence[data-online="true"]').waitFor();
  await shot(page, "presence-online");

  await bob.page.close({ runBeforeUnload: true });
  await dot(false).waitFor({ timeout: 30000 });
  await page.locator("#room-sub", { hasText: "Last seen" }).waitFor();
  await shot(page, "presence-offline");

  // Bob comes back: the token is remembered, so the app signs him in by itself.
  bob.page = await bob.context.newPage();
  await bob.page.goto(server.url);
  await bob.page.locator("#app").waitFor();
  await dot(true).waitFor({ timeout: 30000 });
  await page.locator("#room-sub", { hasText: "Online" }).waitFor();
  await shot(page, "presence-online-again");
}
