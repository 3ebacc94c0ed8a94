"""Soak and burst: a sustained live load through a real worker and gateway with many WebSocket clients connected.

    python -m infra.stack up
    python bench/soak.py [--minutes 10] [--rate 1000] [--clients 1000] [--burst] [--normal-rate 100]

On its own topics and Redis prefix it starts a counting worker and a detection
worker (``WF_ROLES=count`` and ``detect``, as ``bench/latency.py`` does) and a
gateway (``python -m gateway``, counts frames every ``--counts-every`` s), warms
the detectors up with three days of simulated history ending now
(:func:`bench.latency.warm_up`), and connects ``--clients`` WebSocket clients
in this process, a mix of roles as in ``bench/gateway_fanout.py``: 20 %
supervisors, the rest transit and school partners round-robin over the zones in
``infra/zones``, with the tokens that bench makes.

**Soak.** Live calls (event time = the moment each is sent, spread over the
county like the history: :func:`bench.latency.offered_load`) at ``--rate``
per second for ``--minutes``. Every ``--sample-every`` seconds it records the
resident memory (``/proc/PID/status`` VmRSS) of both workers, the gateway and
redis-server (a server shared with anyone else using it), how far the
counting agent is behind (records in the ingest topics not yet applied in
Redis, :mod:`streams.runtime.progress`) and the detection agent (detector-input
messages not yet fed), and errors: clients closed by the gateway, ``error``
frames, a worker or the gateway exiting, and ERROR, CRITICAL or Traceback
lines in their logs. After the load it waits until both agents have caught up,
then checks that every alert appended to ``P:alerts`` during the soak reached
every supervisor once (missing and duplicated per client; partners' scoping
is tested elsewhere, here their frames are counted and their connections
watched), and that the calls were counted exactly (produced = applied offsets
= counted = the finest cells' ALL counts added in those minutes).

Memory: RSS before the load, at the start (the first sample after
``--warmup`` s of load: the storm has opened, buffers have grown), the
maximum, the end, and the growth per minute over the last half of the soak
(least-squares slope, with its standard error), judged against
``--max-growth-mib-per-min`` for the counting worker, its plan process and
the gateway. The detection worker keeps the calls of its windows, so it
grows until they hold their cap (``max_window_calls``): it is judged by its
maximum against ``--detect-ceiling-mib`` instead. redis-server's
figures are reported without a verdict: other runs share it, and the run's
own keys (call state and per-minute counts) are kept for days by design, so
their size (``MEMORY USAGE``, every minute) is shown next to it.

**Burst** (``--burst``, after the soak, same processes and clients): live
calls at ``--normal-rate`` for a minute, at 20 times that for a minute, then
at the normal rate for ``--tail`` s; lag is sampled every second. Reports the
maximum lag, the time from the end of the burst until the counting agent is
less than one second of normal traffic behind, and that nothing was lost
(the same exactness check over the burst's calls).

Prints the figures and writes JSON to ``--json`` (``out/bench/soak.json``).
Progress goes to stderr. The processes are stopped and the run's Redis keys,
topics and consumer groups deleted at the end, also after an error or Ctrl-C.
No figure is asserted: the machine (2 cores) is shared with Kafka, Redis and
whatever else runs at the time, so the figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h3
import numpy as np
import redis
from _common import ROOT, add_json, parser, proc_memory, require_stack, write_json

from bench.backfill import delete_run, machine, prefix_memory
from bench.gateway_fanout import (
    Fleet,
    ServerProcess,
    client_tokens,
    close_all,
    default_zones,
    free_port,
    gateway_server,
    raise_fd_limit,
    run_client,
)
from bench.latency import Proc, detection_offset, offered_load, warm_up
from infra import stack
from infra.processes import plan_processes
from streams.counting.keys import ALL, Keys
from streams.counting.planner import CALL
from streams.runtime.progress import detector_input_end, end_offsets, lag
from streams.runtime.settings import Settings, load_settings

DEFAULT_JSON = ROOT / "out" / "bench" / "soak.json"
#: what counts as an error line in the workers' and the gateway's logs
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
#: the burst is this many times the normal rate
BURST_FACTOR = 20
#: seconds the pipeline may take to catch up after a phase
DRAIN_S = 600.0
#: seconds clients' tokens live (the gateway accepts at most 12 h)
TOKEN_TTL_S = 6 * 3600


def say(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- what runs, and how it is stopped


@dataclass
class LogWatch:
    """Error lines appended to one log since the last look."""

    name: str
    path: Path
    pos: int = 0
    count: int = 0
    first: list[str] = field(default_factory=list)

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                text = f.read()
        except OSError:
            return self.count
        end = text.rfind(b"\n") + 1  # a partial last line is read next time
        self.pos += end
        for line in text[:end].decode(errors="replace").splitlines():
            if ERROR_LINE.search(line):
                self.count += 1
                if len(self.first) < 20:
                    self.first.append(line[:300])
        return self.count


@dataclass
class Run:
    """Everything this run started, so that :meth:`cleanup` can stop it whatever happened."""

    settings: Settings
    logs: Path
    client: redis.Redis
    workers: dict[str, Proc] = field(default_factory=dict)
    gateway: ServerProcess | None = None
    topics_created: bool = False
    #: set on SIGINT or SIGTERM: the waits in threads stop at their next check
    stopping: bool = False
    cleaned: bool = False

    def pids(self) -> dict[str, int | None]:
        """The processes whose memory is sampled: the workers, the gateway and redis-server."""
        out: dict[str, int | None] = {}
        for name, w in self.workers.items():
            out[f"worker ({name})"] = w.proc.pid
            for i, child in enumerate(plan_processes(w.proc.pid), start=1):  # one per committer (WF_COMMITTERS)
                out[f"plan process {i} ({name})"] = child
        out["gateway"] = self.gateway.proc.pid if self.gateway and self.gateway.proc else None
        out["redis-server"] = int(self.client.info("server")["process_id"])
        return out

    def exits(self) -> dict[str, int]:
        """Return codes of the processes that have exited."""
        out = {f"worker ({name})": w.proc.poll() for name, w in self.workers.items()}
        if self.gateway is not None and self.gateway.proc is not None:
            out["gateway"] = self.gateway.proc.poll()
        return {k: v for k, v in out.items() if v is not None}

    def check(self) -> None:
        """Raise when a worker or the gateway has exited, or the run is being stopped (for the waits)."""
        if self.stopping:
            raise RuntimeError("interrupted")
        if self.exits():
            raise RuntimeError(f"exited: {self.exits()}; logs in {self.logs}")

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        if self.gateway is not None:
            self.gateway.stop()
        for w in self.workers.values():
            w.stop()
        if self.topics_created:
            try:
                say(delete_run(self.settings, self.client))
            except Exception as exc:  # noqa: BLE001 -- report and go on: the processes are stopped already
                say(f"could not delete the run's keys and topics ({type(exc).__name__}: {exc}); prefix {self.settings.redis_prefix}")
        self.client.close()


# ---------------------------------------------------------------------- what the clients received


@dataclass
class Tally:
    """Alert frames per client, folded out of ``Fleet.arrivals`` as they come (so that list stays short).

    Supervisors (client indexes below ``supervisors``) keep every stream id they
    received, as references to one interned string per id; partners only a count.
    """

    n: int
    supervisors: int
    ids: dict[str, str] = field(default_factory=dict)
    received: list[list[str]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    #: clients whose connection ended (index -> when); ``failed``: those that never caught up
    ended: dict[int, float] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.received = [[] for _ in range(self.supervisors)]
        self.frames = [0] * self.n

    def absorb(self, fleet: Fleet) -> None:
        """Move the arrivals so far out of ``fleet`` (call from the event loop, between awaits)."""
        k = len(fleet.arrivals)
        batch = fleet.arrivals[:k]
        del fleet.arrivals[:k]
        for _, i, head in batch:
            self.frames[i] += 1
            if i < self.supervisors:
                sid = head.split('"', 1)[0]
                self.received[i].append(self.ids.setdefault(sid, sid))

    @property
    def total(self) -> int:
        return sum(self.frames)

    def delivery(self, wanted: list[str]) -> dict:
        """Per supervisor that connected, the ids of ``wanted`` it missed and received more than once."""
        want = set(wanted)
        missing, dups = [], []
        for i, got in enumerate(self.received):
            if i in self.failed:
                continue
            c = Counter(x for x in got if x in want)
            missing.append(len(want) - len(c))
            dups.append(sum(v - 1 for v in c.values()))
        sup_ended = sorted(i for i in self.ended if i < self.supervisors)
        return {
            "alerts": len(want),
            "supervisors": self.supervisors - len([i for i in self.failed if i < self.supervisors]),
            "supervisors_not_connected": len([i for i in self.failed if i < self.supervisors]),
            "supervisors_complete": sum(1 for m, d in zip(missing, dups, strict=True) if m == 0 and d == 0),
            "missing_total": sum(missing),
            "missing_max_per_client": max(missing, default=0),
            "clients_missing_some": sum(1 for m in missing if m),
            "duplicates_total": sum(dups),
            "duplicates_max_per_client": max(dups, default=0),
            "supervisors_disconnected": len(sup_ended),
        }


async def client(i: int, uri: str, fleet: Fleet, handshakes: asyncio.Semaphore, tally: Tally) -> None:
    """One client (:func:`bench.gateway_fanout.run_client`); notes when its connection ended."""
    try:
        await run_client(i, uri, fleet, handshakes, 60.0)
    finally:
        tally.ended[i] = time.time()


async def connect_fleet(port: int, tokens: list[str], handshakes: int, timeout_s: float) -> tuple[Fleet, Tally]:
    n = len(tokens)
    fleet = Fleet(n)
    tally = Tally(n, round(n * 0.2) if n > 1 else n)
    sem = asyncio.Semaphore(handshakes)
    t0 = time.perf_counter()
    fleet.tasks = [asyncio.create_task(client(i, f"ws://127.0.0.1:{port}/ws?token={tokens[i]}", fleet, sem, tally)) for i in range(n)]
    try:
        await asyncio.wait_for(fleet.all_settled.wait(), timeout_s)
    except TimeoutError:
        say(f"only {fleet.settled:,} of {n:,} clients settled within {timeout_s:.0f} s")
    say(f"{fleet.caught_up:,} of {n:,} clients caught up in {time.perf_counter() - t0:.1f} s; failures: {dict(fleet.failures) or 'none'}")
    tally.failed = set(tally.ended)  # failed to connect: counted as failures, not disconnects, and not expected to receive
    tally.ended.clear()
    tally.absorb(fleet)
    return fleet, tally


# ---------------------------------------------------------------------- samples


def last_alert_id(client: redis.Redis, prefix: str) -> str:
    last = client.xrevrange(Keys(prefix).alerts, count=1)
    return last[0][0] if last else "0-0"


def alert_ids_between(client: redis.Redis, prefix: str, after: str, upto: str) -> list[str]:
    """Stream ids of the alerts appended after ``after`` up to ``upto`` (inclusive)."""
    if upto == after:
        return []
    return [sid for sid, _ in client.xrange(Keys(prefix).alerts, min=f"({after}", max=upto)]


def lags(run: Run) -> tuple[int, int, int]:
    """(calls produced so far, ingest records not yet applied, detector-input messages not yet fed)."""
    s = run.settings
    ends = end_offsets(s)
    behind = sum(max(0, n) for n in lag(s, run.client, ends).values())
    produced = sum(v for (kind, _), v in ends.items() if kind == CALL)
    det_behind = max(0, detector_input_end(s) - 1 - detection_offset(run.client, s.redis_prefix))
    return produced, behind, det_behind


def take_sample(run: Run, pids: dict[str, int | None], watches: list[LogWatch], with_prefix: bool) -> dict:
    """One sample (blocking: run it in a thread)."""
    rss = {}
    for name, pid in pids.items():
        try:
            rss[name] = proc_memory(pid, with_plan_process=False)["rss_mib"] if pid is not None else None
        except OSError:
            rss[name] = None
    produced, behind, det_behind = lags(run)
    out = {
        "t": time.time(),
        "rss_mib": rss,
        "redis_used_mib": run.client.info("memory")["used_memory"] / 2**20,
        "produced": produced,
        "count_lag": behind,
        "detect_lag": det_behind,
        "exits": run.exits(),
        "log_errors": {w.name: w.poll() for w in watches},
    }
    if with_prefix:
        out["prefix_mib"] = prefix_memory(run.client, run.settings.redis_prefix)["bytes"] / 2**20
    return out


@dataclass
class Sampler:
    """Samples into one list, tagged with the phase, and folds the clients' frames in as it goes."""

    run: Run
    fleet: Fleet
    tally: Tally
    watches: list[LogWatch]
    samples: list[dict] = field(default_factory=list)
    prefix_every_s: float = 60.0
    _last_prefix: float = -math.inf

    async def sample(self, phase: str) -> dict:
        now = time.monotonic()
        with_prefix = now - self._last_prefix >= self.prefix_every_s
        if with_prefix:
            self._last_prefix = now
        s = await asyncio.to_thread(take_sample, self.run, self.run.pids(), self.watches, with_prefix)
        self.tally.absorb(self.fleet)
        s.update(
            phase=phase,
            alert_frames=self.tally.total,
            clients_connected=self.fleet.caught_up - len(self.tally.ended),
            closed_by_server=dict(self.fleet.closed),
            error_frames=self.fleet.other_frames.get("error", 0),
        )
        self.samples.append(s)
        return s

    async def during(self, task: asyncio.Task, phase: str, every_s: float, t0: float) -> None:
        """Sample every ``every_s`` until ``task`` is done; a progress line to stderr every ~10 s."""
        shown = -math.inf
        while not task.done():
            s = await self.sample(phase)
            if time.monotonic() - shown >= 9.5:
                shown = time.monotonic()
                say(progress_line(s, t0))
            await asyncio.wait({task}, timeout=max(0.0, every_s - (time.time() - s["t"])))

    async def load(self, producing: Coroutine[Any, Any, int], phase: str, every_s: float, t0: float) -> int:
        """Run ``producing`` (an offered load) while sampling; what it returns. Cancelled, it stops the producer first."""
        task = asyncio.create_task(producing)
        try:
            await self.during(task, phase, every_s, t0)
            return await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def drain(self, phase: str, t0: float, timeout_s: float = DRAIN_S) -> float | None:
        """Sample every second until both agents have caught up; seconds taken, or None after ``timeout_s``."""
        start = time.monotonic()
        shown = -math.inf
        while time.monotonic() - start < timeout_s:
            s = await self.sample(phase)
            if s["count_lag"] == 0 and s["detect_lag"] == 0:
                return time.monotonic() - start
            if s["exits"]:
                say(f"a process exited while draining: {s['exits']}")
                return None
            if time.monotonic() - shown >= 9.5:
                shown = time.monotonic()
                say(progress_line(s, t0))
            await asyncio.sleep(1.0)
        return None


