// node --test: the map's arithmetic (gateway/static/js/geo.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import { usualClass } from "../../../gateway/static/js/geo.js";

test("a cell's calls against its usual", () => {
  assert.equal(usualClass(9, 3), "well-above");
  assert.equal(usualClass(5, 3), "above");
  assert.equal(usualClass(3, 3), "about");
  assert.equal(usualClass(2, 3), "about");
  assert.equal(usualClass(1, 3), "below");
  assert.equal(usualClass(0, 3), "below");
  assert.equal(usualClass(3, 0), "well-above", "three calls where none are usual");
  assert.equal(usualClass(1, 0.2), "about");
  assert.equal(usualClass(4, null), null);
  assert.equal(usualClass(null, 2), null);
});
