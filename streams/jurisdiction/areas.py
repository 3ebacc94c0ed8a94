"""Named areas of a jurisdiction (townships, districts, beats, first-due areas), indexed by H3 cell.

An :class:`Areas` answers "which named area holds this cell?" with one dict
lookup. It is built from a GeoJSON FeatureCollection of Polygon/MultiPolygon
features, each named by one of its properties (:meth:`Areas.from_geojson`):
every H3 cell of the index resolution (8 by default, about 0.74 km^2) whose
centre lies inside a feature is that feature's. Where features overlap, the
first feature in the file wins the cell. A feature too small or too thin to
hold any cell centre gets the cells it overlaps that no other feature took, so
no named area is left without a cell.

Precision: a place is named by the cell it falls in, so a point within about
one cell's width (some 1 km at resolution 8) of a border may get the
neighbour's name. For an alert about a cell and its ring, that is the intended
reading.

Examples
--------
>>> square = {"type": "Polygon", "coordinates": [[[-75.36, 40.11], [-75.32, 40.11], [-75.32, 40.14], [-75.36, 40.14], [-75.36, 40.11]]]}
>>> areas = Areas.from_geojson({"type": "FeatureCollection", "features": [
...     {"type": "Feature", "properties": {"name": "Norristown"}, "geometry": square}]})
>>> len(areas), areas.name_of(h3.latlng_to_cell(40.1215, -75.3399, 8))
(1, 'Norristown')
>>> areas.name_of(h3.latlng_to_cell(40.1215, -75.3399, 10)), areas.name_of(h3.latlng_to_cell(40.5, -75.0, 8))
('Norristown', None)
>>> areas.label("882aa81a5bfffff")
'882aa81a5bfffff'
>>> Areas().name_of("882aac95b3fffff") is None
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h3

#: H3 resolution of the area index when a profile does not say.
DEFAULT_RESOLUTION = 8

#: GeoJSON geometry types an area (or a boundary) may have.
AREA_GEOMETRIES = ("Polygon", "MultiPolygon")


class Areas:
    """Named areas, indexed by H3 cell at one resolution; ``Areas()`` is the empty index.

    Parameters
    ----------
    cells : mapping of str to str
        H3 cell (all at ``resolution``) -> area name.
    resolution : int
        H3 resolution of the cells (0..15).
    geometries : sequence of (name, geometry) pairs, optional
        The areas' GeoJSON geometries for :meth:`geojson`, in file order. When
        omitted, each name's outline is drawn from its cells.
    population : mapping of str to float, optional
        Area name -> residents, when the profile gives them (the allocation's
        skew report sets units against them); never estimated.
    """

    __slots__ = ("_cells", "_geometries", "_names", "_population", "resolution")

    def __init__(
        self,
        cells: Mapping[str, str] | None = None,
        resolution: int = DEFAULT_RESOLUTION,
        geometries: Sequence[tuple[str, dict[str, Any]]] | None = None,
        population: Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 0 <= resolution <= 15:
            raise ValueError(f"resolution must be an integer 0..15, found {resolution!r}")
        self.resolution = resolution
        self._cells: dict[str, str] = dict(cells or {})
        for cell in self._cells:
            if not h3.is_valid_cell(cell) or h3.get_resolution(cell) != resolution:
                raise ValueError(f"area cell {cell!r} is not a valid H3 cell of resolution {resolution}")
        self._geometries = list(geometries) if geometries is not None else None
        names = dict.fromkeys(name for name, _ in self._geometries) if self._geometries is not None else {}
        names.update(dict.fromkeys(self._cells.values()))
        self._names = tuple(names)
        self._population = dict(population or {})
        for name, residents in self._population.items():
            if name not in names or isinstance(residents, bool) or not isinstance(residents, int | float) or not 0 <= residents < math.inf:
                raise ValueError(f"population of {name!r} must be a number of residents >= 0 of a named area, found {residents!r}")

    @classmethod
    def from_geojson(
        cls,
        collection: Mapping[str, Any],
        name_property: str = "name",
        resolution: int = DEFAULT_RESOLUTION,
        population_property: str | None = None,
    ) -> Areas:
        """Index a GeoJSON FeatureCollection's (Multi)Polygon features by the property ``name_property``.

        With ``population_property``, every feature must carry its residents in that
        property (a number >= 0); an area in several pieces sums them.

        Raises ValueError naming the feature (its index) and what is wrong with
        it: not a Feature, no such property, an empty name, another geometry type.
        Features may share a name (an area in two pieces).
        """
        if collection.get("type") != "FeatureCollection" or not isinstance(collection.get("features"), list):
            raise ValueError(f"expected a GeoJSON FeatureCollection with a 'features' list, found type {collection.get('type')!r}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 0 <= resolution <= 15:
            raise ValueError(f"resolution must be an integer 0..15, found {resolution!r}")
        named: list[tuple[str, dict[str, Any]]] = []
        population: dict[str, float] = {}
        for i, feature in enumerate(collection["features"]):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise ValueError(f"feature {i} is not a GeoJSON Feature")
            properties = feature.get("properties") or {}
            name = properties.get(name_property)
            if not isinstance(name, str) or not name.strip():
                found = sorted(properties) if isinstance(properties, dict) else properties
                raise ValueError(f"feature {i} has no non-empty text property {name_property!r} (its properties: {found})")
            geometry = feature.get("geometry")
            check_geometry(geometry, f"feature {i} ({name})")
            assert isinstance(geometry, dict)  # checked above
            named.append((name.strip(), geometry))
            if population_property is not None:
                residents = properties.get(population_property)
                if isinstance(residents, bool) or not isinstance(residents, int | float) or not 0 <= residents < math.inf:
                    raise ValueError(
                        f"feature {i} ({name}) has no number of residents >= 0 in {population_property!r}, found {residents!r}"
                    )
                population[name.strip()] = population.get(name.strip(), 0.0) + float(residents)
        cells: dict[str, str] = {}
        shapes = [(name, h3.geo_to_h3shape(geometry)) for name, geometry in named]
        for name, shape in shapes:
            for cell in h3.h3shape_to_cells(shape, resolution):
                cells.setdefault(cell, name)  # the first feature wins an overlap
        held = set(cells.values())
        for name, shape in shapes:
            if name not in held:  # too small for a cell centre: the cells it overlaps that are still free
                for cell in h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"):
                    cells.setdefault(cell, name)
        return cls(cells, resolution, named, population if population_property is not None else None)

    def name_of(self, cell: str) -> str | None:
        """The name of the area holding ``cell`` (any resolution), or None outside every area.

        A cell finer than the index is looked up by its parent, a coarser one by
        its centre child. Raises ValueError for a string that is not an H3 cell.
        """
        if not self._cells:
            return None
        try:
            res = h3.get_resolution(cell)
        except (h3.H3BaseException, TypeError, ValueError):
            raise ValueError(f"not an H3 cell: {cell!r}") from None
        if res > self.resolution:
            cell = h3.cell_to_parent(cell, self.resolution)
        elif res < self.resolution:
            cell = h3.cell_to_center_child(cell, self.resolution)
        return self._cells.get(cell)

    def names_of(self, cells: Iterable[str]) -> list[str]:
        """The distinct names of the areas holding ``cells``: most cells first, ties by name.

        >>> Areas().names_of(["882aac95b3fffff"])
        []
        """
        counts = Counter(name for name in map(self.name_of, cells) if name is not None)
        return sorted(counts, key=lambda name: (-counts[name], name))

    def label(self, cell: str) -> str:
        """``"Norristown (882aac95d1fffff)"``, or the bare cell id where no area holds it."""
        name = self.name_of(cell)
        return cell if name is None else f"{name} ({cell})"

    def names(self) -> tuple[str, ...]:
        """The areas' names, in file order."""
        return self._names

    def population(self) -> dict[str, float]:
        """Area name -> residents, as the profile gives them; empty when it gives none.

        >>> Areas().population()
        {}
        """
        return dict(self._population)

    def cells(self) -> dict[str, str]:
        """A copy of the index: cell (at :attr:`resolution`) -> name."""
        return dict(self._cells)

    def geojson(self) -> dict[str, Any]:
        """The areas as a GeoJSON FeatureCollection, one feature per area with a ``name`` property.

        The geometries are those the areas were built from; an index built from
        cells alone draws each name's outline from its cells.
        """
        if self._geometries is not None:
            pairs = self._geometries
        else:
            by_name: dict[str, list[str]] = {}
            for cell, name in self._cells.items():
                by_name.setdefault(name, []).append(cell)
            pairs = [(name, dict(h3.cells_to_h3shape(cells).__geo_interface__)) for name, cells in by_name.items()]
        features = [{"type": "Feature", "properties": {"name": name}, "geometry": geometry} for name, geometry in pairs]
        return {"type": "FeatureCollection", "features": features}

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Areas({len(self)} areas, {len(self._cells)} cells at resolution {self.resolution})"


