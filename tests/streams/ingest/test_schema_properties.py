"""Hostile input, property-tested: nothing crashes, nothing disappears (README, "Bad input").

The pure properties (no I/O) generate valid records, records with one or more
defects, and plain junk, and check the functions that decide acceptance:

- ``parse_event`` returns a record or raises :class:`InvalidRecord` with a
  documented reason and a readable detail, whatever the bytes;
- a defect is refused with the reason that names it, and the detail names the field;
- a valid record is accepted with its values, and its canonical encoding too;
- ``plan_batch`` accounts for every record of a mixed batch exactly once
  (skipped as redelivered, refused, or counted) and writes no caller detail;
- the dead-letter envelope is strict JSON that round-trips and carries no
  field the schema drops.

The last test sends a few hundred generated hostile records, interleaved with
valid calls, through the real broker and worker process.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import h3
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import strategies as st

from streams.counting.keys import Keys
from streams.counting.planner import (
    CALL,
    UPDATE,
    DeadLetter,
    Incoming,
    PlanConfig,
    Snapshot,
    decode_ops,
    encode_deadletter,
    parse_batch,
    plan_batch,
    referenced_calls,
)
from streams.ingest.schema import (
    EARLIEST_EVENT_TIME,
    MAX_CLOCK_SKEW_S,
    MAX_ID_LENGTH,
    MAX_RECORD_BYTES,
    MAX_TEXT_LENGTH,
    Call,
    Category,
    IncidentUpdate,
    InvalidRecord,
    Jurisdiction,
    Parsed,
    Reason,
    Status,
    encode,
    format_time,
    parse_event,
)

#: The validating clock of the pure tests (2033-05-18).
NOW = 2e9
#: The newest event time a generated valid record has (2023-11-14): in the past of NOW and of the worker's clock.
LATEST = 1.7e9
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Montgomery County, PA, as WF_JURISDICTION spells it in the integration test.
BOX_TEXT = "39.9,-75.7,40.5,-75.0"
BOX = Jurisdiction.parse(BOX_TEXT)
#: Every value of a non-schema key carries this marker; it must never reach a write, a point or a detail.
PII = "CALLER-SECRET"
KINDS = (CALL, UPDATE)
ALL_REASONS = frozenset(Reason)

# The schema as the README states it (an oracle written here, not imported from schema.py).
FIELDS = {
    CALL: frozenset({"type", "v", "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency", "source"}),
    UPDATE: frozenset({"type", "v", "call_id", "status", "at", "unit", "source"}),
}
REQUIRED = {
    CALL: ("id", "received_at", "category", "call_type", "lat", "lng", "agency", "source"),
    UPDATE: ("call_id", "status", "at", "source"),
}
#: Text fields and their length limits (``unit`` may also be null or absent).
TEXT = {
    CALL: {"id": MAX_ID_LENGTH, "received_at": MAX_TEXT_LENGTH, "category": MAX_TEXT_LENGTH, "call_type": MAX_TEXT_LENGTH,
           "agency": MAX_TEXT_LENGTH, "source": MAX_TEXT_LENGTH},
    UPDATE: {"call_id": MAX_ID_LENGTH, "status": MAX_TEXT_LENGTH, "at": MAX_TEXT_LENGTH, "unit": MAX_TEXT_LENGTH,
             "source": MAX_TEXT_LENGTH},
}  # fmt: skip
TIME_FIELD = {CALL: "received_at", UPDATE: "at"}
ENVELOPE = frozenset({"v", "reason", "detail", "topic", "partition", "offset", "refused_at", "original_b64", "original_truncated"})
#: Kafka's default largest message (broker ``message.max.bytes``, producer ``max_request_size``).
KAFKA_MAX_MESSAGE = 1_000_000

#: Marks a field to delete in a patch.
ABSENT = object()


# --------------------------------------------------------------------------- strategies: valid records

PRINTABLE = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ")
#: Characters ``str.isprintable`` refuses: controls, format, surrogates, private use, separators other than the space.
UNPRINTABLE = st.characters(categories=("Cc", "Cf", "Cs", "Co", "Zl", "Zp", "Zs"), exclude_characters=" ")


def texts(limit: int = MAX_TEXT_LENGTH) -> st.SearchStrategy[str]:
    """Non-blank printable text of at most ``limit`` characters (what ``_text`` accepts)."""
    return st.text(PRINTABLE, min_size=1, max_size=limit).filter(str.strip)


@st.composite
def iso_times(draw, lo: float = EARLIEST_EVENT_TIME, hi: float = LATEST) -> tuple[str, float]:
    """An ISO 8601 time with an offset between ``lo`` and ``hi`` (epoch seconds), and the instant it names."""
    unit = draw(st.sampled_from([1_000_000, 1_000, 1]))  # whole seconds, milliseconds, microseconds
    ticks = draw(st.integers(math.ceil(lo * 1_000_000 / unit), math.floor(hi * 1_000_000 / unit)))
    us = ticks * unit
    offset = timedelta(minutes=draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
    local = (EPOCH + timedelta(microseconds=us)).astimezone(timezone(offset))
    text = local.isoformat(timespec={1_000_000: "seconds", 1_000: "milliseconds", 1: "microseconds"}[unit])
    if not offset and draw(st.booleans()):
        text = text[: -len("+00:00")] + "Z"
    return text, us / 1_000_000


@st.composite
def coordinates(draw, box: Jurisdiction | None) -> tuple[float, float]:
    """A place on Earth (inside ``box`` when given), never the (0, 0) placeholder; floats or integers."""
    if box is None:
        lat = draw(st.floats(-90, 90) | st.integers(-90, 90))
        lng = st.floats(-180, 180) | st.integers(-180, 180)
        return lat, draw(lng.filter(bool) if lat == 0 else lng)
    lat = st.floats(box.min_lat, box.max_lat) | st.integers(math.ceil(box.min_lat), math.floor(box.max_lat))
    lng = st.floats(box.min_lng, box.max_lng) | st.integers(math.ceil(box.min_lng), math.floor(box.max_lng))
    return draw(lat), draw(lng)


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=12)
#: Any JSON value, nested junk included (floats may be NaN or infinite: Python writes and reads them).
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8
)
PII_VALUES = st.recursive(
    st.text(max_size=10).map(lambda s: f"{s} {PII}"),
    lambda c: st.lists(c, min_size=1, max_size=2) | st.dictionaries(st.text(max_size=5), c, min_size=1, max_size=2),
    max_leaves=3,
)
PII_KEYS = st.sampled_from(["caller_name", "phone", "address", "callback_number", "narrative", "email"]) | st.text(min_size=1, max_size=10)


def extras(kind: str) -> st.SearchStrategy[dict]:
    """Keys outside the schema (caller details, anything), each value marked with :data:`PII`."""
    return st.dictionaries(PII_KEYS.filter(lambda k: k not in FIELDS[kind]), PII_VALUES, max_size=3)


@dataclass
class Record:
    """A generated record before serialization, and the instant its time field names."""

    kind: str
    obj: dict
    time: float


@st.composite
def valid_calls(draw, box: Jurisdiction | None = None) -> Record:
    text, ts = draw(iso_times())
    lat, lng = draw(coordinates(box))
    obj = {
        "type": "call", "v": 1, "id": draw(texts(MAX_ID_LENGTH)), "received_at": text,
        "category": draw(st.sampled_from(Category)).value, "call_type": draw(texts()),
        "priority": draw(st.none() | st.integers(1, 5)), "lat": lat, "lng": lng,
        "agency": draw(texts()), "source": draw(texts()),
    }  # fmt: skip
    if obj["priority"] is None and draw(st.booleans()):
        del obj["priority"]  # optional
    obj.update(draw(extras(CALL)))
    return Record(CALL, obj, ts)


@st.composite
def valid_updates(draw) -> Record:
    text, ts = draw(iso_times())
    obj = {
        "type": "update", "v": 1, "call_id": draw(texts(MAX_ID_LENGTH)), "status": draw(st.sampled_from(Status)).value,
        "at": text, "unit": draw(st.none() | texts()), "source": draw(texts()),
    }  # fmt: skip
    if obj["unit"] is None and draw(st.booleans()):
        del obj["unit"]  # optional
    obj.update(draw(extras(UPDATE)))
    return Record(UPDATE, obj, ts)


def valid_records(box: Jurisdiction | None = None) -> st.SearchStrategy[Record]:
    return valid_calls(box) | valid_updates()


@st.composite
def serialized(draw, obj: dict) -> bytes:
    """``obj`` as JSON in UTF-8, in any key order, ASCII-escaped or not, compact or indented."""
    ordered = {k: obj[k] for k in draw(st.permutations(list(obj)))}
    indent = draw(st.sampled_from([None, None, 1]))
    try:
        return json.dumps(ordered, ensure_ascii=draw(st.booleans()), indent=indent).encode()
    except UnicodeEncodeError:  # a lone surrogate: only the escaped form is UTF-8
        return json.dumps(ordered, indent=indent).encode()


@st.composite
def valid_raw(draw, box: Jurisdiction | None = None) -> tuple[Record, bytes]:
    record = draw(valid_records(box))
    raw = draw(serialized(record.obj))
    hypothesis.assume(len(raw) <= MAX_RECORD_BYTES)
    return record, raw


# --------------------------------------------------------------------------- strategies: defects


@dataclass(frozen=True)
class Defect:
    """A change to the fields ``fields`` of a valid record and the reasons a refusal of it may give."""

    fields: tuple[str, ...]
    patch: st.SearchStrategy[dict]
    reasons: frozenset[Reason]
    #: whether the detail names one of ``fields`` (a record relabelled as the other type is refused for a field it lacks)
    named: bool = True


@dataclass
class Malformed:
    """A refused record: the topic kind it belongs to, its bytes, and the reasons a refusal may give."""

    kind: str
    raw: bytes | None
    reasons: frozenset[Reason]
    fields: tuple[str, ...] = ()
    named: bool = False


def _set(name: str, values: st.SearchStrategy) -> st.SearchStrategy[dict]:
    return values.map(lambda v: {name: v})


NOT_STRINGS = JSON_VALUES.filter(lambda v: v is not None and not isinstance(v, str))
NOT_NUMBERS = JSON_VALUES.filter(lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))))
NOT_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
#: Integers beyond the float range: valid JSON, no coordinate.
HUGE_INTS = st.integers(2**1024, 10**400) | st.integers(-(10**400), -(2**1024))
BLANK = st.text(" \t\r\n", max_size=4)
NON_PRINTABLE = st.builds(lambda a, c, b: a + c + b, st.text(PRINTABLE, max_size=8), UNPRINTABLE, st.text(PRINTABLE, max_size=8))
UNKNOWN_CATEGORIES = (st.sampled_from(["ems", "Fire", " EMS", "EMS ", "MEDICAL", "ALIENS"]) | texts()).filter(
    lambda s: s not in {c.value for c in Category}
)
UNKNOWN_STATUSES = (st.sampled_from(["DISPATCHED", "en route", "arrived", "cleared", " closed"]) | texts()).filter(
    lambda s: s not in {c.value for c in Status}
)
BAD_PRIORITIES = (
    st.integers().filter(lambda p: not 1 <= p <= 5)
    | st.sampled_from([1.0, 2.5, True, False, "2", [2]])
    | st.floats()
    | JSON_VALUES.filter(lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, int)))
)
NOT_VERSION_ONE = (
    st.just(ABSENT)
    | st.sampled_from([0, 2, -1, "1", True, 1.0, 1.5, [1], {"v": 1}])
    | JSON_VALUES.filter(lambda v: type(v) is not int or v != 1)
)
NOT_A_TYPE = (
    st.just(ABSENT)
    | st.sampled_from(["Call", "CALL", " call", "calls", "updates", "alarm", ""])
    | JSON_VALUES.filter(lambda v: v not in ("call", "update"))
)


def too_long(limit: int) -> st.SearchStrategy[str]:
    return st.text(PRINTABLE, min_size=limit + 1, max_size=limit + 200).filter(str.strip)


@st.composite
def unparsable_times(draw) -> str:
    """Printable, non-blank text no ISO 8601 reader takes: words, a digit replaced by a letter, impossible fields."""
    form = draw(st.sampled_from(["words", "letter", "fields"]))
    if form == "words":
        return draw(st.text(st.characters(categories=("L",)), min_size=1, max_size=30))
    if form == "letter":
        text, _ = draw(iso_times())
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        i = draw(st.sampled_from(digits))
        # no t, w or z: "T" separates date and time, "W" starts a week date, "Z" is UTC
        return text[:i] + draw(st.sampled_from("abcdefghijklmnopqrsuvxy")) + text[i + 1 :]
    return draw(
        st.sampled_from(
            ["2016-13-01T00:00:00Z", "2016-02-30T00:00:00Z", "2016-01-32T00:00:00Z", "2016-01-23T25:00:00Z",
             "2016-01-23T16:60:00Z", "2016-01-23T16:02:61Z", "2016-01-23T16:02:11+25:00", "yesterday", "now", "-1"]
        )
    )  # fmt: skip


@st.composite
def impossible_times(draw) -> str:
    """Times the schema refuses as impossible: unreadable, without an offset, before 2000, in the future, negative."""
    form = draw(st.sampled_from(["unparsable", "naive", "past", "future", "negative"]))
    if form == "unparsable":
        return draw(unparsable_times())
    if form == "naive":
        return (EPOCH + timedelta(seconds=draw(st.integers(int(EARLIEST_EVENT_TIME), int(LATEST))))).replace(tzinfo=None).isoformat()
    if form == "past":  # from year 2 (room for any offset) to just before 2000
        return draw(iso_times(lo=-62_104_060_800.0, hi=EARLIEST_EVENT_TIME - 1e-6))[0]
    if form == "future":  # from just beyond the allowed clock skew to year 9999 (room for any offset)
        return draw(iso_times(lo=NOW + MAX_CLOCK_SKEW_S + 1, hi=253_402_041_600.0))[0]
    return "-" + draw(iso_times())[0]


def _beyond(limit: float) -> st.SearchStrategy[float]:
    """Finite floats beyond +-limit."""
    return st.floats(min_value=limit, exclude_min=True, allow_infinity=False) | st.floats(
        max_value=-limit, exclude_max=True, allow_infinity=False
    )


@functools.cache
def defect_catalogue(kind: str, box: Jurisdiction | None) -> dict[str, list[Defect]]:
    """Every single-field defect of a record of ``kind`` whose refusal reason is unambiguous, by family."""
    other = UPDATE if kind == CALL else CALL
    time_field = TIME_FIELD[kind]
    out = {
        "type": [
            Defect(("type",), _set("type", NOT_A_TYPE), frozenset({Reason.UNKNOWN_TYPE})),
            Defect(("type",), st.just({"type": other}), frozenset({Reason.MISSING_FIELD}), named=False),
        ],
        "version": [Defect(("v",), _set("v", NOT_VERSION_ONE), frozenset({Reason.UNSUPPORTED_VERSION}))],
        "missing": [
            Defect((name,), _set(name, st.sampled_from([ABSENT, None])), frozenset({Reason.MISSING_FIELD})) for name in REQUIRED[kind]
        ],
        "text": [
            Defect((name,), _set(name, NOT_STRINGS | BLANK | NON_PRINTABLE | too_long(limit)), frozenset({Reason.BAD_FIELD}))
            for name, limit in TEXT[kind].items()
        ],
        "time": [Defect((time_field,), _set(time_field, impossible_times()), frozenset({Reason.IMPOSSIBLE_TIMESTAMP}))],
    }
    if kind == UPDATE:
        out["enum"] = [Defect(("status",), _set("status", UNKNOWN_STATUSES), frozenset({Reason.BAD_FIELD}))]
        return out
    out["enum"] = [Defect(("category",), _set("category", UNKNOWN_CATEGORIES), frozenset({Reason.BAD_FIELD}))]
    out["priority"] = [Defect(("priority",), _set("priority", BAD_PRIORITIES), frozenset({Reason.BAD_FIELD}))]
    out["number"] = [
        Defect(("lat",), _set("lat", NOT_NUMBERS | NOT_FINITE), frozenset({Reason.BAD_FIELD})),
        Defect(("lng",), _set("lng", NOT_NUMBERS | NOT_FINITE), frozenset({Reason.BAD_FIELD})),
        # 1e400 reads as inf (a bad field); 10**400 is an int no float holds: either refusal is fair
        Defect(("lat",), _set("lat", HUGE_INTS), frozenset({Reason.BAD_FIELD, Reason.COORDINATES_OUT_OF_RANGE})),
        Defect(("lng",), _set("lng", HUGE_INTS), frozenset({Reason.BAD_FIELD, Reason.COORDINATES_OUT_OF_RANGE})),
    ]
    beyond_lat, beyond_lng = _beyond(90), _beyond(180)
    zero = st.sampled_from([0, 0.0, -0.0])
    out["range"] = [
        Defect(("lat",), _set("lat", beyond_lat | st.integers(91, 10**300)), frozenset({Reason.COORDINATES_OUT_OF_RANGE})),
        Defect(("lng",), _set("lng", beyond_lng | st.integers(-(10**300), -181)), frozenset({Reason.COORDINATES_OUT_OF_RANGE})),
        Defect(("lat", "lng"), st.fixed_dictionaries({"lat": zero, "lng": zero}), frozenset({Reason.COORDINATES_OUT_OF_RANGE})),
    ]
    if box is not None:
        outside = coordinates(None).filter(lambda p: not box.contains(*p)).map(lambda p: {"lat": p[0], "lng": p[1]})
        out["jurisdiction"] = [Defect(("lat", "lng"), outside, frozenset({Reason.OUTSIDE_JURISDICTION}))]
    return out


def _apply(obj: dict, patch: dict) -> dict:
    out = dict(obj)
    for name, value in patch.items():
        if value is ABSENT:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def _judged(kind: str, raw: bytes, reasons: frozenset[Reason], **kw) -> Malformed:
    # Size is checked before anything else, whatever else is wrong.
    return Malformed(kind, raw, frozenset({Reason.OVERSIZE}) if len(raw) > MAX_RECORD_BYTES else reasons, **kw)


@st.composite
def field_defects(draw, box: Jurisdiction | None = None, max_defects: int = 1) -> Malformed:
    """A valid record with 1..max_defects defects on distinct fields: refused with one of their reasons."""
    record = draw(valid_records(box))
    catalogue = defect_catalogue(record.kind, box)
    chosen: list[Defect] = []
    for _ in range(draw(st.integers(1, max_defects))):
        d = draw(st.sampled_from(catalogue[draw(st.sampled_from(sorted(catalogue)))]))
        if not any(set(d.fields) & set(c.fields) for c in chosen):
            chosen.append(d)
    obj = record.obj
    for d in chosen:
        obj = _apply(obj, draw(d.patch))
    reasons = frozenset().union(*(d.reasons for d in chosen))
    fields = tuple(f for d in chosen for f in d.fields)
    return _judged(record.kind, draw(serialized(obj)), reasons, fields=fields, named=all(d.named for d in chosen))


#: Never valid UTF-8: bytes that start nothing, a stray continuation, overlong forms, a surrogate, beyond U+10FFFF, cut sequences.
BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xf0\x9f"]
INT_DIGITS_LIMIT = sys.get_int_max_str_digits()


@st.composite
def raw_defects(draw, box: Jurisdiction | None = None) -> Malformed:
    """Bytes broken below the field level: encoding, syntax, shape, size."""
    record = draw(valid_records(box))
    raw = json.dumps(record.obj).encode()  # ASCII: any position is a character boundary
    forms = ["utf8", "truncated", "trailing", "encoding", "repr", "oversize", "array", "scalar", "junk_object"]
    if 0 < INT_DIGITS_LIMIT < MAX_RECORD_BYTES - 1000:
        forms.append("long_number")
    form = draw(st.sampled_from(forms))
    not_json = frozenset({Reason.NOT_JSON})
    if form == "utf8":
        i = draw(st.integers(0, len(raw)))
        return _judged(record.kind, raw[:i] + draw(st.sampled_from(BAD_UTF8)) + raw[i:], not_json)
    if form == "truncated":
        return _judged(record.kind, raw[: draw(st.integers(0, len(raw) - 1))], not_json)
    if form == "trailing":
        return _judged(record.kind, raw + draw(st.sampled_from([b"}", b"x", b",", b"]", b"\x00", b"{}", raw])), not_json)
    if form == "encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]))
        return _judged(record.kind, json.dumps(record.obj).encode(codec), not_json)
    if form == "repr":  # Python's literal syntax: single quotes, None, True
        return _judged(record.kind, repr(record.obj).encode(), not_json)
    if form == "long_number":  # valid JSON that Python refuses to read (sys.get_int_max_str_digits)
        name = draw(st.sampled_from(sorted(record.obj)) | st.just("x-extra"))
        text = json.dumps({**record.obj, name: "@@"})
        digits = draw(st.integers(INT_DIGITS_LIMIT + 1, MAX_RECORD_BYTES - len(text)))
        return _judged(record.kind, text.replace('"@@"', "9" * digits).encode(), not_json)
    if form == "oversize":
        pad = MAX_RECORD_BYTES + 1 - len(raw) + draw(st.integers(0, 2000))
        padded = raw + b" " * pad if draw(st.booleans()) else json.dumps({**record.obj, "padding": "x" * pad}).encode()
        return _judged(record.kind, padded, frozenset({Reason.OVERSIZE}))
    if form == "array":
        return _judged(record.kind, json.dumps([record.obj]).encode(), frozenset({Reason.NOT_AN_OBJECT}))
    if form == "scalar":
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return _judged(record.kind, json.dumps(value).encode(), frozenset({Reason.NOT_AN_OBJECT}))
    junk = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6).filter(lambda d: d.get("type") not in ("call", "update")))
    return _judged(record.kind, json.dumps(junk).encode(), frozenset({Reason.UNKNOWN_TYPE}))


def malformed(box: Jurisdiction | None = None, max_defects: int = 1) -> st.SearchStrategy[Malformed]:
    return field_defects(box, max_defects) | raw_defects(box)


ANY_BYTES = st.binary(max_size=200) | st.text(max_size=100).map(str.encode)

# Found by these properties (see the fix in streams/ingest/schema.py): a JSON integer Python will not read,
# and a coordinate no float holds, raised ValueError and OverflowError instead of a dead letter.
LONG_NUMBER = b'{"type":"call","v":' + b"1" * 5000 + b"}"
HUGE_LAT = (
    b'{"type":"call","v":1,"id":"a","received_at":"2016-01-23T16:02:11Z","category":"EMS","call_type":"X",'
    b'"lat":1' + b"0" * 400 + b',"lng":-75.3,"agency":"a","source":"s"}'
)


# --------------------------------------------------------------------------- properties: parse_event


def _assert_documented(result: Parsed | InvalidRecord) -> None:
    if isinstance(result, InvalidRecord):
        assert result.reason in ALL_REASONS
        assert isinstance(result.detail, str) and result.detail.strip()
    else:
        assert isinstance(result, Parsed) and isinstance(result.event, Call | IncidentUpdate)
        assert all(isinstance(k, str) for k in result.dropped_fields)


def _judge(raw: bytes, box: Jurisdiction | None = None) -> Parsed | InvalidRecord:
    try:
        return parse_event(raw, now=NOW, jurisdiction=box)
    except InvalidRecord as exc:
        return exc


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@given(
    raw=ANY_BYTES | valid_raw().map(lambda p: p[1]) | malformed(max_defects=3).map(lambda m: m.raw),
    box=st.sampled_from([None, BOX]),
)
@example(raw=LONG_NUMBER, box=None)
@example(raw=HUGE_LAT, box=None)
@example(raw=b"[" * 5000 + b"]" * 5000, box=None)  # nests deeper than the recursion limit
def test_any_bytes_give_a_record_or_a_documented_refusal_never_another_exception(raw, box):
    """parse_event returns a Parsed or raises InvalidRecord (a Reason, a non-empty detail), whatever the bytes."""
    _assert_documented(_judge(raw, box))


def _with_box(strategy) -> st.SearchStrategy:
    """``(box, drawn)`` with the jurisdiction unset or set, ``drawn`` from ``strategy(box)``."""
    return st.sampled_from([None, BOX]).flatmap(lambda box: st.tuples(st.just(box), strategy(box)))


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@given(case=_with_box(malformed))
def test_each_single_defect_is_refused_with_its_reason_and_the_detail_names_the_field(case):
    """A valid record with one defect is refused with the reason for that defect, and the detail names the field."""
    box, bad = case
    result = _judge(bad.raw, box)
    assert isinstance(result, InvalidRecord), f"accepted a record with a defect: {bad.raw[:300]!r}"
    hypothesis.event(result.reason.value)
    assert result.reason in bad.reasons, f"{result.reason.value} for a defect refused as {sorted(bad.reasons)}: {result.detail}"
    if bad.named and result.reason is not Reason.OVERSIZE:
        assert any(name in result.detail for name in bad.fields), result.detail


@hypothesis.settings(max_examples=200, deadline=None, database=None)
@given(case=_with_box(lambda box: field_defects(box, max_defects=4)))
def test_several_defects_are_refused_with_the_reason_of_one_of_them(case):
    """With defects on several fields, the refusal gives the reason of one of them (whichever is checked first)."""
    box, bad = case
    result = _judge(bad.raw, box)
    assert isinstance(result, InvalidRecord)
    assert result.reason in bad.reasons, f"{result.reason.value} not among {sorted(bad.reasons)}: {result.detail}"


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@given(case=_with_box(valid_raw))
def test_every_valid_record_is_accepted_with_its_values_and_only_non_schema_keys_are_dropped(case):
    """A valid call or update is accepted with the values it carries; exactly the keys outside the schema are dropped."""
    box, (record, raw) = case
    parsed = parse_event(raw, now=NOW, jurisdiction=box)
    obj, e = record.obj, parsed.event
    assert parsed.dropped_fields == tuple(sorted(set(obj) - FIELDS[record.kind]))
    if record.kind == CALL:
        assert isinstance(e, Call)
        assert (e.id, e.category.value, e.call_type, e.priority, e.agency, e.source) == (
            obj["id"], obj["category"], obj["call_type"], obj.get("priority"), obj["agency"], obj["source"],
        )  # fmt: skip
        assert (e.lat, e.lng, e.received_at) == (float(obj["lat"]), float(obj["lng"]), record.time)
    else:
        assert isinstance(e, IncidentUpdate)
        assert (e.call_id, e.status.value, e.unit, e.source, e.at) == (
            obj["call_id"], obj["status"], obj.get("unit"), obj["source"], record.time,
        )  # fmt: skip
    # The canonical form is what the worker holds for an update waiting for its call, and reads back later.
    assert parse_event(encode(e), now=NOW, jurisdiction=box) == Parsed(e)


# --------------------------------------------------------------------------- properties: the planner


@dataclass
class Entry:
    """One record of a generated batch: its topic, bytes, and what must become of it."""

    topic: str
    partition: int
    value: bytes | None
    #: reasons its refusal may give; None for a valid record (counted, or refused as a duplicate)
    reasons: frozenset[Reason] | None
    call_id: str | None = None
    coords: tuple[float, float] | None = None


def _unique(cid: str, i: int) -> str:
    suffix = f"#{i}"
    return cid[: MAX_ID_LENGTH - len(suffix)] + suffix


@st.composite
def mixed_batches(draw, box: Jurisdiction | None) -> tuple[list[Incoming], list[Entry], dict[tuple[str, int], int]]:
    """A batch mixing valid calls and updates, defects, junk, null values, wrong topics, repeated ids and redeliveries.

    Returns the batch, the entry behind each record, and the applied offsets of the snapshot.
    """
    entries: list[Entry] = []
    for i in range(draw(st.integers(1, 14))):
        partition = draw(st.integers(0, 3))
        form = draw(st.sampled_from(["call", "call", "update", "update", "defect", "raw", "junk", "null", "wrong_topic", "repeat"]))
        if form == "call":
            rec = draw(valid_calls(box))
            rec.obj["id"] = _unique(rec.obj["id"], i)
            entries.append(Entry(CALL, partition, draw(serialized(rec.obj)), None, rec.obj["id"], (rec.obj["lat"], rec.obj["lng"])))
        elif form == "update":
            rec = draw(valid_updates())
            ids = [e.call_id for e in entries if e.call_id and e.partition == partition]
            if ids and draw(st.booleans()):
                rec.obj["call_id"] = draw(st.sampled_from(ids))  # its call is in the batch, before or after it
            entries.append(Entry(UPDATE, partition, draw(serialized(rec.obj)), None))
        elif form == "repeat" and any(e.call_id for e in entries):
            first = draw(st.sampled_from([e for e in entries if e.call_id]))
            entries.append(Entry(CALL, first.partition, first.value, None, first.call_id, first.coords))
        elif form == "wrong_topic":
            rec = draw(valid_records(box))
            topic = UPDATE if rec.kind == CALL else CALL
            entries.append(Entry(topic, partition, draw(serialized(rec.obj)), frozenset({Reason.WRONG_TOPIC})))
        elif form in ("defect", "raw"):
            bad = draw(field_defects(box, max_defects=2) if form == "defect" else raw_defects(box))
            entries.append(Entry(bad.kind, partition, bad.raw, bad.reasons))
        elif form == "null":  # a Kafka record without a value (a tombstone)
            entries.append(Entry(draw(st.sampled_from(KINDS)), partition, None, frozenset({Reason.NOT_JSON})))
        else:
            entries.append(Entry(draw(st.sampled_from(KINDS)), partition, draw(ANY_BYTES), ALL_REASONS))
    entries = [entries[i] for i in draw(st.permutations(range(len(entries))))]
    # Offsets per (topic, partition); some partitions already applied part of them (a redelivery after a crash).
    applied: dict[tuple[str, int], int] = {}
    nxt: dict[tuple[str, int], int] = {}
    batch = []
    for e in entries:
        tp = (e.topic, e.partition)
        if tp not in nxt:
            last = draw(st.none() | st.integers(0, 5))
            if last is not None:
                applied[tp] = last
            nxt[tp] = 0 if last is None else max(0, last + 1 - draw(st.integers(0, 2)))
        batch.append(Incoming(e.topic, e.partition, nxt[tp], e.value))
        nxt[tp] += 1
    # and a record delivered twice in one batch (a rebalance mid-batch)
    for j in draw(st.lists(st.integers(0, len(batch) - 1), max_size=2)):
        batch.append(batch[j])
        entries.append(entries[j])
    return batch, entries, applied


def _no_constants(name: str) -> None:
    raise AssertionError(f"the dead letter holds {name}, which strict JSON has not")


@hypothesis.settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    box=st.sampled_from([None, BOX]),
    data=st.data(),
    lateness=st.sampled_from([600.0, 1e12]),
    horizon=st.none() | st.integers(int(EARLIEST_EVENT_TIME // 60), int(LATEST // 60)),
)
def test_a_mixed_batch_accounts_for_every_record_exactly_once_and_writes_no_caller_detail(box, data, lateness, horizon):
    """Each record is skipped as already applied, refused once with its reason, or counted once; no caller detail is written.

    With an unbounded lateness every valid record counts (a repeated call id is a duplicate); with 10
    minutes, a valid record may also be too late.
    """
    batch, entries, applied = data.draw(mixed_batches(box))
    strict = lateness > 1e9
    cfg = PlanConfig(keys=Keys("p"), resolutions=(8, 7), allowed_lateness_s=lateness, jurisdiction=box)
    snap = Snapshot(offsets=dict(applied), horizon=None if strict else horizon)

    parsed = parse_batch(batch, cfg, now=NOW)
    assert len(parsed) == len(batch)
    referenced_calls(batch, parsed)
    plan = plan_batch(batch, snap, cfg, now=NOW, parsed=parsed)

    # skipped: at or below the partition's applied offset, in the snapshot or earlier in this batch
    last = dict(applied)
    taken = []
    for rec, e in zip(batch, entries, strict=True):
        tp = (rec.kind, rec.partition)
        if rec.offset > last.get(tp, -1):
            last[tp] = rec.offset
            taken.append((rec, e))
    assert plan.skipped == len(batch) - len(taken) and plan.applied == len(taken)

    refused = {(dl.source.kind, dl.source.partition, dl.source.offset): dl for dl in plan.dead_letters}
    counted_calls = {(CALL, p, o) for p, o, *_ in plan.points}
    assert len(refused) == len(plan.dead_letters), "a record was refused twice"
    assert len(counted_calls) == len(plan.points), "a call was counted twice"
    assert not refused.keys() & counted_calls, "a call was both refused and counted"
    taken_keys = {(rec.kind, rec.partition, rec.offset) for rec, _ in taken}
    assert refused.keys() | counted_calls <= taken_keys
    taken_calls = {k for k in taken_keys if k[0] == CALL}
    assert taken_calls == {k for k in refused if k[0] == CALL} | counted_calls, "a call vanished"
    taken_updates = sum(1 for k in taken_keys if k[0] == UPDATE)
    assert plan.metrics["events_total|update"] == taken_updates - sum(1 for k in refused if k[0] == UPDATE), "an update vanished"
    assert plan.metrics["events_total|call"] == len(plan.points)
    by_reason = Counter(dl.reason.value for dl in plan.dead_letters)
    assert {k.split("|")[1]: v for k, v in plan.metrics.items() if k.startswith("deadletter_total|")} == dict(by_reason)
    # each counted call adds one to its bucket's total at each resolution, and nothing else does
    totals = Counter()
    for op in decode_ops(plan.ops):
        if op[0] == "I" and op[1].startswith("p:b:") and op[2].endswith("|ALL"):
            totals[h3.get_resolution(op[2].split("|")[0])] += int(op[3])
    assert all(totals[res] == len(plan.points) for res in cfg.resolutions), totals

    # each record's fate
    seen: set[tuple[int, str]] = set()
    for rec, e in taken:
        key = (rec.kind, rec.partition, rec.offset)
        dl = refused.get(key)
        if dl is not None:
            assert dl.source is rec and dl.reason in ALL_REASONS and dl.detail.strip()
        if e.reasons is not None:
            assert dl is not None, f"accepted a record that must be refused: {e.value!r:.300}"
            assert dl.reason in e.reasons, f"{dl.reason.value} for a record refused as {sorted(e.reasons)}: {dl.detail}"
        elif strict and e.call_id is not None:
            duplicate = (rec.partition, e.call_id) in seen
            assert (dl.reason if dl else None) == (Reason.DUPLICATE_ID if duplicate else None), dl
            seen.add((rec.partition, e.call_id))
        elif strict:
            assert dl is None, dl
        else:
            assert dl is None or dl.reason in (Reason.TOO_LATE, Reason.DUPLICATE_ID), dl

    # data minimization: no caller detail and no coordinate in anything derived
    written = "\n".join(plan.ops) + repr(plan.points) + repr(dict(plan.metrics))
    assert PII not in written
    for rec, e in taken:
        if e.coords and (CALL, rec.partition, rec.offset) in counted_calls:
            for c in e.coords:
                if len(repr(float(c))) >= 12:  # short values like 40.0 occur in times by chance
                    assert repr(float(c)) not in written
    for dl in plan.dead_letters:
        doc = json.loads(encode_deadletter(dl, "wf.calls", at=NOW), parse_constant=_no_constants)
        assert set(doc) == ENVELOPE
        # the original bytes are kept (the topic is restricted like the ingest topics); nothing else carries them
        doc.pop("original_b64")
        assert PII not in json.dumps(doc, ensure_ascii=False), doc["detail"]


# --------------------------------------------------------------------------- properties: the dead-letter envelope


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@given(
    kind=st.sampled_from(KINDS),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    value=st.none() | st.binary(max_size=3000),
    reason=st.sampled_from(Reason),
    detail=st.text(min_size=1),
    topic=st.text(min_size=1, max_size=60),
    at=st.floats(0, 4e9),
)
def test_the_dead_letter_is_strict_json_that_round_trips(kind, partition, offset, value, reason, detail, topic, at):
    """encode_deadletter writes strict UTF-8 JSON with exactly the documented keys, each reading back to what went in."""
    raw = encode_deadletter(DeadLetter(Incoming(kind, partition, offset, value), reason, detail), topic, at=at)
    doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    assert set(doc) == ENVELOPE
    assert (doc["v"], doc["reason"], doc["detail"], doc["topic"]) == (1, reason.value, detail, topic)
    assert (doc["partition"], doc["offset"], doc["refused_at"]) == (partition, offset, at)
    assert Reason(doc["reason"]) is reason
    if value is None:
        assert doc["original_b64"] is None
    else:
        assert base64.b64decode(doc["original_b64"], validate=True) == value
    assert doc["original_truncated"] is False


def test_a_dead_letter_for_a_record_near_kafkas_size_limit_still_fits_in_a_kafka_message():
    """A refused record of almost 1 MB keeps its first bytes, says it was cut, and the envelope stays under 1 MB."""
    value = b'{"type":"call","padding":"' + b"y" * 1_040_000 + b'"}'
    (bad,) = plan_batch([Incoming(CALL, 0, 0, value)], Snapshot(), PlanConfig(Keys("p"), (8,), 600.0), now=NOW).dead_letters
    raw = encode_deadletter(bad, "wf.calls", at=NOW)
    doc = json.loads(raw)
    assert len(raw) < KAFKA_MAX_MESSAGE / 2
    assert doc["reason"] == "oversize" and doc["original_truncated"] is True
    kept = base64.b64decode(doc["original_b64"])
    assert kept and value.startswith(kept)


def test_a_record_without_a_value_is_refused_as_not_json_and_its_dead_letter_says_null():
    """A tombstone (null value) on an ingest topic is a not_json dead letter whose original is null, not a crash."""
    plan = plan_batch([Incoming(UPDATE, 1, 4, None)], Snapshot(), PlanConfig(Keys("p"), (8,), 600.0), now=NOW)
    (dl,) = plan.dead_letters
    assert dl.reason is Reason.NOT_JSON and "null" in dl.detail
    doc = json.loads(encode_deadletter(dl, "wf.incident-updates", at=NOW))
    assert (doc["original_b64"], doc["original_truncated"], doc["partition"], doc["offset"]) == (None, False, 1, 4)


# --------------------------------------------------------------------------- the real broker and worker

T0 = 1_453_564_800.0  # 2016-01-23T16:00:00Z
N_HOSTILE = 300


@st.composite
def wrong_topics(draw, box: Jurisdiction | None) -> Malformed:
    """A valid record on the other kind's topic."""
    rec = draw(valid_records(box))
    return Malformed(UPDATE if rec.kind == CALL else CALL, draw(serialized(rec.obj)), frozenset({Reason.WRONG_TOPIC}))


