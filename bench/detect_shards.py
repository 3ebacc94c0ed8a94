"""The detection stage's cost per call, part by part, and split over worker processes (no Kafka, no Redis).

    python bench/detect_shards.py [PATH] [--calls N] [--workers 1,2] [--layout 'surge;feed,anomaly,forecaster']
                                  [--compress F] [--runs 3] [--profile TOML] [--no-parts] [--json out.json]

Reads PATH (default: the real Montgomery file when ``../shared/data`` is
present, else a simulator file) through its source mapping, turns the calls
into detector-input messages of 1,000 points (as the counting agent sends
them: partition, offset, event time, res-8 cell, category, priority), and feeds
them to the worker's :class:`~streams.detection.runner.DetectionRunner` (the
profile's suite and forecaster; ``--profile``, default the Montgomery profile
in ``infra/jurisdictions``), as ``bench/throughput.py``'s ``detection_cost``
does in-process:

``workers``  for each count in ``--workers``, the stage split over that many
             processes (:func:`streams.detection.shards.layout`: each runs its
             share of the detectors over every call), forked with the messages
             in memory and started together; the stage's rate is the calls over
             its slowest worker's time, by CPU time (the figure on a shared
             machine) and by wall clock (what the machine gave it);
``parts``    one single-worker run with a timer (thread CPU time) around each
             part: decode, de-dup and reorder, each detector's ``learn_one``
             and ``advance``, drift, the forecaster (the snapshot of the last
             quarter hour crossed, taken after each message as the agent does,
             apart); the timers' own cost is in the "rest" line;
``extras``   what the agent does beside the runner: a forecast set built from a
             snapshot (``make_set``, in a thread in the worker) and a checkpoint
             (``pickle.dumps`` of the runner, every ``WF_DETECTOR_CHECKPOINT_S``).

The machine is shared: the median of ``--runs`` is reported, with each run and
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
import types
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, add_json, add_runs, default_source, parser, write_json

from detectors.forecast import ShiftForecaster
from detectors.forecast_monitor import ForecastMonitor
from streams.detection.runner import DetectionRunner, encode_points
from streams.detection.shards import check_parts, layout, worker_runner
from streams.forecasting.build import Places
from streams.forecasting.issuer import make_set
from streams.ingest.replay import plan_replay
from streams.ingest.sources import detect_format
from streams.jurisdiction.profile import Profile, load_profile
from streams.topics import CALLS, topic_name

#: The Montgomery County profile shipped with the project.
MONTGOMERY_PROFILE = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"
#: Points per detector-input message (the counting agent's batches are up to this size under load).
MESSAGE_POINTS = 1000

Point = tuple[int, int, float, str, str, int | None]


def _say(msg: str) -> None:
    print(f"[detect_shards] {msg}", file=sys.stderr, flush=True)


def load_points(path: Path, calls: int | None, compress: float = 1.0) -> list[Point]:
    """The calls of ``path`` as detector-input points ``(partition, offset, t, cell, category, priority)``, in event-time order;
    ``compress`` > 1 brings them that many times closer in time (a denser centre: more calls per event minute)."""
    import h3

    records, _ = plan_replay(path, detect_format(path), "bench", calls)
    topic = topic_name("bench", CALLS)
    points: list[Point] = []
    for r in records:
        if r.topic != topic:
            continue
        c = json.loads(r.value)
        if c.get("lat") is None or c.get("lng") is None or (c["lat"] == 0 and c["lng"] == 0):
            continue
        t = datetime.fromisoformat(c["received_at"].replace("Z", "+00:00")).timestamp()
        cell = sys.intern(h3.latlng_to_cell(c["lat"], c["lng"], 8))
        points.append((0, len(points), t, cell, sys.intern(c["category"]), c.get("priority")))
    points.sort(key=lambda p: p[2])
    t0 = points[0][2] if points else 0.0
    return [(0, i, t0 + (t - t0) / compress, cell, cat, pr) for i, (_, _, t, cell, cat, pr) in enumerate(points)]


def messages(points: list[Point], size: int = MESSAGE_POINTS) -> list[bytes]:
    """``points`` as detector-input messages of ``size`` points each."""
    return [encode_points(points[i : i + size]) for i in range(0, len(points), size)]


def make_runner(profile: Profile) -> DetectionRunner:
    """The single worker's runner for ``profile`` (as :meth:`streams.detection.agent.DetectionAgent.runner` makes it)."""
    return worker_runner(layout(1)[0], profile)


