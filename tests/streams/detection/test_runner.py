"""The detection path: detector input messages, ordering and de-duplication, and alerts on the real stack."""

from __future__ import annotations

import base64
import json
import pickle
import random
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import h3
import pytest
import redis
from websockets.exceptions import ConnectionClosed

from detectors.surge import SurgeDetector
from detectors.zones import WatchedZone
from streams.counting.keys import Keys
from streams.detection import checkpoint
from streams.detection.runner import DetectionRunner, decode_points, default_suite, encode_points, parse_zones, profile_suite
from streams.runtime import progress
from streams.runtime.settings import checkpoint_key
from streams.topics import ALERTS
from tests.gateway.live import GatewayProcess, token
from tests.stackutil import ROOT, WorkerProcess, read_topic, wait_caught_up, worker_env
from tests.streams.detection.test_checkpoint import hostile_pickle


class RecordingSuite:
    """Stands in for the detector suite to observe what the runner hands it (order, copies)."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.advanced: list[float] = []
        self.surge = SimpleNamespace(baseline=SimpleNamespace(ready=False))  # the runner's drift monitor asks it

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
    runner = DetectionRunner(suite=suite, reorder_s=60)  # type: ignore[arg-type]  # RecordingSuite stands in for the suite
    runner.feed(encode_points([(0, 0, 100.0, "882aac941dfffff", "EMS", None), (1, 0, 50.0, "882aac941dfffff", "EMS", None)]), wall=0)
    runner.feed(encode_points([(0, 0, 100.0, "882aac941dfffff", "EMS", None)]), wall=1)  # a copy
    runner.feed(encode_points([(0, 1, 300.0, "882aac941dfffff", "EMS", None)]), wall=2)  # partition 1 silent for 2 s
    runner.feed(encode_points([(1, 1, 20.0, "882aac941dfffff", "EMS", None)]), wall=2)
    runner.flush()
    assert suite.seen == [50.0, 100.0, 300.0]
    assert runner.counters["detector_input_duplicates_total"] == 1
    assert runner.counters["detector_input_late_total"] == 1  # t=20 arrived after 100 was released


def test_runner_clock_follows_the_wall_clock_when_the_feed_goes_silent():
    """A silent partition stops holding points back after partition_idle_s; after idle_s the event clock runs on with wall time."""
    suite = RecordingSuite()
    runner = DetectionRunner(suite=suite, reorder_s=60, idle_s=30, partition_idle_s=2)  # type: ignore[arg-type]  # RecordingSuite: see above
    runner.feed(encode_points([(0, 0, 4990.0, "882aac941dfffff", "EMS", None)]), wall=5000.0)
    assert runner.tick(5001.0) == [] and suite.seen == []  # held: 60 s of disorder tolerated
    runner.tick(5010.0)
    assert suite.seen == [4990.0] and suite.advanced == []
    runner.tick(5100.0)
    assert suite.advanced == [5090.0]


def test_replaying_history_a_lagging_partition_holds_the_others_and_the_clock_stays_put():
    """Event time far behind the wall clock is a replay: a partition unread for seconds (a loaded worker) is behind,
    not silent, so its points are not dropped as late; and a pause in the input moves no clock (no false outage)."""
    suite = RecordingSuite()
    runner = DetectionRunner(suite=suite, idle_s=30, partition_idle_s=2, partitions=2)  # type: ignore[arg-type]  # RecordingSuite: see above
    day, now = 1_450_000_000.0, 1_790_000_000.0  # December 2015, replayed in 2026
    runner.feed(encode_points([(0, 0, day, "882aac941dfffff", "EMS", None), (1, 0, day + 1, "882aac941dfffff", "EMS", None)]), wall=now)
    runner.feed(encode_points([(0, 1, day + 3600, "882aac941dfffff", "EMS", None)]), wall=now + 1)
    runner.tick(now + 20)  # partition 1 unread for 19 s: still holding partition 0's hour-ahead point
    runner.feed(encode_points([(1, 1, day + 60, "882aac941dfffff", "EMS", None)]), wall=now + 21)
    assert runner.counters["detector_input_late_total"] == 0
    runner.tick(now + 60)  # 30 s without input: everything released, but no clock advance
    assert suite.seen == [day, day + 1, day + 60, day + 3600]
    assert suite.advanced == []


def test_runner_merges_partitions_hours_apart_without_losing_points():
    """Partitions replayed at full speed drift hours apart in event time; every point still reaches the suite, in order."""
    suite = RecordingSuite()
    runner = DetectionRunner(suite=suite, partitions=4)  # type: ignore[arg-type]  # RecordingSuite: see above
    offsets = [0, 0, 0, 0]
    wall = 0.0
    # partition p runs (3 - p) hours ahead of partition 3, in interleaved batches of 10 points a minute apart
    for step in range(30):
        for p in range(4):
            batch = []
            for i in range(10):
                t = 10_000.0 + (3 - p) * 3600 + (step * 10 + i) * 60
                batch.append((p, offsets[p], t, "882aac941dfffff", "EMS", None))
                offsets[p] += 1
            wall += 0.05
            runner.feed(encode_points(batch), wall=wall)
    runner.flush()
    assert len(suite.seen) == 1200 and suite.seen == sorted(suite.seen)
    assert runner.counters["detector_input_late_total"] == 0


def test_the_default_runner_watches_zones_on_the_surge_baseline():
    runner = DetectionRunner()
    assert runner.suite.zones is not None and runner.suite.zones.baseline is runner.suite.surge.baseline
    zone = WatchedZone("z1", "Parade", ["882aac941dfffff"], 0.0, 3600.0)
    runner.set_zones([zone])
    assert pickle.loads(pickle.dumps(runner)).suite.zones.zones == (zone,)


def test_a_runner_whose_suite_has_no_zone_watch_refuses_zones():
    """Zones need the suite's zone watch; a suite built without one says so instead of ignoring them."""
    from detectors.suite import DetectorSuite

    runner = DetectionRunner(suite=DetectorSuite(zones=None, score=False))
    with pytest.raises(ValueError, match="no zone watch"):
        runner.set_zones([WatchedZone("z1", "Parade", ["882aac941dfffff"], 0.0, 3600.0)])


