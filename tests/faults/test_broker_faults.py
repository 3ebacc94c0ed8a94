"""Broker faults on the three-broker cluster during a replay of calls with updates, two workers counting.

1. SIGKILL of the broker that leads most ``calls`` partitions, then its return;
2. a broker whose log folder becomes unwritable (Kafka takes the folder offline
   and, with no other folder, the broker shuts down): the cluster goes on and
   ``python -m streams.runtime.status`` tells the operator.

Each ends with every count equal to the independent computation from the
source file (``tests/streams/test_pipeline.py``'s), every alert record once in
the Redis alerts stream and, in the dead-letter topic, only what the source
itself refused. Each prints the time from the fault until counts flow again
(``-s`` shows it; the figures are in docs/cluster.md).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from streams.counting.keys import Keys
from streams.runtime import progress
from streams.runtime.kafkahealth import KafkaHealth
from streams.runtime.settings import Settings
from streams.runtime.status import kafka_health
from streams.topics import DEADLETTER
from tests.faults.conftest import Cluster, make_unwritable, restore_writable
from tests.stackutil import ROOT, WorkerProcess, read_topic, wait_caught_up, worker_env
from tests.streams.test_pipeline import expected_from_source, finish, redis_view, replay

pytestmark = pytest.mark.stack

#: Records per second of the replay: about 65 s of calls and updates (about 52,000 records), the fault in its first third.
RATE = 800
#: Calls counted past the count at the fault that say counts flow again.
FLOWING = 200
LAT, LNG = 40.1224, -75.3383


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """28 simulated days with a surge injected on day 27 (so the detectors raise alerts), as the detection tests do."""
    out = tmp_path_factory.mktemp("sim") / "sim.csv"
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(out), "--days", "28", "--seed", "3",
         "--start", "2024-03-01T00:00", "--inject", f"2024-03-27T17:00,30,20,{LAT},{LNG},1", "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return out


class FlowWatch(threading.Thread):
    """Samples the calls counted every 50 ms, to time a fault: when counts flow again, the longest pause."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.key = Keys(settings.redis_prefix).metrics
        self.url = settings.redis_url
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            while not self.done.is_set():
                self.samples.append((time.monotonic(), int(client.hget(self.key, "events_total|call") or 0)))
                time.sleep(0.05)

    def counted(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def wait_counted(self, at_least: int, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while self.counted() < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} calls counted after {timeout_s:.0f} s"
            time.sleep(0.05)
        return self.counted()

    def after(self, t0: float, timeout_s: float = 180) -> tuple[float, float]:
        """(seconds from ``t0`` until :data:`FLOWING` more calls than at ``t0`` were counted, longest pause in counting meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while True:
            at = [(t, n) for t, n in self.samples if t >= t0]
            if at:
                base = at[0][1]
                flowing = next((t for t, n in at if n >= base + FLOWING), None)
                if flowing is not None:
                    rises = [t0] + [t for (t, n), (_, m) in zip(at[1:], at, strict=False) if n > m and t <= flowing]
                    pause = max(b - a for a, b in zip(rises, [*rises[1:], flowing], strict=True))
                    return flowing - t0, pause
            assert time.monotonic() < deadline, f"counts did not flow again within {timeout_s:.0f} s of the fault"
            time.sleep(0.1)


def _start(cluster: Cluster, tmp_path: Path) -> tuple[Settings, list[WorkerProcess]]:
    settings = cluster.settings(retention_s=400 * 86400, batch_size=500)
    workers = [WorkerProcess(settings, tmp_path, name).start() for name in ("a", "b")]
    return settings, workers


def _wait_whole(settings: Settings, timeout_s: float = 120) -> tuple[float, KafkaHealth]:
    """Wait until every broker is back and every partition in sync; the seconds it took and the health seen."""
    t0 = time.monotonic()
    while True:
        health = kafka_health(settings)
        if health.ok:
            return time.monotonic() - t0, health
        assert time.monotonic() - t0 < timeout_s, f"the cluster is not whole after {timeout_s:.0f} s: {health}"
        time.sleep(0.5)


def _assert_nothing_lost_counted_twice_or_shown_twice(settings: Settings, source: Path, workers: list[WorkerProcess]) -> None:
    alive = [w for w in workers if w.alive()]
    assert len(alive) == len(workers), "\n".join(w.log_tail() for w in workers if not w.alive())
    t0 = time.monotonic()
    wait_caught_up(settings, workers, timeout_s=300)
    t1 = time.monotonic()
    progress.wait_detected(settings, 240, lambda: None)
    t2 = time.monotonic()
    counts, dispatch, metrics = redis_view(settings)
    exp_counts, exp_dispatch, valid, invalid = expected_from_source(source, "watchfloor", 10**9, settings.resolutions)
    print(
        f"\n[faults] final checks: counting caught up {t1 - t0:.1f} s, detection {t2 - t1:.1f} s, "
        f"counts read and computed {time.monotonic() - t2:.1f} s",
        flush=True,
    )
    assert valid > 5_000
    assert metrics.get("events_total|call") == valid, "every valid call counted once"
    differ = {k: (counts.get(k), v) for k, v in exp_counts.items() if counts.get(k) != v}
    extra = {k: v for k, v in counts.items() if k not in exp_counts}
    assert not differ and not extra, f"{len(differ)} counts differ, {len(extra)} unexpected; e.g. {list(differ.items())[:3]}"
    assert dispatch == exp_dispatch, "dispatch times summed once per update"
    # dead letters: what the source refused (at the replay or at the worker), never a duplicate_id from a retried send
    letters = read_topic(settings, DEADLETTER, expect=invalid, timeout_s=20) if invalid else read_topic(settings, DEADLETTER, 0, 5)
    worker_letters = [d for d in letters if not str(d["topic"]).startswith("replay:")]
    assert Counter(d["reason"] for d in letters)["duplicate_id"] == 0
    assert len(worker_letters) == invalid == sum(v for k, v in metrics.items() if k.startswith("deadletter_total|"))
    assert len({base64.b64decode(d["original_b64"]) for d in worker_letters}) == len(worker_letters)
    # alerts: each record once, each alert's lifecycle in order
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        bodies = [f["alert"] for _, f in client.xrange(Keys(settings.redis_prefix).alerts)]
    assert bodies, "the injected surge raised alerts"
    assert len(bodies) == len(set(bodies)), "no alert record twice in the stream"
    alerts = [json.loads(b) for b in bodies]
    for alert_id in {a["id"] for a in alerts}:
        states = [a["state"] for a in alerts if a["id"] == alert_id]
        assert states[0] == "open" and "open" not in states[1:] and "closed" not in states[:-1], (alert_id, states)


def _stop(rp: subprocess.Popen, workers: list[WorkerProcess], watch: FlowWatch) -> None:
    watch.done.set()
    if rp.poll() is None:
        rp.kill()
        rp.communicate()
    for w in workers:
        w.stop()


def test_the_broker_leading_the_calls_partitions_killed_mid_replay_and_back_loses_and_doubles_nothing(cluster, source, tmp_path):
    settings, workers = _start(cluster, tmp_path)
    watch = FlowWatch(settings)
    watch.start()
    rp = replay(settings, source, "watchfloor", 10**9, rate=RATE)
    try:
        watch.wait_counted(1_500)
        victim = cluster.leader_of_most(settings, "calls")
        led = [p for p, n in cluster.leaders(settings, "calls").items() if n == victim.node_id]
        t_kill = time.monotonic()
        cluster.kill(victim.name)
        at_kill = watch.counted()
        flowing_s, pause_s = watch.after(t_kill)
        assert rp.poll() is None, "the fault must land mid-replay"
        moved = cluster.leaders(settings, "calls")
        assert all(moved[p] != victim.node_id for p in led), f"leadership of {led} left {victim.name}: {moved}"
        time.sleep(max(0.0, 15 - (time.monotonic() - t_kill)))  # out for 15 s in all
        t_back = time.monotonic()
        cluster.cli("up", "--cluster")
        whole_s, _ = _wait_whole(settings)
        back_s = time.monotonic() - t_back
        out = finish(rp)
        assert "replayed" in out
        assert at_kill < watch.counted(), "counted on after the kill"
        print(
            f"\n[fault] SIGKILL of {victim.name} (leader of calls partitions {led}) at {at_kill} calls counted: "
            f"counts flowing again after {flowing_s:.1f} s (longest pause {pause_s:.1f} s); "
            f"restarted, every partition back in sync {back_s:.1f} s after `up --cluster` ({whole_s:.1f} s after it returned)"
        )
        _assert_nothing_lost_counted_twice_or_shown_twice(settings, source, workers)
    finally:
        _stop(rp, workers, watch)


def test_a_broker_whose_log_folder_becomes_unwritable_shuts_down_the_cluster_goes_on_and_status_says_so(cluster, source, tmp_path):
    settings, workers = _start(cluster, tmp_path)
    _wait_whole(settings)
    watch = FlowWatch(settings)
    watch.start()
    rp = replay(settings, source, "watchfloor", 10**9, rate=RATE)
    victim = cluster.broker(cluster.leaders(settings, "detector-input")[0])  # the detection path moves too
    data = cluster.data_dir(victim.name)
    try:
        watch.wait_counted(1_500)
        t_fault = time.monotonic()
        make_unwritable(data)
        cluster.wait_exited(victim.name, 60)
        down_s = time.monotonic() - t_fault
        log = (cluster.run_dir / f"{victim.name}.log").read_text(errors="replace")
        assert "Shutdown broker because all log dirs" in log or "Stopping serving logs in dir" in log, log[-3000:]
        flowing_s, pause_s = watch.after(t_fault)
        assert rp.poll() is None, "the fault must land mid-replay"
        # the operator is told: a broker missing, partitions under-replicated (once the controller has
        # fenced the broker: its session times out, broker.session.timeout.ms)
        while victim.address not in kafka_health(settings).missing:
            assert time.monotonic() - t_fault < 60, f"status still shows {victim.name} 60 s after it stopped"
            time.sleep(0.5)
        told_s = time.monotonic() - t_fault
        status = subprocess.run(
            [sys.executable, "-m", "streams.runtime.status", "--top", "1"],
            cwd=ROOT, env=worker_env(settings), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert "kafka: 2 of 3 brokers seen" in status.stdout and f"MISSING: {victim.address}" in status.stdout, status.stdout
        assert "under-replicated" in status.stdout, status.stdout
        restore_writable(data)
        t_back = time.monotonic()
        cluster.cli("up", "--cluster")
        whole_s, _ = _wait_whole(settings)
        back_s = time.monotonic() - t_back
        finish(rp)
        print(
            f"\n[fault] log folder of {victim.name} made unwritable: the broker stopped after {down_s:.1f} s, "
            f"status reported it missing after {told_s:.1f} s; "
            f"counts flowing again {flowing_s:.1f} s after the fault (longest pause {pause_s:.1f} s); "
            f"restarted, every partition back in sync {back_s:.1f} s after `up --cluster` ({whole_s:.1f} s after it returned)"
        )
        _assert_nothing_lost_counted_twice_or_shown_twice(settings, source, workers)
    finally:
        restore_writable(data)
        _stop(rp, workers, watch)
