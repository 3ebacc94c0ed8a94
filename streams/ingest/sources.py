"""Read a 911 CSV export and turn each row into schema-v1 events, as a source mapping says.

Pure: no Kafka, Redis or network. :func:`read_source` streams a file line by
line and yields, in file order, one :class:`Row` (a ``call`` JSON object plus
the ``update`` objects derived from the row's status times) or one
:class:`Rejected` (the line's bytes and a :class:`streams.ingest.schema.Reason` value)
for every non-blank data line. :func:`parse_lines` does the same for lines
already in memory and is what the examples below use. :func:`parse_records`
reads records that arrive as dicts (column name to value: the rows of a JSON
API such as Socrata's SODA) through the same mapping and the same engine;
:func:`cell_text` says how a JSON value becomes cell text.

How to read an export is declared, not coded: a mapping
(:mod:`streams.ingest.mapping`, a TOML file) names the columns, the time forms
and zone, the category rules, the priority map, the coordinates, the row grain
and the status columns. The built-in formats are mapping files shipped in
``streams/ingest/mappings/``; ``--mapping M.toml`` (``fmt=load_mapping(path)``)
reads any other export.

What is rejected and what is passed on
--------------------------------------
A row is rejected only for what the mapping has to interpret: a line that is
not UTF-8 or not CSV, or has the wrong number of fields (``bad_field``); a
received time, or a ``required`` status time, that is empty
(``missing_field``); a received or status time that cannot be read, has no
offset and no zone to be read in, or is skipped by a daylight-saving change
(``impossible_timestamp``); a priority the mapping says to reject
(``bad_field``). A status time more than the tolerance before the call was
received refuses that update alone (:attr:`Row.refused`,
``status_before_received``); the call is kept. Everything else is passed on
for the worker's validator to judge, so that the dead-letter path stays in one
place: a missing, empty or non-numeric coordinate becomes ``None`` (a ``0``
stays ``0.0``), an empty call type or agency becomes ``None``, a priority the
mapping does not know becomes ``None`` (listed in :attr:`Row.unmapped`).

Data minimization: the call dict holds only schema fields. Free-text
addresses, townships, ZIP codes, narratives and any column a mapping does not
name are never copied; a column read through ``extract`` (Montgomery's
``desc``) gives only what the pattern finds.

Call ids come from the mapping's ``id`` column (Seattle ``Incident Number``,
watchfloor ``id``); a row without one gets ``"{format}-{line}"`` (for example
``"montgomery-pa-2"``). A repeated source id is kept as it is (Seattle repeats
ids, mostly on identical rows): the worker counts the first call with an id
and sends the others to the dead-letter topic as ``duplicate_id``, so a
repeated row is neither counted twice nor dropped silently. ``source`` is the
format's name. Times are emitted as ISO 8601 UTC with ``Z``
(:func:`streams.ingest.schema.format_time`); :attr:`Row.event_time` is the received
time in epoch seconds, for sorting a replay.

Times without an offset are wall times in the zone given by ``timezone=``
(``--timezone``), else the mapping's ``timezone``, else they are refused. A
wall time that a daylight-saving change skips does not exist and is refused;
one that occurs twice (the autumn change) is read as the first occurrence. An
ISO time with hour 24 means hour 0 of the next day.

Formats
-------
The keys of :data:`FORMATS`; :func:`detect_format` picks one from the first
line (a header must hold the columns the format requires; extra ones are
ignored). Blank lines are skipped everywhere. Each file's comments say what
it reads and why.

``montgomery-pa``
    Montgomery County PA, header ``lat,lng,desc,zip,title,timeStamp,twp,addr,e``,
    New York time. ``received_at`` is the last ``YYYY-MM-DD @ hh:mm:ss`` in
    ``desc`` (else ``timeStamp``); ``timeStamp`` is a ``dispatched`` update
    when it is not earlier. ``title`` ``"Traffic: VEHICLE ACCIDENT -"`` gives
    the category and the call type ``"VEHICLE ACCIDENT"``.
``montgomery-pa-sample``
    The same county's sample export, no header, six columns: latitude,
    longitude, title, local time ``YYYY-MM-DD hh:mm``, township, address.
    Recognized by the shape of its first line. No updates.
``cincinnati-fire``
    Cincinnati Fire CAD, header
    ``latitude,longitude,create_time_incident,incident_type_id,datetime``, New
    York time; the dispatch code is the call type. No updates.
``seattle-fire-soda``
    Seattle Fire's Real Time 911 Calls from its Socrata API (dataset
    ``kzjm-xkqj``), as records (:func:`parse_records`) or the API's CSV
    export: lower-case fields ``type,datetime,latitude,longitude,incident_number``,
    floating timestamps in Seattle's time. No updates.
``seattle-fire``
    Seattle Fire 911, header
    ``Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number``.
    ``Datetime`` is ``MM/DD/YYYY hh:mm:ss AM +0000``, ISO with an offset, or
    (the 2022-on export) ``MM/DD/YYYY hh:mm:ss AM`` in Seattle's time. No updates.
``watchfloor``
    The project's own format, for users' exports and the simulator; see below.

The watchfloor CSV format
-------------------------
UTF-8, comma-separated, fields containing commas or quotes quoted with ``"``
(RFC 4180, one record per line), and this header::

    id,received_at,category,call_type,priority,lat,lng,agency,dispatched_at,en_route_at,on_scene_at,closed_at,unit

Required: ``received_at``, ``lat``, ``lng`` and one of ``category`` or
``call_type``; the other columns are optional (an absent column reads as
empty). Columns may come in any order; extra columns are ignored and never
copied.

- ``id``: the call id, unique in the file, at most 64 characters; empty gives
  ``watchfloor-{line}``. A repeated id is passed on as it is: the worker
  counts the first and refuses the others as ``duplicate_id``.
- ``received_at``: when the call was received, ISO 8601 with a UTC offset or
  ``Z`` (``2016-01-23T16:02:11Z``, ``2016-01-23 11:02:11-05:00``; fractions
  of a second allowed; hour 24 is hour 0 of the next day); without an offset
  only with ``--timezone``.
- ``category``: any text, normalized to EMS, FIRE, TRAFFIC, POLICE or OTHER;
  empty: normalized from ``call_type``.
- ``call_type``: the agency's own call type (``VEHICLE ACCIDENT``).
- ``priority``: an integer 1 (highest) to 5, or empty; anything else is refused.
- ``lat``, ``lng``: WGS 84 decimal degrees.
- ``agency``: the agency's short name (``montgomery-pa``).
- ``dispatched_at``, ``en_route_at``, ``on_scene_at``, ``closed_at``: optional
  status times, in the same form as ``received_at``; each non-empty one
  becomes an update with status ``dispatched``, ``en_route``, ``on_scene`` or
  ``closed`` (one up to 120 s before ``received_at`` is moved to it; one
  further before is refused on its own).
- ``unit``: the unit named on those updates, or empty.

An empty cell means unknown.

Examples
--------
>>> lines = [b"id,received_at,category,call_type,priority,lat,lng,agency,"
...          b"dispatched_at,en_route_at,on_scene_at,closed_at,unit",
...          b"C1,2016-01-23T11:02:11-05:00,Traffic,VEHICLE ACCIDENT,2,40.12,-75.34,"
...          b"montgomery-pa,2016-01-23T16:05:40Z,,,,M-41",
...          b"C2,yesterday,EMS,FALL,,40.1,-75.3,montgomery-pa,,,,,"]
>>> row, bad = parse_lines(lines)
>>> row.call["id"], row.call["received_at"], row.call["category"], row.call["priority"]
('C1', '2016-01-23T16:02:11Z', 'TRAFFIC', 2)
>>> [(u["status"], u["at"], u["unit"]) for u in row.updates]
[('dispatched', '2016-01-23T16:05:40Z', 'M-41')]
>>> bad.line, bad.reason
(3, 'impossible_timestamp')

Without the optional columns, and local times read in a zone:

>>> lines = [b"received_at,call_type,lat,lng", b"2022-01-21 13:43:00,Aid Response,47.6,-122.3"]
>>> (row,) = parse_lines(lines, timezone="America/Los_Angeles")
>>> row.call["received_at"], row.call["category"], row.call["id"], row.updates
('2022-01-21T21:43:00Z', 'EMS', 'watchfloor-2', ())
"""

