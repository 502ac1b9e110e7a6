// Soak: steady traffic across three nodes with reconnect churn for SOAK_SECONDS (default
// 60), then the delivery check and each process's memory at warm-up and at the end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startServer, startRedis, startNginx, sleep } from "./helpers.js";
import { setupRoom, runTraffic, verify, closeAll } from "./traffic.js";

const SECONDS = Number(process.env.SOAK_SECONDS || 60);

function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

test(`soak: ${SECONDS}s of traffic with reconnect churn, memory flat`, { timeout: (SECONDS + 120) * 1000 }, async () => {
  const redis = await startRedis();
  const env = { REDIS_URL: redis.url, RATE_LIMIT_MESSAGE: "1000/1s", RATE_LIMIT_QUERY: "1000/1s", RATE_LIMIT_ROOM: "1000/1s" };
  const nodes = await Promise.all([0, 1, 2].map(() => startServer(env)));
  const nginx = await startNginx(nodes);
  const rooms = [];
  try {
    for (let r = 0; r < 3; r++) rooms.push(await setupRoom(nginx.url, 6, { prefix: `s${r}-` }));
    const everyone = rooms.flatMap((r) => r.participants);
    const traffic = rooms.map((r) => runTraffic(r.participants, { intervalMs: 20 }));

    // Warm up before the first reading: allocator pools, connection buffers, caches.
    await sleep(Math.min(10, SECONDS / 4) * 1000);
    const warm = nodes.map((n) => rssMiB(n.child.pid));

    // Churn: every 500 ms one random participant drops its connection and comes back.
    const end = Date.now() + SECONDS * 1000;
    let churned = 0;
    while (Date.now() < end) {
      const p = everyone[Math.floor(Math.random() * everyone.length)];
      p.socket.io.engine.close(); // a transport close: socket.io-client reconnects by itself
      churned++;
      await sleep(500);
    }
    for (const t of traffic) await t.stop();
    await sleep(2000);
    const last = nodes.map((n) => rssMiB(n.child.pid));

    let total = 0;
    for (const [i, r] of rooms.entries()) {
      await verify(nginx.url, r.room, r.participants, traffic[i].acked);
      total += traffic[i].acked.size;
    }
    const report = nodes.map((n, i) => `node${i}: ${warm[i].toFixed(1)} MiB after warm-up, ${last[i].toFixed(1)} MiB at the end`);
    console.log(`soak: ${total} messages acked and verified, ${churned} reconnects\n  ${report.join("\n  ")}`);
    for (const [i] of nodes.entries()) {
      assert.ok(last[i] < warm[i] * 1.5 + 16, `node${i} memory grew: ${report[i]}`);
    }
  } finally {
    for (const r of rooms) closeAll(r.participants);
    await nginx.stop();
    for (const n of nodes) await n.stop();
    await redis.stop();
  }
});
