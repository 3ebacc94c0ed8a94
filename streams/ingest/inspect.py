"""Inspect a new 911 export: propose a mapping for it, and show what that mapping reads and rejects.

    python -m streams.ingest.inspect calls.csv
    python -m streams.ingest.inspect calls.csv --timezone America/Los_Angeles --write-mapping city.toml
    python -m streams.ingest.inspect calls.csv --mapping city.toml --all

It reads the header and a sample of data rows (``--sample``, default the first
2,000; streamed, so memory does not grow with the file) and prints:

1. **Columns**: the role each column would play (id, received time, call type,
   priority, coordinates, agency, unit, status times), found from the column's
   name and its values; the time format of every time column (the pattern of
   :data:`TIME_PATTERNS` that reads the most of the column's non-empty sample
   values, at least 90 %: a few broken cells do not hide the column, and the
   report names one it cannot read); whether those times are naive (no UTC
   offset: the mapping then needs a zone, UTC when the column names say GMT or
   UTC); the row grain (an id column repeated across rows with differing unit
   values, or, without a unit column, differing status times, means one row per
   responding unit, grouped by that id); the call types seen (top 30, with the category each gets under the
   default rules, OTHER flagged) and the priority values seen (letters and
   scales that need a priority map flagged).
2. **The proposed mapping** as TOML, validated with
   :func:`streams.ingest.mapping.parse_mapping` (``--write-mapping`` writes it).
   Times without an offset and no ``--timezone``: the proposal says so loudly and
   holds a placeholder zone that fails validation until it is replaced.
3. **What would be read and rejected**, by reason, with one example row per
   reason, through the real engine (:func:`streams.ingest.sources.parse_lines`).
   Columns that could identify callers (addresses, names, phone numbers,
   free-text narratives) are masked in the examples, and the output lists them:
   this output ends up in tickets and chat. ``--all`` reads the whole file for
   that summary (with a progress bar on stderr).

The analysis (:func:`profile` and :func:`propose`) is pure: rows in, a
:class:`Proposal` out. :func:`main` is the thin command line.

Examples
--------
>>> sample = Sample.from_lines([
...     b"Incident,Unit,Type,Received,Latitude,Longitude,Address",
...     b"I1,E1,Structure Fire,2022-01-21T13:43:00-08:00,37.77,-122.42,1 MAIN ST",
...     b"I1,T2,Structure Fire,2022-01-21T13:43:00-08:00,37.77,-122.42,1 MAIN ST",
...     b"I2,M5,Medical Incident,2022-01-21T14:02:10-08:00,37.71,-122.45,9 ELM ST",
... ])
>>> p = propose(sample, name="example")
>>> p.id_column, p.grain, p.unit, p.received.column, p.received.pattern, p.received.naive
('Incident', 'unit', 'Unit', 'Received', 'iso', False)
>>> p.lat, p.lng, p.call_type, sorted(p.masked)
('Latitude', 'Longitude', 'Type', ['Address'])
"""

from __future__ import annotations

import argparse
import csv
import functools
import itertools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from streams.ingest.mapping import (
    DEFAULT_PRIORITIES,
    Mapping,
    MappingError,
    builtin_mappings,
    joined_name,
    load_mapping,
    parse_mapping,
)
from streams.ingest.schema import Category, normalize_category
from streams.ingest.sources import Rejected, Row, UnknownFormat, detect_format, parse_lines, read_source
from streams.ingest.timeparse import TimeParseError, TimeReader

#: Data rows read by default.
DEFAULT_SAMPLE = 2000
#: Share of a column's non-empty sample values a time pattern must read to be chosen (the rest are rows to reject).
TIME_SHARE = 0.9
#: Call types listed.
TOP_TYPES = 30

#: Time patterns tried on every column, in order: ``iso`` is ISO 8601 (with or without offset, fractions of a
#: second, hour 24 as hour 0 of the next day); the others are :func:`datetime.strptime` patterns.
TIME_PATTERNS: tuple[str, ...] = (
    "iso",
    "%m/%d/%Y %I:%M:%S %p %z",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S%z",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
)

Grain = Literal["call", "unit"]
Status = Literal["dispatched", "en_route", "on_scene", "closed"]
STATUSES: tuple[Status, ...] = ("dispatched", "en_route", "on_scene", "closed")

# --------------------------------------------------------------------------- names


def words(name: str) -> str:
    """A column name as lower-case words: ``timeStamp`` -> ``time stamp``, ``Received DtTm`` -> ``received dttm``.

    >>> words("create_time_incident"), words("timeStamp"), words("Unit ID"), words("RowID")
    ('create time incident', 'time stamp', 'unit id', 'row id')
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(re.findall(r"[a-z0-9]+", spaced.lower()))


def _score(name: str, rules: Sequence[tuple[str, int]]) -> int:
    """The best score of the regex rules that match the column's words (0: none)."""
    w = words(name)
    return max((score for pattern, score in rules if re.search(pattern, w)), default=0)


_RECEIVED_NAMES = (
    (r"\breceived?\b|\breceipt\b", 10),
    (r"\bcreat(e|ed|ion)\b", 9),
    (r"\bcall (date )?time\b|\bcall dttm\b", 8),
    (r"\b(reported|opened|answered|start(ed)?)\b", 7),
    (r"\b(date ?time|dttm|time ?stamp|datetime)\b", 5),
    (r"\b(time|date)\b", 3),
)
_STATUS_NAMES: dict[Status, tuple[tuple[str, int], ...]] = {
    "dispatched": ((r"\bdispatch(ed)?\b|\bassign(ed)?\b", 10),),
    "en_route": ((r"\ben ?route\b|\brespon(se|ding)\b|\backnowledg", 10),),
    "on_scene": ((r"\bon ?scene\b|\barriv(al|ed|e)?\b|\bat ?scene\b", 10),),
    "closed": ((r"\bavailab|\bclos(e|ed|ing)\b|\bclear(ed)?\b|\bcomplet|\bin ?service\b", 10),),
}
#: Column names that say their naive times are UTC (LAFD's "Incident Creation Time (GMT)").
_UTC_NAMES = r"\b(gmt|utc|zulu)\b"
#: Time columns that are not one of the schema's statuses (said so in the report).
_NOT_STATUS = r"\b(transport|hospital|entry|watch|due|eta)\b"
_ID_NAMES = (
    (r"\bcall (number|no|num|id)\b", 10),
    (r"\bincident (number|no|num|id)\b", 9),
    (r"\b(event|cad|master incident|item|case|call key) (number|no|num|id)\b", 9),
    (r"^(id|call id|incident|event id)$", 8),
    (r"\b(incident|event|item)\b", 5),
    (r"\bid\b|\bnumber\b", 3),
)
_UNIT_NAMES = ((r"^(unit|unit id|unit name|unit number|apparatus|resource|vehicle|unit code)$", 10), (r"\bunit\b|unit$", 4))
_NOT_UNIT = r"\b(type|sequence|seq|count|als|status|group|time|date|dttm|datetime)\b"
_TYPE_NAMES = (
    (r"^(call type|incident type|type|nature|problem|call nature|title)$", 10),
    (r"\b(call type|incident type|nature|problem|title)\b", 8),
    (r"\btype\b", 5),
    (r"^(description|desc|call ?description|incident description|event description)$", 4),
)
_NOT_TYPE = r"\b(group|unit|code id|final|original)\b"
_CATEGORY_NAMES = ((r"^(category|call category|incident category)$", 10),)
_PRIORITY_NAMES = ((r"^priority$", 10), (r"\bpriority\b|\bprio\b|\bpri\b", 6))
_AGENCY_NAMES = ((r"^(agency|department|dept|agency code|jurisdiction)$", 10),)
_LAT_NAMES = ((r"^(lat|latitude|y)$", 10), (r"\b(lat|latitude)\b", 6))
_LNG_NAMES = ((r"^(lng|lon|long|longitude|x)$", 10), (r"\b(lng|lon|long|longitude)\b", 6))
#: Column names that can identify a caller or a home: masked in example rows.
_IDENTIFYING = re.compile(
    r"\b(addr|address|street|st(reet)? name|apt|apartment|unit number|cross|premise|business|name|caller|patient|"
    r"phone|tel|email|desc|description|narrative|comments?|notes?|remarks?|details?|text|location)\b"
)