def run_total(msgs: list[bytes], runner: DetectionRunner) -> tuple[float, float, list[str]]:
    """CPU seconds and wall seconds to feed every message (and flush) to ``runner``, and the alert records made (as JSON).

    CPU time is the figure: on a shared machine the wall clock also counts the time other processes held the core.
    """
    alerts = []
    c0, w0 = time.process_time(), time.perf_counter()
    for m in msgs:
        alerts += runner.feed(m, wall=0.0)
        runner.forecasts_due()  # the agent takes the set due after each message (and builds it in a thread)
    alerts += runner.flush()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return cpu, wall, [json.dumps(a.to_json(), sort_keys=True) for a in alerts]


# -- the parts ---------------------------------------------------------------------


class Timers:
    """Seconds and calls per part, from wrappers set on the runner's objects (removed by :meth:`remove`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._set: list[tuple[object, str, Callable[..., Any]]] = []

    def wrap(self, obj: object, method: str, part: str) -> None:
        """Time ``obj.method`` as ``part``. Objects pickled while timed (the forecaster and its monitor, in each
        snapshot) are timed through their class, so that no wrapper is in their instance's state."""
        if type(obj) in _BY_CLASS:
            obj = type(obj)
        inner: Callable[..., Any] = getattr(obj, method)
        seconds, calls, clock = self.seconds, self.calls, time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[part] += clock() - t0
                calls[part] += 1

        setattr(obj, method, timed)
        self._set.append((obj, method, inner))

    def remove(self) -> None:
        for obj, method, inner in reversed(self._set):
            if isinstance(obj, types.ModuleType | type):
                setattr(obj, method, inner)
            else:
                delattr(obj, method)  # the instance attribute: the class's method shows again
        self._set.clear()


#: Classes whose instances are pickled while timed: timed through the class.
_BY_CLASS = (ShiftForecaster, ForecastMonitor)

#: (part, where, method, parent part or None): the timers set by :func:`run_parts`; a part with a parent is
#: included in its parent's time.
PARTS = (
    ("decode", "runner_module", "decode_message|decode_points", None),
    ("reorder (merge.add, merge.release)", "merge", "add,release|push", None),
    ("surge: learn_one", "surge", "learn_one", None),
    ("  of which the baseline's learn_one", "baseline", "learn_one", "surge: learn_one"),
    ("surge: advance (scan, lifecycle)", "surge", "advance", None),
    ("  of which the jurisdiction's test", "surge", "_evaluate_jurisdiction", "surge: advance (scan, lifecycle)"),
    ("  of which re-scoring open alerts", "surge", "_rescore", "surge: advance (scan, lifecycle)"),
    ("  of which the lifecycle", "surge", "_lifecycle", "surge: advance (scan, lifecycle)"),
    ("feed monitor: learn_one", "feed", "learn_one", None),
    ("feed monitor: advance", "feed", "advance", None),
    ("zone watch: learn_one", "zones", "learn_one", None),
    ("zone watch: advance", "zones", "advance", None),
    ("anomaly (Half-Space Trees): learn_one", "anomaly", "learn_one", None),
    ("anomaly (Half-Space Trees): advance", "anomaly", "advance", None),
    ("drift (hourly residuals, alert rates)", "runner", "_track_hour", None),
    ("drift: record_time", "drift", "record_time", None),
    ("forecaster: learning a call", "forecasting", "_learn", None),
    ("  of which ShiftForecaster.learn_one", "forecaster", "learn_one", "forecaster: learning a call"),
    ("  of which the forecast monitor", "monitor", "learn_one", "forecaster: learning a call"),
    ("forecaster: the snapshot of the last quarter hour", "forecasting", "_snapshot", None),
)


