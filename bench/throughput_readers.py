"""The readers of ``bench/throughput.py``: each reads the same loaded records once and returns its rate.

Each is an adapter around a client or a subprocess (aiokafka, a bare Faust
agent, Watchfloor workers, the Quix Streams peer); ``bench/throughput.py``
runs them, says why they are timed the way they are, and reports.

Rates (:func:`first_to_last_rate`): the records that arrived after a reader's first
observation, over the time from that observation to its last. The bare readers
time themselves; the counting readers are timed from outside by
:func:`watch_progress`, which polls their progress in Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from _common import ROOT

from infra import stack
from infra.processes import WorkerProcess, wait_caught_up, worker_env
from streams.counting.state import RedisState
from streams.ingest.replay import Outgoing, Pace, produce
from streams.runtime.settings import Settings
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name

if TYPE_CHECKING:
    import redis

#: bench/quix_peer.py's progress counter in ``P:metrics`` and its hash of updates (not imported: that imports quixstreams).
QUIX_RECORDS_TOTAL = "records_total"
QUIX_UPDATES = "{prefix}:updates"
#: How often the counting readers' progress is read from Redis.
POLL_S = 0.02
#: The longest a reader may take to read everything.
TIMEOUT_S = 900.0


@dataclass
class Measured:
    """One run of one reader: its rate and, for the counting readers, the exactness check."""

    rate: float
    check: dict | None = None
    notes: list[str] = field(default_factory=list)


class TooFewRecords(RuntimeError):
    """Everything arrived in the first observation, so there is no interval to time."""


def first_to_last_rate(records: int, first: int, seconds: float, who: str) -> float:
    """Records after the first observation over the time since it."""
    if seconds <= 0 or records <= first:
        raise TooFewRecords(f"{who}: all {records} records came in its first observation; load more with --calls")
    return (records - first) / seconds


def retarget(records: list[Outgoing], src: str, dst: str) -> list[Outgoing]:
    """The same records, for the topics of prefix ``dst`` instead of ``src`` (same keys, so same partitions)."""
    names = {topic_name(src, b): topic_name(dst, b) for b in (CALLS, INCIDENT_UPDATES)}
    return [replace(r, topic=names[r.topic]) for r in records]


def _extra_env(s: Settings) -> dict[str, str]:
    """The settings ``infra.processes.worker_env`` does not pass on, so that every child counts the same cells."""
    env = {"WF_H3_RESOLUTION": str(s.h3_resolution), "WF_H3_PARENT_LEVELS": str(s.h3_parent_levels)}
    if s.jurisdiction is not None:
        j = s.jurisdiction
        env["WF_JURISDICTION"] = f"{j.min_lat!r},{j.min_lng!r},{j.max_lat!r},{j.max_lng!r}"
    return env


# -- the bare readers -----------------------------------------------------------


async def bare_aiokafka(settings: Settings, topics: list[str], expect: int, group: str) -> Measured:
    """Read ``expect`` records of ``topics`` with ``getmany`` in a fresh group, doing nothing with them."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    n = first = 0
    t0 = 0.0
    try:
        while n < expect:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            got = sum(len(records) for records in batch.values())
            if got and n == 0:
                t0, first = time.perf_counter(), got
            n += got
        return Measured(first_to_last_rate(n, first, time.perf_counter() - t0, "bare aiokafka"))
    finally:
        await consumer.stop()


def bare_faust(
    settings: Settings, topics: list[str], expect: int, mode: str, app_id: str, workdir: Path, *, fastpath: bool = False
) -> Measured:
    """``bench/bare_faust.py`` in ``mode`` (``events`` or ``batch``) as app ``app_id``, until it has read ``expect`` records.

    ``fastpath``: on the worker's fetch loop (:mod:`streams.faustext.fastpath`) instead of Faust's released one.
    """
    out = workdir / f"{app_id}.json"
    env = {
        **os.environ,
        "BARE_TOPICS": ",".join(topics),
        "BARE_EXPECT": str(expect),
        "BARE_OUT": str(out),
        "BARE_APP_ID": app_id,
        "BARE_BOOTSTRAP": settings.kafka_bootstrap,
        "BARE_MODE": mode,
        "BARE_FASTPATH": "1" if fastpath else "0",
        "PYTHONPATH": str(ROOT),
    }
    log_path = workdir / f"{app_id}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bare_faust.py"), "worker", "-l", "warn"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        proc.wait(timeout=TIMEOUT_S)
    finally:
        stack.terminate(proc, 10)
    if not out.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the bare Faust agent ({mode}) exited with {proc.returncode} without a result:\n{tail}")
    res = json.loads(out.read_text())
    who = f"bare Faust agent ({mode}{', fast path' if fastpath else ''})"
    return Measured(first_to_last_rate(res["records"], res.get("first", 0), res["seconds"], who))


