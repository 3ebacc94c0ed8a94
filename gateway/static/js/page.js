// The page's chrome: who is logged in, the connection state, messages, and the login box or the board.

import { $, el, fmtTime, timeZone, zoneAbbreviation } from "./format.js";

const MESSAGE_MS = 15000;
let messageTimer = null; // the one message box has one timer

export function showMessage(text, kind = "info") {
  const box = $("#messages");
  box.textContent = text;
  box.dataset.kind = kind;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => {
    box.textContent = "";
    delete box.dataset.kind;
  }, MESSAGE_MS);
}

/** ``kind``: idle, connecting, live, reconnecting or refused (style.css colours each). */
export function setConn(kind, text) {
  const box = $("#conn-state");
  box.dataset.state = kind;
  box.textContent = text;
}

/**
 * The header's line on the gateway (js/failover.js ``describeGateway``: which one, and that the page moved to it),
 * or hidden (null: one gateway, never moved). ``data-gateway`` holds its index, ``data-moved-at`` the time of a move.
 */
export function setGateway(desc, index) {
  const box = $("#gateway");
  box.hidden = desc === null;
  if (desc === null) return;
  box.textContent = desc.text;
  box.dataset.gateway = String(index);
  box.dataset.moved = String(desc.moved);
  if (desc.moved) box.dataset.movedAt = String(Date.now());
}

/**
 * The header's word on the data (js/clock.js ``describeClock``): its text beside the connection state, and while
 * connected, "Replay" in place of "Live" when the data is a replay of past calls.
 */
export function setDataClock(clock) {
  const box = $("#data-clock");
  box.hidden = false;
  box.dataset.kind = clock.kind;
  box.textContent = clock.text;
  const conn = $("#conn-state");
  conn.dataset.clock = clock.kind;
  if (conn.dataset.state === "live") conn.textContent = clock.kind === "replay" ? "Replay" : "Live";
}

/** The "Doors in" line under the data clock (js/doors.js's description, or null: hidden). */
export function setDoors(doors) {
  const box = $("#doors");
  box.hidden = doors === null;
  if (doors === null) return;
  box.dataset.kind = doors.kind;
  $("#doors-text").textContent = doors.text;
  const list = $("#doors-list");
  list.textContent = "";
  for (const sentence of doors.details) {
    const li = document.createElement("li");
    li.textContent = sentence;
    list.append(li);
  }
}

export function setWho(claims) {
  const who = $("#who");
  who.textContent = "";
  who.append(
    el("span", { class: "role", "data-role": claims.role }, claims.role),
    " ",
    el("span", { class: "subject" }, claims.subject),
    " · ",
    el("span", { class: "agency" }, claims.agency),
  );
  if (claims.expires_at) who.append(" · ", el("span", { class: "expires" }, `token until ${fmtTime(claims.expires_at)}`));
}

/** The header's note of the clock every time is read on: the jurisdiction's zone, not the browser's. */
export function setClockZone(jurisdiction) {
  const box = $("#clock-zone");
  box.textContent = "";
  const where = jurisdiction && jurisdiction.name ? `${jurisdiction.name} ` : "";
  box.append(`${where}times: `, el("span", { class: "zone-name" }, timeZone()), ` (${zoneAbbreviation()})`);
  box.hidden = false;
}

export function showLogin(message) {
  $("#board").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#print-view").hidden = true;
  $("#who").textContent = "Not logged in";
  $("#login-error").textContent = message || "";
}

/** Show the board for ``role``; partners get their own layout rules (body[data-view="partner"]). */
export function showBoard(role, partner) {
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#logout").hidden = false;
  $("#print-view").hidden = false;
  document.body.dataset.role = role;
  document.body.dataset.view = partner ? "partner" : "precise";
}
