// Opens N WebSocket connections to SY_URL/chat and holds them until SIGTERM. SOURCES, a
// comma-separated list of local addresses, spreads the connections over several client
// addresses: the Service's ClientIP affinity sends every connection of one address to one pod.
// Prints "open N" once all are connected, then the count whenever it changes; reconnects with
// socket.io-client's own backoff when a pod goes away.
import { io, token } from "./lib.mjs";

const n = Number(process.env.N || 10);
const sources = (process.env.SOURCES || "").split(",").filter(Boolean);
const prefix = process.env.PREFIX || "hold";
let open = 0;
const sockets = [];
for (let i = 0; i < n; i++) {
  const s = io(`${process.env.SY_URL}/chat`, {
    auth: { token: token(`${prefix}-${i}`) }, transports: ["websocket"], forceNew: true, timeout: 30000,
    ...(sources.length ? { localAddress: sources[i % sources.length] } : {}),
  });
  s.on("connect", () => { open++; console.log(`open ${open}`); });
  s.on("disconnect", () => { open--; console.log(`open ${open}`); });
  s.on("connect_error", (e) => console.log(`${prefix}-${i}: connect_error ${e.message}`));
  sockets.push(s);
}
const stop = () => { for (const s of sockets) s.close(); process.exit(0); };
process.on("SIGTERM", stop);