def run_parts(msgs: list[bytes], profile: Profile) -> dict[str, Any]:
    """One run with a timer on each part: seconds per part, the timed total, the runner (timers removed)."""
    import streams.detection.runner as runner_module

    runner = make_runner(profile)
    suite = runner.suite
    where: dict[str, object] = {
        "runner_module": runner_module,
        "runner": runner,
        "merge": runner._merge,
        "surge": suite.surge,
        "baseline": suite.surge.baseline,
        "feed": suite.feed,
        "zones": suite.zones,
        "anomaly": suite.extra[0],
        "drift": runner.drift,
        "forecasting": runner.forecasting,
        "forecaster": runner.forecasting.forecaster,
        "monitor": runner.forecasting.monitor,
    }
    timers = Timers()
    for part, obj, methods, _ in PARTS:
        # "a,b|c": a and b if the first exists, else c (the runner's API as it stands)
        for choice in methods.split("|"):
            names = choice.split(",")
            if hasattr(where[obj], names[0]):
                for method in names:
                    timers.wrap(where[obj], method, part)
                break
    t0 = time.process_time()
    for m in msgs:
        runner.feed(m, wall=0.0)
        runner.forecasts_due()
    runner.flush()
    timed_total = time.process_time() - t0
    timers.remove()
    return {"seconds": dict(timers.seconds), "calls": dict(timers.calls), "timed_total": timed_total, "runner": runner}