def progress_line(s: dict, t0: float) -> str:
    rss = ", ".join(f"{k} {v:.0f}" for k, v in s["rss_mib"].items() if v is not None)
    errors = sum(s["log_errors"].values())
    return (
        f"{s['phase']} {s['t'] - t0:5.0f} s: {s['produced']:,} calls in Kafka; behind: {s['count_lag']:,} records, "
        f"{s['detect_lag']:,} detector msgs; RSS MiB: {rss}; clients {s['clients_connected']:,}, "
        f"{s['alert_frames']:,} alert frames; closed {s['closed_by_server'] or 0}, error frames {s['error_frames']}, "
        f"log errors {errors}, exits {s['exits'] or 0}"
    )


# ---------------------------------------------------------------------- exactness


def counted_snapshot(run: Run, from_minute: int) -> dict:
    """Calls in Kafka, applied offsets, the worker's counters and the finest cells' ALL counts from ``from_minute`` on."""
    s, r = run.settings, run.client
    keys = Keys(s.redis_prefix)
    ends = end_offsets(s)
    applied = r.mget([keys.offset(CALL, p) for p in range(s.partitions)])
    metrics = {k: int(v) for k, v in r.hgetall(keys.metrics).items()}
    minutes = [int(m) for m in r.zrangebyscore(keys.buckets, from_minute, "+inf")]
    finest = 0
    for i in range(0, len(minutes), 50):
        pipe = r.pipeline(transaction=False)
        for m in minutes[i : i + 50]:
            pipe.hgetall(keys.bucket(m))
        for h in pipe.execute():
            for fld, v in h.items():
                cell, _, cat = fld.partition("|")
                if cat == ALL and h3.get_resolution(cell) == s.h3_resolution:
                    finest += int(v)
    return {
        "in_kafka": sum(v for (kind, _), v in ends.items() if kind == CALL),
        "applied": sum(int(v) + 1 for v in applied if v is not None),
        "counted": metrics.get(f"events_total|{CALL}", 0),
        "dead_lettered": sum(v for k, v in metrics.items() if k.startswith("deadletter_total|")),
        "finest_all": finest,
    }


