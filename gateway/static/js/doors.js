// The doors calls come in by (GET /api/doors, supervisors): a stalled poller or a silent CAD told apart from a quiet
// city. Pure: no DOM (main.js shows what it says under the data clock).

/** Health values that mean calls are not arriving through that door. */
export const BROKEN = new Set(["stalled", "silent", "failing"]);

/**
 * What the header says of the doors: null when there is none to report (a file replay has no live door), else
 * {kind, text, details}: kind "broken" when a door is stalled, silent or failing (its sentences first), "quiet" when
 * every door works and one is quiet, "ok" otherwise. ``details`` holds every door's sentence, broken ones first.
 *
 * @param {Array<{kind: string, name: string, health: string, sentence: string}>} doors
 */
export function describeDoors(doors) {
  if (!Array.isArray(doors) || doors.length === 0) return null;
  const broken = doors.filter((d) => BROKEN.has(d.health));
  const quiet = doors.filter((d) => d.health === "quiet");
  const rank = (d) => (BROKEN.has(d.health) ? 0 : d.health === "quiet" ? 1 : 2);
  const details = [...doors].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name)).map((d) => d.sentence);
  if (broken.length) {
    const names = broken.map((d) => `${d.kind === "poll" ? "poller" : "CAD source"} ${d.name} ${d.health}`);
    return { kind: "broken", text: `Doors in: ${names.join(", ")}: calls through ${broken.length === 1 ? "it are" : "them are"} not arriving`, details };
  }
  const n = doors.length;
  if (quiet.length) {
    return { kind: "quiet", text: `Doors in: ${n === 1 ? "the door works" : `all ${n} work`}, ${quiet.length === n ? "no new calls (a quiet time, not a broken feed)" : `${quiet.length} quiet`}`, details };
  }
  return { kind: "ok", text: `Doors in: ${n === 1 ? "the door works" : `all ${n} work`}`, details };
}