def extras(runner: DetectionRunner, profile: Profile, points: list[Point], sets: int = 3) -> dict[str, Any]:
    """What the agent does beside the runner: building forecast sets, and one checkpoint of the runner."""
    t0 = time.process_time()
    blob = pickle.dumps(runner, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_s = time.process_time() - t0
    places = Places.from_profile(profile)
    # the next quarter hours after the stream's end make snapshots: build a few
    forecasting = runner.forecasting
    t_end = points[-1][2]
    build_s: list[float] = []
    snapshot_s: list[float] = []
    from detectors.types import CallPoint

    for k in range(sets):
        t = t_end + 900.0 * (k + 1)
        s0 = time.process_time()
        forecasting.advance(t)
        snapshot_s.append(time.process_time() - s0)
        issue = forecasting.take()
        if issue is None:
            continue
        b0 = time.process_time()
        made = make_set(issue, places, time.time())
        build_s.append(time.process_time() - b0)
        forecasting.published(made, build_s[-1])
    del CallPoint
    span_h = (points[-1][2] - points[0][2]) / 3600.0
    return {
        "checkpoint_bytes": len(blob),
        "checkpoint_s": pickle_s,
        "forecast_set_build_s": statistics.median(build_s) if build_s else None,
        "forecast_snapshot_s": statistics.median(snapshot_s) if snapshot_s else None,
        "forecast_sets_per_event_hour": 4.0,
        "calls_per_event_hour": len(points) / span_h if span_h > 0 else None,
    }


# -- the stage split over worker processes ----------------------------------------------


def _worker(parts: tuple[str, ...], profile: Profile, msgs: list[bytes], start: Any, out: Any) -> None:
    """One detection worker process: its runner, every message, its CPU and wall seconds sent on ``out``."""
    runner = worker_runner(parts, profile)
    start.wait()
    cpu, wall, records = run_total(msgs, runner)
    out.send((cpu, wall, records))
    out.close()


def run_workers(msgs: list[bytes], profile: Profile, workers: int, placed: tuple[tuple[str, ...], ...] | None = None) -> dict[str, Any]:
    """The stage on ``workers`` processes (:func:`streams.detection.shards.layout`), each fed every message from memory
    (forked with the list, as the Kafka consumer would hand them over), started together; each one's CPU and wall seconds."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start = ctx.Barrier(len(placed if placed is not None else layout(workers)) + 1)
    procs, pipes = [], []
    placed = placed if placed is not None else layout(workers)
    for parts in placed:
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(parts, profile, msgs, start, there), name=f"detect-{'+'.join(parts)}")
        proc.start()
        procs.append(proc)
        pipes.append(here)
    start.wait()
    w0 = time.perf_counter()
    got = [pipe.recv() for pipe in pipes]
    wall = time.perf_counter() - w0
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"detection worker {proc.name} exited with {proc.exitcode}")
    return {
        "workers": workers,
        "parts": [list(p) for p in placed],
        "cpu_s": [g[0] for g in got],
        "wall_s": [g[1] for g in got],
        "alerts": [len(g[2]) for g in got],
        "records": sorted(r for g in got for r in g[2]),
        "stage_wall_s": wall,
        "load_average": os.getloadavg()[0],
    }


# -- what a split by place would cost -------------------------------------------------------


def border_copies(points: list[Point], resolution: int, shards: int) -> dict[str, Any]:
    """A split by region, costed: parents of ``resolution`` placed on ``shards`` by their calls (greedy, busiest first),
    and each call sent to every shard owning a cell within two rings of it (the surge scan's disks around its cell and
    its neighbours); how many times each call is sent, on average, and each shard's own calls.

    >>> pts = [(0, i, float(i), "882aac941dfffff", "EMS", None) for i in range(3)]
    >>> border_copies(pts, 5, 2)["copies_per_call"]
    1.0
    """
    import collections

    import h3

    cells = collections.Counter(p[3] for p in points)
    per_parent: collections.Counter[str] = collections.Counter()
    for cell, n in cells.items():
        per_parent[str(h3.cell_to_parent(cell, resolution))] += n
    owned = [0] * shards
    owner: dict[str, int] = {}
    for parent, n in per_parent.most_common():
        k = owned.index(min(owned))
        owner[parent], owned[k] = k, owned[k] + n
    sent = 0
    for cell, n in cells.items():
        need = {owner.get(str(h3.cell_to_parent(c, resolution)), -1) for c in h3.grid_disk(cell, 2)} - {-1}
        sent += n * len(need)
    return {"resolution": resolution, "shards": shards, "parents": len(per_parent), "owned": owned, "copies_per_call": sent / len(points)}


# -- running -------------------------------------------------------------------------


def run(
    path: Path,
    calls: int | None,
    profile: Profile,
    runs: int,
    workers: tuple[int, ...],
    parts: bool,
    compress: float = 1.0,
    layouts: tuple[tuple[tuple[str, ...], ...], ...] = (),
) -> dict[str, Any]:
    """Read the calls; time the stage on each number of ``workers`` (:func:`~streams.detection.shards.layout`) and each
    of ``layouts`` ``runs`` times, then (``parts``) one run with timers."""
    placements: dict[str, tuple[tuple[str, ...], ...]] = {str(w): layout(w) for w in workers}
    placements.update({" | ".join("+".join(p) for p in placed): placed for placed in layouts})
    _say(f"reading {path.name} ...")
    points = load_points(path, calls, compress)
    msgs = messages(points)
    n = len(points)
    _say(f"{n:,} calls in {len(msgs):,} messages")
    by_workers: dict[str, list[dict[str, Any]]] = {key: [] for key in placements}
    reference: list[str] | None = None
    identical = True
    for i in range(runs):
        for w, placed in placements.items():
            got = run_workers(msgs, profile, len(placed), placed)
            records = got.pop("records")
            reference = records if reference is None else reference
            got["identical"] = records == reference
            identical = identical and got["identical"]
            by_workers[w].append(got)
            _say(
                f"run {i + 1}/{runs}, {len(placed)} worker(s) ({w}): {n / got['stage_wall_s']:,.0f} calls/s (wall clock), "
                f"{n / max(got['cpu_s']):,.0f} calls/s (slowest worker's CPU time; each: "
                f"{', '.join(f'{c:.1f}' for c in got['cpu_s'])} s), {sum(got['alerts'])} alert records, "
                f"{'the same as' if got['identical'] else 'NOT the same as'} the first run's, load average {got['load_average']:.2f}"
            )
    result: dict[str, Any] = {
        "source": path.name,
        "profile": profile.id,
        "calls": n,
        "messages": len(msgs),
        "compress": compress,
        "calls_per_event_hour": n / max((points[-1][2] - points[0][2]) / 3600.0, 1e-9) if points else 0.0,
        "workers": {w: summarize_workers(n, got) for w, got in by_workers.items()},
        "identical": identical,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    result["borders"] = [border_copies(points, res, k) for res in (4, 5) for k in (2, 4)]
    if parts:
        _say("one run with a timer on each part ...")
        timed = run_parts(msgs, profile)
        _say("forecast sets and a checkpoint ...")
        result.update(
            parts_s=timed["seconds"],
            parts_calls=timed["calls"],
            timed_total_s=timed["timed_total"],
            extras=extras(timed["runner"], profile, points),
        )
    result["load_average"] = os.getloadavg()
    return result


def summarize_workers(n: int, got: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one worker count: the stage's rate by wall clock and by its slowest worker's CPU time.

    >>> s = summarize_workers(1000, [{"stage_wall_s": 2.0, "cpu_s": [1.0, 0.5], "alerts": [3, 4], "parts": [["a"], ["b"]],
    ...                               "load_average": 1.0}])
    >>> s["calls_per_s_wall"], s["calls_per_s_cpu"], s["alerts"]
    (500.0, 1000.0, 7)
    """
    return {
        "parts": got[0]["parts"],
        "calls_per_s_wall": statistics.median(n / g["stage_wall_s"] for g in got),
        "calls_per_s_cpu": statistics.median(n / max(g["cpu_s"]) for g in got),
        "cpu_s_per_worker": [statistics.median(g["cpu_s"][k] for g in got) for k in range(len(got[0]["cpu_s"]))],
        "runs_wall": [n / g["stage_wall_s"] for g in got],
        "runs_cpu": [n / max(g["cpu_s"]) for g in got],
        "alerts": sum(got[0]["alerts"]),
        "load_average": [g["load_average"] for g in got],
    }


def report(r: dict[str, Any]) -> str:
    n = r["calls"]
    head = f"{n:,} calls of {r['source']} (profile {r['profile']}), {r['messages']:,} messages of {MESSAGE_POINTS:,} points"
    if r.get("compress", 1.0) != 1.0:
        head += f", times compressed {r['compress']:g} times"
    lines = [f"{head}, {r.get('calls_per_event_hour', 0.0):,.0f} calls per event hour, {r['date']}", ""]
    lines.append(f"{'workers':>7}  {'calls/s (CPU)':>13} {'calls/s (wall)':>14} {'alerts':>6}  parts (CPU s each)   runs: CPU, wall @ load")
    for row in r["workers"].values():
        each = ", ".join(f"{'+'.join(p)} {c:.1f}" for p, c in zip(row["parts"], row["cpu_s_per_worker"], strict=True))
        marks = zip(row["runs_cpu"], row["runs_wall"], row["load_average"], strict=True)
        runs = "; ".join(f"{c:,.0f}, {x:,.0f} @ {ld:.1f}" for c, x, ld in marks)
        rates = f"{row['calls_per_s_cpu']:13,.0f} {row['calls_per_s_wall']:14,.0f}"
        lines.append(f"{len(row['parts']):>7}  {rates}  {row['alerts']:6}  {each}   {runs}")
    if "parts_s" in r:
        lines += ["", f"{'part (one run with timers, thread CPU time)':44} {'µs/call':>8} {'share':>7}"]
        timed = r["timed_total_s"]
        top = 0.0
        parents = {part: parent for part, _, _, parent in PARTS}
        for part, _, _, _ in PARTS:
            sec = r["parts_s"].get(part, 0.0)
            if parents[part] is None:
                top += sec
            lines.append(f"{part:44} {sec / n * 1e6:8.1f} {sec / timed:7.1%}")
        lines.append(f"{'rest (feed loop, suite, timers themselves)':44} {(timed - top) / n * 1e6:8.1f} {(timed - top) / timed:7.1%}")
        lines.append(f"{'timed total (process CPU time)':44} {timed / n * 1e6:8.1f}")
        x = r["extras"]
        lines += [
            "",
            f"checkpoint: {x['checkpoint_bytes'] / 1024:,.0f} KiB pickled in {x['checkpoint_s'] * 1000:.1f} ms "
            f"(every WF_DETECTOR_CHECKPOINT_S = 5 s: {x['checkpoint_s'] / 5:.1%} of a core)",
        ]
        if x["forecast_set_build_s"] is not None:
            lines.append(
                f"forecast set: snapshot {x['forecast_snapshot_s'] * 1000:.1f} ms (in learn_one), "
                f"built in {x['forecast_set_build_s']:.2f} s "
                f"(make_set, in a thread); one due per 15 min of event time, {x['calls_per_event_hour'] / 4:.1f} calls apart on this file"
            )
    for b in r.get("borders", []):
        lines.append(
            f"split by res-{b['resolution']} region over {b['shards']} shards ({b['parents']} regions): each call sent "
            f"{b['copies_per_call']:.2f} times (within 2 rings of a border), the shards' own calls {b['owned']}"
        )
    same = "the same alert records in every run and worker count" if r["identical"] else "alert records DIFFER between runs"
    lines.append(f"{same}; load average at the end: {', '.join(f'{v:.2f}' for v in r['load_average'])} (2 cores, shared)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", type=Path, help="CSV to read (default: the real Montgomery file, else the simulator)")
    p.add_argument("--calls", type=int, default=None, help="first N calls only (default: all)")
    p.add_argument("--profile", type=Path, default=MONTGOMERY_PROFILE, help="jurisdiction profile (TOML) (default %(default)s)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to time (1 to 4; default %(default)s)")
    p.add_argument(
        "--layout",
        action="append",
        default=[],
        metavar="PARTS;PARTS",
        help="also time this placement: workers separated by ';', each one's parts by ',' (e.g. 'surge;feed,anomaly,forecaster')",
    )
    p.add_argument("--no-parts", action="store_true", help="skip the run with a timer on each part")
    p.add_argument("--compress", type=float, default=1.0, help="bring the calls this many times closer in time (default 1: as recorded)")
    add_runs(p, 3, "runs of each worker count; the median is reported")
    add_json(p)
    args = p.parse_args(argv)
    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
        for w in workers:
            layout(w)
    except ValueError as exc:
        p.error(f"--workers: {exc}")
    try:
        layouts = tuple(tuple(check_parts(w.split(",")) for w in spec.split(";")) for spec in args.layout)
        for placed in layouts:
            if sorted(q for w in placed for q in w) != sorted(layout(1)[0]):
                raise ValueError(f"{' ; '.join(','.join(w) for w in placed)} does not place every part exactly once")
    except ValueError as exc:
        p.error(f"--layout: {exc}")
    if not args.compress >= 1.0:
        p.error(f"--compress must be a number >= 1, found {args.compress}")
    with tempfile.TemporaryDirectory(prefix="detect-shards-") as tmp:
        path = args.path or default_source(Path(tmp), args.calls or 100_000)
        result = run(path, args.calls, load_profile(args.profile), args.runs, workers, not args.no_parts, args.compress, layouts)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
