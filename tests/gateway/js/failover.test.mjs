// node --test: the gateways' list, the moves between them and the frames not applied twice (gateway/static/js/failover.js).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Applied,
  MOVE_JITTER_MS,
  Rotation,
  Watchdog,
  describeGateway,
  gatewayList,
  silenceLimitMs,
  socketUrl,
} from "../../../gateway/static/js/failover.js";

test("the page's own gateway joins the list first only when the peers do not name it", () => {
  assert.deepEqual(gatewayList(["http://a:1", "http://b:2"], "http://b:2"), ["http://a:1", "http://b:2"]);
  assert.deepEqual(gatewayList(["http://a:1"], "http://c:3"), ["http://c:3", "http://a:1"]);
  assert.deepEqual(gatewayList(undefined, "http://c:3"), ["http://c:3"]);
  assert.deepEqual(gatewayList(["javascript:alert(1)", "http://a:1/path", 7], "http://c:3"), ["http://c:3"], "only base URLs");
});

test("a lost gateway is left for the next after a jitter; a failed round backs off; a live one resets", () => {
  const r = new Rotation(["http://a", "http://b", "http://c"], 2, () => 1);
  assert.deepEqual([r.lost(), r.current, r.lost(), r.current], [MOVE_JITTER_MS, "http://a", MOVE_JITTER_MS, "http://b"]);
  assert.deepEqual([r.lost(), r.lost(), r.lost(), r.current], [500, 1000, 2000, "http://b"]);
  for (let i = 0; i < 10; i += 1) r.lost();
  assert.equal(r.lost(), 15000, "capped");
  r.connected();
  assert.equal(r.lost(), MOVE_JITTER_MS);
  assert.throws(() => new Rotation([]), /no gateway address/);
});

test("frames at or below the last applied stream id are repeats; sealed ids only when identical; others pass", () => {
  const a = new Applied("100-0");
  const seen = ["100-0", "100-1", "99-9", "100-1", "1000-0"].map((id) => a.accept({ type: "alert", id }));
  assert.deepEqual(seen, [false, true, false, false, true]);
  assert.ok(a.accept({ type: "counts" }) && a.accept({ type: "caught_up", id: "5-0" }));
  assert.ok(!a.accept({ type: "action", id: "999-0" }));
  const p = new Applied("c-start");
  assert.deepEqual(["c-x", "c-y", "c-x"].map((id) => p.accept({ type: "alert", id })), [true, true, false]);
});

test("the socket URL follows the gateway's scheme and carries the cursor", () => {
  assert.equal(socketUrl("https://gw2.example.org", "t k", "c-a/b"), "wss://gw2.example.org/ws?token=t+k&last_id=c-a%2Fb");
  assert.equal(socketUrl("http://10.0.0.5:8080", "t", null), "ws://10.0.0.5:8080/ws?token=t");
});

test("the header names the gateway by its place in the list and says when the page moved", () => {
  const list = ["http://a:1", "http://b:2"];
  assert.equal(describeGateway(["http://a:1"], 0, null, "12:00:00"), null, "one gateway: nothing to say");
  assert.deepEqual(describeGateway(list, 0, null, "12:00:00"), { text: "On gateway 1 of 2 (a:1)", moved: false });
  assert.deepEqual(describeGateway(list, 1, 0, "12:00:05"), {
    text: "Reconnected through gateway 2 of 2 (b:2) at 12:00:05: gateway 1 was lost",
    moved: true,
  });
});

test("a socket that hears nothing for three of the gateway's heartbeats is taken for lost, once; each frame re-arms it", () => {
  assert.equal(silenceLimitMs(10), 30000);
  assert.equal(silenceLimitMs(undefined), null, "a gateway announcing no heartbeat is not watched");
  assert.equal(silenceLimitMs(0), null);
  let now = 0;
  const due = new Map();
  let next = 1;
  const timers = {
    setTimeout: (fn, ms) => {
      due.set(next, [now + ms, fn]);
      return next++;
    },
    clearTimeout: (id) => due.delete(id),
  };
  const advance = (ms) => {
    now += ms;
    for (const [id, [at, fn]] of [...due]) {
      if (at <= now) {
        due.delete(id);
        fn();
      }
    }
  };
  const silent = [];
  const w = new Watchdog((ms) => silent.push([now, ms]), timers);
  w.heard(); // a frame before the welcome: no limit known yet
  advance(60000);
  assert.deepEqual(silent, []);
  w.heard(silenceLimitMs(1)); // the welcome: heartbeats every second
  advance(2900);
  w.heard(); // a heartbeat: the limit holds, the clock starts again
  advance(2900);
  assert.deepEqual(silent, []);
  advance(200);
  assert.deepEqual(silent, [[66000, 3000]]); // 3 s after the last frame heard
  advance(10000);
  assert.equal(silent.length, 1, "once");
  w.heard();
  w.stop();
  advance(10000);
  assert.equal(silent.length, 1, "stopped with its socket");
});
