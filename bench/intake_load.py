"""The HTTP intake under load: concurrent CAD sources pushing calls and status changes, then the counts checked.

Usage::

    python bench/intake_load.py [--rates 100,1000] [--seconds 30] [--sources 50]

Needs the local stack (``python -m infra.stack up``). On its own topics and
Redis prefix it starts a counting worker (``WF_ROLES=count``) and the intake
(``python -m streams.intake``, its sources file made here: ``--sources``
sources, each with its own agency and a rate limit well above its share) as
child processes. For each offered load, every source pushes signed requests
every ``--interval`` seconds for ``--seconds`` (the sources' requests spread
evenly over the interval, as independent CADs' are): its share of the new calls
(``rate / sources`` a second), the ``dispatched`` update of the calls of its
previous request and the ``closed`` update of the one before (the calls are
live: event time is when they are sent). A request that is not answered 200 is
sent again, as a CAD would (the idempotency keys make that safe), until it is.
Prints per load the accepted records a second, p50/p99/max answer time, the
answers by status, the intake's CPU (share of one core), and whether Redis, once the worker caught up, holds exactly
what the intake acknowledged: calls (``events_total|call`` and the sum of the
finest-resolution minute buckets), updates (``events_total|update``) and calls
still open. Saves JSON to ``out/bench/intake_load.json``.

Where the answer time goes: the intake runs with ``WF_INTAKE_STAGE_TIMING=1`` and each
answer's ``Server-Timing`` header gives its stages (:mod:`streams.intake.timing`); per load
the bench prints each stage's mean, p50, p99 and mean over the slowest 1 % of requests,
``outside`` (the client's answer time minus the intake's), how late the load generator's
own loop woke, the intake's share of time waiting for a core, and how long the intake,
Redis and Kafka waited for a core during the slowest 1 % (``/proc/.../schedstat``).
``--raw PATH`` appends every request to a JSON-lines file; ``--intake-nice N`` runs the
intake at nice ``N``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import h3
import numpy as np
import redis
from _common import ROOT, add_json, cpu_s, parser, require_stack, write_json

from infra import stack
from infra.processes import free_port
from streams.counting.keys import Keys
from streams.ingest.schema import format_time
from streams.intake.auth import sign
from streams.intake.timing import STAGES, parse_server_timing
from streams.runtime.progress import wait_caught_up
from streams.runtime.settings import load_settings

#: A box the bench's calls fall in (any city's would do: the intake and worker assume none).
BOX = (47.50, -122.45, 47.75, -122.25)


def _say(msg: str) -> None:
    print(f"[intake_load] {msg}", file=sys.stderr, flush=True)


class Proc:
    """A child process with its log, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stack.terminate(self.proc, 30)


def _call(cid: str, agency: str, now: float, rng: random.Random) -> dict:
    return {
        "type": "call", "v": 1, "id": cid, "received_at": format_time(round(now, 3)), "category": rng.choice(["EMS", "FIRE", "TRAFFIC"]),
        "call_type": "BENCH", "priority": rng.randint(1, 5), "lat": round(rng.uniform(BOX[0], BOX[2]), 5),
        "lng": round(rng.uniform(BOX[1], BOX[3]), 5), "agency": agency, "source": "x",
    }  # fmt: skip


def _update(cid: str, status: str, now: float) -> dict:
    return {"type": "update", "v": 1, "call_id": cid, "status": status, "at": format_time(round(now, 3)), "unit": "U1", "source": "x"}


