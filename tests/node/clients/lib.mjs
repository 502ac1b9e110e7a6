// Shared helpers of the node suite's clients: the official socket.io-client from tests/js, HS256
// tokens signed with the RealtimeCluster's JWT secret (SY_SECRET), acked calls.
import { createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(fileURLToPath(new URL("../../js/package.json", import.meta.url)));
export const { io } = require("socket.io-client");

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** An HS256 JWT for user `sub`, valid for an hour. */
export function token(sub) {
  const secret = process.env.SY_SECRET;
  if (!secret) throw new Error("SY_SECRET is not set");
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, name: sub, iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** What a transport error carries beyond its message: the HTTP status and body of a failed
 * long-polling request (engine.io-client puts them in `description` and `context`). */
export function httpDetail(e) {
  return e?.description ? ` (HTTP ${e.description}${e.context?.responseText ? `: ${e.context.responseText}` : ""})` : "";
}

/** Connects user `sub` to `${url}/chat` (or `extra.namespace`) over the given transports;
 * rejects on connect_error. `extra.auth` is added to the token (e.g. a `traceparent`), the rest
 * of `extra` to the options. */
export function connect(url, sub, transports, extra = {}) {
  const { auth, namespace = "/chat", ...options } = extra;
  return new Promise((resolve, reject) => {
    const s = io(`${url}${namespace}`, {
      auth: { token: token(sub), ...auth }, transports, forceNew: true, reconnection: false, timeout: 30000, ...options,
    });
    // Only the first connection may fail the promise: with `reconnection: true` a later
    // failed attempt must leave the socket to retry.
    const fail = (e) => { s.close(); reject(new Error(`${sub} at ${url}: ${e.message}${httpDetail(e)}`)); };
    s.once("connect", () => { s.off("connect_error", fail); resolve(s); });
    s.once("connect_error", fail);
  });
}

/** Emits an event with an ack and returns its `data`; a `{ ok: false }` ack rejects. */
export function call(s, event, payload) {
  return new Promise((resolve, reject) => {
    s.timeout(30000).emit(event, payload, (err, res) => {
      if (err) reject(new Error(`${event}: ${err.message}`));
      else if (!res?.ok) reject(new Error(`${event}: ${JSON.stringify(res)}`));
      else resolve(res.data);
    });
  });
}

/** The next `event` on socket `s`, or a rejection after `ms`. */
export function next(s, event, ms = 30000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    s.once(event, (v) => { clearTimeout(t); resolve(v); });
  });
}
