// Switchyard web app: sign-in, rooms, messages, typing, read receipts, notifications and
// presence, on the client contract in docs/protocol.md. State lives in `S`; each `render*`
// function brings one part of the page in line with it.

import { Connection } from "./connection.js";
import {
  avatar,
  dayKey,
  formatAgo,
  formatDay,
  formatShort,
  formatTime,
  h,
  hue,
  icon,
  listing,
  setChildren,
  uuid,
} from "./view.js";

const TOKEN_KEY = "switchyard.token";
const PAGE = 30; // messages per page
const POLL_MS = 3000; // HTTP fallback sync interval
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 2500;
const GROUP_GAP_MS = 5 * 60 * 1000; // consecutive messages closer than this share a header

const $ = (id) => document.getElementById(id);

/** Application state. */
const S = {
  token: null,
  me: { id: "", name: "" },
  conn: null,
  rooms: new Map(), // roomId → { room, unread, lastMessage }
  current: null, // open roomId
  messages: new Map(), // roomId → { list: [message], hasMore, loaded, pending: [pending] }
  reads: new Map(), // roomId → Map(userId → lastReadMessageId)
  typing: new Map(), // roomId → Map(userId → timer)
  presence: new Map(), // userId → { online, lastSeen }
  subscribed: new Set(), // users whose presence this socket watches
  notifications: [],
  notificationCount: 0,
  block: null, // { untilMs, timer }
  warning: null, // { text, timer }
  poller: null,
};

// ---------------------------------------------------------------------------------------
// Sign-in

function decodeToken(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      [...atob(part)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""),
    );
    const claims = JSON.parse(json);
    return typeof claims.sub === "string" && claims.sub ? claims : null;
  } catch {
    return null;
  }
}

const expired = (claims) => typeof claims.exp === "number" && claims.exp * 1000 < Date.now();

/** A user id from a display name: "Zoë Hart" → "zoe-hart". */
function slug(name) {
  const s = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
  return s || `user-${Math.random().toString(36).slice(2, 8)}`;
}

async function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  // Development mode has POST /dev/token: an empty body is a 400 there and a 404 elsewhere.
  let dev = false;
  try {
    const res = await fetch("/dev/token", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    dev = res.status !== 404;
  } catch {
    /* offline: offer both */
    dev = true;
  }
  $("dev-form").hidden = !dev;
  $("token-details").open = !dev;
  $("signin-mode").textContent = dev
    ? "Development server: pick a name and you're in."
    : "This server needs an access token from your identity provider.";
  (dev ? $("dev-name") : $("token-input")).focus();
}

function wireSignIn() {
  const name = $("dev-name");
  const preview = () => ($("dev-id-preview").textContent = name.value.trim() ? slug(name.value.trim()) : "alice");
  name.addEventListener("input", preview);
  preview();
  $("dev-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const display = name.value.trim();
    if (!display) return;
    const button = e.submitter;
    if (button) button.disabled = true;
    try {
      const res = await fetch("/dev/token", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ userId: slug(display), name: display }),
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body?.error?.message || `the server answered ${res.status}`);
      signIn(body.token);
    } catch (err) {
      $("signin-error").textContent = `Could not sign in: ${err.message}`;
    } finally {
      if (button) button.disabled = false;
    }
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token-input").value.trim();
    const claims = decodeToken(token);
    if (!claims) return void ($("signin-error").textContent = "That is not a JWT with a user id (sub).");
    if (expired(claims)) return void ($("signin-error").textContent = "That token has expired.");
    signIn(token);
  });
}

function signIn(token) {
  localStorage.setItem(TOKEN_KEY, token);
  start(token);
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  if (S.me.id) localStorage.removeItem(readsKey());
  if (message) sessionStorage.setItem("switchyard.signout", message);
  S.conn?.close();
  location.hash = "";
  location.reload();
}

// ---------------------------------------------------------------------------------------
// Start-up and connection

function start(token) {
  const claims = decodeToken(token);
  S.token = token;
  S.me = { id: claims.sub, name: claims.name || claims.sub };
  $("signin").hidden = true;
  $("app").hidden = false;
  setChildren($("me-avatar"), avatar(S.me.id, S.me.name, { size: "sm" }));
  $("me-name").textContent = S.me.name;
  loadReads();
  $("me").title = `Signed in as ${S.me.name} (${S.me.id})`;

  const conn = (S.conn = new Connection(token));
  conn.addEventListener("state", (e) => renderConnection(e.detail));
  conn.addEventListener("auth-error", (e) => signOut(`Your session ended (${e.detail.reason}). Sign in again.`));
  conn.addEventListener("resync", (e) => resync(e.detail));

  conn.on("chat", "connect", () => loadRooms());
  conn.on("chat", "newMessage", onNewMessage);
  conn.on("chat", "roomCreated", (room) => upsertRoom(room));
  conn.on("chat", "messagesRead", onMessagesRead);
  conn.on("chat", "userTyping", onUserTyping);
  conn.on("chat", "rateLimitWarning", onRateLimitWarning);
  conn.on("chat", "rateLimitBlocked", onRateLimitBlocked);
  conn.on("notifications", "rateLimitWarning", onRateLimitWarning);
  conn.on("notifications", "rateLimitBlocked", onRateLimitBlocked);
  conn.on("notifications", "connect", () => {
    S.subscribed.clear();
    subscribePresence();
    loadNotifications();
  });
  conn.on("notifications", "disconnect", () => {
    S.presence.clear();
    S.subscribed.clear();
    renderPresence();
  });
  conn.on("notifications", "newNotification", onNewNotification);
  conn.on("notifications", "unreadCount", ({ count }) => setNotificationCount(count));
  conn.on("notifications", "presence", onPresence);
  renderConnection({ state: conn.state, transport: null });
}