# --------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class Sample:
    """A file's first line and its first data rows.

    ``names`` are the header's names, or ``column_1`` .. ``column_N`` when the
    file has no header; ``rows`` the stripped fields of the sampled data rows
    that have as many fields as the first line; ``lines`` the raw lines read
    (first line included), for the engine; ``bad_rows`` the sampled data lines
    that are not UTF-8 CSV or have another number of fields.
    """

    names: tuple[str, ...]
    has_header: bool
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[bytes, ...]
    bad_rows: int = 0
    delimiter: str = ","  # the character between fields (:func:`sniff_delimiter`)

    @classmethod
    def from_lines(cls, lines: Iterable[bytes], limit: int = DEFAULT_SAMPLE) -> Sample:
        """Read the first line and up to ``limit`` non-blank data lines (the iterator is not read further).

        >>> s = Sample.from_lines([b"40.1,-75.3,EMS: FALL,2016-01-15 12:01", b"", b"40.2,-75.4,Fire: ALARM,2016-01-15 12:09"])
        >>> s.has_header, s.names, len(s.rows)
        (False, ('column_1', 'column_2', 'column_3', 'column_4'), 2)
        >>> Sample.from_lines([b"id;received;type", b'C1;2021-01-01T00:00:00Z;"FIRE; SMOKE"']).rows
        (('C1', '2021-01-01T00:00:00Z', 'FIRE; SMOKE'),)
        """
        it = iter(lines)
        first = next(it, None)
        if first is None or not first.strip():
            raise InspectError("the file is empty; expected a CSV header or a first data row on line 1")
        first = first.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
        data = list(itertools.islice((r.rstrip(b"\r\n") for r in it if r.strip()), limit))
        delimiter = sniff_delimiter(first, data[:SNIFF_LINES])
        fields = _fields(first, delimiter)
        if fields is None:
            raise InspectError(f"line 1 is not UTF-8 CSV: {first[:120]!r}; expected a header such as 'id,received_at,lat,lng'")
        has_header = _looks_like_header(fields)
        names = tuple(fields) if has_header else tuple(f"column_{i}" for i in range(1, len(fields) + 1))
        if has_header and len(set(names)) != len(names):
            repeated = sorted(n for n, c in Counter(names).items() if c > 1)
            raise InspectError(f"the header names the columns {', '.join(map(repr, repeated))} twice; rename one of each")
        kept: list[bytes] = [first]
        rows: list[tuple[str, ...]] = [] if has_header else [tuple(fields)]
        bad = 0
        for raw in data[: limit - (0 if has_header else 1)]:
            kept.append(raw)
            row = _fields(raw, delimiter)
            if row is None or len(row) != len(names):
                bad += 1
            else:
                rows.append(tuple(row))
        return cls(names, has_header, tuple(rows), tuple(kept), bad, delimiter)


class InspectError(ValueError):
    """The file cannot be inspected (empty, not CSV); the message says what was found and what was expected."""


def _fields(raw: bytes, delimiter: str = ",") -> list[str] | None:
    try:
        return [f.strip() for f in next(csv.reader((raw.decode("utf-8"),), strict=True, delimiter=delimiter), [])]
    except (UnicodeDecodeError, csv.Error):
        return None


#: The characters a file's fields may be separated by, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
#: Data lines :func:`sniff_delimiter` checks the header's delimiter against.
SNIFF_LINES = 50


def sniff_delimiter(first: bytes, data: Sequence[bytes] = ()) -> str:
    r"""The one of :data:`DELIMITERS` that splits the first line into the most fields (at least two) and the data lines
    into as many, most of them (quotes respected: a ``;`` inside ``"..."`` does not count); ``","`` when none does.

    >>> sniff_delimiter(b"id;received;type"), sniff_delimiter(b"id\treceived\ttype"), sniff_delimiter(b"a|b"), sniff_delimiter(b"x")
    (';', '\t', '|', ',')
    >>> sniff_delimiter(b"id,type,note", [b'1,FIRE,"a; b; c"', b"2,EMS,x"])  # a ';' in quoted values is not a separator
    ','
    >>> sniff_delimiter(b"id;note", [b"1;Smith, J", b"2;x"])  # commas in the values, ';' in the header
    ';'
    """
    best, most = ",", 1
    for d in DELIMITERS:
        fields = _fields(first, d)
        if fields is None or len(fields) <= most:
            continue
        split = [_fields(line, d) for line in data]
        fitting = sum(f is not None and len(f) == len(fields) for f in split)
        if fitting >= TIME_SHARE * len(split):
            best, most = d, len(fields)
    return best


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _looks_like_header(fields: Sequence[str]) -> bool:
    """A first line is a header when no field is empty, a number, a time or a coordinate pair."""
    return all(f and _number(f) is None and not re.match(r"[(\d]|POINT\b", f) for f in fields)


# --------------------------------------------------------------------------- values


def parse_time(text: str, pattern: str) -> datetime | None:
    """``text`` read with ``pattern`` (``"iso"`` or a strptime pattern) as the engine reads it, or ``None`` when it does not fit.

    >>> parse_time("2011-10-24T24:22:00+0000", "iso").isoformat()
    '2011-10-25T00:22:00+00:00'
    >>> parse_time("01/21/2022 01:43:00 PM", "%m/%d/%Y %I:%M:%S %p").isoformat()
    '2022-01-21T13:43:00'
    >>> parse_time("2022-01-21", "iso") is None  # a date is not a time
    True
    """
    try:
        return _reader(pattern).parse(text, "")
    except TimeParseError:
        return None


@functools.lru_cache(maxsize=64)
def _reader(pattern: str) -> TimeReader:
    return TimeReader((pattern,), None)


@dataclass(frozen=True)
class TimeFormat:
    """How a column writes its times: ``pattern`` (``"iso"`` or strptime), the ``share`` of the ``n`` non-empty
    sample values it reads, whether they are ``naive`` (no UTC offset), and a value it does not read (``unread``)."""

    column: str
    pattern: str
    share: float
    n: int
    naive: bool
    unread: str | None = None
    parts: tuple[str, ...] = field(default=(), repr=False)  # a date and a time in two columns; ``column``: their joined name


def time_format(column: str, values: Sequence[str]) -> TimeFormat | None:
    """The one of :data:`TIME_PATTERNS` that reads the most non-empty values, at least :data:`TIME_SHARE` of them
    (ties: the first), or ``None``.

    >>> time_format("t", ["11/09/2011 10:04:00 PM +0000", "2011-10-24T24:22:00+0000"] + ["11/09/2011 07:04:00 PM +0000"] * 198)
    TimeFormat(column='t', pattern='%m/%d/%Y %I:%M:%S %p %z', share=0.995, n=200, naive=False, unread='2011-10-24T24:22:00+0000')
    >>> time_format("t", ["12", "13"]) is None
    True

    Day-first dates read by a month-first pattern on the days up to 12 only are read day-first:

    >>> time_format("t", ["05/01/2021 10:00", "07/02/2021 11:00"] * 10 + ["25/02/2021 09:00"]).pattern
    '%d/%m/%Y %H:%M'
    """
    present = [v for v in values if v]
    if not present or not any(c in present[0] for c in "-/:.") and not present[0].isdigit():
        return None
    probe = present[:50]
    best: TimeFormat | None = None
    for pattern in TIME_PATTERNS:
        if sum(parse_time(v, pattern) is not None for v in probe) < TIME_SHARE * len(probe):  # a quick look before reading all
            continue
        parsed = [(v, parse_time(v, pattern)) for v in present]
        read = [t for _, t in parsed if t is not None]
        share = len(read) / len(present)
        if share >= TIME_SHARE and (best is None or share > best.share):
            unread = next((v for v, t in parsed if t is None), None)
            best = TimeFormat(column, pattern, round(share, 4), len(present), all(t.tzinfo is None for t in read), unread)
            if unread is None:
                break
    return best


#: Epoch instants inspect believes: 2000-01-01 to 2100-01-01 UTC, in seconds.
EPOCH_RANGE = (946_684_800.0, 4_102_444_800.0)


