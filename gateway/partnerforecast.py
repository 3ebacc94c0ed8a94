"""What a partner may expect at its places: a forecast computed from its released table only (pure core, one adapter).

The worker's forecaster (:mod:`detectors.forecast`) learns from every call and
makes a new forecast set every 15 minutes. Its forecast of a small area is a
function of the raw calls, so two successive sets say, by their difference,
whether a call happened in the area in between, even when the partner's
released table (:mod:`gateway.disclosure`) withheld that window as "fewer than
k". A partner therefore never receives any part of the worker's set. Its
forecast is made here from the one thing it already has: the windows of its
released table, exactly as ``GET /api/released?hours=<history_h>`` gives them
to it (values of at least ``k``, or ``None`` for "0 to k-1"). It is a function
of those values and of public facts (the agreement's window and ``k``, the
jurisdiction's time zone), so combining it with every other answer tells the
partner nothing the released table had not told it already
(``tests/gateway/test_attacker.py`` checks this, and that a partner can
recompute every forecast it is given from the windows it fetched).

The method
----------
The *targets* are the agreement's windows in the ``horizon_h`` hours that
follow the newest released window (the first of them is normally the window in
progress). For a target and one of the partner's units:

- the *reference days* are the previous days ``d = 1, 2, ...`` whose window at
  the same local wall-clock time (the jurisdiction's zone, so 08:00 stays 08:00
  across a daylight-saving change) is in the released table; when every target
  has at least :data:`MIN_WEEKS` reference days on the same weekday (the
  agreement keeps enough history), only those are used;
- each reference day gives the unit's calls in that window as a range: the
  sum of its shown groups, plus ``0`` to ``k - 1`` for each withheld group;
- the forecast is the mean of those ranges, widened to whole calls
  (``low``, ``high``), with the least and the most of any day (``least``,
  ``most``), and a sentence that says it: "usually 3-5 calls between 08:00 and
  09:00, from the counts released to you on the previous 7 days".

No cell, sub-zone, category group or interval the released table does not hold
is ever named; a unit is forecast as a whole, in its released windows.

Examples
--------
Two days of one unit's hourly windows, k = 3: at 06:00 UTC 4 and then 5 calls; at 07:00 4 and then "fewer than 3".

>>> import datetime
>>> day = 1_700_006_400.0  # a midnight UTC
>>> calls = {(0, 6): 4, (1, 6): 5, (0, 7): 4}
>>> windows = [
...     {"start": day + d * 86400 + h * 3600, "minutes": 60, "values": {"a": {"all": calls.get((d, h))}}}
...     for d in (0, 1) for h in range(24)
... ]
>>> f = partner_forecast(windows, [{"id": "a", "name": "Station A"}], window_min=60, k=3, tz=datetime.timezone.utc)
>>> [(w["low"], w["high"], w["least"], w["most"]) for w in f["units"][0]["windows"][5:]]
[(0, 2, 0, 2), (4, 5, 4, 5), (2, 3, 0, 4)]
>>> f["units"][0]["windows"][6]["text"]
'usually 4-5 calls between 06:00 and 07:00, from the counts released to you on the previous 2 days'
>>> f["units"][0]["windows"][5]["text"], f["units"][0]["windows"][5]["days"]
('usually fewer than 3 calls between 05:00 and 06:00, from the counts released to you on the previous 2 days', ['2023-11-15', '2023-11-16'])
"""

from __future__ import annotations

import bisect
import datetime
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.http import HttpError

if TYPE_CHECKING:
    from gateway.policy import Scope
    from gateway.server import Gateway

#: the hours ahead a partner may ask for (the worker's horizons); 8 is a shift, the default
HORIZONS_H = (1, 8, 24)
DEFAULT_HORIZON_H = 8
#: same-weekday reference days needed (for every target) before only the same weekday is used
MIN_WEEKS = 3
#: most previous days looked at (an agreement keeps at most 744 hours, 31 days)
MAX_DAYS = 35
#: what the answer is made from, so that a reader (and the scope-leak scan) can tell it from the worker's set
BASIS = "released"


