"""Pushes through the intake counted by a real worker: Redis holds exactly what the intake acknowledged, retries included."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
import redis

from streams.counting.keys import Keys
from streams.ingest.schema import format_time
from streams.intake.core import EventBucket
from tests.stackutil import WorkerProcess, wait_caught_up

from .conftest import body_of, call, make_intake, push, serving, update

pytestmark = pytest.mark.stack


def test_calls_and_updates_pushed_twice_are_counted_once_by_the_worker(settings, tmp_path):
    settings = replace(settings, roles=("count",))
    now = time.time()
    bodies = []
    for b in range(10):
        cids = [f"E{b}-{i}" for i in range(20)]
        at = format_time(round(now - 600 + b, 3))
        events = [call(c, at=at) for c in cids] + [update(c, "dispatched", format_time(round(now - 590 + b, 3))) for c in cids]
        events += [update(c, "closed", format_time(round(now - 500 + b, 3))) for c in cids[:5]] + [call(f"E{b}-x", agency="nope")]
        bodies.append(body_of(*events))

    async def go():
        answers = []
        intake = make_intake(settings)
        intake.buckets["dev-cad"] = EventBucket(rate=10_000, burst=10_000)  # this test is about counts, not rates
        async with serving(intake) as client:
            for body in bodies + bodies:  # every request sent twice, as a CAD retrying after a lost answer would
                status, answer, _ = await push(client, body)
                assert status == 200, answer
                answers.append(answer)
        return answers

    worker = WorkerProcess(settings, tmp_path).start()
    try:
        answers = asyncio.run(go())
        wait_caught_up(settings, [worker], 180)
    finally:
        worker.stop()
    first, again = answers[:10], answers[10:]
    assert sum(a["accepted"] for a in first) == 10 * 45 and sum(a["refused"] for a in first) == 10
    assert sum(a["accepted"] for a in again) == 0 and sum(a["duplicate"] for a in again) == 10 * 45
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as r:
        keys = Keys(settings.redis_prefix)
        metrics = r.hgetall(keys.metrics)
        open_now = sum(int(v) for f, v in r.hgetall(keys.open).items() if f.startswith("88"))  # res-8 cells
    assert int(metrics["events_total|call"]) == 200
    assert int(metrics["events_total|update"]) == 250
    assert open_now == 150
    assert not [k for k in metrics if k.startswith("deadletter_total")]  # the worker refused nothing: the intake did
