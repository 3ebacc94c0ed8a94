"""The dashboard page in headless Chromium with 5,000 active cells and 500 alerts: first render, a zone filter, the history.

    python bench/dashboard_page.py [--cells 5000] [--alerts 500] [--open 50] [--runs 5] [--json PATH]

Needs Redis from the stack (``python -m infra.stack up``; its port follows
``WF_REDIS_PORT``), ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (the
browser tests' setup: ``tests/gateway/test_dashboard.py``) and Selenium (the
``test`` extra). On a fresh Redis prefix it plants:

- ``--cells`` active res-8 cells, the nearest ones around a cell of the Lansdale
  zone (``tests.gateway.live.IN_LANSDALE``), with calls in the last five minutes
  (``{prefix}:b:{minute}`` fields ``{cell}|ALL``, as the worker writes them) and a
  fresh watermark (``{prefix}:wm:call:0``), written again before each run;
- ``--alerts`` alert records in the alerts stream (``tests.gateway.live.publish``),
  ``--open`` of them open and the rest closed, spread over the last 12 hours,
  with ``summary`` and ``areas`` as the worker writes them; one alert in ten
  covers many cells (a disk of 37 to 271 cells, five of the open ones too), a
  few open ones are in the Lansdale zone so that choosing it filters the feed.

Then it starts a real gateway (``tests.gateway.live.GatewayProcess``, counts
frames every 5 s as in production) and measures, ``--runs`` times each, with
``performance.now()`` inside the page (a MutationObserver and a 10 ms poll in
``execute_async_script``, so Selenium's own polling does not count):

1. first render: a fresh browser profile opens ``/#token=...``; the time from
   the navigation's start until every cell the map caption counts is drawn
   (``#map svg path.cell``, alert cells fetched from ``/api/cells`` included) and
   the feed holds its cards, then until the next frame (style, layout, paint);
   also the wall time around ``driver.get``, DOMContentLoaded, the JS heap
   (``performance.memory``, precise with ``--enable-precise-memory-info``), the
   DOM size and the ``/api/*`` requests' timings;
2. a zone filter: a click on the Lansdale zone in ``#zone-list`` until the map
   shows it selected (``g.zone.selected``) and the feed is filtered, then a
   click on "All zones" until every card shows again;
3. the history: a click on ``#history-toggle > summary`` until ``#history-list``
   lists every alert ``#history-result`` counts (``n/a`` if the page has no
   history panel), the panel closed again between runs;
4. the map alone: ``renderMap`` (``/static/js/map.js``) called directly with the
   cells the page asks ``/api/hotspots`` for (``PAGE_CELLS``, as ``HOTSPOTS_LIMIT`` in js/main.js) and with all of
   them (``limit=5000``): its JavaScript, then until the next frame.

Prints the machine, the date, the command line and a table (median and max of
the runs); ``--json PATH`` writes the figures too. The gateway is stopped and the
prefix's keys deleted at the end. Timings are reported, never checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import h3
import redis
from _common import add_json, add_runs, aligned, parser, write_json

from detectors.types import AlertState
from tests.gateway.live import IN_LANSDALE, LANSDALE, REDIS_URL, GatewayProcess, make_alert, publish, token
from tests.gateway.test_dashboard import CHROMEDRIVER, CHROMIUM, new_chromium

REDIS_DOWN = f"Redis is not running at {REDIS_URL}: start it with python -m infra.stack up"
#: the minutes before the watermark the planted calls fall in (all inside the page's 15-minute window)
COUNT_MINUTES = 5
HOURS = 12
WAIT_S = 120
ZONE = LANSDALE.id
#: cells the page asks /api/hotspots for (HOTSPOTS_LIMIT in gateway/static/js/main.js)
PAGE_CELLS = 1000
#: Chromium flags beside the browser tests' own: exact heap figures (else performance.memory is rounded)
BENCH_ARGS = ("--enable-precise-memory-info",)

# ---------------------------------------------------------------------- in-page measurement

#: ``waitFor(cond, t0, done)``: calls ``done`` with {ready_ms, frame_ms} once ``cond()`` is truthy, checked now, on
#: every DOM mutation and every 10 ms: ready_ms is when it held (relative to ``t0``), frame_ms when the next frame
#: after it ran (requestAnimationFrame, then a task: style, layout and paint of what changed are done).
WAIT_JS = """
function waitFor(cond, t0, done, timeoutMs) {
  let finished = false;
  let observer = null;
  let timer = null;
  const finish = (value) => {
    if (finished) return;
    finished = true;
    if (observer) observer.disconnect();
    clearInterval(timer);
    const ready = performance.now();
    requestAnimationFrame(() => setTimeout(() => done({ ...value, ready_ms: ready - t0, frame_ms: performance.now() - t0 }), 0));
  };
  const check = () => {
    if (finished) return;
    let v = null;
    try { v = cond(); } catch (e) { v = null; }
    if (v) finish(v);
    else if (performance.now() - t0 > timeoutMs) { finished = true; observer.disconnect(); clearInterval(timer); done({ timeout: true }); }
  };
  observer = new MutationObserver(check);
  observer.observe(document.body, { childList: true, subtree: true, attributes: true, characterData: true });
  timer = setInterval(check, 10);
  check();
}
const q = (s) => document.querySelector(s);
const qa = (s) => document.querySelectorAll(s);
const visibleCards = () => [...qa("#feed .alert-card")].filter((c) => !c.hidden).length;
"""

#: The page drew everything: the caption's active cells are all drawn, the hot spots among them (cells with a count),
#: every alert cell it counts, and the feed holds its cards. Returns what it saw.
RENDERED_JS = """
function rendered() {
  const caption = (q("#map-caption") || {}).textContent || "";
  const m = caption.match(/(\\d+) active cells/);
  if (!m || Number(m[1]) === 0) return null;
  const cells = qa("#map svg path.cell").length;
  // the hot spots are in (alert cells fetched from /api/cells before them are drawn with no count)
  const hot = qa('#map svg path.cell:not([data-count="0"])').length;
  if (cells !== Number(m[1]) || !hot) return null;
  const a = caption.match(/(\\d+) of (\\d+) alert cells drawn/);
  if (a && a[1] !== a[2]) return null;
  const cards = qa("#feed .alert-card").length;
  if (!cards) return null;
  return { cells, hot_cells: hot, alert_cells: a ? Number(a[2]) : 0, cards, caption };
}
"""

FIRST_RENDER_JS = (
    WAIT_JS
    + RENDERED_JS
    + """
