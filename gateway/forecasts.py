"""The worker's forecast set as supervisors and commanders are shown it, and the allocation's inputs (pure: no I/O).

The worker writes its latest forecast set to Redis (``P:forecast``, JSON version 1; ``P:forecast:version``
counts the sets: :mod:`streams.counting.keys`) every 15 minutes of event time once its forecaster is ready.
Its ``areas`` are keyed ``"jurisdiction"``, ``"area:<name>"`` (the profile's named areas) and ``"h3:<cell>"``
(res-6 and res-7 cells); each has ``by_horizon`` (``"1"``, ``"8"``, ``"24"`` hours: mean, 80 % and 95 %
intervals), and the jurisdiction, areas and res-6 cells also the next 8 hours one by one (``hourly``).

What each role is shown (:func:`scoped`):

- supervisors: the whole set;
- commanders: only what lies inside their cells (the res-8 cells of their event zones, as every other view of
  theirs): an area or cell whose every res-8 cell is theirs, the hot spots among their cells, and the monitor's
  figures per cell level (not the jurisdiction's); never the jurisdiction's own forecast;
- partners: never this set (their view is :mod:`gateway.partnerforecast`'s, under their agreement).

Examples
--------
>>> fs = example_set()
>>> sorted(scoped(fs, None)["areas"]), sorted(scoped(fs, frozenset())["areas"])
(['area:North', 'jurisdiction'], [])
>>> find_area(fs, "north"), find_area(fs, "JURISDICTION")
('area:North', 'jurisdiction')
>>> [(d.key, d.mean, d.lo80, d.hi80) for d in demands(fs)]
[('area:North', 40.0, 31, 49)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import h3

from detectors.allocation import AreaDemand

#: the forecast set's format version this gateway reads
SET_VERSION = 1
#: hours ahead the worker forecasts; the shift is 8
HORIZONS = (1, 8, 24)
SHIFT_HOURS = 8
#: the resolution commanders' cells are counted at (their zones' cells)
CELL_RESOLUTION = 8
#: the monitor's levels a commander is shown (averages over every cell, nothing of one place)
COMMANDER_MONITOR_LEVELS = ("cell6", "cell7")


class ForecastQueryError(ValueError):
    """A forecast question that cannot be answered; ``code`` names it for the API's 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_set(text: str | None) -> dict[str, Any] | None:
    """The forecast set in ``text`` (``P:forecast``), or None when there is none or it is not a version-1 set.

    >>> parse_set(None), parse_set("{}"), parse_set('{"v": 1, "areas": {}}')["v"]
    (None, None, 1)
    """
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != SET_VERSION or not isinstance(data.get("areas"), dict):
        return None
    return data


def not_ready_message(fs: Mapping[str, Any] | None) -> str:
    """What the dashboard says while there is no forecast: the set's own word on what is missing when it has one.

    >>> not_ready_message(None)
    'no forecast yet: the worker publishes one every 15 minutes once its forecaster has learned enough calls'
    >>> not_ready_message({"v": 1, "areas": {}, "needs_days": 3})
    'no forecast yet: the forecaster needs 3 more days of calls'
    """
    days = None if fs is None else fs.get("needs_days")
    if isinstance(days, int | float) and not isinstance(days, bool) and days > 0:
        n = round(days)
        return f"no forecast yet: the forecaster needs {n} more day{'' if n == 1 else 's'} of calls"
    return "no forecast yet: the worker publishes one every 15 minutes once its forecaster has learned enough calls"


def is_ready(fs: Mapping[str, Any] | None) -> bool:
    """A set with at least one area forecast."""
    return fs is not None and bool(fs.get("areas"))


def _res8(cells: Iterable[str]) -> Iterable[str]:
    for c in cells:
        if not h3.is_valid_cell(c):
            continue
        r = h3.get_resolution(c)
        if r == CELL_RESOLUTION:
            yield c
        elif r < CELL_RESOLUTION:
            yield from h3.cell_to_children(c, CELL_RESOLUTION)
        else:
            yield h3.cell_to_parent(c, CELL_RESOLUTION)


def entry_cells(key: str, entry: Mapping[str, Any]) -> list[str]:
    """The H3 cells an entry covers: its ``cells``, or for ``h3:<cell>`` the cell itself."""
    cells = [c for c in entry.get("cells") or [] if isinstance(c, str)]
    if not cells and key.startswith("h3:"):
        cells = [key[3:]]
    return cells


