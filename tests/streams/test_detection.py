"""The detection path: detector input messages, ordering and de-duplication, and alerts on the real stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime

import pytest
import redis

from streams.detection import DetectionRunner, decode_points, encode_points
from streams.keys import Keys
from streams.topics import ALERTS
from tests.stackutil import ROOT, WorkerProcess, read_topic, wait_caught_up, worker_env


class RecordingSuite:
    """Stands in for the detector suite to observe what the runner hands it (order, copies)."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.advanced: list[float] = []

    def process(self, point):
        self.seen.append(point.t)
        return []

    def advance(self, now):
        self.advanced.append(now)
        return []


def test_detector_input_round_trips():
    """A batch of points encodes to one message and decodes to the same tuples."""
    points = [(0, 5, 1000.5, "882aac95d1fffff", "EMS", 2), (3, 9, 1001.0, "882aac95d3fffff", "FIRE", None)]
    assert decode_points(encode_points(points)) == points


def test_runner_drops_redelivered_points_and_restores_event_time_order():
    """Points redelivered after a crash are dropped by offset, and the suite sees event-time order."""
    suite = RecordingSuite()
    runner = DetectionRunner(suite=suite, reorder_s=60)  # type: ignore[arg-type]
    runner.feed(encode_points([(0, 0, 100.0, "c", "EMS", None), (1, 0, 50.0, "c", "EMS", None)]), wall=0)
    runner.feed(encode_points([(0, 0, 100.0, "c", "EMS", None)]), wall=1)  # a copy
    runner.feed(encode_points([(0, 1, 300.0, "c", "EMS", None), (1, 1, 20.0, "c", "EMS", None)]), wall=2)
    runner.flush()
    assert suite.seen == [50.0, 100.0, 300.0]
    assert runner.counters["detector_input_duplicates_total"] == 1
    assert runner.counters["detector_input_late_total"] == 1  # t=20 arrived after 100 was released


def test_runner_clock_follows_the_wall_clock_when_the_feed_goes_silent():
    """After idle_s without input the buffer is flushed and the event clock runs on with wall time."""
    suite = RecordingSuite()
    runner = DetectionRunner(suite=suite, reorder_s=60, idle_s=30)  # type: ignore[arg-type]
    runner.feed(encode_points([(0, 0, 1000.0, "c", "EMS", None)]), wall=5000.0)
    assert runner.tick(5010.0) == [] and suite.seen == []
    runner.tick(5100.0)
    assert suite.seen == [1000.0]
    assert suite.advanced == [1100.0]


@pytest.mark.stack
def test_injected_surge_replayed_through_kafka_raises_an_alert_in_kafka_and_redis(settings, tmp_path):
    """A simulated month with an injected surge, replayed through the real stack, ends with the surge's alert,
    explained, on the alerts topic and in the Redis alerts stream."""
    sim = tmp_path / "sim.csv"
    lat, lng = 40.1224, -75.3383
    subprocess.run(
        [sys.executable, "-m", "streams.simulator", "--out", str(sim), "--days", "28", "--seed", "3",
         "--start", "2024-03-01T00:00", "--inject", f"2024-03-27T17:00,30,20,{lat},{lng},1", "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    truth = json.loads((tmp_path / "sim.csv.injections.json").read_text())
    injected_cells = set(truth["injections"][0]["cells"])
    s = replace(settings, retention_s=60 * 86400)
    worker = WorkerProcess(s, tmp_path).start()
    try:
        rp = subprocess.run(
            [sys.executable, "-m", "streams.replay", str(sim), "--speed", "max", "--no-progress"],
            cwd=ROOT, env=worker_env(s), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert rp.returncode == 0, rp.stderr
        wait_caught_up(s, [worker])
        surges = _wait_for_surge(s, injected_cells, timeout_s=90)
    finally:
        worker.stop()
    kafka_alerts = read_topic(s, ALERTS, expect=1)
    stream_alert = surges[0]
    assert stream_alert["id"] in {a["id"] for a in kafka_alerts}, "the same alert is on the Kafka topic"
    # the explanation
    assert stream_alert["observed"] > stream_alert["expected"] >= 0
    assert stream_alert["window_min"] in (15, 60)
    assert set(stream_alert["cells"]) & injected_cells
    assert stream_alert["categories"] and stream_alert["model"] and stream_alert["model_version"]
    assert stream_alert["reason"]
    start = datetime.fromisoformat(truth["injections"][0]["start"].replace("Z", "+00:00")).timestamp()
    assert start <= stream_alert["at"] <= start + 3600, "fired during the injected hour"


def _wait_for_surge(settings, cells: set[str], timeout_s: float) -> list[dict]:
    key = Keys(settings.redis_prefix).alerts
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        while time.monotonic() < deadline:
            found = [json.loads(f["alert"]) for _, f in client.xrange(key)]
            surges = [a for a in found if a["kind"] == "surge" and a["state"] == "open" and set(a["cells"]) & cells]
            if surges:
                return surges
            time.sleep(0.5)
        raise AssertionError(f"no surge alert on the injected cells in the Redis stream; stream holds {found}")
