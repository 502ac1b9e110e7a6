// Small DOM and formatting helpers shared by the app. No framework: elements are built with
// `h()` and text always goes through text nodes, never HTML.

/** Creates an element: `h("button", { class: "x", onclick }, "text", child)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "hue") el.style.setProperty("--hue", String(value));
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Inline SVG icons (paths drawn on a 24×24 grid, stroked with currentColor). */
const ICONS = {
  bell: "M6 8a6 6 0 1 1 12 0c0 7 3 9 3 9H3s3-2 3-9M10.3 21a1.94 1.94 0 0 0 3.4 0",
  send: "M22 2 11 13M22 2l-7 20-4-9-9-4Z",
  back: "m15 18-6-6 6-6",
  plus: "M12 5v14M5 12h14",
  close: "M18 6 6 18M6 6l12 12",
  check: "M20 6 9 17l-5-5",
  checks: "M18 6 7 17l-5-5M22 10l-7.5 7.5L13 16",
  clock: "M12 6v6l4 2M22 12a10 10 0 1 1-20 0 10 10 0 0 1 20 0",
  alert: "M12 9v4M12 17h.01M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0",
  ban: "M4.9 4.9l14.2 14.2M22 12a10 10 0 1 1-20 0 10 10 0 0 1 20 0",
  users: "M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8M22 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8",
  logout: "M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9",
};

/** An icon, hidden from assistive technology (its button carries the label). */
export function icon(name, size = 20) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon icon-${name}`);
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

/** A stable hue (0..359) for a user or room id, so avatars keep their colour everywhere. */
export function hue(id) {
  let x = 0;
  for (const ch of String(id)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

/** One or two letters for an avatar. */
export function initials(label) {
  const words = String(label).replace(/[-_.]+/g, " ").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return "?";
  const letters = words.length > 1 ? words[0][0] + words[1][0] : [...words[0]].slice(0, 2).join("");
  return letters.toUpperCase();
}

/** A round avatar with initials; `presenceFor` adds a presence dot for that user. */
export function avatar(id, label, { size = "md", group = false, presence } = {}) {
  const el = h("span", { class: `avatar avatar-${size}${group ? " avatar-group" : ""}`, hue: hue(id), "aria-hidden": "true" });
  if (group) el.append(icon("users", size === "sm" ? 14 : 18));
  else el.append(initials(label));
  if (presence) el.append(presence);
  return el;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const shortDayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

export const formatTime = (iso) => timeFmt.format(new Date(iso));

/** `YYYY-MM-DD` of a time in the local zone, for grouping by day. */
export function dayKey(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** "Today", "Yesterday" or a date. */
export function formatDay(iso) {
  const key = dayKey(iso);
  const today = new Date();
  if (key === dayKey(today.toISOString())) return "Today";
  const yesterday = new Date(today.getTime() - 86400000);
  if (key === dayKey(yesterday.toISOString())) return "Yesterday";
  return dayFmt.format(new Date(iso));
}

/** Short time for lists: the time today, else the date. */
export function formatShort(iso) {
  if (!iso) return "";
  return dayKey(iso) === dayKey(new Date().toISOString()) ? formatTime(iso) : shortDayFmt.format(new Date(iso));
}

/** "just now", "5 min ago", "3 h ago", or a date. */
export function formatAgo(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return shortDayFmt.format(new Date(iso));
}

/** A UUID v4 (crypto.randomUUID exists only in secure contexts; plain http hosts are not). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** English list: "a", "a and b", "a, b and c". */
export function listing(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}
