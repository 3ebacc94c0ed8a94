"""The detectors honour the jurisdiction's time zone: the same calls, moved to another zone
with a profile naming that zone, give the same alerts at the same local times."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from detectors.evaluation.calls import Calls
from detectors.evaluation.replay import replay
from streams.detection.runner import default_suite
from streams.ingest.simulator import Injection, Simulator

NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
#: New York's wall clock runs three hours ahead of Los Angeles' all year (both change on the same
#: local dates and hours): a call at a New York wall time happens at that Los Angeles wall time 3 h later.
SHIFT_S = 3 * 3600


@pytest.fixture(scope="module")
def history() -> list[tuple[float, float, float, str, None]]:
    """Three winter weeks of a simulated New York centre (no daylight-saving change in them), with a
    Friday-evening surge in a cell and its ring; times in whole seconds so that a shift is exact."""
    start = datetime(2024, 1, 8, tzinfo=NEW_YORK)
    surge = Injection(
        start=datetime(2024, 1, 26, 18, 30, tzinfo=NEW_YORK),
        duration_s=1800,
        extra_calls=14,
        lat=40.12,
        lng=-75.34,
        spread_cells=1,
    )
    sim = Simulator(seed=11, start=start, days=21, injections=[surge], timezone="America/New_York")
    return [(float(round(c.call.received_at)), c.call.lat, c.call.lng, c.call.category.value, None) for c in sim.calls()]


def _alerts(history, zone: ZoneInfo, shift_s: float) -> list[tuple]:
    calls = Calls.from_history((t + shift_s, lat, lng, cat, d) for t, lat, lng, cat, d in history)
    alerts, _ = replay(default_suite(zone.key), calls)

    def wall(t: float) -> str:
        return datetime.fromtimestamp(t, zone).strftime("%Y-%m-%d %H:%M:%S")

    return [
        (a.kind.value, a.state.value, wall(a.started_at), wall(a.at), a.cells, a.observed, a.expected, round(a.score, 6), a.reason)
        for a in alerts
    ]


@pytest.fixture(scope="module")
def in_new_york(history) -> list[tuple]:
    return _alerts(history, NEW_YORK, 0)


def test_the_same_calls_in_another_zone_give_the_same_alerts_at_the_same_local_times(history, in_new_york) -> None:
    in_los_angeles = _alerts(history, LOS_ANGELES, SHIFT_S)
    assert any(a[0] == "surge" and a[2].startswith("2024-01-26 18:") for a in in_new_york), in_new_york
    assert in_los_angeles == in_new_york


def test_a_detector_in_the_wrong_zone_learns_another_rhythm(history, in_new_york) -> None:
    """The control: the shifted calls read on New York's clock are three hours off, and the alerts differ."""
    wrong_zone = _alerts(history, NEW_YORK, SHIFT_S)
    assert [a[5:7] for a in wrong_zone] != [a[5:7] for a in in_new_york]
