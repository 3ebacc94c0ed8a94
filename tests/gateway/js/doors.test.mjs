// node --test: the "Doors in" line (gateway/static/js/doors.js), run by tests/gateway/test_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { describeDoors } from "../../../gateway/static/js/doors.js";

const door = (kind, name, health) => ({ kind, name, health, sentence: `${name} is ${health}.` });

test("no live door (a file replay): nothing to say", () => {
  assert.equal(describeDoors([]), null);
  assert.equal(describeDoors(undefined), null);
});

test("a stalled poller is named as broken, before the working doors, whatever the others say", () => {
  const d = describeDoors([door("http", "county-cad", "ok"), door("poll", "seattle", "stalled")]);
  assert.equal(d.kind, "broken");
  assert.equal(d.text, "Doors in: poller seattle stalled: calls through it are not arriving");
  assert.deepEqual(d.details, ["seattle is stalled.", "county-cad is ok."]);
});

test("a silent CAD source and a failing poller are both broken", () => {
  const d = describeDoors([door("http", "cad", "silent"), door("poll", "soda", "failing")]);
  assert.equal(d.kind, "broken");
  assert.match(d.text, /CAD source cad silent, poller soda failing: calls through them are not arriving/);
});

test("a quiet city is told from a broken door: every door works and finds nothing new", () => {
  const d = describeDoors([door("poll", "seattle", "quiet")]);
  assert.equal(d.kind, "quiet");
  assert.equal(d.text, "Doors in: the door works, no new calls (a quiet time, not a broken feed)");
  assert.equal(describeDoors([door("poll", "a", "quiet"), door("http", "b", "ok")]).text, "Doors in: all 2 work, 1 quiet");
});

test("working doors say so", () => {
  assert.deepEqual(describeDoors([door("poll", "a", "ok"), door("http", "b", "ok")]), {
    kind: "ok",
    text: "Doors in: all 2 work",
    details: ["a is ok.", "b is ok."],
  });
});