function renderConnection({ state, transport }) {
  const el = $("conn");
  el.dataset.state = state;
  el.dataset.transport = transport || "";
  const text = {
    connecting: "Connecting…",
    connected: transport === "websocket" ? "Live · WebSocket" : "Live · long-polling",
    reconnecting: "Reconnecting…",
    fallback: "HTTP fallback",
  }[state];
  $("conn-text").textContent = text;
  el.title = {
    connecting: "Opening a realtime connection",
    connected:
      transport === "websocket"
        ? "Realtime over a WebSocket"
        : "Realtime over HTTP long-polling (the WebSocket could not be opened)",
    reconnecting: "The connection dropped; retrying",
    fallback: `No realtime connection: using the HTTP API, syncing every ${POLL_MS / 1000} s, and retrying in the background`,
  }[state];
  document.body.dataset.conn = state;
  if (state === "fallback" && !S.poller) {
    S.poller = setInterval(pollOverHttp, POLL_MS);
    pollOverHttp();
  } else if (state !== "fallback" && S.poller) {
    clearInterval(S.poller);
    S.poller = null;
  }
  renderComposerState();
}

/**
 * After a reconnect: what each loaded room missed, with `getMessages { after }`, unless the
 * server recovered the connection (it replayed the missed events itself). The rooms and
 * unread counts are reloaded on every connect either way.
 */
async function resync({ recovered }) {
  if (recovered) return;
  for (const roomId of S.messages.keys()) await catchUp(roomId);
}

/** The HTTP fallback's sync: rooms (unread counts, last messages), the open room, notifications. */
async function pollOverHttp() {
  if (S.conn.state !== "fallback") return;
  await loadRooms();
  if (S.current) await catchUp(S.current);
  await loadNotifications();
}

// ---------------------------------------------------------------------------------------
// Rooms

async function loadRooms() {
  const res = await S.conn.call("getRooms", {});
  if (!res.ok) return;
  for (const summary of res.data.rooms) {
    const { unreadCount, lastMessage, ...room } = summary;
    const entry = upsertRoom(room, { render: false });
    // The room on screen is marked read as messages arrive; don't flash a stale count.
    if (!(room.id === S.current && roomInView())) entry.unread = unreadCount;
    if (lastMessage && (!entry.lastMessage || lastMessage.id >= entry.lastMessage.id)) entry.lastMessage = lastMessage;
    // A newer message than the open room shows: fetch it (HTTP fallback, or missed events).
    const state = S.messages.get(room.id);
    if (state?.loaded && lastMessage && lastMessage.id > lastId(room.id)) catchUp(room.id);
  }
  renderRooms();
  subscribePresence();
  // Open the room named in the address (after sign-in or reload).
  const fromHash = roomFromHash();
  if (fromHash && fromHash !== S.current && S.rooms.has(fromHash)) openRoom(fromHash, { focus: false });
}

function upsertRoom(room, { render = true } = {}) {
  let entry = S.rooms.get(room.id);
  if (!entry) {
    entry = { room, unread: 0, lastMessage: null };
    S.rooms.set(room.id, entry);
  } else {
    entry.room = room;
  }
  if (render) {
    renderRooms();
    subscribePresence();
  }
  return entry;
}

const others = (room) => room.participantIds.filter((id) => id !== S.me.id);

function roomTitle(room) {
  if (room.type === "direct") return others(room)[0] ?? S.me.id;
  return room.name || listing(others(room)) || "Just you";
}

const activity = (entry) => entry.lastMessage?.createdAt ?? entry.room.createdAt;

function presenceDot(userId) {
  const p = S.presence.get(userId);
  const online = p ? String(p.online) : "unknown";
  const label = p ? (p.online ? `${userId} is online` : `${userId} is offline`) : `${userId}: presence unknown`;
  return h("span", { class: "presence", role: "img", "aria-label": label, dataset: { user: userId, online } });
}

