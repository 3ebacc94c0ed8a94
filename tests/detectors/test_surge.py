"""The surge detector (detectors/surge/): what fires, what does not, one alert per surge, explanations."""

from __future__ import annotations

import math
import pickle

import h3
import pytest
from scipy import stats

from detectors.surge import MODEL, MODEL_VERSION, SurgeDetector, incidents
from detectors.surge.county import CountyWindows
from detectors.surge.regions import regions
from detectors.surge.scan import _Round
from detectors.tails import log10_negbin_sf, log10_poisson_sf
from detectors.types import AlertKind, AlertState, CallPoint
from tests.detectors.conftest import CENTRE, MONDAY, TOWN, background, burst, merged, quick_baseline, run, run_tracked

DAYS = 10
END = MONDAY + DAYS * 86400.0


@pytest.fixture(scope="module")
def warmed() -> bytes:
    """A detector after ten quiet days over the town (pickled: each test takes its own copy)."""
    det = SurgeDetector(baseline=quick_baseline())
    alerts = run(det, background(seed=1, days=DAYS))
    assert det.ready
    assert [a for a in alerts if a.kind is AlertKind.SURGE] == [], "ten ordinary days raised a surge alert"
    return pickle.dumps(det)


def fresh(warmed: bytes) -> SurgeDetector:
    return pickle.loads(warmed)


def quiet_cell() -> str:
    """A cell next to the town where no call ever came."""
    return next(c for c in h3.grid_ring(CENTRE, 7))


def test_a_quiet_blocks_second_and_third_calls_do_not_fire(warmed):
    """Below ``min_incidents`` nothing fires; the expectation of a never-seen cell is small, not zero."""
    det = fresh(warmed)
    cell = quiet_cell()
    t = END + 12 * 3600
    calls = [CallPoint(t=t + 300 * i, cell=cell, category="EMS") for i in range(3)]
    run(det, calls[:1])
    assert det.score_one(calls[1]) == 0.0  # one incident short of anything to test
    assert run(det, calls[1:]) == []
    assert 0 < det.baseline.expected([cell], t, t + 900) < 0.01
    # without the floor, the second call of a quiet block is unusual, but not infinitely so
    loose = fresh(warmed)
    loose.min_incidents = 1
    run(loose, calls[:1])
    assert 3 < loose.score_one(calls[1]) < 12


def test_a_clear_surge_opens_once_is_updated_and_closes_with_one_id(warmed):
    det = fresh(warmed)
    start = END + 14 * 3600
    cells = tuple(h3.grid_disk(TOWN[40], 1))
    surge = burst(seed=3, start=start, n=20, minutes=40, cells=cells)
    after = background(seed=4, days=0.5, start=start)
    alerts = [a for a in run(det, merged(surge, after)) if a.kind is AlertKind.SURGE]
    states = [a.state for a in alerts]
    assert states.count(AlertState.OPEN) == 1
    assert states.count(AlertState.UPDATE) >= 1
    assert states[-1] is AlertState.CLOSED and states.count(AlertState.CLOSED) == 1
    assert len({a.id for a in alerts}) == 1
    assert alerts[0].at - surge[0].t < 15 * 60  # opened within 15 minutes of the first call
    assert all(a.model == MODEL and a.model_version == MODEL_VERSION for a in alerts)


def test_the_alert_id_is_the_same_on_a_replay(warmed):
    start = END + 14 * 3600
    points = merged(
        burst(seed=3, start=start, n=15, minutes=30, cells=tuple(h3.grid_disk(TOWN[40], 1))), background(seed=4, days=0.3, start=start)
    )
    first = [(a.id, a.state, a.at) for a in run(fresh(warmed), points)]
    second = [(a.id, a.state, a.at) for a in run(fresh(warmed), points)]
    assert first == second and first


