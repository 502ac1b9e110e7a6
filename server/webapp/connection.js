// The connection to the server: Socket.IO (WebSocket first, then long-polling) for /chat and
// /notifications over one multiplexed Engine.IO session, and the HTTP API as the fallback.
//
// `call(event, payload)` answers like an ack ({ ok, data } or { ok: false, error }) whichever
// way it went: over the socket when it is connected, otherwise (or when the ack does not come)
// over the matching HTTP route. Sends carry a clientMessageId, so the retry over HTTP after a
// lost ack cannot duplicate a message.
//
// States (the `state` event): connecting → connected ⇄ reconnecting; after FALLBACK_AFTER
// failed attempts in a row, `fallback`: the app then polls the HTTP API while Socket.IO keeps
// retrying in the background, and returns to `connected` (with a `resync`) when it gets through.

import { io } from "./vendor/socket.io.esm.min.js";

const AUTH_ERRORS = new Set(["unauthorized", "token_expired", "forbidden"]);
const ACK_TIMEOUT_MS = 8000;
const FALLBACK_AFTER = 2;
const NOTIFICATION_EVENTS = new Set(["getNotifications", "markNotificationsRead", "subscribePresence", "unsubscribePresence"]);

const qs = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
};

/** Socket events that have an HTTP twin: event → (payload) → [method, path, body?]. */
const HTTP_ROUTES = {
  getOrCreateRoom: (p) => ["POST", "/api/chat/rooms", p],
  sendMessage: (p) => ["POST", "/api/chat/messages", p],
  getMessages: ({ roomId, ...q }) => ["GET", `/api/chat/rooms/${encodeURIComponent(roomId)}/messages${qs(q)}`],
  markMessagesRead: (p) => ["PATCH", "/api/chat/messages/read", p],
  getRooms: () => ["GET", "/api/chat/rooms"],
  getNotifications: (q) => ["GET", `/api/notifications${qs(q)}`],
  markNotificationsRead: (p) => ["PATCH", "/api/notifications/read", p],
};

export class Connection extends EventTarget {
  constructor(token) {
    super();
    this.token = token;
    this.state = "connecting";
    this.transport = null;
    this.failures = 0;
    this.everConnected = false;
    // The seed client's order: WebSocket first; `tryAllTransports` moves on to long-polling
    // when the WebSocket cannot be opened (blocked by a proxy, say), on every (re)connect.
    const options = {
      auth: { token },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      timeout: 8000,
      // Say goodbye when the tab closes, so presence turns off at once even over polling
      // (otherwise the server notices only after the ping timeout).
      closeOnBeforeunload: true,
    };
    this.chat = io("/chat", options);
    this.notifications = io("/notifications", options);
    this.#watch();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state) {
    const engine = this.chat.io.engine;
    const transport = state === "connected" && engine ? engine.transport?.name ?? null : null;
    if (state === this.state && transport === this.transport) return;
    this.state = state;
    this.transport = transport;
    this.#emit("state", { state, transport });
  }

  #watch() {
    const manager = this.chat.io;
    this.chat.on("connect", () => {
      const resync = this.everConnected || this.state === "fallback";
      this.everConnected = true;
      this.failures = 0;
      this.#setState("connected");
      // The engine changes when it reconnects: follow each one's upgrade (polling → websocket).
      manager.engine.once("upgrade", () => this.#setState("connected"));
      // With connection state recovery on the server (RECOVERY_WINDOW_MS), a socket back
      // within the window is `recovered`: its rooms are restored and the events it missed
      // were replayed right after this, so there is nothing to fetch. Otherwise (recovery
      // off, the window over, or the session lost) the app catches up from history.
      if (resync) this.#emit("resync", { recovered: this.chat.recovered === true });
    });
    this.chat.on("disconnect", (reason) => {
      if (reason === "io client disconnect") return;
      // The server closing the socket on purpose is not retried by the library; do it.
      if (reason === "io server disconnect") this.chat.connect();
      if (this.state !== "fallback") this.#setState("reconnecting");
    });
    const onError = (namespace) => (err) => {
      if (AUTH_ERRORS.has(err?.message)) {
        this.#emit("auth-error", { reason: err.message });
        return;
      }
      if (namespace === "notifications") return; // the chat socket speaks for the session
      this.failures += 1;
      if (this.failures >= FALLBACK_AFTER) this.#setState("fallback");
      else if (this.state !== "fallback") this.#setState(this.everConnected ? "reconnecting" : "connecting");
    };
    this.chat.on("connect_error", onError("chat"));
    this.notifications.on("connect_error", onError("notifications"));
  }

  /** Listens to a server event on a namespace ("chat" or "notifications"). */
  on(namespace, event, handler) {
    this[namespace].on(event, handler);
  }

  /** True when realtime events flow on `namespace`. */
  live(namespace = "chat") {
    return this[namespace].connected;
  }

  /** Runs a contract event over the socket, or over HTTP when the socket cannot. */
  async call(event, payload = {}) {
    const socket = NOTIFICATION_EVENTS.has(event) ? this.notifications : this.chat;
    if (socket.connected) {
      try {
        return await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
      } catch {
        // No ack in time: the socket may be half dead. Fall through to HTTP when possible.
      }
    }
    const route = HTTP_ROUTES[event];
    if (!route) return { ok: false, error: { code: "unavailable", message: "not connected" } };
    return this.http(...route(payload));
  }

  /** One HTTP API call, answered in the ack shape. */
  async http(method, path, body) {
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      return { ok: false, error: { code: "unavailable", message: "the server cannot be reached" } };
    }
    let json = null;
    try {
      json = await res.json();
    } catch {
      /* empty or not JSON */
    }
    if (res.ok) return { ok: true, data: json ?? {} };
    const error = json?.error ?? { code: res.status === 404 ? "not_found" : "internal", message: `HTTP ${res.status}` };
    if (res.status === 429) error.retryAfterMs = Number(res.headers.get("retry-after") || 1) * 1000;
    if (res.status === 401) this.#emit("auth-error", { reason: error.message || "unauthorized" });
    return { ok: false, error };
  }

  close() {
    this.chat.disconnect();
    this.notifications.disconnect();
  }
}
