"""The jurisdiction profile: one TOML file naming a jurisdiction, its time zone, boundary, areas and special days.

Pure: reads the TOML file and the GeoJSON files it names, nothing else (no
Kafka, Redis or network). The layout, every key and its default are in
``docs/jurisdiction.md``; the shipped example is
``infra/jurisdictions/montgomery-pa/jurisdiction.toml``.

Every mistake raises :class:`ProfileError` naming the file, the key, the value
found and what was expected; unknown keys are mistakes too (a typo must not
pass silently).

Examples
--------
>>> p = default_profile()
>>> p.id, p.timezone, p.contains(40.1, -75.3), len(p.areas), p.false_alerts_per_day
('unnamed', 'UTC', True, 0, 1.0)
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import h3

from streams.ingest.schema import Jurisdiction
from streams.jurisdiction.areas import DEFAULT_RESOLUTION, Areas, check_geometry

#: Kinds of special day: a public holiday or a planned event (a marathon, fireworks, a match).
SPECIAL_DAY_KINDS = ("holiday", "event")

#: The false-alert budget when a profile does not state one: what a supervisor accepts.
DEFAULT_FALSE_ALERTS_PER_DAY = 1.0

#: Finest H3 resolution of the boundary's cell cover (res 9: cells about 0.2 km across); coarser for a large boundary.
BOUNDARY_RESOLUTION = 9
#: Most cells the boundary's cover may take at its resolution before a coarser one is used.
BOUNDARY_MAX_CELLS = 400_000

#: Marks a key absent from the TOML document (None is not a TOML value, but this reads more plainly).
_MISSING: Any = object()

_ID = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")

#: Allowed keys: top level and per table (a typo is an error, not a silently ignored key).
_TOP_KEYS = ("id", "name", "timezone", "boundary", "areas", "zones", "detection", "basemap", "special_days")
_TABLE_KEYS = {
    "boundary": ("geojson", "box"),
    "areas": ("geojson", "name_property", "resolution", "population_property"),
    "zones": ("folder",),
    "detection": ("false_alerts_per_day", "recurrence_days"),
    "basemap": ("tiles", "pmtiles"),
    "special_days": ("date", "name", "kind"),
}


class ProfileError(ValueError):
    """A jurisdiction profile the worker cannot use; the message names the file, the key, the value and what to do."""


@dataclass(frozen=True)
class SpecialDay:
    """A known special day: a holiday or a planned event, on a local date in the profile's zone."""

    date: datetime.date
    name: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in SPECIAL_DAY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SPECIAL_DAY_KINDS)}, found {self.kind!r}")


@dataclass(frozen=True)
class Profile:
    """A jurisdiction: its name, time zone, boundary, named areas, special days and detection budget.

    Build one with :func:`load_profile` (from a TOML file) or
    :func:`default_profile` (what runs when no profile is given).
    ``contains`` tests the boundary's H3 cover (precise to within a cell of
    resolution :data:`BOUNDARY_RESOLUTION`, about 0.2 km, at the edge), else the
    bounding box, else accepts every point.
    """

    id: str
    name: str
    timezone: str
    boundary: dict[str, Any] | None = None
    box: Jurisdiction | None = None
    special_days: tuple[SpecialDay, ...] = ()
    zones_dir: Path | None = None
    areas: Areas = field(default_factory=Areas, compare=False)
    basemap: dict[str, str] | None = None
    false_alerts_per_day: float = DEFAULT_FALSE_ALERTS_PER_DAY
    #: The file it was read from (None for a profile built in code).
    path: Path | None = None
    _cover: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    #: The boundary's cover: compacted cells of the base resolution ``_cover_base`` (-1: no boundary) ...
    _cover_base: int = field(default=-1, init=False, repr=False, compare=False)
    #: ... and the coarser resolutions present in it, finest first.
    _cover_coarser: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    _days: dict[datetime.date, SpecialDay] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            raise ValueError(f"timezone must be an IANA zone name such as 'America/Los_Angeles', found {self.timezone!r}") from None
        if not (isinstance(self.false_alerts_per_day, int | float) and math.isfinite(self.false_alerts_per_day)):
            raise ValueError(f"false_alerts_per_day must be a number > 0, found {self.false_alerts_per_day!r}")
        if self.false_alerts_per_day <= 0:
            raise ValueError(f"false_alerts_per_day must be a number > 0, found {self.false_alerts_per_day!r}")
        days: dict[datetime.date, SpecialDay] = {}
        for day in self.special_days:
            days.setdefault(day.date, day)  # two on one date: the first listed
        object.__setattr__(self, "_days", days)
        if self.boundary is not None:
            check_geometry(self.boundary, "boundary")
            base, cover = boundary_cover(self.boundary)
            coarser = sorted({h3.get_resolution(c) for c in cover} - {base}, reverse=True)
            object.__setattr__(self, "_cover", cover)
            object.__setattr__(self, "_cover_base", base)
            object.__setattr__(self, "_cover_coarser", tuple(coarser))
            if self.box is None:
                object.__setattr__(self, "box", bounding_box(self.boundary))

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The profile's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)

    def contains(self, lat: float, lng: float) -> bool:
        """Whether (lat, lng) is inside the jurisdiction: its boundary, else its box, else anywhere.

        Inside the boundary means in a cell of its cover: the cells whose
        centres lie inside the polygon, so a point within about half a cell
        (0.1 km at resolution 9) of the edge may fall either way.
        """
        if self._cover_base >= 0:
            # the cover is compacted cells of one base resolution: a coarser cover cell stands for all its
            # base-resolution descendants, so the point's base cell and that cell's parents are tested
            cell = h3.latlng_to_cell(lat, lng, self._cover_base)
            return cell in self._cover or any(h3.cell_to_parent(cell, res) in self._cover for res in self._cover_coarser)
        if self.box is not None:
            return self.box.contains(lat, lng)
        return True

    def boundary_cells(self) -> frozenset[str]:
        """The compacted H3 cells that cover the boundary (:func:`boundary_cover`); empty without a boundary."""
        return self._cover

    def special_day(self, d: datetime.date) -> SpecialDay | None:
        """The special day on local date ``d`` (the first listed when two share it), or None."""
        return self._days.get(d)


