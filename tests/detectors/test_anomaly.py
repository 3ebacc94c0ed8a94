"""The call-mix anomaly detector: odd composition at normal totals, warm-up, episodes, bounded state (pure)."""

from __future__ import annotations

import math
import pickle
import random

import h3
import pytest

from detectors.anomaly import MODEL, MODEL_VERSION, MixAnomalyDetector
from detectors.types import AlertKind, AlertState, CallPoint

AREA = "862aac95fffffff"  # one res-6 area
CELLS = tuple(sorted(h3.cell_to_children(AREA, 8))[:4])
OTHER_AREAS = tuple(sorted(set(h3.grid_disk(AREA, 2)) - {AREA}))[:2]
T0 = 1_699_851_600.0  # 2023-11-13 00:00 America/New_York
DAY = 86400.0
USUAL = {"EMS": 0.40, "TRAFFIC": 0.35, "POLICE": 0.15, "FIRE": 0.05, "OTHER": 0.05}


def mix(traffic: float) -> dict[str, float]:
    """The usual mix with TRAFFIC at ``traffic`` and the rest scaled to fill the remainder."""
    rest = (1.0 - traffic) / (1.0 - USUAL["TRAFFIC"])
    return {c: traffic if c == "TRAFFIC" else w * rest for c, w in USUAL.items()}


def stream(
    seed: int,
    days: float,
    per_hour: float = 40.0,
    odd: tuple[float, float] | None = None,
    cells: tuple[str, ...] = CELLS,
    start: float = T0,
) -> list[CallPoint]:
    """Poisson calls at a constant rate; 80% TRAFFIC between ``odd`` = (start, end), the usual 35% otherwise."""
    rng = random.Random(seed)
    usual, unusual = mix(0.35), mix(0.80)
    out, t = [], start
    while True:
        t += rng.expovariate(per_hour / 3600.0)
        if t >= start + days * DAY:
            return out
        weights = unusual if odd and odd[0] <= t < odd[1] else usual
        category = rng.choices(list(weights), list(weights.values()))[0]
        out.append(
            CallPoint(
                t=t,
                cell=rng.choice(cells),
                category=category,
                priority=rng.choice((1, 2, 2, 3, 3, 3, 4)) if rng.random() < 0.9 else None,
                dispatch_s=rng.lognormvariate(4.5, 0.6) if rng.random() < 0.8 else None,
                travel_s=rng.lognormvariate(6.0, 0.5) if rng.random() < 0.8 else None,
            )
        )


def replay(det: MixAnomalyDetector, points: list[CallPoint]) -> list:
    """Learn each call and advance the clock to it (the worker's order); all alerts."""
    alerts = []
    for p in points:
        det.learn_one(p)
        alerts += det.advance(p.t)
    return alerts


ODD = (T0 + 4 * DAY + 13 * 3600, T0 + 4 * DAY + 14 * 3600)  # one hour on day 5, early afternoon


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unusual_mix_at_a_normal_total_opens_one_episode_naming_traffic(seed):
    """An hour of 80% TRAFFIC (instead of 35%) at the usual rate gives one alert, opened, updated, closed, naming TRAFFIC."""
    det = MixAnomalyDetector()
    points = stream(seed, days=6, odd=ODD)
    alerts = replay(det, points)
    alerts += det.advance(points[-1].t + 2 * 3600)

    assert alerts, "the unusual hour was not flagged"
    assert len({a.id for a in alerts}) == 1, [(a.id, a.state) for a in alerts]
    states = [a.state for a in alerts]
    assert states[0] is AlertState.OPEN and states[-1] is AlertState.CLOSED
    assert set(states[1:-1]) <= {AlertState.UPDATE}

    opened = alerts[0]
    assert opened.kind is AlertKind.ANOMALY
    assert opened.model == MODEL == "mix-hst" and opened.model_version == MODEL_VERSION
    assert opened.window_min == 60
    assert ODD[0] - 3600 < opened.started_at < ODD[1] and opened.at == opened.started_at + 3600
    # totals normal, composition not
    assert abs(opened.observed - opened.expected) < 3 * math.sqrt(opened.expected)
    assert 35 <= opened.expected <= 45
    assert opened.observed == sum(opened.categories.values())
    assert next(iter(opened.categories)) == "TRAFFIC"  # largest first
    assert opened.categories["TRAFFIC"] / opened.observed > 0.6
    assert opened.reason.startswith("TRAFFIC "), opened.reason
    assert "against a usual 3" in opened.reason.split(";")[0]  # usual share about 35%
    assert opened.score > det.threshold and opened.p_value is None
    assert set(opened.cells) <= set(CELLS)
    assert alerts[-1].at <= ODD[1] + 2 * 3600  # closes within an hour of the mix returning


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_week_of_the_usual_mix_raises_nothing(seed):
    """No false alerts on a week of ordinary calls (the default threshold sits above every normal window measured)."""
    det = MixAnomalyDetector()
    assert replay(det, stream(seed, days=7)) == []
    assert det.windows_learnt > det.warmup


