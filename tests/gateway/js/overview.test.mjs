// node --test: the at-a-glance tiles' words and the chart's geometry (gateway/static/js/overview.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { chartGeometry, comparedToUsual, medianText, windowText } from "../../../gateway/static/js/overview.js";

test("calls against the usual, in words", () => {
  assert.equal(comparedToUsual(94, 46), "about twice the usual");
  assert.equal(comparedToUsual(30, 10), "about three times the usual");
  assert.equal(comparedToUsual(80, 10), "about 8 times the usual");
  assert.equal(comparedToUsual(16, 10), "half again the usual");
  assert.equal(comparedToUsual(12, 10), "about the usual");
  assert.equal(comparedToUsual(7, 10), "about the usual");
  assert.equal(comparedToUsual(6, 10), "below the usual");
  assert.equal(comparedToUsual(4, 0.2), "4 where almost none are usual");
  assert.equal(comparedToUsual(1, 0.2), "about the usual");
  assert.equal(comparedToUsual(5, null), "no usual yet");
  assert.equal(comparedToUsual(null, 3), "no usual yet");
});

test("windows and medians read as words", () => {
  assert.deepEqual([15, 60, 1440].map(windowText), ["15 min", "1 h", "24 h"]);
  assert.equal(medianText({ n: 4, median: "<= 300 s" }), "≤ 300 s");
  assert.equal(medianText({ n: 2, median: "> 3600 s" }), "over 3600 s");
  assert.equal(medianText({ n: 0, median: "-" }), "—");
  assert.equal(medianText(undefined), "—");
});

test("the chart: calls and usual as lines, the band from high down to low, scaled to the highest value", () => {
  const bins = [
    { start: 0, calls: 2, usual: 1, low: 0, high: 2 },
    { start: 900, calls: 4, usual: 2, low: 1, high: 3 },
    { start: 1800, calls: 0, usual: null, low: null, high: null },
  ];
  const g = chartGeometry(bins, 100, 40);
  assert.equal(g.max, 4);
  assert.equal(g.calls, "0.0,20.0 50.0,0.0 100.0,40.0");
  assert.equal(g.usual, "0.0,30.0 50.0,20.0");
  assert.equal(g.band, "0.0,20.0 50.0,10.0 50.0,30.0 0.0,40.0");
  assert.deepEqual(chartGeometry([], 100, 40), { calls: "", usual: "", band: "", max: 0 });
  assert.equal(chartGeometry([{ start: 0, calls: 0, usual: null }], 100, 40).max, 1, "an empty day still has an axis");
});
