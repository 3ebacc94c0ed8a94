// node --test: a partner's released numbers and the rules that withhold them (gateway/static/js/released.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { describeTotal, unitTotal, withheldRules } from "../../../gateway/static/js/released.js";

test("a unit's total: exact, at least, or withheld", () => {
  assert.deepEqual(unitTotal({ all: 5 }), { atLeast: 5, exact: 5 });
  assert.deepEqual(unitTotal({ EMS: 4, OTHER: null }), { atLeast: 4, exact: null });
  assert.equal(unitTotal(null), null);
  assert.equal(describeTotal({ all: 5 }, 3), "5 calls");
  assert.equal(describeTotal({ EMS: 4, OTHER: null }, 3), "at least 4 calls");
  assert.equal(describeTotal({ all: null }, 3), "fewer than 3");
  assert.equal(describeTotal({ EMS: null, OTHER: null }, 3), "fewer than 3 in each group");
});

test("every rule of a counts agreement is said, with its own k, window, groups and history", () => {
  const rules = withheldRules({ k: 5, window_min: 60, shares: ["alerts", "counts", "history"], groups: { EMS: ["EMS"], OTHER: ["FIRE"] }, history_h: 24 });
  assert.equal(rules.length, 5);
  assert.match(rules[0], /calls per hour, shown once the hour has ended/);
  assert.match(rules[1], /below 5 reads "fewer than 5"/);
  assert.match(rules[2], /counted as EMS, OTHER; when one group is below 5/);
  assert.match(rules[3], /look back 24 hours/);
  assert.match(rules[3], /"What to expect at your places" is made from them alone/);
  assert.match(rules[4], /only the categories with 5 or more calls/);
  assert.match(rules[4], /Caller details/);
});

test("an alerts-only agreement says it shares no counts, and nothing about numbers", () => {
  const rules = withheldRules({ k: 3, window_min: 1440, shares: ["alerts"], groups: {}, history_h: 0 });
  assert.deepEqual(rules.length, 2);
  assert.match(rules[0], /shares no counts/);
  assert.ok(!rules.some((r) => r.includes("fewer than")));
  assert.deepEqual(withheldRules(null), []);
});
