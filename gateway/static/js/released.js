// A partner's released numbers (gateway.disclosure): one value per unit, window and category group, null when
// fewer than k. Pure functions: the page sums groups itself and says "at least" when a part is withheld.

import { calls } from "./format.js";

/** A unit's calls over every group: {atLeast, exact} (exact null when a group is withheld); null when none is known. */
export function unitTotal(groups) {
  if (!groups || typeof groups !== "object") return null;
  const values = Object.values(groups);
  if (!values.length) return null;
  const shown = values.filter((v) => typeof v === "number");
  const atLeast = shown.reduce((s, v) => s + v, 0);
  return { atLeast, exact: shown.length === values.length ? atLeast : null };
}

/** "12 calls", "at least 7 calls", "fewer than 3" (withheld), or null when nothing is known. */
export function describeTotal(groups, k) {
  const t = unitTotal(groups);
  if (!t) return null;
  if (t.exact !== null) return calls(t.exact);
  if (t.atLeast > 0) return `at least ${calls(t.atLeast)}`;
  return Object.keys(groups).length > 1 ? `fewer than ${k} in each group` : `fewer than ${k}`;
}