const done = arguments[arguments.length - 1];
waitFor(rendered, 0, (r) => {
  const nav = performance.getEntriesByType("navigation")[0] || {};
  const api = performance.getEntriesByType("resource").filter((e) => new URL(e.name).pathname.startsWith("/api/")).map((e) => ({
    path: new URL(e.name).pathname + (new URL(e.name).search.length > 40 ? "?…" : new URL(e.name).search),
    start_ms: e.startTime, end_ms: e.responseEnd, wait_ms: e.responseStart - e.requestStart, bytes: e.encodedBodySize,
  }));
  const heap = performance.memory ? performance.memory.usedJSHeapSize : null;
  done({ ...r, dcl_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd, heap,
    nodes: document.getElementsByTagName("*").length, api });
}, arguments[0]);
"""
)

#: Click a zone (``arguments[0]``, or "All zones" when null) and wait until the map and the feed show the choice.
FILTER_JS = (
    WAIT_JS
    + """
const [zone, timeoutMs, done] = arguments;
const total = qa("#feed .alert-card").length;
const before = (q("#feed-count") || {}).textContent;
const btn = zone ? q(`#zone-list button.zone[data-zone-id="${zone}"]`) : q("#zone-all");
if (!btn) { done({ missing: true }); }
else {
  const t0 = performance.now();
  btn.click();
  const handler = performance.now() - t0;
  const cond = zone
    ? () => q(`#map svg g.zone.selected[data-zone-id="${zone}"]`) && q("#feed-count").textContent !== before && { cards: visibleCards() }
    : () => !q("#map svg g.zone.selected") && visibleCards() === total && { cards: visibleCards() };
  waitFor(cond, t0, (r) => done({ ...r, handler_ms: handler, total }), timeoutMs);
}
"""
)

#: Open the history panel and wait until its list holds every alert its result line counts (then close it again).
HISTORY_JS = (
    WAIT_JS
    + """
