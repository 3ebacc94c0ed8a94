"""Bootstrap from history (streams/detection/bootstrap.py): trained on past calls, valid at the first live call."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import pickle
import random
import stat
from functools import cache

import h3
import pytest
import redis

from detectors.types import AlertKind, AlertState, CallPoint
from streams.counting.keys import Keys
from streams.counting.planner import Incoming, PlanConfig, Snapshot, plan_batch
from streams.counting.state import RedisState
from streams.detection import bootstrap as bs
from streams.detection import checkpoint
from streams.detection.agent import DetectionAgent
from streams.detection.runner import DetectionRunner, default_suite, encode_points
from streams.detection.shards import runner_parts
from streams.ingest.schema import Jurisdiction
from streams.ingest.sources import Rejected, Row, read_source
from streams.jurisdiction import load_profile
from streams.runtime.settings import load_settings
from tests.conftest import data_file
from tests.streams.detection.test_agent import SentAlerts
from tests.streams.detection.test_checkpoint import KEY, OTHER_KEY

#: Not New York: the detectors learn in the jurisdiction's zone, whichever it is.
ZONE = "America/Los_Angeles"
#: Midnight UTC of a Monday (2023-11-13).
T0 = 1_699_833_600.0
DAY = 86400.0
CENTRE = h3.latlng_to_cell(47.61, -122.33, 8)


def simulated_calls(rng: random.Random, start: float, end: float, rate_h: float = 14.0) -> list[CallPoint]:
    """Poisson calls in 61 cells around a centre, with a daily rhythm (peak at 3 pm local time), categories and priorities."""
    cells = sorted(h3.grid_disk(CENTRE, 4))
    shape = random.Random(7)
    weights = [shape.random() ** 2 for _ in cells]
    peak, t, out = rate_h * 1.6, start, []
    while True:
        t += rng.expovariate(peak / 3600)
        if t >= end:
            return out
        local_hour = ((t - 8 * 3600) % DAY) / 3600
        if rng.random() < (1 + 0.5 * math.sin((local_hour - 9) / 24 * 2 * math.pi)) / 1.6:
            cell = rng.choices(cells, weights)[0]
            out.append(CallPoint(t=t, cell=cell, category=rng.choice(["EMS", "EMS", "FIRE", "TRAFFIC"]), priority=rng.randint(1, 4)))


@cache
def three_weeks() -> tuple[list[CallPoint], bytes, bs.Summary]:
    """Three weeks of simulated history, bootstrapped and signed (made once: a few seconds)."""
    history = simulated_calls(random.Random(11), T0, T0 + 21 * DAY)
    runner, summary = bs.bootstrap(history, timezone=ZONE, partitions=1)
    return history, bs.signed_checkpoint(runner, KEY), summary


def feed(runner: DetectionRunner, points: list[CallPoint]) -> list:
    """Points through the runner as the worker feeds them: one detector-input message each, the wall clock at event time."""
    alerts = []
    for offset, p in enumerate(points):
        alerts += runner.feed(encode_points([(0, offset, p.t, p.cell, p.category, p.priority)]), p.t)
    return alerts


#: The live feed starts 10 days after the history ends, at 3 pm local time.
LIVE0 = T0 + 31 * DAY + 23 * 3600


def live_hours(hours: float = 4.0) -> list[CallPoint]:
    return simulated_calls(random.Random(12), LIVE0, LIVE0 + hours * 3600)


def surge_at(start: float, cell: str, n: int = 12, every_s: float = 50.0) -> list[CallPoint]:
    """``n`` EMS calls in one cell, one every ``every_s`` seconds from ``start``."""
    return [CallPoint(t=start + every_s * i, cell=cell, category="EMS", priority=2) for i in range(n)]


def test_the_bootstrap_learns_three_weeks_and_says_so():
    """Every call is learnt, the detectors are ready and the summary names the days in the jurisdiction's zone."""
    history, _, summary = three_weeks()
    assert summary.calls == len(history) > 6000
    assert summary.ready == {"surge": True, "feed": True, "anomaly": True, "forecast": True}
    assert 2.0 < (summary.ready_at - T0) / DAY < 4.0  # 1,000 calls at ~14 an hour
    assert round(summary.days) == 21 and 480 < summary.exposure_hours <= 504
    assert 16 < summary.live_days < 18.5  # the whole local days after the day it was ready on, but the last
    text = "\n".join(summary.lines())
    assert "2023-11-12 to 2023-12-03 (America/Los_Angeles)" in text  # midnight UTC is the evening before in Seattle
    assert "alerts a day" in text and "NOT READY" not in text


