"""The feed monitor (detectors/outage.py): a silent feed is an outage, a quiet night is not."""

from __future__ import annotations

import pickle

import pytest

from detectors.baseline import ExpectedCounts
from detectors.outage import MODEL, FeedMonitor
from detectors.types import AlertKind, AlertState, CallPoint
from tests.detectors.conftest import CENTRE, MONDAY, background, quick_baseline, run

DAYS = 14
END = MONDAY + DAYS * 86400.0


@pytest.fixture(scope="module")
def two_weeks() -> tuple[list[CallPoint], list, bytes]:
    """Two ordinary weeks (nights at a sixth of the afternoon rate) through a fresh monitor."""
    points = background(seed=31, days=DAYS)
    mon = FeedMonitor(baseline=quick_baseline())
    alerts = run(mon, points)
    return points, alerts, pickle.dumps(mon)


def test_quiet_nights_are_not_outages(two_weeks):
    """Fourteen nights whose longest silences are those of a Poisson feed at 2.5 calls an hour: no alert."""
    points, alerts, _ = two_weeks
    assert alerts == []
    longest = max(b.t - a.t for a, b in zip(points, points[1:], strict=False))
    assert longest > 45 * 60  # there were long silences, at night


def test_a_silent_afternoon_is_an_outage_opened_once_and_closed_on_resumption(two_weeks):
    points, _, state = two_weeks
    mon: FeedMonitor = pickle.loads(state)
    last = points[-1].t
    # the feed stops at 13:00 on day 15 and comes back three hours later
    afternoon = background(seed=32, days=1, start=END)
    before = [p for p in afternoon if p.t < END + 13 * 3600]
    after = [p for p in afternoon if p.t >= END + 16 * 3600]
    alerts = run(mon, before + after)
    assert [(a.kind, a.state) for a in alerts] == [(AlertKind.FEED_OUTAGE, AlertState.OPEN), (AlertKind.FEED_OUTAGE, AlertState.CLOSED)]
    opened, closed = alerts
    assert opened.id == closed.id
    assert opened.started_at == before[-1].t and closed.at == after[0].t
    assert opened.expected >= mon.min_expected and opened.observed == 0
    assert (opened.at - opened.started_at) < 60 * 60  # noticed within the hour at an afternoon rate
    assert closed.window_min == round((after[0].t - before[-1].t) / 60)
    assert closed.expected > 30 and closed.p_value < 1e-12
    assert "feed" in opened.reason and opened.model == MODEL
    assert last < opened.started_at


def test_the_monitor_is_silent_until_it_knows_the_rate():
    mon = FeedMonitor(baseline=ExpectedCounts(warmup_calls=200, warmup_hours=24))
    points = background(seed=33, days=0.5)  # half a day: not warmed up
    assert run(mon, points) == []
    assert mon.advance(points[-1].t + 10 * 3600) == []


def test_score_one_is_high_for_the_call_that_ends_a_silence(two_weeks):
    _, _, state = two_weeks
    mon: FeedMonitor = pickle.loads(state)
    ordinary = CallPoint(t=END + 60, cell=CENTRE, category="EMS")
    late = CallPoint(t=END + 4 * 3600, cell=CENTRE, category="EMS")
    assert mon.score_one(ordinary) < 1
    assert mon.score_one(late) > 10


def test_bad_configuration_is_refused():
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ValueError, match="min_expected"):
            FeedMonitor(min_expected=bad)
    with pytest.raises(ValueError, match="baseline"):
        FeedMonitor(baseline=object())