def inside(key: str, entry: Mapping[str, Any], visible: frozenset[str]) -> bool:
    """Whether every res-8 cell of the entry is among ``visible`` (a commander's cells); never the jurisdiction.

    >>> cell = h3.latlng_to_cell(40.24, -75.28, 7)
    >>> inside(f"h3:{cell}", {"kind": "cell7"}, frozenset(h3.cell_to_children(cell, 8)))
    True
    >>> inside(f"h3:{cell}", {"kind": "cell7"}, frozenset(list(h3.cell_to_children(cell, 8))[1:]))
    False
    """
    if key == "jurisdiction" or entry.get("kind") == "jurisdiction":
        return False
    cells = entry_cells(key, entry)
    return bool(cells) and all(c in visible for c in _res8(cells))


def flagged_shares(rank: int, flagged: Mapping[str, Any]) -> list[str]:
    """The flagged shares (``"0.005"``, ``"0.01"``) at which a hot spot of ``rank`` is flagged.

    >>> flagged_shares(3, {"0.005": 8, "0.01": 16}), flagged_shares(12, {"0.005": 8, "0.01": 16})
    (['0.005', '0.01'], ['0.01'])
    """
    return sorted((s for s, n in flagged.items() if isinstance(n, int) and rank <= n), key=float)


def scoped(fs: Mapping[str, Any], visible: frozenset[str] | None) -> dict[str, Any]:
    """The set as a scope may see it: whole for ``visible`` None (supervisors), else only what lies in ``visible``.

    Each hot spot gets ``flagged``: the shares of the jurisdiction at which it is flagged.
    """
    areas = fs.get("areas") or {}
    hot = dict(fs.get("hotspots") or {})
    flagged = hot.get("flagged") or {}
    cells = [
        {**c, "flagged": flagged_shares(c.get("rank", 0), flagged)}
        for c in hot.get("cells") or []
        if isinstance(c, dict) and (visible is None or c.get("cell") in visible)
    ]
    monitor = fs.get("monitor") or {}
    if visible is None:
        shown_areas = dict(areas)
        hotspots: dict[str, Any] = {**hot, "cells": cells}
    else:
        shown_areas = {k: e for k, e in areas.items() if isinstance(e, dict) and inside(k, e, visible)}
        hotspots = {k: hot[k] for k in ("horizon", "resolution") if k in hot} | {"cells": cells}
        monitor = {k: m for k, m in monitor.items() if k.partition("|")[0] in COMMANDER_MONITOR_LEVELS}
    return {
        "v": fs.get("v"),
        "issued": fs.get("issued"),
        "made": fs.get("made"),
        "timezone": fs.get("timezone"),
        "horizons": fs.get("horizons", list(HORIZONS)),
        "areas": shown_areas,
        "hotspots": hotspots,
        "monitor": monitor,
    }


def find_area(fs: Mapping[str, Any], text: str) -> str | None:
    """The key of the entry ``text`` names: a key as the set has it, or an area's or the jurisdiction's name
    (case ignored); None when the set has no such entry."""
    areas = fs.get("areas") or {}
    if text in areas:
        return text
    want = text.strip().casefold()
    if want == "jurisdiction" and "jurisdiction" in areas:
        return "jurisdiction"
    for key, e in areas.items():
        if isinstance(e, dict) and e.get("kind") in ("jurisdiction", "area") and str(e.get("name", "")).casefold() == want:
            return key
    return None