def test_no_alert_during_warm_up():
    """The same unusual hour on day 2, before the forest has learnt ``warmup`` windows, raises nothing."""
    det = MixAnomalyDetector()
    odd = (T0 + DAY + 13 * 3600, T0 + DAY + 14 * 3600)
    points = stream(7, days=2, odd=odd)
    early = [p for p in points if p.t < odd[1] + 3600]
    assert replay(det, early) == []
    assert det.windows_learnt < det.warmup
    # the area is not even scored before its own baseline has seen area_warmup windows
    fresh = MixAnomalyDetector()
    replay(fresh, points[:100])
    assert fresh.score_one(points[100]) == 0.0


def test_score_one_is_pure_and_high_inside_the_unusual_hour():
    """score_one counts x in its area's window without learning it; high late in the odd hour, low in the hours before."""
    det = MixAnomalyDetector()
    points = stream(8, days=5, odd=ODD)
    normal, unusual = [], []
    for p in points:
        if p.t >= ODD[1]:
            break
        if p.t >= ODD[0] - 3600 and len(normal) % 10 == 0:
            state = pickle.dumps(det)
            score = det.score_one(p)
            assert pickle.dumps(det) == state  # scoring changed nothing
        else:
            score = det.score_one(p)
        if ODD[0] - 12 * 3600 <= p.t < ODD[0]:
            normal.append(score)
        elif p.t >= ODD[0] + 2700:
            unusual.append(score)
        det.learn_one(p)
        det.advance(p.t)
    assert max(normal) < 0.15
    assert min(unusual) > det.threshold


def test_alert_ids_are_stable_and_replays_identical():
    """Two detectors fed the same calls give the same alerts; the id names the area and the window start."""
    points = stream(9, days=6, odd=ODD)
    a, b = replay(MixAnomalyDetector(), points), replay(MixAnomalyDetector(), points)
    assert a == b and a
    assert a[0].id == f"anomaly:{AREA}:{int(a[0].started_at)}"


def test_pickled_copy_gives_the_same_scores_and_alerts():
    det = MixAnomalyDetector()
    points = stream(13, days=6, odd=ODD)
    half = next(i for i, p in enumerate(points) if p.t > ODD[0] - DAY)
    replay(det, points[:half])
    twin = pickle.loads(pickle.dumps(det))
    rest = points[half:]
    assert [twin.score_one(p) for p in rest[:200]] == [det.score_one(p) for p in rest[:200]]
    alerts = replay(det, rest)
    assert replay(twin, rest) == alerts and alerts
    assert twin.last_scored == det.last_scored


def test_state_is_bounded_by_the_number_of_areas():
    """Three areas for a week: state holds three areas and at most one window of buckets each; it does not grow with time."""
    cells_by_area = [CELLS] + [tuple(sorted(h3.cell_to_children(a, 8))[:3]) for a in OTHER_AREAS]
    det = MixAnomalyDetector()
    sizes, pickled = [], []
    for week_day in range(7):
        day = sorted(
            (
                p
                for k, cells in enumerate(cells_by_area)
                for p in stream(100 * k + week_day, 1, 20.0, cells=cells, start=T0 + week_day * DAY)
            ),
            key=lambda p: p.t,
        )
        replay(det, day)
        sizes.append(det.state_size())
        pickled.append(len(pickle.dumps(det)))
    assert det.n_areas == 3
    k = det.window_min // det.step_min
    assert all(len(a.buckets) <= k + 1 for a in det._areas.values())
    assert max(sizes[2:]) <= 1.25 * sizes[1] + 10
    assert pickled[-1] <= 1.05 * pickled[2]


