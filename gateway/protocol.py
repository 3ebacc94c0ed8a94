"""The gateway's wire protocol: message shapes and close codes (pure: no I/O).

Connecting
----------
``GET /ws?token=<token>[&last_id=<stream id>]`` upgrades to a WebSocket.
Browsers cannot set headers on a WebSocket, so the token travels in the query
string (the gateway never logs query strings). REST calls send
``Authorization: Bearer <token>``. A missing, malformed, forged, expired,
too long-lived (``WF_GATEWAY_MAX_TOKEN_TTL_S``) or revoked token is refused at
the handshake with HTTP 401 (403 for a valid token whose role may not do what it
asks); the body is JSON ``{"error": code, "message": text}``. A socket whose
token expires or is revoked while open is closed with 4401.

Server -> client (JSON text frames; every one has ``type``)
------------------------------------------------------------
``welcome``   ``{role, agency, subject, zones, expires_at, resumed_from, gateway, heartbeat_s}``: first frame.
``alert``     ``{id, alert}``: ``id`` is the Redis stream id (resume from it);
              ``alert`` is the alert as this client's role may see it
              (:mod:`gateway.policy`), with ``severity`` and, for
              supervisors, ``status`` (acknowledged/resolved and by whom).
``action``    ``{id, action}``: a supervisor acknowledged or resolved an alert;
              ``action`` is ``{alert_id, action: "ack"|"resolve", by, agency, note, at}``.
              Sent to every client that may see that alert.
``caught_up`` ``{id}``: everything missed since ``last_id`` has been sent; live from here.
``counts``    ``{at, window_min, cells: {cell: n}, zones: {zone_id: n}}``: periodic
              activity in the client's scope (cells generalized for partners,
              counts below k left out).
``forecast``  ``{version, forecast}``: the worker made a new forecast set (``P:forecast:version``
              changed): supervisors the set, commanders what lies in their cells, both without
              the res-7 cells (:mod:`gateway.forecasts`, as ``GET /api/forecast``). Partners
              get ``{forecast}`` only, their agreement's own forecast
              (:mod:`gateway.partnerforecast`), when a new window of their released table is
              out, never on the worker's schedule; or no frame.
``heartbeat`` ``{at}``: the gateway's clock, every ``heartbeat_s`` seconds (``WF_GATEWAY_HEARTBEAT_S``) to
              every client, whatever else it is sent. A client that receives no frame at all for
              three of them takes the gateway for lost (a machine gone from the network leaves
              the socket open until TCP gives up) and reconnects, to another gateway, with
              ``last_id``.
``subscribed`` ``{filters}``: the filters now in force.
``error``     ``{code, message}``: a client message was refused (the connection stays open
              unless a close follows).

Client -> server
----------------
``subscribe`` ``{zones?: [zone ids], polygon?: GeoJSON Polygon, categories?: [..],
              min_severity?: "low"|"medium"|"high"}``: replaces the filters.
``ack`` / ``resolve`` ``{alert_id, note?}``: supervisors (and event commanders for
              their zone's alerts).
``create_zone`` ``{id, name, polygon, starts_at, ends_at, threshold?, floor?,
              expected_calls_per_hour?}``: an event zone (the expected extra calls an
              hour, 0-1000, are added to the forecasts of the hours it is active).
              Supervisors create and replace zones and set ``floor``, the lowest
              threshold a commander may set; a commander may only narrow a zone its token
              names (a polygon inside it, a shorter time, a threshold at or above the
              floor). Every change is audited with before and after. The
              HTTP side of the gateway is read-only but for adopting an allocation
              (``POST /api/allocation``, audited): every other change goes through the
              WebSocket, authenticated and audited.

Close codes
-----------
See :class:`CloseCode`. A client closed with ``TOO_SLOW`` or ``GOING_AWAY``
reconnects with the ``last_id`` of the last ``alert`` or ``action`` frame it
read and receives what it missed, then live traffic, with no gap and no duplicate.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from typing import Any


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway uses (4000-4999 are the application's, RFC 6455 s. 7.4.2)."""

    #: the token expired while connected; reconnect with a new one
    TOKEN_EXPIRED = 4401
    #: the token was revoked while connected (the same code: the token is no longer good)
    TOKEN_REVOKED = 4401
    #: the client kept sending what its role may not do
    FORBIDDEN = 4403
    #: the client did not read fast enough: its queue filled up; reconnect with ``last_id``
    TOO_SLOW = 4408
    #: too many malformed or refused messages (a frame over ``WF_GATEWAY_MAX_MESSAGE`` closes with 1009,
    #: text that is not UTF-8 with 1007: RFC 6455 s. 7.4.1)
    BAD_MESSAGES = 4400
    #: too many messages per second
    RATE_LIMITED = 4429
    #: the gateway is shutting down; reconnect (to another gateway) with ``last_id``
    GOING_AWAY = 1001


