// SIGTERM with connected clients: they are told to go (transport close, which
// socket.io-client answers by reconnecting), the process exits 0, and the clients come
// back on their own to a new process on the same address.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, startRedis, freePort, token, connect, call, next, http, sleep, uid } from "./helpers.js";

/** Resolves as `promise` does, or rejects naming `what` when it takes longer than `ms`. */
function deadline(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what} (${ms} ms)`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test("SIGTERM drains clients, exits 0, clients reconnect to the next process", async () => {
  const port = await freePort();
  const env = { SHUTDOWN_GRACE_SECONDS: "5" };
  let server = await startServer(env, { port });
  const alice = uid("alice");
  const sockets = await Promise.all([
    connect(server.url, "/chat", token(alice), { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 }),
    connect(server.url, "/chat", token(alice), { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, transports: ["polling"] }),
  ]);
  try {
    // Generous: a CI machine loaded by the suites before this one has been slow to deliver
    // the polling client's close (once in a full run). Exit time is asserted separately below.
    const reasons = sockets.map((s) => next(s, "disconnect", () => true, 20000));
    const t0 = Date.now();
    const exit = server.stop("SIGTERM");
    const told = await Promise.allSettled(reasons);
    if (told.some((r) => r.status === "rejected")) {
      // Say which client was not told and what the server was doing, for the next reader.
      const which = told.map((r, i) => `${["websocket", "polling"][i]}: ${r.status === "fulfilled" ? r.value : "no disconnect"}`);
      const exited = server.child.exitCode ?? server.child.signalCode ?? "still running";
      assert.fail(`not every client was told within 20 s (${which.join(", ")}); server exit: ${exited}; its last logs:\n${server.logs.slice(-15).join("\n")}`);
    }
    for (const reason of told.map((r) => r.value)) {
      // A transport-level end ("transport close", or "transport error" when the socket is
      // cut mid-write) makes socket.io-client reconnect; "io server disconnect" would not.
      assert.ok(["transport close", "transport error"].includes(reason), reason);
    }
    const { code } = await exit;
    assert.equal(code, 0);
    assert.ok(Date.now() - t0 < 5000 + 1000, "exits within the grace period");
    assert.ok(server.logs.some((l) => l.includes("draining")));

    // A new process on the same port: both clients reconnect without being told to. The
    // clients' deadline counts from the moment the new process listens, not from its spawn:
    // on a loaded machine a debug build's start-up alone took most of a fixed 10 s budget.
    const reconnected = Promise.all(sockets.map((s) => next(s, "connect", () => true, 120000)));
    server = await startServer(env, { port });
    await deadline(reconnected, 10000, "clients reconnect to the new process");
    // And they work: the in-memory store started empty (documented), rooms are new.
    const res = await call(sockets[0], "getOrCreateRoom", { participantIds: [uid("bob")] });
    assert.equal(res.ok, true);
  } finally {
    sockets.forEach((s) => s.close());
    await server.stop();
  }
});

test("while draining, /ready is 503 and new handshakes are refused", async () => {
  // SHUTDOWN_DELAY_SECONDS keeps the listener up, refusing, before sockets are closed.
  const server = await startServer({ SHUTDOWN_GRACE_SECONDS: "5", SHUTDOWN_DELAY_SECONDS: "2" });
  try {
    assert.equal((await http(server.url, "GET", "/ready")).status, 200);
    server.child.kill("SIGTERM");
    let sawDraining = false;
    let refused = false;
    for (let i = 0; i < 50 && server.child.exitCode === null; i++) {
      try {
        const r = await http(server.url, "GET", "/ready");
        if (r.status === 503 && r.body.status === "draining") sawDraining = true;
        const hs = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
        if (hs.status === 503) refused = true;
        if (sawDraining && refused) break;
      } catch {
        break; // listener closed
      }
    }
    assert.ok(sawDraining, "readiness reported draining");
    assert.ok(refused, "new Engine.IO sessions refused");
    assert.equal((await server.exited).code, 0);
  } finally {
    await server.stop();
  }
});

test("SIGTERM while Redis refuses connections exits promptly, not after the grace period", async () => {
  const redis = await startRedis();
  const server = await startServer({ REDIS_URL: redis.url, SHUTDOWN_GRACE_SECONDS: "30" });
  const socket = await connect(server.url, "/chat", token(uid("alice")));
  try {
    await redis.stop("SIGKILL");
    await sleep(300);
    const t0 = Date.now();
    const { code } = await server.stop("SIGTERM");
    const took = Date.now() - t0;
    assert.equal(code, 0);
    // Every Redis call of the drain (unsubscribing the adapter, handing jobs back) gives up
    // after REDIS_TIMEOUT_MS (2 s); they used to wait for Redis until the grace period ended.
    assert.ok(took < 6000, `exited after ${took} ms`);
    assert.ok(!server.logs.some((l) => l.includes("grace period over")));
  } finally {
    socket.close();
    await server.stop();
  }
});
