"""detectors.allocation: units proportional to forecast demand, with a floor per area and a cap on change."""

from __future__ import annotations

import math
import random

import pytest

from detectors.allocation import AreaDemand, allocate, default_floor, skew


def areas(*means: float) -> list[AreaDemand]:
    return [AreaDemand(f"area:{i}", f"Area {i}", m, max(0, math.floor(m * 0.7)), math.ceil(m * 1.3)) for i, m in enumerate(means)]


def units_of(plan) -> list[int]:
    return [r.units for r in plan.rows]


def test_without_floor_or_cap_the_units_are_the_largest_remainder_of_the_demand_shares():
    plan = allocate(10, areas(46.0, 34.0, 20.0), floor=0)
    # quotas 4.6, 3.4, 2.0: floors 4, 3, 2 and the one left to the largest remainder (0.6)
    assert units_of(plan) == [5, 3, 2]
    assert not any(r.floor_bound or r.cap_bound for r in plan.rows)


def test_the_floor_gives_every_area_its_minimum_and_says_it_raised_the_quiet_one():
    plan = allocate(10, areas(95.0, 4.0, 1.0), floor=1)
    assert units_of(plan) == [8, 1, 1]
    assert [r.floor_bound for r in plan.rows] == [False, True, True]
    assert "floor 1 unit, which raised it" in plan.rows[2].explanation


def test_the_default_floor_is_one_unit_per_area_only_when_there_are_enough_units():
    assert default_floor(3, 3) == 1 and default_floor(2, 3) == 0
    assert allocate(2, areas(1.0, 1.0, 100.0)).floor == 0
    assert min(units_of(allocate(3, areas(1.0, 1.0, 100.0)))) == 1


def test_the_cap_holds_each_share_within_its_points_of_the_previous_shift_and_the_total_stays_right():
    plan = allocate(20, areas(80.0, 10.0, 10.0), floor=0, cap=0.1, previous={"area:0": 0.4, "area:1": 0.3, "area:2": 0.3})
    shares = plan.shares()
    assert sum(units_of(plan)) == 20 and plan.cap_held
    assert shares == {"area:0": 0.5, "area:1": 0.25, "area:2": 0.25}, "area 0 held at 40 + 10 points; the rest share what is left"
    assert [r.cap_bound for r in plan.rows] == [True, False, False]
    assert "the cap of 10 points allows 30 %-50 %: held it there" in plan.rows[0].explanation


def test_caps_that_cannot_all_hold_are_dropped_for_the_shift_and_every_row_says_so():
    # the previous plan gave 90 % to an area that is gone: the two left may each grow to 15 %, not to all the units
    plan = allocate(10, areas(1.0, 3.0), floor=0, previous={"area:0": 0.05, "area:1": 0.05, "area:gone": 0.9})
    assert units_of(plan) == [3, 7], "proportional to demand, as without a cap"
    assert sum(units_of(plan)) == 10 and not plan.cap_held
    assert all("could not hold" in r.explanation for r in plan.rows if r.previous_share is not None)


def test_no_demand_anywhere_shares_the_units_equally():
    assert units_of(allocate(6, areas(0.0, 0.0, 0.0), floor=0)) == [2, 2, 2]


def test_zero_units_recommend_nothing():
    assert units_of(allocate(0, areas(3.0, 1.0))) == [0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"units": -1}, "units must be a whole number >= 0"),
        ({"cap": 0}, "cap must be a share of the units above 0"),
        ({"floor": -1}, "floor must be a whole number of units >= 0"),
        ({"units": 2, "floor": 1}, "floor 1 for 3 areas needs 3 units, only 2 given"),
    ],
)
def test_bad_parameters_are_refused_naming_what_is_accepted(kwargs, message):
    args = {"units": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        allocate(args.pop("units"), areas(1.0, 2.0, 3.0), **args)


def test_random_plans_keep_the_total_every_floor_and_every_cap_in_whole_units():
    rng = random.Random(22)
    for _ in range(500):
        n = rng.randint(1, 12)
        means = [rng.choice([0.0, rng.uniform(0, 5), rng.uniform(5, 200)]) for _ in range(n)]
        units = rng.randint(0, 60)
        floor = rng.randint(0, units // n) if n else 0
        cap = rng.choice([0.05, 0.1, 0.2, 1.0])
        raw = [rng.random() for _ in range(n)]
        previous = None if rng.random() < 0.3 else {f"area:{i}": x / sum(raw) for i, x in enumerate(raw)}
        plan = allocate(units, areas(*means), floor=floor, cap=cap, previous=previous)
        got = units_of(plan)
        assert sum(got) == units
        assert all(u >= floor for u in got)
        if previous is not None and plan.cap_held and units:
            for r in plan.rows:
                lo = max(floor, math.ceil((r.previous_share - cap) * units - 1e-9))
                hi = max(lo, math.floor((r.previous_share + cap) * units + 1e-9))
                assert lo <= r.units <= hi, (r, cap, units)
        assert all(r.explanation.startswith(f"{r.name}: {r.units} of {units} unit") for r in plan.rows)


def test_skew_compares_the_units_with_calls_and_population_and_never_invents_population():
    plan = allocate(10, areas(50.0, 50.0), floor=0)
    rows = skew(plan, {"area:0": 80, "area:1": 20}, {"area:0": 1000, "area:1": 3000}, calls_label="calls in the last 24 h")
    assert [(r.allocation_share, r.calls_share, r.population_share) for r in rows] == [(0.5, 0.8, 0.25), (0.5, 0.2, 0.75)]
    assert (
        rows[0].explanation
        == "Area 0: 50 % of the units, 80 % of calls in the last 24 h (30 points less); 25 % of the population (25 points more)."
    )
    bare = skew(plan, None)
    assert bare[0].population_share is None and bare[0].explanation.endswith("recent calls not known; population not configured.")
