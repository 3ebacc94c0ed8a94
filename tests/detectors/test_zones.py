"""The event-zone watch (detectors/zones.py): zone surges open, grow and close with the zone's id and an explanation."""

from __future__ import annotations

import math
import pickle

import h3
import pytest

from detectors.baseline import ExpectedCounts
from detectors.suite import DetectorSuite
from detectors.surge import SurgeDetector
from detectors.types import Alert, AlertKind, AlertState, CallPoint
from detectors.zones import MODEL, MODEL_VERSION, WatchedZone, ZoneWatch
from tests.detectors.conftest import MONDAY, TOWN, background, burst, merged, quick_baseline, run

DAYS = 10
END = MONDAY + DAYS * 86400.0
#: The parade route: a block of the town and its ring.
ROUTE = frozenset(h3.grid_disk(TOWN[40], 1))
#: The parade: watched from noon to 18:00 of the day after the ten quiet days.
PARADE_FROM, PARADE_UNTIL = END + 12 * 3600, END + 18 * 3600


def parade(**kw) -> WatchedZone:
    fields = {"id": "parade", "name": "Phillies parade", "cells": ROUTE, "active_from": PARADE_FROM, "active_until": PARADE_UNTIL}
    return WatchedZone(**{**fields, **kw})


@pytest.fixture(scope="module")
def warmed() -> bytes:
    """A watch after ten ordinary days, the parade zone set but not yet active (pickled: each test takes its own copy)."""
    det = ZoneWatch(baseline=quick_baseline())
    det.set_zones([parade()])
    assert run(det, background(seed=1, days=DAYS)) == [], "the zone alerted before it was active"
    assert det.ready
    return pickle.dumps(det)


def fresh(warmed: bytes) -> ZoneWatch:
    return pickle.loads(warmed)


def cluster(start: float, n: int = 12, minutes: float = 20) -> list[CallPoint]:
    return burst(seed=7, start=start, n=n, minutes=minutes, cells=tuple(sorted(ROUTE)))


def zone_alerts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind is AlertKind.ZONE_SURGE]


def test_a_cluster_in_an_active_zone_opens_one_alert_that_grows_and_closes(warmed):
    """One zone surge is one alert: opened once with the zone's id and its explanation, updated, closed, one id."""
    det = fresh(warmed)
    start = PARADE_FROM + 3600
    alerts = zone_alerts(run(det, merged(cluster(start), background(seed=2, days=0.25, start=PARADE_FROM))))
    states = [a.state for a in alerts]
    assert states.count(AlertState.OPEN) == 1 and states[0] is AlertState.OPEN
    assert states.count(AlertState.UPDATE) >= 1
    assert states[-1] is AlertState.CLOSED and states.count(AlertState.CLOSED) == 1
    assert len({a.id for a in alerts}) == 1
    first = alerts[0]
    assert first.id == f"zone:parade:{int(first.started_at)}" and first.zone == "parade"
    assert start - 60 <= first.started_at <= first.at <= start + 20 * 60
    assert first.observed >= det.min_calls and first.observed > first.expected > 0
    assert first.window_min in det.windows_min and set(first.cells) <= ROUTE
    assert first.score >= det.threshold and first.p_value == pytest.approx(10**-first.score, rel=1e-2)
    assert first.categories.get("TRAFFIC", 0) >= 1 and (first.model, first.model_version) == (MODEL, MODEL_VERSION)
    assert first.reason.startswith(f"{first.observed} calls in {first.window_min} min in event zone 'Phillies parade', ")
    peak = max(alerts[:-1], key=lambda a: a.observed)
    assert peak.observed >= 10, "updates report the cluster as it grows"
    assert "has not scored 3 for 20 min" in alerts[-1].reason and alerts[-1].zone == "parade"
    assert alerts[-1].to_json()["zone"] == "parade" and alerts[-1].to_json()["kind"] == "zone_surge"


def test_the_same_calls_while_the_zone_is_inactive_raise_nothing(warmed):
    before = cluster(PARADE_FROM - 4 * 3600)
    after = cluster(PARADE_UNTIL + 3600)
    assert zone_alerts(run(fresh(warmed), before)) == []
    assert zone_alerts(run(fresh(warmed), after)) == []
    # and a zone elsewhere does not see them either
    det = fresh(warmed)
    det.set_zones([parade(cells=frozenset(h3.grid_disk(TOWN[100], 1)) - ROUTE)])
    assert zone_alerts(run(det, cluster(PARADE_FROM + 3600))) == []


def test_a_zone_ending_or_removed_closes_its_open_alert_and_says_why(warmed):
    det = fresh(warmed)
    det.set_zones([parade(active_until=PARADE_FROM + 3600 + 25 * 60)])
    alerts = zone_alerts(run(det, cluster(PARADE_FROM + 3600, minutes=10)))
    assert alerts[0].state is AlertState.OPEN and alerts[-1].state is not AlertState.CLOSED
    closed = det.advance(PARADE_FROM + 3600 + 25 * 60)
    assert [(a.state, a.id) for a in closed] == [(AlertState.CLOSED, alerts[0].id)]
    assert closed[0].reason == "closed: event zone 'Phillies parade' ended"

    det = fresh(warmed)
    alerts = zone_alerts(run(det, cluster(PARADE_FROM + 3600, minutes=10)))
    det.set_zones([])
    closed = det.advance(alerts[-1].at + 60)
    assert [(a.state, a.id) for a in closed] == [(AlertState.CLOSED, alerts[0].id)]
    assert "no longer watched (removed)" in closed[0].reason
    assert det.advance(alerts[-1].at + 7200) == []