def epoch_format(column: str, present: Sequence[str]) -> TimeFormat | None:
    """``epoch`` or ``epoch_ms`` for a column of numbers named like a time whose values are instants of this century.

    A number is a time only when the name says so (``CallDateTime``, ``dispatch_time``): ids and counts are numbers too.

    >>> epoch_format("CallDateTime", ["1609459200000", "1609459260000", "N/A"] * 10)
    TimeFormat(column='CallDateTime', pattern='epoch_ms', share=0.6667, n=30, naive=False, unread='N/A')
    >>> epoch_format("incident_id", ["1609459200"]) is None, epoch_format("time_on_scene", ["40.1"]) is None
    (True, True)
    """
    named = _score(column, _RECEIVED_NAMES) or any(_score(column, _STATUS_NAMES[s]) for s in STATUSES)
    if not named or not present:
        return None
    low, high = EPOCH_RANGE
    for pattern, unit in (("epoch", 1.0), ("epoch_ms", 1000.0)):
        inside = [low <= x / unit <= high if (x := _number(v)) is not None else False for v in present]
        if sum(inside) >= TIME_SHARE * sum(_number(v) is not None for v in present):
            unread = next((v for v, ok in zip(present, inside, strict=True) if not ok), None)
            return TimeFormat(column, pattern, round(sum(inside) / len(present), 4), len(present), False, unread)
    return None


def _time_of(name: str, values: Sequence[str], present: Sequence[str], numbers: Sequence[float]) -> TimeFormat | None:
    """A column's time format: epoch forms for (mostly) numbers, the patterns otherwise; numbers alone are not times."""
    if numbers and len(numbers) >= TIME_SHARE * len(present):
        return epoch_format(name, present) or (None if len(numbers) == len(present) else time_format(name, values))
    return time_format(name, values)