def test_after_a_gap_of_ten_days_the_first_live_calls_raise_nothing():
    """No feed outage for the gap, no surge, nothing closed from the history: the live feed starts clean."""
    _, blob, _ = three_weeks()
    runner = checkpoint.restore(blob, KEY, offset=bs.BOOTSTRAP_OFFSET)
    assert feed(runner, live_hours()) == []


def test_without_settling_the_gap_would_be_a_feed_outage_at_the_first_live_call():
    """The settle step is what keeps the gap quiet: the trained suite alone reports the ten days as an outage."""
    history, _, _ = three_weeks()
    suite = default_suite(ZONE)
    bs.train(suite, history)
    alerts = feed(DetectionRunner(suite=suite, partitions=1), live_hours(0.5))
    assert [(a.kind, a.state) for a in alerts[:2]] == [(AlertKind.FEED_OUTAGE, AlertState.OPEN), (AlertKind.FEED_OUTAGE, AlertState.CLOSED)]


def test_a_surge_in_the_first_live_hour_is_found_only_by_the_bootstrapped_detectors():
    """Twelve calls in ten minutes in one cell, 20 minutes into the live feed: the bootstrapped runner opens a surge on it
    within ten minutes; a runner that starts empty (the worker without a bootstrap) says nothing."""
    _, blob, _ = three_weeks()
    cell = sorted(h3.grid_disk(CENTRE, 4))[3]
    points = sorted(live_hours(2) + surge_at(LIVE0 + 1200, cell), key=lambda p: p.t)
    alerts = feed(checkpoint.restore(blob, KEY, offset=bs.BOOTSTRAP_OFFSET), points)
    opened = [a for a in alerts if a.kind is AlertKind.SURGE and a.state is AlertState.OPEN]
    assert opened and cell in opened[0].cells and LIVE0 + 1200 < opened[0].at <= LIVE0 + 1800
    assert feed(DetectionRunner(suite=default_suite(ZONE), partitions=1), points) == []


def test_an_alert_open_when_the_history_ends_is_closed_in_the_bootstrap_not_live():
    """History ending in a surge: its alert closes while settling (records discarded), so live calls publish no close of it."""
    history, _, _ = three_weeks()
    cell = sorted(h3.grid_disk(CENTRE, 4))[5]
    end = history[-1].t
    ending = sorted(history + surge_at(end - 600, cell, n=14, every_s=40), key=lambda p: p.t)
    suite = default_suite(ZONE)
    records, _ = bs.train(suite, ending)
    assert any(a.kind is AlertKind.SURGE for a in bs.open_alerts(records).values())  # open at the end of the history
    live, ran, left = bs.settle(suite, records, ending[-1].t)
    assert left == [] and 0 < ran <= bs.MAX_SETTLE_S
    assert feed(DetectionRunner(suite=live, partitions=1), live_hours(1)) == []


def test_the_runner_is_fresh_around_the_trained_suite():
    """Offsets of the live calls topic, the reorder buffer and the drift monitor start empty; the partitions are the worker's."""
    _, blob, _ = three_weeks()
    runner = checkpoint.restore(blob, KEY, offset=-1)
    assert isinstance(runner, DetectionRunner) and runner._seen == {} and len(runner._merge) == 0
    assert runner.counters["detector_points_total"] == 0 and runner.partitions == 1
    assert runner.suite.surge.baseline.timezone == ZONE and runner.suite.surge.baseline.ready
    with pytest.raises(checkpoint.CheckpointRefused):
        checkpoint.restore(blob, KEY, offset=0)  # signed at -1: no live message seen


