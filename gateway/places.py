"""The jurisdiction's clock and place names as the gateway tells them (pure).

The gateway reads the jurisdiction profile (``WF_PROFILE``, the worker's;
:func:`streams.jurisdiction.load_profile`) once at start. From it the dashboard
is told the time zone to show every time in (``/api/me``: a supervisor's laptop
set to another zone still sees the jurisdiction's wall clock), and supervisors
and commanders are told the name of the area holding each cell they are shown
(``/api/hotspots``, ``/api/cells``), for the map's tooltips. Without a profile
times are UTC and no place is named, as :func:`streams.jurisdiction.default_profile`.

Partners are never told an area name here: the names they read are their own
zones' (the units of :mod:`gateway.disclosure`), and the worker's ``areas`` and
``reason`` never reach them (:func:`gateway.disclosure.partner_alert_view` is an
allow-list).

The map's base layer (``/api/places``) is the jurisdiction's :meth:`Places.outline`
(its boundary, else its box as a polygon) for every role, and the areas'
outlines (:meth:`Places.area_outlines`) for supervisors and commanders only,
coordinates rounded to 5 decimals (about 1 m).

Examples
--------
>>> class Areas:
...     def name_of(self, cell):
...         return {"882aac941dfffff": "Norristown"}.get(cell)
>>> places = Places("America/Los_Angeles", "Example County", Areas())
>>> places.area_of("882aac941dfffff"), places.area_of("882aac9409fffff")
('Norristown', None)
>>> places.local(1_700_000_047.5)
'2023-11-14 14:14 PST'
>>> places.to_json()
{'name': 'Example County', 'timezone': 'America/Los_Angeles'}
>>> Places().local(1_700_000_047.5), Places().area_of("882aac941dfffff")
('2023-11-14 22:14 UTC', None)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import h3

from streams.ingest.schema import Jurisdiction
from streams.jurisdiction import Profile, default_profile, load_profile


class AreaNames(Protocol):
    """What the gateway needs of the profile's named areas (:class:`streams.jurisdiction.Areas` has it)."""

    def name_of(self, cell: str) -> str | None: ...

    def cells(self) -> dict[str, str]: ...

    @property
    def resolution(self) -> int: ...