def test_explanations_are_complete_and_consistent(warmed):
    det = fresh(warmed)
    start = END + 15 * 3600
    cells = tuple(h3.grid_disk(TOWN[60], 1))
    surge = burst(seed=5, start=start, n=14, minutes=30, cells=cells, category="FIRE")
    points = merged(surge, background(seed=6, days=0.2, start=start))
    tracked = [(a, n) for a, n in run_tracked(det, points) if a.kind is AlertKind.SURGE and a.state is not AlertState.CLOSED]
    assert tracked
    for a, learnt in tracked:
        window = [p for p in points[:learnt] if a.at - 60 * a.window_min < p.t <= a.at]
        in_cells = [p for p in window if p.cell in a.cells]
        assert a.observed == len(in_cells)  # the calls of the alert's cells in its window, when it was emitted
        assert set(a.cells) == {p.cell for p in in_cells}
        assert sum(a.categories.values()) == a.observed
        assert list(a.categories) == sorted(a.categories, key=lambda k: -a.categories[k])
        assert 0 < a.expected < a.observed
        assert a.p_value == pytest.approx(10**-a.score, rel=1e-3)
        assert a.started_at <= min(p.t for p in in_cells)
        assert f"{a.observed} calls" in a.reason and f"{a.window_min} min" in a.reason
        assert a.to_json()["kind"] == "surge"
    last, learnt = tracked[-1]
    injected_cells = {p.cell for p in surge if last.at - 60 * last.window_min < p.t <= last.at}
    assert injected_cells <= set(last.cells)
    assert last.categories["FIRE"] >= 10


def test_a_surge_spread_over_adjacent_cells_is_one_alert(warmed):
    det = fresh(warmed)
    start = END + 13 * 3600
    cells = tuple(h3.grid_disk(TOWN[30], 1))
    alerts = run(det, merged(burst(seed=7, start=start, n=25, minutes=45, cells=cells), background(seed=8, days=0.3, start=start)))
    opened = [a for a in alerts if a.state is AlertState.OPEN]
    assert len(opened) == 1


def test_a_county_wide_storm_is_one_jurisdiction_alert_not_a_storm_of_alerts(warmed):
    """Four times the usual calls everywhere for three hours."""
    det = fresh(warmed)
    start = END + 10 * 3600
    storm = merged(*(background(seed=20 + k, days=0.125, start=start) for k in range(4)))
    opened = [a for a in run(det, storm) if a.state is AlertState.OPEN]
    jurisdiction = [a for a in opened if a.id.startswith("surge:jurisdiction")]
    assert len(jurisdiction) == 1
    assert jurisdiction[0].at - start < 45 * 60  # the county test allows for weather-sized swings (k = 20)
    assert len(opened) <= 3  # at most a couple of places hot beyond the storm itself


def test_the_jurisdiction_cusum_sees_a_sustained_doubling_sooner_and_its_reason_says_cusum(warmed):
    """Twice the usual calls everywhere for six hours: the Poisson CUSUM (``jurisdiction_cusum=1.0``) opens the
    jurisdiction's alert at least an hour before the scan alone, and its reason states a likelihood ratio, not a p-value."""
    start = END + 10 * 3600
    doubled = merged(background(seed=5, days=0.5, start=start), background(seed=6, days=0.25, start=start))
    opened = {}
    for cusum in (None, 1.0):
        det = fresh(warmed)
        det.jurisdiction_cusum = cusum
        alerts = [a for a in run(det, doubled) if a.state is AlertState.OPEN and a.id.startswith("surge:jurisdiction")]
        assert alerts, f"no jurisdiction alert with jurisdiction_cusum={cusum}"
        opened[cusum] = alerts[0]
    assert opened[1.0].at + 3600 < opened[None].at
    assert "CUSUM of a 2-fold rate" in opened[1.0].reason and "p = " not in opened[1.0].reason
    assert "CUSUM" not in opened[None].reason and "p = " in opened[None].reason


def test_a_checkpoint_keeps_the_storm_indexes_and_rebuilds_the_alert_indexes(warmed):
    """In a storm the incident-time and county-alert indexes agree with the windows; a checkpoint keeps them, and
    rebuilds the open alerts' indexes (left out of it) equal to those kept live."""
    det = fresh(warmed)
    start = END + 10 * 3600
    run(det, merged(*(background(seed=20 + k, days=0.125, start=start) for k in range(4))))  # the storm above
    kept = (list(det._incident_times), set(det._county_ids), dict(det._times_by_cell), dict(det._inc_by_cell))
    assert kept[0] == sorted(t for t, _, _, incident in det._calls if incident) and kept[1], "a county-wide alert is open"
    assert sum(map(len, kept[2].values())) == len(det._calls) and sum(map(len, kept[3].values())) == len(kept[0])
    assert not {"_count_cache", "_county", "_eps_by_cell", "_eps_by_region", "_opened"} & set(det.__getstate__())
    restored = pickle.loads(pickle.dumps(det))
    assert (restored._incident_times, restored._county_ids, restored._times_by_cell, restored._inc_by_cell) == kept
    older = {**det.__getstate__(), "_times_by_cat": {0: [1.0]}, "_inc_by_cat": {}}  # a checkpoint of before CountyWindows
    again = SurgeDetector.__new__(SurgeDetector)
    again.__setstate__(older)
    assert not {"_times_by_cat", "_inc_by_cat"} & set(vars(again)) and again._incident_times == kept[0]
    assert (restored._eps_by_cell, restored._eps_by_region) == (det._eps_by_cell, det._eps_by_region)


