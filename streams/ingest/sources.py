"""Source adapters: read a 911 CSV export and turn each row into schema-v1 events.

Pure: no Kafka, Redis or network. :func:`read_source` streams a file line by
line and yields, in file order, one :class:`Row` (a ``call`` JSON object plus
the ``update`` objects derived from the row's status times) or one
:class:`Rejected` (the line's bytes and a :class:`streams.ingest.schema.Reason` value)
for every non-blank data line. :func:`parse_lines` does the same for lines
already in memory and is what the examples below use.

What an adapter rejects and what it passes on
---------------------------------------------
An adapter rejects only what it has to interpret: a line that is not UTF-8 or
not CSV, or has the wrong number of fields (``bad_field``); a received or
status time that is empty (``missing_field``) or cannot be read
(``impossible_timestamp``); a watchfloor priority that is not 1..5
(``bad_field``). Everything else is passed on for the worker's validator to
judge, so that the dead-letter path stays in one place: a missing, empty or
non-numeric coordinate becomes ``None`` (a ``0`` stays ``0.0``), an empty
call type or agency becomes ``None``.

Data minimization: the call dict holds only schema fields. Free-text
addresses, townships, ZIP codes, ``desc`` narratives and any column not named
below are never copied; Montgomery's ``desc`` is only searched for its time.

Call ids come from the source's id column (Seattle ``Incident Number``,
watchfloor ``id``); a row without one gets ``"{format}-{line}"`` (for example
``"montgomery-pa-2"``). A repeated source id is kept as it is (Seattle repeats
ids, mostly on identical rows): the worker counts the first call with an id
and sends the others to the dead-letter topic as ``duplicate_id``, so a
repeated row is neither counted twice nor dropped silently. ``source`` is the format name; ``priority`` is ``None``
except in the watchfloor format. Times are emitted as ISO 8601 UTC with ``Z``
(:func:`streams.ingest.schema.format_time`); :attr:`Row.event_time` is the received
time in epoch seconds, for sorting a replay.

Local times (both Montgomery files, Cincinnati) are in ``America/New_York``.
A wall time that the daylight-saving change skips does not exist and is
rejected; one that occurs twice (the autumn change) is read as the first,
daylight-time, occurrence. An ISO time with hour 24 means hour 0 of the next
day (Seattle writes ``2011-10-24T24:22:00+0000`` for 2011-10-25T00:22:00Z).

Formats
-------
The keys of :data:`FORMATS`; :func:`detect_format` picks one from the first
line (a header must hold the columns the format reads; extra ones are ignored).
Blank lines are skipped everywhere.

``montgomery-pa``
    Montgomery County PA, header ``lat,lng,desc,zip,title,timeStamp,twp,addr,e``.
    ``title`` ``"Traffic: VEHICLE ACCIDENT -"`` gives the category (via
    :func:`streams.ingest.schema.normalize_category`) and the call type (the text after
    the colon, without the trailing ``" -"``). ``desc`` embeds an earlier time
    (``2015-12-10 @ 17:10:52``, median 211 s before ``timeStamp``); the export
    does not document it, we read it as the call's creation and ``timeStamp`` as
    its dispatch: ``received_at`` is the ``desc`` time, and one ``dispatched``
    update at ``timeStamp`` follows when ``timeStamp`` is not earlier. When
    ``desc`` holds no valid time, ``received_at`` is ``timeStamp`` and there is
    no update. Agency ``montgomery-pa``.
``montgomery-pa-sample``
    The same county's sample export, no header, six columns: latitude,
    longitude, title, local time ``YYYY-MM-DD hh:mm``, township, address.
    Recognized by the shape of its first line. No updates.
``cincinnati-fire``
    Cincinnati Fire CAD, header
    ``latitude,longitude,create_time_incident,incident_type_id,datetime``.
    ``create_time_incident`` (local, ISO with milliseconds) is ``received_at``;
    the dispatch code in ``incident_type_id`` (``SICK - 26A8 PAIN``) is the call
    type and is normalized to a category. No updates. Agency ``cincinnati-fd``.
``seattle-fire``
    Seattle Fire 911, header
    ``Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number``.
    ``Datetime`` is ``MM/DD/YYYY hh:mm:ss AM +0000`` or ISO with an offset (hour
    24 allowed); the stated offset is honoured. ``Incident Number`` is the id.
    Rows without coordinates (``Report Location`` ``(0, 0)``) come out with
    ``lat``/``lng`` ``None``. No updates. Agency ``seattle-fd``.
``watchfloor``
    The project's own format, for users' exports and the simulator; see below.

The watchfloor CSV format
-------------------------
UTF-8, comma-separated, fields containing commas or quotes quoted with ``"``
(RFC 4180, one record per line), and this header::

    id,received_at,category,call_type,priority,lat,lng,agency,dispatched_at,en_route_at,on_scene_at,closed_at,unit

- ``id``: the call id, unique in the file, at most 64 characters; empty gives
  ``watchfloor-{line}``. A repeated id is passed on as it is: the worker
  counts the first and refuses the others as ``duplicate_id``.
- ``received_at``: when the call was received, ISO 8601 with a UTC offset or
  ``Z`` (``2016-01-23T16:02:11Z``, ``2016-01-23 11:02:11-05:00``; fractions
  of a second allowed; hour 24 is hour 0 of the next day).
- ``category``: any text, normalized to EMS, FIRE, TRAFFIC, POLICE or OTHER;
  empty: normalized from ``call_type``.
- ``call_type``: the agency's own call type (``VEHICLE ACCIDENT``).
- ``priority``: an integer 1 (highest) to 5, or empty.
- ``lat``, ``lng``: WGS 84 decimal degrees.
- ``agency``: the agency's short name (``montgomery-pa``).
- ``dispatched_at``, ``en_route_at``, ``on_scene_at``, ``closed_at``: optional
  status times, in the same form as ``received_at`` and not before it; each
  non-empty one becomes an update with status ``dispatched``, ``en_route``,
  ``on_scene`` or ``closed``.
- ``unit``: the unit named on those updates, or empty.

An empty cell means unknown. Columns may come in any order; extra columns are
ignored and never copied.

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
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from streams.ingest.schema import SCHEMA_VERSION, Category, Reason, Status, format_time, normalize_category

logger = logging.getLogger(__name__)

#: Time zone of the sources that write local wall times (Montgomery PA, Cincinnati).
EASTERN = ZoneInfo("America/New_York")

WATCHFLOOR_COLUMNS = (
    "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency",
    "dispatched_at", "en_route_at", "on_scene_at", "closed_at", "unit",
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One data line turned into events.

    ``line`` is the 1-based physical line number (the header is line 1);
    ``raw`` the line's bytes without its line ending; ``event_time`` the
    received time in epoch seconds (UTC); ``call`` a schema-v1 call object and
    ``updates`` schema-v1 update objects, all ready for ``json.dumps``.
    """

    line: int
    raw: bytes
    event_time: float
    call: dict[str, Any]
    updates: tuple[dict[str, Any], ...]


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
    """Raised by a row converter; becomes a :class:`Rejected`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Parts(NamedTuple):
    """What a converter reads from one row; :func:`parse_lines` builds the JSON."""

    received_at: float
    category: Category
    call_type: str | None
    priority: int | None
    lat: float | None
    lng: float | None
    agency: str | None
    source_id: str | None = None
    updates: tuple[tuple[Status, float, str | None], ...] = ()


@dataclass(frozen=True)
class Adapter:
    """How to read one CSV layout.

    ``columns`` are the column names the layout documents (for a headerless
    layout, the names given to its positions); ``required`` those a header must
    contain for :func:`detect_format` to pick this layout. ``convert`` maps a
    row's stripped cells by column name (absent optional columns read as ``""``)
    to the call's parts; it raises ``_Reject`` for what it cannot read.
    """

    name: str
    columns: tuple[str, ...]
    required: frozenset[str]
    has_header: bool
    has_ids: bool
    summary: str
    convert: Callable[[Mapping[str, str]], _Parts]


# --------------------------------------------------------------------------- cells


def _coord(text: str) -> float | None:
    """A coordinate as written, or ``None`` when empty, not a number or not finite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _text(text: str) -> str | None:
    return text or None