def test_parse_zones_keeps_event_zones_and_reports_malformed_ones():
    cell = "882aac941dfffff"
    good = {"id": "a", "name": "Parade", "kind": "event", "cells": [cell], "active_from": 0, "active_until": 60, "threshold": 4.5}
    zones, problems = parse_zones(
        [good, {**good, "id": "p", "kind": "partner"}, {**good, "id": "b", "cells": ["nope"]}, {"id": "c", "kind": "event"}, {**good}]
    )
    assert [(z.id, z.threshold) for z in zones] == [("a", 4.5)]
    assert len(problems) == 3 and "'b'" in problems[0] and "lacks" in problems[1] and "twice" in problems[2]


@pytest.mark.stack
def test_injected_surge_replayed_through_kafka_raises_an_alert_in_kafka_and_redis(settings, tmp_path):
    """A simulated month with an injected surge, replayed through the real stack, ends with the surge's alert,
    explained, on the alerts topic, in the Redis alerts stream and on a supervisor's WebSocket through the gateway."""
    lat, lng = 40.1224, -75.3383
    sim, injection = _simulate(tmp_path, days=28, seed=3, inject=f"2024-03-27T17:00,30,20,{lat},{lng},1")
    injected_cells = set(injection["cells"])
    s = replace(settings, retention_s=60 * 86400)
    # a dispatch supervisor's dashboard is connected to a gateway the whole time
    gateway = GatewayProcess(s.redis_prefix, env_extra={"WF_GATEWAY_COUNTS_S": "3600"}).start(tmp_path)
    dashboard = gateway.ws(token("supervisor"))
    frames: list[dict] = []
    reader = threading.Thread(target=_read_frames, args=(dashboard, frames), daemon=True)
    reader.start()
    worker = WorkerProcess(s, tmp_path).start()
    try:
        _replay(sim, s, worker)
        surges = _wait_for_alerts(s, lambda a: a["kind"] == "surge" and a["state"] == "open" and set(a["cells"]) & injected_cells, 90)
        deadline = time.monotonic() + 10
        while not any(f["type"] == "alert" and f["alert"]["id"] == surges[0]["id"] for f in list(frames)):
            assert time.monotonic() < deadline, f"the gateway never pushed the alert; frames: {[f['type'] for f in frames]}"
            time.sleep(0.2)
    finally:
        worker.stop()
        dashboard.close()
        gateway.stop()
    pushed = next(f["alert"] for f in frames if f["type"] == "alert" and f["alert"]["id"] == surges[0]["id"])
    assert pushed["reason"] == surges[0]["reason"] and pushed["cells"] == surges[0]["cells"] and pushed["severity"]
    kafka_alerts = read_topic(s, ALERTS, expect=1)
    stream_alert = surges[0]
    assert stream_alert["id"] in {a["id"] for a in kafka_alerts}, "the same alert is on the Kafka topic"
    # the explanation
    assert stream_alert["observed"] > stream_alert["expected"] >= 0
    assert stream_alert["window_min"] in (15, 60)
    assert set(stream_alert["cells"]) & injected_cells
    assert stream_alert["categories"] and stream_alert["model"] and stream_alert["model_version"]
    assert stream_alert["reason"]
    start = datetime.fromisoformat(injection["start"].replace("Z", "+00:00")).timestamp()
    assert start <= stream_alert["at"] <= start + 3600, "fired during the injected hour"


