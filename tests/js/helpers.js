// Shared helpers: start a real switchyard-server process, mint tokens, talk Socket.IO.
import { execFile, spawn } from "node:child_process";
import { createHmac, createSign, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { promisify } from "node:util";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.SWITCHYARD_BIN || path.join(root, "target/debug/switchyard-server");
export const SECRET = "test-secret-that-is-long-enough-for-hs256!";

/** A free loopback port (for tests that restart a server on the same port). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/**
 * Starts a real redis-server (AOF on, in a temp dir) on `port` (free one by default);
 * `args` are added to its command line, and `ready` is the log line that means it serves.
 */
export async function startRedis({ port, dir, args = [], ready = "Ready to accept connections" } = {}) {
  port = port || (await freePort());
  dir = dir || mkdtempSync(path.join(tmpdir(), "sy-redis-"));
  const base = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", dir];
  // A config file comes first on redis-server's command line.
  const argv = args[0]?.endsWith(".conf") ? [args[0], ...base, ...args.slice(1)] : [...base, ...args];
  const child = spawn("redis-server", argv, { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("redis-server did not start")), 10000);
    child.stdout.on("data", (d) => {
      if (d.toString().includes(ready)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    child,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs redis-cli with `args`; resolves with its output. */
export async function redisCli(...args) {
  const { stdout } = await promisify(execFile)("redis-cli", args, { timeout: 20000 });
  return stdout.trim();
}

/** `/chat` sockets connected to `node` (a started server), from its metrics. */
export async function chatSockets(node) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("socket_active_connections{") && l.includes('namespace="/chat"'));
  return Number(line.split(" ").pop());
}

/** Polls `check` every 100 ms until it returns true, for at most `ms`. */
export async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Starts a real Redis Cluster of `masters` nodes (no replicas) on loopback. */
export async function startRedisCluster(masters = 3) {
  const args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
  const nodes = [];
  for (let i = 0; i < masters; i++) nodes.push(await startRedis({ args }));
  const ok = (n) => until("the cluster to be ok", async () => (await redisCli("-p", String(n.port), "cluster", "info")).includes("cluster_state:ok"));
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
  await redisCli("--cluster", "create", ...addrs, "--cluster-replicas", "0", "--cluster-yes");
  for (const n of nodes) await ok(n);
  return {
    url: `redis+cluster://${addrs.join(",")}`,
    nodes,
    /** Stops node `i` and starts it again on its port and data (AOF, cluster config). */
    async restart(i) {
      const old = nodes[i];
      await old.stop();
      nodes[i] = await startRedis({ port: old.port, dir: old.dir, args });
      await ok(nodes[i]);
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/**
 * Starts a master, a replica and one Sentinel (quorum 1) monitoring them as `mymaster`, on
 * loopback; resolves once the Sentinel knows the replica, so a failover can be asked for.
 */
export async function startSentinel() {
  // Both as docs/scaling.md advises: a master without a live replica refuses writes, so a
  // failed-over master cannot ack writes that its demotion then throws away. The diskless
  // sync delay is cut from 5 s so the replica is in sync at once.
  const args = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "5", "--repl-diskless-sync-delay", "0"];
  const master = await startRedis({ args });
  const replica = await startRedis({ args: [...args, "--replicaof", "127.0.0.1", String(master.port)] });
  const role = (server) => redisCli("-p", String(server.port), "info", "replication");
  await until("the replica to sync", async () => (await role(replica)).includes("master_link_status:up"));
  const dir = mkdtempSync(path.join(tmpdir(), "sy-sentinel-"));
  const conf = path.join(dir, "sentinel.conf");
  writeFileSync(
    conf,
    [
      `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`,
      "sentinel down-after-milliseconds mymaster 1000",
      "sentinel failover-timeout mymaster 5000",
      "",
    ].join("\n"),
  );
  const sentinel = await startRedis({ dir, args: [conf, "--sentinel"], ready: "+monitor master" });
  const cli = (...args) => redisCli("-p", String(sentinel.port), ...args);
  await until("the sentinel to know the replica", async () => (await cli("sentinel", "replicas", "mymaster")).includes(String(replica.port)));
  return {
    url: `redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`,
    servers: [master, replica],
    sentinel,
    /** The port of the current master, as the Sentinel reports it. */
    async masterPort() {
      return Number((await cli("sentinel", "get-master-addr-by-name", "mymaster")).split("\n")[1]);
    },
    /** Asks the Sentinel to fail over; resolves once it reports the other server as master. */
    async failover() {
      const before = await this.masterPort();
      // NOGOODSLAVE until the Sentinel has seen the replica healthy for a moment.
      await until("a replica to promote", async () => /^(OK|INPROG)/.test(await cli("sentinel", "failover", "mymaster")));
      await until("the failover", async () => (await this.masterPort()) !== before);
    },
    async stop() {
      await sentinel.stop();
      await Promise.all([master.stop(), replica.stop()]);
    },
  };
}

/**
 * Starts real nginx in front of `nodes` with the repository's sticky-session config
 * (deploy/nginx/nginx.conf), generating its node list.
 */
export async function startNginx(nodes) {
  const dir = mkdtempSync(path.join(tmpdir(), "sy-nginx-"));
  const port = await freePort();
  const nodesConf = nodes.map((n) => `server 127.0.0.1:${n.port} max_fails=1 fail_timeout=5s;`).join("\n");
  writeFileSync(path.join(dir, "nodes.conf"), nodesConf + "\n");
  const template = readFileSync(path.join(root, "deploy/nginx/nginx.conf"), "utf8");
  const conf = template.replaceAll("{{LISTEN}}", `127.0.0.1:${port}`).replaceAll("{{NODES}}", path.join(dir, "nodes.conf"));
  writeFileSync(path.join(dir, "nginx.conf"), conf);
  const child = spawn("nginx", ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-g", "daemon off;"], { stdio: ["ignore", "pipe", "pipe"] });
  const logs = [];
  child.stderr.on("data", (d) => logs.push(d.toString()));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      if (res.ok) break;
    } catch {
      await sleep(50);
    }
    if (child.exitCode !== null) throw new Error("nginx exited:\n" + logs.join(""));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    logs,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

/** Starts the server binary; resolves once it logs that it listens. */
export function startServer(env = {}, { port = 0 } = {}) {
  const child = spawn(BIN, [], {
    env: {
      PATH: process.env.PATH,
      HOST: "127.0.0.1",
      WEBSOCKET_PORT: String(port),
      LOG_FORMAT: "json",
      LOG_LEVEL: "info",
      JWT_SECRET: SECRET,
      // Load shedding off: these tests share two cores with Chromium and other servers, and
      // a refusal caused by that would fail a test about something else. It has its own
      // deterministic test (server/tests/overload.rs); the benchmark smoke runs it on.
      OVERLOAD_MAX_LAG_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs = [];
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + logs.join("\n"))), 15000);
    child.stderr.on("data", (d) => logs.push(d.toString()));
    child.stdout.on("data", (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const rec = JSON.parse(line);
          if (rec.message === "switchyard-server listening") {
            clearTimeout(timer);
            const p = Number(rec.addr.split(":").pop());
            resolve({
              url: `http://127.0.0.1:${p}`,
              port: p,
              child,
              logs,
              exited,
              async stop(signal = "SIGTERM") {
                if (child.exitCode === null && child.signalCode === null) child.kill(signal);
                return exited;
              },
            });
          }
        } catch {
          /* not JSON: ignore */
        }
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n` + logs.join("\n")));
    });
  });
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** Signs an HS256 JWT. */
export function hs256(claims, secret = SECRET, header = {}) {
  const head = b64url({ alg: "HS256", typ: "JWT", ...header });
  const body = b64url(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Signs an RS256 or ES256 JWT with a node KeyObject. */
export function signAsym(alg, claims, privateKey, kid) {
  const head = b64url({ alg, typ: "JWT", ...(kid ? { kid } : {}) });
  const body = b64url(claims);
  const signer = createSign("SHA256").update(`${head}.${body}`);
  const sig = alg === "ES256" ? signer.sign({ key: privateKey, dsaEncoding: "ieee-p1363" }) : signer.sign(privateKey);
  return `${head}.${body}.${sig.toString("base64url")}`;
}

/** Standard claims for `sub`, valid for an hour. */
export function claims(sub, extra = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { sub, name: sub, iat: now, exp: now + 3600, ...extra };
}

export const token = (sub, extra) => hs256(claims(sub, extra));

/** Connects to a namespace; resolves on connect, rejects with the connect_error. */
export function connect(url, ns, tok, opts = {}) {
  const socket = io(url + ns, { auth: tok === undefined ? {} : { token: tok }, forceNew: true, reconnection: false, ...opts });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** Emits with an ack and resolves with the ack body. */
export function call(socket, event, payload) {
  return socket.timeout(5000).emitWithAck(event, payload);
}

/** Resolves with the next `event` whose payload passes `pred`. */
export function next(socket, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    function on(data) {
      if (!pred(data)) return;
      clearTimeout(timer);
      socket.off(event, on);
      resolve(data);
    }
    socket.on(event, on);
  });
}

/** Collects every `event` a socket receives. */
export function record(socket, event) {
  const seen = [];
  socket.on(event, (d) => seen.push(d));
  return seen;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uid = (p) => `${p}-${randomBytes(4).toString("hex")}`;

/** HTTP JSON call. */
export async function http(url, method, pathname, { token: tok, body } = {}) {
  const res = await fetch(url + pathname, {
    method,
    headers: { "content-type": "application/json", ...(tok ? { authorization: `Bearer ${tok}` } : {}) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, body: json };
}