_HOUR_24 = re.compile(r"(\d{4}-\d{2}-\d{2}[T ])24(?=:)")


def _fromiso(text: str) -> datetime:
    """``datetime.fromisoformat`` that also reads hour 24 as hour 0 of the next day."""
    m = _HOUR_24.match(text)
    if m is None:
        return datetime.fromisoformat(text)
    return datetime.fromisoformat(f"{m.group(1)}00{text[m.end() :]}") + timedelta(days=1)


def _required(cells: Mapping[str, str], column: str, expected: str) -> str:
    text = cells.get(column, "")
    if not text:
        raise _Reject(Reason.MISSING_FIELD, f"column {column!r} is empty; expected {expected}")
    return text


def _eastern(naive: datetime) -> float | None:
    """Epoch seconds of a New York wall time, or ``None`` if that wall time does not exist."""
    offset = _eastern_offset(naive.year, naive.month, naive.day, naive.hour)
    if offset is None:
        return None
    return (naive - _EPOCH).total_seconds() - offset


_EPOCH = datetime(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def _eastern_offset(year: int, month: int, day: int, hour: int) -> float | None:
    """UTC offset in seconds of a New York wall-clock hour, or ``None`` for the hour the spring change skips.

    New York changes its offset only on whole hours, so one offset holds for a
    wall hour; an hour that occurs twice gets the first (daylight) offset.
    Cached because a file's rows share a few thousand hours.
    """
    naive = datetime(year, month, day, hour)
    aware = naive.replace(tzinfo=EASTERN)
    # A wall time in the spring-forward gap does not survive the round trip.
    if datetime.fromtimestamp(aware.timestamp(), EASTERN).replace(tzinfo=None) != naive:
        return None
    return (naive - _EPOCH).total_seconds() - aware.timestamp()


_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")


def _local_time(cells: Mapping[str, str], column: str, expected: str) -> float:
    """Read a New York wall time such as ``2015-12-10 17:40:00``."""
    what = f"a local time {expected} (America/New_York)"
    text = _required(cells, column, what)
    if not _LOCAL_TIME.fullmatch(text):
        raise _Reject(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}; expected {what}")
    try:
        naive = _fromiso(text)
    except (ValueError, OverflowError) as exc:
        raise _Reject(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}, not a real time ({exc}); expected {what}") from None
    ts = _eastern(naive)
    if ts is None:
        raise _Reject(
            Reason.IMPOSSIBLE_TIMESTAMP,
            f"column {column!r} is {text!r}, a wall time skipped by the daylight-saving change in America/New_York",
        )
    return ts


_OFFSET_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)")
_US_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ([AaPp][Mm]) ([+-])(\d{2}):?(\d{2})")
_OFFSET_EXPECTED = "an ISO 8601 time with a UTC offset such as 2016-01-23T16:02:11Z or 2016-01-23T11:02:11-05:00"


