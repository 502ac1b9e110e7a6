// The official Socket.IO Admin UI (@socket.io/admin-ui 0.5.1, as the server serves it from
// its binary) in Debian's Chromium, against two Switchyard nodes sharing a real Redis: it
// signs in to one node, lists both servers and the sockets of clients on each (official
// socket.io-client, one over WebSocket, one over long-polling), and its "disconnect" button
// ends a client connected to the other node. Wrong credentials are refused in the UI's own
// words, and a read-only server offers no actions and refuses them when sent anyway.
//
// The page asks two CDNs for fonts, out of reach here: the icon font is answered from the
// npm package @mdi/font (so the screenshots show the icons), Roboto is left to fail (the
// browser falls back to its sans-serif). Screenshots go to tests/artifacts/browser/admin-ui-*;
// docs/img/admin-ui*.png are two of them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { connect, next, startRedis, startServer, token, uid, until } from "../js/helpers.js";
import { launch, shooter } from "./lib.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const shot = shooter("admin-ui");
/** `changeit` at cost 4 (bcryptjs's hashSync("changeit", 4)): a debug build checks it fast. */
const HASH = "$2a$04$oym0iiYp3Twzqv/qxOnWOu3QndxG2rznJh.0/QxWu00AoD07bcdoa";
const ADMIN = { ADMIN_UI_USERNAME: "ops", ADMIN_UI_PASSWORD_HASH: HASH };
const FILES = ["index.html", "favicon.png", "css/app.6e3b9661.css", "css/chunk-vendors.9f55d012.css",
  "img/logo-dark.3727fec5.svg", "img/logo-light.73342c25.svg", "js/app.0d7d7845.js", "js/chunk-vendors.934c03ff.js"];

let redis;
let nodes = [];
let browser;

before(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, ...ADMIN };
  nodes = await Promise.all([startServer(env), startServer(env)]);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  for (const n of nodes) await n.stop();
  await redis?.stop();
});

