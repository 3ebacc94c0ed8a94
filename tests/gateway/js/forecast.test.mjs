// node --test: the next-shift panel's pure parts (gateway/static/js/forecast.js): areas, chart, sentences, monitor, layer, allocation query.
import assert from "node:assert/strict";
import { test } from "node:test";

import { setTimeZone } from "../../../gateway/static/js/format.js";
import {
  allocationQuery,
  bandGeometry,
  bandsSentence,
  chosenArea,
  coverageText,
  flaggedCells,
  forecastAreas,
  horizonText,
  monitorRows,
  shiftSentence,
} from "../../../gateway/static/js/forecast.js";

// 2023-11-14 23:00 in New York (04:00 UTC the next day): a night shift to 07:00
const START = Date.UTC(2023, 10, 15, 4, 0, 0) / 1000;
const F = (start, hours, mean, lo80, hi80, lo95, hi95) => ({ start, end: start + hours * 3600, mean, lo80, hi80, lo95, hi95 });
const hourly = [3, 5, 4].map((m, i) => F(START + i * 3600, 1, m, m - 1, m + 1, m - 2, m + 3));
const set = {
  areas: {
    "h3:862a1072fffffff": { kind: "cell6", name: "near Lansdale", hourly, by_horizon: {} },
    "area:Norristown": { kind: "area", name: "Norristown", hourly, by_horizon: {} },
    jurisdiction: { kind: "jurisdiction", name: "Test County", hourly, by_horizon: {} },
    "area:Abington": { kind: "area", name: "Abington", hourly, by_horizon: {} },
    "h3:872a1072bffffff": { kind: "cell7", name: "near Lansdale", by_horizon: {} },
  },
};

test("the areas offered: the jurisdiction, then named areas, then res-6 cells, by name; res-7 cells have no hours", () => {
  assert.deepEqual(
    forecastAreas(set).map((a) => a.label),
    ["Test County", "Abington", "Norristown", "near Lansdale (862a1072fffffff)"],
  );
  assert.equal(chosenArea(set, null), "jurisdiction");
  assert.equal(chosenArea(set, "area:Abington"), "area:Abington");
  assert.equal(chosenArea(set, "area:Gone"), "jurisdiction");
  assert.equal(chosenArea({ areas: { "area:A": set.areas["area:Abington"] } }, null), "area:A", "a commander's set has no jurisdiction");
  assert.equal(chosenArea({ areas: {} }, null), null);
});

test("the chart: the mean at each hour's middle, the bands from high down to low, scaled to the highest 95 % bound", () => {
  const g = bandGeometry(hourly, 300, 80);
  assert.equal(g.n, 3);
  assert.equal(g.max, 8); // 5 + 3
  assert.equal(g.mean, "50.0,50.0 150.0,30.0 250.0,40.0");
  assert.equal(g.band80, "50.0,40.0 150.0,20.0 250.0,30.0 250.0,50.0 150.0,40.0 50.0,60.0");
  assert.ok(g.band95.startsWith("50.0,20.0 "));
  assert.deepEqual(bandGeometry([], 300, 80), { mean: "", band80: "", band95: "", max: 0, n: 0 });
});

test("the shift in words, on the jurisdiction's clock", () => {
  assert.ok(setTimeZone("America/New_York"));
  const shift = F(START, 8, 119.6, 105, 136, 98, 144);
  assert.equal(shiftSentence(shift), "About 120 calls expected 2023-11-14 23:00–07:00, likely 105–136.");
  assert.equal(bandsSentence(shift), "8 times in 10 between 105 and 136; 19 times in 20 between 98 and 144.");
  assert.equal(shiftSentence(F(START, 8, 0.7, 0, 2, 0, 3)), "About 1 call expected 2023-11-14 23:00–07:00, likely 0–2.");
  assert.equal(shiftSentence(undefined), "No forecast for this area.");
  setTimeZone("UTC");
});

test("the monitor's rows: the jurisdiction first, then finer levels, each horizon in order", () => {
  const rows = monitorRows({
    "cell7|8": { n: 3, mae: 0.4, coverage80: 0.9 },
    "jurisdiction|24": { n: 2, mae: 30.2 },
    "jurisdiction|8": { n: 12, mae: 14.1, coverage80: 0.83, coverage95: 0.95 },
    "cell6|1": { n: 40, mae: 0.9 },
  });
  assert.deepEqual(
    rows.map((r) => [r.label, r.horizon]),
    [["the jurisdiction", 8], ["the jurisdiction", 24], ["res-6 areas", 1], ["res-7 cells", 8]],
  );
  assert.equal(horizonText(1), "next hour");
  assert.equal(horizonText(8), "next 8 h");
  assert.equal(coverageText(0.834, 80), "83 % (aim 80 %)");
  assert.equal(coverageText(undefined, 95), "—");
  assert.deepEqual(monitorRows(undefined), []);
});

test("the flagged hot spots: by the gateway's flagged list, else by rank within the share's count", () => {
  const hot = { flagged: { "0.005": 1, "0.01": 2 }, cells: [{ cell: "a", rank: 1 }, { cell: "b", rank: 2 }, { cell: "c", rank: 3 }] };
  assert.deepEqual(flaggedCells(hot, "0.005").map((c) => c.cell), ["a"]);
  assert.deepEqual(flaggedCells(hot, "0.01").map((c) => c.cell), ["a", "b"]);
  const listed = { cells: [{ cell: "x", rank: 1, flagged: ["0.01"] }] };
  assert.deepEqual(flaggedCells(listed, "0.005"), []);
  assert.deepEqual(flaggedCells(undefined, "0.01"), []);
});

test("the allocation's query: whole numbers only, floor and cap optional, each refusal saying what is wanted", () => {
  assert.deepEqual(allocationQuery("12", "", ""), { query: "?units=12" });
  assert.deepEqual(allocationQuery(" 12 ", "1", "15"), { query: "?units=12&floor=1&cap=15" });
  assert.match(allocationQuery("twelve", "", "").error, /units on the next shift as a whole number/);
  assert.match(allocationQuery("12", "-1", "").error, /floor is a whole number/);
  assert.match(allocationQuery("12", "", "0").error, /cap is 1 to 100 percentage points/);
});
