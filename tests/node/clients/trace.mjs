// One chat message across two pods, followed in the spans an OTLP receiver got from them.
// alice connects to pod A (SY_URL_A, pod name SY_POD_A) with a `traceparent` of a new trace in
// her handshake's auth; bob connects to pod B (SY_URL_B, SY_POD_B); alice's message reaches bob.
// The receiver's spans (JSON lines at SY_SPANS, polled until SY_DEADLINE_S) must then hold:
// alice's handshake span on pod A in the trace she started; the `/chat sendMessage` span on
// pod A linked to it (each event is its own trace); and in that event's trace, spans from pod A
// and a `socket.io adapter receive` span from pod B whose parent is pod A's `emit newMessage`;
// and nothing else: pod A does not trace its own message coming back from Redis pub/sub.
// A span's pod is the first part of its `service.instance.id` (`<pod name>/<pid>`); its
// `service.name` must be SY_SERVICE (the operator's default is the RealtimeCluster's name).
// Prints one "ok:" line per assertion, the trace id and the span names per pod.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { call, connect, next } from "./lib.mjs";

const { SY_URL_A: urlA, SY_URL_B: urlB, SY_POD_A: podA, SY_POD_B: podB, SY_SPANS: spansUrl } = process.env;
const deadline = Date.now() + 1000 * Number(process.env.SY_DEADLINE_S || 180);
const tag = `${Date.now()}-${randomBytes(3).toString("hex")}`;
const handshakeTrace = randomBytes(16).toString("hex");
const traceparent = `00-${handshakeTrace}-${randomBytes(8).toString("hex")}-01`;

const a = await connect(urlA, `alice-${tag}`, ["websocket"], { auth: { traceparent } });
const b = await connect(urlB, `bob-${tag}`, ["websocket"]);
const { room } = await call(a, "getOrCreateRoom", { participantIds: [`bob-${tag}`] });
const got = next(b, "newMessage");
const { message } = await call(a, "sendMessage", { roomId: room.id, content: `traced ${tag}` });
assert.deepEqual(await got, message);
console.log(`ok: alice (${podA}) -> bob (${podB}) got ${JSON.stringify(message.content)}`);

const pod = (s) => (s.resource["service.instance.id"] || "").split("/")[0];

async function spans() {
  const res = await fetch(spansUrl);
  if (!res.ok) throw new Error(`GET ${spansUrl}: ${res.status}`);
  return (await res.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** The first result of `find(spans)` that is truthy, polling the receiver until the deadline. */
async function eventually(what, find) {
  for (;;) {
    const found = find(await spans());
    if (found) {
      console.log(`ok: ${what}`);
      return found;
    }
    if (Date.now() > deadline) {
      const seen = (await spans()).map((s) => `${pod(s)} ${s.trace_id} ${s.name}`).join("\n  ");
      throw new Error(`the receiver never got ${what}; it has:\n  ${seen}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const handshake = await eventually(`the handshake span on ${podA}, in the trace alice's traceparent started`, (all) =>
  all.find((s) => s.name === "connect /chat" && s.trace_id === handshakeTrace && pod(s) === podA));
const event = await eventually(`the sendMessage span on ${podA}, linked to alice's handshake`, (all) =>
  all.find((s) => s.name === "/chat sendMessage" && pod(s) === podA &&
    s.links.some((l) => l.trace_id === handshake.trace_id && l.span_id === handshake.span_id)));
const trace = event.trace_id;
const [emit, receive] = await eventually(`spans of trace ${trace} from both pods, the bus crossing as parent and child`, (all) => {
  const emit = all.find((s) => s.trace_id === trace && s.name === "emit newMessage" && pod(s) === podA && s.parent_span_id === event.span_id);
  const receive = emit && all.find((s) => s.trace_id === trace && s.name === "socket.io adapter receive" && pod(s) === podB && s.parent_span_id === emit.span_id);
  return receive && [emit, receive];
});
for (const s of [event, emit, receive]) assert.equal(s.resource["service.name"], process.env.SY_SERVICE, `service.name of ${s.name}`);
console.log(`ok: both pods' spans carry service.name ${process.env.SY_SERVICE}`);
assert.equal(emit.kind, "SPAN_KIND_PRODUCER");
assert.equal(receive.kind, "SPAN_KIND_CONSUMER");
console.log(`ok: ${podA}'s emit is a producer span, ${podB}'s receive a consumer span`);

// Pod A skips its own message when Redis pub/sub hands it back, and must not trace that as a
// receipt. bob's reply reaches pod A on the same channel after the echo, and pod A exports
// spans in the order they end: once pod A's receipt of the reply is in, an echo span would be.
const back = next(a, "newMessage");
const { message: reply } = await call(b, "sendMessage", { roomId: room.id, content: `back ${tag}` });
assert.deepEqual(await back, reply);
console.log(`ok: bob's reply reached alice`);
await eventually(`the reply's receipt on ${podA}`, (all) => {
  const replyEvent = all.find((s) => s.name === "/chat sendMessage" && pod(s) === podB);
  return replyEvent && all.find((s) => s.trace_id === replyEvent.trace_id && s.name === "socket.io adapter receive" && pod(s) === podA);
});
a.close();
b.close();

const inTrace = (await spans()).filter((s) => s.trace_id === trace);
const names = (p) => inTrace.filter((s) => pod(s) === p).map((s) => s.name).sort();
assert.deepEqual([...new Set(inTrace.map(pod))].sort(), [podA, podB].sort(), `pods in trace ${trace}`);
assert.deepEqual(names(podA), ["/chat sendMessage", "emit newMessage"], `${podA}'s spans in trace ${trace}`);
assert.deepEqual(names(podB), ["socket.io adapter receive"], `${podB}'s spans in trace ${trace}`);
console.log(`ok: trace ${trace} has spans from exactly the two pods: the event and its emit on ${podA}, the receipt on ${podB}`);
console.log(`trace ${trace}`);
for (const p of [podA, podB]) console.log(`  ${p}: ${names(p).join(", ")}`);