def test_counts_read_once_per_round_equal_the_calls_listed_in_each_window(warmed):
    """In a storm, every region's findings (counted once per cell and round) match its calls listed one by one;
    so do the jurisdiction's (counted from its per-cell and per-category time lists).

    The round shares each cell's counts among the regions that overlap there; a
    mix-up of windows, cells or incidents there would change alerts silently.
    """
    det = fresh(warmed)
    start = END + 10 * 3600
    run(det, merged(*(background(seed=30 + k, days=0.08, start=start) for k in range(4))))
    now = det._now
    shared = _Round(det, now)
    by_key = {key: cells for cell in sorted(det._by_cell) for key, cells in regions(cell)}
    checked = 0
    for key, cells in sorted(by_key.items()):
        findings = det._evaluate(key, cells, now, at=shared)
        assert findings == det._evaluate(key, cells, now)  # the same with a round of its own
        for f in findings:
            calls = det._window_calls(cells, now - 60.0 * f.window_min, now, None)
            assert (f.observed, f.incidents, f.present) == (len(calls), sum(c[3] for c in calls), {c[1] for c in calls})
            checked += 1
    assert checked > 50, "the storm should leave many regions above min_incidents"
    assert det._county_ids, "and a county-wide alert open (local expectations scaled)"
    county = det._evaluate_jurisdiction(now)
    assert {f.category for f in county} >= {None, "EMS"} and {f.window_min for f in county} == set(det.jurisdiction_windows_min)
    for f in county:
        start, excluded = f.left_out
        calls = [c for c in det._calls if start < c[0] <= now and c[1] not in excluded and f.category in (None, c[2])]
        assert (f.observed, f.incidents) == (len(calls), sum(c[3] for c in calls))


def test_alerts_of_one_round_come_in_the_order_of_their_ids(warmed):
    """Two surges in separate places close in the same round: their records come sorted by id."""
    det = fresh(warmed)
    start = END + 14 * 3600
    a, b = (tuple(h3.grid_disk(TOWN[i], 1)) for i in (5, 110))
    surges = (burst(seed=11, start=start, n=20, minutes=30, cells=b), burst(seed=12, start=start, n=20, minutes=30, cells=a))
    alerts = run(det, merged(*surges))
    local = sorted({x.id for x in alerts if x.state is AlertState.OPEN and not x.id.startswith("surge:jurisdiction")})
    assert len(local) == 2
    closed = [x for x in det.advance(start + 6 * 3600) if x.id in local]
    assert [x.state for x in closed] == [AlertState.CLOSED] * 2
    assert [x.id for x in closed] == local


def test_nothing_fires_during_warm_up():
    det = SurgeDetector(baseline=quick_baseline())
    points = burst(seed=9, start=MONDAY, n=40, minutes=30, cells=(CENTRE,))
    assert run(det, points) == []
    assert det.score_one(points[-1]) == 0.0


def test_a_feed_outage_is_not_a_surge_when_calls_resume(warmed):
    """Eight silent hours, then the ordinary feed again: no surge alert (the silence is not learnt as quiet)."""
    det = fresh(warmed)
    resumed = background(seed=10, days=1, start=END + 8 * 3600)
    assert [a for a in run(det, resumed) if a.state is AlertState.OPEN] == []