def exactness(before: dict, after: dict, sent: int) -> dict:
    """What the bench sent against what Kafka holds, what was applied, counted and dead-lettered, and the ALL counts added."""
    d = {k: after[k] - before[k] for k in before}
    out = {"sent": sent, **{f"{k}_added": v for k, v in d.items()}}
    out["exact"] = (
        d["in_kafka"] == sent and d["applied"] == sent and d["counted"] + d["dead_lettered"] == sent and d["finest_all"] == d["counted"]
    )
    return out


def bucket_minute(t: float) -> int:
    return int(t // 60)


# ---------------------------------------------------------------------- memory


def growth(samples: list[dict], name: str, t0: float, seconds: float, warmup_s: float) -> dict:
    """RSS of ``name`` before the load, at the start (first sample after ``warmup_s``), max, end, and the slope over the last half."""
    series = [(s["t"] - t0, s["rss_mib"].get(name)) for s in samples]
    series = [(t, v) for t, v in series if v is not None]
    if not series:
        return {}
    before = [v for t, v in series if t < 0]
    during = [(t, v) for t, v in series if 0 <= t <= seconds + 1]
    after_warmup = [v for t, v in during if t >= warmup_s]
    half = [(t, v) for t, v in during if t >= seconds / 2]
    out = {
        "before_load": before[-1] if before else None,
        "start": after_warmup[0] if after_warmup else None,
        "max": max(v for _, v in during) if during else None,
        "end": during[-1][1] if during else None,
    }
    out.update(slope(half))
    return out


def slope(points: list[tuple[float, float]]) -> dict:
    """Least-squares growth in MiB per minute of (seconds, MiB) points, with its standard error."""
    if len(points) < 3:
        return {"growth_mib_per_min": None, "growth_se": None, "fit_points": len(points)}
    t = np.array([p[0] for p in points]) / 60.0
    y = np.array([p[1] for p in points])
    b, a = np.polyfit(t, y, 1)
    resid = y - (a + b * t)
    se = math.sqrt(float(resid @ resid) / (len(points) - 2) / float(((t - t.mean()) ** 2).sum()))
    return {"growth_mib_per_min": float(b), "growth_se": se, "fit_points": len(points)}


# ---------------------------------------------------------------------- phases


async def soak_phase(args: argparse.Namespace, run: Run, sampler: Sampler, rows: list[dict], seq: list[int]) -> dict:
    seconds = args.minutes * 60
    prefix = run.settings.redis_prefix
    first = await asyncio.to_thread(last_alert_id, run.client, prefix)
    await sampler.sample("before")
    m0 = bucket_minute(time.time()) - 1  # the counts added from here on are the soak's calls
    before = await asyncio.to_thread(counted_snapshot, run, m0)
    say(f"soak: {args.rate:g} calls/s for {args.minutes:g} min with {sampler.fleet.caught_up:,} clients connected")
    t0 = time.time()
    sent = await sampler.load(offered_load(run.settings, rows, args.rate, seconds, None, seq), "soak", args.sample_every, t0)
    took = time.time() - t0
    say(f"soak load done: {sent:,} calls in {took:.0f} s; waiting for the pipeline to catch up")
    drained = await sampler.drain("soak-drain", t0)
    await asyncio.sleep(args.deliver_wait)  # the gateway reads the stream every few ms; let the last frames arrive
    await sampler.sample("soak-end")
    last = await asyncio.to_thread(last_alert_id, run.client, prefix)
    after = await asyncio.to_thread(counted_snapshot, run, m0)
    soak = [s for s in sampler.samples if s["phase"] == "soak"]
    return {
        "seconds": seconds,
        "offered_per_s": args.rate,
        "sent": sent,
        "achieved_per_s": sent / took,
        "t0": t0,
        "drain_s": drained,
        "alert_ids": (first, last),
        "max_count_lag": max((s["count_lag"] for s in soak), default=0),
        "max_detect_lag": max((s["detect_lag"] for s in soak), default=0),
        "count_lag_at_end": soak[-1]["count_lag"] if soak else None,
        "exactness": exactness(before, after, sent),
    }


async def burst_phase(args: argparse.Namespace, run: Run, sampler: Sampler, rows: list[dict], seq: list[int]) -> dict:
    prefix = run.settings.redis_prefix
    first = await asyncio.to_thread(last_alert_id, run.client, prefix)
    m0 = bucket_minute(time.time()) - 1
    before = await asyncio.to_thread(counted_snapshot, run, m0)
    t0 = time.time()
    plan = [("normal", args.normal_rate, 60.0), ("burst", BURST_FACTOR * args.normal_rate, 60.0), ("after", args.normal_rate, args.tail)]
    marks, sent = {}, {}
    for name, rate, seconds in plan:
        say(f"burst phase '{name}': {rate:g} calls/s for {seconds:g} s")
        marks[name] = time.time()
        sent[name] = await sampler.load(offered_load(run.settings, rows, rate, seconds, None, seq), f"burst-{name}", 1.0, t0)
    marks["end"] = time.time()
    drained = await sampler.drain("burst-drain", t0)
    await asyncio.sleep(args.deliver_wait)
    await sampler.sample("burst-end")
    last = await asyncio.to_thread(last_alert_id, run.client, prefix)
    after = await asyncio.to_thread(counted_snapshot, run, m0)
    phase = [s for s in sampler.samples if s["t"] >= t0 and s["phase"].startswith("burst")]
    burst_end = marks["after"]
    threshold = args.normal_rate  # one second's worth of normal records
    recovered = next((s["t"] - burst_end for s in phase if s["t"] >= burst_end and s["count_lag"] < threshold), None)
    peak = max(phase, key=lambda s: s["count_lag"], default=None)
    return {
        "normal_per_s": args.normal_rate,
        "burst_per_s": BURST_FACTOR * args.normal_rate,
        "sent": sent,
        "phase_starts": {k: v - t0 for k, v in marks.items()},
        "max_count_lag": peak["count_lag"] if peak else None,
        "max_count_lag_at_s": peak["t"] - t0 if peak else None,
        "max_detect_lag": max((s["detect_lag"] for s in phase), default=0),
        "count_lag_at_burst_end": next((s["count_lag"] for s in phase if s["t"] >= burst_end), None),
        "recovery_threshold_records": threshold,
        "recovered_s_after_burst": recovered,
        "drain_s_after_load": drained,
        "alert_ids": (first, last),
        "exactness": exactness(before, after, sum(sent.values())),
        "lag_series": [[round(s["t"] - t0, 1), s["count_lag"], s["detect_lag"]] for s in phase],
    }


async def measure(args: argparse.Namespace, run: Run) -> dict:
    # Ctrl-C and SIGTERM cancel this task (its clean-up runs) and stop the waits in threads;
    # asyncio.run then raises CancelledError, and main() stops the processes and deletes the keys
    me = asyncio.current_task()
    assert me is not None

    def interrupt() -> None:
        run.stopping = True
        me.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, interrupt)
    settings = run.settings
    prefix = settings.redis_prefix
    stack.create_topics(prefix, settings.partitions)
    run.topics_created = True
    env = {"WF_TOPIC_PREFIX": prefix, "WF_REDIS_PREFIX": prefix, "WF_APP_ID": settings.app_id, "WF_WEB_PORT": str(free_port())}
    worker = [sys.executable, "-m", "streams.runtime.worker", "-l", "warn"]
    run.workers["count"] = Proc(worker, {**env, "WF_ROLES": "count"}, run.logs / "worker-count.log")
    run.workers["detect"] = Proc(worker, {**env, "WF_ROLES": "detect", "WF_WEB_PORT": str(free_port())}, run.logs / "worker-detect.log")
    gw = gateway_server(prefix, settings.redis_url, 256, run.logs)  # the gateway's default queue
    gw.env["WF_GATEWAY_COUNTS_S"] = str(args.counts_every)
    run.gateway = gw
    gw.start()
    say(f"topics {prefix}.*, gateway on port {gw.port}; warming up: three days of simulated history, replayed at full speed")
    rows = await asyncio.to_thread(warm_up, settings, env, run.logs, run.check)
    say(f"history counted and learnt ({len(rows):,} calls); connecting {args.clients:,} clients, {args.handshakes} handshakes at a time")
    tokens = client_tokens(args.clients, True, default_zones(), ttl_s=TOKEN_TTL_S)
    fleet, tally = await connect_fleet(gw.port, tokens, args.handshakes, args.connect_timeout)
    watches = [LogWatch(f"worker ({n})", w.log) for n, w in run.workers.items()] + [LogWatch("gateway", gw.log_path)]
    for w in watches:
        w.poll()  # errors before the soak (start-up) are reported too: they are in the counts from here on
    sampler = Sampler(run, fleet, tally, watches)
    result: dict = {"prefix": prefix, "clients": {"requested": args.clients, "caught_up": fleet.caught_up,
                    "supervisors": tally.supervisors, "connect_failures": dict(fleet.failures)}}  # fmt: skip
    seq = [0]
    try:
        if args.minutes > 0:
            result["soak"] = await soak_phase(args, run, sampler, rows, seq)
        if args.burst:
            result["burst"] = await burst_phase(args, run, sampler, rows, seq)
        await sampler.sample("end")
        for phase in ("soak", "burst"):
            if phase in result:
                ids = await asyncio.to_thread(alert_ids_between, run.client, prefix, *result[phase]["alert_ids"])
                result[phase]["delivery"] = tally.delivery(ids)
        frames = [f for i, f in enumerate(tally.frames) if i >= tally.supervisors and i not in tally.failed]
        result["partners"] = {
            "clients": len(frames),
            "alert_frames": sum(frames),
            "min_per_client": min(frames, default=0),
            "median_per_client": float(np.median(frames)) if frames else 0,
            "max_per_client": max(frames, default=0),
            "disconnected": sum(1 for i in tally.ended if i >= tally.supervisors),
        }
        result["errors"] = {
            "closed_by_server": dict(fleet.closed),
            "clients_disconnected": len(tally.ended),
            "error_frames": fleet.other_frames.get("error", 0),
            "other_frames": dict(fleet.other_frames),
            "exits": run.exits(),
            "log_error_lines": {w.name: w.count for w in watches},
            "first_log_error_lines": {w.name: w.first for w in watches if w.first},
        }
    finally:
        result["samples"] = sampler.samples
        await close_all(fleet)
    return result