def default_profile() -> Profile:
    """What runs when no profile is given: id ``unnamed``, UTC, no boundary, areas or special days."""
    return Profile(id="unnamed", name="Unnamed jurisdiction", timezone="UTC")


def boundary_cover(geometry: Mapping[str, Any]) -> tuple[int, frozenset[str]]:
    """The base resolution and the compacted H3 cells of that resolution whose centres lie inside ``geometry``.

    Resolution :data:`BOUNDARY_RESOLUTION` unless the polygon would take more
    than :data:`BOUNDARY_MAX_CELLS` cells there (a state, not a county): then the
    finest coarser one that does not.
    """
    shape = h3.geo_to_h3shape(dict(geometry))
    res = BOUNDARY_RESOLUTION
    # estimate at a coarse resolution first: each step finer has 7 times the cells
    probe = max(0, res - 3)
    estimate = max(1, len(h3.h3shape_to_cells(shape, probe))) * 7 ** (res - probe)
    while res > probe and estimate > BOUNDARY_MAX_CELLS:
        res -= 1
        estimate //= 7
    cells = h3.h3shape_to_cells(shape, res)
    if not cells:  # smaller than one cell: the cells it overlaps
        cells = h3.h3shape_to_cells_experimental(shape, res, contain="overlap")
    return res, frozenset(h3.compact_cells(cells))


