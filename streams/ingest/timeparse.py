"""Read the times of a source's cells: ISO 8601 or ``strptime`` patterns, naive times in an IANA zone (pure).

A source mapping (:mod:`streams.ingest.mapping`) names, per time column, the
forms it accepts (``time_formats``) and the zone of times written without a UTC
offset (``timezone``). :class:`TimeReader` turns one cell into epoch seconds
or raises :class:`TimeParseError` with a reason and a detail naming the
column, the value and what was expected.

Forms
-----
``"iso"``
    ISO 8601 with a date and a time, ``T`` or a space between them, seconds,
    fractions and a UTC offset (``Z``, ``+00:00``, ``-0500``) optional:
    ``2016-01-23T16:02:11Z``, ``2015-12-10 17:40:00``,
    ``2026-05-24T23:50:57.000``. Hour 24 is hour 0 of the next day (Seattle
    writes ``2011-10-24T24:22:00+0000``).
``"epoch"`` and ``"epoch_ms"``
    Seconds or milliseconds since 1970-01-01 UTC, as ArcGIS feature services
    and many CAD databases export them (``1609459200``, ``1609459200000``);
    fractions allowed. They carry no zone: they are UTC instants.
any other text
    A :meth:`datetime.datetime.strptime` pattern, for example
    ``"%m/%d/%Y %I:%M:%S %p"`` (``01/21/2022 01:43:00 PM``) or
    ``"%m/%d/%Y %I:%M:%S %p %z"`` (``11/09/2011 10:04:00 PM +0000``). ``%z``
    also reads an offset of whole hours written without minutes, as PostgreSQL
    and ArcGIS exports write UTC (``2021/01/01 05:00:00+00``, Detroit).

The forms are tried in order; the first that reads the cell wins.

Zones
-----
A time with an offset is read at that offset, whatever the zone. A naive time
is a wall time in the zone: one that a daylight-saving change skips does not
exist and is refused (``impossible_timestamp``); one that occurs twice (the
autumn change) is read as its first occurrence. Without a zone a naive time is
refused: the detail says to pass ``--timezone ZONE`` or set ``timezone`` in
the mapping. Offsets are cached per zone and wall hour (a file's rows share a
few thousand hours); an hour in which a zone changes its offset at other
than the full hour is computed exactly, time by time.

Examples
--------
>>> from zoneinfo import ZoneInfo
>>> reader = TimeReader(("%m/%d/%Y %I:%M:%S %p",), ZoneInfo("America/Los_Angeles"))
>>> reader.read("01/21/2022 01:43:00 PM", "Datetime")  # 21:43 UTC
1642801380.0
>>> TimeReader(("iso",), None).read("2011-10-24T24:22:00+0000", "Datetime")
1319502120.0
>>> TimeReader(("%Y/%m/%d %H:%M:%S%z",), None).read("2021/01/01 05:00:00+00", "call_timestamp")
1609477200.0
>>> TimeReader(("epoch_ms",), None).read("1609459200000", "CallDate")
1609459200.0
>>> try:
...     TimeReader(("iso",), None).read("2016-01-23 16:10:00", "received_at")
... except TimeParseError as exc:
...     print(exc.detail)
column 'received_at' is '2016-01-23 16:10:00': no UTC offset and no time zone: pass --timezone ZONE or set timezone in the mapping
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from streams.ingest.schema import Reason

__all__ = ["TimeParseError", "TimeReader", "describe_formats", "local_to_epoch"]


class TimeParseError(ValueError):
    """A cell that is not a time in the forms asked for; ``reason`` a :class:`Reason`, ``detail`` the words for an operator."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?")
_HOUR_24 = re.compile(r"(\d{4}-\d{2}-\d{2}[T ])24(?=:)")
_EPOCH = datetime(1970, 1, 1)
_HOUR_OFFSET = re.compile(r"[+-]\d{2}$")  # "+00": an offset without minutes, which %z does not read

