"""Forecast sets through the real stack: simulated calls -> Kafka -> worker -> Redis ``P:forecast`` and the forecasts topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from streams.counting.keys import Keys
from streams.topics import FORECASTS
from tests.gateway.live import GatewayProcess, token
from tests.stackutil import ROOT, WorkerProcess, read_topic, wait_caught_up, worker_env

PROFILE = ROOT / "infra" / "jurisdictions" / "montgomery-pa" / "jurisdiction.toml"


def _simulate(path: Path, *, start: str, days: float, seed: int, per_day: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "streams.ingest.simulator", "--out", str(path), "--days", str(days), "--seed", str(seed),
         "--start", start, "--calls-per-day", str(per_day), "--no-progress"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def _replay(path: Path, s, worker: WorkerProcess, speed: str = "max") -> None:
    rp = subprocess.run(
        [sys.executable, "-m", "streams.ingest.replay", str(path), "--speed", speed, "--no-progress"],
        cwd=ROOT, env=worker_env(s), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert rp.returncode == 0, rp.stderr
    wait_caught_up(s, [worker])


def _wait_for_last_set(client: redis.Redis, keys: Keys, after: int, worker: WorkerProcess, timeout_s: float = 40) -> tuple[int, dict]:
    """The forecast set in Redis once its version is above ``after`` and has not moved for 3 s (the replay's last)."""
    deadline = time.monotonic() + timeout_s
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        raw = client.get(keys.forecast_version)
        version = None if raw is None else int(raw)
        if version != seen:
            seen, since = version, time.monotonic()
        elif version is not None and version > after and time.monotonic() - since >= 3.0:
            body = client.get(keys.forecast)
            assert body is not None, "the version moved without a set"
            return version, json.loads(body)
        time.sleep(0.3)
    raise AssertionError(f"no forecast set after version {after} in {timeout_s} s (version {seen}):\n{worker.log_tail(30)}")


def _metrics(worker: WorkerProcess) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()


@pytest.mark.stack
def test_forecast_sets_reach_redis_and_the_topic_and_survive_a_restart(settings, tmp_path):
    """Two simulated days (the forecaster's warm-up) replayed through the worker: a set of the contract's schema lands in
    P:forecast with its version and on the forecasts topic, and /metrics counts it. The worker stops (a checkpoint) and a
    new one, fed six more hours, makes later sets at once (its forecaster came back ready, far short of the warm-up's
    1,000 calls), with the monitor's figures. In between, a real gateway serves the worker's set to a supervisor, builds an
    allocation on it, and gives a partner none of it."""
    s = replace(settings, retention_s=60 * 86400, detector_checkpoint_s=2.0)
    keys = Keys(s.redis_prefix)
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    _simulate(first, start="2024-03-04T00:00", days=2, seed=5, per_day=900)
    _simulate(second, start="2024-03-06T00:00", days=0.25, seed=6, per_day=900)
    env = {"WF_PROFILE": str(PROFILE)}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    worker = WorkerProcess(s, tmp_path / "one", env=env).start()
    try:
        _replay(first, s, worker)
        version, fs = _wait_for_last_set(client, keys, 0, worker)
        page = _metrics(worker)
    finally:
        worker.stop()
    # the contract's schema
    assert fs["v"] == 1 and fs["timezone"] == "America/New_York" and fs["horizons"] == [1, 8, 24]
    assert fs["issued"] % 900 == 0 and 1709528400 + 86400 <= fs["issued"] <= 1709528400 + 2 * 86400 + 900
    assert abs(fs["made"] - time.time()) < 600
    kinds = [e["kind"] for e in fs["areas"].values()]
    assert kinds.count("jurisdiction") == 1 and kinds.count("area") == 62 and kinds.count("cell6") >= 1 and kinds.count("cell7") >= 10
    whole = fs["areas"]["jurisdiction"]
    assert whole["name"] == "Montgomery County, PA" and len(whole["hourly"]) == 8 and "EMS" in whole["categories"]
    eight = whole["by_horizon"]["8"]
    assert set(eight) == {"start", "end", "mean", "lo80", "hi80", "lo95", "hi95"} and eight["lo95"] <= eight["mean"] <= eight["hi95"]
    assert 100 < eight["mean"] < 600  # 900 calls a day: about 300 in 8 hours
    assert fs["hotspots"]["area_cells"] > 1000 and fs["hotspots"]["cells"][0]["rank"] == 1
    assert int(client.get(keys.forecast_version)) == version
    # the same set on the forecasts topic (the last sent is the one in Redis)
    sent = read_topic(s, FORECASTS, expect=1, timeout_s=20)
    assert sent and sent[-1]["issued"] == fs["issued"] and sent[-1]["areas"].keys() == fs["areas"].keys()
    assert "watchfloor_forecast_sets_total" in page and f"watchfloor_forecast_issued_seconds {fs['issued']}" in page
    _through_the_gateway(s.redis_prefix, tmp_path, version, fs)

    again = WorkerProcess(s, tmp_path / "two", env=env).start()
    try:
        # paced (an hour of calls a second), so that the new worker publishes a set every quarter hour or so and the
        # monitor scores their windows: at full speed it published one set at the end, and whether that set carried a
        # scored window depended on timing (a clean-clone run on 2026-12-06 found none; the cause was not pinned down)
        _replay(second, s, again, speed="3600")
        later_version, later = _wait_for_last_set(client, keys, version, again)
        page = _metrics(again)
    finally:
        again.stop()
    assert "detectors restored from their checkpoint" in again.log_tail(400)
    assert later_version > version and later["issued"] > fs["issued"]
    assert later["monitor"]["jurisdiction|1"]["n"] >= 1, "no forecast window was scored"
    assert 'watchfloor_forecast_coverage{level="jurisdiction",horizon="1",nominal="0.8"}' in page


def _through_the_gateway(prefix: str, tmp_path: Path, version: int, fs: dict) -> None:
    """The worker's set, read through a real gateway: a supervisor gets it as the worker wrote it, an allocation is
    built on its areas, and a transit partner gets none of it."""
    g = GatewayProcess(prefix, env_extra={"WF_PROFILE": str(PROFILE)}).start(tmp_path)
    try:
        status, body = g.get_json("/api/forecast", token("supervisor"))
        assert status == 200 and body["ready"] and body["version"] == version and body["issued"] == fs["issued"], body
        assert set(body["areas"]) == set(fs["areas"])
        ranked = [(c["cell"], c["rank"], c["mean"]) for c in fs["hotspots"]["cells"]]
        assert [(c["cell"], c["rank"], c["mean"]) for c in body["hotspots"]["cells"]] == ranked[: len(body["hotspots"]["cells"])]
        top = fs["hotspots"]["flagged"]["0.005"]
        assert [c["cell"] for c in body["hotspots"]["cells"] if "0.005" in c["flagged"]] == [c for c, _, _ in ranked[:top]]
        status, body = g.get_json("/api/forecast?area=jurisdiction&horizon=8", token("supervisor"))
        assert status == 200 and body["areas"]["jurisdiction"]["by_horizon"]["8"] == fs["areas"]["jurisdiction"]["by_horizon"]["8"], body
        status, plan = g.get_json("/api/allocation?units=70", token("supervisor"))
        assert status == 200, plan
        assert sum(row["units"] for row in plan["rows"]) == 70 and {row["key"] for row in plan["rows"]} <= set(fs["areas"])
        status, body = g.get_json("/api/forecast", token("transit", zones=("septa-lansdale",)))
        text = json.dumps(body)
        assert status in (200, 403) and "hotspots" not in body and "monitor" not in body, body
        assert not any(key in text for key in fs["areas"] if key != "jurisdiction"), "a worker's area key reached a partner"
    finally:
        g.stop()
