// node --test: a partner's "What to expect at your places" (gateway/static/js/partnerforecast.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { setTimeZone } from "../../../gateway/static/js/format.js";
import { basisNote, expectRows, rangeText, spreadText } from "../../../gateway/static/js/partnerforecast.js";

// as gateway/partnerforecast.py answers: Lansdale station's next two hours, from 7 previous days, k = 3
const VIEW = {
  basis: "released",
  window_min: 60,
  k: 3,
  horizon_h: 8,
  after: 1733400000,
  same_weekday: false,
  days: ["2024-11-28", "2024-11-29", "2024-11-30", "2024-12-01", "2024-12-02", "2024-12-03", "2024-12-04"],
  text: "What to expect in each hour of the next 8 hours: ...",
  units: [
    {
      id: "septa-lansdale",
      name: "Lansdale station",
      zones: ["septa-lansdale"],
      windows: [
        { start: 1733400000, end: 1733403600, low: 3, high: 5, least: 0, most: 9, days: [], text: "usually 3-5 calls between 07:00 and 08:00, from the counts released to you on the previous 7 days" },
        { start: 1733403600, end: 1733407200, low: 0, high: 2, least: 0, most: 2, days: [], text: "usually fewer than 3 calls between 08:00 and 09:00, from the counts released to you on the previous 7 days" },
        { start: 1733407200, end: 1733410800, low: null, high: null, least: null, most: null, days: [], text: "between 09:00 and 10:00: no released numbers for this time on previous days" },
      ],
    },
  ],
};

test("a window's range in whole calls: a span, one number, fewer than k, or nothing yet", () => {
  assert.equal(rangeText({ low: 3, high: 5 }, 3), "3–5 calls");
  assert.equal(rangeText({ low: 4, high: 4 }, 3), "4 calls");
  assert.equal(rangeText({ low: 1, high: 1 }, 2), "fewer than 2");
  assert.equal(rangeText({ low: 0, high: 2 }, 3), "fewer than 3");
  assert.equal(rangeText({ low: 0, high: 4 }, 3), "0–4 calls");
  assert.equal(rangeText({ low: null, high: null }, 3), "no numbers yet");
  assert.equal(rangeText(undefined, 3), "no numbers yet");
  assert.equal(spreadText({ least: 0, most: 9 }), "On those days: between 0 and 9.");
  assert.equal(spreadText({ least: 4, most: 4 }), "On those days: 4 calls each time.");
  assert.equal(spreadText({ least: null, most: null }), "");
});

test("each place lists its next windows on the jurisdiction's clock, with the server's sentence as the detail", () => {
  assert.ok(setTimeZone("America/New_York"));
  const [place] = expectRows(VIEW);
  assert.equal(place.name, "Lansdale station");
  assert.deepEqual(
    place.windows.map((w) => [w.when.slice(-11), w.range]),
    [["07:00–08:00", "3–5 calls"], ["08:00–09:00", "fewer than 3"], ["09:00–10:00", "no numbers yet"]],
  );
  assert.match(place.windows[0].detail, /^usually 3-5 calls between 07:00 and 08:00, from the counts released to you on the previous 7 days\. On those days: between 0 and 9\.$/);
  assert.equal(expectRows(VIEW, 1)[0].windows.length, 1);
  assert.deepEqual(expectRows(null), []);
  assert.deepEqual(expectRows({ units: "nope" }), []);
});

test("the note says which days it is made from, and how withheld numbers count", () => {
  assert.equal(
    basisNote(VIEW),
    "Made only from the numbers released to you, for the same time on previous days (7 days: 2024-11-28 to 2024-12-04). " +
      "A number withheld as fewer than 3 counts as anything from 0 to 2, which widens the range.",
  );
  assert.match(basisNote({ ...VIEW, same_weekday: true, days: ["2024-11-20"] }), /same weekday on previous weeks \(1 day: 2024-11-20\)/);
  assert.equal(basisNote({ ...VIEW, days: [], text: "No numbers have been released to you yet." }), "No numbers have been released to you yet.");
  assert.equal(basisNote(null), "");
});
