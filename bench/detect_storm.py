"""The detectors alone in a storm: how many calls a second the worker's detector suite keeps up with.

Usage::

    python bench/detect_storm.py [--phases 100x60,1000x60] [--history-days 3] [--seed 11] [--checkpoint-s 5]

No Kafka, no Redis: the very suite the detection agent runs
(:func:`streams.detection.runner.default_suite`: surges, feed outages, event zones,
the call-mix anomaly) learns ``--history-days`` of the simulator's calls, then
takes each phase ``RATExSECONDS`` in turn: ``RATE`` calls a second of event
time, for ``SECONDS``, drawn from the history's places and categories (as
``bench/latency.py`` offers them live), plus 8 calls in one cell every 5
seconds (its event zone). A county at 100 calls a second after days at a
dozen an hour is a storm: every place is hot, dozens of alerts are open.

For each phase it prints the CPU time the suite took, the calls it processed
per second of that time (above the phase's rate: the detectors keep up; below:
they fall behind whatever else the machine does), the slowest single call, the
alert records and the open alerts at its end; JSON goes to ``--json``.

It also takes the detection agent's checkpoint every ``--checkpoint-s`` seconds
of event time (``WF_DETECTOR_CHECKPOINT_S``, default 5), as the agent does:
``pickle.dumps`` of the detectors, the copy taken while the agent holds its lock
(the *stall*: detector input waits meanwhile), then the HMAC signature
(:func:`streams.detection.checkpoint.sign`, taken off the lock). It prints each
phase's median and largest stall, signing time and checkpoint size; neither is
counted in the suite's CPU time. The
latency bench measures the whole pipeline; this one tells the detectors' part
of it, and does so with less noise (one process, no services).
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import sys
import time

import h3
from _common import ROOT, add_json, parser, write_json

from detectors.types import CallPoint
from detectors.zones import WatchedZone
from streams.detection import checkpoint
from streams.detection.runner import default_suite
from streams.ingest.simulator import Simulator

#: Event time of the first storm call (any instant works; the history ends here).
START = 1_780_000_000.0
BURST_EVERY_S, BURST_SIZE = 5.0, 8


def parse_phases(text: str) -> list[tuple[float, float]]:
    """``"100x60,1000x60"`` -> ``[(100.0, 60.0), (1000.0, 60.0)]``.

    >>> parse_phases("100x60, 1000x30")
    [(100.0, 60.0), (1000.0, 30.0)]
    >>> parse_phases("100")
    Traceback (most recent call last):
    ...
    ValueError: each phase is RATExSECONDS with both > 0 (such as 1000x60), got '100'
    """
    out = []
    for part in text.split(","):
        try:
            rate, seconds = (float(x) for x in part.strip().split("x"))
        except ValueError:
            rate = seconds = -1.0
        if not (rate > 0 and seconds > 0):
            raise ValueError(f"each phase is RATExSECONDS with both > 0 (such as 1000x60), got {part.strip()!r}")
        out.append((rate, seconds))
    return out


def take_checkpoint(suite: object, key: bytes) -> tuple[float, float, int]:
    """The agent's checkpoint of ``suite``: seconds under the lock (the copy), seconds signing, bytes."""
    began = time.perf_counter()
    payload = pickle.dumps(suite, protocol=pickle.HIGHEST_PROTOCOL)
    copied = time.perf_counter()
    blob = checkpoint.sign(payload, key, offset=0)
    return copied - began, time.perf_counter() - copied, len(blob)


def checkpoint_figures(taken: list[tuple[float, float, int]]) -> dict:
    """Median and largest stall (ms), median signing time (ms), median and largest size (MB) of ``taken``."""
    if not taken:
        return {"checkpoints": 0}
    stalls, signs, sizes = ([x[i] for x in taken] for i in range(3))
    return {
        "checkpoints": len(taken),
        "stall_ms_median": round(1000 * statistics.median(stalls), 1), "stall_ms_max": round(1000 * max(stalls), 1),
        "sign_ms_median": round(1000 * statistics.median(signs), 1),
        "size_mb_median": round(statistics.median(sizes) / 1e6, 2), "size_mb_max": round(max(sizes) / 1e6, 2),
    }  # fmt: skip


