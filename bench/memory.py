"""Worker, gateway and Redis memory as the number of active H3 cells grows.

    python -m infra.stack up
    python bench/memory.py [--cells 1000,10000,100000] [--calls-per-cell 1] [--json out/bench/memory.json]

On its own topics and Redis prefix it starts a worker (both roles, default
settings) and a gateway (``python -m gateway``, counts frames every
``--counts-every`` s), connects one supervisor WebSocket client, and measures
a baseline with no calls. Then, for each N of ``--cells`` in increasing order,
it produces ``--calls-per-cell`` calls in each cell not yet used, so that N
distinct cells of the worker's finest resolution (res 8) are active: every
call's event time is the moment it is sent, so all of them are inside the
rolling windows (15 minutes, 1 hour, 24 hours) of the counts and of the
gateway's views. The cells are the N nearest (by grid distance) to the centre
of Montgomery County, PA; 100,000 res-8 cells (0.74 km² each, 74,000 km²) are a
disk about 300 km across, a state rather than a county (Montgomery is about
1,700 cells). The worker
accepts any coordinates unless ``WF_JURISDICTION`` is set (it is unset by
default); for this run it is set to the bounding box of the cells used, so the
check runs as in a configured deployment.

After each step, once the counting agent has applied every call, the detectors
have been fed every detector-input message, the supervisor has received two
counts frames computed after that, and ``GET /api/hotspots`` has been answered,
it records (after ``--settle`` s):

- the worker's and the gateway's resident memory (``/proc/PID/status`` VmRSS)
  and peak (VmHWM);
- Redis ``used_memory`` (``INFO memory``; the whole server, shared with anyone
  else using it) and the keys and bytes under this run's prefix
  (``MEMORY USAGE ... SAMPLES 0``, exact for this run);
- the detectors' checkpoint size, once it covers the step (it is saved every
  ``WF_DETECTOR_CHECKPOINT_S``, 5 s by default);
- the cells in the last counts frame, its size, and the hot-spots call's time;
- bytes per active cell: growth since the baseline over N.

The detectors start with no history, so they are warming up: they keep every
call in their per-cell windows and learn, but score nothing (their baseline
needs 24 hours and 1,000 calls); a warmed-up detector facing 100,000 new cells
at once is a storm, measured by ``bench/latency.py`` instead.

Prints a table and writes JSON (``--json``, default ``out/bench/memory.json``).
The run's topics, consumer groups and Redis keys are deleted at the end unless
``--keep``. No figure is asserted: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h3
import redis
from _common import ROOT, add_json, parser, proc_memory, require_stack, ruled, write_json

from bench.backfill import (
    checkpoint_bytes,
    delete_run,
    follow,
    machine,
    prefix_memory,
    progress_bar,
    wait_ready,
)
from gateway.tokens import issue
from infra import stack
from infra.processes import WorkerProcess, free_port
from streams.counting.keys import Keys
from streams.ingest.schema import Call, Category, Jurisdiction
from streams.runtime.settings import Settings, load_settings
from streams.topics import CALLS, topic_name

DEFAULT_JSON = ROOT / "out" / "bench" / "memory.json"
#: the middle of Montgomery County, PA (the simulator's default centre)
CENTRE = (40.15, -75.30)
CATEGORIES = (Category.EMS, Category.TRAFFIC, Category.FIRE)


def say(msg: str) -> None:
    print(f"[memory] {msg}", file=sys.stderr, flush=True)


def nearest_cells(n: int, resolution: int, centre: tuple[float, float] = CENTRE) -> list[str]:
    """The ``n`` cells of ``resolution`` nearest to ``centre`` by grid distance (ties by id): growing disks, nested.

    >>> cells = nearest_cells(7, 8)
    >>> cells[0] == h3.latlng_to_cell(*CENTRE, 8), sorted(cells) == sorted(h3.grid_disk(cells[0], 1))
    (True, True)
    """
    origin = h3.latlng_to_cell(*centre, resolution)
    k = 0
    while 3 * k * (k + 1) + 1 < n:
        k += 1
    rings = [sorted(h3.grid_ring(origin, i)) for i in range(k + 1)]
    return [c for ring in rings for c in ring][:n]


def jurisdiction_of(cells: list[str], margin_deg: float = 0.01) -> Jurisdiction:
    """A bounding box holding every cell's centre, with a margin."""
    lats, lngs = zip(*(h3.cell_to_latlng(c) for c in cells), strict=True)
    return Jurisdiction(min(lats) - margin_deg, min(lngs) - margin_deg, max(lats) + margin_deg, max(lngs) + margin_deg)