def partner_forecast(
    windows: Sequence[Mapping[str, Any]],
    units: Sequence[Mapping[str, Any]],
    *,
    window_min: int,
    k: int,
    tz: datetime.tzinfo,
    horizon_h: int = DEFAULT_HORIZON_H,
    min_weeks: int = MIN_WEEKS,
) -> dict[str, Any]:
    """The forecast of ``units`` for the ``horizon_h`` hours after the newest of ``windows``.

    ``windows`` are released windows as the partner receives them (``{"start", "minutes", "values"}``,
    ``values``: unit id -> group -> calls or None), any order; ``units`` are ``{"id", "name", ...}`` (other keys
    are kept in the answer). ``window_min`` and ``k`` are the agreement's, ``tz`` the jurisdiction's zone.
    The answer depends on nothing else: the same windows give the same forecast.
    """
    if horizon_h not in HORIZONS_H:
        raise ValueError(f"horizon_h must be one of {', '.join(map(str, HORIZONS_H))}, got {horizon_h!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    size = window_min * 60.0
    by_start = {float(w["start"]): w for w in windows if int(w["minutes"]) == window_min}
    starts = sorted(by_start)
    body: dict[str, Any] = {
        "basis": BASIS,
        "window_min": window_min,
        "k": k,
        "horizon_h": horizon_h,
        "after": None,
        "same_weekday": False,
        "days": [],
        "units": [{**u, "windows": []} for u in units],
        "text": "No numbers have been released to you yet, so there is nothing to base a forecast on.",
    }
    if not starts:
        return body
    after = starts[-1] + size
    targets = [after + i * size for i in range(max(1, math.ceil(horizon_h * 60 / window_min)))]
    oldest = starts[0]
    refs = {t: _references(t, tz, starts, size, oldest) for t in targets}
    weekly = all(sum(1 for d in r if d % 7 == 0) >= min_weeks for r in refs.values())
    if weekly:
        refs = {t: {d: s for d, s in r.items() if d % 7 == 0} for t, r in refs.items()}
    used: set[float] = set()
    for row in body["units"]:
        for t in targets:
            ranges = [(d, s, _unit_range(by_start[s], row["id"], k)) for d, s in sorted(refs[t].items())]
            days = [(d, s, r) for d, s, r in ranges if r is not None]
            used.update(s for _, s, _ in days)
            row["windows"].append(_window(t, size, days, k, tz, weekly))
    body.update(
        after=after,
        same_weekday=weekly,
        days=sorted({_date(s, tz) for s in used}),
        text=_summary(window_min, horizon_h, k, sorted(used), tz, weekly),
    )
    return body


def _references(target: float, tz: datetime.tzinfo, starts: list[float], size: float, oldest: float) -> dict[int, float]:
    """Previous day ``d`` -> the start of the released window holding the target's local wall-clock time ``d`` days
    earlier, for each ``d`` that has one.

    >>> _references(10 * 86400.0, datetime.timezone.utc, [7 * 86400.0, 8 * 86400.0, 9 * 86400.0], 3600.0, 7 * 86400.0)
    {1: 777600.0, 2: 691200.0, 3: 604800.0}
    """
    local = datetime.datetime.fromtimestamp(target, tz)
    out = {}
    for d in range(1, MAX_DAYS + 1):
        # aware datetime minus timedelta is wall-clock arithmetic; .timestamp() applies that day's offset
        ref = (local - datetime.timedelta(days=d)).timestamp()
        if ref < oldest:
            break
        i = bisect.bisect_right(starts, ref) - 1
        if i >= 0 and starts[i] <= ref < starts[i] + size:
            out[d] = starts[i]
    return out


def _unit_range(window: Mapping[str, Any], unit: str, k: int) -> tuple[int, int] | None:
    """The unit's calls in a released window as ``(least, most)``: shown groups exactly, a withheld one as 0 to k - 1.

    >>> _unit_range({"values": {"a": {"x": 5, "y": None}}}, "a", 3), _unit_range({"values": {}}, "a", 3)
    ((5, 7), None)
    """
    groups = window["values"].get(unit)
    if not groups:
        return None
    shown = sum(v for v in groups.values() if v is not None)
    withheld = sum(1 for v in groups.values() if v is None)
    return shown, shown + withheld * (k - 1)


def _window(
    start: float, size: float, days: list[tuple[int, float, tuple[int, int]]], k: int, tz: datetime.tzinfo, weekly: bool
) -> dict[str, Any]:
    end = start + size
    when = _when(start, end, tz)
    if not days:
        text = f"{when}: no released numbers for this time on previous days"
        return {"start": start, "end": end, "low": None, "high": None, "least": None, "most": None, "days": [], "text": text}
    n = len(days)
    low = sum(r[0] for _, _, r in days) // n  # the mean's range widened to whole calls, in exact integer arithmetic
    high = -(-sum(r[1] for _, _, r in days) // n)
    least, most = min(r[0] for _, _, r in days), max(r[1] for _, _, r in days)
    if high < k:
        usual = f"usually fewer than {k} calls"
    elif low == high:
        usual = f"usually {low} call" + ("" if low == 1 else "s")
    else:
        usual = f"usually {low}-{high} calls"
    text = f"{usual} {when}, from the counts released to you on {_days_phrase([d for d, _, _ in days], start, tz, weekly)}"
    return {
        "start": start,
        "end": end,
        "low": low,
        "high": high,
        "least": least,
        "most": most,
        "days": [_date(s, tz) for s in sorted(s for _, s, _ in days)],
        "text": text,
    }


def _when(start: float, end: float, tz: datetime.tzinfo) -> str:
    """``between 08:00 and 09:00`` (local), or ``on Sat 18 Nov`` for a whole day.

    >>> _when(1_700_006_400.0, 1_700_010_000.0, datetime.timezone.utc), _when(1_700_006_400.0, 1_700_092_800.0, datetime.timezone.utc)
    ('between 00:00 and 01:00', 'on Wed 15 Nov')
    """
    a, b = datetime.datetime.fromtimestamp(start, tz), datetime.datetime.fromtimestamp(end, tz)
    if end - start >= 86400:
        return f"on {a:%a} {a.day} {a:%b}"
    return f"between {a:%H:%M} and {b:%H:%M}"


def _days_phrase(ds: list[int], start: float, tz: datetime.tzinfo, weekly: bool) -> str:
    """Which previous days: ``the previous 7 days``, ``5 of the previous 7 days``, ``the previous 3 Saturdays``.

    >>> _days_phrase([1, 2, 3], 0.0, datetime.timezone.utc, False), _days_phrase([1, 3], 0.0, datetime.timezone.utc, False)
    ('the previous 3 days', '2 of the previous 3 days')
    >>> _days_phrase([7, 14, 21], 0.0, datetime.timezone.utc, True)  # 1970-01-01 was a Thursday
    'the previous 3 Thursdays'
    """
    n, span = len(ds), max(ds)
    if weekly:
        name = f"{datetime.datetime.fromtimestamp(start, tz):%A}s"
        weeks = span // 7
        return f"the previous {n} {name}" if n == weeks else f"{n} of the previous {weeks} {name}"
    if n == 1 and span == 1:
        return "the previous day"
    return f"the previous {n} days" if n == span else f"{n} of the previous {span} days"


def _date(t: float, tz: datetime.tzinfo) -> str:
    return datetime.datetime.fromtimestamp(t, tz).date().isoformat()


def _summary(window_min: int, horizon_h: int, k: int, used: list[float], tz: datetime.tzinfo, weekly: bool) -> str:
    period = {60: "hour", 1440: "day"}.get(window_min, f"{window_min} minutes")
    if not used:
        return f"Not enough numbers have been released to you yet for the next {horizon_h} hours."
    first, last = _date(used[0], tz), _date(used[-1], tz)
    which = "the same weekday on previous weeks" if weekly else "the same time on previous days"
    return (
        f"What to expect in each {period} of the next {horizon_h} hours: the average of the numbers released to you for "
        f"{which} ({first} to {last}). A number withheld as fewer than {k} counts as anything from 0 to {k - 1}, "
        "which widens the range. Nothing else goes into it."
    )


# ---------------------------------------------------------------------- adapter


async def partner_forecast_view(
    gw: Gateway, scope: Scope, *, area: str | None = None, horizon_h: int = DEFAULT_HORIZON_H
) -> dict[str, Any] | None:
    """A partner's forecast answer (``GET /api/forecast`` and the ``forecast`` frame), or None when its agreement does
    not share ``history`` (the forecast is a function of its released history, so it goes with it).

    Reads the released windows exactly as ``GET /api/released?hours=<history_h>`` does (the agreement's whole
    readable history, for the token's units). ``area``: one of the token's unit or zone ids (others, existing or not,
    are refused alike, 403 ``out_of_scope``); None for every unit.
    """
    plan = scope.plan
    if plan is None:
        raise ValueError(f"partner_forecast_view is for partner scopes, not {scope.role.value}")
    if "history" not in gw.agreements[plan.agreement].shares:
        return None
    units = [u for u in plan.units if u.id in scope.unit_ids]
    if area is not None:
        units = [u for u in units if area == u.id or area in u.zones]
        if not units:
            raise HttpError(403, "out_of_scope", "area must be one of this token's places (a unit or zone id of /api/me)")
    ids = [u.id for u in units]
    windows = await gw.releases.windows(plan, await gw.store.watermark())
    return partner_forecast(
        [w.for_units(ids).to_json() for w in windows],
        [{"id": u.id, "name": u.name, "zones": list(u.zones)} for u in units],
        window_min=plan.window_min,
        k=plan.k,
        tz=gw.places.zone,
        horizon_h=horizon_h,
    )