# ---------------------------------------------------------------------- report


def summarize(args: argparse.Namespace, result: dict) -> None:
    """Adds the memory figures and verdicts to ``result``."""
    soak = result.get("soak")
    if not soak:
        return
    names = list(result["samples"][0]["rss_mib"]) if result["samples"] else []
    mem = {n: growth(result["samples"], n, soak["t0"], soak["seconds"], args.warmup) for n in names}
    prefix_pts = [(s["t"] - soak["t0"], s["prefix_mib"]) for s in result["samples"] if "prefix_mib" in s]
    mem["this run's Redis keys"] = {
        "start": next((v for t, v in prefix_pts if t >= args.warmup), None),
        "end": next((v for t, v in reversed(prefix_pts) if 0 <= t <= soak["seconds"] + 1), None),
        **slope([(t, v) for t, v in prefix_pts if soak["seconds"] / 2 <= t <= soak["seconds"] + 1]),
    }
    for name, m in mem.items():
        g = m.get("growth_mib_per_min")
        if name == "worker (detect)":
            m["bound"] = f"{args.detect_ceiling_mib:g} max"
            m["verdict"] = "-" if m.get("max") is None else "PASS" if m["max"] <= args.detect_ceiling_mib else "FAIL"
        elif name.startswith(("worker", "plan process")) or name == "gateway":
            m["bound"] = f"{args.max_growth_mib_per_min:g}/min"
            m["verdict"] = "-" if g is None else "PASS" if g <= args.max_growth_mib_per_min else "FAIL"
        else:
            m["verdict"] = "-"
    soak["memory"] = mem
    verdicts = [m["verdict"] for m in mem.values() if m["verdict"] != "-"]
    if not verdicts:  # too few samples in the last half for a slope
        soak["memory_verdict"] = "n/a (soak too short to fit a slope)"
    else:
        soak["memory_verdict"] = "PASS" if all(v == "PASS" for v in verdicts) else "FAIL"


