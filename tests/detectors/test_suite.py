"""The detector suite (detectors/suite.py): one entry point, the calling order, room for more detectors."""

from __future__ import annotations

import h3
import pytest

from detectors.baseline import ExpectedCounts
from detectors.outage import FeedMonitor
from detectors.suite import DetectorSuite
from detectors.surge import SurgeDetector
from detectors.types import Alert, AlertKind, AlertState, CallPoint
from tests.detectors.conftest import MONDAY, TOWN, background, burst, merged, quick_baseline


class Recorder:
    """An extra detector that records what the suite asks of it, in order."""

    def __init__(self, log: list) -> None:
        self.log = log

    def learn_one(self, x: CallPoint) -> None:
        self.log.append(("learn", x.t))

    def score_one(self, x: CallPoint) -> float:
        self.log.append(("score", x.t))
        return 0.5

    def advance(self, now: float) -> list[Alert]:
        self.log.append(("advance", now))
        return []

    def clone(self) -> Recorder:
        return Recorder([])


def small_suite(**kw) -> DetectorSuite:
    return DetectorSuite(surge=SurgeDetector(baseline=quick_baseline()), feed=FeedMonitor(baseline=quick_baseline()), **kw)


def test_process_advances_then_scores_then_learns_then_evaluates():
    log: list = []
    suite = small_suite(extra=[Recorder(log)])
    suite.process(CallPoint(t=100.0, cell=TOWN[0], category="EMS"))
    assert log == [("advance", 100.0), ("score", 100.0), ("learn", 100.0), ("advance", 100.0)]
    assert suite.last_scores == {"surge": 0.0, "feed": 0.0, "extra0": 0.5}


def test_one_entry_point_gives_surges_and_outages():
    """Ten days, a surge, then a silent afternoon: one surge alert and one outage, each opened once and closed."""
    warm = ExpectedCounts(warmup_calls=1000, warmup_hours=72)
    suite = DetectorSuite(surge=SurgeDetector(baseline=warm), feed=FeedMonitor(baseline=quick_baseline()), score=False)
    days = background(seed=41, days=10)
    end = MONDAY + 10 * 86400
    surge = burst(seed=42, start=end + 11 * 3600, n=18, minutes=30, cells=tuple(h3.grid_disk(TOWN[70], 1)))
    day = background(seed=43, days=1, start=end)
    day = [p for p in day if p.t < end + 14 * 3600 or p.t > end + 17 * 3600]  # the feed is down 14:00-17:00
    alerts = []
    last = None
    for p in merged(days, surge, day):
        if last is not None:
            t = last + 60
            while t < p.t:
                alerts += suite.advance(t)
                t += 60
        alerts += suite.process(p)
        last = p.t
    opened = [(a.kind, a.id) for a in alerts if a.state is AlertState.OPEN]
    kinds = [k for k, _ in opened]
    assert kinds.count(AlertKind.SURGE) == 1 and kinds.count(AlertKind.FEED_OUTAGE) == 1
    for _, alert_id in opened:
        assert [a.state for a in alerts if a.id == alert_id][-1] is AlertState.CLOSED


def test_clone_is_fresh_and_configured_alike():
    suite = small_suite(extra=[Recorder([])])
    for p in background(seed=44, days=2):
        suite.process(p)
    copy = suite.clone()
    assert repr(copy.surge) == repr(suite.surge) and repr(copy.feed) == repr(suite.feed)
    assert copy.surge.baseline.calls_learned == 0 and suite.surge.baseline.calls_learned > 0
    assert isinstance(copy.extra[0], Recorder)


def test_defaults_and_bad_extras():
    suite = DetectorSuite()
    assert isinstance(suite.surge, SurgeDetector) and isinstance(suite.feed, FeedMonitor) and suite.extra == ()
    assert list(suite.detectors) == ["surge", "feed"]
    with pytest.raises(ValueError, match="extra\\[0\\]"):
        DetectorSuite(extra=[object()])
    with pytest.raises(ValueError, match="surge"):
        DetectorSuite(surge=FeedMonitor())


def test_an_alert_s_json_has_every_field_in_field_order_as_asdict_gave():
    """Alert.to_json is spelled out for speed; the same keys in the same order keep replayed alerts' digests equal."""
    import dataclasses
    import json

    from detectors.types import Alert, AlertKind, AlertState

    alert = Alert(
        id="surge:882aac941dfffff:1", kind=AlertKind.SURGE, state=AlertState.UPDATE, started_at=1.0, at=2.0,
        cells=("882aac941dfffff", "882aac9419fffff"), window_min=15, observed=9, expected=1.5, score=6.2, p_value=6e-7,
        categories={"EMS": 9}, model="m", model_version="1", reason="why", zone=None,
    )  # fmt: skip
    old = dataclasses.asdict(alert)
    old.update(kind="surge", state="update", cells=list(alert.cells))
    assert json.dumps(alert.to_json()) == json.dumps(old)


def test_a_suite_checkpointed_before_skip_existed_restores_running_every_detector():
    import pickle

    suite = DetectorSuite(surge=SurgeDetector(baseline=quick_baseline()), feed=FeedMonitor(baseline=quick_baseline()))
    state = {k: v for k, v in suite.__dict__.items() if k not in ("skip", "_run", "_order")}
    old = DetectorSuite.__new__(DetectorSuite)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    assert restored.skip == () and list(restored.detectors) == ["surge", "feed"]
    assert restored.detectors["surge"] is restored.surge


def test_skipped_detectors_neither_learn_nor_alert_and_the_others_are_unchanged():
    points = merged(background(seed=3, days=3), burst(4, MONDAY + 2 * 86400 + 3600, 12, 20, tuple(h3.grid_disk(TOWN[0], 1))))
    whole = DetectorSuite(surge=SurgeDetector(baseline=quick_baseline()), feed=FeedMonitor(baseline=quick_baseline()))
    part = DetectorSuite(surge=SurgeDetector(baseline=quick_baseline()), feed=FeedMonitor(baseline=quick_baseline()), skip=("feed",))
    got_whole = [a for p in points for a in whole.process(p)]
    got_part = [a for p in points for a in part.process(p)]
    assert [a for a in got_whole if a.kind is AlertKind.SURGE] == got_part and got_part
    assert part.feed.baseline.calls_learned == 0 and "feed" not in part.detectors