def row(line: int, call_id: str, t: float, lat: float, lng: float, category: str = "EMS", priority: int | None = 2) -> Row:
    call = {
        "type": "call", "v": 1, "id": call_id, "received_at": _iso(t), "category": category, "call_type": "x",
        "priority": priority, "lat": lat, "lng": lng, "agency": "a", "source": "test",
    }  # fmt: skip
    return Row(line, b"", t, call, ())


def _iso(t: float) -> str:
    from streams.ingest.schema import format_time

    return format_time(t)


def test_history_points_are_the_points_the_counting_planner_sends_to_the_detectors():
    """Same calls, same points as the worker's planner makes for detector-input (cell, category, priority, time),
    at a counting resolution whose res-8 ancestor is not always the point's own res-8 cell."""
    rng = random.Random(3)
    rows = [row(i + 2, f"C{i}", 1_453_564_931.0 + 60 * i, 40.1 + rng.random() * 0.3, -75.5 + rng.random() * 0.3) for i in range(300)]
    settings = load_settings({}, h3_resolution=9, h3_parent_levels=2)
    points, left_out = bs.history_points(rows, resolutions=settings.resolutions, now=2e9)
    config = PlanConfig(keys=Keys("t"), resolutions=settings.resolutions, allowed_lateness_s=3600, jurisdiction=None)
    batch = [Incoming(kind="call", partition=0, offset=i, value=json.dumps(r.call).encode()) for i, r in enumerate(rows)]
    plan = plan_batch(batch, Snapshot(), config, now=2e9)
    assert [(p.t, p.cell, p.category, p.priority) for p in points] == [(t, c, k, pr) for _, _, t, c, k, pr in plan.points]
    assert any(p.cell != h3.latlng_to_cell(r.call["lat"], r.call["lng"], 8) for p, r in zip(points, rows, strict=True))
    assert left_out == {}


def test_history_points_leave_out_what_the_worker_refuses_with_its_reason():
    """Outside the jurisdiction, a repeated call id, after --until and rejected rows are counted, not learnt; the rest is sorted."""
    box = Jurisdiction.parse("40.0,-75.7,40.5,-75.0")
    rows = [
        row(2, "A", 1_453_565_000.0, 40.2, -75.3),
        row(3, "B", 1_453_564_000.0, 40.2, -75.3, category="FIRE", priority=None),
        row(4, "C", 1_453_564_500.0, 41.9, -75.3),  # outside the box
        row(5, "A", 1_453_566_000.0, 40.2, -75.3),  # the same call again
        row(6, "D", 1_453_600_000.0, 40.2, -75.3),  # after --until
        Rejected(7, b"", "impossible_timestamp", "received: ..."),
    ]
    points, left_out = bs.history_points(rows, resolutions=(8, 7), jurisdiction=box, until=1_453_590_000.0, now=2e9)
    assert [(p.t, p.category, p.priority) for p in points] == [(1_453_564_000.0, "FIRE", None), (1_453_565_000.0, "EMS", 2)]
    assert left_out == {"outside_jurisdiction": 1, "duplicate_id": 1, "after_until": 1, "impossible_timestamp": 1}


def test_too_little_history_says_not_ready():
    """A day of calls is not enough: the summary says so, and what to do."""
    history = simulated_calls(random.Random(4), T0, T0 + DAY)
    _, summary = bs.bootstrap(history, timezone=ZONE, partitions=4)
    assert summary.ready["surge"] is False and summary.ready_at is None and summary.per_day() == {}
    assert any(line.startswith("NOT READY: give more history") for line in summary.lines())