def _read_frames(ws, into: list[dict]) -> None:
    """Collect a client's frames until its connection closes (a dashboard reading all the time)."""
    try:
        while True:
            into.append(json.loads(ws.recv()))
    except ConnectionClosed:
        return


@pytest.mark.stack
def test_a_cluster_in_an_event_zone_raises_a_zone_alert_in_kafka_and_redis(settings, tmp_path):
    """An event zone written to Redis the way the gateway does, then four simulated days with a cluster inside it during
    its window, replayed through the real stack: a zone_surge alert naming the zone, on the alerts topic and in the stream."""
    lat, lng = 40.1224, -75.3383
    sim, injection = _simulate(tmp_path, days=4, seed=5, inject=f"2024-03-04T16:00,20,12,{lat},{lng},1")
    start = datetime.fromisoformat(injection["start"].replace("Z", "+00:00")).timestamp()
    zone = {
        "id": "parade-2024", "name": "Phillies parade", "kind": "event", "cells": sorted(injection["cells"]),
        "active_from": start - 3600.0, "active_until": start + 2 * 3600.0, "threshold": None,
    }  # fmt: skip
    assert set(zone["cells"]) == set(h3.grid_disk(h3.latlng_to_cell(lat, lng, 8), 1))
    s = replace(settings, retention_s=60 * 86400)
    keys = Keys(s.redis_prefix)
    with redis.Redis.from_url(s.redis_url, decode_responses=True) as client:
        client.hset(keys.zones, mapping={
            zone["id"]: json.dumps(zone),
            "partner-1": json.dumps({**zone, "id": "partner-1", "kind": "partner"}),  # not the detectors' business
            "broken": "{not json",  # skipped with a warning, never fatal
        })  # fmt: skip
        client.incr(keys.zones_version)
    worker = WorkerProcess(s, tmp_path).start()
    try:
        _replay(sim, s, worker)
        opened = _wait_for_alerts(s, lambda a: a["kind"] == "zone_surge" and a["state"] == "open" and a["zone"] == zone["id"], 60)
    finally:
        worker.stop()
    assert "watching 1 event zone(s)" in worker.log_tail(400), "the worker read the zones from Redis"
    alert = next(a for a in opened if start <= a["at"] <= start + 3600)
    kafka_alerts = read_topic(s, ALERTS, expect=1)
    assert alert["id"] in {a["id"] for a in kafka_alerts if a["kind"] == "zone_surge"}, "the same alert is on the Kafka topic"
    assert alert["id"] == f"zone:{zone['id']}:{int(alert['started_at'])}"
    assert alert["observed"] >= 3 and alert["observed"] > alert["expected"] > 0
    assert set(alert["cells"]) <= set(zone["cells"]) and alert["categories"]
    assert (alert["model"], alert["model_version"]) == ("zone-watch", "1.0")
    assert "event zone 'Phillies parade'" in alert["reason"]
    assert all(a["zone"] is None for a in kafka_alerts if a["kind"] != "zone_surge")


def _simulate(tmp_path, *, days: int, seed: int, inject: str) -> tuple[Path, dict]:
    """A simulator file from 2024-03-01 with one injected incident, and that injection's ground truth."""
    sim = tmp_path / "sim.csv"
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(sim), "--days", str(days), "--seed", str(seed),
         "--start", "2024-03-01T00:00", "--inject", inject, "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return sim, json.loads((tmp_path / "sim.csv.injections.json").read_text())["injections"][0]