_LATLNG = re.compile(r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)")
_WKT = re.compile(r"POINT\s*\(\s*(-?\d+(?:\.\d+)?)\s+(-?\d+(?:\.\d+)?)\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    """What the sample says about one column."""

    name: str
    index: int
    values: tuple[str, ...]  # the sample's values, in row order
    non_empty: int
    distinct: int
    numeric: float  # share of non-empty values that are finite numbers
    low: float | None  # the smallest and largest numeric value
    high: float | None
    time: TimeFormat | None
    point: Literal["latlng", "wkt"] | None  # one combined coordinates column: "(lat, lng)" or "POINT (lng lat)"
    free_text: bool  # mostly distinct text with spaces: narratives, addresses


def profile(sample: Sample) -> dict[str, Column]:
    """Every column of the sample, by name."""
    out: dict[str, Column] = {}
    for i, name in enumerate(sample.names):
        values = tuple(row[i] for row in sample.rows)
        present = [v for v in values if v]
        numbers = [x for x in (_number(v) for v in present) if x is not None]
        point: Literal["latlng", "wkt"] | None = None
        if present and sum(bool(_LATLNG.fullmatch(v)) for v in present) >= 0.9 * len(present):
            point = "latlng"
        elif present and sum(bool(_WKT.fullmatch(v)) for v in present) >= 0.9 * len(present):
            point = "wkt"
        distinct = len(set(present))
        texty = [v for v in present if re.search(r"[A-Za-z]{2,}", v) and " " in v]
        out[name] = Column(
            name=name,
            index=i,
            values=values,
            non_empty=len(present),
            distinct=distinct,
            numeric=len(numbers) / len(present) if present else 0.0,
            low=min(numbers) if numbers else None,
            high=max(numbers) if numbers else None,
            time=_time_of(name, values, present, numbers),
            point=point,
            free_text=len(texty) >= 0.5 * max(len(present), 1) and distinct >= 0.3 * max(len(present), 1),
        )
    return out


_DATE_WORD = re.compile(r"\bdate\b")
_TIME_WORD = re.compile(r"\btime\b")
_WHEN_WORDS = re.compile(r"\b(date|time|datetime|dttm|dt|tm|stamp)\b")


def _stem(name: str) -> str:
    """A time column's name without its date/time words: ``Call Date`` and ``Call Time`` share ``call``."""
    return " ".join(_WHEN_WORDS.sub(" ", words(name)).split())


def split_times(cols: dict[str, Column]) -> list[Column]:
    """Times written as a date column and a time column whose names share a stem (``Dispatch_Date`` + ``Dispatch_Time``,
    ``Call Date`` + ``Call Time``, ``Date`` + ``Time``), as one column each: named :func:`streams.ingest.mapping.joined_name`,
    the two values joined with a space (empty when either is), read with :data:`TIME_PATTERNS`.

    A pair is proposed only when neither column holds a whole time itself and no column with the same stem does
    (``Call DateTime`` beside ``Call Date`` and ``Call Time`` is read alone). A date column whose times are all
    midnight (a date exported as a timestamp, as Socrata portals write LAPD's ``Dispatch_Date``: ``01/01/2020
    12:00:00 AM``) is a date: its constant midnight text goes into the pattern as it is
    (``%m/%d/%Y 12:00:00 AM %H:%M:%S``).

    >>> sample = Sample.from_lines([b"Incident,Call Date,Call Time,Type", b"1,01/02/2020,13:45:00,FIRE", b"2,01/02/2020,,EMS"])
    >>> (c,) = split_times(profile(sample))
    >>> c.name, c.values, c.time.pattern, c.time.parts
    ('Call Date + Call Time', ('01/02/2020 13:45:00', ''), '%m/%d/%Y %H:%M:%S', ('Call Date', 'Call Time'))
    """
    midnight = {c.name: suffix for c in cols.values() if (suffix := _midnight(c)) is not None}
    whole = {_stem(c.name) for c in cols.values() if c.time is not None and c.name not in midnight}
    dates = [
        c
        for c in cols.values()
        if (c.time is None or c.name in midnight) and _DATE_WORD.search(words(c.name)) and not _TIME_WORD.search(words(c.name))
    ]
    clocks = [c for c in cols.values() if c.time is None and _TIME_WORD.search(words(c.name)) and not _DATE_WORD.search(words(c.name))]
    out = []
    for date in dates:
        stem = _stem(date.name)
        clock = next((c for c in clocks if _stem(c.name) == stem), None)
        if clock is None or stem in whole or not date.non_empty:
            continue
        name = joined_name((date.name, clock.name))
        values = tuple(f"{d} {t}" if d and t else "" for d, t in zip(date.values, clock.values, strict=True))
        tf = time_format(name, values) if date.name not in midnight else _midnight_format(name, values, midnight[date.name])
        if tf is None:
            continue
        tf = TimeFormat(tf.column, tf.pattern, tf.share, tf.n, tf.naive, tf.unread, (date.name, clock.name))
        present = [v for v in values if v]
        out.append(Column(name, date.index, values, len(present), len(set(present)), 0.0, None, None, tf, None, free_text=False))
    return out


def _midnight(c: Column) -> str | None:
    """The text after the date in a column of times that are all midnight, the same on every value
    (``' 12:00:00 AM'``, ``'T00:00:00.000'``), or ``None``."""
    if c.time is None or c.time.unread is not None or c.time.pattern in ("epoch", "epoch_ms"):
        return None
    present = [v for v in c.values if v]
    head = re.match(r"[^ T]+", present[0]) if present else None
    suffix = present[0][head.end() :] if head else ""
    if not suffix or not all(v.endswith(suffix) and re.fullmatch(r"[^ T]+", v[: -len(suffix)]) for v in present):
        return None
    times = [parse_time(v, c.time.pattern) for v in present]
    return suffix if all(t is not None and (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0) for t in times) else None


def _midnight_format(column: str, values: Sequence[str], suffix: str) -> TimeFormat | None:
    """The pattern reading ``'<date><suffix> <time>'`` values: a date and a time pattern of :data:`TIME_PATTERNS` with the
    constant midnight text between them, as literal text."""
    literal = suffix.replace("%", "%%")
    present = [v for v in values if v]
    pairs = [tuple(p.split(" ", 1)) for p in TIME_PATTERNS if " " in p] + [("%Y-%m-%d", "%H:%M:%S"), ("%Y-%m-%d", "%H:%M")]
    for date_pattern, time_pattern in pairs:
        pattern = f"{date_pattern}{literal} {time_pattern}"
        parsed = [(v, parse_time(v, pattern)) for v in present]
        read = [t for _, t in parsed if t is not None]
        if present and len(read) >= TIME_SHARE * len(present):
            unread = next((v for v, t in parsed if t is None), None)
            return TimeFormat(
                column, pattern, round(len(read) / len(present), 4), len(present), all(t.tzinfo is None for t in read), unread
            )
    return None


# --------------------------------------------------------------------------- proposal


@dataclass
class Proposal:
    """A proposed mapping, and what inspect noticed on the way (``notes``, ``warnings``: read them)."""

    name: str
    names: tuple[str, ...]
    has_header: bool
    received: TimeFormat
    timezone: str | None
    id_column: str | None = None
    grain: Grain = "call"
    unit: str | None = None
    call_type: str | None = None
    call_type_extract: str | None = None
    category: str | None = None
    priority: str | None = None
    lat: str | None = None
    lng: str | None = None
    point: str | None = None
    point_form: Literal["latlng", "wkt"] | None = None
    agency_column: str | None = None
    agency: str | None = None
    statuses: dict[Status, TimeFormat] = field(default_factory=dict)
    detect: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()
    type_values: Counter[str] = field(default_factory=Counter)
    priority_values: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    priority_extract: str | None = None
    priority_map: dict[str, int] = field(default_factory=dict)
    utc_named: bool = False  # the zone is UTC because the time columns' names say GMT/UTC, not because --timezone said so
    delimiter: str = ","

    @property
    def naive(self) -> bool:
        """Whether any time column the mapping reads has no UTC offset."""
        return self.received.naive or any(t.naive for t in self.statuses.values())


def propose(sample: Sample, *, name: str, timezone: str | None = None) -> Proposal:
    """A mapping for the sampled file; raises :class:`InspectError` when no column holds a readable time."""
    cols = profile(sample)
    if not sample.rows:
        raise InspectError("no data row could be read in the sample; expected CSV rows with as many fields as line 1")
    pairs = split_times(cols)
    cols.update((c.name, c) for c in pairs)
    parts = {part for c in pairs if c.time for part in c.time.parts}  # a date at midnight is a date, not a time
    times = {c.name: c.time for c in cols.values() if c.time is not None and c.name not in parts}
    received = _received(cols, times)
    p = Proposal(
        name=name, names=sample.names, has_header=sample.has_header, received=received, timezone=timezone, delimiter=sample.delimiter
    )
    if sample.delimiter != ",":
        p.notes.append(f"fields separated by {sample.delimiter!r}, not commas: [layout] delimiter = {_toml_str(sample.delimiter)}")
    used = {received.column, *received.parts}
    _coordinates(p, cols, used)
    _identity(p, cols, used)
    _call_type(p, cols, used)
    _priority(p, cols, used)
    _agency(p, cols, used, name)
    _statuses(p, cols, times, used)
    for tf in (received, *p.statuses.values()):
        if tf.parts:
            p.notes.append(
                f"{' and '.join(map(repr, tf.parts))} hold a date and a time: read together (columns = [...], joined with a space) "
                f"in the form {tf.pattern!r}, which reads {tf.share:.1%} of {tf.n:,} joined values"
            )
    naive = [t.column for t in (received, *p.statuses.values()) if t.naive]
    example = next((v for v in cols[received.column].values if v), "")
    utc_named = bool(naive) and all(re.search(_UTC_NAMES, words(n)) for n in naive)
    if utc_named and timezone is None:
        p.timezone, p.utc_named = "UTC", True
        p.warnings.append(
            f"TIMES WITHOUT A UTC OFFSET in {', '.join(map(repr, naive))} (e.g. {example!r}), but the column names say GMT/UTC: "
            'the proposal reads them as UTC (timezone = "UTC"). Check against a call whose local time you know'
        )
    elif utc_named and timezone is not None and timezone not in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        p.warnings.append(
            f"the column names of {', '.join(map(repr, naive))} say GMT/UTC, but --timezone {timezone} reads them as wall times "
            f"in {timezone}: if they are UTC, pass --timezone UTC (or none)"
        )
    elif naive and timezone is None:
        p.warnings.append(
            f"TIMES WITHOUT A UTC OFFSET in {', '.join(map(repr, naive))} (e.g. {example!r}): "
            "the mapping needs the zone they are in. Pass --timezone ZONE (an IANA name such as America/Los_Angeles), "
            "or replace the placeholder timezone in the proposal; until then it does not validate"
        )
    for tf in (received, *p.statuses.values()):
        if tf.unread is not None:
            p.warnings.append(
                f"{round(tf.n * (1 - tf.share)):,} of the {tf.n:,} values in {tf.column!r} are not times in the form {tf.pattern!r} "
                f"(e.g. {tf.unread!r:.40}): those rows are rejected (or the status dropped); see 'rejected rows' below"
            )
    p.masked = tuple(
        n for n, c in cols.items() if n not in used and (_IDENTIFYING.search(words(n)) or (c.free_text and c.time is None and not c.point))
    )
    if sample.has_header:
        p.detect = tuple(n for n in sample.names if n in used)
    else:
        p.notes.append(f"no header: the columns are named by position, column_1 .. column_{len(sample.names)}")
    return p


def _received(cols: dict[str, Column], times: dict[str, TimeFormat]) -> TimeFormat:
    if not times:
        seen = ", ".join(f"{c.name}={c.values[0]!r:.40}" for c in cols.values() if c.values)
        raise InspectError(
            f"no column holds times that inspect can read (first row: {seen}); expected a column of times such as "
            f"2016-01-23T11:02:11-05:00 or 01/21/2022 01:43:00 PM. Known patterns: {', '.join(TIME_PATTERNS)}"
        )
    ranked = sorted(times, key=lambda n: (-_score(n, _RECEIVED_NAMES), bool(times[n].parts), cols[n].index))
    best = ranked[0]
    if _score(best, _RECEIVED_NAMES) == 0:
        best = min(times, key=lambda n: _median_time(cols[n], times[n]))
    return times[best]


def _median_time(col: Column, fmt: TimeFormat) -> float:
    parsed = sorted(t.replace(tzinfo=None).timestamp() for t in (parse_time(v, fmt.pattern) for v in col.values if v) if t)
    return parsed[len(parsed) // 2] if parsed else math.inf


def _in_range(c: Column, bound: float) -> bool:
    return c.numeric >= 0.9 and c.low is not None and c.high is not None and -bound <= c.low and c.high <= bound


def _coordinates(p: Proposal, cols: dict[str, Column], used: set[str]) -> None:
    lat = max((c for c in cols.values() if _in_range(c, 90)), key=lambda c: _score(c.name, _LAT_NAMES), default=None)
    lng = max((c for c in cols.values() if _in_range(c, 180)), key=lambda c: _score(c.name, _LNG_NAMES), default=None)
    if lat is not None and lng is not None and _score(lat.name, _LAT_NAMES) and _score(lng.name, _LNG_NAMES):
        p.lat, p.lng = lat.name, lng.name
    else:
        # By value: two adjacent decimal columns, latitude first unless only the second fits a latitude.
        ordered = list(cols.values())
        for a, b in itertools.pairwise(ordered):
            if _decimal(a) and _decimal(b) and _in_range(a, 180) and _in_range(b, 180):
                first, second = (b, a) if not _in_range(a, 90) and _in_range(b, 90) else (a, b)
                p.lat, p.lng = first.name, second.name
                p.notes.append(f"coordinates by value: {first.name!r} read as latitude and {second.name!r} as longitude; check")
                break
    points = [c for c in cols.values() if c.point]
    if p.lat is None and points:
        best = max(points, key=lambda c: c.non_empty)
        p.point, p.point_form = best.name, best.point
        used.add(best.name)
    elif p.lat is None:
        p.warnings.append("NO COORDINATES found: no latitude/longitude columns and no '(lat, lng)' or 'POINT (lng lat)' column")
    if p.lat is not None and p.lng is not None:
        used.update((p.lat, p.lng))
        for c in points:
            p.notes.append(f"{c.name!r} also holds coordinates ({c.point}); the two columns are used")


def _decimal(c: Column) -> bool:
    return c.numeric >= 0.9 and any("." in v for v in c.values[:50])


def _identity(p: Proposal, cols: dict[str, Column], used: set[str]) -> None:
    units = [c for c in cols.values() if _score(c.name, _UNIT_NAMES) and not re.search(_NOT_UNIT, words(c.name)) and c.time is None]
    unit = max(units, key=lambda c: (_score(c.name, _UNIT_NAMES), -c.index), default=None)
    ids = sorted(
        (c for c in cols.values() if _score(c.name, _ID_NAMES) and c.name not in used and c is not unit and c.time is None),
        key=lambda c: (-_score(c.name, _ID_NAMES), c.index),
    )
    if unit is not None:
        p.unit = unit.name
        used.add(unit.name)
        for c in ids:
            if c.distinct < c.non_empty and _units_differ(c, unit):
                p.id_column, p.grain = c.name, "unit"
                p.notes.append(
                    f"grain 'unit': {c.name!r} repeats ({c.distinct} distinct in {c.non_empty} rows) with differing {unit.name!r}: "
                    "one row per responding unit, grouped into one call per id"
                )
                break
    if p.id_column is None:
        # Without a unit column (LAFD's response metrics name only the unit's type), a repeated id whose rows differ in
        # their status times is one row per unit all the same.
        statuses = [
            c
            for c in cols.values()
            if c.time is not None
            and c.name != p.received.column
            and any(_score(c.name, _STATUS_NAMES[s]) for s in STATUSES)
            and not re.search(_NOT_STATUS, words(c.name))
        ]
        for c in ids:
            if not 0.2 * c.non_empty <= c.distinct < c.non_empty or re.search(r"\btype\b", words(c.name)):
                continue  # a few units per call at most; a type is not an id
            differing = next((s for s in statuses if _units_differ(c, s)), None)
            if differing is not None:
                p.id_column, p.grain = c.name, "unit"
                p.notes.append(
                    f"grain 'unit': {c.name!r} repeats ({c.distinct} distinct in {c.non_empty} rows) with differing "
                    f"{differing.name!r} and no unit column: one row per responding unit, grouped into one call per id; "
                    "its updates name no unit"
                )
                break
    if p.id_column is None:
        # An id column may repeat (Seattle repeats ids on identical rows, 18 % of a sample): a name that says id is enough.
        unique = [c for c in ids if c.non_empty and c.distinct >= 0.5 * c.non_empty]
        if unique:
            c = unique[0]
            p.id_column = c.name
            if c.distinct < c.non_empty:
                p.notes.append(
                    f"{c.name!r} repeats {c.non_empty - c.distinct} times in the sample: the worker counts the first call with an id "
                    "and refuses the others as duplicate_id"
                )
        else:
            p.notes.append("no id column: each call gets the id '{mapping name}-{line}'")
    if p.id_column is not None:
        used.add(p.id_column)


def _units_differ(ids: Column, unit: Column) -> bool:
    seen: dict[str, str] = {}
    for key, u in zip(ids.values, unit.values, strict=True):
        if key and seen.setdefault(key, u) != u:
            return True
    return False


_CATEGORY_PREFIX = re.compile(r"\s*(EMS|FIRE|TRAFFIC|POLICE)\s*:", re.IGNORECASE)


def _call_type(p: Proposal, cols: dict[str, Column], used: set[str]) -> None:
    categories = [c for c in cols.values() if _score(c.name, _CATEGORY_NAMES) and c.name not in used]
    for c in categories:
        known = sum(v.strip().upper() in Category.__members__ for v in c.values if v)
        if c.non_empty and known >= 0.9 * c.non_empty:
            p.category = c.name
            used.add(c.name)
    candidates = [
        c
        for c in cols.values()
        if c.name not in used and c.time is None and c.numeric < 0.5 and c.point is None and not re.search(_NOT_TYPE, words(c.name))
    ]
    # A "description" is a call type only when its values repeat (a narrative's do not: it is masked instead).
    named = [c for c in candidates if _score(c.name, _TYPE_NAMES) and (_score(c.name, _TYPE_NAMES) > 4 or _repeats(c))]
    chosen: Column | None = None
    if named:
        # Words before codes: NOPD's Type holds '103D', its TypeText 'DISTURBANCE (DOMESTIC)'.
        chosen = max(named, key=lambda c: (_wordy(c), _score(c.name, _TYPE_NAMES), -c.index))
        codes = [c for c in named if c is not chosen and not _wordy(c)]
        if codes and _wordy(chosen):
            p.notes.append(f"call type: {chosen.name!r} (words) rather than {codes[0].name!r} (codes)")
    else:  # by value: the text column whose values the keyword rules recognize most often
        by_hits = [(sum(normalize_category(v) is not Category.OTHER for v in c.values if v), c) for c in candidates]
        hits, best = max(by_hits, key=lambda x: (x[0], -x[1].index), default=(0, None))
        if best is not None and hits >= 0.5 * best.non_empty:
            chosen = best
            p.notes.append(f"call type by value: {best.name!r} (the keyword rules recognize {hits} of its {best.non_empty} values)")
    if chosen is None:
        if p.category is None:
            p.warnings.append("NO CALL TYPE found: every call will be category OTHER; name the call type column in the mapping")
        return
    p.call_type = chosen.name
    used.add(chosen.name)
    present = [v for v in chosen.values if v]
    p.type_values = Counter(present)
    if sum(bool(_CATEGORY_PREFIX.match(v)) for v in present) >= 0.8 * len(present):
        dash = sum(v.endswith(" -") for v in present) >= 0.01 * len(present)
        p.call_type_extract = r"^(?:[^:]*:)?\s*(.*?)" + (r"(?:\s+-)?" if dash else "") + r"\s*$"
        p.notes.append(
            f"{chosen.name!r} starts with a category ('EMS: FALL VICTIM'): the category is read from that prefix, "
            "the call type is the text after the colon" + (" without a trailing ' -'" if dash else "")
        )


def _wordy(c: Column) -> bool:
    """Whether most of the column's values hold a word of three letters or more (not codes such as '103D')."""
    present = [v for v in c.values if v]
    return bool(present) and sum(bool(re.search(r"[A-Za-z]{3,}", v)) for v in present) >= 0.5 * len(present)


def _repeats(c: Column) -> bool:
    return c.non_empty > 0 and c.distinct <= 0.5 * c.non_empty


#: Priority words and the Watchfloor priority the proposal gives them (1 is the highest); a person checks them.
PRIORITY_WORDS = {
    "emergency": 1, "critical": 1, "immediate": 1, "high": 2, "urgent": 2, "medium": 3, "moderate": 3, "normal": 3,
    "low": 4, "routine": 4, "non-emergency": 5, "non emergency": 5, "nonemergency": 5,
}  # fmt: skip
#: A number with a letter (NOPD's '2A': the letter is a sub-priority) or a prefix ('P1'): the number is the priority.
_NUMBER_LETTER = re.compile(r"[A-Za-z]{0,2}[0-9][A-Za-z]?")


def _priority(p: Proposal, cols: dict[str, Column], used: set[str]) -> None:
    found = [c for c in cols.values() if c.name not in used and _score(c.name, _PRIORITY_NAMES) and c.time is None]
    if not found:
        return
    c = max(found, key=lambda c: (_score(c.name, _PRIORITY_NAMES), -c.index))
    p.priority = c.name
    used.add(c.name)
    p.priority_values = Counter(v for v in c.values if v)
    outside = sorted(v for v in p.priority_values if v not in {"1", "2", "3", "4", "5"})
    if outside and all(_NUMBER_LETTER.fullmatch(v) for v in p.priority_values):
        p.priority_extract = "([0-9])"
        p.warnings.append(
            f"PRIORITY {c.name!r} holds a number with letters ({', '.join(outside[:12])}): the proposal reads the number only "
            "(extract); give each number its Watchfloor priority in [fields.priority] map (1 is the highest): the direction "
            "is the agency's. Until then numbers outside 1..5 read as no priority"
        )
    elif outside and any(v.casefold() in PRIORITY_WORDS for v in p.priority_values):
        p.priority_map = {v: PRIORITY_WORDS[v.casefold()] for v in sorted(p.priority_values) if v.casefold() in PRIORITY_WORDS}
        unknown = [v for v in sorted(p.priority_values) if v.casefold() not in PRIORITY_WORDS]
        p.warnings.append(
            f"PRIORITY {c.name!r} holds words: the proposal maps {', '.join(p.priority_map)} (check them; 1 is the highest)"
            + (f"; {', '.join(map(repr, unknown))} not mapped: read as no priority until you add them" if unknown else "")
        )
    elif outside:
        p.warnings.append(
            f"PRIORITY {c.name!r} holds values outside 1..5 ({', '.join(outside[:12])}): the proposal maps only what it can "
            "(1..5 as they are); give each value its Watchfloor priority in [fields.priority] map (1 is the highest). Unmapped values "
            "read as no priority, counted, not rejected"
        )
    else:
        p.notes.append(f"priority {c.name!r} holds 1..5 only; check the direction: in Watchfloor 1 is the highest")
    others = [o.name for o in found if o is not c]
    if others:
        p.notes.append(f"other priority columns not used: {', '.join(map(repr, others))}")


def _agency(p: Proposal, cols: dict[str, Column], used: set[str], name: str) -> None:
    found = [c for c in cols.values() if c.name not in used and _score(c.name, _AGENCY_NAMES)]
    if found:
        p.agency_column = found[0].name
        used.add(found[0].name)
    else:
        p.agency = name
        p.notes.append(f"no agency column: every call gets the agency {name!r} (the mapping's name); change it if needed")


def _statuses(p: Proposal, cols: dict[str, Column], times: dict[str, TimeFormat], used: set[str]) -> None:
    free = [n for n in times if n not in used]
    for status in STATUSES:
        ranked = [n for n in free if _score(n, _STATUS_NAMES[status]) and not re.search(_NOT_STATUS, words(n))]
        if ranked:
            chosen = min(ranked, key=lambda n: cols[n].index)
            p.statuses[status] = times[chosen]
            used.update((chosen, *times[chosen].parts))
            free.remove(chosen)
            free = [n for n in free if not set(times[n].parts) & used]
    # A status column empty throughout the sample (calls not yet dispatched, a status this agency rarely records) has
    # no values to learn a format from: it is read with the received time's forms.
    empty = [c.name for c in cols.values() if c.non_empty == 0 and c.name not in used]
    for status in STATUSES:
        named = [n for n in empty if _score(n, _STATUS_NAMES[status]) and not re.search(_NOT_STATUS, words(n))]
        if status not in p.statuses and named:
            p.statuses[status] = TimeFormat(named[0], p.received.pattern, 0.0, 0, p.received.naive)
            used.add(named[0])
            p.notes.append(f"{named[0]!r} is empty in the sample: read as status {status} with the received time's forms; check")
    skipped = [n for n in free if re.search(_NOT_STATUS, words(n))]
    if skipped:
        p.notes.append(
            f"time columns {', '.join(map(repr, skipped))} are not schema statuses (the schema has dispatched, en_route, "
            "on_scene, closed): not read"
        )
    rest = [n for n in free if n not in skipped]
    if rest:
        p.notes.append(f"other time columns not read: {', '.join(map(repr, rest))}")


def agency_name(path: str) -> str:
    """A mapping name from a file name: the words before the first number.

    >>> agency_name("../data/montgomery-pa-911-2015-12-to-2016-08.csv"), agency_name("SF Fire calls.csv")
    ('montgomery-pa', 'sf-fire-calls')
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    parts = re.findall(r"[a-z0-9]+", stem.lower())
    head = list(itertools.takewhile(lambda w: not w.isdigit(), parts))
    return "-".join(head or parts or ["source"])


# --------------------------------------------------------------------------- the mapping as TOML

#: The value the proposal gives ``timezone`` when the times are naive and no ``--timezone`` was given: it is not a
#: zone, so the mapping does not validate until a person writes the zone.
ZONE_PLACEHOLDER = "SET-ME-to-the-IANA-zone-of-these-times"


def _toml_str(text: str) -> str:
    r"""A TOML string: basic (``"..."``), or literal (``'...'``, no escapes) for text with backslashes (regular expressions).

    >>> print(_toml_str("Call Type"), _toml_str(r"^[^:]*:\s*(.*)$"), _toml_str('a "b" \\ it\'s'))
    "Call Type" '^[^:]*:\s*(.*)$' "a \"b\" \\ it's"
    """
    plain = not any(ord(c) < 32 or ord(c) == 127 for c in text)
    if "\\" in text and "'" not in text and plain:
        return f"'{text}'"
    return '"' + "".join(_ESCAPES.get(c, c if ord(c) >= 32 and ord(c) != 127 else f"\\u{ord(c):04x}") for c in text) + '"'


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text) else _toml_str(text)


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def _formats(tf: TimeFormat) -> list[str]:
    """The column's pattern, then ISO 8601 as a fallback (an export that mostly writes one form may write ISO on a few rows)."""
    return [tf.pattern] if tf.pattern == "iso" else [tf.pattern, "iso"]


def _column(tf: TimeFormat) -> str:
    """A time field's value in TOML: its column, or its columns joined (a date and a time)."""
    return f"{{ columns = {_list(tf.parts)} }}" if tf.parts else _toml_str(tf.column)


def _describe(names: Sequence[str]) -> str:
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"proposed by inspect; {len(names)} columns: {shown}"


def render_toml(p: Proposal) -> str:
    """The proposal as a mapping file (the keys are those of :mod:`streams.ingest.mapping`), with comments saying what to check."""
    out = [
        f"# Mapping proposed by `python -m streams.ingest.inspect` for {p.name!r}. Check every line marked CHECK;",
        "# the keys are described in docs/sources.md.",
        f"name = {_toml_str(p.name)}",
        f"description = {_toml_str(_describe(p.names))}",
    ]
    if p.grain == "unit":
        out.append(f'grain = "unit"  # one row per responding unit, grouped by {p.id_column!r}')
    if p.naive:
        if p.utc_named:
            out.append(f"timezone = {_toml_str(p.timezone or 'UTC')}  # CHECK: no UTC offset, but the column names say GMT/UTC")
        elif p.timezone:
            out.append(f"timezone = {_toml_str(p.timezone)}  # the times have no UTC offset: they are wall times in this zone")
        else:
            out += [
                "# CHECK: the times have no UTC offset. Write the IANA zone they are in (e.g. America/Los_Angeles):",
                "# until then this mapping does not validate. Or pass --timezone ZONE to inspect and replay.",
                f"timezone = {_toml_str(ZONE_PLACEHOLDER)}",
            ]
    out.append(f"time_formats = {_list(_formats(p.received))}")
    if not p.has_header or p.delimiter != ",":
        out += ["", "[layout]"]
    if p.delimiter != ",":
        out.append(f"delimiter = {_toml_str(p.delimiter)}  # the character between fields")
    if not p.has_header:
        out += ["header = false", f"columns = {_list(p.names)}  # CHECK: named by position"]
    out += ["", "[fields]"]
    if p.id_column:
        out.append(f"id = {_toml_str(p.id_column)}")
    out.append(f"received_at = {_column(p.received)}")
    if p.call_type:
        if p.call_type_extract:
            out.append(f"call_type = {{ column = {_toml_str(p.call_type)}, extract = {_toml_str(p.call_type_extract)} }}")
        else:
            out.append(f"call_type = {_toml_str(p.call_type)}")
    if p.lat and p.lng:
        out += [f"lat = {_toml_str(p.lat)}", f"lng = {_toml_str(p.lng)}"]
    elif p.point:
        form = "pair" if p.point_form == "latlng" else "point"
        out.append(f"location = {{ column = {_toml_str(p.point)}, form = {_toml_str(form)} }}")
    if p.agency_column:
        out.append(f"agency = {_toml_str(p.agency_column)}")
    else:
        out.append(f"agency = {{ value = {_toml_str(p.agency or p.name)} }}  # CHECK: the agency's short name")
    if p.unit:
        out.append(f"unit = {_toml_str(p.unit)}")
    if p.call_type or p.category:
        out += ["", "[fields.category]"]
        out.append(f"column = {_toml_str(p.category or p.call_type or '')}")
        if p.category and p.call_type:
            out.append(f"fallback = {_toml_str(p.call_type)}  # an empty category is read from the call type")
        others = [t for t, _ in p.type_values.most_common(TOP_TYPES) if normalize_category(t) is Category.OTHER]
        out += [
            "# Rules are tried in order (case-insensitive regular expressions, searched); then the keyword rules.",
            "# CHECK: inspect lists the call types that fall to OTHER" + (f", e.g. {', '.join(map(repr, others[:4]))}." if others else "."),
            "rules = [",
            "  # { pattern = '^Aid Response', category = \"EMS\" },",
            "]",
            'default = "keywords"',
        ]
    if p.priority:
        out += ["", "[fields.priority]", f"column = {_toml_str(p.priority)}"]
        seen = ", ".join(f"{v!r} ({n})" for v, n in p.priority_values.most_common(12))
        out.append(f"# values seen: {seen}")
        outside = [v for v in p.priority_values if v not in {"1", "2", "3", "4", "5"}]
        unknown = sorted(v for v in p.priority_values if v not in p.priority_map)
        if p.priority_extract:
            digits = sorted({d for v in p.priority_values for d in re.findall("[0-9]", v)})
            out += [
                f"extract = {_toml_str(p.priority_extract)}  # the number of '2A' or 'P1'",
                "# CHECK: give every number its Watchfloor priority, 1 (highest) .. 5, replacing each ?, and uncomment:",
                f"# map = {{ {', '.join(f'{_key(d)} = ?' for d in digits)} }}",
            ]
        elif p.priority_map:
            out += [
                "# CHECK: the words' priorities (1 is the highest); a value not in the map reads as no priority (counted)."
                + (f" Not mapped: {', '.join(unknown)}." if unknown else ""),
                f"map = {{ {', '.join(f'{_key(v)} = {n}' for v, n in p.priority_map.items())} }}",
            ]
        elif outside:
            entries = ", ".join(f"{_key(v)} = {v if v in '12345' else '?'}" for v in sorted(p.priority_values)[:16])
            out += [
                "# CHECK: give every value its Watchfloor priority, 1 (highest) .. 5, replacing each ?; a map replaces the",
                "# default (1..5 as themselves): list every value. A value not in the map reads as no priority (counted).",
                f"# map = {{ {entries} }}",
            ]
        else:
            out.append("# CHECK: 1..5 are read as they are; in Watchfloor 1 is the highest (add a map if yours runs the other way).")
    for status, tf in p.statuses.items():
        key = f"columns = {_list(tf.parts)}" if tf.parts else f"column = {_toml_str(tf.column)}"
        out += ["", "[[statuses]]", f"status = {_toml_str(status)}", key]
        if _formats(tf) != _formats(p.received):
            out.append(f"formats = {_list(_formats(tf))}")
    return "\n".join(out) + "\n"


def _validate(text: str, origin: str) -> tuple[Mapping | None, str | None]:
    """The mapping ``text`` describes, or ``None`` and the reason it does not validate."""
    try:
        return parse_mapping(text, origin), None
    except MappingError as exc:
        return None, str(exc)


def _without_placeholder(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if ZONE_PLACEHOLDER not in line) + "\n"


def _load_mapping(spec: str) -> Mapping:
    """A mapping file, or the name of a built-in mapping."""
    builtins = builtin_mappings()
    if spec in builtins and not os.path.exists(spec):
        return builtins[spec]
    return load_mapping(spec)


# --------------------------------------------------------------------------- what a mapping reads


@dataclass
class Summary:
    """What the engine made of some lines: calls, updates, rejected lines and refused updates by reason, one example each.

    ``examples`` and ``refused_examples`` hold, per reason, the line number, the raw line and the detail.
    ``types`` counts (call type, category) of the calls read; ``unmapped`` the (field, value) pairs a map lacked.
    """

    calls: int = 0
    updates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    examples: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    refused_examples: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    types: Counter[tuple[str, str]] = field(default_factory=Counter)
    unmapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    no_location: int = 0  # calls read with a coordinate empty or unreadable, or at 0,0 (a placeholder)
    no_location_line: int | None = None


def summarize(items: Iterable[Row | Rejected]) -> Summary:
    """Count what :func:`streams.ingest.sources.parse_lines` or :func:`~streams.ingest.sources.read_source` yields."""
    s = Summary()
    for item in items:
        if isinstance(item, Rejected):
            s.rejected[item.reason] += 1
            s.examples.setdefault(item.reason, (item.line, item.raw, item.detail))
            continue
        s.calls += 1
        s.updates += len(item.updates)
        s.types[(str(item.call.get("call_type")), str(item.call.get("category")))] += 1
        s.unmapped.update(item.unmapped)
        lat, lng = item.call.get("lat"), item.call.get("lng")
        if lat is None or lng is None or (lat == 0 and lng == 0):
            s.no_location += 1
            s.no_location_line = s.no_location_line or item.line
        for refused in item.refused:
            s.refused[refused.reason] += 1
            s.refused_examples.setdefault(refused.reason, (item.line, item.raw, f"{refused.status}: {refused.detail}"))
    return s


_PRECISE = re.compile(r"(-?\d+\.\d{3})\d+")


def coarse(text: str) -> str:
    """``text`` with every decimal number cut to 3 decimals: coordinates to about 100 m, a block, not a home.

    >>> coarse("POINT (-122.419416 37.774929), 40.1 and 3.14159")
    'POINT (-122.419 37.774), 40.1 and 3.141'
    """
    return _PRECISE.sub(r"\1", text)


def masked_row(raw: bytes, names: Sequence[str], masked: Iterable[str], delimiter: str = ",") -> str:
    """A raw CSV line as ``column=value`` pairs, the ``masked`` columns' values replaced by ``[masked]``, numbers
    cut to 3 decimals (:func:`coarse`: an example row's coordinates point at a block, not at a caller's home).

    >>> masked_row(b'C1,"9 ELM ST",EMS,40.121544', ["id", "Address", "type", "lat"], ["Address"])
    "id='C1', Address=[masked], type='EMS', lat='40.121'"
    """
    hidden = set(masked)
    fields = _fields(raw, delimiter)
    if fields is None:
        return "[not UTF-8 CSV: not shown]"
    if len(fields) != len(names):
        shown = [("[masked]" if len(fields) != len(names) else repr(v)) for v in fields]
        return f"[{len(fields)} fields where the header has {len(names)}; values masked: {', '.join(shown[:3])}...]"
    return ", ".join(f"{n}=[masked]" if n in hidden else f"{n}={coarse(v)!r:.60}" for n, v in zip(names, fields, strict=True))


# --------------------------------------------------------------------------- report


def report_columns(sample: Sample, p: Proposal, builtin: str | None) -> list[str]:
    """The first part of the report: the sample, the columns' roles, time formats, notes and warnings."""
    out = [
        f"sample: {len(sample.rows):,} data rows"
        + (f" ({sample.bad_rows:,} more not read: wrong field count or not UTF-8 CSV)" if sample.bad_rows else ""),
        f"header: {'yes' if sample.has_header else 'no'}, {len(sample.names)} columns",
    ]
    if builtin:
        out.append(
            f"built-in mapping: the header fits {builtin!r}; replay reads the file as it is (--format auto). "
            "The proposal below is inspect's own"
        )
    roles: dict[str, str] = {}
    for role, column in (
        ("id", p.id_column), ("unit", p.unit), ("received_at", p.received.column), ("call_type", p.call_type),
        ("category", p.category), ("priority", p.priority), ("lat", p.lat), ("lng", p.lng), ("agency", p.agency_column),
        (f"location ({p.point_form})", p.point),
    ):  # fmt: skip
        if column is not None:
            roles[column] = role
    for status, tf in p.statuses.items():
        roles[tf.column] = f"status {status}"
    for tf in (p.received, *p.statuses.values()):
        for part in tf.parts:
            roles[part] = f"{roles[tf.column]} ({joined_name(tf.parts)})"
    out += [
        "",
        f"grain: {p.grain}" + (f" (one row per unit, grouped by {p.id_column!r})" if p.grain == "unit" else " (one row per call)"),
        "columns:",
    ]
    width = max(len(n) for n in sample.names)
    for name in sample.names:
        role = roles.get(name, "-")
        masked = "  [masked in examples]" if name in p.masked else ""
        out.append(f"  {name:<{width}}  {role}{masked}")
    times = [p.received, *p.statuses.values()]
    width = max(width, *(len(tf.column) for tf in times))
    out += ["", "time formats:"]
    for tf in times:
        zone = "NO UTC OFFSET" + (f": read in {p.timezone}" if p.timezone else ": needs a zone") if tf.naive else "with offset"
        zone = "UTC instants" if tf.pattern in ("epoch", "epoch_ms") else zone
        zone += f"; not read: e.g. {tf.unread!r:.40}" if tf.unread is not None else ""
        out.append(f"  {tf.column:<{width}}  {tf.pattern}  reads {tf.share:.1%} of {tf.n:,} values, {zone}")
    for title, items in (("WARNINGS", p.warnings), ("notes", p.notes)):
        if items:
            out += ["", f"{title}:"] + [f"  - {x}" for x in items]
    return out


def report_types(p: Proposal, summary: Summary | None, sample: Sample, mapping: Mapping | None) -> list[str]:
    """Call types seen (top :data:`TOP_TYPES`) and the category each gets, OTHER flagged; priority values seen.

    The categories are the mapping's when it read calls (``summary``), else the keyword rules' on the raw values;
    the priorities are those of the mapping's priority column and map when there is a mapping, else the proposal's.
    """
    out: list[str] = []
    if summary is not None and summary.calls:
        types = summary.types
        source = "as the mapping reads them"
    else:
        types = Counter({(t, normalize_category(t).value): n for t, n in p.type_values.items()})
        source = "raw values, under the default keyword rules (the mapping did not read them)"
    if types:
        total = sum(types.values())
        others = sum(n for (_, cat), n in types.items() if cat == "OTHER")
        out += [
            "",
            f"call types: {len(types):,} seen, top {min(TOP_TYPES, len(types))} ({source}); {others:,} of {total:,} calls fall to OTHER:",
        ]
        for (kind, cat), n in types.most_common(TOP_TYPES):
            flag = "   <- OTHER: add a rule to [fields.category] rules if it is EMS, FIRE, TRAFFIC or POLICE" if cat == "OTHER" else ""
            out.append(f"  {n:>7,}  {cat:<7}  {kind!s:.60}{flag}")
    column, pmap = p.priority, {k.casefold(): v for k, v in p.priority_map.items()} or DEFAULT_PRIORITIES
    extract = re.compile(p.priority_extract) if p.priority_extract else None
    if mapping is not None:
        spec = mapping.fields.get("priority")
        column, pmap = (spec.column if spec else None), mapping.priority_map
        extract = spec.extract if spec else None
    if column in sample.names:
        i = sample.names.index(column)
        values = Counter(row[i] for row in sample.rows if row[i])
        out += ["", f"priority values in {column!r}" + (" and the priority the mapping gives each:" if mapping else ":")]
        for value, n in values.most_common(20):
            found = extract.search(value) if extract else None
            read = (" ".join(g or "" for g in found.groups()) if found.groups() else found.group(0)).strip() if found else value
            given = pmap.get(read.casefold()) if extract is None or found else None
            flag = f"-> {given}" if given is not None else "-> none: not in the map (add it to [fields.priority] map; 1 is the highest)"
            out.append(f"  {n:>7,}  {value!r:<6} {flag}")
    return out


def report_summary(s: Summary, names: Sequence[str], masked: Sequence[str], what: str, delimiter: str = ",") -> list[str]:
    """What the mapping read and rejected, by reason, with one (masked) example row each; the last line is the verdict."""
    rejected = sum(s.rejected.values())
    out = ["", f"read ({what}): {s.calls:,} calls, {s.updates:,} incident updates; {rejected:,} rows rejected"]
    sections = (("rejected rows", s.rejected, s.examples), ("refused updates (the call is kept)", s.refused, s.refused_examples))
    for title, counts, examples in sections:
        if not counts:
            continue
        out.append(f"{title}, by reason:")
        for reason, n in counts.most_common():
            line, raw, detail = examples[reason]
            out += [
                f"  {reason}: {n:,}",
                f"    e.g. line {line}: {coarse(detail)}",
                f"    row: {masked_row(raw, names, masked, delimiter)}",
            ]
    for (name, value), n in s.unmapped.most_common(12):
        out.append(f"{name} {value!r} is not in the mapping's map: {n:,} calls read with no {name} (counted, not rejected)")
    if s.no_location:
        out.append(
            f"{s.no_location:,} calls read without usable coordinates (empty, not numbers, or 0,0), e.g. line {s.no_location_line}: "
            "the worker refuses them; check the coordinate columns if there are many"
        )
    out.append(
        f"masked in example rows: {', '.join(masked) if masked else 'none'} (columns that could identify callers); "
        "numbers cut to 3 decimals (coordinates to about 100 m)"
    )
    if s.calls:
        out.append(f"inspect: {s.calls:,} calls read; {rejected:,} rows rejected")
    elif rejected:
        reason, n = s.rejected.most_common(1)[0]
        out.append(f"inspect: none of the {rejected:,} rows was read: {n:,} {reason} ({s.examples[reason][2]})")
    else:
        out.append("inspect: no data rows")
    return out


# --------------------------------------------------------------------------- command line


def read_sample(path: str | os.PathLike[str], limit: int = DEFAULT_SAMPLE) -> Sample:
    """The first line and first ``limit`` data lines of the file at ``path`` (the rest is not read)."""
    with open(path, "rb") as f:
        return Sample.from_lines(f, limit)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.ingest.inspect",
        description=(
            "Inspect a 911 CSV export: propose a mapping file for it (columns, time formats, grain, categories, priorities) "
            "and show what the mapping reads and rejects, by reason, with an example row of each (identifying columns masked)."
        ),
        epilog="The mapping file format is described in docs/sources.md. Nothing is sent anywhere: inspect only reads the file.",
    )
    p.add_argument("path", help="the CSV export to inspect")
    p.add_argument(
        "--mapping",
        metavar="M.toml",
        help="read the file with this mapping file (or the name of a built-in mapping) instead of proposing one: "
        "for checking a mapping while you edit it",
    )
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help="the IANA time zone of times written without a UTC offset (e.g. America/Los_Angeles); "
        "goes into the proposed mapping, and overrides the mapping's zone when reading",
    )
    p.add_argument("--sample", type=_positive, default=DEFAULT_SAMPLE, metavar="N", help=f"data rows to read (default {DEFAULT_SAMPLE:,})")
    p.add_argument("--all", action="store_true", help="read the whole file for the read/rejected summary (progress bar on stderr)")
    p.add_argument("--write-mapping", metavar="OUT.toml", help="write the proposed mapping to this file (not overwritten if it exists)")
    p.add_argument("--name", help="the mapping's name, also the agency of its calls (default: from the file name)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows, at least 1; got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; ``0`` when the mapping validates, ``1`` when the proposal needs an edit first, ``2`` on an error."""
    args = build_parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"inspect: {message}", file=sys.stderr)
        return 2

    if args.timezone is not None and (error := _zone_error(args.timezone)):
        return fail(error)
    if args.write_mapping and os.path.exists(args.write_mapping):
        return fail(f"{args.write_mapping} exists; not overwritten: remove it or name another file")
    try:
        given = _load_mapping(args.mapping) if args.mapping else None
        sample = read_sample(args.path, args.sample)
        proposal = propose(sample, name=args.name or agency_name(args.path), timezone=args.timezone)
    except OSError as exc:
        return fail(f"cannot read {exc.filename or args.path}: {exc.strerror or exc}")
    except (InspectError, MappingError) as exc:
        return fail(str(exc) if isinstance(exc, MappingError) else f"{args.path}: {exc}")
    try:
        builtin: str | None = detect_format(args.path)
    except UnknownFormat:
        builtin = None
    lines = [f"inspect: {args.path}", *report_columns(sample, proposal, builtin)]
    status = 0
    chosen: Mapping | None = given
    if given is not None:
        lines += ["", f"mapping: {args.mapping} (given: no proposal made)"]
    else:
        text = render_toml(proposal)
        chosen, error = _validate(text, f"proposal for {args.path}")
        verdict = "validates" if error is None else f"DOES NOT VALIDATE YET: {error}"
        lines += ["", f"proposed mapping ({verdict}):", "", text.rstrip()]
        if error is not None:
            status = 1
            # Read the sample anyway without the placeholder zone: naive times are then rejected, and the summary shows it.
            chosen, _ = _validate(_without_placeholder(text), f"proposal for {args.path}")
        if args.write_mapping:
            with open(args.write_mapping, "x", encoding="utf-8") as f:
                f.write(text)
            lines.append(f"(written to {args.write_mapping}" + (": edit it before use)" if error else ")"))
    if chosen is None:
        lines += report_types(proposal, None, sample, None)
        print("\n".join(lines))
        return status
    try:  # the header may lack a column the mapping needs: UnknownFormat, raised at the call
        if args.all:
            from tqdm import tqdm

            rows = read_source(args.path, chosen, timezone=args.timezone)
            summary = summarize(tqdm(rows, desc=f"reading {os.path.basename(args.path)}", unit=" rows", file=sys.stderr))
            what = "the whole file"
        else:
            summary = summarize(parse_lines(sample.lines, chosen, origin=args.path, timezone=args.timezone))
            what = "the sample; --all reads the whole file"
    except UnknownFormat as exc:
        return fail(str(exc))
    lines += report_types(proposal, summary, sample, chosen)
    lines += report_summary(summary, sample.names, proposal.masked, what, sample.delimiter)
    print("\n".join(lines))
    return status


def _zone_error(zone: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the zone database, such as "Pacific"
        return f"--timezone {zone!r} is not an IANA time zone; expected a name such as America/Los_Angeles or Europe/Paris"
    return None


if __name__ == "__main__":
    sys.exit(main())