def _f(v, fmt: str = ".0f") -> str:
    return "-" if v is None else format(v, fmt)


def table(args: argparse.Namespace, result: dict) -> str:
    """The figures as text: clients, then the soak, the burst, partners and errors (each when run), and the notes."""
    lines = []
    c = result["clients"]
    lines.append(
        f"clients: {c['caught_up']:,} of {c['requested']:,} connected ({c['supervisors']:,} supervisors, the rest transit/school partners)"
        + (f"; connect failures {c['connect_failures']}" if c["connect_failures"] else "")
    )
    soak = result.get("soak")
    if soak:
        lines += _soak_lines(args, soak) + _soak_minutes(result["samples"], soak)
    burst = result.get("burst")
    if burst:
        lines += _burst_lines(args, burst)
    lines += _partner_and_error_lines(result)
    lines.append(
        "\nRSS: /proc VmRSS; start = first sample after "
        f"{args.warmup:g} s of load; growth: least-squares slope over the last half of the soak; redis-server is shared with other\n"
        "runs (no verdict), this run's keys: MEMORY USAGE under its prefix. Lag: ingest records in Kafka not yet applied in Redis. "
        f"Machine: {os.cpu_count()} cores, shared with Kafka, Redis and other work: figures are noisy."
    )
    return "\n".join(lines)