def _offset_time(cells: Mapping[str, str], column: str, *, us_form: bool = False) -> float:
    """Read a time that states its UTC offset (ISO 8601; with ``us_form`` also ``MM/DD/YYYY hh:mm:ss AM +0000``)."""
    expected = _OFFSET_EXPECTED + (" or MM/DD/YYYY hh:mm:ss AM +0000" if us_form else "")
    text = _required(cells, column, expected)
    try:
        m = _US_TIME.fullmatch(text) if us_form else None
        if m is not None:
            month, day, year, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
            if not 1 <= hour <= 12:
                raise ValueError(f"hour {hour} is not on a 12-hour clock")
            hour = hour % 12 + (12 if m.group(7).upper() == "PM" else 0)
            offset = timedelta(hours=int(m.group(9)), minutes=int(m.group(10))) * (-1 if m.group(8) == "-" else 1)
            dt = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        elif _OFFSET_TIME.fullmatch(text):
            dt = _fromiso(text)
        else:
            raise _Reject(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}; expected {expected}")
        return dt.timestamp()
    except (ValueError, OverflowError) as exc:
        raise _Reject(
            Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}, not a real time ({exc}); expected {expected}"
        ) from None


@functools.lru_cache(maxsize=4096)
def _category(text: str) -> Category:
    """:func:`streams.ingest.schema.normalize_category`, cached: a source has a few hundred call types."""
    return normalize_category(text)


@functools.lru_cache(maxsize=4096)
def _title(title: str) -> tuple[Category, str | None]:
    """Montgomery ``"Traffic: VEHICLE ACCIDENT -"`` to (TRAFFIC, ``"VEHICLE ACCIDENT"``)."""
    _, colon, rest = title.partition(":")
    call_type = (rest if colon else title).strip()
    if call_type.endswith(" -") or call_type == "-":
        call_type = call_type[:-1].rstrip()
    return _category(title), call_type or None


# --------------------------------------------------------------------------- converters

# Montgomery's desc ends "...; Station 332; 2015-12-10 @ 17:10:52;".
_DESC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) @ (\d{2}:\d{2}:\d{2})")


