"""A partner turned attacker: it collects every answer it may get in a day and solves for the values withheld from it.

The existing scanner (``test_scope_leaks.py``) looks for forbidden values in each
answer; an attacker combines answers. :class:`tests.gateway.attacker.Attacker`
turns each released number into an equation over the calls it sums (per res-8
cell, time slot and category) and asks, for each withheld value, whether the
equations pin it (exact linear elimination) and how narrowly they bound it
(integer programming). The first test shows it recovers what the partner
answers of the previous gateway gave away; the others show it recovers
nothing below k from the released tables of :mod:`gateway.disclosure`, in
process for random days and agreements, and from a real gateway.
"""

from __future__ import annotations

import datetime
import random
import time
from zoneinfo import ZoneInfo

import h3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.agreements import DEFAULT_AGREEMENTS, load_agreements
from gateway.disclosure import Plan, closed_windows, partner_alert_view, release_window, units_for
from gateway.partnerforecast import partner_forecast
from streams.ingest.schema import CATEGORIES
from tests.gateway.attacker import Attacker, invert_poisson_score
from tests.gateway.live import ZONES, drain, make_alert, publish, recv_until, token

AGREEMENTS = load_agreements(DEFAULT_AGREEMENTS)
SEPTA = [ZONES[z] for z in AGREEMENTS["septa"].zones]
DAY = 1_700_006_400.0  # a midnight UTC


def _neighbours(cells: frozenset[str]) -> list[str]:
    """Cells next to the zones (their calls must never be counted for the partner)."""
    return sorted({n for c in cells for n in h3.grid_ring(c, 1)} - cells)[:12]


# -- the attacker has teeth: the answers of the previous gateway ------------------------------


def test_the_attacker_recovers_what_the_previous_partner_answers_gave_away():
    """Each differencing attack an outside tester made on the previous gateway, replayed on the answers it gave: the
    attacker pins a count below k = 3 every time (so a pass below means something)."""
    k = 3
    # (1) the counts frame: a zone total of 7 and its res-7 cells shown but one (2 calls, withheld)
    a = Attacker(k)
    a.learn([("c1", 0), ("c2", 0)], 7)  # zone total
    a.learn([("c1", 0)], 5)  # the res-7 cell holding c1
    a.learn_withheld([("c2", 0)])
    assert a.pinned([("c2", 0)]) == pytest.approx(2)
    # (2) hot spots over window=15 and window=21: 1 call in minutes 16-21
    a = Attacker(k)
    a.learn([("c", m) for m in range(15)], 4)
    a.learn([("c", m) for m in range(21)], 5)
    assert a.pinned([("c", m) for m in range(15, 21)]) == pytest.approx(1)
    # (3) history step=60 minus the step=1 bins shown: the withheld minute
    a = Attacker(k)
    minutes = {m: (3 if m % 7 == 0 else 0) for m in range(60)}
    minutes[30] = 1
    a.learn([("c", m) for m in range(60)], sum(minutes.values()))
    for m, n in minutes.items():
        if n >= k or n == 0:
            a.learn([("c", m)], n)
    assert a.pinned([("c", 30)]) == pytest.approx(1)
    # (4) an alert with observed withheld but expected and score shown: the Poisson tail inverts
    assert invert_poisson_score(0.5, 1.0) == [2]
    # (5) observed 12 minus the categories shown (TRAFFIC 10): 2 calls in withheld categories
    a = Attacker(k)
    a.learn([("c", "TRAFFIC"), ("c", "EMS"), ("c", "FIRE")], 12)
    a.learn([("c", "TRAFFIC")], 10)
    assert a.pinned([("c", "EMS"), ("c", "FIRE")]) == pytest.approx(2)


# -- in process: a day of released tables, random agreements and calls -------------------------


