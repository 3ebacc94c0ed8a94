// node --test: which cards the feed shows under the selection and the at-a-glance filters (gateway/static/js/state.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { createState, matchesFilter, visibleInFeed } from "../../../gateway/static/js/state.js";

const surge = { kind: "surge", categories: { EMS: 5, TRAFFIC: 2 }, areas: ["Norristown", "Bridgeport"], zones: ["z1"] };
const partnerView = { kind: "surge", categories: ["EMS"], zones: ["z1"] };
const outage = { kind: "feed_outage", categories: {}, zones: [] };

test("category and area filters: any when empty; categories as counts or as a list; areas case-insensitive", () => {
  assert.ok(matchesFilter({ category: "", area: "" }, surge));
  assert.ok(matchesFilter({ category: "EMS", area: "" }, surge));
  assert.ok(!matchesFilter({ category: "FIRE", area: "" }, surge));
  assert.ok(matchesFilter({ category: "EMS", area: "" }, partnerView));
  assert.ok(matchesFilter({ category: "", area: "bridgeport" }, surge));
  assert.ok(!matchesFilter({ category: "", area: "Pottstown" }, surge));
  assert.ok(!matchesFilter({ category: "", area: "Norristown" }, partnerView), "an alert with no named areas is not in an area");
  assert.ok(matchesFilter(undefined, surge));
});

test("the feed: filters and the zone selection both apply; feed outages are always shown", () => {
  const state = createState();
  const entry = (alert) => ({ alert });
  assert.ok(visibleInFeed(state, entry(surge)));
  state.filter = { category: "FIRE", area: "" };
  assert.ok(!visibleInFeed(state, entry(surge)));
  assert.ok(visibleInFeed(state, entry(outage)));
  state.filter = { category: "EMS", area: "" };
  state.selection = { key: "z2", name: "Z2", zones: ["z2"] };
  assert.ok(!visibleInFeed(state, entry(surge)), "outside the chosen zone");
  state.selection = { key: "z1", name: "Z1", zones: ["z1"] };
  assert.ok(visibleInFeed(state, entry(surge)));
});