def answer(fs: Mapping[str, Any], area: str | None, horizon: int | None) -> dict[str, Any]:
    """The scoped set narrowed to one ``area`` (a name or key :func:`find_area` knows, in the scoped set) and one
    ``horizon`` (its ``by_horizon`` only); :class:`ForecastQueryError` naming what is accepted otherwise.

    >>> answer(scoped(example_set(), None), "North", 8)["areas"]["area:North"]["by_horizon"].keys()
    dict_keys(['8'])
    >>> answer(scoped(example_set(), None), "Atlantis", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gateway.forecasts.ForecastQueryError: no forecast for 'Atlantis': give 'jurisdiction', an area's name or key ...
    >>> answer(scoped(example_set(), None), None, 6)
    Traceback (most recent call last):
    ...
    gateway.forecasts.ForecastQueryError: horizon must be one of 1, 8, 24 (hours ahead), got 6
    """
    horizons = [int(h) for h in fs.get("horizons") or HORIZONS]
    if horizon is not None and horizon not in horizons:
        raise ForecastQueryError("bad_horizon", f"horizon must be one of {', '.join(map(str, horizons))} (hours ahead), got {horizon}")
    out = dict(fs)
    areas = dict(fs.get("areas") or {})
    if area is not None:
        key = find_area(fs, area)
        if key is None:
            raise ForecastQueryError(
                "bad_area",
                f"no forecast for {area[:60]!r}: give 'jurisdiction', an area's name or key ('area:…') or "
                "'h3:<cell>' of a res-6 or res-7 cell the forecast covers (in your scope)",
            )
        areas = {key: areas[key]}
    if horizon is not None:
        areas = {k: {**e, "by_horizon": {str(horizon): (e.get("by_horizon") or {}).get(str(horizon))}} for k, e in areas.items()}
    out["areas"] = areas
    out["horizon"] = horizon
    return out


def frame_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """The set as a ``forecast`` frame carries it: without the res-7 cells (by horizon only, hundreds of them: ask
    ``/api/forecast``), so the frame stays small enough to push to every dashboard."""
    areas = {k: e for k, e in (view.get("areas") or {}).items() if e.get("kind") != "cell7"}
    return {**view, "areas": areas}


def allocation_units(fs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The entries an allocation shares units among: the profile's named areas, else the res-6 cells."""
    areas = fs.get("areas") or {}
    named = [(k, e) for k, e in areas.items() if isinstance(e, dict) and e.get("kind") == "area"]
    return named or [(k, e) for k, e in areas.items() if isinstance(e, dict) and e.get("kind") == "cell6"]


def demands(fs: Mapping[str, Any]) -> list[AreaDemand]:
    """Each allocation unit's forecast over the shift (:data:`SHIFT_HOURS`), for :func:`detectors.allocation.allocate`."""
    out = []
    for key, e in allocation_units(fs):
        f = (e.get("by_horizon") or {}).get(str(SHIFT_HOURS))
        if not isinstance(f, dict):
            continue
        out.append(AreaDemand(key, str(e.get("name") or key), float(f.get("mean", 0.0)), int(f.get("lo80", 0)), int(f.get("hi80", 0))))
    return out


def calls_by_unit(fs: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, int]:
    """Calls per allocation unit from calls per res-8 cell (``counts``), each cell counted in the unit whose cells hold it.

    >>> cell = h3.latlng_to_cell(40.24, -75.28, 8)
    >>> calls_by_unit(example_set(), {cell: 3, "882a10725bfffff": 9})
    {'area:North': 3}
    """
    owner: dict[str, str] = {}
    resolutions: set[int] = set()
    for key, e in allocation_units(fs):
        for c in entry_cells(key, e):
            if h3.is_valid_cell(c):
                owner.setdefault(c, key)
                resolutions.add(h3.get_resolution(c))
    out: dict[str, int] = {}
    for cell, n in counts.items():
        for r in resolutions:
            if r > CELL_RESOLUTION:
                continue
            unit = owner.get(cell if r == CELL_RESOLUTION else h3.cell_to_parent(cell, r))
            if unit is not None:
                out[unit] = out.get(unit, 0) + n
                break
    return out


def example_set() -> dict[str, Any]:
    """A small version-1 set for the doctests: the jurisdiction and one area of one res-7 cell."""
    cell7 = h3.latlng_to_cell(40.24, -75.28, 7)
    f = {"start": 1_700_000_000.0, "end": 1_700_028_800.0, "mean": 40.0, "lo80": 31, "hi80": 49, "lo95": 27, "hi95": 54}
    entry = {"kind": "area", "name": "North", "cells": [cell7], "by_horizon": {"1": f, "8": f, "24": f}, "hourly": [f] * 8}
    return {
        "v": 1,
        "issued": 1_700_000_000.0,
        "made": 1_700_000_003.0,
        "timezone": "UTC",
        "horizons": [1, 8, 24],
        "areas": {"jurisdiction": {**entry, "kind": "jurisdiction", "name": "Example County", "cells": []}, "area:North": entry},
        "hotspots": {"horizon": 8, "resolution": 8, "area_cells": 100, "cells": [], "flagged": {"0.005": 1, "0.01": 1}},
        "monitor": {},
    }
