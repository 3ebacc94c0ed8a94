'''Declarative source mappings: a TOML file says how to read one CSV export into schema-v1 events (pure).

A mapping is validated when it is loaded (:func:`load_mapping`,
:func:`parse_mapping`); :class:`MappingError` names the file, the key, the
value and what to write instead. :mod:`streams.ingest.sources` reads a file
with it. The six built-in formats are mapping files in
``streams/ingest/mappings/`` (:func:`builtin_mappings`); they are the worked
examples of every key below.

Keys
----
Top level:

``name`` (required)
    The format's name: lowercase letters, digits and ``-``. It is the
    ``source`` of every event and the prefix of ids made up for rows without
    one (``"{name}-{line}"``).
``description``
    One line saying what export this is; shown in error messages.
``grain``
    ``"call"`` (default): one row per call. ``"unit"``: one row per responding
    unit, the call id repeated on each (``fields.id`` is then required). A
    unit-grain file is grouped whole in memory, keyed by call id (one small
    record per call: its first row's fields and the earliest or latest time
    per status), and the calls are emitted at the end, in the order of each
    call's first row, rejected rows in their own line's place. Each call is
    emitted once, with its first row's fields, the first ``dispatched``,
    ``en_route`` and ``on_scene`` and the last ``closed`` over its units, each
    update naming the unit it came from. Its ``line`` and ``raw`` are its first
    row's.
``timezone``
    The IANA zone (``"America/Los_Angeles"``) of times written without a UTC
    offset. ``--timezone`` (``read_source(timezone=...)``) overrides it. With
    neither, a naive time is refused (``impossible_timestamp``). Times with an
    offset are read at their offset.
``time_formats``
    The forms every time column accepts, tried in order (default ``["iso"]``):
    ``"iso"``, ``"epoch"`` or ``"epoch_ms"`` (seconds or milliseconds since
    1970 UTC) or ``strptime`` patterns such as ``"%m/%d/%Y %I:%M:%S %p"``
    (see :mod:`streams.ingest.timeparse`). A field or status may set its own.
``status_tolerance_s``
    Clock skew allowed, in seconds (default 120, ``--status-tolerance``
    overrides it): a status time at most this much before the call's received
    time is moved to the received time (CAD subsystems' clocks differ by
    seconds); one further before is refused on its own (``Row.refused``,
    reason ``status_before_received``), the call and its other updates are
    kept.

``[layout]``:

``header``
    ``true`` (default): the first line names the columns. ``false``: no header,
    ``columns`` names the fields by position and every line must have that many.
``columns``
    Headerless: the names of the positions (required). With a header: the
    columns the export documents (optional; shown in messages).
``delimiter``
    The one character between fields (default ``","``): ``";"``, ``"\\t"``
    (tab) or ``"|"`` for exports saved that way. Fields holding it are quoted
    with ``"``, as CSV quotes commas; the header is split the same way.
``required``
    Columns a header must hold, both to pick this mapping for ``--format
    auto`` and to read a file with it. Default: every column the mapping
    reads. A column the mapping reads that is not required and absent from the
    header reads as empty.
``required_any``
    Lists of columns of which the header must hold at least one each
    (``[["category", "call_type"]]``).
``first_line``
    Headerless only: regular expressions that the named cells of the first
    line must match in full for ``--format auto`` to pick this mapping
    (``{ lat = '-?[0-9.]+' }``). Without it a headerless mapping is never
    detected, only named.

``[fields]``: each schema field, as a column name (``id = "Incident Number"``)
or a table:

``column``
    The column holding it.
``columns``
    Time fields only, instead of ``column``: the columns that together hold
    the time, in order, joined with one space before the time forms read them
    (a date and a time in two columns: ``received_at = { columns =
    ["Dispatch_Date", "Dispatch_Time"], formats = ["%m/%d/%Y %H:%M:%S"] }``
    reads ``01/01/2020`` and ``13:45:00`` as ``01/01/2020 13:45:00``). An empty
    part makes the value empty (unknown), as an empty ``column`` does. Messages
    name the joined value's columns as ``'Dispatch_Date + Dispatch_Time'``.
``value``
    A constant instead of a column (``agency = { value = "seattle-fd" }``).
``extract``
    A regular expression searched in the cell; the value is its groups joined
    by a space (the whole match when it has none). A cell where it finds
    nothing counts as empty.
``occurrence``
    ``"first"`` (default) or ``"last"`` match of ``extract``.
``fallback``
    A column read, as it is, when ``column`` is empty (or ``extract`` found
    nothing; for ``received_at``, also when what it found is not a readable
    time: Montgomery's ``desc`` holding ``2016-02-30 @ 10:00:00``).
``formats``
    Time fields: the forms, overriding ``time_formats``.

The fields: ``id`` (empty: ``"{name}-{line}"``), ``received_at`` (required;
empty: ``missing_field``), ``call_type`` (empty: ``null``), ``category``,
``priority``, ``lat`` and ``lng`` or ``location``, ``agency``, ``unit`` (named
on the row's updates). Unknown field names are errors.

``[fields.category]`` also takes:

``rules``
    An ordered list of ``{ pattern = "...", category = "EMS" }``: the first
    pattern (a case-insensitive regular expression, searched) that matches the
    category text decides. Categories: EMS, FIRE, TRAFFIC, POLICE, OTHER.
``default``
    When no rule matches: ``"keywords"`` (default,
    :func:`streams.ingest.schema.normalize_category`) or a category.

Without ``column`` the category text is the call type's column.

``[fields.priority]`` also takes:

``map``
    Source value to priority 1 (highest) .. 5, matched without regard to case
    (``{ E = 1, "3" = 1, "2" = 3, A = 2 }``). Default: ``"1"`` .. ``"5"`` as
    themselves.
``unmapped``
    ``"null"`` (default): a value not in ``map`` gives priority ``null`` and is
    listed in ``Row.unmapped``; ``"reject"``: the row is refused
    (``bad_field``).

``[fields.location]`` (instead of ``lat``/``lng``) also takes:

``form``
    ``"pair"``: ``"(47.6, -122.3)"`` (latitude first, parentheses optional);
    ``"point"``: WKT ``POINT (-122.42 37.77)`` (longitude first).

A coordinate that is empty, not a number or not finite becomes ``null`` (the
worker's validator refuses the call); ``0`` stays ``0.0``.

``[[statuses]]``: one table per status column:

``status``
    ``dispatched``, ``en_route``, ``on_scene`` or ``closed``.
``column``
    The column holding its time; an empty cell gives no update.
``columns``
    Instead of ``column``: the columns holding its time together, joined with
    one space (``columns = ["Arrival Date", "Arrival Time"]``; see
    ``fields.columns``); an empty part gives no update.
``required``
    ``true``: an empty cell refuses the row (``missing_field``). Default
    ``false``.
``before_received``
    ``"refuse"`` (default; see ``status_tolerance_s``) or ``"drop"``: a time
    before received gives no update, silently and whatever the tolerance
    (Montgomery's ``timeStamp`` is its dispatch, and comes before its ``desc``
    time on some rows).
``formats``
    Overrides ``time_formats``.

A status read from the very cell ``received_at`` was read from (its
``fallback``, say) gives no update: it would only repeat the received time.
An unreadable status time refuses the row (``impossible_timestamp``).

Example
-------
>>> m = parse_mapping("""
... name = "sf-fire-units"
... grain = "unit"
... timezone = "America/Los_Angeles"
... time_formats = ["%m/%d/%Y %I:%M:%S %p"]
... [fields]
... id = "Call Number"
... received_at = "Received DtTm"
... call_type = "Call Type"
... unit = "Unit ID"
... agency = { value = "sffd" }
... location = { column = "case_location", form = "point" }
... priority = { column = "Priority", map = { E = 1, "3" = 1, "2" = 3, A = 2, B = 3, C = 4 } }
... [[statuses]]
... status = "dispatched"
... column = "Dispatch DtTm"
... """)
>>> m.name, m.grain, m.fields["location"].form, m.priority_map["e"], sorted(m.required)[:2]
('sf-fire-units', 'unit', 'point', 1, ['Call Number', 'Call Type'])
'''

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.ingest.schema import Category, Status
from streams.ingest.timeparse import check_format

