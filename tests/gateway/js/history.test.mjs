// node --test: the history panel's query and timeline (gateway/static/js/history.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_PERIOD_H, HISTORY_LIMIT, historySearch, recordLines, recordsPath, timelineBars } from "../../../gateway/static/js/history.js";

const END = 1453509420; // 2016-01-23 00:37 UTC: a replay's event time, not the wall clock

test("the period ends at the given event time (rounded up to the minute) and empty filters are left out", () => {
  const { path, since, until } = historySearch({ hours: "6", state: "closed", kind: "", category: " ", area: "", q: "" }, END - 30, true);
  assert.equal(until, END);
  assert.equal(since, END - 6 * 3600);
  const q = new URL(path, "http://x").searchParams;
  assert.equal(new URL(path, "http://x").pathname, "/api/alerts");
  assert.deepEqual(Object.fromEntries(q), { state: "closed", since: String(since), until: String(END), limit: String(HISTORY_LIMIT) });
});

test("filters are passed trimmed; area only where the role sees areas; an unknown period is the default", () => {
  const f = { hours: "999", state: "", kind: "surge", category: "EMS", area: " Norristown ", q: " snow & ice " };
  const precise = new URL(historySearch(f, END, true).path, "http://x").searchParams;
  assert.equal(precise.get("state"), "all");
  assert.equal(precise.get("area"), "Norristown");
  assert.equal(precise.get("q"), "snow & ice");
  assert.equal(precise.get("kind"), "surge");
  assert.equal(precise.get("category"), "EMS");
  assert.equal(Number(precise.get("until")) - Number(precise.get("since")), DEFAULT_PERIOD_H * 3600);
  const partner = new URL(historySearch(f, END, false).path, "http://x").searchParams;
  assert.equal(partner.get("area"), null, "a partner's search never names an area");
  assert.equal(partner.get("q"), "snow & ice");
});

test("timeline bars: clipped to the period, overlapping alerts in separate lanes, a reused lane once free", () => {
  const since = 0;
  const until = 1000;
  const alerts = [
    { id: "a", started_at: -500, at: 300, severity: "high" }, // starts before the period: clipped at 0
    { id: "b", started_at: 200, at: 600, severity: "medium" }, // overlaps a: lane 1
    { id: "c", started_at: 400, at: 450 }, // a is over: lane 0 again
    { id: "d", started_at: 1200, at: 1300 }, // after the period: left out
    { id: "e", at: 990 }, // no start: a short bar at its time
    { id: "f", started_at: 100, at: "x" }, // no time: left out
  ];
  const { bars, lanes } = timelineBars(alerts, since, until);
  const by = Object.fromEntries(bars.map((b) => [b.id, b]));
  assert.deepEqual(Object.keys(by).sort(), ["a", "b", "c", "e"]);
  assert.deepEqual([by.a.x0, by.a.x1, by.a.lane, by.a.severity], [0, 0.3, 0, "high"]);
  assert.deepEqual([by.b.lane, by.c.lane], [1, 0]);
  assert.equal(by.c.severity, "low");
  assert.ok(by.e.x1 > by.e.x0, "a point in time still gets a visible bar");
  assert.equal(lanes, 2);
  assert.deepEqual(timelineBars(alerts, 5, 5), { bars: [], lanes: 0 });
});

test("an alert's page is asked for by its id, URL-encoded (a detector's id holds ':')", () => {
  assert.equal(recordsPath("surge:882aac959ffffff:1700000000"), "/api/alerts/surge%3A882aac959ffffff%3A1700000000/records");
  assert.equal(recordsPath("a-7fb733435fa083dd609ce08d"), "/api/alerts/a-7fb733435fa083dd609ce08d/records");
  assert.equal(recordsPath("x/../audit"), "/api/alerts/x%2F..%2Faudit/records");
});

test("what happened, for a supervisor: opened, updated with the calls, acknowledged by whom with the note, ended", () => {
  const alert = (state, observed, at, severity = "medium") => ({ type: "alert", at, alert: { state, observed, window_min: 15, severity } });
  const records = [
    alert("open", 12, 100),
    alert("update", 15, 160),
    { type: "action", at: 170.5, action: { action: "ack", by: "sup-anna", agency: "Montgomery County 911", note: "Engine 12 en route" } },
    alert("update", 25, 220, "high"),
    { type: "action", at: 230, action: { action: "resolve", by: "sup-ben", note: "" } },
    alert("closed", 25, 300, "high"),
    { type: "mystery", at: 400 },
  ];
  assert.deepEqual(recordLines(records, false), [
    { at: 100, text: "Opened: 12 calls in 15 min, severity medium" },
    { at: 160, text: "Updated: 15 calls in 15 min, severity medium" },
    { at: 170.5, text: "Acknowledged by sup-anna (Montgomery County 911): “Engine 12 en route”" },
    { at: 220, text: "Updated: 25 calls in 15 min, severity high" },
    { at: 230, text: "Resolved by sup-ben" },
    { at: 300, text: "Ended: 25 calls in 15 min, severity high" },
  ]);
  // the open no longer kept: the first record is an update, and says so
  assert.equal(recordLines([alert("update", 30, 500)], false)[0].text, "Updated: 30 calls in 15 min, severity medium");
});

test("what happened, for a partner: no counts, no who, no note, whatever the answer holds", () => {
  const records = [
    { type: "alert", at: 60, alert: { state: "open", severity: "medium", observed: 12 } },
    { type: "alert", at: 120, alert: { state: "open", severity: "high" } }, // a partner's view says open for an update
    { type: "action", at: 180, action: { action: "ack", by: "sup-anna", note: "caller at 123 Main St" } },
    { type: "alert", at: 240, alert: { state: "closed", severity: "high" } },
  ];
  const lines = recordLines(records, true);
  assert.deepEqual(lines.map((l) => l.text), ["Opened: severity medium", "Updated: severity high", "Acknowledged", "Ended: severity high"]);
  assert.deepEqual(lines.map((l) => l.at), [60, 120, 180, 240]);
  assert.deepEqual(recordLines(undefined, true), []);
  assert.deepEqual(recordLines([{ type: "alert", at: "soon", alert: { state: "open" } }], true), [{ at: null, text: "Opened" }]);
});