@dataclass
class Gateway:
    """A ``python -m gateway`` process on the run's Redis prefix, stopped by pid."""

    settings: Settings
    counts_every_s: float
    logs: Path
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.settings.redis_prefix}-gateway.log"

    def start(self, timeout_s: float = 30.0) -> Gateway:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
        env.update(
            WF_GATEWAY_SECRET=self.secret,
            WF_GATEWAY_PORT=str(self.port),
            WF_GATEWAY_COUNTS_S=str(self.counts_every_s),
            WF_REDIS_URL=self.settings.redis_url,
            WF_REDIS_PREFIX=self.settings.redis_prefix,
            WF_PARTITIONS=str(self.settings.partitions),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(ROOT),
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-level", "WARNING"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the gateway did not answer /healthz within {timeout_s:.0f} s:\n{self.log_tail()}")

    def token(self) -> str:
        return issue(self.secret.encode(), subject="bench-memory", role="supervisor", agency="bench", ttl_s=6 * 3600)

    def hotspots(self, token: str) -> dict:
        """``GET /api/hotspots`` (15 minutes, the default 200 hottest cells): seconds taken, bytes, cells returned."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/hotspots", headers={"Authorization": f"Bearer {token}"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read()
        return {"seconds": time.perf_counter() - t0, "bytes": len(body), "cells": len(json.loads(body)["cells"])}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stack.terminate(self.proc, 20)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


@dataclass
class Supervisor:
    """One supervisor's WebSocket: reads every frame and keeps what the counts frames said."""

    frames: int = 0
    counts_frames: list[tuple[float, int, int]] = field(default_factory=list)  # (receipt, cells, bytes)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: str | None = None

    async def run(self, url: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            async with connect(url, max_size=None, open_timeout=30) as ws:
                async for message in ws:
                    self.frames += 1
                    frame = json.loads(message)
                    if frame["type"] == "caught_up":
                        self.ready.set()
                    elif frame["type"] == "counts":
                        self.counts_frames.append((time.perf_counter(), len(frame["cells"]), len(message)))
        except ConnectionClosed as exc:
            self.closed = f"closed by the gateway: {exc}"

    async def counts_after(self, t: float, n: int = 2, timeout_s: float = 120.0) -> tuple[float, int, int]:
        """The ``n``-th counts frame received after ``t`` (the second one was computed entirely after ``t``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            after = [f for f in self.counts_frames if f[0] > t]
            if len(after) >= n:
                return after[n - 1]
            if self.closed:
                raise RuntimeError(self.closed)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"fewer than {n} counts frames within {timeout_s:.0f} s")


async def produce_calls(settings: Settings, cells: list[str], per_cell: int, first_id: int) -> int:
    """``per_cell`` calls at the centre of each cell, event time = when sent; calls sent."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    topic = topic_name(settings.topic_prefix, CALLS)
    bar = progress_bar(len(cells) * per_cell, "produced", "call")
    sent = 0
    try:
        pending = []
        for i, cell in enumerate(cells):
            lat, lng = h3.cell_to_latlng(cell)
            for _ in range(per_cell):
                cid = f"MEM-{first_id + sent}"
                call = Call(cid, time.time(), CATEGORIES[i % 3], "BENCH", None, lat, lng, "bench", "bench-memory")
                pending.append(await producer.send(topic, key=cid.encode(), value=json.dumps(call.to_json()).encode()))
                sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()
        await asyncio.gather(*pending)
        bar.update(len(pending))
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    return sent


def snapshot(client: redis.Redis, prefix: str, worker: WorkerProcess, gateway: Gateway) -> dict:
    info = client.info("memory")
    return {
        "worker": proc_memory(worker.proc.pid),
        "gateway": proc_memory(gateway.proc.pid),
        "redis_used_memory": info["used_memory"],
        "redis_prefix": prefix_memory(client, prefix),
        "checkpoint_bytes": checkpoint_bytes(client, prefix),
    }


async def measure(args: argparse.Namespace, logs: Path) -> dict:
    steps = sorted(set(args.cells))
    cells = nearest_cells(steps[-1], args.resolution)
    area = jurisdiction_of(cells)
    prefix = f"mem{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        {}, topic_prefix=prefix, redis_prefix=prefix, app_id=f"wf-bench-{prefix}", h3_resolution=args.resolution, jurisdiction=area
    )
    jurisdiction = f"{area.min_lat:.4f},{area.min_lng:.4f},{area.max_lat:.4f},{area.max_lng:.4f}"
    say(f"{len(cells):,} res-{args.resolution} cells around {CENTRE}; WF_JURISDICTION={jurisdiction}; topics {prefix}.*")
    stack.create_topics(prefix, settings.partitions)
    worker = WorkerProcess(
        settings, logs, f"{prefix}-worker", env={"WF_JURISDICTION": jurisdiction, "WF_H3_RESOLUTION": str(args.resolution)}
    )
    gateway = Gateway(settings, args.counts_every, logs)
    client = redis.Redis.from_url(settings.redis_url)
    supervisor = Supervisor()
    reader: asyncio.Task | None = None
    result: dict = {"prefix": prefix, "resolution": args.resolution, "jurisdiction": jurisdiction, "steps": []}
    try:
        worker.start()
        gateway.start()
        await asyncio.to_thread(wait_ready, worker)
        token = gateway.token()
        reader = asyncio.create_task(supervisor.run(f"ws://127.0.0.1:{gateway.port}/ws?token={token}"))
        await asyncio.wait_for(supervisor.ready.wait(), 30)
        await asyncio.sleep(args.settle)
        result["baseline"] = snapshot(client, prefix, worker, gateway)
        base = result["baseline"]
        say(f"baseline: worker {base['worker']['rss_mib']:.0f} MiB, gateway {base['gateway']['rss_mib']:.0f} MiB")
        done = 0
        for n in steps:
            t0 = time.perf_counter()
            say(f"step {n:,} cells: {args.calls_per_cell} call(s) in each of {n - done:,} new cells")
            await produce_calls(settings, cells[done:n], args.calls_per_cell, done * args.calls_per_cell)
            produced_s = time.perf_counter() - t0
            marks = await asyncio.to_thread(follow, settings, [worker], n * args.calls_per_cell, args.timeout)
            frame = await supervisor.counts_after(marks["detected"])
            hot = await asyncio.to_thread(gateway.hotspots, token)
            await asyncio.sleep(args.settle)
            if not gateway.alive():
                raise RuntimeError(f"the gateway exited:\n{gateway.log_tail()}")
            row = {
                "cells": n,
                "calls": n * args.calls_per_cell,
                "produce_s": produced_s,
                "counted_s": marks["counted"] - t0,
                "detected_s": marks["detected"] - t0,
                "counts_frame": {"cells": frame[1], "bytes": frame[2]},
                "hotspots": hot,
                **snapshot(client, prefix, worker, gateway),
            }
            row["per_cell_bytes"] = {
                "worker": (row["worker"]["rss_mib"] - base["worker"]["rss_mib"]) * 2**20 / n,
                "gateway": (row["gateway"]["rss_mib"] - base["gateway"]["rss_mib"]) * 2**20 / n,
                "redis_prefix": (row["redis_prefix"]["bytes"] - base["redis_prefix"]["bytes"]) / n,
                "checkpoint": (row["checkpoint_bytes"] - base["checkpoint_bytes"]) / n,
            }
            result["steps"].append(row)
            say(
                f"step {n:,}: counted {row['counted_s']:.1f} s, detected {row['detected_s']:.1f} s after the first call; "
                f"worker {row['worker']['rss_mib']:.0f} MiB, gateway {row['gateway']['rss_mib']:.0f} MiB, "
                f"Redis prefix {row['redis_prefix']['bytes'] / 2**20:.1f} MiB"
            )
            done = n
        metrics = {k.decode(): int(v) for k, v in client.hgetall(Keys(prefix).metrics).items()}
        result["worker_metrics"] = metrics
        result["supervisor"] = {"frames": supervisor.frames, "counts_frames": len(supervisor.counts_frames), "closed": supervisor.closed}
    finally:
        if reader is not None:
            reader.cancel()
        gateway.stop()
        worker.stop()
        if args.keep:
            say(f"kept topics {prefix}.* and Redis keys {prefix}:*; logs in {logs}")
        else:
            say(delete_run(settings, client))
        client.close()
    return result