from __future__ import annotations

import csv
import json
import logging
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.ingest.mapping import FieldSpec, Mapping, MappingError, StatusSpec, builtin_mappings
from streams.ingest.schema import SCHEMA_VERSION, Category, Reason, Status, format_time, normalize_category
from streams.ingest.timeparse import TimeParseError, TimeReader

logger = logging.getLogger(__name__)

WATCHFLOOR_COLUMNS = (
    "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency",
    "dispatched_at", "en_route_at", "on_scene_at", "closed_at", "unit",
)  # fmt: skip

#: The built-in formats by name (the mapping files in ``streams/ingest/mappings/``), in the order detection tries them.
FORMATS: dict[str, Mapping] = builtin_mappings()


@dataclass(frozen=True)
class Refused:
    """One incident update refused on its own while its call is kept (a status time before the call was received).

    ``update`` is the schema-v1 update as the file gave it (its ``at`` unchanged): replay sends it to the
    dead-letter topic with ``reason`` (``"status_before_received"``) and ``detail``.
    """

    status: str
    reason: str
    detail: str
    update: dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One call read from the file.

    ``line`` is the 1-based physical line number (the header is line 1);
    ``raw`` the line's bytes without its line ending (for a unit-grain file,
    the call's first row); ``event_time`` the received time in epoch seconds
    (UTC); ``call`` a schema-v1 call object and ``updates`` schema-v1 update
    objects, all ready for ``json.dumps``. ``refused`` holds the updates
    refused on their own (see :class:`Refused`); ``unmapped`` the
    ``(field, value)`` pairs the mapping had no entry for (a priority outside
    ``fields.priority.map``), whose field is ``None`` in ``call``.
    """

    line: int
    raw: bytes
    event_time: float
    call: dict[str, Any]
    updates: tuple[dict[str, Any], ...]
    refused: tuple[Refused, ...] = ()
    unmapped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A data line that cannot become events.

    ``reason`` is a :class:`streams.ingest.schema.Reason` value (``"bad_field"``,
    ``"missing_field"``, ``"impossible_timestamp"``); ``detail`` names the
    column, what was found and what was expected.
    """

    line: int
    raw: bytes
    reason: str
    detail: str


class UnknownFormat(ValueError):
    """The file's format is not known, or its header does not fit the format asked for."""


class _Reject(Exception):
    """Raised while reading a row; becomes a :class:`Rejected`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Parts(NamedTuple):
    """What one row holds; :class:`_Engine` builds the JSON."""

    received_at: float
    category: Category
    call_type: str | None
    priority: int | None
    lat: float | None
    lng: float | None
    agency: str | None
    source_id: str | None
    unit: str | None
    statuses: tuple[tuple[StatusSpec, float, str], ...]  # (spec, time, cell text) in the mapping's order
    unmapped: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- cells


def _coord(text: str) -> float | None:
    """A coordinate as written, or ``None`` when empty, not a number or not finite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_PAIR = re.compile(r"\(?\s*([^,()\s]+)\s*,\s*([^,()\s]+)\s*\)?")