# -- the counting readers: timed from their progress in Redis ---------------------


def watch_progress(done: Callable[[], int], expect: int, check: Callable[[], None], who: str, bar: bool) -> float:
    """Poll ``done()`` (records applied so far) until it reaches ``expect``; the rate from the first progress seen.

    ``check`` runs between polls and raises when the reader died.
    """
    from tqdm import tqdm

    t0 = 0.0
    first = 0
    deadline = time.monotonic() + TIMEOUT_S
    with tqdm(total=expect, unit="rec", desc=f"  {who}", leave=False, disable=not bar, file=sys.stderr, mininterval=0.5) as progress:
        while True:
            n = done()
            now = time.perf_counter()
            if n and not first:
                t0, first = now, n
            progress.update(n - progress.n)
            if n >= expect:
                return first_to_last_rate(n, first, now - t0, who)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{who}: {n:,} of {expect:,} records applied after {TIMEOUT_S:.0f} s")
            check()
            time.sleep(POLL_S)


def applied_records(settings: Settings, client: redis.Redis) -> Callable[[], int]:
    """Records applied by the worker(s) of ``settings``: its Redis offsets, plus one each (fresh topics start at 0)."""
    from streams.counting.keys import Keys

    keys = Keys(settings.redis_prefix)
    offsets = [keys.offset(kind, p) for kind in ("call", "update") for p in range(settings.partitions)]
    return lambda: sum(int(v) + 1 for v in client.mget(offsets) if v is not None)


def count_check(settings: Settings, expect: int) -> dict:
    """Whether the counts under ``settings.redis_prefix`` are exact for ``expect`` records.

    Exact: at every counted H3 resolution the ``ALL`` cells add up to the calls
    counted, and counted calls and updates plus refused records make ``expect``.
    """
    import h3

    async def read() -> tuple[dict, dict]:
        st = RedisState.from_settings(settings)
        try:
            return await st.metrics(), await st.bucket_counts()
        finally:
            await st.close()

    m, counts = asyncio.run(read())
    calls, updates = m.get("events_total|call", 0), m.get("events_total|update", 0)
    refused = sum(v for k, v in m.items() if k.startswith("deadletter_total"))
    by_res = dict.fromkeys(settings.resolutions, 0)
    for (_, cell, cat), n in counts.items():
        if cat == "ALL":
            res = h3.get_resolution(cell)
            by_res[res] = by_res.get(res, 0) + n
    exact = all(v == calls for v in by_res.values()) and calls + updates + refused == expect
    return {
        "calls_counted": calls,
        "updates_counted": updates,
        "refused": refused,
        "cells_total_by_resolution": {str(r): v for r, v in by_res.items()},
        "exact": exact,
    }


def watchfloor_worker(settings: Settings, expect: int, workdir: Path, bar: bool) -> Measured:
    """One worker (``python -m streams.runtime.worker``) started on the loaded topics; timed from its first commit to its last."""
    import redis

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    worker = WorkerProcess(settings, workdir, settings.app_id, env=_extra_env(settings)).start()

    def alive() -> None:
        if not worker.alive():
            raise RuntimeError(f"the worker exited with {worker.proc.returncode}:\n{worker.log_tail()}")

    try:
        rate = watch_progress(applied_records(settings, client), expect, alive, "worker", bar)
        wait_caught_up(settings, [worker])
    finally:
        worker.stop()
        client.close()
    return Measured(rate, count_check(settings, expect))


