// A real Prometheus (Debian's) scrapes two switchyard-server processes sharing a real Redis
// while a scripted workload runs; then every PromQL expression of the Grafana dashboard and
// of the alert rules is evaluated through Prometheus's HTTP API and must return data. A
// renamed metric or label empties an expression and fails this suite. The rule files also
// go through `promtool check rules` and `promtool test rules`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, startRedis, freePort, token, hs256, claims, connect, call, next, sleep, uid, http } from "../js/helpers.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const RULES = path.join(root, "monitoring/prometheus/rules.yaml");
const RULE_TESTS = path.join(root, "monitoring/prometheus/rules.test.yaml");
const DASHBOARD = path.join(root, "monitoring/grafana/dashboards/socket-dashboard.json");
const ENVIRONMENT = "obs-test";
const SERVICE_KEY = "obs-test-service-key-0123456789";

let redis, prom, hook;
let nodes = [];
let open = [];

/** Starts Prometheus scraping `targets` every second, with the alert rules loaded. */
async function startPrometheus(targets) {
  const dir = mkdtempSync(path.join(tmpdir(), "sy-prom-"));
  const port = await freePort();
  const config = path.join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }",
      `rule_files: [${JSON.stringify(RULES)}]`,
      "scrape_configs:",
      "  - job_name: switchyard",
      `    static_configs: [{ targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}] }]`,
      "",
    ].join("\n"),
  );
  const child = spawn(
    "prometheus",
    [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const logs = [];
  child.stderr.on("data", (d) => logs.push(d.toString()));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (i > 150 || child.exitCode !== null) throw new Error("prometheus did not start:\n" + logs.join(""));
    await sleep(100);
  }
  return {
    url,
    logs,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** An instant query; returns the result vector. */
async function query(expr) {
  const res = await fetch(`${prom.url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const body = await res.json();
  assert.equal(body.status, "success", `${expr}: ${body.error}`);
  return body.data.result;
}

/** The single value of a scalar-like expression, or NaN when empty. */
async function value(expr) {
  const result = await query(expr);
  return result.length ? Number(result[0].value[1]) : NaN;
}

async function waitFor(what, cond, ms = 30000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** A webhook receiver that fails every call with 503, so notification jobs are retried. */
function startFailingWebhook() {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(503).end();
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

before(async () => {
  redis = await startRedis();
  hook = await startFailingWebhook();
  const dir = mkdtempSync(path.join(tmpdir(), "sy-rules-"));
  const rules = path.join(dir, "rules.yaml");
  writeFileSync(rules, "rules:\n  - name: obs-ping\n    event: obs.ping\n    type: ping\n    title: ping\n    body: ping\n    channels: [webhook]\n");
  const env = {
    REDIS_URL: redis.url,
    ENVIRONMENT,
    // A small message budget so the workload hits the rate limit.
    RATE_LIMIT_MESSAGE: "6/10s",
    RATE_LIMIT_WARNINGS: "1",
    // One rule sending `obs.ping` events to a webhook that always fails, with fast retries.
    SERVICE_API_KEYS: SERVICE_KEY,
    RULES_FILE: rules,
    WEBHOOK_URL: `http://127.0.0.1:${hook.address().port}/hook`,
    WEBHOOK_SECRET: "obs-test-webhook-secret-0123456789",
    QUEUE_MAX_ATTEMPTS: "3",
    QUEUE_BACKOFF_BASE_MS: "50",
    QUEUE_BACKOFF_MAX_MS: "200",
  };
  nodes = await Promise.all([startServer(env), startServer(env)]);
  prom = await startPrometheus(nodes.map((n) => `127.0.0.1:${n.port}`));
  await waitFor("both servers scraped", async () => (await value(`count(up{job="switchyard"} == 1)`)) === 2);
  await workload();
});

after(async () => {
  for (const s of open) s.close();
  await prom?.stop();
  for (const n of nodes) await n.stop();
  await redis?.stop();
  hook?.close();
});

/** Connections on both nodes, messages across them, auth failures, a rate-limit hit, a
 *  disconnect, errors, and a notification job that is retried and dead-lettered. */
async function workload() {
  const [a, b] = nodes;
  const [alice, bob, carol] = [uid("alice"), uid("bob"), uid("carol")];
  const sa = await connect(a.url, "/chat", token(alice));
  const sb = await connect(b.url, "/chat", token(bob));
  const sc = await connect(a.url, "/chat", token(carol), { transports: ["polling"] });
  // Alice's and Bob's sockets stay open through the checks (the connection gauges).
  open = [sa, sb, sc];
  const created = next(sb, "roomCreated");
  const room = (await call(sa, "getOrCreateRoom", { participantIds: [bob, carol] })).data.room;
  await created;
  for (let i = 0; i < 4; i++) {
    const delivered = next(sb, "newMessage");
    assert.equal((await call(sa, "sendMessage", { roomId: room.id, content: `m${i}`, clientMessageId: `c${i}` })).ok, true);
    await delivered;
  }
  const page = await call(sb, "getMessages", { roomId: room.id });
  await call(sb, "markMessagesRead", { roomId: room.id, messageId: page.data.messages.at(-1).id });
  await call(sc, "typing", { roomId: room.id, isTyping: true });
  await call(sc, "getRooms", {});
  // Errors of several kinds.
  assert.equal((await call(sa, "sendMessage", {})).error.code, "invalid_payload");
  assert.equal((await call(sa, "getMessages", { roomId: "no-such-room" })).error.code, "not_found");
  // Over the message budget: a warning, then rejections.
  const warned = next(sa, "rateLimitWarning");
  let limited = 0;
  for (let i = 0; i < 8; i++) {
    const ack = await call(sa, "sendMessage", { roomId: room.id, content: `burst ${i}` });
    if (!ack.ok && ack.error.code === "rate_limited") limited++;
  }
  await warned;
  assert.ok(limited > 0, "the burst hits the rate limit");
  // Auth failures: a bad signature, an expired token, an HTTP call without a token.
  await assert.rejects(connect(b.url, "/chat", hs256(claims("mallory"), "x".repeat(40))), /unauthorized/);
  await assert.rejects(connect(b.url, "/chat", token("late", { exp: 1000 })), /token_expired/);
  assert.equal((await http(a.url, "GET", "/api/chat/rooms")).status, 401);
  // (Alice is blocked by now: a block covers every event class.)
  assert.equal((await http(a.url, "GET", "/api/chat/rooms", { token: token(bob) })).status, 200);
  // A client leaves.
  sc.disconnect();
  // A notification whose webhook keeps failing: retried, then a dead letter.
  const res = await http(b.url, "POST", "/api/events", { token: SERVICE_KEY, body: { type: "obs.ping", userId: alice } });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  // Everything above is visible once a scrape after it lands.
  await waitFor("the workload in Prometheus", async () => {
    const n = await value(`sum(socket_messages_total{environment="${ENVIRONMENT}",direction="inbound"})`);
    const gone = await value(`sum(socket_disconnects_total{environment="${ENVIRONMENT}"})`);
    return n >= 18 && gone >= 1;
  });
  // Two more scrapes, so rates over series created late have two samples.
  await sleep(2500);
}

/** Grafana variables as a dashboard user with one environment and /chat selected sees them. */
function substitute(expr) {
  const vars = {
    environment: ENVIRONMENT,
    namespace: "/chat",
    __rate_interval: "1m",
    __range: "5m",
    __interval: "15s",
  };
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (m, a, b, c) => {
    const name = a || b || c;
    if (!(name in vars)) throw new Error(`unknown dashboard variable ${m} in ${expr}`);
    return vars[name];
  });
}