_PATTERN_WORDS = {
    "%Y": "YYYY",
    "%m": "MM",
    "%d": "DD",
    "%H": "hh",
    "%I": "hh",
    "%M": "mm",
    "%S": "ss",
    "%p": "AM",
    "%z": "+0000",
    "%f": "ffffff",
}
_EPOCH_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: Forms that count from the epoch, and the seconds in one of their units.
EPOCH_FORMS = {"epoch": 1.0, "epoch_ms": 1000.0}
_PATTERN_TOKEN = re.compile("|".join(re.escape(k) for k in _PATTERN_WORDS))


def _describe(fmt: str) -> str:
    """Words for one form.

    >>> _describe("%m/%d/%Y %I:%M:%S %p")
    'MM/DD/YYYY hh:mm:ss AM'
    """
    if fmt == "iso":
        return "ISO 8601 YYYY-MM-DD hh:mm:ss (T or space; seconds, fractions and a UTC offset optional)"
    if fmt in EPOCH_FORMS:
        return f"{'seconds' if fmt == 'epoch' else 'milliseconds'} since 1970-01-01 UTC"
    return _PATTERN_TOKEN.sub(lambda m: _PATTERN_WORDS[m.group(0)], fmt)


def describe_formats(formats: Sequence[str]) -> str:
    """The forms in words, for error messages.

    >>> describe_formats(["%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M:%S %p %z"])
    'YYYY-MM-DD hh:mm or MM/DD/YYYY hh:mm:ss AM +0000'
    """
    return " or ".join(_describe(f) for f in formats)


def fromiso(text: str) -> datetime:
    """``datetime.fromisoformat`` that also reads hour 24 as hour 0 of the next day.

    >>> fromiso("2011-10-24T24:22:00+0000").isoformat()
    '2011-10-25T00:22:00+00:00'
    """
    m = _HOUR_24.match(text)
    if m is None:
        return datetime.fromisoformat(text)
    return datetime.fromisoformat(f"{m.group(1)}00{text[m.end() :]}") + timedelta(days=1)


def check_format(fmt: str) -> str | None:
    """Why ``fmt`` is not a usable form, or ``None`` when it is.

    >>> check_format("iso") is None, check_format("%m/%d/%Y") is None
    (True, True)
    >>> check_format("%Q").split(" (")[0]
    "'%Q' is not a strptime pattern"
    """
    if fmt == "iso" or fmt in EPOCH_FORMS:
        return None
    if not fmt.strip():
        return "a time format is empty; expected 'iso' or a strptime pattern such as '%m/%d/%Y %I:%M:%S %p'"
    try:
        datetime.strptime("", fmt)
    except ValueError as exc:
        if "bad directive" in str(exc) or "stray %" in str(exc):
            return f"{fmt!r} is not a strptime pattern ({exc}); expected 'iso' or a pattern such as '%m/%d/%Y %I:%M:%S %p'"
    return None


_MIXED = object()  # a wall hour in which the zone's offset changes at other than the full hour


@functools.lru_cache(maxsize=65536)
def _hour_offset(zone: ZoneInfo, year: int, month: int, day: int, hour: int) -> float | None | object:
    """UTC offset in seconds of a wall-clock hour of ``zone``; ``None`` for an hour a change skips; ``_MIXED`` otherwise.

    Checked at the hour's first and last second: when both exist and share
    their offset (the first occurrence's, for an hour that occurs twice), the
    whole hour has it.
    """
    start = datetime(year, month, day, hour)
    ends = [_exact_offset(zone, start), _exact_offset(zone, start + timedelta(minutes=59, seconds=59))]
    if ends[0] == ends[1]:
        return ends[0]
    return _MIXED


