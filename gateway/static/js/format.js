// DOM builders and text formats: no page state; each result depends only on the arguments (and, for dates, the clock
// and the jurisdiction's time zone set once by setTimeZone).
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

const isEpoch = (t) => typeof t === "number" && Number.isFinite(t);

// Every time is shown on the jurisdiction's wall clock (the zone /api/me names, from the gateway's WF_PROFILE),
// never the browser's: a supervisor's laptop set to another zone must read the same times as the floor.
let zone = "UTC";
let partsFormat = wallClock(zone);
let zoneNameFormat = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "short" });

function wallClock(timeZone) {
  const opts = { timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat("en-CA", { ...opts, hourCycle: "h23" });
}

/** Show times in the IANA zone ``name`` from now on; false (and UTC kept) when the browser does not know it. */
export function setTimeZone(name) {
  try {
    partsFormat = wallClock(name);
    zoneNameFormat = new Intl.DateTimeFormat("en-US", { timeZone: name, timeZoneName: "short" });
    zone = name;
    return true;
  } catch (err) {
    return false;
  }
}

/** The zone times are shown in: its IANA name. */
export function timeZone() {
  return zone;
}

/** The zone's short name at ``epoch`` ("EST", "PDT"; "GMT+9" where the browser knows no abbreviation). */
export function zoneAbbreviation(epoch) {
  const d = isEpoch(epoch) ? new Date(epoch * 1000) : new Date();
  const part = zoneNameFormat.formatToParts(d).find((p) => p.type === "timeZoneName");
  return part ? part.value : zone;
}

/** {y, m, d, hh, mm, ss} of ``epoch`` on the jurisdiction's wall clock (strings, zero-padded). */
function wall(epoch) {
  const p = {};
  for (const { type, value } of partsFormat.formatToParts(new Date(epoch * 1000))) p[type] = value;
  return { ymd: `${p.year}-${p.month}-${p.day}`, hh: p.hour === "24" ? "00" : p.hour, mm: p.minute, ss: p.second };
}

const sameDay = (w) => w.ymd === wall(Date.now() / 1000).ymd;

/** "13:05:09" today, "2024-05-01 13:05:09" on another day, "—" for no time (the jurisdiction's time). */
export function fmtTime(epoch) {
  if (!isEpoch(epoch)) return "—";
  const w = wall(epoch);
  const hms = `${w.hh}:${w.mm}:${w.ss}`;
  return sameDay(w) ? hms : `${w.ymd} ${hms}`;
}

/** fmtTime with the zone's abbreviation: "13:05:09 EDT", "2016-01-22 19:56:00 EST"; "—" for no time. */
export function fmtZoned(epoch) {
  return isEpoch(epoch) ? `${fmtTime(epoch)} ${zoneAbbreviation(epoch)}` : "—";
}

/**
 * How long ago ``epoch`` was at ``now`` (epoch seconds), in words: "just now", "12 min ago", "3 h 5 min ago",
 * "2 days ago"; "" beyond a week (a replay's event times: the date shown beside it says when) or in the future.
 */
export function ageText(epoch, now) {
  if (!isEpoch(epoch) || !isEpoch(now)) return "";
  const s = now - epoch;
  if (s < -60 || s > 7 * 86400) return "";
  if (s < 60) return "just now";
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ago`;
  const h = Math.floor(min / 60);
  if (h < 10) return min % 60 ? `${h} h ${min % 60} min ago` : `${h} h ago`;
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

/** "2024-05-01 13:05:09 EDT (America/New_York)": a time in full, for a tooltip. */
export function fullTime(epoch) {
  if (!isEpoch(epoch)) return "";
  const w = wall(epoch);
  return `${w.ymd} ${w.hh}:${w.mm}:${w.ss} ${zoneAbbreviation(epoch)} (${zone})`;
}

/** "13:00–14:00" for a window of ``minutes`` from ``start`` (dated when it is not today); a whole day is its date. */
export function fmtWindow(start, minutes) {
  if (!isEpoch(start) || !isEpoch(minutes)) return "";
  const a = wall(start);
  if (minutes >= 1440) return a.ymd;
  const b = wall(start + minutes * 60);
  const span = `${a.hh}:${a.mm}–${b.hh}:${b.mm}`;
  return sameDay(a) ? span : `${a.ymd} ${span}`;
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

/** "Norristown (882aac95b3fffff)" when the cell's area is known, else the bare id. */
export function cellLabel(cell, area) {
  return area ? `${area} (${cell})` : cell;
}