def group_members(settings: Settings, group: str) -> tuple[str, dict[str, list[tuple[str, int]]]]:
    """A consumer group's state and each member's assigned ``(topic, partition)`` pairs."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        info = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = {}
    for m in info.get("members") or []:
        assignment = m.get("member_assignment") or {}
        pairs = [(t["topic"], p) for t in assignment.get("assigned_partitions", []) for p in t["partitions"]]
        members[m["member_id"]] = sorted(pairs)
    return info.get("group_state", ""), members


#: Faust logs the first on every assignment and the second once the partitions are seeked and fetching resumed.
FAUST_ASSIGNED = "generation id"
FAUST_READY = "[^---Recovery]: Worker ready"


def _ready_since_assigned(log: str) -> bool:
    assigned = log.rfind(FAUST_ASSIGNED)
    return assigned >= 0 and log.rfind(FAUST_READY) > assigned


def wait_assigned(settings: Settings, group: str, workers: list[WorkerProcess], timeout_s: float = 180.0) -> dict[str, list]:
    """Wait until ``group`` is stable, every partition assigned, each worker owning some and ready since its last assignment.

    Returns each member's ``(topic, partition)`` pairs.
    """
    calls = topic_name(settings.topic_prefix, CALLS)
    deadline = time.monotonic() + timeout_s
    state, members = "", {}
    while time.monotonic() < deadline:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"a worker exited with {w.proc.returncode} before the group formed:\n{w.log_tail()}")
        state, members = group_members(settings, group)
        owned = [[p for t, p in pairs if t == calls] for pairs in members.values()]
        if (
            state == "Stable"
            and len(owned) == len(workers)
            and all(owned)
            and sorted(p for ps in owned for p in ps) == list(range(settings.partitions))
            and all(_ready_since_assigned(w.log_path.read_text(errors="replace")) for w in workers)
        ):
            return members
        time.sleep(0.5)
    raise TimeoutError(f"group {group} not stable with {len(workers)} ready members after {timeout_s:.0f} s: {state}, {members}")


def _load_while_stopped(
    settings: Settings, workers: list[WorkerProcess], records: list[Outgoing], src_prefix: str
) -> tuple[dict[tuple[str, int], int], float, list[int]]:
    """Stop the workers (SIGSTOP), load ``records`` (topics of ``src_prefix``) into the topics of ``settings``,
    let the workers go (SIGCONT): the topics' end offsets, the seconds stopped and each worker's log size then."""
    from streams.runtime.progress import end_offsets

    prefix = settings.topic_prefix
    for w in workers:
        w.proc.send_signal(signal.SIGSTOP)
    try:
        t = time.monotonic()
        copy = retarget(records, src_prefix, prefix)
        asyncio.run(produce(copy, [], bootstrap=settings.kafka_bootstrap, prefix=prefix, pace=Pace(), progress=False))
        ends = end_offsets(settings)
        stopped = time.monotonic() - t
        logs_at = [w.log_path.stat().st_size for w in workers]
    finally:
        for w in workers:
            w.proc.send_signal(signal.SIGCONT)
    return ends, stopped, logs_at


@dataclass
class _Interval:
    """What happened to a group of workers between their release and their last record."""

    owned: list[list[tuple[str, int]]]  # each worker's (kind, partition) pairs
    share: list[int]  # each worker's records
    done_at: dict[int, float]  # worker index -> seconds from release to its last record
    stopped: float  # seconds the workers were stopped for the load
    logs: list[str]  # each worker's log lines in the interval
    members_changed: bool


def _interval_report(settings: Settings, expect: int, iv: _Interval) -> tuple[dict, list[str]]:
    """The check (exact counts, each worker's share and time, whether the group rebalanced) and the notes."""
    # in the interval only: stopping the first worker makes the group reassign its partitions to the second
    reassigned = [FAUST_ASSIGNED in log for log in iv.logs]
    rebalanced = iv.members_changed or any(reassigned)
    partitions = [sorted(p for kind, p in tps_ if kind == "call") for tps_ in iv.owned]
    finished = [iv.done_at.get(i) for i in range(len(iv.owned))]
    notes = [
        f"partitions {partitions}, records {' + '.join(f'{n:,}' for n in iv.share)}, "
        f"done {' and '.join(f'{x:.1f}' for x in finished if x is not None)} s after release; "
        f"stopped {iv.stopped:.1f} s for the load; {'REBALANCED in the interval' if rebalanced else 'no rebalance'}"
    ]
    check = {
        **count_check(settings, expect),
        "partitions": partitions,
        "records_per_worker": iv.share,
        "seconds_to_done_per_worker": finished,
        "rebalanced": rebalanced,
    }
    return check, notes


def watchfloor_workers(settings: Settings, records: list[Outgoing], src_prefix: str, workdir: Path, bar: bool, count: int = 2) -> Measured:
    """``count`` workers in one consumer group, timed without the group's join.

    The workers start on fresh, empty copies of the topics (``settings.topic_prefix``,
    created here); once the group is stable, every partition assigned and every
    worker ready, they are stopped (SIGSTOP), ``records`` (on the topics of
    ``src_prefix``) are loaded into the copies, and all are let go together
    (SIGCONT). The rate is then timed like one worker's, until all are done. A
    rebalance in the interval (a member changed, or Faust logged a new
    assignment) is reported in the check, with each worker's share and when it
    was done.
    """
    import redis

    from streams.counting.keys import Keys

    prefix = settings.topic_prefix
    stack.create_topics(prefix, settings.partitions, settings.kafka_bootstrap)
    group = f"{settings.app_id}-count"  # the worker's group for the counting role (streams.runtime.app.create_app)
    workers = [WorkerProcess(settings, workdir, f"{settings.app_id}-{i}", env=_extra_env(settings)) for i in range(1, count + 1)]
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    keys = Keys(settings.redis_prefix)
    kinds = {topic_name(prefix, CALLS): "call", topic_name(prefix, INCIDENT_UPDATES): "update"}
    tps = [(kind, p) for kind in kinds.values() for p in range(settings.partitions)]
    done_at: dict[int, float] = {}

    def alive() -> None:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"a worker exited with {w.proc.returncode}:\n{w.log_tail()}")

    try:
        for w in workers:
            w.start()
        before = wait_assigned(settings, group, workers)
        owned = [[(kinds[t], p) for t, p in pairs if t in kinds] for pairs in before.values()]
        ends, stopped, logs_at = _load_while_stopped(settings, workers, records, src_prefix)
        released = time.perf_counter()
        share = [sum(ends[tp] for tp in tps_) for tps_ in owned]

        def applied() -> int:
            values = client.mget([keys.offset(*tp) for tp in tps])
            by_tp = {tp: int(v) + 1 for tp, v in zip(tps, values, strict=True) if v is not None}
            now = time.perf_counter()
            for i, tps_ in enumerate(owned):
                if i not in done_at and sum(by_tp.get(tp, 0) for tp in tps_) >= share[i]:
                    done_at[i] = now - released
            return sum(by_tp.values())

        rate = watch_progress(applied, len(records), alive, f"worker x{count}", bar)
        logs_end = [w.log_path.stat().st_size for w in workers]
        _, after = group_members(settings, group)
        wait_caught_up(settings, workers)
    finally:
        for w in workers:
            if w.alive():
                w.proc.send_signal(signal.SIGCONT)
            w.stop()
        client.close()
    logs = [w.log_path.read_bytes()[at:end].decode(errors="replace") for w, at, end in zip(workers, logs_at, logs_end, strict=True)]
    interval = _Interval(owned, share, done_at, stopped, logs, members_changed=set(after) != set(before))
    check, notes = _interval_report(settings, len(records), interval)
    return Measured(rate, check, notes)


