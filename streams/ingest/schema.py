"""Event schema v1 shared by every producer and consumer.

Two event types travel on Kafka as UTF-8 JSON objects:

``call`` (topic ``wf.calls``), a 911 call as received::

    {"type": "call", "v": 1, "id": "MC-000123",
     "received_at": "2016-01-23T16:02:11Z",      # ISO 8601, offset required
     "category": "TRAFFIC",                       # EMS | FIRE | TRAFFIC | POLICE | OTHER
     "call_type": "VEHICLE ACCIDENT",             # the source's raw call type
     "priority": 2,                               # 1 (highest) .. 5, or null
     "lat": 40.12, "lng": -75.34,
     "agency": "montgomery-pa", "source": "montgomery-pa-911"}

``update`` (topic ``wf.incident-updates``), a change of an incident's status::

    {"type": "update", "v": 1, "call_id": "MC-000123",
     "status": "dispatched",                      # dispatched | en_route | on_scene | closed
     "at": "2016-01-23T16:05:40Z", "unit": "M-41", "source": "montgomery-pa-911"}

Validation is a pure function: bytes in, a typed record out, or
:class:`InvalidRecord` with a machine-readable ``reason`` that the worker
puts on the dead-letter topic together with the original bytes.

Data minimization happens here: only the fields above are kept. Any other key
(caller names, phone numbers, free-text addresses, narratives) is dropped and
reported in ``dropped_fields`` so that the worker can count it; it never reaches
anything derived from the record.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

SCHEMA_VERSION = 1
#: Largest record accepted, in bytes. A 911 call is ~300 bytes of JSON.
MAX_RECORD_BYTES = 8 * 1024
#: Earliest event time accepted (no public 911 feed predates this).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
#: How far in the future (by the validating clock) an event may claim to be.
MAX_CLOCK_SKEW_S = 300.0
MAX_ID_LENGTH = 64
MAX_TEXT_LENGTH = 120


class Category(enum.StrEnum):
    """Normalized call category."""

    EMS = "EMS"
    FIRE = "FIRE"
    TRAFFIC = "TRAFFIC"
    POLICE = "POLICE"
    OTHER = "OTHER"


#: The categories' values, in :class:`Category` order: the one list the detectors count by (indexes are kept in this order).
CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
#: Each category's index in :data:`CATEGORIES` (a detector's per-category arrays are kept in this order).
CATEGORY_INDEX: dict[str, int] = {c: i for i, c in enumerate(CATEGORIES)}


class Status(enum.StrEnum):
    """Incident lifecycle status, in lifecycle order."""

    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    CLOSED = "closed"


class Reason(enum.StrEnum):
    """Why a record was refused; the dead-letter topic and metrics use these values."""

    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZE = "oversize"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    COORDINATES_OUT_OF_RANGE = "coordinates_out_of_range"
    OUTSIDE_JURISDICTION = "outside_jurisdiction"
    IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
    TOO_LATE = "too_late"
    WRONG_TOPIC = "wrong_topic"
    DUPLICATE_ID = "duplicate_id"
    #: A status time further before the call's received time than the source's tolerance: that update alone is refused.
    STATUS_BEFORE_RECEIVED = "status_before_received"
    #: The HTTP intake: a call for an agency other than the one its source may write for (docs/intake.md).
    WRONG_AGENCY = "wrong_agency"
    #: The HTTP intake: an incident update for a call its source has not sent (or sent longer ago than ids are remembered).
    UNKNOWN_CALL = "unknown_call"


class InvalidRecord(ValueError):
    """A record that failed validation.

    ``reason`` is a :class:`Reason`; ``detail`` says which field and what was
    expected, in words an operator can act on.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Extent(Protocol):
    """Where calls are accepted: a :class:`Jurisdiction` box, or a jurisdiction profile's boundary
    (:class:`streams.jurisdiction.Profile`, whose ``contains`` tests its polygon)."""

    def contains(self, lat: float, lng: float) -> bool: ...