SEVERITIES = ("low", "medium", "high")


class ProtocolError(ValueError):
    """A client message that cannot be accepted; ``code`` is sent back in the ``error`` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Subscribe:
    zones: tuple[str, ...] | None = None
    polygon: dict[str, Any] | None = None
    categories: tuple[str, ...] | None = None
    min_severity: str = "low"


@dataclass(frozen=True)
class AlertAction:
    action: str  # "ack" | "resolve"
    alert_id: str
    note: str = ""


@dataclass(frozen=True)
class CreateZone:
    """An event zone for a large gathering; validated further by :func:`gateway.zones.event_zone`."""

    id: str
    name: str
    polygon: dict[str, Any]
    starts_at: float
    ends_at: float
    threshold: float | None = None
    #: the lowest threshold a commander may later set (supervisors only)
    floor: float | None = None
    #: extra calls an hour the organisers expect while it is active (the forecaster adds them)
    expected_calls_per_hour: float | None = None


ClientMessage = Subscribe | AlertAction | CreateZone

_ZONE_ID = re.compile(r"[a-z0-9_-]{1,64}")

#: Longest note a supervisor can attach to an acknowledgement or resolution.
MAX_NOTE = 1000
#: Most extra calls an hour an event zone may announce (a stadium's worst night is far below it).
MAX_EVENT_LOAD = 1000.0
#: Deepest nesting of a polygon: a MultiPolygon is an object of polygons of rings of positions.
POLYGON_DEPTH = 5


def parse_client_message(text: str | bytes) -> ClientMessage:
    """One client frame as a typed message, or :class:`ProtocolError` naming what is wrong.

    >>> parse_client_message('{"type": "subscribe", "categories": ["TRAFFIC"], "min_severity": "medium"}')
    Subscribe(zones=None, polygon=None, categories=('TRAFFIC',), min_severity='medium')
    >>> parse_client_message('{"type": "ack", "alert_id": "surge:x:1", "note": "units en route"}')
    AlertAction(action='ack', alert_id='surge:x:1', note='units en route')
    >>> parse_client_message('{"type": "launch"}')
    Traceback (most recent call last):
    ...
    gateway.protocol.ProtocolError: unknown message type 'launch'; expected one of ack, create_zone, resolve, subscribe
    """
    if isinstance(text, bytes):
        raise ProtocolError("binary_frame", "binary frames are not accepted; send JSON text")
    try:
        data = json.loads(text)
    except ValueError as exc:  # also an integer of more than 4,300 digits (sys.set_int_max_str_digits)
        raise ProtocolError("bad_json", f"not JSON: {str(exc):.200}") from exc
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", f"a message is a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "subscribe":
        _only(data, {"type", "zones", "polygon", "categories", "min_severity"})
        zones = _strings(data, "zones")
        categories = _strings(data, "categories")
        polygon = data.get("polygon")
        if polygon is not None:
            _polygon(polygon)
        sev = data.get("min_severity", "low")
        if not isinstance(sev, str) or sev not in SEVERITIES:
            raise ProtocolError("bad_severity", f"min_severity must be one of {', '.join(SEVERITIES)}, got {sev!r:.40}")
        return Subscribe(
            zones=zones, polygon=polygon, categories=None if categories is None else tuple(c.upper() for c in categories), min_severity=sev
        )
    if kind in ("ack", "resolve"):
        _only(data, {"type", "alert_id", "note"})
        alert_id = data.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 200:
            raise ProtocolError("bad_alert_id", "alert_id must be a non-empty string of at most 200 characters")
        note = data.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise ProtocolError("bad_note", f"note must be a string of at most {MAX_NOTE} characters")
        return AlertAction(kind, alert_id, note)
    if kind == "create_zone":
        _only(data, {"type", "id", "name", "polygon", "starts_at", "ends_at", "threshold", "floor", "expected_calls_per_hour"})
        zid, name = data.get("id"), data.get("name")
        if not isinstance(zid, str) or not _ZONE_ID.fullmatch(zid):
            raise ProtocolError("bad_zone_id", "id must be 1-64 characters of a-z, 0-9, '-' and '_'")
        if not isinstance(name, str) or not name.strip() or len(name) > 100 or not name.isprintable():
            raise ProtocolError("bad_zone_name", "name must be printable text of 1-100 characters")
        polygon = _polygon(data.get("polygon"))
        times = []
        for f in ("starts_at", "ends_at"):
            v = data.get(f)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ProtocolError("bad_time", f"{f} must be epoch seconds, got {v!r:.40}")
            times.append(float(v))
        scores = []
        for f in ("threshold", "floor"):
            v = data.get(f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 1.0 <= v <= 20.0):
                raise ProtocolError(f"bad_{f}", f"{f} must be a score between 1 and 20 (-log10 p), got {v!r:.40}")
            scores.append(None if v is None else float(v))
        load = data.get("expected_calls_per_hour")
        if load is not None and (isinstance(load, bool) or not isinstance(load, int | float) or not 0.0 <= load <= MAX_EVENT_LOAD):
            raise ProtocolError(
                "bad_expected_calls_per_hour",
                f"expected_calls_per_hour must be a number of calls from 0 to {MAX_EVENT_LOAD:g}, got {load!r:.40}",
            )
        return CreateZone(zid, name.strip(), polygon, times[0], times[1], scores[0], scores[1], None if load is None else float(load))
    raise ProtocolError("unknown_type", f"unknown message type {kind!r:.40}; expected one of ack, create_zone, resolve, subscribe")


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        names = ", ".join(f"{e!r:.40}" for e in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ProtocolError("unknown_field", f"unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}")


def _polygon(value: object) -> dict[str, Any]:
    """A polygon is an object nested no deeper than a MultiPolygon; :func:`gateway.zones.polygon_cells` checks the rest.
    Returns ``value``, known from here on to be a JSON object.

    >>> _polygon({"type": "Polygon", "coordinates": [[[[[[0, 0]]]]]]})
    Traceback (most recent call last):
    ...
    gateway.protocol.ProtocolError: polygon is nested deeper than a GeoJSON MultiPolygon
    """
    if not isinstance(value, dict):
        raise ProtocolError("bad_polygon", "polygon must be a GeoJSON Polygon object")
    # iterative, so that no nesting can exhaust the stack (json.loads allows about a thousand levels)
    level: list[Any] = [value]
    for _ in range(POLYGON_DEPTH):
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x) if isinstance(v, list | dict)]
        if not level:
            return value
    raise ProtocolError("bad_polygon", "polygon is nested deeper than a GeoJSON MultiPolygon")


def _strings(data: dict[str, Any], name: str, limit: int = 200) -> tuple[str, ...] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, str) and 0 < len(v) <= 100 for v in value):
        raise ProtocolError(f"bad_{name}", f"{name} must be a list of at most {limit} non-empty strings")
    return tuple(value)


def frame(kind: str, **fields: Any) -> str:
    """A server frame as JSON text.

    >>> frame("caught_up", id="1-0")
    '{"type":"caught_up","id":"1-0"}'
    """
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), sort_keys=False)