class Tally:
    """What one load's sources saw: answer times, statuses, and the records acknowledged."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.sent_at: list[float] = []  # time.time() each request was sent
        #: per answered request: seconds by stage from its Server-Timing header (the intake runs with WF_INTAKE_STAGE_TIMING=1)
        self.stages: list[dict[str, float]] = []
        self.statuses: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.calls: set[str] = set()
        self.updates: Counter[str] = Counter()  # accepted updates by status
        self.closed: set[str] = set()


async def _source(
    session: aiohttp.ClientSession,
    url: str,
    sid: str,
    secret: bytes,
    rate: float,
    interval: float,
    seconds: float,
    tally: Tally,
    seed: int,
    tag: str,
    phase: float,
) -> None:
    rng = random.Random(seed)
    start = time.monotonic() + phase * interval  # sources spread over the interval, as independent CADs are
    await asyncio.sleep(phase * interval)
    owed = 0.0
    prev: list[str] = []
    prev2: list[str] = []
    n = 0
    tick = 0
    while time.monotonic() - start < seconds:
        owed += rate * interval
        k = int(owed)
        owed -= k
        now = time.time()
        new = [f"{sid}-{tag}-{n + i}" for i in range(k)]  # unique across loads: each load's calls are new
        n += k
        events = [_call(c, f"agency-{sid}", now, rng) for c in new]
        events += [_update(c, "dispatched", now) for c in prev] + [_update(c, "closed", now) for c in prev2]
        prev2, prev = prev, new
        if events:
            await _push(session, url, sid, secret, json.dumps({"events": events}).encode(), tally)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * interval - time.monotonic()))


async def _push(session: aiohttp.ClientSession, url: str, sid: str, secret: bytes, body: bytes, tally: Tally) -> None:
    for _attempt in range(100):
        stamp = str(int(time.time()))
        headers = {"X-Watchfloor-Source": sid, "X-Watchfloor-Timestamp": stamp, "X-Watchfloor-Signature": sign(secret, stamp, body)}
        t0 = time.perf_counter()
        tally.sent_at.append(time.time())
        async with session.post(url, data=body, headers=headers) as resp:
            answer = await resp.json()
            tally.latencies.append(time.perf_counter() - t0)
            tally.stages.append(parse_server_timing(resp.headers.get("Server-Timing", "")))
            tally.statuses[resp.status] += 1
            if resp.status == 200:
                for r in answer["records"]:
                    tally.outcomes[r["outcome"]] += 1
                    if r["outcome"] != "accepted":
                        continue
                    if "|" in r["id"]:
                        cid, status, _ = r["id"].split("|")
                        tally.updates[status] += 1
                        if status == "closed":
                            tally.closed.add(cid)
                    else:
                        tally.calls.add(r["id"])
                return
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
    raise RuntimeError(f"source {sid}: a request was not accepted after 100 attempts")


def redis_figures(settings, client: redis.Redis) -> dict:
    keys = Keys(settings.redis_prefix)
    metrics = client.hgetall(keys.metrics)
    finest = settings.h3_resolution
    bucketed = 0
    for minute in client.zrange(keys.buckets, 0, -1):
        for fld, v in client.hgetall(keys.bucket(int(minute))).items():
            cell, _, cat = fld.decode().partition("|")
            if cat == "ALL" and h3.get_resolution(cell) == finest:
                bucketed += int(v)
    open_now = sum(int(v) for f, v in client.hgetall(keys.open).items() if h3.get_resolution(f.decode()) == finest)
    return {
        "calls": int(metrics.get(b"events_total|call", 0)),
        "updates": int(metrics.get(b"events_total|update", 0)),
        "bucketed_calls": bucketed,
        "open": open_now,
        "dead_letters": sum(int(v) for f, v in metrics.items() if f.startswith(b"deadletter_total")),
    }


async def _loop_lag(lags: list[float], tick: float = 0.01) -> None:
    """How late this (the load generator's) event loop wakes from ``tick``-second sleeps: time its sources' answers wait too."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - t0 - tick)


async def one_load(
    url: str, sources: list[str], secret: bytes, rate: float, interval: float, seconds: float, tag: str
) -> tuple[Tally, float, list[float]]:
    tally = Tally()
    lags: list[float] = []
    per_source = rate / len(sources)
    lag = asyncio.create_task(_loop_lag(lags))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(sources))) as session:
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                _source(session, url, sid, secret, per_source, interval, seconds, tally, i, tag, i / len(sources))
                for i, sid in enumerate(sources)
            )
        )
        took = time.monotonic() - t0
    lag.cancel()
    return tally, took, lags