def test_score_one_is_pure_and_ranks_a_surge_call_high(warmed):
    det = fresh(warmed)
    start = END + 12 * 3600
    cells = tuple(h3.grid_disk(TOWN[50], 1))
    surge = burst(seed=11, start=start, n=12, minutes=20, cells=cells)
    run(det, surge[:-1])
    size = det.state_size()
    s1 = det.score_one(surge[-1])
    s2 = det.score_one(surge[-1])
    assert s1 == s2 and det.state_size() == size
    assert s1 > det.threshold
    assert det.score_one(CallPoint(t=surge[-1].t, cell=TOWN[-1], category="EMS")) < 3


def test_the_repeat_rule_counts_incidents_not_records():
    cell, nb = CENTRE, h3.grid_ring(CENTRE, 1)[0]
    pts = [
        CallPoint(0.0, cell, "TRAFFIC"),
        CallPoint(30.0, cell, "EMS"),  # another agency's record of the same accident
        CallPoint(30.5, nb, "FIRE"),  # the same second, next intersection over
        CallPoint(400.0, cell, "TRAFFIC"),  # a new incident
    ]
    assert incidents(pts) == [True, False, False, True]
    # a long burst in one cell still counts one incident every two minutes
    assert sum(incidents([CallPoint(20.0 * i, cell, "EMS") for i in range(60)])) == 9  # at 0, 140, ..., 1120 s


def test_tail_probabilities_match_scipy():
    for k, mu in ((1, 1e-6), (3, 0.1), (12, 0.5), (5, 5.0), (40, 30.0), (200, 20.0)):
        assert log10_poisson_sf(k, mu) == pytest.approx(math.log10(stats.poisson.sf(k - 1, mu)), rel=1e-6)
    for k, mu, r in ((5, 1.0, 3.0), (40, 18.0, 20.0), (10, 20.0, 20.0), (300, 18.0, 2.0)):
        assert log10_negbin_sf(k, mu, r) == pytest.approx(math.log10(stats.nbinom.sf(k - 1, r, r / (r + mu))), rel=1e-6)


def test_bad_configuration_is_refused_with_the_name():
    for kw, name in (
        ({"threshold": 0}, "threshold"),
        ({"close_threshold": 7.0}, "close_threshold"),
        ({"windows_min": ()}, "windows_min"),
        ({"windows_min": (15, 0)}, "windows_min"),
        ({"min_incidents": 0}, "min_incidents"),
        ({"repeat_s": -1}, "repeat_s"),
        ({"jurisdiction_shape": 0}, "jurisdiction_shape"),
        ({"baseline": "a model"}, "baseline"),
    ):
        with pytest.raises(ValueError, match=name):
            SurgeDetector(**kw)


def test_windows_over_their_cap_drop_the_oldest_calls_and_a_fresh_surge_still_opens(warmed):
    """A storm far beyond any real rate: the windows never hold more than the cap, and a local surge in it still fires."""
    det = fresh(warmed)
    det.max_window_calls = 100
    start = END + 14 * 3600
    storm = merged(*(background(seed=40 + k, days=0.125, start=start) for k in range(4)))
    cells = tuple(h3.grid_disk(TOWN[40], 1))
    surge = burst(seed=3, start=start + 2 * 3600, n=20, minutes=20, cells=cells)
    most = 0
    alerts = []
    for p in merged(storm, surge):
        alerts += det.process(p)
        most = max(most, len(det._calls))
    assert most <= 100
    assert det.shed_calls > 0
    assert sum(len(v) for v in det._by_cell.values()) == len(det._calls)
    assert sum(len(v) for v in det._times_by_cell.values()) == len(det._calls)
    assert det._incident_times == sorted(t for t, _, _, incident in det._calls if incident)
    assert any(a.state is AlertState.OPEN and a.id.startswith("surge:") and "jurisdiction" not in a.id for a in alerts)
    uncapped = fresh(warmed)
    run(uncapped, merged(storm, surge))
    assert uncapped.shed_calls == 0 and len(uncapped._calls) > 300


def _counted(det: SurgeDetector, cell: str, now: float) -> tuple[int, ...]:
    """A cell's window counts the slow way: every call in the windows looked at."""
    out: list[int] = []
    for w in det._windows_desc:
        mine = [c for c in det._calls if c[1] == cell and now - 60.0 * w < c[0] <= now]
        out += (len(mine), sum(1 for c in mine if c[3]))
    return tuple(out)