/** Every target expression of every panel, with the panel title. */
function dashboardExprs() {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
  const out = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) out.push({ panel: p.title, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return { dashboard, exprs: out };
}

/** Splits `expr` on top-level `and` / `or` / `unless`. */
function splitSetOps(expr) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i];
    if (quote) {
      if (ch === "\\") i++;
      else if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'" || ch === "`") quote = ch;
    else if ("([{".includes(ch)) depth++;
    else if (")]}".includes(ch)) depth--;
    else if (depth === 0) {
      const m = /^\s(and|or|unless)\s/.exec(expr.slice(i));
      if (m) {
        parts.push(expr.slice(start, i));
        i += m[0].length - 1;
        start = i + 1;
      }
    }
  }
  parts.push(expr.slice(start));
  return parts.map((p) => p.trim()).filter(Boolean);
}

/** The measured side of an alert branch: `x > 0.05` → `x`. */
const measured = (branch) => branch.replace(/\s*(>=|<=|==|!=|>|<)\s*(bool\s+)?[-+]?[0-9.]+(e[-+]?[0-9]+)?\s*$/i, "").trim();

test("promtool accepts the rules and every alert fires in its unit test", () => {
  const check = execFileSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
  assert.match(check, /SUCCESS: 7 rules found/);
  const unit = execFileSync("promtool", ["test", "rules", RULE_TESTS], { encoding: "utf8" });
  assert.match(unit, /SUCCESS/);
  // Each alert has a test that expects it to fire.
  const alerts = [...readFileSync(RULES, "utf8").matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
  const tests = readFileSync(RULE_TESTS, "utf8");
  for (const a of alerts) {
    assert.match(tests, new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${a} has no firing test`);
  }
});

test("both servers are scraped and the workload shows in the contract metrics", async () => {
  const env = `environment="${ENVIRONMENT}"`;
  assert.equal(await value(`count(socket_server_uptime_seconds{${env}})`), 2);
  assert.equal(await value(`count(switchyard_server_ready{${env}} == 1)`), 2);
  const checks = {
    // The autoscaling metric: the two sockets still open (alice on A, bob on B).
    [`sum(socket_active_connections{${env},namespace="/chat"})`]: (v) => v === 2,
    [`count(socket_active_connections{${env},namespace="/chat"} == 1)`]: (v) => v === 2,
    [`sum(socket_connections_total{${env},namespace="/chat"})`]: (v) => v >= 3,
    [`sum(socket_disconnects_total{${env},reason="client_namespace_disconnect"})`]: (v) => v >= 1,
    [`sum(socket_messages_total{${env},event="sendMessage",direction="inbound"})`]: (v) => v >= 13,
    [`sum(socket_messages_total{${env},event="newMessage",direction="outbound"})`]: (v) => v >= 4,
    [`sum(socket_messages_total{${env},event="rateLimitWarning",direction="outbound"})`]: (v) => v >= 1,
    [`sum(socket_message_duration_seconds_count{${env},event="sendMessage"})`]: (v) => v >= 13,
    [`sum(socket_message_size_bytes_sum{${env},event="sendMessage"})`]: (v) => v > 0,
    [`sum(socket_active_rooms{${env}})`]: (v) => v >= 1,
    [`sum(socket_active_users{${env}})`]: (v) => v === 2,
    [`sum(socket_errors_total{${env},type="rate_limited"})`]: (v) => v >= 1,
    [`sum(socket_errors_total{${env},type="invalid_payload"})`]: (v) => v >= 1,
    [`sum(socket_errors_total{${env},type="not_found"})`]: (v) => v >= 1,
    [`sum(socket_auth_events_total{${env},status="success"})`]: (v) => v >= 4,
    [`sum(socket_auth_events_total{${env},status="failed"})`]: (v) => v >= 2,
    [`sum(socket_auth_events_total{${env},status="expired"})`]: (v) => v >= 1,
    // Cross-node traffic goes through Redis pub/sub, timed by the adapter's driver.
    [`sum(switchyard_redis_command_duration_seconds_count{${env}})`]: (v) => v > 0,
    [`count(switchyard_queue_jobs{${env}})`]: (v) => v === 8,
    // The lag probe runs on both nodes, 100 times a second, with shedding off too.
    [`count(switchyard_scheduling_lag_seconds_count{${env}} > 100)`]: (v) => v === 2,
  };
  for (const [expr, ok] of Object.entries(checks)) {
    const v = await value(expr);
    assert.ok(ok(v), `${expr} = ${v}`);
  }
});

test("a failing notification job is counted as retried, then as a dead letter", async () => {
  const env = `environment="${ENVIRONMENT}"`;
  // The webhook answers 503: QUEUE_MAX_ATTEMPTS=3 means two retries, then a dead letter.
  await waitFor("the dead letter in Prometheus", async () => {
    return (await value(`sum(switchyard_queue_dead_letters_total{${env},channel="webhook"})`)) >= 1;
  });
  assert.equal(await value(`sum(switchyard_queue_job_retries_total{${env},channel="webhook"})`), 2);
  await waitFor("the dead-letter gauge", async () => (await value(`sum(switchyard_queue_jobs{${env},state="dead"})`)) >= 1);
});

test("every dashboard expression returns data", async () => {
  const { dashboard, exprs } = dashboardExprs();
  assert.ok(exprs.length >= 20, `the dashboard has its panels (${exprs.length} expressions)`);
  const empty = [];
  for (const { panel, expr } of exprs) {
    const result = await query(substitute(expr));
    if (result.length === 0) empty.push(`${panel}: ${expr}`);
  }
  assert.deepEqual(empty, [], "expressions without data");
  // Template variables: label_values(metric{...}, label) must list our values.
  for (const v of dashboard.templating.list.filter((v) => v.type === "query")) {
    const q = typeof v.query === "string" ? v.query : v.query.query;
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
    assert.ok(m, `variable ${v.name} is a label_values query: ${q}`);
    const res = await fetch(`${prom.url}/api/v1/label/${m[2]}/values?${new URLSearchParams({ "match[]": substitute(m[1]) })}`);
    const values = (await res.json()).data;
    assert.ok(values.length > 0, `variable ${v.name} has no values`);
  }
  const datasource = dashboard.templating.list.find((v) => v.type === "datasource");
  assert.equal(datasource?.query, "prometheus", "a Prometheus datasource variable");
});

test("every alert expression evaluates with data in a real Prometheus", async () => {
  const body = await (await fetch(`${prom.url}/api/v1/rules`)).json();
  const rules = body.data.groups.flatMap((g) => g.rules);
  assert.equal(rules.length, 7, "Prometheus loaded every rule");
  await waitFor("rules evaluated", async () => {
    const b = await (await fetch(`${prom.url}/api/v1/rules`)).json();
    return b.data.groups.flatMap((g) => g.rules).every((r) => r.lastEvaluation && !r.lastEvaluation.startsWith("0001"));
  });
  const empty = [];
  for (const rule of rules) {
    assert.equal(rule.health, "ok", `${rule.name}: ${rule.lastError}`);
    for (const branch of splitSetOps(rule.query)) {
      // `absent(...)` has data exactly when the metric is missing: skipped, it is the
      // other branch that has to find the metric.
      if (branch.startsWith("absent(")) continue;
      const expr = measured(branch);
      const result = await query(expr);
      if (result.length === 0) empty.push(`${rule.name}: ${expr}`);
    }
  }
  assert.deepEqual(empty, [], "alert expressions without data");
});