def _soak_lines(args: argparse.Namespace, soak: dict) -> list[str]:
    """The soak: load, lag, exactness, memory and delivery."""
    lines: list[str] = []
    ex = soak["exactness"]
    lines += [
        "",
        f"SOAK: {soak['seconds'] / 60:g} min at {soak['offered_per_s']:g} calls/s offered, {soak['achieved_per_s']:,.0f}/s achieved, "
        f"{soak['sent']:,} calls",
        f"  counting lag (records produced - applied): max {soak['max_count_lag']:,}, "
        f"at the end of the load {soak['count_lag_at_end']:,}; "
        f"detector-input lag max {soak['max_detect_lag']:,}; caught up {_f(soak['drain_s'], '.0f')} s after the load",
        f"  counted exactly: {'yes' if ex['exact'] else 'NO'} (sent {ex['sent']:,}, in Kafka +{ex['in_kafka_added']:,}, "
        f"applied +{ex['applied_added']:,}, counted +{ex['counted_added']:,}, dead-lettered +{ex['dead_lettered_added']:,}, "
        f"finest-cell ALL +{ex['finest_all_added']:,})",
        "",
        f"  {'memory, MiB':24} {'before load':>11} {'start':>7} {'max':>7} {'end':>7} {'growth MiB/min':>14} {'(± se)':>7} "
        f"{'bound':>9} verdict",
    ]
    for name, m in soak["memory"].items():
        bound = m.get("bound", "") if m["verdict"] != "-" else ""
        lines.append(
            f"  {name:24} {_f(m.get('before_load')):>11} {_f(m.get('start')):>7} {_f(m.get('max')):>7} {_f(m.get('end')):>7} "
            f"{_f(m.get('growth_mib_per_min'), '+.2f'):>14} {_f(m.get('growth_se'), '.2f'):>7} {bound:>9} {m['verdict']}"
        )
    lines.append(
        f"  memory bound (the counting worker, its plan process and the gateway grow at most {args.max_growth_mib_per_min:g} "
        f"MiB/min over the last half; the detection worker stays under {args.detect_ceiling_mib:g} MiB): "
        f"{soak['memory_verdict']}"
    )
    lines += _delivery_lines(soak.get("delivery"))
    return lines


