// The data's clock: whether what the page shows is live, a replay of past calls, or a feed that has gone quiet,
// and when data last came. Pure: no DOM, no page state (main.js keeps the clock and shows what it says).
//
// A replay is told from live data by its event time: far behind the wall clock *and* moving (a replay sends
// hours of calls in minutes). Far behind and still is a feed that stopped, or a replay that ended: the page says
// so, with the time of the last data, instead of a green "Live" beside times from another day.

import { ageText, fmtZoned } from "./format.js";

/** Seconds the newest data may lag the wall clock and still be live: the worker's own rule (streams.detection.reorder, live_s). */
export const LIVE_LAG_S = 600;

/**
 * How far behind the wall clock a view's data may be and still be live. Partners receive a window's numbers once it
 * has closed and settled, so theirs lag by up to two of their windows more.
 *
 * @param {boolean} partner
 * @param {number} windowMin the partner's released window, minutes
 */
export function liveLagFor(partner, windowMin) {
  return partner && Number.isFinite(windowMin) ? LIVE_LAG_S + 2 * windowMin * 60 : LIVE_LAG_S;
}

/** A clock that has seen no data. */
export const emptyClock = () => ({ at: null, movedAt: null });

/**
 * The clock after data of event time ``at`` arrived at wall time ``now`` (epoch seconds). The first time seen only
 * sets it; a later, newer time also records that the data moved (a replay's sign).
 */
export function observe(clock, at, now) {
  if (typeof at !== "number" || !Number.isFinite(at)) return clock;
  if (clock.at === null) return { at, movedAt: null };
  return at > clock.at ? { at, movedAt: now } : clock;
}

/**
 * What the header says of the data at wall time ``now``: {kind, text}, kind one of none, live, replay, stale.
 *
 * @param {{at: number|null, movedAt: number|null}} clock
 * @param {number} now epoch seconds
 * @param {number} lagS how far behind ``now`` the data may be and still be live (liveLagFor)
 */
export function describeClock(clock, now, lagS = LIVE_LAG_S) {
  if (clock.at === null) return { kind: "none", text: "No data received yet" };
  const behind = now - clock.at;
  if (behind <= lagS) {
    const age = ageText(clock.at, now);
    return { kind: "live", text: `Last data received ${fmtZoned(clock.at)}${age ? ` (${age})` : ""}` };
  }
  if (clock.movedAt !== null && now - clock.movedAt <= lagS) {
    return { kind: "replay", text: `Replaying past calls · event time ${fmtZoned(clock.at)}` };
  }
  const age = ageText(clock.at, now);
  return { kind: "stale", text: `No new data since ${fmtZoned(clock.at)}${age ? ` (${age})` : ""}` };
}