def _desc_time(desc: str) -> float | None:
    """The last ``YYYY-MM-DD @ hh:mm:ss`` in Montgomery's ``desc``, or ``None``."""
    found = _DESC_TIME.findall(desc)
    if not found:
        return None
    date, clock = found[-1]
    try:
        return _eastern(datetime.fromisoformat(f"{date} {clock}"))
    except ValueError:
        return None


def _montgomery(cells: Mapping[str, str]) -> _Parts:
    stamp = _local_time(cells, "timeStamp", "YYYY-MM-DD hh:mm:ss")
    created = _desc_time(cells["desc"])
    updates: tuple[tuple[Status, float, str | None], ...]
    if created is None:
        received, updates = stamp, ()
    else:
        received = created
        updates = ((Status.DISPATCHED, stamp, None),) if stamp >= created else ()
    category, call_type = _title(cells["title"])
    return _Parts(received, category, call_type, None, _coord(cells["lat"]), _coord(cells["lng"]), "montgomery-pa", updates=updates)


def _montgomery_sample(cells: Mapping[str, str]) -> _Parts:
    received = _local_time(cells, "timestamp", "YYYY-MM-DD hh:mm")
    category, call_type = _title(cells["title"])
    return _Parts(received, category, call_type, None, _coord(cells["lat"]), _coord(cells["lng"]), "montgomery-pa")


def _cincinnati(cells: Mapping[str, str]) -> _Parts:
    received = _local_time(cells, "create_time_incident", "YYYY-MM-DDThh:mm:ss.sss")
    code = cells["incident_type_id"]
    return _Parts(received, _category(code), _text(code), None, _coord(cells["latitude"]), _coord(cells["longitude"]), "cincinnati-fd")


def _seattle(cells: Mapping[str, str]) -> _Parts:
    received = _offset_time(cells, "Datetime", us_form=True)
    kind = cells["Type"]
    return _Parts(
        received,
        _category(kind),
        _text(kind),
        None,
        _coord(cells["Latitude"]),
        _coord(cells["Longitude"]),
        "seattle-fd",
        source_id=_text(cells.get("Incident Number", "")),
    )


_STATUS_COLUMNS = (
    ("dispatched_at", Status.DISPATCHED),
    ("en_route_at", Status.EN_ROUTE),
    ("on_scene_at", Status.ON_SCENE),
    ("closed_at", Status.CLOSED),
)


def _watchfloor(cells: Mapping[str, str]) -> _Parts:
    received = _offset_time(cells, "received_at")
    priority_text = cells["priority"]
    priority = None
    if priority_text:
        if priority_text not in ("1", "2", "3", "4", "5"):
            raise _Reject(Reason.BAD_FIELD, f"column 'priority' is {priority_text!r:.60}; expected an integer 1 (highest) to 5, or empty")
        priority = int(priority_text)
    unit = _text(cells["unit"])
    updates = []
    for column, status in _STATUS_COLUMNS:
        if not cells[column]:
            continue
        at = _offset_time(cells, column)
        if at < received:
            raise _Reject(
                Reason.IMPOSSIBLE_TIMESTAMP,
                f"column {column!r} is {cells[column]!r}, before received_at {cells['received_at']!r}; "
                "expected a status time at or after the call was received",
            )
        updates.append((status, at, unit))
    call_type = cells["call_type"]
    return _Parts(
        received,
        _category(cells["category"] or call_type),
        _text(call_type),
        priority,
        _coord(cells["lat"]),
        _coord(cells["lng"]),
        _text(cells["agency"]),
        source_id=_text(cells["id"]),
        updates=tuple(updates),
    )


FORMATS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter(
            name="montgomery-pa",
            columns=("lat", "lng", "desc", "zip", "title", "timeStamp", "twp", "addr", "e"),
            required=frozenset({"lat", "lng", "desc", "title", "timeStamp"}),
            has_header=True,
            has_ids=False,
            summary="header lat,lng,desc,zip,title,timeStamp,twp,addr,e",
            convert=_montgomery,
        ),
        Adapter(
            name="montgomery-pa-sample",
            columns=("lat", "lng", "title", "timestamp", "township", "address"),
            required=frozenset(),
            has_header=False,
            has_ids=False,
            summary="no header; 6 columns: lat,lng,title,'YYYY-MM-DD hh:mm',township,address",
            convert=_montgomery_sample,
        ),
        Adapter(
            name="cincinnati-fire",
            columns=("latitude", "longitude", "create_time_incident", "incident_type_id", "datetime"),
            required=frozenset({"latitude", "longitude", "create_time_incident", "incident_type_id"}),
            has_header=True,
            has_ids=False,
            summary="header latitude,longitude,create_time_incident,incident_type_id,datetime",
            convert=_cincinnati,
        ),
        Adapter(
            name="seattle-fire",
            columns=("Address", "Type", "Datetime", "Latitude", "Longitude", "Report Location", "Incident Number"),
            required=frozenset({"Type", "Datetime", "Latitude", "Longitude"}),
            has_header=True,
            has_ids=True,
            summary="header Address,Type,Datetime,Latitude,Longitude,Report Location,Incident Number",
            convert=_seattle,
        ),
        Adapter(
            name="watchfloor",
            columns=WATCHFLOOR_COLUMNS,
            required=frozenset(WATCHFLOOR_COLUMNS),
            has_header=True,
            has_ids=True,
            summary="header " + ",".join(WATCHFLOOR_COLUMNS),
            convert=_watchfloor,
        ),
    )
}


