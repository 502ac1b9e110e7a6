// Presence after a server process dies without saying goodbye, seen from another pod.
// Ghosts (N_GHOSTS users) connect straight to pod A (SY_URL_A) without reconnection, so once
// pod A's server dies they stay away; returners (N_RETURNERS users) connect to pod A with
// socket.io-client's own reconnection, so they come back when its container restarts. A
// watcher on pod B (SY_URL_B) subscribes to all of them on /notifications and must see them
// online. It prints "ready"; the harness then kills pod A's server (SIGKILL). From the moment
// the ghosts' sockets drop (the kill), the watcher must get `presence { online: false,
// lastSeen }` for every ghost within the documented bound SY_BOUND_S plus SY_SLACK_S (a loaded
// machine), and then, within SY_RETURN_S, see every returner online and every ghost offline
// in a fresh `subscribePresence` answer. Prints one "ok:" line per assertion and a JSON
// summary with the measured times; exits non-zero on any failure.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { call, connect } from "./lib.mjs";

const { SY_URL_A: urlA, SY_URL_B: urlB } = process.env;
const bound = Number(process.env.SY_BOUND_S || 20);
const slack = Number(process.env.SY_SLACK_S || 40);
const killWait = Number(process.env.SY_KILL_WAIT_S || 120);
const returnWait = Number(process.env.SY_RETURN_S || 180);
const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const names = (kind, n) => Array.from({ length: n }, (_, i) => `${kind}${i}-${tag}`);
const ghostIds = names("ghost", Number(process.env.N_GHOSTS || 3));
const returnerIds = names("returner", Number(process.env.N_RETURNERS || 2));
const everyone = [...ghostIds, ...returnerIds];

/** Polls `check` every 250 ms until it is truthy or `deadline` (ms since the epoch) passes. */
async function until(deadline, check) {
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};

const ghosts = await Promise.all(ghostIds.map((u) => connect(urlA, u, ["websocket"])));
const returners = await Promise.all(
  returnerIds.map((u) => connect(urlA, u, ["websocket"], { reconnection: true, reconnectionDelayMax: 2000 })),
);
const dropped = new Map();
ghosts.forEach((s, i) => s.on("disconnect", () => dropped.set(ghostIds[i], Date.now())));
const away = new Set();
returners.forEach((s, i) => s.on("disconnect", () => away.add(returnerIds[i])));
let reconnected = 0;
for (const s of returners) s.io.on("reconnect", () => reconnected++);

const watcher = await connect(urlB, `watcher-${tag}`, ["websocket"], { namespace: "/notifications" });
const offline = new Map();
watcher.on("presence", (p) => {
  if (!p.online && ghostIds.includes(p.userId) && !offline.has(p.userId)) offline.set(p.userId, { at: Date.now(), lastSeen: p.lastSeen });
});
const status = async () => new Map((await call(watcher, "subscribePresence", { userIds: everyone })).users.map((u) => [u.userId, u]));
const first = await status();
for (const u of everyone) assert.equal(first.get(u)?.online, true, `${u} online as seen from ${urlB} before the kill`);
console.log(`ok: ${ghostIds.length} ghosts and ${returnerIds.length} returners on ${urlA} are online as seen from ${urlB}`);
console.log("ready");

if (!(await until(Date.now() + killWait * 1000, () => dropped.size === ghostIds.length)))
  fail(`the ghosts' sockets on ${urlA} did not drop within ${killWait} s (was the server killed?)`);
const killedAt = Math.min(...dropped.values());
console.log(`ok: every ghost's socket on ${urlA} dropped (the kill)`);

const deadline = killedAt + (bound + slack) * 1000;
if (!(await until(deadline, () => offline.size === ghostIds.length)))
  fail(`presence did not converge: ${urlB} announced offline only ${[...offline.keys()].join(", ") || "nobody"} of ${ghostIds.join(", ")} within ${bound + slack} s of the kill (documented bound ${bound} s + ${slack} s slack)`);
const converged = Math.max(...[...offline.values()].map((o) => o.at)) - killedAt;
for (const [u, o] of offline) assert.ok(o.lastSeen && !Number.isNaN(Date.parse(o.lastSeen)), `${u}'s offline event carries lastSeen: ${o.lastSeen}`);
console.log(`ok: ${urlB} announced every ghost offline with lastSeen, ${(converged / 1000).toFixed(1)} s after the kill (documented bound ${bound} s, deadline ${bound + slack} s)`);

// The returners' sockets come back when the kubelet restarts the container; a fresh answer,
// not events, is checked: a returner back before the sweep never goes offline at all.
const returnDeadline = Date.now() + returnWait * 1000;
if (!(await until(returnDeadline, () => away.size === returnerIds.length && returners.every((s) => s.connected))))
  fail(`returners did not reconnect to ${urlA} within ${returnWait} s (${reconnected} reconnects)`);
let last;
const settled = await until(returnDeadline, async () => {
  last = await status();
  return returnerIds.every((u) => last.get(u).online) && ghostIds.every((u) => !last.get(u).online && last.get(u).lastSeen);
});
if (!settled) fail(`presence as seen from ${urlB} did not settle: ${JSON.stringify([...last.values()])}`);
console.log(`ok: every returner reconnected to ${urlA} and is online as seen from ${urlB}; every ghost offline with lastSeen`);

console.log(JSON.stringify({ ghosts: ghostIds.length, returners: returnerIds.length, convergedMs: converged, boundS: bound, deadlineS: bound + slack, reconnects: reconnected }));
for (const s of [watcher, ...ghosts, ...returners]) s.close();
process.exit(0);