_POINT = re.compile(r"POINT\s*\(\s*(\S+)\s+(\S+)\s*\)", re.IGNORECASE)


def parse_location(text: str, form: str) -> tuple[float | None, float | None]:
    """``(lat, lng)`` from one combined cell: ``form`` ``"pair"`` (``"(lat, lng)"``) or ``"point"`` (WKT ``POINT (lng lat)``).

    Anything else gives ``(None, None)``, for the validator to refuse.

    >>> parse_location("(47.654152, -122.354466)", "pair"), parse_location("POINT (-122.42 37.77)", "point")
    ((47.654152, -122.354466), (37.77, -122.42))
    >>> parse_location("", "point"), parse_location("POINT EMPTY", "point")
    ((None, None), (None, None))
    """
    if form == "point":
        m = _POINT.fullmatch(text)
        return (None, None) if m is None else (_coord(m.group(2)), _coord(m.group(1)))
    m = _PAIR.fullmatch(text)
    return (None, None) if m is None else (_coord(m.group(1)), _coord(m.group(2)))


def _extract(spec: FieldSpec, text: str) -> str:
    """The value ``spec.extract`` finds in ``text`` (its groups joined by a space), or ``""``."""
    pattern = spec.extract
    assert pattern is not None
    if spec.occurrence == "last":
        found = pattern.findall(text)
        if not found:
            return ""
        last = found[-1]
        return (" ".join(last) if isinstance(last, tuple) else last).strip()
    m = pattern.search(text)
    if m is None:
        return ""
    return (" ".join(g or "" for g in m.groups()) if m.groups() else m.group(0)).strip()


def _text_of(spec: FieldSpec | None) -> Callable[[dict[str, str]], str]:
    """A fast reader of a field's text: the cell itself for a plain column, the constant, or :func:`_read`."""
    if spec is None:
        return lambda cells: ""
    if spec.value is not None:
        value = spec.value
        return lambda cells: value
    if spec.extract is None and spec.fallback is None and spec.column is not None:
        return operator.itemgetter(spec.column)
    return lambda cells: _read(spec, cells)[0]


def _read(spec: FieldSpec, cells: dict[str, str]) -> tuple[str, str]:
    """A field's text and the column it came from (``""`` for a constant)."""
    if spec.value is not None:
        return spec.value, ""
    assert spec.column is not None
    text = cells[spec.column]
    if text and spec.extract is not None:
        text = _extract(spec, text)
    if not text and spec.fallback:
        return cells[spec.fallback], spec.fallback
    return text, spec.column


def _empty(column: str, parts: tuple[str, ...], cells: dict[str, str]) -> str:
    """Words for an empty time: its column, or which of the columns it joins are empty.

    >>> _empty("Call Date + Call Time", ("Call Date", "Call Time"), {"Call Date": "01/02/2020", "Call Time": ""})
    "columns 'Call Date' + 'Call Time' have no time: 'Call Time' is empty"
    """
    if not parts:
        return f"column {column!r} is empty"
    empty = [c for c in parts if not cells.get(c)]
    return f"columns {' + '.join(map(repr, parts))} have no time: {', '.join(map(repr, empty))} {'is' if len(empty) == 1 else 'are'} empty"


# --------------------------------------------------------------------------- the engine

_STATUS_VALUE = {s: s.value for s in Status}  # Enum.value is a descriptor call; this is a dict lookup, per update


def _when(ts: float) -> str:
    """:func:`format_time`, or the epoch seconds when the time cannot be shown in UTC (for messages)."""
    try:
        return format_time(ts)
    except (ValueError, OverflowError, OSError):
        return f"{ts} s after the epoch"


