// alice (WebSocket, SY_URL_A) and bob (long-polling, SY_URL_B, default SY_URL_A) meet in a direct
// room; alice's message reaches bob. Pointing the two at different pods checks the fan-out
// through Redis. Prints one "ok:" line per assertion; exits non-zero on any failure.
import assert from "node:assert/strict";
import { call, connect, next } from "./lib.mjs";

const urlA = process.env.SY_URL_A;
const urlB = process.env.SY_URL_B || urlA;
const tag = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
const a = await connect(urlA, `alice-${tag}`, ["websocket"]);
const b = await connect(urlB, `bob-${tag}`, ["polling"]);
const { room } = await call(a, "getOrCreateRoom", { participantIds: [`bob-${tag}`] });
const got = next(b, "newMessage");
const { message } = await call(a, "sendMessage", { roomId: room.id, content: `hello ${tag}` });
assert.deepEqual(await got, message);
console.log(`ok: alice (websocket, ${urlA}) -> bob (polling, ${urlB}) got ${JSON.stringify(message.content)}`);
a.close();
b.close();