def quix_peer(settings: Settings, expect: int, group: str, workdir: Path, bar: bool) -> Measured:
    """The Quix Streams job (``bench/quix_peer.py``) in a subprocess, timed from its ``records_total`` in Redis."""
    import redis

    from streams.counting.keys import Keys

    log_path = workdir / f"{group}.log"
    env = worker_env(settings, **_extra_env(settings))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "quix_peer.py"), "--group", group, "--state-dir", str(workdir / group)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    metrics = Keys(settings.redis_prefix).metrics

    def alive() -> None:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the Quix Streams peer exited with {proc.returncode}:\n{tail}")

    try:
        rate = watch_progress(lambda: int(client.hget(metrics, QUIX_RECORDS_TOTAL) or 0), expect, alive, "Quix Streams", bar)
        _, members = group_members(settings, group)
        updates = sum(int(v) for v in client.hvals(QUIX_UPDATES.format(prefix=settings.redis_prefix)))
    finally:
        stack.terminate(proc, 30)
        client.close()
    check = count_check(settings, expect)
    check["exact"] = check["exact"] and updates == check["updates_counted"]
    check["partitions_per_member"] = sorted(len(p) for p in members.values())
    notes = [f"{len(members)} consumer, assigned {', '.join(str(len(p)) for p in members.values())} topic-partitions"]
    return Measured(rate, check, notes)
