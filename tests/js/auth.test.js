// The bad-token matrix: every way a handshake can fail, with the exact connect_error.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { generateKeyPairSync } from "node:crypto";
import { startServer, sleep, hs256, signAsym, claims, connect, http, SECRET } from "./helpers.js";

const ISS = "https://id.example.test";
const AUD = "switchyard";

/** Connects and returns the connect_error message (or "connected"). */
async function outcome(url, ns, tok, opts) {
  try {
    const s = await connect(url, ns, tok, opts);
    s.close();
    return "connected";
  } catch (err) {
    return err.message;
  }
}

test("HS256 bad-token matrix", async () => {
  const server = await startServer({ JWT_ISSUER: ISS, JWT_AUDIENCE: AUD });
  try {
    const good = claims("u1", { iss: ISS, aud: AUD });
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      ["valid token", hs256(good), "connected"],
      ["missing token", undefined, "unauthorized"],
      ["malformed token", "not.a.jwt", "unauthorized"],
      ["garbage", "%%%", "unauthorized"],
      ["wrong key", hs256(good, "another-secret-that-is-also-long-enough!!"), "unauthorized"],
      ["alg none", `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(JSON.stringify(good)).toString("base64url")}.`, "unauthorized"],
      ["expired", hs256({ ...good, exp: now - 3600 }), "token_expired"],
      ["no exp", hs256({ sub: "u1", iss: ISS, aud: AUD }), "unauthorized"],
      ["no sub", hs256({ ...good, sub: undefined }), "unauthorized"],
      ["numeric sub", hs256({ ...good, sub: 42 }), "unauthorized"],
      ["wrong issuer", hs256({ ...good, iss: "https://evil.test" }), "forbidden"],
      ["wrong audience", hs256({ ...good, aud: "other" }), "forbidden"],
      ["HS512 instead of HS256", (() => {
        const t = hs256(good);
        const [, body, sig] = t.split(".");
        return `${Buffer.from('{"alg":"HS512","typ":"JWT"}').toString("base64url")}.${body}.${sig}`;
      })(), "unauthorized"],
    ];
    for (const [name, tok, expected] of cases) {
      for (const ns of ["/chat"]) {
        assert.equal(await outcome(server.url, ns, tok), expected, `${name} on ${ns}`);
      }
    }
    // Non-browser clients may use the Authorization header instead of auth.token.
    assert.equal(
      await outcome(server.url, "/chat", undefined, { extraHeaders: { Authorization: `Bearer ${hs256(good)}` }, transports: ["polling"] }),
      "connected",
    );
    // The HTTP API answers the same failures with the error body of the contract.
    const r = await http(server.url, "GET", "/api/chat/rooms", { token: hs256({ ...good, exp: now - 3600 }) });
    assert.equal(r.status, 401);
    assert.deepEqual(r.body, { error: { code: "unauthorized", message: "token has expired" } });
    const f = await http(server.url, "GET", "/api/chat/rooms", { token: hs256({ ...good, aud: "other" }) });
    assert.equal(f.status, 403);
    assert.equal(f.body.error.code, "forbidden");
    const m = await http(server.url, "GET", "/api/chat/rooms");
    assert.deepEqual(m.body, { error: { code: "unauthorized", message: "missing bearer token" } });
    // With a JWT setting, the development token route does not exist.
    assert.equal((await http(server.url, "POST", "/dev/token", { body: { userId: "x" } })).status, 404);
  } finally {
    await server.stop();
  }
});

