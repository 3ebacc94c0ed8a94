// Several gateways (WF_GATEWAY_PEERS, listed by /api/me as "gateways"): which one the page is on, where it goes when
// that one is lost, and which frames it has already applied (pure: no DOM, no I/O). The same rules as
// gateway/failover.py: the next address in the list after a short jitter, an exponential backoff with jitter once
// every address has failed in a row; resume with the last alert or action id applied, and drop a repeat.

/** Longest wait before trying the next gateway after a loss, ms (scaled by a random 0-1): not all clients at once. */
export const MOVE_JITTER_MS = 250;
/** Partners' sealed ids remembered to recognise a repeat (they cannot be ordered). */
export const SEEN_IDS = 10000;
const STREAM_ID = /^(\d+)-(\d+)$/;

/**
 * The gateways' base URLs in the page's order: ``peers`` as the gateway lists them, with the page's own origin first
 * when it is not among them (it served the page, so it is reachable); just the page's origin without peers.
 */
export function gatewayList(peers, pageOrigin) {
  const list = (Array.isArray(peers) ? peers : []).filter((p) => typeof p === "string" && /^https?:\/\/[^/]+$/.test(p));
  return list.includes(pageOrigin) ? list : [pageOrigin, ...list];
}

/** The /ws URL of the gateway at ``base`` (http(s)://host[:port]) with the token and the resume cursor. */
export function socketUrl(base, token, lastId) {
  const q = new URLSearchParams({ token });
  if (lastId) q.set("last_id", lastId);
  return `${base.replace(/^http/, "ws")}/ws?${q}`;
}

/** The address's host and port, as the page names a gateway beside its number. */
export const hostOf = (base) => base.replace(/^https?:\/\//, "");

export class Rotation {
  /** ``addresses`` in order, starting at ``start``; ``random`` returns [0, 1). */
  constructor(addresses, start = 0, random = Math.random, minMs = 500, maxMs = 15000) {
    if (!addresses.length) throw new Error("no gateway address");
    Object.assign(this, { addresses, index: start, random, minMs, maxMs, failures: 0, rounds: 0 });
  }

  get current() {
    return this.addresses[this.index];
  }

  /** The current gateway failed or dropped: move to the next one; the ms to wait before trying it. */
  lost() {
    this.failures += 1;
    this.index = (this.index + 1) % this.addresses.length;
    if (this.failures < this.addresses.length) return Math.round(MOVE_JITTER_MS * this.random());
    const base = Math.min(this.maxMs, this.minMs * 2 ** this.rounds);
    this.rounds += 1;
    return Math.round(base * (0.5 + this.random() / 2));
  }

  /** The current gateway is live again: the next loss starts a new round. */
  connected() {
    this.failures = 0;
    this.rounds = 0;
  }
}

/**
 * Alert and action frames already applied: a stream id (supervisors, commanders) at or below the last applied one,
 * or a partner's sealed id seen before. ``accept(frame)`` says whether to apply it and remembers it.
 */
export class Applied {
  constructor(lastId = null) {
    this.last = order(lastId);
    this.seen = new Set();
  }

  accept(frame) {
    if ((frame.type !== "alert" && frame.type !== "action") || typeof frame.id !== "string") return true;
    const key = order(frame.id);
    if (key) {
      if (this.last && (key[0] < this.last[0] || (key[0] === this.last[0] && key[1] <= this.last[1]))) return false;
      this.last = key;
      return true;
    }
    if (this.seen.has(frame.id)) return false;
    this.seen.add(frame.id);
    if (this.seen.size > SEEN_IDS) this.seen.delete(this.seen.values().next().value);
    return true;
  }
}

/** [ms, seq] of a stream id as numbers (BigInt-free: ms fits a double exactly), or null for a sealed cursor. */
function order(id) {
  const m = typeof id === "string" ? STREAM_ID.exec(id) : null;
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/**
 * What the header says about the gateway: ``{text, moved}`` for the gateway at ``index`` of ``list``; ``from`` is the
 * index of the gateway it moved from (null: the first connection). Nothing to say with a single gateway that never moved.
 */
export function describeGateway(list, index, from, at) {
  const name = `gateway ${index + 1}`;
  if (from === null || from === index) {
    return list.length > 1 ? { text: `On ${name} of ${list.length} (${hostOf(list[index])})`, moved: false } : null;
  }
  return {
    text: `Reconnected through ${name} of ${list.length} (${hostOf(list[index])}) at ${at}: gateway ${from + 1} was lost`,
    moved: true,
  };
}

/** Heartbeats a socket may miss before its gateway is taken for lost (gateway.protocol: three). */
export const MISSED_HEARTBEATS = 3;

/**
 * The silence after which a gateway is taken for lost: a gateway sends a ``heartbeat`` frame every ``heartbeat_s``
 * (its ``welcome`` says how often), so a socket that receives nothing for three of them is on a gateway gone from
 * the network (browsers answer WebSocket pings unseen: a frame is the only thing a page can watch). Before the
 * welcome, or from a gateway that announces none, nothing is watched (null).
 */
export function silenceLimitMs(heartbeatS) {
  return typeof heartbeatS === "number" && heartbeatS > 0 ? Math.round(MISSED_HEARTBEATS * heartbeatS * 1000) : null;
}

/**
 * Calls ``onSilent`` once when ``limitMs`` pass without :meth:`heard`; each frame re-arms it. ``timers`` is
 * ``{setTimeout, clearTimeout}`` (the page's own, or a test's).
 */
export class Watchdog {
  constructor(onSilent, timers = globalThis) {
    Object.assign(this, { onSilent, timers, limitMs: null, timer: null });
  }

  /** A frame came; ``limitMs`` (from :func:`silenceLimitMs`) replaces the limit when given. */
  heard(limitMs = undefined) {
    if (limitMs !== undefined) this.limitMs = limitMs;
    this.stop();
    if (this.limitMs) this.timer = this.timers.setTimeout(() => this.onSilent(this.limitMs), this.limitMs);
  }

  stop() {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }
}
