"""The forecast set: what the forecast agent publishes every 15 minutes (pure: a forecaster in, JSON out).

:func:`build_set` asks a :class:`detectors.forecast.ShiftForecaster` for the
calls expected from ``issued`` on, for every area the dashboard shows, and
returns the set as a JSON-ready dict (version :data:`SET_VERSION`)::

    {"v": 1, "issued": ..., "made": ..., "timezone": ..., "horizons": [1, 8, 24],
     "areas": {key: {"kind", "name", "cells", "by_horizon", "hourly"?, "categories"?}},
     "hotspots": {"horizon": 8, "resolution": 8, "area_cells": A, "cells": [...], "flagged": {...}},
     "monitor": {"level|horizon": {...}}}

Each forecast ``F`` is ``{"start", "end", "mean", "lo80", "hi80", "lo95", "hi95"}``
(epoch seconds, the mean to three decimals, the bounds integers). The areas:

* ``"jurisdiction"``: every call; its ``by_horizon`` (1, 8 and 24 hours), its
  ``hourly`` (the next eight one-hour windows) and its ``categories`` (each of
  :data:`streams.ingest.schema.CATEGORIES`, by horizon);
* ``"area:<id>"``: each named area of the profile (:func:`area_key` of its
  name), its cells those of the profile's index brought to a resolution the
  forecaster takes (6 to 8); the same three parts;
* ``"h3:<cell>"`` for the res-6 cells (``by_horizon`` and ``hourly``) and the
  res-7 cells (``by_horizon``) that had a call in the last 28 days (the
  forecaster's units), named ``near <area>`` after the profile's area holding
  most of the cell.

``hotspots`` ranks the res-8 cells of the jurisdiction (those inside the
profile's boundary, else those that had a call lately) by the calls expected in
the next 8 hours and lists the top 5 % (at most); ``flagged`` says how many of
the ranked cells make 0.5 % and 1 % of the area (the shares the NIJ challenge's
PAI is judged at, :func:`detectors.evaluation.forecasting.flagged_cells`).

``monitor`` is :meth:`detectors.forecast_monitor.ForecastMonitor.summary`: how
the earlier sets fared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h3

from detectors.evaluation.forecasting import flagged_cells, top_cells
from detectors.forecast import HORIZONS, Forecast, ShiftForecaster
from detectors.types import DETECTION_RESOLUTION
from streams.ingest.schema import CATEGORIES
from streams.jurisdiction import Areas, Profile

SET_VERSION = 1
#: The one-hour windows of the ``hourly`` part.
HOURLY_WINDOWS = 8
#: The hot spots' horizon (hours: a shift) and the largest share of the area listed.
HOTSPOT_HOURS = 8
HOTSPOT_LIST_SHARE = 0.05
#: The shares of the area whose flagged cell counts are given (issue 22: 0.5 % and 1 %).
HOTSPOT_SHARES = (0.005, 0.01)
#: Key of the whole jurisdiction.
JURISDICTION = "jurisdiction"


@dataclass(frozen=True)
class Place:
    """An area of the set: its key, kind (``jurisdiction``, ``area``, ``cell6``, ``cell7``), name and H3 cells."""

    key: str
    kind: str
    name: str
    cells: tuple[str, ...]


@dataclass(frozen=True)
class Places:
    """The jurisdiction as the set names it: from a profile (:meth:`from_profile`), fixed while the worker runs.

    ``areas`` are the profile's named areas; ``grid`` the res-8 cells inside its
    boundary (empty without one: the hot spots rank the cells seen lately);
    ``index`` names cells (``near <area>``).
    """

    name: str
    timezone: str
    areas: tuple[Place, ...] = ()
    grid: frozenset[str] = frozenset()
    index: Areas = field(default_factory=Areas)
    #: names already given by :meth:`near`
    _near: dict[str, str] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_profile(cls, profile: Profile) -> Places:
        """The profile's name, time zone, named areas and boundary (its res-8 cells).

        >>> from streams.jurisdiction import default_profile
        >>> Places.from_profile(default_profile())
        Places(name='Unnamed jurisdiction', timezone='UTC', areas=(), grid=frozenset(), index=Areas(0 areas, 0 cells at resolution 8))
        """
        by_name: dict[str, set[str]] = {}
        for cell, name in profile.areas.cells().items():
            by_name.setdefault(name, set()).update(forecast_cells(cell))
        keys = area_keys(list(by_name))
        areas = tuple(Place(keys[name], "area", name, tuple(sorted(cells))) for name, cells in by_name.items())
        grid: frozenset[str] = frozenset()
        if profile.boundary is not None:
            grid = frozenset(str(c) for c in h3.h3shape_to_cells(h3.geo_to_h3shape(profile.boundary), DETECTION_RESOLUTION))
        return cls(profile.name, profile.timezone, areas, grid, profile.areas)

    def near(self, cell: str) -> str:
        """``near <area>``: the area holding most of ``cell`` (by its res-8 descendants), else the cell id itself.

        >>> Places("X", "UTC", index=Areas({"882aac941dfffff": "Norristown"})).near("872aac941ffffff")
        'near Norristown'
        """
        name = self._near.get(cell)
        if name is None:
            res = int(h3.get_resolution(cell))
            fine = max(res, min(self.index.resolution, DETECTION_RESOLUTION))
            inside = [cell] if fine == res else [str(c) for c in h3.cell_to_children(cell, fine)]
            names = self.index.names_of(inside)
            name = self._near[cell] = f"near {names[0]}" if names else cell
        return name


def area_keys(names: list[str]) -> dict[str, str]:
    """Each area name's key in the set: ``area:`` and its lower-case words joined by ``-`` (``-2``... when two collide).

    >>> area_keys(["Lansdale Borough", "St. Mary's", "St Mary's"])
    {'Lansdale Borough': 'area:lansdale-borough', "St. Mary's": 'area:st-mary-s', "St Mary's": 'area:st-mary-s-2'}
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = "area:" + (re.sub(r"[^0-9a-z]+", "-", name.lower()).strip("-") or "unnamed")
        key, n = base, 1
        while key in used:
            n += 1
            key = f"{base}-{n}"
        used.add(key)
        out[name] = key
    return out


