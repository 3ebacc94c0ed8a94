"""Sentinel faults on the cluster during a replay: one Sentinel SIGKILLed, then every Sentinel restarted in turn.

The session's cluster (three brokers; Redis as a primary, a replica and three Sentinels), two workers (both
roles) and a gateway following the Sentinels (``WF_REDIS_SENTINELS``), a WebSocket client of the gateway
resuming by ``last_id``, and a paced replay of simulated calls with updates and an injected surge. The first
Sentinel of ``WF_REDIS_SENTINELS`` (the one every client asks first) is SIGKILLed: the operator's status
(``python -m infra.stack status`` on this machine, ``python -m streams.runtime.status`` from any) names it, and a
new client still finds the primary through the other two. It is started again, then each Sentinel is stopped and started
in turn. Two Sentinels of three keep the quorum, so nothing fails over: the primary stays. The end is the other
faults' end: every count equal to the independent computation, every alert record once in the stream, each
alert's states in order, and the client saw exactly the stream, in order, none twice.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from infra import redisha
from streams.counting.keys import Keys
from streams.runtime import sentinelhealth
from streams.runtime.redisconn import sync_client_for
from streams.runtime.status import sentinel_health
from tests.faults.conftest import Cluster
from tests.faults.test_broker_faults import (  # noqa: F401  # source: a fixture
    FLOWING,
    FlowWatch,
    _assert_nothing_lost_counted_twice_or_shown_twice,
    _stop,
    source,
)
from tests.faults.test_redis_failover import ResumingClient
from tests.gateway.live import GatewayProcess
from tests.stackutil import WorkerProcess, worker_env
from tests.streams.test_pipeline import finish, replay

pytestmark = pytest.mark.stack

#: Records a second: the replay (about 22,000 records) outlasts the kill and the four Sentinel starts (5 s of it).
RATE = 1000


def _sentinel_pid(cluster: Cluster, port: int) -> int | None:
    return redisha.pid(cluster.run_dir, f"sentinel-{port}")


def _gone(cluster: Cluster, port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while _sentinel_pid(cluster, port) is not None:
        assert time.monotonic() < deadline, f"the Sentinel on {port} still runs after {timeout_s:.0f} s"
        time.sleep(0.05)


def _start_missing(cluster: Cluster) -> float:
    """Start what of the HA Redis is not running and wait until the Sentinels agree again; the seconds it took."""
    t0 = time.monotonic()
    redisha.start(cluster.run_dir, cluster.redis_port)
    return time.monotonic() - t0


def test_a_sentinel_sigkilled_and_each_sentinel_restarted_mid_replay_leave_the_primary_and_lose_nothing(
    cluster: Cluster,
    source: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    sentinels = redisha.sentinels(cluster.redis_port)
    settings = cluster.settings(retention_s=400 * 86400, batch_size=500, redis_sentinels=tuple(sentinels))
    primary = redisha.primary(cluster.redis_port)
    assert primary is not None
    workers = [WorkerProcess(settings, tmp_path, name).start() for name in ("a", "b")]
    env = worker_env(settings)
    gw = GatewayProcess(
        settings.redis_prefix,
        env_extra={k: env[k] for k in ("WF_REDIS_URL", "WF_REDIS_SENTINELS", "WF_REDIS_SENTINEL_SERVICE", "WF_PARTITIONS")},
    ).start(tmp_path)
    client = ResumingClient(gw.port).start()
    watch = FlowWatch(settings)  # straight to the primary, which must stay
    watch.start()
    for w in workers:  # the replay starts once both count: the faults land early in it, on any machine
        w.wait_for_log("Worker ready", timeout_s=90)
    t_start = time.monotonic()
    rp = replay(settings, source, "watchfloor", 10**9, rate=RATE)
    steps: list[str] = []
    try:
        watch.wait_counted(1_000)
        steps.append(f"1,000 counted at {time.monotonic() - t_start:.1f} s")
        first = sentinels[0][1]
        pid = _sentinel_pid(cluster, first)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _gone(cluster, first)
        at_kill = watch.counted()
        status = cluster.cli("status")
        assert f"sentinel-{first}: stopped" in status, status
        for port in sentinels[1:]:
            assert f"sentinel-{port[1]}: running" in status, status
        # what python -m streams.runtime.status prints, from any machine: the missing Sentinel named
        told = sentinelhealth.health_lines(sentinel_health(settings))
        assert told[0].startswith(f"redis: primary {primary[0]}:{primary[1]} per 2 of 3 Sentinels"), told
        assert f"MISSING: 127.0.0.1:{first} (ConnectionError" in told[0], told
        # a client made now asks the killed Sentinel first, then the next
        t0 = time.monotonic()
        with sync_client_for(settings, socket_timeout=2) as fresh:
            assert int(fresh.hget(Keys(settings.redis_prefix).metrics, "events_total|call") or 0) >= at_kill
            assert fresh.connection_pool.get_master_address() == primary
        steps.append(f"a new client through the Sentinels with {first} down: {time.monotonic() - t0:.2f} s")
        watch.wait_counted(at_kill + FLOWING)
        steps.append(f"Sentinel {first} back: {_start_missing(cluster):.1f} s")
        for _, port in sentinels:
            before = watch.counted()
            pid = _sentinel_pid(cluster, port)
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            _gone(cluster, port)
            steps.append(f"Sentinel {port} restarted: {_start_missing(cluster):.1f} s")
            watch.wait_counted(before + FLOWING)
        assert rp.poll() is None, "the faults must all land during the replay"
        assert redisha.primary(cluster.redis_port) == primary, "no failover: two Sentinels of three kept the primary"
        assert sentinel_health(settings).ok
        out = finish(rp)
        assert "replayed" in out
        steps.append(f"replay done at {time.monotonic() - t_start:.1f} s")
        print("\n[sentinels] " + "; ".join(steps), flush=True)
        _assert_nothing_lost_counted_twice_or_shown_twice(settings, source, workers)
        assert redisha.primary(cluster.redis_port) == primary
        print(f"[sentinels] checked at {time.monotonic() - t_start:.1f} s", flush=True)

        # the gateway's client saw exactly the stream, in order, none twice
        with sync_client_for(settings, decode_responses=True) as redis_client:
            ids = [sid for sid, _ in redis_client.xrange(Keys(settings.redis_prefix).alerts)]
        deadline = time.monotonic() + 30
        while [sid for sid, _ in client.alerts] != ids and time.monotonic() < deadline and client.error is None:
            time.sleep(0.2)
        assert client.error is None, repr(client.error)
        assert [sid for sid, _ in client.alerts] == ids, f"the client saw {len(client.alerts)} alert frames, the stream holds {len(ids)}"
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()
        print(f"[sentinels] {len(ids)} alert records, the client reconnected {client.reconnects} time(s)", flush=True)
    finally:
        client.stop()
        gw.stop()
        _stop(rp, workers, watch)
        if any(_sentinel_pid(cluster, port) is None for _, port in sentinels):
            redisha.start(cluster.run_dir, cluster.redis_port)  # the next test finds the cluster whole