test("RS256 and ES256 public keys, and algorithm confusion", async () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const rsaPem = rsa.publicKey.export({ type: "spki", format: "pem" });
  const rs = await startServer({ JWT_SECRET: "", JWT_PUBLIC_KEY: rsaPem });
  try {
    assert.equal(await outcome(rs.url, "/chat", signAsym("RS256", claims("u"), rsa.privateKey)), "connected");
    assert.equal(await outcome(rs.url, "/chat", signAsym("ES256", claims("u"), ec.privateKey)), "unauthorized");
    // The classic confusion attack: HS256 signed with the public key as the secret.
    assert.equal(await outcome(rs.url, "/chat", hs256(claims("u"), rsaPem)), "unauthorized");
    assert.equal(await outcome(rs.url, "/chat", hs256(claims("u"), SECRET)), "unauthorized");
  } finally {
    await rs.stop();
  }
  const es = await startServer({ JWT_SECRET: "", JWT_PUBLIC_KEY: ec.publicKey.export({ type: "spki", format: "pem" }) });
  try {
    assert.equal(await outcome(es.url, "/chat", signAsym("ES256", claims("u"), ec.privateKey)), "connected");
    assert.equal(await outcome(es.url, "/chat", signAsym("RS256", claims("u"), rsa.privateKey)), "unauthorized");
  } finally {
    await es.stop();
  }
});

test("JWKS: fetched, cached, refetched on an unknown kid", async () => {
  const k1 = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const k2 = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = (pair, kid) => ({ ...pair.publicKey.export({ format: "jwk" }), kid, use: "sig" });
  let keys = [jwk(k1, "k1")];
  let fetches = 0;
  const idp = createServer((req, res) => {
    fetches++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys }));
  });
  await new Promise((r) => idp.listen(0, "127.0.0.1", r));
  const server = await startServer({ JWT_SECRET: "", JWT_JWKS_URL: `http://127.0.0.1:${idp.address().port}/jwks.json`,
    JWT_JWKS_MIN_REFRESH_SECONDS: "1",
  });
  try {
    assert.equal(await outcome(server.url, "/chat", signAsym("RS256", claims("u"), k1.privateKey, "k1")), "connected");
    assert.equal(await outcome(server.url, "/chat", signAsym("RS256", claims("u"), k1.privateKey, "k1")), "connected");
    assert.equal(fetches, 1, "known keys come from the cache");
    // Key rotation: the provider adds k2; a token with kid k2 makes the server refetch.
    keys = [jwk(k1, "k1"), jwk(k2, "k2")];
    await sleep(1100); // past JWT_JWKS_MIN_REFRESH_SECONDS
    assert.equal(await outcome(server.url, "/chat", signAsym("ES256", claims("u"), k2.privateKey, "k2")), "connected");
    assert.equal(fetches, 2);
    // A kid nobody published is refused, and does not hammer the provider.
    assert.equal(await outcome(server.url, "/chat", signAsym("RS256", claims("u"), k1.privateKey, "nope")), "unauthorized");
    assert.equal(await outcome(server.url, "/chat", signAsym("RS256", claims("u"), k1.privateKey, "nope2")), "unauthorized");
    assert.equal(fetches, 2, "unknown kids within the refresh interval use the cache");
    // A token signed by k1 but claiming kid k2 fails its signature check.
    assert.equal(await outcome(server.url, "/chat", signAsym("RS256", claims("u"), k1.privateKey, "k2")), "unauthorized");
  } finally {
    await server.stop();
    idp.close();
  }
});

test("development mode: warning, random secret, POST /dev/token", async () => {
  const server = await startServer({ JWT_SECRET: "" });
  try {
    assert.ok(server.logs.some((l) => l.includes("DEVELOPMENT MODE")), "loud warning at start-up");
    const res = await http(server.url, "POST", "/dev/token", { body: { userId: "dev-user", name: "Dev" } });
    assert.equal(res.status, 200);
    assert.equal(await outcome(server.url, "/chat", res.body.token), "connected");
    // Tokens signed with anything else, including the well-known test secret, are refused.
    assert.equal(await outcome(server.url, "/chat", hs256(claims("u"))), "unauthorized");
    const bad = await http(server.url, "POST", "/dev/token", { body: { userId: "" } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, "invalid_payload");
  } finally {
    await server.stop();
  }
});