def _soak_minutes(samples: list[dict], soak: dict) -> list[str]:
    """The soak minute by minute: calls in Kafka, lags, each process's memory, alert frames, clients."""
    lines: list[str] = []
    lines += ["", "  per minute of the soak:", f"  {'min':>4} {'calls in Kafka':>14} {'count lag':>9} {'detect lag':>10} "
              + " ".join(f"{n:>15}" for n in soak["memory"] if n != "this run's Redis keys")
              + f" {'alert frames':>12} {'clients':>7}"]  # fmt: skip
    rows = [s for s in samples if s["phase"] in ("soak", "soak-drain", "soak-end")]
    shown = -1
    for s in rows:
        minute = int((s["t"] - soak["t0"]) // 60)
        if minute > shown or s is rows[-1]:
            shown = minute
            lines.append(
                f"  {(s['t'] - soak['t0']) / 60:4.1f} {s['produced']:>14,} {s['count_lag']:>9,} {s['detect_lag']:>10,} "
                + " ".join(f"{_f(v):>15}" for v in s["rss_mib"].values())
                + f" {s['alert_frames']:>12,} {s['clients_connected']:>7,}"
            )
    return lines


def _burst_lines(args: argparse.Namespace, burst: dict) -> list[str]:
    """The burst: lag, recovery, exactness and delivery."""
    lines: list[str] = []
    ex = burst["exactness"]
    lines += [
        "",
        f"BURST: {burst['normal_per_s']:g} calls/s for 60 s, {burst['burst_per_s']:g}/s for 60 s, {burst['normal_per_s']:g}/s for "
        f"{args.tail:g} s; sent {burst['sent']}",
        f"  max counting lag {burst['max_count_lag']:,} records ({_f(burst['max_count_lag_at_s'], '.0f')} s after the phase began); "
        f"at the end of the burst {_f(burst['count_lag_at_burst_end'], ',')}; max detector-input lag {burst['max_detect_lag']:,}",
        f"  back under {burst['recovery_threshold_records']:g} records (one second of normal traffic) "
        f"{_f(burst['recovered_s_after_burst'], '.1f')} s after the burst ended; "
        f"fully caught up {_f(burst['drain_s_after_load'], '.1f')} s "
        "after the load stopped",
        f"  nothing lost: {'yes' if ex['exact'] else 'NO'} (sent {ex['sent']:,}, in Kafka +{ex['in_kafka_added']:,}, "
        f"applied +{ex['applied_added']:,}, counted +{ex['counted_added']:,}, dead-lettered +{ex['dead_lettered_added']:,}, "
        f"finest-cell ALL +{ex['finest_all_added']:,})",
    ]
    lines += _delivery_lines(burst.get("delivery"))
    return lines


def _partner_and_error_lines(result: dict) -> list[str]:
    """What the partners received, and every error seen."""
    lines: list[str] = []
    p = result.get("partners")
    if p:
        lines += [
            "",
            f"partners: {p['clients']:,} clients, {p['alert_frames']:,} alert frames (per client min {p['min_per_client']:,}, "
            f"median {p['median_per_client']:,.0f}, max {p['max_per_client']:,}); disconnected {p['disconnected']}",
        ]
    e = result.get("errors")
    if e:
        lines.append(
            f"errors: clients disconnected {e['clients_disconnected']} (close codes {e['closed_by_server'] or 'none'}), "
            f"error frames {e['error_frames']}, process exits {e['exits'] or 'none'}, ERROR lines in logs {e['log_error_lines']}"
        )
        for name, first in e["first_log_error_lines"].items():
            lines += [f"  {name}: {x}" for x in first[:3]]
    return lines


def _delivery_lines(d: dict | None) -> list[str]:
    if d is None:
        return []
    return [
        f"  alerts appended during the phase: {d['alerts']:,}; supervisors with every one exactly once: "
        f"{d['supervisors_complete']:,} of the {d['supervisors']:,} connected; "
        f"missing {d['missing_total']:,} (max {d['missing_max_per_client']:,} per client, {d['clients_missing_some']} clients), "
        f"duplicates {d['duplicates_total']:,}; "
        f"supervisors disconnected {d['supervisors_disconnected']}"
    ]


# ---------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = parser(__file__, __doc__)
    p.add_argument("--minutes", type=float, default=10.0, help="soak duration in minutes (default 10; 0 skips the soak)")
    p.add_argument("--rate", type=float, default=1000.0, help="soak load, calls per second (default 1000)")
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients connected throughout, 20%% supervisors (default 1000)")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples during the soak (default 10)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the 'start' memory reading (default 60)")
    p.add_argument(
        "--detect-ceiling-mib",
        type=float,
        default=400.0,
        help="memory bound of the detection worker, whose windows fill up to their cap: its largest RSS during the soak (default 400)",
    )
    p.add_argument(
        "--max-growth-mib-per-min",
        type=float,
        default=2.0,
        help="memory bound: largest RSS growth per minute over the last half of the soak for the counting worker, its plan process "
        "and the gateway (default 2)",
    )
    p.add_argument("--burst", action="store_true", help="after the soak, run the burst phase")
    p.add_argument(
        "--normal-rate", type=float, default=100.0, help=f"burst phase: normal rate, calls/s; the burst is {BURST_FACTOR}x (default 100)"
    )
    p.add_argument("--tail", type=float, default=120.0, help="burst phase: seconds of normal rate after the burst (default 120)")
    p.add_argument("--counts-every", type=float, default=5.0, help="seconds between the gateway's counts frames (default 5, its default)")
    p.add_argument("--handshakes", type=int, default=100, help="client handshakes in flight at once (default 100)")
    p.add_argument("--connect-timeout", type=float, default=300.0, help="seconds all clients may take to catch up (default 300)")
    p.add_argument(
        "--deliver-wait", type=float, default=5.0, help="seconds to wait for the last frames after the pipeline caught up (default 5)"
    )
    add_json(p, DEFAULT_JSON)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.minutes < 0 or args.rate <= 0 or args.clients < 1 or args.normal_rate <= 0 or args.sample_every <= 0 or args.tail < 0:
        p.error("--minutes must be >= 0; --rate, --clients, --normal-rate and --sample-every positive; --tail >= 0")
    if args.minutes == 0 and not args.burst:
        p.error("nothing to do: --minutes 0 without --burst")
    require_stack(p)
    fd_limit = raise_fd_limit(args.clients + 256)
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    settings = load_settings({}, topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-bench-{prefix}", partitions=4)
    logs = Path(tempfile.mkdtemp(prefix="wf-soak-"))
    run = Run(settings, logs, redis.Redis.from_url(settings.redis_url, decode_responses=True))
    say(f"prefix {prefix}; logs in {logs}; open-file limit {fd_limit}")
    started = time.time()
    try:
        result = asyncio.run(measure(args, run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; cleaning up")
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        say(f"failed: {type(exc).__name__}: {exc}; cleaning up (logs in {logs})")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # the clean-up takes up to a minute: let it finish
            signal.signal(sig, signal.SIG_IGN)
        run.cleanup()
    summarize(args, result)
    result = {
        "benchmark": "soak",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": machine(),
        "logs": str(logs),
        "wall_s": time.time() - started,
        **result,
    }
    print(table(args, result))
    write_json(args.json, result, default=str)
    print(f"\nfigures written to {args.json}; worker and gateway logs in {logs} (run took {result['wall_s'] / 60:.1f} min)")
    ok = result.get("soak", {}).get("memory_verdict", "PASS") != "FAIL"
    for phase in ("soak", "burst"):
        if phase in result:
            d = result[phase].get("delivery", {})
            ok = ok and result[phase]["exactness"]["exact"] and not d.get("missing_total") and not d.get("duplicates_total")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
