"""The forecast issuer (streams/forecasting/issuer.py): a snapshot due every quarter hour, events, checkpoints, the monitor."""

from __future__ import annotations

import math
import pickle

import h3
import pytest

from detectors.forecast import ShiftForecaster
from detectors.types import CallPoint
from streams.detection.runner import DetectionRunner, encode_points
from streams.forecasting.build import Places
from streams.forecasting.issuer import EventLoad, ForecastIssuer, make_set
from tests.detectors.conftest import MONDAY, TOWN, background

PLACES = Places("Town County", "America/New_York")


def quick() -> ForecastIssuer:
    return ForecastIssuer(ShiftForecaster("America/New_York", warmup_calls=200, warmup_hours=24))


def test_no_set_is_due_before_the_forecaster_is_ready_then_one_per_quarter_hour_crossed():
    """While warming up nothing is due; once ready, each call crossing a quarter hour makes the snapshot due at that quarter,
    taken before the call is learnt (the set knows what was known at the quarter hour)."""
    issuer = quick()
    calls = background(1, days=3)
    due = []
    for x in calls:
        before = issuer.forecaster.state_size(), issuer.forecaster.ready()
        issuer.learn_one(x)
        issue = issuer.take()
        if issue is not None:
            assert before[1], "a set was due before the forecaster was ready"
            due.append((issue, x))
    assert due, "no set in two days of a ready forecaster"
    for issue, x in due:
        assert issue.issued % 900 == 0 and issue.issued <= x.t < issue.issued + 900
    issue, crossing = due[-1]
    snapshot = pickle.loads(issue.forecaster)
    assert snapshot.state_size() <= issuer.forecaster.state_size()
    assert issue.cells7 and all(h3.get_resolution(c) == 7 for c in issue.cells7)
    assert set(issue.seen8) <= set(TOWN)


def test_a_newer_set_replaces_one_not_yet_taken_and_is_counted_skipped():
    issuer = quick()
    for x in background(1, days=2):
        issuer.learn_one(x)
    t = background(1, days=2)[-1].t
    first = math.floor(t / 900) * 900 + 900
    issuer.learn_one(CallPoint(t=first + 1, cell=TOWN[0], category="EMS"))
    issuer.learn_one(CallPoint(t=first + 901, cell=TOWN[0], category="EMS"))
    skipped = issuer.skipped
    issue = issuer.take()
    assert issue is not None and issue.issued == first + 900 and skipped >= 1
    assert issuer.take() is None


def test_a_checkpoint_leaves_the_set_due_out_and_the_restored_issuer_goes_on():
    issuer = quick()
    calls = background(1, days=3)
    for x in calls[:-1]:
        issuer.learn_one(x)
    issuer.take()
    issuer.learn_one(CallPoint(t=math.floor(calls[-1].t / 900) * 900 + 901, cell=TOWN[0], category="EMS"))
    blob = pickle.dumps(issuer)
    assert issuer.take() is not None
    restored = pickle.loads(blob)
    assert restored.take() is None and len(blob) < 2 * len(pickle.dumps(issuer.forecaster)) + 100_000
    restored.learn_one(CallPoint(t=math.floor(calls[-1].t / 900) * 900 + 1801, cell=TOWN[0], category="EMS"))
    assert restored.take() is not None


def test_event_loads_are_added_to_the_set_not_to_the_forecaster():
    """A planned event's 30 extra calls an hour raise the set's jurisdiction and its cell's forecast during the event; the
    issuer's own forecaster stays without it (a zone edited or removed takes effect at the next set)."""
    issuer = quick()
    for x in background(1, days=2):
        issuer.learn_one(x)
    issued = math.floor(background(1, days=2)[-1].t / 900) * 900
    issuer.learn_one(CallPoint(t=issued + 901, cell=TOWN[0], category="EMS"))
    plain = make_set(issuer.take(), PLACES, made=0.0)
    issuer.set_events([EventLoad("parade", issued + 900, issued + 900 + 7200, frozenset({TOWN[5]}), 30.0)])
    issuer.learn_one(CallPoint(t=issued + 1801, cell=TOWN[0], category="EMS"))
    issue = issuer.take()
    with_event = make_set(issue, PLACES, made=0.0)
    gain = with_event["areas"]["jurisdiction"]["by_horizon"]["8"]["mean"] - plain["areas"]["jurisdiction"]["by_horizon"]["8"]["mean"]
    assert gain == pytest.approx(30.0 * 1.75, abs=3.0)  # the event's last 1.75 hours fall in the window issued at +1800
    cell7 = f"h3:{h3.cell_to_parent(TOWN[5], 7)}"
    assert with_event["areas"][cell7]["by_horizon"]["1"]["mean"] > plain["areas"][cell7]["by_horizon"]["1"]["mean"] + 20
    assert issuer.forecaster.forecast(issued + 1800, 8).mean == pytest.approx(
        pickle.loads(issue.forecaster).forecast(issued + 1800, 8).mean
    ), "the issuer's forecaster expects no event"
    issuer.set_events([EventLoad("old", issued - 7200, issued - 3600, frozenset({TOWN[5]}), 30.0)])
    issuer.learn_one(CallPoint(t=issued + 2701, cell=TOWN[0], category="EMS"))
    assert issuer.take().events == (), "an event over before the set is not carried"


