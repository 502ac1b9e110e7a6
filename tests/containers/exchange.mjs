// Two users exchange a message through the server running in the container.
import assert from "node:assert/strict";
import { hs256, claims, connect, call, next } from "../js/helpers.js";

const url = process.env.SY_URL;
const a = await connect(url, "/chat", hs256(claims("alice"), process.env.SY_SECRET));
const b = await connect(url, "/chat", hs256(claims("bob"), process.env.SY_SECRET), { transports: ["polling"] });
const room = (await call(a, "getOrCreateRoom", { participantIds: ["bob"] })).data.room;
const got = next(b, "newMessage");
const sent = await call(a, "sendMessage", { roomId: room.id, content: "hello from a container" });
assert.deepEqual(await got, sent.data.message);
a.close();
b.close();