/** A page with the icon font served from npm and every other outside request refused. */
async function adminPage() {
  const context = await browser.newContext({ viewport: { width: 1440, height: 810 }, reducedMotion: "reduce" });
  context.setDefaultTimeout(30000);
  const mdi = path.dirname(require.resolve("@mdi/font/package.json"));
  await context.route(/^https:\/\/cdn\.jsdelivr\.net\/npm\/@mdi\/font@latest\/(css|fonts)\/([^?#]+)/, (route) => {
    const [, dir, file] = route.request().url().match(/@mdi\/font@latest\/(css|fonts)\/([^?#]+)/);
    const type = dir === "css" ? "text/css" : `font/${path.extname(file).slice(1)}`;
    return route.fulfill({ body: readFileSync(path.join(mdi, dir, file)), contentType: type });
  });
  await context.route(/^https:\/\/fonts\.googleapis\.com\//, (route) => route.abort("internetdisconnected"));
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err));
  return { context, page, errors };
}

/** Fills the UI's connection modal and submits it. */
async function signIn(page, node, password) {
  await page.goto(`${node.url}/admin/`);
  await page.getByLabel("Server URL").fill(node.url);
  await page.getByLabel("Username").fill("ops");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
}

/** The data-table row that shows `text`. */
const row = (page, text) => page.locator("tbody tr").filter({ hasText: text });

test("the served UI is the npm package's ui/dist, file for file", () => {
  const dist = path.join(path.dirname(require.resolve("@socket.io/admin-ui/package.json")), "ui/dist");
  for (const file of FILES) {
    const served = readFileSync(path.join(here, "../../server/admin-ui", file));
    assert.ok(served.equals(readFileSync(path.join(dist, file))), `server/admin-ui/${file} differs from the locked package`);
  }
  const license = readFileSync(path.join(here, "../../server/admin-ui/LICENSE"), "utf8");
  assert.match(license, /Copyright \(c\) 2021 The Socket\.IO team/);
});

test("signed in to one node, the official UI shows both servers and their sockets, and disconnects a client of the other node", async () => {
  const alice = uid("alice");
  const bob = uid("bob");
  const aliceSocket = await connect(nodes[0].url, "/chat", token(alice));
  const bobSocket = await connect(nodes[1].url, "/chat", token(bob), { transports: ["polling"] });
  const { context, page, errors } = await adminPage();
  try {
    await signIn(page, nodes[0], "changeit");
    await page.locator(".v-dialog--active").waitFor({ state: "detached" });

    // Servers: each node by its own stats (its pid), both healthy.
    await page.goto(`${nodes[0].url}/admin/#/servers`);
    for (const node of nodes) await row(page, `:${node.port}`).waitFor();
    // Polled, not counted at once: on a loaded machine the page that was shown before can
    // still be leaving the DOM with its own table rows (a CI run counted 9).
    const rows = page.locator("tbody tr");
    await until("the servers page to list exactly the two nodes", async () => (await rows.count()) === 2)
      .catch(async (e) => assert.fail(`${e.message}: ${JSON.stringify(await rows.allTextContents())}`));
    await page.locator("tbody tr .v-chip", { hasText: "Healthy" }).nth(1).waitFor();
    await shot(page, "servers");

    await page.goto(`${nodes[0].url}/admin/#/`);
    await page.locator(".v-card__title", { hasText: "Namespaces" }).waitFor();
    await shot(page, "dashboard");

    // Sockets of /chat on both nodes, with their address and transport.
    await page.goto(`${nodes[0].url}/admin/#/sockets/`);
    const aliceRow = row(page, aliceSocket.id);
    const bobRow = row(page, bobSocket.id);
    await aliceRow.waitFor();
    await bobRow.waitFor();
    assert.match(await aliceRow.textContent(), /127\.0\.0\.1.*WebSocket/);
    assert.match(await bobRow.textContent(), /127\.0\.0\.1.*HTTP long-polling/);
    await shot(page, "sockets");

    // Live from the other node: a client connecting there appears, and leaving, goes.
    const carolSocket = await connect(nodes[1].url, "/chat", token(uid("carol")));
    const carolRow = row(page, carolSocket.id);
    // Its client joins over long-polling and upgrades: the row ends on WebSocket.
    await carolRow.filter({ hasText: "WebSocket" }).waitFor();
    carolSocket.close();
    await carolRow.waitFor({ state: "detached" });

    // The disconnect button of Bob's row (Bob is on the other node); the click also opens the
    // row's details, as any click on a row does in this UI.
    const gone = next(bobSocket, "disconnect", () => true, 20000);
    await bobRow.locator("button:has(.mdi-logout)").click();
    assert.equal(await gone, "io server disconnect");
    await page.goto(`${nodes[0].url}/admin/#/sockets/`);
    await aliceRow.waitFor();
    await bobRow.waitFor({ state: "detached" });
    assert.equal(aliceSocket.connected, true);

    // A socket's details: its user id, rooms and handshake time.
    await aliceRow.click();
    await page.getByText(`"userId": "${alice}"`).waitFor();
    await row(page, `user:${alice}`).waitFor();
    await page.getByText(/^\d{4}-\d\d-\d\dT/).waitFor();
    await shot(page, "socket-details");
    assert.deepEqual(errors, []);
  } finally {
    aliceSocket.close();
    bobSocket.close();
    await context.close();
  }
});

test("wrong credentials are refused in the UI's words", async () => {
  const { context, page } = await adminPage();
  try {
    await signIn(page, nodes[1], "not-the-password");
    await page.locator(".v-dialog--active").getByText("Invalid credentials").waitFor();
    await shot(page, "invalid-credentials");
  } finally {
    await context.close();
  }
});

test("a read-only server shows its sockets, offers no actions and refuses them", async () => {
  const node = await startServer({ ...ADMIN, ADMIN_UI_READONLY: "true" });
  const carol = uid("carol");
  const carolSocket = await connect(node.url, "/chat", token(carol));
  const { context, page } = await adminPage();
  try {
    await signIn(page, node, "changeit");
    await page.goto(`${node.url}/admin/#/sockets/`);
    const carolRow = row(page, carolSocket.id);
    await carolRow.waitFor();
    assert.equal(await carolRow.locator("button").count(), 0, "no disconnect button in read-only mode");

    // What the UI would send, sent by a client of our own: refused, and Carol stays.
    const admin = await connect(node.url, "/admin", undefined, { auth: { username: "ops", password: "changeit" } });
    const ack = await admin.timeout(5000).emitWithAck("_disconnect", "/chat", false, carolSocket.id);
    assert.deepEqual(ack, { ok: false, error: { code: "forbidden", message: "the admin UI is read-only" } });
    admin.close();
    await until("a round trip after the refusal", async () => (await carolSocket.timeout(5000).emitWithAck("getRooms", {})).ok);
    assert.equal(carolSocket.connected, true);
  } finally {
    carolSocket.close();
    await context.close();
    await node.stop();
  }
});
