"""What one counting batch costs the plan process and Redis, without Kafka or Faust.

Usage (Redis up: ``python -m infra.stack up``)::

    python bench/commit_cost.py [PATH] [--calls 10000] [--batch 1000] [--rounds 3]

Reads ``--calls`` calls and their updates from PATH (default: the real
Montgomery file when ``../shared/data`` is present, else a simulator file), in
event-time order, split into 4 partitions and batches of ``--batch`` records,
as the worker would take them. Each round counts every batch into a fresh
Redis prefix exactly as the plan process does: validate
(:func:`streams.counting.planner.parse_batch`), read the snapshot, plan
(:func:`streams.counting.planner.plan_batch`), run the commit script. It prints the
median over rounds (the first is a warm-up) of each step's time per batch and
per record: the planning steps are the plan process's CPU, the commit is the
script's time in Redis, which no other client can use meanwhile. The
throughput benchmark measures the whole worker; this one isolates the part of
its chain that a change to the planner or the script moves.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import replace
from pathlib import Path

from _common import add_json, default_source, parser, write_json

from infra import stack
from streams.counting.planner import Incoming, parse_batch, plan_batch, referenced_calls
from streams.counting.state import RedisState
from streams.ingest.replay import plan_replay
from streams.ingest.sources import detect_format
from streams.runtime.settings import load_settings
from streams.topics import CALLS, topic_name

PARTITIONS = 4
STEPS = ("validate", "snapshot", "plan", "commit")


def batches_of(path: Path, calls: int, size: int) -> list[list[Incoming]]:
    """The records of ``path`` as the worker's batches: event-time order, 4 partitions by key, ``size`` records each."""
    records, _ = plan_replay(path, detect_format(path), "bench", calls)
    calls_topic = topic_name("bench", CALLS)
    offsets: dict[tuple[str, int], int] = {}
    out: list[Incoming] = []
    for r in records:
        kind = "call" if r.topic == calls_topic else "update"
        partition = zlib.crc32(r.key) % PARTITIONS
        offset = offsets.get((kind, partition), 0)
        offsets[(kind, partition)] = offset + 1
        out.append(Incoming(kind, partition, offset, r.value))
    return [out[i : i + size] for i in range(0, len(out), size)]


async def one_round(batches: list[list[Incoming]]) -> dict[str, float]:
    """Seconds spent in each step over all batches, counted into a fresh prefix (deleted after)."""
    prefix = f"benchcommit{uuid.uuid4().hex[:8]}"
    settings = replace(load_settings(), redis_prefix=prefix, partitions=PARTITIONS, retention_s=400 * 86400)
    st = RedisState.from_settings(settings)
    spent = dict.fromkeys(STEPS, 0.0)
    try:
        for batch in batches:
            t0 = time.perf_counter()
            parsed = parse_batch(batch, st.config, now=time.time())
            t1 = time.perf_counter()
            snap = await st.snapshot(batch, referenced_calls(batch, parsed))
            t2 = time.perf_counter()
            plan = plan_batch(batch, snap, st.config, now=time.time(), parsed=parsed)
            args = st.commit_args(plan, snap)
            t3 = time.perf_counter()
            if not await st._commit(args=args):
                raise RuntimeError("the commit's offset check failed on a fresh prefix")
            t4 = time.perf_counter()
            for step, dt in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[step] += dt
    finally:
        keys = [k async for k in st.client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await st.client.delete(*keys[i : i + 1000])
        await st.close()
    return spent


def run(path: Path, calls: int, size: int, rounds: int) -> dict:
    batches = batches_of(path, calls, size)
    n = sum(len(b) for b in batches)
    per_round = [asyncio.run(one_round(batches)) for _ in range(rounds + 1)][1:]
    steps = {}
    for step in STEPS:
        seconds = statistics.median(r[step] for r in per_round)
        steps[step] = {"ms_per_batch": seconds / len(batches) * 1e3, "us_per_record": seconds / n * 1e6}
    return {"source": path.name, "records": n, "batches": len(batches), "batch_size": size, "rounds": rounds, "steps": steps}


def report(result: dict) -> str:
    lines = [
        f"{result['records']:,} records from {result['source']} in {result['batches']} batches of {result['batch_size']:,}, "
        f"median of {result['rounds']} round(s) after a warm-up",
        "",
        f"{'step':10} {'ms per batch':>13} {'us per record':>14}",
    ]
    for step, row in result["steps"].items():
        lines.append(f"{step:10} {row['ms_per_batch']:13.2f} {row['us_per_record']:14.1f}")
    total = sum(row["us_per_record"] for row in result["steps"].values())
    lines.append(f"{'all':10} {sum(r['ms_per_batch'] for r in result['steps'].values()):13.2f} {total:14.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = parser(__file__, __doc__)
    p.add_argument("path", nargs="?", type=Path, help="CSV to read (default: the real Montgomery data, else the simulator)")
    p.add_argument("--calls", type=int, default=10_000, help="calls to read, with their updates (default 10000)")
    p.add_argument("--batch", type=int, default=1000, help="records per batch, as WF_BATCH_SIZE (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds after one warm-up; the median is reported (default 3)")
    add_json(p)
    args = p.parse_args(argv)
    if args.calls < 1 or args.batch < 1 or args.rounds < 1:
        p.error("--calls, --batch and --rounds must be >= 1")
    if args.path is not None and not args.path.is_file():
        p.error(f"no such file: {args.path}")
    stack.up()
    path = args.path or default_source(Path(tempfile.mkdtemp(prefix="benchcommit-")), args.calls)
    result = run(path, args.calls, args.batch, args.rounds)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
