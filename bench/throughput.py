"""Events per second from Kafka into exact Redis counts, next to the framework's ceilings.

    python -m infra.stack up
    python bench/throughput.py [PATH] [--calls 50000]

Loads ``--calls`` calls (and their incident updates) from PATH (default: the
real Montgomery file when ``../shared/data`` is present, else a simulator file)
into fresh topics, then reads the same records, in the same run, with:

1. a bare aiokafka consumer (no processing: the machine's ceiling),
2. a bare Faust agent iterating events one at a time, doing nothing,
3. the same bare agent iterating ``take_events`` batches like the worker,
4. the Watchfloor worker (validation, H3, planning, the atomic Redis commit).

Rates are records over the time from the first record read to the last, so
start-up and group joins are excluded. Prints a table and writes JSON with
``--json``. The worker's counts are checked for exactness at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra import stack  # noqa: E402
from streams.replay import Pace, plan_replay, produce  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.state import RedisState  # noqa: E402
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name  # noqa: E402
from tests.stackutil import WorkerProcess, wait_caught_up  # noqa: E402

READERS = ("bare aiokafka consumer", "bare Faust agent (events)", "bare Faust agent (take_events)", "Watchfloor worker -> Redis")
MONTGOMERY = ROOT.parent / "shared" / "data" / "montgomery-pa-911-2015-12-to-2016-08.csv"


def default_source(workdir: Path, calls: int) -> tuple[Path, str]:
    if MONTGOMERY.exists():
        return MONTGOMERY, "montgomery-pa"
    out = workdir / "sim.csv"
    days = max(2, calls // 380 + 2)
    subprocess.run(
        [sys.executable, "-m", "streams.simulator", "--out", str(out), "--days", str(days), "--no-progress"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out, "watchfloor"


async def bare_aiokafka(settings, topics: list[str], expect: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    n, t0 = 0, 0.0
    try:
        while n < expect:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if n == 0 and records:
                    t0 = time.perf_counter()
                n += len(records)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


def bare_faust(settings, topics: list[str], expect: int, mode: str, workdir: Path) -> float:
    out = workdir / f"bare-{mode}.json"
    env = {
        **os.environ,
        "BARE_TOPICS": ",".join(topics),
        "BARE_EXPECT": str(expect),
        "BARE_OUT": str(out),
        "BARE_APP_ID": f"bare-{mode}-{uuid.uuid4().hex[:8]}",
        "BARE_BOOTSTRAP": settings.kafka_bootstrap,
        "BARE_MODE": mode,
    }
    with open(workdir / f"bare-{mode}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bare_faust.py"), "worker", "-l", "warn"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not out.exists():
        tail = (workdir / f"bare-{mode}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the bare Faust agent ({mode}) exited with {proc.returncode} without a result:\n{tail}")
    return json.loads(out.read_text())["seconds"]


def watchfloor_worker(settings, expect: int, workdir: Path) -> tuple[float, dict]:
    import redis

    from streams.keys import Keys

    keys = Keys(settings.redis_prefix)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    offsets = [keys.offset(kind, p) for kind in ("call", "update") for p in range(settings.partitions)]
    worker = WorkerProcess(settings, workdir, "worker").start()
    t0 = t1 = 0.0
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = sum(int(v) + 1 for v in client.mget(offsets) if v is not None)
            now = time.perf_counter()
            if done and not t0:
                t0 = now
            if done >= expect:
                t1 = now
                break
            time.sleep(0.02)
        wait_caught_up(settings, [worker])
    finally:
        worker.stop()
        client.close()

    async def metrics():
        st = RedisState.from_settings(settings)
        try:
            return await st.metrics(), await st.bucket_counts()
        finally:
            await st.close()

    m, counts = asyncio.run(metrics())
    counted = sum(n for (_, cell, cat), n in counts.items() if cat == "ALL" and cell[1] == format(settings.h3_resolution, "x"))
    return t1 - t0, {"metrics": m, "finest_cell_total": counted}


def detection_cost(records, prefix: str) -> dict:
    """The detection agent's work per call, in-process: decode, order, detect, checkpoint (pickle)."""
    import json as _json
    import pickle

    import h3

    from streams.detection import DetectionRunner, encode_points

    calls = [_json.loads(r.value) for r in records if r.topic == topic_name(prefix, CALLS)]
    points = []
    for i, c in enumerate(calls):
        if c.get("lat") is None or c.get("lng") is None or (c["lat"] == 0 and c["lng"] == 0):
            continue
        t = datetime.fromisoformat(c["received_at"].replace("Z", "+00:00")).timestamp()
        points.append((0, i, t, h3.latlng_to_cell(c["lat"], c["lng"], 8), c["category"], c.get("priority")))
    messages = [encode_points(points[i : i + 1000]) for i in range(0, len(points), 1000)]
    runner = DetectionRunner()
    alerts = 0
    t0 = time.perf_counter()
    for m in messages:
        alerts += len(runner.feed(m, wall=0.0))
    alerts += len(runner.flush())
    detect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = pickle.dumps(runner)
    pickle_s = time.perf_counter() - t0
    return {"points": len(points), "seconds": detect_s, "alerts": alerts, "checkpoint_bytes": len(blob), "checkpoint_s": pickle_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", type=Path, help="CSV to load (default: real Montgomery data, else the simulator)")
    p.add_argument("--calls", type=int, default=50_000, help="calls to load (default 50,000)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each reader; the median is reported (default 3)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    stack.up()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = replace(load_settings(), topic_prefix=prefix, redis_prefix=prefix, app_id=f"{prefix}-worker", retention_s=400 * 86400)
    stack.create_topics(prefix, settings.partitions)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path, fmt = (args.path, "auto") if args.path else default_source(workdir, args.calls)
        records, rejected = plan_replay(
            path, fmt if fmt != "auto" else __import__("streams.sources").sources.detect_format(path), prefix, args.calls
        )
        print(f"loading {len(records):,} records from {path.name} into {prefix}.* ...", file=sys.stderr)
        asyncio.run(produce(records, [], bootstrap=settings.kafka_bootstrap, prefix=prefix, pace=Pace(), progress=False))
        n = len(records)
        topics = [topic_name(prefix, CALLS), topic_name(prefix, INCIDENT_UPDATES)]
        runs: dict[str, list[float]] = {name: [] for name in READERS}
        check: dict = {}
        for r in range(args.repeat):
            print(f"run {r + 1}/{args.repeat}", file=sys.stderr)
            runs[READERS[0]].append(asyncio.run(bare_aiokafka(settings, topics, n)))
            runs[READERS[1]].append(bare_faust(settings, topics, n, "events", workdir))
            runs[READERS[2]].append(bare_faust(settings, topics, n, "batch", workdir))
            # each worker run counts into its own Redis prefix, from the same topics
            # the counting role only: the detectors run in their own worker (and are measured below)
            run_settings = replace(settings, redis_prefix=f"{prefix}r{r}", app_id=f"{prefix}-worker-{r}", roles=("count",))
            worker_s, check = watchfloor_worker(run_settings, n, workdir)
            runs[READERS[3]].append(worker_s)
        results = {name: statistics.median(times) for name, times in runs.items()}
    base = n / results["bare Faust agent (events)"]
    rows = [(name, n / s) for name, s in results.items()]
    print(
        f"\n{n:,} records ({sum(1 for r in records if r.topic == topics[0]):,} calls + updates), "
        f"{settings.partitions} partitions, one process each\n"
    )
    print(f"{'reader':34} {'records/s (median)':>19} {'vs bare Faust (events)':>24}   runs (records/s)")
    for name, rate in rows:
        each = ", ".join(f"{n / t:,.0f}" for t in runs[name])
        print(f"{name:34} {rate:19,.0f} {rate / base:23.0%}   {each}")
    m = check["metrics"]
    valid = m.get("events_total|call", 0)
    exact = check["finest_cell_total"] == valid and valid + sum(v for k, v in m.items() if k.startswith("deadletter_total")) == sum(
        1 for r in records if r.topic == topics[0]
    )
    print(
        f"\nworker counts: {valid:,} calls counted, finest-cell total {check['finest_cell_total']:,}, "
        f"every call accounted for: {'yes' if exact else 'NO'}"
    )
    det = detection_cost(records, prefix)
    per = det["seconds"] / max(det["points"], 1) * 1e6
    print(
        f"\ndetection agent, in-process on the same calls: {det['points']:,} calls in {det['seconds']:.2f} s "
        f"({det['points'] / det['seconds']:,.0f} calls/s, {per:.0f} us per call), {det['alerts']} alert records; "
        f"checkpoint {det['checkpoint_bytes'] / 1024:,.0f} KiB pickled in {det['checkpoint_s'] * 1000:.1f} ms (once per input batch)"
    )
    if args.json:
        args.json.write_text(json.dumps({"records": n, "rates": dict(rows), "runs": runs, "exact": exact, "detection": det}, indent=2))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