@dataclass(frozen=True)
class Jurisdiction:
    """A bounding box of accepted coordinates (inclusive), in degrees.

    >>> Jurisdiction(39.9, -75.7, 40.5, -75.0).contains(40.1, -75.3)
    True
    """

    min_lat: float
    min_lng: float
    max_lat: float
    max_lng: float

    def __post_init__(self) -> None:
        if not (-90 <= self.min_lat < self.max_lat <= 90):
            raise ValueError(f"jurisdiction latitudes must satisfy -90 <= min < max <= 90, got {self.min_lat}, {self.max_lat}")
        if not (-180 <= self.min_lng < self.max_lng <= 180):
            raise ValueError(f"jurisdiction longitudes must satisfy -180 <= min < max <= 180, got {self.min_lng}, {self.max_lng}")

    def contains(self, lat: float, lng: float) -> bool:
        return self.min_lat <= lat <= self.max_lat and self.min_lng <= lng <= self.max_lng

    @classmethod
    def parse(cls, text: str) -> Jurisdiction:
        """Parse ``"min_lat,min_lng,max_lat,max_lng"``.

        >>> Jurisdiction.parse("39.9,-75.7,40.5,-75.0").max_lng
        -75.0
        """
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError(f"expected 'min_lat,min_lng,max_lat,max_lng', got {text!r}")
        return cls(*(float(p) for p in parts))


@dataclass(frozen=True)
class Call:
    """A validated 911 call. ``received_at`` is epoch seconds (UTC)."""

    id: str
    received_at: float
    category: Category
    call_type: str
    priority: int | None
    lat: float
    lng: float
    agency: str
    source: str
    type: str = field(default="call", init=False)

    def to_json(self) -> dict[str, Any]:
        # Spelled out rather than dataclasses.asdict: this runs per event in the worker.
        return {
            "type": "call", "v": SCHEMA_VERSION, "id": self.id, "received_at": format_time(self.received_at),
            "category": self.category.value, "call_type": self.call_type, "priority": self.priority,
            "lat": self.lat, "lng": self.lng, "agency": self.agency, "source": self.source,
        }  # fmt: skip


@dataclass(frozen=True)
class IncidentUpdate:
    """A validated status change of a call. ``at`` is epoch seconds (UTC)."""

    call_id: str
    status: Status
    at: float
    unit: str | None
    source: str
    type: str = field(default="update", init=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "update", "v": SCHEMA_VERSION, "call_id": self.call_id, "status": self.status.value,
            "at": format_time(self.at), "unit": self.unit, "source": self.source,
        }  # fmt: skip


Event = Call | IncidentUpdate

_CALL_FIELDS = frozenset({"type", "v", "id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency", "source"})
_UPDATE_FIELDS = frozenset({"type", "v", "call_id", "status", "at", "unit", "source"})


@dataclass(frozen=True)
class Parsed:
    """The result of :func:`parse_event`: the record and the keys dropped from it."""

    event: Event
    dropped_fields: tuple[str, ...] = ()


def format_time(ts: float) -> str:
    """Epoch seconds to ISO 8601 UTC with a ``Z``.

    >>> format_time(1453564931.5)
    '2016-01-23T16:02:11.500000Z'
    >>> format_time(1453564931)
    '2016-01-23T16:02:11Z'
    """
    dt = datetime.fromtimestamp(ts, tz=UTC)
    text = dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def encode(event: Event) -> bytes:
    """Serialize an event for Kafka (compact JSON, UTF-8)."""
    return json.dumps(event.to_json(), separators=(",", ":")).encode()