def bounding_box(geometry: Mapping[str, Any]) -> Jurisdiction:
    """The (min_lat, min_lng, max_lat, max_lng) box of a Polygon/MultiPolygon's outer rings.

    >>> bounding_box({"type": "Polygon", "coordinates": [[[-75.7, 39.9], [-75.0, 39.9], [-75.0, 40.5], [-75.7, 39.9]]]})
    Jurisdiction(min_lat=39.9, min_lng=-75.7, max_lat=40.5, max_lng=-75.0)
    """
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    lngs = [float(p[0]) for polygon in polygons for p in polygon[0]]
    lats = [float(p[1]) for polygon in polygons for p in polygon[0]]
    return Jurisdiction(min(lats), min(lngs), max(lats), max(lngs))


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read a jurisdiction profile (TOML) and the GeoJSON files it names (paths relative to the TOML file).

    Raises :class:`ProfileError` naming the file, the key, the value and what
    was expected, for any unknown key, missing key, wrong type or unreadable file.
    """
    file = Path(path).expanduser().resolve()
    try:
        with file.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ProfileError(f"{file}: cannot read the jurisdiction profile ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{file}: not valid TOML ({exc}); see docs/jurisdiction.md for the layout") from None
    return _Reader(file).profile(doc)


class _Reader:
    """Turns a parsed TOML document into a :class:`Profile`, every error naming ``file`` and the key."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.base = file.parent

    def error(self, key: str, value: object, expected: str) -> ProfileError:
        shown = f" = {value!r}" if value is not _MISSING else " is missing"
        return ProfileError(f"{self.file}: {key}{shown}: expected {expected}")

    def unknown(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                at = f"[{where}] " if where else ""
                raise ProfileError(
                    f"{self.file}: {at}unknown key {key!r}; the keys allowed {'in [' + where + ']' if where else 'at the top level'} "
                    f"are {', '.join(allowed)} (see docs/jurisdiction.md)"
                )

    def table(self, doc: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        value = doc.get(name, _MISSING)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            raise self.error(name, value, f"a table [{name}]")
        self.unknown(value, _TABLE_KEYS[name], name)
        return value

    def text(self, table: Mapping[str, Any], key: str, label: str, default: str | None = None) -> str:
        value = table.get(key, _MISSING)
        if value is _MISSING and default is not None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(label, value, "a non-empty string")
        return value.strip()

    def file_path(self, value: str, label: str, *, directory: bool = False) -> Path:
        path = (self.base / Path(value).expanduser()).resolve()
        ok = path.is_dir() if directory else path.is_file()
        if not ok:
            kind = "folder" if directory else "file"
            raise self.error(label, value, f"an existing {kind}, relative to the profile's folder ({path} does not exist)")
        return path

    def geojson(self, value: str, label: str) -> Any:
        path = self.file_path(value, label)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self.error(label, value, f"a readable GeoJSON file ({path}: {exc})") from None

    def profile(self, doc: Mapping[str, Any]) -> Profile:
        self.unknown(doc, _TOP_KEYS, "")
        ident = self.text(doc, "id", "id")
        if not _ID.match(ident):
            raise self.error("id", ident, "lower-case letters, digits, '-' and '_', starting with a letter or digit (e.g. 'montgomery-pa')")
        name = self.text(doc, "name", "name", default=ident)
        timezone = self.text(doc, "timezone", "timezone")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise self.error("timezone", timezone, "an IANA time zone name such as 'America/New_York' or 'Europe/Paris'") from None
        boundary, box = self.boundary(doc)
        areas = self.areas(doc)
        zones = self.table(doc, "zones")
        zones_dir = None
        if zones is not None:
            zones_dir = self.file_path(self.text(zones, "folder", "[zones] folder"), "[zones] folder", directory=True)
        special_days, basemap, budget = self.special_days(doc), self.basemap(doc), self.budget(doc)
        try:
            return Profile(
                id=ident,
                name=name,
                timezone=timezone,
                boundary=boundary,
                box=box,
                special_days=special_days,
                zones_dir=zones_dir,
                areas=areas,
                basemap=basemap,
                false_alerts_per_day=budget,
                path=self.file,
            )
        except ValueError as exc:  # only the boundary's cover can still fail here; every value was checked above
            raise ProfileError(f"{self.file}: [boundary] {exc}") from None

    def boundary(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any] | None, Jurisdiction | None]:
        table = self.table(doc, "boundary")
        if table is None:
            return None, None
        if ("geojson" in table) == ("box" in table):
            raise ProfileError(f'{self.file}: [boundary] needs exactly one of geojson = "FILE" or box = "min_lat,min_lng,max_lat,max_lng"')
        if "box" in table:
            text = self.text(table, "box", "[boundary] box")
            try:
                return None, Jurisdiction.parse(text)
            except ValueError as exc:
                raise self.error("[boundary] box", text, f"'min_lat,min_lng,max_lat,max_lng' in degrees ({exc})") from None
        value = self.text(table, "geojson", "[boundary] geojson")
        data = self.geojson(value, "[boundary] geojson")
        try:
            return merged_geometry(data), None
        except ValueError as exc:
            raise self.error(
                "[boundary] geojson", value, f"a GeoJSON (Multi)Polygon, Feature or FeatureCollection of them ({exc})"
            ) from None

    def areas(self, doc: Mapping[str, Any]) -> Areas:
        table = self.table(doc, "areas")
        if table is None:
            return Areas()
        value = self.text(table, "geojson", "[areas] geojson")
        name_property = self.text(table, "name_property", "[areas] name_property", default="name")
        resolution = table.get("resolution", DEFAULT_RESOLUTION)
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 0 <= resolution <= 15:
            raise self.error("[areas] resolution", resolution, "an integer H3 resolution 0..15 (8: cells of about 0.74 km^2)")
        population_property = (
            self.text(table, "population_property", "[areas] population_property") if "population_property" in table else None
        )
        data = self.geojson(value, "[areas] geojson")
        if not isinstance(data, dict):
            raise self.error("[areas] geojson", value, "a GeoJSON FeatureCollection")
        try:
            return Areas.from_geojson(data, name_property, resolution, population_property)
        except ValueError as exc:
            raise self.error("[areas] geojson", value, f"a FeatureCollection of named (Multi)Polygons: {exc}") from None

    def budget(self, doc: Mapping[str, Any]) -> float:
        table = self.table(doc, "detection")
        if table is None:
            return DEFAULT_FALSE_ALERTS_PER_DAY
        if "false_alerts_per_day" in table and "recurrence_days" in table:
            raise ProfileError(
                f"{self.file}: [detection] states both false_alerts_per_day and recurrence_days; "
                "keep one (recurrence_days = 1/false_alerts_per_day)"
            )
        for key in ("false_alerts_per_day", "recurrence_days"):
            if key in table:
                value = table[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                    raise self.error(f"[detection] {key}", value, "a number > 0")
                return float(value) if key == "false_alerts_per_day" else 1.0 / float(value)
        return DEFAULT_FALSE_ALERTS_PER_DAY

    def basemap(self, doc: Mapping[str, Any]) -> dict[str, str] | None:
        table = self.table(doc, "basemap")
        if table is None:
            return None
        if len(table) != 1:
            raise ProfileError(
                f'{self.file}: [basemap] needs exactly one of tiles = "https://..." or pmtiles = "FILE", found {sorted(table)}'
            )
        if "tiles" in table:
            url = self.text(table, "tiles", "[basemap] tiles")
            if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
                raise self.error("[basemap] tiles", url, "an http(s) URL template such as 'https://tiles.example.gov/{z}/{x}/{y}.pbf'")
            return {"tiles": url}
        value = self.text(table, "pmtiles", "[basemap] pmtiles")
        return {"pmtiles": str(self.file_path(value, "[basemap] pmtiles"))}

    def special_days(self, doc: Mapping[str, Any]) -> tuple[SpecialDay, ...]:
        entries = doc.get("special_days", [])
        if not isinstance(entries, list):
            raise self.error("special_days", entries, 'an array of tables: [[special_days]] date = 2016-01-01, name = "..."')
        days = []
        for i, entry in enumerate(entries):
            where = f"special_days[{i}]"
            if not isinstance(entry, dict):
                raise self.error(where, entry, "a table with date, name and kind")
            self.unknown(entry, _TABLE_KEYS["special_days"], where)
            date = entry.get("date", _MISSING)
            if isinstance(date, datetime.datetime) or not isinstance(date, datetime.date):
                raise self.error(f"[{where}] date", date, "a bare TOML local date such as 2016-01-01 (no quotes, no time)")
            name = self.text(entry, "name", f"[{where}] name")
            kind = entry.get("kind", "holiday")
            if kind not in SPECIAL_DAY_KINDS:
                raise self.error(f"[{where}] kind", kind, f"one of {', '.join(repr(k) for k in SPECIAL_DAY_KINDS)}")
            days.append(SpecialDay(date, name, kind))
        return tuple(days)


def merged_geometry(data: object) -> dict[str, Any]:
    """One Polygon/MultiPolygon geometry from a GeoJSON geometry, Feature or FeatureCollection (features merged).

    >>> ring = [[0, 0], [1, 0], [1, 1], [0, 0]]
    >>> merged_geometry({"type": "FeatureCollection", "features": [
    ...     {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}] * 2})["type"]
    'MultiPolygon'
    """
    if not isinstance(data, dict):
        raise ValueError(f"found {type(data).__name__}")
    if data.get("type") == "FeatureCollection":
        geometries = [f.get("geometry") if isinstance(f, dict) else f for f in data.get("features") or []]
    elif data.get("type") == "Feature":
        geometries = [data.get("geometry")]
    else:
        geometries = [data]
    if not geometries:
        raise ValueError("no features")
    for i, geometry in enumerate(geometries):
        check_geometry(geometry, f"geometry {i}")
    if len(geometries) == 1:
        only = geometries[0]
        assert isinstance(only, dict)
        return only
    polygons: list[Any] = []
    for geometry in geometries:
        assert isinstance(geometry, dict)
        polygons.extend([geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"])
    return {"type": "MultiPolygon", "coordinates": polygons}