def test_a_long_silence_closes_an_open_episode_in_one_call():
    """Jumping the clock far ahead closes the remaining windows and the episode in one call, then returns at once."""
    det = MixAnomalyDetector()
    points = [p for p in stream(11, days=6, odd=ODD) if p.t < ODD[1]]
    alerts = replay(det, points) + det.advance(ODD[1])
    assert alerts and alerts[-1].state is not AlertState.CLOSED
    closing = det.advance(ODD[1] + 365 * DAY)
    assert [a.state for a in closing][-1] is AlertState.CLOSED
    assert set(a.state for a in closing[:-1]) <= {AlertState.UPDATE}  # the odd calls still in the window
    assert {a.id for a in closing} == {alerts[0].id}
    assert det.advance(ODD[1] + 366 * DAY) == []


def test_late_points_are_dropped_and_counted():
    det = MixAnomalyDetector()
    det.learn_one(CallPoint(t=T0, cell=CELLS[0], category="EMS"))
    det.advance(T0 + 3 * 3600)
    det.learn_one(CallPoint(t=T0 + 60, cell=CELLS[0], category="EMS"))  # its window closed long ago
    det.learn_one(CallPoint(t=T0 + 3 * 3600 - 60, cell=CELLS[0], category="EMS"))  # still in a window to come
    assert det.late_dropped == 1


def test_unknown_category_counts_as_other_and_bad_cell_is_refused():
    det = MixAnomalyDetector()
    det.learn_one(CallPoint(t=T0, cell=CELLS[0], category="HAZMAT"))
    assert next(iter(det._areas[AREA].buckets.values())).counts[-1] == 1
    with pytest.raises(ValueError, match="resolution >= 6"):
        det.learn_one(CallPoint(t=T0, cell=h3.cell_to_parent(CELLS[0], 5), category="EMS"))


@pytest.mark.parametrize(
    "bad",
    [
        {"window_min": 50},  # not a multiple of the step
        {"step_min": 0},
        {"threshold": 1.5},
        {"close_threshold": 0.5},  # above the threshold
        {"min_calls": 0},
        {"warmup": 10},  # below the trees' window
        {"area_warmup": 0},
        {"halflife_h": 0},
        {"n_trees": 0},
    ],
)
def test_bad_configuration_raises_value_error(bad):
    with pytest.raises(ValueError):
        MixAnomalyDetector(**bad)


def test_repr_shows_the_configuration_and_clone_is_fresh():
    det = MixAnomalyDetector(threshold=0.4, seed=3)
    replay(det, stream(12, days=1))
    assert repr(det).startswith("MixAnomalyDetector(window_min=60, step_min=15, threshold=0.4, ")
    fresh = det.clone()
    assert repr(fresh) == repr(det) and fresh.n_areas == 0 and fresh.windows_learnt == 0


def test_the_reason_names_the_two_largest_share_moves_and_leads_with_a_larger_other_departure():
    """The sentence is written from the departures only for windows that alert: each kind's words, and their order."""
    from detectors.anomaly import _reason

    shares = [
        (0.05, 0.9, "FIRE", 0.10, 0.05),
        (0.44, 2.5, "TRAFFIC", 0.79, 0.35),
        (0.20, 1.5, "EMS", 0.20, 0.40),
    ]
    dispatch = (4.0, 1, math.log1p(540.0), math.log1p(120.0))
    priority = (3.5, 0, 1.4, 2.6)
    count = (2.0, -1, 12, 10.4)  # inside the dead zone: not named
    assert _reason(shares, [count, priority, dispatch]) == (
        "mean dispatch time 540 s against a usual 120 s; TRAFFIC 79% of calls against a usual 35%; EMS 20% of calls against a usual 40%"
    )
    # a departure smaller (in z) than the largest share's comes after the shares
    assert _reason([(0.44, 9.0, "TRAFFIC", 0.79, 0.35), shares[2]], [priority]) == (
        "TRAFFIC 79% of calls against a usual 35%; EMS 20% of calls against a usual 40%; mean priority 1.4 against a usual 2.6"
    )
    assert _reason(shares, [(5.0, -1, 31, 10.4)]).startswith("31 calls against a usual 10; TRAFFIC 79%")