def _exact_offset(zone: ZoneInfo, naive: datetime) -> float | None:
    aware = naive.replace(tzinfo=zone)
    # A wall time in a spring-forward gap does not survive the round trip.
    if datetime.fromtimestamp(aware.timestamp(), zone).replace(tzinfo=None) != naive:
        return None
    return (naive - _EPOCH).total_seconds() - aware.timestamp()


def local_to_epoch(naive: datetime, zone: ZoneInfo) -> float | None:
    """Epoch seconds of a wall time in ``zone``, or ``None`` when that wall time does not exist.

    >>> ny = ZoneInfo("America/New_York")
    >>> local_to_epoch(datetime(2016, 11, 6, 1, 30), ny)  # twice that night: the first, 05:30Z
    1478410200.0
    >>> local_to_epoch(datetime(2016, 3, 13, 2, 30), ny) is None
    True
    """
    offset = _hour_offset(zone, naive.year, naive.month, naive.day, naive.hour)
    if isinstance(offset, float):
        return (naive - _EPOCH).total_seconds() - offset
    if offset is _MIXED:
        exact = _exact_offset(zone, naive.replace(tzinfo=None))
        return None if exact is None else (naive - _EPOCH).total_seconds() - exact
    return None


class TimeReader:
    """Reads one time column: the forms to try, in order, and the zone of naive times (or ``None``)."""

    __slots__ = ("_iso_only", "expected", "formats", "zone")

    def __init__(self, formats: Sequence[str], zone: ZoneInfo | None) -> None:
        if not formats:
            raise ValueError("a time column needs at least one form")
        self.formats = tuple(formats)
        self.zone = zone
        self.expected = describe_formats(self.formats)
        self._iso_only = self.formats == ("iso",)

    def parse(self, text: str, column: str) -> datetime:
        """The cell as written (naive or aware); :class:`TimeParseError` when no form reads it."""
        error: str | None = None
        for fmt in self.formats:
            try:
                if fmt == "iso":
                    if _ISO.fullmatch(text) is None:
                        continue
                    return fromiso(text)
                if fmt in EPOCH_FORMS:
                    if _EPOCH_NUMBER.fullmatch(text) is None:
                        continue
                    return datetime.fromtimestamp(float(text) / EPOCH_FORMS[fmt], UTC)  # out of range: OverflowError, ValueError
                if fmt.endswith("%z") and _HOUR_OFFSET.search(text):
                    return datetime.strptime(text + "00", fmt)
                return datetime.strptime(text, fmt)
            except (ValueError, OverflowError) as exc:
                error = str(exc)
        why = f", not a real time ({error})" if error and (self._iso_only or "does not match" not in error) else ""
        raise TimeParseError(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}{why}; expected {self.expected}")

    def read(self, text: str, column: str) -> float:
        """Epoch seconds of a non-empty cell; :class:`TimeParseError` when it is not a time or has no zone to be read in."""
        if self._iso_only and _ISO.fullmatch(text) is not None and _HOUR_24.match(text) is None:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                dt = self.parse(text, column)  # raises, saying why
        else:
            dt = self.parse(text, column)
        if dt.tzinfo is not None:
            try:
                return dt.timestamp()
            except (ValueError, OverflowError) as exc:
                raise TimeParseError(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}, not a real time ({exc})") from None
        if self.zone is None:
            raise TimeParseError(
                Reason.IMPOSSIBLE_TIMESTAMP,
                f"column {column!r} is {text!r:.60}: no UTC offset and no time zone: pass --timezone ZONE or set timezone in the mapping",
            )
        try:
            ts = local_to_epoch(dt, self.zone)
        except (ValueError, OverflowError) as exc:
            raise TimeParseError(Reason.IMPOSSIBLE_TIMESTAMP, f"column {column!r} is {text!r:.60}, not a real time ({exc})") from None
        if ts is None:
            raise TimeParseError(
                Reason.IMPOSSIBLE_TIMESTAMP,
                f"column {column!r} is {text!r}, a wall time skipped by the daylight-saving change in {self.zone.key}",
            )
        return ts