const [timeoutMs, done] = arguments;
const summary = q("#history-toggle > summary");
if (!summary || !q("#history-list")) { done({ missing: true }); }
else {
  if (q("#history-toggle").open) summary.click();
  let searching = false;
  const watch = new MutationObserver(() => { if (/Searching/.test(q("#history-result").textContent)) searching = true; });
  watch.observe(q("#history-result"), { childList: true, subtree: true, characterData: true });
  const t0 = performance.now();
  summary.click();
  const cond = () => {
    const m = q("#history-result").textContent.match(/^(\\d+) alerts? between/);
    const items = qa("#history-list li.history-item").length;
    return searching && m && items === Number(m[1]) && { items, result: q("#history-result").textContent };
  };
  waitFor(cond, t0, (r) => {
    watch.disconnect();
    const fetches = performance.getEntriesByType("resource").filter((e) => e.startTime >= t0 && /\\/api\\/alerts\\?/.test(e.name));
    const f = fetches[fetches.length - 1];
    const out = { ...r, fetch_ms: f ? f.responseEnd - f.startTime : null, bytes: f ? f.encodedBodySize : null,
      heap: performance.memory ? performance.memory.usedJSHeapSize : null, nodes: document.getElementsByTagName("*").length };
    summary.click();  // closed for the next run
    done(out);
  }, timeoutMs);
}
"""
)

#: ``renderMap`` alone on a state holding the page's zones and ``/api/hotspots?limit=N`` (into the page's #map).
DIRECT_MAP_JS = (
    WAIT_JS
    + """