def parse_event(
    raw: bytes,
    *,
    now: float,
    jurisdiction: Extent | None = None,
    max_bytes: int = MAX_RECORD_BYTES,
) -> Parsed:
    """Validate one Kafka record value and return the typed event.

    ``now`` is the validating clock (epoch seconds): events claiming to be more
    than :data:`MAX_CLOCK_SKEW_S` in its future are impossible. Raises
    :class:`InvalidRecord`; never anything else for any input bytes.

    >>> p = parse_event(b'{"type":"update","v":1,"call_id":"A1","status":"closed",'
    ...                 b'"at":"2016-01-23T16:05:40Z","source":"x","phone":"555"}', now=2e9)
    >>> p.event.status, p.dropped_fields
    (<Status.CLOSED: 'closed'>, ('phone',))
    >>> parse_event(b'{"type":"call"', now=2e9)
    Traceback (most recent call last):
    ...
    streams.ingest.schema.InvalidRecord: not_json: record is not valid UTF-8 JSON (Expecting ',' delimiter at char 14)
    """
    if len(raw) > max_bytes:
        raise InvalidRecord(Reason.OVERSIZE, f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        # Decoded explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid UTF-8"
        pos = f" at char {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRecord(Reason.NOT_JSON, f"record is not valid UTF-8 JSON ({msg}{pos})") from None
    except RecursionError:
        raise InvalidRecord(Reason.NOT_JSON, "record nests too deeply") from None
    except ValueError as exc:
        # Valid JSON that Python will not read: an integer longer than sys.get_int_max_str_digits().
        raise InvalidRecord(Reason.NOT_JSON, f"record is not JSON the worker can read ({str(exc).split(':')[0]})") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(Reason.NOT_AN_OBJECT, f"expected a JSON object, found {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "call":
        allowed = _CALL_FIELDS
    elif kind == "update":
        allowed = _UPDATE_FIELDS
    else:
        raise InvalidRecord(Reason.UNKNOWN_TYPE, f"field 'type' must be 'call' or 'update', found {kind!r}")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:  # not True, not 1.0: the integer
        raise InvalidRecord(Reason.UNSUPPORTED_VERSION, f"field 'v' must be the integer {SCHEMA_VERSION}, found {version!r}")
    dropped = tuple(sorted(k for k in obj if k not in allowed))
    if kind == "call":
        return Parsed(_parse_call(obj, now, jurisdiction), dropped)
    return Parsed(_parse_update(obj, now), dropped)


def _parse_call(obj: dict[str, Any], now: float, jurisdiction: Extent | None) -> Call:
    lat = _number(obj, "lat")
    lng = _number(obj, "lng")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0):
        raise InvalidRecord(Reason.COORDINATES_OUT_OF_RANGE, f"lat {lat} / lng {lng} is not a place on Earth")
    if lat == 0.0 and lng == 0.0:
        # (0, 0) is how exports spell "no location"; no 911 call comes from there.
        raise InvalidRecord(Reason.COORDINATES_OUT_OF_RANGE, "lat/lng is (0, 0), the placeholder for a missing location")
    if jurisdiction is not None and not jurisdiction.contains(lat, lng):
        # A real caller's place (a call routed from across the line): the detail, which goes
        # to logs and the dead letter's reason, names it to about a kilometre, not exactly.
        where = getattr(jurisdiction, "name", jurisdiction)  # a profile by its name, a box by its corners
        detail = f"lat {lat:.2f} / lng {lng:.2f} (rounded) is outside the configured jurisdiction {where}"
        raise InvalidRecord(Reason.OUTSIDE_JURISDICTION, detail)
    raw_category = _text(obj, "category")
    try:
        category = Category(raw_category)
    except ValueError:
        allowed = ", ".join(c.value for c in Category)
        raise InvalidRecord(Reason.BAD_FIELD, f"field 'category' must be one of {allowed}, found {raw_category!r}") from None
    priority = obj.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5):
        raise InvalidRecord(Reason.BAD_FIELD, f"field 'priority' must be an integer 1..5 or null, found {priority!r}")
    return Call(
        id=_text(obj, "id", MAX_ID_LENGTH),
        received_at=_time(obj, "received_at", now),
        category=category,
        call_type=_text(obj, "call_type"),
        priority=priority,
        lat=lat,
        lng=lng,
        agency=_text(obj, "agency"),
        source=_text(obj, "source"),
    )


