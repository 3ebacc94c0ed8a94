"""A rolling restart of the cluster under load (issue 24): every broker, both Redis nodes and both workers, one at a time.

The three-broker cluster with Redis behind Sentinels (the session's ``cluster``), two workers (both roles: one
counts two partitions each and one of them runs the detectors, the other standing by) following the Sentinels,
and a paced replay of simulated calls with updates and an injected surge. Each broker is stopped cleanly
(``infra.stack down --only kafka-N``), started again and waited for until every partition is back in sync; then
the Redis replica, then the primary (Sentinel promotes the replica; the old primary comes back as its replica);
then each worker is stopped and a new one started in its place. The end is the other faults' end: every count
equal to the independent computation, every alert record once in the stream, each alert's states in order.
Each step's duration is printed (``-s``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from infra import redisha
from streams.runtime.redisconn import sync_client_for
from streams.runtime.settings import Settings
from tests.faults.conftest import Cluster
from tests.faults.test_broker_faults import (  # noqa: F401  # source: a fixture
    FlowWatch,
    _assert_nothing_lost_counted_twice_or_shown_twice,
    _stop,
    _wait_whole,
    source,
)
from tests.stackutil import WorkerProcess
from tests.streams.test_pipeline import finish, replay

pytestmark = pytest.mark.stack

#: records a second: the replay (about 52,000 records: 10,600 calls, four updates each) lasts about 3.5 minutes,
#: about twice the restarts and the calls counted before them (100 s here on 2026-12-07; at 130 a second the
#: replay went on 5 minutes after the last restart)
RATE = 250


class SentinelWatch(FlowWatch):
    """:class:`FlowWatch` through the Sentinels: it follows the primary across the restart, and waits out the switch."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.settings = settings

    def run(self) -> None:
        with sync_client_for(self.settings, socket_timeout=2) as client:
            while not self.done.is_set():
                try:
                    self.samples.append((time.monotonic(), int(client.hget(self.key, "events_total|call") or 0)))
                except (RedisError, OSError):
                    pass  # the primary is being replaced: the next sample reaches the new one
                time.sleep(0.05)


def _restart_redis_node(cluster: Cluster, port: int) -> float:
    """Stop the Redis node on ``port`` (SIGTERM: a clean shutdown) and start it again; seconds until all is ready."""
    pid = redisha.redis_pid(cluster.run_dir, port)
    assert pid is not None, f"no Redis node on {port}"
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while redisha.redis_pid(cluster.run_dir, port) is not None:
        assert time.monotonic() < deadline, f"Redis on {port} did not stop"
        time.sleep(0.1)
    time.sleep(3.0)  # down long enough for the Sentinels to notice a primary (down-after 2 s)
    redisha.start(cluster.run_dir, cluster.redis_port)
    return time.monotonic() - t0


def test_a_rolling_restart_of_every_broker_redis_node_and_worker_under_load_loses_and_doubles_nothing(
    cluster: Cluster,
    source: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = cluster.settings(
        retention_s=400 * 86400, batch_size=500, kafka_session_timeout_s=6.0, redis_sentinels=tuple(redisha.sentinels(cluster.redis_port))
    )
    workers = [WorkerProcess(settings, tmp_path, name).start() for name in ("a", "b")]
    watch = SentinelWatch(settings)
    watch.start()
    rp = replay(settings, source, "watchfloor", 10**9, rate=RATE)
    steps: list[tuple[str, float]] = []

    def step(what: str, seconds: float) -> None:
        steps.append((what, seconds))
        print(f"\n[rolling restart] {what}: {seconds:.1f} s, {watch.counted()} calls counted", flush=True)

    try:
        watch.wait_counted(500)
        for b in cluster.brokers:
            t0 = time.monotonic()
            cluster.cli("down", "--only", b.name)
            cluster.cli("up", "--cluster")
            _wait_whole(settings)
            step(f"{b.name} stopped, started, in sync", time.monotonic() - t0)
        replica_port = next(p for p in redisha.redis_ports(cluster.redis_port) if p != redisha.primary_port(cluster.redis_port))
        step("Redis replica restarted", _restart_redis_node(cluster, replica_port))
        old_primary = redisha.primary_port(cluster.redis_port)
        assert old_primary is not None
        step("Redis primary restarted (failover)", _restart_redis_node(cluster, old_primary))
        assert redisha.primary_port(cluster.redis_port) != old_primary, "the Sentinels promoted the replica"
        for i, name in enumerate(("a", "b")):
            t0, before = time.monotonic(), watch.counted()
            workers[i].stop()
            workers[i] = WorkerProcess(settings, tmp_path, f"{name}-again").start()
            watch.wait_counted(before + 100)
            step(f"worker {name} stopped and started again, counting on", time.monotonic() - t0)
        assert rp.poll() is None, "the restarts must all land during the replay"
        t0 = time.monotonic()
        out = finish(rp, timeout_s=900)
        assert "replayed" in out
        step("the replay's rest", time.monotonic() - t0)
        print("\n[rolling restart] " + "; ".join(f"{what}: {s:.1f} s" for what, s in steps))
        _assert_nothing_lost_counted_twice_or_shown_twice(replace(settings, redis_url=cluster.redis_url()), source, workers)
    finally:
        _stop(rp, workers, watch)