function renderRooms() {
  const list = $("room-list");
  const entries = [...S.rooms.values()].sort((a, b) => (activity(b) > activity(a) ? 1 : -1));
  $("rooms-empty").hidden = entries.length > 0;
  const focused = document.activeElement?.closest?.(".room")?.dataset.roomId;
  setChildren(
    list,
    entries.map((entry) => {
      const { room, unread, lastMessage } = entry;
      const title = roomTitle(room);
      const direct = room.type === "direct";
      const peer = direct ? others(room)[0] : null;
      const typers = [...(S.typing.get(room.id)?.keys() ?? [])];
      let preview;
      if (typers.length) preview = h("span", { class: "typing-preview" }, direct ? "typing…" : `${listing(typers)} typing…`);
      else if (lastMessage) preview = `${lastMessage.senderId === S.me.id ? "You" : direct ? "" : lastMessage.senderId}${lastMessage.senderId === S.me.id || !direct ? ": " : ""}${lastMessage.content}`;
      else preview = direct ? "Say hello" : `${room.participantIds.length} members`;
      const presence = peer ? S.presence.get(peer) : null;
      const label = [
        title,
        direct ? null : "group",
        presence ? (presence.online ? "online" : "offline") : null,
        unread ? `${unread} unread` : null,
        lastMessage ? `last message: ${lastMessage.content}` : null,
      ]
        .filter(Boolean)
        .join(", ");
      return h(
        "li",
        {},
        h(
          "button",
          {
            class: `room${unread ? " has-unread" : ""}`,
            type: "button",
            "aria-current": room.id === S.current ? "true" : null,
            "aria-label": label,
            dataset: { roomId: room.id, type: room.type },
            onclick: () => openRoom(room.id),
          },
          avatar(peer ?? room.id, title, {
            group: !direct,
            presence: peer ? presenceDot(peer) : null,
          }),
          h(
            "span",
            { class: "room-main" },
            h("span", { class: "room-name" }, title),
            h("span", { class: "room-preview" }, preview),
          ),
          h(
            "span",
            { class: "room-side" },
            h("time", { datetime: activity(entry) }, formatShort(activity(entry))),
            unread ? h("span", { class: "unread", dataset: { count: unread } }, unread > 99 ? "99+" : String(unread)) : null,
          ),
        ),
      );
    }),
  );
  if (focused) list.querySelector(`.room[data-room-id="${CSS.escape(focused)}"]`)?.focus();
  const total = entries.reduce((n, e) => n + e.unread, 0);
  document.title = total ? `(${total}) Switchyard` : "Switchyard";
}

