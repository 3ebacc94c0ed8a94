// node --test: the dashboard's data clock (gateway/static/js/clock.js), run by tests/gateway/test_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LIVE_LAG_S, describeClock, emptyClock, liveLagFor, observe } from "../../../gateway/static/js/clock.js";
import { setTimeZone } from "../../../gateway/static/js/format.js";

setTimeZone("America/Chicago");
// 2016-01-22 19:37:00 EST = 18:37 CST
const BLIZZARD = Date.UTC(2016, 0, 23, 0, 37) / 1000;

test("no data: says so", () => {
  assert.deepEqual(describeClock(emptyClock(), 1e9), { kind: "none", text: "No data received yet" });
});

test("fresh data is live and says when it was received, in the jurisdiction's zone", () => {
  const now = Date.now() / 1000;
  const c = observe(emptyClock(), now - 120, now);
  const d = describeClock(c, now);
  assert.equal(d.kind, "live");
  assert.match(d.text, /^Last data received \d\d:\d\d:\d\d C[SD]T \(2 min ago\)$/);
});

test("old data that moves is a replay, with its event time and zone", () => {
  const now = Date.now() / 1000;
  let c = observe(emptyClock(), BLIZZARD, now - 5);
  assert.equal(describeClock(c, now).kind, "stale", "one old time alone is not yet a replay");
  c = observe(c, BLIZZARD + 900, now - 2);
  assert.deepEqual(describeClock(c, now), { kind: "replay", text: "Replaying past calls · event time 2016-01-22 18:52:00 CST" });
  // an older time arriving late moves nothing
  assert.equal(observe(c, BLIZZARD, now), c);
  // the replay ended: the time stops moving, and once the live lag has passed the page says data stopped
  const later = now + LIVE_LAG_S + 1;
  assert.deepEqual(describeClock(c, later), { kind: "stale", text: "No new data since 2016-01-22 18:52:00 CST" });
});

test("a live feed that goes quiet is stale, with how long ago", () => {
  const now = Date.now() / 1000;
  const c = observe(observe(emptyClock(), now - 3700, now - 3700), now - 3600, now - 3600);
  const d = describeClock(c, now);
  assert.equal(d.kind, "stale");
  assert.match(d.text, /^No new data since \d\d:\d\d:\d\d C[SD]T \(1 h ago\)$|^No new data since \d{4}-\d\d-\d\d /);
});

test("partners' released windows lag by up to two windows more and are still live", () => {
  assert.equal(liveLagFor(false, 60), LIVE_LAG_S);
  assert.equal(liveLagFor(true, 60), LIVE_LAG_S + 7200);
  assert.equal(liveLagFor(true, undefined), LIVE_LAG_S);
  const now = 1e9;
  const c = observe(observe(emptyClock(), now - 5400, now - 3600), now - 5000, now - 60);
  assert.equal(describeClock(c, now, liveLagFor(false, 60)).kind, "replay");
  assert.equal(describeClock(c, now, liveLagFor(true, 60)).kind, "live");
});

test("times that are not numbers are ignored", () => {
  const c = emptyClock();
  for (const bad of [null, undefined, "1700000000", Number.NaN, Infinity]) assert.equal(observe(c, bad, 1e9), c);
});