def history_csv(path, days: float = 5.0):
    """``days`` of simulated calls as a watchfloor CSV file at ``path``."""
    lines = ["id,received_at,category,call_type,priority,lat,lng,agency,dispatched_at,en_route_at,on_scene_at,closed_at,unit"]
    for i, p in enumerate(simulated_calls(random.Random(5), T0, T0 + days * DAY)):
        lat, lng = h3.cell_to_latlng(p.cell)
        lines.append(f"X{i},{_iso(p.t)},{p.category},x,{p.priority},{lat:.5f},{lng:.5f},seattle-test,,,,,")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_command_writes_a_signed_file_readable_only_by_its_owner(tmp_path, monkeypatch, capsys):
    """--out: a 0600 file the worker's key verifies at offset -1, and the summary on stdout."""
    path = history_csv(tmp_path / "calls.csv")
    monkeypatch.setenv("WF_CHECKPOINT_KEY", KEY.decode())
    out = tmp_path / "b.ckpt"
    assert bs.main([str(path), "--timezone", ZONE, "--out", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert checkpoint.restore(out.read_bytes(), KEY, offset=-1).suite.surge.baseline.ready
    printed = capsys.readouterr().out
    assert "ready               surge yes" in printed and f"--load {out}" in printed


def test_the_command_leaves_out_calls_outside_the_profile_boundary_as_the_worker_does(tmp_path, monkeypatch, capsys):
    """--profile: its GeoJSON boundary bounds what is learnt (not only WF_JURISDICTION's box), under the worker's reason."""
    path = history_csv(tmp_path / "calls.csv")
    lat, lng = h3.cell_to_latlng(CENTRE)
    west_half = [[lng - 0.2, lat - 0.2], [lng, lat - 0.2], [lng, lat + 0.2], [lng - 0.2, lat + 0.2], [lng - 0.2, lat - 0.2]]
    (tmp_path / "boundary.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [west_half]}))
    profile = tmp_path / "jurisdiction.toml"
    profile.write_text(f'id = "half"\nname = "Half"\ntimezone = "{ZONE}"\n[boundary]\ngeojson = "boundary.geojson"\n')
    monkeypatch.setenv("WF_CHECKPOINT_KEY", KEY.decode())
    monkeypatch.delenv("WF_JURISDICTION", raising=False)
    assert bs.main([str(path), "--profile", str(profile), "--out", str(tmp_path / "b.ckpt")]) == 0
    printed = capsys.readouterr().out
    learnt = [line for line in printed.splitlines() if line.startswith("calls learnt")][0]
    half = load_profile(profile)
    calls = simulated_calls(random.Random(5), T0, T0 + 5 * DAY)
    west = sum(1 for p in calls if half.contains(*(round(x, 5) for x in h3.cell_to_latlng(p.cell))))
    assert 0 < west < len(calls)
    assert f"calls learnt        {west:,}" in learnt and "outside_jurisdiction" in learnt, learnt


def test_calibrate_fits_the_thresholds_to_the_profiles_budget_and_the_checkpoint_keeps_them(tmp_path, monkeypatch, capsys):
    """--calibrate: the thresholds calibrate() picks on the history are those the checkpoint's detector starts
    from (before the online control moves them), with the profile's budget; too short a history keeps the
    shipped ones and says why."""
    monkeypatch.setenv("WF_CHECKPOINT_KEY", KEY.decode())
    profile = tmp_path / "jurisdiction.toml"
    profile.write_text(f'id = "c"\ntimezone = "{ZONE}"\n[detection]\nfalse_alerts_per_day = 2\n')
    path = history_csv(tmp_path / "calls.csv", days=9.0)
    out = tmp_path / "b.ckpt"
    assert bs.main([str(path), "--profile", str(profile), "--calibrate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows, _ = bs.history_points(read_source(path), resolutions=(8, 7))
    expected = bs.calibrate_on_history(rows, load_profile(profile), ZONE)
    # a quiet Poisson history: the shipped thresholds (6 / 4.5) raise nothing on it; the budget allows lower ones
    assert expected.threshold < 6.0 and expected.jurisdiction_threshold < 4.5 and expected.expected_per_day <= 2.0
    line = f"thresholds          local {expected.threshold:g}, jurisdiction {expected.jurisdiction_threshold:g}, calibrated to 2 alert(s)"
    assert line in printed, printed
    surge = checkpoint.restore(out.read_bytes(), KEY, offset=-1).suite.surge
    assert surge.control.budget_per_day == 2.0 and surge.control.floor[0] <= expected.threshold
    assert surge.close_threshold == min(3.0, expected.threshold, expected.jurisdiction_threshold)  # set from the calibration
    assert bs.main([str(history_csv(tmp_path / "short.csv", days=3.0)), "--profile", str(profile), "--calibrate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "thresholds          local 6, jurisdiction 4.5 (shipped; not calibrated: the history holds" in printed, printed


@pytest.mark.stack
def test_into_redis_is_restored_by_the_agent_and_refused_over_a_worker_checkpoint(settings):
    """Written where the worker keeps none, the agent's restore path starts from it; a second write is refused,
    unless forced; under another key the agent refuses it."""
    _, blob, _ = three_weeks()

    async def go():
        st = RedisState.from_settings(settings)
        try:
            assert await st.seed_detection(bs.BOOTSTRAP_OFFSET, blob) is True
            agent = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: KEY)  # type: ignore[arg-type]  # SentAlerts: the alerts topic
            runner = await agent.runner()
            assert agent.state.offset == agent.state.applied == -1
            assert await st.seed_detection(bs.BOOTSTRAP_OFFSET, b"other") is False  # refused: the worker's state stays
            assert (await st.load_detection()) == (-1, blob)
            stranger = DetectionAgent(settings, lambda: st, SentAlerts(), key=lambda: OTHER_KEY)  # type: ignore[arg-type]  # SentAlerts
            with pytest.raises(Exception, match="signature did not verify"):
                await stranger.runner()
            return runner
        finally:
            await st.close()

    runner = asyncio.run(go())
    assert runner.suite.surge.baseline.ready and runner._seen == {}
    with redis.Redis.from_url(settings.redis_url) as client:
        client.hset(f"{settings.redis_prefix}:detector", "applied", "7")  # a worker fed messages and has not checkpointed yet

    async def again():
        st = RedisState.from_settings(settings)
        try:
            refused = await st.seed_detection(bs.BOOTSTRAP_OFFSET, blob)
            forced = await st.seed_detection(bs.BOOTSTRAP_OFFSET, blob, force=True)
            return refused, forced, await st.load_detection()
        finally:
            await st.close()

    refused, forced, saved = asyncio.run(again())
    assert (refused, forced, saved) == (False, True, (-1, blob))
    with redis.Redis.from_url(settings.redis_url) as client:
        assert client.hget(f"{settings.redis_prefix}:detector", "applied") is None  # forced: the old worker's marks are gone
        client.delete(f"{settings.redis_prefix}:detector")


def test_a_real_history_makes_ready_detectors():
    """Cincinnati's 60 days (real calls, when ../shared/data is present): ready within the first week, few alerts a day."""
    path = data_file("cincinnati-fire-ems-60-days.csv")
    if path is None:
        pytest.skip("../shared/data is absent (a fresh clone)")
    points, left_out = bs.history_points(read_source(path), resolutions=(8, 7), now=2e9)
    _, summary = bs.bootstrap(points, timezone="America/New_York", partitions=4, left_out=dict(left_out))
    assert summary.calls == len(points) > 10_000 and summary.ready["surge"]
    assert summary.ready_at is not None and (summary.ready_at - summary.first_t) / DAY < 7
    assert sum(summary.per_day().values()) < 1.0


@pytest.mark.stack
def test_the_command_into_redis_refuses_over_a_checkpoint_unless_forced(settings, tmp_path, monkeypatch, capsys):
    """--into-redis writes where none is (exit 0), refuses over one (exit 3, what to do on stderr), --force and --load replace it."""
    path = history_csv(tmp_path / "calls.csv", days=3.0)
    for name, value in (
        ("WF_REDIS_URL", settings.redis_url),
        ("WF_REDIS_PREFIX", settings.redis_prefix),
        ("WF_CHECKPOINT_KEY", KEY.decode()),
    ):
        monkeypatch.setenv(name, value)
    saved = tmp_path / "b.ckpt"
    try:
        assert bs.main([str(path), "--timezone", ZONE, "--into-redis", "--out", str(saved)]) == 0
        assert "start the worker" in capsys.readouterr().out
        assert bs.main([str(path), "--timezone", ZONE, "--into-redis"]) == 3
        assert "refused" in capsys.readouterr().err
        assert bs.main(["--load", str(saved)]) == 3
        assert bs.main(["--load", str(saved), "--force"]) == 0
        with redis.Redis.from_url(settings.redis_url) as client:
            stored = client.hgetall(f"{settings.redis_prefix}:detector")
        assert stored[b"offset"] == b"-1" and stored[b"state"] == base64.b64encode(saved.read_bytes())
        monkeypatch.setenv("WF_CHECKPOINT_KEY", OTHER_KEY.decode())
        with pytest.raises(SystemExit, match="signed with the worker's key"):
            bs.main(["--load", str(saved), "--force"])
    finally:
        with redis.Redis.from_url(settings.redis_url) as client:
            client.delete(f"{settings.redis_prefix}:detector", f"{settings.redis_prefix}:detector:written")


def test_the_summary_warns_when_the_history_is_too_old_for_a_live_feed_of_today():
    """Past one half-life of the baseline, the summary says the history is too old to stand for today's calls."""
    _, _, summary = three_weeks()
    recent, old = summary.lines(now=summary.last_t + 3 * DAY), summary.lines(now=summary.last_t + 200 * DAY)
    assert any("its last day's calls count 98% of a live call" in line for line in recent)
    assert not any(line.startswith("TOO OLD") for line in recent) and any(line.startswith("TOO OLD") for line in old)


@cache
def three_weeks_split() -> tuple[DetectionRunner, DetectionRunner]:
    """The same history bootstrapped for two workers sharing the stage (surge,forecaster and feed,anomaly)."""
    history, _, _ = three_weeks()
    first, second = (bs.bootstrap(history, timezone=ZONE, partitions=1, parts=parts)[0] for parts in LAYOUT_2)
    return first, second


#: The two detection workers' shares (streams.detection.shards.layout(2)).
LAYOUT_2 = (("surge", "forecaster"), ("feed", "anomaly"))


def test_a_split_bootstrap_makes_each_shares_runner_and_together_they_alert_as_the_whole_one():
    """Bootstrapped per part set, each runner runs its parts only, and on the same live calls (a surge among them) the two
    make the whole bootstrap's alert records, each alert's records in the same order."""
    _, blob, _ = three_weeks()
    whole = checkpoint.restore(blob, KEY, offset=-1)
    shares = [pickle.loads(pickle.dumps(r)) for r in three_weeks_split()]
    assert [runner_parts(r) for r in shares] == list(LAYOUT_2)
    assert shares[1].suite.surge.baseline.calls_learned == 0 and shares[0].suite.feed.baseline.calls_learned == 0
    live = sorted(live_hours(2) + surge_at(LIVE0 + 1200, sorted(h3.grid_disk(CENTRE, 4))[3]), key=lambda p: p.t)
    records = feed(whole, live)
    assert any(a.kind is AlertKind.SURGE for a in records)
    expected = [json.dumps(a.to_json(), sort_keys=True) for a in records]
    got = [json.dumps(a.to_json(), sort_keys=True) for r in shares for a in feed(r, live)]
    assert sorted(got) == sorted(expected)
    for alert_id in {json.loads(r)["id"] for r in expected}:
        assert [r for r in got if json.loads(r)["id"] == alert_id] == [r for r in expected if json.loads(r)["id"] == alert_id]


def test_the_summary_of_a_share_reports_only_its_parts():
    history, _, _ = three_weeks()
    _, summary = bs.bootstrap(history[:3000], timezone=ZONE, partitions=1, parts=("feed",))
    assert summary.ready == {"feed": True} and "NOT READY" not in "\n".join(summary.lines())


def test_the_command_seeds_a_share_and_refuses_to_load_one_under_other_parts(tmp_path, monkeypatch, capsys):
    """With WF_DETECTION_PARTS the file holds that share's runner; --load under other parts (or none) is refused naming both."""
    path = history_csv(tmp_path / "calls.csv", days=3.0)
    monkeypatch.setenv("WF_CHECKPOINT_KEY", KEY.decode())
    monkeypatch.setenv("WF_ROLES", "detect")
    monkeypatch.setenv("WF_DETECTION_PARTS", "anomaly,feed")
    out = tmp_path / "share.ckpt"
    assert bs.main([str(path), "--timezone", ZONE, "--out", str(out)]) == 0
    assert "parts               feed, anomaly (WF_DETECTION_PARTS): checkpoint wf:detector:feed_anomaly" in capsys.readouterr().out
    assert runner_parts(checkpoint.restore(out.read_bytes(), KEY, offset=-1)) == ("feed", "anomaly")
    monkeypatch.setenv("WF_DETECTION_PARTS", "surge,forecaster")
    wrong = r"holds the detection parts feed,anomaly, but this worker's are surge,forecaster .*WF_DETECTION_PARTS=feed,anomaly"
    with pytest.raises(SystemExit, match=wrong):
        bs.main(["--load", str(out)])
    monkeypatch.delenv("WF_DETECTION_PARTS")
    monkeypatch.delenv("WF_ROLES")
    with pytest.raises(SystemExit, match=r"this worker's are surge,feed,anomaly,forecaster \(WF_DETECTION_PARTS unset: the whole stage\)"):
        bs.main(["--load", str(out)])
    monkeypatch.setenv("WF_ROLES", "detect")
    monkeypatch.setenv("WF_DETECTION_PARTS", "feed")
    with pytest.raises(SystemExit):
        bs.main([str(path), "--timezone", ZONE, "--out", str(out), "--calibrate"])
    no_surge = "--calibrate fits the surge thresholds, and this worker's parts (feed, WF_DETECTION_PARTS) have no surge"
    assert no_surge in capsys.readouterr().err


@pytest.mark.stack
def test_the_command_into_redis_seeds_the_shares_checkpoint_the_split_agent_restores(settings, tmp_path, monkeypatch, capsys):
    """--into-redis with WF_DETECTION_PARTS writes P:detector:<parts> (not P:detector), and a detection agent running
    those parts restores it, its parts only."""
    path = history_csv(tmp_path / "calls.csv", days=3.0)
    for name, value in (
        ("WF_REDIS_URL", settings.redis_url),
        ("WF_REDIS_PREFIX", settings.redis_prefix),
        ("WF_CHECKPOINT_KEY", KEY.decode()),
        ("WF_ROLES", "detect"),
        ("WF_DETECTION_PARTS", "feed,anomaly"),
    ):
        monkeypatch.setenv(name, value)
    split = load_settings({"WF_ROLES": "detect", "WF_DETECTION_PARTS": "feed,anomaly"}, **{
        k: getattr(settings, k) for k in ("kafka_bootstrap", "redis_url", "topic_prefix", "redis_prefix", "app_id", "partitions")
    })  # fmt: skip
    try:
        assert bs.main([str(path), "--timezone", ZONE, "--into-redis"]) == 0
        assert f"{settings.redis_prefix}:detector:feed_anomaly" in capsys.readouterr().out
        with redis.Redis.from_url(settings.redis_url) as client:
            assert not client.exists(f"{settings.redis_prefix}:detector")

        async def go():
            st = RedisState.from_settings(split)
            try:
                agent = DetectionAgent(split, lambda: st, SentAlerts(), key=lambda: KEY)  # type: ignore[arg-type]  # SentAlerts: the alerts topic
                return await agent.runner(), agent.state.offset
            finally:
                await st.close()

        runner, offset = asyncio.run(go())
        assert offset == -1 and runner_parts(runner) == ("feed", "anomaly")
        assert runner.suite.feed.baseline.calls_learned > 900 and runner.suite.surge.baseline.calls_learned == 0
    finally:
        with redis.Redis.from_url(settings.redis_url) as client:
            client.delete(*(f"{settings.redis_prefix}:detector{s}" for s in (":feed_anomaly", ":feed_anomaly:written")))