function roomFromHash() {
  const m = location.hash.match(/^#\/r\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function openRoom(roomId, { focus = true } = {}) {
  const entry = S.rooms.get(roomId);
  if (!entry) return;
  const changed = S.current !== roomId;
  S.current = roomId;
  if (roomFromHash() !== roomId) history.pushState(null, "", `#/r/${encodeURIComponent(roomId)}`);
  $("layout").dataset.view = "room";
  if (changed) {
    $("message-list").replaceChildren();
    $("composer-input").value = "";
    autosize();
  }
  $("message-list").dataset.roomType = entry.room.type;
  renderRooms();
  renderHeader();
  renderTyping();
  let state = S.messages.get(roomId);
  if (!state) {
    state = { list: [], hasMore: false, loaded: false, pending: [] };
    S.messages.set(roomId, state);
  }
  renderMessages({ scroll: "bottom" });
  if (!state.loaded) {
    const res = await S.conn.call("getMessages", { roomId, limit: PAGE });
    if (res.ok) {
      mergeMessages(roomId, res.data.messages);
      state.hasMore = res.data.hasMore;
      state.loaded = true;
    } else {
      toast(`Could not load messages: ${res.error.message}`, "error");
    }
    if (S.current === roomId) renderMessages({ scroll: "bottom" });
  }
  markRead(roomId);
  // On a phone the keyboard would cover the conversation: focus its title there (the list
  // that had focus is gone), the message box on wider screens.
  if (focus) (matchMedia("(min-width: 760px)").matches ? $("composer-input") : $("room-title")).focus();
}

function closeRoom() {
  $("layout").dataset.view = "list";
  const id = S.current;
  if (id) $("room-list").querySelector(`.room[data-room-id="${CSS.escape(id)}"]`)?.focus();
}

function renderHeader() {
  const entry = S.rooms.get(S.current);
  $("no-room").hidden = !!entry;
  $("conversation-body").hidden = !entry;
  if (!entry) return;
  const { room } = entry;
  const direct = room.type === "direct";
  const peer = direct ? others(room)[0] : null;
  setChildren($("room-avatar"), avatar(peer || room.id, roomTitle(room), { group: !direct, presence: peer ? presenceDot(peer) : null }));
  $("room-title").textContent = roomTitle(room);
  let sub;
  if (direct) {
    const p = S.presence.get(peer);
    sub = !p ? "Direct message" : p.online ? "Online" : p.lastSeen ? `Last seen ${formatAgo(p.lastSeen)}` : "Offline";
  } else {
    const online = room.participantIds.filter((id) => id === S.me.id || S.presence.get(id)?.online).length;
    sub = `${room.participantIds.length} members${S.subscribed.size ? ` · ${online} online` : ""}`;
  }
  $("room-sub").textContent = sub;
  setChildren(
    $("room-members"),
    direct
      ? []
      : room.participantIds.map((id) =>
          h("li", { class: "member", title: id }, avatar(id, id, { size: "sm", presence: id === S.me.id ? null : presenceDot(id) }), h("span", {}, id === S.me.id ? "you" : id)),
        ),
  );
}

// ---------------------------------------------------------------------------------------
// Messages

const lastId = (roomId) => S.messages.get(roomId)?.list.at(-1)?.id ?? "";

function mergeMessages(roomId, messages) {
  const state = S.messages.get(roomId);
  if (!state) return;
  const byId = new Map(state.list.map((m) => [m.id, m]));
  for (const m of messages) byId.set(m.id, m);
  state.list = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // A stored message replaces its optimistic copy.
  const stored = new Set(messages.map((m) => m.clientMessageId).filter(Boolean));
  state.pending = state.pending.filter((p) => !stored.has(p.clientMessageId));
}

/** Fetches everything newer than the last message held for `roomId`. */
async function catchUp(roomId) {
  const state = S.messages.get(roomId);
  if (!state?.loaded || state.catchingUp) return;
  state.catchingUp = true;
  try {
    for (let i = 0; i < 20; i++) {
      const after = lastId(roomId) || "000000000000";
      const res = await S.conn.call("getMessages", { roomId, after, limit: 100 });
      if (!res.ok) break;
      mergeMessages(roomId, res.data.messages);
      const newest = res.data.messages.at(-1);
      if (newest) noteLastMessage(roomId, newest);
      if (!res.data.hasMore) break;
    }
  } finally {
    state.catchingUp = false;
  }
  if (roomId === S.current) {
    renderMessages({ scroll: "auto" });
    markRead(roomId);
  }
}

function noteLastMessage(roomId, message) {
  const entry = S.rooms.get(roomId);
  if (entry && (!entry.lastMessage || message.id >= entry.lastMessage.id)) entry.lastMessage = message;
}

function onNewMessage(message) {
  const { roomId } = message;
  if (!S.rooms.has(roomId)) loadRooms();
  const entry = S.rooms.get(roomId);
  const state = S.messages.get(roomId);
  clearTyping(roomId, message.senderId);
  const known = state?.list.some((m) => m.id === message.id);
  if (state?.loaded && !known) {
    // Ids are consecutive: a gap means events were missed; fetch them in order.
    const expected = Number(lastId(roomId) || 0) + 1;
    if (Number(message.id) > expected) catchUp(roomId);
    mergeMessages(roomId, [message]);
  }
  noteLastMessage(roomId, message);
  const visible = roomId === S.current && roomInView();
  if (entry && !known && message.senderId !== S.me.id && !visible) entry.unread += 1;
  renderRooms();
  if (roomId === S.current) {
    renderMessages({ scroll: "auto" });
    renderTyping();
    markRead(roomId);
  }
}

function onMessagesRead({ roomId, userId, lastReadMessageId }) {
  let reads = S.reads.get(roomId);
  if (!reads) S.reads.set(roomId, (reads = new Map()));
  if ((reads.get(userId) ?? "") < lastReadMessageId) {
    reads.set(userId, lastReadMessageId);
    saveReads();
  }
  if (userId === S.me.id) {
    // Read in another tab: recount what is still unread.
    const entry = S.rooms.get(roomId);
    const list = S.messages.get(roomId)?.list ?? [];
    if (entry) {
      entry.unread = list.length
        ? list.filter((m) => m.id > lastReadMessageId && m.senderId !== S.me.id).length
        : entry.lastMessage && entry.lastMessage.id > lastReadMessageId
          ? entry.unread
          : 0;
      renderRooms();
    }
  }
  if (roomId === S.current) renderReceipts();
}

/** Read positions are only announced live; remembering them keeps receipts across reloads. */
const readsKey = () => `switchyard.reads.${S.me.id}`;

function saveReads() {
  const plain = Object.fromEntries([...S.reads].map(([room, users]) => [room, Object.fromEntries(users)]));
  try {
    localStorage.setItem(readsKey(), JSON.stringify(plain));
  } catch {
    /* storage full or disabled: receipts just won't survive a reload */
  }
}

function loadReads() {
  try {
    const plain = JSON.parse(localStorage.getItem(readsKey()) || "{}");
    for (const [room, users] of Object.entries(plain)) S.reads.set(room, new Map(Object.entries(users)));
  } catch {
    /* ignore a corrupt entry */
  }
}

/** True when the open room is what the user is looking at. */
const roomInView = () => document.visibilityState === "visible" && $("layout").dataset.view === "room";

let markTimer = null;
/** Marks the open room read up to its newest message, when the page is in view. */
function markRead(roomId) {
  clearTimeout(markTimer);
  markTimer = setTimeout(async () => {
    if (roomId !== S.current || !roomInView()) return;
    const state = S.messages.get(roomId);
    const newest = state?.list.at(-1);
    const entry = S.rooms.get(roomId);
    if (!newest || !entry) return;
    const mine = S.reads.get(roomId)?.get(S.me.id) ?? "";
    const unreadFromOthers = state.list.some((m) => m.id > mine && m.senderId !== S.me.id);
    if (!unreadFromOthers && !entry.unread) return;
    const res = await S.conn.call("markMessagesRead", { roomId, messageId: newest.id });
    if (res.ok) {
      onMessagesRead({ roomId, userId: S.me.id, lastReadMessageId: res.data.lastReadMessageId });
      entry.unread = res.data.unreadCount;
      renderRooms();
    }
  }, 250);
}

/** Keyed rendering of the open room: existing elements are kept, so the log only announces additions. */
function renderMessages({ scroll = "auto" } = {}) {
  const roomId = S.current;
  const state = S.messages.get(roomId);
  const box = $("messages");
  const list = $("message-list");
  if (!state) return;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  const items = [...state.list, ...state.pending];
  const keep = new Map([...list.children].map((el) => [el.dataset.key, el]));
  const wanted = [];
  let prev = null;
  for (const m of items) {
    const day = dayKey(m.createdAt);
    if (!prev || dayKey(prev.createdAt) !== day) {
      const key = `day:${day}`;
      wanted.push(keep.get(key) ?? h("li", { class: "day", dataset: { key } }, h("span", {}, formatDay(m.createdAt))));
      prev = null;
    }
    const key = m.id ? `m:${m.id}` : `p:${m.clientMessageId}`;
    let el = keep.get(key);
    if (!el && m.id && m.clientMessageId) {
      // The optimistic copy becomes the stored message: keep its element (no flicker, no re-announce).
      el = keep.get(`p:${m.clientMessageId}`);
      if (el) el.dataset.key = key;
    }
    if (!el) el = messageElement(m, key);
    const grouped =
      prev && prev.senderId === m.senderId && new Date(m.createdAt) - new Date(prev.createdAt) < GROUP_GAP_MS;
    el.classList.toggle("grouped", !!grouped);
    updateMessageElement(el, m);
    wanted.push(el);
    prev = m;
  }
  // Reconcile children in order.
  wanted.forEach((el, i) => {
    if (list.children[i] !== el) list.insertBefore(el, list.children[i] ?? null);
  });
  while (list.children.length > wanted.length) list.lastElementChild.remove();
  $("load-older").hidden = !state.hasMore;
  $("messages-empty").hidden = !(state.loaded && items.length === 0);
  renderReceipts();
  if (scroll === "bottom" || (scroll === "auto" && nearBottom)) box.scrollTop = box.scrollHeight;
  else if (scroll === "auto" && items.at(-1)?.senderId !== S.me.id) showJump(true);
}

function messageElement(m, key) {
  const mine = m.senderId === S.me.id;
  const text = h("p", { class: "msg-text" }, m.content);
  const el = h(
    "li",
    { class: `msg ${mine ? "mine" : "theirs"}`, dataset: { key, sender: m.senderId }, hue: hue(m.senderId) },
    mine ? null : avatar(m.senderId, m.senderId, { size: "sm" }),
    h(
      "div",
      { class: "bubble" },
      mine ? null : h("span", { class: "sender" }, m.senderId),
      text,
      h(
        "span",
        { class: "msg-foot" },
        h("time", { datetime: m.createdAt, title: new Date(m.createdAt).toLocaleString() }, formatTime(m.createdAt)),
        mine ? h("span", { class: "receipt" }) : null,
      ),
    ),
  );
  return el;
}

function updateMessageElement(el, m) {
  if (m.id) el.dataset.id = m.id;
  el.classList.toggle("pending", !!m.pending && !m.failed);
  el.classList.toggle("failed", !!m.failed);
  const old = el.querySelector(".msg-error");
  if (m.failed && !old) {
    el.querySelector(".bubble").after(
      h(
        "div",
        { class: "msg-error", role: "alert" },
        icon("alert", 14),
        h("span", {}, `Not sent: ${m.failed}`),
        h("button", { type: "button", class: "link", onclick: () => retrySend(m) }, "Retry"),
      ),
    );
  } else if (!m.failed && old) old.remove();
}

/** Ticks on my messages: sending (clock), sent (one check), read (two checks); words on the newest. */
function renderReceipts() {
  const roomId = S.current;
  const entry = S.rooms.get(roomId);
  if (!entry) return;
  const reads = S.reads.get(roomId) ?? new Map();
  const readers = (id) =>
    others(entry.room).filter((u) => (reads.get(u) ?? "") >= id);
  const mineEls = [...$("message-list").querySelectorAll(".msg.mine")];
  const newestMine = mineEls.at(-1);
  for (const el of mineEls) {
    const receipt = el.querySelector(".receipt");
    const id = el.dataset.id;
    let status, label;
    if (el.classList.contains("failed")) [status, label] = ["failed", "Not sent"];
    else if (!id) [status, label] = ["sending", "Sending"];
    else {
      const who = readers(id);
      if (who.length) [status, label] = ["read", entry.room.type === "direct" ? "Read" : `Read by ${listing(who)}`];
      else [status, label] = ["sent", "Sent"];
    }
    if (receipt.dataset.status === status && receipt.dataset.label === label && receipt.dataset.newest === String(el === newestMine)) continue;
    receipt.dataset.status = status;
    receipt.dataset.label = label;
    receipt.dataset.newest = String(el === newestMine);
    const glyph = { sending: "clock", sent: "check", read: "checks", failed: "alert" }[status];
    // Failed sends explain themselves below the bubble; the others name their state on the newest.
    const text = el === newestMine && status !== "failed";
    setChildren(receipt, icon(glyph, 14), h("span", { class: text ? "receipt-text" : "sr-only" }, label));
  }
}

async function loadOlder() {
  const roomId = S.current;
  const state = S.messages.get(roomId);
  const first = state?.list[0];
  if (!first) return;
  const button = $("load-older");
  button.disabled = true;
  button.textContent = "Loading…";
  const box = $("messages");
  const before = box.scrollHeight - box.scrollTop;
  const res = await S.conn.call("getMessages", { roomId, before: first.id, limit: PAGE });
  button.disabled = false;
  button.textContent = "Load older messages";
  if (!res.ok) return toast(`Could not load older messages: ${res.error.message}`, "error");
  mergeMessages(roomId, res.data.messages);
  state.hasMore = res.data.hasMore;
  if (S.current !== roomId) return;
  renderMessages({ scroll: "none" });
  box.scrollTop = box.scrollHeight - before; // keep the reader's place
  if (!state.hasMore) $("messages").focus();
}

async function send(content, clientMessageId = uuid()) {
  const roomId = S.current;
  const state = S.messages.get(roomId);
  if (!state) return;
  let pending = state.pending.find((p) => p.clientMessageId === clientMessageId);
  if (!pending) {
    pending = { roomId, senderId: S.me.id, content, clientMessageId, createdAt: new Date().toISOString(), pending: true };
    state.pending.push(pending);
  }
  pending.failed = null;
  typingSentAt = 0; // the server ends our typing with the message
  renderMessages({ scroll: "bottom" });
  const res = await S.conn.call("sendMessage", { roomId, content, clientMessageId });
  if (res.ok) {
    mergeMessages(roomId, [res.data.message]);
    noteLastMessage(roomId, res.data.message);
    renderRooms();
  } else {
    pending.failed = res.error.code === "rate_limited" ? "you are sending too fast" : res.error.message;
    if (res.error.code === "rate_limited" && !S.conn.live()) onHttpRateLimited(res.error);
  }
  if (S.current === roomId) renderMessages({ scroll: "bottom" });
}

function retrySend(m) {
  if (S.block) return;
  send(m.content, m.clientMessageId);
}

// ---------------------------------------------------------------------------------------
// Typing

let typingSentAt = 0;
let typingIdle = null;

function onComposerInput() {
  autosize();
  const roomId = S.current;
  if (!roomId || !S.conn.live()) return;
  const now = Date.now();
  const empty = !$("composer-input").value.trim();
  if (!empty && now - typingSentAt > TYPING_REFRESH_MS) {
    typingSentAt = now;
    S.conn.call("typing", { roomId, isTyping: true });
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => stopTyping(roomId), empty ? 0 : TYPING_IDLE_MS);
}

function stopTyping(roomId) {
  clearTimeout(typingIdle);
  if (!typingSentAt) return;
  typingSentAt = 0;
  S.conn.call("typing", { roomId, isTyping: false });
}

function onUserTyping({ roomId, userId, isTyping }) {
  if (userId === S.me.id) return;
  let typers = S.typing.get(roomId);
  if (!typers) S.typing.set(roomId, (typers = new Map()));
  clearTimeout(typers.get(userId));
  if (isTyping) {
    // The server ends a stale `true` itself; this is a guard against a lost `false`.
    typers.set(userId, setTimeout(() => clearTyping(roomId, userId, true), 8000));
  } else {
    typers.delete(userId);
  }
  renderRooms();
  if (roomId === S.current) renderTyping();
}

function clearTyping(roomId, userId, render = false) {
  const typers = S.typing.get(roomId);
  if (!typers?.has(userId)) return;
  clearTimeout(typers.get(userId));
  typers.delete(userId);
  if (render) {
    renderRooms();
    if (roomId === S.current) renderTyping();
  }
}

function renderTyping() {
  const typers = [...(S.typing.get(S.current)?.keys() ?? [])];
  const el = $("typing");
  if (!typers.length) {
    el.replaceChildren();
    el.dataset.active = "false";
    return;
  }
  el.dataset.active = "true";
  setChildren(
    el,
    h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
    `${listing(typers)} ${typers.length > 1 ? "are" : "is"} typing…`,
  );
}

// ---------------------------------------------------------------------------------------
// Presence

async function subscribePresence() {
  if (!S.conn?.live("notifications")) return;
  const wanted = new Set();
  for (const { room } of S.rooms.values()) for (const id of others(room)) wanted.add(id);
  const fresh = [...wanted].filter((id) => !S.subscribed.has(id));
  for (const id of fresh) S.subscribed.add(id);
  for (let i = 0; i < fresh.length; i += 100) {
    const res = await S.conn.call("subscribePresence", { userIds: fresh.slice(i, i + 100) });
    if (!res.ok) {
      for (const id of fresh.slice(i, i + 100)) S.subscribed.delete(id);
      continue;
    }
    for (const u of res.data.users) S.presence.set(u.userId, { online: u.online, lastSeen: u.lastSeen });
  }
  if (fresh.length) renderPresence();
}

function onPresence({ userId, online, lastSeen }) {
  S.presence.set(userId, { online, lastSeen });
  renderPresence();
}

function renderPresence() {
  renderRooms();
  renderHeader();
}

// ---------------------------------------------------------------------------------------
// Notifications

async function loadNotifications() {
  const res = await S.conn.call("getNotifications", { limit: 30 });
  if (!res.ok) return;
  S.notifications = res.data.notifications;
  setNotificationCount(res.data.unreadCount);
  renderNotifications();
}

function onNewNotification(n) {
  if (!S.notifications.some((x) => x.id === n.id)) S.notifications.unshift(n);
  renderNotifications();
  // With the list open the notification is already in view.
  if ($("notif-panel").hidden) toast(n.title, "info", n.body);
}

function setNotificationCount(count) {
  S.notificationCount = count;
  const badge = $("bell-badge");
  badge.hidden = !count;
  badge.textContent = count > 99 ? "99+" : String(count);
  $("bell").setAttribute("aria-label", count ? `Notifications, ${count} unread` : "Notifications");
  $("bell").classList.toggle("ringing", count > 0);
}

function renderNotifications() {
  const list = $("notif-list");
  $("notif-empty").hidden = S.notifications.length > 0;
  $("notif-markall").disabled = !S.notifications.some((n) => !n.read);
  setChildren(
    list,
    S.notifications.map((n) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `notif${n.read ? "" : " is-unread"}`,
            dataset: { id: n.id, type: n.type },
            onclick: () => markNotification(n),
          },
          h("span", { class: "notif-dot", "aria-hidden": "true" }),
          h(
            "span",
            { class: "notif-main" },
            h("span", { class: "notif-title" }, n.title),
            n.body ? h("span", { class: "notif-body" }, n.body) : null,
            h("time", { datetime: n.createdAt }, formatAgo(n.createdAt)),
          ),
          n.read ? null : h("span", { class: "sr-only" }, "(unread)"),
        ),
      ),
    ),
  );
}