def _replay(sim: Path, s, worker) -> None:
    """Replay ``sim`` at full speed into the worker's topics and wait until it has counted everything."""
    rp = subprocess.run(
        [sys.executable, "-m", "streams.ingest.replay", str(sim), "--speed", "max", "--no-progress"],
        cwd=ROOT, env=worker_env(s), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rp.returncode == 0, rp.stderr
    wait_caught_up(s, [worker])


def _wait_for_alerts(settings, match, timeout_s: float) -> list[dict]:
    """The alert records of the Redis stream that ``match``, once there is one."""
    key = Keys(settings.redis_prefix).alerts
    deadline = time.monotonic() + timeout_s
    with redis.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        while time.monotonic() < deadline:
            found = [json.loads(f["alert"]) for _, f in client.xrange(key)]
            if hits := [a for a in found if match(a)]:
                return hits
            time.sleep(0.5)
        raise AssertionError(f"no matching alert in the Redis stream; stream holds {found}")


@pytest.mark.stack
def test_detection_worker_killed_between_checkpoints_replays_without_losing_or_duplicating(settings, tmp_path):
    """A worker checkpointing its detectors every 2 s is SIGKILLed mid-stream and restarted: the detectors end
    having seen every call once, and the alerts stream holds each alert record once."""
    lat, lng = 40.1224, -75.3383
    sim, injection = _simulate(tmp_path, days=28, seed=3, inject=f"2024-03-27T17:00,30,20,{lat},{lng},1")
    s = replace(settings, retention_s=60 * 86400)
    env = {"WF_DETECTOR_CHECKPOINT_S": "2"}
    keys = Keys(s.redis_prefix)
    worker = WorkerProcess(s, tmp_path, env=env).start()
    # Calls arrive at 1,500 records/s while the worker detects (about 15 s): at full speed the
    # detectors can be through the whole month before the first look, and nothing is killed mid-stream.
    replay = subprocess.Popen(
        [sys.executable, "-m", "streams.ingest.replay", str(sim), "--speed", "max", "--rate", "1500", "--no-progress"],
        cwd=ROOT, env=worker_env(s), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with redis.Redis.from_url(s.redis_url, decode_responses=True) as client:
        try:
            deadline = time.monotonic() + 120
            # kill once the detectors are into the month and fed past their last checkpoint, with
            # input still ahead of them: calls still arriving, or detector input not yet applied
            # (on a slow machine the detectors are behind when the replay ends)
            while True:
                h = client.hgetall(keys.detector)
                # 50 detector-input messages: about 2,000 records on a fast machine (batches of tens of records),
                # a third of the month on one whose counting falls behind (batches of a thousand: 134 messages in all)
                if "offset" in h and int(h["applied"]) >= 50 and int(h["applied"]) > int(h["offset"]) + 1:
                    break
                if replay.poll() is not None:
                    end = progress.detector_input_end(s)
                    ended = f"the replay ended and the detectors applied all {end} input messages: nothing to kill mid-stream"
                    assert int(h.get("applied", -1)) + 1 < end, ended
                assert time.monotonic() < deadline, f"detectors stuck at {h.get('applied')}"
                time.sleep(0.05)
            worker.kill()
            before = client.hgetall(keys.detector)
            assert replay.poll() is None or int(before["applied"]) + 1 < progress.detector_input_end(s), "killed mid-stream"
            worker = WorkerProcess(s, tmp_path, name="worker-2", env=env).start()
            _, err = replay.communicate(timeout=300)
            assert replay.returncode == 0, err
            wait_caught_up(s, [worker])
            progress.wait_detected(s, 180, lambda: None)
        finally:
            replay.kill()
            replay.communicate()  # reaps it and closes its stderr pipe, also when the test failed
            worker.stop()  # a clean stop checkpoints what it has seen
        restored = int(before["offset"])  # (a checkpoint being written when the worker died dies with it)
        assert f"restored from their checkpoint at detector-input offset {restored}" in worker.log_tail(400)
        saved = client.hgetall(keys.detector)
        runner = checkpoint.restore(base64.b64decode(saved["state"]), checkpoint_key(s), offset=int(saved["offset"]))
        bodies = [f["alert"] for _, f in client.xrange(keys.alerts)]
        calls = int(client.hget(keys.metrics, "events_total|call") or 0)
    # processed, dropped as late, or still held for event-time order (released by the next start)
    points = runner.counters["detector_points_total"] + runner.counters["detector_input_late_total"] + len(runner._merge)
    assert points == calls > 10_000, "every counted call reached the detectors exactly once"
    assert len(bodies) == len(set(bodies)), "no alert record twice in the stream"
    alerts = [json.loads(b) for b in bodies]
    injected = set(injection["cells"])
    assert any(a["kind"] == "surge" and a["state"] == "open" and set(a["cells"]) & injected for a in alerts)
    for alert_id in {a["id"] for a in alerts}:
        states = [a["state"] for a in alerts if a["id"] == alert_id]
        assert states[0] == "open" and "open" not in states[1:] and "closed" not in states[:-1], (alert_id, states)


@pytest.mark.stack
def test_a_worker_refuses_an_unsigned_checkpoint_exits_with_what_to_do_and_runs_none_of_its_code(settings, tmp_path):
    # Anyone who can write to Redis can put a pickle where the checkpoint goes; the worker must not
    # unpickle it (that would run its code), and must not look alive doing nothing: it says what to do
    # and exits, so its supervisor sees it (Faust's graceful stop of a crashed app can hang).
    marker = tmp_path / "marker"
    key = Keys(settings.redis_prefix).detector
    with redis.Redis.from_url(settings.redis_url) as client:
        client.hset(key, mapping={"offset": "12", "state": base64.b64encode(hostile_pickle(marker)).decode()})
    worker = WorkerProcess(settings, tmp_path).start()
    try:
        code = worker.proc.wait(120)
    finally:
        worker.stop()
    log = worker.log_tail(400)
    assert code != 0, log
    assert f"the detectors' checkpoint in {key} was refused: it is not a signed checkpoint" in log
    assert f"Set WF_CHECKPOINT_KEY to the key it was written with, or delete it (redis-cli DEL {key})" in log
    assert not marker.exists(), "the worker ran the pickle's code"


def test_a_crashed_worker_whose_stop_hangs_exits_anyway(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import asyncio, logging, time\n"
        "import streams.runtime.app as m\n"
        "logging.basicConfig()\n"
        "m.CRASH_EXIT_S = 0.5\n"
        "app = m.CrashExitApp('probe', broker='kafka://127.0.0.1:1')\n"
        "asyncio.run(app.crash(RuntimeError('boom')))\n"
        "time.sleep(30)  # as a graceful stop that hangs\n"
        "print('still alive')\n"
    )
    done = subprocess.run([sys.executable, str(probe)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 70, done.stderr
    assert "still alive" not in done.stdout
    assert "worker crashed (RuntimeError('boom')) and did not stop within 0.5 s; exiting with code 70" in done.stderr


def test_calls_shed_by_full_windows_are_in_the_metrics_and_the_prometheus_page():
    from streams.runtime.metrics import render_prometheus

    runner = DetectionRunner()
    runner.suite.surge.max_window_calls = 10
    runner.suite.zones.max_window_calls = 20
    t0 = 1_700_000_000.0
    runner.feed(encode_points([(0, i, t0 + i, "882aac941dfffff", "EMS", None) for i in range(50)]), wall=t0 + 60)
    runner.flush()
    m = runner.metrics()
    assert m["detector_calls_shed_total|surge"] == 50 - len(runner.suite.surge._calls) > 0
    assert m["detector_calls_shed_total|zones"] == 50 - len(runner.suite.zones._calls) > 0
    page = render_prometheus(m)
    assert 'watchfloor_detector_calls_shed_total{detector="surge"}' in page


def test_the_profiles_budget_moves_the_worker_thresholds_online_and_the_metrics_show_them():
    """profile_suite keeps the surge thresholds at the profile's budget: twelve quiet days (far fewer alerts than
    one a day) bring both down once its week-long window is full; the prometheus page shows the thresholds in
    force. The shipped suite's do not move."""
    from streams.jurisdiction import Profile
    from streams.runtime.metrics import render_prometheus

    profile = Profile(id="x", name="X", timezone="America/Denver", false_alerts_per_day=1.0)
    moving, fixed = DetectionRunner(suite=profile_suite(profile)), DetectionRunner(suite=default_suite("America/Denver"))
    assert fixed.suite.surge.control is None and moving.suite.surge.control.budget_per_day == 1.0
    shipped = SurgeDetector()
    start = {"surge_threshold|local": shipped.threshold, "surge_threshold|jurisdiction": shipped.jurisdiction_threshold}
    assert {k: moving.metrics()[k] for k in start} == {k: fixed.metrics()[k] for k in start} == start
    rng, t0 = random.Random(2), 1_700_000_000.0
    cells = sorted(h3.grid_disk("882aac941dfffff", 6))
    points, t = [], t0
    while t < t0 + 12 * 86400:
        t += rng.expovariate(30 / 3600)
        points.append((0, len(points), t, rng.choice(cells), "EMS", None))
    for runner in (moving, fixed):
        for i in range(0, len(points), 200):
            runner.feed(encode_points(points[i : i + 200]), wall=points[min(i + 199, len(points) - 1)][2])
        runner.flush()
    assert {k: fixed.metrics()[k] for k in start} == start
    achieved = moving.suite.surge.control.achieved(points[-1][2])
    assert achieved["local_per_day"] < 0.75 and achieved["jurisdiction_per_day"] < 0.25
    assert all(moving.metrics()[k] < start[k] for k in start), (moving.metrics(), achieved)
    assert 'watchfloor_surge_threshold{scope="local"}' in render_prometheus(moving.metrics())