def hostile(box: Jurisdiction | None) -> st.SearchStrategy[Malformed]:
    """Every kind of record the worker must refuse (each with the reasons its refusal may give)."""
    null = st.sampled_from(KINDS).map(lambda kind: Malformed(kind, None, frozenset({Reason.NOT_JSON})))
    return field_defects(box) | field_defects(box, max_defects=3) | raw_defects(box) | wrong_topics(box) | null


def generated(strategy: st.SearchStrategy, n: int) -> list:
    """``n`` values of ``strategy``, the same ones at every run (derandomized: seeded from this function's code)."""
    out: list = []

    @hypothesis.settings(
        max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )  # fmt: skip
    @given(strategy)
    def collect(value) -> None:
        out.append(value)

    collect()
    return out


@pytest.mark.stack
def test_generated_hostile_records_through_the_real_worker_each_land_once_in_the_dead_letter_topic(settings, tmp_path):
    """A few hundred generated hostile records among valid calls: each is a dead letter exactly once, with its
    reason and source partition/offset; every valid call counts; the worker stays up with no traceback in its log."""
    from aiokafka import AIOKafkaProducer

    from streams.counting.planner import MAX_DEADLETTER_ORIGINAL_BYTES
    from streams.topics import CALLS, DEADLETTER, INCIDENT_UPDATES, topic_name
    from tests.stackutil import WorkerProcess, read_topic, wait_caught_up
    from tests.streams.test_pipeline import redis_view

    bad = generated(hostile(BOX), N_HOSTILE)
    assert len(bad) >= N_HOSTILE * 0.9
    # one near Kafka's message size limit: its dead letter must still be publishable
    bad.append(Malformed(CALL, b'{"type":"call","padding":"' + b"y" * 900_000 + b'"}', frozenset({Reason.OVERSIZE})))
    good = generated(valid_calls(BOX), N_HOSTILE // 5)
    topics = {CALL: topic_name(settings.topic_prefix, CALLS), UPDATE: topic_name(settings.topic_prefix, INCIDENT_UPDATES)}

    expected_letters: dict[tuple[str, int, int], Malformed] = {}
    counted: Counter = Counter()
    n_updates = 0

    async def produce() -> None:
        nonlocal n_updates
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, max_request_size=2_000_000)
        await p.start()
        try:

            async def send(kind: str, key: str, value: bytes | None) -> tuple[str, int, int]:
                md = await p.send_and_wait(topics[kind], key=key.encode(), value=value)
                return md.topic, md.partition, md.offset

            for i, m in enumerate(bad):
                expected_letters[await send(m.kind, f"bad-{i}", m.raw)] = m
                if i % 5 or i // 5 >= len(good):
                    continue
                j = i // 5
                rec = good[j]
                # Event times a few seconds apart: none is late for its partition.
                t = T0 + 13 * j
                obj = {**rec.obj, "id": f"ok-{j}", "received_at": format_time(t)}
                raw = json.dumps(obj).encode()
                await send(CALL, obj["id"], raw)
                res0 = settings.resolutions[0]
                cell = h3.latlng_to_cell(obj["lat"], obj["lng"], res0)
                for res in settings.resolutions:
                    parent = h3.cell_to_parent(cell, res)
                    counted[(int(t // 60), parent, obj["category"])] += 1
                    counted[(int(t // 60), parent, "ALL")] += 1
                if j % 2 == 0:
                    upd = {"type": "update", "v": 1, "call_id": obj["id"], "status": "dispatched", "at": format_time(t + 60), "source": "s"}
                    await send(UPDATE, obj["id"], json.dumps(upd).encode())
                    n_updates += 1
                if j % 10 == 0:  # the same call again (same key, so the same partition)
                    expected_letters[await send(CALL, obj["id"], raw)] = Malformed(CALL, raw, frozenset({Reason.DUPLICATE_ID}))
                if j % 10 == 5:  # a call half an hour older than the one just counted on its partition (same key)
                    late = json.dumps({**obj, "id": f"late-{j}", "received_at": format_time(t - 1800)}).encode()
                    expected_letters[await send(CALL, obj["id"], late)] = Malformed(CALL, late, frozenset({Reason.TOO_LATE}))
        finally:
            await p.stop()

    asyncio.run(produce())
    worker = WorkerProcess(settings, tmp_path, env={"WF_JURISDICTION": BOX_TEXT}).start()
    try:
        wait_caught_up(settings, [worker])
        letters = read_topic(settings, DEADLETTER, expect=len(expected_letters))
        counts, _, metrics = redis_view(settings)
        page = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read().decode()
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()

    log = worker.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Crashed" not in log, log[-5000:]
    where = Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
    missing, unexpected = expected_letters.keys() - where.keys(), where.keys() - expected_letters.keys()
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    assert max(where.values()) == 1, [k for k, n in where.items() if n > 1]
    for d in letters:
        m = expected_letters[(d["topic"], d["partition"], d["offset"])]
        assert set(d) == ENVELOPE
        assert d["reason"] in {r.value for r in m.reasons}, (d["reason"], d["detail"], m.raw[:300] if m.raw else None)
        assert d["detail"].strip()
        if m.raw is None:
            assert d["original_b64"] is None
        else:
            assert base64.b64decode(d["original_b64"]) == m.raw[:MAX_DEADLETTER_ORIGINAL_BYTES]
            assert d["original_truncated"] == (len(m.raw) > MAX_DEADLETTER_ORIGINAL_BYTES)
    assert Counter(d["reason"] for d in letters) == Counter(
        {k.split("|")[1]: v for k, v in metrics.items() if k.startswith("deadletter_total|")}
    )
    assert metrics["events_total|call"] == len(good)
    assert metrics["events_total|update"] == n_updates
    assert counts == dict(counted)
    assert f'watchfloor_deadletter_total{{reason="duplicate_id"}} {len(good[::10])}' in page