@dataclass(frozen=True)
class Places:
    """The jurisdiction's zone (IANA name), its name, its named areas (None: no area is named) and bounding box.

    >>> Places("Mars/Olympus")
    Traceback (most recent call last):
    ...
    ValueError: time zone 'Mars/Olympus' is not an IANA zone name (like America/New_York); check the profile's timezone
    """

    timezone: str = "UTC"
    name: str = ""
    areas: AreaNames | None = field(default=None, repr=False, compare=False)
    #: the profile's bounding box (event zones must lie inside it when ``WF_JURISDICTION`` is not set)
    box: Jurisdiction | None = field(default=None, repr=False, compare=False)
    #: the profile's boundary (a GeoJSON Polygon or MultiPolygon), or None
    boundary: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: the named areas' outlines: a GeoJSON FeatureCollection with a ``name`` property per feature, or None
    area_shapes: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: the profile's ``[basemap]``: ``{"tiles": url}`` or ``{"pmtiles": absolute path}``, or None
    basemap: dict[str, str] | None = field(default=None, repr=False, compare=False)
    _tz: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)
    _answers: dict[tuple[bool, int], tuple[bytes, str]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _area_cells: dict[tuple[str, int], tuple[str, frozenset[str]]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            tz = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"time zone {self.timezone!r} is not an IANA zone name (like America/New_York); check the profile's timezone"
            ) from None
        object.__setattr__(self, "_tz", tz)

    @classmethod
    def from_profile(cls, profile: Profile) -> Places:
        """From a :class:`streams.jurisdiction.Profile` (its ``timezone``, ``name``, ``areas`` and ``box``).

        >>> from streams.jurisdiction import default_profile
        >>> Places.from_profile(default_profile())
        Places(timezone='UTC', name='Unnamed jurisdiction')
        """
        areas = profile.areas
        named = len(areas) > 0
        return cls(
            profile.timezone,
            profile.name,
            areas if named else None,
            profile.box,
            profile.boundary,
            areas.geojson() if named else None,
            profile.basemap,
        )

    def basemap_setting(self) -> str | None:
        """The profile's basemap as ``WF_GATEWAY_BASEMAP`` would say it (a PMTiles path or a tile URL), or None.

        >>> Places(basemap={"pmtiles": "/srv/city.pmtiles"}).basemap_setting(), Places().basemap_setting()
        ('/srv/city.pmtiles', None)
        """
        if not self.basemap:
            return None
        return self.basemap.get("pmtiles") or self.basemap.get("tiles")

    def area_of(self, cell: str) -> str | None:
        """The name of the area holding ``cell``, or None (outside every area, or no areas)."""
        return None if self.areas is None else self.areas.name_of(cell)

    def named(self, cells: Iterable[str]) -> dict[str, str]:
        """Cell -> area name for the ``cells`` that lie in a named area.

        >>> class Areas:
        ...     def name_of(self, cell):
        ...         return "Norristown" if cell.startswith("882aac94") else None
        >>> Places(areas=Areas()).named(["882aac941dfffff", "882aac9599fffff"])
        {'882aac941dfffff': 'Norristown'}
        """
        if self.areas is None:
            return {}
        return {c: n for c in cells if (n := self.areas.name_of(c)) is not None}

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The jurisdiction's time zone."""
        return self._tz

    def area_cells(self, name: str, resolution: int = 8) -> tuple[str, frozenset[str]] | None:
        """The area called ``name`` (case ignored, as the profile spells it) and its cells at ``resolution``; None: no such area.

        The profile's index cells are converted: a coarser index gives all its children, a finer one its parents.

        >>> import h3
        >>> from streams.jurisdiction import Areas
        >>> norristown = h3.latlng_to_cell(40.1215, -75.3399, 7)
        >>> name, cells = Places(areas=Areas({norristown: "Norristown"}, 7)).area_cells("NORRISTOWN")
        >>> name, len(cells), Places(areas=Areas({norristown: "Norristown"}, 7)).area_cells("Lansdale")
        ('Norristown', 7, None)
        """
        if self.areas is None:
            return None
        want = name.strip().casefold()
        key = (want, resolution)
        hit = self._area_cells.get(key)
        if hit is None:
            hit = self._find_area_cells(want, resolution)
            if hit is not None:  # only names of areas are kept (unknown ones come from requests, unbounded)
                self._area_cells[key] = hit
        return hit

    def _find_area_cells(self, want: str, resolution: int) -> tuple[str, frozenset[str]] | None:
        assert self.areas is not None
        found: str | None = None
        cells: set[str] = set()
        index = self.areas.resolution
        for cell, area in self.areas.cells().items():
            if area.casefold() != want:
                continue
            found = area
            if index == resolution:
                cells.add(cell)
            elif index < resolution:
                cells.update(h3.cell_to_children(cell, resolution))
            else:
                cells.add(h3.cell_to_parent(cell, resolution))
        return None if found is None else (found, frozenset(cells))

    def local(self, epoch: float) -> str:
        """``epoch`` as the jurisdiction's wall clock to the minute, with the zone's abbreviation: ``2023-11-14 14:14 PST``."""
        return datetime.datetime.fromtimestamp(epoch, self._tz).strftime("%Y-%m-%d %H:%M %Z")

    def outline(self) -> dict[str, Any] | None:
        """The jurisdiction's outline for the map: its boundary, else its box as a polygon, else None; rounded to 1e-5°.

        >>> from streams.ingest.schema import Jurisdiction
        >>> Places(box=Jurisdiction(39.9, -75.7, 40.5, -75.0)).outline()
        {'type': 'Polygon', 'coordinates': [[[-75.7, 39.9], [-75.0, 39.9], [-75.0, 40.5], [-75.7, 40.5], [-75.7, 39.9]]]}
        >>> Places().outline() is None
        True
        """
        if self.boundary is not None:
            return rounded(self.boundary)
        b = self.box
        if b is None:
            return None
        ring = [[b.min_lng, b.min_lat], [b.max_lng, b.min_lat], [b.max_lng, b.max_lat], [b.min_lng, b.max_lat], [b.min_lng, b.min_lat]]
        return rounded({"type": "Polygon", "coordinates": [ring]})

    def area_outlines(self) -> dict[str, Any] | None:
        """The named areas as a FeatureCollection (``name`` and geometry only, rounded to 1e-5°), or None without areas."""
        if self.area_shapes is None:
            return None
        features = [
            {"type": "Feature", "properties": {"name": f["properties"]["name"]}, "geometry": rounded(f["geometry"])}
            for f in self.area_shapes["features"]
        ]
        return {"type": "FeatureCollection", "features": features}

    def answer(self, with_areas: bool, limit: int) -> tuple[bytes, str]:
        """The JSON body of ``/api/places`` and its ETag, made once: the outline, and the areas when ``with_areas``.

        Areas whose outlines would make the body longer than ``limit`` bytes are left out, and the body says
        why (``areas_omitted``): the map still draws the boundary.

        >>> from streams.ingest.schema import Jurisdiction
        >>> box = Places(name="Box County", box=Jurisdiction(1.0, 2.0, 3.0, 4.0))
        >>> body, etag = box.answer(True, 10_000)
        >>> json.loads(body)["areas"] is None, json.loads(body)["outline"]["type"], etag.startswith('"')
        (True, 'Polygon', True)
        """
        key = (with_areas, limit)
        if key not in self._answers:
            body: dict[str, Any] = {"name": self.name, "outline": self.outline(), "areas": None}
            if with_areas:
                body["areas"] = self.area_outlines()
            data = json.dumps(body, separators=(",", ":")).encode()
            if len(data) > limit and body["areas"] is not None:
                body["areas"] = None
                body["areas_omitted"] = (
                    f"the areas' outlines take {len(data)} bytes, more than the {limit} the dashboard is sent; "
                    "simplify the profile's areas GeoJSON (fewer points per outline)"
                )
                data = json.dumps(body, separators=(",", ":")).encode()
            self._answers[key] = (data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
        return self._answers[key]

    def to_json(self) -> dict[str, str]:
        """What ``/api/me`` tells every role: the jurisdiction's name and zone (neither is confidential)."""
        return {"name": self.name, "timezone": self.timezone}


def rounded(geometry: dict[str, Any], digits: int = 5) -> dict[str, Any]:
    """A (Multi)Polygon's coordinates rounded to ``digits`` decimals, points made equal by rounding kept once.

    >>> rounded({"type": "Polygon", "coordinates": [[[1.000001, 2.0], [1.000002, 2.0], [3.123456789, 4.0], [1.000001, 2.0]]]})
    {'type': 'Polygon', 'coordinates': [[[1.0, 2.0], [3.12346, 4.0], [1.0, 2.0]]]}
    """

    def ring(points: list[Any]) -> list[list[float]]:
        out: list[list[float]] = []
        for p in points:
            q = [round(float(p[0]), digits), round(float(p[1]), digits)]
            if not out or out[-1] != q:
                out.append(q)
        return out

    coords = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in coords]}
    return {"type": geometry["type"], "coordinates": [[ring(r) for r in poly] for poly in coords]}


def load_places(profile_path: Path | None) -> Places:
    """The places of the profile at ``profile_path`` (``WF_PROFILE``), or of the default profile (UTC, no names) when None.

    Raises :class:`streams.jurisdiction.ProfileError` (a ``ValueError`` naming the file, the key and the value)
    when the profile cannot be read.

    >>> load_places(None)
    Places(timezone='UTC', name='Unnamed jurisdiction')
    """
    return Places.from_profile(default_profile() if profile_path is None else load_profile(profile_path))
