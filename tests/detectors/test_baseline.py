"""The expected-count model (detectors/baseline.py): rates, rhythms, shares, shrinkage, warm-up, exposure, memory."""

from __future__ import annotations

import h3
import pytest

from detectors.baseline import ExpectedCounts
from detectors.types import CallPoint
from tests.detectors.conftest import CENTRE, MONDAY, TOWN, background


def learnt(points, **kw) -> ExpectedCounts:
    model = ExpectedCounts(**{"warmup_calls": 300, "warmup_hours": 24, **kw})
    for p in points:
        model.learn_one(p)
    return model


@pytest.fixture(scope="module")
def three_weeks():
    points = background(seed=2, days=21)
    return points, learnt(points)


def test_learns_the_jurisdiction_rate(three_weeks):
    """16 calls an hour on average: a week ahead is expected within 10 %."""
    points, model = three_weeks
    t = points[-1].t
    assert model.total(t, t + 7 * 86400) / (7 * 24) == pytest.approx(16.0, rel=0.10)


def test_learns_the_time_of_day(three_weeks):
    """The simulated afternoon is 4.7 times busier than the small hours; the model sees most of that."""
    _, model = three_weeks
    night = model.rate(MONDAY + 21 * 86400 + 4 * 3600)
    afternoon = model.rate(MONDAY + 21 * 86400 + 16 * 3600)
    assert 3.0 < afternoon / night < 6.5


def test_shares_follow_the_cells_and_sum_to_about_one(three_weeks):
    points, model = three_weeks
    busiest = max(set(TOWN), key=lambda c: sum(p.cell == c for p in points))
    observed = sum(p.cell == busiest for p in points) / len(points)
    assert model.share(busiest) == pytest.approx(observed, rel=0.15)
    assert sum(model.share(c) for c in TOWN) == pytest.approx(1.0, abs=0.05)


def test_sparse_cells_borrow_from_their_parent_and_the_jurisdiction():
    """Never-seen cells get a positive share: more under a busy parent than under a quiet one, more than under none."""
    busy_parent = sorted(h3.cell_to_children(h3.cell_to_parent(CENTRE, 7), 8))
    quiet_parent = sorted(h3.cell_to_children(h3.cell_to_parent(h3.latlng_to_cell(40.30, -75.10, 8), 7), 8))
    far_away = h3.latlng_to_cell(41.5, -77.0, 8)  # its parent is never seen
    points = background(seed=8, days=7, cells=tuple(busy_parent[:3]))
    points += [CallPoint(t=MONDAY + 3600.0 * (i + 1), cell=quiet_parent[0], category="EMS") for i in range(3)]
    model = learnt(sorted(points, key=lambda p: p.t))
    unseen_busy, unseen_quiet = busy_parent[-1], quiet_parent[-1]
    assert model.share(unseen_busy) > model.share(unseen_quiet) > model.share(far_away) > 0
    # ... and a cell's own calls count for much more than its parent's
    assert model.share(busy_parent[0]) > 50 * model.share(unseen_busy)


def test_a_quiet_cell_is_not_expected_to_be_empty(three_weeks):
    """The point of the shrinkage: a second call in a quiet block is a small surprise, not an infinite one."""
    _, model = three_weeks
    quiet = h3.latlng_to_cell(41.5, -77.0, 8)
    t = MONDAY + 21 * 86400 + 12 * 3600
    assert 0 < model.expected([quiet], t - 900, t) < 0.01


def test_warm_up_needs_calls_and_hours_of_live_feed():
    points = background(seed=3, days=3)
    model = ExpectedCounts(warmup_calls=100, warmup_hours=48)
    for i, p in enumerate(points):
        model.learn_one(p)
        if i == 99:
            assert not model.ready  # enough calls, not enough hours
    assert model.ready
    assert model.exposure_hours == pytest.approx((points[-1].t - points[0].t) / 3600, rel=0.02)


def test_an_outage_is_not_learnt_as_a_quiet_county():
    """Twelve silent hours in the middle of two weeks: the rate stays right and the silence is not exposure."""
    before = background(seed=4, days=7)
    after = background(seed=5, days=7, start=MONDAY + 7 * 86400 + 12 * 3600)
    gap_start = before[-1].t
    model = learnt(before + after)
    live_hours = (after[-1].t - before[0].t) / 3600 - (after[0].t - gap_start) / 3600
    # (a few of the longest night-time silences are also only partly counted)
    assert model.exposure_hours == pytest.approx(live_hours, rel=0.02)
    t = after[-1].t
    assert model.total(t, t + 7 * 86400) / (7 * 24) == pytest.approx(16.0, rel=0.12)