def _parse_update(obj: dict[str, Any], now: float) -> IncidentUpdate:
    raw_status = _text(obj, "status")
    try:
        status = Status(raw_status)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise InvalidRecord(Reason.BAD_FIELD, f"field 'status' must be one of {allowed}, found {raw_status!r}") from None
    unit = obj.get("unit")
    if unit is not None:
        unit = _text(obj, "unit")
    return IncidentUpdate(
        call_id=_text(obj, "call_id", MAX_ID_LENGTH),
        status=status,
        at=_time(obj, "at", now),
        unit=unit,
        source=_text(obj, "source"),
    )


def _require(obj: dict[str, Any], name: str) -> object:
    if name not in obj or obj[name] is None:
        raise InvalidRecord(Reason.MISSING_FIELD, f"field {name!r} is required")
    return obj[name]


def _text(obj: dict[str, Any], name: str, limit: int = MAX_TEXT_LENGTH) -> str:
    value = _require(obj, name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecord(Reason.BAD_FIELD, f"field {name!r} must be a non-empty string, found {value!r:.60}")
    if len(value) > limit:
        raise InvalidRecord(Reason.BAD_FIELD, f"field {name!r} is {len(value)} characters, the limit is {limit}")
    if not value.isprintable():
        # Control characters have no business in ids or call types, and the
        # Redis commit uses one as its separator.
        raise InvalidRecord(Reason.BAD_FIELD, f"field {name!r} contains control characters: {value!r:.60}")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = _require(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(_as_float(value)):
        raise InvalidRecord(Reason.BAD_FIELD, f"field {name!r} must be a finite number, found {value!r:.60}")
    return float(value)


def _as_float(value: int | float) -> float:
    # JSON reads 1e400 as inf but 1 followed by 400 zeros as an int no float holds: both are out of float range.
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _time(obj: dict[str, Any], name: str, now: float) -> float:
    value = _text(obj, name)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise InvalidRecord(Reason.IMPOSSIBLE_TIMESTAMP, f"field {name!r} is not an ISO 8601 time: {value!r:.60}") from None
    if dt.tzinfo is None:
        raise InvalidRecord(Reason.IMPOSSIBLE_TIMESTAMP, f"field {name!r} has no UTC offset: {value!r:.60}")
    ts = dt.timestamp()
    if ts < EARLIEST_EVENT_TIME:
        raise InvalidRecord(Reason.IMPOSSIBLE_TIMESTAMP, f"field {name!r} is {value}, before {format_time(EARLIEST_EVENT_TIME)}")
    if ts > now + MAX_CLOCK_SKEW_S:
        raise InvalidRecord(
            Reason.IMPOSSIBLE_TIMESTAMP, f"field {name!r} is {value}, in the future of the worker's clock {format_time(now)}"
        )
    return ts


def normalize_category(text: str) -> Category:
    """Map a source's category or call-type text to a :class:`Category`.

    A leading ``CATEGORY:`` (Montgomery's ``EMS: FALL VICTIM``) decides;
    otherwise keyword rules are tried in order (traffic, medical, fire, police).

    >>> normalize_category("Traffic"), normalize_category("Fire: BUILDING FIRE")
    (<Category.TRAFFIC: 'TRAFFIC'>, <Category.FIRE: 'FIRE'>)
    >>> normalize_category("Motor Vehicle Accident Freeway")
    <Category.TRAFFIC: 'TRAFFIC'>
    >>> normalize_category("SICK - 26A8 PAIN"), normalize_category("PERDWN - 32B2 MEDICAL ALARM")
    (<Category.EMS: 'EMS'>, <Category.EMS: 'EMS'>)
    >>> normalize_category("FALSE ALARM"), normalize_category("BARKING DOG")
    (<Category.FIRE: 'FIRE'>, <Category.OTHER: 'OTHER'>)
    >>> normalize_category("Aid Response"), normalize_category("Low Acuity"), normalize_category("Illegal Burn")
    (<Category.EMS: 'EMS'>, <Category.EMS: 'EMS'>, <Category.FIRE: 'FIRE'>)

    Police exports' types (NOPD, Baltimore, LAPD):

    >>> [normalize_category(t).value for t in ("AUTO ACCIDENT", "HIT AND RUN", "SHOTS FIRED", "DISCHRG FIREARM", "BATTERY", "FIGHT")]
    ['TRAFFIC', 'TRAFFIC', 'POLICE', 'POLICE', 'POLICE', 'POLICE']
    """
    t = text.strip().upper()
    head = t.split(":", 1)[0].strip()
    for cat in Category:
        if head == cat.value:
            return cat
    for pattern, cat in _CATEGORY_RULES:
        if pattern.search(t):
            return cat
    return Category.OTHER


def _words(*alternatives: str) -> re.Pattern[str]:
    # Each alternative must start at a word boundary ("ALS" must not match "FALSE").
    return re.compile(r"\b(?:" + "|".join(alternatives) + ")")


# Keyword rules for sources without a category column, checked in order. The
# medical list includes the Cincinnati CAD codes (PERDWN person down, ASSLTI
# assault with injury, DOMINJ domestic injury, OD overdose, ...).
_CATEGORY_RULES: tuple[tuple[re.Pattern[str], Category], ...] = (
    (
        _words(
            "MOTOR VEHICLE",
            "VEHICLE ACCIDENT",
            "AUTO ACCIDENT",
            "HIT AND RUN",
            "TRAFFIC",
            "MVA\\b",
            "MVI\\b",
            "CRASH",
            "COLLISION",
            "DISABLED VEHICLE",
        ),
        Category.TRAFFIC,
    ),
    # Outdoor burning before the medical list, whose BURN is a burn injury (Seattle "Illegal Burn", Cincinnati
    # "OUTDR - 67A2 ILLEGAL BURN" are fire calls; Cincinnati "BURN - 7A3 MINOR" stays EMS).
    (_words("ILLEGAL BURN", "OPEN BURN", "BURN COMPLAINT", "CONTROLLED BURN", "RUBBISH", "BRUSH", "DUMPSTER", "BARK FIRE"), Category.FIRE),
    (
        _words(
            "EMS",
            "MEDIC",
            "SICK",
            "FALL",
            "PAIN",
            "BREATH",
            "CARDIAC",
            "UNCONSCIOUS",
            "OVERDOSE",
            "OD\\b",
            "INJUR",
            "BLEED",
            "STROKE",
            "SEIZURE",
            "DIABETIC",
            "ALS\\b",
            "BLS\\b",
            "CHEST",
            "PREG",
            "PSYCH",
            "PERDWN",
            "FAINT",
            "ABDOM",
            "ASSLTI",
            "DOMINJ",
            "LIFT",
            "BURN",
            "EYEPRB",
            # Seattle's "Aid Response" (half its calls; "Aid Response Yellow", "BC Aid Response"),
            # "Low Acuity", "Triaged Incident", "Nurseline/AMR", "Trans to AMR".
            "AID RESPONSE",
            "LOW ACUITY",
            "TRIAGED",
            "NURSELINE",
            "TRANS TO AMR",
        ),
        Category.EMS,
    ),
    # Guns before the fire list, whose FIRE is in "SHOTS FIRED" and "FIREARM".
    (_words("SHOTS", "SHOOTING", "FIREARM"), Category.POLICE),
    (
        _words("FIRE", "SMOKE", "ALARM", "HAZMAT", "HAZARDOUS", "GAS ODOR", "GAS LEAK", "NATURAL GAS", "EXPLOSION", "ELECTRICAL HAZARD"),
        Category.FIRE,
    ),
    (
        _words(
            "POLICE",
            "ASSAULT",
            "BATTERY",
            "FIGHT",
            "THEFT",
            "BURGLAR",
            "ROBBERY",
            "STOLEN",
            "SHOPLIFT",
            "DISTURBANCE",
            "WEAPON",
            "SUSPICIOUS",
            "TRESPASS",
            "VANDAL",
            "PROWLER",
            "HARASS",
            "NARCOTIC",
            "DOMESTIC",
        ),
        Category.POLICE,
    ),
)