@pytest.mark.parametrize("cap", [None, 40])
def test_counts_kept_from_round_to_round_equal_a_fresh_count_at_every_instant(cap):
    """A cell's counts are kept while they cannot change; asked at the instants where they do (a window's
    start on a call, a float step either side), after new calls and after calls shed by the cap, they
    equal a count of the calls themselves."""
    import random

    rng = random.Random(7)
    det = SurgeDetector(baseline=quick_baseline(), **({} if cap is None else {"max_window_calls": cap}))
    cells = (CENTRE, TOWN[3], TOWN[9])
    t, asked, changed = MONDAY, 0, 0
    for _ in range(400):
        t += rng.expovariate(1 / 40.0)
        det.learn_one(CallPoint(t=t, cell=rng.choice(cells), category="EMS"))
        det.advance(t)
        # the instants where some window's start meets a call, and a float step either side
        edges = [c[0] + 60.0 * w for c in det._calls[-6:] for w in det._windows_desc]
        for now in sorted({e for x in edges for e in (math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf))}):
            if now < t:
                continue
            for cell in cells:
                before = det._count_cache.get(cell)
                got = det._cell_counts(cell, now)
                assert got == _counted(det, cell, now), (cell, now)
                asked += 1
                changed += before is not None and before[2] != got
    assert asked > 1000 and changed > 100, "the instants asked include ones where kept counts had to change"
    if cap is not None:
        assert det.shed_calls > 0, "the cap shed calls"


class _LooksAtEveryAlert(SurgeDetector):
    """The detector as it was: every round re-scores and tests every open alert (no floors, no indexes)."""

    def advance(self, now: float):
        self._rescored_floor = self._alive_floor = -math.inf
        return super().advance(now)

    def _lifecycle(self, now, findings, *, jurisdiction):
        self._alive_floor = -math.inf
        return super()._lifecycle(now, findings, jurisdiction=jurisdiction)


def test_rounds_that_skip_alerts_nothing_touches_give_what_looking_at_every_alert_gives(warmed):
    """Alerts open, grow, re-score and close exactly as when every round looks at every open alert, and the
    indexes of the open alerts by cell and by region stay those of the alerts themselves."""
    det, every = fresh(warmed), fresh(warmed)
    every.__class__ = _LooksAtEveryAlert
    start = END + 14 * 3600
    surges = [burst(seed=20 + i, start=start + 600 * i, n=25, minutes=40, cells=tuple(h3.grid_disk(TOWN[i * 37], 1))) for i in range(4)]
    points = merged(*surges, background(seed=30, days=0.5, start=start))
    got, want = run(det, points), run(every, points)
    got += [a for m in range(1, 241) for a in det.advance(points[-1].t + 60.0 * m)]
    want += [a for m in range(1, 241) for a in every.advance(points[-1].t + 60.0 * m)]
    assert [a.to_json() for a in got] == [a.to_json() for a in want]
    states = {a.state for a in got}
    assert {AlertState.OPEN, AlertState.UPDATE, AlertState.CLOSED} <= states and len({a.id for a in got}) >= 4
    assert det._episodes == {} and det._eps_by_cell == {} and det._eps_by_region == {}