# --------------------------------------------------------------------------- layout of a file


class _Plan(NamedTuple):
    adapter: Adapter
    width: int  # fields per data line
    positions: tuple[tuple[str, int], ...]  # (column, index) for the columns the adapter reads


def _first_fields(first: bytes, origin: str) -> list[str]:
    text = first.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    try:
        return [f.strip() for f in next(csv.reader((text.decode("utf-8"),), strict=True), [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UnknownFormat(f"{origin}: the first line is not UTF-8 CSV ({exc}); expected a header line or a first data row") from None


_SAMPLE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def _looks_like_sample(fields: list[str]) -> bool:
    return len(fields) == 6 and _coord(fields[0]) is not None and _coord(fields[1]) is not None and bool(_SAMPLE_TIME.fullmatch(fields[3]))


def _known_formats() -> str:
    return "; ".join(f"{a.name} ({a.summary})" for a in FORMATS.values())


def _detect(first: bytes, origin: str) -> str:
    fields = _first_fields(first, origin)
    names = set(fields)
    matches = [a.name for a in FORMATS.values() if a.has_header and a.required <= names]
    if len(matches) == 1:
        return matches[0]
    if not matches and _looks_like_sample(fields):
        return "montgomery-pa-sample"
    found = "an empty file" if not first.strip() else f"the first line {','.join(fields)!r:.300}"
    raise UnknownFormat(
        f"{origin}: cannot tell the source format from {found}. Known formats: {_known_formats()}. "
        "Pass the format name explicitly, or convert the file to the watchfloor format."
    )


def _plan(first: bytes | None, fmt: str, origin: str) -> _Plan:
    """Choose the adapter and, for a header, where its columns are."""
    if fmt == "auto":
        fmt = _detect(first or b"", origin)
    adapter = FORMATS.get(fmt)
    if adapter is None:
        raise UnknownFormat(f"unknown source format {fmt!r}; expected 'auto' or one of: {', '.join(FORMATS)}")
    if not adapter.has_header:
        return _Plan(adapter, len(adapter.columns), tuple((c, i) for i, c in enumerate(adapter.columns)))
    fields = _first_fields(first or b"", origin)
    missing = sorted(adapter.required - set(fields))
    if missing:
        raise UnknownFormat(
            f"{origin}: the header {','.join(fields)!r:.300} lacks the columns {', '.join(missing)} "
            f"that format {fmt!r} needs; expected {adapter.summary}"
        )
    index = {name: i for i, name in enumerate(fields)}
    return _Plan(adapter, len(fields), tuple((c, index[c]) for c in adapter.columns if c in index))


# --------------------------------------------------------------------------- rows


def _convert_line(plan: _Plan, line: int, raw: bytes) -> _Parts | Rejected:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(line, raw, Reason.BAD_FIELD.value, f"line is not valid UTF-8 (byte {exc.start}); expected UTF-8 text")
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as exc:
        return Rejected(
            line, raw, Reason.BAD_FIELD.value, f"line is not valid CSV ({exc}); expected fields quoted with '\"' when they hold commas"
        )
    if len(fields) != plan.width:
        return Rejected(
            line,
            raw,
            Reason.BAD_FIELD.value,
            f"line has {len(fields)} fields; expected {plan.width} for format {plan.adapter.name!r} ({plan.adapter.summary})",
        )
    cells = {name: fields[i].strip() for name, i in plan.positions}
    try:
        return plan.adapter.convert(cells)
    except _Reject as exc:
        return Rejected(line, raw, exc.reason.value, exc.detail)


def parse_lines(lines: Iterable[bytes], fmt: str = "auto", *, origin: str = "<lines>") -> Iterator[Row | Rejected]:
    """Turn CSV lines (bytes, with or without line endings) into rows, in order.

    The first line is the header when the format has one, and line numbers
    count from 1 at the first line given. Blank lines are skipped and yield
    nothing. The first line is read at the call, which raises
    :class:`UnknownFormat` when ``fmt`` is ``"auto"`` and that line fits no
    format, when ``fmt`` is not a key of :data:`FORMATS`, or when the header
    lacks a column the format needs; ``origin`` names the input in those
    messages. The rest is read as the returned iterator advances.

    >>> [r.reason for r in parse_lines([b"1.0,2.0,EMS: FALL,2016-01-15 12:61,T,A"])]
    ['impossible_timestamp']
    """
    it = iter(lines)
    first = next(it, None)
    plan = _plan(first, fmt, origin)
    if first is not None and not plan.adapter.has_header:
        return _rows(plan, _chain_first(first, it), 1, origin)
    return _rows(plan, it, 2, origin)


def _rows(plan: _Plan, lines: Iterator[bytes], start: int, origin: str) -> Iterator[Row | Rejected]:
    name = plan.adapter.name
    n_rows = n_rejected = 0
    for line, raw_line in enumerate(lines, start):
        raw = raw_line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        parts = _convert_line(plan, line, raw)
        if isinstance(parts, Rejected):
            n_rejected += 1
            yield parts
            continue
        try:
            received_at = format_time(parts.received_at)
            update_times = [format_time(at) for _, at, _ in parts.updates]
        except (ValueError, OverflowError, OSError) as exc:
            n_rejected += 1
            yield Rejected(line, raw, Reason.IMPOSSIBLE_TIMESTAMP.value, f"a time on this line cannot be represented in UTC ({exc})")
            continue
        call_id = parts.source_id or f"{name}-{line}"
        call = {
            "type": "call", "v": SCHEMA_VERSION, "id": call_id, "received_at": received_at,
            "category": parts.category.value, "call_type": parts.call_type, "priority": parts.priority,
            "lat": parts.lat, "lng": parts.lng, "agency": parts.agency, "source": name,
        }  # fmt: skip
        updates = tuple(
            {"type": "update", "v": SCHEMA_VERSION, "call_id": call_id, "status": status.value, "at": at, "unit": unit, "source": name}
            for (status, _, unit), at in zip(parts.updates, update_times, strict=True)
        )
        n_rows += 1
        yield Row(line, raw, parts.received_at, call, updates)
    logger.info("read %s as %s: %d rows, %d rejected", origin, name, n_rows, n_rejected)


def _chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first.removeprefix(b"\xef\xbb\xbf")
    yield from rest


# --------------------------------------------------------------------------- files


def _first_line(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.readline()


def detect_format(path: str | os.PathLike[str]) -> str:
    """The name of the format of the CSV file at ``path``, from its first line.

    Raises :class:`UnknownFormat` naming the formats it knows and the line it
    saw when none fits (also for an empty file).
    """
    return _detect(_first_line(path), os.fspath(path))


def read_source(path: str | os.PathLike[str], fmt: str = "auto") -> Iterator[Row | Rejected]:
    """Read the CSV file at ``path`` line by line: one :class:`Row` or :class:`Rejected` per data line, in file order.

    The format (``fmt``, or detected when ``"auto"``) and the header are checked
    before this returns, so a wrong file raises :class:`UnknownFormat` at the
    call; the returned iterator opens the file when first advanced and holds
    one line in memory at a time ().
    """
    origin = os.fspath(path)
    plan = _plan(_first_line(path), fmt, origin)
    return _read(path, plan.adapter.name, origin)


def _read(path: str | os.PathLike[str], fmt: str, origin: str) -> Iterator[Row | Rejected]:
    with open(path, "rb") as f:
        yield from parse_lines(f, fmt, origin=origin)


def count_rows(path: str | os.PathLike[str], fmt: str = "auto") -> int:
    """The number of data lines in the file (non-blank lines after the header, if any), for a progress bar.

    Equals the number of items :func:`read_source` yields; raises
    :class:`UnknownFormat` in the same cases.
    """
    origin = os.fspath(path)
    with open(path, "rb") as f:
        first = f.readline()
        plan = _plan(first, fmt, origin)
        n = 0 if plan.adapter.has_header or not first.strip() else 1
        return n + sum(1 for line in f if line.strip())
