"""A backfill on the real stack: calls read weeks ahead of their updates still close by their own update.

Ten simulated days are in Kafka before the worker starts, as in a backfill.
The worker reads both topics at once, and one fetch brings a partition's calls
for days (a megabyte), while the updates topic, about four records a call, is
read at the same record rate: the calls run days ahead of their updates in
event time. Open calls used to time out (``open_timeout_s``, 6 h) by the calls'
clock before their "closed" update was read: about 3,700 of 3,883 calls here. While
a partition's updates still have records to read in Kafka, its calls now time
out by the updates' clock (``streams.counting.state.expiry_times``).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from tests.stackutil import ROOT, WorkerProcess, wait_caught_up
from tests.streams.test_pipeline import finish, redis_view, replay

pytestmark = pytest.mark.stack


def ten_days_in_kafka(settings, tmp_path):
    settings = replace(settings, retention_s=400 * 86400, batch_size=500)
    sim = tmp_path / "sim.csv"
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(sim), "--days", "10", "--seed", "5", "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    assert "replayed" in finish(replay(settings, sim, "watchfloor", 100_000))
    return settings


def assert_every_call_closed_by_its_update(settings) -> None:
    _counts, _dispatch, metrics = redis_view(settings)
    calls, updates = metrics.get("events_total|call", 0), metrics.get("events_total|update", 0)
    assert calls > 3_000 and updates > 3 * calls, (calls, updates)
    assert metrics.get("stale_closed_total", 0) == 0, f"calls timed out as open before their updates were read: {metrics}"
    assert metrics.get("orphan_updates_expired_total", 0) == 0, metrics
    # every call closed, none still counted open
    assert sum(_open_counts(settings).values()) == 0


def test_a_backfill_read_from_full_topics_closes_every_call_by_its_own_update(settings, tmp_path):
    settings = ten_days_in_kafka(settings, tmp_path)
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        wait_caught_up(settings, [worker])
    finally:
        worker.stop()
    assert_every_call_closed_by_its_update(settings)


def test_a_rebuild_from_kafka_closes_every_call_by_its_own_update_too(settings, tmp_path):
    """``python -m streams.counting.rebuild --to end`` reads the same records with its own consumer and the same rule.

    (A guard: its reads kept the two topics close enough that this also passed before the rule.)
    """
    from tests.streams.test_redis_restart import run_rebuild

    settings = ten_days_in_kafka(settings, tmp_path)
    done = run_rebuild(settings, "--to", "end")
    assert done.returncode == 0, done.stderr
    assert_every_call_closed_by_its_update(settings)


def _open_counts(settings) -> dict[str, int]:
    import redis

    from streams.counting.keys import Keys

    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        return {k: int(v) for k, v in client.hgetall(Keys(settings.redis_prefix).open).items()}