def run(phases: list[tuple[float, float]], history_days: float, seed: int, checkpoint_s: float = 5.0) -> dict:
    suite = default_suite()
    key = os.urandom(checkpoint.MIN_KEY_BYTES)
    history = []
    started = time.perf_counter()
    for sim in Simulator(seed=seed, start=START - history_days * 86400.0, days=history_days).calls():
        c = sim.call
        point = CallPoint(t=float(c.received_at), cell=h3.latlng_to_cell(c.lat, c.lng, 8), category=c.category.value)
        history.append((point.cell, point.category))
        suite.process(point)
    learnt_s = time.perf_counter() - started
    # the quietest place: a cell next to the history's first with no call in it, made an event zone
    zone_cell = next(c for c in h3.grid_ring(history[0][0], 3) if c not in {cell for cell, _ in history})
    suite.zones.set_zones([WatchedZone("bench-zone", "Bench gathering", [zone_cell], START - 60.0, START + 86400.0)])
    rng = random.Random(seed)
    t = START
    results = []
    for rate, seconds in phases:
        n, alerts, worst = int(rate * seconds), 0, 0.0
        next_burst, next_checkpoint, taken, outside = t + BURST_EVERY_S, t + checkpoint_s, [], 0.0
        began = time.process_time()
        for _ in range(n):
            t += 1.0 / rate
            points = [CallPoint(t=t, cell=cell, category=cat) for cell, cat in (history[rng.randrange(len(history))],)]
            if t >= next_burst:
                points += [CallPoint(t=t, cell=zone_cell, category="FIRE")] * BURST_SIZE
                next_burst += BURST_EVERY_S
            if t >= next_checkpoint:
                next_checkpoint += checkpoint_s
                aside = time.process_time()
                taken.append(take_checkpoint(suite, key))
                outside += time.process_time() - aside
            for point in points:
                one = time.perf_counter()
                alerts += len(suite.process(point))
                worst = max(worst, time.perf_counter() - one)
        cpu = time.process_time() - began - outside
        processed = n + BURST_SIZE * int(seconds / BURST_EVERY_S)
        results.append({
            "rate_per_s": rate, "seconds": seconds, "calls": processed, "cpu_s": round(cpu, 2),
            "calls_per_cpu_s": round(processed / cpu), "worst_call_ms": round(1000 * worst, 1),
            "alert_records": alerts, "open_surge_alerts": len(suite.surge._episodes),
            "checkpoint": checkpoint_figures(taken),
        })  # fmt: skip
    return {"history_calls": len(history), "history_days": history_days, "learnt_s": round(learnt_s, 2), "seed": seed, "phases": results}


def table(results: dict) -> str:
    lines = [
        f"history: {results['history_calls']:,} calls over {results['history_days']:g} days, learnt in {results['learnt_s']:.1f} s",
        f"{'calls/s':>8} {'s':>5} {'calls':>8} {'cpu s':>7} {'calls/cpu s':>12} {'worst ms':>9} {'alerts':>7} {'open':>5}",
    ]
    for p in results["phases"]:
        lines.append(
            f"{p['rate_per_s']:>8g} {p['seconds']:>5g} {p['calls']:>8,} {p['cpu_s']:>7.1f} {p['calls_per_cpu_s']:>12,} "
            f"{p['worst_call_ms']:>9.1f} {p['alert_records']:>7,} {p['open_surge_alerts']:>5}"
        )
    lines.append("calls/cpu s: calls the suite processed per second of its CPU time (above the rate: it keeps up, on one core)")
    lines.append("")
    head = ("calls/s", 8), ("checkpoints", 12), ("stall ms median", 16), ("stall ms max", 13)
    head += ("sign ms", 8), ("MB median", 10), ("MB max", 7)
    lines.append(" ".join(f"{name:>{width}}" for name, width in head))
    for p in results["phases"]:
        c = p["checkpoint"]
        if c["checkpoints"]:
            lines.append(
                f"{p['rate_per_s']:>8g} {c['checkpoints']:>12} {c['stall_ms_median']:>16.1f} {c['stall_ms_max']:>13.1f} "
                f"{c['sign_ms_median']:>8.1f} {c['size_mb_median']:>10.2f} {c['size_mb_max']:>7.2f}"
            )
    lines.append("stall: the checkpoint's copy (pickle.dumps), taken while the detection agent holds its lock; signing is off the lock")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phases", default="100x60,1000x60", help="storm phases RATExSECONDS, comma-separated (default 100x60,1000x60)")
    p.add_argument("--history-days", type=float, default=3.0, help="days of simulated calls learnt first (default 3, as bench/latency.py)")
    p.add_argument(
        "--checkpoint-s", type=float, default=5.0, help="seconds of event time between checkpoints (default 5, WF_DETECTOR_CHECKPOINT_S)"
    )
    p.add_argument("--seed", type=int, default=11, help="seed of the history and of the storm's draws (default 11)")
    add_json(p, ROOT / "out" / "bench" / "detect_storm.json")
    args = p.parse_args(argv)
    try:
        phases = parse_phases(args.phases)
    except ValueError as exc:
        p.error(str(exc))
    if not args.history_days > 0 or args.seed < 0 or not args.checkpoint_s > 0:
        p.error("--history-days and --checkpoint-s must be > 0 and --seed >= 0")
    results = run(phases, args.history_days, args.seed, args.checkpoint_s)
    print(table(results))
    write_json(args.json, results)
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