async function markNotification(n) {
  if (n.read) return;
  const res = await S.conn.call("markNotificationsRead", { ids: [n.id] });
  if (!res.ok) return;
  n.read = true;
  setNotificationCount(res.data.unreadCount);
  renderNotifications();
}

async function markAllNotifications() {
  const res = await S.conn.call("markNotificationsRead", { all: true });
  if (!res.ok) return toast(`Could not mark notifications: ${res.error.message}`, "error");
  for (const n of S.notifications) n.read = true;
  setNotificationCount(res.data.unreadCount);
  renderNotifications();
}

function toggleNotifications(open = $("notif-panel").hidden) {
  const panel = $("notif-panel");
  panel.hidden = !open;
  $("bell").setAttribute("aria-expanded", String(open));
  if (open) {
    for (const t of $("toasts").querySelectorAll(".toast-info")) t.remove();
    renderNotifications();
    loadNotifications();
    panel.querySelector("h2").focus();
  }
}

// ---------------------------------------------------------------------------------------
// Rate limits

const EVENT_WORDS = {
  sendMessage: "messages",
  typing: "typing updates",
  markMessagesRead: "read receipts",
  markNotificationsRead: "read receipts",
  getOrCreateRoom: "new conversations",
};

function onRateLimitWarning({ event, retryAfterMs, remaining }) {
  const what = EVENT_WORDS[event] ?? "requests";
  const wait = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const more =
    remaining > 0
      ? `${remaining} more and you'll be blocked for a while.`
      : "One more and you'll be blocked for a while.";
  showBanner("warning", `Slow down: too many ${what}.`, `Wait ${wait} s before the next one. ${more}`);
  clearTimeout(S.warning);
  S.warning = setTimeout(() => {
    if (!S.block) hideBanner();
  }, Math.min(Math.max(retryAfterMs, 4000), 15000));
}

