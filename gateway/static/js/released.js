// A partner's released numbers (gateway.disclosure): one value per unit, window and category group, null when
// fewer than k. Pure functions: the page sums groups itself and says "at least" when a part is withheld.

import { calls, periodWord } from "./format.js";

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

/**
 * What a partner's agreement withholds or generalizes, and why, one plain sentence per rule (gateway.disclosure
 * applies them; this only says them). ``agreement`` is /api/me's: {k, window_min, shares, groups, history_h}.
 */
export function withheldRules(agreement) {
  if (!agreement) return [];
  const k = agreement.k;
  const per = periodWord(agreement.window_min);
  const shares = agreement.shares || [];
  const groups = Object.keys(agreement.groups || {});
  const out = [];
  if (shares.includes("counts")) {
    out.push(
      `Numbers are calls per ${per}, shown once the ${per} has ended, never as they happen: a live count would show each call as it comes in.`,
      `A number below ${k} reads "fewer than ${k}": a small number could point to one caller or one household.`,
    );
    if (groups.length) {
      out.push(`Calls are counted as ${groups.join(", ")}; when one group is below ${k}, the total reads "at least" what the other groups add up to.`);
    }
    if (shares.includes("history")) {
      out.push(
        `You can look back ${agreement.history_h} hours, in the same released numbers; "What to expect at your places" is made from them alone.`,
      );
    }
  } else {
    out.push("Your agreement shares no counts, so your places show no numbers.");
  }
  if (shares.includes("alerts")) {
    out.push(
      `Alerts name your places, not exact locations; they list only the categories with ${k} or more calls and give times to the minute. ` +
        "Caller details, addresses, call counts and the detector's figures stay with the 911 centre.",
    );
  }
  return out;
}