def forecast_cells(cell: str) -> set[str]:
    """An area-index cell as cells the forecaster takes (res 6 to 8): a finer one by its res-8 parent, a coarser by its res-6 children.

    >>> forecast_cells("892aac941c3ffff"), len(forecast_cells("852aac97fffffff"))
    ({'882aac941dfffff'}, 7)
    """
    res = int(h3.get_resolution(cell))
    if res > DETECTION_RESOLUTION:
        return {str(h3.cell_to_parent(cell, DETECTION_RESOLUTION))}
    if res < 6:
        return {str(c) for c in h3.cell_to_children(cell, 6)}
    return {cell}


def build_set(
    forecaster: ShiftForecaster,
    issued: float,
    places: Places,
    *,
    cells7: Iterable[str],
    seen8: Iterable[str] = (),
    monitor: dict[str, Any] | None = None,
    made: float,
) -> dict[str, Any]:
    """The forecast set issued at event time ``issued`` (epoch s), made at wall time ``made``.

    ``cells7`` are the res-7 cells with a call in the last 28 days (their
    res-6 parents are the ``cell6`` areas); ``seen8`` the res-8 cells seen
    lately, the hot spots' grid when ``places`` has no boundary; ``monitor``
    the monitor's summary. The forecaster is only read.
    """
    units7 = sorted(set(cells7))
    units6 = sorted({str(h3.cell_to_parent(c, 6)) for c in units7})
    whole = Place(JURISDICTION, "jurisdiction", places.name, ())
    entries: dict[str, Any] = {JURISDICTION: _entry(forecaster, issued, whole, hourly=True, categories=True)}
    for place in places.areas:
        entries[place.key] = _entry(forecaster, issued, place, hourly=True, categories=True)
    for c6 in units6:
        entries[f"h3:{c6}"] = _entry(forecaster, issued, Place(f"h3:{c6}", "cell6", places.near(c6), (c6,)), hourly=True)
    for c7 in units7:
        entries[f"h3:{c7}"] = _entry(forecaster, issued, Place(f"h3:{c7}", "cell7", places.near(c7), (c7,)))
    return {
        "v": SET_VERSION,
        "issued": issued,
        "made": round(made, 3),
        "timezone": places.timezone,
        "horizons": list(HORIZONS),
        "areas": entries,
        "hotspots": hotspots(forecaster, issued, places, places.grid or frozenset(seen8)),
        "monitor": dict(monitor or {}),
    }