function onRateLimitBlocked({ untilMs, reason }) {
  clearTimeout(S.warning);
  clearInterval(S.block?.timer);
  const tick = () => {
    const left = Math.ceil((untilMs - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(S.block?.timer);
      S.block = null;
      hideBanner();
      renderComposerState();
      toast("You can send messages again.", "info");
      return;
    }
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, "0");
    const why = reason ? `${reason[0].toUpperCase()}${reason.slice(1)}.` : "";
    showBanner("blocked", "You're temporarily blocked.", `${why} Try again in ${m}:${s}.`);
  };
  S.block = { untilMs, timer: setInterval(tick, 1000) };
  tick();
  renderComposerState();
}

/** Over HTTP there are no rate-limit events: a 429 with Retry-After says as much. */
function onHttpRateLimited(error) {
  const wait = Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000));
  showBanner("warning", "Slow down: too many messages.", `${error.message}. Try again in ${wait} s.`);
  clearTimeout(S.warning);
  S.warning = setTimeout(() => !S.block && hideBanner(), wait * 1000);
}

function showBanner(kind, title, detail) {
  const el = $("limit-banner");
  el.hidden = false;
  el.dataset.kind = kind;
  setChildren(el, icon(kind === "blocked" ? "ban" : "alert", 18), h("div", {}, h("strong", {}, title), " ", h("span", {}, detail)));
}