def check_geometry(geometry: object, what: str) -> None:
    """Raise ValueError naming ``what`` unless ``geometry`` is a GeoJSON Polygon/MultiPolygon in (lng, lat) order.

    >>> check_geometry({"type": "Point", "coordinates": [0, 0]}, "boundary")
    Traceback (most recent call last):
    ...
    ValueError: boundary: expected a GeoJSON Polygon or MultiPolygon geometry, found 'Point'
    >>> check_geometry({"type": "Polygon", "coordinates": [[[40.1, -175.3], [40.2, -175.3], [40.2, -175.2], [40.1, -175.3]]]}, "area")
    Traceback (most recent call last):
    ...
    ValueError: area: latitude -175.3 is outside [-90, 90]; GeoJSON positions are [longitude, latitude]
    """
    kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
    if not isinstance(geometry, dict) or kind not in AREA_GEOMETRIES:
        raise ValueError(f"{what}: expected a GeoJSON Polygon or MultiPolygon geometry, found {kind!r}")
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        raise ValueError(f"{what}: a {kind} needs a non-empty 'coordinates' list")
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise ValueError(f"{what}: each polygon needs at least its outer ring")
        for ring in polygon:
            if not isinstance(ring, list) or len(ring) < 4:
                raise ValueError(f"{what}: a linear ring needs at least 4 positions, found {ring!r:.80}")
            for position in ring:
                if not isinstance(position, list | tuple) or len(position) < 2:
                    raise ValueError(f"{what}: a position must be [longitude, latitude], found {position!r}")
                lng, lat = position[0], position[1]
                for value in (lng, lat):
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise ValueError(f"{what}: a position must hold numbers, found {position!r}")
                if not -180 <= lng <= 180:
                    raise ValueError(f"{what}: longitude {lng} is outside [-180, 180]; GeoJSON positions are [longitude, latitude]")
                if not -90 <= lat <= 90:
                    raise ValueError(f"{what}: latitude {lat} is outside [-90, 90]; GeoJSON positions are [longitude, latitude]")
