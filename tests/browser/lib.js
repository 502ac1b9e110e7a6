// Browser test helpers: Debian's Chromium driven by playwright-core, a development-mode
// server, signing in through the page, and numbered screenshots under tests/artifacts/browser.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "../js/helpers.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = path.join(root, "tests/artifacts/browser");
export const SERVICE_KEY = "browser-test-service-key-0123456789";
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/**
 * Headless Debian Chromium. Background networking, component updates and sync are off: this
 * machine's network is closed and Chromium would otherwise keep dialing Google at start-up.
 * playwright-core gives every launch a fresh, empty user-data-dir.
 */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A development-mode server (no JWT setting: `POST /dev/token` exists) with a service key. */
export function devServer(env = {}) {
  return startServer({ JWT_SECRET: "", SERVICE_API_KEYS: SERVICE_KEY, ...env });
}

/**
 * Makes every WebSocket the page opens fail the way a proxy that refuses upgrades does: an
 * `error` and a `close` (1006) right after the attempt. Counts attempts in `__wsAttempts`.
 */
function blockWebSocketScript() {
  window.__wsAttempts = 0;
  class BlockedWebSocket extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    constructor(url) {
      super();
      window.__wsAttempts += 1;
      this.url = String(url);
      this.readyState = 0;
      this.binaryType = "blob";
      this.protocol = "";
      this.extensions = "";
      this.bufferedAmount = 0;
      setTimeout(() => {
        this.readyState = 3;
        const error = new Event("error");
        this.onerror?.(error);
        this.dispatchEvent(error);
        const close = new CloseEvent("close", { code: 1006, reason: "", wasClean: false });
        this.onclose?.(close);
        this.dispatchEvent(close);
      }, 5);
    }
    send() {
      throw new DOMException("WebSocket is blocked", "InvalidStateError");
    }
    close() {}
  }
  window.WebSocket = BlockedWebSocket;
}

/**
 * A new browser context for one user. `network`: "websocket" (default), "polling" (WebSocket
 * blocked) or "http" (WebSocket blocked and every /socket.io/ request refused).
 */
export async function newUser(browser, { viewport = DESKTOP, network = "websocket", phone = false } = {}) {
  const context = await browser.newContext({
    viewport,
    deviceScaleFactor: phone ? 2 : 1,
    isMobile: phone,
    hasTouch: phone,
    reducedMotion: "reduce",
    colorScheme: "light",
  });
  context.setDefaultTimeout(20000);
  if (network !== "websocket") await context.addInitScript(blockWebSocketScript);
  if (network === "http") await context.route("**/socket.io/**", (route) => route.abort("connectionrefused"));
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err));
  // Console errors, for failure messages (a refused request logs one, so they are not failures).
  const logs = [];
  page.on("console", (msg) => msg.type() === "error" && logs.push(msg.text()));
  return { context, page, errors, logs };
}

/** Opens the app and signs in by name (development mode); waits for the app shell. */
export async function signIn(page, url, name) {
  try {
    await page.goto(url);
    await page.getByLabel("Your name").fill(name);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.locator("#app").waitFor();
  } catch (err) {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, `failed-sign-in-${name}.png`) }).catch(() => {});
    const html = await page.content().catch(() => "(no page)");
    err.message += `\nsign-in of ${name} failed; page:\n${html.slice(0, 2000)}`;
    throw err;
  }
}

/** Waits until the connection pill shows `state` (and `transport`, when given). */
export async function waitConnection(page, state, transport) {
  const sel = `#conn[data-state="${state}"]${transport ? `[data-transport="${transport}"]` : ""}`;
  await page.locator(sel).waitFor({ timeout: 20000 });
}

/** Numbered screenshots: `<prefix>-01-<step>.png`, ... */
export function shooter(prefix) {
  mkdirSync(ARTIFACTS, { recursive: true });
  let n = 0;
  return async (page, step) => {
    n += 1;
    const file = path.join(ARTIFACTS, `${prefix}-${String(n).padStart(2, "0")}-${step}.png`);
    // Let transitions and the last render settle so the picture matches what a user sees.
    await page.waitForTimeout(150);
    await page.screenshot({ path: file });
    return file;
  };
}

/** `POST /api/events` with the service key. */
export async function postEvent(url, event) {
  const res = await fetch(`${url}/api/events`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_KEY}` },
    body: JSON.stringify(event),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** True when the server has the notification side (`/api/events`); false on a chat-only build. */
export async function hasNotifications(url) {
  const res = await fetch(`${url}/api/events`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  return res.status !== 404;
}

/** A development token, for seeding data over the HTTP API. */
export async function devToken(url, userId) {
  const res = await fetch(`${url}/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ userId, name: userId }),
  });
  return (await res.json()).token;
}

/** An HTTP API call with a bearer token. */
export async function api(url, token, method, pathname, body) {
  const res = await fetch(url + pathname, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** The room button for `title` in the room list. */
export const roomButton = (page, title) =>
  page.locator(".room").filter({ has: page.locator(".room-name", { hasText: new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }) });
