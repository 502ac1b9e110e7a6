// What the server serves at `/`: embedded files with the right headers, the vendored
// socket.io-client byte-identical to the locked npm package, nothing loaded from elsewhere, and
// the production-mode sign-in with a pasted token.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { startServer, token } from "../js/helpers.js";
import { devServer, launch, newUser, shooter, waitConnection } from "./lib.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const shot = shooter("assets");
let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

test("the vendored socket.io-client is the npm package's browser build, byte for byte", () => {
  const pkg = path.dirname(require.resolve("socket.io-client/package.json"));
  const npm = readFileSync(path.join(pkg, "dist/socket.io.esm.min.js"));
  const vendored = readFileSync(path.join(here, "../../server/webapp/vendor/socket.io.esm.min.js"));
  assert.ok(vendored.equals(npm), "server/webapp/vendor/socket.io.esm.min.js differs from the locked socket.io-client");
  assert.match(vendored.toString("utf8", 0, 200), /Socket\.IO v\d+\.\d+\.\d+[\s\S]*MIT License/);
});

test("files are served from the binary with types, ETags, a CSP and no caching surprises", async () => {
  const server = await devServer();
  try {
    const index = await fetch(server.url + "/");
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type"), /^text\/html/);
    assert.match(index.headers.get("content-security-policy"), /default-src 'self'/);
    assert.equal(index.headers.get("x-content-type-options"), "nosniff");
    const html = await index.text();
    // Nothing from another origin: no CDN, works offline.
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//);
    for (const [file, type] of [
      ["app.js", /javascript/],
      ["app.css", /text\/css/],
      ["vendor/socket.io.esm.min.js", /javascript/],
      ["icon.svg", /svg/],
    ]) {
      const res = await fetch(`${server.url}/app/${file}`);
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get("content-type"), type, file);
      const etag = res.headers.get("etag");
      const again = await fetch(`${server.url}/app/${file}`, { headers: { "if-none-match": etag } });
      assert.equal(again.status, 304, file);
    }
    assert.equal((await fetch(server.url + "/app/nope.js")).status, 404);
    assert.equal((await fetch(server.url + "/app/index.html")).status, 404);
    // The API and health routes are untouched.
    assert.equal((await fetch(server.url + "/health")).status, 200);
  } finally {
    await server.stop();
  }
});

test("loading the app touches no other origin", async () => {
  const server = await devServer();
  const { context, page, errors } = await newUser(browser);
  try {
    const foreign = [];
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (!url.startsWith(server.url) && !url.startsWith("data:")) {
        foreign.push(url);
        return route.abort();
      }
      return route.continue();
    });
    await page.goto(server.url);
    await page.getByLabel("Your name").waitFor();
    assert.deepEqual(foreign, []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await server.stop();
  }
});

test("production mode: no name sign-in, a pasted token signs in, a bad one is refused", async () => {
  // startServer's default configures JWT_SECRET: production mode, no /dev/token.
  const server = await startServer();
  const { context, page, errors } = await newUser(browser);
  try {
    await page.goto(server.url);
    await page.getByLabel("Access token (JWT)").waitFor();
    assert.equal(await page.getByLabel("Your name").isVisible(), false);
    await page.getByLabel("Access token (JWT)").fill("not-a-token");
    await page.getByRole("button", { name: "Sign in with token" }).click();
    await page.locator("#signin-error", { hasText: "not a JWT" }).waitFor();
    await page.getByLabel("Access token (JWT)").fill(token("heidi", { name: "Heidi Park" }));
    await shot(page, "production-sign-in");
    await page.getByRole("button", { name: "Sign in with token" }).click();
    await waitConnection(page, "connected", "websocket");
    assert.equal(await page.locator("#me-name").textContent(), "Heidi Park");
    await shot(page, "production-signed-in");

    // A token the server refuses (wrong signature) sends the user back to sign-in.
    await page.evaluate((t) => localStorage.setItem("switchyard.token", t), token("heidi", {}).replace(/.$/, "A") + "x");
    await page.reload();
    await page.locator("#signin-error", { hasText: "Sign in again" }).waitFor();
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await server.stop();
  }
});
