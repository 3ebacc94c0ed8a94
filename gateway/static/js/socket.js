// The live connection (/ws, gateway.protocol): opens, moves to the next gateway when it is lost (js/failover.js:
// round robin, backoff with jitter once every gateway failed), resumes from the last cursor.
//
// The socket knows nothing of what the frames mean: main.js gives it the URL to open on a gateway (with the cursor
// of the last alert or action frame, so nothing is lost across reconnects) and receives every frame.

import { Rotation, Watchdog, silenceLimitMs } from "./failover.js";

/** Close codes after which retrying with the same token cannot help (gateway.protocol.CloseCode). */
export const FINAL_CLOSE = new Map([
  [4401, "token expired"],
  [4403, "forbidden"],
  [4400, "too many refused messages"],
  [1008, "policy violation"],
]);

/** Exponential backoff with jitter: each delay is half to all of min * 2^attempt, at most max. */
export class Backoff {
  constructor(minMs = 500, maxMs = 15000) {
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.attempt = 0;
  }

  next() {
    const base = Math.min(this.maxMs, this.minMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(base * (0.5 + Math.random() / 2));
  }

  reset() {
    this.attempt = 0;
  }
}

export class LiveSocket {
  /**
   * @param {object} hooks
   * @param {(base: string) => string} hooks.url the /ws URL to open now on the gateway at ``base`` (token and last_id)
   * @param {(frame: object) => void} hooks.onFrame every frame, parsed
   * @param {(kind: string, text: string) => void} hooks.onState connection state to show
   * @param {(why: {code?: number, reason?: string, error?: Error}) => void} hooks.onFinal closed for good
   * @param {() => Promise<Error|null>} hooks.whyRefused after a handshake that never opened (browsers only
   *   report 1006): the error when the token is refused, else null
   */
  constructor({ url, onFrame, onState, onFinal, whyRefused, onOpen }) {
    Object.assign(this, { url, onFrame, onState, onFinal, whyRefused, onOpen: onOpen || (() => {}) });
    this.ws = null;
    this.rotation = new Rotation([location.origin]);
    this.retryTimer = null;
    this.connections = 0;
  }

  /** The gateways to go round (js/failover.js ``gatewayList``), starting at ``start``; before ``connect``. */
  setGateways(addresses, start = 0) {
    this.rotation = new Rotation(addresses, start);
  }

  /** The index of the gateway the socket is on (or trying) in the list, and its base URL. */
  get gateway() {
    return { index: this.rotation.index, base: this.rotation.current };
  }

  connect() {
    clearTimeout(this.retryTimer);
    const ws = new WebSocket(this.url(this.rotation.current));
    this.ws = ws;
    this.connections += 1;
    let opened = false;
    // a gateway gone from the network sends no close: three heartbeats unheard and the socket is left for the next
    const watchdog = new Watchdog((ms) => {
      if (this.ws !== ws) return;
      this.ws = null;
      try {
        ws.close(4000, "no heartbeat");
      } catch (_) {
        // closing a dead socket may throw in some browsers; it is abandoned either way
      }
      this.retry(`sent nothing for ${Math.round(ms / 1000)} s`);
    });
    this.watchdog = watchdog;
    ws.onopen = () => {
      opened = true;
      this.onOpen(this.gateway);
      this.onState("connecting", "Connected; catching up…");
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      watchdog.heard(f && f.type === "welcome" ? silenceLimitMs(f.heartbeat_s) : undefined);
      this.onFrame(f);
    };
    ws.onclose = (ev) => {
      watchdog.stop();
      if (this.ws !== ws) return; // replaced or stopped
      this.ws = null;
      this.closed(ev, opened);
    };
  }

  /** The gateway has sent everything missed: the next loss moves on at once again. */
  live() {
    this.rotation.connected();
  }

  /** Send a message; false (and nothing sent) when the socket is not open. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Close without reconnecting (token refused, logged out). */
  stop(reason = "stopped") {
    const ws = this.ws;
    this.ws = null; // its close handler then does nothing
    if (this.watchdog) this.watchdog.stop();
    if (ws) ws.close(1000, reason);
    clearTimeout(this.retryTimer);
  }

  async closed(ev, opened) {
    const reason = ev.reason || FINAL_CLOSE.get(ev.code) || "";
    if (FINAL_CLOSE.has(ev.code)) {
      this.stop();
      this.onFinal({ code: ev.code, reason });
      return;
    }
    if (!opened) {
      const error = await this.whyRefused();
      if (error) {
        this.stop();
        this.onFinal({ error });
        return;
      }
    }
    this.retry(`closed ${ev.code}${reason ? `: ${reason}` : ""}`);
  }

  retry(why) {
    const from = this.rotation.index;
    const delay = this.rotation.lost();
    const to = this.rotation.index === from ? "" : ` through gateway ${this.rotation.index + 1}`;
    this.onState("reconnecting", `Reconnecting${to} in ${(delay / 1000).toFixed(1)} s (gateway ${from + 1} ${why})`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