class _Engine:
    """A mapping compiled for reading: time readers in the effective zone, caches for repeated texts."""

    def __init__(self, mapping: Mapping, timezone: str | None, status_tolerance: float | None) -> None:
        self.mapping = mapping
        self.name = mapping.name
        zone_name = timezone or mapping.timezone
        zone: ZoneInfo | None = None
        if zone_name:
            try:
                zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise MappingError(
                    f"time zone {zone_name!r} is not an IANA time zone; expected a name such as America/Los_Angeles"
                ) from None
        if status_tolerance is not None and not 0 <= status_tolerance < math.inf:
            raise MappingError(f"status tolerance {status_tolerance!r} s; expected a number of seconds >= 0")
        self.tolerance = mapping.status_tolerance_s if status_tolerance is None else float(status_tolerance)
        f = mapping.fields
        self.received = f["received_at"]
        self.received_reader = TimeReader(self.received.formats or mapping.time_formats, zone)
        self.status_readers = [(s, TimeReader(s.formats or mapping.time_formats, zone)) for s in mapping.statuses]
        self.id = f.get("id")
        self.call_type = f.get("call_type")
        category = f.get("category")
        self.category = category if category is not None and (category.column or category.value) else self.call_type
        self.priority = f.get("priority")
        self.lat, self.lng, self.location = f.get("lat"), f.get("lng"), f.get("location")
        self.agency, self.unit = f.get("agency"), f.get("unit")
        self.rules = mapping.category_rules
        self.default = mapping.category_default
        self._categories: dict[str, Category] = {}
        self._category_text = _text_of(self.category)
        self._lat_text, self._lng_text, self._location_text = _text_of(self.lat), _text_of(self.lng), _text_of(self.location)
        self._agency_text, self._id_text, self._unit_text = _text_of(self.agency), _text_of(self.id), _text_of(self.unit)
        self._call_types: dict[str, str | None] = {}

    def category_of(self, text: str) -> Category:
        cached = self._categories.get(text)
        if cached is None:
            cached = next((r.category for r in self.rules if r.pattern.search(text)), None)
            if cached is None:
                cached = self.default if self.default is not None else normalize_category(text)
            if len(self._categories) > 50_000:
                self._categories.clear()
            self._categories[text] = cached
        return cached

    def call_type_of(self, cells: dict[str, str]) -> str | None:
        spec = self.call_type
        if spec is None:
            return None
        if spec.extract is None or spec.value is not None:
            return _read(spec, cells)[0] or None
        raw = cells[spec.column] if spec.column else ""
        if raw in self._call_types:
            return self._call_types[raw]
        text = _read(spec, cells)[0] or None
        if not spec.fallback:  # the result depends on this cell alone
            if len(self._call_types) > 50_000:
                self._call_types.clear()
            self._call_types[raw] = text
        return text

    def convert(self, cells: dict[str, str]) -> _Parts:
        """One row's parts; raises :class:`_Reject` for what cannot be read."""
        received, received_from = self._received(cells)
        priority, unmapped = self._priority(cells)
        statuses = []
        for spec, reader in self.status_readers:
            text = cells[spec.column]
            if not text:
                if spec.required:
                    raise _Reject(Reason.MISSING_FIELD, f"{_empty(spec.column, spec.parts, cells)}; expected {reader.expected}")
                continue
            try:
                at = reader.read(text, spec.column)
            except TimeParseError as exc:
                raise _Reject(exc.reason, exc.detail) from None
            if spec.column == received_from:  # the cell received_at was read from: it would only repeat it
                continue
            statuses.append((spec, at, text))
        if self.location is not None:
            lat, lng = parse_location(self._location_text(cells), self.location.form or "pair")
        else:
            lat = _coord(self._lat_text(cells)) if self.lat else None
            lng = _coord(self._lng_text(cells)) if self.lng else None
        return _Parts(
            received,
            self.category_of(self._category_text(cells)),
            self.call_type_of(cells),
            priority,
            lat,
            lng,
            self._agency_text(cells) or None,
            self._id_text(cells) or None,
            self._unit_text(cells) or None,
            tuple(statuses),
            unmapped,
        )

    def _received(self, cells: dict[str, str]) -> tuple[float, str]:
        spec, reader = self.received, self.received_reader
        assert spec.column is not None
        text, column = _read(spec, cells)
        if column == spec.column and text and spec.fallback and (spec.extract is not None or cells[spec.fallback]):
            # A value the fallback may stand in for: one that is not a readable time counts as empty.
            try:
                return reader.read(text, column), column
            except TimeParseError:
                text, column = cells[spec.fallback], spec.fallback
        if not text:
            parts = spec.parts if column == spec.column else ()
            raise _Reject(Reason.MISSING_FIELD, f"{_empty(column or spec.column, parts, cells)}; expected {reader.expected}")
        try:
            return reader.read(text, column), column
        except TimeParseError as exc:
            raise _Reject(exc.reason, exc.detail) from None

    def _priority(self, cells: dict[str, str]) -> tuple[int | None, tuple[tuple[str, str], ...]]:
        spec = self.priority
        if spec is None:
            return None, ()
        text, column = _read(spec, cells)
        if not text:
            return None, ()
        value = self.mapping.priority_map.get(text.casefold())
        if value is not None:
            return value, ()
        if self.mapping.priority_unmapped == "reject":
            known = ", ".join(sorted(self.mapping.priority_map))
            raise _Reject(
                Reason.BAD_FIELD,
                f"column {column!r} is {text!r:.60}; expected one of {known} (fields.priority.map of {self.name!r}; 1 highest), or empty",
            )
        return None, (("priority", text),)

    def updates(
        self, call_id: str, received: float, statuses: Iterable[tuple[StatusSpec, float, str, str | None]]
    ) -> tuple[list[tuple[Status, float, str | None]], list[Refused]]:
        """The updates of a call received at ``received``, and those refused because they come before it (pure)."""
        kept: list[tuple[Status, float, str | None]] = []
        refused: list[Refused] = []
        for spec, at, text, unit in statuses:
            if at < received:
                if spec.before_received == "drop":
                    continue
                if received - at > self.tolerance:
                    refused.append(
                        Refused(
                            spec.status.value,
                            Reason.STATUS_BEFORE_RECEIVED.value,
                            f"column {spec.column!r} is {text!r:.60}, {received - at:,.0f} s before the call was received "
                            f"({_when(received)}), more than the tolerance of {self.tolerance:g} s "
                            "(status_tolerance_s in the mapping, --status-tolerance); the call is kept without this update",
                            self._update(call_id, spec.status, at, unit),
                        )
                    )
                    continue
                at = received  # within the tolerance: clock skew between CAD subsystems
            kept.append((spec.status, at, unit))
        return kept, refused

    def _update(self, call_id: str, status: Status, at: float, unit: str | None) -> dict[str, Any]:
        return {
            "type": "update",
            "v": SCHEMA_VERSION,
            "call_id": call_id,
            "status": status.value,
            "at": _when(at),
            "unit": unit,
            "source": self.name,
        }

    def row(
        self, line: int, raw: bytes, parts: _Parts, statuses: list[tuple[Status, float, str | None]], refused: list[Refused]
    ) -> Row | Rejected:
        try:
            received_at = format_time(parts.received_at)
            update_times = [format_time(at) for _, at, _ in statuses]
        except (ValueError, OverflowError, OSError) as exc:
            return Rejected(line, raw, Reason.IMPOSSIBLE_TIMESTAMP.value, f"a time on this line cannot be represented in UTC ({exc})")
        call_id = parts.source_id or f"{self.name}-{line}"
        call = {
            "type": "call", "v": SCHEMA_VERSION, "id": call_id, "received_at": received_at,
            "category": parts.category.value, "call_type": parts.call_type, "priority": parts.priority,
            "lat": parts.lat, "lng": parts.lng, "agency": parts.agency, "source": self.name,
        }  # fmt: skip
        updates = tuple(
            {
                "type": "update",
                "v": SCHEMA_VERSION,
                "call_id": call_id,
                "status": _STATUS_VALUE[status],
                "at": at,
                "unit": unit,
                "source": self.name,
            }
            for (status, _, unit), at in zip(statuses, update_times, strict=True)
        )
        return Row(line, raw, parts.received_at, call, updates, tuple(refused), parts.unmapped)


