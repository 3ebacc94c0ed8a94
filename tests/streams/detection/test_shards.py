"""The detection stage split over workers: together they make exactly the alert records of one runner."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import h3
import pytest

from detectors.types import Alert
from streams.detection.runner import DetectionRunner, encode_points
from streams.detection.shards import PARTS, NoForecasts, check_parts, layout, worker_runner
from streams.ingest.simulator import Injection, Simulator
from streams.jurisdiction import Profile

ZONE = "America/New_York"
PROFILE = Profile(id="sim", name="Simulated County", timezone=ZONE)
START = datetime(2024, 1, 8, tzinfo=ZoneInfo(ZONE))
#: the simulator's default centre, and a place 12 km east of it
CENTRE = (40.12, -75.34)


def _injections() -> list[Injection]:
    """A surge in a cell and its ring, a traffic-heavy evening in one area (a call-mix change), and a county-wide
    afternoon: extra calls in a dozen places at once."""
    at = lambda day, hour, minute=0: datetime(2024, 1, day, hour, minute, tzinfo=ZoneInfo(ZONE))  # noqa: E731
    out = [
        Injection(start=at(24, 18, 30), duration_s=1800, extra_calls=14, lat=40.12, lng=-75.34, spread_cells=1),
        Injection(start=at(25, 20), duration_s=5400, extra_calls=40, lat=40.20, lng=-75.20, spread_cells=1),
    ]
    rng = random.Random(4)
    for _ in range(12):
        lat, lng = CENTRE[0] + rng.uniform(-0.15, 0.15), CENTRE[1] + rng.uniform(-0.2, 0.2)
        out.append(Injection(start=at(26, 13), duration_s=3 * 3600, extra_calls=12, lat=lat, lng=lng, spread_cells=1))
    return out


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    """Three simulated weeks with injected surges and a three-hour feed outage, as detector-input messages of 200 calls."""
    sim = Simulator(seed=7, start=START, days=21, injections=_injections(), timezone=ZONE, calls_per_day=500)
    outage = (datetime(2024, 1, 22, 14, tzinfo=ZoneInfo(ZONE)).timestamp(), datetime(2024, 1, 22, 17, tzinfo=ZoneInfo(ZONE)).timestamp())
    points = []
    for c in sim.calls():
        t = float(c.call.received_at)
        if outage[0] <= t < outage[1]:
            continue
        cell = h3.latlng_to_cell(c.call.lat, c.call.lng, 8)
        points.append((c.call.received_at, cell, c.call.category.value, c.call.priority))
    points.sort(key=lambda p: p[0])
    rows = [(0, i, float(t), cell, cat, pr) for i, (t, cell, cat, pr) in enumerate(points)]
    return [encode_points(rows[i : i + 200]) for i in range(0, len(rows), 200)]


def _run(runner: DetectionRunner, messages: list[bytes]) -> tuple[list[Alert], list[tuple]]:
    """Feed every message; the alert records, and the forecast sets due (taken after each message)."""
    alerts: list[Alert] = []
    issues = []
    for m in messages:
        alerts += runner.feed(m, wall=0.0)
        issue = runner.forecasts_due()
        if issue is not None:
            issues.append((issue.issued, issue.cells7, issue.seen8, json.dumps(issue.monitor, sort_keys=True)))
    alerts += runner.flush()
    return alerts, issues


def _record(a: Alert) -> str:
    """An alert record as compared: all of its fields (nothing in it names a worker)."""
    return json.dumps(a.to_json(), sort_keys=True)


def _by_id(alerts: list[Alert]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for a in alerts:
        out[a.id].append(_record(a))
    return dict(out)


@pytest.fixture(scope="module")
def single(messages) -> tuple[list[Alert], list[tuple]]:
    return _run(worker_runner(PARTS, PROFILE), messages)


def test_the_simulated_stream_makes_alerts_of_every_kind_the_workers_split(single) -> None:
    """The comparison means something only if each part alerts: surges (local and county-wide), the outage, the call mix;
    and the forecaster issues sets."""
    alerts, issues = single
    kinds = {(a.kind.value, a.id.split(":")[1] == "jurisdiction") for a in alerts}
    assert {("surge", False), ("surge", True), ("feed_outage", False), ("anomaly", False)} <= kinds, kinds
    assert len(issues) > 10


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_workers_together_make_exactly_the_alert_records_of_one_runner(messages, single, workers) -> None:
    alerts, issues = single
    each = [_run(worker_runner(parts, PROFILE), messages) for parts in layout(workers)]
    union = [a for got, _ in each for a in got]
    assert sorted(map(_record, union)) == sorted(map(_record, alerts))
    # each alert's records come from one worker, in the single runner's order
    assert _by_id(union) == _by_id(alerts)
    for got, _ in each:
        assert all(len({a.id for a in got} & {a.id for a in other}) == 0 for other, _ in each if other is not got)
    # one worker issues the forecast sets, the same ones
    assert [i for _, got in each for i in got] == issues


def test_a_worker_runs_only_its_parts(messages) -> None:
    """The surge worker makes no outage or anomaly alert and issues no forecast; the other, no surge or zone alert."""
    surge_side, rest_side = (_run(worker_runner(parts, PROFILE), messages[:60]) for parts in layout(2))
    assert {a.kind.value for a in rest_side[0]} <= {"feed_outage", "anomaly"}
    assert surge_side[1] == []
    assert {a.kind.value for a in surge_side[0]} <= {"surge", "zone"}


def test_a_worker_that_does_not_forecast_holds_no_forecaster_state(messages) -> None:
    runner = worker_runner(["feed"], PROFILE)
    _run(runner, messages[:20])
    assert isinstance(runner.forecasting, NoForecasts)
    assert runner.forecasting.metrics() == {} and runner.forecasting.forecaster.state_size() == 0


def test_the_layouts_place_every_part_on_exactly_one_worker() -> None:
    for workers in range(1, len(PARTS) + 1):
        placed = [p for parts in layout(workers) for p in parts]
        assert sorted(placed) == sorted(PARTS) and len(layout(workers)) == workers


def test_unknown_parts_and_worker_counts_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="the parts are surge, feed, anomaly, forecaster"):
        check_parts(["zones"])
    with pytest.raises(ValueError, match="at least one part"):
        check_parts([])
    with pytest.raises(ValueError, match="must be 1 to 4"):
        layout(0)


def test_seeded_random_streams_split_over_random_layouts_give_the_single_runners_alerts() -> None:
    """Property, over seeded random streams (places, rates, bursts, silences) and worker counts."""
    for seed in range(3):
        rng = random.Random(seed)
        centre = h3.latlng_to_cell(rng.uniform(-60, 60), rng.uniform(-170, 170), 8)
        town = sorted(h3.grid_disk(centre, 8))
        t, rows = 1_700_000_000.0 + rng.uniform(0, 86400), []
        for i in range(6000):
            t += rng.expovariate(rng.choice((10, 25, 60)) / 3600)
            if rng.random() < 0.001:
                t += rng.uniform(3600, 4 * 3600)  # a silence
            burst = rng.random() < 0.02
            cell = rng.choice(town[:7]) if burst else rng.choice(town)
            rows.append((0, i, t, cell, rng.choice(("EMS", "EMS", "TRAFFIC", "FIRE", "POLICE")), rng.choice((1, 2, 3, None))))
        cuts = sorted({0, len(rows), *(rng.randrange(len(rows)) for _ in range(40))})
        messages = [encode_points(rows[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
        whole, _ = _run(worker_runner(PARTS, PROFILE), messages)
        workers = rng.randint(2, 4)
        union = [a for parts in layout(workers) for a in _run(worker_runner(parts, PROFILE), messages)[0]]
        assert whole, f"seed {seed}: no alert at all, the comparison would prove nothing"
        assert _by_id(union) == _by_id(whole), f"seed {seed}, {workers} workers"