def test_the_current_hour_is_learnt_when_it_ends():
    """A burst does not raise its own expectation while its hour lasts (score before learn, per hour)."""
    points = background(seed=6, days=7)
    model = learnt(points)
    t0 = (points[-1].t // 3600 + 1) * 3600  # the next hour starts
    cell = TOWN[5]
    model.learn_one(CallPoint(t=t0 + 10, cell=cell, category="EMS"))
    before = model.share(cell)
    for i in range(30):
        model.learn_one(CallPoint(t=t0 + 60 + i, cell=cell, category="EMS"))
    assert model.share(cell) == pytest.approx(before, rel=1e-4)
    model.learn_one(CallPoint(t=t0 + 3600 + 5, cell=TOWN[0], category="EMS"))  # the next hour
    assert model.share(cell) > 1.5 * before


def test_memory_is_bounded_by_the_cells_seen_recently():
    """With a one-day half-life, cells not seen for weeks are forgotten."""
    model = ExpectedCounts(half_life_days=1.0, warmup_calls=10, warmup_hours=1)
    cells = sorted(h3.grid_disk(CENTRE, 10))
    t = MONDAY
    sizes = []
    for week in range(8):
        block = cells[week * 40 : week * 40 + 40]  # the calls move on every week
        for i in range(2000):
            t += 300
            model.learn_one(CallPoint(t=t, cell=block[i % 40], category="EMS"))
        sizes.append(model.state_size())
    assert max(sizes[2:]) < 2 * sizes[1]


def test_bad_configuration_is_refused_with_the_name():
    for kw, name in (
        ({"half_life_days": 0}, "half_life_days"),
        ({"cell_prior": -1}, "cell_prior"),
        ({"profile_prior": float("nan")}, "profile_prior"),
        ({"warmup_calls": 0}, "warmup_calls"),
        ({"warmup_hours": -1}, "warmup_hours"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "America"}, "timezone"),  # a folder of the zone database: IsADirectoryError, not a zone
    ):
        with pytest.raises(ValueError, match=name):
            ExpectedCounts(**kw)


def test_clone_and_repr_show_the_configuration():
    model = ExpectedCounts(half_life_days=30.0)
    model.learn_one(CallPoint(t=MONDAY, cell=CENTRE, category="EMS"))
    fresh = model.clone()
    assert repr(fresh) == repr(model)
    assert "half_life_days=30.0" in repr(model)
    assert fresh.calls_learned == 0


def test_a_storm_hour_is_held_per_cell_and_category_not_per_call():
    """Calls of the hour being learnt are summed: 20,000 calls in one hour over 10 cells hold at most 10 x 5 sums."""
    points = background(seed=6, days=3)
    model = learnt(points)
    t0 = (points[-1].t // 3600 + 1) * 3600
    before = model.state_size()
    cats = ("EMS", "FIRE", "TRAFFIC", "POLICE", "OTHER")
    for i in range(20_000):
        model.learn_one(CallPoint(t=t0 + i * 0.15, cell=TOWN[i % 10], category=cats[i % 5]))
    assert model.state_size() - before <= 10 * 5 + 2


def test_a_holiday_is_expected_like_a_sunday_not_like_its_weekday():
    """Four weeks of a centre with busy weekdays (30 calls an hour) and quiet Sundays (6): the Monday that is a
    holiday is expected at about Sunday's rate; without the holiday, at about a Monday's."""
    import datetime
    from zoneinfo import ZoneInfo

    from detectors.baseline import ExpectedCounts
    from detectors.types import CallPoint

    tz = ZoneInfo("America/Chicago")
    holiday = datetime.date(2024, 2, 19)  # a Monday
    start = datetime.datetime(2024, 1, 22, tzinfo=tz).timestamp()  # a Monday, four weeks before
    models = {h: ExpectedCounts(timezone="America/Chicago", holidays=h, warmup_calls=100, warmup_hours=24) for h in ((), (holiday,))}
    t = start
    end = datetime.datetime(2024, 2, 19, tzinfo=tz).timestamp()
    while t < end:
        per_hour = 6 if datetime.datetime.fromtimestamp(t, tz).weekday() == 6 else 30
        t += 3600 / per_hour
        for m in models.values():
            m.learn_one(CallPoint(t=t, cell="882aac941dfffff", category="EMS"))
    day = (end, end + 86400)
    plain, with_holiday = (models[h].total(*day) / 24 for h in ((), (holiday,)))
    assert 25 < plain < 35, plain
    assert 4 < with_holiday < 9, with_holiday
    with pytest.raises(ValueError, match="holidays must be datetime.date values"):
        ExpectedCounts(holidays=[datetime.datetime(2024, 2, 19)])