def stage_breakdown(tally: Tally) -> dict:
    """Per stage (the intake's Server-Timing, plus ``outside``: the client's answer time minus the intake's total,
    i.e. the network, the intake's loop before the handler ran and the load generator's own loop), in ms: the mean,
    p50 and p99 over all requests, and the mean over the slowest 1 % of requests by client answer time."""
    rows = [(lat, st) for lat, st in zip(tally.latencies, tally.stages, strict=True) if "total" in st]
    if not rows:
        return {}
    names = [s for s in STAGES if any(s in st for _, st in rows)] + ["total", "outside"]

    def value(lat: float, st: dict[str, float], name: str) -> float:
        return 1000 * (lat - st["total"] if name == "outside" else st.get(name, 0.0))

    slow = sorted(rows, key=lambda r: r[0])[-max(1, len(rows) // 100) :]
    out = {}
    for name in names:
        v = np.array([value(lat, st, name) for lat, st in rows])
        out[name] = {
            "mean_ms": float(v.mean()),
            "p50_ms": float(np.percentile(v, 50)),
            "p99_ms": float(np.percentile(v, 99)),
            "slowest_1pct_mean_ms": float(np.mean([value(lat, st, name) for lat, st in slow])),
        }
    return out


def stage_table(breakdown: dict) -> str:
    head = f"{'stage':>12} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'slowest 1% mean':>16}"
    rows = [head, "-" * len(head)]
    for name, r in breakdown.items():
        rows.append(f"{name:>12} {r['mean_ms']:>8.2f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['slowest_1pct_mean_ms']:>16.2f}")
    return "\n".join(rows)


def run(rates: list[float], seconds: float, n_sources: int, interval: float, raw: Path | None = None, intake_nice: int = 0) -> dict:
    prefix = f"bintake{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        {},
        kafka_bootstrap=f"{stack.KAFKA_HOST}:{stack.kafka_port()}",
        redis_url=f"redis://{stack.KAFKA_HOST}:{stack.redis_port()}/0",
        topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-{prefix}", roles=("count",),
    )  # fmt: skip
    stack.create_topics(prefix, settings.partitions)
    tmp = Path(tempfile.mkdtemp(prefix="intake-load-"))
    secret = secrets.token_urlsafe(48)
    sources = [f"cad{i:02d}" for i in range(n_sources)]
    (tmp / "sources.toml").write_text(
        "".join(f'[source.{s}]\nagency = "agency-{s}"\nsecret_env = "WF_BENCH_INTAKE_SECRET"\nrate = 100000\n\n' for s in sources)
    )
    port = free_port()
    env = {
        "WF_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "WF_REDIS_URL": settings.redis_url, "WF_TOPIC_PREFIX": prefix,
        "WF_REDIS_PREFIX": prefix, "WF_APP_ID": settings.app_id, "WF_PARTITIONS": str(settings.partitions), "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    worker = Proc([sys.executable, "-m", "streams.runtime.worker", "-l", "warn"], {**env, "WF_ROLES": "count"}, tmp / "worker.log")
    intake = Proc(
        [sys.executable, "-m", "streams.intake"],
        {
            **env,
            "WF_INTAKE_PORT": str(port),
            "WF_INTAKE_SOURCES": str(tmp / "sources.toml"),
            "WF_BENCH_INTAKE_SECRET": secret,
            "WF_INTAKE_STAGE_TIMING": "1",
        },  # fmt: skip
        tmp / "intake.log",
    )
    if intake_nice:
        os.setpriority(os.PRIO_PROCESS, intake.proc.pid, intake_nice)  # its threads are created later: they inherit it
    client = redis.Redis.from_url(settings.redis_url)
    results: dict = {
        "intake_nice": intake_nice,
        "logs": str(tmp),
        "sources": n_sources,
        "interval_s": interval,
        "seconds": seconds,
        "loads": [],
    }
    try:
        _wait_healthy(port)
        url = f"http://127.0.0.1:{port}/v1/events"
        for n_load, rate in enumerate(rates):
            _say(f"{rate:g} calls/s from {n_sources} sources for {seconds:g} s")
            before = redis_figures(settings, client)
            cpu0 = cpu_s(intake.proc.pid)
            wait0 = run_queue_wait_s(intake.proc.pid)
            sampler = WaitSampler({"intake": intake.proc.pid, **_stack_pids()})
            sampler.start()
            tally, took, lags = asyncio.run(one_load(url, sources, secret.encode(), rate, interval, seconds, f"L{n_load}"))
            sampler.stop()
            intake_cpu = cpu_s(intake.proc.pid) - cpu0
            intake_wait = run_queue_wait_s(intake.proc.pid) - wait0
            drain0 = time.monotonic()
            wait_caught_up(settings, 600, lambda: _check_alive(worker, intake))
            drain = time.monotonic() - drain0
            after = redis_figures(settings, client)
            got = {k: after[k] - before[k] for k in after}
            accepted = tally.outcomes["accepted"]
            want = {
                "calls": len(tally.calls), "updates": sum(tally.updates.values()), "bucketed_calls": len(tally.calls),
                "open": len(tally.calls - tally.closed), "dead_letters": 0,
            }  # fmt: skip
            lat = np.array(tally.latencies) * 1000
            if raw is not None:
                _write_raw(raw, rate, tally)
            results["loads"].append(
                {
                    "offered_calls_per_s": rate,
                    "accepted_records_per_s": accepted / took,
                    "accepted_calls_per_s": len(tally.calls) / took,
                    "requests": len(tally.latencies),
                    "statuses": dict(tally.statuses),
                    "outcomes": dict(tally.outcomes),
                    "p50_ms": float(np.percentile(lat, 50)),
                    "p99_ms": float(np.percentile(lat, 99)),
                    "max_ms": float(lat.max()),
                    "intake_cores": intake_cpu / took,
                    "intake_waiting_for_a_core": intake_wait / took,
                    "worker_drain_s": drain,
                    "acknowledged": want,
                    "in_redis": got,
                    "exact": got == want,
                    "stages": stage_breakdown(tally),
                    "slowest_1pct_waiting_for_a_core_ms": _slow_waits(tally, sampler),
                    "client_loop_lag_ms": {
                        "p99": float(np.percentile(lags, 99)) * 1000 if lags else 0.0,
                        "max": max(lags, default=0.0) * 1000,
                    },
                }
            )
            _say(json.dumps(results["loads"][-1]))
            _say(f"{rate:g} calls/s, where the answer time went:\n{stage_table(results['loads'][-1]['stages'])}")
    finally:
        intake.stop()
        worker.stop()
        for key in client.scan_iter(f"{prefix}:*", count=10_000):
            client.delete(key)
        client.close()
    return results


def _write_raw(path: Path, rate: float, tally: Tally) -> None:
    """Append one JSON line per request: the load, when it was sent, its answer time and the intake's stages (seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for sent, lat, st in zip(tally.sent_at, tally.latencies, tally.stages, strict=True):
            out.write(json.dumps({"rate": rate, "sent_at": sent, "answer_s": lat, "stages": st}) + "\n")


def _stack_pids() -> dict[str, int]:
    """Redis's and Kafka's pids from the stack's pid files (those that are there)."""
    out = {}
    for name in ("redis", "kafka"):
        try:
            out[name] = int((stack.RUN / f"{name}.pid").read_text())
        except (OSError, ValueError):
            continue
    return out


def _slow_waits(tally: Tally, sampler: WaitSampler) -> dict[str, float]:
    """For the slowest 1 % of requests: the mean answer time and how long, meanwhile, each process waited for a core (ms)."""
    rows = sorted(zip(tally.latencies, tally.sent_at, strict=True))[-max(1, len(tally.latencies) // 100) :]
    out = {"answer": 1000 * float(np.mean([lat for lat, _ in rows]))}
    for name in sampler.pids:
        out[name] = 1000 * float(np.mean([sampler.during(name, t, t + lat) for lat, t in rows]))
    return out


def run_queue_wait_s(pid: int, *, all_threads: bool = False) -> float:
    """Seconds the main thread of process ``pid`` (or all its threads, added) has spent runnable but waiting for a core.

    From ``/proc/PID/task/TID/schedstat``. What an event loop loses to the other processes on the machine: every
    request it serves waits that long too.
    """
    tids = [p.name for p in Path(f"/proc/{pid}/task").iterdir()] if all_threads else [str(pid)]
    total = 0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e9


class WaitSampler(threading.Thread):
    """Samples, every ``period`` seconds, how long each process's main thread has waited for a core so far.

    :meth:`during` then tells how much of a request's answer time a process spent runnable but not running.
    """

    def __init__(self, pids: dict[str, int], period: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.times: list[float] = []
        self.waits: dict[str, list[float]] = {name: [] for name in pids}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                # Kafka's work is in its request-handler and network threads, not its main thread
                values = {name: run_queue_wait_s(pid, all_threads=name == "kafka") for name, pid in self.pids.items()}
            except OSError:
                return  # a process exited: the load reports it
            self.times.append(time.time())
            for name, v in values.items():
                self.waits[name].append(v)
            self._stop_event.wait(self.period)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def during(self, name: str, start: float, end: float) -> float:
        """Seconds ``name`` waited for a core between ``start`` and ``end`` (epoch s), interpolated between samples."""
        if len(self.times) < 2:
            return 0.0
        lo, hi = np.interp([start, end], self.times, self.waits[name])
        return float(hi - lo)


def _check_alive(*procs: Proc) -> None:
    for p in procs:
        if not p.alive():
            raise RuntimeError(f"a child process exited (code {p.proc.returncode}); see its log")


def _wait_healthy(port: int) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the intake did not answer /healthz on port {port} within 30 s")


def table(results: dict) -> str:
    head = (
        f"{'offered calls/s':>15} {'accepted rec/s':>14} {'calls/s':>8} {'requests':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'non-200':>7} {'intake CPU':>10} {'waits for CPU':>13} {'exact':>5}"
    )
    rows = [head, "-" * len(head)]
    for r in results["loads"]:
        non200 = sum(n for s, n in r["statuses"].items() if int(s) != 200)
        rows.append(
            f"{r['offered_calls_per_s']:>15,.0f} {r['accepted_records_per_s']:>14,.0f} {r['accepted_calls_per_s']:>8,.0f} "
            f"{r['requests']:>8,} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} "
            f"{non200:>7} {r['intake_cores']:>9.0%} {r['intake_waiting_for_a_core']:>12.0%} {'yes' if r['exact'] else 'NO':>5}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("--rates", default="100,1000", help="offered loads, new calls per second over all sources (default 100,1000)")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds each load is sustained (default 30)")
    p.add_argument("--sources", type=int, default=50, help="concurrent CAD sources (default 50)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between two requests of one source (default 0.5)")
    p.add_argument(
        "--intake-nice", type=int, default=0, help="the intake's nice value (negative: ahead of the machine's other processes; needs root)"
    )
    p.add_argument("--raw", type=Path, metavar="PATH", help="append every request (sent at, answer time, stages) to this JSON-lines file")
    add_json(p, ROOT / "out" / "bench" / "intake_load.json")
    args = p.parse_args(argv)
    try:
        rates = [float(x) for x in args.rates.split(",")]
    except ValueError:
        p.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(x <= 0 for x in rates) or args.seconds <= 0 or args.sources < 1 or args.interval <= 0:
        p.error("rates, --seconds, --sources and --interval must be positive")
    require_stack(p)
    results = run(rates, args.seconds, args.sources, args.interval, args.raw, args.intake_nice)
    print(table(results))
    for r in results["loads"]:
        lag = r["client_loop_lag_ms"]
        print(f"\n{r['offered_calls_per_s']:,.0f} calls/s, where the answer time went (load generator's loop late by p99 "
              f"{lag['p99']:.1f} ms, max {lag['max']:.1f} ms):")  # fmt: skip
        print(stage_table(r["stages"]))
        slow = r["slowest_1pct_waiting_for_a_core_ms"]
        print(f"the slowest 1 % (mean answer {slow['answer']:.1f} ms) waited for a core meanwhile: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in slow.items() if k != "answer"))  # fmt: skip
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; worker and intake logs in {results['logs']}")
    return 0 if all(r["exact"] for r in results["loads"]) else 1


if __name__ == "__main__":
    sys.exit(main())