const [limit, done] = arguments;
(async () => {
  const tok = sessionStorage.getItem("watchfloor.token");
  const get = async (p) => (await fetch(p, { headers: { Authorization: `Bearer ${tok}` }, cache: "no-store" })).json();
  const [{ renderMap }, { createState }] = await Promise.all([import("/static/js/map.js"), import("/static/js/state.js")]);
  const [zones, hs] = await Promise.all([get("/api/zones"), get(`/api/hotspots?limit=${limit}`)]);
  const st = createState();
  st.token = tok;
  st.me = { role: "supervisor" };
  st.zones = new Map(zones.zones.map((z) => [z.id, z]));
  st.hotspots = hs.cells || [];
  const t0 = performance.now();
  renderMap(st, { onSelect: () => {} });
  const js = performance.now() - t0;
  const n = qa("#map svg path.cell").length;
  requestAnimationFrame(() => setTimeout(() => done({ js_ms: js, frame_ms: performance.now() - t0, cells: n }), 0));
})().catch((e) => done({ error: String(e) }));
"""
)

# ---------------------------------------------------------------------- planting


def active_cells(n: int) -> list[str]:
    """The ``n`` res-8 cells nearest to IN_LANSDALE (whole rings first, the last ring cut in its sorted order)."""
    cells: list[str] = []
    k = 0
    while len(cells) < n:
        cells.extend(sorted(h3.grid_ring(IN_LANSDALE, k)))
        k += 1
    return cells[:n]


def write_counts(r: redis.Redis, prefix: str, cells: list[str]) -> int:
    """Calls in each cell over the last COUNT_MINUTES minutes, most near the centre, and a fresh watermark.

    The format of tests.gateway.test_dashboard.write_counts (``{prefix}:b:{minute}``, ``{cell}|ALL``); returns the calls.
    """
    now = time.time()
    minute = int(now // 60)
    total = 0
    pipe = r.pipeline(transaction=False)
    for m in range(COUNT_MINUTES):
        fields = {}
        for i, c in enumerate(cells):
            # a gradient out from the centre, with some spread within each ring so the colour scale has every class
            n = max(1, 12 - (i * 12) // len(cells) - (i + m) % 3) if (i + m) % 2 == 0 or i < 200 else 0
            if n:
                fields[f"{c}|ALL"] = n
                total += n
        key = f"{prefix}:b:{minute - m}"
        pipe.hset(key, mapping=fields)
        pipe.expire(key, 3 * 3600)
    pipe.set(f"{prefix}:wm:call:0", now)
    pipe.execute()
    return total


def plant_alerts(r: redis.Redis, prefix: str, cells: list[str], n: int, n_open: int) -> dict[str, Any]:
    """``n`` alert records, ``n_open`` open, the rest closed, over the last HOURS hours; what was planted."""
    now = time.time()
    zone_cells = sorted(c for c in LANSDALE.cells if c in set(cells))
    span = HOURS * 3600 - 20 * 60  # all inside the history's default period, even after a few minutes of benchmark
    kinds = [("TRAFFIC", "Traffic"), ("EMS", "EMS"), ("FIRE", "Fire")]
    out = {"open": 0, "closed": 0, "in_zone_open": 0, "wide": 0, "cells_max": 0}
    for i in range(n):
        is_open = i % (n // n_open) == 0 if n_open else False
        if is_open and out["open"] >= n_open:
            is_open = False
        at = now - 120 - span * (1 - i / n)  # oldest first, as the stream is
        centre = cells[(i * 7919) % len(cells)]
        if is_open and out["in_zone_open"] < 8 and zone_cells:
            region: tuple[str, ...] = (zone_cells[out["in_zone_open"] % len(zone_cells)],)
            out["in_zone_open"] += 1
        elif i % 10 == 3 or (is_open and out["open"] % 10 == 5):
            region = tuple(sorted(h3.grid_disk(centre, 3 + (i // 10) % 7)))  # 37 to 271 cells
            out["wide"] += 1
        else:
            region = tuple(sorted(h3.grid_disk(centre, i % 2)))
        cat, word = kinds[i % 3]
        observed = 8 + i % 30
        alert = make_alert(
            f"surge:bench:{i:04d}",
            region,
            observed=observed,
            expected=round(observed / 4, 1),
            score=4 + (i % 7),
            categories={cat: observed},
            state=AlertState.OPEN if is_open else AlertState.CLOSED,
            at=at,
        )
        area = f"Area {i % 40:02d}"
        alert["areas"] = [area] + ([f"Area {(i + 1) % 40:02d}"] if len(region) > 7 else [])
        alert["summary"] = f"{word} calls in {area}: {observed} in 15 minutes, where about {observed // 4} are usual"
        publish(r, prefix, alert)
        out["open" if is_open else "closed"] += 1
        out["cells_max"] = max(out["cells_max"], len(region))
    return out


# ---------------------------------------------------------------------- the browser


def new_driver(profiles: Path, name: str):  # -> WebDriver
    driver = new_chromium(profiles / name, BENCH_ARGS)
    driver.set_script_timeout(WAIT_S + 10)
    return driver


def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor() or "unknown")


def say(msg: str) -> None:
    print(f"[dashboard_page {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def checked(what: str, result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise RuntimeError(f"{what}: the page answered {result!r}")
    if result.get("timeout"):
        raise RuntimeError(f"{what}: not done within {WAIT_S} s")
    if result.get("error"):
        raise RuntimeError(f"{what}: {result['error']}")
    return result


def median_max(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "max": max(values), "runs": values}


def measure(args: argparse.Namespace, r: redis.Redis, prefix: str, cells: list[str], tmp: Path) -> dict[str, Any]:
    planted_calls = write_counts(r, prefix, cells)
    say(f"planted {len(cells):,} active cells ({planted_calls:,} calls in the last {COUNT_MINUTES} min) on prefix {prefix}")
    alerts = plant_alerts(r, prefix, cells, args.alerts, args.open)
    say(f"planted {args.alerts} alerts: {alerts['open']} open ({alerts['in_zone_open']} in {ZONE}), {alerts['closed']} closed, "
        f"{alerts['wide']} of 37-271 cells")  # fmt: skip

    gw = GatewayProcess(prefix, env_extra={"WF_REDIS_URL": REDIS_URL, "WF_GATEWAY_COUNTS_S": "5"})
    say("starting the gateway")
    gw.start(tmp)
    tok = token("supervisor", subject="bench-dashboard")
    url = f"{gw.base}/#token={tok}"
    timeout_ms = WAIT_S * 1000
    first: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    direct: dict[str, list[dict[str, Any]]] = {"page": [], "all": []}
    driver = None
    try:
        for run in range(1, args.runs + 1):
            if driver is not None:
                driver.quit()
            write_counts(r, prefix, cells)  # the calls stay in the window and the watermark fresh
            driver = new_driver(tmp, f"chrome-{run}")
            t0 = time.perf_counter()
            driver.get(url)
            got = checked("first render", driver.execute_async_script(FIRST_RENDER_JS, timeout_ms))
            got["wall_ms"] = (time.perf_counter() - t0) * 1000
            first.append(got)
            say(f"first render {run}/{args.runs}: cells drawn at {got['ready_ms']:.0f} ms, next frame {got['frame_ms']:.0f} ms "
                f"(wall {got['wall_ms']:.0f} ms; {got['cells']} cells, {got['hot_cells']} with counts, "
                f"{got['alert_cells']} alert cells, {got['cards']} cards; "
                f"heap {got['heap'] / 2**20:.1f} MiB)")  # fmt: skip
        assert driver is not None
        time.sleep(1)  # the first counts frame's hotspots refresh is over
        for run in range(1, args.runs + 1):
            pick = checked("zone filter", driver.execute_async_script(FILTER_JS, ZONE, timeout_ms))
            if pick.get("missing"):
                raise RuntimeError(f"no button for zone {ZONE} in #zone-list")
            back = checked("all zones", driver.execute_async_script(FILTER_JS, None, timeout_ms))
            filters.append({"zone": pick, "all": back})
            say(f"filter {run}/{args.runs}: {ZONE} {pick['frame_ms']:.0f} ms ({pick['cards']} of {pick['total']} cards), "
                f"all zones {back['frame_ms']:.0f} ms ({back['cards']} cards)")  # fmt: skip
        for run in range(1, args.runs + 1):
            got = checked("history", driver.execute_async_script(HISTORY_JS, timeout_ms))
            if got.get("missing"):
                say("history: the page has no history panel (n/a)")
                break
            history.append(got)
            say(f"history {run}/{args.runs}: {got['items']} items at {got['ready_ms']:.0f} ms, next frame {got['frame_ms']:.0f} ms "
                f"(the search's fetch {got['fetch_ms']:.0f} ms, {got['bytes'] / 1024:.0f} KiB)")  # fmt: skip
        for run in range(1, args.runs + 1):
            for key, limit in (("page", PAGE_CELLS), ("all", len(cells))):
                got = checked("renderMap", driver.execute_async_script(DIRECT_MAP_JS, limit))
                direct[key].append(got)
                timing = f"JS {got['js_ms']:.0f} ms, next frame {got['frame_ms']:.0f} ms"
                say(f"renderMap alone {run}/{args.runs}, {got['cells']} cells: {timing}")
    finally:
        if driver is not None:
            driver.quit()
        gw.stop()
    return {"planted": {"cells": len(cells), "calls": planted_calls, **alerts}, "first": first, "filters": filters,
            "history": history, "direct": direct, "gateway_log": str(gw.log_path)}  # fmt: skip


def summarize(raw: dict[str, Any]) -> list[tuple[str, dict[str, float] | None, str]]:
    """Rows of the table: (what, median/max/runs or None for n/a, unit)."""
    first, filters, history, direct = raw["first"], raw["filters"], raw["history"], raw["direct"]
    rows: list[tuple[str, dict[str, float] | None, str]] = [
        ("first render: DOMContentLoaded", median_max([f["dcl_ms"] for f in first]), "ms"),
        ("first render: cells and feed drawn", median_max([f["ready_ms"] for f in first]), "ms"),
        ("first render: + next frame (paint)", median_max([f["frame_ms"] for f in first]), "ms"),
        ("first render: wall time around driver.get", median_max([f["wall_ms"] for f in first]), "ms"),
        ("first render: JS heap used", median_max([f["heap"] / 2**20 for f in first]), "MiB"),
        ("first render: DOM elements", median_max([float(f["nodes"]) for f in first]), ""),
        ("first render: cells drawn (of the caption's)", median_max([float(f["cells"]) for f in first]), ""),
        ("first render: of which with a count (hot spots)", median_max([float(f["hot_cells"]) for f in first]), ""),
    ]
    for path in ("/api/me", "/api/zones", "/api/alerts", "/api/hotspots", "/api/cells"):
        ends = [max((a["end_ms"] for a in f["api"] if a["path"].startswith(path)), default=None) for f in first]
        if all(e is not None for e in ends):
            took = [max(a["end_ms"] - a["start_ms"] for a in f["api"] if a["path"].startswith(path)) for f in first]
            rows.append((f"first render: {path} answered at", median_max([float(e) for e in ends if e is not None]), "ms"))
            rows.append((f"first render: {path} request took", median_max(took), "ms"))
    rows += [
        (f"filter: click {ZONE} until drawn (frame)", median_max([f["zone"]["frame_ms"] for f in filters]), "ms"),
        (f"filter: click {ZONE}, its handler alone", median_max([f["zone"]["handler_ms"] for f in filters]), "ms"),
        ("filter: click All zones until drawn (frame)", median_max([f["all"]["frame_ms"] for f in filters]), "ms"),
    ]
    if history:
        rows += [
            ("history: open until listed", median_max([h["ready_ms"] for h in history]), "ms"),
            ("history: + next frame (paint)", median_max([h["frame_ms"] for h in history]), "ms"),
            ("history: its /api/alerts fetch", median_max([h["fetch_ms"] for h in history]), "ms"),
            ("history: items listed", median_max([float(h["items"]) for h in history]), ""),
            ("history: JS heap used after", median_max([h["heap"] / 2**20 for h in history]), "MiB"),
        ]
    else:
        rows.append(("history: open until listed", None, "ms"))
    for key, what in (("page", "the page's cells"), ("all", "all cells")):
        n = direct[key][0]["cells"] if direct[key] else 0
        rows += [
            (f"renderMap alone, {what} ({n:,}): JS", median_max([d["js_ms"] for d in direct[key]]), "ms"),
            (f"renderMap alone, {what} ({n:,}): + next frame", median_max([d["frame_ms"] for d in direct[key]]), "ms"),
        ]
    return rows


def fmt(v: float, unit: str) -> str:
    return f"{v:,.1f}" if unit == "MiB" else f"{v:,.0f}"


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--cells", type=int, default=5000, help="active res-8 cells planted (default %(default)s)")
    p.add_argument("--alerts", type=int, default=500, help="alerts in the last 12 hours (default %(default)s)")
    p.add_argument("--open", type=int, default=50, help="of which open (default %(default)s)")
    add_runs(p, 5)
    add_json(p)
    args = p.parse_args(argv)
    if args.runs < 1 or args.cells < 1 or not 0 <= args.open <= args.alerts:
        p.error("--runs and --cells must be positive, --open between 0 and --alerts")
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        p.error(f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver (infra/setup.sh does)")
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        r.ping()
    except redis.exceptions.ConnectionError:
        p.error(REDIS_DOWN)
    os.environ["SE_OFFLINE"] = "true"  # the driver's path is given: Selenium Manager must never go online

    started = dt.datetime.now(dt.UTC)
    machine = {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "chromium": chromium_version(),
        "python": platform.python_version(),
    }  # fmt: skip
    command = "python bench/dashboard_page.py" + "".join(f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    say(f"{machine['cores']} cores ({machine['cpu']}), {machine['chromium']}")
    prefix = f"bdash{uuid.uuid4().hex[:8]}"
    cells = active_cells(args.cells)
    try:
        with tempfile.TemporaryDirectory(prefix="wf-bench-dashboard-") as tmp:
            raw = measure(args, r, prefix, cells, Path(tmp))
    finally:
        keys = list(r.scan_iter(f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i : i + 500])
        r.close()
    rows = summarize(raw)

    print()
    print(f"dashboard page, {started:%Y-%m-%d %H:%M} UTC: {command}")
    print(f"machine: {machine['cores']} cores, {machine['cpu']}; {machine['chromium']}; window 1440x900, headless")
    pl = raw["planted"]
    print(f"planted: {pl['cells']:,} active cells ({pl['calls']:,} calls), {pl['open'] + pl['closed']} alerts "
          f"({pl['open']} open, {pl['closed']} closed; largest {pl['cells_max']} cells); {args.runs} runs each")  # fmt: skip
    table = [["", "median", "max", "unit"]]
    for what, v, unit in rows:
        table.append([what, "n/a", "n/a", unit] if v is None else [what, fmt(v["median"], unit), fmt(v["max"], unit), unit])
    for line in aligned(table):
        print(line)
    if args.json:
        figures = {
            "date": started.isoformat(timespec="seconds"),
            "command": command,
            "machine": machine,
            "planted": pl,
            "figures": {what: v for what, v, _ in rows},
            "raw": raw,
        }
        write_json(args.json, figures)
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