def test_history_makes_no_set_and_the_first_live_call_does():
    issuer = quick()
    calls = background(1, days=3)
    issuer.learn_history(calls)
    assert issuer.take() is None and issuer.forecaster.ready()
    issuer.learn_one(CallPoint(t=calls[-1].t + 10 * 86400, cell=TOWN[0], category="EMS"))
    issue = issuer.take()
    assert issue is not None and issue.cells7 and issue.issued == math.floor((calls[-1].t + 10 * 86400) / 900) * 900


def test_published_sets_are_watched_and_scored_as_their_windows_end():
    """Sets published every quarter hour for a day: the monitor scores the jurisdiction's and cells' windows at every
    horizon, and the counters say how many sets were published."""
    issuer = quick()
    calls = background(1, days=4)
    for x in calls:
        issuer.learn_one(x)
        issue = issuer.take()
        if issue is not None:
            issuer.published(make_set(issue, PLACES, made=0.0), seconds=0.01)
    m = issuer.metrics()
    assert m["forecast_sets_total"] >= 4 * 96 - 2 * 96 - 4  # ready after a day or so
    assert m["forecast_issued_seconds"] == math.floor(calls[-1].t / 900) * 900
    summary = issuer.monitor.summary()
    assert {"jurisdiction|1", "jurisdiction|8", "jurisdiction|24", "cell6|1", "cell7|1", "cell7|24"} <= set(summary)
    assert summary["jurisdiction|1"]["n"] >= 24 and 0.5 <= summary["jurisdiction|1"]["coverage95"] <= 1.0
    assert m["forecast_coverage|cell7|8|0.95"] == summary["cell7|8"]["coverage95"]


def test_the_runner_feeds_the_forecaster_every_point_and_an_old_checkpoint_gets_one():
    """The runner's forecaster learns what its detectors learn; a runner pickled before forecasting existed restores with a
    fresh forecaster on the detectors' clock."""
    runner = DetectionRunner()
    points = [(0, i, MONDAY + 60 * i, TOWN[i % 5], "EMS", None) for i in range(50)]
    runner.feed(encode_points(points), wall=0.0)
    runner.flush()
    assert runner.forecasting.forecaster.state_size() > 0
    assert runner.metrics()["forecast_sets_total"] == 0
    state = dict(runner.__dict__)
    del state["forecasting"]
    old = DetectionRunner.__new__(DetectionRunner)
    old.__setstate__(state)
    assert isinstance(old.forecasting, ForecastIssuer)
    assert old.forecasting.forecaster.timezone == runner.suite.surge.baseline.timezone


def test_a_batch_crossing_many_quarter_hours_pickles_the_forecaster_once_and_issues_what_each_call_would(monkeypatch):
    """The snapshot is owed until taken: a run of calls crossing quarter hours makes one pickle, the last quarter hour's,
    equal to the snapshot an issuer taken after every call makes there; the others count as skipped; the forecasters agree."""
    calls = background(4, days=3)
    each, batch = quick(), quick()
    issued = []
    for x in calls:
        each.learn_one(x)
        issue = each.take()
        if issue is not None:
            issued.append(issue)
    assert len(issued) > 20
    dumps = []
    real_dumps = pickle.dumps
    monkeypatch.setattr("streams.forecasting.issuer.pickle.dumps", lambda *a, **k: dumps.append(1) or real_dumps(*a, **k))
    for x in calls:
        batch.learn_one(x)
    assert dumps == []  # nothing read the snapshot yet
    assert batch.take() == issued[-1] and dumps == [1]
    assert batch.skipped == len(issued) - 1 and each.skipped == 0
    monkeypatch.undo()
    assert pickle.dumps(batch.forecaster) == pickle.dumps(each.forecaster)
    assert batch.monitor.summary() == each.monitor.summary()


def test_a_checkpoint_with_a_snapshot_owed_holds_every_call_learnt():
    """Pickling the issuer while a snapshot is owed learns the calls held: the restored forecaster has learnt them all."""
    calls = background(5, days=3)
    issuer, plain = quick(), quick()
    for x in calls:
        issuer.learn_one(x)
        plain.learn_one(x)
        plain.take()
    assert issuer._held  # the last quarter hour's snapshot is owed, the calls after it held
    restored = pickle.loads(pickle.dumps(issuer))
    assert restored._held == [] and restored.take() is None
    assert restored.forecaster.state_size() == plain.forecaster.state_size()
    assert pickle.dumps(restored.forecaster) == pickle.dumps(plain.forecaster)
