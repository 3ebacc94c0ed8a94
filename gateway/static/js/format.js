// DOM builders and text formats: no page state; each result depends only on the arguments (and the clock for dates).
//
// The server's Content-Security-Policy allows no inline script and no style attributes: nodes are built
// with createElement/textContent here (never innerHTML), and presentation is by class (style.css).

export const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** An HTML element; attributes that are null, undefined or false are left out, true gives an empty one. */
export function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== null) node.textContent = text;
  return node;
}

/** An SVG element; attributes that are null or undefined are left out. */
export function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  if (text !== null) node.textContent = text;
  return node;
}

const pad2 = (n) => String(n).padStart(2, "0");
const isEpoch = (t) => typeof t === "number" && Number.isFinite(t);
const sameDay = (d) => d.toDateString() === new Date().toDateString();
const ymd = (d) => `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;

/** "13:05:09" today, "2024-05-01 13:05:09" on another day, "—" for no time (local time). */
export function fmtTime(epoch) {
  if (!isEpoch(epoch)) return "—";
  const d = new Date(epoch * 1000);
  const hms = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return sameDay(d) ? hms : `${ymd(d)} ${hms}`;
}

/** "13:00–14:00" for a window of ``minutes`` from ``start`` (dated when it is not today); a whole day is its date. */
export function fmtWindow(start, minutes) {
  if (!isEpoch(start) || !isEpoch(minutes)) return "";
  const a = new Date(start * 1000);
  if (minutes >= 1440) return ymd(a);
  const b = new Date((start + minutes * 60) * 1000);
  const span = `${pad2(a.getHours())}:${pad2(a.getMinutes())}–${pad2(b.getHours())}:${pad2(b.getMinutes())}`;
  return sameDay(a) ? span : `${ymd(a)} ${span}`;
}

export function isoTime(epoch) {
  return isEpoch(epoch) ? new Date(epoch * 1000).toISOString() : "";
}

export function fmtNumber(x, digits = 1) {
  return isEpoch(x) ? x.toFixed(digits) : "—";
}

/** "1 call", "12 calls". */
export function calls(n) {
  return `${n} call${n === 1 ? "" : "s"}`;
}

/** A window length in words: "hour", "day", "15 minutes". */
export function periodWord(minutes) {
  return { 60: "hour", 1440: "day" }[minutes] || `${minutes} minutes`;
}

/** "zone surge" for "zone_surge". */
export function kindText(kind) {
  return String(kind || "").replaceAll("_", " ");
}
