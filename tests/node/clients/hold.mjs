// Opens N WebSocket connections to SY_URL/chat and holds them until stdin closes or SIGTERM.
// Prints "open N" once all are connected, then the count whenever it changes; reconnects with
// socket.io-client's own backoff when a pod goes away.
import { io, token } from "./lib.mjs";

const n = Number(process.env.N || 10);
const prefix = process.env.PREFIX || "hold";
let open = 0;
const sockets = [];
for (let i = 0; i < n; i++) {
  const s = io(`${process.env.SY_URL}/chat`, {
    auth: { token: token(`${prefix}-${i}`) }, transports: ["websocket"], forceNew: true, timeout: 30000,
  });
  s.on("connect", () => { open++; console.log(`open ${open}`); });
  s.on("disconnect", () => { open--; console.log(`open ${open}`); });
  sockets.push(s);
}
const stop = () => { for (const s of sockets) s.close(); process.exit(0); };
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