@st.composite
def days(draw):
    zones = draw(st.lists(st.sampled_from(SEPTA), min_size=1, max_size=4, unique_by=lambda z: z.id))
    k = draw(st.integers(min_value=2, max_value=5))
    window = draw(st.sampled_from([60, 120, 180]))
    grouped = draw(st.booleans())
    groups = {"Traffic": ("TRAFFIC",), "Medical and fire": ("EMS", "FIRE"), "Other": ("POLICE", "OTHER")} if grouped else {}
    plan = Plan("p", units_for(zones), window_min=window, k=k, groups=groups, history_h=24)
    cells = sorted(plan.cells) + _neighbours(plan.cells)
    rng = random.Random(draw(st.integers(0, 2**32)))
    rate = draw(st.sampled_from([0.002, 0.01, 0.05]))  # calls per cell per minute: quiet to busy
    calls: dict[tuple[str, int, str], int] = {}
    for c in cells:
        for m in range(1440):
            if rng.random() < rate:
                key = (c, m // 5, rng.choice(CATEGORIES))  # atoms: a cell, a 5-minute slot, a category
                calls[key] = calls.get(key, 0) + 1
    return plan, calls


def _answers(plan: Plan, calls: dict[tuple[str, int, str], int], attacker: Attacker) -> list[tuple[list, int | None]]:
    """Every released value of the day, taught to the attacker; returns (atoms, value or None) for each."""
    got = []
    group_of = plan.group_of
    for start in closed_windows(plan, DAY + 86400 + 3600, settle_s=120):
        first, slots = int((start - DAY) // 300), plan.window_min // 5
        in_window = {(c, cat): 0 for c in plan.cells for cat in CATEGORIES}
        for (c, slot, cat), n in calls.items():
            if first <= slot < first + slots and c in plan.cells:
                in_window[(c, cat)] += n
        window = release_window(plan, start, {key: n for key, n in in_window.items() if n})
        for u in plan.units:
            for g, value in window.values[u.id].items():
                atoms = [(c, s, cat) for c in u.cells for s in range(first, first + slots) for cat in CATEGORIES if group_of[cat] == g]
                truth = sum(calls.get(a, 0) for a in atoms)
                if value is None:
                    assert truth < plan.k
                    attacker.learn_withheld(atoms)
                else:
                    assert value == truth >= plan.k  # released values are exact: the tables are useful, not noise
                    attacker.learn(atoms, value)
                got.append((atoms, value))
    return got


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(days())
def test_a_day_of_released_tables_pins_no_withheld_value(day):
    """For random agreements (zones, k, window, category groups) and random days of calls, every value released in a day
    leaves each withheld value unpinned by linear elimination, and free to take at least two values under integer bounds."""
    plan, calls = day
    attacker = Attacker(plan.k)
    answers = _answers(plan, calls, attacker)
    withheld = [atoms for atoms, value in answers if value is None]
    for atoms in withheld:
        assert attacker.pinned(atoms) is None
    for atoms in withheld[:5]:  # integer programming is slower: a sample of each day's withheld values
        low, high = attacker.bounds(atoms)
        assert high > low
    # and alert views for the partner carry no number an attacker could add to the equations
    cells = sorted(plan.cells)
    for observed in range(0, 12):
        alert = make_alert("surge:x:1", (cells[0],), observed=observed, categories={"TRAFFIC": observed})
        v = partner_alert_view(alert, plan, [u.id for u in plan.units], alert_id="a-1", severity="low")
        if observed < plan.k:
            assert v is None
        else:
            assert not {"observed", "expected", "score", "p_value", "cells", "window_min"} & set(v)
            assert not [x for x in v.values() if isinstance(x, int) and not isinstance(x, bool)]


# -- forecasts: every forecast a partner is given over a day, added to the released values ------------


def _forecast_ranges(forecast: dict, atoms_of, tz: datetime.tzinfo = datetime.UTC) -> list[tuple[list, int, int]]:
    """What a partner's forecast claims about the calls, as ranges over atoms: for each unit and window, the mean of
    the days it averaged lies in ``low..high`` (so their sum in ``n*low..n*high``) and each day in ``least..most``.
    ``atoms_of(unit, start)``: the atoms of the unit's released values in the window starting at ``start``; a day is
    read at the window's local time in ``tz`` (the windows here are an hour or more, aligned on the hour)."""
    out = []
    for row in forecast["units"]:
        for w in row["windows"]:
            if not w["days"]:
                continue
            clock = datetime.datetime.fromtimestamp(w["start"], tz).time()
            starts = [datetime.datetime.combine(datetime.date.fromisoformat(d), clock, tz).timestamp() for d in w["days"]]
            every = [a for s in starts for a in atoms_of(row["id"], s)]
            out.append((every, len(starts) * w["low"], len(starts) * w["high"]))
            out += [(atoms_of(row["id"], s), w["least"], w["most"]) for s in starts]
    return out


def test_the_attacker_pins_what_a_forecast_made_from_raw_calls_gives_away():
    """The leak a partner forecast must not have: a forecast made from the raw calls (the worker's), as a mean over
    the previous days or as two successive forecasts, pins a withheld count (so a pass below means something)."""
    k = 3
    # the same hour on two days: 1 call (withheld), then 5 (shown); a raw forecast says "usually 3.0"
    a = Attacker(k)
    a.learn_withheld([("c", "day0")])
    a.learn([("c", "day1")], 5)
    a.learn([("c", "day0"), ("c", "day1")], 2 * 3.0)
    assert a.pinned([("c", "day0")]) == pytest.approx(1)
    # two successive raw forecasts, each the mean per day of the last 7 days of calls: 20.0, then (140 - 6 + 2) / 7 once
    # the hour that had 6 calls (released) has left the week and a quiet hour with 2 (withheld) has come in
    a = Attacker(k)
    a.learn([("c", h) for h in range(168)], 7 * 20.0)
    a.learn([("c", h) for h in range(1, 169)], 7 * ((140 - 6 + 2) / 7))
    a.learn([("c", 0)], 6)
    a.learn_withheld([("c", 168)])
    assert a.pinned([("c", 168)]) == pytest.approx(2)
    # the partner's forecast of the first case from its released table: usually 2-4 calls, which pins nothing
    shown = ((DAY, None), (DAY + 86400, 5), (DAY + 2 * 86400 - 3600, None))  # the last: the newest window released
    windows = [{"start": s, "minutes": 60, "values": {"u": {"all": v}}} for s, v in shown]
    f = partner_forecast(windows, [{"id": "u", "name": "U"}], window_min=60, k=k, tz=datetime.UTC, horizon_h=1)
    a = Attacker(k)
    for s, v in shown:
        a.learn_withheld([("c", s)]) if v is None else a.learn([("c", s)], v)
    for atoms, low, high in _forecast_ranges(f, lambda u, s: [("c", s)]):
        a.learn_range(atoms, low, high)
    assert (f["units"][0]["windows"][0]["low"], f["units"][0]["windows"][0]["high"]) == (2, 4)
    assert a.pinned([("c", DAY)]) is None and a.bounds([("c", DAY)]) == (0, 2)


@st.composite
def weeks(draw):
    """An agreement and three days of calls in its units and beside them: calls per (res-8 cell, window, category)."""
    zones = draw(st.lists(st.sampled_from(SEPTA), min_size=1, max_size=3, unique_by=lambda z: z.id))
    k = draw(st.integers(min_value=2, max_value=5))
    window = draw(st.sampled_from([60, 120, 180]))
    grouped = draw(st.booleans())
    groups = {"Traffic": ("TRAFFIC",), "Medical and fire": ("EMS", "FIRE"), "Other": ("POLICE", "OTHER")} if grouped else {}
    plan = Plan("p", units_for(zones), window_min=window, k=k, groups=groups, history_h=72)
    cells = sorted(plan.cells) + _neighbours(plan.cells)
    rng = random.Random(draw(st.integers(0, 2**32)))
    rate = draw(st.sampled_from([0.05, 0.3, 1.0]))  # calls per cell per window: quiet to busy
    calls: dict[tuple[str, float, str], int] = {}
    for i in range(3 * 1440 // window):
        for c in cells:
            for _ in range(4):
                if rng.random() < rate / 4:
                    key = (c, DAY + i * window * 60, rng.choice(CATEGORIES))
                    calls[key] = calls.get(key, 0) + 1
    return plan, calls


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(weeks())
def test_every_forecast_of_a_day_added_to_the_released_tables_pins_nothing_more(week):
    """A partner reads, after each window of the third day is released, its forecast for the next 1, 8 and 24 hours;
    with every claim those forecasts make added to the released values, each withheld value is still unpinned and its
    integer bounds are exactly those the released values alone leave."""
    plan, calls = week
    size = plan.window_min * 60
    group_of = plan.group_of
    atoms_by = {
        (u.id, g): [(c, cat) for c in sorted(u.cells) for cat in CATEGORIES if group_of[cat] == g]
        for u in plan.units
        for g in plan.group_names
    }

    def atoms_of(unit: str, start: float, group: str | None = None) -> list:
        groups = plan.group_names if group is None else (group,)
        return [(c, start, cat) for g in groups for c, cat in atoms_by[(unit, g)]]

    released = []
    for i in range(3 * 86400 // size):
        start = DAY + i * size
        window = release_window(plan, start, {(c, cat): n for (c, s, cat), n in calls.items() if s == start})
        released.append(window.to_json())
    plain, informed = Attacker(plan.k), Attacker(plan.k)
    withheld = []
    for w in released:
        for uid, groups in w["values"].items():
            for g, value in groups.items():
                atoms = atoms_of(uid, w["start"], g)
                truth = sum(calls.get(a, 0) for a in atoms)
                for a in (plain, informed):
                    a.learn_withheld(atoms) if value is None else a.learn(atoms, value)
                if value is None:
                    assert truth < plan.k
                    withheld.append(atoms)
                else:
                    assert value == truth
    units = [{"id": u.id, "name": u.name} for u in plan.units]
    claims = 0
    for n in range(2 * 86400 // size, len(released) + 1):  # each moment of the third day a new window is out
        for horizon in (1, 8, 24):
            f = partner_forecast(released[:n], units, window_min=plan.window_min, k=plan.k, tz=datetime.UTC, horizon_h=horizon)
            for atoms, low, high in _forecast_ranges(f, atoms_of):
                truth = sum(calls.get(a, 0) for a in atoms)
                assert low <= truth <= high, "a forecast's claim the calls do not meet"
                informed.learn_range(atoms, low, high)
                claims += 1
    assert claims
    assume(withheld)  # a week busy enough that nothing was withheld has nothing to pin
    for atoms in withheld:
        assert informed.pinned(atoms) is None
    for atoms in random.Random(len(withheld)).sample(withheld, min(4, len(withheld))):
        assert informed.bounds(atoms) == plain.bounds(atoms)


# -- live: a real gateway, a day of calls, every answer a partner may get ------------------------


@pytest.mark.stack
def test_a_partner_attacking_a_real_gateway_for_a_day_pins_nothing_below_k(gw, prefix, r):
    """A SEPTA partner reads everything it may (released tables over 1 h to a week, hot spots, counts frames, alerts and
    their updates, its forecasts) after a day of random calls near its stations; the attacker pins no withheld value,
    every released value is the exact count, and every forecast is what the partner computes from its released windows."""
    rng = random.Random(7)
    now = time.time()
    plan = AGREEMENTS["septa"].plan(ZONES)
    cells = sorted(plan.cells) + _neighbours(plan.cells)
    first_minute = int(now // 60) - 24 * 60
    truth: dict[tuple[str, int], int] = {}
    pipe = r.pipeline(transaction=False)
    for m in range(first_minute, first_minute + 24 * 60):
        fields: dict[str, int] = {}
        for c in cells:
            if rng.random() < 0.004:
                cat = rng.choice(CATEGORIES)
                fields[f"{c}|{cat}"] = fields.get(f"{c}|{cat}", 0) + 1
                fields[f"{c}|ALL"] = fields.get(f"{c}|ALL", 0) + 1
                truth[(c, m)] = truth.get((c, m), 0) + 1
        if fields:
            pipe.hset(f"{prefix}:b:{m}", mapping=fields)
    pipe.set(f"{prefix}:wm:call:0", now)
    pipe.execute()
    tok = token("transit", agreement="septa", agency="SEPTA", subject="attacker")
    # alerts touching its stations, some on fewer than k calls, with updates
    lansdale = sorted(ZONES["septa-lansdale"].cells)
    for i, observed in enumerate((2, 5, 6, 9)):
        publish(r, prefix, make_alert(f"surge:{lansdale[0]}:{i}", (lansdale[0],), observed=observed, categories={"EMS": observed}))

    answers: list[dict] = []
    for hours in (1, 2, 6, 24, 168):
        status, body = gw.get_json(f"/api/released?hours={hours}", tok)
        assert status == 200
        answers += body["windows"]
    status, hot = gw.get_json("/api/hotspots", tok)
    assert status == 200 and hot["units"]
    ws = gw.ws(tok)
    frames = drain(ws, quiet_s=1.5, max_s=4.0)
    recv_until(ws, lambda f: f["type"] == "counts")
    ws.close()
    _, listed = gw.get_json("/api/alerts?state=all", tok)
    for thing in frames + [listed, hot]:
        for f in [thing] if "windows" not in thing else thing["windows"]:
            if f.get("type") == "alert" or "alerts" in f:
                alerts = [f["alert"]] if f.get("type") == "alert" else [a["alert"] for a in f["alerts"]]
                for v in alerts:
                    assert not [key for key, x in v.items() if isinstance(x, int) and not isinstance(x, bool)], v
    counts = [f for f in frames if f["type"] == "counts"]
    assert counts and all(set(f["units"]) <= {u.id for u in plan.units} for f in counts)

    attacker = Attacker(plan.k)
    units = {u.id: u for u in plan.units}
    seen: list[tuple[list, int | None]] = []
    windows = {w["start"]: w for w in answers}
    latest = max(windows)
    for f in counts:  # the counts frames repeat the newest window
        assert f["units"] == windows[latest]["values"]
    for start, w in windows.items():
        m0 = int(start // 60)
        for uid, groups in w["values"].items():
            atoms = [(c, m) for c in units[uid].cells for m in range(m0, m0 + w["minutes"])]
            value = groups["all"]
            exact = sum(truth.get(a, 0) for a in atoms)
            if value is None:
                assert exact < plan.k
                attacker.learn_withheld(atoms)
            else:
                assert value == exact >= plan.k
                attacker.learn(atoms, value)
            seen.append((atoms, value))
    assert any(v is not None for _, v in seen) and any(v is None for _, v in seen), "the day should have both kinds"

    # its forecasts: each one exactly what it can compute itself from the released windows it fetched (so they add
    # nothing), for every horizon and for one place; their claims taught to the attacker as well
    _, me = gw.get_json("/api/me", tok)
    tz = ZoneInfo(me["jurisdiction"]["timezone"])
    status, week = gw.get_json(f"/api/released?hours={plan.history_h}", tok)
    assert status == 200 and len(week["windows"]) == plan.history_h
    agreement = me["agreement"]
    lansdale_unit = next(u for u in me["units"] if "septa-lansdale" in u["zones"])
    asked = [(f"/api/forecast?horizon={h}", h, me["units"]) for h in (1, 8, 24)]
    asked += [("/api/forecast", 8, me["units"]), (f"/api/forecast?area={lansdale_unit['id']}", 8, [lansdale_unit])]
    for path, horizon, its_units in asked:
        status, forecast = gw.get_json(path, tok)
        assert status == 200, forecast
        mine = partner_forecast(week["windows"], its_units, window_min=agreement["window_min"], k=agreement["k"], tz=tz, horizon_h=horizon)
        assert forecast == mine, path
        assert forecast["after"] == latest + 3600 and any(w["days"] for u in forecast["units"] for w in u["windows"])

        def atoms_of(uid: str, start: float) -> list:
            return [(c, m) for c in units[uid].cells for m in range(int(start // 60), int(start // 60) + plan.window_min)]

        for atoms, low, high in _forecast_ranges(forecast, atoms_of, tz):
            assert low <= sum(truth.get(a, 0) for a in atoms) <= high
            attacker.learn_range(atoms, low, high)
    for atoms, value in seen:
        if value is None:
            assert attacker.pinned(atoms) is None