function hideBanner() {
  $("limit-banner").hidden = true;
  $("limit-banner").dataset.kind = "";
}

function renderComposerState() {
  const input = $("composer-input");
  const blocked = !!S.block;
  document.body.dataset.blocked = String(blocked);
  input.disabled = blocked;
  $("send").disabled = blocked;
  input.placeholder = blocked
    ? "Sending is paused while you're blocked"
    : S.conn?.state === "fallback"
      ? "Write a message (sent over HTTP)…"
      : "Write a message…";
}

// ---------------------------------------------------------------------------------------
// Toasts, composer, dialogs

function toast(title, kind = "info", body) {
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, h("strong", {}, title), body ? h("span", {}, body) : null);
  $("toasts").append(el);
  setTimeout(() => el.classList.add("leaving"), 4500);
  setTimeout(() => el.remove(), 5000);
}

function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

function showJump(show) {
  $("jump").hidden = !show;
}

function wireApp() {
  $("signout").addEventListener("click", () => signOut());
  $("new-room").addEventListener("click", () => {
    $("nr-error").textContent = "";
    $("new-room-form").reset();
    $("new-room-dialog").showModal();
    $("nr-people").focus();
  });
  $("nr-cancel").addEventListener("click", () => $("new-room-dialog").close());
  $("new-room-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const people = [...new Set($("nr-people").value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean))].filter(
      (id) => id !== S.me.id,
    );
    const name = $("nr-name").value.trim();
    if (!people.length) return void ($("nr-error").textContent = "Add at least one person other than you.");
    const res = await S.conn.call("getOrCreateRoom", { participantIds: people, ...(name ? { name } : {}) });
    if (!res.ok) return void ($("nr-error").textContent = res.error.message);
    $("new-room-dialog").close();
    upsertRoom(res.data.room);
    openRoom(res.data.room.id);
  });

  const input = $("composer-input");
  input.addEventListener("input", onComposerInput);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const content = input.value.trim();
    if (!content || S.block || !S.current) return;
    input.value = "";
    autosize();
    clearTimeout(typingIdle);
    send(content);
  });
  $("load-older").addEventListener("click", loadOlder);
  $("back").addEventListener("click", () => {
    history.pushState(null, "", "#");
    closeRoom();
  });
  $("messages").addEventListener("scroll", () => {
    const box = $("messages");
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 60) showJump(false);
  });
  $("jump").addEventListener("click", () => {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
    showJump(false);
  });
  window.addEventListener("popstate", () => {
    const id = roomFromHash();
    if (id && S.rooms.has(id)) openRoom(id, { focus: false });
    else closeRoom();
  });

  $("bell").addEventListener("click", (e) => {
    e.stopPropagation();
    toggleNotifications();
  });
  $("notif-close").addEventListener("click", () => {
    toggleNotifications(false);
    $("bell").focus();
  });
  $("notif-markall").addEventListener("click", markAllNotifications);
  document.addEventListener("click", (e) => {
    if (!$("notif-panel").hidden && !e.target.closest("#notif-panel")) toggleNotifications(false);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("notif-panel").hidden) {
      toggleNotifications(false);
      $("bell").focus();
    } else if (e.key === "Escape" && $("layout").dataset.view === "room" && !e.target.closest("dialog")) {
      if (matchMedia("(max-width: 759px)").matches) $("back").click();
    }
  });
  // Arrow keys move between conversations in the list.
  $("room-list").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const buttons = [...$("room-list").querySelectorAll(".room")];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    buttons[(i + (e.key === "ArrowDown" ? 1 : buttons.length - 1)) % buttons.length].focus();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && S.current) markRead(S.current);
  });
  // Relative times ("last seen 3 min ago") age while the page is open.
  setInterval(() => {
    renderHeader();
  }, 30000);
}

// ---------------------------------------------------------------------------------------

function main() {
  wireSignIn();
  wireApp();
  const farewell = sessionStorage.getItem("switchyard.signout");
  sessionStorage.removeItem("switchyard.signout");
  const token = localStorage.getItem(TOKEN_KEY);
  const claims = token && decodeToken(token);
  if (claims && !expired(claims)) start(token);
  else showSignIn(farewell || (claims ? "Your session has expired. Sign in again." : ""));
}

main();