def test_the_open_alerts_indexes_follow_the_alerts_and_are_rebuilt_from_a_checkpoint(warmed):
    det = fresh(warmed)
    start = END + 14 * 3600
    surges = [burst(seed=40 + i, start=start, n=25, minutes=30, cells=tuple(h3.grid_disk(TOWN[i * 50], 1))) for i in range(3)]
    points = merged(*surges)
    run(det, points[: len(points) * 2 // 3])
    assert len(det._episodes) >= 2

    def index(attr: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for ep in det._episodes.values():
            for k in getattr(ep, attr):
                out.setdefault(k, set()).add(ep.id)
        return out

    assert det._eps_by_cell == index("footprint") and det._eps_by_region == index("regions")
    blob = pickle.dumps(det)
    assert b"_count_cache" not in blob and b"_eps_by_cell" not in blob, "derived state stays out of checkpoints"
    restored = pickle.loads(blob)
    assert restored._eps_by_cell == det._eps_by_cell and restored._eps_by_region == det._eps_by_region
    assert [ep.id for ep in sorted(restored._episodes.values(), key=lambda e: e.order)] == list(det._episodes)
    assert [a.to_json() for a in run(restored, points[len(points) * 2 // 3 :])] == [
        a.to_json() for a in run(det, points[len(points) * 2 // 3 :])
    ]


def test_an_open_alert_reports_growth_by_a_fifth_not_every_call_it_gains(warmed):
    """A surge of 80 calls in one block: every update reports a fifth more calls than the alert reported
    before, or a cell it had not; the last report is within a fifth of the calls; with update_growth=0
    every call it gains is reported, as before."""
    start = END + 14 * 3600
    block = tuple(h3.grid_disk(TOWN[60], 1))
    points = burst(seed=5, start=start, n=80, minutes=40, cells=block)
    det, every_call = fresh(warmed), fresh(warmed)
    every_call.update_growth = 0.0
    local = [a for a in run(det, points) if not a.id.startswith("surge:jurisdiction")]
    each = [a for a in run(every_call, points) if not a.id.startswith("surge:jurisdiction")]
    assert local[0].state is AlertState.OPEN and {a.id for a in local} == {local[0].id}
    cells: set[str] = set()
    peak = 0
    for a in local:
        assert a.observed >= 1.2 * peak or not set(a.cells) <= cells, (a.observed, peak)
        peak, cells = max(peak, a.observed), cells | set(a.cells)
    assert len(each) > 3 * len(local) > 3, (len(each), len(local))
    assert all(b.observed > a.observed or not set(b.cells) <= set(a.cells) for a, b in zip(each, each[1:], strict=False))
    assert local[-1].observed >= each[-1].observed / 1.2


def test_update_growth_must_be_a_number_of_at_least_zero():
    for bad in (-0.1, float("nan"), True, "0.2"):
        with pytest.raises(ValueError, match="update_growth"):
            SurgeDetector(update_growth=bad)


def test_a_round_re_scores_due_alerts_up_to_its_budget_and_the_next_rounds_the_rest(warmed, monkeypatch):
    """After a quiet spell every open alert is due its once-a-minute re-score; one round takes them in
    opening order until it has re-scored the budget's regions (finishing the alert that crosses it),
    the next rounds take the rest, and nothing is re-scored twice."""
    import detectors.surge.detector as surge

    det = fresh(warmed)
    start = END + 14 * 3600
    surges = [burst(seed=60 + i, start=start, n=25, minutes=30, cells=tuple(h3.grid_disk(TOWN[i * 40], 1))) for i in range(4)]
    points = merged(*surges)
    run(det, points)
    local = [ep for ep in det._episodes.values() if not ep.jurisdiction]
    assert len(local) >= 3
    sizes = [len(ep.regions) for ep in local]
    monkeypatch.setattr(surge, "_RESCORE_BUDGET", sizes[0] + 1)  # the first alert and part of the second
    quiet = points[-1].t + 5 * 60.0
    rounds = []
    for k in range(len(local)):
        det.advance(quiet + k)
        rounds.append([ep.rescored_at for ep in local])
    assert rounds[0][:2] == [quiet, quiet] and all(r < quiet for r in rounds[0][2:]), "two alerts in the first round"
    assert rounds[1][2] == quiet + 1, "the next round takes the next alert due"
    assert all(r >= quiet for r in rounds[-1]), "every alert re-scored within as many rounds as alerts"
    assert [r.count(quiet) for r in rounds][-1] == 2, "none re-scored twice"


def _fresh_county(calls, windows, now):
    """Each window's calls and incidents per category and its busiest disk, counted from every call (the slow way)."""
    from detectors.surge.county import _OTHER
    from detectors.surge.regions import disk
    from streams.ingest.schema import CATEGORY_INDEX

    out = []
    for w in windows:
        inside = [c for c in calls if now - 60.0 * w < c[0] <= now]
        n, inc, per_disk = [0] * 6, [0] * 6, {}
        for _t, cell, category, incident in inside:
            j = CATEGORY_INDEX.get(category, _OTHER) + 1
            n[0], n[j] = n[0] + 1, n[j] + 1
            if incident:
                inc[0], inc[j] = inc[0] + 1, inc[j] + 1
            for centre in disk(cell):
                per_disk[centre] = per_disk.get(centre, 0) + 1
        busiest = min(per_disk.items(), key=lambda kv: (-kv[1], kv[0]))[0] if per_disk else ""
        out.append((n, inc, busiest))
    return out


def _kept_county(county):
    return [(county.calls(i), county.incidents(i), county.busiest(i)) for i in range(len(county.windows_min))]


def test_county_windows_kept_as_calls_come_late_leave_and_are_dropped_equal_a_fresh_count():
    """The jurisdiction's windows, moved forward in small and large steps, told of calls added late (inside a
    window, before it, after its end) and of calls dropped (expired or shed inside a window), hold what
    counting every call gives, the busiest disk's ties included (a small town: many disks tie)."""
    import random

    from detectors.windows import insort_by_time

    rng = random.Random(11)
    windows = (1, 3, 10)
    town = sorted(h3.grid_disk(CENTRE, 2))
    compared = ties = 0
    for _ in range(40):
        calls: list = []
        now = 0.0
        county = CountyWindows(windows, calls, now)
        for _ in range(120):
            step = rng.random()
            if step < 0.5:  # a call, mostly after the windows' end, sometimes late
                t = now + rng.uniform(-700.0, 120.0)
                call = (t, rng.choice(town[: rng.randint(1, len(town))]), rng.choice(("EMS", "FIRE", "NOT A CATEGORY")), rng.random() < 0.6)
                insort_by_time(calls, call)
                county.learn(call)
            elif step < 0.6 and calls:  # the oldest dropped: expired, or shed while still inside a window
                cut = calls[rng.randrange(len(calls))][0]
                dropped = [c for c in calls if c[0] <= cut]
                del calls[: len(dropped)]
                county.forget(dropped)
            else:  # the clock: a few seconds, a window's length, or beyond every window
                now += rng.choice((rng.uniform(0.0, 30.0), 60.0, 180.0, rng.uniform(0.0, 1500.0)))
                county.move(now, calls)
                want = _fresh_county(calls, windows, now)
                assert _kept_county(county) == want, now
                assert _kept_county(CountyWindows(windows, calls, now)) == want
                compared += 1
                ties += sum(1 for i in range(len(windows)) if want[i][0][0] > 1)
    assert compared > 1000 and ties > 500
    with pytest.raises(ValueError, match="cannot move back"):
        county.move(now - 1.0, calls)


class _CountsEveryTest(SurgeDetector):
    """The detector whose every jurisdiction test checks its kept windows against a fresh count."""

    checked = 0

    def _evaluate_jurisdiction(self, now):
        out = super()._evaluate_jurisdiction(now)
        windows = tuple(sorted(self.jurisdiction_windows_min))
        assert _kept_county(self._county) == _fresh_county(self._calls, windows, now), now
        type(self).checked += 1
        return out


def test_the_detector_tells_its_county_windows_of_every_call_added_late_expired_shed_or_restored(warmed, monkeypatch):
    """Through a storm over its cap (calls shed inside the windows), calls up to ten minutes late, expiry, moves
    between tests (every few calls held back) and a checkpoint's restore, the jurisdiction test reads the sums a
    fresh count gives."""
    import random

    from detectors.surge import detector as surge_detector

    monkeypatch.setattr(surge_detector, "_COUNTY_PENDING_MAX", 3)
    moves = 0
    real_move = CountyWindows.move

    def counted_move(self, now, calls):
        nonlocal moves
        moves += 1
        return real_move(self, now, calls)

    monkeypatch.setattr(CountyWindows, "move", counted_move)

    rng = random.Random(5)
    start = END + 20 * 3600
    storm = burst(seed=41, start=start, n=900, minutes=90, cells=TOWN)
    late = [CallPoint(t=p.t - rng.uniform(0.0, 600.0), cell=p.cell, category=p.category) for p in storm[::7]]
    points = merged(storm, background(seed=42, days=0.5, start=start - 3 * 3600))
    det = fresh(warmed)
    det.__class__ = _CountsEveryTest
    det.max_window_calls = 400
    _CountsEveryTest.checked = 0
    for i, p in enumerate(points):
        det.learn_one(p)
        if i % 5 == 0 and late:
            det.learn_one(late.pop())
        det.advance(p.t)
        if i == len(points) // 2:
            det = pickle.loads(pickle.dumps(det))  # the windows are not in a checkpoint: built again
            assert det._county is None
    for m in range(1, 200):
        det.advance(points[-1].t + 60.0 * m)
    assert det.shed_calls > 0 and _CountsEveryTest.checked > 150
    assert moves > 2 * _CountsEveryTest.checked, "the windows also moved between tests"