def test_the_zone_threshold_overrides_the_default(warmed):
    """A cluster that alerts at the default does not at a zone threshold above its score, and vice versa."""
    calls = cluster(PARADE_FROM + 3600, n=5, minutes=15)
    default = zone_alerts(run(fresh(warmed), calls))
    assert default, "five calls in a quiet zone alert at the default threshold"
    top = max(a.score for a in default)
    strict = fresh(warmed)
    strict.set_zones([parade(threshold=top + 1.0)])
    assert zone_alerts(run(strict, calls)) == []
    lenient = fresh(warmed)
    lenient.threshold = top + 1.0  # the watch's default is now too high for the cluster...
    lenient.set_zones([parade(threshold=3.0)])  # ...but the zone's own threshold is not
    assert zone_alerts(run(lenient, calls))


def test_nothing_alerts_before_the_baseline_is_ready():
    det = ZoneWatch(baseline=ExpectedCounts(warmup_calls=300, warmup_hours=24))
    det.set_zones([parade(active_from=MONDAY, active_until=MONDAY + 86400)])
    calls = merged(background(seed=3, days=0.5), cluster(MONDAY + 6 * 3600))
    assert run(det, calls) == [] and not det.ready
    assert det.score_one(CallPoint(t=MONDAY + 6 * 3600 + 1300, cell=sorted(ROUTE)[0], category="EMS")) == 0.0


def test_score_one_is_pure_and_zero_outside_active_zones(warmed):
    det = fresh(warmed)
    calls = cluster(PARADE_FROM + 3600, n=6, minutes=10)
    run(det, calls)
    inside = CallPoint(t=calls[-1].t + 30, cell=sorted(ROUTE)[0], category="EMS")
    outside = CallPoint(t=calls[-1].t + 30, cell=next(c for c in TOWN if c not in ROUTE), category="EMS")
    before = pickle.dumps(det)
    assert det.score_one(inside) > det.threshold and det.score_one(outside) == 0.0
    assert pickle.dumps(det) == before


def test_in_the_suite_the_zone_watch_reads_the_surge_baseline_and_learns_no_call_twice():
    surge = SurgeDetector(baseline=quick_baseline())
    zones = ZoneWatch(baseline=surge.baseline, learn_baseline=False)
    zones.set_zones([parade(active_from=MONDAY, active_until=MONDAY + 30 * 86400)])
    suite = DetectorSuite(surge=surge, zones=zones, score=False)
    points = background(seed=5, days=3)
    for p in points:
        suite.process(p)
    assert surge.baseline.calls_learned == len(points)
    assert list(suite.detectors) == ["surge", "feed", "zones"]
    twin = pickle.loads(pickle.dumps(suite))
    assert twin.zones.baseline is twin.surge.baseline, "the checkpoint keeps the baseline shared"
    copy = suite.clone()
    assert copy.zones.baseline is copy.surge.baseline and copy.zones.baseline.calls_learned == 0
    assert copy.zones.zones == zones.zones
    with pytest.raises(ValueError, match="surge.baseline"):
        DetectorSuite(surge=SurgeDetector(), zones=ZoneWatch(baseline=ExpectedCounts(), learn_baseline=False))


@pytest.mark.parametrize(
    "bad",
    [
        {"threshold": 0},
        {"threshold": math.nan},
        {"windows_min": ()},
        {"windows_min": (0, 15)},
        {"windows_min": 15},
        {"min_calls": 0},
        {"min_calls": 2.5},
        {"close_after_min": -1},
        {"baseline": "city"},
        {"learn_baseline": "no"},
        {"learn_baseline": False},  # and no baseline to read
    ],
)
def test_bad_configuration_raises_value_error(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        ZoneWatch(**bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"id": ""},
        {"name": None},
        {"cells": []},
        {"cells": "882aac941dfffff"},
        {"cells": ["not-a-cell"]},
        {"cells": [h3.cell_to_parent(TOWN[0], 7)]},  # a res-7 cell
        {"active_until": PARADE_FROM},
        {"active_from": math.inf},
        {"threshold": 0.0},
        {"threshold": "high"},
    ],
)
def test_bad_zones_raise_value_error(bad):
    with pytest.raises(ValueError, match="zone"):
        parade(**bad)


def test_zones_from_json_and_set_zones_check_their_input():
    record = {"id": "z", "name": "Fair", "kind": "event", "cells": sorted(ROUTE), "active_from": 1, "active_until": 2.5}
    zone = WatchedZone.from_json(record)
    assert zone.cells == ROUTE and zone.threshold is None and zone.active_until == 2.5
    with pytest.raises(ValueError, match="lacks active_from"):
        WatchedZone.from_json({k: v for k, v in record.items() if k != "active_from"})
    with pytest.raises(ValueError, match="JSON list"):
        WatchedZone.from_json({**record, "cells": ",".join(ROUTE)})
    det = ZoneWatch()
    with pytest.raises(ValueError, match="twice"):
        det.set_zones([zone, zone])
    with pytest.raises(ValueError, match="WatchedZone"):
        det.set_zones([record])  # type: ignore[list-item]  # the wrong type on purpose: the error is under test
    assert det.zones == ()


def test_the_zone_watch_windows_hold_at_most_their_cap():
    watch = ZoneWatch(max_window_calls=50)
    t0 = 1_700_000_000.0
    cells = ["882aac941dfffff", "882aac9419fffff"]
    for i in range(500):
        watch.learn_one(CallPoint(t=t0 + i, cell=cells[i % 2], category="EMS"))
        assert len(watch._calls) <= 50
    assert watch.shed_calls == 500 - len(watch._calls)
    assert sum(len(v) for v in watch._by_cell.values()) == len(watch._calls)
    assert watch._calls[-1][0] == t0 + 499  # the newest stay
    with pytest.raises(ValueError, match="max_window_calls"):
        ZoneWatch(max_window_calls=0)