__all__ = [
    "CategoryRule", "FieldSpec", "Mapping", "MappingError", "StatusSpec", "builtin_mappings", "joined_name", "load_mapping",
    "parse_mapping",
]  # fmt: skip

FIELD_NAMES = ("id", "received_at", "category", "call_type", "priority", "lat", "lng", "location", "agency", "unit")
TIME_FIELDS = frozenset({"received_at"})
DEFAULT_TOLERANCE_S = 120.0
DEFAULT_PRIORITIES = {str(p): p for p in range(1, 6)}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def joined_name(columns: tuple[str, ...] | list[str]) -> str:
    """The name messages give a time read from several columns joined (``columns = [...]``).

    >>> joined_name(["Dispatch_Date", "Dispatch_Time"])
    'Dispatch_Date + Dispatch_Time'
    """
    return " + ".join(columns)


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the file, the key, the value and what to write."""


@dataclass(frozen=True)
class CategoryRule:
    """A case-insensitive pattern searched in the category text, and the category it gives."""

    pattern: re.Pattern[str]
    category: Category


@dataclass(frozen=True)
class FieldSpec:
    """Where one schema field comes from (see the module's keys).

    ``parts`` are the columns a ``columns = [...]`` time field joins; ``column`` is then their :func:`joined_name`, the
    key under which the engine holds the joined text.
    """

    column: str | None = None
    value: str | None = None
    extract: re.Pattern[str] | None = None
    occurrence: str = "first"
    fallback: str | None = None
    formats: tuple[str, ...] | None = None
    form: str | None = None  # location only: "pair" or "point"
    parts: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of the file this field reads."""
        return tuple(c for c in (*(self.parts or (self.column,)), self.fallback) if c)


@dataclass(frozen=True)
class StatusSpec:
    """A status column: its time gives an incident update (``parts``, ``column``: as in :class:`FieldSpec`)."""

    status: Status
    column: str
    required: bool = False
    before_received: str = "refuse"
    formats: tuple[str, ...] | None = None
    parts: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of the file this status reads."""
        return self.parts or (self.column,)


@dataclass(frozen=True)
class Mapping:
    """A validated mapping; build it with :func:`parse_mapping` or :func:`load_mapping`."""

    name: str
    description: str
    origin: str
    grain: str
    timezone: str | None
    time_formats: tuple[str, ...]
    status_tolerance_s: float
    header: bool
    columns: tuple[str, ...]
    required: frozenset[str]
    required_any: tuple[frozenset[str], ...]
    first_line: tuple[tuple[str, re.Pattern[str]], ...]
    fields: dict[str, FieldSpec] = field(hash=False, compare=False)
    category_rules: tuple[CategoryRule, ...]
    category_default: Category | None  # None: the keyword normalizer
    priority_map: dict[str, int] = field(hash=False, compare=False)
    priority_unmapped: str
    statuses: tuple[StatusSpec, ...]
    delimiter: str = ","

    @property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def summary(self) -> str:
        """The layout in a few words, for messages."""
        if not self.header:
            return f"no header; {len(self.columns)} columns: {','.join(self.columns)}"
        shown = self.columns or tuple(sorted(self.required))
        sep = "" if self.delimiter == "," else f" (separated by {self.delimiter!r})"
        return "header " + ",".join(shown) + sep

    @property
    def joins(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The times read from several columns: ``(joined name, columns)``, each once."""
        found: dict[str, tuple[str, ...]] = {}
        specs: list[FieldSpec | StatusSpec] = [*self.fields.values(), *self.statuses]
        for spec in specs:
            if spec.parts and spec.column:
                found[spec.column] = spec.parts
        return tuple(found.items())

    def reads(self) -> tuple[str, ...]:
        """Every column the mapping reads, in a stable order."""
        seen: dict[str, None] = {}
        for spec in self.fields.values():
            for c in spec.columns:
                seen[c] = None
        for s in self.statuses:
            for c in s.columns:
                seen[c] = None
        return tuple(seen)


# --------------------------------------------------------------------------- loading


def load_mapping(path: str | os.PathLike[str]) -> Mapping:
    """The mapping in the TOML file at ``path``; :class:`MappingError` naming the file when it is not a valid mapping."""
    origin = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise MappingError(f"{origin}: cannot read the mapping ({exc.strerror}); expected a TOML mapping file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(f"{origin}: not UTF-8 (byte {exc.start}); save the mapping as UTF-8") from None
    return parse_mapping(text, origin)


def parse_mapping(text: str, origin: str = "<mapping>") -> Mapping:
    """The mapping in TOML ``text``; ``origin`` names it in messages.

    >>> try:
    ...     parse_mapping('name = "x"', "m.toml")
    ... except MappingError as exc:
    ...     print(str(exc)[:60])
    m.toml: [fields] received_at is missing; name the column hol
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{origin}: not valid TOML ({exc}); fix the syntax at that place") from None
    return _Builder(origin).build(doc)


_BUILTIN_NAMES = ("montgomery-pa", "montgomery-pa-sample", "cincinnati-fire", "seattle-fire", "seattle-fire-soda", "watchfloor")
_builtins: dict[str, Mapping] | None = None


def builtin_mappings() -> dict[str, Mapping]:
    """The mappings shipped in ``streams/ingest/mappings/``, by name, in the order detection tries them.

    >>> list(builtin_mappings())
    ['montgomery-pa', 'montgomery-pa-sample', 'cincinnati-fire', 'seattle-fire', 'seattle-fire-soda', 'watchfloor']
    """
    global _builtins
    if _builtins is None:
        folder = resources.files("streams.ingest") / "mappings"
        loaded = {}
        for name in _BUILTIN_NAMES:
            resource = folder / f"{name}.toml"
            m = parse_mapping(resource.read_text(encoding="utf-8"), f"streams/ingest/mappings/{name}.toml")
            if m.name != name:
                raise MappingError(f"streams/ingest/mappings/{name}.toml: name is {m.name!r}; expected {name!r}")
            loaded[name] = m
        _builtins = loaded
    return dict(_builtins)


class _Builder:
    """Validates a parsed TOML document into a :class:`Mapping`, naming the key of every error."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, message: str) -> MappingError:
        return MappingError(f"{self.origin}: {key} {message}")

    def _table(self, doc: AbstractMapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"is {value!r:.60}; expected a table [{where}{key}]")
        return value

    def _known(self, table: AbstractMapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(f"{where}{unknown[0]}", f"is not a known key; expected one of: {', '.join(sorted(allowed))}")

    def _str(self, table: AbstractMapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(f"{where}{key}", f"is {value!r:.60}; expected a non-empty string")
        return value

    def _str_list(self, table: AbstractMapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}{key}", f"is {value!r:.80}; expected a list of non-empty strings")
        return tuple(value)

    def _formats(self, table: AbstractMapping[str, Any], where: str) -> tuple[str, ...] | None:
        key = "formats" if where else "time_formats"
        formats = self._str_list(table, key, where)
        if formats is not None:
            if not formats:
                raise self.fail(f"{where}{key}", 'is empty; expected at least one form, e.g. ["iso"]')
            for f in formats:
                why = check_format(f)
                if why:
                    raise self.fail(f"{where}{key}", why)
        return formats

    def _regex(self, text: str, key: str, flags: int = 0) -> re.Pattern[str]:
        try:
            return re.compile(text, flags)
        except re.error as exc:
            raise self.fail(key, f"is {text!r:.80}, not a regular expression ({exc}); write a Python regular expression") from None

    def build(self, doc: dict[str, Any]) -> Mapping:
        top = {"name", "description", "grain", "timezone", "time_formats", "status_tolerance_s", "layout", "fields", "statuses"}
        self._known(doc, top, "")
        name = self._str(doc, "name", "")
        if name is None:
            raise self.fail("name", 'is missing; give the format a name, e.g. name = "sf-fire-units"')
        if not _NAME.fullmatch(name):
            raise self.fail("name", f"is {name!r}; expected lowercase letters, digits and '-', e.g. 'sf-fire-units'")
        description = self._str(doc, "description", "") or ""
        grain = doc.get("grain", "call")
        if grain not in ("call", "unit"):
            raise self.fail("grain", f'is {grain!r:.40}; expected "call" (one row per call) or "unit" (one row per responding unit)')
        timezone = self._str(doc, "timezone", "")
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise self.fail(
                    "timezone", f"is {timezone!r:.60}, not an IANA time zone; expected a name such as 'America/Los_Angeles'"
                ) from None
        time_formats = self._formats(doc, "") or ("iso",)
        tolerance = doc.get("status_tolerance_s", DEFAULT_TOLERANCE_S)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < float("inf"):
            raise self.fail(
                "status_tolerance_s", f"is {tolerance!r:.40}; expected seconds, a number >= 0 (default {DEFAULT_TOLERANCE_S:g})"
            )

        fields = self._fields(self._table(doc, "fields", ""), grain)
        rules, default = self._category(self._table(doc, "fields", "").get("category"))
        pmap, unmapped = self._priority(self._table(doc, "fields", "").get("priority"))
        statuses = self._statuses(doc.get("statuses", []))

        layout = self._table(doc, "layout", "")
        self._known(layout, {"header", "columns", "required", "required_any", "first_line", "delimiter"}, "layout.")
        delimiter = layout.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise self.fail(
                "layout.delimiter", f'is {delimiter!r:.40}; expected one character other than a quote or a line end, e.g. ";" or "\\t"'
            )
        header = layout.get("header", True)
        if not isinstance(header, bool):
            raise self.fail("layout.header", f"is {header!r:.40}; expected true (a header line) or false")
        columns = self._str_list(layout, "columns", "layout.") or ()
        reads = [c for spec in fields.values() for c in spec.columns] + [c for s in statuses for c in s.columns]
        if not header:
            if not columns:
                raise self.fail("layout.columns", "is missing; a file without a header needs the names of its columns by position")
            missing = sorted(set(reads) - set(columns))
            if missing:
                raise self.fail(
                    "layout.columns", f"lacks {', '.join(map(repr, missing))}, read by [fields]/[[statuses]]; name every position"
                )
        required_list = self._str_list(layout, "required", "layout.")
        required = frozenset(required_list if required_list is not None else (reads if header else ()))
        any_raw = layout.get("required_any", [])
        if not isinstance(any_raw, list) or not all(isinstance(g, list) and g and all(isinstance(c, str) for c in g) for g in any_raw):
            raise self.fail(
                "layout.required_any", f'is {any_raw!r:.80}; expected a list of lists of columns, e.g. [["category", "call_type"]]'
            )
        first_raw = self._table(layout, "first_line", "layout.")
        if first_raw and header:
            raise self.fail("layout.first_line", "is for files without a header; with a header, detection uses layout.required")
        first_line = []
        for column, pattern in first_raw.items():
            if column not in columns:
                raise self.fail(f"layout.first_line.{column}", f"is not in layout.columns ({', '.join(columns)})")
            if not isinstance(pattern, str):
                raise self.fail(f"layout.first_line.{column}", f"is {pattern!r:.40}; expected a regular expression")
            first_line.append((column, self._regex(pattern, f"layout.first_line.{column}")))
        return Mapping(
            name=name,
            description=description,
            origin=self.origin,
            grain=grain,
            timezone=timezone,
            time_formats=time_formats,
            status_tolerance_s=float(tolerance),
            header=header,
            columns=columns,
            required=required,
            required_any=tuple(frozenset(g) for g in any_raw),
            first_line=tuple(first_line),
            fields=fields,
            category_rules=rules,
            category_default=default,
            priority_map=pmap,
            priority_unmapped=unmapped,
            statuses=statuses,
            delimiter=delimiter,
        )

    def _fields(self, table: dict[str, Any], grain: str) -> dict[str, FieldSpec]:
        self._known(table, set(FIELD_NAMES), "fields.")
        out: dict[str, FieldSpec] = {}
        for name, raw in table.items():
            where = f"fields.{name}."
            if isinstance(raw, str):
                raw = {"column": raw}
            if not isinstance(raw, dict):
                raise self.fail(f"fields.{name}", f'is {raw!r:.60}; expected a column name or a table, e.g. {name} = {{ column = "..." }}')
            allowed = {"column", "value", "extract", "occurrence", "fallback"}
            if name in TIME_FIELDS:
                allowed |= {"formats", "columns"}
            if name == "category":
                allowed |= {"rules", "default"}
            if name == "priority":
                allowed |= {"map", "unmapped"}
            if name == "location":
                allowed.add("form")
            self._known(raw, allowed, where)
            column, parts = self._column_or_columns(raw, f"fields.{name}")
            value = self._str(raw, "value", where)
            if value is not None and name not in ("agency", "unit"):
                raise self.fail(f"{where}value", "is only for agency and unit; name a column for this field")
            if (column is None) == (value is None) and not (name == "category" and column is None):
                raise self.fail(f"fields.{name}", 'needs exactly one of column = "..." or value = "..."')
            extract_text = self._str(raw, "extract", where)
            extract = self._regex(extract_text, f"{where}extract") if extract_text else None
            occurrence = raw.get("occurrence", "first")
            if occurrence not in ("first", "last"):
                raise self.fail(f"{where}occurrence", f'is {occurrence!r:.40}; expected "first" or "last"')
            form = raw.get("form")
            if name == "location" and form not in ("pair", "point"):
                raise self.fail(f"{where}form", f'is {form!r:.40}; expected "pair" for "(lat, lng)" or "point" for WKT "POINT (lng lat)"')
            out[name] = FieldSpec(
                column=column,
                value=value,
                extract=extract,
                occurrence=occurrence,
                fallback=self._str(raw, "fallback", where),
                formats=self._formats(raw, where) if name in TIME_FIELDS else None,
                form=form,
                parts=parts,
            )
        if "received_at" not in out:
            raise self.fail(
                "[fields] received_at", 'is missing; name the column holding when the call was received, e.g. received_at = "Received DtTm"'
            )
        if "location" in out and ("lat" in out or "lng" in out):
            raise self.fail("fields.location", "and fields.lat/lng both given; use either one combined column or two")
        if "location" not in out and ("lat" in out) != ("lng" in out):
            raise self.fail("fields.lat" if "lat" not in out else "fields.lng", "is missing; give both lat and lng, or one location column")
        if grain == "unit" and "id" not in out:
            raise self.fail("fields.id", 'is missing; grain = "unit" groups the rows of a call by its id column')
        if "call_type" not in out and "category" not in out:
            raise self.fail("[fields] call_type", "and category are both missing; name the column holding the call's type")
        return out

    def _column_or_columns(self, raw: AbstractMapping[str, Any], key: str) -> tuple[str | None, tuple[str, ...]]:
        """``column``, or the :func:`joined_name` of ``columns`` and those columns; naming ``key`` when both are given."""
        column = self._str(raw, "column", f"{key}.")
        if "columns" not in raw:
            return column, ()
        if column is not None:
            raise self.fail(
                key,
                f"has both column = {column!r:.60} and columns = {raw['columns']!r:.80}; keep one: column for a time in one column, "
                "columns for a time split over several (a date and a time)",
            )
        parts = self._str_list(raw, "columns", f"{key}.") or ()
        if len(parts) < 2:
            raise self.fail(
                f"{key}.columns",
                f'is {list(parts)!r:.80}; expected two or more columns, e.g. ["Call Date", "Call Time"] '
                '(for one column write column = "...")',
            )
        if len(set(parts)) != len(parts):
            raise self.fail(f"{key}.columns", f"is {list(parts)!r:.80}; names a column twice")
        return joined_name(parts), parts

    def _category(self, raw: object) -> tuple[tuple[CategoryRule, ...], Category | None]:
        if not isinstance(raw, dict):
            return (), None
        rules_raw = raw.get("rules", [])
        if not isinstance(rules_raw, list):
            raise self.fail("fields.category.rules", f'is {rules_raw!r:.60}; expected a list of {{ pattern = "...", category = "EMS" }}')
        rules = []
        for i, rule in enumerate(rules_raw):
            key = f"fields.category.rules[{i}]"
            if not isinstance(rule, dict) or set(rule) != {"pattern", "category"} or not isinstance(rule["pattern"], str):
                raise self.fail(key, f'is {rule!r:.80}; expected {{ pattern = "...", category = "EMS" }}')
            rules.append(
                CategoryRule(
                    self._regex(rule["pattern"], f"{key}.pattern", re.IGNORECASE), self._category_name(rule["category"], f"{key}.category")
                )
            )
        default = raw.get("default", "keywords")
        return tuple(rules), None if default == "keywords" else self._category_name(default, "fields.category.default", keywords=True)

    def _category_name(self, value: object, key: str, keywords: bool = False) -> Category:
        names = [c.value for c in Category]
        if isinstance(value, str) and value.upper() in names:
            return Category(value.upper())
        expected = ", ".join(names) + (' or "keywords"' if keywords else "")
        raise self.fail(key, f"is {value!r:.40}; expected one of {expected}")

    def _priority(self, raw: object) -> tuple[dict[str, int], str]:
        if not isinstance(raw, dict):
            return dict(DEFAULT_PRIORITIES), "null"
        pmap_raw = raw.get("map", DEFAULT_PRIORITIES)
        if not isinstance(pmap_raw, dict):
            raise self.fail(
                "fields.priority.map", f'is {pmap_raw!r:.60}; expected a table of source value = 1..5, e.g. {{ E = 1, "3" = 1 }}'
            )
        pmap = {}
        for key, value in pmap_raw.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise self.fail(f"fields.priority.map.{key}", f"is {value!r:.40}; expected an integer 1 (highest) to 5")
            pmap[str(key).strip().casefold()] = value
        unmapped = raw.get("unmapped", "null")
        if unmapped not in ("null", "reject"):
            raise self.fail("fields.priority.unmapped", f'is {unmapped!r:.40}; expected "null" (priority unknown, row kept) or "reject"')
        return pmap, unmapped

    def _statuses(self, raw: object) -> tuple[StatusSpec, ...]:
        if not isinstance(raw, list):
            raise self.fail("statuses", f"is {raw!r:.60}; expected [[statuses]] tables")
        out = []
        names = [s.value for s in Status]
        for i, item in enumerate(raw):
            where = f"statuses[{i}]."
            if not isinstance(item, dict):
                raise self.fail(f"statuses[{i}]", f"is {item!r:.60}; expected a table with status and column")
            self._known(item, {"status", "column", "columns", "required", "before_received", "formats"}, where)
            status = item.get("status")
            if status not in names:
                raise self.fail(f"{where}status", f"is {status!r:.40}; expected one of {', '.join(names)}")
            column, parts = self._column_or_columns(item, f"statuses[{i}]")
            if column is None:
                raise self.fail(f"{where}column", 'is missing; name the column holding this status\'s time (or columns = ["date", "time"])')
            required = item.get("required", False)
            if not isinstance(required, bool):
                raise self.fail(f"{where}required", f"is {required!r:.40}; expected true or false")
            before = item.get("before_received", "refuse")
            if before not in ("refuse", "drop"):
                raise self.fail(f"{where}before_received", f'is {before!r:.40}; expected "refuse" (default) or "drop"')
            out.append(StatusSpec(Status(status), column, required, before, self._formats(item, where), parts))
        return tuple(out)
