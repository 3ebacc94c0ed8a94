"""The supervisor's "at a glance" figures (pure): calls now against the usual, from minute counts.

``GET /api/overview`` (:mod:`gateway.api`) reads calls per event-time minute
(:meth:`gateway.store.Store.overview_reads`) and this module turns them into its
tiles and its 24-hour series. Everything is relative to the worker's watermark
``wm`` (event time, never the wall clock) and to its minute ``end = minute_of(wm)``:
the 24 h "now" are the 1,440 minutes ``end - 1439 .. end``, the same minutes as
the worker's own 24 h window (:func:`streams.counting.rolling.window_minutes`).

"Usual": for the same clock time on each of the previous ``usual_days`` days (up
to :data:`MAX_DAYS`, only days whose buckets are still retained), the mean of the
calls in that window; ``low`` and ``high`` are the min and max over those days
(the band a chart draws). "The same clock time" is the jurisdiction's wall clock:
day ``d`` is read ``shift_d`` minutes earlier, where ``shift_d`` takes ``wm`` back
``d`` calendar days in the jurisdiction's time zone (1,440 minutes, or 1,380 /
1,500 across a daylight-saving change; one shift per day, for the whole 24 h).
A day is used only when its whole 24 h lies at or after ``floor`` (the first minute
still retained and counted, see :func:`usable_shifts`). With no such day,
``usual``, ``low`` and ``high`` are None and ``usual_days`` is 0.

Minutes before ``since`` (a commander's zone start; None: no limit) are not shown:
a bin or a tile that begins before it has ``calls`` None.

Examples
--------
Two previous days retained; 3 calls in the last minute today, 1 and 5 on the days before:

>>> end = 1_000_000
>>> counts = {end: 3, end - 1440: 1, end - 2880: 5}
>>> f = figures(counts, end, [1440, 2880])
>>> f["usual_days"], f["tiles"][0]
(2, {'window_min': 15, 'calls': 3, 'usual': 3.0, 'low': 1, 'high': 5})
>>> f["series"]["bins"][-1]["start"] == (end - 14) * 60, f["series"]["bins"][-1]["calls"]
(True, 3)
>>> figures(counts, end, [])["tiles"][2]
{'window_min': 1440, 'calls': 3, 'usual': None, 'low': None, 'high': None}
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

#: the tiles' windows (minutes): the last quarter hour, hour and day
TILE_WINDOWS_MIN = (15, 60, 1440)
#: the series: 96 bins of 15 minutes over the 24 h ending at the watermark
STEP_MIN = 15
SPAN_MIN = 1440
#: most previous days the usual is read from
MAX_DAYS = 7
#: decimals of ``usual`` (a mean of whole calls)
USUAL_DECIMALS = 2


def day_shifts(wm: float, tz: datetime.tzinfo, days: int = MAX_DAYS) -> list[int]:
    """Minutes from ``wm`` back to the same wall-clock time 1, 2, .. ``days`` days earlier in ``tz``.

    >>> from zoneinfo import ZoneInfo
    >>> day_shifts(1_700_000_000.0, datetime.timezone.utc, 3)
    [1440, 2880, 4320]

    Across the start of daylight-saving time (2024-03-10 in New York) a day is 23 hours:

    >>> day_shifts(1710097200.0, ZoneInfo("America/New_York"), 2)  # 2024-03-10 15:00 EDT
    [1380, 2820]
    """
    local = datetime.datetime.fromtimestamp(wm, tz)
    # aware datetime minus timedelta is wall-clock arithmetic; .timestamp() applies that day's offset
    return [round((wm - (local - datetime.timedelta(days=d)).timestamp()) / 60) for d in range(1, days + 1)]


def usable_shifts(end: int, shifts: Sequence[int], floor: int | None) -> list[int]:
    """The ``shifts`` of the days whose whole 24 h (``end - 1439 - shift .. end - shift``) is at or after minute ``floor``.

    ``floor`` is the first minute whose bucket is still retained and was counted (None: none is).

    >>> usable_shifts(10_000, [1440, 2880, 4320], floor=10_000 - 1439 - 2880)
    [1440, 2880]
    >>> usable_shifts(10_000, [1440], floor=None)
    []
    """
    if floor is None:
        return []
    first = end - SPAN_MIN + 1
    return [s for s in shifts if first - s >= floor]


def minutes_to_read(end: int, shifts: Sequence[int], since: int | None = None) -> list[int]:
    """Every bucket minute :func:`figures` needs: today's 24 h (from ``since`` on) and each shifted day's.

    >>> len(minutes_to_read(10_000, [1440, 2880])), minutes_to_read(10_000, [], since=9_998)
    (4320, [9998, 9999, 10000])
    """
    first = end - SPAN_MIN + 1
    today = range(max(first, since if since is not None else first), end + 1)
    return [*today, *(m - s for s in shifts for m in range(first, end + 1))]


def _summary(calls: int | None, past: list[int]) -> dict[str, int | float | None]:
    if not past:
        return {"calls": calls, "usual": None, "low": None, "high": None}
    return {"calls": calls, "usual": round(sum(past) / len(past), USUAL_DECIMALS), "low": min(past), "high": max(past)}


def figures(counts: Mapping[int, int], end: int, shifts: Sequence[int], since: int | None = None) -> dict:
    """The tiles and the series from ``counts`` (calls per epoch minute; missing minutes had none).

    ``shifts`` are the usable days' (:func:`usable_shifts`); ``since`` the first minute that may be shown.
    Returns ``{"usual_days", "tiles": [{"window_min", "calls", "usual", "low", "high"}, ...],
    "series": {"step_min", "bins": [{"start", "calls", "usual", "low", "high"}, ...]}}`` where a bin's
    ``start`` is epoch seconds and its ``calls`` None when it begins before ``since``.

    >>> f = figures({100: 2, 99: 1}, 100, [], since=90)
    >>> [(t["window_min"], t["calls"]) for t in f["tiles"]], len(f["series"]["bins"])
    ([(15, None), (60, None), (1440, None)], 96)
    >>> figures({100: 2, 99: 1}, 100, [], since=86)["tiles"][0]["calls"]
    3
    """

    def total(first: int, length: int) -> int:
        return sum(counts.get(m, 0) for m in range(first, first + length))

    def summary(first: int, length: int) -> dict[str, int | float | None]:
        calls = None if since is not None and first < since else total(first, length)
        return _summary(calls, [total(first - s, length) for s in shifts])

    first = end - SPAN_MIN + 1
    tiles = [{"window_min": w, **summary(end - w + 1, w)} for w in TILE_WINDOWS_MIN]
    bins = [{"start": m * 60, **summary(m, STEP_MIN)} for m in range(first, end + 1, STEP_MIN)]
    return {"usual_days": len(shifts), "tiles": tiles, "series": {"step_min": STEP_MIN, "bins": bins}}


#: hot-spot windows (minutes) whose cells also get their usual: a day's window is read for each previous day, so
#: the 3 h and 24 h windows (up to 7 x 1,440 buckets per refresh) are left without one
CELL_USUAL_WINDOWS_MIN = (15, 60)


def window_shifts(end: int, window_min: int, shifts: Sequence[int], floor: int | None) -> list[int]:
    """The ``shifts`` of the previous days whose window of ``window_min`` minutes ending at ``end - shift`` lies at or
    after minute ``floor`` (retained and counted; None: nothing is).

    >>> window_shifts(10_000, 15, [1440, 2880], floor=10_000 - 14 - 1440)
    [1440]
    >>> window_shifts(10_000, 15, [1440], floor=None)
    []
    """
    if floor is None:
        return []
    return [s for s in shifts if end - window_min + 1 - s >= floor]


def cell_usual(days: Sequence[Mapping[str, int]], cells: Sequence[str]) -> dict[str, float]:
    """Each cell's mean calls over ``days`` (one mapping of cell -> calls per previous day; a cell absent from a day
    had none), rounded as ``usual`` is; empty without a day.

    >>> cell_usual([{"a": 3}, {"a": 1, "b": 2}, {}], ["a", "b", "c"])
    {'a': 1.33, 'b': 0.67, 'c': 0.0}
    >>> cell_usual([], ["a"])
    {}
    """
    if not days:
        return {}
    return {c: round(sum(d.get(c, 0) for d in days) / len(days), USUAL_DECIMALS) for c in cells}