# --------------------------------------------------------------------------- layout of a file


class _Plan(NamedTuple):
    mapping: Mapping
    width: int  # fields per data line
    positions: tuple[tuple[str, int], ...]  # (column, index) for the columns the mapping reads that the file has
    absent: tuple[str, ...]  # columns the mapping reads that the file lacks: they read as ""
    joins: tuple[tuple[str, tuple[str, ...]], ...] = ()  # a time read from several columns: (joined name, columns)
    delimiter: str = ","


def _first_fields(first: bytes, origin: str, delimiter: str = ",") -> list[str]:
    text = first.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    try:
        return [f.strip() for f in next(csv.reader((text.decode("utf-8"),), strict=True, delimiter=delimiter), [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnknownFormat(f"{origin}: the first line is not UTF-8 CSV ({exc}); expected a header line or a first data row") from None


def _fits_header(m: Mapping, names: set[str]) -> bool:
    return m.header and m.required <= names and all(group & names for group in m.required_any)


def _fits_first_line(m: Mapping, fields: list[str]) -> bool:
    if m.header or not m.first_line or len(fields) != len(m.columns):
        return False
    index = {c: i for i, c in enumerate(m.columns)}
    return all(p.fullmatch(fields[index[c]]) for c, p in m.first_line)


def _known_formats() -> str:
    return "; ".join(f"{m.name} ({m.summary})" for m in FORMATS.values())


def _detect(first: bytes, origin: str) -> Mapping:
    fields = _first_fields(first, origin)
    names = set(fields)
    matches = [m for m in FORMATS.values() if _fits_header(m, names)]
    if len(matches) > 1:  # the most specific wins: the one whose header needs the most columns
        most = max(len(m.required) for m in matches)
        matches = [m for m in matches if len(m.required) == most]
    if not matches:
        matches = [m for m in FORMATS.values() if _fits_first_line(m, fields)]
    if len(matches) == 1:
        return matches[0]
    found = "an empty file" if not first.strip() else f"the first line {','.join(fields)!r:.300}"
    raise UnknownFormat(
        f"{origin}: cannot tell the source format from {found}. Known formats: {_known_formats()}. "
        "Pass the format name explicitly, write a mapping for the export (--mapping M.toml; "
        "python -m streams.ingest.inspect FILE proposes one), or convert the file to the watchfloor format."
    )


def _resolve(first: bytes | None, fmt: str | Mapping, origin: str) -> Mapping:
    if isinstance(fmt, Mapping):
        return fmt
    if fmt == "auto":
        return _detect(first or b"", origin)
    mapping = FORMATS.get(fmt)
    if mapping is None:
        raise UnknownFormat(
            f"unknown source format {fmt!r}; expected 'auto' or one of: {', '.join(FORMATS)}, or a mapping file (--mapping M.toml)"
        )
    return mapping


def _plan(first: bytes | None, fmt: str | Mapping, origin: str) -> _Plan:
    """Choose the mapping and, for a header, where its columns are."""
    mapping = _resolve(first, fmt, origin)
    reads = mapping.reads()
    if not mapping.header:
        index = {c: i for i, c in enumerate(mapping.columns)}
        return _Plan(mapping, len(mapping.columns), tuple((c, index[c]) for c in reads), (), mapping.joins, mapping.delimiter)
    fields = _first_fields(first or b"", origin, mapping.delimiter)
    names = set(fields)
    missing = sorted(mapping.required - names)
    groups = [sorted(g) for g in mapping.required_any if not g & names]
    if missing or groups:
        lacks = ", ".join(missing + [" or ".join(g) for g in groups])
        hint = ""
        if len(fields) == 1 and (other := next((d for d in ",;\t|" if d != mapping.delimiter and d in fields[0]), None)):
            hint = f" (the header is one field holding {other!r}: set [layout] delimiter = {other!r} in the mapping)"
        raise UnknownFormat(
            f"{origin}: the header {','.join(fields)!r:.300} lacks the columns {lacks} that format {mapping.name!r} needs; "
            f"expected {mapping.summary}{hint}"
        )
    where = {name: i for i, name in enumerate(fields)}  # a repeated header name: its last column, as before
    return _Plan(
        mapping,
        len(fields),
        tuple((c, where[c]) for c in reads if c in where),
        tuple(c for c in reads if c not in where),
        mapping.joins,
        mapping.delimiter,
    )


# --------------------------------------------------------------------------- rows


def _cells(plan: _Plan, line: int, raw: bytes) -> dict[str, str] | Rejected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(line, raw, Reason.BAD_FIELD.value, f"line is not valid UTF-8 (byte {exc.start}); expected UTF-8 text")
    try:
        fields = next(csv.reader((text,), strict=True, delimiter=plan.delimiter))
    except csv.Error as exc:
        held = "commas" if plan.delimiter == "," else repr(plan.delimiter)
        return Rejected(
            line, raw, Reason.BAD_FIELD.value, f"line is not valid CSV ({exc}); expected fields quoted with '\"' when they hold {held}"
        )
    if len(fields) != plan.width:
        return Rejected(
            line,
            raw,
            Reason.BAD_FIELD.value,
            f"line has {len(fields)} fields; expected {plan.width} for format {plan.mapping.name!r} ({plan.mapping.summary})",
        )
    cells = {name: fields[i].strip() for name, i in plan.positions}
    for name in plan.absent:
        cells[name] = ""
    return _join(cells, plan.joins)


def _join(cells: dict[str, str], joins: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, str]:
    """``cells`` with each time read from several columns added under its joined name (empty when a part is)."""
    for name, parts in joins:  # a date and a time in two columns: one text, empty when a part is
        texts = [cells[c] for c in parts]
        cells[name] = " ".join(texts) if all(texts) else ""
    return cells


def _line_cells(plan: _Plan, lines: Iterator[bytes], start: int) -> Iterator[tuple[int, bytes, dict[str, str] | Rejected]]:
    """Each non-blank line's number, bytes (no line ending) and cells (or why they cannot be read)."""
    for line, raw_line in enumerate(lines, start):
        raw = raw_line.rstrip(b"\r\n")
        if raw.strip():
            yield line, raw, _cells(plan, line, raw)


def parse_lines(
    lines: Iterable[bytes],
    fmt: str | Mapping = "auto",
    *,
    origin: str = "<lines>",
    timezone: str | None = None,
    status_tolerance: float | None = None,
) -> Iterator[Row | Rejected]:
    """Turn CSV lines (bytes, with or without line endings) into rows, in order.

    ``fmt`` is ``"auto"``, a built-in format's name or a :class:`streams.ingest.mapping.Mapping`.
    The first line is the header when the format has one, and line numbers
    count from 1 at the first line given. Blank lines are skipped and yield
    nothing. ``timezone`` (an IANA name) is the zone of times written without
    an offset, over the mapping's; ``status_tolerance`` (seconds) over the
    mapping's ``status_tolerance_s``. The first line is read at the call,
    which raises :class:`UnknownFormat` when ``fmt`` is ``"auto"`` and that
    line fits no format, when ``fmt`` is not a known name, or when the header
    lacks a column the format needs, and :class:`streams.ingest.mapping.MappingError`
    for a ``timezone`` that is not an IANA zone; ``origin`` names the input in
    those messages. The rest is read as the returned iterator advances (a
    unit-grain mapping reads it all before the first call comes out).

    >>> [r.reason for r in parse_lines([b"1.0,2.0,EMS: FALL,2016-01-15 12:61,T,A"])]
    ['impossible_timestamp']
    """
    it = iter(lines)
    first = next(it, None)
    plan = _plan(first, fmt, origin)
    engine = _Engine(plan.mapping, timezone, status_tolerance)
    if first is not None and not plan.mapping.header:
        lines_it, start = _chain_first(first, it), 1
    else:
        lines_it, start = it, 2
    items = _line_cells(plan, lines_it, start)
    if plan.mapping.grain == "unit":
        return _unit_rows(engine, items, origin)
    return _rows(engine, items, origin)


def _rows(
    engine: _Engine, items: Iterable[tuple[int, bytes, dict[str, str] | Rejected]], origin: str, level: int = logging.INFO
) -> Iterator[Row | Rejected]:
    """One row per item ``(line, raw, cells)``: the shared path of lines (:func:`parse_lines`) and records (:func:`parse_records`).

    The summary is logged at ``level`` (a poller reads a page a minute: DEBUG).
    """
    n_rows = n_rejected = 0
    for line, raw, cells in items:
        if isinstance(cells, Rejected):
            n_rejected += 1
            yield cells
            continue
        try:
            parts = engine.convert(cells)
        except _Reject as exc:
            n_rejected += 1
            yield Rejected(line, raw, exc.reason.value, exc.detail)
            continue
        call_id = parts.source_id or f"{engine.name}-{line}"
        if parts.statuses:
            kept, refused = engine.updates(call_id, parts.received_at, ((s, at, t, parts.unit) for s, at, t in parts.statuses))
        else:
            kept, refused = [], []
        item = engine.row(line, raw, parts, kept, refused)
        if isinstance(item, Rejected):
            n_rejected += 1
        else:
            n_rows += 1
        yield item
    logger.log(level, "read %s as %s: %d rows, %d rejected", origin, engine.name, n_rows, n_rejected)


class _Call:
    """A unit-grain call while its file is read: its first row, and its statuses across units."""

    __slots__ = ("line", "parts", "raw", "statuses")

    def __init__(self, line: int, raw: bytes, parts: _Parts) -> None:
        self.line, self.raw, self.parts = line, raw, parts
        self.statuses: list[tuple[StatusSpec, float, str, str | None]] = []


def _unit_rows(engine: _Engine, items: Iterable[tuple[int, bytes, dict[str, str] | Rejected]], origin: str) -> Iterator[Row | Rejected]:
    """Group one-row-per-unit items ``(line, raw, cells)`` by call id; emit each call once, in the order of its first row.

    Memory: one :class:`_Call` per call id for the whole input (its first row
    and each unit's status times), and every rejected line, until the end.
    """
    order: list[_Call | Rejected] = []
    calls: dict[str, _Call] = {}
    for line, raw, cells in items:
        if isinstance(cells, Rejected):
            order.append(cells)
            continue
        try:
            parts = engine.convert(cells)
        except _Reject as exc:
            order.append(Rejected(line, raw, exc.reason.value, exc.detail))
            continue
        key = parts.source_id or f"{engine.name}-{line}"
        call = calls.get(key)
        if call is None:
            call = _Call(line, raw, parts)
            calls[key] = call
            order.append(call)
        call.statuses.extend((s, at, text, parts.unit) for s, at, text in parts.statuses)
    n_rows = n_rejected = 0
    for entry in order:
        if isinstance(entry, Rejected):
            n_rejected += 1
            yield entry
            continue
        parts = entry.parts
        call_id = parts.source_id or f"{engine.name}-{entry.line}"
        kept, refused = engine.updates(call_id, parts.received_at, entry.statuses)
        item = engine.row(entry.line, entry.raw, parts, _first_and_last(kept), refused)
        if isinstance(item, Rejected):
            n_rejected += 1
        else:
            n_rows += 1
        yield item
    logger.info("read %s as %s (one row per unit): %d calls, %d rows rejected", origin, engine.name, n_rows, n_rejected)


def _first_and_last(updates: list[tuple[Status, float, str | None]]) -> list[tuple[Status, float, str | None]]:
    """Across a call's units: the first dispatched, en route and on scene, the last closed, in lifecycle order.

    >>> D, C = Status.DISPATCHED, Status.CLOSED
    >>> _first_and_last([(D, 5.0, "E1"), (C, 9.0, "E1"), (D, 3.0, "M2"), (C, 12.0, "M2")])
    [(<Status.DISPATCHED: 'dispatched'>, 3.0, 'M2'), (<Status.CLOSED: 'closed'>, 12.0, 'M2')]
    """
    best: dict[Status, tuple[Status, float, str | None]] = {}
    for update in updates:
        status, at, _ = update
        held = best.get(status)
        if held is None or (at > held[1] if status is Status.CLOSED else at < held[1]):
            best[status] = update
    return [best[s] for s in Status if s in best]


def _chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first.removeprefix(b"\xef\xbb\xbf")
    yield from rest


# --------------------------------------------------------------------------- records (an API's rows, as dicts)


def cell_text(value: object) -> str:
    """The cell text of one value of a record read from a JSON API (a Socrata SODA row), as a CSV cell would hold it.

    The rules, so that a mapping reads an API's records as it reads the same
    data exported as CSV:

    - ``None`` (SODA leaves a null column out of the row; the same) is ``""``, unknown;
    - a string is itself, stripped of surrounding space;
    - ``True``/``False`` are ``"true"``/``"false"`` (SODA's checkbox type, as its CSV export writes it);
    - an integer is its decimal text, a float its shortest ``repr`` (``47.6``); NaN and infinities are ``""``;
    - a point, GeoJSON ``{"type": "Point", "coordinates": [lng, lat]}`` or SODA's legacy location
      ``{"latitude": "47.6", "longitude": "-122.3", ...}``, is WKT ``POINT (lng lat)``: the form
      ``[fields.location] form = "point"`` reads (a point without coordinates is ``""``);
    - a URL ``{"url": ...}`` is the URL;
    - any other object or list is its compact JSON with sorted keys, for ``extract`` to search.

    >>> cell_text({"type": "Point", "coordinates": [-122.3321, 47.6062]})
    'POINT (-122.3321 47.6062)'
    >>> cell_text({"latitude": "47.6062", "longitude": "-122.3321", "human_address": "{}"})
    'POINT (-122.3321 47.6062)'
    >>> cell_text(None), cell_text(" Aid Response "), cell_text(3), cell_text(47.25), cell_text(True), cell_text(float("nan"))
    ('', 'Aid Response', '3', '47.25', 'true', '')
    >>> cell_text({"b": 1, "a": [2]})
    '{"a":[2],"b":1}'
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, dict):
        point = _point_text(value)
        if point is not None:
            return point
        url = value.get("url")
        if isinstance(url, str) and set(value) <= {"url", "description"}:
            return url.strip()
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _point_text(value: dict[Any, Any]) -> str | None:
    """WKT for a GeoJSON point or a legacy SODA location; ``""`` for one without coordinates; ``None`` for anything else."""
    if value.get("type") == "Point" and "coordinates" in value:
        coords = value["coordinates"]
        if isinstance(coords, list) and len(coords) >= 2:
            return f"POINT ({cell_text(coords[0])} {cell_text(coords[1])})"
        return ""
    if "latitude" in value and "longitude" in value:
        lat, lng = cell_text(value["latitude"]), cell_text(value["longitude"])
        return f"POINT ({lng} {lat})" if lat and lng else ""
    return None


def record_cells(mapping: Mapping, record: AbstractMapping[str, object]) -> dict[str, str]:
    """The cells ``mapping`` reads from one record: each column it names as :func:`cell_text`, ``""`` where the record lacks it.

    >>> m = FORMATS["watchfloor"]
    >>> record_cells(m, {"id": 7, "lat": 47.6, "received_at": "2024-01-01T00:05:00Z", "extra": "never copied"})["lat"]
    '47.6'
    """
    cells = {name: cell_text(record.get(name)) for name in mapping.reads()}
    return _join(cells, mapping.joins)


def parse_records(
    records: Iterable[AbstractMapping[str, object]],
    fmt: str | Mapping,
    *,
    origin: str = "<records>",
    timezone: str | None = None,
    status_tolerance: float | None = None,
    start: int = 1,
) -> Iterator[Row | Rejected]:
    """Turn records (dicts of column name to value, as a JSON API such as Socrata's SODA returns rows) into rows, in order.

    The records go through the same engine as :func:`parse_lines`: the mapping's columns are
    looked up by name (``[layout]`` is not used: a record has no header, line width or
    delimiter), each value becomes text by :func:`cell_text`, and a column the record lacks
    reads as empty. :attr:`Row.line` (and :attr:`Rejected.line`) numbers the records from
    ``start``; :attr:`Row.raw` is the record as compact JSON.

    A record must carry its id: re-reading a record (a poller re-reads from its checkpoint) is
    recognised by it. The mapping must name ``fields.id`` (:class:`streams.ingest.mapping.MappingError`
    otherwise, at the call), and a record whose id is empty is rejected (``missing_field``) rather
    than given a made-up ``"{name}-{line}"``. ``fmt``, ``timezone``, ``status_tolerance``: as in
    :func:`parse_lines` (``"auto"`` is refused: a record has no header to detect a format from).
    A unit-grain mapping groups the records of one call given in one call of this function.

    >>> rows = parse_records([
    ...     {"incident_number": "F240001", "type": "Aid Response", "datetime": "2024-01-01T00:05:00.000",
    ...      "latitude": "47.6062", "longitude": "-122.3321", "address": "never copied"},
    ...     {"type": "Aid Response", "datetime": "2024-01-01T00:06:00.000"},
    ... ], "seattle-fire-soda")
    >>> row, bad = rows
    >>> row.call["id"], row.call["received_at"], row.call["category"], row.call["lat"], "address" in row.call
    ('F240001', '2024-01-01T08:05:00Z', 'EMS', 47.6062, False)
    >>> bad.line, bad.reason, bad.detail
    (2, 'missing_field', "column 'incident_number' is empty; a record needs its id, which tells a re-read record from a new one")
    """
    if fmt == "auto":
        raise UnknownFormat("records have no header to detect a format from; name the format or pass a mapping")
    mapping = _resolve(None, fmt, origin)
    id_spec = mapping.fields.get("id")
    if id_spec is None or id_spec.column is None:
        raise MappingError(
            f"{mapping.origin}: fields.id is missing; records are recognised by their id when read again, "
            'so a mapping for records must name the id column (e.g. id = "incident_number")'
        )
    engine = _Engine(mapping, timezone, status_tolerance)
    items = _record_items(mapping, id_spec.column, records, start)
    if mapping.grain == "unit":
        return _unit_rows(engine, items, origin)
    return _rows(engine, items, origin, logging.DEBUG)


def _record_items(
    mapping: Mapping, id_column: str, records: Iterable[AbstractMapping[str, object]], start: int
) -> Iterator[tuple[int, bytes, dict[str, str] | Rejected]]:
    """Each record's number, JSON and cells (or its rejection for an empty id)."""
    for line, record in enumerate(records, start):
        raw = json.dumps(record, separators=(",", ":"), default=str).encode()
        cells = record_cells(mapping, record)
        if not cells[id_column]:
            why = f"column {id_column!r} is empty; a record needs its id, which tells a re-read record from a new one"
            yield line, raw, Rejected(line, raw, Reason.MISSING_FIELD.value, why)
        else:
            yield line, raw, cells


# --------------------------------------------------------------------------- files


def _first_line(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.readline()


def detect_format(path: str | os.PathLike[str]) -> str:
    """The name of the built-in format of the CSV file at ``path``, from its first line.

    Raises :class:`UnknownFormat` naming the formats it knows and the line it
    saw when none fits (also for an empty file).
    """
    return _detect(_first_line(path), os.fspath(path)).name


def read_source(
    path: str | os.PathLike[str],
    fmt: str | Mapping = "auto",
    *,
    timezone: str | None = None,
    status_tolerance: float | None = None,
) -> Iterator[Row | Rejected]:
    """Read the CSV file at ``path`` line by line: one :class:`Row` or :class:`Rejected` per data line, in file order.

    ``fmt``, ``timezone`` and ``status_tolerance`` as in :func:`parse_lines`.
    The format and the header are checked before this returns, so a wrong
    file raises :class:`UnknownFormat` at the call; the returned iterator
    opens the file when first advanced and holds one line in memory at a time
    (a unit-grain mapping: one small record per call, see
    :mod:`streams.ingest.mapping`).
    """
    origin = os.fspath(path)
    plan = _plan(_first_line(path), fmt, origin)
    _Engine(plan.mapping, timezone, status_tolerance)  # a bad zone or tolerance raises here, at the call
    return _read_file(path, plan.mapping, origin, timezone, status_tolerance)


def _read_file(
    path: str | os.PathLike[str], mapping: Mapping, origin: str, timezone: str | None, status_tolerance: float | None
) -> Iterator[Row | Rejected]:
    with open(path, "rb") as f:
        yield from parse_lines(f, mapping, origin=origin, timezone=timezone, status_tolerance=status_tolerance)


def count_rows(path: str | os.PathLike[str], fmt: str | Mapping = "auto") -> int:
    """The number of data lines in the file (non-blank lines after the header, if any), for a progress bar.

    Equals the number of items :func:`read_source` yields for a call-grain
    format (a unit-grain one yields one item per call: fewer); raises
    :class:`UnknownFormat` in the same cases.
    """
    origin = os.fspath(path)
    with open(path, "rb") as f:
        first = f.readline()
        plan = _plan(first, fmt, origin)
        n = 0 if plan.mapping.header or not first.strip() else 1
        return n + sum(1 for line in f if line.strip())