def hotspots(forecaster: ShiftForecaster, issued: float, places: Places, grid: Iterable[str]) -> dict[str, Any]:
    """The res-8 cells of ``grid`` ranked by the calls expected in the next :data:`HOTSPOT_HOURS`: the top 5 %, and the flagged counts."""
    cells = sorted(grid)
    out: dict[str, Any] = {
        "horizon": HOTSPOT_HOURS,
        "resolution": DETECTION_RESOLUTION,
        "area_cells": len(cells),
        "cells": [],
        "flagged": {},
    }
    if not cells:
        return out
    means = [forecaster.forecast(issued, HOTSPOT_HOURS, [c]).mean for c in cells]
    listed = top_cells(means, flagged_cells(HOTSPOT_LIST_SHARE, len(cells)))
    out["cells"] = [
        {"cell": cells[i], "mean": round(means[i], 3), "rank": rank, "name": places.near(cells[i])} for rank, i in enumerate(listed, 1)
    ]
    out["flagged"] = {str(share): flagged_cells(share, len(cells)) for share in HOTSPOT_SHARES}
    return out


def monitored(forecast_set: dict[str, Any]) -> Iterator[tuple[str, str, int, Forecast]]:
    """The set's windows a :class:`~detectors.forecast_monitor.ForecastMonitor` watches: ``(level, key, horizon, forecast)``
    of the jurisdiction, res-6 and res-7 cells at every horizon (the key of a cell is the cell itself)."""
    for key, entry in forecast_set["areas"].items():
        kind = entry["kind"]
        if kind not in ("jurisdiction", "cell6", "cell7"):
            continue
        level_key = JURISDICTION if kind == "jurisdiction" else key.removeprefix("h3:")
        for horizon, f in entry["by_horizon"].items():
            yield kind, level_key, int(horizon), Forecast(f["start"], f["end"], f["mean"], f["lo80"], f["hi80"], f["lo95"], f["hi95"])


def _entry(forecaster: ShiftForecaster, issued: float, place: Place, *, hourly: bool = False, categories: bool = False) -> dict[str, Any]:
    cells = list(place.cells) or None
    out: dict[str, Any] = {
        "kind": place.kind,
        "name": place.name,
        "cells": list(place.cells),
        "by_horizon": {str(h): _json(forecaster.forecast(issued, h, cells)) for h in HORIZONS},
    }
    if hourly:
        out["hourly"] = [_json(forecaster.forecast(issued + 3600.0 * i, 1, cells)) for i in range(HOURLY_WINDOWS)]
    if categories:
        out["categories"] = {k: {str(h): _json(forecaster.forecast(issued, h, cells, category=k)) for h in HORIZONS} for k in CATEGORIES}
    return out


def _json(f: Forecast) -> dict[str, float | int]:
    return {
        "start": f.start,
        "end": f.end,
        "mean": round(f.mean, 3),
        "lo80": int(f.lo80),
        "hi80": int(f.hi80),
        "lo95": int(f.lo95),
        "hi95": int(f.hi95),
    }