# ---------------------------------------------------------------------- entry points


def _counts(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1000,10000, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"cell counts must be at least 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = parser(__file__, __doc__)
    p.add_argument("--cells", type=_counts, default=[1000, 10_000, 100_000], help="active cells at each step (default 1000,10000,100000)")
    p.add_argument("--calls-per-cell", type=int, default=1, help="calls produced in each new cell (default 1)")
    p.add_argument("--resolution", type=int, default=8, help="the worker's finest H3 resolution, WF_H3_RESOLUTION (default 8)")
    p.add_argument("--counts-every", type=float, default=5.0, help="seconds between the gateway's counts frames (default 5, its default)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each memory reading (default 2)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds one step may take to be counted and detected (default 1800)")
    p.add_argument("--keep", action="store_true", help="keep the run's topics and Redis keys (default: deleted at the end)")
    add_json(p, DEFAULT_JSON)
    return p


def run(args: argparse.Namespace) -> dict:
    """Measure every step (``args`` as :func:`build_parser` makes them); the figures as a JSON-ready dict."""
    require_stack()
    if args.calls_per_cell < 1 or not 0 <= args.resolution <= 15:
        raise ValueError("--calls-per-cell must be at least 1 and --resolution 0..15")
    started = time.perf_counter()
    logs = Path(tempfile.mkdtemp(prefix="wf-memory-"))
    result = asyncio.run(measure(args, logs))
    return {
        "benchmark": "memory",
        "settings": {k: getattr(args, k) for k in ("cells", "calls_per_cell", "resolution", "counts_every", "settle")},
        "machine": machine(),
        "summary": [summary(row) for row in result["steps"]],
        **result,
        "logs": str(logs),
        "wall_s": time.perf_counter() - started,
    }


def summary(row: dict) -> str:
    """One headline line for a step (``bench/all.py`` prints these)."""
    c = row["per_cell_bytes"]
    return (
        f"{row['cells']:,} active cells: worker {row['worker']['rss_mib']:.0f} MiB ({c['worker']:,.0f} B/cell), "
        f"gateway {row['gateway']['rss_mib']:.0f} MiB ({c['gateway']:,.0f} B/cell), "
        f"Redis {row['redis_prefix']['bytes'] / 2**20:.1f} MiB ({c['redis_prefix']:,.0f} B/cell)"
    )


def table(results: dict) -> str:
    mib = 2**20
    head = (
        f"{'cells':>8} {'counted s':>9} {'detected s':>10} {'worker MiB':>10} {'(peak)':>7} {'gateway MiB':>11} {'(peak)':>7} "
        f"{'Redis prefix MiB':>16} {'keys':>6} {'checkpoint MiB':>14} {'Redis used MiB':>14} "
        f"{'frame cells':>11} {'frame KiB':>9} {'hotspots s':>10}"
    )
    b = results["baseline"]
    rows = [
        f"{0:>8} {'':>9} {'':>10} {b['worker']['rss_mib']:>10.0f} {b['worker']['peak_mib']:>7.0f} {b['gateway']['rss_mib']:>11.0f} "
        f"{b['gateway']['peak_mib']:>7.0f} {b['redis_prefix']['bytes'] / mib:>16.1f} {b['redis_prefix']['keys']:>6,} "
        f"{b['checkpoint_bytes'] / mib:>14.2f} {b['redis_used_memory'] / mib:>14.0f}"
    ]
    for s in results["steps"]:
        rows.append(
            f"{s['cells']:>8,} {s['counted_s']:>9.1f} {s['detected_s']:>10.1f} {s['worker']['rss_mib']:>10.0f} "
            f"{s['worker']['peak_mib']:>7.0f} {s['gateway']['rss_mib']:>11.0f} {s['gateway']['peak_mib']:>7.0f} "
            f"{s['redis_prefix']['bytes'] / mib:>16.1f} {s['redis_prefix']['keys']:>6,} {s['checkpoint_bytes'] / mib:>14.2f} "
            f"{s['redis_used_memory'] / mib:>14.0f} {s['counts_frame']['cells']:>11,} {s['counts_frame']['bytes'] / 1024:>9.0f} "
            f"{s['hotspots']['seconds']:>10.2f}"
        )
    lines = [ruled(head, rows), "", f"{'bytes per active cell':>22} {'worker':>8} {'gateway':>8} {'Redis prefix':>12} {'checkpoint':>10}"]
    for s in results["steps"]:
        c = s["per_cell_bytes"]
        lines.append(
            f"{s['cells']:>15,} cells {c['worker']:>8,.0f} {c['gateway']:>8,.0f} {c['redis_prefix']:>12,.0f} {c['checkpoint']:>10,.0f}"
        )
    lines.append(
        f"\nres-{results['resolution']} cells, {results['settings']['calls_per_cell']} call(s) each, event time = send time; "
        "counted/detected: seconds from the step's first call produced;\n"
        "RSS after the step (peak = VmHWM); Redis prefix: MEMORY USAGE of this run's keys; Redis used: the whole (shared) server;\n"
        "frame: the supervisor's counts frame after the step; per cell: growth since the baseline (0 cells) over N. "
        f"Machine: {results['machine']['cpus']} cores, shared."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.calls_per_cell < 1 or not 0 <= args.resolution <= 15 or args.counts_every <= 0 or args.timeout <= 0:
        p.error("--calls-per-cell must be >= 1, --resolution 0..15, --counts-every and --timeout positive")
    try:
        results = run(args)
    except (RuntimeError, TimeoutError) as exc:
        print(f"memory: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    write_json(args.json, results)
    print(f"\nfigures written to {args.json}; worker and gateway logs in {results['logs']} (run took {results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
